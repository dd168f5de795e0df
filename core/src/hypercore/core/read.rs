//! Reading a core: blocks, tree nodes, byte seeks and snapshots.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::storage::Storage;

use crate::hypercore::blocks;
use crate::hypercore::encryption::PADDING;
use crate::hypercore::error::HypercoreError;
use crate::hypercore::flat_tree;
use crate::hypercore::messages::TreeNode;
use crate::hypercore::tree::{self, MerkleTree, SeekResult};

use super::{Hypercore, Snapshot};

impl<S: Storage> Hypercore<S> {
    /// Whether block `index` is held locally.
    pub fn has(&self, index: u64) -> bool {
        index < self.tree.length && self.bitfield.get(index)
    }

    /// Block `index`, decrypted. `Ok(None)` when the block is not held locally (a reader's sparse
    /// data, or cleared); [`HypercoreError::OutOfBounds`] past the length.
    pub async fn get(&self, index: u64) -> Result<Option<Vec<u8>>, HypercoreError> {
        if index >= self.tree.length {
            return Err(HypercoreError::OutOfBounds {
                index,
                length: self.tree.length,
            });
        }
        let Some(stored) = self.get_stored(index).await? else {
            return Ok(None);
        };
        self.decode_block(index, stored).map(Some)
    }

    pub(super) fn decode_block(
        &self,
        index: u64,
        mut stored: Vec<u8>,
    ) -> Result<Vec<u8>, HypercoreError> {
        if !self.encrypted {
            return Ok(stored);
        }
        let e = self
            .encryption
            .as_ref()
            .ok_or(HypercoreError::EncryptionKeyRequired)?;
        e.decrypt_in_place(index, &mut stored)?;
        stored.drain(..PADDING);
        Ok(stored)
    }

    /// Block `index` exactly as stored (encrypted and padded for encrypted cores): the bytes the
    /// merkle tree hashes and proofs carry. `None` when not held locally.
    pub async fn get_stored(&self, index: u64) -> Result<Option<Vec<u8>>, HypercoreError> {
        if !self.bitfield.get(index) {
            return Ok(None);
        }
        self.chunk_cache.get(&self.storage, index).await
    }

    /// Blocks `start..end` decrypted, in one storage scan (missing ones are `None`).
    pub async fn get_range(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Option<Vec<u8>>>, HypercoreError> {
        if end > self.tree.length || start > end {
            return Err(HypercoreError::OutOfBounds {
                index: end,
                length: self.tree.length,
            });
        }
        let mut out: Vec<Option<Vec<u8>>> = (start..end).map(|_| None).collect();
        for (i, v) in blocks::range(&self.storage, start, end).await? {
            out[(i - start) as usize] = Some(self.decode_block(i, v)?);
        }
        Ok(out)
    }

    /// Where user-visible byte offset `bytes` falls (padding excluded).
    pub async fn seek(&self, bytes: u64) -> Result<SeekResult, HypercoreError> {
        self.tree.seek(&self.storage, bytes, self.padding()).await
    }

    /// Stored node `index` of the merkle tree, if present.
    pub async fn tree_node(&self, index: u64) -> Result<Option<TreeNode>, HypercoreError> {
        if index >= 2 * self.tree.length {
            return Ok(None);
        }
        tree::get_node(&self.storage, index).await
    }

    /// How many tree levels above node `index` are missing locally at the current length: the
    /// `nodes` field to put in a block/hash request (JS `missingNodes`).
    pub async fn missing_nodes(&self, index: u64) -> Result<u64, HypercoreError> {
        MerkleTree::missing_nodes_cached(
            &self.storage,
            Some(&self.node_cache),
            index,
            self.tree.length,
        )
        .await
    }

    /// Whether every root of a tree of `length` blocks is stored (so an upgrade from `length` can
    /// be proven: JS `upgradeable`, sent as `sync.canUpgrade`).
    pub async fn upgradeable(&self, length: u64) -> Result<bool, HypercoreError> {
        if length > self.tree.length {
            return Ok(false);
        }
        let idx = flat_tree::roots_of_length(length);
        Ok(tree::get_nodes(&self.storage, &idx)
            .await?
            .iter()
            .all(|n| n.is_some()))
    }

    /// Freeze the current tree: length, byte length, fork, tree hash, roots and signature.
    pub fn snapshot(&mut self) -> Snapshot {
        let available = Arc::new(AtomicU64::new(self.tree.length));
        self.snapshots.retain(|w| w.strong_count() > 0);
        self.snapshots.push(Arc::downgrade(&available));
        Snapshot {
            tree: self.tree.clone(),
            byte_length: self.byte_length(),
            tree_hash: self.tree.hash(),
            available,
        }
    }

    /// Block `index` as seen by `snapshot`.
    pub async fn get_at(
        &self,
        snapshot: &Snapshot,
        index: u64,
    ) -> Result<Option<Vec<u8>>, HypercoreError> {
        if index >= snapshot.length() {
            return Err(HypercoreError::OutOfBounds {
                index,
                length: snapshot.length(),
            });
        }
        let available = snapshot.available_length();
        if index >= available {
            return Err(HypercoreError::SnapshotNotAvailable { index, available });
        }
        self.get(index).await
    }
}
