//! SPDY/3.1 frames as they pass through.
//!
//! Control frames are collected whole (they are small; capped) and decoded with
//! `streams::spdy::FrameDecoder`, which keeps this direction's zlib context: every header
//! block is inflated in order, or the next one could not be read. The client's SYN_STREAMs
//! name each stream (`streamType` stdin, stdout, stderr, error, resize; for port-forward `data`
//! or `error` plus `port`); both directions share that table. DATA frames are streamed in
//! pieces of whatever size the reads deliver.
//!
//! On the cluster side of exec/attach, DATA on stdout/stderr is masked and re-framed (new
//! length; a FIN becomes an empty FIN frame after the rest of the output). DATA on a stream
//! no SYN_STREAM announced ends the tunnel: Airlock will not guess what it is.

use std::sync::Arc;

use streams::spdy::{Frame, FrameDecoder, MAX_HEADER_BLOCK_LEN};

use super::{
    garbage, Chan, Direction, ErrorChan, Log, Output, PortChannel, Resizes, Shared, Side,
    TunnelError, OUT_FRAME,
};

const HEAD: usize = 8;
/// Largest control frame accepted: a header block plus the fixed fields.
const MAX_CONTROL: usize = MAX_HEADER_BLOCK_LEN + 64;
const FLAG_FIN: u8 = streams::spdy::FLAG_FIN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Head,
    Control { left: usize },
    Data { left: usize },
}

#[derive(Clone, Copy, Debug)]
struct DataFrame {
    stream: u32,
    flags: u8,
    chan: Chan,
    /// Index into `Output` when this frame is rewritten.
    masked: Option<usize>,
}

/// One direction of a SPDY connection (a SPDY upgrade, or the stream inside a
/// `SPDY/3.1+portforward.k8s.io` WebSocket).
pub(crate) struct SpdySide {
    from: Side,
    shared: Arc<Shared>,
    st: St,
    head: [u8; HEAD],
    have: usize,
    ctrl: Vec<u8>,
    dec: FrameDecoder,
    cur: Option<DataFrame>,
    /// Some on the cluster side of exec/attach: stdout/stderr are rewritten.
    output: Option<Output>,
    /// Stream ids of stdout and stderr, for the frames Airlock writes.
    out_ids: [u32; 2],
    /// A copied DATA frame is open: frames of our own must wait.
    raw_open: bool,
    log: Log,
    err: ErrorChan,
    resize: Resizes,
}

impl SpdySide {
    pub(crate) fn new(from: Side, shared: Arc<Shared>, output: Option<Output>) -> Self {
        SpdySide {
            from,
            st: St::Head,
            head: [0; HEAD],
            have: 0,
            ctrl: Vec::new(),
            dec: FrameDecoder::with_max_frame_len(MAX_CONTROL),
            cur: None,
            output,
            out_ids: [0; 2],
            raw_open: false,
            log: Log::new(shared.clone()),
            err: ErrorChan::default(),
            resize: Resizes::default(),
            shared,
        }
    }

    fn bad(&self, reason: impl Into<String>) -> TunnelError {
        garbage(self.from, reason)
    }

    /// Parses bytes that are forwarded by someone else (inside a WebSocket).
    pub(crate) fn observe(&mut self, data: &[u8]) -> Result<(), TunnelError> {
        debug_assert!(self.output.is_none());
        self.parse(data, &mut Vec::new())
    }

    fn parse(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), TunnelError> {
        loop {
            match self.st {
                St::Head => {
                    if self.have == HEAD {
                        self.have = 0;
                        self.on_head(out)?;
                        continue;
                    }
                    if data.is_empty() {
                        return Ok(());
                    }
                    let n = (HEAD - self.have).min(data.len());
                    self.head[self.have..self.have + n].copy_from_slice(&data[..n]);
                    self.have += n;
                    data = &data[n..];
                }
                St::Control { left: 0 } => {
                    self.st = St::Head;
                    self.on_control(out)?;
                }
                St::Data { left: 0 } => {
                    self.st = St::Head;
                    self.on_data_end(out)?;
                }
                St::Control { left } => {
                    if data.is_empty() {
                        return Ok(());
                    }
                    let n = left.min(data.len());
                    self.ctrl.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    self.st = St::Control { left: left - n };
                }
                St::Data { left } => {
                    if data.is_empty() {
                        return Ok(());
                    }
                    let n = left.min(data.len());
                    self.on_data(&data[..n], out)?;
                    data = &data[n..];
                    self.st = St::Data { left: left - n };
                }
            }
        }
    }

    fn on_head(&mut self, out: &mut Vec<u8>) -> Result<(), TunnelError> {
        let h = self.head;
        let len = u32::from_be_bytes([0, h[5], h[6], h[7]]) as usize;
        if h[0] & 0x80 != 0 {
            if len > MAX_CONTROL {
                return Err(self.bad(format!("control frame of {len} bytes")));
            }
            self.ctrl.clear();
            self.ctrl.extend_from_slice(&h);
            self.st = St::Control { left: len };
            return Ok(());
        }
        let stream = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) & 0x7fff_ffff;
        let flags = h[4];
        let Some(chan) = self.shared.stream(stream) else {
            return Err(self.bad(format!("data on stream {stream}, which was never opened")));
        };
        let masked = if self.output.is_some() {
            Output::index(chan)
        } else {
            None
        };
        if self.output.is_some() {
            match masked {
                Some(i) => self.out_ids[i] = stream,
                None => {
                    if chan == Chan::Error {
                        // The status ends the command: held output goes first.
                        self.release_all()?;
                    }
                    self.emit_ready(out);
                    out.extend_from_slice(&h);
                    self.raw_open = true;
                }
            }
        }
        self.cur = Some(DataFrame {
            stream,
            flags,
            chan,
            masked,
        });
        self.st = St::Data { left: len };
        Ok(())
    }

    fn on_control(&mut self, out: &mut Vec<u8>) -> Result<(), TunnelError> {
        self.dec.feed(&self.ctrl);
        let frame = match self.dec.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => return Err(self.bad("truncated control frame")),
            Err(e) => return Err(self.bad(e.to_string())),
        };
        match &frame {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                let kind = headers.get("streamtype").unwrap_or("");
                let port = headers.get("port").and_then(|p| p.parse::<u16>().ok());
                let chan = match (kind, port) {
                    ("data", Some(_)) | ("data", None) => Chan::Port,
                    ("error", Some(_)) => Chan::Port,
                    ("stdin", _) => Chan::Stdin,
                    ("stdout", _) => Chan::Stdout,
                    ("stderr", _) => Chan::Stderr,
                    ("error", None) => Chan::Error,
                    ("resize", _) => Chan::Resize,
                    _ => Chan::Other,
                };
                self.shared.set_stream(*stream_id, chan);
                if chan == Chan::Port {
                    let channel = if kind == "data" {
                        PortChannel::Data
                    } else {
                        PortChannel::Error
                    };
                    self.shared
                        .pf_open(*stream_id, Some(port.unwrap_or(0)), channel);
                }
            }
            Frame::RstStream { stream_id, .. } => self.shared.pf_close(*stream_id),
            Frame::GoAway { .. } => self.release_all()?,
            _ => {}
        }
        if self.output.is_some() {
            self.emit_ready(out);
            out.extend_from_slice(&self.ctrl);
        }
        self.ctrl.clear();
        Ok(())
    }

    fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), TunnelError> {
        let Some(f) = self.cur else {
            return Ok(());
        };
        if let (Some(i), Some(o)) = (f.masked, &mut self.output) {
            return o.push(i, data);
        }
        if self.output.is_some() {
            out.extend_from_slice(data);
        }
        match (self.from, f.chan) {
            (Side::Client, Chan::Stdin) => self.log.push(Chan::Stdin, data),
            (Side::Client, Chan::Resize) => self.resize.push(data, &self.shared),
            (Side::Cluster, Chan::Error) => self.err.push(data),
            (Side::Cluster, Chan::Stdout | Chan::Stderr) => self.log.push(f.chan, data),
            (side, Chan::Port) => self.shared.pf_bytes(f.stream, side == Side::Client, data),
            _ => {}
        }
        Ok(())
    }

    fn on_data_end(&mut self, out: &mut Vec<u8>) -> Result<(), TunnelError> {
        let Some(f) = self.cur.take() else {
            return Ok(());
        };
        self.raw_open = false;
        if f.flags & FLAG_FIN == 0 {
            return Ok(());
        }
        match f.chan {
            Chan::Error if self.from == Side::Cluster => self.err.report(&self.shared),
            Chan::Port => self.shared.pf_fin(f.stream, self.from == Side::Client),
            _ => {}
        }
        if let (Some(i), Some(o)) = (f.masked, &mut self.output) {
            o.release(i)?;
            self.emit_ready(out);
            data_head(f.stream, FLAG_FIN, 0, out);
        }
        Ok(())
    }

    fn release_all(&mut self) -> Result<(), TunnelError> {
        match &mut self.output {
            Some(o) => o.release_all(),
            None => Ok(()),
        }
    }

    fn emit_ready(&mut self, out: &mut Vec<u8>) {
        if self.raw_open {
            return;
        }
        let Some(o) = &mut self.output else {
            return;
        };
        let ids = self.out_ids;
        o.drain(&mut self.log, |i, bytes| {
            for piece in bytes.chunks(OUT_FRAME) {
                data_head(ids[i], 0, piece.len(), out);
                out.extend_from_slice(piece);
            }
        });
    }
}

fn data_head(stream: u32, flags: u8, len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
}

impl Direction for SpdySide {
    fn input(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), TunnelError> {
        if self.output.is_none() {
            out.extend_from_slice(data);
        }
        self.parse(data, out)?;
        self.emit_ready(out);
        Ok(())
    }

    fn wants_idle(&self) -> bool {
        self.output.as_ref().is_some_and(Output::held) || self.log.pending()
    }

    fn idle(&mut self, out: &mut Vec<u8>) -> Result<(), TunnelError> {
        if !self.raw_open {
            self.release_all()?;
            self.emit_ready(out);
        }
        self.log.flush();
        Ok(())
    }

    fn eof(&mut self, out: &mut Vec<u8>) -> Result<(), TunnelError> {
        self.release_all()?;
        self.emit_ready(out);
        self.err.report(&self.shared);
        self.log.flush();
        Ok(())
    }
}
