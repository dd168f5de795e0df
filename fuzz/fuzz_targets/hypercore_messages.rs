//! Fuzz the hypercore wire messages: the first byte picks the message, the rest is its payload.
//! Decoding must never panic; a decoded message must re-encode to bytes that decode to the same
//! message.
#![no_main]

use hyperpunch_core::encoding::{Decode, Encode};
use hyperpunch_core::hypercore::messages::*;
use libfuzzer_sys::fuzz_target;

fn rt<T: for<'a> Decode<'a> + Encode + PartialEq + std::fmt::Debug>(b: &[u8]) {
    let Ok(v) = T::from_bytes(b) else { return };
    let out = v.to_bytes();
    assert_eq!(out.len(), v.encoded_len(), "encoded_len of {v:?}");
    assert_eq!(T::from_bytes(&out).as_ref(), Ok(&v), "re-encoded as {out:02x?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, b)) = data.split_first() else { return };
    match sel % 20 {
        0 => rt::<TreeNode>(b),
        1 => rt::<Handshake>(b),
        2 => rt::<Sync>(b),
        3 => rt::<Request>(b),
        4 => rt::<Cancel>(b),
        5 => rt::<DataBlock>(b),
        6 => rt::<DataHash>(b),
        7 => rt::<DataSeek>(b),
        8 => rt::<DataUpgrade>(b),
        9 => rt::<Data>(b),
        10 => rt::<NoData>(b),
        11 => rt::<Want>(b),
        12 => rt::<Bitfield>(b),
        13 => rt::<Range>(b),
        14 => rt::<Extension>(b),
        15 => rt::<ReorgHint>(b),
        _ => {
            // the protomux dispatch: type id from the selector, payload from the rest
            let type_id = u64::from(sel % 11);
            if let Ok(m) = Message::decode(type_id, b) {
                assert_eq!(m.type_id(), type_id);
                let out = m.to_bytes();
                assert_eq!(Message::decode(type_id, &out).as_ref(), Ok(&m));
            }
        }
    }
});
