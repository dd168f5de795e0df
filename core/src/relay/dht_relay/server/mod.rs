//! The relay's side of one client session (JS `relay()` + `NodeProxy`, `ServerProxy`), as a
//! sans-IO engine with per-session limits.
//!
//! The owner feeds the client's frames ([`Session::handle_frame`]) and the clock
//! ([`Session::handle_timeout`]), writes [`Session::poll_transmit`]'s frames to the client, and
//! carries out the [`Request`]s from [`Session::poll_request`] on its DHT node, reporting back
//! what happened to them (`stream_*`, `server_*`, `query_*`). When [`Session::close_reason`]
//! returns a [`Close`], the owner closes the carrier with that code and reason and drops
//! everything the session asked for.
//!
//! A **non-custodial** client (its `handshake` carries no secret key) connects with its own
//! Noise: the session asks the owner for [`Request::ConnectExternal`], which carries the
//! server's public key and nothing secret (the session never has a key pair for the client);
//! the DHT's handshake steps come in through [`Session::noise_send`] /
//! [`Session::noise_receive`], go to the client as `noiseSend` / `noiseReceive`, and its
//! `noiseReply` goes back to the owner as [`Request::NoiseSent`] / [`Request::NoiseReceived`].
//! The connection's bytes are then the client's secret-stream, forwarded as they are.
//! It listens the same way: [`Request::ListenExternal`] carries the public key only; each
//! incoming handshake's steps go to the client as `noiseReceive` (with the server's alias) and
//! `noiseSend` ([`Session::server_noise_receive`] / [`Session::server_noise_send`]), each of the
//! server's announcements goes to it as `signAnnounce` ([`Session::server_sign_announce`]), and
//! the connection is handed over by handshake id ([`Session::server_connection_external`]). A
//! session whose `handshake` had no secret key never takes one later: such a request closes
//! it ([`close_code::PROTOCOL_ERROR`]). A non-custodial `unannounce` is signed by the client
//! per listing node (`signUnannounce`, [`Session::sign_unannounce`]).
//!
//! Aliases follow JS: each side names its streams, servers and queries with its own numbers;
//! `data`, `end` and a paired `destroy` carry the sender's alias. Relay aliases here count up per
//! session (JS uses one process-wide counter); they are opaque to clients.
//!
//! Here: the session, its limits, and the client's messages. [`Request`] (what the owner is
//! asked to do) is in `request.rs`, non-custodial Noise steps in `noise.rs`, what the owner
//! reports about streams and servers in `streams.rs`.

use core::net::SocketAddrV4;
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use super::messages::{Announcers, Destroy, HandshakeRef, Keys, Message, SignRequest};
use super::{close_code, PROTOCOL};
use crate::crypto::KeyPair;
use crate::dht::connect::ExternalReceived;
use crate::dht::messages_connect::NoisePayload;
use crate::protomux::{ChannelId, ChannelOptions, Event as MuxEvent, Protomux};

/// Per-session limits. The defaults suit a public relay; tests lower them.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Streams (connecting and open) at once.
    pub max_streams: usize,
    /// Servers at once.
    pub max_servers: usize,
    /// Queries (lookup/announce/unannounce) running at once.
    pub max_queries: usize,
    /// Requests (connect, listen, lookup, announce, unannounce) per second, sustained.
    pub requests_per_second: u32,
    /// Requests allowed in a burst above the sustained rate.
    pub request_burst: u32,
    /// Bytes waiting to be written to the client above which the relay stops reading its
    /// streams (backpressure).
    pub high_water: usize,
    /// How long the client may leave more than `high_water` bytes unread before the session is
    /// closed ([`close_code::NOT_READING`]).
    pub stall_timeout: Duration,
    /// Ping interval (JS: 15 s); the session closes when no pong came for three intervals after
    /// the first one ([`close_code::HEARTBEAT`]).
    pub heartbeat: Duration,
    /// Bytes the client may send to one stream that the peer has not taken yet.
    pub max_stream_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_streams: 64,
            max_servers: 8,
            max_queries: 16,
            requests_per_second: 16,
            request_burst: 64,
            high_water: 1 << 20,
            stall_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(15),
            max_stream_buffer: 4 << 20,
        }
    }
}

/// Why the session ended: a WebSocket close code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The close code ([`close_code`]).
    pub code: u16,
    /// A short human-readable reason (at most 123 bytes, as WebSocket allows).
    pub reason: String,
}

mod noise;
mod request;
mod streams;

pub use request::Request;

#[derive(Debug)]
struct Stream {
    /// The client's alias (known at once for `connect`, after `connected` for `connection`).
    client_alias: Option<u32>,
    /// `open` / `connection` was sent.
    paired: bool,
    /// Bytes written by the client that the owner has not reported as taken.
    buffered: usize,
    /// A non-custodial stream: the id of its handshake (the client runs it).
    handshake: Option<u32>,
}

/// Which step of a non-custodial handshake waits for the client's `noiseReply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoiseWait {
    Send,
    Receive,
    /// A non-custodial server's steps: (server, the owner's handshake id).
    ServerReceive(u32, u64),
    ServerSend(u32, u64),
}

/// Whose signature a `signature` answers.
#[derive(Debug, Clone, Copy)]
enum SignFor {
    /// An announce query: (query, the owner's sign id).
    Query(u32, u64),
    /// A non-custodial server: (server, the owner's sign id).
    Server(u32, u64),
}

#[derive(Debug)]
struct Server {
    client_alias: u32,
    /// Non-custodial: the client runs its handshakes and signs its announcements.
    external: bool,
}

/// One client session. See the [module docs](self).
pub struct Session {
    mux: Protomux,
    channel: ChannelId,
    limits: Limits,
    handshake: Option<Keys>,
    next_alias: u32,
    streams: BTreeMap<u32, Stream>,
    /// Client stream alias → relay alias.
    client_streams: BTreeMap<u32, u32>,
    servers: BTreeMap<u32, Server>,
    /// Client server alias → relay alias.
    client_servers: BTreeMap<u32, u32>,
    queries: BTreeMap<u32, ()>,
    /// Non-custodial handshakes: id → (stream, the step waiting for the client).
    handshakes: BTreeMap<u32, (u32, Option<NoiseWait>)>,
    /// Non-custodial signature requests by id.
    signs: BTreeMap<u32, SignFor>,
    /// Non-custodial servers' handshakes: (server, the owner's handshake id) → handshake id.
    server_handshakes: BTreeMap<(u32, u64), u32>,
    requests: VecDeque<Request>,
    close: Option<Close>,
    next_ping: Duration,
    pong_deadline: Option<Duration>,
    tokens: f64,
    tokens_at: Duration,
    stalled_since: Option<Duration>,
    paused: bool,
}

fn truncate_reason(s: &str) -> String {
    let mut end = s.len().min(123);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl Session {
    /// A session starting at `now`: opens the relay channel (its open frame is the first
    /// transmit).
    pub fn new(now: Duration, limits: Limits) -> Session {
        let mut mux = Protomux::new();
        let channel = mux
            .open(ChannelOptions::new(PROTOCOL).message_types(Message::TYPES.len() as u64))
            .expect("a fresh mux opens a channel");
        let burst = f64::from(limits.request_burst);
        Session {
            mux,
            channel,
            next_ping: now + limits.heartbeat,
            limits,
            handshake: None,
            next_alias: 0,
            streams: BTreeMap::new(),
            client_streams: BTreeMap::new(),
            servers: BTreeMap::new(),
            client_servers: BTreeMap::new(),
            queries: BTreeMap::new(),
            handshakes: BTreeMap::new(),
            signs: BTreeMap::new(),
            server_handshakes: BTreeMap::new(),
            requests: VecDeque::new(),
            close: None,
            pong_deadline: None,
            tokens: burst,
            tokens_at: now,
            stalled_since: None,
            paused: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The client's default public key and whether it is custodial, once its `handshake` came.
    pub fn client(&self) -> Option<([u8; 32], bool)> {
        self.handshake
            .as_ref()
            .map(|k| (k.public_key, k.secret_key.is_some()))
    }

    /// Streams open or connecting.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Why the session must end, once it must.
    pub fn close_reason(&self) -> Option<&Close> {
        self.close.as_ref()
    }

    fn fail(&mut self, code: u16, reason: &str) {
        if self.close.is_none() {
            self.close = Some(Close {
                code,
                reason: truncate_reason(reason),
            });
            self.requests.clear();
            self.mux.destroy();
        }
    }

    fn send(&mut self, m: &Message) {
        if self.close.is_none() {
            let _ = self.mux.send(self.channel, m.message_type(), &m.encode());
        }
    }

    fn alias(&mut self) -> u32 {
        self.next_alias = self.next_alias.wrapping_add(1).max(1);
        self.next_alias
    }

    /// A frame the client sent (one WebSocket binary message).
    pub fn handle_frame(&mut self, now: Duration, frame: &[u8]) {
        if self.close.is_some() {
            return;
        }
        if let Err(e) = self.mux.handle_frame(frame) {
            self.fail(
                close_code::PROTOCOL_ERROR,
                &format!("bad protomux frame: {e}"),
            );
            return;
        }
        while let Some(ev) = self.mux.poll_event() {
            match ev {
                MuxEvent::Message {
                    channel,
                    message_type,
                    payload,
                } if channel == self.channel => match Message::decode(message_type, &payload) {
                    Ok(m) => self.on_message(now, m),
                    Err(e) => self.fail(
                        close_code::PROTOCOL_ERROR,
                        &format!(
                            "bad {} message: {e}",
                            Message::TYPES
                                .get(message_type as usize)
                                .copied()
                                .unwrap_or("?")
                        ),
                    ),
                },
                MuxEvent::ChannelClosed { channel, .. } | MuxEvent::ChannelRejected { channel }
                    if channel == self.channel =>
                {
                    self.fail(close_code::NORMAL, "the client closed the relay channel");
                }
                _ => {}
            }
            if self.close.is_some() {
                return;
            }
        }
    }

    fn take_token(&mut self, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.tokens_at).as_secs_f64();
        self.tokens_at = now;
        self.tokens = (self.tokens + elapsed * f64::from(self.limits.requests_per_second))
            .min(f64::from(self.limits.request_burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn key_pair(&mut self, keys: &Keys) -> Option<KeyPair> {
        let Some(sk) = keys.secret_key else {
            self.fail(
                close_code::UNSUPPORTED,
                "this relay does not serve that request without the secret key",
            );
            return None;
        };
        // A client that said it keeps its keys (no secret key in its handshake) never hands
        // one over later: such a request is refused, so the session never holds a secret key
        // the client meant to keep.
        if self
            .handshake
            .as_ref()
            .is_some_and(|h| h.secret_key.is_none())
        {
            self.fail(
                close_code::PROTOCOL_ERROR,
                "a secret key in a non-custodial session",
            );
            return None;
        }
        match KeyPair::from_secret_key(&sk) {
            Ok(kp) if kp.public_key == keys.public_key => Some(kp),
            _ => {
                self.fail(
                    close_code::PROTOCOL_ERROR,
                    "the secret key does not match the public key",
                );
                None
            }
        }
    }

    fn on_message(&mut self, now: Duration, m: Message) {
        if self.handshake.is_none() {
            // JS's relay() ignores everything until the handshake.
            if let Message::Handshake(k) = m {
                self.handshake = Some(k);
            }
            return;
        }
        let is_request = matches!(
            m,
            Message::Connect { .. }
                | Message::Listen { .. }
                | Message::Lookup { .. }
                | Message::Announce { .. }
                | Message::Unannounce { .. }
        );
        if is_request && !self.take_token(now) {
            self.fail(
                close_code::TOO_MANY_REQUESTS,
                "too many requests per second",
            );
            return;
        }
        match m {
            Message::Ping => self.send(&Message::Pong),
            Message::Pong => {
                self.pong_deadline = Some(now + self.limits.heartbeat * 3);
            }
            Message::Connect {
                alias,
                keys,
                remote_public_key,
            } => {
                if self.streams.len() >= self.limits.max_streams {
                    self.fail(close_code::TOO_MANY_STREAMS, "too many streams");
                    return;
                }
                if self.client_streams.contains_key(&alias) {
                    self.fail(close_code::PROTOCOL_ERROR, "stream alias reused");
                    return;
                }
                // Non-custodial: the client keeps its secret key and runs the Noise handshake.
                let key_pair = match keys.secret_key {
                    None => None,
                    Some(_) => match self.key_pair(&keys) {
                        Some(kp) => Some(kp),
                        None => return,
                    },
                };
                let stream = self.alias();
                self.streams.insert(
                    stream,
                    Stream {
                        client_alias: Some(alias),
                        paired: false,
                        buffered: 0,
                        handshake: None,
                    },
                );
                self.client_streams.insert(alias, stream);
                self.requests.push_back(match key_pair {
                    Some(key_pair) => Request::Connect {
                        stream,
                        key_pair,
                        remote_public_key,
                    },
                    None => Request::ConnectExternal {
                        stream,
                        remote_public_key,
                    },
                });
            }
            Message::Connected {
                alias,
                remote_alias,
            } => {
                if let Some(s) = self.streams.get_mut(&remote_alias) {
                    if s.client_alias.is_none() && !self.client_streams.contains_key(&alias) {
                        s.client_alias = Some(alias);
                        self.client_streams.insert(alias, remote_alias);
                    }
                }
            }
            Message::Listen { alias, keys } => {
                if self.servers.len() >= self.limits.max_servers {
                    self.fail(close_code::TOO_MANY_STREAMS, "too many servers");
                    return;
                }
                if self.client_servers.contains_key(&alias) {
                    return;
                }
                let key_pair = match keys.secret_key {
                    None => None,
                    Some(_) => match self.key_pair(&keys) {
                        Some(kp) => Some(kp),
                        None => return,
                    },
                };
                let server = self.alias();
                self.servers.insert(
                    server,
                    Server {
                        client_alias: alias,
                        external: key_pair.is_none(),
                    },
                );
                self.client_servers.insert(alias, server);
                self.requests.push_back(match key_pair {
                    Some(key_pair) => Request::Listen { server, key_pair },
                    None => Request::ListenExternal {
                        server,
                        public_key: keys.public_key,
                    },
                });
            }
            Message::NoiseReply {
                id,
                payload,
                complete,
                remote_public_key,
                ..
            } => self.on_noise_reply(id, payload, complete, remote_public_key),
            Message::Close { alias } => {
                if let Some(&server) = self.client_servers.get(&alias) {
                    self.requests.push_back(Request::CloseServer { server });
                }
            }
            Message::Data { alias, data } => {
                let Some(&stream) = self.client_streams.get(&alias) else {
                    return;
                };
                let limit = self.limits.max_stream_buffer;
                let s = self.streams.get_mut(&stream).expect("indexed");
                for chunk in data {
                    s.buffered += chunk.len();
                    if s.buffered > limit {
                        self.destroy_stream(stream, Some("relay buffer for this stream is full"));
                        self.requests.push_back(Request::Destroy { stream });
                        return;
                    }
                    self.requests.push_back(Request::Write {
                        stream,
                        data: chunk,
                    });
                }
            }
            Message::End { alias } => {
                if let Some(&stream) = self.client_streams.get(&alias) {
                    self.requests.push_back(Request::End { stream });
                }
            }
            Message::Destroy(Destroy { alias, .. }) => {
                if let Some(stream) = self.client_streams.remove(&alias) {
                    self.streams.remove(&stream);
                    self.requests.push_back(Request::Destroy { stream });
                }
            }
            Message::Lookup { id, topic } if self.start_query(id) => {
                self.requests
                    .push_back(Request::Lookup { query: id, topic });
            }
            Message::Announce {
                id,
                topic,
                keys:
                    Keys {
                        public_key,
                        secret_key: None,
                    },
            } => {
                // Non-custodial: the client signs each record (signAnnounce).
                if !self.start_query(id) {
                    return;
                }
                self.requests.push_back(Request::AnnounceExternal {
                    query: id,
                    topic,
                    public_key,
                });
            }
            Message::Signature { id, signature } => match self.signs.remove(&id) {
                Some(SignFor::Query(query, sign)) => {
                    self.requests.push_back(Request::AnnounceSigned {
                        query,
                        sign,
                        signature: signature.try_into().ok(),
                    })
                }
                Some(SignFor::Server(server, sign)) => {
                    self.requests.push_back(Request::ServerSigned {
                        server,
                        sign,
                        signature: signature.try_into().ok(),
                    })
                }
                None => {}
            },
            Message::Announce { id, topic, keys } => {
                let Some(key_pair) = self.key_pair(&keys) else {
                    return;
                };
                if self.start_query(id) {
                    self.requests.push_back(Request::Announce {
                        query: id,
                        topic,
                        key_pair,
                    });
                }
            }
            Message::Unannounce {
                id,
                topic,
                keys:
                    Keys {
                        public_key,
                        secret_key: None,
                    },
            } => {
                // Non-custodial: the client signs each removal (signUnannounce).
                if !self.start_query(id) {
                    return;
                }
                self.requests.push_back(Request::UnannounceExternal {
                    query: id,
                    topic,
                    public_key,
                });
            }
            Message::Unannounce { id, topic, keys } => {
                let Some(key_pair) = self.key_pair(&keys) else {
                    return;
                };
                if self.start_query(id) {
                    self.requests.push_back(Request::Unannounce {
                        query: id,
                        topic,
                        key_pair,
                    });
                }
            }
            // Custodial sessions run their own firewall (accept all, as JS's default); signing
            // and Noise are the relay's.
            Message::Handshake(_) | Message::Accept { .. } | Message::Deny { .. } => {}
            // Relay-to-client messages from a client: ignored, as JS has no handler for them.
            _ => {}
        }
    }

    fn start_query(&mut self, id: u32) -> bool {
        if self.queries.contains_key(&id) {
            return false;
        }
        if self.queries.len() >= self.limits.max_queries {
            self.fail(close_code::TOO_MANY_REQUESTS, "too many queries at once");
            return false;
        }
        self.queries.insert(id, ());
        true
    }

    /// One reply of a query.
    pub fn query_result(&mut self, query: u32, result: &Announcers) {
        if self.queries.contains_key(&query) {
            self.send(&Message::Result {
                id: query,
                data: result.encode(),
            });
        }
    }

    /// A non-custodial announce needs the client's signature of one storing node's record
    /// (JS `signAnnounce`); `sign` names it in the [`Request::AnnounceSigned`] that follows.
    pub fn sign_announce(
        &mut self,
        query: u32,
        sign: u64,
        token: [u8; 32],
        peer_id: [u8; 32],
        relay_addresses: Vec<SocketAddrV4>,
    ) {
        if !self.queries.contains_key(&query) {
            return;
        }
        let id = self.alias();
        self.signs.insert(id, SignFor::Query(query, sign));
        self.send(&Message::SignAnnounce(SignRequest {
            id,
            signee: query,
            token,
            peer_id: peer_id.to_vec(),
            relay_addresses,
        }));
    }

    /// A non-custodial unannounce needs the client's signature of one listing node's removal
    /// (JS `signUnannounce`); answered as [`Session::sign_announce`]'s.
    pub fn sign_unannounce(&mut self, query: u32, sign: u64, token: [u8; 32], peer_id: [u8; 32]) {
        if !self.queries.contains_key(&query) {
            return;
        }
        let id = self.alias();
        self.signs.insert(id, SignFor::Query(query, sign));
        self.send(&Message::SignUnannounce(SignRequest {
            id,
            signee: query,
            token,
            peer_id: peer_id.to_vec(),
            relay_addresses: Vec::new(),
        }));
    }

    /// A query ended (successfully or not: the wire has no error for queries).
    pub fn query_done(&mut self, query: u32) {
        self.signs
            .retain(|_, f| !matches!(f, SignFor::Query(q, _) if *q == query));
        if self.queries.remove(&query).is_some() {
            self.send(&Message::Finished { id: query });
        }
    }

    /// How many bytes wait to be written to the client now. Above the high-water mark the
    /// owner should stop reading streams ([`Session::should_pause`]); above it for longer than
    /// the stall timeout the session closes.
    pub fn handle_buffered(&mut self, now: Duration, bytes: usize) {
        self.paused = bytes > self.limits.high_water;
        if self.paused {
            let since = *self.stalled_since.get_or_insert(now);
            if now.saturating_sub(since) >= self.limits.stall_timeout {
                self.fail(close_code::NOT_READING, "the client does not read");
            }
        } else {
            self.stalled_since = None;
        }
    }

    /// Whether the owner should stop reading the streams (the client is behind).
    pub fn should_pause(&self) -> bool {
        self.paused
    }

    /// When [`Session::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.close.is_some() {
            return None;
        }
        let stall = self.stalled_since.map(|s| s + self.limits.stall_timeout);
        [Some(self.next_ping), self.pong_deadline, stall]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs due timers: pings, the heartbeat failsafe, the stall check.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.close.is_some() {
            return;
        }
        if self.pong_deadline.is_some_and(|d| d <= now) {
            self.fail(close_code::HEARTBEAT, "no pong from the client");
            return;
        }
        if let Some(s) = self.stalled_since {
            if now.saturating_sub(s) >= self.limits.stall_timeout {
                self.fail(close_code::NOT_READING, "the client does not read");
                return;
            }
        }
        if self.next_ping <= now {
            self.send(&Message::Ping);
            self.next_ping = now + self.limits.heartbeat;
        }
    }

    /// The next frame to write to the client.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.mux.poll_transmit()
    }

    /// The next request for the owner.
    pub fn poll_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }
}

#[cfg(test)]
mod tests;
