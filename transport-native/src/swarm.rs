//! hyperswarm on tokio: the sans-IO [`hyperpunch_core::swarm::Swarm`] engine driven over a
//! [`Dht`] node. Join topics, and connections to the peers found under them (and to those that
//! find us) come out one per remote key, as JS hyperswarm hands them out.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hyperpunch::dht::DhtError> {
//! use hyperpunch::dht::DhtOptions;
//! use hyperpunch::swarm::{JoinOptions, Swarm, SwarmOptions};
//!
//! let mut swarm = Swarm::new(SwarmOptions::new(DhtOptions::new(vec![
//!     "127.0.0.1:49737".into(),
//! ])))
//! .await?;
//! let topic = [7u8; 32];
//! let discovery = swarm.join(topic, JoinOptions::default()).await;
//! discovery.flushed().await; // announced
//! while let Some(conn) = swarm.accept().await {
//!     println!("peer {}", hex::encode(conn.remote_public_key()));
//!     let mut messages = conn.into_messages();
//!     messages.send(b"hello".to_vec()).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! The driver is one task: it carries out the engine's actions (listen, queries, connects,
//! destroying duplicates) on the [`Dht`] through its async API, feeds the results back, and
//! hands the engine's connections out as [`SwarmConnection`]s. A connection tells the swarm
//! when it is over by being dropped (its message pump, or a replication over it, holds it).
//! No protocol decision is made here.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::dht::messages::PeerRecord;
use hyperpunch_core::dht::AnnounceOptions;
use hyperpunch_core::swarm::{
    Action, ConnectionId, Event, FlushId, QueryId, QueryKind, SessionId, Swarm as Engine,
    SwarmConfig,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use hyperpunch_core::swarm::{JoinOptions, PeerFirewall, PeerInfo, Stats, TopicStatus};

use crate::dht::{
    ConnectOptions, Connection, Dht, DhtError, DhtOptions, RawConnection, RawParts, Server,
    ServerOptions,
};
use crate::udx::StreamHandle;

/// How to run a swarm.
pub struct SwarmOptions {
    /// The DHT node to start (ignored by [`Swarm::with_dht`]).
    pub dht: DhtOptions,
    /// Our key pair (default: a random one).
    pub key_pair: Option<KeyPair>,
    /// Connections at most (JS `maxPeers`, 64).
    pub max_peers: usize,
    /// Connection attempts at once (JS `maxParallel`, 3).
    pub max_parallel: usize,
    /// Client connections at most (JS `maxClientConnections`, unlimited).
    pub max_client_connections: usize,
    /// Refuse peers by public key (JS `firewall`); refused peers are banned.
    pub firewall: Option<PeerFirewall>,
}

impl SwarmOptions {
    /// JS's defaults on a DHT node run with `dht`.
    pub fn new(dht: DhtOptions) -> Self {
        SwarmOptions {
            dht,
            key_pair: None,
            max_peers: hyperpunch_core::swarm::MAX_PEERS,
            max_parallel: hyperpunch_core::swarm::MAX_PARALLEL,
            max_client_connections: usize::MAX,
            firewall: None,
        }
    }
}

/// A connection the swarm hands out: the only one to that peer while it lasts.
pub struct SwarmConnection {
    raw: RawConnection,
    client: bool,
    topics: Vec<[u8; 32]>,
}

impl SwarmConnection {
    /// The peer's public key.
    pub fn remote_public_key(&self) -> [u8; 32] {
        self.raw.remote_public_key()
    }

    /// We dialed it (JS `peerInfo.client`).
    pub fn is_client(&self) -> bool {
        self.client
    }

    /// The topics the peer was found under when it connected (empty for a peer that found
    /// us).
    pub fn topics(&self) -> &[[u8; 32]] {
        &self.topics
    }

    /// The connection underneath (path, addresses).
    pub fn raw(&self) -> &RawConnection {
        &self.raw
    }

    /// Runs the connection as a message pipe; the swarm learns of its end when the pipe ends.
    pub fn into_messages(self) -> Connection {
        self.raw.into_messages()
    }

    /// The connection unstarted, for a driver of its own (see
    /// [`replicate_connection`](crate::replicate::replicate_connection), which takes
    /// [`SwarmConnection::into_raw`]). Drop the parts' guards when the connection is over.
    pub fn into_parts(
        self,
        opts: hyperpunch_core::secretstream::Options,
        now_ms: u64,
    ) -> std::io::Result<RawParts> {
        self.raw.into_parts(opts, now_ms)
    }

    /// The raw connection (its guard tells the swarm when it is dropped). Nothing is sent on it
    /// until it is started; the peer's [`Swarm::accept`] waits for its first bytes.
    pub fn into_raw(self) -> RawConnection {
        self.raw
    }
}

/// Tells the swarm a connection is over when dropped.
struct CloseGuard {
    id: ConnectionId,
    cmds: mpsc::UnboundedSender<SCmd>,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        let _ = self.cmds.send(SCmd::Closed(self.id));
    }
}

enum SCmd {
    Join([u8; 32], JoinOptions, oneshot::Sender<Option<SessionId>>),
    Refresh(SessionId, JoinOptions, oneshot::Sender<bool>),
    LeaveSession(SessionId),
    Leave([u8; 32], oneshot::Sender<()>),
    JoinPeer([u8; 32]),
    LeavePeer([u8; 32]),
    Flush(Option<[u8; 32]>, oneshot::Sender<bool>),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Status([u8; 32], oneshot::Sender<Option<TopicStatus>>),
    Stats(oneshot::Sender<(Stats, usize)>),
    Closed(ConnectionId),
    Destroy(oneshot::Sender<()>),
}

/// What the driver's helper tasks report.
enum Report {
    Listening(Result<Server, DhtError>),
    QueryPeers(QueryId, Vec<PeerRecord>),
    QueryDone(QueryId, Result<Vec<SocketAddrV4>, ()>),
    Connected(ConnectionId, Result<Box<RawConnection>, DhtError>),
    Unannounced,
}

/// A running swarm. Dropping it stops the swarm (without unannouncing; see
/// [`Swarm::destroy`]); connections already handed out run on.
pub struct Swarm {
    cmds: mpsc::UnboundedSender<SCmd>,
    incoming: mpsc::UnboundedReceiver<SwarmConnection>,
    key_pair: KeyPair,
    dht: Arc<Dht>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A joined topic (JS `PeerDiscoverySession`).
pub struct Discovery {
    id: Option<SessionId>,
    topic: [u8; 32],
    cmds: mpsc::UnboundedSender<SCmd>,
}

impl Discovery {
    /// The topic.
    pub fn topic(&self) -> [u8; 32] {
        self.topic
    }

    /// Waits for the topic's current refresh (its announce and/or lookup) to finish; false if
    /// it failed or the swarm is gone.
    pub async fn flushed(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        let _ = self.cmds.send(SCmd::Flush(Some(self.topic), tx));
        rx.await.unwrap_or(false)
    }

    /// Changes this session's roles and refreshes the topic.
    pub async fn refresh(&self, opts: JoinOptions) -> bool {
        let Some(id) = self.id else { return false };
        let (tx, rx) = oneshot::channel();
        let _ = self.cmds.send(SCmd::Refresh(id, opts, tx));
        rx.await.unwrap_or(false)
    }

    /// Leaves this session (the topic too, if it was the last).
    pub fn leave(mut self) {
        if let Some(id) = self.id.take() {
            let _ = self.cmds.send(SCmd::LeaveSession(id));
        }
    }
}

fn random32() -> std::io::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(b)
}

impl Swarm {
    /// Starts a DHT node with `opts.dht` and a swarm on it.
    pub async fn new(opts: SwarmOptions) -> Result<Swarm, DhtError> {
        let dht = Arc::new(Dht::spawn(opts.dht.clone()).await?);
        Swarm::with_dht(dht, opts)
    }

    /// A swarm on a running DHT node (shared with other users of the node).
    pub fn with_dht(dht: Arc<Dht>, opts: SwarmOptions) -> Result<Swarm, DhtError> {
        let key_pair = match opts.key_pair {
            Some(k) => k,
            None => KeyPair::from_seed(&random32()?),
        };
        let mut config = SwarmConfig::new(key_pair.clone());
        config.max_peers = opts.max_peers;
        config.max_parallel = opts.max_parallel;
        config.max_client_connections = opts.max_client_connections;
        config.firewall = opts.firewall;
        let engine = Engine::new(config, random32()?);
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let (out, incoming) = mpsc::unbounded_channel();
        let (reports, report_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            engine,
            dht: dht.clone(),
            key_pair: key_pair.clone(),
            epoch: Instant::now(),
            cmds: cmds.downgrade(),
            out,
            reports,
            server: None,
            queries: HashMap::new(),
            connects: HashMap::new(),
            held: HashMap::new(),
            handles: HashMap::new(),
            flushes: HashMap::new(),
            unannouncing: 0,
        };
        let task = tokio::spawn(driver.run(cmd_rx, report_rx));
        Ok(Swarm {
            cmds,
            incoming,
            key_pair,
            dht,
            task: Some(task),
        })
    }

    /// Our key pair.
    pub fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }

    /// The DHT node underneath.
    pub fn dht(&self) -> &Arc<Dht> {
        &self.dht
    }

    /// Joins a topic as server and/or client (JS `swarm.join`).
    pub async fn join(&self, topic: [u8; 32], opts: JoinOptions) -> Discovery {
        let (tx, rx) = oneshot::channel();
        let _ = self.cmds.send(SCmd::Join(topic, opts, tx));
        Discovery {
            id: rx.await.ok().flatten(),
            topic,
            cmds: self.cmds.clone(),
        }
    }

    /// Leaves a topic, every session of it, unannouncing it (JS `swarm.leave`).
    pub async fn leave(&self, topic: [u8; 32]) {
        let (tx, rx) = oneshot::channel();
        let _ = self.cmds.send(SCmd::Leave(topic, tx));
        let _ = rx.await;
    }

    /// Connects to a peer by key and keeps reconnecting (JS `joinPeer`).
    pub fn join_peer(&self, public_key: [u8; 32]) {
        let _ = self.cmds.send(SCmd::JoinPeer(public_key));
    }

    /// Stops reconnecting to a peer (JS `leavePeer`).
    pub fn leave_peer(&self, public_key: [u8; 32]) {
        let _ = self.cmds.send(SCmd::LeavePeer(public_key));
    }

    /// Waits until every topic's refresh finished and every peer found was tried (JS
    /// `swarm.flush()`); false if the swarm stopped first.
    pub async fn flush(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        let _ = self.cmds.send(SCmd::Flush(None, tx));
        rx.await.unwrap_or(false)
    }

    /// The next connection (dialed or accepted); `None` once the swarm stopped.
    ///
    /// Start each connection as it comes (spawn its replication or message pump) before
    /// waiting for the next: a connection this swarm dialed reaches the peer's `accept` only
    /// once its first bytes (the secret-stream header, sent when it is started) arrive there,
    /// as hyperdht's server hands a socket out on the client's first packet. Two swarms that
    /// each wait for the other's connection before starting their own wait forever.
    pub async fn accept(&mut self) -> Option<SwarmConnection> {
        self.incoming.recv().await
    }

    /// What the swarm knows about its peers.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        let (tx, rx) = oneshot::channel();
        let _ = self.cmds.send(SCmd::Peers(tx));
        rx.await.unwrap_or_default()
    }

    /// A topic's state (JS `swarm.status(topic)`).
    pub async fn status(&self, topic: [u8; 32]) -> Option<TopicStatus> {
        let (tx, rx) = oneshot::channel();
        let _ = self.cmds.send(SCmd::Status(topic, tx));
        rx.await.ok().flatten()
    }

    /// Counters, and the connections handed out and still open.
    pub async fn stats(&self) -> (Stats, usize) {
        let (tx, rx) = oneshot::channel();
        let _ = self.cmds.send(SCmd::Stats(tx));
        rx.await.unwrap_or_default()
    }

    /// Leaves every topic (waiting up to 10 s for the unannouncements), closes the server and
    /// stops (JS `swarm.destroy()`; the DHT node stops too unless shared).
    pub async fn destroy(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(SCmd::Destroy(tx)).is_ok() {
            let _ = rx.await;
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

struct Driver {
    engine: Engine,
    dht: Arc<Dht>,
    key_pair: KeyPair,
    epoch: Instant,
    cmds: mpsc::WeakUnboundedSender<SCmd>,
    out: mpsc::UnboundedSender<SwarmConnection>,
    reports: mpsc::UnboundedSender<Report>,
    server: Option<Server>,
    queries: HashMap<QueryId, JoinHandle<()>>,
    connects: HashMap<ConnectionId, JoinHandle<()>>,
    /// Connections the engine has not handed out (yet): server connections held while a
    /// duplicate closes.
    held: HashMap<ConnectionId, RawConnection>,
    /// Every open connection's stream, for duplicate checks and destroying.
    handles: HashMap<ConnectionId, StreamHandle>,
    flushes: HashMap<FlushId, oneshot::Sender<bool>>,
    unannouncing: usize,
}

impl Driver {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<SCmd>,
        mut reports: mpsc::UnboundedReceiver<Report>,
    ) {
        loop {
            self.process().await;
            let deadline = self
                .engine
                .poll_timeout()
                .map(|t| self.epoch + t)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                c = cmds.recv() => match c {
                    Some(SCmd::Destroy(done)) => {
                        self.destroy(&mut reports).await;
                        let _ = done.send(());
                        return;
                    }
                    Some(c) => self.command(c),
                    None => return,
                },
                r = reports.recv() => {
                    if let Some(r) = r {
                        self.report(r);
                    }
                }
                raw = accept(self.server.as_mut()) => match raw {
                    Some(raw) => self.incoming(raw),
                    None => self.server = None,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.now();
                    self.engine.handle_timeout(now);
                }
            }
        }
    }

    fn is_active(
        handles: &HashMap<ConnectionId, StreamHandle>,
    ) -> impl Fn(ConnectionId) -> bool + '_ {
        move |id| {
            handles
                .get(&id)
                .is_some_and(|h| h.bytes_read() > 0 && h.bytes_written() > 0)
        }
    }

    fn command(&mut self, c: SCmd) {
        let now = self.now();
        match c {
            SCmd::Join(topic, opts, tx) => {
                let _ = tx.send(self.engine.join(now, topic, opts));
            }
            SCmd::Refresh(id, opts, tx) => {
                let _ = tx.send(self.engine.refresh_session(now, id, opts));
            }
            SCmd::LeaveSession(id) => self.engine.leave_session(now, id),
            SCmd::Leave(topic, tx) => {
                self.engine.leave(now, topic);
                let _ = tx.send(());
            }
            SCmd::JoinPeer(k) => self.engine.join_peer(now, k),
            SCmd::LeavePeer(k) => self.engine.leave_peer(&k),
            SCmd::Flush(topic, tx) => {
                let id = match topic {
                    Some(t) => self.engine.flush_topic(now, t),
                    None => self.engine.flush(now),
                };
                self.flushes.insert(id, tx);
            }
            SCmd::Peers(tx) => {
                let _ = tx.send(self.engine.peers().cloned().collect());
            }
            SCmd::Status(t, tx) => {
                let _ = tx.send(self.engine.status(&t));
            }
            SCmd::Stats(tx) => {
                let _ = tx.send((self.engine.stats(), self.engine.connections().count()));
            }
            SCmd::Closed(id) => self.closed(id),
            SCmd::Destroy(_) => {}
        }
    }

    fn closed(&mut self, id: ConnectionId) {
        self.held.remove(&id);
        if self.handles.remove(&id).is_some() {
            let now = self.now();
            self.engine
                .handle_closed(now, id, &Self::is_active(&self.handles));
        }
    }

    fn report(&mut self, r: Report) {
        let now = self.now();
        match r {
            Report::Listening(Ok(server)) => {
                self.server = Some(server);
                self.engine.handle_listening(now);
            }
            // The engine has no failure path for listening (JS rejects its refreshes):
            // announcing topics wait; connections out still work.
            Report::Listening(Err(_)) => {}
            Report::QueryPeers(q, peers) => self.engine.handle_query_peers(now, q, &peers),
            Report::QueryDone(q, result) => {
                self.queries.remove(&q);
                self.engine.handle_query_done(now, q, result);
            }
            Report::Connected(id, result) => {
                self.connects.remove(&id);
                match result {
                    Ok(raw) => {
                        let raw = *raw;
                        self.handles.insert(id, raw.stream_handle());
                        if self.engine.handle_connected(now, id) {
                            self.held.insert(id, raw);
                        } else {
                            raw.destroy();
                            self.closed(id);
                        }
                    }
                    Err(_) => {
                        // Failed attempts have no stream: report their end directly.
                        self.engine
                            .handle_closed(now, id, &Self::is_active(&self.handles));
                    }
                }
            }
            Report::Unannounced => self.unannouncing -= 1,
        }
    }

    fn incoming(&mut self, raw: RawConnection) {
        let now = self.now();
        let key = raw.remote_public_key();
        let handle = raw.stream_handle();
        let id = self
            .engine
            .handle_server_connection(now, key, &Self::is_active(&self.handles));
        self.handles.insert(id, handle);
        self.held.insert(id, raw);
    }

    /// Carries out the engine's actions and hands its connections out, until nothing moves.
    async fn process(&mut self) {
        loop {
            let mut progress = false;
            while let Some(a) = self.engine.poll_action() {
                progress = true;
                self.action(a).await;
            }
            while let Some(e) = self.engine.poll_event() {
                progress = true;
                self.event(e);
            }
            if !progress {
                return;
            }
        }
    }

    async fn action(&mut self, a: Action) {
        match a {
            Action::Listen => {
                let dht = self.dht.clone();
                let kp = self.key_pair.clone();
                let fw = self.engine.firewall();
                let reports = self.reports.clone();
                tokio::spawn(async move {
                    let opts = ServerOptions {
                        firewall: Some(Box::new(move |pk, _payload, _from| fw.refuses(pk))),
                        ..ServerOptions::default()
                    };
                    let _ = reports.send(Report::Listening(dht.listen(kp, opts).await));
                });
            }
            Action::Query {
                id,
                topic,
                kind,
                nodes,
            } => {
                let relays = match (&self.server, kind) {
                    (Some(s), QueryKind::Announce { .. }) => s.relay_addresses().await,
                    _ => Vec::new(),
                };
                let mut lookup = match kind {
                    QueryKind::Announce { clear } => self.dht.announce_lookup(
                        topic,
                        &self.key_pair,
                        relays,
                        AnnounceOptions {
                            clear,
                            nodes,
                            ..AnnounceOptions::default()
                        },
                    ),
                    QueryKind::Lookup => self.dht.lookup(topic),
                    QueryKind::LookupAndUnannounce => {
                        self.dht.lookup_and_unannounce(topic, &self.key_pair)
                    }
                };
                let reports = self.reports.clone();
                let task = tokio::spawn(async move {
                    while let Some(reply) = lookup.next().await {
                        if !reply.peers.is_empty() {
                            let _ = reports.send(Report::QueryPeers(id, reply.peers));
                        }
                    }
                    let result = match lookup.result() {
                        Some(Ok(nodes)) => Ok(nodes),
                        _ => Err(()),
                    };
                    let _ = reports.send(Report::QueryDone(id, result));
                });
                self.queries.insert(id, task);
            }
            Action::CancelQuery(id) => {
                if let Some(t) = self.queries.remove(&id) {
                    t.abort();
                }
            }
            Action::Unannounce { topic, .. } => {
                let dht = self.dht.clone();
                let kp = self.key_pair.clone();
                let reports = self.reports.clone();
                self.unannouncing += 1;
                tokio::spawn(async move {
                    let _ = dht.unannounce(topic, &kp).await;
                    let _ = reports.send(Report::Unannounced);
                });
            }
            Action::Connect {
                id,
                public_key,
                relay_addresses,
            } => {
                let dht = self.dht.clone();
                let kp = self.key_pair.clone();
                let reports = self.reports.clone();
                let task = tokio::spawn(async move {
                    let opts = ConnectOptions {
                        relay_addresses,
                        ..ConnectOptions::default()
                    };
                    let r = dht.connect_raw(public_key, kp, opts).await;
                    let _ = reports.send(Report::Connected(id, r.map(Box::new)));
                });
                self.connects.insert(id, task);
            }
            Action::Destroy(id) => {
                if let Some(t) = self.connects.remove(&id) {
                    // An attempt: dropping its future cancels it in the DHT node.
                    t.abort();
                    let now = self.now();
                    self.engine
                        .handle_closed(now, id, &Self::is_active(&self.handles));
                    return;
                }
                if let Some(h) = self.handles.get(&id) {
                    h.destroy();
                }
                self.held.remove(&id);
                self.closed(id);
            }
            // The secret stream sends its own keep-alives (every 5 s of silence).
            Action::KeepAlive(_) => {}
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Connection {
                id, client, topics, ..
            } => {
                let Some(mut raw) = self.held.remove(&id) else {
                    return;
                };
                if let Some(cmds) = self.cmds.upgrade() {
                    raw.attach(CloseGuard { id, cmds });
                }
                let conn = SwarmConnection {
                    raw,
                    client,
                    topics,
                };
                if let Err(e) = self.out.send(conn) {
                    // Nobody takes connections any more: the guard reports the close.
                    drop(e);
                }
            }
            Event::Flushed { id, ok } => {
                if let Some(tx) = self.flushes.remove(&id) {
                    let _ = tx.send(ok);
                }
            }
            Event::Ban { .. } | Event::Refreshed { .. } => {}
        }
    }

    async fn destroy(&mut self, reports: &mut mpsc::UnboundedReceiver<Report>) {
        let now = self.now();
        self.engine.destroy(now);
        self.process().await;
        for (_, t) in self.queries.drain() {
            t.abort();
        }
        for (_, t) in self.connects.drain() {
            t.abort();
        }
        let until = Instant::now() + Duration::from_secs(10);
        while self.unannouncing > 0 {
            match tokio::time::timeout_at(until, reports.recv()).await {
                Ok(Some(Report::Unannounced)) => self.unannouncing -= 1,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        self.server = None;
        for (_, raw) in self.held.drain() {
            raw.destroy();
        }
        for (_, tx) in self.flushes.drain() {
            let _ = tx.send(false);
        }
    }
}

async fn accept(server: Option<&mut Server>) -> Option<RawConnection> {
    match server {
        Some(s) => s.accept_raw().await,
        None => std::future::pending().await,
    }
}
