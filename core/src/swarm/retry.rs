//! Retries with backoff (hyperswarm lib/retry-timer.js and lib/bulk-timer.js): four bulk
//! timers (about 1 s, 5 s, 15 s and 10 min); a peer whose connection closed waits in the one
//! its attempts and history select, and is queued again when that timer has ticked twice.

use core::time::Duration;

use super::peer_info::PeerInfo;
use crate::rng::Rng;

/// A timer that fires for everything added before its previous tick (JS `BulkTimer`: an
/// interval of 66% of its time; an entry waits one to two intervals).
#[derive(Debug)]
struct BulkTimer {
    period: Duration,
    next_tick: Option<Duration>,
    next: Vec<[u8; 32]>,
    pending: Vec<[u8; 32]>,
}

impl BulkTimer {
    fn new(time: Duration) -> Self {
        BulkTimer {
            period: (time * 66 / 100).max(Duration::from_millis(1)),
            next_tick: None,
            next: Vec::new(),
            pending: Vec::new(),
        }
    }

    fn add(&mut self, now: Duration, key: [u8; 32]) {
        if self.next_tick.is_none() {
            self.next_tick = Some(now + self.period);
        }
        self.pending.push(key);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.next.is_empty() && self.pending.is_empty() {
            return None;
        }
        self.next_tick
    }

    fn handle_timeout(&mut self, now: Duration, fired: &mut Vec<[u8; 32]>) {
        let Some(mut at) = self.next_tick else { return };
        while at <= now {
            if self.next.is_empty() && self.pending.is_empty() {
                // Idle ticks do nothing: keep the phase, skip ahead.
                let behind = (now - at).as_nanos() / self.period.as_nanos();
                at += self.period * (behind as u32 + 1);
                break;
            }
            fired.append(&mut self.next);
            self.next = std::mem::take(&mut self.pending);
            at += self.period;
        }
        self.next_tick = Some(at);
    }
}

/// hyperswarm's backoffs, before the per-timer jitter: 1 s, 5 s, 15 s and 10 min, each with a
/// random extra (up to 0.5 s, 1 s, 2 s, 2 min).
pub fn default_backoffs(rng: &mut Rng) -> [Duration; 4] {
    const J: u64 = 500;
    let r = |rng: &mut Rng, max: u64| rng.below(max + 1);
    [
        Duration::from_millis(1000 + r(rng, J)),
        Duration::from_millis(5000 + r(rng, 2 * J)),
        Duration::from_millis(15_000 + r(rng, 4 * J)),
        Duration::from_millis(600_000 + r(rng, 240 * J)),
    ]
}

/// The four timers of a swarm.
#[derive(Debug)]
pub(crate) struct RetryTimer {
    timers: [BulkTimer; 4],
}

impl RetryTimer {
    pub fn new(backoffs: [Duration; 4], jitter: Duration, rng: &mut Rng) -> Self {
        let j = jitter.as_millis() as u64;
        let mk = |b: Duration, rng: &mut Rng| {
            BulkTimer::new(b + Duration::from_millis(rng.below(j + 1)))
        };
        RetryTimer {
            timers: [
                mk(backoffs[0], rng),
                mk(backoffs[1], rng),
                mk(backoffs[2], rng),
                mk(backoffs[3], rng),
            ],
        }
    }

    /// JS `_selectRetryTimer`: 0 = short, 1 = medium, 2 = long, 3 = ten minutes.
    fn select(peer: &PeerInfo) -> Option<usize> {
        if peer.banned || !peer.reconnecting {
            return None;
        }
        if peer.attempts > 3 {
            return peer.explicit.then_some(3);
        }
        if peer.attempts == 0 {
            return Some(0);
        }
        match (peer.proven, peer.attempts) {
            (true, 1) => Some(0),
            (true, 2) => Some(1),
            (true, 3) => Some(2),
            (false, 1) => Some(1),
            (false, 2) | (false, 3) => Some(2),
            _ => None,
        }
    }

    /// Puts the peer in its timer; false when it is not to be retried.
    pub fn add(&mut self, now: Duration, peer: &PeerInfo) -> bool {
        match Self::select(peer) {
            Some(i) => {
                self.timers[i].add(now, peer.public_key);
                true
            }
            None => false,
        }
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.iter().filter_map(BulkTimer::poll_timeout).min()
    }

    /// The peers due now, per timer in order.
    pub fn handle_timeout(&mut self, now: Duration) -> Vec<[u8; 32]> {
        let mut fired = Vec::new();
        for t in &mut self.timers {
            t.handle_timeout(now, &mut fired);
        }
        fired
    }

    pub fn clear(&mut self) {
        for t in &mut self.timers {
            t.next.clear();
            t.pending.clear();
            t.next_tick = None;
        }
    }
}
