//! Hyperbee views: an apply function that runs a hyperbee on a view (JS
//! `open: store => new Hyperbee(store.get('view'), { extension: false })` and
//! `apply: async (nodes, view) => { await view.put(key, value) }`).
//!
//! The bee is [`crate::hyperbee`] itself (the same node encoding and tree staging, byte-identical
//! to JS hyperbee 2.27.3) running on the view's blocks: every put or delete apply makes appends
//! one block to the view (a batch appends its blocks at flush), the same blocks JS's bee view
//! writes for the same linearized nodes. The view's blocks are in memory ([`Views::blocks`]), so
//! every bee operation completes at once: [`BeeView`] and [`BeeReader`] are synchronous, and
//! usable from [`super::Apply::apply`] as from an [`super::AsyncApply`].
//!
//! When the engine undoes applied nodes (a reorder) it truncates the view, and the bee reads the
//! truncated log: each truncation starts a new fork of the view, and the bee's block cache keys
//! blocks by fork, so a block that was undone is never read from the cache.
//!
//! ```
//! use hyperpunch_core::autobase::{ApplyNode, Autobase, Host, Views};
//! use hyperpunch_core::hyperbee::{RangeOptions, Utf8};
//!
//! // apply: `put:<key>=<value>` or `del:<key>` on the bee view "db"
//! fn apply(nodes: &[ApplyNode<'_>], views: &mut Views, _host: &mut Host<'_>) {
//!     let view = views.open("db");
//!     let mut db = views.bee(view).with_codecs(Utf8, Utf8);
//!     for node in nodes {
//!         let op = String::from_utf8_lossy(node.value);
//!         let done = if let Some(kv) = op.strip_prefix("put:") {
//!             let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
//!             db.put(k, v)
//!         } else if let Some(k) = op.strip_prefix("del:") {
//!             db.del(k)
//!         } else {
//!             Ok(())
//!         };
//!         // a view holding blocks that are not a bee is a typed error, never a panic
//!         done.expect("the view is a bee");
//!     }
//! }
//!
//! let me = [1u8; 32];
//! let f: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = apply;
//! let mut base = Autobase::new(me, f);
//! let db = base.open_view("db");
//! for op in ["put:a=1", "put:b=2", "put:c=3", "del:b"] {
//!     base.append(&me, vec![op.as_bytes().to_vec()]).unwrap(); // oplog messages for `me`'s core
//!     base.update();
//! }
//! // readers outside apply: the view as it is now (a snapshot), or at the indexed length
//! let bee = base.views().read_bee(db).with_codecs(Utf8, Utf8);
//! assert_eq!(bee.get("a")?.unwrap().value.as_deref(), Some("1"));
//! assert!(bee.get("b")?.is_none());
//! let keys: Vec<String> = bee
//!     .range(RangeOptions { gte: Some("a"), ..Default::default() })?
//!     .into_iter()
//!     .map(|e| e.key)
//!     .collect();
//! assert_eq!(keys, ["a", "c"]);
//! assert_eq!(base.views().len(db), 5); // the header, three puts and a delete
//! let indexed = base.indexed_bee(db).with_codecs(Utf8, Utf8);
//! assert_eq!(indexed.version(), base.indexed_view_lengths()[db].max(1) as u64);
//! # Ok::<(), hyperpunch_core::hyperbee::BeeError>(())
//! ```
//!
//! Not done: a bee view after a fast-forward reads only the blocks applied since (the blocks
//! below [`Views::start`] are in the view's hypercore, not here): a read that needs one of them
//! is [`BeeError::BlockNotAvailable`]. Watchers and live history streams on a view never wake
//! (a view changes only through [`super::Autobase::update`]).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::base::{Apply, Autobase};
use super::views::{ViewId, ViewLog, Views};
use crate::hyperbee::source::{BeeCore, CoreState};
use crate::hyperbee::{Batch, BeeError, BeeOptions, Binary, Codec, Entry, Hyperbee, RangeOptions};
use crate::hypercore::HypercoreError;

/// An entry of a bee view, decoded with its encodings.
pub type BeeEntry<K, V> = Entry<<K as Codec>::Owned, <V as Codec>::Owned>;

/// Run a bee operation on a view's in-memory blocks: it completes at its first poll (no block
/// is ever waited for). One that waits (nothing in a view does) is an error, not a hang.
fn ready<T>(f: impl Future<Output = Result<T, BeeError>>) -> Result<T, BeeError> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => Err(BeeError::InvalidArgument(
            "a bee operation on a view waited (nothing in memory should)",
        )),
    }
}

/// The blocks of a view lent to its bee while a [`BeeView`] lives.
#[derive(Debug, Default)]
struct Lent {
    blocks: Arc<Vec<Vec<u8>>>,
    start: u64,
    fork: u64,
}

#[derive(Debug, Clone)]
struct Frozen {
    blocks: Arc<Vec<Vec<u8>>>,
    start: u64,
    length: u64,
    fork: u64,
}

#[derive(Debug, Clone)]
enum Handle {
    /// The view apply writes to (its blocks are here while a [`BeeView`] lives).
    Live(Arc<Mutex<Lent>>),
    /// A snapshot: the blocks below `length`, read-only.
    Frozen(Frozen),
}

/// A view's blocks as a [`BeeCore`]: what the bees of [`Views::bee`] and [`Views::read_bee`]
/// run on. It has no key (a view in memory is not a hypercore; [`super::cores`] writes it into
/// one): [`BeeCore::key`] is all zeros.
#[derive(Debug, Clone)]
pub struct ViewCore(Handle);

fn lock(m: &Mutex<Lent>) -> MutexGuard<'_, Lent> {
    // Nothing panics while it is held; a poisoned lock still holds valid blocks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read(
    blocks: &[Vec<u8>],
    start: u64,
    length: u64,
    index: u64,
) -> Result<Option<Vec<u8>>, HypercoreError> {
    if index >= length {
        return Err(HypercoreError::OutOfBounds { index, length });
    }
    // below `start`: in the view's hypercore (a fast-forward), not in memory
    let Some(i) = index.checked_sub(start) else {
        return Ok(None);
    };
    Ok(usize::try_from(i).ok().and_then(|i| blocks.get(i)).cloned())
}

impl ViewCore {
    fn frozen(&self) -> Frozen {
        match &self.0 {
            Handle::Frozen(f) => f.clone(),
            Handle::Live(l) => {
                let l = lock(l);
                Frozen {
                    length: l.start + l.blocks.len() as u64,
                    blocks: l.blocks.clone(),
                    start: l.start,
                    fork: l.fork,
                }
            }
        }
    }
}

impl BeeCore for ViewCore {
    async fn key(&self) -> [u8; 32] {
        [0; 32]
    }

    async fn state(&self) -> CoreState {
        match &self.0 {
            Handle::Frozen(f) => CoreState {
                length: f.length,
                fork: f.fork,
                writable: false,
            },
            Handle::Live(l) => {
                let l = lock(l);
                CoreState {
                    length: l.start + l.blocks.len() as u64,
                    fork: l.fork,
                    writable: true,
                }
            }
        }
    }

    async fn snapshot(&self) -> Self {
        ViewCore(Handle::Frozen(self.frozen()))
    }

    async fn get(&self, index: u64) -> Result<Option<Vec<u8>>, HypercoreError> {
        match &self.0 {
            Handle::Frozen(f) => read(&f.blocks, f.start, f.length, index),
            Handle::Live(l) => {
                let l = lock(l);
                read(&l.blocks, l.start, l.start + l.blocks.len() as u64, index)
            }
        }
    }

    async fn append(&self, blocks: &[&[u8]]) -> Result<u64, HypercoreError> {
        match &self.0 {
            Handle::Frozen(_) => Err(HypercoreError::NotWritable),
            Handle::Live(l) => {
                let mut l = lock(l);
                let start = l.start;
                let log = Arc::make_mut(&mut l.blocks);
                log.extend(blocks.iter().map(|b| b.to_vec()));
                Ok(start + log.len() as u64)
            }
        }
    }

    async fn wait_change(&self, length: u64, fork: u64) {
        let st = self.state().await;
        if st.length == length && st.fork == fork {
            // A view changes only through the engine's update, never while a bee waits.
            std::future::pending::<()>().await;
        }
    }
}

/// The bee apply runs on a view, kept with the view between applies (its block cache and write
/// lock).
#[derive(Debug)]
pub(super) struct LiveBee {
    lent: Arc<Mutex<Lent>>,
    bee: Hyperbee<ViewCore>,
}

/// Puts the lent blocks back into the view when the [`BeeView`] goes.
struct Lend<'a> {
    log: &'a mut ViewLog,
    lent: Arc<Mutex<Lent>>,
}

impl Drop for Lend<'_> {
    fn drop(&mut self) {
        self.log.blocks = std::mem::take(&mut lock(&self.lent).blocks);
    }
}

/// A view run as a hyperbee by apply ([`Views::bee`]): put, delete, get, range reads and batches
/// on the view's blocks, each completing at once. Keys and values are encoded with `K` / `V`
/// ([`Binary`] by default; [`BeeView::with_codecs`], JS `keyEncoding` / `valueEncoding`).
///
/// Writes append to the view as JS hyperbee appends to its view core (a single put or delete
/// one block, a [`BeeViewBatch`] its blocks at flush; the header before the first write). Reads
/// see the view at its current length, unindexed blocks included.
pub struct BeeView<'a, K: Codec = Binary, V: Codec = Binary> {
    _lend: Lend<'a>,
    bee: Hyperbee<ViewCore, K, V>,
}

impl Views {
    /// Run a hyperbee on `view` (JS `new Hyperbee(store.get(name), { extension: false })` in
    /// `open`). The bee is kept with the view: its block cache serves the next applies too (a
    /// truncation, when a reorder undoes nodes, starts a new fork of the view, and the cache
    /// forgets what it held of the old one).
    ///
    /// # Panics
    /// When `view` was not opened ([`Views::open`]), as [`Views::append`].
    pub fn bee(&mut self, view: ViewId) -> BeeView<'_> {
        let log = self.log_mut(view);
        let live = log.bee.get_or_insert_with(|| {
            let lent = Arc::new(Mutex::new(Lent::default()));
            let bee = Hyperbee::new(ViewCore(Handle::Live(lent.clone())));
            LiveBee { lent, bee }
        });
        let (lent, bee) = (live.lent.clone(), live.bee.clone());
        {
            let mut l = lock(&lent);
            l.blocks = std::mem::take(&mut log.blocks);
            l.start = log.start as u64;
            l.fork = log.fork;
        }
        BeeView {
            _lend: Lend { log, lent },
            bee,
        }
    }

    /// Read `view` as a hyperbee at its current length (a snapshot: later updates do not move
    /// it). It shares the view's blocks until the view changes: a reader kept across an
    /// [`super::Autobase::update`] that writes the view costs one copy of them.
    ///
    /// # Panics
    /// When `view` was not opened.
    pub fn read_bee(&self, view: ViewId) -> BeeReader {
        self.read_bee_at(view, self.len(view))
    }

    /// [`Views::read_bee`] at `length` (at most the view's length): the bee as it was when the
    /// view had `length` blocks (JS `bee.checkout(length)`), e.g. the indexed length.
    pub fn read_bee_at(&self, view: ViewId, length: usize) -> BeeReader {
        let log = self.log(view);
        let length = length.min(self.len(view));
        let core = ViewCore(Handle::Frozen(Frozen {
            blocks: log.blocks.clone(),
            start: log.start as u64,
            length: length as u64,
            fork: log.fork,
        }));
        BeeReader {
            bee: Hyperbee::with_options(
                core,
                BeeOptions {
                    readonly: true,
                    ..Default::default()
                },
            ),
        }
    }
}

impl<A: Apply> Autobase<A> {
    /// Read `view` as a hyperbee at its indexed length (what the indexers confirmed; it does not
    /// change when a reorder moves the tip). See [`Views::read_bee`].
    pub fn indexed_bee(&self, view: ViewId) -> BeeReader {
        let at = self.indexed_view_lengths().get(view).copied().unwrap_or(0);
        self.views().read_bee_at(view, at)
    }
}

impl<'a, K: Codec, V: Codec> BeeView<'a, K, V> {
    /// The same bee with other encodings (JS `keyEncoding` / `valueEncoding`).
    pub fn with_codecs<K2: Codec, V2: Codec>(self, keys: K2, values: V2) -> BeeView<'a, K2, V2> {
        BeeView {
            bee: self.bee.with_codecs(keys, values),
            _lend: self._lend,
        }
    }

    /// A sub-database of the bee (JS `bee.sub(prefix)`): keys prefixed with `prefix` and the
    /// separator `0x00`.
    #[allow(clippy::should_implement_trait)] // JS's name
    pub fn sub(self, prefix: impl AsRef<[u8]>) -> Self {
        BeeView {
            bee: self.bee.sub(prefix),
            _lend: self._lend,
        }
    }

    /// Put `key` → `value` (JS `await view.put(key, value)`): one block.
    pub fn put(&mut self, key: &K::Value, value: &V::Value) -> Result<(), BeeError> {
        ready(self.bee.put(key, value))
    }

    /// Put `key` without a value (JS `view.put(key)`).
    pub fn put_null(&mut self, key: &K::Value) -> Result<(), BeeError> {
        ready(self.bee.put_null(key))
    }

    /// Delete `key` (JS `view.del(key)`): one block, none when `key` is absent.
    pub fn del(&mut self, key: &K::Value) -> Result<(), BeeError> {
        ready(self.bee.del(key))
    }

    /// Compare-and-swap put (see [`Hyperbee::put_cas`]); whether a block was written.
    pub fn put_cas(
        &mut self,
        key: &K::Value,
        value: &V::Value,
        cas: impl FnMut(&Entry<K::Owned, V::Owned>, &Entry<K::Owned, V::Owned>) -> bool,
    ) -> Result<bool, BeeError> {
        ready(self.bee.put_cas(key, value, cas))
    }

    /// Compare-and-swap delete (see [`Hyperbee::del_cas`]); whether a block was written.
    pub fn del_cas(
        &mut self,
        key: &K::Value,
        cas: impl FnMut(&Entry<K::Owned, V::Owned>, &Entry<K::Owned, V::Owned>) -> bool,
    ) -> Result<bool, BeeError> {
        ready(self.bee.del_cas(key, cas))
    }

    /// `key`'s entry, `None` when absent (JS `view.get(key)`).
    pub fn get(&self, key: &K::Value) -> Result<Option<BeeEntry<K, V>>, BeeError> {
        ready(self.bee.get(key))
    }

    /// The entries in `range`, in key order (JS `view.createReadStream(range)`, collected).
    pub fn range(&self, range: RangeOptions<'_, K>) -> Result<Vec<BeeEntry<K, V>>, BeeError> {
        ready(self.bee.create_read_stream(range).collect())
    }

    /// The first entry in `range` (JS `view.peek(range)`).
    pub fn peek(&self, range: RangeOptions<'_, K>) -> Result<Option<BeeEntry<K, V>>, BeeError> {
        ready(self.bee.peek(range))
    }

    /// JS `view.version`: the view's length (at least 1).
    pub fn version(&self) -> u64 {
        // `Hyperbee::version` reads the state, which never waits.
        ready(async { Ok(self.bee.version().await) }).unwrap_or(1)
    }

    /// A batch (JS `view.batch()`): writes staged in memory, appended to the view together by
    /// [`BeeViewBatch::flush`]; dropped without a flush, nothing is written.
    pub fn batch(&mut self) -> BeeViewBatch<'_, K, V> {
        BeeViewBatch {
            batch: self.bee.batch(),
            _view: std::marker::PhantomData,
        }
    }

    /// The bee itself, for the rest of the hyperbee API (history and diff streams, checkouts):
    /// its futures complete at their first poll while this [`BeeView`] lives (`.await` them in
    /// an [`super::AsyncApply`], or poll them once). Use it only while the [`BeeView`] lives: the
    /// view's blocks are lent to it for that long (a clone kept past it sees an empty view, and
    /// what it writes never reaches the view).
    pub fn hyperbee(&self) -> &Hyperbee<ViewCore, K, V> {
        &self.bee
    }
}

/// A batch of a [`BeeView`] (JS `view.batch()`).
pub struct BeeViewBatch<'v, K: Codec, V: Codec> {
    batch: Batch<ViewCore, K, V>,
    _view: std::marker::PhantomData<&'v mut ()>,
}

impl<K: Codec, V: Codec> BeeViewBatch<'_, K, V> {
    /// Stage a put.
    pub fn put(&mut self, key: &K::Value, value: &V::Value) -> Result<(), BeeError> {
        ready(self.batch.put(key, value))
    }

    /// Stage a put without a value.
    pub fn put_null(&mut self, key: &K::Value) -> Result<(), BeeError> {
        ready(self.batch.put_null(key))
    }

    /// Stage a delete.
    pub fn del(&mut self, key: &K::Value) -> Result<(), BeeError> {
        ready(self.batch.del(key))
    }

    /// `key`'s entry, staged writes included.
    pub fn get(&mut self, key: &K::Value) -> Result<Option<BeeEntry<K, V>>, BeeError> {
        ready(self.batch.get(key))
    }

    /// Entries in `range`, staged writes included.
    pub fn range(&mut self, range: RangeOptions<'_, K>) -> Result<Vec<BeeEntry<K, V>>, BeeError> {
        ready(self.batch.create_read_stream(range))
    }

    /// Append what is staged to the view, in one append (JS `flush`).
    pub fn flush(mut self) -> Result<(), BeeError> {
        ready(self.batch.flush())
    }

    /// Writes staged and not flushed.
    pub fn len(&self) -> u64 {
        self.batch.len()
    }

    /// Nothing staged.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

/// A bee view read outside apply ([`Views::read_bee`], [`Autobase::indexed_bee`]): a read-only
/// snapshot of the view at one length. Reads complete at once.
#[derive(Debug, Clone)]
pub struct BeeReader<K: Codec = Binary, V: Codec = Binary> {
    bee: Hyperbee<ViewCore, K, V>,
}

impl<K: Codec, V: Codec> BeeReader<K, V> {
    /// The same reader with other encodings.
    pub fn with_codecs<K2: Codec, V2: Codec>(&self, keys: K2, values: V2) -> BeeReader<K2, V2> {
        BeeReader {
            bee: self.bee.with_codecs(keys, values),
        }
    }

    /// A sub-database (JS `bee.sub(prefix)`).
    pub fn sub(&self, prefix: impl AsRef<[u8]>) -> Self {
        BeeReader {
            bee: self.bee.sub(prefix),
        }
    }

    /// `key`'s entry, `None` when absent.
    pub fn get(&self, key: &K::Value) -> Result<Option<BeeEntry<K, V>>, BeeError> {
        ready(self.bee.get(key))
    }

    /// The entries in `range`, in key order.
    pub fn range(&self, range: RangeOptions<'_, K>) -> Result<Vec<BeeEntry<K, V>>, BeeError> {
        ready(self.bee.create_read_stream(range).collect())
    }

    /// The first entry in `range`.
    pub fn peek(&self, range: RangeOptions<'_, K>) -> Result<Option<BeeEntry<K, V>>, BeeError> {
        ready(self.bee.peek(range))
    }

    /// The version read: the view's length at the snapshot (at least 1).
    pub fn version(&self) -> u64 {
        ready(async { Ok(self.bee.version().await) }).unwrap_or(1)
    }

    /// The bee itself (read-only), for the rest of the hyperbee API; its futures complete at
    /// their first poll.
    pub fn hyperbee(&self) -> &Hyperbee<ViewCore, K, V> {
        &self.bee
    }
}
