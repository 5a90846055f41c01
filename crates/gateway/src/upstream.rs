//! Clients for the clusters Airlock fronts.
//!
//! Each cluster gets two pooled clients built from the same TLS settings: one that offers HTTP/2
//! and HTTP/1.1 by ALPN for ordinary calls, and one that offers only HTTP/1.1, because exec,
//! attach and port-forward upgrade the connection, which HTTP/2 cannot do.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

use crate::{
    body::Body,
    config::UpstreamTimeouts,
    error::GatewayError,
    kubeconfig::ClusterAccess,
    tls::{parse_certs, parse_key},
};

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("server {0:?} is not an https:// URL")]
    Server(String),
    #[error("TLS settings: {0}")]
    Tls(String),
}

/// One upstream cluster.
pub struct Upstream {
    pub name: String,
    /// The server URL without a trailing slash; may carry a path prefix.
    base: String,
    pooled: HttpsClient,
    upgrade: HttpsClient,
    long_running: LongRunningPool,
    credential: Credential,
    timeouts: UpstreamTimeouts,
}

enum Credential {
    None,
    Token(HeaderValue),
    TokenFile {
        path: std::path::PathBuf,
        cached: Mutex<Option<(Instant, HeaderValue)>>,
    },
}

/// How often a token file is re-read: service-account tokens are rotated by the kubelet.
const TOKEN_FILE_REFRESH: Duration = Duration::from_secs(60);

impl Upstream {
    pub fn new(
        name: &str,
        access: &ClusterAccess,
        timeouts: UpstreamTimeouts,
    ) -> Result<Upstream, UpstreamError> {
        let uri: Uri = access
            .server
            .parse()
            .map_err(|_| UpstreamError::Server(access.server.clone()))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(UpstreamError::Server(access.server.clone()));
        }
        let tls = client_tls(access)?;
        let pooled = build_client(tls.clone(), true, timeouts);
        let upgrade = build_client(tls.clone(), false, timeouts);
        let long_running = LongRunningPool {
            tls,
            timeouts,
            slots: Mutex::new(Vec::new()),
        };
        let credential = match (&access.token, &access.token_file) {
            (Some(t), _) => Credential::Token(bearer(t)?),
            (None, Some(p)) => Credential::TokenFile {
                path: p.clone(),
                cached: Mutex::new(None),
            },
            (None, None) => Credential::None,
        };
        Ok(Upstream {
            name: name.to_owned(),
            base: access.server.trim_end_matches('/').to_owned(),
            pooled,
            upgrade,
            long_running,
            credential,
            timeouts,
        })
    }

    /// The full upstream URI for a path and query as the client sent them (prefix stripped).
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, GatewayError> {
        format!("{}{}", self.base, path_and_query)
            .parse()
            .map_err(|_| GatewayError::BadRequest("the request path is not a valid URI".into()))
    }

    /// Airlock's own credential for this cluster, as an `Authorization` header value.
    pub fn authorization(&self) -> Result<Option<HeaderValue>, GatewayError> {
        match &self.credential {
            Credential::None => Ok(None),
            Credential::Token(v) => Ok(Some(v.clone())),
            Credential::TokenFile { path, cached } => {
                let mut guard = cached
                    .lock()
                    .map_err(|_| GatewayError::Internal("token cache poisoned".into()))?;
                if let Some((at, v)) = guard.as_ref() {
                    if at.elapsed() < TOKEN_FILE_REFRESH {
                        return Ok(Some(v.clone()));
                    }
                }
                let token = std::fs::read_to_string(path).map_err(|e| {
                    GatewayError::Unavailable(format!(
                        "cannot read the credential for cluster {}: {e}",
                        self.name
                    ))
                })?;
                let v = bearer(token.trim()).map_err(|_| {
                    GatewayError::Unavailable(format!(
                        "the credential for cluster {} is not a valid token",
                        self.name
                    ))
                })?;
                *guard = Some((Instant::now(), v.clone()));
                Ok(Some(v))
            }
        }
    }

    /// Sends a request and waits for the response headers, within the response timeout.
    pub async fn send(
        &self,
        req: Request<Body>,
        route: Route,
    ) -> Result<(Response<Incoming>, Option<Lease>), GatewayError> {
        let (client, lease) = match route {
            Route::Pooled => (&self.pooled, None),
            Route::Upgrade => (&self.upgrade, None),
            Route::LongRunning => {
                let slot = self.long_running.acquire()?;
                let lease = Lease(slot.clone());
                // The client lives as long as the slot; cloning it shares its connection.
                return self
                    .finish(slot.client.clone().request(req), Some(lease))
                    .await;
            }
        };
        self.finish(client.request(req), lease).await
    }

    async fn finish(
        &self,
        fut: hyper_util::client::legacy::ResponseFuture,
        lease: Option<Lease>,
    ) -> Result<(Response<Incoming>, Option<Lease>), GatewayError> {
        match tokio::time::timeout(self.timeouts.response, fut).await {
            Err(_) => Err(GatewayError::GatewayTimeout(format!(
                "no response from cluster {} within {}s",
                self.name,
                self.timeouts.response.as_secs()
            ))),
            Ok(Ok(resp)) => Ok((resp, lease)),
            Ok(Err(e)) => Err(self.classify(&e)),
        }
    }

    fn classify(&self, e: &hyper_util::client::legacy::Error) -> GatewayError {
        // Walk the source chain for the root cause; it is safe to show (no credentials in it).
        let mut cause = String::new();
        let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        if cause.is_empty() {
            cause = e.to_string();
        }
        if e.is_connect() {
            if cause.contains("timed out") {
                return GatewayError::GatewayTimeout(format!(
                    "connecting to cluster {}: {cause}",
                    self.name
                ));
            }
            return GatewayError::Unavailable(format!(
                "cluster {} is unavailable: {cause}",
                self.name
            ));
        }
        GatewayError::BadGateway(format!("cluster {}: {cause}", self.name))
    }
}

fn bearer(token: &str) -> Result<HeaderValue, UpstreamError> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| UpstreamError::Tls("the bearer token has invalid characters".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

fn client_tls(access: &ClusterAccess) -> Result<rustls::ClientConfig, UpstreamError> {
    let tls_err = |e: &dyn std::fmt::Display| UpstreamError::Tls(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    match &access.ca_pem {
        Some(pem) => {
            for cert in parse_certs(std::path::Path::new("certificate-authority"), pem)
                .map_err(|e| tls_err(&e))?
            {
                roots.add(cert).map_err(|e| tls_err(&e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(&e))?
    .with_root_certificates(roots);
    let cfg = match (&access.client_cert_pem, &access.client_key_pem) {
        (Some(cert), Some(key)) => {
            let chain = parse_certs(std::path::Path::new("client-certificate"), cert)
                .map_err(|e| tls_err(&e))?;
            let key =
                parse_key(std::path::Path::new("client-key"), key).map_err(|e| tls_err(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_err(&e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(UpstreamError::Tls(
                "a client certificate needs both the certificate and the key".into(),
            ))
        }
    };
    Ok(cfg)
}

fn build_client(
    tls: rustls::ClientConfig,
    allow_h2: bool,
    timeouts: UpstreamTimeouts,
) -> HttpsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeouts.connect));
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only();
    let connector = if allow_h2 {
        builder.enable_http1().enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(timeouts.pool_idle)
        .pool_max_idle_per_host(256)
        .http2_keep_alive_interval(Some(Duration::from_secs(30)))
        .http2_keep_alive_while_idle(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .build(connector)
}

/// Which client carries a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Ordinary calls, multiplexed over the pooled HTTP/2 connection.
    Pooled,
    /// Watches and followed logs: they hold an HTTP/2 stream for as long as they run, so they
    /// get connections of their own (see `LongRunningPool`).
    LongRunning,
    /// exec, attach, port-forward: HTTP/1.1, which can upgrade.
    Upgrade,
}

/// Connections for requests that never end on their own.
///
/// An HTTP/2 connection carries a bounded number of concurrent streams (kube-apiserver allows
/// 100), and hyper's pooled client does not open a second connection when one is full: enough
/// open watches on the shared connection would stall every other call to the cluster. So
/// long-running requests are kept off the pooled connection and spread over as many dedicated
/// clients (one HTTP/2 connection each) as they need, at most `STREAMS_PER_CONNECTION` each.
struct LongRunningPool {
    tls: rustls::ClientConfig,
    timeouts: UpstreamTimeouts,
    slots: Mutex<Vec<Arc<Slot>>>,
}

/// Below kube-apiserver's limit of 100 concurrent streams per connection.
const STREAMS_PER_CONNECTION: usize = 90;

struct Slot {
    client: HttpsClient,
    in_flight: std::sync::atomic::AtomicUsize,
}

impl LongRunningPool {
    fn acquire(&self) -> Result<Arc<Slot>, GatewayError> {
        use std::sync::atomic::Ordering;
        let mut slots = self
            .slots
            .lock()
            .map_err(|_| GatewayError::Internal("upstream pool poisoned".into()))?;
        for slot in slots.iter() {
            if slot.in_flight.load(Ordering::Acquire) < STREAMS_PER_CONNECTION {
                slot.in_flight.fetch_add(1, Ordering::AcqRel);
                return Ok(slot.clone());
            }
        }
        let slot = Arc::new(Slot {
            client: build_client(self.tls.clone(), true, self.timeouts),
            in_flight: std::sync::atomic::AtomicUsize::new(1),
        });
        slots.push(slot.clone());
        Ok(slot)
    }
}

/// A long-running request's place on a connection; released when dropped.
pub struct Lease(Arc<Slot>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}
