//! Fuzz the UDX stream engine (`udx::Stream`) and socket (`udx::Socket`). The first byte
//! (mod 3) picks the scenario:
//!
//! - 0: one stream against a hostile peer — the rest of the input crafts datagrams (headers
//!   near the live seq/ack numbers, SACK blocks, padding, raw bytes), time jumps and API calls
//!   (write, end, message, destroy, change_remote, keepalive). Nothing may panic, the stream's
//!   own datagrams must decode and fit the MTU, no event may follow `Closed`/`Error`, and its
//!   receive side must stay within the window bound.
//! - 1: two honest streams over a network the input drives (deliver in any order, drop,
//!   duplicate, advance time). Each side may only ever receive a prefix of what the other
//!   wrote; when the input is spent the network turns perfect and both must deliver everything
//!   and close, unless one times out because the lossy phase used up its retransmission budget.
//! - 2: a socket with a connected stream and a relay pair, fed datagrams for known and unknown
//!   ids from several addresses, firewall decisions, remote changes, relays, writes and
//!   removals: nothing panics and every datagram it emits is UDX and has an address.
//!
//! The harness is shared with `core/tests/udx_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The stream and socket parts of the shared harness; the codec part is `udx_packet`'s.
#[allow(dead_code)]
#[path = "../../core/tests/udx_harness/mod.rs"]
mod udx_harness;

fuzz_target!(|data: &[u8]| match data.split_first() {
    Some((ctl, rest)) => match ctl % 3 {
        0 => udx_harness::hostile_peer(rest),
        1 => udx_harness::honest_pair(rest),
        _ => udx_harness::hostile_socket(rest),
    },
    None => {}
});
