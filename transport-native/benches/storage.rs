//! Storage backend benchmark: fjall (LSM) vs redb (B-tree) behind the same `Storage` trait.
//!
//! Run with `cargo bench -p hyperpunch --bench storage` (set `HP_BENCH_SCALE=N` to multiply the
//! sizes). Every candidate is configured so that a completed `write` survives `kill -9`:
//! fjall flushes its journal to the OS on each batch, redb needs `Durability::Immediate`
//! (an fsync per commit), because its `Durability::None` commits are not recovered after a
//! crash. Variants that are not kill-9 safe, or that add power-loss safety, are printed for
//! reference and marked.
//!
//! The numbers and the decision are in `transport-native/STORAGE.md`.

use futures_executor::block_on;
use hyperpunch::storage::{Batch, Entries, Op, Storage, StorageError};
use hyperpunch::{Durability, FileStorage, FileStorageOptions};
use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

use redb::ReadableDatabase;

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");

/// redb behind the `Storage` trait, as `FileStorage` would be if redb were chosen.
struct RedbStorage {
    db: redb::Database,
    durability: redb::Durability,
}

fn io<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Io(e.to_string())
}

impl RedbStorage {
    fn open(dir: &Path, durability: redb::Durability) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let db = redb::Database::create(dir.join("data.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(TABLE).unwrap();
        tx.commit().unwrap();
        RedbStorage { db, durability }
    }
}

impl Storage for RedbStorage {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(TABLE).map_err(io)?;
        Ok(t.get(key).map_err(io)?.map(|v| v.value().to_vec()))
    }
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(TABLE).map_err(io)?;
        keys.iter()
            .map(|k| Ok(t.get(k.as_slice()).map_err(io)?.map(|v| v.value().to_vec())))
            .collect()
    }
    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> Result<Entries, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(TABLE).map_err(io)?;
        let mut out = Vec::new();
        for r in t
            .range::<&[u8]>((Bound::Included(start), Bound::Excluded(end)))
            .map_err(io)?
            .take(limit.unwrap_or(usize::MAX))
        {
            let (k, v) = r.map_err(io)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
    async fn write(&self, batch: Batch) -> Result<(), StorageError> {
        let mut tx = self.db.begin_write().map_err(io)?;
        tx.set_durability(self.durability).map_err(io)?;
        {
            let mut t = tx.open_table(TABLE).map_err(io)?;
            for op in batch.ops.into_iter().map(Op::joined) {
                let op = &op;
                match op {
                    Op::Put(k, v) => {
                        t.insert(k.as_slice(), v.as_slice()).map_err(io)?;
                    }
                    Op::PutParts(..) => {} // joined above
                    Op::Delete(k) => {
                        t.remove(k.as_slice()).map_err(io)?;
                    }
                    Op::DeleteRange(s, e) => {
                        if s < e {
                            t.retain_in::<&[u8], _>(
                                (Bound::Included(s.as_slice()), Bound::Excluded(e.as_slice())),
                                |_, _| false,
                            )
                            .map_err(io)?;
                        }
                    }
                }
            }
        }
        tx.commit().map_err(io)
    }
}

fn key(tag: u8, i: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(tag);
    k.extend_from_slice(&i.to_be_bytes());
    k
}

fn value(len: usize, seed: u64) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8)
        .collect()
}

struct Results {
    append: Duration,
    big: Duration,
    single: Duration,
    gets: Duration,
    get_many: Duration,
    blocks: u64,
    big_batches: u64,
    singles: u64,
    keys: u64,
}

/// Hypercore-append-like batches: per block one 64-byte block value and ~2 41-byte tree nodes.
fn run<S: Storage>(s: &S, pct: u64) -> Results {
    let blocks = 1000 * pct;
    let per_batch = 1000;
    let t = Instant::now();
    let mut tree_i = 0u64;
    for start in (0..blocks).step_by(per_batch as usize) {
        let mut b = Batch::new();
        for i in start..(start + per_batch).min(blocks) {
            b.put(key(b'b', i), value(64, i));
            // A flat tree of n leaves has ~2n nodes: two new nodes per block on average.
            for _ in 0..2 {
                b.put(key(b't', tree_i), value(41, tree_i));
                tree_i += 1;
            }
        }
        block_on(s.write(b)).unwrap();
    }
    let append = t.elapsed();

    let big_batches = (20 * pct / 100).max(1);
    let t = Instant::now();
    for j in 0..big_batches {
        let mut b = Batch::new();
        for i in 0..100 {
            b.put(key(b'x', j * 100 + i), value(4096, i));
        }
        block_on(s.write(b)).unwrap();
    }
    let big = t.elapsed();

    let singles = 50 * pct;
    let t = Instant::now();
    for i in 0..singles {
        let mut b = Batch::new();
        b.put(key(b's', i), value(64, i));
        block_on(s.write(b)).unwrap();
    }
    let single = t.elapsed();

    let mut all: Vec<Vec<u8>> = Vec::new();
    all.extend((0..blocks).map(|i| key(b'b', i)));
    all.extend((0..tree_i).map(|i| key(b't', i)));
    all.extend((0..big_batches * 100).map(|i| key(b'x', i)));
    all.extend((0..singles).map(|i| key(b's', i)));
    let t = Instant::now();
    for k in &all {
        assert!(block_on(s.get(k)).unwrap().is_some());
    }
    let gets = t.elapsed();
    let t = Instant::now();
    for chunk in all.chunks(64) {
        let got = block_on(s.get_many(chunk)).unwrap();
        assert!(got.iter().all(Option::is_some));
    }
    let get_many = t.elapsed();
    Results {
        append,
        big,
        single,
        gets,
        get_many,
        blocks,
        big_batches,
        singles,
        keys: all.len() as u64,
    }
}

fn report(name: &str, r: &Results) {
    let per = |d: Duration, n: u64| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "| {name} | {:.0} ms ({:.2} µs/block) | {:.0} ms ({:.0} µs/batch) | {:.0} ms ({:.1} µs/write) | {:.0} ms ({:.2} µs/get) | {:.0} ms ({:.2} µs/key) |",
        r.append.as_secs_f64() * 1e3,
        per(r.append, r.blocks),
        r.big.as_secs_f64() * 1e3,
        per(r.big, r.big_batches),
        r.single.as_secs_f64() * 1e3,
        per(r.single, r.singles),
        r.gets.as_secs_f64() * 1e3,
        per(r.gets, r.keys),
        r.get_many.as_secs_f64() * 1e3,
        per(r.get_many, r.keys),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not: then run a 1% smoke
    // test so the benchmark code is still exercised without slowing the test suite.
    let benching = std::env::args().any(|a| a == "--bench");
    let scale: u64 = std::env::var("HP_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let pct = if benching { 100 * scale } else { 1 };
    let filter = std::env::var("HP_BENCH_ONLY").unwrap_or_default();
    let root = tempfile::tempdir_in(
        std::env::var("HP_BENCH_DIR")
            .unwrap_or_else(|_| std::env::temp_dir().to_string_lossy().into_owned()),
    )
    .unwrap();
    println!(
        "{pct}% scale: {} blocks in batches of 1000 (+2 tree nodes each), {} × (100 × 4 KiB), {} single puts, then every key read by get and get_many(64)",
        1000 * pct,
        (20 * pct / 100).max(1),
        50 * pct
    );
    println!("| backend | append 1000-block batches | 100 × 4 KiB batches | single-put batches | point gets | get_many(64) |");
    println!("|---|---|---|---|---|---|");
    let want = |n: &str| filter.is_empty() || filter.split(',').any(|f| f == n);
    if want("fjall") {
        let s = FileStorage::open(root.path().join("fjall")).unwrap();
        report("fjall, Buffer (kill-9 safe)", &run(&s, pct));
    }
    if want("redb") {
        let s = RedbStorage::open(&root.path().join("redb"), redb::Durability::Immediate);
        report("redb, Immediate (kill-9 safe, fsync)", &run(&s, pct));
    }
    if want("fjall-sync") {
        let s = FileStorage::open_with(
            root.path().join("fjall-sync"),
            FileStorageOptions {
                durability: Durability::Sync,
                ..FileStorageOptions::default()
            },
        )
        .unwrap();
        report("fjall, SyncData (power-loss safe)", &run(&s, pct));
    }
    if want("redb-none") {
        let s = RedbStorage::open(&root.path().join("redb-none"), redb::Durability::None);
        report("redb, None (NOT crash safe)", &run(&s, pct));
    }
}
