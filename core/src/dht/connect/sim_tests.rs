//! End-to-end connects over a simulated network: HyperDht nodes as relays (record store and
//! router), a server and a client each with a [`Connector`],
//! optionally behind NATs, on virtual time.
//!
//! (Over 1,000 lines: test scenarios only, each a whole simulated network and its asserts.)

use super::*;
use crate::dht::holepunch::puncher::sim_tests::{Kind, NatBox};
use crate::dht::rpc::Config;
use crate::dht::{DhtConfig, HyperDht};
use core::net::{Ipv4Addr, SocketAddr};
use std::collections::BTreeMap;

const DELAY: Duration = Duration::from_millis(3);

struct Host {
    dht: HyperDht,
    conn: Connector,
    ip: Ipv4Addr,
    ports: BTreeMap<SocketId, u16>,
    nat: Option<NatBox>,
    events: Vec<ConnectEvent>,
}

struct Sim {
    hosts: Vec<Host>,
    now: Duration,
    inflight: Vec<(Duration, u64, SocketAddrV4, SocketAddrV4, Vec<u8>)>,
    seq: u64,
    next_port: u16,
    seed: u64,
    /// Hosts whose DHT messages the network delivers twice (a retransmitted request, or a
    /// duplicating link).
    dup_from: Vec<usize>,
}

impl Sim {
    /// A network whose node and NAT randomness derives from `seed`.
    fn seeded(seed: u64) -> Self {
        Sim {
            hosts: Vec::new(),
            now: Duration::from_secs(1000),
            inflight: Vec::new(),
            seq: 0,
            next_port: 30000,
            seed,
            dup_from: Vec::new(),
        }
    }

    fn add(
        &mut self,
        ip: Ipv4Addr,
        port: u16,
        config: Config,
        nat: Option<Kind>,
        _relay: bool,
    ) -> usize {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&ip.octets());
        seed[4] = self.hosts.len() as u8;
        seed[8..16].copy_from_slice(&self.seed.to_le_bytes());
        let dht = HyperDht::new(
            DhtConfig {
                rpc: Config {
                    server_port: port,
                    ..config
                },
                ..DhtConfig::default()
            },
            self.now,
            seed,
        );
        let mut ports = BTreeMap::new();
        ports.insert(SocketId::SERVER, port);
        ports.insert(SocketId::CLIENT, port + 1);
        let nat =
            nat.map(|k| NatBox::new(ip, k, self.hosts.len() as u64 * 7 + 1 + self.seed * 1000));
        self.hosts.push(Host {
            dht,
            conn: Connector::new(),
            ip,
            ports,
            nat,
            events: Vec::new(),
        });
        let i = self.hosts.len() - 1;
        self.flush(i);
        i
    }

    /// A peer (not a DHT node) at `ip:port` behind `nat` (None: public), bootstrapping from
    /// the testnet's [`BOOT`].
    fn add_peer(&mut self, ip: Ipv4Addr, port: u16, nat: Option<Kind>) -> usize {
        let config = Config {
            bootstrap: vec![BOOT],
            ..Config::default()
        };
        self.add(ip, port, config, nat, false)
    }

    /// Host `h` listens as `key_pair` with `opts`; then 3 s pass.
    fn listen(&mut self, h: usize, key_pair: &KeyPair, opts: ServerOptions) {
        let now = self.now;
        let host = &mut self.hosts[h];
        host.conn.listen(now, &mut host.dht, key_pair.clone(), opts);
        self.flush(h);
        self.run_for(Duration::from_secs(3));
    }

    /// Host `h` connects to `server` as `key_pair` with `opts`.
    fn connect(
        &mut self,
        h: usize,
        server: [u8; 32],
        key_pair: KeyPair,
        opts: ConnectOptions,
    ) -> ConnId {
        let now = self.now;
        let host = &mut self.hosts[h];
        let id = host
            .conn
            .connect(now, &mut host.dht, server, key_pair, opts);
        self.flush(h);
        id
    }

    /// The first packet of `est`'s UDX stream, sent by host `h` (the other side's raw stream
    /// takes it); then 50 ms pass.
    fn first_packet(&mut self, h: usize, est: &Established) {
        let mut pkt = vec![0xff, 1, 0, 0];
        pkt.extend_from_slice(&est.remote_id.to_le_bytes());
        pkt.extend_from_slice(&[0; 12]);
        self.send(h, est.socket, est.remote, pkt, 0);
        self.run_for(Duration::from_millis(50));
    }

    fn public_src(&mut self, h: usize, socket: SocketId, to: SocketAddrV4) -> SocketAddrV4 {
        let host = &mut self.hosts[h];
        let port = host.ports[&socket];
        match host.nat.as_mut() {
            Some(n) => n.send(socket.0, to),
            None => SocketAddrV4::new(host.ip, port),
        }
    }

    fn send(&mut self, h: usize, socket: SocketId, to: SocketAddrV4, bytes: Vec<u8>, ttl: u8) {
        if !self.hosts[h].ports.contains_key(&socket) {
            return;
        }
        let from = self.public_src(h, socket, to);
        if ttl != 0 && ttl < 10 {
            return;
        }
        self.seq += 1;
        if self.dup_from.contains(&h) && bytes.len() > 1 && bytes[0] != 0xff {
            self.inflight
                .push((self.now + DELAY * 2, self.seq, from, to, bytes.clone()));
            self.seq += 1;
        }
        self.inflight
            .push((self.now + DELAY, self.seq, from, to, bytes));
    }

    fn flush(&mut self, h: usize) {
        loop {
            let mut progress = false;
            while let Some(a) = self.hosts[h].conn.poll_action() {
                progress = true;
                match a {
                    Action::OpenSocket(s) => {
                        self.next_port += 1;
                        let p = self.next_port;
                        self.hosts[h].ports.insert(s, p);
                    }
                    Action::ReleaseSocket(_) => {}
                    Action::Probe { socket, to, ttl } => self.send(h, socket, to, vec![0], ttl),
                }
            }
            while let Some(t) = self.hosts[h].dht.poll_transmit() {
                progress = true;
                self.send(h, t.socket, t.to, t.bytes, t.ttl);
            }
            while let Some(e) = self.hosts[h].dht.poll_event() {
                progress = true;
                let now = self.now;
                let host = &mut self.hosts[h];
                let _ = host.conn.handle_dht_event(now, &mut host.dht, e);
            }
            while let Some(e) = self.hosts[h].conn.poll_event() {
                progress = true;
                self.hosts[h].events.push(e);
            }
            if !progress {
                return;
            }
        }
    }

    fn deliver(&mut self, from: SocketAddrV4, to: SocketAddrV4, bytes: Vec<u8>) {
        let Some(h) = self.hosts.iter().position(|x| x.ip == *to.ip()) else {
            return;
        };
        let socket = match self.hosts[h].nat.as_ref() {
            Some(n) => match n.recv(to.port(), from) {
                Some(s) => SocketId(s),
                None => return,
            },
            None => match self.hosts[h].ports.iter().find(|(_, p)| **p == to.port()) {
                Some((s, _)) => *s,
                None => return,
            },
        };
        let now = self.now;
        let host = &mut self.hosts[h];
        if bytes.len() == 1 {
            host.conn.handle_probe(now, &mut host.dht, socket, from);
        } else if bytes[0] == 0xff {
            let id = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
            host.conn
                .handle_udx_firewall(now, &mut host.dht, socket, from, id);
        } else {
            let _ = host
                .dht
                .handle_datagram(now, socket, SocketAddr::V4(from), &bytes);
        }
        self.flush(h);
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            self.inflight.sort_by_key(|p| (p.0, p.1));
            let next_packet = self.inflight.first().map(|p| p.0);
            let next_timer = self
                .hosts
                .iter_mut()
                .flat_map(|h| [h.dht.poll_timeout(), h.conn.poll_timeout()])
                .flatten()
                .min();
            let next = [next_packet, next_timer]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(until);
            if next > until {
                self.now = until;
                return;
            }
            self.now = next.max(self.now);
            if next_packet == Some(next) {
                let (_, _, from, to, bytes) = self.inflight.remove(0);
                self.deliver(from, to, bytes);
            } else {
                for h in 0..self.hosts.len() {
                    let now = self.now;
                    let host = &mut self.hosts[h];
                    if host.dht.poll_timeout().is_some_and(|t| t <= now) {
                        host.dht.handle_timeout(now);
                    }
                    if host.conn.poll_timeout().is_some_and(|t| t <= now) {
                        host.conn.handle_timeout(now, &mut host.dht);
                    }
                    self.flush(h);
                }
            }
        }
    }
}

/// The bootstrap node of [`testnet`].
const BOOT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 49737);

/// A network (randomness from `seed`) with a settled DHT of `n` nodes, the first [`BOOT`]:
/// the setup of every scenario.
fn testnet(seed: u64, n: usize) -> Sim {
    let mut sim = Sim::seeded(seed);
    sim.add(
        *BOOT.ip(),
        BOOT.port(),
        Config::bootstrapper(BOOT),
        None,
        true,
    );
    for i in 1..n {
        let a = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1 + i as u8), 49737);
        let cfg = Config {
            bootstrap: vec![BOOT],
            ephemeral: Some(false),
            firewalled: false,
            ..Config::default()
        };
        sim.add(*a.ip(), a.port(), cfg, None, true);
        sim.run_for(Duration::from_millis(200));
    }
    sim.run_for(Duration::from_secs(5));
    sim
}

/// A server and a client (behind NATs of the given kinds) on a 6-node testnet, the server
/// listening; returns the sim, the server's and client's host indexes and the server's key.
fn listening(
    server_nat: Option<Kind>,
    client_nat: Option<Kind>,
    seed: u64,
) -> (Sim, usize, usize, KeyPair) {
    listening_with(
        server_nat,
        client_nat,
        seed,
        ServerOptions::default(),
        false,
    )
}

/// As [`listening`], the server with `opts`; with `dup_client` every DHT message of the client
/// arrives twice.
fn listening_with(
    server_nat: Option<Kind>,
    client_nat: Option<Kind>,
    seed: u64,
    opts: ServerOptions,
    dup_client: bool,
) -> (Sim, usize, usize, KeyPair) {
    let mut sim = testnet(seed, 6);
    let s = sim.add_peer(Ipv4Addr::new(20, 0, 0, 1), 5000, server_nat);
    let c = sim.add_peer(Ipv4Addr::new(30, 0, 0, 1), 6000, client_nat);
    if dup_client {
        sim.dup_from.push(c);
    }
    sim.run_for(Duration::from_secs(3));
    let server_kp = KeyPair::from_seed(&[1; 32]);
    sim.listen(s, &server_kp, opts);
    (sim, s, c, server_kp)
}

/// Server and client behind NATs of the given kinds (None: public but firewalled nodes).
fn connect(
    server_nat: Option<Kind>,
    client_nat: Option<Kind>,
) -> (Option<Established>, Option<Established>, Vec<ConnectEvent>) {
    connect_with(server_nat, client_nat, ServerOptions::default())
}

fn connect_with(
    server_nat: Option<Kind>,
    client_nat: Option<Kind>,
    opts: ServerOptions,
) -> (Option<Established>, Option<Established>, Vec<ConnectEvent>) {
    connect_seeded(server_nat, client_nat, opts, 0)
}

fn connect_seeded(
    server_nat: Option<Kind>,
    client_nat: Option<Kind>,
    opts: ServerOptions,
    seed: u64,
) -> (Option<Established>, Option<Established>, Vec<ConnectEvent>) {
    connect_dup(server_nat, client_nat, opts, seed, false, false)
}

/// As [`connect_seeded`]; with `dup_client` every DHT message of the client arrives twice.
fn connect_dup(
    server_nat: Option<Kind>,
    client_nat: Option<Kind>,
    opts: ServerOptions,
    seed: u64,
    dup_client: bool,
    external: bool,
) -> (Option<Established>, Option<Established>, Vec<ConnectEvent>) {
    let (mut sim, s, c, server_kp) = listening_with(server_nat, client_nat, seed, opts, dup_client);
    assert!(
        sim.hosts[s]
            .events
            .iter()
            .any(|e| matches!(e, ConnectEvent::Listening { .. })),
        "listening"
    );
    let now = sim.now;
    let client_kp = KeyPair::from_seed(&[2; 32]);
    {
        let h = &mut sim.hosts[c];
        if external {
            h.conn.connect_external(
                now,
                &mut h.dht,
                server_kp.public_key,
                ConnectOptions::default(),
            );
        } else {
            h.conn.connect(
                now,
                &mut h.dht,
                server_kp.public_key,
                client_kp.clone(),
                ConnectOptions::default(),
            );
        }
    }
    sim.flush(c);
    let mut client = None;
    // An external handshake: the test holds the key pair and runs the Noise steps.
    let mut noise: Option<crate::dht::noise_wrap::NoiseWrap> = None;
    let mut external_result = None;
    let mut seen = 0;
    for _ in 0..600 {
        let steps: Vec<ConnectEvent> = sim.hosts[c].events[seen..].to_vec();
        seen = sim.hosts[c].events.len();
        for e in steps {
            let ConnectEvent::ExternalNoise { conn, step } = e else {
                continue;
            };
            let now = sim.now;
            let h = &mut sim.hosts[c];
            match step {
                NoiseStep::Send(p) => {
                    let mut n = crate::dht::noise_wrap::NoiseWrap::initiator(
                        client_kp.clone(),
                        server_kp.public_key,
                        KeyPair::from_seed(&[3; 32]),
                    )
                    .unwrap();
                    let m = n.send(&p).unwrap();
                    noise = Some(n);
                    h.conn.external_sent(now, &mut h.dht, conn, Some(m));
                }
                NoiseStep::Recv(m) => {
                    let mut n = noise.take().expect("one reply decrypted");
                    let payload = n.recv(&m).unwrap();
                    let r = n.finish().unwrap();
                    let holepunch_secret = r.holepunch_secret;
                    external_result = Some(r);
                    h.conn.external_received(
                        now,
                        &mut h.dht,
                        conn,
                        Some(ExternalReceived {
                            payload,
                            holepunch_secret,
                        }),
                    );
                }
            }
            sim.flush(c);
        }
        sim.run_for(Duration::from_millis(100));
        if let Some(e) = sim.hosts[c].events.iter().find_map(|e| match e {
            ConnectEvent::Connected { established, .. } => Some(established.clone()),
            _ => None,
        }) {
            client = Some(e);
            break;
        }
        if sim.hosts[c]
            .events
            .iter()
            .any(|e| matches!(e, ConnectEvent::ConnectFailed { .. }))
        {
            break;
        }
    }
    if let Some(est) = client.as_mut() {
        if external {
            assert!(est.handshake.is_none(), "the connector never had the keys");
            est.handshake = external_result;
        }
    }
    let mut server = None;
    if let Some(est) = &client {
        // The client's UDX stream sends its first packet: the server's raw stream takes it.
        sim.first_packet(c, est);
        server = sim.hosts[s].events.iter().find_map(|e| match e {
            ConnectEvent::Incoming { established, .. } => Some(established.clone()),
            _ => None,
        });
    }
    let events = std::mem::take(&mut sim.hosts[c].events);
    (client, server, events)
}

fn assert_pair(c: &Established, s: &Established) {
    let (ch, sh) = (c.handshake.as_ref().unwrap(), s.handshake.as_ref().unwrap());
    assert_eq!(ch.split.tx, sh.split.rx);
    assert_eq!(ch.split.rx, sh.split.tx);
    assert_eq!(c.local_id, s.remote_id);
    assert_eq!(c.remote_id, s.local_id);
    assert_eq!(
        sh.split.remote_public_key,
        KeyPair::from_seed(&[2; 32]).public_key
    );
    assert_eq!(s.remote_public_key, sh.split.remote_public_key);
    assert_eq!(c.remote_public_key, ch.split.remote_public_key);
}

#[test]
fn public_peers_connect_directly() {
    // Without NATs the nodes' PING_NAT checks pass: the server is OPEN and the client connects
    // straight to its address from the DHT socket.
    let (c, s, ev) = connect(None, None);
    let c = c.unwrap_or_else(|| panic!("client did not connect: {ev:?}"));
    assert_pair(&c, &s.expect("server got the connection"));
    assert!(c.socket.0 < 2, "connected on a DHT socket");
    assert_eq!(
        c.remote,
        SocketAddrV4::new(Ipv4Addr::new(20, 0, 0, 1), 5000)
    );
}

#[test]
fn consistent_nats_connect_on_puncher_sockets() {
    let (c, s, ev) = connect(Some(Kind::Consistent), Some(Kind::Consistent));
    let c = c.unwrap_or_else(|| panic!("client did not connect: {ev:?}"));
    let s = s.expect("server got the connection");
    assert!(
        c.socket.0 >= 2 && s.socket.0 >= 2,
        "both on puncher sockets"
    );
}

#[test]
fn an_external_handshake_connects_directly_and_through_a_punch() {
    for nats in [None, Some(Kind::Consistent)] {
        let (c, s, ev) = connect_dup(nats, nats, ServerOptions::default(), 0, false, true);
        let c = c.unwrap_or_else(|| panic!("client did not connect ({nats:?}): {ev:?}"));
        let s = s.expect("server got the connection");
        // The keys the test's own handshake made pair with the server's.
        assert_pair(&c, &s);
        if nats.is_some() {
            assert!(c.socket.0 >= 2 && s.socket.0 >= 2, "punched");
        }
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, ConnectEvent::ExternalNoise { .. }))
                .count(),
            2,
            "one message out, one reply in"
        );
    }
}

#[test]
fn random_client_nat_to_consistent_server_connects_by_birthday_punch() {
    let (c, s, ev) = connect(Some(Kind::Consistent), Some(Kind::Random));
    let c = c.unwrap_or_else(|| panic!("client did not connect: {ev:?}"));
    assert_pair(&c, &s.expect("server got the connection"));
}

#[test]
fn double_random_nats_fail_with_the_js_error() {
    let (c, _, ev) = connect(Some(Kind::Random), Some(Kind::Random));
    assert!(c.is_none());
    assert!(
        ev.iter().any(|e| matches!(
            e,
            ConnectEvent::ConnectFailed {
                error: ConnectError::DoubleRandomizedNats,
                ..
            }
        )),
        "{ev:?}"
    );
}

#[test]
fn unknown_key_is_peer_not_found() {
    let mut sim = testnet(0, 4);
    let c = sim.add_peer(Ipv4Addr::new(30, 0, 0, 1), 6000, None);
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    let h = &mut sim.hosts[c];
    h.conn.connect(
        now,
        &mut h.dht,
        KeyPair::from_seed(&[9; 32]).public_key,
        KeyPair::from_seed(&[2; 32]),
        ConnectOptions::default(),
    );
    sim.flush(c);
    sim.run_for(Duration::from_secs(30));
    let now = sim.now;
    let h = &mut sim.hosts[c];
    h.conn.connect(
        now,
        &mut h.dht,
        [9; 32],
        KeyPair::from_seed(&[2; 32]),
        ConnectOptions::default(),
    );
    assert!(matches!(
        h.conn.poll_event(),
        Some(ConnectEvent::ConnectFailed {
            error: ConnectError::InvalidPublicKey,
            ..
        })
    ));
    assert!(
        sim.hosts[c].events.iter().any(|e| matches!(
            e,
            ConnectEvent::ConnectFailed {
                error: ConnectError::PeerNotFound,
                ..
            }
        )),
        "{:?}",
        sim.hosts[c].events
    );
}

#[test]
fn the_server_firewall_refuses_a_client() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let opts = ServerOptions {
        firewall: Some(Box::new(
            move |pk: &[u8; 32], payload: &crate::dht::messages_connect::NoisePayload, _from| {
                log.lock().unwrap().push((*pk, payload.udx.is_some()));
                true
            },
        )),
        ..ServerOptions::default()
    };
    let (c, s, ev) = connect_with(Some(Kind::Consistent), Some(Kind::Consistent), opts);
    assert!(c.is_none() && s.is_none());
    assert!(
        ev.iter().any(|e| matches!(
            e,
            ConnectEvent::ConnectFailed {
                error: ConnectError::PeerConnectionFailed,
                ..
            }
        )),
        "{ev:?}"
    );
    let seen = seen.lock().unwrap();
    // Asked once per distinct handshake (the relays' copies are deduplicated).
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0], (KeyPair::from_seed(&[2; 32]).public_key, true));
}

/// A listening server fed hostile PEER_HANDSHAKE / PEER_HOLEPUNCH values (garbage noise,
/// unknown slots, forged and replayed boxes, every mode): nothing panics, nothing is answered
/// that should not be, and a real client still connects afterwards.
#[test]
fn hostile_handshakes_and_holepunches_are_dropped() {
    use crate::dht::messages_connect::{HandshakeMessage, HolepunchMessage, Mode};
    use crate::dht::rpc::{IncomingRequest, Peer};
    use crate::dht::Event;
    let mut sim = testnet(0, 5);
    let s = sim.add_peer(Ipv4Addr::new(20, 0, 0, 1), 5000, Some(Kind::Consistent));
    sim.run_for(Duration::from_secs(3));
    let server_kp = KeyPair::from_seed(&[1; 32]);
    sim.listen(s, &server_kp, ServerOptions::default());
    let target = crate::crypto::hash(&server_kp.public_key);
    let from = SocketAddrV4::new(Ipv4Addr::new(66, 6, 6, 6), 666);
    let req = |tid: u16| IncomingRequest {
        tid,
        from: Peer {
            addr: from,
            id: None,
        },
        to: SocketAddrV4::new(Ipv4Addr::new(20, 0, 0, 1), 5000),
        socket: SocketId::SERVER,
        token: None,
        internal: false,
        command: 0,
        target: Some(target),
        value: None,
    };
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let before = sim.inflight.len();
    for i in 0..300u16 {
        let len = (next() % 200) as usize;
        let noise: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mode = next() % 6;
        let now = sim.now;
        let h = &mut sim.hosts[s];
        let peer = (next() % 2 == 0).then_some(from);
        let ev = if i % 2 == 0 {
            Event::PeerHandshake {
                req: req(i),
                handshake: HandshakeMessage {
                    mode: Mode::from_wire(mode),
                    noise,
                    peer_address: peer,
                    relay_address: peer,
                },
            }
        } else {
            Event::PeerHolepunch {
                req: req(i),
                holepunch: HolepunchMessage {
                    mode: Mode::FromRelay,
                    id: next() % 4,
                    payload: noise,
                    peer_address: Some(from),
                },
            }
        };
        let _ = h.conn.handle_dht_event(now, &mut h.dht, ev);
        sim.flush(s);
    }
    assert_eq!(sim.inflight.len(), before, "no answer to garbage");
    // The server still serves real clients.
    let c = sim.add_peer(Ipv4Addr::new(30, 0, 0, 1), 6000, Some(Kind::Consistent));
    sim.run_for(Duration::from_secs(3));
    sim.connect(
        c,
        server_kp.public_key,
        KeyPair::from_seed(&[2; 32]),
        ConnectOptions::default(),
    );
    sim.run_for(Duration::from_secs(20));
    assert!(
        sim.hosts[c]
            .events
            .iter()
            .any(|e| matches!(e, ConnectEvent::Connected { .. })),
        "{:?}",
        sim.hosts[c].events
    );
}

/// A random server NAT and a consistent client whose PEER_HOLEPUNCH requests arrive twice (the
/// client retried a round the server answered late, in the NAT lab: it was opening its 256
/// birthday sockets). The second copy gets the same answer; it used to be refused with
/// TRY_LATER (the server's own punch counted against the random punch limit), which destroyed
/// the punch under way.
#[test]
fn a_retried_holepunch_round_does_not_abort_a_random_punch() {
    for seed in 1..=3 {
        let (cl, sv, ev) = connect_dup(
            Some(Kind::Random),
            Some(Kind::Consistent),
            ServerOptions::default(),
            seed,
            true,
            false,
        );
        let cl = cl.unwrap_or_else(|| panic!("seed {seed}: {ev:?}"));
        assert_pair(&cl, &sv.expect("server side"));
    }
}

/// The NAT pairs over several seeds (node randomness, NAT port choices): consistent pairs and
/// the birthday punch both ways connect, double-random pairs always fail the JS way.
#[test]
fn nat_pairs_over_seeds() {
    for seed in 1..=4 {
        for (s, c) in [
            (Kind::Consistent, Kind::Consistent),
            (Kind::Consistent, Kind::Random),
            (Kind::Random, Kind::Consistent),
        ] {
            let (cl, sv, ev) = connect_seeded(Some(s), Some(c), ServerOptions::default(), seed);
            let cl = cl.unwrap_or_else(|| panic!("seed {seed} {s:?}/{c:?}: {ev:?}"));
            assert_pair(&cl, &sv.expect("server side"));
        }
        let (cl, _, ev) = connect_seeded(
            Some(Kind::Random),
            Some(Kind::Random),
            ServerOptions::default(),
            seed,
        );
        assert!(cl.is_none());
        assert!(
            ev.iter().any(|e| matches!(
                e,
                ConnectEvent::ConnectFailed {
                    error: ConnectError::DoubleRandomizedNats,
                    ..
                }
            )),
            "seed {seed}: {ev:?}"
        );
    }
}

fn failures(events: &[ConnectEvent]) -> Vec<ConnectError> {
    events
        .iter()
        .filter_map(|e| match e {
            ConnectEvent::ConnectFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

/// A server whose random punch limiter a first client armed (one side's NAT is random):
/// [`listening`], a second client at 40.0.0.1:7000 behind `client_nat`, then the first client
/// connects (the server's random punch) and its stream's first packet reaches the server,
/// which ends its punch there. Returns the sim, the server's and the second client's host
/// indexes and the server's key.
fn limiter_armed(server_nat: Kind, client_nat: Kind, seed: u64) -> (Sim, usize, usize, KeyPair) {
    let (mut sim, s, c1, server_kp) = listening(Some(server_nat), Some(client_nat), seed);
    let c2 = sim.add_peer(Ipv4Addr::new(40, 0, 0, 1), 7000, Some(client_nat));
    sim.run_for(Duration::from_secs(3));
    // The first client: the server's random punch, which arms its limiter.
    sim.connect(
        c1,
        server_kp.public_key,
        KeyPair::from_seed(&[2; 32]),
        ConnectOptions::default(),
    );
    for _ in 0..600 {
        sim.run_for(Duration::from_millis(100));
        if !sim.hosts[c1].events.is_empty() {
            break;
        }
    }
    let Some(ConnectEvent::Connected { established, .. }) = sim.hosts[c1].events.first() else {
        panic!("seed {seed}: first client: {:?}", sim.hosts[c1].events);
    };
    let est1 = established.clone();
    // Its stream's first packet reaches the server, which ends its punch there.
    sim.first_packet(c1, &est1);
    (sim, s, c2, server_kp)
}

/// A connect through a blind relay that never answers, between two random NATs: the punch
/// fails at once and the attempt waits for the relay (as JS does, which has no bound of its
/// own). Without a deadline it still waits after two virtual minutes; with one it fails with
/// CONNECT_TIMEOUT exactly when the deadline passes, its requests and sockets released.
#[test]
fn a_connect_waiting_for_a_silent_relay_fails_at_its_deadline() {
    for timeout in [None, Some(Duration::from_secs(20))] {
        let (mut sim, _s, c, server_kp) = listening(Some(Kind::Random), Some(Kind::Random), 0);
        let start = sim.now;
        sim.connect(
            c,
            server_kp.public_key,
            KeyPair::from_seed(&[2; 32]),
            ConnectOptions {
                relay_through: Some(KeyPair::from_seed(&[7; 32]).public_key),
                timeout,
                ..ConnectOptions::default()
            },
        );
        let mut failed_at = None;
        for _ in 0..1200 {
            sim.run_for(Duration::from_millis(100));
            if failed_at.is_none() && !failures(&sim.hosts[c].events).is_empty() {
                failed_at = Some(sim.now - start);
            }
        }
        let ev = &sim.hosts[c].events;
        assert!(
            ev.iter()
                .any(|e| matches!(e, ConnectEvent::RelayPairing { .. })),
            "asked for the relay: {ev:?}"
        );
        assert!(
            !ev.iter()
                .any(|e| matches!(e, ConnectEvent::Connected { .. })),
            "{ev:?}"
        );
        match timeout {
            None => assert!(failures(ev).is_empty(), "no bound, still waiting: {ev:?}"),
            Some(t) => {
                assert_eq!(
                    failures(ev),
                    vec![ConnectError::Timeout(t.as_millis() as u64)],
                    "{ev:?}"
                );
                let at = failed_at.unwrap();
                assert!(at >= t && at <= t + Duration::from_millis(100), "{at:?}");
                assert!(sim.hosts[c].conn.clients.is_empty());
                assert!(sim.hosts[c].conn.deadlines.is_empty());
                assert!(
                    sim.hosts[c].conn.poll_timeout().is_none(),
                    "nothing left to wake for"
                );
            }
        }
    }
}

/// A connection made well within its deadline is not failed later by it, and an attempt that
/// fails on its own (PEER_NOT_FOUND) reports its own error once, not a timeout after it.
#[test]
fn the_deadline_does_not_outlive_its_attempt() {
    let (mut sim, _s, c, server_kp) = listening(Some(Kind::Consistent), Some(Kind::Consistent), 0);
    let now = sim.now;
    {
        let h = &mut sim.hosts[c];
        let opts = ConnectOptions {
            timeout: Some(Duration::from_secs(30)),
            ..ConnectOptions::default()
        };
        h.conn.connect(
            now,
            &mut h.dht,
            server_kp.public_key,
            KeyPair::from_seed(&[2; 32]),
            opts.clone(),
        );
        h.conn.connect(
            now,
            &mut h.dht,
            KeyPair::from_seed(&[9; 32]).public_key,
            KeyPair::from_seed(&[2; 32]),
            opts,
        );
    }
    sim.flush(c);
    sim.run_for(Duration::from_secs(90));
    let ev = &sim.hosts[c].events;
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, ConnectEvent::Connected { .. }))
            .count(),
        1,
        "{ev:?}"
    );
    assert_eq!(failures(ev), vec![ConnectError::PeerNotFound], "{ev:?}");
    assert!(sim.hosts[c].conn.deadlines.is_empty());
}

/// hyperdht's TRY_LATER: a server behind a random NAT that punched for one client less than
/// 20 s ago (its random punch limit) answers a second client's punch round with TRY_LATER when
/// the second client asked for a blind relay. connect.js then waits 10-20 s and punches again
/// through the server's relay; it used to fail the punch at once (and, the relay never
/// answering here, wait for it until its deadline). Now it connects by the later punch, over
/// seeds, with the random NAT on either side.
#[test]
fn a_try_later_punch_is_tried_again_and_connects() {
    for (seed, (server_nat, client_nat)) in [
        (Kind::Random, Kind::Consistent),
        (Kind::Consistent, Kind::Random),
    ]
    .into_iter()
    .cycle()
    .take(6)
    .enumerate()
    {
        let seed = seed as u64;
        let (mut sim, s, c2, server_kp) = limiter_armed(server_nat, client_nat, seed);
        // The second client, at once, with a relay (that never answers).
        let start = sim.now;
        let now = sim.now;
        let id = {
            let h = &mut sim.hosts[c2];
            h.conn.connect(
                now,
                &mut h.dht,
                server_kp.public_key,
                KeyPair::from_seed(&[3; 32]),
                ConnectOptions {
                    relay_through: Some(KeyPair::from_seed(&[7; 32]).public_key),
                    ..ConnectOptions::default()
                },
            )
        };
        sim.flush(c2);
        let mut waits = 0;
        for _ in 0..900 {
            sim.run_for(Duration::from_millis(100));
            if let Some(cl) = sim.hosts[c2].conn.clients.get(&id) {
                waits = waits.max(cl.try_laters());
            }
            if sim.hosts[c2].events.iter().any(|e| {
                matches!(
                    e,
                    ConnectEvent::Connected { .. } | ConnectEvent::ConnectFailed { .. }
                )
            }) {
                break;
            }
        }
        let ev = &sim.hosts[c2].events;
        let est = ev
            .iter()
            .find_map(|e| match e {
                ConnectEvent::Connected { established, .. } => Some(established.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("seed {seed}: second client: {ev:?}"));
        assert!(waits >= 1, "seed {seed}: a TRY_LATER was waited out");
        assert!(!est.relayed, "punched, not relayed");
        let took = sim.now - start;
        assert!(took >= Duration::from_secs(10), "seed {seed}: {took:?}");
        // The server's side of it.
        sim.first_packet(c2, &est);
        let incoming = sim.hosts[s]
            .events
            .iter()
            .filter(|e| matches!(e, ConnectEvent::Incoming { .. }))
            .count();
        assert!(incoming >= 1, "seed {seed}: {:?}", sim.hosts[s].events);
    }
}

/// A refused connection is answered with a reset for its peer's stream, now and for each later
/// packet to our stream id; the table keeps the newest 256 (bounded whatever a peer does).
#[test]
fn refused_connections_are_reset_and_bounded() {
    let (c, _, ev) = connect(None, None);
    let c = c.unwrap_or_else(|| panic!("client did not connect: {ev:?}"));
    let mut conn = Connector::new();
    assert_eq!(conn.refused_reset(c.local_id), None);
    let first = conn.refuse(&c);
    assert_eq!(first, crate::udx::packet::reset(c.remote_id));
    assert_eq!(conn.refused_reset(c.local_id), Some(first.clone()));
    assert_eq!(conn.refuse(&c), first, "refusing twice keeps one entry");
    for i in 0..REFUSED_KEPT as u32 {
        let other = Established {
            local_id: c.local_id.wrapping_add(1 + i),
            remote_id: 7,
            ..c.clone()
        };
        conn.refuse(&other);
    }
    assert_eq!(conn.refused.len(), REFUSED_KEPT);
    assert_eq!(
        conn.refused_reset(c.local_id),
        None,
        "the oldest went first"
    );
    assert_eq!(
        conn.refused_reset(c.local_id.wrapping_add(REFUSED_KEPT as u32)),
        Some(crate::udx::packet::reset(7))
    );
}

/// Answers a non-custodial server's events as its key pair's owner would: signs its
/// announcements and runs the responder's Noise. Returns the finished handshakes' results.
fn answer_server_owner(
    sim: &mut Sim,
    s: usize,
    kp: &KeyPair,
    seen: &mut usize,
    noises: &mut BTreeMap<u64, crate::dht::noise_wrap::NoiseWrap>,
    results: &mut Vec<crate::dht::noise_wrap::HandshakeResult>,
) {
    let steps: Vec<ConnectEvent> = sim.hosts[s].events[*seen..].to_vec();
    *seen = sim.hosts[s].events.len();
    let target = crate::crypto::hash(&kp.public_key);
    let record = super::announcer::encode_peer(&kp.public_key, &[]);
    for e in steps {
        let now = sim.now;
        let h = &mut sim.hosts[s];
        match e {
            ConnectEvent::ServerSign {
                server,
                sign,
                token,
                node_id,
            } => {
                let sig = kp.sign(&super::announcer::signable(
                    4, &target, &node_id, &token, &record, None,
                ));
                h.conn
                    .server_signed(now, &mut h.dht, server, sign, Some(sig));
            }
            ConnectEvent::ServerNoise {
                server,
                handshake,
                step: NoiseStep::Recv(m),
            } => {
                let mut n = crate::dht::noise_wrap::NoiseWrap::responder(
                    kp.clone(),
                    KeyPair::from_seed(&[4; 32]),
                )
                .unwrap();
                let payload = n.recv(&m).unwrap();
                let rpk = n.remote_public_key().unwrap();
                noises.insert(handshake, n);
                h.conn.server_noise_received(
                    now,
                    &mut h.dht,
                    server,
                    handshake,
                    Some((payload, rpk)),
                );
            }
            ConnectEvent::ServerNoise {
                server,
                handshake,
                step: NoiseStep::Send(p),
            } => {
                let mut n = noises.remove(&handshake).expect("received first");
                let m = n.send(&p).unwrap();
                let r = n.finish().unwrap();
                let secret = r.holepunch_secret;
                results.push(r);
                h.conn
                    .server_noise_sent(now, &mut h.dht, server, handshake, Some((m, secret)));
            }
            _ => {}
        }
        sim.flush(s);
    }
}

#[test]
fn an_external_server_announces_and_accepts_without_its_key() {
    for nats in [None, Some(Kind::Consistent)] {
        let mut sim = testnet(7, 6);
        let s = sim.add_peer(Ipv4Addr::new(20, 0, 0, 1), 5000, nats);
        let c = sim.add_peer(Ipv4Addr::new(30, 0, 0, 1), 6000, nats);
        sim.run_for(Duration::from_secs(3));
        let server_kp = KeyPair::from_seed(&[1; 32]);
        let client_kp = KeyPair::from_seed(&[2; 32]);
        let now = sim.now;
        {
            let h = &mut sim.hosts[s];
            h.conn.listen_external(
                now,
                &mut h.dht,
                server_kp.public_key,
                ServerOptions::default(),
            );
        }
        sim.flush(s);
        let (mut seen, mut noises, mut results) = (0, BTreeMap::new(), Vec::new());
        for _ in 0..60 {
            answer_server_owner(
                &mut sim,
                s,
                &server_kp,
                &mut seen,
                &mut noises,
                &mut results,
            );
            sim.run_for(Duration::from_millis(100));
        }
        let ev = &sim.hosts[s].events;
        assert!(
            ev.iter()
                .any(|e| matches!(e, ConnectEvent::Listening { .. })),
            "listening once the owner signed ({nats:?})"
        );
        assert!(
            ev.iter()
                .any(|e| matches!(e, ConnectEvent::ServerSign { .. })),
            "the announcements were the owner's to sign"
        );
        sim.connect(
            c,
            server_kp.public_key,
            client_kp.clone(),
            ConnectOptions::default(),
        );
        let mut client = None;
        for _ in 0..600 {
            answer_server_owner(
                &mut sim,
                s,
                &server_kp,
                &mut seen,
                &mut noises,
                &mut results,
            );
            sim.run_for(Duration::from_millis(100));
            client = sim.hosts[c].events.iter().find_map(|e| match e {
                ConnectEvent::Connected { established, .. } => Some(established.clone()),
                _ => None,
            });
            if client.is_some()
                || sim.hosts[c]
                    .events
                    .iter()
                    .any(|e| matches!(e, ConnectEvent::ConnectFailed { .. }))
            {
                break;
            }
        }
        let client = client.unwrap_or_else(|| {
            panic!(
                "client did not connect ({nats:?}): {:?}",
                sim.hosts[c].events
            )
        });
        sim.first_packet(c, &client);
        let mut server = sim.hosts[s]
            .events
            .iter()
            .find_map(|e| match e {
                ConnectEvent::Incoming { established, .. } => Some(established.clone()),
                _ => None,
            })
            .expect("the server got the connection");
        assert!(
            server.handshake.is_none(),
            "the connector never had the keys"
        );
        assert_eq!(results.len(), 1, "one handshake, run by the owner");
        server.handshake = results.pop();
        assert_pair(&client, &server);
    }
}

/// A client on a public address that connects at once, before its firewall check: its
/// handshake says UNKNOWN (so a server behind a random NAT punches), and by its punch round it
/// knows it is OPEN. hyperdht's Nat then lists no address and the random server, finding none
/// to punch, aborts (HOLEPUNCH_ABORTED, found in the NAT lab's `:early` cells against JS). Our
/// client's OPEN lists where it was seen, and our server punches the address the client's
/// echoed token verifies when it lists none: either alone connects these seeds, without both
/// the client fails (REMOTE_ABORTED, seed 1).
#[test]
fn an_early_public_client_connects_to_a_random_server() {
    early_public_client_to_random_server();
}

/// The same with a client whose OPEN lists no address, as hyperdht's: our server's fallback
/// (punch the address the client's echoed token verifies) alone connects it.
#[test]
fn an_early_public_client_listing_no_address_is_punched_at_its_verified_address() {
    crate::dht::holepunch::nat::JS_OPEN.with(|j| j.set(true));
    early_public_client_to_random_server();
    crate::dht::holepunch::nat::JS_OPEN.with(|j| j.set(false));
}

fn early_public_client_to_random_server() {
    for seed in 1..=3 {
        let mut sim = testnet(seed, 6);
        let s = sim.add_peer(Ipv4Addr::new(20, 0, 0, 1), 5000, Some(Kind::Random));
        sim.run_for(Duration::from_secs(3));
        let server_kp = KeyPair::from_seed(&[1; 32]);
        sim.listen(s, &server_kp, ServerOptions::default());
        // The client connects in the step it starts in.
        let c = sim.add_peer(Ipv4Addr::new(30, 0, 0, 1), 6000, None);
        assert!(sim.hosts[c].dht.rpc.is_firewalled(), "not checked yet");
        sim.connect(
            c,
            server_kp.public_key,
            KeyPair::from_seed(&[2; 32]),
            ConnectOptions::default(),
        );
        sim.run_for(Duration::from_secs(30));
        assert!(
            !sim.hosts[c].dht.rpc.is_firewalled(),
            "the check finished meanwhile"
        );
        assert!(
            sim.hosts[c]
                .events
                .iter()
                .any(|e| matches!(e, ConnectEvent::Connected { .. })),
            "seed {seed}: {:?}",
            sim.hosts[c].events
        );
    }
}

/// hyperdht's relayed-to-direct upgrade: the second client of
/// `a_try_later_punch_is_tried_again_and_connects` asks for a blind relay, the server's random
/// punch limit puts its punch off (TRY_LATER, 10-20 s), and meanwhile the relay pairs both
/// sides (simulated: each side's pairing answered a second after it asked). Both hand the
/// connection over relayed at once (Connected / Incoming with `relayed`), keep punching, and
/// when the later punch opens the path the client asks to move the stream there (`Upgrade`),
/// and the server does when the moved stream's first packet reaches it over that path (the
/// raw stream's firewall, on its punching socket from the peer's address): the client to the server's stream id and the server to the
/// client's, each on a punched socket, not to the relay; nothing fails, one upgrade a side.
#[test]
fn a_relayed_connection_upgrades_to_the_later_punched_path() {
    relayed_then_punched(false);
}

/// While the punch after the relay runs, one UDX packet with our stream id from anyone (the
/// relay sees the ids) must not move the stream: only the puncher's verified path does.
#[test]
fn a_stray_packet_during_the_upgrade_does_not_move_the_stream() {
    relayed_then_punched(true);
}

fn relayed_then_punched(stray: bool) {
    let stray_from = SocketAddrV4::new(Ipv4Addr::new(66, 0, 0, 6), 6666);
    for (seed, (server_nat, client_nat)) in [
        (Kind::Random, Kind::Consistent),
        (Kind::Consistent, Kind::Random),
    ]
    .into_iter()
    .cycle()
    .take(4)
    .enumerate()
    {
        let seed = seed as u64 + 100;
        let (mut sim, s, c2, server_kp) = limiter_armed(server_nat, client_nat, seed);
        let server_events_before = sim.hosts[s].events.len();
        // The second client, with a relay.
        sim.connect(
            c2,
            server_kp.public_key,
            KeyPair::from_seed(&[3; 32]),
            ConnectOptions {
                relay_through: Some(KeyPair::from_seed(&[7; 32]).public_key),
                ..ConnectOptions::default()
            },
        );
        let relay = SocketAddrV4::new(Ipv4Addr::new(50, 0, 0, 1), 9999);
        // Relay stream ids: 7001 faces the client, 7002 the server.
        let mut paired = [false, false];
        let mut asked_at: [Option<Duration>; 2] = [None, None];
        let mut sent_direct = false;
        let upgraded = |ev: &[ConnectEvent]| {
            ev.iter().find_map(|e| match e {
                ConnectEvent::Upgrade {
                    local_id,
                    socket,
                    remote_id,
                    remote,
                } => Some((*local_id, *socket, *remote_id, *remote)),
                _ => None,
            })
        };
        for _ in 0..900 {
            sim.run_for(Duration::from_millis(100));
            for (k, h) in [(0, c2), (1, s)] {
                let pairing = sim.hosts[h].events.iter().find_map(|e| match e {
                    ConnectEvent::RelayPairing { pairing, .. } => Some(*pairing),
                    _ => None,
                });
                let Some(pairing) = pairing else { continue };
                let asked = *asked_at[k].get_or_insert(sim.now);
                if !paired[k] && sim.now >= asked + Duration::from_secs(1) {
                    paired[k] = true;
                    let now = sim.now;
                    let host = &mut sim.hosts[h];
                    host.conn
                        .relay_connected(now, &mut host.dht, pairing, relay);
                    host.conn.relay_paired(
                        now,
                        &mut host.dht,
                        pairing,
                        SocketId::CLIENT,
                        relay,
                        7001 + k as u32,
                    );
                    sim.flush(h);
                    if k == 0 {
                        // The relayed client's punch is bounded as the server's slot is.
                        let (at, _) = sim.hosts[h]
                            .conn
                            .deadlines
                            .values()
                            .copied()
                            .next()
                            .unwrap_or_else(|| panic!("seed {seed}: no deadline while upgrading"));
                        assert!(at <= now + Duration::from_secs(120), "seed {seed}");
                    }
                    if stray {
                        let local = sim.hosts[h].events.iter().rev().find_map(|e| match e {
                            ConnectEvent::Connected { established, .. }
                            | ConnectEvent::Incoming { established, .. } => {
                                Some(established.local_id)
                            }
                            _ => None,
                        });
                        let local = local.unwrap_or_else(|| panic!("seed {seed}: not handed over"));
                        let host = &mut sim.hosts[h];
                        for socket in [SocketId::CLIENT, SocketId::SERVER, SocketId(2)] {
                            host.conn.handle_udx_firewall(
                                now,
                                &mut host.dht,
                                socket,
                                stray_from,
                                local,
                            );
                        }
                        sim.flush(h);
                    }
                }
            }
            if let (Some((_, socket, remote_id, remote)), false) =
                (upgraded(&sim.hosts[c2].events), sent_direct)
            {
                // The moved stream's first packet, over the punched path.
                sent_direct = true;
                let mut pkt = vec![0xff, 1, 0, 0];
                pkt.extend_from_slice(&remote_id.to_le_bytes());
                pkt.extend_from_slice(&[0; 12]);
                sim.send(c2, socket, remote, pkt, 0);
            }
            if upgraded(&sim.hosts[c2].events).is_some() && upgraded(&sim.hosts[s].events).is_some()
            {
                break;
            }
        }
        let cev = sim.hosts[c2].events.clone();
        let sev = sim.hosts[s].events[server_events_before..].to_vec();
        let relayed = cev
            .iter()
            .find_map(|e| match e {
                ConnectEvent::Connected { established, .. } => Some(established.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("seed {seed}: client: {cev:?}"));
        assert!(relayed.relayed, "seed {seed}: first relayed: {relayed:?}");
        assert_eq!((relayed.remote, relayed.remote_id), (relay, 7001));
        let incoming = sev
            .iter()
            .find_map(|e| match e {
                ConnectEvent::Incoming { established, .. } => Some(established.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("seed {seed}: server: {sev:?}"));
        assert!(incoming.relayed, "seed {seed}: {incoming:?}");
        assert_eq!((incoming.remote, incoming.remote_id), (relay, 7002));
        let (c_local, c_socket, c_remote_id, c_remote) = upgraded(&cev)
            .unwrap_or_else(|| panic!("seed {seed}: the client did not upgrade: {cev:?}"));
        let (s_local, s_socket, s_remote_id, s_remote) = upgraded(&sev)
            .unwrap_or_else(|| panic!("seed {seed}: the server did not upgrade: {sev:?}"));
        assert_eq!(c_local, relayed.local_id, "seed {seed}");
        assert_eq!(s_local, incoming.local_id, "seed {seed}");
        assert_eq!(
            c_remote_id, incoming.local_id,
            "seed {seed}: to the server's stream"
        );
        assert_eq!(
            s_remote_id, relayed.local_id,
            "seed {seed}: to the client's stream"
        );
        assert!(
            c_socket.0 >= 2 && s_socket.0 >= 2,
            "seed {seed}: punched sockets"
        );
        assert_ne!(c_remote, relay, "seed {seed}");
        assert_ne!(s_remote, relay, "seed {seed}");
        assert_ne!(c_remote, stray_from, "seed {seed}: moved by a stray packet");
        assert_ne!(s_remote, stray_from, "seed {seed}: moved by a stray packet");
        for ev in [&cev, &sev] {
            assert!(failures(ev).is_empty(), "seed {seed}: {ev:?}");
            assert_eq!(
                ev.iter()
                    .filter(|e| matches!(e, ConnectEvent::Upgrade { .. }))
                    .count(),
                1,
                "seed {seed}: one upgrade"
            );
        }
        assert!(sim.hosts[c2].conn.clients.is_empty(), "seed {seed}: done");
    }
}
