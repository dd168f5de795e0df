//! When an indexer acks: JS autobase 7.28.1's ack timer (`ackInterval`, `ackThreshold`,
//! `lib/timer.js`, `_backgroundAck`, `_triggerAckAsap`, `_updateAckThreshold`), sans-IO.
//!
//! JS runs a timer per local writer that fires every `random2over1(ackInterval)` ms (10 to 20 s
//! by default) and then, after a further random wait of up to a third of the interval (JS
//! `asapStandalone`, "avoid lumping acks together"), writes an ack if the local writer is an
//! indexer and `shouldAck` (or a pending indexer, or its checkpoint lags what is indexed) asks for
//! one. Every change of a remote writer pushes the timer back (a debounce), but never further
//! than `random2over1(120 s)` after the first push since it last fired. When the local writer saw
//! `random2over1(indexers × ackThreshold)` updates in a row without writing anything, and every
//! indexer's known blocks are linearized, the timer is brought forward to a random point within
//! a third of the interval (JS `asap`). A new ack threshold is drawn after every ack and every
//! indexer change.
//!
//! Here the engine keeps that state (`AckState`, inside [`super::Autobase`]); the driver passes
//! the time (milliseconds on any monotonic clock) and the randomness ([`Rng`]) in
//! [`super::Autobase::poll_ack`] and wakes it at [`super::Autobase::ack_timeout`].

use crate::rng::Rng;

/// JS `DEFAULT_ACK_INTERVAL`: 10 s.
pub const DEFAULT_ACK_INTERVAL: u64 = 10_000;
/// JS `DEFAULT_ACK_THRESHOLD`: 4 updates per indexer.
pub const DEFAULT_ACK_THRESHOLD: u64 = 4;
/// JS `Timer` `MAX_WAIT`: pushes of the timer stop `random2over1(2 min)` after the first one.
pub const MAX_WAIT: u64 = 120_000;

/// The ack timer's settings (JS `new Autobase(store, key, { ackInterval, ackThreshold })`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckConfig {
    /// Milliseconds; the timer fires every `interval` to `2 × interval`. 0: no timer (JS
    /// `ackInterval: 0`): only a pending indexer's first ack is written by
    /// [`super::Autobase::poll_ack`]; the application acks itself.
    pub interval: u64,
    /// Updates per indexer without a local write before the timer is brought forward (JS
    /// `ackThreshold`); 0: never.
    pub threshold: u64,
}

impl Default for AckConfig {
    fn default() -> Self {
        AckConfig {
            interval: DEFAULT_ACK_INTERVAL,
            threshold: DEFAULT_ACK_THRESHOLD,
        }
    }
}

/// JS `random2over1(n)`: uniform in `n..2n` (`n` when `n` is 0).
pub(super) fn random2over1(n: u64, rng: &mut Rng) -> u64 {
    n.saturating_add(rng.below(n))
}

/// JS `Math.floor(Math.random() * interval / 3)`: uniform in `0..ceil(interval / 3)`.
fn random_third(interval: u64, rng: &mut Rng) -> u64 {
    rng.below(interval.div_ceil(3))
}

/// JS `lib/timer.js` for the ack handler.
#[derive(Debug, Clone)]
pub(super) struct Timer {
    interval: u64,
    /// JS `_limit`: pushes stop this long after the first one.
    limit: u64,
    /// JS `_start`: when the first push since the last run happened.
    start: Option<u64>,
    /// When the timer fires (JS `_timer`).
    pub(super) fire_at: Option<u64>,
    /// JS `_asap`: brought forward; pushes are ignored until it fires.
    asap: bool,
    /// The handler is running (JS `_executing`): it waits until then (JS `asapStandalone`)
    /// before it decides.
    pub(super) executing: Option<u64>,
}

impl Timer {
    pub(super) fn new(interval: u64, rng: &mut Rng) -> Self {
        Timer {
            interval,
            limit: random2over1(MAX_WAIT, rng),
            start: None,
            fire_at: None,
            asap: false,
            executing: None,
        }
    }

    /// JS `bump()`: (re)arm for `random2over1(interval)` from now, unless running, brought
    /// forward, or pushed for longer than the limit already.
    pub(super) fn bump(&mut self, now: u64, rng: &mut Rng) {
        if self.executing.is_some() || self.asap {
            return;
        }
        match self.start {
            None => self.start = Some(now),
            Some(s) if now.saturating_sub(s) > self.limit => return,
            Some(_) => {}
        }
        self.fire_at = Some(now.saturating_add(random2over1(self.interval, rng)));
    }

    /// JS `asap()`: fire within a third of the interval.
    pub(super) fn asap(&mut self, now: u64, rng: &mut Rng) {
        if self.asap {
            return;
        }
        self.asap = true;
        self.fire_at = Some(now.saturating_add(random_third(self.interval, rng)));
    }

    /// JS `bau()` ("business as usual"): back from `asap` to the ordinary schedule.
    pub(super) fn bau(&mut self, now: u64, rng: &mut Rng) {
        if !self.asap {
            return;
        }
        self.asap = false;
        self.bump(now, rng);
    }

    /// The timer fired (JS `_execute` up to the handler's wait): the handler decides at the
    /// instant returned.
    pub(super) fn fire(&mut self, now: u64, rng: &mut Rng) -> u64 {
        self.asap = false;
        self.fire_at = None;
        let at = now.saturating_add(random_third(self.interval, rng));
        self.executing = Some(at);
        at
    }

    /// The handler ran (JS `_execute` after the handler): armed again from now.
    pub(super) fn done(&mut self, now: u64, rng: &mut Rng) {
        self.executing = None;
        self.start = None;
        self.bump(now, rng);
    }

    /// The next instant something is due.
    pub(super) fn deadline(&self) -> Option<u64> {
        self.executing.or(self.fire_at)
    }
}

/// The engine's ack state: settings, the timer, JS's update ticks, and the events recorded
/// between two polls (the engine hears of blocks and updates without a clock).
#[derive(Debug, Clone, Default)]
pub(super) struct AckState {
    pub(super) config: Option<(AckConfig, [u8; 32])>,
    pub(super) timer: Option<Timer>,
    /// JS `_ackTick`.
    pub(super) tick: u64,
    /// JS `_ackTickThreshold`.
    pub(super) tick_threshold: u64,
    /// A block of another writer came in since the last poll (JS `_onremotewriterchange`).
    pub(super) remote_changed: bool,
    /// Updates that added remote nodes since the last poll (JS `updating`).
    pub(super) updates: u64,
    /// The local writer wrote since the last poll.
    pub(super) local_wrote: bool,
    /// The linearizer restarted with new indexers since the last poll (JS
    /// `_updateLinearizer` draws a new threshold).
    pub(super) rebooted: bool,
    /// What the engine held and had indexed when the timer last ran, with values waiting: the
    /// same again at the next run means nothing moved for a whole interval.
    pub(super) last_run: Option<(u64, u64)>,
    /// The nodes indexed and the values waiting when the local writer last wrote a stall ack:
    /// it writes another only once one of them changed (a new value, or something indexed).
    pub(super) stalled: Option<(u64, u64)>,
    /// The driver reads a fast-forward point ([`super::Autobase::set_fast_forwarding`]).
    pub(super) fast_forwarding: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random2over1_stays_in_its_range() {
        let mut rng = Rng::from_seed([3; 32]);
        for _ in 0..1000 {
            let x = random2over1(10_000, &mut rng);
            assert!((10_000..20_000).contains(&x), "{x}");
            let t = random_third(10_000, &mut rng);
            assert!(t <= 3333, "{t}");
        }
        assert_eq!(random2over1(0, &mut rng), 0);
    }

    #[test]
    fn pushes_stop_after_the_limit() {
        let mut rng = Rng::from_seed([4; 32]);
        let mut t = Timer::new(10_000, &mut rng);
        assert!((MAX_WAIT..2 * MAX_WAIT).contains(&t.limit));
        t.bump(0, &mut rng);
        let first = t.fire_at.unwrap();
        assert!((10_000..20_000).contains(&first));
        // pushed back while within the limit
        t.bump(5_000, &mut rng);
        assert!(t.fire_at.unwrap() >= 15_000);
        // past the limit a push leaves the timer where it is
        let before = t.fire_at;
        t.bump(t.limit + 1, &mut rng);
        assert_eq!(t.fire_at, before);
        // running: pushes are ignored; once run it is armed from then
        let at = t.fire(20_000, &mut rng);
        assert!((20_000..20_000 + 3334).contains(&at));
        t.bump(20_001, &mut rng);
        assert_eq!(t.fire_at, None);
        t.done(at, &mut rng);
        assert!(t.fire_at.unwrap() >= at + 10_000);
    }

    #[test]
    fn asap_fires_within_a_third_and_ignores_pushes() {
        let mut rng = Rng::from_seed([5; 32]);
        let mut t = Timer::new(9_000, &mut rng);
        t.bump(0, &mut rng);
        t.asap(100, &mut rng);
        let at = t.fire_at.unwrap();
        assert!((100..3_100).contains(&at));
        t.bump(200, &mut rng);
        assert_eq!(t.fire_at, Some(at));
        t.bau(300, &mut rng);
        assert!(t.fire_at.unwrap() >= 9_300);
    }
}
