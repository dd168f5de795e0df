//! The node: state, datagram handling, requests, replies and the poll interface
//! (dht-rpc index.js `_onrequest`/`_onresponse`/`_ontimeout`, io.js `onmessage`, `Request`).
//!
//! (About 1,000 lines: the node's state and its poll interface; the routing table, queries,
//! NAT sampling, maintenance and messages are in their own files beside it.)

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use super::io::{Inflight, Io, Owner, RateLimiter, Secrets, DEFAULT_TIMEOUT, DRAIN_INTERVAL};
use super::maintenance::{Boot, Health, NetCheck};
use super::messages::{self, node_id, NodeId, Packet, PacketError, RequestPacket, ResponsePacket};
use super::nat::NatSampler;
use super::query::Query;
use super::table::{Added, Table, TableNode, K};
use super::{
    Config, Event, IncomingRequest, Peer, QueryId, ReplyOptions, RequestError, RequestId,
    RequestSpec, Response, SocketId, Transmit, DELAYED_PING, DOWN_HINT, ERROR_INVALID_TOKEN,
    ERROR_UNKNOWN_COMMAND, FIND_NODE, PING, PING_NAT, TICK_INTERVAL,
};
use crate::rng::Rng;

/// Ticks after which an adaptive node re-checks whether it can be persistent (~20 min).
pub(crate) const STABLE_TICKS: i64 = 240;
/// The longer wait after a check (~1 h).
pub(crate) const MORE_STABLE_TICKS: i64 = 3 * STABLE_TICKS;
/// Idle ticks between refresh queries (~5 min).
pub(crate) const REFRESH_TICKS: i64 = 60;
/// A node heard from within this many ticks is recent (1 min).
pub(crate) const RECENT_NODE: u64 = 12;
/// A node in the table for this many ticks is old (30 min).
pub(crate) const OLD_NODE: u64 = 360;

/// Counters (JS `dht.stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests inflight.
    pub active_requests: u64,
    /// Requests created.
    pub total_requests: u64,
    /// Responses matched to a request.
    pub responses: u64,
    /// Requests that timed out after every retry.
    pub timeouts: u64,
    /// Retransmissions.
    pub retries: u64,
    /// Queries running.
    pub active_queries: u64,
    /// Queries started.
    pub total_queries: u64,
    /// Incoming datagrams that did not decode.
    pub malformed: u64,
    /// Incoming requests dropped by the rate limit.
    pub rate_limited: u64,
    /// Incoming requests with a token we did not issue.
    pub invalid_tokens: u64,
    /// Sent/received internal commands: PING, PING_NAT, FIND_NODE, DOWN_HINT (tx, rx).
    pub commands: [(u64, u64); 4],
}

/// A dht-rpc node (see the [module documentation](super)).
pub struct Node {
    pub(crate) config: Config,
    pub(crate) rng: Rng,
    pub(crate) table: Table,
    pub(crate) io: Io,
    pub(crate) nat: NatSampler,
    pub(crate) rate: RateLimiter,
    pub(crate) queries: BTreeMap<QueryId, Query>,
    pub(crate) next_query: u64,
    pub(crate) next_request: u64,
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) now: Duration,

    pub(crate) ephemeral: bool,
    pub(crate) firewalled: bool,
    pub(crate) adaptive: bool,
    pub(crate) force_persistent: bool,
    pub(crate) bootstrapped: bool,
    pub(crate) destroyed: bool,

    pub(crate) tick: u64,
    pub(crate) refresh_ticks: i64,
    pub(crate) stable_ticks: i64,
    pub(crate) last_tick: Duration,
    pub(crate) next_tick: Duration,
    pub(crate) next_drain: Duration,
    pub(crate) last_host: Option<Ipv4Addr>,
    pub(crate) repinging: u32,
    pub(crate) checks: u32,
    pub(crate) down_hints_sent: u32,
    pub(crate) none_persistent_samples: Vec<SocketAddrV4>,
    pub(crate) delayed: Vec<(Duration, IncomingRequest)>,

    pub(crate) boot: Boot,
    pub(crate) net_check: Option<NetCheck>,
    pub(crate) next_check: u64,
    pub(crate) health: Health,
    pub(crate) stats: Stats,
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id().map(|i| hex(&i[..8])))
            .field("ephemeral", &self.ephemeral)
            .field("firewalled", &self.firewalled)
            .field("table", &self.table.len())
            .field("inflight", &self.io.inflight.len())
            .field("queries", &self.queries.len())
            .finish_non_exhaustive()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Node {
    /// A node starting at `now`, its randomness drawn from `seed`. The bootstrap starts at
    /// once: drain [`Node::poll_transmit`] after creating it.
    pub fn new(config: Config, now: Duration, seed: [u8; 32]) -> Self {
        let mut rng = Rng::from_seed(seed);
        let table_id = rng.bytes32();
        let secrets = Secrets::new(rng.bytes32(), rng.bytes32());
        let first_tid = rng.below(65536) as u16;
        let tick = 100 - rng.below(50);
        let refresh_ticks = REFRESH_TICKS - rng.below(30) as i64;
        let adaptive = config.ephemeral.is_none() && config.adaptive;
        let mut nat = NatSampler::new();
        if let Some(seed) = config.nat_seed {
            nat.add(*seed.ip(), seed.port());
        }
        let mut node = Node {
            rate: RateLimiter::new(config.limits.rate),
            io: Io::new(config.max_window, first_tid, secrets),
            table: Table::new(table_id),
            rng,
            nat,
            queries: BTreeMap::new(),
            next_query: 0,
            next_request: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            now,
            ephemeral: true,
            firewalled: config.firewalled,
            adaptive,
            force_persistent: config.ephemeral == Some(false),
            bootstrapped: false,
            destroyed: false,
            tick,
            refresh_ticks,
            stable_ticks: if adaptive { STABLE_TICKS } else { 0 },
            last_tick: now,
            next_tick: now + TICK_INTERVAL,
            next_drain: now + DRAIN_INTERVAL,
            last_host: None,
            repinging: 0,
            checks: 0,
            down_hints_sent: 0,
            none_persistent_samples: Vec::new(),
            delayed: Vec::new(),
            boot: Boot::NotStarted,
            net_check: None,
            next_check: 0,
            health: Health::default(),
            stats: Stats::default(),
            config,
        };
        let nodes = core::mem::take(&mut node.config.nodes);
        for a in nodes.iter().rev() {
            node.add_node(*a);
        }
        node.config.nodes = nodes;
        node.start_bootstrap(now);
        node
    }

    // ------------------------------------------------------------------ accessors

    /// Our id: `None` while ephemeral (JS `dht.id`).
    pub fn id(&self) -> Option<NodeId> {
        (!self.ephemeral).then_some(*self.table.id())
    }

    /// The routing table's id (random while ephemeral).
    pub fn table_id(&self) -> &NodeId {
        self.table.id()
    }

    /// The routing table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// True while the node is ephemeral (not in others' routing tables, no id).
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// True while the node believes its server socket is unreachable.
    pub fn is_firewalled(&self) -> bool {
        self.firewalled
    }

    /// True once the bootstrap finished.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    /// True when the sampled NAT keeps the host but not the port (JS `dht.randomized`).
    pub fn is_randomized(&self) -> bool {
        self.nat.randomized()
    }

    /// The health's view: (online, degraded).
    pub fn health(&self) -> (bool, bool) {
        (self.health.online, self.health.degraded)
    }

    /// Our public host and port as others see us, when consistent (JS `dht.host`, `dht.port`;
    /// port 0 when unknown).
    pub fn nat_address(&self) -> (Option<Ipv4Addr>, u16) {
        (self.nat.host, self.nat.port)
    }

    /// Our public address if others can reach our server socket there (JS
    /// `dht.remoteAddress()`).
    pub fn remote_address(&self) -> Option<SocketAddrV4> {
        let host = self.nat.host?;
        if self.nat.port == 0 || self.firewalled || self.nat.port != self.config.server_port {
            return None;
        }
        Some(SocketAddrV4::new(host, self.nat.port))
    }

    /// The socket requests go out on by default (JS `dht.socket`).
    pub fn default_socket(&self) -> SocketId {
        if self.firewalled {
            SocketId::CLIENT
        } else {
            SocketId::SERVER
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.active_requests = self.io.inflight.len() as u64;
        s.active_queries = self.queries.len() as u64;
        s
    }

    /// Requests inflight (or waiting for the congestion window).
    pub fn inflight(&self) -> usize {
        self.io.inflight.len()
    }

    /// Up to `limit` table nodes, most recently heard first (JS `dht.toArray({ limit })`).
    pub fn nodes(&self, limit: usize) -> Vec<SocketAddrV4> {
        self.table.latest_addrs(limit)
    }

    /// Up to `k` table nodes close to `target`.
    pub fn closest_nodes(&self, target: &NodeId, k: usize) -> Vec<SocketAddrV4> {
        self.table
            .closest(target, k)
            .iter()
            .map(|n| n.addr)
            .collect()
    }

    /// The current token for `host` (what a reply to it carries).
    pub fn token_for(&mut self, host: &Ipv4Addr) -> [u8; 32] {
        self.io.secrets.current(host)
    }

    /// A random number from the node's generator (for layers above that need randomness).
    pub fn random_below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    /// Random bytes from the node's generator.
    pub fn random_bytes32(&mut self) -> [u8; 32] {
        self.rng.bytes32()
    }

    /// The latest time the node was given.
    pub fn now(&self) -> Duration {
        self.now
    }

    // ------------------------------------------------------------------ poll interface

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] must run next.
    pub fn poll_timeout(&mut self) -> Option<Duration> {
        if self.destroyed {
            return None;
        }
        let mut t = self.next_tick.min(self.next_drain);
        if let Some(d) = self.io.next_deadline() {
            t = t.min(d);
        }
        if let Some((d, _)) = self.delayed.iter().min_by_key(|(d, _)| *d) {
            t = t.min(*d);
        }
        Some(t)
    }

    /// Run the timers due at `now`: request retries and timeouts, the 750 ms drain, the 5 s
    /// tick, delayed pings.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.destroyed {
            return;
        }
        self.now = now;
        while let Some(tid) = self.io.pop_expired(now) {
            self.on_attempt_timeout(tid);
        }
        if now >= self.next_drain {
            self.next_drain = now + DRAIN_INTERVAL;
            self.drain();
        }
        if now >= self.next_tick {
            self.next_tick = now + TICK_INTERVAL;
            self.on_tick(now);
        }
        if self.delayed.iter().any(|(d, _)| *d <= now) {
            let (due, rest): (Vec<_>, Vec<_>) = core::mem::take(&mut self.delayed)
                .into_iter()
                .partition(|(d, _)| *d <= now);
            self.delayed = rest;
            for (_, req) in due {
                self.send_reply(&req, 0, None, false, false, req.from.addr, req.socket);
            }
        }
    }

    /// Stop: every inflight request and query fails with `Destroyed`, timers stop.
    pub fn destroy(&mut self) {
        if self.destroyed {
            return;
        }
        let qids: Vec<QueryId> = self.queries.keys().copied().collect();
        for q in qids {
            self.finish_query(q, Err(super::QueryError::Destroyed));
        }
        let tids: Vec<u16> = self.io.inflight.keys().copied().collect();
        for tid in tids {
            self.destroy_request(tid, RequestError::Destroyed);
        }
        self.delayed.clear();
        self.destroyed = true;
    }

    /// True after [`Node::destroy`].
    pub fn is_destroyed(&self) -> bool {
        self.destroyed
    }

    // ------------------------------------------------------------------ incoming datagrams

    /// Feed one datagram that arrived on `socket` from `from`. Datagrams that are not dht-rpc
    /// (or come from an IPv6 address or port 0) are rejected with a typed error and change
    /// nothing.
    pub fn handle_datagram(
        &mut self,
        now: Duration,
        socket: SocketId,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), PacketError> {
        if self.destroyed {
            return Ok(());
        }
        self.now = now;
        let from = match from {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
                Some(ip) => SocketAddrV4::new(ip, a.port()),
                None => return Err(PacketError::NotIpv4),
            },
        };
        if from.port() == 0 {
            return Ok(());
        }
        if socket == SocketId::SERVER {
            if let Some(c) = self.net_check.as_mut() {
                c.server_hosts.insert(*from.ip());
            }
        }
        let packet = match messages::decode(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e);
            }
        };
        let external = socket != self.default_socket();
        match packet {
            Packet::Request(p) => {
                if !self.rate.allow(now, from) {
                    self.stats.rate_limited += 1;
                    return Ok(());
                }
                let req = IncomingRequest {
                    tid: p.tid,
                    from: Peer {
                        addr: from,
                        id: validate_id(p.id, &from),
                    },
                    to: p.to,
                    socket,
                    token: p.token,
                    internal: p.internal,
                    command: p.command,
                    target: p.target,
                    value: p.value.map(<[u8]>::to_vec),
                };
                if let Some(t) = &req.token {
                    if !self.io.secrets.valid(from.ip(), t) {
                        self.stats.invalid_tokens += 1;
                        self.send_reply(
                            &req,
                            ERROR_INVALID_TOKEN,
                            None,
                            true,
                            true,
                            req.from.addr,
                            socket,
                        );
                        return Ok(());
                    }
                }
                self.on_request(req, external);
            }
            Packet::Response(p) => self.on_response_packet(p, from, socket, external),
        }
        Ok(())
    }

    fn on_request(&mut self, req: IncomingRequest, external: bool) {
        if req.from.id.is_some() {
            self.add_node_from_network(!external, req.from, req.to);
        }
        if req.internal {
            if req.command < 4 {
                self.stats.commands[req.command as usize].1 += 1;
            }
            match req.command {
                PING => {
                    self.send_reply(&req, 0, None, false, false, req.from.addr, req.socket);
                    return;
                }
                DELAYED_PING => {
                    let Some(v) = req.value.as_deref().filter(|v| v.len() >= 4) else {
                        return;
                    };
                    let ms = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                    if ms > self.config.max_ping_delay
                        || self.delayed.len() >= self.config.limits.max_delayed_pings
                    {
                        return;
                    }
                    let due = self.now + Duration::from_millis(ms as u64);
                    self.delayed.push((due, req));
                    return;
                }
                PING_NAT => {
                    let Some(v) = req.value.as_deref().filter(|v| v.len() >= 2) else {
                        return;
                    };
                    let port = u16::from_le_bytes([v[0], v[1]]);
                    if port == 0 {
                        return;
                    }
                    let to = SocketAddrV4::new(*req.from.addr.ip(), port);
                    self.send_reply(&req, 0, None, false, false, to, req.socket);
                    return;
                }
                FIND_NODE => {
                    if req.target.is_none() {
                        return;
                    }
                    self.send_reply(&req, 0, None, false, true, req.from.addr, req.socket);
                    return;
                }
                DOWN_HINT => {
                    let Some(v) = req.value.as_deref().filter(|v| v.len() >= 6) else {
                        return;
                    };
                    if self.checks < 10 {
                        let id = crate::crypto::hash(&v[..6]);
                        let tick = self.tick;
                        if let Some(n) = self.table.get_mut(&id) {
                            if n.pinged < tick || n.down_hints == 0 {
                                n.down_hints += 1;
                                self.check(id);
                            }
                        }
                    }
                    self.send_reply(&req, 0, None, false, false, req.from.addr, req.socket);
                    return;
                }
                _ => {}
            }
            let closer = req.target.is_some();
            self.send_reply(
                &req,
                ERROR_UNKNOWN_COMMAND,
                None,
                false,
                closer,
                req.from.addr,
                req.socket,
            );
            return;
        }
        if self.config.handle_user_requests {
            self.events.push_back(Event::Request(req));
        } else {
            let closer = req.target.is_some();
            self.send_reply(
                &req,
                ERROR_UNKNOWN_COMMAND,
                None,
                false,
                closer,
                req.from.addr,
                req.socket,
            );
        }
    }

    fn on_response_packet(
        &mut self,
        p: ResponsePacket<'_>,
        from: SocketAddrV4,
        socket: SocketId,
        external: bool,
    ) {
        let Some(req) = self.io.inflight.remove(&p.tid) else {
            return;
        };
        let res = Response {
            tid: p.tid,
            from: Peer {
                addr: from,
                id: validate_id(p.id, &from),
            },
            to: p.to,
            token: p.token,
            closer_nodes: p.closer_nodes.unwrap_or_default(),
            error: p.error,
            value: p.value.map(<[u8]>::to_vec),
            rtt: self.now.saturating_sub(req.started),
            socket,
        };
        self.io.congestion.recv();
        if req.internal && req.command < 4 {
            self.stats.commands[req.command as usize].1 += 1;
        }
        self.stats.responses += 1;
        self.add_node_from_network(!external, res.from, res.to);
        self.dispatch_response(req, res);
    }

    fn dispatch_response(&mut self, req: Inflight, res: Response) {
        match req.owner {
            Owner::User { id, commit } => {
                if let Some(q) = commit {
                    self.commit_settled(q, Ok(()));
                }
                self.events.push_back(Event::Response { id, response: res });
            }
            Owner::Visit(q) => self.query_on_visit(q, req.slow, req.to, res),
            Owner::DownHint(_) => {}
            Owner::AutoCommit(q) => self.commit_settled(q, Ok(())),
            Owner::Check { id, last_seen } => {
                self.checks = self.checks.saturating_sub(1);
                self.remove_stale_node(&id, last_seen);
            }
            Owner::Reping {
                old,
                last_seen,
                new,
            } => {
                let seen = self.table.get(&old).map(|n| n.seen);
                if seen.is_none_or(|s| s <= last_seen) {
                    self.swap_node(&old, *new);
                } else {
                    self.repinging = self.repinging.saturating_sub(1);
                }
            }
            Owner::QuickFirewall => self.on_quick_firewall_pong(),
            Owner::FirewallCheck(c) => self.on_firewall_pong(c, Some(res)),
        }
    }

    fn dispatch_error(&mut self, req: Inflight, error: RequestError) {
        match req.owner {
            Owner::User { id, commit } => {
                if let Some(q) = commit {
                    self.commit_settled(q, Err(error.clone()));
                }
                self.events.push_back(Event::RequestFailed { id, error });
            }
            Owner::Visit(q) => self.query_on_error(q, req.to, req.slow, &error),
            Owner::DownHint(_) => {}
            Owner::AutoCommit(q) => self.commit_settled(q, Err(error)),
            Owner::Check { id, .. } => {
                self.checks = self.checks.saturating_sub(1);
                self.remove_node(&id);
            }
            Owner::Reping { old, new, .. } => self.swap_node(&old, *new),
            Owner::QuickFirewall => {}
            Owner::FirewallCheck(c) => self.on_firewall_pong(c, None),
        }
    }

    // ------------------------------------------------------------------ routing table feed

    fn sample_bootstrap_maybe(&mut self, from: SocketAddrV4, to: SocketAddrV4) {
        if self.none_persistent_samples.len() >= self.config.bootstrap.len().max(1) {
            return;
        }
        if self.none_persistent_samples.contains(&from) {
            return;
        }
        self.none_persistent_samples.push(from);
        self.nat_add(to);
    }

    pub(crate) fn filtered(&self, addr: &SocketAddrV4) -> bool {
        self.config.filter.is_some_and(|f| !f(addr))
    }

    pub(crate) fn add_node_from_network(&mut self, sample: bool, from: Peer, to: SocketAddrV4) {
        if self.filtered(&from.addr) {
            return;
        }
        let Some(id) = from.id else {
            self.sample_bootstrap_maybe(from.addr, to);
            return;
        };
        if let Some(slot) = self.table.slot_of(&id) {
            let tick = self.tick;
            let mut nat_sample = None;
            if let Some(n) = self.table.node_mut(slot) {
                if sample && (n.sampled == 0 || tick - n.sampled >= OLD_NODE) {
                    n.to = Some(to);
                    n.sampled = tick;
                    nat_sample = Some(to);
                }
                n.pinged = tick;
                n.seen = tick;
            }
            if let Some(to) = nat_sample {
                self.nat_add(to);
            }
            self.table.touch(slot);
            return;
        }
        self.add_table_node(TableNode::new(id, from.addr, Some(to)));
    }

    pub(crate) fn add_table_node(&mut self, mut node: TableNode) {
        if self.table.get(&node.id).is_some() || &node.id == self.table.id() {
            return;
        }
        node.added = self.tick;
        node.pinged = self.tick;
        node.seen = self.tick;
        let addr = node.addr;
        let to = node.to;
        match self.table.add(node.clone()) {
            Added::New => {
                if let Some(to) = to {
                    if let Some(n) = self.table.get_mut(&node.id) {
                        n.sampled = self.tick;
                    }
                    self.nat_add(to);
                }
                self.events.push_back(Event::NodeAdded(addr));
            }
            Added::Replaced | Added::Own => {}
            Added::RowFull(row) => self.on_full_row(node, row),
        }
    }

    /// Add a node by address (JS `dht.addNode({ host, port })`), e.g. from a saved list.
    pub fn add_node(&mut self, addr: SocketAddrV4) {
        self.add_table_node(TableNode::new(node_id(&addr), addr, None));
    }

    pub(crate) fn remove_node(&mut self, id: &NodeId) {
        if let Some(n) = self.table.remove(id) {
            self.events.push_back(Event::NodeRemoved(n.addr));
        }
    }

    pub(crate) fn remove_stale_node(&mut self, id: &NodeId, last_seen: u64) {
        if self.table.get(id).is_some_and(|n| n.seen <= last_seen) {
            self.remove_node(id);
        }
    }

    pub(crate) fn nat_add(&mut self, to: SocketAddrV4) {
        let prev = (self.nat.host, self.nat.port);
        self.nat.add(*to.ip(), to.port());
        if prev != (self.nat.host, self.nat.port) {
            self.events.push_back(Event::NatUpdate {
                host: self.nat.host,
                port: self.nat.port,
            });
        }
    }

    // ------------------------------------------------------------------ outgoing requests

    /// Start a request. The answer comes as [`Event::Response`] (whatever its error code) or
    /// [`Event::RequestFailed`].
    pub fn request(&mut self, now: Duration, spec: RequestSpec) -> Result<RequestId, RequestError> {
        self.now = now;
        self.user_request(spec, None)
    }

    pub(crate) fn user_request(
        &mut self,
        spec: RequestSpec,
        commit: Option<QueryId>,
    ) -> Result<RequestId, RequestError> {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        let force = spec.force;
        let tid = self.create_request(
            spec.to,
            None,
            spec.token,
            spec.internal,
            spec.command,
            spec.target,
            spec.value.as_deref(),
            spec.socket,
            Owner::User { id, commit },
            spec.retries,
            spec.timeout,
            spec.ttl,
        )?;
        self.send(tid, force);
        Ok(id)
    }

    /// Ping `to` (internal PING); `size` pads the request with that many zero bytes.
    pub fn ping(
        &mut self,
        now: Duration,
        to: SocketAddrV4,
        size: usize,
    ) -> Result<RequestId, RequestError> {
        let mut spec = RequestSpec::new(to, PING);
        spec.internal = true;
        if size > 0 {
            spec.value = Some(vec![0; size]);
        }
        self.request(now, spec)
    }

    /// Ask `to` to answer after `delay_ms` (internal DELAYED_PING; the attempt timeout is the
    /// delay plus 1 s).
    pub fn delayed_ping(
        &mut self,
        now: Duration,
        to: SocketAddrV4,
        delay_ms: u32,
    ) -> Result<RequestId, RequestError> {
        let mut spec = RequestSpec::new(to, DELAYED_PING);
        spec.internal = true;
        spec.value = Some(delay_ms.to_le_bytes().to_vec());
        spec.timeout = Some(Duration::from_millis(delay_ms as u64 + 1000));
        self.request(now, spec)
    }

    /// Cancel a request: it fails with [`RequestError::Destroyed`].
    pub fn cancel_request(&mut self, id: RequestId) {
        let tid = self.io.inflight.iter().find_map(|(t, r)| match r.owner {
            Owner::User { id: rid, .. } if rid == id => Some(*t),
            _ => None,
        });
        if let Some(tid) = tid {
            self.destroy_request(tid, RequestError::Destroyed);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_request(
        &mut self,
        to: SocketAddrV4,
        to_id: Option<NodeId>,
        token: Option<[u8; 32]>,
        internal: bool,
        command: u64,
        target: Option<[u8; 32]>,
        value: Option<&[u8]>,
        socket: Option<SocketId>,
        owner: Owner,
        retries: u32,
        timeout: Option<Duration>,
        ttl: u8,
    ) -> Result<u16, RequestError> {
        if self.destroyed || self.io.inflight.len() >= self.config.limits.max_inflight {
            return Err(RequestError::Overloaded);
        }
        let tid = self.io.alloc_tid().ok_or(RequestError::Overloaded)?;
        let socket = socket.unwrap_or(self.default_socket());
        let send_id = !self.ephemeral && socket == SocketId::SERVER;
        let buffer = RequestPacket {
            tid,
            to,
            id: send_id.then(|| *self.table.id()),
            token,
            internal,
            command,
            target,
            value,
        }
        .encode();
        if internal && command < 4 {
            self.stats.commands[command as usize].0 += 1;
        }
        self.stats.total_requests += 1;
        self.io.inflight.insert(
            tid,
            Inflight {
                to,
                to_id,
                socket,
                buffer,
                internal,
                command,
                sent: 0,
                retries,
                timeout,
                ttl,
                owner,
                deadline: None,
                queued: false,
                timer: 0,
                started: self.now,
                slow: false,
            },
        );
        Ok(tid)
    }

    pub(crate) fn send(&mut self, tid: u16, force: bool) {
        if !force && self.io.congestion.is_full() {
            if let Some(r) = self.io.inflight.get_mut(&tid) {
                if !r.queued {
                    r.queued = true;
                    self.io.pending.push_back(tid);
                }
            }
            return;
        }
        self.send_now(tid);
    }

    fn send_now(&mut self, tid: u16) {
        let Some(r) = self.io.inflight.get_mut(&tid) else {
            return;
        };
        r.queued = false;
        r.sent += 1;
        let timeout = r.timeout.unwrap_or(DEFAULT_TIMEOUT);
        self.transmits.push_back(Transmit {
            socket: r.socket,
            to: r.to,
            bytes: r.buffer.clone(),
            ttl: r.ttl,
        });
        self.io.congestion.send();
        let at = self.now + timeout;
        self.io.arm(tid, at);
    }

    pub(crate) fn drain(&mut self) {
        self.io.secrets.on_drain();
        self.io.congestion.drain();
        while !self.io.congestion.is_full() {
            let Some(tid) = self.io.pending.pop_front() else {
                break;
            };
            if self.io.inflight.get(&tid).is_some_and(|r| r.queued) {
                self.send_now(tid);
            }
        }
    }

    fn on_attempt_timeout(&mut self, tid: u16) {
        // oncycle: a query marks its visit slow on the first timeout.
        let (owner_query, was_slow) = match self.io.inflight.get_mut(&tid) {
            Some(r) => {
                let q = match r.owner {
                    Owner::Visit(q) => Some(q),
                    _ => None,
                };
                let was = r.slow;
                if q.is_some() {
                    r.slow = true;
                }
                (q, was)
            }
            None => return,
        };
        if let (Some(q), false) = (owner_query, was_slow) {
            self.query_on_cycle(q);
        }
        let Some(r) = self.io.inflight.get(&tid) else {
            return;
        };
        if r.sent > r.retries {
            self.stats.timeouts += 1;
            let to_id = r.to_id;
            self.destroy_request(tid, RequestError::Timeout);
            if let Some(id) = to_id {
                self.remove_node(&id);
            }
        } else {
            self.stats.retries += 1;
            self.send(tid, false);
        }
    }

    /// JS `req.destroy(err)`: drop it, free its congestion slot, tell its owner.
    pub(crate) fn destroy_request(&mut self, tid: u16, error: RequestError) {
        let Some(r) = self.io.inflight.remove(&tid) else {
            return;
        };
        self.io.congestion.recv();
        self.dispatch_error(r, error);
    }

    // ------------------------------------------------------------------ answers

    /// Answer a request with a value (JS `req.reply(value, opts)`).
    pub fn reply(&mut self, req: &IncomingRequest, value: Option<&[u8]>, opts: ReplyOptions) {
        let to = opts.to.unwrap_or(req.from.addr);
        let socket = opts.socket.unwrap_or(req.socket);
        self.send_reply(req, 0, value, opts.token, opts.closer_nodes, to, socket);
    }

    /// Answer a request with an error code (JS `req.error(code, opts)`).
    pub fn error(&mut self, req: &IncomingRequest, code: u64, opts: ReplyOptions) {
        let to = opts.to.unwrap_or(req.from.addr);
        let socket = opts.socket.unwrap_or(req.socket);
        self.send_reply(req, code, None, opts.token, opts.closer_nodes, to, socket);
    }

    /// Forward a request to `to` with a new value, keeping its tid, command and target (JS
    /// `req.relay(value, to, opts)`): the final answer then reaches the original requester as
    /// a response to its own request. No token is sent; it leaves from `socket` (default: the
    /// socket the request came in on).
    pub fn relay(
        &mut self,
        req: &IncomingRequest,
        value: Option<&[u8]>,
        to: SocketAddrV4,
        socket: Option<SocketId>,
    ) {
        let socket = socket.unwrap_or(req.socket);
        let send_id = !self.ephemeral && socket == SocketId::SERVER;
        let bytes = RequestPacket {
            tid: req.tid,
            to,
            id: send_id.then(|| *self.table.id()),
            token: None,
            internal: req.internal,
            command: req.command,
            target: req.target,
            value,
        }
        .encode();
        self.transmits.push_back(Transmit {
            socket,
            to,
            bytes,
            ttl: 0,
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_reply(
        &mut self,
        req: &IncomingRequest,
        error: u64,
        value: Option<&[u8]>,
        token: bool,
        closer: bool,
        to: SocketAddrV4,
        socket: SocketId,
    ) {
        if self.destroyed {
            return;
        }
        let send_id = !self.ephemeral && socket == SocketId::SERVER;
        let closer_nodes = match (&req.target, closer) {
            (Some(t), true) => self.table.closest_addrs(t, K),
            _ => Vec::new(),
        };
        let token = token.then(|| self.io.secrets.current(to.ip()));
        let bytes = ResponsePacket {
            tid: req.tid,
            to,
            id: send_id.then(|| *self.table.id()),
            token,
            closer_nodes: Some(closer_nodes),
            error,
            value,
        }
        .encode();
        self.transmits.push_back(Transmit {
            socket,
            to,
            bytes,
            ttl: 0,
        });
    }
}

/// `from.id` is kept only if it is the hash of the address the datagram came from.
fn validate_id(id: Option<NodeId>, from: &SocketAddrV4) -> Option<NodeId> {
    let id = id?;
    let expected = node_id(from);
    (expected == id).then_some(expected)
}
