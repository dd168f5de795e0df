//! hyperdht connections natively: a tokio task runs a dht-rpc [`Node`] and the
//! [`Connector`] over UDP sockets shared with UDX (the node's server and client sockets plus
//! the punchers' pool sockets), and hands finished connections out as [`Connection`]s
//! (secret-stream over a UDX stream on the socket the path was found on).
//!
//! - [`DhtPeer::bind`] binds the node's sockets on an explicit host (loopback for tests, a
//!   namespace's address, or `0.0.0.0`) and bootstraps from an explicit list;
//! - [`DhtPeer::listen`] announces a key pair and yields incoming connections ([`Server`]);
//! - [`DhtPeer::connect`] connects to a public key.
//!
//! The driver makes no protocol decisions: datagrams go to the node (RPC), the connector
//! (1-byte probes; UDX packets for stream ids no stream has yet) or UDX; the connector's
//! actions (bind a pool socket, send a probe with a TTL) are carried out as they come.

mod conn;
pub mod relay;

pub use conn::{Connection, ConnectionReceiver, ConnectionSender, KEEP_ALIVE_MS};
pub use hyperpunch_core::dht::connect::{ConnectError, ConnectOptions, ServerOptions};
pub use relay::RelayServer;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::dht::connect::{
    Action, ConnectEvent, Connector, Established, PairingId, ServerId,
};
use hyperpunch_core::dht::rpc::{Config, Event as RpcEvent, SocketId};
use hyperpunch_core::dht::{
    AnnounceOptions, DhtConfig, Event, HyperDht, LookupResult, OpError, OpId, OpOutput,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::udx::UdxSocket;

/// How to run the DHT node.
#[derive(Debug, Clone)]
pub struct DhtPeerOptions {
    /// Bootstrap nodes. Never empty in practice: pass local nodes in tests (an empty list
    /// makes a node that only knows who contacts it).
    pub bootstrap: Vec<SocketAddrV4>,
    /// The host to bind every socket on (pool sockets too).
    pub host: Ipv4Addr,
    /// The server socket's port (0: any).
    pub port: u16,
    /// `Some(false)`: persistent as soon as possible; `None`: adaptive (JS default).
    pub ephemeral: Option<bool>,
    /// Start firewalled (JS default).
    pub firewalled: bool,
    /// During the bootstrap, ask one node to PING_NAT our server socket and, if it gets
    /// through, test whether we are firewalled at all (dht-rpc `quickFirewall`, default true).
    /// With `false` (and `ephemeral: Some(true)`) the node stays firewalled: peers holepunch to
    /// it instead of connecting directly, as to a node behind a NAT.
    pub quick_firewall: bool,
    /// Blind relays this deployment offers (public keys). Beyond JS: when a punch fails, a
    /// connection is made again through one of them (unless `relay_fallback` is off or the
    /// connection names its own `relay_through`). [`relays_from_env`] reads them from
    /// `HYPERPUNCH_RELAYS`.
    pub relays: Vec<[u8; 32]>,
    /// Fall back to `relays` when a punch fails (default true).
    pub relay_fallback: bool,
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

impl Default for DhtPeerOptions {
    fn default() -> Self {
        DhtPeerOptions {
            bootstrap: Vec::new(),
            host: Ipv4Addr::UNSPECIFIED,
            port: 0,
            ephemeral: None,
            firewalled: true,
            quick_firewall: true,
            relays: Vec::new(),
            relay_fallback: true,
        }
    }
}

/// Why a [`DhtPeer`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    /// Socket I/O failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The connection attempt failed (JS error codes).
    #[error("{0}")]
    Connect(#[from] ConnectError),
    /// The node stopped.
    #[error("the DHT node stopped")]
    Stopped,
}

pub(crate) enum Cmd {
    Listen {
        key_pair: KeyPair,
        opts: ServerOptions,
        listening: oneshot::Sender<ServerId>,
        incoming: mpsc::Sender<Connection>,
    },
    Close(ServerId),
    Connect {
        public_key: [u8; 32],
        key_pair: KeyPair,
        opts: ConnectOptions,
        done: oneshot::Sender<Result<Connection, DhtError>>,
    },
    Bootstrapped(oneshot::Sender<()>),
    Relays(ServerId, oneshot::Sender<Vec<SocketAddrV4>>),
    Firewalled(oneshot::Sender<(bool, Option<SocketAddrV4>)>),
    RelayPaired {
        pairing: PairingId,
        socket: SocketId,
        relay: SocketAddrV4,
        remote_id: u32,
    },
    RelayFailed(PairingId),
    RelayLink {
        ids: [u32; 2],
        remotes: [u32; 2],
    },
    RelayUnlink(Vec<u32>),
    Op {
        start: OpStart,
        done: oneshot::Sender<Result<OpOutput, OpError>>,
        replies: Option<mpsc::UnboundedSender<LookupResult>>,
    },
}

type OpStart = Box<dyn FnOnce(&mut HyperDht, Duration) -> Result<OpId, OpError> + Send>;

/// A running record operation on a [`DhtPeer`]'s node ([`DhtPeer::lookup`],
/// [`DhtPeer::announce`], [`DhtPeer::unannounce`]): its replies with records, then its end.
pub struct PeerOp {
    /// Replies with records, as they come (ends when the operation ends).
    pub replies: mpsc::UnboundedReceiver<LookupResult>,
    /// How the operation ended.
    pub done: oneshot::Receiver<Result<OpOutput, OpError>>,
}

/// A running DHT node that connects and accepts by public key.
pub struct DhtPeer {
    cmds: mpsc::UnboundedSender<Cmd>,
    local: SocketAddrV4,
    relays: Vec<[u8; 32]>,
    relay_fallback: bool,
}

/// A listening server: its incoming connections.
pub struct Server {
    id: ServerId,
    cmds: mpsc::UnboundedSender<Cmd>,
    incoming: mpsc::Receiver<Connection>,
}

impl Server {
    /// The next accepted connection.
    pub async fn accept(&mut self) -> Option<Connection> {
        self.incoming.recv().await
    }

    /// The DHT nodes this server announced to.
    pub async fn relay_addresses(&self) -> Vec<SocketAddrV4> {
        let (tx, rx) = oneshot::channel();
        let _ = self.cmds.send(Cmd::Relays(self.id, tx));
        rx.await.unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Close(self.id));
    }
}

impl DhtPeer {
    /// Binds the node's sockets and starts bootstrapping.
    pub async fn bind(opts: DhtPeerOptions) -> io::Result<DhtPeer> {
        let server = Arc::new(
            UdxSocket::bind(SocketAddr::V4(SocketAddrV4::new(opts.host, opts.port))).await?,
        );
        let client =
            Arc::new(UdxSocket::bind(SocketAddr::V4(SocketAddrV4::new(opts.host, 0))).await?);
        let local = match server.local_addr() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => return Err(io::Error::other("IPv4 only")),
        };
        let seed = random32()?;
        let config = Config {
            bootstrap: opts.bootstrap.clone(),
            server_port: local.port(),
            ephemeral: opts.ephemeral,
            firewalled: opts.firewalled,
            quick_firewall: opts.quick_firewall,
            ..Config::default()
        };
        let epoch = Instant::now();
        let node = HyperDht::new(
            DhtConfig {
                rpc: config,
                ..DhtConfig::default()
            },
            unix_now(),
            seed,
        );
        let mut connector = Connector::new();
        // JS `Holepuncher.localAddresses`: the bound address when bound to one (loopback, or an
        // explicit host such as a namespace's); interface enumeration for 0.0.0.0 is not done.
        if !local.ip().is_unspecified() {
            connector.set_local_addresses(vec![local]);
        }
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let (dgram_tx, dgram_rx) = mpsc::channel(4096);
        let mut d = Driver {
            node,
            connector,
            host: opts.host,
            sockets: HashMap::new(),
            released: Vec::new(),
            in_use: HashMap::new(),
            pending_inject: Vec::new(),
            dgram_tx,
            epoch,
            start: unix_now(),
            servers: HashMap::new(),
            connects: HashMap::new(),
            bootstrapped: Vec::new(),
            ops: HashMap::new(),
            relay_jobs: HashMap::new(),
            links: relay::Links::default(),
            relay_key: KeyPair::from_seed(&random32()?),
            weak: cmds.downgrade(),
        };
        d.add_socket(SocketId::SERVER, server)?;
        d.add_socket(SocketId::CLIENT, client)?;
        tokio::spawn(d.run(cmd_rx, dgram_rx));
        Ok(DhtPeer {
            cmds,
            local,
            relays: opts.relays.clone(),
            relay_fallback: opts.relay_fallback,
        })
    }

    /// The node's server socket address.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// Waits for the bootstrap to finish.
    pub async fn ready(&self) -> Result<(), DhtError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Bootstrapped(tx))
            .map_err(|_| DhtError::Stopped)?;
        rx.await.map_err(|_| DhtError::Stopped)
    }

    /// Whether the node is firewalled, and its public address when it is not (JS
    /// `dht.firewalled`, `dht.remoteAddress()`): an unfirewalled node is OPEN to peers, which
    /// then connect to it directly instead of holepunching.
    pub async fn firewalled(&self) -> Result<(bool, Option<SocketAddrV4>), DhtError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Firewalled(tx))
            .map_err(|_| DhtError::Stopped)?;
        rx.await.map_err(|_| DhtError::Stopped)
    }

    /// Announces `key_pair` and accepts connections to it; returns once the first announce
    /// round finished.
    pub async fn listen(&self, key_pair: KeyPair, opts: ServerOptions) -> Result<Server, DhtError> {
        let (listening, rx) = oneshot::channel();
        let (incoming_tx, incoming) = mpsc::channel(16);
        self.cmds
            .send(Cmd::Listen {
                key_pair,
                opts,
                listening,
                incoming: incoming_tx,
            })
            .map_err(|_| DhtError::Stopped)?;
        let id = rx.await.map_err(|_| DhtError::Stopped)?;
        Ok(Server {
            id,
            cmds: self.cmds.clone(),
            incoming,
        })
    }

    fn op(&self, start: OpStart, with_replies: bool) -> PeerOp {
        let (done, done_rx) = oneshot::channel();
        let (tx, replies) = mpsc::unbounded_channel();
        let _ = self.cmds.send(Cmd::Op {
            start,
            done,
            replies: with_replies.then_some(tx),
        });
        PeerOp {
            replies,
            done: done_rx,
        }
    }

    /// Looks up the announcers of `topic` on this node's DHT (JS `dht.lookup`).
    pub fn lookup(&self, topic: [u8; 32]) -> PeerOp {
        self.op(Box::new(move |d, now| d.lookup(now, topic)), true)
    }

    /// Announces `key_pair` under `topic` with `relay_addresses` (JS `dht.announce`); the
    /// replies of the walk come as for [`DhtPeer::lookup`].
    pub fn announce(
        &self,
        topic: [u8; 32],
        key_pair: KeyPair,
        relay_addresses: Vec<SocketAddrV4>,
    ) -> PeerOp {
        self.op(
            Box::new(move |d, now| {
                d.announce(
                    now,
                    topic,
                    &key_pair,
                    relay_addresses,
                    AnnounceOptions::default(),
                )
            }),
            true,
        )
    }

    /// Removes `key_pair`'s announcement of `topic` (JS `dht.unannounce`).
    pub fn unannounce(&self, topic: [u8; 32], key_pair: KeyPair) -> PeerOp {
        self.op(
            Box::new(move |d, now| d.unannounce(now, topic, &key_pair)),
            true,
        )
    }

    /// Connects to the server of `public_key`. With relays configured (and the fallback on),
    /// a connection whose punch fails is made again through one of them.
    pub async fn connect(
        &self,
        public_key: [u8; 32],
        key_pair: KeyPair,
        mut opts: ConnectOptions,
    ) -> Result<Connection, DhtError> {
        if self.relay_fallback
            && opts.relay_through.is_none()
            && opts.fallback_relay.is_none()
            && !self.relays.is_empty()
        {
            let mut r = [0u8; 8];
            let _ = getrandom::fill(&mut r);
            opts.fallback_relay =
                Some(self.relays[(u64::from_le_bytes(r) % self.relays.len() as u64) as usize]);
        }
        let (done, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Connect {
                public_key,
                key_pair,
                opts,
                done,
            })
            .map_err(|_| DhtError::Stopped)?;
        rx.await.map_err(|_| DhtError::Stopped)?
    }
}

struct Op {
    done: oneshot::Sender<Result<OpOutput, OpError>>,
    replies: Option<mpsc::UnboundedSender<LookupResult>>,
}

struct Driver {
    node: HyperDht,
    connector: Connector,
    host: Ipv4Addr,
    sockets: HashMap<SocketId, Arc<UdxSocket>>,
    /// Released pool sockets, kept while a connection's stream may run on them.
    released: Vec<(SocketId, Arc<UdxSocket>)>,
    /// Sockets connections run on (each connection holds its socket): a later stream on the
    /// same socket (a relayed stream over the relay connection's socket) finds it here.
    in_use: HashMap<SocketId, std::sync::Weak<UdxSocket>>,
    /// UDX packets a connection's firewall took, to route again once its stream exists.
    pending_inject: Vec<(SocketId, SocketAddr, Vec<u8>)>,
    dgram_tx: mpsc::Sender<(SocketId, SocketAddr, Vec<u8>)>,
    epoch: Instant,
    start: Duration,
    servers: HashMap<ServerId, (Option<oneshot::Sender<ServerId>>, mpsc::Sender<Connection>)>,
    connects: HashMap<u64, oneshot::Sender<Result<Connection, DhtError>>>,
    bootstrapped: Vec<oneshot::Sender<()>>,
    /// Record operations started with [`Cmd::Op`].
    ops: HashMap<OpId, Op>,
    /// Connections to blind relays being made for a pairing.
    relay_jobs: HashMap<u64, relay::Job>,
    /// The data plane of a relay server run on this node.
    links: relay::Links,
    /// This node's key pair for connections to relays (JS `dht.defaultKeyPair`).
    relay_key: KeyPair,
    /// For relay tasks to report back (weak: the driver stops once every handle is gone).
    weak: mpsc::WeakUnboundedSender<Cmd>,
}

impl Driver {
    /// Time since the Unix epoch, advancing with the monotonic clock (the announce bump
    /// compares with Unix time).
    fn now(&self) -> Duration {
        self.start + self.epoch.elapsed()
    }

    fn add_socket(&mut self, id: SocketId, socket: Arc<UdxSocket>) -> io::Result<()> {
        socket.set_firewall(true)?;
        let mut rx = socket.datagrams()?;
        let tx = self.dgram_tx.clone();
        tokio::spawn(async move {
            while let Some((from, bytes)) = rx.recv().await {
                if tx.send((id, from, bytes)).await.is_err() {
                    return;
                }
            }
        });
        self.sockets.insert(id, socket);
        Ok(())
    }

    async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut dgrams: mpsc::Receiver<(SocketId, SocketAddr, Vec<u8>)>,
    ) {
        let mut open = true;
        loop {
            self.process().await;
            if !open && self.servers.is_empty() && self.connects.is_empty() && self.ops.is_empty() {
                return;
            }
            let next = [self.node.poll_timeout(), self.connector.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let deadline = next.map(|t| self.epoch + t.saturating_sub(self.start));
            tokio::select! {
                c = cmds.recv(), if open => match c {
                    Some(c) => self.command(c),
                    None => open = false,
                },
                d = dgrams.recv() => {
                    if let Some((socket, from, bytes)) = d {
                        self.datagram(socket, from, bytes).await;
                    }
                }
                _ = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = self.now();
                    if self.node.poll_timeout().is_some_and(|t| t <= now) {
                        self.node.handle_timeout(now);
                    }
                    if self.connector.poll_timeout().is_some_and(|t| t <= now) {
                        self.connector.handle_timeout(now, &mut self.node);
                    }
                }
            }
        }
    }

    fn command(&mut self, c: Cmd) {
        let now = self.now();
        match c {
            Cmd::Listen {
                key_pair,
                opts,
                listening,
                incoming,
            } => {
                let id = self.connector.listen(now, &mut self.node, key_pair, opts);
                self.servers.insert(id, (Some(listening), incoming));
            }
            Cmd::Close(id) => {
                self.connector.close_server(now, &mut self.node, id);
                self.servers.remove(&id);
            }
            Cmd::Connect {
                public_key,
                key_pair,
                opts,
                done,
            } => {
                let id = self
                    .connector
                    .connect(now, &mut self.node, public_key, key_pair, opts);
                self.connects.insert(id, done);
            }
            Cmd::Bootstrapped(tx) => {
                if self.node.rpc().is_bootstrapped() {
                    let _ = tx.send(());
                } else {
                    self.bootstrapped.push(tx);
                }
            }
            Cmd::Relays(id, tx) => {
                let _ = tx.send(self.connector.server_relays(id));
            }
            Cmd::RelayPaired {
                pairing,
                socket,
                relay,
                remote_id,
            } => {
                self.connector
                    .relay_paired(now, &mut self.node, pairing, socket, relay, remote_id);
            }
            Cmd::Firewalled(tx) => {
                let _ = tx.send((
                    self.node.rpc().is_firewalled(),
                    self.node.rpc().remote_address(),
                ));
            }
            Cmd::RelayFailed(pairing) => self.connector.relay_failed(now, &mut self.node, pairing),
            Cmd::RelayLink { ids, remotes } => self.links.link(ids, remotes),
            Cmd::RelayUnlink(ids) => self.links.unlink(&ids),
            Cmd::Op {
                start,
                done,
                replies,
            } => match start(&mut self.node, now) {
                Ok(op) => {
                    self.ops.insert(op, Op { done, replies });
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            },
        }
    }

    fn socket(&self, id: SocketId) -> Option<Arc<UdxSocket>> {
        self.sockets
            .get(&id)
            .cloned()
            .or_else(|| {
                self.released
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, s)| s.clone())
            })
            .or_else(|| self.in_use.get(&id).and_then(|w| w.upgrade()))
    }

    fn open_stream(&mut self, est: &Established) -> io::Result<Connection> {
        let socket = self
            .socket(est.socket)
            .ok_or_else(|| io::Error::other("the connection's socket is gone"))?;
        let udx = socket.connect(est.local_id, est.remote_id, SocketAddr::V4(est.remote))?;
        self.in_use.retain(|_, w| w.strong_count() > 0);
        self.in_use.insert(est.socket, Arc::downgrade(&socket));
        conn::start(udx, est, socket)
    }

    /// Carries out the connector's actions, sends the node's datagrams, routes events, until
    /// nothing moves.
    async fn process(&mut self) {
        loop {
            let mut progress = false;
            while let Some(a) = self.connector.poll_action() {
                progress = true;
                match a {
                    Action::OpenSocket(id) => {
                        // If binding fails, its pings and probes fail and the punch times out.
                        let addr = SocketAddr::V4(SocketAddrV4::new(self.host, 0));
                        if let Ok(s) = UdxSocket::bind(addr).await {
                            let _ = self.add_socket(id, Arc::new(s));
                        }
                    }
                    Action::ReleaseSocket(id) => {
                        if let Some(s) = self.sockets.remove(&id) {
                            self.released.push((id, s));
                        }
                    }
                    Action::Probe { socket, to, ttl } => {
                        if let Some(s) = self.socket(socket) {
                            let _ = s.send_datagram_ttl(&[0], SocketAddr::V4(to), ttl).await;
                        }
                    }
                }
            }
            while let Some(t) = self.node.poll_transmit() {
                progress = true;
                if let Some(s) = self.socket(t.socket) {
                    let _ = s
                        .send_datagram_ttl(&t.bytes, SocketAddr::V4(t.to), t.ttl)
                        .await;
                }
            }
            while let Some(e) = self.node.poll_event() {
                progress = true;
                if matches!(e, Event::Rpc(RpcEvent::Ready)) {
                    for tx in self.bootstrapped.drain(..) {
                        let _ = tx.send(());
                    }
                }
                let now = self.now();
                match self.connector.handle_dht_event(now, &mut self.node, e) {
                    Some(Event::Lookup { op, reply }) => {
                        if let Some(tx) = self.ops.get(&op).and_then(|o| o.replies.as_ref()) {
                            let _ = tx.send(reply);
                        }
                    }
                    Some(Event::OpDone { op, result }) => {
                        if let Some(o) = self.ops.remove(&op) {
                            let _ = o.done.send(result);
                        }
                    }
                    // Nothing else needs an action here.
                    _ => {}
                }
            }
            while let Some(ev) = self.connector.poll_event() {
                progress = true;
                match ev {
                    ConnectEvent::Listening { server } => {
                        if let Some((tx, _)) = self.servers.get_mut(&server) {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(server);
                            }
                        }
                    }
                    ConnectEvent::RelayPairing {
                        pairing,
                        relay_public_key,
                        token,
                        is_initiator,
                        stream_id,
                    } => {
                        let now = self.now();
                        let conn = self.connector.connect(
                            now,
                            &mut self.node,
                            relay_public_key,
                            self.relay_key.clone(),
                            ConnectOptions::default(),
                        );
                        self.relay_jobs.insert(
                            conn,
                            relay::Job {
                                pairing,
                                token,
                                is_initiator,
                                stream_id,
                            },
                        );
                    }
                    ConnectEvent::Connected { conn, established }
                        if self.relay_jobs.contains_key(&conn) =>
                    {
                        let job = self.relay_jobs.remove(&conn).expect("checked");
                        let now = self.now();
                        match self.open_stream(&established) {
                            Ok(c) => {
                                self.connector.relay_connected(
                                    now,
                                    &mut self.node,
                                    job.pairing,
                                    established.remote,
                                );
                                tokio::spawn(relay::pair(
                                    c,
                                    self.relay_key.public_key,
                                    job,
                                    self.weak.clone(),
                                ));
                            }
                            Err(_) => self
                                .connector
                                .relay_failed(now, &mut self.node, job.pairing),
                        }
                    }
                    ConnectEvent::ConnectFailed { conn, .. }
                        if self.relay_jobs.contains_key(&conn) =>
                    {
                        let job = self.relay_jobs.remove(&conn).expect("checked");
                        let now = self.now();
                        self.connector
                            .relay_failed(now, &mut self.node, job.pairing);
                    }
                    ConnectEvent::Connected { conn, established } => {
                        let r = self.open_stream(&established).map_err(DhtError::Io);
                        if let Some(tx) = self.connects.remove(&conn) {
                            let _ = tx.send(r);
                        }
                    }
                    ConnectEvent::ConnectFailed { conn, error } => {
                        if let Some(tx) = self.connects.remove(&conn) {
                            let _ = tx.send(Err(DhtError::Connect(error)));
                        }
                    }
                    ConnectEvent::Incoming {
                        server,
                        established,
                        ..
                    } => {
                        if let Ok(c) = self.open_stream(&established) {
                            if let Some((_, tx)) = self.servers.get(&server) {
                                let _ = tx.try_send(c);
                            }
                        }
                    }
                }
            }
            for (socket, from, bytes) in std::mem::take(&mut self.pending_inject) {
                if let Some(s) = self.socket(socket) {
                    let _ = s.inject(from, bytes);
                }
            }
            if !progress {
                break;
            }
        }
        // Streams keep their socket's driver alive; the handles of released sockets can go.
        self.released.clear();
    }

    async fn datagram(&mut self, socket: SocketId, from: SocketAddr, mut bytes: Vec<u8>) {
        let now = self.now();
        let SocketAddr::V4(from4) = from else { return };
        if bytes.len() == 1 {
            self.connector
                .handle_probe(now, &mut self.node, socket, from4);
        } else if bytes.len() >= 20 && bytes[0] == 0xff && bytes[1] == 1 {
            let id = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            if self.links.contains(id) {
                if let Some((out, to)) = self.links.forward(id, socket, from4, &mut bytes) {
                    if let Some(s) = self.socket(out) {
                        let _ = s.send_datagram(&bytes, SocketAddr::V4(to)).await;
                    }
                }
                return;
            }
            if self
                .connector
                .handle_udx_firewall(now, &mut self.node, socket, from4, id)
            {
                // The connection's stream gets connected while events are processed; the
                // packet follows it on the socket's command queue.
                self.pending_inject.push((socket, from, bytes));
            }
        } else {
            let _ = self.node.handle_datagram(now, socket, from, &bytes);
        }
    }
}

fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn random32() -> io::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(b)
}
