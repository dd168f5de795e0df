//! blind-relay messages (index.js:583-628): `pair` and `unpair`, each led by a
//! compact-encoding-bitfield(7), i.e. one flags byte (bit 0 = isInitiator in `pair`).

use crate::encoding::{write_uint, DecodeError, Decoder};

/// `pair`: ask the relay to pair this stream under `token`, or (from the relay) the relay
/// stream to connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// Which side of the pairing this is (the side that chose the relay is the initiator).
    pub is_initiator: bool,
    /// The pairing token (32 random bytes).
    pub token: [u8; 32],
    /// A UDX stream id: the sender's own stream (peer to relay) or the relay's (relay to peer).
    pub id: u64,
    /// Always 0.
    pub seq: u64,
}

/// `unpair`: cancel a pending pairing or tear down a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpair {
    /// The pairing token.
    pub token: [u8; 32],
}

/// compact-encoding-bitfield decode: one byte up to 0xfc, else a 0xfd/0xfe/0xff length prefix
/// and 2/4/8 little-endian bytes. Returns the low bits.
fn read_bitfield(d: &mut Decoder<'_>) -> Result<u64, DecodeError> {
    let first = d.u8()?;
    Ok(match first {
        0..=0xfc => u64::from(first),
        0xfd => u64::from(d.u16()?),
        0xfe => u64::from(d.u32()?),
        0xff => d.u64()?,
    })
}

impl Pair {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(44);
        out.push(u8::from(self.is_initiator));
        out.extend_from_slice(&self.token);
        write_uint(&mut out, self.id);
        write_uint(&mut out, self.seq);
        out
    }
    /// Decode untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let flags = read_bitfield(&mut d)?;
        Ok(Pair {
            is_initiator: flags & 1 != 0,
            token: d.fixed()?,
            id: d.uint()?,
            seq: d.uint()?,
        })
    }
}

impl Unpair {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33);
        out.push(0);
        out.extend_from_slice(&self.token);
        out
    }
    /// Decode untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        read_bitfield(&mut d)?;
        Ok(Unpair { token: d.fixed()? })
    }
}
