//! Proofs in and out: answering requests ([`Hypercore::proof`]), verifying and applying a
//! peer's proofs one at a time or in batches, reorgs, conflict checks, and the full
//! integrity check ([`Hypercore::verify_all`]).

use std::collections::HashMap;

use crate::storage::{Batch, Storage};

use crate::hypercore::blocks;
use crate::hypercore::encryption::{BlockEncryption, PADDING};
use crate::hypercore::error::{HypercoreError, ProofError};
use crate::hypercore::flat_tree;
use crate::hypercore::layout;
use crate::hypercore::manifest::Manifest;
use crate::hypercore::messages::{Data, DataBlock, TreeNode};
use crate::hypercore::proof::{self, ProofRequest};
use crate::hypercore::tree::{self, MerkleTree, TreeBatch};
use crate::hypercore::verifier::Verifier;

use super::{ApplyOutcome, Conflict, Hypercore, Snapshot, VerifiedProof, MAX_BLOCK_SIZE};

impl<S: Storage> Hypercore<S> {
    /// Generate the proof answering `req` (JS `core.proof`): block proofs carry the stored
    /// block bytes. The result's `request` is 0 and `manifest` is `None`; set them for the wire.
    pub async fn proof(&self, req: &ProofRequest) -> Result<Data, HypercoreError> {
        self.proof_of(&self.tree, req).await
    }

    /// Generate the proof answering `req` from `snapshot`'s tree (JS `snapshot.proof()`, which
    /// proves from the session's own state): upgrades reach the snapshot's length with the
    /// signature it had, however much the core grew since, and blocks past it are not there.
    /// The snapshot's nodes must still be stored: once a truncation went below its length
    /// ([`Snapshot::available_length`]) it fails with [`HypercoreError::SnapshotNotAvailable`]
    /// (JS, whose storage keeps snapshots of its own, still answers).
    pub async fn proof_at(
        &self,
        snapshot: &Snapshot,
        req: &ProofRequest,
    ) -> Result<Data, HypercoreError> {
        let available = snapshot.available_length();
        if available < snapshot.length() {
            let index = req.block.map_or(available, |b| b.index.max(available));
            return Err(HypercoreError::SnapshotNotAvailable { index, available });
        }
        self.proof_of(&snapshot.tree, req).await
    }

    /// The proof answering `req` from `tree` (ours, or a snapshot's on our fork).
    async fn proof_of(
        &self,
        tree: &MerkleTree,
        req: &ProofRequest,
    ) -> Result<Data, HypercoreError> {
        if let Some(b) = req.block {
            if b.index < tree.length && !self.bitfield.get(b.index) {
                return Err(HypercoreError::BlockNotAvailable(b.index));
            }
        }
        let prologue = self.verifier.as_ref().and_then(|v| v.prologue()).copied();
        let mut data = proof::generate_cached(
            &self.storage,
            Some(&self.node_cache),
            tree,
            prologue.as_ref(),
            req,
        )
        .await?;
        if let Some(b) = data.block.as_mut() {
            b.value = self
                .chunk_cache
                .get(&self.storage, b.index)
                .await?
                .ok_or(HypercoreError::BlockNotAvailable(b.index))?;
        }
        Ok(data)
    }

    pub(super) fn resolve_manifest(
        &self,
        offered: Option<&Manifest>,
    ) -> Result<Manifest, HypercoreError> {
        if let Some(m) = &self.manifest {
            return Ok(m.clone());
        }
        let m = match offered {
            Some(m) => m.clone(),
            None => Manifest::default_signer(self.key),
        };
        if m.key() == self.key || m.is_compat(&self.key) {
            Ok(m)
        } else {
            Err(HypercoreError::KeyMismatch(
                "manifest does not belong to this core key",
            ))
        }
    }

    /// Verify `proof` against the local state without changing anything (see
    /// [`Hypercore::apply_proof`] for what is accepted). An empty proof (as JS answers a lone seek
    /// request) verifies trivially; a proof carrying only a manifest, while we have none, gives
    /// that manifest if its hash is our key.
    pub async fn verify_proof(&self, proof: &Data) -> Result<VerifiedProof, HypercoreError> {
        self.verify_proof_with(proof, None, None).await
    }

    /// [`Hypercore::verify_proof`], where `known` gives nodes already trusted without a storage
    /// read: verified by earlier proofs of one [`Hypercore::apply_proofs`] call (not stored
    /// yet, they count as stored) or stored and cached (see [`proof::verify_tree_with_leaf`]);
    /// `leaf` is the block's leaf hash, computed already.
    pub(super) async fn verify_proof_with(
        &self,
        proof: &Data,
        known: Option<proof::KnownNodes<'_>>,
        leaf: Option<crate::crypto::Hash>,
    ) -> Result<VerifiedProof, HypercoreError> {
        if let Some(b) = &proof.block {
            if b.value.len() > MAX_BLOCK_SIZE + PADDING {
                return Err(HypercoreError::BlockTooLarge {
                    size: b.value.len(),
                    max: MAX_BLOCK_SIZE,
                });
            }
        }
        if proof.fork != self.tree.fork {
            return self.verify_reorg(proof).await;
        }
        let mut batch = self.tree.batch();
        // An upgrade that starts below our length (a pushing peer's: JS moves the start of the
        // upgrades it answers to what it pushed) is checked from our roots at its start.
        let mut behind = None;
        if let Some(up) = proof
            .upgrade
            .as_ref()
            .filter(|u| u.start < self.tree.length)
        {
            let idx = flat_tree::roots_of_length(up.start);
            let stored = tree::get_nodes_cached(&self.storage, &self.node_cache, &idx).await?;
            let mut roots = Vec::with_capacity(idx.len());
            for (n, &i) in stored.into_iter().zip(&idx) {
                roots.push(n.ok_or(ProofError::Unverifiable(i))?);
            }
            batch.byte_length = roots.iter().fold(0u64, |a, r| a.saturating_add(r.size));
            batch.roots = roots;
            batch.length = up.start;
            behind = Some(idx);
        }
        let mut unverified = proof::verify_tree_with_leaf(proof, &mut batch.nodes, leaf, known)?;
        let mut new_manifest = None;
        if let Some(up) = &proof.upgrade {
            let (manifest, verifier) = self.verifier_for(proof)?;
            let consumed =
                proof::verify_upgrade(proof.fork, up, unverified, &mut batch, verifier.prologue())?;
            if consumed {
                unverified = None;
            }
            if batch.length <= self.tree.length {
                // Not an upgrade for us: every root must match what we store.
                let idx: Vec<u64> = batch.roots.iter().map(|r| r.index).collect();
                let stored = tree::get_nodes(&self.storage, &idx).await?;
                for (r, s) in batch.roots.iter().zip(stored) {
                    if s.is_none_or(|s| s.hash != r.hash || s.size != r.size) {
                        return Err(ProofError::Conflict(batch.length).into());
                    }
                }
                batch.upgraded = false;
            } else {
                let sig = batch.signature.clone().unwrap_or_default();
                verifier.verify_with_roots(
                    &batch.roots,
                    &batch.hash(),
                    batch.length,
                    batch.fork,
                    &sig,
                )?;
                if let Some(start_roots) = &behind {
                    // Our tree must be a prefix of the new one: each of our roots is one of the
                    // roots we started from or a node of the proof with the same hash.
                    for r in &self.tree.roots {
                        if start_roots.contains(&r.index) {
                            continue;
                        }
                        let mut same = batch.nodes.iter().filter(|n| n.index == r.index).peekable();
                        if same.peek().is_none() {
                            return Err(ProofError::Unverifiable(r.index).into());
                        }
                        if same.any(|n| n.hash != r.hash || n.size != r.size) {
                            return Err(ProofError::Conflict(self.tree.length).into());
                        }
                    }
                }
                new_manifest = manifest;
            }
        }
        if let (None, None, Some(m)) = (&self.manifest, &new_manifest, &proof.manifest) {
            // A manifest on its own (JS answers a manifest request so): kept if it is the one
            // whose hash is our key.
            new_manifest = Some(self.resolve_manifest(Some(m))?);
        }
        if let Some(u) = unverified {
            let local = match known.and_then(|f| f(u.index)) {
                Some(n) => Some(n),
                None => tree::get_nodes_cached(&self.storage, &self.node_cache, &[u.index])
                    .await?
                    .pop()
                    .flatten(),
            };
            let local = local
                .filter(|_| u.index < 2 * self.tree.length)
                .ok_or(ProofError::Unverifiable(u.index))?;
            if local.hash != u.hash || local.size != u.size {
                return Err(ProofError::InvalidChecksum(u.index).into());
            }
        }
        if let Some(b) = &proof.block {
            if b.index >= batch.length.max(self.tree.length) {
                return Err(ProofError::Unverifiable(2 * b.index).into());
            }
        }
        if !batch.upgraded {
            // Keep our state: only the verified nodes are new.
            batch.roots.clone_from(&self.tree.roots);
            batch.length = self.tree.length;
            batch.byte_length = self.tree.byte_length;
            batch.fork = self.tree.fork;
            batch.signature = None;
        }
        Ok(VerifiedProof {
            batch,
            manifest: new_manifest,
        })
    }

    /// The manifest to verify `proof` with (`Some` when it is newly learned) and its verifier.
    pub(super) fn verifier_for(
        &self,
        proof: &Data,
    ) -> Result<(Option<Manifest>, Verifier), HypercoreError> {
        if let Some(v) = &self.verifier {
            return Ok((None, v.clone()));
        }
        let m = self.resolve_manifest(proof.manifest.as_ref())?;
        let v = Verifier::for_core(self.key, m.clone());
        Ok((Some(m), v))
    }

    /// A proof from a higher fork: only a signed upgrade from 0 (what the replicator asks a
    /// forked peer for) is accepted. The new tree is rebuilt from the proof alone; the local
    /// prefix whose roots match it is kept and everything past it is dropped on apply.
    pub(super) async fn verify_reorg(&self, proof: &Data) -> Result<VerifiedProof, HypercoreError> {
        let fork_err = ProofError::ForkMismatch {
            local: self.tree.fork,
            got: proof.fork,
        };
        let Some(up) = proof.upgrade.as_ref() else {
            return Err(fork_err.into());
        };
        if proof.fork < self.tree.fork || up.start != 0 {
            return Err(fork_err.into());
        }
        let mut batch = TreeBatch::empty(self.tree.fork);
        batch.tree_length = self.tree.length;
        let unverified = proof::verify_tree(proof, &mut batch.nodes)?;
        let (manifest, verifier) = self.verifier_for(proof)?;
        let consumed =
            proof::verify_upgrade(proof.fork, up, unverified, &mut batch, verifier.prologue())?;
        if let (Some(u), false) = (unverified, consumed) {
            return Err(ProofError::Unverifiable(u.index).into());
        }
        let sig = batch.signature.clone().unwrap_or_default();
        verifier.verify_with_roots(&batch.roots, &batch.hash(), batch.length, batch.fork, &sig)?;
        // Shared prefix: the leading new roots we store identically.
        let idx: Vec<u64> = batch.roots.iter().map(|r| r.index).collect();
        let stored = tree::get_nodes(&self.storage, &idx).await?;
        let mut ancestors = 0;
        for (r, s) in batch.roots.iter().zip(stored) {
            let end = flat_tree::right_span(r.index) / 2 + 1;
            match s {
                Some(s) if s.hash == r.hash && s.size == r.size && end <= self.tree.length => {
                    ancestors = end;
                }
                _ => break,
            }
        }
        batch.ancestors = ancestors;
        batch.upgraded = true;
        if let Some(b) = &proof.block {
            if b.index >= batch.length {
                return Err(ProofError::Unverifiable(2 * b.index).into());
            }
        }
        Ok(VerifiedProof { batch, manifest })
    }

    /// JS `checkConflict`: whether `proof` (a signed upgrade from 0 on our fork, to a length we
    /// hold, as a peer sends for a conflict check with request id 0) proves a different tree at
    /// that length than ours: two valid signatures over diverging trees, a forked writer.
    /// `Ok(false)` when the check does not apply (other fork, longer than our core, no manifest,
    /// roots not stored) or the trees agree; an error when the proof does not verify on its own.
    ///
    /// A conflict freezes the core (JS marks its header `frozen` and closes the core): it is
    /// stored with it, in one write, and from then on, also after a restart, the core refuses
    /// appends, truncations and proofs with [`HypercoreError::Conflict`] ([`Hypercore::conflict`]
    /// says why). Reads still work.
    pub async fn check_conflict(&mut self, proof: &Data) -> Result<bool, HypercoreError> {
        if !self.diverges(proof).await? {
            return Ok(false);
        }
        let length = proof.upgrade.as_ref().map_or(0, |u| u.length);
        self.freeze(Conflict {
            length,
            fork: proof.fork,
        })
        .await?;
        Ok(true)
    }

    /// Whether `proof` proves a signed tree that diverges from ours
    /// ([`Hypercore::check_conflict`]).
    async fn diverges(&self, proof: &Data) -> Result<bool, HypercoreError> {
        let (Some(up), Some(verifier)) = (proof.upgrade.as_ref(), self.verifier.as_ref()) else {
            return Ok(false);
        };
        if up.start != 0
            || up.length == 0
            || up.length > self.tree.length
            || proof.fork != self.tree.fork
        {
            return Ok(false);
        }
        let mut batch = TreeBatch::empty(self.tree.fork);
        let unverified = proof::verify_tree(proof, &mut batch.nodes)?;
        let consumed =
            proof::verify_upgrade(proof.fork, up, unverified, &mut batch, verifier.prologue())?;
        if let (Some(u), false) = (unverified, consumed) {
            return Err(ProofError::Unverifiable(u.index).into());
        }
        let sig = batch.signature.clone().unwrap_or_default();
        verifier.verify_with_roots(&batch.roots, &batch.hash(), batch.length, batch.fork, &sig)?;
        let idx = flat_tree::roots_of_length(up.length);
        let stored = tree::get_nodes(&self.storage, &idx).await?;
        for (i, local) in idx.iter().zip(stored) {
            let remote = batch.nodes.iter().find(|n| n.index == *i);
            match (local, remote) {
                (Some(l), Some(r)) if l.hash != r.hash || l.size != r.size => return Ok(true),
                (Some(_), Some(_)) => {}
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Verify `proof` and store what it proves, in one atomic write: a signed upgrade grows the
    /// core (new roots, nodes, signature; the manifest too when the proof carries the first one),
    /// a block is stored and marked in the bitfield. On any error the core is unchanged.
    ///
    /// Accepted: proofs at the local fork (block/hash/seek proofs checked against stored nodes or
    /// folded into a signed upgrade); and from a higher fork, a signed upgrade starting at 0,
    /// which re-roots the core on the new fork (a reorg: blocks and nodes past the shared prefix
    /// are deleted and `upgraded_to` reports the new length). Other forks give
    /// [`ProofError::ForkMismatch`].
    pub async fn apply_proof(&mut self, proof: &Data) -> Result<ApplyOutcome, HypercoreError> {
        let verified = self.verify_proof(proof).await?;
        self.apply_verified(verified, proof.block.as_ref()).await
    }

    /// Whether [`Hypercore::apply_proofs`] can take `proof` into a shared write: a proof at our
    /// fork with no upgrade and no manifest (a block, hash or seek proof checked against the
    /// nodes we hold).
    pub fn is_batchable(&self, proof: &Data) -> bool {
        proof.fork == self.tree.fork && proof.upgrade.is_none() && proof.manifest.is_none()
    }

    /// The block of `proof` whose leaf [`Hypercore::apply_proofs`] hashes with the others: of a
    /// batchable proof, and not oversized (those are refused unhashed).
    pub(super) fn batch_leaf<'d>(&self, proof: &'d Data) -> Option<&'d DataBlock> {
        proof
            .block
            .as_ref()
            .filter(|b| self.is_batchable(proof) && b.value.len() <= MAX_BLOCK_SIZE + PADDING)
    }

    /// Verify each of `proofs` and store those that verify (blocks, tree nodes, bitfield) in one
    /// atomic storage write: the result for each proof in order, as [`Hypercore::apply_proof`]
    /// would give one by one (a later proof may verify against nodes an earlier one proves).
    ///
    /// Every proof must be [`Hypercore::is_batchable`]; one that is not gets
    /// [`HypercoreError::InvalidArgument`] and changes nothing. A proof that does not verify gets
    /// its error and changes nothing; the others are stored. The outer error is a storage failure
    /// (reading, or the one write): then nothing is stored and the core is unchanged.
    pub async fn apply_proofs(
        &mut self,
        proofs: &[&Data],
    ) -> Result<Vec<Result<ApplyOutcome, HypercoreError>>, HypercoreError> {
        let mut owned: Vec<Data> = proofs.iter().map(|&p| p.clone()).collect();
        self.apply_proofs_owned(&mut owned).await
    }

    /// [`Hypercore::apply_proofs`] of proofs the caller gives away: the blocks stored are moved
    /// out of them into the storage batch (not copied), so afterwards the `value` of a proof's
    /// block may be empty. The replicator applies what it received this way.
    pub async fn apply_proofs_owned(
        &mut self,
        proofs: &mut [Data],
    ) -> Result<Vec<Result<ApplyOutcome, HypercoreError>>, HypercoreError> {
        if let Err(e) = self.check_not_frozen() {
            return Ok(proofs.iter().map(|_| Err(e.clone())).collect());
        }
        let mut results = Vec::with_capacity(proofs.len());
        // The proofs (by position) whose block is stored.
        let mut blocks: Vec<usize> = Vec::new();
        // The leaf hashes of all the blocks at once (SIMD lanes: about twice the throughput of
        // hashing them one by one), but those of proofs refused anyway.
        let values: Vec<&[u8]> = proofs
            .iter()
            .filter_map(|p| self.batch_leaf(p))
            .map(|b| b.value.as_slice())
            .collect();
        let mut leaves = tree::leaf_hashes_joined(&*self.join, &values).into_iter();
        // The nodes verified so far in this batch, by index: what the batch stores.
        let mut pending: HashMap<u64, TreeNode> = HashMap::new();
        let in_tree = 2 * self.tree.length;
        for (at, proof) in proofs.iter().enumerate() {
            if !self.is_batchable(proof) {
                results.push(Err(HypercoreError::InvalidArgument(
                    "only proofs at the core's fork without upgrade or manifest are batched",
                )));
                continue;
            }
            let leaf = self.batch_leaf(proof).and_then(|_| leaves.next());
            let (pend, cache) = (&pending, &self.node_cache);
            let known = move |i: u64| {
                pend.get(&i)
                    .copied()
                    .or_else(|| cache.peek(i))
                    .filter(|_| i < in_tree)
            };
            match self.verify_proof_with(proof, Some(&known), leaf).await {
                Ok(v) => {
                    pending.extend(v.batch.nodes.into_iter().map(|n| (n.index, n)));
                    if proof.block.is_some() {
                        blocks.push(at);
                    }
                    results.push(Ok(ApplyOutcome {
                        block: proof.block.as_ref().map(|b| b.index),
                        block_bytes: proof.block.as_ref().map_or(0, |b| b.value.len() as u64),
                        ..ApplyOutcome::default()
                    }));
                }
                Err(HypercoreError::Storage(e)) => return Err(HypercoreError::Storage(e)),
                Err(e) => results.push(Err(e)),
            }
        }
        if pending.is_empty() && blocks.is_empty() {
            return Ok(results);
        }
        let mut tb = self.tree.batch();
        tb.nodes = pending.into_values().collect();
        let mut batch = Batch::new();
        self.queue_tree_ops(&tb, &mut batch).await?;
        let mut set = Vec::new();
        for at in blocks {
            let Some(b) = proofs[at].block.as_mut() else {
                continue;
            };
            // As in `apply_verified`: a block already held (or twice in `proofs`) is stored once.
            if self.bitfield.set(b.index, true) {
                blocks::put_owned(&mut batch, b.index, std::mem::take(&mut b.value));
                set.push(b.index);
            }
        }
        for (page, bytes) in self.bitfield.take_dirty_pages() {
            batch.put(layout::bitfield_key(page), bytes);
        }
        if let Err(e) = self.write(batch).await {
            for i in set {
                self.bitfield.set(i, false);
            }
            self.bitfield.take_dirty_pages();
            return Err(e.into());
        }
        if self.contiguous_length < self.tree.length && self.bitfield.get(self.contiguous_length) {
            self.contiguous_length = self
                .bitfield
                .first_unset(self.contiguous_length)
                .unwrap_or(u64::MAX)
                .min(self.tree.length);
        }
        Ok(results)
    }

    /// Store a proof verified by [`Hypercore::verify_proof`] (with `block`, the proof's block).
    /// The replicator refines a reorg's batch before this (a higher `ancestors` and more nodes of
    /// the new tree, each checked against the batch's verified nodes); the batch must start from
    /// the current tree.
    pub(crate) async fn apply_verified(
        &mut self,
        verified: VerifiedProof,
        block: Option<&DataBlock>,
    ) -> Result<ApplyOutcome, HypercoreError> {
        self.check_not_frozen()?;
        let VerifiedProof {
            batch: tb,
            manifest: new_manifest,
        } = verified;
        if tb.upgraded && tb.tree_length != self.tree.length {
            return Err(HypercoreError::InvalidArgument(
                "the proof was verified against an older tree",
            ));
        }
        let mut out = ApplyOutcome::default();
        let mut batch = Batch::new();
        self.queue_tree_ops(&tb, &mut batch).await?;
        let old_length = self.tree.length;
        let reorg = tb.truncates();
        let saved = reorg.then(|| self.bitfield.clone());
        if reorg {
            blocks::remove(&self.storage, &mut batch, tb.ancestors, None).await?;
            self.bitfield.set_range(tb.ancestors, old_length, false);
        }
        let mut bit_set = None;
        if let Some(b) = block {
            // A block already held is not stored twice (chunks never overlap); it verified
            // against the same tree, so it is the same bytes.
            if self.bitfield.set(b.index, true) {
                blocks::put(&mut batch, b.index, &[&b.value]);
                bit_set = Some(b.index);
            }
            for (page, bytes) in self.bitfield.take_dirty_pages() {
                batch.put(layout::bitfield_key(page), bytes);
            }
            out.block = Some(b.index);
            out.block_bytes = b.value.len() as u64;
        }
        let manifest = new_manifest.as_ref().or(self.manifest.as_ref());
        if tb.upgraded || new_manifest.is_some() {
            let sig = tb
                .signature
                .clone()
                .unwrap_or_else(|| self.tree.signature.clone());
            batch.put(
                layout::header_key(),
                self.header_bytes(&tb, tb.hash(), &sig, manifest),
            );
        }
        if reorg {
            for (page, bytes) in self.bitfield.take_dirty_pages() {
                batch.put(layout::bitfield_key(page), bytes);
            }
        }
        if let Err(e) = self.write(batch).await {
            if let Some(saved) = saved {
                self.bitfield = saved;
            } else if let Some(i) = bit_set {
                self.bitfield.set(i, false);
            }
            self.bitfield.take_dirty_pages();
            return Err(e.into());
        }
        if reorg {
            self.contiguous_length = self.contiguous_length.min(tb.ancestors);
            self.on_truncate(tb.ancestors);
        }
        if tb.upgraded {
            self.tree.commit(&tb);
            out.upgraded_to = Some(tb.length);
        }
        if let Some(m) = new_manifest {
            let verifier = Verifier::for_core(self.key, m.clone());
            // A reader created from the key alone assumed a non-compat block key.
            if let Some(ek) = &self.encryption_key {
                self.encryption = Some(BlockEncryption::new(ek, &self.key, verifier.is_compat()));
            }
            self.verifier = Some(verifier);
            self.manifest = Some(m);
            out.manifest_stored = true;
        }
        if self.contiguous_length < self.tree.length && self.bitfield.get(self.contiguous_length) {
            self.contiguous_length = self
                .bitfield
                .first_unset(self.contiguous_length)
                .unwrap_or(u64::MAX)
                .min(self.tree.length);
        }
        Ok(out)
    }

    /// Re-hash every stored block against the tree, check the roots rebuild to the stored ones
    /// when all blocks are present, and check the signature of the current length.
    pub async fn verify_all(&self) -> Result<(), HypercoreError> {
        const CHUNK: u64 = 4096;
        let length = self.tree.length;
        let complete = self.contiguous_length == length;
        let mut rebuilt = TreeBatch::empty(self.tree.fork);
        let mut start = 0;
        while start < length {
            let end = (start + CHUNK).min(length);
            let rows = blocks::range(&self.storage, start, end).await?;
            let mut leaf_idx = Vec::with_capacity(rows.len());
            let mut leaves = Vec::with_capacity(rows.len());
            let mut expect = start;
            for &(i, ref v) in &rows {
                if complete && i != expect {
                    return Err(HypercoreError::BlockNotAvailable(expect));
                }
                expect = i + 1;
                let leaf = tree::block_node(2 * i, v);
                if complete {
                    rebuilt.append_leaf(leaf.hash, leaf.size);
                }
                leaf_idx.push(2 * i);
                leaves.push(leaf);
            }
            if complete && expect != end {
                return Err(HypercoreError::BlockNotAvailable(expect));
            }
            let stored = tree::get_nodes(&self.storage, &leaf_idx).await?;
            for (leaf, s) in leaves.iter().zip(stored) {
                match s {
                    Some(s) if s.hash == leaf.hash && s.size == leaf.size => {}
                    _ => return Err(HypercoreError::BlockMismatch(leaf.index / 2)),
                }
            }
            rebuilt.nodes.clear();
            start = end;
        }
        if complete && rebuilt.roots != self.tree.roots {
            return Err(HypercoreError::TreeMismatch);
        }
        if length > 0 {
            let v = self.verifier.as_ref().ok_or(HypercoreError::NoManifest)?;
            v.verify_with_roots(
                &self.tree.roots,
                &self.tree.hash(),
                length,
                self.tree.fork,
                &self.tree.signature,
            )?;
        }
        Ok(())
    }
}
