//! corestore 7.12.5 (`NM/corestore/index.js`): many hypercores in one storage, named cores whose
//! key pairs derive from one primary key, and all of them replicated over one stream per
//! connection.
//!
//! A [`Corestore`] owns one [`Storage`] (every core in its own key prefix, see [`layout`]) and
//! one [`ReplicationHub`] holding every open core as a [`Replicator`]:
//!
//! * **Opening**: [`Corestore::open`] reads the primary key from the storage, or stores the one
//!   given ([`PrimaryKey`]: random bytes the caller drew, or a fixed key as JS
//!   `{ primaryKey, unsafe: true }`).
//! * **Cores**: [`Corestore::get`] with [`GetOptions`]: by name (the key pair derives from the
//!   primary key, namespace and name exactly as JS does, see [`keys`]), by key (a remote core, a
//!   reader), by key pair, by manifest, or by discovery key (stored cores only). A core missing
//!   from the storage is created (in one atomic batch). The result is a [`CoreHandle`], a
//!   session: several handles of one core share the one open core; [`Corestore::close_core`]
//!   ends a session, and the core closes with its last one.
//! * **Using a core**: [`Corestore::core`] / [`Corestore::replicator_mut`] (append through
//!   [`Corestore::append`] or the replicator, so that peers hear of it; download with
//!   [`Replicator::download`]).
//! * **Replicating**: a `Corestore` is a [`ReplicationHost`](crate::replication::ReplicationHost): a transport drives it exactly like
//!   a hub (one stream per connection, one protomux on it). Every open core is replicated on
//!   every stream; when the remote opens the channel of a core that is not open but stored
//!   here, the core is opened on demand and replicated (JS `corestore.replicate` pairs
//!   `hypercore/alpha` and looks the discovery key up, `_attachMaybe`); other opens are
//!   rejected, and the rest of the stream goes on. A core opened for a remote (it has no
//!   session) closes again when its last channel closes.
//!
//! ```
//! # use hyperpunch_core::corestore::{Corestore, GetOptions, Namespace, PrimaryKey};
//! # use hyperpunch_core::storage::MemoryStorage;
//! # futures_executor::block_on(async {
//! let mut store = Corestore::open(MemoryStorage::new(), PrimaryKey::Given([7; 32])).await?;
//! let db = store.get(GetOptions::named("db")).await?;
//! store.append(0, &db, &[b"hello"]).await?;
//! // The same key as JS `new Corestore(dir, { primaryKey, unsafe: true }).get({ name: 'db' })`.
//! assert_eq!(hex::encode(db.key()), "9d56810a89a0211db2a242b81ce8eac5265ac648769910177524c82908ab866d");
//! let app = Namespace::ROOT.child("app");
//! let other = store.get(GetOptions::named("db").in_namespace(app)).await?;
//! assert_ne!(other.key(), db.key());
//! // A second session of one core.
//! let again = store.get(GetOptions::named("db")).await?;
//! assert_eq!(store.core(&again)?.length(), 1);
//! # Ok::<(), hyperpunch_core::corestore::CorestoreError>(())
//! # }).unwrap();
//! ```
//!
//! * **Watching**: [`Corestore::watch`] reports every core the store opens from then on (JS
//!   `store.watch(fn)`, see [`watch`]).
//!
//! Not done (JS features): `staticify`, `audit`, group notifications (`notifyGroup`),
//! `findingPeers`, read-only stores; suspend/resume is the storage's (natively
//! `FileStorage::suspend` in the `hyperpunch` crate), and the delayed closing of idle
//! cores (JS closes a core some seconds after it went idle; here at once).

pub mod keys;
pub mod layout;
mod replicate;
#[cfg(test)]
mod tests;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::crypto::{discovery_key, KeyPair};
use crate::hypercore::manifest::{Manifest, ManifestError};
use crate::hypercore::{
    AppendOutcome, CreateOptions, Hypercore, HypercoreError, OpenOptions as CoreOpenOptions,
};
use crate::replication::{
    HubEvent, Options as ReplicatorOptions, ReplicationError, ReplicationHub, Replicator, StreamId,
};
use crate::storage::{Batch, Prefixed, Storage, StorageError};

pub use keys::{create_key_pair, derive_seed, named_core, NamedCore, Namespace};
use layout::{CoreRecord, StoreHeader};
pub use watch::{OpenedCore, WatchId, WATCH_QUEUE_MAX};

/// The storage of one core of a store: the store's storage under the core's prefix.
pub type CoreStorage<S> = Prefixed<S>;

/// Everything that can go wrong in a corestore.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CorestoreError {
    /// The storage backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A core failed (its storage, its stored bytes, a key mismatch, ...).
    #[error(transparent)]
    Hypercore(#[from] HypercoreError),
    /// Replication failed locally.
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// A manifest could not be built (e.g. an unsupported manifest version).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A record of the store (header, core record, alias) is not what was written.
    #[error("corrupt corestore: {0}")]
    Corrupt(String),
    /// The core asked for is not stored here (JS `STORAGE_EMPTY`), or the storage holds no
    /// corestore ([`PrimaryKey::Stored`]).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The storage holds a corestore with another primary key (JS "Another corestore is stored
    /// here").
    #[error("another corestore is stored here (its primary key differs from the one given)")]
    PrimaryKeyMismatch,
    /// The options name no core, or contradict each other.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The handle is not a live session of this store (closed, or from another store).
    #[error("unknown or closed core handle")]
    UnknownHandle,
    /// The store has no more core ids (2^32 cores were created).
    #[error("the store has no more core ids")]
    Full,
    /// The store is closed.
    #[error("the corestore is closed")]
    Closed,
}

impl From<CorestoreError> for ReplicationError {
    fn from(e: CorestoreError) -> Self {
        match e {
            CorestoreError::Replication(e) => e,
            CorestoreError::Hypercore(e) => ReplicationError::Core(e),
            CorestoreError::Storage(e) => ReplicationError::Core(e.into()),
            CorestoreError::Closed => ReplicationError::Core(HypercoreError::Storage(
                StorageError::Unavailable("the corestore is closed".into()),
            )),
            e => ReplicationError::Core(HypercoreError::Corrupt(e.to_string())),
        }
    }
}

/// Where the primary key of [`Corestore::open`] comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PrimaryKey {
    /// The stored one; a storage without a corestore gets a new one made of these 32 random
    /// bytes (the caller draws them: the core has no random number generator). JS default.
    StoredOrNew([u8; 32]),
    /// This one: stored if the storage is new, else it must be the stored one
    /// ([`CorestoreError::PrimaryKeyMismatch`]). JS `{ primaryKey, unsafe: true }`.
    Given([u8; 32]),
    /// The stored one; [`CorestoreError::NotFound`] if the storage holds no corestore (open
    /// an existing store without creating one).
    Stored,
}

impl core::fmt::Debug for PrimaryKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print key material.
        f.write_str(match self {
            PrimaryKey::StoredOrNew(_) => "StoredOrNew(..)",
            PrimaryKey::Given(_) => "Given(..)",
            PrimaryKey::Stored => "Stored",
        })
    }
}

/// Options of [`Corestore::open_with`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Where the primary key comes from.
    pub primary_key: PrimaryKey,
    /// Manifest version of the cores of key pairs (JS `manifestVersion`, default 1).
    pub manifest_version: u64,
    /// Options of every core's replicator.
    pub replicator: ReplicatorOptions,
}

impl StoreOptions {
    /// Defaults with `primary_key`.
    pub fn new(primary_key: PrimaryKey) -> Self {
        StoreOptions {
            primary_key,
            manifest_version: keys::DEFAULT_MANIFEST_VERSION,
            replicator: ReplicatorOptions::default(),
        }
    }
}

/// Which core [`Corestore::get`] opens (JS `store.get(opts)`), and how.
///
/// Exactly one of `name`, `key`, `key_pair`, `manifest` or `discovery_key` identifies the core
/// (a `key_pair` may come with a `key` or `manifest` to make that core writable):
///
/// | given | the core | created if missing |
/// |---|---|---|
/// | `name` (+ `namespace`) | key pair from the primary key, key = hash of its manifest | yes, writable |
/// | `key_pair` | key = hash of its default manifest | yes, writable |
/// | `manifest` (+ `key_pair`) | key = manifest hash | yes (writable with a key pair that signs it) |
/// | `key` (+ `key_pair`) | a remote core | yes, a reader that learns the manifest from peers |
/// | `discovery_key` | a stored core | no ([`CorestoreError::NotFound`]) |
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// Name of a named core.
    pub name: Option<Vec<u8>>,
    /// Namespace of `name` (default [`Namespace::ROOT`]).
    pub namespace: Namespace,
    /// Key of the core.
    pub key: Option<[u8; 32]>,
    /// Key pair that signs for the core.
    pub key_pair: Option<KeyPair>,
    /// Manifest of the core.
    pub manifest: Option<Manifest>,
    /// Discovery key of a stored core.
    pub discovery_key: Option<[u8; 32]>,
    /// Block encryption key (hypercore's default encryption), needed to read or append blocks
    /// of an encrypted core; replicating works without it.
    pub encryption_key: Option<[u8; 32]>,
    /// Use `encryption_key` as the block key itself (JS `{ block: true }`, an autobase view's
    /// key) instead of deriving the block key from it and the core key.
    pub block_key: bool,
    /// Fail with [`CorestoreError::NotFound`] instead of creating a missing core (JS
    /// `createIfMissing: false`).
    pub must_exist: bool,
}

impl GetOptions {
    /// The named core `name` (JS `get({ name })`).
    pub fn named(name: impl AsRef<[u8]>) -> Self {
        GetOptions {
            name: Some(name.as_ref().to_vec()),
            ..Self::default()
        }
    }
    /// The core with `key` (JS `get(key)` / `get({ key })`).
    pub fn from_key(key: [u8; 32]) -> Self {
        GetOptions {
            key: Some(key),
            ..Self::default()
        }
    }
    /// The core `key_pair` writes (JS `get({ keyPair })`).
    pub fn from_key_pair(key_pair: KeyPair) -> Self {
        GetOptions {
            key_pair: Some(key_pair),
            ..Self::default()
        }
    }
    /// The core with `manifest` (JS `get({ manifest })`).
    pub fn from_manifest(manifest: Manifest) -> Self {
        GetOptions {
            manifest: Some(manifest),
            ..Self::default()
        }
    }
    /// The stored core with `discovery_key` (JS `get({ discoveryKey })`).
    pub fn from_discovery_key(discovery_key: [u8; 32]) -> Self {
        GetOptions {
            discovery_key: Some(discovery_key),
            ..Self::default()
        }
    }
    /// Look `name` up in `namespace`.
    pub fn in_namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }
    /// Sign with `key_pair` (with [`GetOptions::from_key`] or [`GetOptions::from_manifest`]).
    pub fn with_key_pair(mut self, key_pair: KeyPair) -> Self {
        self.key_pair = Some(key_pair);
        self
    }
    /// Block encryption key. The key belongs to the open core, not to this session: on a core
    /// that is already open it replaces the key every other session of that core reads with.
    pub fn with_encryption_key(mut self, key: [u8; 32]) -> Self {
        self.encryption_key = Some(key);
        self
    }
    /// Block encryption with `block_key` as is (JS `encryption: { key, block: true }`), e.g.
    /// an autobase view's ([`crate::autobase::encryption::view_block_key`]); a core already open
    /// without encryption (a reader that followed it by key) is switched to it. As with
    /// [`GetOptions::with_encryption_key`], the key applies to every session of the open core.
    pub fn with_block_encryption_key(mut self, block_key: [u8; 32]) -> Self {
        self.encryption_key = Some(block_key);
        self.block_key = true;
        self
    }
    /// Do not create the core if it is not stored.
    pub fn must_exist(mut self) -> Self {
        self.must_exist = true;
        self
    }
}

/// A session of an open core of a [`Corestore`] (JS: the `Hypercore` session `store.get`
/// returns). Pass it to the store's methods to use the core; end it with
/// [`Corestore::close_core`] (a dropped handle keeps its core open until the store closes).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a core stays open until its handle is given to Corestore::close_core"]
pub struct CoreHandle {
    key: [u8; 32],
    discovery_key: [u8; 32],
    session: u64,
    id: u32,
}

impl CoreHandle {
    /// The core key.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }
    /// The discovery key (the replication channel id).
    pub fn discovery_key(&self) -> &[u8; 32] {
        &self.discovery_key
    }
    /// The generation of the stored core this is a session of: the id of its record
    /// ([`StoredCore::id`], never reused in a store). A core purged ([`Corestore::purge`]) and
    /// made again under the same key has another one, so a reader pinned to this generation
    /// ([`crate::hyperbee::HostCore::with_generation`]) keeps failing after the purge instead
    /// of reading the new core.
    pub fn generation(&self) -> u64 {
        u64::from(self.id)
    }
}

/// A core stored in a corestore ([`Corestore::list`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCore {
    /// The discovery key.
    pub discovery_key: [u8; 32],
    /// The core key.
    pub key: [u8; 32],
    /// Namespace and name, for a named core.
    pub name: Option<(Namespace, Vec<u8>)>,
    /// The id of the core's data prefix in the storage ([`layout::data_prefix`]).
    pub id: u32,
}

/// What the store knows of an open core.
#[derive(Debug)]
struct OpenCore {
    /// Live sessions.
    sessions: BTreeSet<u64>,
    /// The id of its record ([`StoredCore::id`]): a core purged and made again under the same
    /// key has another one.
    id: u32,
}

/// Many cores in one storage, replicated together; see the [module docs](self).
pub struct Corestore<S: Storage + Clone> {
    storage: S,
    primary_key: [u8; 32],
    manifest_version: u64,
    replicator: ReplicatorOptions,
    hub: ReplicationHub<CoreStorage<S>>,
    open: BTreeMap<[u8; 32], OpenCore>,
    next_id: u64,
    next_session: u64,
    /// Hub events for the owner (after the ones the store answers itself).
    events: VecDeque<HubEvent>,
    /// The remote's opens of cores not open here, to look up in the storage.
    unknown: VecDeque<(StreamId, [u8; 32])>,
    /// Cores opened for a remote (no session), to close once they have no peers.
    idle: BTreeSet<[u8; 32]>,
    /// [`Corestore::watch`]ers.
    watchers: watch::Watchers,
    /// The generations ([`CoreHandle::generation`]) of the cores purged since the store was
    /// opened (one number per purged core).
    purged: BTreeSet<u32>,
    closed: bool,
}

impl<S: Storage + Clone> core::fmt::Debug for Corestore<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Corestore")
            .field("open_cores", &self.open.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl<S: Storage + Clone> Corestore<S> {
    /// Open the corestore in `storage` (creating it if the storage is empty, except with
    /// [`PrimaryKey::Stored`]) with default options.
    pub async fn open(storage: S, primary_key: PrimaryKey) -> Result<Self, CorestoreError> {
        Self::open_with(storage, StoreOptions::new(primary_key)).await
    }

    /// [`Corestore::open`] with options.
    pub async fn open_with(storage: S, opts: StoreOptions) -> Result<Self, CorestoreError> {
        let stored = match storage.get(&layout::header_key()).await? {
            Some(bytes) => Some(StoreHeader::decode(&bytes)?.primary_key),
            None => None,
        };
        let primary_key = match (stored, opts.primary_key) {
            (Some(pk), PrimaryKey::Given(given)) if pk != given => {
                return Err(CorestoreError::PrimaryKeyMismatch)
            }
            (Some(pk), _) => pk,
            (None, PrimaryKey::Stored) => {
                return Err(CorestoreError::NotFound("no corestore in this storage"))
            }
            (None, PrimaryKey::Given(pk) | PrimaryKey::StoredOrNew(pk)) => {
                let mut b = Batch::new();
                b.put(
                    layout::header_key(),
                    StoreHeader { primary_key: pk }.encode(),
                );
                storage.write(b).await?;
                pk
            }
        };
        let next_id = match storage.get(&layout::next_id_key()).await? {
            Some(bytes) => layout::decode_next_id(&bytes)?,
            None => 0,
        };
        let mut hub = ReplicationHub::new();
        hub.set_answer_unknown(true);
        Ok(Corestore {
            storage,
            primary_key,
            manifest_version: opts.manifest_version,
            replicator: opts.replicator,
            hub,
            open: BTreeMap::new(),
            next_id,
            next_session: 1,
            events: VecDeque::new(),
            unknown: VecDeque::new(),
            idle: BTreeSet::new(),
            watchers: watch::Watchers::default(),
            purged: BTreeSet::new(),
            closed: false,
        })
    }

    /// The primary key (JS `store.primaryKey`). Secret: it derives every named core's key pair.
    pub fn primary_key(&self) -> &[u8; 32] {
        &self.primary_key
    }

    /// The storage holding every core.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The key pair of core `name` in `namespace` (JS `store.createKeyPair(name)`).
    pub fn create_key_pair(&self, namespace: &Namespace, name: impl AsRef<[u8]>) -> KeyPair {
        create_key_pair(&self.primary_key, namespace, name.as_ref())
    }

    fn check_open(&self) -> Result<(), CorestoreError> {
        if self.closed {
            return Err(CorestoreError::Closed);
        }
        Ok(())
    }

    /// Open (creating if needed) a core and return a new session of it; see [`GetOptions`].
    pub async fn get(&mut self, opts: GetOptions) -> Result<CoreHandle, CorestoreError> {
        self.check_open()?;
        let GetOptions {
            name,
            namespace,
            key,
            key_pair,
            manifest,
            discovery_key: dk_opt,
            encryption_key,
            block_key,
            must_exist,
        } = opts;
        // a block key is set on the open core below, not derived at open or create
        let (encryption_key, block_key) = match (encryption_key, block_key) {
            (Some(k), true) => (None, Some(k)),
            (ek, _) => (ek, None),
        };
        // JS `_auth`: a name gives the key pair; a stored alias pins the core it named.
        let key_pair = match &name {
            Some(n) => Some(create_key_pair(&self.primary_key, &namespace, n)),
            None => key_pair,
        };
        let alias = match &name {
            Some(n) => match self.storage.get(&layout::alias_key(&namespace, n)).await? {
                Some(v) => Some(layout::decode_alias(&v)?),
                None => None,
            },
            None => None,
        };
        let manifest = match (manifest, &key_pair) {
            (Some(m), _) => Some(m),
            (None, Some(kp)) if alias.is_none() => Some(keys::key_pair_manifest(
                kp.public_key,
                self.manifest_version,
            )?),
            _ => None,
        };
        let key = match (key, &manifest) {
            (Some(k), _) => Some(k),
            (None, Some(m)) => Some(m.key()),
            (None, None) => None,
        };
        let dk = match (alias, dk_opt, key) {
            (Some(dk), _, _) | (None, Some(dk), _) => dk,
            (None, None, Some(k)) => discovery_key(&k),
            (None, None, None) => {
                return Err(CorestoreError::InvalidArgument(
                    "give a name, key, key pair, manifest or discovery key",
                ))
            }
        };
        if let Some(k) = key.filter(|_| alias.is_none()) {
            if dk_opt.is_some_and(|d| d != discovery_key(&k)) {
                return Err(CorestoreError::InvalidArgument(
                    "the discovery key is not the key's",
                ));
            }
        }

        if !self.open.contains_key(&dk) {
            let record = self.record(&dk).await?;
            let (core, id) = match record {
                Some(rec) => {
                    let core = Hypercore::open(
                        self.core_storage(rec.id),
                        CoreOpenOptions {
                            encryption_key,
                            key_pair,
                        },
                    )
                    .await?;
                    if core.discovery_key() != &dk {
                        return Err(CorestoreError::Corrupt(
                            "a core record points at another core's data".into(),
                        ));
                    }
                    (core, rec.id)
                }
                None if must_exist || key.is_none() => {
                    return Err(CorestoreError::NotFound("no such core in this store"))
                }
                None => {
                    let alias_name = name.map(|n| (namespace, n));
                    self.create(
                        CreateOptions {
                            key_pair,
                            key,
                            compat: false,
                            encryption_key,
                            manifest,
                        },
                        alias_name,
                    )
                    .await?
                }
            };
            self.add_core(core, id)?;
        } else if let Some(ek) = encryption_key {
            // Open without the key (for a remote, or by a session that did not give it).
            let core = self
                .hub
                .replicator_mut(&dk)
                .ok_or(CorestoreError::UnknownHandle)?
                .core_mut();
            if core.encrypted() {
                core.set_encryption_key(ek)?;
            } else {
                return Err(HypercoreError::InvalidArgument("core is not encrypted").into());
            }
        }
        if let Some(bk) = block_key {
            self.hub
                .replicator_mut(&dk)
                .ok_or(CorestoreError::UnknownHandle)?
                .core_mut()
                .set_block_encryption_key(bk);
        }
        let key = match key {
            Some(k) if alias.is_none() => k,
            _ => *self.hub_core(&dk)?.key(),
        };
        if self.hub_core(&dk)?.key() != &key {
            return Err(CorestoreError::InvalidArgument(
                "the key is not the stored core's",
            ));
        }
        Ok(self.new_session(dk, key))
    }

    /// Another session of `handle`'s core (JS `core.session()`).
    pub fn session(&mut self, handle: &CoreHandle) -> Result<CoreHandle, CorestoreError> {
        self.check_handle(handle)?;
        Ok(self.new_session(handle.discovery_key, handle.key))
    }

    fn new_session(&mut self, dk: [u8; 32], key: [u8; 32]) -> CoreHandle {
        let session = self.next_session;
        self.next_session += 1;
        let mut id = u32::MAX;
        if let Some(c) = self.open.get_mut(&dk) {
            c.sessions.insert(session);
            id = c.id;
        }
        self.idle.remove(&dk);
        CoreHandle {
            key,
            discovery_key: dk,
            session,
            id,
        }
    }

    /// End a session (JS `core.close()`). The core closes with its last session: its
    /// channels close on every stream (JS keeps replicating until the peers stop downloading
    /// too, some seconds later; our replicator has no "not downloading" state to tell them).
    /// A remote that opens its channel again gets the core opened for it.
    pub fn close_core(&mut self, handle: CoreHandle) -> Result<(), CorestoreError> {
        self.check_handle(&handle)?;
        let dk = handle.discovery_key;
        let last = self.open.get_mut(&dk).is_some_and(|c| {
            c.sessions.remove(&handle.session);
            c.sessions.is_empty()
        });
        if last {
            self.open.remove(&dk);
            self.idle.remove(&dk);
            self.hub.remove_core(&dk);
            self.pull_events();
        }
        Ok(())
    }

    /// Close every core and refuse further use (JS `store.close()`). Channels of every core
    /// close on every stream; the streams themselves stay until the transport removes them.
    pub fn close(&mut self) {
        self.closed = true;
        self.watchers.store_closed();
        for dk in std::mem::take(&mut self.open).into_keys() {
            self.hub.remove_core(&dk);
        }
        self.idle.clear();
        self.hub.set_answer_unknown(false);
        self.pull_events();
    }

    /// Delete a core from the store (JS `core.purge()`): every session of it ends (its
    /// handles become [`CorestoreError::UnknownHandle`], its channels close on every stream),
    /// then its core record, its alias (a named core) and all its data go in one atomic batch.
    /// A core of that name or key got later is a new, empty one; a remote asking for it is
    /// refused as for any core the store does not hold. Whether the core was stored here.
    pub async fn purge(&mut self, discovery_key: &[u8; 32]) -> Result<bool, CorestoreError> {
        Ok(self.purge_many(&[*discovery_key]).await? > 0)
    }

    /// [`Corestore::purge`] of several cores at once (a drive's db and blobs cores): every
    /// session of each ends, then the records, aliases and data of all of them go in ONE
    /// atomic batch, so a crash or a failed write leaves either all of them stored or none
    /// (never a drive's db without its blobs, whose entries would point into a new, empty
    /// blobs core that the next writes fill with other bytes). How many of them were stored.
    ///
    /// The storage deletes each core's data as one range; a backend may hold the keys of
    /// that range in memory while it commits (the file backend does: see its docs). The
    /// records are deleted, which need not erase the bytes: the native file backend leaves
    /// values of 8 KiB and more, unreferenced, in its data file.
    pub async fn purge_many(
        &mut self,
        discovery_keys: &[[u8; 32]],
    ) -> Result<usize, CorestoreError> {
        self.check_open()?;
        for dk in discovery_keys {
            if self.open.remove(dk).is_some() || self.idle.contains(dk) {
                self.idle.remove(dk);
                self.hub.remove_core(dk);
                self.pull_events();
            }
        }
        let mut batch = Batch::new();
        let mut stored = 0;
        let mut ids = Vec::new();
        let mut seen = BTreeSet::new();
        for dk in discovery_keys {
            if !seen.insert(*dk) {
                continue;
            }
            let Some(rec) = self.record(dk).await? else {
                continue;
            };
            stored += 1;
            ids.push(rec.id);
            batch.delete(layout::core_key(dk));
            if let Some((namespace, name)) = &rec.name {
                let alias = layout::alias_key(namespace, name);
                match self.storage.get(&alias).await? {
                    Some(v) if layout::decode_alias(&v)? == *dk => {
                        batch.delete(alias);
                    }
                    _ => {}
                }
            }
            let start = layout::data_prefix(rec.id);
            let end = match rec.id.checked_add(1) {
                Some(next) => layout::data_prefix(next),
                None => vec![layout::DATA + 1],
            };
            batch.delete_range(start, end);
        }
        if !batch.is_empty() {
            self.storage.write(batch).await?;
        }
        self.purged.extend(ids);
        Ok(stored)
    }

    /// Whether the store is closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn check_handle(&self, handle: &CoreHandle) -> Result<(), CorestoreError> {
        self.check_open()?;
        match self.open.get(&handle.discovery_key) {
            Some(c) if c.sessions.contains(&handle.session) => Ok(()),
            _ => Err(CorestoreError::UnknownHandle),
        }
    }

    fn hub_core(&self, dk: &[u8; 32]) -> Result<&Hypercore<CoreStorage<S>>, CorestoreError> {
        self.hub
            .replicator(dk)
            .map(Replicator::core)
            .ok_or(CorestoreError::UnknownHandle)
    }

    /// The core of a session.
    pub fn core(&self, handle: &CoreHandle) -> Result<&Hypercore<CoreStorage<S>>, CorestoreError> {
        self.check_handle(handle)?;
        self.hub_core(&handle.discovery_key)
    }

    /// The core of a session, to change directly. Changes made here are not announced to
    /// peers: prefer [`Corestore::append`] or [`Corestore::replicator_mut`], or call
    /// [`Replicator::notify_local_change`] afterwards.
    pub fn core_mut(
        &mut self,
        handle: &CoreHandle,
    ) -> Result<&mut Hypercore<CoreStorage<S>>, CorestoreError> {
        Ok(self.replicator_mut(handle)?.core_mut())
    }

    /// The replicator of a session's core.
    pub fn replicator(
        &self,
        handle: &CoreHandle,
    ) -> Result<&Replicator<CoreStorage<S>>, CorestoreError> {
        self.check_handle(handle)?;
        self.hub
            .replicator(&handle.discovery_key)
            .ok_or(CorestoreError::UnknownHandle)
    }

    /// The replicator of a session's core, to append, truncate, download, seek or send
    /// extensions so that peers hear of it. Its messages reach the streams on the store's next
    /// call or [`ReplicationHost::flush`](crate::replication::ReplicationHost::flush).
    pub fn replicator_mut(
        &mut self,
        handle: &CoreHandle,
    ) -> Result<&mut Replicator<CoreStorage<S>>, CorestoreError> {
        self.check_handle(handle)?;
        self.hub
            .replicator_mut(&handle.discovery_key)
            .ok_or(CorestoreError::UnknownHandle)
    }

    /// Append `blocks` to a writable core and tell its peers (JS `core.append`).
    pub async fn append(
        &mut self,
        now: u64,
        handle: &CoreHandle,
        blocks: &[&[u8]],
    ) -> Result<AppendOutcome, CorestoreError> {
        let out = self.replicator_mut(handle)?.append(now, blocks).await?;
        self.flush_hub();
        Ok(out)
    }

    /// Append `blocks` with a signature made elsewhere (a multisig assembled from the signers'
    /// partial signatures, JS `append(values, { signature })`) and tell its peers.
    pub async fn append_signed(
        &mut self,
        now: u64,
        handle: &CoreHandle,
        blocks: &[&[u8]],
        signature: &[u8],
    ) -> Result<AppendOutcome, CorestoreError> {
        let out = self
            .replicator_mut(handle)?
            .append_signed(now, blocks, signature)
            .await?;
        self.flush_hub();
        Ok(out)
    }

    /// The generation of the open core `discovery_key` ([`CoreHandle::generation`]), `None`
    /// when it is not open.
    pub fn open_generation(&self, discovery_key: &[u8; 32]) -> Option<u64> {
        self.open.get(discovery_key).map(|c| u64::from(c.id))
    }

    /// Whether the core of generation `generation` ([`CoreHandle::generation`]) was purged
    /// by this store since it was opened.
    pub fn was_purged(&self, generation: u64) -> bool {
        u32::try_from(generation).is_ok_and(|id| self.purged.contains(&id))
    }

    /// Whether a core is open (by a session, or for a remote).
    pub fn is_open(&self, discovery_key: &[u8; 32]) -> bool {
        self.open.contains_key(discovery_key)
    }

    /// The discovery keys of the open cores.
    pub fn open_cores(&self) -> impl Iterator<Item = &[u8; 32]> + '_ {
        self.open.keys()
    }

    /// An open core by discovery key (also the cores opened for a remote, which have no
    /// session).
    pub fn open_core(&self, discovery_key: &[u8; 32]) -> Option<&Hypercore<CoreStorage<S>>> {
        self.hub.replicator(discovery_key).map(Replicator::core)
    }

    /// The replicator of an open core by discovery key.
    pub fn open_replicator_mut(
        &mut self,
        discovery_key: &[u8; 32],
    ) -> Option<&mut Replicator<CoreStorage<S>>> {
        self.hub.replicator_mut(discovery_key)
    }

    /// The hub replicating the open cores.
    pub fn hub(&self) -> &ReplicationHub<CoreStorage<S>> {
        &self.hub
    }

    /// The hub, to run channels of other protocols on the store's streams
    /// ([`ReplicationHub::pair_protocol`], [`ReplicationHub::open_other`]: e.g. an autobase's
    /// wakeup channel beside its cores, as JS opens it on `store.replicate`'s stream). Their
    /// events come out of the store's events.
    pub fn hub_mut(&mut self) -> &mut ReplicationHub<CoreStorage<S>> {
        &mut self.hub
    }

    /// Whether a core is stored here (JS `storage.hasCore`).
    pub async fn has_core(&self, discovery_key: &[u8; 32]) -> Result<bool, CorestoreError> {
        Ok(self.record(discovery_key).await?.is_some())
    }

    /// The stored core with `discovery_key`, if any.
    pub async fn find(
        &self,
        discovery_key: &[u8; 32],
    ) -> Result<Option<StoredCore>, CorestoreError> {
        Ok(self.record(discovery_key).await?.map(|r| StoredCore {
            discovery_key: *discovery_key,
            key: r.key,
            name: r.name,
            id: r.id,
        }))
    }

    /// Every stored core, by discovery key (JS `store.list()`).
    pub async fn list(&self) -> Result<Vec<StoredCore>, CorestoreError> {
        let entries = self
            .storage
            .scan(&[layout::CORE], &[layout::CORE + 1], None)
            .await?;
        entries
            .iter()
            .map(|(k, v)| {
                let r = CoreRecord::decode(v)?;
                Ok(StoredCore {
                    discovery_key: layout::discovery_key_of(k)?,
                    key: r.key,
                    name: r.name,
                    id: r.id,
                })
            })
            .collect()
    }

    /// The named cores of `namespace`: `(name, discovery key)`, by name (JS
    /// `store.list(namespace)` lists the discovery keys).
    pub async fn list_names(
        &self,
        namespace: &Namespace,
    ) -> Result<Vec<(Vec<u8>, [u8; 32])>, CorestoreError> {
        let start = layout::alias_key(namespace, &[]);
        let entries = self
            .storage
            .scan(&start, &layout::alias_end(namespace), None)
            .await?;
        entries
            .iter()
            .map(|(k, v)| Ok((k[start.len()..].to_vec(), layout::decode_alias(v)?)))
            .collect()
    }

    async fn record(&self, dk: &[u8; 32]) -> Result<Option<CoreRecord>, CorestoreError> {
        match self.storage.get(&layout::core_key(dk)).await? {
            Some(v) => Ok(Some(CoreRecord::decode(&v)?)),
            None => Ok(None),
        }
    }

    fn core_storage(&self, id: u32) -> CoreStorage<S> {
        Prefixed::new(self.storage.clone(), layout::data_prefix(id))
    }

    /// Create a core: its hypercore header, core record, alias and the next id in one batch.
    async fn create(
        &mut self,
        opts: CreateOptions,
        name: Option<(Namespace, Vec<u8>)>,
    ) -> Result<(Hypercore<CoreStorage<S>>, u32), CorestoreError> {
        let id = u32::try_from(self.next_id).map_err(|_| CorestoreError::Full)?;
        let storage = self.core_storage(id);
        let (core, batch) = Hypercore::prepare_create(storage.clone(), opts).await?;
        let dk = *core.discovery_key();
        let mut batch = storage.to_inner(batch);
        if let Some((ns, n)) = &name {
            batch.put(layout::alias_key(ns, n), dk.to_vec());
        }
        let record = CoreRecord {
            id,
            key: *core.key(),
            name,
        };
        batch.put(layout::core_key(&dk), record.encode());
        batch.put(
            layout::next_id_key(),
            layout::encode_next_id(self.next_id + 1),
        );
        self.storage.write(batch).await?;
        self.next_id += 1;
        Ok((core, id))
    }

    /// Replicate an opened core (on every stream).
    fn add_core(&mut self, core: Hypercore<CoreStorage<S>>, id: u32) -> Result<(), CorestoreError> {
        let key = *core.key();
        let dk = self
            .hub
            .add_core(Replicator::new(core, self.replicator.clone()))?;
        self.open.insert(
            dk,
            OpenCore {
                sessions: BTreeSet::new(),
                id,
            },
        );
        self.watchers.opened(OpenedCore {
            key,
            discovery_key: dk,
            for_remote: false,
        });
        self.pull_events();
        Ok(())
    }

    /// Close the cores opened for a remote whose peers are all gone.
    fn collect_idle(&mut self) {
        let idle: Vec<[u8; 32]> = self
            .idle
            .iter()
            .filter(|dk| {
                self.hub
                    .replicator(dk)
                    .is_none_or(|r| r.peers().next().is_none())
            })
            .copied()
            .collect();
        for dk in idle {
            self.idle.remove(&dk);
            if self.open.get(&dk).is_some_and(|c| c.sessions.is_empty()) {
                self.open.remove(&dk);
                self.hub.remove_core(&dk);
            }
        }
        self.pull_events();
    }

    fn flush_hub(&mut self) {
        self.hub.flush();
        self.pull_events();
    }

    /// Move the hub's events to ours, keeping the remote's opens of unknown cores to answer.
    fn pull_events(&mut self) {
        while let Some(ev) = self.hub.poll_event() {
            match ev {
                HubEvent::UnknownCore {
                    stream,
                    discovery_key,
                } => self.unknown.push_back((stream, discovery_key)),
                ev => {
                    if let HubEvent::ChannelClosed { discovery_key, .. } = &ev {
                        if self
                            .open
                            .get(discovery_key)
                            .is_some_and(|c| c.sessions.is_empty())
                        {
                            self.idle.insert(*discovery_key);
                        }
                    }
                    self.events.push_back(ev);
                }
            }
        }
    }
}
