//! `hyperpunch relay --ws HOST:PORT`: the WebSocket relay that lets browsers use the DHT
//! (`@hyperswarm/dht-relay` 0.4.3's wire), on [`hyperpunch::dht_relay`].

use super::dht_cmd::NetArgs;
use super::CliError;
use clap::Args;
use hyperpunch::core::relay::dht_relay::Limits;
use hyperpunch::dht_relay::{RelayOptions, WsRelay};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The relay's help text.
pub const RELAY_LONG: &str = "\
Run a WebSocket relay for browsers: a DHT node that browsers (and any @hyperswarm/dht-relay
client) reach over one WebSocket, to connect to peers by public key, accept connections, look
up and announce topics. Wire-compatible with @hyperswarm/dht-relay 0.4.3: its JS client works
against this relay.

Prints `relay ws://HOST:PORT` on stderr once the DHT node is bootstrapped, then serves until
killed, printing a line per session closed with an error.

In the dht-relay wire's custodial mode (the JS client's default) the client hands the relay
its secret key: the relay runs the Noise handshake and secret-stream, and sees the plaintext.
The relay keeps no key after the session ends.

In the non-custodial mode (JS `{ custodial: false }`) the client keeps its secret key: for a
connect the relay routes the handshake through the DHT and asks the client for each Noise
message, then forwards the stream's bytes, which are the client's secret-stream ciphertext.
The relay sees who connects to whom (both public keys, addresses), the holepunch secret of the
handshake, and the size and timing of the traffic; not the stream keys nor the plaintext.
A non-custodial announce is signed by the client: the relay asks it to sign each storing
node's record (signAnnounce). A non-custodial listen is served the same way: the relay
announces the server with the client's signatures and hands each incoming handshake to the
client (noiseReceive, noiseSend), then forwards the connection's ciphertext; an unannounce
asks the client to sign each removal (signUnannounce). A non-custodial session that later
sends a secret key is closed (1002).

Each session has limits; crossing one closes it with a WebSocket close code:
  1002 malformed frame or message      1003 text frame       1009 message too big
  4001 too many streams or servers     4002 too many requests per second or queries at once
  4003 the client leaves data unread   4004 no pong (heartbeat)
  4005 a mode this relay does not offer 4006 the relay is full

Examples:
  hyperpunch relay --ws 127.0.0.1:49443 --bootstrap 127.0.0.1:49737
  hyperpunch relay --ws 0.0.0.0:443 --bootstrap node1.example.org:49737 --max-connections 4096";

/// `hyperpunch relay ...`
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Where to accept WebSocket connections, HOST:PORT (ws://HOST:PORT; TLS belongs to a
    /// reverse proxy in front).
    #[arg(long, value_name = "HOST:PORT")]
    pub ws: SocketAddr,
    /// DHT network options (the relay's own DHT node binds on --host).
    #[command(flatten)]
    pub net: NetArgs,
    /// Sessions at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// Streams (and servers) per session.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_streams)]
    pub max_streams: usize,
    /// Requests (connect, listen, lookup, announce) per second per session.
    #[arg(long, value_name = "N", default_value_t = Limits::default().requests_per_second)]
    pub requests_per_second: u32,
    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_message: usize,
    /// Bytes a session may leave unread before the relay stops reading its streams.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().high_water)]
    pub high_water: usize,
    /// Seconds a session may stay above --high-water before it is closed (4003).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub stall_timeout: f64,
    /// Seconds between pings; a session with no pong for three of them is closed (4004).
    #[arg(long, value_name = "SECS", default_value_t = 15.0)]
    pub heartbeat: f64,
}

fn secs(what: &str, v: f64) -> Result<Duration, CliError> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| CliError::new(format!("{what} must be a positive number of seconds")))
}

/// Runs the relay until killed.
pub fn run(a: RelayArgs) -> Result<(), CliError> {
    let limits = Limits {
        max_streams: a.max_streams,
        max_servers: a.max_streams.min(Limits::default().max_servers.max(1)),
        requests_per_second: a.requests_per_second,
        high_water: a.high_water,
        stall_timeout: secs("--stall-timeout", a.stall_timeout)?,
        heartbeat: secs("--heartbeat", a.heartbeat)?,
        ..Limits::default()
    };
    let opts = RelayOptions {
        limits,
        max_connections: a.max_connections,
        max_message: a.max_message,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))?
        .block_on(async move {
            let peer = Arc::new(super::dht_connect_cmd::peer(&a.net, false).await?);
            let relay = WsRelay::bind(a.ws, peer, opts)
                .await
                .map_err(|e| CliError::new(format!("cannot listen on {}: {e}", a.ws)))?;
            eprintln!("relay ws://{}", relay.local_addr());
            let mut errors = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let n = relay.stats().closed_with_error.load(Ordering::Relaxed);
                if n > errors {
                    errors = n;
                    eprintln!(
                        "sessions closed with an error: {n} ({} open)",
                        relay.stats().sessions.load(Ordering::Relaxed)
                    );
                }
            }
        })
}
