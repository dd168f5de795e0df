//! Fuzz the decoders of the tools: hypertele's `--compress` messages (`tele::decompress`),
//! hyperbeam passphrases (`beam::decode`, `beam::key_pair`) and hypercore-id-encoding keys
//! (`id_encoding::decode`, `z32_decode`). The first byte picks the decoder. Nothing may panic;
//! what decodes re-encodes to the same value.
#![no_main]

use hyperpunch_core::{beam, id_encoding, tele};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    match pick % 3 {
        0 => {
            if let Ok(chunk) = tele::decompress(rest) {
                assert!(chunk.len() <= tele::MAX_CHUNK);
                assert_eq!(tele::decompress(&tele::compress(&chunk)).unwrap(), chunk);
            }
        }
        1 => {
            let Ok(s) = std::str::from_utf8(rest) else { return };
            if let Ok(bytes) = beam::decode(s) {
                if let Ok(seed) = <[u8; 32]>::try_from(bytes.as_slice()) {
                    let again = beam::new_passphrase(&seed);
                    assert_eq!(beam::decode(&again).unwrap(), bytes);
                    assert!(beam::key_pair(&again).is_ok());
                }
            }
            let _ = beam::key_pair(s);
        }
        _ => {
            let Ok(s) = std::str::from_utf8(rest) else { return };
            if let Ok(key) = id_encoding::decode(s) {
                assert_eq!(id_encoding::decode(&id_encoding::encode(&key)).unwrap(), key);
            }
            if let Ok(bytes) = id_encoding::z32_decode(s) {
                let again = id_encoding::z32_encode(&bytes);
                assert_eq!(id_encoding::z32_decode(&again).unwrap(), bytes);
            }
        }
    }
});
