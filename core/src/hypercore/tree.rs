//! The merkle tree of a hypercore over a [`Storage`] (`lib/merkle-tree.js`).
//!
//! [`MerkleTree`] holds only what a core needs in memory: the current roots (at most 64), length,
//! byte length, fork and signature. Every other node lives in storage under
//! in pages of 32 ([`NodePage`], keyed by [`layout::tree_node_key`]) and is read on demand (in one `get_many` round trip where the set of
//! nodes is known up front), so memory does not grow with the length of the log.
//!
//! Changes go through a [`TreeBatch`]: appends, truncations and verified upgrades build one, its
//! [`TreeBatch::write_ops`] go into the same atomic storage batch as the blocks and the header, and
//! [`MerkleTree::commit`] adopts its state once that write succeeded.

use crate::crypto::{leaf_hash, parent_hash, tree_hash, Hash};
use crate::storage::{Batch, Storage};

use super::error::HypercoreError;
use super::flat_tree::{self, Iterator};
use super::layout;
use super::messages::TreeNode;

/// Stored size of a tree node record: `u64le(size) ‖ hash`.
pub const NODE_RECORD_LEN: usize = 40;

/// The stored record of a node.
#[inline]
pub fn encode_node(node: &TreeNode) -> [u8; NODE_RECORD_LEN] {
    let mut out = [0u8; NODE_RECORD_LEN];
    out[..8].copy_from_slice(&node.size.to_le_bytes());
    out[8..].copy_from_slice(&node.hash);
    out
}

/// Parse the stored record of node `index`.
pub fn decode_node(index: u64, bytes: &[u8]) -> Result<TreeNode, HypercoreError> {
    if bytes.len() != NODE_RECORD_LEN {
        return Err(HypercoreError::Corrupt(format!(
            "tree node {index} record has {} bytes",
            bytes.len()
        )));
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&bytes[..8]);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&bytes[8..]);
    Ok(TreeNode {
        index,
        size: u64::from_le_bytes(size),
        hash,
    })
}

/// Tree nodes per stored page. Nodes live in pages of consecutive flat-tree indexes, so that an
/// append of n blocks writes about 2n/32 records instead of 2n (the dominant storage cost of
/// small blocks), while a single node read still costs one point read.
pub const NODES_PER_PAGE: u64 = 32;
/// Stored size of a page: `u32le(presence bitmap) ‖ 32 × node record`.
pub const PAGE_LEN: usize = 4 + NODES_PER_PAGE as usize * NODE_RECORD_LEN;

/// The page holding node `index`.
#[inline]
pub fn page_of(index: u64) -> u64 {
    index / NODES_PER_PAGE
}

/// A decoded page of up to [`NODES_PER_PAGE`] nodes. Clones share the bytes (copied on the
/// first change): the node cache hands out copies of its pages for every proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePage {
    page: u64,
    bytes: std::sync::Arc<Vec<u8>>,
}

impl NodePage {
    /// An empty page.
    pub fn empty(page: u64) -> Self {
        NodePage {
            page,
            bytes: std::sync::Arc::new(vec![0; PAGE_LEN]),
        }
    }

    /// Parse a stored page.
    pub fn decode(page: u64, bytes: Vec<u8>) -> Result<Self, HypercoreError> {
        if bytes.len() != PAGE_LEN {
            return Err(HypercoreError::Corrupt(format!(
                "tree node page {page} record has {} bytes",
                bytes.len()
            )));
        }
        Ok(NodePage {
            page,
            bytes: std::sync::Arc::new(bytes),
        })
    }

    fn bitmap(&self) -> u32 {
        u32::from_le_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])
    }

    fn set_bitmap(&mut self, v: u32) {
        std::sync::Arc::make_mut(&mut self.bytes)[..4].copy_from_slice(&v.to_le_bytes());
    }

    fn slot(&self, index: u64) -> usize {
        debug_assert_eq!(page_of(index), self.page);
        (index % NODES_PER_PAGE) as usize
    }

    /// Node `index` if the page holds it.
    pub fn get(&self, index: u64) -> Result<Option<TreeNode>, HypercoreError> {
        let slot = self.slot(index);
        if self.bitmap() & (1 << slot) == 0 {
            return Ok(None);
        }
        let at = 4 + slot * NODE_RECORD_LEN;
        decode_node(index, &self.bytes[at..at + NODE_RECORD_LEN]).map(Some)
    }

    /// Store `node` (its index must fall in this page).
    pub fn put(&mut self, node: &TreeNode) {
        let slot = self.slot(node.index);
        let at = 4 + slot * NODE_RECORD_LEN;
        std::sync::Arc::make_mut(&mut self.bytes)[at..at + NODE_RECORD_LEN]
            .copy_from_slice(&encode_node(node));
        self.set_bitmap(self.bitmap() | 1 << slot);
    }

    /// Remove node `index`.
    pub fn remove(&mut self, index: u64) {
        let slot = self.slot(index);
        let at = 4 + slot * NODE_RECORD_LEN;
        std::sync::Arc::make_mut(&mut self.bytes)[at..at + NODE_RECORD_LEN].fill(0);
        self.set_bitmap(self.bitmap() & !(1 << slot));
    }

    /// Remove every node with an index `>= from`.
    pub fn truncate(&mut self, from: u64) {
        let start = self.page * NODES_PER_PAGE;
        for index in from.max(start)..start + NODES_PER_PAGE {
            self.remove(index);
        }
    }

    /// True when the page holds no node.
    pub fn is_empty(&self) -> bool {
        self.bitmap() == 0
    }

    /// The stored bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

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

/// Leaf hashes of many blocks (`crypto::leaf_hash` of each), several at a time in parallel SIMD
/// lanes: blocks of equal length eight at a time in AVX-512 registers where the CPU has AVX-512F
/// (`crypto::blake2b_x8`, about 3x blake2b_simd's speed), the others four at a time with
/// blake2b_simd's `hash_many` / `update_many`.
pub fn leaf_hashes<B: AsRef<[u8]>>(blocks: &[B]) -> Vec<Hash> {
    let mut out = vec![[0u8; 32]; blocks.len()];
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
    let blocks: Vec<(usize, &[u8])> = rest.into_iter().map(|i| (i, blocks[i].as_ref())).collect();
    let mut params = blake2b_simd::Params::new();
    params.hash_length(32);
    let prefix = |len: usize| {
        let mut p = [0u8; 9];
        p[1..].copy_from_slice(&(len as u64).to_le_bytes());
        p
    };

    // Small blocks: one buffer of `prefix ‖ block` records.
    let mut buf = Vec::with_capacity(
        blocks
            .iter()
            .map(|(_, b)| b.len())
            .filter(|&l| l <= COPY_MAX)
            .map(|l| l + 9)
            .sum(),
    );
    let mut small = Vec::new();
    // Large blocks: a state that has absorbed the prefix, then the block in place.
    let mut large = Vec::new();
    for &(i, b) in &blocks {
        if b.len() <= COPY_MAX {
            let start = buf.len();
            buf.extend_from_slice(&prefix(b.len()));
            buf.extend_from_slice(b);
            small.push((i, start, buf.len()));
        } else {
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
    out
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

/// Tree hash (root of roots) of `roots`.
pub fn hash_roots(roots: &[TreeNode]) -> Hash {
    tree_hash(roots.iter().map(|r| (r.index, r.size, &r.hash)))
}

/// Sum of the sizes of `nodes`, saturating (sizes read from a corrupt store may overflow; a
/// verified tree's never do).
pub fn total_size(nodes: &[TreeNode]) -> u64 {
    nodes.iter().fold(0, |sum, n| sum.saturating_add(n.size))
}

/// Read node `index` from storage.
pub async fn get_node<S: Storage>(
    storage: &S,
    index: u64,
) -> Result<Option<TreeNode>, HypercoreError> {
    match storage.get(&layout::tree_node_key(page_of(index))).await? {
        Some(v) => NodePage::decode(page_of(index), v)?.get(index),
        None => Ok(None),
    }
}

/// Read node `index`, failing with [`HypercoreError::MissingNode`] when absent.
pub async fn require_node<S: Storage>(storage: &S, index: u64) -> Result<TreeNode, HypercoreError> {
    get_node(storage, index)
        .await?
        .ok_or(HypercoreError::MissingNode(index))
}

/// Read the nodes `indexes` in one round trip.
pub async fn get_nodes<S: Storage>(
    storage: &S,
    indexes: &[u64],
) -> Result<Vec<Option<TreeNode>>, HypercoreError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let pages = load_pages(storage, indexes.iter().map(|&i| page_of(i))).await?;
    indexes
        .iter()
        .map(|&i| match pages.get(&page_of(i)) {
            Some(Some(p)) => p.get(i),
            _ => Ok(None),
        })
        .collect()
}

/// Read the pages `pages` (duplicates allowed) in one round trip; absent pages map to `None`.
async fn load_pages<S: Storage>(
    storage: &S,
    pages: impl IntoIterator<Item = u64>,
) -> Result<std::collections::BTreeMap<u64, Option<NodePage>>, HypercoreError> {
    let mut wanted: Vec<u64> = pages.into_iter().collect();
    wanted.sort_unstable();
    wanted.dedup();
    let keys: Vec<Vec<u8>> = wanted.iter().map(|&p| layout::tree_node_key(p)).collect();
    let vals = storage.get_many(&keys).await?;
    if vals.len() != wanted.len() {
        return Err(HypercoreError::Corrupt(
            "storage get_many returned a wrong number of values".into(),
        ));
    }
    wanted
        .into_iter()
        .zip(vals)
        .map(|(p, v)| Ok((p, v.map(|v| NodePage::decode(p, v)).transpose()?)))
        .collect()
}

/// [`load_pages`] through `cache` (copies of the cached pages; the others are read and kept if
/// they qualify).
async fn load_pages_cached<S: Storage>(
    storage: &S,
    cache: &NodeCache,
    pages: impl IntoIterator<Item = u64>,
) -> Result<std::collections::BTreeMap<u64, Option<NodePage>>, HypercoreError> {
    let mut out = std::collections::BTreeMap::new();
    let mut missing = Vec::new();
    {
        let inner = cache.lock();
        for p in pages {
            match inner.get(p) {
                Some(page) => {
                    out.insert(p, Some(page.clone()));
                }
                None => missing.push(p),
            }
        }
    }
    if !missing.is_empty() {
        let loaded = load_pages(storage, missing).await?;
        let mut inner = cache.lock();
        for (&p, page) in &loaded {
            let page = page.clone().unwrap_or_else(|| NodePage::empty(p));
            NodeCache::insert(&mut inner, page);
        }
        out.extend(loaded);
    }
    Ok(out)
}

/// Decoded node pages of the upper tree, kept in memory by a [`crate::hypercore::Hypercore`] so
/// proofs stop re-reading the same high nodes (every proof of a big tree needs a sibling at each
/// level; the upper levels are few and shared by all of them).
///
/// Page `p` holds nodes `32p ..= 32p + 31`: a 16-leaf subtree (levels 0-4) and the one node
/// `32p + 31`, at level `5 + trailing_ones(p)`. Pages whose high node is at level
/// [`NodeCache::MIN_LEVEL`] or above are kept, at most [`NodeCache::CAPACITY`] of them, the lowest
/// level evicted first; of the lower pages only the [`NodeCache::RECENT`] last read or written.
/// Every storage batch the core writes goes through [`NodeCache::invalidate`] first, which drops
/// the pages it touches, and [`NodeCache::written`] once stored, which keeps the pages it put.
#[derive(Debug, Default)]
pub(crate) struct NodeCache {
    inner: std::sync::Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    pages: std::collections::HashMap<u64, NodePage>,
    /// `(level, page)` of every cached page: the first is evicted first.
    order: std::collections::BTreeSet<(u32, u64)>,
    /// Pages below [`NodeCache::MIN_LEVEL`] the core read or wrote last, oldest first, at most
    /// [`NodeCache::RECENT`] of them: a sequential download rewrites the same low page for 16
    /// blocks in a row and verifies against the nodes it just stored; a sequential upload
    /// proves 16 blocks in a row from the same low page.
    recent: std::collections::VecDeque<NodePage>,
}

impl CacheInner {
    fn get(&self, page: u64) -> Option<&NodePage> {
        self.pages
            .get(&page)
            .or_else(|| self.recent.iter().rev().find(|p| p.page == page))
    }
}

impl NodeCache {
    /// Pages whose high node is below this level (`5 + trailing_ones(page)`) are not cached.
    pub(crate) const MIN_LEVEL: u32 = 8;
    /// At most this many pages (about 1.3 KiB each) are cached.
    pub(crate) const CAPACITY: usize = 2048;
    /// At most this many recently written low pages are kept besides.
    pub(crate) const RECENT: usize = 8;

    fn level(page: u64) -> u32 {
        5 + page.trailing_ones()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Node `index` if its page is cached and holds it (no storage read). A page that does
    /// not decode counts as absent.
    pub(crate) fn peek(&self, index: u64) -> Option<TreeNode> {
        self.lock().get(page_of(index))?.get(index).ok().flatten()
    }

    /// Keep `page` if it is high enough and there is room (or a lower page to evict).
    fn insert(inner: &mut CacheInner, page: NodePage) {
        let level = Self::level(page.page);
        if level < Self::MIN_LEVEL {
            inner.recent.retain(|r| r.page != page.page);
            if inner.recent.len() >= Self::RECENT {
                inner.recent.pop_front();
            }
            inner.recent.push_back(page);
            return;
        }
        if inner.pages.contains_key(&page.page) {
            return;
        }
        if inner.pages.len() >= Self::CAPACITY {
            match inner.order.first().copied() {
                Some((l, p)) if l < level => {
                    inner.order.remove(&(l, p));
                    inner.pages.remove(&p);
                }
                _ => return,
            }
        }
        inner.order.insert((level, page.page));
        inner.pages.insert(page.page, page);
    }

    /// Drop every cached page `batch` writes or deletes (all of them on a range delete). Call
    /// it before writing `batch`; [`NodeCache::written`] after the write succeeded.
    pub(crate) fn invalidate(&self, batch: &Batch) {
        let mut inner = self.lock();
        if inner.pages.is_empty() && inner.recent.is_empty() {
            return;
        }
        for op in &batch.ops {
            let key = match op {
                crate::storage::Op::Put(k, _) | crate::storage::Op::Delete(k) => k,
                crate::storage::Op::DeleteRange(..) => {
                    inner.pages.clear();
                    inner.order.clear();
                    inner.recent.clear();
                    return;
                }
            };
            if key.first() == Some(&layout::TREE_NODE) {
                if let Some(p) = layout::index_of(key) {
                    if inner.pages.remove(&p).is_some() {
                        inner.order.remove(&(Self::level(p), p));
                    }
                    inner.recent.retain(|r| r.page != p);
                }
            }
        }
    }

    /// The tree pages `batch` puts that the cache would keep (the upper ones and the last
    /// [`NodeCache::RECENT`] low ones; a batch of many blocks writes many low pages, decoding
    /// them all would cost more than it saves), to pass to [`NodeCache::written`] once stored.
    pub(crate) fn pages_of(batch: &Batch) -> Vec<NodePage> {
        let puts: Vec<(u64, &Vec<u8>)> = batch
            .ops
            .iter()
            .filter_map(|op| match op {
                crate::storage::Op::Put(k, v) if k.first() == Some(&layout::TREE_NODE) => {
                    Some((layout::index_of(k)?, v))
                }
                _ => None,
            })
            .collect();
        let low_from = puts
            .iter()
            .filter(|(p, _)| Self::level(*p) < Self::MIN_LEVEL)
            .count()
            .saturating_sub(Self::RECENT);
        let mut low = 0;
        puts.into_iter()
            .filter(|(p, _)| {
                Self::level(*p) >= Self::MIN_LEVEL || {
                    low += 1;
                    low > low_from
                }
            })
            .filter_map(|(p, v)| NodePage::decode(p, v.clone()).ok())
            .collect()
    }

    /// Keep `pages`, just written to storage (from [`NodeCache::pages_of`]), as if just read.
    pub(crate) fn written(&self, pages: Vec<NodePage>) {
        let mut inner = self.lock();
        for page in pages {
            Self::insert(&mut inner, page);
        }
    }

    /// Every cached page (upper and recent) with its bytes.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Vec<(u64, Vec<u8>)> {
        let inner = self.lock();
        inner
            .pages
            .values()
            .chain(&inner.recent)
            .map(|p| (p.page, p.as_bytes().to_vec()))
            .collect()
    }

    /// Number of cached pages.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().pages.len()
    }
}

/// [`get_nodes`] through `cache`: cached pages are read from memory, the others in one
/// `get_many` round trip (and kept if they qualify).
pub(crate) async fn get_nodes_cached<S: Storage>(
    storage: &S,
    cache: &NodeCache,
    indexes: &[u64],
) -> Result<Vec<Option<TreeNode>>, HypercoreError> {
    let mut out: Vec<Option<Option<TreeNode>>> = vec![None; indexes.len()];
    let mut missing = Vec::new();
    {
        let inner = cache.lock();
        for (k, &i) in indexes.iter().enumerate() {
            match inner.get(page_of(i)) {
                Some(page) => out[k] = Some(page.get(i)?),
                None => missing.push(k),
            }
        }
    }
    if !missing.is_empty() {
        let pages = load_pages(storage, missing.iter().map(|&k| page_of(indexes[k]))).await?;
        for &k in &missing {
            let i = indexes[k];
            out[k] = Some(match pages.get(&page_of(i)) {
                Some(Some(p)) => p.get(i)?,
                _ => None,
            });
        }
        let mut inner = cache.lock();
        for (p, page) in pages {
            // An absent page is kept as an empty one: it holds no node either.
            NodeCache::insert(&mut inner, page.unwrap_or_else(|| NodePage::empty(p)));
        }
    }
    Ok(out.into_iter().map(Option::flatten).collect())
}

/// [`require_nodes`] through `cache` (see [`get_nodes_cached`]).
pub(crate) async fn require_nodes_cached<S: Storage>(
    storage: &S,
    cache: &NodeCache,
    indexes: &[u64],
) -> Result<Vec<TreeNode>, HypercoreError> {
    get_nodes_cached(storage, cache, indexes)
        .await?
        .into_iter()
        .zip(indexes)
        .map(|(n, &i)| n.ok_or(HypercoreError::MissingNode(i)))
        .collect()
}

/// Read the nodes `indexes` in one round trip, all of which must exist.
pub async fn require_nodes<S: Storage>(
    storage: &S,
    indexes: &[u64],
) -> Result<Vec<TreeNode>, HypercoreError> {
    get_nodes(storage, indexes)
        .await?
        .into_iter()
        .zip(indexes)
        .map(|(n, &i)| n.ok_or(HypercoreError::MissingNode(i)))
        .collect()
}

/// The roots of the stored tree of `length` blocks.
pub async fn roots_from_storage<S: Storage>(
    storage: &S,
    length: u64,
) -> Result<Vec<TreeNode>, HypercoreError> {
    require_nodes(storage, &flat_tree::roots_of_length(length)).await
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
        if index >= super::proof::MAX_INDEX || length >= super::proof::MAX_INDEX / 2 {
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
        if index >= super::proof::MAX_INDEX || length >= super::proof::MAX_INDEX / 2 {
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
        self.write_ops_cached(storage, None, out).await
    }

    /// [`TreeBatch::write_ops`], reading the pages it modifies through `cache` when given.
    pub(crate) async fn write_ops_cached<S: Storage>(
        &self,
        storage: &S,
        cache: Option<&NodeCache>,
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
        let touched = self
            .nodes
            .iter()
            .map(|n| n.index)
            .chain(removed.iter().copied())
            .chain((cut != u64::MAX).then_some(cut))
            .map(page_of);
        // Pages entirely past the cut start empty; the others are read and modified.
        let first_gone = if cut == u64::MAX {
            u64::MAX
        } else {
            page_of(cut) + u64::from(cut % NODES_PER_PAGE != 0)
        };
        let wanted = touched.clone().filter(|&p| p < first_gone);
        let mut pages = match cache {
            Some(cache) => load_pages_cached(storage, cache, wanted).await?,
            None => load_pages(storage, wanted).await?,
        };
        for p in touched.filter(|&p| p >= first_gone) {
            pages.insert(p, None);
        }
        if cut != u64::MAX {
            out.delete_range(
                layout::tree_node_key(first_gone),
                layout::tag_end(layout::TREE_NODE),
            );
        }
        let mut pages: std::collections::BTreeMap<u64, NodePage> = pages
            .into_iter()
            .map(|(p, page)| (p, page.unwrap_or_else(|| NodePage::empty(p))))
            .collect();
        for page in pages.values_mut() {
            if cut != u64::MAX {
                page.truncate(cut);
            }
        }
        for &i in &removed {
            if let Some(page) = pages.get_mut(&page_of(i)) {
                page.remove(i);
            }
        }
        for n in &self.nodes {
            if let Some(page) = pages.get_mut(&page_of(n.index)) {
                page.put(n);
            }
        }
        for (p, page) in pages {
            if page.is_empty() {
                out.delete(layout::tree_node_key(p));
            } else {
                out.put(layout::tree_node_key(p), page.as_bytes().to_vec());
            }
        }
        Ok(())
    }

    /// Whether the batch removes nodes (and so blocks) past [`TreeBatch::ancestors`].
    pub fn truncates(&self) -> bool {
        self.upgraded && self.ancestors < self.tree_length
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use futures_executor::block_on;

    /// `(index, length, JS MerkleTree.maxMissingNodes(index, length))`, printed by hypercore
    /// 11.37.1.
    #[test]
    fn max_missing_nodes_matches_js() {
        let js = [
            (0, 0, 0),
            (0, 1, 0),
            (0, 5, 2),
            (2, 5, 2),
            (8, 5, 0),
            (10, 5, 0),
            (0, 8, 3),
            (14, 8, 3),
            (6, 7, 2),
            (12, 7, 0),
            (20, 100, 6),
            (198, 100, 2),
            (0, 1000, 9),
            (40, 33, 5),
            (64, 33, 0),
            (1998, 1000, 3),
        ];
        for (index, length, want) in js {
            assert_eq!(
                MerkleTree::max_missing_nodes(index, length),
                want,
                "{index} {length}"
            );
        }
        // Out-of-range arguments (a peer's length is untrusted) give 0, never a panic.
        assert_eq!(MerkleTree::max_missing_nodes(0, u64::MAX), 0);
        assert_eq!(MerkleTree::max_missing_nodes(u64::MAX, 5), 0);
        assert!(MerkleTree::max_missing_nodes(0, (1 << 57) - 1) <= 64);
    }

    /// The SIMD batch equals one `leaf_hash` per block, for sizes around every buffer and
    /// BLAKE2b block boundary, small and large mixed in one call.
    #[test]
    fn leaf_hashes_equal_leaf_hash() {
        let sizes = [
            0usize, 1, 118, 119, 120, 127, 128, 129, 247, 256, 511, 512, 513, 1000, 4096, 4097,
            70_000, 3, 600,
        ];
        let blocks: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (j * 31 + i * 7) as u8).collect())
            .collect();
        let want: Vec<Hash> = blocks.iter().map(|b| leaf_hash(b)).collect();
        assert_eq!(leaf_hashes(&blocks), want);
        for n in 0..blocks.len() {
            assert_eq!(leaf_hashes(&blocks[n..]), want[n..], "from {n}");
        }
    }

    /// Runs of equal-length blocks (eight at a time in AVX-512 lanes where the CPU has them)
    /// interleaved with odd lengths and remainders of fewer than eight.
    #[test]
    fn leaf_hashes_equal_leaf_hash_in_equal_length_runs() {
        let sizes: Vec<usize> = (0..203)
            .map(|i| match i % 5 {
                0..=2 => 4096,
                3 => 64,
                _ => 100 + i,
            })
            .collect();
        let blocks: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (j * 13 + i * 5) as u8).collect())
            .collect();
        let want: Vec<Hash> = blocks.iter().map(|b| leaf_hash(b)).collect();
        for n in [0, 1, 7, 9, 150, 195, 196] {
            assert_eq!(leaf_hashes(&blocks[n..]), want[n..], "from {n}");
        }
    }

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    async fn build(blocks: &[&[u8]]) -> (MemoryStorage, MerkleTree) {
        let s = MemoryStorage::new();
        let mut t = MerkleTree::default();
        let mut b = t.batch();
        for x in blocks {
            b.append(x);
        }
        let mut w = Batch::new();
        b.write_ops(&s, &mut w).await.unwrap();
        s.write(w).await.unwrap();
        t.commit(&b);
        (s, t)
    }

    #[test]
    fn leaf_hashes_equal_single_hashes() {
        let blocks: Vec<Vec<u8>> = (0..40usize)
            .map(|i| vec![i as u8; (i * 397) % 8192])
            .collect();
        let many = leaf_hashes(&blocks);
        for (b, h) in blocks.iter().zip(&many) {
            assert_eq!(*h, leaf_hash(b));
        }
        assert!(leaf_hashes::<Vec<u8>>(&[]).is_empty());
    }

    #[test]
    fn append_matches_js_vectors() {
        block_on(async {
            let (s, t) = build(&[b"a", b"b", b"c"]).await;
            assert_eq!(t.length, 3);
            assert_eq!(t.byte_length, 3);
            assert_eq!(
                t.roots.iter().map(|r| r.index).collect::<Vec<_>>(),
                vec![1, 4]
            );
            assert_eq!(
                t.hash().to_vec(),
                h("7ea73eb86179fb7328e73663f90f4c91256574af1112efe97fdf9309e03b67a7")
            );
            let n1 = require_node(&s, 1).await.unwrap();
            assert_eq!(n1.size, 2);
            assert_eq!(
                n1.hash.to_vec(),
                h("9cac92aaed9e7d11eb629465684582ce39cb496303998de123533b09e16f2f06")
            );
            let n2 = require_node(&s, 2).await.unwrap();
            assert_eq!(
                n2.hash.to_vec(),
                h("520abb1082986713dabf6862ccfe1bb6b87037647d0019b31219493ef186597c")
            );
            assert_eq!(get_node(&s, 3).await.unwrap(), None);
            // Reload from storage gives the same tree.
            let t2 = MerkleTree::load(&s, 3, 0, vec![]).await.unwrap();
            assert_eq!(t2, t);
        });
    }

    #[test]
    fn append_one_by_one_equals_batch() {
        block_on(async {
            let data: Vec<Vec<u8>> = (0..37u8).map(|i| vec![i; i as usize + 1]).collect();
            let refs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
            let (_, all) = build(&refs).await;
            let s = MemoryStorage::new();
            let mut t = MerkleTree::default();
            for d in &refs {
                let mut b = t.batch();
                b.append(d);
                let mut w = Batch::new();
                b.write_ops(&s, &mut w).await.unwrap();
                s.write(w).await.unwrap();
                t.commit(&b);
            }
            assert_eq!(t, all);
            assert_eq!(
                t.roots.iter().map(|r| r.index).collect::<Vec<_>>(),
                flat_tree::roots_of_length(37)
            );
        });
    }

    #[test]
    fn truncate_matches_js_vector_and_cleans_nodes() {
        block_on(async {
            let (s, t) = build(&[b"a", b"b", b"c"]).await;
            let b = t.truncate_batch(&s, 2, 1).await.unwrap();
            assert!(b.truncates());
            let mut w = Batch::new();
            b.write_ops(&s, &mut w).await.unwrap();
            s.write(w).await.unwrap();
            let mut t = t;
            t.commit(&b);
            assert_eq!(
                t.hash().to_vec(),
                h("3424a063fb40dfef317c8ca38fb8c37dfdbccac669582f6f9cddd22bbdf9c044")
            );
            assert_eq!(get_node(&s, 4).await.unwrap(), None);
            let mut b = t.batch();
            b.append(b"z");
            let mut w = Batch::new();
            b.write_ops(&s, &mut w).await.unwrap();
            s.write(w).await.unwrap();
            t.commit(&b);
            assert_eq!(
                t.hash().to_vec(),
                h("f6516686da8a8bbd6176e5c196121719310c904ae4c6e4c42964f4151a715b8e")
            );
            assert_eq!(t.fork, 1);
        });
    }

    #[test]
    fn truncate_deletes_parents_spanning_cut() {
        block_on(async {
            let blocks: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i]).collect();
            let refs: Vec<&[u8]> = blocks.iter().map(|d| d.as_slice()).collect();
            let (s, t) = build(&refs).await;
            let b = t.truncate_batch(&s, 3, 1).await.unwrap();
            let mut w = Batch::new();
            b.write_ops(&s, &mut w).await.unwrap();
            s.write(w).await.unwrap();
            // Node 3 (blocks 0..4) and 7 (0..8) span the cut and must be gone; 1 and 4 stay.
            for gone in [3u64, 5, 6, 7, 8, 11] {
                assert_eq!(get_node(&s, gone).await.unwrap(), None, "node {gone}");
            }
            for kept in [0u64, 1, 2, 4] {
                assert!(get_node(&s, kept).await.unwrap().is_some(), "node {kept}");
            }
            assert_eq!(
                b.roots.iter().map(|r| r.index).collect::<Vec<_>>(),
                vec![1, 4]
            );
        });
    }

    #[test]
    fn seek_and_byte_offset() {
        block_on(async {
            // Block sizes 1,2,3,4,5 → offsets 0,1,3,6,10, total 15.
            let blocks: Vec<Vec<u8>> = (1..=5u8).map(|i| vec![i; i as usize]).collect();
            let refs: Vec<&[u8]> = blocks.iter().map(|d| d.as_slice()).collect();
            let (s, t) = build(&refs).await;
            let offs = [0u64, 1, 3, 6, 10];
            for (i, o) in offs.iter().enumerate() {
                assert_eq!(t.byte_offset(&s, 2 * i as u64).await.unwrap(), *o);
            }
            assert_eq!(t.byte_offset(&s, 10).await.unwrap(), 15);
            for bytes in 0..15u64 {
                let idx = offs.iter().rposition(|&o| o <= bytes).unwrap() as u64;
                let want = SeekResult::Found {
                    index: idx,
                    offset: bytes - offs[idx as usize],
                };
                assert_eq!(t.seek(&s, bytes, 0).await.unwrap(), want, "bytes {bytes}");
            }
            assert_eq!(
                t.seek(&s, 15, 0).await.unwrap(),
                SeekResult::Found {
                    index: 5,
                    offset: 0
                }
            );
            assert_eq!(t.seek(&s, 16, 0).await.unwrap(), SeekResult::OutOfBounds);
            // padding 1: sizes 0,1,2,3,4 → byte 4 is block 3 offset 1
            assert_eq!(
                t.seek(&s, 4, 1).await.unwrap(),
                SeekResult::Found {
                    index: 3,
                    offset: 1
                }
            );
        });
    }

    #[test]
    fn missing_nodes_counts_absent_ancestors() {
        block_on(async {
            let blocks: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i]).collect();
            let refs: Vec<&[u8]> = blocks.iter().map(|d| d.as_slice()).collect();
            let (s, _) = build(&refs).await;
            // A writer has everything: nothing missing.
            assert_eq!(MerkleTree::missing_nodes(&s, 0, 8).await.unwrap(), 0);
            let empty = MemoryStorage::new();
            // Reader with nothing: leaf 0 at length 8 lacks 0, 1, 3 and the root 7.
            assert_eq!(MerkleTree::missing_nodes(&empty, 0, 8).await.unwrap(), 4);
            // Once the root is stored, only the levels below it are missing.
            let mut page = NodePage::empty(page_of(7));
            page.put(&require_node(&s, 7).await.unwrap());
            let mut w = Batch::new();
            w.put(layout::tree_node_key(page_of(7)), page.as_bytes().to_vec());
            empty.write(w).await.unwrap();
            assert_eq!(MerkleTree::missing_nodes(&empty, 0, 8).await.unwrap(), 3);
            assert_eq!(MerkleTree::missing_nodes(&empty, 4, 8).await.unwrap(), 3);
            assert_eq!(MerkleTree::missing_nodes(&empty, 8, 5).await.unwrap(), 1);
            assert_eq!(MerkleTree::missing_nodes(&empty, 20, 5).await.unwrap(), 0);
        });
    }
}
