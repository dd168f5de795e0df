//! Fuzz the hypercore replication dispatch: the same input is decoded as every
//! `hypercore::messages::Message` type id 0..=9 (and a few ids past the end, which must fail).
//! Decoding must never panic; a decoded message must keep its type id and re-encode to bytes that
//! decode to the same message and re-encode identically.
#![no_main]

use hyperpunch_core::encoding::Encode;
use hyperpunch_core::hypercore::messages::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for type_id in 0..=9u64 {
        let Ok(m) = Message::decode(type_id, data) else { continue };
        assert_eq!(m.type_id(), type_id);
        let out = m.to_bytes();
        assert_eq!(out.len(), m.encoded_len(), "encoded_len of {m:?}");
        let again = Message::decode(type_id, &out);
        assert_eq!(again.as_ref(), Ok(&m), "type {type_id} re-encoded as {out:02x?}");
        assert_eq!(again.unwrap().to_bytes(), out, "type {type_id}: encoding not stable");
    }
    for type_id in [10, 11, 127, 128, u64::MAX] {
        assert!(Message::decode(type_id, data).is_err(), "type {type_id} decoded");
    }
});
