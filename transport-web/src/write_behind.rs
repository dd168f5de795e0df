//! [`WriteBehind`]: a [`Storage`] whose writes return once queued, committed to the storage
//! beneath in order by a task of their own, so that the page's replication keeps verifying,
//! requesting and answering while earlier batches are being stored.
//!
//! Why: a page stores a batch of received blocks in about 10 ms (the data file append in the
//! OPFS worker, then the strict IndexedDB commit; BENCHMARKS.md "Browser"), and the replication
//! hub awaits its storage write before it acts on the next messages or sends new requests. With
//! the write behind, the hub goes on at once and the batches that arrive meanwhile are committed
//! together in the next write (a group commit).
//!
//! Durability stays honest, but it is no longer what a resolved [`Storage::write`] means: a
//! write here resolves when it is queued, and [`WriteBehind::durable`] resolves once every write
//! queued before the call is committed by the storage beneath (for [`IdbStorage`]: its large
//! values appended to the data file and flushed, then the transaction holding their pointers
//! complete). Whoever tells the user that something is stored (the page's `download`, `append`,
//! the `download` events, the getters' lengths) waits for that first (`js.rs`).
//!
//! - Order and atomicity: batches reach the storage beneath in the order they were queued, one
//!   write at a time, several queued batches merged into one (their ops in order, those a later
//!   op overrides left out, so the merged write has the effect of the batches one after the
//!   other, and being one atomic write, every prefix of the queue that was committed is a prefix
//!   of whole batches).
//! - Failure: once a write beneath fails, nothing after it is written, and every later call
//!   (writes, reads, [`WriteBehind::durable`]) fails with that error: the cores above hold state
//!   that never reached the storage, and must not go on as if it had. What was committed before
//!   stays consistent (whole batches, in order).
//! - Reads see every queued write: a key written by a batch not yet handed to the storage beneath
//!   is answered from the queue; a key of the batch being committed right now waits for that
//!   commit (the storage beneath may not show it yet), and a scan waits until everything queued
//!   before it is committed. Other keys are read beneath at once.
//! - Memory: at most [`MAX_QUEUED_BYTES`] of values wait in the queue; a write beyond that waits
//!   for room (the replication hub then waits too, as before).
//!
//! [`IdbStorage`]: crate::storage::IdbStorage

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use hyperpunch_core::storage::{Batch, Entries, Op, Storage, StorageError};

/// The most bytes of values queued and not yet handed to the storage beneath; a write beyond
/// that waits (one full request window of the page's replication, `js.rs`).
pub const MAX_QUEUED_BYTES: usize = 16 << 20;

/// See the module docs. Clones share the queue and the storage beneath.
pub struct WriteBehind<S> {
    inner: Rc<Inner<S>>,
}

impl<S> Clone for WriteBehind<S> {
    fn clone(&self) -> Self {
        WriteBehind {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for WriteBehind<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBehind")
            .field("queued", &self.inner.queued_seq.get())
            .field("durable", &self.inner.durable_seq.get())
            .finish_non_exhaustive()
    }
}

struct Inner<S> {
    base: S,
    /// Batches queued and not yet handed to the storage beneath, oldest first, with their
    /// sequence numbers.
    queue: RefCell<VecDeque<(u64, Batch)>>,
    /// Bytes of the values in `queue`.
    queued_bytes: Cell<usize>,
    /// What the write being committed now touches (keys, and range deletes).
    committing: RefCell<Touched>,
    /// Sequence number of the last batch queued.
    queued_seq: Cell<u64>,
    /// Sequence number of the last batch committed beneath.
    durable_seq: Cell<u64>,
    /// Why the storage beneath failed (then nothing more is written).
    failed: RefCell<Option<StorageError>>,
    /// Whether the writer task runs.
    writing: Cell<bool>,
    /// Tasks waiting for a commit, a failure or room.
    waiters: RefCell<Vec<Waker>>,
    /// Writes merged beneath so far, and batches they held (for the bench's counters).
    stats: Cell<(u64, u64)>,
}

/// The keys and ranges a write touches.
#[derive(Default)]
struct Touched {
    keys: BTreeSet<Vec<u8>>,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Touched {
    fn add(&mut self, op: &Op) {
        match op {
            Op::Put(k, _) | Op::PutParts(k, _) | Op::Delete(k) => {
                self.keys.insert(k.clone());
            }
            Op::DeleteRange(s, e) => self.ranges.push((s.clone(), e.clone())),
        }
    }
    fn has(&self, key: &[u8]) -> bool {
        self.keys.contains(key)
            || self
                .ranges
                .iter()
                .any(|(s, e)| s.as_slice() <= key && key < e.as_slice())
    }
    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.ranges.is_empty()
    }
}

fn value_bytes(op: &Op) -> usize {
    match op {
        Op::Put(k, v) => k.len() + v.len(),
        Op::PutParts(k, parts) => k.len() + parts.iter().map(Vec::len).sum::<usize>(),
        Op::Delete(k) => k.len(),
        Op::DeleteRange(s, e) => s.len() + e.len(),
    }
}

/// `batch` without the puts and deletes a later op of it overrides (a put or delete of the same
/// key, or a range delete over it): the same effect in fewer ops. The batches merged into one
/// write rewrite the same small records (the core's bitfield page, the low tree node page, the
/// header) once each; only the last of each is written.
fn compact(batch: Batch) -> Batch {
    let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    let mut ranges: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut kept: Vec<Op> = Vec::with_capacity(batch.ops.len());
    for op in batch.ops.into_iter().rev() {
        match &op {
            Op::DeleteRange(s, e) => ranges.push((s.clone(), e.clone())),
            Op::Put(k, _) | Op::PutParts(k, _) | Op::Delete(k) => {
                let covered = ranges
                    .iter()
                    .any(|(s, e)| s.as_slice() <= k.as_slice() && k.as_slice() < e.as_slice());
                if covered || !seen.insert(k.clone()) {
                    continue;
                }
            }
        }
        kept.push(op);
    }
    kept.reverse();
    Batch { ops: kept }
}

/// What the queue says of `key`: `Some(value or None for deleted)`, or `None` when no queued
/// batch touches it.
fn lookup(queue: &VecDeque<(u64, Batch)>, key: &[u8]) -> Option<Option<Vec<u8>>> {
    for (_, batch) in queue.iter().rev() {
        for op in batch.ops.iter().rev() {
            match op {
                Op::Put(k, v) if k.as_slice() == key => return Some(Some(v.clone())),
                Op::PutParts(k, parts) if k.as_slice() == key => return Some(Some(parts.concat())),
                Op::Delete(k) if k.as_slice() == key => return Some(None),
                Op::DeleteRange(s, e) if s.as_slice() <= key && key < e.as_slice() => {
                    return Some(None)
                }
                _ => {}
            }
        }
    }
    None
}

impl<S: Storage + 'static> WriteBehind<S> {
    /// Queue writes for `base` (see the module docs).
    pub fn new(base: S) -> Self {
        WriteBehind {
            inner: Rc::new(Inner {
                base,
                queue: RefCell::default(),
                queued_bytes: Cell::new(0),
                committing: RefCell::default(),
                queued_seq: Cell::new(0),
                durable_seq: Cell::new(0),
                failed: RefCell::new(None),
                writing: Cell::new(false),
                waiters: RefCell::default(),
                stats: Cell::new((0, 0)),
            }),
        }
    }

    /// The storage beneath.
    pub fn base(&self) -> &S {
        &self.inner.base
    }

    /// Sequence number of the last write queued (0: none yet).
    pub fn queued_seq(&self) -> u64 {
        self.inner.queued_seq.get()
    }

    /// Sequence number of the last write committed beneath: writes up to it are durable.
    pub fn durable_seq(&self) -> u64 {
        self.inner.durable_seq.get()
    }

    /// Writes committed beneath and the batches they merged, so far.
    pub fn stats(&self) -> (u64, u64) {
        self.inner.stats.get()
    }

    /// Resolves once every write queued before this call is committed beneath; fails with the
    /// error of the storage beneath if it failed (then they never will be).
    pub async fn durable(&self) -> Result<(), StorageError> {
        self.durable_until(self.queued_seq()).await
    }

    /// Resolves once write `seq` and those before it are committed beneath (see
    /// [`WriteBehind::durable`]).
    pub async fn durable_until(&self, seq: u64) -> Result<(), StorageError> {
        self.wait(|| self.inner.durable_seq.get() >= seq).await
    }

    fn check(&self) -> Result<(), StorageError> {
        match &*self.inner.failed.borrow() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Waits until `ready()` or the storage failed.
    async fn wait(&self, ready: impl Fn() -> bool) -> Result<(), StorageError> {
        poll_fn(|cx| {
            if let Err(e) = self.check() {
                return Poll::Ready(Err(e));
            }
            if ready() {
                return Poll::Ready(Ok(()));
            }
            self.inner.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn wake_all(inner: &Inner<S>) {
        let wakers = std::mem::take(&mut *inner.waiters.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// The writer: hands the queued batches beneath, merged, one write at a time.
    async fn run(inner: Rc<Inner<S>>) {
        loop {
            let (merged, last, count) = {
                let mut q = inner.queue.borrow_mut();
                if q.is_empty() {
                    inner.writing.set(false);
                    return;
                }
                let mut merged = Batch::new();
                let mut last = 0;
                let count = q.len() as u64;
                let mut touched = inner.committing.borrow_mut();
                for (seq, batch) in q.drain(..) {
                    for op in &batch.ops {
                        touched.add(op);
                    }
                    merged.ops.extend(batch.ops);
                    last = seq;
                }
                inner.queued_bytes.set(0);
                (compact(merged), last, count)
            };
            // Room in the queue again.
            Self::wake_all(&inner);
            let result = inner.base.write(merged).await;
            *inner.committing.borrow_mut() = Touched::default();
            match result {
                Ok(()) => {
                    inner.durable_seq.set(last);
                    let (w, b) = inner.stats.get();
                    inner.stats.set((w + 1, b + count));
                    Self::wake_all(&inner);
                }
                Err(e) => {
                    *inner.failed.borrow_mut() = Some(e);
                    inner.queue.borrow_mut().clear();
                    inner.writing.set(false);
                    Self::wake_all(&inner);
                    return;
                }
            }
        }
    }

    /// Waits while the write being committed touches `key` (the storage beneath may not show it
    /// yet), unless a queued batch answers for it.
    async fn settle(&self, keys: &[&[u8]]) -> Result<(), StorageError> {
        self.wait(|| {
            let c = self.inner.committing.borrow();
            if c.is_empty() {
                return true;
            }
            let q = self.inner.queue.borrow();
            keys.iter().all(|k| !c.has(k) || lookup(&q, k).is_some())
        })
        .await
    }
}

impl<S: Storage + 'static> Storage for WriteBehind<S> {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.get_many(&[key.to_vec()]).await?.pop().flatten())
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        self.settle(&refs).await?;
        let mut out: Vec<Option<Option<Vec<u8>>>> = {
            let q = self.inner.queue.borrow();
            keys.iter().map(|k| lookup(&q, k)).collect()
        };
        let missing: Vec<Vec<u8>> = keys
            .iter()
            .zip(&out)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        if !missing.is_empty() {
            let mut read = self.inner.base.get_many(&missing).await?.into_iter();
            for v in out.iter_mut().filter(|v| v.is_none()) {
                *v = Some(read.next().flatten());
            }
        }
        self.check()?;
        Ok(out.into_iter().map(Option::flatten).collect())
    }

    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> Result<Entries, StorageError> {
        self.durable().await?;
        let r = self.inner.base.scan(start, end, limit).await?;
        self.check()?;
        Ok(r)
    }

    async fn write(&self, batch: Batch) -> Result<(), StorageError> {
        self.check()?;
        if batch.is_empty() {
            return Ok(());
        }
        let bytes: usize = batch.ops.iter().map(value_bytes).sum();
        let inner = &self.inner;
        self.wait(|| {
            inner.queued_bytes.get() == 0 || inner.queued_bytes.get() + bytes <= MAX_QUEUED_BYTES
        })
        .await?;
        let seq = inner.queued_seq.get() + 1;
        inner.queued_seq.set(seq);
        inner.queue.borrow_mut().push_back((seq, batch));
        inner.queued_bytes.set(inner.queued_bytes.get() + bytes);
        if !inner.writing.get() {
            inner.writing.set(true);
            wasm_bindgen_futures::spawn_local(Self::run(inner.clone()));
        }
        Ok(())
    }
}
