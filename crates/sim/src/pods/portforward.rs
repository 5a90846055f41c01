//! port-forward: every forwarded connection is answered by an echo server "in the pod".

use super::upgrade::{self, Ws};
use super::{bad_request, query_pairs, PodContext};
use futures_util::{SinkExt, StreamExt};
use hyper::{body::Incoming, Request, Response};
use std::collections::HashMap;
use streams::channel::{self, ChannelMessage};
use streams::spdy::{SpdyServer, SpdyStream};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

/// Error streams waiting for their data stream; bounded so a client cannot grow it forever.
const MAX_PENDING_ERROR_STREAMS: usize = 1024;

pub(super) fn serve(_ctx: PodContext, mut req: Request<Incoming>) -> Response<crate::Body> {
    if upgrade::is_websocket(&req) {
        let ports: Vec<u16> = query_pairs(&req)
            .iter()
            .filter(|(k, _)| k == "ports")
            .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        let supported = [
            channel::SPDY_TUNNEL_PORT_FORWARD_PROTOCOL,
            channel::V4_PORT_FORWARD_PROTOCOL,
            channel::PORT_FORWARD_PROTOCOL,
        ];
        match upgrade::accept_websocket(&mut req, &supported) {
            Ok(acc) => {
                let tunnelled = acc.protocol == channel::SPDY_TUNNEL_PORT_FORWARD_PROTOCOL;
                if !tunnelled && ports.is_empty() {
                    return bad_request("query parameter \"ports\" is required");
                }
                tokio::spawn(async move {
                    let Some(io) = upgrade::upgraded(acc.on_upgrade).await else {
                        return;
                    };
                    let ws = upgrade::websocket(io).await;
                    if tunnelled {
                        spdy_session(upgrade::tunnel(ws)).await;
                    } else {
                        channel_session(ws, ports).await;
                    }
                });
                acc.response
            }
            Err(resp) => *resp,
        }
    } else if upgrade::is_spdy(&req) {
        match upgrade::accept_spdy(&mut req, &[channel::PORT_FORWARD_PROTOCOL]) {
            Ok(acc) => {
                tokio::spawn(async move {
                    if let Some(io) = upgrade::upgraded(acc.on_upgrade).await {
                        spdy_session(io).await;
                    }
                });
                acc.response
            }
            Err(resp) => *resp,
        }
    } else {
        bad_request("Upgrade request required")
    }
}

/// SPDY port-forward: the client opens an `error` then a `data` stream per connection, tied
/// by `requestID`. Runs until the client closes the session.
async fn spdy_session<T>(io: T)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let mut server = match SpdyServer::new(io) {
        Ok(s) => s,
        Err(_) => return,
    };
    let mut errors: HashMap<String, SpdyStream> = HashMap::new();
    // Echo tasks are owned here: when the session ends they are aborted with the set.
    let mut echoes = JoinSet::new();
    while let Some(stream) = server.accept().await {
        let request_id = stream.headers().get("requestid").unwrap_or("").to_owned();
        match stream.stream_type() {
            Some("error") => {
                if errors.len() >= MAX_PENDING_ERROR_STREAMS {
                    errors.clear();
                }
                errors.insert(request_id, stream);
            }
            Some("data") => {
                let error = errors.remove(&request_id);
                echoes.spawn(echo_stream(stream, error));
            }
            _ => {}
        }
        while echoes.try_join_next().is_some() {}
    }
}

async fn echo_stream(mut data: SpdyStream, error: Option<SpdyStream>) {
    while let Some(chunk) = data.read().await {
        if data.write(chunk).await.is_err() {
            break;
        }
    }
    let _ = data.close().await;
    if let Some(e) = error {
        let _ = e.close().await;
    }
}

/// `portforward.k8s.io` over WebSocket: channel `2i` is data and `2i+1` errors for the i-th
/// port; each channel's first message carries the port number.
async fn channel_session(ws: Ws, ports: Vec<u16>) {
    let (mut sink, mut stream) = ws.split();
    for (i, port) in ports.iter().enumerate() {
        for ch in [2 * i, 2 * i + 1] {
            let Ok(ch) = u8::try_from(ch) else { return };
            let msg = channel::port_forward_prefix(ch, *port).to_vec();
            if sink.send(Message::Binary(msg)).await.is_err() {
                return;
            }
        }
    }
    while let Some(Ok(msg)) = stream.next().await {
        let data = match msg {
            Message::Binary(b) => b,
            Message::Close(_) => break,
            _ => continue,
        };
        if let Ok(ChannelMessage::Data { channel, payload }) = ChannelMessage::decode(&data, false)
        {
            if channel % 2 == 0 && usize::from(channel / 2) < ports.len() && !payload.is_empty() {
                let echo = ChannelMessage::data(channel, payload).encode().to_vec();
                if sink.send(Message::Binary(echo)).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = sink.send(super::upgrade::normal_close()).await;
}
