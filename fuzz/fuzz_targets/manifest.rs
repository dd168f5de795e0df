//! Fuzz the manifest and the signature blobs a verifier reads (`multisig` v0/v1 and their parts).
//! Decoding must never panic; a decoded value must re-encode to bytes that decode to the same
//! value.
#![no_main]

use hyperpunch_core::encoding::{Decode, Encode};
use hyperpunch_core::hypercore::manifest::{Manifest, Prologue, Signer};
use hyperpunch_core::hypercore::verifier::{
    MultiSignature, MultiSignatureV0, PatchV0, SignatureProof, SignatureProofV0,
};
use libfuzzer_sys::fuzz_target;

fn rt<T: for<'a> Decode<'a> + Encode + PartialEq + std::fmt::Debug>(b: &[u8]) {
    let Ok(v) = T::from_bytes(b) else { return };
    let out = v.to_bytes();
    assert_eq!(out.len(), v.encoded_len(), "encoded_len of {v:?}");
    assert_eq!(T::from_bytes(&out).as_ref(), Ok(&v), "re-encoded as {out:02x?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, b)) = data.split_first() else { return };
    match sel % 8 {
        0 => rt::<Signer>(b),
        1 => rt::<Prologue>(b),
        2 => rt::<SignatureProof>(b),
        3 => rt::<MultiSignature>(b),
        4 => rt::<PatchV0>(b),
        5 => rt::<SignatureProofV0>(b),
        6 => rt::<MultiSignatureV0>(b),
        _ => {
            rt::<Manifest>(b);
            if let Ok(m) = Manifest::from_bytes(b) {
                // hashing a decoded manifest must not panic either
                let _ = m.key();
            }
        }
    }
});
