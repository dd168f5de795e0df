//! dht-rpc's io layer (lib/io.js): the congestion window, token secrets, the inflight request
//! table with its tids and retry timers, and (a hyperpunch addition) the per-source rate limit
//! on incoming requests.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use super::messages::NodeId;
use super::{QueryId, RequestId, SocketId};
use crate::crypto;

/// Default congestion window: sends per 750 ms slot (`maxWindow`).
pub const MAX_WINDOW: u32 = 80;
/// A request attempt waits this long for its response unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Retries of a plain request (4 sends in all).
pub const DEFAULT_RETRIES: u32 = 3;
/// The drain interval: congestion slots, pending sends, token rotation.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(750);
/// Drains between token secret rotations (7.5 s).
pub const ROTATE_SECRETS: u32 = 10;

/// dht-rpc's `CongestionWindow`: 4 slots of 750 ms; full when the current slot holds
/// `max_window` sends or all four hold `2 × max_window`.
#[derive(Debug, Clone)]
pub struct CongestionWindow {
    i: usize,
    total: u32,
    window: [u32; 4],
    max_window: u32,
}

impl CongestionWindow {
    /// A window of `max_window` sends per slot.
    pub fn new(max_window: u32) -> Self {
        CongestionWindow {
            i: 0,
            total: 0,
            window: [0; 4],
            max_window,
        }
    }
    /// No more sends until the next drain.
    pub fn is_full(&self) -> bool {
        self.total >= 2 * self.max_window || self.window[self.i] >= self.max_window
    }
    /// A request got its answer (or was destroyed).
    pub fn recv(&mut self) {
        if self.window[self.i] > 0 {
            self.window[self.i] -= 1;
            self.total -= 1;
        }
    }
    /// One datagram sent.
    pub fn send(&mut self) {
        self.total += 1;
        self.window[self.i] += 1;
    }
    /// Move to the next slot, forgetting the oldest.
    pub fn drain(&mut self) {
        self.i = (self.i + 1) & 3;
        self.total -= self.window[self.i];
        self.window[self.i] = 0;
    }
    /// The configured window.
    pub fn max_window(&self) -> u32 {
        self.max_window
    }
}

/// The two token secrets. `token(host, i) = BLAKE2b-256(utf8(host), key = secrets[i])`; every
/// 10 drains `secrets[0] ← secrets[1]`, `secrets[1] ← H(old secrets[0])`. Current tokens are
/// cached per host (a bounded cache, emptied at each rotation).
#[derive(Clone)]
pub struct Secrets {
    s: [[u8; 32]; 2],
    rotate_in: u32,
    cache: HashMap<Ipv4Addr, [u8; 32]>,
}

/// Hosts whose current token is cached at most.
const TOKEN_CACHE: usize = 4096;

impl core::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secrets")
    }
}

/// The dotted-quad text of an IPv4 address, without allocating.
fn host_text(host: &Ipv4Addr, buf: &mut [u8; 15]) -> usize {
    let mut n = 0;
    for (i, o) in host.octets().iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        let o = *o;
        if o >= 100 {
            buf[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            buf[n] = b'0' + (o / 10) % 10;
            n += 1;
        }
        buf[n] = b'0' + o % 10;
        n += 1;
    }
    n
}

impl Secrets {
    /// Two given secrets.
    pub fn new(a: [u8; 32], b: [u8; 32]) -> Self {
        Secrets {
            s: [a, b],
            rotate_in: ROTATE_SECRETS,
            cache: HashMap::new(),
        }
    }
    /// The token for `host` under secret `i` (0 = previous, 1 = current).
    pub fn token(&self, host: &Ipv4Addr, i: usize) -> [u8; 32] {
        let mut buf = [0u8; 15];
        let n = host_text(host, &mut buf);
        crypto::keyed_hash_batch(&self.s[i], &[&buf[..n]])
    }
    /// The current token for `host` (cached).
    pub fn current(&mut self, host: &Ipv4Addr) -> [u8; 32] {
        if let Some(t) = self.cache.get(host) {
            return *t;
        }
        let t = self.token(host, 1);
        if self.cache.len() >= TOKEN_CACHE {
            self.cache.clear();
        }
        self.cache.insert(*host, t);
        t
    }
    /// True when `token` is the current or the previous token for `host`.
    pub fn valid(&mut self, host: &Ipv4Addr, token: &[u8; 32]) -> bool {
        use subtle::ConstantTimeEq;
        let a = self.current(host);
        if bool::from(a.ct_eq(token)) {
            return true;
        }
        bool::from(self.token(host, 0).ct_eq(token))
    }
    /// Count one drain; rotate every tenth.
    pub fn on_drain(&mut self) {
        self.rotate_in -= 1;
        if self.rotate_in == 0 {
            self.rotate_in = ROTATE_SECRETS;
            let old = self.s[0];
            self.s[0] = self.s[1];
            self.s[1] = crypto::hash(&old);
            self.cache.clear();
        }
    }
}

/// Who is waiting for an inflight request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A user's `request`/`ping` (or a query commit: `commit` names the query).
    User {
        id: RequestId,
        commit: Option<QueryId>,
    },
    /// A query visiting a node.
    Visit(QueryId),
    /// A DOWN_HINT sent on a query's behalf (its answer is ignored).
    DownHint(QueryId),
    /// An automatic commit of a query (`commit: true`).
    AutoCommit(QueryId),
    /// A health check of a table node (`_check`).
    Check { id: NodeId, last_seen: u64 },
    /// Pinging the oldest node of a full row before swapping in a new one.
    Reping {
        old: NodeId,
        last_seen: u64,
        new: Box<super::table::TableNode>,
    },
    /// The quick firewall probe of the bootstrap (PING_NAT to the first responder).
    QuickFirewall,
    /// A PING_NAT of `_checkIfFirewalled`.
    FirewallCheck(u64),
}

/// One inflight request.
#[derive(Debug, Clone)]
pub(crate) struct Inflight {
    pub to: SocketAddrV4,
    /// The id the table knows this node by, if it is a table node (a timeout removes it).
    pub to_id: Option<NodeId>,
    pub socket: SocketId,
    pub buffer: Vec<u8>,
    pub internal: bool,
    pub command: u64,
    pub sent: u32,
    pub retries: u32,
    /// Per-attempt timeout; `None` means [`DEFAULT_TIMEOUT`].
    pub timeout: Option<Duration>,
    pub ttl: u8,
    pub owner: Owner,
    pub deadline: Option<Duration>,
    pub queued: bool,
    pub timer: u64,
    pub started: Duration,
    /// A query already counted this request as slow.
    pub slow: bool,
}

/// The inflight table, the pending FIFO and the retry timers.
#[derive(Debug)]
pub(crate) struct Io {
    pub inflight: BTreeMap<u16, Inflight>,
    pub pending: VecDeque<u16>,
    pub congestion: CongestionWindow,
    pub secrets: Secrets,
    next_tid: u16,
    timers: BinaryHeap<Reverse<(Duration, u64, u16)>>,
    timer_seq: u64,
}

impl Io {
    pub fn new(max_window: u32, first_tid: u16, secrets: Secrets) -> Self {
        Io {
            inflight: BTreeMap::new(),
            pending: VecDeque::new(),
            congestion: CongestionWindow::new(max_window),
            secrets,
            next_tid: first_tid,
            timers: BinaryHeap::new(),
            timer_seq: 0,
        }
    }

    /// A tid not in use (a counter that wraps at 65536, skipping live tids).
    pub fn alloc_tid(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX as u32 {
            let t = self.next_tid;
            self.next_tid = self.next_tid.wrapping_add(1);
            if !self.inflight.contains_key(&t) {
                return Some(t);
            }
        }
        None
    }

    /// Arm `tid`'s attempt timer.
    pub fn arm(&mut self, tid: u16, at: Duration) {
        self.timer_seq += 1;
        let seq = self.timer_seq;
        if let Some(r) = self.inflight.get_mut(&tid) {
            r.deadline = Some(at);
            r.timer = seq;
            self.timers.push(Reverse((at, seq, tid)));
        }
    }

    /// The earliest live timer.
    pub fn next_deadline(&mut self) -> Option<Duration> {
        while let Some(Reverse((at, seq, tid))) = self.timers.peek().copied() {
            match self.inflight.get(&tid) {
                Some(r) if r.timer == seq && r.deadline == Some(at) => return Some(at),
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    /// Pop one expired timer's tid.
    pub fn pop_expired(&mut self, now: Duration) -> Option<u16> {
        let at = self.next_deadline()?;
        if at > now {
            return None;
        }
        let Reverse((_, _, tid)) = self.timers.pop()?;
        if let Some(r) = self.inflight.get_mut(&tid) {
            r.deadline = None;
        }
        Some(tid)
    }
}

/// Limits on incoming requests per source (a hyperpunch addition: dht-rpc has none, see the
/// TODO in hyperdht's router.js). Counted per one-second window; requests over a limit are
/// dropped without an answer, as a lost datagram would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per second from one `host:port`.
    pub per_address: u32,
    /// Requests per second from one host (all its ports together).
    pub per_host: u32,
    /// Sources tracked per window at most; requests from further sources in the same second
    /// are dropped (bounds the state under a spoofed-address flood).
    pub max_sources: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_address: 500,
            per_host: 5000,
            max_sources: 16_384,
        }
    }
}

impl RateLimits {
    /// No limits (what dht-rpc does).
    pub fn unlimited() -> Self {
        RateLimits {
            per_address: u32::MAX,
            per_host: u32::MAX,
            max_sources: usize::MAX,
        }
    }
}

/// Fixed one-second windows of request counts.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    pub limits: RateLimits,
    window: Duration,
    by_addr: HashMap<SocketAddrV4, u32>,
    by_host: HashMap<Ipv4Addr, u32>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            window: Duration::ZERO,
            by_addr: HashMap::new(),
            by_host: HashMap::new(),
        }
    }

    /// Count one request from `from`; false when it is over a limit.
    pub fn allow(&mut self, now: Duration, from: SocketAddrV4) -> bool {
        if self.limits.per_address == u32::MAX && self.limits.per_host == u32::MAX {
            return true;
        }
        if now >= self.window + Duration::from_secs(1) || now < self.window {
            self.window = now;
            self.by_addr.clear();
            self.by_host.clear();
        }
        let tracked = self.by_addr.len() >= self.limits.max_sources;
        let host = match self.by_host.get_mut(from.ip()) {
            Some(n) => n,
            None if tracked => return false,
            None => self.by_host.entry(*from.ip()).or_insert(0),
        };
        if *host >= self.limits.per_host {
            return false;
        }
        let addr = match self.by_addr.get_mut(&from) {
            Some(n) => n,
            None if tracked => return false,
            None => self.by_addr.entry(from).or_insert(0),
        };
        if *addr >= self.limits.per_address {
            return false;
        }
        *addr += 1;
        *self.by_host.get_mut(from.ip()).expect("counted above") += 1;
        true
    }

    /// Sources tracked in the current window.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.by_addr.len() + self.by_host.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congestion_window_like_js() {
        let mut w = CongestionWindow::new(80);
        for _ in 0..79 {
            w.send();
        }
        assert!(!w.is_full());
        w.send();
        assert!(w.is_full());
        w.drain();
        assert!(!w.is_full());
        for _ in 0..80 {
            w.send();
        }
        // 160 in the last two slots: full on the total.
        w.drain();
        assert!(w.is_full());
        w.recv(); // current slot is empty: no change
        assert!(w.is_full());
        w.drain();
        w.drain();
        // the first 80 are forgotten
        assert!(!w.is_full());
    }

    #[test]
    fn tokens_match_the_vector_and_rotate() {
        let s = Secrets::new([0x11; 32], [0x22; 32]);
        let host: Ipv4Addr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            hex_of(&s.token(&host, 1)),
            "adbc55b1f8292697e70c852f66f2c9cc22a0acf90d8e0ea2b399cc0b1d88e922"
        );
        let t = s.token(&host, 1);
        for h in ["0.0.0.0", "1.22.133.255", "255.255.255.255", "10.0.0.1"] {
            let ip: Ipv4Addr = h.parse().unwrap();
            let mut b = [0u8; 15];
            let n = host_text(&ip, &mut b);
            assert_eq!(&b[..n], h.as_bytes());
        }
        let mut r = s.clone();
        for _ in 0..ROTATE_SECRETS {
            r.on_drain();
        }
        assert!(r.valid(&host, &t), "a token lives one more rotation");
        for _ in 0..ROTATE_SECRETS {
            r.on_drain();
        }
        assert!(!r.valid(&host, &t), "and no longer");
        assert!(!s.clone().valid(&"127.0.0.2".parse().unwrap(), &t));
    }

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn rate_limiter_windows() {
        let mut r = RateLimiter::new(RateLimits {
            per_address: 3,
            per_host: 5,
            max_sources: 4,
        });
        let a: SocketAddrV4 = "1.1.1.1:1".parse().unwrap();
        let b: SocketAddrV4 = "1.1.1.1:2".parse().unwrap();
        let t = Duration::from_secs(10);
        assert!((0..3).all(|_| r.allow(t, a)));
        assert!(!r.allow(t, a));
        assert!(r.allow(t, b) && r.allow(t, b));
        assert!(!r.allow(t, b), "host limit");
        let later = t + Duration::from_secs(1);
        assert!(r.allow(later, a));
        for i in 0..10u16 {
            r.allow(
                later,
                SocketAddrV4::new("2.2.2.2".parse().unwrap(), 100 + i),
            );
        }
        assert!(r.tracked() <= 8 + 2);
    }
}
