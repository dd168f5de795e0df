//! compact-encoding: the byte format every Holepunch message and record uses.
//!
//! Encoding appends to a `Vec<u8>`; decoding reads from a [`Decoder`] over a borrowed slice and
//! returns a typed [`DecodeError`] on any malformed input (it never panics). As in JS, decoders accept
//! non-canonical varints and ignore trailing bytes unless a caller asks for [`Decoder::finish`].
//!
//! Message structs implement [`Encode`] and [`Decode`].
//!
//! Every codec of `compact-encoding` 3.5.2 has a counterpart here. Decoding is a method of
//! [`Decoder`]; encoding is a `write_*` function appending to a `Vec<u8>`, with a matching `*_len`
//! function where the size is not obvious (JS `preencode`). Map from JS names:
//!
//! | JS codec | Rust |
//! |---|---|
//! | `uint`, `int` | [`write_uint`]/[`Decoder::uint`], [`write_int`]/[`Decoder::int`] |
//! | `uint8..uint64`, `int8..int64` | [`write_u8`]..[`write_u64`], [`write_int8`]..[`write_int64`] and the same-named decoder methods |
//! | `uint32be`, `uint64be` | [`write_u32_be`], [`write_u64_be`], [`Decoder::u32_be`], [`Decoder::u64_be_safe`] |
//! | `biguint64`, `bigint64`, `biguint`, `bigint` | [`write_u64`], [`write_bigint64`], [`BigUint`], [`BigInt`] |
//! | `float32`, `float64` | [`write_f32`], [`write_f64`] |
//! | `bool`, `buffer`, `uint8array`, `binary`, `arraybuffer`, `optionalBuffer` | [`Decoder::bool`], [`write_buffer`], [`write_optional_buffer`] |
//! | `string`/`utf8`, `ascii`, `hex`, `base64`, `utf16le`/`ucs2`, `string.fixed(n)` | [`write_string`], [`write_ascii`], [`write_hex`], [`write_base64`], [`write_utf16le`], [`write_fixed_string`] |
//! | `fixed(n)`, `fixed32`, `fixed64` | `[u8; N]` ([`Decoder::fixed`]) |
//! | `array`, `frame`, `record`, `stringRecord` | [`write_array`], [`write_array_with`], [`write_frame`], [`write_record_with`] |
//! | typed arrays, `bitarray` | [`write_typed_array`]/[`Decoder::typed_array`], [`write_bitarray`] |
//! | `ipv4`, `ipv6`, `ip`, `ipAddress`, `ipv4Address`, `ipv6Address`, `port` | `Ipv4Addr`, `Ipv6Addr`, `IpAddr`, `SocketAddr`, `SocketAddrV4`, `SocketAddrV6`, `u16` |
//! | `lexint` | [`write_lexint`], [`Decoder::lexint`] |
//! | `json`, `ndjson`, `raw.*` | [`write_json`], [`write_ndjson`], [`write_raw_json`], [`Decoder::rest`] and `raw_*` decoders |
//! | `date`, `any`, `none` | [`write_date`], [`AnyValue`], `()` |

use thiserror::Error;

mod any;
mod collections;
mod json;
mod lexint;
mod net;
mod numbers;
mod text;
#[cfg(test)]
mod vectors_tests;

pub use any::{AnyValue, MAX_ANY_DEPTH};
pub use collections::{
    bitarray_len, typed_array_len, write_array_with, write_bitarray, write_frame,
    write_record_with, write_typed_array, TypedElement,
};
pub use json::{js_number_to_string, json_stringify, write_json, write_ndjson, write_raw_json};
pub use lexint::{lexint_len, write_lexint};
pub use net::ipv6_js_string;
pub use numbers::{
    int_len, try_write_int, try_write_uint, write_bigint64, write_date, write_f32, write_f64,
    write_int, write_int16, write_int24, write_int32, write_int40, write_int48, write_int56,
    write_int64, write_int8, write_u16, write_u24, write_u32, write_u32_be, write_u40, write_u48,
    write_u56, write_u64, write_u64_be, write_u8, zigzag_decode, zigzag_encode, BigInt, BigUint,
    MAX_SAFE_INT, MIN_SAFE_INT,
};
pub use text::{
    ascii_len, base64_len, hex_len, utf16le_len, write_ascii, write_base64, write_fixed_string,
    write_hex, write_raw_ascii, write_raw_base64, write_raw_hex, write_raw_utf16le, write_utf16le,
};

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

/// Why a value could not be encoded the way JS encodes it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// An integer outside the range JS accepts for the codec (JS throws `use biguint`/`use bigint`).
    #[error("integer out of range for {0}")]
    IntegerOutOfRange(&'static str),
    /// A `hex` string with an odd length or a non-hex digit.
    #[error("invalid hex string")]
    InvalidHex,
    /// A `base64` string with a character outside both base64 alphabets.
    #[error("invalid base64 string")]
    InvalidBase64,
    /// An `ascii` string with a character above U+00FF (JS would write a truncated byte).
    #[error("string is not latin1/ascii")]
    InvalidAscii,
    /// A string longer than its `string.fixed(n)` slot.
    #[error("string of {len} bytes does not fit {max}")]
    TooLong {
        /// Encoded byte length of the value.
        len: usize,
        /// The fixed size.
        max: usize,
    },
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
    /// Varint `uint`. Accepts non-canonical forms like JS and, like JS, rejects values above
    /// 2^53-1 (`ff ffffffffffffff00` → [`DecodeError::IntegerOutOfRange`]); see
    /// [`Decoder::uint_full`] for the whole 64-bit range.
    #[inline]
    pub fn uint(&mut self) -> Result<u64, DecodeError> {
        let n = self.uint_full()?;
        if n > MAX_SAFE_INTEGER {
            return Err(DecodeError::IntegerOutOfRange);
        }
        Ok(n)
    }
    /// Varint `uint` over the full 64-bit range (a Rust extension: JS rejects values above
    /// 2^53-1, which [`write_uint`] can produce).
    #[inline]
    pub fn uint_full(&mut self) -> Result<u64, DecodeError> {
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

/// Append a varint `uint`. Any `u64` is written; JS only encodes and decodes values up to
/// [`MAX_SAFE_INTEGER`] (see [`try_write_uint`]).
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
/// `fixed(N)` (`fixed32`, `fixed64`, ...): the raw bytes.
impl<const N: usize> Encode for [u8; N] {
    fn encoded_len(&self) -> usize {
        N
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
}
impl<const N: usize> Decode<'_> for [u8; N] {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.fixed()
    }
}

/// `bool`.
impl Encode for bool {
    fn encoded_len(&self) -> usize {
        1
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self))
    }
}
impl Decode<'_> for bool {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.bool()
    }
}
/// `string` / `utf8`.
impl Encode for str {
    fn encoded_len(&self) -> usize {
        buffer_len(self.len())
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_string(out, self)
    }
}
/// `string` / `utf8`.
impl Encode for String {
    fn encoded_len(&self) -> usize {
        buffer_len(self.len())
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_string(out, self)
    }
}
impl<'a> Decode<'a> for &'a str {
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        d.string()
    }
}
impl Decode<'_> for String {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.string().map(str::to_owned)
    }
}
/// `none`: nothing on the wire.
impl Encode for () {
    fn encoded_len(&self) -> usize {
        0
    }
    fn encode(&self, _out: &mut Vec<u8>) {}
}
impl Decode<'_> for () {
    fn decode(_d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(())
    }
}
/// `array(enc)`.
impl<T: Encode> Encode for [T] {
    fn encoded_len(&self) -> usize {
        array_len(self)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_array(out, self)
    }
}
/// `array(enc)`.
impl<T: Encode> Encode for Vec<T> {
    fn encoded_len(&self) -> usize {
        array_len(self)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_array(out, self)
    }
}
impl<'a, T: Decode<'a>> Decode<'a> for Vec<T> {
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        d.array()
    }
}
impl<T: Encode + ?Sized> Encode for &T {
    fn encoded_len(&self) -> usize {
        (**self).encoded_len()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out)
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
