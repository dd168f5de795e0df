//! The protomux wire format, frame by frame (protomux 3.12.1 `index.js`).
//!
//! Every frame is `uint channel ‖ uint type ‖ payload`, where `channel` is the **sender's** local
//! channel id (1-based) and channel 0 is the control channel:
//!
//! | control type | layout after `00 type` |
//! |---|---|
//! | 0 batch | `uint firstChannel ‖ { uint len ‖ bytes(type ‖ payload) }*`, `len == 0` is followed by `uint nextChannel` |
//! | 1 open | `uint localId ‖ string protocol ‖ optionalBuffer id ‖ handshake` |
//! | 2 reject | `uint remoteId` (the id the opener used) |
//! | 3 close | `uint localId` |
//!
//! [`Frame`] decodes and encodes single frames without any channel state; the stateful engine is
//! [`super::Protomux`].

use crate::encoding::{
    uint_len, write_buffer, write_optional_buffer, write_uint, DecodeError, Decoder, Encode,
};

/// Control message type of a batch frame.
pub const CONTROL_BATCH: u64 = 0;
/// Control message type of an open frame.
pub const CONTROL_OPEN: u64 = 1;
/// Control message type of a reject frame.
pub const CONTROL_REJECT: u64 = 2;
/// Control message type of a close frame.
pub const CONTROL_CLOSE: u64 = 3;
/// A batch being built is sent and a new one started once it reaches this size (JS `MAX_BATCH`).
pub const MAX_BATCH: usize = 8 * 1024 * 1024;

/// One message inside a batch frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchItem<'a> {
    /// Sender's local channel id (0 = a control message).
    pub channel: u64,
    /// Message type.
    pub message_type: u64,
    /// Payload (everything after the type inside the item).
    pub payload: &'a [u8],
}

/// An open frame (`00 01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFrame<'a> {
    /// The opener's local channel id.
    pub local_id: u64,
    /// Protocol name.
    pub protocol: &'a str,
    /// Channel id (`None` for JS `null` or an empty buffer).
    pub id: Option<&'a [u8]>,
    /// The handshake payload: every byte after the id.
    pub handshake: &'a [u8],
}

/// One protomux frame, decoded without channel state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A message on a (non-control) channel.
    Message {
        /// Sender's local channel id (never 0).
        channel: u64,
        /// Message type.
        message_type: u64,
        /// Payload.
        payload: &'a [u8],
    },
    /// A batch (`00 00`) of messages, in order.
    Batch(Vec<BatchItem<'a>>),
    /// An open (`00 01`).
    Open(OpenFrame<'a>),
    /// A reject (`00 02`) of the open the receiver sent with local id `remote_id`.
    Reject {
        /// The rejected opener's local id.
        remote_id: u64,
    },
    /// A close (`00 03`) of the sender's channel `local_id`.
    Close {
        /// The closer's local id.
        local_id: u64,
    },
    /// A control message of a type protomux does not know (ignored by the engine).
    UnknownControl {
        /// Its type.
        message_type: u64,
        /// Its payload.
        payload: &'a [u8],
    },
}

impl<'a> Frame<'a> {
    /// Decode one whole frame. Trailing bytes after a reject/close id are ignored as in JS; a batch
    /// item whose length runs past the end of the frame is cut at the end, as JS does.
    pub fn decode(bytes: &'a [u8]) -> Result<Frame<'a>, DecodeError> {
        let mut d = Decoder::new(bytes);
        let channel = d.uint()?;
        let message_type = d.uint()?;
        if channel != 0 {
            return Ok(Frame::Message {
                channel,
                message_type,
                payload: d.rest(),
            });
        }
        Ok(match message_type {
            CONTROL_BATCH => Frame::Batch(decode_batch(&mut d)?),
            CONTROL_OPEN => Frame::Open(decode_open(&mut d)?),
            CONTROL_REJECT => Frame::Reject {
                remote_id: d.uint()?,
            },
            CONTROL_CLOSE => Frame::Close {
                local_id: d.uint()?,
            },
            _ => Frame::UnknownControl {
                message_type,
                payload: d.rest(),
            },
        })
    }

    /// Encode the frame. Consecutive batch items of the same channel share one channel prefix,
    /// exactly as JS builds batches, so `decode` then `encode` reproduces JS frames.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Message {
                channel,
                message_type,
                payload,
            } => {
                write_uint(out, *channel);
                write_uint(out, *message_type);
                out.extend_from_slice(payload);
            }
            Frame::Batch(items) => {
                let mut builder = BatchBuilder::new();
                for item in items {
                    let mut buf =
                        Vec::with_capacity(uint_len(item.message_type) + item.payload.len());
                    write_uint(&mut buf, item.message_type);
                    buf.extend_from_slice(item.payload);
                    builder.push(item.channel, None, &buf);
                }
                if let Some(frame) = builder.finish() {
                    out.extend_from_slice(&frame.into_bytes());
                } else {
                    // An empty batch: JS never sends one, but it is a valid frame.
                    out.extend_from_slice(&[0, 0, 0]);
                }
            }
            Frame::Open(open) => out.extend_from_slice(&open_frame(
                open.local_id,
                open.protocol,
                open.id,
                open.handshake,
            )),
            Frame::Reject { remote_id } => {
                out.extend_from_slice(&control_frame(CONTROL_REJECT, *remote_id))
            }
            Frame::Close { local_id } => {
                out.extend_from_slice(&control_frame(CONTROL_CLOSE, *local_id))
            }
            Frame::UnknownControl {
                message_type,
                payload,
            } => {
                out.push(0);
                write_uint(out, *message_type);
                out.extend_from_slice(payload);
            }
        }
    }

    /// Encode into a fresh buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Reads the items of a batch (after `00 00`), as `_onbatch` walks them (index.js:643-671).
fn decode_batch<'a>(d: &mut Decoder<'a>) -> Result<Vec<BatchItem<'a>>, DecodeError> {
    let mut channel = d.uint()?;
    let mut items = Vec::new();
    while !d.is_empty() {
        let Some(item) = next_batch_item(d, &mut channel)? else {
            continue;
        };
        let mut inner = Decoder::new(item);
        let message_type = inner.uint()?;
        items.push(BatchItem {
            channel,
            message_type,
            payload: inner.rest(),
        });
    }
    Ok(items)
}

/// Reads one `uint len ‖ bytes` entry of a batch: `Ok(None)` for a `0 ‖ uint channel` switch
/// (which updates `channel`), else the item bytes, cut at the end of the frame like JS
/// (`Math.min(state.start + len, end)`).
pub(super) fn next_batch_item<'a>(
    d: &mut Decoder<'a>,
    channel: &mut u64,
) -> Result<Option<&'a [u8]>, DecodeError> {
    let len = d.uint()?;
    if len == 0 {
        *channel = d.uint()?;
        return Ok(None);
    }
    let take = usize::try_from(len).map_or(d.remaining(), |l| l.min(d.remaining()));
    d.take(take).map(Some)
}

/// Reads the body of an open frame (after `00 01`) (index.js:673-676). A protocol name that is
/// not UTF-8 fails here; [`super::Protomux`] decodes it lossily like JS instead.
fn decode_open<'a>(d: &mut Decoder<'a>) -> Result<OpenFrame<'a>, DecodeError> {
    Ok(OpenFrame {
        local_id: d.uint()?,
        protocol: d.string()?,
        id: d.optional_buffer()?,
        handshake: d.rest(),
    })
}

/// `00 01 ‖ uint localId ‖ string protocol ‖ optionalBuffer id ‖ handshake` (index.js:87-116).
pub(super) fn open_frame(
    local_id: u64,
    protocol: &str,
    id: Option<&[u8]>,
    handshake: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        2 + uint_len(local_id)
            + uint_len(protocol.len() as u64)
            + protocol.len()
            + 9
            + id.map_or(0, <[u8]>::len)
            + handshake.len(),
    );
    out.extend_from_slice(&[0, CONTROL_OPEN as u8]);
    write_uint(&mut out, local_id);
    write_buffer(&mut out, protocol.as_bytes());
    write_optional_buffer(&mut out, id);
    out.extend_from_slice(handshake);
    out
}

/// `00 type ‖ uint n` (reject and close frames).
pub(super) fn control_frame(message_type: u64, n: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + uint_len(n));
    out.push(0);
    write_uint(&mut out, message_type);
    write_uint(&mut out, n);
    out
}

/// Builds one batch frame the way `_pushBatch`/`_sendBatch` do (index.js:484-520): the frame
/// starts `00 00 ‖ uint firstChannel`, each item is a `buffer`, and a change of channel inserts
/// `00 ‖ uint channel`.
#[derive(Debug, Clone)]
pub(super) struct BatchBuilder {
    buf: Vec<u8>,
    /// Buffers inserted into `buf` where they belong (see [`super::OutFrame`]).
    pieces: Vec<(usize, Vec<u8>)>,
    /// Their total length.
    piece_bytes: usize,
    last: Option<u64>,
}

impl BatchBuilder {
    pub(super) fn new() -> Self {
        Self::with_capacity(0)
    }

    /// A builder whose buffer has room for `capacity` bytes.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(2));
        buf.extend_from_slice(&[0, 0]);
        BatchBuilder {
            buf,
            pieces: Vec::new(),
            piece_bytes: 0,
            last: None,
        }
    }

    /// True when no item was pushed.
    pub(super) fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    /// Size of the frame so far (JS `_batchState.end` once an item is in).
    pub(super) fn len(&self) -> usize {
        self.buf.len() + self.piece_bytes
    }

    /// Appends the item `uint message_type ‖ payload` for `channel` (`payload` alone when
    /// `message_type` is `None`: it then starts with its type).
    pub(super) fn push(&mut self, channel: u64, message_type: Option<u64>, payload: &[u8]) {
        self.start_item(channel);
        match message_type {
            Some(t) => {
                write_uint(&mut self.buf, (uint_len(t) + payload.len()) as u64);
                write_uint(&mut self.buf, t);
                self.buf.extend_from_slice(payload);
            }
            None => write_buffer(&mut self.buf, payload),
        }
    }

    /// [`BatchBuilder::push`] of `message`'s encoding as the payload of type `message_type`,
    /// encoded in place (no buffer of its own).
    pub(super) fn push_encoded<E: Encode + ?Sized>(
        &mut self,
        channel: u64,
        message_type: u64,
        message: &E,
    ) {
        self.start_item(channel);
        let len = message.encoded_len();
        write_uint(&mut self.buf, (uint_len(message_type) + len) as u64);
        write_uint(&mut self.buf, message_type);
        let start = self.buf.len();
        message.encode(&mut self.buf);
        // `encoded_len` is exact (the `Encode` contract); a wrong one would corrupt the frame.
        debug_assert_eq!(
            self.buf.len() - start,
            len,
            "Encode::encoded_len is not exact"
        );
    }

    /// [`BatchBuilder::push`] of the payload `head` with `piece` inserted at offset `at` of it,
    /// kept apart (not copied) in the frame.
    pub(super) fn push_with_piece(
        &mut self,
        channel: u64,
        message_type: u64,
        head: &[u8],
        at: usize,
        piece: Vec<u8>,
    ) {
        self.start_item(channel);
        write_uint(
            &mut self.buf,
            (uint_len(message_type) + head.len() + piece.len()) as u64,
        );
        write_uint(&mut self.buf, message_type);
        let base = self.buf.len();
        self.buf.extend_from_slice(head);
        self.piece_bytes += piece.len();
        self.pieces.push((base + at.min(head.len()), piece));
    }

    /// The channel prefix of an item for `channel` (none when the previous item had it).
    fn start_item(&mut self, channel: u64) {
        match self.last {
            Some(last) if last == channel => {}
            Some(_) => {
                self.buf.push(0);
                write_uint(&mut self.buf, channel);
            }
            None => write_uint(&mut self.buf, channel),
        }
        self.last = Some(channel);
    }

    /// The frame, or `None` if nothing was pushed (JS sends nothing then).
    pub(super) fn finish(mut self) -> Option<super::OutFrame> {
        self.last?;
        // Built with room for a batch as large as the last one: give back what a small one
        // leaves unused.
        if self.buf.capacity() > 2 * self.buf.len() {
            self.buf.shrink_to_fit();
        }
        Some(super::OutFrame {
            bytes: self.buf,
            pieces: self.pieces,
        })
    }
}
