//! The one error type of the `streams` crate.

/// Everything that can go wrong while parsing, building or serving a streaming protocol.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A control frame carried a SPDY version other than 3.
    #[error("unsupported spdy version {0}")]
    UnsupportedVersion(u16),

    /// A frame declared a payload larger than the decoder accepts; reading it would let a peer
    /// make us buffer arbitrary amounts of memory.
    #[error("spdy frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Declared payload length.
        len: usize,
        /// Configured limit.
        max: usize,
    },

    /// A frame was structurally wrong (too short for its type, stream id zero, ...).
    #[error("invalid spdy {kind} frame: {reason}")]
    InvalidFrame {
        /// Frame type name, e.g. `SYN_STREAM`.
        kind: &'static str,
        /// What was wrong.
        reason: &'static str,
    },

    /// A (decompressed) header block did not parse or was too large.
    #[error("invalid spdy header block: {0}")]
    HeaderBlock(&'static str),

    /// zlib failed to inflate a header block.
    #[error("spdy header block decompression failed")]
    Decompress(#[from] flate2::DecompressError),

    /// zlib failed to deflate a header block.
    #[error("spdy header block compression failed")]
    Compress(#[from] flate2::CompressError),

    /// The underlying transport failed.
    #[error("stream transport i/o failed")]
    Io(#[from] std::io::Error),

    /// The session is gone: the peer disconnected or the session was shut down.
    #[error("connection closed")]
    ConnectionClosed,

    /// A WebSocket channel message was malformed.
    #[error("invalid channel message: {0}")]
    ChannelMessage(&'static str),
}

/// Convenience alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
