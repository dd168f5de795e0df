//! What the swarm knows about one remote peer (hyperswarm lib/peer-info.js): its relay
//! addresses, the topics it was found under, and the retry bookkeeping that sets its priority.

use core::net::SocketAddrV4;
use core::time::Duration;

/// A connection that lasted this long resets the attempt counter when it closes (JS
/// `MIN_CONNECTION_TIME`).
pub const MIN_CONNECTION_TIME: Duration = Duration::from_secs(15);

/// Priority: a stale peer or one that failed more than 3 times.
pub const VERY_LOW_PRIORITY: u8 = 0;
/// Priority: failed 3 times.
pub const LOW_PRIORITY: u8 = 1;
/// Priority: never tried.
pub const NORMAL_PRIORITY: u8 = 2;
/// Priority: failed twice (retried soon).
pub const HIGH_PRIORITY: u8 = 3;
/// Priority: failed once (retried first).
pub const VERY_HIGH_PRIORITY: u8 = 4;

/// A remote peer (JS `PeerInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its public key.
    pub public_key: [u8; 32],
    /// The DHT nodes its announcement named (handshakes go through them first).
    pub relay_addresses: Vec<SocketAddrV4>,
    /// Reconnect when a connection closes (JS `reconnect(val)`).
    pub reconnecting: bool,
    /// A connection to it opened once.
    pub proven: bool,
    /// When the current connection opened.
    pub connected_time: Option<Duration>,
    /// When the last connection closed.
    pub disconnected_time: Duration,
    /// Never connect to it or accept it.
    pub banned: bool,
    /// Joined explicitly ([`Swarm::join_peer`](super::Swarm::join_peer)).
    pub explicit: bool,
    /// Waiting in a retry timer.
    pub waiting: bool,
    /// The next connection should go through the relay (JS `forceRelaying`).
    pub force_relaying: bool,
    /// In the connection queue.
    pub queued: bool,
    /// The last connection was ours (we dialed it).
    pub client: bool,
    /// The topics it was found under, in order.
    pub topics: Vec<[u8; 32]>,
    /// Failed or closed connections since the last reset.
    pub attempts: u32,
    /// Its queue priority (one of the `*_PRIORITY` constants).
    pub priority: u8,
    pub(crate) flush_tick: u64,
}

impl PeerInfo {
    /// A peer never connected to.
    pub fn new(public_key: [u8; 32], relay_addresses: Vec<SocketAddrV4>) -> Self {
        PeerInfo {
            public_key,
            relay_addresses,
            reconnecting: true,
            proven: false,
            connected_time: None,
            disconnected_time: Duration::ZERO,
            banned: false,
            explicit: false,
            waiting: false,
            force_relaying: false,
            queued: false,
            client: false,
            topics: Vec::new(),
            attempts: 0,
            priority: NORMAL_PRIORITY,
            flush_tick: 0,
        }
    }

    /// The remote dialed us last (JS `server`).
    pub fn server(&self) -> bool {
        !self.client
    }

    /// At normal priority or above.
    pub fn prioritized(&self) -> bool {
        self.priority >= NORMAL_PRIORITY
    }

    fn get_priority(&self) -> u8 {
        // JS also treats a peer that was `tried` and never `proven` as stale; nothing in
        // hyperswarm 4.17.2 sets `tried`, so that branch never runs.
        match self.attempts {
            0 => NORMAL_PRIORITY,
            1 => VERY_HIGH_PRIORITY,
            2 => HIGH_PRIORITY,
            3 => LOW_PRIORITY,
            _ => VERY_LOW_PRIORITY,
        }
    }

    pub(crate) fn connected(&mut self, now: Duration) {
        self.proven = true;
        self.connected_time = Some(now);
    }

    pub(crate) fn disconnected(&mut self, now: Duration) {
        self.disconnected_time = now;
        if let Some(at) = self.connected_time.take() {
            if now.saturating_sub(at) >= MIN_CONNECTION_TIME {
                self.attempts = 0; // fast retry
            }
        }
        self.attempts += 1;
    }

    pub(crate) fn reset(&mut self) {
        self.client = false;
        self.proven = false;
        self.attempts = 0;
    }

    /// JS `_updatePriority`: false when the peer must not be queued.
    pub(crate) fn update_priority(&mut self) -> bool {
        if self.explicit && self.attempts > 3 {
            self.attempts = 3; // _deprioritize
        }
        if self.banned || self.queued || self.attempts > 3 {
            return false;
        }
        self.priority = self.get_priority();
        true
    }

    pub(crate) fn add_topic(&mut self, topic: [u8; 32]) {
        if !self.topics.contains(&topic) {
            self.topics.push(topic);
        }
    }

    /// Whether the swarm may forget it (JS `shouldGC`).
    pub fn should_gc(&self) -> bool {
        !(self.banned || self.queued || self.explicit || self.waiting)
    }
}
