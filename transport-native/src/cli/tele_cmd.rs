//! `hyperpunch tele server | client`: hypertele 1.1.4 (`hypertele-server`, `hypertele`). A
//! server exposes a local TCP port (or Unix socket) under a key pair; a client opens it as a
//! local port elsewhere; every local connection is one hyperdht connection. The access rules
//! and the `--compress` framing are [`hyperpunch::tele`]'s; this file is the I/O.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Subcommand;
use hyperpunch::crypto::KeyPair;
use hyperpunch::tele::{self, Access};
use serde_json::Value;

use super::expose::{
    conf_str, forward, read_identity, read_json_object as read_config, serve, Target,
};
use super::peer::{parse_key, runtime, ToolNet};
use super::pipe::Framing;
use super::{parse_hex32, CliError};

/// `hyperpunch tele ...`
#[derive(Debug, Subcommand)]
pub enum TeleCommand {
    /// Expose a local port (or Unix socket) under a key pair (hypertele-server).
    #[command(long_about = "\
Expose a local TCP service (or Unix socket) to peers: announce the key pair of the seed on the
DHT, print `hypertele: <PUBLIC KEY HEX>` on stdout (as hypertele-server), and for every peer
that connects, open a connection to the service and pipe the two (end-to-end encrypted,
holepunched through NATs). Works with JS `hypertele` clients and `hyperpunch tele client`.

Who may connect: everyone by default; only the public keys of an allow list (--allow, or
\"allow\" in the -c configuration); or with --private, only clients that know the seed (they
derive this key pair from it; the public key alone is not enough).

The JSON configuration of -c is hypertele's: { \"seed\": \"HEX\", \"allow\": [\"KEY\", ...],
\"compress\": true }.

Examples:
  hyperpunch tele server -l 22 --seed $(openssl rand -hex 32) --bootstrap 127.0.0.1:49737
  hyperpunch tele server -l 8080 -c server.json
  hyperpunch tele server -u /run/app.sock --seed $SEED --private")]
    Server {
        /// The local port to expose.
        #[arg(short = 'l', long = "listen-port", value_name = "PORT")]
        port: Option<u16>,
        /// A Unix socket to expose instead of a port.
        #[arg(
            short = 'u',
            long = "unix",
            value_name = "PATH",
            conflicts_with = "port"
        )]
        unix: Option<PathBuf>,
        /// The address of the exposed service.
        #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
        address: IpAddr,
        /// Seed of the key pair, 64 hex characters (or \"seed\" in -c).
        #[arg(long, value_name = "HEX")]
        seed: Option<String>,
        /// hypertele's JSON configuration file (seed, allow, compress).
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Allow this client public key (repeatable; adds to \"allow\" of -c).
        #[arg(long, value_name = "KEY")]
        allow: Vec<String>,
        /// Only clients holding the seed may connect.
        #[arg(long)]
        private: bool,
        /// Gzip every message (both sides must say so).
        #[arg(long)]
        compress: bool,
        #[command(flatten)]
        net: ToolNet,
    },
    /// Open a peer's exposed service as a local port (hypertele).
    #[command(long_about = "\
Listen on a local port (or Unix socket) and forward every connection to it to the hypertele
server of KEY (JS `hypertele-server` or `hyperpunch tele server`), printing `Server ready
@ADDRESS:PORT` on stdout once listening. -p 0 picks a free port.

With --private, -s is the server's seed instead of its public key: the client connects with the
key pair of that seed, which is what a private server admits.

The JSON configuration of -c is hypertele's: { \"peer\": \"KEY\", \"compress\": true }. An
identity file (-i) is hyper-cmd's { \"publicKey\": \"HEX\", \"secretKey\": \"HEX\" }: the key pair the
server's allow list names; without it a random key pair is used.

Examples:
  hyperpunch tele client -p 2222 -s $KEY --bootstrap 127.0.0.1:49737 &
  ssh -p 2222 localhost
  hyperpunch tele client -p 8080 -s $KEY -i identity.json
  hyperpunch tele client -p 5432 -s $SEED --private")]
    Client {
        /// The local port to listen on (0: any free port).
        #[arg(short = 'p', long = "port", value_name = "PORT")]
        port: Option<u16>,
        /// A Unix socket to listen on instead of a port.
        #[arg(
            short = 'u',
            long = "unix",
            value_name = "PATH",
            conflicts_with = "port"
        )]
        unix: Option<PathBuf>,
        /// The local address to listen on.
        #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
        address: IpAddr,
        /// The server's public key (or, with --private, its seed).
        #[arg(short = 's', long = "server", value_name = "KEY")]
        server: Option<String>,
        /// hypertele's JSON configuration file (peer, compress).
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// hyper-cmd identity file: the key pair to connect with.
        #[arg(short = 'i', long = "identity", value_name = "FILE")]
        identity: Option<PathBuf>,
        /// -s is the seed of a private server.
        #[arg(long)]
        private: bool,
        /// Gzip every message (both sides must say so).
        #[arg(long)]
        compress: bool,
        #[command(flatten)]
        net: ToolNet,
    },
}

/// Runs one command.
pub fn run(c: TeleCommand) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        match c {
            TeleCommand::Server {
                port,
                unix,
                address,
                seed,
                config,
                allow,
                private,
                compress,
                net,
            } => {
                let target = match (port, unix) {
                    (Some(0), None) | (None, None) => {
                        return Err(CliError::new("give the service's port (-l) or socket (-u)"))
                    }
                    (Some(p), None) => Target::Tcp(address, p),
                    (None, Some(u)) => Target::Unix(u),
                    (Some(_), Some(_)) => unreachable!("clap: conflicts_with"),
                };
                let conf = read_config(config.as_deref())?;
                let seed = seed
                    .or_else(|| conf_str(&conf, "seed"))
                    .ok_or_else(|| CliError::new("no seed: give --seed HEX or \"seed\" in -c"))?;
                let kp = tele::key_pair(&parse_hex32("the seed", &seed)?);
                let mut keys = Vec::new();
                if let Some(list) = conf.get("allow") {
                    for k in list.as_array().ok_or_else(|| {
                        CliError::new("\"allow\" in the configuration must be a list of keys")
                    })? {
                        keys.push(parse_key("a key of \"allow\"", k.as_str().unwrap_or(""))?);
                    }
                }
                for k in &allow {
                    keys.push(parse_key("--allow", k)?);
                }
                let has_list = conf.get("allow").is_some() || !allow.is_empty();
                let access = match (private, has_list) {
                    (true, true) => {
                        return Err(CliError::new(
                            "--private cannot be combined with an allow list: the seed is the \
                             capability of a private server",
                        ))
                    }
                    (true, false) => Access::Private(kp.public_key),
                    (false, true) => Access::AllowList(keys),
                    (false, false) => Access::Anyone,
                };
                let framing = framing(compress || conf_bool(&conf, "compress"));
                serve(kp, access, target, framing, &net, |kp| {
                    if private {
                        println!(
                            "hypertele (private): connect with seed {} (listening on {})",
                            hex::encode(kp.seed()),
                            hex::encode(kp.public_key)
                        );
                    } else {
                        println!("hypertele: {}", hex::encode(kp.public_key));
                    }
                })
                .await
            }
            TeleCommand::Client {
                port,
                unix,
                address,
                server,
                config,
                identity,
                private,
                compress,
                net,
            } => {
                let listen = match (port, unix) {
                    (Some(p), None) => Target::Tcp(address, p),
                    (None, Some(u)) => Target::Unix(u),
                    (None, None) => {
                        return Err(CliError::new("give the local port (-p) or socket (-u)"))
                    }
                    (Some(_), Some(_)) => unreachable!("clap: conflicts_with"),
                };
                let conf = read_config(config.as_deref())?;
                let (peer_key, key_pair) = if private {
                    if identity.is_some() {
                        return Err(CliError::new(
                            "--private cannot be combined with -i: the key pair is the server's, \
                             derived from its seed",
                        ));
                    }
                    let seed = server.ok_or_else(|| {
                        CliError::new("--private needs -s with the server's seed")
                    })?;
                    let kp = tele::key_pair(&parse_hex32("the seed (-s with --private)", &seed)?);
                    (kp.public_key, kp)
                } else {
                    let peer = server.or_else(|| conf_str(&conf, "peer")).ok_or_else(|| {
                        CliError::new("no server key: give -s KEY or \"peer\" in -c")
                    })?;
                    let kp = match identity {
                        Some(path) => read_identity(&path)?,
                        None => KeyPair::from_seed(&super::peer::random_seed()?),
                    };
                    (parse_key("the server key (-s)", &peer)?, kp)
                };
                let framing = framing(compress || conf_bool(&conf, "compress"));
                forward(peer_key, key_pair, listen, framing, &net).await
            }
        }
    })
}

fn framing(compress: bool) -> Framing {
    if compress {
        Framing::Gzip
    } else {
        Framing::Raw
    }
}

fn conf_bool(conf: &Value, key: &str) -> bool {
    conf.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// `hyperpunch tele --help`.
pub const TELE_LONG: &str = "\
hypertele: expose a local TCP port (or Unix socket) under a key pair with `tele server`, and open
it on another machine as a local port with `tele client`; every connection to that port is an
end-to-end encrypted hyperdht connection to the server, holepunched through NATs. Compatible
with JS hypertele 1.1.4 both ways (same seeds, keys, allow lists, --private and --compress).

Examples:
  # machine A: expose its SSH server
  hyperpunch tele server -l 22 --seed $(openssl rand -hex 32) --bootstrap 127.0.0.1:49737
  # machine B: open it as local port 2222, then use it
  hyperpunch tele client -p 2222 -s <KEY> --bootstrap 127.0.0.1:49737 &
  ssh -p 2222 localhost";
