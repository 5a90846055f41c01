//! Header block encoding and the per-direction zlib contexts.

use super::{Headers, SPDY3_DICTIONARY};
use crate::{Error, Result};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// Largest decompressed header block accepted. Kubernetes blocks are a few hundred bytes; the
/// cap stops a zlib bomb from a peer.
pub const MAX_HEADER_BLOCK_LEN: usize = 256 * 1024;

/// Most pairs accepted in one block, for the same reason.
const MAX_HEADER_PAIRS: usize = 1024;

/// Serialises headers into an uncompressed SPDY/3 header block. Names are lowercased and
/// values for repeated names joined with NUL: spdystream rejects a block that repeats a name.
pub fn encode_header_block(headers: &Headers) -> Vec<u8> {
    let mut grouped: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        let name = name.to_ascii_lowercase();
        match grouped.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push('\0');
                v.push_str(value);
            }
            None => grouped.push((name, value.to_owned())),
        }
    }
    let mut out = Vec::with_capacity(
        4 + grouped
            .iter()
            .map(|(n, v)| 8 + n.len() + v.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(&(grouped.len() as u32).to_be_bytes());
    for (name, value) in &grouped {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Parses an uncompressed SPDY/3 header block; NUL-joined values become separate pairs.
pub fn decode_header_block(block: &[u8]) -> Result<Headers> {
    let mut rest = block;
    let count = take_u32(&mut rest)? as usize;
    if count > MAX_HEADER_PAIRS {
        return Err(Error::HeaderBlock("too many header pairs"));
    }
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = take_str(&mut rest)?;
        let value = take_str(&mut rest)?;
        if name.is_empty() {
            return Err(Error::HeaderBlock("empty header name"));
        }
        for v in value.split('\0') {
            headers.push(name.clone(), v);
        }
    }
    if !rest.is_empty() {
        return Err(Error::HeaderBlock("trailing bytes after header pairs"));
    }
    Ok(headers)
}

fn take_u32(rest: &mut &[u8]) -> Result<u32> {
    let (head, tail) = rest
        .split_first_chunk::<4>()
        .ok_or(Error::HeaderBlock("truncated length"))?;
    *rest = tail;
    Ok(u32::from_be_bytes(*head))
}

fn take_str(rest: &mut &[u8]) -> Result<String> {
    let len = take_u32(rest)? as usize;
    if len > rest.len() {
        return Err(Error::HeaderBlock("truncated string"));
    }
    let (s, tail) = rest.split_at(len);
    *rest = tail;
    String::from_utf8(s.to_vec()).map_err(|_| Error::HeaderBlock("header is not utf-8"))
}

// === impl HeaderCompressor ===

/// The deflate side of one direction of a connection.
pub struct HeaderCompressor {
    z: Compress,
}

impl std::fmt::Debug for HeaderCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderCompressor").finish_non_exhaustive()
    }
}

impl HeaderCompressor {
    /// A fresh context primed with the SPDY/3 dictionary.
    pub fn new() -> Result<Self> {
        let mut z = Compress::new(Compression::default(), true);
        // The dictionary must be set before the first byte is deflated: its id goes into the
        // zlib header the peer checks.
        z.set_dictionary(SPDY3_DICTIONARY)?;
        Ok(Self { z })
    }

    /// Encodes and deflates `headers`, ending with a sync flush so the peer can inflate the
    /// block on its own.
    pub fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>> {
        self.compress_raw(&encode_header_block(headers))
    }

    /// Deflates an already encoded block.
    pub fn compress_raw(&mut self, raw: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let start = self.z.total_in();
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let consumed = (self.z.total_in() - start) as usize;
            let before = (self.z.total_in(), self.z.total_out());
            self.z
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)?;
            let consumed = (self.z.total_in() - start) as usize;
            // A sync flush is complete once deflate returns with output space to spare.
            if consumed == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if (self.z.total_in(), self.z.total_out()) == before && out.len() < out.capacity() {
                return Err(Error::HeaderBlock("deflate made no progress"));
            }
        }
    }
}

// === impl HeaderDecompressor ===

/// The inflate side of one direction of a connection.
pub struct HeaderDecompressor {
    z: Decompress,
}

impl std::fmt::Debug for HeaderDecompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecompressor").finish_non_exhaustive()
    }
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    /// A fresh context; the dictionary is supplied when zlib asks for it.
    pub fn new() -> Self {
        Self {
            z: Decompress::new(true),
        }
    }

    /// Inflates one compressed block and parses it.
    pub fn decompress(&mut self, block: &[u8]) -> Result<Headers> {
        decode_header_block(&self.decompress_raw(block)?)
    }

    /// Inflates one compressed block without parsing it.
    pub fn decompress_raw(&mut self, block: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut consumed = 0usize;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK_LEN {
                    return Err(Error::HeaderBlock("decompressed header block too large"));
                }
                out.reserve(out.len().max(256));
            }
            let before = (self.z.total_in(), self.z.total_out());
            let result = self
                .z
                .decompress_vec(&block[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.z.total_in() - before.0) as usize;
            match result {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z.set_dictionary(SPDY3_DICTIONARY)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            if consumed >= block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if (self.z.total_in(), self.z.total_out()) == before {
                if consumed >= block.len() {
                    return Ok(out);
                }
                return Err(Error::HeaderBlock("inflate made no progress"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_spdy3_one() {
        // Length and Adler-32 (the zlib dictionary id) of the draft-3 dictionary.
        assert_eq!(SPDY3_DICTIONARY.len(), 1423);
        let (mut a, mut b) = (1u32, 0u32);
        for &x in SPDY3_DICTIONARY {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[test]
    fn header_block_round_trip_joins_repeated_names() {
        let h = Headers::new()
            .with("StreamType", "stdout")
            .with("x-multi", "a")
            .with("X-Multi", "b");
        let raw = encode_header_block(&h);
        let back = decode_header_block(&raw).unwrap();
        let got: Vec<_> = back.iter().collect();
        assert_eq!(
            got,
            vec![("streamtype", "stdout"), ("x-multi", "a"), ("x-multi", "b")]
        );
    }

    #[test]
    fn compression_contexts_persist_across_blocks() {
        let mut c = HeaderCompressor::new().unwrap();
        let mut d = HeaderDecompressor::new();
        for i in 0..5 {
            let h = Headers::new()
                .with("streamtype", "data")
                .with("port", format!("80{i}"))
                .with("requestid", i.to_string());
            let block = c.compress(&h).unwrap();
            assert_eq!(
                d.decompress(&block).unwrap(),
                decode_header_block(&encode_header_block(&h)).unwrap()
            );
        }
    }

    #[test]
    fn first_block_carries_the_dictionary_id() {
        let mut c = HeaderCompressor::new().unwrap();
        let block = c.compress(&Headers::new()).unwrap();
        // CMF/FLG with FDICT set, then the big-endian dictionary id.
        assert_eq!(block[1] & 0x20, 0x20);
        assert_eq!(&block[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
    }

    #[test]
    fn truncated_blocks_are_rejected() {
        for raw in [&[0u8, 0, 0][..], &[0, 0, 0, 1, 0, 0, 0, 9, b'a'][..]] {
            assert!(decode_header_block(raw).is_err());
        }
    }
}
