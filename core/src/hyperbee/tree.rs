//! The B-tree writes of hyperbee 2.27.3 (`index.js`: `TreeNode`, `BlockEntry`, `BatchEntry`,
//! `Batch._put` / `_del`, `setKeyToNearestLeaf`, `rebalance`, `toBlocks`), reproduced object for
//! object so that the same operations give the same blocks, byte for byte.
//!
//! JS builds each write out of shared mutable objects, and the bytes depend on that sharing:
//! a batch deflates its blocks only at flush time, from the nodes' *final* keys and children,
//! and `toBlocks` renumbers `Child` objects that later blocks point at too. So the [`Arena`] keeps
//! the same objects, addressed by index:
//!
//! | JS | here |
//! |---|---|
//! | `BlockEntry` / `BatchEntry` (one per block a batch touched, cached in `batch.blocks`) | [`Entry`] |
//! | the `{ keys, children }` arrays of an inflated index level (`Pointers`), shared by every `TreeNode` made from it | `LevelData` |
//! | `Child { seq, offset, value }` | `ChildLink` (the loaded node) and `ChildPos` (where it is stored) |
//! | `TreeNode { block, offset, keys, children, changed }` | `NodeData` (keys/children live in its `LevelData`) |
//! | `Key { seq, value }` (moved between arrays, never shared) | `KeyRef` (by value) |
//!
//! An arena lives as long as a JS `Batch`: one operation for `bee.put` / `bee.del`, the whole
//! batch for [`super::Batch`]. Reads inside a batch go through [`ArenaTree`], which implements
//! [`TreeRead`] over the arena, so a batch sees its pending writes.
//!
//! (About 1,300 lines on purpose: this is one JS object model, and each method sits next to the
//! ones it calls, in JS's order, so it can be read against `index.js`.)
//!
//! Deviation: JS caches at most 128 committed `BlockEntry`s per batch (`maxBlocksCached`); this
//! arena caches all of them. That is only observable (as different bytes) when a batch contains a
//! compare-and-swap that refused, or an `alwaysDuplicate: false` put that found the same value,
//! after touching more than 128 blocks: JS then forgets the `changed` marks those left behind,
//! and the order it does so in depends on I/O timing.

use std::sync::Arc;

use smallvec::SmallVec;

use super::cache::{Block, SeqMap};
use super::error::BeeError;
use super::messages::{encode_node, encode_node_into, write_varint, Level};
use super::read::{search, BlockView, ReadCtx, TreeRead, MAX_DEPTH};
use super::source::BeeCore;
use crate::parallel::{join2, split_by_cost, Join, SPLIT_AT};

/// Order of the tree (JS `T`).
const T: usize = 5;
/// Fewest keys a non-root node keeps (JS `MIN_KEYS`).
pub(crate) const MIN_KEYS: usize = T - 1;
/// A node splits when it reaches this many keys (JS `MAX_CHILDREN`).
pub(crate) const MAX_CHILDREN: usize = MIN_KEYS * 2 + 1;

type EntryId = usize;
type LevelId = usize;
type ChildId = usize;
/// Room reserved for the nodes one write indexes (its path from the root, and a sibling per
/// split): 8 covers a tree of millions of keys without growing the array.
const INDEX_CAPACITY: usize = 8;
/// A tree node of an [`Arena`].
pub(crate) type NodeId = usize;

/// A key or value as a compare-and-swap callback sees it (JS `node.final(encoding)` before the
/// encoding: raw bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEntry<'a> {
    /// The block holding it (for the new entry: the seq it will get).
    pub seq: u64,
    /// Encoded key (sub prefix included).
    pub key: &'a [u8],
    /// Encoded value; `None` for a deletion.
    pub value: Option<&'a [u8]>,
}

/// A compare-and-swap callback: given the stored entry and the new one, whether to write
/// (JS `opts.cas`).
pub(crate) trait CasFn:
    FnMut(&RawEntry<'_>, &RawEntry<'_>) -> Result<bool, BeeError>
{
}
impl<F: FnMut(&RawEntry<'_>, &RawEntry<'_>) -> Result<bool, BeeError>> CasFn for F {}

/// The "no compare-and-swap" callback type, for `None::<&mut NoCas>`.
pub(crate) type NoCas = fn(&RawEntry<'_>, &RawEntry<'_>) -> Result<bool, BeeError>;

/// Bytes of a key of a tree node: inline when short, so that a binary search reads one array
/// instead of following a pointer per key.
#[derive(Debug, Clone)]
enum KeyBytes {
    /// The key's length and its bytes, zero past the length (made only by [`KeyBytes::new`]):
    /// [`PaddedKey::cmp_inline`] relies on the zeros.
    Inline(u8, [u8; INLINE_KEY]),
    Heap(Arc<[u8]>),
}

/// Keys up to this long are kept inline.
const INLINE_KEY: usize = 30;

/// A key of at most [`INLINE_KEY`] bytes as big-endian words of its bytes padded with zeros,
/// for comparing it with inline keys ([`KeyBytes::Inline`], zero-padded too) a word at a time.
///
/// Comparing two zero-padded keys word by word, then by length when every word is equal, is
/// their byte order: at the first byte where the padded keys differ, either both have a byte
/// there, or the one that ends before it has a zero where the other has a non-zero byte, and is
/// a prefix of it, so the smaller; and padded keys that are equal differ only in trailing zero
/// bytes, the shorter being the smaller.
#[derive(Debug, Clone, Copy)]
struct PaddedKey {
    words: [u64; INLINE_WORDS],
    len: u8,
}

/// Words of a [`PaddedKey`].
const INLINE_WORDS: usize = INLINE_KEY.div_ceil(8);

impl PaddedKey {
    fn new(key: &[u8]) -> Option<Self> {
        if key.len() > INLINE_KEY {
            return None;
        }
        let mut buf = [0u8; INLINE_KEY];
        buf[..key.len()].copy_from_slice(key);
        Some(PaddedKey {
            words: padded_words(&buf),
            len: key.len() as u8,
        })
    }

    /// This key's order against the inline key of `len` bytes in `buf`.
    #[inline]
    fn cmp_inline(&self, len: u8, buf: &[u8; INLINE_KEY]) -> std::cmp::Ordering {
        let used = usize::from(self.len.max(len)).div_ceil(8);
        for (i, &mine) in self.words.iter().enumerate().take(used) {
            let theirs = padded_word(buf, i);
            if mine != theirs {
                return mine.cmp(&theirs);
            }
        }
        self.len.cmp(&len)
    }
}

/// Word `i` of a zero-padded inline key (big-endian, zeros past the buffer).
#[inline]
fn padded_word(buf: &[u8; INLINE_KEY], i: usize) -> u64 {
    let start = i * 8;
    let mut w = [0u8; 8];
    let end = (start + 8).min(INLINE_KEY);
    w[..end - start].copy_from_slice(&buf[start..end]);
    u64::from_be_bytes(w)
}

fn padded_words(buf: &[u8; INLINE_KEY]) -> [u64; INLINE_WORDS] {
    std::array::from_fn(|i| padded_word(buf, i))
}

impl KeyBytes {
    fn new(b: &[u8]) -> Self {
        if b.len() <= INLINE_KEY {
            let mut buf = [0u8; INLINE_KEY];
            buf[..b.len()].copy_from_slice(b);
            KeyBytes::Inline(b.len() as u8, buf)
        } else {
            KeyBytes::Heap(b.into())
        }
    }

    fn from_arc(a: &Arc<[u8]>) -> Self {
        if a.len() <= INLINE_KEY {
            Self::new(a)
        } else {
            KeyBytes::Heap(a.clone())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            KeyBytes::Inline(len, buf) => &buf[..*len as usize],
            KeyBytes::Heap(a) => a,
        }
    }
}

#[derive(Debug, Clone)]
struct KeyRef {
    seq: u64,
    value: Option<KeyBytes>,
}

/// Keys of a node kept inline in its [`LevelData`]: a node of a bee JS wrote holds at most
/// `MAX_CHILDREN` keys (for a moment, before it splits) and one more child; a larger node (a
/// foreign writer's) spills to the heap.
type Keys = SmallVec<[KeyRef; MAX_CHILDREN]>;
type Children = SmallVec<[Slot; MAX_CHILDREN + 1]>;

/// A node's keys and children live inline in the arena's `levels` array: a descent reads one
/// record per level instead of following two more pointers, and a batch allocates no arrays per
/// node.
///
/// Aligned to a cache line: a record takes exactly `size_of::<LevelData>() / 64` lines, which
/// [`prefetch_record`] asks for.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct LevelData {
    children: Children,
    keys: Keys,
}

/// JS `Child { seq, offset, value }`, in two arrays by [`ChildId`]: [`ChildLink`] (the loaded
/// node), which every write's descent and `indexChanges` read for every child they pass (from
/// the copy in the parent's [`Slot`]), and [`ChildPos`] (where the child is stored), which only
/// the children a write changes and the blocks' encoding read.
#[derive(Debug, Clone, Copy)]
struct ChildLink {
    /// The child's node once loaded ([`NO_NODE`] until then).
    node: u32,
    /// `node`'s level (its `NodeData::level`, fixed when the node is made; meaningless while
    /// `node` is [`NO_NODE`]): a descent reads the child's keys without loading its `NodeData`
    /// first (one cache miss fewer per level of a batch's descents).
    level: u32,
}

/// A child as its parent's `children` hold it: its id (of its [`ChildPos`], and of its
/// [`ChildLink`] for the lookups by id of a block's index) and a copy of its link. A descent
/// and `indexChanges` read the links of the children they pass from the parent's record they
/// already read, instead of one load each from an arena-wide array (which a 100k-key batch
/// makes bigger than the CPU's second-level cache). The copy is written wherever the link is.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u32,
    link: ChildLink,
}

impl Slot {
    fn id(self) -> ChildId {
        self.id as ChildId
    }

    /// The child's node, if loaded.
    fn node(self) -> Option<NodeId> {
        self.link.node()
    }
}

impl ChildLink {
    /// The child's node, if loaded.
    fn node(self) -> Option<NodeId> {
        (self.node != NO_NODE).then_some(self.node as NodeId)
    }
}

/// See [`ChildLink`].
#[derive(Debug, Clone, Copy)]
struct ChildPos {
    seq: u64,
    offset: u64,
}

/// No node loaded for a child ([`ChildLink::node`]).
const NO_NODE: u32 = u32::MAX;

/// The most nodes, levels or children one arena holds, so that their ids fit a `u32` (with room
/// for the few that one write adds after [`Arena::check_room`]).
const MAX_ARENA_IDS: usize = (u32::MAX - (1 << 20)) as usize;

/// An id of an arena below [`MAX_ARENA_IDS`] as stored in a [`ChildLink`].
fn id32(id: usize) -> u32 {
    debug_assert!(id < MAX_ARENA_IDS);
    id as u32
}

/// A node's `changed` mark lives in [`Arena::changed`], a dense array beside `nodes`:
/// `indexChanges` looks at the mark of every child of every changed node, once per write of a
/// batch, and a byte array stays in cache where these records would not.
#[derive(Debug)]
struct NodeData {
    block: Option<EntryId>,
    level: LevelId,
}

#[derive(Debug)]
enum EntryKind {
    /// A block of the core, its index levels inflated on demand.
    Committed {
        block: Arc<Block>,
        levels: Vec<Option<LevelId>>,
    },
    /// A block of this batch (JS `BatchEntry.pendingIndex`), packed ([`pack_index`]): its
    /// `len` nodes at `start` of [`Arena::pending_index`]. Its key and value are at `at` in
    /// [`Arena::bytes`], one after the other.
    Pending {
        start: usize,
        len: u32,
        at: usize,
        key_len: u32,
        /// [`NO_VALUE`] for none (a delete, or a put with no value).
        value_len: u32,
    },
}

/// [`EntryKind::Pending`]'s `value_len` of a block with no value.
const NO_VALUE: u32 = u32::MAX;

/// JS `BlockEntry` / `BatchEntry`.
#[derive(Debug)]
pub(crate) struct Entry {
    seq: u64,
    kind: EntryKind,
}

/// The objects of one JS `Batch`; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    entries: Vec<Entry>,
    levels: Vec<LevelData>,
    child_link: Vec<ChildLink>,
    child_pos: Vec<ChildPos>,
    nodes: Vec<NodeData>,
    /// JS `TreeNode.changed`, by node.
    changed: Vec<bool>,
    /// The committed blocks' entries, by seq.
    by_seq: SeqMap<EntryId>,
    /// The pending blocks' entries, by `seq - pending_base` (their seqs are consecutive).
    pending: Vec<EntryId>,
    /// The seq of the first pending block.
    pending_base: u64,
    /// The packed indexes of the pending blocks, one after the other (one array for the
    /// batch instead of an allocation per block).
    pending_index: Vec<u32>,
    /// The keys and values of the pending blocks, one after the other (one buffer for the
    /// batch instead of two allocations per write).
    bytes: Vec<u8>,
    /// [`Arena::put`]'s path from the root (reused); after a put, with [`Arena::path_ok`],
    /// the nodes it changed.
    scratch_stack: Vec<NodeId>,
    /// The child ids [`Arena::put`]'s descent went through: `path_ids[d]` is the child of
    /// `scratch_stack[d]` that is `scratch_stack[d + 1]`.
    path_ids: Vec<ChildId>,
    /// The last [`Arena::put`]'s changed nodes are `scratch_stack`, in the order the
    /// `indexChanges` walk meets them: its path when nothing split, or the path down to the
    /// leaf's parent, the leaf and its new right half when only the leaf split. Unless
    /// [`Arena::dirty_elsewhere`], the next block's index is that list, and
    /// [`Arena::append_pending`] takes it without walking the tree.
    path_ok: bool,
    /// Some node may carry a `changed` mark the next write's path does not explain: a put
    /// that marked its path and then wrote nothing (JS keeps those marks for the next block),
    /// or a write that failed or was dropped half way. Until the next full `indexChanges` walk
    /// clears every mark reachable from the root.
    dirty_elsewhere: bool,
    /// Tests: always walk (to check [`Arena::index_path`] against the walk).
    #[cfg(test)]
    pub(crate) always_walk: bool,
    /// A pending block's index while it is built (reused).
    scratch_index: Vec<Option<ChildId>>,
    /// Blocks written by this batch and not yet flushed (JS `batch.length`).
    pub length: u64,
}

/// Ask the CPU to bring every cache line of `l` into its caches (a hint: nothing is read, and
/// nothing changes but the time of later loads). A no-op but on x86-64.
#[inline(always)]
#[allow(unsafe_code)] // the one use of unsafe in hyperbee: a prefetch instruction
fn prefetch_record(l: &LevelData) {
    #[cfg(target_arch = "x86_64")]
    {
        const LINE: usize = 64;
        let p = (l as *const LevelData).cast::<i8>();
        for i in 0..core::mem::size_of::<LevelData>().div_ceil(LINE) {
            // SAFETY: `_mm_prefetch` (SSE, which every x86-64 CPU has) is a hint that never
            // faults and reads nothing into the program; the address is within `l`, which is
            // aligned to the line.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                    p.wrapping_add(i * LINE),
                )
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = l;
}

fn same_value(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    a == b
}

impl Arena {
    /// An empty arena.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make room for about `writes` more staged writes at once (a hint): the arrays a batch
    /// grows by then are allocated once instead of doubling, each doubling copying the array
    /// into fresh pages (for a batch of 100k puts, a fifth of the process's page faults). Room
    /// never used is address space only: its pages are never touched (unless the host faults
    /// the reserved memory in ahead of the writes, as the native CLI's `bee batch` does).
    pub fn reserve(&mut self, writes: usize) {
        // Per write: one entry and one child pointer (the block's root), one packed index
        // entry per node it rewrites (its path from the root, and a sibling per split; 8 covers
        // a tree of millions of keys), and about one new node per five inserts (a split, with
        // its child pointer): a fifth here, for leaves that split at their fullest.
        let _ = self.entries.try_reserve(writes);
        let _ = self.pending.try_reserve(writes);
        let _ = self
            .pending_index
            .try_reserve(writes.saturating_mul(INDEX_CAPACITY));
        let _ = self
            .child_link
            .try_reserve(writes.saturating_add(writes / 2));
        let _ = self
            .child_pos
            .try_reserve(writes.saturating_add(writes / 2));
        let nodes = writes / 3;
        let _ = self.levels.try_reserve(nodes);
        let _ = self.nodes.try_reserve(nodes);
        let _ = self.changed.try_reserve(nodes);
    }

    /// Make room for about `bytes` bytes of keys and values of staged writes (a hint, as
    /// [`Arena::reserve`]).
    pub fn reserve_bytes(&mut self, bytes: usize) {
        let _ = self.bytes.try_reserve(bytes);
    }

    /// The entry of block `seq`, if this batch has one (pending or committed).
    fn lookup(&self, seq: u64) -> Option<EntryId> {
        if let Some(i) = seq.checked_sub(self.pending_base) {
            if let Some(&e) = usize::try_from(i).ok().and_then(|i| self.pending.get(i)) {
                return Some(e);
            }
        }
        self.by_seq.get(&seq).copied()
    }

    fn level(&self, n: NodeId) -> &LevelData {
        &self.levels[self.nodes[n].level]
    }

    fn level_mut(&mut self, n: NodeId) -> &mut LevelData {
        let l = self.nodes[n].level;
        &mut self.levels[l]
    }

    fn node_seq(&self, n: NodeId) -> Option<u64> {
        self.nodes[n].block.map(|e| self.entries[e].seq)
    }

    fn err(&self, n: NodeId, reason: &'static str) -> BeeError {
        BeeError::corrupt(self.node_seq(n).unwrap_or(0), reason)
    }

    /// JS `TreeNode.create(block)`: a new, changed, empty node.
    fn create_node(&mut self, block: Option<EntryId>) -> NodeId {
        self.levels.push(LevelData::default());
        self.nodes.push(NodeData {
            block,
            level: self.levels.len() - 1,
        });
        self.changed.push(true);
        self.nodes.len() - 1
    }

    fn new_child(&mut self, seq: u64, offset: u64, node: Option<NodeId>) -> ChildId {
        let link = match node {
            Some(n) => ChildLink {
                node: id32(n),
                level: id32(self.nodes[n].level),
            },
            None => ChildLink {
                node: NO_NODE,
                level: 0,
            },
        };
        self.child_link.push(link);
        self.child_pos.push(ChildPos { seq, offset });
        self.child_link.len() - 1
    }

    /// Child `c` as a parent's `children` hold it.
    fn slot(&self, c: ChildId) -> Slot {
        Slot {
            id: id32(c),
            link: self.child_link[c],
        }
    }

    /// Child `c`'s node, if loaded.
    fn child_node(&self, c: ChildId) -> Option<NodeId> {
        self.child_link[c].node()
    }

    /// Whether `slot`'s copy of its link is the arena's (debug builds check it wherever a slot's
    /// link is read; see [`Slot`]).
    fn slot_in_sync(&self, slot: Slot) -> bool {
        slot.link.node == self.child_link[slot.id()].node
    }

    /// Refuse a write when the arena is too big for its ids ([`MAX_ARENA_IDS`]): a batch of
    /// billions of writes (which would not fit in memory first).
    fn check_room(&self) -> Result<(), BeeError> {
        let most = self
            .nodes
            .len()
            .max(self.levels.len())
            .max(self.child_link.len());
        if most >= MAX_ARENA_IDS - (1 << 19) {
            return Err(BeeError::InvalidArgument("a batch too large for one arena"));
        }
        Ok(())
    }

    /// JS `batch.getBlock(seq)` as an entry of this batch.
    async fn entry<C: BeeCore>(&mut self, ctx: &ReadCtx<C>, seq: u64) -> Result<EntryId, BeeError> {
        if let Some(e) = self.lookup(seq) {
            return Ok(e);
        }
        let block = ctx.block(seq).await?;
        self.entries.push(Entry {
            seq,
            kind: EntryKind::Committed {
                block,
                levels: Vec::new(),
            },
        });
        let e = self.entries.len() - 1;
        self.by_seq.insert(seq, e);
        Ok(e)
    }

    /// JS `entry.getTreeNode(offset)`.
    fn tree_node(&mut self, e: EntryId, offset: u64) -> Result<NodeId, BeeError> {
        // Reads inside a batch come here too, not only writes (which check at their start).
        self.check_room()?;
        let seq = self.entries[e].seq;
        let bad = || BeeError::corrupt(seq, "a child refers to a node the block does not have");
        let off = usize::try_from(offset).map_err(|_| bad())?;
        let level = match &mut self.entries[e].kind {
            EntryKind::Pending { start, len, .. } => {
                let index = &self.pending_index[*start..*start + *len as usize];
                let c = index.get(off).and_then(|&c| unpack(c)).ok_or_else(bad)?;
                return self.child_node(c).ok_or_else(bad);
            }
            EntryKind::Committed { block, levels } => {
                if levels.is_empty() {
                    levels.resize(block.levels()?.len(), None);
                }
                match levels.get(off) {
                    None => return Err(bad()),
                    Some(Some(l)) => *l,
                    Some(None) => {
                        let node = &block.levels()?[off];
                        // A foreign block's node may have any number of children.
                        let adds = node.level.children.len() / 2;
                        if self.child_link.len().saturating_add(adds) >= MAX_ARENA_IDS {
                            return Err(BeeError::InvalidArgument(
                                "a batch too large for one arena",
                            ));
                        }
                        let src: &Level = &node.level;
                        let memo = &node.key_bytes;
                        let mut children = Children::with_capacity(src.children.len() / 2);
                        for pair in src.children.chunks_exact(2) {
                            let link = ChildLink {
                                node: NO_NODE,
                                level: 0,
                            };
                            self.child_link.push(link);
                            self.child_pos.push(ChildPos {
                                seq: pair[0],
                                offset: pair[1],
                            });
                            children.push(Slot {
                                id: id32(self.child_link.len() - 1),
                                link,
                            });
                        }
                        self.levels.push(LevelData {
                            keys: src
                                .keys
                                .iter()
                                .zip(memo.iter())
                                .map(|(&seq, m)| KeyRef {
                                    seq,
                                    value: m.get().map(KeyBytes::from_arc),
                                })
                                .collect(),
                            children,
                        });
                        let l = self.levels.len() - 1;
                        if let EntryKind::Committed { levels, .. } = &mut self.entries[e].kind {
                            levels[off] = Some(l);
                        }
                        l
                    }
                }
            }
        };
        self.nodes.push(NodeData {
            block: Some(e),
            level,
        });
        self.changed.push(false);
        Ok(self.nodes.len() - 1)
    }

    /// JS `batch.getRoot(false)`: the root as of this batch's version.
    async fn root<C: BeeCore>(&mut self, ctx: &ReadCtx<C>) -> Result<Option<NodeId>, BeeError> {
        let version = ctx.length + self.length;
        if version < 2 {
            return Ok(None);
        }
        let e = self.entry(ctx, version - 1).await?;
        if let EntryKind::Committed { block, .. } = &self.entries[e].kind {
            if block.levels()?.is_empty() {
                return Err(BeeError::corrupt(
                    block.seq,
                    "the block has no root node (a version inside a batch?)",
                ));
            }
        }
        Ok(Some(self.tree_node(e, 0)?))
    }

    /// JS `node.getKey(i)`: make sure key `i`'s bytes are loaded.
    async fn load_key<C: BeeCore>(
        &mut self,
        ctx: &ReadCtx<C>,
        n: NodeId,
        i: usize,
    ) -> Result<(), BeeError> {
        let k = self
            .level(n)
            .keys
            .get(i)
            .ok_or_else(|| self.err(n, "a key index out of range"))?;
        if k.value.is_some() {
            return Ok(());
        }
        let seq = k.seq;
        let own = self.nodes[n].block.filter(|&e| self.entries[e].seq == seq);
        let v = if let Some(e) = own {
            self.entry_key_bytes(e)
        } else if seq >= ctx.length {
            let e = self
                .lookup(seq)
                .ok_or_else(|| self.err(n, "a key refers to a block past the version"))?;
            self.entry_key_bytes(e)
        } else {
            KeyBytes::new(ctx.block(seq).await?.key())
        };
        self.level_mut(n).keys[i].value = Some(v);
        Ok(())
    }

    /// JS `node.search(key)` ([`search`]) on node `n`: a binary search over the keys held in
    /// the arena, without the per-comparison load step when every key it compares is already
    /// loaded (all keys a batch wrote are), else the general search that loads them.
    async fn search_node<C: BeeCore>(
        &mut self,
        ctx: &ReadCtx<C>,
        n: NodeId,
        key: &[u8],
    ) -> Result<Result<usize, usize>, BeeError> {
        if let Some(found) = self.search_loaded(n, key) {
            return Ok(found);
        }
        search(&mut ArenaTree { arena: self, ctx }, &n, key).await
    }

    /// [`search`] over `n`'s keys when every key it compares is loaded; `None` at the first one
    /// that is not (the same comparisons in the same order, so the same answer).
    fn search_loaded(&self, n: NodeId, key: &[u8]) -> Option<Result<usize, usize>> {
        self.search_loaded_in(self.nodes[n].level, key)
    }

    /// [`Arena::search_loaded`] over the keys of level `l`.
    fn search_loaded_in(&self, l: LevelId, key: &[u8]) -> Option<Result<usize, usize>> {
        self.search_loaded_padded(l, key, PaddedKey::new(key).as_ref())
    }

    /// [`Arena::search_loaded_in`] with `key` padded (when short enough), which a descent
    /// pads once for all its levels: a short key is compared with the inline keys word by word
    /// instead of by a call to `memcmp` each.
    fn search_loaded_padded(
        &self,
        l: LevelId,
        key: &[u8],
        padded: Option<&PaddedKey>,
    ) -> Option<Result<usize, usize>> {
        let keys = &self.levels[l].keys;
        let (mut s, mut e) = (0, keys.len());
        while s < e {
            let mid = (s + e) >> 1;
            let order = match (keys[mid].value.as_ref()?, padded) {
                (KeyBytes::Inline(len, buf), Some(p)) => p.cmp_inline(*len, buf),
                (k, _) => key.cmp(k.as_slice()),
            };
            match order {
                std::cmp::Ordering::Equal => return Some(Ok(mid)),
                std::cmp::Ordering::Less => e = mid,
                std::cmp::Ordering::Greater => s = mid + 1,
            }
        }
        Some(Err(s))
    }

    /// Key `i`'s bytes, once loaded.
    fn key_bytes(&self, n: NodeId, i: usize) -> &[u8] {
        self.level(n).keys[i]
            .value
            .as_ref()
            .map_or(&[][..], KeyBytes::as_slice)
    }

    /// JS `node.getChildNode(i)`.
    async fn child<C: BeeCore>(
        &mut self,
        ctx: &ReadCtx<C>,
        n: NodeId,
        i: usize,
    ) -> Result<NodeId, BeeError> {
        let slot = *self
            .level(n)
            .children
            .get(i)
            .ok_or_else(|| self.err(n, "a child index out of range"))?;
        debug_assert!(self.slot_in_sync(slot), "a stale slot");
        if let Some(node) = slot.node() {
            return Ok(node);
        }
        let c = slot.id();
        let ChildPos { seq, offset } = self.child_pos[c];
        if seq >= ctx.length {
            return Err(self.err(n, "a child refers to a block past the version"));
        }
        let own = self.nodes[n].block.filter(|&e| self.entries[e].seq == seq);
        let e = match own {
            Some(e) => e,
            None => self.entry(ctx, seq).await?,
        };
        let node = self.tree_node(e, offset)?;
        let link = ChildLink {
            node: id32(node),
            level: id32(self.nodes[node].level),
        };
        self.child_link[c] = link;
        self.level_mut(n).children[i].link = link;
        Ok(node)
    }

    /// [`Arena::child`] of node `n` whose level is `l`, with the child's level.
    async fn child_level<C: BeeCore>(
        &mut self,
        ctx: &ReadCtx<C>,
        n: NodeId,
        l: LevelId,
        i: usize,
    ) -> Result<(NodeId, LevelId), BeeError> {
        if let Some(&slot) = self.levels[l].children.get(i) {
            debug_assert!(self.slot_in_sync(slot), "a stale slot");
            if let Some(node) = slot.node() {
                return Ok((node, slot.link.level as LevelId));
            }
        }
        let node = self.child(ctx, n, i).await?;
        Ok((node, self.nodes[node].level))
    }

    /// JS `batch.getBlock(seq)` for reading a key and value.
    async fn block_view<C: BeeCore>(
        &mut self,
        ctx: &ReadCtx<C>,
        seq: u64,
    ) -> Result<BlockView, BeeError> {
        if seq >= ctx.length {
            let e = self.lookup(seq).ok_or_else(|| {
                BeeError::corrupt(seq, "a key refers to a block past the version")
            })?;
            return Ok(self.view_of(e));
        }
        Ok(BlockView::Committed(ctx.block(seq).await?))
    }

    fn view_of(&self, e: EntryId) -> BlockView {
        let en = &self.entries[e];
        match &en.kind {
            EntryKind::Committed { block, .. } => BlockView::Committed(block.clone()),
            EntryKind::Pending { .. } => {
                let (key, value) = self.entry_bytes(e);
                BlockView::Pending {
                    seq: en.seq,
                    key: key.into(),
                    value: value.map(Into::into),
                }
            }
        }
    }

    /// Entry `e`'s key and value (a committed block's value is its own).
    fn entry_bytes(&self, e: EntryId) -> (&[u8], Option<&[u8]>) {
        match &self.entries[e].kind {
            EntryKind::Committed { block, .. } => (block.key(), block.value()),
            &EntryKind::Pending {
                at,
                key_len,
                value_len,
                ..
            } => {
                let key_end = at + key_len as usize;
                let value = (value_len != NO_VALUE)
                    .then(|| &self.bytes[key_end..key_end + value_len as usize]);
                (&self.bytes[at..key_end], value)
            }
        }
    }

    /// Entry `e`'s key, as a tree node keeps it.
    fn entry_key_bytes(&self, e: EntryId) -> KeyBytes {
        match &self.entries[e].kind {
            EntryKind::Committed { block, .. } => KeyBytes::new(block.key()),
            EntryKind::Pending { .. } => KeyBytes::new(self.entry_bytes(e).0),
        }
    }

    /// JS `node.getKeyNode(i)`.
    async fn key_block<C: BeeCore>(
        &mut self,
        ctx: &ReadCtx<C>,
        n: NodeId,
        i: usize,
    ) -> Result<BlockView, BeeError> {
        let seq = self.level(n).keys[i].seq;
        self.block_view(ctx, seq).await
    }

    // ------------------------------------------------------------------ TreeNode methods

    /// JS `insertKey`: true while the node needs no split.
    #[allow(clippy::too_many_arguments)]
    async fn insert_key<C: BeeCore, F: CasFn>(
        &mut self,
        ctx: &ReadCtx<C>,
        n: NodeId,
        key: KeyRef,
        value: Option<&[u8]>,
        child: Option<NodeId>,
        cas: Option<&mut F>,
        new: &RawEntry<'_>,
        always_duplicate: bool,
    ) -> Result<bool, BeeError> {
        let target = key.value.as_ref().map_or(&[][..], KeyBytes::as_slice);
        match self.search_node(ctx, n, target).await? {
            Ok(mid) => {
                if let Some(cas) = cas {
                    let prev = self.key_block(ctx, n, mid).await?;
                    if !cas(&raw_of(&prev), new)? {
                        return Ok(true);
                    }
                }
                if !always_duplicate {
                    let prev = self.key_block(ctx, n, mid).await?;
                    if same_value(prev.value(), value) {
                        return Ok(true);
                    }
                }
                self.changed[n] = true;
                self.level_mut(n).keys[mid] = key;
                Ok(true)
            }
            Err(i) => {
                if let Some(child) = child {
                    if self.level(n).children.len() < i + 1 {
                        return Err(self.err(n, "a node has fewer children than keys"));
                    }
                    let c = self.new_child(0, 0, Some(child));
                    let slot = self.slot(c);
                    self.level_mut(n).children.insert(i + 1, slot);
                }
                self.level_mut(n).keys.insert(i, key);
                self.changed[n] = true;
                Ok(self.level(n).keys.len() < MAX_CHILDREN)
            }
        }
    }

    /// JS `removeKey`.
    fn remove_key(&mut self, n: NodeId, index: usize) -> Result<(), BeeError> {
        let l = self.nodes[n].level;
        if index >= self.levels[l].keys.len() {
            return Err(self.err(n, "a key index out of range"));
        }
        self.levels[l].keys.remove(index);
        if !self.levels[l].children.is_empty() {
            let c = self.levels[l]
                .children
                .get(index + 1)
                .ok_or_else(|| self.err(n, "a node has fewer children than keys"))?
                .id();
            self.child_pos[c].seq = 0; // mark as freed
            self.levels[l].children.remove(index + 1);
        }
        self.changed[n] = true;
        Ok(())
    }

    /// JS `split`: the median key and the new right node.
    async fn split<C: BeeCore>(
        &mut self,
        ctx: &ReadCtx<C>,
        n: NodeId,
    ) -> Result<(KeyRef, NodeId), BeeError> {
        let len = self.level(n).keys.len() >> 1;
        let right = self.create_node(self.nodes[n].block);
        let nk = self.level(n).keys.len();
        let keys: Keys = self.level_mut(n).keys.drain(nk - len..).collect();
        self.level_mut(right).keys = keys;
        // Make sure the median is loaded.
        let last = self.level(n).keys.len() - 1;
        self.load_key(ctx, n, last).await?;
        let median = self
            .level_mut(n)
            .keys
            .pop()
            .expect("a split node has a median");
        let nc = self.level(n).children.len();
        if nc > 0 {
            if nc < len + 1 {
                return Err(self.err(n, "a node has fewer children than keys"));
            }
            let children: Children = self.level_mut(n).children.drain(nc - (len + 1)..).collect();
            self.level_mut(right).children = children;
        }
        self.changed[n] = true;
        Ok((median, right))
    }

    /// JS `siblings(parent)`: (left, index of `n` in `parent`, right).
    async fn siblings<C: BeeCore>(
        &mut self,
        ctx: &ReadCtx<C>,
        n: NodeId,
        parent: NodeId,
    ) -> Result<(Option<NodeId>, usize, Option<NodeId>), BeeError> {
        let children = &self.level(parent).children;
        let len = children.len();
        let Some(i) = children.iter().position(|s| s.node() == Some(n)) else {
            return Err(self.err(parent, "bad parent"));
        };
        let left = if i > 0 {
            Some(self.child(ctx, parent, i - 1).await?)
        } else {
            None
        };
        let right = if i + 1 < len {
            Some(self.child(ctx, parent, i + 1).await?)
        } else {
            None
        };
        Ok((left, i, right))
    }

    /// JS `merge(node, median)`: append `median` and `right`'s keys and children to `left`.
    fn merge(&mut self, left: NodeId, right: NodeId, median: KeyRef) {
        self.changed[left] = true;
        let rl = self.nodes[right].level;
        let keys = self.levels[rl].keys.clone();
        // Moved, not copied: a child's slot lives in one record only, or a load through one
        // copy would leave the other's link behind (`right` is not reached again in a valid
        // tree: its parent's pointer to it is removed).
        let children = std::mem::take(&mut self.levels[rl].children);
        let l = self.level_mut(left);
        l.keys.push(median);
        l.keys.extend(keys);
        l.children.extend(children);
    }

    /// JS `leafSize`.
    async fn leaf_size<C: BeeCore>(
        &mut self,
        ctx: &ReadCtx<C>,
        mut n: NodeId,
        go_left: bool,
    ) -> Result<usize, BeeError> {
        for _ in 0..MAX_DEPTH {
            let c = self.level(n).children.len();
            if c == 0 {
                return Ok(self.level(n).keys.len());
            }
            n = self.child(ctx, n, if go_left { 0 } else { c - 1 }).await?;
        }
        Err(self.err(n, "the tree is deeper than any valid bee (a cycle?)"))
    }

    /// JS `setKeyToNearestLeaf`.
    async fn set_key_to_nearest_leaf<C: BeeCore>(
        &mut self,
        ctx: &ReadCtx<C>,
        n: NodeId,
        index: usize,
        stack: &mut Vec<NodeId>,
    ) -> Result<(), BeeError> {
        let left = self.child(ctx, n, index).await?;
        let right = self.child(ctx, n, index + 1).await?;
        let ls = self.leaf_size(ctx, left, false).await?;
        let rs = self.leaf_size(ctx, right, true).await?;
        let key = if ls < rs {
            let mut right = right;
            stack.push(right);
            while !self.level(right).children.is_empty() {
                right = self.child(ctx, right, 0).await?;
                stack.push(right);
            }
            if self.level(right).keys.is_empty() {
                return Err(self.err(right, "an empty leaf"));
            }
            self.level_mut(right).keys.remove(0)
        } else {
            let mut left = left;
            stack.push(left);
            while !self.level(left).children.is_empty() {
                let c = self.level(left).children.len();
                left = self.child(ctx, left, c - 1).await?;
                stack.push(left);
            }
            self.level_mut(left)
                .keys
                .pop()
                .ok_or_else(|| self.err(left, "an empty leaf"))?
        };
        self.level_mut(n).keys[index] = key;
        Ok(())
    }

    /// JS `rebalance(stack)`: the (possibly new) root.
    async fn rebalance<C: BeeCore>(
        &mut self,
        ctx: &ReadCtx<C>,
        stack: &mut Vec<NodeId>,
    ) -> Result<NodeId, BeeError> {
        let root = stack[0];
        while stack.len() > 1 {
            let node = stack.pop().expect("len > 1");
            let parent = *stack.last().expect("len > 1");
            if self.level(node).keys.len() >= MIN_KEYS {
                return Ok(root);
            }
            let (left, mut index, right) = self.siblings(ctx, node, parent).await?;
            if let Some(left) = left.filter(|&l| self.level(l).keys.len() > MIN_KEYS) {
                self.changed[left] = true;
                let pk = self.parent_key(parent, index.wrapping_sub(1))?;
                self.level_mut(node).keys.insert(0, pk);
                if let Some(c) = self.level_mut(left).children.pop() {
                    self.level_mut(node).children.insert(0, c);
                }
                let k = self.level_mut(left).keys.pop().expect("more than MIN_KEYS");
                self.level_mut(parent).keys[index - 1] = k;
                return Ok(root);
            }
            if let Some(right) = right.filter(|&r| self.level(r).keys.len() > MIN_KEYS) {
                self.changed[right] = true;
                let pk = self.parent_key(parent, index)?;
                self.level_mut(node).keys.push(pk);
                if !self.level(right).children.is_empty() {
                    let c = self.level_mut(right).children.remove(0);
                    self.level_mut(node).children.push(c);
                }
                let k = self.level_mut(right).keys.remove(0);
                self.level_mut(parent).keys[index] = k;
                return Ok(root);
            }
            let (l, r) = match (left, right) {
                (Some(left), _) => {
                    index -= 1;
                    (left, node)
                }
                (None, Some(right)) => (node, right),
                (None, None) => return Err(self.err(parent, "an inner node with one child")),
            };
            let median = self.parent_key(parent, index)?;
            self.merge(l, r, median);
            self.remove_key(parent, index)?;
        }
        if self.level(root).keys.is_empty() && !self.level(root).children.is_empty() {
            return self.child(ctx, root, 0).await;
        }
        Ok(root)
    }

    fn parent_key(&self, parent: NodeId, i: usize) -> Result<KeyRef, BeeError> {
        self.level(parent)
            .keys
            .get(i)
            .cloned()
            .ok_or_else(|| self.err(parent, "a node has more children than keys allow"))
    }

    // ------------------------------------------------------------------ put / del

    /// JS `Batch._put` after the lock and the header: `Some((root, seq))` when a block must be
    /// written ([`Arena::append`]), `None` when nothing changes (a refused compare-and-swap, or
    /// the same value with `always_duplicate` off).
    #[allow(clippy::too_many_arguments)]
    pub async fn put<C: BeeCore, F: CasFn>(
        &mut self,
        ctx: &ReadCtx<C>,
        key: &[u8],
        value: Option<&[u8]>,
        cas: Option<&mut F>,
        always_duplicate: bool,
    ) -> Result<Option<(NodeId, u64)>, BeeError> {
        // The path from the root, in an array every put of the batch reuses.
        let mut stack = std::mem::take(&mut self.scratch_stack);
        stack.clear();
        self.path_ids.clear();
        self.path_ok = false;
        // Set while the put runs: a put that writes nothing leaves its path marked, and one
        // that fails or whose future is dropped may leave marks anywhere.
        let before = std::mem::replace(&mut self.dirty_elsewhere, true);
        let out = self
            .put_inner(ctx, key, value, cas, always_duplicate, &mut stack)
            .await;
        self.scratch_stack = stack;
        if matches!(out, Ok(Some(_))) {
            self.dirty_elsewhere = before;
        }
        out
    }

    async fn put_inner<C: BeeCore, F: CasFn>(
        &mut self,
        ctx: &ReadCtx<C>,
        key: &[u8],
        value: Option<&[u8]>,
        mut cas: Option<&mut F>,
        always_duplicate: bool,
        stack: &mut Vec<NodeId>,
    ) -> Result<Option<(NodeId, u64)>, BeeError> {
        self.check_room()?;
        check_lengths(key, value)?;
        let (mut root, mut node) = match self.root(ctx).await? {
            Some(r) => (r, r),
            None => {
                let r = self.create_node(None);
                (r, r)
            }
        };
        let seq = ctx.length + self.length;
        let target = KeyRef {
            seq,
            value: Some(KeyBytes::new(key)),
        };
        let new = RawEntry { seq, key, value };
        let padded = PaddedKey::new(key);
        let mut depth = 0;
        // `node`'s level, carried down with it (see `ChildLink::level`).
        let mut lvl = self.nodes[node].level;
        loop {
            // Every line of the record is asked for at once: the search then reads lines that
            // are on their way instead of missing on each key it compares, one after another
            // (the records of a big batch's lower levels are not in the CPU's second-level
            // cache; a descent's first touch of one was half of a put's time).
            prefetch_record(&self.levels[lvl]);
            if self.levels[lvl].children.is_empty() {
                break;
            }
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(self.err(node, "the tree is deeper than any valid bee (a cycle?)"));
            }
            stack.push(node);
            self.changed[node] = true; // changed, but compressible
            let found = match self.search_loaded_padded(lvl, key, padded.as_ref()) {
                Some(found) => found,
                None => search(&mut ArenaTree { arena: self, ctx }, &node, key).await?,
            };
            match found {
                Ok(mid) => {
                    if let Some(cas) = cas.as_mut() {
                        let prev = self.key_block(ctx, node, mid).await?;
                        if !cas(&raw_of(&prev), &new)? {
                            return Ok(None);
                        }
                    }
                    if !always_duplicate {
                        let prev = self.key_block(ctx, node, mid).await?;
                        if same_value(prev.value(), new.value) {
                            return Ok(None);
                        }
                    }
                    self.level_mut(node).keys[mid] = target;
                    self.changed[node] = true;
                    // The path ends here: the nodes on the stack changed, no other.
                    self.path_ok = true;
                    return Ok(Some((root, seq)));
                }
                Err(i) => {
                    let parent = lvl;
                    (node, lvl) = self.child_level(ctx, node, lvl, i).await?;
                    self.path_ids.push(self.levels[parent].children[i].id());
                }
            }
        }
        let mut needs_split = !self
            .insert_key(
                ctx,
                node,
                target,
                new.value,
                None,
                cas,
                &new,
                always_duplicate,
            )
            .await?;
        if !self.changed[node] {
            return Ok(None);
        }
        if !needs_split {
            // The leaf ends the path; nothing split.
            stack.push(node);
            self.path_ok = true;
        }
        let leaf = node;
        while needs_split {
            let parent = stack.pop();
            let (median, right) = self.split(ctx, node).await?;
            if let Some(parent) = parent {
                needs_split = !self
                    .insert_key(
                        ctx,
                        parent,
                        median,
                        new.value,
                        Some(right),
                        None::<&mut NoCas>,
                        &new,
                        always_duplicate,
                    )
                    .await?;
                if node == leaf && !needs_split {
                    // The leaf split into a parent with room: the path, then the two halves.
                    self.path_ok = self.path_through_split(stack, parent, leaf, right);
                }
                node = parent;
            } else {
                root = self.create_node(self.nodes[node].block);
                let a = self.new_child(0, 0, Some(node));
                let a = self.slot(a);
                let b = self.new_child(0, 0, Some(right));
                let b = self.slot(b);
                let l = self.level_mut(root);
                l.keys.push(median);
                l.children.push(a);
                l.children.push(b);
                needs_split = false;
            }
        }
        Ok(Some((root, seq)))
    }

    /// JS `Batch._del` after the lock and the header; see [`Arena::put`].
    pub async fn del<C: BeeCore, F: CasFn>(
        &mut self,
        ctx: &ReadCtx<C>,
        key: &[u8],
        cas: Option<&mut F>,
    ) -> Result<Option<(NodeId, u64)>, BeeError> {
        // A delete's block is always indexed by the full walk; one that fails or whose future
        // is dropped half way may leave marks (see `Arena::dirty_elsewhere`).
        self.path_ok = false;
        let before = std::mem::replace(&mut self.dirty_elsewhere, true);
        let out = self.del_inner(ctx, key, cas).await;
        if out.is_ok() {
            self.dirty_elsewhere = before;
        }
        out
    }

    async fn del_inner<C: BeeCore, F: CasFn>(
        &mut self,
        ctx: &ReadCtx<C>,
        key: &[u8],
        mut cas: Option<&mut F>,
    ) -> Result<Option<(NodeId, u64)>, BeeError> {
        self.check_room()?;
        check_lengths(key, None)?;
        let mut stack = Vec::new();
        let Some(mut node) = self.root(ctx).await? else {
            return Ok(None);
        };
        let seq = ctx.length + self.length;
        for _ in 0..MAX_DEPTH {
            stack.push(node);
            match self.search_node(ctx, node, key).await? {
                Ok(mid) => {
                    if let Some(cas) = cas.as_mut() {
                        let prev = self.key_block(ctx, node, mid).await?;
                        let del = RawEntry {
                            seq,
                            key,
                            value: None,
                        };
                        if !cas(&raw_of(&prev), &del)? {
                            return Ok(None);
                        }
                    }
                    if self.level(node).children.is_empty() {
                        self.remove_key(node, mid)?;
                    } else {
                        self.set_key_to_nearest_leaf(ctx, node, mid, &mut stack)
                            .await?;
                    }
                    // Marked late, so that a 404 rewrites nothing.
                    for &n in &stack {
                        self.changed[n] = true;
                    }
                    let root = self.rebalance(ctx, &mut stack).await?;
                    return Ok(Some((root, seq)));
                }
                Err(i) => {
                    if self.level(node).children.is_empty() {
                        return Ok(None);
                    }
                    node = self.child(ctx, node, i).await?;
                }
            }
        }
        Err(self.err(node, "the tree is deeper than any valid bee (a cycle?)"))
    }

    // ------------------------------------------------------------------ appending

    /// JS `indexChanges`: add `n` and its changed descendants to `index`; `n`'s offset.
    ///
    /// With `block` (a batch's pending block `e`), also JS `updateChildren`: every descendant
    /// indexed here now lives in block `e`. (`updateChildren` walks the children whose seq is
    /// the new one: exactly those this walk gives it, so one walk does both.)
    fn index_changes(
        &mut self,
        n: NodeId,
        index: &mut Vec<Option<ChildId>>,
        seq: u64,
        block: Option<EntryId>,
        depth: usize,
    ) -> Result<u64, BeeError> {
        if depth > MAX_DEPTH {
            return Err(self.err(n, "the tree is deeper than any valid bee (a cycle?)"));
        }
        let offset = index.len() as u64;
        index.push(None);
        self.changed[n] = false;
        let l = self.nodes[n].level;
        // Indexing children does not change this node's arrays: walk them in place.
        for k in 0..self.levels[l].children.len() {
            let slot = self.levels[l].children[k];
            debug_assert!(self.slot_in_sync(slot), "a stale slot");
            let Some(cn) = slot.node() else {
                continue;
            };
            let c = slot.id();
            if !self.changed[cn] {
                continue;
            }
            self.child_pos[c].seq = seq;
            if block.is_some() {
                self.nodes[cn].block = block;
            }
            let off = self.index_changes(cn, index, seq, block, depth + 1)?;
            self.child_pos[c].offset = off;
            index[off as usize] = Some(c);
        }
        Ok(offset)
    }

    /// [`Arena::index_changes`] of `root` for pending block `e` when the last put's changed
    /// nodes are known in the walk's order (`scratch_stack`, [`Arena::path_ok`]) and no
    /// other node is marked: the index is that list, each node at its place, each reached
    /// through its id in `path_ids`. The same result without reading every child of every
    /// node of the path. False (nothing changed: the caller walks) if the list does not
    /// start at `root` or does not match its ids.
    fn index_path(
        &mut self,
        root: NodeId,
        index: &mut Vec<Option<ChildId>>,
        seq: u64,
        e: EntryId,
    ) -> bool {
        let path = std::mem::take(&mut self.scratch_stack);
        let ok = path.first() == Some(&root) && self.path_ids.len() + 1 == path.len();
        debug_assert!(
            ok,
            "a put's path that does not start at its root or does not match its ids"
        );
        debug_assert!(
            {
                let mut walk = Vec::new();
                self.changed_preorder(root, &mut walk, 0);
                walk == path
            },
            "a path that is not the walk's"
        );
        if ok {
            self.changed[root] = false;
            index.push(None);
            for (d, (&c, &n)) in self.path_ids.iter().zip(&path[1..]).enumerate() {
                self.child_pos[c] = ChildPos {
                    seq,
                    offset: d as u64 + 1,
                };
                self.nodes[n].block = Some(e);
                self.changed[n] = false;
                index.push(Some(c));
            }
        }
        self.scratch_stack = path;
        ok
    }

    /// After a put whose leaf split into a parent with room: its changed nodes in the order
    /// of the `indexChanges` walk, for [`Arena::index_path`]. `stack` holds the path above
    /// `parent`; the walk meets the path down to `parent`, then the leaf (its child at the
    /// place the descent took), then `right` (the next child, where the split put it), and
    /// nothing below them (leaves). Adds them to `stack` and `right`'s child id to
    /// `path_ids`; false (nothing added: the walk indexes the block) if the parent's children
    /// are not as expected.
    fn path_through_split(
        &mut self,
        stack: &mut Vec<NodeId>,
        parent: NodeId,
        leaf: NodeId,
        right: NodeId,
    ) -> bool {
        let Some(&leaf_id) = self.path_ids.last() else {
            return false;
        };
        let children = &self.level(parent).children;
        let Some(at) = children.iter().position(|s| s.id() == leaf_id) else {
            return false;
        };
        match children.get(at + 1) {
            Some(r) if r.node() == Some(right) && children[at].node() == Some(leaf) => {
                self.path_ids.push(r.id());
                stack.extend([parent, leaf, right]);
                true
            }
            _ => false,
        }
    }

    /// Debug check of [`Arena::index_path`]: the changed nodes from `n` in the order of the
    /// `indexChanges` walk (which looks at every child of a changed node, recursing into
    /// the changed ones).
    fn changed_preorder(&self, n: NodeId, out: &mut Vec<NodeId>, depth: usize) {
        out.push(n);
        if depth > MAX_DEPTH {
            return;
        }
        for s in &self.level(n).children {
            if let Some(cn) = s.node().filter(|&cn| self.changed[cn]) {
                self.changed_preorder(cn, out, depth + 1);
            }
        }
    }

    /// JS `deflate(index)`: the encoded `YoloIndex` of these nodes (as they are now), and the
    /// nodes themselves as decoding it gives them back.
    fn deflate(&self, index: &[Option<ChildId>]) -> (Vec<u8>, Vec<Level>) {
        let mut out = Vec::with_capacity(24 * index.len());
        let mut levels = Vec::with_capacity(index.len());
        let mut body = Vec::new();
        for &c in index {
            let mut level = Level::default();
            self.fill_level(c, &mut level);
            push_level(&mut out, &level, &mut body);
            levels.push(level);
        }
        (out, levels)
    }

    /// [`Arena::fill_level`], each child's offset given by `offset` (from its id and place).
    fn fill_level_at(
        &self,
        c: Option<ChildId>,
        level: &mut Level,
        offset: impl Fn(ChildId, ChildPos) -> u64,
    ) {
        level.keys.clear();
        level.children.clear();
        if let Some(node) = c.and_then(|c| self.child_node(c)) {
            let l = self.level(node);
            level.keys.extend(l.keys.iter().map(|k| k.seq));
            level.children.reserve(2 * l.children.len());
            for s in &l.children {
                let pos = self.child_pos[s.id()];
                level.children.push(pos.seq);
                level.children.push(offset(s.id(), pos));
            }
        }
    }

    /// `level` (cleared first) as the node of child `c` is now: its keys' seqs and its
    /// children's seqs and offsets (empty for no node: an index entry this block leaves out).
    fn fill_level(&self, c: Option<ChildId>, level: &mut Level) {
        self.fill_level_at(c, level, |_, pos| pos.offset);
    }

    /// JS `_append` for a single operation (`autoFlush`): the encoded block, and the tree
    /// nodes of its index as decoding it gives them back (the next write starts from this
    /// block's root: the cache gets them without decoding the block again).
    pub fn encode_single(
        &mut self,
        root: NodeId,
        seq: u64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(Vec<u8>, Vec<Level>), BeeError> {
        let mut index = Vec::with_capacity(INDEX_CAPACITY);
        self.index_changes(root, &mut index, seq, None, 0)?;
        index[0] = Some(self.new_child(seq, 0, Some(root)));
        let (bytes, levels) = self.deflate(&index);
        Ok((encode_node(&bytes, key, value), levels))
    }

    /// JS `_append` inside a batch: keep the block pending.
    pub fn append_pending(
        &mut self,
        root: NodeId,
        seq: u64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), BeeError> {
        // Taken: it describes the last put, and only this block.
        let path_ok = std::mem::take(&mut self.path_ok);
        // `put` and `del` refused longer ones before they changed anything.
        check_lengths(key, value)?;
        let key_len = key.len() as u32;
        let value_len = value.map_or(NO_VALUE, |v| v.len() as u32);
        let at = self.bytes.len();
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value.unwrap_or_default());
        // The entry this block becomes; the walk points the nodes it indexes at it.
        let e = self.entries.len();
        let mut index = std::mem::take(&mut self.scratch_index);
        index.clear();
        #[cfg(test)]
        let path_ok = path_ok && !self.always_walk;
        let walked =
            if path_ok && !self.dirty_elsewhere && self.index_path(root, &mut index, seq, e) {
                Ok(())
            } else {
                let walked = self.index_changes(root, &mut index, seq, Some(e), 0);
                // Every mark reachable from the root is cleared (unreachable ones never count).
                self.dirty_elsewhere = walked.is_err();
                walked.map(|_| ())
            };
        let packed = walked.and_then(|_| {
            index[0] = Some(self.new_child(seq, 0, Some(root)));
            pack_index(&index, &mut self.pending_index)
        });
        self.scratch_index = index;
        let packed = match packed {
            Ok(p) => p,
            Err(err) => {
                // Nodes may point at `e` already: it must exist (never written: not in
                // `pending`).
                self.entries.push(Entry {
                    seq,
                    kind: EntryKind::Pending {
                        start: 0,
                        len: 0,
                        at,
                        key_len,
                        value_len,
                    },
                });
                return Err(err);
            }
        };
        self.entries.push(Entry {
            seq,
            kind: EntryKind::Pending {
                start: packed.0,
                len: packed.1,
                at,
                key_len,
                value_len,
            },
        });
        self.nodes[root].block = Some(e);
        self.length += 1;
        if self.pending.is_empty() {
            self.pending_base = seq;
        }
        if seq == self.pending_base + self.pending.len() as u64 {
            self.pending.push(e);
        } else {
            // Not reached: a batch's seqs follow each other.
            self.by_seq.insert(seq, e);
        }
        Ok(())
    }

    /// JS `toBlocks`: the pending blocks, encoded, in order. `base` is the seq of the first
    /// (the core's length). The arena's pending indexes are consumed: it is discarded after.
    ///
    /// JS narrows each block's list of nodes and encodes the block at once, before the next
    /// block is narrowed; here in two passes: every block narrowed first ([`Arena::place_nodes`],
    /// in order), then the bytes, which only read and so run in two halves through `join` (at
    /// once where it runs them so) for a big batch. A node of a block that points at
    /// a child placed by a *later* block (deletes make such nodes) gets the child's offset as
    /// it was before that block moved it, as JS reads it ([`Placement::offset_at`]).
    pub fn take_blocks(&mut self, base: u64, join: &dyn Join) -> Result<EncodedBlocks, BeeError> {
        let placed = self.place_nodes(base)?;
        let this = &*self;
        let encode = |blocks: core::ops::Range<usize>| this.encode_blocks(&placed, blocks);
        let n = placed.spans.len();
        let parts = if n >= SPLIT_AT {
            // Halves of about equal work, not of equal numbers of blocks: a node goes in the
            // last block that changed it, so most of them are in the last blocks (in a batch of
            // 100k random puts, the last 19k hold all 20k nodes), and a node (its keys and
            // children, each child's place read from the arena) costs about what ten blocks'
            // keys and values do.
            let mid = split_by_cost(&placed.spans, |s| 1 + 10 * s.len);
            let (a, b) = join2(join, || encode(0..mid), || encode(mid..n));
            vec![a, b]
        } else {
            vec![encode(0..n)]
        };
        Ok(EncodedBlocks { parts })
    }

    /// Tests: JS `toBlocks` as JS runs it, each block narrowed and encoded before the next one
    /// is narrowed: what [`Arena::take_blocks`]' two passes must give, byte for byte.
    #[cfg(test)]
    pub(crate) fn take_blocks_one_pass(&mut self, base: u64) -> Result<EncodedBlocks, BeeError> {
        let mut out = EncodedPart::default();
        let (mut level, mut body) = (Level::default(), Vec::new());
        for i in 0..self.length {
            let seq = base + i;
            let e = self
                .lookup(seq)
                .ok_or(BeeError::InvalidArgument("batch blocks out of order"))?;
            let EntryKind::Pending { start, len, .. } = &mut self.entries[e].kind else {
                return Err(BeeError::InvalidArgument("batch blocks out of order"));
            };
            let packed = &self.pending_index[*start..*start + std::mem::take(len) as usize];
            let mut index: Vec<Option<ChildId>> = packed.iter().map(|&c| unpack(c)).collect();
            if i + 1 < self.length {
                if let Some(root) = index.first_mut() {
                    *root = None;
                }
                let mut j = 0;
                while j < index.len() {
                    if let Some(c) = index[j] {
                        if self.child_pos[c].seq == seq {
                            self.child_pos[c].offset = j as u64;
                            j += 1;
                            continue;
                        }
                    }
                    index.swap_remove(j);
                }
            }
            let mut buf = Vec::new();
            for &c in &index {
                self.fill_level(c, &mut level);
                push_level(&mut buf, &level, &mut body);
            }
            let (key, value) = self.entry_bytes(e);
            encode_node_into(&mut out.bytes, &buf, key, value);
            out.ends.push(out.bytes.len());
        }
        Ok(EncodedBlocks { parts: vec![out] })
    }

    /// `take_blocks`' first pass: each pending block's index narrowed, in place, to the nodes
    /// it encodes (JS `toBlocks`: a node goes in the last block that changed it, the root only
    /// in the last block), and each of those nodes' offset in it set (the offset it had
    /// before kept too).
    fn place_nodes(&mut self, base: u64) -> Result<Placement, BeeError> {
        let mut placed = Placement {
            base,
            spans: Vec::with_capacity(self.length as usize),
            before: Vec::new(),
        };
        for i in 0..self.length {
            let seq = base + i;
            let e = self
                .lookup(seq)
                .ok_or(BeeError::InvalidArgument("batch blocks out of order"))?;
            let EntryKind::Pending {
                start,
                len,
                key_len,
                value_len,
                ..
            } = &mut self.entries[e].kind
            else {
                return Err(BeeError::InvalidArgument("batch blocks out of order"));
            };
            // Taken: the arena is done with once its blocks are encoded.
            let (start, mut live) = (*start, std::mem::take(len) as usize);
            let kv = *key_len as usize
                + if *value_len == NO_VALUE {
                    0
                } else {
                    *value_len as usize
                };
            let index = &mut self.pending_index[start..start + live];
            let mut before_at = NOT_NARROWED;
            if i + 1 < self.length {
                before_at = placed.before.len();
                if let Some(root) = index.first_mut() {
                    *root = NO_CHILD;
                }
                let mut j = 0;
                while j < live {
                    if let Some(c) = unpack(index[j]) {
                        if self.child_pos[c].seq == seq {
                            placed.before.push(self.child_pos[c].offset);
                            self.child_pos[c].offset = j as u64;
                            j += 1;
                            continue;
                        }
                    }
                    // `swap_remove`, as JS splices its list.
                    live -= 1;
                    index[j] = index[live];
                }
            }
            placed.spans.push(BlockSpan {
                entry: e,
                start,
                len: live,
                before_at,
                room: kv + BLOCK_FRAMING + live * NODE_ROOM,
            });
        }
        Ok(placed)
    }

    /// `take_blocks`' second pass over `blocks` (indexes into the placement's spans): their
    /// bytes, one after the other.
    fn encode_blocks(&self, placed: &Placement, blocks: core::ops::Range<usize>) -> EncodedPart {
        let spans = &placed.spans[blocks.clone()];
        let mut out = EncodedPart {
            bytes: Vec::new(),
            ends: Vec::with_capacity(spans.len()),
        };
        // Room for every block: the buffer is not copied into fresh pages as it grows. A
        // generous bound, as room never written is address space only. Only a hint: a failure
        // leaves the buffer to grow as it goes.
        let _ = out
            .bytes
            .try_reserve(spans.iter().map(|s| s.room).sum::<usize>() + NODE_ROOM);
        let (mut buf, mut level, mut body) = (Vec::new(), Level::default(), Vec::new());
        for (i, s) in blocks.zip(spans) {
            let seq = placed.base + i as u64;
            buf.clear();
            for &c in &self.pending_index[s.start..s.start + s.len] {
                self.fill_level_at(unpack(c), &mut level, |c, pos| {
                    if pos.seq > seq {
                        placed.offset_at(self, c, pos)
                    } else {
                        pos.offset
                    }
                });
                push_level(&mut buf, &level, &mut body);
            }
            let (key, value) = self.entry_bytes(s.entry);
            encode_node_into(&mut out.bytes, &buf, key, value);
            out.ends.push(out.bytes.len());
        }
        out
    }
}

/// `level` as one `YoloIndex.levels` entry (tag, length, body) at the end of `out`, encoded
/// through `body` (a scratch buffer).
fn push_level(out: &mut Vec<u8>, level: &Level, body: &mut Vec<u8>) {
    body.clear();
    level.encode_into(body);
    out.push(0x0a);
    write_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// Room [`Arena::take_blocks`] makes for each block's framing: the key's, value's and index's
/// tags and lengths.
const BLOCK_FRAMING: usize = 16;

/// Room [`Arena::take_blocks`] makes for each node's encoding: its keys' seqs and its children's
/// seqs and offsets, for a node of a few keys of a big tree.
const NODE_ROOM: usize = 128;

/// A pending block as [`Arena::take_blocks`] encodes it: its entry, its narrowed index (at
/// `start..start + len` of [`Arena::pending_index`]) and the room its bytes may take.
struct BlockSpan {
    entry: EntryId,
    start: usize,
    len: usize,
    /// Where the offsets its nodes had before it placed them start in
    /// [`Placement::before`] (one for each of its `len` nodes, in order), or [`NOT_NARROWED`]
    /// for the last block, which places none.
    before_at: usize,
    room: usize,
}

/// [`BlockSpan::before_at`] of the batch's last block.
const NOT_NARROWED: usize = usize::MAX;

/// What [`Arena::place_nodes`] decided: each pending block's span, from the one of seq `base`
/// on, and the offsets the nodes it placed had before.
struct Placement {
    base: u64,
    spans: Vec<BlockSpan>,
    before: Vec<u64>,
}

impl Placement {
    /// The offset of child `c`, placed at `pos` by a later block of the batch, as JS reads it
    /// while encoding an earlier block (before that later block was narrowed): the offset it
    /// had before. A child its block did not move (the last block's, or the root a block
    /// dropped) keeps the one it has.
    fn offset_at(&self, arena: &Arena, c: ChildId, pos: ChildPos) -> u64 {
        let moved = usize::try_from(pos.seq - self.base)
            .ok()
            .and_then(|i| self.spans.get(i))
            .filter(|s| s.before_at != NOT_NARROWED)
            .and_then(|s| {
                let placed = &arena.pending_index[s.start..s.start + s.len];
                let k = placed.iter().position(|&p| unpack(p) == Some(c))?;
                self.before.get(s.before_at + k).copied()
            });
        moved.unwrap_or(pos.offset)
    }
}

/// Encoded blocks ([`Arena::take_blocks`]): one buffer for each part of the batch that was
/// encoded apart (one, or two for a big batch), the blocks one after the other in it: a batch
/// of 100k puts makes two allocations for its blocks instead of 100k.
#[derive(Debug, Default)]
pub(crate) struct EncodedBlocks {
    parts: Vec<EncodedPart>,
}

#[derive(Debug, Default)]
struct EncodedPart {
    bytes: Vec<u8>,
    /// Where each block ends in `bytes`.
    ends: Vec<usize>,
}

impl EncodedBlocks {
    /// The blocks, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.parts.iter().flat_map(|p| {
            let starts = std::iter::once(0).chain(p.ends.iter().copied());
            starts.zip(&p.ends).map(|(s, &e)| &p.bytes[s..e])
        })
    }

    /// How many blocks.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.ends.len()).sum()
    }
}

/// Refuse a key or value too long for [`EntryKind::Pending`]'s lengths (4 GiB or more; a
/// core's blocks are far smaller anyway).
pub(crate) fn check_lengths(key: &[u8], value: Option<&[u8]>) -> Result<(), BeeError> {
    let fits = |len: usize| u32::try_from(len).is_ok_and(|l| l != NO_VALUE);
    if fits(key.len()) && value.is_none_or(|v| fits(v.len())) {
        Ok(())
    } else {
        Err(BeeError::InvalidArgument("a key or value of 4 GiB or more"))
    }
}

/// A pending block's index as stored: one `u32` per node ([`NO_CHILD`] for none) instead of
/// 16 bytes, appended to `out` (the batch's [`Arena::pending_index`]); where it went.
fn pack_index(index: &[Option<ChildId>], out: &mut Vec<u32>) -> Result<(usize, u32), BeeError> {
    let start = out.len();
    let too_large = || BeeError::InvalidArgument("a batch too large for one arena");
    let len = u32::try_from(index.len()).map_err(|_| too_large())?;
    for c in index {
        let packed = match *c {
            None => Some(NO_CHILD),
            Some(c) => u32::try_from(c).ok().filter(|&c| c != NO_CHILD),
        };
        let Some(packed) = packed else {
            out.truncate(start);
            return Err(too_large());
        };
        out.push(packed);
    }
    Ok((start, len))
}

/// An entry of a packed index.
fn unpack(c: u32) -> Option<ChildId> {
    (c != NO_CHILD).then_some(c as ChildId)
}

/// No node at this offset of a packed index.
const NO_CHILD: u32 = u32::MAX;

fn raw_of(b: &BlockView) -> RawEntry<'_> {
    RawEntry {
        seq: b.seq(),
        key: b.key(),
        value: b.value(),
    }
}

/// [`TreeRead`] over an [`Arena`]: reads inside a batch (JS `Batch.get`, `createRangeIterator`).
pub(crate) struct ArenaTree<'a, C> {
    pub arena: &'a mut Arena,
    pub ctx: &'a ReadCtx<C>,
}

impl<C: BeeCore> TreeRead for ArenaTree<'_, C> {
    type Node = NodeId;

    async fn root(&mut self) -> Result<Option<NodeId>, BeeError> {
        self.arena.root(self.ctx).await
    }

    fn node_seq(&self, n: &NodeId) -> u64 {
        self.arena.node_seq(*n).unwrap_or(u64::MAX)
    }

    fn keys_len(&self, n: &NodeId) -> usize {
        self.arena.level(*n).keys.len()
    }

    fn children_len(&self, n: &NodeId) -> usize {
        self.arena.level(*n).children.len()
    }

    fn key_seq(&self, n: &NodeId, i: usize) -> Result<u64, BeeError> {
        self.arena
            .level(*n)
            .keys
            .get(i)
            .map(|k| k.seq)
            .ok_or_else(|| self.arena.err(*n, "a key index out of range"))
    }

    fn child_ptr(&self, n: &NodeId, i: usize) -> Result<(u64, u64), BeeError> {
        let c = self
            .arena
            .level(*n)
            .children
            .get(i)
            .ok_or_else(|| self.arena.err(*n, "a child index out of range"))?
            .id();
        let ChildPos { seq, offset } = self.arena.child_pos[c];
        Ok((seq, offset))
    }

    async fn key(&mut self, n: &NodeId, i: usize) -> Result<Arc<[u8]>, BeeError> {
        self.arena.load_key(self.ctx, *n, i).await?;
        Ok(self.arena.key_bytes(*n, i).into())
    }

    async fn cmp_key(
        &mut self,
        n: &NodeId,
        i: usize,
        key: &[u8],
    ) -> Result<std::cmp::Ordering, BeeError> {
        self.arena.load_key(self.ctx, *n, i).await?;
        Ok(key.cmp(self.arena.key_bytes(*n, i)))
    }

    async fn child(&mut self, n: &NodeId, i: usize) -> Result<NodeId, BeeError> {
        self.arena.child(self.ctx, *n, i).await
    }

    async fn block(&mut self, seq: u64) -> Result<BlockView, BeeError> {
        self.arena.block_view(self.ctx, seq).await
    }

    fn committed_length(&self) -> u64 {
        self.ctx.length
    }

    fn unlink_child(&mut self, n: &NodeId, i: usize) {
        let l = self.arena.nodes[*n].level;
        if let Some(slot) = self.arena.levels[l].children.get_mut(i) {
            slot.link.node = NO_NODE;
            self.arena.child_link[slot.id()].node = NO_NODE;
        }
    }
}

#[cfg(test)]
mod padded_key_tests {
    use super::*;

    /// Word-wise comparison of padded keys is byte order, for keys that share prefixes, end in
    /// zero bytes, and cross every word boundary.
    #[test]
    fn padded_order_is_byte_order() {
        let mut keys: Vec<Vec<u8>> = vec![vec![], vec![0], vec![0, 0], vec![1], vec![255]];
        let mut x: u32 = 7;
        for len in 0..=INLINE_KEY {
            for _ in 0..12 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                // Bytes from a small alphabet with zeros, so that many keys share prefixes.
                let k: Vec<u8> = (0..len)
                    .map(|i| [0u8, 1, b'k', 255][((x >> (i % 16)) & 3) as usize])
                    .collect();
                keys.push(k);
            }
            keys.push(vec![b'k'; len]);
            let mut z = vec![b'k'; len];
            if let Some(last) = z.last_mut() {
                *last = 0;
            }
            keys.push(z);
        }
        for a in &keys {
            let pa = PaddedKey::new(a).expect("short key");
            for b in &keys {
                let KeyBytes::Inline(len, buf) = KeyBytes::new(b) else {
                    panic!("short keys are inline");
                };
                assert_eq!(
                    pa.cmp_inline(len, &buf),
                    a.as_slice().cmp(b),
                    "{a:?} vs {b:?}"
                );
            }
        }
        assert!(PaddedKey::new(&[1; INLINE_KEY + 1]).is_none());
    }
}
