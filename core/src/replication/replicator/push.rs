//! Push mode (JS `allowPush` / `pushOnly` / `replicator.push`): sending blocks nobody asked
//! for and the switches for accepting them.

use crate::encoding::Encode;
use crate::hypercore::messages::{Message, RequestBlock, RequestUpgrade};
use crate::hypercore::{HypercoreError, MerkleTree, ProofRequest};
use crate::storage::Storage;

use super::{PeerId, ReplicationError, Replicator};

impl<S: Storage> Replicator<S> {
    /// Accept pushed blocks or not ([`Options::allow_push`](super::Options::allow_push)); peers
    /// learn it from a new `sync` (JS `setAllowPush`).
    pub fn set_allow_push(&mut self, allow_push: bool) {
        if allow_push == self.opts.allow_push {
            return;
        }
        self.opts.allow_push = allow_push;
        if self.frozen {
            return;
        }
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for p in peers {
            self.send_sync(p);
        }
    }

    /// Send no requests ([`Options::push_only`](super::Options::push_only), JS `setPushOnly`).
    /// Requests in flight are left to finish; when turned off, whatever is wanted is requested at
    /// once.
    pub async fn set_push_only(
        &mut self,
        now: u64,
        push_only: bool,
    ) -> Result<(), ReplicationError> {
        if push_only == self.opts.push_only {
            return Ok(());
        }
        self.opts.push_only = push_only;
        self.update(now).await
    }

    /// Push block `index` to every peer that accepts pushes (JS `replicator.push`): to each peer
    /// whose last `sync` set `allowPush` and `downloading`, is on our fork and does not advertise
    /// the block, send an unrequested `data` (request id 0) with the block and its proof. Its proof
    /// reaches up to the roots of the longest of the peer's length and the length our earlier
    /// proofs brought it to ([`PeerInfo::pushed_length`](super::PeerInfo::pushed_length)); from
    /// there, when `index` lies past it, the `data` also carries an upgrade to our length (and the
    /// manifest when the peer's core is empty and no upgrade of ours went to it yet). An upgrade
    /// request from such a peer that starts below what we pushed is answered from where our pushes
    /// ended (JS `_handleRequest`); a plain upgrade request that asked for less gets the rest of
    /// our tree from there, or no upgrade when our pushes reached our length: each upgrade it gets
    /// starts where the previous one ended.
    ///
    /// Returns how many peers it was sent to: none when we do not hold the block (or the core
    /// is frozen). Paused peers get nothing (as for requests). The `data` uses up the peer's
    /// window ([`Replicator::set_window`]) but is not held back by it.
    pub async fn push(&mut self, index: u64) -> Result<usize, ReplicationError> {
        self.push_to(index, None).await
    }

    /// [`Replicator::push`] to `only` that peer, or to every peer.
    async fn push_to(
        &mut self,
        index: u64,
        only: Option<PeerId>,
    ) -> Result<usize, ReplicationError> {
        let (len, fork) = (self.core.length(), self.core.fork());
        if self.frozen || index >= len || !self.core.has(index) {
            return Ok(0);
        }
        let targets: Vec<(PeerId, u64, bool)> = self
            .peers
            .iter()
            .filter(|(id, p)| {
                only.is_none_or(|o| o == **id)
                    && p.synced
                    && p.remote_allow_push
                    && p.remote_downloading
                    && !p.paused
                    && p.remote_fork == fork
                    && !p.has_block(index)
            })
            .map(|(&id, p)| {
                // JS sends the manifest while the peer says it is empty; once an upgrade of
                // ours (which carried it) is on its way, it has it.
                let from = p.remote_length.max(p.pushed_length);
                (id, from, from == 0)
            })
            .collect();
        let mut sent = 0;
        for (peer, remote_length, manifest) in targets {
            let req = ProofRequest {
                block: Some(RequestBlock {
                    index,
                    nodes: MerkleTree::max_missing_nodes(2 * index, remote_length),
                }),
                upgrade: (index >= remote_length).then(|| RequestUpgrade {
                    start: remote_length,
                    length: len - remote_length,
                }),
                ..ProofRequest::default()
            };
            let mut data = match self.core.proof(&req).await {
                Ok(data) => data,
                Err(HypercoreError::Storage(e)) => return Err(HypercoreError::Storage(e).into()),
                // Nothing provable from the length it claims (longer than ours, say).
                Err(_) => continue,
            };
            data.request = 0;
            data.fork = fork;
            if manifest && !self.core.is_compat() {
                data.manifest = self.core.manifest().cloned();
            }
            self.note_upgrade_sent(peer, &data);
            let msg = Message::Data(Box::new(data));
            if let Some(p) = self.peers.get_mut(&peer) {
                p.window = p.window.saturating_sub(msg.encoded_len());
            }
            self.transmits.push_back((peer, msg));
            sent += 1;
        }
        Ok(sent)
    }
}

impl<S: Storage> Replicator<S> {
    /// [`Options::push`](super::Options::push): push blocks `start..` our length (appended just
    /// now) to every peer that accepts pushes.
    pub(super) async fn push_appended(&mut self, start: u64) -> Result<(), ReplicationError> {
        if !self.opts.push {
            return Ok(());
        }
        for index in start..self.core.length() {
            self.push_to(index, None).await?;
        }
        Ok(())
    }

    /// [`Options::push`](super::Options::push): a peer's `sync` says it accepts pushes and is
    /// behind us: push it the newest blocks (at most [`PUSH_CATCH_UP`]) past what it has and
    /// what we pushed it already. Without this, blocks appended between its channel opening
    /// and its `sync` reaching us would never reach a push-only reader.
    pub(super) async fn push_catch_up(&mut self, peer: PeerId) -> Result<(), ReplicationError> {
        let (len, fork) = (self.core.length(), self.core.fork());
        let from = match self.peers.get(&peer) {
            Some(p)
                if self.opts.push
                    && p.synced
                    && p.remote_allow_push
                    && p.remote_downloading
                    && p.remote_fork == fork =>
            {
                p.remote_length.max(p.pushed_length)
            }
            _ => return Ok(()),
        };
        for index in from.max(len.saturating_sub(PUSH_CATCH_UP))..len {
            self.push_to(index, Some(peer)).await?;
        }
        Ok(())
    }
}

/// The most blocks [`Options::push`](super::Options::push) pushes to catch up one peer's `sync`
/// (the newest ones; a push-only reader further behind gets the upgrade but not the older
/// blocks).
pub const PUSH_CATCH_UP: u64 = 1024;
