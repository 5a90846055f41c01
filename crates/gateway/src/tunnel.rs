//! exec, attach and port-forward tunnels: Airlock reads the streams it relays.
//!
//! Once the cluster has answered `101 Switching Protocols`, [`relay`] carries bytes both ways
//! and parses them as it goes: WebSocket frames (`v1`..`v5.channel.k8s.io`,
//! `portforward.k8s.io`, `SPDY/3.1+portforward.k8s.io`) or SPDY/3.1 frames (one zlib context per
//! direction, every header block inflated in order). What it does with them:
//!
//! * **exec/attach stdout and stderr** (cluster -> client) go through the text masker, one
//!   masker per channel so detectors work across chunk and frame boundaries, and are re-framed
//!   (the masked output has a new length). A masker holds back at most a keyword's tail; an
//!   idle tunnel releases it after [`IDLE_FLUSH`], so interactive output is never stuck.
//! * **everything else** (stdin, resize, the error channel, control frames, port-forward data)
//!   is forwarded byte for byte as it arrives.
//! * **recording**: a [`Recorder`] gets [`TunnelEvent`]s: stdin, masked stdout/stderr
//!   (coalesced to at most one event per [`RECORD_CHUNK`] or idle period), resizes, the exit
//!   status, port-forward streams with byte counts (contents only if the recorder opts in).
//!
//! Fail closed: a stream Airlock cannot parse (garbage, a protocol it does not know, compressed
//! WebSocket frames) ends the tunnel; exec/attach output is never passed through unmasked.
//! Memory is bounded per direction: one read buffer, one control frame (SPDY control frames
//! are capped), a masker's holdback (`mask::WINDOW`) and one recording chunk; data frames of
//! any size are streamed in pieces.
//!
//! `kubectl cp` is `tar` over exec stdout. The masker rewrites only detector hits, so a tar of
//! files without credentials passes unchanged; a tar holding a credential is changed where the
//! credential was (the copy fails or the copied file holds the marker), which is the
//! intended fail-safe: no raw credential leaves through exec.

mod asciicast;
mod spdy;
mod ws;

pub use asciicast::to_asciicast;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use mask::{BodyKind, MaskContext, Masker, StreamMasker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a direction may be idle before held-back masker output and pending recording
/// chunks are released.
pub const IDLE_FLUSH: Duration = Duration::from_millis(30);
/// Recorded stdin/stdout/stderr bytes are coalesced into events of about this size.
pub const RECORD_CHUNK: usize = 8 * 1024;
/// Read size per direction.
const READ_BUF: usize = 64 * 1024;
/// Largest payload of a frame Airlock writes itself (masked output).
const OUT_FRAME: usize = 32 * 1024;
/// Most bytes of an error-channel status or a resize message kept for parsing.
const MAX_SMALL_MESSAGE: usize = 64 * 1024;

// === Recorder API ===

/// Where a tunnel's events go (the audit store, a test). Called from the tunnel's tasks: keep
/// `event` cheap and never block on I/O in it.
pub trait Recorder: Send + Sync + 'static {
    /// One event, in order per direction.
    fn event(&self, ev: TunnelEvent);
    /// Whether port-forward payloads are recorded ([`TunnelEventKind::PortForwardData`]).
    /// Off by default: port-forward carries application traffic Airlock does not mask.
    fn port_forward_contents(&self) -> bool {
        false
    }
}

/// Something that happened in a tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelEvent {
    /// Time since the tunnel opened.
    pub at: Duration,
    /// What happened.
    pub kind: TunnelEventKind,
}

/// Which port-forward stream of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortChannel {
    /// The connection's bytes.
    Data,
    /// Errors the kubelet reports for the connection.
    Error,
}

/// The kinds of [`TunnelEvent`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TunnelEventKind {
    /// The tunnel opened. `protocol` is the negotiated one (`v5.channel.k8s.io`,
    /// `SPDY/3.1 v4.channel.k8s.io`, ...).
    Open {
        protocol: String,
        tty: bool,
        started: SystemTime,
    },
    /// Bytes the client sent to the process.
    Stdin(Bytes),
    /// Process output, already masked.
    Stdout(Bytes),
    /// Process errors, already masked.
    Stderr(Bytes),
    /// The client's terminal size changed.
    Resize { width: u16, height: u16 },
    /// The error channel: the exit code (0 on success) and the `Status` JSON (masked).
    Exit {
        code: Option<i32>,
        status: Option<String>,
    },
    /// A port-forward stream opened. `stream` is the SPDY stream id or WebSocket channel.
    PortForwardOpen {
        port: u16,
        stream: u32,
        channel: PortChannel,
    },
    /// Port-forward payload; only when [`Recorder::port_forward_contents`] is true.
    PortForwardData {
        port: u16,
        stream: u32,
        to_pod: bool,
        data: Bytes,
    },
    /// A port-forward stream closed, with the bytes it carried each way.
    PortForwardClose {
        port: u16,
        stream: u32,
        channel: PortChannel,
        bytes_in: u64,
        bytes_out: u64,
    },
    /// The tunnel closed. `reason` is `closed` or why Airlock ended it.
    Close {
        bytes_to_client: u64,
        bytes_to_upstream: u64,
        reason: String,
    },
}

// === Tunnel description ===

/// What the tunnel is for; decides what is masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelKind {
    /// `pods/exec`: stdout/stderr masked.
    Exec,
    /// `pods/attach`: stdout/stderr masked.
    Attach,
    /// `pods/portforward`: parsed and counted, not masked.
    PortForward,
    /// Anything else that upgrades (`pods/proxy` to an application's WebSocket): relayed as
    /// is, only opening and closing recorded.
    Other,
}

impl From<Option<kube_request::StreamKind>> for TunnelKind {
    fn from(k: Option<kube_request::StreamKind>) -> Self {
        use kube_request::StreamKind as K;
        match k {
            Some(K::Exec) => TunnelKind::Exec,
            Some(K::Attach) => TunnelKind::Attach,
            Some(K::PortForward) => TunnelKind::PortForward,
            _ => TunnelKind::Other,
        }
    }
}

/// How the tunnel's bytes are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// WebSocket `channel.k8s.io` .. `v5.channel.k8s.io` (binary, first byte the channel).
    WsChannels,
    /// WebSocket `portforward.k8s.io` / `v4.portforward.k8s.io`.
    WsPortForward,
    /// WebSocket `SPDY/3.1+portforward.k8s.io`: a SPDY byte stream in binary messages.
    WsSpdy,
    /// A SPDY/3.1 upgrade.
    Spdy,
    /// Anything else (base64 channel protocols, no subprotocol, other upgrades).
    Unknown,
}

/// The negotiated protocol, from the cluster's `101` response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    pub framing: Framing,
    /// As negotiated, for the record.
    pub name: String,
}

impl Protocol {
    /// Reads `Sec-WebSocket-Protocol` (WebSocket) or `Upgrade: SPDY/3.1` and
    /// `X-Stream-Protocol-Version` from the cluster's 101 response.
    pub fn from_response(headers: &HeaderMap) -> Protocol {
        let get = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_owned())
        };
        let upgrade = get("upgrade").unwrap_or_default();
        if upgrade.eq_ignore_ascii_case("websocket") {
            let name = get("sec-websocket-protocol").unwrap_or_default();
            let framing = match name.as_str() {
                "channel.k8s.io" | "v2.channel.k8s.io" | "v3.channel.k8s.io"
                | "v4.channel.k8s.io" | "v5.channel.k8s.io" => Framing::WsChannels,
                "portforward.k8s.io" | "v4.portforward.k8s.io" => Framing::WsPortForward,
                "SPDY/3.1+portforward.k8s.io" => Framing::WsSpdy,
                _ => Framing::Unknown,
            };
            return Protocol {
                framing,
                name: format!("websocket {name}"),
            };
        }
        if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
            let sub = get("x-stream-protocol-version").unwrap_or_default();
            return Protocol {
                framing: Framing::Spdy,
                name: format!("SPDY/3.1 {sub}").trim_end().to_owned(),
            };
        }
        Protocol {
            framing: Framing::Unknown,
            name: upgrade,
        }
    }
}

/// Everything [`relay`] needs to know about a tunnel.
pub struct TunnelSpec {
    pub kind: TunnelKind,
    pub protocol: Protocol,
    /// `tty=true` on the request.
    pub tty: bool,
    /// The gateway's masker and the request's context (resource `pods`, subresource `exec`).
    pub masker: Masker,
    pub mask_ctx: MaskContext,
    /// Output masking keeps every byte offset ([`mask::Masker::stream_same_length`]): the exec
    /// writes an archive (see [`writes_archive`]).
    pub same_length: bool,
    pub recorder: Option<Arc<dyn Recorder>>,
}

/// Which peer sent the bytes that could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Cluster,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Cluster => "cluster",
        }
    }
}

/// Why a tunnel ended early.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("tunnel protocol {0:?} cannot be inspected")]
    Unsupported(String),
    #[error("unreadable stream from the {}: {reason}", side.as_str())]
    Garbage { side: Side, reason: String },
    #[error("masking failed: {0}")]
    Mask(#[from] mask::MaskError),
    #[error("{} connection: {source}", side.as_str())]
    Io {
        side: Side,
        #[source]
        source: std::io::Error,
    },
}

fn garbage(side: Side, reason: impl Into<String>) -> TunnelError {
    TunnelError::Garbage {
        side,
        reason: reason.into(),
    }
}

/// What a finished tunnel carried.
#[derive(Debug, Default)]
pub struct Outcome {
    pub bytes_to_client: u64,
    pub bytes_to_upstream: u64,
    /// Set when Airlock ended the tunnel (fail closed) or a connection failed.
    pub error: Option<TunnelError>,
}

/// Relays a tunnel until both directions are done, or until either fails; then both
/// connections are dropped.
pub async fn relay<C, U>(client: C, upstream: U, spec: TunnelSpec) -> Outcome
where
    C: AsyncRead + AsyncWrite + Send + Unpin,
    U: AsyncRead + AsyncWrite + Send + Unpin,
{
    let shared = Arc::new(Shared::new(&spec));
    shared.emit(TunnelEventKind::Open {
        protocol: spec.protocol.name.clone(),
        tty: spec.tty,
        started: SystemTime::now(),
    });
    let outcome = match directions(&spec, &shared) {
        Ok((up, down)) => run(client, upstream, up, down).await,
        Err(e) => Outcome {
            error: Some(e),
            ..Outcome::default()
        },
    };
    shared.close(&outcome);
    outcome
}

/// Reads `name=true` (or `1`) from a query string, as kube-apiserver does for `tty`.
pub fn query_flag(path_and_query: &str, name: &str) -> bool {
    let Some((_, q)) = path_and_query.split_once('?') else {
        return false;
    };
    url::form_urlencoded::parse(q.as_bytes())
        .any(|(k, v)| k == name && matches!(v.as_ref(), "true" | "1" | "True" | "TRUE"))
}

/// Whether an exec's `command` writes a tar archive to stdout, as `kubectl cp` from a pod does
/// (`tar cf - PATH`, and `sh -c 'tar cf - PATH | tail -c+N'` when it resumes). Masking must
/// then keep the length of what it replaces: a marker longer than the secret would shift every
/// later byte against the sizes in the archive's headers and cut the file short.
pub fn writes_archive(path_and_query: &str) -> bool {
    let query = kube_request::Query::parse(path_and_query.split_once('?').map(|(_, q)| q));
    let command = query.command();
    let is_tar = |program: &str| program.rsplit('/').next() == Some("tar");
    match command.as_slice() {
        [program, ..] if is_tar(program) => true,
        [shell, "-c", script, ..] if shell.ends_with("sh") => {
            script.split_whitespace().next().is_some_and(is_tar)
        }
        _ => false,
    }
}

type Dir = Box<dyn Direction>;

fn directions(spec: &TunnelSpec, shared: &Arc<Shared>) -> Result<(Dir, Dir), TunnelError> {
    let masked = matches!(spec.kind, TunnelKind::Exec | TunnelKind::Attach);
    let masker = || {
        if spec.same_length {
            spec.masker.stream_same_length(&spec.mask_ctx)
        } else {
            spec.masker.stream(BodyKind::Text, &spec.mask_ctx)
        }
    };
    let output = || -> Result<Output, TunnelError> {
        Ok(Output {
            maskers: [masker()?, masker()?],
            ready: [Vec::new(), Vec::new()],
            held: [false, false],
        })
    };
    let f = spec.protocol.framing;
    let unsupported = || Err(TunnelError::Unsupported(spec.protocol.name.clone()));
    Ok(match (spec.kind, f) {
        (TunnelKind::Other, _) => (Box::new(Raw) as Dir, Box::new(Raw) as Dir),
        (_, Framing::Unknown) => return unsupported(),
        (TunnelKind::PortForward, Framing::WsChannels) => return unsupported(),
        (_, Framing::WsPortForward | Framing::WsSpdy) if masked => return unsupported(),
        (_, Framing::Spdy) => (
            Box::new(spdy::SpdySide::new(Side::Client, shared.clone(), None)) as Dir,
            Box::new(spdy::SpdySide::new(
                Side::Cluster,
                shared.clone(),
                if masked { Some(output()?) } else { None },
            )) as Dir,
        ),
        (_, framing) => {
            let mode = match framing {
                Framing::WsChannels => ws::Mode::Channels,
                Framing::WsPortForward => ws::Mode::PortForward,
                _ => ws::Mode::Spdy,
            };
            (
                Box::new(ws::WsSide::new(Side::Client, mode, shared.clone(), None)) as Dir,
                Box::new(ws::WsSide::new(
                    Side::Cluster,
                    mode,
                    shared.clone(),
                    if masked { Some(output()?) } else { None },
                )) as Dir,
            )
        }
    })
}

// === impl Shared ===

/// State both directions of one tunnel share.
pub(crate) struct Shared {
    started: Instant,
    recorder: Option<Arc<dyn Recorder>>,
    pf_contents: bool,
    masker: Masker,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// SPDY stream id -> what it carries (from SYN_STREAM headers).
    streams: HashMap<u32, Chan>,
    /// Port-forward streams by SPDY stream id or WebSocket channel.
    ports: BTreeMap<u32, PortStream>,
}

struct PortStream {
    port: u16,
    channel: PortChannel,
    opened: bool,
    to_pod: u64,
    from_pod: u64,
    fin_to_pod: bool,
    fin_from_pod: bool,
}

/// What a SPDY stream or WebSocket channel carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chan {
    Stdin,
    Stdout,
    Stderr,
    Error,
    Resize,
    Port,
    Other,
}

impl Shared {
    fn new(spec: &TunnelSpec) -> Self {
        Shared {
            started: Instant::now(),
            pf_contents: spec
                .recorder
                .as_ref()
                .is_some_and(|r| r.port_forward_contents()),
            recorder: spec.recorder.clone(),
            masker: spec.masker.clone(),
            state: Mutex::new(State::default()),
        }
    }

    fn recording(&self) -> bool {
        self.recorder.is_some()
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn emit_at(&self, at: Duration, kind: TunnelEventKind) {
        if let Some(r) = &self.recorder {
            r.event(TunnelEvent { at, kind });
        }
    }

    fn emit(&self, kind: TunnelEventKind) {
        if self.recorder.is_some() {
            self.emit_at(self.now(), kind);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters for forwarding; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_stream(&self, id: u32, chan: Chan) {
        self.state().streams.insert(id, chan);
    }

    pub(crate) fn stream(&self, id: u32) -> Option<Chan> {
        self.state().streams.get(&id).copied()
    }

    /// Records a port-forward stream; `port` is `None` until known.
    pub(crate) fn pf_open(&self, id: u32, port: Option<u16>, channel: PortChannel) {
        let mut st = self.state();
        let e = st.ports.entry(id).or_insert(PortStream {
            port: 0,
            channel,
            opened: false,
            to_pod: 0,
            from_pod: 0,
            fin_to_pod: false,
            fin_from_pod: false,
        });
        if let Some(p) = port {
            e.port = p;
            if !e.opened {
                e.opened = true;
                drop(st);
                self.emit(TunnelEventKind::PortForwardOpen {
                    port: p,
                    stream: id,
                    channel,
                });
            }
        }
    }

    pub(crate) fn pf_bytes(&self, id: u32, to_pod: bool, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut st = self.state();
        let Some(e) = st.ports.get_mut(&id) else {
            return;
        };
        if to_pod {
            e.to_pod += data.len() as u64;
        } else {
            e.from_pod += data.len() as u64;
        }
        let port = e.port;
        drop(st);
        if self.pf_contents {
            self.emit(TunnelEventKind::PortForwardData {
                port,
                stream: id,
                to_pod,
                data: Bytes::copy_from_slice(data),
            });
        }
    }

    /// A half-close; the stream is reported closed once both halves are.
    pub(crate) fn pf_fin(&self, id: u32, to_pod: bool) {
        let both = {
            let mut st = self.state();
            let Some(e) = st.ports.get_mut(&id) else {
                return;
            };
            if to_pod {
                e.fin_to_pod = true;
            } else {
                e.fin_from_pod = true;
            }
            e.fin_to_pod && e.fin_from_pod
        };
        if both {
            self.pf_close(id);
        }
    }

    pub(crate) fn pf_close(&self, id: u32) {
        let e = self.state().ports.remove(&id);
        if let Some(e) = e {
            self.emit(TunnelEventKind::PortForwardClose {
                port: e.port,
                stream: id,
                channel: e.channel,
                bytes_in: e.to_pod,
                bytes_out: e.from_pod,
            });
        }
    }

    fn close(&self, outcome: &Outcome) {
        let ids: Vec<u32> = self.state().ports.keys().copied().collect();
        for id in ids {
            self.pf_close(id);
        }
        self.emit(TunnelEventKind::Close {
            bytes_to_client: outcome.bytes_to_client,
            bytes_to_upstream: outcome.bytes_to_upstream,
            reason: match &outcome.error {
                None => "closed".to_owned(),
                Some(e) => e.to_string(),
            },
        });
    }
}

// === impl Log ===

/// Coalesces one direction's stdin/stdout/stderr bytes into events of about
/// [`RECORD_CHUNK`]; a change of channel flushes, so order is kept.
pub(crate) struct Log {
    shared: Arc<Shared>,
    chan: Chan,
    buf: BytesMut,
    since: Duration,
}

impl Log {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Log {
            shared,
            chan: Chan::Other,
            buf: BytesMut::new(),
            since: Duration::ZERO,
        }
    }

    pub(crate) fn push(&mut self, chan: Chan, data: &[u8]) {
        if !self.shared.recording() || data.is_empty() {
            return;
        }
        if chan != self.chan {
            self.flush();
            self.chan = chan;
        }
        if self.buf.is_empty() {
            self.since = self.shared.now();
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= RECORD_CHUNK {
            self.flush();
        }
    }

    /// Like [`push`](Self::push) for bytes in a buffer the caller is done with: `data` is
    /// left empty. A piece of at least [`RECORD_CHUNK`] that needs no coalescing becomes an
    /// event without being copied (the buffer is handed over and `data` starts afresh).
    pub(crate) fn push_vec(&mut self, chan: Chan, data: &mut Vec<u8>) {
        if self.shared.recording()
            && data.len() >= RECORD_CHUNK
            && (self.buf.is_empty() || chan != self.chan)
        {
            self.flush();
            self.chan = chan;
            let bytes = Bytes::from(std::mem::take(data));
            let kind = match chan {
                Chan::Stdin => TunnelEventKind::Stdin(bytes),
                Chan::Stdout => TunnelEventKind::Stdout(bytes),
                Chan::Stderr => TunnelEventKind::Stderr(bytes),
                _ => return,
            };
            self.shared.emit(kind);
            return;
        }
        self.push(chan, data);
        data.clear();
    }

    pub(crate) fn pending(&self) -> bool {
        !self.buf.is_empty()
    }

    pub(crate) fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let data = self.buf.split().freeze();
        let kind = match self.chan {
            Chan::Stdin => TunnelEventKind::Stdin(data),
            Chan::Stdout => TunnelEventKind::Stdout(data),
            Chan::Stderr => TunnelEventKind::Stderr(data),
            _ => return,
        };
        self.shared.emit_at(self.since, kind);
    }
}

impl Drop for Log {
    /// A tunnel that ends early (a peer vanished, fail closed) still records what it carried.
    fn drop(&mut self) {
        self.flush();
    }
}

// === impl Output ===

/// The maskers for stdout (0) and stderr (1) and their masked output not yet framed.
pub(crate) struct Output {
    maskers: [Box<dyn StreamMasker>; 2],
    ready: [Vec<u8>; 2],
    held: [bool; 2],
}

impl Output {
    pub(crate) fn index(chan: Chan) -> Option<usize> {
        match chan {
            Chan::Stdout => Some(0),
            Chan::Stderr => Some(1),
            _ => None,
        }
    }

    pub(crate) fn push(&mut self, i: usize, data: &[u8]) -> Result<(), TunnelError> {
        // One allocation of about the right size when the last output went to the recorder.
        self.ready[i].reserve(data.len());
        self.maskers[i].push(data, &mut self.ready[i])?;
        self.held[i] = true;
        Ok(())
    }

    pub(crate) fn release(&mut self, i: usize) -> Result<(), TunnelError> {
        if self.held[i] {
            self.maskers[i].release(&mut self.ready[i])?;
            self.held[i] = false;
        }
        Ok(())
    }

    pub(crate) fn release_all(&mut self) -> Result<(), TunnelError> {
        self.release(0)?;
        self.release(1)
    }

    pub(crate) fn held(&self) -> bool {
        self.held[0] || self.held[1]
    }

    /// Hands the masked bytes of each stream that are ready to `frame` (stream index, bytes),
    /// then records them (a large piece goes to the recorder as it is, without a copy).
    pub(crate) fn drain(&mut self, log: &mut Log, mut frame: impl FnMut(usize, &[u8])) {
        for (i, ready) in self.ready.iter_mut().enumerate() {
            if ready.is_empty() {
                continue;
            }
            frame(i, ready);
            log.push_vec(if i == 0 { Chan::Stdout } else { Chan::Stderr }, ready);
        }
    }
}

// === small parsers shared by both framings ===

/// The error channel: one `Status` JSON, reported as [`TunnelEventKind::Exit`] once.
#[derive(Default)]
pub(crate) struct ErrorChan {
    buf: Vec<u8>,
    done: bool,
}

impl ErrorChan {
    pub(crate) fn push(&mut self, data: &[u8]) {
        let room = MAX_SMALL_MESSAGE.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }

    pub(crate) fn report(&mut self, shared: &Shared) {
        if self.done || self.buf.is_empty() {
            return;
        }
        self.done = true;
        let code = streams::status::parse_exit_code(&self.buf);
        let status = shared.masker.mask_text(&self.buf);
        shared.emit(TunnelEventKind::Exit {
            code,
            status: Some(String::from_utf8_lossy(&status).into_owned()),
        });
    }
}

/// The resize channel: a stream of `{"Width":..,"Height":..}` objects.
#[derive(Default)]
pub(crate) struct Resizes {
    buf: Vec<u8>,
}

impl Resizes {
    pub(crate) fn push(&mut self, data: &[u8], shared: &Shared) {
        if self.buf.len() + data.len() > MAX_SMALL_MESSAGE {
            self.buf.clear();
            return;
        }
        self.buf.extend_from_slice(data);
        let mut it =
            serde_json::Deserializer::from_slice(&self.buf).into_iter::<serde_json::Value>();
        let mut used = 0;
        loop {
            match it.next() {
                Some(Ok(v)) => {
                    used = it.byte_offset();
                    let dim = |k: &str| v.get(k).and_then(|n| n.as_u64()).unwrap_or(0);
                    shared.emit(TunnelEventKind::Resize {
                        width: dim("Width").min(u16::MAX.into()) as u16,
                        height: dim("Height").min(u16::MAX.into()) as u16,
                    });
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    used = self.buf.len();
                    break;
                }
                None => {
                    used = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..used);
    }
}

// === the pumps ===

/// One direction of a tunnel: bytes in from one peer, bytes out to the other.
pub(crate) trait Direction: Send {
    /// Takes bytes read from the source, appends what to send to `out`.
    fn input(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), TunnelError>;
    /// Whether something waits for [`Direction::idle`] (held output, pending records).
    fn wants_idle(&self) -> bool;
    /// The source has been quiet for [`IDLE_FLUSH`].
    fn idle(&mut self, out: &mut Vec<u8>) -> Result<(), TunnelError>;
    /// The source closed its side.
    fn eof(&mut self, out: &mut Vec<u8>) -> Result<(), TunnelError>;
}

/// Forwards bytes unchanged (upgrades Airlock does not inspect).
struct Raw;

impl Direction for Raw {
    fn input(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), TunnelError> {
        out.extend_from_slice(data);
        Ok(())
    }
    fn wants_idle(&self) -> bool {
        false
    }
    fn idle(&mut self, _: &mut Vec<u8>) -> Result<(), TunnelError> {
        Ok(())
    }
    fn eof(&mut self, _: &mut Vec<u8>) -> Result<(), TunnelError> {
        Ok(())
    }
}

type PumpResult = Result<u64, (u64, TunnelError)>;

async fn run<C, U>(client: C, upstream: U, up: Dir, down: Dir) -> Outcome
where
    C: AsyncRead + AsyncWrite + Send + Unpin,
    U: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (cr, cw) = tokio::io::split(client);
    let (ur, uw) = tokio::io::split(upstream);
    let to_up = pump(cr, uw, up, Side::Client, Side::Cluster);
    let to_client = pump(ur, cw, down, Side::Cluster, Side::Client);
    tokio::pin!(to_up, to_client);
    let mut outcome = Outcome::default();
    let (mut up_done, mut down_done) = (false, false);
    // Like copy_bidirectional: a half-close is passed on and the tunnel ends when both
    // directions are done. Unlike it, an error in either direction ends both at once.
    while !(up_done && down_done) {
        let (r, to_upstream): (PumpResult, bool) = tokio::select! {
            r = &mut to_up, if !up_done => { up_done = true; (r, true) }
            r = &mut to_client, if !down_done => { down_done = true; (r, false) }
        };
        let n = match r {
            Ok(n) => n,
            Err((n, e)) => {
                outcome.error = Some(e);
                n
            }
        };
        if to_upstream {
            outcome.bytes_to_upstream = n;
        } else {
            outcome.bytes_to_client = n;
        }
        if outcome.error.is_some() {
            break;
        }
    }
    outcome
}

async fn pump<R, W>(mut r: R, mut w: W, mut d: Dir, from: Side, to: Side) -> PumpResult
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; READ_BUF];
    let mut out = Vec::with_capacity(READ_BUF);
    let mut written = 0u64;
    loop {
        let read = if d.wants_idle() {
            tokio::select! {
                r = r.read(&mut buf) => Some(r),
                _ = tokio::time::sleep(IDLE_FLUSH) => None,
            }
        } else {
            Some(r.read(&mut buf).await)
        };
        let step = match read {
            None => d.idle(&mut out).map(|_| false),
            // A TLS peer that closes without close_notify (the API server often does) has
            // still finished: treat it as an end of stream, not a failure.
            Some(Ok(0)) => d.eof(&mut out).map(|_| true),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                d.eof(&mut out).map(|_| true)
            }
            Some(Ok(n)) => d.input(&buf[..n], &mut out).map(|_| false),
            Some(Err(source)) => Err(TunnelError::Io { side: from, source }),
        };
        let eof = match step {
            Ok(eof) => eof,
            Err(e) => return Err((written, e)),
        };
        if !out.is_empty() {
            let io = async {
                w.write_all(&out).await?;
                w.flush().await
            };
            if let Err(source) = io.await {
                return Err((written, TunnelError::Io { side: to, source }));
            }
            written += out.len() as u64;
            out.clear();
        }
        if eof {
            let _ = w.shutdown().await;
            return Ok(written);
        }
    }
}

#[cfg(test)]
mod tests;
