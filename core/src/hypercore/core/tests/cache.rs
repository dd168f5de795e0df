//! Tree node pages and the node cache: truncates at and inside page boundaries, cached proofs
//! equal uncached ones, and the cache stays in line with storage through failed writes.

use super::*;

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
            let s = s.inner().clone();
            async move {
                for (page, bytes) in cached {
                    let stored = s.get(&super::layout::tree_node_key(page)).await.unwrap();
                    assert_eq!(stored, Some(bytes), "cached page {page}");
                }
            }
        };
        for i in 0..300u32 {
            if i % 37 == 5 {
                s.fail_writes(true);
                assert!(w.append(&[b"lost".as_slice()]).await.is_err());
                s.fail_writes(false);
                coherent(&w).await;
            }
            w.append(&[i.to_le_bytes().as_slice()]).await.unwrap();
        }
        coherent(&w).await;
        assert!(!w.node_cache.snapshot().is_empty());
        assert_eq!(w.length(), 300);
        let fresh = Hypercore::open(s.inner().clone(), OpenOptions::default())
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
