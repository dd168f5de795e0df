//! Mirrors between two hyperdrives on memory storage.

use futures_executor::block_on;

use super::*;
use crate::crypto::KeyPair;
use crate::hypercore::Session;
use crate::hyperdrive::{suite::local_cores, Hyperdrive, PutOptions};
use crate::storage::MemoryStorage;

type D = Hyperdrive<Session<MemoryStorage>>;

async fn drive(seed: u8) -> D {
    let (db, blobs) = local_cores(
        MemoryStorage::new(),
        MemoryStorage::new(),
        KeyPair::from_seed(&[seed; 32]),
    )
    .await;
    Hyperdrive::new(db, blobs)
}

async fn run(src: &D, dst: &D, opts: MirrorOptions) -> (Vec<MirrorOp>, MirrorReport) {
    let mut ops = Vec::new();
    let mut m = Mirror::new(src, dst, opts);
    let report = m
        .run(|e| {
            if let MirrorEvent::Op(op) = e {
                ops.push(op)
            }
        })
        .await
        .unwrap();
    (ops, report)
}

fn summary(ops: &[MirrorOp]) -> Vec<(&'static str, &str, u64, u64)> {
    ops.iter()
        .map(|o| {
            (
                o.op.as_str(),
                o.key.as_str(),
                o.bytes_added,
                o.bytes_removed,
            )
        })
        .collect()
}

#[test]
fn hyperdrive_to_hyperdrive() {
    block_on(async {
        let src = drive(1).await;
        let dst = drive(2).await;
        let p = PutOptions::default();
        src.put("/a.txt", b"hello", p.clone()).await.unwrap();
        src.put("/dir/b", &[7u8; 100_000], p.clone()).await.unwrap();
        src.put("/empty", b"", p.clone()).await.unwrap();
        src.symlink("/link", "/a.txt", None).await.unwrap();
        dst.put("/stale", b"old", p.clone()).await.unwrap();
        dst.put("/a.txt", b"HELLO", p.clone()).await.unwrap();

        // A dry run reports everything and writes nothing.
        let v = dst.version().await;
        let (dry, r) = run(
            &src,
            &dst,
            MirrorOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(dst.version().await, v, "a dry run writes nothing");
        let want = vec![
            ("remove", "/stale", 0, 3),
            ("change", "/a.txt", 5, 5),
            ("add", "/dir/b", 100_000, 0),
            ("add", "/empty", 0, 0),
            ("add", "/link", 0, 0),
        ];
        assert_eq!(summary(&dry), want);
        assert_eq!(
            r.count,
            MirrorCount {
                files: 4,
                add: 3,
                remove: 1,
                change: 1
            }
        );
        assert_eq!((r.bytes_added, r.bytes_removed), (100_005, 8));

        let (ops, _) = run(&src, &dst, MirrorOptions::default()).await;
        assert_eq!(summary(&ops), want);
        for k in ["/a.txt", "/dir/b", "/empty"] {
            assert_eq!(dst.get(k).await.unwrap(), src.get(k).await.unwrap(), "{k}");
        }
        assert_eq!(dst.get("/stale").await.unwrap(), None);
        assert_eq!(
            dst.entry("/link")
                .await
                .unwrap()
                .unwrap()
                .value
                .linkname
                .as_deref(),
            Some("/a.txt")
        );

        // Again: nothing to do; with include_equals every file is `equal`.
        let (ops, r) = run(&src, &dst, MirrorOptions::default()).await;
        assert!(ops.is_empty(), "{ops:?}");
        assert_eq!(r.count.files, 4);
        let (ops, _) = run(
            &src,
            &dst,
            MirrorOptions {
                include_equals: true,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ops.len(), 4);
        assert!(ops.iter().all(|o| o.op == OpKind::Equal));

        // Only the executable bit changed: the entry is rewritten, no bytes copied.
        let blobs_before = dst.blobs().core().length().await;
        src.put(
            "/a.txt",
            b"hello",
            PutOptions {
                executable: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let (ops, _) = run(&src, &dst, MirrorOptions::default()).await;
        assert_eq!(summary(&ops), [("change", "/a.txt", 0, 0)]);
        assert!(dst.entry("/a.txt").await.unwrap().unwrap().value.executable);
        assert_eq!(dst.blobs().core().length().await, blobs_before);

        // Same size, other bytes: a change with bytes.
        src.put("/a.txt", b"HELLO", PutOptions::default())
            .await
            .unwrap();
        let (ops, _) = run(&src, &dst, MirrorOptions::default()).await;
        assert_eq!(summary(&ops), [("change", "/a.txt", 5, 5)]);
        assert_eq!(
            dst.get("/a.txt").await.unwrap().as_deref(),
            Some(&b"HELLO"[..])
        );

        // Without prune, extra files stay; filter and ignore leave files out; a prefix limits
        // the mirror to a folder.
        dst.put("/extra", b"x", PutOptions::default())
            .await
            .unwrap();
        src.put("/dir/c", b"c", PutOptions::default())
            .await
            .unwrap();
        src.put("/dir/d", b"d", PutOptions::default())
            .await
            .unwrap();
        src.put("/other", b"o", PutOptions::default())
            .await
            .unwrap();
        let (ops, _) = run(
            &src,
            &dst,
            MirrorOptions {
                prune: false,
                prefix: vec!["/dir".into()],
                filter: Some(Box::new(|k: &str| k != "/dir/d")),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(summary(&ops), [("add", "/dir/c", 1, 0)]);
        assert!(dst.exists("/extra").await.unwrap());
        let (ops, _) = run(
            &src,
            &dst,
            MirrorOptions {
                ignore: vec!["/dir".into()],
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            summary(&ops),
            [("remove", "/extra", 0, 1), ("add", "/other", 1, 0)],
            "ignored paths are neither pruned nor copied"
        );
        // A checkout cannot be the destination.
        let ro = dst.checkout(2).await;
        let mut m = Mirror::new(&src, &ro, MirrorOptions::default());
        assert_eq!(m.run(|_| {}).await, Err(MirrorError::NotWritable));
    });
}
