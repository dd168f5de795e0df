//! The hyperdht 6.34.0 messages of connecting by public key (lib/messages.js:29-295,
//! lib/constants.js, lib/router.js:9-13): the PEER_HANDSHAKE and PEER_HOLEPUNCH request values,
//! the `noisePayload` carried inside the Noise IK messages and the `holepunchPayload` carried inside
//! a [`SecurePayload`](crate::dht::holepunch::SecurePayload).
//!
//! Every decoder here takes untrusted bytes and returns a typed [`DecodeError`]; like JS
//! `c.decode`, trailing bytes after a value are ignored.

use core::net::{SocketAddrV4, SocketAddrV6};

use crate::crypto::{namespace, Hash};
use crate::encoding::{uint_len, write_buffer, write_uint, DecodeError, Decoder};

/// hyperdht user commands (constants.js:3-15) used by connecting.
pub mod command {
    /// PEER_HANDSHAKE: a Noise IK message routed to a server.
    pub const PEER_HANDSHAKE: u64 = 0;
    /// PEER_HOLEPUNCH: an encrypted holepunch round routed to a server.
    pub const PEER_HOLEPUNCH: u64 = 1;
    /// FIND_PEER: find the nodes a server announced itself to.
    pub const FIND_PEER: u64 = 2;
}

/// hyperdht error codes carried in `noisePayload.error` and `holepunchPayload.error`.
pub mod error_code {
    /// No error.
    pub const NONE: u64 = 0;
    /// The side gave up (handshake without udx info, holepunch aborted).
    pub const ABORTED: u64 = 1;
    /// The noise payload had a version other than 1.
    pub const VERSION_MISMATCH: u64 = 2;
    /// The random-NAT punch limiter is busy: try again in 10-20 s.
    pub const TRY_LATER: u64 = 3;
}

/// The NAT type a side announces (constants.js FIREWALL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Firewall {
    /// Not analysed (yet).
    #[default]
    Unknown = 0,
    /// Reachable from anywhere (the DHT node is not firewalled).
    Open = 1,
    /// A NAT that maps one local socket to one public port for every destination.
    Consistent = 2,
    /// A NAT that picks a new public port per destination.
    Random = 3,
}

impl Firewall {
    /// The wire number.
    pub fn to_wire(self) -> u64 {
        self as u64
    }
    /// From the wire. JS compares numerically (`firewall >= RANDOM`), so anything above 3 behaves
    /// as RANDOM.
    pub fn from_wire(n: u64) -> Self {
        match n {
            0 => Firewall::Unknown,
            1 => Firewall::Open,
            2 => Firewall::Consistent,
            _ => Firewall::Random,
        }
    }
    /// holepuncher.js `coerceFirewall`: OPEN punches like CONSISTENT.
    pub fn coerce(self) -> Self {
        if self == Firewall::Open {
            Firewall::Consistent
        } else {
            self
        }
    }
}

/// The routing mode of a PEER_HANDSHAKE / PEER_HOLEPUNCH value (router.js:9-13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Client to the first node.
    FromClient,
    /// Server back to a relaying node.
    FromServer,
    /// First relay to the server (or to the second relay).
    FromRelay,
    /// Second relay to the server.
    FromSecondRelay,
    /// The final answer to the client.
    Reply,
    /// A mode number this version does not know (JS ignores such requests).
    Other(u64),
}

impl Mode {
    /// The wire number.
    pub fn to_wire(self) -> u64 {
        match self {
            Mode::FromClient => 0,
            Mode::FromServer => 1,
            Mode::FromRelay => 2,
            Mode::FromSecondRelay => 3,
            Mode::Reply => 4,
            Mode::Other(n) => n,
        }
    }
    /// From the wire.
    pub fn from_wire(n: u64) -> Self {
        match n {
            0 => Mode::FromClient,
            1 => Mode::FromServer,
            2 => Mode::FromRelay,
            3 => Mode::FromSecondRelay,
            4 => Mode::Reply,
            n => Mode::Other(n),
        }
    }
}

/// `NS.PEER_HANDSHAKE` (the Noise prologue) and `NS.PEER_HOLEPUNCH` (keys the holepunch secret):
/// `namespace('hyperswarm/dht', [.., 0, 1, ..])`.
pub fn ns_peer_handshake() -> Hash {
    namespace(b"hyperswarm/dht", 2)[0]
}
/// See [`ns_peer_handshake`].
pub fn ns_peer_holepunch() -> Hash {
    namespace(b"hyperswarm/dht", 2)[1]
}

fn write_ipv4(out: &mut Vec<u8>, a: &SocketAddrV4) {
    out.extend_from_slice(&a.ip().octets());
    out.extend_from_slice(&a.port().to_le_bytes());
}
fn write_ipv6(out: &mut Vec<u8>, a: &SocketAddrV6) {
    out.extend_from_slice(&a.ip().octets());
    out.extend_from_slice(&a.port().to_le_bytes());
}
fn write_ipv4_array(out: &mut Vec<u8>, v: &[SocketAddrV4]) {
    write_uint(out, v.len() as u64);
    for a in v {
        write_ipv4(out, a);
    }
}
fn read_ipv4_array(d: &mut Decoder<'_>) -> Result<Vec<SocketAddrV4>, DecodeError> {
    let n = d.array_len()?;
    let mut v = Vec::with_capacity(n.min(d.remaining() / 6));
    for _ in 0..n {
        v.push(d.ipv4_address()?);
    }
    Ok(v)
}

/// The PEER_HANDSHAKE value (messages.js:29-54).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeMessage {
    /// Routing mode.
    pub mode: Mode,
    /// The Noise IK message.
    pub noise: Vec<u8>,
    /// The other end's address, as a relay saw it.
    pub peer_address: Option<SocketAddrV4>,
    /// The first relay's address (FROM_SECOND_RELAY).
    pub relay_address: Option<SocketAddrV4>,
}

impl HandshakeMessage {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(2 + uint_len(self.noise.len() as u64) + self.noise.len() + 12);
        let flags =
            u64::from(self.peer_address.is_some()) | (u64::from(self.relay_address.is_some()) << 1);
        write_uint(&mut out, flags);
        write_uint(&mut out, self.mode.to_wire());
        write_buffer(&mut out, &self.noise);
        if let Some(a) = &self.peer_address {
            write_ipv4(&mut out, a);
        }
        if let Some(a) = &self.relay_address {
            write_ipv4(&mut out, a);
        }
        out
    }
    /// Decode untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let flags = d.uint()?;
        let mode = Mode::from_wire(d.uint()?);
        let noise = d.buffer()?.to_vec();
        let peer_address = if flags & 1 != 0 {
            Some(d.ipv4_address()?)
        } else {
            None
        };
        let relay_address = if flags & 2 != 0 {
            Some(d.ipv4_address()?)
        } else {
            None
        };
        Ok(HandshakeMessage {
            mode,
            noise,
            peer_address,
            relay_address,
        })
    }
}

/// The PEER_HOLEPUNCH value (messages.js:227-251).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolepunchMessage {
    /// Routing mode.
    pub mode: Mode,
    /// The server's handshake slot (`holepunch.id` of its noise payload).
    pub id: u64,
    /// A [`SecurePayload`](crate::dht::holepunch::SecurePayload) box.
    pub payload: Vec<u8>,
    /// The other end's address.
    pub peer_address: Option<SocketAddrV4>,
}

impl HolepunchMessage {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.payload.len() + 8);
        write_uint(&mut out, u64::from(self.peer_address.is_some()));
        write_uint(&mut out, self.mode.to_wire());
        write_uint(&mut out, self.id);
        write_buffer(&mut out, &self.payload);
        if let Some(a) = &self.peer_address {
            write_ipv4(&mut out, a);
        }
        out
    }
    /// Decode untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let flags = d.uint()?;
        let mode = Mode::from_wire(d.uint()?);
        let id = d.uint()?;
        let payload = d.buffer()?.to_vec();
        let peer_address = if flags & 1 != 0 {
            Some(d.ipv4_address()?)
        } else {
            None
        };
        Ok(HolepunchMessage {
            mode,
            id,
            payload,
            peer_address,
        })
    }
}

/// One announce relay of a server: the DHT node it announced to, and its own address as that
/// node saw it (`relayInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayInfo {
    /// The relaying DHT node.
    pub relay_address: SocketAddrV4,
    /// The server's address as that node saw it.
    pub peer_address: SocketAddrV4,
}

/// `holepunchInfo`: the server's handshake slot and its announce relays.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HolepunchInfo {
    /// The slot id the client names in PEER_HOLEPUNCH.
    pub id: u64,
    /// Nodes through which PEER_HOLEPUNCH reaches the server.
    pub relays: Vec<RelayInfo>,
}

/// `udxInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdxInfo {
    /// Version (1 on encode; not checked on decode, as in JS).
    pub version: u64,
    /// Features bit 0.
    pub reusable_socket: bool,
    /// The sender's UDX stream id.
    pub id: u64,
    /// Always 0.
    pub seq: u64,
}

/// `relayThroughInfo`: the blind relay the sender wants to pair through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayThroughInfo {
    /// Version (1 on encode).
    pub version: u64,
    /// The relay's public key.
    pub public_key: [u8; 32],
    /// The pairing token.
    pub token: [u8; 32],
}

/// `noisePayload` (messages.js:155-225): the plaintext of both Noise IK messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoisePayload {
    /// Always encoded as 1. A decoded version other than 1 leaves every other field at its default.
    pub version: u64,
    /// An [`error_code`].
    pub error: u64,
    /// The sender's NAT type.
    pub firewall: Firewall,
    /// The server's holepunch slot and relays (absent when the server is open).
    pub holepunch: Option<HolepunchInfo>,
    /// IPv4 addresses the sender can be reached at (flag unset when empty).
    pub addresses4: Vec<SocketAddrV4>,
    /// IPv6 addresses (flag unset when empty).
    pub addresses6: Vec<SocketAddrV6>,
    /// UDX stream info.
    pub udx: Option<UdxInfo>,
    /// secret-stream version (always 1): present means the sender speaks secret-stream.
    pub secret_stream: Option<u64>,
    /// The blind relay the sender wants to use.
    pub relay_through: Option<RelayThroughInfo>,
    /// The server's announce relays, for a reconnect cache (`Some(empty)` still sets the flag).
    pub relay_addresses: Option<Vec<SocketAddrV4>>,
}

impl Default for NoisePayload {
    fn default() -> Self {
        NoisePayload {
            version: 1,
            error: error_code::NONE,
            firewall: Firewall::Unknown,
            holepunch: None,
            addresses4: Vec::new(),
            addresses6: Vec::new(),
            udx: None,
            secret_stream: None,
            relay_through: None,
            relay_addresses: None,
        }
    }
}

impl NoisePayload {
    /// Encode (version 1, whatever `self.version` says, as JS does).
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
        write_uint(&mut out, self.firewall.to_wire());
        if let Some(h) = &self.holepunch {
            write_uint(&mut out, h.id);
            write_uint(&mut out, h.relays.len() as u64);
            for r in &h.relays {
                write_ipv4(&mut out, &r.relay_address);
                write_ipv4(&mut out, &r.peer_address);
            }
        }
        if !self.addresses4.is_empty() {
            write_ipv4_array(&mut out, &self.addresses4);
        }
        if !self.addresses6.is_empty() {
            write_uint(&mut out, self.addresses6.len() as u64);
            for a in &self.addresses6 {
                write_ipv6(&mut out, a);
            }
        }
        if let Some(u) = &self.udx {
            write_uint(&mut out, 1);
            write_uint(&mut out, u64::from(u.reusable_socket));
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
        if let Some(v) = &self.relay_addresses {
            write_ipv4_array(&mut out, v);
        }
        out
    }

    /// Decode untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let version = d.uint()?;
        if version != 1 {
            return Ok(NoisePayload {
                version,
                ..Default::default()
            });
        }
        let flags = d.uint()?;
        let error = d.uint()?;
        let firewall = Firewall::from_wire(d.uint()?);
        let holepunch = if flags & 1 != 0 {
            let id = d.uint()?;
            let n = d.array_len()?;
            let mut relays = Vec::with_capacity(n.min(d.remaining() / 12));
            for _ in 0..n {
                relays.push(RelayInfo {
                    relay_address: d.ipv4_address()?,
                    peer_address: d.ipv4_address()?,
                });
            }
            Some(HolepunchInfo { id, relays })
        } else {
            None
        };
        let addresses4 = if flags & 2 != 0 {
            read_ipv4_array(&mut d)?
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
            let _flags = d.uint()?;
            Some(RelayThroughInfo {
                version,
                public_key: d.fixed()?,
                token: d.fixed()?,
            })
        } else {
            None
        };
        let relay_addresses = if flags & 64 != 0 {
            Some(read_ipv4_array(&mut d)?)
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

/// `holepunchPayload` (messages.js:253-295): one side's state in a holepunch round.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HolepunchPayload {
    /// An [`error_code`].
    pub error: u64,
    /// The sender's NAT type as its puncher analysed it.
    pub firewall: Firewall,
    /// The round counter.
    pub round: u64,
    /// The sender's puncher already has a connection.
    pub connected: bool,
    /// The sender is punching (or ready to).
    pub punching: bool,
    /// The sender's public addresses (`nat.addresses`).
    pub addresses: Option<Vec<SocketAddrV4>>,
    /// The address the sender opened a session to (fast open).
    pub remote_address: Option<SocketAddrV4>,
    /// `SecurePayload::token(peer host)`: echoed back to prove the address.
    pub token: Option<[u8; 32]>,
    /// The remote's token, echoed.
    pub remote_token: Option<[u8; 32]>,
}

impl HolepunchPayload {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        let flags = u64::from(self.connected)
            | (u64::from(self.punching) << 1)
            | (u64::from(self.addresses.is_some()) << 2)
            | (u64::from(self.remote_address.is_some()) << 3)
            | (u64::from(self.token.is_some()) << 4)
            | (u64::from(self.remote_token.is_some()) << 5);
        write_uint(&mut out, flags);
        write_uint(&mut out, self.error);
        write_uint(&mut out, self.firewall.to_wire());
        write_uint(&mut out, self.round);
        if let Some(a) = &self.addresses {
            write_ipv4_array(&mut out, a);
        }
        if let Some(a) = &self.remote_address {
            write_ipv4(&mut out, a);
        }
        if let Some(t) = &self.token {
            out.extend_from_slice(t);
        }
        if let Some(t) = &self.remote_token {
            out.extend_from_slice(t);
        }
        out
    }

    /// Decode untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let flags = d.uint()?;
        let error = d.uint()?;
        let firewall = Firewall::from_wire(d.uint()?);
        let round = d.uint()?;
        let addresses = if flags & 4 != 0 {
            Some(read_ipv4_array(&mut d)?)
        } else {
            None
        };
        let remote_address = if flags & 8 != 0 {
            Some(d.ipv4_address()?)
        } else {
            None
        };
        let token = if flags & 16 != 0 {
            Some(d.fixed()?)
        } else {
            None
        };
        let remote_token = if flags & 32 != 0 {
            Some(d.fixed()?)
        } else {
            None
        };
        Ok(HolepunchPayload {
            error,
            firewall,
            round,
            connected: flags & 1 != 0,
            punching: flags & 2 != 0,
            addresses,
            remote_address,
            token,
            remote_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    pub(crate) fn vectors() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/vectors/net/vectors-static.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }
    fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port)
    }

    #[test]
    fn namespaces_match_js() {
        let j = vectors();
        assert_eq!(
            hex::encode(ns_peer_handshake()),
            j["hyperdht"]["NS"]["PEER_HANDSHAKE"]
        );
        assert_eq!(
            hex::encode(ns_peer_holepunch()),
            j["hyperdht"]["NS"]["PEER_HOLEPUNCH"]
        );
    }

    #[test]
    fn handshake_and_holepunch_messages_match_js() {
        let j = vectors();
        let m = &j["hyperdht"]["messages"];
        let cases = [
            (
                "handshake_fromClient",
                HandshakeMessage {
                    mode: Mode::FromClient,
                    noise: b"noise".to_vec(),
                    peer_address: None,
                    relay_address: None,
                },
            ),
            (
                "handshake_fromRelay",
                HandshakeMessage {
                    mode: Mode::FromRelay,
                    noise: b"noise".to_vec(),
                    peer_address: Some(v4(1, 2, 3, 4, 1234)),
                    relay_address: None,
                },
            ),
            (
                "handshake_fromSecondRelay",
                HandshakeMessage {
                    mode: Mode::FromSecondRelay,
                    noise: b"noise".to_vec(),
                    peer_address: Some(v4(1, 2, 3, 4, 1234)),
                    relay_address: Some(v4(5, 6, 7, 8, 5678)),
                },
            ),
            (
                "handshake_reply",
                HandshakeMessage {
                    mode: Mode::Reply,
                    noise: b"noise".to_vec(),
                    peer_address: Some(v4(1, 2, 3, 4, 1234)),
                    relay_address: None,
                },
            ),
        ];
        for (name, msg) in cases {
            assert_eq!(hex::encode(msg.encode()), m[name], "{name}");
            assert_eq!(HandshakeMessage::decode(&msg.encode()).unwrap(), msg);
        }
        let hp = [
            (
                "holepunch_fromClient",
                HolepunchMessage {
                    mode: Mode::FromClient,
                    id: 7,
                    payload: b"p".to_vec(),
                    peer_address: Some(v4(1, 2, 3, 4, 1234)),
                },
            ),
            (
                "holepunch_reply",
                HolepunchMessage {
                    mode: Mode::Reply,
                    id: 7,
                    payload: b"p".to_vec(),
                    peer_address: None,
                },
            ),
        ];
        for (name, msg) in hp {
            assert_eq!(hex::encode(msg.encode()), m[name], "{name}");
            assert_eq!(HolepunchMessage::decode(&msg.encode()).unwrap(), msg);
        }
    }

    #[test]
    fn noise_payloads_match_js() {
        let j = vectors();
        let m = &j["hyperdht"]["messages"];
        let client = NoisePayload {
            addresses4: vec![v4(192, 168, 1, 2, 49737)],
            udx: Some(UdxInfo {
                version: 1,
                reusable_socket: false,
                id: 0x01020304,
                seq: 0,
            }),
            secret_stream: Some(1),
            ..Default::default()
        };
        assert_eq!(hex::encode(client.encode()), m["noisePayload_client"]);
        assert_eq!(NoisePayload::decode(&client.encode()).unwrap(), client);
        let full = NoisePayload {
            firewall: Firewall::Consistent,
            holepunch: Some(HolepunchInfo {
                id: 3,
                relays: vec![RelayInfo {
                    relay_address: v4(9, 9, 9, 9, 9),
                    peer_address: v4(8, 8, 8, 8, 8),
                }],
            }),
            addresses4: vec![v4(1, 1, 1, 1, 1)],
            addresses6: vec![SocketAddrV6::new(core::net::Ipv6Addr::LOCALHOST, 2, 0, 0)],
            udx: Some(UdxInfo {
                version: 1,
                reusable_socket: true,
                id: 5,
                seq: 0,
            }),
            secret_stream: Some(1),
            relay_through: Some(RelayThroughInfo {
                version: 1,
                public_key: [0xee; 32],
                token: [0xdd; 32],
            }),
            relay_addresses: Some(vec![v4(7, 7, 7, 7, 7)]),
            ..Default::default()
        };
        assert_eq!(hex::encode(full.encode()), m["noisePayload_server_full"]);
        assert_eq!(NoisePayload::decode(&full.encode()).unwrap(), full);
        // A version other than 1 decodes to defaults without reading further.
        let other = NoisePayload::decode(&[2, 0xff]).unwrap();
        assert_eq!(other.version, 2);
        assert!(other.udx.is_none());
    }

    #[test]
    fn holepunch_payloads_match_js() {
        let j = vectors();
        let m = &j["hyperdht"]["messages"];
        let probe = HolepunchPayload {
            firewall: Firewall::Consistent,
            addresses: Some(vec![v4(1, 2, 3, 4, 40000)]),
            remote_address: Some(v4(5, 6, 7, 8, 50000)),
            ..Default::default()
        };
        assert_eq!(hex::encode(probe.encode()), m["holepunchPayload_probe"]);
        assert_eq!(HolepunchPayload::decode(&probe.encode()).unwrap(), probe);
        let punch = HolepunchPayload {
            firewall: Firewall::Consistent,
            round: 1,
            punching: true,
            addresses: Some(vec![v4(1, 2, 3, 4, 40000)]),
            token: Some([1; 32]),
            remote_token: Some([2; 32]),
            ..Default::default()
        };
        assert_eq!(hex::encode(punch.encode()), m["holepunchPayload_punch"]);
        assert_eq!(HolepunchPayload::decode(&punch.encode()).unwrap(), punch);
    }

    #[test]
    fn truncated_inputs_are_typed_errors() {
        let full = NoisePayload {
            holepunch: Some(HolepunchInfo {
                id: 3,
                relays: vec![RelayInfo {
                    relay_address: v4(9, 9, 9, 9, 9),
                    peer_address: v4(8, 8, 8, 8, 8),
                }],
            }),
            addresses4: vec![v4(1, 1, 1, 1, 1)],
            udx: Some(UdxInfo::default()),
            relay_through: Some(RelayThroughInfo {
                version: 1,
                public_key: [1; 32],
                token: [2; 32],
            }),
            relay_addresses: Some(vec![]),
            ..Default::default()
        }
        .encode();
        for n in 0..full.len() {
            assert!(NoisePayload::decode(&full[..n]).is_err(), "{n}");
        }
        let hs = HandshakeMessage {
            mode: Mode::FromSecondRelay,
            noise: vec![1; 10],
            peer_address: Some(v4(1, 1, 1, 1, 1)),
            relay_address: Some(v4(2, 2, 2, 2, 2)),
        }
        .encode();
        for n in 0..hs.len() {
            assert!(HandshakeMessage::decode(&hs[..n]).is_err());
        }
        // A huge array count is refused, not allocated.
        assert!(NoisePayload::decode(&[1, 2, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
