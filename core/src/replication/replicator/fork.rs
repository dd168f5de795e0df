//! Forks: following a peer onto a higher fork (reorgs, narrowed down with `hash` requests as JS
//! `ReorgBatch` does) and freezing on a conflict between two signed trees.

use std::collections::BTreeMap;

use crate::hypercore::messages::{Data, Message, Request, RequestBlock, RequestUpgrade, TreeNode};
use crate::hypercore::{flat_tree, proof};
use crate::hypercore::{HypercoreError, ProofError, ProofRequest, VerifiedProof};
use crate::storage::Storage;

use super::{Event, PeerId, ReplicationError, Replicator};

/// A verified reorg proof whose divergence point is being narrowed down with `hash` requests on
/// the new fork (JS `ReorgBatch`).
#[derive(Debug)]
pub(super) struct PendingReorg {
    /// The peer whose proof started it.
    pub(super) peer: PeerId,
    pub(super) fork: u64,
    pub(super) verified: VerifiedProof,
    /// The highest node of the new tree known to differ from ours (verified).
    pub(super) diff: TreeNode,
    /// Blocks under `diff` that we hold, and the levels from one of them up to `diff`.
    pub(super) want: (u64, u64, u64),
    pub(super) request: Option<u64>,
}

impl<S: Storage> Replicator<S> {
    /// A verified reorg proof (a signed upgrade from 0 on a higher fork): its roots tell which
    /// prefix of ours it keeps; inside the first root that differs, `hash` requests on the new
    /// fork find the first differing block (JS `ReorgBatch`) before the reorg is applied.
    pub(super) async fn start_reorg(
        &mut self,
        peer: PeerId,
        fork: u64,
        verified: VerifiedProof,
    ) -> Result<(), ReplicationError> {
        if self.pending_reorg.as_ref().is_some_and(|r| r.fork > fork) {
            return Ok(());
        }
        let old_len = self.core.length();
        let b = &verified.batch;
        let ancestors = b.ancestors;
        let diff = b
            .roots
            .iter()
            .find(|r| flat_tree::left_span(r.index) / 2 == ancestors)
            .copied();
        self.pending_reorg = None;
        match diff {
            Some(diff) if ancestors < old_len.min(b.length) => {
                let mut pending = PendingReorg {
                    peer,
                    fork,
                    verified,
                    diff,
                    want: (0, 0, 0),
                    request: None,
                };
                if narrow_reorg(&mut pending, diff, old_len) {
                    self.apply_reorg(peer, pending.verified).await
                } else {
                    self.pending_reorg = Some(pending);
                    Ok(())
                }
            }
            _ => self.apply_reorg(peer, verified).await,
        }
    }

    /// A `hash` proof on the new fork for the pending reorg: it must lead to the differing node;
    /// then descend along it (JS `ReorgBatch._update`).
    pub(super) async fn on_reorg_hash(
        &mut self,
        peer: PeerId,
        data: &Data,
    ) -> Result<(), ReplicationError> {
        let Some(mut pending) = self
            .pending_reorg
            .take_if(|r| r.fork == data.fork && data.hash.is_some())
        else {
            return Ok(());
        };
        let mut nodes = Vec::new();
        let root = proof::verify_tree(data, &mut nodes);
        let root = match root {
            Ok(Some(r)) if r == pending.diff => r,
            Ok(Some(r)) if r.index != pending.diff.index => {
                // An answer about a node we no longer ask about.
                self.pending_reorg = Some(pending);
                return Ok(());
            }
            Ok(_) => {
                self.pending_reorg = Some(pending);
                let index = data.hash.as_ref().map_or(0, |h| h.index);
                self.invalid_data(peer, ProofError::InvalidChecksum(index).into());
                return Ok(());
            }
            Err(e) => {
                self.pending_reorg = Some(pending);
                self.invalid_data(peer, e.into());
                return Ok(());
            }
        };
        let by_index: BTreeMap<u64, TreeNode> = nodes.iter().map(|n| (n.index, *n)).collect();
        let mut diff = root;
        let mut ite = flat_tree::Iterator::new(root.index);
        while ite.index & 1 != 0 {
            let Some(&left) = by_index.get(&ite.left_child()) else {
                break;
            };
            let local = self.core.tree_node(left.index).await?;
            if local != Some(left) {
                diff = left;
            } else {
                match by_index.get(&ite.sibling()) {
                    Some(&right) => diff = right,
                    None => break,
                }
            }
        }
        pending.verified.batch.nodes.extend(nodes);
        let old_len = self.core.length();
        if narrow_reorg(&mut pending, diff, old_len) {
            self.apply_reorg(peer, pending.verified).await
        } else {
            self.pending_reorg = Some(pending);
            Ok(())
        }
    }

    async fn apply_reorg(
        &mut self,
        peer: PeerId,
        verified: VerifiedProof,
    ) -> Result<(), ReplicationError> {
        let (old_len, old_fork) = (self.core.length(), self.core.fork());
        let applied = self.core.apply_verified(verified, None).await;
        if let Err(HypercoreError::InvalidArgument(_)) = applied {
            // Our tree moved since the proof was verified: a new reorg proof will be asked for.
            return Ok(());
        }
        self.after_apply(peer, applied, old_len, old_fork).await
    }

    /// One `hash` request in flight for the pending reorg, to a peer on its fork holding a block
    /// under the differing node (JS `_requestForkRange`). When no peer on that fork can be asked,
    /// the reorg is applied with the shared prefix found so far (the rest is fetched again).
    pub(super) async fn request_reorg_hash(&mut self, now: u64) -> Result<(), ReplicationError> {
        let max = self.max_inflight();
        let Some(r) = self.pending_reorg.as_ref().filter(|r| r.request.is_none()) else {
            return Ok(());
        };
        let (fork, (start, end, nodes)) = (r.fork, r.want);
        let push_only = self.opts.push_only;
        let pick = self.peers.iter().find_map(|(&id, p)| {
            if push_only || p.paused || p.remote_fork != fork || p.inflight >= max {
                return None;
            }
            let end = end.min(p.remote_length);
            let i = if start < p.remote_contig {
                start
            } else {
                p.remote_bitfield.find_first(true, start, end)?
            };
            (i < end).then_some((id, i))
        });
        let Some((peer, index)) = pick else {
            let busy = self
                .peers
                .values()
                .any(|p| !p.paused && p.remote_fork == fork && p.inflight >= max);
            if push_only || !busy {
                if let Some(r) = self.pending_reorg.take() {
                    self.apply_reorg(r.peer, r.verified).await?;
                }
            }
            return Ok(());
        };
        let req = Request {
            fork,
            hash: Some(RequestBlock {
                index: 2 * index,
                nodes,
            }),
            ..Request::default()
        };
        let id = self.send_request(now, peer, req);
        if let Some(r) = self.pending_reorg.as_mut() {
            r.request = Some(id);
        }
        Ok(())
    }

    /// JS `onconflict`: freeze, send every peer our own proof of the shared length (request 0) so
    /// it can detect the conflict too, and let every peer go.
    pub(super) async fn on_conflict(
        &mut self,
        peer: PeerId,
        length: u64,
    ) -> Result<(), ReplicationError> {
        self.frozen = true;
        self.events.push_back(Event::Conflict { peer, length });
        let (len, fork) = (self.core.length(), self.core.fork());
        let peers: Vec<(PeerId, u64, u64)> = self
            .peers
            .iter()
            .map(|(&id, p)| (id, p.remote_length, p.remote_fork))
            .collect();
        for (id, remote_length, remote_fork) in peers {
            if remote_length > 0 && remote_fork == fork {
                let req = ProofRequest {
                    upgrade: Some(RequestUpgrade {
                        start: 0,
                        length: len.min(remote_length),
                    }),
                    ..ProofRequest::default()
                };
                match self.core.proof(&req).await {
                    Ok(mut data) => {
                        data.request = 0;
                        self.transmits
                            .push_back((id, Message::Data(Box::new(data))));
                    }
                    Err(HypercoreError::Storage(e)) => {
                        return Err(HypercoreError::Storage(e).into())
                    }
                    Err(_) => {}
                }
            }
            self.release_peer(id);
            self.events.push_back(Event::Disconnect {
                peer: id,
                error: ReplicationError::Conflict { length },
            });
        }
        self.seeks.clear();
        self.tree_hashes.clear();
        Ok(())
    }

    pub(super) fn request_reorg(&mut self, now: u64) {
        if !self.opts.allow_fork || self.opts.push_only || self.reorg_inflight.is_some() {
            return;
        }
        let fork = self
            .core
            .fork()
            .max(self.pending_reorg.as_ref().map_or(0, |r| r.fork));
        let max = self.max_inflight();
        let pick = self.peers.iter().find(|(_, p)| {
            !p.paused && p.synced && p.remote_fork > fork && p.remote_length > 0 && p.inflight < max
        });
        if let Some((&peer, p)) = pick {
            let req = Request {
                fork: p.remote_fork,
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: p.remote_length,
                }),
                manifest: self.core.manifest().is_none(),
                ..Request::default()
            };
            self.send_request(now, peer, req);
        }
    }
}

/// JS `ReorgBatch._updateDiffRoot`: `diff` (a verified node of the new tree) differs from ours and
/// every block left of it is shared. Sets the reorg's `ancestors` to its first block; true when
/// that is final (a leaf, or nothing of ours under it), else sets what to ask for next.
fn narrow_reorg(pending: &mut PendingReorg, diff: TreeNode, old_len: u64) -> bool {
    let (s, e) = flat_tree::spans(diff.index);
    let (start, end) = (s / 2, (e / 2 + 1).min(old_len));
    pending.diff = diff;
    let batch = &mut pending.verified.batch;
    batch.ancestors = batch.ancestors.max(start.min(old_len)).min(batch.length);
    if diff.index & 1 == 0 || start >= old_len || end <= start {
        return true;
    }
    pending.want = (start, end, flat_tree::depth(diff.index));
    false
}
