//! `hyperpunch dht listen | connect | relay`: connections by public key (holepunched, or
//! through a blind relay) as a netcat, and a blind relay, on [`hyperpunch::dht`].

use super::dht_cmd::NetArgs;
use super::{parse_hex32, CliError};
use clap::Subcommand;
use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::{
    relays_from_env, ConnectOptions, Connection, Dht, DhtError, DhtOptions, RelayServer,
    ServerOptions,
};
use std::net::{SocketAddrV4, ToSocketAddrs};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connections by public key: `listen`, `connect`, `relay`.
#[derive(Debug, Subcommand)]
pub enum ConnectCommand {
    /// Accept one connection to a key pair and pipe it like `nc -l`.
    #[command(long_about = "\
Announce the key pair of --seed on the DHT, print `listening <PUBLIC KEY HEX>` on stderr and
accept the first connection to it: what the peer sends goes to stdout, stdin goes to the peer
(each read is one secret-stream message). Ends when both sides ended (stdin at EOF and the
peer ended), or with an error. Connections are end-to-end encrypted (Noise IK, secret-stream)
over UDX, holepunched through NATs, or relayed through a blind relay.

Relays: --relay-through KEY asks every client to pair through that blind relay (JS
`relayThrough`); the peers still try to punch, and the first path wins.

Examples:
  hyperpunch dht listen --seed $(openssl rand -hex 32) --bootstrap 127.0.0.1:49737
  hyperpunch dht listen --seed 0101010101010101010101010101010101010101010101010101010101010101 > received.bin
  hyperpunch dht listen --seed $SEED --relay-through $RELAY_KEY")]
    Listen {
        /// Seed of the key pair, 64 hex characters (hyperdht `DHT.keyPair(seed)`).
        #[arg(long, value_name = "HEX")]
        seed: String,
        /// Ask clients to pair through this blind relay (public key, 64 hex characters).
        #[arg(long, value_name = "KEY")]
        relay_through: Option<String>,
        /// Print `connected ADDR via direct|punched|relayed` on stderr once connected (and
        /// `upgraded to direct ADDR` if a relayed connection later moves to a punched path).
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Connect to a public key and pipe stdin/stdout to it.
    #[command(long_about = "\
Connect to the server listening on PUBLIC_KEY (64 hex characters): stdin goes to it, what it
sends goes to stdout. Ends when both sides ended. Errors carry hyperdht's codes, e.g.
PEER_NOT_FOUND (nobody announced the key), PEER_CONNECTION_FAILED (the handshake went
nowhere, e.g. refused by the server's firewall), HOLEPUNCH_DOUBLE_RANDOMIZED_NATS (both NATs
randomize ports: only a relay can connect them). --timeout SECS (default 60) bounds the whole
attempt, lookup, handshake, punch and relay included: CONNECT_TIMEOUT when it runs out (a
birthday punch between a consistent and a random NAT can take up to about 40 s).

Relays: --relay-through KEY pairs through that blind relay (JS `relayThrough`). Beyond JS, a
deployment can list default relays in HYPERPUNCH_RELAYS (public keys, comma separated): when
the punch fails, the connection is made again through one of them. --no-relay-fallback turns
that off.

Examples:
  hyperpunch dht connect 8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c --bootstrap 127.0.0.1:49737
  echo hello | hyperpunch dht connect $KEY
  HYPERPUNCH_RELAYS=$RELAY_KEY hyperpunch dht connect $KEY < file.bin")]
    Connect {
        /// The server's public key, 64 hex characters.
        public_key: String,
        /// Our key pair's seed (default: a random key pair).
        #[arg(long, value_name = "HEX")]
        seed: Option<String>,
        /// Pair through this blind relay (public key, 64 hex characters).
        #[arg(long, value_name = "KEY")]
        relay_through: Option<String>,
        /// Do not fall back to the relays of HYPERPUNCH_RELAYS when the punch fails.
        #[arg(long)]
        no_relay_fallback: bool,
        /// Print `connected ADDR via direct|punched|relayed in N ms` on stderr once connected
        /// (and `upgraded to direct ADDR` if a relayed connection later moves to a punched path)
        /// (N: from the connect call, after the DHT bootstrap, to the open stream).
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Run a blind relay reachable by a key pair.
    #[command(long_about = "\
Run a blind relay (blind-relay 1.x, as JS `BlindRelay.Server` on a hyperdht server): announce
the key pair of --seed, print `relay <PUBLIC KEY HEX>` on stderr and relay, until killed, the
UDX streams of peers that pair through it (`--relay-through` here, `relayThrough` in JS),
printing `paired N` as pairings are made. The relay forwards encrypted packets; it cannot
read them.

Examples:
  hyperpunch dht relay --seed $(openssl rand -hex 32) --bootstrap 127.0.0.1:49737
  # then, on other machines:
  hyperpunch dht listen --seed $SEED --relay-through <RELAY KEY>
  HYPERPUNCH_RELAYS=<RELAY KEY> hyperpunch dht connect <SERVER KEY>")]
    Relay {
        /// Seed of the relay's key pair, 64 hex characters.
        #[arg(long, value_name = "HEX")]
        seed: String,
        #[command(flatten)]
        net: NetArgs,
    },
}

fn bootstrap(net: &NetArgs) -> Result<Vec<SocketAddrV4>, CliError> {
    let mut out = Vec::new();
    for s in net
        .bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let addrs = s.to_socket_addrs().map_err(|e| {
            CliError::new(format!("--bootstrap {s}: not a HOST:PORT address ({e})"))
        })?;
        match addrs
            .filter_map(|a| match a {
                std::net::SocketAddr::V4(a) => Some(a),
                std::net::SocketAddr::V6(_) => None,
            })
            .next()
        {
            Some(a) => out.push(a),
            None => return Err(CliError::new(format!("--bootstrap {s}: no IPv4 address"))),
        }
    }
    if out.is_empty() {
        return Err(CliError::new(
            "--bootstrap (or HYPERPUNCH_BOOTSTRAP) needs at least one HOST:PORT",
        ));
    }
    Ok(out)
}

fn err(e: DhtError) -> CliError {
    CliError::new(e.to_string())
}

pub(crate) async fn peer(net: &NetArgs, relay_fallback: bool) -> Result<Dht, CliError> {
    let relays = relays_from_env().map_err(|e| CliError::new(format!("HYPERPUNCH_RELAYS: {e}")))?;
    let opts = DhtOptions {
        relays,
        relay_fallback,
        ..DhtOptions::on(net.host, &bootstrap(net)?)
    };
    let peer = Dht::spawn(opts)
        .await
        .map_err(|e| CliError::new(format!("cannot bind on {}: {e}", net.host)))?;
    tokio::time::timeout(Duration::from_secs(net.timeout), peer.ready())
        .await
        .map_err(|_| {
            CliError::new(
                "the DHT bootstrap timed out: check --bootstrap and that the bootstrap nodes run",
            )
        })?
        .map_err(err)?;
    Ok(peer)
}

fn key(what: &str, s: &str) -> Result<[u8; 32], CliError> {
    parse_hex32(what, s)
}

/// Runs one command.
pub async fn run(c: ConnectCommand) -> Result<(), CliError> {
    match c {
        ConnectCommand::Listen {
            seed,
            relay_through,
            verbose,
            net,
        } => {
            let kp = KeyPair::from_seed(&key("--seed", &seed)?);
            let relay_through = relay_through
                .map(|k| key("--relay-through", &k))
                .transpose()?;
            let peer = peer(&net, false).await?;
            let opts = ServerOptions {
                relay_through,
                ..ServerOptions::default()
            };
            let mut server = tokio::time::timeout(
                Duration::from_secs(net.timeout),
                peer.listen(kp.clone(), opts),
            )
            .await
            .map_err(|_| CliError::new("announcing timed out"))?
            .map_err(err)?;
            eprintln!("listening {}", hex::encode(kp.public_key));
            let conn = server
                .accept()
                .await
                .ok_or_else(|| CliError::new("the DHT node stopped"))?;
            if verbose {
                eprintln!("connected {} via {}", conn.remote_addr(), path(&conn));
                report_upgrade(&conn);
            }
            pipe(conn).await
        }
        ConnectCommand::Connect {
            public_key,
            seed,
            relay_through,
            no_relay_fallback,
            verbose,
            net,
        } => {
            let pk = key("PUBLIC_KEY", &public_key)?;
            let kp = match seed {
                Some(s) => KeyPair::from_seed(&key("--seed", &s)?),
                None => {
                    let mut s = [0u8; 32];
                    getrandom::fill(&mut s)
                        .map_err(|e| CliError::new(format!("no randomness: {e}")))?;
                    KeyPair::from_seed(&s)
                }
            };
            let relay_through = relay_through
                .map(|k| key("--relay-through", &k))
                .transpose()?;
            let peer = peer(&net, !no_relay_fallback).await?;
            // `--timeout` bounds the attempt in the core (CONNECT_TIMEOUT, whatever phase it
            // is in; without it the core's own 60 s bound cut a longer --timeout short); the
            // outer bound only backs it up.
            let limit = Duration::from_secs(net.timeout.max(1));
            let opts = ConnectOptions {
                relay_through,
                timeout: Some(limit),
                ..ConnectOptions::default()
            };
            let start = std::time::Instant::now();
            let conn = tokio::time::timeout(
                limit.saturating_add(Duration::from_secs(10)),
                peer.connect(pk, kp, opts),
            )
            .await
            .map_err(|_| CliError::new(format!("connecting timed out after {} s", net.timeout)))?
            .map_err(err)?;
            if verbose {
                eprintln!(
                    "connected {} via {} in {} ms",
                    conn.remote_addr(),
                    path(&conn),
                    start.elapsed().as_millis()
                );
                report_upgrade(&conn);
            }
            pipe(conn).await
        }
        ConnectCommand::Relay { seed, net } => {
            let kp = KeyPair::from_seed(&key("--seed", &seed)?);
            let peer = peer(&net, false).await?;
            let relay = tokio::time::timeout(
                Duration::from_secs(net.timeout),
                RelayServer::start(&peer, kp),
            )
            .await
            .map_err(|_| CliError::new("announcing timed out"))?
            .map_err(err)?;
            eprintln!("relay {}", hex::encode(relay.public_key()));
            match peer.firewalled().await.map_err(err)? {
                (false, Some(addr)) => eprintln!("reachable at {addr}"),
                _ => eprintln!(
                    "firewalled: peers holepunch to this relay (peers behind random NATs may \
                     not reach it); a relay is best run on a public address"
                ),
            }
            let mut seen = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let n = relay.pairings();
                if n > seen {
                    seen = n;
                    eprintln!("paired {n}");
                }
            }
        }
    }
}

/// For `--verbose`: prints `upgraded to direct ADDR` on stderr when a relayed connection moves
/// to a direct path (the punch went on after the relay paired it).
fn report_upgrade(conn: &Connection) {
    if conn.is_relayed() {
        let upgraded = conn.upgraded();
        tokio::spawn(async move {
            if let Some(addr) = upgraded.await {
                eprintln!("upgraded to direct {addr}");
            }
        });
    }
}

/// How a connection reached the peer, for `--verbose`.
fn path(conn: &Connection) -> &'static str {
    if conn.is_relayed() {
        "relayed"
    } else if conn.is_holepunched() {
        "punched"
    } else {
        "direct"
    }
}

/// stdin → peer, peer → stdout, until both sides ended.
async fn pipe(conn: Connection) -> Result<(), CliError> {
    let (tx, mut rx) = conn.split();
    let upload = async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stdin
                .read(&mut buf)
                .await
                .map_err(|e| CliError::new(format!("reading stdin: {e}")))?;
            if n == 0 {
                break;
            }
            tx.send(buf[..n].to_vec())
                .await
                .map_err(|e| CliError::new(format!("sending: {e}")))?;
        }
        tx.end()
            .await
            .map_err(|e| CliError::new(format!("ending: {e}")))?;
        // Keep the sender (and so the connection) until the download side is done.
        Ok::<_, CliError>(tx)
    };
    let download = async move {
        let mut stdout = tokio::io::stdout();
        while let Some(m) = rx.recv().await {
            let m = m.map_err(|e| CliError::new(format!("connection: {e}")))?;
            stdout
                .write_all(&m)
                .await
                .map_err(|e| CliError::new(format!("writing stdout: {e}")))?;
            stdout
                .flush()
                .await
                .map_err(|e| CliError::new(format!("writing stdout: {e}")))?;
        }
        Ok::<_, CliError>(())
    };
    let (up, down) = tokio::join!(upload, download);
    down?;
    let tx = up?;
    // Everything we sent must reach the peer before the process exits.
    let _ = tokio::time::timeout(Duration::from_secs(60), tx.finished()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use hyperpunch::dht::parse_relays;

    #[test]
    fn relay_lists_parse() {
        let k = "01".repeat(32);
        assert_eq!(parse_relays(&format!("{k}, {k}")).unwrap().len(), 2);
        assert!(parse_relays("xyz").is_err());
        assert!(parse_relays("").unwrap().is_empty());
    }
}
