//! Fuzz the dht-rpc datagram codec (`dht::rpc::messages::decode`): arbitrary bytes never
//! panic, and a datagram that decodes re-encodes to bytes that decode and re-encode to the same
//! bytes (encoding is canonical: flags, varints, empty closer-node lists).
#![no_main]

use hyperpunch_core::dht::rpc::messages::{decode, Packet};
use libfuzzer_sys::fuzz_target;

fn encode(p: &Packet<'_>) -> Vec<u8> {
    match p {
        Packet::Request(r) => r.encode(),
        Packet::Response(r) => r.encode(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(p) = decode(data) else { return };
    let once = encode(&p);
    let again = decode(&once).expect("re-encoded packet decodes");
    assert_eq!(encode(&again), once);
});
