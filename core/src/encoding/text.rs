//! String codecs: `utf8` (lossy decode), `ascii`, `hex`, `base64`, `utf16le`, `string.fixed(n)`
//! and their unprefixed `raw.*` forms (`index.js:468-626`, `raw.js:123-137`).
//!
//! JS writes strings through Node's `Buffer`, which silently writes garbage for input outside an
//! encoding's alphabet; here such input is an [`EncodeError`] instead.

use std::borrow::Cow;

use super::{buffer_len, write_uint, DecodeError, Decoder, EncodeError};

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn ascii_bytes(s: &str) -> Result<Vec<u8>, EncodeError> {
    s.chars()
        .map(|c| u8::try_from(c as u32).map_err(|_| EncodeError::InvalidAscii))
        .collect()
}

fn hex_bytes(s: &str) -> Result<Vec<u8>, EncodeError> {
    fn nibble(c: u8) -> Result<u8, EncodeError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(EncodeError::InvalidHex),
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(EncodeError::InvalidHex);
    }
    b.chunks_exact(2)
        .map(|p| Ok(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// Node's lenient base64 reading: both alphabets, trailing `=` optional, leftover bits dropped.
fn base64_bytes(s: &str) -> Result<Vec<u8>, EncodeError> {
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 {
        return Err(EncodeError::InvalidBase64);
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in body.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return Err(EncodeError::InvalidBase64),
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

fn to_hex(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
}

fn to_base64(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &x)| acc | (x as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(B64_STD[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn utf16_units(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

fn with_prefix(out: &mut Vec<u8>, content: &[u8]) {
    write_uint(out, content.len() as u64);
    out.extend_from_slice(content);
}

/// Bytes `ascii` takes for `s` (one per character; characters above U+00FF fail to encode).
pub fn ascii_len(s: &str) -> usize {
    buffer_len(s.chars().count())
}
/// Append `ascii`: one byte per character, as Node's latin1 writing does. Characters above U+00FF
/// are an error (Node would keep only their low byte).
pub fn write_ascii(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    with_prefix(out, &ascii_bytes(s)?);
    Ok(())
}
/// Bytes `hex` takes for `s` (a length prefix plus half the digits).
pub fn hex_len(s: &str) -> usize {
    buffer_len(s.len() / 2)
}
/// Append `hex`: the bytes the hex digits spell (either case), length-prefixed.
pub fn write_hex(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    with_prefix(out, &hex_bytes(s)?);
    Ok(())
}
/// Bytes `base64` takes for `s`, computed as Node's `Buffer.byteLength(s, 'base64')` does.
pub fn base64_len(s: &str) -> usize {
    let body = s.trim_end_matches('=');
    buffer_len(body.len() * 3 / 4)
}
/// Append `base64`: the decoded bytes of `s` (standard or URL-safe alphabet, padding optional),
/// length-prefixed.
pub fn write_base64(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    with_prefix(out, &base64_bytes(s)?);
    Ok(())
}
/// Bytes `utf16le` takes for `s`.
pub fn utf16le_len(s: &str) -> usize {
    buffer_len(2 * s.encode_utf16().count())
}
/// Append `utf16le` / `ucs2`: the UTF-16 code units of `s`, little-endian, length-prefixed (in
/// bytes).
pub fn write_utf16le(out: &mut Vec<u8>, s: &str) {
    write_uint(out, 2 * s.encode_utf16().count() as u64);
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
}
/// Append `string.fixed(n)` (utf8): exactly `n` bytes, the UTF-8 of `s` then zero padding. JS
/// leaves the padding uninitialised (`allocUnsafe`); zeros are what a fresh buffer holds.
pub fn write_fixed_string(out: &mut Vec<u8>, s: &str, n: usize) -> Result<(), EncodeError> {
    if s.len() > n {
        return Err(EncodeError::TooLong {
            len: s.len(),
            max: n,
        });
    }
    out.extend_from_slice(s.as_bytes());
    out.resize(out.len() + n - s.len(), 0);
    Ok(())
}

/// Unprefixed `raw.ascii`.
pub fn write_raw_ascii(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    out.extend_from_slice(&ascii_bytes(s)?);
    Ok(())
}
/// Unprefixed `raw.hex`.
pub fn write_raw_hex(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    out.extend_from_slice(&hex_bytes(s)?);
    Ok(())
}
/// Unprefixed `raw.base64`.
pub fn write_raw_base64(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    out.extend_from_slice(&base64_bytes(s)?);
    Ok(())
}
/// Unprefixed `raw.utf16le`.
pub fn write_raw_utf16le(out: &mut Vec<u8>, s: &str) {
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
}

fn ascii_str(b: &[u8]) -> Result<&str, DecodeError> {
    if !b.is_ascii() {
        return Err(DecodeError::Invalid("ascii string"));
    }
    core::str::from_utf8(b).map_err(|_| DecodeError::InvalidUtf8)
}

impl<'a> Decoder<'a> {
    /// `string` / `utf8` decoded as JS does: invalid UTF-8 becomes U+FFFD (WHATWG replacement)
    /// instead of an error ([`Decoder::string`] is the strict form).
    pub fn string_lossy(&mut self) -> Result<Cow<'a, str>, DecodeError> {
        Ok(String::from_utf8_lossy(self.buffer()?))
    }
    /// `ascii`. Bytes above 0x7f are rejected (what JS returns for them depends on the Node
    /// version).
    pub fn ascii(&mut self) -> Result<&'a str, DecodeError> {
        ascii_str(self.buffer()?)
    }
    /// `hex`: the bytes as lowercase hex digits.
    pub fn hex(&mut self) -> Result<String, DecodeError> {
        Ok(to_hex(self.buffer()?))
    }
    /// `base64`: the bytes as padded standard base64.
    pub fn base64(&mut self) -> Result<String, DecodeError> {
        Ok(to_base64(self.buffer()?))
    }
    /// `utf16le` / `ucs2`. An odd final byte is ignored as in Node; unpaired surrogates (which a
    /// Rust string cannot hold) become U+FFFD.
    pub fn utf16le(&mut self) -> Result<String, DecodeError> {
        Ok(utf16_units(self.buffer()?))
    }
    /// `string.fixed(n)` (utf8): exactly `n` bytes, returned whole (padding included).
    pub fn fixed_string(&mut self, n: usize) -> Result<&'a str, DecodeError> {
        core::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::InvalidUtf8)
    }
    /// `raw.utf8` / `raw.string`: everything left as UTF-8.
    pub fn raw_string(&mut self) -> Result<&'a str, DecodeError> {
        core::str::from_utf8(self.rest()).map_err(|_| DecodeError::InvalidUtf8)
    }
    /// `raw.ascii`: everything left.
    pub fn raw_ascii(&mut self) -> Result<&'a str, DecodeError> {
        ascii_str(self.rest())
    }
    /// `raw.hex`: everything left as lowercase hex.
    pub fn raw_hex(&mut self) -> String {
        to_hex(self.rest())
    }
    /// `raw.base64`: everything left as padded standard base64.
    pub fn raw_base64(&mut self) -> String {
        to_base64(self.rest())
    }
    /// `raw.utf16le`: everything left as UTF-16LE.
    pub fn raw_utf16le(&mut self) -> String {
        utf16_units(self.rest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_is_lenient() {
        for bytes in [
            &b""[..],
            b"\x01",
            b"\x01\x02",
            b"\x01\x02\x03",
            b"\xff\xfe\xfd\xfc",
        ] {
            let s = to_base64(bytes);
            assert_eq!(base64_bytes(&s).unwrap(), bytes);
            assert_eq!(base64_len(&s), buffer_len(bytes.len()));
        }
        // Node vectors: 'AQI' → 0102, 'AQ-_' → 010fbf, 'AQ==' → 01
        assert_eq!(base64_bytes("AQI").unwrap(), [1, 2]);
        assert_eq!(base64_bytes("AQ-_").unwrap(), [1, 0x0f, 0xbf]);
        assert_eq!(base64_bytes("AQ==").unwrap(), [1]);
        assert_eq!(base64_bytes("A*"), Err(EncodeError::InvalidBase64));
    }

    #[test]
    fn hex_and_ascii_errors() {
        assert_eq!(hex_bytes("abC"), Err(EncodeError::InvalidHex));
        assert_eq!(hex_bytes("zz"), Err(EncodeError::InvalidHex));
        assert_eq!(hex_bytes("abCD").unwrap(), [0xab, 0xcd]);
        assert_eq!(ascii_bytes("é").unwrap(), [0xe9]);
        assert_eq!(ascii_bytes("€"), Err(EncodeError::InvalidAscii));
        assert!(Decoder::new(&[1, 0x80]).ascii().is_err());
    }

    #[test]
    fn utf16_and_fixed_and_raw() {
        let mut v = vec![];
        write_utf16le(&mut v, "a😀");
        assert_eq!(v.len(), utf16le_len("a😀"));
        assert_eq!(Decoder::new(&v).utf16le().unwrap(), "a😀");
        // Node: an odd trailing byte is dropped
        assert_eq!(Decoder::new(&[3, 0x61, 0, 0x62]).utf16le().unwrap(), "a");
        let mut v = vec![];
        write_fixed_string(&mut v, "hi", 4).unwrap();
        assert_eq!(v, b"hi\0\0");
        assert_eq!(Decoder::new(&v).fixed_string(4).unwrap(), "hi\0\0");
        assert!(write_fixed_string(&mut v, "hello", 4).is_err());
        let mut v = vec![];
        write_raw_hex(&mut v, "beef").unwrap();
        write_raw_utf16le(&mut v, "x");
        assert_eq!(v, [0xbe, 0xef, b'x', 0]);
        assert_eq!(Decoder::new(&v).raw_hex(), "beef7800");
        assert_eq!(Decoder::new(&v).raw_base64(), "vu94AA==");
        assert_eq!(
            Decoder::new(&[3, b'a', 0xff, b'b']).string_lossy().unwrap(),
            "a\u{fffd}b"
        );
    }
}
