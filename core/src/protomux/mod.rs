//! protomux 3.12.1: many typed, paired channels over one framed stream, as a sans-IO engine.
//!
//! [`Protomux`] owns no socket. The owner feeds it whole frames (one secret-stream message is one
//! frame) with [`Protomux::handle_frame`], takes the frames to write with
//! [`Protomux::poll_transmit`] and reacts to [`Event`]s from [`Protomux::poll_event`]. Channels are
//! driven with [`Protomux::open`], [`Protomux::send`], [`Protomux::close`],
//! [`Protomux::cork`]/[`Protomux::uncork`], and incoming opens nobody asked for are offered to the
//! owner as [`Event::PairRequest`] when it registered interest with [`Protomux::pair`].
//!
//! The bytes written, the id allocation and reuse, the pairing of opens by `(protocol, id)` (and
//! aliases), the buffering of messages for channels not yet opened locally and what counts as a
//! protocol violation all follow `protomux/index.js` (line numbers below refer to it); the wire
//! format is in [`frame`].
//!
//! ```
//! use hyperpunch_core::protomux::{ChannelOptions, Event, Protomux};
//!
//! let (mut a, mut b) = (Protomux::new(), Protomux::new());
//! b.pair("chat", None);
//! let ca = a.open(ChannelOptions::new("chat").handshake(b"hi".to_vec())).unwrap();
//! a.send(ca, 0, b"hello").unwrap();
//! while let Some(f) = a.poll_transmit() {
//!     b.handle_frame(&f).unwrap();
//! }
//! // B was asked to pair and opens its side; the buffered message follows the open.
//! assert!(matches!(b.poll_event(), Some(Event::PairRequest { .. })));
//! let cb = b.open(ChannelOptions::new("chat")).unwrap();
//! assert!(matches!(b.poll_event(), Some(Event::ChannelOpened { handshake, .. }) if handshake == b"hi"));
//! assert!(matches!(b.poll_event(), Some(Event::Message { payload, .. }) if payload == b"hello"));
//! # let _ = cb;
//! ```
//!
//! ## Differences an owner must know about
//! * JS calls a `pair()` notify function and rejects the open if no channel was created once it
//!   returns. Here every [`Event::PairRequest`] must be answered, by [`Protomux::open`] of the same
//!   `(protocol, id)` or by [`Protomux::reject`]; until then the remote's messages stay buffered.
//!   An incoming open with no registered pairing is rejected at once, like JS without a notify.
//! * When a received batch holds more than one message, JS corks its outgoing side until the
//!   handlers settle, so the replies leave as one batch. Here the engine corks while it handles such
//!   a batch and uncorks when [`Protomux::poll_event`] next returns `None`, i.e. once the owner
//!   has handled every event (and sent its replies). Drain events before transmits.
//! * JS pauses the stream when more than 32 KiB wait for channels not yet opened locally;
//!   [`Protomux::should_pause`] tells the owner when to stop reading.
//! * Batches nested in batches are limited to [`MAX_BATCH_DEPTH`] levels (JS overflows its stack
//!   eventually, which also destroys the stream).
//!
//! (About 1,100 lines on purpose: one engine whose methods follow `protomux/index.js` in its
//! order; frame encoding is in `frame.rs`, the tests in `tests.rs`.)

pub mod frame;
#[cfg(test)]
mod tests;

pub use frame::{BatchItem, Frame, OpenFrame};

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use thiserror::Error;

use crate::encoding::{uint_len, write_uint, DecodeError, Decoder, Encode};
use frame::{
    control_frame, next_batch_item, open_frame, BatchBuilder, CONTROL_BATCH, CONTROL_CLOSE,
    CONTROL_OPEN, CONTROL_REJECT, MAX_BATCH,
};

/// JS pauses the stream once more than this many (accounted) bytes are buffered (`MAX_BUFFERED`).
pub const MAX_BUFFERED: usize = 32768;
/// Deepest nesting of batch frames inside batch frames that [`Protomux::handle_frame`] accepts.
pub const MAX_BATCH_DEPTH: usize = 32;
/// Bound of the capacity a new batch starts with (the size of the previous batch).
const MAX_BATCH_HINT: usize = 1 << 20;

/// A protocol violation by the remote: JS destroys the stream on these, and so should the owner.
/// After one, the mux is destroyed ([`Protomux::destroy`]).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MuxError {
    /// A frame (or a batch item, open, reject or close inside it) does not parse.
    #[error("malformed protomux frame: {0}")]
    Decode(#[from] DecodeError),
    /// An open whose id is 0, skips ahead by more than one, or reuses an id still in use
    /// (`Invalid open message`, index.js:688-695).
    #[error("invalid open message: remote channel id {remote_id} is not fresh")]
    InvalidOpen {
        /// The id the remote used.
        remote_id: u64,
    },
    /// A reject for an id we have no unanswered open for (`Invalid reject message`, 746).
    #[error("invalid reject message for local channel id {local_id}")]
    InvalidReject {
        /// The id the remote named.
        local_id: u64,
    },
    /// Batches nested deeper than [`MAX_BATCH_DEPTH`].
    #[error("batch frames nested deeper than {MAX_BATCH_DEPTH}")]
    BatchTooDeep,
    /// The mux was destroyed earlier.
    #[error("the protomux session is destroyed")]
    Destroyed,
}

/// Why a channel operation was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// The handle names no live channel (never opened here, closed, rejected or destroyed).
    #[error("unknown or closed channel")]
    UnknownChannel,
    /// A channel of this `(protocol, id)` is already open and the options ask for a unique one
    /// (JS `createChannel` returns `null`).
    #[error("a channel for this protocol and id is already open")]
    AlreadyOpen,
    /// [`Protomux::reject`] with no incoming open waiting for `(protocol, id)`.
    #[error("no incoming open is waiting for this protocol and id")]
    NoPendingOpen,
    /// The incoming open this channel would answer is gone (JS `createChannel` returns `null`).
    #[error("the remote open being answered is gone")]
    RemoteGone,
    /// The mux is destroyed.
    #[error("the protomux session is destroyed")]
    Destroyed,
}

/// Handle of a channel in one [`Protomux`]. Handles are never reused, unlike wire ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId(u64);

impl ChannelId {
    /// The raw handle number (unique within its mux).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// What happened, for the owner to react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Both sides opened the channel; `handshake` is the remote's handshake payload (the bytes after
    /// the id in its open frame, to decode with the channel's handshake encoding).
    ChannelOpened {
        /// The channel.
        channel: ChannelId,
        /// The remote's handshake bytes.
        handshake: Vec<u8>,
    },
    /// The remote rejected our open; the channel is closed (JS calls `onclose(true)`).
    ChannelRejected {
        /// The channel.
        channel: ChannelId,
    },
    /// The channel closed: by the remote's close (or the mux being destroyed) when `by_remote`,
    /// else by [`Protomux::close`].
    ChannelClosed {
        /// The channel.
        channel: ChannelId,
        /// Closed by the other side (JS `isRemote`).
        by_remote: bool,
    },
    /// A message on an open channel (of a type below the channel's `message_types`).
    Message {
        /// The channel.
        channel: ChannelId,
        /// Message type index.
        message_type: u64,
        /// Payload, to decode with the type's encoding.
        payload: Vec<u8>,
    },
    /// The remote opened `(protocol, id)` and no local open is waiting for it, but the owner
    /// registered [`Protomux::pair`]: answer with [`Protomux::open`] or [`Protomux::reject`].
    PairRequest {
        /// Protocol the remote named.
        protocol: String,
        /// Channel id the remote named.
        id: Option<Vec<u8>>,
        /// The remote's handshake bytes (repeated in [`Event::ChannelOpened`]).
        handshake: Vec<u8>,
    },
}

/// How to open a channel (JS `createChannel` options plus the `open(handshake)` argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOptions {
    protocol: String,
    id: Option<Vec<u8>>,
    aliases: Vec<String>,
    handshake: Vec<u8>,
    message_types: u64,
    unique: bool,
}

impl ChannelOptions {
    /// A channel of `protocol`, no id, no aliases, an empty handshake, every message type
    /// delivered, unique.
    pub fn new(protocol: impl Into<String>) -> Self {
        ChannelOptions {
            protocol: protocol.into(),
            id: None,
            aliases: Vec::new(),
            handshake: Vec::new(),
            message_types: u64::MAX,
            unique: true,
        }
    }

    /// The channel id (an empty id is the same as none, as on the wire).
    pub fn id(mut self, id: impl Into<Vec<u8>>) -> Self {
        let id = id.into();
        self.id = (!id.is_empty()).then_some(id);
        self
    }

    /// Other protocol names an incoming open may use to pair with this channel.
    pub fn aliases<I, S>(mut self, aliases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.aliases = aliases.into_iter().map(Into::into).collect();
        self
    }

    /// The encoded handshake payload sent in the open frame.
    pub fn handshake(mut self, handshake: impl Into<Vec<u8>>) -> Self {
        self.handshake = handshake.into();
        self
    }

    /// The number of message types the channel knows (JS `messages.length`): incoming messages of
    /// a higher type are ignored. Default: all are delivered.
    pub fn message_types(mut self, n: u64) -> Self {
        self.message_types = n;
        self
    }

    /// Whether opening fails while another channel of the same `(protocol, id)` is open
    /// (default `true`, as JS).
    pub fn unique(mut self, unique: bool) -> Self {
        self.unique = unique;
        self
    }
}

/// JS `toKey` (index.js:838-840): `protocol + '##' + hex(id)`.
fn to_key(protocol: &str, id: Option<&[u8]>) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let id = id.unwrap_or(&[]);
    let mut key = String::with_capacity(protocol.len() + 2 + 2 * id.len());
    key.push_str(protocol);
    key.push_str("##");
    for b in id {
        key.push(HEX[usize::from(b >> 4)] as char);
        key.push(HEX[usize::from(b & 15)] as char);
    }
    key
}

/// JS `byteSize` of a buffered message.
fn buffered_size(payload: &[u8]) -> usize {
    512 + payload.len()
}

/// Per `(protocol, id)` bookkeeping shared by aliases (JS `info`, index.js:522-549).
#[derive(Debug)]
struct Info {
    key: String,
    aliases: Vec<String>,
    opened: usize,
    /// Remote ids of incoming opens waiting for a local channel.
    incoming: VecDeque<u64>,
    /// Number of those offered to the owner as [`Event::PairRequest`].
    pairing: usize,
    /// Local ids of our opens the remote has not answered.
    outgoing: Vec<u64>,
}

/// A remote channel id in use (JS `_remote[i]`).
#[derive(Debug)]
struct Remote {
    /// The handshake of its open, until the local channel takes it.
    handshake: Vec<u8>,
    /// Messages waiting for the local channel (`Some` until it opens).
    pending: Option<Vec<(u64, Vec<u8>)>>,
    session: Option<ChannelId>,
}

#[derive(Debug)]
struct Channel {
    info: u64,
    local_id: u64,
    remote_id: u64,
    opened: bool,
    message_types: u64,
}

/// A frame to send: `bytes` with the owned `pieces` inserted, each at its offset in `bytes`
/// (offsets ascending; several may be equal). Its bytes on the wire are those of
/// [`OutFrame::into_bytes`]; a transport may send the parts as they are
/// ([`crate::secretstream::SecretStream::write_parts`]) instead of joining them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutFrame {
    /// The frame but for the pieces.
    pub bytes: Vec<u8>,
    /// `(offset in bytes, piece)`.
    pub pieces: Vec<(usize, Vec<u8>)>,
}

impl OutFrame {
    /// Its length on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len() + self.pieces.iter().map(|p| p.1.len()).sum::<usize>()
    }
    /// True when it has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The frame in one buffer (no copy when it has no pieces).
    pub fn into_bytes(self) -> Vec<u8> {
        if self.pieces.is_empty() {
            return self.bytes;
        }
        let mut out = Vec::with_capacity(self.len());
        let mut from = 0;
        for (at, piece) in &self.pieces {
            let at = (*at).clamp(from, self.bytes.len());
            out.extend_from_slice(&self.bytes[from..at]);
            out.extend_from_slice(piece);
            from = at;
        }
        out.extend_from_slice(&self.bytes[from..]);
        out
    }
}

impl From<Vec<u8>> for OutFrame {
    fn from(bytes: Vec<u8>) -> Self {
        OutFrame {
            bytes,
            pieces: Vec::new(),
        }
    }
}

/// Where [`Protomux::handle_frame_with`] gives the messages it does not queue.
type Sink<'s> = Option<&'s mut dyn FnMut(ChannelId, u64, &[u8])>;

/// The protomux engine of one stream. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Protomux {
    /// Channel by local id - 1.
    local: Vec<Option<ChannelId>>,
    /// Free local indices (local id - 1), reused last-freed first.
    free: Vec<u64>,
    /// Remote channel by remote id - 1.
    remote: Vec<Option<Remote>>,
    infos: BTreeMap<u64, Info>,
    info_keys: BTreeMap<String, u64>,
    next_info: u64,
    notify: BTreeSet<String>,
    channels: BTreeMap<ChannelId, Channel>,
    next_channel: u64,
    corked: u32,
    batch: Option<BatchBuilder>,
    /// Capacity for the next batch: the size of the last one (bounded), so that a batch is built
    /// without growing (and copying) its buffer again and again.
    batch_hint: usize,
    /// Corks taken while handling multi-message batches, released by `poll_event`.
    batch_corks: u32,
    buffered: usize,
    transmit: VecDeque<OutFrame>,
    events: VecDeque<Event>,
    destroyed: bool,
}

impl Protomux {
    /// A fresh mux with no channels.
    pub fn new() -> Self {
        Self::default()
    }

    // ---------------------------------------------------------------------------------------
    // Owner-facing I/O

    /// Handles one whole received frame. Empty frames are ignored, as are messages for unknown or
    /// closed channels and unknown message types. A protocol violation destroys the mux (closing
    /// every channel) and is returned: the owner then destroys the stream, as JS does.
    pub fn handle_frame(&mut self, frame: &[u8]) -> Result<(), MuxError> {
        self.handle_frame_inner(frame, &mut None)
    }

    /// [`Protomux::handle_frame`], but a message on an open channel that would be the next
    /// [`Event::Message`] (no other event is queued before it) goes to `on_message` as
    /// `(channel, message_type, payload)` right away, its payload borrowed from `frame` instead
    /// of copied into the event. The others are queued as events, as `handle_frame` does: so
    /// the messages given to `on_message`, then the events polled afterwards, come in the
    /// order of the frame. (A 64 KiB block received is not copied once more for nothing.)
    pub fn handle_frame_with(
        &mut self,
        frame: &[u8],
        on_message: &mut dyn FnMut(ChannelId, u64, &[u8]),
    ) -> Result<(), MuxError> {
        self.handle_frame_inner(frame, &mut Some(on_message))
    }

    fn handle_frame_inner(&mut self, frame: &[u8], sink: &mut Sink<'_>) -> Result<(), MuxError> {
        if self.destroyed {
            return Err(MuxError::Destroyed);
        }
        if frame.is_empty() {
            return Ok(());
        }
        let mut d = Decoder::new(frame);
        let result = d
            .uint()
            .map_err(MuxError::from)
            .and_then(|channel| self.decode(channel, &mut d, 0, sink));
        if let Err(e) = result {
            self.destroy();
            return Err(e);
        }
        Ok(())
    }

    /// The next frame to write to the stream, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front().map(OutFrame::into_bytes)
    }

    /// [`Protomux::poll_transmit`] of the frame as it was built: with the buffers given to
    /// [`Protomux::send_with_piece`] still apart (a transport that encrypts the parts where
    /// they are saves copying them).
    pub fn poll_transmit_frame(&mut self) -> Option<OutFrame> {
        self.transmit.pop_front()
    }

    /// The next event, if any. Returning `None` also releases the cork taken while handling a
    /// received multi-message batch (see the [module docs](self)).
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if event.is_none() {
            while self.batch_corks > 0 {
                self.batch_corks -= 1;
                self.uncork();
            }
        }
        event
    }

    /// Closes every channel (each gets [`Event::ChannelClosed`] with `by_remote: true`, as JS
    /// `_shutdown`), drops unsent frames and refuses everything afterwards. Call it when the
    /// stream closes.
    pub fn destroy(&mut self) {
        if self.destroyed {
            return;
        }
        self.destroyed = true;
        self.transmit.clear();
        self.batch = None;
        self.corked = 0;
        self.batch_corks = 0;
        let live: Vec<ChannelId> = self.local.iter().flatten().copied().collect();
        for channel in live {
            self.close_channel(
                channel,
                Event::ChannelClosed {
                    channel,
                    by_remote: true,
                },
            );
        }
    }

    // ---------------------------------------------------------------------------------------
    // Channel API

    /// Opens a channel: answers the oldest waiting incoming open of the same `(protocol, id)` if
    /// there is one (the channel is then open at once: [`Event::ChannelOpened`] follows, then the
    /// messages buffered for it), else sends an open and waits for the remote's (JS
    /// `createChannel` + `open`, index.js:87-116, 422-482).
    pub fn open(&mut self, options: ChannelOptions) -> Result<ChannelId, ChannelError> {
        if self.destroyed {
            return Err(ChannelError::Destroyed);
        }
        let ChannelOptions {
            protocol,
            id,
            aliases,
            handshake,
            message_types,
            unique,
        } = options;
        let info_slot = self.get_info(&protocol, id.as_deref(), &aliases);
        let Some(info) = self.info_mut(info_slot) else {
            return Err(ChannelError::Destroyed);
        };
        if unique && info.opened > 0 {
            return Err(ChannelError::AlreadyOpen);
        }
        let remote_id = match info.incoming.pop_front() {
            Some(remote_id) => {
                info.pairing = info.pairing.saturating_sub(1);
                if self.remote_slot(remote_id).is_none() {
                    return Err(ChannelError::RemoteGone);
                }
                remote_id
            }
            None => 0,
        };
        let channel = ChannelId(self.next_channel);
        self.next_channel += 1;

        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.local.push(None);
                self.local.len() as u64 - 1
            }
        };
        let local_id = index + 1;
        if let Some(slot) = self.local.get_mut(index as usize) {
            *slot = Some(channel);
        }
        if let Some(info) = self.info_mut(info_slot) {
            info.opened += 1;
            if remote_id == 0 {
                info.outgoing.push(local_id);
            }
        }
        self.channels.insert(
            channel,
            Channel {
                info: info_slot,
                local_id,
                remote_id,
                opened: false,
                message_types,
            },
        );
        let frame = open_frame(local_id, &protocol, id.as_deref(), &handshake);
        self.write_control(frame);
        if remote_id > 0 {
            if let Some(remote) = self.remote_slot(remote_id) {
                remote.session = Some(channel);
            }
            self.fully_open(channel);
        }
        Ok(channel)
    }

    /// `channel`'s local id, for a frame on it: [`ChannelError::Destroyed`] once the mux is
    /// destroyed, [`ChannelError::UnknownChannel`] for a channel it does not have.
    fn live_local_id(&self, channel: ChannelId) -> Result<u64, ChannelError> {
        if self.destroyed {
            return Err(ChannelError::Destroyed);
        }
        Ok(self
            .channels
            .get(&channel)
            .ok_or(ChannelError::UnknownChannel)?
            .local_id)
    }

    /// Sends a message of `message_type` on `channel`: `uint localId ‖ uint type ‖ payload`, or an
    /// item of the current batch when corked. Allowed before the remote answered the open (the
    /// remote buffers it), like JS.
    pub fn send(
        &mut self,
        channel: ChannelId,
        message_type: u64,
        payload: &[u8],
    ) -> Result<(), ChannelError> {
        let local_id = self.live_local_id(channel)?;
        if self.batch.is_some() {
            self.push_batch(local_id, Some(message_type), payload);
        } else {
            let mut buf =
                Vec::with_capacity(uint_len(local_id) + uint_len(message_type) + payload.len());
            write_uint(&mut buf, local_id);
            write_uint(&mut buf, message_type);
            buf.extend_from_slice(payload);
            self.transmit.push_back(buf.into());
        }
        Ok(())
    }

    /// [`Protomux::send`] of `message`'s encoding, written straight into the frame (or the
    /// current batch) instead of being encoded into a buffer of its own first: one copy less of
    /// every payload (a 64 KiB block answered by a server is otherwise copied once more).
    pub fn send_encoded<E: Encode + ?Sized>(
        &mut self,
        channel: ChannelId,
        message_type: u64,
        message: &E,
    ) -> Result<(), ChannelError> {
        let local_id = self.live_local_id(channel)?;
        if self.batch.is_some() {
            self.roll_batch();
            if let Some(batch) = &mut self.batch {
                batch.push_encoded(local_id, message_type, message);
            }
        } else {
            let len = message.encoded_len();
            let mut buf = Vec::with_capacity(uint_len(local_id) + uint_len(message_type) + len);
            write_uint(&mut buf, local_id);
            write_uint(&mut buf, message_type);
            message.encode(&mut buf);
            self.transmit.push_back(buf.into());
        }
        Ok(())
    }

    /// [`Protomux::send`] of the payload `head` with `piece` inserted at offset `at` of it (a
    /// message whose block the caller owns: it goes into the frame as it is, not copied; see
    /// [`OutFrame`]). The same frame as `send` of the joined payload.
    pub fn send_with_piece(
        &mut self,
        channel: ChannelId,
        message_type: u64,
        head: &[u8],
        at: usize,
        piece: Vec<u8>,
    ) -> Result<(), ChannelError> {
        let local_id = self.live_local_id(channel)?;
        let at = at.min(head.len());
        if self.batch.is_some() {
            self.roll_batch();
            if let Some(batch) = &mut self.batch {
                batch.push_with_piece(local_id, message_type, head, at, piece);
            }
        } else {
            let mut buf =
                Vec::with_capacity(uint_len(local_id) + uint_len(message_type) + head.len());
            write_uint(&mut buf, local_id);
            write_uint(&mut buf, message_type);
            let base = buf.len();
            buf.extend_from_slice(head);
            self.transmit.push_back(OutFrame {
                bytes: buf,
                pieces: vec![(base + at, piece)],
            });
        }
        Ok(())
    }

    /// Closes `channel`: sends a close and emits [`Event::ChannelClosed`] with `by_remote: false`
    /// (index.js:243-258). Its local id is reused by later opens once the remote had answered.
    pub fn close(&mut self, channel: ChannelId) -> Result<(), ChannelError> {
        let local_id = self.live_local_id(channel)?;
        let frame = control_frame(CONTROL_CLOSE, local_id);
        self.close_channel(
            channel,
            Event::ChannelClosed {
                channel,
                by_remote: false,
            },
        );
        self.write_control(frame);
        Ok(())
    }

    /// Rejects the oldest incoming open of `(protocol, id)` waiting for an answer (the answer to
    /// an [`Event::PairRequest`] the owner does not want).
    pub fn reject(&mut self, protocol: &str, id: Option<&[u8]>) -> Result<(), ChannelError> {
        if self.destroyed {
            return Err(ChannelError::Destroyed);
        }
        let id = id.filter(|id| !id.is_empty());
        let slot = *self
            .info_keys
            .get(&to_key(protocol, id))
            .ok_or(ChannelError::NoPendingOpen)?;
        let info = self.info_mut(slot).ok_or(ChannelError::NoPendingOpen)?;
        let remote_id = info
            .incoming
            .pop_front()
            .ok_or(ChannelError::NoPendingOpen)?;
        info.pairing = info.pairing.saturating_sub(1);
        self.reject_session(remote_id);
        self.gc(slot);
        Ok(())
    }

    /// Starts (or nests) a batch: until the matching [`Protomux::uncork`], everything sent goes
    /// into one batch frame (split at [`MAX_BATCH`] bytes).
    pub fn cork(&mut self) {
        self.corked += 1;
        if self.corked == 1 {
            self.batch = Some(BatchBuilder::with_capacity(self.batch_hint));
        }
    }

    /// Ends a [`Protomux::cork`]; the outermost one queues the batch frame. Uncorking a mux that
    /// is not corked does nothing.
    pub fn uncork(&mut self) {
        if self.corked == 0 {
            return;
        }
        self.corked -= 1;
        if self.corked == 0 {
            if let Some(frame) = self.batch.take().and_then(BatchBuilder::finish) {
                self.batch_hint = frame.bytes.len().min(MAX_BATCH_HINT);
                self.transmit.push_back(frame);
            }
        }
    }

    /// Offers incoming opens of `(protocol, id)` to the owner as [`Event::PairRequest`]
    /// (`id: None` matches any id of `protocol`) instead of rejecting them.
    pub fn pair(&mut self, protocol: &str, id: Option<&[u8]>) {
        self.notify.insert(to_key(protocol, id));
    }

    /// Undoes [`Protomux::pair`].
    pub fn unpair(&mut self, protocol: &str, id: Option<&[u8]>) {
        self.notify.remove(&to_key(protocol, id));
    }

    // ---------------------------------------------------------------------------------------
    // Introspection

    /// True once both sides opened `channel` and it is not closed.
    pub fn is_opened(&self, channel: ChannelId) -> bool {
        self.channels.get(&channel).is_some_and(|c| c.opened)
    }

    /// The local (wire) id of a live channel.
    pub fn local_id(&self, channel: ChannelId) -> Option<u64> {
        self.channels.get(&channel).map(|c| c.local_id)
    }

    /// The remote's id for a live channel, once known.
    pub fn remote_id(&self, channel: ChannelId) -> Option<u64> {
        self.channels
            .get(&channel)
            .map(|c| c.remote_id)
            .filter(|&id| id > 0)
    }

    /// True if a channel of `(protocol, id)` is open here (JS `mux.opened`).
    pub fn is_protocol_opened(&self, protocol: &str, id: Option<&[u8]>) -> bool {
        self.info_keys
            .get(&to_key(protocol, id))
            .and_then(|slot| self.infos.get(slot))
            .is_some_and(|info| info.opened > 0)
    }

    /// True when no local id is in use (JS `isIdle`).
    pub fn is_idle(&self) -> bool {
        self.local.len() == self.free.len()
    }

    /// True after [`Protomux::destroy`] or a protocol violation.
    pub fn is_destroyed(&self) -> bool {
        self.destroyed
    }

    /// True while corked (by the owner or a received batch).
    pub fn is_corked(&self) -> bool {
        self.corked > 0
    }

    /// Bytes accounted for messages buffered for channels not yet opened locally (JS counts
    /// 512 + payload length each).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// True when JS would pause the stream: more than [`MAX_BUFFERED`] bytes buffered.
    pub fn should_pause(&self) -> bool {
        self.buffered > MAX_BUFFERED
    }

    // ---------------------------------------------------------------------------------------
    // Receiving (index.js:559-801)

    /// JS `_decode`: `d` is positioned after the channel id and bounded to this message.
    fn decode(
        &mut self,
        remote_id: u64,
        d: &mut Decoder<'_>,
        depth: usize,
        sink: &mut Sink<'_>,
    ) -> Result<(), MuxError> {
        let message_type = d.uint()?;
        if remote_id == 0 {
            return self.on_control(message_type, d, depth, sink);
        }
        let Some(remote) = self.remote_slot(remote_id) else {
            // Unknown or closed channel: could be a message in flight, ignore it.
            return Ok(());
        };
        let payload = d.rest();
        if let Some(pending) = &mut remote.pending {
            pending.push((message_type, payload.to_vec()));
            self.buffered += buffered_size(payload);
            return Ok(());
        }
        let Some(channel) = remote.session else {
            return Ok(());
        };
        match sink {
            Some(on_message) if self.events.is_empty() => {
                if self
                    .channels
                    .get(&channel)
                    .is_some_and(|c| message_type < c.message_types)
                {
                    on_message(channel, message_type, payload);
                }
            }
            _ => self.recv(channel, message_type, payload.to_vec()),
        }
        Ok(())
    }

    fn on_control(
        &mut self,
        message_type: u64,
        d: &mut Decoder<'_>,
        depth: usize,
        sink: &mut Sink<'_>,
    ) -> Result<(), MuxError> {
        match message_type {
            CONTROL_BATCH => self.on_batch(d, depth, sink),
            CONTROL_OPEN => self.on_open(d),
            CONTROL_REJECT => self.on_reject(d),
            CONTROL_CLOSE => self.on_close(d),
            _ => Ok(()),
        }
    }

    /// `_onbatch` (index.js:643-671).
    fn on_batch(
        &mut self,
        d: &mut Decoder<'_>,
        depth: usize,
        sink: &mut Sink<'_>,
    ) -> Result<(), MuxError> {
        if depth >= MAX_BATCH_DEPTH {
            return Err(MuxError::BatchTooDeep);
        }
        let mut channel = d.uint()?;
        let mut corked = false;
        while !d.is_empty() {
            let Some(item) = next_batch_item(d, &mut channel)? else {
                continue;
            };
            // More than one message: reply with a batch too.
            if !d.is_empty() && !corked {
                corked = true;
                self.cork();
                self.batch_corks += 1;
            }
            self.decode(channel, &mut Decoder::new(item), depth + 1, sink)?;
        }
        Ok(())
    }

    /// `_onopensession` (index.js:673-725).
    fn on_open(&mut self, d: &mut Decoder<'_>) -> Result<(), MuxError> {
        let remote_id = d.uint()?;
        // JS decodes the protocol name lossily.
        let protocol = String::from_utf8_lossy(d.buffer()?).into_owned();
        let id = d.optional_buffer()?.map(<[u8]>::to_vec);
        let handshake = d.rest().to_vec();

        // JS answers an open of the control channel with a reject it cannot encode (it passes
        // `undefined` as the id), which throws and destroys the stream.
        if remote_id == 0 {
            return Err(MuxError::InvalidOpen { remote_id });
        }
        let rid = remote_id - 1;
        if self.remote.len() as u64 == rid {
            self.remote.push(None);
        }
        if rid >= self.remote.len() as u64 || self.remote[rid as usize].is_some() {
            return Err(MuxError::InvalidOpen { remote_id });
        }
        let rid = rid as usize;
        let slot = self.get_info(&protocol, id.as_deref(), &[]);
        let Some(info) = self.info_mut(slot) else {
            return Ok(());
        };

        if !info.outgoing.is_empty() {
            let local_id = info.outgoing.remove(0);
            let Some(channel) = self.local_slot(local_id) else {
                // We closed that channel before the remote answered: its id is free now.
                self.free.push(local_id - 1);
                return Ok(());
            };
            self.remote[rid] = Some(Remote {
                handshake,
                pending: None,
                session: Some(channel),
            });
            if let Some(c) = self.channels.get_mut(&channel) {
                c.remote_id = remote_id;
            }
            self.fully_open(channel);
            return Ok(());
        }

        info.incoming.push_back(remote_id);
        self.remote[rid] = Some(Remote {
            handshake: handshake.clone(),
            pending: Some(Vec::new()),
            session: None,
        });
        let paired = self.notify.contains(&to_key(&protocol, id.as_deref()))
            || self.notify.contains(&to_key(&protocol, None));
        if paired {
            if let Some(info) = self.info_mut(slot) {
                info.pairing += 1;
            }
            self.events.push_back(Event::PairRequest {
                protocol,
                id,
                handshake,
            });
        } else {
            // No pairing: JS rejects once its (absent) notify resolves.
            if let Some(info) = self.info_mut(slot) {
                if let Some(pos) = info.incoming.iter().position(|&r| r == remote_id) {
                    info.incoming.remove(pos);
                }
            }
            self.reject_session(remote_id);
            self.gc(slot);
        }
        Ok(())
    }

    /// `_onrejectsession` (index.js:727-747).
    fn on_reject(&mut self, d: &mut Decoder<'_>) -> Result<(), MuxError> {
        let local_id = d.uint()?;
        let found = self.infos.iter_mut().find_map(|(&slot, info)| {
            let pos = info.outgoing.iter().position(|&l| l == local_id)?;
            info.outgoing.remove(pos);
            Some(slot)
        });
        let Some(slot) = found else {
            return Err(MuxError::InvalidReject { local_id });
        };
        self.free.push(local_id - 1);
        if let Some(channel) = self.local_slot(local_id) {
            self.close_channel(channel, Event::ChannelRejected { channel });
        }
        self.gc(slot);
        Ok(())
    }

    /// `_onclosesession` (index.js:749-760).
    fn on_close(&mut self, d: &mut Decoder<'_>) -> Result<(), MuxError> {
        let remote_id = d.uint()?;
        if let Some(channel) = self.remote_slot(remote_id).and_then(|r| r.session) {
            self.close_channel(
                channel,
                Event::ChannelClosed {
                    channel,
                    by_remote: true,
                },
            );
        }
        Ok(())
    }

    /// JS `_recv`: deliver unless the type is unknown to the channel.
    fn recv(&mut self, channel: ChannelId, message_type: u64, payload: Vec<u8>) {
        if let Some(c) = self.channels.get(&channel) {
            if message_type < c.message_types {
                self.events.push_back(Event::Message {
                    channel,
                    message_type,
                    payload,
                });
            }
        }
    }

    /// JS `_fullyOpen` (index.js:141-156): opened event, then the buffered messages.
    fn fully_open(&mut self, channel: ChannelId) {
        let Some(c) = self.channels.get_mut(&channel) else {
            return;
        };
        c.opened = true;
        let remote_id = c.remote_id;
        let Some(remote) = self.remote_slot(remote_id) else {
            return;
        };
        let handshake = std::mem::take(&mut remote.handshake);
        let pending = remote.pending.take();
        self.events
            .push_back(Event::ChannelOpened { channel, handshake });
        for (message_type, payload) in pending.into_iter().flatten() {
            self.buffered = self.buffered.saturating_sub(buffered_size(&payload));
            self.recv(channel, message_type, payload);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Bookkeeping

    /// JS `_get` (index.js:522-549): the info of `(protocol, id)`, created with `aliases` if new.
    fn get_info(&mut self, protocol: &str, id: Option<&[u8]>, aliases: &[String]) -> u64 {
        let key = to_key(protocol, id);
        if let Some(&slot) = self.info_keys.get(&key) {
            return slot;
        }
        let slot = self.next_info;
        self.next_info += 1;
        let alias_keys: Vec<String> = aliases.iter().map(|a| to_key(a, id)).collect();
        for alias in &alias_keys {
            self.info_keys.insert(alias.clone(), slot);
        }
        self.info_keys.insert(key.clone(), slot);
        self.infos.insert(
            slot,
            Info {
                key,
                aliases: alias_keys,
                opened: 0,
                incoming: VecDeque::new(),
                pairing: 0,
                outgoing: Vec::new(),
            },
        );
        slot
    }

    /// The info in `slot`. `get_info` just returned it or a key maps to it, so it exists; callers
    /// still treat a missing one as "nothing to do" rather than panic.
    fn info_mut(&mut self, slot: u64) -> Option<&mut Info> {
        self.infos.get_mut(&slot)
    }

    /// JS `_gc` (index.js:551-557).
    fn gc(&mut self, slot: u64) {
        let Some(info) = self.infos.get(&slot) else {
            return;
        };
        if info.opened == 0 && info.outgoing.is_empty() && info.incoming.is_empty() {
            if let Some(info) = self.infos.remove(&slot) {
                self.info_keys.remove(&info.key);
                for alias in &info.aliases {
                    self.info_keys.remove(alias);
                }
            }
        }
    }

    fn local_slot(&self, local_id: u64) -> Option<ChannelId> {
        let index = usize::try_from(local_id.checked_sub(1)?).ok()?;
        self.local.get(index).copied().flatten()
    }

    fn remote_slot(&mut self, remote_id: u64) -> Option<&mut Remote> {
        let index = usize::try_from(remote_id.checked_sub(1)?).ok()?;
        self.remote.get_mut(index)?.as_mut()
    }

    /// JS `Channel._close` (index.js:193-217), then `event`.
    fn close_channel(&mut self, channel: ChannelId, event: Event) {
        let Some(c) = self.channels.remove(&channel) else {
            return;
        };
        if let Some(info) = self.infos.get_mut(&c.info) {
            info.opened = info.opened.saturating_sub(1);
        }
        if c.remote_id > 0 {
            if let Some(slot) = self.remote.get_mut((c.remote_id - 1) as usize) {
                *slot = None;
            }
            // The remote has answered: the local id can be reused now.
            self.free.push(c.local_id - 1);
        }
        if let Some(slot) = self.local.get_mut((c.local_id - 1) as usize) {
            *slot = None;
        }
        self.gc(c.info);
        self.events.push_back(event);
    }

    /// JS `_rejectSession` (index.js:776-801).
    fn reject_session(&mut self, remote_id: u64) {
        if let Some(index) = remote_id.checked_sub(1) {
            if let Some(slot) = self.remote.get_mut(index as usize) {
                if let Some(pending) = slot.take().and_then(|r| r.pending) {
                    for (_, payload) in pending {
                        self.buffered = self.buffered.saturating_sub(buffered_size(&payload));
                    }
                }
            }
        }
        self.write_control(control_frame(CONTROL_REJECT, remote_id));
    }

    /// JS `_write0` (index.js:803-810): a control frame, or a channel-0 batch item when corked.
    fn write_control(&mut self, frame: Vec<u8>) {
        if self.batch.is_some() {
            self.push_batch(0, None, &frame[1..]);
        } else {
            self.transmit.push_back(frame.into());
        }
    }

    /// JS `_pushBatch` (index.js:484-497).
    /// The item is `uint message_type ‖ payload`, or `payload` alone when that already starts
    /// with its type.
    fn push_batch(&mut self, local_id: u64, message_type: Option<u64>, payload: &[u8]) {
        self.roll_batch();
        if let Some(batch) = &mut self.batch {
            batch.push(local_id, message_type, payload);
        }
    }

    /// While corked: send the current batch and start a new one once it reached [`MAX_BATCH`].
    fn roll_batch(&mut self) {
        let Some(batch) = &mut self.batch else {
            return;
        };
        if !batch.is_empty() && batch.len() >= MAX_BATCH {
            let full = std::mem::replace(batch, BatchBuilder::with_capacity(self.batch_hint));
            if let Some(frame) = full.finish() {
                self.transmit.push_back(frame);
            }
        }
    }
}
