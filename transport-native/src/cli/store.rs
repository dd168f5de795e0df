//! The storage folder of one core, shared by the `core` commands ([`super::core_cmd`]) and by
//! `serve`/`fetch` ([`super::net_cmd`]): opening it, its secret files, and one-line errors.
//!
//! Layout of the storage folder DIR:
//! * the fjall database of [`FileStorage`] (the core's header, including its key pair's secret
//!   key, its blocks, tree nodes and bitfield: all written by [`Hypercore`]);
//! * `DIR/encryption-key` (mode 0600, 64 hex characters) for encrypted cores, because the core
//!   itself does not persist its encryption key (JS hypercore does not either).
//!
//! DIR is made mode 0700 when a core is created in it, since it holds the secret key.

use super::{parse_hex32, CliError};
use futures_executor::block_on;
use hyperpunch::hypercore::core::{Hypercore, HypercoreError, OpenOptions};
use hyperpunch::storage::StorageError;
use hyperpunch::FileStorage;
use std::io::Write;
use std::path::Path;

/// Name of the file holding an encrypted core's block encryption key.
pub const ENCRYPTION_KEY_FILE: &str = "encryption-key";

/// A one-line message for a storage error of the folder `dir`; corruption gets exit status 3.
pub fn storage_err(dir: &Path, e: StorageError) -> CliError {
    match e {
        StorageError::Unavailable(m) => {
            CliError::new(format!("cannot open {}: {m}", dir.display()))
        }
        StorageError::Io(m) => {
            CliError::new(format!("storage I/O error in {}: {m}", dir.display()))
        }
        StorageError::Corrupt(m) => {
            CliError::corrupt(format!("storage in {} is corrupt: {m}", dir.display()))
        }
    }
}

/// A one-line message for a core error; corruption-type errors get exit status 3.
pub fn core_err(dir: &Path, e: HypercoreError) -> CliError {
    use HypercoreError as E;
    match e {
        E::Storage(s) => storage_err(dir, s),
        E::NotFound => CliError::new(format!(
            "no core in {} (create one with `hyperpunch core create --storage {}`)",
            dir.display(),
            dir.display()
        )),
        E::AlreadyExists => CliError::new(format!("{} already holds a core", dir.display())),
        E::BlockMismatch(i) => CliError::corrupt(format!(
            "corrupt: block {i} does not match the merkle tree (its bytes were modified)"
        )),
        E::TreeMismatch => CliError::corrupt(
            "corrupt: the tree rebuilt from the blocks does not match the stored roots",
        ),
        E::InvalidSignature(v) => CliError::corrupt(format!(
            "corrupt: the signature does not match the tree ({v})"
        )),
        E::BlockNotAvailable(i) => {
            CliError::corrupt(format!("corrupt: block {i} is missing from storage"))
        }
        E::MissingNode(n) => CliError::corrupt(format!(
            "corrupt: merkle tree node {n} is missing from storage"
        )),
        e @ (E::Corrupt(_) | E::Decode(_) | E::Encryption(_)) => {
            CliError::corrupt(format!("corrupt: {e}"))
        }
        E::NotWritable => CliError::new(format!(
            "the core in {} has no secret key, so it cannot be written",
            dir.display()
        )),
        E::EncryptionKeyRequired => CliError::new(format!(
            "the core is encrypted but {} is missing",
            dir.join(ENCRYPTION_KEY_FILE).display()
        )),
        E::Conflict { length, fork } => CliError::new(format!(
            "the core in {} is frozen: a peer proved a conflicting signed tree at length \
             {length} (fork {fork}), so its writer forked; it refuses writes",
            dir.display()
        )),
        other => CliError::new(other.to_string()),
    }
}

/// Open the storage of an existing core, without creating the folder.
pub fn open_existing_storage(dir: &Path) -> Result<FileStorage, CliError> {
    if !dir.is_dir() {
        return Err(core_err(dir, HypercoreError::NotFound));
    }
    FileStorage::open(dir).map_err(|e| storage_err(dir, e))
}

/// The encryption key stored in `dir` (see [`ENCRYPTION_KEY_FILE`]), if the core is encrypted.
pub fn read_encryption_key(dir: &Path) -> Result<Option<[u8; 32]>, CliError> {
    let path = dir.join(ENCRYPTION_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => parse_hex32(&path.display().to_string(), &s).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::new(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Open the existing core in `dir` (with its encryption key, if any). A big append to it
/// hashes on two threads where the machine has two CPUs ([`hyperpunch::parallel::best_join`]).
pub fn open_core(dir: &Path) -> Result<Hypercore<FileStorage>, CliError> {
    let storage = open_existing_storage(dir)?;
    let encryption_key = read_encryption_key(dir)?;
    let mut core = block_on(Hypercore::open(
        storage,
        OpenOptions {
            encryption_key,
            key_pair: None,
        },
    ))
    .map_err(|e| core_err(dir, e))?;
    core.set_join(hyperpunch::parallel::best_join());
    Ok(core)
}

/// Set the Unix permission bits of `path` (nothing elsewhere).
#[cfg(unix)]
pub fn restrict(path: &Path, mode: u32) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| CliError::new(format!("cannot set permissions of {}: {e}", path.display())))
}

/// Set the Unix permission bits of `path` (nothing elsewhere).
#[cfg(not(unix))]
pub fn restrict(_path: &Path, _mode: u32) -> Result<(), CliError> {
    Ok(())
}

/// Create `path` (mode 0600; it must not exist yet) holding `contents`, synced to disk.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<(), CliError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::new(format!(
                "{} already exists: the folder already holds a core",
                path.display()
            ))
        } else {
            CliError::new(format!("cannot write {}: {e}", path.display()))
        }
    })?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))
}
