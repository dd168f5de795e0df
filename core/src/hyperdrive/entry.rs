//! Drive entries: the JSON value hyperdrive stores under `files\0<path>` in its db bee.
//!
//! JS writes `{"executable":bool,"linkname":string|null,"blob":{"blockOffset","byteOffset",
//! "blockLength","byteLength"[,"blockMap":true]}|null,"metadata":any}` with `JSON.stringify`;
//! [`EntryCodec`] writes the same bytes (the keys in that order, numbers and strings as JS
//! formats them) and reads any JSON object with those fields in any order. Missing fields read
//! as their defaults (false / null), as JS's `node.value.x` would give `undefined`.

use serde_json::Value;

use crate::encoding::json_stringify;
use crate::hyperbee::{BeeError, Codec};
use crate::hyperblobs::BlobId;

/// The value of a drive entry (JS `node.value`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntryValue {
    /// The file is executable.
    pub executable: bool,
    /// A symlink's target (then `blob` is `None`).
    pub linkname: Option<String>,
    /// Where the file's bytes are in the blobs core.
    pub blob: Option<BlobId>,
    /// Free-form metadata (any JSON), `None` for JS `null`.
    pub metadata: Option<Value>,
}

/// One file of a drive (JS `{ seq, key, value }`).
#[derive(Debug, Clone, PartialEq)]
pub struct DriveEntry {
    /// The db block that wrote it.
    pub seq: u64,
    /// Its path (absolute, normalized).
    pub key: String,
    /// What it is.
    pub value: EntryValue,
}

impl DriveEntry {
    /// Whether this is a symlink.
    pub fn is_symlink(&self) -> bool {
        self.value.linkname.is_some()
    }

    /// Content bytes of a plain blob (0 for symlinks; the map's size for a block-mapped blob,
    /// see [`crate::hyperblobs::Hyperblobs::content_length`]).
    pub fn byte_length(&self) -> u64 {
        self.value.blob.map_or(0, |b| b.byte_length)
    }
}

/// The entry encoding of the db bee (JS `valueEncoding: 'json'` of hyperdrive's values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryCodec;

impl EntryValue {
    /// The bytes JS `JSON.stringify` gives for this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::with_capacity(128);
        s.push_str("{\"executable\":");
        s.push_str(if self.executable { "true" } else { "false" });
        s.push_str(",\"linkname\":");
        match &self.linkname {
            Some(l) => s.push_str(&json_stringify(&Value::String(l.clone()))),
            None => s.push_str("null"),
        }
        s.push_str(",\"blob\":");
        match &self.blob {
            Some(b) => {
                s.push_str(&format!(
                    "{{\"blockOffset\":{},\"byteOffset\":{},\"blockLength\":{},\"byteLength\":{}",
                    b.block_offset, b.byte_offset, b.block_length, b.byte_length
                ));
                if b.block_map {
                    s.push_str(",\"blockMap\":true");
                }
                s.push('}');
            }
            None => s.push_str("null"),
        }
        s.push_str(",\"metadata\":");
        match &self.metadata {
            Some(m) => s.push_str(&json_stringify(m)),
            None => s.push_str("null"),
        }
        s.push('}');
        s.into_bytes()
    }

    /// Read a stored value (any field order; unknown fields ignored).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let Value::Object(o) = v else {
            return Err("not a JSON object".into());
        };
        let executable = match o.get("executable") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("executable is not a boolean".into()),
        };
        let linkname = match o.get("linkname") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err("linkname is not a string".into()),
        };
        let blob = match o.get("blob") {
            None | Some(Value::Null) => None,
            Some(Value::Object(b)) => {
                let n = |k: &str| -> Result<u64, String> {
                    match b.get(k) {
                        None | Some(Value::Null) => Ok(0),
                        Some(v) => v
                            .as_u64()
                            .filter(|n| *n <= crate::encoding::MAX_SAFE_INTEGER)
                            .ok_or_else(|| format!("blob.{k} is not a safe integer")),
                    }
                };
                Some(BlobId {
                    block_offset: n("blockOffset")?,
                    byte_offset: n("byteOffset")?,
                    block_length: n("blockLength")?,
                    byte_length: n("byteLength")?,
                    block_map: matches!(b.get("blockMap"), Some(Value::Bool(true))),
                })
            }
            Some(_) => return Err("blob is not an object".into()),
        };
        let metadata = match o.get("metadata") {
            None | Some(Value::Null) => None,
            Some(m) => Some(m.clone()),
        };
        Ok(EntryValue {
            executable,
            linkname,
            blob,
            metadata,
        })
    }
}

impl Codec for EntryCodec {
    type Value = EntryValue;
    type Owned = EntryValue;
    fn encode(&self, value: &EntryValue) -> Vec<u8> {
        value.encode()
    }
    fn decode(&self, bytes: &[u8]) -> Result<EntryValue, BeeError> {
        EntryValue::decode(bytes).map_err(|reason| BeeError::Encoding {
            codec: "hyperdrive entry",
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_encode_like_js() {
        // tests/vectors/data/07-corestore-hyperdrive.out, db#3 and db#4.
        let exec = EntryValue {
            executable: true,
            linkname: None,
            blob: Some(BlobId {
                block_offset: 3,
                byte_offset: 70011,
                block_length: 1,
                byte_length: 9,
                block_map: false,
            }),
            metadata: Some(serde_json::json!({"mode": "x"})),
        };
        let js = r#"{"executable":true,"linkname":null,"blob":{"blockOffset":3,"byteOffset":70011,"blockLength":1,"byteLength":9},"metadata":{"mode":"x"}}"#;
        assert_eq!(String::from_utf8(exec.encode()).unwrap(), js);
        assert_eq!(EntryValue::decode(js.as_bytes()).unwrap(), exec);
        let link = EntryValue {
            linkname: Some("/hello.txt".into()),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(link.encode()).unwrap(),
            r#"{"executable":false,"linkname":"/hello.txt","blob":null,"metadata":null}"#
        );
        // Other orders and missing fields read; wrong types are errors, never panics.
        let v = EntryValue::decode(br#"{"blob":{"byteLength":5,"blockMap":true}}"#).unwrap();
        assert_eq!(v.blob.unwrap().byte_length, 5);
        assert!(v.blob.unwrap().block_map);
        for bad in [
            &b"[]"[..],
            b"{\"executable\":1}",
            b"{\"blob\":{\"byteLength\":-1}}",
            b"{\"blob\":{\"byteLength\":1.5}}",
            b"{\"blob\":{\"byteLength\":9007199254740992}}",
            b"{\"linkname\":{}}",
            b"{",
        ] {
            assert!(EntryValue::decode(bad).is_err(), "{bad:?}");
        }
    }
}
