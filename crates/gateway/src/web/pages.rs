//! `/sessions` and `/sessions/{id}`: the agent sessions of the audit log and one session's
//! timeline, with a player for exec/attach recordings. The grouping is the CLI's
//! (`store::sessions`), so `airlock sessions list` and this page agree.

use std::{collections::HashMap, fmt::Write as _, time::Duration};

use http::{Response, StatusCode};
use serde_json::json;
use store::{sessions, Filter, Timestamp};

use super::{
    auth::Authed,
    html::{esc, json_in_html, message, page, url_component},
    Web,
};
use crate::body::Body;

/// Sessions shown on the list page at most (newest first).
const MAX_LISTED: usize = 500;

fn params(query: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k.into_owned(), v.trim().to_owned()))
        .collect()
}

/// `2026-11-26 14:21:19.123`, UTC.
fn when(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    s.get(..23).unwrap_or(&s).replacen('T', " ", 1)
}

fn gap(p: &HashMap<String, String>) -> Result<Duration, String> {
    sessions::parse_duration(p.get("gap").map_or("30m", String::as_str))
}

fn store_error(who: &Authed, e: store::StoreError) -> Response<Body> {
    tracing::warn!(error = %e, "web: cannot read the audit store");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Audit log unavailable",
        Some(who),
        "the audit store cannot be read right now; see the gateway's log",
    )
}

/// GET /sessions?user=&since=&until=&gap=
pub async fn list(web: &Web, who: &Authed, query: Option<&str>) -> Response<Body> {
    let p = params(query);
    let bad = |e: String| message(StatusCode::BAD_REQUEST, "Sessions", Some(who), &e);
    let mut filter = Filter {
        user: p.get("user").cloned(),
        ..Filter::default()
    };
    for (key, slot) in [("since", &mut filter.since), ("until", &mut filter.until)] {
        if let Some(v) = p.get(key) {
            match sessions::parse_time(v) {
                Ok(t) => *slot = Some(t),
                Err(e) => return bad(format!("{key}: {e}")),
            }
        }
    }
    let gap = match gap(&p) {
        Ok(g) => g,
        Err(e) => return bad(format!("gap: {e}")),
    };
    let all = match sessions::requests(&web.store, filter).await {
        Ok(r) => sessions::group(r, gap),
        Err(e) => return store_error(who, e),
    };

    let field = |k: &str| esc(p.get(k).map_or("", String::as_str));
    let mut body = format!(
        r#"<form method="get" action="/sessions" class="filters">
<label>User <input name="user" value="{}" placeholder="agent@demo"></label>
<label>Since <input name="since" value="{}" placeholder="2h or RFC 3339"></label>
<label>Until <input name="until" value="{}" placeholder="RFC 3339"></label>
<label>Gap <input name="gap" value="{}" placeholder="30m" size="5"></label>
<button type="submit">Filter</button></form>
"#,
        field("user"),
        field("since"),
        field("until"),
        field("gap"),
    );
    if all.is_empty() {
        body.push_str(r#"<p class="empty">No sessions match.</p>"#);
        return page(StatusCode::OK, "Sessions", Some(who), &body);
    }
    let _ = write!(
        body,
        r#"<p>{} session(s){}.</p>
<table class="sessions"><thead><tr><th>Session</th><th>User</th><th>Start</th><th>Last request</th><th>Requests</th><th>Denied</th><th>Streams</th><th>First command</th></tr></thead><tbody>
"#,
        all.len(),
        if all.len() > MAX_LISTED {
            format!(", the newest {MAX_LISTED} shown")
        } else {
            String::new()
        }
    );
    // Identity-only sessions are named by the gap they were grouped with; keep it in links.
    let gap_q = p
        .get("gap")
        .map(|g| format!("?gap={}", url_component(g)))
        .unwrap_or_default();
    for s in all.iter().rev().take(MAX_LISTED) {
        let _ = writeln!(
            body,
            r#"<tr><td><a class="session" href="/sessions/{href}{gap_q}">{id}</a></td><td>{user}</td><td>{start}</td><td>{end}</td><td class="num">{n}</td><td class="num{denied_class}">{denied}</td><td class="num">{streams}</td><td><code>{cmd}</code></td></tr>"#,
            href = url_component(&s.id),
            id = esc(&s.id),
            user = esc(&s.user),
            start = when(s.start),
            end = when(s.end),
            n = s.requests.len(),
            denied = s.denied(),
            denied_class = if s.denied() > 0 { " denied" } else { "" },
            streams = s.streams(),
            cmd = esc(s
                .requests
                .first()
                .and_then(|r| r.command.as_deref())
                .unwrap_or("")),
        );
    }
    body.push_str("</tbody></table>\n");
    page(StatusCode::OK, "Sessions", Some(who), &body)
}

/// GET /sessions/{id}: the timeline and the recordings.
pub async fn detail(web: &Web, who: &Authed, id: &str, query: Option<&str>) -> Response<Body> {
    let p = params(query);
    let gap = match gap(&p) {
        Ok(g) => g,
        Err(e) => return message(StatusCode::BAD_REQUEST, "Session", Some(who), &e),
    };
    let requests = match sessions::find(&web.store, id, gap).await {
        Ok(r) => r,
        Err(e) => return store_error(who, e),
    };
    if requests.is_empty() {
        return message(
            StatusCode::NOT_FOUND,
            "Session not found",
            Some(who),
            &format!("no session or request {id:?} in the audit log"),
        );
    }
    let steps = match sessions::steps(&web.store, requests).await {
        Ok(s) => s,
        Err(e) => return store_error(who, e),
    };
    let first = &steps[0].request;
    let last = &steps[steps.len() - 1].request;
    let mut body = format!(
        r#"<p class="summary"><span class="label">Session</span> <code>{id}</code> · <span class="label">user</span> {user} · {start} – {end} UTC · {n} request(s)</p>
<p><a href="/sessions">← all sessions</a></p>
<table class="timeline"><thead><tr><th>Time (UTC)</th><th>Identity</th><th>Command</th><th>Decision</th><th>Status</th><th>Approvals</th></tr></thead><tbody>
"#,
        id = esc(id),
        user = esc(&first.identity.user),
        start = when(first.received_at),
        end = when(last.received_at),
        n = steps.len(),
    );
    let mut players = String::new();
    for (i, step) in steps.iter().enumerate() {
        let r = &step.request;
        let decision = r.decision.as_ref();
        let action = decision.map_or("-", |d| d.action.as_str());
        let mut why = String::new();
        if let Some(d) = decision {
            let rules: Vec<String> = d.rules.iter().map(|m| esc(&m.name)).collect();
            if !rules.is_empty() {
                let _ = write!(why, r#"<div class="rules">{}</div>"#, rules.join(", "));
            }
            if let Some(reason) = &d.reason {
                let _ = write!(why, r#"<div class="reason">{}</div>"#, esc(reason));
            }
        }
        let groups = if r.identity.groups.is_empty() {
            String::new()
        } else {
            format!(
                r#"<div class="groups">{}</div>"#,
                esc(&r.identity.groups.join(", "))
            )
        };
        let mut command = format!("<code>{}</code>", esc(r.command.as_deref().unwrap_or("-")));
        if let Some(intent) = &r.intent {
            let _ = write!(
                command,
                r#"<div class="intent">intent: {}</div>"#,
                esc(intent)
            );
        }
        if step.recording.is_some() {
            let _ = write!(
                command,
                r##" <a class="rec-link" href="#rec-{i}">▶ recording</a>"##
            );
        }
        let status = step.status.map_or("-".to_owned(), |s| s.to_string());
        let status_class = match step.status {
            Some(s) if s >= 400 => " error",
            _ => "",
        };
        let _ = writeln!(
            body,
            r#"<tr class="step"><td>{time}</td><td>{user}{groups}</td><td>{command}</td><td class="decision {action_class}">{action}{why}</td><td class="num{status_class}">{status}</td><td>{approvals}</td></tr>"#,
            time = when(r.received_at),
            user = esc(&r.identity.user),
            action_class = esc(action),
            action = esc(action),
            approvals = esc(&step.approvals.join(", ")),
        );
        if let Some(rec) = &step.recording {
            let data = json!({
                "width": rec.width,
                "height": rec.height,
                "events": rec.cast_events(),
            });
            let _ = write!(
                players,
                r#"<section class="recording" id="rec-{i}"><h3>{time} <code>{cmd}</code></h3>
<div class="player" data-source="rec-data-{i}"><div class="controls"><button type="button" class="play">Play</button> <button type="button" class="restart">Restart</button> <label>Speed <select class="speed"><option value="0.5">0.5×</option><option value="1" selected>1×</option><option value="2">2×</option><option value="8">8×</option><option value="0">instant</option></select></label> <span class="clock">0.0 s</span></div>
<pre class="screen" aria-live="polite"></pre></div>
<script type="application/json" id="rec-data-{i}">{data}</script></section>
"#,
                time = when(r.received_at),
                cmd = esc(r.command.as_deref().unwrap_or("")),
                data = json_in_html(&data),
            );
        }
    }
    body.push_str("</tbody></table>\n");
    if !players.is_empty() {
        body.push_str("<h2>Recordings</h2>\n");
        body.push_str(&players);
    }
    page(StatusCode::OK, "Session", Some(who), &body)
}
