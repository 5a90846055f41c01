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
