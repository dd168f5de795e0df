//! hyperbee, live against the pinned JS hyperbee 2.27.3:
//! - the same operations (a thousand keys: single puts, batches, overwrites, deletes, compare-
//!   and-swaps, subs, odd keys) give the same blocks, byte for byte, and the same tree hash, and
//!   every query (each range option, gets, histories, diffs, checkouts) the same answers
//!   (`tests/interop/bee-ops.js`);
//! - a bee written by JS is read by hyperpunch over TCP replication, sparsely, and one written by
//!   hyperpunch is read by JS (`tests/interop/bee-peer.js`), every query agreeing.

use std::time::Duration;

use futures_executor::block_on;
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hyperbee::{Hyperbee, Utf8};
use hyperpunch_core::hypercore::{CreateOptions, Hypercore};
use hyperpunch_core::storage::MemoryStorage;
use hyperpunch_tests::bee_ops::{apply, queries, query_set, workload, Db};
use hyperpunch_tests::node::run_script;
use serde_json::{json, Value};

const SEED: [u8; 32] = [0x42; 32];

#[test]
fn thousand_keys_give_identical_blocks_and_answers() {
    let ops = workload(7, 1000);
    let writes: usize = ops
        .iter()
        .map(|o| o["ops"].as_array().map_or(1, Vec::len))
        .sum();
    assert!(writes > 1300, "{writes} writes");
    let (blocks, tree_hash, key, versions, db) = block_on(async {
        let core = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&SEED)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let session = core.into_session();
        let db: Db<_> = Hyperbee::new(session.clone()).with_codecs(Utf8, Utf8);
        let versions = apply(&db, &ops).await.unwrap();
        let length = session.length().await;
        assert_eq!(versions.last(), Some(&length));
        let mut blocks = Vec::new();
        for i in 0..length {
            blocks.push(hex::encode(session.get(i).await.unwrap().unwrap()));
        }
        let g = session.lock().await;
        let (th, key) = (hex::encode(g.tree_hash()), hex::encode(g.key()));
        drop(g);
        (blocks, th, key, versions, db)
    });
    let length = *versions.last().unwrap();
    let q = query_set(1000, &versions);
    let js = run_script(
        "bee-ops.js",
        &json!({"seed": hex::encode(SEED), "ops": ops, "queries": q}),
        Duration::from_secs(120),
    )
    .expect("node bee-ops.js");
    assert_eq!(js["length"], json!(length), "core length");
    let js_blocks: Vec<&str> = js["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    for (i, (r, j)) in blocks.iter().zip(&js_blocks).enumerate() {
        assert_eq!(r, j, "block {i} differs");
    }
    assert_eq!(blocks.len(), js_blocks.len());
    assert_eq!(js["treeHash"], json!(tree_hash), "tree hash");
    assert_eq!(js["key"], json!(key));
    let ours = block_on(queries(&db, &q)).unwrap();
    for part in ["ranges", "gets", "histories", "diffs", "versions"] {
        let (a, b) = (
            ours[part].as_array().unwrap(),
            js["results"][part].as_array().unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{part}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x, y, "{part}[{i}] ({})", q[part][i]);
        }
    }
    let rows: usize = ours["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().len())
        .sum();
    assert!(rows > 10_000, "the ranges returned {rows} rows");
    let _: Value = ours;
}
