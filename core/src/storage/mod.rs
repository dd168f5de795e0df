//! The storage trait every hypercore sits on, and the in-memory backend.
//!
//! A [`Storage`] is an ordered key-value store holding one core (or, through [`Prefixed`], one
//! namespace of a larger store). Reads are point gets and range scans; writes go in a [`Batch`] that
//! is applied atomically: after a crash either all of a batch is there or none of it is.
//!
//! Three backends implement it and run one conformance suite ([`conformance`]): [`MemoryStorage`]
//! here, the native file backend in `hyperpunch` (transport-native) and the IndexedDB backend in
//! `hyperpunch-web`. The trait's methods return futures because IndexedDB is asynchronous; the core
//! never performs I/O itself, it only awaits what the backend it was handed returns.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

pub mod conformance;
mod instrumented;

pub use instrumented::Instrumented;

/// `Send` on native targets, nothing on wasm (where futures and JS handles are not `Send`).
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
/// `Send` on native targets, nothing on wasm (where futures and JS handles are not `Send`).
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// `Sync` on native targets, nothing on wasm.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSync: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync + ?Sized> MaybeSync for T {}
/// `Sync` on native targets, nothing on wasm.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSync for T {}

/// A storage backend failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The backend reported an I/O error.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// Stored bytes are not what was written (detected by the backend or by a decoder above it).
    #[error("storage corrupt: {0}")]
    Corrupt(String),
    /// The store was closed or is locked by another process.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// One write operation of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Set `key` to the concatenation of the parts: the same as a [`Op::Put`] of their bytes one
    /// after the other (reads give back one value), for a writer whose value is in pieces it
    /// owns already (hypercore's chunk header and a received block): a backend may write the
    /// pieces as they are (the file backend: one vectored write) instead of copying them into one.
    PutParts(Vec<u8>, Vec<Vec<u8>>),
    /// Remove `key` (no error if absent).
    Delete(Vec<u8>),
    /// Remove every key in `start..end` (end exclusive).
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// Writes applied atomically and in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The operations, applied first to last.
    pub ops: Vec<Op>,
}

impl Op {
    /// The key a put or delete writes (`None` for a range delete).
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Op::Put(k, _) | Op::PutParts(k, _) | Op::Delete(k) => Some(k),
            Op::DeleteRange(..) => None,
        }
    }
    /// `self` with an [`Op::PutParts`] turned into the [`Op::Put`] of its bytes (for backends
    /// that store a value in one piece anyway); other ops as they are.
    pub fn joined(self) -> Op {
        match self {
            Op::PutParts(k, parts) => Op::Put(k, join(parts)),
            op => op,
        }
    }
}

/// The parts one after the other (no copy when there is only one).
pub fn join(mut parts: Vec<Vec<u8>>) -> Vec<u8> {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for p in &parts {
        out.extend_from_slice(p);
    }
    out
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Queue a put.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::Put(key.into(), value.into()));
        self
    }
    /// Queue a put of the concatenation of `parts` ([`Op::PutParts`]).
    pub fn put_parts(&mut self, key: impl Into<Vec<u8>>, parts: Vec<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::PutParts(key.into(), parts));
        self
    }
    /// Queue a delete.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::Delete(key.into()));
        self
    }
    /// Queue a range delete of `start..end`.
    pub fn delete_range(
        &mut self,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.ops.push(Op::DeleteRange(start.into(), end.into()));
        self
    }
    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Key/value pairs returned by a scan, in ascending key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// An ordered key-value store with atomic batches. See the module docs.
pub trait Storage: MaybeSend + MaybeSync {
    /// The value at `key`.
    fn get(
        &self,
        key: &[u8],
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StorageError>> + MaybeSend;

    /// The values at `keys`, in the same order (backends may do this in one round trip).
    fn get_many(
        &self,
        keys: &[Vec<u8>],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>, StorageError>> + MaybeSend;

    /// Every entry with `start <= key < end`, ascending, at most `limit` of them (`None`: all).
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Entries, StorageError>> + MaybeSend;

    /// Apply `batch` atomically. When the future resolves the batch survives a process kill.
    fn write(&self, batch: Batch) -> impl Future<Output = Result<(), StorageError>> + MaybeSend;
}

/// In-memory backend: a shared ordered map. Clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    map: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A poisoned lock only means another thread panicked mid-batch; batches are applied
        // under one lock acquisition, so the map itself is still consistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Storage for MemoryStorage {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().get(key).cloned())
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let m = self.lock();
        Ok(keys.iter().map(|k| m.get(k).cloned()).collect())
    }

    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> Result<Entries, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let m = self.lock();
        Ok(
            m.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
                .take(limit.unwrap_or(usize::MAX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    async fn write(&self, batch: Batch) -> Result<(), StorageError> {
        let mut m = self.lock();
        for op in batch.ops {
            match op {
                Op::Put(k, v) => {
                    m.insert(k, v);
                }
                Op::PutParts(k, parts) => {
                    m.insert(k, join(parts));
                }
                Op::Delete(k) => {
                    m.remove(&k);
                }
                Op::DeleteRange(s, e) => {
                    if s < e {
                        let doomed: Vec<Vec<u8>> = m
                            .range::<[u8], _>((
                                Bound::Included(s.as_slice()),
                                Bound::Excluded(e.as_slice()),
                            ))
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            m.remove(&k);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A shared backend is a backend: lets one store that cannot be cloned (e.g. IndexedDB) sit under
/// several [`Prefixed`] views.
impl<S: Storage + ?Sized> Storage for Arc<S> {
    fn get(
        &self,
        key: &[u8],
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StorageError>> + MaybeSend {
        (**self).get(key)
    }
    fn get_many(
        &self,
        keys: &[Vec<u8>],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>, StorageError>> + MaybeSend {
        (**self).get_many(keys)
    }
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Entries, StorageError>> + MaybeSend {
        (**self).scan(start, end, limit)
    }
    fn write(&self, batch: Batch) -> impl Future<Output = Result<(), StorageError>> + MaybeSend {
        (**self).write(batch)
    }
}

/// On wasm (one thread, JS handles that are neither `Send` nor `Sync`) a backend shares through
/// an `Rc`, e.g. one IndexedDB database under the many [`Prefixed`] views of a corestore.
#[cfg(target_arch = "wasm32")]
impl<S: Storage + ?Sized> Storage for std::rc::Rc<S> {
    fn get(
        &self,
        key: &[u8],
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StorageError>> + MaybeSend {
        (**self).get(key)
    }
    fn get_many(
        &self,
        keys: &[Vec<u8>],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>, StorageError>> + MaybeSend {
        (**self).get_many(keys)
    }
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Entries, StorageError>> + MaybeSend {
        (**self).scan(start, end, limit)
    }
    fn write(&self, batch: Batch) -> impl Future<Output = Result<(), StorageError>> + MaybeSend {
        (**self).write(batch)
    }
}

/// A view of a storage under a key prefix (one core inside a shared store).
#[derive(Debug, Clone)]
pub struct Prefixed<S> {
    inner: S,
    prefix: Vec<u8>,
}

impl<S> Prefixed<S> {
    /// Keys of this view are `prefix ‖ key` in `inner`.
    pub fn new(inner: S, prefix: impl Into<Vec<u8>>) -> Self {
        Prefixed {
            inner,
            prefix: prefix.into(),
        }
    }
    /// The prefix of every key of this view.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }
    /// The storage under the view.
    pub fn inner(&self) -> &S {
        &self.inner
    }
    /// `batch` with this view's prefix on every key: the same writes, to apply to
    /// [`Prefixed::inner`] directly (e.g. together with writes outside the view, in one atomic
    /// batch).
    pub fn to_inner(&self, batch: Batch) -> Batch {
        Batch {
            ops: batch
                .ops
                .into_iter()
                .map(|op| match op {
                    Op::Put(k, v) => Op::Put(self.k(&k), v),
                    Op::PutParts(k, parts) => Op::PutParts(self.k(&k), parts),
                    Op::Delete(k) => Op::Delete(self.k(&k)),
                    Op::DeleteRange(s, e) => Op::DeleteRange(self.k(&s), self.k(&e)),
                })
                .collect(),
        }
    }
    fn k(&self, key: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.prefix.len() + key.len());
        v.extend_from_slice(&self.prefix);
        v.extend_from_slice(key);
        v
    }
}

impl<S: Storage> Storage for Prefixed<S> {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(&self.k(key)).await
    }
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| self.k(k)).collect();
        self.inner.get_many(&keys).await
    }
    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> Result<Entries, StorageError> {
        let p = self.prefix.len();
        let mut out = self.inner.scan(&self.k(start), &self.k(end), limit).await?;
        for (k, _) in out.iter_mut() {
            k.drain(..p);
        }
        Ok(out)
    }
    async fn write(&self, batch: Batch) -> Result<(), StorageError> {
        self.inner.write(self.to_inner(batch)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_backend_passes_conformance() {
        futures_executor::block_on(conformance::run_all(|| async { MemoryStorage::new() }));
    }

    #[test]
    fn prefixed_memory_backend_passes_conformance() {
        futures_executor::block_on(conformance::run_all(|| async {
            let shared = MemoryStorage::new();
            // Another namespace next door must never leak into this one.
            let mut b = Batch::new();
            b.put(b"other/zz".to_vec(), b"x".to_vec());
            shared.write(b).await.unwrap();
            Prefixed::new(shared, b"core/".to_vec())
        }));
    }
}
