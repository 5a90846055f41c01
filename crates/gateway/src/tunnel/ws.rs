//! WebSocket (RFC 6455) frames as they pass through: parsed in place, never buffered whole.
//!
//! Client frames are masked, cluster frames are not (a frame with the wrong masking, reserved
//! bits set — a compression extension — or a reserved opcode ends the tunnel). Control frames
//! may arrive between the fragments of a message; a message's channel is the first byte of its
//! payload, whichever frame carries it.
//!
//! The cluster side of exec/attach rewrites stdout and stderr: those messages are taken apart
//! and their masked payload is sent as new single-frame messages; every other frame is copied
//! byte for byte. Frames Airlock writes are complete messages, so they are only written
//! between the messages it copies (never inside a fragmented one).

use std::{collections::HashMap, sync::Arc};

use super::{
    garbage, spdy::SpdySide, Chan, Direction, ErrorChan, Log, Output, PortChannel, Resizes, Shared,
    Side, TunnelError, OUT_FRAME,
};

pub(crate) const OP_CONT: u8 = 0;
pub(crate) const OP_TEXT: u8 = 1;
pub(crate) const OP_BINARY: u8 = 2;
pub(crate) const OP_CLOSE: u8 = 8;
pub(crate) const OP_PING: u8 = 9;
pub(crate) const OP_PONG: u8 = 10;

/// Channel numbers of the remote command protocols.
const CH_STDIN: u8 = 0;
const CH_STDOUT: u8 = 1;
const CH_STDERR: u8 = 2;
const CH_ERROR: u8 = 3;
const CH_RESIZE: u8 = 4;
const CH_CLOSE: u8 = 255;

/// Longest run of empty frame headers held while a message's channel is unknown.
const MAX_PENDING_HEAD: usize = 1024;

// === impl Parser ===

/// A parsed frame header, with its raw bytes for copying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) fin: bool,
    pub(crate) opcode: u8,
    pub(crate) key: Option<[u8; 4]>,
    pub(crate) len: u64,
    raw: [u8; 14],
    raw_len: usize,
}

impl Head {
    pub(crate) fn raw(&self) -> &[u8] {
        &self.raw[..self.raw_len]
    }

    pub(crate) fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// What [`Parser::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ev<'a> {
    Head(Head),
    /// Payload bytes as on the wire (still masked); `pos` is their offset in the frame.
    Payload {
        data: &'a [u8],
        pos: u64,
    },
    /// The frame's payload is complete (also sent for empty frames).
    End,
}

/// Incremental frame parser for one direction; holds at most one frame header.
pub(crate) struct Parser {
    /// Client frames must be masked, cluster frames must not.
    masked: bool,
    head: [u8; 14],
    have: usize,
    cur: Option<(Head, u64)>,
}

impl Parser {
    pub(crate) fn new(masked: bool) -> Self {
        Parser {
            masked,
            head: [0; 14],
            have: 0,
            cur: None,
        }
    }

    fn head_len(&self) -> usize {
        if self.have < 2 {
            return 2;
        }
        let b1 = self.head[1];
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
    }

    /// The next event, consuming from `input`; `None` when `input` is used up.
    pub(crate) fn next<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<Ev<'a>>, String> {
        if let Some((head, pos)) = &mut self.cur {
            if *pos == head.len {
                self.cur = None;
                return Ok(Some(Ev::End));
            }
            if input.is_empty() {
                return Ok(None);
            }
            let n = (head.len - *pos).min(input.len() as u64) as usize;
            let (data, rest) = input.split_at(n);
            *input = rest;
            let at = *pos;
            *pos += n as u64;
            return Ok(Some(Ev::Payload { data, pos: at }));
        }
        loop {
            let need = self.head_len();
            if self.have == need && need > 2 || self.have == 2 && need == 2 {
                let head = self.parse_head()?;
                self.have = 0;
                self.cur = Some((head, 0));
                return Ok(Some(Ev::Head(head)));
            }
            if input.is_empty() {
                return Ok(None);
            }
            let n = (need - self.have).min(input.len());
            self.head[self.have..self.have + n].copy_from_slice(&input[..n]);
            self.have += n;
            *input = &input[n..];
        }
    }

    fn parse_head(&self) -> Result<Head, String> {
        let h = &self.head[..self.have];
        let fin = h[0] & 0x80 != 0;
        if h[0] & 0x70 != 0 {
            return Err("reserved bits set (WebSocket extensions are not supported)".into());
        }
        let opcode = h[0] & 0x0f;
        if !matches!(
            opcode,
            OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
        ) {
            return Err(format!("reserved opcode {opcode}"));
        }
        let masked = h[1] & 0x80 != 0;
        if masked != self.masked {
            return Err(if self.masked {
                "unmasked client frame".into()
            } else {
                "masked server frame".into()
            });
        }
        let (len, at) = match h[1] & 0x7f {
            126 => (u16::from_be_bytes([h[2], h[3]]) as u64, 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                let l = u64::from_be_bytes(b);
                if l >> 63 != 0 {
                    return Err("frame length out of range".into());
                }
                (l, 10)
            }
            l => (l as u64, 2),
        };
        if opcode & 0x8 != 0 && (!fin || len > 125) {
            return Err("fragmented or oversized control frame".into());
        }
        let key = masked.then(|| [h[at], h[at + 1], h[at + 2], h[at + 3]]);
        Ok(Head {
            fin,
            opcode,
            key,
            len,
            raw: self.head,
            raw_len: self.have,
        })
    }
}

/// Unmasks `data` (at offset `pos` of its frame) into `out`.
pub(crate) fn unmask(key: [u8; 4], pos: u64, data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(
        data.iter()
            .enumerate()
            .map(|(i, b)| b ^ key[((pos + i as u64) % 4) as usize]),
    );
}

/// Appends an unmasked, final binary frame holding `chan` then `data` (server -> client).
pub(crate) fn binary_frame(chan: u8, data: &[u8], out: &mut Vec<u8>) {
    let len = data.len() + 1;
    out.push(0x80 | OP_BINARY);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.push(chan);
    out.extend_from_slice(data);
}

// === impl WsSide ===

/// What the WebSocket messages carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `*.channel.k8s.io`: stdin, stdout, stderr, error, resize.
    Channels,
    /// `portforward.k8s.io`: data channel `2i`, error channel `2i+1`, port first.
    PortForward,
    /// `SPDY/3.1+portforward.k8s.io`: the payloads are a SPDY byte stream.
    Spdy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msg {
    None,
    /// A data message whose channel byte has not arrived yet.
    Unknown,
    Chan {
        chan: u8,
        masked: bool,
    },
}

/// One direction of a WebSocket tunnel.
pub(crate) struct WsSide {
    from: Side,
    mode: Mode,
    shared: Arc<Shared>,
    p: Parser,
    cur: Option<Head>,
    msg: Msg,
    /// Rewriting only: headers of the current message, held until its channel is known.
    pending_head: Vec<u8>,
    /// Rewriting only: a copied data message is open; frames of our own must wait.
    raw_open: bool,
    /// Some on the cluster side of exec/attach: the side rewrites stdout and stderr.
    output: Option<Output>,
    scratch: Vec<u8>,
    log: Log,
    err: ErrorChan,
    resize: Resizes,
    /// Port-forward: bytes of the port prefix still expected per channel (cluster side).
    port_prefix: HashMap<u8, Vec<u8>>,
    seen: [bool; 256],
    spdy: Option<SpdySide>,
}

impl WsSide {
    pub(crate) fn new(from: Side, mode: Mode, shared: Arc<Shared>, output: Option<Output>) -> Self {
        WsSide {
            from,
            mode,
            p: Parser::new(from == Side::Client),
            cur: None,
            msg: Msg::None,
            pending_head: Vec::new(),
            raw_open: false,
            output: if mode == Mode::Channels { output } else { None },
            scratch: Vec::new(),
            log: Log::new(shared.clone()),
            err: ErrorChan::default(),
            resize: Resizes::default(),
            port_prefix: HashMap::new(),
            seen: [false; 256],
            spdy: (mode == Mode::Spdy).then(|| SpdySide::new(from, shared.clone(), None)),
            shared,
        }
    }

    fn bad(&self, reason: impl Into<String>) -> TunnelError {
        garbage(self.from, reason)
    }

    fn rewriting(&self) -> bool {
        self.output.is_some()
    }

    fn on_head(&mut self, h: Head, out: &mut Vec<u8>) -> Result<(), TunnelError> {
        self.cur = Some(h);
        if h.is_control() {
            if self.rewriting() {
                if h.opcode == OP_CLOSE {
                    self.release_all()?;
                    self.emit_ready(out);
                }
                out.extend_from_slice(h.raw());
            }
            return Ok(());
        }
        if h.opcode != OP_CONT {
            if self.msg != Msg::None {
                return Err(self.bad("a new message started inside a fragmented one"));
            }
            if h.opcode == OP_TEXT {
                return Err(self.bad("text messages (base64 channel protocols) are not supported"));
            }
            self.msg = Msg::Unknown;
            self.pending_head.clear();
            if self.rewriting() {
                self.pending_head.extend_from_slice(h.raw());
            }
            return Ok(());
        }
        match self.msg {
            Msg::None => return Err(self.bad("continuation frame outside a message")),
            Msg::Unknown if self.rewriting() => {
                if self.pending_head.len() > MAX_PENDING_HEAD {
                    return Err(self.bad("too many empty frames"));
                }
                self.pending_head.extend_from_slice(h.raw());
            }
            Msg::Chan { masked: false, .. } if self.rewriting() => {
                out.extend_from_slice(h.raw());
            }
            _ => {}
        }
        Ok(())
    }

    fn on_payload(&mut self, raw: &[u8], pos: u64, out: &mut Vec<u8>) -> Result<(), TunnelError> {
        let Some(h) = self.cur else {
            return Ok(());
        };
        if h.is_control() {
            if self.rewriting() {
                out.extend_from_slice(raw);
            }
            return Ok(());
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let data: &[u8] = match h.key {
            Some(key) => {
                unmask(key, pos, raw, &mut scratch);
                &scratch
            }
            None => raw,
        };
        let r = self.on_data(data, out);
        self.scratch = scratch;
        r
    }

    fn on_data(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), TunnelError> {
        if self.mode == Mode::Spdy {
            if let Some(s) = &mut self.spdy {
                s.observe(data)?;
            }
            return Ok(());
        }
        let chan = match self.msg {
            Msg::Chan { chan, .. } => chan,
            _ => {
                let Some((&chan, rest)) = data.split_first() else {
                    return Ok(());
                };
                data = rest;
                self.start_message(chan, out)?;
                chan
            }
        };
        let masked = matches!(self.msg, Msg::Chan { masked: true, .. });
        if masked {
            if let (Some(o), Some(i)) = (&mut self.output, Output::index(chan_of(chan))) {
                o.push(i, data)?;
            }
            return Ok(());
        }
        if self.rewriting() {
            out.extend_from_slice(data);
        }
        match self.mode {
            Mode::Channels => match (self.from, chan) {
                (Side::Client, CH_STDIN) => self.log.push(Chan::Stdin, data),
                (Side::Client, CH_RESIZE) => self.resize.push(data, &self.shared),
                (Side::Cluster, CH_ERROR) => self.err.push(data),
                (Side::Cluster, CH_STDOUT | CH_STDERR) => {
                    // Not rewriting (cannot happen for exec/attach); record as is.
                    self.log.push(chan_of(chan), data)
                }
                _ => {}
            },
            Mode::PortForward => self.port_data(chan, data),
            Mode::Spdy => {}
        }
        Ok(())
    }

    fn start_message(&mut self, chan: u8, out: &mut Vec<u8>) -> Result<(), TunnelError> {
        let masked = self.rewriting() && matches!(chan, CH_STDOUT | CH_STDERR);
        self.msg = Msg::Chan { chan, masked };
        if self.mode == Mode::PortForward && !self.seen[chan as usize] {
            self.seen[chan as usize] = true;
            self.shared.pf_open(chan as u32, None, port_channel(chan));
            if self.from == Side::Cluster {
                self.port_prefix.insert(chan, Vec::with_capacity(2));
            }
        }
        if !self.rewriting() {
            return Ok(());
        }
        if masked {
            self.pending_head.clear();
            return Ok(());
        }
        // The status ends the command and a close ends a channel: what the maskers hold goes
        // out first, so the client sees all output before it exits.
        if matches!(chan, CH_ERROR | CH_CLOSE) {
            self.release_all()?;
        }
        self.emit_ready(out);
        out.extend_from_slice(&self.pending_head);
        out.push(chan);
        self.pending_head.clear();
        self.raw_open = true;
        Ok(())
    }

    fn port_data(&mut self, chan: u8, mut data: &[u8]) {
        if let Some(prefix) = self.port_prefix.get_mut(&chan) {
            let n = (2 - prefix.len()).min(data.len());
            prefix.extend_from_slice(&data[..n]);
            data = &data[n..];
            if prefix.len() == 2 {
                let port = u16::from_le_bytes([prefix[0], prefix[1]]);
                self.port_prefix.remove(&chan);
                self.shared
                    .pf_open(chan as u32, Some(port), port_channel(chan));
            }
        }
        self.shared
            .pf_bytes(chan as u32, self.from == Side::Client, data);
    }

    fn on_end(&mut self, out: &mut Vec<u8>) -> Result<(), TunnelError> {
        let Some(h) = self.cur.take() else {
            return Ok(());
        };
        if h.is_control() || !h.fin {
            return Ok(());
        }
        match self.msg {
            Msg::Unknown if self.rewriting() => {
                // An empty message: copied as it was.
                self.emit_ready(out);
                out.extend_from_slice(&self.pending_head);
                self.pending_head.clear();
            }
            Msg::Chan { chan: CH_ERROR, .. }
                if self.mode == Mode::Channels && self.from == Side::Cluster =>
            {
                self.err.report(&self.shared);
            }
            _ => {}
        }
        self.msg = Msg::None;
        self.raw_open = false;
        Ok(())
    }

    fn release_all(&mut self) -> Result<(), TunnelError> {
        match &mut self.output {
            Some(o) => o.release_all(),
            None => Ok(()),
        }
    }

    /// Frames the masked output that is ready, unless a copied message is open.
    fn emit_ready(&mut self, out: &mut Vec<u8>) {
        if self.raw_open {
            return;
        }
        let Some(o) = &mut self.output else {
            return;
        };
        o.drain(&mut self.log, |i, bytes| {
            let chan = if i == 0 { CH_STDOUT } else { CH_STDERR };
            for piece in bytes.chunks(OUT_FRAME) {
                binary_frame(chan, piece, out);
            }
        });
    }
}

/// Port-forward channels: `2i` carries port `i`'s data, `2i+1` its errors.
fn port_channel(chan: u8) -> PortChannel {
    if chan & 1 == 0 {
        PortChannel::Data
    } else {
        PortChannel::Error
    }
}

fn chan_of(c: u8) -> Chan {
    match c {
        CH_STDIN => Chan::Stdin,
        CH_STDOUT => Chan::Stdout,
        CH_STDERR => Chan::Stderr,
        CH_ERROR => Chan::Error,
        CH_RESIZE => Chan::Resize,
        _ => Chan::Other,
    }
}

impl Direction for WsSide {
    fn input(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), TunnelError> {
        if !self.rewriting() {
            out.extend_from_slice(data);
        }
        loop {
            let ev = match self.p.next(&mut data) {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(reason) => return Err(self.bad(reason)),
            };
            match ev {
                Ev::Head(h) => self.on_head(h, out)?,
                Ev::Payload { data: raw, pos } => self.on_payload(raw, pos, out)?,
                Ev::End => self.on_end(out)?,
            }
        }
        self.emit_ready(out);
        Ok(())
    }

    fn wants_idle(&self) -> bool {
        self.output.as_ref().is_some_and(Output::held)
            || self.log.pending()
            || self.spdy.as_ref().is_some_and(|s| s.wants_idle())
    }

    fn idle(&mut self, out: &mut Vec<u8>) -> Result<(), TunnelError> {
        if !self.raw_open {
            self.release_all()?;
            self.emit_ready(out);
        }
        self.log.flush();
        if let Some(s) = &mut self.spdy {
            s.idle(&mut Vec::new())?;
        }
        Ok(())
    }

    fn eof(&mut self, out: &mut Vec<u8>) -> Result<(), TunnelError> {
        self.release_all()?;
        self.emit_ready(out);
        self.err.report(&self.shared);
        self.log.flush();
        if let Some(s) = &mut self.spdy {
            s.eof(&mut Vec::new())?;
        }
        Ok(())
    }
}
