//! hyperdht 6.34.0 message schemas (lib/messages.js) and hyperdht-address 1.1.1, byte for byte:
//! records, announcements, mutable and immutable values. The messages of connecting by public key
//! (PEER_HANDSHAKE, PEER_HOLEPUNCH and their payloads) are in [`super::messages_connect`].
//!
//! Every decoder returns a typed [`DecodeError`] on malformed input and, like JS's
//! `c.decode`, ignores trailing bytes.

use core::net::SocketAddrV4;

use super::rpc::messages::{decode_addr, encode_addr};
use crate::encoding::{uint_len, write_buffer, write_string, write_uint, DecodeError, Decoder};

fn write_addrs(out: &mut Vec<u8>, addrs: &[SocketAddrV4]) {
    write_uint(out, addrs.len() as u64);
    for a in addrs {
        out.extend_from_slice(&encode_addr(a));
    }
}

fn addrs_len(addrs: &[SocketAddrV4]) -> usize {
    uint_len(addrs.len() as u64) + 6 * addrs.len()
}

/// `array(ipv4Address)`.
pub fn decode_addrs(d: &mut Decoder<'_>) -> Result<Vec<SocketAddrV4>, DecodeError> {
    let n = d.array_len()?;
    let mut v = Vec::with_capacity(n.min(d.remaining() / 6));
    for _ in 0..n {
        v.push(decode_addr(d)?);
    }
    Ok(v)
}

/// A stored announcement (`peer`): a public key and up to 3 relay addresses. Also the
/// FIND_PEER reply value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// The announcer's public key.
    pub public_key: [u8; 32],
    /// Nodes that relay handshakes to it.
    pub relay_addresses: Vec<SocketAddrV4>,
}

impl PeerRecord {
    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        32 + addrs_len(&self.relay_addresses)
    }
    /// Append the encoding.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.public_key);
        write_addrs(out, &self.relay_addresses);
    }
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }
    /// Read one from a decoder.
    pub fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(PeerRecord {
            public_key: d.fixed()?,
            relay_addresses: decode_addrs(d)?,
        })
    }
    /// Decode.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_from(&mut Decoder::new(bytes))
    }
}

/// The LOOKUP reply value (`lookupRawReply`): stored records and the topic's bump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupReply {
    /// The announcers.
    pub peers: Vec<PeerRecord>,
    /// The topic's bump (0 when absent).
    pub bump: u64,
}

impl LookupReply {
    /// Encode from already-encoded peer records (what the store keeps).
    pub fn encode_raw(records: &[&[u8]], bump: u64) -> Vec<u8> {
        let len: usize = records.iter().map(|r| r.len()).sum();
        let mut out = Vec::with_capacity(len + 12);
        write_uint(&mut out, records.len() as u64);
        for r in records {
            out.extend_from_slice(r);
        }
        write_uint(&mut out, bump);
        out
    }
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let raw: Vec<Vec<u8>> = self.peers.iter().map(PeerRecord::encode).collect();
        let refs: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
        Self::encode_raw(&refs, self.bump)
    }
    /// Decode (`bump` is optional on the wire).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let n = d.array_len()?;
        let mut peers = Vec::with_capacity(n.min(d.remaining() / 33));
        for _ in 0..n {
            peers.push(PeerRecord::decode_from(&mut d)?);
        }
        let bump = if d.is_empty() { 0 } else { d.uint()? };
        Ok(LookupReply { peers, bump })
    }
}

/// The ANNOUNCE / UNANNOUNCE value (`announce`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Announce {
    /// The record to store.
    pub peer: Option<PeerRecord>,
    /// A refresh-chain hash (`refresh`-only announces re-validate a stored record).
    pub refresh: Option<[u8; 32]>,
    /// Ed25519 signature over the announce signable.
    pub signature: Option<[u8; 64]>,
    /// The topic's bump (0: none).
    pub bump: u64,
}

impl Announce {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 100 + 96);
        let flags = self.peer.is_some() as u64
            | (self.refresh.is_some() as u64) << 1
            | (self.signature.is_some() as u64) << 2
            | ((self.bump != 0) as u64) << 3;
        write_uint(&mut out, flags);
        if let Some(p) = &self.peer {
            p.encode_into(&mut out);
        }
        if let Some(r) = &self.refresh {
            out.extend_from_slice(r);
        }
        if let Some(s) = &self.signature {
            out.extend_from_slice(s);
        }
        if self.bump != 0 {
            write_uint(&mut out, self.bump);
        }
        out
    }
    /// Decode.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let flags = d.uint()?;
        Ok(Announce {
            peer: if flags & 1 != 0 {
                Some(PeerRecord::decode_from(&mut d)?)
            } else {
                None
            },
            refresh: if flags & 2 != 0 {
                Some(d.fixed()?)
            } else {
                None
            },
            signature: if flags & 4 != 0 {
                Some(d.fixed()?)
            } else {
                None
            },
            bump: if flags & 8 != 0 { d.uint()? } else { 0 },
        })
    }
}

/// `mutableSignable`: what a mutable record's signature covers (hashed).
pub fn mutable_signable(seq: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(uint_len(seq) + uint_len(value.len() as u64) + value.len());
    write_uint(&mut out, seq);
    write_buffer(&mut out, value);
    out
}

/// The MUTABLE_PUT value (`mutablePutRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutablePutRequest {
    /// The writer's public key (the target is its hash).
    pub public_key: [u8; 32],
    /// The sequence number.
    pub seq: u64,
    /// The value.
    pub value: Vec<u8>,
    /// The signature.
    pub signature: [u8; 64],
}

impl MutablePutRequest {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 9 + 9 + self.value.len() + 64);
        out.extend_from_slice(&self.public_key);
        write_uint(&mut out, self.seq);
        write_buffer(&mut out, &self.value);
        out.extend_from_slice(&self.signature);
        out
    }
    /// Decode.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        Ok(MutablePutRequest {
            public_key: d.fixed()?,
            seq: d.uint()?,
            value: d.buffer()?.to_vec(),
            signature: d.fixed()?,
        })
    }
}

/// The MUTABLE_GET reply value (`mutableGetResponse`), also how records are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableGetResponse {
    /// The sequence number.
    pub seq: u64,
    /// The value.
    pub value: Vec<u8>,
    /// The signature.
    pub signature: [u8; 64],
}

impl MutableGetResponse {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + 9 + self.value.len() + 64);
        write_uint(&mut out, self.seq);
        write_buffer(&mut out, &self.value);
        out.extend_from_slice(&self.signature);
        out
    }
    /// Decode.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        Ok(MutableGetResponse {
            seq: d.uint()?,
            value: d.buffer()?.to_vec(),
            signature: d.fixed()?,
        })
    }
}

/// The PLUGIN value (`pluginRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRequest {
    /// Plugin name.
    pub plugin: String,
    /// Plugin version.
    pub version: u64,
    /// Plugin command.
    pub command: u64,
    /// Payload.
    pub value: Option<Vec<u8>>,
}

impl PluginRequest {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_string(&mut out, &self.plugin);
        write_uint(&mut out, self.version);
        write_uint(&mut out, self.command);
        write_uint(&mut out, self.value.is_some() as u64);
        if let Some(v) = &self.value {
            write_buffer(&mut out, v);
        }
        out
    }
    /// Decode.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let plugin = d.string()?.to_string();
        let version = d.uint()?;
        let command = d.uint()?;
        let flags = d.uint()?;
        Ok(PluginRequest {
            plugin,
            version,
            command,
            value: if flags & 1 != 0 {
                Some(d.buffer()?.to_vec())
            } else {
                None
            },
        })
    }
}

/// A hyperdht-address (what `connect` accepts besides a bare key): a key and, optionally,
/// nodes to start looking from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HyperdhtAddress {
    /// The server's public key.
    pub key: [u8; 32],
    /// Nodes close to it (`None`: not given).
    pub nodes: Option<Vec<SocketAddrV4>>,
}

impl HyperdhtAddress {
    /// Encode (schema version 2).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33);
        out.extend_from_slice(&self.key);
        write_uint(&mut out, self.nodes.is_some() as u64);
        if let Some(n) = &self.nodes {
            write_addrs(&mut out, n);
        }
        out
    }
    /// Decode: the flags byte may be absent (a bare 32-byte key).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let key = d.fixed()?;
        let flags = if d.is_empty() { 0 } else { d.uint()? };
        Ok(HyperdhtAddress {
            key,
            nodes: if flags & 1 != 0 {
                Some(decode_addrs(&mut d)?)
            } else {
                None
            },
        })
    }
}
