//! Hyperbees on cores that are being replicated: [`HostCore`], a [`BeeCore`] over a core in a
//! [`SharedHost`]: a bare replication hub ([`HubCore`], on a [`crate::replicate::SharedHub`]) or a corestore
//! ([`StoreCore`], on a [`crate::replicate::SharedCorestore`]; the core must be open in it).
//! A read of a block the core does not hold asks the peers for that one block
//! (a bounded `download`) and waits for it, so a bee query downloads only the blocks it walks:
//! a `get` on a million-key bee fetches a few dozen blocks, not the core.
//!
//! ```no_run
//! # async fn demo(hub: hyperpunch::replicate::SharedHub<hyperpunch::FileStorage>, dk: [u8; 32]) -> Result<(), hyperpunch::core::hyperbee::BeeError> {
//! use hyperpunch::bee::HubCore;
//! use hyperpunch::core::hyperbee::{Hyperbee, Utf8};
//! // `hub` replicates the core with discovery key `dk` over some connection (`replicate`).
//! let db = Hyperbee::new(HubCore::new(hub, dk)).with_codecs(Utf8, Utf8);
//! let entry = db.get("some key").await?; // downloads the root-to-leaf path only
//! # Ok(()) }
//! ```
//!
//! Waiting is done here, in the transport: the bee in the core stays sans-IO and only awaits
//! the futures [`BeeCore`] returns.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::core::corestore::{CoreStorage, Corestore};
use crate::core::hyperbee::{BeeCore, CoreState};
use crate::core::hyperblobs::BlobCore;
use crate::core::hypercore::{HypercoreError, SeekResult, Snapshot};
use crate::core::replication::{ReplicationError, ReplicationHost, ReplicationHub, Replicator};
use crate::core::storage::{Storage, StorageError};
use crate::replicate::SharedHost;

/// A replication host whose cores a [`HostCore`] reads and appends to, by discovery key.
pub trait CoreHost: ReplicationHost + 'static {
    /// The storage of its cores.
    type Storage: Storage + 'static;
    /// The replicator of the open core `dk`.
    fn replicator(&self, dk: &[u8; 32]) -> Option<&Replicator<Self::Storage>>;
    /// The same, to change.
    fn replicator_mut(&mut self, dk: &[u8; 32]) -> Option<&mut Replicator<Self::Storage>>;
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
}

/// A core of a bare replication hub as a [`BeeCore`].
pub type HubCore<S> = HostCore<ReplicationHub<S>>;

/// A core open in a corestore as a [`BeeCore`] (hyperdrive's db).
pub type StoreCore<S> = HostCore<Corestore<S>>;

/// How long [`BeeCore::update`] waits for the peers to sync, by default.
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(10);

/// A core of a [`SharedHost`] as a [`BeeCore`]; see the module docs.
pub struct HostCore<H: CoreHost> {
    hub: SharedHost<H>,
    dk: [u8; 32],
    snapshot: Option<Snapshot>,
    block_timeout: Option<Duration>,
    update_timeout: Duration,
    /// The `(fork, length)` an update last gave up waiting for: not waited for again.
    gave_up: Arc<std::sync::Mutex<Option<(u64, u64)>>>,
}

impl<H: CoreHost> Clone for HostCore<H> {
    fn clone(&self) -> Self {
        HostCore {
            hub: self.hub.clone(),
            dk: self.dk,
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

impl<H: CoreHost> HostCore<H> {
    /// The core with discovery key `discovery_key` in `hub`. A missing block is waited for
    /// as long as it takes (see [`HostCore::with_block_timeout`]).
    pub fn new(hub: SharedHost<H>, discovery_key: [u8; 32]) -> Self {
        HostCore {
            hub,
            dk: discovery_key,
            snapshot: None,
            block_timeout: None,
            update_timeout: UPDATE_TIMEOUT,
            gave_up: Arc::default(),
        }
    }

    /// Give up on a missing block after `timeout` (the read then fails with
    /// [`crate::core::hyperbee::BeeError::BlockNotAvailable`]); `None` waits forever, as JS
    /// does by default.
    pub fn with_block_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.block_timeout = timeout;
        self
    }

    /// How long a read of the live bee waits for the peers to announce their length (JS
    /// `update()`, done before every read that is not a checkout).
    pub fn with_update_timeout(mut self, timeout: Duration) -> Self {
        self.update_timeout = timeout;
        self
    }

    /// The hub.
    pub fn hub(&self) -> &SharedHost<H> {
        &self.hub
    }

    /// How many blocks of the core are stored locally.
    pub async fn stored_blocks(&self) -> Result<u64, HypercoreError> {
        let g = self.hub.lock().await;
        let core = CoreHost::replicator(&*g, &self.dk)
            .ok_or_else(unknown_core)?
            .core();
        Ok((0..core.length()).filter(|&i| core.has(i)).count() as u64)
    }

    /// Whether a peer of the core has told us its length (an `update` that returns with none
    /// timed out: the length it leaves is ours, not the network's).
    pub async fn any_peer_synced(&self) -> Result<bool, HypercoreError> {
        let g = self.hub.lock().await;
        let rep = CoreHost::replicator(&*g, &self.dk).ok_or_else(unknown_core)?;
        let synced = rep
            .peers()
            .filter_map(|p| rep.peer_info(p))
            .any(|p| p.synced);
        Ok(synced)
    }

    fn rep<'a>(&self, g: &'a mut H) -> Result<&'a mut Replicator<H::Storage>, HypercoreError> {
        CoreHost::replicator_mut(&mut *g, &self.dk).ok_or_else(unknown_core)
    }
}

impl<H: CoreHost> BeeCore for HostCore<H> {
    async fn key(&self) -> [u8; 32] {
        let g = self.hub.lock().await;
        CoreHost::replicator(&*g, &self.dk)
            .map(|r| *r.core().key())
            .unwrap_or_default()
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
        CoreState::of(CoreHost::replicator(&*g, &self.dk).map(|r| r.core()))
    }

    async fn snapshot(&self) -> Self {
        let mut out = self.clone();
        if out.snapshot.is_none() {
            let mut g = self.hub.lock().await;
            if let Some(r) = CoreHost::replicator_mut(&mut *g, &self.dk) {
                out.snapshot = Some(r.core_mut().snapshot());
            }
        }
        out
    }

    async fn get(&self, index: u64) -> Result<Option<Vec<u8>>, HypercoreError> {
        let deadline = self.block_timeout.map(|t| Instant::now() + t);
        let mut requested = None;
        loop {
            let notified = self.hub.changed().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let now = self.hub.now();
                let mut g = self.hub.lock().await;
                let rep = self.rep(&mut g)?;
                let core = rep.core();
                if core.has(index) {
                    let out = match &self.snapshot {
                        Some(s) => core.get_at(s, index).await,
                        None => core.get(index).await,
                    };
                    return out;
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
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, notified).await.is_err() {
                        if let Some(id) = requested {
                            let mut g = self.hub.lock().await;
                            self.rep(&mut g)?.cancel_download(id);
                        }
                        return Ok(None);
                    }
                }
                None => notified.await,
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
        self.hub.changed().notify_waiters();
        Ok(out.length)
    }

    async fn wait_change(&self, length: u64, fork: u64) {
        loop {
            let notified = self.hub.changed().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let g = self.hub.lock().await;
                match CoreHost::replicator(&*g, &self.dk) {
                    Some(r) if r.core().length() == length && r.core().fork() == fork => {}
                    _ => return,
                }
            }
            notified.await;
        }
    }

    /// Wait (up to the update timeout) until the core has peers, all of them synced, and it is
    /// as long as the longest of them on its fork (the replicator requests upgrades eagerly). A
    /// length it once gave up waiting for is not waited for again (a peer that cannot prove
    /// it would stall every read). A writable core has nothing to wait for.
    async fn update(&self) -> Result<(), HypercoreError> {
        let deadline = Instant::now() + self.update_timeout;
        let mut target;
        loop {
            let notified = self.hub.changed().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let g = self.hub.lock().await;
                let rep = CoreHost::replicator(&*g, &self.dk).ok_or_else(unknown_core)?;
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
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                *self.gave_up.lock().unwrap_or_else(|e| e.into_inner()) = target;
                return Ok(());
            }
        }
    }
}

impl<H: CoreHost> HostCore<H> {
    /// Wait until every block of `start..end` is held (asking the peers for the missing
    /// ones); `Err(BlockNotAvailable)` for the first missing block once the block timeout
    /// passes without progress.
    async fn wait_range(&self, start: u64, end: u64) -> Result<(), HypercoreError> {
        let mut requested = None;
        let mut deadline = self.block_timeout.map(|t| Instant::now() + t);
        let mut missing_before = u64::MAX;
        loop {
            let notified = self.hub.changed().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
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
                deadline = self.block_timeout.map(|t| Instant::now() + t);
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, notified).await.is_err() {
                        if let Some(id) = requested {
                            let mut g = self.hub.lock().await;
                            self.rep(&mut g)?.cancel_download(id);
                        }
                        return Err(HypercoreError::BlockNotAvailable(first_missing));
                    }
                }
                None => notified.await,
            }
        }
    }
}

impl<H: CoreHost> BlobCore for HostCore<H> {
    async fn byte_length(&self) -> u64 {
        if let Some(s) = &self.snapshot {
            return s.byte_length();
        }
        let g = self.hub.lock().await;
        CoreHost::replicator(&*g, &self.dk).map_or(0, |r| r.core().byte_length())
    }

    async fn seek(&self, bytes: u64) -> Result<Option<(u64, u64)>, HypercoreError> {
        let g = self.hub.lock().await;
        let core = CoreHost::replicator(&*g, &self.dk)
            .ok_or_else(unknown_core)?
            .core();
        match core.seek(bytes).await {
            Ok(SeekResult::Found { index, offset }) => Ok(Some((index, offset))),
            Ok(_) | Err(HypercoreError::MissingNode(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn has(&self, start: u64, end: u64) -> bool {
        let g = self.hub.lock().await;
        let Some(r) = CoreHost::replicator(&*g, &self.dk) else {
            return false;
        };
        let core = r.core();
        end <= core.length()
            && (start >= end || core.bitfield().first_unset(start).is_none_or(|u| u >= end))
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
        let core = CoreHost::replicator(&*g, &self.dk)
            .ok_or_else(unknown_core)?
            .core();
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
            let core = rep.core();
            let held =
                end <= core.length() && core.bitfield().first_unset(start).is_none_or(|u| u >= end);
            if !held {
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
        let core = self.rep(&mut g)?.core_mut();
        let end = end.min(core.length());
        let held = (start..end).filter(|&i| core.has(i)).count() as u64;
        core.clear(start, end).await?;
        Ok(held)
    }
}
