//! hyperdrive, live against JS hyperdrive 13.3.4 in corestore 7.12.5
//! (`tests/interop/drive-peer.js`), both ways over TCP (secret-stream, one protomux for the
//! store, the db and blobs cores on it):
//!
//! * the same operations on a store with the same primary key give the same drive key, blobs
//!   key, every db block byte for byte, and the same blobs core (length, bytes, tree hash);
//! * a drive JS writes (nested folders, empty files, executables, metadata, symlinks, a write
//!   stream of odd chunks, a 50 MiB file, an overwrite, a delete) is read by hyperpunch over
//!   TCP: first sparsely (one small file fetches its blocks, not the big file's), then in full
//!   (`download("/")`), and listings, readdir, contents and byte ranges equal JS's own;
//! * the reverse: a drive hyperpunch writes is downloaded and read by JS, with the same result;
//! * `truncate(version, { blobs })`: the same writes and truncations (to a version, with an
//!   explicit blobs length, to the current version, to 0) give the same db blocks, blobs and db
//!   lengths, tree hashes and forks as JS; a drive hyperpunch truncated is read by JS as it
//!   reads its own, a drive JS truncated is read by hyperpunch as JS reads it, and a JS reader
//!   that downloaded a drive follows hyperpunch's truncations and later writes live, over the
//!   same connection.
//!
//! Every step has a deadline; the node process is killed when a test ends.

use std::time::Duration;

use hyperpunch::core::corestore::{Corestore, PrimaryKey};
use hyperpunch::core::crypto::KeyPair;
use hyperpunch::core::hyperblobs::BlobCore;
use hyperpunch::core::storage::MemoryStorage;
use hyperpunch::drive::{open_local, open_remote};
use hyperpunch::replicate::{replicate, SharedCorestore};
use hyperpunch_tests::drive_ops::{apply, dump, folders, ranges, truncated_workload, workload};
use hyperpunch_tests::node_peer::NodePeer;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

const PEER: &str = "drive-peer.js";
const STEP: Duration = Duration::from_secs(120);
const BIG_MIB: usize = 50;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn store(primary: [u8; 32]) -> SharedCorestore<MemoryStorage> {
    SharedCorestore::new(
        Corestore::open(MemoryStorage::new(), PrimaryKey::Given(primary))
            .await
            .unwrap(),
    )
}

/// Compare two dumps field by field (a readable message instead of two huge JSON values).
fn assert_same(ours: &Value, js: &Value, what: &str) {
    for field in [
        "key",
        "contentKey",
        "version",
        "blobsLength",
        "blobsByteLength",
        "blobsTreeHash",
        "dbTreeHash",
        "dbFork",
        "blobsFork",
        "readdir",
        "ranges",
        "files",
    ] {
        assert_eq!(ours[field], js[field], "{what}: {field}");
    }
    let (a, b) = (
        ours["list"].as_array().unwrap(),
        js["list"].as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len(), "{what}: list length");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x, y, "{what}: list entry");
    }
    let (a, b) = (
        ours["dbBlocks"].as_array().unwrap(),
        js["dbBlocks"].as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len(), "{what}: db length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x, y, "{what}: db block {i}");
    }
}

/// JS writes the workload with a 50 MiB file and serves it; hyperpunch reads JS's drive over
/// TCP, sparsely first, then all of it.
#[test]
fn js_writes_hyperpunch_reads() {
    let ops = workload(BIG_MIB);
    let primary = [0x61; 32];
    let config = json!({
        "mode": "server", "primaryKey": hex::encode(primary), "streamSeed": hex::encode([0x62; 32]),
        "deadline": 110_000, "ops": ops, "folders": folders(), "ranges": ranges(),
    });
    let mut peer = NodePeer::spawn(PEER, &config).expect("spawn node");
    let ready = peer.next_event("ready", STEP).unwrap();
    let js = peer.next_event("dump", STEP).unwrap();
    let port = peer.next_event("listening", STEP).unwrap()["port"]
        .as_u64()
        .unwrap() as u16;
    let key: [u8; 32] = hex::decode(ready["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();

    rt().block_on(async {
        // JS's drive, over TCP.
        let remote = store([0x63; 32]).await;
        let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let conn = tokio::spawn({
            let remote = remote.clone();
            async move { replicate(socket, true, KeyPair::from_seed(&[0x64; 32]), &remote).await }
        });
        let (drive, _cores) = open_remote(&remote, key, STEP).await.unwrap();
        assert_eq!(drive.key().await, key);
        assert!(!drive.writable().await);
        // Sparse: one small file downloads its blocks and the db path to it, not the big file.
        let readme = drive.get("/readme.md").await.unwrap().unwrap();
        assert_eq!(readme, hyperpunch_tests::drive_ops::gen(150, 7));
        let blobs = drive.blobs().core();
        let total = js["blobsLength"].as_u64().unwrap();
        let mut held = 0;
        for i in 0..total {
            held += u64::from(BlobCore::has(blobs, i, i + 1).await);
        }
        assert!(
            held <= 2,
            "a small read fetched {held} of {total} blobs blocks"
        );
        // Everything.
        let files = tokio::time::timeout(STEP, drive.download("/"))
            .await
            .expect("download in time")
            .unwrap();
        assert_eq!(files, js["list"].as_array().unwrap().len() as u64);
        let got = dump(&remote, &drive, &folders(), &ranges()).await;
        assert_same(&got, &js, "JS's drive read over TCP");
        // download("/") fetched every blob the listing points at (the overwritten readme's
        // first version and the deleted file's blob are not referenced and stay remote).
        assert_eq!(got["blobsHas"], total - 2);
        remote.end_all().await;
        let _ = tokio::time::timeout(STEP, conn).await;
    });
    let _ = peer.next_event("closed", STEP);
}

/// hyperpunch writes the workload with a 50 MiB file: JS writing the same workload in a store
/// with the same primary key makes the same drive, byte for byte. hyperpunch serves it over
/// TCP; JS downloads it with `drive.download('/')` and reads everything back.
#[test]
fn hyperpunch_writes_the_same_bytes_as_js_and_js_reads_them() {
    let ops = workload(BIG_MIB);
    let primary = [0x71; 32];
    let mut js_local = NodePeer::spawn(
        PEER,
        &json!({
            "mode": "local", "primaryKey": hex::encode(primary), "deadline": 110_000,
            "ops": ops, "folders": folders(), "ranges": ranges(),
        }),
    )
    .expect("spawn node");
    let rt = rt();
    let (local, ours, key, _cores) = rt.block_on(async {
        let local = store(primary).await;
        let (drive, cores) = open_local(&local).await.unwrap();
        apply(&drive, &ops).await;
        let ours = dump(&local, &drive, &folders(), &ranges()).await;
        let key = drive.key().await;
        (local, ours, key, cores)
    });
    let js_same = js_local.next_event("dump", STEP).unwrap();
    assert_same(&ours, &js_same, "the same operations in JS");
    assert_eq!(ours["blobsHas"], js_same["blobsHas"]);
    drop(js_local);
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let config = json!({
        "mode": "client", "key": hex::encode(key), "port": port,
        "streamSeed": hex::encode([0x72; 32]), "deadline": 110_000,
        "folders": folders(), "ranges": ranges(),
    });
    let mut peer = NodePeer::spawn(PEER, &config).expect("spawn node");
    rt.block_on(async {
        let (socket, _) = tokio::time::timeout(STEP, listener.accept())
            .await
            .expect("node connected in time")
            .unwrap();
        let conn = tokio::spawn({
            let local = local.clone();
            async move { replicate(socket, false, KeyPair::from_seed(&[0x73; 32]), &local).await }
        });
        let js = tokio::task::spawn_blocking(move || {
            let d = peer.next_event("dump", STEP);
            (d, peer)
        });
        let (js, mut peer) = js.await.unwrap();
        let js = js.unwrap();
        assert_same(&ours, &js, "hyperpunch's drive read by JS over TCP");
        assert_eq!(
            js["blobsHas"],
            ours["blobsLength"].as_u64().unwrap() - 2,
            "JS downloaded every referenced blob"
        );
        let _ = tokio::time::timeout(STEP, conn).await;
        let _ = peer.next_event("closed", STEP);
    });
}

/// The same writes and truncations in JS and here, on stores with the same primary key: the
/// same drive, byte for byte, with the same lengths, tree hashes and forks.
#[test]
fn truncate_gives_the_same_drive_as_js() {
    let zero = json!([
        {"op": "put", "path": "/a", "len": 70000, "seed": 1},
        {"op": "put", "path": "/b", "len": 10, "seed": 2},
        {"op": "truncate", "version": 0},
        {"op": "put", "path": "/c", "len": 5, "seed": 3},
    ]);
    let cases = [
        (truncated_workload(), folders(), ranges()),
        (zero, json!(["/"]), json!([{"path": "/c"}])),
    ];
    for (i, (ops, folders, ranges)) in cases.into_iter().enumerate() {
        let primary = [0x81 + i as u8; 32];
        let mut js_local = NodePeer::spawn(
            PEER,
            &json!({
                "mode": "local", "primaryKey": hex::encode(primary), "deadline": 110_000,
                "ops": ops, "folders": folders, "ranges": ranges,
            }),
        )
        .expect("spawn node");
        let ours = rt().block_on(async {
            let local = store(primary).await;
            let (drive, _cores) = open_local(&local).await.unwrap();
            apply(&drive, &ops).await;
            dump(&local, &drive, &folders, &ranges).await
        });
        let js = js_local.next_event("dump", STEP).unwrap();
        assert_same(&ours, &js, &format!("case {i}: the same truncations in JS"));
        assert_eq!(ours["blobsHas"], js["blobsHas"]);
        if i == 0 {
            assert_eq!(
                (&ours["version"], &ours["dbFork"], &ours["blobsFork"]),
                (&json!(16), &json!(3), &json!(3))
            );
            assert_eq!(
                ours["blobsLength"], 41,
                "the dropped blob kept by `blobs: 40`"
            );
        } else {
            // JS getBlobsLength(0) is the current version's: the blobs of /a (2 blocks) and
            // /b kept, /c's appended after them.
            assert_eq!(
                (&ours["version"], &ours["blobsLength"]),
                (&json!(2), &json!(4))
            );
        }
    }
}

/// JS writes and truncates a drive and serves it; hyperpunch reads it over TCP as JS has it.
#[test]
fn hyperpunch_reads_a_drive_js_truncated() {
    let primary = [0x91; 32];
    let config = json!({
        "mode": "server", "primaryKey": hex::encode(primary), "streamSeed": hex::encode([0x92; 32]),
        "deadline": 110_000, "ops": truncated_workload(), "folders": folders(), "ranges": ranges(),
    });
    let mut peer = NodePeer::spawn(PEER, &config).expect("spawn node");
    let ready = peer.next_event("ready", STEP).unwrap();
    let js = peer.next_event("dump", STEP).unwrap();
    let port = peer.next_event("listening", STEP).unwrap()["port"]
        .as_u64()
        .unwrap() as u16;
    let key: [u8; 32] = hex::decode(ready["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    rt().block_on(async {
        let remote = store([0x93; 32]).await;
        let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let conn = tokio::spawn({
            let remote = remote.clone();
            async move { replicate(socket, true, KeyPair::from_seed(&[0x94; 32]), &remote).await }
        });
        let (drive, _cores) = open_remote(&remote, key, STEP).await.unwrap();
        tokio::time::timeout(STEP, drive.download("/"))
            .await
            .expect("download in time")
            .unwrap();
        let got = dump(&remote, &drive, &folders(), &ranges()).await;
        assert_same(&got, &js, "JS's truncated drive read over TCP");
        assert_eq!(got["dbFork"], 3);
        remote.end_all().await;
        let _ = tokio::time::timeout(STEP, conn).await;
    });
    let _ = peer.next_event("closed", STEP);
}

/// hyperpunch writes and truncates a drive (the same bytes as JS's own truncated drive) and
/// serves it; a JS reader downloads it and reads it as hyperpunch has it.
#[test]
fn js_reads_a_drive_hyperpunch_truncated() {
    let ops = truncated_workload();
    let rt = rt();
    let (local, ours, key, _cores) = rt.block_on(async {
        let local = store([0xa1; 32]).await;
        let (drive, cores) = open_local(&local).await.unwrap();
        apply(&drive, &ops).await;
        let ours = dump(&local, &drive, &folders(), &ranges()).await;
        let key = drive.key().await;
        (local, ours, key, cores)
    });
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let config = json!({
        "mode": "client", "key": hex::encode(key), "port": port,
        "streamSeed": hex::encode([0xa2; 32]), "deadline": 110_000,
        "folders": folders(), "ranges": ranges(),
    });
    let mut peer = NodePeer::spawn(PEER, &config).expect("spawn node");
    rt.block_on(async {
        let (socket, _) = tokio::time::timeout(STEP, listener.accept())
            .await
            .expect("node connected in time")
            .unwrap();
        let conn = tokio::spawn({
            let local = local.clone();
            async move { replicate(socket, false, KeyPair::from_seed(&[0xa3; 32]), &local).await }
        });
        let js = tokio::task::spawn_blocking(move || {
            let d = peer.next_event("dump", STEP);
            (d, peer)
        });
        let (js, mut peer) = js.await.unwrap();
        let js = js.unwrap();
        assert_same(
            &ours,
            &js,
            "hyperpunch's truncated drive read by JS over TCP",
        );
        let _ = tokio::time::timeout(STEP, conn).await;
        let _ = peer.next_event("closed", STEP);
    });
}

/// A JS reader downloads hyperpunch's drive; hyperpunch then truncates it and writes on while
/// the connection stays up: the reader learns the new forks from the peer, drops what was
/// truncated and ends with the drive hyperpunch has (computed first on a second store with the
/// same primary key, and checked against the live one).
#[test]
fn a_js_reader_follows_a_live_truncation() {
    let before = workload(0);
    let all_ops = truncated_workload();
    let later = json!(all_ops.as_array().unwrap()[before.as_array().unwrap().len()..]);
    let primary = [0xb1; 32];
    let rt = rt();
    let expected = rt.block_on(async {
        let s = store(primary).await;
        let (drive, _cores) = open_local(&s).await.unwrap();
        apply(&drive, &all_ops).await;
        dump(&s, &drive, &folders(), &ranges()).await
    });
    let (local, drive, key, _cores) = rt.block_on(async {
        let local = store(primary).await;
        let (drive, cores) = open_local(&local).await.unwrap();
        apply(&drive, &before).await;
        let key = drive.key().await;
        (local, drive, key, cores)
    });
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let config = json!({
        "mode": "client", "key": hex::encode(key), "port": port,
        "streamSeed": hex::encode([0xb2; 32]), "deadline": 110_000,
        "folders": folders(), "ranges": ranges(),
        "follow": {
            "version": expected["version"], "dbFork": expected["dbFork"],
            "blobsLength": expected["blobsLength"], "blobsFork": expected["blobsFork"],
        },
    });
    let mut peer = NodePeer::spawn(PEER, &config).expect("spawn node");
    rt.block_on(async {
        let (socket, _) = tokio::time::timeout(STEP, listener.accept())
            .await
            .expect("node connected in time")
            .unwrap();
        let conn = tokio::spawn({
            let local = local.clone();
            async move { replicate(socket, false, KeyPair::from_seed(&[0xb3; 32]), &local).await }
        });
        let (first, mut peer) = tokio::task::spawn_blocking(move || {
            let d = peer.next_event("dump", STEP);
            (d, peer)
        })
        .await
        .unwrap();
        let first = first.unwrap();
        assert_eq!(
            (&first["version"], &first["dbFork"]),
            (&json!(14), &json!(0))
        );
        // Truncate and write on, connected.
        apply(&drive, &later).await;
        let ours = dump(&local, &drive, &folders(), &ranges()).await;
        assert_same(
            &ours,
            &expected,
            "the live drive and the one computed first",
        );
        let (js, mut peer) = tokio::task::spawn_blocking(move || {
            let d = peer.next_event("dump", STEP);
            (d, peer)
        })
        .await
        .unwrap();
        let js = js.unwrap();
        assert_same(&ours, &js, "JS following the truncations live");
        let _ = tokio::time::timeout(STEP, conn).await;
        let _ = peer.next_event("closed", STEP);
    });
}
