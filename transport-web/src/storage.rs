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
//! - Large values (at least [`FILE_VALUE_MIN`] bytes: hypercore's block records) go to the
//!   store's data file on the Origin Private File System (the crate's `opfs` module) and the IndexedDB record
//!   is a pointer to them, `[offset, length]` (a JS array; other values stay `Uint8Array`s). A write
//!   appends the batch's large values to the file and flushes it, then commits the pointers with
//!   the rest of the batch in one transaction: the transaction stays the commit point, so a batch
//!   is still all or nothing (bytes appended by a batch that then failed are never pointed at).
//!   Writes reach IndexedDB in the order they were called, whether or not they had large values.
//!   Where no data file can be opened (no OPFS, no workers, the file held by another tab) the
//!   store keeps large values in IndexedDB as before, and a pointer it cannot follow reads as
//!   [`StorageError::Unavailable`]. Stores written before data files existed (every value inline)
//!   read as they are.
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
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::task::{Poll, Waker};

use js_sys::Array;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use crate::opfs::DataFile;

/// Name of the single object store inside each database.
const STORE: &str = "kv";
/// Schema version of the databases this backend creates.
const SCHEMA_VERSION: u32 = 1;
/// Values of at least this many bytes go to the data file (when the store has one).
pub const FILE_VALUE_MIN: usize = 8 * 1024;
/// The longest value a pointer may claim (larger ones are corrupt records).
const FILE_VALUE_MAX: f64 = (1u64 << 32) as f64;

/// An ordered key-value [`Storage`] on one IndexedDB database. See the module docs.
///
/// Dropping it closes the connection (after its pending transactions finish).
pub struct IdbStorage {
    name: String,
    db: Database,
    /// Where large values go; `Err`: why this store has none (large values stay inline).
    data: Result<DataFile, String>,
    /// Gives writes their turn at IndexedDB in the order they were called.
    turns: Turns,
    /// Keeps the `versionchange` handler alive for as long as the connection is.
    _on_version_change: Closure<dyn FnMut()>,
}

/// Tickets in call order: a write takes one when it starts and creates its transaction only when
/// every earlier write created theirs (or gave up), even if its data file append answered first.
#[derive(Default)]
struct Turns {
    next: Cell<u64>,
    serving: Cell<u64>,
    /// Tickets dropped before their turn: skipped when it comes.
    gone: RefCell<BTreeSet<u64>>,
    waiting: RefCell<Vec<Waker>>,
}

impl Turns {
    fn take(&self) -> Ticket<'_> {
        let n = self.next.get();
        self.next.set(n + 1);
        Ticket {
            turns: self,
            n,
            done: false,
        }
    }
    fn advance(&self) {
        let mut s = self.serving.get() + 1;
        {
            let mut gone = self.gone.borrow_mut();
            while gone.remove(&s) {
                s += 1;
            }
        }
        self.serving.set(s);
        for w in self.waiting.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

struct Ticket<'a> {
    turns: &'a Turns,
    n: u64,
    done: bool,
}

impl Ticket<'_> {
    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.turns.serving.get() == self.n {
                Poll::Ready(())
            } else {
                self.turns.waiting.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
    /// This write created its transaction: the next may go.
    fn finish(mut self) {
        self.done = true;
        self.turns.advance();
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.turns.serving.get() == self.n {
            self.turns.advance();
        } else {
            self.turns.gone.borrow_mut().insert(self.n);
        }
    }
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
        let data = DataFile::open(name).await.map_err(|e| {
            let why = format!("no OPFS data file for IndexedDB store {name:?}: {e}");
            web_sys::console::warn_1(
                &format!("hyperpunch: {why}; large values stay in IndexedDB").into(),
            );
            why
        });
        Ok(IdbStorage {
            name: name.to_owned(),
            db,
            data,
            turns: Turns::default(),
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
            .map_err(|e| op_error("deleteDatabase", e))?;
        // The data file goes with it (where there is no OPFS there is no file either).
        if let Err(e) = DataFile::remove(name).await {
            web_sys::console::warn_1(
                &format!("hyperpunch: could not remove the OPFS data file of {name:?}: {e}").into(),
            );
        }
        Ok(())
    }

    /// Whether this store keeps large values in an OPFS data file (else all in IndexedDB).
    pub fn has_data_file(&self) -> bool {
        self.data.is_ok()
    }

    /// Values read from IndexedDB as bytes: pointers followed into the data file (one read for
    /// all of them).
    async fn resolve(
        &self,
        values: Vec<Option<JsValue>>,
    ) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let mut out = Vec::with_capacity(values.len());
        let mut spans = Vec::new();
        let mut at = Vec::new();
        for (i, v) in values.into_iter().enumerate() {
            match v {
                None => out.push(None),
                Some(v) => match pointer_of(&v)? {
                    Some(span) => {
                        spans.push(span);
                        at.push(i);
                        out.push(None);
                    }
                    None => out.push(Some(bytes_of("value", v)?)),
                },
            }
        }
        if spans.is_empty() {
            return Ok(out);
        }
        let data = self.data.as_ref().map_err(|why| {
            StorageError::Unavailable(format!(
                "IndexedDB store {:?} has values in its OPFS data file, which is unavailable ({why})",
                self.name
            ))
        })?;
        let bytes = data.read(&spans).await.map_err(|e| {
            StorageError::Io(format!("OPFS data file of {:?}: read: {e}", self.name))
        })?;
        for (i, b) in at.into_iter().zip(bytes) {
            out[i] = Some(b);
        }
        Ok(out)
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

/// The `(offset, length)` of a pointer record (a JS array of two numbers), `None` for any other
/// value; an array that is no valid pointer is corrupt.
fn pointer_of(v: &JsValue) -> Result<Option<(u64, u64)>, StorageError> {
    if !Array::is_array(v) {
        return Ok(None);
    }
    let a: &Array = v.unchecked_ref();
    let num = |x: JsValue| {
        x.as_f64()
            .filter(|n| n.is_finite() && *n >= 0.0 && n.fract() == 0.0 && *n <= 9007199254740991.0)
    };
    match (a.length(), num(a.get(0)), num(a.get(1))) {
        (2, Some(off), Some(len)) if len <= FILE_VALUE_MAX => Ok(Some((off as u64, len as u64))),
        _ => Err(StorageError::Corrupt(format!(
            "IndexedDB value is an array but no data file pointer: {v:?}"
        ))),
    }
}

/// The pointer record of `len` bytes at `offset` of the data file.
fn pointer_js(offset: u64, len: usize) -> JsValue {
    Array::of2(&JsValue::from(offset as f64), &JsValue::from(len as f64)).into()
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
        Ok(self.resolve(vec![value]).await?.pop().flatten())
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
            out.push(value);
        }
        self.resolve(out).await
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
        let mut out_keys = Vec::new();
        let mut out_values = Vec::new();
        let mut values = values.into_iter();
        for key in keys {
            let key = key.map_err(|e| op_error("getAllKeys", e))?;
            let value = values
                .next()
                .ok_or_else(|| {
                    StorageError::Corrupt("IndexedDB getAll returned fewer values than keys".into())
                })?
                .map_err(|e| op_error("getAll", e))?;
            out_keys.push(bytes_of("key", key)?);
            out_values.push(Some(value));
        }
        if values.next().is_some() {
            return Err(StorageError::Corrupt(
                "IndexedDB getAll returned more values than keys".into(),
            ));
        }
        let values = self.resolve(out_values).await?;
        Ok(out_keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect())
    }

    async fn write(&self, batch: Batch) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let ticket = self.turns.take();
        let mut ops = batch.ops;
        // Large values first go to the data file (appended and flushed before the transaction
        // that points at them); `offsets[i]`: where op i's value starts there, and its length.
        // They are copied out of wasm memory once, into one buffer for the whole batch, which
        // is transferred to the worker (not copied again); their ops need no joined copy.
        let mut offsets: Vec<Option<(u64, usize)>> = vec![None; ops.len()];
        if let Ok(data) = &self.data {
            let mut at = 0u64;
            for (i, op) in ops.iter().enumerate() {
                let len = match op {
                    Op::Put(_, v) => v.len(),
                    Op::PutParts(_, parts) => parts.iter().map(Vec::len).sum(),
                    _ => 0,
                };
                if len >= FILE_VALUE_MIN {
                    offsets[i] = Some((at, len));
                    at += len as u64;
                }
            }
            if at > 0 {
                let total = u32::try_from(at).map_err(|_| {
                    StorageError::Io(format!(
                        "OPFS data file of {:?}: a batch of {at} bytes of large values",
                        self.name
                    ))
                })?;
                let buf = Uint8Array::new_with_length(total);
                let put = |at: u64, bytes: &[u8]| {
                    let at = at as u32;
                    buf.subarray(at, at + bytes.len() as u32).copy_from(bytes);
                };
                for (op, off) in ops.iter().zip(&offsets) {
                    let Some((mut at, _)) = *off else { continue };
                    match op {
                        Op::Put(_, v) => put(at, v),
                        Op::PutParts(_, parts) => {
                            for p in parts {
                                put(at, p);
                                at += p.len() as u64;
                            }
                        }
                        _ => {}
                    }
                }
                let start = data
                    .append(buf.buffer())
                    .map_err(|e| {
                        StorageError::Io(format!("OPFS data file of {:?}: {e}", self.name))
                    })?
                    .await
                    .map_err(|e| {
                        StorageError::Io(format!("OPFS data file of {:?}: append: {e}", self.name))
                    })?;
                for (o, _) in offsets.iter_mut().flatten() {
                    *o += start;
                }
            }
        }
        // Values that stay in IndexedDB in one piece.
        for (op, off) in ops.iter_mut().zip(&offsets) {
            if off.is_none() && matches!(op, Op::PutParts(..)) {
                let taken = std::mem::replace(op, Op::Delete(Vec::new()));
                *op = taken.joined();
            }
        }
        ticket.wait().await;
        let tx = self.transaction(TransactionMode::Readwrite)?;
        let store = tx
            .object_store(STORE)
            .map_err(|e| op_error("objectStore", e))?;
        // Requests run in the order they are issued. Their own futures are not awaited: a failed
        // request aborts the transaction, which `commit` reports.
        for (op, offset) in ops.iter().zip(offsets) {
            match op {
                Op::PutParts(k, _) | Op::Put(k, _) if offset.is_some() => {
                    let Some((o, len)) = offset else { continue };
                    let _request = store
                        .put(pointer_js(o, len))
                        .with_key(key_js(k))
                        .without_key_type()
                        .primitive()
                        .map_err(|e| op_error("put", e))?;
                }
                Op::PutParts(..) => {} // joined above
                Op::Put(k, v) => {
                    let value = value_js(v);
                    let _request = store
                        .put(value)
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
        // The transaction exists and holds every request: later writes may create theirs.
        ticket.finish();
        // `commit` resolves on the transaction's `complete` event (strict durability: flushed).
        tx.commit().await.map_err(|e| op_error("commit", e))
    }
}
