//! The wire messages of protomux-wakeup 2.9.0 (`spec/hyperschema/index.js`), byte for byte.
//!
//! Flags are a compact `uint` whose bit 0 is the only one JS reads (JS accepts any other bits and
//! ignores them; so does the decoder here).

use crate::encoding::{
    array_len, uint_len, write_array, write_uint, Decode, DecodeError, Decoder, Encode,
};

/// `@wakeup/handshake`: the channel's open payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// Protocol version (JS sends 0 and does not check it).
    pub version: u64,
    /// The proof that the sender knows the topic's capability (see
    /// [`super::capability_proof`]).
    pub capability: [u8; 32],
    /// Whether the sender's topic is active (flag bit 0).
    pub active: bool,
}

impl Encode for Handshake {
    fn encoded_len(&self) -> usize {
        uint_len(self.version) + 32 + 1
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.version);
        out.extend_from_slice(&self.capability);
        write_uint(out, u64::from(self.active));
    }
}

impl Decode<'_> for Handshake {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let version = d.uint()?;
        let capability = d.fixed()?;
        let flags = d.uint()?;
        Ok(Handshake {
            version,
            capability,
            active: flags & 1 != 0,
        })
    }
}

/// `@wakeup/writer`: a writer with new blocks and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WakeupWriter {
    /// The writer's core key.
    pub key: [u8; 32],
    /// Its length (blocks) as the sender knows it.
    pub length: u64,
}

impl Encode for WakeupWriter {
    fn encoded_len(&self) -> usize {
        32 + uint_len(self.length)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key);
        write_uint(out, self.length);
    }
}

impl Decode<'_> for WakeupWriter {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(WakeupWriter {
            key: d.fixed()?,
            length: d.uint()?,
        })
    }
}

/// `@wakeup/announce` (message type 1): `array(@wakeup/writer)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Announce(pub Vec<WakeupWriter>);

impl Encode for Announce {
    fn encoded_len(&self) -> usize {
        array_len(&self.0)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_array(out, &self.0)
    }
}

impl Decode<'_> for Announce {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Announce(d.array()?))
    }
}

/// `@wakeup/lookup` (message type 0): a request for announces, optionally about one hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lookup {
    /// JS `hash` (autobase sends none).
    pub hash: Option<[u8; 32]>,
}

impl Encode for Lookup {
    fn encoded_len(&self) -> usize {
        1 + if self.hash.is_some() { 32 } else { 0 }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, u64::from(self.hash.is_some()));
        if let Some(h) = &self.hash {
            out.extend_from_slice(h);
        }
    }
}

impl Decode<'_> for Lookup {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let flags = d.uint()?;
        let hash = if flags & 1 != 0 {
            Some(d.fixed()?)
        } else {
            None
        };
        Ok(Lookup { hash })
    }
}

/// `@wakeup/info` (message type 2): the sender's topic became active or inactive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Info {
    /// Flag bit 0.
    pub active: bool,
}

impl Encode for Info {
    fn encoded_len(&self) -> usize {
        1
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, u64::from(self.active));
    }
}

impl Decode<'_> for Info {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Info {
            active: d.uint()? & 1 != 0,
        })
    }
}

/// A message on a wakeup channel, by its protomux message type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Type 0.
    Lookup(Lookup),
    /// Type 1.
    Announce(Announce),
    /// Type 2.
    Info(Info),
}

impl Message {
    /// Lookup's message type (the order of JS `messages` in `createChannel`).
    pub const LOOKUP: u64 = 0;
    /// Announce's message type.
    pub const ANNOUNCE: u64 = 1;
    /// Info's message type.
    pub const INFO: u64 = 2;
    /// How many message types the channel has.
    pub const TYPES: u64 = 3;

    /// The protomux message type.
    pub fn message_type(&self) -> u64 {
        match self {
            Message::Lookup(_) => Self::LOOKUP,
            Message::Announce(_) => Self::ANNOUNCE,
            Message::Info(_) => Self::INFO,
        }
    }

    /// The payload bytes.
    pub fn payload(&self) -> Vec<u8> {
        match self {
            Message::Lookup(m) => m.to_bytes(),
            Message::Announce(m) => m.to_bytes(),
            Message::Info(m) => m.to_bytes(),
        }
    }

    /// Decode a payload of `message_type`; `Ok(None)` for a type past [`Message::TYPES`] (a
    /// newer peer's; protomux drops those). Trailing bytes are ignored, as JS does.
    pub fn decode(message_type: u64, payload: &[u8]) -> Result<Option<Message>, DecodeError> {
        Ok(Some(match message_type {
            Self::LOOKUP => Message::Lookup(Lookup::from_bytes(payload)?),
            Self::ANNOUNCE => Message::Announce(Announce::from_bytes(payload)?),
            Self::INFO => Message::Info(Info::from_bytes(payload)?),
            _ => return Ok(None),
        }))
    }
}
