//! A seeded virtual IPv4 network for sans-IO engines: hosts with UDP sockets behind optional
//! NATs, links with latency, jitter (hence reordering), loss and duplication, all on virtual
//! time. Everything is deterministic per seed and runs much faster than real time.
//!
//! - A [`Host`] is anything with sockets that turns datagrams into datagrams and timers: a
//!   DHT node ([`DhtHost`]), later a hyperdht peer that connects and holepunches.
//! - Each host sits behind a [`Nat`]: [`Nat::Open`] (public addresses), [`Nat::Firewall`]
//!   (public addresses, unsolicited inbound dropped), [`Nat::Consistent`] (one public port per
//!   socket, endpoint-independent mapping, address-and-port-dependent filtering) or
//!   [`Nat::Random`] (a fresh public port per destination). New NAT behaviours are another
//!   variant and a branch in [`Nat::outbound`] / [`SimNet::deliver`].
//! - [`SimNet::run_until`] advances time, delivering datagrams and firing timers in order.
//!
//! Hosts are addressed by their private socket addresses; a NAT'd host's public side is
//! `public_ip:mapped port`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use hyperpunch_core::dht::rpc::{SocketId, Transmit};
use hyperpunch_core::dht::{DhtConfig, Event, HyperDht};

/// splitmix64: the simulation's own randomness (the engines get seeds drawn from it).
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SimRng(seed ^ 0x5151_7a7a_0101_9e9e)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// 32 random bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for c in out.chunks_mut(8) {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

/// How every datagram travels.
#[derive(Debug, Clone, Copy)]
pub struct LinkModel {
    /// One-way base latency.
    pub latency: Duration,
    /// Extra random delay, uniform in `0..jitter` (datagrams overtake each other).
    pub jitter: Duration,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram arrives twice.
    pub duplicate: f64,
}

impl Default for LinkModel {
    fn default() -> Self {
        LinkModel {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(30),
            loss: 0.01,
            duplicate: 0.001,
        }
    }
}

/// What sits between a host and the network.
#[derive(Debug, Clone)]
pub enum Nat {
    /// Public addresses, everything gets in.
    Open,
    /// Public addresses, but only replies to what the host sent get in.
    Firewall {
        /// (local socket, remote) pairs the host has sent to.
        allowed: BTreeSet<(SocketAddrV4, SocketAddrV4)>,
    },
    /// A NAT with one public port per local socket (endpoint-independent mapping); only
    /// remotes the socket sent to may answer (address-and-port-dependent filtering).
    Consistent {
        /// The NAT's public IP.
        public_ip: Ipv4Addr,
        /// Local socket → public port.
        ports: BTreeMap<SocketAddrV4, u16>,
        /// (public port, remote) pairs that may come in.
        allowed: BTreeSet<(u16, SocketAddrV4)>,
    },
    /// A NAT with a fresh public port per (local socket, remote).
    Random {
        /// The NAT's public IP.
        public_ip: Ipv4Addr,
        /// (local socket, remote) → public port.
        ports: BTreeMap<(SocketAddrV4, SocketAddrV4), u16>,
    },
}

impl Nat {
    /// A consistent NAT at `public_ip`.
    pub fn consistent(public_ip: Ipv4Addr) -> Self {
        Nat::Consistent {
            public_ip,
            ports: BTreeMap::new(),
            allowed: BTreeSet::new(),
        }
    }

    /// A port-randomizing NAT at `public_ip`.
    pub fn random(public_ip: Ipv4Addr) -> Self {
        Nat::Random {
            public_ip,
            ports: BTreeMap::new(),
        }
    }

    /// A stateful firewall without address translation.
    pub fn firewall() -> Self {
        Nat::Firewall {
            allowed: BTreeSet::new(),
        }
    }

    /// The source address the network sees for a datagram from `local` to `to`.
    pub fn outbound(
        &mut self,
        local: SocketAddrV4,
        to: SocketAddrV4,
        rng: &mut SimRng,
    ) -> SocketAddrV4 {
        match self {
            Nat::Open => local,
            Nat::Firewall { allowed } => {
                allowed.insert((local, to));
                local
            }
            Nat::Consistent {
                public_ip,
                ports,
                allowed,
            } => {
                let used: BTreeSet<u16> = ports.values().copied().collect();
                let port = *ports.entry(local).or_insert_with(|| fresh_port(&used, rng));
                allowed.insert((port, to));
                SocketAddrV4::new(*public_ip, port)
            }
            Nat::Random { public_ip, ports } => {
                let used: BTreeSet<u16> = ports.values().copied().collect();
                let port = *ports
                    .entry((local, to))
                    .or_insert_with(|| fresh_port(&used, rng));
                SocketAddrV4::new(*public_ip, port)
            }
        }
    }

    /// The local socket a datagram from `from` to the public `to` reaches, if the NAT lets it in.
    pub fn inbound(&self, to: SocketAddrV4, from: SocketAddrV4) -> Option<SocketAddrV4> {
        match self {
            Nat::Open => Some(to),
            Nat::Firewall { allowed } => allowed.contains(&(to, from)).then_some(to),
            Nat::Consistent { ports, allowed, .. } => {
                if !allowed.contains(&(to.port(), from)) {
                    return None;
                }
                ports
                    .iter()
                    .find(|(_, p)| **p == to.port())
                    .map(|(l, _)| *l)
            }
            Nat::Random { ports, .. } => ports
                .iter()
                .find(|((_, remote), p)| **p == to.port() && *remote == from)
                .map(|((l, _), _)| *l),
        }
    }

    fn public_ip(&self) -> Option<Ipv4Addr> {
        match self {
            Nat::Consistent { public_ip, .. } | Nat::Random { public_ip, .. } => Some(*public_ip),
            _ => None,
        }
    }
}

fn fresh_port(used: &BTreeSet<u16>, rng: &mut SimRng) -> u16 {
    loop {
        let p = 10_000 + rng.below(50_000) as u16;
        if !used.contains(&p) {
            return p;
        }
    }
}

/// A datagram a host wants sent.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The local socket it leaves from.
    pub from: SocketAddrV4,
    /// The destination (a public address).
    pub to: SocketAddrV4,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Something on the network.
pub trait Host {
    /// Its local sockets.
    fn sockets(&self) -> Vec<SocketAddrV4>;
    /// A datagram arrived on `local` from `from`.
    fn receive(&mut self, now: Duration, local: SocketAddrV4, from: SocketAddrV4, bytes: &[u8]);
    /// Timers due.
    fn timeout(&mut self, now: Duration);
    /// When the next timer is due.
    fn deadline(&mut self) -> Option<Duration>;
    /// The next datagram to send.
    fn transmit(&mut self) -> Option<Outgoing>;
    /// Called after every interaction (collect events, ...).
    fn settle(&mut self) {}
}

/// Counters of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Lost on the link.
    pub lost: u64,
    /// Dropped by a NAT or firewall, or sent to nobody.
    pub dropped: u64,
    /// A fingerprint of every delivery (time, addresses, bytes): equal runs give equal values.
    pub trace: u64,
}

struct InFlight {
    at: Duration,
    seq: u64,
    from: SocketAddrV4,
    to: SocketAddrV4,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A host identifier in a [`SimNet`].
pub type HostId = usize;

/// The network.
pub struct SimNet<H: Host> {
    /// The hosts, `None` once removed.
    pub hosts: Vec<Option<H>>,
    nats: Vec<Nat>,
    /// Local socket → host.
    by_local: HashMap<SocketAddrV4, HostId>,
    /// NAT public IP → host.
    by_public_ip: HashMap<Ipv4Addr, HostId>,
    queue: BinaryHeap<Reverse<InFlight>>,
    timers: BinaryHeap<Reverse<(Duration, HostId)>>,
    seq: u64,
    /// The current virtual time.
    pub now: Duration,
    /// The link model (may be changed between runs).
    pub link: LinkModel,
    /// Randomness of links and NATs.
    pub rng: SimRng,
    /// Counters.
    pub stats: NetStats,
}

impl<H: Host> SimNet<H> {
    /// An empty network at `start`.
    pub fn new(seed: u64, start: Duration, link: LinkModel) -> Self {
        SimNet {
            hosts: Vec::new(),
            nats: Vec::new(),
            by_local: HashMap::new(),
            by_public_ip: HashMap::new(),
            queue: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            now: start,
            link,
            rng: SimRng::new(seed),
            stats: NetStats::default(),
        }
    }

    /// Add a host behind `nat`.
    pub fn add(&mut self, host: H, nat: Nat) -> HostId {
        let id = self.hosts.len();
        for s in host.sockets() {
            self.by_local.insert(s, id);
        }
        if let Some(ip) = nat.public_ip() {
            self.by_public_ip.insert(ip, id);
        }
        self.hosts.push(Some(host));
        self.nats.push(nat);
        self.flush(id);
        id
    }

    /// Remove a host (it crashes: nothing more is sent or delivered).
    pub fn remove(&mut self, id: HostId) -> Option<H> {
        let h = self.hosts.get_mut(id)?.take()?;
        for s in h.sockets() {
            self.by_local.remove(&s);
        }
        Some(h)
    }

    /// The host, if present.
    pub fn host(&self, id: HostId) -> Option<&H> {
        self.hosts.get(id).and_then(Option::as_ref)
    }

    /// Run `f` on a host, then send what it produced.
    pub fn with<R>(&mut self, id: HostId, f: impl FnOnce(&mut H, Duration) -> R) -> R {
        let now = self.now;
        let r = f(self.hosts[id].as_mut().expect("live host"), now);
        self.flush(id);
        r
    }

    /// Ids of the hosts present.
    pub fn live(&self) -> Vec<HostId> {
        (0..self.hosts.len())
            .filter(|i| self.hosts[*i].is_some())
            .collect()
    }

    fn flush(&mut self, id: HostId) {
        let Some(h) = self.hosts[id].as_mut() else {
            return;
        };
        h.settle();
        // Hosts may bind sockets as they go (a holepuncher's pool).
        for s in h.sockets() {
            self.by_local.entry(s).or_insert(id);
        }
        let Some(h) = self.hosts[id].as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(o) = h.transmit() {
            out.push(o);
        }
        if let Some(d) = h.deadline() {
            self.timers.push(Reverse((d, id)));
        }
        for o in out {
            self.send(id, o);
        }
    }

    fn send(&mut self, id: HostId, o: Outgoing) {
        self.stats.sent += 1;
        let src = self.nats[id].outbound(o.from, o.to, &mut self.rng);
        if self.rng.chance(self.link.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.link.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = self.link.jitter.as_nanos() as u64;
            let extra = Duration::from_nanos(self.rng.below(jitter.max(1)));
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                at: self.now + self.link.latency + extra,
                seq: self.seq,
                from: src,
                to: o.to,
                bytes: o.bytes.clone(),
            }));
        }
    }

    fn deliver(&mut self, p: InFlight) {
        let target = match self.by_public_ip.get(p.to.ip()) {
            Some(&id) => self.nats[id].inbound(p.to, p.from).map(|l| (id, l)),
            None => self
                .by_local
                .get(&p.to)
                .copied()
                .and_then(|id| self.nats[id].inbound(p.to, p.from).map(|l| (id, l))),
        };
        let Some((id, local)) = target else {
            self.stats.dropped += 1;
            return;
        };
        let Some(h) = self.hosts[id].as_mut() else {
            self.stats.dropped += 1;
            return;
        };
        self.stats.delivered += 1;
        let mut fp = self.stats.trace ^ p.at.as_nanos() as u64;
        for b in p.bytes.iter().take(16) {
            fp = fp.rotate_left(5) ^ *b as u64;
        }
        fp ^= (u32::from(*p.from.ip()) as u64) << 16 | p.to.port() as u64;
        self.stats.trace = fp.wrapping_mul(0x100_0000_01b3);
        h.receive(self.now, local, p.from, &p.bytes);
        self.flush(id);
    }

    /// Advance to `until`, delivering datagrams and running timers in time order.
    pub fn run_until(&mut self, until: Duration) {
        loop {
            let next_packet = self.queue.peek().map(|Reverse(p)| p.at);
            let next_timer = self.timers.peek().map(|Reverse((d, _))| *d);
            let next = match (next_packet, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(x) => x,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_packet == Some(next) {
                let Reverse(p) = self.queue.pop().expect("peeked");
                self.deliver(p);
            } else {
                let Reverse((d, id)) = self.timers.pop().expect("peeked");
                let Some(h) = self.hosts[id].as_mut() else {
                    continue;
                };
                // Stale entries (the host re-armed since) are skipped.
                if h.deadline() != Some(d) {
                    continue;
                }
                h.timeout(self.now);
                self.flush(id);
            }
        }
        self.now = self.now.max(until);
    }

    /// Advance by `d`.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }
}

/// A [`HyperDht`] node with a server and a client socket.
pub struct DhtHost {
    /// The engine.
    pub dht: HyperDht,
    /// Its server socket's local address.
    pub server: SocketAddrV4,
    /// Its client socket's local address.
    pub client: SocketAddrV4,
    /// Events not consumed yet.
    pub events: Vec<Event>,
}

impl DhtHost {
    /// A node at `ip` (server socket on `port`, client socket on `port + 1`); its seed comes
    /// from `rng`.
    pub fn new(
        mut config: DhtConfig,
        ip: Ipv4Addr,
        port: u16,
        now: Duration,
        rng: &mut SimRng,
    ) -> Self {
        config.rpc.server_port = port;
        let dht = HyperDht::new(config, now, rng.bytes32());
        DhtHost {
            dht,
            server: SocketAddrV4::new(ip, port),
            client: SocketAddrV4::new(ip, port + 1),
            events: Vec::new(),
        }
    }

    /// Take the events so far.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

impl Host for DhtHost {
    fn sockets(&self) -> Vec<SocketAddrV4> {
        vec![self.server, self.client]
    }
    fn receive(&mut self, now: Duration, local: SocketAddrV4, from: SocketAddrV4, bytes: &[u8]) {
        let socket = if local == self.client {
            SocketId::CLIENT
        } else {
            SocketId::SERVER
        };
        let _ = self
            .dht
            .handle_datagram(now, socket, SocketAddr::V4(from), bytes);
    }
    fn timeout(&mut self, now: Duration) {
        self.dht.handle_timeout(now);
    }
    fn settle(&mut self) {
        while let Some(e) = self.dht.poll_event() {
            self.events.push(e);
        }
    }
    fn deadline(&mut self) -> Option<Duration> {
        self.dht.poll_timeout()
    }
    fn transmit(&mut self) -> Option<Outgoing> {
        let Transmit {
            socket, to, bytes, ..
        } = self.dht.poll_transmit()?;
        let from = if socket == SocketId::CLIENT {
            self.client
        } else {
            self.server
        };
        Some(Outgoing { from, to, bytes })
    }
}
