//! The DHT through a dht-relay, for tasks of a page: [`Relay`] keeps one relay session (the
//! [`Client`] engine over a [`WsCarrier`]) open and driven by its own task, so that lookups,
//! announces, servers and any number of streams run at once; a [`RelayStream`] is one
//! connection through it (made with [`Relay::connect`], or accepted by a [`RelayServer`] from
//! [`Relay::listen`]), a [`Duplex`] the replication pump runs on ([`replicate_relayed`]).
//!
//! What the relay sees depends on the mode the stream was opened in:
//! - **custodial** (JS dht-relay's default; what a JS relay needs to listen and
//!   announce): the relay holds the session's key pair (give it a throwaway one, as [`Relay::open`]
//!   does), runs the Noise handshake and secret-stream with the remote peer, and carries each
//!   decrypted message to the page as one chunk. It can read the replication traffic (which
//!   cores, which blocks), but not forge it: every block is verified in the page against the
//!   core's signed merkle tree. The replication capabilities are made with the handshake hash
//!   the relay reports, as JS hypercore does over a JS dht-relay stream (`handshakeHash`).
//! - **non-custodial** (JS `{ custodial: false }`, [`Relay::open_non_custodial`]): the page
//!   runs the Noise handshake, the stream carries secret-stream ciphertext and the page runs
//!   secret-stream itself: the relay sees only ciphertext, its timing and sizes, and who
//!   connects to whom (the page's public key, the peer's, their addresses); not the keys, not
//!   the traffic. `hyperpunch relay` and the JS relay both serve it for `connect`;
//!   `hyperpunch relay` also for announce and listen (the page signs each record, and runs the
//!   responder's Noise for each incoming connection); the JS relay takes a non-custodial listen
//!   but stores none of its announcements (see the README). Ours also unannounces
//!   non-custodially (the page signs each removal).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use core::net::SocketAddrV4;
use hyperpunch_core::crypto::KeyPair;

use hyperpunch_core::relay::dht_relay::client::{QueryId, ServerId, StreamId};
use hyperpunch_core::relay::dht_relay::{Client, ClientEvent, Handshake};
use hyperpunch_core::replication::ReplicationHost;
use hyperpunch_core::secretstream::{
    Event as StreamEvent, Options as StreamOptions, SecretStream, StreamError,
};
use wasm_bindgen_futures::spawn_local;

use crate::duplex::{Duplex, DuplexError};
use crate::replicate::{entropy, replicate_link, FramedLink, Link, ReplicateError, SharedHost};
use crate::websocket::{RelayError, WsCarrier};

#[derive(Default)]
struct StreamSlot {
    /// `Some` once the connect finished: the handshake, or why it failed.
    opened: Option<Result<(Handshake, [u8; 32]), String>>,
    inbox: VecDeque<Vec<u8>>,
    /// The peer ended its side.
    ended: bool,
    /// The stream is gone; the error says why when it failed.
    closed: Option<Option<String>>,
    /// We ended our side.
    local_ended: bool,
    waker: Option<Waker>,
}

impl StreamSlot {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

#[derive(Default)]
struct QuerySlot {
    peers: Vec<[u8; 32]>,
    /// Replies received (nodes that answered).
    replies: usize,
    done: bool,
    waker: Option<Waker>,
}

#[derive(Default)]
struct ServerSlot {
    /// `Some` once the relay answered the listen: the relay's DHT address, or why it failed.
    listening: Option<Result<SocketAddrV4, String>>,
    /// Accepted streams not yet taken by [`RelayServer::accept`].
    incoming: VecDeque<StreamId>,
    /// The server is gone (closed by the relay, or the session ended).
    closed: bool,
    waker: Option<Waker>,
}

impl ServerSlot {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

struct Shared {
    carrier: WsCarrier,
    client: Client,
    /// The default key pair (the one the session was opened with).
    key_pair: KeyPair,
    streams: HashMap<StreamId, StreamSlot>,
    queries: HashMap<QueryId, QuerySlot>,
    servers: HashMap<ServerId, ServerSlot>,
    /// The session ended: why.
    failed: Option<String>,
}

impl Shared {
    /// Send what the client queued.
    fn flush(&mut self) {
        while let Some(frame) = self.client.poll_transmit() {
            if let Err(e) = self.carrier.send(frame) {
                self.fail(e.to_string());
                return;
            }
        }
    }

    /// Route the client's events to the streams and queries waiting for them.
    fn dispatch(&mut self) {
        while let Some(event) = self.client.poll_event() {
            match event {
                ClientEvent::Opened {
                    stream,
                    remote_public_key,
                    handshake,
                } => {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.opened = Some(Ok((handshake, remote_public_key)));
                        s.wake();
                    }
                }
                ClientEvent::Data { stream, data } => {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.inbox.push_back(data);
                        s.wake();
                    }
                }
                ClientEvent::Overrun { stream, .. } => {
                    // The peer sent more than the reader took: the stream is destroyed, and
                    // what waits of it goes (the `Closed` that follows says why).
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.inbox = VecDeque::new();
                    }
                }
                ClientEvent::End { stream } => {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.ended = true;
                        s.wake();
                    }
                }
                ClientEvent::Closed { stream, error } => {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        if s.opened.is_none() {
                            let why = error.clone().unwrap_or_else(|| "closed".into());
                            s.opened = Some(Err(why));
                        }
                        s.closed = Some(error);
                        s.wake();
                    }
                }
                ClientEvent::QueryResult { query, result } => {
                    if let Some(q) = self.queries.get_mut(&query) {
                        q.replies += 1;
                        for p in result.peers {
                            if !q.peers.contains(&p.public_key) {
                                q.peers.push(p.public_key);
                            }
                        }
                    }
                }
                ClientEvent::QueryDone { query } => {
                    if let Some(q) = self.queries.get_mut(&query) {
                        q.done = true;
                        if let Some(w) = q.waker.take() {
                            w.wake();
                        }
                    }
                }
                ClientEvent::Connection {
                    server,
                    stream,
                    remote_public_key,
                    handshake,
                } => match self.servers.get_mut(&server) {
                    Some(sv) if !sv.closed => {
                        sv.incoming.push_back(stream);
                        sv.wake();
                        self.streams.insert(
                            stream,
                            StreamSlot {
                                opened: Some(Ok((handshake, remote_public_key))),
                                ..StreamSlot::default()
                            },
                        );
                    }
                    // Nobody accepts for that server any more.
                    _ => self.client.destroy(stream),
                },
                ClientEvent::Listening { server, addr } => {
                    if let Some(sv) = self.servers.get_mut(&server) {
                        sv.listening = Some(Ok(addr));
                        sv.wake();
                    }
                }
                ClientEvent::ServerClosed { server } => {
                    if let Some(sv) = self.servers.get_mut(&server) {
                        if sv.listening.is_none() {
                            sv.listening = Some(Err("the relay could not listen".into()));
                        }
                        sv.closed = true;
                        sv.wake();
                    }
                }
            }
        }
        self.flush();
    }

    /// The session is over: every waiter learns it.
    fn fail(&mut self, why: String) {
        if self.failed.is_some() {
            return;
        }
        self.failed = Some(why.clone());
        for s in self.streams.values_mut() {
            if s.opened.is_none() {
                s.opened = Some(Err(why.clone()));
            }
            if s.closed.is_none() {
                s.closed = Some(Some(why.clone()));
            }
            s.wake();
        }
        for q in self.queries.values_mut() {
            q.done = true;
            if let Some(w) = q.waker.take() {
                w.wake();
            }
        }
        for sv in self.servers.values_mut() {
            if sv.listening.is_none() {
                sv.listening = Some(Err(why.clone()));
            }
            sv.closed = true;
            sv.wake();
        }
    }
}

/// A dht-relay session of the page, driven by its own task (see the [module docs](self)).
/// Dropping it closes the WebSocket, which ends its streams.
pub struct Relay {
    shared: Rc<RefCell<Shared>>,
}

impl Relay {
    /// Opens a custodial session at `url` (`ws://` or `wss://`) with a fresh random key pair:
    /// the relay holds that key for the session, so it is made for the session alone.
    pub async fn open(url: &str) -> Result<Relay, RelayError> {
        Self::open_fresh(url, true).await
    }

    /// Opens a non-custodial session at `url` with a fresh random key pair that never leaves
    /// the page: its connections run Noise and secret-stream here, the relay forwards
    /// ciphertext. For `connect` (listening needs [`Relay::open`] with `hyperpunch relay`).
    pub async fn open_non_custodial(url: &str) -> Result<Relay, RelayError> {
        Self::open_fresh(url, false).await
    }

    /// A session with a fresh random key pair (and Noise seed), custodial or not.
    async fn open_fresh(url: &str, custodial: bool) -> Result<Relay, RelayError> {
        let mut seed = [0u8; 32];
        let mut noise_seed = [0u8; 32];
        for buf in [&mut seed, &mut noise_seed] {
            getrandom::fill(buf)
                .map_err(|e| DuplexError(format!("crypto.getRandomValues: {e}")))?;
        }
        let key_pair = KeyPair::from_seed(&seed);
        let client = Client::new(&key_pair, custodial, noise_seed);
        Self::open_with(url, key_pair, client).await
    }

    /// Opens a session at `url` for `client`, made with `key_pair` (custodial or not).
    pub async fn open_with(
        url: &str,
        key_pair: KeyPair,
        client: Client,
    ) -> Result<Relay, RelayError> {
        let carrier = WsCarrier::connect(url).await?;
        let shared = Rc::new(RefCell::new(Shared {
            carrier,
            client,
            key_pair,
            streams: HashMap::new(),
            queries: HashMap::new(),
            servers: HashMap::new(),
            failed: None,
        }));
        shared.borrow_mut().flush();
        // The driver: relay frames into the engine, its events to the waiters. It ends when the
        // WebSocket closes (dropping the `Relay` closes it).
        let driver = shared.clone();
        spawn_local(async move {
            loop {
                let frame = poll_fn(|cx| driver.borrow_mut().carrier.poll_recv(cx)).await;
                let mut s = driver.borrow_mut();
                match frame {
                    Some(frame) => {
                        if let Err(e) = s.client.handle_frame(&frame) {
                            s.fail(format!("relay: {e}"));
                            s.carrier.close();
                            return;
                        }
                        s.dispatch();
                    }
                    None => {
                        let (code, reason) =
                            s.carrier.close_info().unwrap_or((1006, String::new()));
                        s.fail(RelayError::Closed(code, reason).to_string());
                        return;
                    }
                }
            }
        });
        Ok(Relay { shared })
    }

    /// The session's public key (the key this page connects with).
    pub fn public_key(&self) -> [u8; 32] {
        self.shared.borrow().key_pair.public_key
    }

    /// Why the session ended, once it did.
    pub fn error(&self) -> Option<String> {
        self.shared.borrow().failed.clone()
    }

    /// The public keys of the peers announced on `topic` (JS `node.lookup(topic)`, every reply
    /// collected, each key once, in the order first seen).
    pub async fn lookup(&self, topic: [u8; 32]) -> Result<Vec<[u8; 32]>, RelayError> {
        self.query(|c| c.lookup(topic)).await.map(|q| q.peers)
    }

    /// Announces `key_pair` on `topic` (JS `node.announce(topic, keyPair)`), so that lookups of
    /// `topic` find its public key; resolves once the announce finished, to the number of DHT
    /// nodes that answered. Custodial: the relay signs the announcement with `key_pair`'s
    /// secret key, so give it one made for the session (as [`Relay::key_pair`]).
    /// Announcements expire on the DHT nodes: announce again every few minutes (hyperswarm
    /// does it every 10).
    pub async fn announce(&self, topic: [u8; 32], key_pair: KeyPair) -> Result<usize, RelayError> {
        self.query(|c| c.announce(topic, key_pair))
            .await
            .map(|q| q.replies)
    }

    /// [`Relay::announce`], resolving to the public keys of the other peers announced on
    /// `topic` that the announce met on its way (as hyperswarm's announce also finds peers).
    pub async fn announce_and_find(
        &self,
        topic: [u8; 32],
        key_pair: KeyPair,
    ) -> Result<Vec<[u8; 32]>, RelayError> {
        let own = key_pair.public_key;
        self.query(|c| c.announce(topic, key_pair))
            .await
            .map(|q| q.peers.into_iter().filter(|p| *p != own).collect())
    }

    /// Removes `key_pair`'s announcement of `topic` (JS `node.unannounce(topic, keyPair)`).
    pub async fn unannounce(&self, topic: [u8; 32], key_pair: KeyPair) -> Result<(), RelayError> {
        self.query(|c| c.unannounce(topic, key_pair))
            .await
            .map(|_| ())
    }

    async fn query(
        &self,
        start: impl FnOnce(&mut Client) -> QueryId,
    ) -> Result<QuerySlot, RelayError> {
        let id = {
            let mut s = self.shared.borrow_mut();
            if let Some(why) = &s.failed {
                return Err(RelayError::Carrier(DuplexError(why.clone())));
            }
            let id = start(&mut s.client);
            s.queries.insert(id, QuerySlot::default());
            s.flush();
            id
        };
        poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            let failed = s.failed.clone();
            let q = s.queries.get_mut(&id).expect("the query waits here");
            if !q.done {
                q.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let q = s.queries.remove(&id).expect("the query waits here");
            Poll::Ready(match failed {
                Some(why) if q.replies == 0 => Err(RelayError::Carrier(DuplexError(why))),
                _ => Ok(q),
            })
        })
        .await
    }

    /// The session's key pair. Custodial, the relay holds its secret key: it is made for this
    /// session alone ([`Relay::open`]), never a core's signing key.
    pub fn key_pair(&self) -> KeyPair {
        self.shared.borrow().key_pair.clone()
    }

    /// How many bytes a stream of this session may hold that its reader has not taken before
    /// the stream is destroyed (32 MiB unless set; see
    /// [`Client::set_max_unread`](hyperpunch_core::relay::dht_relay::Client::set_max_unread)):
    /// a page cannot stop the WebSocket, so this bounds what a peer can make it buffer.
    pub fn set_max_unread(&self, bytes: usize) {
        self.shared.borrow_mut().client.set_max_unread(bytes);
    }

    /// Whether the session hands its secret keys to the relay ([`Relay::open`]) or keeps them
    /// ([`Relay::open_non_custodial`]).
    pub fn is_custodial(&self) -> bool {
        self.shared.borrow().client.is_custodial()
    }

    /// Creates a server for `key_pair` on the relay's DHT node (JS
    /// `node.createServer().listen(keyPair)`): peers that connect to its public key reach
    /// [`RelayServer::accept`]. Resolves once the relay listens. Custodial: the relay runs the
    /// Noise handshakes with `key_pair`'s secret key (see [`Relay::announce`]); non-custodial
    /// ([`Relay::open_non_custodial`]): the page signs the server's announcements and runs each
    /// handshake, and accepted streams carry secret-stream ciphertext the page decrypts.
    pub async fn listen(&self, key_pair: KeyPair) -> Result<RelayServer, RelayError> {
        let public_key = key_pair.public_key;
        let server = {
            let mut s = self.shared.borrow_mut();
            if let Some(why) = &s.failed {
                return Err(RelayError::Carrier(DuplexError(why.clone())));
            }
            let id = s.client.listen(key_pair);
            s.servers.insert(id, ServerSlot::default());
            s.flush();
            id
        };
        let listening = poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            let slot = s.servers.get_mut(&server).expect("the server waits here");
            match slot.listening.clone() {
                Some(r) => Poll::Ready(r),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        let mut server = RelayServer {
            shared: self.shared.clone(),
            server,
            public_key,
            addr: None,
        };
        match listening {
            Ok(addr) => {
                server.addr = Some(addr);
                Ok(server)
            }
            Err(why) => Err(RelayError::Carrier(DuplexError(format!("listen: {why}")))),
        }
    }

    /// Connects to the server of `remote_public_key` through the relay (JS
    /// `node.connect(publicKey)`), with the session's key pair.
    pub async fn connect(&self, remote_public_key: [u8; 32]) -> Result<RelayStream, RelayError> {
        let stream = {
            let mut s = self.shared.borrow_mut();
            if let Some(why) = &s.failed {
                return Err(RelayError::Carrier(DuplexError(why.clone())));
            }
            let kp = s.key_pair.clone();
            let id = s.client.connect(remote_public_key, kp);
            s.streams.insert(id, StreamSlot::default());
            s.flush();
            id
        };
        let opened = poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            let slot = s.streams.get_mut(&stream).expect("the stream waits here");
            match slot.opened.clone() {
                Some(r) => Poll::Ready(r),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        match opened {
            Ok((handshake, remote_public_key)) => Ok(RelayStream {
                shared: self.shared.clone(),
                stream,
                is_initiator: true,
                remote_public_key,
                custodial: matches!(handshake, Handshake::Relay(_)),
                handshake: Some(handshake),
            }),
            Err(why) => {
                self.shared.borrow_mut().streams.remove(&stream);
                Err(RelayError::Carrier(DuplexError(format!(
                    "connect to {}: {why}",
                    hex(&remote_public_key)
                ))))
            }
        }
    }
}

impl Relay {
    /// Close the session now (its WebSocket): every stream, server and query of it ends,
    /// whoever still holds the `Relay`.
    pub fn close(&self) {
        self.shared.borrow_mut().carrier.close();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.borrow_mut().carrier.close();
    }
}

/// A server of a [`Relay`] session ([`Relay::listen`]). Dropping it closes the server (the
/// streams it accepted go on).
pub struct RelayServer {
    shared: Rc<RefCell<Shared>>,
    server: ServerId,
    public_key: [u8; 32],
    addr: Option<SocketAddrV4>,
}

impl RelayServer {
    /// The public key peers connect to.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The relay's DHT address the server is reachable at.
    pub fn addr(&self) -> Option<SocketAddrV4> {
        self.addr
    }

    /// The next connection a peer made to the server, once its handshake finished; `None` once
    /// the server is closed (by the relay, or the session ended).
    pub async fn accept(&self) -> Option<RelayStream> {
        let (stream, handshake, remote_public_key) = poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            let s = &mut *s;
            let Some(slot) = s.servers.get_mut(&self.server) else {
                return Poll::Ready(None);
            };
            while let Some(stream) = slot.incoming.pop_front() {
                if let Some(StreamSlot {
                    opened: Some(Ok((handshake, remote_public_key))),
                    ..
                }) = s.streams.get(&stream)
                {
                    return Poll::Ready(Some((stream, handshake.clone(), *remote_public_key)));
                }
            }
            if slot.closed {
                return Poll::Ready(None);
            }
            slot.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Some(RelayStream {
            shared: self.shared.clone(),
            stream,
            is_initiator: false,
            remote_public_key,
            custodial: matches!(handshake, Handshake::Relay(_)),
            handshake: Some(handshake),
        })
    }
}

impl Drop for RelayServer {
    fn drop(&mut self) {
        let mut s = self.shared.borrow_mut();
        if let Some(slot) = s.servers.remove(&self.server) {
            // Accepted streams nobody took.
            for stream in slot.incoming {
                s.streams.remove(&stream);
                s.client.destroy(stream);
            }
            if !slot.closed && s.failed.is_none() {
                s.client.close_server(self.server);
            }
            s.flush();
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One connection through a [`Relay`]: chunks of the stream (custodial: one plaintext message
/// each; non-custodial: secret-stream bytes). Dropping it destroys the stream, unless both
/// sides ended it (then the relay finishes the close).
pub struct RelayStream {
    shared: Rc<RefCell<Shared>>,
    stream: StreamId,
    is_initiator: bool,
    remote_public_key: [u8; 32],
    /// Taken by [`RelayStream::link`].
    handshake: Option<Handshake>,
    /// The relay ran the handshake (and holds the session's key).
    custodial: bool,
}

impl RelayStream {
    /// The peer's public key.
    pub fn remote_public_key(&self) -> [u8; 32] {
        self.remote_public_key
    }

    /// Whether the relay ran this stream's handshake and terminates its secret-stream
    /// (custodial), rather than the page (non-custodial: the relay forwards ciphertext).
    pub fn is_custodial(&self) -> bool {
        self.custodial
    }

    /// Whether this side connected (rather than accepted).
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// Why the stream closed, once it closed with an error.
    pub fn error(&self) -> Option<String> {
        let s = self.shared.borrow();
        s.streams
            .get(&self.stream)
            .and_then(|slot| slot.closed.clone().flatten())
    }

    /// Whether the relay destroyed the stream, rather than the peer ending it: `Some(error)`
    /// once it destroyed it before the peer's `end` (the peer reset it, its UDX stream timed
    /// out, ...; `error` is `None` when the relay gave none), or with an error after one.
    /// `None` while it is open, and after a graceful close (the peer ended, then the relay
    /// reported the stream closed without an error). A relay's destroy is no end: JS
    /// dht-relay's client destroys its stream then (with the error), and hyperswarm retries.
    pub fn reset(&self) -> Option<Option<String>> {
        let s = self.shared.borrow();
        let slot = s.streams.get(&self.stream)?;
        match &slot.closed {
            Some(Some(why)) => Some(Some(why.clone())),
            Some(None) if !slot.ended => Some(None),
            _ => None,
        }
    }

    /// Ready with [`RelayStream::reset`]'s error once the relay destroyed the stream, for a
    /// reader that no longer polls [`Duplex::poll_recv`] (the peer ended; both use one waker).
    pub fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Option<String>> {
        if let Some(why) = self.reset() {
            return Poll::Ready(why);
        }
        if let Some(slot) = self.shared.borrow_mut().streams.get_mut(&self.stream) {
            slot.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The [`Link`] replication runs through on this stream: custodial, the relay's messages as
    /// frames with the relay's handshake hash; non-custodial, secret-stream from the page's
    /// own handshake. Only once per stream.
    pub fn link(&mut self, opts: StreamOptions, now: u64) -> Result<RelayLink, ReplicateError> {
        match self.handshake.take() {
            Some(Handshake::Relay(hash)) => Ok(RelayLink::Custodial(FramedLink::new(
                self.is_initiator,
                self.remote_public_key,
                hash,
            ))),
            Some(Handshake::Local(split)) => Ok(RelayLink::EndToEnd(Box::new(
                SecretStream::from_handshake(self.is_initiator, split, entropy()?, opts, now),
            ))),
            None => Err(ReplicateError::Duplex(DuplexError(
                "the stream's link was already taken".into(),
            ))),
        }
    }
}

impl Duplex for RelayStream {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        let mut s = self.shared.borrow_mut();
        let Some(slot) = s.streams.get_mut(&self.stream) else {
            return Poll::Ready(None);
        };
        if let Some(chunk) = slot.inbox.pop_front() {
            s.client.consumed(self.stream, chunk.len());
            return Poll::Ready(Some(chunk));
        }
        if slot.ended || slot.closed.is_some() {
            return Poll::Ready(None);
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn send(&mut self, chunk: Vec<u8>) -> Result<(), DuplexError> {
        let mut s = self.shared.borrow_mut();
        if let Some(why) = &s.failed {
            return Err(DuplexError(why.clone()));
        }
        if !s.client.write(self.stream, chunk) {
            return Err(DuplexError("the relayed stream is closed".into()));
        }
        s.flush();
        Ok(())
    }

    fn close(&mut self) {
        let mut s = self.shared.borrow_mut();
        let first = s
            .streams
            .get_mut(&self.stream)
            .is_some_and(|slot| !std::mem::replace(&mut slot.local_ended, true));
        if first {
            s.client.end(self.stream);
            s.flush();
        }
    }

    /// The relay WebSocket's `bufferedAmount` (shared by every stream of the session).
    fn buffered_amount(&self) -> usize {
        self.shared.borrow().carrier.buffered_amount()
    }
}

impl Drop for RelayStream {
    fn drop(&mut self) {
        let mut s = self.shared.borrow_mut();
        if let Some(slot) = s.streams.remove(&self.stream) {
            // Both sides ended: a graceful close the relay completes by itself (it reports the
            // stream closed once the peer acknowledged). A destroy now would make the relay
            // drop the stream under the peer's last acknowledgements: the peer then sees a
            // reset instead of its clean end.
            let graceful = slot.ended && slot.local_ended;
            if slot.closed.is_none() && s.failed.is_none() && !graceful {
                s.client.destroy(self.stream);
                s.flush();
            }
        }
    }
}

/// The [`Link`] of a [`RelayStream`] (see [`RelayStream::link`]).
pub enum RelayLink {
    /// The relay secures the stream: frames as they are.
    Custodial(FramedLink),
    /// The page runs secret-stream end to end.
    EndToEnd(Box<SecretStream>),
}

macro_rules! each {
    ($self:ident, $l:ident => $e:expr) => {
        match $self {
            RelayLink::Custodial($l) => $e,
            RelayLink::EndToEnd($l) => {
                let $l = &mut **$l;
                $e
            }
        }
    };
}

macro_rules! each_ref {
    ($self:ident, $l:ident => $e:expr) => {
        match $self {
            RelayLink::Custodial($l) => $e,
            RelayLink::EndToEnd($l) => {
                let $l = &**$l;
                $e
            }
        }
    };
}

impl Link for RelayLink {
    fn is_initiator(&self) -> bool {
        each_ref!(self, l => Link::is_initiator(l))
    }
    fn is_closed(&self) -> bool {
        each_ref!(self, l => Link::is_closed(l))
    }
    fn handle_input(&mut self, now: u64, input: &[u8]) {
        each!(self, l => Link::handle_input(l, now, input))
    }
    fn handle_eof(&mut self, now: u64) {
        each!(self, l => Link::handle_eof(l, now))
    }
    fn write(&mut self, frame: &[u8]) -> Result<(), StreamError> {
        each!(self, l => Link::write(l, frame))
    }
    fn end(&mut self) {
        each!(self, l => Link::end(l))
    }
    fn destroy(&mut self, reason: Option<StreamError>) {
        each!(self, l => Link::destroy(l, reason))
    }
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        each!(self, l => Link::poll_transmit(l))
    }
    fn wants_shutdown(&self) -> bool {
        each_ref!(self, l => Link::wants_shutdown(l))
    }
    fn poll_event(&mut self) -> Option<StreamEvent> {
        each!(self, l => Link::poll_event(l))
    }
    fn poll_timeout(&self) -> Option<u64> {
        each_ref!(self, l => Link::poll_timeout(l))
    }
    fn handle_timeout(&mut self, now: u64) {
        each!(self, l => Link::handle_timeout(l, now))
    }
}

/// Replicate every core of `hub` over `stream` (custodial or not, see [`RelayStream::link`])
/// until it closes or `stop` completes (then it ends gracefully). An error the relay reported
/// for the stream is returned as one.
pub async fn replicate_relayed<H: ReplicationHost>(
    mut stream: RelayStream,
    hub: &SharedHost<H>,
    stop: impl Future<Output = ()>,
) -> Result<(), ReplicateError> {
    let link = stream.link(StreamOptions::default(), hub.now())?;
    let error = Rc::new(RefCell::new(None::<String>));
    let result = replicate_link(WatchErr(stream, error.clone()), link, hub, stop).await;
    match (result, error.take()) {
        (Ok(()), Some(why)) => Err(ReplicateError::Duplex(DuplexError(why))),
        (r, _) => r,
    }
}

/// A [`RelayStream`] that records the stream's error when its input ends.
struct WatchErr(RelayStream, Rc<RefCell<Option<String>>>);

impl Duplex for WatchErr {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        let r = self.0.poll_recv(cx);
        if let Poll::Ready(None) = r {
            if let Some(why) = self.0.error() {
                *self.1.borrow_mut() = Some(why);
            }
        }
        r
    }
    fn send(&mut self, chunk: Vec<u8>) -> Result<(), DuplexError> {
        self.0.send(chunk)
    }
    fn close(&mut self) {
        self.0.close()
    }
    fn buffered_amount(&self) -> usize {
        self.0.buffered_amount()
    }
}
