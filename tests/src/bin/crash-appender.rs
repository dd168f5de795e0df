//! Child process of the kill -9 crash test: appends to a FileStorage-backed hypercore forever,
//! printing each completed length on its own line (flushed) so the parent knows what was
//! acknowledged before it sends SIGKILL.
//!
//! Usage: `crash-appender DIR RNG_SEED [large|big]` (`large`: blocks of 64 KiB, appended 1 to 32
//! at a time, instead of small ones; `big`: small blocks, some appends of 8000 at once, batches
//! of over 1 MiB whose tree pages and block chunks the store puts in its data file). With `HP_CRASH_COMPACT_AT=N` in the environment, the store
//! is opened with `compact_journal_at` N (1: every open that finds a journal begins compacting it).

use futures_executor::block_on;
use hyperpunch::hypercore::core::{CreateOptions, Hypercore, HypercoreError, OpenOptions};
use hyperpunch::{FileStorage, FileStorageOptions};
use hyperpunch_tests::crash::{content, key_pair, Rng};
use std::io::Write;

fn main() {
    if let Err(e) = run() {
        eprintln!("crash-appender: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: crash-appender DIR RNG_SEED")?;
    let seed: u64 = args
        .next()
        .ok_or("usage: crash-appender DIR RNG_SEED")?
        .parse()
        .map_err(|e| format!("bad RNG_SEED: {e}"))?;
    let mode = args.next();
    let large = mode.as_deref() == Some("large");
    let big = mode.as_deref() == Some("big");
    let mut rng = Rng::new(seed);
    let mut options = FileStorageOptions::default();
    if let Ok(at) = std::env::var("HP_CRASH_COMPACT_AT") {
        options.compact_journal_at = at
            .parse()
            .map_err(|e| format!("bad HP_CRASH_COMPACT_AT: {e}"))?;
    }
    let storage = FileStorage::open_with(&dir, options).map_err(|e| e.to_string())?;
    let mut core = match block_on(Hypercore::open(storage.clone(), OpenOptions::default())) {
        Ok(c) => c,
        Err(HypercoreError::NotFound) => block_on(Hypercore::create(
            storage,
            CreateOptions {
                key_pair: Some(key_pair()),
                ..CreateOptions::default()
            },
        ))
        .map_err(|e| e.to_string())?,
        Err(e) => return Err(e.to_string()),
    };
    let mut out = std::io::stdout().lock();
    const SIZES: [u64; 6] = [1, 3, 20, 100, 500, 1000];
    const LARGE_SIZES: [u64; 4] = [1, 3, 16, 32];
    // 8000 blocks of ~160 bytes: 1.3 MB of blocks and 0.6 MB of tree pages, a big batch.
    const BIG_SIZES: [u64; 4] = [1, 20, 8000, 8000];
    loop {
        let n = if large {
            LARGE_SIZES[rng.below(LARGE_SIZES.len() as u64) as usize]
        } else if big {
            BIG_SIZES[rng.below(BIG_SIZES.len() as u64) as usize]
        } else {
            SIZES[rng.below(SIZES.len() as u64) as usize]
        };
        let start = core.length();
        let blocks: Vec<Vec<u8>> = (start..start + n).map(|i| content(i, large)).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        let done = block_on(core.append(&refs)).map_err(|e| e.to_string())?;
        writeln!(out, "{}", done.length)
            .and_then(|_| out.flush())
            .map_err(|e| e.to_string())?;
    }
}
