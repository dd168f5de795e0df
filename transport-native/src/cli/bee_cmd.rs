//! `hyperpunch bee put|get|del|batch|list|history|info`: a hyperbee (JS hyperbee 2.27.3, keys
//! and values UTF-8) in the storage folder of a core made by `core create` (or copied by `core
//! fetch`). `get` and `list` also read a bee straight from a `core serve` peer with `--tcp`,
//! downloading only the blocks they walk.

use super::store::{core_err, open_core, open_existing_storage, restrict, storage_err};
use super::{parse_hex32, timing, CliError};
use clap::{Args, Subcommand};
use futures_executor::block_on;
use hyperpunch::bee::HubCore;
use hyperpunch::core::hyperbee::{
    BeeCore, BeeError, Entry, HistoryOptions, HistoryType, Hyperbee, RangeOptions, Utf8,
};
use hyperpunch::core::replication::{Options, ReplicationHub, Replicator};
use hyperpunch::crypto::KeyPair;
use hyperpunch::hypercore::core::{CreateOptions, Hypercore, HypercoreError};
use hyperpunch::hypercore::Session;
use hyperpunch::replicate::{replicate, SharedHub};
use hyperpunch::FileStorage;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `hyperpunch bee --help`.
pub const BEE_LONG: &str = "\
A hyperbee: an append-only B-tree of keys and values stored in a hypercore, byte for byte as
JavaScript's hyperbee 2.27.3 writes it (keyEncoding and valueEncoding 'utf-8'). Each put or
delete appends one block; a batch appends all of its blocks at once. The core is the one
`hyperpunch core create` made in the storage folder, so `core serve` and `core fetch` replicate a
bee like any core, and JS reads it with `new Hyperbee(core, { keyEncoding: 'utf-8',
valueEncoding: 'utf-8' })`.

Keys are ordered bytewise (as UTF-8). Writes need the writable core (from `core create`); a copy
made by `core fetch` is read-only.

Examples:
  hyperpunch core create --storage ./db
  hyperpunch bee put --storage ./db hello world
  hyperpunch bee get --storage ./db hello              # -> world (exit 1 if absent)
  printf 'a\\t1\\nb\\t2\\nc\\t3\\n' | hyperpunch bee batch --storage ./db
  hyperpunch bee list --storage ./db --gte a --lt c    # -> a<TAB>1, b<TAB>2
  hyperpunch bee list --storage ./db --reverse --limit 1 --json
  hyperpunch bee del --storage ./db hello
  hyperpunch bee history --storage ./db --limit 5
  hyperpunch bee info --storage ./db

  # serve it, and read it from elsewhere without downloading the whole core
  hyperpunch core serve --storage ./db --tcp 127.0.0.1:7000 &
  KEY=$(hyperpunch core info --storage ./db --json | jq -r .key)
  hyperpunch bee get --storage ./copy --key $KEY --tcp 127.0.0.1:7000 b
  hyperpunch bee list --storage ./copy --key $KEY --tcp 127.0.0.1:7000 --gte a --limit 10";

/// Where the bee is: a storage folder, and optionally a peer to read it from.
#[derive(Debug, Args)]
pub struct BeeStorage {
    /// Folder holding the bee's core (made by `core create`, or a `core fetch` copy).
    #[arg(long, short = 's', value_name = "DIR")]
    pub storage: PathBuf,
}

/// Read from a `core serve` peer instead of only the local copy.
#[derive(Debug, Args)]
pub struct Remote {
    /// Read from the peer serving the core at ADDR (`core serve`), downloading only the blocks
    /// the query walks into DIR (a sparse copy, created if needed).
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<String>,
    /// The core's key (64 hex characters), needed with --tcp when DIR holds no copy yet.
    #[arg(long = "key", id = "core_key", value_name = "HEX32", requires = "tcp")]
    pub core_key: Option<String>,
    /// With --tcp: give up on a block no peer sends within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30, requires = "tcp")]
    pub timeout: u64,
}

/// Bounds of `list`.
#[derive(Debug, Args)]
pub struct Bounds {
    /// Keys greater than K.
    #[arg(long, value_name = "K")]
    pub gt: Option<String>,
    /// Keys greater than or equal to K.
    #[arg(long, value_name = "K")]
    pub gte: Option<String>,
    /// Keys less than K.
    #[arg(long, value_name = "K")]
    pub lt: Option<String>,
    /// Keys less than or equal to K.
    #[arg(long, value_name = "K")]
    pub lte: Option<String>,
    /// Largest key first.
    #[arg(long)]
    pub reverse: bool,
    /// At most N entries.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

/// `hyperpunch bee ...`
#[derive(Debug, Subcommand)]
pub enum BeeCommand {
    /// Set KEY to VALUE (one block).
    #[command(long_about = "\
Set KEY to VALUE: appends one block (JS `db.put(key, value)`). The first write to an empty core
writes the bee's header block first.

Example:
  hyperpunch bee put --storage ./db greeting 'hello world'")]
    Put {
        #[command(flatten)]
        storage: BeeStorage,
        /// The key (UTF-8).
        #[arg(value_name = "KEY")]
        key: String,
        /// The value (UTF-8).
        #[arg(value_name = "VALUE")]
        value: String,
    },
    /// Print KEY's value; exit status 1 when KEY is absent.
    #[command(long_about = "\
Print the value of KEY followed by a newline, or, with --json, {\"seq\", \"key\", \"value\"}.
Exits with status 1 (printing nothing) when KEY is absent.

Examples:
  hyperpunch bee get --storage ./db greeting
  hyperpunch bee get --storage ./copy --key $KEY --tcp 127.0.0.1:7000 greeting")]
    Get {
        #[command(flatten)]
        storage: BeeStorage,
        #[command(flatten)]
        remote: Remote,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// The key.
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Delete KEY (nothing is written when it is absent).
    #[command(long_about = "\
Delete KEY: appends one block when KEY exists, nothing otherwise (JS `db.del(key)`).

Example:
  hyperpunch bee del --storage ./db greeting")]
    Del {
        #[command(flatten)]
        storage: BeeStorage,
        /// The key.
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Put every `KEY<TAB>VALUE` line of stdin, as one batch (one append).
    #[command(long_about = "\
Read `KEY<TAB>VALUE` lines from stdin and put them all as one batch (JS `db.batch()`): their
blocks are appended together when stdin ends, in one atomic write. The key is everything before
the first tab, the value everything after it (more tabs included), without the line's newline
(`\\n` or `\\r\\n`). A line without a tab is an error and nothing is written. With --del, each
line is a key to delete instead.

Examples:
  printf 'a\\t1\\nb\\t2\\n' | hyperpunch bee batch --storage ./db
  seq 1 100000 | awk '{ printf \"key%08d\\tvalue %d\\n\", $1, $1 }' | hyperpunch bee batch --storage ./db
  printf 'a\\nb\\n' | hyperpunch bee batch --storage ./db --del")]
    Batch {
        #[command(flatten)]
        storage: BeeStorage,
        /// Each line is a key to delete.
        #[arg(long)]
        del: bool,
    },
    /// Print `KEY<TAB>VALUE` lines in key order, within bounds.
    #[command(long_about = "\
Print the entries as `KEY<TAB>VALUE` lines in key order (JS `createReadStream`), or one JSON
object per line with --json. --gt/--gte and --lt/--lte bound the range (--gt wins over --gte,
--lt over --lte, as in JS), --reverse lists from the largest key, --limit stops after N.

Examples:
  hyperpunch bee list --storage ./db
  hyperpunch bee list --storage ./db --gte user/ --lt user0 --limit 20
  hyperpunch bee list --storage ./db --reverse --limit 1 --json")]
    List {
        #[command(flatten)]
        storage: BeeStorage,
        #[command(flatten)]
        bounds: Bounds,
        #[command(flatten)]
        remote: Remote,
        /// One JSON object ({seq, key, value}) per line.
        #[arg(long)]
        json: bool,
    },
    /// Print every put and delete in block order.
    #[command(long_about = "\
Print the bee's history (JS `createHistoryStream`): one line per block, `put<TAB>SEQ<TAB>KEY<TAB>
VALUE` or `del<TAB>SEQ<TAB>KEY`, oldest first, or one JSON object per line with --json. --gte
and --lt bound the seqs (negative: counted back from the end), --reverse starts from the newest.

Examples:
  hyperpunch bee history --storage ./db
  hyperpunch bee history --storage ./db --reverse --limit 10 --json
  hyperpunch bee history --storage ./db --gte -5")]
    History {
        #[command(flatten)]
        storage: BeeStorage,
        /// From this seq (negative: from the end).
        #[arg(long, value_name = "SEQ", allow_negative_numbers = true)]
        gte: Option<i64>,
        /// Before this seq (negative: from the end).
        #[arg(long, value_name = "SEQ", allow_negative_numbers = true)]
        lt: Option<i64>,
        /// Newest first.
        #[arg(long)]
        reverse: bool,
        /// At most N entries.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print the bee's key, version, header metadata and whether it is writable.
    #[command(long_about = "\
Print the core's key, the bee's version (its core's length), whether this copy can be written,
and the header's metadata (hyperdrive keeps its content core's key there). --json prints one
object.

Example:
  hyperpunch bee info --storage ./db --json")]
    Info {
        #[command(flatten)]
        storage: BeeStorage,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

type LocalBee = Hyperbee<Session<FileStorage>, Utf8, Utf8>;

/// Run one `bee` subcommand.
pub fn run(cmd: BeeCommand) -> Result<(), CliError> {
    match cmd {
        BeeCommand::Put {
            storage,
            key,
            value,
        } => write(
            &storage.storage,
            |db| async move { db.put(&key, &value).await },
        ),
        BeeCommand::Del { storage, key } => {
            write(&storage.storage, |db| async move { db.del(&key).await })
        }
        BeeCommand::Batch { storage, del } => batch(&storage.storage, del),
        BeeCommand::Get {
            storage,
            remote,
            json,
            key,
        } => {
            let dir = storage.storage;
            let wanted = key.clone();
            let found = match &remote.tcp {
                Some(addr) => with_remote(&dir, &remote, addr, |db, err| async move {
                    db.get(&key).await.map_err(err)
                })?,
                None => {
                    let db = open_bee(&dir)?;
                    block_on(db.get(&key)).map_err(|e| bee_err(&dir, e))?
                }
            };
            let Some(e) = found else {
                return Err(CliError::new(format!("{wanted:?} is not in the bee")));
            };
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", entry_json(&e))
            } else {
                writeln!(out, "{}", e.value.unwrap_or_default())
            }
            .map_err(out_err)
        }
        BeeCommand::List {
            storage,
            bounds,
            remote,
            json,
        } => {
            let dir = storage.storage;
            match &remote.tcp {
                Some(addr) => with_remote(&dir, &remote, addr, |db, err| async move {
                    list(&db, &bounds, json).await?.map_err(err)
                }),
                None => {
                    let db = open_bee(&dir)?;
                    block_on(list(&db, &bounds, json))?.map_err(|e| bee_err(&dir, e))
                }
            }
        }
        BeeCommand::History {
            storage,
            gte,
            lt,
            reverse,
            limit,
            json,
        } => {
            let dir = storage.storage;
            let db = open_bee(&dir)?;
            let opts = HistoryOptions {
                gte,
                lt,
                reverse,
                limit,
                ..Default::default()
            };
            block_on(history(&db, opts, json))?.map_err(|e| bee_err(&dir, e))
        }
        BeeCommand::Info { storage, json } => info(&storage.storage, json),
    }
}

fn out_err(e: std::io::Error) -> CliError {
    CliError::new(format!("cannot write to stdout: {e}"))
}

/// A one-line message for a bee error of the bee in `dir`.
fn bee_err(dir: &Path, e: BeeError) -> CliError {
    match e {
        BeeError::Core(e) => core_err(dir, e),
        BeeError::BlockNotAvailable(seq) => CliError::new(format!(
            "block {seq} of the bee is not stored in {} (it was not fetched): read it from a peer \
             with --tcp ADDR, or fetch the whole core with `hyperpunch core fetch`",
            dir.display()
        )),
        BeeError::NotWritable => CliError::new(format!(
            "the core in {} has no secret key (a copy made by `core fetch`?): it is read-only; \
             bee writes need the core made by `hyperpunch core create`",
            dir.display()
        )),
        BeeError::NotABee => not_a_bee(dir),
        e @ (BeeError::InvalidNode { .. } | BeeError::Corrupt { .. }) => {
            CliError::corrupt(format!(
                "the bee in {} is corrupt (or the core holds something else): {e}",
                dir.display()
            ))
        }
        other => CliError::new(other.to_string()),
    }
}

fn not_a_bee(dir: &Path) -> CliError {
    CliError::new(format!(
        "the core in {} is not a hyperbee (its block 0 is not a hyperbee header)",
        dir.display()
    ))
}

/// The bee in `dir`: its core must be empty or start with a hyperbee header.
fn open_bee(dir: &Path) -> Result<LocalBee, CliError> {
    let session = open_core(dir)?.into_session();
    check_bee(dir, &session)?;
    Ok(Hyperbee::new(session).with_codecs(Utf8, Utf8))
}

fn check_bee<C: BeeCore>(dir: &Path, core: &C) -> Result<(), CliError> {
    match block_on(Hyperbee::is_hyperbee(core)) {
        Ok(true) => Ok(()),
        Ok(false) if block_on(core.state()).length == 0 => Ok(()),
        Ok(false) => Err(not_a_bee(dir)),
        Err(e) => Err(bee_err(dir, e)),
    }
}

/// Open the bee for writing, run `f`, then fsync (what the command reports survives power
/// loss).
fn write<F, Fut>(dir: &Path, f: F) -> Result<(), CliError>
where
    F: FnOnce(LocalBee) -> Fut,
    Fut: std::future::Future<Output = Result<(), BeeError>>,
{
    let db = open_bee(dir)?;
    if !block_on(db.core().state()).writable {
        return Err(bee_err(dir, BeeError::NotWritable));
    }
    let core = db.core().clone();
    block_on(f(db)).map_err(|e| bee_err(dir, e))?;
    let g = block_on(core.lock());
    g.storage().sync().map_err(|e| storage_err(dir, e))
}

/// The size of stdin when it is a regular file (a redirection), as a hint; `None` otherwise.
fn stdin_file_len() -> Option<usize> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    usize::try_from(meta.len()).ok()
}

/// `KEY<TAB>VALUE` lines of stdin as one batch.
fn batch(dir: &Path, del: bool) -> Result<(), CliError> {
    // All of stdin at once: the batch holds every line's key and value until the flush anyway,
    // and knowing the number of lines lets it allocate its arrays once (see `Batch::reserve`).
    // Read (and its lines counted) on a second thread while this one opens the storage.
    let reader = std::thread::spawn(|| {
        let mut input = Vec::new();
        // Stdin redirected from a file: its size, so that the buffer is allocated once instead
        // of doubling (each time copying what it read into fresh pages).
        if let Some(len) = stdin_file_len() {
            // A hint only: a file too big for memory fails in `read_to_end`, as without it.
            let _ = input.try_reserve_exact(len.saturating_add(1));
        }
        std::io::stdin().lock().read_to_end(&mut input)?;
        let count = input.split_inclusive(|&b| b == b'\n').count();
        Ok::<_, std::io::Error>((input, count))
    });
    let db = open_bee(dir)?;
    if !block_on(db.core().state()).writable {
        return Err(bee_err(dir, BeeError::NotWritable));
    }
    timing::mark("storage opened");
    let (input, count) = reader
        .join()
        .map_err(|_| CliError::new("cannot read stdin: the reading thread panicked"))?
        .map_err(|e| CliError::new(format!("cannot read stdin: {e}")))?;
    // Lines as `read_until(b'\n')` gives them: each with its `\n`, but the last maybe.
    let lines = input.split_inclusive(|&b| b == b'\n');
    timing::mark("stdin read");
    let pb = if std::io::stderr().is_terminal() {
        let pb = ProgressBar::with_draw_target(Some(count as u64), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg} {pos}/{len} lines ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.set_message("staging");
        pb
    } else {
        ProgressBar::hidden()
    };
    let core = db.core().clone();
    block_on(async {
        // The staging's big arrays (~25 MB for 100k lines, reserved here) are faulted in on
        // the other CPU while this thread fills them (see `hyperpunch::prefault`): ~10% of
        // the whole command.
        let prefault = hyperpunch::prefault::enable();
        let mut b = db.batch();
        b.reserve(count);
        b.reserve_bytes(input.len());
        // The process exits after the batch: decoding its blocks into the bee's cache for later
        // reads would be wasted.
        b.set_cache_flushed(false);
        // The blocks of a big batch are encoded in two halves at once (the core's append, opened
        // by `open_bee`, hashes on two threads too).
        b.set_join(hyperpunch::parallel::best_join());
        for (n, mut line) in lines.enumerate() {
            if let [rest @ .., b'\n'] = line {
                line = rest;
            }
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let text = std::str::from_utf8(line)
                .map_err(|_| CliError::new(format!("line {} of stdin is not UTF-8", n + 1)))?;
            if del {
                b.del(text).await
            } else {
                let Some((k, v)) = text.split_once('\t') else {
                    return Err(CliError::new(format!(
                        "line {} of stdin has no tab: expected KEY<TAB>VALUE (nothing was \
                         written)",
                        n + 1
                    )));
                };
                b.put(k, v).await
            }
            .map_err(|e| bee_err(dir, e))?;
            // Every 1024 lines: `inc` takes the bar's lock and reads the clock, ~3% of a
            // 100k-line batch when done per line (even on a hidden bar).
            if (n + 1).is_multiple_of(1024) {
                pb.set_position(n as u64 + 1);
            }
        }
        pb.set_position(count as u64);
        pb.set_message("appending");
        timing::mark("staged");
        // The flush's helper thread hashes and encodes on the other CPU: faulting in the
        // flush's buffers there too slowed it down more than it saved (measured).
        drop(prefault);
        b.flush().await.map_err(|e| bee_err(dir, e))
    })?;
    timing::mark("appended");
    pb.finish_and_clear();
    let g = block_on(core.lock());
    let synced = g.storage().sync().map_err(|e| storage_err(dir, e));
    timing::mark("synced");
    synced
}

fn entry_json(e: &Entry<String, String>) -> serde_json::Value {
    serde_json::json!({"seq": e.seq, "key": e.key, "value": e.value})
}

/// `list`: the outer result is the output's, the inner the bee's.
async fn list<C: BeeCore>(
    db: &Hyperbee<C, Utf8, Utf8>,
    b: &Bounds,
    json: bool,
) -> Result<Result<(), BeeError>, CliError> {
    let mut it = db.create_read_stream(RangeOptions {
        gt: b.gt.as_deref(),
        gte: b.gte.as_deref(),
        lt: b.lt.as_deref(),
        lte: b.lte.as_deref(),
        reverse: b.reverse,
        limit: b.limit,
    });
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        let e = match it.next().await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => {
                out.flush().map_err(out_err)?;
                return Ok(Err(e));
            }
        };
        if json {
            writeln!(out, "{}", entry_json(&e))
        } else {
            writeln!(out, "{}\t{}", e.key, e.value.as_deref().unwrap_or(""))
        }
        .map_err(out_err)?;
    }
    out.flush().map_err(out_err)?;
    Ok(Ok(()))
}

async fn history(
    db: &LocalBee,
    opts: HistoryOptions,
    json: bool,
) -> Result<Result<(), BeeError>, CliError> {
    let mut it = match db.create_history_stream(opts) {
        Ok(it) => it,
        Err(e) => return Ok(Err(e)),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        let e = match it.next().await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => {
                out.flush().map_err(out_err)?;
                return Ok(Err(e));
            }
        };
        let kind = if e.kind == HistoryType::Put {
            "put"
        } else {
            "del"
        };
        if json {
            let v = serde_json::json!({"type": kind, "seq": e.seq, "key": e.key, "value": e.value});
            writeln!(out, "{v}")
        } else if e.kind == HistoryType::Put {
            let v = e.value.as_deref().unwrap_or("");
            writeln!(out, "put\t{}\t{}\t{v}", e.seq, e.key)
        } else {
            writeln!(out, "del\t{}\t{}", e.seq, e.key)
        }
        .map_err(out_err)?;
    }
    out.flush().map_err(out_err)?;
    Ok(Ok(()))
}

fn info(dir: &Path, json: bool) -> Result<(), CliError> {
    let db = open_bee(dir)?;
    let st = block_on(db.core().state());
    let key = hex::encode(block_on(db.key()));
    let header = block_on(db.get_header()).map_err(|e| bee_err(dir, e))?;
    let meta = header.as_ref().and_then(|h| h.metadata.clone());
    let content = meta
        .as_ref()
        .and_then(|m| m.content_feed.as_ref())
        .map(hex::encode);
    let user = meta
        .as_ref()
        .and_then(|m| m.user_data.as_ref())
        .map(hex::encode);
    let version = st.length.max(1);
    if json {
        let v = serde_json::json!({
            "key": key, "version": version, "length": st.length, "fork": st.fork,
            "writable": st.writable, "header": header.is_some(),
            "contentFeed": content, "userData": user,
        });
        println!("{v}");
        return Ok(());
    }
    println!("key:         {key}");
    println!(
        "version:     {version} ({} blocks, fork {})",
        st.length, st.fork
    );
    println!(
        "writable:    {}",
        if st.writable {
            "yes"
        } else {
            "no (a read-only copy)"
        }
    );
    match &header {
        None => println!("header:      none yet (an empty core; the first write adds it)"),
        Some(_) => println!("header:      hyperbee"),
    }
    if let Some(c) = content {
        println!("contentFeed: {c}");
    }
    if let Some(u) = user {
        println!("userData:    {u}");
    }
    Ok(())
}

/// Maps a bee error of a remote read to a CLI error.
type RemoteErr = Box<dyn FnOnce(BeeError) -> CliError + Send>;

/// Open (or create, with --key) a reader copy in `dir`, connect to `addr`, run `f` on the bee
/// read through the connection (blocks are downloaded as `f` needs them), then disconnect.
fn with_remote<T, F, Fut>(dir: &Path, remote: &Remote, addr: &str, f: F) -> Result<T, CliError>
where
    F: FnOnce(Hyperbee<HubCore<FileStorage>, Utf8, Utf8>, RemoteErr) -> Fut,
    Fut: std::future::Future<Output = Result<T, CliError>>,
{
    let key = remote
        .core_key
        .as_deref()
        .map(|k| parse_hex32("--key", k))
        .transpose()?;
    let core = open_or_create_copy(dir, key)?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| CliError::new(format!("cannot get randomness: {e}")))?;
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(core, Options::default()))
        .map_err(|e| CliError::new(format!("cannot replicate the core: {e}")))?;
    let hub = SharedHub::new(hub);
    let timeout = Duration::from_secs(remote.timeout.max(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let socket = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| CliError::new(format!("connecting to {addr} timed out")))?
            .map_err(|e| CliError::new(format!("cannot connect to {addr}: {e}")))?;
        let _ = socket.set_nodelay(true);
        let conn = tokio::spawn({
            let hub = hub.clone();
            async move { replicate(socket, true, KeyPair::from_seed(&seed), &hub).await }
        });
        let core = HubCore::new(hub.clone(), dk)
            .with_block_timeout(Some(timeout))
            .with_update_timeout(timeout);
        let db = Hyperbee::new(core.clone()).with_codecs(Utf8, Utf8);
        // Wait for the peer's length before reading (an empty copy knows none).
        core.update().await.map_err(|e| core_err(dir, e))?;
        if core.state().await.length == 0 {
            return Err(CliError::new(format!(
                "{addr} did not announce the core within {} s (is it serving this key?)",
                timeout.as_secs()
            )));
        }
        check_remote_bee(dir, &core).await?;
        let (d, a, secs) = (dir.to_path_buf(), addr.to_string(), timeout.as_secs());
        let err: RemoteErr = Box::new(move |e| match e {
            BeeError::BlockNotAvailable(seq) => CliError::new(format!(
                "block {seq} did not arrive from {a} within {secs} s"
            )),
            e => bee_err(&d, e),
        });
        let out = f(db, err).await;
        hub.end_all().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        let g = hub.lock().await;
        if let Some(r) = g.replicator(&dk) {
            r.core().storage().sync().map_err(|e| storage_err(dir, e))?;
        }
        out
    })
}

async fn check_remote_bee(dir: &Path, core: &HubCore<FileStorage>) -> Result<(), CliError> {
    match Hyperbee::is_hyperbee(core).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(not_a_bee(dir)),
        Err(e) => Err(bee_err(dir, e)),
    }
}

/// The copy in `dir`, or a new reader core for `key` there.
fn open_or_create_copy(
    dir: &Path,
    key: Option<[u8; 32]>,
) -> Result<Hypercore<FileStorage>, CliError> {
    let existed = dir.is_dir();
    if existed {
        if let Ok(core) = open_core(dir) {
            if key.is_some_and(|k| k != *core.key()) {
                return Err(CliError::new(format!(
                    "{} already holds a different core ({})",
                    dir.display(),
                    hex::encode(core.key())
                )));
            }
            return Ok(core);
        }
    }
    let Some(key) = key else {
        return Err(CliError::new(format!(
            "no core in {}: give the core's --key to make a copy there",
            dir.display()
        )));
    };
    let storage = if existed {
        open_existing_storage(dir)?
    } else {
        let s = FileStorage::open(dir).map_err(|e| storage_err(dir, e))?;
        restrict(dir, 0o700)?;
        s
    };
    let mut core = block_on(Hypercore::create(
        storage,
        CreateOptions {
            key: Some(key),
            ..CreateOptions::default()
        },
    ))
    .map_err(|e| match e {
        HypercoreError::AlreadyExists => CliError::new(format!(
            "{} holds a core that cannot be opened",
            dir.display()
        )),
        e => core_err(dir, e),
    })?;
    // A first copy verifies its downloads on two threads too, as `open_core` gives later runs.
    core.set_join(hyperpunch::parallel::best_join());
    Ok(core)
}

#[cfg(test)]
mod tests {
    use super::super::args::Cli;
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "hyperpunch",
            "bee",
            "get",
            "--storage",
            "d",
            "--key",
            &"ab".repeat(32),
            "--tcp",
            "127.0.0.1:1",
            "k",
        ])
        .unwrap();
        assert!(format!("{cli:?}").contains("core_key"));
        assert!(
            Cli::try_parse_from(["hyperpunch", "bee", "get", "-s", "d", "--key", "x", "k"])
                .is_err(),
            "--key needs --tcp"
        );
        assert!(
            Cli::try_parse_from(["hyperpunch", "bee", "history", "-s", "d", "--gte", "-5"]).is_ok()
        );
    }
}
