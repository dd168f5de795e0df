//! Writing a drive: files, entries, symlinks, deletes, write streams and batches.

use serde_json::Value;

use crate::hyperbee::Batch;
use crate::hyperblobs::{BlobCore, BlobWriter, Hyperblobs, WriteOptions};

use super::entry::{EntryCodec, EntryValue};
use super::path::file_key;
use super::{DriveError, Hyperdrive};
use crate::hyperbee::Utf8;

/// Options of [`Hyperdrive::put`] and [`Hyperdrive::writer`].
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Mark the file executable.
    pub executable: bool,
    /// Metadata stored with the entry (any JSON).
    pub metadata: Option<Value>,
    /// Deduplicate against the file's current blob (JS `dedup`: the blob gets a block map,
    /// blocks already stored are not appended again). Writers only.
    pub dedup: bool,
}

impl<C: BlobCore> Hyperdrive<C> {
    async fn check_writable(&self) -> Result<(), DriveError> {
        if self.files.checkout_version().is_some() {
            return Err(DriveError::NotWritable);
        }
        Ok(())
    }

    /// Store `bytes` as the file `name` (JS `put`): its blob (64 KiB blocks) is appended to the
    /// blobs core, then its entry to the db.
    pub async fn put(&self, name: &str, bytes: &[u8], opts: PutOptions) -> Result<(), DriveError> {
        let key = file_key(name)?;
        self.check_writable().await?;
        let blob = self.blobs.put(bytes).await?;
        let value = EntryValue {
            executable: opts.executable,
            linkname: None,
            blob: Some(blob),
            metadata: opts.metadata,
        };
        self.files.put(&key, &value).await?;
        Ok(())
    }

    /// Store an entry as it is (JS `putEntry`), e.g. one pointing at a blob already stored.
    pub async fn put_entry(&self, name: &str, value: &EntryValue) -> Result<(), DriveError> {
        let key = file_key(name)?;
        self.check_writable().await?;
        self.files.put(&key, value).await?;
        Ok(())
    }

    /// Delete the entry at `name` (JS `del`; the blob's blocks stay in the blobs core, see
    /// [`Hyperdrive::clear`]). Nothing is written when there is no entry.
    pub async fn del(&self, name: &str) -> Result<(), DriveError> {
        let key = file_key(name)?;
        self.check_writable().await?;
        self.files.del(&key).await?;
        Ok(())
    }

    /// Make `name` a symlink to `target` (JS `symlink`; the target is stored as given).
    pub async fn symlink(
        &self,
        name: &str,
        target: &str,
        metadata: Option<Value>,
    ) -> Result<(), DriveError> {
        let value = EntryValue {
            executable: false,
            linkname: Some(target.to_string()),
            blob: None,
            metadata,
        };
        self.put_entry(name, &value).await
    }

    /// A writer of the file `name` (JS `createWriteStream`): each chunk written is one block
    /// of the blob; [`DriveWriter::finish`] puts the entry. Holds the blobs write lock until
    /// finished.
    pub async fn writer(&self, name: &str, opts: PutOptions) -> Result<DriveWriter<C>, DriveError> {
        let key = file_key(name)?;
        self.check_writable().await?;
        let previous = if opts.dedup {
            self.entry(&key).await?.and_then(|e| e.value.blob)
        } else {
            None
        };
        let blob = self
            .blobs
            .writer(WriteOptions {
                block_map: opts.dedup,
                dedup: opts.dedup,
                previous,
            })
            .await?;
        Ok(DriveWriter {
            drive: self.clone(),
            key,
            blob,
            opts,
        })
    }

    /// A batch of writes whose entries are appended to the db together at
    /// [`DriveBatch::flush`] (JS `batch()`); file contents go to the blobs core at once.
    pub fn batch(&self) -> DriveBatch<C> {
        DriveBatch {
            batch: self.files.batch(),
            blobs: self.blobs.clone(),
        }
    }
}

/// Writes one file; see [`Hyperdrive::writer`].
pub struct DriveWriter<C: BlobCore> {
    drive: Hyperdrive<C>,
    key: String,
    blob: BlobWriter<C>,
    opts: PutOptions,
}

impl<C: BlobCore> std::fmt::Debug for DriveWriter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriveWriter")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<C: BlobCore> DriveWriter<C> {
    /// Append `chunk` as one block (an empty chunk is skipped).
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), DriveError> {
        Ok(self.blob.write(chunk).await?)
    }

    /// Append an owned chunk as one block.
    pub async fn write_owned(&mut self, chunk: Vec<u8>) -> Result<(), DriveError> {
        Ok(self.blob.write_owned(chunk).await?)
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.blob.bytes_written()
    }

    /// Finish the blob and put the entry; the entry's value.
    pub async fn finish(self) -> Result<EntryValue, DriveError> {
        let blob = self.blob.finish().await?;
        let value = EntryValue {
            executable: self.opts.executable,
            linkname: None,
            blob: Some(blob),
            metadata: self.opts.metadata,
        };
        self.drive.files.put(&self.key, &value).await?;
        Ok(value)
    }
}

/// A batch of drive writes; see [`Hyperdrive::batch`]. Holds the db's write lock from its
/// first write until [`DriveBatch::flush`] (or until dropped, which discards the entries).
pub struct DriveBatch<C: BlobCore> {
    batch: Batch<C, Utf8, EntryCodec>,
    blobs: Hyperblobs<C>,
}

impl<C: BlobCore> DriveBatch<C> {
    /// [`Hyperdrive::put`] in the batch.
    pub async fn put(
        &mut self,
        name: &str,
        bytes: &[u8],
        opts: PutOptions,
    ) -> Result<(), DriveError> {
        let key = file_key(name)?;
        let blob = self.blobs.put(bytes).await?;
        let value = EntryValue {
            executable: opts.executable,
            linkname: None,
            blob: Some(blob),
            metadata: opts.metadata,
        };
        self.batch.put(&key, &value).await?;
        Ok(())
    }

    /// [`Hyperdrive::put_entry`] in the batch.
    pub async fn put_entry(&mut self, name: &str, value: &EntryValue) -> Result<(), DriveError> {
        let key = file_key(name)?;
        self.batch.put(&key, value).await?;
        Ok(())
    }

    /// [`Hyperdrive::del`] in the batch.
    pub async fn del(&mut self, name: &str) -> Result<(), DriveError> {
        let key = file_key(name)?;
        self.batch.del(&key).await?;
        Ok(())
    }

    /// [`Hyperdrive::symlink`] in the batch.
    pub async fn symlink(
        &mut self,
        name: &str,
        target: &str,
        metadata: Option<Value>,
    ) -> Result<(), DriveError> {
        let value = EntryValue {
            linkname: Some(target.to_string()),
            metadata,
            ..Default::default()
        };
        self.put_entry(name, &value).await
    }

    /// The blobs, to write a file's contents with a [`BlobWriter`] before
    /// [`DriveBatch::put_entry`].
    pub fn blobs(&self) -> &Hyperblobs<C> {
        &self.blobs
    }

    /// Entries staged so far.
    pub fn len(&self) -> u64 {
        self.batch.len()
    }

    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Append the staged entries in one append (JS `flush`).
    pub async fn flush(mut self) -> Result<(), DriveError> {
        self.batch.flush().await?;
        Ok(())
    }
}
