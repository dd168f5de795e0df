//! Proof generation (JS `generateProof`): the node indexes a request needs are worked out first,
//! then read in one `get_many` round trip.

use crate::storage::Storage;

use crate::hypercore::error::{HypercoreError, ProofError};
use crate::hypercore::flat_tree::{self, Iterator};
use crate::hypercore::manifest::Prologue;
use crate::hypercore::messages::{
    Data, DataBlock, DataHash, DataSeek, DataUpgrade, RequestBlock, TreeNode,
};
use crate::hypercore::tree::{self, MerkleTree, NodeCache};

use super::{steps, ProofRequest, MAX_INDEX};

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
            // JS `generateProof`: an upgrade from below the prologue stops at the prologue, so
            // the requester checks the prologue's tree hash first. Deviation: when the request
            // also asks for a block (or hash) past the prologue, which a proof up to the
            // prologue cannot carry, the upgrade goes from 0 to where it asked (JS
            // `verifyUpgrade` accepts an upgrade from 0 past the prologue; the signature covers
            // that tree). JS's server throws there in `TreeProof.settle`, outside
            // `_getProof`'s catch, so protomux destroys the connection; a JS reader that
            // fast-forwards asks exactly that (`get(length - 1)` of a moved view core it holds
            // nothing of: the block with an upgrade from 0) and otherwise times out.
            // (an index out of range is no block past the prologue: `normalize` refuses it, as
            // the proof below will)
            let past_prologue =
                normalize(req.block, req.hash).is_some_and(|n| n.last_index >= pro.length);
            let end = u.start.saturating_add(u.length);
            u.start = 0;
            u.length = if past_prologue {
                end.max(pro.length)
            } else {
                pro.length
            };
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
