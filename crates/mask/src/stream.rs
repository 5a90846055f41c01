//! Streaming JSON: splits a body into units and masks each unit as it completes.
//!
//! Units are: each top-level document (one object, or one watch event per line), and, when a
//! top-level object turns out to be a list (`items: [...]`) or a `Table` (`rows: [...]`), each
//! array element on its own, plus the members before and after the array. Only the current unit
//! is buffered, so memory is bounded by the largest single item, whatever the body size.
//! Bytes between units (whitespace, commas, brackets) are copied straight through.

use std::sync::Arc;

use crate::json::{mask_prefix, mask_unit, prescan, Hint, PathBuf, Prescan};
use crate::{Engine, MaskError, Scope, StreamMasker};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Between top-level documents.
    Between,
    /// Buffering a top-level document (until it ends or turns out to be a list).
    Doc,
    /// A top-level scalar: buffered until the end of the body.
    Scalar,
    /// Inside the streamed array, between elements.
    Gap,
    /// Buffering one array element.
    Elem,
    /// Buffering the members after the streamed array.
    After,
}

/// Streaming masker for `application/json` bodies and watch streams.
pub(crate) struct JsonStream {
    eng: Arc<Engine>,
    scope: Scope,
    doc_hint: Hint,
    st: St,
    buf: Vec<u8>,
    /// Body offset of `buf[0]`, for error messages.
    buf_offset: u64,
    /// Body offset of the chunk being pushed.
    consumed: u64,
    depth: usize,
    in_str: bool,
    esc: bool,
    // Key tracking at depth 1 of a top-level object.
    top_obj: bool,
    expect_key: bool,
    in_key: bool,
    key_start: usize,
    key_end: usize,
    after_colon: bool,
    // The streamed array.
    elem_hint: Hint,
    need_comma: bool,
    after_comma: bool,
    scalar_elem: bool,
    /// Length of the unit the last successful `direct` call masked.
    direct_len: usize,
    /// The walker's path allocation, kept between units.
    path: PathBuf,
    peak: usize,
    failed: bool,
}

const ARRAY_DEPTH: usize = 2;

impl JsonStream {
    pub(crate) fn new(eng: Arc<Engine>, scope: Scope, doc_hint: Hint) -> Self {
        JsonStream {
            eng,
            scope,
            doc_hint,
            st: St::Between,
            buf: Vec::new(),
            buf_offset: 0,
            consumed: 0,
            depth: 0,
            in_str: false,
            esc: false,
            top_obj: false,
            expect_key: false,
            in_key: false,
            key_start: 0,
            key_end: 0,
            after_colon: false,
            elem_hint: Hint::Primary(None),
            need_comma: false,
            after_comma: false,
            scalar_elem: false,
            direct_len: 0,
            path: PathBuf::default(),
            peak: 0,
            failed: false,
        }
    }

    fn err(&self, at: usize, reason: &'static str) -> MaskError {
        MaskError::json(self.consumed + at as u64, reason)
    }

    fn run(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), MaskError> {
        let mut i = 0;
        while i < chunk.len() {
            i = match self.st {
                St::Between => self.between(chunk, i, out)?,
                St::Doc | St::Elem | St::After => self.scan(chunk, i, out)?,
                St::Scalar => {
                    self.buf.extend_from_slice(&chunk[i..]);
                    chunk.len()
                }
                St::Gap => self.gap(chunk, i, out)?,
            };
        }
        self.peak = self.peak.max(self.buf.len());
        self.consumed += chunk.len() as u64;
        Ok(())
    }

    fn between(
        &mut self,
        chunk: &[u8],
        mut i: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, MaskError> {
        while let Some(&c) = chunk.get(i) {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' => {
                    out.push(c);
                    i += 1;
                }
                b'{' if self.direct(chunk, i, false, out)? => {
                    // A whole document (a watch event, or a small object such as one pod) in
                    // this chunk, already masked without copying it into `buf` first.
                    i += self.direct_len;
                }
                b'{' | b'[' => {
                    self.start_unit(St::Doc, i);
                    self.top_obj = c == b'{';
                    self.depth = 0;
                    return Ok(i);
                }
                _ => {
                    self.start_unit(St::Scalar, i);
                    return Ok(i);
                }
            }
        }
        Ok(i)
    }

    fn start_unit(&mut self, st: St, at: usize) {
        self.st = st;
        self.buf.clear();
        self.buf_offset = self.consumed + at as u64;
        self.in_str = false;
        self.esc = false;
        self.expect_key = false;
        self.in_key = false;
        self.after_colon = false;
    }

    fn gap(&mut self, chunk: &[u8], mut i: usize, out: &mut Vec<u8>) -> Result<usize, MaskError> {
        while let Some(&c) = chunk.get(i) {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' => out.push(c),
                b',' if self.need_comma => {
                    self.need_comma = false;
                    self.after_comma = true;
                    out.push(c);
                }
                b']' if !self.after_comma => {
                    out.push(c);
                    self.depth = 1;
                    self.start_unit(St::After, i + 1);
                    return Ok(i + 1);
                }
                _ if self.need_comma => return Err(self.err(i, "expected ',' or ']'")),
                b',' | b']' => return Err(self.err(i, "expected a value")),
                b'{' | b'[' if self.direct(chunk, i, true, out)? => {
                    // The whole element was in this chunk and is already masked.
                    let n = self.direct_len;
                    self.need_comma = true;
                    self.after_comma = false;
                    i += n;
                    continue;
                }
                _ => {
                    self.start_unit(St::Elem, i);
                    self.after_comma = false;
                    self.depth = ARRAY_DEPTH;
                    self.scalar_elem = !matches!(c, b'{' | b'[');
                    if self.scalar_elem && c != b'"' {
                        return self.bare_scalar(chunk, i, out);
                    }
                    return Ok(i);
                }
            }
            i += 1;
        }
        Ok(i)
    }

    /// Fast path: masks a unit that lies entirely in `chunk` without copying it into `buf`.
    /// Returns false (and leaves `out` as it was) when the chunk ends inside the unit; the
    /// caller then buffers it. Work wasted that way is bounded by one chunk per unit.
    fn direct(
        &mut self,
        chunk: &[u8],
        i: usize,
        elem: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, MaskError> {
        let before = out.len();
        let offset = self.consumed + i as u64;
        let hint = if elem {
            &self.elem_hint
        } else {
            &self.doc_hint
        };
        match mask_prefix(
            &self.eng,
            &self.scope,
            &chunk[i..],
            offset,
            hint,
            &mut self.path,
            out,
        ) {
            Ok(n) => {
                self.direct_len = n;
                Ok(true)
            }
            Err(MaskError::Truncated) => {
                out.truncate(before);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// A number or literal element: ends at a delimiter, which is left for `gap`.
    fn bare_scalar(
        &mut self,
        chunk: &[u8],
        i: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, MaskError> {
        let n = chunk[i..]
            .iter()
            .take_while(|c| !matches!(c, b',' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        self.buf.extend_from_slice(&chunk[i..i + n]);
        if i + n < chunk.len() {
            self.finish_elem(out)?;
        }
        Ok(i + n)
    }

    /// Scans unit bytes into `buf`, watching depth, strings and (for a top-level object) keys.
    /// Bytes are copied into `buf` in runs (`seg..i`), not one by one.
    fn scan(&mut self, chunk: &[u8], mut i: usize, out: &mut Vec<u8>) -> Result<usize, MaskError> {
        if self.st == St::Elem && self.scalar_elem && !self.in_str && !self.buf.is_empty() {
            // A bare scalar element continued from the previous chunk.
            return self.bare_scalar(chunk, i, out);
        }
        let track = self.st == St::Doc && self.top_obj;
        let mut seg = i;
        while i < chunk.len() {
            if self.in_str {
                if self.esc {
                    self.esc = false;
                    i += 1;
                    continue;
                }
                // Short strings: a plain loop; long ones: SIMD search.
                let short_end = (i + 24).min(chunk.len());
                let mut j = i;
                while j < short_end && chunk[j] != b'"' && chunk[j] != b'\\' {
                    j += 1;
                }
                let found = if j < short_end {
                    Some(j)
                } else {
                    memchr::memchr2(b'"', b'\\', &chunk[short_end..]).map(|k| k + short_end)
                };
                let Some(at) = found else {
                    i = chunk.len();
                    break;
                };
                i = at + 1;
                if chunk[at] == b'\\' {
                    self.esc = true;
                    continue;
                }
                self.in_str = false;
                if self.in_key {
                    self.in_key = false;
                    self.key_end = self.buf.len() + (i - seg);
                }
                if self.st == St::Elem && self.scalar_elem {
                    self.buf.extend_from_slice(&chunk[seg..i]);
                    self.finish_elem(out)?;
                    return Ok(i);
                }
                continue;
            }
            let c = chunk[i];
            i += 1;
            match c {
                b'"' => {
                    self.in_str = true;
                    if track && self.depth == 1 {
                        if self.expect_key {
                            self.expect_key = false;
                            self.in_key = true;
                            self.key_start = self.buf.len() + (i - 1 - seg);
                        } else {
                            self.after_colon = false;
                        }
                    }
                }
                b'{' | b'[' => {
                    if track && self.depth == 1 && self.after_colon {
                        self.after_colon = false;
                        if c == b'[' {
                            self.buf.extend_from_slice(&chunk[seg..i]);
                            seg = i;
                            if self.try_stream_array(out)? {
                                return Ok(i);
                            }
                        }
                    }
                    self.depth += 1;
                    if track && self.depth == 1 {
                        self.expect_key = true;
                    }
                }
                b'}' | b']' => {
                    let floor = if self.st == St::Elem { ARRAY_DEPTH } else { 0 };
                    if self.depth <= floor {
                        return Err(self.err(i - 1, "unbalanced bracket"));
                    }
                    self.depth -= 1;
                    if self.depth == floor {
                        self.buf.extend_from_slice(&chunk[seg..i]);
                        match self.st {
                            St::Elem => self.finish_elem(out)?,
                            St::After => self.finish_after(out)?,
                            _ => self.finish_doc(out)?,
                        }
                        return Ok(i);
                    }
                }
                b':' if track && self.depth == 1 => self.after_colon = true,
                b',' if track && self.depth == 1 => self.expect_key = true,
                b' ' | b'\t' | b'\n' | b'\r' => {}
                _ if track && self.depth == 1 => self.after_colon = false,
                _ => {}
            }
        }
        self.buf.extend_from_slice(&chunk[seg..i]);
        Ok(i)
    }

    /// At `"items": [` or `"rows": [` of a top-level object (the `[` is the last byte of
    /// `buf`): masks and emits the members before it and switches to per-element streaming.
    fn try_stream_array(&mut self, out: &mut Vec<u8>) -> Result<bool, MaskError> {
        let key =
            &self.buf[self.key_start + 1..self.key_end.saturating_sub(1).max(self.key_start + 1)];
        let rows = match key {
            b"items" => false,
            b"rows" => true,
            _ => return Ok(false),
        };
        // Members before the key, as a complete object: `{a, b, ` + `}`.
        let mut t = self.key_start;
        while t > 0 && matches!(self.buf[t - 1], b' ' | b'\t' | b'\n' | b'\r') {
            t -= 1;
        }
        if t > 0 && self.buf[t - 1] == b',' {
            t -= 1;
            while t > 0 && matches!(self.buf[t - 1], b' ' | b'\t' | b'\n' | b'\r') {
                t -= 1;
            }
        }
        let mut head = self.buf[..t].to_vec();
        head.push(b'}');
        let info = prescan(&head, 0, self.buf_offset, Prescan::Full)?;
        let kind = info.kind.as_deref();
        let hint = match (rows, kind) {
            (true, Some("Table")) => Hint::TableRow,
            (true, _) => return Ok(false),
            (false, None) => Hint::Primary(None),
            (false, Some(k)) => match k.strip_suffix("List") {
                Some("") => Hint::Primary(None),
                Some(item) => Hint::Primary(Some(item.into())),
                None => return Ok(false),
            },
        };
        let mut masked = Vec::with_capacity(head.len());
        mask_unit(
            &self.eng,
            &self.scope,
            &head,
            self.buf_offset,
            &self.doc_hint,
            &mut masked,
        )?;
        if masked.pop() != Some(b'}') {
            return Err(MaskError::json(self.buf_offset, "expected '}'"));
        }
        out.extend_from_slice(&masked);
        out.extend_from_slice(&self.buf[t..]);
        self.elem_hint = hint;
        self.st = St::Gap;
        self.depth = ARRAY_DEPTH;
        self.need_comma = false;
        self.after_comma = false;
        self.peak = self.peak.max(self.buf.len());
        self.buf.clear();
        Ok(true)
    }

    fn finish_doc(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        self.peak = self.peak.max(self.buf.len());
        mask_unit(
            &self.eng,
            &self.scope,
            &self.buf,
            self.buf_offset,
            &self.doc_hint,
            out,
        )?;
        self.buf.clear();
        self.st = St::Between;
        Ok(())
    }

    fn finish_elem(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        self.peak = self.peak.max(self.buf.len());
        mask_unit(
            &self.eng,
            &self.scope,
            &self.buf,
            self.buf_offset,
            &self.elem_hint,
            out,
        )?;
        self.buf.clear();
        self.st = St::Gap;
        self.depth = ARRAY_DEPTH;
        self.need_comma = true;
        self.scalar_elem = false;
        Ok(())
    }

    /// The members after the array and the closing `}`.
    fn finish_after(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        self.peak = self.peak.max(self.buf.len());
        let lead = self
            .buf
            .iter()
            .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        match self.buf.get(lead) {
            Some(b'}') if lead + 1 == self.buf.len() => out.extend_from_slice(&self.buf),
            Some(b',') => {
                let mut tail = Vec::with_capacity(self.buf.len() - lead);
                tail.push(b'{');
                tail.extend_from_slice(&self.buf[lead + 1..]);
                let mut masked = Vec::with_capacity(tail.len());
                mask_unit(
                    &self.eng,
                    &self.scope,
                    &tail,
                    self.buf_offset,
                    &self.doc_hint,
                    &mut masked,
                )?;
                out.extend_from_slice(&self.buf[..=lead]);
                out.extend_from_slice(masked.get(1..).unwrap_or_default());
            }
            _ => {
                return Err(MaskError::json(
                    self.buf_offset + lead as u64,
                    "expected ',' or '}'",
                ))
            }
        }
        self.buf.clear();
        self.st = St::Between;
        self.depth = 0;
        Ok(())
    }
}

impl StreamMasker for JsonStream {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), MaskError> {
        if self.failed {
            return Err(MaskError::Poisoned);
        }
        let r = self.run(chunk, out);
        self.failed = r.is_err();
        r
    }

    fn flush(&mut self, _out: &mut Vec<u8>) -> Result<(), MaskError> {
        // Everything that can be emitted is emitted as soon as its unit completes.
        if self.failed {
            return Err(MaskError::Poisoned);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        if self.failed {
            return Err(MaskError::Poisoned);
        }
        self.failed = true;
        match self.st {
            St::Between => {}
            St::Scalar => {
                self.peak = self.peak.max(self.buf.len());
                mask_unit(
                    &self.eng,
                    &self.scope,
                    &self.buf,
                    self.buf_offset,
                    &self.doc_hint,
                    out,
                )?;
                self.buf.clear();
            }
            St::Elem if self.scalar_elem && !self.in_str => return Err(MaskError::Truncated),
            _ => return Err(MaskError::Truncated),
        }
        self.failed = false;
        self.st = St::Between;
        Ok(())
    }

    fn peak_buffered(&self) -> usize {
        self.peak
    }
}
