//! Approval notifications: every new approval request is POSTed to the configured webhooks,
//! as JSON or as a Slack-compatible message (command, identity, intent, rule and a link).
//!
//! Delivery is retried with backoff (1 s doubling to 60 s, for up to 10 attempts, about 6
//! minutes); a notification still undelivered when Airlock restarts is not sent again. The
//! approval itself does not depend on it: `airlock approvals list` and the API always show it.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use serde_json::json;
use tracing::warn;

use crate::config::ApprovalSettings;

const ATTEMPTS: u32 = 10;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    pub webhook: String,
    pub result: String,
}

struct Hook {
    name: String,
    slack: bool,
    url: http::Uri,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    authorization: Option<http::HeaderValue>,
}

/// Announces new approval requests. Also an `approvals::DecisionHook`.
pub struct Notifier {
    hooks: Vec<Arc<Hook>>,
    link_base: Option<String>,
    pub sent: Family<NotifyLabels, Counter>,
}

impl Notifier {
    pub fn new(settings: &ApprovalSettings) -> Result<Notifier, String> {
        let mut hooks = Vec::new();
        for n in &settings.notify {
            let err = |e: String| format!("approvals.notify {}: {e}", n.name);
            hooks.push(Arc::new(Hook {
                name: n.name.clone(),
                slack: n.slack,
                url: n.url.parse().map_err(|e| err(format!("bad url: {e}")))?,
                client: crate::audit_sink::webhook_client(n.ca_file.as_deref()).map_err(err)?,
                authorization: crate::audit_sink::bearer(n.bearer_token_file.as_deref())
                    .map_err(err)?,
            }));
        }
        Ok(Notifier {
            hooks,
            link_base: settings.link_base.clone(),
            sent: Family::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    fn message(&self, a: &approvals::Approval, slack: bool) -> serde_json::Value {
        let link = self
            .link_base
            .as_ref()
            .map(|b| format!("{b}/approvals/{}", a.id));
        let rules: Vec<&str> = a.requirements.iter().map(|r| r.rule.as_str()).collect();
        if !slack {
            return json!({
                "type": "approval_requested",
                "id": a.id,
                "command": a.command,
                "user": a.requester.user,
                "groups": a.requester.groups,
                "intent": a.intent,
                "cluster": a.target.cluster,
                "rules": rules,
                "message": a.message,
                "expires": a.expires,
                "link": link,
                "approve": format!("airlock approvals approve {}", a.id),
            });
        }
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut lines = vec![
            format!("*Approval needed* `{}`", a.id),
            format!("*Command:* `{}`", esc(&a.command)),
            format!("*Who:* {}", esc(&a.requester.user)),
            format!("*Cluster:* {}", esc(&a.target.cluster)),
            format!("*Why held:* {}", esc(&rules.join(", "))),
        ];
        if let Some(i) = &a.intent {
            lines.push(format!("*Intent:* {}", esc(i)));
        }
        match &link {
            Some(l) => lines.push(format!("<{l}|Review and decide>")),
            None => lines.push(format!("Decide: `airlock approvals approve {}`", a.id)),
        }
        let text = lines.join("\n");
        json!({
            "text": format!("Approval needed for {} by {}", a.command, a.requester.user),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        })
    }
}

impl approvals::DecisionHook for Notifier {
    fn on_decision(&self, rec: &approvals::ApprovalRecord) {
        if !matches!(rec.event, approvals::Event::Created) {
            return;
        }
        for hook in &self.hooks {
            let body = Bytes::from(self.message(&rec.approval, hook.slack).to_string());
            let hook = hook.clone();
            let sent = self.sent.clone();
            tokio::spawn(async move {
                let mut wait = Duration::from_secs(1);
                for attempt in 1..=ATTEMPTS {
                    match deliver(&hook, body.clone()).await {
                        Ok(()) => {
                            sent.get_or_create(&NotifyLabels {
                                webhook: hook.name.clone(),
                                result: "ok".into(),
                            })
                            .inc();
                            return;
                        }
                        Err(e) => {
                            sent.get_or_create(&NotifyLabels {
                                webhook: hook.name.clone(),
                                result: "error".into(),
                            })
                            .inc();
                            warn!(webhook = %hook.name, attempt, error = %e, "approval notification failed");
                        }
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(60));
                }
            });
        }
    }
}

async fn deliver(hook: &Hook, body: Bytes) -> Result<(), String> {
    let mut req = Request::post(hook.url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    if let Some(a) = &hook.authorization {
        req.headers_mut().insert(header::AUTHORIZATION, a.clone());
    }
    let resp = tokio::time::timeout(Duration::from_secs(15), hook.client.request(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {status}"))
    }
}

/// Sends each approval event to several hooks (the audit log, notifications).
pub struct Fanout(pub Vec<Arc<dyn approvals::DecisionHook>>);

impl approvals::DecisionHook for Fanout {
    fn on_decision(&self, rec: &approvals::ApprovalRecord) {
        for h in &self.0 {
            h.on_decision(rec);
        }
    }
}
