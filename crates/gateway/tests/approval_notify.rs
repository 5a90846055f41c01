//! Approval notifications: a new approval request reaches a JSON webhook and a Slack-style
//! webhook, and a failed delivery is retried.

use std::{
    convert::Infallible,
    path::Path,
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

const TOKEN: &str = "notify-test-token";

/// A webhook that answers 500 to its first request, then 200; keeps the bodies it accepted.
async fn webhook() -> (String, Arc<Mutex<(u32, Vec<serde_json::Value>)>>) {
    let got = Arc::new(Mutex::new((0u32, Vec::new())));
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
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut s = state.lock().unwrap();
                        s.0 += 1;
                        let code = if s.0 == 1 {
                            500
                        } else {
                            s.1.push(serde_json::from_slice(&body).unwrap());
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

async fn send(running: &gateway::Running, method: &str, path: &str) -> u16 {
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
    let req = format!("{method} {path} HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_approval_requests_are_announced() {
    let sim = sim::start(sim::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        introspect_listen: None,
        admin_token: "sim-admin".into(),
        seed: true,
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("airlock-notify-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sim.kubeconfig"), sim.admin_kubeconfig()).unwrap();
    std::fs::write(
        dir.join("policy.yaml"),
        "agent_groups: [ai-agents]\ndefault: allow\npresets:\n  - name: ai-agent-baseline\n    params:\n      approvers: [approvers]\n      hold: 1s\n",
    )
    .unwrap();
    let (json_url, json_got) = webhook().await;
    let (slack_url, slack_got) = webhook().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nstate_dir: {d}\npolicy: {d}/policy.yaml\nclusters: [{{name: sim, kubeconfig: {d}/sim.kubeconfig}}]\nauthn: {{static_tokens: [{{sha256: {h}, user: agent@test, groups: [ai-agents]}}]}}\napprovals:\n  link_base: https://airlock.example.com/\n  notify:\n    - {{name: siem, url: \"{json_url}\"}}\n    - {{name: chat, format: slack, url: \"{slack_url}\"}}\n",
        d = dir.display(),
        h = authn::hash_token(TOKEN)
    );
    let raw: gateway::RawConfig = serde_yaml::from_str(&yaml).unwrap();
    let cfg = gateway::Config::from_raw(raw, Path::new("/")).unwrap();
    let gw = gateway::start(&cfg).await.unwrap();

    // Deleting a namespace needs approval: held for a second, then 403 with the id.
    assert_eq!(send(&gw, "DELETE", "/api/v1/namespaces/shop").await, 403);

    let mut waited = 0;
    loop {
        let (j, s) = (
            json_got.lock().unwrap().1.len(),
            slack_got.lock().unwrap().1.len(),
        );
        if j == 1 && s == 1 {
            break;
        }
        waited += 1;
        assert!(
            waited < 100,
            "notifications did not arrive ({j} json, {s} slack)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let j = json_got.lock().unwrap().clone();
    assert!(j.0 >= 2, "the first failed delivery was retried");
    let m = &j.1[0];
    assert_eq!(m["type"], "approval_requested");
    assert_eq!(m["command"], "kubectl delete namespace shop");
    assert_eq!(m["user"], "agent@test");
    let id = m["id"].as_str().unwrap().to_owned();
    assert_eq!(
        m["link"],
        format!("https://airlock.example.com/approvals/{id}").as_str()
    );
    let s = slack_got.lock().unwrap().1[0].clone();
    let text = s["blocks"][0]["text"]["text"].as_str().unwrap();
    for want in [
        id.as_str(),
        "kubectl delete namespace shop",
        "agent@test",
        "<https://airlock.example.com/approvals/",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(s["text"].as_str().unwrap().contains("Approval needed"));
    gw.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
