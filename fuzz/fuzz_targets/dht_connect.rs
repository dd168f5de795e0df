//! Fuzz the decoders of connecting by public key: the PEER_HANDSHAKE / PEER_HOLEPUNCH values,
//! noisePayload, holepunchPayload, SecurePayload boxes, blind-relay pair/unpair, and a server's
//! Noise IK responder fed garbage. The first byte picks the decoder. Nothing may panic; a
//! decoded value re-encodes to bytes that decode and re-encode identically.
#![no_main]

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::dht::holepunch::SecurePayload;
use hyperpunch_core::dht::messages_connect::{HandshakeMessage, HolepunchMessage, HolepunchPayload, NoisePayload};
use hyperpunch_core::dht::noise_wrap::NoiseWrap;
use hyperpunch_core::relay::blind::{Pair, Unpair};
use libfuzzer_sys::fuzz_target;

fn stable<T: PartialEq + std::fmt::Debug>(b: &[u8], dec: impl Fn(&[u8]) -> Option<T>, enc: impl Fn(&T) -> Vec<u8>) {
    let Some(v) = dec(b) else { return };
    let once = enc(&v);
    let v2 = dec(&once).expect("re-encoding decodes");
    assert_eq!(enc(&v2), once);
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, b)) = data.split_first() else { return };
    match sel % 8 {
        0 => stable(b, |b| HandshakeMessage::decode(b).ok(), |v| v.encode()),
        1 => stable(b, |b| HolepunchMessage::decode(b).ok(), |v| v.encode()),
        2 => stable(b, |b| NoisePayload::decode(b).ok().filter(|p| p.version == 1), |v| v.encode()),
        3 => stable(b, |b| HolepunchPayload::decode(b).ok(), |v| v.encode()),
        4 => stable(b, |b| Pair::decode(b).ok(), |v| v.encode()),
        5 => stable(b, |b| Unpair::decode(b).ok(), |v| v.encode()),
        6 => {
            let sp = SecurePayload::new([7; 32], [8; 32]);
            if let Some(p) = sp.decrypt(b) {
                let again = sp.encrypt(&p, [1; 24]);
                assert_eq!(sp.decrypt(&again), Some(p));
            }
        }
        _ => {
            let mut s = NoiseWrap::responder(KeyPair::from_seed(&[1; 32]), KeyPair::from_seed(&[2; 32])).unwrap();
            let _ = s.recv(b);
        }
    }
});
