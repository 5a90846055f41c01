//! SPDY/3.1 as Kubernetes uses it (moby/spdystream on the Go side).
//!
//! Wire format, all integers big-endian:
//!
//! ```text
//! control frame: |1| version(15) | type(16) | flags(8) | length(24) | payload
//! data frame:    |0| stream id(31)           | flags(8) | length(24) | payload
//! ```
//!
//! Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are `u32 count` then `u32 len, name, u32 len,
//! value` pairs, zlib-deflated with [`SPDY3_DICTIONARY`]. Each direction of a connection has one
//! compression context that lives as long as the connection, and every block ends with a sync
//! flush, so a block can only be inflated after all earlier blocks of the same direction.
//!
//! To observe a connection passively (recording in the gateway), keep one [`FrameDecoder`]
//! per direction and feed each the bytes seen in that direction:
//!
//! ```
//! use bytes::BytesMut;
//! use streams::spdy::{Frame, FrameDecoder, FrameEncoder, Headers};
//!
//! let mut client = FrameEncoder::new()?;
//! let mut wire = BytesMut::new();
//! client.encode(&Frame::SynStream {
//!     stream_id: 1, associated_to: 0, priority: 0, slot: 0, flags: 0,
//!     headers: Headers::new().with("streamType", "stdout"),
//! }, &mut wire)?;
//! client.encode(&Frame::Data { stream_id: 1, flags: 0, data: "hi".into() }, &mut wire)?;
//!
//! let mut seen = FrameDecoder::new();
//! let mut frames = Vec::new();
//! for chunk in wire.chunks(3) {
//!     seen.feed(chunk);
//!     while let Some(frame) = seen.next_frame()? {
//!         frames.push(frame);
//!     }
//! }
//! assert!(matches!(&frames[0], Frame::SynStream { headers, .. } if headers.get("streamtype") == Some("stdout")));
//! assert!(matches!(&frames[1], Frame::Data { data, .. } if &data[..] == b"hi"));
//! # Ok::<(), streams::Error>(())
//! ```

mod codec;
mod compress;
mod dictionary;
mod server;

pub use codec::{FrameDecoder, FrameEncoder, DEFAULT_MAX_FRAME_LEN};
pub use compress::{
    decode_header_block, encode_header_block, HeaderCompressor, HeaderDecompressor,
    MAX_HEADER_BLOCK_LEN,
};
pub use dictionary::SPDY3_DICTIONARY;
pub use server::{SpdyServer, SpdyStream, StreamReader, StreamWriter};

use bytes::Bytes;

/// The only SPDY version Kubernetes speaks.
pub const VERSION: u16 = 3;

/// `FLAG_FIN`: the sender will send nothing more on this stream (half-close).
pub const FLAG_FIN: u8 = 0x01;
/// `FLAG_UNIDIRECTIONAL` on SYN_STREAM: the recipient may not send on this stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// `FLAG_SETTINGS_CLEAR_SETTINGS` on SETTINGS.
pub const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// Control frame type numbers.
pub mod frame_type {
    /// SYN_STREAM
    pub const SYN_STREAM: u16 = 1;
    /// SYN_REPLY
    pub const SYN_REPLY: u16 = 2;
    /// RST_STREAM
    pub const RST_STREAM: u16 = 3;
    /// SETTINGS
    pub const SETTINGS: u16 = 4;
    /// PING
    pub const PING: u16 = 6;
    /// GOAWAY
    pub const GOAWAY: u16 = 7;
    /// HEADERS
    pub const HEADERS: u16 = 8;
    /// WINDOW_UPDATE
    pub const WINDOW_UPDATE: u16 = 9;
}

/// RST_STREAM status codes.
pub mod rst_status {
    /// PROTOCOL_ERROR
    pub const PROTOCOL_ERROR: u32 = 1;
    /// INVALID_STREAM
    pub const INVALID_STREAM: u32 = 2;
    /// REFUSED_STREAM
    pub const REFUSED_STREAM: u32 = 3;
    /// CANCEL
    pub const CANCEL: u32 = 5;
    /// INTERNAL_ERROR
    pub const INTERNAL_ERROR: u32 = 6;
}

/// A header block: ordered name/value pairs. Names are compared case-insensitively because
/// spdystream lowercases on the wire while Go's `http.Header` canonicalises (`Streamtype`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty header block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pair. Several values for one name are joined with NUL on the wire.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Builder form of [`Headers::push`].
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.push(name, value);
        self
    }

    /// First value for `name`, case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<T: IntoIterator<Item = (N, V)>>(iter: T) -> Self {
        Self(
            iter.into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        )
    }
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Per-entry flags (PERSIST_VALUE, PERSISTED).
    pub flags: u8,
    /// Setting id (24 bits).
    pub id: u32,
    /// Value.
    pub value: u32,
}

/// A decoded SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// New stream id (odd when opened by the client).
        stream_id: u32,
        /// Stream this one is associated to, 0 for none.
        associated_to: u32,
        /// Priority, 0 (highest) to 7.
        priority: u8,
        /// Credential slot (unused by Kubernetes).
        slot: u8,
        /// `FLAG_FIN` and/or `FLAG_UNIDIRECTIONAL`.
        flags: u8,
        /// Decompressed headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// Stream id being accepted.
        stream_id: u32,
        /// `FLAG_FIN`.
        flags: u8,
        /// Decompressed headers.
        headers: Headers,
    },
    /// Aborts a stream.
    RstStream {
        /// Stream id.
        stream_id: u32,
        /// One of [`rst_status`].
        status: u32,
    },
    /// Connection settings.
    Settings {
        /// `FLAG_CLEAR_SETTINGS`.
        flags: u8,
        /// Entries.
        entries: Vec<Setting>,
    },
    /// Liveness check; the receiver echoes pings the peer started.
    Ping {
        /// Ping id: odd from the client, even from the server.
        id: u32,
    },
    /// The sender will accept no more streams.
    GoAway {
        /// Last stream id the sender processed.
        last_good_stream_id: u32,
        /// 0 OK, 1 PROTOCOL_ERROR, 2 INTERNAL_ERROR.
        status: u32,
    },
    /// Extra headers on an open stream.
    Headers {
        /// Stream id.
        stream_id: u32,
        /// `FLAG_FIN`.
        flags: u8,
        /// Decompressed headers.
        headers: Headers,
    },
    /// Flow-control credit (parsed, never acted on: spdystream has no flow control).
    WindowUpdate {
        /// Stream id, 0 for the whole connection.
        stream_id: u32,
        /// Credit in bytes (31 bits).
        delta: u32,
    },
    /// Stream payload.
    Data {
        /// Stream id.
        stream_id: u32,
        /// `FLAG_FIN`.
        flags: u8,
        /// Payload.
        data: Bytes,
    },
    /// A control frame of a type this crate does not know; SPDY says to ignore it.
    Unknown {
        /// Control frame type.
        frame_type: u16,
        /// Flags.
        flags: u8,
        /// Raw payload.
        payload: Bytes,
    },
}

impl Frame {
    /// The stream the frame belongs to, if any.
    pub fn stream_id(&self) -> Option<u32> {
        match self {
            Frame::SynStream { stream_id, .. }
            | Frame::SynReply { stream_id, .. }
            | Frame::RstStream { stream_id, .. }
            | Frame::Headers { stream_id, .. }
            | Frame::Data { stream_id, .. } => Some(*stream_id),
            Frame::WindowUpdate { stream_id, .. } if *stream_id != 0 => Some(*stream_id),
            _ => None,
        }
    }

    /// True when the frame half-closes its stream from the sender's side.
    pub fn is_fin(&self) -> bool {
        match self {
            Frame::SynStream { flags, .. }
            | Frame::SynReply { flags, .. }
            | Frame::Headers { flags, .. }
            | Frame::Data { flags, .. } => flags & FLAG_FIN != 0,
            _ => false,
        }
    }
}
