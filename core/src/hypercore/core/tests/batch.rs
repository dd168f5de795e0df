//! Batched proofs ([`Hypercore::apply_proofs`]): equal to one by one in one write, a bad proof
//! rejected alone, checks against known nodes, atomic on write failure.

use super::*;

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
    s.inner().scan(&[], &[0xff; 8], None).await.unwrap()
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
        let before = all.storage().writes();
        let refs: Vec<&Data> = proofs.iter().collect();
        let results = all.apply_proofs(&refs).await.unwrap();
        assert_eq!(all.storage().writes(), before + 1);
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
        r.storage().fail_writes(true);
        assert!(matches!(
            r.apply_proofs(&refs).await,
            Err(HypercoreError::Storage(_))
        ));
        assert_eq!(dump(r.storage()).await, stored);
        assert_eq!(r.contiguous_length(), 0);
        assert!((0..40).all(|i| !r.has(i)));
        r.storage().fail_writes(false);
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
