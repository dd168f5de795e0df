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
//!   [`super::MAX_HINTED`] are held), at most [`MAX_ANNOUNCED_WRITERS`] per announce;
//! * a lookup: we announce our wakeup writers ([`wakeup_writers`]) if there are any (JS
//!   `onlookup`); while the peer's connection is congested (it does not read, through a hub:
//!   [`ReplicationHub::is_congested`], not drained to [`LOW_WATER`]) the lookup waits, at most one per peer, and is answered
//!   once it drained ([`AutobaseWakeup::handle_events_with`]), so a peer that sends lookups and
//!   never reads cannot grow what we queue;
//! * a peer becoming active, and whenever our wakeup writers change ([`AutobaseWakeup::refresh`]):
//!   we announce them to the opened peers that were not told this list yet and (through a hub,
//!   [`HubWakeup::refresh`]) whose connection does not replicate every one of those writers'
//!   cores already. JS announces from its `CoreCoupler` when a connection replicates the system
//!   core but not one of the writers with unindexed nodes; here the system core's channel is not
//!   required (a reader that holds no system core is told too).
//!
//! Two differences from JS, on purpose:
//! * an announce during a fast-forward is hinted at once (JS sets `_needsWakeupRequest` and
//!   looks up after the fast-forward instead): here the fast-forward is a decision of the driver
//!   ([`super::fast_forward`]), which the engine does not see, and a hint is harmless there (a
//!   stale one is dropped, a non-member's is bounded, [`Autobase::hint_writer_length`]); the
//!   driver broadcasts a lookup after the fast-forward as JS does
//!   ([`AutobaseWakeup::broadcast_lookup`]).
//! * we announce the writers' loaded length (nodes whose blocks we hold), JS `_getWakeup` the
//!   linearized one (`w.length`). The engine loads at most a bounded preload past the
//!   linearized nodes and the blocks it holds are there for the peer to fetch; an announce is a
//!   hint, and a length past what the peer can fetch from us is only wanted later.

use std::collections::{BTreeMap, BTreeSet};

use super::base::{Apply, Autobase};
use crate::crypto::discovery_key;
use crate::protomux::{ChannelId, ChannelOptions, Event as MuxEvent};
use crate::protomux_wakeup::{
    Output, WakeupError, WakeupEvent, WakeupSession, WakeupWriter, PROTOCOL,
};
use crate::replication::{HubEvent, ReplicationError, ReplicationHub, StreamId, LOW_WATER};
use crate::storage::Storage;

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
    /// Peers whose lookup waits for their connection to drain (one each).
    deferred: BTreeSet<P>,
    /// Hints taken from announces (counted for tests and diagnostics).
    pub hints: u64,
}

impl<P: Ord + Copy> AutobaseWakeup<P> {
    /// The topic of the base whose key is `base_key` (JS `wakeupCapability` defaults: the base
    /// key and its discovery key).
    pub fn new(base_key: [u8; 32]) -> Self {
        Self::with_capability(base_key, discovery_key(&base_key))
    }

    /// The topic of JS `wakeupCapability: { key, discoveryKey }` (a base that shares its wakeup
    /// topic with others).
    pub fn with_capability(key: [u8; 32], discovery_key: [u8; 32]) -> Self {
        AutobaseWakeup {
            session: WakeupSession::new(key, Some(discovery_key), true),
            announced: BTreeMap::new(),
            deferred: BTreeSet::new(),
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
        self.deferred.remove(&peer);
    }

    /// React to the session's events with `base` (see the [module docs](self)). Returns the
    /// writers hinted to the engine (each `(key, length)`), for the driver to log or fetch.
    pub fn handle_events<A: Apply>(&mut self, base: &mut Autobase<A>) -> Vec<WakeupWriter> {
        self.handle_events_with(base, |_| true)
    }

    /// [`AutobaseWakeup::handle_events`], answering a peer's lookup only while
    /// `can_send(peer)` (its connection is not congested): otherwise it waits, coalesced with
    /// the peer's later lookups, until [`AutobaseWakeup::answer_deferred`] finds it can send.
    pub fn handle_events_with<A: Apply>(
        &mut self,
        base: &mut Autobase<A>,
        can_send: impl Fn(P) -> bool,
    ) -> Vec<WakeupWriter> {
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
                    if can_send(peer) {
                        self.deferred.remove(&peer);
                        self.answer_lookup(base, peer);
                    } else {
                        self.deferred.insert(peer);
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

    fn answer_lookup<A: Apply>(&mut self, base: &Autobase<A>, peer: P) {
        let writers = wakeup_writers(base);
        if !writers.is_empty() && self.session.announce(peer, &writers) {
            self.announced.insert(peer, writers);
        }
    }

    /// Answer the waiting lookups ([`AutobaseWakeup::handle_events_with`]) of the peers we can
    /// send to now.
    pub fn answer_deferred<A: Apply>(&mut self, base: &Autobase<A>, can_send: impl Fn(P) -> bool) {
        let ready: Vec<P> = self
            .deferred
            .iter()
            .copied()
            .filter(|&p| can_send(p))
            .collect();
        for peer in ready {
            self.deferred.remove(&peer);
            self.answer_lookup(base, peer);
        }
    }

    /// Peers whose lookup waits for their connection to drain.
    pub fn deferred_lookups(&self) -> usize {
        self.deferred.len()
    }

    /// Announce our wakeup writers to every opened peer that was not told this list yet (call
    /// after the engine changed: an append, an update).
    pub fn refresh<A: Apply>(&mut self, base: &Autobase<A>) {
        self.refresh_with(base, |_, _| false);
    }

    /// [`AutobaseWakeup::refresh`], skipping the peers that replicate every writer to announce
    /// already (`replicates(peer, key)`: the writer's core channel is open on the peer's
    /// connection; those blocks reach it by hypercore), as JS's `CoreCoupler` announces only to
    /// a connection missing one of them.
    pub fn refresh_with<A: Apply>(
        &mut self,
        base: &Autobase<A>,
        replicates: impl Fn(P, &[u8; 32]) -> bool,
    ) {
        let writers = wakeup_writers(base);
        if writers.is_empty() {
            return;
        }
        let peers: Vec<P> = self.session.peers().collect();
        for peer in peers {
            if self.announced.get(&peer) == Some(&writers)
                || writers.iter().all(|w| replicates(peer, &w.key))
            {
                continue;
            }
            if self.session.announce(peer, &writers) {
                self.announced.insert(peer, writers.clone());
            }
        }
    }

    /// Ask every peer to announce (JS `broadcastLookup`, which autobase sends after a
    /// fast-forward; a peer answers with its wakeup writers).
    pub fn broadcast_lookup(&mut self) {
        self.session.broadcast_lookup(None);
    }

    /// Next wire action ([`WakeupSession::poll_output`]).
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        let o = self.session.poll_output();
        if let Some(Output::Close { peer }) = &o {
            self.announced.remove(peer);
            self.deferred.remove(peer);
        }
        o
    }
}

/// Whether `stream` cannot take more from us now: congested and not drained to [`LOW_WATER`]
/// since (when the hub answers its peers' requests again).
fn congested<S: Storage>(hub: &ReplicationHub<S>, stream: StreamId) -> bool {
    hub.is_congested(stream) && hub.unsent(stream).is_some_and(|u| u > LOW_WATER)
}

/// [`AutobaseWakeup`] on the streams of a [`ReplicationHub`] (or a corestore's,
/// [`crate::corestore::Corestore::hub_mut`]): one wakeup channel per stream beside the cores, as
/// JS `base.replicate(stream)` opens it. The driver calls [`HubWakeup::attach`] once, hands
/// every hub event to [`HubWakeup::handle_hub_event`] and calls [`HubWakeup::refresh`] after
/// the engine changed.
#[derive(Debug, Clone)]
pub struct HubWakeup {
    wakeup: AutobaseWakeup<StreamId>,
    channels: BTreeMap<StreamId, ChannelId>,
    /// Each stream's role and handshake hash, to open our channel again when the remote does.
    streams: BTreeMap<StreamId, (bool, [u8; 64])>,
}

impl HubWakeup {
    /// The wakeup topic of the base whose key is `base_key`.
    pub fn new(base_key: [u8; 32]) -> Self {
        Self::from_topic(AutobaseWakeup::new(base_key))
    }

    /// The given topic ([`AutobaseWakeup::with_capability`]) on the hub's streams.
    pub fn from_topic(wakeup: AutobaseWakeup<StreamId>) -> Self {
        HubWakeup {
            wakeup,
            channels: BTreeMap::new(),
            streams: BTreeMap::new(),
        }
    }

    /// The topic's state.
    pub fn wakeup(&self) -> &AutobaseWakeup<StreamId> {
        &self.wakeup
    }

    /// Pair the `wakeup` protocol on the hub's streams; the streams there and to come are
    /// reported ([`HubEvent::StreamAdded`]) and get our channel.
    pub fn attach<S: Storage>(&self, hub: &mut ReplicationHub<S>) {
        hub.pair_protocol(PROTOCOL);
    }

    /// Act on one hub event (others are ignored): open our channel on a new stream, answer the
    /// remote's opens, hand the channel's open, messages and close to the topic, then react
    /// with `base` (hints, announces) and send. Returns the writers hinted to the engine.
    /// Errors are the hub's (an unknown stream, a destroyed mux); the remote's bad input only
    /// closes its wakeup channel.
    pub async fn handle_hub_event<S: Storage, A: Apply>(
        &mut self,
        now: u64,
        hub: &mut ReplicationHub<S>,
        base: &mut Autobase<A>,
        event: &HubEvent,
    ) -> Result<Vec<WakeupWriter>, ReplicationError> {
        match event {
            HubEvent::StreamAdded {
                stream,
                is_initiator,
                handshake_hash,
            } => {
                if hub.has_stream(*stream) {
                    self.streams
                        .insert(*stream, (*is_initiator, *handshake_hash));
                    self.open(now, hub, *stream).await?;
                }
            }
            HubEvent::StreamClosed { stream, .. } => {
                self.streams.remove(stream);
                return Ok(Vec::new());
            }
            HubEvent::Other { stream, event } => match event {
                MuxEvent::PairRequest { protocol, id, .. } if protocol == PROTOCOL => {
                    // The remote opens our topic again after closing it (a JS peer that closed
                    // and reopened its Autobase on this connection): open ours anew
                    // (protomux-wakeup `_onpair` for a known topic). Another topic, or our topic
                    // while our channel is there (it pairs with the remote's open without
                    // asking), has nobody here (JS `onwakeup` for an unknown topic).
                    let ours = id.as_deref() == Some(&self.wakeup.session().id()[..]);
                    if !(ours
                        && !self.channels.contains_key(stream)
                        && self.open(now, hub, *stream).await?)
                    {
                        let _ = hub.reject_other(*stream, protocol, id.as_deref());
                    }
                }
                MuxEvent::ChannelOpened { channel, handshake } => {
                    if self.channels.get(stream) == Some(channel) {
                        let _ = self.wakeup.handle_open(*stream, handshake);
                    }
                }
                MuxEvent::Message {
                    channel,
                    message_type,
                    payload,
                } => {
                    if self.channels.get(stream) == Some(channel) {
                        let _ = self.wakeup.handle_message(*stream, *message_type, payload);
                    }
                }
                MuxEvent::ChannelClosed { channel, .. } | MuxEvent::ChannelRejected { channel } => {
                    if self.channels.get(stream) == Some(channel) {
                        self.channels.remove(stream);
                        self.wakeup.handle_closed(*stream);
                    }
                }
                MuxEvent::PairRequest { .. } => {}
            },
            _ => return Ok(Vec::new()),
        }
        let hinted = self.wakeup.handle_events_with(base, |s| !congested(hub, s));
        self.flush(hub);
        self.wakeup.answer_deferred(base, |s| !congested(hub, s));
        self.flush(hub);
        Ok(hinted)
    }

    /// Open our channel on `stream` if it has none (its peer added to the topic). Returns
    /// whether it opened one.
    async fn open<S: Storage>(
        &mut self,
        now: u64,
        hub: &mut ReplicationHub<S>,
        stream: StreamId,
    ) -> Result<bool, ReplicationError> {
        let Some(&(is_initiator, handshake_hash)) = self.streams.get(&stream) else {
            return Ok(false);
        };
        if self.channels.contains_key(&stream) || !hub.has_stream(stream) {
            return Ok(false);
        }
        let Some(o) = self.wakeup.add_peer(stream, is_initiator, handshake_hash) else {
            return Ok(false);
        };
        let ch = hub.open_other(now, stream, o).await?;
        self.channels.insert(stream, ch);
        Ok(true)
    }

    /// Announce our wakeup writers where they changed, to the connections that do not
    /// replicate all of them yet ([`AutobaseWakeup::refresh_with`] with
    /// [`ReplicationHub::is_core_open`]).
    pub fn refresh<S: Storage, A: Apply>(
        &mut self,
        hub: &mut ReplicationHub<S>,
        base: &Autobase<A>,
    ) {
        self.wakeup.answer_deferred(base, |s| !congested(hub, s));
        self.wakeup.refresh_with(base, |stream, key| {
            hub.is_core_open(stream, &discovery_key(key))
        });
        self.flush(hub);
    }

    /// Ask every peer to announce ([`AutobaseWakeup::broadcast_lookup`]).
    pub fn broadcast_lookup<S: Storage>(&mut self, hub: &mut ReplicationHub<S>) {
        self.wakeup.broadcast_lookup();
        self.flush(hub);
    }

    fn flush<S: Storage>(&mut self, hub: &mut ReplicationHub<S>) {
        while let Some(o) = self.wakeup.poll_output() {
            match o {
                Output::Send {
                    peer,
                    message_type,
                    payload,
                } => {
                    if let Some(&ch) = self.channels.get(&peer) {
                        let _ = hub.send_other(peer, ch, message_type, &payload);
                    }
                }
                Output::Close { peer } => {
                    if let Some(ch) = self.channels.remove(&peer) {
                        let _ = hub.close_other(peer, ch);
                    }
                }
            }
        }
    }
}
