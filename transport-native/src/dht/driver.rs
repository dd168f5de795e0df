//! The node's task: a [`HyperDht`] (dht-rpc + records + router) and a [`Connector`]
//! (listen / connect / holepunch) over UDX sockets. No protocol decisions: datagrams go to the
//! node (RPC), the connector (1-byte probes; UDX packets for stream ids no stream has yet) or
//! a relay link; the connector's actions (bind a pool socket, send a probe with a TTL) are
//! carried out as they come; operations and connections are handed back through channels.
//!
//! (About 1,000 lines: the one task's event loop and the carrying out of each action kind;
//! connections are in `conn.rs`, lookups in `lookup.rs`, relay links in `relay.rs`.)

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::dht::connect::{
    Action, ConnId, ConnectEvent, ConnectOptions, Connector, Established, ExternalReceived,
    NoiseStep, PairingId, ServerId, ServerOptions,
};
use hyperpunch_core::dht::messages_connect::NoisePayload;
use hyperpunch_core::dht::rpc::{self, Event as RpcEvent, RequestError, RequestId, SocketId};
use hyperpunch_core::dht::{DhtConfig, Event, HyperDht, LookupResult, OpError, OpId, OpOutput};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::relay;
use super::{DhtError, DhtOptions, NodeInfo, RawConnection, Start};
use crate::udx::UdxSocket;

pub(crate) enum Cmd {
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
    Listen {
        key_pair: KeyPair,
        opts: ServerOptions,
        listening: oneshot::Sender<ServerId>,
        incoming: mpsc::Sender<RawConnection>,
    },
    /// A server whose key pair stays with its owner: its id comes back on `started`, its
    /// steps go to `steps`, answered with `ServerNoiseReceived` / `ServerNoiseSent` /
    /// `ServerSigned`.
    ListenExternal {
        public_key: [u8; 32],
        opts: ServerOptions,
        started: oneshot::Sender<ServerId>,
        steps: mpsc::UnboundedSender<super::ServerStep>,
        incoming: mpsc::Sender<RawConnection>,
    },
    ServerNoiseReceived(ServerId, u64, Option<(NoisePayload, [u8; 32])>),
    ServerNoiseSent(ServerId, u64, Option<(Vec<u8>, [u8; 32])>),
    ServerSigned(ServerId, u64, Option<[u8; 64]>),
    Close(ServerId),
    Connect {
        public_key: [u8; 32],
        key_pair: KeyPair,
        opts: ConnectOptions,
        done: oneshot::Sender<Result<RawConnection, DhtError>>,
    },
    /// A connect whose Noise handshake runs outside: its steps go to `steps`, answered with
    /// `ExternalSent` / `ExternalReceived`; its id comes back on `started`.
    ConnectExternal {
        public_key: [u8; 32],
        opts: ConnectOptions,
        steps: mpsc::UnboundedSender<NoiseStep>,
        started: oneshot::Sender<ConnId>,
        done: oneshot::Sender<Result<RawConnection, DhtError>>,
    },
    ExternalSent(ConnId, Option<Vec<u8>>),
    /// An announce whose records the key pair's owner signs: the requests go to `signs`,
    /// answered with `AnnounceSigned`.
    AnnounceExternal {
        topic: [u8; 32],
        public_key: [u8; 32],
        done: oneshot::Sender<Result<OpOutput, OpError>>,
        replies: mpsc::Sender<LookupResult>,
        signs: mpsc::UnboundedSender<super::SignAnnounceRequest>,
    },
    AnnounceSigned(OpId, u64, Option<[u8; 64]>),
    /// An unannounce whose removals the key pair's owner signs (as `AnnounceExternal`).
    UnannounceExternal {
        topic: [u8; 32],
        public_key: [u8; 32],
        done: oneshot::Sender<Result<OpOutput, OpError>>,
        replies: mpsc::Sender<LookupResult>,
        signs: mpsc::UnboundedSender<super::SignAnnounceRequest>,
    },
    ExternalReceived(ConnId, Option<ExternalReceived>),
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
        /// Each side's peer: its pairing connection's socket and address.
        at: [Option<(SocketId, SocketAddrV4)>; 2],
    },
    RelayUnlink(Vec<u32>),
    /// A stream opened beside a connection (a hypershell tunnel's) on this socket: route the
    /// peer's packets for it that reach another of our sockets there, as for connections.
    StreamOn(u32, SocketId),
}

type Datagrams = mpsc::Receiver<(SocketAddr, Vec<u8>)>;

/// Binds the node's sockets and starts its task; returns the command channel, the info
/// watch and the server socket's address.
pub(crate) async fn spawn(
    opts: &DhtOptions,
    bootstrap: Vec<SocketAddrV4>,
) -> Result<
    (
        mpsc::UnboundedSender<Cmd>,
        watch::Receiver<NodeInfo>,
        SocketAddrV4,
    ),
    DhtError,
> {
    let server_addr = SocketAddr::V4(SocketAddrV4::new(opts.host, opts.port));
    let server = match UdxSocket::bind(server_addr).await {
        Ok(s) => s,
        // A bootstrapper's public host may not be a local address (a NAT'd VPS): bind every
        // interface on its port instead, as JS does.
        Err(e) if opts.bootstrapper.is_some() && e.kind() == io::ErrorKind::AddrNotAvailable => {
            UdxSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, opts.port))).await?
        }
        Err(e) => return Err(e.into()),
    };
    let local = match server.local_addr() {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => return Err(io::Error::other("IPv4 only").into()),
    };
    let client = UdxSocket::bind(SocketAddr::from((*local.ip(), 0))).await?;
    let client_addr = client.local_addr();

    let mut config = match opts.bootstrapper {
        // Port 0 (any free port): the public port is the one bound.
        Some(public) if public.port() == 0 => {
            DhtConfig::bootstrapper(SocketAddrV4::new(*public.ip(), local.port()))
        }
        Some(public) => DhtConfig::bootstrapper(public),
        None => DhtConfig::default(),
    };
    config.rpc.bootstrap = bootstrap;
    config.rpc.server_port = local.port();
    config.rpc.ephemeral = opts.ephemeral;
    config.rpc.firewalled = opts.firewalled;
    config.rpc.quick_firewall = opts.quick_firewall;
    config.rpc.limits = opts.limits;
    config.store = opts.store;
    let start = unix_now();
    let node = HyperDht::new(config, start, random32()?);
    let mut connector = Connector::new();
    // JS `Holepuncher.localAddresses`: the bound address when bound to one (loopback, or an
    // explicit host such as a namespace's); interface enumeration for 0.0.0.0 is not done.
    if !local.ip().is_unspecified() {
        connector.set_local_addresses(vec![local]);
    }
    let (cmds, cmd_rx) = mpsc::unbounded_channel();
    let (info_tx, info) = watch::channel(NodeInfo::default());
    let (dgram_tx, dgram_rx) = mpsc::channel(4096);
    let server = Arc::new(server);
    let client = Arc::new(client);
    server.set_firewall(true)?;
    client.set_firewall(true)?;
    let server_rx = server.datagrams()?;
    let client_rx = client.datagrams()?;
    let mut sockets = HashMap::new();
    sockets.insert(SocketId::SERVER, server);
    sockets.insert(SocketId::CLIENT, client);
    let d = Driver {
        node,
        connector,
        host: *local.ip(),
        sockets,
        released: Vec::new(),
        in_use: HashMap::new(),
        pending_inject: Vec::new(),
        stream_sockets: std::collections::HashMap::new(),
        stream_order: std::collections::VecDeque::new(),
        dgram_tx,
        epoch: Instant::now(),
        start,
        servers: HashMap::new(),
        server_steps: HashMap::new(),
        connects: HashMap::new(),
        external: HashMap::new(),
        op_signs: HashMap::new(),
        ops: HashMap::new(),
        requests: HashMap::new(),
        relay_jobs: HashMap::new(),
        links: relay::Links::default(),
        upgrades: HashMap::new(),
        relay_closers: HashMap::new(),
        relay_key: KeyPair::from_seed(&random32()?),
        weak: cmds.downgrade(),
        info: info_tx,
        incoming_dropped: 0,
        last_incoming_drop: None,
        server_addr: SocketAddr::V4(local),
        client_addr,
    };
    tokio::spawn(d.run(cmd_rx, server_rx, client_rx, dgram_rx));
    Ok((cmds, info, local))
}

struct PendingOp {
    done: oneshot::Sender<Result<OpOutput, OpError>>,
    replies: Option<mpsc::Sender<LookupResult>>,
}

struct Driver {
    node: HyperDht,
    connector: Connector,
    host: Ipv4Addr,
    sockets: HashMap<SocketId, Arc<UdxSocket>>,
    /// Released pool sockets with when they were released, kept for [`SOCKET_LINGER`] (as
    /// hyperdht's socket pool lingers): a punch's last probe can arrive on one just after the
    /// connector let it go, and the connection it completes runs on that socket.
    released: Vec<(SocketId, Arc<UdxSocket>, Instant)>,
    /// Sockets connections run on (each connection holds its socket): a later stream on the
    /// same socket (a relayed stream over the relay connection's socket) finds it here.
    in_use: HashMap<SocketId, std::sync::Weak<UdxSocket>>,
    /// UDX packets a connection's firewall took, to route again once its stream exists.
    pending_inject: Vec<(SocketId, SocketAddr, Vec<u8>)>,
    /// The socket of each stream opened (the last [`STREAM_SOCKETS_KEPT`]), by local id. A
    /// peer's packet for it that comes back to us as unknown is handed to that socket
    /// ([`UdxSocket::deliver`], queued behind the stream's connect, dropped if the stream is gone):
    /// - it reached the stream's socket before the stream was connected there (both go through
    ///   the socket's driver, in whichever order it sees them); before, it was dropped and the
    ///   peer resent it after its first RTO, a whole second (1 connect in 20 on a loopback
    ///   testnet);
    /// - it reached another of our sockets, as libudx looks stream ids up across all sockets of
    ///   one instance (a hyperdht server may answer from one socket while the peer was told the
    ///   other).
    stream_sockets: std::collections::HashMap<u32, SocketId>,
    stream_order: std::collections::VecDeque<u32>,
    /// Datagrams of the pool sockets (the server's and client's have receivers of their own).
    dgram_tx: mpsc::Sender<(SocketId, SocketAddr, Vec<u8>)>,
    epoch: Instant,
    start: Duration,
    servers: HashMap<
        ServerId,
        (
            Option<oneshot::Sender<ServerId>>,
            mpsc::Sender<RawConnection>,
        ),
    >,
    connects: HashMap<ConnId, oneshot::Sender<Result<RawConnection, DhtError>>>,
    /// Where the steps of external servers go.
    server_steps: HashMap<ServerId, mpsc::UnboundedSender<super::ServerStep>>,
    /// Where the steps of external handshakes go.
    external: HashMap<ConnId, mpsc::UnboundedSender<NoiseStep>>,
    /// Where the signature requests of external announces go.
    op_signs: HashMap<OpId, mpsc::UnboundedSender<super::SignAnnounceRequest>>,
    ops: HashMap<OpId, PendingOp>,
    requests: HashMap<RequestId, oneshot::Sender<Result<rpc::Response, RequestError>>>,
    /// Connections to blind relays being made for a pairing.
    relay_jobs: HashMap<ConnId, relay::Job>,
    /// Relayed connections' streams (by local id) that may still move to a direct path:
    /// told the peer's direct address once they did.
    upgrades: HashMap<u32, watch::Sender<Option<SocketAddrV4>>>,
    /// Closes the connection to the relay of a pairing (by our stream id) once its stream
    /// moved to a direct path (relay-connection.js `closeRelayConnection`).
    relay_closers: HashMap<u32, oneshot::Sender<()>>,
    /// The data plane of a relay server run on this node.
    links: relay::Links,
    /// This node's key pair for connections to relays (JS `dht.defaultKeyPair`).
    relay_key: KeyPair,
    /// For relay tasks to report back (weak: the driver stops once every handle is gone).
    weak: mpsc::WeakUnboundedSender<Cmd>,
    info: watch::Sender<NodeInfo>,
    /// [`NodeInfo::incoming_dropped`] and why the last one was.
    incoming_dropped: u64,
    last_incoming_drop: Option<String>,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
}

/// Datagrams handled per wakeup before timers and output get their turn.
const RECV_BATCH: usize = 256;

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
        mut server_rx: Datagrams,
        mut client_rx: Datagrams,
        mut dgrams: mpsc::Receiver<(SocketId, SocketAddr, Vec<u8>)>,
    ) {
        let mut open = true;
        loop {
            self.process().await;
            if !open && self.servers.is_empty() && self.connects.is_empty() {
                return;
            }
            let next = [self.node.poll_timeout(), self.connector.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let deadline = next.map(|t| self.epoch + t.saturating_sub(self.start));
            tokio::select! {
                c = cmds.recv(), if open => match c {
                    Some(Cmd::Destroy(done)) => {
                        self.node.destroy();
                        self.process().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(c) => self.command(c),
                    None => open = false,
                },
                d = server_rx.recv() => {
                    let Some((from, bytes)) = d else { return };
                    self.datagram(SocketId::SERVER, from, bytes).await;
                    for _ in 0..RECV_BATCH {
                        let Ok((from, bytes)) = server_rx.try_recv() else { break };
                        self.datagram(SocketId::SERVER, from, bytes).await;
                    }
                }
                d = client_rx.recv() => {
                    let Some((from, bytes)) = d else { return };
                    self.datagram(SocketId::CLIENT, from, bytes).await;
                    for _ in 0..RECV_BATCH {
                        let Ok((from, bytes)) = client_rx.try_recv() else { break };
                        self.datagram(SocketId::CLIENT, from, bytes).await;
                    }
                }
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
            Cmd::Op {
                start,
                done,
                replies,
            } => match start(&mut self.node, now) {
                Ok(op) => {
                    self.ops.insert(op, PendingOp { done, replies });
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            },
            Cmd::Request { spec, done } => match self.node.rpc_mut().request(now, spec) {
                Ok(id) => {
                    self.requests.insert(id, done);
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            },
            Cmd::Destroy(_) => {}
            Cmd::Listen {
                key_pair,
                opts,
                listening,
                incoming,
            } => {
                let id = self.connector.listen(now, &mut self.node, key_pair, opts);
                self.servers.insert(id, (Some(listening), incoming));
            }
            Cmd::ListenExternal {
                public_key,
                opts,
                started,
                steps,
                incoming,
            } => {
                // Registered before its first step comes out of the connector.
                let id = self.connector.next_conn_id();
                self.server_steps.insert(id, steps);
                self.servers.insert(id, (None, incoming));
                let got = self
                    .connector
                    .listen_external(now, &mut self.node, public_key, opts);
                debug_assert_eq!(got, id);
                let _ = started.send(id);
            }
            Cmd::ServerNoiseReceived(id, handshake, received) => {
                self.connector
                    .server_noise_received(now, &mut self.node, id, handshake, received);
            }
            Cmd::ServerNoiseSent(id, handshake, sent) => {
                self.connector
                    .server_noise_sent(now, &mut self.node, id, handshake, sent);
            }
            Cmd::ServerSigned(id, sign, signature) => {
                self.connector
                    .server_signed(now, &mut self.node, id, sign, signature);
            }
            Cmd::Close(id) => {
                self.connector.close_server(now, &mut self.node, id);
                self.servers.remove(&id);
                self.server_steps.remove(&id);
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
            Cmd::ConnectExternal {
                public_key,
                opts,
                steps,
                started,
                done,
            } => {
                // Registered before the first step comes out of the connector.
                let id = self.connector.next_conn_id();
                self.external.insert(id, steps);
                let got = self
                    .connector
                    .connect_external(now, &mut self.node, public_key, opts);
                debug_assert_eq!(got, id);
                self.connects.insert(id, done);
                let _ = started.send(id);
            }
            Cmd::AnnounceExternal {
                topic,
                public_key,
                done,
                replies,
                signs,
            } => match self.node.announce_external(
                now,
                topic,
                public_key,
                Vec::new(),
                hyperpunch_core::dht::AnnounceOptions::default(),
            ) {
                Ok(op) => {
                    self.ops.insert(
                        op,
                        PendingOp {
                            done,
                            replies: Some(replies),
                        },
                    );
                    self.op_signs.insert(op, signs);
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            },
            Cmd::UnannounceExternal {
                topic,
                public_key,
                done,
                replies,
                signs,
            } => match self.node.unannounce_external(now, topic, public_key) {
                Ok(op) => {
                    self.ops.insert(
                        op,
                        PendingOp {
                            done,
                            replies: Some(replies),
                        },
                    );
                    self.op_signs.insert(op, signs);
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            },
            Cmd::AnnounceSigned(op, sign, signature) => {
                self.node.announce_signed(op, sign, signature);
            }
            Cmd::ExternalSent(id, message) => {
                self.connector
                    .external_sent(now, &mut self.node, id, message);
            }
            Cmd::ExternalReceived(id, received) => {
                self.connector
                    .external_received(now, &mut self.node, id, received);
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
            Cmd::RelayLink { ids, remotes, at } => self.links.link(ids, remotes, at),
            Cmd::RelayUnlink(ids) => self.links.unlink(&ids),
            Cmd::StreamOn(id, socket) => self.remember_stream(id, socket),
        }
    }

    fn socket(&self, id: SocketId) -> Option<Arc<UdxSocket>> {
        self.sockets
            .get(&id)
            .cloned()
            .or_else(|| {
                self.released
                    .iter()
                    .find(|(i, _, _)| *i == id)
                    .map(|(_, s, _)| s.clone())
            })
            .or_else(|| self.in_use.get(&id).and_then(|w| w.upgrade()))
    }

    /// Remembers which socket stream `id` lives on ([`Driver::stream_sockets`]).
    fn remember_stream(&mut self, id: u32, socket: SocketId) {
        if self.stream_sockets.len() >= STREAM_SOCKETS_KEPT {
            if let Some(old) = self.stream_order.pop_front() {
                self.stream_sockets.remove(&old);
            }
        }
        if self.stream_sockets.insert(id, socket).is_none() {
            self.stream_order.push_back(id);
        }
    }

    fn open_stream(&mut self, est: Established) -> io::Result<RawConnection> {
        let socket = self
            .socket(est.socket)
            .ok_or_else(|| io::Error::other("the connection's socket is gone"))?;
        let udx = socket.connect(est.local_id, est.remote_id, SocketAddr::V4(est.remote))?;
        self.remember_stream(est.local_id, est.socket);
        self.in_use.retain(|_, w| w.strong_count() > 0);
        self.in_use.insert(est.socket, Arc::downgrade(&socket));
        let relayed = est.relayed;
        let local_id = est.local_id;
        let home = est.socket;
        let mut raw = RawConnection::new(udx, est, socket);
        let weak = self.weak.clone();
        raw.set_stream_registry(Box::new(move |id| {
            if let Some(cmds) = weak.upgrade() {
                let _ = cmds.send(Cmd::StreamOn(id, home));
            }
        }));
        if relayed {
            let (tx, rx) = watch::channel(None);
            self.upgrades.retain(|_, tx| !tx.is_closed());
            self.upgrades.insert(local_id, tx);
            raw.set_direct(rx);
        }
        Ok(raw)
    }

    /// An event of the record layer or of our own requests (what the connector handed back).
    fn node_event(&mut self, e: Event) {
        match e {
            Event::Lookup { op, reply } => {
                if let Some(tx) = self.ops.get(&op).and_then(|p| p.replies.as_ref()) {
                    let _ = tx.try_send(reply);
                }
            }
            Event::SignAnnounce {
                op,
                sign,
                token,
                peer_id,
                relay_addresses,
                ..
            } => {
                if let Some(tx) = self.op_signs.get(&op) {
                    let _ = tx.send(super::SignAnnounceRequest {
                        op,
                        sign,
                        token,
                        peer_id,
                        relay_addresses,
                    });
                }
            }
            Event::OpDone { op, result } => {
                self.op_signs.remove(&op);
                if let Some(p) = self.ops.remove(&op) {
                    let _ = p.done.send(result);
                }
            }
            Event::Rpc(RpcEvent::Response { id, response }) => {
                if let Some(tx) = self.requests.remove(&id) {
                    let _ = tx.send(Ok(response));
                }
            }
            Event::Rpc(RpcEvent::RequestFailed { id, error }) => {
                if let Some(tx) = self.requests.remove(&id) {
                    let _ = tx.send(Err(error));
                }
            }
            _ => {}
        }
    }

    fn connect_event(&mut self, ev: ConnectEvent) {
        let now = self.now();
        match ev {
            ConnectEvent::Listening { server } => {
                if let Some((tx, _)) = self.servers.get_mut(&server) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(server);
                    }
                }
                if let Some(tx) = self.server_steps.get(&server) {
                    let _ = tx.send(super::ServerStep::Listening);
                }
            }
            ConnectEvent::ServerNoise {
                server,
                handshake,
                step,
            } => {
                if let Some(tx) = self.server_steps.get(&server) {
                    let _ = tx.send(super::ServerStep::Noise { handshake, step });
                }
            }
            ConnectEvent::ServerSign {
                server,
                sign,
                token,
                node_id,
            } => {
                if let Some(tx) = self.server_steps.get(&server) {
                    let _ = tx.send(super::ServerStep::Sign {
                        sign,
                        token,
                        node_id,
                    });
                }
            }
            ConnectEvent::RelayPairing {
                pairing,
                relay_public_key,
                token,
                is_initiator,
                stream_id,
            } => {
                let conn = self.connector.connect(
                    now,
                    &mut self.node,
                    relay_public_key,
                    self.relay_key.clone(),
                    ConnectOptions::default(),
                );
                let (close_tx, close) = oneshot::channel();
                self.relay_closers.retain(|_, tx| !tx.is_closed());
                self.relay_closers.insert(stream_id, close_tx);
                self.relay_jobs.insert(
                    conn,
                    relay::Job {
                        pairing,
                        token,
                        is_initiator,
                        stream_id,
                        close,
                    },
                );
            }
            ConnectEvent::Connected { conn, established }
                if self.relay_jobs.contains_key(&conn) =>
            {
                let job = self.relay_jobs.remove(&conn).expect("checked");
                let remote = established.remote;
                match self.open_stream(established) {
                    Ok(c) => {
                        self.connector
                            .relay_connected(now, &mut self.node, job.pairing, remote);
                        tokio::spawn(relay::pair(
                            c.into_messages(),
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
            ConnectEvent::ConnectFailed { conn, .. } if self.relay_jobs.contains_key(&conn) => {
                let job = self.relay_jobs.remove(&conn).expect("checked");
                self.connector
                    .relay_failed(now, &mut self.node, job.pairing);
            }
            ConnectEvent::ExternalNoise { conn, step } => {
                if let Some(tx) = self.external.get(&conn) {
                    let _ = tx.send(step);
                }
            }
            ConnectEvent::Connected { conn, established } => {
                self.external.remove(&conn);
                let r = self.open_stream(established).map_err(DhtError::Io);
                if let Some(tx) = self.connects.remove(&conn) {
                    if let Err(Ok(c)) = tx.send(r) {
                        // The caller gave up meanwhile.
                        c.destroy();
                    }
                }
            }
            ConnectEvent::ConnectFailed { conn, error } => {
                self.external.remove(&conn);
                if let Some(tx) = self.connects.remove(&conn) {
                    let _ = tx.send(Err(DhtError::Connect(error)));
                }
            }
            ConnectEvent::Upgrade {
                local_id,
                socket,
                remote_id,
                remote,
            } => self.upgrade(local_id, socket, remote_id, remote),
            ConnectEvent::Incoming {
                server,
                established,
                ..
            } => {
                let Some(tx) = self.servers.get(&server).map(|(_, tx)| tx.clone()) else {
                    return self.drop_incoming(&established, "the server is closed".into());
                };
                match self.open_stream(established.clone()) {
                    Ok(c) => {
                        if let Err(e) = tx.try_send(c) {
                            let full = matches!(e, mpsc::error::TrySendError::Full(_));
                            e.into_inner().destroy();
                            let why = if full {
                                format!("the accept queue is full ({})", super::ACCEPT_QUEUE)
                            } else {
                                "the server is closed".into()
                            };
                            self.drop_incoming(&established, why);
                        }
                    }
                    Err(e) => {
                        self.drop_incoming(&established, format!("its stream did not open: {e}"))
                    }
                }
            }
        }
    }

    /// `onsocket` on a connected raw stream (connect.js, server.js): the relayed stream
    /// `local_id` moves, live, to the punched `socket` and the peer's stream there
    /// (`changeRemote`); once that completed, an empty MESSAGE shows the peer the direct path
    /// and the connection to the relay closes when the stream next hears from the peer on it
    /// (`confirmDirectUpgrade`).
    fn upgrade(&mut self, local_id: u32, socket: SocketId, remote_id: u32, remote: SocketAddrV4) {
        let from = self
            .stream_sockets
            .get(&local_id)
            .and_then(|home| self.socket(*home));
        let (Some(from), Some(to)) = (from, self.socket(socket)) else {
            return;
        };
        let Ok(moved) = from.start_move(local_id, &to, remote_id, SocketAddr::V4(remote)) else {
            return;
        };
        // Packets the firewall took for the stream on the new socket: through the old one,
        // which hands them on once the stream has moved.
        let (ours, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_inject)
            .into_iter()
            .partition(|(s, _, bytes)| {
                *s == socket && hyperpunch_core::udx::packet::stream_id(bytes) == Some(local_id)
            });
        self.pending_inject = rest;
        for (_, _, bytes) in ours {
            let _ = from.deliver(bytes);
        }
        self.stream_sockets.insert(local_id, socket);
        self.in_use.insert(socket, Arc::downgrade(&to));
        let closer = self.relay_closers.remove(&local_id);
        let told = self.upgrades.remove(&local_id);
        tokio::spawn(async move {
            if moved.await.is_err() {
                return;
            }
            if let Some(tx) = told {
                let _ = tx.send(Some(remote));
            }
            let Ok(heard) = to.next_direct_packet(local_id) else {
                return;
            };
            let _ = to.send_stream_message(local_id, Vec::new());
            if heard.await.is_ok() {
                if let Some(c) = closer {
                    let _ = c.send(());
                }
            }
        });
    }

    /// An incoming connection nobody will run: reset the peer's stream (from the connection's
    /// socket, or the server socket when that one is gone; again for each later packet of it,
    /// as the peer may open its stream after this) and count it.
    fn drop_incoming(&mut self, est: &Established, why: String) {
        let socket = self
            .socket(est.socket)
            .or_else(|| self.socket(SocketId::SERVER));
        if let Some(s) = socket {
            let bytes = self.connector.refuse(est);
            let to = SocketAddr::V4(est.remote);
            // Best effort, off the driver's loop: a lost reset leaves the peer to its timeout.
            tokio::spawn(async move {
                let _ = s.send_datagram(&bytes, to).await;
            });
        }
        self.incoming_dropped += 1;
        self.last_incoming_drop = Some(why);
    }

    /// Carries out the connector's actions, sends the node's datagrams, routes events, until
    /// nothing moves.
    async fn process(&mut self) {
        let mut releases: Vec<SocketId> = Vec::new();
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
                    // Applied after this round's datagrams left (below).
                    Action::ReleaseSocket(id) => releases.push(id),
                    Action::Probe { socket, to, ttl } => {
                        if let Some(s) = self.socket(socket) {
                            let _ = s.send_datagram_ttl(&[0], SocketAddr::V4(to), ttl).await;
                        }
                    }
                }
            }
            while let Some(e) = self.node.poll_event() {
                progress = true;
                let now = self.now();
                if let Some(e) = self.connector.handle_dht_event(now, &mut self.node, e) {
                    self.node_event(e);
                }
            }
            while let Some(ev) = self.connector.poll_event() {
                progress = true;
                self.connect_event(ev);
            }
            // The node's datagrams leave once this round's actions and events are drained: a
            // connection's stream is connected on its socket before the handshake reply that
            // lets the peer send on it leaves, and the probes an event asked for (a punch round)
            // leave before the request or reply that tells the peer to punch (sending those
            // first broke every punched cell of the NAT lab, tests/nat_matrix.rs). Sockets the
            // connector released go only after the datagrams queued for them left (releasing
            // first lost the answers to them: a connect between two nodes hung, 1 in 6).
            if progress {
                continue;
            }
            while let Some(t) = self.node.poll_transmit() {
                progress = true;
                if let Some(s) = self.socket(t.socket) {
                    // A failed send is a lost datagram: the engine retries or gives up.
                    let _ = s
                        .send_datagram_ttl(&t.bytes, SocketAddr::V4(t.to), t.ttl)
                        .await;
                }
            }
            for id in std::mem::take(&mut releases) {
                if let Some(s) = self.sockets.remove(&id) {
                    self.released.push((id, s, Instant::now()));
                }
            }
            for (socket, from, bytes) in std::mem::take(&mut self.pending_inject) {
                if let Some(s) = self.socket(socket) {
                    let _ = s.inject(from, bytes);
                }
            }
            // Attempts whose caller gave up are cancelled (JS `socket.destroy()` while
            // connecting).
            let gone: Vec<ConnId> = self
                .connects
                .iter()
                .filter(|(_, tx)| tx.is_closed())
                .map(|(id, _)| *id)
                .collect();
            // External announces whose signer is gone (it would never answer).
            let orphaned: Vec<OpId> = self
                .op_signs
                .iter()
                .filter(|(_, tx)| tx.is_closed())
                .map(|(op, _)| *op)
                .collect();
            for op in orphaned {
                self.op_signs.remove(&op);
                self.node.cancel(op);
                progress = true;
            }
            for id in gone {
                self.connects.remove(&id);
                self.external.remove(&id);
                let now = self.now();
                self.connector.cancel(now, &mut self.node, id);
                progress = true;
            }
            if !progress {
                break;
            }
        }
        // Streams keep their socket's driver alive; the handles of released sockets go after
        // their linger. (Dropping them at once lost connections: a server completed a punch on
        // a socket released a moment before, found it gone and dropped the connection while
        // the client had it, about 1 connect in 12 between two nodes on one host.)
        self.released
            .retain(|(_, _, at)| at.elapsed() < SOCKET_LINGER);
        self.publish_info();
    }

    fn publish_info(&mut self) {
        let rpc = self.node.rpc();
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
            stored: self.node.store_sizes().unwrap_or_default(),
            incoming_dropped: self.incoming_dropped,
            last_incoming_drop: self.last_incoming_drop.clone(),
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
            if let Some(reset) = self.connector.refused_reset(id) {
                // A packet of a connection we refused (the peer opened its stream after our
                // first reset, or missed it): reset it again.
                if let Some(s) = self.socket(socket) {
                    let _ = s.send_datagram(&reset, from).await;
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
            } else if let Some(s) = self
                .stream_sockets
                .get(&id)
                .and_then(|home| self.socket(*home))
            {
                let _ = s.deliver(bytes);
            }
        } else {
            let _ = self.node.handle_datagram(now, socket, from, &bytes);
        }
    }
}

/// How long a released pool socket stays open.
const SOCKET_LINGER: Duration = Duration::from_secs(5);
/// How many streams [`Driver::stream_sockets`] remembers (a few bytes each).
const STREAM_SOCKETS_KEPT: usize = 4096;

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
