//! Changes and local copies: `diff`, `watch`, `download`, `clear`, `truncate`.

use crate::hyperbee::{DiffIter, RangeOptions, Utf8, Watcher};
use crate::hyperblobs::BlobCore;

use super::entry::{DriveEntry, EntryCodec};
use super::path::{folder_prefix, prefix_range};
use super::read::{to_drive_entry, ListOptions};
use super::{DriveError, Hyperdrive};

/// One difference of [`Hyperdrive::diff`]: the entry in this drive (`left`) and at the other
/// version (`right`); `None` where the path has no entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DriveDiff {
    /// The entry now (in this drive).
    pub left: Option<DriveEntry>,
    /// The entry at the other version.
    pub right: Option<DriveEntry>,
}

/// The differences of [`Hyperdrive::diff`], in key order.
pub struct DiffStream<C: BlobCore> {
    it: DiffIter<C, Utf8, EntryCodec>,
}

impl<C: BlobCore> DiffStream<C> {
    /// The next difference; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<DriveDiff>, DriveError> {
        let Some(d) = self.it.next().await? else {
            return Ok(None);
        };
        Ok(Some(DriveDiff {
            left: d.left.map(to_drive_entry).transpose()?,
            right: d.right.map(to_drive_entry).transpose()?,
        }))
    }

    /// Every remaining difference.
    pub async fn collect(mut self) -> Result<Vec<DriveDiff>, DriveError> {
        let mut out = Vec::new();
        while let Some(d) = self.next().await? {
            out.push(d);
        }
        Ok(out)
    }
}

/// Changes below a folder, as `(current, previous)` checkouts of the drive; made by
/// [`Hyperdrive::watch`].
pub struct DriveWatcher<C: BlobCore> {
    drive: Hyperdrive<C>,
    watcher: Watcher<C, Utf8, EntryCodec>,
}

impl<C: BlobCore> DriveWatcher<C> {
    /// Take the point changes are counted from now (JS `watcher.ready()`) instead of at the
    /// first [`DriveWatcher::next`].
    pub async fn ready(&mut self) {
        self.watcher.ready().await
    }

    /// Wait for the next change below the folder (made here or arriving from peers); the drive
    /// after it and before it (diff them with [`Hyperdrive::diff_with`]).
    pub async fn next(&mut self) -> Result<(Hyperdrive<C>, Hyperdrive<C>), DriveError> {
        let (current, previous) = self.watcher.next().await?;
        let blobs = self.drive.blobs.clone();
        Ok((
            Hyperdrive::from_parts(current, blobs.clone()),
            Hyperdrive::from_parts(previous, blobs),
        ))
    }
}

impl<C: BlobCore> Hyperdrive<C> {
    /// What differs between this drive and its version `version` below `folder` (JS
    /// `diff(version, folder)`; `"/"` for everything).
    pub async fn diff(&self, version: u64, folder: &str) -> Result<DiffStream<C>, DriveError> {
        let other = self.files.checkout(version.max(1)).await;
        self.diff_files(&other, folder)
    }

    /// What differs between this drive and `other` (another checkout of it) below `folder`.
    pub fn diff_with(
        &self,
        other: &Hyperdrive<C>,
        folder: &str,
    ) -> Result<DiffStream<C>, DriveError> {
        self.diff_files(&other.files, folder)
    }

    fn diff_files(
        &self,
        other: &super::FilesBee<C>,
        folder: &str,
    ) -> Result<DiffStream<C>, DriveError> {
        let folder = folder_prefix(folder)?;
        let (gt, lt) = prefix_range(&folder, "/");
        let it = self.files.create_diff_stream(
            other,
            RangeOptions {
                gt: Some(&gt),
                lt: Some(&lt),
                ..Default::default()
            },
        );
        Ok(DiffStream { it })
    }

    /// Watch `folder` for changes (JS `watch(folder)`).
    pub fn watch(&self, folder: &str) -> Result<DriveWatcher<C>, DriveError> {
        let folder = folder_prefix(folder)?;
        let (gt, lt) = prefix_range(&folder, "/");
        let watcher = self.files.watch(
            RangeOptions {
                gt: Some(&gt),
                lt: Some(&lt),
                ..Default::default()
            },
            false,
        );
        Ok(DriveWatcher {
            drive: self.clone(),
            watcher,
        })
    }

    /// Make the file `path`, or every file below the folder `path`, local: its entries and
    /// blobs are downloaded from peers (JS `download(folder)` and `done()`). A path ending in
    /// `/` is always a folder. How many files were downloaded.
    pub async fn download(&self, path: &str) -> Result<u64, DriveError> {
        if !path.is_empty() && !path.ends_with('/') {
            if let Some(e) = self.entry(path).await? {
                if let Some(b) = e.value.blob {
                    self.blobs.download(&b).await?;
                }
                return Ok(1);
            }
        }
        let mut it = self.list(path, ListOptions::default())?;
        let mut n = 0;
        while let Some(e) = it.next().await? {
            if let Some(b) = e.value.blob {
                self.blobs.download(&b).await?;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Download the files that differ from version `version` below `folder` (JS
    /// `downloadDiff`). How many were downloaded.
    pub async fn download_diff(&self, version: u64, folder: &str) -> Result<u64, DriveError> {
        let mut d = self.diff(version, folder).await?;
        let mut n = 0;
        while let Some(diff) = d.next().await? {
            if let Some(b) = diff.left.and_then(|e| e.value.blob) {
                self.blobs.download(&b).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Delete the local copy of the file `name`'s contents (JS `clear`): `None` without an
    /// entry, else how many blocks were held and are cleared.
    pub async fn clear(&self, name: &str) -> Result<Option<u64>, DriveError> {
        let Some(e) = self.entry(name).await? else {
            return Ok(None);
        };
        match e.value.blob {
            Some(b) => Ok(Some(self.blobs.clear(&b).await?)),
            None => Ok(Some(0)),
        }
    }

    /// Delete the local copies of every blob (JS `clearAll`): how many blocks were cleared.
    pub async fn clear_all(&self) -> Result<u64, DriveError> {
        let core = self.blobs.core();
        let length = core.state().await.length;
        Ok(core.clear(0, length).await?)
    }

    /// The blobs core's length the drive's version `version` needs (JS `getBlobsLength`): the
    /// end of the last blob any entry of that version points at. Version 0 means the drive's
    /// current version, as in JS (`if (!checkout) checkout = this.version`).
    pub async fn blobs_length(&self, version: u64) -> Result<u64, DriveError> {
        let version = match version {
            0 => self.version().await,
            v => v,
        };
        let checkout = self.checkout(version).await;
        let mut it = checkout.entries();
        let mut length = 0;
        while let Some(e) = it.next().await? {
            if let Some(b) = e.value.blob {
                length = length.max(b.end());
            }
        }
        Ok(length)
    }

    /// Cut the drive back to `version` (JS `truncate(version, { blobs })`): the db core is
    /// truncated to `version` blocks, then the blobs core to `blobs`, or (`None`) to
    /// [`Hyperdrive::blobs_length`] of `version`, the end of the last blob that version's
    /// entries point at. Both cores move to their next fork and are re-signed; entries and
    /// blobs written after `version` are gone (a read of a blob past the new blobs length is
    /// [`crate::hyperblobs::BlobError::OutOfBounds`]), and the drive's next writes go on from
    /// there. Replicated cores tell their peers.
    ///
    /// As JS: `version` 0 empties the db core but keeps the blobs the current version needs
    /// (JS `getBlobsLength(0)` reads the current version), and `version` may equal the db
    /// length (nothing removed from the db, a new fork all the same).
    ///
    /// Errors: a checkout, or cores without their secret key, [`DriveError::NotWritable`]; a
    /// `version` past the db length or `blobs` past the blobs length,
    /// [`DriveError::BadTruncationLength`] (JS "Bad truncation length"), with nothing
    /// truncated.
    pub async fn truncate(&self, version: u64, blobs: Option<u64>) -> Result<(), DriveError> {
        if self.checkout_version().is_some() {
            return Err(DriveError::NotWritable);
        }
        let db = self.files.core().state().await;
        if !db.writable {
            return Err(DriveError::NotWritable);
        }
        if version > db.length {
            return Err(DriveError::BadTruncationLength {
                core: "db",
                length: version,
                core_length: db.length,
            });
        }
        let blobs_version = match blobs {
            Some(b) => b,
            None => self.blobs_length(version).await?,
        };
        let blobs_core = self.blobs.core().state().await;
        if blobs_version > blobs_core.length {
            return Err(DriveError::BadTruncationLength {
                core: "blobs",
                length: blobs_version,
                core_length: blobs_core.length,
            });
        }
        if !blobs_core.writable {
            return Err(DriveError::NotWritable);
        }
        self.files.core().truncate(version).await?;
        self.blobs.core().truncate(blobs_version).await?;
        Ok(())
    }
}
