//! `hyperpunch core serve` and `hyperpunch core fetch`: replication over TCP with
//! [`hyperpunch::replicate`] on a single-threaded tokio runtime.

use super::core_cmd::{
    core_err, open_core, read_encryption_key, restrict, storage_err, write_secret_file,
    ENCRYPTION_KEY_FILE,
};
use super::{parse_hex32, CliError};
use hyperpunch::core::replication::{Event, HubEvent, Options, ReplicationHub, Replicator};
use hyperpunch::crypto::KeyPair;
use hyperpunch::hypercore::core::{CreateOptions, Hypercore, HypercoreError};
use hyperpunch::replicate::{replicate, SharedHub};
use hyperpunch::FileStorage;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long `fetch` waits for the TCP connection to be made.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `fetch` waits for the peer to confirm the close after everything arrived.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
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

/// `core serve`: seed the core in `dir` to every client of `addr`, until killed.
pub fn serve(dir: &Path, addr: &str) -> Result<(), CliError> {
    let core = open_core(dir)?;
    let key_pair = random_key_pair()?;
    let mut hub = ReplicationHub::new();
    hub.add_core(Replicator::new(core, Options::default()))
        .map_err(|e| CliError::new(format!("cannot replicate the core: {e}")))?;
    let hub = SharedHub::new(hub);
    runtime()?.block_on(async move {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::new(format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| CliError::new(format!("cannot listen on {addr}: {e}")))?;
        println!("listening on {local}");
        let _ = std::io::stdout().flush();
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
            tokio::spawn(async move {
                match replicate(socket, false, key_pair, &hub).await {
                    Ok(()) => eprintln!("{peer}: closed"),
                    Err(e) => eprintln!("{peer}: closed: {e}"),
                }
            });
        }
    })
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
        Ok(core) => core,
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

/// `core fetch`: download the whole core `key` from `addr` into `dir`.
pub fn fetch(
    dir: &Path,
    key: &str,
    addr: &str,
    encryption_key: Option<&str>,
    timeout_secs: u64,
) -> Result<(), CliError> {
    let key = parse_hex32("--key", key)?;
    let encryption_key = encryption_key
        .map(|s| parse_hex32("--encryption-key", s))
        .transpose()?;
    let core = open_or_create_reader(dir, key, encryption_key)?;
    let key_pair = random_key_pair()?;
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(core, Options::default()))
        .map_err(|e| CliError::new(format!("cannot replicate the core: {e}")))?;
    let (hub, mut events) = SharedHub::with_events(hub);
    let rt = runtime()?;
    let work = async {
        {
            let now = hub.now();
            let mut g = hub.lock().await;
            let rep = g
                .replicator_mut(&dk)
                .ok_or_else(|| CliError::new("the core vanished from the hub"))?;
            rep.download(now, 0, None)
                .await
                .map_err(|e| CliError::new(format!("cannot start the download: {e}")))?;
        }
        let socket = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| CliError::new(format!("connecting to {addr} timed out")))?
            .map_err(|e| CliError::new(format!("cannot connect to {addr}: {e}")))?;
        let _ = socket.set_nodelay(true);
        let conn = replicate(socket, true, key_pair, &hub);
        tokio::pin!(conn);
        let pb = progress_bar();
        let mut remote_length: Option<u64> = None;
        let mut conn_result = None;
        let mut conn_done = false;
        loop {
            let (length, contiguous) = {
                let g = hub.lock().await;
                let c = g
                    .replicator(&dk)
                    .ok_or_else(|| CliError::new("the core vanished from the hub"))?
                    .core();
                (c.length(), c.contiguous_length())
            };
            if let Some(r) = remote_length {
                pb.set_length(r.max(length));
                pb.set_position(contiguous);
                if length >= r && contiguous >= length {
                    break;
                }
            }
            if let Some(r) = conn_result.take() {
                let why = match r {
                    Ok(()) => "the peer closed the connection".to_string(),
                    Err(e) => format!("the connection failed: {e}"),
                };
                return Err(CliError::new(format!(
                    "{why} before the download finished ({contiguous} of {} blocks)",
                    remote_length.map_or("?".to_string(), |r| r.to_string())
                )));
            }
            tokio::select! {
                r = &mut conn, if !conn_done => {
                    conn_done = true;
                    conn_result = Some(r);
                }
                ev = events.recv() => match ev {
                    Some(HubEvent::Core { event: Event::PeerSync { length, .. }, .. }) => {
                        remote_length = Some(remote_length.map_or(length, |r| r.max(length)));
                    }
                    Some(HubEvent::Core { event: Event::InvalidData { error, .. }, .. }) => {
                        pb.suspend(|| eprintln!("the peer sent data that does not verify: {error}"));
                    }
                    Some(_) => {}
                    None => return Err(CliError::new("the replication hub stopped")),
                },
            }
        }
        pb.finish_and_clear();
        // Everything is here: end the connection politely, but do not wait long for the peer.
        hub.end_all().await;
        if !conn_done {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, &mut conn).await;
        }
        let g = hub.lock().await;
        let core = g
            .replicator(&dk)
            .ok_or_else(|| CliError::new("the core vanished from the hub"))?
            .core();
        core.verify_all().await.map_err(|e| core_err(dir, e))?;
        core.storage().sync().map_err(|e| storage_err(dir, e))?;
        eprintln!(
            "fetched {} blocks, {} bytes, every block verified",
            core.length(),
            core.byte_length()
        );
        Ok(())
    };
    if timeout_secs == 0 {
        rt.block_on(work)
    } else {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(timeout_secs), work)
                .await
                .map_err(|_| CliError::new(format!("fetch timed out after {timeout_secs} s")))?
        })
    }
}
