//! Fuzz the protomux-wakeup messages and session: arbitrary bytes as a handshake or a message
//! of any type give a typed error or a value, never a panic; a decoded message re-encodes to
//! bytes that decode to the same value (flags other than bit 0 are not kept, as in JS).
#![no_main]

use hyperpunch_core::encoding::{Decode, Encode};
use hyperpunch_core::protomux_wakeup::*;
use libfuzzer_sys::fuzz_target;

fn roundtrip<T: for<'a> Decode<'a> + Encode + PartialEq + std::fmt::Debug>(b: &[u8]) {
    if let Ok(v) = T::from_bytes(b) {
        let bytes = v.to_bytes();
        assert_eq!(bytes.len(), v.encoded_len());
        assert_eq!(T::from_bytes(&bytes).as_ref(), Ok(&v));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, b)) = data.split_first() else { return };
    match sel % 6 {
        0 => roundtrip::<Handshake>(b),
        1 => roundtrip::<Lookup>(b),
        2 => roundtrip::<Announce>(b),
        3 => roundtrip::<Info>(b),
        // a session: the bytes as the remote's handshake, then as messages of every type
        _ => {
            let mut s = WakeupSession::<u8>::new([7; 32], None, sel % 2 == 0);
            s.add_peer(1, sel & 8 != 0, [9; 64]);
            let _ = s.handle_open(1, b);
            for ty in 0..4 {
                let _ = s.handle_message(1, ty, b);
            }
            while s.poll_output().is_some() || s.poll_event().is_some() {}
        }
    }
});
