//! Upstream failures become 502, 503 or 504 with a `Status` body, and an upgrade request only
//! becomes a tunnel when the cluster really answers 101 (CVE-2018-1002105).

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use rcgen::{CertificateParams, KeyPair};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const TOKEN: &str = "test-token";

struct Fake {
    addr: SocketAddr,
    ca_pem: String,
}

/// A TLS server on loopback that answers every connection with `behaviour`.
async fn fake_upstream(behaviour: &'static [u8]) -> Fake {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 8192];
                let _ = tls.read(&mut buf).await;
                if behaviour.is_empty() {
                    // Never answer.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let _ = tls.write_all(behaviour).await;
                let _ = tls.flush().await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Fake {
        addr,
        ca_pem: cert.pem(),
    }
}

struct Gw {
    running: gateway::Running,
    dir: std::path::PathBuf,
}

async fn gateway_for(server: &str, ca_pem: &str) -> Gw {
    let dir = std::env::temp_dir().join(format!("airlock-gw-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = gateway::kubeconfig::render(
        server,
        ca_pem,
        "upstream",
        &gateway::kubeconfig::ClientAuth::Token("upstream-credential".into()),
    );
    std::fs::write(dir.join("up.kubeconfig"), kc).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nstate_dir: {d}\nclusters: [{{name: up, kubeconfig: {d}/up.kubeconfig}}]\nupstream: {{response_timeout_seconds: 1, connect_timeout_seconds: 1}}\nauthn: {{static_tokens: [{{sha256: {h}, user: tester, groups: [g]}}]}}\n",
        d = dir.display(),
        h = authn::hash_token(TOKEN)
    );
    let raw: gateway::RawConfig = serde_yaml::from_str(&yaml).unwrap();
    let cfg = gateway::Config::from_raw(raw, Path::new("/")).unwrap();
    let running = gateway::start(&cfg).await.unwrap();
    Gw { running, dir }
}

/// Sends one raw HTTP/1.1 request through the gateway and returns (status, head, body).
async fn send(gw: &Gw, request: String) -> (u16, String, String) {
    let ca = std::fs::read_to_string(gw.dir.join("ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(gw.running.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap();
    (status, head.to_owned(), body.to_owned())
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n")
}

fn assert_status_body(body: &str, code: u16) {
    let json = body.find('{').map(|i| &body[i..]).unwrap_or(body);
    let json = &json[..json.rfind('}').map(|i| i + 1).unwrap_or(json.len())];
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["kind"], "Status");
    assert_eq!(v["code"], code);
    assert!(
        !body.contains("upstream-credential"),
        "the credential leaked: {body}"
    );
}

#[tokio::test]
async fn unreachable_cluster_is_503() {
    // Bind and drop to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fake = fake_upstream(b"").await; // only for a CA
    let gw = gateway_for(&format!("https://127.0.0.1:{port}"), &fake.ca_pem).await;
    let (status, _, body) = send(&gw, get("/api/v1/pods")).await;
    assert_eq!(status, 503, "{body}");
    assert_status_body(&body, 503);
    gw.running.shutdown().await;
}

#[tokio::test]
async fn silent_cluster_is_504() {
    let fake = fake_upstream(b"").await;
    let gw = gateway_for(&format!("https://{}", fake.addr), &fake.ca_pem).await;
    let (status, _, body) = send(&gw, get("/api/v1/pods")).await;
    assert_eq!(status, 504, "{body}");
    assert_status_body(&body, 504);
    gw.running.shutdown().await;
}

#[tokio::test]
async fn garbage_from_cluster_is_502() {
    let fake = fake_upstream(b"this is not http\r\n\r\n").await;
    let gw = gateway_for(&format!("https://{}", fake.addr), &fake.ca_pem).await;
    let (status, _, body) = send(&gw, get("/api/v1/pods")).await;
    assert_eq!(status, 502, "{body}");
    assert_status_body(&body, 502);
    gw.running.shutdown().await;
}

#[tokio::test]
async fn untrusted_cluster_certificate_is_502() {
    let fake = fake_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
    let other = fake_upstream(b"").await;
    // The gateway trusts another CA: the TLS handshake must fail, never fall back.
    let gw = gateway_for(&format!("https://{}", fake.addr), &other.ca_pem).await;
    let (status, _, body) = send(&gw, get("/api/v1/pods")).await;
    assert!(status == 502 || status == 503, "{status} {body}");
    assert_status_body(&body, status);
    gw.running.shutdown().await;
}

fn exec_upgrade() -> String {
    format!(
        "POST /api/v1/namespaces/shop/pods/web/exec?command=sh&stdout=true HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {TOKEN}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
    )
}

#[tokio::test]
async fn only_a_real_101_opens_a_tunnel() {
    // The cluster refuses the upgrade with a 403 and then writes bytes that would be tunnel
    // traffic if the gateway upgraded anyway.
    let fake = fake_upstream(
        b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: 67\r\n\r\n{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"code\":403,\"status\":\"Failure\"}\r\nSMUGGLED",
    )
    .await;
    let gw = gateway_for(&format!("https://{}", fake.addr), &fake.ca_pem).await;
    let (status, head, body) = send(&gw, exec_upgrade()).await;
    assert_eq!(status, 403, "{head}");
    assert!(!head.to_ascii_lowercase().contains("upgrade"), "{head}");
    assert!(
        !body.contains("SMUGGLED"),
        "bytes after the response leaked: {body}"
    );
    gw.running.shutdown().await;
}

#[tokio::test]
async fn a_real_101_opens_a_tunnel() {
    // One WebSocket message on stdout (channel 1): the tunnel parses it and passes it on.
    let fake = fake_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n\x82\x10\x01tunnelled bytes",
    )
    .await;
    let gw = gateway_for(&format!("https://{}", fake.addr), &fake.ca_pem).await;
    let (status, head, body) = send(&gw, exec_upgrade()).await;
    assert_eq!(status, 101, "{head}");
    assert!(head.contains("v4.channel.k8s.io"), "{head}");
    // The masker may re-frame stdout (it holds back a tail that could start a keyword until
    // the stream ends); the payloads together are unchanged. Each frame here is 0x82 (shown
    // as U+FFFD), a one-byte length and the channel byte.
    let payload: String = body
        .split('\u{fffd}')
        .map(|frame| frame.chars().skip(2).collect::<String>())
        .collect();
    assert_eq!(payload, "tunnelled bytes", "{body:?}");
    gw.running.shutdown().await;
}

#[tokio::test]
async fn an_exec_tunnel_that_cannot_be_parsed_is_closed() {
    // After a real 101, bytes that are not SPDY: exec output must never pass unmasked, so the
    // tunnel is closed without forwarding them (fail closed).
    let fake = fake_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\ntunnelled bytes",
    )
    .await;
    let gw = gateway_for(&format!("https://{}", fake.addr), &fake.ca_pem).await;
    let (status, head, body) = send(&gw, exec_upgrade()).await;
    assert_eq!(status, 101, "{head}");
    assert_eq!(body, "", "unparseable exec output was forwarded");
    gw.running.shutdown().await;
}
