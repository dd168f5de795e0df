//! The Rust half of `just bench` (`bench/run.sh`): hyperpunch's hypercore on [`FileStorage`].
//!
//! ```sh
//! cargo run --release -p hyperpunch --example bench_hypercore -- compare    # same work as bench/js/append.js
//! cargo run --release -p hyperpunch --example bench_hypercore -- rust-only  # proofs, BLAKE2b, Ed25519
//! cargo run --release -p hyperpunch --example bench_hypercore -- rss        # peak RSS over a 1 GiB append
//! ```
//!
//! Besides human-readable lines it prints one `BENCH <name> <value>` line per figure, which
//! `bench/run.sh` parses (`rss` belongs in a process of its own: VmHWM is a process-wide peak).

// The allocator the `hyperpunch` binary uses (feature `mimalloc`, on by default).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::{Duration, Instant};

use futures_executor::block_on;
use hyperpunch::crypto::{hash, verify, KeyPair};
use hyperpunch::hypercore::messages::{Data, RequestBlock, RequestUpgrade};
use hyperpunch::hypercore::tree::leaf_hashes;
use hyperpunch::hypercore::verifier::signable;
use hyperpunch::hypercore::{CreateOptions, Hypercore, ProofRequest};
use hyperpunch::storage::{MemoryStorage, Storage};
use hyperpunch::FileStorage;

type Error = Box<dyn std::error::Error>;

fn report(name: &str, value: f64) {
    println!("BENCH {name} {value:.3}");
}

fn per_s(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn writer<S: Storage>(storage: S, seed: u8) -> Result<Hypercore<S>, Error> {
    Ok(Hypercore::create(
        storage,
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[seed; 32])),
            ..CreateOptions::default()
        },
    )
    .await?)
}

/// `bench/js/append.js`: for each (size, n, batch) a fresh core in a fresh folder, `n` blocks
/// filled with `i % 256` appended `batch` at a time, then every block read back one by one.
async fn compare() -> Result<(), Error> {
    // `compare SIZE` runs only the cases with that block size (for profiling one of them).
    let only: Option<usize> = std::env::args().nth(2).and_then(|a| a.parse().ok());
    for (size, n, batch) in [
        (64usize, 100_000usize, 1000usize),
        (4096, 20_000, 100),
        (64, 5000, 1),
    ] {
        if only.is_some_and(|o| o != size) {
            continue;
        }
        let dir = tempfile::tempdir()?;
        let mut core = writer(FileStorage::open(dir.path())?, 1).await?;
        let blocks: Vec<Vec<u8>> = (0..n).map(|i| vec![(i % 256) as u8; size]).collect();
        let t = Instant::now();
        for chunk in blocks.chunks(batch) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            core.append(&refs).await?;
        }
        let append = t.elapsed();
        let t = Instant::now();
        for i in 0..n as u64 {
            black_box(core.get(i).await?.ok_or("block missing")?);
        }
        let get = t.elapsed();
        assert_eq!(core.length(), n as u64);
        let tag = format!("{size}_{n}_{batch}");
        println!(
            "append size={size} n={n} batch={batch}: {} ms, {:.0} blocks/s, {:.1} MB/s; get all: {} ms, {:.0} gets/s",
            append.as_millis(),
            per_s(n as u64, append),
            per_s((n * size) as u64, append) / 1e6,
            get.as_millis(),
            per_s(n as u64, get)
        );
        report(&format!("append_{tag}_blocks_s"), per_s(n as u64, append));
        report(
            &format!("append_{tag}_mb_s"),
            per_s((n * size) as u64, append) / 1e6,
        );
        report(&format!("get_{tag}_gets_s"), per_s(n as u64, get));
    }
    Ok(())
}

/// splitmix64: a fixed, dependency-free sequence of "random" indexes.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// Proof generation and verification for random blocks of a 1M-block core (64 B blocks, on
/// FileStorage): each proof is `block i + upgrade 0..length` (what a new peer asks first), verified
/// by a fresh, empty reader (Merkle path, roots and the Ed25519 signature).
async fn proofs() -> Result<(), Error> {
    const LEN: u64 = 1 << 20;
    let dir = tempfile::tempdir()?;
    let mut core = writer(FileStorage::open(dir.path())?, 2).await?;
    let t = Instant::now();
    let mut i = 0u64;
    while i < LEN {
        let blocks: Vec<[u8; 64]> = (i..i + 1000)
            .take((LEN - i) as usize)
            .map(|b| [(b % 251) as u8; 64])
            .collect();
        let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
        core.append(&refs).await?;
        i += refs.len() as u64;
    }
    println!("built a {LEN}-block core in {} ms", t.elapsed().as_millis());

    let reader = Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key: Some(*core.key()),
            manifest: core.manifest().cloned(),
            ..CreateOptions::default()
        },
    )
    .await?;
    let mut rng = Rng(42);
    let n = 20_000;
    let mut proofs: Vec<Data> = Vec::with_capacity(n);
    let t = Instant::now();
    for _ in 0..n {
        let req = ProofRequest {
            block: Some(RequestBlock {
                index: rng.below(LEN),
                nodes: 0,
            }),
            upgrade: Some(RequestUpgrade {
                start: 0,
                length: LEN,
            }),
            ..ProofRequest::default()
        };
        proofs.push(core.proof(&req).await?);
    }
    let gen = t.elapsed();
    let t = Instant::now();
    for p in &proofs {
        black_box(reader.verify_proof(p).await?);
    }
    let ver = t.elapsed();
    println!(
        "{n} proofs (random block + upgrade 0..{LEN}): generate {:.0}/s, verify {:.0}/s",
        per_s(n as u64, gen),
        per_s(n as u64, ver)
    );
    report("proof_gen_per_s", per_s(n as u64, gen));
    report("proof_verify_per_s", per_s(n as u64, ver));
    Ok(())
}

/// BLAKE2b-256 of `size`-byte inputs for about `budget`: MB/s.
fn bench_blake2b(size: usize, budget: Duration) -> f64 {
    let input = vec![0x5au8; size];
    let mut acc = 0u8;
    let mut n = 0u64;
    let t = Instant::now();
    while t.elapsed() < budget {
        for _ in 0..256 {
            acc ^= hash(black_box(&input))[0];
        }
        n += 256;
    }
    black_box(acc);
    per_s(n * size as u64, t.elapsed()) / 1e6
}

/// Leaf hashes of batches of 100 blocks of 4 KiB (what a batched append hashes: eight blocks
/// at a time in AVX-512 lanes where the CPU has them) for about `budget`: MB/s.
fn bench_leaf_hashes(budget: Duration) -> f64 {
    let blocks: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 4096]).collect();
    let mut n = 0u64;
    let t = Instant::now();
    while t.elapsed() < budget {
        black_box(leaf_hashes(black_box(&blocks)));
        n += 100;
    }
    per_s(n * 4096, t.elapsed()) / 1e6
}

/// Ed25519 sign and verify of a 112-byte signable (what every append signs): (signs/s,
/// verifies/s), through the core's own `KeyPair::sign` and `crypto::verify`.
fn bench_ed25519(budget: Duration) -> (f64, f64) {
    let kp = KeyPair::from_seed(&[7u8; 32]);
    let msg = signable(&[1u8; 32], &[2u8; 32], 1000, 0);
    let mut sig = [0u8; 64];
    let (mut n, t) = (0u64, Instant::now());
    while t.elapsed() < budget {
        sig = kp.sign(black_box(&msg));
        n += 1;
    }
    let signs = per_s(n, t.elapsed());
    let (mut n, t) = (0u64, Instant::now());
    while t.elapsed() < budget {
        assert!(verify(black_box(&msg), &sig, &kp.public_key));
        n += 1;
    }
    (signs, per_s(n, t.elapsed()))
}

fn rust_only() -> Result<(), Error> {
    block_on(proofs())?;
    let budget = Duration::from_secs(1);
    for size in [64, 4096] {
        let mbs = bench_blake2b(size, budget);
        println!("BLAKE2b-256 {size} B: {mbs:.1} MB/s");
        report(&format!("blake2b_{size}_mb_s"), mbs);
    }
    let mbs = bench_leaf_hashes(budget);
    println!("BLAKE2b-256 leaf hashes, batches of 100 x 4 KiB: {mbs:.1} MB/s");
    report("blake2b_leaves_4096_mb_s", mbs);
    let (signs, verifies) = bench_ed25519(budget);
    println!("Ed25519: {signs:.0} signs/s, {verifies:.0} verifies/s");
    report("ed25519_sign_per_s", signs);
    report("ed25519_verify_per_s", verifies);
    Ok(())
}

/// `VmHWM` (peak resident set) of this process, in KiB.
fn vm_hwm_kib() -> Result<u64, Error> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("bad VmHWM line")?
        .parse()?)
}

/// Append 1 GiB of 4 KiB blocks (batches of 256) to a FileStorage core and report the peak RSS
/// before, after the first 256 MiB and at the end: memory must not grow with the log.
async fn rss() -> Result<(), Error> {
    const SIZE: usize = 4096;
    const BATCH: usize = 256;
    const TOTAL: u64 = 1 << 30;
    let dir = tempfile::tempdir()?;
    let mut core = writer(FileStorage::open(dir.path())?, 3).await?;
    let blocks: Vec<Vec<u8>> = (0..BATCH).map(|i| vec![i as u8; SIZE]).collect();
    let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
    let before = vm_hwm_kib()?;
    let mut quarter = 0;
    let t = Instant::now();
    while core.byte_length() < TOTAL {
        core.append(&refs).await?;
        if quarter == 0 && core.byte_length() >= TOTAL / 4 {
            quarter = vm_hwm_kib()?;
        }
    }
    let took = t.elapsed();
    let after = vm_hwm_kib()?;
    println!(
        "appended {} MiB ({} blocks of {SIZE} B) in {} ms ({:.1} MB/s); VmHWM before {before} KiB, \
         after 256 MiB {quarter} KiB, after 1 GiB {after} KiB",
        core.byte_length() >> 20,
        core.length(),
        took.as_millis(),
        per_s(core.byte_length(), took) / 1e6
    );
    report("rss_append_mb_s", per_s(core.byte_length(), took) / 1e6);
    report("rss_length", core.length() as f64);
    report("rss_vmhwm_before_kib", before as f64);
    report("rss_vmhwm_quarter_kib", quarter as f64);
    report("rss_vmhwm_after_kib", after as f64);
    Ok(())
}

/// The same 1 GiB of writes straight to [`FileStorage`] (one batch of 256 block puts per append,
/// no hypercore): tells the storage's share of the peak RSS from the engine's.
async fn rss_raw() -> Result<(), Error> {
    use hyperpunch::storage::Batch;
    const SIZE: usize = 4096;
    const BATCH: u64 = 256;
    const TOTAL: u64 = 1 << 30;
    let dir = tempfile::tempdir()?;
    let storage = FileStorage::open(dir.path())?;
    let before = vm_hwm_kib()?;
    let mut quarter = 0;
    let t = Instant::now();
    let mut index = 0u64;
    while index * SIZE as u64 <= TOTAL {
        let mut batch = Batch::new();
        for i in index..index + BATCH {
            let mut key = vec![1u8];
            key.extend_from_slice(&i.to_be_bytes());
            batch.put(key, vec![i as u8; SIZE]);
        }
        storage.write(batch).await?;
        index += BATCH;
        if quarter == 0 && index * SIZE as u64 >= TOTAL / 4 {
            quarter = vm_hwm_kib()?;
        }
    }
    let took = t.elapsed();
    let after = vm_hwm_kib()?;
    println!(
        "raw FileStorage: wrote {index} values of {SIZE} B in {} ms; VmHWM before {before} KiB, \
         after 256 MiB {quarter} KiB, after 1 GiB {after} KiB",
        took.as_millis()
    );
    report("rss_raw_vmhwm_quarter_kib", quarter as f64);
    report("rss_raw_vmhwm_after_kib", after as f64);
    Ok(())
}

fn main() -> Result<(), Error> {
    match std::env::args().nth(1).as_deref() {
        Some("compare") => block_on(compare()),
        Some("rust-only") => rust_only(),
        Some("rss") => block_on(rss()),
        Some("rss-raw") => block_on(rss_raw()),
        _ => Err("usage: bench_hypercore compare | rust-only | rss | rss-raw".into()),
    }
}
