//! Browser tests: the core storage conformance suite on IndexedDB (for real, in headless
//! Chromium), persistence across connections, and the wasm-bindgen exports.
//!
//! Run with `scripts/test-browser.sh` (wasm-bindgen-test-runner + chromedriver).
#![cfg(target_arch = "wasm32")]

use std::cell::Cell;

use hyperpunch_core::storage::{
    conformance, Batch, MemoryStorage, Prefixed, Storage, StorageError,
};
use hyperpunch_web::storage::IdbStorage;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
}

/// A database name no other test (or earlier run in the same profile) uses.
fn unique_name(prefix: &str) -> String {
    let n = COUNTER.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    // The random part guards against a browser profile reused between runs.
    let salt = (js_sys::Math::random() * 1e12) as u64;
    format!("hyperpunch-test-{prefix}-{n}-{salt:x}")
}

/// A fresh, empty store on its own database (deleted first in case the name was ever used).
async fn fresh_idb(prefix: &str) -> IdbStorage {
    let name = unique_name(prefix);
    IdbStorage::delete_database(&name)
        .await
        .expect("delete_database");
    IdbStorage::open(&name).await.expect("open IndexedDB store")
}

fn batch(ops: impl FnOnce(&mut Batch)) -> Batch {
    let mut b = Batch::new();
    ops(&mut b);
    b
}

#[wasm_bindgen_test]
async fn idb_passes_conformance() {
    conformance::run_all(|| fresh_idb("conformance")).await;
}

#[wasm_bindgen_test]
async fn prefixed_idb_passes_conformance() {
    conformance::run_all(|| async {
        let shared = fresh_idb("prefixed").await;
        // A neighbouring namespace must never leak into this one.
        shared
            .write(batch(|b| {
                b.put(b"other/zz".to_vec(), b"x".to_vec());
            }))
            .await
            .expect("write neighbour");
        Prefixed::new(shared, b"core/".to_vec())
    })
    .await;
}

#[wasm_bindgen_test]
async fn memory_passes_conformance_in_wasm() {
    conformance::run_all(|| async { MemoryStorage::new() }).await;
}

#[wasm_bindgen_test]
async fn idb_persists_across_connections() {
    let name = unique_name("persist");
    IdbStorage::delete_database(&name).await.expect("delete");
    {
        let s = IdbStorage::open(&name).await.expect("open");
        assert_eq!(s.name(), name);
        s.write(batch(|b| {
            b.put(b"tree/0".to_vec(), vec![1, 2, 3])
                .put(b"tree/1".to_vec(), vec![4, 5])
                .put(b"head".to_vec(), b"h".to_vec());
        }))
        .await
        .expect("write");
        s.write(batch(|b| {
            b.delete(b"tree/1".to_vec());
        }))
        .await
        .expect("delete");
        // Dropping closes the connection.
    }
    let s = IdbStorage::open(&name).await.expect("reopen");
    assert_eq!(s.get(b"tree/0").await.unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(s.get(b"tree/1").await.unwrap(), None);
    assert_eq!(s.get(b"head").await.unwrap(), Some(b"h".to_vec()));
    assert_eq!(s.scan(b"tree/", b"tree0", None).await.unwrap().len(), 1);

    // Another database name is another store.
    let other = fresh_idb("persist-other").await;
    assert_eq!(other.get(b"head").await.unwrap(), None);

    drop(s);
    IdbStorage::delete_database(&name).await.expect("delete");
    let s = IdbStorage::open(&name).await.expect("open after delete");
    assert_eq!(
        s.get(b"head").await.unwrap(),
        None,
        "deleted database is empty"
    );
}

#[wasm_bindgen_test]
async fn idb_write_is_visible_to_another_connection_when_resolved() {
    let name = unique_name("visible");
    IdbStorage::delete_database(&name).await.expect("delete");
    let a = IdbStorage::open(&name).await.expect("open a");
    let b = IdbStorage::open(&name).await.expect("open b");
    let big = vec![7u8; 256 * 1024];
    a.write(batch(|x| {
        for i in 0u16..64 {
            x.put(i.to_be_bytes().to_vec(), big.clone());
        }
        x.delete_range(10u16.to_be_bytes().to_vec(), 20u16.to_be_bytes().to_vec());
    }))
    .await
    .expect("write");
    let got = b.scan(&[], &[0xff, 0xff, 0xff], None).await.unwrap();
    assert_eq!(got.len(), 54);
    assert!(got.iter().all(|(_, v)| v == &big));
    let limited = b.scan(&[], &[0xff, 0xff, 0xff], Some(5)).await.unwrap();
    let keys: Vec<Vec<u8>> = limited.into_iter().map(|(k, _)| k).collect();
    let want: Vec<Vec<u8>> = [0u16, 1, 2, 3, 4]
        .iter()
        .map(|i| i.to_be_bytes().to_vec())
        .collect();
    assert_eq!(keys, want);
}

#[wasm_bindgen_test]
async fn idb_closes_for_delete_and_then_reports_unavailable() {
    let name = unique_name("versionchange");
    IdbStorage::delete_database(&name).await.expect("delete");
    let s = IdbStorage::open(&name).await.expect("open");
    s.write(batch(|b| {
        b.put(b"k".to_vec(), b"v".to_vec());
    }))
    .await
    .expect("write");
    // Must not block on the open connection: it closes itself on `versionchange`.
    IdbStorage::delete_database(&name)
        .await
        .expect("delete while open");
    match s.get(b"k").await {
        Err(StorageError::Unavailable(_)) => {}
        other => panic!("expected Unavailable after the database was deleted, got {other:?}"),
    }
    match s
        .write(batch(|b| {
            b.put(b"k".to_vec(), b"w".to_vec());
        }))
        .await
    {
        Err(StorageError::Unavailable(_)) => {}
        other => panic!("expected Unavailable for a write, got {other:?}"),
    }
}

#[wasm_bindgen_test]
fn discovery_key_export_matches_core() {
    let key = [0x42u8; 32];
    let dk = hyperpunch_web::discovery_key(&key).expect("32-byte key");
    assert_eq!(
        dk,
        hyperpunch_core::crypto::discovery_key(&key).to_vec(),
        "export must be the core's discovery key"
    );
    assert_ne!(dk, key.to_vec());
    assert!(hyperpunch_web::discovery_key(&[0u8; 31]).is_err());
    assert_eq!(hyperpunch_web::version(), env!("CARGO_PKG_VERSION"));
}

/// Opens `name` at schema version 1 with the object store `store`, bypassing `IdbStorage`.
async fn raw_db(name: &str, store: &'static str) -> indexed_db_futures::database::Database {
    use indexed_db_futures::prelude::*;
    indexed_db_futures::database::Database::open(name)
        .with_version(1u32)
        .with_on_upgrade_needed(move |_, db| {
            db.create_object_store(store).build()?;
            Ok(())
        })
        .await
        .expect("raw open")
}

#[wasm_bindgen_test]
async fn idb_rejects_a_foreign_database() {
    let name = unique_name("foreign");
    IdbStorage::delete_database(&name).await.expect("delete");
    raw_db(&name, "not-kv").await.close();
    match IdbStorage::open(&name).await {
        Err(StorageError::Corrupt(msg)) => assert!(msg.contains("kv"), "{msg}"),
        other => panic!("expected Corrupt for a database without the kv store, got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn idb_reports_non_binary_values_as_corrupt() {
    use indexed_db_futures::prelude::*;
    use indexed_db_futures::transaction::TransactionMode;
    let name = unique_name("nonbinary");
    IdbStorage::delete_database(&name).await.expect("delete");
    let db = raw_db(&name, "kv").await;
    {
        let tx = db
            .transaction("kv")
            .with_mode(TransactionMode::Readwrite)
            .build()
            .expect("tx");
        let store = tx.object_store("kv").expect("store");
        let key: wasm_bindgen::JsValue = js_sys::Uint8Array::from(&b"k"[..]).into();
        store
            .put("a string, not bytes")
            .with_key(key)
            .without_key_type()
            .primitive()
            .expect("put")
            .await
            .expect("put done");
        tx.commit().await.expect("commit");
    }
    db.close();
    let s = IdbStorage::open(&name).await.expect("open");
    assert!(matches!(s.get(b"k").await, Err(StorageError::Corrupt(_))));
    assert!(matches!(
        s.scan(b"", b"z", None).await,
        Err(StorageError::Corrupt(_))
    ));
}

/// The hyperbee suite (get/put/del, every range option, batches and their lock, subs,
/// encodings, checkouts, history, diff, compare-and-swap, watchers, hostile blocks, a random
/// workload against an ordered map) on IndexedDB.
#[wasm_bindgen_test]
async fn hyperbee_suite_on_idb() {
    hyperpunch_core::hyperbee::suite::run_all(|| fresh_idb("bee")).await;
}

/// The hyperdrive suite (the JS layout byte for byte, put/get/del, paths, symlinks, ranges,
/// write streams, listings, readdir, batches, checkouts, diffs, watchers, dedup block maps,
/// has/clear, hostile entries, a random workload against a model) on IndexedDB.
#[wasm_bindgen_test]
async fn hyperdrive_suite_on_idb() {
    hyperpunch_core::hyperdrive::suite::run_all(|| fresh_idb("drive")).await;
}
