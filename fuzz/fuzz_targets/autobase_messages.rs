//! Fuzz the autobase messages (oplog blocks, system entries, boot record, wakeup, ...): arbitrary
//! bytes decode to a value or a typed error, never a panic, and a decoded value that JS would
//! encode in the same layout re-encodes to bytes that decode to the same value.
#![no_main]

use hyperpunch_core::autobase::fast_forward;
use hyperpunch_core::autobase::messages::*;
use hyperpunch_core::encoding::{Decode, Encode};
use libfuzzer_sys::fuzz_target;

fn roundtrip<T: for<'a> Decode<'a> + Encode + PartialEq + std::fmt::Debug>(b: &[u8], stable: impl Fn(&T) -> bool) {
    if let Ok(v) = T::from_bytes(b) {
        if stable(&v) {
            let bytes = v.to_bytes();
            assert_eq!(bytes.len(), v.encoded_len());
            assert_eq!(T::from_bytes(&bytes).as_ref(), Ok(&v));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, b)) = data.split_first() else { return };
    match sel % 8 {
        // Legacy oplog versions decode only; version 2 carries no max_supported_version.
        0 => roundtrip::<OplogMessage>(b, |m| m.version == 2),
        1 => roundtrip::<Info>(b, |_| true),
        2 => roundtrip::<Member>(b, |_| true),
        3 => roundtrip::<BootRecord>(b, |r| r.version != 0),
        4 => roundtrip::<Wakeup>(b, |_| true),
        5 => roundtrip::<LinearizerUpdate>(b, |_| true),
        6 => roundtrip::<EncryptionDescriptor>(b, |_| true),
        _ => {
            if b.len() > 2 {
                let (k, v) = b.split_at(b.len() / 2);
                let _ = SystemEntry::decode(k, v);
                // the fast-forward readers of the system core's blocks and member records
                let _ = fast_forward::member_from_entry(k, v);
            }
            let _ = fast_forward::info_from_block(0, b);
            // the fast-forward point a member stores (read back from its storage at a restart)
            roundtrip::<fast_forward::FastForwardPoint>(b, |_| true);
            roundtrip::<ManifestData>(b, |_| true);
        }
    }
});
