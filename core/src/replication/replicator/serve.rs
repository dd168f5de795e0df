//! Serving: answers to a peer's requests (proofs through [`Hypercore::proof`], `noData` with
//! the JS invalid-request backoff), and what our upgrade proofs brought each peer to.

use crate::hypercore::flat_tree;
use crate::hypercore::messages::{
    Data, DataUpgrade, Message, NoData, Request, RequestUpgrade, NO_DATA_INVALID_REQUEST,
    NO_DATA_NOT_AVAILABLE,
};
use crate::hypercore::{HypercoreError, ProofRequest};
use crate::storage::Storage;

use super::{Event, PeerId, ReplicationError, Replicator, MAX_INVALID_REQUESTS};

/// JS `backoff(times)`: how long to wait before answering the `times`-th invalid request.
fn backoff(times: u64) -> u64 {
    match times {
        0..2 => 200,
        2..5 => 500,
        5..40 => 1000,
        _ => 5000,
    }
}

impl<S: Storage> Replicator<S> {
    /// JS `_fulfillRequest`: an upgrade proof sent to `peer` brings it to its length.
    pub(super) fn note_upgrade_sent(&mut self, peer: PeerId, data: &Data) {
        if let (Some(up), Some(p)) = (&data.upgrade, self.peers.get_mut(&peer)) {
            p.pushed_length = p.pushed_length.max(upgrade_length(up));
        }
    }

    pub(super) async fn on_request(
        &mut self,
        now: u64,
        peer: PeerId,
        mut req: Request,
    ) -> Result<(), ReplicationError> {
        let paused = self.peers.get(&peer).is_none_or(|p| p.paused);
        if let (Some(up), Some(p)) = (req.upgrade, self.peers.get(&peer)) {
            // JS `_handleRequest`: a peer that accepts pushes may have our pushed upgrades in
            // flight; start this one where they end so the upgrades it gets stay contiguous.
            // Never for a fork check (id 0), which must prove the tree from 0.
            let (pushed, len) = (p.pushed_length, self.core.length());
            let upgrade_only = req.block.is_none() && req.hash.is_none() && req.seek.is_none();
            if p.remote_allow_push && req.id != 0 && pushed > up.start {
                let end = up.start.saturating_add(up.length);
                if pushed < end {
                    req.upgrade = Some(RequestUpgrade {
                        start: pushed,
                        length: end - pushed,
                    });
                } else if upgrade_only {
                    // JS leaves this one alone: its proof (from below what the peer has by
                    // then, up to our length) then fails to verify there. A plain upgrade
                    // request gets the rest of our tree, or nothing when our pushes reached it
                    // (a block, hash or seek part may need the upgrade it asked for).
                    req.upgrade = (pushed < len).then(|| RequestUpgrade {
                        start: pushed,
                        length: len - pushed,
                    });
                }
            }
            // JS also moves a start back to what it pushed: we leave those alone (the peer
            // holds our roots at its own length, not necessarily at what we pushed).
        }
        let has_block = req.block.is_none_or(|b| self.core.has(b.index));
        if req.fork != self.core.fork() || !has_block {
            self.not_available(peer, &req);
            return Ok(());
        }
        match self.core.proof(&ProofRequest::from(&req)).await {
            Ok(mut data) => {
                if paused && data.block.is_some() {
                    return Ok(());
                }
                data.request = req.id;
                data.fork = req.fork;
                if req.manifest && !self.core.is_compat() {
                    data.manifest = self.core.manifest().cloned();
                }
                self.note_upgrade_sent(peer, &data);
                if let Some(b) = &data.block {
                    self.events.push_back(Event::Uploaded {
                        index: b.index,
                        bytes: (b.value.len() as u64).saturating_sub(self.core.padding()),
                        peer,
                    });
                }
                self.transmits
                    .push_back((peer, Message::Data(Box::new(data))));
            }
            Err(HypercoreError::Storage(e)) => return Err(HypercoreError::Storage(e).into()),
            Err(HypercoreError::BlockNotAvailable(_)) => self.not_available(peer, &req),
            Err(error) => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return Ok(());
                };
                p.invalid_requests += 1;
                let n = p.invalid_requests;
                self.events.push_back(Event::InvalidRequest { peer, error });
                if n >= MAX_INVALID_REQUESTS {
                    self.disconnect(peer, ReplicationError::TooManyInvalidRequests(n));
                    return Ok(());
                }
                let answer = Message::NoData(NoData {
                    request: req.id,
                    reason: NO_DATA_INVALID_REQUEST,
                });
                self.delayed.push((now + backoff(n), peer, answer));
            }
        }
        Ok(())
    }

    fn not_available(&mut self, peer: PeerId, req: &Request) {
        let manifest = self.core.manifest().filter(|_| !self.core.is_compat());
        let msg = match manifest {
            Some(m) if req.manifest => Message::Data(Box::new(Data {
                request: req.id,
                fork: self.core.fork(),
                manifest: Some(m.clone()),
                ..Data::default()
            })),
            _ => Message::NoData(NoData {
                request: req.id,
                reason: NO_DATA_NOT_AVAILABLE,
            }),
        };
        self.transmits.push_back((peer, msg));
    }
}

/// JS `MerkleTree.upgradeLength`: the length a peer has once it applied `up` (additional nodes
/// take it to the prover's whole tree).
fn upgrade_length(up: &DataUpgrade) -> u64 {
    match up.additional_nodes.last() {
        Some(last) => flat_tree::right_span(last.index) / 2 + 1,
        None => up.start.saturating_add(up.length),
    }
}
