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
//! in `/dev/shm` (a few KiB): the first creation of a later process removes those whose process
//! is gone and that are older than [`STALE_AFTER`] (one scan of `/dev/shm` per process).
//!
//! Where there is no usable `/dev/shm` (missing, not a folder, full, or anything failing while
//! fjall builds there), fjall creates the database in place as before. If copying the built
//! files into place fails, whatever was copied is removed and fjall creates it in place too;
//! if even that removal fails, the creation fails with an error naming the folder (the marker
//! stays, so the next open starts over).

use hyperpunch_core::storage::StorageError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, SystemTime};

/// Where scratch databases are built: memory, so fjall's syncs cost nothing.
const SCRATCH_ROOT: &str = "/dev/shm";
/// The name prefix of a scratch folder: the prefix, then `PID-NANOS-ATTEMPT`.
const SCRATCH_PREFIX: &str = ".hyperpunch-newdb-";
/// A scratch folder older than this whose process is gone was left by a killed process (a
/// creation takes milliseconds).
const STALE_AFTER: Duration = Duration::from_secs(10 * 60);
/// A scratch folder older than this is stale even if a process with its id runs (the id was
/// reused, or belongs to another PID namespace sharing `/dev/shm`).
const STALE_ANYWAY_AFTER: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
thread_local! {
    /// Tests: build scratch databases here instead of [`SCRATCH_ROOT`] (this thread only).
    pub(super) static SCRATCH_ROOT_OVERRIDE: std::cell::RefCell<Option<PathBuf>> =
        const { std::cell::RefCell::new(None) };
    /// Tests: make the copy into place fail after this many files (this thread only).
    pub(super) static FAIL_COPY_AFTER: std::cell::Cell<Option<usize>> =
        const { std::cell::Cell::new(None) };
}

/// Where scratch databases are built.
fn scratch_root() -> PathBuf {
    #[cfg(test)]
    if let Some(p) = SCRATCH_ROOT_OVERRIDE.with(|o| o.borrow().clone()) {
        return p;
    }
    PathBuf::from(SCRATCH_ROOT)
}

/// Build an empty database at `dest` (which must not exist): `build` makes it with fjall in a
/// scratch folder in memory (the path it gets does not exist yet), then its files are copied to
/// `dest` and synced concurrently (with `dest`'s parent folder). Returns `false`, with `dest`
/// not created, when the scratch folder could not be used (none, `build` failed there, or the
/// copy into place failed): the caller then lets fjall create it in place. An error is returned
/// only for a failure at `dest` that leaves something there (a copy that cannot be removed) or
/// a failed sync.
pub(super) fn create_via_memory(
    dest: &Path,
    build: impl FnOnce(&Path) -> Result<(), StorageError>,
) -> Result<bool, StorageError> {
    create_via_scratch(&scratch_root(), dest, build)
}

fn create_via_scratch(
    root: &Path,
    dest: &Path,
    build: impl FnOnce(&Path) -> Result<(), StorageError>,
) -> Result<bool, StorageError> {
    let Some(scratch) = Scratch::new(root) else {
        return Ok(false);
    };
    let db = scratch.0.join("db");
    if build(&db).is_err() {
        return Ok(false);
    }
    let mut made = Vec::new();
    if let Err(copy_err) = copy_tree(&db, dest, &mut made) {
        // Nothing half-copied may stay: fjall would find a database there.
        return match std::fs::remove_dir_all(dest) {
            Ok(()) => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::Io(format!(
                "cannot copy a new database to {} ({copy_err}) nor remove the partial copy: {e}",
                dest.display()
            ))),
        };
    }
    drop(scratch);
    if let Some(parent) = dest.parent() {
        made.push(parent.to_path_buf());
    }
    sync_all_at_once(&made)?;
    Ok(true)
}

/// A scratch folder in the scratch root, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(root: &Path) -> Option<Self> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        if !root.is_dir() {
            return None;
        }
        static STALE_SCAN: Once = Once::new();
        STALE_SCAN.call_once(|| remove_stale(root));
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

/// Remove the scratch folders left by killed processes: ours (by name) only, older than
/// [`STALE_AFTER`] and whose process is gone (or older than [`STALE_ANYWAY_AFTER`]). Only the
/// names of other entries are looked at.
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX)) else {
            continue;
        };
        let Some(age) = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
        else {
            continue;
        };
        if age <= STALE_AFTER {
            continue;
        }
        let owner_runs = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(process_runs);
        if !owner_runs || age > STALE_ANYWAY_AFTER {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Whether a process with id `pid` exists (`kill(pid, 0)`: only `ESRCH` says it does not).
fn process_runs(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; the call only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
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
            #[cfg(test)]
            if let Some(n) = FAIL_COPY_AFTER.with(|f| f.get()) {
                if made.iter().filter(|p| p.is_file()).count() >= n {
                    return Err(std::io::Error::other("injected copy failure"));
                }
            }
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
                // The file shrank under us: a short copy must not pass for a whole one.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} ended at {at} of {len} bytes", from.display()),
                ));
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

    /// Builds a small database: two folders, two files.
    fn build_small(p: &Path) -> Result<(), StorageError> {
        std::fs::create_dir(p).unwrap();
        std::fs::create_dir(p.join("sub")).unwrap();
        std::fs::write(p.join("a"), b"first").unwrap();
        std::fs::write(p.join("sub").join("b"), b"second").unwrap();
        Ok(())
    }

    /// Without a usable scratch root (missing, or a file), nothing is built or made at the
    /// destination and the caller is told to create in place.
    #[test]
    fn an_unusable_scratch_root_means_creation_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let file_root = dir.path().join("a-file");
        std::fs::write(&file_root, b"x").unwrap();
        for root in [dir.path().join("missing"), file_root] {
            let dest = dir.path().join("db");
            let mut built = false;
            let made = create_via_scratch(&root, &dest, |p| {
                built = true;
                build_small(p)
            })
            .unwrap();
            assert!(!made && !built, "{}", root.display());
            assert!(!dest.exists());
        }
    }

    /// A copy into place that fails part way leaves nothing at the destination (nor in the
    /// scratch root) and asks for the creation in place, instead of passing for a success.
    #[test]
    fn a_failed_copy_removes_the_partial_copy_and_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("scratch");
        std::fs::create_dir(&root).unwrap();
        for after in [0, 1] {
            let dest = dir.path().join(format!("db{after}"));
            FAIL_COPY_AFTER.with(|f| f.set(Some(after)));
            let made = create_via_scratch(&root, &dest, build_small);
            FAIL_COPY_AFTER.with(|f| f.set(None));
            assert!(!made.unwrap(), "failing after {after} files");
            assert!(!dest.exists(), "a partial copy was left");
            assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        }
        // Without the failure the same build is copied.
        let dest = dir.path().join("db");
        assert!(create_via_scratch(&root, &dest, build_small).unwrap());
        assert_eq!(
            std::fs::read(dest.join("sub").join("b")).unwrap(),
            b"second"
        );
    }

    /// Sets the modification time of `p` to `age` ago.
    fn age(p: &Path, age: Duration) {
        File::open(p)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
    }

    /// The stale scan removes the scratch folders of processes that are gone once they are
    /// older than STALE_AFTER, keeps those of running processes (unless older than a day),
    /// young ones, and everything not named as ours.
    #[test]
    fn stale_scratch_folders_of_killed_processes_are_removed_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        assert!(!process_runs(gone), "pid {gone} still runs");
        let me = std::process::id();
        let old = STALE_AFTER + Duration::from_secs(60);
        let cases = [
            (format!("{SCRATCH_PREFIX}{gone}-1-0"), old, false),
            (format!("{SCRATCH_PREFIX}{gone}-2-0"), Duration::ZERO, true),
            (format!("{SCRATCH_PREFIX}{me}-3-0"), old, true),
            (
                format!("{SCRATCH_PREFIX}{me}-4-0"),
                STALE_ANYWAY_AFTER + Duration::from_secs(60),
                false,
            ),
            (format!("other-{gone}-5-0"), old, true),
        ];
        for (name, a, _) in &cases {
            let p = root.path().join(name);
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("journal"), b"j").unwrap();
            age(&p, *a);
        }
        remove_stale(root.path());
        for (name, a, kept) in &cases {
            assert_eq!(
                root.path().join(name).exists(),
                *kept,
                "{name}, {} s old",
                a.as_secs()
            );
        }
    }
}
