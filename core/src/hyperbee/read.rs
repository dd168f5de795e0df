//! Reading the B-tree: the [`TreeRead`] view that every read algorithm (get, range, diff) runs
//! on, its implementation over committed blocks ([`CommittedTree`], through the block cache),
//! and JS `Batch._get`.
//!
//! A batch reads through the same algorithms over its in-memory tree
//! ([`super::tree::ArenaTree`]), so a batch sees its own pending writes, as in JS.

use std::cmp::Ordering;
use std::sync::Arc;

use super::cache::{Block, BlockCache, NodeLevel};
use super::error::BeeError;
use super::source::BeeCore;
use crate::hypercore::HypercoreError;

/// Deepest tree any read or write walks. A B-tree of order 5 holding 2^64 keys is 28 levels
/// deep; anything deeper is a corrupt (or cyclic) index.
pub(crate) const MAX_DEPTH: usize = 64;

/// A block as a read returns it: committed (decoded, from the core) or pending in a batch.
#[derive(Debug, Clone)]
pub(crate) enum BlockView {
    /// A block of the core.
    Committed(Arc<Block>),
    /// A block of a batch, not yet appended.
    Pending {
        /// Its future seq.
        seq: u64,
        /// The key.
        key: Arc<[u8]>,
        /// The value.
        value: Option<Arc<[u8]>>,
    },
}

impl BlockView {
    pub fn seq(&self) -> u64 {
        match self {
            BlockView::Committed(b) => b.seq,
            BlockView::Pending { seq, .. } => *seq,
        }
    }
    pub fn key(&self) -> &[u8] {
        match self {
            BlockView::Committed(b) => b.key(),
            BlockView::Pending { key, .. } => key,
        }
    }
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            BlockView::Committed(b) => b.value(),
            BlockView::Pending { value, .. } => value.as_deref(),
        }
    }
}

/// What every read algorithm needs of a tree (JS `TreeNode` / `BlockEntry` / `Batch`).
pub(crate) trait TreeRead {
    /// A tree node.
    type Node: Clone;
    /// The root (JS `getRoot(false)`); `None` for an empty bee.
    async fn root(&mut self) -> Result<Option<Self::Node>, BeeError>;
    /// Seq of the block the node was read from (JS `node.block.seq`).
    fn node_seq(&self, n: &Self::Node) -> u64;
    /// Number of keys.
    fn keys_len(&self, n: &Self::Node) -> usize;
    /// Number of children (0 for a leaf).
    fn children_len(&self, n: &Self::Node) -> usize;
    /// Seq of the block holding key `i`.
    fn key_seq(&self, n: &Self::Node, i: usize) -> Result<u64, BeeError>;
    /// `(seq, offset)` of child `i`.
    fn child_ptr(&self, n: &Self::Node, i: usize) -> Result<(u64, u64), BeeError>;
    /// Key `i` (JS `getKey`).
    async fn key(&mut self, n: &Self::Node, i: usize) -> Result<Arc<[u8]>, BeeError>;
    /// `key` compared with key `i` (what a binary search needs, without copying the key).
    async fn cmp_key(&mut self, n: &Self::Node, i: usize, key: &[u8])
        -> Result<Ordering, BeeError>;
    /// Child `i` (JS `getChildNode`).
    async fn child(&mut self, n: &Self::Node, i: usize) -> Result<Self::Node, BeeError>;
    /// Block `seq` (JS `getBlock`).
    async fn block(&mut self, seq: u64) -> Result<BlockView, BeeError>;
    /// The core's length as the reader sees it (JS `batch.core.length`).
    fn committed_length(&self) -> u64;
    /// JS `children[i].value = null` (the range iterator drops what it walked past).
    fn unlink_child(&mut self, _n: &Self::Node, _i: usize) {}
}

/// Where committed blocks are read from: a core handle at a version, through the cache.
pub(crate) struct ReadCtx<C> {
    /// The handle reads go through (a snapshot, or the live core while writing).
    pub core: C,
    /// The bee's block cache.
    pub cache: Arc<BlockCache>,
    /// The version read (blocks below it are the tree).
    pub version: u64,
    /// The fork the handle is on.
    pub fork: u64,
    /// The handle's length.
    pub length: u64,
}

impl<C: BeeCore> ReadCtx<C> {
    /// A context reading `version` through `core` (whose state is `length` / `fork`).
    pub fn new(core: C, cache: Arc<BlockCache>, version: u64, length: u64, fork: u64) -> Self {
        ReadCtx {
            core,
            cache,
            version,
            fork,
            length,
        }
    }

    /// Decoded block `seq`, from the cache or the core.
    pub async fn block(&self, seq: u64) -> Result<Arc<Block>, BeeError> {
        if seq == 0 {
            return Err(BeeError::corrupt(
                seq,
                "a tree node refers to the header block",
            ));
        }
        if seq >= self.version {
            return Err(BeeError::corrupt(
                seq,
                "a tree node refers to a block past the version read",
            ));
        }
        if let Some(b) = self.cache.get(seq, self.fork) {
            return Ok(b);
        }
        let blocks = match self.core.get_around(seq, self.version).await {
            Ok(blocks) => blocks,
            Err(HypercoreError::OutOfBounds { length, .. }) => {
                return Err(BeeError::VersionNotAvailable {
                    version: self.version,
                    length,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let mut found = None;
        for (i, raw) in blocks {
            if i == seq {
                let b = Arc::new(Block::decode(seq, raw)?);
                self.cache.insert(seq, self.fork, b.clone());
                found = Some(b);
            } else if i > 0 && i < self.version {
                // Neighbours that are not nodes are simply not cached.
                if let Ok(b) = Block::decode(i, raw) {
                    self.cache.insert(i, self.fork, Arc::new(b));
                }
            }
        }
        found.ok_or(BeeError::BlockNotAvailable(seq))
    }
}

/// A node of a committed block: level `offset` of `block`'s index.
#[derive(Debug, Clone)]
pub(crate) struct CNode {
    pub block: Arc<Block>,
    pub levels: Arc<[NodeLevel]>,
    pub offset: usize,
}

impl CNode {
    fn new(block: Arc<Block>, offset: u64) -> Result<Self, BeeError> {
        let levels = block.levels()?.clone();
        let offset = usize::try_from(offset)
            .ok()
            .filter(|&o| o < levels.len())
            .ok_or_else(|| {
                BeeError::corrupt(
                    block.seq,
                    "a child refers to a node the block does not have",
                )
            })?;
        Ok(CNode {
            block,
            levels,
            offset,
        })
    }
    pub fn level(&self) -> &crate::hyperbee::messages::Level {
        &self.levels[self.offset].level
    }
}

/// The tree as stored in the core at `ctx.version`.
pub(crate) struct CommittedTree<C> {
    pub ctx: ReadCtx<C>,
}

impl<C: BeeCore> TreeRead for CommittedTree<C> {
    type Node = CNode;

    async fn root(&mut self) -> Result<Option<CNode>, BeeError> {
        if self.ctx.version < 2 {
            return Ok(None);
        }
        let b = self.ctx.block(self.ctx.version - 1).await?;
        if b.levels()?.is_empty() {
            return Err(BeeError::corrupt(
                b.seq,
                "the block has no root node (a version inside a batch?)",
            ));
        }
        Ok(Some(CNode::new(b, 0)?))
    }

    fn node_seq(&self, n: &CNode) -> u64 {
        n.block.seq
    }

    fn keys_len(&self, n: &CNode) -> usize {
        n.level().keys.len()
    }

    fn children_len(&self, n: &CNode) -> usize {
        n.level().children.len() / 2
    }

    fn key_seq(&self, n: &CNode, i: usize) -> Result<u64, BeeError> {
        n.level()
            .keys
            .get(i)
            .copied()
            .ok_or_else(|| BeeError::corrupt(n.block.seq, "a key index out of range"))
    }

    fn child_ptr(&self, n: &CNode, i: usize) -> Result<(u64, u64), BeeError> {
        let c = &n.level().children;
        match (c.get(2 * i), c.get(2 * i + 1)) {
            (Some(&s), Some(&o)) => Ok((s, o)),
            _ => Err(BeeError::corrupt(n.block.seq, "a child index out of range")),
        }
    }

    async fn key(&mut self, n: &CNode, i: usize) -> Result<Arc<[u8]>, BeeError> {
        let seq = self.key_seq(n, i)?;
        let memo = &n.levels[n.offset].key_bytes[i];
        if let Some(k) = memo.get() {
            return Ok(k.clone());
        }
        let k: Arc<[u8]> = if seq == n.block.seq {
            n.block.key().into()
        } else {
            self.ctx.block(seq).await?.key().into()
        };
        let _ = memo.set(k.clone());
        Ok(k)
    }

    async fn cmp_key(&mut self, n: &CNode, i: usize, key: &[u8]) -> Result<Ordering, BeeError> {
        self.key_seq(n, i)?;
        if let Some(k) = n.levels[n.offset].key_bytes[i].get() {
            return Ok(key.cmp(k));
        }
        Ok(key.cmp(&self.key(n, i).await?))
    }

    async fn child(&mut self, n: &CNode, i: usize) -> Result<CNode, BeeError> {
        let (seq, offset) = self.child_ptr(n, i)?;
        let b = if seq == n.block.seq {
            n.block.clone()
        } else {
            self.ctx.block(seq).await?
        };
        CNode::new(b, offset)
    }

    async fn block(&mut self, seq: u64) -> Result<BlockView, BeeError> {
        Ok(BlockView::Committed(self.ctx.block(seq).await?))
    }

    fn committed_length(&self) -> u64 {
        self.ctx.length
    }
}

/// Binary search of `key` among node `n`'s keys (JS's loop): `Ok(mid)` when found, else
/// `Err(i)`, the child to descend into.
pub(crate) async fn search<T: TreeRead>(
    t: &mut T,
    n: &T::Node,
    key: &[u8],
) -> Result<Result<usize, usize>, BeeError> {
    let (mut s, mut e) = (0, t.keys_len(n));
    while s < e {
        let mid = (s + e) >> 1;
        match t.cmp_key(n, mid, key).await? {
            Ordering::Equal => return Ok(Ok(mid)),
            Ordering::Less => e = mid,
            Ordering::Greater => s = mid + 1,
        }
    }
    Ok(Err(s))
}

/// JS `Batch._get`: the block holding `key`'s current value, `None` when absent or deleted.
///
/// One deliberate difference: JS first checks whether the node's own block wrote `key`
/// (`isTarget`) and, if that block is a put, returns it. After `key` is deleted, a node written
/// by that put can stay on `key`'s search path (a split sibling that the delete did not
/// rewrite), and JS then returns the deleted value (reproduced against hyperbee 2.27.3 in
/// `tests/tests/bee_interop.rs`). Here the search decides: the same answers as JS everywhere
/// else, and a deleted key stays deleted.
pub(crate) async fn get<T: TreeRead>(t: &mut T, key: &[u8]) -> Result<Option<BlockView>, BeeError> {
    let Some(mut node) = t.root().await? else {
        return Ok(None);
    };
    for _ in 0..MAX_DEPTH {
        match search(t, &node, key).await? {
            Ok(mid) => {
                let seq = t.key_seq(&node, mid)?;
                return Ok(Some(t.block(seq).await?));
            }
            Err(i) => {
                if t.children_len(&node) == 0 {
                    return Ok(None);
                }
                node = t.child(&node, i).await?;
            }
        }
    }
    Err(BeeError::corrupt(
        t.node_seq(&node),
        "the tree is deeper than any valid bee (a cycle?)",
    ))
}
