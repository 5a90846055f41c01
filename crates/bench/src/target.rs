//! Where requests go: a target's address, TLS settings and credential, and how to open one
//! HTTP/1.1 or HTTP/2 connection to it.
//!
//! A target is given on the command line as `NAME=URL[;ca=FILE][;token-file=FILE]` or
//! `NAME=kubeconfig:FILE` (server, CA and credential read from the kubeconfig's current context).

use std::{path::Path, sync::Arc};

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request};
use http_body_util::Empty;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::{net::TcpStream, task::JoinHandle};
use tokio_rustls::TlsConnector;

/// Request body type: every benchmark request is a GET.
pub type ReqBody = Empty<Bytes>;

/// One server the benchmark talks to.
pub struct Target {
    pub name: String,
    /// `host:port` to connect to, also sent as `Host` / `:authority`.
    authority: String,
    /// Path prefix of the URL, without a trailing slash (usually empty).
    prefix: String,
    tls: Option<Tls>,
    authorization: Option<HeaderValue>,
}

struct Tls {
    h1: Arc<rustls::ClientConfig>,
    h2: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

/// Aborts the spawned connection task when dropped, so closing a watch or a worker closes its
/// connection at once instead of waiting for the peer.
pub struct ConnTask(JoinHandle<()>);

impl Drop for ConnTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// === impl Target ===

impl Target {
    /// Parses `NAME=URL[;ca=FILE][;token-file=FILE]` or `NAME=kubeconfig:FILE`.
    pub fn parse(spec: &str) -> anyhow::Result<Target> {
        let (name, rest) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("target {spec:?}: expected NAME=URL or NAME=kubeconfig:FILE"))?;
        if let Some(path) = rest.strip_prefix("kubeconfig:") {
            let kc = Kubeconfig::load(Path::new(path))
                .with_context(|| format!("target {name}: kubeconfig {path}"))?;
            return Target::new(
                name,
                &kc.server,
                kc.ca_pem.as_deref(),
                kc.token.as_deref(),
                kc.client,
            );
        }
        let mut parts = rest.split(';');
        let url = parts.next().unwrap_or_default();
        let mut ca = None;
        let mut token = None;
        for p in parts {
            match p.split_once('=') {
                Some(("ca", f)) => {
                    ca = Some(
                        std::fs::read_to_string(f)
                            .with_context(|| format!("target {name}: cannot read {f}"))?,
                    )
                }
                Some(("token-file", f)) => {
                    token = Some(
                        std::fs::read_to_string(f)
                            .with_context(|| format!("target {name}: cannot read {f}"))?
                            .trim()
                            .to_owned(),
                    )
                }
                _ => bail!("target {name}: unknown option {p:?} (use ca=FILE or token-file=FILE)"),
            }
        }
        Target::new(name, url, ca.as_deref(), token.as_deref(), None)
    }

    fn new(
        name: &str,
        url: &str,
        ca_pem: Option<&str>,
        token: Option<&str>,
        client: Option<(String, String)>,
    ) -> anyhow::Result<Target> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("target {name}: bad URL {url:?}"))?;
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("target {name}: URL {url:?} has no host"))?
            .trim_matches(['[', ']'])
            .to_owned();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("target {name}: URL {url:?} must be http:// or https://"),
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = match uri.authority() {
            Some(a) if a.port().is_some() => a.to_string(),
            _ => format!("{}:{port}", uri.host().unwrap_or(&host)),
        };
        let tls = if https {
            let base = client_config(ca_pem, client)
                .with_context(|| format!("target {name}: TLS settings"))?;
            let mut h1 = base.clone();
            h1.alpn_protocols = vec![b"http/1.1".to_vec()];
            let mut h2 = base;
            h2.alpn_protocols = vec![b"h2".to_vec()];
            Some(Tls {
                h1: Arc::new(h1),
                h2: Arc::new(h2),
                server_name: ServerName::try_from(host)
                    .with_context(|| format!("target {name}: bad server name"))?,
            })
        } else {
            None
        };
        let authorization = token
            .map(|t| {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}"))?;
                v.set_sensitive(true);
                Ok::<_, http::header::InvalidHeaderValue>(v)
            })
            .transpose()
            .with_context(|| format!("target {name}: the token is not a valid header value"))?;
        Ok(Target {
            name: name.to_owned(),
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            tls,
            authorization,
        })
    }

    /// A GET for `path_and_query` with `Accept: application/json` and the target's credential.
    pub fn get(&self, path_and_query: &str, h2: bool) -> anyhow::Result<Request<ReqBody>> {
        self.request(Method::GET, path_and_query, h2)
    }

    /// A bodiless request with `Accept: application/json` and the target's credential.
    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        h2: bool,
    ) -> anyhow::Result<Request<ReqBody>> {
        let mut req = Request::new(Empty::new());
        *req.method_mut() = method;
        let mut headers = HeaderMap::with_capacity(4);
        if h2 {
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            *req.uri_mut() = format!(
                "{scheme}://{}{}{path_and_query}",
                self.authority, self.prefix
            )
            .parse()?;
            *req.version_mut() = http::Version::HTTP_2;
        } else {
            *req.uri_mut() = format!("{}{path_and_query}", self.prefix).parse()?;
            headers.insert(header::HOST, HeaderValue::from_str(&self.authority)?);
        }
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static("airlock-bench"),
        );
        if let Some(a) = &self.authorization {
            headers.insert(header::AUTHORIZATION, a.clone());
        }
        *req.headers_mut() = headers;
        Ok(req)
    }

    /// One keep-alive HTTP/1.1 connection (TLS with ALPN `http/1.1` for https targets).
    pub async fn connect_h1(&self) -> anyhow::Result<(http1::SendRequest<ReqBody>, ConnTask)> {
        let tcp = self.tcp().await?;
        macro_rules! handshake {
            ($io:expr) => {{
                let (send, conn) = http1::handshake(TokioIo::new($io)).await?;
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok((send, ConnTask(task)))
            }};
        }
        match &self.tls {
            Some(tls) => {
                let stream = TlsConnector::from(tls.h1.clone())
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {}", self.name))?;
                handshake!(stream)
            }
            None => handshake!(tcp),
        }
    }

    /// One HTTP/2 connection (TLS with ALPN `h2`; prior knowledge for http targets).
    pub async fn connect_h2(&self) -> anyhow::Result<(http2::SendRequest<ReqBody>, ConnTask)> {
        let tcp = self.tcp().await?;
        macro_rules! handshake {
            ($io:expr) => {{
                let (send, conn) = http2::Builder::new(TokioExecutor::new())
                    .handshake(TokioIo::new($io))
                    .await?;
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok((send, ConnTask(task)))
            }};
        }
        match &self.tls {
            Some(tls) => {
                let stream = TlsConnector::from(tls.h2.clone())
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {}", self.name))?;
                if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                    bail!("{} did not agree to HTTP/2 by ALPN", self.name);
                }
                handshake!(stream)
            }
            None => handshake!(tcp),
        }
    }

    async fn tcp(&self) -> anyhow::Result<TcpStream> {
        let tcp = TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot connect to {} at {}", self.name, self.authority))?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }
}

fn client_config(
    ca_pem: Option<&str>,
    client: Option<(String, String)>,
) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = ca_pem.ok_or_else(|| anyhow!("an https target needs a CA (ca=FILE)"))?;
    for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    Ok(match client {
        Some((cert, key)) => {
            let chain =
                rustls_pemfile::certs(&mut cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
            let key = rustls_pemfile::private_key(&mut key.as_bytes())?
                .ok_or_else(|| anyhow!("no private key in client-key-data"))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    })
}

// === impl Kubeconfig ===

/// The parts of a kubeconfig's current context the benchmark needs.
struct Kubeconfig {
    server: String,
    ca_pem: Option<String>,
    token: Option<String>,
    /// Client certificate and key PEM.
    client: Option<(String, String)>,
}

impl Kubeconfig {
    fn load(path: &Path) -> anyhow::Result<Kubeconfig> {
        use serde_yaml::Value;
        let text = std::fs::read_to_string(path)?;
        let doc: Value = serde_yaml::from_str(&text)?;
        let named = |list: &str, name: &str, field: &str| -> anyhow::Result<Value> {
            doc.get(list)
                .and_then(Value::as_sequence)
                .and_then(|s| {
                    s.iter()
                        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
                })
                .and_then(|e| e.get(field))
                .cloned()
                .ok_or_else(|| anyhow!("{list}: no entry named {name:?}"))
        };
        let current = doc
            .get("current-context")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("no current-context"))?;
        let context = named("contexts", current, "context")?;
        let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let cluster_name =
            field(&context, "cluster").ok_or_else(|| anyhow!("context has no cluster"))?;
        let cluster = named("clusters", &cluster_name, "cluster")?;
        let user = match field(&context, "user") {
            Some(u) => named("users", &u, "user")?,
            None => Value::Null,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let data = |v: &Value, inline: &str, file: &str| -> anyhow::Result<Option<String>> {
            if let Some(b64) = field(v, inline) {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim())?;
                return Ok(Some(String::from_utf8(bytes)?));
            }
            match field(v, file) {
                Some(f) => Ok(Some(std::fs::read_to_string(dir.join(f))?)),
                None => Ok(None),
            }
        };
        let token = match field(&user, "token") {
            Some(t) => Some(t),
            None => field(&user, "tokenFile")
                .map(|f| std::fs::read_to_string(dir.join(f)))
                .transpose()?
                .map(|t| t.trim().to_owned()),
        };
        let cert = data(&user, "client-certificate-data", "client-certificate")?;
        let key = data(&user, "client-key-data", "client-key")?;
        Ok(Kubeconfig {
            server: field(&cluster, "server").ok_or_else(|| anyhow!("cluster has no server"))?,
            ca_pem: data(
                &cluster,
                "certificate-authority-data",
                "certificate-authority",
            )?,
            // A bearer token is preferred when both are present: it is what the issue asks for.
            client: if token.is_none() { cert.zip(key) } else { None },
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_specs() {
        let t = Target::parse("proxy=http://127.0.0.1:8001").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8001");
        assert!(t.tls.is_none() && t.authorization.is_none());
        let req = t.get("/api/v1/pods", false).unwrap();
        assert_eq!(req.uri(), "/api/v1/pods");
        assert_eq!(req.headers()[header::HOST], "127.0.0.1:8001");
        let req = t.get("/api/v1/pods", true).unwrap();
        assert_eq!(req.uri(), "http://127.0.0.1:8001/api/v1/pods");

        for bad in [
            "noequals",
            "x=ftp://a:1",
            "x=http://a:1;frob=1",
            "x=https://a:1",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
