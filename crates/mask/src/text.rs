//! Streaming text (pod logs, exec/attach output): detectors across chunk boundaries.
//!
//! Guarantee: bytes are emitted as soon as they cannot be part of a secret that is still
//! arriving. The masker holds back only
//!
//! * the tail of the current (unterminated) line from the first detector keyword that no
//!   complete match accounts for (extended back over the token it sits in, for keywords such
//!   as `://`), if that keyword is within the last [`MAX_HOLD`] bytes;
//! * a tail that is the beginning of a keyword (`...PASS` may become `PASSWORD=`);
//! * a detector match that touches the end of the buffered text (it may still grow).
//!
//! A line longer than [`WINDOW`] is cut there even if a match touches the end; a secret
//! straddling that cut is masked only up to it. A PEM private key is masked from its BEGIN
//! line, and everything up to its END line (at most [`MAX_PEM_BODY`] bytes) is dropped as it
//! arrives, so a key never needs to be buffered. Lines never need to be complete for a keyword-free text to flow, which keeps
//! interactive shells responsive; a prompt ending in a keyword (`Password: `) waits for the
//! next newline (or [`MAX_HOLD`] more bytes).

use std::sync::Arc;

use regex::bytes::Regex;

use crate::detect::Selection;
use crate::{
    marker::{Fingerprinter, PAD},
    Engine, MaskError, StreamMasker,
};

/// Longest tail held back after a keyword.
pub const MAX_HOLD: usize = 4096;

/// Longest text held back in any case.
pub const WINDOW: usize = 64 * 1024;

/// Bytes kept while dropping a PEM body, so an END line split across chunks is still found.
const PEM_TAIL: usize = 80;

/// Most bytes dropped after a BEGIN line without an END: real keys are far smaller (an
/// RSA-8192 key is under 7 KiB); a quoted BEGIN line in a log must not swallow the rest.
pub const MAX_PEM_BODY: usize = 64 * 1024;

fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'_' | b'-' | b'.' | b'+' | b'/' | b'=' | b'~' | b'"' | b'\''
        )
}

/// Streaming masker for plain text.
pub(crate) struct TextStream {
    eng: Arc<Engine>,
    /// Fingerprints of this stream (bound to its request's object, or its own).
    fp: Fingerprinter,
    pending: Vec<u8>,
    in_pem: bool,
    /// Bytes dropped since the BEGIN line.
    pem_dropped: usize,
    pem_end: Regex,
    peak: usize,
    failed: bool,
    /// Replace every masked span by exactly as many bytes (see [`crate::Masker::stream_same_length`]).
    same_length: bool,
}

impl TextStream {
    pub(crate) fn new(
        eng: Arc<Engine>,
        fp: Fingerprinter,
        pem_end: Regex,
        same_length: bool,
    ) -> Self {
        TextStream {
            eng,
            fp,
            pending: Vec::new(),
            in_pem: false,
            pem_dropped: 0,
            pem_end,
            peak: 0,
            failed: false,
            same_length,
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, fin: bool) {
        loop {
            if self.in_pem {
                let end = self.pem_end.find(&self.pending).map(|m| m.end());
                // In an archive the key's file ends at the first NUL (tar's padding), END or not.
                let nul = match self.same_length {
                    true => memchr::memchr(0, &self.pending).filter(|&n| end.is_none_or(|e| n < e)),
                    false => None,
                };
                match nul.or(end) {
                    Some(end) => {
                        self.pending.drain(..end);
                        if self.same_length {
                            out.resize(out.len() + end, PAD);
                        }
                        self.in_pem = false;
                    }
                    None => {
                        let keep = if fin {
                            0
                        } else {
                            PEM_TAIL.min(self.pending.len())
                        };
                        let drop = self.pending.len() - keep;
                        self.pending.drain(..drop);
                        if self.same_length {
                            out.resize(out.len() + drop, PAD);
                        }
                        self.pem_dropped += drop;
                        if self.pem_dropped <= MAX_PEM_BODY || fin {
                            return;
                        }
                        // No END after this much: not a key body after all; resume masking.
                        self.in_pem = false;
                    }
                }
            }
            if self.pending.is_empty() {
                return;
            }
            let (cut, open) = step(
                &self.eng,
                &self.fp,
                &self.pending,
                fin,
                self.same_length,
                out,
            );
            self.pending.drain(..cut);
            if !open {
                return;
            }
            self.in_pem = true;
            self.pem_dropped = 0;
        }
    }
}

/// Masks and writes the prefix of `text` that is safe to emit (all of it when `fin`).
/// Returns how many bytes of `text` that was, and whether it ends in an unterminated PEM key
/// (whose body must then be dropped as it arrives). `same_length`: each marker is cut or
/// padded with `*` to the length of what it replaces.
fn step(
    eng: &Engine,
    fp: &Fingerprinter,
    text: &[u8],
    fin: bool,
    same_length: bool,
    out: &mut Vec<u8>,
) -> (usize, bool) {
    // In an archive a NUL ends a file's text (tar pads each file with NULs up to the next
    // header): no match may run across one, or a secret's mask would swallow the header
    // after it and the text after a clipped match would go unscanned. So everything up to
    // the last NUL is complete, and each piece between NULs is masked on its own.
    if same_length {
        if let Some(last) = memchr::memrchr(0, text) {
            for piece in text[..last].split(|&b| b == 0) {
                step_within(eng, fp, piece, true, true, out);
                out.push(0);
            }
            let (cut, open) = step_within(eng, fp, &text[last + 1..], fin, true, out);
            return (last + 1 + cut, open);
        }
    }
    step_within(eng, fp, text, fin, same_length, out)
}

/// [`step`] over text without NULs (or outside an archive).
fn step_within(
    eng: &Engine,
    fp: &Fingerprinter,
    text: &[u8],
    fin: bool,
    same_length: bool,
    out: &mut Vec<u8>,
) -> (usize, bool) {
    let scan = eng.detectors.scan(text, &Selection::All);
    let cut = if fin {
        text.len()
    } else {
        safe_cut(eng, text, &scan)
    };
    if cut == 0 {
        return (0, false);
    }
    let mut open = false;
    let mut at = 0;
    for h in scan.hits.iter().filter(|h| h.end <= cut) {
        out.extend_from_slice(&text[at..h.start]);
        let start = out.len();
        fp.text_marker(eng.detectors.id(h.detector), &text[h.start..h.end], out);
        if same_length {
            out.resize(start + (h.end - h.start), PAD);
        }
        at = h.end;
        open |= scan.pem_open && h.end == text.len();
    }
    out.extend_from_slice(&text[at..cut]);
    (cut, open)
}

/// Where the emitted prefix of `text` must end (see the module docs).
fn safe_cut(eng: &Engine, text: &[u8], scan: &crate::detect::Scan) -> usize {
    let len = text.len();
    if scan.pem_open {
        // The key is masked to the end of the text and its rest dropped as it arrives.
        return len;
    }
    let line_start = memchr::memrchr(b'\n', text).map_or(0, |n| n + 1);
    let window_start = line_start.max(len.saturating_sub(MAX_HOLD));
    // A match may start before its keyword: a URL's scheme before `://`, a quote before
    // `"private_key"`. Keywords that start with punctuation extend back over the token they
    // sit in; word keywords only over quotes.
    let back = |mut s: usize| {
        let floor = len.saturating_sub(MAX_HOLD).max(line_start);
        let word = text.get(s).is_some_and(|c| c.is_ascii_alphanumeric());
        while s > floor
            && (if word {
                matches!(text[s - 1], b'"' | b'\'')
            } else {
                is_token_byte(text[s - 1])
            })
        {
            s -= 1;
        }
        s
    };
    let mut cut = len;
    // The earliest keyword of the partial line that no complete match accounts for: its
    // detector may still match once more text arrives (a JWT's second segment, a value).
    let resolved = |k: usize| {
        scan.hits
            .iter()
            .any(|h| h.match_start <= k && k < h.end && h.end < len)
    };
    // (No keyword anywhere in the text means none in the partial line either.)
    let line_window = if scan.no_keywords {
        &[][..]
    } else {
        &text[window_start..]
    };
    if let Some(k) = eng
        .detectors
        .keyword_starts(line_window)
        .map(|k| k + window_start)
        .filter(|&k| !resolved(k))
        .min()
    {
        cut = cut.min(back(k));
    }
    if let Some(p) = eng.detectors.partial_keyword_suffix(&text[line_start..]) {
        cut = cut.min(back(p + line_start));
    }
    if eng.detectors.has_keywordless() {
        // Without keywords nothing says where a secret may start: hold the partial line.
        cut = cut.min(window_start);
    }
    // A match that is still growing, or that the cut would split, stays whole.
    loop {
        let before = cut;
        for h in &scan.hits {
            if h.match_start < cut && (h.end == len || h.end > cut) {
                cut = h.match_start;
            }
        }
        if cut == before {
            break;
        }
    }
    if cut == 0 && len > WINDOW {
        // Bounded memory beats completeness: emit the window (masked as far as it goes).
        return len;
    }
    cut
}

impl StreamMasker for TextStream {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), MaskError> {
        if self.failed {
            return Err(MaskError::Poisoned);
        }
        if self.pending.is_empty() && !self.in_pem {
            // Nothing held: mask straight from the chunk and keep only what must wait.
            let (cut, open) = step(&self.eng, &self.fp, chunk, false, self.same_length, out);
            self.pending.extend_from_slice(&chunk[cut..]);
            self.peak = self.peak.max(self.pending.len());
            if open {
                self.in_pem = true;
                self.pem_dropped = 0;
                self.emit(out, false);
            }
            return Ok(());
        }
        self.pending.extend_from_slice(chunk);
        self.peak = self.peak.max(self.pending.len());
        self.emit(out, false);
        Ok(())
    }

    fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        if self.failed {
            return Err(MaskError::Poisoned);
        }
        self.emit(out, false);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        if self.failed {
            return Err(MaskError::Poisoned);
        }
        self.emit(out, true);
        Ok(())
    }

    fn release(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        // `emit(.., true)` masks what it holds and keeps the PEM state: a key body still
        // arriving keeps being dropped.
        self.finish(out)
    }

    fn peak_buffered(&self) -> usize {
        self.peak
    }
}
