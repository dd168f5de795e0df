//! The UDX wire format: a 20-byte little-endian header, optional SACK blocks, optional
//! `data_offset` padding, then the payload (net-protocols §3.1).
//!
//! ```text
//! off 0  u8  magic 0xFF        off 4  u32 id   (the receiver's stream id)
//! off 1  u8  version 1         off 8  u32 rwnd (the sender's receive window, bytes)
//! off 2  u8  type flags        off 12 u32 seq  (the sender's next packet number)
//! off 3  u8  data_offset       off 16 u32 ack  (the next seq the sender expects)
//! off 20 [SACK blocks {u32 start, u32 end (exclusive)}] if type & SACK
//!        [data_offset padding] then the payload
//! ```

use thiserror::Error;

/// First byte of every UDX datagram.
pub const MAGIC: u8 = 0xff;
/// The only protocol version.
pub const VERSION: u8 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 20;
/// Most SACK blocks one acknowledgement carries (libudx `UDX_MAX_SACKS`-style bound).
pub const MAX_SACKS: usize = 50;
/// Length of one SACK block on the wire.
pub const SACK_BLOCK_LEN: usize = 8;

/// The type byte: a bit set. `0` is a pure ACK ("state") packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// No bits: a pure ACK / window update.
    pub const ACK: Flags = Flags(0);
    /// The packet carries stream data and consumes one seq.
    pub const DATA: Flags = Flags(1);
    /// The sender ended its write side at this seq; consumes one seq.
    pub const END: Flags = Flags(2);
    /// SACK blocks follow the header.
    pub const SACK: Flags = Flags(4);
    /// An unreliable datagram on the stream.
    pub const MESSAGE: Flags = Flags(8);
    /// The sender destroyed the stream (reset).
    pub const DESTROY: Flags = Flags(16);
    /// A keepalive / zero-window probe; answered with an ACK.
    pub const HEARTBEAT: Flags = Flags(32);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the packet consumes a sequence number (DATA or END).
    pub fn is_sequenced(self) -> bool {
        self.0 & (Flags::DATA.0 | Flags::END.0) != 0
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// The fixed 20-byte header (magic and version are implied).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// The type bit set.
    pub flags: Flags,
    /// Extra bytes between the header (and SACK blocks) and the payload.
    pub data_offset: u8,
    /// The receiving stream's id.
    pub id: u32,
    /// The sender's advertised receive window in bytes.
    pub rwnd: u32,
    /// The sender's sequence number.
    pub seq: u32,
    /// The sender's cumulative acknowledgement (next expected seq).
    pub ack: u32,
}

/// A half-open range `[start, end)` of sequence numbers the receiver holds out of order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SackRange {
    /// First selectively acknowledged seq.
    pub start: u32,
    /// One past the last selectively acknowledged seq.
    pub end: u32,
}

/// A decoded datagram, borrowing its payload from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The header.
    pub header: Header,
    /// SACK blocks (empty unless the SACK flag is set).
    pub sacks: Vec<SackRange>,
    /// The payload after any padding.
    pub payload: &'a [u8],
}

/// Why bytes are not a UDX datagram.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Fewer than 20 bytes.
    #[error("datagram of {0} bytes is shorter than the 20-byte UDX header")]
    TooShort(usize),
    /// The first byte is not 0xFF.
    #[error("bad magic byte {0:#04x}")]
    BadMagic(u8),
    /// The version byte is not 1.
    #[error("unsupported UDX version {0}")]
    BadVersion(u8),
    /// `data_offset` points past the end of the datagram.
    #[error("data offset {offset} exceeds the {available} bytes after the header")]
    BadDataOffset {
        /// The declared offset.
        offset: u8,
        /// Bytes present after the header.
        available: usize,
    },
    /// The SACK area holds more than [`MAX_SACKS`] blocks.
    #[error("{0} SACK blocks exceed the maximum of 50")]
    TooManySacks(usize),
}

/// Whether `bytes` look like UDX (length, magic and version) — the socket-level demux test.
pub fn is_udx(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && bytes[0] == MAGIC && bytes[1] == VERSION
}

/// The receiving stream id of a UDX datagram, if `bytes` look like UDX.
pub fn stream_id(bytes: &[u8]) -> Option<u32> {
    is_udx(bytes).then(|| u32_at(bytes, 4))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Decodes one datagram. Never panics on any input.
///
/// SACK blocks occupy `data_offset` bytes when `0 < data_offset < remaining`, otherwise the rest
/// of the datagram (a trailing partial block is ignored), as libudx reads them. For every other
/// packet `data_offset` bytes of padding precede the payload.
pub fn decode(bytes: &[u8]) -> Result<Packet<'_>, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if bytes[0] != MAGIC {
        return Err(DecodeError::BadMagic(bytes[0]));
    }
    if bytes[1] != VERSION {
        return Err(DecodeError::BadVersion(bytes[1]));
    }
    let header = Header {
        flags: Flags(bytes[2]),
        data_offset: bytes[3],
        id: u32_at(bytes, 4),
        rwnd: u32_at(bytes, 8),
        seq: u32_at(bytes, 12),
        ack: u32_at(bytes, 16),
    };
    let rest = &bytes[HEADER_LEN..];
    let offset = usize::from(header.data_offset);
    let mut sacks = Vec::new();
    let payload;
    if header.flags.contains(Flags::SACK) {
        let (area, after) = if offset > 0 && offset < rest.len() {
            rest.split_at(offset)
        } else {
            (rest, &rest[rest.len()..])
        };
        let count = area.len() / SACK_BLOCK_LEN;
        if count > MAX_SACKS {
            return Err(DecodeError::TooManySacks(count));
        }
        sacks = area
            .chunks_exact(SACK_BLOCK_LEN)
            .map(|c| SackRange {
                start: u32_at(c, 0),
                end: u32_at(c, 4),
            })
            .collect();
        payload = after;
    } else {
        if offset > rest.len() {
            return Err(DecodeError::BadDataOffset {
                offset: header.data_offset,
                available: rest.len(),
            });
        }
        payload = &rest[offset..];
    }
    Ok(Packet {
        header,
        sacks,
        payload,
    })
}

/// A bare DESTROY for the peer's stream `id` (sequence 0, nothing acknowledged): what a side
/// that cannot run a stream it agreed to sends, so that the peer's stream ends at once with a
/// reset (ours and libudx's act on DESTROY whatever its sequence number) instead of
/// retransmitting into silence.
pub fn reset(id: u32) -> Vec<u8> {
    let header = Header {
        flags: Flags::DESTROY,
        data_offset: 0,
        id,
        rwnd: 0,
        seq: 0,
        ack: 0,
    };
    encode(&header, &[], &[])
}

/// Encodes a datagram: header, SACK blocks (written only when the SACK flag is set; at most
/// [`MAX_SACKS`] are written), `data_offset` zero bytes of padding, payload. In a SACK packet
/// `data_offset` bounds the SACK area instead: when a payload follows, the blocks are padded
/// with zeros up to `data_offset` bytes, so that [`decode`] finds the payload where it was put.
pub fn encode(header: &Header, sacks: &[SackRange], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, header, sacks, [payload, &[]]);
    out
}

/// [`encode`] appending the datagram to `out` (a batch of datagrams sent together, say), with
/// the payload given in two pieces that follow each other (the two halves of a ring buffer).
pub fn encode_into(out: &mut Vec<u8>, header: &Header, sacks: &[SackRange], payload: [&[u8]; 2]) {
    let sack = header.flags.contains(Flags::SACK);
    let sacks = if sack {
        &sacks[..sacks.len().min(MAX_SACKS)]
    } else {
        &[][..]
    };
    let payload_len = payload[0].len() + payload[1].len();
    let padding = if !sack {
        usize::from(header.data_offset)
    } else if payload_len == 0 {
        0
    } else {
        usize::from(header.data_offset).saturating_sub(sacks.len() * SACK_BLOCK_LEN)
    };
    out.reserve(HEADER_LEN + sacks.len() * SACK_BLOCK_LEN + padding + payload_len);
    out.extend_from_slice(&[MAGIC, VERSION, header.flags.0, header.data_offset]);
    for v in [header.id, header.rwnd, header.seq, header.ack] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for s in sacks {
        out.extend_from_slice(&s.start.to_le_bytes());
        out.extend_from_slice(&s.end.to_le_bytes());
    }
    out.resize(out.len() + padding, 0);
    out.extend_from_slice(payload[0]);
    out.extend_from_slice(payload[1]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(flags: Flags) -> Header {
        Header {
            flags,
            data_offset: 0,
            id: 2,
            rwnd: 4 << 20,
            seq: 7,
            ack: 3,
        }
    }

    #[test]
    fn first_data_packet_matches_capture() {
        let bytes = encode(&header(Flags::DATA), &[], b"aa");
        assert_eq!(
            hex::encode(&bytes[..HEADER_LEN]),
            "ff01010002000000000040000700000003000000"
        );
        let p = decode(&bytes).unwrap();
        assert_eq!(p.header, header(Flags::DATA));
        assert_eq!(p.payload, b"aa");
    }

    #[test]
    fn every_flag_round_trips() {
        for bits in 0..=255u8 {
            let mut h = header(Flags(bits));
            let sacks = [SackRange { start: 9, end: 12 }];
            if !h.flags.contains(Flags::SACK) {
                h.data_offset = bits % 7;
            }
            let bytes = encode(&h, &sacks, b"payload");
            let p = decode(&bytes).unwrap();
            assert_eq!(p.header, h);
            if h.flags.contains(Flags::SACK) {
                // The payload after the blocks is read as more (partial) blocks: none here.
                assert_eq!(p.sacks[0], sacks[0]);
            } else {
                assert!(p.sacks.is_empty());
                assert_eq!(p.payload, b"payload");
            }
        }
    }

    #[test]
    fn sack_with_data_offset_bounds_the_blocks() {
        let mut h = header(Flags::SACK);
        h.data_offset = 16;
        let sacks = [
            SackRange { start: 3, end: 5 },
            SackRange { start: 8, end: 10 },
        ];
        let bytes = encode(&h, &sacks, b"xyz");
        let p = decode(&bytes).unwrap();
        assert_eq!(p.sacks, sacks);
        assert_eq!(p.payload, b"xyz");
    }

    #[test]
    fn padding_is_skipped() {
        let mut h = header(Flags::DATA);
        h.data_offset = 200;
        let bytes = encode(&h, &[], b"hello");
        assert_eq!(bytes.len(), HEADER_LEN + 200 + 5);
        assert_eq!(decode(&bytes).unwrap().payload, b"hello");
    }

    #[test]
    fn sacks_are_capped_on_encode_and_rejected_beyond_on_decode() {
        let many: Vec<SackRange> = (0..60)
            .map(|i| SackRange {
                start: i * 2,
                end: i * 2 + 1,
            })
            .collect();
        let bytes = encode(&header(Flags::SACK), &many, &[]);
        assert_eq!(bytes.len(), HEADER_LEN + MAX_SACKS * SACK_BLOCK_LEN);
        assert_eq!(decode(&bytes).unwrap().sacks.len(), MAX_SACKS);
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 8]);
        assert_eq!(decode(&longer), Err(DecodeError::TooManySacks(51)));
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        assert_eq!(decode(&[0xff; 19]), Err(DecodeError::TooShort(19)));
        let mut b = encode(&header(Flags::DATA), &[], b"");
        b[0] = 0x03;
        assert_eq!(decode(&b), Err(DecodeError::BadMagic(3)));
        b[0] = 0xff;
        b[1] = 2;
        assert_eq!(decode(&b), Err(DecodeError::BadVersion(2)));
        b[1] = 1;
        b[3] = 1;
        assert!(matches!(
            decode(&b),
            Err(DecodeError::BadDataOffset { offset: 1, .. })
        ));
        assert!(!is_udx(&b[..19]));
        assert_eq!(stream_id(&b), Some(2));
    }

    /// Every datagram udx-native 1.21.3 sent in `out-udx.jsonl` decodes to the fields the capture
    /// script printed. Long payloads are truncated in the capture (`...`): their header, SACK
    /// blocks and the captured length are still checked.
    #[test]
    fn decodes_every_captured_packet() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/vectors/net/out-udx.jsonl"
        );
        let text = std::fs::read_to_string(path).expect(path);
        let mut count = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let hex_text = v["hex"].as_str().unwrap();
            let truncated = hex_text.ends_with("...");
            let bytes = hex::decode(hex_text.trim_end_matches("...")).unwrap();
            let d = &v["d"];
            let p = decode(&bytes).unwrap();
            let h = p.header;
            assert_eq!(u64::from(h.flags.0), d["type"].as_u64().unwrap(), "{line}");
            assert_eq!(u64::from(h.data_offset), d["dataOffset"].as_u64().unwrap());
            assert_eq!(u64::from(h.id), d["id"].as_u64().unwrap());
            assert_eq!(u64::from(h.rwnd), d["rwnd"].as_u64().unwrap());
            assert_eq!(u64::from(h.seq), d["seq"].as_u64().unwrap());
            assert_eq!(u64::from(h.ack), d["ack"].as_u64().unwrap());
            let want_sacks: Vec<SackRange> = d["sacks"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| SackRange {
                            start: r[0].as_u64().unwrap() as u32,
                            end: r[1].as_u64().unwrap() as u32,
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(p.sacks, want_sacks, "{line}");
            let len = v["len"].as_u64().unwrap() as usize;
            let payload_len = d["payloadLen"].as_u64().unwrap() as usize;
            let sack_bytes = want_sacks.len() * SACK_BLOCK_LEN;
            assert_eq!(len, HEADER_LEN + sack_bytes + payload_len, "{line}");
            if truncated {
                assert!(bytes.len() < len);
            } else {
                assert_eq!(bytes.len(), len);
                assert_eq!(p.payload.len(), payload_len);
                if let Some(hexp) = d["payload"].as_str() {
                    assert_eq!(hex::encode(p.payload), hexp);
                }
                // Re-encoding reproduces the captured bytes exactly.
                assert_eq!(encode(&h, &p.sacks, p.payload), bytes, "{line}");
            }
            count += 1;
        }
        assert_eq!(count, 53);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in 0..400 {
            let mut buf = vec![0u8; len % 120];
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if buf.len() > 2 && len % 2 == 0 {
                buf[0] = MAGIC;
                buf[1] = VERSION;
            }
            let _ = decode(&buf);
        }
    }
}
