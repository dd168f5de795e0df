//! Creating the fjall database of a new [`FileStorage`](super::FileStorage) without fjall's ~30
//! `fsync`s in a row.
//!
//! fjall syncs every file and folder it makes while it creates a database and a keyspace, one
//! after the other: ~30 `fsync`s, each a journal commit of the file system (1-8 ms each on this
//! project's shared ext4 disk, so 50-230 ms, the largest part of a short `core fetch`). Here
//! fjall builds the empty database in a scratch folder in memory (`/dev/shm`, where a sync costs
//! nothing), the files are copied to their place, and all of them are synced at once, one thread
//! each: the file system commits concurrent syncs together (measured: 13 files and folders in
//! 11-39 ms concurrently against 52-86 ms one after the other). Then the database is opened
//! where it belongs, as any existing one.
//!
//! Crash safety is the caller's marker (`db.incomplete`, see `open_database`): it is durable
//! before the first file of the new database is made and removed only once everything here is
//! synced, so a kill or power cut at any point leaves a database that the next open discards
//! and creates again. A kill -9 during the few milliseconds the scratch folder exists leaves it
//! in `/dev/shm` (a few KiB; the next creation removes the leftovers older than an hour).
//! Where there is no `/dev/shm` (or anything fails there), fjall creates the database in place as
//! before.

use hyperpunch_core::storage::StorageError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where scratch databases are built: memory, so fjall's syncs cost nothing.
const SCRATCH_ROOT: &str = "/dev/shm";
/// The name prefix of a scratch folder.
const SCRATCH_PREFIX: &str = ".hyperpunch-newdb-";
/// Scratch folders older than this were left by a killed process.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Build an empty database at `dest` (which must not exist): `build` makes it with fjall in a
/// scratch folder in memory (the path it gets does not exist yet), then its files are copied to
/// `dest` and synced concurrently (with `dest`'s parent folder). Returns `false`, with `dest`
/// not created, when no scratch folder could be used: the caller then lets fjall create it in
/// place. An error is returned only for a failure at `dest`.
pub(super) fn create_via_memory(
    dest: &Path,
    build: impl FnOnce(&Path) -> Result<(), StorageError>,
) -> Result<bool, StorageError> {
    let Some(scratch) = Scratch::new() else {
        return Ok(false);
    };
    let db = scratch.0.join("db");
    if build(&db).is_err() {
        return Ok(false);
    }
    let mut made = Vec::new();
    if let Err(e) = copy_tree(&db, dest, &mut made) {
        let _ = std::fs::remove_dir_all(dest);
        return Err(StorageError::Io(format!(
            "cannot copy a new database to {}: {e}",
            dest.display()
        )));
    }
    drop(scratch);
    if let Some(parent) = dest.parent() {
        made.push(parent.to_path_buf());
    }
    sync_all_at_once(&made)?;
    Ok(true)
}

/// A scratch folder in [`SCRATCH_ROOT`], removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Option<Self> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        let root = Path::new(SCRATCH_ROOT);
        if !root.is_dir() {
            return None;
        }
        remove_stale(root);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for attempt in 0..8u32 {
            let p = root.join(format!(
                "{SCRATCH_PREFIX}{}-{nanos}-{attempt}",
                std::process::id()
            ));
            match std::fs::create_dir(&p) {
                Ok(()) => return Some(Scratch(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Remove the scratch folders of killed processes (older than [`STALE_AFTER`]).
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(SCRATCH_PREFIX) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Copy the folder `from` to `to` (which must not exist), recording every folder and file made.
fn copy_tree(from: &Path, to: &Path, made: &mut Vec<PathBuf>) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    made.push(to.to_path_buf());
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let kind = e.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst, made)?;
        } else if kind.is_file() {
            copy_file(&src, &dst)?;
            made.push(dst);
        } else {
            return Err(std::io::Error::other(format!(
                "unexpected entry {} in a new database",
                src.display()
            )));
        }
    }
    Ok(())
}

/// Copy the file `from` to the new file `to`, keeping its holes (fjall's journal is a 64 MiB file
/// of which a new database uses a few bytes): only its data is copied, then the length is set.
fn copy_file(from: &Path, to: &Path) -> std::io::Result<()> {
    let src = File::open(from)?;
    let len = src.metadata()?.len();
    let dst = OpenOptions::new().write(true).create_new(true).open(to)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    while pos < len {
        let Some((start, end)) = data_segment(&src, pos, len)? else {
            break;
        };
        let mut at = start;
        while at < end {
            let n = usize::try_from(end - at).map_or(buf.len(), |n| n.min(buf.len()));
            let got = src.read_at(&mut buf[..n], at)?;
            if got == 0 {
                break;
            }
            dst.write_all_at(&buf[..got], at)?;
            at += got as u64;
        }
        pos = end;
    }
    dst.set_len(len)?;
    Ok(())
}

/// The next stretch `start..end` of `file` at or after `pos` that may hold data (`lseek`
/// `SEEK_DATA` / `SEEK_HOLE`), or `None` if only a hole follows. Where the file system cannot
/// tell, everything from `pos` to `len`.
fn data_segment(file: &File, pos: u64, len: u64) -> std::io::Result<Option<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let Ok(at) = libc::off_t::try_from(pos) else {
        return Ok(Some((pos, len)));
    };
    // SAFETY: plain system calls on a file descriptor we own; they read and write no memory.
    let start = unsafe { libc::lseek(file.as_raw_fd(), at, libc::SEEK_DATA) };
    if start < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Ok(Some((pos, len))),
        };
    }
    // SAFETY: as above.
    let end = unsafe { libc::lseek(file.as_raw_fd(), start, libc::SEEK_HOLE) };
    if end < 0 {
        return Ok(Some((pos, len)));
    }
    let (start, end) = (start as u64, (end as u64).min(len));
    Ok((start < end).then_some((start, end)))
}

/// `fsync` every path (files and folders) at once, one thread each, so that the file system
/// commits them together.
fn sync_all_at_once(paths: &[PathBuf]) -> Result<(), StorageError> {
    let results: Vec<std::io::Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .iter()
            .map(|p| s.spawn(move || File::open(p).and_then(|f| f.sync_all())))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a sync thread panicked")))
            })
            .collect()
    });
    for (p, r) in paths.iter().zip(results) {
        r.map_err(|e| StorageError::Io(format!("cannot sync {}: {e}", p.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with a hole is copied with the same length and bytes, the hole kept a hole.
    #[test]
    fn copies_keep_length_bytes_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        let f = File::create(&from).unwrap();
        f.write_all_at(b"journal head", 0).unwrap();
        f.write_all_at(b"tail", 3 * 1024 * 1024).unwrap();
        f.set_len(64 * 1024 * 1024).unwrap();
        drop(f);
        copy_file(&from, &to).unwrap();
        let (a, b) = (std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        assert_eq!(a.len(), b.len());
        assert!(a == b, "the copy differs");
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::MetadataExt;
            // Allocated blocks (of 512 bytes): far fewer than 64 MiB's.
            let blocks = std::fs::metadata(&to).unwrap().blocks();
            assert!(blocks < 4096, "{blocks} blocks allocated");
        }
    }

    /// A new database is built in memory, copied (every file and folder) and its scratch folder
    /// removed; where there is no scratch folder the caller is told to create it in place.
    #[test]
    fn new_databases_are_copied_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("db");
        let mut scratch_seen = None;
        let made = create_via_memory(&dest, |p| {
            scratch_seen = Some(p.to_path_buf());
            std::fs::create_dir(p).unwrap();
            std::fs::create_dir(p.join("sub")).unwrap();
            std::fs::write(p.join("sub").join("file"), b"bytes").unwrap();
            Ok(())
        })
        .unwrap();
        if !made {
            // No /dev/shm here: nothing was made.
            assert!(!dest.exists());
            return;
        }
        assert_eq!(
            std::fs::read(dest.join("sub").join("file")).unwrap(),
            b"bytes"
        );
        let scratch = scratch_seen.unwrap();
        assert!(!scratch.exists(), "{} left behind", scratch.display());
        assert!(scratch.parent().is_some_and(|p| !p.exists()));
        // A failing build leaves nothing and asks for the creation in place.
        let dest2 = dir.path().join("db2");
        let made = create_via_memory(&dest2, |_| Err(StorageError::Io("no".into()))).unwrap();
        assert!(!made);
        assert!(!dest2.exists());
    }
}
