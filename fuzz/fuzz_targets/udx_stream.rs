//! Fuzz the UDX stream engine (`udx::Stream`). The first byte picks the scenario:
//!
//! - even: one stream against a hostile peer — the rest of the input crafts datagrams (headers
//!   near the live seq/ack numbers, SACK blocks, padding, raw bytes), time jumps and API calls
//!   (write, end, message, destroy, change_remote, keepalive). Nothing may panic, the stream's
//!   own datagrams must decode and fit the MTU, no event may follow `Closed`/`Error`, and its
//!   receive side must stay within the window bound.
//! - odd: two honest streams over a network the input drives (deliver in any order, drop,
//!   duplicate, advance time). Each side may only ever receive a prefix of what the other
//!   wrote; when the input is spent the network turns perfect and both must deliver everything
//!   and close, unless one times out because the lossy phase used up its retransmission budget.
//!
//! The harness is shared with `core/tests/udx_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The stream parts of the shared harness; the codec part is `udx_packet`'s.
#[allow(dead_code)]
#[path = "../../core/tests/udx_harness/mod.rs"]
mod udx_harness;

fuzz_target!(|data: &[u8]| match data.split_first() {
    Some((ctl, rest)) if ctl % 2 == 0 => udx_harness::hostile_peer(rest),
    Some((_, rest)) => udx_harness::honest_pair(rest),
    None => {}
});
