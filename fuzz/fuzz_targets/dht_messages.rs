//! Fuzz every hyperdht message decoder (`dht::messages`): the first byte picks the schema, the
//! rest is the input. Decoding never panics; whatever decodes re-encodes canonically (encode →
//! decode → encode gives the same bytes).
#![no_main]

use hyperpunch_core::dht::messages::*;
use libfuzzer_sys::fuzz_target;

macro_rules! check {
    ($t:ty, $data:expr) => {
        if let Ok(m) = <$t>::decode($data) {
            let once = m.encode();
            let again = <$t>::decode(&once).expect("re-encoded message decodes");
            assert_eq!(again.encode(), once);
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 11 {
        0 => check!(Handshake, rest),
        1 => check!(Holepunch, rest),
        2 => check!(NoisePayload, rest),
        3 => check!(HolepunchPayload, rest),
        4 => check!(PeerRecord, rest),
        5 => check!(LookupReply, rest),
        6 => check!(Announce, rest),
        7 => check!(MutablePutRequest, rest),
        8 => check!(MutableGetResponse, rest),
        9 => check!(PluginRequest, rest),
        _ => check!(HyperdhtAddress, rest),
    }
});
