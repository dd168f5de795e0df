//! hyperswarm 4.17.2 as a sans-IO engine: topics joined as server and/or client, their
//! announce / lookup refreshes, a connection queue with priorities and retries with backoff,
//! one connection per remote public key (with JS's tie-break, so that a mixed JS/hyperpunch
//! pair keeps the same connection on both sides), `flush`, peer info and a firewall.
//!
//! The engine does not touch the DHT itself: it asks its owner for DHT work through
//! [`Action`]s and is told how that went through `handle_*` calls, so the same engine runs
//! over the native DHT node (`hyperpunch::swarm`) and over a simulated network (the tests'
//! netsim). The owner's contract:
//!
//! - [`Action::Listen`]: run a hyperdht server on the swarm's key pair (its firewall is
//!   [`Swarm::firewall`]); report [`Swarm::handle_listening`] once announced, and hand every
//!   connection it accepts to [`Swarm::handle_server_connection`].
//! - [`Action::Query`]: run an announce / lookup / lookup-and-unannounce for a topic (from
//!   `nodes` when given), reporting each reply's peers ([`Swarm::handle_query_peers`]) and the
//!   end ([`Swarm::handle_query_done`] with the closest nodes). [`Action::CancelQuery`] stops
//!   one (nothing more is reported for it). [`Action::Unannounce`] removes an announcement
//!   (fire and forget).
//! - [`Action::Connect`]: connect to a public key (trying `relay_addresses` first); report
//!   [`Swarm::handle_connected`] when its stream is open, and [`Swarm::handle_closed`] when
//!   it closes or fails. Every [`ConnectionId`] (dialed, or accepted) ends with exactly one
//!   `handle_closed`.
//! - [`Action::Destroy`]: destroy a connection or attempt (a duplicate); still report its close.
//! - [`Action::KeepAlive`]: send a keep-alive on a connection (JS `sendKeepAlive`).
//!
//! The application sees [`Event`]s: [`Event::Connection`] for each connection to use (one
//! per remote key at a time), [`Event::Flushed`], [`Event::Ban`], and refresh results.
//!
//! Time is the owner's clock (`now`, a [`Duration`] since any fixed point); randomness comes
//! from the seed given to [`Swarm::new`].
//!
//! Not done against JS: `suspend`/`resume`, network-change refreshes, `relayThrough` (the
//! owner's DHT may still fall back to relays), `maxServerConnections` (unlimited as in JS's
//! default), the firewall's noise payload argument (the application sees the key only).

mod connections;
mod discovery;
mod firewall;
pub mod peer_info;
mod queue;
mod retry;
#[cfg(test)]
mod tests;

pub use discovery::{JoinOptions, TopicStatus};
pub use firewall::{PeerFirewall, SwarmFirewall};
pub use peer_info::PeerInfo;
pub use retry::default_backoffs;

use core::net::SocketAddrV4;
use core::time::Duration;
use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::crypto::KeyPair;
use crate::rng::Rng;

use connections::Conn;
use discovery::Discovery;
use queue::PeerQueue;
use retry::RetryTimer;

/// hyperswarm's `MAX_PEERS`.
pub const MAX_PEERS: usize = 64;
/// hyperswarm's `MAX_PARALLEL`: connection attempts at once.
pub const MAX_PARALLEL: usize = 3;

/// A connection (attempted, or accepted) of the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);
/// A DHT query the swarm asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);
/// A [`Swarm::flush`] or [`Swarm::flush_topic`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlushId(pub u64);
/// A [`Swarm::join`] session (JS `PeerDiscoverySession`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// How the swarm runs.
pub struct SwarmConfig {
    /// Our key pair (server and client connections, announcements).
    pub key_pair: KeyPair,
    /// Connections at most, scaled down while explicit peers are joined (JS `maxPeers`).
    pub max_peers: usize,
    /// Client connections at most (JS `maxClientConnections`).
    pub max_client_connections: usize,
    /// Connection attempts at once (JS `maxParallel`).
    pub max_parallel: usize,
    /// The retry timers' backoffs (JS `backoffs`; `None`: [`default_backoffs`]).
    pub backoffs: Option<[Duration; 4]>,
    /// Random extra per retry timer, up to this (JS `jitter`, 500 ms).
    pub jitter: Duration,
    /// Refuse peers by key (JS `firewall`); refused peers are banned.
    pub firewall: Option<PeerFirewall>,
}

impl SwarmConfig {
    /// JS's defaults for `key_pair`.
    pub fn new(key_pair: KeyPair) -> Self {
        SwarmConfig {
            key_pair,
            max_peers: MAX_PEERS,
            max_client_connections: usize::MAX,
            max_parallel: MAX_PARALLEL,
            backoffs: None,
            jitter: Duration::from_millis(500),
            firewall: None,
        }
    }
}

/// Which DHT query a topic refresh runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// Announce our key (and find the other announcers). `clear` first removes our older
    /// announcements (JS does on a topic's first announce).
    Announce {
        /// JS `clear`.
        clear: bool,
    },
    /// Find the announcers.
    Lookup,
    /// Find the announcers and remove our announcement from the nodes that list it (a topic
    /// that stopped being served).
    LookupAndUnannounce,
}

/// What the owner must do for the swarm (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the server on the swarm's key pair.
    Listen,
    /// Run a query for a topic.
    Query {
        /// Names it in the reports.
        id: QueryId,
        /// The topic.
        topic: [u8; 32],
        /// What to run.
        kind: QueryKind,
        /// Start from these nodes (the last query's closest), if any.
        nodes: Vec<SocketAddrV4>,
    },
    /// Stop a query; nothing more is reported for it.
    CancelQuery(QueryId),
    /// Remove our announcement of a topic (starting from `nodes`).
    Unannounce {
        /// The topic.
        topic: [u8; 32],
        /// The nodes that stored it last.
        nodes: Vec<SocketAddrV4>,
    },
    /// Connect to a peer.
    Connect {
        /// Names the connection.
        id: ConnectionId,
        /// The peer's public key.
        public_key: [u8; 32],
        /// Its announce relays (handshakes go through them first).
        relay_addresses: Vec<SocketAddrV4>,
    },
    /// Destroy a connection or cancel an attempt (report its close all the same).
    Destroy(ConnectionId),
    /// Send a keep-alive on an open connection.
    KeepAlive(ConnectionId),
}

/// What the application learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A connection to use (JS `'connection'`): the only one to this peer now.
    Connection {
        /// The connection.
        id: ConnectionId,
        /// The peer's key.
        public_key: [u8; 32],
        /// We dialed it.
        client: bool,
        /// The topics the peer was found under so far.
        topics: Vec<[u8; 32]>,
    },
    /// A flush finished: `true` when every known peer was tried, `false` when the swarm was
    /// destroyed first.
    Flushed {
        /// The call.
        id: FlushId,
        /// Outcome.
        ok: bool,
    },
    /// A peer was banned (refused by the firewall).
    Ban {
        /// The peer.
        public_key: [u8; 32],
    },
    /// A topic refresh finished (JS `discovery.refresh()` resolving): `ok` false when its
    /// query failed or was replaced.
    Refreshed {
        /// The topic.
        topic: [u8; 32],
        /// Outcome.
        ok: bool,
    },
}

/// Counters (JS `swarm.stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Discovery updates (connection events).
    pub updates: u64,
    /// Client connections attempted.
    pub client_attempted: u64,
    /// Client connections opened.
    pub client_opened: u64,
    /// Client connections (and attempts) closed.
    pub client_closed: u64,
    /// Server connections opened.
    pub server_opened: u64,
    /// Server connections closed.
    pub server_closed: u64,
    /// Peers banned.
    pub banned_peers: u64,
}

/// A flush waiting: first for the topics' refreshes, then for the queue.
#[derive(Debug)]
struct PendingFlush {
    id: FlushId,
    /// Topics whose current refresh must end first (topic, refresh clock).
    refreshes: Vec<([u8; 32], u64)>,
    /// Waits for the server to listen.
    listening: bool,
    /// Whole-swarm flush (else one topic's `flushed()`).
    whole: bool,
    /// Second stage: peers still to be tried, and the flush tick.
    missing: Option<(usize, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listening {
    No,
    Pending,
    Yes,
}

/// The swarm engine. See the [module docs](self).
pub struct Swarm {
    key_pair: KeyPair,
    max_peers: usize,
    max_client_connections: usize,
    max_parallel: usize,
    rng: Rng,
    firewall: SwarmFirewall,
    destroyed: bool,
    listening: Listening,

    connecting: usize,
    client_connections: usize,
    server_connections: usize,
    /// Every connection and attempt by id.
    conns: BTreeMap<ConnectionId, Conn>,
    /// JS `_allConnections`: the connection (or attempt) that stands for each peer.
    by_key: HashMap<[u8; 32], ConnectionId>,
    /// A server connection waiting for the duplicate it replaces to close: existing → new.
    swaps: HashMap<ConnectionId, ConnectionId>,
    peers: HashMap<[u8; 32], PeerInfo>,
    explicit: Vec<[u8; 32]>,
    queue: PeerQueue,
    timer: RetryTimer,
    discovery: BTreeMap<[u8; 32], Discovery>,
    sessions: HashMap<SessionId, [u8; 32]>,
    queries: HashMap<QueryId, [u8; 32]>,

    flushes: Vec<PendingFlush>,
    flush_tick: u64,

    next_id: u64,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl core::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Swarm")
            .field("public_key", &self.key_pair.public_key)
            .field("connections", &self.conns.len())
            .field("peers", &self.peers.len())
            .field("topics", &self.discovery.len())
            .finish()
    }
}

impl Swarm {
    /// A swarm; `seed` feeds its randomness (queue order, jitter).
    pub fn new(config: SwarmConfig, seed: [u8; 32]) -> Self {
        let mut rng = Rng::from_seed(seed);
        let backoffs = config
            .backoffs
            .unwrap_or_else(|| default_backoffs(&mut rng));
        let timer = RetryTimer::new(backoffs, config.jitter, &mut rng);
        let firewall = SwarmFirewall::new(config.key_pair.public_key, config.firewall);
        Swarm {
            key_pair: config.key_pair,
            max_peers: config.max_peers,
            max_client_connections: config.max_client_connections,
            max_parallel: config.max_parallel.max(1),
            rng,
            firewall,
            destroyed: false,
            listening: Listening::No,
            connecting: 0,
            client_connections: 0,
            server_connections: 0,
            conns: BTreeMap::new(),
            by_key: HashMap::new(),
            swaps: HashMap::new(),
            peers: HashMap::new(),
            explicit: Vec::new(),
            queue: PeerQueue::default(),
            timer,
            discovery: BTreeMap::new(),
            sessions: HashMap::new(),
            queries: HashMap::new(),
            flushes: Vec::new(),
            flush_tick: 0,
            next_id: 0,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Our key pair.
    pub fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }

    /// The firewall to give the server (`true` refuses a client).
    pub fn firewall(&self) -> SwarmFirewall {
        self.firewall.clone()
    }

    /// What we know about a peer.
    pub fn peer(&self, public_key: &[u8; 32]) -> Option<&PeerInfo> {
        self.peers.get(public_key)
    }

    /// Every peer we know about.
    pub fn peers(&self) -> impl Iterator<Item = &PeerInfo> {
        self.peers.values()
    }

    /// Connections handed to the application and still open (JS `swarm.connections`).
    pub fn connections(&self) -> impl Iterator<Item = (ConnectionId, [u8; 32])> + '_ {
        self.conns
            .iter()
            .filter(|(_, c)| c.announced)
            .map(|(id, c)| (*id, c.public_key))
    }

    /// Connection attempts running (JS `swarm.connecting`).
    pub fn connecting(&self) -> usize {
        self.connecting
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Destroyed (JS `swarm.destroyed`).
    pub fn is_destroyed(&self) -> bool {
        self.destroyed
    }

    /// The next action.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.sync_bans();
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let d = self.discovery.values().filter_map(Discovery::poll_timeout);
        d.chain(self.timer.poll_timeout()).min()
    }

    /// Runs due timers: retries, topic refreshes.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.destroyed {
            return;
        }
        let due = self.timer.handle_timeout(now);
        if !due.is_empty() {
            self.requeue(now, due);
        }
        let topics: Vec<[u8; 32]> = self
            .discovery
            .iter()
            .filter(|(_, d)| d.poll_timeout().is_some_and(|t| t <= now))
            .map(|(t, _)| *t)
            .collect();
        for t in topics {
            self.refresh_timer_fired(now, t);
        }
    }

    /// Peers the server's firewall banned meanwhile become banned peers here too.
    fn sync_bans(&mut self) {
        for key in self.firewall.take_newly_banned() {
            if key == self.key_pair.public_key {
                continue;
            }
            self.peers
                .entry(key)
                .or_insert_with(|| PeerInfo::new(key, Vec::new()))
                .banned = true;
            self.stats.banned_peers += 1;
            self.events.push_back(Event::Ban { public_key: key });
        }
    }

    /// JS `_upsertPeer` (no peer for our own key).
    fn upsert_peer_raw(
        &mut self,
        key: [u8; 32],
        relay_addresses: Option<Vec<SocketAddrV4>>,
    ) -> Option<&mut PeerInfo> {
        if key == self.key_pair.public_key {
            return None;
        }
        let p = self
            .peers
            .entry(key)
            .or_insert_with(|| PeerInfo::new(key, Vec::new()));
        // "new is always better" (JS sets it even to null).
        p.relay_addresses = relay_addresses.unwrap_or_default();
        Some(p)
    }

    /// Bans a peer (JS `peerInfo.ban(true)`): no connection to or from it any more.
    pub fn ban(&mut self, key: [u8; 32]) {
        if key == self.key_pair.public_key {
            return;
        }
        self.peers
            .entry(key)
            .or_insert_with(|| PeerInfo::new(key, Vec::new()))
            .banned = true;
        self.firewall.set_banned(key, true);
        self.stats.banned_peers += 1;
        self.events.push_back(Event::Ban { public_key: key });
    }

    /// Unbans a peer (JS `peerInfo.ban(false)`).
    pub fn unban(&mut self, public_key: &[u8; 32]) {
        if let Some(p) = self.peers.get_mut(public_key) {
            p.banned = false;
        }
        self.firewall.set_banned(*public_key, false);
    }

    /// JS `_maybeDeletePeer`.
    fn maybe_delete_peer(&mut self, key: &[u8; 32]) {
        let Some(p) = self.peers.get(key) else { return };
        if !p.should_gc() || self.by_key.contains_key(key) {
            return;
        }
        self.peers.remove(key);
    }

    /// Connect to `public_key` directly, and keep reconnecting (JS `joinPeer`).
    pub fn join_peer(&mut self, now: Duration, public_key: [u8; 32]) {
        let Some(p) = self.upsert_peer_raw(public_key, None) else {
            return;
        };
        p.explicit = true;
        if !self.explicit.contains(&public_key) {
            self.explicit.push(public_key);
        }
        if self.by_key.contains_key(&public_key) {
            return;
        }
        let p = self.peers.get_mut(&public_key).expect("upserted");
        if p.update_priority() {
            self.enqueue(now, public_key);
        }
    }

    /// Stop reconnecting to an explicit peer (JS `leavePeer`); its connection stays.
    pub fn leave_peer(&mut self, public_key: &[u8; 32]) {
        let Some(p) = self.peers.get_mut(public_key) else {
            return;
        };
        p.explicit = false;
        self.explicit.retain(|k| k != public_key);
        self.maybe_delete_peer(public_key);
    }

    /// Resolves ([`Event::Flushed`]) once every topic's current refresh finished and every
    /// peer found so far was tried (JS `swarm.flush()`).
    pub fn flush(&mut self, now: Duration) -> FlushId {
        let id = FlushId(self.next_id());
        let refreshes = self
            .discovery
            .iter()
            .filter_map(|(t, d)| d.refreshing().map(|c| (*t, c)))
            .collect();
        self.flushes.push(PendingFlush {
            id,
            refreshes,
            listening: self.listening == Listening::Pending,
            whole: true,
            missing: None,
        });
        self.check_flushes(now);
        id
    }

    /// Resolves ([`Event::Flushed`]) once the topic's current refresh finished (JS
    /// `discovery.flushed()`); `ok` is false when it failed.
    pub fn flush_topic(&mut self, now: Duration, topic: [u8; 32]) -> FlushId {
        let id = FlushId(self.next_id());
        let refreshes = self
            .discovery
            .get(&topic)
            .and_then(|d| d.refreshing().map(|c| vec![(topic, c)]))
            .unwrap_or_default();
        self.flushes.push(PendingFlush {
            id,
            refreshes,
            listening: self.listening == Listening::Pending,
            whole: false,
            missing: None,
        });
        self.check_flushes(now);
        id
    }

    /// Moves flushes along: first stage (refreshes, listening), then JS's second stage.
    fn check_flushes(&mut self, _now: Duration) {
        let mut i = 0;
        while i < self.flushes.len() {
            let f = &self.flushes[i];
            if f.missing.is_some() {
                i += 1;
                continue;
            }
            let listening_done = !f.listening || self.listening != Listening::Pending;
            let refreshed = f.refreshes.iter().all(|(t, c)| {
                self.discovery
                    .get(t)
                    .is_none_or(|d| d.refreshing().is_none_or(|now_c| now_c > *c))
            });
            if !(listening_done && refreshed) {
                i += 1;
                continue;
            }
            if !f.whole {
                let f = self.flushes.remove(i);
                self.events.push_back(Event::Flushed { id: f.id, ok: true });
                continue;
            }
            // JS: `if (this._flushAllMaybe()) return true`.
            let id = f.id;
            if self.flush_all_maybe() {
                if let Some(j) = self.flushes.iter().position(|f| f.id == id) {
                    self.flushes.remove(j);
                }
                self.events.push_back(Event::Flushed { id, ok: true });
                i = 0;
                continue;
            }
            let pending = self
                .by_key
                .values()
                .filter(|id| self.conns.get(id).is_some_and(|c| !c.announced))
                .count();
            if self.queue.is_empty() && pending == 0 {
                let f = self.flushes.remove(i);
                self.events.push_back(Event::Flushed { id: f.id, ok: true });
                continue;
            }
            let tick = self.flush_tick;
            self.flush_tick += 1;
            self.flushes[i].missing = Some((self.queue.len() + pending, tick));
            i += 1;
        }
    }

    /// JS `_flushMaybe(peerInfo)`: a queued peer's attempt finished.
    fn flush_maybe(&mut self, key: &[u8; 32]) {
        let Some(tick) = self.peers.get(key).map(|p| p.flush_tick) else {
            return;
        };
        let mut i = 0;
        while i < self.flushes.len() {
            if let Some((missing, ftick)) = self.flushes[i].missing.as_mut() {
                if tick <= *ftick {
                    *missing = missing.saturating_sub(1);
                    if *missing == 0 {
                        let f = self.flushes.remove(i);
                        self.events.push_back(Event::Flushed { id: f.id, ok: true });
                        continue;
                    }
                }
            }
            i += 1;
        }
    }

    fn within_max_peers(&self) -> bool {
        let e = self.explicit.len();
        let factor = match e {
            0 => 1,
            1 => 2,
            2 | 3 => 3,
            _ => 4,
        };
        factor * self.by_key.len() < self.max_peers
    }

    /// JS `_flushAllMaybe`: when nothing more can be connected, every waiting flush is done.
    fn flush_all_maybe(&mut self) -> bool {
        if self.connecting > 0
            || (self.within_max_peers() && self.client_connections < self.max_client_connections)
        {
            return false;
        }
        let mut rest = Vec::new();
        for f in std::mem::take(&mut self.flushes) {
            if f.missing.is_some() {
                self.events.push_back(Event::Flushed { id: f.id, ok: true });
            } else {
                rest.push(f);
            }
        }
        self.flushes = rest;
        true
    }

    /// Leaves every topic (JS `clear`).
    pub fn clear(&mut self, now: Duration) {
        let topics: Vec<[u8; 32]> = self.discovery.keys().copied().collect();
        for t in topics {
            self.leave(now, t);
        }
    }

    /// Stops everything (JS `destroy`): leaves the topics (unannouncing), stops retrying;
    /// pending flushes resolve `false`. Open connections are the application's to close.
    pub fn destroy(&mut self, now: Duration) {
        if self.destroyed {
            return;
        }
        self.clear(now);
        self.destroyed = true;
        self.timer.clear();
        self.queue.clear();
        for f in std::mem::take(&mut self.flushes) {
            self.events.push_back(Event::Flushed {
                id: f.id,
                ok: false,
            });
        }
    }
}
