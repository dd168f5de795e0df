//! localdrive 2.2.1: a folder on disk with the drive API, so that [`mirror_drive`] can mirror
//! a folder into a hyperdrive and back (JS `new Localdrive(root)`).
//!
//! Paths are drive paths (`/dir/file`, normalized as hyperdrive does) under the root folder.
//! Entries look like hyperdrive's ([`DriveEntry`]): a regular file has a blob of its size
//! (`blockLength` is the file's 512-byte block count, as JS gives it), the executable bit is the
//! owner's `x` bit, symlinks give their target (a target inside the root is rewritten to a drive
//! path, `/…`); folders and other file types have no entry. Reads come in 64 KiB chunks (the
//! block size a hyperdrive then stores, as JS's file streams give them).
//!
//! Differences from JS: listings are in name order (JS: directory order); writes go to a
//! temporary file renamed into place at the end (JS's `atomic` option, off by default there),
//! so an interrupted copy never leaves a half-written file; metadata hooks are not offered
//! (like JS without them: `supportsMetadata` is false). The file system is used with
//! blocking calls from the async methods (small, local operations).
//!
//! [`mirror_drive`]: crate::core::mirror_drive

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::core::hyperblobs::BlobId;
use crate::core::hyperdrive::{path as dpath, DriveEntry, EntryValue};
use crate::core::mirror_drive::{ChunkReader, ChunkWriter, Drive, MirrorError};

/// Bytes per chunk a reader gives (JS `FileReadStream`: 65536).
pub const READ_CHUNK: usize = 1 << 16;

/// A folder as a drive; see the [module docs](self).
#[derive(Debug)]
pub struct Localdrive {
    root: PathBuf,
    follow_links: bool,
    tmp_counter: AtomicU64,
}

fn io_err(path: &Path, e: io::Error) -> MirrorError {
    MirrorError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn lstat(p: &Path, follow: bool) -> io::Result<Option<fs::Metadata>> {
    let r = if follow {
        fs::metadata(p)
    } else {
        fs::symlink_metadata(p)
    };
    match r {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn executable(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o100 != 0
}

#[cfg(not(unix))]
fn executable(_m: &fs::Metadata) -> bool {
    false
}

#[cfg(unix)]
fn block_count(m: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    if m.blocks() > 0 {
        m.blocks()
    } else {
        m.size().div_ceil(m.blksize().max(1)) * 8
    }
}

#[cfg(not(unix))]
fn block_count(m: &fs::Metadata) -> u64 {
    m.len().div_ceil(4096) * 8
}

impl Localdrive {
    /// The folder `root` as a drive (it need not exist yet: writes create it). Symlinks are
    /// entries of their own.
    pub fn new(root: impl AsRef<Path>) -> io::Result<Self> {
        let root = std::path::absolute(root.as_ref())?;
        Ok(Localdrive {
            root,
            follow_links: false,
            tmp_counter: AtomicU64::new(0),
        })
    }

    /// Follow symlinks: a link is the file or folder it points at (JS `followLinks`).
    pub fn follow_links(mut self, follow: bool) -> Self {
        self.follow_links = follow;
        self
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of drive path `key` (JS `toPath`).
    pub fn to_path(&self, key: &str) -> Result<PathBuf, MirrorError> {
        let key = dpath::resolve(key)?;
        Ok(self.root.join(key.trim_start_matches('/')))
    }

    fn entry_sync(&self, key: &str) -> Result<Option<DriveEntry>, MirrorError> {
        let key = dpath::resolve(key)?;
        let file = self.root.join(key.trim_start_matches('/'));
        let Some(st) = lstat(&file, self.follow_links).map_err(|e| io_err(&file, e))? else {
            return Ok(None);
        };
        let ft = st.file_type();
        if ft.is_symlink() {
            let link = fs::read_link(&file).map_err(|e| io_err(&file, e))?;
            let mut link = link.to_string_lossy().replace('\\', "/");
            let root = self.root.to_string_lossy().replace('\\', "/");
            if let Some(rest) = link.strip_prefix(root.as_str()) {
                link = if rest.starts_with('/') {
                    rest.to_string()
                } else {
                    format!("/{rest}")
                };
            }
            return Ok(Some(DriveEntry {
                seq: 0,
                key,
                value: EntryValue {
                    linkname: Some(link),
                    ..EntryValue::default()
                },
            }));
        }
        if !ft.is_file() {
            return Ok(None);
        }
        Ok(Some(DriveEntry {
            seq: 0,
            key,
            value: EntryValue {
                executable: executable(&st),
                linkname: None,
                blob: Some(BlobId {
                    block_offset: 0,
                    byte_offset: 0,
                    block_length: block_count(&st),
                    byte_length: st.len(),
                    block_map: false,
                }),
                metadata: None,
            },
        }))
    }

    /// Every file under the folder `folder`, in name order, leaving out `ignore`d paths and
    /// what is below them.
    fn list_sync(&self, folder: &str, ignore: &[String]) -> Result<Vec<DriveEntry>, MirrorError> {
        let ignore: Vec<String> = ignore
            .iter()
            .map(|p| dpath::resolve(p))
            .collect::<Result<_, _>>()?;
        let folder = dpath::resolve(folder)?;
        let mut out = Vec::new();
        self.walk(&folder, &ignore, &mut out, 0)?;
        Ok(out)
    }

    fn walk(
        &self,
        folder: &str,
        ignore: &[String],
        out: &mut Vec<DriveEntry>,
        depth: usize,
    ) -> Result<(), MirrorError> {
        if depth > 256 {
            return Err(MirrorError::Io {
                path: folder.to_string(),
                message: "folders nested too deep (a symlink loop?)".into(),
            });
        }
        let dir = self.root.join(folder.trim_start_matches('/'));
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(io_err(&dir, e)),
        };
        let mut names = Vec::new();
        for d in rd {
            let d = d.map_err(|e| io_err(&dir, e))?;
            names.push(d);
        }
        names.sort_by_key(|d| d.file_name());
        for d in names {
            let name = d.file_name().to_string_lossy().into_owned();
            let key = dpath::resolve_from(folder, &name)?;
            if ignore.iter().any(|p| {
                *p == key
                    || key
                        .strip_prefix(p.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            }) {
                continue;
            }
            let ft = d.file_type().map_err(|e| io_err(&d.path(), e))?;
            let mut is_dir = ft.is_dir();
            if ft.is_symlink() && self.follow_links {
                is_dir = fs::metadata(d.path()).is_ok_and(|m| m.is_dir());
            }
            if is_dir {
                self.walk(&key, ignore, out, depth + 1)?;
            } else if let Some(e) = self.entry_sync(&key)? {
                out.push(e);
            }
        }
        Ok(())
    }

    /// The names directly in `folder` that hold files (JS `readdir`: empty folders are left
    /// out), in name order.
    pub fn readdir(&self, folder: &str) -> Result<Vec<String>, MirrorError> {
        let folder = dpath::resolve(folder)?;
        let dir = self.root.join(folder.trim_start_matches('/'));
        let Ok(rd) = fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = rd
            .filter_map(Result::ok)
            .map(|d| d.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let key = dpath::resolve_from(&folder, &name)?;
            let full = dir.join(&name);
            let is_dir = if self.follow_links {
                fs::metadata(&full).is_ok_and(|m| m.is_dir())
            } else {
                fs::symlink_metadata(&full).is_ok_and(|m| m.is_dir())
            };
            if is_dir {
                if !self.list_sync(&key, &[])?.is_empty() {
                    out.push(name);
                }
            } else if self.entry_sync(&key)?.is_some() {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// The contents of the file `key` (`None` if it is not a file).
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MirrorError> {
        let Some(e) = self.entry_sync(key)? else {
            return Ok(None);
        };
        if e.value.blob.is_none() {
            return Ok(None);
        }
        let p = self.to_path(&e.key)?;
        fs::read(&p).map(Some).map_err(|e| io_err(&p, e))
    }

    /// Write the file `key` (parents created).
    pub fn put(&self, key: &str, bytes: &[u8], executable: bool) -> Result<(), MirrorError> {
        let mut w = self.writer_sync(key, executable)?;
        w.file
            .as_mut()
            .expect("open")
            .write_all(bytes)
            .map_err(|e| io_err(&w.tmp, e))?;
        w.finish_sync()
    }

    fn writer_sync(&self, key: &str, executable: bool) -> Result<FileWriter, MirrorError> {
        let target = self.to_path(key)?;
        let parent = target.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&parent).map_err(|e| io_err(&parent, e))?;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let mut tmp = target.clone().into_os_string();
        tmp.push(format!(".{}.{n}.localdrive.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if executable { 0o755 } else { 0o644 });
        }
        let file = opts.open(&tmp).map_err(|e| io_err(&tmp, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = file.metadata().map_err(|e| io_err(&tmp, e))?;
            if (m.permissions().mode() & 0o100 != 0) != executable {
                let mode = if executable { 0o755 } else { 0o644 };
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| io_err(&tmp, e))?;
            }
        }
        Ok(FileWriter {
            file: Some(io::BufWriter::with_capacity(1 << 16, file)),
            tmp,
            target,
        })
    }

    /// Remove the file `key`, then the folders it leaves empty (JS `del`).
    pub fn del_sync(&self, key: &str) -> Result<(), MirrorError> {
        let p = self.to_path(key)?;
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&p, e)),
        }
        let mut dir = p.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) || fs::remove_dir(&d).is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        Ok(())
    }

    /// Make `key` a symlink to `target` (a drive path `/…` points inside the root).
    pub fn symlink_sync(&self, key: &str, target: &str) -> Result<(), MirrorError> {
        if self.entry_sync(key)?.is_some() {
            self.del_sync(key)?;
        }
        let pointer = self.to_path(key)?;
        if let Some(parent) = pointer.parent() {
            fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
        let to = if target.starts_with('/') {
            self.to_path(target)?
        } else {
            PathBuf::from(target)
        };
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&to, &pointer).map_err(|e| io_err(&pointer, e))
        }
        #[cfg(not(unix))]
        {
            let _ = to;
            Err(MirrorError::Io {
                path: pointer.display().to_string(),
                message: "symlinks are only written on unix".into(),
            })
        }
    }
}

/// Reads a file in 64 KiB chunks.
#[derive(Debug)]
pub struct FileReader {
    file: Option<fs::File>,
    path: PathBuf,
    /// The bytes the entry said the file holds and that were not read yet: only sizes the
    /// buffers (a file that grew or shrank meanwhile is read to its end all the same).
    expected: u64,
}

impl FileReader {
    fn next_sync(&mut self) -> Result<Option<Vec<u8>>, MirrorError> {
        let Some(f) = self.file.as_mut() else {
            return Ok(None);
        };
        // Room for what is left (one byte more, to see the end without another read when the
        // file has the expected size), at most a chunk; not zeroed: `read_to_end` fills it.
        let want = self.expected.saturating_add(1).min(READ_CHUNK as u64) as usize;
        let mut buf = Vec::with_capacity(want);
        Read::by_ref(f)
            .take(READ_CHUNK as u64)
            .read_to_end(&mut buf)
            .map_err(|e| io_err(&self.path, e))?;
        let n = buf.len();
        // `read_to_end` stops short of a full chunk only at the end of the file.
        let at_end = n < READ_CHUNK;
        self.expected = self.expected.saturating_sub(n as u64);
        if at_end {
            self.file = None;
        }
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(buf))
    }
}

impl ChunkReader for FileReader {
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, MirrorError> {
        self.next_sync()
    }
}

/// Writes a file into a temporary file, renamed into place by [`ChunkWriter::finish`];
/// dropped unfinished, the temporary file is removed.
#[derive(Debug)]
pub struct FileWriter {
    file: Option<io::BufWriter<fs::File>>,
    tmp: PathBuf,
    target: PathBuf,
}

impl FileWriter {
    fn finish_sync(mut self) -> Result<(), MirrorError> {
        let f = self.file.take().expect("open until finished");
        let f = f
            .into_inner()
            .map_err(|e| io_err(&self.tmp, e.into_error()))?;
        drop(f);
        // A folder where the file goes (a file replacing a folder of the same name) is left:
        // the rename fails and says so.
        fs::rename(&self.tmp, &self.target).map_err(|e| io_err(&self.target, e))
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl ChunkWriter for FileWriter {
    async fn write_chunk(&mut self, chunk: Vec<u8>) -> Result<(), MirrorError> {
        let f = self.file.as_mut().expect("open until finished");
        f.write_all(&chunk).map_err(|e| io_err(&self.tmp, e))
    }

    async fn finish(self) -> Result<(), MirrorError> {
        self.finish_sync()
    }
}

impl Drive for Localdrive {
    type Reader = FileReader;
    type Writer = FileWriter;

    async fn list(&self, folder: &str, ignore: &[String]) -> Result<Vec<DriveEntry>, MirrorError> {
        self.list_sync(folder, ignore)
    }

    async fn entry(&self, key: &str) -> Result<Option<DriveEntry>, MirrorError> {
        self.entry_sync(key)
    }

    fn supports_metadata(&self) -> bool {
        false
    }

    async fn writable(&self) -> bool {
        true
    }

    async fn content_length(&self, entry: &DriveEntry) -> Result<u64, MirrorError> {
        Ok(entry.value.blob.map_or(0, |b| b.byte_length))
    }

    async fn read(&self, entry: &DriveEntry) -> Result<FileReader, MirrorError> {
        let path = self.to_path(&entry.key)?;
        if entry.value.blob.is_none() {
            return Ok(FileReader {
                file: None,
                path,
                expected: 0,
            });
        }
        let file = fs::File::open(&path).map_err(|e| io_err(&path, e))?;
        let expected = entry.value.blob.map_or(0, |b| b.byte_length);
        Ok(FileReader {
            file: Some(file),
            path,
            expected,
        })
    }

    async fn write(
        &self,
        key: &str,
        executable: bool,
        _metadata: Option<Value>,
        _dedup: bool,
    ) -> Result<FileWriter, MirrorError> {
        self.writer_sync(key, executable)
    }

    async fn symlink(&self, key: &str, target: &str) -> Result<(), MirrorError> {
        self.symlink_sync(key, target)
    }

    async fn del(&self, key: &str) -> Result<(), MirrorError> {
        self.del_sync(key)
    }

    fn stores_entries(&self) -> bool {
        false
    }

    async fn put_entry(&self, key: &str, _value: &EntryValue) -> Result<(), MirrorError> {
        Err(MirrorError::Io {
            path: key.to_string(),
            message: "a folder has no entries to rewrite".into(),
        })
    }
}
