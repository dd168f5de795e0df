//! @hyperswarm/secret-stream 6.9.2 as a sans-IO state machine.
//!
//! Wire format (both directions of a reliable byte stream, e.g. TCP or a UDX stream):
//! 1. Noise handshake messages ([`crate::noise`], `XX` by default or `IK`), each framed as
//!    `u24 LE length ‖ message`; the initiator speaks first.
//! 2. Once its handshake completes, each side sends one 56-byte frame: its stream id
//!    `BLAKE2b-256(NS_INITIATOR or NS_RESPONDER, key = handshake hash)` followed by its libsodium
//!    secretstream header ([`cipher::HEADERBYTES`] bytes). A received id must be the peer's.
//! 3. Every message is then one frame holding a `crypto_secretstream_xchacha20poly1305` push of it
//!    (tag [`cipher::TAG_MESSAGE`]), so a frame is at least [`cipher::ABYTES`] bytes. Keep-alives are
//!    empty messages; a stream with keep-alive on (or [`Options::filter_zero_byte_messages`]) drops
//!    received empty messages instead of reporting them.
//!
//! Unordered datagrams (`stream.send()` over UDX) use [`datagram::SecretSend`], whose state the
//! stream sets up at the handshake ([`SecretStream::send_datagram`], [`SecretStream::recv_datagram`]).
//!
//! # Driving it
//! The transport feeds bytes from the wire to [`SecretStream::handle_input`] (any chunking), tells
//! it about the peer's end of stream with [`SecretStream::handle_eof`], writes out whatever
//! [`SecretStream::poll_transmit`] returns, shuts its write half once
//! [`SecretStream::wants_shutdown`] is true, arms a timer for [`SecretStream::poll_timeout`] and calls
//! [`SecretStream::handle_timeout`] when it expires, and reports [`SecretStream::poll_event`]s to the
//! application. Time is a `u64` of milliseconds from any origin the transport chooses; randomness
//! comes in as an [`Entropy`].
//!
//! Errors (bad frames, failed handshake, bad MACs, timeout) close the stream: the last event is
//! [`Event::Closed`] with the [`StreamError`], and nothing more is sent or received.

mod chacha20_x16;
pub mod cipher;
pub mod datagram;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use crate::crypto::{hash, hash_batch, keyed_hash_batch, KeyPair};
use crate::noise::{Handshake, NoiseError, Pattern, Split};
use cipher::{Pull, Push, ABYTES, HEADERBYTES, TAG_MESSAGE};
use datagram::SecretSend;

/// Length of the stream-id + header frame.
pub const IDHEADERBYTES: usize = 32 + HEADERBYTES;
/// The largest frame a u24 length prefix allows (JS `MAX_ATOMIC_WRITE`).
pub const MAX_FRAME_LEN: usize = 0xff_ffff;
/// The most a frame's buffer reserves when its length arrives; larger frames grow it as their
/// bytes come in.
const MAX_FRAME_RESERVE: usize = 1 << 20;
/// At most this many message buffers are kept for reuse ([`SecretStream::recycle`]).
pub const SPARE_BUFFERS: usize = 16;
/// The largest message one [`SecretStream::write`] accepts.
pub const MAX_MESSAGE_LEN: usize = MAX_FRAME_LEN - ABYTES;

/// `crypto.namespace('hyperswarm/secret-stream', 3)`: `[NS_INITIATOR, NS_RESPONDER, NS_SEND]`.
pub fn namespaces() -> [[u8; 32]; 3] {
    let ns = hash(b"hyperswarm/secret-stream");
    [0u8, 1, 2].map(|i| hash_batch(&[&ns, &[i]]))
}

/// JS `NoiseSecretStream.id(handshakeHash, isInitiator)`: the stream id a side sends in its header
/// frame, `BLAKE2b-256(NS_INITIATOR or NS_RESPONDER, key = handshake hash)`.
pub fn stream_id(handshake_hash: &[u8; 64], is_initiator: bool) -> [u8; 32] {
    let [ns_initiator, ns_responder, _] = namespaces();
    let ns = if is_initiator {
        ns_initiator
    } else {
        ns_responder
    };
    keyed_hash_batch(handshake_hash, &[&ns])
}

/// The random bytes one stream needs (the JS stream draws them itself).
#[derive(Clone)]
pub struct Entropy {
    /// Seed of the Noise ephemeral key pair (unused when starting from an external handshake).
    pub ephemeral_seed: [u8; 32],
    /// The secretstream header sent to the peer.
    pub header: [u8; HEADERBYTES],
    /// The initial datagram send counter.
    pub send_counter: [u8; 8],
}

impl Entropy {
    /// Splits 64 random bytes into the three parts, in field order.
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        let mut e = Entropy {
            ephemeral_seed: [0; 32],
            header: [0; HEADERBYTES],
            send_counter: [0; 8],
        };
        e.ephemeral_seed.copy_from_slice(&bytes[..32]);
        e.header.copy_from_slice(&bytes[32..56]);
        e.send_counter.copy_from_slice(&bytes[56..]);
        e
    }
}

impl core::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Entropy").finish_non_exhaustive()
    }
}

/// Stream options (the JS constructor's `opts` plus `setTimeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The handshake pattern (JS `opts.pattern`, default `XX`).
    pub pattern: Pattern,
    /// The peer's static key: required by an `IK` initiator. Like JS, an `XX` handshake does not
    /// check it; compare [`Event::Connected`]'s key yourself if it matters.
    pub remote_public_key: Option<[u8; 32]>,
    /// Send an empty message after this many idle milliseconds of writing (0 = off; JS `keepAlive`).
    pub keep_alive: u64,
    /// Close with [`StreamError::TimedOut`] after this many milliseconds without receiving bytes
    /// (0 = off; JS `setTimeout`).
    pub timeout: u64,
    /// Drop received empty messages (always on when `keep_alive` is set, as in JS).
    pub filter_zero_byte_messages: bool,
    /// Largest frame accepted from the peer (default and maximum [`MAX_FRAME_LEN`], as JS).
    pub max_frame_len: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pattern: Pattern::XX,
            remote_public_key: None,
            keep_alive: 0,
            timeout: 0,
            filter_zero_byte_messages: false,
            max_frame_len: MAX_FRAME_LEN,
        }
    }
}

/// What the stream reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed (JS `connect`); writes are now sent encrypted.
    Connected {
        /// The peer's static public key.
        remote_public_key: [u8; 32],
        /// The 64-byte handshake hash.
        handshake_hash: [u8; 64],
    },
    /// A message from the peer.
    Message(Vec<u8>),
    /// The peer ended its side (end of stream after complete frames).
    End,
    /// The stream is closed; the error says why, `None` for a clean close. Always the last event.
    Closed(Option<StreamError>),
}

/// Why a stream closed, or why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The Noise handshake failed.
    #[error("Noise handshake failed: {0}")]
    Handshake(#[from] NoiseError),
    /// The frame after the handshake is not 56 bytes.
    #[error("Invalid header message received ({len} bytes)")]
    InvalidHeaderMessage {
        /// Its length.
        len: usize,
    },
    /// The stream id in the peer's header frame is not the expected one.
    #[error("Invalid header received (stream id mismatch)")]
    InvalidStreamId,
    /// A message frame shorter than the secretstream overhead.
    #[error("Invalid message received ({len} bytes)")]
    InvalidMessage {
        /// Its length.
        len: usize,
    },
    /// A message frame failed authentication.
    #[error("message failed authentication")]
    Decrypt,
    /// A frame longer than [`Options::max_frame_len`].
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A write larger than [`MAX_MESSAGE_LEN`] (refused; the stream stays open).
    #[error("Message is too large for an atomic write ({len} bytes, max {max})")]
    MessageTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Nothing was received for [`Options::timeout`] milliseconds.
    #[error("Stream timed out")]
    TimedOut,
    /// The peer ended the stream before the handshake and header exchange finished.
    #[error("stream ended during the handshake")]
    EndedDuringHandshake,
    /// The peer ended the stream in the middle of a frame.
    #[error("stream ended in the middle of a frame")]
    TruncatedFrame,
    /// The datagram send counter wrapped around to its start.
    #[error("udp send nonce exhausted")]
    NonceExhausted,
    /// A write or datagram after [`SecretStream::end`] or after the stream closed.
    #[error("the stream is ended or closed")]
    NotWritable,
    /// A datagram before the handshake completed.
    #[error("the stream is not connected yet")]
    NotConnected,
    /// The application destroyed the stream with a reason of its own.
    #[error("stream destroyed: {0}")]
    Destroyed(String),
}

/// Keys and ciphers of a stream whose handshake completed.
impl Session {
    /// One message's frame appended to `out`: its 3-byte length, then it encrypted.
    fn frame_into(&mut self, out: &mut Vec<u8>, message: &[u8]) {
        out.extend_from_slice(&((message.len() + ABYTES) as u32).to_le_bytes()[..3]);
        self.push.push_into(out, message, TAG_MESSAGE);
    }
}

struct Session {
    push: Push,
    pull: Option<Pull>,
    rx_key: [u8; 32],
    hash: [u8; 64],
    remote_public_key: [u8; 32],
    send: SecretSend,
}

/// One side of a secret-stream; see the [module docs](self).
pub struct SecretStream {
    is_initiator: bool,
    public_key: [u8; 32],
    options: Options,
    entropy: Entropy,
    handshake: Option<Handshake>,
    session: Option<Session>,
    // Framing of what arrives.
    len_buf: [u8; 3],
    len_have: usize,
    frame_len: Option<usize>,
    /// The frame's bytes so far, without its first byte when that is held in `first`.
    frame: Vec<u8>,
    /// Whether this frame is a message whose first byte (the encrypted tag) goes to `first`, so
    /// that `frame` becomes its ciphertext and, decrypted in place, the plaintext.
    split_first: bool,
    first: Option<u8>,
    /// Buffers of delivered messages given back ([`SecretStream::recycle`]), reused for the
    /// next frames (no allocation, no fresh pages per frame).
    spare: Vec<Vec<u8>>,
    // What leaves.
    outgoing: VecDeque<Vec<u8>>,
    pending_writes: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    local_ended: bool,
    remote_ended: bool,
    closed: bool,
    now: u64,
    keep_alive_at: Option<u64>,
    timeout_at: Option<u64>,
}

impl core::fmt::Debug for SecretStream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecretStream")
            .field("is_initiator", &self.is_initiator)
            .field("connected", &self.is_connected())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl SecretStream {
    /// A stream that runs the handshake as initiator (JS `new NoiseSecretStream(true, raw, opts)`);
    /// its first handshake message is ready in [`poll_transmit`](Self::poll_transmit).
    pub fn new_initiator(
        key_pair: KeyPair,
        entropy: Entropy,
        options: Options,
        now: u64,
    ) -> Result<Self, StreamError> {
        Self::with_handshake(true, key_pair, entropy, options, now)
    }

    /// A stream that runs the handshake as responder.
    pub fn new_responder(
        key_pair: KeyPair,
        entropy: Entropy,
        options: Options,
        now: u64,
    ) -> Result<Self, StreamError> {
        Self::with_handshake(false, key_pair, entropy, options, now)
    }

    /// A stream over a handshake done elsewhere (JS `opts.handshake`, as hyperdht hands over):
    /// `split` holds this side's tx/rx keys, the handshake hash and both public keys. It is
    /// connected at once and its header frame is ready in [`poll_transmit`](Self::poll_transmit).
    pub fn from_handshake(
        is_initiator: bool,
        split: Split,
        entropy: Entropy,
        options: Options,
        now: u64,
    ) -> Self {
        let mut s = Self::blank(is_initiator, split.public_key, entropy, options, now);
        s.setup(split);
        s
    }

    fn blank(
        is_initiator: bool,
        public_key: [u8; 32],
        entropy: Entropy,
        mut options: Options,
        now: u64,
    ) -> Self {
        if options.keep_alive > 0 {
            options.filter_zero_byte_messages = true;
        }
        options.max_frame_len = options.max_frame_len.min(MAX_FRAME_LEN);
        let keep_alive_at =
            (options.keep_alive > 0).then(|| now.saturating_add(options.keep_alive));
        let timeout_at = (options.timeout > 0).then(|| now.saturating_add(options.timeout));
        SecretStream {
            is_initiator,
            public_key,
            options,
            entropy,
            handshake: None,
            session: None,
            len_buf: [0; 3],
            len_have: 0,
            frame_len: None,
            frame: Vec::new(),
            spare: Vec::new(),
            split_first: false,
            first: None,
            outgoing: VecDeque::new(),
            pending_writes: VecDeque::new(),
            events: VecDeque::new(),
            local_ended: false,
            remote_ended: false,
            closed: false,
            now,
            keep_alive_at,
            timeout_at,
        }
    }

    fn with_handshake(
        is_initiator: bool,
        key_pair: KeyPair,
        entropy: Entropy,
        options: Options,
        now: u64,
    ) -> Result<Self, StreamError> {
        let ephemeral = KeyPair::from_seed(&entropy.ephemeral_seed);
        let handshake = Handshake::new(
            options.pattern,
            is_initiator,
            key_pair.clone(),
            ephemeral,
            &[],
            options.remote_public_key,
        )?;
        let mut s = Self::blank(is_initiator, key_pair.public_key, entropy, options, now);
        s.handshake = Some(handshake);
        if is_initiator {
            s.send_handshake()?;
        }
        Ok(s)
    }

    /// Whether this side is the initiator.
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// This side's static public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The peer's static public key, once the handshake completed.
    pub fn remote_public_key(&self) -> Option<[u8; 32]> {
        self.session.as_ref().map(|s| s.remote_public_key)
    }

    /// The handshake hash, once the handshake completed.
    pub fn handshake_hash(&self) -> Option<[u8; 64]> {
        self.session.as_ref().map(|s| s.hash)
    }

    /// Whether the handshake completed (and the stream has not closed).
    pub fn is_connected(&self) -> bool {
        self.session.is_some() && !self.closed
    }

    /// Whether the stream is closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Feeds bytes read from the wire, in any chunking.
    pub fn handle_input(&mut self, now: u64, mut input: &[u8]) {
        self.now = self.now.max(now);
        if self.closed {
            return;
        }
        if self.options.timeout > 0 {
            self.timeout_at = Some(self.now.saturating_add(self.options.timeout));
        }
        while !self.closed {
            if let Some(len) = self.frame_len {
                let have = self.frame.len() + usize::from(self.first.is_some());
                if have == len {
                    let frame = core::mem::take(&mut self.frame);
                    let first = self.first.take();
                    self.frame_len = None;
                    self.len_have = 0;
                    if let Err(e) = self.on_frame(first, frame) {
                        self.fail(e);
                    }
                    continue;
                }
                if input.is_empty() {
                    break;
                }
                if self.split_first && self.first.is_none() {
                    self.first = Some(input[0]);
                    input = &input[1..];
                    continue;
                }
                let n = (len - have).min(input.len());
                self.frame.extend_from_slice(&input[..n]);
                input = &input[n..];
            } else {
                if input.is_empty() {
                    break;
                }
                let n = (3 - self.len_have).min(input.len());
                self.len_buf[self.len_have..self.len_have + n].copy_from_slice(&input[..n]);
                self.len_have += n;
                input = &input[n..];
                if self.len_have == 3 {
                    let len =
                        u32::from_le_bytes([self.len_buf[0], self.len_buf[1], self.len_buf[2], 0])
                            as usize;
                    if len > self.options.max_frame_len {
                        self.fail(StreamError::FrameTooLarge {
                            len,
                            max: self.options.max_frame_len,
                        });
                        break;
                    }
                    self.frame_len = Some(len);
                    self.split_first = len >= ABYTES
                        && self.handshake.is_none()
                        && self.session.as_ref().is_some_and(|s| s.pull.is_some());
                    // The whole frame at once (no regrowing and copying), up to a bound on what
                    // a peer can make us reserve before sending it.
                    let reserve = len.min(MAX_FRAME_RESERVE);
                    // A spare buffer that holds it, or a new one: growing a smaller spare would
                    // copy its old bytes (`realloc`), a 64 KiB copy per block for nothing.
                    self.frame = match self.spare.iter().rposition(|b| b.capacity() >= reserve) {
                        Some(i) => {
                            let mut b = self.spare.swap_remove(i);
                            b.clear();
                            b
                        }
                        None => {
                            // Make room for the new one when it comes back.
                            self.spare.pop();
                            Vec::with_capacity(reserve)
                        }
                    };
                }
            }
        }
    }

    /// The peer ended its side of the byte stream.
    pub fn handle_eof(&mut self, now: u64) {
        self.now = self.now.max(now);
        if self.closed || self.remote_ended {
            return;
        }
        self.remote_ended = true;
        let set_up = self.session.as_ref().is_some_and(|s| s.pull.is_some());
        if !set_up {
            return self.fail(StreamError::EndedDuringHandshake);
        }
        if self.frame_len.is_some() || self.len_have > 0 {
            return self.fail(StreamError::TruncatedFrame);
        }
        self.events.push_back(Event::End);
        self.maybe_finish();
    }

    /// Whether a message of `len` bytes may be written now.
    fn check_writable(&self, len: usize) -> Result<(), StreamError> {
        if self.closed || self.local_ended {
            return Err(StreamError::NotWritable);
        }
        if len > MAX_MESSAGE_LEN {
            return Err(StreamError::MessageTooLarge {
                len,
                max: MAX_MESSAGE_LEN,
            });
        }
        Ok(())
    }

    /// Queues `message` to be sent encrypted (before the handshake completes it waits, as JS
    /// buffers writes until the stream opens).
    pub fn write(&mut self, message: &[u8]) -> Result<(), StreamError> {
        self.check_writable(message.len())?;
        if self.session.is_none() {
            self.pending_writes.push_back(message.to_vec());
        } else {
            self.encrypt(message);
        }
        Ok(())
    }

    /// [`write`](Self::write) of several messages at once: their frames, one after the other,
    /// come out of [`poll_transmit`](Self::poll_transmit) in one buffer (one allocation, and one
    /// write for the transport instead of one per message). The same bytes as writing them one
    /// by one. Refused as a whole (nothing queued) if one is too large.
    pub fn write_batch<M: AsRef<[u8]>>(&mut self, messages: &[M]) -> Result<(), StreamError> {
        let mut total = 0usize;
        for m in messages {
            let m = m.as_ref();
            self.check_writable(m.len())?;
            total += 3 + m.len() + ABYTES;
        }
        let Some(session) = self.session.as_mut() else {
            self.pending_writes
                .extend(messages.iter().map(|m| m.as_ref().to_vec()));
            return Ok(());
        };
        if messages.is_empty() {
            return Ok(());
        }
        let mut out = Vec::with_capacity(total);
        for m in messages {
            session.frame_into(&mut out, m.as_ref());
        }
        self.outgoing.push_back(out);
        self.rearm_keep_alive();
        Ok(())
    }

    /// [`write`](Self::write) of a message the caller gives away: it is encrypted in place, not
    /// copied. What [`poll_transmit`](Self::poll_transmit) then hands out for it are three
    /// pieces (the frame's length and encrypted tag, the ciphertext, the MAC) whose bytes, one
    /// after the other, are those `write` gives in one piece: a transport that sends them with
    /// one vectored write saves copying each message.
    pub fn write_owned(&mut self, mut message: Vec<u8>) -> Result<(), StreamError> {
        self.check_writable(message.len())?;
        let Some(session) = self.session.as_mut() else {
            self.pending_writes.push_back(message);
            return Ok(());
        };
        let len = message.len() + ABYTES;
        let (tag, mac) = session.push.push_in_place(&mut message, TAG_MESSAGE);
        let l = (len as u32).to_le_bytes();
        self.outgoing.push_back(vec![l[0], l[1], l[2], tag]);
        self.outgoing.push_back(message);
        self.outgoing.push_back(mac.to_vec());
        self.rearm_keep_alive();
        Ok(())
    }

    /// [`write_owned`](Self::write_owned) of the message `head` with the owned `pieces` inserted
    /// into it, each at its offset in `head` (ascending; a frame whose blocks were not copied
    /// into it, [`crate::protomux::OutFrame`]): every part is encrypted in place, none is copied
    /// into one buffer. The same bytes on the wire as `write` of the joined message; what
    /// [`poll_transmit`](Self::poll_transmit) hands out for it is the frame's length and tag,
    /// the parts, then the MAC.
    pub fn write_parts(
        &mut self,
        head: Vec<u8>,
        pieces: Vec<(usize, Vec<u8>)>,
    ) -> Result<(), StreamError> {
        if pieces.is_empty() {
            return self.write_owned(head);
        }
        let total = head.len() + pieces.iter().map(|p| p.1.len()).sum::<usize>();
        self.check_writable(total)?;
        // The parts in order: pieces of `head` between the inserted ones.
        let mut parts = Vec::with_capacity(2 * pieces.len() + 1);
        let mut from = 0;
        for (at, piece) in pieces {
            let at = at.clamp(from, head.len());
            if at > from {
                parts.push(head[from..at].to_vec());
            }
            parts.push(piece);
            from = at;
        }
        if from < head.len() {
            parts.push(head[from..].to_vec());
        }
        let Some(session) = self.session.as_mut() else {
            self.pending_writes.push_back(crate::storage::join(parts));
            return Ok(());
        };
        let (tag, mac) = session.push.push_parts_in_place(&mut parts, TAG_MESSAGE);
        let l = ((total + ABYTES) as u32).to_le_bytes();
        self.outgoing.push_back(vec![l[0], l[1], l[2], tag]);
        self.outgoing
            .extend(parts.into_iter().filter(|p| !p.is_empty()));
        self.outgoing.push_back(mac.to_vec());
        self.rearm_keep_alive();
        Ok(())
    }

    /// Ends this side gracefully: no more writes; once everything queued is sent,
    /// [`wants_shutdown`](Self::wants_shutdown) turns true. The stream closes cleanly when the peer
    /// has ended too.
    pub fn end(&mut self) {
        if self.closed {
            return;
        }
        self.local_ended = true;
        self.keep_alive_at = None;
        self.maybe_finish();
    }

    /// Closes the stream at once, dropping whatever was not yet transmitted; `reason` is reported
    /// in the final [`Event::Closed`].
    pub fn destroy(&mut self, reason: Option<StreamError>) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.outgoing.clear();
        self.pending_writes.clear();
        self.frame = Vec::new();
        self.first = None;
        self.keep_alive_at = None;
        self.timeout_at = None;
        self.handshake = None;
        self.events.push_back(Event::Closed(reason));
    }

    /// The next bytes to write to the wire.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let out = self.outgoing.pop_front();
        if out.is_none() {
            self.maybe_finish();
        }
        out
    }

    /// Whether the transport should shut down its write half now: [`end`](Self::end) was called,
    /// the handshake completed and everything was handed out by
    /// [`poll_transmit`](Self::poll_transmit). It stays true after the clean close that follows
    /// once the peer has ended too, so a transport that checks it after [`Event::Closed`] still
    /// sends its FIN.
    pub fn wants_shutdown(&self) -> bool {
        self.local_ended
            && self.session.is_some()
            && self.outgoing.is_empty()
            && self.pending_writes.is_empty()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Give back the buffer of a delivered [`Event::Message`] once done with it: the stream
    /// reuses it for a later frame instead of allocating (optional; a few are kept, small ones
    /// and those beyond [`SPARE_BUFFERS`] are dropped).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && buf.capacity() >= 4096 {
            self.spare.push(buf);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next, if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        match (self.keep_alive_at, self.timeout_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers due at `now`: the receive timeout closes the stream, the keep-alive queues
    /// an empty message.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
        if self.closed {
            return;
        }
        if self.timeout_at.is_some_and(|t| t <= self.now) {
            return self.fail(StreamError::TimedOut);
        }
        if self.keep_alive_at.is_some_and(|t| t <= self.now) {
            self.keep_alive_at = Some(self.now.saturating_add(self.options.keep_alive));
            // JS queues the empty write until the stream opens; nothing is gained by piling up
            // keep-alives before then, so only connected streams send them.
            if self.session.is_some() && !self.local_ended {
                self.encrypt(&[]);
            }
        }
    }

    /// Boxes a datagram for the peer (JS `send`/`trySend` over a UDX stream); the transport sends
    /// the envelope as one UDX message.
    pub fn send_datagram(&mut self, message: &[u8]) -> Result<Vec<u8>, StreamError> {
        if self.closed {
            return Err(StreamError::NotWritable);
        }
        let session = self.session.as_mut().ok_or(StreamError::NotConnected)?;
        match session.send.seal(message) {
            Ok(envelope) => Ok(envelope),
            Err(e) => {
                self.fail(e.clone());
                Err(e)
            }
        }
    }

    /// Opens a datagram from the peer; `None` before the handshake or for invalid envelopes (which
    /// JS drops silently).
    pub fn recv_datagram(&self, envelope: &[u8]) -> Option<Vec<u8>> {
        if self.closed {
            return None;
        }
        self.session.as_ref()?.send.open(envelope)
    }

    fn fail(&mut self, error: StreamError) {
        self.destroy(Some(error));
    }

    fn maybe_finish(&mut self) {
        if !self.closed && self.remote_ended && self.wants_shutdown() {
            self.closed = true;
            self.keep_alive_at = None;
            self.timeout_at = None;
            self.events.push_back(Event::Closed(None));
        }
    }

    fn push_frame(&mut self, body: &[u8]) {
        let mut out = Vec::with_capacity(3 + body.len());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
        out.extend_from_slice(body);
        self.outgoing.push_back(out);
    }

    fn encrypt(&mut self, message: &[u8]) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let mut out = Vec::with_capacity(3 + message.len() + ABYTES);
        session.frame_into(&mut out, message);
        self.outgoing.push_back(out);
        self.rearm_keep_alive();
    }

    /// A message went out: the next keep-alive is due one interval from now.
    fn rearm_keep_alive(&mut self) {
        if self.options.keep_alive > 0 && !self.local_ended {
            self.keep_alive_at = Some(self.now.saturating_add(self.options.keep_alive));
        }
    }

    /// Sends the next handshake message; sets the session up if that completed the handshake.
    fn send_handshake(&mut self) -> Result<(), StreamError> {
        let Some(hs) = self.handshake.as_mut() else {
            return Ok(());
        };
        let msg = hs.send(&[])?;
        self.push_frame(&msg);
        self.after_handshake_step();
        Ok(())
    }

    fn after_handshake_step(&mut self) {
        if self.handshake.as_ref().is_some_and(Handshake::is_complete) {
            if let Some(split) = self.handshake.take().and_then(|h| h.finish().ok()) {
                self.setup(split);
            }
        }
    }

    fn setup(&mut self, split: Split) {
        let push = Push::new(&split.tx, self.entropy.header);
        let mut body = [0u8; IDHEADERBYTES];
        body[..32].copy_from_slice(&stream_id(&split.hash, self.is_initiator));
        body[32..].copy_from_slice(&push.header());
        self.push_frame(&body);
        self.session = Some(Session {
            push,
            pull: None,
            rx_key: split.rx,
            hash: split.hash,
            remote_public_key: split.remote_public_key,
            send: SecretSend::new(&split.hash, self.is_initiator, self.entropy.send_counter),
        });
        self.events.push_back(Event::Connected {
            remote_public_key: split.remote_public_key,
            handshake_hash: split.hash,
        });
        while let Some(m) = self.pending_writes.pop_front() {
            self.encrypt(&m);
        }
    }

    /// One complete frame; `first` is its first byte when held apart (`split_first`).
    fn on_frame(&mut self, first: Option<u8>, mut frame: Vec<u8>) -> Result<(), StreamError> {
        if let Some(hs) = self.handshake.as_mut() {
            // Payloads are ignored, as secret-stream does.
            hs.recv(&frame)?;
            if hs.is_complete() {
                self.after_handshake_step();
                return Ok(());
            }
            return self.send_handshake();
        }
        let filter = self.options.filter_zero_byte_messages;
        let is_initiator = self.is_initiator;
        let Some(session) = self.session.as_mut() else {
            return Ok(()); // unreachable: a stream has a handshake or a session
        };
        match session.pull.as_mut() {
            None => {
                if frame.len() != IDHEADERBYTES {
                    return Err(StreamError::InvalidHeaderMessage { len: frame.len() });
                }
                if frame[..32] != stream_id(&session.hash, !is_initiator) {
                    return Err(StreamError::InvalidStreamId);
                }
                let mut header = [0u8; HEADERBYTES];
                header.copy_from_slice(&frame[32..]);
                session.pull = Some(Pull::new(&session.rx_key, &header));
            }
            Some(pull) => {
                // Frames of at least ABYTES arrive split (`split_first`).
                let Some(first) = first else {
                    return Err(StreamError::InvalidMessage { len: frame.len() });
                };
                let mlen = frame.len() + 1 - ABYTES;
                let (body, mac) = frame.split_at_mut(mlen);
                pull.pull_in_place(first, body, mac)
                    .map_err(|_| StreamError::Decrypt)?;
                frame.truncate(mlen);
                if !(frame.is_empty() && filter) {
                    self.events.push_back(Event::Message(frame));
                }
            }
        }
        Ok(())
    }
}
