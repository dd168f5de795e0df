//! Fuzz every hyperdht message decoder of `dht::messages` (the connect messages are fuzzed by
//! `dht_connect`): the first byte picks the schema, the rest is the input. Decoding never panics; whatever decodes re-encodes canonically (encode →
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
    match which % 7 {
        0 => check!(PeerRecord, rest),
        1 => check!(LookupReply, rest),
        2 => check!(Announce, rest),
        3 => check!(MutablePutRequest, rest),
        4 => check!(MutableGetResponse, rest),
        5 => check!(PluginRequest, rest),
        _ => check!(HyperdhtAddress, rest),
    }
});
