//! `hyperpunch store info`: the built binary on a corestore folder the library wrote.

mod common;
use common::{hp, ok};
use futures_executor::block_on;
use hyperpunch::corestore::{layout, Corestore, GetOptions, Namespace, PrimaryKey};
use hyperpunch::storage::{Batch, Storage};
use hyperpunch::FileStorage;

#[test]
fn store_info_lists_every_core() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let (db, app, reader) = block_on(async {
        let mut s = Corestore::open(FileStorage::open(&dir).unwrap(), PrimaryKey::Given([7; 32]))
            .await
            .unwrap();
        let db = s.get(GetOptions::named("db")).await.unwrap();
        s.append(0, &db, &[b"hello", b"world"]).await.unwrap();
        let app = s
            .get(GetOptions::named("db").in_namespace(Namespace::ROOT.child("app")))
            .await
            .unwrap();
        let reader = s.get(GetOptions::from_key([4; 32])).await.unwrap();
        (*db.key(), *app.key(), *reader.key())
    });
    let d = dir.to_str().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["store", "info", "--storage", d, "--json"], b"")).unwrap();
    let cores = v["cores"].as_array().unwrap();
    assert_eq!(cores.len(), 3);
    // JS `new Corestore(dir, { primaryKey: 07…07, unsafe: true }).get({ name: 'db' }).key`.
    assert_eq!(
        cores[0]["key"],
        "9d56810a89a0211db2a242b81ce8eac5265ac648769910177524c82908ab866d"
    );
    assert_eq!(cores[0]["key"], hex::encode(db));
    assert_eq!(cores[0]["name"], "db");
    assert_eq!(cores[0]["length"], 2);
    assert_eq!(cores[0]["byteLength"], 10);
    assert_eq!(cores[0]["writable"], true);
    assert_eq!(cores[1]["key"], hex::encode(app));
    assert_eq!(
        cores[1]["namespace"],
        hex::encode(Namespace::ROOT.child("app").0)
    );
    assert_eq!(cores[2]["key"], hex::encode(reader));
    assert_eq!(cores[2]["name"], serde_json::Value::Null);
    assert_eq!(cores[2]["writable"], false);
    let text = ok(&["store", "info", "--storage", d], b"");
    assert!(text.starts_with("3 core(s) in "), "{text}");
    assert!(text.contains("name:           db (namespace "), "{text}");
    assert!(
        text.contains("length:         2 blocks, 10 bytes"),
        "{text}"
    );

    // A corrupt core record: exit status 3, one line, no panic.
    block_on(async {
        let storage = FileStorage::open(&dir).unwrap();
        let mut b = Batch::new();
        b.put(
            layout::core_key(&hyperpunch::crypto::discovery_key(&db)),
            vec![1, 2],
        );
        storage.write(b).await.unwrap();
    });
    let out = hp(&["store", "info", "--storage", d], b"");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("corrupt corestore"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn store_info_on_a_folder_without_a_store() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("missing");
    let out = hp(&["store", "info", "--storage", d.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("no corestore in"));
    // An empty storage folder holds no corestore either.
    let e = t.path().join("empty");
    drop(FileStorage::open(&e).unwrap());
    let out = hp(&["store", "info", "--storage", e.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no corestore in"), "{err}");
}
