//! The diff stream (JS `createDiffStream`, `iterators/diff.js`): what differs between two
//! versions of a bee, found by walking both trees together and skipping every subtree they
//! share (same block and offset), so the cost follows the size of the change, not of the bee.

use std::cmp::Ordering;
use std::sync::Arc;

use super::encodings::Codec;
use super::error::BeeError;
use super::iterators::{RangeOptions, RawRange};
use super::read::{search, BlockView, CommittedTree, TreeRead, MAX_DEPTH};
use super::source::BeeCore;
use super::{Entry, Hyperbee};

/// One difference: `key`'s entry in the bee the stream was made from (`left`) and in the other
/// version (`right`); `None` on the side that does not have the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry<K, V> {
    /// The entry in this bee.
    pub left: Option<Entry<K, V>>,
    /// The entry in the other version.
    pub right: Option<Entry<K, V>>,
}

/// JS `SubTree`: a cursor over one node, remembering its parent (which may have left the
/// stack already).
struct SubTree<N> {
    node: N,
    parent: Option<usize>,
    is_key: bool,
    i: usize,
    n: usize,
    seq: u64,
    offset: u64,
}

/// JS `TreeIterator`: one side of a diff.
struct Side<T: TreeRead> {
    tree: T,
    trees: Vec<SubTree<T::Node>>,
    stack: Vec<usize>,
    lt: Option<Vec<u8>>,
    lte: bool,
    gt: Option<Vec<u8>>,
    gte: bool,
    seeking: bool,
}

fn cmp(a: Option<&[u8]>, b: Option<&[u8]>) -> Ordering {
    match (a, b) {
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => a.cmp(b),
    }
}

impl<T: TreeRead> Side<T> {
    fn new(tree: T, r: &RawRange) -> Self {
        let gt = r.gt.clone().or_else(|| r.gte.clone());
        Side {
            tree,
            trees: Vec::new(),
            stack: Vec::new(),
            lt: r.lt.clone().or_else(|| r.lte.clone()),
            lte: r.lte.is_some(),
            seeking: gt.is_some(),
            gt,
            gte: r.gte.is_some(),
        }
    }

    fn subtree(&self, node: T::Node, parent: Option<usize>) -> Result<SubTree<T::Node>, BeeError> {
        let t = &self.tree;
        let is_key = t.children_len(&node) == 0;
        let (seq, offset) = if is_key {
            (t.key_seq(&node, 0)?, 0)
        } else {
            t.child_ptr(&node, 0)?
        };
        Ok(SubTree {
            node,
            parent,
            is_key,
            i: usize::from(is_key),
            n: 0,
            seq,
            offset,
        })
    }

    /// JS `SubTree.update`.
    fn update(&mut self, s: usize) -> Result<bool, BeeError> {
        let st = &self.trees[s];
        let t = &self.tree;
        let is_key = (st.i & 1) == 1;
        let n = st.i >> 1;
        let len = if is_key {
            t.keys_len(&st.node)
        } else {
            t.children_len(&st.node)
        };
        let st = &mut self.trees[s];
        st.is_key = is_key;
        st.n = n;
        if n >= len {
            return Ok(false);
        }
        let (seq, offset) = if is_key {
            (t.key_seq(&st.node, n)?, 0)
        } else {
            t.child_ptr(&st.node, n)?
        };
        st.seq = seq;
        st.offset = offset;
        Ok(true)
    }

    /// JS `SubTree.next`.
    fn advance(&mut self, s: usize) -> Result<bool, BeeError> {
        let leaf = self.tree.children_len(&self.trees[s].node) == 0;
        let st = &mut self.trees[s];
        st.i += 1;
        if (st.i & 1) == 0 && leaf {
            st.i += 1;
        }
        self.update(s)
    }

    /// JS `SubTree.bisect`: position `s` at `key`; whether the seek is done.
    async fn bisect(&mut self, s: usize, key: &[u8], incl: bool) -> Result<bool, BeeError> {
        let node = self.trees[s].node.clone();
        let inner = self.tree.children_len(&node) > 0;
        let found = search(&mut self.tree, &node, key).await?;
        let st = &mut self.trees[s];
        match found {
            Ok(mid) => {
                st.i = if incl {
                    mid * 2 + 1
                } else {
                    mid * 2 + if inner { 2 } else { 3 }
                };
                Ok(true)
            }
            Err(i) => {
                st.i = 2 * i + usize::from(!inner);
                Ok(!inner)
            }
        }
    }

    /// JS `SubTree.key`: the key at or after the cursor, looking up the parents.
    async fn key_of(&mut self, mut s: usize) -> Result<Option<Arc<[u8]>>, BeeError> {
        for _ in 0..=MAX_DEPTH {
            let st = &self.trees[s];
            if st.n < self.tree.keys_len(&st.node) {
                let (node, n) = (st.node.clone(), st.n);
                return Ok(Some(self.tree.key(&node, n).await?));
            }
            match st.parent {
                Some(p) => s = p,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    async fn open(&mut self) -> Result<(), BeeError> {
        let Some(node) = self.tree.root().await? else {
            return Ok(());
        };
        if self.tree.keys_len(&node) == 0 {
            return Ok(());
        }
        let st = self.subtree(node, None)?;
        self.trees.push(st);
        let s = self.trees.len() - 1;
        if self.seeking && !self.seek(s).await? {
            return Ok(());
        }
        self.stack.push(s);
        Ok(())
    }

    /// JS `_seek`.
    async fn seek(&mut self, s: usize) -> Result<bool, BeeError> {
        let gt = self.gt.clone().unwrap_or_default();
        let done = self.bisect(s, &gt, self.gte).await?;
        let oob = !self.update(s)?;
        if done || oob {
            self.seeking = false;
            if oob {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn peek(&self) -> Option<usize> {
        self.stack.last().copied()
    }

    fn skip(&mut self) -> Result<(), BeeError> {
        if let Some(&s) = self.stack.last() {
            if !self.advance(s)? {
                self.stack.pop();
            }
        }
        Ok(())
    }

    /// JS `TreeIterator.next`: a key block, or `None` after descending one level.
    async fn step(&mut self) -> Result<Option<BlockView>, BeeError> {
        let Some(&top) = self.stack.last() else {
            return Ok(None);
        };
        let (is_key, n, seq) = {
            let st = &self.trees[top];
            (st.is_key, st.n, st.seq)
        };
        if !self.advance(top)? {
            self.stack.pop();
        }
        if is_key {
            self.seeking = false;
            return Ok(Some(self.tree.block(seq).await?));
        }
        let node = self.trees[top].node.clone();
        let child = self.tree.child(&node, n).await?;
        let st = self.subtree(child, Some(top))?;
        self.trees.push(st);
        let s = self.trees.len() - 1;
        if self.seeking && !self.seek(s).await? {
            return Ok(None);
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(BeeError::corrupt(
                seq,
                "the tree is deeper than any valid bee (a cycle?)",
            ));
        }
        self.stack.push(s);
        Ok(None)
    }

    /// JS `nextKey`.
    async fn next_key(&mut self) -> Result<Option<BlockView>, BeeError> {
        let mut n = None;
        while !self.stack.is_empty() && n.is_none() {
            n = self.step().await?;
        }
        let Some(n) = n else {
            return Ok(None);
        };
        let Some(lt) = &self.lt else {
            return Ok(Some(n));
        };
        let c = cmp(Some(n.key()), Some(lt));
        if if self.lte { c.is_le() } else { c.is_lt() } {
            return Ok(Some(n));
        }
        self.stack.clear();
        Ok(None)
    }
}

type Sides<C> = (Side<CommittedTree<C>>, Side<CommittedTree<C>>);

/// The differences between two versions of a bee; made by [`Hyperbee::create_diff_stream`].
pub struct DiffIter<C: BeeCore, K: Codec, V: Codec> {
    left_bee: Hyperbee<C, K, V>,
    right_bee: Hyperbee<C, K, V>,
    range: Option<RawRange>,
    sides: Option<Sides<C>>,
    limit: i64,
}

impl<C: BeeCore, K: Codec, V: Codec> Hyperbee<C, K, V> {
    /// What differs between this bee (left) and `other` (right; e.g. a
    /// [`Hyperbee::checkout`]), within `range` (JS `createDiffStream(other, range)`).
    pub fn create_diff_stream(
        &self,
        other: &Hyperbee<C, K, V>,
        range: RangeOptions<'_, K>,
    ) -> DiffIter<C, K, V> {
        DiffIter::new(self.clone(), other.clone(), self.raw_range(&range))
    }

    /// [`Hyperbee::create_diff_stream`] against version `version` of this bee (JS
    /// `createDiffStream(version)`).
    pub async fn create_diff_stream_to(
        &self,
        version: u64,
        range: RangeOptions<'_, K>,
    ) -> DiffIter<C, K, V> {
        let other = self.checkout(version.max(1)).await;
        self.create_diff_stream(&other, range)
    }
}

impl<C: BeeCore, K: Codec, V: Codec> DiffIter<C, K, V> {
    pub(crate) fn new(left: Hyperbee<C, K, V>, right: Hyperbee<C, K, V>, raw: RawRange) -> Self {
        DiffIter {
            left_bee: left,
            right_bee: right,
            limit: raw.limit,
            range: Some(raw),
            sides: None,
        }
    }

    /// The next difference, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<DiffEntry<K::Owned, V::Owned>>, BeeError> {
        if let Some(range) = self.range.take() {
            let mut a = Side::new(
                CommittedTree {
                    ctx: self.left_bee.read_ctx().await?,
                },
                &range,
            );
            let mut b = Side::new(
                CommittedTree {
                    ctx: self.right_bee.read_ctx().await?,
                },
                &range,
            );
            a.open().await?;
            b.open().await?;
            self.sides = Some((a, b));
        }
        if self.limit == 0 {
            return Ok(None);
        }
        let Some((a, b)) = self.sides.as_mut() else {
            return Ok(None);
        };
        let (l, r) = diff_next(a, b).await?;
        if l.is_none() && r.is_none() {
            return Ok(None);
        }
        self.limit -= 1;
        let left = l.map(|b| self.left_bee.entry_of(&b)).transpose()?;
        let right = r.map(|b| self.right_bee.entry_of(&b)).transpose()?;
        Ok(Some(DiffEntry { left, right }))
    }

    /// Every remaining difference.
    pub async fn collect(mut self) -> Result<Vec<DiffEntry<K::Owned, V::Owned>>, BeeError> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await? {
            out.push(e);
        }
        Ok(out)
    }
}

type Pair = (Option<BlockView>, Option<BlockView>);

/// JS `DiffIterator._next`.
async fn diff_next<T: TreeRead>(a: &mut Side<T>, b: &mut Side<T>) -> Result<Pair, BeeError> {
    loop {
        let (l, r) = (a.peek(), b.peek());
        let (l, r) = match (l, r) {
            (None, None) => return Ok((None, None)),
            (None, Some(_)) => return Ok((None, b.next_key().await?)),
            (Some(_), None) => return Ok((a.next_key().await?, None)),
            (Some(l), Some(r)) => (l, r),
        };
        let (lt, rt) = (&a.trees[l], &b.trees[r]);
        if lt.seq == rt.seq && lt.is_key == rt.is_key && lt.offset == rt.offset {
            a.skip()?;
            b.skip()?;
            continue;
        }
        let (l_key, r_key) = (lt.is_key, rt.is_key);
        let ka = a.key_of(l).await?;
        let kb = b.key_of(r).await?;
        let c = cmp(ka.as_deref(), kb.as_deref());
        if l_key && !r_key {
            b.step().await?;
            continue;
        }
        if !l_key && r_key {
            a.step().await?;
            continue;
        }
        if l_key && r_key {
            return Ok(match c {
                Ordering::Equal => {
                    let x = a.next_key().await?;
                    (x, b.next_key().await?)
                }
                Ordering::Less => (a.next_key().await?, None),
                Ordering::Greater => (None, b.next_key().await?),
            });
        }
        match c {
            Ordering::Equal => {
                a.step().await?;
                b.step().await?;
            }
            Ordering::Less => {
                b.step().await?;
            }
            Ordering::Greater => {
                a.step().await?;
            }
        }
    }
}
