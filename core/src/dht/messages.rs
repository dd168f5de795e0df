//! hyperdht 6.34.0 message schemas (lib/messages.js) and hyperdht-address 1.1.1, byte for byte.
//!
//! Every decoder returns a typed [`DecodeError`] on malformed input and, like JS's
//! `c.decode`, ignores trailing bytes.

use core::net::{SocketAddrV4, SocketAddrV6};

use super::rpc::messages::{decode_addr, encode_addr};
use crate::encoding::{uint_len, write_buffer, write_string, write_uint, DecodeError, Decoder};

/// Router modes of `handshake` and `holepunch` (hyperdht lib/router.js).
pub mod mode {
    /// A client's request to a relay or the server.
    pub const FROM_CLIENT: u64 = 0;
    /// The server's answer, on its way back through the relay.
    pub const FROM_SERVER: u64 = 1;
    /// Forwarded by the first relay.
    pub const FROM_RELAY: u64 = 2;
    /// Forwarded by a second relay.
    pub const FROM_SECOND_RELAY: u64 = 3;
    /// The final answer to the client.
    pub const REPLY: u64 = 4;
}

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

fn write_addr(out: &mut Vec<u8>, a: &SocketAddrV4) {
    out.extend_from_slice(&encode_addr(a));
}

/// The value of PEER_HANDSHAKE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// One of [`mode`].
    pub mode: u64,
    /// The Noise message.
    pub noise: Vec<u8>,
    /// The peer's address (the client's, as a relay saw it; or the server's in a REPLY).
    pub peer_address: Option<SocketAddrV4>,
    /// The first relay's address (FROM_SECOND_RELAY).
    pub relay_address: Option<SocketAddrV4>,
}

impl Handshake {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + self.noise.len() + 3);
        let flags = self.peer_address.is_some() as u64 | (self.relay_address.is_some() as u64) << 1;
        write_uint(&mut out, flags);
        write_uint(&mut out, self.mode);
        write_buffer(&mut out, &self.noise);
        if let Some(a) = &self.peer_address {
            write_addr(&mut out, a);
        }
        if let Some(a) = &self.relay_address {
            write_addr(&mut out, a);
        }
        out
    }
    /// Decode.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let flags = d.uint()?;
        Ok(Handshake {
            mode: d.uint()?,
            noise: d.buffer()?.to_vec(),
            peer_address: if flags & 1 != 0 {
                Some(decode_addr(&mut d)?)
            } else {
                None
            },
            relay_address: if flags & 2 != 0 {
                Some(decode_addr(&mut d)?)
            } else {
                None
            },
        })
    }
}

/// The value of PEER_HOLEPUNCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holepunch {
    /// One of [`mode`].
    pub mode: u64,
    /// The server-side session id.
    pub id: u64,
    /// The encrypted [`HolepunchPayload`] (SecurePayload).
    pub payload: Vec<u8>,
    /// The peer's address.
    pub peer_address: Option<SocketAddrV4>,
}

impl Holepunch {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.payload.len());
        write_uint(&mut out, self.peer_address.is_some() as u64);
        write_uint(&mut out, self.mode);
        write_uint(&mut out, self.id);
        write_buffer(&mut out, &self.payload);
        if let Some(a) = &self.peer_address {
            write_addr(&mut out, a);
        }
        out
    }
    /// Decode.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let flags = d.uint()?;
        Ok(Holepunch {
            mode: d.uint()?,
            id: d.uint()?,
            payload: d.buffer()?.to_vec(),
            peer_address: if flags & 1 != 0 {
                Some(decode_addr(&mut d)?)
            } else {
                None
            },
        })
    }
}

/// A relay a server is announced on, and the server's address as that relay saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayInfo {
    /// The relay node.
    pub relay_address: SocketAddrV4,
    /// The server as the relay saw it.
    pub peer_address: SocketAddrV4,
}

/// `holepunchInfo` of the noise payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolepunchInfo {
    /// The server's holepunch session id.
    pub id: u64,
    /// Relays that can carry PEER_HOLEPUNCH.
    pub relays: Vec<RelayInfo>,
}

/// `udxInfo` of the noise payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdxInfo {
    /// Version (encoded as 1 always).
    pub version: u64,
    /// The peer may reuse its socket.
    pub reusable_socket: bool,
    /// The sender's UDX stream id.
    pub id: u64,
    /// Always 0.
    pub seq: u64,
}

/// `relayThroughInfo` of the noise payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayThroughInfo {
    /// Version (encoded as 1 always).
    pub version: u64,
    /// The blind relay's public key.
    pub public_key: [u8; 32],
    /// The pairing token.
    pub token: [u8; 32],
}

/// The plaintext inside the Noise handshake (`noisePayload`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoisePayload {
    /// 1; other versions decode to defaults (the server answers VERSION_MISMATCH).
    pub version: u64,
    /// hyperdht ERROR code.
    pub error: u64,
    /// FIREWALL value.
    pub firewall: u64,
    /// Holepunch session and relays.
    pub holepunch: Option<HolepunchInfo>,
    /// Local IPv4 addresses (empty: not sent).
    pub addresses4: Vec<SocketAddrV4>,
    /// Local IPv6 addresses (empty: not sent).
    pub addresses6: Vec<SocketAddrV6>,
    /// UDX stream info.
    pub udx: Option<UdxInfo>,
    /// secret-stream version (encoded as 1).
    pub secret_stream: Option<u64>,
    /// Blind relay to pair through.
    pub relay_through: Option<RelayThroughInfo>,
    /// The server's relay addresses.
    pub relay_addresses: Option<Vec<SocketAddrV4>>,
}

impl NoisePayload {
    /// Encode (version is always written as 1, as JS does).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let mut flags = 0u64;
        if self.holepunch.is_some() {
            flags |= 1;
        }
        if !self.addresses4.is_empty() {
            flags |= 2;
        }
        if !self.addresses6.is_empty() {
            flags |= 4;
        }
        if self.udx.is_some() {
            flags |= 8;
        }
        if self.secret_stream.is_some() {
            flags |= 16;
        }
        if self.relay_through.is_some() {
            flags |= 32;
        }
        if self.relay_addresses.is_some() {
            flags |= 64;
        }
        write_uint(&mut out, 1);
        write_uint(&mut out, flags);
        write_uint(&mut out, self.error);
        write_uint(&mut out, self.firewall);
        if let Some(h) = &self.holepunch {
            write_uint(&mut out, h.id);
            write_uint(&mut out, h.relays.len() as u64);
            for r in &h.relays {
                write_addr(&mut out, &r.relay_address);
                write_addr(&mut out, &r.peer_address);
            }
        }
        if !self.addresses4.is_empty() {
            write_addrs(&mut out, &self.addresses4);
        }
        if !self.addresses6.is_empty() {
            write_uint(&mut out, self.addresses6.len() as u64);
            for a in &self.addresses6 {
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.port().to_le_bytes());
            }
        }
        if let Some(u) = &self.udx {
            write_uint(&mut out, 1);
            write_uint(&mut out, u.reusable_socket as u64);
            write_uint(&mut out, u.id);
            write_uint(&mut out, u.seq);
        }
        if self.secret_stream.is_some() {
            write_uint(&mut out, 1);
        }
        if let Some(r) = &self.relay_through {
            write_uint(&mut out, 1);
            write_uint(&mut out, 0);
            out.extend_from_slice(&r.public_key);
            out.extend_from_slice(&r.token);
        }
        if let Some(r) = &self.relay_addresses {
            write_addrs(&mut out, r);
        }
        out
    }

    /// Decode.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let version = d.uint()?;
        if version != 1 {
            return Ok(NoisePayload {
                version,
                ..NoisePayload::default()
            });
        }
        let flags = d.uint()?;
        let error = d.uint()?;
        let firewall = d.uint()?;
        let holepunch = if flags & 1 != 0 {
            let id = d.uint()?;
            let n = d.array_len()?;
            let mut relays = Vec::with_capacity(n.min(d.remaining() / 12));
            for _ in 0..n {
                relays.push(RelayInfo {
                    relay_address: decode_addr(&mut d)?,
                    peer_address: decode_addr(&mut d)?,
                });
            }
            Some(HolepunchInfo { id, relays })
        } else {
            None
        };
        let addresses4 = if flags & 2 != 0 {
            decode_addrs(&mut d)?
        } else {
            Vec::new()
        };
        let addresses6 = if flags & 4 != 0 {
            let n = d.array_len()?;
            let mut v = Vec::with_capacity(n.min(d.remaining() / 18));
            for _ in 0..n {
                v.push(d.ipv6_address()?);
            }
            v
        } else {
            Vec::new()
        };
        let udx = if flags & 8 != 0 {
            let version = d.uint()?;
            let features = d.uint()?;
            Some(UdxInfo {
                version,
                reusable_socket: features & 1 != 0,
                id: d.uint()?,
                seq: d.uint()?,
            })
        } else {
            None
        };
        let secret_stream = if flags & 16 != 0 {
            Some(d.uint()?)
        } else {
            None
        };
        let relay_through = if flags & 32 != 0 {
            let version = d.uint()?;
            d.uint()?;
            Some(RelayThroughInfo {
                version,
                public_key: d.fixed()?,
                token: d.fixed()?,
            })
        } else {
            None
        };
        let relay_addresses = if flags & 64 != 0 {
            Some(decode_addrs(&mut d)?)
        } else {
            None
        };
        Ok(NoisePayload {
            version,
            error,
            firewall,
            holepunch,
            addresses4,
            addresses6,
            udx,
            secret_stream,
            relay_through,
            relay_addresses,
        })
    }
}

/// The plaintext inside a holepunch SecurePayload (`holepunchPayload`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HolepunchPayload {
    /// hyperdht ERROR code.
    pub error: u64,
    /// FIREWALL value.
    pub firewall: u64,
    /// Punch round.
    pub round: u64,
    /// Already connected.
    pub connected: bool,
    /// Punching now.
    pub punching: bool,
    /// The sender's NAT addresses.
    pub addresses: Option<Vec<SocketAddrV4>>,
    /// The receiver's address as the sender sees it.
    pub remote_address: Option<SocketAddrV4>,
    /// The sender's token for the receiver's host.
    pub token: Option<[u8; 32]>,
    /// The receiver's token echoed back.
    pub remote_token: Option<[u8; 32]>,
}

impl HolepunchPayload {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        let flags = self.connected as u64
            | (self.punching as u64) << 1
            | (self.addresses.is_some() as u64) << 2
            | (self.remote_address.is_some() as u64) << 3
            | (self.token.is_some() as u64) << 4
            | (self.remote_token.is_some() as u64) << 5;
        write_uint(&mut out, flags);
        write_uint(&mut out, self.error);
        write_uint(&mut out, self.firewall);
        write_uint(&mut out, self.round);
        if let Some(a) = &self.addresses {
            write_addrs(&mut out, a);
        }
        if let Some(a) = &self.remote_address {
            write_addr(&mut out, a);
        }
        if let Some(t) = &self.token {
            out.extend_from_slice(t);
        }
        if let Some(t) = &self.remote_token {
            out.extend_from_slice(t);
        }
        out
    }
    /// Decode.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let flags = d.uint()?;
        Ok(HolepunchPayload {
            error: d.uint()?,
            firewall: d.uint()?,
            round: d.uint()?,
            connected: flags & 1 != 0,
            punching: flags & 2 != 0,
            addresses: if flags & 4 != 0 {
                Some(decode_addrs(&mut d)?)
            } else {
                None
            },
            remote_address: if flags & 8 != 0 {
                Some(decode_addr(&mut d)?)
            } else {
                None
            },
            token: if flags & 16 != 0 {
                Some(d.fixed()?)
            } else {
                None
            },
            remote_token: if flags & 32 != 0 {
                Some(d.fixed()?)
            } else {
                None
            },
        })
    }
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
