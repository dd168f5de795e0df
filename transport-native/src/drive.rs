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
use crate::core::corestore::{CoreHandle, CorestoreError, GetOptions};
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
    /// (handles of them anywhere become [`CorestoreError::UnknownHandle`], a [`StoreDrive`] on
    /// them fails its reads) and both cores' storage is deleted ([`Corestore::purge`]); the
    /// blobs core first, so a crash between the two leaves a db whose blobs are gone rather
    /// than blobs no db names. Opening the drive again gives an empty one (the same key for
    /// the store's own drive).
    ///
    /// [`Corestore::purge`]: crate::core::corestore::Corestore::purge
    pub async fn purge<S: Storage + Clone + 'static>(
        self,
        store: &SharedCorestore<S>,
    ) -> Result<(), CorestoreError> {
        let mut g = store.lock().await;
        g.purge(self.blobs.discovery_key()).await?;
        g.purge(self.db.discovery_key()).await?;
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
            let mut get = GetOptions::from_manifest(content);
            if writable {
                get.key_pair = key_pair;
            }
            store.lock().await.get(get).await?
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

fn finish<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
    db: CoreHandle,
    blobs: CoreHandle,
    opts: DriveOptions,
) -> (StoreDrive<S>, DriveCores) {
    let core = |dk: &[u8; 32]| {
        StoreCore::new(store.clone(), *dk)
            .with_block_timeout(opts.block_timeout)
            .with_update_timeout(opts.update_timeout)
    };
    let drive = Hyperdrive::new(core(db.discovery_key()), core(blobs.discovery_key()));
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
