//! protomux-wakeup 2.9.0: peers of a topic tell each other which writers have new blocks.
//!
//! Autobase 7.28.1 opens, beside the cores it replicates, one `wakeup` channel per base on every
//! connection (`base.replicate(stream)` → `wakeupProtocol.addStream`). Its id is the topic
//! (the base's discovery key), its handshake proves knowledge of the capability (the base key)
//! bound to the connection's Noise handshake hash, and its messages are:
//! * `announce` (type 1): writers and their lengths the sender wants us to fetch (JS autobase
//!   feeds them to `hintWakeup`; it is how a member hears of a writer it does not know, such as
//!   an optimistic non-member);
//! * `lookup` (type 0): "announce to me" (autobase answers with its unflushed writers);
//! * `info` (type 2): the sender's topic became active or inactive.
//!
//! [`WakeupSession`] is the state of one topic over any number of peers (one per connection),
//! sans-IO like the other engines: it does not own the protomux. The owner opens the channel
//! with the options from [`WakeupSession::add_peer`], hands in the channel's open
//! ([`WakeupSession::handle_open`]), messages ([`WakeupSession::handle_message`]) and close
//! ([`WakeupSession::handle_closed`]), sends what [`WakeupSession::poll_output`] gives and
//! reacts to [`WakeupSession::poll_event`] (the JS session handlers). What autobase does on each
//! event is [`crate::autobase::wakeup`].
//!
//! Messages are encoded as JS encodes them ([`messages`], tested against bytes from
//! `tests/interop/wakeup-vectors.js`). Hostile input gives a [`WakeupError`]: JS destroys the
//! whole connection on a message that does not decode; the owner here closes the wakeup channel
//! ([`Output::Close`]) and keeps the rest of the connection.

pub mod messages;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;

use crate::crypto::{discovery_key, hash_batch, namespace};
use crate::encoding::{Decode, DecodeError, Encode};
use crate::protomux::ChannelOptions;

pub use messages::{Announce, Handshake, Info, Lookup, Message, WakeupWriter};

/// The protomux protocol name of the channel.
pub const PROTOCOL: &str = "wakeup";

/// Why a peer's input was refused. The peer's channel is closed ([`Output::Close`]) on each.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WakeupError {
    /// The handshake or a message does not decode.
    #[error("malformed wakeup message: {0}")]
    Decode(#[from] DecodeError),
    /// The handshake's capability proof is not the one for this topic and connection (JS closes
    /// the channel).
    #[error("wakeup handshake proves another capability")]
    InvalidCapability,
    /// Input for a peer that was never added, or is gone.
    #[error("unknown wakeup peer")]
    UnknownPeer,
    /// A message before the channel opened.
    #[error("wakeup message before the channel opened")]
    NotOpen,
}

/// The capability proof one side sends in its handshake (JS `_makeCapability`):
/// `hash(ns[initiator ? 0 : 1] ‖ capability ‖ handshake_hash)` with `ns = namespace('wakeup', 2)`.
pub fn capability_proof(
    is_initiator: bool,
    capability: &[u8; 32],
    handshake_hash: &[u8; 64],
) -> [u8; 32] {
    let ns = namespace(b"wakeup", 2);
    let n = if is_initiator { &ns[0] } else { &ns[1] };
    hash_batch(&[n, capability, handshake_hash])
}

/// What the owner must do on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<P> {
    /// Send `payload` as `message_type` on the peer's wakeup channel.
    Send {
        /// The peer.
        peer: P,
        /// Protomux message type ([`Message::message_type`]).
        message_type: u64,
        /// The encoded message.
        payload: Vec<u8>,
    },
    /// Close the peer's wakeup channel (bad capability or bad input); the peer is forgotten.
    Close {
        /// The peer.
        peer: P,
    },
}

/// What happened, for the owner (JS session handlers `onpeeradd`, `onpeeractive`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeupEvent<P> {
    /// The peer's channel opened with a valid capability (`onpeeradd`).
    PeerAdded {
        /// The peer.
        peer: P,
    },
    /// The peer's topic is active (`onpeeractive`: at open, or on an `info`).
    PeerActive {
        /// The peer.
        peer: P,
    },
    /// The peer's topic went inactive, or the active peer left (`onpeerinactive`).
    PeerInactive {
        /// The peer.
        peer: P,
    },
    /// The peer left (`onpeerremove`).
    PeerRemoved {
        /// The peer.
        peer: P,
    },
    /// The peer announced writers (`onannounce`).
    Announce {
        /// The peer.
        peer: P,
        /// The writers and lengths, as sent (at most [`crate::encoding::MAX_ARRAY_LEN`]).
        writers: Vec<WakeupWriter>,
    },
    /// The peer asked for announces (`onlookup`).
    Lookup {
        /// The peer.
        peer: P,
        /// The hash it asked about, if any.
        hash: Option<[u8; 32]>,
    },
}

#[derive(Debug, Clone)]
struct Peer {
    /// Our role on the connection (the remote proves with the other one).
    is_initiator: bool,
    handshake_hash: [u8; 64],
    /// The channel has not opened yet (JS `pending`).
    pending: bool,
    /// The remote's topic is active.
    active: bool,
}

/// Messages and peers counted as JS `stats` counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WakeupStats {
    /// Announces received.
    pub announce_rx: u64,
    /// Announces sent.
    pub announce_tx: u64,
    /// Lookups received.
    pub lookup_rx: u64,
    /// Lookups sent.
    pub lookup_tx: u64,
    /// Infos received.
    pub info_rx: u64,
    /// Infos sent.
    pub info_tx: u64,
}

/// One wakeup topic (JS `WakeupTopic` with its sessions' activity folded into one flag) over
/// peers named by `P` (the owner's connection handle). See the [module docs](self).
#[derive(Debug, Clone)]
pub struct WakeupSession<P: Ord + Copy> {
    capability: [u8; 32],
    id: [u8; 32],
    active: bool,
    peers: BTreeMap<P, Peer>,
    active_peers: usize,
    out: VecDeque<Output<P>>,
    events: VecDeque<WakeupEvent<P>>,
    stats: WakeupStats,
}

impl<P: Ord + Copy> WakeupSession<P> {
    /// A topic for `capability` (autobase: the base key). Its channel id is `discovery_key`, or
    /// the discovery key of the capability when `None` (JS `handlers.discoveryKey ||
    /// crypto.discoveryKey(capability)`). `active` is JS's session `active` (autobase: true).
    pub fn new(capability: [u8; 32], discovery_key: Option<[u8; 32]>, active: bool) -> Self {
        WakeupSession {
            capability,
            id: discovery_key.unwrap_or_else(|| crate::crypto::discovery_key(&capability)),
            active,
            peers: BTreeMap::new(),
            active_peers: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: WakeupStats::default(),
        }
    }

    /// The topic id (the channel id on the wire).
    pub fn id(&self) -> &[u8; 32] {
        &self.id
    }

    /// The capability.
    pub fn capability(&self) -> &[u8; 32] {
        &self.capability
    }

    /// Whether our topic is active.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Message counters.
    pub fn stats(&self) -> WakeupStats {
        self.stats
    }

    /// A connection to open the topic on (JS `_onopen`): `is_initiator` is our Noise role and
    /// `handshake_hash` the Noise handshake hash. Returns the options to open the channel with
    /// (protocol, id, handshake with our proof and activity, three message types), or `None` if
    /// the peer is already there (JS opens one channel per stream and topic).
    pub fn add_peer(
        &mut self,
        peer: P,
        is_initiator: bool,
        handshake_hash: [u8; 64],
    ) -> Option<ChannelOptions> {
        if self.peers.contains_key(&peer) {
            return None;
        }
        self.peers.insert(
            peer,
            Peer {
                is_initiator,
                handshake_hash,
                pending: true,
                active: false,
            },
        );
        let hs = Handshake {
            version: 0,
            capability: capability_proof(is_initiator, &self.capability, &handshake_hash),
            active: self.active,
        };
        Some(
            ChannelOptions::new(PROTOCOL)
                .id(self.id.to_vec())
                .handshake(hs.to_bytes())
                .message_types(Message::TYPES),
        )
    }

    /// The peer's channel opened; `handshake` is the remote's open payload (JS `onchannelopen`
    /// → `_addPeer`). A proof for another capability or connection closes the channel.
    pub fn handle_open(&mut self, peer: P, handshake: &[u8]) -> Result<(), WakeupError> {
        let p = self.peers.get(&peer).ok_or(WakeupError::UnknownPeer)?;
        let expected = capability_proof(!p.is_initiator, &self.capability, &p.handshake_hash);
        let hs = match Handshake::from_bytes(handshake) {
            Ok(hs) => hs,
            Err(e) => return Err(self.refuse(peer, e.into())),
        };
        if hs.capability != expected {
            return Err(self.refuse(peer, WakeupError::InvalidCapability));
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return Err(WakeupError::UnknownPeer);
        };
        if !p.pending {
            return Ok(());
        }
        p.pending = false;
        p.active = hs.active;
        self.events.push_back(WakeupEvent::PeerAdded { peer });
        if hs.active {
            self.active_peers += 1;
            self.events.push_back(WakeupEvent::PeerActive { peer });
        }
        Ok(())
    }

    /// A message on the peer's channel (`message_type` and payload as protomux delivers them).
    /// Types past the three known are ignored, as protomux does.
    pub fn handle_message(
        &mut self,
        peer: P,
        message_type: u64,
        payload: &[u8],
    ) -> Result<(), WakeupError> {
        let p = self.peers.get(&peer).ok_or(WakeupError::UnknownPeer)?;
        if p.pending {
            return Err(self.refuse(peer, WakeupError::NotOpen));
        }
        let msg = match Message::decode(message_type, payload) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => return Err(self.refuse(peer, e.into())),
        };
        match msg {
            Message::Lookup(l) => {
                self.stats.lookup_rx += 1;
                self.events
                    .push_back(WakeupEvent::Lookup { peer, hash: l.hash });
            }
            Message::Announce(a) => {
                self.stats.announce_rx += 1;
                self.events
                    .push_back(WakeupEvent::Announce { peer, writers: a.0 });
            }
            Message::Info(i) => {
                self.stats.info_rx += 1;
                self.set_peer_active(peer, i.active);
            }
        }
        Ok(())
    }

    /// The peer's channel closed, or its connection ended (JS `_removePeer`).
    pub fn handle_closed(&mut self, peer: P) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        if p.pending {
            return;
        }
        if p.active {
            self.active_peers -= 1;
            self.events.push_back(WakeupEvent::PeerInactive { peer });
        }
        self.events.push_back(WakeupEvent::PeerRemoved { peer });
    }

    /// Announce `writers` to the peer (JS `session.announce`; like `announceByStream`, only once
    /// its channel opened). Returns whether it was queued.
    pub fn announce(&mut self, peer: P, writers: &[WakeupWriter]) -> bool {
        if !self.is_open(peer) {
            return false;
        }
        self.stats.announce_tx += 1;
        self.send(peer, &Message::Announce(Announce(writers.to_vec())));
        true
    }

    /// Ask the peer to announce (JS `session.lookup`).
    pub fn lookup(&mut self, peer: P, hash: Option<[u8; 32]>) -> bool {
        if !self.peers.contains_key(&peer) {
            return false;
        }
        self.stats.lookup_tx += 1;
        self.send(peer, &Message::Lookup(Lookup { hash }));
        true
    }

    /// Ask every peer, opened or not (JS `broadcastLookup`).
    pub fn broadcast_lookup(&mut self, hash: Option<[u8; 32]>) {
        let peers: Vec<P> = self.peers.keys().copied().collect();
        for p in peers {
            self.lookup(p, hash);
        }
    }

    /// Make our topic active or inactive; every peer is told with an `info` (JS
    /// `_updateActive`).
    pub fn set_active(&mut self, active: bool) {
        if self.active == active {
            return;
        }
        self.active = active;
        let peers: Vec<P> = self.peers.keys().copied().collect();
        for p in peers {
            self.stats.info_tx += 1;
            self.send(p, &Message::Info(Info { active }));
        }
    }

    /// The peers whose channel opened.
    pub fn peers(&self) -> impl Iterator<Item = P> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| !p.pending)
            .map(|(k, _)| *k)
    }

    /// Whether the peer's channel opened.
    pub fn is_open(&self, peer: P) -> bool {
        self.peers.get(&peer).is_some_and(|p| !p.pending)
    }

    /// Whether the peer's topic is active.
    pub fn is_peer_active(&self, peer: P) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.active)
    }

    /// Opened peers whose topic is active.
    pub fn active_peers(&self) -> usize {
        self.active_peers
    }

    /// Next wire action.
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.out.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<WakeupEvent<P>> {
        self.events.pop_front()
    }

    fn send(&mut self, peer: P, msg: &Message) {
        self.out.push_back(Output::Send {
            peer,
            message_type: msg.message_type(),
            payload: msg.payload(),
        });
    }

    fn set_peer_active(&mut self, peer: P, active: bool) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.active == active {
            return;
        }
        p.active = active;
        if active {
            self.active_peers += 1;
            self.events.push_back(WakeupEvent::PeerActive { peer });
        } else {
            self.active_peers -= 1;
            self.events.push_back(WakeupEvent::PeerInactive { peer });
        }
    }

    /// Forget the peer, ask the owner to close its channel and give `e` back.
    fn refuse(&mut self, peer: P, e: WakeupError) -> WakeupError {
        self.handle_closed(peer);
        self.out.push_back(Output::Close { peer });
        e
    }
}

/// The topic id JS uses for a capability with no explicit discovery key.
pub fn topic_id(capability: &[u8; 32]) -> [u8; 32] {
    discovery_key(capability)
}
