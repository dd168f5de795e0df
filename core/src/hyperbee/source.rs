//! [`BeeCore`]: the hypercore a bee runs on, as the bee sees it.
//!
//! A bee only needs a few things from its core: its length and fork, a frozen view of it
//! (snapshots, for consistent reads), one block at a time, appends, and a way to wait for it to
//! change (watchers, live history). The trait keeps the bee independent of where blocks come
//! from:
//!
//! - [`Session`] (this module): a local core. A block that is not stored is
//!   [`super::BeeError::BlockNotAvailable`].
//! - [`super::HostCore`]: a core that is being replicated (the transports' "hub core", e.g.
//!   `hyperpunch::bee::HubCore` natively): a missing block is requested from the peers and
//!   `get` waits for it, so a query downloads only the blocks it reads (sparse reading).
//!
//! Implementations do the waiting with what the transport hands them (a lock, a wake-up, a
//! timer); the bee stays sans-IO and only awaits what it is handed.

use std::future::Future;

use crate::hypercore::{Hypercore, HypercoreError, Session};
use crate::storage::{MaybeSend, MaybeSync, Storage};

/// Blocks a local read of one block returns around it (a storage record holds up to 64).
const AROUND: u64 = 64;

/// Length, fork and writability of a core at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreState {
    /// Number of blocks.
    pub length: u64,
    /// Fork id (increases with every truncation).
    pub fork: u64,
    /// Whether this handle can append.
    pub writable: bool,
}

impl CoreState {
    /// The state of `core` now; no core (not opened yet) is empty and not writable.
    pub fn of<S: Storage>(core: Option<&Hypercore<S>>) -> CoreState {
        core.map_or(
            CoreState {
                length: 0,
                fork: 0,
                writable: false,
            },
            |c| CoreState {
                length: c.length(),
                fork: c.fork(),
                writable: c.writable(),
            },
        )
    }
}

/// The hypercore a [`super::Hyperbee`] runs on. See the module docs.
pub trait BeeCore: Clone + MaybeSend + MaybeSync + 'static {
    /// The core's key.
    fn key(&self) -> impl Future<Output = [u8; 32]> + MaybeSend;

    /// Length, fork and writability now (frozen for a snapshot handle).
    fn state(&self) -> impl Future<Output = CoreState> + MaybeSend;

    /// A read-only handle frozen at the current length and fork (JS `core.snapshot()`): reads
    /// through it fail with [`HypercoreError::SnapshotNotAvailable`] once a truncation removed
    /// the block read.
    fn snapshot(&self) -> impl Future<Output = Self> + MaybeSend;

    /// Block `index`, or `None` when it is not available: not stored locally and (for a
    /// replicated core) not obtainable from any peer. Past the length:
    /// [`HypercoreError::OutOfBounds`].
    fn get(
        &self,
        index: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, HypercoreError>> + MaybeSend;

    /// Block `index` and, where that costs no more, stored blocks near it below `end`: the
    /// bee caches them all (a full scan then reads each storage record once). `get` alone by
    /// default; a local core returns the blocks of the 64-block window holding `index` from
    /// one storage scan; a replicated core must not download neighbours it was not asked for.
    fn get_around(
        &self,
        index: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<(u64, Vec<u8>)>, HypercoreError>> + MaybeSend {
        let _ = end;
        async move {
            Ok(self
                .get(index)
                .await?
                .map(|b| vec![(index, b)])
                .unwrap_or_default())
        }
    }

    /// Append `blocks` in one atomic write; the new length.
    fn append(
        &self,
        blocks: &[&[u8]],
    ) -> impl Future<Output = Result<u64, HypercoreError>> + MaybeSend;

    /// Resolve once the live core's length or fork differs from `length` / `fork`.
    fn wait_change(&self, length: u64, fork: u64) -> impl Future<Output = ()> + MaybeSend;

    /// Catch up with the peers' latest length (JS `core.update()`); local cores have nothing to
    /// do.
    fn update(&self) -> impl Future<Output = Result<(), HypercoreError>> + MaybeSend {
        async { Ok(()) }
    }

    /// `Err` when the core can no longer be read at all (a host core whose core was purged:
    /// [`HypercoreError::Purged`]), checked by reads that may be answered from the bee's block
    /// cache alone (a checkout's). Most cores have nothing to check.
    fn check_live(&self) -> impl Future<Output = Result<(), HypercoreError>> + MaybeSend {
        async { Ok(()) }
    }
}

impl<S: Storage + 'static> BeeCore for Session<S> {
    async fn key(&self) -> [u8; 32] {
        Session::key(self).await
    }

    async fn state(&self) -> CoreState {
        if self.is_snapshot() {
            // Frozen values: no lock needed.
            return CoreState {
                length: self.length().await,
                fork: self.fork().await,
                writable: false,
            };
        }
        let core = self.lock().await;
        CoreState {
            length: core.length(),
            fork: core.fork(),
            writable: core.writable(),
        }
    }

    async fn snapshot(&self) -> Self {
        Session::snapshot(self).await
    }

    async fn get(&self, index: u64) -> Result<Option<Vec<u8>>, HypercoreError> {
        Session::get(self, index).await
    }

    async fn get_around(
        &self,
        index: u64,
        end: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, HypercoreError> {
        let start = index - index % AROUND;
        let end = end.min(start + AROUND).max(index + 1);
        match self.get_range(start, end).await {
            Ok(blocks) => Ok((start..end)
                .zip(blocks)
                .filter_map(|(i, b)| b.map(|b| (i, b)))
                .collect()),
            // A window past what a snapshot still has (a truncation): the block alone.
            Err(
                HypercoreError::SnapshotNotAvailable { .. } | HypercoreError::OutOfBounds { .. },
            ) => Ok(Session::get(self, index)
                .await?
                .map(|b| vec![(index, b)])
                .unwrap_or_default()),
            Err(e) => Err(e),
        }
    }

    async fn append(&self, blocks: &[&[u8]]) -> Result<u64, HypercoreError> {
        Ok(Session::append(self, blocks).await?.length)
    }

    async fn wait_change(&self, length: u64, fork: u64) {
        Session::wait_change(self, length, fork).await
    }
}
