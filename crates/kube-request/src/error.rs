//! The one error type of this crate.

/// Why a request could not be turned into Kubernetes request attributes.
///
/// Every message is lowercase and written for the human at the other end of
/// `kubectl`: the gateway returns it as the `message` of a Kubernetes `Status`
/// with HTTP 400. Messages never echo the raw path back, because a rejected
/// path may hold exactly the bytes (control characters, odd encodings) that
/// should not reach a terminal or a log line verbatim; a byte offset is given
/// instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path is not in origin form (it does not start with `/`), e.g. `*`
    /// or an absolute URL that should have been split earlier.
    #[error("request path must start with '/'")]
    NotAbsolute,

    /// A segment is `.` or `..`. Upstream's attribute parser does not resolve
    /// these, but other HTTP layers might, so the same path could name two
    /// different objects.
    #[error("request path contains a '.' or '..' segment at byte {offset}")]
    DotSegment {
        /// Byte offset of the segment in the raw path.
        offset: usize,
    },

    /// Two slashes in a row (an empty segment). Only a single trailing slash
    /// is accepted; see [`crate::check_path`].
    #[error("request path contains an empty segment ('//') at byte {offset}")]
    EmptySegment {
        /// Byte offset of the second slash in the raw path.
        offset: usize,
    },

    /// `%2F` inside a segment: it would decode into a segment separator that
    /// the parser never sees.
    #[error("request path contains a percent-encoded '/' (%2f) at byte {offset}")]
    EncodedSlash {
        /// Byte offset of the `%` in the raw path.
        offset: usize,
    },

    /// `%2E`: a dot never needs encoding, and encoded dots are how dot
    /// segments get smuggled past checks like this one.
    #[error("request path contains a percent-encoded '.' (%2e) at byte {offset}")]
    EncodedDot {
        /// Byte offset of the `%` in the raw path.
        offset: usize,
    },

    /// A `%` not followed by two hex digits.
    #[error("request path contains a malformed percent-escape at byte {offset}")]
    MalformedEscape {
        /// Byte offset of the `%` in the raw path.
        offset: usize,
    },

    /// Percent-escapes in a segment decode to bytes that are not UTF-8.
    #[error("request path percent-decodes to invalid utf-8 in the segment at byte {offset}")]
    InvalidUtf8 {
        /// Byte offset of the start of the segment in the raw path.
        offset: usize,
    },

    /// A raw (unencoded) byte outside ASCII. HTTP request targets are ASCII;
    /// a proxy that let one through may disagree with the API server about it.
    #[error("request path contains a raw non-ascii character at byte {offset}")]
    NonAscii {
        /// Byte offset of the character in the raw path.
        offset: usize,
    },

    /// A control character or whitespace, raw or percent-encoded.
    #[error("request path contains a control character or whitespace at byte {offset}")]
    ControlCharacter {
        /// Byte offset in the raw path (of the `%` when it was encoded).
        offset: usize,
    },

    /// `/api/{version}/watch` or `/api/{version}/proxy` with nothing after it.
    /// Upstream fails the request the same way.
    #[error("unable to determine kind and namespace from url {path}")]
    MissingResource {
        /// The decoded path; it passed [`crate::check_path`] so it is safe to show.
        path: String,
    },

    /// A `ports` query parameter that is not a port number in 1..=65535.
    #[error("invalid port {value:?} in the ports query parameter")]
    InvalidPort {
        /// The offending value, as decoded from the query.
        value: String,
    },
}
