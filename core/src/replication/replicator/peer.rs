//! Peer state: what we know about each peer ([`PeerInfo`]), adding and removing peers, the
//! answer window that holds back a peer's requests while it does not read ours
//! ([`Replicator::set_window`]), and extension messages.

use std::collections::{BTreeSet, VecDeque};

use crate::encoding::Encode;
use crate::hypercore::messages::{Extension, Message};
use crate::storage::Storage;

use super::{Event, PeerId, ReplicationError, Replicator, MAX_DEFERRED};
use crate::replication::remote_bitfield::{RemoteBitfield, RemoteWants};

/// A snapshot of what we know about a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer has sent a `sync`.
    pub synced: bool,
    /// Its fork.
    pub remote_fork: u64,
    /// Its length.
    pub remote_length: u64,
    /// It holds blocks `0..remote_contiguous_length`.
    pub remote_contiguous_length: u64,
    /// It says it can prove an upgrade from our length.
    pub remote_can_upgrade: bool,
    /// We told it we can prove an upgrade from its length.
    pub can_upgrade: bool,
    /// Our requests in flight to it.
    pub inflight: usize,
    /// No longer used for requests (bad data or too many `noData`).
    pub paused: bool,
    /// Invalid requests it sent.
    pub invalid_requests: u64,
    /// Invalid proofs it sent.
    pub invalid_data: u64,
    /// Its last `sync` set `allowPush`: it accepts [`Replicator::push`]es.
    pub remote_allow_push: bool,
    /// Its last `sync` set `downloading` (assumed until it says otherwise).
    pub remote_downloading: bool,
    /// The length our upgrade proofs (answers and pushes) brought it to on this fork.
    pub pushed_length: u64,
}

#[derive(Debug)]
pub(super) struct Peer {
    /// Bytes of answers we may still queue for it (see [`Replicator::set_window`]).
    pub(super) window: usize,
    /// Its requests and `want`s waiting for window, oldest first.
    pub(super) deferred: VecDeque<Message>,
    pub(super) synced: bool,
    pub(super) remote_fork: u64,
    pub(super) remote_length: u64,
    pub(super) remote_can_upgrade: bool,
    pub(super) remote_has_manifest: bool,
    pub(super) remote_allow_push: bool,
    pub(super) remote_downloading: bool,
    /// The length our upgrade proofs brought it to (JS `pushedLength`).
    pub(super) pushed_length: u64,
    /// Its channel handshake did not set `seeks`.
    pub(super) no_seeks: bool,
    /// We asked it for the manifest alone.
    pub(super) manifest_asked: bool,
    pub(super) length_acked: u64,
    pub(super) can_upgrade: bool,
    pub(super) last_upgradable: Option<(u64, u64)>,
    pub(super) remote_contig: u64,
    pub(super) remote_bitfield: RemoteBitfield,
    pub(super) remote_wants: RemoteWants,
    pub(super) wants_sent: BTreeSet<u64>,
    pub(super) inflight: usize,
    pub(super) paused: bool,
    pub(super) invalid_requests: u64,
    pub(super) invalid_data: u64,
    pub(super) backoffs: u64,
    pub(super) timeouts: u64,
    pub(super) fully_signaled: u64,
    pub(super) last_ext_sent: Option<String>,
    pub(super) last_ext_recv: Option<String>,
}

impl Default for Peer {
    fn default() -> Self {
        Peer {
            window: usize::MAX,
            deferred: VecDeque::new(),
            synced: false,
            remote_fork: 0,
            remote_length: 0,
            remote_can_upgrade: false,
            remote_has_manifest: false,
            remote_allow_push: false,
            remote_downloading: true,
            pushed_length: 0,
            no_seeks: false,
            manifest_asked: false,
            length_acked: 0,
            can_upgrade: false,
            last_upgradable: None,
            remote_contig: 0,
            remote_bitfield: RemoteBitfield::default(),
            remote_wants: RemoteWants::default(),
            wants_sent: BTreeSet::new(),
            inflight: 0,
            paused: false,
            invalid_requests: 0,
            invalid_data: 0,
            backoffs: 0,
            timeouts: 0,
            fully_signaled: 0,
            last_ext_sent: None,
            last_ext_recv: None,
        }
    }
}

impl Peer {
    pub(super) fn has_block(&self, index: u64) -> bool {
        index < self.remote_contig || self.remote_bitfield.get(index)
    }
}

impl<S: Storage> Replicator<S> {
    /// A peer's channel opened (capability checked): sends our `sync` and, if we hold a contiguous
    /// prefix, `range{0, contiguous}`.
    pub fn add_peer(&mut self) -> PeerId {
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        self.peers.insert(id, Peer::default());
        if self.frozen {
            return id;
        }
        self.send_sync(id);
        let contig = self.core.contiguous_length().min(self.core.length());
        if contig > 0 {
            self.broadcast_range(id, 0, contig, false);
        }
        id
    }

    /// Record the `seeks` flag of the peer's channel handshake (assumed set until told
    /// otherwise; every JS peer sets it). Seek requests to a peer without it carry no `seek`.
    pub fn set_remote_seeks(&mut self, peer: PeerId, seeks: bool) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.no_seeks = !seeks;
        }
    }

    /// The peer's channel closed: forget it and move its requests to other peers.
    pub async fn remove_peer(&mut self, now: u64, peer: PeerId) -> Result<(), ReplicationError> {
        self.drop_peer(peer);
        self.update(now).await
    }

    /// Set how many bytes of answers (to its requests and `want`s) we may still queue for
    /// `peer`: the owner's send buffer room for the peer's stream (unlimited until set; 0: the
    /// stream is congested). Answers use the window up; while it is used up, requests and
    /// `want`s wait, in order (JS holds them until the protomux stream drains), at most
    /// [`MAX_DEFERRED`] of them: a peer that keeps more waiting while it does not read our
    /// answers is disconnected ([`ReplicationError::TooManyDeferred`]). Waiting ones are
    /// answered here as far as the new window reaches. Other messages are always handled.
    pub async fn set_window(
        &mut self,
        now: u64,
        peer: PeerId,
        window: usize,
    ) -> Result<(), ReplicationError> {
        let Some(p) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        p.window = window;
        if self.frozen {
            p.deferred.clear();
        }
        while let Some(msg) = self
            .peers
            .get_mut(&peer)
            .filter(|p| p.window > 0)
            .and_then(|p| p.deferred.pop_front())
        {
            self.answer(now, peer, msg).await?;
        }
        Ok(())
    }

    /// Requests and `want`s of `peer` waiting for window ([`Replicator::set_window`]).
    pub fn deferred(&self, peer: PeerId) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.deferred.len())
    }

    /// Answer a request or `want` of `peer` and take the answers' size off its window.
    async fn answer(
        &mut self,
        now: u64,
        peer: PeerId,
        msg: Message,
    ) -> Result<(), ReplicationError> {
        let before = self.transmits.len();
        match msg {
            Message::Request(m) => self.on_request(now, peer, m).await?,
            Message::Want(w) => self.on_want(peer, w),
            _ => {}
        }
        let used: usize = self
            .transmits
            .iter()
            .skip(before)
            .filter(|t| t.0 == peer)
            .map(|t| t.1.encoded_len())
            .sum();
        if let Some(p) = self.peers.get_mut(&peer) {
            p.window = p.window.saturating_sub(used);
        }
        Ok(())
    }

    /// Answer a request or `want` of `peer` now if its window allows and none waits before
    /// it, else queue it.
    pub(super) async fn answer_or_defer(
        &mut self,
        now: u64,
        peer: PeerId,
        msg: Message,
    ) -> Result<(), ReplicationError> {
        let Some(p) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        if p.window > 0 && p.deferred.is_empty() {
            return self.answer(now, peer, msg).await;
        }
        if p.deferred.len() >= MAX_DEFERRED {
            self.disconnect(peer, ReplicationError::TooManyDeferred);
            return Ok(());
        }
        p.deferred.push_back(msg);
        Ok(())
    }

    /// Forget a peer without rescheduling its requests yet (they move to other peers on the next
    /// message or timeout). For owners that cannot await, e.g. when a whole stream dies.
    pub fn forget_peer(&mut self, peer: PeerId) {
        self.drop_peer(peer);
    }

    fn drop_peer(&mut self, peer: PeerId) {
        self.release_peer(peer);
        self.transmits.retain(|t| t.0 != peer);
    }

    /// Forget a peer but still send what is queued for it.
    pub(super) fn release_peer(&mut self, peer: PeerId) {
        if self.peers.remove(&peer).is_none() {
            return;
        }
        let ids: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, r)| r.peer == peer)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.finish_request(id, false);
        }
        self.delayed.retain(|d| d.1 != peer);
    }

    pub(super) fn disconnect(&mut self, peer: PeerId, error: ReplicationError) {
        self.drop_peer(peer);
        self.events.push_back(Event::Disconnect { peer, error });
    }

    /// Register an extension: its messages from peers are reported as [`Event::Extension`].
    pub fn register_extension(&mut self, name: impl Into<String>) {
        self.extensions.insert(name.into());
    }

    /// Send an extension message to one peer.
    pub fn send_extension(
        &mut self,
        peer: PeerId,
        name: &str,
        message: &[u8],
    ) -> Result<(), ReplicationError> {
        let p = self
            .peers
            .get_mut(&peer)
            .ok_or(ReplicationError::UnknownPeer(peer))?;
        let wire_name = if p.last_ext_sent.as_deref() == Some(name) {
            String::new()
        } else {
            name.to_owned()
        };
        p.last_ext_sent = Some(name.to_owned());
        self.transmits.push_back((
            peer,
            Message::Extension(Extension {
                name: wire_name,
                message: message.to_vec(),
            }),
        ));
        Ok(())
    }

    /// Send an extension message to every peer.
    pub fn broadcast_extension(&mut self, name: &str, message: &[u8]) {
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for p in peers {
            // Every listed peer exists.
            let _ = self.send_extension(p, name, message);
        }
    }

    pub(super) fn on_extension(&mut self, peer: PeerId, e: Extension) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let name = if e.name.is_empty() {
            match &p.last_ext_recv {
                Some(n) => n.clone(),
                None => return,
            }
        } else {
            e.name
        };
        p.last_ext_recv = Some(name.clone());
        if self.extensions.contains(&name) {
            self.events.push_back(Event::Extension {
                peer,
                name,
                message: e.message,
            });
        }
    }
}
