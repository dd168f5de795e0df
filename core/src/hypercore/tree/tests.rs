//! Tests of the merkle tree against JS vectors and its local invariants.

use super::*;
use crate::storage::{Entries, MemoryStorage};
use futures_executor::block_on;

/// `(index, length, JS MerkleTree.maxMissingNodes(index, length))`, printed by hypercore
/// 11.37.1.
#[test]
fn max_missing_nodes_matches_js() {
    let js = [
        (0, 0, 0),
        (0, 1, 0),
        (0, 5, 2),
        (2, 5, 2),
        (8, 5, 0),
        (10, 5, 0),
        (0, 8, 3),
        (14, 8, 3),
        (6, 7, 2),
        (12, 7, 0),
        (20, 100, 6),
        (198, 100, 2),
        (0, 1000, 9),
        (40, 33, 5),
        (64, 33, 0),
        (1998, 1000, 3),
    ];
    for (index, length, want) in js {
        assert_eq!(
            MerkleTree::max_missing_nodes(index, length),
            want,
            "{index} {length}"
        );
    }
    // Out-of-range arguments (a peer's length is untrusted) give 0, never a panic.
    assert_eq!(MerkleTree::max_missing_nodes(0, u64::MAX), 0);
    assert_eq!(MerkleTree::max_missing_nodes(u64::MAX, 5), 0);
    assert!(MerkleTree::max_missing_nodes(0, (1 << 57) - 1) <= 64);
}

/// The SIMD batch equals one `leaf_hash` per block, for sizes around every buffer and
/// BLAKE2b block boundary, small and large mixed in one call.
#[test]
fn leaf_hashes_equal_leaf_hash() {
    let sizes = [
        0usize, 1, 118, 119, 120, 127, 128, 129, 247, 256, 511, 512, 513, 1000, 4096, 4097, 70_000,
        3, 600,
    ];
    let blocks: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (0..n).map(|j| (j * 31 + i * 7) as u8).collect())
        .collect();
    let want: Vec<Hash> = blocks.iter().map(|b| leaf_hash(b)).collect();
    assert_eq!(leaf_hashes(&blocks), want);
    for n in 0..blocks.len() {
        assert_eq!(leaf_hashes(&blocks[n..]), want[n..], "from {n}");
    }
}

/// Runs of equal-length blocks (eight at a time in AVX-512 lanes where the CPU has them)
/// interleaved with odd lengths and remainders of fewer than eight.
#[test]
fn leaf_hashes_equal_leaf_hash_in_equal_length_runs() {
    let sizes: Vec<usize> = (0..203)
        .map(|i| match i % 5 {
            0..=2 => 4096,
            3 => 64,
            _ => 100 + i,
        })
        .collect();
    let blocks: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (0..n).map(|j| (j * 13 + i * 5) as u8).collect())
        .collect();
    let want: Vec<Hash> = blocks.iter().map(|b| leaf_hash(b)).collect();
    for n in [0, 1, 7, 9, 150, 195, 196] {
        assert_eq!(leaf_hashes(&blocks[n..]), want[n..], "from {n}");
    }
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

async fn build(blocks: &[&[u8]]) -> (MemoryStorage, MerkleTree) {
    let s = MemoryStorage::new();
    let mut t = MerkleTree::default();
    let mut b = t.batch();
    for x in blocks {
        b.append(x);
    }
    let mut w = Batch::new();
    b.write_ops(&s, &mut w).await.unwrap();
    s.write(w).await.unwrap();
    t.commit(&b);
    (s, t)
}

#[test]
fn leaf_hashes_equal_single_hashes() {
    let blocks: Vec<Vec<u8>> = (0..40usize)
        .map(|i| vec![i as u8; (i * 397) % 8192])
        .collect();
    let many = leaf_hashes(&blocks);
    for (b, h) in blocks.iter().zip(&many) {
        assert_eq!(*h, leaf_hash(b));
    }
    assert!(leaf_hashes::<Vec<u8>>(&[]).is_empty());
}

#[test]
fn append_matches_js_vectors() {
    block_on(async {
        let (s, t) = build(&[b"a", b"b", b"c"]).await;
        assert_eq!(t.length, 3);
        assert_eq!(t.byte_length, 3);
        assert_eq!(
            t.roots.iter().map(|r| r.index).collect::<Vec<_>>(),
            vec![1, 4]
        );
        assert_eq!(
            t.hash().to_vec(),
            h("7ea73eb86179fb7328e73663f90f4c91256574af1112efe97fdf9309e03b67a7")
        );
        let n1 = require_node(&s, 1).await.unwrap();
        assert_eq!(n1.size, 2);
        assert_eq!(
            n1.hash.to_vec(),
            h("9cac92aaed9e7d11eb629465684582ce39cb496303998de123533b09e16f2f06")
        );
        let n2 = require_node(&s, 2).await.unwrap();
        assert_eq!(
            n2.hash.to_vec(),
            h("520abb1082986713dabf6862ccfe1bb6b87037647d0019b31219493ef186597c")
        );
        assert_eq!(get_node(&s, 3).await.unwrap(), None);
        // Reload from storage gives the same tree.
        let t2 = MerkleTree::load(&s, 3, 0, vec![]).await.unwrap();
        assert_eq!(t2, t);
    });
}

#[test]
fn append_one_by_one_equals_batch() {
    block_on(async {
        let data: Vec<Vec<u8>> = (0..37u8).map(|i| vec![i; i as usize + 1]).collect();
        let refs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
        let (_, all) = build(&refs).await;
        let s = MemoryStorage::new();
        let mut t = MerkleTree::default();
        for d in &refs {
            let mut b = t.batch();
            b.append(d);
            let mut w = Batch::new();
            b.write_ops(&s, &mut w).await.unwrap();
            s.write(w).await.unwrap();
            t.commit(&b);
        }
        assert_eq!(t, all);
        assert_eq!(
            t.roots.iter().map(|r| r.index).collect::<Vec<_>>(),
            flat_tree::roots_of_length(37)
        );
    });
}

#[test]
fn truncate_matches_js_vector_and_cleans_nodes() {
    block_on(async {
        let (s, t) = build(&[b"a", b"b", b"c"]).await;
        let b = t.truncate_batch(&s, 2, 1).await.unwrap();
        assert!(b.truncates());
        let mut w = Batch::new();
        b.write_ops(&s, &mut w).await.unwrap();
        s.write(w).await.unwrap();
        let mut t = t;
        t.commit(&b);
        assert_eq!(
            t.hash().to_vec(),
            h("3424a063fb40dfef317c8ca38fb8c37dfdbccac669582f6f9cddd22bbdf9c044")
        );
        assert_eq!(get_node(&s, 4).await.unwrap(), None);
        let mut b = t.batch();
        b.append(b"z");
        let mut w = Batch::new();
        b.write_ops(&s, &mut w).await.unwrap();
        s.write(w).await.unwrap();
        t.commit(&b);
        assert_eq!(
            t.hash().to_vec(),
            h("f6516686da8a8bbd6176e5c196121719310c904ae4c6e4c42964f4151a715b8e")
        );
        assert_eq!(t.fork, 1);
    });
}

#[test]
fn truncate_deletes_parents_spanning_cut() {
    block_on(async {
        let blocks: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i]).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(|d| d.as_slice()).collect();
        let (s, t) = build(&refs).await;
        let b = t.truncate_batch(&s, 3, 1).await.unwrap();
        let mut w = Batch::new();
        b.write_ops(&s, &mut w).await.unwrap();
        s.write(w).await.unwrap();
        // Node 3 (blocks 0..4) and 7 (0..8) span the cut and must be gone; 1 and 4 stay.
        for gone in [3u64, 5, 6, 7, 8, 11] {
            assert_eq!(get_node(&s, gone).await.unwrap(), None, "node {gone}");
        }
        for kept in [0u64, 1, 2, 4] {
            assert!(get_node(&s, kept).await.unwrap().is_some(), "node {kept}");
        }
        assert_eq!(
            b.roots.iter().map(|r| r.index).collect::<Vec<_>>(),
            vec![1, 4]
        );
    });
}

#[test]
fn seek_and_byte_offset() {
    block_on(async {
        // Block sizes 1,2,3,4,5 → offsets 0,1,3,6,10, total 15.
        let blocks: Vec<Vec<u8>> = (1..=5u8).map(|i| vec![i; i as usize]).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(|d| d.as_slice()).collect();
        let (s, t) = build(&refs).await;
        let offs = [0u64, 1, 3, 6, 10];
        for (i, o) in offs.iter().enumerate() {
            assert_eq!(t.byte_offset(&s, 2 * i as u64).await.unwrap(), *o);
        }
        assert_eq!(t.byte_offset(&s, 10).await.unwrap(), 15);
        for bytes in 0..15u64 {
            let idx = offs.iter().rposition(|&o| o <= bytes).unwrap() as u64;
            let want = SeekResult::Found {
                index: idx,
                offset: bytes - offs[idx as usize],
            };
            assert_eq!(t.seek(&s, bytes, 0).await.unwrap(), want, "bytes {bytes}");
        }
        assert_eq!(
            t.seek(&s, 15, 0).await.unwrap(),
            SeekResult::Found {
                index: 5,
                offset: 0
            }
        );
        assert_eq!(t.seek(&s, 16, 0).await.unwrap(), SeekResult::OutOfBounds);
        // padding 1: sizes 0,1,2,3,4 → byte 4 is block 3 offset 1
        assert_eq!(
            t.seek(&s, 4, 1).await.unwrap(),
            SeekResult::Found {
                index: 3,
                offset: 1
            }
        );
    });
}

#[test]
fn missing_nodes_counts_absent_ancestors() {
    block_on(async {
        let blocks: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i]).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(|d| d.as_slice()).collect();
        let (s, _) = build(&refs).await;
        // A writer has everything: nothing missing.
        assert_eq!(MerkleTree::missing_nodes(&s, 0, 8).await.unwrap(), 0);
        let empty = MemoryStorage::new();
        // Reader with nothing: leaf 0 at length 8 lacks 0, 1, 3 and the root 7.
        assert_eq!(MerkleTree::missing_nodes(&empty, 0, 8).await.unwrap(), 4);
        // Once the root is stored, only the levels below it are missing.
        let mut page = NodePage::empty(page_of(7));
        page.put(&require_node(&s, 7).await.unwrap());
        let mut w = Batch::new();
        w.put(layout::tree_node_key(page_of(7)), page.as_bytes().to_vec());
        empty.write(w).await.unwrap();
        assert_eq!(MerkleTree::missing_nodes(&empty, 0, 8).await.unwrap(), 3);
        assert_eq!(MerkleTree::missing_nodes(&empty, 4, 8).await.unwrap(), 3);
        assert_eq!(MerkleTree::missing_nodes(&empty, 8, 5).await.unwrap(), 1);
        assert_eq!(MerkleTree::missing_nodes(&empty, 20, 5).await.unwrap(), 0);
    });
}

/// `append_leaves` gives the same nodes in the same order, the same roots, length and byte
/// length as `append_leaf` one at a time, from trees of every starting length up to 70 and
/// for counts around the lane widths and tree levels. Both paths of `append_leaves` run: the
/// level-by-level one directly (on a CPU without AVX-512 `append_leaves` would never take it,
/// and it then hashes each parent alone), and `append_leaves` itself.
#[test]
fn append_leaves_equals_append_leaf_one_at_a_time() {
    let leaf = |i: u64| (leaf_hash(&i.to_le_bytes()), 10 + i % 7);
    for start in 0..70u64 {
        for count in [0usize, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 64, 100, 257] {
            let mut base = TreeBatch::empty(0);
            for i in 0..start {
                let (h, s) = leaf(i);
                base.append_leaf(h, s);
            }
            // A batch that already holds nodes keeps them first (odd starts).
            if start % 2 == 0 {
                base.nodes.clear();
            }
            let mut one = base.clone();
            let mut many = base.clone();
            let mut by_level = base;
            let new: Vec<(Hash, u64)> = (start..start + count as u64).map(leaf).collect();
            for &(h, s) in &new {
                one.append_leaf(h, s);
            }
            many.append_leaves(new.clone().into_iter());
            by_level.append_leaves_by_level(&crate::parallel::Sequential, new.into_iter());
            for (other, path) in [(&many, "append_leaves"), (&by_level, "by level")] {
                let what = format!("{path} from {start}, {count} leaves");
                assert_eq!(other.nodes, one.nodes, "{what}");
                assert_eq!(other.roots, one.roots, "{what}");
                assert_eq!(
                    (other.length, other.byte_length, other.upgraded),
                    (one.length, one.byte_length, one.upgraded),
                    "{what}"
                );
                assert_eq!(other.hash(), one.hash(), "{what}");
            }
        }
    }
}

/// A big append split in halves (leaf hashes, each wide level of parents, the tree's pages)
/// gives what the unsplit work gives (`leaf_hashes`, `append_leaf` one at a time, each node put
/// in its page here), with the halves run in reverse order (the borrow checker keeps the two
/// halves apart; a wrong boundary, or a half left out, would show).
#[test]
fn split_halves_give_what_the_whole_gives() {
    use crate::parallel::{Reversed, SPLIT_AT};
    let n = SPLIT_AT as u64;
    // Leaf hashes: many small blocks of a few lengths; a few big ones (split by bytes); mixed.
    let small: Vec<Vec<u8>> = (0..2 * n + 13)
        .map(|i| vec![i as u8; 1 + (i % 300) as usize])
        .collect();
    let big: Vec<Vec<u8>> = (0..5u8)
        .map(|i| vec![i; (1 << 20) + 7 * i as usize])
        .collect();
    let mut mixed = small[..100].to_vec();
    mixed.extend(big.iter().cloned());
    mixed.extend(small[100..].iter().cloned());
    for blocks in [&small, &big, &mixed] {
        assert_eq!(leaf_hashes_joined(&Reversed, blocks), leaf_hashes(blocks));
    }
    // Parents: from an empty tree and from ones with odd roots, past a split width.
    let leaf = |i: u64| (leaf_hash(&i.to_le_bytes()), 10 + i % 7);
    for (start, count) in [
        (0, 2 * n),
        (1, 2 * n + 9),
        (1000, 4 * n),
        (12345, 3 * n + 5),
    ] {
        let mut base = TreeBatch::empty(0);
        for i in 0..start {
            let (h, s) = leaf(i);
            base.append_leaf(h, s);
        }
        base.nodes.clear();
        let new: Vec<(Hash, u64)> = (start..start + count).map(leaf).collect();
        let mut one = base.clone();
        let mut split = base;
        for &(h, s) in &new {
            one.append_leaf(h, s);
        }
        split.append_leaves_by_level(&Reversed, new.into_iter());
        assert_eq!(split.nodes, one.nodes, "from {start}, {count} leaves");
        assert_eq!(split.roots, one.roots, "from {start}, {count} leaves");
        // Pages: each node in its page, the pages in order.
        let mut pages: std::collections::BTreeMap<u64, NodePage> = Default::default();
        for node in &one.nodes {
            let p = page_of(node.index);
            pages
                .entry(p)
                .or_insert_with(|| NodePage::empty(p))
                .put(node);
        }
        let mut want = Batch::new();
        for (p, page) in pages {
            want.put(layout::tree_node_key(p), page.into_bytes());
        }
        let mut got = Batch::new();
        block_on(split.write_ops_cached(&MemoryStorage::new(), None, &Reversed, &mut got)).unwrap();
        assert_eq!(got, want, "pages from {start}, {count} leaves");
    }
}

/// Append `count` leaves (`leaf(i)` for the next indexes) to `t` over `s` in batches of `per`.
async fn append_in_batches(
    s: &MemoryStorage,
    t: &mut MerkleTree,
    count: u64,
    per: u64,
    cache: Option<&NodeCache>,
) {
    let leaf = |i: u64| (leaf_hash(&i.to_le_bytes()), 1 + i % 5);
    let end = t.length + count;
    while t.length < end {
        let mut b = t.batch();
        let n = per.min(end - t.length);
        let leaves: Vec<(Hash, u64)> = (t.length..t.length + n).map(leaf).collect();
        b.append_leaves(leaves.into_iter());
        commit_through(s, t, &b, cache).await;
    }
}

/// Write `b`'s changes to `s` and adopt them, as a core writes through its node cache: the
/// cache invalidated first, the written pages it keeps given back after.
async fn commit_through(
    s: &MemoryStorage,
    t: &mut MerkleTree,
    b: &TreeBatch,
    cache: Option<&NodeCache>,
) {
    let mut w = Batch::new();
    b.write_ops_cached(s, cache, &crate::parallel::Sequential, &mut w)
        .await
        .unwrap();
    let kept = cache.map(|c| {
        c.invalidate(&w);
        NodeCache::pages_of(&w)
    });
    s.write(w).await.unwrap();
    if let (Some(c), Some(kept)) = (cache, kept) {
        c.written(kept);
    }
    t.commit(b);
}

/// `a` and `b` store the same pages (the first difference named, not printed whole).
async fn same_pages(a: &MemoryStorage, b: &MemoryStorage) {
    let (a, b) = (stored_pages(a).await, stored_pages(b).await);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0, "a page is missing on one side");
        if x.1 != y.1 {
            let slots: Vec<usize> = (0..32)
                .filter(|k| x.1[4 + k * 40..4 + k * 40 + 40] != y.1[4 + k * 40..4 + k * 40 + 40])
                .collect();
            panic!(
                "page {:?} differs: bitmaps {:?} {:?}, slots {slots:?}",
                layout::index_of(&x.0),
                &x.1[..4],
                &y.1[..4]
            );
        }
    }
    assert_eq!(a.len(), b.len());
}

/// The stored pages, key and bytes.
async fn stored_pages(s: &MemoryStorage) -> Entries {
    s.scan(
        &layout::tree_node_key(0),
        &layout::tag_end(layout::TREE_NODE),
        None,
    )
    .await
    .unwrap()
}

/// A batch that touches hundreds of pages (`write_ops` collapses them, builds each once and
/// gives its bytes away) stores the same pages as the same leaves appended in small batches,
/// over a tree whose last page already holds nodes, after a truncation that left part of a
/// page, and through the node cache (which no longer caches the absent pages it was asked for).
#[test]
fn a_big_append_stores_the_same_pages_as_small_ones() {
    block_on(async {
        for cached in [false, true] {
            let cache = NodeCache::default();
            let cache = cached.then_some(&cache);
            let (dense, sparse) = (MemoryStorage::new(), MemoryStorage::new());
            let (mut td, mut ts) = (MerkleTree::default(), MerkleTree::default());
            append_in_batches(&dense, &mut td, 1001, 7, cache).await;
            append_in_batches(&sparse, &mut ts, 1001, 7, None).await;
            same_pages(&dense, &sparse).await;
            // ~190 pages in one batch, whose first page holds nodes already.
            append_in_batches(&dense, &mut td, 3000, 3000, cache).await;
            append_in_batches(&sparse, &mut ts, 3000, 3, None).await;
            assert_eq!(td, ts);
            same_pages(&dense, &sparse).await;
            // Cut inside a page, then a big append over what the cut left of it.
            for (s, t, cache) in [(&dense, &mut td, cache), (&sparse, &mut ts, None)] {
                let b = t.truncate_batch(s, 2501, t.fork + 1).await.unwrap();
                commit_through(s, t, &b, cache).await;
            }
            append_in_batches(&dense, &mut td, 4000, 4000, cache).await;
            append_in_batches(&sparse, &mut ts, 4000, 5, None).await;
            assert_eq!(td, ts);
            same_pages(&dense, &sparse).await;
            let t2 = MerkleTree::load(&dense, td.length, td.fork, vec![])
                .await
                .unwrap();
            assert_eq!(t2.hash(), td.hash());
        }
    });
}
