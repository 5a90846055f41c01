//! Canonical-path checking and segment decoding.
//!
//! The gateway authorizes a request by the attributes it parses from the path,
//! and then forwards the *raw* path to the API server. That is only sound if
//! every HTTP layer between here and the API server's own attribute parser
//! reads the path the same way. So instead of normalizing, we refuse every
//! form that some layer could read differently: dot segments, empty
//! segments, encoded separators and dots, and bytes that are not plain
//! printable ASCII.

use crate::Error;

/// Checks that `raw_path` (still percent-encoded, without the query) is in
/// the one canonical form the gateway accepts.
///
/// Rejected, each with its own [`Error`] variant:
///
/// - a path that does not start with `/` (the empty path is accepted as `/`);
/// - `.` and `..` segments;
/// - empty segments (`//` anywhere, including `//` at the end);
/// - `%2F`/`%2f` (encoded `/`) and `%2E`/`%2e` (encoded `.`) anywhere;
/// - `%` not followed by two hex digits;
/// - escapes that decode to invalid UTF-8 or to a control character
///   (`%00`..`%1F`, `%7F`);
/// - raw bytes outside printable ASCII (controls, space, DEL, non-ASCII).
///
/// A single trailing slash is accepted (`/api/v1/pods/` parses like
/// `/api/v1/pods`): upstream's `splitPath` trims leading and trailing
/// slashes, so the API server reads both paths the same way and rejecting
/// the first would only break clients.
pub fn check_path(raw_path: &str) -> Result<(), Error> {
    segments(raw_path).map(|_| ())
}

/// A checked, decoded path: the decoded segments (with the leading and one
/// trailing slash trimmed, like upstream's `splitPath`) and the decoded path.
pub(crate) struct DecodedPath {
    pub(crate) path: String,
    pub(crate) segments: Vec<String>,
}

/// Checks `raw_path` (see [`check_path`]) and decodes it.
pub(crate) fn decode(raw_path: &str) -> Result<DecodedPath, Error> {
    let segments = segments(raw_path)?;
    let mut path = String::with_capacity(raw_path.len());
    for segment in &segments {
        path.push('/');
        path.push_str(segment);
    }
    // Keep the trailing slash and the root like Go's `URL.Path` would.
    if raw_path.ends_with('/') && !segments.is_empty() {
        path.push('/');
    }
    if path.is_empty() {
        path.push('/');
    }
    Ok(DecodedPath { path, segments })
}

fn segments(raw_path: &str) -> Result<Vec<String>, Error> {
    // Hyper never hands us an empty path, but upstream's tests treat "" as "/".
    if raw_path.is_empty() || raw_path == "/" {
        return Ok(Vec::new());
    }
    let Some(rest) = raw_path.strip_prefix('/') else {
        return Err(Error::NotAbsolute);
    };
    check_bytes(raw_path)?;

    // One trailing slash is allowed; two are an empty segment and caught below.
    let body = rest.strip_suffix('/').unwrap_or(rest);
    let mut out = Vec::new();
    let mut offset = 1;
    for raw in body.split('/') {
        if raw.is_empty() {
            return Err(Error::EmptySegment { offset });
        }
        if raw == "." || raw == ".." {
            return Err(Error::DotSegment { offset });
        }
        out.push(decode_segment(raw, offset)?);
        offset += raw.len() + 1;
    }
    Ok(out)
}

/// Byte-level checks over the whole raw path, so offsets are exact.
fn check_bytes(raw_path: &str) -> Result<(), Error> {
    let bytes = raw_path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !b.is_ascii() {
            return Err(Error::NonAscii { offset: i });
        }
        if !b.is_ascii_graphic() {
            return Err(Error::ControlCharacter { offset: i });
        }
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(Error::MalformedEscape { offset: i });
            };
            match hi << 4 | lo {
                b'/' => return Err(Error::EncodedSlash { offset: i }),
                b'.' => return Err(Error::EncodedDot { offset: i }),
                c if c < 0x20 || c == 0x7f => return Err(Error::ControlCharacter { offset: i }),
                _ => {}
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Decodes one segment that already passed [`check_bytes`]. `+` stays `+`:
/// that is query-string encoding, not path encoding.
fn decode_segment(raw: &str, offset: usize) -> Result<String, Error> {
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    String::from_utf8(percent_encoding::percent_decode_str(raw).collect())
        .map_err(|_| Error::InvalidUtf8 { offset })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (raw path, expected decoded segments)
    const ACCEPTED: &[(&str, &[&str])] = &[
        ("", &[]),
        ("/", &[]),
        ("/api", &["api"]),
        ("/api/", &["api"]),
        ("/api/v1/pods", &["api", "v1", "pods"]),
        ("/api/v1/pods/", &["api", "v1", "pods"]),
        (
            "/api/v1/namespaces/a/pods/b",
            &["api", "v1", "namespaces", "a", "pods", "b"],
        ),
        // Names with escapes decode once, and only once.
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Anode",
            &[
                "apis",
                "rbac.authorization.k8s.io",
                "v1",
                "clusterroles",
                "system:node",
            ],
        ),
        ("/x/%2525", &["x", "%25"]),
        // `+` is literal in a path.
        ("/x/a+b", &["x", "a+b"]),
        // Encoded space and valid multi-byte UTF-8 are allowed after decoding.
        ("/x/a%20b", &["x", "a b"]),
        ("/x/%C3%A9", &["x", "\u{e9}"]),
        // Dots inside a segment are fine; only whole `.`/`..` segments are not.
        (
            "/x/.well-known/a..b/...",
            &["x", ".well-known", "a..b", "..."],
        ),
    ];

    /// (raw path, expected error)
    const REJECTED: &[(&str, Error)] = &[
        ("api/v1/pods", Error::NotAbsolute),
        ("*", Error::NotAbsolute),
        ("/api/v1/./pods", Error::DotSegment { offset: 8 }),
        ("/api/v1/../pods", Error::DotSegment { offset: 8 }),
        ("/..", Error::DotSegment { offset: 1 }),
        ("/api/v1/pods/.", Error::DotSegment { offset: 13 }),
        ("/api/v1/pods/../", Error::DotSegment { offset: 13 }),
        ("//api/v1/pods", Error::EmptySegment { offset: 1 }),
        ("/api//v1/pods", Error::EmptySegment { offset: 5 }),
        ("/api/v1/pods//", Error::EmptySegment { offset: 13 }),
        (
            "/api/v1/namespaces/a%2Fb/pods",
            Error::EncodedSlash { offset: 20 },
        ),
        (
            "/api/v1/namespaces/a%2fb/pods",
            Error::EncodedSlash { offset: 20 },
        ),
        ("/api/v1/%2E%2E/pods", Error::EncodedDot { offset: 8 }),
        ("/api/v1/%2e/pods", Error::EncodedDot { offset: 8 }),
        ("/api/v1/pods/a%2eb", Error::EncodedDot { offset: 14 }),
        ("/api/v1/pods/%", Error::MalformedEscape { offset: 13 }),
        ("/api/v1/pods/%4", Error::MalformedEscape { offset: 13 }),
        ("/api/v1/pods/%zz", Error::MalformedEscape { offset: 13 }),
        ("/api/v1/pods/%%41", Error::MalformedEscape { offset: 13 }),
        ("/api/v1/pods/%FF", Error::InvalidUtf8 { offset: 13 }),
        ("/api/v1/pods/%C3", Error::InvalidUtf8 { offset: 13 }),
        ("/api/v1/pods/%C0%AF", Error::InvalidUtf8 { offset: 13 }),
        ("/api/v1/pods/\u{e9}", Error::NonAscii { offset: 13 }),
        ("/api/v1/pods/a b", Error::ControlCharacter { offset: 14 }),
        ("/api/v1/pods/a\tb", Error::ControlCharacter { offset: 14 }),
        ("/api/v1/pods/a\nb", Error::ControlCharacter { offset: 14 }),
        (
            "/api/v1/pods/a\u{7f}",
            Error::ControlCharacter { offset: 14 },
        ),
        ("/api/v1/pods/a%00", Error::ControlCharacter { offset: 14 }),
        ("/api/v1/pods/a%0A", Error::ControlCharacter { offset: 14 }),
        ("/api/v1/pods/a%7f", Error::ControlCharacter { offset: 14 }),
    ];

    #[test]
    fn accepted_paths_decode_to_segments() {
        for (raw, want) in ACCEPTED {
            assert_eq!(check_path(raw), Ok(()), "{raw:?}");
            let got = decode(raw).map(|d| d.segments);
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(got, Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn non_canonical_paths_are_rejected() {
        for (raw, want) in REJECTED {
            assert_eq!(check_path(raw).as_ref(), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn decoded_path_keeps_root_and_trailing_slash() {
        for (raw, want) in [
            ("", "/"),
            ("/", "/"),
            ("/api/v1/pods", "/api/v1/pods"),
            ("/api/v1/pods/", "/api/v1/pods/"),
            ("/x/system%3Anode", "/x/system:node"),
        ] {
            assert_eq!(decode(raw).map(|d| d.path).as_deref(), Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn error_messages_are_lowercase_without_trailing_period() {
        for (raw, err) in REJECTED {
            let msg = err.to_string();
            assert!(!msg.ends_with('.'), "{raw:?}: {msg}");
            assert_eq!(msg, msg.to_lowercase(), "{raw:?}: {msg}");
        }
    }
}
