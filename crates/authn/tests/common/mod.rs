//! Shared test harness: the real OIDC provider (node, tests/oidc/provider.mjs), a minimal
//! Rust issuer serving discovery + JWKS for keys the tests own (to forge tokens), and keys.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// === node oidc-provider ===

/// A running `tests/oidc/provider.mjs`. Killed on drop.
pub struct Provider {
    child: Child,
    pub issuer: String,
    pub admin: String,
    pub info: Value,
}

fn oidc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc")
}

impl Provider {
    /// Starts the provider, or returns `None` (with a message) when `node` is not installed.
    /// Panics when node is there but `npm ci` was not run: that is a setup error CI must see.
    pub fn start() -> Option<Self> {
        if Command::new("node").arg("--version").output().is_err() {
            eprintln!("SKIPPED: `node` not found; the OIDC provider tests need Node.js >= 20");
            return None;
        }
        let dir = oidc_dir();
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "tests/oidc/node_modules is missing: run `npm ci --prefix tests/oidc` from the repo root"
        );
        let log = std::env::temp_dir().join(format!(
            "authn-oidc-provider-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            // Provider exits when stdin closes, so a crashed test does not leak it.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("provider log file"))
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let info: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "provider did not print its ready line; stderr: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Some(Self {
            issuer: info["issuer"].as_str().unwrap().to_owned(),
            admin: info["admin"].as_str().unwrap().to_owned(),
            info,
            child,
        })
    }

    pub fn client(&self, alg: &str) -> (String, String) {
        let c = &self.info["clients"][alg];
        (
            c["client_id"].as_str().unwrap().to_owned(),
            c["client_secret"].as_str().unwrap().to_owned(),
        )
    }

    pub fn audience(&self) -> String {
        self.info["audience"].as_str().unwrap().to_owned()
    }

    /// Stops the IdP (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Drop for Provider {
    fn drop(&mut self) {
        self.kill();
    }
}

/// POST a JSON body to a loopback URL; returns (status, JSON body).
pub async fn post_json(url: &str, body: Value) -> (u16, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.expect("admin request");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

// === keys the tests own ===

pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    /// Public JWK.
    pub jwk: Value,
    /// Public key as PEM (SPKI) — for the HS256-with-public-key attack.
    pub public_pem: String,
    /// Raw public key bytes: RSA modulus n, EC point, Ed25519 x.
    pub public_raw: Vec<u8>,
}

pub struct Keys {
    pub rsa: TestKey,
    pub ec: TestKey,
    pub ed: TestKey,
    /// A second RSA key never published anywhere.
    pub rogue_rsa: TestKey,
}

fn rsa_key(kid: &str) -> TestKey {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePublicKey;
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let public = private.to_public_key();
    let der = private.to_pkcs1_der().unwrap();
    TestKey {
        kid: kid.into(),
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                    "n": b64(public.n().to_bytes_be()), "e": b64(public.e().to_bytes_be())}),
        public_pem: public
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap(),
        public_raw: public.n().to_bytes_be(),
    }
}

fn rcgen_key(kid: &str, alg: Algorithm) -> TestKey {
    let (sig_alg, ec) = match alg {
        Algorithm::ES256 => (&rcgen::PKCS_ECDSA_P256_SHA256, true),
        Algorithm::EdDSA => (&rcgen::PKCS_ED25519, false),
        _ => unreachable!(),
    };
    let kp = rcgen::KeyPair::generate_for(sig_alg).unwrap();
    let der = kp.serialize_der();
    let raw = kp.public_key_raw().to_vec();
    let (encoding, jwk) = if ec {
        (
            EncodingKey::from_ec_der(&der),
            json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                   "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}),
        )
    } else {
        (
            EncodingKey::from_ed_der(&der),
            json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": "EdDSA",
                   "x": b64(&raw)}),
        )
    };
    TestKey {
        kid: kid.into(),
        alg,
        encoding,
        jwk,
        public_pem: kp.public_key_pem(),
        public_raw: raw,
    }
}

/// Process-wide keys (RSA generation is slow in debug builds).
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: rsa_key("rsa-1"),
        ec: rcgen_key("ec-1", Algorithm::ES256),
        ed: rcgen_key("ed-1", Algorithm::EdDSA),
        rogue_rsa: rsa_key("rsa-1"),
    })
}

/// Signs `claims` with `key` (header alg = key alg, kid = key kid).
pub fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

// === a minimal issuer serving keys the tests own ===

/// Serves `/.well-known/openid-configuration` and `/jwks` on 127.0.0.1; the JWKS can be
/// replaced at run time and fetches are counted.
pub struct MockIssuer {
    pub issuer: String,
    pub jwks: Arc<Mutex<Value>>,
    pub jwks_fetches: Arc<AtomicUsize>,
    pub discovery_issuer: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct MockState {
    issuer: String,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    discovery_issuer: Arc<Mutex<Option<String>>>,
}

async fn mock_serve<S>(io: S, st: MockState)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let st = st.clone();
        async move {
            let body = match req.uri().path() {
                "/.well-known/openid-configuration" => {
                    let named = st
                        .discovery_issuer
                        .lock()
                        .unwrap()
                        .clone()
                        .unwrap_or(st.issuer.clone());
                    json!({"issuer": named, "jwks_uri": format!("{}/jwks", st.issuer)})
                }
                "/jwks" => {
                    st.fetches.fetch_add(1, Ordering::SeqCst);
                    st.jwks.lock().unwrap().clone()
                }
                _ => {
                    return Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::new()))
                            .unwrap(),
                    )
                }
            };
            Ok(http::Response::new(Full::new(Bytes::from(
                body.to_string(),
            ))))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .await;
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
pub struct TestPki {
    pub ca_pem: String,
    pub server: rustls::ServerConfig,
}

pub fn test_pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "authn test ca");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .unwrap();
    TestPki {
        ca_pem: ca.pem(),
        server,
    }
}

impl MockIssuer {
    /// Plain http on 127.0.0.1.
    pub async fn start(jwks: Value) -> Self {
        Self::start_with(jwks, None).await
    }

    /// https on 127.0.0.1 with the given server config.
    pub async fn start_tls(jwks: Value, tls: rustls::ServerConfig) -> Self {
        Self::start_with(jwks, Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))).await
    }

    async fn start_with(jwks: Value, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let st = MockState {
            issuer: format!("{scheme}://{addr}"),
            jwks: Arc::new(Mutex::new(jwks)),
            fetches: Arc::new(AtomicUsize::new(0)),
            discovery_issuer: Arc::new(Mutex::new(None)),
        };
        let st2 = st.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (st, tls) = (st2.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                mock_serve(s, st).await
                            }
                        }
                        None => mock_serve(stream, st).await,
                    }
                });
            }
        });
        Self {
            issuer: st.issuer,
            jwks: st.jwks,
            jwks_fetches: st.fetches,
            discovery_issuer: st.discovery_issuer,
            task,
        }
    }

    pub fn set_jwks(&self, jwks: Value) {
        *self.jwks.lock().unwrap() = jwks;
    }

    pub fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}

/// An issuer config for loopback tests: http allowed, on-demand refresh not rate-limited
/// unless the test sets it.
pub fn issuer_config(issuer: &str, audience: &str) -> authn::OidcIssuerConfig {
    let mut c = authn::OidcIssuerConfig::new(issuer, vec![audience.to_owned()]);
    c.allow_insecure_http = true;
    c.jwks_min_refresh_seconds = 0;
    c
}
