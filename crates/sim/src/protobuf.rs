//! Kubernetes protobuf request bodies, read leniently (unknown fields skipped) with the shared
//! table in `kube_request::protobuf`. We never answer in protobuf: kubectl always accepts JSON.

use kube_request::protobuf::{self, Mode, ProtobufError};
use serde_json::Value;

use crate::error::ApiError;

/// Whether a body is a Kubernetes protobuf envelope.
pub fn is_protobuf(body: &[u8]) -> bool {
    protobuf::is_protobuf(body)
}

/// Decodes a `k8s\0`-prefixed body into the equivalent JSON object.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    protobuf::decode(body, Mode::Lenient).map_err(|e| match e {
        ProtobufError::Invalid(_) => ApiError::bad_request(format!(
            "the server rejected our request due to an error in our request: {e}"
        )),
        ProtobufError::UnknownKind(what) | ProtobufError::Unsupported(what) => ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (protobuf {what} is not simulated)"),
        ),
    })
}
