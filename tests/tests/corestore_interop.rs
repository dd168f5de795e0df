//! corestore, live against JS corestore 7.12.5 (`tests/interop/corestore-keys.js`,
//! `tests/interop/corestore-peer.js`):
//!
//! * the keys of named cores (several names, nested namespaces, manifest versions 1 and 2)
//!   are the ones JS derives from the same primary key;
//! * a JS corestore's named cores replicate into a hyperpunch [`Corestore`] over ONE TCP
//!   connection (secret-stream + one protomux, the tokio driver), and the reverse; in both
//!   directions a core the receiving store has in its storage but not open is opened on demand
//!   when the remote opens its channel, and a core the remote does not have is rejected while
//!   the others keep replicating.
//!
//! Every step has a deadline; the node process is killed when a test ends.

use std::time::Duration;

use hyperpunch::core::corestore::{
    named_core, Corestore, GetOptions, Namespace, PrimaryKey, StoreOptions,
};
use hyperpunch::core::crypto::{discovery_key, KeyPair};
use hyperpunch::core::replication::{Event, HubEvent, Options};
use hyperpunch::core::storage::MemoryStorage;

use hyperpunch::replicate::{replicate, SharedCorestore};
use hyperpunch_tests::node::run_script;
use hyperpunch_tests::node_peer::NodePeer;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

const PEER: &str = "corestore-peer.js";
const STEP: Duration = Duration::from_secs(60);

/// Block `k` of the core named `name`, as the JS peer builds it.
fn block(name: &str, k: u64) -> Vec<u8> {
    let mut b = format!("{name} block {k} ").into_bytes();
    b.extend(std::iter::repeat_n(
        (k & 255) as u8,
        ((k * 37) % 3000) as usize,
    ));
    b
}

fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().expect("hex string"))
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Fails on any sign of trouble in the hub's events.
fn check_event(ev: &HubEvent) {
    assert!(
        !matches!(
            ev,
            HubEvent::Core {
                event: Event::InvalidData { .. }
                    | Event::InvalidRequest { .. }
                    | Event::Disconnect { .. },
                ..
            } | HubEvent::StreamClosed { .. }
                | HubEvent::CoreOpenFailed { .. }
        ),
        "{ev:?}"
    );
}

/// What node printed until it said `closed`; none of it may be a complaint.
fn drain_until_closed(peer: &mut NodePeer) -> Vec<Value> {
    let mut lines = Vec::new();
    loop {
        let v = peer.next(STEP).unwrap();
        let closed = v["event"] == "closed";
        lines.push(v);
        if closed {
            break;
        }
    }
    for v in &lines {
        assert!(
            !matches!(v["event"].as_str(), Some("failed" | "deadline")),
            "node complained: {v}; all: {lines:?}"
        );
        assert!(v["error"].is_null(), "node's stream failed: {v}");
    }
    lines
}

#[test]
fn named_core_keys_match_js() {
    let primary = [0x5a; 32];
    let names = [
        "db",
        "blobs",
        "local",
        "ünïcode/名前",
        "a much longer name with spaces",
    ];
    let paths: [&[&str]; 4] = [&[], &["app"], &["app", "users"], &["x", "y", "z"]];
    let mut cases = Vec::new();
    for path in paths {
        for name in names {
            cases.push((path, name));
        }
    }
    for version in [1u64, 2] {
        let input = json!({
            "primaryKey": hex::encode(primary),
            "manifestVersion": version,
            "cases": cases.iter().map(|(p, n)| json!({"namespaces": p, "name": n})).collect::<Vec<_>>(),
        });
        let out = run_script("corestore-keys.js", &input, STEP).expect("node corestore-keys.js");
        let js = out["cases"].as_array().unwrap();
        assert_eq!(js.len(), cases.len());
        // A Rust store on the same primary key gets the same cores.
        let mut opts = StoreOptions::new(PrimaryKey::Given(primary));
        opts.manifest_version = version;
        let mut store =
            futures_executor::block_on(Corestore::open_with(MemoryStorage::new(), opts)).unwrap();
        for ((path, name), js) in cases.iter().zip(js) {
            let ns = path.iter().fold(Namespace::ROOT, |ns, p| ns.child(p));
            let what = format!("{path:?} {name:?} v{version}");
            assert_eq!(hex::encode(ns.0), js["ns"], "namespace {what}");
            let c = named_core(&primary, &ns, name.as_bytes(), version).unwrap();
            assert_eq!(
                hex::encode(c.key_pair.public_key),
                js["publicKey"],
                "{what}"
            );
            assert_eq!(
                hex::encode(store.create_key_pair(&ns, name).public_key),
                js["keyPairPublicKey"],
                "createKeyPair {what}"
            );
            assert_eq!(hex::encode(c.key), js["key"], "key {what}");
            assert_eq!(hex::encode(c.discovery_key), js["discoveryKey"], "{what}");
            assert_eq!(c.manifest.version, js["manifestVersion"], "{what}");
            let h = futures_executor::block_on(store.get(GetOptions::named(name).in_namespace(ns)))
                .unwrap();
            assert_eq!(h.key(), &c.key, "store.get {what}");
        }
    }
}

/// JS writes four named cores; a hyperpunch store reads three of them by key over one TCP
/// connection, has the fourth in its storage without opening it (JS opens its channel: the
/// store opens it on demand and is upgraded to JS's length), and wants a core JS does not
/// have (JS rejects it; the rest goes on).
#[test]
fn js_store_replicates_into_a_rust_store_over_one_connection() {
    let counts = [("db", 300u64), ("blobs", 120), ("local", 7), ("extra", 12)];
    let config = json!({
        "mode": "server", "streamSeed": hex::encode([0x41; 32]), "deadline": 55000,
        "primaryKey": hex::encode([0x42; 32]),
        "write": counts.iter().map(|(n, c)| json!({"name": n, "count": c})).collect::<Vec<_>>(),
    });
    let mut peer = NodePeer::spawn(PEER, &config).expect("spawn node");
    let ready = peer.next_event("ready", STEP).unwrap();
    let cores = ready["cores"].as_array().unwrap().clone();
    let port = peer.next_event("listening", STEP).unwrap()["port"]
        .as_u64()
        .unwrap() as u16;
    // JS derived the keys we derive.
    for (core, (name, count)) in cores.iter().zip(counts) {
        let c = named_core(&[0x42; 32], &Namespace::ROOT, name.as_bytes(), 1).unwrap();
        assert_eq!(hex32(&core["key"]), c.key, "{name}");
        assert_eq!(core["length"], count);
    }

    rt().block_on(async {
        let mut store = Corestore::open(MemoryStorage::new(), PrimaryKey::StoredOrNew([9; 32]))
            .await
            .unwrap();
        // "extra": created by key earlier, closed: stored, not open.
        let extra_key = hex32(&cores[3]["key"]);
        let h = store.get(GetOptions::from_key(extra_key)).await.unwrap();
        store.close_core(h).unwrap();
        assert!(!store.is_open(&discovery_key(&extra_key)));
        let mut wanted = Vec::new();
        for (core, (name, count)) in cores.iter().zip(counts).take(3) {
            let h = store
                .get(GetOptions::from_key(hex32(&core["key"])))
                .await
                .unwrap();
            store
                .replicator_mut(&h)
                .unwrap()
                .download(0, 0, Some(count))
                .await
                .unwrap();
            wanted.push((h, name, count));
        }
        let nobody = store.get(GetOptions::from_key([0x77; 32])).await.unwrap();
        let (store, mut events) = SharedCorestore::with_events(store);
        let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let conn = tokio::spawn({
            let store = store.clone();
            async move { replicate(socket, true, KeyPair::from_seed(&[0x43; 32]), &store).await }
        });
        let extra_dk = discovery_key(&extra_key);
        let done = |s: &Corestore<MemoryStorage>| {
            wanted
                .iter()
                .all(|(h, _, n)| s.core(h).unwrap().contiguous_length() == *n)
                && s.open_core(&extra_dk).is_some_and(|c| c.length() == 12)
        };
        let work = async {
            loop {
                if done(&*store.lock().await) {
                    break;
                }
                let ev = events.recv().await.expect("hub events");
                check_event(&ev);
            }
        };
        if tokio::time::timeout(STEP, work).await.is_err() {
            panic!("timed out; node stderr:\n{}", peer.stderr());
        }
        let g = store.lock().await;
        for (h, name, n) in &wanted {
            let core = g.core(h).unwrap();
            core.verify_all().await.unwrap();
            for k in 0..*n {
                assert_eq!(
                    core.get(k).await.unwrap(),
                    Some(block(name, k)),
                    "{name} {k}"
                );
            }
        }
        // Opened on demand, with no session, and upgraded by JS.
        assert!(g.is_open(&extra_dk));
        assert_eq!(g.open_core(&extra_dk).unwrap().key(), &extra_key);
        // JS rejected the core it does not have.
        assert_eq!(g.replicator(&nobody).unwrap().peers().count(), 0);
        drop(g);
        store.end_all().await;
        tokio::time::timeout(STEP, conn)
            .await
            .expect("clean close in time")
            .unwrap()
            .expect("clean close");
        // The connection went: the core opened for it closed again, and what it got is stored.
        let mut g = store.lock().await;
        assert!(!g.is_open(&extra_dk));
        let h = g
            .get(GetOptions::from_discovery_key(extra_dk))
            .await
            .unwrap();
        assert_eq!(g.core(&h).unwrap().length(), 12);
    });
    drain_until_closed(&mut peer);
    assert_eq!(peer.wait(STEP), Some(true));
}

/// A hyperpunch store writes four named cores and is reopened (none open): JS reads three by
/// key over one TCP connection (the store opens them on demand), JS has the fourth in its
/// storage but not open (the store has it open and opens its channel: JS opens it on demand
/// and gets its length), and JS wants a core the store does not have (rejected).
#[test]
fn rust_store_replicates_into_a_js_store_over_one_connection() {
    let counts = [("db", 250u64), ("blobs", 90), ("local", 3), ("extra", 12)];
    let storage = MemoryStorage::new();
    let rt = rt();
    let keys: Vec<[u8; 32]> = rt.block_on(async {
        let mut store = Corestore::open(storage.clone(), PrimaryKey::Given([0x51; 32]))
            .await
            .unwrap();
        let mut keys = Vec::new();
        for (name, count) in counts {
            let h = store.get(GetOptions::named(name)).await.unwrap();
            let blocks: Vec<Vec<u8>> = (0..count).map(|k| block(name, k)).collect();
            let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
            store.append(0, &h, &refs).await.unwrap();
            keys.push(*h.key());
        }
        keys
    });
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let config = json!({
        "mode": "client", "port": port, "streamSeed": hex::encode([0x52; 32]), "deadline": 55000,
        "read": counts.iter().zip(&keys).take(3)
            .map(|((_, c), k)| json!({"key": hex::encode(k), "count": c})).collect::<Vec<_>>(),
        "stored": [json!({"key": hex::encode(keys[3]), "count": 12})],
        "unknown": [hex::encode([0x78; 32])],
    });
    let mut peer = NodePeer::spawn(PEER, &config).expect("spawn node");
    peer.next_event("ready", STEP).unwrap();

    rt.block_on(async {
        let mut store = Corestore::open_with(storage.clone(), {
            let mut o = StoreOptions::new(PrimaryKey::Stored);
            o.replicator = Options::default();
            o
        })
        .await
        .unwrap();
        assert_eq!(store.open_cores().count(), 0);
        // Only "extra" is open here: its channel is ours to open.
        let extra = store.get(GetOptions::named("extra")).await.unwrap();
        let (store, mut events) = SharedCorestore::with_events(store);
        let (socket, _) = tokio::time::timeout(STEP, listener.accept())
            .await
            .expect("node connected in time")
            .unwrap();
        let conn = tokio::spawn({
            let store = store.clone();
            async move { replicate(socket, false, KeyPair::from_seed(&[0x53; 32]), &store).await }
        });
        let watch = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(ev) = events.recv().await {
                check_event(&ev);
                seen.push(ev);
            }
            seen
        });
        tokio::time::timeout(STEP, conn)
            .await
            .expect("JS finished and closed in time")
            .unwrap()
            .expect("clean close");
        let mut g = store.lock().await;
        // The three cores JS read were opened for it alone: closed with the connection.
        assert_eq!(
            g.open_cores().collect::<Vec<_>>(),
            vec![extra.discovery_key()]
        );
        g.close();
        drop(g);
        drop(store);
        let seen = watch.await.unwrap();
        // Opened for the remote: a channel for each core JS read, and for "extra".
        for key in &keys {
            let dk = discovery_key(key);
            assert!(
                seen.iter().any(|e| matches!(
                    e,
                    HubEvent::ChannelOpened { discovery_key, .. } if *discovery_key == dk
                )),
                "no channel for {}",
                hex::encode(key)
            );
        }
    });
    let done = peer.next_event("done", STEP).unwrap();
    let js_cores = done["cores"].as_array().unwrap();
    assert_eq!(js_cores.len(), 3);
    for (js, ((name, count), key)) in js_cores.iter().zip(counts.iter().zip(&keys)) {
        assert_eq!(hex32(&js["key"]), *key);
        assert_eq!(js["length"], *count);
        let blocks = js["blocks"].as_array().unwrap();
        assert_eq!(blocks.len() as u64, *count);
        for (k, b) in blocks.iter().enumerate() {
            assert_eq!(
                hex::decode(b.as_str().unwrap()).unwrap(),
                block(name, k as u64),
                "{name} {k}"
            );
        }
    }
    assert_eq!(
        done["stored"],
        json!([{"key": hex::encode(keys[3]), "length": 12}]),
        "JS opened the stored core on demand and got its length"
    );
    assert_eq!(
        done["unknown"],
        json!([{"key": hex::encode([0x78; 32]), "peers": 0}]),
        "we rejected the core we do not have"
    );
    drain_until_closed(&mut peer);
    assert_eq!(peer.wait(STEP), Some(true));
}
