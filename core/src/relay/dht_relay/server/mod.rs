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

/// What the owner must do on its DHT node.
#[derive(Clone)]
pub enum Request {
    /// Connect `key_pair` to `remote_public_key`; report [`Session::stream_open`] or
    /// [`Session::stream_closed`].
    Connect {
        /// The relay's alias of the stream.
        stream: u32,
        /// The client's key pair (custodial).
        key_pair: KeyPair,
        /// The server.
        remote_public_key: [u8; 32],
    },
    /// Connect a non-custodial client to `remote_public_key` with the Noise handshake run by
    /// the client: report its steps with [`Session::noise_send`] / [`Session::noise_receive`],
    /// carry out [`Request::NoiseSent`] / [`Request::NoiseReceived`], then report
    /// [`Session::stream_open`] (no handshake hash) or [`Session::stream_closed`].
    ConnectExternal {
        /// The relay's alias of the stream.
        stream: u32,
        /// The server.
        remote_public_key: [u8; 32],
    },
    /// The client's first handshake message for a [`Request::ConnectExternal`] (`None`: it
    /// refused).
    NoiseSent {
        /// The stream.
        stream: u32,
        /// The Noise message.
        message: Option<Vec<u8>>,
    },
    /// The server's reply as the client decrypted it (`None`: it could not, or refused).
    NoiseReceived {
        /// The stream.
        stream: u32,
        /// The payload and the holepunch secret.
        received: Option<ExternalReceived>,
    },
    /// Create a server for `key_pair` and listen; report [`Session::server_listening`], then
    /// [`Session::server_connection`] per connection.
    Listen {
        /// The relay's alias of the server.
        server: u32,
        /// The client's key pair (custodial).
        key_pair: KeyPair,
    },
    /// Create a server for a non-custodial client's `public_key` and listen, the key pair
    /// staying with the client: report the server's handshake steps with
    /// [`Session::server_noise_receive`] / [`Session::server_noise_send`] and its
    /// announcements to sign with [`Session::server_sign_announce`], carry out
    /// [`Request::ServerNoiseReceived`] / [`Request::ServerNoiseSent`] /
    /// [`Request::ServerSigned`]; report [`Session::server_listening`], then
    /// [`Session::server_connection_external`] per connection.
    ListenExternal {
        /// The relay's alias of the server.
        server: u32,
        /// The client's public key (it keeps the secret key).
        public_key: [u8; 32],
    },
    /// A client's first handshake message to a [`Request::ListenExternal`] server, as the
    /// client decrypted it: its noise payload and public key (`None`: it refused).
    ServerNoiseReceived {
        /// The server.
        server: u32,
        /// The owner's handshake id, as given to [`Session::server_noise_receive`].
        handshake: u64,
        /// The payload and the remote public key.
        received: Option<(NoisePayload, [u8; 32])>,
    },
    /// The server's reply encrypted by the client, and the holepunch secret of the finished
    /// handshake (`None`: it refused).
    ServerNoiseSent {
        /// The server.
        server: u32,
        /// The owner's handshake id.
        handshake: u64,
        /// The Noise message and the holepunch secret.
        sent: Option<(Vec<u8>, [u8; 32])>,
    },
    /// The client's signature of one of its server's announcements (`None`: not a signature).
    ServerSigned {
        /// The server.
        server: u32,
        /// The owner's sign id, as given to [`Session::server_sign_announce`].
        sign: u64,
        /// The Ed25519 signature.
        signature: Option<[u8; 64]>,
    },
    /// Close a server (its connections stay); report [`Session::server_closed`].
    CloseServer {
        /// The server.
        server: u32,
    },
    /// Look up a topic; report [`Session::query_result`]s and [`Session::query_done`].
    Lookup {
        /// The relay's query id (the client's, which is unique per session).
        query: u32,
        /// The topic.
        topic: [u8; 32],
    },
    /// Announce `key_pair` on a topic; results as for `Lookup`.
    Announce {
        /// The query.
        query: u32,
        /// The topic.
        topic: [u8; 32],
        /// The client's key pair (custodial).
        key_pair: KeyPair,
    },
    /// Announce a non-custodial client's `public_key` on a topic with its own signatures:
    /// report each storing node's record to sign with [`Session::sign_announce`], carry out
    /// [`Request::AnnounceSigned`]; results as for `Lookup`.
    AnnounceExternal {
        /// The query.
        query: u32,
        /// The topic.
        topic: [u8; 32],
        /// The client's public key (it keeps the secret key).
        public_key: [u8; 32],
    },
    /// The client's signature of one record of an [`Request::AnnounceExternal`] (`None`: not a
    /// signature).
    AnnounceSigned {
        /// The query.
        query: u32,
        /// The owner's sign id, as given to [`Session::sign_announce`].
        sign: u64,
        /// The Ed25519 signature.
        signature: Option<[u8; 64]>,
    },
    /// Remove an announcement; results as for `Lookup`.
    Unannounce {
        /// The query.
        query: u32,
        /// The topic.
        topic: [u8; 32],
        /// The client's key pair (custodial).
        key_pair: KeyPair,
    },
    /// Remove a non-custodial client's announcement of `public_key` with its own signatures:
    /// report each listing node's record to sign with [`Session::sign_unannounce`], carry out
    /// [`Request::AnnounceSigned`]; results as for `Lookup`.
    UnannounceExternal {
        /// The query.
        query: u32,
        /// The topic.
        topic: [u8; 32],
        /// The client's public key.
        public_key: [u8; 32],
    },
    /// Write one message to a stream.
    Write {
        /// The stream.
        stream: u32,
        /// The message.
        data: Vec<u8>,
    },
    /// End our side of a stream.
    End {
        /// The stream.
        stream: u32,
    },
    /// Destroy a stream (the client destroyed it).
    Destroy {
        /// The stream.
        stream: u32,
    },
}

/// A request's fields, its key pair by public key (for equality).
type RequestKey<'a> = (u8, u32, Option<[u8; 32]>, Option<[u8; 32]>, &'a [u8]);

impl Request {
    /// The request without its key pair (compared by public key), for equality.
    fn key(&self) -> RequestKey<'_> {
        match self {
            Request::Connect {
                stream,
                key_pair,
                remote_public_key,
            } => (
                0,
                *stream,
                Some(key_pair.public_key),
                Some(*remote_public_key),
                &[],
            ),
            Request::Listen { server, key_pair } => {
                (1, *server, Some(key_pair.public_key), None, &[])
            }
            Request::ConnectExternal {
                stream,
                remote_public_key,
            } => (9, *stream, None, Some(*remote_public_key), &[]),
            Request::AnnounceExternal {
                query,
                topic,
                public_key,
            } => (12, *query, Some(*public_key), Some(*topic), &[]),
            Request::AnnounceSigned {
                query,
                sign,
                signature,
            } => (
                13,
                *query,
                None,
                Some({
                    let mut k = [0u8; 32];
                    k[..8].copy_from_slice(&sign.to_le_bytes());
                    k
                }),
                signature.as_ref().map(|s| &s[..]).unwrap_or(&[]),
            ),
            Request::NoiseSent { stream, message } => {
                (10, *stream, None, None, message.as_deref().unwrap_or(&[]))
            }
            Request::NoiseReceived { stream, received } => (
                11,
                *stream,
                None,
                received.as_ref().map(|r| r.holepunch_secret),
                &[],
            ),
            Request::CloseServer { server } => (2, *server, None, None, &[]),
            Request::ListenExternal { server, public_key } => {
                (14, *server, Some(*public_key), None, &[])
            }
            Request::ServerNoiseReceived {
                server,
                handshake,
                received,
            } => (
                15,
                *server,
                received.as_ref().map(|r| r.1),
                Some(u64_key(*handshake)),
                &[],
            ),
            Request::ServerNoiseSent {
                server,
                handshake,
                sent,
            } => (
                16,
                *server,
                sent.as_ref().map(|r| r.1),
                Some(u64_key(*handshake)),
                sent.as_ref().map(|r| &r.0[..]).unwrap_or(&[]),
            ),
            Request::ServerSigned {
                server,
                sign,
                signature,
            } => (
                17,
                *server,
                None,
                Some(u64_key(*sign)),
                signature.as_ref().map(|s| &s[..]).unwrap_or(&[]),
            ),
            Request::Lookup { query, topic } => (3, *query, None, Some(*topic), &[]),
            Request::Announce {
                query,
                topic,
                key_pair,
            } => (4, *query, Some(key_pair.public_key), Some(*topic), &[]),
            Request::Unannounce {
                query,
                topic,
                key_pair,
            } => (5, *query, Some(key_pair.public_key), Some(*topic), &[]),
            Request::UnannounceExternal {
                query,
                topic,
                public_key,
            } => (18, *query, Some(*public_key), Some(*topic), &[]),
            Request::Write { stream, data } => (6, *stream, None, None, data),
            Request::End { stream } => (7, *stream, None, None, &[]),
            Request::Destroy { stream } => (8, *stream, None, None, &[]),
        }
    }
}

fn u64_key(n: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&n.to_le_bytes());
    k
}

impl PartialEq for Request {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl core::fmt::Debug for Request {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Request::Connect { stream, .. } => write!(f, "Connect({stream})"),
            Request::Listen { server, .. } => write!(f, "Listen({server})"),
            Request::ConnectExternal { stream, .. } => write!(f, "ConnectExternal({stream})"),
            Request::AnnounceExternal { query, .. } => write!(f, "AnnounceExternal({query})"),
            Request::AnnounceSigned { query, sign, .. } => {
                write!(f, "AnnounceSigned({query}, {sign})")
            }
            Request::NoiseSent { stream, message } => {
                write!(
                    f,
                    "NoiseSent({stream}, {:?})",
                    message.as_ref().map(Vec::len)
                )
            }
            Request::NoiseReceived { stream, received } => {
                write!(f, "NoiseReceived({stream}, {})", received.is_some())
            }
            Request::CloseServer { server } => write!(f, "CloseServer({server})"),
            Request::ListenExternal { server, .. } => write!(f, "ListenExternal({server})"),
            Request::ServerNoiseReceived {
                server,
                handshake,
                received,
            } => write!(
                f,
                "ServerNoiseReceived({server}, {handshake}, {})",
                received.is_some()
            ),
            Request::ServerNoiseSent {
                server,
                handshake,
                sent,
            } => write!(
                f,
                "ServerNoiseSent({server}, {handshake}, {})",
                sent.is_some()
            ),
            Request::ServerSigned {
                server,
                sign,
                signature,
            } => write!(f, "ServerSigned({server}, {sign}, {})", signature.is_some()),
            Request::Lookup { query, .. } => write!(f, "Lookup({query})"),
            Request::Announce { query, .. } => write!(f, "Announce({query})"),
            Request::Unannounce { query, .. } => write!(f, "Unannounce({query})"),
            Request::UnannounceExternal { query, .. } => {
                write!(f, "UnannounceExternal({query})")
            }
            Request::Write { stream, data } => write!(f, "Write({stream}, {} bytes)", data.len()),
            Request::End { stream } => write!(f, "End({stream})"),
            Request::Destroy { stream } => write!(f, "Destroy({stream})"),
        }
    }
}

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

    fn on_noise_reply(
        &mut self,
        id: u32,
        payload: Vec<u8>,
        complete: Option<([u8; 32], [u8; 32])>,
        remote_public_key: Option<[u8; 32]>,
    ) {
        // Replies to nothing (or twice) are ignored, as JS does.
        let Some((stream, wait)) = self.handshakes.get_mut(&id) else {
            return;
        };
        let (stream, Some(wait)) = (*stream, wait.take()) else {
            return;
        };
        match wait {
            NoiseWait::ServerReceive(server, handshake) => {
                // Empty: the client's firewall denied the peer (JS 'Handshake denied').
                let received = match (payload.is_empty(), remote_public_key) {
                    (false, Some(rpk)) => NoisePayload::decode(&payload).ok().map(|p| (p, rpk)),
                    _ => None,
                };
                if received.is_none() {
                    self.forget_server_handshake(id);
                }
                self.requests.push_back(Request::ServerNoiseReceived {
                    server,
                    handshake,
                    received,
                });
            }
            NoiseWait::ServerSend(server, handshake) => {
                let sent = match (payload.is_empty(), complete) {
                    (false, Some((_remote_id, holepunch_secret))) => {
                        Some((payload, holepunch_secret))
                    }
                    _ => None,
                };
                if sent.is_none() {
                    self.forget_server_handshake(id);
                }
                self.requests.push_back(Request::ServerNoiseSent {
                    server,
                    handshake,
                    sent,
                });
            }
            NoiseWait::Send => self.requests.push_back(Request::NoiseSent {
                stream,
                message: (!payload.is_empty()).then_some(payload),
            }),
            NoiseWait::Receive => {
                // An empty payload is JS's 'Handshake denied'; a payload that is not a noise
                // payload, or a missing holepunch secret, fails the same way.
                let received = match (payload.is_empty(), complete) {
                    (false, Some((_remote_id, holepunch_secret))) => NoisePayload::decode(&payload)
                        .ok()
                        .map(|payload| ExternalReceived {
                            payload,
                            holepunch_secret,
                        }),
                    _ => None,
                };
                self.requests
                    .push_back(Request::NoiseReceived { stream, received });
            }
        }
    }

    /// A non-custodial connect needs its first Noise message: the client encrypts `payload`
    /// (JS `noiseSend`).
    pub fn noise_send(&mut self, stream: u32, payload: &NoisePayload) {
        let Some(client_alias) = self.streams.get(&stream).and_then(|s| s.client_alias) else {
            return;
        };
        let id = match self.streams.get(&stream).and_then(|s| s.handshake) {
            Some(id) => id,
            None => {
                let id = self.alias();
                self.streams.get_mut(&stream).expect("checked").handshake = Some(id);
                id
            }
        };
        self.handshakes.insert(id, (stream, Some(NoiseWait::Send)));
        self.send(&Message::NoiseSend {
            id,
            remote_stream_alias: Some(client_alias),
            payload: payload.encode(),
        });
    }

    /// A non-custodial connect got the server's reply: the client decrypts `message` (JS
    /// `noiseReceive`).
    pub fn noise_receive(&mut self, stream: u32, message: Vec<u8>) {
        let Some(id) = self.streams.get(&stream).and_then(|s| s.handshake) else {
            return;
        };
        self.handshakes
            .insert(id, (stream, Some(NoiseWait::Receive)));
        self.send(&Message::NoiseReceive {
            id,
            server_alias: None,
            payload: message,
        });
    }

    fn forget_server_handshake(&mut self, id: u32) {
        self.handshakes.remove(&id);
        self.server_handshakes.retain(|_, h| *h != id);
    }

    /// A non-custodial server got a client's first handshake message: the client decrypts it
    /// (JS `noiseReceive` with the server's alias). `handshake` is the owner's id of it.
    pub fn server_noise_receive(&mut self, server: u32, handshake: u64, message: Vec<u8>) {
        if !self.servers.get(&server).is_some_and(|s| s.external) {
            return;
        }
        if self.handshakes.len() >= self.limits.max_streams * 2 {
            // The owner hears nothing back and its handshake times out.
            return;
        }
        let id = self.alias();
        self.server_handshakes.insert((server, handshake), id);
        self.handshakes
            .insert(id, (0, Some(NoiseWait::ServerReceive(server, handshake))));
        self.send(&Message::NoiseReceive {
            id,
            server_alias: Some(server),
            payload: message,
        });
    }

    /// A non-custodial server's reply to encrypt (JS `noiseSend` without a stream alias).
    pub fn server_noise_send(&mut self, server: u32, handshake: u64, payload: &NoisePayload) {
        let Some(&id) = self.server_handshakes.get(&(server, handshake)) else {
            return;
        };
        self.handshakes
            .insert(id, (0, Some(NoiseWait::ServerSend(server, handshake))));
        self.send(&Message::NoiseSend {
            id,
            remote_stream_alias: None,
            payload: payload.encode(),
        });
    }

    /// A non-custodial server announces itself to a node: the client signs the record (JS
    /// `signAnnounce` with the server as signee; the client knows the target, the hash of its
    /// public key, and the record has no relay addresses).
    pub fn server_sign_announce(
        &mut self,
        server: u32,
        sign: u64,
        token: [u8; 32],
        peer_id: [u8; 32],
    ) {
        let Some(s) = self.servers.get(&server).filter(|s| s.external) else {
            return;
        };
        let signee = s.client_alias;
        let id = self.alias();
        self.signs.insert(id, SignFor::Server(server, sign));
        self.send(&Message::SignAnnounce(SignRequest {
            id,
            signee,
            token,
            peer_id: peer_id.to_vec(),
            relay_addresses: Vec::new(),
        }));
    }

    /// A non-custodial server got a connection whose handshake the client ran (its owner's id
    /// `handshake`): returns the stream's alias for the owner's later reports, or `None` when
    /// the session has no room for it (drop the connection).
    pub fn server_connection_external(
        &mut self,
        server: u32,
        handshake: u64,
        remote_public_key: [u8; 32],
    ) -> Option<u32> {
        let id = self.server_handshakes.remove(&(server, handshake))?;
        self.handshakes.remove(&id);
        self.open_server_stream(server, remote_public_key, HandshakeRef::Id(id))
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

    fn destroy_stream(&mut self, stream: u32, error: Option<&str>) {
        let Some(s) = self.streams.remove(&stream) else {
            return;
        };
        if let Some(h) = s.handshake {
            self.handshakes.remove(&h);
        }
        if let Some(a) = s.client_alias {
            self.client_streams.remove(&a);
        }
        let destroy = if s.paired {
            Destroy {
                paired: true,
                alias: stream,
                error: error.map(str::to_owned),
            }
        } else {
            match s.client_alias {
                Some(a) => Destroy {
                    paired: false,
                    alias: a,
                    error: error.map(str::to_owned),
                },
                None => return,
            }
        };
        self.send(&Message::Destroy(destroy));
    }

    /// A `connect` succeeded; `handshake_hash` is the Noise handshake hash (`None` for a
    /// non-custodial stream: the client has it, the relay does not).
    pub fn stream_open(&mut self, stream: u32, handshake_hash: Option<[u8; 64]>) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(remote_alias) = s.client_alias else {
            s.paired = true;
            return;
        };
        let handshake = match (s.handshake, handshake_hash) {
            (Some(id), _) => HandshakeRef::Id(id),
            (None, Some(hash)) => HandshakeRef::Hash(hash),
            (None, None) => return self.destroy_stream(stream, Some("no handshake")),
        };
        s.paired = true;
        if let HandshakeRef::Id(id) = handshake {
            self.handshakes.remove(&id);
        }
        self.send(&Message::Open {
            alias: stream,
            remote_alias,
            handshake,
        });
    }

    /// A server got a connection: returns the stream's alias for the owner's later reports, or
    /// `None` when the session has no room for it (drop the connection).
    pub fn server_connection(
        &mut self,
        server: u32,
        remote_public_key: [u8; 32],
        handshake_hash: [u8; 64],
    ) -> Option<u32> {
        self.open_server_stream(
            server,
            remote_public_key,
            HandshakeRef::Hash(handshake_hash),
        )
    }

    /// A stream for a server's new connection, announced to the client (`None`: the server is
    /// gone, the session is closing or has no room).
    fn open_server_stream(
        &mut self,
        server: u32,
        remote_public_key: [u8; 32],
        handshake: HandshakeRef,
    ) -> Option<u32> {
        if !self.servers.contains_key(&server) || self.close.is_some() {
            return None;
        }
        if self.streams.len() >= self.limits.max_streams {
            return None;
        }
        let stream = self.alias();
        self.streams.insert(
            stream,
            Stream {
                client_alias: None,
                paired: true,
                buffered: 0,
                handshake: None,
            },
        );
        self.send(&Message::Connection {
            alias: stream,
            server_alias: server,
            remote_public_key,
            handshake,
        });
        Some(stream)
    }

    /// One message from a stream's peer.
    pub fn stream_data(&mut self, stream: u32, data: Vec<u8>) {
        if self.streams.contains_key(&stream) {
            self.send(&Message::Data {
                alias: stream,
                data: vec![data],
            });
        }
    }

    /// The stream's peer ended its side.
    pub fn stream_end(&mut self, stream: u32) {
        if self.streams.contains_key(&stream) {
            self.send(&Message::End { alias: stream });
        }
    }

    /// The owner wrote `bytes` of what the client sent to the stream (they left the relay).
    pub fn stream_written(&mut self, stream: u32, bytes: usize) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.buffered = s.buffered.saturating_sub(bytes);
        }
    }

    /// The stream is gone (failed to connect, or closed); `error` says why it failed.
    pub fn stream_closed(&mut self, stream: u32, error: Option<&str>) {
        self.destroy_stream(stream, error);
    }

    /// A server announced itself; `addr` is the DHT node's address.
    pub fn server_listening(&mut self, server: u32, addr: SocketAddrV4) {
        if let Some(s) = self.servers.get(&server) {
            let remote_alias = s.client_alias;
            self.send(&Message::Listening {
                alias: server,
                remote_alias,
                addr,
            });
        }
    }

    /// A server closed.
    pub fn server_closed(&mut self, server: u32) {
        self.signs
            .retain(|_, f| !matches!(f, SignFor::Server(s, _) if *s == server));
        let gone: Vec<u32> = self
            .server_handshakes
            .iter()
            .filter(|((s, _), _)| *s == server)
            .map(|(_, id)| *id)
            .collect();
        for id in gone {
            self.forget_server_handshake(id);
        }
        if let Some(s) = self.servers.remove(&server) {
            self.client_servers.remove(&s.client_alias);
            self.send(&Message::Closed { alias: server });
        }
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
