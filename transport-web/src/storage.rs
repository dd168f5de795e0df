//! [`IdbStorage`]: the [`Storage`] backend of the browser, on IndexedDB.
//!
//! One IndexedDB database per store name, holding one object store (`kv`). Keys are binary keys
//! (`Uint8Array` in, `ArrayBuffer` out): IndexedDB orders binary keys bytewise, exactly the order
//! the [`Storage`] trait requires. Values are `Uint8Array`s.
//!
//! - [`Storage::write`] is one `readwrite` transaction with `durability: "strict"`; its future
//!   resolves on the transaction's `complete` event, so a resolved batch is on disk and a failed
//!   one left nothing behind (IndexedDB transactions are atomic).
//! - [`Storage::get_many`] and [`Storage::scan`] each run in one `readonly` transaction, so they
//!   read a consistent snapshot.
//!
//! When another connection asks for a version change (another tab deleting or upgrading the
//! database), this connection closes itself instead of blocking it; later calls then fail with
//! [`StorageError::Unavailable`].

use hyperpunch_core::storage::{Batch, Entries, Op, Storage, StorageError};
use indexed_db_futures::database::Database;
use indexed_db_futures::error::{DomException, Error as IdbError, OpenDbError};
use indexed_db_futures::internals::SystemRepr;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::{TransactionDurability, TransactionMode, TransactionOptions};
use indexed_db_futures::KeyRange;
use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

/// Name of the single object store inside each database.
const STORE: &str = "kv";
/// Schema version of the databases this backend creates.
const SCHEMA_VERSION: u32 = 1;

/// An ordered key-value [`Storage`] on one IndexedDB database. See the module docs.
///
/// Dropping it closes the connection (after its pending transactions finish).
pub struct IdbStorage {
    name: String,
    db: Database,
    /// Keeps the `versionchange` handler alive for as long as the connection is.
    _on_version_change: Closure<dyn FnMut()>,
}

impl std::fmt::Debug for IdbStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdbStorage")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl IdbStorage {
    /// Open (creating it if needed) the database named `name`.
    ///
    /// Fails with [`StorageError::Unavailable`] when IndexedDB is not available (no `indexedDB`
    /// global, private mode restrictions) or the open request is refused, and with
    /// [`StorageError::Corrupt`] when a database of that name exists but was not created by this
    /// backend.
    pub async fn open(name: &str) -> Result<Self, StorageError> {
        let db = Database::open(name)
            .with_version(SCHEMA_VERSION)
            .with_on_upgrade_needed(|event, db| {
                // A fresh database (old version 0) gets the object store. There is no older
                // schema to migrate from yet.
                if event.old_version() < 1.0 {
                    db.create_object_store(STORE).build()?;
                }
                Ok(())
            })
            .await
            .map_err(|e| open_error(name, e))?;
        if !db.object_store_names().any(|s| s == STORE) {
            db.close();
            return Err(StorageError::Corrupt(format!(
                "IndexedDB database {name:?} has no {STORE:?} object store"
            )));
        }
        let raw: web_sys::IdbDatabase = db.as_sys().clone().unchecked_into();
        let on_version_change = Closure::<dyn FnMut()>::new({
            let raw = raw.clone();
            move || raw.close()
        });
        raw.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        Ok(IdbStorage {
            name: name.to_owned(),
            db,
            _on_version_change: on_version_change,
        })
    }

    /// Delete the database named `name` and everything in it (used by tests).
    ///
    /// Open [`IdbStorage`]s on it close themselves when asked; the future resolves once the
    /// database is gone.
    pub async fn delete_database(name: &str) -> Result<(), StorageError> {
        Database::delete_by_name(name)
            .map_err(|e| open_error(name, e))?
            .await
            .map_err(|e| op_error("deleteDatabase", e))
    }

    /// The database name this store was opened with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A transaction on the object store.
    fn transaction(
        &self,
        mode: TransactionMode,
    ) -> Result<indexed_db_futures::transaction::Transaction<'_>, StorageError> {
        let tx = if mode == TransactionMode::Readwrite {
            self.db
                .transaction(STORE)
                .with_mode(mode)
                .with_options(
                    TransactionOptions::new().with_durability(TransactionDurability::Strict),
                )
                .build()
        } else {
            self.db.transaction(STORE).with_mode(mode).build()
        };
        tx.map_err(|e| op_error("transaction", e))
    }
}

impl Drop for IdbStorage {
    fn drop(&mut self) {
        let raw: &web_sys::IdbDatabase = self.db.as_sys().unchecked_ref();
        raw.set_onversionchange(None);
        raw.close();
    }
}

/// A key as a JS binary key.
fn key_js(key: &[u8]) -> JsValue {
    Uint8Array::from(key).into()
}

/// A value as a JS `Uint8Array`.
fn value_js(value: &[u8]) -> JsValue {
    Uint8Array::from(value).into()
}

/// Bytes of a key or value read back: keys come back as `ArrayBuffer`, values as the `Uint8Array`
/// that was stored. Anything else was not written by this backend.
fn bytes_of(what: &str, js: JsValue) -> Result<Vec<u8>, StorageError> {
    if let Some(buf) = js.dyn_ref::<ArrayBuffer>() {
        return Ok(Uint8Array::new(buf).to_vec());
    }
    if let Some(arr) = js.dyn_ref::<Uint8Array>() {
        return Ok(arr.to_vec());
    }
    Err(StorageError::Corrupt(format!(
        "IndexedDB returned a {what} that is neither an ArrayBuffer nor a Uint8Array: {js:?}"
    )))
}

/// The key range `start..end` (callers ensure `start < end`).
fn range_js(start: &[u8], end: &[u8]) -> KeyRange<JsValue> {
    KeyRange::Bound(key_js(start), false, key_js(end), true)
}

/// A failed operation, classified.
fn op_error(op: &str, e: IdbError) -> StorageError {
    match e {
        IdbError::DomException(DomException::InvalidStateError(ex)) => StorageError::Unavailable(
            format!("IndexedDB {op}: connection closed: {}", ex.message()),
        ),
        IdbError::DomException(DomException::AbortError(ex)) => StorageError::Io(format!(
            "IndexedDB {op}: transaction aborted: {}",
            ex.message()
        )),
        IdbError::Serialisation(e) => {
            StorageError::Corrupt(format!("IndexedDB {op}: unexpected value: {e}"))
        }
        e => StorageError::Io(format!("IndexedDB {op}: {e}")),
    }
}

/// A failed open or delete of a database, classified.
fn open_error(name: &str, e: OpenDbError) -> StorageError {
    match e {
        OpenDbError::Base(e) => op_error(&format!("open {name:?}"), e),
        e => StorageError::Unavailable(format!("IndexedDB open {name:?}: {e}")),
    }
}

impl Storage for IdbStorage {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.transaction(TransactionMode::Readonly)?;
        let store = tx
            .object_store(STORE)
            .map_err(|e| op_error("objectStore", e))?;
        let value: Option<JsValue> = store
            .get(key_js(key))
            .primitive()
            .map_err(|e| op_error("get", e))?
            .await
            .map_err(|e| op_error("get", e))?;
        value.map(|v| bytes_of("value", v)).transpose()
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.transaction(TransactionMode::Readonly)?;
        let store = tx
            .object_store(STORE)
            .map_err(|e| op_error("objectStore", e))?;
        // Issue every request before awaiting any: one transaction, one round of events.
        let requests = keys
            .iter()
            .map(|k| store.get(key_js(k)).primitive())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| op_error("get", e))?;
        let mut out = Vec::with_capacity(keys.len());
        for req in requests {
            let value: Option<JsValue> = req.await.map_err(|e| op_error("get", e))?;
            out.push(value.map(|v| bytes_of("value", v)).transpose()?);
        }
        Ok(out)
    }

    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> Result<Entries, StorageError> {
        if start >= end || limit == Some(0) {
            return Ok(Vec::new());
        }
        let tx = self.transaction(TransactionMode::Readonly)?;
        let store = tx
            .object_store(STORE)
            .map_err(|e| op_error("objectStore", e))?;
        // getAllKeys and getAll over the same range in the same readonly transaction see the same
        // snapshot, so the i-th key belongs to the i-th value.
        let (keys, values) = match limit.map(u32::try_from) {
            Some(Ok(n)) => (
                store
                    .get_all_keys::<JsValue>()
                    .with_query::<JsValue, _>(range_js(start, end))
                    .with_limit(n)
                    .primitive(),
                store
                    .get_all::<JsValue>()
                    .with_query::<JsValue, _>(range_js(start, end))
                    .with_limit(n)
                    .primitive(),
            ),
            // No limit, or one beyond what IndexedDB can express: everything in range.
            None | Some(Err(_)) => (
                store
                    .get_all_keys::<JsValue>()
                    .with_query::<JsValue, _>(range_js(start, end))
                    .primitive(),
                store
                    .get_all::<JsValue>()
                    .with_query::<JsValue, _>(range_js(start, end))
                    .primitive(),
            ),
        };
        let keys = keys.map_err(|e| op_error("getAllKeys", e))?;
        let values = values.map_err(|e| op_error("getAll", e))?;
        let keys = keys.await.map_err(|e| op_error("getAllKeys", e))?;
        let values = values.await.map_err(|e| op_error("getAll", e))?;
        let mut out = Vec::new();
        let mut values = values.into_iter();
        for key in keys {
            let key = key.map_err(|e| op_error("getAllKeys", e))?;
            let value = values
                .next()
                .ok_or_else(|| {
                    StorageError::Corrupt("IndexedDB getAll returned fewer values than keys".into())
                })?
                .map_err(|e| op_error("getAll", e))?;
            out.push((bytes_of("key", key)?, bytes_of("value", value)?));
        }
        if values.next().is_some() {
            return Err(StorageError::Corrupt(
                "IndexedDB getAll returned more values than keys".into(),
            ));
        }
        Ok(out)
    }

    async fn write(&self, batch: Batch) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self.transaction(TransactionMode::Readwrite)?;
        let store = tx
            .object_store(STORE)
            .map_err(|e| op_error("objectStore", e))?;
        // Requests run in the order they are issued. Their own futures are not awaited: a failed
        // request aborts the transaction, which `commit` reports.
        for op in batch.ops.into_iter().map(Op::joined) {
            match &op {
                Op::PutParts(..) => {} // joined above
                Op::Put(k, v) => {
                    let _request = store
                        .put(value_js(v))
                        .with_key(key_js(k))
                        .without_key_type()
                        .primitive()
                        .map_err(|e| op_error("put", e))?;
                }
                Op::Delete(k) => {
                    let _request = store
                        .delete(key_js(k))
                        .primitive()
                        .map_err(|e| op_error("delete", e))?;
                }
                Op::DeleteRange(s, e) => {
                    if s < e {
                        let _request = store
                            .delete::<JsValue, _>(range_js(s, e))
                            .primitive()
                            .map_err(|e| op_error("delete range", e))?;
                    }
                }
            }
        }
        // `commit` resolves on the transaction's `complete` event (strict durability: flushed).
        tx.commit().await.map_err(|e| op_error("commit", e))
    }
}
