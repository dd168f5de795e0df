//! The ack timer's side of [`Autobase`] (JS `_startAckTimer`, `_backgroundAck`/`ack(bg)`,
//! `_triggerAckAsap`, `_updateAckThreshold`, the end of `_bump`): when the local indexer acks,
//! decided from the time and randomness the driver passes in. The timer itself is
//! [`super::super::acks`].

use super::super::acks::{random2over1, AckConfig, Timer};
use super::super::messages::OplogMessage;
use super::{Apply, Autobase};
use crate::rng::Rng;

impl<A: Apply> Autobase<A> {
    /// Run JS's ack timer for the local writer `local` (JS `ackInterval` and `ackThreshold`,
    /// [`AckConfig::default`] being JS's defaults): from now on [`Autobase::poll_ack`] decides when
    /// `local` acks, and [`Autobase::ack_timeout`] says when to call it next. The timer runs while
    /// `local` is an indexer (of the indexed system, or of the linearizer) and stops when it is
    /// not one any more; it starts again if it becomes one again (JS starts its timer only when
    /// the local writer is opened, so a JS indexer demoted and added again has none until it
    /// restarts).
    pub fn set_ack_timer(&mut self, local: [u8; 32], config: AckConfig) {
        self.acks.config = Some((config, local));
        self.acks.tick_threshold = config.threshold;
        self.acks.timer = None;
    }

    /// Tell the ack timer whether the driver is reading a fast-forward point now (JS
    /// `isFastForwarding()`): meanwhile [`Autobase::poll_ack`] writes no ack but a pending
    /// indexer's first one (JS `ack()` returns early then, "wait for FF before pushing an ack":
    /// an ack of what the fast-forward is about to skip is wasted). The timer keeps running.
    /// The engine does not know of a read in progress by itself (the driver fetches the point).
    pub fn set_fast_forwarding(&mut self, on: bool) {
        self.acks.fast_forwarding = on;
    }

    /// When [`Autobase::poll_ack`] is due next (the same clock as its `now`), if the timer runs.
    /// Call it too after feeding blocks, updating or appending: those push the timer or bring it
    /// forward.
    pub fn ack_timeout(&self) -> Option<u64> {
        self.acks.timer.as_ref().and_then(Timer::deadline)
    }

    /// Whether `local` is an indexer added that has written nothing yet (JS
    /// `isLocalPendingIndexer`: it acks at once, so that its oplog starts).
    pub fn is_pending_indexer(&self, local: &[u8; 32]) -> bool {
        *local != self.bootstrap
            && self.system.pending_indexers.contains(local)
            && self.oplog_len(local) == 0
    }

    /// Whether the ack timer runs for `local`: an indexer of the indexed system (JS
    /// `isLocalIndexer`) or of the linearizer (the bootstrap before anything is indexed).
    fn acks_indexer(&self, local: &[u8; 32]) -> bool {
        self.indexed_system.indexers.iter().any(|c| c.key == *local) || self.is_indexer(local)
    }

    /// The blocks held of the writers the linearizer counts (active writers that are members,
    /// or the bootstrap while bootstrapping) and the nodes indexed: when they are the same at two
    /// runs of the timer while values wait unindexed, nothing moved for a whole interval. Blocks
    /// of writers that are never linearized (a hinted non-member's, a removed writer's) do not
    /// count: a trickle of them would keep a stall from ever being broken.
    fn ack_progress(&self) -> (u64, u64) {
        let held = self
            .active
            .iter()
            .map(|&w| &self.graph.writers[w])
            .filter(|ws| !ws.is_removed)
            .map(|ws| self.oplog_len(&ws.key))
            .sum::<u64>();
        (held, self.indexed_nodes)
    }

    /// The nodes indexed and the nodes with a value waiting unindexed: a stall ack is written at
    /// most once per indexer while these stay the same (it moves things on only if something
    /// changed since the last one; two indexers without a quorum would trade them forever).
    fn stall_epoch(&self) -> (u64, u64) {
        (
            self.indexed_nodes,
            self.lin.values_unindexed_count(&self.graph),
        )
    }

    /// A node with a value (a view value or a system change) waits to be indexed; unindexed
    /// acks alone do not count.
    fn values_wait(&self) -> bool {
        self.lin.values_unindexed(&self.graph)
    }

    /// JS `_updateAckThreshold`: back to the ordinary schedule, ticks from 0, a new threshold.
    fn new_ack_threshold(&mut self, now: u64, rng: &mut Rng) {
        let Some((config, _)) = self.acks.config else {
            return;
        };
        if config.threshold == 0 {
            return;
        }
        if let Some(t) = &mut self.acks.timer {
            t.bau(now, rng);
        }
        self.acks.tick = 0;
        let n = self.lin.indexers().len() as u64;
        self.acks.tick_threshold = random2over1(n.saturating_mul(config.threshold), rng);
    }

    /// JS `_triggerAckAsap`: the local writer saw the threshold's number of updates without
    /// writing, no ack is running, and every indexer's blocks held are linearized.
    fn ack_asap_due(&self) -> bool {
        let Some(t) = &self.acks.timer else {
            return false;
        };
        if self.acks.tick_threshold == 0
            || t.executing.is_some()
            || self.acks.tick < self.acks.tick_threshold
        {
            return false;
        }
        self.lin.indexers().iter().all(|&w| {
            let ws = &self.graph.writers[w];
            self.oplog_len(&ws.key) <= ws.length
        })
    }

    /// The ack timer (JS `_ackTimer`, `_backgroundAck`, and the end of `_bump`), at `now`
    /// (milliseconds, any monotonic clock; the same as [`Autobase::ack_timeout`]'s) with the
    /// randomness of `rng` (the jitter of every interval and wait: the same seed and the same
    /// inputs give the same schedule). Call it after feeding blocks, updating or appending, and
    /// at [`Autobase::ack_timeout`]. Returns the oplog messages of an ack to append to the local
    /// core when one is due now:
    ///
    /// * a pending indexer that has written nothing acks at once (JS `ack()` from `_bump`);
    /// * when the timer runs out (`interval` to `2 × interval` after it was last armed, pushed
    ///   back by every block of another member, not a hinted non-member's, but not past the
    ///   limit, or brought forward after `random2over1(indexers × threshold)` updates without
    ///   a local write), it waits up to a
    ///   third of the interval more and then an indexer acks if `shouldAck` asks for one
    ///   ([`Autobase::ack`]), or if `signed_behind` (the driver's indexer keeps the signed cores
    ///   and its last checkpoint signs less than is indexed now while its next entry would
    ///   carry new signatures: JS `shouldWrite`, which makes the ack carry the new checkpoint;
    ///   a lag that no entry fixes must pass `false`, or every run acks), or, when values waited unindexed and nothing came in
    ///   nor was indexed since the timer last ran, with the ack that breaks a stall of crossed
    ///   acks ([`Autobase::stall_ack`]; a deviation: JS waits for a new value there), at most
    ///   once until a new value comes or something is indexed (two indexers without a quorum,
    ///   whose stall acks are each other's new head, would otherwise trade them forever). The
    ///   timer is armed again.
    ///
    /// While the driver reads a fast-forward point ([`Autobase::set_fast_forwarding`]) the
    /// timer runs but writes nothing (a pending indexer still acks at once).
    ///
    /// `None` when nothing is to be written; an idle base writes nothing, and a writer that is
    /// not an indexer never acks. Without [`Autobase::set_ack_timer`], always `None`.
    pub fn poll_ack(
        &mut self,
        now: u64,
        rng: &mut Rng,
        signed_behind: bool,
    ) -> Option<Vec<OplogMessage>> {
        let (config, local) = self.acks.config?;
        let remote_changed = std::mem::take(&mut self.acks.remote_changed);
        let updates = std::mem::take(&mut self.acks.updates);
        let local_wrote = std::mem::take(&mut self.acks.local_wrote);
        if std::mem::take(&mut self.acks.rebooted) {
            self.new_ack_threshold(now, rng);
        }
        let indexer = self.acks_indexer(&local);
        if config.interval > 0 && indexer && self.acks.timer.is_none() {
            // JS `_startAckTimer` (on open, a backlog of unindexed system blocks starts the
            // ticks at the threshold)
            let backlog = self
                .system
                .length
                .saturating_sub(self.indexed_system.length);
            if backlog > self.acks.tick_threshold {
                self.acks.tick = self.acks.tick_threshold;
            }
            let mut t = Timer::new(config.interval, rng);
            t.bump(now, rng);
            self.acks.timer = Some(t);
            self.acks.last_run = None;
        } else if !indexer && self.acks.timer.is_some() {
            // JS `_clearLocalIndexer`
            self.acks.timer = None;
        }
        if remote_changed {
            if let Some(t) = &mut self.acks.timer {
                t.bump(now, rng);
            }
        }
        if self.is_pending_indexer(&local) && self.is_writable(&local) {
            let msgs = self.force_ack(&local);
            if msgs.is_some() {
                self.new_ack_threshold(now, rng);
                if let Some(t) = &mut self.acks.timer {
                    t.bump(now, rng);
                }
                return msgs;
            }
        } else if self.ack_asap_due() {
            if let Some(t) = &mut self.acks.timer {
                t.asap(now, rng);
            }
        }
        if updates > 0 {
            if local_wrote {
                // JS `_resetAckTick`
                self.acks.tick = 0;
                if let Some(t) = &mut self.acks.timer {
                    t.bau(now, rng);
                }
            } else {
                self.acks.tick = self.acks.tick.saturating_add(updates);
            }
        }
        let t = self.acks.timer.as_mut()?;
        if t.executing.is_none() && t.fire_at.is_some_and(|at| at <= now) {
            t.fire(now, rng);
        }
        if t.executing.is_none_or(|at| at > now) {
            return None;
        }
        // JS `ack(true)` after its wait; none while a fast-forward is read (JS
        // `isFastForwarding()`), and no stall counted across it
        if self.acks.fast_forwarding {
            self.acks.last_run = None;
            self.new_ack_threshold(now, rng);
            if let Some(t) = &mut self.acks.timer {
                t.done(now, rng);
            }
            return None;
        }
        let msgs = if signed_behind && indexer {
            self.force_ack(&local)
        } else {
            self.ack(&local)
        };
        let progress = self.ack_progress();
        let msgs = match msgs {
            Some(m) => Some(m),
            None if self.values_wait()
                && self.acks.last_run == Some(progress)
                && self.acks.stalled != Some(self.stall_epoch()) =>
            {
                let m = self.stall_ack(&local);
                if m.is_some() {
                    // the epoch before this ack (the ack itself carries no value)
                    self.acks.stalled = Some(self.stall_epoch());
                }
                m
            }
            None => None,
        };
        self.acks.last_run = Some(self.ack_progress());
        self.new_ack_threshold(now, rng);
        if let Some(t) = &mut self.acks.timer {
            t.done(now, rng);
        }
        msgs
    }
}
