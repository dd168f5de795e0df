//! Flat-tree indexing of the merkle tree (`flat-tree` 1.13.0).
//!
//! Block `i` is the leaf node `2i`; the node at depth `d` and offset `o` has index
//! `(1 + 2o)·2^d − 1`. Parents sit between their children, so every subtree covers a contiguous
//! index range (its *span*). [`full_roots`] gives the roots of the perfect subtrees that make up a
//! tree of a given length, and [`Iterator`] is the cursor the proof code walks the tree with.
//!
//! Every function takes and returns `u64` node indexes. Inputs must stay far from `u64::MAX`
//! (hypercore lengths are at most 2^53, so indexes stay below 2^54).

/// Node indexes at or above this are rejected from untrusted input (hypercore lengths are below
/// 2^53, so real indexes stay below 2^54); it keeps all flat-tree arithmetic far from overflow.
pub const MAX_INDEX: u64 = 1 << 58;

/// Depth of a node: the number of trailing one bits of its index (leaves are depth 0).
#[inline]
pub fn depth(index: u64) -> u64 {
    u64::from((!index).trailing_zeros())
}

/// Offset of a node among the nodes of its depth.
#[inline]
pub fn offset(index: u64) -> u64 {
    index >> (depth(index) + 1)
}

/// Index of the node at `depth` and `offset`.
#[inline]
pub fn index(depth: u64, offset: u64) -> u64 {
    ((1 + 2 * offset) << depth) - 1
}

/// Parent of a node.
#[inline]
pub fn parent(idx: u64) -> u64 {
    let d = depth(idx);
    index(d + 1, offset(idx) >> 1)
}

/// Sibling of a node (the other child of its parent).
#[inline]
pub fn sibling(idx: u64) -> u64 {
    let d = depth(idx);
    index(d, offset(idx) ^ 1)
}

/// Both children of a node, or `None` for a leaf.
pub fn children(idx: u64) -> Option<(u64, u64)> {
    if idx & 1 == 0 {
        return None;
    }
    let d = depth(idx);
    let o = offset(idx) * 2;
    Some((index(d - 1, o), index(d - 1, o + 1)))
}

/// Left child of a node, or `None` for a leaf.
pub fn left_child(idx: u64) -> Option<u64> {
    children(idx).map(|c| c.0)
}

/// Right child of a node, or `None` for a leaf.
pub fn right_child(idx: u64) -> Option<u64> {
    children(idx).map(|c| c.1)
}

/// The leftmost leaf index a node covers.
#[inline]
pub fn left_span(idx: u64) -> u64 {
    if idx & 1 == 0 {
        return idx;
    }
    let d = depth(idx);
    offset(idx) << (d + 1)
}

/// The rightmost leaf index a node covers.
#[inline]
pub fn right_span(idx: u64) -> u64 {
    if idx & 1 == 0 {
        return idx;
    }
    let d = depth(idx);
    ((offset(idx) + 1) << (d + 1)) - 2
}

/// `(left_span, right_span)` of a node.
pub fn spans(idx: u64) -> (u64, u64) {
    (left_span(idx), right_span(idx))
}

/// Number of nodes in the subtree rooted at `idx` (itself included).
pub fn count(idx: u64) -> u64 {
    if idx & 1 == 0 {
        1
    } else {
        (2u64 << depth(idx)) - 1
    }
}

/// Number of leaves (blocks) under `idx`.
pub fn count_leaves(idx: u64) -> u64 {
    count(idx).div_ceil(2)
}

/// The roots of the perfect subtrees making up a tree whose next leaf is `leaf` (that is, the
/// roots of a tree of `leaf / 2` blocks), left to right. `None` when `leaf` is odd (JS throws).
pub fn full_roots(leaf: u64) -> Option<Vec<u64>> {
    if leaf & 1 == 1 {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = leaf / 2;
    let mut off = 0u64;
    while rest > 0 {
        // Largest power of two ≤ rest.
        let factor = 1u64 << (63 - rest.leading_zeros());
        out.push(off + factor - 1);
        off += 2 * factor;
        rest -= factor;
    }
    Some(out)
}

/// The roots of a tree of `length` blocks (`full_roots(2 * length)`).
pub fn roots_of_length(length: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut rest = length;
    let mut off = 0u64;
    while rest > 0 {
        let factor = 1u64 << (63 - rest.leading_zeros());
        out.push(off + factor - 1);
        off += 2 * factor;
        rest -= factor;
    }
    out
}

/// A cursor over the flat tree (JS `flat.iterator`). `factor` is twice the number of leaves under
/// the current node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iterator {
    /// Current node index.
    pub index: u64,
    /// Offset of the current node at its depth.
    pub offset: u64,
    /// `2^(depth+1)`.
    pub factor: u64,
}

impl Iterator {
    /// A cursor at `index`.
    pub fn new(index: u64) -> Self {
        let mut it = Iterator {
            index: 0,
            offset: 0,
            factor: 0,
        };
        it.seek(index);
        it
    }

    /// Move to `index`.
    pub fn seek(&mut self, index: u64) {
        self.index = index;
        if index & 1 == 1 {
            self.offset = offset(index);
            self.factor = 2u64 << depth(index);
        } else {
            self.offset = index / 2;
            self.factor = 2;
        }
    }

    /// Whether the current node is a left child.
    pub fn is_left(&self) -> bool {
        self.offset & 1 == 0
    }

    /// Whether the current node is a right child.
    pub fn is_right(&self) -> bool {
        self.offset & 1 == 1
    }

    /// Whether the current node is a root of a tree of `length` blocks.
    pub fn is_root(&self, length: u64) -> bool {
        let current_length = 1 + (self.index + self.factor / 2 - 1) / 2;
        if length < current_length {
            return false;
        }
        let factor = self.factor * 2;
        let idx = if self.offset & 1 == 1 {
            self.index - self.factor / 2
        } else {
            self.index + self.factor / 2
        };
        let parent_length = 1 + (idx + factor / 2 - 1) / 2;
        parent_length > length
    }

    /// Whether `index` lies in the subtree of the current node.
    pub fn contains(&self, index: u64) -> bool {
        if index > self.index {
            index < self.index + self.factor / 2
        } else if index < self.index {
            index + self.factor / 2 > self.index
        } else {
            true
        }
    }

    /// Move to the previous node at the same depth (stays at offset 0).
    pub fn prev(&mut self) -> u64 {
        if self.offset == 0 {
            return self.index;
        }
        self.offset -= 1;
        self.index -= self.factor;
        self.index
    }

    /// Move to the next node at the same depth.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.offset += 1;
        self.index += self.factor;
        self.index
    }

    /// Number of nodes under the current node.
    pub fn count(&self) -> u64 {
        if self.index & 1 == 0 {
            1
        } else {
            self.factor - 1
        }
    }

    /// Number of leaves under the current node.
    pub fn count_leaves(&self) -> u64 {
        self.count().div_ceil(2)
    }

    /// Move to the sibling.
    pub fn sibling(&mut self) -> u64 {
        if self.is_left() {
            self.next()
        } else {
            self.prev()
        }
    }

    /// Move to the parent.
    pub fn parent(&mut self) -> u64 {
        if self.offset & 1 == 1 {
            self.index -= self.factor / 2;
            self.offset = (self.offset - 1) / 2;
        } else {
            self.index += self.factor / 2;
            self.offset /= 2;
        }
        self.factor *= 2;
        self.index
    }

    /// Move to the leftmost leaf under the current node.
    pub fn left_span(&mut self) -> u64 {
        self.index = self.index + 1 - self.factor / 2;
        self.offset = self.index / 2;
        self.factor = 2;
        self.index
    }

    /// The leftmost leaf under the current node, without moving.
    pub fn peek_left_span(&self) -> u64 {
        self.index + 1 - self.factor / 2
    }

    /// Move to the rightmost leaf under the current node.
    pub fn right_span(&mut self) -> u64 {
        self.index = self.index + self.factor / 2 - 1;
        self.offset = self.index / 2;
        self.factor = 2;
        self.index
    }

    /// The rightmost leaf under the current node, without moving.
    pub fn peek_right_span(&self) -> u64 {
        self.index + self.factor / 2 - 1
    }

    /// Move to the left child (stays put on a leaf).
    pub fn left_child(&mut self) -> u64 {
        if self.factor == 2 {
            return self.index;
        }
        self.factor /= 2;
        self.index -= self.factor / 2;
        self.offset *= 2;
        self.index
    }

    /// Move to the right child (stays put on a leaf).
    pub fn right_child(&mut self) -> u64 {
        if self.factor == 2 {
            return self.index;
        }
        self.factor /= 2;
        self.index += self.factor / 2;
        self.offset = 2 * self.offset + 1;
        self.index
    }

    /// Move to the first leaf right of the current subtree.
    pub fn next_tree(&mut self) -> u64 {
        self.index = self.index + self.factor / 2 + 1;
        self.offset = self.index / 2;
        self.factor = 2;
        self.index
    }

    /// Move to the last leaf left of the current subtree (leaf 0 if none).
    pub fn prev_tree(&mut self) -> u64 {
        if self.offset == 0 {
            self.index = 0;
            self.factor = 2;
        } else {
            self.index = self.index - self.factor / 2 - 1;
            self.offset = self.index / 2;
            self.factor = 2;
        }
        self.index
    }

    /// From a leaf, climb to the largest perfect subtree starting there that ends before leaf
    /// `index`. Returns false (without moving) when the cursor is not on a leaf or not left of
    /// `index`.
    pub fn full_root(&mut self, index: u64) -> bool {
        if index <= self.index || self.index & 1 == 1 {
            return false;
        }
        while index > self.index + self.factor + self.factor / 2 {
            self.index += self.factor / 2;
            self.factor *= 2;
            self.offset /= 2;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics_match_js() {
        assert_eq!(index(0, 0), 0);
        assert_eq!(index(0, 1), 2);
        assert_eq!(index(1, 0), 1);
        assert_eq!(index(1, 1), 5);
        assert_eq!(index(2, 0), 3);
        assert_eq!(index(3, 0), 7);
        assert_eq!(depth(0), 0);
        assert_eq!(depth(1), 1);
        assert_eq!(depth(3), 2);
        assert_eq!(depth(5), 1);
        assert_eq!(depth(7), 3);
        assert_eq!(offset(0), 0);
        assert_eq!(offset(4), 2);
        assert_eq!(offset(5), 1);
        assert_eq!(offset(11), 1);
        assert_eq!(parent(0), 1);
        assert_eq!(parent(2), 1);
        assert_eq!(parent(1), 3);
        assert_eq!(parent(5), 3);
        assert_eq!(parent(4), 5);
        assert_eq!(parent(3), 7);
        assert_eq!(parent(11), 7);
        assert_eq!(sibling(0), 2);
        assert_eq!(sibling(2), 0);
        assert_eq!(sibling(1), 5);
        assert_eq!(sibling(5), 1);
        assert_eq!(sibling(3), 11);
        assert_eq!(children(0), None);
        assert_eq!(children(1), Some((0, 2)));
        assert_eq!(children(3), Some((1, 5)));
        assert_eq!(children(7), Some((3, 11)));
        assert_eq!(spans(0), (0, 0));
        assert_eq!(spans(1), (0, 2));
        assert_eq!(spans(3), (0, 6));
        assert_eq!(spans(23), (16, 30));
        assert_eq!(spans(27), (24, 30));
        assert_eq!(count(0), 1);
        assert_eq!(count(1), 3);
        assert_eq!(count(3), 7);
        assert_eq!(count_leaves(3), 4);
        assert_eq!(count_leaves(8), 1);
    }

    #[test]
    fn full_roots_match_js() {
        assert_eq!(full_roots(0), Some(vec![]));
        assert_eq!(full_roots(2), Some(vec![0]));
        assert_eq!(full_roots(6), Some(vec![1, 4]));
        assert_eq!(full_roots(8), Some(vec![3]));
        assert_eq!(full_roots(10), Some(vec![3, 8]));
        assert_eq!(full_roots(16), Some(vec![7]));
        assert_eq!(full_roots(18), Some(vec![7, 16]));
        assert_eq!(full_roots(20), Some(vec![7, 17]));
        assert_eq!(full_roots(22), Some(vec![7, 17, 20]));
        assert_eq!(full_roots(3), None);
        for len in 0..300u64 {
            assert_eq!(full_roots(2 * len).unwrap(), roots_of_length(len));
        }
    }

    /// Reference recursion: the roots partition the leaves 0..2·len left to right, each a perfect
    /// subtree, each as large as possible.
    #[test]
    fn full_roots_partition_leaves() {
        for len in 1..600u64 {
            let roots = roots_of_length(len);
            let mut next = 0;
            for (i, r) in roots.iter().enumerate() {
                let (l, rs) = spans(*r);
                assert_eq!(l, next);
                next = rs + 2;
                if i > 0 {
                    assert!(count_leaves(*r) < count_leaves(roots[i - 1]));
                }
            }
            assert_eq!(next, 2 * len);
        }
    }

    #[test]
    fn iterator_walks_like_helpers() {
        for idx in 0..2000u64 {
            let mut it = Iterator::new(idx);
            assert_eq!(it.offset, offset(idx));
            assert_eq!(it.factor, 2u64 << depth(idx));
            assert_eq!(it.sibling(), sibling(idx));
            it.seek(idx);
            assert_eq!(it.parent(), parent(idx));
            it.seek(idx);
            assert_eq!(it.peek_left_span(), left_span(idx));
            assert_eq!(it.peek_right_span(), right_span(idx));
            if let Some((l, r)) = children(idx) {
                it.seek(idx);
                assert_eq!(it.left_child(), l);
                it.seek(idx);
                assert_eq!(it.right_child(), r);
            }
            it.seek(idx);
            for other in 0..200u64 {
                let (a, b) = spans(idx);
                let inside = other >= a && other <= b;
                assert_eq!(it.contains(other), inside, "{idx} contains {other}");
            }
        }
    }

    #[test]
    fn iterator_sequences_match_js() {
        // flat-tree's own test suite: iterator walks.
        let mut it = Iterator::new(0);
        assert_eq!((it.index, it.is_left()), (0, true));
        assert_eq!(it.parent(), 1);
        assert_eq!(it.parent(), 3);
        assert_eq!(it.parent(), 7);
        assert_eq!(it.right_child(), 11);
        assert_eq!(it.left_child(), 9);
        assert_eq!(it.next(), 13);
        assert!(it.is_right());
        assert_eq!(it.prev(), 9);
        assert_eq!(it.left_span(), 8);
        assert_eq!(it.next_tree(), 10);
        let mut it = Iterator::new(23);
        assert_eq!(it.right_span(), 30);
        assert_eq!(it.prev_tree(), 28);
        // full roots walk of length 5 (head 10): roots 3 then 8.
        let mut it = Iterator::new(0);
        let mut roots = vec![];
        while it.full_root(10) {
            roots.push(it.index);
            it.next_tree();
        }
        assert_eq!(roots, vec![3, 8]);
        let mut it = Iterator::new(0);
        let mut roots = vec![];
        while it.full_root(6) {
            roots.push(it.index);
            it.next_tree();
        }
        assert_eq!(roots, vec![1, 4]);
        // is_root
        let it = Iterator::new(3);
        assert!(it.is_root(4));
        assert!(it.is_root(5));
        assert!(!it.is_root(8));
        assert!(!it.is_root(3));
    }

    #[test]
    fn full_root_walk_equals_full_roots() {
        for len in 1..500u64 {
            let mut it = Iterator::new(0);
            let mut roots = vec![];
            while it.full_root(2 * len) {
                roots.push(it.index);
                it.next_tree();
            }
            assert_eq!(roots, roots_of_length(len), "len {len}");
        }
    }
}
