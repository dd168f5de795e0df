//! `hyperpunch core serve` and `hyperpunch core fetch`: replication over TCP with
//! [`hyperpunch::replicate`] on a single-threaded tokio runtime.

use super::args::{FetchArgs, ServeArgs, SwarmArgs};
use super::input::BlockSource;
use super::store::{
    core_err, open_core, read_encryption_key, restrict, storage_err, write_secret_file,
    ENCRYPTION_KEY_FILE,
};
use super::{parse_hex32, timing, CliError};
use hyperpunch::core::replication::{
    Event, HubEvent, Options, ReplicationError, ReplicationHost, ReplicationHub, Replicator,
};
use hyperpunch::core::secretstream::Options as StreamOptions;
use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::DhtOptions;
use hyperpunch::hypercore::core::{CreateOptions, Hypercore, HypercoreError};
use hyperpunch::replicate::{replicate_connection, replicate_with, SharedHost, SharedHub};
use hyperpunch::swarm::{JoinOptions, Swarm, SwarmOptions};
use hyperpunch::FileStorage;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long `fetch` waits for the TCP connection to be made.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `--swarm` waits for the DHT bootstrap.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `fetch` waits for the peer to confirm the close after everything arrived.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// `fetch` sends an empty message after this long without writing, so that a server's idle
/// timeout only drops stalled clients.
const KEEP_ALIVE_MS: u64 = 1000;
/// `serve --live`: blocks per append at most (whatever stdin already has, up to this).
const LIVE_BATCH_BLOCKS: usize = 1000;
/// `serve --live`: bytes per append at most (unless one block is larger).
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// `serve --live`: about how many bytes read from stdin may wait for their append.
const MAX_LIVE_QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// tokio's multi-thread runtime (a worker per CPU): each connection's pump and the task that
/// verifies and stores what it reads run in parallel.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))
}

/// A fresh static key pair for the secret-stream handshake.
fn random_key_pair() -> Result<KeyPair, CliError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| {
        CliError::new(format!(
            "cannot get randomness from the operating system: {e}"
        ))
    })?;
    Ok(KeyPair::from_seed(&seed))
}

/// A [`ReplicationError`] of the local core, as a CLI error.
fn replication_err(dir: &Path, e: ReplicationError) -> CliError {
    match e {
        ReplicationError::Core(e) => core_err(dir, e),
        other => CliError::new(format!("replication failed: {other}")),
    }
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) must not stop the server or the download.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// `core serve`: seed the core to every client of `--tcp`, until killed; with `--live`, append
/// stdin meanwhile.
pub fn serve(args: &ServeArgs) -> Result<(), CliError> {
    let dir = args.storage.storage.as_path();
    let core = open_core(dir)?;
    if args.live && !core.writable() {
        return Err(CliError::new(format!(
            "--live appends to the core, but the core in {} has no secret key (it is a copy \
             made by `fetch`?)",
            dir.display()
        )));
    }
    let key_pair = random_key_pair()?;
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(
            core,
            // It only seeds: its `sync` says it is not downloading (JS `isDownloading`).
            // With `--push`, appends go to readers that accept pushes without being asked.
            Options {
                downloading: false,
                push: args.push,
                ..Options::default()
            },
        ))
        .map_err(|e| CliError::new(format!("cannot replicate the core: {e}")))?;
    let hub = SharedHub::new(hub);
    runtime()?.block_on(async move {
        // Held while serving: dropping it would stop the swarm.
        let mut _swarm = None;
        if args.swarm.swarm {
            let swarm = start_swarm(&args.swarm).await?;
            let discovery = swarm
                .join(
                    dk,
                    JoinOptions {
                        client: false,
                        ..JoinOptions::default()
                    },
                )
                .await;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(swarm_serve_loop(swarm, hub.clone(), stopped));
            if !discovery.flushed().await {
                return Err(CliError::new(
                    "announcing the core on the DHT failed: check --bootstrap and that the \
                     bootstrap nodes run",
                ));
            }
            print_line(&format!("announced {}", hex::encode(dk)));
            _swarm = Some((discovery, stop));
        } else {
            let addr = args.tcp.as_deref().unwrap_or_default();
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| CliError::new(format!("cannot listen on {addr}: {e}")))?;
            let local = listener
                .local_addr()
                .map_err(|e| CliError::new(format!("cannot listen on {addr}: {e}")))?;
            print_line(&format!("listening on {local}"));
            let idle_ms = args.idle_timeout.saturating_mul(1000);
            let opts = StreamOptions {
                timeout: idle_ms,
                // Keep healthy clients' own timeouts from firing while nothing else is sent.
                keep_alive: idle_ms / 4,
                ..StreamOptions::default()
            };
            tokio::spawn(accept_loop(listener, hub.clone(), key_pair, opts));
        }
        if args.live {
            append_stdin(dir, &hub, &dk, args.block_size).await?;
        }
        std::future::pending::<Result<(), CliError>>().await
    })
}

/// A swarm on a DHT node bootstrapped from `--bootstrap`.
pub(super) async fn start_swarm(args: &SwarmArgs) -> Result<Swarm, CliError> {
    let list: Vec<String> = args
        .bootstrap
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Err(CliError::new(
            "--swarm needs --bootstrap (or HYPERPUNCH_BOOTSTRAP) with at least one HOST:PORT",
        ));
    }
    let relays = hyperpunch::dht::relays_from_env()
        .map_err(|e| CliError::new(format!("HYPERPUNCH_RELAYS: {e}")))?;
    let dht = DhtOptions {
        host: args.host,
        relays,
        ..DhtOptions::new(list)
    };
    let swarm = Swarm::new(SwarmOptions::new(dht))
        .await
        .map_err(|e| CliError::new(format!("cannot start the DHT node on {}: {e}", args.host)))?;
    tokio::time::timeout(BOOTSTRAP_TIMEOUT, swarm.dht().ready())
        .await
        .map_err(|_| {
            CliError::new(
                "the DHT bootstrap timed out: check --bootstrap and that the bootstrap nodes run",
            )
        })?
        .map_err(|e| CliError::new(format!("the DHT node stopped: {e}")))?;
    Ok(swarm)
}

/// Replicates the hub (a core's, or a whole corestore) over every connection the swarm hands
/// out, until `stop` fires or the swarm stops (then every connection's task ends with the
/// runtime).
pub(super) async fn swarm_serve_loop<H: ReplicationHost + 'static>(
    mut swarm: Swarm,
    hub: SharedHost<H>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), String> {
    loop {
        let conn = tokio::select! {
            c = swarm.accept() => c,
            _ = &mut stop => None,
        };
        let Some(conn) = conn else {
            return Err("the swarm stopped".into());
        };
        let peer = hex::encode(conn.remote_public_key());
        let short = &peer[..12];
        eprintln!("{short}: connected");
        let hub = hub.clone();
        let short = short.to_string();
        tokio::spawn(async move {
            match replicate_connection(conn.into_raw(), &hub).await {
                Ok(()) => eprintln!("{short}: closed"),
                Err(e) => eprintln!("{short}: closed: {e}"),
            }
        });
    }
}

/// Accept clients forever, one replication task each. A failing client only ends its own task.
/// (`core serve`'s hub, `drive serve`'s corestore.)
pub(super) async fn accept_loop<H: ReplicationHost + 'static>(
    listener: TcpListener,
    hub: SharedHost<H>,
    key_pair: KeyPair,
    opts: StreamOptions,
) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Transient (e.g. too many open files): report and keep serving.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        eprintln!("{peer}: connected");
        let hub = hub.clone();
        let key_pair = key_pair.clone();
        let opts = opts.clone();
        tokio::spawn(async move {
            match replicate_with(socket, false, key_pair, opts, &hub).await {
                Ok(()) => eprintln!("{peer}: closed"),
                Err(e) => eprintln!("{peer}: closed: {e}"),
            }
        });
    }
}

/// `serve --live`: append the blocks read from stdin (on a thread, since stdin blocks) as they
/// come, batching whatever is already waiting, and print the new length after each append.
async fn append_stdin(
    dir: &Path,
    hub: &SharedHub<FileStorage>,
    dk: &[u8; 32],
    block_size: Option<u64>,
) -> Result<(), CliError> {
    let block_size = block_size.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    // Bound what waits in memory to about MAX_LIVE_QUEUE_BYTES (at least one block).
    let capacity = block_size.map_or(1024, |n| (MAX_LIVE_QUEUE_BYTES / n).clamp(1, 1024));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(capacity);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let lock = stdin.lock();
        let mut source = match block_size {
            Some(n) => BlockSource::Chunks(lock, n),
            None => BlockSource::Lines(lock),
        };
        loop {
            let item = match source.next_batch(1, usize::MAX) {
                Ok(mut blocks) => match blocks.pop() {
                    Some(b) => Ok(b),
                    None => break,
                },
                Err(e) => Err(e.0),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                break;
            }
        }
    });
    let mut failure = None;
    while let Some(first) = rx.recv().await {
        let mut blocks = Vec::new();
        let mut bytes = 0usize;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Ok(b) => {
                    bytes += b.len();
                    blocks.push(b);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            if blocks.len() < LIVE_BATCH_BLOCKS && bytes < MAX_BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if !blocks.is_empty() {
            let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
            let now = hub.now();
            let mut g = hub.lock().await;
            let rep = g
                .replicator_mut(dk)
                .ok_or_else(|| CliError::new("the core vanished from the hub"))?;
            rep.append(now, &refs)
                .await
                .map_err(|e| replication_err(dir, e))?;
            // What is printed survives a crash.
            rep.core()
                .storage()
                .sync()
                .map_err(|e| storage_err(dir, e))?;
            let length = rep.core().length();
            drop(g);
            print_line(&format!("length {length}"));
        }
        if let Some(e) = failure.take() {
            return Err(CliError::new(e));
        }
    }
    let length = {
        let g = hub.lock().await;
        g.replicator(dk).map_or(0, |r| r.core().length())
    };
    eprintln!("stdin ended at length {length}; still serving");
    Ok(())
}

/// Open the core in `dir`, or create a reader core for `key` there if it holds none.
fn open_or_create_reader(
    dir: &Path,
    key: [u8; 32],
    encryption_key: Option<[u8; 32]>,
) -> Result<Hypercore<FileStorage>, CliError> {
    let key_file = dir.join(ENCRYPTION_KEY_FILE);
    let existed = dir.is_dir();
    let storage = FileStorage::open(dir).map_err(|e| storage_err(dir, e))?;
    if !existed {
        restrict(dir, 0o700)?;
    }
    let wrote_key = match encryption_key {
        Some(ek) if read_encryption_key(dir)?.is_none() => {
            write_secret_file(&key_file, &hex::encode(ek))?;
            true
        }
        _ => false,
    };
    let created = futures_executor::block_on(Hypercore::create(
        storage,
        CreateOptions {
            key: Some(key),
            encryption_key,
            ..CreateOptions::default()
        },
    ));
    let core = match created {
        Ok(mut core) => {
            core.set_join(hyperpunch::parallel::best_join());
            core
        }
        Err(HypercoreError::AlreadyExists) => open_core(dir)?,
        Err(e) => {
            if wrote_key {
                let _ = std::fs::remove_file(&key_file);
            }
            return Err(core_err(dir, e));
        }
    };
    if *core.key() != key {
        return Err(CliError::new(format!(
            "{} already holds a different core ({})",
            dir.display(),
            hex::encode(core.key())
        )));
    }
    Ok(core)
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} fetching [{bar:30}] {pos}/{len} blocks ({per_sec}, eta {eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// What `fetch` downloads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Everything the peer has, then exit.
    All,
    /// Blocks `start..end` only (a sparse copy), then exit.
    Range(u64, u64),
    /// Everything, following new appends until the peer goes away (or the timeout).
    Live,
}

/// `core fetch`: download the core (or a range of it) from `--tcp` into `--storage`.
pub fn fetch(args: &FetchArgs) -> Result<(), CliError> {
    let dir = args.storage.storage.as_path();
    let want = match (args.live, args.start, args.end) {
        (true, _, _) => Want::Live,
        (false, None, None) => Want::All,
        (false, start, Some(end)) => {
            let start = start.unwrap_or(0);
            if start >= end {
                return Err(CliError::new(format!(
                    "--start ({start}) must be below --end ({end})"
                )));
            }
            Want::Range(start, end)
        }
        (false, Some(_), None) => return Err(CliError::new("--start needs --end")),
    };
    let key = parse_hex32("--key", &args.key)?;
    let encryption_key = args
        .encryption_key
        .as_deref()
        .map(|s| parse_hex32("--encryption-key", s))
        .transpose()?;
    let core = open_or_create_reader(dir, key, encryption_key)?;
    timing::mark("storage opened");
    let key_pair = random_key_pair()?;
    let mut hub = ReplicationHub::new();
    let options = Options {
        allow_push: args.allow_push || args.push_only,
        push_only: args.push_only,
        ..Options::default()
    };
    let dk = hub
        .add_core(Replicator::new(core, options))
        .map_err(|e| CliError::new(format!("cannot replicate the core: {e}")))?;
    let (hub, events) = SharedHub::with_events(hub);
    let rt = runtime()?;
    timing::mark("runtime started");
    let timeout = (args.timeout > 0).then(|| Duration::from_secs(args.timeout));
    let source = if args.swarm.swarm {
        Source::Swarm(&args.swarm)
    } else {
        Source::Tcp(args.tcp.as_deref().unwrap_or_default())
    };
    let work = download(dir, source, want, timeout, key_pair, &hub, dk, events);
    let result = match (want, timeout) {
        // A live fetch stops by itself at the deadline; the others fail.
        (Want::Live, _) | (_, None) => rt.block_on(work),
        (_, Some(t)) => rt.block_on(async {
            tokio::time::timeout(t, work)
                .await
                .map_err(|_| CliError::new(format!("fetch timed out after {} s", t.as_secs())))?
        }),
    };
    drop(rt);
    timing::mark("runtime stopped");
    if result.is_ok() {
        // Everything is committed: `download` synced the journal before reporting success.
        // Closing the store would wait for its background work (flushing memtables into
        // tables, ~100 ms for a 100 MiB download), which a later open redoes from the journal
        // anyway, as after a crash. So the store stays open until the process exits.
        std::mem::forget(hub);
    } else {
        drop(hub);
        timing::mark("storage closed");
    }
    result
}

/// Where `fetch` gets the core from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// One TCP peer.
    Tcp(&'a str),
    /// Every peer the swarm finds under the discovery key.
    Swarm(&'a SwarmArgs),
}

/// Replicates with every peer of `swarm` serving the core, until the swarm stops.
async fn swarm_fetch(
    swarm: Swarm,
    dk: [u8; 32],
    hub: SharedHub<FileStorage>,
) -> Result<(), String> {
    let discovery = swarm
        .join(
            dk,
            JoinOptions {
                server: false,
                ..JoinOptions::default()
            },
        )
        .await;
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let r = swarm_serve_loop(swarm, hub, stopped).await;
    drop(discovery);
    r
}

/// `fetch`'s connection and download loop, then the final sync.
#[allow(clippy::too_many_arguments)]
async fn download(
    dir: &Path,
    source: Source<'_>,
    want: Want,
    timeout: Option<Duration>,
    key_pair: KeyPair,
    hub: &SharedHub<FileStorage>,
    dk: [u8; 32],
    mut events: tokio::sync::mpsc::UnboundedReceiver<HubEvent>,
) -> Result<(), CliError> {
    let vanished = || CliError::new("the core vanished from the hub");
    {
        let now = hub.now();
        let mut g = hub.lock().await;
        let rep = g.replicator_mut(&dk).ok_or_else(vanished)?;
        let (start, end) = match want {
            Want::Range(s, e) => (s, Some(e)),
            Want::All | Want::Live => (0, None),
        };
        rep.download(now, start, end)
            .await
            .map_err(|e| CliError::new(format!("cannot start the download: {e}")))?;
    }
    let conn: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>> =
        match source {
            Source::Tcp(addr) => {
                let socket = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                    .await
                    .map_err(|_| CliError::new(format!("connecting to {addr} timed out")))?
                    .map_err(|e| CliError::new(format!("cannot connect to {addr}: {e}")))?;
                let _ = socket.set_nodelay(true);
                timing::mark("connected");
                let opts = StreamOptions {
                    keep_alive: KEEP_ALIVE_MS,
                    ..StreamOptions::default()
                };
                let hub = hub.clone();
                Box::pin(async move {
                    replicate_with(socket, true, key_pair, opts, &hub)
                        .await
                        .map_err(|e| e.to_string())
                })
            }
            Source::Swarm(args) => {
                let swarm = start_swarm(args).await?;
                Box::pin(swarm_fetch(swarm, dk, hub.clone()))
            }
        };
    let mut conn = conn;
    // Without a timeout the branch below is disabled and this sleep is never polled.
    let stop = tokio::time::sleep(timeout.unwrap_or(CONNECT_TIMEOUT));
    tokio::pin!(stop);
    let pb = progress_bar();
    let mut remote_length: Option<u64> = None;
    let mut conn_result = None;
    let mut conn_done = false;
    let mut stopped = false;
    let mut printed: Option<u64> = None;
    loop {
        let (length, contiguous, range_done) = {
            let g = hub.lock().await;
            let c = g.replicator(&dk).ok_or_else(vanished)?.core();
            let range_done = match want {
                Want::Range(s, e) => {
                    c.length() >= e && c.bitfield().first_unset(s).is_none_or(|u| u >= e)
                }
                Want::All | Want::Live => false,
            };
            (c.length(), c.contiguous_length(), range_done)
        };
        let caught_up = remote_length.is_some_and(|r| length >= r) && contiguous >= length;
        match (want, remote_length) {
            (Want::Range(s, e), r) => {
                pb.set_length(e - s);
                pb.set_position(contiguous.clamp(s, e) - s);
                if range_done {
                    break;
                }
                if let Some(r) = r.filter(|&r| r < e && length >= r) {
                    return Err(CliError::new(format!(
                        "the peer has only {r} blocks: cannot fetch up to block {e}"
                    )));
                }
            }
            (_, Some(r)) => {
                pb.set_length(r.max(length));
                pb.set_position(contiguous);
                if caught_up {
                    if want == Want::All {
                        break;
                    }
                    if printed != Some(length) {
                        printed = Some(length);
                        // What is printed survives a crash.
                        let g = hub.lock().await;
                        let c = g.replicator(&dk).ok_or_else(vanished)?.core();
                        c.storage().sync().map_err(|e| storage_err(dir, e))?;
                        drop(g);
                        pb.suspend(|| print_line(&format!("length {length}")));
                    }
                }
            }
            (_, None) => {}
        }
        if stopped {
            break;
        }
        if let Some(r) = conn_result.take() {
            if want == Want::Live && caught_up {
                if let Err(e) = r {
                    pb.suspend(|| eprintln!("the connection ended: {e}"));
                }
                break;
            }
            let why = match r {
                Ok(()) => "the peer closed the connection".to_string(),
                Err(e) => format!("the connection failed: {e}"),
            };
            return Err(CliError::new(format!(
                "{why} before the download finished ({contiguous} of {} blocks)",
                remote_length.map_or("?".to_string(), |r| r.to_string())
            )));
        }
        let mut received = None;
        tokio::select! {
            r = &mut conn, if !conn_done => {
                conn_done = true;
                conn_result = Some(r);
            }
            () = &mut stop, if want == Want::Live && timeout.is_some() && !stopped => {
                stopped = true;
            }
            ev = events.recv() => received = Some(ev),
        }
        // The event, and every one queued meanwhile (one per stored block): the state above is
        // read under the hub's lock once for all of them, not once each.
        let mut ev = match received.take() {
            Some(ev) => ev,
            None => continue,
        };
        loop {
            match ev {
                Some(HubEvent::Core {
                    event: Event::PeerSync { length, .. },
                    ..
                }) => {
                    if remote_length.is_none() {
                        timing::mark("handshake and first sync");
                    }
                    // The peer's latest announcement (it may shrink after a truncate).
                    remote_length = Some(length);
                }
                Some(HubEvent::Core {
                    event: Event::InvalidData { error, .. },
                    ..
                }) => {
                    pb.suspend(|| eprintln!("the peer sent data that does not verify: {error}"));
                }
                Some(HubEvent::Core {
                    event: Event::Conflict { .. },
                    ..
                }) => {
                    // The writer forked: the core is frozen (stored with it), nothing to wait for.
                    let g = hub.lock().await;
                    let c = g.replicator(&dk).ok_or_else(vanished)?.core();
                    c.storage().sync().map_err(|e| storage_err(dir, e))?;
                    if let Some(c) = c.conflict() {
                        let (length, fork) = (c.length, c.fork);
                        return Err(core_err(dir, HypercoreError::Conflict { length, fork }));
                    }
                }
                Some(_) => {}
                None => return Err(CliError::new("the replication hub stopped")),
            }
            match events.try_recv() {
                Ok(next) => ev = Some(next),
                Err(_) => break,
            }
        }
    }
    pb.finish_and_clear();
    timing::mark("download");
    // Done: end the connection politely, but do not wait long for the peer.
    hub.end_all().await;
    if !conn_done && matches!(source, Source::Tcp(_)) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, &mut conn).await;
    }
    timing::mark("connection closed");
    let g = hub.lock().await;
    let core = g.replicator(&dk).ok_or_else(vanished)?.core();
    // No second pass over the blocks: each was checked against the signed merkle tree when it
    // arrived (a proof that does not verify is never stored), and `core verify` re-hashes
    // everything on disk when that is wanted. What is printed below survives a power cut.
    core.storage().sync().map_err(|e| storage_err(dir, e))?;
    timing::mark("sync");
    match want {
        Want::Range(s, e) => eprintln!(
            "fetched blocks {s}..{e} of {} ({} blocks), every block verified",
            core.length(),
            e - s
        ),
        Want::All | Want::Live => eprintln!(
            "fetched {} blocks, {} bytes, every block verified",
            core.length(),
            core.byte_length()
        ),
    }
    Ok(())
}
