//! HTTP upgrade negotiation for WebSocket and SPDY/3.1, and the WebSocket<->bytes tunnel used
//! for `SPDY/3.1+portforward.k8s.io`.

use super::{full_body, status_error};
use futures_util::{SinkExt, StreamExt};
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The upgraded transport type handed to sessions.
pub(crate) type Io = TokioIo<Upgraded>;
pub(crate) type Ws = WebSocketStream<Io>;

/// Largest WebSocket message accepted from a client; kubectl sends at most 32 KiB.
const MAX_WS_MESSAGE: usize = 4 * 1024 * 1024;

fn header_has(headers: &HeaderMap, name: hyper::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

pub(crate) fn is_websocket<B>(req: &Request<B>) -> bool {
    header_has(req.headers(), UPGRADE, "websocket")
}

pub(crate) fn is_spdy<B>(req: &Request<B>) -> bool {
    header_has(req.headers(), UPGRADE, "SPDY/3.1")
}

/// What an accepted upgrade yields: the 101 response to return and the connection to await.
pub(crate) struct Accepted {
    pub(crate) response: Response<crate::Body>,
    pub(crate) protocol: &'static str,
    pub(crate) on_upgrade: OnUpgrade,
}

/// Accepts a WebSocket upgrade with the first of `supported` the client offered.
pub(crate) fn accept_websocket(
    req: &mut Request<Incoming>,
    supported: &[&'static str],
) -> Result<Accepted, super::Rejection> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return Err(Box::new(super::bad_request("missing Sec-WebSocket-Key")));
    };
    let offered = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect::<Vec<_>>();
    let Some(protocol) = streams::channel::negotiate(&offered, supported) else {
        return Err(Box::new(status_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("unable to negotiate a websocket subprotocol: client offered {offered:?}, server supports {supported:?}"),
        )));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = Response::new(full_body(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    h.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    Ok(Accepted {
        response,
        protocol,
        on_upgrade: hyper::upgrade::on(req),
    })
}

/// Accepts a SPDY/3.1 upgrade, negotiating `X-Stream-Protocol-Version` from `supported`.
pub(crate) fn accept_spdy(
    req: &mut Request<Incoming>,
    supported: &[&'static str],
) -> Result<Accepted, super::Rejection> {
    let offered = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect::<Vec<_>>();
    let Some(protocol) = streams::channel::negotiate(&offered, supported) else {
        return Err(Box::new(status_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"),
        )));
    };
    let mut response = Response::new(full_body(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(
        "x-stream-protocol-version",
        HeaderValue::from_static(protocol),
    );
    Ok(Accepted {
        response,
        protocol,
        on_upgrade: hyper::upgrade::on(req),
    })
}

/// Waits for the upgrade to complete; `None` if the client went away first.
pub(crate) async fn upgraded(on: OnUpgrade) -> Option<Io> {
    match on.await {
        Ok(u) => Some(TokioIo::new(u)),
        Err(e) => {
            tracing::debug!(error = %e, "pod stream upgrade failed");
            None
        }
    }
}

pub(crate) async fn websocket(io: Io) -> Ws {
    let config = WebSocketConfig {
        max_message_size: Some(MAX_WS_MESSAGE),
        max_frame_size: Some(MAX_WS_MESSAGE),
        ..Default::default()
    };
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
}

/// Unwraps binary WebSocket messages into a byte stream and back, for SPDY tunnelled in
/// WebSocket. Returns the byte-stream end to run SPDY on. Both pump tasks end when either side
/// closes.
pub(crate) fn tunnel(ws: Ws) -> DuplexStream {
    let (spdy_side, our_side) = tokio::io::duplex(64 * 1024);
    let (mut rd, mut wr) = tokio::io::split(our_side);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::Binary(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(normal_close()).await;
    });
    spdy_side
}

/// A close frame with status 1000. kubectl treats a close without a status (1005) as an
/// error while reading the error channel, so the code must be explicit.
pub(crate) fn normal_close() -> Message {
    use tokio_tungstenite::tungstenite::protocol::frame::{coding::CloseCode, CloseFrame};
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}
