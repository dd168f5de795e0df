//! [`BlobCore`]: what blobs (and a drive) need of a core beyond what a bee needs.

use std::future::Future;

use crate::hyperbee::BeeCore;
use crate::hypercore::{Hypercore, HypercoreError, SeekResult, Session};
use crate::storage::{MaybeSend, Storage};

/// A core holding blobs: a [`BeeCore`] that also knows its byte length, seeks bytes, clears
/// local copies and downloads ranges. A hyperdrive's two cores (the db bee and the blobs) are
/// both `BlobCore`s of one type.
///
/// - [`Session`] (here): a local core; "downloading" a block it does not hold fails with
///   [`HypercoreError::BlockNotAvailable`].
/// - A replicated core (the transports' hub cores): missing blocks are requested from peers.
pub trait BlobCore: BeeCore {
    /// Bytes in the core (frozen for a snapshot handle).
    fn byte_length(&self) -> impl Future<Output = u64> + MaybeSend;

    /// Block and offset of user byte `bytes`, from the tree nodes held locally (JS
    /// `core.seek`); `None` when those nodes are not held here or `bytes` is past the end.
    fn seek(
        &self,
        bytes: u64,
    ) -> impl Future<Output = Result<Option<(u64, u64)>, HypercoreError>> + MaybeSend;

    /// Whether every block of `start..end` is held locally.
    fn has(&self, start: u64, end: u64) -> impl Future<Output = bool> + MaybeSend;

    /// Blocks `start..end` (`None` where not available), fetching from peers as
    /// [`BeeCore::get`] does. Loops over `get` by default; a local core reads them in one scan.
    fn get_range(
        &self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>, HypercoreError>> + MaybeSend {
        async move {
            let mut out = Vec::with_capacity((end.saturating_sub(start)).min(1 << 16) as usize);
            for i in start..end {
                out.push(self.get(i).await?);
            }
            Ok(out)
        }
    }

    /// Start fetching `start..end` from peers without waiting (JS `download({ start, end })`
    /// ahead of a read). Nothing to do for a local core.
    fn prefetch(&self, start: u64, end: u64) -> impl Future<Output = ()> + MaybeSend {
        let _ = (start, end);
        async {}
    }

    /// Make every block of `start..end` local, waiting for peers as needed; a block that
    /// cannot be had is [`HypercoreError::BlockNotAvailable`].
    fn download(
        &self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<(), HypercoreError>> + MaybeSend;

    /// Delete the local copies of `start..end` (JS `core.clear`); how many blocks were held.
    fn clear(
        &self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<u64, HypercoreError>> + MaybeSend;

    /// Truncate the writable core to `length` blocks on the next fork (JS `core.truncate`):
    /// the blocks past it are deleted and the core re-signed; a replicated core tells its
    /// peers. A snapshot handle or a core without its secret key is
    /// [`HypercoreError::NotWritable`], a length past the end [`HypercoreError::OutOfBounds`].
    fn truncate(&self, length: u64)
        -> impl Future<Output = Result<(), HypercoreError>> + MaybeSend;
}

/// Whether `core` holds every block of `start..end` ([`BlobCore::has`]).
pub(crate) fn holds<S: Storage>(core: &Hypercore<S>, start: u64, end: u64) -> bool {
    end <= core.length()
        && (start >= end || core.bitfield().first_unset(start).is_none_or(|u| u >= end))
}

/// [`BlobCore::seek`] on the tree nodes `core` holds.
pub(crate) async fn seek_held<S: Storage>(
    core: &Hypercore<S>,
    bytes: u64,
) -> Result<Option<(u64, u64)>, HypercoreError> {
    match core.seek(bytes).await {
        Ok(SeekResult::Found { index, offset }) => Ok(Some((index, offset))),
        Ok(_) | Err(HypercoreError::MissingNode(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`BlobCore::clear`] on `core`: how many blocks of `start..end` it held.
pub(crate) async fn clear_held<S: Storage>(
    core: &mut Hypercore<S>,
    start: u64,
    end: u64,
) -> Result<u64, HypercoreError> {
    let end = end.min(core.length());
    let held = (start..end).filter(|&i| core.has(i)).count() as u64;
    core.clear(start, end).await?;
    Ok(held)
}

impl<S: Storage + 'static> BlobCore for Session<S> {
    async fn byte_length(&self) -> u64 {
        Session::byte_length(self).await
    }

    async fn seek(&self, bytes: u64) -> Result<Option<(u64, u64)>, HypercoreError> {
        seek_held(&*self.lock().await, bytes).await
    }

    async fn has(&self, start: u64, end: u64) -> bool {
        holds(&*self.lock().await, start, end)
    }

    async fn get_range(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Option<Vec<u8>>>, HypercoreError> {
        Session::get_range(self, start, end).await
    }

    async fn download(&self, start: u64, end: u64) -> Result<(), HypercoreError> {
        let core = self.lock().await;
        match core.bitfield().first_unset(start) {
            Some(i) if i < end => Err(HypercoreError::BlockNotAvailable(i)),
            _ if end > core.length() => Err(HypercoreError::BlockNotAvailable(core.length())),
            _ => Ok(()),
        }
    }

    async fn clear(&self, start: u64, end: u64) -> Result<u64, HypercoreError> {
        clear_held(&mut *self.lock().await, start, end).await
    }

    async fn truncate(&self, length: u64) -> Result<(), HypercoreError> {
        Session::truncate(self, length, None).await
    }
}
