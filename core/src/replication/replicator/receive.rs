//! Input: messages from peers, dispatched by kind; answers and pushes verified and stored (one
//! at a time, or consecutive answers in one batch, [`Replicator::handle_messages`]); bad data
//! punished and checked for a fork.

use crate::hypercore::messages::{
    Cancel, Data, Message, NoData, Request, RequestUpgrade, Sync, NO_DATA_INVALID_REQUEST,
    NO_DATA_NOT_AVAILABLE,
};
use crate::hypercore::{ApplyOutcome, HypercoreError, ProofError};
use crate::storage::Storage;

use super::{Event, PeerId, ReplicationError, Replicator, MAX_BACKOFFS};

impl<S: Storage> Replicator<S> {
    /// A decoded message from `peer`. Errors are local failures only (storage); whatever the peer
    /// sends is handled (ignored, answered with `noData`, or punished through events).
    pub async fn handle_message(
        &mut self,
        now: u64,
        peer: PeerId,
        msg: Message,
    ) -> Result<(), ReplicationError> {
        if !self.peers.contains_key(&peer) {
            return Err(ReplicationError::UnknownPeer(peer));
        }
        if self.frozen {
            return Ok(());
        }
        self.dispatch(now, peer, msg).await?;
        self.update(now).await
    }

    /// Decoded messages from `peer`, in order, with the effect of one
    /// [`Replicator::handle_message`] call each, but the blocks of consecutive answers to our
    /// requests, and of consecutive pushes (with [`Options::allow_push`](super::Options::allow_push)),
    /// are verified and stored together, in one storage write
    /// ([`Hypercore::apply_proofs`](crate::hypercore::Hypercore::apply_proofs)): each
    /// [`Event::Block`] still comes only once its block is stored, and a proof that does not verify
    /// is punished alone, as it would be on its own. Messages after the peer was disconnected (or
    /// the core frozen) are dropped.
    pub async fn handle_messages(
        &mut self,
        now: u64,
        peer: PeerId,
        msgs: impl IntoIterator<Item = Message>,
    ) -> Result<(), ReplicationError> {
        if !self.peers.contains_key(&peer) {
            return Err(ReplicationError::UnknownPeer(peer));
        }
        let mut group: Vec<Data> = Vec::new();
        for msg in msgs {
            if self.frozen || !self.peers.contains_key(&peer) {
                break;
            }
            let msg = match msg {
                Message::Data(mut d) => {
                    if d.upgrade.is_none()
                        && d.manifest.is_some()
                        && d.manifest.as_ref() == self.core.manifest()
                    {
                        // A manifest we hold already (JS sends it with every push while it thinks
                        // our core is empty) changes nothing for a proof without upgrade.
                        d.manifest = None;
                    }
                    Message::Data(d)
                }
                msg => msg,
            };
            match msg {
                Message::Data(d) if self.joins_group(peer, &d, &group) => {
                    self.finish_request(d.request, true);
                    group.push(*d);
                }
                msg => {
                    self.apply_group(peer, &mut group).await?;
                    if self.frozen || !self.peers.contains_key(&peer) {
                        break;
                    }
                    self.dispatch(now, peer, msg).await?;
                }
            }
        }
        self.apply_group(peer, &mut group).await?;
        if self.frozen {
            return Ok(());
        }
        self.update(now).await
    }

    /// Whether `data` from `peer` is, at our fork and without upgrade or manifest, a plain
    /// answer to one of our requests to it (matching the request) or a pushed block we lack
    /// (with [`Options::allow_push`](super::Options::allow_push); no request of ours in flight
    /// under its id), whose block is not in `group` yet: what [`Replicator::on_data`] would
    /// verify and apply right away.
    fn joins_group(&self, peer: PeerId, data: &Data, group: &[Data]) -> bool {
        if !self.core.is_batchable(data) {
            return false;
        }
        let dup = data.block.as_ref().is_some_and(|b| {
            group
                .iter()
                .any(|g| g.block.as_ref().is_some_and(|x| x.index == b.index))
        });
        if dup {
            return false;
        }
        match self
            .inflight
            .get(&data.request)
            .filter(|_| data.request > 0)
        {
            Some(r) => r.peer == peer && matching_request(Some(&r.req), data),
            // Pushed (JS `_handleData` with no matching request): a block we do not hold yet.
            None => {
                self.opts.allow_push && data.block.as_ref().is_some_and(|b| !self.core.has(b.index))
            }
        }
    }

    /// Verify and store the proofs of `group` (their requests are finished) in one write, then
    /// act on each outcome in order, as [`Replicator::on_data`] does for one.
    async fn apply_group(
        &mut self,
        peer: PeerId,
        group: &mut Vec<Data>,
    ) -> Result<(), ReplicationError> {
        if group.is_empty() {
            return Ok(());
        }
        let (old_len, old_fork) = (self.core.length(), self.core.fork());
        let results = self.core.apply_proofs_owned(group).await?;
        group.clear();
        for applied in results {
            self.after_apply(peer, applied, old_len, old_fork).await?;
        }
        Ok(())
    }

    /// Act on one message (no request update).
    async fn dispatch(
        &mut self,
        now: u64,
        peer: PeerId,
        msg: Message,
    ) -> Result<(), ReplicationError> {
        match msg {
            Message::Sync(m) => self.on_sync(peer, m).await?,
            Message::Request(m) => self.answer_or_defer(now, peer, Message::Request(m)).await?,
            Message::Cancel(Cancel { request }) => {
                self.delayed.retain(|d| {
                    !(d.1 == peer && matches!(&d.2, Message::NoData(n) if n.request == request))
                });
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.deferred
                        .retain(|m| !matches!(m, Message::Request(r) if r.id == request));
                }
            }
            Message::Data(d) => self.on_data(peer, *d).await?,
            Message::NoData(m) => self.on_no_data(peer, m),
            Message::Want(w) => self.answer_or_defer(now, peer, Message::Want(w)).await?,
            Message::Unwant(w) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.remote_wants.remove(w.start, w.length, w.any);
                }
            }
            Message::Bitfield(b) => self.on_bitfield(peer, b),
            Message::Range(r) => self.on_range(peer, r),
            Message::Extension(e) => self.on_extension(peer, e),
        }
        Ok(())
    }

    async fn on_sync(&mut self, peer: PeerId, m: Sync) -> Result<(), ReplicationError> {
        let (local_len, local_fork) = (self.core.length(), self.core.fork());
        let Some(p) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        let length_changed = m.length != p.remote_length;
        let same_fork = m.fork == local_fork;
        p.synced = true;
        if m.fork != p.remote_fork {
            // What we pushed was on the fork it left.
            p.pushed_length = 0;
        }
        p.remote_allow_push = m.allow_push;
        p.remote_downloading = m.downloading;
        p.remote_fork = m.fork;
        p.remote_length = m.length;
        p.remote_can_upgrade = m.can_upgrade;
        p.remote_has_manifest = m.has_manifest;
        p.length_acked = if same_fork { m.remote_length } else { 0 };
        let upgrade = if !length_changed || !same_fork {
            p.can_upgrade && same_fork
        } else {
            self.can_upgrade_to(m.length, m.fork).await
        };
        if let Some(p) = self.peers.get_mut(&peer) {
            p.can_upgrade = upgrade;
            if upgrade {
                p.last_upgradable = Some((m.fork, m.length));
            }
        }
        self.events.push_back(Event::PeerSync {
            peer,
            fork: m.fork,
            length: m.length,
        });
        if local_fork == m.fork && local_len > m.length {
            self.signal_upgrade(peer).await?;
            self.push_catch_up(peer).await?;
        }
        Ok(())
    }

    async fn on_data(&mut self, peer: PeerId, data: Data) -> Result<(), ReplicationError> {
        if data.request == 0 && data.upgrade.as_ref().is_some_and(|u| u.start == 0) {
            // A conflict proof is always looked at (JS `checkConflict`).
            match self.core.check_conflict(&data).await {
                Ok(true) => {
                    let length = data.upgrade.as_ref().map_or(0, |u| u.length);
                    return self.on_conflict(peer, length).await;
                }
                Ok(false) => {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.paused = false;
                    }
                }
                Err(HypercoreError::Storage(e)) => return Err(HypercoreError::Storage(e).into()),
                Err(_) => return Ok(()),
            }
        }
        let local_fork = self.core.fork();
        let req = if data.request > 0 {
            match self.inflight.get(&data.request) {
                Some(r) if r.peer == peer => Some(r.req),
                Some(_) => return Ok(()),
                None => None,
            }
        } else {
            None
        };
        let reorg = data.fork > local_fork;
        let pushed = req.is_none() && !reorg;
        if pushed && (!self.opts.allow_push || data.fork != local_fork) {
            // Unsolicited (or cancelled / timed-out) data is ignored unless pushes are allowed
            // (JS `_handleData`); a push on a fork we left cannot verify (JS `core.verify`).
            return Ok(());
        }
        if req.is_some() {
            self.finish_request(data.request, true);
        }
        if reorg {
            let from_peer = self
                .peers
                .get(&peer)
                .is_some_and(|p| p.remote_fork == data.fork);
            if !self.opts.allow_fork || !from_peer {
                return Ok(());
            }
            if data.upgrade.is_none() {
                if matching_request(req.as_ref(), &data) {
                    return self.on_reorg_hash(peer, &data).await;
                }
                return Ok(());
            }
            return match self.core.verify_proof(&data).await {
                Ok(verified) => self.start_reorg(peer, data.fork, verified).await,
                Err(HypercoreError::Storage(e)) => Err(HypercoreError::Storage(e).into()),
                Err(error) => {
                    self.invalid_data(peer, error);
                    Ok(())
                }
            };
        } else if !self.opts.allow_push && !matching_request(req.as_ref(), &data) {
            // JS `_matchingRequest` accepts any data in push mode.
            self.on_no_data_effects(peer, 0);
            return Ok(());
        }
        let held = data.block.as_ref().is_some_and(|b| self.core.has(b.index));
        if pushed && held && data.upgrade.is_none() {
            // A pushed block we already hold (it raced a request or another push).
            return Ok(());
        }
        let (old_len, old_fork) = (self.core.length(), self.core.fork());
        let mut applied = self.core.apply_proof(&data).await;
        if let (true, Ok(out)) = (pushed && held, applied.as_mut()) {
            // Only its upgrade was new: no block event, no range broadcast.
            out.block = None;
        }
        self.after_apply(peer, applied, old_len, old_fork).await
    }

    /// Report and propagate what applying a proof from `peer` did.
    pub(super) async fn after_apply(
        &mut self,
        peer: PeerId,
        applied: Result<ApplyOutcome, HypercoreError>,
        old_len: u64,
        old_fork: u64,
    ) -> Result<(), ReplicationError> {
        match applied {
            Ok(out) => {
                let (len, fork) = (self.core.length(), self.core.fork());
                if fork != old_fork {
                    self.events.push_back(Event::Reorg { fork, length: len });
                } else if let Some(length) = out.upgraded_to.filter(|&l| l != old_len) {
                    self.events.push_back(Event::Upgraded { length, fork });
                }
                if let Some(index) = out.block {
                    let bytes = out.block_bytes.saturating_sub(self.core.padding());
                    self.events.push_back(Event::Block { index, bytes, peer });
                }
                if fork != old_fork || len != old_len {
                    self.after_upgrade(old_fork).await?;
                }
                if let Some(index) = out.block {
                    // Hotswapped duplicates of this block are no longer needed.
                    let others = self
                        .inflight_blocks
                        .get(&index)
                        .cloned()
                        .unwrap_or_default();
                    for id in others {
                        self.cancel_request(id);
                    }
                    let peers: Vec<PeerId> = self.peers.keys().copied().collect();
                    for p in peers {
                        self.broadcast_range(p, index, 1, false);
                    }
                }
                self.check_downloads();
                self.check_seeks().await?;
            }
            Err(HypercoreError::Storage(e)) => return Err(HypercoreError::Storage(e).into()),
            Err(error) => self.invalid_data(peer, error),
        }
        Ok(())
    }

    pub(super) fn invalid_data(&mut self, peer: PeerId, error: HypercoreError) {
        let local_len = self.core.length();
        // JS: in push mode an occasional bad message is expected; one that does not fit our
        // tree (JS `INVALID_OPERATION`: no fork check) leaves the peer running.
        let keep_running = self.opts.allow_push && does_not_fit(&error);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let was_paused = p.paused;
        p.paused |= !keep_running;
        p.invalid_data += 1;
        // JS `_checkIfConflict`: a proof that fails to verify may mean the writer forked; ask the
        // peer to prove its tree at the length we share (request id 0, never tracked). Once per
        // pause: the answers in flight behind the first bad one need no check of their own.
        let length = local_len.min(p.remote_length);
        let malformed = matches!(
            error,
            HypercoreError::InvalidProof(ProofError::InvalidRequest(_))
        );
        if !was_paused && !malformed && !keep_running && length > 0 {
            let check = Request {
                id: 0,
                fork: p.remote_fork,
                upgrade: Some(RequestUpgrade { start: 0, length }),
                ..Request::default()
            };
            self.transmits.push_back((peer, Message::Request(check)));
        }
        self.events.push_back(Event::InvalidData {
            peer,
            error: error.clone(),
        });
        if self.opts.disconnect_on_invalid_data {
            self.disconnect(peer, ReplicationError::InvalidData(error));
        }
    }

    fn on_no_data(&mut self, peer: PeerId, nd: NoData) {
        let Some(r) = self.inflight.get(&nd.request).filter(|r| r.peer == peer) else {
            return;
        };
        let index = match (r.req.block, r.req.hash) {
            (Some(b), _) => Some(b.index),
            (None, Some(h)) if h.index % 2 == 0 => Some(h.index / 2),
            _ => None,
        };
        self.finish_request(nd.request, true);
        if let (Some(index), Some(p)) = (index, self.peers.get_mut(&peer)) {
            // It does not have it after all: don't ask it again until it says otherwise.
            p.remote_bitfield.set(index, false);
            p.remote_contig = p.remote_contig.min(index);
        }
        self.on_no_data_effects(peer, nd.reason);
    }

    fn on_no_data_effects(&mut self, peer: PeerId, reason: u64) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if reason == NO_DATA_NOT_AVAILABLE || reason == NO_DATA_INVALID_REQUEST {
                p.backoffs += 1;
                if p.backoffs >= MAX_BACKOFFS {
                    p.paused = true;
                }
            }
        }
    }
}

/// Whether `error` is a proof that does not fit our tree (nodes missing or out of place, a root
/// we do not store): what JS reports as `INVALID_OPERATION` and does not check for a fork.
fn does_not_fit(error: &HypercoreError) -> bool {
    matches!(
        error,
        HypercoreError::MissingNode(_)
            | HypercoreError::InvalidProof(
                ProofError::MissingNode { .. }
                    | ProofError::UnexpectedNode { .. }
                    | ProofError::UnexpectedAdditionalNode(_)
                    | ProofError::Unverifiable(_)
                    | ProofError::NodeOutOfRange(_)
                    | ProofError::InvalidUpgrade(_)
                    | ProofError::InvalidRequest(_)
            )
    )
}

/// JS `_matchingRequest`: the data answers what was asked.
fn matching_request(req: Option<&Request>, data: &Data) -> bool {
    let Some(req) = req else {
        return false;
    };
    if let Some(b) = &data.block {
        if req.block.is_none_or(|r| r.index != b.index) {
            return false;
        }
    }
    if let Some(h) = &data.hash {
        if req.hash.is_none_or(|r| r.index != h.index) {
            return false;
        }
    }
    if let Some(s) = &data.seek {
        if req.seek.is_none_or(|r| r.bytes != s.bytes) {
            return false;
        }
    }
    if data.upgrade.is_some() && req.upgrade.is_none() {
        return false;
    }
    req.fork == data.fork
}
