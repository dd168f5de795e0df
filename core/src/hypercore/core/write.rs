//! Writing a core: signing, [`Hypercore::append`], [`Hypercore::truncate`] (a new fork) and
//! [`Hypercore::clear`].

use std::sync::atomic::Ordering;

use crate::crypto::Hash;
use crate::storage::{Batch, Storage};

use crate::hypercore::blocks;
use crate::hypercore::error::HypercoreError;
use crate::hypercore::layout;
use crate::hypercore::tree;

use super::{AppendOutcome, Hypercore, MAX_BLOCK_SIZE};

impl<S: Storage> Hypercore<S> {
    pub(super) fn sign(
        &self,
        hash: &Hash,
        length: u64,
        fork: u64,
    ) -> Result<Vec<u8>, HypercoreError> {
        let (Some(kp), Some(v)) = (&self.key_pair, &self.verifier) else {
            return Err(HypercoreError::NotWritable);
        };
        Ok(v.sign(kp, hash, length, fork)?)
    }

    /// Append `blocks` (one atomic storage write, one signature). Returns the new length.
    pub async fn append(&mut self, blocks: &[&[u8]]) -> Result<AppendOutcome, HypercoreError> {
        self.append_with(blocks, None).await
    }

    /// Append `blocks` with `signature`, made elsewhere (JS `append(values, { signature })`):
    /// the multisig of a core signed by several signers, assembled from their partial
    /// signatures ([`super::super::verifier::Verifier::assemble`]). No key pair is needed; the
    /// signature is verified against the new tree (patched proofs too) before anything is
    /// written, a wrong one is [`HypercoreError::InvalidSignature`].
    pub async fn append_signed(
        &mut self,
        blocks: &[&[u8]],
        signature: &[u8],
    ) -> Result<AppendOutcome, HypercoreError> {
        self.append_with(blocks, Some(signature)).await
    }

    /// One signer's part of a multisig at length `from` (JS `multisig.partialSignature`):
    /// `signature` signs this core's tree at `to` (`>= from`); when `to > from` the patch is
    /// the upgrade nodes from `from` to `to`, so that the assembled proof verifies at `from`.
    /// This core must hold the tree to `to` (else [`HypercoreError::BlockNotAvailable`]).
    pub async fn partial_signature(
        &self,
        signer: u64,
        from: u64,
        to: u64,
        signature: [u8; 64],
    ) -> Result<crate::hypercore::verifier::PartialSignature, HypercoreError> {
        if to > self.tree.length || from > to {
            return Err(HypercoreError::BlockNotAvailable(to.max(from)));
        }
        let nodes = if to > from {
            let req = crate::hypercore::proof::ProofRequest {
                upgrade: Some(crate::hypercore::messages::RequestUpgrade {
                    start: from,
                    length: to - from,
                }),
                ..Default::default()
            };
            // the nodes from the roots at `from` to the roots at `to` (those past `to` are the
            // proof's additional nodes, not part of the patch)
            self.proof(&req)
                .await?
                .upgrade
                .map(|u| u.nodes)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(crate::hypercore::verifier::PartialSignature {
            signer,
            signature,
            patch: to - from,
            nodes,
        })
    }

    async fn append_with(
        &mut self,
        blocks: &[&[u8]],
        given: Option<&[u8]>,
    ) -> Result<AppendOutcome, HypercoreError> {
        self.check_not_frozen()?;
        if given.is_none() && !self.writable() {
            return Err(HypercoreError::NotWritable);
        }
        if given.is_some() && self.verifier.is_none() {
            return Err(HypercoreError::NotWritable);
        }
        if self.encrypted && self.encryption.is_none() {
            return Err(HypercoreError::EncryptionKeyRequired);
        }
        if let Some(b) = blocks.iter().find(|b| b.len() > MAX_BLOCK_SIZE) {
            return Err(HypercoreError::BlockTooLarge {
                size: b.len(),
                max: MAX_BLOCK_SIZE,
            });
        }
        if blocks.is_empty() {
            return Ok(AppendOutcome {
                length: self.length(),
                byte_length: self.byte_length(),
            });
        }
        let start = self.tree.length;
        let fork = self.tree.fork;
        let mut tb = self.tree.batch();
        tb.nodes.reserve(blocks.len() * 2);
        let mut batch = Batch::new();
        batch.ops.reserve(blocks.len() * 3 + 4);
        // Plain blocks are hashed and stored straight from the caller's buffers.
        let stored: Vec<std::borrow::Cow<'_, [u8]>> = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| match &self.encryption {
                Some(e) => e.encrypt(start + i as u64, fork, b).into(),
                None => std::borrow::Cow::Borrowed(*b),
            })
            .collect();
        let hashes = tree::leaf_hashes_joined(&*self.join, &stored);
        tb.append_leaves_joined(
            &*self.join,
            hashes
                .into_iter()
                .zip(stored.iter().map(|data| data.len() as u64)),
        );
        let refs: Vec<&[u8]> = stored.iter().map(|b| b.as_ref()).collect();
        blocks::put(&mut batch, start, &refs);
        let hash = tb.hash();
        let signature = match (given, &self.verifier) {
            (Some(sig), Some(v)) => {
                v.verify_with_roots(&tb.roots, &hash, tb.length, tb.fork, sig)?;
                sig.to_vec()
            }
            _ => self.sign(&hash, tb.length, tb.fork)?,
        };
        self.queue_tree_ops(&tb, &mut batch).await?;
        self.bitfield.set_range(start, tb.length, true);
        for (page, bytes) in self.bitfield.take_dirty_pages() {
            batch.put(layout::bitfield_key(page), bytes);
        }
        batch.put(
            layout::header_key(),
            self.header_bytes(&tb, hash, &signature, self.manifest.as_ref()),
        );
        if let Err(e) = self.write(batch).await {
            self.bitfield.set_range(start, tb.length, false);
            self.bitfield.take_dirty_pages();
            return Err(e.into());
        }
        tb.signature = Some(signature);
        self.tree.commit(&tb);
        if self.contiguous_length == start {
            self.contiguous_length = self
                .bitfield
                .first_unset(start)
                .unwrap_or(u64::MAX)
                .min(self.tree.length);
        }
        Ok(AppendOutcome {
            length: self.length(),
            byte_length: self.byte_length(),
        })
    }

    /// Truncate to `new_length` blocks with fork `fork` (default: current fork + 1) and re-sign.
    /// Blocks, tree nodes and bitfield bits past the new length are deleted in the same write.
    pub async fn truncate(
        &mut self,
        new_length: u64,
        fork: Option<u64>,
    ) -> Result<(), HypercoreError> {
        self.check_not_frozen()?;
        if !self.writable() {
            return Err(HypercoreError::NotWritable);
        }
        if new_length > self.tree.length {
            return Err(HypercoreError::OutOfBounds {
                index: new_length,
                length: self.tree.length,
            });
        }
        let fork = fork.unwrap_or(self.tree.fork + 1);
        let old_length = self.tree.length;
        let mut tb = self
            .tree
            .truncate_batch(&self.storage, new_length, fork)
            .await?;
        let hash = tb.hash();
        let signature = self.sign(&hash, tb.length, tb.fork)?;
        let mut batch = Batch::new();
        self.queue_tree_ops(&tb, &mut batch).await?;
        blocks::remove(&self.storage, &mut batch, new_length, None).await?;
        let saved = self.bitfield.clone();
        self.bitfield.set_range(new_length, old_length, false);
        for (page, bytes) in self.bitfield.take_dirty_pages() {
            batch.put(layout::bitfield_key(page), bytes);
        }
        batch.put(
            layout::header_key(),
            self.header_bytes(&tb, hash, &signature, self.manifest.as_ref()),
        );
        if let Err(e) = self.write(batch).await {
            self.bitfield = saved;
            return Err(e.into());
        }
        tb.signature = Some(signature);
        self.tree.commit(&tb);
        self.contiguous_length = self.contiguous_length.min(new_length);
        self.on_truncate(new_length);
        Ok(())
    }

    pub(super) fn on_truncate(&mut self, new_length: u64) {
        self.snapshots.retain(|w| match w.upgrade() {
            Some(a) => {
                a.fetch_min(new_length, Ordering::AcqRel);
                true
            }
            None => false,
        });
    }

    /// Delete the local copies of blocks `start..end` (the tree is kept, so they can be fetched
    /// and verified again).
    pub async fn clear(&mut self, start: u64, end: u64) -> Result<(), HypercoreError> {
        let end = end.min(self.tree.length);
        if start >= end {
            return Ok(());
        }
        let mut batch = Batch::new();
        blocks::remove(&self.storage, &mut batch, start, Some(end)).await?;
        let saved = self.bitfield.clone();
        self.bitfield.set_range(start, end, false);
        for (page, bytes) in self.bitfield.take_dirty_pages() {
            batch.put(layout::bitfield_key(page), bytes);
        }
        if let Err(e) = self.write(batch).await {
            self.bitfield = saved;
            return Err(e.into());
        }
        self.contiguous_length = self.contiguous_length.min(start);
        Ok(())
    }
}
