//! Native file storage: [`FileStorage`], a [`Storage`] backed by the embedded LSM store `fjall`.
//!
//! (About 1,500 lines: one backend, the value layout, the data file, the write path and the
//! suspend gate next to the `Storage` impl they serve; store creation is in `create`, tests in
//! `tests`. The data file and its compaction, once written, are the next module to split out.)
//!
//! One [`FileStorage`] owns one folder DIR. Opening takes an exclusive lock on
//! `DIR/storage.lock`, so a second process (or a second open in the same process) gets
//! [`StorageError::Unavailable`] instead of silently sharing the files. The database lives in
//! `DIR/db`; while a new one is created there, the marker `DIR/db.incomplete` exists, so a kill
//! during creation never leaves a folder that cannot be opened (the next open starts over). Other files in DIR are left
//! alone (the CLI keeps an encryption key there).
//!
//! # Layout
//!
//! Values of at least 8 KiB (hypercore's large blocks and its chunks of small ones, each
//! written once) are appended to `DIR/db.data`, a plain append-only file; fjall keeps, under the
//! value's key, where it is and an xxh3 checksum of it. Shorter values are kept in fjall (among
//! them the 4 KiB bitfield pages that every batch of blocks rewrites: the data file does not
//! reclaim the space of overwritten values). So a block is written once (fjall would write it to its
//! journal, then again to a blob file when it flushes the memtable), and the writes of a
//! download are one sequential file. The bytes of a batch are written to the data file before
//! the batch that references them commits: a crash in between leaves bytes no record points to,
//! which the next open leaves behind (new values go after them). A big batch (values of 1 MiB
//! or more in all, such as a hypercore append of many small blocks) puts its values of 1 KiB or
//! more there too (its block chunks and tree pages), so that its bytes are written once, not
//! to fjall's journal and again to its tables; the few of them rewritten later (a partial tree
//! page, bitfield pages) leave a few KiB behind per MiB of such a batch. Stores made by versions before
//! the data file (keyspace `kv`, values as they are) are opened as they are and keep that
//! layout.
//!
//! # What is guaranteed
//!
//! * **Atomic batches.** A [`Batch`] is written to fjall's journal as one checksummed record.
//!   After any crash, recovery replays whole records only, so either the entire batch is visible
//!   or none of it is.
//! * **Process-crash durability (default).** When [`Storage::write`] resolves, the batch has been
//!   handed to the operating system (`write(2)` of the data file and the journal,
//!   [`Durability::Process`]). It
//!   survives `kill -9`, a panic or an abort of this process. It does *not* necessarily survive a
//!   power cut or kernel crash: for that, call [`FileStorage::sync`] at the points that matter
//!   (it `fsync`s the data file, then the journal), or open with [`Durability::Sync`] to
//!   `fdatasync` every batch (much slower; see `STORAGE.md`).
//! * **Order on the disk.** Each batch's bytes in the data file are written before its
//!   references are committed to the journal, and the data file is `fsync`ed before *we* or
//!   *fjall* sync the journal ([`FileStorage::sync`], [`FileStorage::suspend`], a flush of a
//!   sealed memtable by fjall's worker, closing, and the recovery of the next open). So, in
//!   either mode, what was written before the last [`FileStorage::sync`] survives a power cut
//!   with its bytes; with [`Durability::Sync`], each batch's data bytes are synced before its
//!   journal record, and every completed batch survives with its bytes. With
//!   the default [`Durability::Process`], what was written since the last sync is ordered only
//!   in the page cache: the kernel writes dirty pages back in no order between the two files,
//!   so a power cut may keep a committed reference (a journal record) whose bytes in the data
//!   file never reached the disk. Reading such a value (like one a lying disk lost) is a
//!   [`StorageError::Corrupt`] (the value lies past the end of the data file, or does not match
//!   its checksum), never wrong bytes and never a panic.
//! * **No panics on damaged files.** Errors from the store (including a checksum mismatch or an
//!   unreadable file) become [`StorageError`]s; as a last line of defence every call into the
//!   store is wrapped in `catch_unwind`, so even a bug in the store surfaces as
//!   [`StorageError::Corrupt`] rather than unwinding into the caller.
//!
//! # Opening
//!
//! fjall replays its whole journal at every open. When a close finds journals of at least
//! [`FileStorageOptions::compact_journal_at`] bytes, their contents are flushed into tables and
//! the journals replaced by an empty one (crash-safe at every step, see `compact_journal`), so
//! the next open does not read them again: the process that wrote a lot pays for it. So does a
//! process that wrote a big batch (see `BIG_BATCH`), whatever the journal's size: its values
//! went to the data file, and the journal holds a short record per value, whose number rather
//! than their bytes is what a replay costs. When an
//! open finds such journals (left by a process that was killed, or by an older version),
//! fjall's worker begins that flush while the store is used, and the close finishes it.
//!
//! # Suspending
//!
//! [`FileStorage::suspend`] (JS `corestore.suspend()`, e.g. before a mobile app goes to the
//! background) syncs everything written so far and makes every later read and write wait
//! until [`FileStorage::resume`]; the files stay open and the folder locked. Its rustdoc says
//! exactly what it guarantees.
//!
//! # Blocking
//!
//! The [`Storage`] methods are `async` but do their work synchronously on the calling thread:
//! the store is local and fast (point reads are sub-microsecond from cache, a batch of a thousand
//! blocks is a single sequential journal write). Callers on a latency-sensitive async runtime
//! that issue very large batches may want to call them from a blocking-task pool. A write can
//! also wait for the disk: while three sealed 16 MiB memtables are waiting to be flushed, the
//! writer waits for the flush, so memory does not grow with the amount written.
//!
//! # Limits
//!
//! Keys must be 1 to 65 535 bytes long and values at most 4 GiB (fjall's limits); other keys are
//! rejected with [`StorageError::Io`] before anything is written. Scans and gets accept any key.
//! The space of long values that are deleted or overwritten stays in the data file (hypercore
//! writes each block once; only `clear`, `truncate` and a corestore's `purge` delete them):
//! nothing compacts it yet, and the bytes stay there as they were, unreferenced but readable
//! by anyone who can read the file (they are not overwritten: a deleted value is not erased
//! from the disk). Shorter values, kept in fjall, stay on disk until its compaction drops
//! their tombstoned versions.
//!
//! A range delete ([`Op::DeleteRange`], a corestore purging a core) reads every key of the
//! range into memory and commits one fjall batch with a tombstone per key: that one batch is
//! what makes the purge atomic, so its memory and its journal record grow with the number of
//! records the purged cores hold: a record per block of 8 KiB or more (one per chunk of up to
//! 64 smaller blocks), a tree page per 16 blocks and a bitfield page, each key held once in a
//! map and once as a tombstone (estimated, not measured: of the order of 100-200 bytes per
//! record, so some 100-200 MB for a core of a million large blocks). A bounded variant would
//! need several batches, and a crash between them would leave part of a core.

use hyperpunch_core::storage::{Batch, Entries, Op, Storage, StorageError};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions, TryLockError};
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::ManuallyDrop;
use std::ops::Bound;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

#[path = "storage_create.rs"]
mod create;

use fjall::{
    AbstractTree, CompressionType, Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions,
    PersistMode, Readable,
};

/// The fjall keyspace of stores created before the data file: values are stored as they are.
const KEYSPACE: &str = "kv";
/// The fjall keyspace of stores with a data file ([`DATA_FILE`]): every value is tagged, either
/// [`TAG_INLINE`] and the value, or [`TAG_DATA`] and where the value is in the data file.
const KEYSPACE_DATA: &str = "kv2";
/// The append-only data file of a store with [`KEYSPACE_DATA`] (beside [`DB_DIR`]).
const DATA_FILE: &str = "db.data";
/// Values at least this long are written to the data file, the rest inline in fjall. The data
/// file never reclaims the space of a value that is overwritten, so values rewritten often must
/// stay below it: hypercore rewrites a 4 KiB bitfield page with every batch of blocks, and
/// writes blocks (and chunks of small blocks, up to 64 KiB) once.
const DATA_THRESHOLD: usize = 8 * 1024;
/// A batch whose values add up to at least this many bytes is a big one: its values of at least
/// [`BIG_BATCH_DATA_THRESHOLD`] go to the data file too. Such a batch (an append of many blocks:
/// a `bee batch` of 100k keys writes 12 MB of block chunks and tree pages of about 1.3 KiB) would
/// otherwise be written to fjall's journal, to its memtable, and again to tables and blob files
/// when the memtable is flushed (at the close at the latest, see `compact_journal`); in the data
/// file it is one write, and the journal gets only the references. The values of a big batch
/// overwritten later (the last, partial tree page, the bitfield pages, one of each per 32768
/// blocks) leave their old bytes in the data file: a few KiB per MiB of such a batch.
const BIG_BATCH: usize = 1024 * 1024;
/// The shortest value a big batch ([`BIG_BATCH`]) puts in the data file.
const BIG_BATCH_DATA_THRESHOLD: usize = 1024;
/// A tagged value held inline: the tag, then the value.
const TAG_INLINE: u8 = 0;
/// A tagged value in the data file: the tag, `u64le(offset) ‖ u32le(length) ‖ u64le(xxh3)`.
const TAG_DATA: u8 = 1;
/// Length of a [`TAG_DATA`] record.
const DATA_REF_LEN: usize = 1 + 8 + 4 + 8;
/// After this many bytes appended to the data file, its write-back to the disk is started
/// (without waiting), so the final `sync` has little left to write.
const WRITEBACK_STEP: u64 = 4 * 1024 * 1024;
/// Made when a store with a data file is closed after its data file was synced, removed when
/// it is opened: while it exists, the data file holds no unsynced bytes (see `open_database`).
const DATA_SYNCED: &str = "db.data.synced";
/// Subfolder holding the fjall database.
const DB_DIR: &str = "db";
/// Where earlier versions built a new database before renaming it to [`DB_DIR`] (one left by an
/// interrupted creation is removed).
const DB_STAGING_DIR: &str = "db.creating";
/// Present while [`DB_DIR`] is being created (see [`open_database`]).
const DB_INCOMPLETE: &str = "db.incomplete";
/// The lock file guarding the folder.
const LOCK_FILE: &str = "storage.lock";
/// Longest key fjall accepts.
const MAX_KEY_LEN: usize = u16::MAX as usize;
/// Longest value fjall accepts.
const MAX_VALUE_LEN: u64 = u32::MAX as u64;

/// How far a completed [`Storage::write`] has pushed its batch toward the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The batch is in the operating system's page cache: it survives the death of this process
    /// (`kill -9`, abort) but not a power loss or kernel crash. Fast. Use [`FileStorage::sync`]
    /// to make everything written so far survive power loss.
    #[default]
    Process,
    /// Every batch is `fdatasync`ed before the write resolves: it also survives power loss.
    Sync,
}

/// Options for [`FileStorage::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStorageOptions {
    /// Durability of each completed write. Default: [`Durability::Process`].
    pub durability: Durability,
    /// When the journal found at open holds at least this many bytes, its contents are moved
    /// into tables (by fjall's worker, while the store is used) and the close replaces it by a
    /// new, empty journal, so the next open does not read it all again (see the module
    /// documentation). Default: [`JOURNAL_COMPACT_AT`]; `u64::MAX`: never.
    pub compact_journal_at: u64,
}

impl Default for FileStorageOptions {
    fn default() -> Self {
        FileStorageOptions {
            durability: Durability::Process,
            compact_journal_at: JOURNAL_COMPACT_AT,
        }
    }
}

/// The default of [`FileStorageOptions::compact_journal_at`]: 1 MiB.
///
/// Every open reads the whole journal and puts what it holds into a memtable (about 2 ms of CPU
/// per MiB, measured with 12 MiB left by `bee batch` of 100k keys: 22 ms for each later
/// `bee put` process). Compacting costs a flush of the memtable (on fjall's worker thread,
/// beside the caller's work) and a few `fsync`s at the close, once.
/// A writer of small batches adds a few KiB per batch (a hypercore append rewrites a 4 KiB
/// bitfield page), so a store opened by one short process after another compacts every few
/// hundred of them and replays half a MiB on average.
pub const JOURNAL_COMPACT_AT: u64 = 1024 * 1024;

struct Inner {
    /// Closed in [`Inner`]'s `drop` (which may compact the journal once it is closed).
    db: ManuallyDrop<Database>,
    ks: ManuallyDrop<Keyspace>,
    /// Whether the open found a big journal and began compacting it ([`compact_journal`]); the
    /// close finishes it.
    compact: bool,
    /// [`FileStorageOptions::compact_journal_at`]: a close that finds journals this big compacts
    /// them even if the open did not begin to (the process that wrote them pays the flush, not
    /// the next one).
    compact_at: u64,
    /// Whether this process wrote a big batch ([`BIG_BATCH`]): its close then compacts the
    /// journal whatever its size (unless [`FileStorageOptions::compact_journal_at`] is
    /// `u64::MAX`). Such a batch leaves the journal small in bytes but with a record per value
    /// (the references of the values it put in the data file: 7,800 for a `bee batch` of 100k
    /// keys), and replaying records costs each later open about 1.3 µs of CPU apiece (10 ms).
    wrote_big: AtomicBool,
    /// The data file of a store with [`KEYSPACE_DATA`]; `None` for a store made before it
    /// (values in fjall as they are).
    data: Option<File>,
    /// How far the data file holds bytes: no value reference may point past it. Raised before
    /// the batch referencing new bytes commits.
    data_end: AtomicU64,
    /// Serialises writers, so a range delete's scan and the commit of its batch see no other
    /// writer in between; holds where the data file's next value goes.
    write_lock: Mutex<DataTail>,
    durability: Durability,
    /// [`FileStorage::suspend`]: while set, reads and writes wait.
    suspend: Suspend,
    path: PathBuf,
    /// Exclusive lock on `DIR/storage.lock`, held while open; declared last so it is released
    /// only after the database is closed.
    _lock: File,
}

/// Whether the store is suspended ([`FileStorage::suspend`]), and who waits for the resume.
#[derive(Default)]
struct Suspend {
    suspended: AtomicBool,
    resumed: tokio::sync::Notify,
}

impl Suspend {
    fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::Acquire)
    }

    /// Returns once the store is not suspended (at once when it is not).
    async fn resumed(&self) {
        while self.is_suspended() {
            let notified = self.resumed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_suspended() {
                break;
            }
            notified.await;
        }
    }
}

/// The writer's position in the data file.
struct DataTail {
    /// Where the next value is written (the data file's length at open, then past each value).
    end: u64,
    /// Up to where the write-back to disk has been started.
    written_back: u64,
    /// Up to where the data file is known durable (`fdatasync`ed).
    synced: u64,
    /// Up to where disk space was allocated ahead of the writes ([`preallocate`]).
    allocated: u64,
}

impl Drop for Inner {
    /// Closing the database syncs its journal: the bytes its records reference are synced first
    /// (a failure here cannot be reported; the next open syncs them again before recovery).
    ///
    /// Once the data file is known synced, the marker [`DATA_SYNCED`] is made, so the next
    /// open need not sync it again (not synced itself: a marker lost in a power cut only costs
    /// the next open that sync).
    ///
    /// Then the database is closed, finishing the compaction of its journal if the open began
    /// one ([`compact_journal`]; a failure leaves the journal to the next open).
    fn drop(&mut self) {
        let tail = self.write_lock.get_mut().unwrap_or_else(|e| e.into_inner());
        let data_synced = match &self.data {
            Some(data) => tail.end <= tail.synced || data.sync_data().is_ok(),
            None => false,
        };
        // SAFETY: `drop` runs once and nothing uses these fields after it: each is taken once.
        let (db, ks) = unsafe {
            (
                ManuallyDrop::take(&mut self.db),
                ManuallyDrop::take(&mut self.ks),
            )
        };
        let big_journal = || {
            journal_files(&self.path.join(DB_DIR))
                .map(|js| js.iter().map(|j| j.len).sum::<u64>() >= self.compact_at)
                .unwrap_or(false)
        };
        let wrote_big = *self.wrote_big.get_mut() && self.compact_at != u64::MAX;
        if (self.compact || wrote_big || big_journal()) && (data_synced || self.data.is_none()) {
            let _ = compact_journal(&self.path.join(DB_DIR), db, ks);
        } else {
            drop(db);
            drop(ks);
        }
        if data_synced {
            if let Some(state) = synced_state(&self.path) {
                let _ = std::fs::write(self.path.join(DATA_SYNCED), state);
            }
        }
    }
}

/// What the marker [`DATA_SYNCED`] records: the data file's length and modification time and
/// the newest journal's id and length, as the clean close left them. The next open skips the
/// data file's sync only when it finds the same: a data file or journal written since (by a
/// process of an older version that knows no marker, say) makes it sync as after a crash.
fn synced_state(dir: &Path) -> Option<String> {
    let data = std::fs::metadata(dir.join(DATA_FILE)).ok()?;
    let mtime = data
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    let journals = journal_files(&dir.join(DB_DIR)).ok()?;
    let (id, len) = journals.last().map_or((0, 0), |j| (j.id, j.len));
    Some(format!("v1 {} {mtime} {id} {len}\n", data.len()))
}

/// A crash-safe [`Storage`] in a folder on disk. Clones share the same open store.
///
/// See the [module documentation](self) for the guarantees.
#[derive(Clone)]
pub struct FileStorage {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStorage")
            .field("path", &self.inner.path)
            .field("durability", &self.inner.durability)
            .finish()
    }
}

fn map_err(e: fjall::Error) -> StorageError {
    match e {
        fjall::Error::Io(io) => StorageError::Io(io.to_string()),
        fjall::Error::Locked => StorageError::Unavailable(
            "the storage folder is in use by another process (or another open handle)".into(),
        ),
        fjall::Error::Poisoned => StorageError::Unavailable(
            "the store hit a fatal write error earlier and must be reopened".into(),
        ),
        other => StorageError::Corrupt(other.to_string()),
    }
}

/// Run `f`, turning a panic inside the store into [`StorageError::Corrupt`].
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, StorageError>) -> Result<T, StorageError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(StorageError::Corrupt(format!(
                "the store failed while {what}: {msg}"
            )))
        }
    }
}

fn check_key(k: &[u8]) -> Result<(), StorageError> {
    if k.is_empty() || k.len() > MAX_KEY_LEN {
        return Err(StorageError::Io(format!(
            "key of {} bytes not supported by the file store (1..={MAX_KEY_LEN})",
            k.len()
        )));
    }
    Ok(())
}

/// For a batch of puts and deletes: whether each op is the last one of its key.
fn last_op_of_each_key(ops: &[Op]) -> Vec<bool> {
    let mut keep = vec![true; ops.len()];
    if ops.len() < 2 {
        return keep;
    }
    let mut last: HashMap<&[u8], usize, BuildHasherDefault<FxHasher>> =
        HashMap::with_capacity_and_hasher(ops.len(), Default::default());
    for (i, op) in ops.iter().enumerate() {
        if let Op::Put(k, _) | Op::PutParts(k, _) | Op::Delete(k) = op {
            if let Some(prev) = last.insert(k.as_slice(), i) {
                keep[prev] = false;
            }
        }
    }
    keep
}

/// A small, fast hasher for the keys of one batch (FxHash's mixing). Not DoS-resistant, which
/// is fine here: a collision only costs time within a single batch the caller built.
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn io_err(what: &str, p: &Path, e: std::io::Error) -> StorageError {
    StorageError::Io(format!("cannot {what} {}: {e}", p.display()))
}

/// The fjall settings of every store: small, predictable footprint (a store holds one or a few
/// cores).
fn builder(p: &Path) -> fjall::DatabaseBuilder<Database> {
    // One worker. With two, fjall 3.1 lets worker 0 leave compactions to worker 1 by putting
    // each compaction request it receives back on the queue and taking the next one at once:
    // while worker 1 is busy that is a busy loop (~10 % of a replication run's CPU).
    Database::builder(p)
        .cache_size(32 * 1024 * 1024)
        .worker_threads(1)
}

/// Size at which the active memtable is sealed and handed to a worker to flush.
const MEMTABLE_SIZE: u64 = 16 * 1024 * 1024;
/// What fjall counts per memtable item beyond its key and value (`size_of::<InternalValue>()`,
/// rounded up generously: the estimate must not fall short).
const MEMTABLE_ITEM_OVERHEAD: u64 = 256;
/// A write returns only once fewer sealed memtables than this wait to be flushed.
const MAX_SEALED_MEMTABLES: usize = 3;
/// Values at least this long go to blob files (key-value separation): hypercore's 4 KiB
/// blocks are written once to a blob file instead of being rewritten by every compaction.
const BLOB_THRESHOLD: u32 = 1024;
/// Blob files (the blocks) are LZ4-compressed (fjall's default). Without it a replicating
/// reader's writes took about 2.7x longer and its peak RSS grew by ~38 MiB (`just bench`, 1 GiB
/// over TCP, 2026-12-04): LZ4 gives up quickly on incompressible blocks and saves much I/O on the
/// others.
const BLOB_COMPRESSION: CompressionType = CompressionType::Lz4;

/// The options of the keyspace. fjall stores them when it creates the keyspace: a store
/// created before these settings keeps its own (the memory bound of `throttle` holds anyway).
fn keyspace_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .max_memtable_size(MEMTABLE_SIZE)
        .with_kv_separation(Some(
            KvSeparationOptions::default()
                .separation_threshold(BLOB_THRESHOLD)
                .compression(BLOB_COMPRESSION),
        ))
}

/// Take the exclusive lock of folder `dir` (released when the returned file is closed, including
/// when the process dies).
fn lock_folder(dir: &Path) -> Result<File, StorageError> {
    let p = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .map_err(|e| io_err("open", &p, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => Err(StorageError::Unavailable(format!(
            "{}: the storage folder is in use by another process (or another open handle)",
            dir.display()
        ))),
        Err(TryLockError::Error(e)) => Err(io_err("lock", &p, e)),
    }
}

/// The options of the keyspace of a store with a data file: as [`keyspace_options`] (values
/// from [`BLOB_THRESHOLD`] to [`DATA_THRESHOLD`] go to fjall's blob files, whose garbage
/// collection reclaims the old versions of values rewritten often, such as bitfield pages).
fn keyspace_options_data() -> KeyspaceCreateOptions {
    keyspace_options()
}

/// An open database: fjall, its keyspace, the data file (`None` for a store made before it), and
/// whether its journal is to be compacted when it closes.
type Opened = (Database, Keyspace, Option<File>, bool);

/// Open the data file `p` of an existing store.
fn open_data_file(p: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                StorageError::Corrupt(format!("the data file {} is missing", p.display()))
            }
            _ => io_err("open", p, e),
        })
}

/// Open the database in `dir/db` (with its keyspace and data file), creating it if there is none
/// yet.
///
/// fjall's own creation is not atomic (a kill between its first file and its version marker
/// leaves a folder it refuses to open), so a creation is bracketed by a marker file,
/// `dir/db.incomplete`: it is made (with an empty data file `dir/db.data`, both synced) before
/// `dir/db`, and removed (the removal synced) once the new database and its keyspace are on
/// disk, before anything is written to it. A `dir/db` found next to the marker was never
/// completed and never held data: it is discarded and built again. The new database stays open
/// (an earlier version built it in a staging folder, closed it, renamed it into place and opened
/// it again: twice the files, fsyncs and threads for every new store; a staging folder such a
/// version left behind is discarded). Runs under the folder lock.
///
/// A store made before the data file (keyspace [`KEYSPACE`]) is opened as it is: its values stay
/// in fjall.
fn open_database(dir: &Path, compact_journal_at: u64) -> Result<Opened, StorageError> {
    let db_path = dir.join(DB_DIR);
    let data_path = dir.join(DATA_FILE);
    let marker = dir.join(DB_INCOMPLETE);
    let staging = dir.join(DB_STAGING_DIR);
    if staging.exists() {
        // Left by an interrupted creation of an earlier version: it never held data.
        std::fs::remove_dir_all(&staging).map_err(|e| io_err("remove", &staging, e))?;
    }
    let open_db = |p: &Path| guarded("opening", || builder(p).open().map_err(map_err));
    let open_ks = |db: &Database, name: &str, opts: fn() -> KeyspaceCreateOptions| {
        guarded("opening", || db.keyspace(name, opts).map_err(map_err))
    };
    let incomplete = marker.exists();
    if db_path.is_dir() && !incomplete {
        // Opening recovers fjall's journal and syncs it. The records it replays may reference
        // bytes of the data file that a killed process left in the page cache only: those are
        // made durable first (references never reach the disk before their bytes).
        // Unless the last process closed the store cleanly (the marker [`DATA_SYNCED`], made
        // after its final sync): then nothing unsynced can be there, and this `fdatasync`
        // (which waits for a cache flush of the disk even with nothing to write) is skipped.
        // The marker goes now, before anything is written: a process killed from here on
        // leaves none.
        let synced_marker = dir.join(DATA_SYNCED);
        let recorded = std::fs::read_to_string(&synced_marker).ok();
        let clean = recorded.is_some()
            && std::fs::remove_file(&synced_marker).is_ok()
            && recorded == synced_state(dir);
        let data = match open_data_file(&data_path) {
            Ok(f) => {
                if !clean {
                    f.sync_data().map_err(|e| io_err("sync", &data_path, e))?;
                }
                Some(f)
            }
            Err(e) => {
                if data_path.exists() {
                    return Err(e);
                }
                None
            }
        };
        let db = open_db(&db_path)?;
        let (name, opts): (_, fn() -> KeyspaceCreateOptions) = if db.keyspace_exists(KEYSPACE_DATA)
        {
            (KEYSPACE_DATA, keyspace_options_data)
        } else {
            // A store made before the data file.
            (KEYSPACE, keyspace_options)
        };
        let data = match (name, data) {
            (KEYSPACE_DATA, None) => {
                return Err(StorageError::Corrupt(format!(
                    "the data file {} is missing",
                    data_path.display()
                )))
            }
            (KEYSPACE_DATA, data) => data,
            _ => None,
        };
        let ks = open_ks(&db, name, opts)?;
        let journal_bytes: u64 = journal_files(&db_path)?.iter().map(|j| j.len).sum();
        let compact = journal_bytes >= compact_journal_at;
        if compact {
            // The compaction begins (see `compact_journal`): fjall's worker flushes what the
            // journal held while the caller works; the close finishes it.
            guarded("compacting the journal", || {
                ks.rotate_memtable().map_err(map_err).map(drop)
            })?;
        }
        return Ok((db, ks, data, compact));
    }
    // A marker of an earlier store in this folder says nothing of the one made now.
    match std::fs::remove_file(dir.join(DATA_SYNCED)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_err("remove", &dir.join(DATA_SYNCED), e));
        }
        _ => {}
    }
    if !incomplete {
        // An empty file: syncing the folder makes its existence durable.
        File::create(&marker).map_err(|e| io_err("create", &marker, e))?;
    }
    if db_path.exists() {
        std::fs::remove_dir_all(&db_path).map_err(|e| io_err("remove", &db_path, e))?;
    }
    // Empty: any bytes an interrupted creation left are not referenced by anything.
    let data = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&data_path)
        .map_err(|e| io_err("create", &data_path, e))?;
    sync_dir(dir)?;
    // fjall builds the empty database in memory; its files are copied here and synced together
    // (one file system commit or two instead of fjall's ~30 in a row). Without a scratch folder
    // in memory, fjall creates it in place (and syncs the folders it makes).
    create::create_via_memory(&db_path, |scratch| {
        let db = open_db(scratch)?;
        let ks = open_ks(&db, KEYSPACE_DATA, keyspace_options_data)?;
        drop(ks);
        drop(db);
        Ok(())
    })?;
    let db = open_db(&db_path)?;
    let ks = open_ks(&db, KEYSPACE_DATA, keyspace_options_data)?;
    // This syncs its journal.
    guarded("creating", || {
        db.persist(PersistMode::SyncAll).map_err(map_err)
    })?;
    std::fs::remove_file(&marker).map_err(|e| io_err("remove", &marker, e))?;
    // Synced before anything is written: a marker that came back after a power cut would
    // discard the data.
    sync_dir(dir)?;
    Ok((db, ks, Some(data), false))
}

/// One of fjall's journal files (`ID.jnl` in the database folder).
struct JournalFile {
    id: u64,
    path: PathBuf,
    len: u64,
}

/// fjall's journal files in its database folder `db_path`, oldest first. fjall writes to the
/// newest one and replays all of them when it opens the database.
fn journal_files(db_path: &Path) -> Result<Vec<JournalFile>, StorageError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(db_path).map_err(|e| io_err("read", db_path, e))?;
    for e in entries {
        let e = e.map_err(|e| io_err("read", db_path, e))?;
        let name = e.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|id| id.parse::<u64>().ok())
        else {
            continue;
        };
        let path = e.path();
        let len = e.metadata().map_err(|e| io_err("read", &path, e))?.len();
        out.push(JournalFile { id, path, len });
    }
    out.sort_by_key(|j| j.id);
    Ok(out)
}

/// Move everything fjall's journal holds into tables and replace the journal with an empty one,
/// so that opening the database no longer reads it: each open replays the whole journal into
/// a memtable, which costs about 2 ms of CPU per MiB (22 ms for every `bee put` process after a
/// `bee batch` of 100k keys), and fjall starts a new journal only once one reaches 64 MB.
///
/// Begun by the open that found the journal big (it seals the memtable fjall filled from the
/// journal, and fjall's worker flushes it while the caller works), finished here when the store
/// closes, with the data file synced (every reference in the journal points to durable bytes)
/// and the folder still locked:
///
/// 1. What was written since the open is sealed too, and we wait until no sealed memtable is
///    left: fjall writes and `fsync`s the tables (and blob files) and then, in one `fsync`ed
///    version file, registers them and drops the memtable. Everything the journals hold is now
///    in tables on disk.
/// 2. The database is closed.
/// 3. An empty journal `N+1.jnl` is created after the newest one `N.jnl` and synced with the
///    folder: the journal fjall appends to from the next open on (a new journal is an empty
///    file to fjall's reader; fjall makes it the same way when it rotates a full one).
/// 4. The older journals are removed, and the folder synced.
///
/// A kill or power cut at any point leaves a database fjall opens with everything in it: before
/// 3 completes, the old journal is the active one, and replaying it skips what the tables
/// already hold; between 3 and 4, the old journals are sealed journals whose contents are all
/// in tables (as after fjall's own rotation: the next compaction removes them); after 4, the
/// new journal is empty and fjall takes the sequence number to continue from from the tables.
/// An empty journal file is kept rather than none: with no journal, fjall would start a new
/// one without recovering the sequence number, and newer writes would be hidden behind older
/// ones. Should anything fail, the journal stays as it is (the next open tries again).
/// How many 1 ms waits [`compact_journal`] gives fjall's flush before it keeps the journal as it
/// is (about a minute: the flush of a 64 MiB memtable takes well under a second).
const COMPACTION_MAX_POLLS: u32 = 60_000;

fn compact_journal(db_path: &Path, db: Database, ks: Keyspace) -> Result<(), StorageError> {
    let flushed = guarded("compacting the journal", || {
        if ks.tree.active_memtable().size() > 0 {
            ks.rotate_memtable().map_err(map_err)?;
        }
        let mut polls = 0u32;
        while ks.sealed_memtable_count() > 0 {
            // A failed flush poisons the database: report that instead of waiting forever.
            if polls.is_multiple_of(256) {
                db.persist(PersistMode::Buffer).map_err(map_err)?;
            }
            // A worker that died without poisoning it (a panic) would never flush: the
            // compaction is optional, so give up and keep the journal.
            if polls >= COMPACTION_MAX_POLLS {
                return Ok(false);
            }
            polls += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(true)
    })?;
    if !flushed {
        return Ok(());
    }
    #[cfg(test)]
    stop_here(1)?;
    if ks.tree.active_memtable().size() > 0 {
        // Nothing writes while the store closes; should something have, keep the journal.
        return Ok(());
    }
    let journals = journal_files(db_path)?;
    let Some(newest) = journals.last() else {
        return Ok(());
    };
    drop(ks);
    drop(db);
    let fresh = db_path.join(format!("{}.jnl", newest.id + 1));
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&fresh)
        .map_err(|e| io_err("create", &fresh, e))?;
    f.sync_all().map_err(|e| io_err("sync", &fresh, e))?;
    drop(f);
    sync_dir(db_path)?;
    #[cfg(test)]
    stop_here(3)?;
    for j in &journals {
        std::fs::remove_file(&j.path).map_err(|e| io_err("remove", &j.path, e))?;
    }
    sync_dir(db_path)?;
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Tests: stop [`compact_journal`] after this step (this thread only), as a crash would
    /// (the database is closed as it is).
    static COMPACT_STOP_AFTER: std::cell::Cell<Option<u8>> = const { std::cell::Cell::new(None) };
}

/// Tests: fail at `step` of [`compact_journal`] if a test asked to stop there.
#[cfg(test)]
fn stop_here(step: u8) -> Result<(), StorageError> {
    if COMPACT_STOP_AFTER.with(|s| s.get()) == Some(step) {
        return Err(StorageError::Io(format!(
            "stopped after step {step} (test)"
        )));
    }
    Ok(())
}

/// A value to store: one buffer, or the parts of an [`Op::PutParts`] (kept apart, so a value
/// that goes to the data file is written from them as they are, in one vectored write).
enum Value {
    One(Vec<u8>),
    Parts(Vec<Vec<u8>>),
}

impl Value {
    fn len(&self) -> usize {
        match self {
            Value::One(v) => v.len(),
            Value::Parts(p) => p.iter().map(Vec::len).sum(),
        }
    }
    fn parts(&self) -> &[Vec<u8>] {
        match self {
            Value::One(v) => std::slice::from_ref(v),
            Value::Parts(p) => p,
        }
    }
    fn xxh3(&self) -> u64 {
        match self {
            Value::One(v) => xxh3_64(v),
            Value::Parts(p) => {
                let mut h = Xxh3::new();
                for part in p {
                    h.update(part);
                }
                h.digest()
            }
        }
    }
    /// `prefix` and then the value's bytes, in one new buffer.
    fn prefixed(&self, prefix: &[u8]) -> Vec<u8> {
        let mut r = Vec::with_capacity(prefix.len() + self.len());
        r.extend_from_slice(prefix);
        for part in self.parts() {
            r.extend_from_slice(part);
        }
        r
    }
    fn into_vec(self) -> Vec<u8> {
        match self {
            Value::One(v) => v,
            Value::Parts(p) => hyperpunch_core::storage::join(p),
        }
    }
}

/// Buffers given to one `pwritev` at most (Linux's `IOV_MAX` is 1024).
#[cfg(target_os = "linux")]
const MAX_IOV: usize = 512;

/// Write all of `parts`, one after the other, to `file` at `offset` (Linux: `pwritev`, one
/// system call for the chunk headers and blocks of a whole batch; elsewhere one `pwrite` per
/// part). `written(end)` is told after each system call where the bytes written so far end (the
/// caller starts their write-back while the rest is copied).
#[cfg(target_os = "linux")]
fn write_all_parts_at(
    file: &File,
    parts: &[&[u8]],
    offset: u64,
    mut written: impl FnMut(u64),
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    let mut at = offset;
    let mut first = 0usize;
    while first < parts.len() {
        let iov: Vec<libc::iovec> = parts[first..]
            .iter()
            .take(MAX_IOV)
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let off = libc::off_t::try_from(at)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: each iovec points into a live slice of `parts` of its length; `pwritev` only
        // reads them.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as libc::c_int,
                off,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut n = usize::try_from(n).unwrap_or(0);
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
        }
        at += n as u64;
        written(at);
        // Skip what was written: whole parts, then the start of a part written in part.
        while n > 0 && first < parts.len() {
            let p = parts[first];
            if n >= p.len() {
                n -= p.len();
                first += 1;
            } else {
                parts[first] = &p[n..];
                n = 0;
            }
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn write_all_parts_at(
    file: &File,
    parts: &[&[u8]],
    offset: u64,
    mut written: impl FnMut(u64),
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut at = offset;
    for p in parts {
        file.write_all_at(p, at)?;
        at += p.len() as u64;
        written(at);
    }
    Ok(())
}

/// Read exactly `len` bytes of `file` at `offset` into the empty `buf` (which has room for them),
/// without zeroing `buf` first: a server reads every block it sends this way, and zeroing 64 KiB
/// before `pread` overwrites it was ~4% of a serving process's CPU (`perf`, 2026-12-06).
fn read_exact_at_into(
    file: &File,
    buf: &mut Vec<u8>,
    len: usize,
    offset: u64,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    buf.clear();
    buf.reserve_exact(len);
    while buf.len() < len {
        let have = buf.len();
        let at = offset
            .checked_add(have as u64)
            .and_then(|at| libc::off_t::try_from(at).ok())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let spare = &mut buf.spare_capacity_mut()[..len - have];
        // SAFETY: `pread` writes at most `spare.len()` bytes into `spare`, memory this Vec owns
        // and does not yet count as initialized; it reads none of it.
        let n =
            unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), at) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        let n = usize::try_from(n).map_or(0, |n| n.min(len - have));
        // SAFETY: `pread` initialized the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(have + n) };
    }
    Ok(())
}

/// Start writing `len` bytes of `file` from `offset` back to the disk, without waiting for it
/// (Linux: `sync_file_range(SYNC_FILE_RANGE_WRITE)`). A hint only: [`FileStorage::sync`] still
/// `fsync`s, but finds most of the data already written.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain system call on a file descriptor this store owns; it reads no memory.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Start writing back the data file's bytes from `written_back` to `to` once they are at least
/// [`WRITEBACK_STEP`], and move `written_back` there.
fn writeback_step(file: &File, written_back: &mut u64, to: u64) {
    if to.saturating_sub(*written_back) >= WRITEBACK_STEP {
        start_writeback(file, *written_back, to - *written_back);
        *written_back = to;
    }
}

/// The data file's space is allocated ahead of the writes by up to this many bytes at a time.
const PREALLOCATE_AHEAD: u64 = 8 * 1024 * 1024;

/// Allocate the data file's disk space from `from` to past `end`, where the next writes go, and
/// return up to where it is allocated now (`u64::MAX` when the file system cannot: no more
/// tries). Best effort: the writes themselves report a full disk.
///
/// Why: writing into space the file system reserves one page at a time as it goes (ext4's
/// delayed allocation) costs a downloading process more CPU than writing into space allocated
/// in large steps (a 100 MiB download in 64 KiB blocks: about 0.055 against 0.045 CPU s of
/// system time, measured 2026-12-07). The file's length does not change (`FALLOC_FL_KEEP_SIZE`):
/// it stays where the written bytes end, which is what an open reads as the data's end. Ahead
/// of a small file no more than its own size is allocated (a store of many small cores does not
/// take 8 MiB each).
#[cfg(target_os = "linux")]
fn preallocate(file: &File, from: u64, end: u64) -> u64 {
    use std::os::fd::AsRawFd;
    let to = end.saturating_add(end.clamp(64 * 1024, PREALLOCATE_AHEAD));
    let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
        return u64::MAX;
    };
    // SAFETY: a plain system call on a file descriptor this store owns; it reads no memory.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) };
    if r == 0 {
        to
    } else {
        u64::MAX
    }
}

#[cfg(not(target_os = "linux"))]
fn preallocate(_file: &File, _from: u64, _end: u64) -> u64 {
    u64::MAX
}

/// `fsync` the folder `dir` (its entries: files created, renamed or removed in it).
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("sync", dir, e))
}

impl FileStorage {
    /// The names of the files and folders a `FileStorage` keeps in its folder (nothing else of
    /// the folder is its own).
    pub const FILE_NAMES: [&'static str; 6] = [
        DB_DIR,
        DATA_FILE,
        DATA_SYNCED,
        DB_STAGING_DIR,
        DB_INCOMPLETE,
        LOCK_FILE,
    ];

    /// Open (creating if needed) the store in folder `dir`, with default options.
    ///
    /// Fails with [`StorageError::Unavailable`] if another process holds the folder, and with
    /// [`StorageError::Io`] / [`StorageError::Corrupt`] if it cannot be created or read.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StorageError> {
        Self::open_with(dir, FileStorageOptions::default())
    }

    /// Open (creating if needed) the store in folder `dir` with `options`.
    pub fn open_with(
        dir: impl AsRef<Path>,
        options: FileStorageOptions,
    ) -> Result<Self, StorageError> {
        let path = dir.as_ref().to_path_buf();
        let in_path = |m: String| format!("{}: {m}", path.display());
        std::fs::create_dir_all(&path).map_err(|e| {
            StorageError::Io(format!("cannot create folder {}: {e}", path.display()))
        })?;
        let lock = lock_folder(&path)?;
        let in_path_err = |e| match e {
            StorageError::Unavailable(m) => StorageError::Unavailable(in_path(m)),
            StorageError::Io(m) => StorageError::Io(in_path(m)),
            StorageError::Corrupt(m) => StorageError::Corrupt(in_path(m)),
        };
        let (db, ks, data, compact) =
            open_database(&path, options.compact_journal_at).map_err(in_path_err)?;
        // Bytes past the last committed value (an interrupted write) are never referenced; new
        // values go after them.
        let end = match &data {
            Some(f) => f
                .metadata()
                .map_err(|e| in_path_err(io_err("read", Path::new(DATA_FILE), e)))?
                .len(),
            None => 0,
        };
        Ok(FileStorage {
            inner: Arc::new(Inner {
                db: ManuallyDrop::new(db),
                ks: ManuallyDrop::new(ks),
                compact,
                compact_at: options.compact_journal_at,
                wrote_big: AtomicBool::new(false),
                data,
                data_end: AtomicU64::new(end),
                write_lock: Mutex::new(DataTail {
                    end,
                    written_back: end,
                    // `open_database` synced it.
                    synced: end,
                    allocated: end,
                }),
                durability: options.durability,
                suspend: Suspend::default(),
                path,
                _lock: lock,
            }),
        })
    }

    /// The folder this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The durability of each completed write.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// `fsync` the data file, then the journal: everything written so far survives power loss
    /// once this returns.
    pub fn sync(&self) -> Result<(), StorageError> {
        // Under the write lock: no batch commits a reference between the two syncs whose bytes
        // the first one missed.
        let mut tail = self
            .inner
            .write_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let (Some(data), true) = (&self.inner.data, tail.end > tail.synced) {
            // Only when something was appended since the data file was last synced (the open
            // syncs it): an `fdatasync` of a file with nothing new still waits for the disk to
            // flush its cache on ext4 (~3 ms of a `bee put` process that wrote no long value).
            data.sync_data()
                .map_err(|e| io_err("sync", &self.inner.path.join(DATA_FILE), e))?;
            tail.synced = tail.end;
        }
        guarded("syncing", || {
            self.inner.db.persist(PersistMode::SyncAll).map_err(map_err)
        })
    }

    fn write_lock(&self) -> std::sync::MutexGuard<'_, DataTail> {
        self.inner
            .write_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Suspend the store (JS `corestore.suspend()`, rocksdb-native's `suspend`: e.g. before a
    /// mobile app goes to the background, where the system may kill it at any time).
    ///
    /// When this returns:
    ///
    /// * every write that completed before it is on the disk: the data file and fjall's journal
    ///   are `fsync`ed (as [`FileStorage::sync`]), so it survives power loss too;
    /// * no write is in progress, and no [`Storage`] call of any clone of this store starts
    ///   until [`FileStorage::resume`]: reads and writes wait (their futures stay pending). A
    ///   read already under way (on another thread) is not waited for: it may still read the
    ///   files after this returns (reads write nothing). So a corestore on it keeps its
    ///   sessions and connections, and its replication waits at its next storage call
    ///   (incoming data is not lost: the connection stops being read once its queue fills);
    /// * the files stay open and the folder stays locked (no other process can open it in the
    ///   meantime). The store's files are not frozen: fjall's background threads may go on
    ///   writing to the folder while suspended (flushing a sealed memtable into a table,
    ///   compacting tables, then removing the files they replace), crash-safe as always.
    ///
    /// Resume from a task that does not wait on the store (e.g. not while holding the lock of
    /// a `SharedCorestore` whose replication waits here). Suspending twice is the same as once.
    /// Should the sync fail, the error is returned and the store is suspended all the same.
    pub fn suspend(&self) -> Result<(), StorageError> {
        {
            let _tail = self.write_lock();
            self.inner.suspend.suspended.store(true, Ordering::Release);
        }
        self.sync()
    }

    /// Resume after [`FileStorage::suspend`]: the reads and writes waiting go on, in no
    /// particular order. Resuming a store that is not suspended does nothing.
    pub fn resume(&self) {
        self.inner.suspend.suspended.store(false, Ordering::Release);
        self.inner.suspend.resumed.notify_waiters();
    }

    /// Whether the store is suspended ([`FileStorage::suspend`]).
    pub fn is_suspended(&self) -> bool {
        self.inner.suspend.is_suspended()
    }

    /// The value a stored record stands for: in a store with a data file, the inline bytes or
    /// the bytes read (and checked) from the data file; in an older store, the record itself.
    fn value(&self, record: &[u8]) -> Result<Vec<u8>, StorageError> {
        let Some(data) = &self.inner.data else {
            return Ok(record.to_vec());
        };
        let bad =
            |why: String| StorageError::Corrupt(format!("{}: {why}", self.inner.path.display()));
        match record.split_first() {
            Some((&TAG_INLINE, value)) => Ok(value.to_vec()),
            Some((&TAG_DATA, r)) if record.len() == DATA_REF_LEN => {
                let offset = u64::from_le_bytes(r[0..8].try_into().unwrap_or_default());
                let len = u32::from_le_bytes(r[8..12].try_into().unwrap_or_default());
                let hash = u64::from_le_bytes(r[12..20].try_into().unwrap_or_default());
                let end = offset.checked_add(u64::from(len));
                if end.is_none_or(|end| end > self.inner.data_end.load(Ordering::Acquire)) {
                    return Err(bad(format!(
                        "a value at {offset}+{len} lies past the end of the data file"
                    )));
                }
                // A damaged reference must not abort the process on a failed allocation.
                let mut buf = Vec::new();
                buf.try_reserve_exact(len as usize).map_err(|_| {
                    bad(format!(
                        "cannot allocate {len} bytes for the value at {offset}"
                    ))
                })?;
                read_exact_at_into(data, &mut buf, len as usize, offset).map_err(|e| {
                    match e.kind() {
                        std::io::ErrorKind::UnexpectedEof => bad(format!(
                            "the data file ends before the value at {offset}+{len}"
                        )),
                        _ => io_err("read", &self.inner.path.join(DATA_FILE), e),
                    }
                })?;
                if xxh3_64(&buf) != hash {
                    return Err(bad(format!(
                        "the value at {offset}+{len} of the data file does not match its checksum"
                    )));
                }
                Ok(buf)
            }
            _ => Err(bad(format!(
                "a stored record of {} bytes is not a value",
                record.len()
            ))),
        }
    }

    fn get_sync(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Ok(None); // such keys can never have been written
        }
        guarded("reading", || {
            match self.inner.ks.get(key).map_err(map_err)? {
                Some(r) => self.value(&r).map(Some),
                None => Ok(None),
            }
        })
    }

    fn get_many_sync(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        guarded("reading", || {
            // One snapshot: all values come from the same point in time.
            let snap = self.inner.db.snapshot();
            keys.iter()
                .map(|k| {
                    if k.is_empty() || k.len() > MAX_KEY_LEN {
                        return Ok(None);
                    }
                    match snap.get(&*self.inner.ks, k).map_err(map_err)? {
                        Some(r) => self.value(&r).map(Some),
                        None => Ok(None),
                    }
                })
                .collect()
        })
    }

    fn scan_sync(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> Result<Entries, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        guarded("scanning", || {
            let mut out = Vec::new();
            let limit = limit.unwrap_or(usize::MAX);
            if limit == 0 {
                return Ok(out);
            }
            let range = (Bound::Included(start), Bound::Excluded(end));
            for g in self.inner.ks.range::<&[u8], _>(range) {
                let (k, v) = g.into_inner().map_err(map_err)?;
                out.push((k.to_vec(), self.value(&v)?));
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Check a batch before anything of it is written: every op within bounds.
    fn validate(batch: &Batch) -> Result<(), StorageError> {
        for op in &batch.ops {
            let (k, len) = match op {
                Op::Put(k, v) => (k, v.len()),
                Op::PutParts(k, p) => (k, p.iter().map(Vec::len).sum()),
                _ => continue,
            };
            check_key(k)?;
            if len as u64 > MAX_VALUE_LEN {
                return Err(StorageError::Io(format!(
                    "value of {len} bytes too large for the file store"
                )));
            }
        }
        Ok(())
    }

    /// Write a validated batch under the write lock.
    fn commit(
        &self,
        batch: Batch,
        mut tail: std::sync::MutexGuard<'_, DataTail>,
    ) -> Result<(), StorageError> {
        guarded("writing", || {
            // The final state of each key the batch touches (`None`: removed).
            let writes: Vec<(Vec<u8>, Option<Value>)> =
                if batch.ops.iter().any(|op| matches!(op, Op::DeleteRange(..))) {
                    self.resolve(batch.ops)?.into_iter().collect()
                } else {
                    // The common case (every hypercore append): puts and deletes only. fjall
                    // gives every item of a batch the same sequence number, so a key must
                    // appear at most once: keep the last op of each key.
                    let keep = last_op_of_each_key(&batch.ops);
                    batch
                        .ops
                        .into_iter()
                        .zip(keep)
                        .filter_map(|(op, keep)| match op {
                            Op::Put(k, v) if keep => Some((k, Some(Value::One(v)))),
                            Op::PutParts(k, p) if keep => Some((k, Some(Value::Parts(p)))),
                            Op::Delete(k) if keep && !k.is_empty() && k.len() <= MAX_KEY_LEN => {
                                Some((k, None))
                            }
                            _ => None,
                        })
                        .collect()
                };
            let ks = &self.inner.ks;
            let mut wb = self
                .inner
                .db
                .batch()
                .durability(Some(match self.inner.durability {
                    Durability::Process => PersistMode::Buffer,
                    Durability::Sync => PersistMode::SyncData,
                }));
            let data_path = || self.inner.path.join(DATA_FILE);
            // What this batch may add to the active memtable (an upper bound: fjall counts each
            // item's key, value and a fixed overhead).
            let mut memtable_growth = 0u64;
            // Long values go to the data file first (after the bytes of the last write, so a
            // failed write leaves nothing referenced behind), their references into the batch.
            // They lie back to back from `tail.end`: all of them go out in one vectored write
            // (a batch of received blocks: one system call instead of one per block).
            // A batch that failed after starting its write-back (a later write or sync
            // failed) left `written_back` past the end it did not reach: bring it back.
            tail.written_back = tail.written_back.min(tail.end);
            let mut end = tail.end;
            let mut long: Vec<Value> = Vec::new();
            let total: usize = writes
                .iter()
                .filter_map(|(_, v)| v.as_ref().map(Value::len))
                .sum();
            let threshold = if total >= BIG_BATCH {
                self.inner.wrote_big.store(true, Ordering::Relaxed);
                BIG_BATCH_DATA_THRESHOLD
            } else {
                DATA_THRESHOLD
            };
            for (k, v) in writes {
                let record_len = match &v {
                    None => 0,
                    Some(v) if v.len() >= threshold => DATA_REF_LEN,
                    Some(v) => v.len() + 1,
                };
                memtable_growth += (k.len() + record_len) as u64 + MEMTABLE_ITEM_OVERHEAD;
                match (v, &self.inner.data) {
                    (None, _) => wb.remove(ks, k),
                    (Some(v), None) => wb.insert(ks, k, v.into_vec()),
                    (Some(v), Some(_)) if v.len() >= threshold => {
                        let mut r = Vec::with_capacity(DATA_REF_LEN);
                        r.push(TAG_DATA);
                        r.extend_from_slice(&end.to_le_bytes());
                        r.extend_from_slice(&(v.len() as u32).to_le_bytes());
                        r.extend_from_slice(&v.xxh3().to_le_bytes());
                        end += v.len() as u64;
                        wb.insert(ks, k, r);
                        long.push(v);
                    }
                    (Some(v), Some(_)) => wb.insert(ks, k, v.prefixed(&[TAG_INLINE])),
                }
            }
            if let (Some(data), false) = (&self.inner.data, long.is_empty()) {
                let parts: Vec<&[u8]> = long
                    .iter()
                    .flat_map(Value::parts)
                    .map(Vec::as_slice)
                    .collect();
                if end > tail.allocated {
                    tail.allocated = preallocate(data, tail.allocated.max(tail.end), end);
                }
                // A big batch's bytes go to the disk while the rest of them are copied (each
                // `WRITEBACK_STEP`), so the sync that follows waits less.
                let start = tail.end;
                let written_back = &mut tail.written_back;
                write_all_parts_at(data, &parts, start, |to| {
                    writeback_step(data, written_back, to)
                })
                .map_err(|e| io_err("write", &data_path(), e))?;
            }
            if let Some(data) = &self.inner.data {
                // fjall makes its journal durable by itself whenever its worker flushes a
                // sealed memtable (it fsyncs the whole journal, this batch's records too). A
                // reference must never reach the disk before the bytes it points to, or a
                // power cut could leave holes in the middle of a core: so while a flush may
                // run before the next `sync` (a memtable is sealed, or this batch may fill
                // the active one and get it sealed), the data file is synced before the commit.
                let ks = &self.inner.ks;
                let flush_ahead = ks.sealed_memtable_count() > 0
                    || ks.tree.active_memtable().size() + memtable_growth >= MEMTABLE_SIZE;
                if end > tail.synced && (flush_ahead || self.inner.durability == Durability::Sync) {
                    data.sync_data()
                        .map_err(|e| io_err("sync", &data_path(), e))?;
                    tail.synced = end;
                }
                if end > tail.end {
                    // Before the commit: a reader that sees a reference finds its bytes.
                    self.inner.data_end.fetch_max(end, Ordering::AcqRel);
                }
            }
            // Before the commit: should it fail after its record reached the journal, the
            // next batch must not reuse bytes that record may point to (only space is lost).
            tail.end = end;
            wb.commit().map_err(map_err)?;
            if let Some(data) = &self.inner.data {
                writeback_step(data, &mut tail.written_back, end);
            }
            self.throttle()
        })
    }

    /// Resolve `ops` (which include range deletes), in order, into one final state per key: a
    /// range delete removes the keys in the store and those put earlier in the batch. Every key
    /// of a range is held here and tombstoned in the one batch (the batch is the atomicity), so
    /// memory grows with the range's size: see the module docs' limits.
    fn resolve(&self, ops: Vec<Op>) -> Result<BTreeMap<Vec<u8>, Option<Value>>, StorageError> {
        let mut fin: BTreeMap<Vec<u8>, Option<Value>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    fin.insert(k, Some(Value::One(v)));
                }
                Op::PutParts(k, p) => {
                    fin.insert(k, Some(Value::Parts(p)));
                }
                Op::Delete(k) => {
                    if !k.is_empty() && k.len() <= MAX_KEY_LEN {
                        fin.insert(k, None);
                    }
                }
                Op::DeleteRange(s, e) => {
                    if s >= e {
                        continue;
                    }
                    let range = (Bound::Included(s.as_slice()), Bound::Excluded(e.as_slice()));
                    for g in self.inner.ks.range::<&[u8], _>(range) {
                        let k = g.key().map_err(map_err)?;
                        fin.insert(k.to_vec(), None);
                    }
                    for (_, v) in fin.range_mut::<[u8], _>(range) {
                        *v = None;
                    }
                }
            }
        }
        Ok(fin)
    }

    /// Backpressure, run after each commit (under the write lock): keeps the data not yet
    /// flushed to disk bounded, so memory does not grow with the amount written.
    ///
    /// fjall seals a full memtable only when a worker gets to the request, which can be seconds
    /// of flushing and compacting later while writes keep filling it (1 GiB of 4 KiB appends
    /// grew it to ~450 MiB), and it only stalls writers at four sealed memtables. So the
    /// memtable is sealed here once full, and the writer waits while [`MAX_SEALED_MEMTABLES`]
    /// are queued: a writer faster than the disk waits for it. This uses two `#[doc(hidden)]`
    /// fjall calls (`rotate_memtable`, the `tree` field), hence the exact fjall version pin
    /// (`=3.1.13` in transport-native/Cargo.toml, lsm-tree `=3.1.10` with it).
    fn throttle(&self) -> Result<(), StorageError> {
        let ks = &self.inner.ks;
        if ks.tree.active_memtable().size() >= MEMTABLE_SIZE {
            ks.rotate_memtable().map_err(map_err)?;
        }
        let mut polls = 0u32;
        while ks.sealed_memtable_count() >= MAX_SEALED_MEMTABLES {
            // A failed worker poisons the database: report that instead of waiting forever.
            if polls.is_multiple_of(256) {
                self.inner
                    .db
                    .persist(PersistMode::Buffer)
                    .map_err(map_err)?;
            }
            polls = polls.wrapping_add(1);
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

impl Storage for FileStorage {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.suspend.resumed().await;
        self.get_sync(key)
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        self.inner.suspend.resumed().await;
        self.get_many_sync(keys)
    }

    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> Result<Entries, StorageError> {
        self.inner.suspend.resumed().await;
        self.scan_sync(start, end, limit)
    }

    async fn write(&self, batch: Batch) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Validate first: nothing is written if any op is out of bounds.
        Self::validate(&batch)?;
        loop {
            self.inner.suspend.resumed().await;
            let tail = self.write_lock();
            // A suspend that took the lock since: wait for the resume again.
            if !self.inner.suspend.is_suspended() {
                return self.commit(batch, tail);
            }
        }
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
