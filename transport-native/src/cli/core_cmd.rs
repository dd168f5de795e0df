//! `hyperpunch core create|append|get|truncate|info|verify`: one hypercore in a
//! [`FileStorage`] folder (its layout: [`super::store`]).

use super::input::BlockSource;
use super::store::{
    core_err, open_core, restrict, storage_err, write_secret_file, ENCRYPTION_KEY_FILE,
};
use super::{parse_hex32, CliError};
use futures_executor::block_on;
use hyperpunch::crypto::KeyPair;
use hyperpunch::hypercore::core::{CreateOptions, Hypercore, HypercoreError};
use hyperpunch::FileStorage;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Upper bound on the bytes of one append batch (besides the block count).
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// `core create`: a new core with a key pair from `seed` (random without), printing its key.
pub fn create(
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

/// `core append`: blocks from `files` (one each) or stdin (lines, or `block_size` chunks).
pub fn append(
    dir: &Path,
    block_size: Option<u64>,
    batch: u64,
    files: Vec<PathBuf>,
) -> Result<(), CliError> {
    let mut core = open_core(dir)?;
    if let Some(c) = core.conflict() {
        let (length, fork) = (c.length, c.fork);
        return Err(core_err(dir, HypercoreError::Conflict { length, fork }));
    }
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

/// `core get`: block `index`, raw, on stdout.
pub fn get(dir: &Path, index: u64) -> Result<(), CliError> {
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

/// `core truncate`: drop the blocks from `length` on.
pub fn truncate(dir: &Path, length: u64) -> Result<(), CliError> {
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

/// `core info`: key, length, hashes (as JSON with `json`).
pub fn info(dir: &Path, json: bool) -> Result<(), CliError> {
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
            "conflict": core.conflict().map(|c| serde_json::json!({
                "length": c.length,
                "fork": c.fork,
            })),
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
        match core.conflict() {
            None => println!("conflict:       none"),
            Some(c) => println!(
                "conflict:       yes: a peer proved a conflicting signed tree at length {} (fork \
                 {}), so the writer forked; the core is frozen and refuses writes",
                c.length, c.fork
            ),
        }
    }
    Ok(())
}

/// `core verify`: check every block against the tree and the signature (exit 3 if corrupt).
pub fn verify(dir: &Path) -> Result<(), CliError> {
    let core = open_core(dir)?;
    block_on(core.verify_all()).map_err(|e| core_err(dir, e))?;
    eprintln!(
        "ok: {} blocks, {} bytes, signature valid",
        core.length(),
        core.byte_length()
    );
    Ok(())
}
