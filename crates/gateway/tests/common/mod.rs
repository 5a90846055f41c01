//! Shared by the gateway's integration tests: a simulated cluster, a recording webhook and a
//! raw HTTPS client for one request.
#![allow(dead_code)]

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// What a [`webhook`] saw.
#[derive(Default)]
pub struct Hook {
    /// Every delivery attempt, refused or accepted.
    pub attempts: u32,
    /// The accepted deliveries: (content type, body).
    pub accepted: Vec<(String, Bytes)>,
}

/// A plain-HTTP webhook on loopback that answers 500 to its first `refuse` deliveries, then
/// 200, keeping what it accepted.
pub async fn webhook(refuse: u32) -> (String, Arc<Mutex<Hook>>) {
    let got = Arc::new(Mutex::new(Hook::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let state = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        let ct = req
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut s = state.lock().unwrap();
                        s.attempts += 1;
                        let code = if s.attempts <= refuse {
                            500
                        } else {
                            s.accepted.push((ct, body));
                            200
                        };
                        let mut resp = Response::new(http_body_util::Full::new(Bytes::new()));
                        *resp.status_mut() = http::StatusCode::from_u16(code).unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (url, got)
}

/// The seeded simulated cluster on loopback.
pub async fn start_sim() -> sim::SimHandle {
    sim::start(sim::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        introspect_listen: None,
        admin_token: "sim-admin".into(),
        seed: true,
    })
    .await
    .unwrap()
}

/// Sends one request through the gateway (HTTP/1.1 over TLS, trusting its CA) with a bearer
/// token and returns the status code.
pub async fn send(running: &gateway::Running, token: &str, method: &str, path: &str) -> u16 {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut running.ca_pem.as_bytes()) {
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
    let tcp = TcpStream::connect(running.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap()
}
