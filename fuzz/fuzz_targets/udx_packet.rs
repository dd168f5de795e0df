//! Fuzz the UDX packet codec (`udx::packet::decode`): arbitrary bytes never panic, and a
//! datagram that decodes re-encodes to bytes that decode to the same packet (header, SACK
//! blocks, payload). The harness is shared with `core/tests/udx_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

// Only the codec part of the shared harness is used here.
#[allow(dead_code)]
#[path = "../../core/tests/udx_harness/mod.rs"]
mod udx_harness;

fuzz_target!(|data: &[u8]| udx_harness::packet_round_trip(data));
