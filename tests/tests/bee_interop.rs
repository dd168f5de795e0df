//! hyperbee, live against the pinned JS hyperbee 2.27.3:
//! - the same operations (a thousand keys: single puts, batches, overwrites, deletes, compare-
//!   and-swaps, subs, odd keys) give the same blocks, byte for byte, and the same tree hash, and
//!   every query (each range option, gets, histories, diffs, checkouts) the same answers
//!   (`tests/interop/bee-ops.js`);
//! - small batches heavy with deletes and compare-and-swaps over a few keys give the same blocks
//!   (a batch's node may point at a child a later block of it places, and is encoded with that
//!   child's offset from before that block's narrowing, as JS does);
//! - a bee written by JS is read by hyperpunch over TCP replication, sparsely, and one written by
//!   hyperpunch is read by JS (`tests/interop/bee-peer.js`), every query agreeing.

use std::time::Duration;

use futures_executor::block_on;
use hyperpunch::bee::HubCore;
use hyperpunch::replicate::{replicate, SharedHub};
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hyperbee::{Hyperbee, Utf8};
use hyperpunch_core::hypercore::{CreateOptions, Hypercore, Session};
use hyperpunch_core::replication::{Options, ReplicationHub, Replicator};
use hyperpunch_core::storage::MemoryStorage;
use hyperpunch_tests::bee_ops::{apply, queries, query_set, workload, Db, Rng};
use hyperpunch_tests::node::run_script;
use hyperpunch_tests::node_peer::NodePeer;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

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
        let (session, db) = seeded_bee().await;
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

/// A bee built from `ops` on a memory core (to learn the versions each op leaves).
fn local_versions(ops: &[Value]) -> Vec<u64> {
    block_on(async {
        let (_, db) = seeded_bee().await;
        apply(&db, ops).await.unwrap()
    })
}

fn compare(ours: &Value, theirs: &Value, q: &Value) {
    for part in ["ranges", "gets", "histories", "diffs", "versions"] {
        let (a, b) = (
            ours[part].as_array().unwrap(),
            theirs[part].as_array().unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{part}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x, y, "{part}[{i}] ({})", q[part][i]);
        }
    }
}

const STEP: Duration = Duration::from_secs(60);

/// JS writes a bee and serves it; hyperpunch reads it over TCP replication through a
/// [`HubCore`]: a first `get` downloads a few dozen blocks (not the core), then every query
/// agrees with what JS answers on its own copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_writes_rust_reads_over_tcp() {
    let ops = workload(11, 700);
    let versions = local_versions(&ops);
    let q = query_set(700, &versions);
    let dir = std::env::temp_dir().join(format!("hp-bee-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ops_file = dir.join("ops-js-writes.json");
    std::fs::write(&ops_file, serde_json::to_vec(&ops).unwrap()).unwrap();
    let mut peer = NodePeer::spawn(
        "bee-peer.js",
        &json!({
            "mode": "writer", "seed": hex::encode(SEED), "opsFile": ops_file,
            "queries": q, "streamSeed": hex::encode([0x51; 32]), "deadline": 120_000,
        }),
    )
    .expect("spawn node");
    let ready = tokio::task::block_in_place(|| peer.next_event("listening", STEP)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let length = ready["length"].as_u64().unwrap();
    assert_eq!(
        length,
        *versions.last().unwrap(),
        "JS wrote the same number of blocks"
    );
    let key: [u8; 32] = hex::decode(ready["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();

    let reader = Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key: Some(key),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(reader, Options::default()))
        .unwrap();
    let hub = SharedHub::new(hub);
    let socket = TcpStream::connect(("127.0.0.1", ready["port"].as_u64().unwrap() as u16))
        .await
        .unwrap();
    let conn = tokio::spawn({
        let hub = hub.clone();
        async move { replicate(socket, true, KeyPair::from_seed(&[0x52; 32]), &hub).await }
    });
    let core = HubCore::new(hub.clone(), dk).with_block_timeout(Some(STEP));
    let db: Db<_> = Hyperbee::new(core.clone()).with_codecs(Utf8, Utf8);

    let work = async {
        // Sparse: one get walks one root-to-leaf path.
        let k = hyperpunch_tests::bee_ops::key_name(350);
        let first = db.get(&k).await.unwrap();
        let ours = queries_of_get(&db, &k).await;
        assert_eq!(first.map(|e| e.seq), ours);
        let stored = core.stored_blocks().await.unwrap();
        assert!(
            stored > 0 && stored <= 60,
            "one get downloaded {stored} of {length} blocks"
        );
        let ours = queries(&db, &q).await.unwrap();
        compare(&ours, &ready["results"], &q);
        // The tree hash of what was downloaded matches the writer's.
        let g = hub.lock().await;
        let c = g.replicator(&dk).unwrap().core();
        assert_eq!(c.length(), length);
        assert_eq!(
            hex::encode(c.tree_hash()),
            ready["treeHash"].as_str().unwrap()
        );
    };
    tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .expect("reads finished in time");
    hub.end_all().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
}

async fn queries_of_get<C: hyperpunch_core::hyperbee::BeeCore>(db: &Db<C>, k: &str) -> Option<u64> {
    db.get(k).await.unwrap().map(|e| e.seq)
}

/// hyperpunch writes a bee (through a [`HubCore`], so appends reach the peers) and serves it;
/// JS reads it over TCP replication and answers every query as hyperpunch does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_writes_js_reads_over_tcp() {
    let ops = workload(13, 700);
    let writer = seeded_core().await;
    let key = *writer.key();
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(writer, Options::default()))
        .unwrap();
    let hub = SharedHub::new(hub);
    let db: Db<_> = Hyperbee::new(HubCore::new(hub.clone(), dk)).with_codecs(Utf8, Utf8);
    let versions = apply(&db, &ops).await.unwrap();
    let length = *versions.last().unwrap();
    let q = query_set(700, &versions);
    let ours = queries(&db, &q).await.unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = tokio::spawn({
        let hub = hub.clone();
        async move {
            let (socket, _) = listener.accept().await.unwrap();
            replicate(socket, false, KeyPair::from_seed(&[0x61; 32]), &hub).await
        }
    });
    let mut peer = NodePeer::spawn(
        "bee-peer.js",
        &json!({
            "mode": "reader", "key": hex::encode(key), "port": port, "expect": length,
            "queries": q, "streamSeed": hex::encode([0x62; 32]), "deadline": 120_000,
        }),
    )
    .expect("spawn node");
    let done = tokio::task::spawn_blocking(move || {
        let r = peer.next_event("done", Duration::from_secs(120));
        (r, peer)
    })
    .await
    .unwrap();
    let (done, _peer) = done;
    let done = done.unwrap();
    assert_eq!(done["length"], json!(length));
    compare(&ours, &done["results"], &q);
    let _ = tokio::time::timeout(Duration::from_secs(10), serve).await;
}

/// A hyperbee 2.27.3 bug we do not copy: after these operations (found by the property test
/// against an ordered map), JS's `get` of the deleted key returns its old value, because a node
/// written by that key's put stays on its search path and JS's `isTarget` shortcut trusts it.
/// The blocks are identical; hyperpunch's `get` says the key is absent, as the range does in
/// both. (If JS ever fixes this, the last assertion tells us.)
#[test]
fn a_deleted_key_stays_deleted_unlike_js() {
    let key = |k: u8| format!("{}{}", "k".repeat((k % 3) as usize), k as char);
    let put = |k: u8, v: u32| json!({"op": "put", "key": key(k), "value": format!("v{v}")});
    let del = |k: u8| json!({"op": "del", "key": key(k)});
    let batch = |ops: Vec<Value>| json!({"op": "batch", "ops": ops});
    let ops = vec![
        put(0, 0),
        batch(vec![
            del(60),
            del(22),
            del(45),
            del(51),
            put(6, 120),
            del(16),
            put(36, 8),
            del(9),
            put(60, 114),
            put(29, 2),
            del(32),
        ]),
        put(62, 129),
        put(46, 80),
        put(37, 52),
        put(25, 62),
        put(11, 116),
        put(50, 34),
        put(38, 49),
        put(41, 236),
        put(61, 145),
        batch(vec![
            put(47, 241),
            del(31),
            put(8, 203),
            del(31),
            put(54, 40),
            del(45),
            del(28),
            put(37, 79),
        ]),
        del(29),
        put(19, 77),
        put(3, 137),
        put(55, 19),
        put(0, 115),
        put(63, 93),
        del(63),
        put(44, 85),
        del(38),
        del(41),
        put(17, 50),
        batch(vec![
            del(1),
            put(48, 78),
            put(56, 110),
            put(24, 216),
            del(47),
            put(42, 206),
            put(14, 116),
            put(51, 7),
            put(20, 91),
            put(3, 70),
            put(26, 44),
        ]),
        put(35, 145),
        del(35),
        put(28, 210),
    ];
    let q = json!({"gets": [{"key": key(35)}], "ranges": [{}]});
    let (blocks, ours) = ops_on_a_new_bee(&ops, &q);
    let js = run_script(
        "bee-ops.js",
        &json!({"seed": hex::encode(SEED), "ops": ops, "queries": q}),
        Duration::from_secs(60),
    )
    .expect("node bee-ops.js");
    assert_eq!(js["blocks"], json!(blocks), "identical blocks");
    assert_eq!(js["results"]["ranges"], ours["ranges"], "identical ranges");
    let listed = |r: &Value| {
        r["ranges"][0]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e[1] == json!(key(35)))
    };
    assert!(!listed(&ours) && !listed(&js["results"]));
    assert_eq!(
        ours["gets"][0],
        Value::Null,
        "hyperpunch: the deleted key is absent"
    );
    assert_eq!(
        js["results"]["gets"][0][2],
        json!("v145"),
        "JS returns the deleted value"
    );
}

/// Small batches (up to 60 operations: two fifths deletes, a fifth compare-and-swaps that pass
/// or fail) with single puts and deletes between them, over 20, 80 and 300 keys: the same blocks
/// as JS, byte for byte. Deletes in a batch leave nodes that point at children a later block of
/// the batch places; JS encodes each block before it narrows the next one's list, so such a
/// node gets the child's offset from before, which `Arena::take_blocks`' two passes have to
/// reproduce (a first version of them did not, and differed from block 94 of the first seed on).
#[test]
fn delete_heavy_small_batches_give_identical_blocks() {
    for seed in [2u64, 4, 5, 8] {
        let mut r = Rng::new(seed);
        let space = [20u64, 80, 300][seed as usize % 3];
        let key = |k: u64| format!("k{k:03}");
        let mut ops = Vec::new();
        for step in 0..60u64 {
            match r.below(4) {
                0 => ops.push(
                    json!({"op": "put", "key": key(r.below(space)), "value": format!("s{step}")}),
                ),
                1 => ops.push(json!({"op": "del", "key": key(r.below(space))})),
                _ => {
                    let mut b = Vec::new();
                    for _ in 0..r.below(60) {
                        let k = key(r.below(space));
                        b.push(match r.below(5) {
                            0 | 1 => json!({"op": "del", "key": k}),
                            2 => json!({"op": "cas-put", "key": k, "value": format!("c{step}"),
                                "expect": format!("s{}", r.below(step + 1))}),
                            _ => json!({"op": "put", "key": k, "value": format!("s{step}")}),
                        });
                    }
                    ops.push(json!({"op": "batch", "ops": b}));
                }
            }
        }
        let (blocks, _) = ops_on_a_new_bee(&ops, &json!({}));
        assert!(blocks.len() > 200, "seed {seed}: {} blocks", blocks.len());
        let js = run_script(
            "bee-ops.js",
            &json!({"seed": hex::encode(SEED), "ops": ops, "queries": {}}),
            Duration::from_secs(60),
        )
        .expect("node bee-ops.js");
        let theirs = js["blocks"].as_array().unwrap();
        for (i, (a, b)) in blocks.iter().zip(theirs).enumerate() {
            assert_eq!(a, b, "seed {seed}: block {i} differs");
        }
        assert_eq!(blocks.len(), theirs.len(), "seed {seed}");
    }
}

/// `ops` applied to a new bee (utf-8 keys and values) on a core of the key pair of [`SEED`]:
/// its blocks (hex) and the answers to `q`.
fn ops_on_a_new_bee(ops: &[Value], q: &Value) -> (Vec<Value>, Value) {
    block_on(async {
        let (core, db) = seeded_bee().await;
        apply(&db, ops).await.unwrap();
        let mut blocks = Vec::new();
        for i in 0..core.length().await {
            blocks.push(json!(hex::encode(core.get(i).await.unwrap().unwrap())));
        }
        (blocks, queries(&db, q).await.unwrap())
    })
}

/// A new core in memory, of the key pair of [`SEED`].
async fn seeded_core() -> Hypercore<MemoryStorage> {
    Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&SEED)),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// A new bee (utf-8 keys and values) in memory, on [`seeded_core`].
async fn seeded_bee() -> (Session<MemoryStorage>, Db<Session<MemoryStorage>>) {
    let session = seeded_core().await.into_session();
    let db = Hyperbee::new(session.clone()).with_codecs(Utf8, Utf8);
    (session, db)
}
