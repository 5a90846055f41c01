//! The audit stage: a write-ahead record before anything reaches the cluster, and an outcome
//! record when the response has ended.
//!
//! ```text
//! decide -> audit.request()  (durable, or 503 and nothing is forwarded)
//!        -> forward -> response streams through `Recorded` -> audit outcome (durable)
//!        -> end of the response is sent to the client
//! ```
//!
//! The end of a response (HTTP/1.1's last chunk, HTTP/2's END_STREAM) is held back until its
//! outcome record is durable, so a client that saw a complete response can count on a complete
//! record. Bodies are recorded masked: the request body through `Masker::mask_request_body`,
//! the response body exactly as the client received it (after the response filter). Large
//! bodies keep a prefix plus the size and SHA-256 of the whole.

use std::{
    future::Future,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        histogram::{exponential_buckets, Histogram},
    },
};
use sha2::{Digest, Sha256};
use store::{AuditRecord, RecordKind, Timestamp};
use tracing::warn;
use uuid::Uuid;

use crate::{
    body::{Body, BodyError},
    config::AuditSettings,
    error::GatewayError,
};

/// The gateway's handle on the audit store.
pub struct Audit {
    appender: store::Appender,
    store: store::Store,
    max_inline: usize,
    prefix: usize,
    /// `audit.port_forward_contents`.
    port_forward_contents: bool,
    /// Appends that failed (the request was refused, or its outcome could not be recorded).
    pub failures: Counter,
    /// How long appends waited for the store, by record kind: for `request` records this is
    /// what every forwarded request waits before it leaves.
    pub append_seconds: Family<KindLabels, Histogram>,
}

/// The record kind of an append.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// The appender's counters, read at scrape time: records per transaction is the group-commit
/// batch size.
#[derive(Debug)]
pub struct AppenderCollector(store::Appender);

impl Collector for AppenderCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let s = self.0.stats();
        for (name, help, value) in [
            ("audit_records", "Audit records committed", s.records),
            (
                "audit_transactions",
                "Audit store transactions committed (records per transaction: the group-commit batch size)",
                s.transactions,
            ),
            ("audit_checkpoints", "Signed audit checkpoints committed", s.checkpoints),
            (
                "audit_failed_batches",
                "Audit batches whose commit failed",
                s.failed_batches,
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

impl Audit {
    /// Opens (and migrates) the store and starts this replica's writer.
    pub async fn open(settings: &AuditSettings, state_dir: &Path) -> Result<Audit, String> {
        let url = settings.store_url(state_dir);
        if url.starts_with("sqlite:") {
            std::fs::create_dir_all(state_dir)
                .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
        }
        let store = store::Store::open(&url)
            .await
            .map_err(|e| format!("cannot open the audit store: {e}"))?;
        let key_path = settings
            .signing_key
            .clone()
            .unwrap_or_else(|| state_dir.join("audit.key"));
        let key = store::load_or_generate_signing_key(&key_path).map_err(|e| e.to_string())?;
        let mut cfg = store::AppenderConfig::new(settings.replica_id.clone(), key);
        cfg.max_inline_body = settings.max_body_bytes;
        cfg.body_prefix = settings.body_prefix_bytes;
        cfg.durability = settings.durability;
        let appender = store
            .appender(cfg)
            .await
            .map_err(|e| format!("cannot start the audit writer: {e}"))?;
        Ok(Audit {
            appender,
            store,
            max_inline: settings.max_body_bytes,
            prefix: settings.body_prefix_bytes,
            port_forward_contents: settings.port_forward_contents,
            failures: Counter::default(),
            append_seconds: Family::new_with_constructor(|| {
                // 25 µs .. ~1.6 s: a durable write on a fast disk sits at the bottom.
                Histogram::new(exponential_buckets(0.000_025, 2.0, 17))
            }),
        })
    }

    /// The appender's counters, for `/metrics`.
    pub fn collector(&self) -> AppenderCollector {
        AppenderCollector(self.appender.clone())
    }

    /// The store, for readers (the approvals and sessions views).
    pub fn store(&self) -> &store::Store {
        &self.store
    }

    /// Captures a (masked) body with the configured limits.
    pub fn capture(&self, bytes: &[u8]) -> store::Body {
        store::Body::capture(bytes, self.max_inline, self.prefix)
    }

    /// Appends one record and waits until it is durable. A failure is the caller's cue to
    /// refuse the request: nothing may be forwarded that the log does not hold.
    pub async fn append(&self, record: AuditRecord) -> Result<(), GatewayError> {
        let id = record.id;
        let kind = record.kind.as_str();
        let started = std::time::Instant::now();
        let result = self.appender.append(record).await;
        self.append_seconds
            .get_or_create(&KindLabels { kind })
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                self.failures.inc();
                warn!(request_id = %id, error = %e, "audit store refused a record");
                Err(GatewayError::Unavailable(
                    "Airlock cannot write its audit log right now, so the request was not forwarded; try again later".into(),
                ))
            }
        }
    }

    /// Appends a record in the background: for events after the response has left (stream
    /// events). Failures are counted and logged.
    pub fn append_detached(self: &Arc<Self>, record: AuditRecord) {
        let audit = self.clone();
        tokio::spawn(async move {
            let _ = audit.append(record).await;
        });
    }

    /// Signs a checkpoint over everything written so far (at shutdown).
    pub async fn checkpoint(&self) {
        if let Err(e) = self.appender.checkpoint().await {
            warn!(error = %e, "could not sign a final audit checkpoint");
        }
    }
}

/// What the outcome record of one request is built from.
pub struct OutcomeRecord {
    pub audit: Arc<Audit>,
    /// The request record with its bodies removed: identity and attributes are repeated in the
    /// outcome so that either record answers "who did what".
    pub template: AuditRecord,
    pub started: Instant,
    pub bytes_in: u64,
}

impl OutcomeRecord {
    /// Builds the outcome record.
    pub fn record(
        &self,
        status: u16,
        upstream_audit_id: Option<String>,
        bytes_out: u64,
        response_body: Option<store::Body>,
        error: Option<String>,
    ) -> AuditRecord {
        let mut r = self.template.clone();
        r.kind = RecordKind::Outcome;
        r.completed_at = Some(Timestamp::now());
        r.response_body = response_body;
        r.outcome = Some(store::Outcome {
            status,
            upstream_audit_id,
            latency_us: self.started.elapsed().as_micros() as u64,
            bytes_in: self.bytes_in,
            bytes_out,
            error,
        });
        r
    }
}

/// Wraps a response body: tees what the client receives into a capture (bounded), and writes
/// the outcome record when the body ends, before the end reaches the client. If the client
/// leaves first, the outcome is written with an error in the background.
pub fn recorded(
    inner: Body,
    outcome: OutcomeRecord,
    status: u16,
    upstream_audit_id: Option<String>,
) -> Body {
    use http_body_util::BodyExt;
    let keep = outcome.audit.max_inline;
    Recorded {
        inner,
        state: State::Streaming,
        capture: Capture {
            kept: Vec::new(),
            keep,
            hasher: Sha256::new(),
            digesting: false,
            size: 0,
        },
        outcome: Some((outcome, status, upstream_audit_id)),
    }
    .boxed()
}

struct Capture {
    kept: Vec<u8>,
    keep: usize,
    /// The body outgrew `keep`: `hasher` digests it as it streams.
    digesting: bool,
    hasher: Sha256,
    size: u64,
}

impl Capture {
    fn push(&mut self, b: &[u8]) {
        self.size += b.len() as u64;
        // One byte past the inline limit tells `finish` the body did not fit.
        let room = (self.keep + 1).saturating_sub(self.kept.len());
        let (head, tail) = b.split_at(room.min(b.len()));
        self.kept.extend_from_slice(head);
        if self.digesting {
            self.hasher.update(tail);
        } else if self.size as usize > self.keep {
            // It will not be kept whole: from now on digest as it streams. Everything before
            // is in `kept`.
            self.digesting = true;
            self.hasher.update(&self.kept);
            self.hasher.update(tail);
        }
    }

    fn finish(&mut self, prefix: usize) -> Option<store::Body> {
        if self.size == 0 {
            return None;
        }
        let truncated = self.size as usize > self.keep;
        if !truncated {
            // All of it was kept: `capture` digests it (once).
            return Some(store::Body::capture(&self.kept, self.keep, prefix));
        }
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let mut body = store::Body::capture(&self.kept, 0, prefix);
        body.size = self.size;
        body.sha256 = sha256;
        body.truncated = truncated;
        Some(body)
    }
}

enum State {
    Streaming,
    /// Waiting for the outcome record to be durable; then the end is passed on. Polled right
    /// here rather than spawned (one task hand-off less per request); if the client leaves
    /// meanwhile, `drop` spawns it, so the record is still written.
    /// (The mutex only makes the body `Sync`; it is never locked, `&mut` reaches inside.)
    Finishing(std::sync::Mutex<Pin<Box<dyn Future<Output = bool> + Send>>>),
    Done,
}

pin_project_lite::pin_project! {
    struct Recorded {
        #[pin]
        inner: Body,
        state: State,
        capture: Capture,
        outcome: Option<(OutcomeRecord, u16, Option<String>)>,
    }

    impl PinnedDrop for Recorded {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let State::Finishing(append) = std::mem::replace(this.state, State::Done) {
                if tokio::runtime::Handle::try_current().is_ok() {
                    tokio::spawn(append.into_inner().unwrap_or_else(|p| p.into_inner()));
                }
            }
            // The client left (or the stream broke) before the end: record that.
            if let Some((o, status, aid)) = this.outcome.take() {
                let prefix = o.audit.prefix;
                let body = this.capture.finish(prefix);
                let record = o.record(status, aid, this.capture.size, body, Some("the response did not complete: the client went away or the stream broke".into()));
                if tokio::runtime::Handle::try_current().is_ok() {
                    o.audit.append_detached(record);
                }
            }
        }
    }
}

impl HttpBody for Recorded {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        loop {
            match this.state {
                State::Done => return Poll::Ready(None),
                State::Finishing(append) => {
                    let append = append.get_mut().unwrap_or_else(|p| p.into_inner());
                    return match append.as_mut().poll(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(true) => {
                            *this.state = State::Done;
                            Poll::Ready(None)
                        }
                        // Without a durable outcome the response must not look complete.
                        Poll::Ready(false) => {
                            *this.state = State::Done;
                            Poll::Ready(Some(Err(
                                "Airlock could not record the end of this response".into(),
                            )))
                        }
                    };
                }
                State::Streaming => match this.inner.as_mut().poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            this.capture.push(data);
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    Poll::Ready(Some(Err(e))) => {
                        if let Some((o, status, aid)) = this.outcome.take() {
                            let body = this.capture.finish(o.audit.prefix);
                            let record = o.record(
                                status,
                                aid,
                                this.capture.size,
                                body,
                                Some(format!("the response broke off: {e}")),
                            );
                            o.audit.append_detached(record);
                        }
                        *this.state = State::Done;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Ready(None) => {
                        let Some((o, status, aid)) = this.outcome.take() else {
                            *this.state = State::Done;
                            continue;
                        };
                        let body = this.capture.finish(o.audit.prefix);
                        let record = o.record(status, aid, this.capture.size, body, None);
                        let audit = o.audit.clone();
                        *this.state =
                            State::Finishing(std::sync::Mutex::new(Box::pin(async move {
                                audit.append(record).await.is_ok()
                            })));
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        // The end is held back until the outcome is durable, so the length is never announced
        // as exact (HTTP/1.1 then uses chunked encoding and the last chunk waits for the log).
        SizeHint::default()
    }
}

/// A new request id (also the `Audit-ID` sent upstream).
///
/// UUIDv7: time-ordered, so the audit store's index on request ids grows at its end instead
/// of touching a random page for every record.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

// === Stream recording ===

use crate::tunnel::{PortChannel, Recorder, TunnelEvent, TunnelEventKind};

/// Events waiting for the recording task before the tunnel is slowed down.
const STREAM_QUEUE: usize = 256;
/// A `stream_event` record is written once this much data is pending...
const STREAM_RECORD_BYTES: usize = 64 * 1024;
/// ...or this long after its first event.
const STREAM_RECORD_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// The recorder for one tunnel: the audit log (when on) and any extra recorder (tests).
///
/// `masker` masks the recorded copy of port-forward contents (when
/// `audit.port_forward_contents` is on); exec and attach output reach the recorder masked
/// already.
pub fn tunnel_recorder(
    outcome: Option<&OutcomeRecord>,
    masker: &mask::Masker,
    extra: Option<Arc<dyn Recorder>>,
) -> Option<Arc<dyn Recorder>> {
    let audit: Option<Arc<dyn Recorder>> =
        outcome.map(|o| Arc::new(StreamRecorder::start(o, masker)) as Arc<dyn Recorder>);
    match (audit, extra) {
        (Some(a), Some(b)) => Some(Arc::new(Tee(a, b))),
        (a, b) => a.or(b),
    }
}

struct Tee(Arc<dyn Recorder>, Arc<dyn Recorder>);

impl Recorder for Tee {
    fn event(&self, ev: TunnelEvent) {
        self.1.event(ev.clone());
        self.0.event(ev);
    }
    fn port_forward_contents(&self) -> bool {
        self.0.port_forward_contents() || self.1.port_forward_contents()
    }
}

/// Writes a tunnel's events into the audit log as `stream_event` records of its request, in
/// order, several events per record (`extra.events`: `[{event, t_us, data (base64), ...}]`).
///
/// Memory is bounded: a full queue slows the tunnel down (the relay waits for the log, as a
/// request waits for its write-ahead record) instead of growing. Only on a single-threaded
/// runtime, where waiting would deadlock, is an event dropped, and the loss is recorded.
struct StreamRecorder {
    tx: tokio::sync::mpsc::Sender<TunnelEvent>,
    lost: Arc<std::sync::atomic::AtomicU64>,
    port_forward_contents: bool,
}

impl StreamRecorder {
    fn start(o: &OutcomeRecord, masker: &mask::Masker) -> StreamRecorder {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_QUEUE);
        let lost = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut template = o.template.clone();
        template.kind = RecordKind::StreamEvent;
        template.decision = None;
        let port_forward_contents = o.audit.port_forward_contents;
        let pf = port_forward_contents.then(|| PortForwardMasker::new(masker.clone()));
        tokio::spawn(record_stream(
            o.audit.clone(),
            template,
            rx,
            lost.clone(),
            pf,
        ));
        StreamRecorder {
            tx,
            lost,
            port_forward_contents,
        }
    }
}

/// Masks the recorded copy of port-forward contents: one text masker per connection and
/// direction, so a credential split across reads is still found. The forwarded bytes are
/// never touched (they are the application's own traffic).
struct PortForwardMasker {
    masker: mask::Masker,
    /// Per (stream, towards the pod): the port and the masker.
    streams: std::collections::HashMap<(u32, bool), (u16, Box<dyn mask::StreamMasker>)>,
}

impl PortForwardMasker {
    fn new(masker: mask::Masker) -> Self {
        PortForwardMasker {
            masker,
            streams: std::collections::HashMap::new(),
        }
    }

    /// The masked events for `ev`: port-forward data is replaced by what its masker lets out
    /// now (possibly nothing); a connection's close first flushes what its maskers held.
    fn events(&mut self, ev: TunnelEvent, out: &mut Vec<serde_json::Value>) {
        match ev.kind {
            TunnelEventKind::PortForwardData {
                port,
                stream,
                to_pod,
                data,
            } => {
                let key = (stream, to_pod);
                let mut masked = Vec::with_capacity(data.len());
                let ok = match self.streams.get_mut(&key) {
                    Some((_, m)) => m.push(&data, &mut masked).is_ok(),
                    None => match self
                        .masker
                        .stream(mask::BodyKind::Text, &mask::MaskContext::default())
                    {
                        Ok(mut m) => {
                            let ok = m.push(&data, &mut masked).is_ok();
                            self.streams.insert(key, (port, m));
                            ok
                        }
                        Err(_) => false,
                    },
                };
                // Held back (a possible secret's start): it comes out with the next bytes or
                // when the connection closes.
                if !ok || !masked.is_empty() {
                    out.push(pf_data_json(ev.at, port, stream, to_pod, ok, &masked));
                }
            }
            TunnelEventKind::PortForwardClose { stream, .. } => {
                for to_pod in [true, false] {
                    self.finish(ev.at, (stream, to_pod), out);
                }
                out.push(event_json(&ev));
            }
            TunnelEventKind::Close { .. } => {
                self.finish_all(ev.at, out);
                out.push(event_json(&ev));
            }
            _ => out.push(event_json(&ev)),
        }
    }

    /// Flushes every connection's maskers (the tunnel ended).
    fn finish_all(&mut self, at: std::time::Duration, out: &mut Vec<serde_json::Value>) {
        let mut keys: Vec<(u32, bool)> = self.streams.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            self.finish(at, key, out);
        }
    }

    fn finish(
        &mut self,
        at: std::time::Duration,
        (stream, to_pod): (u32, bool),
        out: &mut Vec<serde_json::Value>,
    ) {
        if let Some((port, mut m)) = self.streams.remove(&(stream, to_pod)) {
            let mut rest = Vec::new();
            let ok = m.finish(&mut rest).is_ok();
            if !rest.is_empty() || !ok {
                out.push(pf_data_json(at, port, stream, to_pod, ok, &rest));
            }
        }
    }
}

/// A `portforward_data` event. When masking failed the bytes are left out (fail closed) and
/// `masking_failed` says so.
fn pf_data_json(
    at: std::time::Duration,
    port: u16,
    stream: u32,
    to_pod: bool,
    ok: bool,
    masked: &[u8],
) -> serde_json::Value {
    use base64::Engine as _;
    let t_us = at.as_micros() as u64;
    if ok {
        let data = base64::engine::general_purpose::STANDARD.encode(masked);
        serde_json::json!({"event": "portforward_data", "t_us": t_us, "port": port, "stream": stream, "to_pod": to_pod, "data": data})
    } else {
        serde_json::json!({"event": "portforward_data", "t_us": t_us, "port": port, "stream": stream, "to_pod": to_pod, "masking_failed": true})
    }
}

impl Recorder for StreamRecorder {
    fn port_forward_contents(&self) -> bool {
        self.port_forward_contents
    }

    fn event(&self, ev: TunnelEvent) {
        use tokio::sync::mpsc::error::TrySendError;
        let ev = match self.tx.try_send(ev) {
            Ok(()) => return,
            Err(TrySendError::Closed(_)) => return,
            Err(TrySendError::Full(ev)) => ev,
        };
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi {
            let tx = self.tx.clone();
            tokio::task::block_in_place(move || {
                let _ = tx.blocking_send(ev);
            });
        } else {
            self.lost
                .fetch_add(event_bytes(&ev), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

fn event_bytes(ev: &TunnelEvent) -> u64 {
    match &ev.kind {
        TunnelEventKind::Stdin(b) | TunnelEventKind::Stdout(b) | TunnelEventKind::Stderr(b) => {
            b.len() as u64
        }
        TunnelEventKind::PortForwardData { data, .. } => data.len() as u64,
        _ => 0,
    }
}

async fn record_stream(
    audit: Arc<Audit>,
    template: AuditRecord,
    mut rx: tokio::sync::mpsc::Receiver<TunnelEvent>,
    lost: Arc<std::sync::atomic::AtomicU64>,
    mut pf: Option<PortForwardMasker>,
) {
    let mut pending: Vec<serde_json::Value> = Vec::new();
    let mut bytes = 0usize;
    let mut deadline: Option<tokio::time::Instant> = None;
    // When the last event happened (for what is flushed if the tunnel just goes away).
    let mut last_at = std::time::Duration::ZERO;
    loop {
        let next = match deadline {
            Some(d) => tokio::select! {
                ev = rx.recv() => ev.map(Some),
                _ = tokio::time::sleep_until(d) => Some(None),
            },
            None => rx.recv().await.map(Some),
        };
        let closing = match next {
            // The tunnel dropped its recorder: flush and stop.
            None => true,
            Some(None) => false,
            Some(Some(ev)) => {
                let close = matches!(ev.kind, TunnelEventKind::Close { .. });
                bytes += event_bytes(&ev) as usize;
                last_at = ev.at;
                match &mut pf {
                    Some(pf) => pf.events(ev, &mut pending),
                    None => pending.push(event_json(&ev)),
                }
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + STREAM_RECORD_DELAY);
                if !close
                    && bytes < STREAM_RECORD_BYTES
                    && deadline.is_some_and(|d| d > tokio::time::Instant::now())
                {
                    continue;
                }
                close
            }
        };
        if let (true, Some(pf)) = (closing, &mut pf) {
            // The tunnel went away without its close event: what the maskers still hold is
            // recorded all the same.
            pf.finish_all(last_at, &mut pending);
        }
        let dropped = lost.swap(0, std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            pending.push(serde_json::json!({"event": "lost", "bytes": dropped}));
        }
        if !pending.is_empty() {
            let mut r = template.clone();
            r.extra.insert(
                "events".into(),
                serde_json::Value::Array(std::mem::take(&mut pending)),
            );
            let _ = audit.append(r).await;
        }
        bytes = 0;
        deadline = None;
        if closing {
            return;
        }
    }
}

fn event_json(ev: &TunnelEvent) -> serde_json::Value {
    use base64::Engine as _;
    use serde_json::json;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let t_us = ev.at.as_micros() as u64;
    let channel = |c: &PortChannel| match c {
        PortChannel::Data => "data",
        PortChannel::Error => "error",
    };
    match &ev.kind {
        TunnelEventKind::Open { protocol, tty, .. } => {
            json!({"event": "open", "t_us": t_us, "protocol": protocol, "tty": tty})
        }
        TunnelEventKind::Stdin(b) => json!({"event": "stdin", "t_us": t_us, "data": b64(b)}),
        TunnelEventKind::Stdout(b) => json!({"event": "stdout", "t_us": t_us, "data": b64(b)}),
        TunnelEventKind::Stderr(b) => json!({"event": "stderr", "t_us": t_us, "data": b64(b)}),
        TunnelEventKind::Resize { width, height } => {
            json!({"event": "resize", "t_us": t_us, "width": width, "height": height})
        }
        TunnelEventKind::Exit { code, status } => {
            json!({"event": "exit", "t_us": t_us, "code": code, "status": status})
        }
        TunnelEventKind::PortForwardOpen {
            port,
            stream,
            channel: c,
        } => {
            json!({"event": "portforward_open", "t_us": t_us, "port": port, "stream": stream, "channel": channel(c)})
        }
        TunnelEventKind::PortForwardData {
            port,
            stream,
            to_pod,
            data,
        } => pf_data_json(ev.at, *port, *stream, *to_pod, true, data),
        TunnelEventKind::PortForwardClose {
            port,
            stream,
            channel: c,
            bytes_in,
            bytes_out,
        } => {
            json!({"event": "portforward_close", "t_us": t_us, "port": port, "stream": stream, "channel": channel(c), "bytes_in": bytes_in, "bytes_out": bytes_out})
        }
        TunnelEventKind::Close {
            bytes_to_client,
            bytes_to_upstream,
            reason,
        } => {
            json!({"event": "close", "t_us": t_us, "bytes_to_client": bytes_to_client, "bytes_to_upstream": bytes_to_upstream, "reason": reason})
        }
    }
}

// === Approvals ===

/// Records every approval event (created, approved, denied, grant used) as an `approval`
/// record. Events of one approval share the id of the request that opened it, so `airlock
/// replay` shows them in that request's timeline; `extra.approval_id` names the approval.
pub struct ApprovalAudit {
    audit: Arc<Audit>,
    /// approval id → the request that opened it (approver decisions carry no request id).
    opened_by: std::sync::Mutex<std::collections::HashMap<String, Uuid>>,
}

impl ApprovalAudit {
    pub fn new(audit: Arc<Audit>) -> ApprovalAudit {
        ApprovalAudit {
            audit,
            opened_by: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl approvals::DecisionHook for ApprovalAudit {
    fn on_decision(&self, rec: &approvals::ApprovalRecord) {
        let a = &rec.approval;
        let request = rec
            .request_id
            .as_deref()
            .and_then(|r| Uuid::parse_str(r).ok());
        let id = {
            let mut map = self.opened_by.lock().unwrap_or_else(|e| e.into_inner());
            match request {
                Some(r) => *map.entry(a.id.clone()).or_insert(r),
                None => map.get(&a.id).copied().unwrap_or_default(),
            }
        };
        let mut r = AuditRecord::new(id, RecordKind::Approval, Timestamp::now());
        r.identity.user = a.requester.user.clone();
        r.identity.groups = a.requester.groups.clone();
        r.command = Some(a.command.clone());
        r.intent = a.intent.clone();
        r.kubectl_command = a.kubectl_command.clone();
        r.kubectl_session = a.kubectl_session.clone();
        let last = a.decisions.last();
        let decision = match rec.event {
            approvals::Event::Approved => "approved",
            approvals::Event::Denied => "denied",
            approvals::Event::Created => "requested",
            approvals::Event::Used => "grant_used",
        };
        r.approvals.push(store::Approval {
            approver: rec.actor.clone(),
            decision: decision.to_owned(),
            at: Timestamp::now(),
            comment: match rec.event {
                approvals::Event::Approved | approvals::Event::Denied => {
                    last.and_then(|d| d.reason.clone())
                }
                _ => None,
            },
        });
        r.extra.insert(
            "approval_id".into(),
            serde_json::Value::String(a.id.clone()),
        );
        r.extra.insert(
            "approval_hash".into(),
            serde_json::Value::String(a.hash.clone()),
        );
        r.extra.insert(
            "approval_event".into(),
            serde_json::Value::String(rec.event.as_str().to_owned()),
        );
        if let Some(req) = request {
            r.extra.insert(
                "call_request_id".into(),
                serde_json::Value::String(req.to_string()),
            );
        }
        if let Some(for_s) = last.and_then(|d| d.for_seconds) {
            r.extra
                .insert("grant_seconds".into(), serde_json::json!(for_s));
        }
        self.audit.append_detached(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use std::time::Duration;

    fn data(stream: u32, to_pod: bool, at_ms: u64, bytes: &[u8]) -> TunnelEvent {
        TunnelEvent {
            at: Duration::from_millis(at_ms),
            kind: TunnelEventKind::PortForwardData {
                port: 5432,
                stream,
                to_pod,
                data: Bytes::copy_from_slice(bytes),
            },
        }
    }

    /// What the events say went one way on one stream, decoded and joined.
    fn recorded(events: &[serde_json::Value], stream: u32, to_pod: bool) -> String {
        let mut all = Vec::new();
        for e in events {
            if e["event"] == "portforward_data" && e["stream"] == stream && e["to_pod"] == to_pod {
                let d = e["data"].as_str().unwrap();
                all.extend(base64::engine::general_purpose::STANDARD.decode(d).unwrap());
            }
        }
        String::from_utf8(all).unwrap()
    }

    #[test]
    fn port_forward_copies_are_masked_across_reads_per_direction() {
        let masker = mask::Masker::new(mask::MaskConfig::new(
            b"pf-test-key-0123456789abcdef0123".to_vec(),
        ))
        .unwrap();
        let mut pf = PortForwardMasker::new(masker);
        let token = format!("ghp_{}", "Ab9".repeat(12));
        let (head, tail) = token.split_at(10);
        let mut out = Vec::new();
        // The token arrives in two reads towards the pod; the other direction interleaves.
        pf.events(
            data(
                3,
                true,
                1,
                format!("Authorization: Bearer {head}").as_bytes(),
            ),
            &mut out,
        );
        pf.events(data(3, false, 2, b"HTTP/1.1 200 OK\r\n"), &mut out);
        pf.events(
            data(3, true, 3, format!("{tail}\r\n\r\n").as_bytes()),
            &mut out,
        );
        pf.events(
            TunnelEvent {
                at: Duration::from_millis(4),
                kind: TunnelEventKind::PortForwardClose {
                    port: 5432,
                    stream: 3,
                    channel: crate::tunnel::PortChannel::Data,
                    bytes_in: 0,
                    bytes_out: 0,
                },
            },
            &mut out,
        );
        let to_pod = recorded(&out, 3, true);
        assert!(to_pod.starts_with("Authorization: Bearer "), "{to_pod}");
        assert!(to_pod.contains("airlock:masked:github-token"), "{to_pod}");
        assert!(!to_pod.contains(&token), "{to_pod}");
        assert_eq!(recorded(&out, 3, false), "HTTP/1.1 200 OK\r\n");
        assert_eq!(out.last().unwrap()["event"], "portforward_close");
        assert!(pf.streams.is_empty(), "maskers are dropped on close");
    }
}
