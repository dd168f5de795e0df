//! hyperdrive 13.3.4: a file system on two hypercores, byte-identical to the JS original.
//!
//! A drive is a **db** core holding a hyperbee of entries (key `files\0<path>`, value the JSON
//! [`EntryValue`]: executable bit, symlink target, where the bytes are, metadata) and a
//! **blobs** core holding the file contents ([`crate::hyperblobs`]). The same operations give
//! the same db blocks as JS, byte for byte, and the same blobs blocks; the drive's key is the db
//! core's key, and the blobs core's key derives from the db manifest ([`keys`]).
//!
//! A [`Hyperdrive`] runs on any [`BlobCore`] (both cores of one type): local
//! [`crate::hypercore::Session`]s, or replicated cores in the transports (natively
//! `hyperpunch::drive` opens a drive in a corestore, local or by key, and replicates it).
//!
//! ```
//! # use hyperpunch_core::{crypto::KeyPair, storage::MemoryStorage};
//! # use hyperpunch_core::hypercore::{CreateOptions, Hypercore};
//! use hyperpunch_core::hyperdrive::{Hyperdrive, PutOptions};
//! # futures_executor::block_on(async {
//! # let kp = KeyPair::from_seed(&[1; 32]);
//! # let (db, blobs) = hyperpunch_core::hyperdrive::suite::local_cores(
//! #     MemoryStorage::new(), MemoryStorage::new(), kp).await;
//! let drive = Hyperdrive::new(db, blobs);
//! drive.put("/docs/hello.txt", b"hello", PutOptions::default()).await?;
//! drive.symlink("/latest", "/docs/hello.txt", None).await?;
//! assert_eq!(drive.get("/docs/hello.txt").await?.as_deref(), Some(&b"hello"[..]));
//! let names: Vec<String> = drive.readdir("/").await?;
//! assert_eq!(names, ["docs", "latest"]);
//! let follow = drive.entry_follow("/latest").await?.unwrap();
//! assert_eq!(follow.key, "/docs/hello.txt");
//! # Ok::<(), hyperpunch_core::hyperdrive::DriveError>(())
//! # }).unwrap();
//! ```
//!
//! The pieces: [`path`] (JS `unix-path-resolve`), [`entry`] (the entry JSON), [`keys`] (the
//! blobs core of a drive), `read` (entry / get / list / readdir / read streams), `write` (put /
//! del / symlink / write streams / batches), `changes` (diff, watch, download, clear,
//! truncate).
//!
//! Differences from JS: reads of a range past a file's end stop at the file's end (JS reads on
//! into the next blob); `list` with `recursive: false` and `readdir` are the same shallow walk
//! as JS; `watch` gives checkouts of the drive, not JS's custom `map`; an entry whose JSON is
//! not an entry is a typed error ([`DriveError::Bee`] with an encoding error).
//!
//! `purge` (deleting both cores' storage, in one storage batch) belongs to the store that holds
//! them: natively `hyperpunch::drive::DriveCores::purge` / `purge_stored`, in the browser the
//! npm `Hyperdrive.purge()`.
//!
//! [`monitor`] is JS `drive.monitor(name)`'s statistics, fed by a transport with the blobs
//! core's replication events (natively `hyperpunch::drive::monitor`).
//!
//! Not done: `findingPeers`, `downloadRange`, `has` for block
//! maps fetched from peers with `wait: false`, compat drives being *created* (they are read).

mod changes;
pub mod entry;
pub mod keys;
pub mod monitor;
pub mod path;
mod read;
pub mod suite;
#[cfg(test)]
mod tests;
mod write;

pub use changes::{DiffStream, DriveDiff, DriveWatcher};
pub use entry::{DriveEntry, EntryCodec, EntryValue};
pub use read::{ListIter, ListOptions, Shallow};
pub use write::{DriveBatch, DriveWriter, PutOptions};

use crate::hyperbee::{BeeError, BeeOptions, Hyperbee, Metadata, Utf8};
use crate::hyperblobs::{BlobCore, BlobError, Hyperblobs};
use crate::hypercore::HypercoreError;

/// Everything a drive operation can fail with.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DriveError {
    /// The db bee failed (its core, a block that is not a bee node, an entry that is not an
    /// entry, a block no peer has, ...).
    #[error(transparent)]
    Bee(#[from] BeeError),
    /// The blobs failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A path that does not name a file (JS "Invalid filename", unix-path-resolve errors).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path given.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// No entry at this path (JS "Blob does not exist" of `createReadStream`).
    #[error("no such file: {0}")]
    NotFound(String),
    /// More than 16 symlinks in a row (JS "Recursive symlink").
    #[error("recursive symlink at {0}")]
    RecursiveSymlink(String),
    /// The drive cannot be written (a checkout, or a drive someone else writes).
    #[error("the drive is not writable")]
    NotWritable,
    /// [`Hyperdrive::truncate`] to a length past a core's end (JS "Bad truncation length").
    #[error("bad truncation length: {length} blocks of the {core} core, which has {core_length}")]
    BadTruncationLength {
        /// `"db"` or `"blobs"`.
        core: &'static str,
        /// The length asked for.
        length: u64,
        /// The core's length.
        core_length: u64,
    },
}

impl From<HypercoreError> for DriveError {
    fn from(e: HypercoreError) -> Self {
        DriveError::Blob(BlobError::Core(e))
    }
}

/// The db bee of a drive, its entries under the `files` sub.
pub type FilesBee<C> = Hyperbee<C, Utf8, EntryCodec>;

/// A drive on cores of type `C`; see the [module docs](self). Cheap to clone; clones and
/// checkouts share the cores, caches and write locks.
pub struct Hyperdrive<C: BlobCore> {
    files: FilesBee<C>,
    blobs: Hyperblobs<C>,
}

impl<C: BlobCore> Clone for Hyperdrive<C> {
    fn clone(&self) -> Self {
        Hyperdrive {
            files: self.files.clone(),
            blobs: self.blobs.clone(),
        }
    }
}

impl<C: BlobCore> std::fmt::Debug for Hyperdrive<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hyperdrive")
            .field("checkout", &self.files.checkout_version())
            .finish_non_exhaustive()
    }
}

impl<C: BlobCore> Hyperdrive<C> {
    /// The drive whose db core is `db` and blobs core `blobs` (find the blobs core of a drive
    /// with [`keys::content_manifest`]). Nothing is read or written yet; the first write to an
    /// empty db writes the bee header hyperdrive writes (`metadata: { contentFeed: null }`).
    pub fn new(db: C, blobs: C) -> Self {
        let bee = Hyperbee::with_options(
            db,
            BeeOptions {
                metadata: Some(Metadata::default()),
                ..BeeOptions::default()
            },
        );
        Hyperdrive {
            files: bee.with_codecs(Utf8, EntryCodec).sub("files"),
            blobs: Hyperblobs::new(blobs),
        }
    }

    /// The entries bee (its keys are paths inside the `files` sub).
    pub fn files(&self) -> &FilesBee<C> {
        &self.files
    }

    /// The db core.
    pub fn db(&self) -> &C {
        self.files.core()
    }

    /// The blobs.
    pub fn blobs(&self) -> &Hyperblobs<C> {
        &self.blobs
    }

    /// The drive's key (the db core's key).
    pub async fn key(&self) -> [u8; 32] {
        self.files.key().await
    }

    /// The blobs core's key (JS `contentKey`).
    pub async fn content_key(&self) -> [u8; 32] {
        self.blobs.key().await
    }

    /// JS `version`: the db core's length (at least 1), or the version checked out.
    pub async fn version(&self) -> u64 {
        self.files.version().await
    }

    /// Whether this drive can be written (its cores are writable and it is not a checkout).
    pub async fn writable(&self) -> bool {
        self.files.writable().await
    }

    /// The drive as of `version` (JS `checkout`), read-only. The blobs are shared (they only
    /// grow).
    pub async fn checkout(&self, version: u64) -> Self {
        Hyperdrive {
            files: self.files.checkout(version).await,
            blobs: self.blobs.clone(),
        }
    }

    /// The version checked out, if this is a checkout.
    pub fn checkout_version(&self) -> Option<u64> {
        self.files.checkout_version()
    }

    pub(crate) fn from_parts(files: FilesBee<C>, blobs: Hyperblobs<C>) -> Self {
        Hyperdrive { files, blobs }
    }
}
