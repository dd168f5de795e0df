//! Reading a drive: entries, file contents (whole, ranges, streams), listings.

use crate::hyperbee::{BeeError, Entry, RangeIter, RangeOptions, Utf8};
use crate::hyperblobs::{BlobCore, BlobReader, ReadRange};

use super::entry::{DriveEntry, EntryCodec, EntryValue};
use super::path::{file_key, folder_prefix, prefix_range, resolve, resolve_from};
use super::{DriveError, FilesBee, Hyperdrive};

/// Symlinks [`Hyperdrive::entry_follow`] follows before giving up (JS 16).
pub const MAX_SYMLINK_HOPS: usize = 16;

/// Options of [`Hyperdrive::list`] (JS `list(folder, { recursive, ignore })`).
#[derive(Debug, Clone)]
pub struct ListOptions {
    /// Every file below the folder (default), or the first entry under each name directly in
    /// it (JS `recursive: false`).
    pub recursive: bool,
    /// Paths left out, with everything below them (JS `ignore`).
    pub ignore: Vec<String>,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            recursive: true,
            ignore: Vec::new(),
        }
    }
}

/// JS `toIgnoreFunction` of a path list: a key is ignored if it is one of the paths or below
/// one.
fn ignore_fn(ignore: &[String]) -> Result<Vec<String>, DriveError> {
    ignore.iter().map(|p| resolve(p)).collect()
}

fn ignored(all: &[String], key: &str) -> bool {
    all.iter().any(|p| {
        p == key || (key.starts_with(p.as_str()) && key.as_bytes().get(p.len()) == Some(&b'/'))
    })
}

pub(super) fn to_drive_entry(e: Entry<String, EntryValue>) -> Result<DriveEntry, DriveError> {
    let value = e.value.ok_or(BeeError::Encoding {
        codec: "hyperdrive entry",
        reason: format!("block {} has a key but no value", e.seq),
    })?;
    Ok(DriveEntry {
        seq: e.seq,
        key: e.key,
        value,
    })
}

impl<C: BlobCore> Hyperdrive<C> {
    /// The entry at `name` (JS `entry(name)`), `None` if there is none. Symlinks are returned
    /// as they are.
    pub async fn entry(&self, name: &str) -> Result<Option<DriveEntry>, DriveError> {
        let key = file_key(name)?;
        match self.files.get(&key).await? {
            Some(e) => Ok(Some(to_drive_entry(e)?)),
            None => Ok(None),
        }
    }

    /// The entry at `name`, following symlinks (JS `entry(name, { follow: true })`): a link's
    /// target resolves against the link's own path, as in JS. More than 16 hops is
    /// [`DriveError::RecursiveSymlink`].
    pub async fn entry_follow(&self, name: &str) -> Result<Option<DriveEntry>, DriveError> {
        let mut name = name.to_string();
        for _ in 0..MAX_SYMLINK_HOPS {
            let Some(e) = self.entry(&name).await? else {
                return Ok(None);
            };
            match &e.value.linkname {
                Some(target) => name = resolve_from(&e.key, target)?,
                None => return Ok(Some(e)),
            }
        }
        Err(DriveError::RecursiveSymlink(name))
    }

    /// Whether there is an entry at `name` (JS `exists`).
    pub async fn exists(&self, name: &str) -> Result<bool, DriveError> {
        Ok(self.entry(name).await?.is_some())
    }

    /// The contents of the file at `name` (JS `get`): `None` without an entry or for an entry
    /// without a blob (a symlink). A block nobody has is [`crate::hyperblobs::BlobError::BlockNotAvailable`].
    pub async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, DriveError> {
        let Some(e) = self.entry(name).await? else {
            return Ok(None);
        };
        self.get_entry(&e).await
    }

    /// The contents of the file an entry points at (`None` without a blob).
    pub async fn get_entry(&self, e: &DriveEntry) -> Result<Option<Vec<u8>>, DriveError> {
        let Some(blob) = e.value.blob else {
            return Ok(None);
        };
        match self.blobs.get(&blob).await? {
            Some(b) => Ok(Some(b)),
            None => Err(crate::hyperblobs::BlobError::BlockNotAvailable(blob.block_offset).into()),
        }
    }

    /// A reader of the file at `name`, or of a byte range of it (JS `createReadStream(name,
    /// { start, end, length })`, `end` inclusive). No entry is [`DriveError::NotFound`]; an
    /// entry without a blob reads as empty.
    pub async fn reader(&self, name: &str, range: ReadRange) -> Result<BlobReader<C>, DriveError> {
        let e = self
            .entry(name)
            .await?
            .ok_or_else(|| DriveError::NotFound(name.to_string()))?;
        self.entry_reader(&e, range).await
    }

    /// A reader of an entry's blob (JS `createReadStream(entry)`).
    pub async fn entry_reader(
        &self,
        e: &DriveEntry,
        range: ReadRange,
    ) -> Result<BlobReader<C>, DriveError> {
        match e.value.blob {
            Some(blob) if blob.byte_length > 0 => Ok(self.blobs.reader(&blob, range).await?),
            _ => Ok(BlobReader::empty(self.blobs.core().clone())),
        }
    }

    /// Every entry under `folder` in key order (JS `list(folder, { recursive, ignore })`),
    /// `"/"` for all.
    pub fn list(&self, folder: &str, opts: ListOptions) -> Result<ListIter<C>, DriveError> {
        let folder = folder_prefix(folder)?;
        let ignore = ignore_fn(&opts.ignore)?;
        if !opts.recursive {
            return Ok(ListIter::Shallow {
                walk: Shallow::new(self.files.clone(), folder),
                ignore,
            });
        }
        let (gt, lt) = prefix_range(&folder, "/");
        let it = self.files.create_read_stream(RangeOptions {
            gt: Some(&gt),
            lt: Some(&lt),
            ..Default::default()
        });
        Ok(ListIter::Range { it, ignore })
    }

    /// Every entry of the drive, in key order (JS `entries()`).
    pub fn entries(&self) -> ListIter<C> {
        ListIter::Range {
            it: self.files.create_read_stream(RangeOptions::default()),
            ignore: Vec::new(),
        }
    }

    /// The names directly in `folder` (JS `readdir`): files and sub-folders, in key order.
    /// As JS's walk, it skips past a sub-folder `name/` by continuing after `name0`, so a file
    /// named exactly `name0` next to the folder `name` is not listed (kept for identical
    /// results).
    pub async fn readdir(&self, folder: &str) -> Result<Vec<String>, DriveError> {
        let folder = folder_prefix(folder)?;
        let mut walk = Shallow::new(self.files.clone(), folder);
        let mut out = Vec::new();
        while let Some((name, _)) = walk.next().await? {
            out.push(name);
        }
        Ok(out)
    }

    /// Whether the file at `path`, or every file below the folder `path` (a path ending in
    /// `/`, or one without an entry), is held locally in full (JS `has`). A folder without
    /// files is `false`.
    pub async fn has(&self, path: &str) -> Result<bool, DriveError> {
        if !path.is_empty() && !path.ends_with('/') {
            if let Some(e) = self.entry(path).await? {
                return match e.value.blob {
                    Some(b) => Ok(self.blobs.has(&b).await?),
                    None => Ok(false),
                };
            }
        }
        let mut it = self.list(path, ListOptions::default())?;
        let mut any = false;
        while let Some(e) = it.next().await? {
            any = true;
            if let Some(b) = e.value.blob {
                if !self.blobs.has(&b).await? {
                    return Ok(false);
                }
            }
        }
        Ok(any)
    }
}

/// The entries of [`Hyperdrive::list`] / [`Hyperdrive::entries`].
pub enum ListIter<C: BlobCore> {
    /// A recursive listing: a range of the bee.
    Range {
        /// The range.
        it: RangeIter<C, Utf8, EntryCodec>,
        /// Ignored paths.
        ignore: Vec<String>,
    },
    /// A shallow listing.
    Shallow {
        /// The walk.
        walk: Shallow<C>,
        /// Ignored paths.
        ignore: Vec<String>,
    },
}

impl<C: BlobCore> ListIter<C> {
    /// The next entry; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<DriveEntry>, DriveError> {
        match self {
            ListIter::Range { it, ignore } => loop {
                match it.next().await? {
                    Some(e) if ignored(ignore, &e.key) => continue,
                    Some(e) => return Ok(Some(to_drive_entry(e)?)),
                    None => return Ok(None),
                }
            },
            ListIter::Shallow { walk, ignore } => loop {
                match walk.next().await? {
                    Some((_, e)) if ignored(ignore, &e.key) => continue,
                    Some((_, e)) => return Ok(Some(e)),
                    None => return Ok(None),
                }
            },
        }
    }

    /// Every remaining entry.
    pub async fn collect(mut self) -> Result<Vec<DriveEntry>, DriveError> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await? {
            out.push(e);
        }
        Ok(out)
    }
}

/// JS `shallowReadStream`: one `peek` per name directly in a folder, skipping past
/// sub-folders (`name0` is just after everything in `name/`).
pub struct Shallow<C: BlobCore> {
    files: FilesBee<C>,
    folder: String,
    prev: String,
    prev_name: Option<String>,
}

impl<C: BlobCore> Shallow<C> {
    fn new(files: FilesBee<C>, folder: String) -> Self {
        Shallow {
            files,
            folder,
            prev: "/".to_string(),
            prev_name: None,
        }
    }

    /// The next name and the first entry under it.
    pub async fn next(&mut self) -> Result<Option<(String, DriveEntry)>, DriveError> {
        loop {
            let (gt, lt) = prefix_range(&self.folder, &self.prev);
            let node = self
                .files
                .peek(RangeOptions {
                    gt: Some(&gt),
                    lt: Some(&lt),
                    ..Default::default()
                })
                .await?;
            let Some(node) = node else {
                return Ok(None);
            };
            let suffix = node.key.get(self.folder.len() + 1..).unwrap_or("");
            let (name, is_dir) = match suffix.find('/') {
                Some(i) => (&suffix[..i], true),
                None => (suffix, false),
            };
            let name = name.to_string();
            self.prev = format!("/{name}{}", if is_dir { "0" } else { "" });
            if self.prev_name.as_deref() == Some(name.as_str()) {
                continue;
            }
            self.prev_name = Some(name.clone());
            return Ok(Some((name, to_drive_entry(node)?)));
        }
    }
}
