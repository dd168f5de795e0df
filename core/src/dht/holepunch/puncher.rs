//! The holepuncher (hyperdht lib/holepuncher.js) as a sans-IO state machine.
//!
//! A puncher owns a set of pool sockets, named by [`SocketId`]s it allocates. It asks its owner,
//! through [`PunchAction`]s, to open and release sockets, to ping DHT nodes from a socket (NAT
//! samples), and to send the 1-byte probe `0x00` from a socket to an address with a TTL. The owner
//! reports ping results ([`Puncher::handle_nat_pong`]), 1-byte datagrams received on the sockets
//! ([`Puncher::handle_probe`]) and the clock ([`Puncher::handle_timeout`]).
//!
//! Strategies of `punch()` (holepuncher.js:166-276), both sides reading OPEN as CONSISTENT:
//! - both CONSISTENT: a TTL-64 probe to every remote address each second, 10 rounds; unverified
//!   addresses only every 4th round; the responder waits 1 s first;
//! - local CONSISTENT, remote RANDOM: probes to the verified remote host on random ports
//!   `1000 + rand * 64536`, every 20 ms, 1750 times;
//! - local RANDOM, remote CONSISTENT (the birthday side): up to 256 sockets, each sending one
//!   TTL-5 probe to the verified remote address, then after 100 ms round-robin probes every
//!   20 ms (the first pass still TTL 5), 1750 times;
//! - both RANDOM: no strategy.
//!
//! The initiator (client) is connected by the first probe it receives; the responder echoes every
//! probe back from the socket it arrived on.

use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::VecDeque;

use super::nat::Nat;
use crate::dht::messages_connect::Firewall;

/// Sockets the birthday side opens.
pub const BIRTHDAY_SOCKETS: usize = 256;
/// TTL of session-opening probes.
pub const HOLEPUNCH_TTL: u8 = 5;
/// TTL of ordinary probes.
pub const DEFAULT_TTL: u8 = 64;
/// Socket reopens when the NAT looks unstable.
pub const MAX_REOPENS: usize = 3;
/// The probe datagram.
pub const PROBE: [u8; 1] = [0];

/// A pool socket of one puncher.
pub type SocketId = u32;

/// What the owner must do for the puncher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PunchAction {
    /// Bind a fresh UDP socket (a pool socket) for this id.
    OpenSocket(SocketId),
    /// The puncher no longer needs the socket: close it once no stream uses it.
    ReleaseSocket(SocketId),
    /// Send a dht-rpc PING (no retries) from the socket; report with
    /// [`Puncher::handle_nat_pong`] or [`Puncher::handle_nat_ping_failed`].
    NatPing {
        /// From this socket.
        socket: SocketId,
        /// To this DHT node.
        to: SocketAddrV4,
    },
    /// Send [`PROBE`] from the socket.
    Probe {
        /// From this socket.
        socket: SocketId,
        /// To this address.
        to: SocketAddrV4,
        /// IP TTL of the datagram.
        ttl: u8,
    },
    /// A path is open (initiator only): the UDX stream should connect on this socket to `addr`.
    Connected {
        /// The socket that received the first probe.
        socket: SocketId,
        /// Where the probe came from.
        addr: SocketAddrV4,
    },
    /// The puncher gave up without a connection (JS `onabort`).
    Aborted,
}

/// The DHT-wide limiter of random-NAT punches (hyperdht index.js `_randomPunches`,
/// `_randomPunchLimit` 1, `_randomPunchInterval` 20 s).
#[derive(Debug, Clone)]
pub struct RandomPunchLimiter {
    /// Random punches running.
    pub punches: u32,
    /// Concurrent random punches allowed.
    pub limit: u32,
    /// Milliseconds between the end of one random punch and the next.
    pub interval: u64,
    /// When the last random punch ended (ms).
    pub last: Option<u64>,
}

impl Default for RandomPunchLimiter {
    fn default() -> Self {
        RandomPunchLimiter {
            punches: 0,
            limit: 1,
            interval: 20_000,
            last: None,
        }
    }
}

impl RandomPunchLimiter {
    /// Whether a random punch must wait (`_randomPunches >= limit || now - last < interval`).
    pub fn is_limited(&self, now: u64) -> bool {
        self.punches >= self.limit
            || self
                .last
                .is_some_and(|l| now.saturating_sub(l) < self.interval)
    }
}

/// One remote address and whether its host was verified by an echoed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddress {
    /// The address.
    pub addr: SocketAddrV4,
    /// The peer proved it can receive at this host.
    pub verified: bool,
}

#[derive(Debug, Clone)]
enum Strategy {
    Consistent {
        tries: u32,
    },
    RandomProbes {
        remote: Ipv4Addr,
        left: u32,
    },
    Birthday {
        remote: SocketAddrV4,
        next: usize,
        low_ttl_rounds: u32,
        left: u32,
    },
}

/// The holepuncher of one connection attempt.
#[derive(Debug)]
pub struct Puncher {
    is_initiator: bool,
    dht_firewalled: bool,
    nodes: Vec<SocketAddrV4>,
    /// The NAT view of the main socket.
    pub nat: Nat,
    /// The peer's NAT type.
    pub remote_firewall: Firewall,
    /// The peer's addresses.
    pub remote_addresses: Vec<RemoteAddress>,
    /// The peer says it is punching.
    pub remote_holepunching: bool,
    sockets: Vec<SocketId>,
    next_socket: SocketId,
    punching: bool,
    connected: bool,
    destroyed: bool,
    randomized: bool,
    reopens: Option<usize>,
    strategy: Option<Strategy>,
    next_at: Option<u64>,
    rng: u64,
    actions: VecDeque<PunchAction>,
    /// The responder's last few probe senders (socket, address): the paths the peer proved
    /// it reaches us on (bounded by [`HEARD_KEPT`]).
    heard: VecDeque<(SocketId, SocketAddrV4)>,
}

/// How many probe senders a responder remembers.
const HEARD_KEPT: usize = 8;

impl Puncher {
    /// A puncher with one fresh socket that starts sampling its NAT against `nodes_newest_first`
    /// (the routing table, newest node first). `seed` feeds the random ports of the random-NAT
    /// strategy.
    pub fn new(
        is_initiator: bool,
        remote_firewall: Firewall,
        dht_firewalled: bool,
        nodes_newest_first: Vec<SocketAddrV4>,
        seed: u64,
    ) -> Self {
        let mut p = Puncher {
            is_initiator,
            dht_firewalled,
            nodes: nodes_newest_first,
            nat: Nat::new(dht_firewalled),
            remote_firewall,
            remote_addresses: Vec::new(),
            remote_holepunching: false,
            sockets: Vec::new(),
            next_socket: 0,
            punching: false,
            connected: false,
            destroyed: false,
            randomized: false,
            reopens: None,
            strategy: None,
            next_at: None,
            rng: seed | 1,
            actions: VecDeque::new(),
            heard: VecDeque::new(),
        };
        let s = p.alloc_socket();
        p.sockets.push(s);
        p.sample();
        p
    }

    fn alloc_socket(&mut self) -> SocketId {
        let id = self.next_socket;
        self.next_socket += 1;
        self.actions.push_back(PunchAction::OpenSocket(id));
        id
    }

    fn sample(&mut self) {
        let socket = self.socket();
        for to in self.nat.auto_sample(&self.nodes) {
            self.actions.push_back(PunchAction::NatPing { socket, to });
        }
    }

    /// The main socket (the one the NAT view describes and holepunch messages leave from).
    pub fn socket(&self) -> SocketId {
        self.sockets.first().copied().unwrap_or(0)
    }

    /// Whether this side is the client.
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// Whether a packet from `from` on our punching socket `socket` comes from the peer as far
    /// as the punch knows: `socket` is still one of ours and a probe from `from` arrived on it,
    /// or `from`'s host is one the peer gave (its signed holepunch payload). Not proof against
    /// a sender on the peer's own host or path, which UDX's cleartext ids cannot give.
    pub fn vouches_for(&self, socket: SocketId, from: SocketAddrV4) -> bool {
        self.sockets.contains(&socket)
            && (self.heard.contains(&(socket, from))
                || self
                    .remote_addresses
                    .iter()
                    .any(|r| r.addr.ip() == from.ip()))
    }
    /// Probing is running.
    pub fn is_punching(&self) -> bool {
        self.punching
    }
    /// A probe arrived (initiator) and [`PunchAction::Connected`] was emitted.
    pub fn is_connected(&self) -> bool {
        self.connected
    }
    /// Destroyed (connected or aborted).
    pub fn is_destroyed(&self) -> bool {
        self.destroyed
    }
    /// Whether this puncher counts as a running random punch.
    pub fn is_randomized(&self) -> bool {
        self.randomized
    }

    /// A NAT sampling ping from `socket` answered; `to` is how `from` saw the socket.
    pub fn handle_nat_pong(&mut self, socket: SocketId, to: SocketAddrV4, from: SocketAddrV4) {
        if socket != self.socket() || self.destroyed {
            return;
        }
        self.nat.handle_pong(to, from);
        self.after_sample();
    }

    /// A NAT sampling ping from `socket` failed.
    pub fn handle_nat_ping_failed(&mut self, socket: SocketId) {
        if socket != self.socket() || self.destroyed {
            return;
        }
        self.nat.handle_ping_failed();
        self.after_sample();
    }

    fn after_sample(&mut self) {
        if self.nat.wants_resample() {
            self.sample();
        }
        self.continue_reopen();
    }

    /// `updateRemote`: what the peer said in its holepunch payload. `verified` is the peer host
    /// whose token was echoed back, if any.
    pub fn update_remote(
        &mut self,
        punching: bool,
        firewall: Firewall,
        addresses: Option<&[SocketAddrV4]>,
        verified: Option<Ipv4Addr>,
    ) {
        let mut list = Vec::new();
        for addr in addresses.unwrap_or(&[]) {
            let v = verified == Some(*addr.ip()) || self.is_verified(addr.ip());
            list.push(RemoteAddress {
                addr: *addr,
                verified: v,
            });
        }
        self.remote_firewall = firewall;
        self.remote_addresses = list;
        self.remote_holepunching = punching;
    }

    fn is_verified(&self, host: &Ipv4Addr) -> bool {
        self.remote_addresses
            .iter()
            .any(|a| a.verified && a.addr.ip() == host)
    }

    /// A TTL-64 probe from the main socket (JS `ping`).
    pub fn ping(&mut self, addr: SocketAddrV4) {
        let socket = self.socket();
        self.actions.push_back(PunchAction::Probe {
            socket,
            to: addr,
            ttl: DEFAULT_TTL,
        });
    }

    /// A TTL-5 probe from the main socket (JS `openSession`).
    pub fn open_session(&mut self, addr: SocketAddrV4) {
        let socket = self.socket();
        self.actions.push_back(PunchAction::Probe {
            socket,
            to: addr,
            ttl: HOLEPUNCH_TTL,
        });
    }

    /// `_unstable()`: both sides RANDOM, or this side still UNKNOWN.
    pub fn is_unstable(&self) -> bool {
        (self.remote_firewall >= Firewall::Random && self.nat.firewall >= Firewall::Random)
            || self.nat.firewall == Firewall::Unknown
    }

    /// `analyze(false)` once [`Nat::is_analyzed`]: `Some(stable)`; `None` while sampling.
    pub fn analyze(&self) -> Option<bool> {
        self.nat.is_analyzed().then(|| !self.is_unstable())
    }

    /// `analyze(true)` on an unstable view: start reopening the main socket (up to
    /// [`MAX_REOPENS`] times while unstable). Poll [`reopen_result`](Self::reopen_result).
    pub fn start_reopen(&mut self) {
        if self.reopens.is_none() {
            self.reopens = Some(0);
            self.continue_reopen();
        }
    }

    fn continue_reopen(&mut self) {
        let Some(n) = self.reopens else { return };
        if !self.nat.is_analyzed() {
            return;
        }
        if self.is_unstable()
            && n < MAX_REOPENS
            && !self.connected
            && !self.destroyed
            && !self.punching
        {
            self.reopens = Some(n + 1);
            self.reset();
        } else {
            self.reopens = Some(usize::MAX);
        }
    }

    /// After [`start_reopen`](Self::start_reopen): `Some(consistent)` when done.
    pub fn reopen_result(&self) -> Option<bool> {
        (self.reopens == Some(usize::MAX))
            .then(|| self.nat.firewall.coerce() == Firewall::Consistent)
    }

    fn reset(&mut self) {
        let prev = self.sockets.remove(0);
        let s = self.alloc_socket();
        self.sockets.insert(0, s);
        self.actions.push_back(PunchAction::ReleaseSocket(prev));
        self.nat.destroy();
        self.nat = Nat::new(self.dht_firewalled);
        self.sample();
    }

    /// `punch()`: picks a strategy and starts it. `false` when there is none (no remote
    /// addresses, no verified one where needed, or both sides RANDOM). Starting a random
    /// strategy counts in `limiter`.
    pub fn punch(&mut self, now: u64, limiter: &mut RandomPunchLimiter) -> bool {
        if self.destroyed || self.connected || self.remote_addresses.is_empty() {
            return false;
        }
        if self.strategy.is_some() {
            return true;
        }
        self.punching = true;
        let local = self.nat.firewall.coerce();
        let remote = self.remote_firewall.coerce();
        let verified = self
            .remote_addresses
            .iter()
            .find(|a| a.verified)
            .map(|a| a.addr);
        if local == Firewall::Consistent && remote == Firewall::Consistent {
            self.strategy = Some(Strategy::Consistent { tries: 0 });
            if self.is_initiator {
                self.step(now, limiter);
            } else {
                self.next_at = Some(now + 1000);
            }
            return true;
        }
        let Some(verified) = verified else {
            return false;
        };
        if local == Firewall::Consistent && remote >= Firewall::Random {
            self.start_randomized(limiter);
            self.strategy = Some(Strategy::RandomProbes {
                remote: *verified.ip(),
                left: 1750,
            });
            self.step(now, limiter);
            return true;
        }
        if local >= Firewall::Random && remote == Firewall::Consistent {
            self.start_randomized(limiter);
            while self.sockets.len() < BIRTHDAY_SOCKETS {
                let s = self.alloc_socket();
                self.sockets.push(s);
                self.actions.push_back(PunchAction::Probe {
                    socket: s,
                    to: verified,
                    ttl: HOLEPUNCH_TTL,
                });
            }
            self.strategy = Some(Strategy::Birthday {
                remote: verified,
                next: 0,
                low_ttl_rounds: 1,
                left: 1750,
            });
            self.next_at = Some(now + 100);
            return true;
        }
        false
    }

    fn start_randomized(&mut self, limiter: &mut RandomPunchLimiter) {
        if !self.randomized {
            self.randomized = true;
            limiter.punches += 1;
        }
    }

    fn end_randomized(&mut self, now: u64, limiter: &mut RandomPunchLimiter) {
        if self.randomized {
            self.randomized = false;
            limiter.last = Some(now);
            limiter.punches = limiter.punches.saturating_sub(1);
        }
    }

    fn random_port(&mut self) -> u16 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
        (1000.0 + unit * 64536.0) as u32 as u16
    }

    fn step(&mut self, now: u64, limiter: &mut RandomPunchLimiter) {
        let main = self.socket();
        let Some(strategy) = self.strategy.as_mut() else {
            return;
        };
        match strategy {
            Strategy::Consistent { tries } => {
                if !self.punching || *tries >= 10 {
                    self.next_at = None;
                    return self.auto_destroy(now, limiter);
                }
                *tries += 1;
                let t = *tries;
                for a in &self.remote_addresses {
                    if !a.verified && (t & 3) != 0 {
                        continue;
                    }
                    self.actions.push_back(PunchAction::Probe {
                        socket: main,
                        to: a.addr,
                        ttl: DEFAULT_TTL,
                    });
                }
                self.next_at = Some(now + 1000);
            }
            Strategy::RandomProbes { remote, left } => {
                if !self.punching || *left == 0 {
                    self.next_at = None;
                    return self.auto_destroy(now, limiter);
                }
                *left -= 1;
                let remote = *remote;
                let port = self.random_port();
                self.actions.push_back(PunchAction::Probe {
                    socket: main,
                    to: SocketAddrV4::new(remote, port),
                    ttl: DEFAULT_TTL,
                });
                self.next_at = Some(now + 20);
            }
            Strategy::Birthday {
                remote,
                next,
                low_ttl_rounds,
                left,
            } => {
                if !self.punching || *left == 0 {
                    self.next_at = None;
                    return self.auto_destroy(now, limiter);
                }
                *left -= 1;
                if *next >= self.sockets.len() {
                    *next = 0;
                    *low_ttl_rounds = low_ttl_rounds.saturating_sub(1);
                }
                let socket = self.sockets[*next];
                *next += 1;
                let ttl = if *low_ttl_rounds > 0 {
                    HOLEPUNCH_TTL
                } else {
                    DEFAULT_TTL
                };
                self.actions.push_back(PunchAction::Probe {
                    socket,
                    to: *remote,
                    ttl,
                });
                self.next_at = Some(now + 20);
            }
        }
    }

    fn auto_destroy(&mut self, now: u64, limiter: &mut RandomPunchLimiter) {
        if !self.connected {
            self.destroy(now, limiter);
        }
    }

    /// A 1-byte datagram arrived on `socket` from `from`.
    pub fn handle_probe(
        &mut self,
        socket: SocketId,
        from: SocketAddrV4,
        now: u64,
        limiter: &mut RandomPunchLimiter,
    ) {
        if self.destroyed || !self.sockets.contains(&socket) {
            return;
        }
        if !self.is_initiator {
            if !self.heard.contains(&(socket, from)) {
                if self.heard.len() >= HEARD_KEPT {
                    self.heard.pop_front();
                }
                self.heard.push_back((socket, from));
            }
            self.actions.push_back(PunchAction::Probe {
                socket,
                to: from,
                ttl: DEFAULT_TTL,
            });
            return;
        }
        if self.connected {
            return;
        }
        self.connected = true;
        self.punching = false;
        self.strategy = None;
        self.next_at = None;
        for s in std::mem::take(&mut self.sockets) {
            if s != socket {
                self.actions.push_back(PunchAction::ReleaseSocket(s));
            }
        }
        self.sockets.push(socket);
        self.end_randomized(now, limiter);
        self.actions
            .push_back(PunchAction::Connected { socket, addr: from });
    }

    /// Gives up (or, after a connection, lets go of the sockets): releases every socket and, if
    /// not connected, emits [`PunchAction::Aborted`].
    pub fn destroy(&mut self, now: u64, limiter: &mut RandomPunchLimiter) {
        if self.destroyed {
            return;
        }
        self.destroyed = true;
        self.punching = false;
        self.strategy = None;
        self.next_at = None;
        for s in std::mem::take(&mut self.sockets) {
            self.actions.push_back(PunchAction::ReleaseSocket(s));
        }
        self.nat.destroy();
        if !self.connected {
            self.end_randomized(now, limiter);
            self.actions.push_back(PunchAction::Aborted);
        }
    }

    /// Next action for the owner.
    pub fn poll_action(&mut self) -> Option<PunchAction> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due (ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.next_at
    }

    /// Runs the strategy's timer.
    pub fn handle_timeout(&mut self, now: u64, limiter: &mut RandomPunchLimiter) {
        if self.next_at.is_some_and(|t| t <= now) {
            self.next_at = None;
            self.step(now, limiter);
        }
    }
}

/// holepuncher.js `matchAddress`: the remote LAN address sharing the longest dotted prefix (1-3
/// octets) with one of ours, or `None` when not even the first octet matches.
pub fn match_address(local: &[SocketAddrV4], remote: &[SocketAddrV4]) -> Option<SocketAddrV4> {
    let mut best: (u8, Option<SocketAddrV4>) = (1, None);
    for l in local {
        let a = l.ip().octets();
        for r in remote {
            let b = r.ip().octets();
            if a[0] == b[0] {
                if best.0 == 1 {
                    best = (2, Some(*r));
                }
                if a[1] == b[1] {
                    if best.0 == 2 {
                        best = (3, Some(*r));
                    }
                    if a[2] == b[2] {
                        return Some(*r);
                    }
                }
            }
        }
    }
    best.1
}

#[cfg(test)]
#[path = "sim_tests.rs"]
pub(crate) mod sim_tests;
