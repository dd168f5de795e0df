//! The Rust half of the autobase benchmark (`bench/autobase.sh`): the sans-IO engine
//! (`hyperpunch::core::autobase`) with every member's cores in a [`Corestore`] on a
//! [`FileStorage`] of its own (a temporary folder), members replicated in one process over
//! secret-stream on in-memory duplexes ([`replicate`]), each connected to the room's creator
//! (a star): the same work as `bench/js/autobase.js`, with the apply function of `hyperpunch chat`
//! (JSON `{"type":"add","key"}` adds a writer, `{"type":"message","text"}` appends
//! `{"from","text"}` to the view `messages`). The creator is the only indexer and acks.
//!
//! ```sh
//! cargo run --release -p hyperpunch --example bench_autobase -- writers 3
//! cargo run --release -p hyperpunch --example bench_autobase -- catchup 100000
//! ```
//!
//! `writers W`: the creator adds W-1 writers (not timed), then every member appends
//! `AUTOBASE_APPENDS`/W messages (default 1000 in all) one at a time, each a signed append to its
//! oplog core on disk; the clock stops when every member's view holds them all as indexed.
//! `catchup N`: the creator appends N messages in batches of 1000 (not timed); a new reader
//! connects, downloads every oplog block, linearizes and applies them; timed until its indexed
//! view holds the N messages.
//! `ffread PORT BOOTSTRAP N`: a new reader of a JS creator's base (`bench/js/autobase.js serve
//! N`) over TCP fast-forwards (`hyperpunch::autobase_ff`): the system core at its signed length,
//! the view length from its info, then only the oplog entries past it; timed from the connect
//! until its indexed view holds the N messages (the view's blocks stay in the JS view core, as
//! a JS reader's do until read).
//! `serve N`: a hyperpunch creator (the only indexer) appends N messages in batches of 1000 and
//! writes the system core and the view as JS does, signed (`hyperpunch::autobase_index`), serves
//! its corestore on 127.0.0.1 and prints `SERVE <port> <bootstrap>`; it runs until its stdin
//! closes. `bench/autobase.sh` points both `ffread`s (JS and hyperpunch) at it.
//! What differs from JS: the views and the system live in memory (rebuilt from the oplogs on
//! open); JS also writes them as hypercores (the view and the system hyperbee) to RocksDB.
//! Prints `BENCH <name> <value>` lines, which `bench/autobase.sh` parses.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperpunch::core::autobase::{ApplyNode, Autobase, Host, Views};
use hyperpunch::core::corestore::{CoreHandle, Corestore, GetOptions, PrimaryKey};
use hyperpunch::core::crypto::KeyPair;
use hyperpunch::core::encoding::Encode;
use hyperpunch::replicate::{replicate, SharedCorestore};
use hyperpunch::FileStorage;
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;
type ChatApply = fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>);

fn report(name: &str, value: f64) {
    println!("BENCH {name} {value:.3}");
}

/// CPU seconds this process (every thread) used so far (`getrusage`, microseconds).
fn cpu_s() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The apply function of `hyperpunch chat`.
use hyperpunch::chat::apply as chat_apply;

/// One member: its store, the engine and the cores it reads (as `hyperpunch chat` keeps them).
struct Member {
    store: SharedCorestore<FileStorage>,
    base: Autobase<ChatApply>,
    local: [u8; 32],
    local_handle: CoreHandle,
    cores: Vec<([u8; 32], CoreHandle)>,
    _dir: tempfile::TempDir,
}

impl Member {
    async fn open(room: Option<[u8; 32]>, seed: u8) -> Result<Member, Error> {
        let dir = tempfile::Builder::new().prefix("hp-abbench-").tempdir()?;
        let storage = FileStorage::open(dir.path())?;
        let mut store = Corestore::open(storage, PrimaryKey::StoredOrNew([seed; 32])).await?;
        let local_handle = store.get(GetOptions::named("local")).await?;
        let local = *local_handle.key();
        let room = room.unwrap_or(local);
        let boot = store.get(GetOptions::from_key(room)).await?;
        if let Ok(r) = store.replicator_mut(&boot) {
            let _ = r.download(0, 0, None).await;
        }
        let mut cores = vec![(room, boot)];
        if room != local {
            cores.push((local, store.get(GetOptions::named("local")).await?));
        }
        let f: ChatApply = chat_apply;
        let mut base = Autobase::new(room, f);
        base.open_view("messages");
        Ok(Member {
            store: SharedCorestore::new(store),
            base,
            local,
            local_handle,
            cores,
            _dir: dir,
        })
    }

    /// Feed the engine every block the store holds that it has not seen, open (and download)
    /// the cores of the writers it wants, linearize and apply (`Room::sync` of the chat).
    async fn sync(&mut self) -> Result<(), Error> {
        let mut s = self.store.lock().await;
        let now = self.store.now();
        loop {
            let mut fed = false;
            for (k, h) in &self.cores {
                let core = s.core(h)?;
                let have = core.contiguous_length();
                while self.base.oplog_len(k) < have {
                    let seq = self.base.oplog_len(k);
                    let Ok(Some(block)) = core.get(seq).await else {
                        break;
                    };
                    if self.base.handle_block(k, seq, &block).is_err() {
                        break;
                    }
                    fed = true;
                }
            }
            self.base.update();
            let mut opened = false;
            for (k, _) in self.base.wanted() {
                if self.cores.iter().any(|(c, _)| *c == k) {
                    continue;
                }
                let h = s.get(GetOptions::from_key(k)).await?;
                if let Ok(r) = s.replicator_mut(&h) {
                    let _ = r.download(now, 0, None).await;
                }
                self.cores.push((k, h));
                opened = true;
            }
            if !fed && !opened {
                return Ok(());
            }
        }
    }

    /// Append `values` as one batch (or an ack when `ack`): false when the engine refused.
    async fn write(&mut self, values: Vec<Vec<u8>>, ack: bool) -> Result<bool, Error> {
        let msgs = if ack {
            self.base.ack(&self.local)
        } else {
            self.base.append(&self.local, values)
        };
        let Some(msgs) = msgs else { return Ok(false) };
        let blocks: Vec<Vec<u8>> = msgs.iter().map(Encode::to_bytes).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        let mut s = self.store.lock().await;
        let now = self.store.now();
        s.append(now, &self.local_handle, &refs).await?;
        drop(s);
        self.base.update();
        Ok(true)
    }

    fn indexed_messages(&mut self) -> usize {
        let view = self.base.open_view("messages");
        self.base.indexed_view_lengths()[view]
    }
}

/// Replicate `a` (initiator) and `b` over an in-memory duplex, secret-stream on top.
fn connect(a: &SharedCorestore<FileStorage>, b: &SharedCorestore<FileStorage>, n: u8) {
    let (x, y) = tokio::io::duplex(1 << 20);
    let (a, b) = (a.clone(), b.clone());
    tokio::spawn(async move {
        let _ = replicate(x, true, KeyPair::from_seed(&[200 + n; 32]), &a).await;
    });
    tokio::spawn(async move {
        let _ = replicate(y, false, KeyPair::from_seed(&[100 + n; 32]), &b).await;
    });
}

/// Wait for the member's store to change (blocks downloaded, peers), at most `ms`.
async fn changed(store: &SharedCorestore<FileStorage>, ms: u64) {
    let _ = tokio::time::timeout(Duration::from_millis(ms), store.changed().notified()).await;
}

fn message(i: usize, k: usize) -> Vec<u8> {
    json!({ "type": "message", "text": format!("w{i} m{k}") })
        .to_string()
        .into_bytes()
}

async fn writers(w: usize) -> Result<(), Error> {
    let appends: usize = std::env::var("AUTOBASE_APPENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut members = vec![Member::open(None, 1).await?];
    let room = members[0].local;
    for i in 1..w {
        members.push(Member::open(Some(room), 1 + i as u8).await?);
    }
    let adds: Vec<Vec<u8>> = members[1..]
        .iter()
        .map(|m| {
            json!({ "type": "add", "key": hex::encode(m.local) })
                .to_string()
                .into_bytes()
        })
        .collect();
    if !adds.is_empty() {
        members[0].sync().await?;
        members[0].write(adds, false).await?;
    }
    for i in 1..w {
        connect(&members[0].store, &members[i].store, i as u8);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut all = true;
        for m in &mut members {
            m.sync().await?;
            if m.base.is_indexer(&m.local) {
                m.write(Vec::new(), true).await?;
            }
            all &= m.base.is_writable(&m.local);
        }
        if all {
            break;
        }
        if Instant::now() > deadline {
            return Err("the writers did not become writable in 120 s".into());
        }
        changed(&members[0].store, 5).await;
    }

    let per = appends / w;
    let total = per * w;
    let done = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let c = cpu_s();
    let mut tasks = Vec::new();
    for (i, mut m) in members.into_iter().enumerate() {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut written = 0;
            let mut finished = false;
            let indexer = i == 0;
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                m.sync().await?;
                let mut progressed = false;
                if written < per && m.write(vec![message(i, written)], false).await? {
                    written += 1;
                    progressed = true;
                }
                if indexer && m.write(Vec::new(), true).await? {
                    progressed = true;
                }
                if !finished && written == per && m.indexed_messages() >= total {
                    finished = true;
                    done.fetch_add(1, Ordering::SeqCst);
                }
                if done.load(Ordering::SeqCst) == w {
                    return Ok::<Member, Error>(m);
                }
                if Instant::now() > deadline {
                    return Err("no convergence in 600 s".into());
                }
                if !progressed {
                    changed(&m.store, 5).await;
                }
            }
        }));
    }
    let mut members = Vec::new();
    for task in tasks {
        members.push(task.await??);
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_s() - c;
    // Every member shows the same messages in the same order.
    let view = members[0].base.open_view("messages");
    let first = members[0].base.views().blocks(view)[..total].to_vec();
    for m in &mut members {
        let v = m.base.open_view("messages");
        if m.base.views().blocks(v)[..total] != first[..] {
            return Err("members disagree on the order".into());
        }
    }
    report(&format!("autobase_w{w}_appends_s"), total as f64 / wall);
    report(
        &format!("autobase_w{w}_cpu_appends_s"),
        total as f64 / cpu.max(0.01),
    );
    Ok(())
}

async fn catchup(n: usize) -> Result<(), Error> {
    let mut creator = Member::open(None, 1).await?;
    creator.sync().await?;
    let mut k = 0;
    while k < n {
        let end = n.min(k + 1000);
        let batch = (k..end)
            .map(|j| {
                json!({ "type": "message", "text": format!("m{j}") })
                    .to_string()
                    .into_bytes()
            })
            .collect();
        if !creator.write(batch, false).await? {
            return Err("the creator could not append".into());
        }
        k = end;
    }
    creator.sync().await?;
    if creator.indexed_messages() != n {
        return Err(format!("the creator indexed {} of {n}", creator.indexed_messages()).into());
    }
    let mut reader = Member::open(Some(creator.local), 2).await?;
    let t = Instant::now();
    let c = cpu_s();
    connect(&creator.store, &reader.store, 1);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        reader.sync().await?;
        if reader.indexed_messages() >= n {
            break;
        }
        if Instant::now() > deadline {
            return Err("the reader did not catch up in 600 s".into());
        }
        changed(&reader.store, 5).await;
    }
    report("autobase_catchup_s", t.elapsed().as_secs_f64());
    report("autobase_catchup_cpu_s", cpu_s() - c);
    Ok(())
}

/// A new reader of a JS creator's base (bench/js/autobase.js `serve`) over TCP, fast-forwarding:
/// the clock runs from the connect until the view holds `n` messages as indexed.
async fn ffread(port: u16, bootstrap: [u8; 32], n: usize) -> Result<(), Error> {
    use hyperpunch::autobase_ff::read_fast_forward;
    let dir = tempfile::Builder::new().prefix("hp-abbench-").tempdir()?;
    let storage = FileStorage::open(dir.path())?;
    let store = Corestore::open(storage, PrimaryKey::StoredOrNew([3; 32])).await?;
    let store = SharedCorestore::new(store);
    let t = Instant::now();
    let c = cpu_s();
    let socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let conn = tokio::spawn({
        let store = store.clone();
        async move { replicate(socket, true, KeyPair::from_seed(&[4; 32]), &store).await }
    });
    let f: ChatApply = chat_apply;
    let mut base = Autobase::new(bootstrap, f);
    let ff = read_fast_forward(&store, bootstrap, &["messages"], Duration::from_secs(60)).await?;
    base.fast_forward(ff.system_length, &ff.info, &ff.members, &ff.view_lengths());
    let view = base.open_view("messages");
    let mut cores: Vec<([u8; 32], CoreHandle)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while base.indexed_view_lengths()[view] < n {
        if Instant::now() > deadline {
            return Err("the reader did not catch up in 600 s".into());
        }
        {
            let mut s = store.lock().await;
            let now = store.now();
            for (k, from) in base.wanted() {
                if cores.iter().any(|(c, _)| *c == k) {
                    continue;
                }
                let h = s.get(GetOptions::from_key(k)).await?;
                s.replicator_mut(&h)?.download(now, from, None).await?;
                cores.push((k, h));
            }
            for (k, h) in &cores {
                let core = s.core(h)?;
                loop {
                    let seq = base.oplog_len(k);
                    if seq >= core.length() || !core.has(seq) {
                        break;
                    }
                    let Some(block) = core.get(seq).await? else {
                        break;
                    };
                    base.handle_block(k, seq, &block)?;
                }
            }
        }
        base.update();
        if base.indexed_view_lengths()[view] < n {
            changed(&store, 5).await;
        }
    }
    report("autobase_ff_tcp_s", t.elapsed().as_secs_f64());
    report("autobase_ff_tcp_cpu_s", cpu_s() - c);
    conn.abort();
    Ok(())
}

/// A hyperpunch creator of `n` messages whose indexer writes and signs the system core and the
/// view, serving them over TCP until stdin closes.
async fn serve(n: usize) -> Result<(), Error> {
    use hyperpunch::autobase_index::IndexerCores;
    let dir = tempfile::Builder::new().prefix("hp-abbench-").tempdir()?;
    let storage = FileStorage::open(dir.path())?;
    let mut store = Corestore::open(storage, PrimaryKey::StoredOrNew([5; 32])).await?;
    let local_h = store.get(GetOptions::named("local")).await?;
    let local = *local_h.key();
    let (kp, entropy) = {
        let c = store.core(&local_h)?;
        let kp = c.key_pair().ok_or("no key pair")?.clone();
        let ns = c.manifest().ok_or("no manifest")?.signers[0].namespace;
        (kp, ns)
    };
    let store = SharedCorestore::new(store);
    let f: ChatApply = chat_apply;
    let mut base = Autobase::new(local, f);
    base.record_system();
    let view = base.open_view("messages");
    let mut cores = IndexerCores::new(local, kp, entropy, &["messages"]).await?;
    let mut k = 0;
    while k < n {
        let end = n.min(k + 1000);
        let batch = (k..end)
            .map(|j| {
                json!({ "type": "message", "text": format!("m{j}") })
                    .to_string()
                    .into_bytes()
            })
            .collect();
        let mut msgs = base
            .append(&local, batch)
            .ok_or("the creator could not append")?;
        base.update();
        let mut s = store.lock().await;
        let now = store.now();
        cores.sync(&mut s, now, &mut base).await?;
        let len = s.core(&local_h)?.length();
        cores.stamp(&mut msgs, len);
        let blocks: Vec<Vec<u8>> = msgs.iter().map(Encode::to_bytes).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        s.append(now, &local_h, &refs).await?;
        k = end;
    }
    if base.indexed_view_lengths()[view] != n {
        return Err("the creator did not index every message".into());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn({
        let store = store.clone();
        async move {
            let mut i = 0u8;
            while let Ok((socket, _)) = listener.accept().await {
                i = i.wrapping_add(1);
                let store = store.clone();
                tokio::spawn(async move {
                    let _ =
                        replicate(socket, false, KeyPair::from_seed(&[0x60 ^ i; 32]), &store).await;
                });
            }
        }
    });
    println!("SERVE {port} {}", hex::encode(local));
    use std::io::Write;
    std::io::stdout().flush()?;
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await??;
    server.abort();
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).and_then(|v| v.parse::<usize>().ok());
    match (args.first().map(String::as_str), arg(1)) {
        (Some("writers"), Some(w)) if (1..=50).contains(&w) => writers(w).await,
        (Some("catchup"), Some(n)) => catchup(n).await,
        (Some("serve"), Some(n)) => serve(n).await,
        (Some("ffread"), Some(port)) => {
            let boot = args.get(2).and_then(|b| hex::decode(b).ok());
            let boot: [u8; 32] = boot
                .and_then(|b| b.try_into().ok())
                .ok_or("ffread PORT BOOTSTRAP N: a 32-byte hex key")?;
            let n = arg(3).ok_or("ffread PORT BOOTSTRAP N")?;
            ffread(u16::try_from(port)?, boot, n).await
        }
        _ => Err(
            "usage: bench_autobase writers W | catchup N | serve N | ffread PORT BOOTSTRAP N"
                .into(),
        ),
    }
}
