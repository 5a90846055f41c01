//! Incremental frame decoding and frame encoding.

use super::{frame_type as ft, Frame, HeaderCompressor, HeaderDecompressor, Setting, VERSION};
use crate::{Error, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Default largest frame payload a [`FrameDecoder`] accepts. The protocol allows 16 MiB; Go's
/// `io.Copy` writes 32 KiB at a time, so 1 MiB leaves ample room while bounding memory.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1024 * 1024;

const HEADER_LEN: usize = 8;
const MAX_WIRE_LEN: usize = (1 << 24) - 1;

// === impl FrameDecoder ===

/// Turns bytes of one direction of a SPDY connection into frames. Feed it whatever the
/// transport delivers; it keeps partial frames and the header inflate context.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    headers: HeaderDecompressor,
    max_frame_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder with [`DEFAULT_MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::with_max_frame_len(DEFAULT_MAX_FRAME_LEN)
    }

    /// A decoder rejecting payloads longer than `max` bytes.
    pub fn with_max_frame_len(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            headers: HeaderDecompressor::new(),
            max_frame_len: max.min(MAX_WIRE_LEN),
        }
    }

    /// Appends received bytes. Call [`FrameDecoder::next_frame`] until it returns `None`
    /// before feeding more, so at most one frame plus one read is buffered.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that do not yet form a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, or `None` when more bytes are needed. After an error the
    /// connection must be dropped: the header inflate context may be out of step.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([0, self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if len > self.max_frame_len {
            return Err(Error::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let head = self.buf.split_to(HEADER_LEN);
        let payload = self.buf.split_to(len).freeze();
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(invalid("DATA", "stream id zero"));
            }
            return Ok(Some(Frame::Data {
                stream_id,
                flags,
                data: payload,
            }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let frame_type = u16::from_be_bytes([head[2], head[3]]);
        self.control(frame_type, flags, payload).map(Some)
    }

    fn control(&mut self, frame_type: u16, flags: u8, mut p: Bytes) -> Result<Frame> {
        Ok(match frame_type {
            ft::SYN_STREAM => {
                need(&p, 10, "SYN_STREAM")?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let slot = p.get_u8();
                if stream_id == 0 {
                    return Err(invalid("SYN_STREAM", "stream id zero"));
                }
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    slot,
                    flags,
                    headers: self.headers.decompress(&p)?,
                }
            }
            ft::SYN_REPLY => {
                need(&p, 4, "SYN_REPLY")?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers: self.headers.decompress(&p)?,
                }
            }
            ft::HEADERS => {
                need(&p, 4, "HEADERS")?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                Frame::Headers {
                    stream_id,
                    flags,
                    headers: self.headers.decompress(&p)?,
                }
            }
            ft::RST_STREAM => {
                exact(&p, 8, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    status: p.get_u32(),
                }
            }
            ft::SETTINGS => {
                need(&p, 4, "SETTINGS")?;
                let n = p.get_u32() as usize;
                if p.len() != n.saturating_mul(8) {
                    return Err(invalid("SETTINGS", "entry count does not match length"));
                }
                let entries = (0..n)
                    .map(|_| {
                        let fid = p.get_u32();
                        Setting {
                            flags: (fid >> 24) as u8,
                            id: fid & 0x00ff_ffff,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            ft::PING => {
                exact(&p, 4, "PING")?;
                Frame::Ping { id: p.get_u32() }
            }
            ft::GOAWAY => {
                // SPDY/2 GOAWAY had no status; accept the short form too.
                need(&p, 4, "GOAWAY")?;
                let last_good_stream_id = p.get_u32() & 0x7fff_ffff;
                let status = if p.len() >= 4 { p.get_u32() } else { 0 };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            ft::WINDOW_UPDATE => {
                exact(&p, 8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown {
                frame_type: other,
                flags,
                payload: p,
            },
        })
    }
}

fn invalid(kind: &'static str, reason: &'static str) -> Error {
    Error::InvalidFrame { kind, reason }
}

fn need(p: &Bytes, n: usize, kind: &'static str) -> Result<()> {
    if p.len() < n {
        return Err(invalid(kind, "payload too short"));
    }
    Ok(())
}

fn exact(p: &Bytes, n: usize, kind: &'static str) -> Result<()> {
    if p.len() != n {
        return Err(invalid(kind, "wrong payload length"));
    }
    Ok(())
}

// === impl FrameEncoder ===

/// Serialises frames for one direction of a connection, owning its header deflate context.
#[derive(Debug)]
pub struct FrameEncoder {
    headers: HeaderCompressor,
}

impl FrameEncoder {
    /// A fresh encoder.
    pub fn new() -> Result<Self> {
        Ok(Self {
            headers: HeaderCompressor::new()?,
        })
    }

    /// Appends the wire form of `frame` to `dst`. Frames must be encoded in the order they are
    /// sent: header blocks share one compression context.
    pub fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<()> {
        match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                check_len(data.len(), "DATA")?;
                dst.reserve(HEADER_LEN + data.len());
                dst.put_u32(stream_id & 0x7fff_ffff);
                put_flags_len(dst, *flags, data.len());
                dst.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                flags,
                headers,
            } => {
                let block = self.headers.compress(headers)?;
                let mut p = BytesMut::with_capacity(10 + block.len());
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(associated_to & 0x7fff_ffff);
                p.put_u8((priority & 0x7) << 5);
                p.put_u8(*slot);
                p.put_slice(&block);
                control(dst, ft::SYN_STREAM, *flags, &p)?;
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let p = self.stream_block(*stream_id, headers)?;
                control(dst, ft::SYN_REPLY, *flags, &p)?;
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let p = self.stream_block(*stream_id, headers)?;
                control(dst, ft::HEADERS, *flags, &p)?;
            }
            Frame::RstStream { stream_id, status } => {
                let mut p = [0u8; 8];
                p[..4].copy_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p[4..].copy_from_slice(&status.to_be_bytes());
                control(dst, ft::RST_STREAM, 0, &p)?;
            }
            Frame::Settings { flags, entries } => {
                let mut p = BytesMut::with_capacity(4 + entries.len() * 8);
                p.put_u32(entries.len() as u32);
                for e in entries {
                    p.put_u32((u32::from(e.flags) << 24) | (e.id & 0x00ff_ffff));
                    p.put_u32(e.value);
                }
                control(dst, ft::SETTINGS, *flags, &p)?;
            }
            Frame::Ping { id } => control(dst, ft::PING, 0, &id.to_be_bytes())?,
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                let mut p = [0u8; 8];
                p[..4].copy_from_slice(&(last_good_stream_id & 0x7fff_ffff).to_be_bytes());
                p[4..].copy_from_slice(&status.to_be_bytes());
                control(dst, ft::GOAWAY, 0, &p)?;
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut p = [0u8; 8];
                p[..4].copy_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p[4..].copy_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                control(dst, ft::WINDOW_UPDATE, 0, &p)?;
            }
            Frame::Unknown {
                frame_type,
                flags,
                payload,
            } => control(dst, *frame_type, *flags, payload)?,
        }
        Ok(())
    }

    fn stream_block(&mut self, stream_id: u32, headers: &super::Headers) -> Result<BytesMut> {
        let block = self.headers.compress(headers)?;
        let mut p = BytesMut::with_capacity(4 + block.len());
        p.put_u32(stream_id & 0x7fff_ffff);
        p.put_slice(&block);
        Ok(p)
    }
}

fn check_len(len: usize, kind: &'static str) -> Result<()> {
    if len > MAX_WIRE_LEN {
        return Err(invalid(kind, "payload longer than 2^24-1 bytes"));
    }
    Ok(())
}

fn put_flags_len(dst: &mut BytesMut, flags: u8, len: usize) {
    dst.put_u32((u32::from(flags) << 24) | (len as u32 & 0x00ff_ffff));
}

fn control(dst: &mut BytesMut, frame_type: u16, flags: u8, payload: &[u8]) -> Result<()> {
    check_len(payload.len(), "control")?;
    dst.reserve(HEADER_LEN + payload.len());
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(frame_type);
    put_flags_len(dst, flags, payload.len());
    dst.put_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spdy::{Headers, FLAG_FIN};

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                slot: 0,
                flags: 0,
                headers: Headers::new().with("streamtype", "error"),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 7,
                slot: 0,
                flags: FLAG_FIN,
                headers: Headers::new()
                    .with("streamtype", "data")
                    .with("port", "8080")
                    .with("requestid", "0"),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: Headers::new(),
            },
            Frame::Headers {
                stream_id: 3,
                flags: FLAG_FIN,
                headers: Headers::new().with("x", "y"),
            },
            Frame::RstStream {
                stream_id: 5,
                status: 5,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![Setting {
                    flags: 1,
                    id: 7,
                    value: 65536,
                }],
            },
            Frame::Ping { id: 1 },
            Frame::GoAway {
                last_good_stream_id: 7,
                status: 0,
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 1024,
            },
            Frame::Data {
                stream_id: 1,
                flags: 0,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Bytes::new(),
            },
        ]
    }

    #[test]
    fn every_frame_round_trips_even_fed_byte_by_byte() {
        let mut enc = FrameEncoder::new().unwrap();
        let mut wire = BytesMut::new();
        for f in all_frames() {
            enc.encode(&f, &mut wire).unwrap();
        }
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            dec.feed(&[*b]);
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, all_frames());
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn constructed_wire_frames_decode() {
        // Hand-built per the draft, independent of the encoder.
        let cases: Vec<(&[u8], Frame)> = vec![
            (
                &[
                    0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01,
                ],
                Frame::Ping { id: 1 },
            ),
            (
                &[0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x02, b'h', b'i'],
                Frame::Data {
                    stream_id: 3,
                    flags: FLAG_FIN,
                    data: Bytes::from_static(b"hi"),
                },
            ),
            (
                &[
                    0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x05, 0x00,
                    0x00, 0x00, 0x05,
                ],
                Frame::RstStream {
                    stream_id: 5,
                    status: 5,
                },
            ),
            (
                &[
                    0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x09, 0x00,
                    0x00, 0x00, 0x00,
                ],
                Frame::GoAway {
                    last_good_stream_id: 9,
                    status: 0,
                },
            ),
            (
                &[0x80, 0x03, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x01, 0xff],
                Frame::Unknown {
                    frame_type: 10,
                    flags: 0,
                    payload: Bytes::from_static(&[0xff]),
                },
            ),
        ];
        for (wire, want) in cases {
            let mut dec = FrameDecoder::new();
            dec.feed(wire);
            assert_eq!(dec.next_frame().unwrap(), Some(want));
        }
    }

    #[test]
    fn malformed_frames_are_errors() {
        let cases: Vec<&[u8]> = vec![
            // SPDY/2 control frame
            &[0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1],
            // PING with 3-byte payload
            &[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x03, 0, 0, 1],
            // DATA on stream 0
            &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
            // declared length over the limit
            &[0x00, 0x00, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff],
        ];
        for wire in cases {
            let mut dec = FrameDecoder::new();
            dec.feed(wire);
            assert!(dec.next_frame().is_err(), "{wire:?}");
        }
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut dec = FrameDecoder::new();
        dec.feed(&[0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, b'a']);
        assert_eq!(dec.next_frame().unwrap(), None);
        dec.feed(b"bcde");
        assert!(matches!(
            dec.next_frame().unwrap(),
            Some(Frame::Data { .. })
        ));
    }
}
