//! Decoded node blocks ([`Block`]) and the bee-wide cache of them ([`BlockCache`], JS
//! `_nodeCache` + `_keyCache`).
//!
//! A block's key and value are decoded at once; its index (the tree nodes it wrote) only when a
//! read uses the block as a tree node, as JS inflates lazily: a block whose index is garbage
//! still serves its key.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use super::error::BeeError;
use super::messages::{Level, MessageError, Node, YoloIndex};

/// One tree node of a block's index, with the bytes of its keys once read (JS keeps them on
/// its `Key` objects): the nodes near the root serve every read without a cache lookup.
#[derive(Debug)]
pub(crate) struct NodeLevel {
    /// Seqs of the key blocks and `(seq, offset)` pairs of the children.
    pub level: Level,
    /// `keys[i]`'s bytes, once known.
    pub key_bytes: Box<[OnceLock<Arc<[u8]>>]>,
}

/// One decoded node block: the block's bytes, kept as they came, and where its fields are.
#[derive(Debug)]
pub(crate) struct Block {
    /// Its index in the core.
    pub seq: u64,
    raw: Box<[u8]>,
    key: (u32, u32),
    value: Option<(u32, u32)>,
    index: (u32, u32),
    levels: OnceLock<Result<Arc<[NodeLevel]>, MessageError>>,
}

fn span(raw: &[u8], part: &[u8]) -> (u32, u32) {
    // `part` is a subslice of `raw` (what `Node::decode_ref` returned).
    let start = part.as_ptr() as usize - raw.as_ptr() as usize;
    (start as u32, (start + part.len()) as u32)
}

impl Block {
    /// Decode block `seq`, keeping `raw` (no copy).
    pub fn decode(seq: u64, raw: Vec<u8>) -> Result<Self, BeeError> {
        let raw = raw.into_boxed_slice();
        if u32::try_from(raw.len()).is_err() {
            return Err(BeeError::node(seq, MessageError::Length));
        }
        let n = Node::decode_ref(&raw).map_err(|e| BeeError::node(seq, e))?;
        let (key, value, index) = (
            span(&raw, n.key),
            n.value.map(|v| span(&raw, v)),
            span(&raw, n.index),
        );
        Ok(Block {
            seq,
            key,
            value,
            index,
            raw,
            levels: OnceLock::new(),
        })
    }

    /// [`Block::decode`] of a block just encoded, with the tree nodes of its index as decoding
    /// them would give (`levels`, from the writer), so they are not decoded again.
    pub fn decode_with_levels(
        seq: u64,
        raw: Vec<u8>,
        levels: Vec<Level>,
    ) -> Result<Self, BeeError> {
        let b = Block::decode(seq, raw)?;
        debug_assert_eq!(
            YoloIndex::decode(b.part(b.index)).map(|i| i.levels),
            Ok(levels.clone()),
            "the writer's tree nodes are what its block decodes to"
        );
        let levels: Vec<NodeLevel> = levels
            .into_iter()
            .map(|level| NodeLevel {
                key_bytes: level.keys.iter().map(|_| OnceLock::new()).collect(),
                level,
            })
            .collect();
        // Not reached: a block has one index.
        let _ = b.levels.set(Ok(levels.into()));
        Ok(b)
    }

    fn part(&self, (s, e): (u32, u32)) -> &[u8] {
        &self.raw[s as usize..e as usize]
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        self.part(self.key)
    }

    /// The value (`None`: a deletion, or a JS put of `null`).
    pub fn value(&self) -> Option<&[u8]> {
        self.value.map(|v| self.part(v))
    }

    /// The tree nodes this block wrote (decoded on first use).
    pub fn levels(&self) -> Result<&Arc<[NodeLevel]>, BeeError> {
        self.levels
            .get_or_init(|| {
                let idx = YoloIndex::decode(self.part(self.index))?;
                let mut out = Vec::with_capacity(idx.levels.len());
                for level in idx.levels {
                    if level.children.len() % 2 != 0 {
                        return Err(MessageError::Truncated("child pair"));
                    }
                    let key_bytes = level.keys.iter().map(|_| OnceLock::new()).collect();
                    out.push(NodeLevel { level, key_bytes });
                }
                Ok(out.into())
            })
            .as_ref()
            .map_err(|e| BeeError::node(self.seq, e.clone()))
    }

    /// JS `isDeletion`: no value, and the block's own tree does not hold its seq.
    pub fn is_deletion(&self) -> Result<bool, BeeError> {
        if self.value.is_some() {
            return Ok(false);
        }
        Ok(!self
            .levels()?
            .iter()
            .any(|l| l.level.keys.contains(&self.seq)))
    }
}

/// A multiplicative hasher for block seqs (dense small integers).
#[derive(Default)]
pub(crate) struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A `HashMap` keyed by block seq.
pub(crate) type SeqMap<V> = HashMap<u64, V, BuildHasherDefault<SeqHasher>>;

/// Blocks decoded so far, for one fork of the core, at most `cap` of them.
///
/// Seqs are dense, so the cache is a page table rather than a hash map: pages of 64 slots
/// (what one storage record holds, and what a read brings in around a missed block), allocated
/// while they hold something. A lookup is two indexed loads. Eviction is CLOCK: each slot has a
/// referenced bit set on use; the hand clears set bits and evicts the first clear one.
#[derive(Debug)]
pub(crate) struct BlockCache {
    inner: Mutex<Table>,
}

const PAGE_BITS: u32 = 6;
const PAGE: usize = 1 << PAGE_BITS;

#[derive(Debug)]
struct Page {
    slots: [Option<Arc<Block>>; PAGE],
    referenced: u64,
    count: u32,
}

#[derive(Debug)]
struct Table {
    fork: u64,
    cap: usize,
    len: usize,
    pages: Vec<Option<Box<Page>>>,
    /// The CLOCK hand: the next slot to look at (a seq).
    hand: u64,
}

/// Default number of blocks kept: 256 Ki, about 50-70 MiB of small entries. (JS keeps 65536
/// decoded blocks, plus what RocksDB caches underneath; a cache smaller than the part of the
/// bee a workload touches makes every miss a storage read.)
pub(crate) const DEFAULT_CACHE_BLOCKS: usize = 1 << 18;

impl BlockCache {
    /// An empty cache keeping at most `cap` blocks.
    pub fn new(cap: usize) -> Self {
        BlockCache {
            inner: Mutex::new(Table {
                fork: 0,
                cap: cap.max(1),
                len: 0,
                pages: Vec::new(),
                hand: 0,
            }),
        }
    }

    /// The most blocks it keeps.
    pub fn capacity(&self) -> usize {
        self.lock().cap
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Nothing panics while the lock is held; a poisoned lock still holds a valid table.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Block `seq` as read on fork `fork`, if cached.
    pub fn get(&self, seq: u64, fork: u64) -> Option<Arc<Block>> {
        let mut g = self.lock();
        if g.fork != fork {
            if fork > g.fork {
                g.reset(fork);
            }
            return None;
        }
        let page = g.pages.get_mut(page_of(seq))?.as_mut()?;
        let slot = slot_of(seq);
        let b = page.slots[slot].as_ref()?.clone();
        page.referenced |= 1 << slot;
        Some(b)
    }

    /// Remember block `seq` read on fork `fork` (ignored for an older fork).
    pub fn insert(&self, seq: u64, fork: u64, block: Arc<Block>) {
        let mut g = self.lock();
        if fork > g.fork {
            g.reset(fork);
        }
        if fork == g.fork {
            g.insert(seq, block);
        }
    }
}

fn page_of(seq: u64) -> usize {
    usize::try_from(seq >> PAGE_BITS).unwrap_or(usize::MAX)
}

fn slot_of(seq: u64) -> usize {
    (seq as usize) & (PAGE - 1)
}

impl Table {
    fn reset(&mut self, fork: u64) {
        self.fork = fork;
        self.pages.clear();
        self.len = 0;
        self.hand = 0;
    }

    fn insert(&mut self, seq: u64, block: Arc<Block>) {
        let p = page_of(seq);
        if p == usize::MAX {
            return;
        }
        if self.pages.len() <= p {
            self.pages.resize_with(p + 1, || None);
        }
        let page = self.pages[p].get_or_insert_with(|| {
            Box::new(Page {
                slots: std::array::from_fn(|_| None),
                referenced: 0,
                count: 0,
            })
        });
        let s = slot_of(seq);
        if page.slots[s].is_none() {
            page.count += 1;
            self.len += 1;
        }
        page.slots[s] = Some(block);
        // New blocks count as used: the hand passes them once before they can go.
        page.referenced |= 1 << s;
        while self.len > self.cap {
            self.evict_one();
        }
    }

    /// Advance the CLOCK hand to the next slot that was not used since the hand last passed,
    /// and drop it.
    fn evict_one(&mut self) {
        let end = (self.pages.len() as u64) << PAGE_BITS;
        // Two turns at most: the first clears every referenced bit.
        for _ in 0..2 * self.pages.len() + 2 {
            if self.hand >= end {
                self.hand = 0;
            }
            let p = page_of(self.hand);
            let Some(page) = self.pages[p].as_mut() else {
                self.hand = ((p as u64) + 1) << PAGE_BITS;
                continue;
            };
            let mut s = slot_of(self.hand);
            while s < PAGE {
                if page.slots[s].is_some() {
                    if page.referenced & (1 << s) != 0 {
                        page.referenced &= !(1 << s);
                    } else {
                        page.slots[s] = None;
                        page.count -= 1;
                        self.len -= 1;
                        if page.count == 0 {
                            self.pages[p] = None;
                        }
                        self.hand = ((p as u64) << PAGE_BITS) + s as u64 + 1;
                        return;
                    }
                }
                s += 1;
            }
            self.hand = ((p as u64) + 1) << PAGE_BITS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyperbee::messages::encode_node;

    fn block(seq: u64) -> Arc<Block> {
        Arc::new(Block::decode(seq, encode_node(&[], &seq.to_be_bytes(), None)).unwrap())
    }

    #[test]
    fn clock_eviction_and_forks() {
        let c = BlockCache::new(3);
        for s in 1..=3 {
            c.insert(s, 0, block(s));
        }
        for s in 1..=3 {
            assert_eq!(c.get(s, 0).unwrap().seq, s);
        }
        // Full: a fourth block evicts one of the first three (all referenced: the hand clears
        // them, then takes the first), and 2 and 3 stay.
        c.insert(4, 0, block(4));
        let kept: Vec<u64> = (1..=4).filter(|&s| c.get(s, 0).is_some()).collect();
        assert_eq!(kept, [2, 3, 4]);
        // Far-apart seqs use pages of their own; eviction frees emptied pages.
        for s in [1000, 70_000, 5] {
            c.insert(s, 0, block(s));
        }
        assert_eq!((1..=80_000).filter(|&s| c.get(s, 0).is_some()).count(), 3);
        assert!(c.lock().pages.iter().filter(|p| p.is_some()).count() <= 3);
        // An old fork's reader does not see (or disturb) the cache of a newer fork.
        c.insert(6, 1, block(6));
        assert!(c.get(5, 1).is_none());
        assert!(c.get(6, 0).is_none());
        c.insert(7, 0, block(7));
        assert!(c.get(7, 1).is_none());
        assert!(c.get(6, 1).is_some());
    }

    #[test]
    fn deletion_and_bad_index() {
        let del = Block::decode(
            11,
            hex::decode("0a130a090a0106120409010b010a060a040708090a12036b3035").unwrap(),
        )
        .unwrap();
        assert!(del.is_deletion().unwrap());
        let bad = Block::decode(3, encode_node(&[0x0a, 0x05], b"k", None)).unwrap();
        assert_eq!(bad.key(), b"k");
        assert!(matches!(
            bad.is_deletion(),
            Err(BeeError::InvalidNode { seq: 3, .. })
        ));
        let odd =
            Block::decode(4, encode_node(&[0x0a, 0x03, 0x12, 0x01, 0x01], b"k", None)).unwrap();
        assert!(odd.levels().is_err());
    }
}
