//! The DHT node the tools (`tele`, `beam`, `shell`) run on: a [`Dht`] bound and bootstrapped
//! from the network options every DHT command takes (`--bootstrap`, `--host`, `--timeout`).

use std::net::{SocketAddrV4, ToSocketAddrs};
use std::time::Duration;

use clap::Args;
use hyperpunch::dht::{relays_from_env, Dht, DhtOptions};
use std::net::Ipv4Addr;

use super::CliError;

/// Where the tools find the DHT.
#[derive(Debug, Clone, Args)]
pub struct ToolNet {
    /// Bootstrap nodes, HOST:PORT[,HOST:PORT...] (or set HYPERPUNCH_BOOTSTRAP).
    // Required, but an `Option`: `hyperpunch ssh`'s client flattens this next to subcommands
    // that negate its requirements, and clap's derive would fail on a missing `String`.
    #[arg(
        long,
        value_name = "NODES",
        env = "HYPERPUNCH_BOOTSTRAP",
        required = true
    )]
    pub bootstrap: Option<String>,
    /// Local address the DHT sockets bind (default 0.0.0.0, all interfaces).
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub host: Ipv4Addr,
    /// Give up joining the DHT, announcing or connecting after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
}

impl ToolNet {
    /// The timeout as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// Parses `--bootstrap`: HOST:PORT entries separated by commas.
pub fn bootstrap(list: &str) -> Result<Vec<SocketAddrV4>, CliError> {
    let mut out = Vec::new();
    for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
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

/// Binds a DHT peer and waits for its bootstrap. `ephemeral`: `Some(true)` as hyperbeam's
/// `new DHT({ ephemeral: true })`, `None` adaptive as the other tools.
pub async fn join(net: &ToolNet, ephemeral: Option<bool>) -> Result<Dht, CliError> {
    let relays = relays_from_env().map_err(|e| CliError::new(format!("HYPERPUNCH_RELAYS: {e}")))?;
    let opts = DhtOptions {
        ephemeral,
        relays,
        ..DhtOptions::on(
            net.host,
            &bootstrap(net.bootstrap.as_deref().unwrap_or(""))?,
        )
    };
    let peer = Dht::spawn(opts)
        .await
        .map_err(|e| CliError::new(format!("cannot bind on {}: {e}", net.host)))?;
    tokio::time::timeout(net.timeout(), peer.ready())
        .await
        .map_err(|_| {
            CliError::new(
                "joining the DHT timed out: check --bootstrap and that the bootstrap nodes run",
            )
        })?
        .map_err(|e| CliError::new(e.to_string()))?;
    Ok(peer)
}

/// A fresh random 32-byte seed.
pub fn random_seed() -> Result<[u8; 32], CliError> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).map_err(|e| CliError::new(format!("no randomness: {e}")))?;
    Ok(s)
}

/// The tools' async runtime (one thread, as the other DHT commands).
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))
}

/// A 32-byte key as 64 hex characters or 52 z-base-32 characters (hypercore-id-encoding, as
/// hypershell prints keys).
pub fn parse_key(what: &str, s: &str) -> Result<[u8; 32], CliError> {
    hyperpunch::core::id_encoding::decode(s.trim()).map_err(|_| {
        CliError::new(format!(
            "{what} must be a key: 64 hex characters or 52 z-base-32 characters"
        ))
    })
}
