//! Tree nodes in storage: the 40-byte node record, pages of 32 nodes ([`NodePage`]), reads of
//! one or many nodes in one round trip, and the [`NodeCache`] of upper-tree pages a core keeps.

use crate::storage::{Batch, Storage};

use crate::hypercore::error::HypercoreError;
use crate::hypercore::flat_tree;
use crate::hypercore::layout;
use crate::hypercore::messages::TreeNode;

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
        let bytes = std::sync::Arc::make_mut(&mut self.bytes);
        bytes[at..at + NODE_RECORD_LEN].copy_from_slice(&encode_node(node));
        let bitmap = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) | 1 << slot;
        bytes[..4].copy_from_slice(&bitmap.to_le_bytes());
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

    /// The stored bytes, owned (copied only if a clone of the page shares them).
    pub fn into_bytes(self) -> Vec<u8> {
        std::sync::Arc::try_unwrap(self.bytes).unwrap_or_else(|shared| (*shared).clone())
    }
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
pub(super) async fn load_pages<S: Storage>(
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

/// [`load_pages`] through `cache` (copies of the cached pages; the others are read, and those
/// found kept if they qualify).
pub(super) async fn load_pages_cached<S: Storage>(
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
        // Only the pages found: the caller (a write) is about to store the absent ones, and
        // the cache takes what it keeps of those once they are written
        // ([`NodeCache::written`]), where making an empty page for each would cost a 100k-block
        // append ~6k allocations of 1.3 KiB that the cache drops at once.
        for page in loaded.values().flatten() {
            NodeCache::insert(&mut inner, page.clone());
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
                crate::storage::Op::Put(k, _)
                | crate::storage::Op::PutParts(k, _)
                | crate::storage::Op::Delete(k) => k,
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
