//! Peers' proofs: tampered or mutated proofs are typed errors that leave the reader as it was,
//! readers follow a writer across a fork, compat and encrypted readers learn from the manifest.

use super::*;

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
