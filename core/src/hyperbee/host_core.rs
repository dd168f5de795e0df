//! [`HostCore`]: a core of a replication host that a transport shares between its tasks (a
//! bare [`ReplicationHub`] or a [`Corestore`]), as a [`BeeCore`] and a [`BlobCore`]. Both
//! transports use it: natively over `hyperpunch::replicate::SharedHost` (`HubCore`,
//! `StoreCore`), in the browser over `hyperpunch_web::replicate::SharedHost` (the page's bee and
//! drive cores).
//!
//! A read of a block the core does not hold asks the peers for that one block (a bounded
//! download) and waits for it, so a bee query downloads only the blocks it walks: a `get` on a
//! million-key bee fetches a few dozen blocks, not the core.
//!
//! The logic is here; the effects come from the transport through [`SharedCoreHost`]: the
//! host's lock, its clock, a wake-up when the host changed, and a timer. Nothing here reads a
//! clock or touches I/O.

use std::future::{poll_fn, Future};
use std::ops::DerefMut;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use crate::corestore::{CoreStorage, Corestore};
use crate::hyperblobs::core_trait::{clear_held, holds, seek_held};
use crate::hyperblobs::BlobCore;
use crate::hypercore::{HypercoreError, Snapshot};
use crate::replication::{ReplicationError, ReplicationHost, ReplicationHub, Replicator};
use crate::storage::{MaybeSend, MaybeSync, Storage, StorageError};

use super::{BeeCore, CoreState};

/// A replication host whose cores a [`HostCore`] reads and appends to, by discovery key.
pub trait CoreHost: ReplicationHost + 'static {
    /// The storage of its cores.
    type Storage: Storage + 'static;
    /// The replicator of the open core `dk`.
    fn replicator(&self, dk: &[u8; 32]) -> Option<&Replicator<Self::Storage>>;
    /// The same, to change.
    fn replicator_mut(&mut self, dk: &[u8; 32]) -> Option<&mut Replicator<Self::Storage>>;
    /// The generation of the open core `dk` (see [`HostCore::with_generation`]): a number
    /// that changes when the core is deleted and made again under the same key. A host that
    /// never does that gives 0 for every open core.
    fn generation(&self, dk: &[u8; 32]) -> Option<u64> {
        self.replicator(dk).map(|_| 0)
    }
    /// Whether the core of generation `generation` was deleted (purged) from the host.
    fn was_purged(&self, _generation: u64) -> bool {
        false
    }
}

impl<S: Storage + 'static> CoreHost for ReplicationHub<S> {
    type Storage = S;
    fn replicator(&self, dk: &[u8; 32]) -> Option<&Replicator<S>> {
        ReplicationHub::replicator(self, dk)
    }
    fn replicator_mut(&mut self, dk: &[u8; 32]) -> Option<&mut Replicator<S>> {
        ReplicationHub::replicator_mut(self, dk)
    }
}

impl<S: Storage + Clone + 'static> CoreHost for Corestore<S> {
    type Storage = CoreStorage<S>;
    fn replicator(&self, dk: &[u8; 32]) -> Option<&Replicator<CoreStorage<S>>> {
        self.hub().replicator(dk)
    }
    fn replicator_mut(&mut self, dk: &[u8; 32]) -> Option<&mut Replicator<CoreStorage<S>>> {
        self.open_replicator_mut(dk)
    }
    fn generation(&self, dk: &[u8; 32]) -> Option<u64> {
        self.open_generation(dk)
    }
    fn was_purged(&self, generation: u64) -> bool {
        Corestore::was_purged(self, generation)
    }
}

/// A [`CoreHost`] shared by a transport's tasks: what a [`HostCore`] needs from the transport.
pub trait SharedCoreHost: Clone + MaybeSend + MaybeSync + 'static {
    /// The host.
    type Host: CoreHost;
    /// Exclusive access to the host; releasing it routes the host's frames and events.
    type Guard<'a>: DerefMut<Target = Self::Host> + MaybeSend
    where
        Self: 'a;
    /// A wake-up for the next change of the host (see [`SharedCoreHost::changed`]).
    type Changed<'a>: Future<Output = ()> + MaybeSend
    where
        Self: 'a;

    /// How long a read of the live core waits for the peers to announce their length (JS
    /// `update()`) unless [`HostCore::with_update_timeout`] says otherwise; `None`: it does not.
    const UPDATE_TIMEOUT: Option<Duration>;

    /// Exclusive access to the host.
    fn lock(&self) -> impl Future<Output = Self::Guard<'_>> + MaybeSend;

    /// Milliseconds on the host's clock: the `now` of replicator calls and of
    /// [`SharedCoreHost::sleep_until`].
    fn now(&self) -> u64;

    /// A future that resolves once the host changed (blocks arrived, the length changed, a
    /// peer came or went) after it was armed ([`SharedCoreHost::arm`]; a transport whose
    /// wake-ups cannot be missed between the check and the await need not do anything there).
    /// A waiter makes and arms it, checks the host under [`SharedCoreHost::lock`], releases
    /// the lock and awaits it.
    fn changed(&self) -> Self::Changed<'_>;

    /// Arm `changed` so that it sees every change from now on.
    fn arm(_changed: Pin<&mut Self::Changed<'_>>) {}

    /// Wake the tasks waiting on [`SharedCoreHost::changed`] (after a local append).
    fn notify_changed(&self);

    /// Resolves at `at` on the clock of [`SharedCoreHost::now`].
    fn sleep_until(&self, at: u64) -> impl Future<Output = ()> + MaybeSend;
}

/// A core of a [`SharedCoreHost`] as a [`BeeCore`] and [`BlobCore`]; see the module docs.
pub struct HostCore<T: SharedCoreHost> {
    hub: T,
    dk: [u8; 32],
    /// The generation of the core this reads ([`HostCore::with_generation`]); `None`: any.
    generation: Option<u64>,
    snapshot: Option<Snapshot>,
    block_timeout: Option<Duration>,
    update_timeout: Option<Duration>,
    /// The `(fork, length)` an update last gave up waiting for: not waited for again.
    gave_up: Arc<Mutex<Option<(u64, u64)>>>,
}

impl<T: SharedCoreHost> Clone for HostCore<T> {
    fn clone(&self) -> Self {
        HostCore {
            hub: self.hub.clone(),
            dk: self.dk,
            generation: self.generation,
            snapshot: self.snapshot.clone(),
            block_timeout: self.block_timeout,
            update_timeout: self.update_timeout,
            gave_up: self.gave_up.clone(),
        }
    }
}

fn unknown_core() -> HypercoreError {
    HypercoreError::Storage(StorageError::Unavailable(
        "the core is not in the replication hub".into(),
    ))
}

fn repl_err(e: ReplicationError) -> HypercoreError {
    match e {
        ReplicationError::Core(e) => e,
        e => HypercoreError::Storage(StorageError::Unavailable(format!("replication: {e}"))),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Await `changed`; `false` when `deadline` (on the host's clock) passes first.
async fn wait<T: SharedCoreHost>(
    hub: &T,
    mut changed: Pin<&mut T::Changed<'_>>,
    deadline: Option<u64>,
) -> bool {
    let Some(at) = deadline else {
        changed.await;
        return true;
    };
    let mut timer = pin!(hub.sleep_until(at));
    poll_fn(|cx| {
        if changed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        Poll::Pending
    })
    .await
}

impl<T: SharedCoreHost> HostCore<T> {
    /// The core with discovery key `discovery_key` in `hub`. A missing block is waited for
    /// as long as it takes (see [`HostCore::with_block_timeout`]).
    pub fn new(hub: T, discovery_key: [u8; 32]) -> Self {
        HostCore {
            hub,
            dk: discovery_key,
            generation: None,
            snapshot: None,
            block_timeout: None,
            update_timeout: T::UPDATE_TIMEOUT,
            gave_up: Arc::default(),
        }
    }

    /// Give up on a missing block after `timeout` (the read then fails with
    /// [`super::BeeError::BlockNotAvailable`]); `None` waits forever, as JS does by default.
    pub fn with_block_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.block_timeout = timeout;
        self
    }

    /// How long a read of the live bee waits for the peers to announce their length (JS
    /// `update()`, done before every read that is not a checkout).
    pub fn with_update_timeout(mut self, timeout: Duration) -> Self {
        self.update_timeout = Some(timeout);
        self
    }

    /// Read only the core of generation `generation` ([`CoreHost::generation`]; in a
    /// corestore [`CoreHandle::generation`](crate::corestore::CoreHandle::generation) of a
    /// session of it): once that core is purged, every read, append and truncation fails with
    /// [`HypercoreError::Purged`], also after a core with the same key is made again (without
    /// this, the reader would read and write the new core).
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = Some(generation);
        self
    }

    /// The hub.
    pub fn hub(&self) -> &T {
        &self.hub
    }

    /// The core's discovery key.
    pub fn discovery_key(&self) -> &[u8; 32] {
        &self.dk
    }

    /// How many blocks of the core are stored locally.
    pub async fn stored_blocks(&self) -> Result<u64, HypercoreError> {
        let g = self.hub.lock().await;
        let core = self.lookup(&g)?.core();
        Ok((0..core.length()).filter(|&i| core.has(i)).count() as u64)
    }

    /// Whether a peer of the core has told us its length (an `update` that returns with none
    /// timed out: the length it leaves is ours, not the network's).
    pub async fn any_peer_synced(&self) -> Result<bool, HypercoreError> {
        let g = self.hub.lock().await;
        let rep = self.lookup(&g)?;
        let synced = rep
            .peers()
            .filter_map(|p| rep.peer_info(p))
            .any(|p| p.synced);
        Ok(synced)
    }

    /// `Err(Purged)` when the core this reads is not (or no longer) the host's core `dk`.
    fn check_generation(&self, g: &T::Host) -> Result<(), HypercoreError> {
        match self.generation {
            Some(want) if g.was_purged(want) => Err(HypercoreError::Purged),
            Some(want) => match g.generation(&self.dk) {
                Some(have) if have != want => Err(HypercoreError::Purged),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// The replicator of the core this reads.
    fn lookup<'a>(
        &self,
        g: &'a T::Host,
    ) -> Result<&'a Replicator<<T::Host as CoreHost>::Storage>, HypercoreError> {
        self.check_generation(g)?;
        g.replicator(&self.dk).ok_or_else(unknown_core)
    }

    fn rep<'a>(
        &self,
        g: &'a mut T::Host,
    ) -> Result<&'a mut Replicator<<T::Host as CoreHost>::Storage>, HypercoreError> {
        self.check_generation(g)?;
        g.replicator_mut(&self.dk).ok_or_else(unknown_core)
    }

    /// The host's clock `timeout` from now.
    fn deadline(&self, timeout: Duration) -> u64 {
        self.hub.now().saturating_add(millis(timeout))
    }

    /// Wait until every block of `start..end` is held (asking the peers for the missing
    /// ones); `Err(BlockNotAvailable)` for the first missing block once the block timeout
    /// passes without progress.
    async fn wait_range(&self, start: u64, end: u64) -> Result<(), HypercoreError> {
        let mut requested = None;
        let mut deadline = self.block_timeout.map(|t| self.deadline(t));
        let mut missing_before = u64::MAX;
        loop {
            let mut changed = pin!(self.hub.changed());
            T::arm(changed.as_mut());
            let first_missing = {
                let now = self.hub.now();
                let mut g = self.hub.lock().await;
                let rep = self.rep(&mut g)?;
                let core = rep.core();
                let length = self.snapshot.as_ref().map_or(core.length(), |s| s.length());
                if end > length {
                    return Err(HypercoreError::OutOfBounds {
                        index: end - 1,
                        length,
                    });
                }
                match core.bitfield().first_unset(start) {
                    Some(u) if u < end => {
                        if requested.is_none() {
                            requested = Some(
                                rep.download(now, start, Some(end))
                                    .await
                                    .map_err(repl_err)?,
                            );
                        }
                        u
                    }
                    _ => return Ok(()),
                }
            };
            // Progress (a new first missing block) restarts the timeout.
            if first_missing != missing_before {
                missing_before = first_missing;
                deadline = self.block_timeout.map(|t| self.deadline(t));
            }
            if !wait(&self.hub, changed, deadline).await {
                if let Some(id) = requested {
                    let mut g = self.hub.lock().await;
                    self.rep(&mut g)?.cancel_download(id);
                }
                return Err(HypercoreError::BlockNotAvailable(first_missing));
            }
        }
    }
}

impl<T: SharedCoreHost> BeeCore for HostCore<T> {
    async fn key(&self) -> [u8; 32] {
        let g = self.hub.lock().await;
        self.lookup(&g).map(|r| *r.core().key()).unwrap_or_default()
    }

    async fn state(&self) -> CoreState {
        if let Some(s) = &self.snapshot {
            return CoreState {
                length: s.length(),
                fork: s.fork(),
                writable: false,
            };
        }
        let g = self.hub.lock().await;
        CoreState::of(self.lookup(&g).ok().map(|r| r.core()))
    }

    async fn snapshot(&self) -> Self {
        let mut out = self.clone();
        if out.snapshot.is_none() {
            let mut g = self.hub.lock().await;
            if let Ok(r) = self.rep(&mut g) {
                out.snapshot = Some(r.core_mut().snapshot());
            }
        }
        out
    }

    /// A block the core does not hold is downloaded from its peers first, waiting for as long
    /// as that takes (as JS does by default) or up to the block timeout (then `None`).
    async fn get(&self, index: u64) -> Result<Option<Vec<u8>>, HypercoreError> {
        let deadline = self.block_timeout.map(|t| self.deadline(t));
        let mut requested = None;
        loop {
            let mut changed = pin!(self.hub.changed());
            T::arm(changed.as_mut());
            {
                let now = self.hub.now();
                let mut g = self.hub.lock().await;
                let rep = self.rep(&mut g)?;
                let core = rep.core();
                if core.has(index) {
                    return match &self.snapshot {
                        Some(s) => core.get_at(s, index).await,
                        None => core.get(index).await,
                    };
                }
                let length = self.snapshot.as_ref().map_or(core.length(), |s| s.length());
                if index >= length {
                    return Err(HypercoreError::OutOfBounds { index, length });
                }
                if requested.is_none() {
                    requested = Some(
                        rep.download(now, index, Some(index + 1))
                            .await
                            .map_err(repl_err)?,
                    );
                }
            }
            if !wait(&self.hub, changed, deadline).await {
                if let Some(id) = requested {
                    let mut g = self.hub.lock().await;
                    self.rep(&mut g)?.cancel_download(id);
                }
                return Ok(None);
            }
        }
    }

    async fn append(&self, blocks: &[&[u8]]) -> Result<u64, HypercoreError> {
        let now = self.hub.now();
        let out = {
            let mut g = self.hub.lock().await;
            self.rep(&mut g)?
                .append(now, blocks)
                .await
                .map_err(repl_err)?
        };
        self.hub.notify_changed();
        Ok(out.length)
    }

    async fn check_live(&self) -> Result<(), HypercoreError> {
        if self.generation.is_none() {
            return Ok(());
        }
        let g = self.hub.lock().await;
        self.check_generation(&g)
    }

    async fn wait_change(&self, length: u64, fork: u64) {
        loop {
            let mut changed = pin!(self.hub.changed());
            T::arm(changed.as_mut());
            {
                let g = self.hub.lock().await;
                match self.lookup(&g) {
                    Ok(r) if r.core().length() == length && r.core().fork() == fork => {}
                    _ => return,
                }
            }
            changed.await;
        }
    }

    /// Wait (up to the update timeout; not at all without one) until the core has peers, all
    /// of them synced, and it is as long as the longest of them on its fork (the replicator
    /// requests upgrades eagerly). A length it once gave up waiting for is not waited for
    /// again (a peer that cannot prove it would stall every read). A writable core has nothing
    /// to wait for.
    async fn update(&self) -> Result<(), HypercoreError> {
        let Some(timeout) = self.update_timeout else {
            return Ok(());
        };
        let deadline = self.deadline(timeout);
        let mut target;
        loop {
            let mut changed = pin!(self.hub.changed());
            T::arm(changed.as_mut());
            {
                let g = self.hub.lock().await;
                let rep = self.lookup(&g)?;
                let core = rep.core();
                if core.writable() {
                    return Ok(());
                }
                let (fork, length) = (core.fork(), core.length());
                let infos: Vec<_> = rep.peers().filter_map(|p| rep.peer_info(p)).collect();
                let longest = infos
                    .iter()
                    .filter(|p| p.synced && p.remote_fork == fork)
                    .map(|p| p.remote_length)
                    .max()
                    .unwrap_or(0);
                let synced = !infos.is_empty() && infos.iter().all(|p| p.synced);
                if synced && length >= longest {
                    return Ok(());
                }
                let gave_up = *self.gave_up.lock().unwrap_or_else(|e| e.into_inner());
                if synced && gave_up == Some((fork, longest)) {
                    return Ok(());
                }
                target = Some((fork, longest));
            }
            if !wait(&self.hub, changed, Some(deadline)).await {
                *self.gave_up.lock().unwrap_or_else(|e| e.into_inner()) = target;
                return Ok(());
            }
        }
    }
}

impl<T: SharedCoreHost> BlobCore for HostCore<T> {
    async fn byte_length(&self) -> u64 {
        if let Some(s) = &self.snapshot {
            return s.byte_length();
        }
        let g = self.hub.lock().await;
        self.lookup(&g).map_or(0, |r| r.core().byte_length())
    }

    async fn seek(&self, bytes: u64) -> Result<Option<(u64, u64)>, HypercoreError> {
        let g = self.hub.lock().await;
        seek_held(self.lookup(&g)?.core(), bytes).await
    }

    async fn has(&self, start: u64, end: u64) -> bool {
        let g = self.hub.lock().await;
        self.lookup(&g).is_ok_and(|r| holds(r.core(), start, end))
    }

    async fn get_range(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Option<Vec<u8>>>, HypercoreError> {
        if !BlobCore::has(self, start, end).await {
            BlobCore::prefetch(self, start, end).await;
            let mut out = Vec::with_capacity((end - start).min(1 << 16) as usize);
            for i in start..end {
                out.push(BeeCore::get(self, i).await?);
            }
            return Ok(out);
        }
        let g = self.hub.lock().await;
        let core = self.lookup(&g)?.core();
        match &self.snapshot {
            Some(s) => {
                let mut out = Vec::with_capacity((end - start).min(1 << 16) as usize);
                for i in start..end {
                    out.push(core.get_at(s, i).await?);
                }
                Ok(out)
            }
            None => core.get_range(start, end).await,
        }
    }

    async fn prefetch(&self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let now = self.hub.now();
        let mut g = self.hub.lock().await;
        if let Ok(rep) = self.rep(&mut g) {
            if !holds(rep.core(), start, end) {
                let _ = rep.download(now, start, Some(end)).await;
            }
        }
    }

    async fn download(&self, start: u64, end: u64) -> Result<(), HypercoreError> {
        if start >= end {
            return Ok(());
        }
        self.wait_range(start, end).await
    }

    async fn clear(&self, start: u64, end: u64) -> Result<u64, HypercoreError> {
        let mut g = self.hub.lock().await;
        clear_held(self.rep(&mut g)?.core_mut(), start, end).await
    }

    /// Truncates through the replicator, which tells the peers (`range{drop}` and a sync).
    async fn truncate(&self, length: u64) -> Result<(), HypercoreError> {
        if self.snapshot.is_some() {
            return Err(HypercoreError::NotWritable);
        }
        let now = self.hub.now();
        {
            let mut g = self.hub.lock().await;
            self.rep(&mut g)?
                .truncate(now, length, None)
                .await
                .map_err(repl_err)?;
        }
        self.hub.notify_changed();
        Ok(())
    }
}
