//! mirror-drive 1.14.2: make one drive hold what another holds, file by file, as JS
//! `new MirrorDrive(src, dst, opts)` does, between any two [`Drive`]s (a [`Hyperdrive`](crate::hyperdrive::Hyperdrive), or a
//! folder on disk: the transports' localdrive).
//!
//! [`Mirror::run`] goes through the same steps as JS, reporting each change as a
//! [`MirrorOp`] (JS's `{ op, key, bytesAdded, bytesRemoved }`) and keeping JS's counts
//! ([`MirrorCount`]):
//!
//! 1. **prune** (default on): every file of `dst` under the prefixes that `src` does not have is
//!    removed (`remove`);
//! 2. every file of `src` under the prefixes (minus `ignore`d paths and those `filter` rejects)
//!    is compared with `dst`'s: symlinks by target; files by size, then by content (both read
//!    and compared), then by the executable bit and metadata (when both sides keep metadata);
//!    different contents are copied (`change`, or `add` when `dst` has no such file), equal
//!    contents with a different executable bit or metadata only rewrite the entry of a
//!    hyperdrive `dst` (`change` with no bytes);
//! 3. nothing is written with `dry_run`; the ops and counts are the same.
//!
//! Differences from JS: sources are listed in key order (a JS localdrive lists in directory
//! order), `transformers`, `preload`, `batch` and the RabinStream chunking of `dedup` are not
//! done (`dedup` deduplicates the destination's 64 KiB blocks instead), and progress comes
//! from [`MirrorEvent`]s rather than a monitor object.

mod hyperdrive_impl;
#[cfg(test)]
mod tests;

use std::future::Future;

use serde_json::Value;

use crate::hyperdrive::{path, DriveEntry, DriveError, EntryValue};
use crate::storage::{MaybeSend, MaybeSync};

/// Everything a mirror can fail with.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum MirrorError {
    /// A hyperdrive failed.
    #[error(transparent)]
    Drive(#[from] DriveError),
    /// A folder on disk (or another drive) failed at `path`.
    #[error("{path}: {message}")]
    Io {
        /// The file or folder.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The destination cannot be written (JS "Destination must be writable").
    #[error("the destination drive is not writable")]
    NotWritable,
}

/// Reads a file's contents chunk by chunk.
pub trait ChunkReader: MaybeSend {
    /// The next chunk, `None` at the end.
    fn next_chunk(
        &mut self,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, MirrorError>> + MaybeSend;
}

/// Writes a file chunk by chunk; [`ChunkWriter::finish`] makes it visible.
pub trait ChunkWriter: MaybeSend {
    /// Append a chunk.
    fn write_chunk(
        &mut self,
        chunk: Vec<u8>,
    ) -> impl Future<Output = Result<(), MirrorError>> + MaybeSend;
    /// Finish the file.
    fn finish(self) -> impl Future<Output = Result<(), MirrorError>> + MaybeSend;
}

/// What [`Mirror`] needs of a drive (the hyperdrive API that JS's mirror-drive uses: `list`,
/// `entry`, `createReadStream`, `createWriteStream`, `symlink`, `del`, `putEntry`).
pub trait Drive: MaybeSend + MaybeSync {
    /// Reads a file.
    type Reader: ChunkReader;
    /// Writes a file.
    type Writer: ChunkWriter;

    /// Every file under `folder` (a path; `/` for all), in key order, leaving out `ignore`d
    /// paths and everything below them.
    fn list(
        &self,
        folder: &str,
        ignore: &[String],
    ) -> impl Future<Output = Result<Vec<DriveEntry>, MirrorError>> + MaybeSend;

    /// The entry at `key` (a normalized path), `None` if it has none (folders have none).
    fn entry(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<DriveEntry>, MirrorError>> + MaybeSend;

    /// Whether entries keep metadata (JS `supportsMetadata`).
    fn supports_metadata(&self) -> bool;

    /// Whether the drive can be written.
    fn writable(&self) -> impl Future<Output = bool> + MaybeSend;

    /// The number of content bytes of an entry (a block map's size for hyperdrive blobs with
    /// one).
    fn content_length(
        &self,
        entry: &DriveEntry,
    ) -> impl Future<Output = Result<u64, MirrorError>> + MaybeSend;

    /// Read an entry's contents.
    fn read(
        &self,
        entry: &DriveEntry,
    ) -> impl Future<Output = Result<Self::Reader, MirrorError>> + MaybeSend;

    /// Write the file `key` (replacing it).
    fn write(
        &self,
        key: &str,
        executable: bool,
        metadata: Option<Value>,
        dedup: bool,
    ) -> impl Future<Output = Result<Self::Writer, MirrorError>> + MaybeSend;

    /// Make `key` a symlink to `target`.
    fn symlink(
        &self,
        key: &str,
        target: &str,
    ) -> impl Future<Output = Result<(), MirrorError>> + MaybeSend;

    /// Remove the file `key`.
    fn del(&self, key: &str) -> impl Future<Output = Result<(), MirrorError>> + MaybeSend;

    /// Whether the drive stores entries of its own (a hyperdrive: JS `dst.putEntry` exists),
    /// so that a change of only the executable bit or metadata rewrites the entry.
    fn stores_entries(&self) -> bool;

    /// Store an entry as it is (JS `putEntry`); only called when
    /// [`Drive::stores_entries`].
    fn put_entry(
        &self,
        key: &str,
        value: &EntryValue,
    ) -> impl Future<Output = Result<(), MirrorError>> + MaybeSend;
}

/// What a [`MirrorOp`] did (JS `op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A file `dst` did not have.
    Add,
    /// A file `dst` had with other contents, executable bit, metadata or target.
    Change,
    /// A file only `dst` had (pruned).
    Remove,
    /// A file both had the same (with [`MirrorOptions::include_equals`]).
    Equal,
}

impl OpKind {
    /// JS's name: `add`, `change`, `remove`, `equal`.
    pub fn as_str(&self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::Change => "change",
            OpKind::Remove => "remove",
            OpKind::Equal => "equal",
        }
    }
}

/// One change (JS `{ op, key, bytesAdded, bytesRemoved }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorOp {
    /// What happened.
    pub op: OpKind,
    /// The file.
    pub key: String,
    /// Content bytes written.
    pub bytes_added: u64,
    /// Content bytes replaced or removed.
    pub bytes_removed: u64,
}

/// JS `mirror.count`: files compared, and the adds, removes and changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorCount {
    /// Source files compared.
    pub files: u64,
    /// Files added.
    pub add: u64,
    /// Files removed.
    pub remove: u64,
    /// Files changed.
    pub change: u64,
}

/// What [`Mirror::run`] reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorEvent {
    /// The source's files are listed: `files` will be compared.
    Listed {
        /// How many.
        files: u64,
    },
    /// A change, reported before it is made (as JS yields it).
    Op(MirrorOp),
    /// A file was compared (and copied, if it differed): progress.
    Done {
        /// The file.
        key: String,
    },
    /// Content bytes copied so far went up by this many.
    Copied(u64),
}

/// Options of a mirror (JS `{ prefix, dryRun, prune, filter, ignore, includeEquals,
/// metadataEquals, dedup }`).
pub struct MirrorOptions {
    /// Folders (or single files) to mirror (default `["/"]`).
    pub prefix: Vec<String>,
    /// Report what would change, change nothing.
    pub dry_run: bool,
    /// Remove what only the destination has (default true).
    pub prune: bool,
    /// Paths left out, with everything below them (JS `ignore`).
    pub ignore: Vec<String>,
    /// Only source files this accepts are mirrored (JS `filter`).
    #[allow(clippy::type_complexity)]
    pub filter: Option<Box<dyn Fn(&str) -> bool + Send + Sync>>,
    /// Report equal files too.
    pub include_equals: bool,
    /// Deduplicate blocks in a hyperdrive destination.
    pub dedup: bool,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions {
            prefix: vec!["/".into()],
            dry_run: false,
            prune: true,
            ignore: Vec::new(),
            filter: None,
            include_equals: false,
            dedup: false,
        }
    }
}

impl std::fmt::Debug for MirrorOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorOptions")
            .field("prefix", &self.prefix)
            .field("dry_run", &self.dry_run)
            .field("prune", &self.prune)
            .field("ignore", &self.ignore)
            .finish_non_exhaustive()
    }
}

/// The result of a mirror: JS's `count`, `bytesAdded`, `bytesRemoved`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorReport {
    /// The counts.
    pub count: MirrorCount,
    /// Content bytes added.
    pub bytes_added: u64,
    /// Content bytes removed.
    pub bytes_removed: u64,
}

/// A mirror from `src` to `dst`; see the [module docs](self).
pub struct Mirror<'a, A: Drive, B: Drive> {
    src: &'a A,
    dst: &'a B,
    opts: MirrorOptions,
    report: MirrorReport,
}

#[derive(PartialEq, Eq)]
enum Compared {
    Equal,
    Diff,
    DiffMeta,
}

impl<'a, A: Drive, B: Drive> Mirror<'a, A, B> {
    /// A mirror of `src` into `dst`.
    pub fn new(src: &'a A, dst: &'a B, opts: MirrorOptions) -> Self {
        Mirror {
            src,
            dst,
            opts,
            report: MirrorReport::default(),
        }
    }

    /// What was done so far.
    pub fn report(&self) -> MirrorReport {
        self.report
    }

    /// Run the mirror, reporting each step to `on_event`.
    pub async fn run(
        &mut self,
        mut on_event: impl FnMut(MirrorEvent) + MaybeSend,
    ) -> Result<MirrorReport, MirrorError> {
        if !self.opts.dry_run && !self.dst.writable().await {
            return Err(MirrorError::NotWritable);
        }
        let prefixes: Vec<String> = self
            .opts
            .prefix
            .iter()
            .map(|p| path::resolve(p).map_err(MirrorError::from))
            .collect::<Result<_, _>>()?;
        if self.opts.prune {
            for prefix in &prefixes {
                for e in self.listed(self.dst, prefix, false).await? {
                    if self.src.entry(&e.key).await?.is_some() {
                        continue;
                    }
                    let removed = self.dst.content_length(&e).await?;
                    self.report.count.remove += 1;
                    self.report.bytes_removed += removed;
                    on_event(MirrorEvent::Op(MirrorOp {
                        op: OpKind::Remove,
                        key: e.key.clone(),
                        bytes_added: 0,
                        bytes_removed: removed,
                    }));
                    if !self.opts.dry_run {
                        self.dst.del(&e.key).await?;
                    }
                }
            }
        }
        let mut all = Vec::new();
        for prefix in &prefixes {
            all.extend(self.listed(self.src, prefix, true).await?);
        }
        on_event(MirrorEvent::Listed {
            files: all.len() as u64,
        });
        for src in all {
            self.one(src, &mut on_event).await?;
        }
        Ok(self.report)
    }

    /// The files under `prefix` (JS `_list`): the listing, then the prefix itself as a file.
    async fn listed<D: Drive>(
        &self,
        drive: &D,
        prefix: &str,
        filtered: bool,
    ) -> Result<Vec<DriveEntry>, MirrorError> {
        let keep = |k: &str| !filtered || self.opts.filter.as_ref().is_none_or(|f| f(k));
        let mut out: Vec<DriveEntry> = drive
            .list(prefix, &self.opts.ignore)
            .await?
            .into_iter()
            .filter(|e| keep(&e.key))
            .collect();
        if prefix != "/" && keep(prefix) {
            if let Some(e) = drive.entry(prefix).await? {
                out.push(e);
            }
        }
        Ok(out)
    }

    async fn one(
        &mut self,
        src: DriveEntry,
        on_event: &mut (impl FnMut(MirrorEvent) + MaybeSend),
    ) -> Result<(), MirrorError> {
        let key = src.key.clone();
        let dst = self.dst.entry(&key).await?;
        self.report.count.files += 1;
        let same = self.same(&src, dst.as_ref()).await?;
        if same == Compared::Equal {
            if self.opts.include_equals {
                on_event(MirrorEvent::Op(MirrorOp {
                    op: OpKind::Equal,
                    key: key.clone(),
                    bytes_added: 0,
                    bytes_removed: 0,
                }));
            }
            on_event(MirrorEvent::Done { key });
            return Ok(());
        }
        // JS `onlyMetadata`: a hyperdrive destination only rewrites the entry.
        let only_meta = same == Compared::DiffMeta && self.dst.stores_entries();
        let added = if only_meta {
            0
        } else {
            self.src.content_length(&src).await?
        };
        let (op, removed) = match &dst {
            Some(_) if only_meta => (OpKind::Change, 0),
            Some(d) => (OpKind::Change, self.dst.content_length(d).await?),
            None => (OpKind::Add, 0),
        };
        match op {
            OpKind::Add => self.report.count.add += 1,
            _ => self.report.count.change += 1,
        }
        self.report.bytes_added += added;
        self.report.bytes_removed += removed;
        on_event(MirrorEvent::Op(MirrorOp {
            op,
            key: key.clone(),
            bytes_added: added,
            bytes_removed: removed,
        }));
        if !self.opts.dry_run {
            self.copy(&src, dst.as_ref(), only_meta, on_event).await?;
        }
        on_event(MirrorEvent::Done { key });
        Ok(())
    }

    async fn copy(
        &mut self,
        src: &DriveEntry,
        dst: Option<&DriveEntry>,
        only_meta: bool,
        on_event: &mut (impl FnMut(MirrorEvent) + MaybeSend),
    ) -> Result<(), MirrorError> {
        let key = &src.key;
        if let Some(target) = &src.value.linkname {
            return self.dst.symlink(key, target).await;
        }
        if only_meta {
            if let Some(d) = dst {
                let value = EntryValue {
                    executable: src.value.executable,
                    linkname: None,
                    blob: d.value.blob,
                    metadata: src.value.metadata.clone(),
                };
                return self.dst.put_entry(key, &value).await;
            }
        }
        let mut r = self.src.read(src).await?;
        let mut w = self
            .dst
            .write(
                key,
                src.value.executable,
                src.value.metadata.clone(),
                self.opts.dedup,
            )
            .await?;
        while let Some(chunk) = r.next_chunk().await? {
            let n = chunk.len() as u64;
            w.write_chunk(chunk).await?;
            on_event(MirrorEvent::Copied(n));
        }
        w.finish().await
    }

    /// JS `same`.
    async fn same(
        &self,
        src: &DriveEntry,
        dst: Option<&DriveEntry>,
    ) -> Result<Compared, MirrorError> {
        let Some(dst) = dst else {
            return Ok(Compared::Diff);
        };
        if src.value.linkname.is_some() || dst.value.linkname.is_some() {
            return Ok(if src.value.linkname == dst.value.linkname {
                Compared::Equal
            } else {
                Compared::Diff
            });
        }
        let maybe_equal = match (&src.value.blob, &dst.value.blob) {
            (None, None) => true,
            (None, _) | (_, None) => false,
            (Some(a), Some(b)) => a.block_map || b.block_map || a.byte_length == b.byte_length,
        };
        if !maybe_equal {
            return Ok(Compared::Diff);
        }
        let eq = self.contents_equal(src, dst).await?;
        let diff = if eq {
            Compared::DiffMeta
        } else {
            Compared::Diff
        };
        if src.value.executable != dst.value.executable {
            return Ok(diff);
        }
        if self.src.supports_metadata()
            && self.dst.supports_metadata()
            && src.value.metadata != dst.value.metadata
        {
            return Ok(diff);
        }
        Ok(if eq { Compared::Equal } else { Compared::Diff })
    }

    /// JS `binary-stream-equals` of the two contents.
    async fn contents_equal(&self, a: &DriveEntry, b: &DriveEntry) -> Result<bool, MirrorError> {
        let mut ra = self.src.read(a).await?;
        let mut rb = self.dst.read(b).await?;
        let (mut ba, mut bb) = (Vec::new(), Vec::new());
        let (mut ia, mut ib) = (0usize, 0usize);
        let (mut a_end, mut b_end) = (false, false);
        loop {
            while !a_end && ia == ba.len() {
                match ra.next_chunk().await? {
                    Some(c) => (ba, ia) = (c, 0),
                    None => a_end = true,
                }
            }
            while !b_end && ib == bb.len() {
                match rb.next_chunk().await? {
                    Some(c) => (bb, ib) = (c, 0),
                    None => b_end = true,
                }
            }
            if a_end || b_end {
                return Ok(a_end && b_end);
            }
            let n = (ba.len() - ia).min(bb.len() - ib);
            if ba[ia..ia + n] != bb[ib..ib + n] {
                return Ok(false);
            }
            ia += n;
            ib += n;
        }
    }
}
