//! What every driver of the engine does the same way with a member's oplog cores in its
//! [`Corestore`] (the native chat, the page's `Autobase`): keep open the cores of the writers
//! the engine wants and close the others ([`OplogCores`]), feed the engine the blocks the store
//! holds ([`feed_oplogs`]) and decide which ranges to ask peers for ([`Fetches`]). The driver
//! gives the options each core opens with and calls [`OplogCores::sync`].
//!
//! The cores are bounded as the engine's wants are: a peer's wakeup hints make the engine want
//! up to [`MAX_HINTED`](super::MAX_HINTED) writers it may never apply (made-up keys), and each
//! open core writes a core record to the store and opens a channel on every connection, so
//! [`OplogCores`] opens at most [`MAX_BOUNDED_CORES`] cores of writers wanted only up to an end
//! (the least recently wanted one not wanted now makes room), closes the core of a writer the
//! engine no longer wants once nothing asked of it is on the way, and purges from the store a
//! core it closes whose writer left nothing kept (no member record, no block the engine
//! holds). JS autobase opens a core for every hinted writer and closes it once it is
//! "flushed" (`_gcWriters`); it bounds neither, and keeps a made-up writer's core open as long
//! as its hinted length is not reached, that is for good.

use std::collections::{HashMap, HashSet};

use super::{Apply, Autobase, WantedWriter};
use crate::corestore::{CoreHandle, Corestore, CorestoreError, GetOptions};
use crate::storage::Storage;

/// The most cores [`OplogCores`] keeps open for writers the engine wants only up to an end (a
/// non-member hinted by a peer, a writer a pending node depends on) or no longer wants while a
/// download asked of them is on the way. A peer can make the engine want up to
/// [`MAX_HINTED`](super::MAX_HINTED) made-up writers at a time; under such a flood a genuine
/// optimistic writer's core may wait for a later hint of it.
pub const MAX_BOUNDED_CORES: usize = 256;

/// Feed `engine` every block of `cores` (writer key, open core) that the store holds past what
/// the engine has, each writer's in order, until a block the store lacks. A writer frozen at a
/// bad block is skipped (the engine ignores its blocks: its length would never move), and a
/// block the engine takes without its length moving ends that writer's feeding. Whether any
/// block was fed.
pub async fn feed_oplogs<S: Storage + Clone, A: Apply>(
    engine: &mut Autobase<A>,
    store: &Corestore<S>,
    cores: &[([u8; 32], CoreHandle)],
) -> Result<bool, CorestoreError> {
    let mut fed = false;
    for (k, h) in cores {
        if engine.frozen_at(k).is_some() {
            continue;
        }
        let core = store.core(h)?;
        let have = core.length();
        loop {
            let seq = engine.oplog_len(k);
            if seq >= have || !core.has(seq) {
                break;
            }
            let Ok(Some(block)) = core.get(seq).await else {
                break;
            };
            if engine.handle_block(k, seq, &block).is_err() {
                break; // a bad block freezes that writer; the base goes on
            }
            if engine.oplog_len(k) == seq {
                break; // not taken (a writer frozen meanwhile): the loop would never end
            }
            fed = true;
        }
    }
    Ok(fed)
}

/// The downloads asked of peers for each writer the engine wants: from the block it needs to
/// the end it gives (`None`: following the core), asked again only when that end moves on.
#[derive(Debug, Default)]
pub struct Fetches {
    asked: HashMap<[u8; 32], Option<u64>>,
}

impl Fetches {
    /// The writers of `wanted` (but `local`) whose download is to be asked now; each is
    /// recorded as asked.
    pub fn due(&mut self, wanted: &[WantedWriter], local: &[u8; 32]) -> Vec<WantedWriter> {
        let mut due = Vec::new();
        for w in wanted {
            if w.key == *local {
                continue;
            }
            match self.asked.get(&w.key) {
                Some(None) => continue,
                Some(Some(end)) if w.until.is_some_and(|u| u <= *end) => continue,
                _ => {}
            }
            self.asked.insert(w.key, w.until);
            due.push(*w);
        }
        due
    }

    /// What was asked of `key`: `None` nothing, `Some(None)` every block, `Some(Some(end))` up
    /// to `end`.
    pub fn asked(&self, key: &[u8; 32]) -> Option<Option<u64>> {
        self.asked.get(key).copied()
    }

    /// Forget what was asked of `key` (its core was closed: its downloads ended with it).
    pub fn forget(&mut self, key: &[u8; 32]) {
        self.asked.remove(key);
    }

    /// The writers something was asked of.
    pub fn len(&self) -> usize {
        self.asked.len()
    }

    /// Whether nothing was asked.
    pub fn is_empty(&self) -> bool {
        self.asked.is_empty()
    }

    /// Forget what was asked (the cores were reopened: ask again).
    pub fn clear(&mut self) {
        self.asked.clear();
    }
}

/// An open oplog core that is not pinned.
#[derive(Debug)]
struct Use {
    /// The [`OplogCores::sync`] round that last found it wanted.
    round: u64,
    /// Whether that want had no end (a member: not counted in [`MAX_BOUNDED_CORES`]).
    open_ended: bool,
    /// Whether this driver created it in the store (so nothing of it predates this run).
    created: bool,
}

/// The oplog cores a driver keeps open in its store for the engine: the pinned ones (the local
/// writer's and the bootstrap's, never closed) and those of the writers the engine wants,
/// bounded (see the [module docs](self)), with the downloads asked of them ([`Fetches`]).
#[derive(Debug)]
pub struct OplogCores {
    local: [u8; 32],
    cores: Vec<([u8; 32], CoreHandle)>,
    pinned: HashSet<[u8; 32]>,
    uses: HashMap<[u8; 32], Use>,
    fetches: Fetches,
    round: u64,
}

/// What one [`OplogCores::sync`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Cores opened (their blocks the store holds are fed next).
    pub opened: usize,
    /// Cores closed.
    pub closed: usize,
    /// Of those, the ones purged from the store (nothing of their writer kept).
    pub purged: usize,
    /// Wanted writers not opened this time: [`MAX_BOUNDED_CORES`] are open and wanted.
    pub deferred: usize,
}

impl OplogCores {
    /// Start from the cores that stay open for good: the local writer's (`local`, whose
    /// blocks are never downloaded) and the bootstrap's, among `pinned`.
    pub fn new(local: [u8; 32], pinned: Vec<([u8; 32], CoreHandle)>) -> Self {
        OplogCores {
            local,
            pinned: pinned.iter().map(|(k, _)| *k).collect(),
            cores: pinned,
            uses: HashMap::new(),
            fetches: Fetches::default(),
            round: 0,
        }
    }

    /// The open cores (writer key, handle), the pinned ones first.
    pub fn cores(&self) -> &[([u8; 32], CoreHandle)] {
        &self.cores
    }

    /// The open core of `key`.
    pub fn get(&self, key: &[u8; 32]) -> Option<&CoreHandle> {
        self.cores.iter().find(|(k, _)| k == key).map(|(_, h)| h)
    }

    /// The downloads asked.
    pub fn fetches(&self) -> &Fetches {
        &self.fetches
    }

    /// Forget the downloads asked (after a fast-forward every oplog is wanted again from the
    /// point on): the next [`OplogCores::sync`] asks them again.
    pub fn clear_fetches(&mut self) {
        self.fetches.clear();
    }

    /// [`feed_oplogs`] of the open cores.
    pub async fn feed<S: Storage + Clone, A: Apply>(
        &self,
        engine: &mut Autobase<A>,
        store: &Corestore<S>,
    ) -> Result<bool, CorestoreError> {
        feed_oplogs(engine, store, &self.cores).await
    }

    /// After the engine's update: close the cores of the writers it no longer wants once
    /// nothing asked of them is on the way (purging a core from the store when nothing of its
    /// writer is kept), open the cores of the writers it wants (each with `opts(key)`; at most
    /// [`MAX_BOUNDED_CORES`] of writers wanted up to an end, the least recently wanted one not
    /// wanted now closed to make room), and, when `fetch`, ask peers for the ranges due
    /// ([`Fetches::due`]) at `now`.
    pub async fn sync<S: Storage + Clone, A: Apply>(
        &mut self,
        engine: &Autobase<A>,
        store: &mut Corestore<S>,
        now: u64,
        fetch: bool,
        opts: impl Fn(&[u8; 32]) -> GetOptions,
    ) -> Result<SyncOutcome, CorestoreError> {
        let mut out = SyncOutcome::default();
        self.round += 1;
        let round = self.round;
        let wanted = engine.wanted_ranges();
        let wanted_keys: HashSet<[u8; 32]> = wanted.iter().map(|w| w.key).collect();
        for w in &wanted {
            if let Some(u) = self.uses.get_mut(&w.key) {
                u.round = round;
                u.open_ended = w.until.is_none();
            }
        }
        // the writers no longer wanted whose downloads are done (or never asked)
        let done: Vec<[u8; 32]> = self
            .cores
            .iter()
            .filter(|(k, h)| {
                !self.pinned.contains(k)
                    && !wanted_keys.contains(k)
                    && !self.on_the_way(engine, store, k, h)
            })
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            self.close(engine, store, &k, &mut out).await?;
        }
        let mut bounded = self
            .uses
            .values()
            .filter(|u| u.round != round || !u.open_ended)
            .count();
        for w in &wanted {
            if self.pinned.contains(&w.key) || self.uses.contains_key(&w.key) {
                continue;
            }
            if w.until.is_some() && bounded >= MAX_BOUNDED_CORES {
                let lru = self
                    .uses
                    .iter()
                    .filter(|(_, u)| u.round != round)
                    .min_by_key(|(k, u)| (u.round, **k))
                    .map(|(k, _)| *k);
                let Some(k) = lru else {
                    out.deferred += 1;
                    continue;
                };
                self.close(engine, store, &k, &mut out).await?;
                bounded -= 1;
            }
            let created = !store
                .has_core(&crate::crypto::discovery_key(&w.key))
                .await?;
            let h = store.get(opts(&w.key)).await?;
            self.cores.push((w.key, h));
            self.uses.insert(
                w.key,
                Use {
                    round,
                    open_ended: w.until.is_none(),
                    created,
                },
            );
            if w.until.is_some() {
                bounded += 1;
            }
            out.opened += 1;
        }
        if fetch {
            // each wanted writer whose core is open, from the block the engine needs up to the
            // end it gives (a non-member: its hinted node); again when that end moves on
            let open: Vec<WantedWriter> = wanted
                .into_iter()
                .filter(|w| self.pinned.contains(&w.key) || self.uses.contains_key(&w.key))
                .collect();
            for w in self.fetches.due(&open, &self.local) {
                let Some((_, h)) = self.cores.iter().find(|(k, _)| *k == w.key) else {
                    continue;
                };
                if let Ok(r) = store.replicator_mut(h) {
                    let _ = r.download(now, w.from, w.until).await;
                }
            }
        }
        Ok(out)
    }

    /// Close every core (the driver closes): the pinned ones too. A core whose writer left
    /// nothing kept is purged from the store as [`OplogCores::sync`] purges it.
    pub async fn close_all<S: Storage + Clone, A: Apply>(
        &mut self,
        engine: &Autobase<A>,
        store: &mut Corestore<S>,
    ) -> Result<SyncOutcome, CorestoreError> {
        let mut out = SyncOutcome::default();
        let keys: Vec<[u8; 32]> = self
            .cores
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !self.pinned.contains(k))
            .collect();
        for k in keys {
            self.close(engine, store, &k, &mut out).await?;
        }
        for (_, h) in std::mem::take(&mut self.cores) {
            store.close_core(h)?;
            out.closed += 1;
        }
        self.fetches.clear();
        Ok(out)
    }

    /// Whether a download asked of `key`'s core may still bring a block the engine takes: it
    /// asked up to an end the engine has not reached, the store lacks the next block (when it
    /// holds it, the engine refused it: a frozen writer, or too many non-members' blocks) and
    /// the writer is not frozen. A download of every block (a member's) ends when the engine
    /// no longer wants the writer.
    fn on_the_way<S: Storage + Clone, A: Apply>(
        &self,
        engine: &Autobase<A>,
        store: &Corestore<S>,
        key: &[u8; 32],
        h: &CoreHandle,
    ) -> bool {
        let Some(Some(end)) = self.fetches.asked(key) else {
            return false;
        };
        let next = engine.oplog_len(key);
        next < end && engine.frozen_at(key).is_none() && store.core(h).is_ok_and(|c| !c.has(next))
    }

    /// Close `key`'s core (not pinned) and forget its downloads; purge it from the store when
    /// no other session has it open, the engine keeps nothing of its writer (no member record
    /// at the tip or indexed, not the bootstrap, no block held) and this driver created it. A
    /// core that was in the store before is never purged, empty or not: a peer may hint any
    /// key as a writer, and the store is shared (a user's core made with its own key pair and
    /// not written yet, a drive's empty blobs core).
    async fn close<S: Storage + Clone, A: Apply>(
        &mut self,
        engine: &Autobase<A>,
        store: &mut Corestore<S>,
        key: &[u8; 32],
        out: &mut SyncOutcome,
    ) -> Result<(), CorestoreError> {
        let Some(i) = self.cores.iter().position(|(k, _)| k == key) else {
            return Ok(());
        };
        let (_, h) = self.cores.remove(i);
        let created = self.uses.remove(key).is_some_and(|u| u.created);
        self.fetches.forget(key);
        let dk = *h.discovery_key();
        store.close_core(h)?;
        out.closed += 1;
        let kept = *key == *engine.bootstrap()
            || engine.system().get(key).is_some()
            || engine.indexed_system().get(key).is_some()
            || engine.oplog_len(key) > 0;
        if !kept && created && !store.is_open(&dk) && store.purge(&dk).await? {
            out.purged += 1;
        }
        Ok(())
    }
}
