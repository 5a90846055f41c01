//! The one place where every failure becomes a response.
//!
//! Every stage of the pipeline returns `Result<_, GatewayError>`. `GatewayError::status` maps an
//! error to the HTTP code and the Kubernetes `Status` object that the client sees; kubectl prints
//! the `message`, so messages are written for a human and never carry a credential.

use bytes::Bytes;
use http::{header, Response, StatusCode};

use crate::body::{self, Body};

/// Which side of the gateway a failure belongs to, so metrics and logs can group them
/// (after pingora's error sides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something we refuse.
    Downstream,
    /// The cluster failed or could not be reached.
    Upstream,
    /// Airlock itself could not do its job.
    Internal,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Downstream => "downstream",
            Side::Upstream => "upstream",
            Side::Internal => "internal",
        }
    }
}

/// Every way a request can end without a response from the cluster.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    BadRequest(String),

    /// The reason is logged by the authentication stage; the client learns only that it failed.
    #[error("Unauthorized")]
    Unauthorized,

    #[error("{0}")]
    Forbidden(String),

    #[error("{0}")]
    NotFound(String),

    #[error("{0}")]
    UnsupportedMediaType(String),

    #[error("the cluster could not be reached: {0}")]
    BadGateway(String),

    #[error("{0}")]
    Unavailable(String),

    #[error("the cluster did not answer in time: {0}")]
    GatewayTimeout(String),

    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// The side this error belongs to.
    pub fn side(&self) -> Side {
        match self {
            GatewayError::BadRequest(_)
            | GatewayError::Unauthorized
            | GatewayError::Forbidden(_)
            | GatewayError::NotFound(_)
            | GatewayError::UnsupportedMediaType(_) => Side::Downstream,
            GatewayError::BadGateway(_) | GatewayError::GatewayTimeout(_) => Side::Upstream,
            GatewayError::Unavailable(_) | GatewayError::Internal(_) => Side::Internal,
        }
    }

    /// HTTP code and Kubernetes `reason` for this error.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            GatewayError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            GatewayError::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            GatewayError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            GatewayError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            GatewayError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            GatewayError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "InternalError"),
            GatewayError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            GatewayError::GatewayTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
            GatewayError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }

    /// The response a client sees: a Kubernetes `Status` object.
    pub fn into_response(&self, request_id: Option<&str>) -> Response<Body> {
        let (code, reason) = self.status();
        status_response(code, reason, &self.to_string(), request_id)
    }
}

/// Builds a `Status` response as kube-apiserver does, so kubectl prints `message`.
pub fn status_response(
    code: StatusCode,
    reason: &str,
    message: &str,
    request_id: Option<&str>,
) -> Response<Body> {
    let status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let bytes = Bytes::from(status.to_string());
    let mut resp = Response::new(body::full(bytes));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Some(id) = request_id.and_then(|id| header::HeaderValue::from_str(id).ok()) {
        resp.headers_mut().insert("audit-id", id);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn status_body_is_a_kubernetes_status() {
        let resp = GatewayError::Forbidden("impersonation is not allowed".into())
            .into_response(Some("abc"));
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(resp.headers()["audit-id"], "abc");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["reason"], "Forbidden");
        assert_eq!(v["code"], 403);
        assert_eq!(v["message"], "impersonation is not allowed");
    }
}
