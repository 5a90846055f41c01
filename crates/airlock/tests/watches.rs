//! Many open watches must not stall other calls: HTTP/2 connections carry a bounded number of
//! streams (kube-apiserver: 100; the simulated server: 200), so Airlock keeps long-running
//! requests off the shared connection and spreads them over connections of their own.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::Arc,
    time::Duration,
};

use common::Demo;

fn open_watch(
    demo: &Demo,
    cfg: &Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let addr = demo.server.strip_prefix("https://").unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let req = format!(
        "GET /api/v1/namespaces/shop/configmaps?watch=true HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n\r\n",
        demo.agent_token
    );
    tls.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tls
}

#[test]
fn three_hundred_watches_do_not_stall_other_calls() {
    let demo = Demo::start();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut demo.ca_pem().as_bytes()) {
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
    let cfg = Arc::new(cfg);

    let watches: Vec<_> = (0..300).map(|_| open_watch(&demo, &cfg)).collect();
    common::wait_for_metric(&demo, "airlock_open_watches", 300);

    let started = std::time::Instant::now();
    let resp = demo.raw_get("/api/v1/namespaces/shop/pods/web-6b7f9c5d4-x2k9p", "");
    assert_eq!(resp.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a GET took {:?} with 300 watches open",
        started.elapsed()
    );

    drop(watches);
    common::wait_for_metric(&demo, "airlock_open_watches", 0);
}
