//! Tests of [`Hypercore`]: the shared fixtures (cores, the JS vector cases, a storage that fails
//! writes on demand) and one file per concern.

mod batch;
mod cache;
mod local;
mod proofs;
mod vectors;

use super::*;
use crate::encoding::{Decode, Encode};
use crate::hypercore::messages::{Data, RequestBlock, RequestSeek, RequestUpgrade, TreeNode};
use crate::hypercore::proof::{self, ProofRequest};
use crate::hypercore::{ProofError, SeekResult};
use crate::storage::MemoryStorage;
use futures_executor::block_on;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn hx(b: &[u8]) -> String {
    hex::encode(b)
}

fn seed_pair() -> KeyPair {
    KeyPair::from_seed(&[1u8; 32])
}

async fn writer(compat: bool) -> Hypercore<MemoryStorage> {
    Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair: Some(seed_pair()),
            compat,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn reader(key: [u8; 32]) -> Hypercore<MemoryStorage> {
    Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key: Some(key),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pre {
    None,
    Three,
    Five,
}

struct Case {
    name: &'static str,
    req: ProofRequest,
    enc: &'static str,
    pre: Pre,
    reader_length: u64,
}

const P3_ENC: &str = "090100000161010201520abb1082986713dabf6862ccfe1bb6b87037647d0019b31219493ef186597c00030104019435aca782b6bc40e253392d45c885f3b1ad47f23e7b6c3f9daf5b0868c438c500440100ffc0d71651d8c0c24962a662c90f411f371945e3514669899d3189b832a1bd960415ee04d8ccb4c4159506ad230d223f33ca3dce6aa6d16d27e9fbd47efa25050000";

const CASES: &[Case] = &[
    Case {
        name: "block 0, nodes 0, upgrade 0..5",
        req: ProofRequest { block: Some(RequestBlock { index: 0, nodes: 0 }), hash: None, seek: None, upgrade: Some(RequestUpgrade { start: 0, length: 5 }) },
        enc: "090100000161020201520abb1082986713dabf6862ccfe1bb6b87037647d0019b31219493ef186597c05025ecb153b72aaf9234d9d7289123b41a8340729460a2b1aeffefdd08e6679856e0005010801154996491ba67a786f089c2b396b5ce1e8479ad9416b9057a7431dad4cce19e30044010008e73935474edbfc1aacbb6fea559f9a1dbae4d6715497d07b07f5005ab431574e43affb680e9153941e4aa424676caf86329eda57e8c38fa8c5c09ec0f2920b0000",
        pre: Pre::None,
        reader_length: 5,
    },
    Case {
        name: "block 4, nodes 0, upgrade 0..5",
        req: ProofRequest { block: Some(RequestBlock { index: 4, nodes: 0 }), hash: None, seek: None, upgrade: Some(RequestUpgrade { start: 0, length: 5 }) },
        enc: "0901000401650000050103040f9ccfd59f6c98fd5b6e444a6e57325c91eddcfabceb4c74d92f28c45f310cd30044010008e73935474edbfc1aacbb6fea559f9a1dbae4d6715497d07b07f5005ab431574e43affb680e9153941e4aa424676caf86329eda57e8c38fa8c5c09ec0f2920b0000",
        pre: Pre::None,
        reader_length: 5,
    },
    Case {
        name: "upgrade only 0..5",
        req: ProofRequest { block: None, hash: None, seek: None, upgrade: Some(RequestUpgrade { start: 0, length: 5 }) },
        enc: "08010000050203040f9ccfd59f6c98fd5b6e444a6e57325c91eddcfabceb4c74d92f28c45f310cd30801154996491ba67a786f089c2b396b5ce1e8479ad9416b9057a7431dad4cce19e30044010008e73935474edbfc1aacbb6fea559f9a1dbae4d6715497d07b07f5005ab431574e43affb680e9153941e4aa424676caf86329eda57e8c38fa8c5c09ec0f2920b0000",
        pre: Pre::None,
        reader_length: 5,
    },
    Case {
        name: "upgrade 3..5 (from length 3)",
        req: ProofRequest { block: None, hash: None, seek: None, upgrade: Some(RequestUpgrade { start: 3, length: 2 }) },
        enc: "080100030202060120915cf95a391fc2b132d5b481d1c2467314cc0f2d135f39f060dea90b9a118a0801154996491ba67a786f089c2b396b5ce1e8479ad9416b9057a7431dad4cce19e30044010008e73935474edbfc1aacbb6fea559f9a1dbae4d6715497d07b07f5005ab431574e43affb680e9153941e4aa424676caf86329eda57e8c38fa8c5c09ec0f2920b0000",
        pre: Pre::Three,
        reader_length: 5,
    },
    Case {
        name: "upgrade 0..3 (additional nodes up to 5)",
        req: ProofRequest { block: None, hash: None, seek: None, upgrade: Some(RequestUpgrade { start: 0, length: 3 }) },
        enc: "08010000030201029cac92aaed9e7d11eb629465684582ce39cb496303998de123533b09e16f2f0604019435aca782b6bc40e253392d45c885f3b1ad47f23e7b6c3f9daf5b0868c438c502060120915cf95a391fc2b132d5b481d1c2467314cc0f2d135f39f060dea90b9a118a0801154996491ba67a786f089c2b396b5ce1e8479ad9416b9057a7431dad4cce19e344010008e73935474edbfc1aacbb6fea559f9a1dbae4d6715497d07b07f5005ab431574e43affb680e9153941e4aa424676caf86329eda57e8c38fa8c5c09ec0f2920b0000",
        pre: Pre::None,
        reader_length: 5,
    },
    Case {
        name: "block 1, nodes 0 (no upgrade)",
        req: ProofRequest { block: Some(RequestBlock { index: 1, nodes: 0 }), hash: None, seek: None, upgrade: None },
        enc: "01010001016200",
        pre: Pre::Three,
        reader_length: 3,
    },
    Case {
        name: "block 3, nodes 2 (no upgrade; requires reader at length 5)",
        req: ProofRequest { block: Some(RequestBlock { index: 3, nodes: 2 }), hash: None, seek: None, upgrade: None },
        enc: "0101000301640204019435aca782b6bc40e253392d45c885f3b1ad47f23e7b6c3f9daf5b0868c438c501029cac92aaed9e7d11eb629465684582ce39cb496303998de123533b09e16f2f06",
        pre: Pre::Five,
        reader_length: 5,
    },
    Case {
        name: "hash index 2 (block 1 hash), nodes 1",
        req: ProofRequest { block: None, hash: Some(RequestBlock { index: 2, nodes: 1 }), seek: None, upgrade: None },
        enc: "02010002020201520abb1082986713dabf6862ccfe1bb6b87037647d0019b31219493ef186597c0001423177bd3da55c6ac57419beff9c763bab05e12a6d8908b38b7fc14360228d4a",
        pre: Pre::Three,
        reader_length: 3,
    },
    Case {
        name: "seek bytes 3 + upgrade 0..5",
        req: ProofRequest { block: None, hash: None, seek: Some(RequestSeek { bytes: 3, padding: 0 }), upgrade: Some(RequestUpgrade { start: 0, length: 5 }) },
        enc: "0c0100030304019435aca782b6bc40e253392d45c885f3b1ad47f23e7b6c3f9daf5b0868c438c5060120915cf95a391fc2b132d5b481d1c2467314cc0f2d135f39f060dea90b9a118a01029cac92aaed9e7d11eb629465684582ce39cb496303998de123533b09e16f2f060005010801154996491ba67a786f089c2b396b5ce1e8479ad9416b9057a7431dad4cce19e30044010008e73935474edbfc1aacbb6fea559f9a1dbae4d6715497d07b07f5005ab431574e43affb680e9153941e4aa424676caf86329eda57e8c38fa8c5c09ec0f2920b0000",
        pre: Pre::None,
        reader_length: 5,
    },
    Case {
        name: "seek bytes 3 (no upgrade)",
        req: ProofRequest { block: None, hash: None, seek: Some(RequestSeek { bytes: 3, padding: 0 }), upgrade: None },
        enc: "000100",
        pre: Pre::Three,
        reader_length: 3,
    },
];

async fn five_block_writer() -> (Hypercore<MemoryStorage>, Data) {
    let mut w = writer(false).await;
    w.append(&[b"a", b"b", b"c"]).await.unwrap();
    let p3 = w
        .proof(&ProofRequest {
            block: Some(RequestBlock { index: 0, nodes: 0 }),
            upgrade: Some(RequestUpgrade {
                start: 0,
                length: 3,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    w.append(&[b"d", b"e"]).await.unwrap();
    (w, p3)
}

/// [`MemoryStorage`] that counts writes and fails them when told to.
type Flaky = crate::storage::Instrumented<MemoryStorage>;
