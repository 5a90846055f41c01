//! Watch streams: one JSON watch event per line, flushed per event, with upstream's
//! resourceVersion semantics (unset/"0": synthetic ADDED for current objects then live;
//! N: replay retained changes after N then live; too old: an ERROR event with 410 Expired),
//! optional bookmarks and `sendInitialEvents`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::{render_for_version, Scope};
use crate::discovery::ResourceInfo;
use crate::error::ApiError;
use crate::http::Output;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Event, EventType, Store, Subscription};
use crate::table::{partial_metadata, to_table, IncludeObject};
use crate::Body;

/// How often bookmarks are sent when `allowWatchBookmarks=true`. Upstream sends them about
/// once a minute; shorter here so tests see them without waiting.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// Everything a watch needs, resolved by the router.
pub struct WatchRequest {
    /// Resource being watched (the requested version).
    pub info: ResourceInfo,
    /// Namespace filter.
    pub scope: Scope,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Output format of event objects.
    pub output: Output,
    /// `includeObject` for Table events.
    pub include: IncludeObject,
    /// Query parameters.
    pub query: HashMap<String, String>,
}

fn matches(w: &WatchRequest, obj: &Value) -> bool {
    let ns_ok = match &w.scope {
        Scope::Namespace(ns) => obj["metadata"]["namespace"].as_str() == Some(ns.as_str()),
        Scope::All => true,
    };
    ns_ok && w.labels.matches(&obj["metadata"]["labels"]) && w.fields.matches(obj)
}

/// The event type a watcher with selectors sees for a change, if any: a modification that
/// makes an object start matching is ADDED, one that makes it stop matching is DELETED.
fn event_type(w: &WatchRequest, ev: &Event) -> Option<&'static str> {
    let now = matches(w, &ev.object);
    match (ev.kind, ev.previous.as_ref().map(|p| matches(w, p))) {
        (EventType::Modified, Some(false)) if now => Some("ADDED"),
        (EventType::Modified, Some(true)) if !now => Some("DELETED"),
        (kind, _) if now => Some(kind.as_str()),
        _ => None,
    }
}

fn render(w: &WatchRequest, kind: &str, obj: &Value) -> Value {
    let obj = render_for_version(&w.info, obj);
    let object = match &w.output {
        Output::Table(v) => to_table(&w.info.kind, &[obj], w.include, v, "", None),
        Output::Metadata(v) => partial_metadata(&obj, v),
        _ => obj,
    };
    json!({"type": kind, "object": crate::http::in_go_order(&object)})
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// A boolean query parameter as apimachinery reads it: anything but `0` and `false` (any case)
/// is true. The Python client sends `watch=True`.
pub(crate) fn query_true(v: &str) -> bool {
    !(v == "0" || v.eq_ignore_ascii_case("false"))
}

fn bookmark(w: &WatchRequest, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"type": "BOOKMARK", "object": {"kind": w.info.kind, "apiVersion": w.info.api_version(), "metadata": meta}})
}

/// Starts a watch and returns the streaming response.
pub fn serve(store: Arc<Store>, w: WatchRequest) -> Response<Body> {
    let q = |k: &str| w.query.get(k).map(String::as_str);
    let bookmarks = q("allowWatchBookmarks").is_some_and(query_true);
    let send_initial = q("sendInitialEvents").is_some_and(query_true);
    let timeout = q("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let key = (w.info.group.clone(), w.info.plural.clone());

    let ct = match &w.output {
        Output::Table(v) => format!("application/json;as=Table;v={v};g=meta.k8s.io"),
        _ => "application/json".to_string(),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let start: Result<(Vec<Value>, Option<u64>, Subscription), ApiError> =
        match q("resourceVersion").filter(|rv| !rv.is_empty() && *rv != "0") {
            Some(rv) if !send_initial => match rv.parse::<u64>() {
                Ok(n) => match store.watch_from(n) {
                    Ok((replay, rx)) => {
                        let lines = replay
                            .into_iter()
                            .filter(|e| e.key == key)
                            .filter_map(|e| event_type(&w, &e).map(|t| render(&w, t, &e.object)))
                            .collect();
                        Ok((lines, None, rx))
                    }
                    Err(old) => Err(ApiError::new(
                        410,
                        "Expired",
                        format!(
                            "too old resource version: {} ({})",
                            old.requested, old.oldest
                        ),
                    )),
                },
                Err(_) => Err(ApiError::bad_request(format!(
                    "invalid resource version: {rv}"
                ))),
            },
            _ => {
                let ns = match &w.scope {
                    Scope::Namespace(n) => Some(n.as_str()),
                    Scope::All => None,
                };
                let (items, rv, rx) = store.watch_snapshot(&key, ns);
                let lines = items
                    .iter()
                    .filter(|o| matches(&w, o))
                    .map(|o| render(&w, "ADDED", o))
                    .collect();
                Ok((lines, if send_initial { Some(rv) } else { None }, rx))
            }
        };

    tokio::spawn(async move {
        let (initial, initial_end_rv, mut live) = match start {
            Ok(s) => s,
            Err(e) => {
                let _ = tx
                    .send(line(&json!({"type": "ERROR", "object": e.to_status()})))
                    .await;
                return;
            }
        };
        for ev in initial {
            if tx.send(line(&ev)).await.is_err() {
                return;
            }
        }
        if let Some(rv) = initial_end_rv {
            if tx.send(line(&bookmark(&w, rv, true))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        let mut last_rv = store.current_rv();
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tick.tick(), if bookmarks => {
                    if tx.send(line(&bookmark(&w, last_rv, false))).await.is_err() {
                        return;
                    }
                }
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        last_rv = ev.rv;
                        if ev.key != key {
                            continue;
                        }
                        if let Some(t) = event_type(&w, &ev) {
                            if tx.send(line(&render(&w, t, &ev.object))).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Lagged or closed: end the stream; the client re-lists and re-watches.
                    Err(_) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });

    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
            .map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b)));
    let body = BodyExt::boxed(StreamBody::new(stream));
    let mut resp = Response::new(body);
    if let Ok(h) = ct.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, h);
    }
    resp.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache, private"),
    );
    resp
}
