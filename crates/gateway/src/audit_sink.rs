//! Streaming sinks for SIEMs: this replica's audit records, in chain order, as JSON lines on
//! stdout or POSTed to a webhook.
//!
//! A sink reads the store, never the request path: it follows its replica's chain from a
//! cursor (`state_dir/audit-sink-NAME.cursor`), delivers a batch, and only then moves the
//! cursor. Delivery is therefore at least once (a crash between delivery and the cursor write
//! repeats a batch; each line carries its `replica_id`, `seq` and `hash` for de-duplication),
//! and a restart loses nothing: the records are durable before any request is forwarded, and
//! the cursor says where to resume. A failing webhook is retried with backoff, for ever; the
//! gateway keeps serving meanwhile (the store is the buffer).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use serde::{Deserialize, Serialize};
use tokio::{io::AsyncWriteExt, sync::watch};
use tracing::{info, warn};

use crate::{audit::Audit, config::SinkSettings};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

/// Counters shared by all sinks.
#[derive(Default, Clone)]
pub struct SinkMetrics {
    /// Records delivered (counted again when a batch is repeated).
    pub delivered: Family<SinkLabels, Counter>,
    /// Failed delivery attempts.
    pub failures: Family<SinkLabels, Counter>,
}

/// Where a sink delivers. One per sink, built once: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Destination {
    Stdout,
    Webhook {
        url: http::Uri,
        client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
        authorization: Option<http::HeaderValue>,
    },
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Cursor {
    replica_id: String,
    seq: u64,
}

/// Builds each configured sink and starts it.
pub fn spawn_all(
    audit: &Arc<Audit>,
    sinks: &[SinkSettings],
    state_dir: &Path,
    replica_id: &str,
    metrics: SinkMetrics,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let mut tasks = Vec::new();
    for s in sinks {
        let dest = destination(s)?;
        let sink = Sink {
            name: s.name.clone(),
            dest,
            batch: s.batch_size.max(1),
            audit: audit.clone(),
            cursor_path: state_dir.join(format!("audit-sink-{}.cursor", s.name)),
            replica_id: replica_id.to_owned(),
            metrics: metrics.clone(),
        };
        tasks.push(tokio::spawn(sink.run(shutdown.clone())));
    }
    Ok(tasks)
}

fn destination(s: &SinkSettings) -> Result<Destination, String> {
    let Some(url) = &s.url else {
        return Ok(Destination::Stdout);
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("audit sink {}: bad url: {e}", s.name))?;
    let client =
        webhook_client(s.ca_file.as_deref()).map_err(|e| format!("audit sink {}: {e}", s.name))?;
    let authorization = bearer(s.bearer_token_file.as_deref())
        .map_err(|e| format!("audit sink {}: {e}", s.name))?;
    Ok(Destination::Webhook {
        url: uri,
        client,
        authorization,
    })
}

struct Sink {
    name: String,
    dest: Destination,
    batch: usize,
    audit: Arc<Audit>,
    cursor_path: PathBuf,
    replica_id: String,
    metrics: SinkMetrics,
}

impl Sink {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let labels = SinkLabels {
            sink: self.name.clone(),
        };
        let mut seq = self.load_cursor();
        info!(sink = %self.name, from_seq = seq, "audit sink started");
        let mut backoff = Duration::from_millis(500);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let batch = match self.next_batch(seq).await {
                Ok(b) => b,
                Err(e) => {
                    warn!(sink = %self.name, error = %e, "audit sink cannot read the store");
                    Vec::new()
                }
            };
            let Some(last) = batch.last().map(|r| r.0) else {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            };
            let mut body = Vec::new();
            for (_, line) in &batch {
                body.extend_from_slice(line);
                body.push(b'\n');
            }
            match self.deliver(body).await {
                Ok(()) => {
                    self.metrics
                        .delivered
                        .get_or_create(&labels)
                        .inc_by(batch.len() as u64);
                    seq = last;
                    if let Err(e) = self.save_cursor(seq).await {
                        warn!(sink = %self.name, error = %e, "audit sink cannot save its cursor; the batch may be delivered again");
                    }
                    backoff = Duration::from_millis(500);
                }
                Err(e) => {
                    self.metrics.failures.get_or_create(&labels).inc();
                    warn!(sink = %self.name, error = %e, retry_in_ms = backoff.as_millis() as u64, "audit sink delivery failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Up to `batch` records after `seq`, as (seq, canonical JSON line).
    async fn next_batch(&self, seq: u64) -> Result<Vec<(u64, Vec<u8>)>, String> {
        let filter = store::Filter {
            replica_id: Some(self.replica_id.clone()),
            ..store::Filter::default()
        };
        let mut export = self
            .audit
            .store()
            .export_after(filter, &self.replica_id, seq);
        let mut out = Vec::new();
        while out.len() < self.batch {
            let Some(r) = export.next().await.map_err(|e| e.to_string())? else {
                break;
            };
            let value = serde_json::to_value(&r).map_err(|e| e.to_string())?;
            let line = store::chain::canonical_json(&value).map_err(|e| e.to_string())?;
            out.push((r.seq, line));
        }
        Ok(out)
    }

    async fn deliver(&self, body: Vec<u8>) -> Result<(), String> {
        match &self.dest {
            Destination::Stdout => {
                let mut out = tokio::io::stdout();
                out.write_all(&body).await.map_err(|e| e.to_string())?;
                out.flush().await.map_err(|e| e.to_string())
            }
            Destination::Webhook {
                url,
                client,
                authorization,
            } => {
                let mut req = Request::post(url.clone())
                    .header(header::CONTENT_TYPE, "application/x-ndjson")
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| e.to_string())?;
                if let Some(a) = authorization {
                    req.headers_mut().insert(header::AUTHORIZATION, a.clone());
                }
                let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
                    .await
                    .map_err(|_| "timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
                let status = resp.status();
                // Drain the answer so the connection can be reused.
                let _ = resp.into_body().collect().await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("the webhook answered {status}"))
                }
            }
        }
    }

    fn load_cursor(&self) -> u64 {
        std::fs::read(&self.cursor_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Cursor>(&b).ok())
            .filter(|c| c.replica_id == self.replica_id)
            .map_or(0, |c| c.seq)
    }

    /// Written to a temporary file, synced, then renamed over the old cursor.
    async fn save_cursor(&self, seq: u64) -> std::io::Result<()> {
        let tmp = self.cursor_path.with_extension("cursor.tmp");
        let data = serde_json::to_vec(&Cursor {
            replica_id: self.replica_id.clone(),
            seq,
        })
        .map_err(std::io::Error::other)?;
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(&data).await?;
        f.sync_all().await?;
        drop(f);
        tokio::fs::rename(&tmp, &self.cursor_path).await
    }
}

/// An HTTP client for webhooks: HTTPS verified against `ca_file` (default: the web PKI roots),
/// or plain HTTP (config validation allows that only to loopback).
pub fn webhook_client(
    ca_file: Option<&Path>,
) -> Result<Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(p) => {
            let pem = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            for c in rustls_pemfile::certs(&mut pem.as_slice()) {
                let c = c.map_err(|e| format!("{}: {e}", p.display()))?;
                roots.add(c).map_err(|e| e.to_string())?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// `Authorization: Bearer <file contents>`, marked sensitive.
pub fn bearer(file: Option<&Path>) -> Result<Option<http::HeaderValue>, String> {
    let Some(p) = file else { return Ok(None) };
    let t = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut v = http::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
        .map_err(|_| "the token has invalid characters".to_owned())?;
    v.set_sensitive(true);
    Ok(Some(v))
}
