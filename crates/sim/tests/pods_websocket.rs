//! The WebSocket protocols kubectl does not exercise on its own: `v4.channel.k8s.io` (older
//! clients), the v5 stdin close message sent by hand, and plain `portforward.k8s.io`
//! channels. A raw tokio-tungstenite client over TLS talks to the simulator.

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const WEB: &str = "web-6b7f9c5d4-x2k9p";

type Client =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn connect(sim: &sim::SimHandle, path_and_query: &str, protocol: &str) -> (Client, String) {
    try_connect(sim, path_and_query, protocol)
        .await
        .expect("websocket handshake")
}

async fn try_connect(
    sim: &sim::SimHandle,
    path_and_query: &str,
    protocol: &str,
) -> Result<(Client, String), tokio_tungstenite::tungstenite::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(sim.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(sim.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap().to_owned(), tcp)
        .await
        .unwrap();
    let url = format!("wss://{}{}", sim.addr, path_and_query);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", sim.admin_token).parse().unwrap(),
    );
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::client_async(req, tls).await?;
    let negotiated = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((ws, negotiated))
}

async fn next_binary(ws: &mut Client) -> Vec<u8> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => return b,
            Ok(Some(Ok(_))) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reads until the server closes: (stdout, stderr, error channel).
async fn drain(ws: &mut Client) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut chans: [Vec<u8>; 4] = Default::default();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Binary(b) = msg {
                if let Some((&ch, rest)) = b.split_first() {
                    if let Some(buf) = chans.get_mut(usize::from(ch)) {
                        buf.extend_from_slice(rest);
                    }
                }
            }
        }
    })
    .await
    .expect("server finished");
    let [_, out, err, status] = chans;
    (out, err, status)
}

fn exec_path(query: &str) -> String {
    format!("/api/v1/namespaces/shop/pods/{WEB}/exec?container=app&{query}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_channel_exec_reports_exit_code() {
    let sim = sim::start(sim::SimConfig::default()).await.unwrap();
    let q = "command=sh&command=-c&command=echo%20hi%3B%20exit%205&stdout=true&stderr=true";
    let (mut ws, proto) = connect(&sim, &exec_path(q), "v4.channel.k8s.io").await;
    assert_eq!(proto, "v4.channel.k8s.io");
    let (out, _, status) = drain(&mut ws).await;
    assert_eq!(out, b"hi\n");
    assert_eq!(streams::status::parse_exit_code(&status), Some(5));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_close_message_ends_stdin() {
    let sim = sim::start(sim::SimConfig::default()).await.unwrap();
    let q = "command=cat&stdin=true&stdout=true&stderr=true";
    let (mut ws, proto) =
        connect(&sim, &exec_path(q), "v5.channel.k8s.io, v4.channel.k8s.io").await;
    assert_eq!(proto, "v5.channel.k8s.io");
    ws.send(Message::Binary(b"\x00abc".to_vec())).await.unwrap();
    ws.send(Message::Binary(vec![255, 0])).await.unwrap();
    let (out, _, status) = drain(&mut ws).await;
    assert_eq!(out, b"abc");
    assert_eq!(streams::status::parse_exit_code(&status), Some(0));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portforward_channels_echo() {
    let sim = sim::start(sim::SimConfig::default()).await.unwrap();
    let path = format!("/api/v1/namespaces/shop/pods/{WEB}/portforward?ports=8080");
    let (mut ws, proto) = connect(&sim, &path, "portforward.k8s.io").await;
    assert_eq!(proto, "portforward.k8s.io");
    assert_eq!(
        next_binary(&mut ws).await,
        vec![0, 0x90, 0x1f],
        "data channel announces port 8080"
    );
    assert_eq!(
        next_binary(&mut ws).await,
        vec![1, 0x90, 0x1f],
        "error channel announces port 8080"
    );
    ws.send(Message::Binary(b"\x00ping".to_vec()))
        .await
        .unwrap();
    let echoed = next_binary(&mut ws).await;
    assert_eq!(echoed, b"\x00ping");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_subprotocol_is_refused() {
    let sim = sim::start(sim::SimConfig::default()).await.unwrap();
    let q = "command=true&stdout=true";
    let path = exec_path(q);
    assert!(
        try_connect(&sim, &path, "base64.channel.k8s.io")
            .await
            .is_err(),
        "handshake must fail"
    );
    sim.shutdown().await;
}
