//! HTTP request -> Kubernetes request attributes, and a kubectl-equivalent
//! command line for humans.
//!
//! Pure: no I/O, no async. The gateway calls [`parse`] once per request and
//! makes every authorization, approval and audit decision from the
//! [`RequestInfo`] it returns, so this crate must read a request exactly as
//! kube-apiserver will.
//!
//! - [`parse`] ports kube-apiserver's `RequestInfoFactory.NewRequestInfo`
//!   (`k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`), with
//!   upstream's test table ported in `src/tests.rs`.
//! - [`check_path`] refuses non-canonical paths (dot segments, `//`, encoded
//!   `/` and `.`, bad escapes, control and non-ASCII bytes). [`parse`] calls
//!   it first, so the attributes are never computed from a path that another
//!   HTTP layer could read differently.
//! - [`Query`] and [`query_params`] read the query as Go's `net/url` and
//!   apimachinery's parameter codec do.
//! - [`RequestInfo::stream_kind`] classifies exec, attach, port-forward,
//!   proxy and log requests.
//! - [`kubectl_command`] renders a safely quoted kubectl line.
//!
//! # Deliberate differences from upstream
//!
//! - Non-canonical paths are errors here; upstream parses them as given.
//! - Upstream only trusts a `fieldSelector=metadata.name=X` name when all of
//!   `ListOptions` decodes. This port checks the field selector and the
//!   integer parameters (`limit`, `timeoutSeconds`) but not label-selector
//!   syntax. A request with an invalid label selector may therefore get a
//!   name here and not upstream; the API server rejects such a list with 400
//!   before reading anything, so the difference cannot widen access.
//! - Upstream briefly cleared the namespace on `PATCH /api/v1/namespaces/X`
//!   (server-side apply creating a namespace) and later reverted it; this
//!   follows current upstream, where the namespace is `X`.
//! - `AuthorizeWithSelectors` is treated as enabled (its default since
//!   Kubernetes 1.32): `field_selector` and `label_selector` are filled in.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod info;
mod json;
mod kubectl;
mod path;
pub mod protobuf;
mod query;
mod selector;
#[cfg(test)]
mod tests;

pub use error::Error;
pub use info::{parse, RequestInfo, RequestParts, StreamKind};
pub use json::unique_keys;
pub use kubectl::{kubectl_command, shell_quote};
pub use path::check_path;
pub use query::{query_params, Query};
