//! Tests of proof generation and verification against JS vectors, round trips and malformed
//! input.

use super::*;
use crate::hypercore::messages::{Data, DataBlock, DataHash, DataSeek, DataUpgrade, TreeNode};
use crate::hypercore::tree::{MerkleTree, TreeBatch};
use crate::storage::{Batch, MemoryStorage, Storage};
use futures_executor::block_on;

async fn build(n: u8) -> (MemoryStorage, MerkleTree) {
    let s = MemoryStorage::new();
    let mut t = MerkleTree::default();
    let mut b = t.batch();
    for i in 0..n {
        b.append(&[b'a' + i]);
    }
    let mut w = Batch::new();
    b.write_ops(&s, &mut w).await.unwrap();
    s.write(w).await.unwrap();
    t.commit(&b);
    t.signature = vec![7; 3];
    (s, t)
}

fn idx(nodes: &[TreeNode]) -> Vec<u64> {
    nodes.iter().map(|n| n.index).collect()
}

#[test]
fn generation_shapes_match_js_vectors() {
    block_on(async {
        let (s, t) = build(5).await;
        let up = |start, length| Some(RequestUpgrade { start, length });
        let blk = |index, nodes| Some(RequestBlock { index, nodes });
        let g = |r: ProofRequest| {
            let (s, t) = (&s, &t);
            async move { generate(s, t, None, &r).await.unwrap() }
        };
        let p = g(ProofRequest {
            block: blk(0, 0),
            upgrade: up(0, 5),
            ..Default::default()
        })
        .await;
        assert_eq!(idx(&p.block.as_ref().unwrap().nodes), vec![2, 5]);
        assert_eq!(idx(&p.upgrade.as_ref().unwrap().nodes), vec![8]);
        let p = g(ProofRequest {
            block: blk(4, 0),
            upgrade: up(0, 5),
            ..Default::default()
        })
        .await;
        assert_eq!(idx(&p.block.as_ref().unwrap().nodes), Vec::<u64>::new());
        assert_eq!(idx(&p.upgrade.as_ref().unwrap().nodes), vec![3]);
        let p = g(ProofRequest {
            upgrade: up(3, 2),
            ..Default::default()
        })
        .await;
        assert_eq!(idx(&p.upgrade.as_ref().unwrap().nodes), vec![6, 8]);
        let p = g(ProofRequest {
            upgrade: up(0, 3),
            ..Default::default()
        })
        .await;
        let u = p.upgrade.unwrap();
        assert_eq!(idx(&u.nodes), vec![1, 4]);
        assert_eq!(idx(&u.additional_nodes), vec![6, 8]);
        assert_eq!(u.signature, vec![7; 3]);
        let p = g(ProofRequest {
            block: blk(3, 2),
            ..Default::default()
        })
        .await;
        assert_eq!(idx(&p.block.unwrap().nodes), vec![4, 1]);
        let p = g(ProofRequest {
            hash: blk(2, 1),
            ..Default::default()
        })
        .await;
        assert_eq!(idx(&p.hash.unwrap().nodes), vec![2, 0]);
        let p = g(ProofRequest {
            seek: Some(RequestSeek {
                bytes: 3,
                padding: 0,
            }),
            upgrade: up(0, 5),
            ..Default::default()
        })
        .await;
        assert_eq!(idx(&p.seek.unwrap().nodes), vec![4, 6, 1]);
        assert_eq!(idx(&p.upgrade.unwrap().nodes), vec![8]);
        let p = g(ProofRequest {
            seek: Some(RequestSeek {
                bytes: 3,
                padding: 0,
            }),
            ..Default::default()
        })
        .await;
        assert_eq!(
            p,
            Data {
                fork: 0,
                ..Default::default()
            }
        );
    });
}

#[test]
fn generation_rejects_bad_requests() {
    block_on(async {
        let (s, t) = build(5).await;
        for r in [
            ProofRequest {
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: 6,
                }),
                ..Default::default()
            },
            ProofRequest {
                upgrade: Some(RequestUpgrade {
                    start: 5,
                    length: 0,
                }),
                ..Default::default()
            },
            ProofRequest {
                block: Some(RequestBlock { index: 5, nodes: 0 }),
                ..Default::default()
            },
            ProofRequest {
                block: Some(RequestBlock { index: 0, nodes: 9 }),
                ..Default::default()
            },
            ProofRequest {
                block: Some(RequestBlock {
                    index: u64::MAX,
                    nodes: 0,
                }),
                ..Default::default()
            },
            ProofRequest {
                block: Some(RequestBlock { index: 4, nodes: 0 }),
                seek: Some(RequestSeek {
                    bytes: 1,
                    padding: 0,
                }),
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: 5,
                }),
                ..Default::default()
            },
            ProofRequest {
                hash: Some(RequestBlock {
                    index: u64::MAX,
                    nodes: 0,
                }),
                ..Default::default()
            },
            ProofRequest {
                hash: Some(RequestBlock {
                    index: 11,
                    nodes: u64::MAX,
                }),
                ..Default::default()
            },
            ProofRequest {
                block: Some(RequestBlock {
                    index: 1,
                    nodes: u64::MAX,
                }),
                ..Default::default()
            },
            ProofRequest {
                seek: Some(RequestSeek {
                    bytes: u64::MAX,
                    padding: u64::MAX,
                }),
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: 5,
                }),
                ..Default::default()
            },
            ProofRequest {
                block: Some(RequestBlock { index: 0, nodes: 1 }),
                seek: Some(RequestSeek {
                    bytes: u64::MAX,
                    padding: 1,
                }),
                ..Default::default()
            },
            ProofRequest {
                upgrade: Some(RequestUpgrade {
                    start: u64::MAX,
                    length: u64::MAX,
                }),
                ..Default::default()
            },
            ProofRequest {
                upgrade: Some(RequestUpgrade {
                    start: 2,
                    length: u64::MAX - 1,
                }),
                ..Default::default()
            },
        ] {
            assert!(generate(&s, &t, None, &r).await.is_err(), "{r:?}");
        }
    });
}

#[test]
fn upgrade_roundtrip_for_every_start_and_length() {
    block_on(async {
        let (s, t) = build(23).await;
        for start in 0..23u64 {
            for end in start + 1..=23 {
                let r = ProofRequest {
                    upgrade: Some(RequestUpgrade {
                        start,
                        length: end - start,
                    }),
                    ..Default::default()
                };
                let p = generate(&s, &t, None, &r).await.unwrap();
                let reader = MerkleTree::load(&s, start, 0, vec![]).await.unwrap();
                let mut b = reader.batch();
                let mut nodes = Vec::new();
                let root = verify_tree(&p, &mut nodes).unwrap();
                verify_upgrade(0, p.upgrade.as_ref().unwrap(), root, &mut b, None).unwrap();
                assert_eq!(b.length, 23, "{start}..{end}");
                assert_eq!(b.hash(), t.hash());
            }
        }
    });
}

#[test]
fn block_proofs_roundtrip_with_and_without_upgrade() {
    block_on(async {
        let (s, t) = build(13).await;
        for index in 0..13u64 {
            let r = ProofRequest {
                block: Some(RequestBlock { index, nodes: 0 }),
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: 13,
                }),
                ..Default::default()
            };
            let mut p = generate(&s, &t, None, &r).await.unwrap();
            p.block.as_mut().unwrap().value = vec![b'a' + index as u8];
            let mut b = TreeBatch::empty(0);
            let mut nodes = Vec::new();
            let root = verify_tree(&p, &mut nodes).unwrap();
            let consumed =
                verify_upgrade(0, p.upgrade.as_ref().unwrap(), root, &mut b, None).unwrap();
            assert!(consumed, "block {index}");
            assert_eq!(b.hash(), t.hash());
            // Tampered value → different root → the upgrade does not match the tree.
            let mut bad = p.clone();
            bad.block.as_mut().unwrap().value = b"zz".to_vec();
            let mut b = TreeBatch::empty(0);
            let root = verify_tree(&bad, &mut Vec::new()).unwrap();
            let ok = verify_upgrade(0, bad.upgrade.as_ref().unwrap(), root, &mut b, None);
            assert!(ok.is_err() || b.hash() != t.hash());
        }
    });
}

#[test]
fn malformed_proofs_are_typed_errors() {
    let node = |index| TreeNode {
        index,
        size: 1,
        hash: [0; 32],
    };
    let p = Data {
        block: Some(DataBlock {
            index: 0,
            value: b"a".to_vec(),
            nodes: vec![node(4)],
        }),
        ..Default::default()
    };
    assert_eq!(
        verify_tree(&p, &mut Vec::new()),
        Err(ProofError::UnexpectedNode {
            expected: 2,
            got: 4
        })
    );
    let up = DataUpgrade {
        start: 0,
        length: 2,
        nodes: vec![],
        additional_nodes: vec![],
        signature: vec![],
    };
    let mut b = TreeBatch::empty(0);
    assert_eq!(
        verify_upgrade(0, &up, None, &mut b, None),
        Err(ProofError::MissingNode { expected: 1 })
    );
    let up = DataUpgrade {
        start: 0,
        length: 1,
        nodes: vec![node(0)],
        additional_nodes: vec![node(7)],
        signature: vec![],
    };
    let mut b = TreeBatch::empty(0);
    assert_eq!(
        verify_upgrade(0, &up, None, &mut b, None),
        Err(ProofError::UnexpectedAdditionalNode(7))
    );
    let up = DataUpgrade {
        start: u64::MAX,
        length: 2,
        ..Default::default()
    };
    assert!(verify_upgrade(0, &up, None, &mut TreeBatch::empty(0), None).is_err());
    // Huge untrusted indexes are typed errors, never overflows.
    for index in [MAX_INDEX, u64::MAX, u64::MAX - 1] {
        let p = Data {
            hash: Some(DataHash {
                index,
                nodes: vec![node(index)],
            }),
            ..Default::default()
        };
        assert_eq!(
            verify_tree(&p, &mut Vec::new()),
            Err(ProofError::NodeOutOfRange(index))
        );
        let p = Data {
            seek: Some(DataSeek {
                bytes: 0,
                nodes: vec![node(index), node(0)],
            }),
            ..Default::default()
        };
        assert!(verify_tree(&p, &mut Vec::new()).is_err());
    }
    let p = Data {
        block: Some(DataBlock {
            index: u64::MAX / 2,
            value: vec![],
            nodes: vec![],
        }),
        ..Default::default()
    };
    assert!(verify_tree(&p, &mut Vec::new()).is_err());
    // Untrusted sizes whose sums overflow are typed errors (they cannot verify anyway).
    let huge = |index| TreeNode {
        size: u64::MAX,
        ..node(index)
    };
    let p = Data {
        block: Some(DataBlock {
            index: 0,
            value: b"a".to_vec(),
            nodes: vec![huge(2)],
        }),
        ..Default::default()
    };
    assert_eq!(
        verify_tree(&p, &mut Vec::new()),
        Err(ProofError::SizeOverflow(1))
    );
    let p = Data {
        seek: Some(DataSeek {
            bytes: 0,
            nodes: vec![node(0), huge(2)],
        }),
        ..Default::default()
    };
    assert_eq!(
        verify_tree(&p, &mut Vec::new()),
        Err(ProofError::SizeOverflow(1))
    );
    let up = DataUpgrade {
        start: 0,
        length: 3,
        nodes: vec![node(1), huge(4)],
        ..Default::default()
    };
    assert_eq!(
        verify_upgrade(0, &up, None, &mut TreeBatch::empty(0), None),
        Err(ProofError::SizeOverflow(4))
    );
    let up = DataUpgrade {
        start: 0,
        length: 2,
        nodes: vec![node(1)],
        additional_nodes: vec![huge(5)],
        ..Default::default()
    };
    assert_eq!(
        verify_upgrade(0, &up, None, &mut TreeBatch::empty(0), None),
        Err(ProofError::SizeOverflow(5))
    );
    // A long chain of correctly placed siblings runs out of range instead of overflowing.
    let mut ite = Iterator::new(0);
    let mut chain = Vec::new();
    for _ in 0..80 {
        chain.push(node(ite.sibling()));
        ite.sibling();
        if ite.factor >= 1 << 62 {
            break;
        }
        ite.parent();
    }
    let p = Data {
        block: Some(DataBlock {
            index: 0,
            value: vec![1],
            nodes: chain,
        }),
        ..Default::default()
    };
    assert!(matches!(
        verify_tree(&p, &mut Vec::new()),
        Err(ProofError::NodeOutOfRange(_))
    ));
}

/// A core with a prologue (an autobase core moved at an indexer change): a request for a block
/// past the prologue with an upgrade from 0 (a new JS reader's first request for the last block
/// of a moved view core, in its fast-forward) gets the block and the whole upgrade from 0, which
/// the requester verifies with the prologue rule (JS `verifyUpgrade`). JS's `generateProof`
/// stops the upgrade at the prologue and cannot prove the block: before this, the request was
/// refused ("invalid block request") and the JS reader waited out its fast-forward timeout.
/// An upgrade-only request, or a block inside the prologue, still stops at the prologue, as JS.
#[test]
fn a_block_past_the_prologue_comes_with_the_upgrade_from_zero() {
    use crate::hypercore::manifest::Prologue;
    block_on(async {
        let (s, t) = build(14).await;
        let (_, t3) = build(3).await;
        let pro = Prologue {
            hash: t3.hash(),
            length: 3,
        };
        let up = Some(RequestUpgrade {
            start: 0,
            length: 14,
        });
        for index in 3..14u64 {
            let r = ProofRequest {
                block: Some(RequestBlock { index, nodes: 0 }),
                upgrade: up,
                ..Default::default()
            };
            let mut p = generate(&s, &t, Some(&pro), &r).await.unwrap();
            let u = p.upgrade.as_ref().unwrap();
            assert_eq!((u.start, u.length), (0, 14), "block {index}");
            p.block.as_mut().unwrap().value = vec![b'a' + index as u8];
            let mut b = TreeBatch::empty(0);
            let root = verify_tree(&p, &mut Vec::new()).unwrap();
            let consumed =
                verify_upgrade(0, p.upgrade.as_ref().unwrap(), root, &mut b, Some(&pro)).unwrap();
            assert!(consumed, "block {index}");
            assert_eq!(b.length, 14);
            assert_eq!(b.hash(), t.hash());
        }
        // the hash of a node past the prologue too
        let r = ProofRequest {
            hash: Some(RequestBlock {
                index: 2 * 13,
                nodes: 0,
            }),
            upgrade: up,
            ..Default::default()
        };
        let p = generate(&s, &t, Some(&pro), &r).await.unwrap();
        assert_eq!(
            p.upgrade.as_ref().map(|u| (u.start, u.length)),
            Some((0, 14))
        );
        // as JS: an upgrade alone, or with a block inside the prologue, stops at the prologue
        for block in [None, Some(RequestBlock { index: 1, nodes: 0 })] {
            let r = ProofRequest {
                block,
                upgrade: up,
                ..Default::default()
            };
            let mut p = generate(&s, &t, Some(&pro), &r).await.unwrap();
            if let Some(b) = p.block.as_mut() {
                b.value = b"b".to_vec();
            }
            let u = p.upgrade.as_ref().unwrap();
            assert_eq!((u.start, u.length), (0, 3), "{block:?}");
            let mut b = TreeBatch::empty(0);
            let root = verify_tree(&p, &mut Vec::new()).unwrap();
            verify_upgrade(0, u, root, &mut b, Some(&pro)).unwrap();
            // the requester checks the prologue's tree hash there
            let other = Prologue {
                hash: [1; 32],
                ..pro
            };
            let mut b = TreeBatch::empty(0);
            let root = verify_tree(&p, &mut Vec::new()).unwrap();
            assert!(verify_upgrade(0, u, root, &mut b, Some(&other)).is_err());
        }
        // hostile indexes with that upgrade are typed refusals, not overflows (a debug build
        // panicked in `flat_tree::right_span` on them)
        for index in [u64::MAX, u64::MAX - 2, (1 << 63) - 1, 1 << 62] {
            for (block, hash) in [
                (Some(RequestBlock { index, nodes: 0 }), None),
                (None, Some(RequestBlock { index, nodes: 0 })),
            ] {
                let r = ProofRequest {
                    block,
                    hash,
                    upgrade: up,
                    ..Default::default()
                };
                assert!(
                    generate(&s, &t, Some(&pro), &r).await.is_err(),
                    "{block:?} {hash:?}"
                );
            }
        }
    });
}
