//! hyperbee 2.27.3: an append-only B-tree on a hypercore, byte-identical to the JS original.
//!
//! Block 0 of the core is a [`Header`]; every other block is one put or delete ([`Node`]) that
//! also carries the tree nodes it rewrote, so the same operations give the same blocks, thus the
//! same core (tree hash, signatures) as JS. A [`Hyperbee`] runs on any [`BeeCore`] (a local
//! [`crate::hypercore::Session`], or a replicated core that downloads on demand) and reads only
//! the blocks a query touches.
//!
//! ```
//! # use hyperpunch_core::{crypto::KeyPair, storage::MemoryStorage};
//! # use hyperpunch_core::hypercore::{CreateOptions, Hypercore};
//! use hyperpunch_core::hyperbee::{Hyperbee, RangeOptions, Utf8};
//! # futures_executor::block_on(async {
//! let core = Hypercore::create(MemoryStorage::new(), CreateOptions {
//!     key_pair: Some(KeyPair::from_seed(&[1; 32])),
//!     ..Default::default()
//! }).await?;
//! let db = Hyperbee::new(core.into_session()).with_codecs(Utf8, Utf8);
//! db.put("hello", "world").await?;
//! let mut b = db.batch();
//! b.put("a", "1").await?;
//! b.put("b", "2").await?;
//! b.flush().await?;
//! assert_eq!(db.get("hello").await?.unwrap().value.as_deref(), Some("world"));
//! let keys: Vec<String> = db
//!     .create_read_stream(RangeOptions { gte: Some("a"), lt: Some("c"), ..Default::default() })
//!     .collect().await?
//!     .into_iter().map(|e| e.key).collect();
//! assert_eq!(keys, ["a", "b"]);
//! assert_eq!(db.version().await, 4); // the header and three puts
//! # Ok::<(), hyperpunch_core::hyperbee::BeeError>(())
//! # }).unwrap();
//! ```
//!
//! The pieces, one concern each:
//! - [`messages`]: the protobuf `Header` / `Node` / `YoloIndex` codecs.
//! - [`source`]: [`BeeCore`], what the bee needs of its core.
//! - `host_core`: [`HostCore`], a core of a replication host shared by a transport's tasks as
//!   a [`BeeCore`] (and blobs core), downloading the blocks a read needs.
//! - `cache`: decoded blocks shared by every read of a bee.
//! - `read`: the tree as reads see it, and `get`.
//! - `tree`: inserts, splits, deletes and rebalancing, object for object as JS.
//! - [`batch`](Batch): single writes and batches (the write lock, compare-and-swap).
//! - `iterators`: range reads; `history`: the history stream; `diff`: the diff stream.
//! - `sub`: prefixed sub-databases; [`encodings`](Codec): key/value encodings.
//! - `watch`: [`Watcher`] and [`EntryWatcher`].
//!
//! Differences from JS: `get` does not trust JS's `isTarget` shortcut (which returns a deleted
//! key's old value in some trees, see `read::get`); a checkout of a version the core does not
//! have yet fails ([`BeeError::VersionNotAvailable`]) instead of waiting for it; errors are typed
//! where JS throws `TypeError`s on malformed trees.
//!
//! Not done: the `hyperbee` replication extension (remote `get`/iterator hints; peers that send
//! it are ignored and fall back to block requests), `clearUnlinked`, range-iterator
//! checkpoints, `watch`'s `map`/`differ`/`onchange` hooks, and JS's `preload` (a read of a
//! replicated core fetches one block at a time, one round trip each).

mod batch;
mod cache;
mod diff;
mod encodings;
mod error;
mod history;
mod host_core;
mod iterators;
pub mod messages;
mod read;
pub mod source;
mod sub;
pub mod suite;
#[cfg(test)]
mod tests;
mod tree;
mod watch;

use std::sync::Arc;

pub use batch::Batch;
pub use diff::{DiffEntry, DiffIter};
pub use encodings::{Binary, Codec, Json, Utf8};
pub use error::BeeError;
pub use history::{HistoryEntry, HistoryIter, HistoryOptions, HistoryType};
pub use host_core::{CoreHost, HostCore, SharedCoreHost};
pub use iterators::{RangeIter, RangeOptions};
pub use messages::{Header, Metadata, Node};
pub use source::{BeeCore, CoreState};
pub use tree::RawEntry;
pub use watch::{EntryWatcher, Watcher};

use cache::BlockCache;
use read::{BlockView, CommittedTree, ReadCtx};

/// One entry of a bee: the block `seq` holding `key`'s value. `value` is `None` only for a key
/// put without a value ([`Hyperbee::put_null`], JS `put(key)`), or for a deletion in a
/// [`HistoryEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<K, V> {
    /// Index of the block in the core.
    pub seq: u64,
    /// The key (decoded, without the sub prefix).
    pub key: K,
    /// The value (decoded).
    pub value: Option<V>,
}

/// Options of [`Hyperbee::with_options`] (JS `new Hyperbee(core, opts)`).
#[derive(Debug, Clone)]
pub struct BeeOptions {
    /// Metadata written into the header when the first write creates it (hyperdrive keeps its
    /// content core's key here).
    pub metadata: Option<Metadata>,
    /// Refuse writes ([`BeeError::ReadOnly`]).
    pub readonly: bool,
    /// Append a block for every put, even of the value the key already has (JS
    /// `alwaysDuplicate`, default true).
    pub always_duplicate: bool,
    /// Separator [`Hyperbee::sub`] puts after a prefix (JS `sep`, default `0x00`).
    pub sep: Vec<u8>,
    /// Decoded blocks kept in memory (default 256 Ki; JS keeps 65536).
    pub cache_blocks: usize,
}

impl Default for BeeOptions {
    fn default() -> Self {
        BeeOptions {
            metadata: None,
            readonly: false,
            always_duplicate: true,
            sep: vec![0],
            cache_blocks: cache::DEFAULT_CACHE_BLOCKS,
        }
    }
}

/// What every view of one bee (subs, checkouts, encodings) shares.
pub(crate) struct Shared<C> {
    pub core: C,
    /// The write lock (JS `tree.lock`).
    pub lock: Arc<async_lock::Mutex<()>>,
    pub cache: Arc<BlockCache>,
    pub metadata: Option<Metadata>,
    pub readonly: bool,
    pub always_duplicate: bool,
}

/// A hyperbee on core `C`, with key encoding `K` and value encoding `V` (both [`Binary`] by
/// default). Cheap to clone: clones, [`Hyperbee::sub`]s, [`Hyperbee::checkout`]s and
/// [`Hyperbee::with_codecs`] views share the core, the block cache and the write lock.
///
/// See the [module docs](self) for an example.
pub struct Hyperbee<C: BeeCore, K: Codec = Binary, V: Codec = Binary> {
    shared: Arc<Shared<C>>,
    /// A checkout: a snapshot handle and the version read.
    checkout: Option<(C, u64)>,
    /// Encoded key prefix of a sub (`parent prefix ‖ prefix ‖ sep`), empty for the root.
    prefix: Arc<[u8]>,
    /// The separator subs of this bee use by default.
    sep: Arc<[u8]>,
    keys: K,
    values: V,
}

impl<C: BeeCore, K: Codec, V: Codec> Clone for Hyperbee<C, K, V> {
    fn clone(&self) -> Self {
        Hyperbee {
            shared: self.shared.clone(),
            checkout: self.checkout.clone(),
            prefix: self.prefix.clone(),
            sep: self.sep.clone(),
            keys: self.keys.clone(),
            values: self.values.clone(),
        }
    }
}

impl<C: BeeCore, K: Codec, V: Codec> std::fmt::Debug for Hyperbee<C, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hyperbee")
            .field("checkout", &self.checkout.as_ref().map(|c| c.1))
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<C: BeeCore> Hyperbee<C> {
    /// A bee on `core` with the default options. Nothing is read or written until used; the
    /// header is written by the first write to an empty core.
    pub fn new(core: C) -> Self {
        Self::with_options(core, BeeOptions::default())
    }

    /// A bee on `core` with `opts`.
    pub fn with_options(core: C, opts: BeeOptions) -> Self {
        let sep: Arc<[u8]> = if opts.sep.is_empty() {
            Arc::from(&[0u8][..])
        } else {
            opts.sep.into()
        };
        Hyperbee {
            shared: Arc::new(Shared {
                core,
                lock: Arc::new(async_lock::Mutex::new(())),
                cache: Arc::new(BlockCache::new(opts.cache_blocks)),
                metadata: opts.metadata,
                readonly: opts.readonly,
                always_duplicate: opts.always_duplicate,
            }),
            checkout: None,
            prefix: Arc::from(&[][..]),
            sep,
            keys: Binary,
            values: Binary,
        }
    }

    /// Whether block 0 of `core` is a hyperbee header (JS `Hyperbee.isHyperbee`). An empty core
    /// is not (yet) one; a core whose block 0 is not stored is [`BeeError::BlockNotAvailable`].
    pub async fn is_hyperbee(core: &C) -> Result<bool, BeeError> {
        if core.state().await.length == 0 {
            return Ok(false);
        }
        match core.get(0).await? {
            Some(raw) => Ok(Header::decode(&raw).is_ok_and(|h| h.is_hyperbee())),
            None => Err(BeeError::BlockNotAvailable(0)),
        }
    }
}

impl<C: BeeCore, K: Codec, V: Codec> Hyperbee<C, K, V> {
    /// The same bee with other encodings (JS `keyEncoding` / `valueEncoding` options).
    pub fn with_codecs<K2: Codec, V2: Codec>(&self, keys: K2, values: V2) -> Hyperbee<C, K2, V2> {
        Hyperbee {
            shared: self.shared.clone(),
            checkout: self.checkout.clone(),
            prefix: self.prefix.clone(),
            sep: self.sep.clone(),
            keys,
            values,
        }
    }

    /// The live core handle.
    pub fn core(&self) -> &C {
        &self.shared.core
    }

    /// The core's key.
    pub async fn key(&self) -> [u8; 32] {
        self.shared.core.key().await
    }

    /// Whether writes can succeed: a writable core, not read-only, not a checkout.
    pub async fn writable(&self) -> bool {
        self.checkout.is_none() && !self.shared.readonly && self.shared.core.state().await.writable
    }

    /// JS `version`: the core's length (at least 1), or the version checked out.
    pub async fn version(&self) -> u64 {
        match &self.checkout {
            Some((_, v)) => *v,
            None => self.shared.core.state().await.length.max(1),
        }
    }

    /// The version checked out, if this is a checkout or snapshot.
    pub fn checkout_version(&self) -> Option<u64> {
        self.checkout.as_ref().map(|c| c.1)
    }

    /// The encoded prefix of this sub (empty for the root bee).
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// A context reading this view's version through a snapshot.
    pub(crate) async fn read_ctx(&self) -> Result<ReadCtx<C>, BeeError> {
        let cache = self.shared.cache.clone();
        match &self.checkout {
            Some((snap, version)) => {
                snap.check_live().await?;
                let st = snap.state().await;
                if *version > st.length.max(1) {
                    return Err(BeeError::VersionNotAvailable {
                        version: *version,
                        length: st.length,
                    });
                }
                Ok(ReadCtx::new(
                    snap.clone(),
                    cache,
                    *version,
                    st.length,
                    st.fork,
                ))
            }
            None => {
                self.shared.core.update().await?;
                let snap = self.shared.core.snapshot().await;
                let st = snap.state().await;
                Ok(ReadCtx::new(
                    snap,
                    cache,
                    st.length.max(1),
                    st.length,
                    st.fork,
                ))
            }
        }
    }

    /// Decode a key read from the tree (sub prefix stripped, as JS `prefixEncoding.decode`).
    pub(crate) fn dec_key(&self, key: &[u8]) -> Result<K::Owned, BeeError> {
        let k = key.get(self.prefix.len()..).unwrap_or(&[]);
        self.keys.decode(k)
    }

    pub(crate) fn entry_of(&self, b: &BlockView) -> Result<Entry<K::Owned, V::Owned>, BeeError> {
        Ok(Entry {
            seq: b.seq(),
            key: self.dec_key(b.key())?,
            value: b.value().map(|v| self.values.decode(v)).transpose()?,
        })
    }

    pub(crate) fn entry_of_raw(
        &self,
        r: &RawEntry<'_>,
    ) -> Result<Entry<K::Owned, V::Owned>, BeeError> {
        Ok(Entry {
            seq: r.seq,
            key: self.dec_key(r.key)?,
            value: r.value.map(|v| self.values.decode(v)).transpose()?,
        })
    }

    /// `key`'s entry, `None` when absent (JS `get`).
    pub async fn get(&self, key: &K::Value) -> Result<Option<Entry<K::Owned, V::Owned>>, BeeError> {
        let k = self.enc_key(key);
        let mut t = CommittedTree {
            ctx: self.read_ctx().await?,
        };
        match read::get(&mut t, &k).await? {
            Some(b) => Ok(Some(self.entry_of(&b)?)),
            None => Ok(None),
        }
    }

    /// The key and value written by block `seq` (JS `getBySeq`), deletions included.
    pub async fn get_by_seq(&self, seq: u64) -> Result<(K::Owned, Option<V::Owned>), BeeError> {
        let ctx = self.read_ctx().await?;
        let b = ctx.block(seq).await?;
        let e = self.entry_of(&BlockView::Committed(b))?;
        Ok((e.key, e.value))
    }

    /// Entries within `range`, in key order (JS `createReadStream` / `createRangeIterator`).
    pub fn create_read_stream(&self, range: RangeOptions<'_, K>) -> RangeIter<C, K, V> {
        RangeIter::new(self.clone(), self.raw_range(&range))
    }

    /// The first entry within `range` (JS `peek`).
    pub async fn peek(
        &self,
        mut range: RangeOptions<'_, K>,
    ) -> Result<Option<Entry<K::Owned, V::Owned>>, BeeError> {
        range.limit = Some(1);
        self.create_read_stream(range).next().await
    }

    /// A read-only view of the bee at `version` (JS `checkout`; 0 is 1). Reads fail with
    /// [`BeeError::VersionNotAvailable`] while the core is shorter, and with a
    /// snapshot error once a truncation removed part of it.
    pub async fn checkout(&self, version: u64) -> Self {
        let mut out = self.clone();
        let snap = self.shared.core.snapshot().await;
        out.checkout = Some((snap, version.max(1)));
        out
    }

    /// A read-only view of the bee as it is now (JS `snapshot`; a checkout stays as it is).
    pub async fn snapshot(&self) -> Self {
        if self.checkout.is_some() {
            return self.clone();
        }
        let snap = self.shared.core.snapshot().await;
        let version = snap.state().await.length.max(1);
        let mut out = self.clone();
        out.checkout = Some((snap, version));
        out
    }

    /// Block 0, decoded (JS `getHeader`); `None` for an empty core.
    pub async fn get_header(&self) -> Result<Option<Header>, BeeError> {
        let core = &self.shared.core;
        if core.state().await.length == 0 {
            return Ok(None);
        }
        let raw = core.get(0).await?.ok_or(BeeError::BlockNotAvailable(0))?;
        Header::decode(&raw)
            .map(Some)
            .map_err(|e| BeeError::node(0, e))
    }

    /// Write the header now if the core is empty (the first write does it otherwise).
    pub async fn ensure_header(&self) -> Result<(), BeeError> {
        let _guard = self.shared.lock.lock_arc().await;
        self.write_ctx().await.map(|_| ())
    }
}
