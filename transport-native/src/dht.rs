//! The DHT on tokio: the sans-IO [`HyperDht`] engine driven over two UDX sockets, and an async
//! API for applications.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hyperpunch::dht::DhtError> {
//! use hyperpunch::dht::{Dht, DhtOptions};
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
//! # Ok(()) }
//! ```
//!
//! Like dht-rpc, a node binds two UDP sockets: the *server* socket (`host:port`, its public
//! port) and the *client* socket (any port; requests leave from it while firewalled, and the
//! PING_NAT firewall probe needs the two to differ). Both are [`UdxSocket`]s, so UDX streams can
//! share them as in JS: the driver only takes the non-UDX datagrams ([`UdxSocket::datagrams`])
//! and sends with [`UdxSocket::send_datagram`]. Every protocol decision is the engine's; this
//! module moves bytes, keeps the clock (time since the Unix epoch, for hyperdht's bump) and
//! turns operations into futures.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::dht::announcer::RefreshSchedule;
use hyperpunch_core::dht::rpc::{self, RequestError, RequestId, SocketId};
use hyperpunch_core::dht::{
    AnnounceOptions, DhtConfig, Event, HyperDht, LookupResult, MutableValue, OpError, OpId,
    OpOutput, DEFAULT_PORT,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::udx::UdxSocket;

pub use hyperpunch_core::dht::rpc::{Limits, RateLimits};
pub use hyperpunch_core::dht::{LookupResult as LookupReply, StoreLimits};

/// How to run a DHT node.
#[derive(Debug, Clone)]
pub struct DhtOptions {
    /// Bootstrap nodes as `host:port` (or hyperdht's `ip@host:port`; the IP is used). An empty
    /// list makes this node the first of a new DHT. Public bootstrap nodes are never added.
    pub bootstrap: Vec<String>,
    /// Address to bind the server socket to (default 0.0.0.0).
    pub host: Ipv4Addr,
    /// Server socket port (0: any; hyperdht defaults to 49737).
    pub port: u16,
    /// `Some(false)`: persistent as soon as the network allows (JS `ephemeral: false`);
    /// `Some(true)`: always ephemeral; `None`: adaptive (JS default).
    pub ephemeral: Option<bool>,
    /// Assume the server socket is reachable (JS `firewalled: false`).
    pub firewalled: bool,
    /// Run as a bootstrap node whose public address is this (JS `DHT.bootstrapper`).
    pub bootstrapper: Option<SocketAddrV4>,
    /// Engine limits (inflight requests, queries, incoming request rates).
    pub limits: Limits,
    /// Record store sizes.
    pub store: StoreLimits,
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
            bootstrapper: None,
            limits: Limits::default(),
            store: StoreLimits::default(),
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

/// Why a DHT call failed.
#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    /// Binding or resolving failed.
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
}

type Start = Box<dyn FnOnce(&mut HyperDht, Duration) -> Result<OpId, OpError> + Send>;

enum Command {
    Op {
        start: Start,
        done: oneshot::Sender<Result<OpOutput, OpError>>,
        replies: Option<mpsc::Sender<LookupResult>>,
    },
    Request {
        spec: rpc::RequestSpec,
        done: oneshot::Sender<Result<rpc::Response, RequestError>>,
    },
    Destroy(oneshot::Sender<()>),
}

/// A running DHT node. Dropping it (or [`Dht::destroy`]) stops the node.
pub struct Dht {
    commands: mpsc::UnboundedSender<Command>,
    info: watch::Receiver<NodeInfo>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Dht {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
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

/// The clock: time since the Unix epoch, advancing monotonically.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    unix: Duration,
}

impl Clock {
    fn new() -> Self {
        Clock {
            start: Instant::now(),
            unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }
    fn now(&self) -> Duration {
        self.unix + self.start.elapsed()
    }
    fn instant(&self, at: Duration) -> Instant {
        self.start + at.saturating_sub(self.unix)
    }
}

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
        let server_addr = SocketAddr::V4(SocketAddrV4::new(opts.host, opts.port));
        let server = match UdxSocket::bind(server_addr).await {
            Ok(s) => s,
            // A bootstrapper's public host may not be a local address (a NAT'd VPS): bind
            // every interface on its port instead, as JS does.
            Err(e)
                if opts.bootstrapper.is_some() && e.kind() == io::ErrorKind::AddrNotAvailable =>
            {
                UdxSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, opts.port))).await?
            }
            Err(e) => return Err(e.into()),
        };
        let client_host = match server.local_addr() {
            SocketAddr::V4(a) => *a.ip(),
            SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        let client = UdxSocket::bind(SocketAddr::from((client_host, 0))).await?;
        let server_rx = server.datagrams()?;
        let client_rx = client.datagrams()?;

        let mut config = match opts.bootstrapper {
            Some(public) => DhtConfig::bootstrapper(public),
            None => DhtConfig::default(),
        };
        config.rpc.bootstrap = bootstrap;
        config.rpc.server_port = server.local_addr().port();
        config.rpc.ephemeral = opts.ephemeral;
        config.rpc.firewalled = opts.firewalled;
        config.rpc.limits = opts.limits;
        config.store = opts.store;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
        let clock = Clock::new();
        let engine = HyperDht::new(config, clock.now(), seed);

        let (commands, command_rx) = mpsc::unbounded_channel();
        let (info_tx, info) = watch::channel(NodeInfo::default());
        let driver = Driver {
            engine,
            clock,
            server_addr: server.local_addr(),
            client_addr: client.local_addr(),
            server,
            client,
            ops: HashMap::new(),
            requests: HashMap::new(),
            info: info_tx,
        };
        let task = tokio::spawn(driver.run(server_rx, client_rx, command_rx));
        Ok(Dht {
            commands,
            info,
            task: Some(task),
        })
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

    async fn op(
        &self,
        start: Start,
        replies: Option<mpsc::Sender<LookupResult>>,
    ) -> Result<OpOutput, DhtError> {
        let (done, rx) = oneshot::channel();
        self.commands
            .send(Command::Op {
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
        let (tx, rx) = mpsc::channel(REPLY_QUEUE);
        let (done, done_rx) = oneshot::channel();
        let sent = self.commands.send(Command::Op {
            start: Box::new(move |d, now| d.lookup(now, topic)),
            done,
            replies: Some(tx),
        });
        Lookup {
            replies: rx,
            done: if sent.is_ok() { Some(done_rx) } else { None },
            result: None,
        }
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
        let commands = self.commands.clone();
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
                let cmd = Command::Op {
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
                if commands.send(cmd).is_err() {
                    return;
                }
                if let Ok(Ok(OpOutput::Announce { closest_nodes })) = rx.await {
                    nodes = closest_nodes;
                }
            }
        });
        Ok((
            AnnounceHandle {
                stop: Some(stop),
                task: Some(task),
            },
            first,
        ))
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
        self.commands
            .send(Command::Request { spec, done })
            .map_err(|_| DhtError::Closed)?;
        Ok(rx.await.map_err(|_| DhtError::Closed)??)
    }

    /// Ping a node; returns its response (whose `to` is our address as it saw us).
    pub async fn ping(&self, to: SocketAddrV4) -> Result<rpc::Response, DhtError> {
        let mut spec = rpc::RequestSpec::new(to, rpc::PING);
        spec.internal = true;
        self.request(spec).await
    }

    /// Stop the node.
    pub async fn destroy(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Destroy(tx)).is_ok() {
            let _ = rx.await;
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Replies a [`Lookup`] buffers for a slow reader; more are dropped.
const REPLY_QUEUE: usize = 1024;

/// A running lookup: replies as they come ([`Lookup::next`] or [`futures_core::Stream`]),
/// then the end.
pub struct Lookup {
    replies: mpsc::Receiver<LookupResult>,
    done: Option<oneshot::Receiver<Result<OpOutput, OpError>>>,
    result: Option<Result<Vec<SocketAddrV4>, DhtError>>,
}

impl Lookup {
    /// The next reply with records; `None` when the lookup is over.
    pub async fn next(&mut self) -> Option<LookupResult> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next_reply(cx)).await
    }

    /// How the lookup ended, once [`Lookup::next`] returned `None`: the closest nodes, or why
    /// it failed.
    pub fn result(&mut self) -> Option<Result<Vec<SocketAddrV4>, DhtError>> {
        self.result.take()
    }

    fn poll_next_reply(&mut self, cx: &mut Context<'_>) -> Poll<Option<LookupResult>> {
        // The driver drops the sender right after reporting the end, so a closed, drained
        // channel means the result is there.
        match self.replies.poll_recv(cx) {
            Poll::Ready(Some(r)) => return Poll::Ready(Some(r)),
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {}
        }
        let Some(done) = self.done.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(done).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                self.done = None;
                self.result = Some(match r {
                    Ok(Ok(OpOutput::Lookup { closest_nodes })) => Ok(closest_nodes),
                    Ok(Ok(_)) => Ok(Vec::new()),
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err(DhtError::Closed),
                });
                Poll::Ready(None)
            }
        }
    }
}

use std::future::Future;

impl futures_core::Stream for Lookup {
    type Item = LookupResult;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LookupResult>> {
        self.get_mut().poll_next_reply(cx)
    }
}

/// Keeps an announcement alive ([`Dht::announce_forever`]); dropping it stops re-announcing.
pub struct AnnounceHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl AnnounceHandle {
    /// Stop re-announcing (the records expire on their own; call [`Dht::unannounce`] to remove
    /// them at once).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for AnnounceHandle {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

struct Pending {
    done: oneshot::Sender<Result<OpOutput, OpError>>,
    replies: Option<mpsc::Sender<LookupResult>>,
}

struct Driver {
    engine: HyperDht,
    clock: Clock,
    server: UdxSocket,
    client: UdxSocket,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
    ops: HashMap<OpId, Pending>,
    requests: HashMap<RequestId, oneshot::Sender<Result<rpc::Response, RequestError>>>,
    info: watch::Sender<NodeInfo>,
}

/// Datagrams handled per wakeup before timers and output get their turn.
const RECV_BATCH: usize = 256;

impl Driver {
    async fn run(
        mut self,
        mut server_rx: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
        mut client_rx: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        self.flush().await;
        loop {
            let deadline = self
                .engine
                .poll_timeout()
                .map(|t| self.clock.instant(t))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                d = server_rx.recv() => {
                    let Some((from, bytes)) = d else { break };
                    let now = self.clock.now();
                    let _ = self.engine.handle_datagram(now, SocketId::SERVER, from, &bytes);
                    for _ in 0..RECV_BATCH {
                        let Ok((from, bytes)) = server_rx.try_recv() else { break };
                        let _ = self.engine.handle_datagram(now, SocketId::SERVER, from, &bytes);
                    }
                }
                d = client_rx.recv() => {
                    let Some((from, bytes)) = d else { break };
                    let now = self.clock.now();
                    let _ = self.engine.handle_datagram(now, SocketId::CLIENT, from, &bytes);
                    for _ in 0..RECV_BATCH {
                        let Ok((from, bytes)) = client_rx.try_recv() else { break };
                        let _ = self.engine.handle_datagram(now, SocketId::CLIENT, from, &bytes);
                    }
                }
                c = commands.recv() => {
                    match c {
                        None => break,
                        Some(Command::Destroy(done)) => {
                            self.engine.destroy();
                            self.dispatch();
                            let _ = done.send(());
                            break;
                        }
                        Some(c) => self.command(c),
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.engine.handle_timeout(self.clock.now());
                }
            }
            self.flush().await;
        }
    }

    fn command(&mut self, c: Command) {
        let now = self.clock.now();
        match c {
            Command::Op {
                start,
                done,
                replies,
            } => match start(&mut self.engine, now) {
                Ok(op) => {
                    self.ops.insert(op, Pending { done, replies });
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            },
            Command::Request { spec, done } => match self.engine.rpc_mut().request(now, spec) {
                Ok(id) => {
                    self.requests.insert(id, done);
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            },
            Command::Destroy(_) => {}
        }
    }

    fn dispatch(&mut self) {
        while let Some(e) = self.engine.poll_event() {
            match e {
                Event::Lookup { op, reply } => {
                    if let Some(tx) = self.ops.get(&op).and_then(|p| p.replies.as_ref()) {
                        let _ = tx.try_send(reply);
                    }
                }
                Event::OpDone { op, result } => {
                    if let Some(p) = self.ops.remove(&op) {
                        let _ = p.done.send(result);
                    }
                }
                Event::Rpc(rpc::Event::Response { id, response }) => {
                    if let Some(tx) = self.requests.remove(&id) {
                        let _ = tx.send(Ok(response));
                    }
                }
                Event::Rpc(rpc::Event::RequestFailed { id, error }) => {
                    if let Some(tx) = self.requests.remove(&id) {
                        let _ = tx.send(Err(error));
                    }
                }
                _ => {}
            }
        }
    }

    async fn flush(&mut self) {
        self.dispatch();
        while let Some(t) = self.engine.poll_transmit() {
            let socket = if t.socket == SocketId::CLIENT {
                &self.client
            } else {
                &self.server
            };
            // A failed send is a lost datagram: the engine retries or gives up.
            let _ = socket.send_datagram(&t.bytes, SocketAddr::V4(t.to)).await;
        }
        self.dispatch();
        let rpc = self.engine.rpc();
        let (host, port) = rpc.nat_address();
        let info = NodeInfo {
            id: rpc.id(),
            ephemeral: rpc.is_ephemeral(),
            firewalled: rpc.is_firewalled(),
            bootstrapped: rpc.is_bootstrapped(),
            public_host: host,
            public_port: port,
            remote_address: rpc.remote_address(),
            server_addr: Some(self.server_addr),
            client_addr: Some(self.client_addr),
            table_size: rpc.table().len(),
            stored: self.engine.store_sizes().unwrap_or_default(),
        };
        self.info.send_if_modified(|old| {
            if *old != info {
                *old = info;
                true
            } else {
                false
            }
        });
    }
}

/// hyperdht's default port, for callers that want it.
pub const HYPERDHT_PORT: u16 = DEFAULT_PORT;
