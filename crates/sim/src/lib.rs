//! The simulated Kubernetes API server: the bench for every test and the demo's cluster.
//! Production never needs it.
#![forbid(unsafe_code)]

pub mod pods;

/// Response body type used by every handler in the simulator.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>;
