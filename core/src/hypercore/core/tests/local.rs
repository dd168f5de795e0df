//! Local semantics and persistence: reopening readers and writers, errors for bad calls,
//! clear/has/seek/snapshots, integrity checks, and corrupt headers or sizes on disk.

use super::*;

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
        conflict: None,
    };
    assert_eq!(Header::decode(&hd.encode()).unwrap(), hd);
    let enc = hd.encode();
    for cut in 0..enc.len() {
        assert!(Header::decode(&enc[..cut]).is_err());
    }
    // A stored conflict rides behind the signature, flagged: headers without one are the
    // bytes they always were.
    let frozen = Header {
        conflict: Some(Conflict { length: 9, fork: 7 }),
        ..hd.clone()
    };
    let fenc = frozen.encode();
    assert_eq!(Header::decode(&fenc).unwrap(), frozen);
    assert_eq!(fenc.len(), enc.len() + 2);
    for cut in 0..fenc.len() {
        assert!(Header::decode(&fenc[..cut]).is_err());
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

/// A core signed by two of three signers (quorum 2): each signs its own tree, the parts are
/// assembled (one patched: its signer signed a longer tree) and appended by a reader that holds
/// no key pair; a multisig of one signer, or of a tree that is not the one appended, is refused
/// and nothing is written.
#[test]
fn append_signed_takes_an_assembled_multisig() {
    use crate::hypercore::manifest::{Manifest, Signer};
    block_on(async {
        let kps: Vec<KeyPair> = (1..=3u8).map(|i| KeyPair::from_seed(&[i; 32])).collect();
        let manifest = Manifest {
            version: 1,
            hash: crate::hypercore::manifest::HASH_BLAKE2B,
            allow_patch: true,
            quorum: 2,
            signers: kps
                .iter()
                .map(|k| Signer {
                    namespace: [9; 32],
                    ..Signer::ed25519(k.public_key)
                })
                .collect(),
            prologue: None,
            linked: None,
            user_data: None,
        };
        let key = manifest.key();
        let open = |m: Manifest| async move {
            Hypercore::create(
                MemoryStorage::new(),
                CreateOptions {
                    key: Some(key),
                    manifest: Some(m),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
        };
        // a scratch copy holding 5 blocks: the signers' trees
        let mut scratch = open(manifest.clone()).await;
        let blocks: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
        let mut tb = scratch.tree.batch();
        let mut hashes = Vec::new();
        for b in &blocks {
            tb.append(b);
            hashes.push((tb.hash(), tb.length));
        }
        let sig = |k: &KeyPair, len: u64| {
            let (h, l) = hashes[len as usize - 1];
            k.sign(&crate::hypercore::verifier::signable(&key, &h, l, 0))
        };
        // the scratch core takes the blocks signed by signers 0 and 1 at 5
        let v = scratch.verifier.clone().unwrap();
        let full = v.assemble(&[
            crate::hypercore::verifier::PartialSignature {
                signer: 0,
                signature: sig(&kps[0], 5),
                patch: 0,
                nodes: vec![],
            },
            crate::hypercore::verifier::PartialSignature {
                signer: 1,
                signature: sig(&kps[1], 5),
                patch: 0,
                nodes: vec![],
            },
        ]);
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        scratch.append_signed(&refs, &full).await.unwrap();
        assert_eq!(scratch.length(), 5);

        // the target: signer 2 signed 3 blocks, signer 0 signed 5 (a patch from 3 to 5)
        let mut core = open(manifest.clone()).await;
        let p2 = scratch
            .partial_signature(2, 3, 3, sig(&kps[2], 3))
            .await
            .unwrap();
        let p0 = scratch
            .partial_signature(0, 3, 5, sig(&kps[0], 5))
            .await
            .unwrap();
        assert_eq!(p0.patch, 2);
        assert!(!p0.nodes.is_empty());
        // one part is not a quorum; a multisig of 5 blocks does not sign 3
        let one = v.assemble(std::slice::from_ref(&p2));
        assert!(core.append_signed(&refs[..3], &one).await.is_err());
        assert!(core.append_signed(&refs[..3], &full).await.is_err());
        assert_eq!(core.length(), 0, "nothing written");
        let sig3 = v.assemble(&[p0, p2]);
        core.append_signed(&refs[..3], &sig3).await.unwrap();
        assert_eq!(core.length(), 3);
        assert_eq!(core.get(2).await.unwrap().unwrap(), blocks[2]);
        // a patch past the tree held is an error, not a panic
        assert!(core.partial_signature(0, 3, 9, [0; 64]).await.is_err());
    });
}
