//! A [`Hyperdrive`] as a mirror [`Drive`].

use serde_json::Value;

use super::{ChunkReader, ChunkWriter, Drive, MirrorError};
use crate::hyperblobs::{BlobCore, BlobReader, ReadRange};
use crate::hyperdrive::{DriveEntry, DriveWriter, EntryValue, Hyperdrive, ListOptions, PutOptions};

impl<C: BlobCore> ChunkReader for BlobReader<C> {
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, MirrorError> {
        Ok(self
            .next()
            .await
            .map_err(crate::hyperdrive::DriveError::from)?)
    }
}

impl<C: BlobCore> ChunkWriter for DriveWriter<C> {
    async fn write_chunk(&mut self, chunk: Vec<u8>) -> Result<(), MirrorError> {
        Ok(self.write_owned(chunk).await?)
    }

    async fn finish(self) -> Result<(), MirrorError> {
        DriveWriter::finish(self).await?;
        Ok(())
    }
}

impl<C: BlobCore> Drive for Hyperdrive<C> {
    type Reader = BlobReader<C>;
    type Writer = DriveWriter<C>;

    async fn list(&self, folder: &str, ignore: &[String]) -> Result<Vec<DriveEntry>, MirrorError> {
        let it = Hyperdrive::list(
            self,
            folder,
            ListOptions {
                recursive: true,
                ignore: ignore.to_vec(),
            },
        )?;
        Ok(it.collect().await?)
    }

    async fn entry(&self, key: &str) -> Result<Option<DriveEntry>, MirrorError> {
        Ok(Hyperdrive::entry(self, key).await?)
    }

    fn supports_metadata(&self) -> bool {
        true
    }

    async fn writable(&self) -> bool {
        Hyperdrive::writable(self).await
    }

    async fn content_length(&self, entry: &DriveEntry) -> Result<u64, MirrorError> {
        match &entry.value.blob {
            Some(b) => Ok(self
                .blobs()
                .content_length(b)
                .await
                .map_err(crate::hyperdrive::DriveError::from)?),
            None => Ok(0),
        }
    }

    async fn read(&self, entry: &DriveEntry) -> Result<BlobReader<C>, MirrorError> {
        Ok(self.entry_reader(entry, ReadRange::default()).await?)
    }

    async fn write(
        &self,
        key: &str,
        executable: bool,
        metadata: Option<Value>,
        dedup: bool,
    ) -> Result<DriveWriter<C>, MirrorError> {
        Ok(self
            .writer(
                key,
                PutOptions {
                    executable,
                    metadata,
                    dedup,
                },
            )
            .await?)
    }

    async fn symlink(&self, key: &str, target: &str) -> Result<(), MirrorError> {
        Ok(Hyperdrive::symlink(self, key, target, None).await?)
    }

    async fn del(&self, key: &str) -> Result<(), MirrorError> {
        Ok(Hyperdrive::del(self, key).await?)
    }

    fn stores_entries(&self) -> bool {
        true
    }

    async fn put_entry(&self, key: &str, value: &EntryValue) -> Result<(), MirrorError> {
        Ok(Hyperdrive::put_entry(self, key, value).await?)
    }
}
