//! `/approvals` and `/approvals/{id}`: held calls waiting for a human, and recent decisions,
//! with approve and deny forms for members of the approver groups. Decisions go through the
//! same [`approvals::Approvals`] store as the JSON API (`crate::approvals`), so quorum,
//! self-approval and the audit hook behave the same whichever way an approver decides.

use std::{collections::HashMap, fmt::Write as _};

use approvals::{
    format_duration, parse_duration, rfc3339, scope_name, Action, Approval, ApprovalsError, Person,
    State, Verdict,
};
use http::{Response, StatusCode};

use super::{
    auth::Authed,
    html::{esc, message, page, redirect, url_component},
    Web,
};
use crate::body::Body;

/// Decided approvals shown under the pending ones.
const RECENT: usize = 50;
/// Pending approvals shown at most.
const MAX_PENDING: usize = 200;

fn person(who: &Authed) -> Person {
    Person {
        user: who.user.clone(),
        groups: who.groups.clone(),
        session_id: None,
        client_id: None,
    }
}

fn unavailable(who: &Authed) -> Response<Body> {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Approvals",
        Some(who),
        "approvals are not available in this gateway",
    )
}

fn store_error(who: &Authed, e: ApprovalsError) -> Response<Body> {
    tracing::warn!(error = %e, "web: cannot read the approvals store");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Approvals unavailable",
        Some(who),
        "the approvals store cannot be read right now; see the gateway's log",
    )
}

fn pretty(v: &serde_json::Value) -> String {
    esc(&serde_json::to_string_pretty(v).unwrap_or_default())
}

/// One approval, everything the approver needs to decide, escaped.
fn card(a: &Approval, who: &Authed, link: bool) -> String {
    // A requester's own approvals without body and preview (`Approval::view_for`).
    let a = &a.clone().view_for(&person(who));
    let state = a.state.as_str();
    let id = if link {
        format!(
            r#"<a class="approval-id" href="/approvals/{}">{}</a>"#,
            url_component(&a.id),
            esc(&a.id)
        )
    } else {
        format!(r#"<code class="approval-id">{}</code>"#, esc(&a.id))
    };
    let mut s = format!(
        r#"<section class="approval {state}" data-id="{id_attr}"><h2>{id} <span class="state {state}">{state}</span></h2>
<table class="fields"><tbody>
<tr><th>Command</th><td><code class="command">{command}</code></td></tr>
"#,
        id_attr = esc(&a.id),
        command = esc(&a.command),
    );
    let mut row = |k: &str, v: String| {
        let _ = writeln!(s, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    };
    let groups = if a.requester.groups.is_empty() {
        String::new()
    } else {
        format!(
            r#" <span class="groups">({})</span>"#,
            esc(&a.requester.groups.join(", "))
        )
    };
    row("Identity", format!("{}{groups}", esc(&a.requester.user)));
    if let Some(c) = &a.requester.client_id {
        row("Client id", esc(c));
    }
    row("Cluster", esc(&a.target.cluster));
    let mut target = format!("{} {}", esc(&a.target.method), esc(&a.target.path));
    if let Some(q) = &a.target.query {
        let _ = write!(target, "?{}", esc(q));
    }
    row("Request", format!("<code>{target}</code>"));
    row(
        "Intent",
        a.intent.as_deref().map_or_else(
            || "<span class=\"none\">none given</span>".to_owned(),
            |i| format!(r#"<span class="intent">{}</span>"#, esc(i)),
        ),
    );
    if a.kubectl_command.is_some() || a.kubectl_session.is_some() {
        row(
            "kubectl headers",
            format!(
                "Kubectl-Command: <code>{}</code><br>Kubectl-Session: <code>{}</code>",
                esc(a.kubectl_command.as_deref().unwrap_or("-")),
                esc(a.kubectl_session.as_deref().unwrap_or("-")),
            ),
        );
    }
    let mut rules = String::new();
    for r in &a.requirements {
        let _ = write!(
            rules,
            r#"<div class="rule"><code>{}</code>{} · approvers: {} · quorum {}</div>"#,
            esc(&r.rule),
            r.reason
                .as_deref()
                .map(|x| format!(r#" — <span class="reason">{}</span>"#, esc(x)))
                .unwrap_or_default(),
            esc(&r.approvers.join(", ")),
            r.quorum,
        );
    }
    row("Rules", rules);
    row("Message", esc(&a.message));
    let votes = if a.decisions.is_empty() {
        "<span class=\"none\">no votes yet</span>".to_owned()
    } else {
        a.decisions
            .iter()
            .map(|d| {
                format!(
                    r#"<div class="vote {v}">{v} by {who} at {at} UTC{for_}{reason}</div>"#,
                    v = match d.verdict {
                        Verdict::Approve => "approved",
                        Verdict::Deny => "denied",
                    },
                    who = esc(&d.approver),
                    at = esc(&rfc3339(d.at)),
                    for_ = d
                        .for_seconds
                        .map(|f| format!(" for {}", esc(&format_duration(f))))
                        .unwrap_or_default(),
                    reason = d
                        .reason
                        .as_deref()
                        .map(|r| format!(r#": <span class="reason">{}</span>"#, esc(r)))
                        .unwrap_or_default(),
                )
            })
            .collect()
    };
    row("Votes", votes);
    row("Created", format!("{} UTC", esc(&rfc3339(a.created))));
    row("Expires", format!("{} UTC", esc(&rfc3339(a.expires))));
    let scopes: Vec<&str> = a
        .grant_limit
        .scopes
        .iter()
        .map(|s| scope_name(*s))
        .collect();
    row(
        "Grant limit",
        format!(
            "single use, or up to {} ({})",
            esc(&format_duration(a.grant_limit.max_seconds)),
            esc(&scopes.join(", "))
        ),
    );
    if let Some(g) = &a.grant {
        row(
            "Grant",
            format!(
                "{} until {} UTC, used {}",
                esc(scope_name(g.scope)),
                esc(&rfc3339(g.expires)),
                g.used
            ),
        );
    }
    row("Binding hash", format!("<code>{}</code>", esc(&a.hash)));
    s.push_str("</tbody></table>\n");
    match &a.body {
        Some(b) if !b.is_empty() => {
            let shown = serde_json::from_str::<serde_json::Value>(b)
                .map(|v| pretty(&v))
                .unwrap_or_else(|_| esc(b));
            let _ = writeln!(
                s,
                r#"<h3>Body (masked)</h3><pre class="body">{shown}</pre>"#
            );
        }
        _ => {}
    }
    if let Some(p) = &a.preview {
        s.push_str(r#"<div class="preview"><h3>Dry-run preview</h3>"#);
        if let Some(e) = p.get("dry_run_error") {
            let _ = write!(
                s,
                r#"<p class="dry-run-error">dry run failed: {}</p>"#,
                esc(e.as_str().unwrap_or(&e.to_string()))
            );
        }
        if let Some(c) = p.get("contains").and_then(|c| c.as_object()) {
            s.push_str(r#"<h4>Namespace contents</h4><table class="contains"><tbody>"#);
            for (kind, n) in c {
                let n = n.as_str().map_or_else(|| n.to_string(), str::to_owned);
                let _ = write!(
                    s,
                    r#"<tr><th>{}</th><td class="num">{}</td></tr>"#,
                    esc(kind),
                    esc(&n)
                );
            }
            s.push_str("</tbody></table>");
        }
        if let Some(d) = p.get("diff") {
            let _ = write!(s, r#"<h4>Diff</h4><pre class="diff">{}</pre>"#, pretty(d));
        }
        if let Some(o) = p.get("object") {
            let _ = write!(
                s,
                r#"<details><summary>Resulting object</summary><pre class="object">{}</pre></details>"#,
                pretty(o)
            );
        }
        s.push_str("</div>\n");
    }
    if a.state == State::Pending {
        if who.approver {
            let _ = write!(
                s,
                r#"<div class="decide"><form method="post" action="/approvals/{href}/approve" class="approve">
<input type="hidden" name="csrf" value="{csrf}">
<label>For <input name="for" placeholder="single use" size="8" title="a duration up to {max}, like 10m; empty: this one call"></label>
<label>Reason <input name="reason" size="30"></label>
<button type="submit" class="approve">Approve</button></form>
<form method="post" action="/approvals/{href}/deny" class="deny">
<input type="hidden" name="csrf" value="{csrf}">
<label>Reason <input name="reason" required size="30"></label>
<button type="submit" class="deny">Deny</button></form></div>
"#,
                href = url_component(&a.id),
                csrf = esc(&who.csrf),
                max = esc(&format_duration(a.grant_limit.max_seconds)),
            );
        } else {
            s.push_str(
                r#"<p class="read-only">You may view approvals; only members of the approver groups may decide.</p>
"#,
            );
        }
    }
    s.push_str("</section>\n");
    s
}

/// GET /approvals: pending first, then recent decisions.
pub async fn list(web: &Web, who: &Authed) -> Response<Body> {
    let Some(store) = &web.approvals else {
        return unavailable(who);
    };
    let pending = match store.list(Some(State::Pending), MAX_PENDING).await {
        Ok(v) => v,
        Err(e) => return store_error(who, e),
    };
    let recent: Vec<Approval> = match store.list(None, RECENT + pending.len()).await {
        Ok(v) => v
            .into_iter()
            .filter(|a| a.state != State::Pending)
            .take(RECENT)
            .collect(),
        Err(e) => return store_error(who, e),
    };
    let mut body = String::from(r#"<h2 class="section">Pending</h2>"#);
    if pending.is_empty() {
        body.push_str(r#"<p class="empty">No call is waiting for approval.</p>"#);
    }
    for a in &pending {
        body.push_str(&card(a, who, true));
    }
    body.push_str(r#"<h2 class="section">Recently decided</h2>"#);
    if recent.is_empty() {
        body.push_str(r#"<p class="empty">None.</p>"#);
    }
    body.push_str(r#"<div class="recent">"#);
    for a in &recent {
        body.push_str(&card(a, who, true));
    }
    body.push_str("</div>");
    page(StatusCode::OK, "Approvals", Some(who), &body)
}

async fn detail_page(
    web: &Web,
    who: &Authed,
    id: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Response<Body> {
    let Some(store) = &web.approvals else {
        return unavailable(who);
    };
    let a = match store.get(id).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return message(
                StatusCode::NOT_FOUND,
                "Approval not found",
                Some(who),
                &format!("approval {id} does not exist"),
            )
        }
        Err(e) => return store_error(who, e),
    };
    let mut body = String::from(r#"<p><a href="/approvals">← all approvals</a></p>"#);
    if let Some(e) = error {
        let _ = write!(body, r#"<p class="error" role="alert">{}</p>"#, esc(e));
    }
    body.push_str(&card(&a, who, false));
    page(status, "Approval", Some(who), &body)
}

/// GET /approvals/{id} (also where notifications link to).
pub async fn detail(web: &Web, who: &Authed, id: &str) -> Response<Body> {
    detail_page(web, who, id, StatusCode::OK, None).await
}

/// POST /approvals/{id}/approve and /approvals/{id}/deny (session and CSRF already checked).
pub async fn decide(
    web: &Web,
    who: &Authed,
    id: &str,
    verb: &str,
    form: &HashMap<String, String>,
) -> Response<Body> {
    if !who.approver {
        return message(
            StatusCode::FORBIDDEN,
            "Not allowed",
            Some(who),
            "only members of the approver groups may approve or deny",
        );
    }
    let Some(store) = &web.approvals else {
        return unavailable(who);
    };
    let field = |k: &str| {
        form.get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let action = if verb == "approve" {
        let for_ = match field("for") {
            Some(s) => match parse_duration(&s) {
                Some(d) => Some(d),
                None => {
                    return detail_page(
                        web,
                        who,
                        id,
                        StatusCode::BAD_REQUEST,
                        Some(&format!("for: {s:?} is not a duration like 30m or 1h")),
                    )
                    .await
                }
            },
            None => None,
        };
        Action::Approve {
            for_,
            scope: None,
            reason: field("reason"),
        }
    } else {
        Action::Deny {
            reason: field("reason").unwrap_or_default(),
        }
    };
    match store.decide(id, &person(who), action).await {
        Ok(a) => {
            tracing::info!(approval = %a.id, approver = %who.user, decision = %verb, state = a.state.as_str(), "approval decision (web)");
            redirect(&format!("/approvals/{}", url_component(id)))
        }
        Err(ApprovalsError::Decide(d)) => {
            let status = StatusCode::from_u16(d.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            detail_page(web, who, id, status, Some(&d.to_string())).await
        }
        Err(e) => store_error(who, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval() -> Approval {
        serde_json::from_value(serde_json::json!({
            "id": "ab\"c",
            "state": "pending",
            "hash": "h",
            "created": 0,
            "expires": 60,
            "requester": {"user": "<b>agent</b>", "groups": ["g&1"]},
            "target": {"cluster": "demo", "method": "DELETE", "path": "/api/v1/namespaces/x",
                "verb": "delete", "api_group": "", "api_version": "v1", "resource": "namespaces",
                "subresource": "", "namespace": "", "name": "x"},
            "command": "kubectl delete namespace x</code><script>alert(1)</script>",
            "intent": "<img src=x>",
            "body": "{\"k\":\"</pre>\"}",
            "body_sha256": "s",
            "message": "m",
            "requirements": [{"rule": "r<1>", "reason": "why'", "approvers": ["approvers"], "quorum": 1}],
            "grant_limit": {"max_seconds": 3600, "scopes": ["request"]},
            "decisions": [],
            "preview": {"contains": {"pods<": "500+"}, "object": {"a": "<x>"}}
        }))
        .unwrap()
    }

    fn who(approver: bool) -> Authed {
        Authed {
            user: "alice".into(),
            groups: vec!["approvers".into()],
            csrf: "tok\"en".into(),
            approver,
        }
    }

    #[test]
    fn everything_is_escaped_and_viewers_get_no_forms() {
        let a = approval();
        let html = card(&a, &who(true), true);
        for raw in [
            "<script>", "<b>agent", "<img", "</pre>\"", "r<1>", "pods<", "<x>", "tok\"en",
        ] {
            assert!(!html.contains(raw), "{raw} unescaped in {html}");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains(r#"action="/approvals/ab%22c/approve""#));
        assert!(html.contains(r#"name="csrf" value="tok&quot;en""#));
        assert!(html.contains("500+"));
        let viewer = card(&a, &who(false), true);
        assert!(!viewer.contains("<form") && !viewer.contains("<button"));
        assert!(viewer.contains("only members of the approver groups"));
    }

    /// The requester of an approval sees neither its body nor the dry-run preview (both show
    /// values of its choosing masked under the real objects' bindings, and the diff answers
    /// guesses); anyone else who may see it does.
    #[test]
    fn requesters_see_no_body_and_no_preview() {
        let mut a = approval();
        a.requester.user = "alice".into();
        let own = card(&a, &who(false), true);
        assert!(
            !own.contains("500+") && !own.contains("&lt;/pre&gt;"),
            "{own}"
        );
        assert!(own.contains("not shown to the requester"), "{own}");
        let other = card(&approval(), &who(true), true);
        assert!(other.contains("500+"));
    }

    async fn web_with(
        approvals: std::sync::Arc<approvals::Approvals>,
        dir: &std::path::Path,
    ) -> Web {
        let settings = crate::config::WebSettings {
            issuer: "http://127.0.0.1:1".into(),
            client_id: "airlock-web".into(),
            client_secret_file: None,
            base_url: None,
            viewer_groups: vec!["sre".into()],
            approver_groups: vec!["approvers".into()],
            scopes: vec!["openid".into()],
            username_claim: "sub".into(),
            groups_claim: "groups".into(),
            session_ttl: std::time::Duration::from_secs(60),
            ca_file: None,
            allow_insecure_http: true,
        };
        let url = format!("sqlite://{}", dir.join("audit.db").display());
        let store = store::Store::open(&url).await.unwrap();
        Web::new(&settings, "127.0.0.1:9".parse().unwrap(), store)
            .unwrap()
            .with_approvals(approvals)
    }

    async fn text(r: Response<Body>) -> String {
        use http_body_util::BodyExt as _;
        let b = r.into_body().collect().await.ok().unwrap().to_bytes();
        String::from_utf8_lossy(&b).into_owned()
    }

    /// The POST handler's answers: self-approval and a viewer refused, a decision redirected
    /// to the detail page, which then shows it.
    #[tokio::test]
    async fn decisions_through_the_store() {
        let dir =
            std::env::temp_dir().join(format!("airlock-web-approvals-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = std::sync::Arc::new(approvals::Approvals::in_memory().unwrap());
        let alice = Person {
            user: "alice".into(),
            groups: vec!["approvers".into()],
            session_id: None,
            client_id: None,
        };
        let target = approvals::Target {
            cluster: "demo".into(),
            method: "DELETE".into(),
            path: "/api/v1/namespaces/shop".into(),
            verb: "delete".into(),
            resource: "namespaces".into(),
            name: "shop".into(),
            ..Default::default()
        };
        let new = approvals::NewApproval {
            hash: approvals::binding_hash(&target, b"", &alice),
            requester: alice.clone(),
            target,
            command: "kubectl delete namespace shop".into(),
            intent: None,
            kubectl_command: None,
            kubectl_session: None,
            masked_body: None,
            body_sha256: approvals::sha256_hex(b""),
            message: "approval required".into(),
            requirements: vec![approvals::Requirement {
                rule: "approve-namespace-delete".into(),
                reason: None,
                approvers: vec!["approvers".into()],
                quorum: 1,
            }],
            grant_limit: serde_json::from_value(
                serde_json::json!({"max_seconds": 3600, "scopes": ["request"]}),
            )
            .unwrap(),
        };
        let approvals::Admission::Held { approval, .. } = store.admit(new, "req-1").await.unwrap()
        else {
            panic!("a new approval must hold the call");
        };
        let id = approval.id;
        let web = web_with(store.clone(), &dir).await;
        let form: HashMap<String, String> = [("reason".to_owned(), "ok".to_owned())].into();

        let r = decide(&web, &who(true), &id, "approve", &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(text(r)
            .await
            .contains("self-approval is refused: alice asked for this call"));

        let r = decide(&web, &who(false), &id, "deny", &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);

        let dave = Authed {
            user: "dave".into(),
            ..who(true)
        };
        let bad = [("for".to_owned(), "soon".to_owned())].into();
        assert_eq!(
            decide(&web, &dave, &id, "approve", &bad).await.status(),
            StatusCode::BAD_REQUEST
        );
        let r = decide(&web, &dave, &id, "deny", &form).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            r.headers()[http::header::LOCATION],
            format!("/approvals/{id}").as_str()
        );
        assert_eq!(store.get(&id).await.unwrap().unwrap().state, State::Denied);
        let page = text(detail(&web, &dave, &id).await).await;
        assert!(
            page.contains("denied by dave")
                && !page.contains("<form method=\"post\" action=\"/approvals/")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
