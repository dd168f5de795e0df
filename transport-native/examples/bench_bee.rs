//! The Rust half of the hyperbee benchmark (`bench/run.sh`): hyperpunch's hyperbee on
//! [`FileStorage`], the same work as `bench/js/bee.js`.
//!
//! ```sh
//! cargo run --release -p hyperpunch --example bench_bee -- compare
//! ```
//!
//! `BEE_SINGLE` / `BEE_BATCHED` set the number of single and batched puts (10000 / 100000);
//! `BEE_ONLY=get,scan` skips the other read phases (for profiling).
//! Prints one `BENCH <name> <value>` line per figure, which `bench/run.sh` parses.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use futures_executor::block_on;
use hyperpunch::core::hyperbee::{Binary, Hyperbee, RangeOptions, Utf8};
use hyperpunch::crypto::KeyPair;
use hyperpunch::hypercore::{CreateOptions, Hypercore};
use hyperpunch::FileStorage;

type Error = Box<dyn std::error::Error>;

const GETS: u64 = 20_000;
const RANGES: u64 = 200;

fn report(name: &str, value: f64) {
    println!("BENCH {name} {value:.3}");
}

/// CPU seconds this process (every thread, storage threads included) used so far, from
/// `/proc/self/stat` (Linux; clock ticks of 10 ms, so phases run for a second or more).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Run `f` (one pass of `n` operations) until at least `min` seconds passed; report the rate
/// per wall-clock second as `name` and per CPU second as `name`_cpu.
async fn phase<F, Fut>(name: &str, n: u64, min: f64, mut f: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    // BEE_ONLY=get,scan runs only the phases whose names contain one of these (for profiling;
    // the puts always run, as the others read what they wrote).
    if let Ok(only) = std::env::var("BEE_ONLY") {
        if !name.contains("put") && !only.split(',').any(|o| name.contains(o)) {
            return Ok(());
        }
    }
    let (t, c) = (Instant::now(), cpu_s());
    let mut done = 0u64;
    loop {
        f().await?;
        done += n;
        if t.elapsed().as_secs_f64() >= min {
            break;
        }
    }
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_s() - c);
    report(name, done as f64 / wall);
    report(
        &format!("{}_cpu_ops_s", name.trim_end_matches("_ops_s")),
        done as f64 / cpu.max(0.01),
    );
    Ok(())
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn compare() -> Result<(), Error> {
    let single = env("BEE_SINGLE", 10_000);
    let batched = env("BEE_BATCHED", 100_000);
    let dir = tempfile::tempdir()?;
    let core = Hypercore::create(
        FileStorage::open(dir.path())?,
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[3; 32])),
            ..CreateOptions::default()
        },
    )
    .await?
    .into_session();
    let db = Hyperbee::new(core.clone()).with_codecs(Utf8, Binary);
    let val = [1u8; 32];

    let dbr = &db;
    phase("bee_put_single_ops_s", single, 0.0, || async move {
        for i in 0..single {
            dbr.put(&format!("key-{:08}", (i * 7919) % single), &val)
                .await?;
        }
        Ok(())
    })
    .await?;
    phase("bee_put_batch_ops_s", batched, 0.0, || async move {
        for i in (0..batched).step_by(1000) {
            let mut b = dbr.batch();
            for j in i..i + 1000 {
                b.put(&format!("bkey-{:08}", (j * 7919) % batched), &val)
                    .await?;
            }
            b.flush().await?;
        }
        Ok(())
    })
    .await?;
    phase("bee_get_ops_s", GETS, 2.0, || async move {
        for i in 0..GETS {
            let k = format!("bkey-{:08}", (i * 104_729) % batched);
            dbr.get(&k).await?.ok_or("missing key")?;
        }
        Ok(())
    })
    .await?;
    phase("bee_scan_ops_s", single + batched, 2.0, || async move {
        let mut it = dbr.create_read_stream(Default::default());
        let mut n = 0u64;
        while let Some(e) = it.next().await? {
            n += u64::from(e.value.is_some_and(|v| !v.is_empty()));
        }
        assert_eq!(n, single + batched);
        Ok(())
    })
    .await?;
    phase("bee_range_ops_s", RANGES * 100, 2.0, || async move {
        let mut n = 0u64;
        for i in 0..RANGES {
            let gte = format!("bkey-{:08}", (i * 48_611) % (batched - 200));
            let mut it = dbr.create_read_stream(RangeOptions {
                gte: Some(&gte),
                limit: Some(100),
                ..Default::default()
            });
            while let Some(e) = it.next().await? {
                n += u64::from(e.seq > 0);
            }
        }
        assert_eq!(n, RANGES * 100);
        Ok(())
    })
    .await?;
    println!(
        "bee: {single} single puts, {batched} batched, {GETS} gets, scan {}, {RANGES} ranges of 100 (core length {})",
        single + batched,
        core.length().await
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    match std::env::args().nth(1).as_deref() {
        Some("compare") | None => block_on(compare()),
        Some(other) => Err(format!("unknown mode {other}; use compare").into()),
    }
}
