//! Key and value encodings (JS `keyEncoding` / `valueEncoding`, the `codecs` package).
//!
//! A bee stores bytes; a [`Codec`] turns what the application passes into those bytes and back.
//! [`Binary`] (the default, JS `'binary'` or no encoding), [`Utf8`] (JS `'utf-8'`) and [`Json`]
//! (JS `'json'`) encode exactly as JS does, so a bee written with `keyEncoding: 'utf-8'` in JS
//! reads with [`Utf8`] here and the other way around. Other formats implement [`Codec`]
//! themselves (hyperdrive's entry encoding, for instance).
//!
//! Keys are compared as encoded bytes (JS `b4a.compare`), so the key encoding decides the order.

use std::sync::Arc;

use super::error::BeeError;
use crate::encoding::json_stringify;
use crate::storage::{MaybeSend, MaybeSync};

/// A key or value encoding. See the module docs.
pub trait Codec: Clone + MaybeSend + MaybeSync + 'static {
    /// What the application passes in (borrowed): `[u8]`, `str`, a JSON value.
    type Value: ?Sized;
    /// What reads give back (owned).
    type Owned;
    /// Encode `value`.
    fn encode(&self, value: &Self::Value) -> Vec<u8>;
    /// Encode `value` into a shared buffer (what a write keeps): the same bytes as
    /// [`Codec::encode`]. Codecs whose bytes are the value's own override it to copy once.
    fn encode_arc(&self, value: &Self::Value) -> Arc<[u8]> {
        self.encode(value).into()
    }
    /// Append [`Codec::encode`]'s bytes of `value` to `out` (a batch encodes every write into
    /// one reused buffer). Codecs whose bytes are the value's own override it to copy once.
    fn encode_into(&self, value: &Self::Value, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encode(value));
    }
    /// Decode stored bytes.
    fn decode(&self, bytes: &[u8]) -> Result<Self::Owned, BeeError>;
}

/// Bytes as they are (JS `'binary'`, or no encoding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Binary;

impl Codec for Binary {
    type Value = [u8];
    type Owned = Vec<u8>;
    fn encode(&self, value: &[u8]) -> Vec<u8> {
        value.to_vec()
    }
    fn encode_arc(&self, value: &[u8]) -> Arc<[u8]> {
        value.into()
    }
    fn encode_into(&self, value: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(value);
    }
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, BeeError> {
        Ok(bytes.to_vec())
    }
}

/// UTF-8 text (JS `'utf-8'`). Stored bytes that are not UTF-8 decode with U+FFFD replacement
/// characters, as JS's `toString('utf-8')` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8;

impl Codec for Utf8 {
    type Value = str;
    type Owned = String;
    fn encode(&self, value: &str) -> Vec<u8> {
        value.as_bytes().to_vec()
    }
    fn encode_arc(&self, value: &str) -> Arc<[u8]> {
        value.as_bytes().into()
    }
    fn encode_into(&self, value: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(value.as_bytes());
    }
    fn decode(&self, bytes: &[u8]) -> Result<String, BeeError> {
        // Valid UTF-8 (the usual case) is one check and one copy.
        Ok(match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        })
    }
}

/// JSON (JS `'json'`): `JSON.stringify` on the way in (same bytes as JS, numbers and key order
/// included), `JSON.parse` on the way out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

impl Codec for Json {
    type Value = serde_json::Value;
    type Owned = serde_json::Value;
    fn encode(&self, value: &serde_json::Value) -> Vec<u8> {
        json_stringify(value).into_bytes()
    }
    fn decode(&self, bytes: &[u8]) -> Result<serde_json::Value, BeeError> {
        serde_json::from_slice(bytes).map_err(|e| BeeError::Encoding {
            codec: "json",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_round_trip_like_js() {
        assert_eq!(Binary.encode(b"\x00\xff"), vec![0, 0xff]);
        assert_eq!(Utf8.encode("é"), vec![0xc3, 0xa9]);
        assert_eq!(Utf8.decode(&[0x61, 0xff]).unwrap(), "a\u{fffd}");
        let v = serde_json::json!({"b": 1, "a": [1.5, "x", null]});
        assert_eq!(Json.encode(&v), br#"{"b":1,"a":[1.5,"x",null]}"#.to_vec());
        assert_eq!(Json.decode(&Json.encode(&v)).unwrap(), v);
        assert!(matches!(
            Json.decode(b"{"),
            Err(BeeError::Encoding { codec: "json", .. })
        ));
    }
}
