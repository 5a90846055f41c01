//! Pod subresources that stream: exec, attach, port-forward and logs.
//! (Placeholder until the pods module lands; the router calls `handle`.)

use hyper::{body::Incoming, Request, Response};

/// Which streaming pod subresource a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodSubresource {
    Exec,
    Attach,
    PortForward,
    Log,
}

/// What the router knows about the target pod when it hands a request over.
#[derive(Debug, Clone)]
pub struct PodContext {
    pub namespace: String,
    pub name: String,
    /// The pod object as stored (JSON), for containers, env and mounts.
    pub pod: serde_json::Value,
}

/// Serves one streaming pod subresource request. Handles upgrades itself.
pub async fn handle(
    _sub: PodSubresource,
    _ctx: PodContext,
    _req: Request<Incoming>,
) -> Response<crate::Body> {
    use http_body_util::BodyExt;
    let body = http_body_util::Full::new(bytes::Bytes::from_static(b"{}"))
        .map_err(|never| match never {})
        .boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = hyper::StatusCode::NOT_IMPLEMENTED;
    resp
}
