//! The client's side of a dht-relay session (JS `@hyperswarm/dht-relay`'s `Node`), as a sans-IO
//! engine: what a browser runs to use the DHT through a relay.
//!
//! Two modes, both on the JS wire:
//! - **custodial** (the JS client's default): the secret key goes to the relay, which runs the
//!   Noise handshake and secret-stream; stream data arrives as plaintext messages.
//! - **non-custodial** (JS `{ custodial: false }`): the secret key never leaves the client. The
//!   relay asks the client to run each Noise IK step (`noiseSend` / `noiseReceive`) and to sign
//!   announcements (`signAnnounce` / `signUnannounce`); stream data is the raw UDX byte stream,
//!   i.e. secret-stream ciphertext, and the client runs secret-stream itself with the keys of
//!   the [`Handshake`] it reports ([`SecretStream::from_handshake`](crate::secretstream::SecretStream::from_handshake)).
//!
//! The owner feeds the relay's frames ([`Client::handle_frame`]), writes
//! [`Client::poll_transmit`]'s frames to the relay and reacts to [`ClientEvent`]s. Randomness
//! (Noise ephemerals) comes from the seed given to [`Client::new`].

use core::net::SocketAddrV4;
use std::collections::{BTreeMap, VecDeque};

use super::messages::{Announcers, Destroy, HandshakeRef, Keys, Message, Peer, SignRequest};
use super::PROTOCOL;
use crate::crypto::{self, KeyPair};
use crate::dht::messages_connect::{ns_peer_handshake, ns_peer_holepunch};
use crate::dht::signing::{ns_announce, ns_unannounce};
use crate::encoding::DecodeError;
use crate::noise::{Handshake as Noise, Pattern, Split};
use crate::protomux::{ChannelId, ChannelOptions, Event as MuxEvent, MuxError, Protomux};
use crate::secretstream::stream_id;

/// A stream (an outgoing connection or an accepted one), by the client's alias.
pub type StreamId = u32;
/// A server made with [`Client::listen`].
pub type ServerId = u32;
/// A lookup, announce or unannounce.
pub type QueryId = u32;

/// How a finished connection is secured.
#[derive(Debug, Clone)]
pub enum Handshake {
    /// Custodial: the relay ran it (and terminates secret-stream); the handshake hash.
    Relay([u8; 64]),
    /// Non-custodial: the client ran it; run secret-stream over the stream's bytes with this.
    Local(Split),
}

/// What happened.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// A [`Client::connect`] succeeded.
    Opened {
        /// The stream.
        stream: StreamId,
        /// The server's key.
        remote_public_key: [u8; 32],
        /// How the stream is secured.
        handshake: Handshake,
    },
    /// A server accepted a connection.
    Connection {
        /// The server.
        server: ServerId,
        /// The new stream.
        stream: StreamId,
        /// The client's key.
        remote_public_key: [u8; 32],
        /// How the stream is secured.
        handshake: Handshake,
    },
    /// Bytes (custodial: one message; non-custodial: a chunk of the secret-stream bytes).
    Data {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The peer ended its side.
    End {
        /// The stream.
        stream: StreamId,
    },
    /// The peer sent more than [`Client::set_max_unread`] bytes that were not read
    /// ([`Client::consumed`]): the stream is destroyed (a [`ClientEvent::Closed`] follows) and
    /// whatever the owner still holds of it should be dropped. A peer cannot make a page (which
    /// cannot push back on a WebSocket) buffer without bound.
    Overrun {
        /// The stream.
        stream: StreamId,
        /// The bytes delivered and not consumed, this message included.
        unread: usize,
    },
    /// The stream is gone (failed to connect, destroyed by the peer or the relay).
    Closed {
        /// The stream.
        stream: StreamId,
        /// Why, when it failed.
        error: Option<String>,
    },
    /// A server is announced.
    Listening {
        /// The server.
        server: ServerId,
        /// The relay's DHT address.
        addr: SocketAddrV4,
    },
    /// A server closed.
    ServerClosed {
        /// The server.
        server: ServerId,
    },
    /// One reply of a query.
    QueryResult {
        /// The query.
        query: QueryId,
        /// The reply.
        result: Announcers,
    },
    /// A query ended.
    QueryDone {
        /// The query.
        query: QueryId,
    },
}

/// Why the session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The relay sent a malformed frame.
    #[error("bad frame from the relay: {0}")]
    Mux(#[from] MuxError),
    /// The relay sent a malformed message.
    #[error("bad message from the relay: {0}")]
    Decode(#[from] DecodeError),
    /// The relay closed the channel.
    #[error("the relay closed the session")]
    Closed,
}

#[derive(Debug)]
struct Stream {
    key_pair: KeyPair,
    remote_public_key: [u8; 32],
    /// The relay's alias, once paired.
    remote_alias: Option<u32>,
    /// Bytes delivered in [`ClientEvent::Data`] and not yet [`Client::consumed`].
    unread: usize,
}

#[derive(Debug)]
struct Server {
    key_pair: KeyPair,
    remote_alias: Option<u32>,
}

enum Signee {
    Query([u8; 32], Box<KeyPair>),
    Server(ServerId),
}

struct PendingHandshake {
    noise: Noise,
    is_initiator: bool,
}

/// The client engine. See the [module docs](self).
pub struct Client {
    mux: Protomux,
    channel: ChannelId,
    custodial: bool,
    seed: [u8; 32],
    counter: u64,
    next_id: u32,
    streams: BTreeMap<StreamId, Stream>,
    by_remote: BTreeMap<u32, StreamId>,
    servers: BTreeMap<ServerId, Server>,
    servers_by_remote: BTreeMap<u32, ServerId>,
    signees: BTreeMap<u32, Signee>,
    queries: BTreeMap<QueryId, ()>,
    handshakes: BTreeMap<u32, PendingHandshake>,
    finished: BTreeMap<u32, Split>,
    events: VecDeque<ClientEvent>,
    failed: bool,
    max_unread: usize,
}

/// The default of [`Client::set_max_unread`]: 32 MiB, twice the most a page's replication asks
/// to have in flight from one peer (16 MiB).
pub const DEFAULT_MAX_UNREAD: usize = 32 << 20;

impl Client {
    /// A session for `key_pair` (the default key pair, sent in the handshake: its secret key
    /// only when `custodial`). `seed`: 32 random bytes for the Noise ephemerals.
    pub fn new(key_pair: &KeyPair, custodial: bool, seed: [u8; 32]) -> Client {
        let mut mux = Protomux::new();
        let channel = mux
            .open(ChannelOptions::new(PROTOCOL).message_types(Message::TYPES.len() as u64))
            .expect("a fresh mux opens a channel");
        let mut c = Client {
            mux,
            channel,
            custodial,
            seed,
            counter: 0,
            next_id: 0,
            streams: BTreeMap::new(),
            by_remote: BTreeMap::new(),
            servers: BTreeMap::new(),
            servers_by_remote: BTreeMap::new(),
            signees: BTreeMap::new(),
            queries: BTreeMap::new(),
            handshakes: BTreeMap::new(),
            finished: BTreeMap::new(),
            events: VecDeque::new(),
            failed: false,
            max_unread: DEFAULT_MAX_UNREAD,
        };
        let keys = c.keys(key_pair);
        c.send(&Message::Handshake(keys));
        c
    }

    /// How many bytes of one stream may be delivered and not [consumed](Client::consumed)
    /// before the stream is destroyed ([`ClientEvent::Overrun`]); [`DEFAULT_MAX_UNREAD`] unless
    /// set. The relay forwards whatever the peer sends, and a browser cannot stop reading a
    /// WebSocket, so this is what bounds the memory a peer can make the client hold.
    pub fn set_max_unread(&mut self, bytes: usize) {
        self.max_unread = bytes;
    }

    /// The owner has read `bytes` of what [`ClientEvent::Data`] delivered for `stream`.
    pub fn consumed(&mut self, stream: StreamId, bytes: usize) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.unread = s.unread.saturating_sub(bytes);
        }
    }

    /// Whether the secret keys go to the relay.
    pub fn is_custodial(&self) -> bool {
        self.custodial
    }

    fn keys(&self, kp: &KeyPair) -> Keys {
        Keys {
            public_key: kp.public_key,
            secret_key: self.custodial.then_some(kp.secret_key),
        }
    }

    fn send(&mut self, m: &Message) {
        let _ = self.mux.send(self.channel, m.message_type(), &m.encode());
    }

    fn id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    fn ephemeral(&mut self) -> KeyPair {
        self.counter += 1;
        let seed = crypto::keyed_hash_batch(&self.seed, &[&self.counter.to_le_bytes()]);
        KeyPair::from_seed(&seed)
    }

    /// Connects `key_pair` to the server of `remote_public_key`.
    pub fn connect(&mut self, remote_public_key: [u8; 32], key_pair: KeyPair) -> StreamId {
        let alias = self.id();
        let keys = self.keys(&key_pair);
        self.streams.insert(
            alias,
            Stream {
                key_pair,
                remote_public_key,
                remote_alias: None,
                unread: 0,
            },
        );
        self.send(&Message::Connect {
            alias,
            keys,
            remote_public_key,
        });
        alias
    }

    /// Creates a server for `key_pair` and announces it.
    pub fn listen(&mut self, key_pair: KeyPair) -> ServerId {
        let alias = self.id();
        let keys = self.keys(&key_pair);
        self.signees.insert(alias, Signee::Server(alias));
        self.servers.insert(
            alias,
            Server {
                key_pair,
                remote_alias: None,
            },
        );
        self.send(&Message::Listen { alias, keys });
        alias
    }

    /// Closes a server.
    pub fn close_server(&mut self, server: ServerId) {
        if self.servers.contains_key(&server) {
            self.send(&Message::Close { alias: server });
        }
    }

    /// Looks up `topic`.
    pub fn lookup(&mut self, topic: [u8; 32]) -> QueryId {
        let id = self.id();
        self.queries.insert(id, ());
        self.send(&Message::Lookup { id, topic });
        id
    }

    /// Announces `key_pair` on `topic`.
    pub fn announce(&mut self, topic: [u8; 32], key_pair: KeyPair) -> QueryId {
        let id = self.id();
        let keys = self.keys(&key_pair);
        self.queries.insert(id, ());
        self.signees
            .insert(id, Signee::Query(topic, Box::new(key_pair)));
        self.send(&Message::Announce { id, topic, keys });
        id
    }

    /// Removes `key_pair`'s announcement of `topic`.
    pub fn unannounce(&mut self, topic: [u8; 32], key_pair: KeyPair) -> QueryId {
        let id = self.id();
        let keys = self.keys(&key_pair);
        self.queries.insert(id, ());
        self.signees
            .insert(id, Signee::Query(topic, Box::new(key_pair)));
        self.send(&Message::Unannounce { id, topic, keys });
        id
    }

    /// Writes bytes to a paired stream (custodial: one message; non-custodial: secret-stream
    /// bytes). Returns `false` when the stream is not paired (or gone).
    pub fn write(&mut self, stream: StreamId, data: Vec<u8>) -> bool {
        if !self.is_paired(stream) {
            return false;
        }
        self.send(&Message::Data {
            alias: stream,
            data: vec![data],
        });
        true
    }

    /// Ends our side of a stream.
    pub fn end(&mut self, stream: StreamId) {
        if self.is_paired(stream) {
            self.send(&Message::End { alias: stream });
        }
    }

    /// Destroys a stream.
    pub fn destroy(&mut self, stream: StreamId) {
        if let Some(s) = self.streams.remove(&stream) {
            if let Some(r) = s.remote_alias {
                self.by_remote.remove(&r);
                self.send(&Message::Destroy(Destroy {
                    paired: true,
                    alias: stream,
                    error: None,
                }));
            }
        }
    }

    /// Whether `stream` is paired (open).
    pub fn is_paired(&self, stream: StreamId) -> bool {
        self.streams
            .get(&stream)
            .is_some_and(|s| s.remote_alias.is_some())
    }

    /// A frame from the relay.
    pub fn handle_frame(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        if self.failed {
            return Err(ClientError::Closed);
        }
        if let Err(e) = self.mux.handle_frame(frame) {
            self.failed = true;
            return Err(e.into());
        }
        while let Some(ev) = self.mux.poll_event() {
            match ev {
                MuxEvent::Message {
                    channel,
                    message_type,
                    payload,
                } if channel == self.channel => {
                    let m = Message::decode(message_type, &payload).inspect_err(|_| {
                        self.failed = true;
                    })?;
                    self.on_message(m);
                }
                MuxEvent::ChannelClosed { channel, .. } | MuxEvent::ChannelRejected { channel }
                    if channel == self.channel =>
                {
                    self.failed = true;
                    return Err(ClientError::Closed);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn pair(&mut self, stream: StreamId, remote_alias: u32) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.remote_alias = Some(remote_alias);
            self.by_remote.insert(remote_alias, stream);
        }
    }

    fn handshake(&mut self, h: &HandshakeRef) -> Option<Handshake> {
        match h {
            HandshakeRef::Hash(hash) => Some(Handshake::Relay(*hash)),
            HandshakeRef::Id(id) => self.finished.remove(id).map(Handshake::Local),
        }
    }

    fn on_message(&mut self, m: Message) {
        match m {
            Message::Ping => self.send(&Message::Pong),
            Message::Open {
                alias,
                remote_alias,
                handshake,
            } => {
                let Some(hs) = self.handshake(&handshake) else {
                    return;
                };
                if let Some(s) = self.streams.get(&remote_alias) {
                    let remote_public_key = s.remote_public_key;
                    self.pair(remote_alias, alias);
                    self.events.push_back(ClientEvent::Opened {
                        stream: remote_alias,
                        remote_public_key,
                        handshake: hs,
                    });
                }
            }
            Message::Connection {
                alias,
                server_alias,
                remote_public_key,
                handshake,
            } => {
                let Some(&server) = self.servers_by_remote.get(&server_alias) else {
                    return;
                };
                let Some(hs) = self.handshake(&handshake) else {
                    return;
                };
                let key_pair = self.servers[&server].key_pair.clone();
                let stream = self.id();
                self.streams.insert(
                    stream,
                    Stream {
                        key_pair,
                        remote_public_key,
                        remote_alias: None,
                        unread: 0,
                    },
                );
                self.pair(stream, alias);
                self.send(&Message::Connected {
                    alias: stream,
                    remote_alias: alias,
                });
                self.events.push_back(ClientEvent::Connection {
                    server,
                    stream,
                    remote_public_key,
                    handshake: hs,
                });
            }
            Message::Data { alias, data } => {
                let Some(&stream) = self.by_remote.get(&alias) else {
                    return;
                };
                let Some(s) = self.streams.get_mut(&stream) else {
                    return;
                };
                s.unread = data.iter().fold(s.unread, |n, d| n.saturating_add(d.len()));
                if s.unread > self.max_unread {
                    let unread = s.unread;
                    self.destroy(stream);
                    self.events
                        .push_back(ClientEvent::Overrun { stream, unread });
                    self.events.push_back(ClientEvent::Closed {
                        stream,
                        error: Some(format!(
                            "the peer sent {unread} bytes that were not read (the limit is {})",
                            self.max_unread
                        )),
                    });
                    return;
                }
                for d in data {
                    self.events.push_back(ClientEvent::Data { stream, data: d });
                }
            }
            Message::End { alias } => {
                if let Some(&stream) = self.by_remote.get(&alias) {
                    self.events.push_back(ClientEvent::End { stream });
                }
            }
            Message::Destroy(d) => {
                let stream = if d.paired {
                    self.by_remote.remove(&d.alias)
                } else {
                    // A stream still connecting, by our alias.
                    self.streams
                        .get(&d.alias)
                        .filter(|s| s.remote_alias.is_none())
                        .map(|_| d.alias)
                };
                if let Some(stream) = stream {
                    self.streams.remove(&stream);
                    self.events.push_back(ClientEvent::Closed {
                        stream,
                        error: d.error,
                    });
                }
            }
            Message::Listening {
                alias,
                remote_alias,
                addr,
            } => {
                if let Some(s) = self.servers.get_mut(&remote_alias) {
                    s.remote_alias = Some(alias);
                    self.servers_by_remote.insert(alias, remote_alias);
                    self.events.push_back(ClientEvent::Listening {
                        server: remote_alias,
                        addr,
                    });
                }
            }
            Message::Closed { alias } => {
                if let Some(server) = self.servers_by_remote.remove(&alias) {
                    self.servers.remove(&server);
                    self.signees.remove(&server);
                    self.events.push_back(ClientEvent::ServerClosed { server });
                }
            }
            Message::Result { id, data } if self.queries.contains_key(&id) => {
                if let Ok(result) = Announcers::decode(&data) {
                    self.events
                        .push_back(ClientEvent::QueryResult { query: id, result });
                }
            }
            Message::Finished { id } if self.queries.remove(&id).is_some() => {
                self.signees.remove(&id);
                self.events.push_back(ClientEvent::QueryDone { query: id });
            }
            Message::Incoming { id, .. } => {
                // A custodial server's firewall: accept, as JS's default.
                self.send(&Message::Accept { id });
            }
            Message::SignAnnounce(r) => self.sign(r, true),
            Message::SignUnannounce(r) => self.sign(r, false),
            Message::NoiseSend {
                id,
                remote_stream_alias,
                payload,
            } => self.noise_send(id, remote_stream_alias, &payload),
            Message::NoiseReceive {
                id,
                server_alias,
                payload,
            } => self.noise_receive(id, server_alias, &payload),
            _ => {}
        }
    }

    fn sign(&mut self, r: SignRequest, announce: bool) {
        let (target, key_pair) = match self.signees.get(&r.signee) {
            Some(Signee::Query(topic, kp)) => (*topic, (**kp).clone()),
            Some(Signee::Server(server)) => match self.servers.get(server) {
                Some(s) => (crypto::hash(&s.key_pair.public_key), s.key_pair.clone()),
                None => return,
            },
            None => return,
        };
        let mut peer = Vec::new();
        Peer {
            public_key: key_pair.public_key,
            relay_addresses: r.relay_addresses,
        }
        .encode_into(&mut peer);
        let inner = crypto::hash_batch(&[&target, &r.peer_id, &r.token, &peer]);
        let mut signable = [0u8; 64];
        signable[..32].copy_from_slice(&if announce {
            ns_announce()
        } else {
            ns_unannounce()
        });
        signable[32..].copy_from_slice(&inner);
        let signature = key_pair.sign(&signable).to_vec();
        self.send(&Message::Signature {
            id: r.id,
            signature,
        });
    }

    fn complete(&mut self, id: u32, hs: PendingHandshake, payload: Vec<u8>) {
        let Ok(split) = hs.noise.finish() else {
            return self.deny(id, hs.is_initiator);
        };
        // As the JS client: the secret-stream id of the initiator's side, whichever side we are.
        let remote_id = stream_id(&split.hash, true);
        let holepunch_secret = crypto::keyed_hash_batch(&split.hash, &[&ns_peer_holepunch()]);
        self.finished.insert(id, split);
        self.send(&Message::NoiseReply {
            id,
            is_initiator: hs.is_initiator,
            payload,
            remote_public_key: None,
            complete: Some((remote_id, holepunch_secret)),
        });
    }

    fn deny(&mut self, id: u32, is_initiator: bool) {
        self.send(&Message::NoiseReply {
            id,
            is_initiator,
            payload: Vec::new(),
            remote_public_key: (!is_initiator).then_some([0; 32]),
            complete: None,
        });
    }

    fn noise_send(&mut self, id: u32, remote_stream_alias: Option<u32>, payload: &[u8]) {
        let mut hs = match remote_stream_alias {
            // The initiator's first message: a new handshake for our connecting stream.
            Some(alias) => {
                let Some(s) = self.streams.get(&alias) else {
                    return;
                };
                let (kp, rpk) = (s.key_pair.clone(), s.remote_public_key);
                let eph = self.ephemeral();
                match Noise::new(Pattern::IK, true, kp, eph, &ns_peer_handshake(), Some(rpk)) {
                    Ok(noise) => PendingHandshake {
                        noise,
                        is_initiator: true,
                    },
                    Err(_) => return,
                }
            }
            None => match self.handshakes.remove(&id) {
                Some(h) => h,
                None => return,
            },
        };
        let Ok(msg) = hs.noise.send(payload) else {
            return self.deny(id, hs.is_initiator);
        };
        if hs.noise.is_complete() {
            self.complete(id, hs, msg);
        } else {
            let is_initiator = hs.is_initiator;
            self.handshakes.insert(id, hs);
            self.send(&Message::NoiseReply {
                id,
                is_initiator,
                payload: msg,
                remote_public_key: None,
                complete: None,
            });
        }
    }

    fn noise_receive(&mut self, id: u32, server_alias: Option<u32>, payload: &[u8]) {
        let mut hs = match server_alias {
            // A client's first message to one of our servers.
            Some(remote) => {
                let Some(kp) = self
                    .servers_by_remote
                    .get(&remote)
                    .and_then(|s| self.servers.get(s))
                    .map(|s| s.key_pair.clone())
                else {
                    return;
                };
                let eph = self.ephemeral();
                match Noise::new(Pattern::IK, false, kp, eph, &ns_peer_handshake(), None) {
                    Ok(noise) => PendingHandshake {
                        noise,
                        is_initiator: false,
                    },
                    Err(_) => return,
                }
            }
            None => match self.handshakes.remove(&id) {
                Some(h) => h,
                None => return,
            },
        };
        let Ok(plain) = hs.noise.recv(payload) else {
            return self.deny(id, hs.is_initiator);
        };
        if hs.noise.is_complete() {
            self.complete(id, hs, plain);
        } else {
            // Our servers accept every client (JS's default firewall).
            let remote_public_key = hs.noise.remote_static();
            let is_initiator = hs.is_initiator;
            self.handshakes.insert(id, hs);
            self.send(&Message::NoiseReply {
                id,
                is_initiator,
                payload: plain,
                remote_public_key: if is_initiator {
                    None
                } else {
                    remote_public_key.or(Some([0; 32]))
                },
                complete: None,
            });
        }
    }

    /// The next frame to write to the relay.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.mux.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
