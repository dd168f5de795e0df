//! `hyperpunch dht ...`: run DHT nodes and use the DHT's records from the command line, on
//! [`hyperpunch::dht`] and a tokio runtime.

use super::{parse_hex32, CliError};
use clap::{Args, Subcommand};
use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::{Dht, DhtError, DhtOptions, Limits, RateLimits};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// `hyperpunch dht --help`.
pub const DHT_LONG: &str = "\
The DHT of Holepunch (dht-rpc + hyperdht), wire-compatible with the JavaScript `hyperdht`:
peers announce a 32-byte TOPIC with their public key and others look the topic up; small
signed (mutable) and content-addressed (immutable) values can be stored too. Records live about
20 minutes (values 48 hours) on the 20 nodes closest to their key.

Every command needs bootstrap nodes: --bootstrap HOST:PORT[,HOST:PORT...] or the environment
variable HYPERPUNCH_BOOTSTRAP. No public bootstrap node is ever used by default. TOPIC, HASH and
PUBLIC_KEY are 64 hex characters (32 bytes); to derive a topic from a name, hash it yourself
(e.g. `printf name | b2sum -l 256`). --seed is a 32-byte hex seed for the Ed25519 key pair,
derived as hyperdht's `DHT.keyPair(seed)`.

Examples:
  # a small DHT on this machine: one bootstrap node, two ordinary nodes
  hyperpunch dht bootstrap --host 127.0.0.1 --port 49737 &
  hyperpunch dht node --bootstrap 127.0.0.1:49737 --host 127.0.0.1 &
  hyperpunch dht node --bootstrap 127.0.0.1:49737 --host 127.0.0.1 &
  export HYPERPUNCH_BOOTSTRAP=127.0.0.1:49737

  # announce a topic (stays running, re-announcing), look it up from elsewhere
  T=$(printf 'my topic' | b2sum -l 256 | cut -c1-64)
  hyperpunch dht announce $T --seed $(openssl rand -hex 32) &
  hyperpunch dht lookup $T

  # signed values under a key pair, content-addressed values under their hash
  hyperpunch dht mutable-put 'hello' --seed 0101010101010101010101010101010101010101010101010101010101010101
  hyperpunch dht mutable-get 8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c
  H=$(hyperpunch dht immutable-put 'hello world')
  hyperpunch dht immutable-get $H";

/// Options every DHT command takes.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Bootstrap nodes, HOST:PORT[,HOST:PORT...] (or set HYPERPUNCH_BOOTSTRAP).
    #[arg(long, value_name = "NODES", env = "HYPERPUNCH_BOOTSTRAP")]
    pub bootstrap: String,
    /// Local address to bind (default 0.0.0.0, all interfaces).
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub host: Ipv4Addr,
    /// Give up after this many seconds (one-shot commands).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
}

/// How many requests a node answers per source.
#[derive(Debug, Args)]
pub struct RateArg {
    /// Requests per second answered from one address (10x that from one host); more are
    /// dropped. 0 = no limit (what JS does).
    #[arg(long, value_name = "N", default_value_t = RateLimits::default().per_address)]
    pub rate_limit: u32,
}

impl RateArg {
    fn limits(&self) -> Limits {
        let rate = if self.rate_limit == 0 {
            RateLimits::unlimited()
        } else {
            RateLimits {
                per_address: self.rate_limit,
                per_host: self.rate_limit.saturating_mul(10),
                ..RateLimits::default()
            }
        };
        Limits {
            rate,
            ..Limits::default()
        }
    }
}

/// `hyperpunch dht ...`
#[derive(Debug, Subcommand)]
pub enum DhtCommand {
    /// `listen`, `connect`, `relay` (connections by public key; cli/dht_connect_cmd.rs).
    #[command(flatten)]
    Connect(super::dht_connect_cmd::ConnectCommand),
    /// Run a bootstrap node: the first node of a DHT, at a fixed public address.
    #[command(long_about = "\
Run a bootstrap node (hyperdht's `DHT.bootstrapper(port, host)`): persistent from the start,
with HOST:PORT as its public address. Other nodes list it in --bootstrap. It binds HOST:PORT
(or 0.0.0.0:PORT when HOST is not an address of this machine, e.g. behind a 1:1 NAT) and runs
until killed, printing its address on stderr. With --port 0 it takes a free port and prints it
(`bootstrap node HOST:PORT ...`): handy for scripts and tests on one machine.

Examples:
  hyperpunch dht bootstrap --host 127.0.0.1 --port 49737
  hyperpunch dht bootstrap --host 127.0.0.1 --port 0          # any free port, printed
  hyperpunch dht bootstrap --host 203.0.113.7 --port 49737   # a public server")]
    Bootstrap {
        /// The node's public IPv4 address.
        #[arg(long, value_name = "IP")]
        host: Ipv4Addr,
        /// Its UDP port (0: a free one, printed).
        #[arg(long, value_name = "PORT", default_value_t = 49737)]
        port: u16,
        #[command(flatten)]
        limit: RateArg,
    },
    /// Run a DHT node that stores records for others.
    #[command(long_about = "\
Run a persistent DHT node: it joins through the bootstrap nodes, takes an id from its public
address and stores and serves records (announcements, mutable and immutable values) until
killed. Like hyperdht's testnet nodes it assumes its port is reachable (`ephemeral: false,
firewalled: false`); with --adaptive it behaves as a default JS node instead (ephemeral at
first, persistent after ~20 minutes if the network allows). Its address and, once persistent,
its id go to stderr.

Examples:
  hyperpunch dht node --bootstrap 127.0.0.1:49737 --host 127.0.0.1
  hyperpunch dht node --bootstrap 203.0.113.7:49737 --port 49738 --adaptive")]
    Node {
        #[command(flatten)]
        net: NetArgs,
        /// UDP port of the node (default: any free port).
        #[arg(long, value_name = "PORT", default_value_t = 0)]
        port: u16,
        /// Adaptive like a default JS node instead of persistent at once.
        #[arg(long)]
        adaptive: bool,
        #[command(flatten)]
        limit: RateArg,
    },
    /// Announce TOPIC with a key pair and keep it announced until killed.
    #[command(long_about = "\
Announce the public key of the key pair derived from --seed under TOPIC (64 hex characters) on
the nodes closest to it, print `announced` on stderr, and keep the announcement alive: it is
renewed every 10-12 minutes (hyperswarm's rule; records expire after about 20) until the
process is killed. --relay adds relay addresses to the record (at most 3 are kept by nodes).

Examples:
  hyperpunch dht announce $(printf 'my topic' | b2sum -l 256 | cut -c1-64) --seed $(openssl rand -hex 32)
  hyperpunch dht announce 3333333333333333333333333333333333333333333333333333333333333333 --seed 0101010101010101010101010101010101010101010101010101010101010101 --bootstrap 127.0.0.1:49737")]
    Announce {
        /// The topic, 64 hex characters.
        topic: String,
        /// Seed of the key pair, 64 hex characters.
        #[arg(long, value_name = "HEX")]
        seed: String,
        /// Relay address to put in the record, HOST:PORT (repeatable).
        #[arg(long, value_name = "ADDR")]
        relay: Vec<SocketAddrV4>,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Print the public keys announced under TOPIC, one hex key per line.
    #[command(long_about = "\
Look TOPIC (64 hex characters) up and print the public key of each peer found, one hex key per
line, each once. Exits 0 when the lookup finished (also when nobody announced), 1 on error.

Examples:
  hyperpunch dht lookup 3333333333333333333333333333333333333333333333333333333333333333 --bootstrap 127.0.0.1:49737")]
    Lookup {
        /// The topic, 64 hex characters.
        topic: String,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Store a value signed by the key pair of --seed; print its public key.
    #[command(long_about = "\
Store VALUE (its bytes as given) signed by the key pair of --seed, under BLAKE2b(public key),
and print the public key (what `mutable-get` takes). Without --seq the sequence number is one
more than the latest stored (0 for a new key), so repeated puts update the value; nodes refuse
an older sequence number, or the same one with a different value.

Examples:
  hyperpunch dht mutable-put 'hello' --seed 0101010101010101010101010101010101010101010101010101010101010101
  hyperpunch dht mutable-put 'v2' --seed 0101010101010101010101010101010101010101010101010101010101010101 --seq 7")]
    MutablePut {
        /// The value.
        value: String,
        /// Seed of the key pair, 64 hex characters.
        #[arg(long, value_name = "HEX")]
        seed: String,
        /// Sequence number (default: latest + 1).
        #[arg(long, value_name = "N")]
        seq: Option<u64>,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Print the latest value signed by PUBLIC_KEY.
    #[command(long_about = "\
Fetch the latest value signed by PUBLIC_KEY (64 hex characters), check its signature, and print
it followed by a newline. Exits 1 with `not found` if no node has one.

Examples:
  hyperpunch dht mutable-get 8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c")]
    MutableGet {
        /// The writer's public key, 64 hex characters.
        public_key: String,
        /// Only accept sequence numbers of at least this.
        #[arg(long, value_name = "N", default_value_t = 0)]
        seq: u64,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Store a value under its hash; print the hash.
    #[command(long_about = "\
Store VALUE (its bytes as given) under its BLAKE2b-256 hash on the closest nodes and print the
hash (64 hex characters), which `immutable-get` takes.

Examples:
  hyperpunch dht immutable-put 'hello world'")]
    ImmutablePut {
        /// The value.
        value: String,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Print the value stored under HASH.
    #[command(long_about = "\
Fetch the value whose BLAKE2b-256 hash is HASH (64 hex characters), check the hash, and print
it followed by a newline. Exits 1 with `not found` if no node has it.

Examples:
  hyperpunch dht immutable-get 324dcf027dd4a30a932c441f365a25e86b173defa4b8e58948253471b81b72cf")]
    ImmutableGet {
        /// The value's hash, 64 hex characters.
        hash: String,
        #[command(flatten)]
        net: NetArgs,
    },
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))
}

fn dht_err(e: DhtError) -> CliError {
    CliError::new(e.to_string())
}

fn bootstrap_list(net: &NetArgs) -> Result<Vec<String>, CliError> {
    let list: Vec<String> = net
        .bootstrap
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Err(CliError::new(
            "--bootstrap (or HYPERPUNCH_BOOTSTRAP) needs at least one HOST:PORT",
        ));
    }
    Ok(list)
}

/// An ephemeral client node for one-shot commands.
async fn client(net: &NetArgs) -> Result<Dht, CliError> {
    let mut opts = DhtOptions::new(bootstrap_list(net)?);
    opts.host = net.host;
    opts.ephemeral = Some(true);
    let dht = Dht::spawn(opts).await.map_err(dht_err)?;
    dht.ready().await.map_err(dht_err)?;
    if dht.info().table_size == 0 {
        return Err(CliError::new(
            "no DHT node answered: check --bootstrap and that the bootstrap nodes run",
        ));
    }
    Ok(dht)
}

/// Run `fut` with the command's timeout.
async fn timed<T>(
    net: &NetArgs,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    tokio::time::timeout(Duration::from_secs(net.timeout.max(1)), fut)
        .await
        .map_err(|_| CliError::new(format!("{what} did not finish within {}s", net.timeout)))?
}

fn print_value(v: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(v)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush())
        .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")))
}

/// Run a `hyperpunch dht` command.
pub fn run(c: DhtCommand) -> Result<(), CliError> {
    runtime()?.block_on(run_async(c))
}

async fn run_async(c: DhtCommand) -> Result<(), CliError> {
    match c {
        DhtCommand::Connect(c) => super::dht_connect_cmd::run(c).await,
        DhtCommand::Bootstrap { host, port, limit } => {
            if host.is_unspecified() {
                return Err(CliError::new(
                    "--host must be the node's public IPv4 address, not 0.0.0.0",
                ));
            }
            let mut opts = DhtOptions::bootstrapper(SocketAddrV4::new(host, port));
            opts.limits = limit.limits();
            let dht = Dht::bootstrap(opts).await.map_err(dht_err)?;
            let info = dht.info();
            // --port 0: the port the node bound is its public one.
            let port = match (port, info.server_addr) {
                (0, Some(bound)) => bound.port(),
                _ => port,
            };
            eprintln!(
                "bootstrap node {host}:{port} (bound to {}), id {}",
                info.server_addr.map(|a| a.to_string()).unwrap_or_default(),
                info.id.map(hex::encode).unwrap_or_default()
            );
            run_forever(dht).await
        }
        DhtCommand::Node {
            net,
            port,
            adaptive,
            limit,
        } => {
            let mut opts = DhtOptions::persistent(bootstrap_list(&net)?, net.host, port);
            opts.limits = limit.limits();
            if adaptive {
                opts.ephemeral = None;
                opts.firewalled = true;
            }
            let dht = Dht::bootstrap(opts).await.map_err(dht_err)?;
            let info = dht.info();
            eprintln!(
                "node bound to {}, {} nodes known",
                info.server_addr.map(|a| a.to_string()).unwrap_or_default(),
                info.table_size
            );
            if !adaptive {
                match dht.info().id {
                    Some(id) => eprintln!("persistent, id {}", hex::encode(id)),
                    None => eprintln!(
                        "still ephemeral: no consistent public address was sampled yet \
                         (are the bootstrap nodes reachable?)"
                    ),
                }
            }
            run_forever(dht).await
        }
        DhtCommand::Announce {
            topic,
            seed,
            relay,
            net,
        } => {
            let topic = parse_hex32("TOPIC", &topic)?;
            let key = KeyPair::from_seed(&parse_hex32("--seed", &seed)?);
            let mut opts = DhtOptions::new(bootstrap_list(&net)?);
            opts.host = net.host;
            let dht = timed(&net, "joining the DHT", async {
                let d = Dht::spawn(opts).await.map_err(dht_err)?;
                d.ready().await.map_err(dht_err)?;
                Ok(d)
            })
            .await?;
            let (handle, _) = timed(&net, "announcing", async {
                dht.announce_forever(topic, &key, relay)
                    .await
                    .map_err(dht_err)
            })
            .await?;
            eprintln!("announced");
            let r = run_forever(dht).await;
            drop(handle);
            r
        }
        DhtCommand::Lookup { topic, net } => {
            let topic = parse_hex32("TOPIC", &topic)?;
            timed(&net, "the lookup", async {
                let dht = client(&net).await?;
                let mut l = dht.lookup(topic);
                let mut seen = Vec::new();
                let mut out = std::io::stdout().lock();
                while let Some(r) = l.next().await {
                    for p in r.peers {
                        if !seen.contains(&p.public_key) {
                            seen.push(p.public_key);
                            writeln!(out, "{}", hex::encode(p.public_key))
                                .and_then(|_| out.flush())
                                .map_err(|e| CliError::new(format!("stdout: {e}")))?;
                        }
                    }
                }
                if let Some(Err(e)) = l.result() {
                    return Err(dht_err(e));
                }
                Ok(())
            })
            .await
        }
        DhtCommand::MutablePut {
            value,
            seed,
            seq,
            net,
        } => {
            let key = KeyPair::from_seed(&parse_hex32("--seed", &seed)?);
            timed(&net, "the put", async {
                let dht = client(&net).await?;
                let seq = match seq {
                    Some(s) => s,
                    None => match dht.mutable_get(key.public_key, 0).await.map_err(dht_err)? {
                        Some(v) => v.seq + 1,
                        None => 0,
                    },
                };
                dht.mutable_put(&key, value.into_bytes(), seq)
                    .await
                    .map_err(dht_err)?;
                println!("{}", hex::encode(key.public_key));
                Ok(())
            })
            .await
        }
        DhtCommand::MutableGet {
            public_key,
            seq,
            net,
        } => {
            let pk = parse_hex32("PUBLIC_KEY", &public_key)?;
            timed(&net, "the get", async {
                let dht = client(&net).await?;
                match dht.mutable_get(pk, seq).await.map_err(dht_err)? {
                    Some(v) => print_value(&v.value),
                    None => Err(CliError::new("not found")),
                }
            })
            .await
        }
        DhtCommand::ImmutablePut { value, net } => {
            timed(&net, "the put", async {
                let dht = client(&net).await?;
                let hash = dht
                    .immutable_put(value.into_bytes())
                    .await
                    .map_err(dht_err)?;
                println!("{}", hex::encode(hash));
                Ok(())
            })
            .await
        }
        DhtCommand::ImmutableGet { hash, net } => {
            let hash = parse_hex32("HASH", &hash)?;
            timed(&net, "the get", async {
                let dht = client(&net).await?;
                match dht.immutable_get(hash).await.map_err(dht_err)? {
                    Some(v) => print_value(&v),
                    None => Err(CliError::new("not found")),
                }
            })
            .await
        }
    }
}

/// Keep a node running until the process is killed (or the node stops).
async fn run_forever(dht: Dht) -> Result<(), CliError> {
    let mut persistent = dht.info().id.is_some();
    loop {
        let info = dht
            .wait_for(|i| i.id.is_some() != persistent)
            .await
            .map_err(dht_err)?;
        persistent = info.id.is_some();
        match info.id {
            Some(id) => eprintln!("persistent, id {}", hex::encode(id)),
            None => eprintln!("ephemeral again"),
        }
    }
}
