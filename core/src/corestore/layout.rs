//! The storage layout of a corestore: every core of the store in one [`Storage`], each in its
//! own key prefix.
//!
//! Keys start with a one-byte tag:
//!
//! | key | value |
//! |---|---|
//! | `0x00` | store header: `uint version(1) ‖ fixed32 primaryKey` |
//! | `0x01` | `uint` the id the next new core gets |
//! | `0x02 ‖ discoveryKey(32)` | core record: `uint version(1) ‖ uint id ‖ fixed32 key ‖ uint flags(1 named) ‖ [fixed32 namespace ‖ buffer name]` |
//! | `0x03 ‖ namespace(32) ‖ name` | alias of a named core: `fixed32 discoveryKey` (JS `getAlias`) |
//! | `0x04 ‖ bootstrap(32)` | the point an autobase member fast-forwarded to (`autobase::fast_forward::FastForwardPoint`), so that a restart resumes from it |
//! | `0x10 ‖ u32be(id) ‖ …` | the data of core `id`: the keys of [`crate::hypercore::layout`] under this prefix ([`crate::storage::Prefixed`]) |
//!
//! Crash safety: the header is written once, in one batch, when the store is created. A core is
//! created in **one** atomic batch holding its hypercore header, its core record, its alias
//! (named cores) and the next id, so after a crash a core either exists completely or not at
//! all, and an id is never handed out twice. Everything a core writes afterwards goes through
//! its own [`crate::hypercore::Hypercore`] batches under its prefix.
//!
//! This layout is hyperpunch's own (JS corestore 7 keeps its cores in RocksDB through
//! hypercore-storage with another layout); only the keys and discovery keys are shared with JS.
//!
//! [`Storage`]: crate::storage::Storage

use crate::encoding::{write_buffer, write_uint, Decoder};

use super::keys::Namespace;
use super::CorestoreError;

/// Tag of the store header.
pub const HEADER: u8 = 0x00;
/// Tag of the next-id record.
pub const NEXT_ID: u8 = 0x01;
/// Tag of core records.
pub const CORE: u8 = 0x02;
/// Tag of aliases.
pub const ALIAS: u8 = 0x03;
/// Tag of the autobase fast-forward points.
pub const AUTOBASE_POINT: u8 = 0x04;
/// Tag of core data.
pub const DATA: u8 = 0x10;

/// Version of the records written.
const VERSION: u64 = 1;
/// Flag of a core record: the core is named (namespace and name follow).
const FLAG_NAMED: u64 = 1;

/// The store header key.
pub fn header_key() -> Vec<u8> {
    vec![HEADER]
}

/// The key of the fast-forward point stored for the autobase with `bootstrap` (written in one
/// batch of its own: after a crash it is there whole or not at all).
pub fn autobase_point_key(bootstrap: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(AUTOBASE_POINT);
    k.extend_from_slice(bootstrap);
    k
}

/// The next-id key.
pub fn next_id_key() -> Vec<u8> {
    vec![NEXT_ID]
}

/// The record key of the core with `discovery_key`.
pub fn core_key(discovery_key: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(CORE);
    k.extend_from_slice(discovery_key);
    k
}

/// The alias key of `name` in `namespace`.
pub fn alias_key(namespace: &Namespace, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(33 + name.len());
    k.push(ALIAS);
    k.extend_from_slice(&namespace.0);
    k.extend_from_slice(name);
    k
}

/// The first key after every alias of `namespace` (exclusive scan end).
pub fn alias_end(namespace: &Namespace) -> Vec<u8> {
    let mut k = alias_key(namespace, &[]);
    // The smallest key greater than every `ALIAS ‖ namespace ‖ name`: increment the namespace
    // as a big-endian number (carrying), or move to the next tag if it is all ones.
    for i in (1..k.len()).rev() {
        if k[i] < 0xff {
            k[i] += 1;
            k.truncate(i + 1);
            return k;
        }
    }
    vec![ALIAS + 1]
}

/// The key prefix of the data of core `id`.
pub fn data_prefix(id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(DATA);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn corrupt(what: &str, detail: impl core::fmt::Display) -> CorestoreError {
    CorestoreError::Corrupt(format!("{what}: {detail}"))
}

fn version(d: &mut Decoder<'_>, what: &str) -> Result<(), CorestoreError> {
    let v = d.uint().map_err(|e| corrupt(what, e))?;
    if v != VERSION {
        return Err(corrupt(what, format_args!("unknown version {v}")));
    }
    Ok(())
}

/// The store header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHeader {
    /// The primary key every named core's key pair derives from.
    pub primary_key: [u8; 32],
}

impl StoreHeader {
    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33);
        write_uint(&mut out, VERSION);
        out.extend_from_slice(&self.primary_key);
        out
    }

    /// Parse stored bytes ([`CorestoreError::Corrupt`] when they are not a header).
    pub fn decode(bytes: &[u8]) -> Result<Self, CorestoreError> {
        const WHAT: &str = "store header";
        let mut d = Decoder::new(bytes);
        version(&mut d, WHAT)?;
        let primary_key = d.fixed().map_err(|e| corrupt(WHAT, e))?;
        d.finish().map_err(|e| corrupt(WHAT, e))?;
        Ok(StoreHeader { primary_key })
    }
}

/// The next-id record's bytes.
pub fn encode_next_id(id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    write_uint(&mut out, id);
    out
}

/// Parse the next-id record.
pub fn decode_next_id(bytes: &[u8]) -> Result<u64, CorestoreError> {
    const WHAT: &str = "next core id";
    let mut d = Decoder::new(bytes);
    let id = d.uint().map_err(|e| corrupt(WHAT, e))?;
    d.finish().map_err(|e| corrupt(WHAT, e))?;
    if id > u64::from(u32::MAX) + 1 {
        return Err(corrupt(WHAT, format_args!("{id} is out of range")));
    }
    Ok(id)
}

/// A core record: where a stored core's data lives, its key, and its name if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreRecord {
    /// The core's id: its data is under [`data_prefix`]`(id)`.
    pub id: u32,
    /// The core key.
    pub key: [u8; 32],
    /// Namespace and name of a named core.
    pub name: Option<(Namespace, Vec<u8>)>,
}

impl CoreRecord {
    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        write_uint(&mut out, VERSION);
        write_uint(&mut out, u64::from(self.id));
        out.extend_from_slice(&self.key);
        match &self.name {
            Some((ns, name)) => {
                write_uint(&mut out, FLAG_NAMED);
                out.extend_from_slice(&ns.0);
                write_buffer(&mut out, name);
            }
            None => write_uint(&mut out, 0),
        }
        out
    }

    /// Parse stored bytes ([`CorestoreError::Corrupt`] when they are not a core record).
    pub fn decode(bytes: &[u8]) -> Result<Self, CorestoreError> {
        const WHAT: &str = "core record";
        let e = |e| corrupt(WHAT, e);
        let mut d = Decoder::new(bytes);
        version(&mut d, WHAT)?;
        let id = d.uint().map_err(e)?;
        let id = u32::try_from(id).map_err(|_| corrupt(WHAT, format_args!("id {id}")))?;
        let key = d.fixed().map_err(e)?;
        let flags = d.uint().map_err(e)?;
        if flags & !FLAG_NAMED != 0 {
            return Err(corrupt(WHAT, format_args!("unknown flags {flags}")));
        }
        let name = if flags & FLAG_NAMED != 0 {
            let ns = Namespace(d.fixed().map_err(e)?);
            Some((ns, d.buffer().map_err(e)?.to_vec()))
        } else {
            None
        };
        d.finish().map_err(e)?;
        Ok(CoreRecord { id, key, name })
    }
}

/// Parse an alias value (a discovery key).
pub fn decode_alias(bytes: &[u8]) -> Result<[u8; 32], CorestoreError> {
    bytes
        .try_into()
        .map_err(|_| corrupt("alias", format_args!("{} bytes, not 32", bytes.len())))
}

/// The discovery key in a core record's key.
pub fn discovery_key_of(key: &[u8]) -> Result<[u8; 32], CorestoreError> {
    key.get(1..)
        .and_then(|k| k.try_into().ok())
        .filter(|_| key.first() == Some(&CORE))
        .ok_or_else(|| corrupt("core record key", format_args!("{} bytes", key.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let h = StoreHeader {
            primary_key: [3; 32],
        };
        assert_eq!(StoreHeader::decode(&h.encode()).unwrap(), h);
        let named = CoreRecord {
            id: 7,
            key: [1; 32],
            name: Some((Namespace::ROOT.child("a"), b"db".to_vec())),
        };
        let plain = CoreRecord {
            id: u32::MAX,
            key: [2; 32],
            name: None,
        };
        for r in [&named, &plain] {
            let bytes = r.encode();
            assert_eq!(&CoreRecord::decode(&bytes).unwrap(), r);
            // Every truncation and a trailing byte are corruption, not a panic.
            for n in 0..bytes.len() {
                assert!(matches!(
                    CoreRecord::decode(&bytes[..n]),
                    Err(CorestoreError::Corrupt(_))
                ));
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(CoreRecord::decode(&long).is_err());
        }
        assert!(StoreHeader::decode(&[2]).is_err());
        assert!(StoreHeader::decode(&[]).is_err());
        assert_eq!(decode_next_id(&encode_next_id(5)).unwrap(), 5);
        assert!(decode_next_id(&encode_next_id(1 << 40)).is_err());
        assert!(decode_alias(&[0; 31]).is_err());
        assert_eq!(discovery_key_of(&core_key(&[9; 32])).unwrap(), [9; 32]);
        assert!(discovery_key_of(&[CORE, 1]).is_err());
    }

    #[test]
    fn keys_are_prefix_free_and_ordered() {
        let ns = Namespace::ROOT.child("x");
        let end = alias_end(&ns);
        assert!(alias_key(&ns, b"") < end);
        assert!(alias_key(&ns, &[0xff; 300]) < end);
        assert!(alias_key(&Namespace([0xff; 32]), &[0xff; 10]) < alias_end(&Namespace([0xff; 32])));
        assert!(header_key() < next_id_key());
        assert!(core_key(&[0xff; 32]) < alias_key(&Namespace::ROOT, b""));
        assert!(alias_end(&Namespace([0xff; 32])) <= data_prefix(0));
        assert_eq!(data_prefix(1).len(), 5);
        assert!(data_prefix(1) < data_prefix(256));
    }
}
