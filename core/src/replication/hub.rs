//! [`ReplicationHub`]: replicators of many cores over many protomux streams.
//!
//! The transport runs one secret-stream per connection and hands the hub each decrypted message
//! ([`ReplicationHub::handle_frame`]); it encrypts and writes what
//! [`ReplicationHub::poll_transmit`] returns. Per stream the hub owns a
//! [`Protomux`] and, for every core, a `hypercore/alpha` channel (alias `hypercore`, id = the
//! discovery key, handshake `{seeks: true, capability}` with the capability of our role). When
//! the remote's open arrives its capability is checked against the remote's role; a wrong one
//! closes the channel ([`HubEvent::ChannelClosed`] with [`ReplicationError::InvalidCapability`]).
//! Open channels are peers of the core's [`Replicator`].
//!
//! Opens from the remote (JS pairs `hypercore/alpha` with any id, `corestore.replicate`):
//! an open for a core the hub replicates but has no channel for on that stream (say, the remote
//! rejected ours earlier and has the core now) is answered at once. An open for a core the hub
//! does not replicate is rejected, unless the owner asked to hear of them
//! ([`ReplicationHub::set_answer_unknown`], what a corestore does): then it waits (the
//! remote's messages on it buffered) and [`HubEvent::UnknownCore`] asks the owner to look for
//! the core, which answers with [`ReplicationHub::accept_core`] (the core is replicated from
//! then on, and the waiting opens are answered) or [`ReplicationHub::reject_unknown`].
//!
//! A protocol violation (bad protomux frame, undecodable message, a peer disconnected by its
//! replicator) destroys the stream: [`HubEvent::StreamClosed`] tells the transport to drop the
//! connection. A core whose replicator found a fork conflict ([`ReplicationError::Conflict`])
//! only has its channels closed ([`HubEvent::ChannelClosed`]), after its last messages.
//!
//! Backpressure (JS holds a peer's requests until the protomux stream drains): the hub counts
//! per stream the bytes not yet written, its own queued frames plus the transport's backlog
//! ([`ReplicationHub::set_backlog`]). At [`HIGH_WATER`] the stream is congested: its peers'
//! requests and `want`s wait in their replicator ([`Replicator::set_window`], at most
//! [`MAX_DEFERRED`](super::replicator::MAX_DEFERRED) per peer, beyond that the peer is
//! disconnected) until the stream drained to [`LOW_WATER`]; everything else, answers to our own
//! requests included, is still read and handled, so two peers cannot deadlock each other.
//!
//! Channels of other protocols can run on the same streams (the owner pairs its protocol and
//! opens its channels, [`ReplicationHub::pair_protocol`], in `hub/other.rs`): the hub only
//! routes their events ([`HubEvent::Other`]).
//!
//! (About 1,100 lines: the hub is one object, the channels, streams and replicators of one
//! connection and the routing between them; its tests live in `tests/`. Splitting the routing of
//! frames from the stream bookkeeping is the next cut if it grows.)

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::encoding::{Decode, Encode};
use crate::hypercore::messages::{Handshake, Message};
use crate::hypercore::verifier::capability;
use crate::protomux::{ChannelId, ChannelOptions, Event as MuxEvent, OutFrame, Protomux};
use crate::storage::Storage;

use super::replicator::{Event, PeerId, ReplicationError, Replicator};

mod other;

/// The channel protocol name.
pub const PROTOCOL: &str = "hypercore/alpha";
/// Its alias (older peers).
pub const PROTOCOL_ALIAS: &str = "hypercore";
/// Message types of the channel (sync … extension).
const MESSAGE_TYPES: u64 = 10;
/// A batch frame of [`ReplicationHub::flush`] is closed once it holds this many payload bytes:
/// many small frames instead of one of many megabytes, which the transport would encrypt and
/// write in one piece (and the peer buffer whole before it can decrypt any of it).
const BATCH_BYTES: usize = 64 * 1024;
/// Blocks at least this long go into a frame as they are ([`OutFrame`]), not copied into it.
const PIECE_MIN: usize = 4 * 1024;
/// A stream whose unsent bytes (frames in the hub plus the transport's backlog, see
/// [`ReplicationHub::set_backlog`]) reach this many is congested: the peers' requests and
/// `want`s wait ([`Replicator::set_window`]) until it drains to [`LOW_WATER`].
pub const HIGH_WATER: usize = 4 * 1024 * 1024;
/// A congested stream whose unsent bytes fall to this many answers again.
pub const LOW_WATER: usize = 1024 * 1024;
/// A transport tells [`ReplicationHub::set_backlog`] its backlog when it changed by this many
/// bytes since it last told (or emptied): see [`backlog_report_due`].
pub const BACKLOG_REPORT_STEP: usize = 64 * 1024;

/// Whether a transport holding `backlog` unwritten bytes of a stream, having last told the hub
/// `reported`, should tell it now ([`ReplicationHub::set_backlog`]): when the backlog changed by
/// [`BACKLOG_REPORT_STEP`] or more, or emptied. Often enough for [`HIGH_WATER`] and
/// [`LOW_WATER`] to be seen, rarely enough not to take the hub on every write.
pub fn backlog_report_due(backlog: usize, reported: usize) -> bool {
    backlog.abs_diff(reported) >= BACKLOG_REPORT_STEP || (backlog == 0 && reported != 0)
}

/// Handle of a stream in a [`ReplicationHub`]. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(u64);

impl StreamId {
    /// The raw handle number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// A handle for tests of code that only carries it.
    #[cfg(test)]
    pub(crate) fn from_raw(n: u64) -> Self {
        StreamId(n)
    }
}

/// What happened in a [`ReplicationHub`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// An event of one core's replicator.
    Core {
        /// The core's discovery key.
        discovery_key: [u8; 32],
        /// The event.
        event: Event,
    },
    /// A core's channel on a stream opened: the remote replicates it with us.
    ChannelOpened {
        /// The stream.
        stream: StreamId,
        /// The core's discovery key.
        discovery_key: [u8; 32],
        /// The replicator's peer for this channel.
        peer: PeerId,
    },
    /// A core's channel on a stream closed (by the remote, or by us with `error`).
    ChannelClosed {
        /// The stream.
        stream: StreamId,
        /// The core's discovery key.
        discovery_key: [u8; 32],
        /// Why we closed it, if we did.
        error: Option<ReplicationError>,
    },
    /// The remote opened a channel for a core the hub does not replicate (only with
    /// [`ReplicationHub::set_answer_unknown`]): answer with [`ReplicationHub::accept_core`] or
    /// [`ReplicationHub::reject_unknown`]; until then the remote's messages on it wait.
    UnknownCore {
        /// The stream.
        stream: StreamId,
        /// The discovery key the remote named.
        discovery_key: [u8; 32],
    },
    /// A core the remote asked for ([`HubEvent::UnknownCore`]) is stored but could not be
    /// opened (its storage failed or is corrupt): the open was rejected, the stream goes on.
    /// Emitted by a [`Corestore`](crate::corestore::Corestore).
    CoreOpenFailed {
        /// The stream.
        stream: StreamId,
        /// The core's discovery key.
        discovery_key: [u8; 32],
        /// Why.
        error: ReplicationError,
    },
    /// A stream was added while the owner pairs other protocols
    /// ([`ReplicationHub::pair_protocol`]): it may open its channels on it
    /// ([`ReplicationHub::open_other`]) with our role and the handshake hash (for capabilities).
    StreamAdded {
        /// The stream.
        stream: StreamId,
        /// Our Noise role.
        is_initiator: bool,
        /// The Noise handshake hash.
        handshake_hash: [u8; 64],
    },
    /// An event of a channel of another protocol on a stream: a [`MuxEvent::PairRequest`] for a
    /// protocol the owner pairs (answer with [`ReplicationHub::open_other`] or
    /// [`ReplicationHub::reject_other`]), or the open, messages and close of a channel the owner
    /// opened (a close also when the stream goes).
    Other {
        /// The stream.
        stream: StreamId,
        /// The protomux event.
        event: MuxEvent,
    },
    /// The stream is destroyed (protocol violation); the transport should drop the connection.
    StreamClosed {
        /// The stream.
        stream: StreamId,
        /// Why.
        error: ReplicationError,
    },
}

/// A message on `channel` of a stream whose channels are `channels`, sorted and decoded (see
/// [`Decoded`]).
fn decode_payload(
    channels: &BTreeMap<ChannelId, Chan>,
    other: &BTreeSet<ChannelId>,
    channel: ChannelId,
    message_type: u64,
    payload: &[u8],
) -> Decoded {
    if other.contains(&channel) {
        return Decoded::Other(MuxEvent::Message {
            channel,
            message_type,
            payload: payload.to_vec(),
        });
    }
    let Some(&Chan {
        dk,
        peer: Some(peer),
    }) = channels.get(&channel)
    else {
        return Decoded::Ignored;
    };
    if message_type >= MESSAGE_TYPES {
        return Decoded::Ignored;
    }
    match Message::decode(message_type, payload) {
        Ok(m) => Decoded::Message(dk, peer, m),
        Err(e) => Decoded::Invalid(e.into()),
    }
}

/// A mux event sorted by [`ReplicationHub::decode_message`].
enum Decoded {
    /// A replication message for the core and peer of an open channel.
    Message([u8; 32], PeerId, Message),
    /// A message for no open channel, or of a type we do not know: dropped.
    Ignored,
    /// A message that does not decode: the stream dies.
    Invalid(ReplicationError),
    /// Not a message.
    Other(MuxEvent),
}

#[derive(Debug)]
struct Chan {
    dk: [u8; 32],
    peer: Option<PeerId>,
}

#[derive(Debug)]
struct Stream {
    mux: Protomux,
    is_initiator: bool,
    handshake_hash: [u8; 64],
    channels: BTreeMap<ChannelId, Chan>,
    /// Channels of other protocols the owner opened ([`ReplicationHub::open_other`]).
    other: BTreeSet<ChannelId>,
    /// Payload bytes in the mux's current batch frame (see [`BATCH_BYTES`]).
    corked_bytes: usize,
    /// Bytes of its frames in the hub's queue.
    out_bytes: usize,
    /// Bytes the transport has not written yet, as it last told ([`ReplicationHub::set_backlog`]).
    backlog: usize,
    /// Unsent bytes reached [`HIGH_WATER`] and have not fallen to [`LOW_WATER`] since.
    congested: bool,
}

impl Stream {
    /// Bytes handed to us for this stream and not written yet.
    fn unsent(&self) -> usize {
        self.out_bytes + self.backlog
    }

    /// Bytes of answers its peers may still get: none while congested.
    fn window(&mut self) -> usize {
        if self.congested && self.unsent() <= LOW_WATER {
            self.congested = false;
        }
        if self.congested {
            0
        } else {
            HIGH_WATER.saturating_sub(self.unsent())
        }
    }
}

/// Replicators of many cores over many streams (see the [module docs](self)).
#[derive(Debug)]
pub struct ReplicationHub<S: Storage> {
    cores: BTreeMap<[u8; 32], Replicator<S>>,
    streams: BTreeMap<StreamId, Stream>,
    peers: BTreeMap<([u8; 32], PeerId), (StreamId, ChannelId)>,
    next_stream: u64,
    events: VecDeque<HubEvent>,
    out: VecDeque<(StreamId, OutFrame)>,
    /// Opens for unknown cores are offered to the owner ([`HubEvent::UnknownCore`]).
    answer_unknown: bool,
    /// Opens for unknown cores waiting for the owner's answer.
    unknown: BTreeSet<(StreamId, [u8; 32])>,
    /// Other protocols the owner pairs on every stream ([`ReplicationHub::pair_protocol`]).
    protocols: BTreeSet<String>,
}

impl<S: Storage> Default for ReplicationHub<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Storage> ReplicationHub<S> {
    /// An empty hub.
    pub fn new() -> Self {
        ReplicationHub {
            cores: BTreeMap::new(),
            streams: BTreeMap::new(),
            peers: BTreeMap::new(),
            next_stream: 1,
            events: VecDeque::new(),
            out: VecDeque::new(),
            answer_unknown: false,
            protocols: BTreeSet::new(),
            unknown: BTreeSet::new(),
        }
    }

    /// Whether opens from the remote for cores this hub does not replicate are offered to the
    /// owner as [`HubEvent::UnknownCore`] (`true`) or rejected at once (`false`, the default).
    /// Turning it off rejects the opens still waiting.
    pub fn set_answer_unknown(&mut self, answer: bool) {
        self.answer_unknown = answer;
        if !answer {
            for (sid, dk) in std::mem::take(&mut self.unknown) {
                self.reject_unknown(sid, &dk);
            }
        }
    }

    /// Reject the remote's waiting open of `discovery_key` on `stream` (the answer to a
    /// [`HubEvent::UnknownCore`] for a core the owner does not have). Nothing happens if none
    /// waits.
    pub fn reject_unknown(&mut self, stream: StreamId, discovery_key: &[u8; 32]) {
        self.unknown.remove(&(stream, *discovery_key));
        if let Some(s) = self.streams.get_mut(&stream) {
            // Nothing waits any more (the remote closed it, or the stream died): nothing to do.
            let _ = s.mux.reject(PROTOCOL, Some(discovery_key));
        }
        self.flush();
    }

    /// Replicate a core on every stream, like [`ReplicationHub::add_core`], and answer the
    /// remote's waiting opens of it ([`HubEvent::UnknownCore`]) at once: their channels open
    /// and the messages the remote sent on them meanwhile are handled. Returns its discovery
    /// key.
    pub async fn accept_core(
        &mut self,
        now: u64,
        replicator: Replicator<S>,
    ) -> Result<[u8; 32], ReplicationError> {
        let dk = *replicator.core().discovery_key();
        self.cores.insert(dk, replicator);
        self.unknown.retain(|(_, d)| *d != dk);
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for sid in &ids {
            // A stream whose mux died, or whose remote gave up its open meanwhile, simply does
            // not get the channel.
            let _ = self.open_channel(*sid, dk);
        }
        self.flush();
        for sid in ids {
            self.drain_mux(now, sid).await?;
        }
        self.flush();
        Ok(dk)
    }

    /// Stop replicating a core: its channels on every stream close (the remote sees a close)
    /// and its replicator, with the core, is handed back. `None` if the hub does not have it.
    pub fn remove_core(&mut self, discovery_key: &[u8; 32]) -> Option<Replicator<S>> {
        let rep = self.cores.remove(discovery_key)?;
        for s in self.streams.values_mut() {
            let chans: Vec<ChannelId> = s
                .channels
                .iter()
                .filter(|(_, c)| c.dk == *discovery_key)
                .map(|(id, _)| *id)
                .collect();
            for ch in chans {
                if let Some(c) = s.channels.remove(&ch) {
                    if let Some(peer) = c.peer {
                        self.peers.remove(&(c.dk, peer));
                    }
                }
                // Fails only on a destroyed mux.
                let _ = s.mux.close(ch);
            }
        }
        self.flush();
        Some(rep)
    }

    /// The discovery keys of the cores this hub replicates.
    pub fn cores(&self) -> impl Iterator<Item = &[u8; 32]> + '_ {
        self.cores.keys()
    }

    /// Replicate a core on every stream (present and future); returns its discovery key.
    pub fn add_core(&mut self, replicator: Replicator<S>) -> Result<[u8; 32], ReplicationError> {
        let dk = *replicator.core().discovery_key();
        self.cores.insert(dk, replicator);
        // A waiting open of it pairs with our open below (its events are handled with the
        // stream's next frame; `accept_core` handles them at once).
        self.unknown.retain(|(_, d)| *d != dk);
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for sid in ids {
            self.open_channel(sid, dk)?;
        }
        self.flush();
        Ok(dk)
    }

    /// The replicator of a core.
    pub fn replicator(&self, discovery_key: &[u8; 32]) -> Option<&Replicator<S>> {
        self.cores.get(discovery_key)
    }

    /// The replicator of a core, to drive directly; call [`ReplicationHub::flush`] afterwards so
    /// its messages reach the streams.
    pub fn replicator_mut(&mut self, discovery_key: &[u8; 32]) -> Option<&mut Replicator<S>> {
        self.cores.get_mut(discovery_key)
    }

    /// A new connection whose secret-stream handshake finished: `is_initiator` is our role and
    /// `handshake_hash` the Noise handshake hash (both give the capabilities). Opens every core's
    /// channel.
    pub fn add_stream(
        &mut self,
        is_initiator: bool,
        handshake_hash: [u8; 64],
    ) -> Result<StreamId, ReplicationError> {
        let sid = StreamId(self.next_stream);
        self.next_stream += 1;
        let mut mux = Protomux::new();
        // Every open from the remote comes to us (JS corestore pairs the same way): for a core
        // we have, it is answered; for others see `set_answer_unknown`.
        mux.pair(PROTOCOL, None);
        for p in &self.protocols {
            mux.pair(p, None);
        }
        self.streams.insert(
            sid,
            Stream {
                mux,
                is_initiator,
                handshake_hash,
                channels: BTreeMap::new(),
                other: BTreeSet::new(),
                corked_bytes: 0,
                out_bytes: 0,
                backlog: 0,
                congested: false,
            },
        );
        let dks: Vec<[u8; 32]> = self.cores.keys().copied().collect();
        for dk in dks {
            self.open_channel(sid, dk)?;
        }
        if !self.protocols.is_empty() {
            self.events.push_back(HubEvent::StreamAdded {
                stream: sid,
                is_initiator,
                handshake_hash,
            });
        }
        self.flush();
        Ok(sid)
    }

    fn open_channel(&mut self, sid: StreamId, dk: [u8; 32]) -> Result<(), ReplicationError> {
        let key = *self
            .cores
            .get(&dk)
            .ok_or(ReplicationError::UnknownCore)?
            .core()
            .key();
        let s = self
            .streams
            .get_mut(&sid)
            .ok_or(ReplicationError::UnknownStream)?;
        let hs = Handshake {
            seeks: true,
            capability: capability(s.is_initiator, &key, &s.handshake_hash),
        };
        let ch = s.mux.open(
            ChannelOptions::new(PROTOCOL)
                .id(dk.to_vec())
                .aliases([PROTOCOL_ALIAS])
                .handshake(hs.to_bytes())
                .message_types(MESSAGE_TYPES),
        )?;
        s.channels.insert(ch, Chan { dk, peer: None });
        Ok(())
    }

    /// The connection ended: forget the stream and its peers.
    pub async fn remove_stream(
        &mut self,
        now: u64,
        stream: StreamId,
    ) -> Result<(), ReplicationError> {
        let Some(s) = self.streams.remove(&stream) else {
            return Ok(());
        };
        self.unknown.retain(|(sid, _)| *sid != stream);
        for channel in &s.other {
            self.events.push_back(HubEvent::Other {
                stream,
                event: MuxEvent::ChannelClosed {
                    channel: *channel,
                    by_remote: true,
                },
            });
        }
        for chan in s.channels.into_values() {
            if let Some(peer) = chan.peer {
                self.peers.remove(&(chan.dk, peer));
                if let Some(rep) = self.cores.get_mut(&chan.dk) {
                    rep.remove_peer(now, peer).await?;
                }
            }
        }
        self.out.retain(|o| o.0 != stream);
        self.flush();
        Ok(())
    }

    /// Whether the stream is still live (not destroyed or removed).
    pub fn has_stream(&self, stream: StreamId) -> bool {
        self.streams.contains_key(&stream)
    }

    /// One frame (a decrypted secret-stream message) from `stream`. Errors are local failures
    /// (storage) or an unknown stream; the remote's faults come out as events.
    pub async fn handle_frame(
        &mut self,
        now: u64,
        stream: StreamId,
        frame: &[u8],
    ) -> Result<(), ReplicationError> {
        self.handle_frames(now, stream, [frame]).await
    }

    /// Several frames from `stream`, in order: the same as one [`ReplicationHub::handle_frame`]
    /// each, except that consecutive messages for one core go to
    /// [`Replicator::handle_messages`] together, so the blocks they carry are stored in one
    /// write. Frames after the stream is destroyed are dropped.
    pub async fn handle_frames<F: AsRef<[u8]>>(
        &mut self,
        now: u64,
        stream: StreamId,
        frames: impl IntoIterator<Item = F>,
    ) -> Result<(), ReplicationError> {
        if !self.streams.contains_key(&stream) {
            return Err(ReplicationError::UnknownStream);
        }
        // Decoded messages not yet given to their replicator, all for one (core, peer).
        let mut group: Option<([u8; 32], PeerId, Vec<Message>)> = None;
        // The messages the mux gave straight away (not queued as events), decoded.
        let mut direct: Vec<Decoded> = Vec::new();
        for frame in frames {
            let Some(s) = self.streams.get_mut(&stream) else {
                break;
            };
            let (channels, other) = (&s.channels, &s.other);
            // Decoded from the frame where they are: a block is copied once (into its message),
            // not first into a mux event.
            let handled = s
                .mux
                .handle_frame_with(frame.as_ref(), &mut |channel, ty, payload| {
                    direct.push(decode_payload(channels, other, channel, ty, payload));
                });
            if let Err(e) = handled {
                direct.clear();
                self.deliver(now, &mut group).await?;
                self.destroy_stream(now, stream, e.into()).await?;
                break;
            }
            for d in direct.drain(..) {
                if !self.streams.contains_key(&stream) {
                    break;
                }
                self.handle_decoded(now, stream, d, &mut group).await?;
            }
            self.handle_mux_events(now, stream, &mut group).await?;
        }
        self.deliver(now, &mut group).await?;
        self.flush();
        Ok(())
    }

    /// Handle the events `stream`'s mux has queued (e.g. a channel that [`Self::open_channel`]
    /// paired with a waiting open, and the messages buffered for it).
    async fn drain_mux(&mut self, now: u64, stream: StreamId) -> Result<(), ReplicationError> {
        let mut group = None;
        self.handle_mux_events(now, stream, &mut group).await?;
        self.deliver(now, &mut group).await
    }

    /// Handle `stream`'s queued mux events; messages for one (core, peer) collect in `group`.
    async fn handle_mux_events(
        &mut self,
        now: u64,
        stream: StreamId,
        group: &mut Option<([u8; 32], PeerId, Vec<Message>)>,
    ) -> Result<(), ReplicationError> {
        while let Some(ev) = self
            .streams
            .get_mut(&stream)
            .and_then(|s| s.mux.poll_event())
        {
            let d = self.decode_message(stream, ev);
            self.handle_decoded(now, stream, d, group).await?;
        }
        Ok(())
    }

    /// Act on one sorted mux event of `stream`; messages for one (core, peer) collect in `group`.
    async fn handle_decoded(
        &mut self,
        now: u64,
        stream: StreamId,
        d: Decoded,
        group: &mut Option<([u8; 32], PeerId, Vec<Message>)>,
    ) -> Result<(), ReplicationError> {
        match d {
            Decoded::Message(dk, peer, msg) => {
                if group.as_ref().is_some_and(|g| g.0 != dk || g.1 != peer) {
                    self.deliver(now, group).await?;
                }
                group
                    .get_or_insert_with(|| (dk, peer, Vec::new()))
                    .2
                    .push(msg);
            }
            Decoded::Ignored => {}
            Decoded::Invalid(e) => {
                self.deliver(now, group).await?;
                self.destroy_stream(now, stream, e).await?;
            }
            Decoded::Other(ev) => {
                self.deliver(now, group).await?;
                self.on_mux_event(now, stream, ev).await?;
                self.flush();
            }
        }
        Ok(())
    }

    /// Give the messages of `group` to their replicator, then route what it produced (a peer it
    /// disconnects takes its stream down before the next frame).
    async fn deliver(
        &mut self,
        now: u64,
        group: &mut Option<([u8; 32], PeerId, Vec<Message>)>,
    ) -> Result<(), ReplicationError> {
        let Some((dk, peer, msgs)) = group.take() else {
            return Ok(());
        };
        let Some(&(sid, _)) = self.peers.get(&(dk, peer)) else {
            return Ok(());
        };
        let window = self.streams.get_mut(&sid).map_or(0, Stream::window);
        if let Some(rep) = self.cores.get_mut(&dk) {
            rep.set_window(now, peer, window).await?;
            rep.handle_messages(now, peer, msgs).await?;
        }
        self.flush();
        Ok(())
    }

    /// Sort a mux event: a replication message for an open channel (decoded), one to drop, a
    /// message that does not decode, or another event.
    fn decode_message(&self, sid: StreamId, ev: MuxEvent) -> Decoded {
        let MuxEvent::Message {
            channel,
            message_type,
            payload,
        } = ev
        else {
            return Decoded::Other(ev);
        };
        match self.streams.get(&sid) {
            Some(s) => decode_payload(&s.channels, &s.other, channel, message_type, &payload),
            None => Decoded::Ignored,
        }
    }

    async fn on_mux_event(
        &mut self,
        now: u64,
        sid: StreamId,
        ev: MuxEvent,
    ) -> Result<(), ReplicationError> {
        let Some(s) = self.streams.get_mut(&sid) else {
            return Ok(());
        };
        match ev {
            MuxEvent::ChannelOpened { channel, handshake } => {
                let Some(chan) = s.channels.get(&channel) else {
                    if s.other.contains(&channel) {
                        self.events.push_back(HubEvent::Other {
                            stream: sid,
                            event: MuxEvent::ChannelOpened { channel, handshake },
                        });
                    }
                    return Ok(());
                };
                let dk = chan.dk;
                let Some(rep) = self.cores.get_mut(&dk) else {
                    return Ok(());
                };
                let expected = capability(!s.is_initiator, rep.core().key(), &s.handshake_hash);
                let remote = Handshake::from_bytes(&handshake)
                    .ok()
                    .filter(|h| h.capability == expected);
                let Some(remote) = remote else {
                    s.channels.remove(&channel);
                    // The channel is open, so closing it cannot fail except on a destroyed mux.
                    let _ = s.mux.close(channel);
                    self.events.push_back(HubEvent::ChannelClosed {
                        stream: sid,
                        discovery_key: dk,
                        error: Some(ReplicationError::InvalidCapability),
                    });
                    return Ok(());
                };
                let peer = rep.add_peer();
                rep.set_remote_seeks(peer, remote.seeks);
                if let Some(c) = s.channels.get_mut(&channel) {
                    c.peer = Some(peer);
                }
                self.peers.insert((dk, peer), (sid, channel));
                self.events.push_back(HubEvent::ChannelOpened {
                    stream: sid,
                    discovery_key: dk,
                    peer,
                });
            }
            // Sorted out by `decode_message` before.
            MuxEvent::Message { channel, .. } => {
                if s.other.contains(&channel) {
                    self.events.push_back(HubEvent::Other {
                        stream: sid,
                        event: ev,
                    });
                }
            }
            MuxEvent::ChannelClosed { channel, .. } | MuxEvent::ChannelRejected { channel }
                if s.other.remove(&channel) =>
            {
                self.events.push_back(HubEvent::Other {
                    stream: sid,
                    event: ev,
                });
            }
            MuxEvent::PairRequest { ref protocol, .. }
                if protocol != PROTOCOL && self.protocols.contains(protocol) =>
            {
                self.events.push_back(HubEvent::Other {
                    stream: sid,
                    event: ev,
                });
            }
            MuxEvent::ChannelClosed { channel, .. } | MuxEvent::ChannelRejected { channel } => {
                if let Some(chan) = s.channels.remove(&channel) {
                    if let Some(peer) = chan.peer {
                        self.peers.remove(&(chan.dk, peer));
                        if let Some(rep) = self.cores.get_mut(&chan.dk) {
                            rep.remove_peer(now, peer).await?;
                        }
                    }
                    self.events.push_back(HubEvent::ChannelClosed {
                        stream: sid,
                        discovery_key: chan.dk,
                        error: None,
                    });
                }
            }
            MuxEvent::PairRequest { protocol, id, .. } => {
                let dk = id
                    .as_deref()
                    .filter(|_| protocol == PROTOCOL)
                    .and_then(|id| <[u8; 32]>::try_from(id).ok());
                let Some(dk) = dk else {
                    // Not a core's channel (we pair only `hypercore/alpha`; JS throws on an id
                    // that is not 32 bytes): nobody takes it.
                    let _ = s.mux.reject(&protocol, id.as_deref());
                    return Ok(());
                };
                let has_channel = s.channels.values().any(|c| c.dk == dk);
                if self.cores.contains_key(&dk) && !has_channel {
                    // Pairs with the waiting open: the channel opens at once (its
                    // `ChannelOpened` is next in the mux's queue).
                    if self.open_channel(sid, dk).is_err() {
                        if let Some(s) = self.streams.get_mut(&sid) {
                            let _ = s.mux.reject(PROTOCOL, Some(&dk));
                        }
                    }
                } else if !self.cores.contains_key(&dk)
                    && self.answer_unknown
                    && self.unknown.insert((sid, dk))
                {
                    self.events.push_back(HubEvent::UnknownCore {
                        stream: sid,
                        discovery_key: dk,
                    });
                } else {
                    // A second open of a channel we have (JS: `attached` already, so the
                    // notify creates nothing and the open is rejected), or nobody to ask.
                    let _ = s.mux.reject(PROTOCOL, Some(&dk));
                }
            }
        }
        Ok(())
    }

    async fn destroy_stream(
        &mut self,
        now: u64,
        sid: StreamId,
        error: ReplicationError,
    ) -> Result<(), ReplicationError> {
        if let Some(s) = self.streams.get_mut(&sid) {
            s.mux.destroy();
        }
        self.remove_stream(now, sid).await?;
        self.events
            .push_back(HubEvent::StreamClosed { stream: sid, error });
        Ok(())
    }

    /// Move every replicator's messages and events out to the streams and the event queue.
    /// Called by every hub method; call it after driving a replicator through
    /// [`ReplicationHub::replicator_mut`].
    pub fn flush(&mut self) {
        for s in self.streams.values_mut() {
            s.mux.cork();
        }
        let mut disconnects = Vec::new();
        let mut closes = Vec::new();
        for (dk, rep) in self.cores.iter_mut() {
            while let Some((peer, msg)) = rep.poll_transmit() {
                let Some(&(sid, ch)) = self.peers.get(&(*dk, peer)) else {
                    continue;
                };
                if let Some(s) = self.streams.get_mut(&sid) {
                    let len = msg.encoded_len();
                    let message_type = msg.type_id();
                    // A large block goes into the frame as it is (its buffer, not a copy: a
                    // transport encrypts it where it is); the rest is encoded straight into the
                    // mux's batch. A channel closed under us just drops the message.
                    match msg {
                        Message::Data(mut d)
                            if d.block.as_ref().is_some_and(|b| b.value.len() >= PIECE_MIN) =>
                        {
                            if let Some((head, at)) = d.encode_around_block() {
                                let value = d
                                    .block
                                    .as_mut()
                                    .map(|b| std::mem::take(&mut b.value))
                                    .unwrap_or_default();
                                let _ = s.mux.send_with_piece(ch, message_type, &head, at, value);
                            }
                        }
                        msg => {
                            let _ = s.mux.send_encoded(ch, message_type, &msg);
                        }
                    }
                    s.corked_bytes += len;
                    if s.corked_bytes >= BATCH_BYTES {
                        s.corked_bytes = 0;
                        s.mux.uncork();
                        s.mux.cork();
                    }
                }
            }
            while let Some(event) = rep.poll_event() {
                if let Event::Disconnect { peer, error } = &event {
                    if let Some(&(sid, ch)) = self.peers.get(&(*dk, *peer)) {
                        if matches!(error, ReplicationError::Conflict { .. }) {
                            // Only this core is affected: close its channel, keep the stream.
                            closes.push((sid, ch, *dk, *peer, error.clone()));
                        } else {
                            disconnects.push((sid, error.clone()));
                        }
                    }
                }
                self.events.push_back(HubEvent::Core {
                    discovery_key: *dk,
                    event,
                });
            }
        }
        for (sid, ch, dk, peer, error) in closes {
            self.peers.remove(&(dk, peer));
            if let Some(s) = self.streams.get_mut(&sid) {
                s.channels.remove(&ch);
                // After the messages queued above; fails only on a destroyed mux.
                let _ = s.mux.close(ch);
            }
            self.events.push_back(HubEvent::ChannelClosed {
                stream: sid,
                discovery_key: dk,
                error: Some(error),
            });
        }
        for (sid, s) in self.streams.iter_mut() {
            s.corked_bytes = 0;
            s.mux.uncork();
            while let Some(f) = s.mux.poll_transmit_frame() {
                s.out_bytes += f.len();
                self.out.push_back((*sid, f));
            }
            if s.unsent() >= HIGH_WATER {
                s.congested = true;
            }
        }
        for (sid, error) in disconnects {
            // The replicator already dropped the peer; kill the stream like JS does.
            if let Some(mut s) = self.streams.remove(&sid) {
                s.mux.destroy();
                for chan in s.channels.into_values() {
                    if let Some(peer) = chan.peer {
                        self.peers.remove(&(chan.dk, peer));
                        if let Some(rep) = self.cores.get_mut(&chan.dk) {
                            rep.forget_peer(peer);
                        }
                    }
                }
                self.out.retain(|o| o.0 != sid);
                self.events
                    .push_back(HubEvent::StreamClosed { stream: sid, error });
            }
        }
    }

    /// Next frame to encrypt and write, and on which stream.
    pub fn poll_transmit(&mut self) -> Option<(StreamId, Vec<u8>)> {
        self.poll_transmit_frame()
            .map(|(sid, f)| (sid, f.into_bytes()))
    }

    /// [`ReplicationHub::poll_transmit`] of the frame with its large blocks still apart
    /// ([`OutFrame`]): a transport that encrypts the parts where they are
    /// ([`crate::secretstream::SecretStream::write_parts`]) saves copying each block.
    pub fn poll_transmit_frame(&mut self) -> Option<(StreamId, OutFrame)> {
        let (sid, f) = self.out.pop_front()?;
        if let Some(s) = self.streams.get_mut(&sid) {
            s.out_bytes -= f.len();
        }
        Some((sid, f))
    }

    /// The transport holds `bytes` of `stream` not yet written to the connection (what it took
    /// from [`ReplicationHub::poll_transmit`], encrypted or not). Tell it whenever that changes
    /// noticeably ([`backlog_report_due`]): while the stream's
    /// unsent bytes are past [`HIGH_WATER`], the peers' requests and `want`s wait instead of
    /// being answered (JS holds them until the stream drains), so a peer that sends requests
    /// but never reads cannot grow our memory; here, once it drained to [`LOW_WATER`], they are
    /// answered. A transport that never tells still has each batch of answers bounded, as the
    /// hub's own queue counts.
    pub async fn set_backlog(
        &mut self,
        now: u64,
        stream: StreamId,
        bytes: usize,
    ) -> Result<(), ReplicationError> {
        let Some(s) = self.streams.get_mut(&stream) else {
            return Err(ReplicationError::UnknownStream);
        };
        s.backlog = bytes;
        self.resume(now, stream).await
    }

    /// Bytes of `stream` not written yet: frames in the hub and the transport's backlog.
    pub fn unsent(&self, stream: StreamId) -> Option<usize> {
        self.streams.get(&stream).map(Stream::unsent)
    }

    /// Whether `stream` is congested (its peers' requests wait, see
    /// [`ReplicationHub::set_backlog`]).
    pub fn is_congested(&self, stream: StreamId) -> bool {
        self.streams.get(&stream).is_some_and(|s| s.congested)
    }

    /// The peers of `stream` with requests waiting for window.
    fn waiting_peers(&self, stream: StreamId) -> Vec<([u8; 32], PeerId)> {
        let Some(s) = self.streams.get(&stream) else {
            return Vec::new();
        };
        s.channels
            .values()
            .filter_map(|c| Some((c.dk, c.peer?)))
            .filter(|(dk, peer)| self.cores.get(dk).is_some_and(|r| r.deferred(*peer) > 0))
            .collect()
    }

    /// Answer the waiting requests of `stream`'s peers as far as its window reaches.
    async fn resume(&mut self, now: u64, stream: StreamId) -> Result<(), ReplicationError> {
        for (dk, peer) in self.waiting_peers(stream) {
            let Some(window) = self.streams.get_mut(&stream).map(Stream::window) else {
                break;
            };
            if window == 0 {
                break;
            }
            if let Some(rep) = self.cores.get_mut(&dk) {
                rep.set_window(now, peer, window).await?;
            }
            self.flush();
        }
        Ok(())
    }

    /// Whether a stream has waiting requests that its window would let through now.
    fn can_resume(&self) -> bool {
        self.streams.iter().any(|(sid, s)| {
            let window = if s.congested && s.unsent() > LOW_WATER {
                0
            } else {
                HIGH_WATER.saturating_sub(s.unsent())
            };
            window > 0 && !self.waiting_peers(*sid).is_empty()
        })
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<HubEvent> {
        self.events.pop_front()
    }

    /// Earliest deadline of any replicator; 0 (due now) when waiting requests of a stream can
    /// be answered (its transport drained it).
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.can_resume() {
            return Some(0);
        }
        self.cores
            .values()
            .filter_map(Replicator::poll_timeout)
            .min()
    }

    /// Time passed: run every replicator's timers.
    pub async fn handle_timeout(&mut self, now: u64) -> Result<(), ReplicationError> {
        for rep in self.cores.values_mut() {
            if rep.poll_timeout().is_some_and(|t| t <= now) {
                rep.handle_timeout(now).await?;
            }
        }
        self.flush();
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for sid in ids {
            self.resume(now, sid).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod pairing_tests {
    use futures_executor::block_on;

    use super::*;
    use crate::crypto::KeyPair;
    use crate::hypercore::{CreateOptions, Hypercore};
    use crate::replication::Options;
    use crate::storage::MemoryStorage;

    type Hub = ReplicationHub<MemoryStorage>;

    async fn core(key_pair: Option<KeyPair>, key: Option<[u8; 32]>) -> Hypercore<MemoryStorage> {
        Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair,
                key,
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap()
    }

    async fn run(a: &mut Hub, sa: StreamId, b: &mut Hub, sb: StreamId) {
        for _ in 0..10_000 {
            let fa: Vec<Vec<u8>> = std::iter::from_fn(|| a.poll_transmit().map(|f| f.1)).collect();
            let fb: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_transmit().map(|f| f.1)).collect();
            if fa.is_empty() && fb.is_empty() {
                return;
            }
            b.handle_frames(0, sb, fa).await.unwrap();
            a.handle_frames(0, sa, fb).await.unwrap();
        }
        panic!("hubs never went idle");
    }

    fn events(h: &mut Hub) -> Vec<HubEvent> {
        std::iter::from_fn(|| h.poll_event()).collect()
    }

    /// The remote rejects our open (it lacks the core), gets the core later and opens it: we
    /// answer, and the core replicates.
    #[test]
    fn a_later_open_of_a_core_we_have_is_answered() {
        block_on(async {
            let mut w = core(Some(KeyPair::from_seed(&[1; 32])), None).await;
            w.append(&[b"a", b"b"]).await.unwrap();
            let key = *w.key();
            let (mut a, mut b) = (Hub::new(), Hub::new());
            let dk = a.add_core(Replicator::new(w, Options::default())).unwrap();
            let sa = a.add_stream(true, [2; 64]).unwrap();
            let sb = b.add_stream(false, [2; 64]).unwrap();
            run(&mut a, sa, &mut b, sb).await;
            assert!(events(&mut a).iter().any(|e| matches!(
                e,
                HubEvent::ChannelClosed { discovery_key, error: None, .. } if *discovery_key == dk
            )));
            assert!(events(&mut b).is_empty(), "rejected without asking anyone");
            b.add_core(Replicator::new(
                core(None, Some(key)).await,
                Options::default(),
            ))
            .unwrap();
            b.replicator_mut(&dk)
                .unwrap()
                .download(0, 0, None)
                .await
                .unwrap();
            b.flush();
            run(&mut a, sa, &mut b, sb).await;
            assert_eq!(b.replicator(&dk).unwrap().core().contiguous_length(), 2);
        });
    }

    /// With `set_answer_unknown`, an open for a core we lack waits for the owner: accepted, the
    /// messages sent meanwhile are handled; rejected, the remote hears so.
    #[test]
    fn unknown_opens_wait_for_the_owner() {
        block_on(async {
            let mut w1 = core(Some(KeyPair::from_seed(&[1; 32])), None).await;
            w1.append(&[b"one"]).await.unwrap();
            let w2 = core(Some(KeyPair::from_seed(&[2; 32])), None).await;
            let key1 = *w1.key();
            let (mut a, mut b) = (Hub::new(), Hub::new());
            let dk1 = a.add_core(Replicator::new(w1, Options::default())).unwrap();
            let dk2 = a.add_core(Replicator::new(w2, Options::default())).unwrap();
            b.set_answer_unknown(true);
            let sa = a.add_stream(false, [3; 64]).unwrap();
            let sb = b.add_stream(true, [3; 64]).unwrap();
            run(&mut a, sa, &mut b, sb).await;
            let mut asked: Vec<[u8; 32]> = events(&mut b)
                .into_iter()
                .filter_map(|e| match e {
                    HubEvent::UnknownCore {
                        stream,
                        discovery_key,
                    } if stream == sb => Some(discovery_key),
                    _ => None,
                })
                .collect();
            asked.sort();
            let mut expect = vec![dk1, dk2];
            expect.sort();
            assert_eq!(asked, expect);
            b.reject_unknown(sb, &dk2);
            let mut reader = Replicator::new(core(None, Some(key1)).await, Options::default());
            reader.download(0, 0, None).await.unwrap();
            b.accept_core(0, reader).await.unwrap();
            run(&mut a, sa, &mut b, sb).await;
            assert_eq!(b.replicator(&dk1).unwrap().core().contiguous_length(), 1);
            assert!(events(&mut a).iter().any(|e| matches!(
                e,
                HubEvent::ChannelClosed { discovery_key, .. } if *discovery_key == dk2
            )));
            // Removing the core closes its channel on the other side.
            assert!(b.remove_core(&dk1).is_some());
            run(&mut a, sa, &mut b, sb).await;
            assert_eq!(a.replicator(&dk1).unwrap().peers().count(), 0);
            assert!(b.remove_core(&dk1).is_none());
        });
    }
}
