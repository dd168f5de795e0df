//! The hyperdrive (and hyperblobs) suite every storage backend runs: memory here, native files
//! in `hyperpunch`, IndexedDB in `hyperpunch-web` (headless Chromium). Each check builds a drive
//! on fresh storages from the factory and panics with a message naming what failed.
//!
//! What it covers: the JS layout byte for byte (the vector drive of `07-corestore-hyperdrive`),
//! put/get/entry/del, paths, symlinks, executables, metadata, empty files, byte ranges (through
//! the tree and by walking blocks), write streams, listings (recursive, shallow, ignore),
//! readdir, batches, checkouts, diffs, watchers, truncation (JS `truncate`), dedup block maps, has/clear/download on a local
//! core, hostile blocks (typed errors, no panic), and a seeded random workload against a model.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::*;
use crate::corestore::{create_key_pair, Namespace};
use crate::crypto::KeyPair;
use crate::hyperbee::BeeCore;
use crate::hyperblobs::{ReadRange, WriteOptions};
use crate::hypercore::{CreateOptions, Hypercore, Session};
use crate::storage::Storage;

/// A drive's two cores on two storages, signed by `key_pair` exactly as JS lays them out: the
/// db core with the key pair's default manifest, the blobs core with
/// [`keys::content_manifest`].
pub async fn local_cores<S: Storage + 'static>(
    db: S,
    blobs: S,
    key_pair: KeyPair,
) -> (Session<S>, Session<S>) {
    let db = Hypercore::create(
        db,
        CreateOptions {
            key_pair: Some(key_pair.clone()),
            ..Default::default()
        },
    )
    .await
    .expect("create db core");
    let manifest = db.manifest().expect("db manifest").clone();
    let content = keys::content_manifest(&manifest, db.key()).expect("content manifest");
    let blobs = Hypercore::create(
        blobs,
        CreateOptions {
            key_pair: Some(key_pair),
            manifest: Some(content),
            ..Default::default()
        },
    )
    .await
    .expect("create blobs core");
    (db.into_session(), blobs.into_session())
}

type Drive<S> = Hyperdrive<Session<S>>;

async fn drive<S: Storage + 'static>(db: S, blobs: S, seed: u8) -> Drive<S> {
    let (db, blobs) = local_cores(db, blobs, KeyPair::from_seed(&[seed; 32])).await;
    Hyperdrive::new(db, blobs)
}

/// Run every check, each on fresh storages from `fresh`.
pub async fn run_all<S, F, Fut>(fresh: F)
where
    S: Storage + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    layout_like_js(fresh().await, fresh().await).await;
    basics(fresh().await, fresh().await).await;
    ranges(fresh().await, fresh().await).await;
    listings(fresh().await, fresh().await).await;
    batches(fresh().await, fresh().await).await;
    versions(fresh().await, fresh().await).await;
    truncation(fresh().await, fresh().await).await;
    dedup_and_local_copies(fresh().await, fresh().await).await;
    hostile(fresh().await, fresh().await).await;
    for seed in 1..=2 {
        model(fresh().await, fresh().await, seed, 150).await;
    }
}

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn keys_of<C: BlobCore>(it: read::ListIter<C>) -> Vec<String> {
    it.collect()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.key)
        .collect()
}

/// The drive of `tests/vectors/data/07-corestore-hyperdrive.out` (primary key 07..07, name
/// "db"): the same keys, every db block byte for byte, the same blobs.
pub async fn layout_like_js<S: Storage + 'static>(db: S, blobs: S) {
    let kp = create_key_pair(&[7; 32], &Namespace::ROOT, b"db");
    let (dbc, bc) = local_cores(db, blobs, kp).await;
    let d = Hyperdrive::new(dbc.clone(), bc.clone());
    assert_eq!(
        hex(&d.key().await),
        "9d56810a89a0211db2a242b81ce8eac5265ac648769910177524c82908ab866d",
        "drive key"
    );
    assert_eq!(
        hex(&d.content_key().await),
        "afa4ae98a0b1ef96fcf567c133623fc1c938c811b696daa75b749e48968e1178",
        "blobs key"
    );
    d.put("/hello.txt", b"hello world", PutOptions::default())
        .await
        .unwrap();
    d.put("/dir/big.bin", &[1u8; 70000], PutOptions::default())
        .await
        .unwrap();
    d.put(
        "/exec.sh",
        b"#!/bin/sh",
        PutOptions {
            executable: true,
            metadata: Some(serde_json::json!({"mode": "x"})),
            dedup: false,
        },
    )
    .await
    .unwrap();
    d.symlink("/link", "/hello.txt", None).await.unwrap();
    d.put("/empty", b"", PutOptions::default()).await.unwrap();
    d.del("/exec.sh").await.unwrap();
    let expect: [(&str, Option<&str>); 6] = [
        (
            "/hello.txt",
            Some(
                r#"{"executable":false,"linkname":null,"blob":{"blockOffset":0,"byteOffset":0,"blockLength":1,"byteLength":11},"metadata":null}"#,
            ),
        ),
        (
            "/dir/big.bin",
            Some(
                r#"{"executable":false,"linkname":null,"blob":{"blockOffset":1,"byteOffset":11,"blockLength":2,"byteLength":70000},"metadata":null}"#,
            ),
        ),
        (
            "/exec.sh",
            Some(
                r#"{"executable":true,"linkname":null,"blob":{"blockOffset":3,"byteOffset":70011,"blockLength":1,"byteLength":9},"metadata":{"mode":"x"}}"#,
            ),
        ),
        (
            "/link",
            Some(r#"{"executable":false,"linkname":"/hello.txt","blob":null,"metadata":null}"#),
        ),
        (
            "/empty",
            Some(
                r#"{"executable":false,"linkname":null,"blob":{"blockOffset":4,"byteOffset":70020,"blockLength":0,"byteLength":0},"metadata":null}"#,
            ),
        ),
        ("/exec.sh", None),
    ];
    assert_eq!(dbc.length().await, 7, "db length");
    assert_eq!(
        hex(&dbc.get(0).await.unwrap().unwrap()),
        "0a0868797065726265651200",
        "db header"
    );
    for (i, (key, value)) in expect.iter().enumerate() {
        let raw = dbc.get(i as u64 + 1).await.unwrap().unwrap();
        let node = crate::hyperbee::Node::decode(&raw).unwrap();
        assert_eq!(
            node.key,
            [b"files\0", key.as_bytes()].concat(),
            "db#{} key",
            i + 1
        );
        assert_eq!(
            node.value.as_deref(),
            value.map(str::as_bytes),
            "db#{} value",
            i + 1
        );
    }
    assert_eq!(bc.length().await, 4, "blobs length");
    assert_eq!(bc.byte_length().await, 70020, "blobs byte length");
    let sizes: Vec<usize> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(bc.get(i).await.unwrap().unwrap().len());
        }
        v
    };
    assert_eq!(sizes, [11, 65536, 4464, 9], "blobs block sizes");
    let listed = keys_of(d.list("/", ListOptions::default()).unwrap()).await;
    assert_eq!(listed, ["/dir/big.bin", "/empty", "/hello.txt", "/link"]);
    assert_eq!(
        d.readdir("/").await.unwrap(),
        ["dir", "empty", "hello.txt", "link"]
    );
}

/// put / get / entry / exists / del, paths, symlinks, executables, metadata, empty files.
pub async fn basics<S: Storage + 'static>(db: S, blobs: S) {
    let d = drive(db, blobs, 3).await;
    assert_eq!(d.version().await, 1, "empty drive version");
    assert_eq!(d.get("/nothing").await.unwrap(), None);
    assert!(!d.exists("/nothing").await.unwrap());
    d.put("a.txt", b"one", PutOptions::default()).await.unwrap();
    assert_eq!(d.get("/a.txt").await.unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(
        d.get("./x/../a.txt").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        d.get("\\a.txt").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    let e = d.entry("/a.txt").await.unwrap().unwrap();
    assert_eq!(e.key, "/a.txt");
    assert_eq!(e.seq, 1, "entry seq (after the header)");
    // Overwrite.
    d.put("/a.txt", b"two!", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        d.get("/a.txt").await.unwrap().as_deref(),
        Some(&b"two!"[..])
    );
    assert_eq!(d.entry("/a.txt").await.unwrap().unwrap().byte_length(), 4);
    // Executable + metadata.
    let meta = serde_json::json!({"owner": "me", "n": [1, 2.5, null], "u": "ü\n"});
    d.put(
        "/bin/run",
        b"#!",
        PutOptions {
            executable: true,
            metadata: Some(meta.clone()),
            dedup: false,
        },
    )
    .await
    .unwrap();
    let e = d.entry("/bin/run").await.unwrap().unwrap();
    assert!(e.value.executable);
    assert_eq!(e.value.metadata, Some(meta));
    // Empty file.
    d.put("/empty", b"", PutOptions::default()).await.unwrap();
    let e = d.entry("/empty").await.unwrap().unwrap();
    assert_eq!(e.value.blob.unwrap().block_length, 0);
    assert_eq!(d.get("/empty").await.unwrap().as_deref(), Some(&b""[..]));
    let mut r = d.reader("/empty", ReadRange::default()).await.unwrap();
    assert_eq!(r.next().await.unwrap(), None);
    // Symlinks: absolute, relative (against the link's own path, as JS), chains, loops.
    d.symlink("/l1", "/a.txt", None).await.unwrap();
    d.symlink("/dir/l2", "../../l1", None).await.unwrap();
    assert_eq!(d.get("/l1").await.unwrap(), None, "a link has no blob");
    let e = d.entry("/l1").await.unwrap().unwrap();
    assert_eq!(e.value.linkname.as_deref(), Some("/a.txt"));
    assert!(e.is_symlink());
    assert_eq!(
        d.entry_follow("/dir/l2").await.unwrap().unwrap().key,
        "/a.txt"
    );
    d.symlink("/loop1", "/loop2", None).await.unwrap();
    d.symlink("/loop2", "/loop1", None).await.unwrap();
    assert!(matches!(
        d.entry_follow("/loop1").await,
        Err(DriveError::RecursiveSymlink(_))
    ));
    d.symlink("/dangling", "/nope", None).await.unwrap();
    assert_eq!(d.entry_follow("/dangling").await.unwrap(), None);
    // Delete.
    let len = d.version().await;
    d.del("/a.txt").await.unwrap();
    assert_eq!(d.get("/a.txt").await.unwrap(), None);
    assert_eq!(d.version().await, len + 1);
    d.del("/a.txt").await.unwrap();
    assert_eq!(
        d.version().await,
        len + 1,
        "deleting an absent file writes nothing"
    );
    assert!(matches!(
        d.reader("/a.txt", ReadRange::default()).await,
        Err(DriveError::NotFound(_))
    ));
    // Invalid paths.
    for bad in ["/", "", "..", "/a/../..", "x/.."] {
        assert!(
            matches!(
                d.put(bad, b"x", PutOptions::default()).await,
                Err(DriveError::InvalidPath { .. })
            ),
            "put {bad:?}"
        );
    }
    // Unicode and odd names survive.
    d.put("/ü n i/名前 .txt", b"u", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(d.readdir("/ü n i").await.unwrap(), ["名前 .txt"]);
    // A checkout cannot be written.
    let c = d.checkout(2).await;
    assert!(!c.writable().await);
    assert!(matches!(
        c.put("/x", b"x", PutOptions::default()).await,
        Err(DriveError::NotWritable)
    ));
}

/// Byte ranges through readers and `get_range`, for `put` blobs and write-stream blobs of odd
/// block sizes, against slices of the bytes.
pub async fn ranges<S: Storage + 'static>(db: S, blobs: S) {
    let d = drive(db, blobs, 4).await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    d.put("/pre", b"shift the byte offsets", PutOptions::default())
        .await
        .unwrap();
    d.put("/big", &data, PutOptions::default()).await.unwrap();
    let mut w = d.writer("/odd", PutOptions::default()).await.unwrap();
    let mut at = 0;
    let mut size = 1;
    while at < data.len() {
        let n = size.min(data.len() - at);
        w.write(&data[at..at + n]).await.unwrap();
        at += n;
        size = size * 3 % 70_001 + 1;
    }
    assert_eq!(w.bytes_written(), data.len() as u64);
    w.finish().await.unwrap();
    d.put("/post", b"after", PutOptions::default())
        .await
        .unwrap();
    let len = data.len() as u64;
    let cases: Vec<(ReadRange, std::ops::Range<u64>)> = vec![
        (ReadRange::default(), 0..len),
        (ReadRange::start_len(0, 0), 0..0),
        (ReadRange::start_len(1, 10), 1..11),
        (ReadRange::start_len(65_535, 2), 65_535..65_537),
        (ReadRange::start_len(65_536, 65_536), 65_536..131_072),
        (ReadRange::inclusive(100, 100), 100..101),
        (ReadRange::inclusive(70_000, 199_999), 70_000..len),
        (ReadRange::inclusive(5, 10_000_000), 5..len),
        (ReadRange::start_len(len - 1, 5), len - 1..len),
        (ReadRange::start_len(len, 5), len..len),
        (ReadRange::start_len(len + 10, 5), len..len),
        (
            ReadRange {
                start: Some(123_456),
                end: None,
                length: None,
            },
            123_456..len,
        ),
        (
            ReadRange {
                start: None,
                end: Some(9),
                length: None,
            },
            0..10,
        ),
    ];
    for file in ["/big", "/odd"] {
        for (r, want) in &cases {
            let expect = &data[want.start as usize..want.end as usize];
            let got = d
                .reader(file, *r)
                .await
                .unwrap()
                .read_to_end()
                .await
                .unwrap();
            assert_eq!(got.len(), expect.len(), "{file} {r:?} length");
            assert!(got == expect, "{file} {r:?} bytes");
            let e = d.entry(file).await.unwrap().unwrap();
            let got = d
                .blobs()
                .get_range(e.value.blob.as_ref().unwrap(), *r)
                .await
                .unwrap()
                .unwrap();
            assert!(got == expect, "{file} {r:?} get_range");
        }
        assert_eq!(d.get(file).await.unwrap().unwrap(), data, "{file} whole");
    }
    // put cuts 64 KiB blocks; a writer keeps the chunks as blocks.
    let big = d.entry("/big").await.unwrap().unwrap().value.blob.unwrap();
    assert_eq!(big.block_length, 4);
    assert_eq!(big.byte_offset, 22);
    assert_eq!(
        d.get("/post").await.unwrap().as_deref(),
        Some(&b"after"[..])
    );
}

/// list (recursive, shallow, ignore), entries, readdir.
pub async fn listings<S: Storage + 'static>(db: S, blobs: S) {
    let d = drive(db, blobs, 5).await;
    let files = [
        "/a",
        "/a.txt",
        "/b/c",
        "/b/d/e",
        "/b/d/f",
        "/b0",
        "/b/c.d",
        "/x/y/z/deep",
        "/ab",
    ];
    for f in files {
        d.put(f, f.as_bytes(), PutOptions::default()).await.unwrap();
    }
    let mut sorted: Vec<&str> = files.to_vec();
    sorted.sort();
    assert_eq!(
        keys_of(d.list("/", ListOptions::default()).unwrap()).await,
        sorted
    );
    assert_eq!(keys_of(d.entries()).await, sorted);
    assert_eq!(
        keys_of(d.list("/b", ListOptions::default()).unwrap()).await,
        ["/b/c", "/b/c.d", "/b/d/e", "/b/d/f"],
        "list /b stops before /b0"
    );
    assert_eq!(
        keys_of(d.list("b/", ListOptions::default()).unwrap()).await,
        ["/b/c", "/b/c.d", "/b/d/e", "/b/d/f"]
    );
    assert!(keys_of(d.list("/nope", ListOptions::default()).unwrap())
        .await
        .is_empty());
    let ignore = ListOptions {
        recursive: true,
        ignore: vec!["/b/d".into(), "a.txt".into()],
    };
    assert_eq!(
        keys_of(d.list("/", ignore).unwrap()).await,
        ["/a", "/ab", "/b/c", "/b/c.d", "/b0", "/x/y/z/deep"]
    );
    // As in JS, the walk skips past `b/` with `gt: "/b0"`, which also skips a file named
    // exactly `b0` next to the folder `b` (a JS quirk kept for identical results).
    assert_eq!(
        d.readdir("/").await.unwrap(),
        ["a", "a.txt", "ab", "b", "x"]
    );
    assert_eq!(d.readdir("/b").await.unwrap(), ["c", "c.d", "d"]);
    assert_eq!(d.readdir("/x/y").await.unwrap(), ["z"]);
    assert!(
        d.readdir("/a").await.unwrap().is_empty(),
        "a file has no names"
    );
    // Shallow list: the first entry under each name, as JS.
    let shallow = ListOptions {
        recursive: false,
        ignore: vec![],
    };
    assert_eq!(
        keys_of(d.list("/b", shallow).unwrap()).await,
        ["/b/c", "/b/c.d", "/b/d/e"]
    );
    // A file and a folder of the same name: listed once.
    d.put("/b/d", b"file", PutOptions::default()).await.unwrap();
    assert_eq!(d.readdir("/b").await.unwrap(), ["c", "c.d", "d"]);
}

/// Batches: entries appended together at flush, blobs at once; dropped batches write no entry.
pub async fn batches<S: Storage + 'static>(db: S, blobs: S) {
    let d = drive(db, blobs, 6).await;
    d.put("/first", b"1", PutOptions::default()).await.unwrap();
    let v = d.version().await;
    let mut b = d.batch();
    for i in 0..20 {
        b.put(
            &format!("/f/{i:02}"),
            format!("file {i}").as_bytes(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    }
    b.symlink("/f/link", "/f/00", None).await.unwrap();
    b.del("/first").await.unwrap();
    assert_eq!(b.len(), 22);
    assert_eq!(d.version().await, v, "nothing in the db before the flush");
    assert_eq!(
        d.blobs().core().length().await,
        21,
        "blobs are written at once"
    );
    b.flush().await.unwrap();
    assert_eq!(d.version().await, v + 22);
    assert_eq!(
        d.get("/f/07").await.unwrap().as_deref(),
        Some(&b"file 7"[..])
    );
    assert_eq!(d.get("/first").await.unwrap(), None);
    let mut dropped = d.batch();
    dropped
        .put("/gone", b"x", PutOptions::default())
        .await
        .unwrap();
    drop(dropped);
    assert_eq!(d.get("/gone").await.unwrap(), None);
    d.put("/after", b"a", PutOptions::default()).await.unwrap();
    assert_eq!(d.version().await, v + 23, "the lock is free again");
}

/// Checkouts, diffs and watchers.
pub async fn versions<S: Storage + 'static>(db: S, blobs: S) {
    let d = drive(db, blobs, 8).await;
    d.put("/docs/a", b"a1", PutOptions::default())
        .await
        .unwrap();
    d.put("/docs/b", b"b1", PutOptions::default())
        .await
        .unwrap();
    d.put("/other", b"o", PutOptions::default()).await.unwrap();
    let v = d.version().await;
    d.put("/docs/a", b"a2", PutOptions::default())
        .await
        .unwrap();
    d.del("/docs/b").await.unwrap();
    d.put("/docs/c", b"c1", PutOptions::default())
        .await
        .unwrap();
    d.put("/other", b"o2", PutOptions::default()).await.unwrap();
    let old = d.checkout(v).await;
    assert_eq!(old.version().await, v);
    assert_eq!(
        old.get("/docs/a").await.unwrap().as_deref(),
        Some(&b"a1"[..])
    );
    assert_eq!(
        old.get("/docs/b").await.unwrap().as_deref(),
        Some(&b"b1"[..])
    );
    assert_eq!(old.get("/docs/c").await.unwrap(), None);
    let diff = d.diff(v, "/docs").await.unwrap().collect().await.unwrap();
    let summary: Vec<(Option<String>, Option<String>)> = diff
        .iter()
        .map(|x| {
            (
                x.left.as_ref().map(|e| e.key.clone()),
                x.right.as_ref().map(|e| e.key.clone()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Some("/docs/a".into()), Some("/docs/a".into())),
            (None, Some("/docs/b".into())),
            (Some("/docs/c".into()), None),
        ]
    );
    assert_eq!(
        d.diff(v, "/").await.unwrap().collect().await.unwrap().len(),
        4
    );
    assert_eq!(d.blobs_length(v).await.unwrap(), 3);
    // Watch /docs: a change elsewhere does not wake it, one inside does.
    let mut w = d.watch("/docs").unwrap();
    {
        let mut next = pin!(w.next());
        assert!(poll_once(next.as_mut()).is_pending(), "no change yet");
        d.put("/elsewhere", b"e", PutOptions::default())
            .await
            .unwrap();
        assert!(
            poll_once(next.as_mut()).is_pending(),
            "a change outside /docs"
        );
        d.put("/docs/d", b"d", PutOptions::default()).await.unwrap();
        let (cur, prev) = next.await.unwrap();
        let changed = cur
            .diff_with(&prev, "/docs")
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].left.as_ref().unwrap().key, "/docs/d");
    }
    // After `ready`, a change made before the first `next` is the one it reports.
    let mut w = d.watch("/docs").unwrap();
    w.ready().await;
    let before = d.version().await;
    d.put("/docs/e", b"e", PutOptions::default()).await.unwrap();
    let (cur, prev) = w.next().await.unwrap();
    assert_eq!(
        (cur.version().await, prev.version().await),
        (before + 1, before)
    );
}

/// `truncate(version, blobs)` as JS hyperdrive 13.3.4: the db back to `version` blocks, the
/// blobs to the end of the last blob that version's entries point at (JS `getBlobsLength`),
/// later files gone (a kept entry's blob is a typed out-of-bounds error), both cores on a new
/// fork, writes going on from there; bad lengths and checkouts refused with nothing changed.
pub async fn truncation<S: Storage + 'static>(db: S, blobs: S) {
    let d = drive(db, blobs, 9).await;
    let lengths = |d: &Drive<S>| {
        let d = d.clone();
        async move {
            let (db, blobs) = (d.db().state().await, d.blobs().core().state().await);
            (db.length, blobs.length, db.fork, blobs.fork)
        }
    };
    d.put("/a", b"a1", PutOptions::default()).await.unwrap();
    d.put("/b", b"b1", PutOptions::default()).await.unwrap();
    let v = d.version().await;
    assert_eq!(v, 3, "header + two entries");
    d.put("/c", &vec![7u8; 70_000], PutOptions::default())
        .await
        .unwrap();
    d.put("/a", b"a2", PutOptions::default()).await.unwrap();
    d.del("/b").await.unwrap();
    let c = d.entry("/c").await.unwrap().expect("/c");
    assert_eq!(lengths(&d).await, (6, 5, 0, 0));
    assert_eq!(d.blobs_length(v).await.unwrap(), 2);
    assert_eq!(
        d.blobs_length(0).await.unwrap(),
        5,
        "0 is the current version, as JS"
    );

    // Refused, nothing changed.
    let bad = d.truncate(7, None).await;
    assert_eq!(
        bad,
        Err(DriveError::BadTruncationLength {
            core: "db",
            length: 7,
            core_length: 6
        })
    );
    let bad = d.truncate(v, Some(6)).await;
    assert_eq!(
        bad,
        Err(DriveError::BadTruncationLength {
            core: "blobs",
            length: 6,
            core_length: 5
        })
    );
    let old = d.checkout(v).await;
    assert_eq!(old.truncate(v, None).await, Err(DriveError::NotWritable));
    assert_eq!(lengths(&d).await, (6, 5, 0, 0), "refusals truncate nothing");

    d.truncate(v, None).await.unwrap();
    assert_eq!(
        lengths(&d).await,
        (3, 2, 1, 1),
        "the lengths JS computes, next forks"
    );
    assert_eq!(d.version().await, v);
    assert_eq!(d.get("/a").await.unwrap().as_deref(), Some(&b"a1"[..]));
    assert_eq!(d.get("/b").await.unwrap().as_deref(), Some(&b"b1"[..]));
    assert_eq!(
        d.get("/c").await.unwrap(),
        None,
        "written after the version"
    );
    let keys = keys_of(d.entries()).await;
    assert_eq!(keys, ["/a", "/b"]);
    assert!(
        matches!(
            d.get_entry(&c).await,
            Err(DriveError::Blob(BlobError::OutOfBounds { length: 2, .. }))
        ),
        "a truncated file's blob is a typed error"
    );
    assert!(matches!(
        d.reader("/c", ReadRange::default()).await,
        Err(DriveError::NotFound(_))
    ));

    // Writes go on from the truncated lengths.
    d.put("/d", b"d1", PutOptions::default()).await.unwrap();
    assert_eq!(lengths(&d).await, (4, 3, 1, 1));
    assert_eq!(d.get("/d").await.unwrap().as_deref(), Some(&b"d1"[..]));
    assert_eq!(
        d.entry("/d")
            .await
            .unwrap()
            .unwrap()
            .value
            .blob
            .unwrap()
            .block_offset,
        2
    );

    // Explicit blobs length; the same version again (a new fork, nothing removed).
    d.truncate(4, Some(2)).await.unwrap();
    assert_eq!(lengths(&d).await, (4, 2, 2, 2));
    assert!(matches!(
        d.get("/d").await,
        Err(DriveError::Blob(BlobError::OutOfBounds { .. }))
    ));

    // Version 0 empties the db and keeps the blobs the current version needs (JS).
    d.put("/e", b"e1", PutOptions::default()).await.unwrap();
    assert_eq!(lengths(&d).await, (5, 3, 2, 2));
    d.truncate(0, None).await.unwrap();
    assert_eq!(lengths(&d).await, (0, 3, 3, 3));
    assert!(d.entries().collect().await.unwrap().is_empty());
    d.put("/f", b"f1", PutOptions::default()).await.unwrap();
    assert_eq!(lengths(&d).await, (2, 4, 3, 3), "the header written again");
    assert_eq!(d.get("/f").await.unwrap().as_deref(), Some(&b"f1"[..]));
}

/// Dedup block maps, has / download / clear on a local core.
pub async fn dedup_and_local_copies<S: Storage + 'static>(db: S, blobs: S) {
    let d = drive(db, blobs, 9).await;
    let a: Vec<u8> = (0..100u8).cycle().take(40_000).collect();
    let b: Vec<u8> = (100..200u8).cycle().take(40_000).collect();
    let dedup = PutOptions {
        dedup: true,
        ..Default::default()
    };
    let mut w = d.writer("/f", dedup.clone()).await.unwrap();
    for chunk in [&a, &b, &a] {
        w.write(chunk).await.unwrap();
    }
    w.finish().await.unwrap();
    let e = d.entry("/f").await.unwrap().unwrap();
    let id = e.value.blob.unwrap();
    assert!(id.block_map, "a dedup blob has a block map");
    assert_eq!(
        d.blobs().core().length().await,
        3,
        "two data blocks + the map"
    );
    let want = [a.clone(), b.clone(), a.clone()].concat();
    assert_eq!(d.get("/f").await.unwrap().unwrap(), want);
    assert_eq!(d.blobs().content_length(&id).await.unwrap(), 120_000);
    let part = d
        .reader("/f", ReadRange::start_len(39_990, 40_020))
        .await
        .unwrap()
        .read_to_end()
        .await
        .unwrap();
    assert!(part == want[39_990..80_010], "a range across map entries");
    // A new version with one changed chunk appends only that chunk (+ the map).
    let c: Vec<u8> = vec![9; 1000];
    let mut w = d.writer("/f", dedup).await.unwrap();
    for chunk in [&a, &c, &b] {
        w.write(chunk).await.unwrap();
    }
    w.finish().await.unwrap();
    assert_eq!(d.blobs().core().length().await, 5);
    assert_eq!(
        d.get("/f").await.unwrap().unwrap(),
        [a.clone(), c.clone(), b.clone()].concat()
    );
    // A writer with a plain block map.
    let blobs = d.blobs();
    let mut w = blobs
        .writer(WriteOptions {
            block_map: true,
            ..Default::default()
        })
        .await
        .unwrap();
    w.write(b"mapped").await.unwrap();
    let mid = w.finish().await.unwrap();
    assert!(mid.block_map);
    assert_eq!(
        blobs.get(&mid).await.unwrap().as_deref(),
        Some(&b"mapped"[..])
    );
    assert_eq!(
        blobs
            .get_block_map(&mid)
            .await
            .unwrap()
            .unwrap()
            .blocks
            .len(),
        1
    );
    // has / download / clear.
    d.put("/plain", &[5u8; 100_000], PutOptions::default())
        .await
        .unwrap();
    assert!(d.has("/plain").await.unwrap());
    assert!(d.has("/").await.unwrap());
    assert!(
        !d.has("/nothing/").await.unwrap(),
        "an empty folder is false"
    );
    assert_eq!(d.download("/").await.unwrap(), 2);
    assert_eq!(d.clear("/plain").await.unwrap(), Some(2));
    assert_eq!(
        d.clear("/plain").await.unwrap(),
        Some(0),
        "nothing left to clear"
    );
    assert_eq!(d.clear("/nope").await.unwrap(), None);
    assert!(!d.has("/plain").await.unwrap());
    assert!(!d.has("/").await.unwrap());
    assert!(matches!(
        d.get("/plain").await,
        Err(DriveError::Blob(
            crate::hyperblobs::BlobError::BlockNotAvailable(_)
        ))
    ));
    assert!(
        d.download("/plain").await.is_err(),
        "a local core cannot fetch it"
    );
    assert!(
        d.get("/f").await.unwrap().is_some(),
        "other files are untouched"
    );
    let n = d.clear_all().await.unwrap();
    assert!(n >= 5, "clear_all cleared {n}");
    assert!(!d.has("/f").await.unwrap());
}

/// Blocks that are not entries, blobs out of bounds, broken block maps: typed errors.
pub async fn hostile<S: Storage + 'static>(db: S, blobs: S) {
    let d = drive(db, blobs, 10).await;
    d.put("/ok", b"fine", PutOptions::default()).await.unwrap();
    // An entry whose JSON is not an entry, through the bee directly.
    let bee = Hyperbee::new(d.db().clone()).sub("files");
    bee.put(b"/bad", b"{\"blob\":7}").await.unwrap();
    bee.put(b"/notjson", b"\xff{").await.unwrap();
    bee.put_null(b"/novalue").await.unwrap();
    let out_of_bounds = EntryValue {
        blob: Some(crate::hyperblobs::BlobId {
            block_offset: 1000,
            byte_offset: 0,
            block_length: 3,
            byte_length: 10,
            block_map: false,
        }),
        ..Default::default()
    };
    d.put_entry("/oob", &out_of_bounds).await.unwrap();
    let mut bad_map = out_of_bounds.clone();
    bad_map.blob = Some(crate::hyperblobs::BlobId {
        block_offset: 0,
        byte_offset: 0,
        block_length: 1,
        byte_length: 4,
        block_map: true,
    });
    d.put_entry("/badmap", &bad_map).await.unwrap();
    let mut huge_map = bad_map.clone();
    huge_map.blob.as_mut().unwrap().block_length = 65;
    d.put_entry("/hugemap", &huge_map).await.unwrap();
    for p in ["/bad", "/notjson", "/novalue"] {
        assert!(
            matches!(
                d.entry(p).await,
                Err(DriveError::Bee(BeeError::Encoding { .. }))
            ),
            "{p}"
        );
    }
    assert!(matches!(
        d.get("/oob").await,
        Err(DriveError::Blob(
            crate::hyperblobs::BlobError::OutOfBounds { .. }
        ))
    ));
    assert!(d.reader("/oob", ReadRange::start_len(2, 2)).await.is_err());
    assert!(matches!(
        d.get("/badmap").await,
        Err(DriveError::Blob(
            crate::hyperblobs::BlobError::InvalidBlockMap { .. }
        ))
    ));
    assert!(matches!(
        d.get("/hugemap").await,
        Err(DriveError::Blob(
            crate::hyperblobs::BlobError::BlockMapTooLarge(65)
        ))
    ));
    assert!(d
        .list("/", ListOptions::default())
        .unwrap()
        .collect()
        .await
        .is_err());
    assert_eq!(d.get("/ok").await.unwrap().as_deref(), Some(&b"fine"[..]));
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random puts, overwrites, deletes, symlinks and batches against an ordered map.
pub async fn model<S: Storage + 'static>(db: S, blobs: S, seed: u64, ops: usize) {
    let d = drive(db, blobs, 11).await;
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut model: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let dirs = ["", "/a", "/a/b", "/c", "/c/d/e"];
    for step in 0..ops {
        let dir = dirs[rng.below(dirs.len() as u64) as usize];
        let path = format!("{dir}/f{}", rng.below(12));
        match rng.below(10) {
            0..=4 => {
                let len = match rng.below(4) {
                    0 => 0,
                    1 => rng.below(100),
                    2 => rng.below(5000),
                    _ => 65_536 + rng.below(70_000),
                } as usize;
                let data: Vec<u8> = (0..len)
                    .map(|i| (i as u64 ^ seed ^ step as u64) as u8)
                    .collect();
                d.put(&path, &data, PutOptions::default()).await.unwrap();
                model.insert(path, Some(data));
            }
            5..=6 => {
                d.del(&path).await.unwrap();
                model.remove(&path);
            }
            7 => {
                d.symlink(&path, "/somewhere", None).await.unwrap();
                model.insert(path, None);
            }
            _ => {
                let mut b = d.batch();
                for k in 0..rng.below(5) {
                    let p = format!("{dir}/g{k}");
                    b.put(&p, p.as_bytes(), PutOptions::default())
                        .await
                        .unwrap();
                    model.insert(p.clone(), Some(p.into_bytes()));
                }
                b.flush().await.unwrap();
            }
        }
    }
    let listed = d
        .list("/", ListOptions::default())
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|e| e.key.clone()).collect::<Vec<_>>(),
        model.keys().cloned().collect::<Vec<_>>(),
        "seed {seed}: listing"
    );
    for (k, v) in &model {
        assert_eq!(&d.get(k).await.unwrap(), v, "seed {seed}: {k}");
    }
    for dir in dirs {
        let want: Vec<String> = {
            let prefix = format!("{dir}/");
            let mut names: Vec<String> = model
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .map(|rest| rest.split('/').next().unwrap().to_string())
                .collect();
            names.dedup();
            names
        };
        let dir = if dir.is_empty() { "/" } else { dir };
        assert_eq!(
            d.readdir(dir).await.unwrap(),
            want,
            "seed {seed}: readdir {dir}"
        );
    }
}
