//! autobase, live against the pinned JS autobase 7.28.1 (`tests/interop/autobase-scenario.js`):
//! JS members (a bootstrap and writers it adds) append concurrently while partitioned, heal and
//! converge; hyperpunch then reads every writer's oplog (the raw blocks JS wrote) and linearizes
//! and applies them with the same apply function. The view must be the JS view, block for block,
//! with the same indexed length, whatever order the blocks arrive in. And the reverse: a hyperpunch
//! writer, over corestore replication on TCP (`tests/interop/autobase-peer.js`), whose nodes JS accepts.

use std::time::Duration;

use hyperpunch_core::autobase::{ApplyNode, Autobase, Host, Views};
use hyperpunch_tests::node::run_script;
use serde_json::{json, Value};

fn key(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// The scenario's apply: `add:<key>:<0|1>`, `rm:<key>`, or a value for the view.
fn chat_apply(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
    let view = views.open("view");
    for n in nodes {
        let s = String::from_utf8_lossy(n.value);
        if let Some(rest) = s.strip_prefix("add:") {
            let (k, idx) = rest.split_once(':').unwrap();
            host.add_writer(&key(k), idx == "1");
            continue;
        }
        if let Some(k) = s.strip_prefix("rm:") {
            host.remove_writer(&key(k)).unwrap();
            continue;
        }
        views.append(view, n.value.to_vec());
    }
}

/// The scenario's apply on an optimistic base (`optimists` in autobase-scenario.js): as
/// [`chat_apply`], and a value starting with `ok` acks its writer (JS `host.ackWriter`).
fn optimistic_apply(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
    for n in nodes {
        if n.value.starts_with(b"ok") {
            host.ack_writer(n.from);
        }
        chat_apply(std::slice::from_ref(n), views, host);
    }
}

/// The scenario's apply with `bee` (autobase-scenario.js): the view "view" is a hyperbee (utf-8
/// keys and values) and every value but `add:` / `rm:` is `put:<k>=<v>`, `del:<k>` or
/// `batch:<op>;<op>;...` on it, as JS's `beeOps`.
fn bee_apply(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
    use hyperpunch_core::hyperbee::Utf8;
    let view = views.open("view");
    for n in nodes {
        let s = String::from_utf8_lossy(n.value).into_owned();
        if s.starts_with("add:") || s.starts_with("rm:") {
            chat_apply(std::slice::from_ref(n), views, host);
            continue;
        }
        let (batch, ops) = match s.strip_prefix("batch:") {
            Some(rest) => (true, rest.split(';').collect::<Vec<_>>()),
            None => (false, vec![s.as_str()]),
        };
        let ops: Vec<(&str, Option<&str>)> = ops
            .into_iter()
            .filter_map(|op| match op.strip_prefix("put:") {
                Some(kv) => kv.split_once('=').map(|(k, v)| (k, Some(v))),
                None => op.strip_prefix("del:").map(|k| (k, None)),
            })
            .collect();
        let mut bee = views.bee(view).with_codecs(Utf8, Utf8);
        if batch {
            let mut b = bee.batch();
            for (k, v) in ops {
                match v {
                    Some(v) => b.put(k, v).unwrap(),
                    None => b.del(k).unwrap(),
                }
            }
            b.flush().unwrap();
        } else {
            for (k, v) in ops {
                match v {
                    Some(v) => bee.put(k, v).unwrap(),
                    None => bee.del(k).unwrap(),
                }
            }
        }
    }
}

/// What JS's `beeReads` reads (autobase-scenario.js), read from our bee view: every entry, a
/// range, a reversed limited range, a get of every key the scenario uses, and every entry at
/// the indexed length.
fn bee_reads<A: hyperpunch_core::autobase::Apply>(
    base: &Autobase<A>,
    view: usize,
    members: usize,
) -> Value {
    use hyperpunch_core::hyperbee::{RangeOptions, Utf8};
    let bee = base.views().read_bee(view).with_codecs(Utf8, Utf8);
    let entries = |b: &hyperpunch_core::autobase::BeeReader<Utf8, Utf8>,
                   r: RangeOptions<'_, Utf8>| {
        Value::from(
            b.range(r)
                .unwrap()
                .into_iter()
                .map(|e| json!([e.key, e.value]))
                .collect::<Vec<_>>(),
        )
    };
    let mut keys: Vec<String> = (0..20).map(|k| format!("a{k:02}")).collect();
    keys.extend((0..8).map(|k| format!("k{k}")));
    for i in 0..members {
        keys.extend((0..8).map(|r| format!("b{i}{r}")));
    }
    keys.push("zz".into());
    let mut gets = serde_json::Map::new();
    for k in keys {
        let v = bee.get(&k).unwrap().and_then(|e| e.value);
        gets.insert(k, json!(v));
    }
    json!({
        "all": entries(&bee, RangeOptions::default()),
        "range": entries(&bee, RangeOptions { gte: Some("k2"), lt: Some("k6"), ..Default::default() }),
        "reverse": entries(&bee, RangeOptions { reverse: true, limit: Some(3), ..Default::default() }),
        "gets": gets,
        "indexedAll": entries(&base.indexed_bee(view).with_codecs(Utf8, Utf8), RangeOptions::default()),
    })
}

struct Run {
    /// With `bee`: [`bee_reads`] of the view.
    bee: Option<Value>,
    view: Vec<String>,
    indexed_view: usize,
    system_length: u64,
    reboots: u64,
    /// The indexed system batches, in order.
    flushes: Vec<hyperpunch_core::autobase::system::SystemFlush>,
    indexed_system_length: u64,
}

/// The system bee's blocks for `flushes`, the views keyed by `view_keys[i]` in flush `i` (JS
/// records a view's key as it is at that flush: it changes each time the indexers change).
fn system_bee_blocks_per_flush(
    flushes: &[hyperpunch_core::autobase::system::SystemFlush],
    view_keys: &[Vec<[u8; 32]>],
) -> Vec<Vec<u8>> {
    use hyperpunch_core::autobase::cores::write_flushes;
    use hyperpunch_core::crypto::KeyPair;
    use hyperpunch_core::hyperbee::{source::BeeCore, Hyperbee};
    use hyperpunch_core::hypercore::{CreateOptions, Hypercore};
    use hyperpunch_core::storage::MemoryStorage;
    // its own runtime on its own thread: callers may be inside one
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let core = Hypercore::create(
                    MemoryStorage::new(),
                    CreateOptions {
                        key_pair: Some(KeyPair::from_seed(&[0x77; 32])),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                let session = core.into_session();
                let bee = Hyperbee::new(session.clone());
                for (f, keys) in flushes.iter().zip(view_keys) {
                    write_flushes(&bee, std::slice::from_ref(f), keys)
                        .await
                        .unwrap();
                }
                let n = bee.version().await;
                let mut out = Vec::new();
                for i in 0..n {
                    out.push(BeeCore::get(&session, i).await.unwrap().unwrap());
                }
                out
            })
        })
        .join()
        .unwrap()
    })
}

/// The system core a hyperpunch indexer writes from `flushes` (with the keys JS derives for a
/// base whose only indexer is the bootstrap, moved when the bootstrap became the indexer):
/// (system key, view key, blocks).
fn system_core_of(
    js: &Value,
    flushes: &[hyperpunch_core::autobase::system::SystemFlush],
    view: &[Vec<u8>],
) -> ([u8; 32], [u8; 32], Vec<String>) {
    use hyperpunch_core::autobase::cores::{core_manifest, last_move, prologue, write_flushes};
    use hyperpunch_core::crypto::KeyPair;
    use hyperpunch_core::hyperbee::{source::BeeCore, Hyperbee};
    use hyperpunch_core::hypercore::{CreateOptions, Hypercore};
    use hyperpunch_core::storage::MemoryStorage;

    let bootstrap = key(js["bootstrap"].as_str().unwrap());
    let signer = key(js["localSigner"].as_str().unwrap());
    let entropy = key(js["localNamespace"].as_str().unwrap());
    let (moved_at, moved_views) = last_move(flushes).expect("the bootstrap became the indexer");
    let view_len = moved_views.iter().find(|v| v.0 == 0).map_or(0, |v| v.1);
    let view_key = core_manifest(
        &bootstrap,
        &entropy,
        &[signer],
        "view",
        prologue(view, view_len),
    )
    .key();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let blocks = rt.block_on(async {
        // the blocks do not depend on the core's key: any writable core holds them
        let core = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[0x77; 32])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let session = core.into_session();
        let bee = Hyperbee::new(session.clone());
        write_flushes(&bee, flushes, &[view_key]).await.unwrap();
        let n = bee.version().await;
        let mut out = Vec::new();
        for i in 0..n {
            out.push(BeeCore::get(&session, i).await.unwrap().unwrap());
        }
        out
    });
    let system_key = core_manifest(
        &bootstrap,
        &entropy,
        &[signer],
        "_system",
        prologue(&blocks, moved_at),
    )
    .key();
    (
        system_key,
        view_key,
        blocks.iter().map(hex::encode).collect(),
    )
}

/// Feed the blocks in the order `order` picks (writer index for each step), updating after
/// every `every` blocks.
fn replay(js: &Value, order: &[usize], every: usize, optimistic: bool, bee: bool) -> Run {
    let writers: Vec<([u8; 32], Vec<Vec<u8>>)> = js["writers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let blocks = w["blocks"].as_array().unwrap();
            (
                key(w["key"].as_str().unwrap()),
                blocks
                    .iter()
                    .map(|b| hex::decode(b.as_str().unwrap()).unwrap())
                    .collect(),
            )
        })
        .collect();
    let apply: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = if optimistic {
        optimistic_apply
    } else if bee {
        bee_apply
    } else {
        chat_apply
    };
    let mut base = Autobase::new(key(js["bootstrap"].as_str().unwrap()), apply);
    base.set_optimistic(optimistic);
    base.record_system();
    let view = base.open_view("view");
    let mut next = vec![0usize; writers.len()];
    let mut fed = 0;
    for &w in order {
        let (k, blocks) = &writers[w];
        if next[w] < blocks.len() {
            base.handle_block(k, next[w] as u64, &blocks[next[w]])
                .unwrap();
            next[w] += 1;
            fed += 1;
            if fed % every == 0 {
                base.update();
            }
        }
    }
    base.update();
    if std::env::var("AB_DEBUG").is_ok() {
        for (k, o, l, ld, r, i) in base.writer_states() {
            eprintln!(
                "{} indexed {o} linearized {l} loaded {ld} removed {r} indexer {i} blocks {}",
                &hex::encode(k)[..8],
                base.oplog_len(&k)
            );
            if let Some((len, heads, deps)) = base.pending_node(&k) {
                let h: Vec<String> = heads
                    .iter()
                    .map(|h| format!("{}:{}", &hex::encode(h.key)[..8], h.length))
                    .collect();
                eprintln!("   pending {len} heads {h:?} resolved {deps}");
            }
        }
    }
    assert!(
        next.iter().zip(&writers).all(|(n, w)| *n == w.1.len()),
        "every block fed"
    );
    Run {
        bee: bee.then(|| bee_reads(&base, view, writers.len())),
        view: base.views().blocks(view).iter().map(hex::encode).collect(),
        indexed_view: base.indexed_view_lengths()[view],
        system_length: base.system().length,
        reboots: base.reboots,
        flushes: base.take_indexed_flushes(),
        indexed_system_length: base.indexed_system().length,
    }
}

fn orders(js: &Value) -> Vec<(String, Vec<usize>, usize)> {
    let lens: Vec<usize> = js["writers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["blocks"].as_array().unwrap().len())
        .collect();
    let total: usize = lens.iter().sum();
    let mut out = Vec::new();
    let seq: Vec<usize> = (0..lens.len())
        .flat_map(|w| std::iter::repeat_n(w, lens[w]))
        .collect();
    out.push(("writer by writer".to_string(), seq.clone(), total));
    let rev: Vec<usize> = (0..lens.len())
        .rev()
        .flat_map(|w| std::iter::repeat_n(w, lens[w]))
        .collect();
    out.push(("writer by writer, reversed".to_string(), rev, 1));
    let rr: Vec<usize> = (0..total).flat_map(|_| 0..lens.len()).collect();
    out.push(("round robin".to_string(), rr, 1));
    // seeded shuffles of the writers' turns
    for seed in 1..=4u64 {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut turns = seq.clone();
        for i in (1..turns.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            turns.swap(i, (s % (i as u64 + 1)) as usize);
        }
        out.push((format!("shuffle {seed}"), turns, 1 + seed as usize));
    }
    out
}

/// Runs the JS scenario and replays it in every order; returns the JS output and the most
/// linearizer restarts (indexer changes) a replay went through.
fn check(config: Value) -> (Value, u64) {
    let js = match std::env::var("AB_JS_FILE") {
        // replay a saved JS run (debugging)
        Ok(f) => serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap(),
        Err(_) => run_script("autobase-scenario.js", &config, Duration::from_secs(90)).unwrap(),
    };
    if let Ok(dir) = std::env::var("AB_SAVE_DIR") {
        let name = format!(
            "{dir}/{}.json",
            config.to_string().len() + js["writers"][0]["blocks"].as_array().unwrap().len()
        );
        std::fs::write(name, js.to_string()).unwrap();
    }
    let want: Vec<String> = js["view"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!want.is_empty());
    let mut reboots = 0;
    for (name, order, every) in orders(&js) {
        let optimistic = config["optimists"].as_u64().unwrap_or(0) > 0;
        let bee = config["bee"] == true;
        let run = replay(&js, &order, every, optimistic, bee);
        assert_eq!(run.view, want, "{config} {name}: the view");
        if bee {
            let (ours, theirs) = (run.bee.as_ref().unwrap(), &js["bee"]);
            for part in ["all", "range", "reverse", "gets", "indexedAll"] {
                assert_eq!(
                    ours[part], theirs[part],
                    "{config} {name}: bee reads, {part}"
                );
            }
            assert!(!theirs["all"].as_array().unwrap().is_empty());
        }
        assert_eq!(
            run.indexed_view as u64,
            js["viewIndexedLength"].as_u64().unwrap(),
            "{config} {name}: indexed length"
        );
        assert_eq!(
            run.system_length,
            js["systemLength"].as_u64().unwrap(),
            "{config} {name}: system length"
        );
        reboots = reboots.max(run.reboots);
        if config["indexers"] == "bootstrap" {
            // the system core a hyperpunch indexer writes: JS's, key and blocks
            let view: Vec<Vec<u8>> = run.view.iter().map(|v| hex::decode(v).unwrap()).collect();
            let (system_key, view_key, blocks) = system_core_of(&js, &run.flushes, &view);
            assert_eq!(
                hex::encode(system_key),
                js["systemKey"],
                "{config} {name}: system key"
            );
            assert_eq!(
                hex::encode(view_key),
                js["viewKey"],
                "{config} {name}: view key"
            );
            let n = run.indexed_system_length as usize;
            assert_eq!(blocks.len(), n, "{config} {name}: indexed system blocks");
            let js_blocks = js["systemBlocks"].as_array().unwrap();
            assert!(js_blocks.len() >= n, "{config} {name}: JS system core");
            for (i, b) in blocks.iter().enumerate() {
                assert_eq!(b, &js_blocks[i], "{config} {name}: system block {i}");
            }
        }
    }
    (js, reboots)
}

#[test]
fn one_indexer_three_writers_partitioned() {
    check(json!({ "writers": 2, "indexers": "bootstrap", "rounds": 3, "perRound": 2 }));
}

/// A hyperbee view (JS `open: s => new Hyperbee(s.get('view'), { extension: false, ... })`):
/// the JS members' applies put, delete and batch on the bee while partitioned, then heal. Fed
/// their oplogs in 7 arrival orders (reorders undo bee writes), our bee view (`Views::bee`)
/// holds JS's view core blocks byte for byte, with the same indexed length, and reads (every
/// entry, ranges, gets of every key, the bee at the indexed length) give JS's answers; the
/// system core an indexer writes over it (with the view's key JS derives) is JS's too.
#[test]
fn bee_view_one_indexer_partitioned() {
    check(
        json!({ "writers": 2, "indexers": "bootstrap", "rounds": 3, "perRound": 3, "bee": true }),
    );
}

/// [`bee_view_one_indexer_partitioned`] with three indexers (the linearizer restarts as they are
/// added).
#[test]
fn bee_view_three_indexers_partitioned() {
    check(json!({ "writers": 2, "indexers": "all", "rounds": 3, "perRound": 3, "bee": true }));
}

#[test]
fn three_indexers_partitioned() {
    let (_, reboots) =
        check(json!({ "writers": 2, "indexers": "all", "rounds": 3, "perRound": 2 }));
    assert!(
        reboots > 0,
        "the indexers changed, so the linearizer restarted"
    );
}

#[test]
fn removed_writer_stops_counting() {
    let (js, _) = check(
        json!({ "writers": 2, "indexers": "bootstrap", "rounds": 2, "perRound": 1, "removeLast": true }),
    );
    let view: Vec<String> = js["view"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| String::from_utf8(hex::decode(v.as_str().unwrap()).unwrap()).unwrap())
        .collect();
    assert!(view.iter().any(|v| v == "after removal"), "{view:?}");
    assert!(
        !view
            .iter()
            .any(|v| v.ends_with("after removal") && v.starts_with('w')),
        "{view:?}"
    );
}

/// Optimistic writers (JS `optimistic: true`): two JS peers that are never added append
/// optimistically while partitioned (`o<i> r<r> nope`, then `ok o<i> r<r>`); JS's apply acks
/// the writer of each `ok` value (`host.ackWriter`), so only those stay. Fed the oplogs JS wrote
/// (the optimists' too) in every arrival order, an optimistic hyperpunch engine gives the JS view,
/// indexed length, system length, and the system core JS's bootstrap wrote (its member records
/// for the acked non-members included), byte for byte; and the view, indexed length and system
/// length of a base with three indexers and an optimist.
#[test]
fn optimistic_non_writers_acked_by_apply() {
    let (js, _) = check(
        json!({ "writers": 1, "indexers": "bootstrap", "rounds": 3, "perRound": 1, "optimists": 2 }),
    );
    let view: Vec<String> = js["view"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| String::from_utf8(hex::decode(v.as_str().unwrap()).unwrap()).unwrap())
        .collect();
    assert_eq!(
        view.iter().filter(|v| v.starts_with("ok o")).count(),
        6,
        "{view:?}"
    );
    assert!(!view.iter().any(|v| v.ends_with("nope")), "{view:?}");
    // with three indexers (the linearizer restarts as they are added)
    let (js, _) = check(
        json!({ "writers": 2, "indexers": "all", "rounds": 2, "perRound": 1, "optimists": 1 }),
    );
    let acked = js["view"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v.as_str().unwrap().starts_with(&hex::encode("ok o")))
        .count();
    assert_eq!(acked, 2);
}

/// hyperpunch writes: a JS bootstrap adds the hyperpunch writer (its `local` core, named as JS
/// names it) and serves its corestore on one TCP connection; hyperpunch replicates the JS oplog,
/// linearizes it, becomes writable, appends four values (one of them a batch of two) to its own
/// oplog, and JS, replicating them back, accepts and indexes them: both ends hold the same view
/// in the same order with everything indexed.
#[test]
fn rust_writer_is_accepted_by_js_over_tcp() {
    rust_member_with_js(false, None);
}

/// The same on an encrypted base (JS `encryptionKey`): the hyperpunch writer decrypts the JS
/// bootstrap's oplog, and its own oplog entries are stored encrypted (hypercore's default block
/// encryption with the keys derived from the base's key and its oplog key, as JS
/// `WriterEncryption` expects of a version-1 writer core: checked byte for byte against what JS
/// stores) and JS decrypts, applies and indexes them: both ends hold the same view.
#[test]
fn rust_writer_on_an_encrypted_base_is_accepted_by_js() {
    rust_member_with_js(false, Some([0x6b; 32]));
}

/// The same with the hyperpunch member added as an indexer (one JS + one hyperpunch indexer, a
/// quorum of both): it acks as the linearizer asks, both sides index the same view, and the
/// indexed system batches hyperpunch records give the JS system core's blocks, with the key JS
/// derives for the two indexers (moved twice: when the bootstrap and then hyperpunch became
/// indexers). hyperpunch's oplog carries no checkpoints here (its cores are not written after an
/// indexer change), so JS indexes but does not sign past the change.
///
/// In about 4 runs of 10 the two indexers' acks cross (each written before the other's came)
/// and, as between two JS indexers (`tests/interop/autobase-crossing.js`), neither `shouldAck`
/// asks for another while a value waits unindexed; each side then breaks the stall once nothing
/// moves (`Autobase::stall_ack` here: an ack that sees a JS head; JS in autobase-peer.js: an ack
/// when every head is a hyperpunch node, as JS's own tests force acks), and the run prints how
/// many stall acks each side wrote. `HP_AB_DEBUG=1` prints both sides' linearizer state.
#[test]
fn rust_indexer_with_a_js_indexer_over_tcp() {
    rust_member_with_js(true, None);
}

fn rust_member_with_js(indexer: bool, encryption_key: Option<[u8; 32]>) {
    use hyperpunch::core::corestore::{Corestore, GetOptions, PrimaryKey};
    use hyperpunch::core::crypto::KeyPair;
    use hyperpunch::core::encoding::Encode;
    use hyperpunch::core::storage::MemoryStorage;
    use hyperpunch::replicate::{replicate, SharedCorestore};
    use hyperpunch_tests::node_peer::NodePeer;
    use std::collections::HashMap;
    use std::time::Instant;

    let step = Duration::from_secs(60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut store =
            Corestore::open(MemoryStorage::new(), PrimaryKey::Given([0x33; 32])).await.unwrap();
        // with the base's key, every oplog is opened with it (hypercore's derived keys)
        let enc = |o: GetOptions| match encryption_key {
            Some(ek) => o.with_encryption_key(ek),
            None => o,
        };
        let local = store.get(enc(GetOptions::named("local"))).await.unwrap();
        let local_key = *local.key();
        let our_signer = store.core(&local).unwrap().key_pair().unwrap().public_key;
        let mut config = json!({ "writer": hex::encode(local_key), "values": 6, "expect": 4, "indexer": indexer, "deadline": 110000 });
        if let Some(ek) = encryption_key {
            config["encryptionKey"] = json!(hex::encode(ek));
        }
        let mut peer = NodePeer::spawn("autobase-peer.js", &config).expect("spawn node");
        let bootstrap = key(peer.next_event("ready", step).unwrap()["bootstrap"].as_str().unwrap());
        let port = peer.next_event("listening", step).unwrap()["port"].as_u64().unwrap() as u16;

        let boot = store.get(enc(GetOptions::from_key(bootstrap))).await.unwrap();
        store.replicator_mut(&boot).unwrap().download(0, 0, None).await.unwrap();
        let local_session = store.get(enc(GetOptions::named("local"))).await.unwrap();
        let mut handles = HashMap::from([(bootstrap, boot), (local_key, local_session)]);
        let (store, mut events) = SharedCorestore::with_events(store);
        let socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let conn = tokio::spawn({
            let store = store.clone();
            async move { replicate(socket, true, KeyPair::from_seed(&[0x34; 32]), &store).await }
        });

        let mut base = Autobase::new(bootstrap, chat_apply);
        base.record_system();
        let view = base.open_view("view");
        let mut flushes = Vec::new();
        let (mut idle, mut last_progress) = (0u32, (0usize, 0usize));
        let writes: [&[&str]; 3] = [&["hp 0"], &["hp 1", "hp 2"], &["hp 3"]];
        let mut written = 0;
        let mut js_done: Option<Value> = None;
        let deadline = Instant::now() + Duration::from_secs(100);
        // HP_AB_DEBUG=1: the engine's state on stderr every 2 s (and node's, see autobase-peer.js)
        let debug = std::env::var_os("HP_AB_DEBUG").is_some();
        let mut last_debug = Instant::now();
        let mut debug_dumped = false;
        let mut stall_acks = 0usize;
        loop {
            if debug && last_debug.elapsed() > Duration::from_secs(2) {
                last_debug = Instant::now();
                let s = store.lock().await;
                let mut lens = String::new();
                for (k, h) in &handles {
                    let core = s.core(h).unwrap();
                    lens += &format!(
                        " {}: store {}/{} engine {};",
                        &hex::encode(k)[..4],
                        core.contiguous_length(),
                        core.length(),
                        base.oplog_len(k)
                    );
                }
                eprintln!(
                    "[rs] view {} indexed {} js_done {} writable {} indexer {} |{lens} | {}",
                    base.views().len(view),
                    base.indexed_view_lengths()[view],
                    js_done.is_some(),
                    base.is_writable(&local_key),
                    base.is_indexer(&local_key),
                    base.explain()
                );
                if !debug_dumped && Instant::now() + Duration::from_secs(60) > deadline {
                    debug_dumped = true;
                    for (k, h) in &handles {
                        let core = s.core(h).unwrap();
                        for i in 0..core.contiguous_length() {
                            let b = core.get(i).await.unwrap().unwrap();
                            eprintln!("[rs block] {} {i} {}", hex::encode(k), hex::encode(b));
                        }
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no convergence; view {} indexed {}\n{}",
                base.views().blocks(view).len(),
                base.indexed_view_lengths()[view],
                peer.stderr()
            );
            {
                let mut s = store.lock().await;
                let now = store.now();
                for (k, h) in &handles {
                    let core = s.core(h).unwrap();
                    let have = core.contiguous_length();
                    while base.oplog_len(k) < have {
                        let seq = base.oplog_len(k);
                        let block = core.get(seq).await.unwrap().expect("contiguous block");
                        if k == &local_key {
                            break; // our own blocks are in the engine already
                        }
                        base.handle_block(k, seq, &block).unwrap();
                    }
                }
                base.update();
                for (k, _) in base.wanted() {
                    if let std::collections::hash_map::Entry::Vacant(e) = handles.entry(k) {
                        let h = s.get(enc(GetOptions::from_key(k))).await.unwrap();
                        s.replicator_mut(&h).unwrap().download(now, 0, None).await.unwrap();
                        e.insert(h);
                    }
                }
                if indexer {
                    // When nothing moves, break the stall of crossed acks (JS `shouldAck` says
                    // no on both sides, see `Autobase::stall_ack`) with an ack that sees a JS
                    // head; while our node is the only head JS acks instead (autobase-peer.js)
                    let progress = (base.views().len(view), base.indexed_view_lengths()[view]);
                    if progress == last_progress {
                        idle += 1;
                    } else {
                        idle = 0;
                    }
                    last_progress = progress;
                    let msgs = if idle >= 25 {
                        idle = 0;
                        let m = base.stall_ack(&local_key);
                        stall_acks += usize::from(m.is_some());
                        if debug {
                            eprintln!("[rs stall ack] wrote {} | {}", m.is_some(), base.explain());
                        }
                        m
                    } else {
                        base.ack(&local_key)
                    };
                    if let Some(msgs) = msgs {
                        let blocks: Vec<Vec<u8>> = msgs.iter().map(Encode::to_bytes).collect();
                        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
                        s.append(now, &local, &refs).await.unwrap();
                        base.update();
                    }
                }
                flushes.extend(base.take_indexed_flushes());
                if written < writes.len() && base.is_writable(&local_key) {
                    let values = writes[written].iter().map(|v| v.as_bytes().to_vec()).collect();
                    if let Some(msgs) = base.append(&local_key, values) {
                        let blocks: Vec<Vec<u8>> = msgs.iter().map(Encode::to_bytes).collect();
                        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
                        s.append(now, &local, &refs).await.unwrap();
                        base.update();
                        written += 1;
                    }
                }
            }
            if js_done.is_none() {
                if let Ok(v) = peer.next(Duration::from_millis(1)) {
                    assert!(!matches!(v["event"].as_str(), Some("failed" | "deadline")), "{v}");
                    if v["event"] == "done" {
                        js_done = Some(v);
                    }
                }
            }
            if let Some(done) = &js_done {
                let want: Vec<String> = done["view"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
                let got: Vec<String> = base.views().blocks(view).iter().map(hex::encode).collect();
                if got == want && base.indexed_view_lengths()[view] == want.len() {
                    assert_eq!(done["viewIndexedLength"].as_u64().unwrap() as usize, want.len());
                    if indexer {
                        // and our acks
                        assert!(done["writerLength"].as_u64().unwrap() >= 4, "JS applied our nodes");
                    } else {
                        assert_eq!(done["writerLength"], 4, "JS applied all four of our nodes");
                    }
                    let texts: Vec<String> = base.views().blocks(view).iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
                    assert_eq!(texts.iter().filter(|t| t.starts_with("hp ")).count(), 4, "{texts:?}");
                    assert_eq!(texts.iter().filter(|t| t.starts_with("js ")).count(), 6, "{texts:?}");
                    if let Some(ek) = encryption_key {
                        // our first entry as stored, here and in JS: encrypted with JS's keys
                        use hyperpunch_core::autobase::encryption::writer_encryption;
                        assert_eq!(done["encrypted"], true);
                        let s = store.lock().await;
                        let core = s.core(&local).unwrap();
                        let stored = core.get_stored(0).await.unwrap().unwrap();
                        let plain = core.get(0).await.unwrap().unwrap();
                        assert_eq!(hex::encode(&stored), done["writerBlock0"].as_str().unwrap(), "JS stores our block as we do");
                        assert_ne!(&stored[8..], &plain[..], "stored encrypted");
                        assert_eq!(stored, writer_encryption(&ek, &local_key).encrypt(0, 0, &plain));
                        eprintln!("encrypted writer: JS decrypted, applied and indexed our 4 values");
                    }
                    if indexer {
                        let idx: Vec<String> =
                            base.indexed_system().indexers.iter().map(|c| hex::encode(c.key)).collect();
                        assert_eq!(json!(idx), done["indexers"], "the indexers");
                        flushes.extend(base.take_indexed_flushes());
                        use hyperpunch_core::autobase::cores::{core_manifest, last_move, prologue};
                        let n = base.indexed_system().length as usize;
                        let signers = [key(done["localSigner"].as_str().unwrap()), our_signer];
                        let entropy = key(done["localNamespace"].as_str().unwrap());
                        let (moved_at, moved_views) = last_move(&flushes).expect("moved");
                        let view_at = moved_views.iter().find(|v| v.0 == view).map_or(0, |v| v.1);
                        let view_key = core_manifest(
                            &bootstrap,
                            &entropy,
                            &signers,
                            "view",
                            prologue(base.views().blocks(view), view_at),
                        )
                        .key();
                        assert_eq!(hex::encode(view_key), done["viewKey"], "view key");
                        // the view's key at each flush: set anew when the indexers changed, for
                        // the indexers then, with the prologue of the view's length then
                        let signer_of = |k: &[u8; 32]| if *k == local_key { our_signer } else { signers[0] };
                        let mut epoch = [0u8; 32];
                        let per: Vec<Vec<[u8; 32]>> = flushes
                            .iter()
                            .map(|f| {
                                if f.indexers_changed {
                                    let pks: Vec<[u8; 32]> = f.info.indexers.iter().map(|c| signer_of(&c.key)).collect();
                                    let at = f.view_ids.iter().zip(&f.info.views).find(|(id, _)| **id == view).map_or(0, |(_, v)| v.length);
                                    epoch = core_manifest(&bootstrap, &entropy, &pks, "view", prologue(base.views().blocks(view), at)).key();
                                }
                                vec![epoch]
                            })
                            .collect();
                        assert_eq!(per.last().unwrap()[0], view_key, "the last view key is the final one");
                        let ours = system_bee_blocks_per_flush(&flushes, &per);
                        let system_key = core_manifest(
                            &bootstrap,
                            &entropy,
                            &signers,
                            "_system",
                            prologue(&ours, moved_at),
                        )
                        .key();
                        assert_eq!(ours.len(), n);
                        let js_blocks = done["systemBlocks"].as_array().unwrap();
                        assert!(js_blocks.len() >= n, "JS system core {} < {n}", js_blocks.len());
                        for (i, b) in ours.iter().enumerate() {
                            assert_eq!(hex::encode(b), js_blocks[i].as_str().unwrap(), "system block {i}");
                        }
                        eprintln!(
                            "the {n} indexed system blocks are JS's ({} in JS's core); stall acks: JS {}, hyperpunch {stall_acks}",
                            js_blocks.len(),
                            done["stallAcks"]
                        );
                        assert_eq!(hex::encode(system_key), done["systemKey"], "system key (moved at {moved_at})");
                    }
                    break;
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), events.recv()).await;
        }
        conn.abort();
        let _ = peer.next_event("closed", step);
    });
}

/// A new reader fast-forwards: a JS autobase (`tests/interop/autobase-ff.js`) holds thousands of
/// indexed entries from its bootstrap (the only indexer) and a few unindexed ones from a second
/// writer on the tip. hyperpunch replicates the JS corestore over one TCP connection, finds the
/// system core from the bootstrap's digest, reads it at its signed length (the hypercore layer
/// verifies the indexers' multisig; the manifest is checked to name them), takes heads,
/// indexers, members and the view length from there, and linearizes only what follows: the
/// view equals JS's (the part below the fast-forward point read from the JS view core), with the
/// same indexed length and system length, and no oplog block below the fast-forward point was
/// downloaded besides the bootstrap's head and the entry its digest points to.
#[test]
fn new_reader_fast_forwards_from_a_js_system_core() {
    fast_forward_case(1, 3000);
}

/// The same with three JS indexers: the system and view cores are signed by a quorum of them (2
/// of 3), the system key moved as they were added (the bootstrap's digest points back to it),
/// and their acks past the signed point are linearized by the reader. Fewer entries than the
/// one-indexer case: four autobases in one node process settle slowly on a loaded machine, and
/// the property (a quorum-signed system, a moved system key) does not depend on the count.
#[test]
fn new_reader_fast_forwards_with_three_js_indexers() {
    fast_forward_case(3, 1000);
}

/// The fast-forward cases run one at a time (each drives a busy node process; in parallel on a
/// 2-core machine they only slow each other past their bounds).
static FAST_FORWARD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Rust-side bounds of one fast-forward case, in seconds; node's own deadline is well past their
/// sum, so a slow run fails here, with node's stderr, instead of node exiting first.
const FF_READY: u64 = 240;
const FF_LISTENING: u64 = 60;
const FF_READ: u64 = 120;
const FF_CONVERGE: u64 = 120;
const FF_VIEW_READ: u64 = 120;
const FF_NODE_DEADLINE: u64 = 2 * (FF_READY + FF_LISTENING + FF_READ + FF_CONVERGE + FF_VIEW_READ);

/// A new reader of an encrypted base (JS `encryptionKey`, two JS writers: the bootstrap's 500
/// entries indexed, 50 of a second writer on the tip): given the key, it decrypts the
/// bootstrap's head and the system core (with their view block keys; the key also enters the
/// system and view keys, which must equal JS's), fast-forwards, decrypts the second writer's
/// oplog and the JS view core below the fast-forward point, and ends with JS's view. A second
/// engine on the same store then linearizes every oplog from its first block (all decrypted)
/// and ends with the same view in the same order, with the same indexed length. A wrong key:
/// `read_fast_forward_encrypted` says so (`WrongEncryptionKey`) and a block decrypted with it
/// is a typed error of the engine, no panic.
#[test]
fn new_reader_of_an_encrypted_base() {
    fast_forward_run(1, 500, 50, Some([0x5e; 32]));
}

fn fast_forward_case(indexers: u64, entries: u64) {
    fast_forward_run(indexers, entries, 5, None);
}

fn fast_forward_run(indexers: u64, entries: u64, tail: u64, encryption_key: Option<[u8; 32]>) {
    use hyperpunch::autobase_ff::{read_fast_forward_encrypted, FastForwardReadError};
    use hyperpunch::bee::StoreCore;
    use hyperpunch::core::autobase::fast_forward::FastForwardError;
    use hyperpunch::core::corestore::{Corestore, GetOptions, PrimaryKey};
    use hyperpunch::core::crypto::KeyPair;
    use hyperpunch::core::hyperbee::BeeCore;
    use hyperpunch::core::storage::MemoryStorage;
    use hyperpunch::replicate::{replicate, SharedCorestore};
    use hyperpunch_tests::node_peer::NodePeer;
    use std::collections::HashMap;
    use std::time::Instant;

    let _serial = FAST_FORWARD.lock().unwrap_or_else(|e| e.into_inner());
    #[allow(non_snake_case)]
    let TAIL: u64 = tail;
    // an oplog's options: with the base's key (hypercore's derived keys) when it is encrypted
    let oplog = |k: [u8; 32]| match encryption_key {
        Some(ek) => GetOptions::from_key(k).with_encryption_key(ek),
        None => GetOptions::from_key(k),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut config =
            json!({ "entries": entries, "tail": TAIL, "indexers": indexers, "deadline": FF_NODE_DEADLINE * 1000 });
        if let Some(ek) = encryption_key {
            config["encryptionKey"] = json!(hex::encode(ek));
        }
        let mut peer = NodePeer::spawn("autobase-ff.js", &config).expect("spawn node");
        let ready = peer
            .next_event("ready", Duration::from_secs(FF_READY))
            .unwrap_or_else(|e| panic!("{e}\n{}", peer.stderr()));
        let port = peer
            .next_event("listening", Duration::from_secs(FF_LISTENING))
            .unwrap_or_else(|e| panic!("{e}\n{}", peer.stderr()))["port"]
            .as_u64()
            .unwrap() as u16;
        let bootstrap = key(ready["bootstrap"].as_str().unwrap());
        let writer = key(ready["writer"].as_str().unwrap());
        let js_view: Vec<String> = ready["view"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(js_view.len() as u64, entries + TAIL);
        let js_indexed = ready["viewIndexedLength"].as_u64().unwrap() as usize;
        assert_eq!(
            js_indexed as u64, entries,
            "JS indexed the bootstrap's entries, not the tip"
        );

        let store = Corestore::open(MemoryStorage::new(), PrimaryKey::Given([0x55; 32]))
            .await
            .unwrap();
        let (store, mut events) = SharedCorestore::with_events(store);
        let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let conn = tokio::spawn({
            let store = store.clone();
            async move { replicate(socket, true, KeyPair::from_seed(&[0x56; 32]), &store).await }
        });

        let ff = tokio::time::timeout(
            Duration::from_secs(FF_READ),
            read_fast_forward_encrypted(
                &store,
                bootstrap,
                encryption_key,
                &["view"],
                Duration::from_secs(60),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("read_fast_forward took over {FF_READ} s\n{}", peer.stderr()))
        .unwrap_or_else(|e| panic!("{e}\n{}", peer.stderr()));
        assert_eq!(
            hex::encode(ff.system_key),
            ready["systemKey"].as_str().unwrap()
        );
        // at least what JS had signed when it printed (a signature it assembles later may
        // arrive too), never past its system
        let signed = ready["signedLength"].as_u64().unwrap();
        assert!(
            (signed..=ready["systemLength"].as_u64().unwrap()).contains(&ff.system_length),
            "system length {} (JS signed {signed})",
            ff.system_length
        );
        assert_eq!(ff.views.len(), 1, "the view found by its namespace");
        let idx: Vec<String> = ff
            .info
            .indexers
            .iter()
            .map(|c| hex::encode(c.key))
            .collect();
        assert_eq!(idx.len() as u64, indexers);
        assert_eq!(json!(idx), ready["indexers"], "the indexers");
        assert_eq!(
            hex::encode(ff.views[0].1),
            ready["viewKey"].as_str().unwrap()
        );
        let ff_view_len = ff.views[0].2 as usize;
        assert!(
            ff_view_len as u64 >= entries - 100,
            "fast-forwarded to {ff_view_len}"
        );

        let mut base = Autobase::new(bootstrap, chat_apply);
        base.fast_forward(ff.system_length, &ff.info, &ff.members, &ff.view_lengths());
        let view = base.open_view("view");
        assert_eq!(base.views().start(view), ff_view_len);
        let starts: HashMap<[u8; 32], u64> = [bootstrap, writer]
            .iter()
            .map(|k| (*k, base.oplog_start(k)))
            .collect();
        assert!(starts[&bootstrap] >= entries - 100, "{starts:?}");

        let mut handles = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(FF_CONVERGE);
        loop {
            assert!(
                Instant::now() < deadline,
                "no convergence: view {} of {}\n{}",
                base.views().len(view),
                js_view.len(),
                peer.stderr()
            );
            {
                let mut s = store.lock().await;
                let now = store.now();
                for (k, from) in base.wanted() {
                    if let std::collections::hash_map::Entry::Vacant(e) = handles.entry(k) {
                        let h = s.get(oplog(k)).await.unwrap();
                        s.replicator_mut(&h)
                            .unwrap()
                            .download(now, from, None)
                            .await
                            .unwrap();
                        e.insert(h);
                    }
                }
                for (k, h) in &handles {
                    let core = s.core(h).unwrap();
                    loop {
                        let seq = base.oplog_len(k);
                        if seq >= core.length() || !core.has(seq) {
                            break;
                        }
                        let block = core.get(seq).await.unwrap().expect("held block");
                        base.handle_block(k, seq, &block).unwrap();
                    }
                }
            }
            base.update();
            if base.views().len(view) == js_view.len()
                && base.indexed_view_lengths()[view] == js_indexed
            {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), events.recv()).await;
        }

        // the view: below the fast-forward point from the JS view core, then what we applied
        let tail: Vec<String> = base.views().blocks(view).iter().map(hex::encode).collect();
        assert_eq!(
            tail,
            js_view[ff_view_len..],
            "the view past the fast-forward point"
        );
        let view_core = {
            let h = store
                .lock()
                .await
                .get(GetOptions::from_key(ff.views[0].1))
                .await
                .unwrap();
            StoreCore::new(store.clone(), *h.discovery_key())
                .with_block_timeout(Some(Duration::from_secs(60)))
        };
        let view_deadline = Instant::now() + Duration::from_secs(FF_VIEW_READ);
        for (i, want) in js_view[..ff_view_len].iter().enumerate() {
            let left = view_deadline.saturating_duration_since(Instant::now());
            let b = tokio::time::timeout(left, BeeCore::get(&view_core, i as u64))
                .await
                .unwrap_or_else(|_| panic!("view block {i}: over {FF_VIEW_READ} s\n{}", peer.stderr()))
                .unwrap()
                .expect("view block");
            assert_eq!(&hex::encode(b), want, "view block {i}");
        }
        assert_eq!(
            base.system().length,
            ready["systemLength"].as_u64().unwrap(),
            "system length"
        );

        // structural: which oplog blocks were downloaded
        let mut s = store.lock().await;
        let mut below = 0;
        let mut fetched = 0u64;
        let mut full = 0;
        for (k, h) in &handles {
            let core = s.core(h).unwrap();
            full += core.length();
            let start = starts.get(k).copied().unwrap_or(0);
            for i in 0..core.length() {
                if core.has(i) {
                    fetched += 1;
                    if i < start {
                        below += 1;
                    }
                }
            }
        }
        assert!(
            full >= ready["oplogLength"].as_u64().unwrap() + TAIL,
            "{full}"
        );
        eprintln!(
            "fast-forward to system length {} (view {ff_view_len}): {fetched} oplog blocks \
             downloaded of {full}, {below} below the fast-forward point",
            ff.system_length
        );
        assert!(
            below <= 2,
            "only the bootstrap's head and its digest entry: {below}"
        );
        // besides the tip writer's oplog (linearized from its start), under 2% of the oplogs
        assert!(
            fetched.saturating_sub(TAIL) * 50 < full,
            "{fetched} of {full}"
        );
        // the system core: read sparsely (its last block, the member records' bee nodes), not
        // downloaded
        let sys_h = s.get(GetOptions::from_key(ff.system_key)).await.unwrap();
        let sys = s.core(&sys_h).unwrap();
        let sys_fetched = (0..sys.length()).filter(|&i| sys.has(i)).count() as u64;
        eprintln!(
            "system core: {sys_fetched} blocks downloaded of {}",
            sys.length()
        );
        assert!(
            sys_fetched <= 16 && sys_fetched * 4 < sys.length(),
            "system core blocks downloaded: {sys_fetched} of {}",
            sys.length()
        );
        drop(s);
        if let Some(ek) = encryption_key {
            // every oplog from its first block, decrypted: the same view in the same order
            let mut full_base = Autobase::new(bootstrap, chat_apply);
            let fview = full_base.open_view("view");
            let mut fh = HashMap::new();
            let deadline = Instant::now() + Duration::from_secs(FF_CONVERGE);
            loop {
                assert!(
                    Instant::now() < deadline,
                    "full linearization: view {} of {}\n{}",
                    full_base.views().len(fview),
                    js_view.len(),
                    peer.stderr()
                );
                {
                    let mut s = store.lock().await;
                    let now = store.now();
                    for (k, _) in full_base.wanted() {
                        if let std::collections::hash_map::Entry::Vacant(e) = fh.entry(k) {
                            let h = s.get(oplog(k)).await.unwrap();
                            s.replicator_mut(&h)
                                .unwrap()
                                .download(now, 0, None)
                                .await
                                .unwrap();
                            e.insert(h);
                        }
                    }
                    for (k, h) in &fh {
                        let core = s.core(h).unwrap();
                        loop {
                            let seq = full_base.oplog_len(k);
                            if seq >= core.length() || !core.has(seq) {
                                break;
                            }
                            let block = core.get(seq).await.unwrap().expect("held block");
                            full_base.handle_block(k, seq, &block).unwrap();
                        }
                    }
                }
                full_base.update();
                if full_base.views().len(fview) == js_view.len()
                    && full_base.indexed_view_lengths()[fview] == js_indexed
                {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(20), events.recv()).await;
            }
            let all: Vec<String> = full_base
                .views()
                .blocks(fview)
                .iter()
                .map(hex::encode)
                .collect();
            assert_eq!(all, js_view, "every oplog linearized from the start");
            eprintln!(
                "encrypted base: {} view entries linearized from {} decrypted oplogs",
                all.len(),
                fh.len()
            );

            // a wrong key: a typed refusal, and what it decrypts is a typed error of the engine
            let mut wrong = ek;
            wrong[0] ^= 1;
            let r = read_fast_forward_encrypted(
                &store,
                bootstrap,
                Some(wrong),
                &["view"],
                Duration::from_secs(60),
            )
            .await;
            assert!(
                matches!(
                    r,
                    Err(FastForwardReadError::Refused(
                        FastForwardError::WrongEncryptionKey(_)
                    ))
                ),
                "{r:?}"
            );
            let garbage = {
                let mut s = store.lock().await;
                let h = s
                    .get(GetOptions::from_key(bootstrap).with_encryption_key(wrong))
                    .await
                    .unwrap();
                s.core(&h).unwrap().get(0).await.unwrap().expect("held")
            };
            let mut fresh = Autobase::new(bootstrap, chat_apply);
            assert!(fresh.handle_block(&bootstrap, 0, &garbage).is_err());
        }
        conn.abort();
        drop(peer);
    });
}

/// A hyperpunch indexer creates the base: the bootstrap appends `HP_ENTRIES` values one at a
/// time, writes the system core (a hyperbee) and the view as hypercores with the keys JS derives,
/// signs them and puts its checkpoints and the system key in its oplog entries
/// (`hyperpunch::autobase_index`), and serves its corestore over TCP. A new JS reader (fast-forward
/// on, its default) joins and reaches the same view with the same view and system keys (whether
/// it fast-forwards or first linearizes the whole oplog depends on timing, so that is only
/// printed). Then a new hyperpunch reader fast-forwards from the same cores
/// (`read_fast_forward`) to every indexed entry.
#[test]
fn readers_fast_forward_to_a_hyperpunch_indexer() {
    hyperpunch_indexer_case(None, false);
}

/// [`readers_fast_forward_to_a_hyperpunch_indexer`] with a hyperbee view: the hyperpunch
/// bootstrap's apply puts, deletes and batches on a bee view (`Views::bee`), its indexer writes
/// and signs the bee's blocks as the view core. A new JS reader whose `open` is
/// `new Hyperbee(store.get('view'))` (fast-forwarding to the signed cores, or linearizing the
/// oplog with its own bee) ends with the same view core, block for block, the same view and
/// system keys, and its bee reads every entry we read, now and at the signed length.
#[test]
fn a_js_reader_reads_a_bee_view_a_hyperpunch_indexer_signed() {
    hyperpunch_indexer_case(None, true);
}

/// The same base created encrypted (JS `encryptionKey`): the hyperpunch bootstrap's oplog, system
/// core and view are written encrypted with JS's keys, and their keys derived with the
/// encryption key in their namespaces. A new JS reader given the key ends with the same view,
/// view and system keys, and stores the first view and system blocks byte for byte as we do
/// (whether it fast-forwarded to our cores or linearized our oplog, its indexed blocks must be
/// those our signatures cover); a new hyperpunch reader given the key fast-forwards to every
/// indexed entry.
#[test]
fn readers_of_an_encrypted_base_a_hyperpunch_indexer_created() {
    hyperpunch_indexer_case(Some([0x7c; 32]), false);
}

/// The `i`th value of the bee case of [`hyperpunch_indexer_case`]: puts, deletes (of keys put
/// before, and absent ones: no block) and batches on a few hundred keys.
fn bee_op(i: u64) -> String {
    match i % 5 {
        0 | 1 => format!("put:k{:03}=v{i}", (i * 37) % 211),
        2 => format!("del:k{:03}", (i * 11) % 211),
        3 => format!(
            "batch:put:b{i}=x;put:k{:03}=y{i};del:b{}",
            (i * 3) % 211,
            i.saturating_sub(5)
        ),
        _ => format!("put:k{:03}=w{i}", i % 211),
    }
}

fn hyperpunch_indexer_case(encryption_key: Option<[u8; 32]>, bee: bool) {
    use hyperpunch::autobase_index::IndexerCores;
    use hyperpunch::core::corestore::{Corestore, GetOptions, PrimaryKey};
    use hyperpunch::core::crypto::KeyPair;
    use hyperpunch::core::encoding::Encode;
    use hyperpunch::core::storage::MemoryStorage;
    use hyperpunch::replicate::{replicate, SharedCorestore};
    use hyperpunch_tests::autobase_js::fast_forward_over_tcp_encrypted;
    use hyperpunch_tests::node_peer::NodePeer;

    const HP_ENTRIES: u64 = 1000;
    let _serial = FAST_FORWARD.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut store = Corestore::open(MemoryStorage::new(), PrimaryKey::Given([0x61; 32]))
            .await
            .unwrap();
        let local_opts = match encryption_key {
            Some(ek) => GetOptions::named("local").with_encryption_key(ek),
            None => GetOptions::named("local"),
        };
        let local_h = store.get(local_opts).await.unwrap();
        let local = *local_h.key();
        let (kp, entropy) = {
            let c = store.core(&local_h).unwrap();
            (
                c.key_pair().unwrap().clone(),
                c.manifest().unwrap().signers[0].namespace,
            )
        };
        let (store, _events) = SharedCorestore::with_events(store);
        let apply: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) =
            if bee { bee_apply } else { chat_apply };
        let mut base = Autobase::new(local, apply);
        base.record_system();
        let view = base.open_view("view");
        let mut cores = IndexerCores::new_encrypted(local, kp, entropy, &["view"], encryption_key)
            .await
            .unwrap();
        for i in 0..HP_ENTRIES {
            let mut msgs = base
                .append(&local, vec![if bee { bee_op(i) } else { format!("hp {i}") }.into_bytes()])
                .expect("writable");
            base.update();
            let mut s = store.lock().await;
            let now = store.now();
            cores.sync(&mut s, now, &mut base).await.unwrap();
            let len = s.core(&local_h).unwrap().length();
            cores.stamp(&mut msgs, len);
            let blocks: Vec<Vec<u8>> = msgs.iter().map(Encode::to_bytes).collect();
            let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
            s.append(now, &local_h, &refs).await.unwrap();
        }
        // a bee view: a header and a block per put, per delete of a key present, per batch entry
        let view_len = base.views().len(view) as u64;
        assert_eq!(base.indexed_view_lengths()[view] as u64, view_len);
        if !bee {
            assert_eq!(view_len, HP_ENTRIES);
        }
        let want: Vec<String> = base.views().blocks(view).iter().map(hex::encode).collect();
        let system_key = cores.system_key();
        let view_key = cores.view_keys()[0];
        let signed = cores.signed_length();
        assert_eq!(signed, base.indexed_system().length, "signed what is indexed");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn({
            let store = store.clone();
            async move {
                let mut n = 0u8;
                while let Ok((socket, _)) = listener.accept().await {
                    n += 1;
                    let store = store.clone();
                    tokio::spawn(async move {
                        let _ = replicate(socket, false, KeyPair::from_seed(&[0x62 + n; 32]), &store)
                            .await;
                    });
                }
            }
        });

        // a new JS reader
        let mut config = json!({ "port": port, "bootstrap": hex::encode(local), "expect": view_len, "deadline": 400_000, "bee": bee });
        // our first view and system blocks as stored
        let mut raw0 = None;
        if let Some(ek) = encryption_key {
            config["encryptionKey"] = json!(hex::encode(ek));
            let mut s = store.lock().await;
            let vh = s.get(GetOptions::from_key(view_key)).await.unwrap();
            let sh = s.get(GetOptions::from_key(system_key)).await.unwrap();
            let v = s.core(&vh).unwrap();
            let (v0, v0_plain) = (v.get_stored(0).await.unwrap().unwrap(), v.get(0).await.unwrap().unwrap());
            assert_ne!(&v0[8..], &v0_plain[..], "the view is stored encrypted");
            let sys0 = s.core(&sh).unwrap().get_stored(0).await.unwrap().unwrap();
            raw0 = Some((hex::encode(v0), hex::encode(sys0)));
        }
        let mut peer = tokio::task::spawn_blocking(move || {
            let mut peer = NodePeer::spawn("autobase-reader.js", &config).expect("spawn node");
            let done = peer.next_event("done", Duration::from_secs(300));
            (peer.stderr(), done)
        });
        let (stderr, done) = (&mut peer).await.unwrap();
        let done = done.unwrap_or_else(|e| panic!("{e}\n{stderr}"));
        let ffs = done["fastForwards"].as_array().unwrap();
        assert_eq!(done["systemKey"], hex::encode(system_key), "system key");
        assert_eq!(done["viewKey"], hex::encode(view_key), "view key");
        assert_eq!(done["view"], json!(want), "the view");
        if bee {
            use hyperpunch::core::hyperbee::{RangeOptions, Utf8};
            let entries = |r: hyperpunch::core::autobase::BeeReader<Utf8, Utf8>| {
                let all = r.range(RangeOptions::default()).unwrap();
                json!(all.into_iter().map(|e| json!([e.key, e.value])).collect::<Vec<_>>())
            };
            let ours = entries(base.views().read_bee(view).with_codecs(Utf8, Utf8));
            assert!(ours.as_array().unwrap().len() > 100);
            assert_eq!(done["bee"]["all"], ours, "the JS reader's bee");
            let js_signed = done["bee"]["signedLength"].as_u64().unwrap() as usize;
            let at = base.views().read_bee_at(view, js_signed).with_codecs(Utf8, Utf8);
            assert_eq!(done["bee"]["signed"], entries(at), "the JS reader's bee at its signed length {js_signed}");
        }
        if let Some((v0, s0)) = &raw0 {
            assert_eq!(done["viewRaw0"].as_str(), Some(v0.as_str()), "view block 0 as JS stores it");
            assert_eq!(done["systemRaw0"].as_str(), Some(s0.as_str()), "system block 0 as JS stores it");
        }
        let downloaded = done["oplogDownloaded"].as_u64().unwrap();
        eprintln!(
            "JS reader: fast-forwards {ffs:?}, {downloaded} oplog blocks of {} downloaded, {} ms",
            done["oplogLength"], done["ms"]
        );
        // JS downloads the oplog from its start while its fast-forward gets ready: whether it
        // fast-forwards at all (under load it may linearize everything first), to which
        // checkpoint, and how much it downloads depend on timing, so they are not asserted;
        // whatever it fast-forwarded to was signed
        for f in ffs {
            let to = f["to"].as_u64().unwrap_or(u64::MAX);
            assert!(to <= signed, "fast-forwarded past the signed length {signed}: {ffs:?}");
        }

        // a new hyperpunch reader
        let ff = fast_forward_over_tcp_encrypted(local, encryption_key, port, &["view"]).await;
        assert_eq!(ff.system_key, system_key);
        assert_eq!(ff.views[0].1, view_key);
        assert_eq!(ff.views[0].2, view_len, "fast-forwarded to every indexed entry");
        let mut rbase = Autobase::new(local, apply);
        rbase.fast_forward(ff.system_length, &ff.info, &ff.members, &ff.view_lengths());
        let rview = rbase.open_view("view");
        assert_eq!(rbase.views().start(rview) as u64, view_len);
        assert_eq!(rbase.oplog_start(&local), HP_ENTRIES);
        server.abort();
    });
}

/// An optimistic hyperpunch non-writer, live: a JS bootstrap of an optimistic base
/// (`autobase-peer.js` with `optimistic`: JS `optimistic: true`) serves its corestore on one TCP
/// connection and never adds us. hyperpunch linearizes the JS oplog, is not writable (a plain
/// append is refused), and appends optimistically (`Autobase::append_optimistic`): `hp nope`,
/// which the apply does not ack, then `ok hp 1` and `ok hp 2`, which it acks (`host.ackWriter`).
/// JS, told our key (`hintWakeup`), applies them: both end with the same view (the two `ok`
/// values, not the other), all indexed, our member record at length 3 and still removed (acked,
/// not added), and the system core a hyperpunch indexer would write from what we applied is the
/// one JS's bootstrap wrote, byte for byte, with the same key.
#[test]
fn rust_optimistic_non_writer_is_acked_by_js() {
    use hyperpunch::core::corestore::{Corestore, GetOptions, PrimaryKey};
    use hyperpunch::core::crypto::KeyPair;
    use hyperpunch::core::encoding::Encode;
    use hyperpunch::core::storage::MemoryStorage;
    use hyperpunch::replicate::{replicate, SharedCorestore};
    use hyperpunch_tests::node_peer::NodePeer;
    use std::collections::HashMap;
    use std::time::Instant;

    let step = Duration::from_secs(60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut store = Corestore::open(MemoryStorage::new(), PrimaryKey::Given([0x35; 32]))
            .await
            .unwrap();
        let local = store.get(GetOptions::named("local")).await.unwrap();
        let local_key = *local.key();
        let config = json!({ "writer": hex::encode(local_key), "values": 4, "expect": 2, "optimistic": true, "deadline": 110000 });
        let mut peer = NodePeer::spawn("autobase-peer.js", &config).expect("spawn node");
        let bootstrap =
            key(peer.next_event("ready", step).unwrap()["bootstrap"].as_str().unwrap());
        let port = peer.next_event("listening", step).unwrap()["port"]
            .as_u64()
            .unwrap() as u16;
        let boot = store.get(GetOptions::from_key(bootstrap)).await.unwrap();
        store
            .replicator_mut(&boot)
            .unwrap()
            .download(0, 0, None)
            .await
            .unwrap();
        let mut handles = HashMap::from([(bootstrap, boot)]);
        let (store, mut events) = SharedCorestore::with_events(store);
        let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let conn = tokio::spawn({
            let store = store.clone();
            async move { replicate(socket, true, KeyPair::from_seed(&[0x36; 32]), &store).await }
        });

        let mut base = Autobase::new(bootstrap, optimistic_apply);
        base.set_optimistic(true);
        base.record_system();
        let view = base.open_view("view");
        let mut flushes = Vec::new();
        let writes = ["hp nope", "ok hp 1", "ok hp 2"];
        let mut written = 0;
        let mut refused_plain = false;
        let mut js_done: Option<Value> = None;
        let deadline = Instant::now() + Duration::from_secs(100);
        loop {
            assert!(
                Instant::now() < deadline,
                "no convergence; view {:?} indexed {} js {js_done:?}\n{}",
                base.views().blocks(view).iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect::<Vec<_>>(),
                base.indexed_view_lengths()[view],
                peer.stderr()
            );
            {
                let mut s = store.lock().await;
                let now = store.now();
                for (k, h) in &handles {
                    let core = s.core(h).unwrap();
                    let have = core.contiguous_length();
                    while base.oplog_len(k) < have {
                        let seq = base.oplog_len(k);
                        let block = core.get(seq).await.unwrap().expect("contiguous block");
                        base.handle_block(k, seq, &block).unwrap();
                    }
                }
                base.update();
                for (k, _) in base.wanted() {
                    if k == local_key {
                        continue; // our own blocks are in the engine already
                    }
                    if let std::collections::hash_map::Entry::Vacant(e) = handles.entry(k) {
                        let h = s.get(GetOptions::from_key(k)).await.unwrap();
                        s.replicator_mut(&h).unwrap().download(now, 0, None).await.unwrap();
                        e.insert(h);
                    }
                }
                flushes.extend(base.take_indexed_flushes());
                // write once the JS values before the connection are in
                if written < writes.len() && base.views().len(view) >= 2 {
                    assert!(!base.is_writable(&local_key), "never added");
                    if !refused_plain {
                        assert!(base.append(&local_key, vec![b"hp plain".to_vec()]).is_none());
                        refused_plain = true;
                    }
                    let v = writes[written].as_bytes().to_vec();
                    if let Some(msgs) = base.append_optimistic(&local_key, v) {
                        assert!(msgs.iter().all(|m| m.optimistic));
                        let blocks: Vec<Vec<u8>> = msgs.iter().map(Encode::to_bytes).collect();
                        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
                        s.append(now, &local, &refs).await.unwrap();
                        base.update();
                        written += 1;
                    }
                }
            }
            if js_done.is_none() {
                if let Ok(v) = peer.next(Duration::from_millis(1)) {
                    assert!(!matches!(v["event"].as_str(), Some("failed" | "deadline")), "{v}");
                    if v["event"] == "done" {
                        js_done = Some(v);
                    }
                }
            }
            if let Some(done) = &js_done {
                let want: Vec<String> = done["view"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                let got: Vec<String> = base.views().blocks(view).iter().map(hex::encode).collect();
                if got == want && base.indexed_view_lengths()[view] == want.len() {
                    assert_eq!(done["viewIndexedLength"].as_u64().unwrap() as usize, want.len());
                    let texts: Vec<String> = base
                        .views()
                        .blocks(view)
                        .iter()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .collect();
                    assert_eq!(
                        texts.iter().filter(|t| t.starts_with("ok hp")).count(),
                        2,
                        "{texts:?}"
                    );
                    assert!(!texts.iter().any(|t| t.contains("nope") || t.contains("plain")), "{texts:?}");
                    assert_eq!(texts.iter().filter(|t| t.starts_with("js ")).count(), 4, "{texts:?}");
                    // acked, not added: a record at our length, still removed, one member
                    assert_eq!(done["writerLength"], 3, "{done}");
                    assert_eq!(done["writerIsRemoved"], true, "{done}");
                    assert_eq!(done["members"], 1, "{done}");
                    let m = base.indexed_system().get(&local_key).expect("our record");
                    assert!(m.is_removed && !m.is_indexer && m.length == 3, "{m:?}");
                    assert_eq!(base.indexed_system().members, 1);
                    // the system JS wrote is the one we applied
                    flushes.extend(base.take_indexed_flushes());
                    let n = base.indexed_system().length as usize;
                    let mut js = done.clone();
                    js["bootstrap"] = json!(hex::encode(bootstrap));
                    let view_blocks: Vec<Vec<u8>> = base.views().blocks(view).to_vec();
                    // its own runtime on its own thread: this one is inside a runtime
                    let (system_key, view_key, blocks) = std::thread::scope(|sc| {
                        sc.spawn(|| system_core_of(&js, &flushes, &view_blocks))
                            .join()
                            .unwrap()
                    });
                    assert_eq!(blocks.len(), n);
                    let js_blocks = done["systemBlocks"].as_array().unwrap();
                    assert!(js_blocks.len() >= n, "JS system core {} < {n}", js_blocks.len());
                    for (i, b) in blocks.iter().enumerate() {
                        assert_eq!(b, &js_blocks[i], "system block {i}");
                    }
                    assert_eq!(hex::encode(view_key), done["viewKey"], "view key");
                    assert_eq!(hex::encode(system_key), done["systemKey"], "system key");
                    eprintln!("JS acked 2 of our 3 optimistic values; {n} indexed system blocks equal JS's");
                    break;
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), events.recv()).await;
        }
        conn.abort();
        let _ = peer.next_event("closed", step);
    });
}
