//! A hyperswarm peer for the simulated network ([`crate::netsim`]): a [`HyperDht`], a
//! [`Connector`] and a [`Swarm`] engine behind one host, the swarm's actions carried out on
//! the two DHT engines as the native driver does with their async API. Without a swarm it is a
//! plain DHT node (the testnet's nodes).
//!
//! Streams are not simulated byte by byte: an established connection is a pair of UDX stream
//! ids. The dialing side sends a first UDX packet on it (what lets the server's raw stream
//! accept the path, as in hyperdht), the accepting side answers with one (so both have read
//! and written: the stream is "active" for the duplicate check), and destroying a connection
//! sends a UDX DESTROY packet that closes the other end. These packets go out three times each
//! (UDX would retransmit them).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::dht::connect::{
    Action as ConnAction, ConnId, ConnectEvent, ConnectOptions, Connector, Established, ServerId,
    ServerOptions,
};
use hyperpunch_core::dht::rpc::SocketId;
use hyperpunch_core::dht::{AnnounceOptions, DhtConfig, Event, HyperDht, OpId, OpOutput};
use hyperpunch_core::swarm::{
    Action, ConnectionId, Event as SwarmEvent, QueryId, QueryKind, Swarm, SwarmConfig,
};

use crate::netsim::{Host, Outgoing, SimRng};

/// UDX packet flag: DESTROY.
const DESTROY: u8 = 16;
/// Copies of each stream packet sent.
const COPIES: usize = 3;

/// An open connection of the simulated swarm.
#[derive(Debug, Clone)]
pub struct SimConn {
    /// How it runs.
    pub established: Established,
    /// The peer's key.
    pub remote: [u8; 32],
    /// Read a packet on it.
    pub read: bool,
    /// Wrote a packet on it.
    pub written: bool,
}

/// A DHT node, optionally with a swarm.
pub struct SwarmHost {
    /// The DHT engine.
    pub dht: HyperDht,
    /// Connections by public key.
    pub connector: Connector,
    /// The swarm, if this host runs one.
    pub swarm: Option<Swarm>,
    ip: Ipv4Addr,
    ports: BTreeMap<SocketId, u16>,
    next_port: u16,
    outbox: VecDeque<Outgoing>,
    ops: HashMap<OpId, QueryId>,
    attempts: HashMap<ConnId, ConnectionId>,
    server: Option<ServerId>,
    /// Open connections (handed out or held by the swarm).
    pub conns: BTreeMap<ConnectionId, SimConn>,
    /// The swarm's events so far.
    pub events: Vec<SwarmEvent>,
}

impl SwarmHost {
    /// A node at `ip` (server socket on `port`, client socket on `port + 1`), seeded from `rng`.
    pub fn new(
        mut config: DhtConfig,
        ip: Ipv4Addr,
        port: u16,
        now: Duration,
        rng: &mut SimRng,
    ) -> Self {
        config.rpc.server_port = port;
        let dht = HyperDht::new(config, now, rng.bytes32());
        let mut ports = BTreeMap::new();
        ports.insert(SocketId::SERVER, port);
        ports.insert(SocketId::CLIENT, port + 1);
        SwarmHost {
            dht,
            connector: Connector::new(),
            swarm: None,
            ip,
            ports,
            next_port: 40_000,
            outbox: VecDeque::new(),
            ops: HashMap::new(),
            attempts: HashMap::new(),
            server: None,
            conns: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// This host with a swarm of `key_pair`.
    pub fn with_swarm(mut self, key_pair: KeyPair, rng: &mut SimRng) -> Self {
        self.swarm = Some(Swarm::new(SwarmConfig::new(key_pair), rng.bytes32()));
        self
    }

    /// The swarm (panics on a plain node).
    pub fn swarm(&mut self) -> &mut Swarm {
        self.swarm.as_mut().expect("a swarm host")
    }

    fn local(&self, socket: SocketId) -> Option<SocketAddrV4> {
        self.ports
            .get(&socket)
            .map(|p| SocketAddrV4::new(self.ip, *p))
    }

    fn send(&mut self, socket: SocketId, to: SocketAddrV4, bytes: Vec<u8>) {
        if let Some(from) = self.local(socket) {
            self.outbox.push_back(Outgoing { from, to, bytes });
        }
    }

    /// A UDX packet for the peer's stream `remote_id`.
    fn stream_packet(&mut self, est: &Established, flags: u8) {
        let mut pkt = vec![0xff, 1, flags, 0];
        pkt.extend_from_slice(&est.remote_id.to_le_bytes());
        pkt.extend_from_slice(&[0; 12]);
        for _ in 0..COPIES {
            self.send(est.socket, est.remote, pkt.clone());
        }
    }

    fn is_active(conns: &BTreeMap<ConnectionId, SimConn>) -> impl Fn(ConnectionId) -> bool + '_ {
        |id| conns.get(&id).is_some_and(|c| c.read && c.written)
    }

    fn udx_packet(&mut self, now: Duration, socket: SocketId, from: SocketAddrV4, bytes: &[u8]) {
        let id = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let open = self
            .conns
            .iter()
            .find(|(_, c)| c.established.local_id == id)
            .map(|(k, _)| *k);
        if let Some(cid) = open {
            if bytes[2] & DESTROY != 0 {
                self.conns.remove(&cid);
                let conns = &self.conns;
                if let Some(s) = self.swarm.as_mut() {
                    s.handle_closed(now, cid, &Self::is_active(conns));
                }
            } else if let Some(c) = self.conns.get_mut(&cid) {
                c.read = true;
            }
            return;
        }
        self.connector
            .handle_udx_firewall(now, &mut self.dht, socket, from, id);
    }

    fn swarm_action(&mut self, now: Duration, a: Action) {
        let Some(swarm) = self.swarm.as_ref() else {
            return;
        };
        let kp = swarm.key_pair().clone();
        match a {
            Action::Listen => {
                let fw = swarm.firewall();
                let opts = ServerOptions {
                    firewall: Some(Box::new(move |pk, _payload, _from| fw.refuses(pk))),
                    ..ServerOptions::default()
                };
                self.server = Some(self.connector.listen(now, &mut self.dht, kp, opts));
            }
            Action::Query {
                id,
                topic,
                kind,
                nodes,
            } => {
                let op = match kind {
                    QueryKind::Announce { clear } => {
                        let relays = self
                            .server
                            .map(|s| self.connector.server_relays(s))
                            .unwrap_or_default();
                        let opts = AnnounceOptions {
                            clear,
                            nodes,
                            ..AnnounceOptions::default()
                        };
                        self.dht.announce(now, topic, &kp, relays, opts)
                    }
                    QueryKind::Lookup => self.dht.lookup(now, topic),
                    QueryKind::LookupAndUnannounce => self.dht.unannounce(now, topic, &kp),
                };
                match op {
                    Ok(op) => {
                        self.ops.insert(op, id);
                    }
                    Err(_) => self.swarm().handle_query_done(now, id, Err(())),
                }
            }
            Action::CancelQuery(id) => {
                if let Some(op) = self.ops.iter().find(|(_, q)| **q == id).map(|(o, _)| *o) {
                    self.ops.remove(&op);
                    self.dht.cancel(op);
                }
            }
            Action::Unannounce { topic, .. } => {
                let _ = self.dht.unannounce(now, topic, &kp);
            }
            Action::Connect {
                id,
                public_key,
                relay_addresses,
            } => {
                let opts = ConnectOptions {
                    relay_addresses,
                    ..ConnectOptions::default()
                };
                let c = self
                    .connector
                    .connect(now, &mut self.dht, public_key, kp, opts);
                self.attempts.insert(c, id);
            }
            Action::Destroy(id) => {
                if let Some(c) = self
                    .attempts
                    .iter()
                    .find(|(_, v)| **v == id)
                    .map(|(c, _)| *c)
                {
                    self.attempts.remove(&c);
                    self.connector.cancel(now, &mut self.dht, c);
                } else if let Some(c) = self.conns.remove(&id) {
                    self.stream_packet(&c.established, DESTROY);
                }
                let conns = &self.conns;
                if let Some(s) = self.swarm.as_mut() {
                    s.handle_closed(now, id, &Self::is_active(conns));
                }
            }
            Action::KeepAlive(_) => {}
        }
    }

    fn connect_event(&mut self, now: Duration, ev: ConnectEvent) {
        match ev {
            ConnectEvent::Listening { .. } => {
                if let Some(s) = self.swarm.as_mut() {
                    s.handle_listening(now);
                }
            }
            ConnectEvent::Connected { conn, established } => {
                let Some(id) = self.attempts.remove(&conn) else {
                    return;
                };
                let remote = established.remote_public_key;
                if self.swarm().handle_connected(now, id) {
                    self.stream_packet(&established, 0);
                    self.conns.insert(
                        id,
                        SimConn {
                            established,
                            remote,
                            read: false,
                            written: true,
                        },
                    );
                } else {
                    self.stream_packet(&established, DESTROY);
                    let conns = &self.conns;
                    if let Some(s) = self.swarm.as_mut() {
                        s.handle_closed(now, id, &Self::is_active(conns));
                    }
                }
            }
            ConnectEvent::ConnectFailed { conn, .. } => {
                if let Some(id) = self.attempts.remove(&conn) {
                    let conns = &self.conns;
                    if let Some(s) = self.swarm.as_mut() {
                        s.handle_closed(now, id, &Self::is_active(conns));
                    }
                }
            }
            ConnectEvent::Incoming {
                remote_public_key,
                established,
                ..
            } => {
                if self.swarm.is_none() {
                    return;
                }
                // The client's first packet arrived (it let the stream in); we answer.
                self.stream_packet(&established, 0);
                let conns = &self.conns;
                let swarm = self.swarm.as_mut().expect("checked");
                let id =
                    swarm.handle_server_connection(now, remote_public_key, &Self::is_active(conns));
                self.conns.insert(
                    id,
                    SimConn {
                        established,
                        remote: remote_public_key,
                        read: true,
                        written: true,
                    },
                );
            }
            // No relays in these simulations.
            ConnectEvent::RelayPairing { pairing, .. } => {
                self.connector.relay_failed(now, &mut self.dht, pairing);
            }
            // Every connection here runs its own handshake; no relays, so nothing upgrades.
            ConnectEvent::ExternalNoise { .. }
            | ConnectEvent::ServerNoise { .. }
            | ConnectEvent::ServerSign { .. }
            | ConnectEvent::Upgrade { .. } => {}
        }
    }

    /// Runs every engine until nothing moves.
    fn settle_at(&mut self, now: Duration) {
        loop {
            let mut progress = false;
            while let Some(a) = self.connector.poll_action() {
                progress = true;
                match a {
                    ConnAction::OpenSocket(s) => {
                        self.next_port += 1;
                        self.ports.insert(s, self.next_port);
                    }
                    ConnAction::ReleaseSocket(_) => {}
                    ConnAction::Probe { socket, to, ttl } => {
                        // A low TTL dies before the peer's NAT (JS's first punch round).
                        if ttl == 0 || ttl >= 10 {
                            self.send(socket, to, vec![0]);
                        }
                    }
                }
            }
            while let Some(t) = self.dht.poll_transmit() {
                progress = true;
                if t.ttl == 0 || t.ttl >= 10 {
                    self.send(t.socket, t.to, t.bytes);
                }
            }
            while let Some(e) = self.dht.poll_event() {
                progress = true;
                let Some(e) = self.connector.handle_dht_event(now, &mut self.dht, e) else {
                    continue;
                };
                match e {
                    Event::Lookup { op, reply } => {
                        if let Some(q) = self.ops.get(&op).copied() {
                            self.swarm().handle_query_peers(now, q, &reply.peers);
                        }
                    }
                    Event::OpDone { op, result } => {
                        if let Some(q) = self.ops.remove(&op) {
                            let r = match result {
                                Ok(
                                    OpOutput::Lookup { closest_nodes }
                                    | OpOutput::Announce { closest_nodes },
                                ) => Ok(closest_nodes),
                                Ok(_) => Ok(Vec::new()),
                                Err(_) => Err(()),
                            };
                            self.swarm().handle_query_done(now, q, r);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(ev) = self.connector.poll_event() {
                progress = true;
                self.connect_event(now, ev);
            }
            while let Some(a) = self.swarm.as_mut().and_then(Swarm::poll_action) {
                progress = true;
                self.swarm_action(now, a);
            }
            while let Some(e) = self.swarm.as_mut().and_then(Swarm::poll_event) {
                progress = true;
                self.events.push(e);
            }
            if !progress {
                return;
            }
        }
    }

    /// The open connections the swarm handed out (its view).
    pub fn handed_out(&self) -> Vec<(ConnectionId, [u8; 32])> {
        self.swarm
            .as_ref()
            .map(|s| s.connections().collect())
            .unwrap_or_default()
    }

    /// Joins-and-runs helper: run `f` on the swarm, then settle at `now`.
    pub fn with_swarm_at<R>(&mut self, now: Duration, f: impl FnOnce(&mut Swarm) -> R) -> R {
        let r = f(self.swarm());
        self.settle_at(now);
        r
    }
}

impl Host for SwarmHost {
    fn sockets(&self) -> Vec<SocketAddrV4> {
        self.ports
            .values()
            .map(|p| SocketAddrV4::new(self.ip, *p))
            .collect()
    }

    fn receive(&mut self, now: Duration, local: SocketAddrV4, from: SocketAddrV4, bytes: &[u8]) {
        let Some(socket) = self
            .ports
            .iter()
            .find(|(_, p)| **p == local.port())
            .map(|(s, _)| *s)
        else {
            return;
        };
        if bytes.len() == 1 {
            self.connector
                .handle_probe(now, &mut self.dht, socket, from);
        } else if bytes.len() >= 20 && bytes[0] == 0xff && bytes[1] == 1 {
            self.udx_packet(now, socket, from, bytes);
        } else {
            let _ = self
                .dht
                .handle_datagram(now, socket, SocketAddr::V4(from), bytes);
        }
        self.settle_at(now);
    }

    fn timeout(&mut self, now: Duration) {
        if self.dht.poll_timeout().is_some_and(|t| t <= now) {
            self.dht.handle_timeout(now);
        }
        if self.connector.poll_timeout().is_some_and(|t| t <= now) {
            self.connector.handle_timeout(now, &mut self.dht);
        }
        if let Some(s) = self.swarm.as_mut() {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        self.settle_at(now);
    }

    fn deadline(&mut self) -> Option<Duration> {
        let s = self.swarm.as_ref().and_then(Swarm::poll_timeout);
        [self.dht.poll_timeout(), self.connector.poll_timeout(), s]
            .into_iter()
            .flatten()
            .min()
    }

    fn transmit(&mut self) -> Option<Outgoing> {
        self.outbox.pop_front()
    }
}
