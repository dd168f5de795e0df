//! The DHT on tokio: one node that stores and finds records (dht-rpc + hyperdht's record
//! layer) and connects by public key (hyperdht's `listen` / `connect`, holepunching, blind
//! relays), driven over UDX sockets.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hyperpunch::dht::DhtError> {
//! use hyperpunch::dht::{ConnectOptions, Dht, DhtOptions};
//! use hyperpunch::crypto::KeyPair;
//!
//! let dht = Dht::bootstrap(DhtOptions::new(vec!["127.0.0.1:49737".into()])).await?;
//! let topic = [7u8; 32];
//! let key = KeyPair::from_seed(&[1; 32]);
//! dht.announce(topic, &key, vec![]).await?;
//! let mut found = dht.lookup(topic);
//! while let Some(reply) = found.next().await {
//!     for peer in reply.peers {
//!         println!("{}", hex::encode(peer.public_key));
//!     }
//! }
//! // connect by public key (secret-stream over UDX, holepunched when needed)
//! let mut conn = dht.connect([9; 32], key.clone(), ConnectOptions::default()).await?;
//! conn.send(b"hello".to_vec()).await?;
//! # Ok(()) }
//! ```
//!
//! Like dht-rpc, a node binds two UDP sockets: the *server* socket (`host:port`, its public
//! port) and the *client* socket (any port; requests leave from it while firewalled, and the
//! PING_NAT firewall probe needs the two to differ); holepunchers bind more on the same host.
//! All are [`UdxSocket`](crate::udx::UdxSocket)s, so UDX streams share them as in JS: the driver only takes the
//! non-UDX datagrams ([`UdxSocket::datagrams`](crate::udx::UdxSocket::datagrams)) and the UDX packets for stream ids no stream
//! has yet (the firewall hook). Every protocol decision is the engines' ([`HyperDht`] and the
//! [`Connector`](hyperpunch_core::dht::connect::Connector)); the driver (`driver.rs`) moves
//! bytes, keeps the clock (time since the Unix epoch, for hyperdht's bump), carries out the
//! connector's socket actions and turns operations into futures.
//!
//! - [`Dht::spawn`] / [`Dht::bootstrap`] start a node on an explicit host (loopback for tests,
//!   a namespace's address, or `0.0.0.0`) from an explicit bootstrap list;
//! - records: [`Dht::lookup`], [`Dht::announce`], [`Dht::unannounce`], [`Dht::mutable_put`],
//!   [`Dht::immutable_get`], ...;
//! - connections: [`Dht::listen`] announces a key pair and yields incoming connections
//!   ([`Server`]); [`Dht::connect`] connects to a public key ([`Connection`]).

mod conn;
mod driver;
mod lookup;
pub mod relay;

pub use conn::{
    Connection, ConnectionReceiver, ConnectionSender, RawConnection, RawParts, StreamHost,
    KEEP_ALIVE_MS,
};
pub use hyperpunch_core::dht::connect::{
    ConnectError, ConnectOptions, ExternalReceived, NoiseStep, ServerOptions,
};
pub use hyperpunch_core::dht::rpc::{Limits, RateLimits};
pub use hyperpunch_core::dht::{LookupResult as LookupReply, StoreLimits};
pub use lookup::{AnnounceHandle, Lookup};
pub use relay::RelayServer;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::dht::announcer::RefreshSchedule;
use hyperpunch_core::dht::connect::ServerId;
use hyperpunch_core::dht::messages_connect::NoisePayload;
use hyperpunch_core::dht::rpc::{self, RequestError};
use hyperpunch_core::dht::{
    AnnounceOptions, HyperDht, LookupResult, MutableValue, OpError, OpId, OpOutput, DEFAULT_PORT,
};
use tokio::sync::{mpsc, oneshot, watch};

pub(crate) use driver::Cmd;

/// How to run a DHT node.
#[derive(Debug, Clone)]
pub struct DhtOptions {
    /// Bootstrap nodes as `host:port` (or hyperdht's `ip@host:port`; the IP is used). An empty
    /// list makes this node the first of a new DHT. Public bootstrap nodes are never added.
    pub bootstrap: Vec<String>,
    /// Address to bind every socket on (default 0.0.0.0; pool sockets of punches too).
    pub host: Ipv4Addr,
    /// Server socket port (0: any; hyperdht defaults to 49737).
    pub port: u16,
    /// `Some(false)`: persistent as soon as the network allows (JS `ephemeral: false`);
    /// `Some(true)`: always ephemeral; `None`: adaptive (JS default).
    pub ephemeral: Option<bool>,
    /// Start firewalled until proven otherwise (JS default `true`); `false` assumes the server
    /// socket is reachable (JS `firewalled: false`).
    pub firewalled: bool,
    /// During the bootstrap, ask one node to PING_NAT our server socket and, if it gets
    /// through, test whether we are firewalled at all (dht-rpc `quickFirewall`, default true).
    /// With `false` (and `ephemeral: Some(true)`) the node stays firewalled: peers holepunch to
    /// it instead of connecting directly, as to a node behind a NAT.
    pub quick_firewall: bool,
    /// Run as a bootstrap node whose public address is this (JS `DHT.bootstrapper`).
    pub bootstrapper: Option<SocketAddrV4>,
    /// Engine limits (inflight requests, queries, incoming request rates).
    pub limits: Limits,
    /// Record store sizes.
    pub store: StoreLimits,
    /// Blind relays this deployment offers (public keys). Beyond JS: when a punch fails, a
    /// connection is made again through one of them (unless `relay_fallback` is off or the
    /// connection names its own `relay_through`). [`relays_from_env`] reads them from
    /// `HYPERPUNCH_RELAYS`.
    pub relays: Vec<[u8; 32]>,
    /// Fall back to `relays` when a punch fails (default true).
    pub relay_fallback: bool,
}

impl Default for DhtOptions {
    fn default() -> Self {
        DhtOptions::new(Vec::new())
    }
}

impl DhtOptions {
    /// A node with JS's defaults (adaptive, firewalled until proven otherwise) bootstrapping
    /// from `bootstrap`.
    pub fn new(bootstrap: Vec<String>) -> Self {
        DhtOptions {
            bootstrap,
            host: Ipv4Addr::UNSPECIFIED,
            port: 0,
            ephemeral: None,
            firewalled: true,
            quick_firewall: true,
            bootstrapper: None,
            limits: Limits::default(),
            store: StoreLimits::default(),
            relays: Vec::new(),
            relay_fallback: true,
        }
    }

    /// A node bound on `host` (any port) bootstrapping from `bootstrap` (addresses).
    pub fn on(host: Ipv4Addr, bootstrap: &[SocketAddrV4]) -> Self {
        DhtOptions {
            host,
            ..DhtOptions::new(bootstrap.iter().map(|a| a.to_string()).collect())
        }
    }

    /// A persistent node that assumes it is reachable (hyperdht's testnet nodes:
    /// `ephemeral: false, firewalled: false`).
    pub fn persistent(bootstrap: Vec<String>, host: Ipv4Addr, port: u16) -> Self {
        DhtOptions {
            host,
            port,
            ephemeral: Some(false),
            firewalled: false,
            ..DhtOptions::new(bootstrap)
        }
    }

    /// A bootstrap node at `public` (bound to `public` if that is a local address, else to
    /// 0.0.0.0 on its port), as `DHT.bootstrapper(port, host)`.
    pub fn bootstrapper(public: SocketAddrV4) -> Self {
        DhtOptions {
            host: *public.ip(),
            port: public.port(),
            ephemeral: Some(false),
            firewalled: false,
            bootstrapper: Some(public),
            ..DhtOptions::new(Vec::new())
        }
    }
}

/// The relays of `HYPERPUNCH_RELAYS`: public keys as 64 hex characters, separated by commas
/// or spaces. Malformed entries are an error naming them.
pub fn relays_from_env() -> Result<Vec<[u8; 32]>, String> {
    match std::env::var("HYPERPUNCH_RELAYS") {
        Ok(v) => parse_relays(&v),
        Err(_) => Ok(Vec::new()),
    }
}

/// Parses a relay list (see [`relays_from_env`]).
pub fn parse_relays(list: &str) -> Result<Vec<[u8; 32]>, String> {
    list.split([',', ' ', '\n'])
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let mut k = [0u8; 32];
            hex::decode_to_slice(s.trim(), &mut k)
                .map_err(|_| format!("relay key {s:?} is not 64 hex characters"))?;
            Ok(k)
        })
        .collect()
}

/// Why a DHT call failed.
#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    /// Binding or resolving failed, or a connection's socket I/O.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A bootstrap address could not be resolved to IPv4.
    #[error("cannot resolve bootstrap node {0:?} to an IPv4 address")]
    Resolve(String),
    /// The operation failed (too few nodes answered, every commit failed, ...).
    #[error("{0}")]
    Op(#[from] OpError),
    /// A request failed.
    #[error("{0}")]
    Request(#[from] RequestError),
    /// The connection attempt failed (JS error codes).
    #[error("{0}")]
    Connect(#[from] ConnectError),
    /// The node was destroyed.
    #[error("the DHT node is closed")]
    Closed,
}

/// What a node knows about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    /// Its id, once persistent.
    pub id: Option<[u8; 32]>,
    /// Ephemeral (not in other nodes' tables).
    pub ephemeral: bool,
    /// Believes its server socket is unreachable.
    pub firewalled: bool,
    /// The bootstrap finished.
    pub bootstrapped: bool,
    /// Our public host as others see it, when consistent.
    pub public_host: Option<Ipv4Addr>,
    /// Our public port as others see it (0: unknown or randomized).
    pub public_port: u16,
    /// Where others can reach our server socket, if they can.
    pub remote_address: Option<SocketAddrV4>,
    /// The server socket's local address.
    pub server_addr: Option<SocketAddr>,
    /// The client socket's local address.
    pub client_addr: Option<SocketAddr>,
    /// Nodes in the routing table.
    pub table_size: usize,
    /// Records stored: announcements, mutable, immutable, forwards.
    pub stored: (usize, usize, usize, usize),
    /// Incoming connections a server's handshake and punch accepted but the node could not
    /// hand over: their stream did not open, the server was closing, or its accept queue
    /// ([`ACCEPT_QUEUE`]) was full. Each peer's stream was reset at once.
    pub incoming_dropped: u64,
    /// Why the last of those was dropped.
    pub last_incoming_drop: Option<String>,
}

/// How many accepted connections wait for [`Server::accept`]; more are dropped (counted in
/// [`NodeInfo::incoming_dropped`], the peer's stream reset).
pub const ACCEPT_QUEUE: usize = 16;

/// Starts an operation of the record layer on the engine (run on the driver's task).
pub(crate) type Start = Box<dyn FnOnce(&mut HyperDht, Duration) -> Result<OpId, OpError> + Send>;

/// A running DHT node. Dropping every handle (this one, its [`Server`]s and what they hand
/// out) stops the node once its connection attempts are over; [`Dht::destroy`] stops it now.
pub struct Dht {
    cmds: mpsc::UnboundedSender<Cmd>,
    info: watch::Receiver<NodeInfo>,
    local: SocketAddrV4,
    relays: Vec<[u8; 32]>,
    relay_fallback: bool,
}

/// A listening server: its incoming connections. Dropping it unannounces and stops accepting.
pub struct Server {
    id: ServerId,
    cmds: mpsc::UnboundedSender<Cmd>,
    incoming: mpsc::Receiver<RawConnection>,
}

impl Server {
    /// Answers to the steps of a server made with [`Dht::listen_external`].
    pub fn control(&self) -> ServerControl {
        ServerControl {
            id: self.id,
            cmds: self.cmds.clone(),
        }
    }

    /// The next accepted connection.
    pub async fn accept(&mut self) -> Option<Connection> {
        self.incoming.recv().await.map(RawConnection::into_messages)
    }

    /// The next accepted connection, not yet started: its UDX stream and secret-stream, for
    /// a driver of its own (replication runs it this way).
    pub async fn accept_raw(&mut self) -> Option<RawConnection> {
        self.incoming.recv().await
    }

    /// The DHT nodes this server announced to.
    pub async fn relay_addresses(&self) -> Vec<SocketAddrV4> {
        let (tx, rx) = oneshot::channel();
        let _ = self.cmds.send(Cmd::Relays(self.id, tx));
        rx.await.unwrap_or_default()
    }
}

/// A step of a server made with [`Dht::listen_external`], for its key pair's owner.
#[derive(Debug, Clone)]
pub enum ServerStep {
    /// A client's handshake: [`NoiseStep::Recv`] (decrypt its first message; answer with
    /// [`ServerControl::noise_received`]), then [`NoiseStep::Send`] (encrypt our reply and
    /// finish; answer with [`ServerControl::noise_sent`]).
    Noise {
        /// Names the handshake; its connection's [`RawConnection::external_handshake`].
        handshake: u64,
        /// What to do.
        step: NoiseStep,
    },
    /// An announcement to sign (hyperdht's `signAnnounce` for `H(public key)`, a record with no
    /// relay addresses); answer with [`ServerControl::signed`].
    Sign {
        /// Names the signature.
        sign: u64,
        /// The storing node's token.
        token: [u8; 32],
        /// The storing node's id.
        node_id: [u8; 32],
    },
    /// The first announce round finished.
    Listening,
}

/// Answers to a [`ServerStep`] (cloneable; the server is [`Server`]).
#[derive(Clone)]
pub struct ServerControl {
    id: ServerId,
    cmds: mpsc::UnboundedSender<Cmd>,
}

impl ServerControl {
    /// The client's first message decrypted: its payload and public key (`None`: refused).
    pub fn noise_received(&self, handshake: u64, received: Option<(NoisePayload, [u8; 32])>) {
        let _ = self
            .cmds
            .send(Cmd::ServerNoiseReceived(self.id, handshake, received));
    }

    /// Our reply encrypted and the handshake's holepunch secret (`None`: refused).
    pub fn noise_sent(&self, handshake: u64, sent: Option<(Vec<u8>, [u8; 32])>) {
        let _ = self
            .cmds
            .send(Cmd::ServerNoiseSent(self.id, handshake, sent));
    }

    /// An announcement's signature (`None`: refused).
    pub fn signed(&self, sign: u64, signature: Option<[u8; 64]>) {
        let _ = self.cmds.send(Cmd::ServerSigned(self.id, sign, signature));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Close(self.id));
    }
}

/// Resolve bootstrap entries (`host:port`, or `ip@host:port`) to IPv4 addresses.
pub async fn resolve_bootstrap(list: &[String]) -> Result<Vec<SocketAddrV4>, DhtError> {
    let mut out = Vec::new();
    for entry in list {
        let s = entry.trim();
        if s.is_empty() {
            continue;
        }
        // hyperdht's "suggestedIP@hostname:port": use the suggested IP.
        let s = match s.split_once('@') {
            Some((ip, rest)) => {
                let port = rest.rsplit_once(':').map(|x| x.1).unwrap_or("");
                format!("{ip}:{port}")
            }
            None => s.to_string(),
        };
        let found = tokio::net::lookup_host(&s)
            .await
            .map_err(|_| DhtError::Resolve(entry.clone()))?
            .find_map(|a| match a {
                SocketAddr::V4(v4) => Some(v4),
                SocketAddr::V6(_) => None,
            })
            .ok_or_else(|| DhtError::Resolve(entry.clone()))?;
        out.push(found);
    }
    Ok(out)
}

/// Replies a [`Lookup`] buffers for a slow reader; more are dropped.
const REPLY_QUEUE: usize = 1024;

impl Dht {
    /// Start a node and wait until its bootstrap finished.
    pub async fn bootstrap(opts: DhtOptions) -> Result<Dht, DhtError> {
        let dht = Dht::spawn(opts).await?;
        dht.ready().await?;
        Ok(dht)
    }

    /// Start a node (its bootstrap runs in the background; see [`Dht::ready`]).
    pub async fn spawn(opts: DhtOptions) -> Result<Dht, DhtError> {
        let bootstrap = resolve_bootstrap(&opts.bootstrap).await?;
        let (cmds, info, local) = driver::spawn(&opts, bootstrap).await?;
        Ok(Dht {
            cmds,
            info,
            local,
            relays: opts.relays,
            relay_fallback: opts.relay_fallback,
        })
    }

    /// The node's server socket address.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// Wait for the bootstrap to finish.
    pub async fn ready(&self) -> Result<(), DhtError> {
        let mut info = self.info.clone();
        info.wait_for(|i| i.bootstrapped)
            .await
            .map_err(|_| DhtError::Closed)?;
        Ok(())
    }

    /// What the node knows about itself now.
    pub fn info(&self) -> NodeInfo {
        self.info.borrow().clone()
    }

    /// Wait until the node's info satisfies `f` (e.g. it became persistent).
    pub async fn wait_for(&self, f: impl FnMut(&NodeInfo) -> bool) -> Result<NodeInfo, DhtError> {
        let mut info = self.info.clone();
        let got = info.wait_for(f).await.map_err(|_| DhtError::Closed)?;
        Ok(got.clone())
    }

    /// Whether the node is firewalled, and its public address when it is not (JS
    /// `dht.firewalled`, `dht.remoteAddress()`): an unfirewalled node is OPEN to peers, which
    /// then connect to it directly instead of holepunching.
    pub async fn firewalled(&self) -> Result<(bool, Option<SocketAddrV4>), DhtError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Firewalled(tx))
            .map_err(|_| DhtError::Closed)?;
        rx.await.map_err(|_| DhtError::Closed)
    }

    pub(crate) fn commands(&self) -> &mpsc::UnboundedSender<Cmd> {
        &self.cmds
    }

    async fn op(
        &self,
        start: Start,
        replies: Option<mpsc::Sender<LookupResult>>,
    ) -> Result<OpOutput, DhtError> {
        let (done, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Op {
                start,
                done,
                replies,
            })
            .map_err(|_| DhtError::Closed)?;
        Ok(rx.await.map_err(|_| DhtError::Closed)??)
    }

    /// Find the peers announced under `topic`: a stream of replies from the nodes that store
    /// records for it.
    pub fn lookup(&self, topic: [u8; 32]) -> Lookup {
        self.op_stream(Box::new(move |d, now| d.lookup(now, topic)))
    }

    /// [`Dht::announce_with`] as a stream: the replies of the walk (the other announcers, as a
    /// lookup's), then the nodes that store the announcement as the [`Lookup::result`].
    pub fn announce_lookup(
        &self,
        topic: [u8; 32],
        key_pair: &KeyPair,
        relay_addresses: Vec<SocketAddrV4>,
        opts: AnnounceOptions,
    ) -> Lookup {
        let kp = key_pair.clone();
        self.op_stream(Box::new(move |d, now| {
            d.announce(now, topic, &kp, relay_addresses, opts)
        }))
    }

    /// [`Dht::unannounce`] as a stream (JS `lookupAndUnannounce`): the replies of the walk,
    /// which removes our announcement from the nodes that list it.
    pub fn lookup_and_unannounce(&self, topic: [u8; 32], key_pair: &KeyPair) -> Lookup {
        let kp = key_pair.clone();
        self.op_stream(Box::new(move |d, now| d.unannounce(now, topic, &kp)))
    }

    fn op_stream(&self, start: Start) -> Lookup {
        let (tx, rx) = mpsc::channel(REPLY_QUEUE);
        let (done, done_rx) = oneshot::channel();
        let sent = self.cmds.send(Cmd::Op {
            start,
            done,
            replies: Some(tx),
        });
        Lookup::new(rx, sent.is_ok().then_some(done_rx))
    }

    /// Announce `key_pair`'s public key under `topic` on the closest nodes (with up to 3
    /// relay addresses). Returns the nodes that store it.
    pub async fn announce(
        &self,
        topic: [u8; 32],
        key_pair: &KeyPair,
        relay_addresses: Vec<SocketAddrV4>,
    ) -> Result<Vec<SocketAddrV4>, DhtError> {
        self.announce_with(topic, key_pair, relay_addresses, AnnounceOptions::default())
            .await
    }

    /// [`Dht::announce`] with options (`clear`, `bump`, start nodes).
    pub async fn announce_with(
        &self,
        topic: [u8; 32],
        key_pair: &KeyPair,
        relay_addresses: Vec<SocketAddrV4>,
        opts: AnnounceOptions,
    ) -> Result<Vec<SocketAddrV4>, DhtError> {
        let kp = key_pair.clone();
        let out = self
            .op(
                Box::new(move |d, now| d.announce(now, topic, &kp, relay_addresses, opts)),
                None,
            )
            .await?;
        match out {
            OpOutput::Announce { closest_nodes } => Ok(closest_nodes),
            _ => Ok(Vec::new()),
        }
    }

    /// Keep an announcement alive: announce now (clearing older ones), then again every
    /// 10-12 minutes (hyperswarm's rule) until the handle is stopped or dropped. The first
    /// announce's result is returned with the handle.
    pub async fn announce_forever(
        &self,
        topic: [u8; 32],
        key_pair: &KeyPair,
        relay_addresses: Vec<SocketAddrV4>,
    ) -> Result<(AnnounceHandle, Vec<SocketAddrV4>), DhtError> {
        let first = self
            .announce_with(
                topic,
                key_pair,
                relay_addresses.clone(),
                AnnounceOptions {
                    clear: true,
                    ..AnnounceOptions::default()
                },
            )
            .await?;
        let cmds = self.cmds.clone();
        let kp = key_pair.clone();
        let (stop, mut stop_rx) = oneshot::channel::<()>();
        let mut nodes = first.clone();
        let task = tokio::spawn(async move {
            let schedule = RefreshSchedule::default();
            loop {
                let mut r = [0u8; 8];
                let _ = getrandom::fill(&mut r);
                let wait = schedule.next(Duration::ZERO, u64::from_le_bytes(r));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = &mut stop_rx => return,
                }
                let (done, rx) = oneshot::channel();
                let kp2 = kp.clone();
                let relays = relay_addresses.clone();
                let start_nodes = nodes.clone();
                let cmd = Cmd::Op {
                    start: Box::new(move |d, now| {
                        let opts = AnnounceOptions {
                            nodes: start_nodes,
                            ..AnnounceOptions::default()
                        };
                        d.announce(now, topic, &kp2, relays, opts)
                    }),
                    done,
                    replies: None,
                };
                if cmds.send(cmd).is_err() {
                    return;
                }
                if let Ok(Ok(OpOutput::Announce { closest_nodes })) = rx.await {
                    nodes = closest_nodes;
                }
            }
        });
        Ok((AnnounceHandle::new(stop, task), first))
    }

    /// Remove `key_pair`'s announcement of `topic` from the nodes that list it.
    pub async fn unannounce(&self, topic: [u8; 32], key_pair: &KeyPair) -> Result<(), DhtError> {
        let kp = key_pair.clone();
        self.op(Box::new(move |d, now| d.unannounce(now, topic, &kp)), None)
            .await?;
        Ok(())
    }

    /// Store a value under its BLAKE2b-256 hash; returns the hash.
    pub async fn immutable_put(&self, value: Vec<u8>) -> Result<[u8; 32], DhtError> {
        match self
            .op(Box::new(move |d, now| d.immutable_put(now, value)), None)
            .await?
        {
            OpOutput::ImmutablePut { hash, .. } => Ok(hash),
            _ => Err(DhtError::Closed),
        }
    }

    /// Fetch the value stored under `hash` (checked against it).
    pub async fn immutable_get(&self, hash: [u8; 32]) -> Result<Option<Vec<u8>>, DhtError> {
        match self
            .op(Box::new(move |d, now| d.immutable_get(now, hash)), None)
            .await?
        {
            OpOutput::ImmutableGet(v) => Ok(v.map(|(v, _)| v)),
            _ => Err(DhtError::Closed),
        }
    }

    /// Store a value signed by `key_pair` with sequence number `seq`.
    pub async fn mutable_put(
        &self,
        key_pair: &KeyPair,
        value: Vec<u8>,
        seq: u64,
    ) -> Result<(), DhtError> {
        let kp = key_pair.clone();
        self.op(
            Box::new(move |d, now| d.mutable_put(now, &kp, value, seq)),
            None,
        )
        .await?;
        Ok(())
    }

    /// Fetch the latest value signed by `public_key` with a sequence number of at least `seq`.
    pub async fn mutable_get(
        &self,
        public_key: [u8; 32],
        seq: u64,
    ) -> Result<Option<MutableValue>, DhtError> {
        match self
            .op(
                Box::new(move |d, now| d.mutable_get(now, public_key, seq, true)),
                None,
            )
            .await?
        {
            OpOutput::MutableGet(v) => Ok(v),
            _ => Err(DhtError::Closed),
        }
    }

    /// Send a request and wait for its response (for commands this API does not wrap).
    pub async fn request(&self, spec: rpc::RequestSpec) -> Result<rpc::Response, DhtError> {
        let (done, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Request { spec, done })
            .map_err(|_| DhtError::Closed)?;
        Ok(rx.await.map_err(|_| DhtError::Closed)??)
    }

    /// Ping a node; returns its response (whose `to` is our address as it saw us).
    pub async fn ping(&self, to: SocketAddrV4) -> Result<rpc::Response, DhtError> {
        let mut spec = rpc::RequestSpec::new(to, rpc::PING);
        spec.internal = true;
        self.request(spec).await
    }

    /// Announces `key_pair` and accepts connections to it (JS `createServer().listen`);
    /// returns once the first announce round finished.
    pub async fn listen(&self, key_pair: KeyPair, opts: ServerOptions) -> Result<Server, DhtError> {
        let (listening, rx) = oneshot::channel();
        let (incoming_tx, incoming) = mpsc::channel(ACCEPT_QUEUE);
        self.cmds
            .send(Cmd::Listen {
                key_pair,
                opts,
                listening,
                incoming: incoming_tx,
            })
            .map_err(|_| DhtError::Closed)?;
        let id = rx.await.map_err(|_| DhtError::Closed)?;
        Ok(Server {
            id,
            cmds: self.cmds.clone(),
            incoming,
        })
    }

    /// Announces `public_key` and accepts connections to it with the key pair kept by its
    /// owner (JS `createServer({ createHandshake }).listen(keyPair, { signAnnounce })`, as a
    /// dht-relay serves a non-custodial client): answer the [`ServerStep`]s through
    /// [`Server::control`]; the connections' bytes are the owner's secret-stream
    /// ([`RawConnection::into_bytes`], [`RawConnection::external_handshake`]). Returns at once
    /// (listening is a step). Closing unannounces nothing: the records expire.
    pub async fn listen_external(
        &self,
        public_key: [u8; 32],
        opts: ServerOptions,
    ) -> Result<(Server, mpsc::UnboundedReceiver<ServerStep>), DhtError> {
        let (started, rx) = oneshot::channel();
        let (steps_tx, steps) = mpsc::unbounded_channel();
        let (incoming_tx, incoming) = mpsc::channel(ACCEPT_QUEUE);
        self.cmds
            .send(Cmd::ListenExternal {
                public_key,
                opts,
                started,
                steps: steps_tx,
                incoming: incoming_tx,
            })
            .map_err(|_| DhtError::Closed)?;
        let id = rx.await.map_err(|_| DhtError::Closed)?;
        Ok((
            Server {
                id,
                cmds: self.cmds.clone(),
                incoming,
            },
            steps,
        ))
    }

    /// Connects to the server of `public_key`: a message pipe over secret-stream. With relays
    /// configured (and the fallback on), a connection whose punch fails is made again through
    /// one of them.
    pub async fn connect(
        &self,
        public_key: [u8; 32],
        key_pair: KeyPair,
        opts: ConnectOptions,
    ) -> Result<Connection, DhtError> {
        Ok(self
            .connect_raw(public_key, key_pair, opts)
            .await?
            .into_messages())
    }

    /// [`Dht::connect`], the connection not yet started (for a driver of its own, such as
    /// replication).
    pub async fn connect_raw(
        &self,
        public_key: [u8; 32],
        key_pair: KeyPair,
        mut opts: ConnectOptions,
    ) -> Result<RawConnection, DhtError> {
        if let Some(relay) = self.fallback_relay(&opts) {
            opts.fallback_relay = Some(relay);
        }
        let (done, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Connect {
                public_key,
                key_pair,
                opts,
                done,
            })
            .map_err(|_| DhtError::Closed)?;
        rx.await.map_err(|_| DhtError::Closed)?
    }

    /// Connects to the server of `public_key` with the Noise handshake run outside (JS
    /// hyperdht's `createHandshake`): this node never holds the secret key. Answer each
    /// [`ExternalProgress::Step`] of the returned attempt with [`ExternalConnect::sent`] or
    /// [`ExternalConnect::received`]; it ends with a connection whose bytes are the key pair
    /// owner's secret-stream ([`RawConnection::into_bytes`]). Dropping it cancels the attempt.
    pub async fn connect_external(
        &self,
        public_key: [u8; 32],
        opts: ConnectOptions,
    ) -> Result<ExternalConnect, DhtError> {
        let (steps_tx, steps) = mpsc::unbounded_channel();
        let (started, id) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        self.cmds
            .send(Cmd::ConnectExternal {
                public_key,
                opts,
                steps: steps_tx,
                started,
                done: done_tx,
            })
            .map_err(|_| DhtError::Closed)?;
        let id = id.await.map_err(|_| DhtError::Closed)?;
        Ok(ExternalConnect {
            id,
            cmds: self.cmds.clone(),
            steps,
            done,
        })
    }

    /// Announces `public_key` under `topic` with signatures made by the key pair's owner (JS
    /// `announce(..., { signAnnounce })`): this node never holds the secret key. The walk's
    /// replies come on the [`Lookup`]; each storing node's record to sign on the receiver,
    /// answered with [`Dht::announce_signed`]. Dropping the receiver cancels the announce.
    pub fn announce_external(
        &self,
        topic: [u8; 32],
        public_key: [u8; 32],
    ) -> (Lookup, mpsc::UnboundedReceiver<SignAnnounceRequest>) {
        self.signed_walk(|done, replies, signs| Cmd::AnnounceExternal {
            topic,
            public_key,
            done,
            replies,
            signs,
        })
    }

    /// A walk whose records the key pair's owner signs: its replies on the [`Lookup`], each
    /// record to sign on the receiver ([`Dht::announce_external`], [`Dht::unannounce_external`]).
    fn signed_walk(
        &self,
        cmd: impl FnOnce(
            oneshot::Sender<Result<OpOutput, OpError>>,
            mpsc::Sender<LookupResult>,
            mpsc::UnboundedSender<SignAnnounceRequest>,
        ) -> Cmd,
    ) -> (Lookup, mpsc::UnboundedReceiver<SignAnnounceRequest>) {
        let (tx, rx) = mpsc::channel(REPLY_QUEUE);
        let (done, done_rx) = oneshot::channel();
        let (signs, signs_rx) = mpsc::unbounded_channel();
        let sent = self.cmds.send(cmd(done, tx, signs));
        (Lookup::new(rx, sent.is_ok().then_some(done_rx)), signs_rx)
    }

    /// Removes `public_key`'s announcement of `topic` with signatures made by the key pair's
    /// owner (JS `lookupAndUnannounce(..., { signUnannounce })`): each listing node's removal
    /// comes on the receiver to sign (hyperdht's unannounce signable, no relay addresses),
    /// answered with [`Dht::announce_signed`].
    pub fn unannounce_external(
        &self,
        topic: [u8; 32],
        public_key: [u8; 32],
    ) -> (Lookup, mpsc::UnboundedReceiver<SignAnnounceRequest>) {
        self.signed_walk(|done, replies, signs| Cmd::UnannounceExternal {
            topic,
            public_key,
            done,
            replies,
            signs,
        })
    }

    /// The owner's signature for a [`SignAnnounceRequest`] (`None`: that node is skipped).
    pub fn announce_signed(&self, req: &SignAnnounceRequest, signature: Option<[u8; 64]>) {
        let _ = self
            .cmds
            .send(Cmd::AnnounceSigned(req.op, req.sign, signature));
    }

    /// The deployment relay a connection falls back to, if any.
    pub(crate) fn fallback_relay(&self, opts: &ConnectOptions) -> Option<[u8; 32]> {
        if !self.relay_fallback
            || opts.relay_through.is_some()
            || opts.fallback_relay.is_some()
            || self.relays.is_empty()
        {
            return None;
        }
        let mut r = [0u8; 8];
        let _ = getrandom::fill(&mut r);
        Some(self.relays[(u64::from_le_bytes(r) % self.relays.len() as u64) as usize])
    }

    /// Stop the node now (servers and connection attempts with it; established connections
    /// run on).
    pub async fn destroy(self) {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Destroy(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// One storing node's record of an [`Dht::announce_external`] to sign: sign
/// `announce_signable(topic, peer_id, token, { public key, relay_addresses })` (hyperdht's
/// `signAnnounce`) and answer with [`Dht::announce_signed`].
#[derive(Debug, Clone)]
pub struct SignAnnounceRequest {
    /// The operation.
    pub op: hyperpunch_core::dht::OpId,
    /// Names the request in the answer.
    pub sign: u64,
    /// The storing node's token.
    pub token: [u8; 32],
    /// The storing node's id.
    pub peer_id: [u8; 32],
    /// The relay addresses in the record.
    pub relay_addresses: Vec<SocketAddrV4>,
}

/// A connection attempt whose Noise handshake runs outside ([`Dht::connect_external`]).
pub struct ExternalConnect {
    id: hyperpunch_core::dht::connect::ConnId,
    cmds: mpsc::UnboundedSender<Cmd>,
    steps: mpsc::UnboundedReceiver<NoiseStep>,
    done: oneshot::Receiver<Result<RawConnection, DhtError>>,
}

/// What an [`ExternalConnect`] needs or became.
// One value a step, handed over at once (never stored in bulk): not worth a box.
#[allow(clippy::large_enum_variant)]
pub enum ExternalProgress {
    /// A handshake step for the key pair's owner.
    Step(NoiseStep),
    /// The attempt ended.
    Done(Result<RawConnection, DhtError>),
}

impl ExternalConnect {
    /// The next step, or the end.
    pub async fn next(&mut self) -> ExternalProgress {
        tokio::select! {
            biased;
            Some(s) = self.steps.recv() => ExternalProgress::Step(s),
            r = &mut self.done => ExternalProgress::Done(r.unwrap_or(Err(DhtError::Closed))),
        }
    }

    /// The first handshake message, encrypted by the owner (`None`: it refused).
    pub fn sent(&self, message: Option<Vec<u8>>) {
        let _ = self.cmds.send(Cmd::ExternalSent(self.id, message));
    }

    /// The server's reply, decrypted by the owner (`None`: it could not).
    pub fn received(&self, received: Option<ExternalReceived>) {
        let _ = self.cmds.send(Cmd::ExternalReceived(self.id, received));
    }
}

/// hyperdht's default port, for callers that want it.
pub const HYPERDHT_PORT: u16 = DEFAULT_PORT;
