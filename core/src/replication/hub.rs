//! [`ReplicationHub`]: replicators of many cores over many protomux streams.
//!
//! The transport runs one secret-stream per connection and hands the hub each decrypted message
//! ([`ReplicationHub::handle_frame`]); it encrypts and writes what
//! [`ReplicationHub::poll_transmit`] returns. Per stream the hub owns a
//! [`Protomux`] and, for every core, a `hypercore/alpha` channel (alias `hypercore`, id = the
//! discovery key, handshake `{seeks: true, capability}` with the capability of our role). When
//! the remote's open arrives its capability is checked against the remote's role; a wrong one
//! closes the channel ([`HubEvent::ChannelClosed`] with [`ReplicationError::InvalidCapability`]).
//! Open channels are peers of the core's [`Replicator`]. Opens for cores the hub does not
//! replicate are rejected (JS behaves the same when the corestore does not have the core).
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

use std::collections::{BTreeMap, VecDeque};

use crate::encoding::{Decode, Encode};
use crate::hypercore::messages::{Handshake, Message};
use crate::hypercore::verifier::capability;
use crate::protomux::{ChannelId, ChannelOptions, Event as MuxEvent, Protomux};
use crate::storage::Storage;

use super::replicator::{Event, PeerId, ReplicationError, Replicator};

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
    /// The stream is destroyed (protocol violation); the transport should drop the connection.
    StreamClosed {
        /// The stream.
        stream: StreamId,
        /// Why.
        error: ReplicationError,
    },
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
    out: VecDeque<(StreamId, Vec<u8>)>,
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
        }
    }

    /// Replicate a core on every stream (present and future); returns its discovery key.
    pub fn add_core(&mut self, replicator: Replicator<S>) -> Result<[u8; 32], ReplicationError> {
        let dk = *replicator.core().discovery_key();
        self.cores.insert(dk, replicator);
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
        self.streams.insert(
            sid,
            Stream {
                mux: Protomux::new(),
                is_initiator,
                handshake_hash,
                channels: BTreeMap::new(),
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
        for frame in frames {
            let Some(s) = self.streams.get_mut(&stream) else {
                break;
            };
            if let Err(e) = s.mux.handle_frame(frame.as_ref()) {
                self.deliver(now, &mut group).await?;
                self.destroy_stream(now, stream, e.into()).await?;
                break;
            }
            while let Some(ev) = self
                .streams
                .get_mut(&stream)
                .and_then(|s| s.mux.poll_event())
            {
                match self.decode_message(stream, ev) {
                    Decoded::Message(dk, peer, msg) => {
                        if group.as_ref().is_some_and(|g| g.0 != dk || g.1 != peer) {
                            self.deliver(now, &mut group).await?;
                        }
                        group
                            .get_or_insert_with(|| (dk, peer, Vec::new()))
                            .2
                            .push(msg);
                    }
                    Decoded::Ignored => {}
                    Decoded::Invalid(e) => {
                        self.deliver(now, &mut group).await?;
                        self.destroy_stream(now, stream, e).await?;
                    }
                    Decoded::Other(ev) => {
                        self.deliver(now, &mut group).await?;
                        self.on_mux_event(now, stream, ev).await?;
                        self.flush();
                    }
                }
            }
        }
        self.deliver(now, &mut group).await?;
        self.flush();
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
        let Some(&Chan {
            dk,
            peer: Some(peer),
        }) = self
            .streams
            .get(&sid)
            .and_then(|s| s.channels.get(&channel))
        else {
            return Decoded::Ignored;
        };
        if message_type >= MESSAGE_TYPES {
            return Decoded::Ignored;
        }
        match Message::decode(message_type, &payload) {
            Ok(m) => Decoded::Message(dk, peer, m),
            Err(e) => Decoded::Invalid(e.into()),
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
            MuxEvent::Message { .. } => {}
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
                // Never paired: nothing to answer, but be safe.
                let _ = s.mux.reject(&protocol, id.as_deref());
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
                    let bytes = msg.to_bytes();
                    // A channel closed under us just drops the message.
                    let _ = s.mux.send(ch, msg.type_id(), &bytes);
                    s.corked_bytes += bytes.len();
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
            while let Some(f) = s.mux.poll_transmit() {
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
