//! Merkle proofs: generation ([`generate`], JS `generateProof` merkle-tree.js:1314-1359) and
//! verification ([`verify_tree`] and [`verify_upgrade`], JS 881-999).
//!
//! A proof is a1's wire [`Data`] message minus `request`/`manifest`: a block or hash proof (the
//! untrusted node and its siblings bottom-up), a seek proof, and an upgrade (the nodes taking the
//! requester's roots at `start` to the tree at `start + length`, the `additional_nodes` reaching
//! the sender's full length, and the sender's signature of that full length).
//!
//! Generation first works out which node indexes are needed (as JS does synchronously), then
//! reads them all in one `get_many` round trip. Verification is pure: it folds the proof into a
//! [`TreeBatch`]; the caller checks the signature of the upgraded batch, or compares the
//! returned unverified root with its stored node.

use crate::storage::Storage;

use super::error::{HypercoreError, ProofError};
use super::flat_tree::{self, Iterator};
use super::manifest::Prologue;
use super::messages::{
    Data, DataBlock, DataHash, DataSeek, DataUpgrade, Request, RequestBlock, RequestSeek,
    RequestUpgrade, TreeNode,
};
use super::tree::{self, block_node, parent_node, MerkleTree, NodeCache, TreeBatch};

/// What is asked of a proof (the proof part of a wire [`Request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProofRequest {
    /// A block with its value: block index and how many levels the requester lacks.
    pub block: Option<RequestBlock>,
    /// A tree node (no value): node index and levels lacking.
    pub hash: Option<RequestBlock>,
    /// The node holding a byte offset.
    pub seek: Option<RequestSeek>,
    /// Nodes and signature to grow from `start` blocks to `start + length`.
    pub upgrade: Option<RequestUpgrade>,
}

impl From<&Request> for ProofRequest {
    fn from(r: &Request) -> Self {
        ProofRequest {
            block: r.block,
            hash: r.hash,
            seek: r.seek,
            upgrade: r.upgrade,
        }
    }
}

/// Node indexes of a proof under construction (JS `TreeProof.pending`).
#[derive(Default)]
struct Pending {
    node: Option<Vec<u64>>,
    seek: Option<Vec<u64>>,
    upgrade: Option<Vec<u64>>,
    additional: Option<Vec<u64>>,
}

#[derive(Clone, Copy)]
struct Indexed {
    value: bool,
    index: u64,
    nodes: u64,
    last_index: u64,
}

fn normalize(block: Option<RequestBlock>, hash: Option<RequestBlock>) -> Option<Indexed> {
    if let Some(b) = block {
        let index = b.index.checked_mul(2).filter(|&i| i < MAX_INDEX)?;
        return Some(Indexed {
            value: true,
            index,
            nodes: b.nodes,
            last_index: b.index,
        });
    }
    let h = hash.filter(|h| h.index < MAX_INDEX)?;
    Some(Indexed {
        value: false,
        index: h.index,
        nodes: h.nodes,
        last_index: flat_tree::right_span(h.index) / 2,
    })
}

/// Node indexes at or above this are rejected from untrusted input (hypercore lengths are below
/// 2^53, so real indexes stay below 2^54); it keeps all flat-tree arithmetic far from overflow.
pub const MAX_INDEX: u64 = 1 << 58;

/// Fail once a walk over untrusted nodes leaves the range of valid trees.
fn in_range(ite: &Iterator) -> Result<(), ProofError> {
    if ite.index >= MAX_INDEX || ite.factor >= MAX_INDEX {
        return Err(ProofError::NodeOutOfRange(ite.index));
    }
    Ok(())
}

const MAX_STEPS: u32 = 1024;

fn steps(cnt: &mut u32) -> Result<(), ProofError> {
    *cnt += 1;
    if *cnt >= MAX_STEPS {
        return Err(ProofError::InvalidRequest("tree walk too deep"));
    }
    Ok(())
}

fn seek_proof(seek_root: u64, root: u64, p: &mut Pending) -> Result<(), ProofError> {
    let mut ite = Iterator::new(seek_root);
    let mut s = vec![ite.index];
    let mut cnt = 0;
    while ite.index != root {
        steps(&mut cnt)?;
        ite.sibling();
        s.push(ite.index);
        ite.parent();
    }
    p.seek = Some(s);
    Ok(())
}

fn block_and_seek_proof(
    node: Option<Indexed>,
    seek: bool,
    seek_root: u64,
    root: u64,
    p: &mut Pending,
) -> Result<(), ProofError> {
    let Some(node) = node else {
        return seek_proof(seek_root, root, p);
    };
    let mut ite = Iterator::new(node.index);
    let mut out = Vec::new();
    if !node.value {
        out.push(ite.index);
    }
    let mut cnt = 0;
    while ite.index != root {
        steps(&mut cnt)?;
        ite.sibling();
        if seek && ite.contains(seek_root) && ite.index != seek_root {
            seek_proof(seek_root, ite.index, p)?;
        } else {
            out.push(ite.index);
        }
        ite.parent();
    }
    p.node = Some(out);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn upgrade_proof(
    node: Option<Indexed>,
    seek: bool,
    from: u64,
    to: u64,
    sub_tree: u64,
    p: &mut Pending,
) -> Result<(), ProofError> {
    if from == 0 {
        p.upgrade = Some(Vec::new());
    }
    let mut ite = Iterator::new(0);
    while ite.full_root(to) {
        // Does the requester already have this root?
        if ite.index + ite.factor / 2 < from {
            ite.next_tree();
            continue;
        }
        // Connect the requester's last root to this one.
        if p.upgrade.is_none() && from >= 2 && ite.contains(from - 2) {
            let mut up = Vec::new();
            let root = ite.index;
            let target = from - 2;
            let mut cnt = 0;
            ite.seek(target);
            while ite.index != root {
                steps(&mut cnt)?;
                ite.sibling();
                if ite.index > target {
                    if p.node.is_none() && p.seek.is_none() && ite.contains(sub_tree) {
                        block_and_seek_proof(node, seek, sub_tree, ite.index, p)?;
                    } else {
                        up.push(ite.index);
                    }
                }
                ite.parent();
            }
            p.upgrade = Some(up);
            ite.next_tree();
            continue;
        }
        if p.upgrade.is_none() {
            p.upgrade = Some(Vec::new());
        }
        // A requested subtree inside this root replaces the root itself.
        if p.node.is_none() && p.seek.is_none() && ite.contains(sub_tree) {
            block_and_seek_proof(node, seek, sub_tree, ite.index, p)?;
            ite.next_tree();
            continue;
        }
        if let Some(u) = p.upgrade.as_mut() {
            u.push(ite.index);
        }
        ite.next_tree();
    }
    Ok(())
}

fn additional_upgrade_proof(from: u64, to: u64, p: &mut Pending) -> Result<(), ProofError> {
    if from == 0 {
        p.additional = Some(Vec::new());
    }
    let mut ite = Iterator::new(0);
    while ite.full_root(to) {
        if ite.index + ite.factor / 2 < from {
            ite.next_tree();
            continue;
        }
        if p.additional.is_none() && from >= 2 && ite.contains(from - 2) {
            let mut up = Vec::new();
            let root = ite.index;
            let target = from - 2;
            let mut cnt = 0;
            ite.seek(target);
            while ite.index != root {
                steps(&mut cnt)?;
                ite.sibling();
                if ite.index > target {
                    up.push(ite.index);
                }
                ite.parent();
            }
            p.additional = Some(up);
            ite.next_tree();
            continue;
        }
        p.additional.get_or_insert_with(Vec::new).push(ite.index);
        ite.next_tree();
    }
    Ok(())
}

fn nodes_to_root(index: u64, nodes: u64, head: u64) -> Result<u64, ProofError> {
    let mut ite = Iterator::new(index);
    for _ in 0..nodes {
        ite.parent();
        if ite.contains(head) {
            return Err(ProofError::InvalidRequest("nodes is out of bounds"));
        }
    }
    Ok(ite.index)
}

async fn seek_trusted_tree<S: Storage>(
    storage: &S,
    root: u64,
    bytes: u64,
    padding: u64,
) -> Result<u64, HypercoreError> {
    if bytes == 0 {
        return Ok(root);
    }
    let mut bytes = bytes;
    let mut ite = Iterator::new(root);
    let mut cnt = 0;
    while ite.index & 1 != 0 {
        steps(&mut cnt)?;
        match tree::get_node(storage, ite.left_child()).await? {
            Some(l) => {
                let size = unpadded(l.size, padding, ite.count_leaves())?;
                if size == bytes {
                    return Ok(ite.index);
                }
                if size > bytes {
                    continue;
                }
                bytes -= size;
                ite.sibling();
            }
            None => {
                ite.parent();
                return Ok(ite.index);
            }
        }
    }
    Ok(ite.index)
}

fn unpadded(size: u64, padding: u64, leaves: u64) -> Result<u64, ProofError> {
    size.checked_sub(padding.saturating_mul(leaves))
        .ok_or(ProofError::InvalidRequest("padding larger than the data"))
}

async fn seek_from_head<S: Storage>(
    storage: &S,
    head: u64,
    bytes: u64,
    padding: u64,
) -> Result<u64, HypercoreError> {
    let roots = flat_tree::full_roots(head).ok_or(ProofError::InvalidRequest("odd head"))?;
    let nodes = tree::require_nodes(storage, &roots).await?;
    let mut bytes = bytes;
    for node in nodes {
        let size = unpadded(node.size, padding, flat_tree::count_leaves(node.index))?;
        if bytes == size {
            return Ok(node.index);
        }
        if bytes > size {
            bytes -= size;
            continue;
        }
        return seek_trusted_tree(storage, node.index, bytes, padding).await;
    }
    Ok(head)
}

async fn seek_untrusted_tree<S: Storage>(
    storage: &S,
    tree: &MerkleTree,
    root: u64,
    bytes: u64,
    padding: u64,
) -> Result<u64, HypercoreError> {
    let offset = tree
        .byte_offset(storage, root)
        .await?
        .checked_sub(padding.saturating_mul(flat_tree::left_span(root) / 2))
        .ok_or(ProofError::InvalidRequest("invalid seek"))?;
    if offset > bytes {
        return Err(ProofError::InvalidRequest("invalid seek").into());
    }
    if offset == bytes {
        return Ok(root);
    }
    let bytes = bytes - offset;
    let node = tree::require_node(storage, root).await?;
    if unpadded(node.size, padding, flat_tree::count_leaves(root))? <= bytes {
        return Err(ProofError::InvalidRequest("invalid seek").into());
    }
    seek_trusted_tree(storage, root, bytes, padding).await
}

/// Build the proof answering `req` from the tree `tree` stored in `storage` (JS
/// `generateProof`). The result's `fork` is the tree's fork, its upgrade signature the tree's
/// signature; `request` is 0, `manifest` is `None`, and a block proof's `value` is left empty for
/// the caller (which holds the blocks) to fill in.
pub async fn generate<S: Storage>(
    storage: &S,
    tree: &MerkleTree,
    prologue: Option<&Prologue>,
    req: &ProofRequest,
) -> Result<Data, HypercoreError> {
    generate_cached(storage, None, tree, prologue, req).await
}

/// [`generate`], reading the proof's nodes through `cache` when given.
pub(crate) async fn generate_cached<S: Storage>(
    storage: &S,
    cache: Option<&NodeCache>,
    tree: &MerkleTree,
    prologue: Option<&Prologue>,
    req: &ProofRequest,
) -> Result<Data, HypercoreError> {
    let mut upgrade = req.upgrade;
    if let (Some(pro), Some(u)) = (prologue, upgrade.as_mut()) {
        if u.start < pro.length {
            u.start = 0;
            u.length = pro.length;
        }
    }
    let mut out = Data {
        fork: tree.fork,
        ..Data::default()
    };
    let head = 2 * tree.length;
    if head == 0 {
        return Ok(out);
    }
    let (from, to) = match upgrade {
        Some(u) => {
            let from = u
                .start
                .checked_mul(2)
                .ok_or(ProofError::InvalidRequest("upgrade"))?;
            let len2 = u
                .length
                .checked_mul(2)
                .ok_or(ProofError::InvalidRequest("upgrade"))?;
            (
                from,
                from.checked_add(len2)
                    .ok_or(ProofError::InvalidRequest("upgrade"))?,
            )
        }
        None => (0, head),
    };
    let has_index_request = req.block.is_some() || req.hash.is_some();
    let node = normalize(req.block, req.hash);
    if has_index_request && node.is_none() {
        return Err(ProofError::InvalidRequest("block index out of range").into());
    }
    if from >= to || to > head {
        return Err(ProofError::InvalidRequest("invalid upgrade").into());
    }
    if let Some(n) = node {
        if flat_tree::right_span(n.index) >= head {
            return Err(ProofError::InvalidRequest("block or hash index out of bounds").into());
        }
        if req.seek.is_some() && upgrade.is_some() && n.index >= from {
            return Err(ProofError::InvalidRequest(
                "cannot both do a seek and block/hash request when upgrading",
            )
            .into());
        }
    }

    let mut sub_tree = head;
    let mut p = Pending::default();
    let seek = req.seek;

    match node {
        Some(n) if upgrade.is_none_or(|u| n.last_index < u.start) => {
            sub_tree = nodes_to_root(n.index, n.nodes, to)?;
            let seek_root = match seek {
                Some(s) => seek_untrusted_tree(storage, tree, sub_tree, s.bytes, s.padding).await?,
                None => head,
            };
            block_and_seek_proof(Some(n), seek.is_some(), seek_root, sub_tree, &mut p)?;
        }
        _ => {
            if (node.is_some() || seek.is_some()) && upgrade.is_some() {
                sub_tree = match (seek, node) {
                    (Some(s), _) => seek_from_head(storage, to, s.bytes, s.padding).await?,
                    (None, Some(n)) => n.index,
                    (None, None) => head,
                };
            }
        }
    }

    if upgrade.is_some() {
        upgrade_proof(node, seek.is_some(), from, to, sub_tree, &mut p)?;
        if head > to {
            additional_upgrade_proof(to, head, &mut p)?;
        }
    }

    // Fetch every node in one round trip.
    let lists = [&p.node, &p.seek, &p.upgrade, &p.additional];
    let all: Vec<u64> = lists
        .iter()
        .filter_map(|l| l.as_ref())
        .flatten()
        .copied()
        .collect();
    let fetched = match cache {
        Some(c) => tree::require_nodes_cached(storage, c, &all).await?,
        None => tree::require_nodes(storage, &all).await?,
    };
    let mut fetched = fetched.into_iter();
    let mut take = |l: &Option<Vec<u64>>| -> Option<Vec<TreeNode>> {
        l.as_ref().map(|v| fetched.by_ref().take(v.len()).collect())
    };
    let p_node = take(&p.node);
    let p_seek = take(&p.seek);
    let p_upgrade = take(&p.upgrade);
    let p_additional = take(&p.additional);

    if let Some(b) = req.block {
        let nodes = p_node.ok_or(ProofError::InvalidRequest("invalid block request"))?;
        out.block = Some(DataBlock {
            index: b.index,
            value: Vec::new(),
            nodes,
        });
    } else if let Some(h) = req.hash {
        let nodes = p_node.ok_or(ProofError::InvalidRequest("invalid hash request"))?;
        out.hash = Some(DataHash {
            index: h.index,
            nodes,
        });
    }
    if let (Some(s), Some(nodes)) = (seek, p_seek) {
        out.seek = Some(DataSeek {
            bytes: s.bytes,
            nodes,
        });
    }
    if let Some(u) = upgrade {
        out.upgrade = Some(DataUpgrade {
            start: u.start,
            length: u.length,
            nodes: p_upgrade.unwrap_or_default(),
            additional_nodes: p_additional.unwrap_or_default(),
            signature: tree.signature.clone(),
        });
    }
    Ok(out)
}

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
/// `crypto::leaf_hash`, e.g. from [`tree::leaf_hashes`] over a batch of received blocks, which
/// hashes several blocks at once in SIMD lanes; `None` hashes the block here), and, for a proof
/// without upgrade, the nodes the verifier already trusts (`known`).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Batch, MemoryStorage};
    use futures_executor::block_on;

    async fn build(n: u8) -> (MemoryStorage, MerkleTree) {
        let s = MemoryStorage::new();
        let mut t = MerkleTree::default();
        let mut b = t.batch();
        for i in 0..n {
            b.append(&[b'a' + i]);
        }
        let mut w = Batch::new();
        b.write_ops(&s, &mut w).await.unwrap();
        s.write(w).await.unwrap();
        t.commit(&b);
        t.signature = vec![7; 3];
        (s, t)
    }

    fn idx(nodes: &[TreeNode]) -> Vec<u64> {
        nodes.iter().map(|n| n.index).collect()
    }

    #[test]
    fn generation_shapes_match_js_vectors() {
        block_on(async {
            let (s, t) = build(5).await;
            let up = |start, length| Some(RequestUpgrade { start, length });
            let blk = |index, nodes| Some(RequestBlock { index, nodes });
            let g = |r: ProofRequest| {
                let (s, t) = (&s, &t);
                async move { generate(s, t, None, &r).await.unwrap() }
            };
            let p = g(ProofRequest {
                block: blk(0, 0),
                upgrade: up(0, 5),
                ..Default::default()
            })
            .await;
            assert_eq!(idx(&p.block.as_ref().unwrap().nodes), vec![2, 5]);
            assert_eq!(idx(&p.upgrade.as_ref().unwrap().nodes), vec![8]);
            let p = g(ProofRequest {
                block: blk(4, 0),
                upgrade: up(0, 5),
                ..Default::default()
            })
            .await;
            assert_eq!(idx(&p.block.as_ref().unwrap().nodes), Vec::<u64>::new());
            assert_eq!(idx(&p.upgrade.as_ref().unwrap().nodes), vec![3]);
            let p = g(ProofRequest {
                upgrade: up(3, 2),
                ..Default::default()
            })
            .await;
            assert_eq!(idx(&p.upgrade.as_ref().unwrap().nodes), vec![6, 8]);
            let p = g(ProofRequest {
                upgrade: up(0, 3),
                ..Default::default()
            })
            .await;
            let u = p.upgrade.unwrap();
            assert_eq!(idx(&u.nodes), vec![1, 4]);
            assert_eq!(idx(&u.additional_nodes), vec![6, 8]);
            assert_eq!(u.signature, vec![7; 3]);
            let p = g(ProofRequest {
                block: blk(3, 2),
                ..Default::default()
            })
            .await;
            assert_eq!(idx(&p.block.unwrap().nodes), vec![4, 1]);
            let p = g(ProofRequest {
                hash: blk(2, 1),
                ..Default::default()
            })
            .await;
            assert_eq!(idx(&p.hash.unwrap().nodes), vec![2, 0]);
            let p = g(ProofRequest {
                seek: Some(RequestSeek {
                    bytes: 3,
                    padding: 0,
                }),
                upgrade: up(0, 5),
                ..Default::default()
            })
            .await;
            assert_eq!(idx(&p.seek.unwrap().nodes), vec![4, 6, 1]);
            assert_eq!(idx(&p.upgrade.unwrap().nodes), vec![8]);
            let p = g(ProofRequest {
                seek: Some(RequestSeek {
                    bytes: 3,
                    padding: 0,
                }),
                ..Default::default()
            })
            .await;
            assert_eq!(
                p,
                Data {
                    fork: 0,
                    ..Default::default()
                }
            );
        });
    }

    #[test]
    fn generation_rejects_bad_requests() {
        block_on(async {
            let (s, t) = build(5).await;
            for r in [
                ProofRequest {
                    upgrade: Some(RequestUpgrade {
                        start: 0,
                        length: 6,
                    }),
                    ..Default::default()
                },
                ProofRequest {
                    upgrade: Some(RequestUpgrade {
                        start: 5,
                        length: 0,
                    }),
                    ..Default::default()
                },
                ProofRequest {
                    block: Some(RequestBlock { index: 5, nodes: 0 }),
                    ..Default::default()
                },
                ProofRequest {
                    block: Some(RequestBlock { index: 0, nodes: 9 }),
                    ..Default::default()
                },
                ProofRequest {
                    block: Some(RequestBlock {
                        index: u64::MAX,
                        nodes: 0,
                    }),
                    ..Default::default()
                },
                ProofRequest {
                    block: Some(RequestBlock { index: 4, nodes: 0 }),
                    seek: Some(RequestSeek {
                        bytes: 1,
                        padding: 0,
                    }),
                    upgrade: Some(RequestUpgrade {
                        start: 0,
                        length: 5,
                    }),
                    ..Default::default()
                },
                ProofRequest {
                    hash: Some(RequestBlock {
                        index: u64::MAX,
                        nodes: 0,
                    }),
                    ..Default::default()
                },
                ProofRequest {
                    hash: Some(RequestBlock {
                        index: 11,
                        nodes: u64::MAX,
                    }),
                    ..Default::default()
                },
                ProofRequest {
                    block: Some(RequestBlock {
                        index: 1,
                        nodes: u64::MAX,
                    }),
                    ..Default::default()
                },
                ProofRequest {
                    seek: Some(RequestSeek {
                        bytes: u64::MAX,
                        padding: u64::MAX,
                    }),
                    upgrade: Some(RequestUpgrade {
                        start: 0,
                        length: 5,
                    }),
                    ..Default::default()
                },
                ProofRequest {
                    block: Some(RequestBlock { index: 0, nodes: 1 }),
                    seek: Some(RequestSeek {
                        bytes: u64::MAX,
                        padding: 1,
                    }),
                    ..Default::default()
                },
                ProofRequest {
                    upgrade: Some(RequestUpgrade {
                        start: u64::MAX,
                        length: u64::MAX,
                    }),
                    ..Default::default()
                },
                ProofRequest {
                    upgrade: Some(RequestUpgrade {
                        start: 2,
                        length: u64::MAX - 1,
                    }),
                    ..Default::default()
                },
            ] {
                assert!(generate(&s, &t, None, &r).await.is_err(), "{r:?}");
            }
        });
    }

    #[test]
    fn upgrade_roundtrip_for_every_start_and_length() {
        block_on(async {
            let (s, t) = build(23).await;
            for start in 0..23u64 {
                for end in start + 1..=23 {
                    let r = ProofRequest {
                        upgrade: Some(RequestUpgrade {
                            start,
                            length: end - start,
                        }),
                        ..Default::default()
                    };
                    let p = generate(&s, &t, None, &r).await.unwrap();
                    let reader = MerkleTree::load(&s, start, 0, vec![]).await.unwrap();
                    let mut b = reader.batch();
                    let mut nodes = Vec::new();
                    let root = verify_tree(&p, &mut nodes).unwrap();
                    verify_upgrade(0, p.upgrade.as_ref().unwrap(), root, &mut b, None).unwrap();
                    assert_eq!(b.length, 23, "{start}..{end}");
                    assert_eq!(b.hash(), t.hash());
                }
            }
        });
    }

    #[test]
    fn block_proofs_roundtrip_with_and_without_upgrade() {
        block_on(async {
            let (s, t) = build(13).await;
            for index in 0..13u64 {
                let r = ProofRequest {
                    block: Some(RequestBlock { index, nodes: 0 }),
                    upgrade: Some(RequestUpgrade {
                        start: 0,
                        length: 13,
                    }),
                    ..Default::default()
                };
                let mut p = generate(&s, &t, None, &r).await.unwrap();
                p.block.as_mut().unwrap().value = vec![b'a' + index as u8];
                let mut b = TreeBatch::empty(0);
                let mut nodes = Vec::new();
                let root = verify_tree(&p, &mut nodes).unwrap();
                let consumed =
                    verify_upgrade(0, p.upgrade.as_ref().unwrap(), root, &mut b, None).unwrap();
                assert!(consumed, "block {index}");
                assert_eq!(b.hash(), t.hash());
                // Tampered value → different root → the upgrade does not match the tree.
                let mut bad = p.clone();
                bad.block.as_mut().unwrap().value = b"zz".to_vec();
                let mut b = TreeBatch::empty(0);
                let root = verify_tree(&bad, &mut Vec::new()).unwrap();
                let ok = verify_upgrade(0, bad.upgrade.as_ref().unwrap(), root, &mut b, None);
                assert!(ok.is_err() || b.hash() != t.hash());
            }
        });
    }

    #[test]
    fn malformed_proofs_are_typed_errors() {
        let node = |index| TreeNode {
            index,
            size: 1,
            hash: [0; 32],
        };
        let p = Data {
            block: Some(DataBlock {
                index: 0,
                value: b"a".to_vec(),
                nodes: vec![node(4)],
            }),
            ..Default::default()
        };
        assert_eq!(
            verify_tree(&p, &mut Vec::new()),
            Err(ProofError::UnexpectedNode {
                expected: 2,
                got: 4
            })
        );
        let up = DataUpgrade {
            start: 0,
            length: 2,
            nodes: vec![],
            additional_nodes: vec![],
            signature: vec![],
        };
        let mut b = TreeBatch::empty(0);
        assert_eq!(
            verify_upgrade(0, &up, None, &mut b, None),
            Err(ProofError::MissingNode { expected: 1 })
        );
        let up = DataUpgrade {
            start: 0,
            length: 1,
            nodes: vec![node(0)],
            additional_nodes: vec![node(7)],
            signature: vec![],
        };
        let mut b = TreeBatch::empty(0);
        assert_eq!(
            verify_upgrade(0, &up, None, &mut b, None),
            Err(ProofError::UnexpectedAdditionalNode(7))
        );
        let up = DataUpgrade {
            start: u64::MAX,
            length: 2,
            ..Default::default()
        };
        assert!(verify_upgrade(0, &up, None, &mut TreeBatch::empty(0), None).is_err());
        // Huge untrusted indexes are typed errors, never overflows.
        for index in [MAX_INDEX, u64::MAX, u64::MAX - 1] {
            let p = Data {
                hash: Some(DataHash {
                    index,
                    nodes: vec![node(index)],
                }),
                ..Default::default()
            };
            assert_eq!(
                verify_tree(&p, &mut Vec::new()),
                Err(ProofError::NodeOutOfRange(index))
            );
            let p = Data {
                seek: Some(DataSeek {
                    bytes: 0,
                    nodes: vec![node(index), node(0)],
                }),
                ..Default::default()
            };
            assert!(verify_tree(&p, &mut Vec::new()).is_err());
        }
        let p = Data {
            block: Some(DataBlock {
                index: u64::MAX / 2,
                value: vec![],
                nodes: vec![],
            }),
            ..Default::default()
        };
        assert!(verify_tree(&p, &mut Vec::new()).is_err());
        // Untrusted sizes whose sums overflow are typed errors (they cannot verify anyway).
        let huge = |index| TreeNode {
            size: u64::MAX,
            ..node(index)
        };
        let p = Data {
            block: Some(DataBlock {
                index: 0,
                value: b"a".to_vec(),
                nodes: vec![huge(2)],
            }),
            ..Default::default()
        };
        assert_eq!(
            verify_tree(&p, &mut Vec::new()),
            Err(ProofError::SizeOverflow(1))
        );
        let p = Data {
            seek: Some(DataSeek {
                bytes: 0,
                nodes: vec![node(0), huge(2)],
            }),
            ..Default::default()
        };
        assert_eq!(
            verify_tree(&p, &mut Vec::new()),
            Err(ProofError::SizeOverflow(1))
        );
        let up = DataUpgrade {
            start: 0,
            length: 3,
            nodes: vec![node(1), huge(4)],
            ..Default::default()
        };
        assert_eq!(
            verify_upgrade(0, &up, None, &mut TreeBatch::empty(0), None),
            Err(ProofError::SizeOverflow(4))
        );
        let up = DataUpgrade {
            start: 0,
            length: 2,
            nodes: vec![node(1)],
            additional_nodes: vec![huge(5)],
            ..Default::default()
        };
        assert_eq!(
            verify_upgrade(0, &up, None, &mut TreeBatch::empty(0), None),
            Err(ProofError::SizeOverflow(5))
        );
        // A long chain of correctly placed siblings runs out of range instead of overflowing.
        let mut ite = Iterator::new(0);
        let mut chain = Vec::new();
        for _ in 0..80 {
            chain.push(node(ite.sibling()));
            ite.sibling();
            if ite.factor >= 1 << 62 {
                break;
            }
            ite.parent();
        }
        let p = Data {
            block: Some(DataBlock {
                index: 0,
                value: vec![1],
                nodes: chain,
            }),
            ..Default::default()
        };
        assert!(matches!(
            verify_tree(&p, &mut Vec::new()),
            Err(ProofError::NodeOutOfRange(_))
        ));
    }
}
