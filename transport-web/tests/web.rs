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
use hyperpunch_web::write_behind::WriteBehind;
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

/// Values from a few bytes to a few hundred KiB, on both sides of `FILE_VALUE_MIN` (the large
/// ones go to the store's OPFS data file): get, get_many, scan, overwrites in both directions,
/// deletes and range deletes, and everything again from a new connection.
#[wasm_bindgen_test]
async fn idb_large_values_live_in_the_data_file() {
    use hyperpunch_web::storage::FILE_VALUE_MIN;
    let name = unique_name("large");
    IdbStorage::delete_database(&name).await.expect("delete");
    let value = |seed: u8, len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    };
    let sizes = [1, FILE_VALUE_MIN - 1, FILE_VALUE_MIN, 65536 + 8, 300_000];
    let expected: Vec<(Vec<u8>, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("k{i}").into_bytes(), value(i as u8, n)))
        .collect();
    {
        let s = IdbStorage::open(&name).await.expect("open");
        assert!(
            s.has_data_file(),
            "Chromium has OPFS: large values go to a data file"
        );
        s.write(batch(|b| {
            for (k, v) in &expected {
                b.put(k.clone(), v.clone());
            }
        }))
        .await
        .expect("write");
        for (k, v) in &expected {
            assert_eq!(s.get(k).await.expect("get").as_ref(), Some(v));
        }
        let keys: Vec<Vec<u8>> = expected
            .iter()
            .map(|(k, _)| k.clone())
            .chain([b"none".to_vec()])
            .collect();
        let many = s.get_many(&keys).await.expect("get_many");
        assert_eq!(many.len(), keys.len());
        for ((_, v), got) in expected.iter().zip(&many) {
            assert_eq!(got.as_ref(), Some(v));
        }
        assert_eq!(many.last(), Some(&None));
        assert_eq!(s.scan(b"k", b"l", None).await.expect("scan"), expected);
        assert_eq!(
            s.scan(b"k", b"l", Some(2)).await.expect("scan 2"),
            expected[..2]
        );
        // Large over small, small over large, a deleted large one, a range of them.
        s.write(batch(|b| {
            b.put(b"k0".to_vec(), value(9, 100_000));
            b.put(b"k4".to_vec(), b"small now".to_vec());
            b.delete(b"k3".to_vec());
        }))
        .await
        .expect("overwrite");
    }
    let s = IdbStorage::open(&name).await.expect("reopen");
    assert_eq!(s.get(b"k0").await.expect("get").unwrap(), value(9, 100_000));
    assert_eq!(s.get(b"k4").await.expect("get").unwrap(), b"small now");
    assert_eq!(s.get(b"k3").await.expect("get"), None);
    assert_eq!(
        s.get(b"k2").await.expect("get").as_ref(),
        Some(&expected[2].1)
    );
    s.write(batch(|b| {
        b.delete_range(b"k1".to_vec(), b"k3".to_vec());
    }))
    .await
    .expect("delete range");
    let left: Vec<Vec<u8>> = s
        .scan(b"", b"z", None)
        .await
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left, vec![b"k0".to_vec(), b"k4".to_vec()]);
    drop(s);
    IdbStorage::delete_database(&name).await.expect("delete");
    let s = IdbStorage::open(&name).await.expect("open after delete");
    assert_eq!(s.scan(b"", b"z", None).await.expect("scan"), Vec::new());
}

/// Writes reach IndexedDB in the order they were called: a batch with a large value (its data
/// file append answered later) does not overtake, nor get overtaken by, a later small batch on
/// the same key.
#[wasm_bindgen_test]
async fn idb_writes_keep_their_order_with_large_values() {
    let s = fresh_idb("order").await;
    for round in 0..4u8 {
        let big = vec![round; 70_000];
        let first = s.write(batch(|b| {
            b.put(b"k".to_vec(), big.clone());
        }));
        let second = s.write(batch(|b| {
            b.put(b"k".to_vec(), vec![round]);
        }));
        let third = s.write(batch(|b| {
            b.put(b"j".to_vec(), vec![round; 9000]);
        }));
        let ((a, b), c) =
            futures_util::future::join(futures_util::future::join(first, second), third).await;
        a.expect("first");
        b.expect("second");
        c.expect("third");
        assert_eq!(s.get(b"k").await.expect("get").unwrap(), vec![round]);
        assert_eq!(s.get(b"j").await.expect("get").unwrap(), vec![round; 9000]);
    }
}

/// A store written before data files existed (large values inline as `Uint8Array`s) reads as it
/// is; an array that is no pointer is reported as corrupt, not followed.
#[wasm_bindgen_test]
async fn idb_reads_inline_large_values_and_rejects_bad_pointers() {
    use indexed_db_futures::prelude::*;
    use indexed_db_futures::transaction::TransactionMode;
    let name = unique_name("inline");
    IdbStorage::delete_database(&name).await.expect("delete");
    let db = raw_db(&name, "kv").await;
    let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    {
        let tx = db
            .transaction("kv")
            .with_mode(TransactionMode::Readwrite)
            .build()
            .expect("tx");
        let store = tx.object_store("kv").expect("store");
        let put = |k: &[u8], v: wasm_bindgen::JsValue| {
            let key: wasm_bindgen::JsValue = js_sys::Uint8Array::from(k).into();
            store
                .put(v)
                .with_key(key)
                .without_key_type()
                .primitive()
                .expect("put")
        };
        let _a = put(b"a", js_sys::Uint8Array::from(&big[..]).into());
        let bad = js_sys::Array::of3(&1.into(), &2.into(), &3.into());
        let _b = put(b"b", bad.into());
        let neg = js_sys::Array::of2(&(-1).into(), &2.into());
        let _c = put(b"c", neg.into());
        tx.commit().await.expect("commit");
    }
    db.close();
    let s = IdbStorage::open(&name).await.expect("open");
    assert_eq!(s.get(b"a").await.expect("inline value").unwrap(), big);
    assert!(matches!(s.get(b"b").await, Err(StorageError::Corrupt(_))));
    assert!(matches!(s.get(b"c").await, Err(StorageError::Corrupt(_))));
    assert!(matches!(
        s.scan(b"", b"z", None).await,
        Err(StorageError::Corrupt(_))
    ));
}

/// A [`MemoryStorage`] whose writes wait until the test opens its gate (or fail while it says so).
#[derive(Clone, Default)]
struct Gated {
    mem: MemoryStorage,
    state: std::rc::Rc<GateState>,
}

#[derive(Default)]
struct GateState {
    open: Cell<bool>,
    fail: Cell<bool>,
    writes: Cell<u32>,
    wakers: std::cell::RefCell<Vec<std::task::Waker>>,
}

impl Gated {
    fn open(&self) {
        self.state.open.set(true);
        for w in self.state.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

impl Storage for Gated {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.mem.get(key).await
    }
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        self.mem.get_many(keys).await
    }
    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> Result<hyperpunch_core::storage::Entries, StorageError> {
        self.mem.scan(start, end, limit).await
    }
    async fn write(&self, batch: Batch) -> Result<(), StorageError> {
        std::future::poll_fn(|cx| {
            if self.state.open.get() {
                std::task::Poll::Ready(())
            } else {
                self.state.wakers.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await;
        self.state.writes.set(self.state.writes.get() + 1);
        if self.state.fail.get() {
            return Err(StorageError::Io("the test's storage fails".into()));
        }
        self.mem.write(batch).await
    }
}

#[wasm_bindgen_test]
async fn write_behind_passes_conformance() {
    conformance::run_all(|| async { WriteBehind::new(MemoryStorage::new()) }).await;
    conformance::run_all(|| async { WriteBehind::new(fresh_idb("write-behind").await) }).await;
}

/// Writes return once queued, reads see them at once, the storage beneath gets them in order
/// (merged), and `durable` resolves only once they are committed there.
#[wasm_bindgen_test]
async fn write_behind_is_durable_only_after_the_commit() {
    use futures_util::FutureExt;
    let base = Gated::default();
    let wb = WriteBehind::new(base.clone());
    // The same batches applied one by one, for comparison.
    let reference = MemoryStorage::new();
    for i in 0u8..5 {
        let b = batch(|b| {
            b.put(vec![i], vec![i; 3]);
            b.put(vec![100 + i], vec![i]);
            b.delete(vec![i.wrapping_sub(1)]);
            b.put_parts(b"last".to_vec(), vec![vec![i], vec![i]]);
            if i == 3 {
                // Over keys 100..=102 of earlier batches and this one's 103; 104 comes after.
                b.delete_range(vec![100], vec![104]);
            }
        });
        reference.write(b.clone()).await.unwrap();
        wb.write(b).await.expect("queued");
    }
    // Nothing is committed yet; reads see the queue.
    assert_eq!(base.mem.get(&[0]).await.unwrap(), None);
    assert_eq!(wb.get(&[4]).await.unwrap(), Some(vec![4; 3]));
    assert_eq!(
        wb.get(&[3]).await.unwrap(),
        None,
        "deleted by the next batch"
    );
    assert_eq!(wb.get(b"last").await.unwrap(), Some(vec![4, 4]));
    assert_eq!(wb.durable_seq(), 0);
    let mut durable = Box::pin(wb.durable());
    assert!(
        (&mut durable).now_or_never().is_none(),
        "durable before the commit"
    );
    base.open();
    durable.await.expect("durable");
    assert_eq!(wb.durable_seq(), 5);
    // All five were queued before the writer task first ran: one merged write.
    assert_eq!(base.state.writes.get(), 1);
    assert_eq!(wb.stats(), (1, 5));
    assert_eq!(base.mem.get(&[4]).await.unwrap(), Some(vec![4; 3]));
    assert_eq!(base.mem.get(&[3]).await.unwrap(), None);
    assert_eq!(base.mem.get(b"last").await.unwrap(), Some(vec![4, 4]));
    let all = reference.scan(&[0], &[255], None).await.unwrap();
    assert_eq!(base.mem.scan(&[0], &[255], None).await.unwrap(), all);
    assert_eq!(wb.scan(&[0], &[255], None).await.unwrap(), all);
    assert_eq!(wb.get(&[102]).await.unwrap(), None);
    assert_eq!(wb.get(&[104]).await.unwrap(), Some(vec![4]));
}

/// A failed commit beneath stops everything after it: later writes, reads and `durable` fail,
/// and nothing queued after the failed write reaches the storage beneath.
#[wasm_bindgen_test]
async fn write_behind_fails_for_good_after_a_failed_commit() {
    let base = Gated::default();
    let wb = WriteBehind::new(base.clone());
    wb.write(batch(|b| {
        b.put(b"a".to_vec(), b"1".to_vec());
    }))
    .await
    .expect("queued");
    base.open();
    wb.durable().await.expect("committed");
    base.state.fail.set(true);
    base.state.open.set(false);
    for k in [b"b", b"c"] {
        wb.write(batch(|b| {
            b.put(k.to_vec(), b"2".to_vec());
        }))
        .await
        .expect("queued");
    }
    base.open();
    assert!(matches!(wb.durable().await, Err(StorageError::Io(_))));
    assert!(wb
        .write(batch(|b| {
            b.put(b"d".to_vec(), b"3".to_vec());
        }))
        .await
        .is_err());
    assert!(wb.get(b"a").await.is_err());
    assert!(wb.scan(b"a", b"z", None).await.is_err());
    // The write of "b" and "c" (merged: both were queued before the writer ran) failed beneath.
    assert_eq!(base.state.writes.get(), 2);
    assert_eq!(base.mem.get(b"a").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(base.mem.get(b"c").await.unwrap(), None);
}
