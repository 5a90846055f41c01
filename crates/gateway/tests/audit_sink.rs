//! The webhook sink: every record of this replica arrives, in order, at least once, through
//! webhook failures and a gateway restart.

use std::{
    collections::BTreeSet,
    convert::Infallible,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use http_body_util::BodyExt;
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const TOKEN: &str = "sink-test-token";

#[derive(Default)]
struct Received {
    /// Every record's seq, each time it arrived.
    seqs: Vec<u64>,
    attempts: u32,
}

/// A webhook that refuses its first two deliveries with 500, then accepts.
async fn webhook() -> (String, Arc<Mutex<Received>>) {
    let got = Arc::new(Mutex::new(Received::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
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
                        assert_eq!(req.headers()["content-type"], "application/x-ndjson");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut s = state.lock().unwrap();
                        s.attempts += 1;
                        let code = if s.attempts <= 2 {
                            500
                        } else {
                            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                                let v: serde_json::Value = serde_json::from_slice(line).unwrap();
                                assert_eq!(v["replica_id"], "sink-test");
                                s.seqs.push(v["seq"].as_u64().unwrap());
                            }
                            200
                        };
                        let mut resp =
                            Response::new(http_body_util::Full::new(bytes::Bytes::new()));
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

async fn start_gateway(dir: &Path, sim: &sim::SimHandle, hook: &str) -> gateway::Running {
    std::fs::write(dir.join("sim.kubeconfig"), sim.admin_kubeconfig()).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nstate_dir: {d}\nclusters: [{{name: sim, kubeconfig: {d}/sim.kubeconfig}}]\nauthn: {{static_tokens: [{{sha256: {h}, user: tester, groups: [g]}}]}}\naudit: {{replica_id: sink-test, sinks: [{{name: siem, type: webhook, url: \"{hook}\", batch_size: 5}}]}}\n",
        d = dir.display(),
        h = authn::hash_token(TOKEN)
    );
    let raw: gateway::RawConfig = serde_yaml::from_str(&yaml).unwrap();
    let cfg = gateway::Config::from_raw(raw, Path::new("/")).unwrap();
    gateway::start(&cfg).await.unwrap()
}

async fn get(running: &gateway::Running, path: &str) -> u16 {
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
    let req = format!("GET {path} HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
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

/// Waits until the webhook has seen every seq from 1 to `upto`.
async fn wait_for(got: &Arc<Mutex<Received>>, upto: u64) -> BTreeSet<u64> {
    for _ in 0..200 {
        let seen: BTreeSet<u64> = got.lock().unwrap().seqs.iter().copied().collect();
        if (1..=upto).all(|s| seen.contains(&s)) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen: BTreeSet<u64> = got.lock().unwrap().seqs.iter().copied().collect();
    panic!("the webhook did not get records 1..={upto}: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_gets_every_record_through_failures_and_a_restart() {
    let sim = sim::start(sim::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        introspect_listen: None,
        admin_token: "sim-admin".into(),
        seed: true,
    })
    .await
    .unwrap();
    let dir: PathBuf = std::env::temp_dir().join(format!("airlock-sink-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (hook, got) = webhook().await;

    let gw = start_gateway(&dir, &sim, &hook).await;
    for _ in 0..6 {
        assert_eq!(get(&gw, "/api/v1/namespaces/shop/pods").await, 200);
    }
    // Six requests, two records each; the first two deliveries were refused and retried.
    wait_for(&got, 12).await;
    assert!(got.lock().unwrap().attempts >= 3);
    gw.shutdown().await;

    // A restart resumes from the cursor: the new records arrive, and nothing is missing.
    let gw = start_gateway(&dir, &sim, &hook).await;
    for _ in 0..3 {
        assert_eq!(get(&gw, "/api/v1/namespaces/shop/configmaps").await, 200);
    }
    let seen = wait_for(&got, 18).await;
    assert_eq!(seen.iter().next_back().copied(), Some(18));
    let seqs = got.lock().unwrap().seqs.clone();
    // In order within each delivery, and the cursor means a restart does not start over.
    let repeats = seqs.len() - seen.len();
    assert!(
        repeats <= 5,
        "more than one batch was delivered twice: {seqs:?}"
    );
    gw.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
