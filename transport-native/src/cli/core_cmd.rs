//! `hyperpunch core ...`: one hypercore in a [`FileStorage`] folder.
//!
//! Layout of the storage folder DIR:
//! * the fjall database of [`FileStorage`] (the core's header, including its key pair's secret
//!   key, its blocks, tree nodes and bitfield: all written by [`Hypercore`]);
//! * `DIR/encryption-key` (mode 0600, 64 hex characters) for encrypted cores, because the core
//!   itself does not persist its encryption key (JS hypercore does not either).
//!
//! DIR is made mode 0700 on `create`, since it holds the secret key.

use super::args::CoreCommand;
use super::input::BlockSource;
use super::{parse_hex32, CliError};
use futures_executor::block_on;
use hyperpunch::crypto::KeyPair;
use hyperpunch::hypercore::core::{CreateOptions, Hypercore, HypercoreError, OpenOptions};
use hyperpunch::storage::StorageError;
use hyperpunch::FileStorage;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Name of the file holding an encrypted core's block encryption key.
pub const ENCRYPTION_KEY_FILE: &str = "encryption-key";
/// Upper bound on the bytes of one append batch (besides the block count).
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Run one `core` subcommand.
pub fn run(cmd: CoreCommand) -> Result<(), CliError> {
    match cmd {
        CoreCommand::Create {
            storage,
            seed,
            compat,
            encryption_key,
        } => create(
            &storage.storage,
            seed.as_deref(),
            compat,
            encryption_key.as_deref(),
        ),
        CoreCommand::Append {
            storage,
            block_size,
            batch,
            files,
        } => append(&storage.storage, block_size, batch, files),
        CoreCommand::Get { storage, index } => get(&storage.storage, index),
        CoreCommand::Truncate { storage, length } => truncate(&storage.storage, length),
        CoreCommand::Info { storage, json } => info(&storage.storage, json),
        CoreCommand::Verify { storage } => verify(&storage.storage),
        CoreCommand::Serve(args) => super::net_cmd::serve(&args),
        CoreCommand::Fetch(args) => super::net_cmd::fetch(&args),
    }
}

pub(super) fn storage_err(dir: &Path, e: StorageError) -> CliError {
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
pub(super) fn core_err(dir: &Path, e: HypercoreError) -> CliError {
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
        other => CliError::new(other.to_string()),
    }
}

/// Open the storage of an existing core, without creating the folder.
fn open_existing_storage(dir: &Path) -> Result<FileStorage, CliError> {
    if !dir.is_dir() {
        return Err(core_err(dir, HypercoreError::NotFound));
    }
    FileStorage::open(dir).map_err(|e| storage_err(dir, e))
}

pub(super) fn read_encryption_key(dir: &Path) -> Result<Option<[u8; 32]>, CliError> {
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

pub(super) fn open_core(dir: &Path) -> Result<Hypercore<FileStorage>, CliError> {
    let storage = open_existing_storage(dir)?;
    let encryption_key = read_encryption_key(dir)?;
    block_on(Hypercore::open(
        storage,
        OpenOptions {
            encryption_key,
            key_pair: None,
        },
    ))
    .map_err(|e| core_err(dir, e))
}

#[cfg(unix)]
pub(super) fn restrict(path: &Path, mode: u32) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| CliError::new(format!("cannot set permissions of {}: {e}", path.display())))
}

#[cfg(not(unix))]
pub(super) fn restrict(_path: &Path, _mode: u32) -> Result<(), CliError> {
    Ok(())
}

pub(super) fn write_secret_file(path: &Path, contents: &str) -> Result<(), CliError> {
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

fn create(
    dir: &Path,
    seed: Option<&str>,
    compat: bool,
    encryption_key: Option<&str>,
) -> Result<(), CliError> {
    let seed = match seed {
        Some(s) => parse_hex32("--seed", s)?,
        None => {
            let mut s = [0u8; 32];
            getrandom::fill(&mut s).map_err(|e| {
                CliError::new(format!(
                    "cannot get randomness from the operating system: {e}"
                ))
            })?;
            s
        }
    };
    let encryption_key = encryption_key
        .map(|s| parse_hex32("--encryption-key", s))
        .transpose()?;
    let key_pair = KeyPair::from_seed(&seed);

    let storage = FileStorage::open(dir).map_err(|e| storage_err(dir, e))?;
    restrict(dir, 0o700)?;
    let key_file = dir.join(ENCRYPTION_KEY_FILE);
    if let Some(ek) = &encryption_key {
        write_secret_file(&key_file, &hex::encode(ek))?;
    }
    let created = block_on(Hypercore::create(
        storage,
        CreateOptions {
            key_pair: Some(key_pair),
            compat,
            encryption_key,
            ..CreateOptions::default()
        },
    ));
    let core = match created {
        Ok(c) => c,
        Err(e) => {
            if encryption_key.is_some() && !matches!(e, HypercoreError::AlreadyExists) {
                let _ = std::fs::remove_file(&key_file);
            }
            return Err(core_err(dir, e));
        }
    };
    core.storage().sync().map_err(|e| storage_err(dir, e))?;
    println!("{}", hex::encode(core.key()));
    Ok(())
}

fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    let style = match len {
        Some(_) => ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        ),
        None => ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec})"),
    };
    if let Ok(style) = style {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

fn append(
    dir: &Path,
    block_size: Option<u64>,
    batch: u64,
    files: Vec<PathBuf>,
) -> Result<(), CliError> {
    let mut core = open_core(dir)?;
    let stdin = std::io::stdin();
    let (mut source, pb) = if files.is_empty() {
        let lock = stdin.lock();
        let src = match block_size {
            Some(n) => BlockSource::Chunks(lock, n as usize),
            None => BlockSource::Lines(lock),
        };
        (src, progress(None, "appending stdin"))
    } else {
        let mut total = 0u64;
        for f in &files {
            let m = std::fs::metadata(f)
                .map_err(|e| CliError::new(format!("cannot read {}: {e}", f.display())))?;
            if !m.is_file() {
                return Err(CliError::new(format!("{} is not a file", f.display())));
            }
            total += m.len();
        }
        (
            BlockSource::Files(files.into_iter()),
            progress(Some(total), "appending files"),
        )
    };
    let max_blocks = usize::try_from(batch).unwrap_or(usize::MAX);
    loop {
        let blocks = source
            .next_batch(max_blocks, MAX_BATCH_BYTES)
            .map_err(|e| CliError::new(e.0))?;
        if blocks.is_empty() {
            break;
        }
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        let bytes: u64 = blocks.iter().map(|b| b.len() as u64).sum();
        block_on(core.append(&refs)).map_err(|e| core_err(dir, e))?;
        pb.inc(bytes);
    }
    pb.finish_and_clear();
    // One fsync per command: what the CLI reports also survives power loss.
    core.storage().sync().map_err(|e| storage_err(dir, e))?;
    println!("{}", core.length());
    Ok(())
}

fn get(dir: &Path, index: u64) -> Result<(), CliError> {
    let core = open_core(dir)?;
    let block = match block_on(core.get(index)) {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err(CliError::new(format!(
                "block {index} is not stored locally"
            )))
        }
        Err(HypercoreError::OutOfBounds { index, length }) => {
            return Err(CliError::new(format!(
                "no block {index}: the core has {length} block{}",
                if length == 1 { "" } else { "s" }
            )))
        }
        Err(e) => return Err(core_err(dir, e)),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&block)
        .and_then(|_| out.flush())
        .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")))
}

fn truncate(dir: &Path, length: u64) -> Result<(), CliError> {
    let mut core = open_core(dir)?;
    match block_on(core.truncate(length, None)) {
        Ok(()) => {}
        Err(HypercoreError::OutOfBounds { length: have, .. }) => {
            return Err(CliError::new(format!(
                "cannot truncate to {length}: the core only has {have} blocks"
            )))
        }
        Err(e) => return Err(core_err(dir, e)),
    }
    core.storage().sync().map_err(|e| storage_err(dir, e))?;
    println!("{}", core.length());
    Ok(())
}

fn info(dir: &Path, json: bool) -> Result<(), CliError> {
    let core = open_core(dir)?;
    let key = hex::encode(core.key());
    let dkey = hex::encode(core.discovery_key());
    let tree_hash = hex::encode(core.tree_hash());
    let signature = hex::encode(core.signature());
    if json {
        let v = serde_json::json!({
            "key": key,
            "discoveryKey": dkey,
            "length": core.length(),
            "byteLength": core.byte_length(),
            "fork": core.fork(),
            "treeHash": tree_hash,
            "signature": signature,
            "compat": core.is_compat(),
            "encrypted": core.encrypted(),
            "writable": core.writable(),
        });
        println!("{v}");
    } else {
        let yn = |b: bool| if b { "yes" } else { "no" };
        println!("key:            {key}");
        println!("discovery key:  {dkey}");
        println!("length:         {} blocks", core.length());
        println!("byte length:    {} bytes", core.byte_length());
        println!("fork:           {}", core.fork());
        println!("tree hash:      {tree_hash}");
        println!(
            "signature:      {}",
            if signature.is_empty() {
                "(none: empty core)"
            } else {
                &signature
            }
        );
        println!("compat:         {}", yn(core.is_compat()));
        println!("encrypted:      {}", yn(core.encrypted()));
        println!("writable:       {}", yn(core.writable()));
    }
    Ok(())
}

fn verify(dir: &Path) -> Result<(), CliError> {
    let core = open_core(dir)?;
    block_on(core.verify_all()).map_err(|e| core_err(dir, e))?;
    eprintln!(
        "ok: {} blocks, {} bytes, signature valid",
        core.length(),
        core.byte_length()
    );
    Ok(())
}
