//! Parser and relay tests: every case is fed in several chunkings (whole, byte by byte, odd
//! sizes), because frames split across reads are the normal case on a real connection.

use std::sync::Mutex;

use bytes::BytesMut;
use mask::MaskConfig;
use streams::spdy::{Frame, FrameDecoder, FrameEncoder, Headers};

use super::ws::{self, Ev, Parser};
use super::*;

const JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InNpbSJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2hvcDpkZWZhdWx0In0.c2lnbmF0dXJlLWZpbGxlci1ub3QtcmVhbA";
const DB_URL: &str = "postgres://shop:S3cr3t-Pa55w0rd@db.shop.svc:5432/shop";

#[derive(Default)]
pub(crate) struct Rec(pub(crate) Mutex<Vec<TunnelEvent>>);

impl Recorder for Rec {
    fn event(&self, ev: TunnelEvent) {
        self.0.lock().unwrap().push(ev);
    }
}

impl Rec {
    fn kinds(&self) -> Vec<TunnelEventKind> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.kind.clone())
            .collect()
    }
    fn stream(&self, pick: fn(&TunnelEventKind) -> Option<&Bytes>) -> Vec<u8> {
        let evs = self.0.lock().unwrap();
        evs.iter()
            .filter_map(|e| pick(&e.kind))
            .flat_map(|b| b.to_vec())
            .collect()
    }
}

fn stdout_of(k: &TunnelEventKind) -> Option<&Bytes> {
    match k {
        TunnelEventKind::Stdout(b) => Some(b),
        _ => None,
    }
}

fn stdin_of(k: &TunnelEventKind) -> Option<&Bytes> {
    match k {
        TunnelEventKind::Stdin(b) => Some(b),
        _ => None,
    }
}

fn masker() -> Masker {
    Masker::new(MaskConfig::new(
        b"tunnel-test-key-0123456789abcdef".to_vec(),
    ))
    .unwrap()
}

fn spec(kind: TunnelKind, framing: Framing, rec: Option<Arc<Rec>>) -> TunnelSpec {
    TunnelSpec {
        kind,
        protocol: Protocol {
            framing,
            name: format!("{framing:?}"),
        },
        tty: false,
        same_length: false,
        masker: masker(),
        mask_ctx: MaskContext::for_resource("pods", Some("shop")),
        recorder: rec.map(|r| r as Arc<dyn Recorder>),
    }
}

fn shared(rec: &Arc<Rec>) -> Arc<Shared> {
    Arc::new(Shared::new(&spec(
        TunnelKind::Exec,
        Framing::WsChannels,
        Some(rec.clone()),
    )))
}

fn output() -> Output {
    let m = masker();
    let ctx = MaskContext::default();
    Output {
        maskers: [
            m.stream(BodyKind::Text, &ctx).unwrap(),
            m.stream(BodyKind::Text, &ctx).unwrap(),
        ],
        ready: [Vec::new(), Vec::new()],
        held: [false, false],
    }
}

/// Chunkings every stream is fed in.
fn chunkings(len: usize) -> Vec<usize> {
    vec![len.max(1), 1, 2, 3, 7, 13, 64]
}

/// Feeds `wire` in chunks of `size`, then EOF; returns what the direction sends on.
fn drive(d: &mut dyn Direction, wire: &[u8], size: usize) -> Result<Vec<u8>, TunnelError> {
    let mut out = Vec::new();
    for c in wire.chunks(size.max(1)) {
        d.input(c, &mut out)?;
    }
    d.eof(&mut out)?;
    Ok(out)
}

// --- WebSocket helpers ---

/// A client (masked) frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= 0xffff {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// A server (unmasked) frame.
fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let len = payload.len();
    if len < 126 {
        f.push(len as u8);
    } else if len <= 0xffff {
        f.push(126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

fn chan_msg(chan: u8, data: &[u8]) -> Vec<u8> {
    let mut p = vec![chan];
    p.extend_from_slice(data);
    p
}

/// Reassembles the messages of a server -> client byte stream: (opcode, payload) per message,
/// control frames as their own entries.
fn server_messages(wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut p = Parser::new(false);
    let mut input = wire;
    let mut msgs = Vec::new();
    let mut cur: Option<(u8, Vec<u8>)> = None;
    let mut head = None;
    while let Some(ev) = p.next(&mut input).unwrap() {
        match ev {
            Ev::Head(h) => {
                if h.opcode != ws::OP_CONT && !h.is_control() {
                    cur = Some((h.opcode, Vec::new()));
                }
                if h.is_control() {
                    msgs.push((h.opcode, Vec::new()));
                }
                head = Some(h);
            }
            Ev::Payload { data, .. } => {
                let h = head.unwrap();
                if h.is_control() {
                    msgs.last_mut().unwrap().1.extend_from_slice(data);
                } else {
                    cur.as_mut().unwrap().1.extend_from_slice(data);
                }
            }
            Ev::End => {
                let h = head.take().unwrap();
                if !h.is_control() && h.fin {
                    msgs.push(cur.take().unwrap());
                }
            }
        }
    }
    assert!(input.is_empty());
    msgs
}

fn channel_bytes(msgs: &[(u8, Vec<u8>)], chan: u8) -> Vec<u8> {
    msgs.iter()
        .filter(|(op, p)| *op == ws::OP_BINARY && p.first() == Some(&chan))
        .flat_map(|(_, p)| p[1..].to_vec())
        .collect()
}

#[test]
fn ws_parser_handles_lengths_masks_and_split_reads() {
    let big = vec![b'x'; 70_000];
    let mid = vec![b'y'; 300];
    let mut wire = Vec::new();
    wire.extend(client_frame(true, ws::OP_BINARY, b"\x00hi", [1, 2, 3, 4]));
    wire.extend(client_frame(true, ws::OP_BINARY, &mid, [9, 8, 7, 6]));
    wire.extend(client_frame(
        true,
        ws::OP_BINARY,
        &big,
        [0xa, 0xb, 0xc, 0xd],
    ));
    wire.extend(client_frame(true, ws::OP_PING, b"", [5, 5, 5, 5]));
    for size in chunkings(wire.len()) {
        let mut p = Parser::new(true);
        let mut frames: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut key = None;
        for mut c in wire.chunks(size) {
            while let Some(ev) = p.next(&mut c).unwrap() {
                match ev {
                    Ev::Head(h) => {
                        key = h.key;
                        frames.push((h.opcode, Vec::new()));
                    }
                    Ev::Payload { data, pos } => {
                        let mut plain = Vec::new();
                        ws::unmask(key.unwrap(), pos, data, &mut plain);
                        frames.last_mut().unwrap().1.extend(plain);
                    }
                    Ev::End => {}
                }
            }
        }
        assert_eq!(frames.len(), 4, "size {size}");
        assert_eq!(frames[0].1, b"\x00hi");
        assert_eq!(frames[1].1, mid);
        assert_eq!(frames[2].1, big);
        assert_eq!(frames[3], (ws::OP_PING, Vec::new()));
    }
}

#[test]
fn ws_parser_rejects_what_it_cannot_read() {
    let cases: &[(&str, bool, Vec<u8>)] = &[
        ("unmasked client frame", true, server_frame(true, 2, b"a")),
        (
            "masked server frame",
            false,
            client_frame(true, 2, b"a", [1; 4]),
        ),
        ("compressed (rsv1)", false, vec![0xc2, 0x01, 0x00]),
        ("reserved opcode", false, vec![0x83, 0x00]),
        ("fragmented ping", false, vec![0x09, 0x00]),
        ("oversized close", false, server_frame(true, 8, &[0; 126])),
    ];
    for (what, masked, wire) in cases {
        let mut p = Parser::new(*masked);
        let mut input = &wire[..];
        let mut r = Ok(None);
        for _ in 0..4 {
            r = p.next(&mut input);
            if r.is_err() {
                break;
            }
        }
        assert!(r.is_err(), "{what} was accepted");
    }
}

/// The cluster side of a v5 exec: stdout carries a JWT and a database URL split across
/// fragments, reads and a ping; stderr, the status and the close frame follow.
fn exec_server_wire() -> Vec<u8> {
    let (a, b) = JWT.split_at(30);
    let mut wire = Vec::new();
    wire.extend(server_frame(false, ws::OP_BINARY, &chan_msg(1, b"token: ")));
    wire.extend(server_frame(true, ws::OP_PING, b"p"));
    wire.extend(server_frame(false, ws::OP_CONT, a.as_bytes()));
    wire.extend(server_frame(true, ws::OP_CONT, b""));
    wire.extend(server_frame(
        true,
        ws::OP_BINARY,
        &chan_msg(1, b.as_bytes()),
    ));
    wire.extend(server_frame(
        true,
        ws::OP_BINARY,
        &chan_msg(
            1,
            format!("\nDATABASE_URL={DB_URL}\nplain line\n").as_bytes(),
        ),
    ));
    wire.extend(server_frame(
        true,
        ws::OP_BINARY,
        &chan_msg(2, b"warning: x\n"),
    ));
    wire.extend(server_frame(
        true,
        ws::OP_BINARY,
        &chan_msg(3, br#"{"metadata":{},"status":"Success"}"#),
    ));
    wire.extend(server_frame(true, ws::OP_CLOSE, b"\x03\xe8"));
    wire
}

#[test]
fn ws_stdout_is_masked_across_fragments_and_reads() {
    let wire = exec_server_wire();
    for size in chunkings(wire.len()) {
        let rec = Arc::new(Rec::default());
        let sh = shared(&rec);
        let mut side = ws::WsSide::new(Side::Cluster, ws::Mode::Channels, sh, Some(output()));
        let out = drive(&mut side, &wire, size).unwrap();
        let msgs = server_messages(&out);
        let stdout = String::from_utf8(channel_bytes(&msgs, 1)).unwrap();
        assert!(
            !stdout.contains("eyJzdWIi"),
            "size {size}: JWT leaked: {stdout}"
        );
        assert!(!stdout.contains("S3cr3t-Pa55w0rd"), "size {size}: {stdout}");
        assert!(
            stdout.starts_with("token: [airlock:masked:jwt:"),
            "{stdout}"
        );
        assert!(stdout.contains("DATABASE_URL=postgres://shop:"), "{stdout}");
        assert!(stdout.ends_with("\nplain line\n"), "{stdout}");
        assert_eq!(channel_bytes(&msgs, 2), b"warning: x\n");
        // Control frames and the status are copied; all output comes before the status.
        let status_at = msgs
            .iter()
            .position(|(_, p)| p.first() == Some(&3))
            .unwrap();
        let last_out = msgs
            .iter()
            .rposition(|(_, p)| p.first() == Some(&1))
            .unwrap();
        assert!(last_out < status_at, "size {size}: output after the status");
        assert_eq!(msgs.last().unwrap(), &(ws::OP_CLOSE, b"\x03\xe8".to_vec()));
        assert!(msgs.contains(&(ws::OP_PING, b"p".to_vec())));
        // The recording holds exactly the masked stdout, and the exit.
        assert_eq!(rec.stream(stdout_of), stdout.as_bytes(), "size {size}");
        assert!(rec.kinds().contains(&TunnelEventKind::Exit {
            code: Some(0),
            status: Some(r#"{"metadata":{},"status":"Success"}"#.into())
        }));
    }
}

#[test]
fn ws_client_side_is_forwarded_byte_exact_and_recorded() {
    let mut wire = Vec::new();
    wire.extend(client_frame(false, 2, b"\x00hel", [1, 2, 3, 4]));
    wire.extend(client_frame(true, ws::OP_PONG, b"p", [4, 4, 4, 4]));
    wire.extend(client_frame(true, 0, b"lo\n", [7, 1, 7, 1]));
    wire.extend(client_frame(
        true,
        2,
        br#"{"Width":120,"Height":40}"#
            .iter()
            .fold(vec![4], |mut v, b| {
                v.push(*b);
                v
            })
            .as_slice(),
        [3, 3, 3, 3],
    ));
    wire.extend(client_frame(true, 2, b"\xff\x00", [0, 0, 0, 0]));
    wire.extend(client_frame(true, ws::OP_CLOSE, b"\x03\xe8", [1, 1, 1, 1]));
    for size in chunkings(wire.len()) {
        let rec = Arc::new(Rec::default());
        let mut side = ws::WsSide::new(Side::Client, ws::Mode::Channels, shared(&rec), None);
        let out = drive(&mut side, &wire, size).unwrap();
        assert_eq!(out, wire, "size {size}");
        assert_eq!(rec.stream(stdin_of), b"hello\n");
        assert!(rec.kinds().contains(&TunnelEventKind::Resize {
            width: 120,
            height: 40
        }));
    }
}

#[test]
fn ws_exec_refuses_text_frames_and_garbage() {
    let rec = Arc::new(Rec::default());
    let cases: Vec<Vec<u8>> = vec![
        server_frame(true, ws::OP_TEXT, b"1aGVsbG8="),
        b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
        server_frame(true, ws::OP_CONT, b"\x01x"),
    ];
    for wire in cases {
        let mut side = ws::WsSide::new(
            Side::Cluster,
            ws::Mode::Channels,
            shared(&rec),
            Some(output()),
        );
        let r = drive(&mut side, &wire, wire.len());
        assert!(
            matches!(
                r,
                Err(TunnelError::Garbage {
                    side: Side::Cluster,
                    ..
                })
            ),
            "{:?} accepted: {r:?}",
            String::from_utf8_lossy(&wire)
        );
    }
}

// --- SPDY ---

fn syn(id: u32, headers: Headers) -> Frame {
    Frame::SynStream {
        stream_id: id,
        associated_to: 0,
        priority: 0,
        slot: 0,
        flags: 0,
        headers,
    }
}

fn data(id: u32, flags: u8, d: &[u8]) -> Frame {
    Frame::Data {
        stream_id: id,
        flags,
        data: Bytes::copy_from_slice(d),
    }
}

fn encode(enc: &mut FrameEncoder, frames: &[Frame]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for f in frames {
        enc.encode(f, &mut b).unwrap();
    }
    b.to_vec()
}

/// What kubectl 1.27 sends to open an exec: five SYN_STREAMs sharing one zlib context.
fn exec_client_wire(enc: &mut FrameEncoder) -> Vec<u8> {
    let st = |t: &str| Headers::new().with("streamType", t);
    encode(
        enc,
        &[
            syn(1, st("error")),
            syn(3, st("stdin")),
            syn(5, st("stdout")),
            syn(7, st("stderr")),
            syn(9, st("resize")),
            data(3, 0, b"echo "),
            data(3, 0, b"hi\n"),
            data(9, 0, br#"{"Width":80,"Height":24}"#),
            data(3, streams::spdy::FLAG_FIN, b""),
            Frame::Ping { id: 1 },
        ],
    )
}

#[test]
fn spdy_client_headers_inflate_in_order_and_bytes_pass_unchanged() {
    let mut enc = FrameEncoder::new().unwrap();
    let wire = exec_client_wire(&mut enc);
    for size in chunkings(wire.len()) {
        let rec = Arc::new(Rec::default());
        let sh = shared(&rec);
        let mut side = spdy::SpdySide::new(Side::Client, sh.clone(), None);
        let out = drive(&mut side, &wire, size).unwrap();
        assert_eq!(out, wire, "size {size}");
        assert_eq!(sh.stream(5), Some(Chan::Stdout));
        assert_eq!(sh.stream(7), Some(Chan::Stderr));
        assert_eq!(sh.stream(9), Some(Chan::Resize));
        assert_eq!(rec.stream(stdin_of), b"echo hi\n");
        assert!(rec.kinds().contains(&TunnelEventKind::Resize {
            width: 80,
            height: 24
        }));
    }
    // Header blocks share one zlib context: a later SYN_STREAM cannot be read without the
    // earlier ones, so an observer that missed a block must fail, not guess.
    let mut enc = FrameEncoder::new().unwrap();
    let first = encode(
        &mut enc,
        &[syn(1, Headers::new().with("streamType", "error"))],
    );
    let second = encode(
        &mut enc,
        &[syn(3, Headers::new().with("streamType", "stdin"))],
    );
    assert!(!first.is_empty());
    let rec = Arc::new(Rec::default());
    let mut side = spdy::SpdySide::new(Side::Client, shared(&rec), None);
    assert!(drive(&mut side, &second, second.len()).is_err());
}

#[test]
fn spdy_stdout_is_masked_and_reframed() {
    let (a, b) = JWT.split_at(41);
    let mut server = FrameEncoder::new().unwrap();
    let reply = |id| Frame::SynReply {
        stream_id: id,
        flags: 0,
        headers: Headers::new(),
    };
    let status = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
    let wire = encode(
        &mut server,
        &[
            reply(1),
            reply(3),
            reply(5),
            reply(7),
            data(5, 0, format!("TOKEN={a}").as_bytes()),
            data(5, 0, format!("{b}\nok\n").as_bytes()),
            data(7, 0, b"err\n"),
            data(5, streams::spdy::FLAG_FIN, b""),
            data(7, streams::spdy::FLAG_FIN, b""),
            data(1, 0, status),
            data(1, streams::spdy::FLAG_FIN, b""),
        ],
    );
    for size in chunkings(wire.len()) {
        let rec = Arc::new(Rec::default());
        let sh = shared(&rec);
        let mut client = FrameEncoder::new().unwrap();
        let mut up = spdy::SpdySide::new(Side::Client, sh.clone(), None);
        drive(&mut up, &exec_client_wire(&mut client), 5).unwrap();
        let mut down = spdy::SpdySide::new(Side::Cluster, sh, Some(output()));
        let out = drive(&mut down, &wire, size).unwrap();
        let mut dec = FrameDecoder::new();
        dec.feed(&out);
        let (mut stdout, mut stderr, mut fins, mut replies) = (Vec::new(), Vec::new(), 0, 0);
        let mut status_seen = false;
        while let Some(f) = dec.next_frame().unwrap() {
            match f {
                Frame::SynReply { .. } => replies += 1,
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                    ..
                } => {
                    assert!(!status_seen || stream_id == 1, "output after the status");
                    match stream_id {
                        5 => stdout.extend_from_slice(&data),
                        7 => stderr.extend_from_slice(&data),
                        1 => status_seen |= data.len() == status.len(),
                        _ => panic!("unexpected stream {stream_id}"),
                    }
                    if flags & streams::spdy::FLAG_FIN != 0 {
                        fins += 1;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(dec.buffered(), 0);
        assert_eq!(replies, 4);
        assert_eq!(fins, 3, "size {size}");
        let text = String::from_utf8(stdout).unwrap();
        assert!(
            text.starts_with("TOKEN=[airlock:masked:jwt:"),
            "size {size}: {text}"
        );
        assert!(
            text.ends_with("]\nok\n") && !text.contains("eyJzdWIi"),
            "{text}"
        );
        assert_eq!(stderr, b"err\n");
        assert!(status_seen);
        assert!(rec
            .kinds()
            .iter()
            .any(|k| matches!(k, TunnelEventKind::Exit { code: Some(3), .. })));
        assert_eq!(rec.stream(stdout_of), text.as_bytes());
    }
}

#[test]
fn spdy_data_on_an_unknown_stream_closes_the_tunnel() {
    let rec = Arc::new(Rec::default());
    let mut down = spdy::SpdySide::new(Side::Cluster, shared(&rec), Some(output()));
    let mut enc = FrameEncoder::new().unwrap();
    let wire = encode(&mut enc, &[data(5, 0, JWT.as_bytes())]);
    let mut out = Vec::new();
    assert!(down.input(&wire, &mut out).is_err());
    assert!(out.is_empty(), "nothing may be forwarded");
    // Garbage: a control frame of another version.
    let mut down = spdy::SpdySide::new(Side::Cluster, shared(&rec), Some(output()));
    assert!(drive(&mut down, b"\x80\x02\x00\x01\x00\x00\x00\x00", 8).is_err());
}

#[test]
fn spdy_port_forward_is_counted_not_masked() {
    let rec = Arc::new(Rec::default());
    let sh = shared(&rec);
    let mut client = FrameEncoder::new().unwrap();
    let pf = |t: &str| {
        Headers::new()
            .with("streamType", t)
            .with("port", "8080")
            .with("requestID", "0")
    };
    let up_wire = encode(
        &mut client,
        &[
            syn(1, pf("error")),
            syn(3, pf("data")),
            data(3, 0, JWT.as_bytes()),
            data(3, streams::spdy::FLAG_FIN, b""),
        ],
    );
    let mut server = FrameEncoder::new().unwrap();
    let down_wire = encode(
        &mut server,
        &[
            data(3, 0, JWT.as_bytes()),
            data(3, streams::spdy::FLAG_FIN, b""),
        ],
    );
    let mut up = spdy::SpdySide::new(Side::Client, sh.clone(), None);
    let mut down = spdy::SpdySide::new(Side::Cluster, sh.clone(), None);
    assert_eq!(drive(&mut up, &up_wire, 3).unwrap(), up_wire);
    assert_eq!(drive(&mut down, &down_wire, 3).unwrap(), down_wire);
    let kinds = rec.kinds();
    assert!(kinds.contains(&TunnelEventKind::PortForwardOpen {
        port: 8080,
        stream: 3,
        channel: PortChannel::Data
    }));
    assert!(kinds.contains(&TunnelEventKind::PortForwardClose {
        port: 8080,
        stream: 3,
        channel: PortChannel::Data,
        bytes_in: JWT.len() as u64,
        bytes_out: JWT.len() as u64,
    }));
    assert!(!kinds
        .iter()
        .any(|k| matches!(k, TunnelEventKind::PortForwardData { .. })));
}

// --- the relay, over in-memory connections ---

#[tokio::test]
async fn relay_releases_a_held_prompt_and_records_the_session() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, mut kubectl) = tokio::io::duplex(1 << 16);
    let (upstream, mut kubelet) = tokio::io::duplex(1 << 16);
    let rec = Arc::new(Rec::default());
    let task = tokio::spawn(relay(
        client,
        upstream,
        spec(TunnelKind::Exec, Framing::WsChannels, Some(rec.clone())),
    ));
    // A prompt that ends in a keyword is held by the masker; the idle flush lets it out.
    kubelet
        .write_all(&server_frame(true, 2, &chan_msg(1, b"Password: ")))
        .await
        .unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_millis(500), kubectl.read(&mut buf))
        .await
        .expect("prompt stuck in the masker")
        .unwrap();
    assert_eq!(
        &buf[..n],
        &server_frame(true, 2, &chan_msg(1, b"Password: "))[..]
    );
    let stdin = client_frame(true, 2, b"\x00hunter2\n", [1, 2, 3, 4]);
    kubectl.write_all(&stdin).await.unwrap();
    let mut got = vec![0u8; stdin.len()];
    kubelet.read_exact(&mut got).await.unwrap();
    assert_eq!(got, stdin);
    kubelet.write_all(&exec_server_wire()).await.unwrap();
    drop(kubelet);
    kubectl.shutdown().await.unwrap();
    let mut rest = Vec::new();
    kubectl.read_to_end(&mut rest).await.unwrap();
    let outcome = task.await.unwrap();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let kinds = rec.kinds();
    assert!(matches!(kinds[0], TunnelEventKind::Open { tty: false, .. }));
    assert!(
        matches!(kinds.last(), Some(TunnelEventKind::Close { reason, .. }) if reason == "closed")
    );
    assert_eq!(rec.stream(stdin_of), b"hunter2\n");
    let stdout = rec.stream(stdout_of);
    assert!(stdout.starts_with(b"Password: token: [airlock:masked:jwt:"));
    assert!(!stdout.windows(8).any(|w| w == b"eyJzdWIi"));
}

#[tokio::test]
async fn relay_fails_closed_on_an_unknown_protocol() {
    let (client, _kubectl) = tokio::io::duplex(64);
    let (upstream, _kubelet) = tokio::io::duplex(64);
    let rec = Arc::new(Rec::default());
    let out = relay(
        client,
        upstream,
        spec(TunnelKind::Exec, Framing::Unknown, Some(rec.clone())),
    )
    .await;
    assert!(matches!(out.error, Some(TunnelError::Unsupported(_))));
    assert!(matches!(
        rec.kinds().last(),
        Some(TunnelEventKind::Close { .. })
    ));
}

#[test]
fn protocol_from_response_headers() {
    let cases: &[(&[(&str, &str)], Framing)] = &[
        (
            &[
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "v5.channel.k8s.io"),
            ],
            Framing::WsChannels,
        ),
        (
            &[
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "v4.channel.k8s.io"),
            ],
            Framing::WsChannels,
        ),
        (
            &[
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "base64.channel.k8s.io"),
            ],
            Framing::Unknown,
        ),
        (
            &[
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "SPDY/3.1+portforward.k8s.io"),
            ],
            Framing::WsSpdy,
        ),
        (
            &[
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "v4.portforward.k8s.io"),
            ],
            Framing::WsPortForward,
        ),
        (
            &[
                ("upgrade", "SPDY/3.1"),
                ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ],
            Framing::Spdy,
        ),
        (&[("upgrade", "websocket")], Framing::Unknown),
        (&[("upgrade", "h2c")], Framing::Unknown),
    ];
    for (headers, want) in cases {
        let mut h = HeaderMap::new();
        for (k, v) in *headers {
            h.insert(*k, v.parse().unwrap());
        }
        assert_eq!(Protocol::from_response(&h).framing, *want, "{headers:?}");
    }
    assert!(query_flag("/api/v1/x/exec?command=sh&tty=true", "tty"));
    assert!(!query_flag("/api/v1/x/exec?command=sh&tty=false", "tty"));
}

/// Throughput of 100 MiB of exec stdout through the relay (masking and recording) against a
/// plain copy (`tokio::io::copy_bidirectional`) between the same two connections, over three
/// transports: in-memory pipes (`tokio::io::duplex`; the relay's own cost stands out most),
/// loopback TCP, and TLS over loopback TCP on both sides (what a real tunnel crosses: Airlock
/// terminates the agent's TLS and speaks TLS to the cluster). Each transport runs ROUNDS
/// pairs of (plain, masked) alternately; medians, ranges and the ratio of the medians are
/// printed. Run with
/// `cargo test -p gateway --release --lib throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_masked_vs_raw() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const TOTAL: usize = 100 * 1024 * 1024;
    const ROUNDS: usize = 5;
    // `yes`-like output, 32 KiB frames as the kubelet writes them.
    let line = b"the quick brown fox jumps over the lazy dog 0123456789\n";
    let chunk: Vec<u8> = line.iter().copied().cycle().take(32 * 1024 - 1).collect();
    let frame = server_frame(true, 2, &chan_msg(1, &chunk));
    let frames = TOTAL / chunk.len();

    struct Count(std::sync::atomic::AtomicU64);
    impl Recorder for Count {
        fn event(&self, ev: TunnelEvent) {
            if let TunnelEventKind::Stdout(b) = ev.kind {
                self.0
                    .fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
    impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}
    type BoxIo = Box<dyn Io>;

    #[derive(Clone, Copy, PartialEq)]
    enum Transport {
        Memory,
        Tcp,
        Tls,
    }

    struct Tls {
        server: tokio_rustls::TlsAcceptor,
        client: tokio_rustls::TlsConnector,
    }

    fn tls_configs() -> Tls {
        let dir = std::env::temp_dir().join(format!(
            "airlock-throughput-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let cert = crate::tls::load_or_generate(None, &dir, &[]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut cert.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Tls {
            server: tokio_rustls::TlsAcceptor::from(cert.server_config().unwrap()),
            client: tokio_rustls::TlsConnector::from(Arc::new(client)),
        }
    }

    /// A connection: (the relay's end, the peer's end). `relay_serves`: the relay's end is
    /// the TLS server (facing kubectl), else the TLS client (facing the cluster).
    async fn pair(t: Transport, tls: &Tls, relay_serves: bool) -> (BoxIo, BoxIo) {
        if t == Transport::Memory {
            let (a, b) = tokio::io::duplex(1 << 20);
            return (Box::new(a), Box::new(b));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connected, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (connected, accepted) = (connected.unwrap(), accepted.unwrap().0);
        if t == Transport::Tcp {
            return (Box::new(accepted), Box::new(connected));
        }
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let (server, client) = tokio::join!(
            tls.server.accept(accepted),
            tls.client.connect(name, connected)
        );
        let (server, client): (BoxIo, BoxIo) =
            (Box::new(server.unwrap()), Box::new(client.unwrap()));
        if relay_serves {
            (server, client)
        } else {
            (client, server)
        }
    }

    async fn one(
        t: Transport,
        tls: &Tls,
        frame: Arc<Vec<u8>>,
        frames: usize,
        inspect: bool,
    ) -> (Duration, u64) {
        let (client, mut kubectl) = pair(t, tls, true).await;
        let (mut upstream, mut kubelet) = pair(t, tls, false).await;
        let rec = Arc::new(Count(Default::default()));
        let spec = spec_count(rec.clone());
        let started = Instant::now();
        let want = (frames * frame.len()) as u64;
        let relay = tokio::spawn(async move {
            if inspect {
                relay(client, upstream, spec).await;
            } else {
                let mut client = client;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
        let writer = tokio::spawn(async move {
            for _ in 0..frames {
                kubelet.write_all(&frame).await.unwrap();
            }
            kubelet.flush().await.unwrap();
            kubelet
        });
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        loop {
            let n = kubectl.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got += n as u64;
            if got >= want {
                break;
            }
        }
        let elapsed = started.elapsed();
        let kubelet = writer.await.unwrap();
        drop(kubectl);
        drop(kubelet);
        let _ = relay.await;
        (elapsed, rec.0.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn spec_count(rec: Arc<Count>) -> TunnelSpec {
        TunnelSpec {
            kind: TunnelKind::Exec,
            protocol: Protocol {
                framing: Framing::WsChannels,
                name: "bench".into(),
            },
            tty: false,
            same_length: false,
            masker: masker(),
            mask_ctx: MaskContext::default(),
            recorder: Some(rec),
        }
    }

    fn median(v: &mut [f64]) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }

    let tls = tls_configs();
    let frame = Arc::new(frame);
    let mb = (frames * chunk.len()) as f64 / (1024.0 * 1024.0);
    for (t, name) in [
        (Transport::Memory, "memory (in-process pipes)"),
        (Transport::Tcp, "tcp (loopback)"),
        (Transport::Tls, "tls (over loopback TCP)"),
    ] {
        // THROUGHPUT_ONLY=memory|tcp|tls runs one transport (for profiling).
        let only = std::env::var("THROUGHPUT_ONLY").unwrap_or_default();
        if !only.is_empty() && !name.to_lowercase().starts_with(&only) {
            continue;
        }
        let (mut raw, mut masked, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let mut recorded = 0;
        for _ in 0..ROUNDS {
            let (r, _) = one(t, &tls, frame.clone(), frames, false).await;
            let (m, rec) = one(t, &tls, frame.clone(), frames, true).await;
            let (r, m) = (mb / r.as_secs_f64(), mb / m.as_secs_f64());
            raw.push(r);
            masked.push(m);
            ratios.push(m / r);
            recorded = rec;
        }
        let range = |v: &[f64]| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            format!("{lo:.0}-{hi:.0}")
        };
        let (rr, mr) = (range(&raw), range(&masked));
        let (lo, hi) = (
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
        let (r, m, q) = (median(&mut raw), median(&mut masked), median(&mut ratios));
        println!(
            "{name}: plain copy {r:.0} MiB/s ({rr}); masked+recorded {m:.0} MiB/s ({mr}); \
             masked/plain: median of rounds {:.0}% ({:.0}-{:.0}%), of medians {:.0}%; \
             recorded {} MiB; {ROUNDS} rounds",
            100.0 * q,
            100.0 * lo,
            100.0 * hi,
            100.0 * m / r,
            recorded / (1024 * 1024)
        );
        assert_eq!(recorded, (frames * chunk.len()) as u64);
    }
}

#[test]
fn archive_commands_are_recognised() {
    let path = |cmd: &[&str]| {
        let q: Vec<String> = cmd
            .iter()
            .map(|c| {
                format!(
                    "command={}",
                    url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
                )
            })
            .collect();
        format!(
            "/api/v1/namespaces/shop/pods/web/exec?{}&stdout=true",
            q.join("&")
        )
    };
    // kubectl cp from a pod, and its resumed form.
    assert!(writes_archive(&path(&["tar", "cf", "-", "/tmp/x"])));
    assert!(writes_archive(&path(&["/bin/tar", "cf", "-", "/tmp/x"])));
    assert!(writes_archive(&path(&[
        "sh",
        "-c",
        "tar cf - /tmp/x | tail -c+1025"
    ])));
    for other in [
        &["env"][..],
        &["sh", "-c", "cat /tmp/x"],
        &["cat", "tar"],
        &[],
    ] {
        assert!(!writes_archive(&path(other)), "{other:?}");
    }
}
