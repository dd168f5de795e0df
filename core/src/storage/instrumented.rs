//! [`Instrumented`]: a [`Storage`] wrapper for tests and fault injection.

use core::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{Batch, Entries, MaybeSend, Storage, StorageError};

type Observer = Arc<dyn Fn(&Batch) + Send + Sync>;

/// A [`Storage`] that passes everything through to `inner` and, on writes: fails them when
/// told to (all of them, or every one past a budget), counts the ones it lets through and shows
/// each of those batches to an observer. Clones share the counters and the settings, so a test
/// keeps one clone and hands the other to the code under test.
#[derive(Clone)]
pub struct Instrumented<S> {
    inner: S,
    /// Writes that reached `inner`.
    writes: Arc<AtomicU64>,
    /// How many more writes may reach `inner` (`usize::MAX`: no limit).
    budget: Arc<AtomicUsize>,
    observer: Arc<Mutex<Option<Observer>>>,
}

impl<S: Default> Default for Instrumented<S> {
    fn default() -> Self {
        Self::new(S::default())
    }
}

impl<S> Instrumented<S> {
    /// `inner`, with no failures and no observer.
    pub fn new(inner: S) -> Self {
        Instrumented {
            inner,
            writes: Arc::new(AtomicU64::new(0)),
            budget: Arc::new(AtomicUsize::new(usize::MAX)),
            observer: Arc::new(Mutex::new(None)),
        }
    }

    /// The wrapped storage (reads and writes there bypass the wrapper).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The writes that reached the wrapped storage so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Fail every write from now on (`true`), or none (`false`).
    pub fn fail_writes(&self, fail: bool) {
        self.budget
            .store(if fail { 0 } else { usize::MAX }, Ordering::SeqCst);
    }

    /// Let `writes` more writes through, then fail every one after them.
    pub fn allow_writes(&self, writes: usize) {
        self.budget.store(writes, Ordering::SeqCst);
    }

    /// Show every batch that goes through to `observer` (before it is written).
    pub fn observe(&self, observer: impl Fn(&Batch) + Send + Sync + 'static) {
        *self.observer.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(observer));
    }

    fn admit(&self, batch: &Batch) -> Result<(), StorageError> {
        let taken =
            self.budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                    0 => None,
                    usize::MAX => Some(usize::MAX),
                    n => Some(n - 1),
                });
        if taken.is_err() {
            return Err(StorageError::Io("injected write failure".into()));
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        let observer = self
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(f) = observer {
            f(batch);
        }
        Ok(())
    }
}

impl<S: Storage> Storage for Instrumented<S> {
    fn get(
        &self,
        key: &[u8],
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StorageError>> + MaybeSend {
        self.inner.get(key)
    }
    fn get_many(
        &self,
        keys: &[Vec<u8>],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>, StorageError>> + MaybeSend {
        self.inner.get_many(keys)
    }
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Entries, StorageError>> + MaybeSend {
        self.inner.scan(start, end, limit)
    }
    fn write(&self, batch: Batch) -> impl Future<Output = Result<(), StorageError>> + MaybeSend {
        let admitted = self.admit(&batch);
        let write = self.inner.write(batch);
        async move {
            admitted?;
            write.await
        }
    }
}
