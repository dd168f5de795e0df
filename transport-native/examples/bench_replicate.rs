//! Replication benchmarks for `just bench` (`bench/run.sh`): hyperpunch's [`replicate`] pump
//! with secret-stream, against the same work in JS (`bench/js/replicate.js`,
//! `bench/js/replicate-tcp.js`).
//!
//! ```sh
//! bench_replicate compare                # two peers in one process over an in-memory duplex,
//!                                        # 25k x 4 KiB (same work as bench/js/replicate.js)
//! bench_replicate compare-mem            # the same on MemoryStorage (the storage's share)
//! bench_replicate compare-1t             # compare with both peers on one thread
//! bench_replicate compare-mem-1t         # compare-mem with both peers on one thread
//! bench_replicate ceiling                # secret-stream encrypt / decrypt and BLAKE2b, 64 KiB
//! bench_replicate tcp TAG MIB            # two processes over TCP loopback: a core of MIB MiB in
//!                                        # 64 KiB blocks, served by one child, fetched by another
//! bench_replicate make DIR MIB           # write such a core into DIR, print its key
//! bench_replicate serve TAG DIR          # serve the core in DIR to one TCP client, then exit
//! bench_replicate fetch TAG DIR KEY ADDR BLOCKS  # download BLOCKS blocks of KEY from ADDR into DIR
//! ```
//!
//! `HP_INFLIGHT=N` sets the reader's `Options::max_inflight`, `HP_INFLIGHT_BYTES=N` its
//! `Options::inflight_bytes` (to try other request windows).
//!
//! Besides human-readable lines every figure is printed as one `BENCH <name> <value>` line,
//! which `bench/run.sh` parses. CPU seconds and peak RSS come from `/proc/self` of the process
//! doing the work (serve and fetch run in processes of their own).

// The allocator the `hyperpunch` binary uses (feature `mimalloc`, on by default).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperpunch::core::replication::{Event, HubEvent, Options, ReplicationHub, Replicator};
use hyperpunch::core::secretstream::{
    Entropy, Event as StreamEvent, Options as StreamOptions, SecretStream,
};
use hyperpunch::crypto::KeyPair;
use hyperpunch::hypercore::tree::leaf_hashes;
use hyperpunch::hypercore::{CreateOptions, Hypercore, OpenOptions};
use hyperpunch::replicate::{replicate, SharedHub};
use hyperpunch::storage::{Batch, Entries, MemoryStorage, Storage, StorageError};
use hyperpunch::FileStorage;
use tokio::net::{TcpListener, TcpStream};

type Error = Box<dyn std::error::Error>;

/// Block size of the TCP benchmarks.
const TCP_BLOCK: usize = 64 * 1024;
/// Buffer of the in-memory duplex between the two in-process peers.
const DUPLEX_BUF: usize = 256 * 1024;
/// Any run longer than this is a hang.
const DEADLINE: Duration = Duration::from_secs(600);

fn report(name: &str, value: f64) {
    println!("BENCH {name} {value:.3}");
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// User + system CPU seconds of this process (`/proc/self/stat`, in USER_HZ = 100 ticks).
fn cpu_seconds() -> Result<f64, Error> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').ok_or("malformed /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, Error> {
        Ok(fields
            .get(i)
            .ok_or("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Peak resident set size of this process so far (`VmHWM`), in KiB.
fn vm_hwm_kib() -> Result<u64, Error> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmHWM")?
        .parse()?)
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// tokio's default multi-thread runtime (one worker per CPU), as `#[tokio::main]` builds it.
fn threaded_runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn random_key_pair() -> Result<KeyPair, Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
    Ok(KeyPair::from_seed(&seed))
}

/// A [`Storage`] that adds up the time spent in each kind of call (the breakdown of `compare`).
#[derive(Clone, Default)]
struct Timed<S> {
    inner: S,
    stats: Arc<[AtomicU64; 6]>,
}

impl<S> Timed<S> {
    fn new(inner: S) -> Self {
        Timed {
            inner,
            stats: Arc::default(),
        }
    }

    async fn time<T>(&self, slot: usize, f: impl Future<Output = T>) -> T {
        let t = Instant::now();
        let out = f.await;
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats[2 * slot].fetch_add(ns, Ordering::Relaxed);
        self.stats[2 * slot + 1].fetch_add(1, Ordering::Relaxed);
        out
    }

    /// `(seconds, calls)` in reads (get, get_many, scan) and in writes.
    fn totals(&self) -> [(f64, u64); 2] {
        let get = |i: usize| self.stats[i].load(Ordering::Relaxed);
        let reads_ns = get(0) + get(2);
        [
            (reads_ns as f64 / 1e9, get(1) + get(3)),
            (get(4) as f64 / 1e9, get(5)),
        ]
    }
}

impl<S: Storage> Storage for Timed<S> {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.time(0, self.inner.get(key)).await
    }
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        self.time(0, self.inner.get_many(keys)).await
    }
    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> Result<Entries, StorageError> {
        self.time(1, self.inner.scan(start, end, limit)).await
    }
    async fn write(&self, batch: Batch) -> Result<(), StorageError> {
        self.time(2, self.inner.write(batch)).await
    }
}

/// A writer core in `dir` holding `n` blocks of `size` bytes, block `i` filled with `i % 256`,
/// appended `batch` at a time.
async fn make_core<S: Storage>(
    storage: S,
    n: usize,
    size: usize,
    batch: usize,
) -> Result<Hypercore<S>, Error> {
    let mut core = Hypercore::create(
        storage,
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[7; 32])),
            ..CreateOptions::default()
        },
    )
    .await?;
    let mut i = 0;
    while i < n {
        let blocks: Vec<Vec<u8>> = (i..(i + batch).min(n))
            .map(|b| vec![(b % 256) as u8; size])
            .collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        core.append(&refs).await?;
        i += refs.len();
    }
    Ok(core)
}

/// An empty reader core for `key`.
async fn reader_core<S: Storage>(storage: S, key: [u8; 32]) -> Result<Hypercore<S>, Error> {
    Ok(Hypercore::create(
        storage,
        CreateOptions {
            key: Some(key),
            ..CreateOptions::default()
        },
    )
    .await?)
}

/// Waits until the hub reports the bounded download as complete; calls `on_block` with the
/// number of blocks received so far after each one.
async fn wait_downloaded(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<HubEvent>,
    mut on_block: impl FnMut(u64),
) -> Result<(), Error> {
    let mut blocks = 0u64;
    loop {
        match events.recv().await {
            Some(HubEvent::Core { event, .. }) => match event {
                Event::Downloaded { .. } => return Ok(()),
                Event::Block { .. } => {
                    blocks += 1;
                    on_block(blocks);
                }
                Event::InvalidData { error, .. } => {
                    return Err(format!("the peer sent data that does not verify: {error}").into())
                }
                _ => {}
            },
            Some(HubEvent::StreamClosed { error, .. }) => {
                return Err(format!("the replication stream failed: {error}").into())
            }
            Some(_) => {}
            None => return Err("the replication hub stopped".into()),
        }
    }
}

/// `bench/js/replicate.js`: a writer with 25k x 4 KiB blocks (appended 1000 at a time) and an
/// empty reader, both on FileStorage, replicating over an in-memory duplex with secret-stream,
/// timed from the start of the handshake to the last block verified and stored.
/// `in_memory`: the same on [`MemoryStorage`] (the share of the storage, for the breakdown).
///
/// `threaded`: on tokio's default multi-thread runtime (what `#[tokio::main]` builds, one
/// worker per CPU), each peer's connection a task of its own (whose messages are applied on
/// another task, see `hyperpunch::replicate`); otherwise everything runs on one thread.
async fn compare(in_memory: bool, threaded: bool) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let suffix = if threaded { "" } else { "_1t" };
    if in_memory {
        let (w, r) = (MemoryStorage::new(), MemoryStorage::new());
        let tag = format!("repl_inproc_mem{suffix}");
        in_process(Timed::new(w), Timed::new(r), &tag, threaded).await
    } else {
        let w = FileStorage::open(dir.path().join("a"))?;
        let r = FileStorage::open(dir.path().join("b"))?;
        let tag = format!("repl_inproc{suffix}");
        in_process(Timed::new(w), Timed::new(r), &tag, threaded).await
    }
}

async fn in_process<S: Storage + Clone + 'static>(
    ws: Timed<S>,
    rs: Timed<S>,
    tag: &str,
    threaded: bool,
) -> Result<(), Error> {
    let (n, size) = (25_000usize, 4096usize);
    let writer = make_core(ws.clone(), n, size, 1000).await?;
    let reader = reader_core(rs.clone(), *writer.key()).await?;
    let w0 = ws.totals();

    let mut wh = ReplicationHub::new();
    wh.add_core(Replicator::new(writer, Options::default()))?;
    let wh = SharedHub::new(wh);
    let mut rh = ReplicationHub::new();
    let dk = rh.add_core(Replicator::new(reader, reader_options()))?;
    let (rh, mut events) = SharedHub::with_events(rh);

    let cpu0 = cpu_seconds()?;
    let t = Instant::now();
    {
        let now = rh.now();
        let mut g = rh.lock().await;
        let rep = g.replicator_mut(&dk).ok_or("reader core missing")?;
        rep.download(now, 0, Some(n as u64)).await?;
    }
    let (a, b) = tokio::io::duplex(DUPLEX_BUF);
    let (wh2, rh2) = (wh.clone(), rh.clone());
    let serve = async move { replicate(a, false, KeyPair::from_seed(&[1; 32]), &wh2).await };
    let fetch = async move { replicate(b, true, KeyPair::from_seed(&[2; 32]), &rh2).await };
    let wait = async {
        wait_downloaded(&mut events, |_| {}).await?;
        let elapsed = t.elapsed();
        rh.end_all().await;
        Ok::<_, Error>(elapsed)
    };
    let (s, f, w) = if threaded {
        // Each peer's connection a task of its own on the multi-thread runtime.
        let (serve, fetch) = (tokio::spawn(serve), tokio::spawn(fetch));
        let all = async { tokio::join!(serve, fetch, wait) };
        let (s, f, w) = tokio::time::timeout(DEADLINE, all)
            .await
            .map_err(|_| "replication did not finish in time")?;
        (s?, f?, w)
    } else {
        let all = async { tokio::join!(serve, fetch, wait) };
        tokio::time::timeout(DEADLINE, all)
            .await
            .map_err(|_| "replication did not finish in time")?
    };
    let elapsed = w?;
    let cpu = cpu_seconds()? - cpu0;
    let (w1, r1) = (ws.totals(), rs.totals());
    s?;
    f?;
    let g = rh.lock().await;
    let core = g.replicator(&dk).ok_or("reader core missing")?.core();
    if core.contiguous_length() != n as u64 {
        return Err(format!("reader holds {} of {n} blocks", core.contiguous_length()).into());
    }
    let bytes = (n * size) as u64;
    println!(
        "replicate (secret-stream, in-process, {tag}) {n} x {size}B: {} ms, {:.1} MB/s, {:.0} blocks/s, {cpu:.2} CPU s",
        elapsed.as_millis(),
        mb_s(bytes, elapsed),
        n as f64 / elapsed.as_secs_f64()
    );
    report(&format!("{tag}_mb_s"), mb_s(bytes, elapsed));
    report(&format!("{tag}_blocks_s"), n as f64 / elapsed.as_secs_f64());
    report(&format!("{tag}_cpu_s"), cpu);
    // Where the time went: storage calls of each side (the rest is protocol, crypto, pump).
    let serve_reads = w1[0].0 - w0[0].0;
    let (fetch_reads, fetch_writes) = (r1[0].0, r1[1].0);
    println!(
        "  of the {:.2} s: writer's storage reads {serve_reads:.2} s ({} calls), reader's storage \
         reads {fetch_reads:.2} s ({} calls) and writes {fetch_writes:.2} s ({} calls)",
        elapsed.as_secs_f64(),
        w1[0].1 - w0[0].1,
        r1[0].1,
        r1[1].1
    );
    report(&format!("{tag}_serve_storage_read_s"), serve_reads);
    report(&format!("{tag}_fetch_storage_read_s"), fetch_reads);
    report(&format!("{tag}_fetch_storage_write_s"), fetch_writes);
    Ok(())
}

/// Secret-stream encryption and decryption of 64 KiB messages (one direction of an in-memory
/// stream pair, each side timed apart) and BLAKE2b-256 of 64 KiB blocks: the work a replicated
/// block costs at the least (the sender encrypts, the reader decrypts and hashes).
fn ceiling() -> Result<(), Error> {
    let mut a = SecretStream::new_initiator(
        KeyPair::from_seed(&[1; 32]),
        Entropy::from_bytes(&[3; 64]),
        StreamOptions::default(),
        0,
    )?;
    let mut b = SecretStream::new_responder(
        KeyPair::from_seed(&[2; 32]),
        Entropy::from_bytes(&[4; 64]),
        StreamOptions::default(),
        0,
    )?;
    // Handshake.
    for _ in 0..8 {
        while let Some(bytes) = a.poll_transmit() {
            b.handle_input(0, &bytes);
        }
        while let Some(bytes) = b.poll_transmit() {
            a.handle_input(0, &bytes);
        }
    }
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
    if !a.is_connected() || !b.is_connected() {
        return Err("in-memory secret-stream handshake did not complete".into());
    }
    let msg = vec![0x5au8; TCP_BLOCK];
    let rounds = 8192usize; // 512 MiB
    let (mut enc, mut dec) = (Duration::ZERO, Duration::ZERO);
    let mut received = 0usize;
    for _ in 0..rounds {
        let t = Instant::now();
        a.write(&msg)?;
        let mut wire = Vec::new();
        while let Some(bytes) = a.poll_transmit() {
            wire.push(bytes);
        }
        let t2 = Instant::now();
        enc += t2 - t;
        for bytes in &wire {
            b.handle_input(0, bytes);
        }
        while let Some(ev) = b.poll_event() {
            if let StreamEvent::Message(m) = ev {
                received += m.len();
            }
        }
        dec += t2.elapsed();
    }
    if received != rounds * msg.len() {
        return Err(format!("received {received} of {} bytes", rounds * msg.len()).into());
    }
    let bytes = (rounds * msg.len()) as u64;
    // BLAKE2b as the reader runs it: leaf hashes of the blocks of a batch at once (eight at a
    // time in AVX-512 lanes where the CPU has them).
    // The batch is built before the clock starts: only the hashing is timed.
    let batch: Vec<Vec<u8>> = (0..8u8)
        .map(|j| {
            let mut block = msg.clone();
            block[0] = j;
            block
        })
        .collect();
    let t = Instant::now();
    for _ in (0..rounds).step_by(batch.len()) {
        std::hint::black_box(leaf_hashes(std::hint::black_box(&batch)));
    }
    let blake = t.elapsed();
    let (enc_mb_s, dec_mb_s, blake_mb_s) = (mb_s(bytes, enc), mb_s(bytes, dec), mb_s(bytes, blake));
    // The reader decrypts and hashes every block on one thread: its ceiling bounds the pipeline.
    let reader_ceiling = 1.0 / (1.0 / dec_mb_s + 1.0 / blake_mb_s);
    let gib = (1u64 << 30) as f64 / 1e6;
    let cpu_per_gib = gib / enc_mb_s + gib / dec_mb_s + gib / blake_mb_s;
    println!(
        "ceiling, 64 KiB: secret-stream encrypt {enc_mb_s:.0} MB/s, decrypt {dec_mb_s:.0} MB/s, BLAKE2b {blake_mb_s:.0} MB/s; \
         reader (decrypt + hash) {reader_ceiling:.0} MB/s; {cpu_per_gib:.2} CPU s per GiB for both sides"
    );
    report("ceiling_encrypt_mb_s", enc_mb_s);
    report("ceiling_decrypt_mb_s", dec_mb_s);
    report("ceiling_blake2b_mb_s", blake_mb_s);
    report("ceiling_reader_mb_s", reader_ceiling);
    report("ceiling_cpu_s_per_gib", cpu_per_gib);
    Ok(())
}

/// `make DIR MIB`: a core of MIB MiB in 64 KiB blocks; prints `key HEX`.
async fn make(dir: &Path, mib: usize) -> Result<(), Error> {
    let n = mib * 1024 * 1024 / TCP_BLOCK;
    let core = make_core(FileStorage::open(dir)?, n, TCP_BLOCK, 16).await?;
    core.storage().sync()?;
    println!("key {}", hex::encode(core.key()));
    Ok(())
}

/// `serve TAG DIR`: serve the core in DIR to the first TCP client on 127.0.0.1; exit when that
/// connection closes. Prints `listening HOST:PORT`, then the CPU seconds spent serving.
async fn serve(tag: &str, dir: &Path) -> Result<(), Error> {
    let core = Hypercore::open(FileStorage::open(dir)?, OpenOptions::default()).await?;
    let mut hub = ReplicationHub::new();
    hub.add_core(Replicator::new(core, Options::default()))?;
    let hub = SharedHub::new(hub);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    let (socket, _) = tokio::time::timeout(DEADLINE, listener.accept())
        .await
        .map_err(|_| "no client came")??;
    socket.set_nodelay(true)?;
    let cpu0 = cpu_seconds()?;
    tokio::time::timeout(DEADLINE, replicate(socket, false, random_key_pair()?, &hub))
        .await
        .map_err(|_| "serving did not finish in time")??;
    let cpu = cpu_seconds()? - cpu0;
    println!("served: {cpu:.2} CPU s, peak RSS {} KiB", vm_hwm_kib()?);
    report(&format!("{tag}_server_cpu_s"), cpu);
    Ok(())
}

/// `fetch TAG DIR KEY ADDR BLOCKS`: download blocks `0..BLOCKS` of KEY from ADDR into a new
/// reader core in DIR; timed from the TCP connect to the last block verified and stored.
async fn fetch(tag: &str, dir: &Path, key: &str, addr: &str, blocks: u64) -> Result<(), Error> {
    let key: [u8; 32] = hex::decode(key)?
        .try_into()
        .map_err(|_| "the key must be 32 bytes")?;
    let storage = Timed::new(FileStorage::open(dir)?);
    let core = reader_core(storage.clone(), key).await?;
    let mut hub = ReplicationHub::new();
    let dk = hub.add_core(Replicator::new(core, Options::default()))?;
    let (hub, mut events) = SharedHub::with_events(hub);
    let hwm_start = vm_hwm_kib()?;
    let cpu0 = cpu_seconds()?;
    let t = Instant::now();
    {
        let now = hub.now();
        let mut g = hub.lock().await;
        let rep = g.replicator_mut(&dk).ok_or("reader core missing")?;
        rep.download(now, 0, Some(blocks)).await?;
    }
    let socket = TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    let conn = replicate(socket, true, random_key_pair()?, &hub);
    let mut hwm_quarter = None;
    let wait = async {
        wait_downloaded(&mut events, |got| {
            if got == blocks / 4 {
                hwm_quarter = vm_hwm_kib().ok();
            }
        })
        .await?;
        let elapsed = t.elapsed();
        hub.end_all().await;
        Ok::<_, Error>(elapsed)
    };
    let all = async { tokio::join!(conn, wait) };
    let (c, w) = tokio::time::timeout(DEADLINE, all)
        .await
        .map_err(|_| "fetch did not finish in time")?;
    let elapsed = w?;
    let cpu = cpu_seconds()? - cpu0;
    c?;
    let hwm_end = vm_hwm_kib()?;
    let [(read_s, reads), (write_s, writes)] = storage.totals();
    println!(
        "  storage: reads {read_s:.2} s ({reads} calls), writes {write_s:.2} s ({writes} calls)"
    );
    report(&format!("{tag}_reader_storage_read_s"), read_s);
    report(&format!("{tag}_reader_storage_write_s"), write_s);
    let g = hub.lock().await;
    let core = g.replicator(&dk).ok_or("reader core missing")?.core();
    if core.contiguous_length() < blocks {
        return Err(format!("fetched {} of {blocks} blocks", core.contiguous_length()).into());
    }
    let bytes = core.byte_length();
    let gib = bytes as f64 / (1u64 << 30) as f64;
    println!(
        "fetched {blocks} blocks, {bytes} bytes over TCP: {} ms, {:.1} MB/s, {cpu:.2} CPU s ({:.2} per GiB), peak RSS {hwm_end} KiB",
        elapsed.as_millis(),
        mb_s(bytes, elapsed),
        cpu / gib
    );
    report(&format!("{tag}_mb_s"), mb_s(bytes, elapsed));
    report(&format!("{tag}_reader_cpu_s"), cpu);
    report(&format!("{tag}_reader_cpu_s_per_gib"), cpu / gib);
    report(&format!("{tag}_reader_vmhwm_start_kib"), hwm_start as f64);
    if let Some(q) = hwm_quarter {
        report(&format!("{tag}_reader_vmhwm_quarter_kib"), q as f64);
    }
    report(&format!("{tag}_reader_vmhwm_end_kib"), hwm_end as f64);
    Ok(())
}

/// Runs this example again as a child with `args`, stdout piped.
fn child(args: &[&str]) -> Result<std::process::Child, Error> {
    Ok(Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()?)
}

/// `tcp TAG MIB`: make a core of MIB MiB, serve it from one child process and fetch it in
/// another over TCP loopback; forwards both children's figures, adds the server's CPU per GiB.
fn tcp(tag: &str, mib: usize) -> Result<(), Error> {
    let root = tempfile::tempdir()?;
    let (src, dst): (PathBuf, PathBuf) = (root.path().join("src"), root.path().join("dst"));
    let src_s = src.to_str().ok_or("temporary path is not UTF-8")?;
    let dst_s = dst.to_str().ok_or("temporary path is not UTF-8")?;
    let t = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .args(["make", src_s, &mib.to_string()])
        .output()?;
    if !out.status.success() {
        return Err("making the source core failed".into());
    }
    let key = String::from_utf8(out.stdout)?
        .lines()
        .find_map(|l| l.strip_prefix("key ").map(str::to_string))
        .ok_or("make printed no key")?;
    eprintln!(
        "made a {mib} MiB core of 64 KiB blocks in {} ms",
        t.elapsed().as_millis()
    );

    let mut server = child(&["serve", tag, src_s])?;
    let mut server_out = BufReader::new(server.stdout.take().ok_or("no server stdout")?);
    let mut line = String::new();
    server_out.read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .ok_or_else(|| format!("unexpected server output: {line:?}"))?
        .to_string();
    let blocks = (mib * 1024 * 1024 / TCP_BLOCK).to_string();
    let fetcher = Command::new(std::env::current_exe()?)
        .args(["fetch", tag, dst_s, &key, &addr, &blocks])
        .status()?;
    let mut rest = String::new();
    for l in server_out.lines() {
        let l = l?;
        println!("{l}");
        rest.push_str(&l);
        rest.push('\n');
    }
    let served = server.wait()?;
    if !fetcher.success() || !served.success() {
        return Err(format!("fetch: {fetcher}, serve: {served}").into());
    }
    let cpu: f64 = rest
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("BENCH {tag}_server_cpu_s "))
                .and_then(|v| v.parse().ok())
        })
        .ok_or("the server reported no CPU time")?;
    report(
        &format!("{tag}_server_cpu_s_per_gib"),
        cpu / (mib as f64 / 1024.0),
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["compare"] => threaded_runtime()?.block_on(compare(false, true)),
        ["compare-mem"] => threaded_runtime()?.block_on(compare(true, true)),
        ["compare-1t"] => runtime()?.block_on(compare(false, false)),
        ["compare-mem-1t"] => runtime()?.block_on(compare(true, false)),
        ["ceiling"] => ceiling(),
        ["tcp", tag, mib] => tcp(tag, mib.parse()?),
        ["make", dir, mib] => runtime()?.block_on(make(Path::new(dir), mib.parse()?)),
        ["serve", tag, dir] => threaded_runtime()?.block_on(serve(tag, Path::new(dir))),
        ["fetch", tag, dir, key, addr, blocks] => {
            threaded_runtime()?.block_on(fetch(tag, Path::new(dir), key, addr, blocks.parse()?))
        }
        _ => Err(
            "usage: bench_replicate compare | compare-mem | compare-1t | compare-mem-1t | ceiling | tcp TAG MIB | make DIR MIB | \
                  serve TAG DIR | fetch TAG DIR KEY ADDR BLOCKS"
                .into(),
        ),
    }
}

/// Replicator options of the reader (`HP_INFLIGHT` overrides the request window, for experiments).
fn reader_options() -> Options {
    let mut o = Options::default();
    if let Some(n) = std::env::var("HP_INFLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        o.max_inflight = n;
    }
    if let Some(n) = std::env::var("HP_INFLIGHT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        o.inflight_bytes = n;
    }
    o
}
