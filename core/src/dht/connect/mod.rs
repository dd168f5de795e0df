//! hyperdht 6.34.0 connections (lib/connect.js, lib/server.js): `listen(keyPair)` and
//! `connect(publicKey)` over a dht-rpc [`Node`], as one sans-IO engine, the [`Connector`].
//!
//! The owner runs a [`HyperDht`] (dht-rpc plus the record layer and the router, which relays
//! PEER_HANDSHAKE / PEER_HOLEPUNCH and hands those for our servers up) and the sockets, and
//! feeds the connector:
//! - the DHT's events ([`Connector::handle_dht_event`]: PEER_HANDSHAKE / PEER_HOLEPUNCH for
//!   our servers, responses and query results of our requests; it hands back the others);
//! - 1-byte datagrams (holepunch probes) received on any socket ([`Connector::handle_probe`]);
//! - UDX packets for a stream id no stream has yet ([`Connector::handle_udx_firewall`]: the raw
//!   stream of a connection in progress accepts its first packet from wherever it comes);
//! - the clock ([`Connector::handle_timeout`]).
//!
//! It asks the owner, through [`Action`]s, to bind pool sockets for punchers (their
//! [`SocketId`]s are fresh numbers above the node's two) and to send probes with a TTL; the
//! dht-rpc traffic it causes leaves through the node's own transmits (apply the connector's
//! actions first: a reply may leave from a pool socket opened in the same step). A finished
//! connection comes out as [`ConnectEvent::Connected`] (or [`ConnectEvent::Incoming`] on a server): connect a UDX stream on that socket
//! and run secret-stream over it with the handshake result.
//!
//! (About 1,000 lines: the types the owner sees and the `Connector` that routes each input to its
//! client or server slot; the phases themselves are in `client/` and `server.rs`.)

mod announcer;
pub mod bogon;
mod client;
mod server;

pub use announcer::{encode_peer, signable, Announcer};
pub use client::{ConnectError, ConnectOptions, DEFAULT_CONNECT_TIMEOUT};

pub use server::ServerOptions;

use core::net::SocketAddrV4;
use core::time::Duration;
use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::crypto::KeyPair;
use crate::dht::holepunch::puncher::{PunchAction, Puncher, RandomPunchLimiter};
use crate::dht::messages_connect::NoisePayload;
use crate::dht::noise_wrap::HandshakeResult;
use crate::dht::rpc::{
    self, Event as RpcEvent, Node, QueryId, RequestId, RequestSpec, SocketId, PING,
};
use crate::dht::{Event, HyperDht};

/// A connection attempt made with [`Connector::connect`].
pub type ConnId = u64;
/// A server made with [`Connector::listen`].
pub type ServerId = u64;

/// What the owner must do for the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Bind a fresh UDP socket on the DHT's host for this id; datagrams on it go to the node
    /// (RPC), the connector (1-byte probes, UDX firewall) and UDX as on the node's sockets.
    OpenSocket(SocketId),
    /// The socket is no longer needed: close it once no UDX stream uses it.
    ReleaseSocket(SocketId),
    /// Send the probe byte `0x00` from `socket` to `to` with IP TTL `ttl`.
    Probe {
        /// From.
        socket: SocketId,
        /// To.
        to: SocketAddrV4,
        /// TTL.
        ttl: u8,
    },
}

/// A connection ready for its UDX stream and secret-stream.
#[derive(Debug, Clone)]
pub struct Established {
    /// The client side (secret-stream initiator).
    pub is_initiator: bool,
    /// The handshake: keys and hash for [`SecretStream::from_handshake`](crate::secretstream::SecretStream::from_handshake);
    /// `None` when it ran outside ([`Connector::connect_external`]): whoever holds the key pair
    /// runs secret-stream over the stream's bytes.
    pub handshake: Option<HandshakeResult>,
    /// The peer's public key (the server's for a client; for a server, authenticated by the
    /// handshake).
    pub remote_public_key: [u8; 32],
    /// The socket the UDX stream runs on.
    pub socket: SocketId,
    /// Our UDX stream id (as sent in our noise payload).
    pub local_id: u32,
    /// The peer's UDX stream id.
    pub remote_id: u32,
    /// Where the peer is (the relay, for a relayed connection).
    pub remote: SocketAddrV4,
    /// The stream runs through a blind relay.
    pub relayed: bool,
    /// For a server made with [`Connector::listen_external`]: the handshake id of its
    /// [`ConnectEvent::ServerNoise`] steps (the owner holds the keys under that id).
    pub external_handshake: Option<u64>,
}

impl Established {
    /// The datagram to send to `remote` from `socket` when this connection cannot be run (its
    /// UDX stream could not be opened, or nobody takes it): the peer's stream is reset at
    /// once instead of waiting for a timeout on a path that went silent.
    pub fn reset_packet(&self) -> Vec<u8> {
        crate::udx::packet::reset(self.remote_id)
    }
}

/// A step of a Noise handshake that runs outside the connector
/// ([`Connector::connect_external`]): the key pair's owner (a non-custodial dht-relay client)
/// encrypts and decrypts, the connector routes the messages and punches.
#[derive(Debug, Clone)]
pub enum NoiseStep {
    /// Encrypt this payload into the first handshake message; answer with
    /// [`Connector::external_sent`].
    Send(Box<NoisePayload>),
    /// Decrypt the server's reply; answer with [`Connector::external_received`].
    Recv(Vec<u8>),
}

/// The server's reply, decrypted outside ([`Connector::external_received`]).
#[derive(Debug, Clone)]
pub struct ExternalReceived {
    /// The server's noise payload.
    pub payload: NoisePayload,
    /// `H(NS.PEER_HOLEPUNCH, key = handshake hash)` (JS `final().holepunchSecret`): keys the
    /// holepunch messages. It opens no stream: the stream keys stay with the key pair's owner.
    pub holepunch_secret: [u8; 32],
}

/// What happened.
#[derive(Debug, Clone)]
pub enum ConnectEvent {
    /// An external handshake needs its owner ([`NoiseStep`]).
    ExternalNoise {
        /// The attempt.
        conn: ConnId,
        /// What to do.
        step: NoiseStep,
    },
    /// A server made with [`Connector::listen_external`] needs its owner for a step of a
    /// client's handshake: [`NoiseStep::Recv`] (decrypt the client's first message; answer
    /// with [`Connector::server_noise_received`]), then [`NoiseStep::Send`] (encrypt our reply
    /// and finish; answer with [`Connector::server_noise_sent`]).
    ServerNoise {
        /// The server.
        server: ServerId,
        /// Names the handshake in the answers.
        handshake: u64,
        /// What to do.
        step: NoiseStep,
    },
    /// A server made with [`Connector::listen_external`] announces itself to a node: sign
    /// the announce signable `(4, H(public key), node_id, token, peer {public key, no relay
    /// addresses}, None)` and answer with [`Connector::server_signed`].
    ServerSign {
        /// The server.
        server: ServerId,
        /// Names the signature in the answer.
        sign: u64,
        /// The storing node's token.
        token: [u8; 32],
        /// The storing node's id.
        node_id: [u8; 32],
    },
    /// A server finished its first announce round.
    Listening {
        /// The server.
        server: ServerId,
    },
    /// A client connection is ready.
    Connected {
        /// The attempt.
        conn: ConnId,
        /// How to run it.
        established: Established,
    },
    /// A client connection failed.
    ConnectFailed {
        /// The attempt.
        conn: ConnId,
        /// Why (JS error codes).
        error: ConnectError,
    },
    /// A connection asked to pair through a blind relay (JS `relayThrough`): connect to
    /// `relay_public_key`, open a blind-relay client on that connection and `pair(is_initiator,
    /// token, stream_id)`; report the relay's answer with [`Connector::relay_paired`] or
    /// [`Connector::relay_failed`]. Punching goes on meanwhile; whichever path comes first wins.
    RelayPairing {
        /// Names the connection in the answer.
        pairing: PairingId,
        /// The relay's public key.
        relay_public_key: [u8; 32],
        /// The pairing token both peers send.
        token: [u8; 32],
        /// This side's role in the pairing (the side that chose the relay).
        is_initiator: bool,
        /// Our UDX stream id, to send in `pair`.
        stream_id: u32,
    },
    /// A relayed connection (handed over with `relayed` set) found a direct path: the punch
    /// that went on after the relay paired it succeeded, or the peer's packets arrived from
    /// the direct path (hyperdht's `onsocket` on a connected raw stream). Move the UDX stream
    /// `local_id`, live, to `socket` and the peer's stream `remote_id` at `remote` (udx-native
    /// `changeRemote(socket, remoteId, port, host)`); once that change completes, send the
    /// peer an empty UDX MESSAGE and close the connection to the relay when the stream next
    /// hears from the peer over the direct path (relay-connection.js `confirmDirectUpgrade`).
    Upgrade {
        /// Our UDX stream id.
        local_id: u32,
        /// The punched socket.
        socket: SocketId,
        /// The peer's UDX stream id (from its handshake payload).
        remote_id: u32,
        /// The peer's direct address.
        remote: SocketAddrV4,
    },
    /// A server accepted a connection.
    Incoming {
        /// The server.
        server: ServerId,
        /// The client's public key.
        remote_public_key: [u8; 32],
        /// How to run it.
        established: Established,
    },
}

/// A connection waiting for a blind-relay pairing ([`ConnectEvent::RelayPairing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PairingId(pub(crate) Owner);

/// Who owns a request, query or pool socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Owner {
    Client(ConnId),
    Slot(ServerId, usize),
    Announcer(ServerId),
}

/// Pool socket ids: global [`SocketId`]s for the punchers' local socket numbers.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    next: u32,
    by_global: HashMap<SocketId, (Owner, u32)>,
    by_local: HashMap<(Owner, u32), SocketId>,
}

impl Pool {
    fn global(&self, owner: Owner, local: u32) -> Option<SocketId> {
        self.by_local.get(&(owner, local)).copied()
    }
    fn open(&mut self, owner: Owner, local: u32) -> SocketId {
        if self.next < 2 {
            self.next = 2;
        }
        let id = SocketId(self.next);
        self.next += 1;
        self.by_global.insert(id, (owner, local));
        self.by_local.insert((owner, local), id);
        id
    }
    /// `owner`'s local number for pool socket `socket`, if it is `owner`'s.
    pub(crate) fn local_of(&self, owner: Owner, socket: SocketId) -> Option<u32> {
        self.by_global
            .get(&socket)
            .filter(|(o, _)| *o == owner)
            .map(|(_, l)| *l)
    }
    fn release(&mut self, owner: Owner, local: u32) -> Option<SocketId> {
        let id = self.by_local.remove(&(owner, local))?;
        self.by_global.remove(&id);
        Some(id)
    }
}

/// The shared state the client and server engines act through.
pub(crate) struct Ctx<'a> {
    pub now: Duration,
    pub node: &'a mut Node,
    pub pool: &'a mut Pool,
    pub actions: &'a mut VecDeque<Action>,
    pub events: &'a mut VecDeque<ConnectEvent>,
    pub requests: &'a mut HashMap<RequestId, Owner>,
    pub queries: &'a mut HashMap<QueryId, Owner>,
    pub nat_pings: &'a mut HashMap<RequestId, (Owner, u32)>,
    pub limiter: &'a mut RandomPunchLimiter,
    pub local_addresses: &'a [SocketAddrV4],
}

/// What a puncher's drained actions amounted to.
#[derive(Debug, Default)]
pub(crate) struct PunchOutcome {
    pub connected: Option<(SocketId, SocketAddrV4)>,
    pub aborted: bool,
}

impl Ctx<'_> {
    /// Moves a puncher's actions to the owner, translating its socket numbers.
    pub fn drain_puncher(&mut self, owner: Owner, p: &mut Puncher) -> PunchOutcome {
        let mut out = PunchOutcome::default();
        while let Some(a) = p.poll_action() {
            match a {
                PunchAction::OpenSocket(k) => {
                    let g = self.pool.open(owner, k);
                    self.actions.push_back(Action::OpenSocket(g));
                }
                PunchAction::ReleaseSocket(k) => {
                    if let Some(g) = self.pool.release(owner, k) {
                        self.actions.push_back(Action::ReleaseSocket(g));
                    }
                }
                PunchAction::NatPing { socket, to } => {
                    let Some(g) = self.pool.global(owner, socket) else {
                        continue;
                    };
                    let mut spec = RequestSpec::new(to, PING);
                    spec.internal = true;
                    spec.socket = Some(g);
                    spec.retries = 0;
                    match self.node.request(self.now, spec) {
                        Ok(id) => {
                            self.nat_pings.insert(id, (owner, socket));
                        }
                        Err(_) => p.handle_nat_ping_failed(socket),
                    }
                }
                PunchAction::Probe { socket, to, ttl } => {
                    if let Some(g) = self.pool.global(owner, socket) {
                        self.actions.push_back(Action::Probe { socket: g, to, ttl });
                    }
                }
                PunchAction::Connected { socket, addr } => {
                    out.connected = self.pool.global(owner, socket).map(|g| (g, addr));
                }
                PunchAction::Aborted => out.aborted = true,
            }
        }
        out
    }

    /// The global id of a puncher's main socket.
    pub fn puncher_socket(&self, owner: Owner, p: &Puncher) -> Option<SocketId> {
        self.pool.global(owner, p.socket())
    }

    /// A random u32 from the node's generator.
    pub fn random_u32(&mut self) -> u32 {
        self.node.random_below(1 << 32) as u32
    }

    /// A fresh key pair for a Noise ephemeral.
    pub fn ephemeral(&mut self) -> KeyPair {
        KeyPair::from_seed(&self.node.random_bytes32())
    }

    /// A 24-byte nonce.
    pub fn nonce(&mut self) -> [u8; 24] {
        let b = self.node.random_bytes32();
        let mut n = [0u8; 24];
        n.copy_from_slice(&b[..24]);
        n
    }
}

/// The connection engine. See the [module docs](self).
#[derive(Default)]
pub struct Connector {
    clients: BTreeMap<ConnId, client::Client>,
    /// Each attempt's overall deadline and its length ([`ConnectOptions::timeout`]); a
    /// fallback retry keeps its attempt's.
    deadlines: BTreeMap<ConnId, (Duration, Duration)>,
    servers: BTreeMap<ServerId, server::Server>,
    pool: Pool,
    actions: VecDeque<Action>,
    events: VecDeque<ConnectEvent>,
    requests: HashMap<RequestId, Owner>,
    queries: HashMap<QueryId, Owner>,
    nat_pings: HashMap<RequestId, (Owner, u32)>,
    limiter: RandomPunchLimiter,
    local_addresses: Vec<SocketAddrV4>,
    next_id: u64,
    /// Connections the owner could not run ([`Connector::refuse`]): our stream id and the
    /// peer's, the newest [`REFUSED_KEPT`].
    refused: VecDeque<(u32, u32)>,
}

/// How many refused connections [`Connector::refused_reset`] answers for.
const REFUSED_KEPT: usize = 256;

macro_rules! ctx {
    ($s:ident, $now:expr, $dht:expr) => {
        Ctx {
            now: $now,
            node: $dht.rpc_mut(),
            pool: &mut $s.pool,
            actions: &mut $s.actions,
            events: &mut $s.events,
            requests: &mut $s.requests,
            queries: &mut $s.queries,
            nat_pings: &mut $s.nat_pings,
            limiter: &mut $s.limiter,
            local_addresses: &$s.local_addresses,
        }
    };
}

impl Connector {
    /// An idle connector.
    pub fn new() -> Self {
        Self::default()
    }

    /// The local interface addresses (with the node's server-socket port) shared with peers for
    /// LAN connections (JS `Holepuncher.localAddresses`).
    pub fn set_local_addresses(&mut self, addrs: Vec<SocketAddrV4>) {
        self.local_addresses = addrs;
    }

    /// `createServer().listen(keyPair)`: announce `key_pair` and accept connections to it.
    pub fn listen(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        key_pair: KeyPair,
        opts: ServerOptions,
    ) -> ServerId {
        self.next_id += 1;
        let server = server::Server::new(self.next_id, key_pair, opts);
        self.start_server(now, dht, self.next_id, server)
    }

    /// `createServer({ createHandshake }).listen(keyPair, { signAnnounce })`, as a dht-relay
    /// serves a non-custodial client: announce `public_key` and accept connections to it while
    /// the key pair stays with its owner, who runs each handshake's Noise
    /// ([`ConnectEvent::ServerNoise`]) and signs each announcement
    /// ([`ConnectEvent::ServerSign`]). Connections come as [`ConnectEvent::Incoming`] with no
    /// handshake keys: the owner runs secret-stream over the stream's bytes. Closing it
    /// unannounces nothing (that needs the owner's signatures too); the records expire.
    pub fn listen_external(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        public_key: [u8; 32],
        opts: ServerOptions,
    ) -> ServerId {
        self.next_id += 1;
        let server = server::Server::new_external(self.next_id, public_key, opts);
        self.start_server(now, dht, self.next_id, server)
    }

    /// Registers server `id` with the DHT node, starts announcing it and keeps it.
    fn start_server(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        id: ServerId,
        mut s: server::Server,
    ) -> ServerId {
        dht.register_server(s.target(), s.record());
        let mut ctx = ctx!(self, now, dht);
        s.start(&mut ctx);
        self.servers.insert(id, s);
        id
    }

    /// The owner's answer to [`NoiseStep::Recv`] of a [`ConnectEvent::ServerNoise`]: the
    /// client's noise payload and public key (`None`: it could not decrypt, or refuses).
    pub fn server_noise_received(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        server: ServerId,
        handshake: u64,
        received: Option<(NoisePayload, [u8; 32])>,
    ) {
        if let Some(s) = self.servers.get_mut(&server) {
            let mut ctx = ctx!(self, now, dht);
            s.external_received(&mut ctx, handshake, received);
        }
    }

    /// The owner's answer to [`NoiseStep::Send`] of a [`ConnectEvent::ServerNoise`]: the
    /// encrypted reply and the holepunch secret of the finished handshake (`None`: refused).
    pub fn server_noise_sent(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        server: ServerId,
        handshake: u64,
        sent: Option<(Vec<u8>, [u8; 32])>,
    ) {
        if let Some(s) = self.servers.get_mut(&server) {
            let mut ctx = ctx!(self, now, dht);
            s.external_sent(&mut ctx, handshake, sent);
        }
    }

    /// The owner's signature of a [`ConnectEvent::ServerSign`] (`None`: refused; that node is
    /// skipped).
    pub fn server_signed(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        server: ServerId,
        sign: u64,
        signature: Option<[u8; 64]>,
    ) {
        if let Some(s) = self.servers.get_mut(&server) {
            let mut ctx = ctx!(self, now, dht);
            s.external_signed(&mut ctx, sign, signature);
        }
    }

    /// Stops a server: unannounces and stops answering handshakes.
    pub fn close_server(&mut self, now: Duration, dht: &mut HyperDht, id: ServerId) {
        if let Some(mut s) = self.servers.remove(&id) {
            dht.unregister_server(&s.target());
            let mut ctx = ctx!(self, now, dht);
            s.close(&mut ctx);
        }
    }

    /// The relays a server announced to (after [`ConnectEvent::Listening`]).
    pub fn server_relays(&self, id: ServerId) -> Vec<SocketAddrV4> {
        self.servers
            .get(&id)
            .map(|s| s.relay_addresses())
            .unwrap_or_default()
    }

    /// `connect(publicKey)`.
    pub fn connect(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        remote_public_key: [u8; 32],
        key_pair: KeyPair,
        opts: ConnectOptions,
    ) -> ConnId {
        self.next_id += 1;
        let id = self.next_id;
        if let Some(t) = opts.timeout {
            self.deadlines.insert(id, (now.saturating_add(t), t));
        }
        let mut ctx = ctx!(self, now, dht);
        let c = client::Client::start(&mut ctx, id, Some(key_pair), remote_public_key, opts);
        if c.is_finished() {
            // Failed at once (an invalid key): its event is queued.
            self.deadlines.remove(&id);
        } else {
            self.clients.insert(id, c);
        }
        id
    }

    /// `connect(publicKey)` with the Noise handshake run outside (JS hyperdht's
    /// `createHandshake` option, as a dht-relay serves a non-custodial client): the connector
    /// never holds the secret key; it asks for each handshake step with
    /// [`ConnectEvent::ExternalNoise`] and hands out an [`Established`] without keys. No
    /// fallback-relay retry (`opts.fallback_relay` is ignored).
    pub fn connect_external(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        remote_public_key: [u8; 32],
        mut opts: ConnectOptions,
    ) -> ConnId {
        opts.fallback_relay = None;
        self.next_id += 1;
        let id = self.next_id;
        if let Some(t) = opts.timeout {
            self.deadlines.insert(id, (now.saturating_add(t), t));
        }
        let mut ctx = ctx!(self, now, dht);
        let c = client::Client::start(&mut ctx, id, None, remote_public_key, opts);
        if c.is_finished() {
            self.deadlines.remove(&id);
        } else {
            self.clients.insert(id, c);
        }
        id
    }

    /// The id the next [`Connector::connect`] or [`Connector::connect_external`] gets (an
    /// owner can file where the first [`ConnectEvent::ExternalNoise`] goes before it comes).
    pub fn next_conn_id(&self) -> ConnId {
        self.next_id + 1
    }

    /// The first message of an external handshake (`None`: its owner refused; the attempt
    /// fails).
    pub fn external_sent(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        conn: ConnId,
        message: Option<Vec<u8>>,
    ) {
        self.dispatch(
            now,
            dht,
            Owner::Client(conn),
            |c, ctx| c.external_sent(ctx, message),
            |_, _| {},
        );
    }

    /// The server's reply decrypted by an external handshake's owner (`None`: it could not;
    /// the attempt fails).
    pub fn external_received(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        conn: ConnId,
        received: Option<ExternalReceived>,
    ) {
        self.dispatch(
            now,
            dht,
            Owner::Client(conn),
            |c, ctx| c.external_received(ctx, received),
            |_, _| {},
        );
    }

    /// Gives up on a connection attempt.
    pub fn cancel(&mut self, now: Duration, dht: &mut HyperDht, id: ConnId) {
        self.deadlines.remove(&id);
        if let Some(mut c) = self.clients.remove(&id) {
            let mut ctx = ctx!(self, now, dht);
            c.destroy(&mut ctx);
        }
    }

    /// The relay paired a connection: its UDX stream runs on `socket` (the socket of our
    /// connection to the relay) to the relay's address `relay` and stream `remote_id`. A
    /// [`ConnectEvent::Connected`] or [`ConnectEvent::Incoming`] follows unless the connection
    /// already has a path.
    pub fn relay_paired(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        pairing: PairingId,
        socket: SocketId,
        relay: SocketAddrV4,
        remote_id: u32,
    ) {
        let owner = pairing.0;
        self.dispatch(
            now,
            dht,
            owner,
            |c, ctx| c.relay_paired(ctx, socket, relay, remote_id),
            |s, ctx| {
                if let Owner::Slot(_, slot) = owner {
                    s.relay_paired(ctx, slot, socket, relay, remote_id)
                }
            },
        );
    }

    /// The connection to a pairing's relay is up at `relay` (its packets are then not taken for
    /// a direct path by the raw stream's firewall).
    pub fn relay_connected(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        pairing: PairingId,
        relay: SocketAddrV4,
    ) {
        let owner = pairing.0;
        self.dispatch(
            now,
            dht,
            owner,
            |c, _| c.relay_connected(relay),
            |s, _| {
                if let Owner::Slot(_, slot) = owner {
                    s.relay_connected(slot, relay)
                }
            },
        );
    }

    /// The relay could not pair a connection (no connection to it, the relay closed, or
    /// 15 s went by).
    pub fn relay_failed(&mut self, now: Duration, dht: &mut HyperDht, pairing: PairingId) {
        let owner = pairing.0;
        self.dispatch(
            now,
            dht,
            owner,
            |c, ctx| c.relay_failed(ctx),
            |s, ctx| {
                if let Owner::Slot(_, slot) = owner {
                    s.relay_failed(ctx, slot)
                }
            },
        );
    }

    /// Feeds one event of the [`HyperDht`]: PEER_HANDSHAKE / PEER_HOLEPUNCH for our servers,
    /// and the responses and query results of our own requests. Returns the event when it is
    /// not the connector's.
    pub fn handle_dht_event(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        event: Event,
    ) -> Option<Event> {
        match event {
            Event::PeerHandshake { req, handshake } => {
                let server = self.server_for(&req)?;
                if let Some(s) = self.servers.get_mut(&server) {
                    let mut ctx = ctx!(self, now, dht);
                    s.on_handshake(&mut ctx, req, handshake);
                }
                None
            }
            Event::PeerHolepunch { req, holepunch } => {
                let server = self.server_for(&req)?;
                if let Some(s) = self.servers.get_mut(&server) {
                    let mut ctx = ctx!(self, now, dht);
                    s.on_holepunch(&mut ctx, req, holepunch);
                }
                None
            }
            Event::Rpc(e) => self.handle_rpc_event(now, dht, e).map(Event::Rpc),
            other => Some(other),
        }
    }

    fn server_for(&self, req: &rpc::IncomingRequest) -> Option<ServerId> {
        let t = req.target?;
        self.servers
            .iter()
            .find(|(_, s)| s.target() == t)
            .map(|(id, _)| *id)
    }

    fn handle_rpc_event(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        event: RpcEvent,
    ) -> Option<RpcEvent> {
        match event {
            RpcEvent::Response { id, response } => {
                if let Some((owner, sock)) = self.nat_pings.remove(&id) {
                    self.with_puncher(now, dht, owner, |p| {
                        p.handle_nat_pong(sock, response.to, response.from.addr)
                    });
                    return None;
                }
                let Some(owner) = self.requests.remove(&id) else {
                    return Some(RpcEvent::Response { id, response });
                };
                self.dispatch(
                    now,
                    dht,
                    owner,
                    |c, ctx| c.on_response(ctx, id, Ok(&response)),
                    |s, ctx| s.on_response(ctx, owner, id, Some(&response)),
                );
                None
            }
            RpcEvent::RequestFailed { id, error } => {
                if let Some((owner, sock)) = self.nat_pings.remove(&id) {
                    self.with_puncher(now, dht, owner, |p| p.handle_nat_ping_failed(sock));
                    return None;
                }
                let Some(owner) = self.requests.remove(&id) else {
                    return Some(RpcEvent::RequestFailed { id, error });
                };
                self.dispatch(
                    now,
                    dht,
                    owner,
                    |c, ctx| c.on_response(ctx, id, Err(())),
                    |s, ctx| s.on_response(ctx, owner, id, None),
                );
                None
            }
            RpcEvent::QueryReply { id, reply } => {
                let Some(&owner) = self.queries.get(&id) else {
                    return Some(RpcEvent::QueryReply { id, reply });
                };
                self.dispatch(
                    now,
                    dht,
                    owner,
                    |c, ctx| c.on_query_reply(ctx, reply.clone()),
                    |_, _| {},
                );
                None
            }
            RpcEvent::QueryDone { id, result } => {
                let Some(owner) = self.queries.remove(&id) else {
                    return Some(RpcEvent::QueryDone { id, result });
                };
                let closest = result.map(|r| r.closest_replies).unwrap_or_default();
                self.dispatch(
                    now,
                    dht,
                    owner,
                    |c, ctx| c.on_query_done(ctx),
                    |s, ctx| s.on_query_done(ctx, closest.clone()),
                );
                None
            }
            other => Some(other),
        }
    }

    fn dispatch(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        owner: Owner,
        client: impl FnOnce(&mut client::Client, &mut Ctx<'_>),
        server: impl FnOnce(&mut server::Server, &mut Ctx<'_>),
    ) {
        let mut ctx = ctx!(self, now, dht);
        match owner {
            Owner::Client(id) => {
                if let Some(c) = self.clients.get_mut(&id) {
                    client(c, &mut ctx);
                    if c.is_upgrading() {
                        // Handed over (relayed): the attempt's deadline is met; the punch for
                        // a direct path goes on at most server::UPGRADE_WAIT (set once).
                        let wait = server::UPGRADE_WAIT;
                        let d = self
                            .deadlines
                            .entry(id)
                            .or_insert((now.saturating_add(wait), wait));
                        if d.1 != wait {
                            *d = (now.saturating_add(wait), wait);
                        }
                    }
                    if c.is_finished() {
                        let retry = c.take_retry();
                        self.clients.remove(&id);
                        match retry {
                            Some((kp, pk, opts)) => {
                                let c = client::Client::start(&mut ctx, id, Some(kp), pk, opts);
                                self.clients.insert(id, c);
                            }
                            None => {
                                self.deadlines.remove(&id);
                            }
                        }
                    }
                }
            }
            Owner::Slot(sid, _) | Owner::Announcer(sid) => {
                if let Some(s) = self.servers.get_mut(&sid) {
                    server(s, &mut ctx);
                }
            }
        }
    }

    fn with_puncher(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        owner: Owner,
        f: impl FnOnce(&mut Puncher),
    ) {
        match owner {
            Owner::Client(_) => {
                self.dispatch(now, dht, owner, |c, ctx| c.with_puncher(ctx, f), |_, _| {})
            }
            Owner::Slot(_, slot) => self.dispatch(
                now,
                dht,
                owner,
                |_, _| {},
                |s, ctx| s.with_puncher(ctx, slot, f),
            ),
            Owner::Announcer(_) => {}
        }
    }

    /// A 1-byte datagram arrived on `socket` from `from`.
    pub fn handle_probe(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        socket: SocketId,
        from: SocketAddrV4,
    ) {
        let Some(&(owner, local)) = self.pool.by_global.get(&socket) else {
            return;
        };
        let lim = &mut self.limiter as *mut RandomPunchLimiter;
        let _ = lim;
        self.with_puncher_lim(now, dht, owner, move |p, lim| {
            p.handle_probe(local, from, now.as_millis() as u64, lim)
        });
    }

    fn with_puncher_lim(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        owner: Owner,
        f: impl FnOnce(&mut Puncher, &mut RandomPunchLimiter),
    ) {
        match owner {
            Owner::Client(_) => self.dispatch(
                now,
                dht,
                owner,
                |c, ctx| c.with_puncher_lim(ctx, f),
                |_, _| {},
            ),
            Owner::Slot(_, slot) => self.dispatch(
                now,
                dht,
                owner,
                |_, _| {},
                |s, ctx| s.with_puncher_lim(ctx, slot, f),
            ),
            Owner::Announcer(_) => {}
        }
    }

    /// A UDX packet for stream `stream_id`, which no stream has, arrived on `socket` from
    /// `from`. Returns `true` when a connection took it (a [`ConnectEvent`] follows: connect
    /// the stream, then feed the packet again).
    pub fn handle_udx_firewall(
        &mut self,
        now: Duration,
        dht: &mut HyperDht,
        socket: SocketId,
        from: SocketAddrV4,
        stream_id: u32,
    ) -> bool {
        if from.port() == 0 {
            return false;
        }
        let mut ctx = ctx!(self, now, dht);
        for c in self.clients.values_mut() {
            if c.stream_id() == stream_id && c.on_firewall(&mut ctx, socket, from) {
                return true;
            }
        }
        for s in self.servers.values_mut() {
            if s.on_firewall(&mut ctx, socket, from, stream_id) {
                return true;
            }
        }
        false
    }

    /// The owner cannot run a connection the connector handed over (its UDX stream did not
    /// open, or nobody takes it): returns the reset to send the peer now (to `est.remote`),
    /// and remembers the connection so that its later packets get one too
    /// ([`Connector::refused_reset`]): the peer may open its stream only after the first.
    pub fn refuse(&mut self, est: &Established) -> Vec<u8> {
        if !self.refused.iter().any(|(l, _)| *l == est.local_id) {
            if self.refused.len() >= REFUSED_KEPT {
                self.refused.pop_front();
            }
            self.refused.push_back((est.local_id, est.remote_id));
        }
        est.reset_packet()
    }

    /// For a UDX packet to our stream `stream_id` that no stream has: the reset to send back
    /// to its sender when it belongs to a refused connection.
    pub fn refused_reset(&self, stream_id: u32) -> Option<Vec<u8>> {
        self.refused
            .iter()
            .find(|(local, _)| *local == stream_id)
            .map(|(_, remote)| crate::udx::packet::reset(*remote))
    }

    /// The next action.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ConnectEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let c = self.clients.values().filter_map(|c| c.poll_timeout());
        let s = self.servers.values().filter_map(|s| s.poll_timeout());
        let d = self.deadlines.values().map(|(at, _)| *at);
        c.chain(s).chain(d).min()
    }

    /// Runs due timers.
    pub fn handle_timeout(&mut self, now: Duration, dht: &mut HyperDht) {
        let mut ctx = ctx!(self, now, dht);
        let expired: Vec<(ConnId, Duration)> = self
            .deadlines
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, (_, t))| (*id, *t))
            .collect();
        for (id, after) in expired {
            self.deadlines.remove(&id);
            if let Some(mut c) = self.clients.remove(&id) {
                c.expire(&mut ctx, after);
            }
        }
        let mut done = Vec::new();
        for (id, c) in self.clients.iter_mut() {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(&mut ctx);
            }
            if c.is_finished() {
                done.push(*id);
            }
        }
        for id in done {
            let retry = self.clients.get_mut(&id).and_then(|c| c.take_retry());
            self.clients.remove(&id);
            match retry {
                Some((kp, pk, opts)) => {
                    let c = client::Client::start(&mut ctx, id, Some(kp), pk, opts);
                    self.clients.insert(id, c);
                }
                None => {
                    self.deadlines.remove(&id);
                }
            }
        }
        for s in self.servers.values_mut() {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(&mut ctx);
            }
        }
    }
}

#[cfg(test)]
mod sim_tests;
