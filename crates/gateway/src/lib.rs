//! The gateway: listener, TLS, the request pipeline, upstream clients, the admin listener and
//! its web UI.
//!
//! A request's path: `server` accepts it, `proxy::Gateway::handle` runs the pipeline stages in
//! order, `upstream` sends it to the cluster, and `error` turns any failure into a Kubernetes
//! `Status`.
#![forbid(unsafe_code)]

pub mod approvals;
pub mod audit;
pub mod audit_sink;
pub mod authorize;
pub mod body;
pub mod config;
pub mod error;
pub mod filter;
pub mod kubeconfig;
pub mod metrics;
pub mod notify;
pub mod proxy;
pub mod server;
pub mod tls;
pub mod tunnel;
pub mod upstream;
pub mod web;

pub use config::{Config, ConfigError, RawConfig};
pub use error::GatewayError;
pub use server::{start, Running, StartError};
