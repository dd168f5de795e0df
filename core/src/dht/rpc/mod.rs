//! dht-rpc 6.27.0 as a sans-IO engine: the Kademlia RPC layer under hyperdht.
//!
//! A [`Node`] is one dht-rpc node. It never touches a socket or a clock:
//!
//! - datagrams in: [`Node::handle_datagram`]`(now, socket, from, bytes)`;
//! - datagrams out: [`Node::poll_transmit`] (each names the [`SocketId`] to send from, the
//!   destination and an optional TTL);
//! - timers: [`Node::poll_timeout`] / [`Node::handle_timeout`]`(now)`;
//! - results: [`Node::poll_event`] ([`Event`]).
//!
//! Time is a [`Duration`] since an epoch the caller picks (hyperdht's announce `bump` compares
//! with it as Unix time, so drivers pass time since the Unix epoch). Randomness is a 32-byte
//! seed given to [`Node::new`] and expanded with ChaCha20 ([`crate::rng::Rng`]).
//!
//! ## Sockets
//! dht-rpc binds two UDP sockets: the *server* socket (the node's public port; replies to
//! PING_NAT probe it) and the *client* socket (requests go out on it while the node is
//! firewalled). [`SocketId::SERVER`] and [`SocketId::CLIENT`] name them; a transport may add
//! more ids (hyperdht's holepunch sockets run RPC too) and pass them in and out unchanged.
//! A node sends its id only from the server socket and only once persistent, and a message
//! arriving on the "other" socket does not refresh NAT samples, exactly as in JS.
//!
//! ## What a layer above does
//! - **User commands** (hyperdht's LOOKUP, ANNOUNCE, ...): with [`Config::handle_user_requests`]
//!   set, every non-internal request becomes [`Event::Request`]; answer it with
//!   [`Node::reply`], [`Node::error`], forward it with [`Node::relay`] (keeps the tid, as
//!   hyperdht's router does), or drop it (JS drops bad writes silently).
//! - **Requests**: [`Node::request`] with a [`RequestSpec`] → [`Event::Response`] or
//!   [`Event::RequestFailed`].
//! - **Queries**: [`Node::query`] walks towards a target ([`QueryOptions`]); every successful
//!   reply comes as [`Event::QueryReply`], then [`Event::QueryDone`] with the closest replies.
//!   A query with [`Commit::Auto`] re-sends its command with each closest node's token (JS
//!   `commit: true`); with [`Commit::External`] the engine stops after the walk with
//!   [`Event::QueryCommit`] and waits for one [`Node::commit`] call per closest reply (sign and
//!   send a write, or report success/failure), as JS's `commit(reply)` functions do.
//!
//! Modules: [`messages`] (wire codec), [`table`] (kademlia-routing-table plus the time-ordered
//! node list), [`nat`] (nat-sampler), [`io`] (congestion window, tokens, tids, retries, rate
//! limits) (randomness from [`crate::rng`]); the node's behaviour is split over `node` (datagrams, requests, replies),
//! `query` (the iterative walk and its commit phase) and `maintenance` (ticks, bootstrap,
//! NAT/firewall decisions, health pings, network health).

use core::net::SocketAddrV4;
use core::time::Duration;

pub mod io;
mod maintenance;
pub mod messages;
pub mod nat;
mod node;
mod query;
pub mod table;
#[cfg(test)]
pub(crate) mod tests;

pub use io::RateLimits;
pub use messages::{node_id, NodeId, PacketError};
pub use node::{Node, Stats};

/// Internal command: PING.
pub const PING: u64 = 0;
/// Internal command: PING_NAT (the reply goes to the port in the value).
pub const PING_NAT: u64 = 1;
/// Internal command: FIND_NODE.
pub const FIND_NODE: u64 = 2;
/// Internal command: DOWN_HINT (a node we were referred to is down).
pub const DOWN_HINT: u64 = 3;
/// Internal command: DELAYED_PING (reply after the delay in the value).
pub const DELAYED_PING: u64 = 4;

/// Response error: no error.
pub const OK: u64 = 0;
/// Response error: the command is not known.
pub const ERROR_UNKNOWN_COMMAND: u64 = 1;
/// Response error: the token is not one we issued.
pub const ERROR_INVALID_TOKEN: u64 = 2;

/// Default query concurrency.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// The 5-second tick of the node's maintenance.
pub const TICK_INTERVAL: Duration = Duration::from_secs(5);

/// Which local socket a datagram came in on or goes out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u32);

impl SocketId {
    /// The server socket: the node's public port.
    pub const SERVER: SocketId = SocketId(0);
    /// The client socket: requests leave from it while the node is firewalled.
    pub const CLIENT: SocketId = SocketId(1);
}

/// A datagram for the transport to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The socket to send from.
    pub socket: SocketId,
    /// The destination.
    pub to: SocketAddrV4,
    /// The datagram.
    pub bytes: Vec<u8>,
    /// IP TTL for this datagram; 0 means the socket's default.
    pub ttl: u8,
}

/// A remote node as a message told us about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its address.
    pub addr: SocketAddrV4,
    /// Its id, if it sent one that matches its address (persistent nodes only).
    pub id: Option<NodeId>,
}

/// A response to one of our requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The transaction id.
    pub tid: u16,
    /// Who answered.
    pub from: Peer,
    /// Our address as the responder saw it.
    pub to: SocketAddrV4,
    /// A write token for our host, valid at the responder for ~7.5-15 s.
    pub token: Option<[u8; 32]>,
    /// Nodes closer to the target (empty when the responder sent none).
    pub closer_nodes: Vec<SocketAddrV4>,
    /// 0 on success.
    pub error: u64,
    /// The payload.
    pub value: Option<Vec<u8>>,
    /// Time since the request's first send.
    pub rtt: Duration,
    /// The socket the response arrived on.
    pub socket: SocketId,
}

/// A request a remote sent us, for the layer above to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRequest {
    /// The transaction id the answer must carry.
    pub tid: u16,
    /// The requester (its id when it sent a valid one).
    pub from: Peer,
    /// Our address as the requester sees it.
    pub to: SocketAddrV4,
    /// The socket it arrived on; answers leave from it by default.
    pub socket: SocketId,
    /// The requester's token: when present it has been checked (an invalid one is answered
    /// with [`ERROR_INVALID_TOKEN`] and never reaches the layer above).
    pub token: Option<[u8; 32]>,
    /// An internal command (never true for [`Event::Request`]).
    pub internal: bool,
    /// The command.
    pub command: u64,
    /// The target.
    pub target: Option<[u8; 32]>,
    /// The payload.
    pub value: Option<Vec<u8>>,
}

/// How to answer an [`IncomingRequest`] ([`Node::reply`], [`Node::error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyOptions {
    /// Include a fresh write token for the requester's host.
    pub token: bool,
    /// Include the closest nodes to the request's target (if it had one).
    pub closer_nodes: bool,
    /// Send to this address instead of the requester (the `to` field says it too).
    pub to: Option<SocketAddrV4>,
    /// Send from this socket instead of the one the request arrived on.
    pub socket: Option<SocketId>,
}

impl ReplyOptions {
    /// JS `req.reply(value)` defaults: token and closer nodes.
    pub const REPLY: ReplyOptions = ReplyOptions {
        token: true,
        closer_nodes: true,
        to: None,
        socket: None,
    };
    /// JS `req.error(code)` defaults: closer nodes, no token.
    pub const ERROR: ReplyOptions = ReplyOptions {
        token: false,
        closer_nodes: true,
        to: None,
        socket: None,
    };
    /// Neither token nor closer nodes (`{ token: false, closerNodes: false }`).
    pub const BARE: ReplyOptions = ReplyOptions {
        token: false,
        closer_nodes: false,
        to: None,
        socket: None,
    };
}

/// A request to send ([`Node::request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// Destination.
    pub to: SocketAddrV4,
    /// The command number.
    pub command: u64,
    /// An internal dht-rpc command (PING etc.) instead of a user one.
    pub internal: bool,
    /// A write token the destination issued.
    pub token: Option<[u8; 32]>,
    /// The target key.
    pub target: Option<[u8; 32]>,
    /// The payload.
    pub value: Option<Vec<u8>>,
    /// Send from this socket (default: client socket while firewalled, else server socket).
    pub socket: Option<SocketId>,
    /// Retries after a timeout (JS default 3; `retry: false` is 0).
    pub retries: u32,
    /// Per-attempt timeout (default 1 s).
    pub timeout: Option<Duration>,
    /// IP TTL (0: default).
    pub ttl: u8,
    /// Send even when the congestion window is full.
    pub force: bool,
}

impl RequestSpec {
    /// A user-command request with the JS defaults.
    pub fn new(to: SocketAddrV4, command: u64) -> Self {
        RequestSpec {
            to,
            command,
            internal: false,
            token: None,
            target: None,
            value: None,
            socket: None,
            retries: io::DEFAULT_RETRIES,
            timeout: None,
            ttl: 0,
            force: false,
        }
    }
}

/// Names a request started with [`Node::request`] (or a commit request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Names a query started with [`Node::query`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No response after every retry.
    #[error("request timed out")]
    Timeout,
    /// Cancelled (by [`Node::cancel_request`], or with its query).
    #[error("request destroyed")]
    Destroyed,
    /// Too many requests are inflight ([`Limits::max_inflight`]).
    #[error("too many requests inflight")]
    Overloaded,
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No node with an id answered, so there was nothing to commit to (JS "Too few nodes
    /// responded").
    #[error("too few nodes responded")]
    TooFewNodes,
    /// Every commit failed; the last failure.
    #[error("every commit failed: {0}")]
    CommitFailed(RequestError),
    /// An external commit reported failure for every closest reply.
    #[error("every commit failed")]
    CommitRejected,
    /// Too many queries or requests are running.
    #[error("too many queries running")]
    Overloaded,
    /// Cancelled with [`Node::destroy_query`].
    #[error("query destroyed")]
    Destroyed,
}

/// What a query does after its walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Commit {
    /// Nothing: the query ends with the walk.
    #[default]
    None,
    /// Re-send the query's command to each closest reply with its token (JS `commit: true`).
    Auto,
    /// The owner commits: [`Event::QueryCommit`], then one [`Node::commit`] per closest reply.
    External,
}

/// Options of [`Node::query`].
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Parallel requests (default [`Config::concurrency`]).
    pub concurrency: Option<usize>,
    /// Start from these nodes (JS `closestNodes` / `nodes`) instead of the routing table.
    pub nodes: Vec<SocketAddrV4>,
    /// The commit phase.
    pub commit: Commit,
    /// Do not walk: only ask the given nodes (JS `onlyClosestNodes`).
    pub only_closest_nodes: bool,
    /// Retries per visit (default 5; 3 for DOWN_HINT).
    pub retries: Option<u32>,
    /// Ignore the congestion window and do not retry.
    pub force: bool,
}

/// One closest-reply commit decision ([`Node::commit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitAction {
    /// Send this request; the commit succeeds when any response arrives. Its result also comes
    /// as [`Event::Response`]/[`Event::RequestFailed`] under the returned id.
    Request(RequestSpec),
    /// The commit is done without a request (true: succeeded).
    Done(bool),
}

/// A finished query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    /// Up to k replies (from nodes with ids, with error 0), closest to the target first.
    pub closest_replies: Vec<Response>,
    /// Nodes that answered.
    pub successes: usize,
    /// Nodes that failed or answered with an error.
    pub errors: usize,
}

impl QueryResult {
    /// The addresses of the closest replies (JS `query.closestNodes`).
    pub fn closest_nodes(&self) -> Vec<SocketAddrV4> {
        self.closest_replies.iter().map(|r| r.from.addr).collect()
    }
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The bootstrap finished (JS `ready`).
    Ready,
    /// The node became persistent: it has an id and serves records (JS `persistent`).
    Persistent,
    /// An adaptive node went back to ephemeral after a sleep (JS `ephemeral`).
    Ephemeral,
    /// Our public address as sampled changed (JS `nat-update`).
    NatUpdate {
        /// The public host, if consistent.
        host: Option<core::net::Ipv4Addr>,
        /// The public port (0: unknown or randomized).
        port: u16,
    },
    /// A node joined the routing table.
    NodeAdded(SocketAddrV4),
    /// A node left the routing table.
    NodeRemoved(SocketAddrV4),
    /// A tick came more than 15 s late: the machine slept (JS `wakeup`).
    Wakeup,
    /// The network health changed (JS `network-update` from health).
    NetworkUpdate {
        /// Responses arrive.
        online: bool,
        /// More than half of the requests time out.
        degraded: bool,
    },
    /// A user-command request to answer (only with [`Config::handle_user_requests`]).
    Request(IncomingRequest),
    /// A response to [`Node::request`] (or a commit request).
    Response {
        /// The request.
        id: RequestId,
        /// The response.
        response: Response,
    },
    /// A request failed.
    RequestFailed {
        /// The request.
        id: RequestId,
        /// Why.
        error: RequestError,
    },
    /// A successful reply (error 0) during a query's walk.
    QueryReply {
        /// The query.
        id: QueryId,
        /// The reply.
        reply: Response,
    },
    /// An external-commit query finished its walk: call [`Node::commit`] once per reply.
    QueryCommit {
        /// The query.
        id: QueryId,
        /// The closest replies, closest first.
        replies: Vec<Response>,
    },
    /// A query ended.
    QueryDone {
        /// The query.
        id: QueryId,
        /// Its closest replies, or why it failed.
        result: Result<QueryResult, QueryError>,
    },
}

/// Bounds on the engine's state (hyperpunch additions; JS has none of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests inflight or waiting for the congestion window.
    pub max_inflight: usize,
    /// Concurrent queries.
    pub max_queries: usize,
    /// DELAYED_PING answers waiting.
    pub max_delayed_pings: usize,
    /// Addresses a query remembers (seen, pending, down).
    pub max_query_nodes: usize,
    /// Incoming request rate limits.
    pub rate: RateLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_inflight: 8192,
            max_queries: 1024,
            max_delayed_pings: 256,
            max_query_nodes: 2048,
            rate: RateLimits::default(),
        }
    }
}

/// How a [`Node`] runs (dht-rpc's constructor options).
#[derive(Debug, Clone)]
pub struct Config {
    /// Bootstrap nodes, already resolved to IPv4 addresses.
    pub bootstrap: Vec<SocketAddrV4>,
    /// The server socket's local port (sent in PING_NAT; compared with the sampled port).
    pub server_port: u16,
    /// `Some(false)`: persistent as soon as the NAT sample allows (JS `ephemeral: false`);
    /// `Some(true)`: always ephemeral; `None`: adaptive (persistent after ~20 stable minutes).
    pub ephemeral: Option<bool>,
    /// With `ephemeral: None`: adapt (JS `adaptive !== false`).
    pub adaptive: bool,
    /// Start firewalled (JS default true); `false` skips the firewall check.
    pub firewalled: bool,
    /// Probe the firewall with one PING_NAT during the bootstrap.
    pub quick_firewall: bool,
    /// Query concurrency (10).
    pub concurrency: usize,
    /// Congestion window per 750 ms slot (80).
    pub max_window: u32,
    /// Longest DELAYED_PING delay honoured, in ms (10,000).
    pub max_ping_delay: u32,
    /// Send DOWN_HINTs about nodes that time out.
    pub send_down_hints: bool,
    /// DOWN_HINTs per tick at most (`None`: no limit; JS default 50).
    pub down_hints_rate_limit: Option<u32>,
    /// Pre-seed the NAT sampler with our public address (JS `DHT.bootstrapper(port, host)`).
    pub nat_seed: Option<SocketAddrV4>,
    /// Nodes never to talk to or add (hyperdht filters a few public testnet nodes).
    pub filter: Option<fn(&SocketAddrV4) -> bool>,
    /// Hand user-command requests to the owner as [`Event::Request`]; otherwise they are
    /// answered with [`ERROR_UNKNOWN_COMMAND`].
    pub handle_user_requests: bool,
    /// Nodes to add to the table at start (JS `nodes`).
    pub nodes: Vec<SocketAddrV4>,
    /// State bounds and rate limits.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bootstrap: Vec::new(),
            server_port: 0,
            ephemeral: None,
            adaptive: true,
            firewalled: true,
            quick_firewall: true,
            concurrency: DEFAULT_CONCURRENCY,
            max_window: io::MAX_WINDOW,
            max_ping_delay: 10_000,
            send_down_hints: true,
            down_hints_rate_limit: Some(50),
            nat_seed: None,
            filter: None,
            handle_user_requests: false,
            nodes: Vec::new(),
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// A bootstrap node at `public` (JS `DHT.bootstrapper(port, host)`): persistent, not
    /// firewalled, no bootstrap list, the NAT sampler pre-seeded with `public`.
    pub fn bootstrapper(public: SocketAddrV4) -> Self {
        Config {
            server_port: public.port(),
            ephemeral: Some(false),
            firewalled: false,
            nat_seed: Some(public),
            ..Config::default()
        }
    }
}
