//! The authorize stage: the policy file, its reloads, and turning a decision into a verdict.
//!
//! The policy is read once at start and again when the file changes (checked every two seconds)
//! or on SIGHUP. A new policy that fails to load never replaces the running one: the error goes
//! to the log and to `airlock_policy_reloads_total{result="error"}`, and
//! `airlock check-config` reports it.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::HeaderMap;
use kube_request::RequestInfo;
use policy::{Decision, Policy, RequestContext, Verdict};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use tracing::{info, warn};

use crate::error::GatewayError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: String,
}

/// The running policy, or none (every authenticated call is allowed; Kubernetes RBAC decides).
pub struct PolicyHolder {
    path: Option<PathBuf>,
    current: RwLock<Option<Arc<Policy>>>,
    loaded_mtime: RwLock<Option<SystemTime>>,
    pub reloads: Family<ReloadLabels, Counter>,
}

impl PolicyHolder {
    /// Loads the policy file, if any. A broken file at start is an error: Airlock does not start
    /// without the policy it was told to enforce.
    pub fn load(path: Option<PathBuf>) -> Result<PolicyHolder, policy::PolicyError> {
        let (current, mtime) = match &path {
            Some(p) => (Some(Arc::new(Policy::load_file(p)?)), mtime(p)),
            None => (None, None),
        };
        Ok(PolicyHolder {
            path,
            current: RwLock::new(current),
            loaded_mtime: RwLock::new(mtime),
            reloads: Family::default(),
        })
    }

    pub fn current(&self) -> Option<Arc<Policy>> {
        self.current.read().ok().and_then(|g| g.clone())
    }

    /// Reads the file again; keeps the running policy when the new one is broken.
    pub fn reload(&self) {
        let Some(path) = &self.path else { return };
        let m = mtime(path);
        match Policy::load_file(path) {
            Ok(p) => {
                if let Ok(mut g) = self.current.write() {
                    *g = Some(Arc::new(p));
                }
                info!(path = %path.display(), "policy reloaded");
                self.count("ok");
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "the new policy is broken; the previous one stays in force");
                self.count("error");
            }
        }
        if let Ok(mut g) = self.loaded_mtime.write() {
            *g = m;
        }
    }

    fn count(&self, result: &str) {
        self.reloads
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Reloads on SIGHUP and when the file's modification time changes.
    pub fn spawn_watch(self: &Arc<Self>) {
        if self.path.is_none() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let by_signal = match hup.as_mut() {
                    Some(h) => tokio::select! {
                        _ = tick.tick() => false,
                        _ = h.recv() => true,
                    },
                    None => {
                        tick.tick().await;
                        false
                    }
                };
                #[cfg(not(unix))]
                let by_signal = {
                    tick.tick().await;
                    false
                };
                let changed = match (&this.path, this.loaded_mtime.read()) {
                    (Some(p), Ok(g)) => mtime(p) != *g,
                    _ => false,
                };
                if by_signal || changed {
                    this.reload();
                }
            }
        });
    }

    /// Decides one request. `None` when no policy is configured.
    pub fn decide(
        &self,
        cluster: &str,
        info: &RequestInfo,
        identity: &authn::Identity,
        method: &str,
        headers: &HeaderMap,
        object: Option<&serde_json::Value>,
    ) -> Option<Decision> {
        let policy = self.current()?;
        let ctx = RequestContext {
            cluster,
            info,
            identity,
            method,
            headers: policy_headers(headers),
            object,
        };
        Some(policy.evaluate(&ctx))
    }
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The headers rules may see: everything but credentials.
fn policy_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "authorization" | "proxy-authorization" | "cookie"
            )
        })
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// Turns a decision into "forward" or the error the client sees.
pub fn enforce(decision: &Decision) -> Result<(), GatewayError> {
    match decision.verdict {
        Verdict::Allow => Ok(()),
        Verdict::Deny => Err(GatewayError::Forbidden(decision.message.clone())),
        // `Gateway` holds such calls when it has an approvals store (`server::start` always
        // gives it one); without one, a call that needs approval is refused: failing closed,
        // never forwarded unapproved.
        Verdict::Approve => {
            let reason = decision
                .message
                .split("; held up to")
                .next()
                .unwrap_or(&decision.message);
            Err(GatewayError::Forbidden(format!(
                "{reason}; this Airlock has no approvals store to hold the call, so it is refused"
            )))
        }
    }
}

/// Largest access review answer read for [`answer_access_review`]; a real one is a few hundred
/// bytes.
const MAX_REVIEW_BYTES: usize = 64 * 1024;

/// Whether a request is `kubectl auth can-i`: a `SelfSubjectAccessReview` create.
pub fn is_access_review(info: &RequestInfo) -> bool {
    info.is_resource_request
        && info.verb == "create"
        && info.api_group == "authorization.k8s.io"
        && info.resource == "selfsubjectaccessreviews"
        && info.subresource.is_empty()
}

/// Lays the policy's answer over the cluster's answer to a `SelfSubjectAccessReview`, which
/// kube-apiserver decides from RBAC alone (`policy::Policy::review`):
///
/// - a call the policy denies whatever its body: `allowed: false`, `denied: true` and the
///   rule's message as `reason` (kubectl prints `no - <reason>` and exits 1);
/// - a call it holds for approval, or whose rule depends on the object: `allowed` stays as
///   RBAC says, and `reason` says so (kubectl prints only `yes`; API clients read it).
///
/// Only an answer RBAC allowed is changed. An answer that is not a readable review is passed
/// on as it came: this is advice for planning, and the call itself is still decided by the
/// policy when it is made.
pub fn answer_access_review(
    policy: &Policy,
    cluster: &str,
    identity: &authn::Identity,
    answer: Bytes,
) -> Bytes {
    overlay_review(policy, cluster, identity, &answer).map_or(answer, Bytes::from)
}

/// How long the cluster's answer to an access review may take to arrive whole.
const REVIEW_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the cluster's answer to an access review (small, bounded in size and time).
pub async fn read_access_review(body: crate::body::Body) -> Result<Bytes, GatewayError> {
    read_access_review_within(body, REVIEW_READ_TIMEOUT).await
}

async fn read_access_review_within(
    body: crate::body::Body,
    limit: std::time::Duration,
) -> Result<Bytes, GatewayError> {
    tokio::time::timeout(limit, read_review_body(body))
        .await
        .map_err(|_| {
            GatewayError::GatewayTimeout(format!(
                "the cluster's answer to the access review did not arrive within {} ms",
                limit.as_millis()
            ))
        })?
}

async fn read_review_body(mut body: crate::body::Body) -> Result<Bytes, GatewayError> {
    use http_body_util::BodyExt;

    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            GatewayError::BadGateway(format!("reading the access review answer: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_REVIEW_BYTES {
                return Err(GatewayError::BadGateway(format!(
                    "the access review answer is larger than {MAX_REVIEW_BYTES} bytes"
                )));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// The review with the policy's answer laid over it; `None` to pass it on unchanged.
fn overlay_review(
    policy: &Policy,
    cluster: &str,
    identity: &authn::Identity,
    bytes: &[u8],
) -> Option<Vec<u8>> {
    let mut review: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if review.get("kind").and_then(|k| k.as_str()) != Some("SelfSubjectAccessReview") {
        return None;
    }
    let (info, method) = policy::review_attributes(review.get("spec")?)?;
    let status = review.get_mut("status")?.as_object_mut()?;
    if status.get("allowed").and_then(|a| a.as_bool()) != Some(true) {
        return None;
    }
    let (allowed, reason) = match policy.review(cluster, identity, &info, method) {
        policy::ReviewAnswer::Allowed => return None,
        policy::ReviewAnswer::Denied(m) => (false, format!("Airlock's policy denies this: {m}")),
        policy::ReviewAnswer::Held(m) => (
            true,
            format!("Airlock holds this call for a human's approval: {m}"),
        ),
        policy::ReviewAnswer::PartlyAllowed(rule) => (
            true,
            format!(
                "Airlock's policy allows only some such calls, by rule {rule:?}; it denies the rest by default"
            ),
        ),
        policy::ReviewAnswer::Depends(rule) => (
            true,
            format!(
                "Airlock's policy rule {rule:?} denies or holds some such calls: it decides each call on what it sends (its object, namespace or name)"
            ),
        ),
    };
    status.insert("allowed".into(), allowed.into());
    if !allowed {
        status.insert("denied".into(), true.into());
    }
    status.insert("reason".into(), reason.into());
    serde_json::to_vec(&review).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> authn::Identity {
        authn::Identity {
            user: "agent".into(),
            uid: None,
            groups: vec!["ai-agents".into()],
            client_id: None,
            session_id: None,
            issuer: None,
            expires_at: None,
        }
    }

    /// A body that never ends.
    struct Stalled;

    impl http_body::Body for Stalled {
        type Data = Bytes;
        type Error = crate::body::BodyError;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_stalled_review_answer_times_out() {
        use http_body_util::BodyExt;

        let body = Stalled.boxed();
        let err = read_access_review_within(body, std::time::Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, GatewayError::GatewayTimeout(_)), "{err}");
        let whole = crate::body::full(Bytes::from_static(b"{}"));
        let ok = read_access_review_within(whole, std::time::Duration::from_millis(50)).await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"{}"));
    }

    #[test]
    fn only_readable_reviews_rbac_allowed_are_changed() {
        let p =
            Policy::from_yaml("agent_groups: [ai-agents]\npresets: [ai-agent-baseline]\n").unwrap();
        let review = |allowed: bool, resource: &str| {
            format!(
                r#"{{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1",
                "spec":{{"resourceAttributes":{{"verb":"get","resource":"{resource}",
                "subresource":"proxy","namespace":"shop"}}}},"status":{{"allowed":{allowed}}}}}"#
            )
        };
        let answer = |body: String| {
            let out = answer_access_review(&p, "demo", &agent(), Bytes::from(body.clone()));
            (body, String::from_utf8(out.to_vec()).unwrap())
        };

        let (_, out) = answer(review(true, "pods"));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"]["allowed"], false);
        assert_eq!(v["status"]["denied"], true);
        assert!(v["status"]["reason"]
            .as_str()
            .unwrap()
            .contains("proxying to pods"));

        for body in [
            review(false, "pods"),      // RBAC already says no
            review(true, "configmaps"), // the policy allows it
            review(true, "pods").replace("SelfSubjectAccessReview", "SubjectAccessReview"),
            "not json".to_owned(),
            r#"{"kind":"SelfSubjectAccessReview","spec":{},"status":{"allowed":true}}"#.to_owned(),
        ] {
            let (body, out) = answer(body);
            assert_eq!(out, body);
        }
    }
}
