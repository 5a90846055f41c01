//! Markers that replace secret material, keyed fingerprints, and write-back detection.
//!
//! Two shapes of marker exist:
//!
//! * **Secret values** (`data`, `stringData`): the value becomes the text
//!   `airlock:masked:<fp>` padded with `*` up to the original decoded length (never shorter than
//!   the marker itself). In `data` the padded text is base64-encoded, so client-go still decodes
//!   it and `kubectl describe secret` still prints the real byte count.
//! * **Detector hits** in free text: `[airlock:masked:<detector>:<fp>]`, keeping the text around.
//!
//! `<fp>` is the first [`FINGERPRINT_LEN`] hex characters of HMAC-SHA256(key, binding ‖ value),
//! where the binding names *where* the value sits: the cluster, the object (kind, namespace,
//! name) and the field path inside it (see [`Fingerprinter::bound`]). The same value in the
//! same field shows the same fingerprint on every read, so a human can tell that it changed,
//! but a value anywhere else (the agent's own guesses in a ConfigMap of its own, say) is
//! fingerprinted under another binding, so fingerprints cannot confirm a guess. Responses that
//! echo what the client sent (writes) and interactive streams use a key of their own (see
//! `crate::Fingerprints`).

use std::sync::OnceLock;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Every marker starts with this text (raw, or base64-encoded in Secret `data`).
pub const MARKER_PREFIX: &str = "airlock:masked:";

/// Base64 of [`MARKER_PREFIX`] at offset 0: every masked `data` value starts with exactly this.
pub const MARKER_PREFIX_BASE64: &str = "YWlybG9jazptYXNrZWQ6";

/// Hex characters of the keyed fingerprint kept in markers.
pub const FINGERPRINT_LEN: usize = 12;

/// Filler used to pad a Secret value marker to the original length.
pub(crate) const PAD: u8 = b'*';

/// True when `bytes` contain a masking marker: raw (`airlock:masked:`), or base64-encoded at
/// any of the three alignments (which covers Secret `data`, values inside `stringData`, and
/// markers inside a `last-applied-configuration` annotation).
///
/// The gateway calls this on create/update/patch/apply bodies and refuses the write when it is
/// true: writing a masked object back would replace the real secret with the marker.
pub fn contains_marker(bytes: &[u8]) -> bool {
    marker_patterns()
        .iter()
        .any(|pattern| memchr::memmem::find(bytes, pattern).is_some())
}

fn marker_patterns() -> &'static [Vec<u8>] {
    static PATTERNS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let mut patterns: Vec<Vec<u8>> = vec![MARKER_PREFIX.as_bytes().to_vec()];
        patterns.extend(base64_alignments());
        patterns
    })
}

/// The base64 text that is fixed by the prefix alone, for the prefix starting at byte offset
/// 0, 1 and 2 of the encoded input: the first quantum (which mixes in unknown bytes before
/// the prefix) and the last partial quantum (unknown bytes after) are dropped.
fn base64_alignments() -> Vec<Vec<u8>> {
    let engine = base64::engine::general_purpose::STANDARD;
    (0..3usize)
        .map(|shift| {
            let mut input = vec![0u8; shift];
            input.extend_from_slice(MARKER_PREFIX.as_bytes());
            let full = input.len() / 3 * 3;
            let encoded = engine.encode(&input[..full]).into_bytes();
            let skip = if shift == 0 { 0 } else { 4 };
            encoded[skip..].to_vec()
        })
        .collect()
}

// === impl Fingerprinter ===

/// Computes keyed fingerprints.
#[derive(Clone)]
pub(crate) struct Fingerprinter {
    mac: Hmac<Sha256>,
    /// Bytes of the MAC input absorbed so far, after the key (for block alignment).
    absorbed: usize,
}

impl Fingerprinter {
    pub(crate) fn new(key: &[u8]) -> Result<Self, crate::MaskError> {
        if key.is_empty() {
            return Err(crate::MaskError::EmptyKey);
        }
        let mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| crate::MaskError::EmptyKey)?;
        Ok(Fingerprinter { mac, absorbed: 0 })
    }

    /// A fingerprinter whose fingerprints are bound to `binding` as well: its fingerprint of a
    /// value differs from this one's (and from any other binding's). Build `binding` with
    /// [`push_part`]; bindings nest (cluster, then object, then field path).
    ///
    /// The MAC input is a sequence of tagged records, each of known length: `0x01`, the
    /// binding's length (LEB128) and the binding for every binding, then `0x00` and the
    /// value. No two different (bindings, value) sequences give the same input.
    pub(crate) fn bound(&self, binding: &[u8]) -> Fingerprinter {
        self.record(1, binding, false)
    }

    /// [`bound`](Self::bound) for a binding many values share (a cluster, an object): the
    /// record is zero-padded to the end of a SHA-256 block, so the state it leaves holds no
    /// partial block and each value hashes only its own bytes after it. One block per object
    /// (deriving a key of its own would cost four).
    pub(crate) fn bound_shared(&self, binding: &[u8]) -> Fingerprinter {
        self.record(3, binding, true)
    }

    /// Absorbs one record: tag, LEB128 length, bytes, and (`pad`) zeros up to the next
    /// 64-byte boundary of the MAC input (the key's block included, so the input so far
    /// decides the padding's length: the encoding stays unambiguous).
    fn record(&self, tag: u8, binding: &[u8], pad: bool) -> Fingerprinter {
        let mut mac = self.mac.clone();
        let mut head = Vec::with_capacity(11);
        head.push(tag);
        push_len(&mut head, binding.len());
        mac.update(&head);
        mac.update(binding);
        let mut absorbed = self.absorbed + head.len() + binding.len();
        if pad {
            const ZEROS: [u8; 64] = [0; 64];
            let fill = (64 - absorbed % 64) % 64;
            mac.update(&ZEROS[..fill]);
            absorbed += fill;
        }
        Fingerprinter { mac, absorbed }
    }

    /// First [`FINGERPRINT_LEN`] hex characters of HMAC-SHA256(key, bindings ‖ 0x00 ‖ value).
    pub(crate) fn fp(&self, value: &[u8]) -> [u8; FINGERPRINT_LEN] {
        let mut mac = self.mac.clone();
        mac.update(&[0]);
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; FINGERPRINT_LEN];
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, slot) in out.iter_mut().enumerate() {
            let byte = digest[i / 2];
            let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
            *slot = HEX[usize::from(nibble)];
        }
        out
    }

    /// `airlock:masked:<fp>` padded with `*` to `len` bytes (never shorter than the marker).
    pub(crate) fn value_marker(&self, real: &[u8], len: usize, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(MARKER_PREFIX.as_bytes());
        out.extend_from_slice(&self.fp(real));
        let written = out.len() - start;
        if len > written {
            out.resize(start + len, PAD);
        }
    }

    /// The base64 of [`value_marker`](Self::value_marker)`(real, len)`, written without
    /// building the marker first: its first 27 bytes (prefix and fingerprint) are whole base64
    /// quanta, and each `***` of the padding after them encodes to `Kioq`.
    pub(crate) fn value_marker_base64(&self, real: &[u8], len: usize, out: &mut Vec<u8>) {
        const HEAD: usize = MARKER_PREFIX.len() + FINGERPRINT_LEN;
        const _: () = assert!(HEAD.is_multiple_of(3));
        let mut head = [0u8; HEAD];
        head[..MARKER_PREFIX.len()].copy_from_slice(MARKER_PREFIX.as_bytes());
        head[MARKER_PREFIX.len()..].copy_from_slice(&self.fp(real));
        // Nine whole quanta: a table lookup each (the general encoder costs more to set up).
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for q in head.chunks_exact(3) {
            let n = u32::from(q[0]) << 16 | u32::from(q[1]) << 8 | u32::from(q[2]);
            for shift in [18, 12, 6, 0] {
                out.push(ALPHABET[(n >> shift & 0x3f) as usize]);
            }
        }
        let pad = len.saturating_sub(HEAD);
        let start = out.len();
        out.resize(start + pad / 3 * 4, 0);
        for quantum in out[start..].chunks_exact_mut(4) {
            quantum.copy_from_slice(b"Kioq");
        }
        match pad % 3 {
            1 => out.extend_from_slice(b"Kg=="),
            2 => out.extend_from_slice(b"Kio="),
            _ => {}
        }
    }

    /// `[airlock:masked:<detector>:<fp>]`.
    pub(crate) fn text_marker(&self, detector: &str, real: &[u8], out: &mut Vec<u8>) {
        out.push(b'[');
        out.extend_from_slice(MARKER_PREFIX.as_bytes());
        out.extend_from_slice(detector.as_bytes());
        out.push(b':');
        out.extend_from_slice(&self.fp(real));
        out.push(b']');
    }
}

/// Appends one length-prefixed part to a binding (so that parts never run together).
pub(crate) fn push_part(binding: &mut Vec<u8>, part: &[u8]) {
    push_len(binding, part.len());
    binding.extend_from_slice(part);
}

/// Appends `n` as LEB128 (a prefix-free encoding: short parts cost one byte).
pub(crate) fn push_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprinter(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_base64_constant_is_right() {
        let engine = base64::engine::general_purpose::STANDARD;
        assert_eq!(engine.encode(MARKER_PREFIX), MARKER_PREFIX_BASE64);
        assert_eq!(base64_alignments()[0], MARKER_PREFIX_BASE64.as_bytes());
    }

    #[test]
    fn finds_markers_raw_and_base64_at_every_alignment() {
        let engine = base64::engine::general_purpose::STANDARD;
        for lead in ["", "x", "xy", "xyz", "wxyz"] {
            for tail in ["", "a", "ab", "abc"] {
                let text = format!("{lead}{MARKER_PREFIX}0123456789ab{tail}");
                assert!(contains_marker(text.as_bytes()));
                let encoded = engine.encode(text.as_bytes());
                assert!(contains_marker(encoded.as_bytes()), "{lead:?} {tail:?}");
            }
        }
        assert!(!contains_marker(b"{\"data\":{\"a\":\"aGVsbG8=\"}}"));
        assert!(!contains_marker(b"airlock:mask"));
    }

    #[test]
    fn value_marker_base64_is_the_base64_of_the_marker() {
        let engine = base64::engine::general_purpose::STANDARD;
        let fp = Fingerprinter::new(b"k").unwrap();
        for len in 0..200 {
            let mut marker = Vec::new();
            fp.value_marker(b"value", len, &mut marker);
            let mut out = b"x".to_vec();
            fp.value_marker_base64(b"value", len, &mut out);
            assert_eq!(&out[1..], engine.encode(&marker).as_bytes(), "len {len}");
        }
    }

    #[test]
    fn value_marker_pads_to_length_but_never_truncates() {
        let fp = Fingerprinter::new(b"k").unwrap();
        let mut out = Vec::new();
        fp.value_marker(b"v", 3, &mut out);
        assert_eq!(out.len(), MARKER_PREFIX.len() + FINGERPRINT_LEN);
        out.clear();
        fp.value_marker(b"v", 100, &mut out);
        assert_eq!(out.len(), 100);
        assert!(out.ends_with(b"***"));
    }
}
