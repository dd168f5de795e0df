//! Tests of [`Hypercore`] against the JS golden vectors (`vectors/data/02-hypercore-tree.out`,
//! `03-proofs.out`) and its local semantics.

use super::*;
use crate::encoding::{Decode, Encode};
use crate::hypercore::messages::{RequestBlock, RequestSeek, RequestUpgrade};
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

const TH3: &str = "7ea73eb86179fb7328e73663f90f4c91256574af1112efe97fdf9309e03b67a7";
const TH_TRUNC2: &str = "3424a063fb40dfef317c8ca38fb8c37dfdbccac669582f6f9cddd22bbdf9c044";
const TH_Z: &str = "f6516686da8a8bbd6176e5c196121719310c904ae4c6e4c42964f4151a715b8e";

#[test]
fn compat_core_matches_js_vectors() {
    block_on(async {
        let mut c = writer(true).await;
        assert!(c.is_compat() && c.writable() && !c.encrypted());
        c.append(&[b"a", b"b", b"c"]).await.unwrap();
        assert_eq!(
            hx(c.key()),
            "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
        );
        assert_eq!(
            hx(c.discovery_key()),
            "c1feb82a2b3ba065ffed9f6addcf19ac250793bcab748986a1b4272c62da20e6"
        );
        assert_eq!(hx(&c.tree_hash()), TH3);
        assert_eq!((c.length(), c.fork(), c.byte_length()), (3, 0, 3));
        assert_eq!(hx(c.signature()), "deb1a2d6b46b1ac51fa3111f84cd6d0874ab43f325e160aff4d3d95acfdfec67b399fd0bd4e09b86fdbf19bd894b28e0a9d4bbf58c4ccb326fc888d8428d960e");
        assert_eq!(hx(&c.signable()), "9fac70b50ca14efc4e91c833b204e75b8b5aad8b5881bfc0adb5ef38a3275b9c7ea73eb86179fb7328e73663f90f4c91256574af1112efe97fdf9309e03b67a703000000000000000000000000000000");
        c.truncate(2, None).await.unwrap();
        assert_eq!((c.length(), c.fork()), (2, 1));
        assert_eq!(hx(&c.tree_hash()), TH_TRUNC2);
        assert_eq!(hx(c.signature()), "db498b9168f7e6704c90055542c29ecea01dd8a49552d9f0960ee177926725a358cd01a560461e5c889bdb90785ed138f54f929c017f5e3ae25b81172e95940d");
        c.append(&[b"z"]).await.unwrap();
        assert_eq!((c.length(), c.fork()), (3, 1));
        assert_eq!(hx(&c.tree_hash()), TH_Z);
        c.verify_all().await.unwrap();
    });
}

#[test]
fn default_core_matches_js_vectors() {
    block_on(async {
        let mut c = writer(false).await;
        assert!(!c.is_compat());
        c.append(&[b"a", b"b", b"c"]).await.unwrap();
        assert_eq!(
            hx(c.key()),
            "d8c3a0597903b28d751c6e0b7107775e388ec5a3cf669bdd1e7ec41b8b8f6e72"
        );
        assert_eq!(
            hx(c.discovery_key()),
            "fb892b1c77fdcb05dcbd234607208b7036e00a13e7f2cc0bbaa463924e57865a"
        );
        assert_eq!(
            hx(&c.manifest().unwrap().to_bytes()),
            "0100000101004144eea531e483d54e0c14f4ca68e0644f355343ff6fcb0f005200e12cd747cb8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
        );
        assert_eq!(hx(&c.tree_hash()), TH3);
        assert_eq!(hx(c.signature()), "0100ffc0d71651d8c0c24962a662c90f411f371945e3514669899d3189b832a1bd960415ee04d8ccb4c4159506ad230d223f33ca3dce6aa6d16d27e9fbd47efa25050000");
        assert_eq!(hx(&c.signable()), "9fac70b50ca14efc4e91c833b204e75b8b5aad8b5881bfc0adb5ef38a3275b9cd8c3a0597903b28d751c6e0b7107775e388ec5a3cf669bdd1e7ec41b8b8f6e727ea73eb86179fb7328e73663f90f4c91256574af1112efe97fdf9309e03b67a703000000000000000000000000000000");
        // Stored nodes match JS.
        let n1 = c.tree_node(1).await.unwrap().unwrap();
        assert_eq!(
            (n1.size, hx(&n1.hash)),
            (
                2,
                "9cac92aaed9e7d11eb629465684582ce39cb496303998de123533b09e16f2f06".into()
            )
        );
        assert_eq!(c.tree_node(3).await.unwrap(), None);
        c.truncate(2, None).await.unwrap();
        assert_eq!(hx(&c.tree_hash()), TH_TRUNC2);
        assert_eq!(hx(c.signature()), "010033992c43877378c03da43a5714fe0fe3fdefde443f126eb9475e2e9d984b1052d70da13db383587323fe20ae3dd4719c3f73860c38953d21840602c3322c110c0000");
        c.append(&[b"z"]).await.unwrap();
        assert_eq!(hx(&c.tree_hash()), TH_Z);
        assert_eq!(c.get(2).await.unwrap().unwrap(), b"z");
        c.verify_all().await.unwrap();
    });
}

#[test]
fn explicit_v1_manifest_gives_default_key() {
    block_on(async {
        let kp = seed_pair();
        let c = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                manifest: Some(Manifest::default_signer(kp.public_key)),
                key_pair: Some(kp),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            hx(c.key()),
            "d8c3a0597903b28d751c6e0b7107775e388ec5a3cf669bdd1e7ec41b8b8f6e72"
        );
        // A key pair that is not a signer is refused.
        let other = KeyPair::from_seed(&[2u8; 32]);
        let err = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                manifest: Some(Manifest::default_signer(seed_pair().public_key)),
                key_pair: Some(other),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HypercoreError::KeyMismatch(_)));
    });
}

#[test]
fn encrypted_blocks_match_js_vector() {
    block_on(async {
        let mut c = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(seed_pair()),
                encryption_key: Some([9u8; 32]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(c.encrypted());
        c.append(&[b"x", b"yy", b"zzz"]).await.unwrap();
        assert_eq!(c.byte_length(), 6);
        assert_eq!(c.tree().byte_length, 6 + 3 * 8);
        // Bring the core to fork 5 at length 3 so block 3 is appended at fork 5 (the JS vector:
        // encrypt(index=3, fork=5, "hello")).
        c.truncate(3, Some(5)).await.unwrap();
        c.append(&[b"hello"]).await.unwrap();
        let stored = c.get_stored(3).await.unwrap().unwrap();
        assert_eq!(hx(&stored), "8400a6088e6b8d7596b1ca3b72");
        assert_eq!(c.get(3).await.unwrap().unwrap(), b"hello");
        assert_eq!(c.get(1).await.unwrap().unwrap(), b"yy");
        // The tree hashes the stored (encrypted) bytes.
        let leaf = c.tree_node(6).await.unwrap().unwrap();
        assert_eq!(leaf.hash, crate::crypto::leaf_hash(&stored));
        // byte seek skips padding
        assert_eq!(
            c.seek(3).await.unwrap(),
            SeekResult::Found {
                index: 2,
                offset: 0
            }
        );
        assert_eq!(
            c.seek(7).await.unwrap(),
            SeekResult::Found {
                index: 3,
                offset: 1
            }
        );
        c.verify_all().await.unwrap();
        // Reopen: without the key reads fail with a typed error; with it they work.
        let s = c.storage().clone();
        let nokey = Hypercore::open(s.clone(), OpenOptions::default())
            .await
            .unwrap();
        assert!(nokey.encrypted());
        assert_eq!(
            nokey.get(3).await.unwrap_err(),
            HypercoreError::EncryptionKeyRequired
        );
        let withkey = Hypercore::open(
            s,
            OpenOptions {
                encryption_key: Some([9u8; 32]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(withkey.get(3).await.unwrap().unwrap(), b"hello");
    });
}

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

fn wire(mut p: Data) -> Vec<u8> {
    p.request = 1;
    p.to_bytes()
}

#[test]
fn proofs_match_js_vectors_and_verify_on_fresh_readers() {
    block_on(async {
        let (w, p3) = five_block_writer().await;
        assert_eq!(hx(&wire(p3.clone())), P3_ENC);
        let manifest = w.manifest().cloned();
        for case in CASES {
            let p = w.proof(&case.req).await.unwrap();
            assert_eq!(hx(&wire(p.clone())), case.enc, "{}", case.name);
            // The wire bytes decode back to the same proof.
            let decoded = Data::from_bytes(&h(case.enc)).unwrap();
            assert_eq!(
                decoded,
                Data {
                    request: 1,
                    ..p.clone()
                },
                "{}",
                case.name
            );
            let mut r = reader(*w.key()).await;
            assert!(!r.writable());
            match case.pre {
                Pre::None => {}
                Pre::Three => {
                    r.apply_proof(&Data {
                        manifest: manifest.clone(),
                        ..p3.clone()
                    })
                    .await
                    .unwrap();
                    assert_eq!(r.length(), 3);
                }
                Pre::Five => {
                    let up = w
                        .proof(&ProofRequest {
                            upgrade: Some(RequestUpgrade {
                                start: 0,
                                length: 5,
                            }),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    r.apply_proof(&Data {
                        manifest: manifest.clone(),
                        ..up
                    })
                    .await
                    .unwrap();
                    assert_eq!(r.length(), 5);
                }
            }
            let out = r
                .apply_proof(&Data {
                    manifest: manifest.clone(),
                    ..p.clone()
                })
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(r.length(), case.reader_length, "{}", case.name);
            if let Some(b) = &p.block {
                assert_eq!(out.block, Some(b.index));
                assert!(r.has(b.index));
                assert_eq!(r.get(b.index).await.unwrap().unwrap(), b.value);
            }
            if r.length() == 5 {
                assert_eq!(r.tree_hash(), w.tree_hash());
                assert_eq!(r.signature(), w.signature());
                assert_eq!(r.manifest(), w.manifest());
            }
        }
    });
}

#[test]
fn reader_state_survives_reopen_and_serves_proofs() {
    block_on(async {
        let (w, _) = five_block_writer().await;
        let mut r = reader(*w.key()).await;
        for i in 0..5u64 {
            let p = w
                .proof(&ProofRequest {
                    block: Some(RequestBlock {
                        index: i,
                        nodes: if i == 0 {
                            0
                        } else {
                            r.missing_nodes(2 * i).await.unwrap()
                        },
                    }),
                    upgrade: (i == 0).then_some(RequestUpgrade {
                        start: 0,
                        length: 5,
                    }),
                    ..Default::default()
                })
                .await
                .unwrap();
            r.apply_proof(&Data {
                manifest: w.manifest().cloned(),
                ..p
            })
            .await
            .unwrap();
        }
        assert_eq!(r.contiguous_length(), 5);
        r.verify_all().await.unwrap();
        let r2 = Hypercore::open(r.storage().clone(), OpenOptions::default())
            .await
            .unwrap();
        assert_eq!(r2.length(), 5);
        assert_eq!(r2.tree_hash(), w.tree_hash());
        assert_eq!(r2.manifest(), w.manifest());
        assert!(!r2.writable());
        // The reader can now serve the same proof the writer does.
        let req = ProofRequest {
            block: Some(RequestBlock { index: 2, nodes: 0 }),
            upgrade: Some(RequestUpgrade {
                start: 0,
                length: 5,
            }),
            ..Default::default()
        };
        assert_eq!(r2.proof(&req).await.unwrap(), w.proof(&req).await.unwrap());
    });
}

#[test]
fn tampered_proofs_are_rejected_and_leave_the_reader_unchanged() {
    block_on(async {
        let (w, _) = five_block_writer().await;
        let m = w.manifest().cloned();
        let good = w
            .proof(&ProofRequest {
                block: Some(RequestBlock { index: 0, nodes: 0 }),
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: 5,
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        let good = Data {
            manifest: m.clone(),
            ..good
        };
        let mut r = reader(*w.key()).await;
        let snapshot_of = |r: &Hypercore<MemoryStorage>| {
            (
                r.length(),
                r.fork(),
                r.tree_hash(),
                r.signature().to_vec(),
                r.has(0),
            )
        };
        let before = snapshot_of(&r);
        let storage_before = r.storage().scan(&[0], &[0xff], None).await.unwrap();

        let mut bad_value = good.clone();
        bad_value.block.as_mut().unwrap().value = b"X".to_vec();
        let e = r.apply_proof(&bad_value).await.unwrap_err();
        assert!(matches!(e, HypercoreError::InvalidSignature(_)), "{e}");

        let mut bad_node = good.clone();
        bad_node.block.as_mut().unwrap().nodes[0].hash[0] ^= 1;
        assert!(matches!(
            r.apply_proof(&bad_node).await.unwrap_err(),
            HypercoreError::InvalidSignature(_)
        ));

        let mut bad_sig = good.clone();
        let n = bad_sig.upgrade.as_ref().unwrap().signature.len();
        bad_sig.upgrade.as_mut().unwrap().signature[n - 5] ^= 1;
        assert!(matches!(
            r.apply_proof(&bad_sig).await.unwrap_err(),
            HypercoreError::InvalidSignature(_)
        ));

        let mut bad_shape = good.clone();
        bad_shape.upgrade.as_mut().unwrap().nodes[0].index = 6;
        assert_eq!(
            r.apply_proof(&bad_shape).await.unwrap_err(),
            HypercoreError::InvalidProof(ProofError::UnexpectedNode {
                expected: 8,
                got: 6
            })
        );

        let mut missing = good.clone();
        missing.block.as_mut().unwrap().nodes.pop();
        assert!(matches!(
            r.apply_proof(&missing).await.unwrap_err(),
            HypercoreError::InvalidProof(_)
        ));

        let mut wrong_manifest = good.clone();
        wrong_manifest.manifest = Some(Manifest::default_signer(
            KeyPair::from_seed(&[2; 32]).public_key,
        ));
        assert!(matches!(
            r.apply_proof(&wrong_manifest).await.unwrap_err(),
            HypercoreError::KeyMismatch(_)
        ));

        let mut wrong_fork = good.clone();
        wrong_fork.fork = 1;
        // A higher fork is a reorg attempt: the signature (which covers the fork) must verify.
        assert!(matches!(
            r.apply_proof(&wrong_fork).await.unwrap_err(),
            HypercoreError::InvalidSignature(_)
        ));

        assert_eq!(snapshot_of(&r), before);
        assert_eq!(
            r.storage().scan(&[0], &[0xff], None).await.unwrap(),
            storage_before
        );
        r.apply_proof(&good).await.unwrap();
        assert_eq!(r.length(), 5);

        // After the upgrade, a block proof without upgrade is checked against stored nodes.
        let p = w
            .proof(&ProofRequest {
                block: Some(RequestBlock { index: 1, nodes: 0 }),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut bad = p.clone();
        bad.block.as_mut().unwrap().value = b"q".to_vec();
        assert_eq!(
            r.apply_proof(&bad).await.unwrap_err(),
            HypercoreError::InvalidProof(ProofError::InvalidChecksum(2))
        );
        assert!(!r.has(1));
        r.apply_proof(&p).await.unwrap();
        assert_eq!(r.get(1).await.unwrap().unwrap(), b"b");
    });
}

#[test]
fn reopen_gives_same_state_and_stays_writable() {
    block_on(async {
        let mut c = writer(false).await;
        let blocks: Vec<Vec<u8>> = (0..100u32)
            .map(|i| format!("block {i}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
        c.append(&refs[..60]).await.unwrap();
        c.append(&refs[60..]).await.unwrap();
        let s = c.storage().clone();
        let mut c2 = Hypercore::open(s.clone(), OpenOptions::default())
            .await
            .unwrap();
        assert_eq!(c2.key(), c.key());
        assert_eq!(c2.length(), 100);
        assert_eq!(c2.byte_length(), c.byte_length());
        assert_eq!(c2.tree_hash(), c.tree_hash());
        assert_eq!(c2.signature(), c.signature());
        assert_eq!(c2.fork(), c.fork());
        assert!(c2.writable());
        assert_eq!(c2.contiguous_length(), 100);
        for i in [0u64, 59, 60, 99] {
            assert_eq!(c2.get(i).await.unwrap().unwrap(), blocks[i as usize]);
        }
        assert_eq!(
            c2.get_range(98, 100).await.unwrap(),
            vec![Some(blocks[98].clone()), Some(blocks[99].clone())]
        );
        c2.append(&[b"more"]).await.unwrap();
        c2.verify_all().await.unwrap();
        assert_eq!(
            Hypercore::open(MemoryStorage::new(), OpenOptions::default())
                .await
                .unwrap_err(),
            HypercoreError::NotFound
        );
        assert_eq!(
            Hypercore::create(
                s,
                CreateOptions {
                    key_pair: Some(seed_pair()),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err(),
            HypercoreError::AlreadyExists
        );
    });
}

#[test]
fn errors_for_bad_calls() {
    block_on(async {
        let mut c = writer(false).await;
        let big = vec![0u8; MAX_BLOCK_SIZE + 1];
        assert_eq!(
            c.append(&[b"ok", &big]).await.unwrap_err(),
            HypercoreError::BlockTooLarge {
                size: MAX_BLOCK_SIZE + 1,
                max: MAX_BLOCK_SIZE
            }
        );
        assert_eq!(c.length(), 0);
        c.append(&[b"a"]).await.unwrap();
        assert_eq!(
            c.get(1).await.unwrap_err(),
            HypercoreError::OutOfBounds {
                index: 1,
                length: 1
            }
        );
        assert_eq!(
            c.truncate(2, None).await.unwrap_err(),
            HypercoreError::OutOfBounds {
                index: 2,
                length: 1
            }
        );
        let mut r = reader(*c.key()).await;
        assert_eq!(
            r.append(&[b"x"]).await.unwrap_err(),
            HypercoreError::NotWritable
        );
        assert_eq!(
            r.truncate(0, None).await.unwrap_err(),
            HypercoreError::NotWritable
        );
    });
}

#[test]
fn clear_has_seek_and_snapshots() {
    block_on(async {
        let mut c = writer(false).await;
        c.append(&[b"aa", b"bbb", b"c", b"dddd"]).await.unwrap();
        assert!(c.has(0) && c.has(3) && !c.has(4));
        assert_eq!(
            c.seek(0).await.unwrap(),
            SeekResult::Found {
                index: 0,
                offset: 0
            }
        );
        assert_eq!(
            c.seek(4).await.unwrap(),
            SeekResult::Found {
                index: 1,
                offset: 2
            }
        );
        assert_eq!(
            c.seek(6).await.unwrap(),
            SeekResult::Found {
                index: 3,
                offset: 0
            }
        );
        assert_eq!(
            c.seek(10).await.unwrap(),
            SeekResult::Found {
                index: 4,
                offset: 0
            }
        );
        assert_eq!(c.seek(11).await.unwrap(), SeekResult::OutOfBounds);

        c.clear(1, 3).await.unwrap();
        assert!(c.has(0) && !c.has(1) && !c.has(2) && c.has(3));
        assert_eq!(c.get(1).await.unwrap(), None);
        assert_eq!(c.contiguous_length(), 1);
        // Cleared blocks cannot be served; the tree is intact.
        assert_eq!(
            c.proof(&ProofRequest {
                block: Some(RequestBlock { index: 1, nodes: 0 }),
                ..Default::default()
            })
            .await
            .unwrap_err(),
            HypercoreError::BlockNotAvailable(1)
        );
        let reopened = Hypercore::open(c.storage().clone(), OpenOptions::default())
            .await
            .unwrap();
        assert!(!reopened.has(1) && reopened.has(3));
        assert_eq!(reopened.contiguous_length(), 1);

        let snap = c.snapshot();
        assert_eq!((snap.length(), snap.byte_length(), snap.fork()), (4, 10, 0));
        c.append(&[b"eeeee"]).await.unwrap();
        assert_eq!(snap.length(), 4);
        assert_eq!(c.get_at(&snap, 3).await.unwrap().unwrap(), b"dddd");
        assert!(matches!(
            c.get_at(&snap, 4).await.unwrap_err(),
            HypercoreError::OutOfBounds { .. }
        ));
        c.truncate(3, None).await.unwrap();
        assert_eq!(c.get_at(&snap, 0).await.unwrap().unwrap(), b"aa");
        assert_eq!(
            c.get_at(&snap, 3).await.unwrap_err(),
            HypercoreError::SnapshotNotAvailable {
                index: 3,
                available: 3
            }
        );
        assert_eq!(snap.tree_hash().len(), 32);
        assert!(!c.has(3));
        assert_eq!(
            c.get(3).await.unwrap_err(),
            HypercoreError::OutOfBounds {
                index: 3,
                length: 3
            }
        );
    });
}

#[test]
fn verify_all_detects_tampered_storage() {
    block_on(async {
        let mut c = writer(false).await;
        c.append(&[b"a", b"b", b"c", b"d"]).await.unwrap();
        c.verify_all().await.unwrap();
        let s = c.storage().clone();
        let mut b = Batch::new();
        b.put(
            super::layout::block_key(3),
            super::blocks::encode_chunk(&[b"a", b"b", b"X", b"d"]),
        );
        s.write(b).await.unwrap();
        assert_eq!(
            c.verify_all().await.unwrap_err(),
            HypercoreError::BlockMismatch(2)
        );
        // Restore the block and break the signature instead.
        let mut b = Batch::new();
        b.put(
            super::layout::block_key(3),
            super::blocks::encode_chunk(&[b"a", b"b", b"c", b"d"]),
        );
        s.write(b).await.unwrap();
        c.verify_all().await.unwrap();
        let mut forged = Hypercore::open(s, OpenOptions::default()).await.unwrap();
        let n = forged.tree.signature.len();
        forged.tree.signature[n - 5] ^= 1;
        assert!(matches!(
            forged.verify_all().await.unwrap_err(),
            HypercoreError::InvalidSignature(_)
        ));
    });
}

#[test]
fn header_roundtrip_and_corruption() {
    let hd = Header {
        key: [3; 32],
        manifest: Some(Manifest::default_signer([4; 32])),
        secret_key: Some([5; 64]),
        encrypted: true,
        fork: 7,
        length: 1 << 40,
        tree_hash: [6; 32],
        signature: vec![1, 2, 3],
    };
    assert_eq!(Header::decode(&hd.encode()).unwrap(), hd);
    let enc = hd.encode();
    for cut in 0..enc.len() {
        assert!(Header::decode(&enc[..cut]).is_err());
    }
    block_on(async {
        let s = MemoryStorage::new();
        let mut b = Batch::new();
        b.put(super::layout::header_key(), vec![9, 9, 9]);
        s.write(b).await.unwrap();
        assert!(matches!(
            Hypercore::open(s, OpenOptions::default())
                .await
                .unwrap_err(),
            HypercoreError::Corrupt(_)
        ));
    });
}

/// Disk bytes are untrusted too: a header length no tree can have and stored root sizes that
/// add up past `u64::MAX` are [`HypercoreError::Corrupt`], not overflow panics.
#[test]
fn corrupt_lengths_and_sizes_on_disk_are_errors() {
    block_on(async {
        let (w, s) = {
            let s = MemoryStorage::new();
            let mut w = Hypercore::create(
                s.clone(),
                CreateOptions {
                    key_pair: Some(KeyPair::from_seed(&[1; 32])),
                    ..CreateOptions::default()
                },
            )
            .await
            .unwrap();
            w.append(&[b"a", b"b", b"c"]).await.unwrap();
            (w, s)
        };
        let raw = s.get(&super::layout::header_key()).await.unwrap().unwrap();
        let header = Header::decode(&raw).unwrap();
        for length in [u64::MAX, 1 << 63, 1 << 62] {
            let bad = Header {
                length,
                ..header.clone()
            };
            let copy = MemoryStorage::new();
            let mut b = Batch::new();
            for (k, v) in s.scan(&[], &[0xff; 8], None).await.unwrap() {
                b.put(k, v);
            }
            b.put(super::layout::header_key(), bad.encode());
            copy.write(b).await.unwrap();
            let err = Hypercore::open(copy, OpenOptions::default())
                .await
                .unwrap_err();
            assert!(
                matches!(err, HypercoreError::Corrupt(_) | HypercoreError::Decode(_)),
                "length {length}: {err:?}"
            );
        }
        // Roots 1 (blocks 0-1) and 4 (block 2): make their sizes overflow.
        let page = super::tree::page_of(4);
        let key = super::layout::tree_node_key(page);
        let bytes = s.get(&key).await.unwrap().unwrap();
        let mut np = super::tree::NodePage::decode(page, bytes).unwrap();
        for i in [1, 4] {
            let n = np.get(i).unwrap().unwrap();
            np.put(&TreeNode {
                size: u64::MAX - 1,
                ..n
            });
        }
        let mut b = Batch::new();
        b.put(key, np.as_bytes().to_vec());
        s.write(b).await.unwrap();
        drop(w);
        let err = Hypercore::open(s, OpenOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, HypercoreError::Corrupt(_)), "{err:?}");
    });
}

async fn sync_all(w: &Hypercore<MemoryStorage>, r: &mut Hypercore<MemoryStorage>) {
    let up = w
        .proof(&ProofRequest {
            upgrade: Some(RequestUpgrade {
                start: 0,
                length: w.length(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    r.apply_proof(&Data {
        manifest: w.manifest().cloned(),
        ..up
    })
    .await
    .unwrap();
    for i in 0..w.length() {
        if r.has(i) {
            continue;
        }
        let nodes = r.missing_nodes(2 * i).await.unwrap();
        let p = w
            .proof(&ProofRequest {
                block: Some(RequestBlock { index: i, nodes }),
                ..Default::default()
            })
            .await
            .unwrap();
        r.apply_proof(&p).await.unwrap();
    }
}

#[test]
fn reader_follows_writer_across_a_fork() {
    block_on(async {
        let mut w = writer(false).await;
        w.append(&[b"a", b"b", b"c", b"d"]).await.unwrap();
        let mut r = reader(*w.key()).await;
        sync_all(&w, &mut r).await;
        assert_eq!((r.length(), r.contiguous_length()), (4, 4));
        let snap = r.snapshot();

        // Same prefix, new fork: the shared root keeps the blocks.
        w.truncate(4, None).await.unwrap();
        w.append(&[b"e"]).await.unwrap();
        // A block proof at the new fork without upgrade is refused.
        let p = w
            .proof(&ProofRequest {
                block: Some(RequestBlock { index: 4, nodes: 0 }),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(matches!(
            r.apply_proof(&p).await.unwrap_err(),
            HypercoreError::InvalidProof(ProofError::ForkMismatch { local: 0, got: 1 })
        ));
        sync_all(&w, &mut r).await;
        assert_eq!((r.length(), r.fork(), r.contiguous_length()), (5, 1, 5));
        assert_eq!(r.tree_hash(), w.tree_hash());
        assert_eq!(r.get_at(&snap, 3).await.unwrap().unwrap(), b"d");

        // Divergent history: truncate to 2 and append other data.
        w.truncate(2, None).await.unwrap();
        w.append(&[b"x", b"y"]).await.unwrap();
        let up = w
            .proof(&ProofRequest {
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: 4,
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        let out = r.apply_proof(&up).await.unwrap();
        assert_eq!(out.upgraded_to, Some(4));
        assert_eq!((r.length(), r.fork()), (4, 2));
        assert!(!r.has(2) && !r.has(3));
        assert!(matches!(
            r.get_at(&snap, 3).await.unwrap_err(),
            HypercoreError::SnapshotNotAvailable { .. }
        ));
        sync_all(&w, &mut r).await;
        assert_eq!(r.get(2).await.unwrap().unwrap(), b"x");
        assert_eq!(r.get(0).await.unwrap().unwrap(), b"a");
        assert_eq!(r.tree_hash(), w.tree_hash());
        r.verify_all().await.unwrap();
        let reopened = Hypercore::open(r.storage().clone(), OpenOptions::default())
            .await
            .unwrap();
        assert_eq!((reopened.length(), reopened.fork()), (4, 2));
        reopened.verify_all().await.unwrap();

        // An older fork is refused.
        let mut stale = up.clone();
        stale.fork = 1;
        assert!(matches!(
            r.apply_proof(&stale).await.unwrap_err(),
            HypercoreError::InvalidProof(ProofError::ForkMismatch { local: 2, got: 1 })
        ));
    });
}

#[test]
fn compat_reader_without_manifest_verifies_with_default_signer() {
    block_on(async {
        let mut w = writer(true).await;
        w.append(&[b"one", b"two", b"three"]).await.unwrap();
        let mut r = reader(*w.key()).await;
        assert!(r.manifest().is_none());
        let up = w
            .proof(&ProofRequest {
                block: Some(RequestBlock { index: 1, nodes: 0 }),
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: 3,
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        let out = r.apply_proof(&up).await.unwrap();
        assert!(out.manifest_stored);
        assert!(r.is_compat());
        assert_eq!(r.get(1).await.unwrap().unwrap(), b"two");
        assert_eq!(r.signature(), w.signature());
    });
}

/// An encrypted reader created from the key alone learns from the manifest that the core is
/// compat, and from then on decrypts with the compat block key (as JS reloads its encryption).
#[test]
fn encrypted_compat_reader_switches_block_key_with_the_manifest() {
    block_on(async {
        let ek = [0x42u8; 32];
        let mut w = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(seed_pair()),
                compat: true,
                encryption_key: Some(ek),
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
        w.append(&[b"one", b"two", b"three"]).await.unwrap();
        let mut r = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key: Some(*w.key()),
                encryption_key: Some(ek),
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
        assert!(!r.is_compat());
        sync_all(&w, &mut r).await;
        assert!(r.is_compat());
        for (i, b) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
            assert_eq!(r.get(i as u64).await.unwrap().unwrap(), b);
        }
    });
}

/// Mutated wire proofs (bit flips, truncations, spliced bytes) decode to errors or to proofs
/// that either apply or fail with a typed error: never a panic, and a failed apply leaves the
/// reader as it was.
#[test]
fn mutated_wire_proofs_never_panic() {
    block_on(async {
        let (w, p3) = five_block_writer().await;
        let m = w.manifest().cloned();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut applied = 0;
        let mut rejected = 0;
        for case in CASES {
            let enc = h(case.enc);
            for _ in 0..60 {
                let mut bytes = enc.clone();
                match next() % 3 {
                    0 => {
                        let i = (next() as usize) % bytes.len();
                        bytes[i] ^= 1 << (next() % 8);
                    }
                    1 => bytes.truncate((next() as usize) % bytes.len()),
                    _ => {
                        let i = (next() as usize) % bytes.len();
                        bytes[i] = 0xff;
                    }
                }
                let Ok(mut p) = Data::from_bytes(&bytes) else {
                    continue;
                };
                p.manifest = m.clone();
                let mut r = reader(*w.key()).await;
                r.apply_proof(&Data {
                    manifest: m.clone(),
                    ..p3.clone()
                })
                .await
                .unwrap();
                let before = (r.length(), r.fork(), r.tree_hash(), r.contiguous_length());
                match r.apply_proof(&p).await {
                    Ok(_) => applied += 1,
                    Err(_) => {
                        rejected += 1;
                        assert_eq!(
                            (r.length(), r.fork(), r.tree_hash(), r.contiguous_length()),
                            before
                        );
                    }
                }
                // Mutated requests must not panic the generator either.
                if let Ok(req) = crate::hypercore::messages::Request::from_bytes(&bytes) {
                    let _ = w.proof(&ProofRequest::from(&req)).await;
                }
            }
        }
        assert!(rejected > 100, "rejected {rejected}");
        assert!(applied > 0, "applied {applied}");
    });
}

/// The core's futures are `Send` on native targets (so a multi-threaded runtime can drive them).
#[test]
fn futures_are_send() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let mut c = block_on(writer(false));
    let blocks: [&[u8]; 1] = [b"x"];
    block_on(assert_send(c.append(&blocks))).unwrap();
    let req = ProofRequest {
        block: Some(RequestBlock { index: 0, nodes: 0 }),
        upgrade: Some(RequestUpgrade {
            start: 0,
            length: 1,
        }),
        ..Default::default()
    };
    let p = block_on(assert_send(c.proof(&req))).unwrap();
    let mut r = block_on(reader(*c.key()));
    let p = Data {
        manifest: c.manifest().cloned(),
        ..p
    };
    block_on(assert_send(r.apply_proof(&p))).unwrap();
    assert_eq!(block_on(assert_send(r.get(0))).unwrap().unwrap(), b"x");
    block_on(assert_send(c.truncate(0, None))).unwrap();
    block_on(assert_send(c.verify_all())).unwrap();
    assert_eq!(c.length(), 0);
}

/// Tree nodes are stored in pages of 32: truncating inside a page, at a page boundary and to
/// zero, then re-appending, must leave exactly the nodes a fresh core of the same blocks has.
#[test]
fn node_pages_survive_truncates_at_and_inside_page_boundaries() {
    block_on(async {
        let blocks: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let more: Vec<Vec<u8>> = (0..90u32).map(|i| vec![i as u8; 3]).collect();
        for (cut, batch) in [(17u64, 7usize), (16, 1), (0, 50), (33, 200), (64, 3)] {
            let mut a = writer(false).await;
            for chunk in blocks.chunks(batch) {
                let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                a.append(&refs).await.unwrap();
            }
            a.truncate(cut, None).await.unwrap();
            // Nothing at or past the cut survives, in the cut page or after it.
            for i in 2 * cut..2 * blocks.len() as u64 + 64 {
                let stored = crate::hypercore::tree::get_node(a.storage(), i)
                    .await
                    .unwrap();
                assert_eq!(stored, None, "cut {cut}, stale node {i}");
            }
            let refs: Vec<&[u8]> = more.iter().map(Vec::as_slice).collect();
            a.append(&refs).await.unwrap();
            a.verify_all().await.unwrap();

            let mut b = writer(false).await;
            let expect: Vec<&[u8]> = blocks[..cut as usize]
                .iter()
                .chain(&more)
                .map(Vec::as_slice)
                .collect();
            b.append(&expect).await.unwrap();
            assert_eq!(a.tree_hash(), b.tree_hash(), "cut {cut}");
            // Every node up to well past the end: same presence, same content.
            for i in 0..2 * blocks.len() as u64 + 64 {
                assert_eq!(
                    crate::hypercore::tree::get_node(a.storage(), i)
                        .await
                        .unwrap(),
                    crate::hypercore::tree::get_node(b.storage(), i)
                        .await
                        .unwrap(),
                    "cut {cut}, node {i}"
                );
            }
            // And the state survives a reopen.
            let again = Hypercore::open(a.storage().clone(), OpenOptions::default())
                .await
                .unwrap();
            again.verify_all().await.unwrap();
            assert_eq!(again.tree_hash(), b.tree_hash());
        }
    });
}

/// Proofs served through the node page cache equal uncached ones and verify, across appends, a
/// truncate that rewrites cached pages, and a reader's reorg.
#[test]
fn cached_proofs_match_uncached_across_appends_and_truncates() {
    block_on(async {
        let mut w = writer(true).await;
        let blocks: Vec<Vec<u8>> = (0..1100u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        w.append(&refs[..700]).await.unwrap();

        async fn check(w: &Hypercore<MemoryStorage>, step: u64) {
            let len = w.length();
            let mut r = reader(*w.key()).await;
            for i in (0..len).step_by(step as usize) {
                let req = ProofRequest {
                    block: Some(RequestBlock { index: i, nodes: 0 }),
                    upgrade: Some(RequestUpgrade {
                        start: 0,
                        length: len,
                    }),
                    ..ProofRequest::default()
                };
                let cached = w.proof(&req).await.unwrap();
                let mut plain = proof::generate(w.storage(), w.tree(), None, &req)
                    .await
                    .unwrap();
                plain.block.as_mut().unwrap().value = w.get(i).await.unwrap().unwrap();
                assert_eq!(cached, plain, "block {i} of {len}");
                r.apply_proof(&cached)
                    .await
                    .unwrap_or_else(|e| panic!("apply block {i} of {len} fork {}: {e}", w.fork()));
                assert_eq!(r.get(i).await.unwrap(), w.get(i).await.unwrap());
            }
            assert_eq!((r.length(), r.tree_hash()), (len, w.tree_hash()));
        }

        check(&w, 7).await;
        assert!(w.node_cache.len() > 0, "upper pages are cached");
        w.append(&refs[700..900]).await.unwrap();
        check(&w, 5).await;
        // Truncate inside cached pages, then grow a different tree over them.
        w.truncate(300, None).await.unwrap();
        check(&w, 3).await;
        let other: Vec<Vec<u8>> = (0..800u32).map(|i| vec![0xee, i as u8]).collect();
        let refs: Vec<&[u8]> = other.iter().map(Vec::as_slice).collect();
        w.append(&refs).await.unwrap();
        check(&w, 3).await;
        w.verify_all().await.unwrap();
    });
}

/// [`MemoryStorage`] that counts writes and fails them while `fail` is set.
#[derive(Clone, Default)]
struct Flaky {
    inner: MemoryStorage,
    writes: Arc<AtomicU64>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl Storage for Flaky {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        self.inner.get_many(keys).await
    }
    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> Result<crate::storage::Entries, StorageError> {
        self.inner.scan(start, end, limit).await
    }
    async fn write(&self, batch: Batch) -> Result<(), StorageError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StorageError::Io("injected failure".into()));
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write(batch).await
    }
}

/// One-block appends extend tree pages kept by the cache since they were written; a failed
/// write leaves neither the cache nor the core ahead of storage: after it, appends, proofs and a fresh open
/// of the same storage agree with the in-memory core.
#[test]
fn node_cache_stays_in_line_with_storage_through_failed_writes() {
    block_on(async {
        let s = Flaky::default();
        let mut w = Hypercore::create(
            s.clone(),
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[9; 32])),
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
        let coherent = |w: &Hypercore<Flaky>| {
            let cached = w.node_cache.snapshot();
            let s = s.inner.clone();
            async move {
                for (page, bytes) in cached {
                    let stored = s.get(&super::layout::tree_node_key(page)).await.unwrap();
                    assert_eq!(stored, Some(bytes), "cached page {page}");
                }
            }
        };
        for i in 0..300u32 {
            if i % 37 == 5 {
                s.fail.store(true, Ordering::SeqCst);
                assert!(w.append(&[b"lost".as_slice()]).await.is_err());
                s.fail.store(false, Ordering::SeqCst);
                coherent(&w).await;
            }
            w.append(&[i.to_le_bytes().as_slice()]).await.unwrap();
        }
        coherent(&w).await;
        assert!(!w.node_cache.snapshot().is_empty());
        assert_eq!(w.length(), 300);
        let fresh = Hypercore::open(s.inner.clone(), OpenOptions::default())
            .await
            .unwrap();
        assert_eq!((fresh.length(), fresh.tree_hash()), (300, w.tree_hash()));
        for i in (0..300).step_by(13) {
            let req = ProofRequest {
                block: Some(RequestBlock { index: i, nodes: 0 }),
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: 300,
                }),
                ..ProofRequest::default()
            };
            assert_eq!(
                w.proof(&req).await.unwrap(),
                fresh.proof(&req).await.unwrap()
            );
            assert_eq!(
                w.get(i).await.unwrap(),
                Some((i as u32).to_le_bytes().to_vec())
            );
        }
        w.verify_all().await.unwrap();
        fresh.verify_all().await.unwrap();
    });
}

async fn flaky_reader(w: &Hypercore<MemoryStorage>) -> Hypercore<Flaky> {
    let mut r = Hypercore::create(
        Flaky::default(),
        CreateOptions {
            key: Some(*w.key()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let up = w
        .proof(&ProofRequest {
            upgrade: Some(RequestUpgrade {
                start: 0,
                length: w.length(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    r.apply_proof(&Data {
        manifest: w.manifest().cloned(),
        ..up
    })
    .await
    .unwrap();
    r
}

/// Block proofs for `indexes` as a reader holding only the roots asks for them one at a time
/// after the previous ones are stored (`nodes` from a reader that applied them one by one).
async fn block_proofs(w: &Hypercore<MemoryStorage>, indexes: &[u64]) -> Vec<Data> {
    let mut r = flaky_reader(w).await;
    let mut out = Vec::new();
    for &i in indexes {
        let nodes = r.missing_nodes(2 * i).await.unwrap();
        let p = w
            .proof(&ProofRequest {
                block: Some(RequestBlock { index: i, nodes }),
                ..Default::default()
            })
            .await
            .unwrap();
        r.apply_proof(&p).await.unwrap();
        out.push(p);
    }
    out
}

async fn dump(s: &Flaky) -> Vec<(Vec<u8>, Vec<u8>)> {
    s.inner.scan(&[], &[0xff; 8], None).await.unwrap()
}

/// Applying a run of block proofs together stores exactly what applying them one by one does,
/// in one write, even when later proofs lean on nodes only earlier ones of the run prove.
#[test]
fn apply_proofs_equals_one_by_one_in_one_write() {
    block_on(async {
        let mut w = writer(false).await;
        let blocks: Vec<Vec<u8>> = (0..100u32).map(|i| vec![i as u8; 1 + i as usize]).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        w.append(&refs).await.unwrap();
        let order: Vec<u64> = (0..40).chain([77, 76, 99, 5]).collect();
        let proofs = block_proofs(&w, &order).await;

        let mut one = flaky_reader(&w).await;
        for p in &proofs {
            one.apply_proof(p).await.unwrap();
        }
        let mut all = flaky_reader(&w).await;
        let before = all.storage().writes.load(Ordering::SeqCst);
        let refs: Vec<&Data> = proofs.iter().collect();
        let results = all.apply_proofs(&refs).await.unwrap();
        assert_eq!(all.storage().writes.load(Ordering::SeqCst), before + 1);
        for (r, &i) in results.iter().zip(&order) {
            assert_eq!(r.as_ref().unwrap().block, Some(i));
        }
        assert_eq!(dump(all.storage()).await, dump(one.storage()).await);
        assert_eq!(all.contiguous_length(), 40);
        assert_eq!(all.contiguous_length(), one.contiguous_length());
        for &i in &order {
            assert_eq!(all.get(i).await.unwrap(), Some(blocks[i as usize].clone()));
        }
        // Reopened from storage alone, the state is the same.
        let again = Hypercore::open(all.storage().clone(), OpenOptions::default())
            .await
            .unwrap();
        assert_eq!(again.contiguous_length(), 40);
        assert!(again.has(99) && !again.has(98));
    });
}

/// A proof that does not verify in the middle of a run gets its error and is not stored; the
/// others are. A proof that cannot be batched is refused without effect.
#[test]
fn apply_proofs_rejects_only_the_bad_proof() {
    block_on(async {
        let mut w = writer(false).await;
        let blocks: Vec<Vec<u8>> = (0..20u32).map(|i| vec![i as u8; 8]).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        w.append(&refs).await.unwrap();
        let mut proofs = block_proofs(&w, &[0, 1, 2, 3]).await;
        proofs[1].block.as_mut().unwrap().value[0] ^= 1;
        let mut upgrade = w
            .proof(&ProofRequest {
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: 20,
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        upgrade.request = 9;
        let mut r = flaky_reader(&w).await;
        let refs: Vec<&Data> = proofs.iter().chain([&upgrade]).collect();
        let results = r.apply_proofs(&refs).await.unwrap();
        assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
        assert!(matches!(results[1], Err(HypercoreError::InvalidProof(_))));
        assert!(matches!(
            results[4],
            Err(HypercoreError::InvalidArgument(_))
        ));
        assert!(r.has(0) && !r.has(1) && r.has(2) && r.has(3));
        assert_eq!(r.contiguous_length(), 1);
        assert_eq!(r.get(1).await.unwrap(), None);
        assert_eq!(r.get(2).await.unwrap(), Some(blocks[2].clone()));
    });
}

/// Batched verification stops climbing at nodes it already trusts (verified earlier in the run,
/// or stored and cached): a tampered block is still caught there, in the same run or a later
/// one, and proof nodes above that point are neither trusted nor stored.
#[test]
fn apply_proofs_checks_against_known_nodes() {
    block_on(async {
        let mut w = writer(false).await;
        let blocks: Vec<Vec<u8>> = (0..64u32).map(|i| vec![i as u8; 100]).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        w.append(&refs).await.unwrap();
        let mut r = flaky_reader(&w).await;
        // Run 1: blocks 0..8; block 5 tampered (block 4's proof brought its leaf hash).
        let mut first = block_proofs(&w, &(0..8).collect::<Vec<_>>()).await;
        first[5].block.as_mut().unwrap().value[0] ^= 1;
        let refs: Vec<&Data> = first.iter().collect();
        let results = r.apply_proofs(&refs).await.unwrap();
        for (i, res) in results.iter().enumerate() {
            assert_eq!(res.is_ok(), i != 5, "block {i}: {res:?}");
        }
        // Run 2: block 9 tampered (block 8 of this run brings its leaf), block 5 again, tampered
        // (its leaf is stored now), then block 5 intact; block 10's proof with a forged node
        // high above the nodes it is checked against (ignored, not stored).
        let mut second = block_proofs(&w, &[8, 9, 5, 5]).await;
        second[1].block.as_mut().unwrap().value[0] ^= 1;
        second[2].block.as_mut().unwrap().value[0] ^= 1;
        // Asked by a reader holding nothing: a proof up to the root, whose top node (the
        // sibling of the root's left half) is far above the node it meets that we trust.
        let mut ten = block_proofs(&w, &[10]).await.remove(0);
        let nodes = &mut ten.block.as_mut().unwrap().nodes;
        assert!(nodes.len() >= 5, "a deep proof: {nodes:?}");
        nodes.last_mut().unwrap().hash[0] ^= 1;
        second.push(ten);
        let refs: Vec<&Data> = second.iter().collect();
        let results = r.apply_proofs(&refs).await.unwrap();
        let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, false, true, true], "{results:?}");
        assert!(!r.has(9) && r.has(5) && r.has(10));
        for i in [0, 1, 2, 3, 4, 5, 6, 7, 8, 10] {
            assert_eq!(r.get(i).await.unwrap(), Some(blocks[i as usize].clone()));
        }
        // Everything stored verifies, and the intact block 9 still applies.
        r.verify_all().await.unwrap();
        let nine = block_proofs(&w, &[9]).await;
        assert!(r.apply_proofs(&[&nine[0]]).await.unwrap()[0].is_ok());
        r.verify_all().await.unwrap();
    });
}

/// When the one write fails, nothing of the run is stored and the core is unchanged; the same
/// run applies afterwards.
#[test]
fn apply_proofs_is_atomic_on_write_failure() {
    block_on(async {
        let mut w = writer(false).await;
        let blocks: Vec<Vec<u8>> = (0..40u32).map(|i| vec![i as u8; 8]).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        w.append(&refs).await.unwrap();
        let proofs = block_proofs(&w, &(0..20).collect::<Vec<_>>()).await;
        let refs: Vec<&Data> = proofs.iter().collect();
        let mut r = flaky_reader(&w).await;
        let stored = dump(r.storage()).await;
        r.storage().fail.store(true, Ordering::SeqCst);
        assert!(matches!(
            r.apply_proofs(&refs).await,
            Err(HypercoreError::Storage(_))
        ));
        assert_eq!(dump(r.storage()).await, stored);
        assert_eq!(r.contiguous_length(), 0);
        assert!((0..40).all(|i| !r.has(i)));
        r.storage().fail.store(false, Ordering::SeqCst);
        let results = r.apply_proofs(&refs).await.unwrap();
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(r.contiguous_length(), 20);
        // The bitfield pages written are the whole truth: a reopen agrees.
        let again = Hypercore::open(r.storage().clone(), OpenOptions::default())
            .await
            .unwrap();
        assert_eq!(again.contiguous_length(), 20);
    });
}
