//! The 28 messages of `@hyperswarm/dht-relay` 0.4.3 (lib/messages.js, lib/codecs.js), byte for
//! byte. Every message is one protomux message of the channel [`PROTOCOL`](super::PROTOCOL);
//! its type is its index in [`Message::TYPES`].
//!
//! The relay's codecs use compact-encoding 2.x: `id` is a fixed 4-byte little-endian `uint32`,
//! `buffer` a length-prefixed byte string (length 0 decodes as empty), `flags` one raw byte.
//! Like JS, decoders ignore trailing bytes; unlike JS they never read past the end (a typed
//! [`DecodeError`] instead).

use core::net::SocketAddrV4;

use crate::dht::rpc::messages::{decode_addr, encode_addr};
use crate::encoding::{write_buffer, write_string, write_uint, DecodeError, Decoder};

/// The key material a custodial message carries: the public key, and the secret key when the
/// client hands it to the relay (flag `custodial`).
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// The 64-byte secret key (seed ‖ public key), only in custodial mode.
    pub secret_key: Option<[u8; 64]>,
}

impl core::fmt::Debug for Keys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Keys")
            .field("public_key", &self.public_key)
            .field("secret_key", &self.secret_key.map(|_| "<secret>"))
            .finish()
    }
}

/// How the relay identifies a finished Noise handshake in `connection` and `open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeRef {
    /// Custodial: the relay ran the handshake; its 64-byte hash.
    Hash([u8; 64]),
    /// Non-custodial: the client ran it; the id of its handshake session.
    Id(u32),
}

/// `destroy`: which stream, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destroy {
    /// `true`: `alias` is the sender's alias of a paired stream; `false`: it is the receiver's
    /// alias of a stream still connecting (the `remoteAlias` field).
    pub paired: bool,
    /// The alias.
    pub alias: u32,
    /// The error message, if the stream failed.
    pub error: Option<String>,
}

/// One announcer in a lookup result (`peer` codec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its public key.
    pub public_key: [u8; 32],
    /// DHT nodes that relay handshakes to it.
    pub relay_addresses: Vec<SocketAddrV4>,
}

/// A DHT node in a lookup result (`node` codec): its id (may be absent) and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node id (32 bytes when known; empty when not).
    pub id: Vec<u8>,
    /// Its address.
    pub addr: SocketAddrV4,
}

/// The data of a `result` of `lookup`, `announce` and `unannounce` (`announcers` codec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcers {
    /// The node's write token.
    pub token: [u8; 32],
    /// The node that answered.
    pub from: Node,
    /// Our address as it saw us.
    pub to: Node,
    /// The announcers it stores.
    pub peers: Vec<Peer>,
}

/// `signAnnounce` / `signUnannounce`: the relay asks a non-custodial client to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequest {
    /// The request id, echoed in `signature`.
    pub id: u32,
    /// The query id (announce) or the server alias (listen) whose key pair signs.
    pub signee: u32,
    /// The storing node's round-trip token.
    pub token: [u8; 32],
    /// The storing node's id.
    pub peer_id: Vec<u8>,
    /// The relay addresses in the record.
    pub relay_addresses: Vec<SocketAddrV4>,
}

/// A dht-relay message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// 0 `handshake`: the client's default key pair (first message of a session).
    Handshake(Keys),
    /// 1 `ping` (the relay, every 15 s).
    Ping,
    /// 2 `pong`.
    Pong,
    /// 3 `connect`: connect `keys` to `remote_public_key`; the stream is `alias` (client's).
    Connect {
        /// Client's stream alias.
        alias: u32,
        /// The key pair to connect with.
        keys: Keys,
        /// The server to connect to.
        remote_public_key: [u8; 32],
    },
    /// 4 `connection`: a server got a connection.
    Connection {
        /// The relay's stream alias.
        alias: u32,
        /// The relay's server alias.
        server_alias: u32,
        /// The client's key.
        remote_public_key: [u8; 32],
        /// The handshake.
        handshake: HandshakeRef,
    },
    /// 5 `connected`: the client's alias for a `connection`.
    Connected {
        /// Client's stream alias.
        alias: u32,
        /// Relay's stream alias.
        remote_alias: u32,
    },
    /// 6 `incoming`: ask a custodial client's firewall.
    Incoming {
        /// Request id.
        id: u32,
        /// The relay's server alias.
        server_alias: u32,
        /// The connecting peer's key.
        remote_public_key: [u8; 32],
        /// Its encoded noise payload.
        payload: Vec<u8>,
    },
    /// 7 `deny`.
    Deny {
        /// Request id.
        id: u32,
    },
    /// 8 `accept`.
    Accept {
        /// Request id.
        id: u32,
    },
    /// 9 `destroy`.
    Destroy(Destroy),
    /// 10 `listen`: create a server for `keys`; `alias` is the client's.
    Listen {
        /// Client's server alias.
        alias: u32,
        /// The server's key pair.
        keys: Keys,
    },
    /// 11 `listening`.
    Listening {
        /// Relay's server alias.
        alias: u32,
        /// Client's server alias.
        remote_alias: u32,
        /// The server's address.
        addr: SocketAddrV4,
    },
    /// 12 `close`: close a server (the sender's alias... the client's).
    Close {
        /// Client's server alias.
        alias: u32,
    },
    /// 13 `closed`.
    Closed {
        /// Relay's server alias.
        alias: u32,
    },
    /// 14 `open`: a `connect` succeeded.
    Open {
        /// Relay's stream alias.
        alias: u32,
        /// Client's stream alias.
        remote_alias: u32,
        /// The handshake.
        handshake: HandshakeRef,
    },
    /// 15 `end`: the sender's side of stream `alias` (the sender's alias) ended.
    End {
        /// Sender's stream alias.
        alias: u32,
    },
    /// 16 `data`: chunks of stream `alias` (the sender's alias).
    Data {
        /// Sender's stream alias.
        alias: u32,
        /// The chunks, each one message of the stream.
        data: Vec<Vec<u8>>,
    },
    /// 17 `result`: one result of query `id`.
    Result {
        /// Query id.
        id: u32,
        /// Query-specific data ([`Announcers`] for lookup/announce/unannounce).
        data: Vec<u8>,
    },
    /// 18 `finished`.
    Finished {
        /// Query id.
        id: u32,
    },
    /// 19 `lookup`.
    Lookup {
        /// Query id.
        id: u32,
        /// The topic.
        topic: [u8; 32],
    },
    /// 20 `announce`.
    Announce {
        /// Query id.
        id: u32,
        /// The topic.
        topic: [u8; 32],
        /// The key pair to announce.
        keys: Keys,
    },
    /// 21 `unannounce`.
    Unannounce {
        /// Query id.
        id: u32,
        /// The topic.
        topic: [u8; 32],
        /// The key pair that announced.
        keys: Keys,
    },
    /// 22 `signAnnounce`.
    SignAnnounce(SignRequest),
    /// 23 `signUnannounce`.
    SignUnannounce(SignRequest),
    /// 24 `signature`.
    Signature {
        /// Request id.
        id: u32,
        /// The Ed25519 signature.
        signature: Vec<u8>,
    },
    /// 25 `noiseSend`: encrypt `payload` into the next Noise message of handshake `id`.
    NoiseSend {
        /// Handshake session id (the relay's).
        id: u32,
        /// For the initiator: the client's stream alias the handshake belongs to.
        remote_stream_alias: Option<u32>,
        /// The encoded noise payload.
        payload: Vec<u8>,
    },
    /// 26 `noiseReceive`: decrypt a Noise message of handshake `id`.
    NoiseReceive {
        /// Handshake session id (the relay's).
        id: u32,
        /// For the responder: the relay's server alias the handshake belongs to.
        server_alias: Option<u32>,
        /// The Noise message.
        payload: Vec<u8>,
    },
    /// 27 `noiseReply`.
    NoiseReply {
        /// Handshake session id.
        id: u32,
        /// The client initiated the handshake.
        is_initiator: bool,
        /// The Noise message (after a send) or the decrypted noise payload (after a receive);
        /// empty when the responder's firewall denied the peer.
        payload: Vec<u8>,
        /// The responder's remote key after its first receive.
        remote_public_key: Option<[u8; 32]>,
        /// When complete: the secret-stream id of the remote and the holepunch secret.
        complete: Option<([u8; 32], [u8; 32])>,
    },
}

fn id(d: &mut Decoder<'_>) -> Result<u32, DecodeError> {
    d.u32()
}

fn put_id(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn buffer(d: &mut Decoder<'_>) -> Result<Vec<u8>, DecodeError> {
    Ok(d.buffer()?.to_vec())
}

fn keys_flags(k: &Keys) -> u8 {
    u8::from(k.secret_key.is_some())
}

fn decode_keys_tail(
    d: &mut Decoder<'_>,
    custodial: bool,
) -> Result<([u8; 32], Option<[u8; 64]>), DecodeError> {
    let pk = d.fixed::<32>()?;
    let sk = if custodial {
        Some(d.fixed::<64>()?)
    } else {
        None
    };
    Ok((pk, sk))
}

fn put_keys(out: &mut Vec<u8>, k: &Keys) {
    out.extend_from_slice(&k.public_key);
    if let Some(sk) = &k.secret_key {
        out.extend_from_slice(sk);
    }
}

fn put_handshake_ref(out: &mut Vec<u8>, h: &HandshakeRef) {
    match h {
        HandshakeRef::Hash(hash) => out.extend_from_slice(hash),
        HandshakeRef::Id(i) => put_id(out, *i),
    }
}

fn decode_handshake_ref(d: &mut Decoder<'_>, custodial: bool) -> Result<HandshakeRef, DecodeError> {
    Ok(if custodial {
        HandshakeRef::Hash(d.fixed::<64>()?)
    } else {
        HandshakeRef::Id(id(d)?)
    })
}

fn put_addrs(out: &mut Vec<u8>, addrs: &[SocketAddrV4]) {
    write_uint(out, addrs.len() as u64);
    for a in addrs {
        out.extend_from_slice(&encode_addr(a));
    }
}

fn decode_addrs(d: &mut Decoder<'_>) -> Result<Vec<SocketAddrV4>, DecodeError> {
    let n = d.array_len()?;
    let mut v = Vec::with_capacity(n.min(d.remaining() / 6));
    for _ in 0..n {
        v.push(decode_addr(d)?);
    }
    Ok(v)
}

fn put_sign_request(out: &mut Vec<u8>, s: &SignRequest) {
    put_id(out, s.id);
    put_id(out, s.signee);
    out.extend_from_slice(&s.token);
    write_buffer(out, &s.peer_id);
    put_addrs(out, &s.relay_addresses);
}

fn decode_sign_request(d: &mut Decoder<'_>) -> Result<SignRequest, DecodeError> {
    Ok(SignRequest {
        id: id(d)?,
        signee: id(d)?,
        token: d.fixed()?,
        peer_id: buffer(d)?,
        relay_addresses: decode_addrs(d)?,
    })
}

impl Message {
    /// The message names, by type.
    pub const TYPES: [&'static str; 28] = [
        "handshake",
        "ping",
        "pong",
        "connect",
        "connection",
        "connected",
        "incoming",
        "deny",
        "accept",
        "destroy",
        "listen",
        "listening",
        "close",
        "closed",
        "open",
        "end",
        "data",
        "result",
        "finished",
        "lookup",
        "announce",
        "unannounce",
        "signAnnounce",
        "signUnannounce",
        "signature",
        "noiseSend",
        "noiseReceive",
        "noiseReply",
    ];

    /// The protomux message type.
    pub fn message_type(&self) -> u64 {
        match self {
            Message::Handshake(_) => 0,
            Message::Ping => 1,
            Message::Pong => 2,
            Message::Connect { .. } => 3,
            Message::Connection { .. } => 4,
            Message::Connected { .. } => 5,
            Message::Incoming { .. } => 6,
            Message::Deny { .. } => 7,
            Message::Accept { .. } => 8,
            Message::Destroy(_) => 9,
            Message::Listen { .. } => 10,
            Message::Listening { .. } => 11,
            Message::Close { .. } => 12,
            Message::Closed { .. } => 13,
            Message::Open { .. } => 14,
            Message::End { .. } => 15,
            Message::Data { .. } => 16,
            Message::Result { .. } => 17,
            Message::Finished { .. } => 18,
            Message::Lookup { .. } => 19,
            Message::Announce { .. } => 20,
            Message::Unannounce { .. } => 21,
            Message::SignAnnounce(_) => 22,
            Message::SignUnannounce(_) => 23,
            Message::Signature { .. } => 24,
            Message::NoiseSend { .. } => 25,
            Message::NoiseReceive { .. } => 26,
            Message::NoiseReply { .. } => 27,
        }
    }

    /// The payload bytes (without the protomux type).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Message::Handshake(k) => {
                out.push(keys_flags(k));
                put_keys(&mut out, k);
            }
            Message::Ping | Message::Pong => {}
            Message::Connect {
                alias,
                keys,
                remote_public_key,
            } => {
                out.push(keys_flags(keys));
                put_id(&mut out, *alias);
                put_keys(&mut out, keys);
                out.extend_from_slice(remote_public_key);
            }
            Message::Connection {
                alias,
                server_alias,
                remote_public_key,
                handshake,
            } => {
                out.push(u8::from(matches!(handshake, HandshakeRef::Hash(_))));
                put_id(&mut out, *alias);
                put_id(&mut out, *server_alias);
                out.extend_from_slice(remote_public_key);
                put_handshake_ref(&mut out, handshake);
            }
            Message::Connected {
                alias,
                remote_alias,
            } => {
                put_id(&mut out, *alias);
                put_id(&mut out, *remote_alias);
            }
            Message::Incoming {
                id,
                server_alias,
                remote_public_key,
                payload,
            } => {
                put_id(&mut out, *id);
                put_id(&mut out, *server_alias);
                out.extend_from_slice(remote_public_key);
                write_buffer(&mut out, payload);
            }
            Message::Deny { id } | Message::Accept { id } => put_id(&mut out, *id),
            Message::Destroy(d) => {
                out.push(u8::from(d.paired) | if d.error.is_some() { 2 } else { 0 });
                put_id(&mut out, d.alias);
                if let Some(e) = &d.error {
                    write_string(&mut out, e);
                }
            }
            Message::Listen { alias, keys } => {
                out.push(keys_flags(keys));
                put_id(&mut out, *alias);
                put_keys(&mut out, keys);
            }
            Message::Listening {
                alias,
                remote_alias,
                addr,
            } => {
                put_id(&mut out, *alias);
                put_id(&mut out, *remote_alias);
                out.extend_from_slice(&encode_addr(addr));
            }
            Message::Close { alias } | Message::Closed { alias } | Message::End { alias } => {
                put_id(&mut out, *alias)
            }
            Message::Open {
                alias,
                remote_alias,
                handshake,
            } => {
                out.push(u8::from(matches!(handshake, HandshakeRef::Hash(_))));
                put_id(&mut out, *alias);
                put_id(&mut out, *remote_alias);
                put_handshake_ref(&mut out, handshake);
            }
            Message::Data { alias, data } => {
                put_id(&mut out, *alias);
                write_uint(&mut out, data.len() as u64);
                for c in data {
                    write_buffer(&mut out, c);
                }
            }
            Message::Result { id, data } => {
                put_id(&mut out, *id);
                write_buffer(&mut out, data);
            }
            Message::Finished { id } => put_id(&mut out, *id),
            Message::Lookup { id, topic } => {
                put_id(&mut out, *id);
                out.extend_from_slice(topic);
            }
            Message::Announce { id, topic, keys } | Message::Unannounce { id, topic, keys } => {
                out.push(keys_flags(keys));
                put_id(&mut out, *id);
                out.extend_from_slice(topic);
                put_keys(&mut out, keys);
            }
            Message::SignAnnounce(s) | Message::SignUnannounce(s) => put_sign_request(&mut out, s),
            Message::Signature { id, signature } => {
                put_id(&mut out, *id);
                write_buffer(&mut out, signature);
            }
            Message::NoiseSend {
                id,
                remote_stream_alias,
                payload,
            } => {
                out.push(u8::from(remote_stream_alias.is_some()));
                put_id(&mut out, *id);
                if let Some(a) = remote_stream_alias {
                    put_id(&mut out, *a);
                }
                write_buffer(&mut out, payload);
            }
            Message::NoiseReceive {
                id,
                server_alias,
                payload,
            } => {
                out.push(u8::from(server_alias.is_none()));
                put_id(&mut out, *id);
                if let Some(a) = server_alias {
                    put_id(&mut out, *a);
                }
                write_buffer(&mut out, payload);
            }
            Message::NoiseReply {
                id,
                is_initiator,
                payload,
                remote_public_key,
                complete,
            } => {
                out.push(u8::from(*is_initiator) | if complete.is_some() { 2 } else { 0 });
                put_id(&mut out, *id);
                write_buffer(&mut out, payload);
                if !is_initiator && complete.is_none() {
                    out.extend_from_slice(&remote_public_key.unwrap_or([0; 32]));
                }
                if let Some((remote_id, secret)) = complete {
                    out.extend_from_slice(remote_id);
                    out.extend_from_slice(secret);
                }
            }
        }
        out
    }

    /// Decodes an untrusted payload of protomux message type `message_type`.
    pub fn decode(message_type: u64, bytes: &[u8]) -> Result<Message, DecodeError> {
        let d = &mut Decoder::new(bytes);
        Ok(match message_type {
            0 => {
                let custodial = d.u8()? & 1 != 0;
                let (public_key, secret_key) = decode_keys_tail(d, custodial)?;
                Message::Handshake(Keys {
                    public_key,
                    secret_key,
                })
            }
            1 => Message::Ping,
            2 => Message::Pong,
            3 => {
                let custodial = d.u8()? & 1 != 0;
                let alias = id(d)?;
                let (public_key, secret_key) = decode_keys_tail(d, custodial)?;
                Message::Connect {
                    alias,
                    keys: Keys {
                        public_key,
                        secret_key,
                    },
                    remote_public_key: d.fixed()?,
                }
            }
            4 => {
                let custodial = d.u8()? & 1 != 0;
                Message::Connection {
                    alias: id(d)?,
                    server_alias: id(d)?,
                    remote_public_key: d.fixed()?,
                    handshake: decode_handshake_ref(d, custodial)?,
                }
            }
            5 => Message::Connected {
                alias: id(d)?,
                remote_alias: id(d)?,
            },
            6 => Message::Incoming {
                id: id(d)?,
                server_alias: id(d)?,
                remote_public_key: d.fixed()?,
                payload: buffer(d)?,
            },
            7 => Message::Deny { id: id(d)? },
            8 => Message::Accept { id: id(d)? },
            9 => {
                let flags = d.u8()?;
                let alias = id(d)?;
                let error = if flags & 2 != 0 {
                    Some(d.string()?.to_owned())
                } else {
                    None
                };
                Message::Destroy(Destroy {
                    paired: flags & 1 != 0,
                    alias,
                    error,
                })
            }
            10 => {
                let custodial = d.u8()? & 1 != 0;
                let alias = id(d)?;
                let (public_key, secret_key) = decode_keys_tail(d, custodial)?;
                Message::Listen {
                    alias,
                    keys: Keys {
                        public_key,
                        secret_key,
                    },
                }
            }
            11 => Message::Listening {
                alias: id(d)?,
                remote_alias: id(d)?,
                addr: decode_addr(d)?,
            },
            12 => Message::Close { alias: id(d)? },
            13 => Message::Closed { alias: id(d)? },
            14 => {
                let custodial = d.u8()? & 1 != 0;
                Message::Open {
                    alias: id(d)?,
                    remote_alias: id(d)?,
                    handshake: decode_handshake_ref(d, custodial)?,
                }
            }
            15 => Message::End { alias: id(d)? },
            16 => {
                let alias = id(d)?;
                let n = d.array_len()?;
                let mut data = Vec::with_capacity(n.min(d.remaining()));
                for _ in 0..n {
                    data.push(buffer(d)?);
                }
                Message::Data { alias, data }
            }
            17 => Message::Result {
                id: id(d)?,
                data: buffer(d)?,
            },
            18 => Message::Finished { id: id(d)? },
            19 => Message::Lookup {
                id: id(d)?,
                topic: d.fixed()?,
            },
            20 | 21 => {
                let custodial = d.u8()? & 1 != 0;
                let qid = id(d)?;
                let topic = d.fixed()?;
                let (public_key, secret_key) = decode_keys_tail(d, custodial)?;
                let keys = Keys {
                    public_key,
                    secret_key,
                };
                if message_type == 20 {
                    Message::Announce {
                        id: qid,
                        topic,
                        keys,
                    }
                } else {
                    Message::Unannounce {
                        id: qid,
                        topic,
                        keys,
                    }
                }
            }
            22 => Message::SignAnnounce(decode_sign_request(d)?),
            23 => Message::SignUnannounce(decode_sign_request(d)?),
            24 => Message::Signature {
                id: id(d)?,
                signature: buffer(d)?,
            },
            25 => {
                let initiator = d.u8()? & 1 != 0;
                let hid = id(d)?;
                let remote_stream_alias = if initiator { Some(id(d)?) } else { None };
                Message::NoiseSend {
                    id: hid,
                    remote_stream_alias,
                    payload: buffer(d)?,
                }
            }
            26 => {
                let initiator = d.u8()? & 1 != 0;
                let hid = id(d)?;
                let server_alias = if initiator { None } else { Some(id(d)?) };
                Message::NoiseReceive {
                    id: hid,
                    server_alias,
                    payload: buffer(d)?,
                }
            }
            27 => {
                let flags = d.u8()?;
                let is_initiator = flags & 1 != 0;
                let complete = flags & 2 != 0;
                let hid = id(d)?;
                let payload = buffer(d)?;
                let remote_public_key = if is_initiator || complete {
                    None
                } else {
                    Some(d.fixed()?)
                };
                let complete = if complete {
                    Some((d.fixed()?, d.fixed()?))
                } else {
                    None
                };
                Message::NoiseReply {
                    id: hid,
                    is_initiator,
                    payload,
                    remote_public_key,
                    complete,
                }
            }
            _ => return Err(DecodeError::Invalid("dht-relay message type")),
        })
    }
}

impl Node {
    fn encode(&self, out: &mut Vec<u8>) {
        write_buffer(out, &self.id);
        out.extend_from_slice(&encode_addr(&self.addr));
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Node, DecodeError> {
        Ok(Node {
            id: buffer(d)?,
            addr: decode_addr(d)?,
        })
    }
}

impl Peer {
    /// The `peer` codec (also what announce signatures cover).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.public_key);
        put_addrs(out, &self.relay_addresses);
    }
}

impl Announcers {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + 40 * self.peers.len());
        out.extend_from_slice(&self.token);
        self.from.encode(&mut out);
        self.to.encode(&mut out);
        write_uint(&mut out, self.peers.len() as u64);
        for p in &self.peers {
            p.encode_into(&mut out);
        }
        out
    }

    /// Decode untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Announcers, DecodeError> {
        let d = &mut Decoder::new(bytes);
        let token = d.fixed()?;
        let from = Node::decode(d)?;
        let to = Node::decode(d)?;
        let n = d.array_len()?;
        let mut peers = Vec::with_capacity(n.min(d.remaining() / 33));
        for _ in 0..n {
            peers.push(Peer {
                public_key: d.fixed()?,
                relay_addresses: decode_addrs(d)?,
            });
        }
        Ok(Announcers {
            token,
            from,
            to,
            peers,
        })
    }
}
