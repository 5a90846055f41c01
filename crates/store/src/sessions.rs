//! Read-side views over the log that both `airlock sessions`/`replay` and the web UI show:
//! agent sessions, the lookup of one session, and exec/attach recordings rebuilt from
//! `stream_event` records.
//!
//! Grouping (docs/audit.md, "Sessions"):
//! - by the token's `sid` or an `X-Airlock-Session` header (`Identity::session_id`) when present;
//! - otherwise by user, a new session after `gap` of silence, named `USER@START` (the first
//!   request's receive time, RFC 3339).

use std::{collections::HashMap, time::Duration};

use base64::Engine as _;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{AuditRecord, Filter, RecordKind, Result, Store, Timestamp};

/// One agent session: its request records, oldest first.
#[derive(Clone, Debug)]
pub struct Session {
    /// The `sid`/`X-Airlock-Session` value, or `USER@START`.
    pub id: String,
    /// The user of its first request.
    pub user: String,
    /// First request received.
    pub start: Timestamp,
    /// Last request received.
    pub end: Timestamp,
    /// Its `request` records, oldest first.
    pub requests: Vec<AuditRecord>,
}

impl Session {
    /// Requests whose decision was neither `allow` nor `approve`.
    pub fn denied(&self) -> usize {
        self.requests
            .iter()
            .filter(|r| {
                r.decision
                    .as_ref()
                    .is_some_and(|d| d.action != "allow" && d.action != "approve")
            })
            .count()
    }

    /// Exec, attach and port-forward requests.
    pub fn streams(&self) -> usize {
        self.requests.iter().filter(|r| is_stream(r)).count()
    }
}

/// Whether a request opened a stream (exec, attach, port-forward).
pub fn is_stream(r: &AuditRecord) -> bool {
    matches!(
        r.subresource.as_deref(),
        Some("exec" | "attach" | "portforward")
    )
}

/// Groups request records into agent sessions, in order of their first request.
pub fn group(mut requests: Vec<AuditRecord>, gap: Duration) -> Vec<Session> {
    requests.sort_by_key(|r| r.received_at);
    let mut out: Vec<Session> = Vec::new();
    let mut by_sid: HashMap<String, usize> = HashMap::new();
    let mut by_user: HashMap<String, usize> = HashMap::new();
    let gap_us = i64::try_from(gap.as_micros()).unwrap_or(i64::MAX);
    for r in requests {
        let t = r.received_at;
        let idx = match &r.identity.session_id {
            Some(sid) => *by_sid.entry(sid.clone()).or_insert_with(|| {
                out.push(Session {
                    id: sid.clone(),
                    user: r.identity.user.clone(),
                    start: t,
                    end: t,
                    requests: Vec::new(),
                });
                out.len() - 1
            }),
            None => {
                let user = r.identity.user.clone();
                match by_user.get(&user) {
                    Some(&i) if micros(t).saturating_sub(micros(out[i].end)) <= gap_us => i,
                    _ => {
                        out.push(Session {
                            id: format!("{user}@{}", t.to_rfc3339()),
                            user: user.clone(),
                            start: t,
                            end: t,
                            requests: Vec::new(),
                        });
                        by_user.insert(user, out.len() - 1);
                        out.len() - 1
                    }
                }
            }
        };
        let s = &mut out[idx];
        s.end = s.end.max(t);
        s.requests.push(r);
    }
    out
}

fn micros(t: Timestamp) -> i64 {
    t.unix_nanos() / 1000
}

/// Every `request` record matching `filter` (its `kind` is overridden).
pub async fn requests(store: &Store, mut filter: Filter) -> Result<Vec<AuditRecord>> {
    filter.kind = Some(RecordKind::Request);
    let mut export = store.export(filter);
    let mut out = Vec::new();
    while let Some(r) = export.next().await? {
        out.push(r);
    }
    Ok(out)
}

/// The request records of what `name` names, oldest first: a request id, else an IdP or
/// kubectl session id (`sid`, `X-Airlock-Session`, `Kubectl-Session`), else a `USER@START`
/// session from [`group`] with `gap`. Empty when nothing matches.
pub async fn find(store: &Store, name: &str, gap: Duration) -> Result<Vec<AuditRecord>> {
    let mut chosen: Vec<AuditRecord> = match Uuid::parse_str(name) {
        Ok(id) => store
            .get(id)
            .await?
            .into_iter()
            .filter(|r| r.kind == RecordKind::Request)
            .collect(),
        Err(_) => Vec::new(),
    };
    if chosen.is_empty() {
        let filter = Filter {
            session: Some(name.to_owned()),
            ..Filter::default()
        };
        chosen = requests(store, filter).await?;
    }
    if chosen.is_empty() {
        // `USER@START`: only that user's requests can belong to it.
        let filter = Filter {
            user: name.rsplit_once('@').map(|(u, _)| u.to_owned()),
            ..Filter::default()
        };
        chosen = group(requests(store, filter).await?, gap)
            .into_iter()
            .find(|s| s.id == name)
            .map(|s| s.requests)
            .unwrap_or_default();
    }
    chosen.sort_by_key(|r| r.received_at);
    Ok(chosen)
}

/// What the timeline shows of one request, from all of its records.
#[derive(Clone, Debug)]
pub struct Step {
    /// The `request` record.
    pub request: AuditRecord,
    /// The outcome's HTTP status, when the outcome is recorded.
    pub status: Option<u16>,
    /// `"approved by alice"`, ...
    pub approvals: Vec<String>,
    /// The exec/attach recording, when the request has stream events.
    pub recording: Option<Recording>,
}

/// Loads the outcome, approvals and recording of each request.
pub async fn steps(store: &Store, requests: Vec<AuditRecord>) -> Result<Vec<Step>> {
    let mut out = Vec::with_capacity(requests.len());
    for request in requests {
        let all = store.get(request.id).await?;
        let status = all
            .iter()
            .find_map(|x| x.outcome.as_ref().map(|o| o.status));
        let approvals = all
            .iter()
            .flat_map(|x| x.approvals.iter())
            .map(|a| format!("{} by {}", a.decision, a.approver))
            .collect();
        let events: Vec<&AuditRecord> = all
            .iter()
            .filter(|x| x.kind == RecordKind::StreamEvent)
            .collect();
        let recording = (!events.is_empty()).then(|| Recording::from_records(&events));
        out.push(Step {
            request,
            status,
            approvals,
            recording,
        });
    }
    Ok(out)
}

/// One exec/attach stream, rebuilt from its stream-event records.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    /// (microseconds since the stream opened, kind, bytes). Kinds: `stdin`, `stdout`,
    /// `stderr`, `resize` (bytes `WxH`), `exit`, ...
    pub events: Vec<(u64, String, Vec<u8>)>,
    /// Port-forward connections: opened, data (when `audit.port_forward_contents` is on),
    /// closed; in time order.
    pub ports: Vec<PortEvent>,
    /// Terminal size: the first resize, else 80x24.
    pub width: u32,
    /// See `width`.
    pub height: u32,
}

/// One port-forward event of a [`Recording`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortEvent {
    /// Microseconds since the tunnel opened.
    pub t_us: u64,
    /// Pod port.
    pub port: u16,
    /// The tunnel's stream id (SPDY stream or WebSocket channel pair).
    pub stream: u32,
    /// What happened.
    pub what: PortEventKind,
}

/// See [`PortEvent`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortEventKind {
    /// A connection's stream opened.
    Open {
        /// `data`, or `error` for the stream kubelet reports errors on.
        channel: String,
    },
    /// Bytes one way, as recorded (masked).
    Data {
        /// Towards the pod, else back from it.
        to_pod: bool,
        /// `None` when masking failed and the bytes were left out.
        data: Option<Vec<u8>>,
    },
    /// Closed.
    Close {
        /// Bytes sent to the pod.
        bytes_in: u64,
        /// Bytes received from the pod.
        bytes_out: u64,
    },
}

impl Recording {
    /// Stream-event records carry `extra.event` (`stdin`, `stdout`, `stderr`, `resize`,
    /// `exit`, ...), `extra.t_us` and, for data, `extra.data` (base64 of the masked bytes).
    pub fn from_records(records: &[&AuditRecord]) -> Recording {
        // The gateway writes several events per record (`extra.events`), in order; one event
        // per record (`extra.event`, ...) is read too.
        let mut sorted: Vec<&&AuditRecord> = records.iter().collect();
        sorted.sort_by_key(|r| (r.replica_id.clone(), r.seq));
        let mut all: Vec<&Value> = Vec::new();
        for r in &sorted {
            if let Some(list) = r.extra.get("events").and_then(Value::as_array) {
                all.extend(list.iter());
            }
        }
        let singles: Vec<Value> = sorted
            .iter()
            .filter(|r| !r.extra.contains_key("events") && r.extra.contains_key("event"))
            .map(|r| Value::Object(r.extra.clone().into_iter().collect()))
            .collect();
        all.extend(singles.iter());
        let mut events = Vec::new();
        let mut ports = Vec::new();
        let (mut width, mut height) = (80, 24);
        let mut sized = false;
        for e in all {
            let kind = e
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let t = e.get("t_us").and_then(Value::as_u64).unwrap_or(0);
            if let Some(what) = kind.strip_prefix("portforward_") {
                let num = |k: &str| e.get(k).and_then(Value::as_u64).unwrap_or(0);
                let what = match what {
                    "open" => PortEventKind::Open {
                        channel: e
                            .get("channel")
                            .and_then(Value::as_str)
                            .unwrap_or("data")
                            .to_owned(),
                    },
                    "data" => PortEventKind::Data {
                        to_pod: e.get("to_pod").and_then(Value::as_bool).unwrap_or(false),
                        data: e
                            .get("data")
                            .and_then(Value::as_str)
                            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok()),
                    },
                    "close" => PortEventKind::Close {
                        bytes_in: num("bytes_in"),
                        bytes_out: num("bytes_out"),
                    },
                    _ => continue,
                };
                ports.push(PortEvent {
                    t_us: t,
                    port: u16::try_from(num("port")).unwrap_or(0),
                    stream: u32::try_from(num("stream")).unwrap_or(0),
                    what,
                });
                continue;
            }
            if kind == "resize" {
                let dim = |k: &str, d: u64| {
                    let v = e.get(k).and_then(Value::as_u64).unwrap_or(d);
                    u32::try_from(v).unwrap_or(u32::MAX)
                };
                let (w, h) = (dim("width", 80), dim("height", 24));
                if !sized {
                    (width, height, sized) = (w, h, true);
                }
                events.push((t, kind, format!("{w}x{h}").into_bytes()));
                continue;
            }
            let data = e
                .get("data")
                .and_then(Value::as_str)
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                .unwrap_or_default();
            events.push((t, kind, data));
        }
        // Each direction is in order; merge the directions by time (stable).
        events.sort_by_key(|(t, _, _)| *t);
        ports.sort_by_key(|p| p.t_us);
        Recording {
            events,
            ports,
            width,
            height,
        }
    }

    /// The output and input events as asciicast v2 event arrays, `[seconds, "o"|"i"|"r",
    /// text]`; stderr is output too (a terminal shows both).
    pub fn cast_events(&self) -> Vec<Value> {
        self.events
            .iter()
            .filter_map(|(t, kind, data)| {
                let code = match kind.as_str() {
                    "stdout" | "stderr" => "o",
                    "stdin" => "i",
                    "resize" => "r",
                    _ => return None,
                };
                Some(json!([
                    *t as f64 / 1e6,
                    code,
                    String::from_utf8_lossy(data)
                ]))
            })
            .collect()
    }

    /// asciicast v2: a header line, then one event array per line.
    pub fn to_asciicast(&self, request: &AuditRecord) -> String {
        let header = json!({
            "version": 2,
            "width": self.width,
            "height": self.height,
            "timestamp": request.received_at.unix_nanos() / 1_000_000_000,
            "title": request.command.clone().unwrap_or_default(),
        });
        let mut out = header.to_string();
        out.push('\n');
        for line in self.cast_events() {
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out
    }
}

/// `30m`, `2h`, `45s`, `1d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30m"))?;
    let secs = match unit {
        "s" | "" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86400),
        _ => return Err(format!("{s:?} is not a duration like 30s, 30m, 2h or 1d")),
    };
    secs.map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// RFC 3339, or a duration before now (`2h`).
pub fn parse_time(s: &str) -> std::result::Result<Timestamp, String> {
    if let Ok(t) = Timestamp::parse_rfc3339(s) {
        return Ok(t);
    }
    let ago = parse_duration(s)?;
    let then = std::time::SystemTime::now()
        .checked_sub(ago)
        .ok_or_else(|| format!("{s:?} is too long ago"))?;
    Ok(Timestamp::from_system_time(then))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Option<u64>)] = &[
            ("30m", Some(1800)),
            ("2h", Some(7200)),
            ("45", Some(45)),
            ("1d", Some(86400)),
            ("x", None),
            ("3w", None),
            ("99999999999999999999d", None),
        ];
        for (input, want) in cases {
            let got = parse_duration(input).ok().map(|d| d.as_secs());
            assert_eq!(got, *want, "{input}");
        }
    }

    #[test]
    fn sessions_group_by_sid_then_by_gap() {
        let at = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        let rec = |user: &str, sid: Option<&str>, t: &str| {
            let mut r = AuditRecord::new(Uuid::new_v4(), RecordKind::Request, at(t));
            r.identity.user = user.into();
            r.identity.session_id = sid.map(Into::into);
            r
        };
        let all = group(
            vec![
                rec("a", None, "2026-01-01T10:00:00Z"),
                rec("a", None, "2026-01-01T10:10:00Z"),
                rec("a", None, "2026-01-01T11:00:00Z"),
                rec("b", Some("s1"), "2026-01-01T10:00:00Z"),
                rec("b", Some("s1"), "2026-01-01T15:00:00Z"),
            ],
            Duration::from_secs(1800),
        );
        let shape: Vec<(String, usize)> = all
            .iter()
            .map(|s| (s.id.clone(), s.requests.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                ("a@2026-01-01T10:00:00.000000000Z".to_owned(), 2),
                ("s1".to_owned(), 2),
                ("a@2026-01-01T11:00:00.000000000Z".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn recording_from_stream_events() {
        let ev = |seq: u64, extra: Value| {
            let mut r = AuditRecord::new(Uuid::nil(), RecordKind::StreamEvent, Timestamp::now());
            r.seq = seq;
            r.extra = serde_json::from_value(extra).unwrap();
            r
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let records = [
            ev(
                3,
                json!({"event": "stdout", "t_us": 2_000_000, "data": b64("world\r\n")}),
            ),
            ev(
                1,
                json!({"event": "resize", "t_us": 0, "width": 100, "height": 30}),
            ),
            ev(
                2,
                json!({"event": "stdout", "t_us": 1_000, "data": b64("hello ")}),
            ),
            ev(4, json!({"event": "exit", "t_us": 2_000_001})),
        ];
        let refs: Vec<&AuditRecord> = records.iter().collect();
        let rec = Recording::from_records(&refs);
        assert_eq!((rec.width, rec.height), (100, 30));
        assert_eq!(
            rec.cast_events(),
            vec![
                json!([0.0, "r", "100x30"]),
                json!([0.001, "o", "hello "]),
                json!([2.0, "o", "world\r\n"]),
            ]
        );
    }
}
