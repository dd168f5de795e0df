//! [`HyperDht`]: a dht-rpc [`Node`] plus hyperdht's record store, router and client
//! operations, with the same poll interface.

use core::net::{SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use super::client::Op;
use super::messages::PeerRecord;
use super::messages_connect::{HandshakeMessage, HolepunchMessage};
use super::persistent::{Persistent, StoreLimits};
use super::router::Router;
use super::rpc::{
    self, IncomingRequest, Node, PacketError, QueryId, ReplyOptions, RequestId, SocketId, Transmit,
    ERROR_UNKNOWN_COMMAND,
};
use super::*;

/// How a [`HyperDht`] runs.
#[derive(Debug, Clone, Default)]
pub struct DhtConfig {
    /// The dht-rpc node's options (`handle_user_requests` is forced on; `filter` defaults to
    /// hyperdht's filter of a few misbehaving public nodes).
    pub rpc: rpc::Config,
    /// Sizes and ages of the record caches (hyperdht's defaults).
    pub store: StoreLimits,
}

impl DhtConfig {
    /// A bootstrap node at `public` (hyperdht's `DHT.bootstrapper(port, host)`).
    pub fn bootstrapper(public: SocketAddrV4) -> Self {
        DhtConfig {
            rpc: rpc::Config::bootstrapper(public),
            ..DhtConfig::default()
        }
    }
}

/// hyperdht's `filterNode`: public testnet nodes that got mixed into the main DHT by accident.
pub fn hyperdht_filter(addr: &SocketAddrV4) -> bool {
    let ip = addr.ip().octets();
    let port = addr.port();
    !(port == 49738 && (ip == [134, 209, 28, 98] || ip == [167, 99, 142, 185])
        || port == 9400 && ip == [35, 233, 47, 252]
        || ip == [150, 136, 142, 116])
}

/// Names a client operation ([`HyperDht::lookup`], [`HyperDht::announce`], ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// A LOOKUP (or announce/unannounce walk) reply that carried records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupResult {
    /// The node that answered.
    pub from: rpc::Peer,
    /// Our address as it saw us.
    pub to: SocketAddrV4,
    /// Its write token.
    pub token: Option<[u8; 32]>,
    /// The announcers it stores for the topic.
    pub peers: Vec<PeerRecord>,
    /// The topic's bump.
    pub bump: u64,
}

/// A FIND_PEER reply that carried a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindPeerResult {
    /// The node that answered (it relays handshakes to the peer).
    pub from: rpc::Peer,
    /// Our address as it saw us.
    pub to: SocketAddrV4,
    /// Its write token.
    pub token: Option<[u8; 32]>,
    /// The peer's record.
    pub peer: PeerRecord,
}

/// A mutable record found by [`HyperDht::mutable_get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableValue {
    /// Its sequence number.
    pub seq: u64,
    /// The value.
    pub value: Vec<u8>,
    /// The writer's signature.
    pub signature: [u8; 64],
    /// The node it came from.
    pub from: SocketAddrV4,
}

/// What a finished operation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutput {
    /// A lookup or find-peer walk ended.
    Lookup {
        /// The closest nodes that answered.
        closest_nodes: Vec<SocketAddrV4>,
    },
    /// The announce was committed to the closest nodes.
    Announce {
        /// Where it was stored.
        closest_nodes: Vec<SocketAddrV4>,
    },
    /// The unannounce walk finished.
    Unannounce,
    /// An immutable value was stored.
    ImmutablePut {
        /// Its hash, the key to get it by.
        hash: [u8; 32],
        /// Where it was stored.
        closest_nodes: Vec<SocketAddrV4>,
    },
    /// An immutable get: the value (whose hash matched) and where it came from, or none.
    ImmutableGet(Option<(Vec<u8>, SocketAddrV4)>),
    /// A mutable value was stored.
    MutablePut {
        /// The writer's key.
        public_key: [u8; 32],
        /// The sequence number.
        seq: u64,
        /// The signature.
        signature: [u8; 64],
        /// Where it was stored.
        closest_nodes: Vec<SocketAddrV4>,
    },
    /// A mutable get: the latest (or first) valid record, or none.
    MutableGet(Option<MutableValue>),
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// Its query failed.
    #[error(transparent)]
    Query(#[from] rpc::QueryError),
    /// Cancelled.
    #[error("operation cancelled")]
    Cancelled,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A dht-rpc event this layer does not consume: `Ready`, `Persistent`, `NatUpdate`,
    /// `NodeAdded`, ..., and responses/queries the caller started on [`HyperDht::rpc_mut`].
    Rpc(rpc::Event),
    /// A reply with records, during [`HyperDht::lookup`], [`HyperDht::announce`] or
    /// [`HyperDht::unannounce`].
    Lookup {
        /// The operation.
        op: OpId,
        /// The reply.
        reply: LookupResult,
    },
    /// A reply with a record during [`HyperDht::find_peer`].
    FindPeer {
        /// The operation.
        op: OpId,
        /// The reply.
        reply: FindPeerResult,
    },
    /// An operation ended.
    OpDone {
        /// The operation.
        op: OpId,
        /// Its result.
        result: Result<OpOutput, OpError>,
    },
    /// An announcement made with [`HyperDht::announce_external`] needs the key pair owner's
    /// signature for one storing node: sign [`announce_signable`](super::signing::announce_signable)`(target,
    /// peer_id, token, { public key, relay_addresses })` and answer with
    /// [`HyperDht::announce_signed`].
    SignAnnounce {
        /// The operation.
        op: OpId,
        /// Names this request in the answer.
        sign: u64,
        /// The topic.
        target: [u8; 32],
        /// The storing node's token.
        token: [u8; 32],
        /// The storing node's id.
        peer_id: [u8; 32],
        /// The relay addresses in the record.
        relay_addresses: Vec<SocketAddrV4>,
    },
    /// A PEER_HANDSHAKE for a server registered with [`HyperDht::register_server`]; answer
    /// with [`HyperDht::server_handshake_reply`] (or drop it).
    PeerHandshake {
        /// The request (its target is the server's key hash).
        req: IncomingRequest,
        /// The decoded value.
        handshake: HandshakeMessage,
    },
    /// A PEER_HOLEPUNCH (mode FROM_RELAY) for a registered server; answer with
    /// [`HyperDht::server_holepunch_reply`].
    PeerHolepunch {
        /// The request.
        req: IncomingRequest,
        /// The decoded value.
        holepunch: HolepunchMessage,
    },
}

/// A hyperdht node, sans-IO (see the [module documentation](super)).
pub struct HyperDht {
    pub(crate) rpc: Node,
    pub(crate) persistent: Option<Persistent>,
    pub(crate) router: Router,
    pub(crate) store_limits: StoreLimits,
    pub(crate) ops: BTreeMap<OpId, Op>,
    pub(crate) next_op: u64,
    pub(crate) query_ops: BTreeMap<QueryId, OpId>,
    pub(crate) request_ops: BTreeMap<RequestId, (OpId, super::client::Role)>,
    pub(crate) events: VecDeque<Event>,
}

impl core::fmt::Debug for HyperDht {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HyperDht")
            .field("rpc", &self.rpc)
            .field("ops", &self.ops.len())
            .finish_non_exhaustive()
    }
}

impl HyperDht {
    /// A node starting at `now` (time since the Unix epoch, for the announce bump) with its
    /// randomness drawn from `seed`.
    pub fn new(mut config: DhtConfig, now: Duration, seed: [u8; 32]) -> Self {
        config.rpc.handle_user_requests = true;
        if config.rpc.filter.is_none() {
            config.rpc.filter = Some(hyperdht_filter);
        }
        let rpc = Node::new(config.rpc, now, seed);
        let mut dht = HyperDht {
            rpc,
            persistent: None,
            router: Router::new(&config.store, now),
            store_limits: config.store,
            ops: BTreeMap::new(),
            next_op: 0,
            query_ops: BTreeMap::new(),
            request_ops: BTreeMap::new(),
            events: VecDeque::new(),
        };
        dht.process();
        dht
    }

    /// The dht-rpc node underneath (id, table, NAT state, ...).
    pub fn rpc(&self) -> &Node {
        &self.rpc
    }

    /// The dht-rpc node, to send raw requests or run raw queries; their results come back as
    /// [`Event::Rpc`].
    pub fn rpc_mut(&mut self) -> &mut Node {
        &mut self.rpc
    }

    /// Records stored here: (announcements, mutable, immutable, router forwards), or `None`
    /// before the node became persistent.
    pub fn store_sizes(&self) -> Option<(usize, usize, usize, usize)> {
        let p = self.persistent.as_ref()?;
        Some((
            p.records.len(),
            p.mutables.len(),
            p.immutables.len(),
            self.router.forwards.len(),
        ))
    }

    /// Bytes held by the record store (approximate).
    pub fn store_bytes(&self) -> usize {
        self.persistent.as_ref().map_or(0, |p| {
            p.records.bytes() + p.mutables.bytes() + p.immutables.bytes()
        })
    }

    // ------------------------------------------------------------------ poll interface

    /// Feed one datagram (see [`Node::handle_datagram`]).
    pub fn handle_datagram(
        &mut self,
        now: Duration,
        socket: SocketId,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), PacketError> {
        let r = self.rpc.handle_datagram(now, socket, from, bytes);
        self.process();
        r
    }

    /// Run due timers.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.rpc.handle_timeout(now);
        if let Some(p) = self.persistent.as_mut() {
            p.advance(now);
        }
        self.router.forwards.advance(now);
        self.process();
    }

    /// When [`HyperDht::handle_timeout`] must run next.
    pub fn poll_timeout(&mut self) -> Option<Duration> {
        self.rpc.poll_timeout()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.rpc.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.process();
        self.events.pop_front()
    }

    /// Stop everything (operations fail with `Query(Destroyed)`).
    pub fn destroy(&mut self) {
        self.rpc.destroy();
        self.process();
    }

    /// Handle what the rpc node reported.
    pub(crate) fn process(&mut self) {
        while let Some(e) = self.rpc.poll_event() {
            match e {
                rpc::Event::Request(req) => self.on_request(req),
                rpc::Event::Persistent => {
                    if self.persistent.is_none() {
                        self.persistent = Some(Persistent::new(&self.store_limits, self.rpc.now()));
                    }
                    self.events.push_back(Event::Rpc(rpc::Event::Persistent));
                }
                rpc::Event::QueryReply { id, reply } => match self.query_ops.get(&id) {
                    Some(&op) => self.op_reply(op, reply),
                    None => self
                        .events
                        .push_back(Event::Rpc(rpc::Event::QueryReply { id, reply })),
                },
                rpc::Event::QueryCommit { id, replies } => match self.query_ops.get(&id) {
                    Some(&op) => self.op_commit(op, replies),
                    None => self
                        .events
                        .push_back(Event::Rpc(rpc::Event::QueryCommit { id, replies })),
                },
                rpc::Event::QueryDone { id, result } => match self.query_ops.remove(&id) {
                    Some(op) => self.op_query_done(op, result),
                    None => self
                        .events
                        .push_back(Event::Rpc(rpc::Event::QueryDone { id, result })),
                },
                rpc::Event::Response { id, response } => match self.request_ops.remove(&id) {
                    Some((op, role)) => self.op_request_settled(op, role, Some(response)),
                    None => self
                        .events
                        .push_back(Event::Rpc(rpc::Event::Response { id, response })),
                },
                rpc::Event::RequestFailed { id, error } => match self.request_ops.remove(&id) {
                    Some((op, role)) => self.op_request_settled(op, role, None),
                    None => self
                        .events
                        .push_back(Event::Rpc(rpc::Event::RequestFailed { id, error })),
                },
                other => self.events.push_back(Event::Rpc(other)),
            }
        }
    }

    /// A user command (hyperdht `onrequest`).
    fn on_request(&mut self, req: IncomingRequest) {
        match req.command {
            PEER_HANDSHAKE => return self.on_peer_handshake(req),
            PEER_HOLEPUNCH => return self.on_peer_holepunch(req),
            _ => {}
        }
        if self.persistent.is_none() || self.rpc.id().is_none() {
            return self.unknown_command(&req);
        }
        let now = self.rpc.now();
        if let Some(p) = self.persistent.as_mut() {
            p.advance(now);
        }
        self.router.forwards.advance(now);
        match req.command {
            FIND_PEER => self.on_find_peer(&req),
            LOOKUP => self.on_lookup(&req),
            ANNOUNCE => self.on_announce(&req),
            UNANNOUNCE => self.on_unannounce(&req),
            MUTABLE_PUT => self.on_mutable_put(&req),
            MUTABLE_GET => self.on_mutable_get(&req),
            IMMUTABLE_PUT => self.on_immutable_put(&req),
            IMMUTABLE_GET => self.on_immutable_get(&req),
            // No plugins are registered: JS returns without answering.
            PLUGIN => {}
            _ => self.unknown_command(&req),
        }
    }

    fn unknown_command(&mut self, req: &IncomingRequest) {
        let opts = ReplyOptions {
            closer_nodes: req.target.is_some(),
            ..ReplyOptions::ERROR
        };
        self.rpc.error(req, ERROR_UNKNOWN_COMMAND, opts);
    }

    pub(crate) fn new_op(&mut self) -> OpId {
        self.next_op += 1;
        OpId(self.next_op)
    }
}
