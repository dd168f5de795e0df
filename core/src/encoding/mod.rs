//! compact-encoding: the byte format every Holepunch message and record uses.
//!
//! Encoding appends to a `Vec<u8>`; decoding reads from a [`Decoder`] over a borrowed slice and
//! returns a typed [`DecodeError`] on any malformed input (it never panics). As in JS, decoders accept
//! non-canonical varints and ignore trailing bytes unless a caller asks for [`Decoder::finish`].
//!
//! Message structs implement [`Encode`] and [`Decode`].

use thiserror::Error;

/// Largest integer JS encodes with `uint` (2^53 - 1).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// Largest element count `array` decodes (JS: 0x100000).
pub const MAX_ARRAY_LEN: u64 = 0x10_0000;

/// Why bytes could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("out of bounds: needed {needed} more bytes at offset {offset}")]
    OutOfBounds {
        /// Offset where the read started.
        offset: usize,
        /// Bytes that were missing.
        needed: usize,
    },
    /// An integer does not fit the target type or the JS safe range.
    #[error("integer out of range")]
    IntegerOutOfRange,
    /// An array is longer than JS accepts.
    #[error("array too large ({0} items)")]
    ArrayTooLarge(u64),
    /// A string is not valid UTF-8.
    #[error("invalid utf-8 string")]
    InvalidUtf8,
    /// Bytes remained after a value that must fill its input.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// A value is structurally invalid (bad tag, unknown version, ...).
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// A value that encodes to compact-encoding bytes.
pub trait Encode {
    /// Exact number of bytes [`Encode::encode`] appends (JS `preencode`).
    fn encoded_len(&self) -> usize;
    /// Append the encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Encode into a fresh buffer.
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }
}

/// A value that decodes from compact-encoding bytes.
pub trait Decode<'a>: Sized {
    /// Read one value.
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError>;
    /// Decode one value from `bytes`, ignoring trailing bytes as JS `c.decode` does.
    fn from_bytes(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        Self::decode(&mut Decoder::new(bytes))
    }
}

/// Cursor over input bytes.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Start reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }
    /// Current offset.
    pub fn position(&self) -> usize {
        self.pos
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
    /// Fail if bytes remain.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
    /// Take `n` raw bytes.
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::OutOfBounds {
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// Everything left (compact-encoding `raw`).
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    /// Exactly `N` raw bytes (`fixed(n)`, `fixed32`, `fixed64`).
    #[inline]
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    /// `uint8`.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    /// `uint16` (little-endian).
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.fixed()?))
    }
    /// `uint24` (little-endian).
    pub fn u24(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(3)?;
        Ok(b[0] as u32 | (b[1] as u32) << 8 | (b[2] as u32) << 16)
    }
    /// `uint32` (little-endian).
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.fixed()?))
    }
    /// `uint64` (little-endian, full 64-bit range; JS `uint64` also rejects values above 2^53-1,
    /// see [`Decoder::u64_safe`]).
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.fixed()?))
    }
    /// `uint64` limited to the JS safe range as JS decodes it.
    pub fn u64_safe(&mut self) -> Result<u64, DecodeError> {
        let n = self.u64()?;
        if n > MAX_SAFE_INTEGER {
            return Err(DecodeError::IntegerOutOfRange);
        }
        Ok(n)
    }
    /// Varint `uint`. Accepts non-canonical forms like JS. Values read with the `ff` prefix are
    /// returned as the full 64-bit value (JS would produce an imprecise float above 2^53).
    #[inline]
    pub fn uint(&mut self) -> Result<u64, DecodeError> {
        let a = self.u8()?;
        Ok(match a {
            0..=0xfc => a as u64,
            0xfd => self.u16()? as u64,
            0xfe => self.u32()? as u64,
            0xff => self.u64()?,
        })
    }
    /// Varint `uint` that must fit a `usize` (lengths, counts).
    #[inline]
    pub fn uint_usize(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.uint()?).map_err(|_| DecodeError::IntegerOutOfRange)
    }
    /// `buffer` / `uint8array`: varint length then bytes.
    pub fn buffer(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.uint()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::IntegerOutOfRange)?;
        self.take(n)
    }
    /// `optionalBuffer`: a zero length decodes to `None`.
    pub fn optional_buffer(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        let b = self.buffer()?;
        Ok(if b.is_empty() { None } else { Some(b) })
    }
    /// `string` / `utf8`.
    pub fn string(&mut self) -> Result<&'a str, DecodeError> {
        core::str::from_utf8(self.buffer()?).map_err(|_| DecodeError::InvalidUtf8)
    }
    /// `bool`: JS decodes `byte === 1`.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.u8()? == 1)
    }
    /// An `array` element count (rejects more than [`MAX_ARRAY_LEN`]).
    pub fn array_len(&mut self) -> Result<usize, DecodeError> {
        let n = self.uint()?;
        if n > MAX_ARRAY_LEN {
            return Err(DecodeError::ArrayTooLarge(n));
        }
        Ok(n as usize)
    }
    /// `array(enc)` of values implementing [`Decode`].
    pub fn array<T: Decode<'a>>(&mut self) -> Result<Vec<T>, DecodeError> {
        let n = self.array_len()?;
        // Do not trust the count for the allocation: each item takes at least one byte.
        let mut v = Vec::with_capacity(n.min(self.remaining()));
        for _ in 0..n {
            v.push(T::decode(self)?);
        }
        Ok(v)
    }
}

/// Bytes a varint `uint` takes.
#[inline]
pub fn uint_len(n: u64) -> usize {
    if n <= 0xfc {
        1
    } else if n <= 0xffff {
        3
    } else if n <= 0xffff_ffff {
        5
    } else {
        9
    }
}

/// Append a varint `uint`.
#[inline]
pub fn write_uint(out: &mut Vec<u8>, n: u64) {
    if n <= 0xfc {
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(0xfd);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n <= 0xffff_ffff {
        out.push(0xfe);
        out.extend_from_slice(&(n as u32).to_le_bytes());
    } else {
        out.push(0xff);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

/// Bytes `buffer` takes for `len` bytes of content.
#[inline]
pub fn buffer_len(len: usize) -> usize {
    uint_len(len as u64) + len
}

/// Append a `buffer` (length then bytes).
#[inline]
pub fn write_buffer(out: &mut Vec<u8>, b: &[u8]) {
    write_uint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Append an `optionalBuffer` (`None` or empty → `00`).
pub fn write_optional_buffer(out: &mut Vec<u8>, b: Option<&[u8]>) {
    write_buffer(out, b.unwrap_or(&[]));
}

/// Append a `string`.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    write_buffer(out, s.as_bytes());
}

/// Append `array(enc)` of [`Encode`] values.
pub fn write_array<T: Encode>(out: &mut Vec<u8>, items: &[T]) {
    write_uint(out, items.len() as u64);
    for it in items {
        it.encode(out);
    }
}

/// Bytes `array(enc)` takes.
pub fn array_len<T: Encode>(items: &[T]) -> usize {
    uint_len(items.len() as u64) + items.iter().map(Encode::encoded_len).sum::<usize>()
}

impl Encode for u64 {
    fn encoded_len(&self) -> usize {
        uint_len(*self)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, *self)
    }
}
impl Decode<'_> for u64 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.uint()
    }
}
impl Encode for [u8; 32] {
    fn encoded_len(&self) -> usize {
        32
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
}
impl Decode<'_> for [u8; 32] {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.fixed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_vectors() {
        for (n, hex_) in [
            (252u64, "fc"),
            (253, "fdfd00"),
            (65536, "fe00000100"),
            (1u64 << 32, "ff0000000001000000"),
        ] {
            let mut v = vec![];
            write_uint(&mut v, n);
            assert_eq!(hex::encode(&v), hex_);
            assert_eq!(uint_len(n), v.len());
            assert_eq!(Decoder::new(&v).uint().unwrap(), n);
        }
        // non-canonical and trailing bytes are accepted, as in JS
        assert_eq!(Decoder::new(&[0xfd, 0, 0]).uint().unwrap(), 0);
        assert_eq!(u64::from_bytes(&[1, 2]).unwrap(), 1);
        assert!(Decoder::new(&[0xfe, 0]).uint().is_err());
    }
}
