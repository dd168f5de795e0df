//! Hyperdrives in a corestore: open the drive a store writes ([`open_local`], JS `new
//! Hyperdrive(store)`) or someone else's by key ([`open_remote`], JS `new Hyperdrive(store,
//! key)`), and replicate both of its cores over one connection per peer with
//! [`crate::replicate::replicate`] on the [`SharedCorestore`].
//!
//! The drive's db core is the store's named core `"db"`, its blobs core the one whose manifest
//! derives from the db's ([`hyperdrive::keys`]), so a store with the same primary key gives the
//! same drive key as JS. Both are [`StoreCore`]s: a read of a block the store does not hold asks
//! the connected peers for it and waits (sparse reading); [`Hyperdrive::download`] fetches whole
//! folders. [`Hyperdrive::truncate`] cuts a writable drive back to a version (the peers are
//! told) and [`DriveCores::purge`] deletes both cores from the store (JS `purge`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hyperpunch::corestore::{Corestore, PrimaryKey};
//! use hyperpunch::drive::open_local;
//! use hyperpunch::hyperdrive::PutOptions;
//! use hyperpunch::replicate::SharedCorestore;
//! use hyperpunch::FileStorage;
//!
//! let store = Corestore::open(FileStorage::open("./store")?, PrimaryKey::StoredOrNew([7; 32])).await?;
//! let store = SharedCorestore::new(store);
//! let (drive, _cores) = open_local(&store).await?;
//! drive.put("/hello.txt", b"hello", PutOptions::default()).await?;
//! println!("drive key {}", hex::encode(drive.key().await));
//! # Ok(()) }
//! ```

use std::time::Duration;

use tokio::time::Instant;

use crate::bee::StoreCore;
use crate::core::corestore::{CoreHandle, Corestore, CorestoreError, GetOptions};
use crate::core::crypto::discovery_key;
use crate::core::hyperbee::{BeeCore, BeeError, Header};
use crate::core::hypercore::manifest::Manifest;
use crate::core::hyperdrive::{self, DriveError, Hyperdrive};
use crate::core::storage::Storage;
use crate::replicate::SharedCorestore;

/// A drive whose cores live in a [`SharedCorestore`].
pub type StoreDrive<S> = Hyperdrive<StoreCore<S>>;

/// Why a drive could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DriveOpenError {
    /// The store failed (storage, a core that does not open, ...).
    #[error(transparent)]
    Store(#[from] CorestoreError),
    /// The drive failed (its header, ...).
    #[error(transparent)]
    Drive(#[from] DriveError),
    /// A remote drive whose db manifest did not arrive from any peer in time (the drive is
    /// not known to the peers, or no peer is connected).
    #[error("the drive's db core is not available: no peer sent its manifest within {0:?}")]
    NotAvailable(Duration),
    /// The db core is not a drive (its first block is not a hyperbee header, or it names no
    /// blobs core).
    #[error("not a hyperdrive: {0}")]
    NotADrive(&'static str),
    /// The store's own (writable) drive whose db core has entries while its blobs core is not
    /// stored: what a purge interrupted between its two cores left (versions before the
    /// one-batch purge deleted the blobs core first). Opening it would make a new, empty blobs
    /// core under the same key, and the old entries would read the bytes of later writes;
    /// delete the rest with [`purge_stored`] (`hyperpunch drive purge`).
    #[error(
        "the drive's db core has entries but its blobs core is not stored (left by an \
         interrupted purge): purge the drive to delete the rest"
    )]
    BlobsMissing,
}

/// The store sessions of a drive's two cores: they keep the cores open; hand them to
/// [`DriveCores::close`] to close them.
#[derive(Debug)]
pub struct DriveCores {
    /// The db core.
    pub db: CoreHandle,
    /// The blobs core.
    pub blobs: CoreHandle,
}

impl DriveCores {
    /// End both sessions.
    pub async fn close<S: Storage + Clone + 'static>(
        self,
        store: &SharedCorestore<S>,
    ) -> Result<(), CorestoreError> {
        let mut g = store.lock().await;
        g.close_core(self.blobs)?;
        g.close_core(self.db)
    }

    /// Delete the drive from the store (JS `drive.purge()`): every session of both cores ends
    /// (handles of them anywhere become [`CorestoreError::UnknownHandle`]) and both cores'
    /// records, aliases and data are deleted in ONE storage batch
    /// ([`Corestore::purge_many`]): a crash or a failed write leaves the whole drive or
    /// nothing of it, never a db whose entries would point into a new, empty blobs core.
    /// Every [`StoreDrive`] on these cores (this one, its checkouts, clones) fails from then
    /// on with [`HypercoreError::Purged`](crate::core::hypercore::HypercoreError::Purged),
    /// also once the drive is opened again. Opening it again gives an empty one (the same key
    /// for the store's own drive).
    ///
    /// The records are deleted; natively ([`crate::FileStorage`]) the blocks' bytes stay in
    /// the store's data file until it is compacted (see `STORAGE.md`), so they are not erased
    /// from the disk.
    ///
    /// [`Corestore::purge_many`]: crate::core::corestore::Corestore::purge_many
    pub async fn purge<S: Storage + Clone + 'static>(
        self,
        store: &SharedCorestore<S>,
    ) -> Result<(), CorestoreError> {
        let mut g = store.lock().await;
        g.purge_many(&[*self.blobs.discovery_key(), *self.db.discovery_key()])
            .await?;
        Ok(())
    }
}

/// How a drive's reads wait for peers.
#[derive(Debug, Clone, Copy)]
pub struct DriveOptions {
    /// How long a read waits for a block no peer has sent yet (`None`: forever, as JS).
    pub block_timeout: Option<Duration>,
    /// How long a read of the live drive first waits for the peers to announce their length
    /// (JS `update()`).
    pub update_timeout: Duration,
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions {
            block_timeout: None,
            update_timeout: crate::bee::UPDATE_TIMEOUT,
        }
    }
}

impl DriveOptions {
    /// No waiting at all: a drive read without peers (a block not stored is
    /// `BlockNotAvailable` at once).
    pub fn offline() -> Self {
        DriveOptions {
            block_timeout: Some(Duration::ZERO),
            update_timeout: Duration::ZERO,
        }
    }
}

/// The drive this store writes (JS `new Hyperdrive(store)`): the named core `"db"` and its
/// blobs core, created when missing.
pub async fn open_local<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
) -> Result<(StoreDrive<S>, DriveCores), DriveOpenError> {
    open_local_with(store, DriveOptions::default()).await
}

/// [`open_local`] with options.
pub async fn open_local_with<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
    opts: DriveOptions,
) -> Result<(StoreDrive<S>, DriveCores), DriveOpenError> {
    let mut g = store.lock().await;
    let db = g.get(GetOptions::named("db")).await?;
    let (manifest, key_pair) = {
        let core = g.core(&db)?;
        (core.manifest().cloned(), core.key_pair().cloned())
    };
    let manifest = manifest.ok_or(DriveOpenError::NotADrive("the db core has no manifest"))?;
    let content = hyperdrive::keys::content_manifest(&manifest, db.key())
        .ok_or(DriveOpenError::NotADrive("a version-0 db manifest"))?;
    if let Err(e) = check_blobs_stored(&g, &db, &content).await {
        g.close_core(db)?;
        return Err(e);
    }
    let mut get = GetOptions::from_manifest(content);
    get.key_pair = key_pair;
    let blobs = g.get(get).await?;
    drop(g);
    Ok(finish(store, db, blobs, opts))
}

/// The drive with key `key` (JS `new Hyperdrive(store, key)`): the store's own drive if it is
/// this one (writable), else a reader whose blocks come from the peers the store replicates
/// with. The db manifest is needed to find the blobs core: when the store does not hold it yet,
/// this waits up to `wait` for a connected peer to send it.
pub async fn open_remote<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
    key: [u8; 32],
    wait: Duration,
) -> Result<(StoreDrive<S>, DriveCores), DriveOpenError> {
    open_remote_with(store, key, wait, DriveOptions::default()).await
}

/// [`open_remote`] with options.
pub async fn open_remote_with<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
    key: [u8; 32],
    wait: Duration,
    opts: DriveOptions,
) -> Result<(StoreDrive<S>, DriveCores), DriveOpenError> {
    let db = store.lock().await.get(GetOptions::from_key(key)).await?;
    let manifest = wait_manifest(store, &db, wait).await?;
    let (writable, key_pair) = {
        let g = store.lock().await;
        let core = g.core(&db)?;
        (core.writable(), core.key_pair().cloned())
    };
    let blobs = match hyperdrive::keys::content_manifest(&manifest, &key) {
        Some(content) => {
            let mut g = store.lock().await;
            if writable {
                if let Err(e) = check_blobs_stored(&g, &db, &content).await {
                    g.close_core(db)?;
                    return Err(e);
                }
            }
            let mut get = GetOptions::from_manifest(content);
            if writable {
                get.key_pair = key_pair;
            }
            g.get(get).await?
        }
        None => {
            // A compat drive: the blobs key is in the db header.
            let core =
                StoreCore::new(store.clone(), *db.discovery_key()).with_block_timeout(Some(wait));
            let raw = BeeCore::get(&core, 0)
                .await
                .map_err(|e| DriveError::Bee(BeeError::Core(e)))?
                .ok_or(DriveOpenError::NotAvailable(wait))?;
            let header = Header::decode(&raw)
                .map_err(|_| DriveOpenError::NotADrive("block 0 is not a hyperbee header"))?;
            let blobs_key = hyperdrive::keys::content_key_from_header(&header)
                .ok_or(DriveOpenError::NotADrive("the header names no blobs core"))?;
            store
                .lock()
                .await
                .get(GetOptions::from_key(blobs_key))
                .await?
        }
    };
    Ok(finish(store, db, blobs, opts))
}

/// `Err(BlobsMissing)` for a db core with entries whose blobs core (manifest `content`) is not
/// stored: a writer must not make a new, empty one under the old entries.
async fn check_blobs_stored<S: Storage + Clone + 'static>(
    g: &Corestore<S>,
    db: &CoreHandle,
    content: &Manifest,
) -> Result<(), DriveOpenError> {
    if g.core(db)?.length() > 0 && !g.has_core(&discovery_key(&content.key())).await? {
        return Err(DriveOpenError::BlobsMissing);
    }
    Ok(())
}

/// Delete the drive whose db core has key `key` from the store without opening it as a drive
/// (JS `drive.purge()`, as [`DriveCores::purge`]): the db core and its blobs core (the one its
/// manifest derives, or for a compat drive the one its stored header names) in ONE storage
/// batch; every session of them ends and drives on them fail with
/// [`HypercoreError::Purged`](crate::core::hypercore::HypercoreError::Purged). Also deletes
/// what an interrupted purge of an older version left: a db core without its blobs core
/// ([`DriveOpenError::BlobsMissing`]). Whether the db core was stored.
pub async fn purge_stored<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
    key: [u8; 32],
) -> Result<bool, CorestoreError> {
    let mut g = store.lock().await;
    let dk = discovery_key(&key);
    if !g.has_core(&dk).await? {
        return Ok(false);
    }
    let db = g
        .get(GetOptions::from_discovery_key(dk).must_exist())
        .await?;
    let blobs = {
        let core = g.core(&db)?;
        match core
            .manifest()
            .and_then(|m| hyperdrive::keys::content_key(m, &key))
        {
            Some(k) => Some(k),
            None if core.has(0) => core
                .get(0)
                .await?
                .and_then(|raw| Header::decode(&raw).ok())
                .and_then(|h| hyperdrive::keys::content_key_from_header(&h)),
            None => None,
        }
    };
    let mut dks = vec![dk];
    dks.extend(blobs.map(|b| discovery_key(&b)));
    g.close_core(db)?;
    g.purge_many(&dks).await?;
    Ok(true)
}

fn finish<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
    db: CoreHandle,
    blobs: CoreHandle,
    opts: DriveOptions,
) -> (StoreDrive<S>, DriveCores) {
    let core = |h: &CoreHandle| {
        StoreCore::new(store.clone(), *h.discovery_key())
            .with_generation(h.generation())
            .with_block_timeout(opts.block_timeout)
            .with_update_timeout(opts.update_timeout)
    };
    let drive = Hyperdrive::new(core(&db), core(&blobs));
    (drive, DriveCores { db, blobs })
}

/// The db core's manifest, waiting up to `wait` for a peer to send it.
async fn wait_manifest<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
    db: &CoreHandle,
    wait: Duration,
) -> Result<Manifest, DriveOpenError> {
    let deadline = Instant::now() + wait;
    store
        .wait_until(deadline, |hub| {
            Ok::<_, DriveOpenError>(hub.core(db)?.manifest().cloned())
        })
        .await?
        .ok_or(DriveOpenError::NotAvailable(wait))
}

#[cfg(test)]
#[path = "drive_tests.rs"]
mod tests;
