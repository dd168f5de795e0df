//! What an autobase does with its wakeup topic (JS autobase 7.28.1 `WakeupHandler`,
//! `_getWakeup`, `hintWakeup`), over the protocol engine [`crate::protomux_wakeup`].
//!
//! [`AutobaseWakeup`] owns the base's [`WakeupSession`] (capability: the base key, id: its
//! discovery key, active). The driver feeds it the channel's opens, messages and closes as for
//! the session, then calls [`AutobaseWakeup::handle_events`] with the engine and
//! [`AutobaseWakeup::refresh`] after each update; it sends what [`AutobaseWakeup::poll_output`]
//! gives. On each event:
//! * an announce from a peer: each writer is hinted with its length
//!   ([`Autobase::hint_writer_length`]: stale hints are dropped, at most
//!   [`super::base::MAX_HINTED`] are held), at most [`MAX_ANNOUNCED_WRITERS`] per announce;
//! * a lookup: we announce our wakeup writers ([`wakeup_writers`]) if there are any (JS
//!   `onlookup`);
//! * a peer becoming active, and whenever our wakeup writers change ([`AutobaseWakeup::refresh`]):
//!   we announce them to every opened peer. JS announces from its `CoreCoupler`, to a connection
//!   that replicates the system core but not yet one of the writers with unindexed nodes; here
//!   the announce goes to every peer of the topic when the list changes, which says the same
//!   (JS only hints from it) at the cost of a few more messages.

use std::collections::BTreeMap;

use super::base::{Apply, Autobase};
use crate::crypto::discovery_key;
use crate::protomux::ChannelOptions;
use crate::protomux_wakeup::{Output, WakeupError, WakeupEvent, WakeupSession, WakeupWriter};

/// Writers of one announce that are hinted; the rest are dropped (a peer cannot make us walk
/// a million keys per message).
pub const MAX_ANNOUNCED_WRITERS: usize = 256;

/// The writers to announce (JS `_getWakeup`): every writer the engine linearizes that is not an
/// indexer and has nodes not yet indexed, with the nodes it has (JS skips active indexers and
/// `flushed()` writers, whose nodes are all indexed).
pub fn wakeup_writers<A: Apply>(base: &Autobase<A>) -> Vec<WakeupWriter> {
    base.writer_states()
        .into_iter()
        .filter(|&(_, indexed, _, loaded, _, indexer)| !indexer && loaded > indexed)
        .map(|(key, _, _, loaded, _, _)| WakeupWriter {
            key,
            length: loaded,
        })
        .collect()
}

/// A base's wakeup topic and JS's reactions to it; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct AutobaseWakeup<P: Ord + Copy> {
    session: WakeupSession<P>,
    /// Per opened peer, what we last announced to it.
    announced: BTreeMap<P, Vec<WakeupWriter>>,
    /// Hints taken from announces (counted for tests and diagnostics).
    pub hints: u64,
}

impl<P: Ord + Copy> AutobaseWakeup<P> {
    /// The topic of the base whose key is `base_key` (JS `wakeupCapability` defaults: the base
    /// key and its discovery key).
    pub fn new(base_key: [u8; 32]) -> Self {
        AutobaseWakeup {
            session: WakeupSession::new(base_key, Some(discovery_key(&base_key)), true),
            announced: BTreeMap::new(),
            hints: 0,
        }
    }

    /// The protocol session (for its peers and stats).
    pub fn session(&self) -> &WakeupSession<P> {
        &self.session
    }

    /// A connection: the options to open the wakeup channel on it ([`WakeupSession::add_peer`]).
    pub fn add_peer(
        &mut self,
        peer: P,
        is_initiator: bool,
        handshake_hash: [u8; 64],
    ) -> Option<ChannelOptions> {
        self.session.add_peer(peer, is_initiator, handshake_hash)
    }

    /// The peer's channel opened ([`WakeupSession::handle_open`]).
    pub fn handle_open(&mut self, peer: P, handshake: &[u8]) -> Result<(), WakeupError> {
        self.session.handle_open(peer, handshake)
    }

    /// A message on the peer's channel ([`WakeupSession::handle_message`]).
    pub fn handle_message(
        &mut self,
        peer: P,
        message_type: u64,
        payload: &[u8],
    ) -> Result<(), WakeupError> {
        self.session.handle_message(peer, message_type, payload)
    }

    /// The peer's channel closed or its connection ended.
    pub fn handle_closed(&mut self, peer: P) {
        self.session.handle_closed(peer);
        self.announced.remove(&peer);
    }

    /// React to the session's events with `base` (see the [module docs](self)). Returns the
    /// writers hinted to the engine (each `(key, length)`), for the driver to log or fetch.
    pub fn handle_events<A: Apply>(&mut self, base: &mut Autobase<A>) -> Vec<WakeupWriter> {
        let mut hinted = Vec::new();
        while let Some(ev) = self.session.poll_event() {
            match ev {
                WakeupEvent::Announce { writers, .. } => {
                    for w in writers.into_iter().take(MAX_ANNOUNCED_WRITERS) {
                        if base.hint_writer_length(&w.key, w.length) {
                            self.hints += 1;
                            hinted.push(w);
                        }
                    }
                }
                WakeupEvent::Lookup { peer, .. } => {
                    let writers = wakeup_writers(base);
                    if !writers.is_empty() {
                        self.session.announce(peer, &writers);
                        self.announced.insert(peer, writers);
                    }
                }
                WakeupEvent::PeerActive { peer } => {
                    let writers = wakeup_writers(base);
                    if !writers.is_empty() && self.session.announce(peer, &writers) {
                        self.announced.insert(peer, writers);
                    }
                }
                WakeupEvent::PeerAdded { .. }
                | WakeupEvent::PeerInactive { .. }
                | WakeupEvent::PeerRemoved { .. } => {}
            }
        }
        hinted
    }

    /// Announce our wakeup writers to every opened peer that was not told this list yet (call
    /// after the engine changed: an append, an update).
    pub fn refresh<A: Apply>(&mut self, base: &Autobase<A>) {
        let writers = wakeup_writers(base);
        if writers.is_empty() {
            return;
        }
        let peers: Vec<P> = self.session.peers().collect();
        for peer in peers {
            if self.announced.get(&peer) == Some(&writers) {
                continue;
            }
            if self.session.announce(peer, &writers) {
                self.announced.insert(peer, writers.clone());
            }
        }
    }

    /// Next wire action ([`WakeupSession::poll_output`]).
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        let o = self.session.poll_output();
        if let Some(Output::Close { peer }) = &o {
            self.announced.remove(peer);
        }
        o
    }
}
