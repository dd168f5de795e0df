//! Drive workloads and dumps shared by the drive tests, in the same JSON shapes as
//! `tests/interop/drive-peer.js` (its `ops` and its `dump` event), so a drive written or read by
//! either side compares as plain JSON.

use std::collections::BTreeMap;

use hyperpunch::bee::StoreCore;
use hyperpunch::core::crypto::hash;
use hyperpunch::core::hyperbee::BeeCore;
use hyperpunch::core::hyperblobs::{BlobCore, ReadRange};
use hyperpunch::core::hyperdrive::{Hyperdrive, ListOptions, PutOptions};
use hyperpunch::core::storage::Storage;
use hyperpunch::replicate::SharedCorestore;
use serde_json::{json, Value};

/// The bytes of a generated file (JS `gen(len, seed)`).
pub fn gen(len: usize, seed: u64) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((i * 31 + seed * 7 + (i >> 8)) & 255) as u8)
        .collect()
}

/// The standard workload: nested folders, empty files, executables, metadata, a streamed file
/// of odd chunks, relative and absolute symlinks, an overwrite, a delete, unicode names; with
/// `big_mib`, one file of that many MiB.
pub fn workload(big_mib: usize) -> Value {
    let mut ops = vec![
        json!({"op": "put", "path": "/readme.md", "len": 100, "seed": 1}),
        json!({"op": "put", "path": "/empty", "len": 0, "seed": 0}),
        json!({"op": "put", "path": "/dir/a/b/c/deep.txt", "len": 3000, "seed": 2}),
        json!({"op": "put", "path": "/dir/a/x.bin", "len": 70000, "seed": 3, "executable": true,
               "metadata": {"mode": 493, "tags": ["a", "b"], "nested": {"k": null, "f": 1.5}}}),
        json!({"op": "write", "path": "/dir/streamed.bin", "len": 300000, "seed": 4, "chunk": 10007}),
        json!({"op": "put", "path": "/bin/tool", "len": 10, "seed": 5, "executable": true}),
        json!({"op": "symlink", "path": "/link-abs", "target": "/readme.md"}),
        json!({"op": "symlink", "path": "/dir/link-rel", "target": "../readme.md"}),
        json!({"op": "put", "path": "/readme.md", "len": 150, "seed": 7}),
        json!({"op": "put", "path": "/tmp/gone", "len": 5, "seed": 8}),
        json!({"op": "del", "path": "/tmp/gone"}),
        json!({"op": "put", "path": "/ü/名前 x.txt", "len": 12, "seed": 9}),
        json!({"op": "put", "path": "/dir/empty-too", "len": 0, "seed": 0}),
    ];
    if big_mib > 0 {
        ops.push(json!({"op": "put", "path": "/big.bin", "len": big_mib << 20, "seed": 6}));
    }
    Value::Array(ops)
}

/// [`workload`] without a big file, then files written and truncated away (JS
/// `drive.truncate`): back to version 14 (the workload's, blobs to what it needs), a file, a
/// second one dropped by a truncation to version 15 with an explicit blobs length that keeps
/// its blob, a last file, and a truncation to the current version (only the forks move).
pub fn truncated_workload() -> Value {
    let mut ops = workload(0).as_array().unwrap().clone();
    ops.extend([
        json!({"op": "put", "path": "/later/a.bin", "len": 200000, "seed": 10}),
        json!({"op": "put", "path": "/later/b", "len": 10, "seed": 11}),
        json!({"op": "del", "path": "/bin/tool"}),
        json!({"op": "truncate", "version": 14}),
        json!({"op": "put", "path": "/after.txt", "len": 500, "seed": 12}),
        json!({"op": "put", "path": "/after2.txt", "len": 600, "seed": 13}),
        json!({"op": "truncate", "version": 15, "blobs": 40}),
        json!({"op": "put", "path": "/final", "len": 3, "seed": 14}),
        json!({"op": "truncate", "version": 16}),
    ]);
    Value::Array(ops)
}

/// Folders whose `readdir` the dumps compare.
pub fn folders() -> Value {
    json!(["/", "/dir", "/dir/a", "/ü", "/nothing"])
}

/// Ranges the dumps hash (present in every workload).
pub fn ranges() -> Value {
    json!([
        {"path": "/dir/streamed.bin", "start": 10000, "length": 20000},
        {"path": "/dir/streamed.bin", "start": 1, "end": 299998},
        {"path": "/dir/a/x.bin", "start": 65530, "end": 65545},
        {"path": "/dir/a/x.bin", "start": 0, "length": 0},
        {"path": "/readme.md", "start": 149},
        {"path": "/empty"},
    ])
}

/// Apply `ops` (see [`workload`]) to a drive.
pub async fn apply<C: BlobCore>(drive: &Hyperdrive<C>, ops: &Value) {
    for o in ops.as_array().expect("ops array") {
        let path = o["path"].as_str().unwrap_or_default();
        let len = o["len"].as_u64().unwrap_or(0) as usize;
        let seed = o["seed"].as_u64().unwrap_or(0);
        let opts = PutOptions {
            executable: o["executable"].as_bool().unwrap_or(false),
            metadata: Some(o["metadata"].clone()).filter(|m| !m.is_null()),
            dedup: false,
        };
        match o["op"].as_str().unwrap() {
            "put" => drive.put(path, &gen(len, seed), opts).await.unwrap(),
            "write" => {
                let chunk = o["chunk"].as_u64().unwrap() as usize;
                let mut w = drive.writer(path, opts).await.unwrap();
                for c in gen(len, seed).chunks(chunk) {
                    w.write(c).await.unwrap();
                }
                w.finish().await.unwrap();
            }
            "symlink" => drive
                .symlink(path, o["target"].as_str().unwrap(), None)
                .await
                .unwrap(),
            "del" => drive.del(path).await.unwrap(),
            "truncate" => drive
                .truncate(o["version"].as_u64().unwrap(), o["blobs"].as_u64())
                .await
                .unwrap(),
            op => panic!("unknown op {op}"),
        }
    }
}

fn range_of(r: &Value) -> ReadRange {
    ReadRange {
        start: r["start"].as_u64(),
        end: r["end"].as_u64(),
        length: r["length"].as_u64(),
    }
}

/// Everything `drive-peer.js` dumps, read from a drive in a store, as the same JSON.
pub async fn dump<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
    drive: &Hyperdrive<StoreCore<S>>,
    folders: &Value,
    ranges: &Value,
) -> Value {
    let db = drive.db();
    let length = db.state().await.length;
    let mut db_blocks = Vec::new();
    for i in 0..length {
        db_blocks.push(hex::encode(
            BeeCore::get(db, i).await.unwrap().expect("db block"),
        ));
    }
    let mut list = Vec::new();
    let mut files = BTreeMap::new();
    let mut it = drive.list("/", ListOptions::default()).unwrap();
    while let Some(e) = it.next().await.unwrap() {
        list.push(json!({"key": e.key, "value": String::from_utf8(e.value.encode()).unwrap()}));
        if e.value.blob.is_some() {
            let bytes = drive.get(&e.key).await.unwrap().unwrap();
            files.insert(e.key.clone(), hex::encode(hash(&bytes)));
        }
    }
    let mut readdir = serde_json::Map::new();
    for f in folders.as_array().unwrap() {
        let f = f.as_str().unwrap();
        readdir.insert(f.into(), json!(drive.readdir(f).await.unwrap()));
    }
    let mut hashes = Vec::new();
    for r in ranges.as_array().unwrap() {
        let bytes = drive
            .reader(r["path"].as_str().unwrap(), range_of(r))
            .await
            .unwrap()
            .read_to_end()
            .await
            .unwrap();
        hashes.push(json!(hex::encode(hash(&bytes))));
    }
    let blobs = drive.blobs().core();
    let blobs_length = blobs.state().await.length;
    let blobs_has = {
        let mut n = 0;
        for i in 0..blobs_length {
            if BlobCore::has(blobs, i, i + 1).await {
                n += 1;
            }
        }
        n
    };
    let content_key = drive.content_key().await;
    let drive_key = drive.key().await;
    let (tree_hash, blobs_fork, db_tree_hash, db_fork) = {
        let g = store.lock().await;
        let dk = hyperpunch::core::crypto::discovery_key(&content_key);
        let blobs = g.open_core(&dk).expect("blobs core open");
        let dk = hyperpunch::core::crypto::discovery_key(&drive_key);
        let db = g.open_core(&dk).expect("db core open");
        (
            hex::encode(blobs.tree_hash()),
            blobs.fork(),
            hex::encode(db.tree_hash()),
            db.fork(),
        )
    };
    json!({
        "event": "dump",
        "key": hex::encode(drive_key),
        "contentKey": hex::encode(content_key),
        "version": drive.version().await,
        "dbBlocks": db_blocks,
        "blobsLength": blobs_length,
        "blobsByteLength": BlobCore::byte_length(blobs).await,
        "blobsTreeHash": tree_hash,
        "dbTreeHash": db_tree_hash,
        "dbFork": db_fork,
        "blobsFork": blobs_fork,
        "list": list,
        "files": files,
        "readdir": readdir,
        "ranges": hashes,
        "blobsHas": blobs_has,
    })
}
