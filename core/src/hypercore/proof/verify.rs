//! Proof verification (JS `verifyTree`, `verifyUpgrade`): pure, it folds an untrusted proof
//! into a [`TreeBatch`] for the caller to check.

use crate::hypercore::error::ProofError;
use crate::hypercore::flat_tree::Iterator;
use crate::hypercore::manifest::Prologue;
use crate::hypercore::messages::{Data, DataUpgrade, TreeNode};
use crate::hypercore::tree::{block_node, parent_node, TreeBatch};

use super::{in_range, steps, MAX_INDEX};

/// Proof nodes consumed in order, with one optional out-of-band node (JS `NodeQueue`).
struct NodeQueue<'a> {
    nodes: &'a [TreeNode],
    i: usize,
    extra: Option<TreeNode>,
}

impl<'a> NodeQueue<'a> {
    fn new(nodes: &'a [TreeNode], extra: Option<TreeNode>) -> Self {
        NodeQueue { nodes, i: 0, extra }
    }
    fn len(&self) -> usize {
        self.nodes.len() - self.i + usize::from(self.extra.is_some())
    }
    fn shift(&mut self, index: u64) -> Result<TreeNode, ProofError> {
        if let Some(e) = self.extra {
            if e.index == index {
                self.extra = None;
                return Ok(e);
            }
        }
        let n = self
            .nodes
            .get(self.i)
            .ok_or(ProofError::MissingNode { expected: index })?;
        if n.index != index {
            return Err(ProofError::UnexpectedNode {
                expected: index,
                got: n.index,
            });
        }
        self.i += 1;
        Ok(*n)
    }
}

/// [`parent_node`] of two untrusted nodes, refusing sizes that add up past `u64::MAX`.
fn checked_parent(index: u64, a: &TreeNode, b: &TreeNode) -> Result<TreeNode, ProofError> {
    a.size
        .checked_add(b.size)
        .ok_or(ProofError::SizeOverflow(index))?;
    Ok(parent_node(index, a, b))
}

/// [`TreeBatch::append_root`] of an untrusted node: the roots' sizes add up to the batch's byte
/// length, so no sum inside overflows when that one does not.
fn append_root(
    batch: &mut TreeBatch,
    node: TreeNode,
    ite: &mut Iterator,
) -> Result<(), ProofError> {
    batch
        .byte_length
        .checked_add(node.size)
        .ok_or(ProofError::SizeOverflow(node.index))?;
    batch.append_root(node, ite);
    Ok(())
}

/// The node a block/hash proof starts from: index, block value (for blocks), sibling nodes.
type Untrusted<'a> = (u64, Option<&'a [u8]>, &'a [TreeNode]);

/// Rebuild the subtree a block/hash/seek proof claims (JS `verifyTree`): returns the root it
/// leads to (not yet trusted) and pushes every node it touched onto `nodes`. `None` when the
/// proof has no block, hash or seek part.
pub fn verify_tree(
    proof: &Data,
    nodes: &mut Vec<TreeNode>,
) -> Result<Option<TreeNode>, ProofError> {
    verify_tree_with_leaf(proof, nodes, None, None)
}

/// A lookup of nodes the verifier already trusts (stored or verified earlier), by index.
pub type KnownNodes<'a> = &'a (dyn Fn(u64) -> Option<TreeNode> + Sync);

/// [`verify_tree`] with the leaf hash of the proof's block already computed (`leaf`: its
/// `crypto::leaf_hash`, e.g. from [`tree::leaf_hashes`](crate::hypercore::tree::leaf_hashes) over a
/// batch of received blocks, which hashes several blocks at once in SIMD lanes; `None` hashes the
/// block here), and, for a proof without upgrade, the nodes the verifier already trusts (`known`).
///
/// With `known`, the block proof's climb stops at the first node the verifier already trusts:
/// equal, the rest of the climb could only prove it again (the returned node is that trusted
/// one, which the caller's check then finds); different, the proof is wrong
/// ([`ProofError::InvalidChecksum`]), as the full climb would have found at the root. The
/// proof's sibling nodes above that point are not used (and not returned for storing). A
/// sequential download asks for deep proofs (the requester cannot know which nodes the answers
/// in flight before it will bring), so this saves most of a reader's parent hashes.
pub fn verify_tree_with_leaf(
    proof: &Data,
    nodes: &mut Vec<TreeNode>,
    leaf: Option<crate::crypto::Hash>,
    known: Option<KnownNodes<'_>>,
) -> Result<Option<TreeNode>, ProofError> {
    // An upgrade may consume the block proof's root: the climb must reach it.
    let known = known.filter(|_| proof.upgrade.is_none());
    let untrusted: Option<Untrusted<'_>> = if let Some(b) = &proof.block {
        let idx = b
            .index
            .checked_mul(2)
            .ok_or(ProofError::InvalidRequest("block index out of range"))?;
        Some((idx, Some(b.value.as_slice()), b.nodes.as_slice()))
    } else {
        proof
            .hash
            .as_ref()
            .map(|h| (h.index, None, h.nodes.as_slice()))
    };
    let seek_nodes = proof
        .seek
        .as_ref()
        .map(|s| s.nodes.as_slice())
        .unwrap_or(&[]);
    if untrusted.is_none() && seek_nodes.is_empty() {
        return Ok(None);
    }
    let mut root: Option<TreeNode> = None;
    if !seek_nodes.is_empty() {
        if seek_nodes[0].index >= MAX_INDEX {
            return Err(ProofError::NodeOutOfRange(seek_nodes[0].index));
        }
        let mut ite = Iterator::new(seek_nodes[0].index);
        let mut q = NodeQueue::new(seek_nodes, None);
        let mut r = q.shift(ite.index)?;
        nodes.push(r);
        while q.len() > 0 {
            in_range(&ite)?;
            let n = q.shift(ite.sibling())?;
            r = checked_parent(ite.parent(), &r, &n)?;
            nodes.push(n);
            nodes.push(r);
        }
        root = Some(r);
    }
    let Some((index, value, proof_nodes)) = untrusted else {
        return Ok(root);
    };
    if index >= MAX_INDEX {
        return Err(ProofError::NodeOutOfRange(index));
    }
    let mut ite = Iterator::new(index);
    let mut q = NodeQueue::new(proof_nodes, root);
    let mut r = match value {
        Some(v) => match leaf {
            Some(hash) => TreeNode {
                index,
                size: v.len() as u64,
                hash,
            },
            None => block_node(index, v),
        },
        None => q.shift(ite.index)?,
    };
    nodes.push(r);
    while q.len() > 0 {
        if let Some(k) = known.and_then(|f| f(r.index)) {
            if k != r {
                return Err(ProofError::InvalidChecksum(r.index));
            }
            return Ok(Some(r));
        }
        in_range(&ite)?;
        let n = q.shift(ite.sibling())?;
        r = checked_parent(ite.parent(), &r, &n)?;
        nodes.push(n);
        nodes.push(r);
    }
    Ok(Some(r))
}

/// Grow `batch` with an upgrade proof (JS `verifyUpgrade`): the requester's roots are extended
/// to `start + length` (consuming `block_root`, the root [`verify_tree`] returned, where the
/// generator folded the block proof into the upgrade), then by the additional nodes. Sets the
/// batch's fork and signature; the caller verifies that signature against the batch's tree hash.
/// Returns whether `block_root` was consumed (and so is verified by the upgrade).
pub fn verify_upgrade(
    fork: u64,
    upgrade: &DataUpgrade,
    block_root: Option<TreeNode>,
    batch: &mut TreeBatch,
    prologue: Option<&Prologue>,
) -> Result<bool, ProofError> {
    if let Some(p) = prologue {
        if upgrade.start < p.length && (upgrade.start != 0 || upgrade.length < p.length) {
            return Err(ProofError::PrologueNotSatisfied);
        }
    }
    let to = upgrade
        .start
        .checked_add(upgrade.length)
        .and_then(|l| l.checked_mul(2))
        .filter(|&t| t < MAX_INDEX)
        .ok_or(ProofError::InvalidUpgrade("length out of range"))?;
    let mut q = NodeQueue::new(&upgrade.nodes, block_root);
    let mut grow = !batch.roots.is_empty();
    let mut i = 0usize;
    let mut ite = Iterator::new(0);
    while ite.full_root(to) {
        if i < batch.roots.len() && batch.roots[i].index == ite.index {
            i += 1;
            ite.next_tree();
            continue;
        }
        if grow {
            grow = false;
            let root = ite.index;
            if i < batch.roots.len() {
                ite.seek(batch.roots[batch.roots.len() - 1].index);
                let mut cnt = 0;
                while ite.index != root {
                    steps(&mut cnt).map_err(|_| ProofError::InvalidUpgrade("cannot connect"))?;
                    let n = q.shift(ite.sibling())?;
                    append_root(batch, n, &mut ite)?;
                }
                ite.next_tree();
                continue;
            }
        }
        let n = q.shift(ite.index)?;
        append_root(batch, n, &mut ite)?;
        ite.next_tree();
    }
    if let Some(p) = prologue {
        if batch.length == p.length && batch.hash() != p.hash {
            return Err(ProofError::PrologueHashMismatch);
        }
    }
    let last = batch
        .roots
        .last()
        .ok_or(ProofError::InvalidUpgrade("empty upgrade"))?
        .index;
    let extra = &upgrade.additional_nodes;
    ite.seek(last);
    let mut i = 0;
    while i < extra.len() && {
        in_range(&ite)?;
        extra[i].index == ite.sibling()
    } {
        append_root(batch, extra[i], &mut ite)?;
        i += 1;
    }
    while i < extra.len() {
        in_range(&ite)?;
        let node = extra[i];
        i += 1;
        while node.index != ite.index {
            if ite.factor == 2 {
                return Err(ProofError::UnexpectedAdditionalNode(node.index));
            }
            ite.left_child();
        }
        append_root(batch, node, &mut ite)?;
        ite.sibling();
    }
    batch.signature = Some(upgrade.signature.clone());
    batch.fork = fork;
    Ok(q.extra.is_none())
}
