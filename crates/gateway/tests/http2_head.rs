//! HEAD over HTTP/2: the response carries headers only. hyper drops a HEAD response's body over
//! HTTP/1.1 but would send it over HTTP/2, and clients then reset the stream. Found by a
//! black-box probe (`curl --http2 -I`).

use std::{path::Path, sync::Arc};

use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

const TOKEN: &str = "head-token";

#[tokio::test]
async fn head_over_http2_answers_with_headers_only() {
    let sim = sim::start(sim::SimConfig::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("airlock-head-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sim.kubeconfig"), sim.admin_kubeconfig()).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nstate_dir: {d}\nclusters: [{{name: sim, kubeconfig: {d}/sim.kubeconfig}}]\nauthn: {{static_tokens: [{{sha256: {h}, user: tester, groups: [g]}}]}}\n",
        d = dir.display(),
        h = authn::hash_token(TOKEN)
    );
    let raw: gateway::RawConfig = serde_yaml::from_str(&yaml).unwrap();
    let cfg = gateway::Config::from_raw(raw, Path::new("/")).unwrap();
    let running = gateway::start(&cfg).await.unwrap();

    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut running.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);

    let mut forwarded_id = None;
    // A forwarded call (answered as the simulator answers HEAD), an error from the gateway
    // (no token), and a refused path.
    for (path, token, want) in [
        (
            "/api/v1/namespaces/shop/pods/web-6b7f9c5d4-x2k9p",
            true,
            None,
        ),
        ("/api/v1/namespaces/shop/pods", false, Some(401)),
        ("/api/v1/namespaces/shop/pods/%2e%2e", true, Some(400)),
    ] {
        let mut req = http::Request::head(format!("https://127.0.0.1{path}"));
        if token {
            req = req.header("authorization", format!("Bearer {TOKEN}"));
        }
        let req = req.body(Empty::<bytes::Bytes>::new()).unwrap();
        send.ready().await.unwrap();
        let resp = send.send_request(req).await.unwrap();
        if let Some(want) = want {
            assert_eq!(resp.status().as_u16(), want, "{path}");
        } else {
            forwarded_id = resp
                .headers()
                .get("audit-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
        // The stream ends cleanly, with no body.
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty(), "{path}: {} body bytes", body.len());
    }
    // The forwarded HEAD has a complete outcome record, written before the answer went out.
    let id = uuid::Uuid::parse_str(&forwarded_id.expect("audit-id")).unwrap();
    let store = store::Store::open(&gateway::config::default_store_url(&dir))
        .await
        .unwrap();
    let records = store.get(id).await.unwrap();
    let outcome = records
        .iter()
        .find_map(|r| r.outcome.as_ref())
        .expect("an outcome record");
    assert_eq!(outcome.error, None, "{outcome:?}");
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
