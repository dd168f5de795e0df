//! `hyperpunch drive mirror|export|ls|cat|serve|fetch|info|truncate|purge`: a hyperdrive (JS hyperdrive
//! 13.3.4) in a corestore storage folder, mirrored from and to folders on disk
//! ([`hyperpunch::localdrive`] + [`hyperpunch::core::mirror_drive`]), and replicated over TCP
//! (db and blobs cores over one connection).
//!
//! Which drive of a storage folder: `--key` if given; else the store's own drive (its named
//! core `db`, as JS `new Hyperdrive(store)`); else the one drive fetched into it (a stored core
//! whose blobs core, derived from its manifest, is stored too).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use hyperpunch::core::corestore::{Corestore, CorestoreError, GetOptions, Namespace, PrimaryKey};
use hyperpunch::core::crypto::{discovery_key, KeyPair};
use hyperpunch::core::hyperbee::BeeCore;
use hyperpunch::core::hyperblobs::{BlobCore, BlobError, ReadRange};
use hyperpunch::core::hypercore::HypercoreError;
use hyperpunch::core::hyperdrive::{keys, DriveError, ListOptions};
use hyperpunch::core::mirror_drive::{
    Drive, Mirror, MirrorError, MirrorEvent, MirrorOp, MirrorOptions, MirrorReport, OpKind,
};
use hyperpunch::core::secretstream::Options as StreamOptions;
use hyperpunch::drive::{DriveCores, DriveOpenError, StoreDrive};
use hyperpunch::localdrive::Localdrive;
use hyperpunch::replicate::{replicate_with, SharedCorestore};
use hyperpunch::swarm::JoinOptions;
use hyperpunch::FileStorage;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::net::{TcpListener, TcpStream};

use super::args::SwarmArgs;
use super::net_cmd::{start_swarm, swarm_serve_loop};
use super::store::{core_err, restrict, storage_err};
use super::{parse_hex32, timing, CliError};

mod mirror;
mod net;

use mirror::*;
use net::*;

/// `hyperpunch drive --help`.
pub const DRIVE_LONG: &str = "\
A hyperdrive: a file system in two hypercores (a db of entries and a blobs core of contents),
byte for byte as JavaScript's hyperdrive 13.3.4 writes it, kept in a corestore storage folder
(--storage). The drive's key is its db core's key; JS opens it with `new Hyperdrive(store, key)`.

`mirror` makes the drive hold what a folder holds (creating the drive and the storage folder the
first time, and printing the drive key); `export` writes the drive's files into a folder; `ls`,
`cat` and `info` read it; `truncate` cuts it back to a version and `purge` deletes it; `serve`
shares it (over TCP, or on the DHT by its discovery key with
--swarm) and `fetch` copies someone's drive (db and blobs, over one connection per peer) into a
storage folder.

Examples:
  KEY=$(hyperpunch drive mirror ./site --storage ./store)   # folder -> drive, prints the key
  hyperpunch drive ls --storage ./store /docs
  hyperpunch drive cat --storage ./store /docs/index.html
  hyperpunch drive info --storage ./store --json
  hyperpunch drive serve --storage ./store --tcp 127.0.0.1:7000 &
  hyperpunch drive fetch --storage ./copy --key $KEY --tcp 127.0.0.1:7000
  hyperpunch drive export --storage ./copy ./site-copy                  # drive -> folder
  hyperpunch drive serve --storage ./store --swarm --bootstrap HOST:PORT   # as `drives seed`
  hyperpunch drive fetch --storage ./copy --key $KEY --swarm --bootstrap HOST:PORT

Compared with JS's `drives` CLI: drives take a folder path or key as arguments (`drives mirror
<src> <dst>`, `drives ls <key>`) and find their storage in `.drives`; here the storage folder is
always --storage, `mirror` is folder->drive and `export` drive->folder, `cat` is `drives get`,
`fetch` is `drives download` (over --tcp, or the DHT with --swarm), `serve` replicates (JS
`drives serve` is an HTTP server; `serve --swarm` is `drives seed`), `truncate` and `purge`
are hyperdrive's `truncate` and `purge` (`drives purge` clears local blocks). `--live`, `put`,
`rm`, `entry`, `touch` are not here.";

/// The storage folder of a drive.
#[derive(Debug, Args)]
pub struct DriveStorage {
    /// Corestore storage folder holding the drive.
    #[arg(long, short = 's', value_name = "DIR")]
    pub storage: PathBuf,
}

/// Which drive of the storage folder.
#[derive(Debug, Args)]
pub struct WhichDrive {
    /// The drive's key (64 hex characters), when the storage folder holds several.
    #[arg(long = "key", value_name = "HEX32")]
    pub key: Option<String>,
}

/// Options of the mirror commands.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Show what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Leave out this path (and everything below it); repeatable.
    #[arg(long, value_name = "PATH")]
    pub ignore: Vec<String>,
    /// Mirror only this folder (or file) of the source; repeatable.
    #[arg(long, value_name = "PATH")]
    pub prefix: Vec<String>,
    /// Print every change (`+ /path 12 B`, `- ...`, `~ ...`) on stderr.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// `hyperpunch drive ...`
#[derive(Debug, Subcommand)]
pub enum DriveCommand {
    /// Make the drive hold what folder DIR holds; print the drive's key.
    #[command(long_about = "\
Mirror the folder DIR into the drive in --storage (JS `new MirrorDrive(new Localdrive(DIR),
drive)`): files the drive lacks or holds with other contents, executable bit or symlink target
are written, and (unless --no-prune) files only the drive has are removed. The first mirror
creates the storage folder and the drive. Prints the drive key (64 hex characters) on stdout;
progress and the summary (`+added -removed ~changed`) go to stderr. Running it again after an
interruption completes the drive; running it on an unchanged folder writes nothing.

Examples:
  hyperpunch drive mirror ./site --storage ./store
  hyperpunch drive mirror ./site --storage ./store --dry-run -v
  hyperpunch drive mirror ./repo --storage ./store --ignore /.git --ignore /node_modules")]
    Mirror {
        /// The folder to mirror.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        storage: DriveStorage,
        #[command(flatten)]
        mirror: MirrorArgs,
        /// Keep files the drive has and the folder does not.
        #[arg(long)]
        no_prune: bool,
    },
    /// Write the drive's files into folder DIR.
    #[command(long_about = "\
Mirror the drive into the folder DIR (created if needed): files DIR lacks or holds with other
contents, executable bit or symlink target are written (each into a temporary file renamed into
place). Files only DIR has are kept unless --prune. Symlinks to drive paths (`/x`) point into
DIR. The summary goes to stderr.

Examples:
  hyperpunch drive export --storage ./copy ./site
  hyperpunch drive export --storage ./copy ./site --prefix /docs --prune")]
    Export {
        #[command(flatten)]
        storage: DriveStorage,
        /// The folder to write into.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        which: WhichDrive,
        #[command(flatten)]
        mirror: MirrorArgs,
        /// Remove files DIR has and the drive does not.
        #[arg(long)]
        prune: bool,
    },
    /// Print every file under PATH (default /), recursively, one path a line.
    #[command(long_about = "\
Print the path of every file (and symlink) under PATH, recursively, in key order, one a line,
as JS `drive.list(PATH)` gives them. --long adds the size, `x` for executables and `-> TARGET`
for symlinks; --json prints one {\"key\", \"seq\", \"value\"} object per line.

Examples:
  hyperpunch drive ls --storage ./store
  hyperpunch drive ls --storage ./store /docs --long")]
    Ls {
        #[command(flatten)]
        storage: DriveStorage,
        /// The folder to list.
        #[arg(value_name = "PATH", default_value = "/")]
        path: String,
        #[command(flatten)]
        which: WhichDrive,
        /// Size, executable bit and symlink targets too.
        #[arg(long, short = 'l')]
        long: bool,
        /// One JSON object per line.
        #[arg(long, conflicts_with = "long")]
        json: bool,
    },
    /// Write the contents of the file PATH to stdout.
    #[command(long_about = "\
Write the contents of the file PATH (following symlinks, a relative target from the link's
folder) to stdout, or the bytes --start..--end
(inclusive) / --length bytes from --start. Exits with status 1 when PATH is not a file.

Examples:
  hyperpunch drive cat --storage ./store /docs/index.html
  hyperpunch drive cat --storage ./store /video.mp4 --start 1048576 --length 4096 > part")]
    Cat {
        #[command(flatten)]
        storage: DriveStorage,
        /// The file.
        #[arg(value_name = "PATH")]
        path: String,
        #[command(flatten)]
        which: WhichDrive,
        /// First byte.
        #[arg(long, value_name = "N")]
        start: Option<u64>,
        /// Last byte (inclusive).
        #[arg(long, value_name = "N")]
        end: Option<u64>,
        /// Number of bytes (wins over --end).
        #[arg(long, value_name = "N")]
        length: Option<u64>,
    },
    /// Share the drive with every client of --tcp, or every peer of --swarm, until killed.
    #[command(long_about = "\
Serve the drive over TCP (--tcp), or announce it on the DHT (--swarm): every peer that connects
replicates the store (the drive's db and blobs cores over one secret-stream connection, JS
`store.replicate(stream)`), so `drive fetch` or a JS `Hyperdrive(store, key)` on the other end
can read it. With --tcp, prints `listening on ADDR` on stdout once listening; with --swarm
(and --bootstrap, or HYPERPUNCH_BOOTSTRAP), joins the drive's discovery key as JS `drives seed`
does (`swarm.join(drive.discoveryKey)`) and prints `announced DISCOVERY_KEY` once announced.
The drive key goes to stderr.

Examples:
  hyperpunch drive serve --storage ./store --tcp 127.0.0.1:7000
  hyperpunch drive serve --storage ./store --swarm --bootstrap dht.example.org:49737")]
    #[command(group(clap::ArgGroup::new("source").required(true).args(["tcp", "swarm"])))]
    Serve {
        #[command(flatten)]
        storage: DriveStorage,
        /// Address to listen on, HOST:PORT.
        #[arg(long, value_name = "ADDR")]
        tcp: Option<String>,
        #[command(flatten)]
        swarm: SwarmArgs,
        #[command(flatten)]
        which: WhichDrive,
    },
    /// Copy the drive KEY (db and blobs) from a peer at --tcp, or the peers of --swarm.
    #[command(long_about = "\
Connect to the peer at --tcp (a `drive serve`, or a JS store replicating the drive), or find
the drive's peers on the DHT by its discovery key (--swarm, with --bootstrap or
HYPERPUNCH_BOOTSTRAP: a `drive serve --swarm`, JS `drives seed`, or any JS hyperswarm that
joined `drive.discoveryKey` and replicates its store), and copy the drive with key --key into
--storage (created if needed): its db core and its whole blobs core, over one connection per
peer. Shows progress on stderr and exits once everything is stored. The copy is read-only;
`ls`, `cat`, `export` and `info` then read it without the peer, and `serve` shares it again.

Examples:
  hyperpunch drive fetch --storage ./copy --key $KEY --tcp 127.0.0.1:7000
  hyperpunch drive fetch --storage ./copy --key $KEY --swarm --bootstrap dht.example.org:49737")]
    #[command(group(clap::ArgGroup::new("source").required(true).args(["tcp", "swarm"])))]
    Fetch {
        #[command(flatten)]
        storage: DriveStorage,
        /// The drive's key (64 hex characters).
        #[arg(long = "key", value_name = "HEX32")]
        key: String,
        /// The peer, HOST:PORT.
        #[arg(long, value_name = "ADDR")]
        tcp: Option<String>,
        #[command(flatten)]
        swarm: SwarmArgs,
        /// Give up when nothing arrives for this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        timeout: u64,
    },
    /// Print the drive's key, discovery key, version and blobs key.
    #[command(long_about = "\
Print the drive's key, discovery key, version (its db core's length), the blobs core's key (JS
`contentKey`), whether this storage can write it, and how much of it is stored. --json prints
one object: {key, discoveryKey, version, contentKey, blobsKey (the same), writable, dbLength,
blobsLength, blobsByteLength, files}.

Example:
  hyperpunch drive info --storage ./store --json")]
    Info {
        #[command(flatten)]
        storage: DriveStorage,
        #[command(flatten)]
        which: WhichDrive,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Cut the drive back to VERSION: files written after it are gone.
    #[command(long_about = "\
Truncate the drive this storage writes to VERSION (JS `drive.truncate(version, { blobs })`):
its db core is cut to VERSION blocks, then its blobs core to the end of the last blob that
version's files point at (JS `getBlobsLength`), or to --blobs blocks. Both cores move to their
next fork and are signed again; files written after VERSION are gone, later writes go on from
there, and peers replicating the drive are told. `drive info` shows the version; `drive ls
--json` shows each entry's `seq` (the entry at seq S is there from version S + 1). As JS,
VERSION 0 empties the db but keeps the blobs the current version needs. A VERSION or --blobs
past the core's length is refused and nothing changes. Only a drive this storage can write
(not a `fetch`ed copy). Prints the new db and blobs lengths on stderr.

Examples:
  hyperpunch drive truncate --storage ./store 12
  hyperpunch drive truncate --storage ./store 12 --blobs 40")]
    Truncate {
        #[command(flatten)]
        storage: DriveStorage,
        /// The version to go back to (the db core's new length).
        #[arg(value_name = "VERSION")]
        version: u64,
        /// The blobs core's new length (default: what VERSION's files need).
        #[arg(long, value_name = "N")]
        blobs: Option<u64>,
        #[command(flatten)]
        which: WhichDrive,
    },
    /// Delete the drive (its db and blobs cores) from the storage folder.
    #[command(long_about = "\
Delete the drive from the storage folder (JS `drive.purge()`): the records of its db core and
its blobs core (every block, tree node and record of them) go in one atomic write, so a kill
leaves the whole drive or none of it; the store's other cores stay. The store's own drive made
again by `drive mirror` then starts empty, under the same key. Works on a `fetch`ed copy too,
and on a db core an interrupted purge of an older version left without its blobs core.
The file contents are not erased from the disk: blocks of 8 KiB and more stay, unreferenced, in
the store's data file (`db.data`), which nothing shrinks yet; smaller ones until the store's
compaction drops them. Refuses without --yes. Prints the purged drive's key on stderr.

Examples:
  hyperpunch drive purge --storage ./store --yes
  hyperpunch drive purge --storage ./copy --key $KEY --yes")]
    Purge {
        #[command(flatten)]
        storage: DriveStorage,
        #[command(flatten)]
        which: WhichDrive,
        /// Really delete it.
        #[arg(long)]
        yes: bool,
    },
}

/// How long `fetch` waits for the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `fetch` waits for the peer to confirm the close after everything arrived.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// `serve`: drop a client that sends nothing for this long (keep-alives come every quarter).
const IDLE_TIMEOUT_MS: u64 = 60_000;

type Store = SharedCorestore<FileStorage>;

/// Run one `drive` subcommand.
pub fn run(cmd: DriveCommand) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async move {
        match cmd {
            DriveCommand::Mirror {
                dir,
                storage,
                mirror,
                no_prune,
            } => mirror_in(&dir, &storage.storage, &mirror, !no_prune).await,
            DriveCommand::Export {
                storage,
                dir,
                which,
                mirror,
                prune,
            } => export(&storage.storage, &dir, &which, &mirror, prune).await,
            DriveCommand::Ls {
                storage,
                path,
                which,
                long,
                json,
            } => ls(&storage.storage, &path, &which, long, json).await,
            DriveCommand::Cat {
                storage,
                path,
                which,
                start,
                end,
                length,
            } => {
                let range = ReadRange { start, end, length };
                cat(&storage.storage, &path, &which, range).await
            }
            DriveCommand::Serve {
                storage,
                tcp,
                swarm,
                which,
            } => {
                let source = source(tcp.as_deref(), &swarm);
                serve(&storage.storage, source, &which).await
            }
            DriveCommand::Fetch {
                storage,
                key,
                tcp,
                swarm,
                timeout,
            } => {
                let source = source(tcp.as_deref(), &swarm);
                fetch(
                    &storage.storage,
                    &key,
                    source,
                    Duration::from_secs(timeout.max(1)),
                )
                .await
            }
            DriveCommand::Info {
                storage,
                which,
                json,
            } => info(&storage.storage, &which, json).await,
            DriveCommand::Truncate {
                storage,
                version,
                blobs,
                which,
            } => truncate(&storage.storage, version, blobs, &which).await,
            DriveCommand::Purge {
                storage,
                which,
                yes,
            } => purge(&storage.storage, &which, yes).await,
        }
    })
}

/// Where `serve` and `fetch` find their peers.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// One TCP address (listened on, or connected to).
    Tcp(&'a str),
    /// The DHT, by the drive's discovery key (hyperswarm).
    Swarm(&'a SwarmArgs),
}

fn source<'a>(tcp: Option<&'a str>, swarm: &'a SwarmArgs) -> Source<'a> {
    match tcp {
        Some(addr) if !swarm.swarm => Source::Tcp(addr),
        _ => Source::Swarm(swarm),
    }
}

fn random32() -> Result<[u8; 32], CliError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| {
        CliError::new(format!(
            "cannot get randomness from the operating system: {e}"
        ))
    })?;
    Ok(b)
}

fn no_drive(dir: &Path) -> CliError {
    CliError::new(format!(
        "no drive in {} (make one with `hyperpunch drive mirror FOLDER --storage {}`, or copy \
         one with `hyperpunch drive fetch --storage {} --key KEY --tcp ADDR`)",
        dir.display(),
        dir.display(),
        dir.display()
    ))
}

fn store_err(dir: &Path, e: CorestoreError) -> CliError {
    match e {
        CorestoreError::Storage(s) => storage_err(dir, s),
        CorestoreError::Hypercore(h) => core_err(dir, h),
        CorestoreError::Corrupt(m) => CliError::corrupt(format!("corrupt corestore: {m}")),
        CorestoreError::NotFound(_) => no_drive(dir),
        other => CliError::new(other.to_string()),
    }
}

fn drive_err(dir: &Path, e: DriveError) -> CliError {
    match e {
        DriveError::Blob(BlobError::BlockNotAvailable(i))
        | DriveError::Blob(BlobError::Core(HypercoreError::BlockNotAvailable(i))) => {
            CliError::new(format!(
                "block {i} of the drive's contents is not stored in {} (fetch the drive with \
                 `hyperpunch drive fetch`)",
                dir.display()
            ))
        }
        DriveError::Bee(hyperpunch::core::hyperbee::BeeError::BlockNotAvailable(i)) => {
            CliError::new(format!(
                "block {i} of the drive's db is not stored in {} (fetch the drive with \
                 `hyperpunch drive fetch`)",
                dir.display()
            ))
        }
        DriveError::Blob(BlobError::Core(h)) => core_err(dir, h),
        e @ (DriveError::Bee(hyperpunch::core::hyperbee::BeeError::InvalidNode { .. })
        | DriveError::Bee(hyperpunch::core::hyperbee::BeeError::Corrupt { .. })
        | DriveError::Bee(hyperpunch::core::hyperbee::BeeError::Encoding { .. })
        | DriveError::Blob(BlobError::InvalidBlockMap { .. })
        | DriveError::Blob(BlobError::OutOfBounds { .. })) => {
            CliError::corrupt(format!("the drive is corrupt: {e}"))
        }
        other => CliError::new(other.to_string()),
    }
}

fn open_err(dir: &Path, e: DriveOpenError) -> CliError {
    match e {
        DriveOpenError::Store(s) => store_err(dir, s),
        DriveOpenError::Drive(d) => drive_err(dir, d),
        other => CliError::new(other.to_string()),
    }
}

fn mirror_err(dir: &Path, e: MirrorError) -> CliError {
    match e {
        MirrorError::Drive(d) => drive_err(dir, d),
        other => CliError::new(other.to_string()),
    }
}

/// The corestore in `dir`; created (folder mode 0700: it holds the secret keys) if `create`.
async fn open_store(dir: &Path, create: bool) -> Result<Store, CliError> {
    if !create && !dir.is_dir() {
        return Err(no_drive(dir));
    }
    if create && !dir.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::new(format!("cannot create {}: {e}", dir.display())))?;
        restrict(dir, 0o700)?;
    }
    let storage = FileStorage::open(dir).map_err(|e| storage_err(dir, e))?;
    let pk = if create {
        PrimaryKey::StoredOrNew(random32()?)
    } else {
        PrimaryKey::Stored
    };
    let store = Corestore::open(storage, pk)
        .await
        .map_err(|e| store_err(dir, e))?;
    Ok(SharedCorestore::new(store))
}

/// The drives stored in a store: keys of stored cores whose blobs core is stored too.
async fn stored_drives(store: &Store, dir: &Path) -> Result<Vec<[u8; 32]>, CliError> {
    let mut g = store.lock().await;
    let cores = g.list().await.map_err(|e| store_err(dir, e))?;
    let mut out = Vec::new();
    for c in &cores {
        let Ok(h) = g.get(GetOptions::from_discovery_key(c.discovery_key)).await else {
            continue;
        };
        let content = g
            .core(&h)
            .ok()
            .and_then(|core| core.manifest().cloned())
            .and_then(|m| keys::content_key(&m, &c.key));
        g.close_core(h).map_err(|e| store_err(dir, e))?;
        if let Some(ck) = content {
            if g.has_core(&discovery_key(&ck))
                .await
                .map_err(|e| store_err(dir, e))?
            {
                out.push(c.key);
            }
        }
    }
    Ok(out)
}

/// The drive key `--key` names, once its db core is known to be in the store.
async fn stored_key(store: &Store, dir: &Path, k: &str) -> Result<[u8; 32], CliError> {
    let key = parse_hex32("--key", k)?;
    let stored = store
        .lock()
        .await
        .has_core(&discovery_key(&key))
        .await
        .map_err(|e| store_err(dir, e))?;
    if !stored {
        return Err(CliError::new(format!(
            "the drive {k} is not in {} (copy it with `hyperpunch drive fetch`)",
            dir.display()
        )));
    }
    Ok(key)
}

/// The drive of a storage folder (see the module docs), for reading without peers.
async fn find_drive(
    store: &Store,
    dir: &Path,
    which: &WhichDrive,
) -> Result<(StoreDrive<FileStorage>, DriveCores), CliError> {
    let offline = hyperpunch::drive::DriveOptions::offline();
    if let Some(k) = &which.key {
        let key = stored_key(store, dir, k).await?;
        return hyperpunch::drive::open_remote_with(store, key, Duration::ZERO, offline)
            .await
            .map_err(|e| open_err(dir, e));
    }
    let has_local = store
        .lock()
        .await
        .list_names(&Namespace::ROOT)
        .await
        .map_err(|e| store_err(dir, e))?
        .iter()
        .any(|(n, _)| n == b"db");
    if has_local {
        return hyperpunch::drive::open_local_with(store, offline)
            .await
            .map_err(|e| open_err(dir, e));
    }
    let drives = stored_drives(store, dir).await?;
    match drives.as_slice() {
        [] => Err(no_drive(dir)),
        [key] => hyperpunch::drive::open_remote_with(store, *key, Duration::ZERO, offline)
            .await
            .map_err(|e| open_err(dir, e)),
        many => Err(CliError::new(format!(
            "{} holds {} drives; pick one with --key ({})",
            dir.display(),
            many.len(),
            many.iter().map(hex::encode).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// `drive ls [PATH]`.
async fn ls(
    dir: &Path,
    path: &str,
    which: &WhichDrive,
    long: bool,
    json: bool,
) -> Result<(), CliError> {
    let store = open_store(dir, false).await?;
    let (drive, _cores) = find_drive(&store, dir, which).await?;
    let mut it = drive
        .list(path, ListOptions::default())
        .map_err(|e| drive_err(dir, e))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(e) = it.next().await.map_err(|e| drive_err(dir, e))? {
        let line = if json {
            let value: serde_json::Value =
                serde_json::from_slice(&e.value.encode()).unwrap_or(serde_json::Value::Null);
            serde_json::json!({"key": e.key, "seq": e.seq, "value": value}).to_string()
        } else if long {
            match &e.value.linkname {
                Some(t) => format!("{:>12} l {} -> {t}", "-", e.key),
                None => format!(
                    "{:>12} {} {}",
                    e.byte_length(),
                    if e.value.executable { "x" } else { "-" },
                    e.key
                ),
            }
        } else {
            e.key
        };
        if writeln!(out, "{line}").is_err() {
            return Ok(()); // stdout closed (`| head`)
        }
    }
    let _ = out.flush();
    Ok(())
}

/// `drive cat PATH`.
async fn cat(dir: &Path, path: &str, which: &WhichDrive, range: ReadRange) -> Result<(), CliError> {
    let store = open_store(dir, false).await?;
    let (drive, _cores) = find_drive(&store, dir, which).await?;
    let entry = follow(&drive, path).await.map_err(|e| drive_err(dir, e))?;
    let Some(entry) = entry else {
        let mut below = drive
            .list(path, ListOptions::default())
            .map_err(|e| drive_err(dir, e))?;
        if below.next().await.map_err(|e| drive_err(dir, e))?.is_some() {
            return Err(CliError::new(format!("{path} is a folder in the drive")));
        }
        return Err(CliError::new(format!("no such file in the drive: {path}")));
    };
    let mut r = drive
        .entry_reader(&entry, range)
        .await
        .map_err(|e| drive_err(dir, e))?;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = r
        .next()
        .await
        .map_err(|e| drive_err(dir, DriveError::Blob(e)))?
    {
        if out.write_all(&chunk).is_err() {
            return Ok(());
        }
    }
    let _ = out.flush();
    Ok(())
}

/// The entry at `path`, following symlinks as a file system does: a relative target resolves
/// against the link's folder (JS `entry(path, { follow: true })` resolves it against the link's
/// own path, so `/a/l -> b` would name `/a/l/b`), at most 16 hops.
async fn follow(
    drive: &StoreDrive<FileStorage>,
    path: &str,
) -> Result<Option<hyperpunch::core::hyperdrive::DriveEntry>, DriveError> {
    let mut name = path.to_string();
    for _ in 0..16 {
        let Some(e) = drive.entry(&name).await? else {
            return Ok(None);
        };
        let Some(target) = &e.value.linkname else {
            return Ok(Some(e));
        };
        let parent = match e.key.rfind('/') {
            Some(0) | None => "/",
            Some(i) => &e.key[..i],
        };
        name = hyperpunch::core::hyperdrive::path::resolve_from(parent, target)?;
    }
    Err(DriveError::RecursiveSymlink(path.to_string()))
}

/// `drive info`.
async fn info(dir: &Path, which: &WhichDrive, json: bool) -> Result<(), CliError> {
    let store = open_store(dir, false).await?;
    let (drive, _cores) = find_drive(&store, dir, which).await?;
    let key = drive.key().await;
    let content = drive.content_key().await;
    let db = drive.db().state().await;
    let blobs = drive.blobs().core();
    let blobs_len = blobs.state().await.length;
    let blobs_bytes = BlobCore::byte_length(blobs).await;
    let blobs_stored = blobs.stored_blocks().await.map_err(|e| core_err(dir, e))?;
    let db_stored = drive
        .db()
        .stored_blocks()
        .await
        .map_err(|e| core_err(dir, e))?;
    let mut files = None;
    if db_stored == db.length {
        let mut n = 0u64;
        let mut it = drive
            .list("/", ListOptions::default())
            .map_err(|e| drive_err(dir, e))?;
        while it.next().await.map_err(|e| drive_err(dir, e))?.is_some() {
            n += 1;
        }
        files = Some(n);
    }
    let version = drive.version().await;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "key": hex::encode(key),
                "discoveryKey": hex::encode(discovery_key(&key)),
                "version": version,
                "contentKey": hex::encode(content),
                "blobsKey": hex::encode(content),
                "writable": db.writable,
                "dbLength": db.length,
                "dbStored": db_stored,
                "blobsLength": blobs_len,
                "blobsStored": blobs_stored,
                "blobsByteLength": blobs_bytes,
                "files": files,
            })
        );
    } else {
        println!("key:            {}", hex::encode(key));
        println!("discovery key:  {}", hex::encode(discovery_key(&key)));
        println!("version:        {version}");
        println!("blobs key:      {} (JS contentKey)", hex::encode(content));
        println!("writable:       {}", if db.writable { "yes" } else { "no" });
        println!("db core:        {db_stored}/{} blocks stored", db.length);
        println!(
            "blobs core:     {blobs_stored}/{blobs_len} blocks stored, {}",
            bytes(blobs_bytes)
        );
        match files {
            Some(n) => println!("files:          {n}"),
            None => println!("files:          (the db is not all stored)"),
        }
    }
    Ok(())
}

/// `drive truncate VERSION [--blobs N]`.
async fn truncate(
    dir: &Path,
    version: u64,
    blobs: Option<u64>,
    which: &WhichDrive,
) -> Result<(), CliError> {
    let store = open_store(dir, false).await?;
    let (drive, _cores) = find_drive(&store, dir, which).await?;
    match drive.truncate(version, blobs).await {
        Ok(()) => {}
        Err(DriveError::NotWritable) => {
            return Err(CliError::new(format!(
                "the drive in {} is not writable here (a copy of someone else's drive)",
                dir.display()
            )))
        }
        Err(e @ DriveError::BadTruncationLength { .. }) => {
            return Err(CliError::new(e.to_string()))
        }
        Err(e) => return Err(drive_err(dir, e)),
    }
    let db = drive.db().state().await.length;
    let blobs = drive.blobs().core().state().await.length;
    eprintln!("truncated to version {version}: db {db} blocks, blobs {blobs} blocks");
    Ok(())
}

/// The db cores of drives whose blobs core is not stored: what a purge interrupted between
/// its two cores left (before purges were one batch). A drive's db is told from other cores by
/// its first block: a hyperbee header with metadata (hyperdrive writes `contentFeed`).
async fn orphan_drive_dbs(store: &Store, dir: &Path) -> Result<Vec<[u8; 32]>, CliError> {
    let mut g = store.lock().await;
    let cores = g.list().await.map_err(|e| store_err(dir, e))?;
    let mut out = Vec::new();
    for c in &cores {
        let Ok(h) = g.get(GetOptions::from_discovery_key(c.discovery_key)).await else {
            continue;
        };
        let mut orphan = false;
        if let Ok(core) = g.core(&h) {
            let content = core.manifest().and_then(|m| keys::content_key(m, &c.key));
            let header = match core.has(0) {
                true => core.get(0).await.ok().flatten(),
                false => None,
            };
            let is_drive_db = header
                .and_then(|raw| hyperpunch::core::hyperbee::Header::decode(&raw).ok())
                .is_some_and(|h| h.metadata.is_some());
            if let (true, Some(ck)) = (is_drive_db, content) {
                orphan = !g
                    .has_core(&discovery_key(&ck))
                    .await
                    .map_err(|e| store_err(dir, e))?;
            }
        }
        g.close_core(h).map_err(|e| store_err(dir, e))?;
        if orphan {
            out.push(c.key);
        }
    }
    Ok(out)
}

/// The key of the drive `drive purge` deletes: as [`find_drive`] finds it, without opening it
/// (a drive left half-purged cannot be opened), or the one db core a half-done purge left.
async fn purge_target(store: &Store, dir: &Path, which: &WhichDrive) -> Result<[u8; 32], CliError> {
    if let Some(k) = &which.key {
        let key = stored_key(store, dir, k).await?;
        return Ok(key);
    }
    {
        let g = store.lock().await;
        let local = g
            .list_names(&Namespace::ROOT)
            .await
            .map_err(|e| store_err(dir, e))?
            .into_iter()
            .find(|(n, _)| n == b"db");
        if let Some((_, dk)) = local {
            if let Some(c) = g.find(&dk).await.map_err(|e| store_err(dir, e))? {
                return Ok(c.key);
            }
        }
    }
    let mut drives = stored_drives(store, dir).await?;
    if drives.is_empty() {
        drives = orphan_drive_dbs(store, dir).await?;
    }
    match drives.as_slice() {
        [] => Err(no_drive(dir)),
        [key] => Ok(*key),
        many => Err(CliError::new(format!(
            "{} holds {} drives; pick one with --key ({})",
            dir.display(),
            many.len(),
            many.iter().map(hex::encode).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// `drive purge --yes`.
async fn purge(dir: &Path, which: &WhichDrive, yes: bool) -> Result<(), CliError> {
    let store = open_store(dir, false).await?;
    let key = purge_target(&store, dir, which).await?;
    let hex_key = hex::encode(key);
    if !yes {
        return Err(CliError::new(format!(
            "this deletes the drive {hex_key} (its db and blobs cores) from {}; add --yes to do \
             it",
            dir.display()
        )));
    }
    hyperpunch::drive::purge_stored(&store, key)
        .await
        .map_err(|e| store_err(dir, e))?;
    eprintln!("purged drive {hex_key}");
    Ok(())
}
