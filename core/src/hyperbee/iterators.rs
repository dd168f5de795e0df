//! Range reads (JS `iterators/range.js`, `createReadStream`, `peek`): [`RangeState`] walks any
//! [`TreeRead`] tree exactly as JS's `RangeIterator` does (same bounds semantics, same order,
//! same `limit` handling); [`RangeIter`] runs it over a bee's committed blocks and
//! [`super::BatchRange`] over a batch.

use std::cmp::Ordering;

use super::encodings::Codec;
use super::error::BeeError;
use super::read::{search, BlockView, CNode, CommittedTree, TreeRead, MAX_DEPTH};
use super::source::BeeCore;
use super::{Entry, Hyperbee};

/// Bounds and options of a range read (JS `createReadStream(range, opts)`), with keys as the
/// application passes them. `Default` is everything, in key order.
///
/// As in JS: `gt` wins over `gte` when both are given (and `lt` over `lte`); a `limit` of 0
/// gives nothing. In a [`Hyperbee::sub`], the bounds are inside the sub, and an unbounded side
/// stops at the sub's edge.
pub struct RangeOptions<'a, K: Codec> {
    /// Keys strictly greater than this.
    pub gt: Option<&'a K::Value>,
    /// Keys greater than or equal to this.
    pub gte: Option<&'a K::Value>,
    /// Keys strictly less than this.
    pub lt: Option<&'a K::Value>,
    /// Keys less than or equal to this.
    pub lte: Option<&'a K::Value>,
    /// Largest key first.
    pub reverse: bool,
    /// At most this many entries.
    pub limit: Option<u64>,
}

impl<K: Codec> Default for RangeOptions<'_, K> {
    fn default() -> Self {
        RangeOptions {
            gt: None,
            gte: None,
            lt: None,
            lte: None,
            reverse: false,
            limit: None,
        }
    }
}

impl<K: Codec> Clone for RangeOptions<'_, K> {
    fn clone(&self) -> Self {
        RangeOptions {
            gt: self.gt,
            gte: self.gte,
            lt: self.lt,
            lte: self.lte,
            reverse: self.reverse,
            limit: self.limit,
        }
    }
}

/// A range with encoded bounds (sub prefix included), as JS's `encRange` leaves it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawRange {
    pub gt: Option<Vec<u8>>,
    pub gte: Option<Vec<u8>>,
    pub lt: Option<Vec<u8>>,
    pub lte: Option<Vec<u8>>,
    pub reverse: bool,
    /// -1: no limit (JS).
    pub limit: i64,
}

/// JS `RangeIterator` state, over any [`TreeRead`].
pub(crate) struct RangeState<N> {
    stack: Vec<(N, i64)>,
    limit: i64,
    g_incl: bool,
    g_key: Option<Vec<u8>>,
    l_incl: bool,
    l_key: Option<Vec<u8>>,
    reverse: bool,
}

impl<N: Clone> RangeState<N> {
    pub fn new(r: RawRange) -> Self {
        RangeState {
            stack: Vec::new(),
            limit: r.limit,
            g_incl: r.gt.is_none(),
            g_key: r.gt.or(r.gte),
            l_incl: r.lt.is_none(),
            l_key: r.lt.or(r.lte),
            reverse: r.reverse,
        }
    }

    fn push(&mut self, t: &impl TreeRead<Node = N>, n: N, i: i64) -> Result<(), BeeError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(BeeError::corrupt(
                t.node_seq(&n),
                "the tree is deeper than any valid bee (a cycle?)",
            ));
        }
        self.stack.push((n, i));
        Ok(())
    }

    /// JS `_open`: find where the range starts.
    pub async fn open<T: TreeRead<Node = N>>(&mut self, t: &mut T) -> Result<(), BeeError> {
        let Some(mut node) = t.root().await? else {
            return Ok(());
        };
        let incl = if self.reverse {
            self.l_incl
        } else {
            self.g_incl
        };
        let start = if self.reverse {
            self.l_key.clone()
        } else {
            self.g_key.clone()
        };
        let Some(start) = start else {
            let i = if self.reverse {
                (t.keys_len(&node) as i64) << 1
            } else {
                0
            };
            return self.push(t, node, i);
        };
        for _ in 0..MAX_DEPTH {
            match search(t, &node, &start).await? {
                Ok(mid) => {
                    let mid = mid as i64;
                    let i = if incl {
                        mid * 2 + 1
                    } else {
                        mid * 2 + if self.reverse { 0 } else { 2 }
                    };
                    return self.push(t, node, i);
                }
                Err(i) => {
                    let len2 = (t.keys_len(&node) as i64) << 1;
                    let ei = 2 * i as i64 + if self.reverse { -1 } else { 1 };
                    let leaf = t.children_len(&node) == 0;
                    if ei >= 0 && ei <= len2 {
                        self.push(t, node.clone(), ei)?;
                    }
                    if leaf {
                        return Ok(());
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

    /// JS `next`: the next block in range.
    pub async fn next<T: TreeRead<Node = N>>(
        &mut self,
        t: &mut T,
    ) -> Result<Option<BlockView>, BeeError> {
        let (end, incl) = if self.reverse {
            (self.g_key.clone(), self.g_incl)
        } else {
            (self.l_key.clone(), self.l_incl)
        };
        while !self.stack.is_empty() && (self.limit == -1 || self.limit > 0) {
            let top = self.stack.len() - 1;
            let (ref node, ref mut i) = self.stack[top];
            let node = node.clone();
            let is_key = (*i & 1) == 1;
            let n = if self.reverse {
                if *i < 0 {
                    t.keys_len(&node) as i64
                } else {
                    let v = *i;
                    *i -= 1;
                    v >> 1
                }
            } else {
                let v = *i;
                *i += 1;
                v >> 1
            };
            if !is_key {
                if t.children_len(&node) == 0 {
                    continue;
                }
                let n = usize::try_from(n)
                    .map_err(|_| BeeError::corrupt(t.node_seq(&node), "bad child index"))?;
                let child = t.child(&node, n).await?;
                if t.node_seq(&node) < t.committed_length() {
                    t.unlink_child(&node, n); // JS: unlink it to save memory
                }
                let ci = if self.reverse {
                    (t.keys_len(&child) as i64) << 1
                } else {
                    0
                };
                self.push(t, child, ci)?;
                continue;
            }
            if n < 0 || n as usize >= t.keys_len(&node) {
                self.stack.pop();
                continue;
            }
            let seq = t.key_seq(&node, n as usize)?;
            let block = t.block(seq).await?;
            if let Some(end) = &end {
                let c = block.key().cmp(end.as_slice());
                let stop = match c {
                    Ordering::Equal => !incl,
                    Ordering::Less => self.reverse,
                    Ordering::Greater => !self.reverse,
                };
                if stop {
                    self.limit = 0;
                    break;
                }
            }
            if self.limit > 0 {
                self.limit -= 1;
            }
            return Ok(Some(block));
        }
        Ok(None)
    }
}

/// Entries of a bee in key order (or reverse), within bounds: JS `createReadStream`. Made by
/// [`Hyperbee::create_read_stream`]; reads a snapshot taken at the first [`RangeIter::next`].
pub struct RangeIter<C: BeeCore, K: Codec, V: Codec> {
    bee: Hyperbee<C, K, V>,
    range: Option<RawRange>,
    tree: Option<(CommittedTree<C>, RangeState<CNode>)>,
}

impl<C: BeeCore, K: Codec, V: Codec> RangeIter<C, K, V> {
    pub(crate) fn new(bee: Hyperbee<C, K, V>, range: RawRange) -> Self {
        RangeIter {
            bee,
            range: Some(range),
            tree: None,
        }
    }

    /// The next entry, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Entry<K::Owned, V::Owned>>, BeeError> {
        if let Some(range) = self.range.take() {
            let ctx = self.bee.read_ctx().await?;
            let mut tree = CommittedTree { ctx };
            let mut state = RangeState::new(range);
            state.open(&mut tree).await?;
            self.tree = Some((tree, state));
        }
        let Some((tree, state)) = self.tree.as_mut() else {
            return Ok(None);
        };
        match state.next(tree).await? {
            Some(b) => Ok(Some(self.bee.entry_of(&b)?)),
            None => Ok(None),
        }
    }

    /// Every remaining entry.
    pub async fn collect(mut self) -> Result<Vec<Entry<K::Owned, V::Owned>>, BeeError> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await? {
            out.push(e);
        }
        Ok(out)
    }

    /// The version this iterator reads (after the first `next`).
    pub fn version(&self) -> Option<u64> {
        self.tree.as_ref().map(|(t, _)| t.ctx.version)
    }
}
