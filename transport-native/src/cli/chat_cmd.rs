//! `hyperpunch chat`: a multi-writer chat room on autobase (the sans-IO engine in
//! `hyperpunch_core::autobase`) and a corestore in a storage folder, replicated over TCP.
//!
//! The room is an autobase whose bootstrap is the creator's `local` writer core. Every oplog value
//! is a JSON object: `{"type":"message","text":...}` or `{"type":"add","key":<hex>}`; the apply
//! function adds writers (indexers when asked) and appends `{"from":<hex>,"text":...}` to the view
//! `messages`. The creator is the first indexer; `/add-indexer KEY` adds indexers (the value
//! carries `"indexer":true`). Indexers ack, so messages are indexed in one order that every member
//! shows. When is the engine's decision (`Autobase::poll_ack`, JS autobase's ack timer:
//! `ackInterval`, 10 s by default or `--ack-interval MS`, and `ackThreshold`); this driver only
//! wakes it at `Autobase::ack_timeout` and appends what it returns: a pending indexer's first
//! ack at once, then an indexer's acks when its timer runs out and `shouldAck` asks for one,
//! when its checkpoint signs less than is indexed, or, when messages waited unindexed and
//! nothing moved for a whole interval (crossed acks, which `shouldAck` does not see), the ack
//! that moves it on (`Autobase::stall_ack`). While the creator is the room's only indexer it also
//! writes and signs the system core and the view core as JS does (`hyperpunch::autobase_index`),
//! so that a new member fast-forwards to them; after an indexer change every indexer signs the
//! moved cores.
//!
//! A new member (`--invite`) reads the room's signed system core first and, when it is at least
//! 16 blocks ahead (JS `FastForward.MINIMUM`), starts from its point instead of linearizing every
//! oplog (`hyperpunch::autobase_ff`): the messages below the point come from the view core, the
//! oplogs are downloaded only past it, and the point is stored in the member's folder, so that a
//! restart resumes from it. A member restarted, or running, that is 16 signed system blocks
//! behind what it indexed fast-forwards again the same way (the engine decides:
//! `Autobase::fast_forward_worth`), its newer point replacing the stored one. A running member
//! looks when its peers announce the signed system core 16 blocks past what it indexed (printing
//! `looking for a newer fast-forward point ...`; a member that holds no system core yet looks
//! when 16 oplog entries it has not linearized are known). A member that
//! fast-forwarded downloads the system and view cores' blocks below its point from its peers
//! (`IndexerCores::seed_from_point`, printing `holding the room's signed cores below the
//! fast-forward point ...`) and keeps the cores from there as the others do, so that once it is
//! an indexer it writes and signs them too (until then the engine keeps what it indexes past
//! the point).
//!
//! An open room (`--optimistic`, remembered in the folder as `autobase-open`) is an optimistic
//! base (JS `optimistic: true`): a member not added writes each message with
//! `Autobase::append_optimistic`, the room's apply (`hyperpunch::chat::apply`) keeps it by adding
//! its writer, and its oplog reaches the others through the wakeup channel (announced, hinted).
//!
//! An encryption key that does not fit the room (the creator's first entry does not decode with
//! it, or the fast-forward read says so) stops the chat with an error saying so; a run that was
//! joining the room takes back what it created in its folder.
//!
//! (About 1,400 lines: the command's arguments and `--help`, the `Room` (its cores, the engine and
//! the indexer's signed cores) and the one event loop of a member; the protocol decisions are the
//! engine's (`core::autobase`) and the indexer's cores are `crate::autobase_index`. `Room` is the
//! next cut if it grows.)

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use hyperpunch::autobase_ff::{
    self, read_fast_forward_past, FastForwardPoint, FastForwardReadError,
};
use hyperpunch::autobase_index::IndexerCores;
use hyperpunch::core::autobase::acks::AckConfig;

/// The chat's ack interval by default: 1 s. JS autobase's own default
/// (`DEFAULT_ACK_INTERVAL`, 10 s) suits a library whose views show unindexed entries; the chat
/// prints a message once it is ordered for good, which waits for an indexer's ack, so on JS's
/// default a member's message would take 10 to 40 s to appear. An idle room still writes no acks.
const CHAT_ACK_INTERVAL: u64 = 1_000;
use hyperpunch::core::autobase::driver::OplogCores;
use hyperpunch::core::autobase::encryption::view_block_key;
use hyperpunch::core::autobase::fast_forward::FastForwardError;
use hyperpunch::core::autobase::messages::OplogMessage;
use hyperpunch::core::autobase::wakeup::HubWakeup;
use hyperpunch::core::autobase::{ApplyNode, Autobase, Host, Views};
use hyperpunch::core::corestore::{CoreHandle, Corestore, CorestoreError, GetOptions, PrimaryKey};
use hyperpunch::core::crypto::{discovery_key, KeyPair};
use hyperpunch::core::encoding::Encode;
use hyperpunch::core::hypercore::HypercoreError;
use hyperpunch::core::rng::Rng;
use hyperpunch::replicate::{replicate, SharedCorestore};
use hyperpunch::swarm::JoinOptions;
use hyperpunch::FileStorage;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use super::args::SwarmArgs;
use super::net_cmd::{start_swarm, swarm_serve_loop};
use super::store::storage_err;
use super::{parse_hex32, CliError};

/// `hyperpunch chat --help`.
pub const CHAT_LONG: &str = "\
A multi-writer chat room on autobase: every member writes to its own log, the room's indexers (the
creator, and whom it adds as indexers) order them, and every member shows the messages in the same order.

The first run in a storage folder creates a room and prints its key (the room key) and your writer
key. Others join with `--invite ROOM`; they print their writer key, and the creator adds them by
typing `/add KEY`, or `/add-indexer KEY` to make them indexers too (they print \"you are an indexer
of this room\" once they count): with three indexers the room goes on ordering messages while any
two of them are online. Lines typed on stdin are sent as messages. Members find each other on the DHT
with `--bootstrap NODES` (hyperswarm: every member joins the room's discovery key, as server and
client, and replicates with every member it meets), or over TCP: one side `--listen`s, the other
connects with `--tcp` (several members can connect to one listener, and a member can listen and
connect at once). A new member of a room with many messages fast-forwards: it starts from the
point the room's indexers signed (printing `fast-forwarded to system length ...`), reads the
messages before it from the room's view, and remembers that point for its restarts; a member
that falls 16 signed system blocks behind, restarted or running, fast-forwards again. `--dump`
prints the room's messages held in the folder, one a line, and exits.

An open room (`--optimistic` when it is created; JS autobase `optimistic: true`): anyone who has
the room key can write in it, no `/add` needed. A member that was never added sends its messages as
optimistic entries, and the room's apply keeps such a message by adding its writer: the member is a
writer from its first message on (its `/add`s wait until then: a non-member cannot add others).
Every member of an open room passes `--optimistic` too (each member's apply must agree, as in JS),
remembered in its folder; a room created without it stays closed (a non-member's optimistic entries
are ignored).

Indexers acknowledge what they have seen (acks: entries without a message) on JS autobase's ack
timer: every 1 to 2 s by default (`--ack-interval MS`: every MS to 2 x MS ms; JS autobase's
library default is 10000), pushed back while other
members keep writing (at most 2 to 4 minutes) and brought forward after a run of updates; a
message from a member that is not an indexer is ordered for good once enough indexers acked
it, so it appears after about one interval. An idle room writes no acks.

Each member's log is an autobase 7.28.1 oplog; a message is the JSON value
{\"type\":\"message\",\"text\":...} and an addition {\"type\":\"add\",\"key\":...[,\"indexer\":true]}. A JS autobase member with the same apply
function joins a hyperpunch room, and a hyperpunch member joins a room a JS autobase created
(`--invite` its bootstrap key, tested: tests/interop/autobase-chat.js).

Examples:
  hyperpunch chat --storage ./alice --bootstrap dht.example.org:49737
  hyperpunch chat --storage ./bob --invite ROOM --bootstrap dht.example.org:49737
  hyperpunch chat --storage ./alice --listen 127.0.0.1:7100
  hyperpunch chat --storage ./bob --invite ROOM --tcp 127.0.0.1:7100
  hyperpunch chat --storage ./alice --listen 127.0.0.1:7100 --optimistic    (an open room)
  hyperpunch chat --storage ./bob --invite ROOM --tcp 127.0.0.1:7100 --optimistic
  hyperpunch chat --storage ./alice --dump";

/// `hyperpunch chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Folder holding your writer, the room's logs and the room key (created if missing).
    #[arg(long, short = 's', value_name = "DIR")]
    pub storage: PathBuf,
    /// Join the room with this key (64 hex characters), remembered in the folder.
    #[arg(long, value_name = "ROOM")]
    pub invite: Option<String>,
    /// Connect to a member listening at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub tcp: Option<String>,
    /// Accept members on HOST:PORT (port 0: any free port, printed).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Find the room's members on the DHT (hyperswarm, by the room's discovery key) through
    /// these bootstrap nodes, HOST:PORT[,HOST:PORT...].
    #[arg(long, value_name = "NODES")]
    pub bootstrap: Option<String>,
    /// With --bootstrap: the local address to bind the DHT node on (default 0.0.0.0).
    #[arg(
        long,
        value_name = "IP",
        default_value = "0.0.0.0",
        requires = "bootstrap"
    )]
    pub host: std::net::Ipv4Addr,
    /// Print the room's messages held in the folder, one a line, and exit.
    #[arg(long)]
    pub dump: bool,
    /// The room's encryption key, 64 hex characters (JS autobase `encryptionKey`): every core of
    /// the room is stored and replicated encrypted with it; every member needs it. Remembered in
    /// the folder. After `/add-indexer` the room's cores move to the indexers, encrypted as
    /// before, as JS autobase moves them.
    #[arg(long, value_name = "HEX32")]
    pub encryption_key: Option<String>,
    /// A new member reads every message of the room from its members' logs instead of starting
    /// from the point the room's indexers signed (JS `fastForward: false`).
    #[arg(long)]
    pub no_fast_forward: bool,
    /// As an indexer, ack every MS to 2 x MS milliseconds when there is something to ack (JS
    /// autobase `ackInterval`; default 1000 here, so that messages appear within seconds; JS's
    /// library default is 10000). 0: no ack timer (JS `ackInterval: 0`):
    /// this member acks only once, when it is added as an indexer, so the other members'
    /// messages wait for the other indexers' acks.
    #[arg(long, value_name = "MS", default_value_t = CHAT_ACK_INTERVAL)]
    pub ack_interval: u64,
    /// An open room: anyone who has the room key can write, without being added (JS autobase
    /// `optimistic: true`). Given when the room is created; every member passes it too (each
    /// member's apply must agree). Remembered in the folder.
    #[arg(long)]
    pub optimistic: bool,
}

type ChatApply = fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>);

/// How long a new member waits for each step of reading the room's fast-forward point (JS waits
/// 5 s per step; longer here, as a loaded machine is slower and a timeout means linearizing).
const FF_STEP: Duration = Duration::from_secs(20);
/// And for all of it, before it linearizes the room's oplogs instead.
const FF_TOTAL: Duration = Duration::from_secs(60);
/// After a failed read of the room's fast-forward point, a running member tries again only this
/// much later (JS `MIN_FF_WAIT`, 5 minutes).
const FF_RETRY: Duration = Duration::from_secs(300);

type FfResult = Result<Option<FastForwardPoint>, FastForwardReadError>;

/// Read the room's fast-forward point in the background if its signed system is at least
/// `min_length` long (the engine's [`Autobase::fast_forward_minimum`]).
fn spawn_ff_read(
    store: &SharedCorestore<FileStorage>,
    room_key: [u8; 32],
    encryption_key: Option<[u8; 32]>,
    min_length: u64,
) -> tokio::sync::oneshot::Receiver<FfResult> {
    let (tx, rx) = tokio::sync::oneshot::channel::<FfResult>();
    let reader = store.clone();
    tokio::spawn(async move {
        let r = tokio::time::timeout(
            FF_TOTAL,
            read_fast_forward_past(
                &reader,
                room_key,
                encryption_key,
                &["messages"],
                FF_STEP,
                min_length,
            ),
        )
        .await
        .unwrap_or(Err(FastForwardReadError::Timeout("the fast-forward point")));
        let _ = tx.send(r);
    });
    rx
}

/// What a run that joins a room (`--invite` into a folder that holds no room yet) created in
/// its folder, to take back when the room cannot be read with the key given (or without one):
/// then the folder is left as it was before the run.
#[derive(Clone)]
struct JoinUndo {
    dir: PathBuf,
    /// The folder's entries before the run; `None` if the run created the folder; `Some(None)`
    /// if they could not be listed (then nothing is taken back).
    before: Option<Option<HashSet<OsString>>>,
    /// The folder's permissions before the run (saving a key restricts them).
    permissions: Option<std::fs::Permissions>,
}

impl JoinUndo {
    fn new(dir: &Path) -> Self {
        let before = std::fs::symlink_metadata(dir).ok().map(|_| {
            std::fs::read_dir(dir).ok().map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect()
            })
        });
        JoinUndo {
            dir: dir.to_path_buf(),
            before,
            permissions: std::fs::metadata(dir).ok().map(|m| m.permissions()),
        }
    }

    /// Remove what the run created: of the chat's own files and the store's (nothing another
    /// program may have put there meanwhile), the ones that were not there before; the folder
    /// too if the run created it and it is empty then.
    fn undo(&self) {
        let before = match &self.before {
            Some(None) => return,
            Some(Some(before)) => Some(before),
            None => None,
        };
        let ours = [ROOM_FILE, KEY_FILE, OPEN_FILE]
            .into_iter()
            .chain(FileStorage::FILE_NAMES);
        for name in ours {
            if before.is_some_and(|b| b.contains(std::ffi::OsStr::new(name))) {
                continue;
            }
            let path = self.dir.join(name);
            let _ = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(_) => Ok(()),
            };
        }
        match before {
            // only if empty: whatever else is there now is not this run's
            None => {
                let _ = std::fs::remove_dir(&self.dir);
            }
            Some(_) => {
                if let Some(p) = &self.permissions {
                    let _ = std::fs::set_permissions(&self.dir, p.clone());
                }
            }
        }
    }
}

/// What [`run`] takes back once the chat stopped (its store and tasks dropped).
static UNDO_ON_EXIT: std::sync::Mutex<Option<JoinUndo>> = std::sync::Mutex::new(None);

/// The error for a room whose entries do not read with the key given (or without one): the
/// bootstrap's first entry does not decode, or the fast-forward read says the key is not the
/// room's (`why`). What a joining run created in the folder is taken back when it stops.
fn key_misfit(
    room_key: &[u8; 32],
    encryption_key: Option<[u8; 32]>,
    why: &str,
    undo: Option<&JoinUndo>,
    dir: &Path,
) -> CliError {
    let kept = match undo {
        Some(u) if !matches!(u.before, Some(None)) => {
            if let Ok(mut pending) = UNDO_ON_EXIT.lock() {
                *pending = Some(u.clone());
            }
            format!(" (nothing was kept in {})", dir.display())
        }
        Some(_) => format!(
            " ({} could not be listed before: what this run wrote there is left)",
            dir.display()
        ),
        None => String::new(),
    };
    let room = hex::encode(room_key);
    match encryption_key {
        Some(_) => CliError::new(format!(
            "the encryption key does not fit room {room}: {why}{kept}"
        )),
        None => CliError::new(format!(
            "room {room} does not read without an encryption key: {why}; if the room is \
             encrypted, give its --encryption-key{kept}"
        )),
    }
}

use hyperpunch::chat::apply as chat_apply;

fn store_err(dir: &Path, e: CorestoreError) -> CliError {
    match e {
        CorestoreError::Storage(s) => storage_err(dir, s),
        other => CliError::new(format!("{}: {other}", dir.display())),
    }
}

/// One line of output for a view entry: `<first 8 hex of the writer>: text`.
fn render(entry: &[u8]) -> String {
    let v: Value = serde_json::from_slice(entry).unwrap_or(Value::Null);
    let from = v["from"].as_str().unwrap_or("");
    format!(
        "{}: {}",
        &from[..from.len().min(8)],
        v["text"].as_str().unwrap_or("")
    )
}

struct Room {
    base: Autobase<ChatApply>,
    local: [u8; 32],
    local_handle: CoreHandle,
    /// The writers' oplog cores: the creator's and the local one for good, the others while
    /// the engine wants them (bounded: a peer's made-up hints cannot make this member open,
    /// store and replicate a core each for good).
    oplogs: OplogCores,
    printed: usize,
    /// Whether the writers' oplogs are downloaded from peers: not while a fast-forward is being
    /// read (the oplogs are then wanted only from the point it gives).
    fetch: bool,
    /// After a fast-forward: the view core `messages` (its blocks below the point are the
    /// room's history, signed by the indexers, not held by the engine) and whether its download
    /// was asked for.
    view_core: Option<(CoreHandle, bool)>,
    /// The fast-forward point this member started from (read, or stored and resumed).
    ff: Option<FastForwardPoint>,
    /// The system and view cores as this member keeps them (JS `ApplyState`): the creator
    /// writes and signs them while it is the only indexer; after a change every indexer signs
    /// the moved cores and writes what a quorum signed; every member's entries carry the system
    /// key. `None` after an error (the room goes on unsigned).
    cores_writer: Option<IndexerCores>,
    /// After a fast-forward: the cores this member keeps from the point on, while their blocks
    /// below it are downloaded ([`IndexerCores::seed_from_point`]); they become `cores_writer`
    /// once all are here. Meanwhile the engine keeps the batches indexed past the point.
    seeding: Option<(IndexerCores, FastForwardPoint)>,
    /// The room's encryption key (every oplog is opened with it).
    encryption_key: Option<[u8; 32]>,
    /// After a move: the system core and the signed length last printed for it.
    signed_shown: Option<([u8; 32], u64)>,
}

/// The cores a member keeps as the writer of `local_handle` (the local oplog: its key pair and
/// signer namespace); `None` (with a note) if they cannot be made.
async fn new_cores(
    s: &Corestore<FileStorage>,
    local_handle: &CoreHandle,
    room_key: &[u8; 32],
    encryption_key: Option<[u8; 32]>,
    dir: &Path,
) -> Result<Option<IndexerCores>, CliError> {
    let c = s.core(local_handle).map_err(|e| store_err(dir, e))?;
    let key_pair = c.key_pair().cloned();
    let entropy = c
        .manifest()
        .and_then(|m| m.signers.first())
        .map(|s| s.namespace);
    let (Some(kp), Some(ns)) = (key_pair, entropy) else {
        return Ok(None);
    };
    match IndexerCores::new_encrypted(*room_key, kp, ns, &["messages"], encryption_key).await {
        Ok(c) => Ok(Some(c)),
        Err(e) => {
            eprintln!("note: the room's signed cores are not written ({e})");
            Ok(None)
        }
    }
}

/// `opts` with the room's encryption key, for an oplog core.
fn oplog_opts(opts: GetOptions, encryption_key: Option<[u8; 32]>) -> GetOptions {
    match encryption_key {
        Some(k) => opts.with_encryption_key(k),
        None => opts,
    }
}

impl Room {
    /// Feed every block the store holds that the engine has not seen, open the cores of the
    /// writers it wants (downloading them from peers from the block it wants on, once `fetch`),
    /// then linearize and apply. After a fast-forward the blocks below the point are neither
    /// wanted nor downloaded.
    async fn sync(
        &mut self,
        s: &mut Corestore<FileStorage>,
        now: u64,
        dir: &Path,
    ) -> Result<(), CliError> {
        loop {
            let fed = self
                .oplogs
                .feed(&mut self.base, s)
                .await
                .map_err(|e| store_err(dir, e))?;
            self.base.update();
            // open the cores of the writers the engine wants (bounded), close the others, and
            // ask each wanted writer from the block the engine needs up to the end it gives (a
            // non-member: its hinted node); again when that end moves on
            let ek = self.encryption_key;
            let opened = self
                .oplogs
                .sync(&self.base, s, now, self.fetch, |k| {
                    oplog_opts(GetOptions::from_key(*k), ek)
                })
                .await
                .map_err(|e| store_err(dir, e))?
                .opened
                > 0;
            if !fed && !opened {
                return Ok(());
            }
        }
    }

    /// Continue from a fast-forward point (read now, or stored and resumed): the view's blocks
    /// below it come from the view core; the signed cores are kept from the point on once their
    /// blocks below it are downloaded (`seeding`), so that this member writes and signs them
    /// as the others do when it is an indexer.
    async fn fast_forwarded(
        &mut self,
        s: &mut Corestore<FileStorage>,
        point: FastForwardPoint,
        dir: &Path,
    ) -> Result<(), CliError> {
        self.cores_writer = None;
        let _ = self.base.take_indexed_flushes();
        self.seeding = None;
        if let Some(mut c) = new_cores(
            s,
            &self.local_handle,
            self.base.bootstrap(),
            self.encryption_key,
            dir,
        )
        .await?
        {
            self.base.record_system();
            c.reload(s).await;
            self.seeding = Some((c, point.clone()));
        }
        if let Some((_, key, length)) = point.views.iter().find(|v| v.0 == "messages") {
            if *length > 0 {
                // an encrypted room's view decrypts with the view block key of its name
                let opts = match &self.encryption_key {
                    Some(ek) => GetOptions::from_key(*key).with_block_encryption_key(
                        view_block_key(self.base.bootstrap(), ek, "messages"),
                    ),
                    None => GetOptions::from_key(*key),
                };
                let h = s.get(opts).await.map_err(|e| store_err(dir, e))?;
                self.view_core = Some((h, false));
            }
        }
        // every oplog is wanted again from the point on
        self.oplogs.clear_fetches();
        self.ff = Some(point);
        Ok(())
    }

    /// After a fast-forward: once the cores' blocks below the point are here, keep the cores
    /// from there (`cores_writer`); announces it.
    async fn seed(&mut self, s: &mut Corestore<FileStorage>, now: u64) {
        let Some((cores, point)) = &mut self.seeding else {
            return;
        };
        match cores.seed_from_point(s, now, point).await {
            Ok(false) => {}
            Ok(true) => {
                println!(
                    "holding the room's signed cores below the fast-forward point (system length {})",
                    point.system_length
                );
                self.cores_writer = self.seeding.take().map(|c| c.0);
            }
            Err(e) => {
                eprintln!("note: the room's signed cores are not written here ({e})");
                self.seeding = None;
            }
        }
    }

    /// After the cores moved to several indexers: write what a quorum of them signed (their
    /// oplogs' checkpoints) into the moved cores, announcing each new signed length.
    async fn commit_signed(&mut self, s: &mut Corestore<FileStorage>, now: u64) {
        let Some(cores) = &mut self.cores_writer else {
            return;
        };
        let before = cores.committed_length(s);
        let r = cores.commit_signed(s, now).await;
        // another indexer's checkpoint that does not verify skips a round, retried next time
        if let Some(why) = cores.take_skip_warning() {
            eprintln!("note: the signed cores wait for newer checkpoints ({why})");
        }
        match r {
            Ok(len) => {
                // after a move the room's signed length here grows whoever assembled the
                // multisig: this member, or another indexer whose commit reached this core by
                // replication first (more likely now that acks come on a timer)
                let key = cores.system_key();
                let shown = match self.signed_shown {
                    Some((k, l)) if k == key => l,
                    _ => 0,
                };
                if len > before || (cores.is_moved() && len > shown) {
                    println!("signed system length {len}");
                }
                if cores.is_moved() {
                    self.signed_shown = Some((key, len.max(shown)));
                }
            }
            Err(e) => {
                eprintln!("note: the room's signed cores are not written any more ({e})");
                self.cores_writer = None;
            }
        }
    }

    /// Append what the engine wrote for the local writer (`msgs`) to the local core. The room's
    /// sole indexer first writes what is indexed now into the system and view cores, signs them
    /// and stamps its checkpoints and the system key into `msgs` (JS `_appendLocalNodes`).
    async fn append_local(
        &mut self,
        s: &mut Corestore<FileStorage>,
        now: u64,
        mut msgs: Vec<OplogMessage>,
        dir: &Path,
    ) -> Result<(), CliError> {
        self.base.update();
        if let Some(cores) = &mut self.cores_writer {
            match cores.sync(s, now, &mut self.base).await {
                Ok(()) => {
                    let len = s
                        .core(&self.local_handle)
                        .map_err(|e| store_err(dir, e))?
                        .length();
                    cores.stamp(&mut msgs, len);
                }
                Err(e) => {
                    // the room goes on as before, its later entries carry no checkpoints
                    eprintln!("note: the room's signed cores are not written any more ({e})");
                    self.cores_writer = None;
                }
            }
        }
        if self.cores_writer.is_none() && self.seeding.is_none() {
            // what the engine records for the cores is not needed any more
            let _ = self.base.take_indexed_flushes();
        }
        let blocks: Vec<Vec<u8>> = msgs.iter().map(Encode::to_bytes).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        s.append(now, &self.local_handle, &refs)
            .await
            .map_err(|e| store_err(dir, e))?;
        Ok(())
    }

    /// Write `values`; whether they were written.
    async fn write(
        &mut self,
        s: &mut Corestore<FileStorage>,
        now: u64,
        values: Vec<Vec<u8>>,
        dir: &Path,
    ) -> Result<bool, CliError> {
        let Some(msgs) = self.base.append(&self.local, values) else {
            return Ok(false);
        };
        self.append_local(s, now, msgs, dir).await?;
        Ok(true)
    }

    /// Write what the engine indexed into the cores this member keeps and sign them, as JS
    /// flushes them while it indexes (not only when it appends): the signatures wait for this
    /// member's next entry (which the ack timer writes when they sign more of the views than
    /// its last checkpoint), and a quorum's signatures are committed up to what is written here.
    async fn flush_cores(&mut self, s: &mut Corestore<FileStorage>, now: u64) {
        let Some(cores) = &mut self.cores_writer else {
            return;
        };
        if let Err(e) = cores.sync(s, now, &mut self.base).await {
            eprintln!("note: the room's signed cores are not written any more ({e})");
            self.cores_writer = None;
        }
    }

    /// Run the engine's ack timer at `now` (`Autobase::poll_ack`) and append the ack it asks
    /// for, if any. Its checkpoint lagging what is indexed with new signatures to write
    /// (`IndexerCores::lags`) is the engine's `signed_behind`.
    async fn poll_ack(
        &mut self,
        s: &mut Corestore<FileStorage>,
        now: u64,
        rng: &mut Rng,
        dir: &Path,
    ) -> Result<(), CliError> {
        let behind = self
            .cores_writer
            .as_ref()
            .is_some_and(|c| c.lags(&self.base));
        if let Some(msgs) = self.base.poll_ack(now, rng, behind) {
            self.append_local(s, now, msgs, dir).await?;
        }
        Ok(())
    }

    /// The length of each writer's oplog the store knows of (what peers announced and this
    /// member verified, held or not).
    /// The room's signed system length as this member's peers announce it (JS reads its system
    /// core's length, which grows as peers' signed appends reach it): the longest of the system
    /// core held here ([`IndexerCores::system_handle`], kept by a member that fast-forwarded or
    /// indexed a batch) and of what the peers replicating it say they have. `None` when no such
    /// core is open here or no peer replicates it with this member.
    fn announced_system_length(&self, s: &Corestore<FileStorage>) -> Option<u64> {
        let cores = self
            .cores_writer
            .as_ref()
            .or(self.seeding.as_ref().map(|c| &c.0))?;
        let h = cores.system_handle()?;
        let core = s.core(h).ok()?;
        let r = s.replicator(h).ok()?;
        r.peers()
            .filter_map(|p| r.peer_info(p))
            .filter(|p| p.synced && p.remote_fork == core.fork())
            .map(|p| p.remote_length)
            .max()
            .map(|peers| peers.max(core.length()))
    }

    fn known_lengths(&self, s: &Corestore<FileStorage>) -> Vec<([u8; 32], u64)> {
        self.oplogs
            .cores()
            .iter()
            .filter_map(|(k, h)| Some((*k, s.core(h).ok()?.length())))
            .collect()
    }

    /// The indexed messages not printed yet. After a fast-forward the ones below the point are
    /// read from the view core (downloaded from peers when `fetch`); it stops at the first one
    /// not here yet.
    async fn new_lines(&mut self, s: &mut Corestore<FileStorage>, now: u64) -> Vec<String> {
        let view = self.base.open_view("messages");
        let indexed = self.base.indexed_view_lengths()[view];
        let start = self.base.views().start(view);
        let mut out = Vec::new();
        while self.printed < indexed {
            if self.printed < start {
                let Some((h, asked)) = &mut self.view_core else {
                    break;
                };
                let Ok(core) = s.core(h) else { break };
                let seq = self.printed as u64;
                let block = if core.has(seq) {
                    core.get(seq).await.ok().flatten()
                } else {
                    None
                };
                let Some(block) = block else {
                    if self.fetch && !*asked {
                        // the whole history below the point, for a restart and `--dump`
                        if let Ok(r) = s.replicator_mut(h) {
                            let _ = r.download(now, 0, Some(start as u64)).await;
                        }
                        *asked = true;
                    }
                    break;
                };
                out.push(render(&block));
            } else {
                out.push(render(
                    &self.base.views().blocks(view)[self.printed - start],
                ));
            }
            self.printed += 1;
        }
        out
    }
}

/// The file holding the room's key in a chat folder.
const ROOM_FILE: &str = "autobase-room";
/// The file holding a room's encryption key in a chat folder (0600).
const KEY_FILE: &str = "autobase-encryption-key";
/// The file saying the folder's room is open (`--optimistic`, JS autobase `optimistic: true`).
const OPEN_FILE: &str = "autobase-open";

/// Whether `value` (an oplog value the chat writes) is a message (not an `add`).
fn is_message_value(value: &[u8]) -> bool {
    serde_json::from_slice::<Value>(value).is_ok_and(|v| v["type"] == "message")
}

fn room_file(dir: &Path) -> PathBuf {
    dir.join(ROOM_FILE)
}

/// Run `hyperpunch chat`.
pub fn run(args: ChatArgs) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?;
    let r = rt.block_on(chat(args));
    // the store and every task are dropped with the runtime before the folder is taken back
    drop(rt);
    if r.is_err() {
        if let Some(undo) = UNDO_ON_EXIT.lock().ok().and_then(|mut u| u.take()) {
            undo.undo();
        }
    }
    r
}

async fn chat(args: ChatArgs) -> Result<(), CliError> {
    let dir = args.storage.clone();
    let invite = args
        .invite
        .as_deref()
        .map(|i| parse_hex32("--invite", i))
        .transpose()?;
    if args.dump && !dir.exists() {
        return Err(CliError::new(format!("{}: no such folder", dir.display())));
    }
    // what the folder held before, to take back what a join with a key that does not fit made
    let undo_probe = JoinUndo::new(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::new(format!("cannot create {}: {e}", dir.display())))?;
    let given_key = args
        .encryption_key
        .as_deref()
        .map(|k| parse_hex32("--encryption-key", k))
        .transpose()?;
    let key_file = dir.join(KEY_FILE);
    let saved_key = match std::fs::read_to_string(&key_file) {
        Ok(s) => Some(parse_hex32("the saved encryption key", s.trim())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(CliError::new(format!(
                "cannot read {}: {e}",
                key_file.display()
            )))
        }
    };
    // A new key is saved only once the room's local core opened with it (below): a key that
    // does not fit the folder must not stay behind and lock the folder.
    let (encryption_key, key_to_save) = match (given_key, saved_key) {
        (Some(g), Some(k)) if g != k => {
            return Err(CliError::new(format!(
                "the encryption key does not fit the room in {}: it holds the room with another \
                 encryption key (the one in {})",
                dir.display(),
                key_file.display()
            )))
        }
        (Some(g), None) => (Some(g), Some(g)),
        (g, k) => (g.or(k), None),
    };
    let storage = FileStorage::open(&dir).map_err(|e| storage_err(&dir, e))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| CliError::new(format!("cannot get randomness: {e}")))?;
    let mut store = Corestore::open(storage, PrimaryKey::StoredOrNew(seed))
        .await
        .map_err(|e| store_err(&dir, e))?;
    let local_handle =
        store
            .get(oplog_opts(GetOptions::named("local"), encryption_key))
            .await
            .map_err(|e| match e {
                // the folder's writer was created without encryption: its room is not encrypted
                CorestoreError::Hypercore(HypercoreError::InvalidArgument(
                    "core is not encrypted",
                )) if encryption_key.is_some() => CliError::new(format!(
                    "the encryption key does not fit the room in {}: that room is not encrypted \
                     (run without --encryption-key)",
                    dir.display()
                )),
                e => store_err(&dir, e),
            })?;
    if encryption_key.is_none()
        && store
            .core(&local_handle)
            .map_err(|e| store_err(&dir, e))?
            .encrypted()
    {
        return Err(CliError::new(format!(
            "the room in {} is encrypted: give its --encryption-key",
            dir.display()
        )));
    }
    let local = *local_handle.key();
    if let Some(k) = key_to_save {
        super::store::restrict(&dir, 0o700)?;
        super::store::write_secret_file(&key_file, &hex::encode(k))?;
    }

    let saved = std::fs::read_to_string(room_file(&dir)).ok();
    let room_key = match (invite, &saved) {
        (Some(i), Some(s)) if hex::encode(i) != s.trim() => {
            return Err(CliError::new(format!(
                "{} already holds room {}; use another folder for another room",
                dir.display(),
                s.trim()
            )))
        }
        (Some(i), _) => i,
        (None, Some(s)) => parse_hex32("the saved room key", s)?,
        (None, None) if args.dump => {
            return Err(CliError::new(format!(
                "{}: no room here yet",
                dir.display()
            )))
        }
        (None, None) => local,
    };
    // a run that joins a room takes back what it created if the room does not read with its key
    let undo = (invite.is_some() && saved.is_none()).then_some(undo_probe);
    // An open room (JS `optimistic: true`) is one from its first run in the folder: a folder
    // that holds a closed room stays closed, as its members' applies must agree.
    let open_file = dir.join(OPEN_FILE);
    let saved_open = open_file.exists();
    if args.optimistic && !saved_open && saved.is_some() {
        return Err(CliError::new(format!(
            "the room in {} is not open: --optimistic is given on a room's first run in a folder \
             (its creator's and each member's)",
            dir.display()
        )));
    }
    let open = args.optimistic || saved_open;
    if saved.is_none() {
        std::fs::write(room_file(&dir), hex::encode(room_key))
            .map_err(|e| CliError::new(format!("cannot write the room key: {e}")))?;
        if open {
            std::fs::write(&open_file, "optimistic\n")
                .map_err(|e| CliError::new(format!("cannot write {}: {e}", open_file.display())))?;
        }
    }

    let mut cores = vec![];
    let boot = store
        .get(oplog_opts(GetOptions::from_key(room_key), encryption_key))
        .await
        .map_err(|e| store_err(&dir, e))?;
    cores.push((room_key, boot));
    if room_key != local {
        let l = store
            .get(oplog_opts(GetOptions::named("local"), encryption_key))
            .await
            .map_err(|e| store_err(&dir, e))?;
        cores.push((local, l));
    }
    let f: ChatApply = chat_apply;
    let mut base = Autobase::new(room_key, f);
    base.set_optimistic(open);
    base.open_view("messages");
    // the engine decides when this member acks (JS's ack timer); its randomness from the OS
    base.set_ack_timer(
        local,
        AckConfig {
            interval: args.ack_interval,
            ..AckConfig::default()
        },
    );
    let mut ack_rng = {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| CliError::new(format!("cannot get randomness: {e}")))?;
        Rng::from_seed(seed)
    };
    // A member that fast-forwarded before resumes from the point it stored, without reading the
    // system core again and without linearizing from the start.
    let resumed = autobase_ff::resume(&store, &mut base)
        .await
        .map_err(|e| CliError::new(format!("{}: {e}", dir.display())))?;
    // The creator is the room's first indexer: while it is the only one it writes and signs the
    // system core and the view core as JS lays them out, so that new members (JS or hyperpunch)
    // can fast-forward to them. After `/add-indexer` every core moves to the indexers' manifest;
    // each indexer signs the moved cores and writes what a quorum of them signed. Every member
    // keeps the cores' keys, for the system key its entries carry. A restart replays the room
    // from its oplogs and appends only what the stored cores lack.
    let cores_writer = if !args.dump && resumed.is_none() {
        match new_cores(&store, &local_handle, &room_key, encryption_key, &dir).await? {
            Some(mut c) => {
                base.record_system();
                // what its oplog says it signed last (JS reloads it when it opens)
                c.reload(&store).await;
                Some(c)
            }
            None => None,
        }
    } else {
        None
    };
    let mut room = Room {
        base,
        local,
        local_handle,
        oplogs: OplogCores::new(local, cores),
        printed: 0,
        fetch: true,
        view_core: None,
        ff: None,
        cores_writer,
        seeding: None,
        encryption_key,
        signed_shown: None,
    };
    if let Some(point) = resumed.clone() {
        room.fast_forwarded(&mut store, point, &dir).await?;
    }

    if args.dump {
        room.fetch = false;
        room.sync(&mut store, 0, &dir).await?;
        // (a member resumed from a stored point read the room with this key before: an entry
        // past the point that does not decode freezes that writer, it does not say the key is
        // wrong)
        if resumed.is_none() && room.base.bootstrap_unreadable() {
            return Err(key_misfit(
                &room_key,
                encryption_key,
                "the room's first entry held here does not decode",
                None,
                &dir,
            ));
        }
        let view = room.base.open_view("messages");
        let start = room.base.views().start(view);
        let mut out = std::io::stdout().lock();
        // below a fast-forward point: the view core's blocks held here
        let mut missing = 0;
        for seq in 0..start as u64 {
            let block = match &room.view_core {
                Some((h, _)) => match store.core(h) {
                    Ok(c) if c.has(seq) => c.get(seq).await.ok().flatten(),
                    _ => None,
                },
                None => None,
            };
            match block {
                Some(b) => {
                    let _ = writeln!(out, "{}", render(&b));
                }
                None => missing += 1,
            }
        }
        for b in room.base.views().blocks(view) {
            let _ = writeln!(out, "{}", render(b));
        }
        if missing > 0 {
            eprintln!(
                "note: {missing} messages below the fast-forward point are not downloaded here yet"
            );
        }
        return Ok(());
    }

    // The room's wakeup channel beside the cores on every connection (JS `base.replicate`):
    // peers' announces become hints the engine fetches, ours name our unindexed writer.
    let mut wakeup = HubWakeup::new(*room.base.bootstrap());
    wakeup.attach(store.hub_mut());
    let mut hub_events = Vec::new();
    let (store, mut events) = SharedCorestore::with_events(store);
    // Nothing is downloaded before it is known whether this member fast-forwards.
    room.fetch = false;
    {
        let mut s = store.lock().await;
        room.sync(&mut s, store.now(), &dir).await?;
    }
    if resumed.is_none() && room.base.bootstrap_unreadable() {
        return Err(key_misfit(
            &room_key,
            encryption_key,
            "the room's first entry held here does not decode",
            undo.as_ref(),
            &dir,
        ));
    }
    // A member that is not the creator, is not an indexer (an indexer writes the signed cores
    // from the whole history) and has peers to ask fast-forwards whenever the room's signed
    // system is at least `MINIMUM` blocks past what it indexed (JS `_queueFastForward`): a new
    // member, a restarted one (from its stored point, or from what it linearized) and, while it
    // runs, one that fell behind (see the running look below). It reads the point in the
    // background; meanwhile nothing is linearized, as JS pauses its writers while it
    // fast-forwards (for a new member the blocks that reading fetches would start the view
    // below the point), and at the start no oplog is downloaded until it knows. If the read
    // fails or the point is not worth it, the room is linearized from the oplogs.
    let indexer_here = |base: &Autobase<ChatApply>| {
        let sys = base.system();
        sys.indexers.iter().any(|c| c.key == local) || sys.pending_indexers.contains(&local)
    };
    let may_ff = room_key != local
        && !args.no_fast_forward
        && (args.tcp.is_some() || args.bootstrap.is_some() || args.listen.is_some());
    let try_ff = may_ff && !indexer_here(&room.base);
    room.fetch = !try_ff;
    println!("room {}", hex::encode(room_key));
    println!("writer {}", hex::encode(local));
    if let Some(p) = &resumed {
        println!(
            "resumed from the fast-forward point (system length {}, {} messages)",
            p.system_length,
            p.view_length("messages")
        );
    }
    if room_key == local && open {
        println!("you created this room; it is open: whoever has the room key can write");
    } else if room_key == local {
        println!("you created this room; add members with /add THEIR-WRITER-KEY");
    } else if open && !room.base.is_writable(&local) {
        println!("this room is open: type to write (your first message makes you a writer)");
    } else if !room.base.is_writable(&local) {
        println!("waiting to be added: give the room's creator your writer key");
    }

    let mut net_seed = [0u8; 32];
    getrandom::fill(&mut net_seed)
        .map_err(|e| CliError::new(format!("cannot get randomness: {e}")))?;
    let key_pair = KeyPair::from_seed(&net_seed);
    if let Some(addr) = &args.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::new(format!("cannot listen on {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| CliError::new(e.to_string()))?;
        println!("listening on {bound}");
        let store = store.clone();
        let key_pair = key_pair.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let store = store.clone();
                let kp = key_pair.clone();
                tokio::spawn(async move {
                    let _ = replicate(socket, false, kp, &store).await;
                });
            }
        });
    }
    // Held while chatting: dropping it leaves the topic.
    let mut _discovery = None;
    if let Some(nodes) = &args.bootstrap {
        let swarm_args = SwarmArgs {
            swarm: true,
            bootstrap: Some(nodes.clone()),
            host: args.host,
        };
        let swarm = start_swarm(&swarm_args).await?;
        let topic = discovery_key(&room_key);
        let discovery = swarm.join(topic, JoinOptions::default()).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = store.clone();
        tokio::spawn(async move {
            if let Err(e) = swarm_serve_loop(swarm, serving, stopped).await {
                eprintln!("{e}");
            }
        });
        if !discovery.flushed().await {
            return Err(CliError::new(
                "joining the room on the DHT failed: check --bootstrap and that the bootstrap \
                 nodes run",
            ));
        }
        println!("joined the swarm (topic {})", hex::encode(topic));
        _discovery = Some((discovery, stop));
    }
    if let Some(addr) = &args.tcp {
        let socket = TcpStream::connect(addr)
            .await
            .map_err(|e| CliError::new(format!("cannot connect to {addr}: {e}")))?;
        println!("connected to {addr}");
        let store = store.clone();
        let kp = key_pair.clone();
        tokio::spawn(async move {
            let _ = replicate(socket, true, kp, &store).await;
        });
    }
    let _ = std::io::stdout().flush();

    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<Option<String>>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(None);
    });

    // the read of the fast-forward point under way, if any
    let mut ff_rx = try_ff.then(|| {
        spawn_ff_read(
            &store,
            room_key,
            encryption_key,
            room.base.fast_forward_minimum(),
        )
    });
    // what the oplogs' known lengths summed to when the last read started, and when a failed
    // read may be tried again
    let mut ff_known_at = {
        let s = store.lock().await;
        room.known_lengths(&s).iter().map(|k| k.1).sum::<u64>()
    };
    // the signed system length announced when the last running look started
    let mut ff_system_at = 0u64;
    let mut ff_retry_at: Option<tokio::time::Instant> = None;
    let mut ff_read = None;
    // Whether the key is known to fit the room: an entry of the creator's decoded with it, or a
    // fast-forward point was read with it (its system key derived with it). From then on a
    // refusal is not taken for a key that does not fit, and nothing of the folder is taken back.
    let bootstrap_read =
        |base: &Autobase<ChatApply>| base.oplog_len(&room_key) > base.oplog_start(&room_key);
    let mut key_fits = resumed.is_some() || bootstrap_read(&room.base);
    let mut undo = undo;
    let mut noted_indexer = false;

    let mut outbox: Vec<Vec<u8>> = Vec::new();
    // The creator is the first indexer from the start: only a change is announced.
    let mut was_indexer = room_key == local;
    // Whether this member could write when last looked: becoming one is announced (added by
    // `/add`, or, in an open room, by its first message).
    let mut was_writer = room.base.is_writable(&local);
    let mut stdin_open = true;
    loop {
        // when the engine's ack timer is due (the store's clock, in ms)
        let ack_in = room
            .base
            .ack_timeout()
            .map(|t| Duration::from_millis(t.saturating_sub(store.now())));
        let ack_at = tokio::time::Instant::now() + ack_in.unwrap_or_default();
        let ack_at_set = ack_in.is_some();
        tokio::select! {
            line = lines.recv(), if stdin_open => match line.flatten() {
                Some(line) => {
                    let line = line.trim_end().to_string();
                    let add = line
                        .strip_prefix("/add-indexer ")
                        .map(|k| (k, true))
                        .or_else(|| line.strip_prefix("/add ").map(|k| (k, false)));
                    if let Some((key, indexer)) = add {
                        match parse_hex32("the writer key", key.trim()) {
                            Ok(k) => {
                                let mut v = json!({ "type": "add", "key": hex::encode(k) });
                                if indexer {
                                    v["indexer"] = json!(true);
                                }
                                outbox.push(v.to_string().into_bytes());
                            }
                            Err(e) => eprintln!("{e}"),
                        }
                    } else if !line.is_empty() {
                        outbox.push(json!({ "type": "message", "text": line }).to_string().into_bytes());
                    }
                }
                None => stdin_open = false,
            },
            r = async { ff_rx.as_mut().expect("guarded").await }, if ff_rx.is_some() => {
                ff_rx = None;
                ff_read = Some(r.unwrap_or(Err(FastForwardReadError::Timeout("the fast-forward point"))));
            }
            ev = events.recv() => hub_events.extend(ev),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            // the engine's ack timer
            _ = tokio::time::sleep_until(ack_at), if ack_at_set => {}
        }
        let mut s = store.lock().await;
        let now = store.now();
        hub_events.extend(std::iter::from_fn(|| events.try_recv().ok()));
        for ev in hub_events.drain(..) {
            if let Err(e) = wakeup
                .handle_hub_event(now, s.hub_mut(), &mut room.base, &ev)
                .await
            {
                eprintln!("note: wakeup channel: {e}");
            }
        }
        let just_read = ff_read.is_some();
        if let Some(r) = ff_read.take() {
            room.fetch = true;
            let failed = |e: &dyn std::fmt::Display| {
                eprintln!("note: no fast-forward ({e}); reading the room's logs");
            };
            match r {
                Ok(Some(point)) => match autobase_ff::adopt(&s, &mut room.base, &point).await {
                    Ok(true) => {
                        println!(
                            "fast-forwarded to system length {} ({} messages)",
                            point.system_length,
                            point.view_length("messages")
                        );
                        room.fast_forwarded(&mut s, point, &dir).await?;
                        // JS asks its peers for their writers after a fast-forward
                        wakeup.broadcast_lookup(s.hub_mut());
                        key_fits = true;
                        undo = None;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        failed(&e);
                        ff_retry_at = Some(tokio::time::Instant::now() + FF_RETRY);
                    }
                },
                Ok(None) | Err(FastForwardReadError::Empty) => {}
                Err(FastForwardReadError::Refused(FastForwardError::WrongEncryptionKey(why)))
                    if !key_fits =>
                {
                    return Err(key_misfit(
                        &room_key,
                        encryption_key,
                        why,
                        undo.as_ref(),
                        &dir,
                    ));
                }
                // no peer answered in time: looked for again when the oplogs grow (JS reads
                // again, as a timeout is not a failure there)
                Err(e @ FastForwardReadError::Timeout(_)) => failed(&e),
                Err(e) => {
                    failed(&e);
                    ff_retry_at = Some(tokio::time::Instant::now() + FF_RETRY);
                }
            }
        }
        // A running member that fell behind (JS `_queueFastForward` on the system core's
        // appends): when its peers announce the room's signed system at least `MINIMUM` blocks
        // past what it indexed (the engine's minimum), and at least `MINIMUM` more than when it
        // last looked, it reads the point again, which is taken if that minimum is signed (after
        // a failed read, only after `FF_RETRY`). A member that holds no system core its peers
        // replicate (it never fast-forwarded nor indexed a batch) looks instead when the oplogs
        // are known to hold at least `MINIMUM` entries it has not linearized, and at least
        // `MINIMUM` more than when it last looked. Looked at before the blocks held are
        // linearized, and never right after a read (the oplogs are linearized in between).
        if may_ff
            && !just_read
            && ff_rx.is_none()
            && !indexer_here(&room.base)
            && ff_retry_at.is_none_or(|t| tokio::time::Instant::now() >= t)
        {
            let look = match room.announced_system_length(&s) {
                Some(signed) => (signed >= room.base.fast_forward_minimum()
                    && signed >= ff_system_at.saturating_add(autobase_ff::MINIMUM))
                .then(|| {
                    ff_system_at = signed;
                    format!("signed system length {signed}")
                }),
                None => {
                    let known = room.known_lengths(&s);
                    let total = known.iter().map(|k| k.1).sum::<u64>();
                    (total >= ff_known_at.saturating_add(autobase_ff::MINIMUM)
                        && room.base.fast_forward_may_be_due(&known))
                    .then(|| {
                        ff_known_at = total;
                        format!("{total} oplog entries known")
                    })
                }
            };
            if let Some(why) = look {
                println!(
                    "looking for a newer fast-forward point ({why}, {} indexed)",
                    room.base.indexed_system().length
                );
                ff_retry_at = None;
                ff_rx = Some(spawn_ff_read(
                    &store,
                    room_key,
                    encryption_key,
                    room.base.fast_forward_minimum(),
                ));
            }
        }
        // while the point is read, nothing is linearized (JS pauses its writers while it
        // fast-forwards; linearizing the oplogs downloaded meanwhile would make the point not
        // worth taking)
        if ff_rx.is_none() {
            room.sync(&mut s, now, &dir).await?;
            if !key_fits && bootstrap_read(&room.base) {
                key_fits = true;
                undo = None;
            }
            if !key_fits && room.base.bootstrap_unreadable() {
                return Err(key_misfit(
                    &room_key,
                    encryption_key,
                    "the room's first entry does not decode",
                    undo.as_ref(),
                    &dir,
                ));
            }
        }
        room.seed(&mut s, now).await;
        if room.seeding.is_some() && !noted_indexer && room.base.is_indexer(&local) {
            noted_indexer = true;
            eprintln!(
                "note: this member fast-forwarded: it signs the room's cores once their blocks \
                 below the point are downloaded"
            );
        }
        if !outbox.is_empty() && room.base.is_writable(&local) {
            let values = std::mem::take(&mut outbox);
            if !room.write(&mut s, now, values.clone(), &dir).await? {
                outbox = values;
            }
        } else if open {
            // not a writer (yet) in an open room: each message is an optimistic node of its own
            // (JS `append(value, { optimistic: true })`), which the room's apply keeps by adding
            // this writer; an `/add` stays in the outbox until this member is a writer
            let mut i = 0;
            while i < outbox.len() {
                if !is_message_value(&outbox[i]) {
                    i += 1;
                    continue;
                }
                let Some(msgs) = room.base.append_optimistic(&local, outbox[i].clone()) else {
                    break;
                };
                outbox.remove(i);
                room.append_local(&mut s, now, msgs, &dir).await?;
            }
        }
        // what is indexed goes into the signed cores; then the acks: the engine decides (JS's
        // ack timer), after what came in and what was written
        room.flush_cores(&mut s, now).await;
        // no acks while a fast-forward point is read (JS `ack()` waits for it)
        room.base.set_fast_forwarding(ff_rx.is_some());
        room.poll_ack(&mut s, now, &mut ack_rng, &dir).await?;
        wakeup.refresh(s.hub_mut(), &room.base);
        room.commit_signed(&mut s, now).await;
        if room.cores_writer.is_none() && room.seeding.is_none() {
            // what the engine records for the cores is not needed
            let _ = room.base.take_indexed_flushes();
        }
        let indexer_now = room.base.is_indexer(&local);
        let writer_now = room.base.is_writable(&local);
        let lines = room.new_lines(&mut s, now).await;
        drop(s);
        let mut out = std::io::stdout().lock();
        if writer_now && !was_writer {
            let _ = writeln!(out, "you are a writer of this room");
        }
        was_writer = writer_now;
        if indexer_now && !was_indexer {
            let _ = writeln!(out, "you are an indexer of this room");
        }
        was_indexer = indexer_now;
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
        let _ = out.flush();
    }
}
