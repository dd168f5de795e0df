//! Seeks ([`Replicator::seek`]) and tree hashes ([`Replicator::tree_hash`]): resolved from the
//! local tree, or through `hash` / upgrade requests for the nodes we lack.

use crate::hypercore::messages::{Request, RequestBlock, RequestSeek, RequestUpgrade};
use crate::hypercore::{flat_tree, tree};
use crate::hypercore::{HypercoreError, SeekResult};
use crate::storage::Storage;

use super::{Event, Peer, PeerId, ReplicationError, Replicator, SeekId, TreeHashId, SEEK_SCAN};

/// Where a pending seek stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SeekTarget {
    /// The byte lies past our length: it needs an upgrade (carrying the seek).
    Grow,
    /// The byte lies in blocks `start..end` whose tree nodes we lack: a hash request for one of
    /// them, with the seek, brings the nodes.
    Nodes { start: u64, end: u64 },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PendingSeek {
    pub(super) bytes: u64,
    pub(super) target: SeekTarget,
    pub(super) request: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PendingTreeHash {
    pub(super) length: u64,
    /// The first root of `length` we lack (`None`: `length` is past our length).
    pub(super) missing: Option<u64>,
    pub(super) request: Option<u64>,
}

impl<S: Storage> Replicator<S> {
    /// Find the block holding user byte `bytes` (padding excluded), like JS `core.seek`. Resolved
    /// from the local tree when its nodes are stored ([`Event::Seek`] at once); otherwise a peer
    /// is asked: past our length with an upgrade request carrying the seek, inside it with a
    /// `hash` request (plus the seek) for a block of the subtree whose nodes we lack. Each verified
    /// answer stores nodes and the seek is retried until [`Event::Seek`] reports the result. A
    /// seek past every peer's length waits for the core to grow.
    pub async fn seek(&mut self, now: u64, bytes: u64) -> Result<SeekId, ReplicationError> {
        let id = SeekId(self.next_seek);
        self.next_seek += 1;
        self.seeks.insert(
            id,
            PendingSeek {
                bytes,
                target: SeekTarget::Grow,
                request: None,
            },
        );
        self.check_seeks().await?;
        self.update(now).await?;
        Ok(id)
    }

    /// Stop a pending seek (a request already sent for it is left to finish).
    pub fn cancel_seek(&mut self, id: SeekId) {
        self.seeks.remove(&id);
    }

    /// The tree hash of the first `length` blocks (what a signature at `length` signs), without
    /// downloading blocks: from the stored roots of `length` when we have them
    /// ([`Event::TreeHash`] at once), else each missing root is fetched with a `hash` request to
    /// a peer holding its blocks and verified against our tree. A `length` past ours waits for the
    /// core to grow.
    pub async fn tree_hash(
        &mut self,
        now: u64,
        length: u64,
    ) -> Result<TreeHashId, ReplicationError> {
        let id = TreeHashId(self.next_tree_hash);
        self.next_tree_hash += 1;
        self.tree_hashes.insert(
            id,
            PendingTreeHash {
                length,
                missing: None,
                request: None,
            },
        );
        self.check_seeks().await?;
        self.update(now).await?;
        Ok(id)
    }

    /// Stop a pending [`Replicator::tree_hash`].
    pub fn cancel_tree_hash(&mut self, id: TreeHashId) {
        self.tree_hashes.remove(&id);
    }

    /// Retry every pending seek against the local tree (JS `ByteSeeker.update`): resolved ones
    /// give [`Event::Seek`], the others learn what they still need.
    pub(super) async fn check_seeks(&mut self) -> Result<(), ReplicationError> {
        self.check_tree_hashes().await?;
        let ids: Vec<SeekId> = self.seeks.keys().copied().collect();
        for id in ids {
            let Some(bytes) = self.seeks.get(&id).map(|s| s.bytes) else {
                continue;
            };
            let target = match self.core.seek(bytes).await {
                Ok(SeekResult::Found { index, offset }) => {
                    self.seeks.remove(&id);
                    self.events.push_back(Event::Seek { id, index, offset });
                    continue;
                }
                Ok(SeekResult::Missing { start, end }) => SeekTarget::Nodes { start, end },
                Ok(SeekResult::OutOfBounds) => SeekTarget::Grow,
                Err(HypercoreError::Storage(e)) => return Err(HypercoreError::Storage(e).into()),
                // A node we need is not stored (yet): keep asking peers for the whole core.
                Err(_) => SeekTarget::Grow,
            };
            if let Some(s) = self.seeks.get_mut(&id) {
                s.target = target;
            }
        }
        Ok(())
    }

    /// Resolve the pending [`Replicator::tree_hash`]es whose roots are all stored.
    async fn check_tree_hashes(&mut self) -> Result<(), ReplicationError> {
        let len = self.core.length();
        let pending: Vec<(TreeHashId, u64)> = self
            .tree_hashes
            .iter()
            .map(|(&id, t)| (id, t.length))
            .collect();
        for (id, length) in pending {
            let missing = if length > len {
                None
            } else {
                let mut roots = Vec::new();
                let mut missing = None;
                for i in flat_tree::roots_of_length(length) {
                    match self.core.tree_node(i).await? {
                        Some(n) => roots.push(n),
                        None => {
                            missing = Some(i);
                            break;
                        }
                    }
                }
                if missing.is_none() {
                    self.tree_hashes.remove(&id);
                    let hash = tree::hash_roots(&roots);
                    self.events.push_back(Event::TreeHash { id, length, hash });
                    continue;
                }
                missing
            };
            if let Some(t) = self.tree_hashes.get_mut(&id) {
                t.missing = missing;
            }
        }
        Ok(())
    }

    /// One `hash` request in flight per pending tree hash, for its first missing root, to a
    /// peer that holds every block under it (and so the node).
    pub(super) async fn request_tree_hashes(&mut self, now: u64) -> Result<(), ReplicationError> {
        let fork = self.core.fork();
        let max = self.max_inflight();
        let pending: Vec<(TreeHashId, u64)> = self
            .tree_hashes
            .iter()
            .filter(|(_, t)| t.request.is_none())
            .filter_map(|(&id, t)| t.missing.map(|m| (id, m)))
            .collect();
        for (id, node) in pending {
            let (start, end) = flat_tree::spans(node);
            let (start, end) = (start / 2, end / 2 + 1);
            let peer = self.peers.iter().find_map(|(&pid, p)| {
                let holds = p.remote_contig >= end
                    || (p.has_block(start)
                        && p.remote_bitfield.find_first(false, start, end).is_none());
                (!p.paused
                    && p.remote_fork == fork
                    && p.inflight < max
                    && p.remote_length >= end
                    && holds
                    && self.can_request(p, start))
                .then_some(pid)
            });
            let Some(peer) = peer else {
                self.maybe_want(start);
                continue;
            };
            let nodes = self.core.missing_nodes(node).await?;
            let req = Request {
                fork,
                hash: Some(RequestBlock { index: node, nodes }),
                ..Request::default()
            };
            let rid = self.send_request(now, peer, req);
            if let Some(t) = self.tree_hashes.get_mut(&id) {
                t.request = Some(rid);
            }
        }
        Ok(())
    }

    /// JS `_requestSeek`: one request in flight per pending seek.
    pub(super) fn request_seeks(&mut self, now: u64) {
        if self.opts.push_only {
            return;
        }
        let (len, fork, padding) = (self.core.length(), self.core.fork(), self.core.padding());
        let max = self.max_inflight();
        let mut upgrading = self.upgrade_inflight.is_some();
        let mut sent: Vec<(SeekId, PeerId, Request)> = Vec::new();
        let mut wants = Vec::new();
        for (&id, s) in &self.seeks {
            if s.request.is_some() {
                continue;
            }
            let seek = Some(RequestSeek {
                bytes: s.bytes,
                padding,
            });
            match s.target {
                SeekTarget::Grow if !upgrading => {
                    let pick = self.peers.iter().find(|(_, p)| {
                        !p.paused
                            && p.remote_fork == fork
                            && p.remote_can_upgrade
                            && p.remote_length > len
                            && p.length_acked == len
                            && p.inflight < max
                    });
                    if let Some((&peer, p)) = pick {
                        upgrading = true;
                        let req = Request {
                            fork,
                            seek,
                            upgrade: Some(RequestUpgrade {
                                start: len,
                                length: p.remote_length - len,
                            }),
                            manifest: self.core.manifest().is_none() && p.remote_has_manifest,
                            ..Request::default()
                        };
                        sent.push((id, peer, req));
                    }
                }
                SeekTarget::Grow => {}
                SeekTarget::Nodes { start, end } => {
                    let found = self.peers.iter().find_map(|(&peer, p)| {
                        if p.paused || p.remote_fork != fork || p.inflight >= max {
                            return None;
                        }
                        self.seek_candidate(p, start, end).map(|i| (peer, i))
                    });
                    match found {
                        Some((peer, index)) => {
                            let req = Request {
                                fork,
                                hash: Some(RequestBlock {
                                    index: 2 * index,
                                    nodes: flat_tree::depth(start + end - 1),
                                }),
                                seek,
                                ..Request::default()
                            };
                            sent.push((id, peer, req));
                        }
                        None => wants.push(start),
                    }
                }
            }
        }
        for (id, peer, mut req) in sent {
            if self.peers.get(&peer).is_some_and(|p| p.no_seeks) {
                // JS: peers whose handshake lacks `seeks` get the hash/upgrade part only.
                req.seek = None;
            }
            let rid = self.send_request(now, peer, req);
            if let Some(s) = self.seeks.get_mut(&id) {
                s.request = Some(rid);
            }
        }
        for start in wants {
            self.maybe_want(start);
        }
    }

    /// A block of `start..end` that `p` advertises, we lack and may ask it about.
    fn seek_candidate(&self, p: &Peer, start: u64, end: u64) -> Option<u64> {
        let mut i = start;
        for _ in 0..SEEK_SCAN {
            if i >= end {
                return None;
            }
            let c = if i < p.remote_contig {
                i
            } else {
                p.remote_bitfield.find_first(true, i, end)?
            };
            if c >= end {
                return None;
            }
            if !self.core.has(c) && c < p.remote_length && self.can_request(p, c) {
                return Some(c);
            }
            i = c + 1;
        }
        None
    }
}
