//! hyperblobs 2.12.1: blobs (files) stored as runs of blocks in a hypercore, addressed by a
//! [`BlobId`], exactly as JS lays them out (hyperdrive keeps its file contents here).
//!
//! A blob is the blocks `block_offset..block_offset + block_length` of the core, whose bytes
//! start at byte `byte_offset` of the core and are `byte_length` long. [`Hyperblobs::put`] cuts
//! the bytes into 64 KiB blocks ([`DEFAULT_BLOCK_SIZE`]); a [`BlobWriter`] appends each chunk
//! written to it as one block (JS `createWriteStream`), sixteen blocks per append. An empty blob
//! has no blocks. With a *block map* (JS `blockMap: true`, or `dedup`), the data blocks are
//! followed by map blocks listing `(index, byteLength)` of each data block, and the id points at
//! the map blocks (`block_map: true`); a deduplicating writer reuses blocks of an earlier blob
//! whose hash matches instead of appending them again ([`block_map`]).
//!
//! A [`Hyperblobs`] runs on any [`BlobCore`]: a local [`Session`](crate::hypercore::Session), or (in the transports) a
//! replicated core that downloads what a read needs. Reads go through a [`BlobReader`] (JS
//! `createReadStream`, with byte ranges), which finds a range's first block with the core's
//! merkle tree ([`BlobCore::seek`]) or, where the tree nodes are not held locally, by walking
//! the blob's blocks.
//!
//! ```
//! # use hyperpunch_core::{crypto::KeyPair, storage::MemoryStorage};
//! # use hyperpunch_core::hypercore::{CreateOptions, Hypercore};
//! use hyperpunch_core::hyperblobs::{Hyperblobs, ReadRange};
//! # futures_executor::block_on(async {
//! # let core = Hypercore::create(MemoryStorage::new(), CreateOptions {
//! #     key_pair: Some(KeyPair::from_seed(&[1; 32])), ..Default::default() }).await.unwrap();
//! let blobs = Hyperblobs::new(core.into_session());
//! let id = blobs.put(&vec![7u8; 100_000]).await?;
//! assert_eq!((id.block_offset, id.block_length, id.byte_length), (0, 2, 100_000));
//! let part = blobs.get_range(&id, ReadRange::start_len(65_530, 10)).await?.unwrap();
//! assert_eq!(part, vec![7u8; 10]);
//! # Ok::<(), hyperpunch_core::hyperblobs::BlobError>(())
//! # }).unwrap();
//! ```
//!
//! Not done: the JS `monitor` (upload/download speed events), `batch()` (blocks staged in
//! memory; hyperdrive does not use it).

pub mod block_map;
pub(crate) mod core_trait;
mod read;
#[cfg(test)]
mod tests;
mod write;

use std::sync::Arc;

pub use block_map::BlockMap;
pub use core_trait::BlobCore;
pub use read::{BlobReader, ReadRange};
pub use write::{BlobWriter, WriteOptions};

use crate::hypercore::HypercoreError;

/// Bytes per block of [`Hyperblobs::put`] (JS `DEFAULT_BLOCK_SIZE`, 64 KiB).
pub const DEFAULT_BLOCK_SIZE: usize = 1 << 16;

/// Blocks a [`BlobWriter`] collects before appending them (JS: 16).
pub const WRITE_BATCH_BLOCKS: usize = 16;

/// Where a blob lives in the core (JS `{ blockOffset, byteOffset, blockLength, byteLength,
/// blockMap? }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BlobId {
    /// First block.
    pub block_offset: u64,
    /// Byte of the core where the first block starts.
    pub byte_offset: u64,
    /// Number of blocks (of the map blocks, with a block map).
    pub block_length: u64,
    /// Number of bytes (of the map blocks, with a block map).
    pub byte_length: u64,
    /// The blocks are a block map pointing at the data blocks.
    pub block_map: bool,
}

impl BlobId {
    /// The block after the blob's last one (`block_offset + block_length`, saturating: ids come
    /// from untrusted entries).
    pub fn end(&self) -> u64 {
        self.block_offset.saturating_add(self.block_length)
    }
}

/// Everything a blob operation can fail with.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BlobError {
    /// The core failed.
    #[error(transparent)]
    Core(#[from] HypercoreError),
    /// A block of the blob is not stored locally and no peer sent it (JS
    /// `BLOCK_NOT_AVAILABLE`).
    #[error("block {0} is not available (not stored locally, and no peer sent it)")]
    BlockNotAvailable(u64),
    /// The blob's block map does not decode, or does not fit the blob.
    #[error("invalid block map at block {index}: {reason}")]
    InvalidBlockMap {
        /// A block of the map.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// A block map of more than 64 blocks (JS "Block map is too large").
    #[error("block map of {0} blocks is too large (at most 64)")]
    BlockMapTooLarge(u64),
    /// The blob does not fit the core (its blocks lie past the core's length).
    #[error("blob out of bounds: blocks {start}..{end} of a core of {length}")]
    OutOfBounds {
        /// First block.
        start: u64,
        /// End block.
        end: u64,
        /// The core's length.
        length: u64,
    },
    /// A blob could not be written (the core is not writable, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

/// Blobs in core `C`; see the [module docs](self). Cheap to clone: clones share the core and
/// the write lock (one writer at a time, as JS's mutex).
pub struct Hyperblobs<C: BlobCore> {
    core: C,
    lock: Arc<async_lock::Mutex<()>>,
    block_size: usize,
}

impl<C: BlobCore> Clone for Hyperblobs<C> {
    fn clone(&self) -> Self {
        Hyperblobs {
            core: self.core.clone(),
            lock: self.lock.clone(),
            block_size: self.block_size,
        }
    }
}

impl<C: BlobCore> std::fmt::Debug for Hyperblobs<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hyperblobs")
            .field("block_size", &self.block_size)
            .finish_non_exhaustive()
    }
}

impl<C: BlobCore> Hyperblobs<C> {
    /// Blobs in `core`, 64 KiB blocks.
    pub fn new(core: C) -> Self {
        Hyperblobs {
            core,
            lock: Arc::new(async_lock::Mutex::new(())),
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }

    /// The same blobs, `put` cutting `block_size` bytes per block (JS `blockSize`; at least 1).
    pub fn with_block_size(mut self, block_size: usize) -> Self {
        self.block_size = block_size.max(1);
        self
    }

    /// The core.
    pub fn core(&self) -> &C {
        &self.core
    }

    /// The core's key.
    pub async fn key(&self) -> [u8; 32] {
        self.core.key().await
    }

    /// Store `bytes` as a new blob of 64 KiB blocks (JS `put`); its id.
    pub async fn put(&self, bytes: &[u8]) -> Result<BlobId, BlobError> {
        let mut w = self.writer(WriteOptions::default()).await?;
        w.write_chunked(bytes, self.block_size).await?;
        w.finish().await
    }

    /// A writer appending a new blob (JS `createWriteStream`): holds the write lock until it
    /// is finished or dropped.
    pub async fn writer(&self, opts: WriteOptions) -> Result<BlobWriter<C>, BlobError> {
        BlobWriter::open(self, opts).await
    }

    /// The whole blob (JS `get`); `None` when a block is not available.
    pub async fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError> {
        self.get_range(id, ReadRange::default()).await
    }

    /// Part of the blob; `None` when a block is not available.
    pub async fn get_range(
        &self,
        id: &BlobId,
        range: ReadRange,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        if !id.block_map && range == ReadRange::default() {
            return self.get_all(id).await;
        }
        let mut r = self.reader(id, range).await?;
        let mut out = Vec::new();
        loop {
            match r.next().await {
                Ok(Some(chunk)) => out.extend_from_slice(&chunk),
                Ok(None) => return Ok(Some(out)),
                Err(BlobError::BlockNotAvailable(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    async fn get_all(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError> {
        let (start, end) = (id.block_offset, id.end());
        if start == end {
            return Ok(Some(Vec::new()));
        }
        self.check_bounds(start, end).await?;
        self.core.prefetch(start, end).await;
        let blocks = self.core.get_range(start, end).await?;
        let mut out = Vec::with_capacity(id.byte_length.min(1 << 30) as usize);
        for b in blocks {
            match b {
                Some(b) => out.extend_from_slice(&b),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    pub(crate) async fn check_bounds(&self, start: u64, end: u64) -> Result<(), BlobError> {
        let length = self.core.state().await.length;
        if end > length || start > end {
            return Err(BlobError::OutOfBounds { start, end, length });
        }
        Ok(())
    }

    /// A reader of part of the blob (JS `createReadStream(id, { start, end, length })`).
    pub async fn reader(&self, id: &BlobId, range: ReadRange) -> Result<BlobReader<C>, BlobError> {
        BlobReader::open(self.core.clone(), *id, range).await
    }

    /// The blob's block map (JS `getBlockMap`): the stored one for a blob with a block map,
    /// `None` otherwise.
    pub async fn get_block_map(&self, id: &BlobId) -> Result<Option<BlockMap>, BlobError> {
        if !id.block_map {
            return Ok(None);
        }
        block_map::read(&self.core, id).await.map(Some)
    }

    /// The number of content bytes (JS `getByteLength`): `byte_length`, or the sum of the
    /// block map's entries.
    pub async fn content_length(&self, id: &BlobId) -> Result<u64, BlobError> {
        if !id.block_map || id.byte_length == 0 {
            return Ok(id.byte_length);
        }
        let map = block_map::read(&self.core, id).await?;
        Ok(map
            .blocks
            .iter()
            .fold(0u64, |a, b| a.saturating_add(b.byte_length)))
    }

    /// Whether every block of the blob is held locally (JS hyperdrive `_hasEntry`).
    pub async fn has(&self, id: &BlobId) -> Result<bool, BlobError> {
        let (start, end) = (id.block_offset, id.end());
        if !self.core.has(start, end).await {
            return Ok(false);
        }
        if id.block_map {
            let map = block_map::read(&self.core, id).await?;
            for b in &map.blocks {
                if !self.core.has(b.index, b.index + 1).await {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Make every block of the blob local (download it from peers): the map blocks first,
    /// then the data blocks they list.
    pub async fn download(&self, id: &BlobId) -> Result<(), BlobError> {
        let (start, end) = (id.block_offset, id.end());
        if start == end {
            return Ok(());
        }
        self.check_bounds(start, end).await?;
        self.core.download(start, end).await?;
        if id.block_map {
            let map = block_map::read(&self.core, id).await?;
            for b in &map.blocks {
                self.core.download(b.index, b.index + 1).await?;
            }
        }
        Ok(())
    }

    /// Delete the local copies of the blob's blocks (JS `clear`; the tree stays, so they can be
    /// downloaded and verified again): how many blocks were held and are cleared.
    pub async fn clear(&self, id: &BlobId) -> Result<u64, BlobError> {
        let mut cleared = 0;
        if id.block_map {
            // A map that is not held locally: its data blocks are left alone, as in JS.
            if self.core.has(id.block_offset, id.end()).await {
                let map = block_map::read(&self.core, id).await?;
                for b in &map.blocks {
                    cleared += self.core.clear(b.index, b.index + 1).await?;
                }
            }
        }
        cleared += self.core.clear(id.block_offset, id.end()).await?;
        Ok(cleared)
    }
}
