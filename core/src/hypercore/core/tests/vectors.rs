//! Cores and proofs byte-identical to the JS golden vectors (`vectors/data/02-hypercore-tree.out`,
//! `03-proofs.out`): compat, default and encrypted cores, proofs verifying on fresh readers.

use super::*;

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
