//! When to announce again.
//!
//! Records live 20 minutes on the nodes that store them (13-27 min with the cache rotation),
//! so an announcement must be renewed. hyperswarm's PeerDiscovery re-announces every
//! 10 minutes plus a random 0-2 minutes, and again at once after a network change; the first
//! announcement clears older ones (`clear: true`). [`RefreshSchedule`] is that rule; the
//! native driver's `Dht::announce_forever` runs it.

use core::time::Duration;

/// Base interval between announcements (hyperswarm `REFRESH_INTERVAL`).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Random extra delay added to each interval (hyperswarm `RANDOM_JITTER`).
pub const RANDOM_JITTER: Duration = Duration::from_secs(2 * 60);

/// The re-announce rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshSchedule {
    /// Base interval.
    pub interval: Duration,
    /// Upper bound of the random jitter.
    pub jitter: Duration,
}

impl Default for RefreshSchedule {
    fn default() -> Self {
        RefreshSchedule {
            interval: REFRESH_INTERVAL,
            jitter: RANDOM_JITTER,
        }
    }
}

impl RefreshSchedule {
    /// When to announce next after an announcement at `now`; `random` is uniform in `0..1`
    /// scaled to `u64::MAX` (any random `u64`).
    pub fn next(&self, now: Duration, random: u64) -> Duration {
        let jitter_ms = self.jitter.as_millis() as u64;
        let extra = if jitter_ms == 0 {
            0
        } else {
            random % jitter_ms
        };
        now + self.interval + Duration::from_millis(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_within_the_window() {
        let s = RefreshSchedule::default();
        let now = Duration::from_secs(100);
        for r in [0u64, 1, 12345, u64::MAX] {
            let n = s.next(now, r);
            assert!(n >= now + REFRESH_INTERVAL && n < now + REFRESH_INTERVAL + RANDOM_JITTER);
        }
    }
}
