//! Test introspection: a record of every API request, served on a separate plain-HTTP
//! loopback listener (`GET /requests`, `DELETE /requests`, `GET /objects`).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use hyper::{body::Incoming, Method, Request, Response};
use serde_json::{json, Map, Value};

use crate::http::{json as json_resp, text};
use crate::store::Store;
use crate::Body;

/// Everything recorded about one request.
#[derive(Debug, Clone)]
pub struct Record {
    /// Arrival order, from 1.
    pub seq: u64,
    /// RFC 3339 time.
    pub time: String,
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// All headers, lowercase names, values in order.
    pub headers: Map<String, Value>,
    /// Effective user after impersonation ("" when unauthenticated).
    pub user: String,
    /// Effective groups.
    pub groups: Vec<String>,
    /// Audit-ID we answered with.
    pub audit_id: String,
    /// "HTTP/1.1" or "HTTP/2".
    pub protocol: String,
}

/// Most records kept: the oldest go first. Tests look at a few hundred; a benchmark or a demo
/// left running sends millions, which must not grow the simulator without bound.
const MAX_RECORDS: usize = 100_000;

/// The request log: the last [`MAX_RECORDS`] requests.
#[derive(Default)]
pub struct Recorder {
    inner: Mutex<(u64, VecDeque<Record>)>,
}

// === impl Recorder ===

impl Recorder {
    /// Appends a record, assigning its sequence number.
    pub fn push(&self, mut r: Record) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        r.seq = g.0;
        if g.1.len() == MAX_RECORDS {
            g.1.pop_front();
        }
        g.1.push_back(r);
    }

    /// All records as JSON.
    pub fn to_json(&self) -> Value {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Value::Array(
            g.1.iter()
                .map(|r| {
                    json!({
                        "seq": r.seq, "time": r.time, "method": r.method, "path": r.path, "query": r.query,
                        "headers": r.headers, "user": r.user, "groups": r.groups, "audit_id": r.audit_id,
                        "protocol": r.protocol,
                    })
                })
                .collect(),
        )
    }

    /// Forgets everything (sequence numbers keep counting).
    pub fn clear(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clear();
    }
}

/// Headers as a lowercase multi-map.
pub fn header_map(h: &hyper::HeaderMap) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in h {
        let entry = m
            .entry(k.as_str().to_string())
            .or_insert_with(|| Value::Array(vec![]));
        if let Value::Array(a) = entry {
            a.push(Value::String(
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        }
    }
    m
}

/// Serves the introspection endpoints.
pub async fn serve(
    recorder: Arc<Recorder>,
    store: Arc<Store>,
    req: Request<Incoming>,
) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/requests") => json_resp(200, &recorder.to_json()),
        (&Method::DELETE, "/requests") => {
            recorder.clear();
            json_resp(200, &json!({"cleared": true}))
        }
        (&Method::GET, "/objects") => json_resp(200, &store.dump()),
        _ => text(404, "not found\n"),
    }
}
