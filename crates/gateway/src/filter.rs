//! The response filter: masking on the way out, and the request-side rules that make it
//! possible (ask the cluster for JSON, uncompressed) and safe (refuse writing a mask back).
//!
//! Every response to a resource request streams through `mask::StreamMasker` before it leaves
//! the gateway. A response Airlock cannot read (protobuf, CBOR, compressed, unknown type) is
//! refused, never passed through. Non-resource requests (discovery, `/openapi`, `/version`)
//! carry no objects and pass unchanged. exec/attach output is masked in the tunnel (`crate::tunnel`).

use std::{
    path::Path,
    pin::Pin,
    sync::Mutex,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue};
use http_body::{Body as HttpBody, Frame};
use mask::{BodyKind, Fingerprints, MaskContext, Masker, StreamMasker};

use crate::{
    body::{Body, BodyError},
    error::GatewayError,
};

/// Builds the masker with a fingerprint key kept in the state directory, so that the short
/// fingerprints in markers stay comparable across restarts.
pub fn masker(state_dir: &Path) -> Result<Masker, String> {
    let path = state_dir.join("mask.key");
    let key = match std::fs::read_to_string(&path) {
        Ok(k) if k.trim().len() >= 32 => k.trim().to_owned(),
        _ => {
            use rand::RngCore;
            let mut b = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut b);
            let k = hex::encode(b);
            std::fs::create_dir_all(state_dir)
                .and_then(|_| crate::tls::write_private_file(&path, &k))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            k
        }
    };
    Masker::new(mask::MaskConfig::new(key.into_bytes())).map_err(|e| e.to_string())
}

/// The masking context of a request: its resource, subresource and namespace.
///
/// Fingerprints are bound to where each value sits ([`Fingerprints::Bound`]); the response
/// path switches to [`response_fingerprints`] where the client could choose the values.
pub fn mask_context(cluster: &str, info: &kube_request::RequestInfo) -> MaskContext {
    let opt = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
    MaskContext {
        resource: opt(&info.resource),
        subresource: opt(&info.subresource),
        namespace: opt(&info.namespace),
        profiles: Vec::new(),
        cluster: Some(cluster.to_owned()),
        name: opt(&info.name),
        api_group: Some(info.api_group.clone()),
        fingerprints: Fingerprints::Bound,
    }
}

/// How the fingerprints of a response to `info` are keyed.
///
/// A response that echoes what the client sent (create, update and patch, dry run included)
/// and the output of a command the client runs (exec, attach) get a key of their own: the
/// client chose those values, and under the usual binding it could have the gateway
/// fingerprint guesses next to a real secret and compare (a dry-run update of a Secret
/// echoes the guess under the Secret's own binding). Everything else is bound, so that
/// repeated reads of a field show the same fingerprint.
pub fn response_fingerprints(info: &kube_request::RequestInfo) -> Fingerprints {
    let echo = matches!(info.verb.as_str(), "create" | "update" | "patch");
    let interactive = matches!(info.subresource.as_str(), "exec" | "attach");
    // An application's own answer (pods/x/proxy): whatever it serves is its author's choice.
    let application = info.subresource == "proxy" || info.verb == "proxy";
    if echo || interactive || application {
        Fingerprints::Own
    } else {
        Fingerprints::Bound
    }
}

/// A request body as the audit log and approval views show it: masked, or `None` when Airlock
/// cannot read it (protobuf); callers then show only its size and digest, never the body.
pub fn masked_request_body(
    masker: &Masker,
    cluster: &str,
    info: &kube_request::RequestInfo,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<Vec<u8>> {
    let kind =
        BodyKind::from_content_type(content_type.unwrap_or("application/json"), false).ok()?;
    masker
        .mask_request_body(kind, &mask_context(cluster, info), body)
        .ok()
}

/// Asks the cluster for something Airlock can read: protobuf and CBOR are removed from
/// `Accept` (JSON variants such as `;as=Table` stay), and compression is turned off.
pub fn readable_request(headers: &mut HeaderMap) {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(|a| {
            a.split(',')
                .map(str::trim)
                .filter(|t| {
                    let essence = t
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase();
                    !essence.contains("protobuf") && !essence.contains("cbor")
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "application/json".to_owned());
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert(header::ACCEPT, v);
    }
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
}

/// Refuses a write whose body carries Airlock's mask: `kubectl edit`, or `get -o yaml | apply`,
/// must never overwrite a real credential with the marker.
pub fn refuse_write_back(body: &[u8]) -> Result<(), GatewayError> {
    if mask::contains_marker(body) {
        return Err(GatewayError::BadRequest(format!(
            "the request contains a value masked by Airlock ({}...): writing it back would replace a real credential with the mask; send only the fields you mean to change",
            mask::MARKER_PREFIX
        )));
    }
    Ok(())
}

/// Whether a call is the delete with which `kubectl replace --force` begins: kubectl deletes
/// the object, then creates it from the file (kubectl names its command in `Kubectl-Command`;
/// a plain `kubectl replace` sends a PUT).
pub fn is_forced_replace(info: &kube_request::RequestInfo, headers: &HeaderMap) -> bool {
    info.verb == "delete"
        && !info.name.is_empty()
        && info.stream_kind().is_none()
        && headers
            .get("kubectl-command")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.trim() == "kubectl replace")
}

/// Wraps a response body in a streaming masker chosen by its content type.
pub fn mask_response(
    masker: &Masker,
    headers: &mut HeaderMap,
    body: Body,
    ctx: &MaskContext,
    watch: bool,
) -> Result<Body, GatewayError> {
    let refuse = |why: String| {
        GatewayError::BadGateway(format!(
            "Airlock refused the cluster's response because it cannot inspect it for secrets: {why}"
        ))
    };
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        if enc.as_bytes() != b"identity" {
            return Err(refuse(format!(
                "it is compressed ({})",
                String::from_utf8_lossy(enc.as_bytes())
            )));
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let kind = match content_type {
        Some(ct) => BodyKind::from_content_type(ct, watch).map_err(|e| refuse(e.to_string()))?,
        None if body.size_hint().exact() == Some(0) => return Ok(body),
        // Untyped bytes are treated as text: every detector runs on them.
        None => BodyKind::Text,
    };
    let stream = masker
        .stream(kind, ctx)
        .map_err(|e| refuse(e.to_string()))?;
    // The masked body's length differs from the cluster's.
    headers.remove(header::CONTENT_LENGTH);
    Ok(http_body_util::BodyExt::boxed(MaskedBody {
        inner: body,
        masker: Mutex::new(stream),
        done: false,
    }))
}

pin_project_lite::pin_project! {
    struct MaskedBody {
        #[pin]
        inner: Body,
        // A Mutex only to make the body Sync; it is never contended.
        masker: Mutex<Box<dyn StreamMasker>>,
        done: bool,
    }
}

impl HttpBody for MaskedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            let masker = match this.masker.get_mut() {
                Ok(m) => m,
                Err(_) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err("masker poisoned".into())));
                }
            };
            let mut out = Vec::new();
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if let Err(e) = masker.push(&data, &mut out) {
                            // Fail closed: the stream ends here rather than pass unmasked bytes.
                            *this.done = true;
                            tracing::warn!(error = %e, "masking failed; response aborted");
                            return Poll::Ready(Some(Err(Box::new(e))));
                        }
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Poll::Ready(Some(Err(e))) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    if let Err(e) = masker.finish(&mut out) {
                        tracing::warn!(error = %e, "masking failed at the end; response aborted");
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_asks_for_json() {
        let cases = [
            (Some("application/vnd.kubernetes.protobuf,application/json"), "application/json"),
            (Some("application/vnd.kubernetes.protobuf"), "application/json"),
            (Some("application/cbor"), "application/json"),
            (None, "application/json"),
            (
                Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            ),
            (
                Some("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, application/json;as=Table;v=v1;g=meta.k8s.io"),
                "application/json;as=Table;v=v1;g=meta.k8s.io",
            ),
        ];
        for (accept, want) in cases {
            let mut h = HeaderMap::new();
            if let Some(a) = accept {
                h.insert(header::ACCEPT, HeaderValue::from_str(a).unwrap());
            }
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            readable_request(&mut h);
            assert_eq!(h[header::ACCEPT], want, "{accept:?}");
            assert_eq!(h[header::ACCEPT_ENCODING], "identity");
        }
    }
}
