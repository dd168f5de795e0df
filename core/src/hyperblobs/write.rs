//! [`BlobWriter`] (JS `BlobWriteStream`): appends a new blob, chunk by chunk.

use std::collections::HashMap;

use async_lock::MutexGuardArc;

use super::block_map::{self, MapEntry};
use super::{BlobCore, BlobError, BlobId, Hyperblobs, WRITE_BATCH_BLOCKS};

/// Options of [`Hyperblobs::writer`].
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Append a block map after the data blocks (JS `blockMap: true`).
    pub block_map: bool,
    /// Skip blocks whose bytes a block of `previous` (or an earlier block of this blob)
    /// already holds, pointing the block map at that block instead (JS `dedup`; implies
    /// `block_map`).
    pub dedup: bool,
    /// The blob to deduplicate against (JS `blob`, the file's previous version).
    pub previous: Option<BlobId>,
}

/// Appends one blob; see [`Hyperblobs::writer`]. Each [`BlobWriter::write`] is one block (JS
/// `write(chunk)`); blocks are appended sixteen at a time and at [`BlobWriter::finish`], which
/// gives the blob's id. Dropping a writer without finishing leaves the blocks already appended
/// unreferenced (as a destroyed JS stream does).
pub struct BlobWriter<C: BlobCore> {
    core: C,
    _guard: MutexGuardArc<()>,
    id: BlobId,
    /// Blocks waiting for the next append.
    pending: Vec<Vec<u8>>,
    /// Length of the core once `pending` is appended.
    next_index: u64,
    /// Bytes appended or pending.
    bytes: u64,
    blocks: u64,
    map: Option<Vec<MapEntry>>,
    hashes: Option<HashMap<[u8; 32], MapEntry>>,
}

impl<C: BlobCore> std::fmt::Debug for BlobWriter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("id", &self.id)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl<C: BlobCore> BlobWriter<C> {
    pub(super) async fn open(blobs: &Hyperblobs<C>, opts: WriteOptions) -> Result<Self, BlobError> {
        let guard = blobs.lock.lock_arc().await;
        let core = blobs.core.clone();
        core.check_live().await?;
        let st = core.state().await;
        if !st.writable {
            return Err(BlobError::InvalidArgument("the blobs core is not writable"));
        }
        let with_map = opts.block_map || opts.dedup;
        let hashes = if opts.dedup {
            Some(match &opts.previous {
                Some(prev) => block_map::read_with_hashes(&core, prev).await?,
                None => HashMap::new(),
            })
        } else {
            None
        };
        let id = BlobId {
            block_offset: st.length,
            byte_offset: core.byte_length().await,
            block_length: 0,
            byte_length: 0,
            block_map: with_map,
        };
        Ok(BlobWriter {
            core,
            _guard: guard,
            id,
            pending: Vec::new(),
            next_index: st.length,
            bytes: 0,
            blocks: 0,
            map: with_map.then(Vec::new),
            hashes,
        })
    }

    /// Append `chunk` as one block (JS `write`). An empty chunk is skipped.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.push(chunk.to_vec()).await
    }

    /// Append an owned chunk as one block (no copy).
    pub async fn write_owned(&mut self, chunk: Vec<u8>) -> Result<(), BlobError> {
        self.push(chunk).await
    }

    /// Append `bytes` cut into blocks of `block_size` (JS `put`).
    pub async fn write_chunked(
        &mut self,
        bytes: &[u8],
        block_size: usize,
    ) -> Result<(), BlobError> {
        for chunk in bytes.chunks(block_size.max(1)) {
            self.push(chunk.to_vec()).await?;
        }
        Ok(())
    }

    async fn push(&mut self, chunk: Vec<u8>) -> Result<(), BlobError> {
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(map) = &mut self.map {
            let mut entry = MapEntry {
                index: self.next_index + self.pending.len() as u64,
                byte_length: chunk.len() as u64,
            };
            if let Some(hashes) = &mut self.hashes {
                let h = block_map::block_hash(&chunk);
                if let Some(existing) = hashes.get(&h) {
                    entry = *existing;
                    map.push(entry);
                    return Ok(());
                }
                hashes.insert(h, entry);
            }
            map.push(entry);
        }
        self.bytes += chunk.len() as u64;
        self.blocks += 1;
        self.pending.push(chunk);
        if self.pending.len() >= WRITE_BATCH_BLOCKS {
            self.append_pending().await?;
        }
        Ok(())
    }

    async fn append_pending(&mut self) -> Result<(), BlobError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let refs: Vec<&[u8]> = self.pending.iter().map(Vec::as_slice).collect();
        self.next_index = self.core.append(&refs).await?;
        self.pending.clear();
        Ok(())
    }

    /// Content bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Append what is pending (and the block map) and give the blob's id (JS `stream.id` at
    /// `close`). Releases the write lock.
    pub async fn finish(mut self) -> Result<BlobId, BlobError> {
        self.append_pending().await?;
        let mut id = self.id;
        match self.map.take() {
            Some(map) => {
                let blocks = block_map::encode(&map);
                id.block_offset = self.next_index;
                id.byte_offset = self.core.byte_length().await;
                id.block_length = blocks.len() as u64;
                id.byte_length = blocks.iter().map(|b| b.len() as u64).sum();
                if !blocks.is_empty() {
                    let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
                    self.core.append(&refs).await?;
                }
            }
            None => {
                id.block_length = self.blocks;
                id.byte_length = self.bytes;
            }
        }
        Ok(id)
    }
}
