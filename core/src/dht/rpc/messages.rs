//! The dht-rpc 6.27.0 wire format: request and response datagrams, node ids.
//!
//! ```text
//! request  = 0x03 | uint flags(1 id, 2 token, 4 internal, 8 target, 16 value) | u16 tid |
//!            ipv4Address to | [32 id] | [32 token] | uint command | [32 target] | [buffer value]
//! response = 0x13 | uint flags(1 id, 2 token, 4 closerNodes, 8 error, 16 value) | u16 tid |
//!            ipv4Address to | [32 id] | [32 token] | [array(ipv4Address) closerNodes] |
//!            [uint error] | [buffer value]
//! ```
//! (dht-rpc lib/io.js `_encodeRequest`, `Request.decode`, `_sendReply`, `decodeReply`). Flag bit 4
//! means *internal* in requests and *closer nodes* in responses. A value whose flag is set
//! decodes to `Some`, even when empty (compact-encoding 3 decodes a zero-length buffer as an
//! empty buffer); like JS, bytes after the last field are ignored.

use core::net::{Ipv4Addr, SocketAddrV4};

use crate::crypto;
use crate::encoding::{uint_len, write_uint, DecodeError, Decoder};

/// `(type 0 << 4) | version 3`: the first byte of a request.
pub const REQUEST_ID: u8 = 0x03;
/// `(type 1 << 4) | version 3`: the first byte of a response.
pub const RESPONSE_ID: u8 = 0x13;

/// A 32-byte node id, target or token.
pub type NodeId = [u8; 32];

/// A node's id: BLAKE2b-256 of its `ipv4Address` encoding (4 address bytes, then the port
/// little-endian), as dht-rpc's `peer.id(host, port)`.
pub fn node_id(addr: &SocketAddrV4) -> NodeId {
    crypto::hash(&encode_addr(addr))
}

/// The 6-byte `ipv4Address` encoding.
pub fn encode_addr(addr: &SocketAddrV4) -> [u8; 6] {
    let mut b = [0u8; 6];
    b[..4].copy_from_slice(&addr.ip().octets());
    b[4..].copy_from_slice(&addr.port().to_le_bytes());
    b
}

/// Decode a 6-byte `ipv4Address`.
pub fn decode_addr(d: &mut Decoder<'_>) -> Result<SocketAddrV4, DecodeError> {
    let ip = d.fixed::<4>()?;
    Ok(SocketAddrV4::new(Ipv4Addr::from(ip), d.u16()?))
}

fn write_addr(out: &mut Vec<u8>, addr: &SocketAddrV4) {
    out.extend_from_slice(&encode_addr(addr));
}

/// Why a datagram is not a dht-rpc message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the two bytes dht-rpc looks at.
    #[error("datagram of {0} bytes is too short for dht-rpc")]
    TooShort(usize),
    /// The first byte is neither a request (0x03) nor a response (0x13).
    #[error("unknown dht-rpc message type 0x{0:02x}")]
    UnknownType(u8),
    /// It came from an IPv6 address (dht-rpc is IPv4 only).
    #[error("dht-rpc runs over IPv4 only")]
    NotIpv4,
    /// The fields do not decode.
    #[error("malformed dht-rpc message: {0}")]
    Malformed(#[from] DecodeError),
}

/// A decoded request datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPacket<'a> {
    /// Transaction id: the response carries it back.
    pub tid: u16,
    /// The receiver's address as the sender sees it.
    pub to: SocketAddrV4,
    /// The sender's id (only persistent nodes send one, from their server socket).
    pub id: Option<NodeId>,
    /// A token the receiver handed out earlier (writes need one).
    pub token: Option<[u8; 32]>,
    /// An internal dht-rpc command (PING, FIND_NODE, ...) rather than a user (hyperdht) one.
    pub internal: bool,
    /// The command number.
    pub command: u64,
    /// The target key.
    pub target: Option<[u8; 32]>,
    /// The command's payload.
    pub value: Option<&'a [u8]>,
}

/// A decoded response datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePacket<'a> {
    /// The transaction id of the request it answers.
    pub tid: u16,
    /// The requester's address as the responder saw it (a NAT sample).
    pub to: SocketAddrV4,
    /// The responder's id (persistent nodes replying from their server socket).
    pub id: Option<NodeId>,
    /// A write token for the requester's host.
    pub token: Option<[u8; 32]>,
    /// Nodes closer to the request's target; `None` when the flag is not set.
    pub closer_nodes: Option<Vec<SocketAddrV4>>,
    /// 0 for success, 1 unknown command, 2 invalid token, others command-defined.
    pub error: u64,
    /// The reply's payload.
    pub value: Option<&'a [u8]>,
}

/// A decoded dht-rpc datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A request (first byte 0x03).
    Request(RequestPacket<'a>),
    /// A response (first byte 0x13).
    Response(ResponsePacket<'a>),
}

/// Most closer nodes a response may carry before it is rejected. JS takes any count
/// compact-encoding accepts; a datagram cannot hold more than ~10,900 anyway, and a node sends
/// at most k = 20.
pub const MAX_CLOSER_NODES: usize = 256;

/// Decode a dht-rpc datagram.
pub fn decode(bytes: &[u8]) -> Result<Packet<'_>, PacketError> {
    if bytes.len() < 2 {
        return Err(PacketError::TooShort(bytes.len()));
    }
    let mut d = Decoder::new(&bytes[1..]);
    match bytes[0] {
        REQUEST_ID => Ok(Packet::Request(decode_request(&mut d)?)),
        RESPONSE_ID => Ok(Packet::Response(decode_response(&mut d)?)),
        t => Err(PacketError::UnknownType(t)),
    }
}

fn decode_request<'a>(d: &mut Decoder<'a>) -> Result<RequestPacket<'a>, DecodeError> {
    let flags = d.uint()?;
    let tid = d.u16()?;
    let to = decode_addr(d)?;
    let id = if flags & 1 != 0 {
        Some(d.fixed()?)
    } else {
        None
    };
    let token = if flags & 2 != 0 {
        Some(d.fixed()?)
    } else {
        None
    };
    let internal = flags & 4 != 0;
    let command = d.uint()?;
    let target = if flags & 8 != 0 {
        Some(d.fixed()?)
    } else {
        None
    };
    let value = if flags & 16 != 0 {
        Some(d.buffer()?)
    } else {
        None
    };
    Ok(RequestPacket {
        tid,
        to,
        id,
        token,
        internal,
        command,
        target,
        value,
    })
}

fn decode_response<'a>(d: &mut Decoder<'a>) -> Result<ResponsePacket<'a>, DecodeError> {
    let flags = d.uint()?;
    let tid = d.u16()?;
    let to = decode_addr(d)?;
    let id = if flags & 1 != 0 {
        Some(d.fixed()?)
    } else {
        None
    };
    let token = if flags & 2 != 0 {
        Some(d.fixed()?)
    } else {
        None
    };
    let closer_nodes = if flags & 4 != 0 {
        let n = d.array_len()?;
        if n > MAX_CLOSER_NODES {
            return Err(DecodeError::ArrayTooLarge(n as u64));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(decode_addr(d)?);
        }
        Some(v)
    } else {
        None
    };
    let error = if flags & 8 != 0 { d.uint()? } else { 0 };
    let value = if flags & 16 != 0 {
        Some(d.buffer()?)
    } else {
        None
    };
    Ok(ResponsePacket {
        tid,
        to,
        id,
        token,
        closer_nodes,
        error,
        value,
    })
}

impl RequestPacket<'_> {
    /// The datagram bytes (JS `_encodeRequest`).
    pub fn encode(&self) -> Vec<u8> {
        let mut len = 1 + 1 + 2 + 6 + uint_len(self.command);
        len += self.id.map_or(0, |_| 32) + self.token.map_or(0, |_| 32);
        len += self.target.map_or(0, |_| 32);
        len += self.value.map_or(0, |v| uint_len(v.len() as u64) + v.len());
        let mut out = Vec::with_capacity(len);
        out.push(REQUEST_ID);
        let flags = (self.id.is_some() as u8)
            | (self.token.is_some() as u8) << 1
            | (self.internal as u8) << 2
            | (self.target.is_some() as u8) << 3
            | (self.value.is_some() as u8) << 4;
        out.push(flags);
        out.extend_from_slice(&self.tid.to_le_bytes());
        write_addr(&mut out, &self.to);
        if let Some(id) = &self.id {
            out.extend_from_slice(id);
        }
        if let Some(t) = &self.token {
            out.extend_from_slice(t);
        }
        write_uint(&mut out, self.command);
        if let Some(t) = &self.target {
            out.extend_from_slice(t);
        }
        if let Some(v) = self.value {
            write_uint(&mut out, v.len() as u64);
            out.extend_from_slice(v);
        }
        out
    }
}

impl ResponsePacket<'_> {
    /// The datagram bytes (JS `_sendReply`). An empty `closer_nodes` list is left out, as JS
    /// does; `error` 0 is not written.
    pub fn encode(&self) -> Vec<u8> {
        let closer = self.closer_nodes.as_deref().unwrap_or(&[]);
        let mut len = 1 + 1 + 2 + 6;
        len += self.id.map_or(0, |_| 32) + self.token.map_or(0, |_| 32);
        if !closer.is_empty() {
            len += uint_len(closer.len() as u64) + 6 * closer.len();
        }
        if self.error > 0 {
            len += uint_len(self.error);
        }
        len += self.value.map_or(0, |v| uint_len(v.len() as u64) + v.len());
        let mut out = Vec::with_capacity(len);
        out.push(RESPONSE_ID);
        let flags = (self.id.is_some() as u8)
            | (self.token.is_some() as u8) << 1
            | (!closer.is_empty() as u8) << 2
            | ((self.error > 0) as u8) << 3
            | (self.value.is_some() as u8) << 4;
        out.push(flags);
        out.extend_from_slice(&self.tid.to_le_bytes());
        write_addr(&mut out, &self.to);
        if let Some(id) = &self.id {
            out.extend_from_slice(id);
        }
        if let Some(t) = &self.token {
            out.extend_from_slice(t);
        }
        if !closer.is_empty() {
            write_uint(&mut out, closer.len() as u64);
            for a in closer {
                write_addr(&mut out, a);
            }
        }
        if self.error > 0 {
            write_uint(&mut out, self.error);
        }
        if let Some(v) = self.value {
            write_uint(&mut out, v.len() as u64);
            out.extend_from_slice(v);
        }
        out
    }
}
