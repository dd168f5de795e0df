//! Property tests for the UDX engines on random inputs (the short, CI-sized version of the
//! `udx_packet` and `udx_stream` fuzz targets, which run the same harness): the codec never
//! panics and round-trips; a stream fed hostile datagrams, time jumps and API calls never
//! panics and keeps its receive side bounded; two streams over a network that drops,
//! duplicates, reorders and delays only ever deliver a prefix of what was written, and finish
//! exactly once the network behaves; a socket with a relay pair and firewall decisions never
//! panics on hostile datagrams and API calls.
//!
//! `PROPTEST_CASES` raises the case count (default 300 per property).

mod udx_harness;

use hyperpunch_core::udx::packet::{self, Flags, Header, SackRange};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Raw bytes, half of them behind a valid magic and version.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(udx, mut v)| {
            if udx && v.len() >= 2 {
                v[0] = packet::MAGIC;
                v[1] = packet::VERSION;
            }
            v
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn packet_decode_round_trips(bytes in datagram()) {
        udx_harness::packet_round_trip(&bytes);
    }

    /// Encoding any packet and decoding it gives the packet back (SACK blocks bounded by
    /// `data_offset` when a payload follows).
    #[test]
    fn packet_encode_round_trips(
        flags in 0u8..64,
        data_offset in any::<u8>(),
        id in any::<u32>(), rwnd in any::<u32>(), seq in any::<u32>(), ack in any::<u32>(),
        sacks in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..50),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let flags = Flags(flags);
        let sacks: Vec<SackRange> = sacks.into_iter().map(|(start, end)| SackRange { start, end }).collect();
        let sack = flags.contains(Flags::SACK);
        // In a SACK packet data_offset bounds the blocks: with a payload it must be their
        // room, without one 0 (the blocks take the rest of the datagram).
        let (data_offset, payload) = if sack {
            let room = sacks.len() * packet::SACK_BLOCK_LEN;
            if payload.is_empty() || room == 0 || room > 255 {
                (0, &[][..])
            } else {
                (room as u8, &payload[..])
            }
        } else {
            (data_offset, &payload[..])
        };
        let header = Header { flags, data_offset, id, rwnd, seq, ack };
        let bytes = packet::encode(&header, &sacks, payload);
        let p = packet::decode(&bytes).unwrap();
        prop_assert_eq!(p.header, header);
        prop_assert_eq!(p.payload, payload);
        if sack {
            prop_assert_eq!(p.sacks, sacks);
        } else {
            prop_assert!(p.sacks.is_empty());
        }
    }

    #[test]
    fn stream_survives_a_hostile_peer(input in proptest::collection::vec(any::<u8>(), 0..3000)) {
        udx_harness::hostile_peer(&input);
    }

    #[test]
    fn socket_survives_hostile_datagrams(input in proptest::collection::vec(any::<u8>(), 0..3000)) {
        udx_harness::hostile_socket(&input);
    }

    #[test]
    fn pair_delivers_a_prefix_then_everything(input in proptest::collection::vec(any::<u8>(), 0..3000)) {
        udx_harness::honest_pair(&input);
    }
}
