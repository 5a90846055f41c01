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
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use store::{AuditRecord, RecordKind, Timestamp};
use tokio::sync::oneshot;
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
    /// Appends that failed (the request was refused, or its outcome could not be recorded).
    pub failures: Counter,
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
        let appender = store
            .appender(cfg)
            .await
            .map_err(|e| format!("cannot start the audit writer: {e}"))?;
        Ok(Audit {
            appender,
            store,
            max_inline: settings.max_body_bytes,
            prefix: settings.body_prefix_bytes,
            failures: Counter::default(),
        })
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
        match self.appender.append(record).await {
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
            size: 0,
        },
        outcome: Some((outcome, status, upstream_audit_id)),
    }
    .boxed()
}

struct Capture {
    kept: Vec<u8>,
    keep: usize,
    hasher: Sha256,
    size: u64,
}

impl Capture {
    fn push(&mut self, b: &[u8]) {
        self.size += b.len() as u64;
        self.hasher.update(b);
        // One byte past the inline limit tells `finish` the body did not fit.
        let room = (self.keep + 1).saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&b[..room.min(b.len())]);
    }

    fn finish(&mut self, prefix: usize) -> Option<store::Body> {
        if self.size == 0 {
            return None;
        }
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let truncated = self.size as usize > self.keep;
        let mut body = if truncated {
            store::Body::capture(&self.kept, 0, prefix)
        } else {
            store::Body::capture(&self.kept, self.keep, prefix)
        };
        body.size = self.size;
        body.sha256 = sha256;
        body.truncated = truncated;
        Some(body)
    }
}

enum State {
    Streaming,
    /// Waiting for the outcome record to be durable; then the end is passed on.
    Finishing(oneshot::Receiver<bool>),
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
                State::Finishing(rx) => {
                    return match Pin::new(rx).poll(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Ok(true)) => {
                            *this.state = State::Done;
                            Poll::Ready(None)
                        }
                        // Without a durable outcome the response must not look complete.
                        Poll::Ready(_) => {
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
                        let (tx, rx) = oneshot::channel();
                        let audit = o.audit.clone();
                        tokio::spawn(async move {
                            let _ = tx.send(audit.append(record).await.is_ok());
                        });
                        *this.state = State::Finishing(rx);
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
pub fn new_id() -> Uuid {
    Uuid::new_v4()
}
