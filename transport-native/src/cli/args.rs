//! Command-line arguments of the `hyperpunch` binary (clap derive).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const ABOUT: &str = "hyperpunch: the Holepunch peer-to-peer stack (hypercore and friends) in Rust.";

const CORE_LONG: &str = "\
Work with a single hypercore: a signed, append-only log of blocks, stored in a folder.

A core is identified by its 32-byte key (printed by `create`). Its blocks are numbered from 0.
Every append extends a merkle tree over the blocks and signs its root with the core's secret
key, so anyone holding the key can check any block. The storage folder holds one core (in an
embedded, crash-safe database): an append that has printed its result survives a crash.

Examples:
  # create a core with a random key pair and print its key
  hyperpunch core create --storage ./my-core

  # the same key as JS `new Hypercore(storage, { keyPair: crypto.keyPair(seed) })`
  hyperpunch core create --storage ./c --seed 0101010101010101010101010101010101010101010101010101010101010101

  # one block per line of stdin, then one block per file
  printf 'hello\\nworld\\n' | hyperpunch core append --storage ./my-core
  hyperpunch core append --storage ./my-core photo.jpg notes.txt

  # read block 1 back (raw bytes on stdout), inspect, check everything
  hyperpunch core get --storage ./my-core 1
  hyperpunch core info --storage ./my-core --json
  hyperpunch core verify --storage ./my-core

  # drop everything from block 1 on (increments the fork id)
  hyperpunch core truncate --storage ./my-core 1";

/// The `hyperpunch` command line.
#[derive(Debug, Parser)]
#[command(
    name = "hyperpunch",
    version,
    about = ABOUT,
    long_about = None,
    after_help = "Run `hyperpunch core --help` for what a core is, `hyperpunch bee --help` for a \
key-value B-tree in a core, `hyperpunch drive --help` for a file system in a corestore, `hyperpunch store --help` for corestores, `hyperpunch udx --help` for \
UDX streams, `hyperpunch dht --help` for the DHT, `hyperpunch relay --help` for the browsers' WebSocket relay, with \
examples."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, append to, read, truncate, inspect and verify a hypercore.
    #[command(long_about = CORE_LONG, subcommand)]
    Core(CoreCommand),
    /// UDX streams over UDP: netcat (`cat`) and throughput tests (`perf`).
    #[command(long_about = UDX_LONG, subcommand)]
    Udx(UdxCommand),
    /// A hyperbee (key-value B-tree) in a core: put, get, del, batch, list, history, info.
    #[command(long_about = super::bee_cmd::BEE_LONG, subcommand)]
    Bee(super::bee_cmd::BeeCommand),
    /// A hyperdrive (files in a corestore): mirror a folder in, export, ls, cat, serve, fetch.
    #[command(long_about = super::drive_cmd::DRIVE_LONG, subcommand)]
    Drive(super::drive_cmd::DriveCommand),
    /// A multi-writer chat room on autobase, replicated over TCP.
    #[command(long_about = super::chat_cmd::CHAT_LONG)]
    Chat(super::chat_cmd::ChatArgs),
    /// The DHT: run nodes, announce and look up topics, store mutable and immutable values.
    #[command(long_about = super::dht_cmd::DHT_LONG, subcommand)]
    Dht(super::dht_cmd::DhtCommand),
    /// Look into a corestore: many cores in one storage folder.
    #[command(long_about = STORE_LONG, subcommand)]
    Store(StoreCommand),
    /// Expose a TCP port under a key, open it elsewhere (as hypertele).
    #[command(long_about = super::tele_cmd::TELE_LONG, subcommand)]
    Tele(super::tele_cmd::TeleCommand),
    /// A 1-1 encrypted pipe between two machines named by a passphrase (as hyperbeam).
    #[command(long_about = super::beam_cmd::BEAM_LONG)]
    Beam(super::beam_cmd::BeamArgs),
    /// Shells, commands and file copies on a machine reached by its key (as hypershell).
    #[command(long_about = super::shell_cmd::SHELL_LONG, subcommand)]
    Shell(super::shell_cmd::ShellCommand),
    /// SSH to a machine by its public key, and expose an SSH server (as hyperssh).
    #[command(long_about = super::ssh_cmd::SSH_LONG)]
    Ssh(super::ssh_cmd::SshArgs),
    /// A WebSocket relay that lets browsers use the DHT (@hyperswarm/dht-relay's wire).
    #[command(long_about = super::relay_cmd::RELAY_LONG)]
    Relay(super::relay_cmd::RelayArgs),
}

const STORE_LONG: &str = "\
Look into a corestore: many hypercores in one storage folder, named cores whose key pairs derive
from the store's primary key exactly as JS corestore 7 derives them, all replicated over one
connection. Programs using the hyperpunch library (and drives) create them.

Example:
  hyperpunch store info --storage ./my-store";

/// `hyperpunch store ...`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// List the cores of a corestore: key, discovery key, name, length, writable.
    #[command(long_about = "\
List every core stored in the corestore in DIR, in creation order: its key and discovery key,
its name (and namespace, for a named core), its length and whether this store can write it.
Human-readable by default, one JSON object ({\"cores\": [...]}) with --json. Nothing is written.

Examples:
  hyperpunch store info --storage ./my-store
  hyperpunch store info --storage ./my-store --json | jq -r '.cores[].key'")]
    Info {
        #[command(flatten)]
        storage: StoreStorageArg,
        /// Print one JSON object instead.
        #[arg(long)]
        json: bool,
    },
}

/// The storage folder of a corestore.
#[derive(Debug, Args)]
pub struct StoreStorageArg {
    /// Folder holding the corestore.
    #[arg(long, short = 's', value_name = "DIR")]
    pub storage: PathBuf,
}

// ---- `hyperpunch udx ...` ----

const UDX_LONG: &str = "\
UDX is the reliable, congestion-controlled stream transport over UDP that Holepunch uses
(libudx / udx-native); these commands speak it on the wire, so either end may be udx-native.

A UDX stream has no handshake: each end binds a UDP address and names its own stream id (--id)
and the peer's (--remote-id), and the two ends must agree crosswise. Ids are 32-bit numbers
chosen by the application; several streams may share one socket.

Examples:
  # a netcat over UDX: two terminals, stdin goes to the other side's stdout
  hyperpunch udx cat --bind 127.0.0.1:9001 --connect 127.0.0.1:9002 --id 1 --remote-id 2
  hyperpunch udx cat --bind 127.0.0.1:9002 --connect 127.0.0.1:9001 --id 2 --remote-id 1

  # throughput, retransmits and RTT: a receiver and a sender
  hyperpunch udx perf --bind 127.0.0.1:9002 --connect 127.0.0.1:9001 --id 2 --remote-id 1
  hyperpunch udx perf --bind 127.0.0.1:9001 --connect 127.0.0.1:9002 --id 1 --remote-id 2 --send 256MiB

  # both ends in this process, over loopback
  hyperpunch udx perf --loopback --send 256MiB";

/// Where a UDX stream lives: our address and id, the peer's address and id.
#[derive(Debug, Args)]
pub struct UdxEndpoint {
    /// Local UDP address to bind, HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub bind: String,
    /// The peer's UDP address, HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub connect: String,
    /// Our stream id (the peer's --remote-id).
    #[arg(long, value_name = "N")]
    pub id: u32,
    /// The peer's stream id (the peer's --id).
    #[arg(long, value_name = "M")]
    pub remote_id: u32,
}

/// `hyperpunch udx ...`
#[derive(Debug, Subcommand)]
pub enum UdxCommand {
    /// A netcat over UDX: stdin to the stream, the stream to stdout.
    #[command(long_about = "\
Open one UDX stream and copy stdin to it and it to stdout. At the end of stdin the write side is
ended (the peer reads EOF); the command exits 0 once the peer has ended too and everything was
acknowledged, 1 if the stream is reset or times out. The bound address is printed on stderr.

Examples:
  # send a file to a peer that prints what it gets
  hyperpunch udx cat --bind 127.0.0.1:9002 --connect 127.0.0.1:9001 --id 2 --remote-id 1 > copy.bin
  hyperpunch udx cat --bind 127.0.0.1:9001 --connect 127.0.0.1:9002 --id 1 --remote-id 2 < file.bin

  # against udx-native (JS): createStream(2) ... stream.connect(socket, 1, 9001, '127.0.0.1')")]
    Cat {
        #[command(flatten)]
        endpoint: UdxEndpoint,
        /// One datagram per syscall instead of batched I/O (recvmmsg, GSO/GRO).
        #[arg(long)]
        no_batch: bool,
        /// When both sides ended, print the stream's counters on stderr: `udx cat: N packets
        /// sent, M retransmits (P%), rtt R ms`.
        #[arg(long)]
        stats: bool,
    },
    /// Measure a UDX transfer: throughput, retransmits and RTT.
    #[command(long_about = "\
Send SIZE bytes over one UDX stream (--send) or receive them (without --send), and print the
throughput, packets, retransmissions and smoothed RTT when the stream closes. With --loopback
both ends run in this process on 127.0.0.1 and no addresses are needed.

SIZE takes a suffix: K/KiB, M/MiB, G/GiB (powers of 1024); a plain number is bytes.

Examples:
  hyperpunch udx perf --bind 127.0.0.1:9002 --connect 127.0.0.1:9001 --id 2 --remote-id 1
  hyperpunch udx perf --bind 127.0.0.1:9001 --connect 127.0.0.1:9002 --id 1 --remote-id 2 --send 1GiB
  hyperpunch udx perf --loopback --send 256MiB --json
  hyperpunch udx perf --loopback --send 256MiB --no-batch   # compare with plain syscalls")]
    Perf {
        /// Local UDP address to bind, HOST:PORT.
        #[arg(
            long,
            value_name = "ADDR",
            required_unless_present = "loopback",
            conflicts_with = "loopback"
        )]
        bind: Option<String>,
        /// The peer's UDP address, HOST:PORT.
        #[arg(
            long,
            value_name = "ADDR",
            required_unless_present = "loopback",
            conflicts_with = "loopback"
        )]
        connect: Option<String>,
        /// Our stream id.
        #[arg(long, value_name = "N", default_value_t = 1)]
        id: u32,
        /// The peer's stream id.
        #[arg(long, value_name = "M", default_value_t = 2)]
        remote_id: u32,
        /// Send this many bytes (e.g. 256MiB); without it, receive.
        #[arg(long, value_name = "SIZE")]
        send: Option<String>,
        /// Run sender and receiver in this process over loopback (default size 64MiB).
        #[arg(long)]
        loopback: bool,
        /// One datagram per syscall instead of batched I/O (recvmmsg, GSO/GRO).
        #[arg(long)]
        no_batch: bool,
        /// Print one JSON object instead of a line of text.
        #[arg(long)]
        json: bool,
    },
}

/// The storage folder every core command works on.
#[derive(Debug, Args)]
pub struct StorageArg {
    /// Folder holding the core (created by `create`).
    #[arg(long, short = 's', value_name = "DIR")]
    pub storage: PathBuf,
}

/// `hyperpunch core ...`
#[derive(Debug, Subcommand)]
pub enum CoreCommand {
    /// Create a new core in an empty folder and print its key (hex).
    #[command(long_about = "\
Create a new core in DIR (created if missing; it must not hold a core yet) and print its key
as 64 hex characters.

Without --seed a fresh key pair is drawn from the operating system's random source. The key
pair (including the secret key) is kept inside the core's storage, so later appends can sign;
protect the folder like a private key.

--seed derives the key pair exactly like hypercore-crypto's keyPair(seed), so the same seed
gives the same key as the JavaScript implementation.

Examples:
  hyperpunch core create --storage ./c
  hyperpunch core create --storage ./c --compat --seed 0101010101010101010101010101010101010101010101010101010101010101
  hyperpunch core create --storage ./c --encryption-key $(openssl rand -hex 32)")]
    Create {
        #[command(flatten)]
        storage: StorageArg,
        /// 32-byte seed (64 hex characters) for the ed25519 key pair.
        #[arg(long, value_name = "HEX32")]
        seed: Option<String>,
        /// Compat mode: the key is the public key itself (hypercore 10 style, manifest v0/v1)
        /// instead of the manifest hash.
        #[arg(long)]
        compat: bool,
        /// Encrypt blocks with this 32-byte key (64 hex characters). It is remembered in the
        /// storage folder, so later commands need not repeat it.
        #[arg(long, value_name = "HEX32")]
        encryption_key: Option<String>,
    },
    /// Append blocks (one per file, or from stdin) and print the new length.
    #[command(long_about = "\
Append blocks and print the core's new length.

With FILE arguments, each file becomes one block (its whole content). Without FILE arguments,
stdin is read: by default every line becomes one block, newline included (a final line without
a newline is a block too), so the blocks concatenated give back the input exactly. With
--block-size N stdin is cut into N-byte blocks instead (the last one may be shorter).

Blocks are written in batches (--batch blocks per signed write), so appending many small blocks
is fast. A progress bar is shown on stderr when it is a terminal.

Examples:
  seq 1 100000 | hyperpunch core append --storage ./c
  hyperpunch core append --storage ./c --block-size 65536 < video.mp4
  hyperpunch core append --storage ./c a.txt b.txt")]
    Append {
        #[command(flatten)]
        storage: StorageArg,
        /// Cut stdin into blocks of this many bytes instead of lines.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=(64 * 1024 * 1024)))]
        block_size: Option<u64>,
        /// Blocks per atomic, signed write.
        #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        batch: u64,
        /// Files to append, one block each. Without files, stdin is read.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Write block INDEX's bytes (raw) to stdout.
    #[command(long_about = "\
Write the bytes of block INDEX (0-based) to stdout, unmodified (decrypted if the core is
encrypted). Fails if the block does not exist.

Example:
  hyperpunch core get --storage ./c 0 > block0.bin")]
    Get {
        #[command(flatten)]
        storage: StorageArg,
        /// Block number, from 0.
        #[arg(value_name = "INDEX")]
        index: u64,
    },
    /// Cut the core down to LENGTH blocks (starts a new fork).
    #[command(long_about = "\
Truncate the core to LENGTH blocks, dropping the rest. The core's fork id increases, as in
hypercore's truncate(). LENGTH may not exceed the current length.

Example:
  hyperpunch core truncate --storage ./c 10")]
    Truncate {
        #[command(flatten)]
        storage: StorageArg,
        /// The new length.
        #[arg(value_name = "LENGTH")]
        length: u64,
    },
    /// Print the core's key, lengths, fork, tree hash and signature.
    #[command(long_about = "\
Print key, discovery key, length, byte length, fork, tree hash, signature (hex, as sent on the
wire), compat and encrypted. Human-readable by default, one JSON object with --json.

Examples:
  hyperpunch core info --storage ./c
  hyperpunch core info --storage ./c --json | jq -r .key")]
    Info {
        #[command(flatten)]
        storage: StorageArg,
        /// Print one JSON object instead.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every block and check the signature; non-zero exit on corruption.
    #[command(long_about = "\
Re-hash every stored block against the merkle tree, check the tree hash against the stored
signature, and report the first problem found (which block, what is wrong). Exit status 0 when
everything verifies, 3 when the core is corrupt, 1 on other errors.

Example:
  hyperpunch core verify --storage ./c && echo ok")]
    Verify {
        #[command(flatten)]
        storage: StorageArg,
    },
    /// Seed the core to every client connecting over TCP (runs until killed).
    #[command(long_about = SERVE_LONG)]
    Serve(ServeArgs),
    /// Download a core (or a range of it) from a `serve` peer over TCP, verifying every block.
    #[command(long_about = FETCH_LONG)]
    Fetch(FetchArgs),
}

const SERVE_LONG: &str = "\
Listen on ADDR (--tcp), or announce the core's discovery key on the DHT (--swarm), and replicate the core in DIR to every client that connects, over an
encrypted secret-stream connection (wire-compatible with JS hypercore's replicate()). Prints
`listening on HOST:PORT` on stdout once bound (use port 0 for any free port), then runs until
killed, serving any number of clients, one after another or at the same time. A client that
sends garbage, or nothing for --idle-timeout seconds, only loses its own connection.

With --swarm (and --bootstrap, or HYPERPUNCH_BOOTSTRAP), the core is served as JS does with
`swarm.join(core.discoveryKey)`: a DHT node starts, the discovery key is announced (and again
every 10-12 minutes), `announced <DISCOVERY KEY HEX>` is printed on stdout, and every peer that
connects through the DHT (holepunched if needed, end-to-end encrypted) is served; JS peers
included.

With --live, stdin is appended to the core while it is served (one block per line, or
--block-size N byte blocks, as in `core append`): every connected client is told about each
append at once, and `length N` is printed on stdout after each one. The server keeps serving
after stdin ends. --live needs a writable core (one made by `core create`).

Examples:
  hyperpunch core serve --storage ./c --tcp 127.0.0.1:7000

  # through the DHT: readers find it by the core's key alone
  hyperpunch core serve --storage ./c --swarm --bootstrap dht.example.org:49737

  # a live log: every line of the command's output becomes a block, readers follow along
  tail -f /var/log/syslog | hyperpunch core serve --storage ./c --tcp 127.0.0.1:7000 --live

  # the same, sending each new block to readers that accept pushes without waiting to be asked
  tail -f /var/log/syslog | hyperpunch core serve --storage ./c --tcp 127.0.0.1:7000 --live --push";

const FETCH_LONG: &str = "\
Connect to ADDR (--tcp), or find the peers serving it on the DHT by its discovery key
(--swarm), and download the core with key KEY into DIR, verifying every block against the
core's signed merkle tree. DIR is created with a reader core for KEY if it holds
no core yet. A progress bar is shown on stderr when it is a terminal.

By default everything the peer has is downloaded and fetch exits 0 once the local copy holds
it. --start N --end M download only blocks N..M (M excluded; a sparse copy): the other blocks
stay absent (`core get` reports them as not stored locally). --live keeps the connection open
after catching up and follows the core as the writer appends: `length N` is printed on stdout
each time the copy holds every block up to N. It runs until killed, or until the peer goes
away (exit 0 if everything the peer announced arrived).

Examples:
  KEY=$(hyperpunch core info -s ./c --json | jq -r .key)
  hyperpunch core fetch --storage ./copy --key $KEY --tcp 127.0.0.1:7000

  # through the DHT: from whoever serves the core (`serve --swarm`, or JS peers that joined
  # its discovery key), exit 0 once complete
  hyperpunch core fetch --storage ./copy --key $KEY --swarm --bootstrap dht.example.org:49737

  # only blocks 100..200
  hyperpunch core fetch --storage ./part --key $KEY --tcp 127.0.0.1:7000 --start 100 --end 200

  # follow a live core
  hyperpunch core fetch --storage ./copy --key $KEY --tcp 127.0.0.1:7000 --live

  # follow it through pushes only (from `serve --live --push`), sending no requests
  hyperpunch core fetch --storage ./copy --key $KEY --tcp 127.0.0.1:7000 --live --push-only";

/// Peers by the core's discovery key through the DHT (hyperswarm) instead of `--tcp`.
#[derive(Debug, Args)]
pub struct SwarmArgs {
    /// Find peers through the DHT by the core's discovery key (hyperswarm, wire-compatible
    /// with JS `swarm.join(core.discoveryKey)`) instead of --tcp.
    #[arg(long, requires = "bootstrap")]
    pub swarm: bool,
    /// With --swarm: DHT bootstrap nodes, HOST:PORT[,HOST:PORT...] (or set
    /// HYPERPUNCH_BOOTSTRAP).
    #[arg(long, value_name = "NODES", env = "HYPERPUNCH_BOOTSTRAP")]
    pub bootstrap: Option<String>,
    /// With --swarm: the local address to bind the DHT node on (default 0.0.0.0).
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub host: std::net::Ipv4Addr,
}

/// `hyperpunch core serve` arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["tcp", "swarm"])))]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArg,
    /// Address to listen on, HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<String>,
    #[command(flatten)]
    pub swarm: SwarmArgs,
    /// Append stdin to the core while serving (lines, or --block-size N blocks).
    #[arg(long)]
    pub live: bool,
    /// With --live: cut stdin into blocks of this many bytes instead of lines.
    #[arg(long, value_name = "N", requires = "live", value_parser = clap::value_parser!(u64).range(1..=(64 * 1024 * 1024)))]
    pub block_size: Option<u64>,
    /// With --live: push each appended block to the clients that accept pushes (`fetch
    /// --allow-push` or `--push-only`, JS readers with `allowPush`) instead of waiting for
    /// their requests; a client that connects behind is pushed the newest 1024 blocks it lacks.
    #[arg(long, requires = "live")]
    pub push: bool,
    /// Drop a client that sends nothing for this many seconds, handshake included (0 = never).
    /// `fetch` sends keep-alives every second, so only stalled clients are dropped.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub idle_timeout: u64,
}

/// `hyperpunch core fetch` arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["tcp", "swarm"])))]
pub struct FetchArgs {
    #[command(flatten)]
    pub storage: StorageArg,
    /// The core's key (64 hex characters).
    #[arg(long, value_name = "HEX32")]
    pub key: String,
    /// Address of the serving peer, HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<String>,
    #[command(flatten)]
    pub swarm: SwarmArgs,
    /// The core's block encryption key (64 hex characters), for encrypted cores.
    #[arg(long, value_name = "HEX32")]
    pub encryption_key: Option<String>,
    /// Keep following new appends after catching up (until killed or the peer goes away).
    #[arg(long, conflicts_with_all = ["start", "end"])]
    pub live: bool,
    /// First block to download (with --end: a sparse copy of START..END).
    #[arg(long, value_name = "N", requires = "end")]
    pub start: Option<u64>,
    /// Download blocks before this one only (END excluded).
    #[arg(long, value_name = "M")]
    pub end: Option<u64>,
    /// Accept blocks the peer pushes without being asked (JS `allowPush`; `serve --live
    /// --push` pushes each append).
    #[arg(long)]
    pub allow_push: bool,
    /// With --live: send no requests at all; the copy grows only through what the peer pushes
    /// (JS `pushOnly`; implies --allow-push). Blocks appended before we connected are not
    /// fetched, so `length N` lines appear only while the copy is contiguous.
    #[arg(long, requires = "live")]
    pub push_only: bool,
    /// Give up after this many seconds without completing (0 = never). With --live: stop
    /// following after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub timeout: u64,
}
