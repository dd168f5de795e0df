//! corestore `watch`, `FileStorage::suspend`/`resume` and hyperdrive `monitor`, live against
//! the pinned JS (`tests/interop/store-features-peer.js`, `tests/interop/corestore-peer.js`):
//!
//! * the same opens report the same cores, in the same order, to the same watchers as JS
//!   corestore 7.12.5's `store.watch(fn)`;
//! * a monitor of one file of a drive counts the same blocks and bytes as JS hyperdrive
//!   13.3.4's monitor on the other side: hyperpunch downloading from JS (our download stats
//!   against JS's upload stats) and JS downloading from hyperpunch (the reverse);
//! * a store on a suspended and resumed `FileStorage` goes on: sessions opened before write and
//!   read, and a JS peer replicating over TCP gets the blocks written after the resume.
//!
//! Every step has a deadline; node processes are killed when a test ends.

use std::time::Duration;

use hyperpunch::core::corestore::{Corestore, GetOptions, Namespace, PrimaryKey};
use hyperpunch::core::crypto::KeyPair;
use hyperpunch::core::hyperdrive::PutOptions;
use hyperpunch::core::storage::MemoryStorage;
use hyperpunch::drive::{open_local, open_remote};
use hyperpunch::drive_monitor::DriveMonitor;
use hyperpunch::replicate::{replicate, SharedCorestore};
use hyperpunch::FileStorage;
use hyperpunch_tests::drive_ops::gen;
use hyperpunch_tests::node_peer::NodePeer;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

const PEER: &str = "store-features-peer.js";
const STEP: Duration = Duration::from_secs(60);
/// /big: five 64 KiB blobs blocks and a short one.
const BIG: usize = 5 * 65536 + 1234;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().expect("hex string"))
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

#[test]
fn watch_reports_what_js_reports() {
    let primary = [3u8; 32];
    let js = NodePeer::spawn(
        PEER,
        &json!({"mode": "watch", "primaryKey": hex::encode(primary)}),
    )
    .expect("spawn node")
    .next_event("watched", STEP)
    .unwrap();
    rt().block_on(async {
        let store = SharedCorestore::new(
            Corestore::open(MemoryStorage::new(), PrimaryKey::Given(primary))
                .await
                .unwrap(),
        );
        let get = |o: GetOptions| {
            let store = store.clone();
            async move { store.lock().await.get(o).await.unwrap() }
        };
        let _before = get(GetOptions::named("before")).await;
        let mut first = store.watch().await;
        let a = get(GetOptions::named("a")).await;
        let _a2 = get(GetOptions::named("a")).await;
        let _a3 = store.lock().await.session(&a).unwrap();
        let _before2 = get(GetOptions::named("before")).await;
        let _b = get(GetOptions::named("a").in_namespace(Namespace::ROOT.child("ns"))).await;
        let mut second = store.watch().await;
        let _r = get(GetOptions::from_key([9; 32])).await;
        let mut seen_first = Vec::new();
        while let Some(c) = first.try_next().await {
            seen_first.push(json!(hex::encode(c.key)));
        }
        first.unwatch().await;
        let _c = get(GetOptions::named("c")).await;
        let mut seen_second = Vec::new();
        for _ in 0..2 {
            let c = tokio::time::timeout(STEP, second.next())
                .await
                .expect("reported in time")
                .expect("store open");
            seen_second.push(json!(hex::encode(c.key)));
        }
        assert_eq!(second.try_next().await, None);
        assert_eq!(json!(seen_first), js["first"], "the first watcher");
        assert_eq!(json!(seen_second), js["second"], "the second watcher");
        // A closed store ends a waiting watcher.
        let waiting = tokio::spawn(async move { second.next().await });
        tokio::task::yield_now().await;
        store.lock().await.close();
        assert_eq!(
            tokio::time::timeout(STEP, waiting).await.unwrap().unwrap(),
            None
        );
    });
}

fn check_stats(ours: &hyperpunch::core::hyperdrive::monitor::TransferStats, js: &Value) {
    assert_eq!(ours.blocks, js["blocks"].as_u64().unwrap(), "blocks: {js}");
    assert_eq!(
        ours.monitoring_bytes,
        js["monitoringBytes"].as_u64().unwrap(),
        "bytes: {js}"
    );
    assert_eq!(ours.total_bytes, js["totalBytes"].as_u64().unwrap());
    assert_eq!(ours.target_blocks, js["targetBlocks"].as_u64().unwrap());
    assert_eq!(ours.target_bytes, js["targetBytes"].as_u64().unwrap());
    assert_eq!(ours.percentage, js["percentage"].as_f64().unwrap());
}

/// JS serves a drive and monitors /big; hyperpunch reads /big with a monitor of it: our
/// download totals are the whole file and what JS's monitor says it uploaded.
#[test]
fn monitor_counts_a_download_from_js_as_js_counts_the_upload() {
    let config = json!({
        "mode": "monitor-server", "primaryKey": hex::encode([0x21; 32]),
        "streamSeed": hex::encode([0x22; 32]), "bigLen": BIG, "deadline": 55_000,
    });
    let mut peer = NodePeer::spawn(PEER, &config).expect("spawn node");
    let key = hex32(&peer.next_event("ready", STEP).unwrap()["key"]);
    let port = peer.next_event("listening", STEP).unwrap()["port"]
        .as_u64()
        .unwrap() as u16;
    let ours = rt().block_on(async {
        let store = SharedCorestore::new(
            Corestore::open(MemoryStorage::new(), PrimaryKey::Given([0x23; 32]))
                .await
                .unwrap(),
        );
        let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let conn = tokio::spawn({
            let store = store.clone();
            async move { replicate(socket, true, KeyPair::from_seed(&[0x24; 32]), &store).await }
        });
        let (drive, _cores) = open_remote(&store, key, STEP).await.unwrap();
        let mut monitor = DriveMonitor::open(&store, &drive, Some("/big"))
            .await
            .unwrap();
        assert_eq!(monitor.peers(), 1);
        assert_eq!(monitor.download_stats().blocks, 0);
        let big = tokio::time::timeout(STEP, drive.get("/big"))
            .await
            .expect("read in time")
            .unwrap()
            .unwrap();
        assert_eq!(big, gen(BIG, 2));
        assert!(monitor.poll().await, "the download updated the stats");
        let d = monitor.download_stats().clone();
        assert_eq!((d.blocks, d.monitoring_bytes), (6, BIG as u64));
        assert_eq!((d.target_blocks, d.target_bytes), (6, BIG as u64));
        assert_eq!(d.percentage, 100.0);
        assert_eq!(monitor.upload_stats().blocks, 0);
        // Another file's blocks do not count.
        drive.get("/after").await.unwrap().unwrap();
        assert!(!monitor.poll().await);
        store.end_all().await;
        let _ = tokio::time::timeout(STEP, conn).await;
        d
    });
    let js = peer.next_event("stats", STEP).unwrap();
    check_stats(&ours, &js["upload"]);
    assert_eq!(js["download"]["blocks"], 0);
    assert_eq!(
        peer.next_event("closed", STEP).unwrap()["error"],
        Value::Null
    );
}

/// hyperpunch serves the same drive and monitors /big; JS reads /big with its monitor: our
/// upload totals are what JS's monitor says it downloaded, the whole file.
#[test]
fn monitor_counts_an_upload_to_js_as_js_counts_the_download() {
    let rt = rt();
    let (store, drive, _cores) = rt.block_on(async {
        let store = SharedCorestore::new(
            Corestore::open(MemoryStorage::new(), PrimaryKey::Given([0x31; 32]))
                .await
                .unwrap(),
        );
        let (drive, cores) = open_local(&store).await.unwrap();
        for (path, len, seed) in [("/small", 100, 1), ("/big", BIG, 2), ("/after", 1000, 3)] {
            drive
                .put(path, &gen(len, seed), PutOptions::default())
                .await
                .unwrap();
        }
        (store, drive, cores)
    });
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let key = rt.block_on(drive.key());
    let config = json!({
        "mode": "monitor-client", "key": hex::encode(key), "port": port,
        "streamSeed": hex::encode([0x32; 32]), "deadline": 55_000,
    });
    let mut peer = NodePeer::spawn(PEER, &config).expect("spawn node");
    let ours = rt.block_on(async {
        let mut monitor = DriveMonitor::open(&store, &drive, Some("/big"))
            .await
            .unwrap();
        assert_eq!(monitor.peers(), 0);
        let (socket, _) = tokio::time::timeout(STEP, listener.accept())
            .await
            .expect("node connected in time")
            .unwrap();
        let conn = tokio::spawn({
            let store = store.clone();
            async move { replicate(socket, false, KeyPair::from_seed(&[0x33; 32]), &store).await }
        });
        tokio::time::timeout(STEP, conn)
            .await
            .expect("JS read and closed in time")
            .unwrap()
            .expect("clean close");
        monitor.poll().await;
        assert_eq!(monitor.peers(), 0, "the peer left");
        monitor.upload_stats().clone()
    });
    let js = peer.next_event("stats", STEP).unwrap();
    assert_eq!(
        js["bytes"].as_str().unwrap(),
        hex::encode(hyperpunch::core::crypto::leaf_hash(&gen(BIG, 2)))
    );
    assert_eq!((ours.blocks, ours.monitoring_bytes), (6, BIG as u64));
    assert_eq!(ours.percentage, 100.0);
    check_stats(&ours, &js["download"]);
    assert_eq!(js["updates"], 6);
    assert_eq!(js["upload"]["blocks"], 0);
    assert_eq!(
        peer.next_event("closed", STEP).unwrap()["error"],
        Value::Null
    );
}

/// Block `k` of the core named `name`, as `corestore-peer.js` builds it.
fn block(name: &str, k: u64) -> Vec<u8> {
    let mut b = format!("{name} block {k} ").into_bytes();
    b.extend(std::iter::repeat_n(
        (k & 255) as u8,
        ((k * 37) % 3000) as usize,
    ));
    b
}

/// A store on files serves a core to JS over TCP; while JS is connected the storage is
/// suspended (what was written is synced, a read waits) and resumed; the session opened before
/// appends and reads on, and JS, still on the same connection, gets every block, those written
/// after the resume too.
#[test]
fn a_js_peer_keeps_replicating_across_suspend_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let storage = FileStorage::open(dir.path().join("store")).unwrap();
    let (store, log, key) = rt.block_on(async {
        let mut store = Corestore::open(storage.clone(), PrimaryKey::Given([0x41; 32]))
            .await
            .unwrap();
        let log = store.get(GetOptions::named("log")).await.unwrap();
        let first: Vec<Vec<u8>> = (0..40).map(|k| block("log", k)).collect();
        let refs: Vec<&[u8]> = first.iter().map(Vec::as_slice).collect();
        store.append(0, &log, &refs).await.unwrap();
        let key = *log.key();
        (SharedCorestore::new(store), log, key)
    });
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let config = json!({
        "mode": "client", "port": port, "streamSeed": hex::encode([0x42; 32]), "deadline": 55_000,
        "read": [json!({"key": hex::encode(key), "count": 80})],
    });
    let mut peer = NodePeer::spawn("corestore-peer.js", &config).expect("spawn node");
    peer.next_event("ready", STEP).unwrap();
    rt.block_on(async {
        let (socket, _) = tokio::time::timeout(STEP, listener.accept())
            .await
            .expect("node connected in time")
            .unwrap();
        let conn = tokio::spawn({
            let store = store.clone();
            async move { replicate(socket, false, KeyPair::from_seed(&[0x43; 32]), &store).await }
        });
        storage.suspend().unwrap();
        // A read of the store's storage waits while suspended (the replication too).
        let reading = tokio::spawn({
            let store = store.clone();
            async move {
                let g = store.lock().await;
                let log = g.storage().clone();
                drop(g);
                hyperpunch::core::storage::Storage::scan(&log, &[], &[0xff], Some(1))
                    .await
                    .unwrap()
                    .len()
            }
        });
        tokio::task::yield_now().await;
        assert!(!reading.is_finished());
        storage.resume();
        assert_eq!(
            tokio::time::timeout(STEP, reading).await.unwrap().unwrap(),
            1
        );
        // The session opened before the suspend works on.
        let more: Vec<Vec<u8>> = (40..80).map(|k| block("log", k)).collect();
        let refs: Vec<&[u8]> = more.iter().map(Vec::as_slice).collect();
        let mut g = store.lock().await;
        g.append(0, &log, &refs).await.unwrap();
        assert_eq!(g.core(&log).unwrap().length(), 80);
        assert_eq!(
            g.core(&log).unwrap().get(79).await.unwrap(),
            Some(block("log", 79))
        );
        drop(g);
        tokio::time::timeout(STEP, conn)
            .await
            .expect("JS read everything and closed in time")
            .unwrap()
            .expect("clean close");
    });
    let done = peer.next_event("done", STEP).unwrap();
    let core = &done["cores"][0];
    assert_eq!(hex32(&core["key"]), key);
    assert_eq!(core["length"], 80);
    let blocks = core["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 80);
    for (k, b) in blocks.iter().enumerate() {
        assert_eq!(
            hex::decode(b.as_str().unwrap()).unwrap(),
            block("log", k as u64)
        );
    }
    assert_eq!(
        peer.next_event("closed", STEP).unwrap()["error"],
        Value::Null
    );
}
