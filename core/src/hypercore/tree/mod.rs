//! The merkle tree of a hypercore over a [`Storage`] (`lib/merkle-tree.js`).
//!
//! [`MerkleTree`] holds only what a core needs in memory: the current roots (at most 64), length,
//! byte length, fork and signature. Every other node lives in storage in pages of 32
//! ([`NodePage`], keyed by [`layout::tree_node_key`]) and is read on demand (in one `get_many`
//! round trip where the set of nodes is known up front), so memory does not grow with the length
//! of the log.
//!
//! Changes go through a [`TreeBatch`]: appends, truncations and verified upgrades build one, its
//! [`TreeBatch::write_ops`] go into the same atomic storage batch as the blocks and the header, and
//! [`MerkleTree::commit`] adopts its state once that write succeeded.
//!
//! Split by concern: this file holds the hashing of leaves and parents, [`MerkleTree`] and
//! [`TreeBatch`]; `nodes` holds the node records, pages, reads and the node cache.

use crate::crypto::{leaf_hash, parent_hash, tree_hash, Hash};
use crate::parallel::{join2, split_by_cost, Join, Sequential, SPLIT_AT};
use crate::storage::{Batch, Storage};

use super::error::HypercoreError;
use super::flat_tree::{self, Iterator};
use super::layout;
use super::messages::TreeNode;

mod nodes;
#[cfg(test)]
mod tests;

use nodes::{load_pages, load_pages_cached};

pub use nodes::{
    decode_node, encode_node, get_node, get_nodes, page_of, require_node, require_nodes,
    roots_from_storage, NodePage, NODES_PER_PAGE, NODE_RECORD_LEN, PAGE_LEN,
};
pub(crate) use nodes::{get_nodes_cached, require_nodes_cached, NodeCache};

/// The leaf node of block data stored at leaf `index` (= 2 × block index).
#[inline]
pub fn block_node(index: u64, data: &[u8]) -> TreeNode {
    TreeNode {
        index,
        size: data.len() as u64,
        hash: leaf_hash(data),
    }
}

/// Blocks up to this size are copied behind their leaf prefix and hashed with `hash_many`
/// (most of such a block's hash is its final compression, which `hash_many` runs in SIMD lanes);
/// larger ones are hashed in place with `update_many` (no copy, lanes for all but the first and
/// last 128-byte block).
const COPY_MAX: usize = 512;

/// Blocks of at least this many bytes in all are hashed in two halves by
/// [`leaf_hashes_joined`] (whatever their number).
const SPLIT_BYTES: usize = 4 << 20;

/// Blocks [`leaf_hashes`] hashes per group (a multiple of `hash_many`'s four lanes).
const LEAF_GROUP: usize = 256;

/// Leaf hashes of many blocks (`crypto::leaf_hash` of each), several at a time in parallel SIMD
/// lanes: blocks of equal length eight at a time in AVX-512 registers where the CPU has AVX-512F
/// (`crypto::blake2b_x8`, about 3x blake2b_simd's speed), the others four at a time with
/// blake2b_simd's `hash_many` / `update_many`.
pub fn leaf_hashes<B: AsRef<[u8]>>(blocks: &[B]) -> Vec<Hash> {
    let mut out = vec![[0u8; 32]; blocks.len()];
    leaf_hashes_into(blocks, &mut out);
    out
}

/// [`leaf_hashes`], in two halves through `join` (at once where it runs them so) when there
/// are many blocks or many bytes: halves of about equal work (bytes), so that a few large
/// blocks among small ones do not leave one side idle.
pub(crate) fn leaf_hashes_joined<B: AsRef<[u8]> + Sync>(
    join: &dyn Join,
    blocks: &[B],
) -> Vec<Hash> {
    let bytes: usize = blocks.iter().map(|b| b.as_ref().len()).sum();
    if blocks.len() < 2 || (blocks.len() < SPLIT_AT && bytes < SPLIT_BYTES) {
        return leaf_hashes(blocks);
    }
    // A block's hash costs its bytes and about a 128-byte compression more (its last one).
    let mid = split_by_cost(blocks, |b| b.as_ref().len() + 128);
    let mut out = vec![[0u8; 32]; blocks.len()];
    let (lo, hi) = out.split_at_mut(mid);
    let (a, b) = blocks.split_at(mid);
    join2(join, || leaf_hashes_into(a, lo), || leaf_hashes_into(b, hi));
    out
}

/// [`leaf_hashes`] into `out` (as long as `blocks`).
fn leaf_hashes_into<B: AsRef<[u8]>>(blocks: &[B], out: &mut [Hash]) {
    debug_assert_eq!(blocks.len(), out.len());
    // With AVX-512, blocks of equal length go eight at a time through `blake2b_x8`; the rest (all
    // of them elsewhere) through blake2b_simd below.
    let mut rest: Vec<usize> = Vec::new();
    if blocks.len() >= 3 && crate::crypto::blake2b_x8::available() {
        let mut order: Vec<usize> = (0..blocks.len()).collect();
        order.sort_by_key(|&i| blocks[i].as_ref().len());
        for run in order.chunk_by(|&a, &b| blocks[a].as_ref().len() == blocks[b].as_ref().len()) {
            // Eight at a time; a remainder of three or more still runs in lanes (the spare ones
            // repeat its first block): eight lanes cost about what three blocks cost through
            // blake2b_simd.
            for group in run.chunks(8) {
                let lanes: Option<[&[u8]; 8]> = (group.len() >= 3).then(|| {
                    std::array::from_fn(|j| blocks[*group.get(j).unwrap_or(&group[0])].as_ref())
                });
                match lanes.and_then(crate::crypto::blake2b_x8::leaf_hashes_x8) {
                    Some(hashes) => {
                        for (&i, h) in group.iter().zip(hashes) {
                            out[i] = h;
                        }
                    }
                    None => rest.extend_from_slice(group),
                }
            }
        }
    } else {
        rest.extend(0..blocks.len());
    }
    let mut params = blake2b_simd::Params::new();
    params.hash_length(32);
    let prefix = |len: usize| {
        let mut p = [0u8; 9];
        p[1..].copy_from_slice(&(len as u64).to_le_bytes());
        p
    };
    // A few hundred blocks at a time, through buffers every group reuses: hashing 100k blocks
    // at once copied them all into one buffer beside 100k `HashManyJob`s (~20 MB of fresh
    // memory, faulted in page by page, for a 100k-line `bee batch`).
    let (mut buf, mut small, mut large) = (Vec::new(), Vec::new(), Vec::new());
    for group in rest.chunks(LEAF_GROUP) {
        buf.clear();
        small.clear();
        large.clear();
        // Small blocks: one buffer of `prefix ‖ block` records.
        for &i in group {
            let b = blocks[i].as_ref();
            if b.len() <= COPY_MAX {
                let start = buf.len();
                buf.extend_from_slice(&prefix(b.len()));
                buf.extend_from_slice(b);
                small.push((i, start, buf.len()));
            } else {
                // Large blocks: a state that has absorbed the prefix, then the block in place.
                let mut state = params.to_state();
                state.update(&prefix(b.len()));
                large.push((i, state, b));
            }
        }
        let mut jobs: Vec<blake2b_simd::many::HashManyJob<'_>> = small
            .iter()
            .map(|&(_, s, e)| blake2b_simd::many::HashManyJob::new(&params, &buf[s..e]))
            .collect();
        blake2b_simd::many::hash_many(jobs.iter_mut());
        for (job, &(i, _, _)) in jobs.iter().zip(&small) {
            out[i].copy_from_slice(&job.to_hash().as_bytes()[..32]);
        }
        blake2b_simd::many::update_many(large.iter_mut().map(|(_, state, b)| (state, *b)));
        for (i, state, _) in &large {
            out[*i].copy_from_slice(&state.finalize().as_bytes()[..32]);
        }
    }
}

/// The parent node `index` of `a` and `b` (`a` is the left child).
#[inline]
pub fn parent_node(index: u64, a: &TreeNode, b: &TreeNode) -> TreeNode {
    // JS `crypto.parent` orders by index; keep that so either argument order works.
    let (l, r) = if a.index <= b.index { (a, b) } else { (b, a) };
    TreeNode {
        index,
        size: a.size + b.size,
        hash: parent_hash(a.size + b.size, &l.hash, &r.hash),
    }
}

/// What [`parent_hash`] hashes: `0x01 ‖ u64le(size) ‖ left ‖ right`.
fn parent_message(size: u64, left: &Hash, right: &Hash) -> [u8; 73] {
    let mut m = [0u8; 73];
    m[0] = 1;
    m[1..9].copy_from_slice(&size.to_le_bytes());
    m[9..41].copy_from_slice(left);
    m[41..].copy_from_slice(right);
    m
}

/// Tree hash (root of roots) of `roots`.
pub fn hash_roots(roots: &[TreeNode]) -> Hash {
    tree_hash(roots.iter().map(|r| (r.index, r.size, &r.hash)))
}

/// Sum of the sizes of `nodes`, saturating (sizes read from a corrupt store may overflow; a
/// verified tree's never do).
pub fn total_size(nodes: &[TreeNode]) -> u64 {
    nodes.iter().fold(0, |sum, n| sum.saturating_add(n.size))
}

/// Where a byte offset falls ([`MerkleTree::seek`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekResult {
    /// Byte `offset` of block `index` (`offset` 0 and `index == length` at the very end).
    Found {
        /// Block index.
        index: u64,
        /// Offset inside the block.
        offset: u64,
    },
    /// The byte lies in blocks `start..end` whose tree nodes are not stored locally.
    Missing {
        /// First block of the range to fetch.
        start: u64,
        /// End (exclusive) of the range to fetch.
        end: u64,
    },
    /// The byte offset is past the end of the tree.
    OutOfBounds,
}

/// In-memory state of a core's merkle tree: roots, length, byte length, fork, signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerkleTree {
    /// Roots, left to right.
    pub roots: Vec<TreeNode>,
    /// Number of blocks.
    pub length: u64,
    /// Total byte size of the blocks as stored (including encryption padding).
    pub byte_length: u64,
    /// Fork id.
    pub fork: u64,
    /// Wire signature of `(tree hash, length, fork)` (empty for an empty reader core).
    pub signature: Vec<u8>,
}

impl MerkleTree {
    /// The tree of `length` blocks at `fork`, with its roots read from storage.
    pub async fn load<S: Storage>(
        storage: &S,
        length: u64,
        fork: u64,
        signature: Vec<u8>,
    ) -> Result<Self, HypercoreError> {
        let roots = roots_from_storage(storage, length).await?;
        let byte_length = roots
            .iter()
            .try_fold(0u64, |sum, r| sum.checked_add(r.size))
            .ok_or_else(|| HypercoreError::Corrupt("stored root sizes overflow".into()))?;
        Ok(MerkleTree {
            byte_length,
            roots,
            length,
            fork,
            signature,
        })
    }

    /// Tree hash of the current roots.
    pub fn hash(&self) -> Hash {
        hash_roots(&self.roots)
    }

    /// A batch that extends this tree.
    pub fn batch(&self) -> TreeBatch {
        TreeBatch {
            fork: self.fork,
            roots: self.roots.clone(),
            length: self.length,
            byte_length: self.byte_length,
            ancestors: self.length,
            signature: None,
            nodes: Vec::new(),
            upgraded: false,
            tree_length: self.length,
        }
    }

    /// A batch truncating this tree to `length` blocks at `fork` (JS `MerkleTree.truncate`):
    /// the roots are re-read from storage for the new length.
    pub async fn truncate_batch<S: Storage>(
        &self,
        storage: &S,
        length: u64,
        fork: u64,
    ) -> Result<TreeBatch, HypercoreError> {
        let mut b = self.batch();
        let full = flat_tree::roots_of_length(length);
        let keep = full
            .iter()
            .zip(&self.roots)
            .take_while(|(a, r)| **a == r.index)
            .count();
        let missing = require_nodes(storage, &full[keep..]).await?;
        b.roots.truncate(keep);
        b.roots.extend(missing);
        b.fork = fork;
        b.length = length;
        b.ancestors = length;
        b.byte_length = total_size(&b.roots);
        b.upgraded = true;
        Ok(b)
    }

    /// Adopt the state of a batch whose [`TreeBatch::write_ops`] were written.
    pub fn commit(&mut self, batch: &TreeBatch) {
        self.roots.clone_from(&batch.roots);
        self.length = batch.length;
        self.byte_length = batch.byte_length;
        self.fork = batch.fork;
        if let Some(s) = &batch.signature {
            self.signature.clone_from(s);
        }
    }

    /// Byte offset (as stored) of the leftmost block under node `index` (JS `byteOffset`).
    pub async fn byte_offset<S: Storage>(
        &self,
        storage: &S,
        index: u64,
    ) -> Result<u64, HypercoreError> {
        if index == 2 * self.length {
            return Ok(self.byte_length);
        }
        let index = flat_tree::left_span(index);
        let mut head = 0u64;
        let mut offset = 0u64;
        let mut wanted = Vec::new();
        for node in &self.roots {
            head += 2 * (node.index - head + 1);
            if index >= head {
                offset += node.size;
                continue;
            }
            let mut ite = Iterator::new(node.index);
            let mut cnt = 0;
            while ite.index != index {
                cnt += 1;
                if cnt >= 1024 {
                    return Err(HypercoreError::InvalidArgument("bad byte offset index"));
                }
                if index < ite.index {
                    ite.left_child();
                } else {
                    wanted.push(ite.left_child());
                    ite.sibling();
                }
            }
            let nodes = require_nodes(storage, &wanted).await?;
            return Ok(offset + total_size(&nodes));
        }
        Err(HypercoreError::OutOfBounds {
            index: index / 2,
            length: self.length,
        })
    }

    /// Find the block holding byte `bytes`, counting each block as its stored size minus
    /// `padding` (JS `ByteSeeker`).
    pub async fn seek<S: Storage>(
        &self,
        storage: &S,
        bytes: u64,
        padding: u64,
    ) -> Result<SeekResult, HypercoreError> {
        let size = self.byte_length - self.length * padding;
        if bytes > size {
            return Ok(SeekResult::OutOfBounds);
        }
        if bytes == 0 {
            return Ok(SeekResult::Found {
                index: 0,
                offset: 0,
            });
        }
        let mut bytes = bytes;
        for node in &self.roots {
            let size = node.size - padding * flat_tree::count_leaves(node.index);
            if bytes == size {
                return Ok(found(flat_tree::right_span(node.index) + 2, 0));
            }
            if bytes > size {
                bytes -= size;
                continue;
            }
            let mut ite = Iterator::new(node.index);
            while ite.index & 1 != 0 {
                let left = get_node(storage, ite.left_child()).await?;
                match left {
                    Some(l) => {
                        let size = l.size - padding * ite.count_leaves();
                        if size == bytes {
                            return Ok(found(ite.right_span() + 2, 0));
                        }
                        if size > bytes {
                            continue;
                        }
                        bytes -= size;
                        ite.sibling();
                    }
                    None => {
                        ite.parent();
                        let (s, e) = flat_tree::spans(ite.index);
                        return Ok(SeekResult::Missing {
                            start: s / 2,
                            end: e / 2 + 1,
                        });
                    }
                }
            }
            return Ok(found(ite.index, bytes));
        }
        Ok(SeekResult::OutOfBounds)
    }

    /// How many levels above node `index` a peer at `length` lacks (JS `missingNodes`): the
    /// `nodes` field of a block/hash request.
    pub async fn missing_nodes<S: Storage>(
        storage: &S,
        index: u64,
        length: u64,
    ) -> Result<u64, HypercoreError> {
        Self::missing_nodes_cached(storage, None, index, length).await
    }

    /// How many levels above node `index` a peer at `length` may lack at most, from the tree's
    /// shape alone (JS `maxMissingNodes`): the levels from `index` up to the root of `length`
    /// holding it (0 when `index` is such a root or not inside `length`). Used for proofs nobody
    /// asked for (pushes), where the peer's stored nodes are unknown.
    pub fn max_missing_nodes(index: u64, length: u64) -> u64 {
        if index >= flat_tree::MAX_INDEX || length >= flat_tree::MAX_INDEX / 2 {
            return 0;
        }
        let head = 2 * length;
        let mut ite = Iterator::new(index);
        if ite.peek_right_span() >= head || flat_tree::roots_of_length(length).contains(&index) {
            return 0;
        }
        ite.parent();
        let mut cnt = 0;
        // At most 58 levels separate an index below MAX_INDEX from the node spanning `head`.
        while !ite.contains(head) && cnt < 64 {
            cnt += 1;
            ite.parent();
        }
        cnt
    }

    /// [`MerkleTree::missing_nodes`], reading through `cache` when given.
    pub(crate) async fn missing_nodes_cached<S: Storage>(
        storage: &S,
        cache: Option<&NodeCache>,
        index: u64,
        length: u64,
    ) -> Result<u64, HypercoreError> {
        if index >= flat_tree::MAX_INDEX || length >= flat_tree::MAX_INDEX / 2 {
            return Err(HypercoreError::InvalidArgument("index out of range"));
        }
        let head = 2 * length;
        let mut ite = Iterator::new(index);
        if ite.peek_right_span() >= head {
            return Ok(0);
        }
        let mut chain = Vec::new();
        while !ite.contains(head) {
            chain.push(ite.index);
            if chain.len() >= 1024 {
                return Err(HypercoreError::InvalidArgument(
                    "bad missing_nodes arguments",
                ));
            }
            ite.parent();
        }
        let have = match cache {
            Some(cache) => get_nodes_cached(storage, cache, &chain).await?,
            None => get_nodes(storage, &chain).await?,
        };
        Ok(have.iter().take_while(|n| n.is_none()).count() as u64)
    }
}

fn found(leaf: u64, offset: u64) -> SeekResult {
    SeekResult::Found {
        index: leaf / 2,
        offset,
    }
}

/// Pending changes to a [`MerkleTree`] (JS `MerkleTreeBatch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeBatch {
    /// Fork after the batch.
    pub fork: u64,
    /// Roots after the batch.
    pub roots: Vec<TreeNode>,
    /// Length after the batch.
    pub length: u64,
    /// Byte length after the batch.
    pub byte_length: u64,
    /// Length of the prefix shared with the tree the batch started from; stored nodes and
    /// blocks past it are deleted on write.
    pub ancestors: u64,
    /// Signature of the new tree, once known.
    pub signature: Option<Vec<u8>>,
    /// New nodes to store.
    pub nodes: Vec<TreeNode>,
    /// Whether the length/roots changed.
    pub upgraded: bool,
    /// Length of the tree the batch started from.
    pub tree_length: u64,
}

impl TreeBatch {
    /// An empty tree (a reader core that has verified nothing yet).
    pub fn empty(fork: u64) -> Self {
        TreeBatch {
            fork,
            roots: Vec::new(),
            length: 0,
            byte_length: 0,
            ancestors: 0,
            signature: None,
            nodes: Vec::new(),
            upgraded: false,
            tree_length: 0,
        }
    }

    /// Tree hash of the batch's roots.
    pub fn hash(&self) -> Hash {
        hash_roots(&self.roots)
    }

    /// Append one block (hashes it).
    pub fn append(&mut self, data: &[u8]) {
        self.append_leaf(leaf_hash(data), data.len() as u64);
    }

    /// Append one block given its leaf hash and size.
    pub fn append_leaf(&mut self, hash: Hash, size: u64) {
        let head = self.length * 2;
        let mut ite = Iterator::new(head);
        self.append_root(
            TreeNode {
                index: head,
                size,
                hash,
            },
            &mut ite,
        );
    }

    /// Append many blocks given their leaf hashes and sizes: the same nodes, in the same order,
    /// as [`TreeBatch::append_leaf`] of each in turn, but the parent hashes are computed after
    /// the merges, one tree level at a time, eight at a time in AVX-512 lanes where the CPU has
    /// them (parents of one level do not depend on each other; every parent's message is 73
    /// bytes). A 100k-block `bee batch` spent ~9% of its CPU hashing parents one at a time.
    pub fn append_leaves(&mut self, leaves: impl ExactSizeIterator<Item = (Hash, u64)>) {
        self.append_leaves_joined(&Sequential, leaves);
    }

    /// [`TreeBatch::append_leaves`], the parents of a wide tree level hashed in two halves
    /// through `join` (at once where it runs them so).
    pub(crate) fn append_leaves_joined(
        &mut self,
        join: &dyn Join,
        leaves: impl ExactSizeIterator<Item = (Hash, u64)>,
    ) {
        if leaves.len() < 8 || !crate::crypto::blake2b_x8::available() {
            for (hash, size) in leaves {
                self.append_leaf(hash, size);
            }
            return;
        }
        self.append_leaves_by_level(join, leaves);
    }

    /// [`TreeBatch::append_leaves`]'s level-by-level path, whatever the CPU (without AVX-512
    /// every parent is hashed alone): its own entry point so that the tests run it on every
    /// machine, not only on one with AVX-512.
    pub(crate) fn append_leaves_by_level(
        &mut self,
        join: &dyn Join,
        leaves: impl core::iter::Iterator<Item = (Hash, u64)>,
    ) {
        let (at_least, _) = leaves.size_hint();
        // Positions: below `old` the roots the batch starts from, then each new node as
        // `append_root` would push it (parents with their hash still to compute), written
        // straight into `self.nodes` at `base` (a copy of ~10 MB of fresh memory fewer for a
        // 100k-block append).
        let old_roots: Vec<TreeNode> = std::mem::take(&mut self.roots);
        let old = old_roots.len();
        let base = self.nodes.len();
        self.nodes.reserve(2 * at_least);
        let at = |nodes: &Vec<TreeNode>, pos: usize| -> TreeNode {
            if pos < old {
                old_roots[pos]
            } else {
                nodes[base + pos - old]
            }
        };
        // The depth of each root (in `roots`, by position) and, for each depth, the parents
        // made at that depth as (parent, left, right) positions: parents of one depth do not
        // depend on each other, and their children (leaves, earlier roots or parents of a
        // lower depth) are all hashed once the lower depths are.
        let mut roots: Vec<(usize, u8)> = (0..old).map(|i| (i, 0)).collect();
        // Each depth sized once (about `n >> depth` parents; a few more where old roots merge
        // in), not grown by doubling: ~2.4 MB of it for a 100k-block append.
        let mut by_depth: Vec<Vec<(usize, usize, usize)>> = (1..usize::BITS)
            .map(|d| at_least >> d)
            .take_while(|&n| n > 0)
            .map(|n| Vec::with_capacity(n + 1))
            .collect();
        let mut pos = old;
        for (hash, size) in leaves {
            self.upgraded = true;
            let mut ite = Iterator::new(self.length * 2);
            self.length += 1;
            self.byte_length += size;
            self.nodes.push(TreeNode {
                index: ite.index,
                size,
                hash,
            });
            roots.push((pos, 0));
            pos += 1;
            while roots.len() > 1 {
                let n = roots.len();
                let ((a, da), (b, db)) = (roots[n - 1], roots[n - 2]);
                let (na, nb) = (at(&self.nodes, a), at(&self.nodes, b));
                if ite.sibling() != nb.index {
                    ite.sibling();
                    break;
                }
                let (l, r) = if na.index <= nb.index { (a, b) } else { (b, a) };
                self.nodes.push(TreeNode {
                    index: ite.parent(),
                    size: na.size + nb.size,
                    hash: [0; 32],
                });
                let d = da.max(db) + 1;
                if by_depth.len() < usize::from(d) {
                    by_depth.resize_with(usize::from(d), Vec::new);
                }
                by_depth[usize::from(d) - 1].push((pos, l, r));
                roots.truncate(n - 2);
                roots.push((pos, d));
                pos += 1;
            }
        }
        // The hashes of `parents` (of one depth), eight at a time, into `out`.
        let hash_parents =
            |nodes: &Vec<TreeNode>, parents: &[(usize, usize, usize)], out: &mut [Hash]| {
                for (group, out) in parents.chunks(8).zip(out.chunks_mut(8)) {
                    let mut msgs = [[0u8; 73]; 8];
                    for (m, &(p, l, r)) in msgs.iter_mut().zip(group) {
                        let (np, nl, nr) = (at(nodes, p), at(nodes, l), at(nodes, r));
                        *m = parent_message(np.size, &nl.hash, &nr.hash);
                    }
                    let lanes: Option<[&[u8]; 8]> = (group.len() >= 3)
                        .then(|| std::array::from_fn(|j| &msgs[j.min(group.len() - 1)][..]));
                    match lanes.and_then(crate::crypto::blake2b_x8::hashes_x8) {
                        Some(hashes) => out.copy_from_slice(&hashes[..group.len()]),
                        None => {
                            for (h, &(p, l, r)) in out.iter_mut().zip(group) {
                                let (np, nl, nr) = (at(nodes, p), at(nodes, l), at(nodes, r));
                                *h = parent_hash(np.size, &nl.hash, &nr.hash);
                            }
                        }
                    }
                }
            };
        let mut hashes: Vec<Hash> = Vec::new();
        for level in &by_depth {
            hashes.clear();
            hashes.resize(level.len(), [0; 32]);
            if level.len() >= SPLIT_AT {
                // Two halves of whole groups of eight.
                let mid = level.len() / 2 / 8 * 8;
                let (lo, hi) = hashes.split_at_mut(mid);
                let nodes = &self.nodes;
                join2(
                    join,
                    || hash_parents(nodes, &level[..mid], lo),
                    || hash_parents(nodes, &level[mid..], hi),
                );
            } else {
                hash_parents(&self.nodes, level, &mut hashes);
            }
            for (&(p, _, _), h) in level.iter().zip(&hashes) {
                // A parent is always new: its position is past `old`.
                self.nodes[base + p - old].hash = *h;
            }
        }
        self.roots = roots.iter().map(|&(i, _)| at(&self.nodes, i)).collect();
    }

    /// Add `node` (the subtree at `ite`) to the right of the roots and merge equal roots (JS
    /// `appendRoot`).
    pub fn append_root(&mut self, node: TreeNode, ite: &mut Iterator) {
        self.upgraded = true;
        self.length += ite.factor / 2;
        self.byte_length += node.size;
        self.roots.push(node);
        self.nodes.push(node);
        while self.roots.len() > 1 {
            let n = self.roots.len();
            let a = self.roots[n - 1];
            let b = self.roots[n - 2];
            if ite.sibling() != b.index {
                ite.sibling();
                break;
            }
            let p = parent_node(ite.parent(), &a, &b);
            self.nodes.push(p);
            self.roots.truncate(n - 2);
            self.roots.push(p);
        }
    }

    /// Queue this batch's storage changes: new nodes, and when the batch cut the tree (truncate
    /// or reorg) the removal of every node past the shared prefix (JS `_commitUpgrade`); removing
    /// blocks and bitfield bits is the caller's part.
    ///
    /// Nodes are stored in pages ([`NodePage`]), so the pages this batch touches are read from
    /// `storage` first and written back whole.
    pub async fn write_ops<S: Storage>(
        &self,
        storage: &S,
        out: &mut Batch,
    ) -> Result<(), HypercoreError> {
        self.write_ops_cached(storage, None, &Sequential, out).await
    }

    /// [`TreeBatch::write_ops`], reading the pages it modifies through `cache` when given.
    pub(crate) async fn write_ops_cached<S: Storage>(
        &self,
        storage: &S,
        cache: Option<&NodeCache>,
        join: &dyn Join,
        out: &mut Batch,
    ) -> Result<(), HypercoreError> {
        // Nodes at or past `cut` are gone (truncate / reorg); single nodes below it may go too.
        let mut cut = u64::MAX;
        let mut removed = Vec::new();
        if self.truncates() {
            cut = 2 * self.ancestors;
            if self.ancestors > 0 {
                let head = self.ancestors * 2;
                let mut ite = Iterator::new(head - 2);
                loop {
                    if ite.contains(head) && ite.index < head {
                        removed.push(ite.index);
                    }
                    if ite.offset == 0 {
                        break;
                    }
                    ite.parent();
                }
            }
        }
        // The pages this batch touches, each once, in order: an append's nodes come in runs
        // of one page (the 200k nodes of a 100k-block append are in ~6k pages), so runs are
        // collapsed before the sort.
        let mut touched: Vec<u64> = Vec::new();
        let indexes = self
            .nodes
            .iter()
            .map(|n| n.index)
            .chain(removed.iter().copied());
        for p in indexes.chain((cut != u64::MAX).then_some(cut)).map(page_of) {
            if touched.last() != Some(&p) {
                touched.push(p);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        // Pages entirely past the cut start empty; the others are read and modified.
        let first_gone = if cut == u64::MAX {
            u64::MAX
        } else {
            page_of(cut) + u64::from(cut % NODES_PER_PAGE != 0)
        };
        let kept = touched.partition_point(|&p| p < first_gone);
        let wanted = touched[..kept].iter().copied();
        let mut loaded = match cache {
            Some(cache) => load_pages_cached(storage, cache, wanted).await?,
            None => load_pages(storage, wanted).await?,
        };
        if cut != u64::MAX {
            out.delete_range(
                layout::tree_node_key(first_gone),
                layout::tag_end(layout::TREE_NODE),
            );
        }
        let mut pages: Vec<(u64, NodePage)> = touched
            .iter()
            .map(|&p| {
                let page = loaded.remove(&p).flatten();
                (p, page.unwrap_or_else(|| NodePage::empty(p)))
            })
            .collect();
        let find = |pages: &[(u64, NodePage)], p: u64| pages.binary_search_by_key(&p, |e| e.0).ok();
        if cut != u64::MAX {
            for (_, page) in pages.iter_mut() {
                page.truncate(cut);
            }
        }
        for &i in &removed {
            if let Some(k) = find(&pages, page_of(i)) {
                pages[k].1.remove(i);
            }
        }
        // Each node into its page; with many pages, the two halves of the pages at once (where
        // `join` runs them so), each half taking the nodes of its pages.
        let fill = |pages: &mut [(u64, NodePage)]| {
            let (Some(first), Some(last)) = (pages.first(), pages.last()) else {
                return;
            };
            let (first, last) = (first.0, last.0);
            // The page of the previous node first: the next one is most often in it.
            let mut k = 0;
            for n in &self.nodes {
                let p = page_of(n.index);
                if p < first || p > last {
                    continue;
                }
                if pages.get(k).map(|e| e.0) != Some(p) {
                    let Some(found) = find(pages, p) else {
                        continue;
                    };
                    k = found;
                }
                pages[k].1.put(n);
            }
        };
        if pages.len() >= SPLIT_AT / NODES_PER_PAGE as usize * 2 {
            let mid = pages.len() / 2;
            let (lo, hi) = pages.split_at_mut(mid);
            join2(join, || fill(lo), || fill(hi));
        } else {
            fill(&mut pages);
        }
        for (p, page) in pages {
            if page.is_empty() {
                out.delete(layout::tree_node_key(p));
            } else {
                out.put(layout::tree_node_key(p), page.into_bytes());
            }
        }
        Ok(())
    }

    /// Whether the batch removes nodes (and so blocks) past [`TreeBatch::ancestors`].
    pub fn truncates(&self) -> bool {
        self.upgraded && self.ancestors < self.tree_length
    }
}
