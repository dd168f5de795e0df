//! dht-rpc against the JS vectors (`tests/vectors/net`) and on a small lossless in-memory
//! network (the seeded, lossy simulation with hundreds of nodes is `tests/tests/dht_sim.rs`).

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use super::messages::{self, node_id, Packet, RequestPacket, ResponsePacket};
use super::*;

pub(crate) const NET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/net");

pub(crate) fn vectors() -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{NET}/vectors-static.json"))
        .expect("tests/vectors/net/vectors-static.json");
    serde_json::from_str(&text).unwrap()
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn a(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

#[test]
fn node_ids_match_the_vectors() {
    let v = vectors();
    assert_eq!(
        hex(&node_id(&a("127.0.0.1:49737"))),
        v["dhtRpc"]["nodeId_127_0_0_1_49737"].as_str().unwrap()
    );
    assert_eq!(
        hex(&node_id(&a("88.99.3.86:49737"))),
        v["dhtRpc"]["nodeId_88_99_3_86_49737"].as_str().unwrap()
    );
}

#[test]
fn request_packets_match_the_vectors() {
    let v = vectors();
    let p = &v["dhtRpc"]["packets"];
    let ping = RequestPacket {
        tid: 0x1234,
        to: a("127.0.0.1:49737"),
        id: None,
        token: None,
        internal: true,
        command: PING,
        target: None,
        value: None,
    };
    assert_eq!(
        hex(&ping.encode()),
        p["ping_internal_ephemeral"]["hex"].as_str().unwrap()
    );
    let find = RequestPacket {
        tid: 0x1235,
        command: FIND_NODE,
        target: Some([0xbb; 32]),
        ..ping.clone()
    };
    assert_eq!(
        hex(&find.encode()),
        p["find_node_internal_ephemeral"]["hex"].as_str().unwrap()
    );
    let ann = RequestPacket {
        tid: 0x1236,
        to: a("127.0.0.1:49737"),
        id: Some([0xaa; 32]),
        token: Some([0xcc; 32]),
        internal: false,
        command: 4,
        target: Some([0xbb; 32]),
        value: Some(b"value"),
    };
    let hexed = p["announce_user_persistent_with_token_value"]["hex"]
        .as_str()
        .unwrap();
    assert_eq!(hex(&ann.encode()), hexed);
    // and back
    assert_eq!(
        messages::decode(&unhex(hexed)).unwrap(),
        Packet::Request(ann)
    );
    let d = &v["dhtRpc"]["decodedRequest"];
    match messages::decode(&unhex(
        p["find_node_internal_ephemeral"]["hex"].as_str().unwrap(),
    )) {
        Ok(Packet::Request(r)) => {
            assert_eq!(r.tid as u64, d["tid"].as_u64().unwrap());
            assert_eq!(r.command, d["command"].as_u64().unwrap());
            assert!(r.internal);
            assert_eq!(hex(&r.target.unwrap()), d["target"].as_str().unwrap());
            assert_eq!(r.token, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn response_packets_match_the_vectors() {
    let v = vectors();
    let p = &v["dhtRpc"]["packets"];
    let secrets = io::Secrets::new([0x11; 32], [0x22; 32]);
    let token = secrets.token(&Ipv4Addr::new(127, 0, 0, 1), 1);
    assert_eq!(
        hex(&token),
        v["dhtRpc"]["tokenOfSender127_0_0_1"]["token"]
            .as_str()
            .unwrap()
    );
    let full = ResponsePacket {
        tid: 0x1235,
        to: a("127.0.0.1:50000"),
        id: Some([0xaa; 32]),
        token: Some(token),
        closer_nodes: Some(vec![a("10.0.0.1:1000"), a("10.0.0.2:2000")]),
        error: 0,
        value: None,
    };
    let hexed = p["reply_with_id_token_closer"]["hex"].as_str().unwrap();
    assert_eq!(hex(&full.encode()), hexed);
    assert_eq!(
        messages::decode(&unhex(hexed)).unwrap(),
        Packet::Response(full.clone())
    );
    let value = ResponsePacket {
        token: None,
        closer_nodes: None,
        value: Some(b"hi"),
        ..full.clone()
    };
    assert_eq!(
        hex(&value.encode()),
        p["reply_value_only"]["hex"].as_str().unwrap()
    );
    let err = ResponsePacket {
        token: None,
        error: ERROR_UNKNOWN_COMMAND,
        ..full
    };
    assert_eq!(
        hex(&err.encode()),
        p["reply_error_unknown_command"]["hex"].as_str().unwrap()
    );
}

/// Every datagram of the JS capture (`out-records.jsonl`: bootstrap, announce, lookup,
/// unannounce, mutable and immutable records) decodes and re-encodes to the same bytes.
#[test]
fn every_captured_packet_round_trips() {
    let text = std::fs::read_to_string(format!("{NET}/out-records.jsonl")).unwrap();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(h) = j["hex"].as_str() else { continue };
        let bytes = unhex(h);
        let again = match messages::decode(&bytes).unwrap_or_else(|e| panic!("{e}: {h}")) {
            Packet::Request(r) => r.encode(),
            Packet::Response(r) => r.encode(),
        };
        assert_eq!(hex(&again), h);
        n += 1;
    }
    assert!(n > 200, "{n} packets");
}

#[test]
fn malformed_datagrams_are_typed_errors() {
    assert_eq!(messages::decode(&[]), Err(PacketError::TooShort(0)));
    assert_eq!(messages::decode(&[3]), Err(PacketError::TooShort(1)));
    assert_eq!(
        messages::decode(&[0x42, 0]),
        Err(PacketError::UnknownType(0x42))
    );
    assert!(matches!(
        messages::decode(&[3, 0]),
        Err(PacketError::Malformed(_))
    ));
    // a truncated id
    let mut p = unhex("031b36127f00000149c2aaaa");
    assert!(matches!(
        messages::decode(&p),
        Err(PacketError::Malformed(_))
    ));
    // a value length past the end
    p = unhex("031036127f00000149c200ff");
    assert!(matches!(
        messages::decode(&p),
        Err(PacketError::Malformed(_))
    ));
    // too many closer nodes
    let mut r = unhex("130436127f00000149c2");
    r.extend_from_slice(&[0xfd, 0xff, 0x00]);
    assert!(matches!(
        messages::decode(&r),
        Err(PacketError::Malformed(_))
    ));
}

// ---------------------------------------------------------------- a small perfect network

/// What the small network drives (a dht-rpc node or a hyperdht node).
pub(crate) trait Engine {
    type Ev;
    fn datagram(&mut self, now: Duration, from: SocketAddr, bytes: &[u8]);
    fn timeout(&mut self, now: Duration);
    fn transmit(&mut self) -> Option<Transmit>;
    fn deadline(&mut self) -> Option<Duration>;
    fn event(&mut self) -> Option<Self::Ev>;
}

impl Engine for Node {
    type Ev = Event;
    fn datagram(&mut self, now: Duration, from: SocketAddr, bytes: &[u8]) {
        let _ = self.handle_datagram(now, SocketId::SERVER, from, bytes);
    }
    fn timeout(&mut self, now: Duration) {
        self.handle_timeout(now)
    }
    fn transmit(&mut self) -> Option<Transmit> {
        self.poll_transmit()
    }
    fn deadline(&mut self) -> Option<Duration> {
        self.poll_timeout()
    }
    fn event(&mut self) -> Option<Event> {
        self.poll_event()
    }
}

/// Nodes on a lossless network with a fixed one-way delay, on virtual time.
pub(crate) struct Net<T: Engine> {
    pub nodes: BTreeMap<SocketAddrV4, T>,
    pub events: BTreeMap<SocketAddrV4, Vec<T::Ev>>,
    pub now: Duration,
    inflight: VecDeque<(Duration, SocketAddrV4, SocketAddrV4, Vec<u8>)>,
    delay: Duration,
    /// Addresses that drop everything (dead nodes).
    pub dead: Vec<SocketAddrV4>,
}

impl<T: Engine> Net<T> {
    pub fn new() -> Self {
        Net {
            nodes: BTreeMap::new(),
            events: BTreeMap::new(),
            now: Duration::from_secs(1_700_000_000),
            inflight: VecDeque::new(),
            delay: Duration::from_millis(5),
            dead: Vec::new(),
        }
    }

    pub fn insert(&mut self, addr: SocketAddrV4, node: T) {
        self.nodes.insert(addr, node);
        self.flush(addr);
    }

    /// Run `f` on a node, then collect what it sent.
    pub fn with<R>(&mut self, addr: SocketAddrV4, f: impl FnOnce(&mut T, Duration) -> R) -> R {
        let now = self.now;
        let r = f(self.nodes.get_mut(&addr).expect("node"), now);
        self.flush(addr);
        r
    }

    pub fn flush(&mut self, addr: SocketAddrV4) {
        let Some(node) = self.nodes.get_mut(&addr) else {
            return;
        };
        while let Some(t) = node.transmit() {
            self.inflight
                .push_back((self.now + self.delay, addr, t.to, t.bytes));
        }
        while let Some(e) = node.event() {
            self.events.entry(addr).or_default().push(e);
        }
    }

    /// Run until `until`.
    pub fn run(&mut self, until: Duration) {
        loop {
            let next_packet = self.inflight.front().map(|p| p.0);
            let next_timer = self.nodes.values_mut().filter_map(|n| n.deadline()).min();
            let next = match (next_packet, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(until),
            };
            if next > until {
                self.now = until;
                return;
            }
            self.now = next.max(self.now);
            if next_packet == Some(next) {
                let (_, from, to, bytes) = self.inflight.pop_front().unwrap();
                if self.dead.contains(&to) || self.dead.contains(&from) {
                    continue;
                }
                if let Some(n) = self.nodes.get_mut(&to) {
                    n.datagram(self.now, SocketAddr::V4(from), &bytes);
                    self.flush(to);
                }
            } else {
                let addrs: Vec<_> = self.nodes.keys().copied().collect();
                for addr in addrs {
                    let n = self.nodes.get_mut(&addr).unwrap();
                    if n.deadline().is_some_and(|t| t <= self.now) {
                        n.timeout(self.now);
                        self.flush(addr);
                    }
                }
            }
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run(until);
    }

    pub fn take_events(&mut self, addr: SocketAddrV4) -> Vec<T::Ev> {
        self.events.remove(&addr).unwrap_or_default()
    }
}

impl Net<Node> {
    /// A node whose two sockets are the same address (a public, unfirewalled host).
    pub fn add(&mut self, addr: SocketAddrV4, mut config: Config) {
        config.server_port = addr.port();
        let node = Node::new(config, self.now, seed_of(&addr));
        self.insert(addr, node);
    }
}

/// A deterministic seed per address.
pub(crate) fn seed_of(addr: &SocketAddrV4) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..6].copy_from_slice(&messages::encode_addr(addr));
    seed
}

/// The i-th test address (distinct hosts).
pub(crate) fn addr_n(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(10, 0, (i / 200) as u8, (i % 200) as u8 + 2),
        40000 + i as u16,
    )
}

pub(crate) fn testnet(n: usize) -> (Net<Node>, Vec<SocketAddrV4>) {
    let mut net = Net::new();
    let boot = a("10.0.0.1:49737");
    net.add(boot, Config::bootstrapper(boot));
    let mut addrs = vec![boot];
    for i in 1..n {
        let addr = SocketAddrV4::new(
            Ipv4Addr::new(10, 0, (i / 200) as u8, (i % 200) as u8 + 2),
            40000 + i as u16,
        );
        let cfg = Config {
            bootstrap: vec![boot],
            ephemeral: Some(false),
            firewalled: false,
            ..Config::default()
        };
        net.add(addr, cfg);
        addrs.push(addr);
        net.run_for(Duration::from_millis(200));
    }
    net.run_for(Duration::from_secs(5));
    (net, addrs)
}

#[test]
fn bootstrapper_is_persistent_at_once() {
    let mut net: Net<Node> = Net::new();
    let boot = a("10.0.0.1:49737");
    net.add(boot, Config::bootstrapper(boot));
    net.run_for(Duration::from_secs(1));
    let n = &net.nodes[&boot];
    assert!(n.is_bootstrapped());
    assert!(!n.is_ephemeral());
    assert_eq!(n.id(), Some(node_id(&boot)));
    assert_eq!(n.remote_address(), Some(boot));
    let ev = net.take_events(boot);
    assert!(
        ev.contains(&Event::Persistent) && ev.contains(&Event::Ready),
        "{ev:?}"
    );
}

#[test]
fn testnet_nodes_become_persistent_and_fill_tables() {
    let (net, addrs) = testnet(30);
    for addr in &addrs {
        let n = &net.nodes[addr];
        assert!(n.is_bootstrapped(), "{addr}");
        assert!(!n.is_ephemeral(), "{addr} stays ephemeral");
        assert!(!n.is_firewalled());
        assert_eq!(n.id(), Some(node_id(addr)));
        assert!(
            n.table().len() >= 10,
            "{addr} knows {} nodes",
            n.table().len()
        );
    }
}

#[test]
fn find_node_returns_the_closest_nodes() {
    let (mut net, addrs) = testnet(40);
    let target = [0x5a; 32];
    let asker = addrs[7];
    let now = net.now;
    let q = net
        .nodes
        .get_mut(&asker)
        .unwrap()
        .find_node(now, target, QueryOptions::default())
        .unwrap();
    net.flush(asker);
    net.run_for(Duration::from_secs(10));
    let ev = net.take_events(asker);
    let done = ev
        .iter()
        .find_map(|e| match e {
            Event::QueryDone { id, result } if *id == q => Some(result.clone()),
            _ => None,
        })
        .expect("query finished");
    let result = done.unwrap();
    // The true 20 closest (excluding the asker itself, which is not in its own results).
    let mut all: Vec<_> = addrs.iter().filter(|x| **x != asker).copied().collect();
    all.sort_by_key(|x| {
        let id = node_id(x);
        let mut d = [0u8; 32];
        for i in 0..32 {
            d[i] = id[i] ^ target[i];
        }
        d
    });
    let want: Vec<_> = all[..20].to_vec();
    assert_eq!(result.closest_nodes(), want);
}

#[test]
fn user_commands_unknown_without_a_handler_and_queries_commit() {
    let (mut net, addrs) = testnet(25);
    let asker = addrs[3];
    let now = net.now;
    // Nobody handles command 77: every reply is UNKNOWN_COMMAND, so nobody is a closest reply.
    let q = net
        .nodes
        .get_mut(&asker)
        .unwrap()
        .query(
            now,
            [1; 32],
            77,
            None,
            QueryOptions {
                commit: Commit::Auto,
                ..Default::default()
            },
        )
        .unwrap();
    net.flush(asker);
    net.run_for(Duration::from_secs(10));
    let ev = net.take_events(asker);
    assert!(ev.iter().any(|e| matches!(e, Event::QueryDone { id, result: Err(QueryError::TooFewNodes) } if *id == q)), "{ev:?}");
    assert!(!ev.iter().any(|e| matches!(e, Event::QueryReply { .. })));
}

#[test]
fn a_dead_node_is_evicted_by_health_checks() {
    let (mut net, addrs) = testnet(30);
    let victim = addrs[10];
    net.dead.push(victim);
    // Queries finish before their visits to the dead node time out (JS does the same: the
    // slow visit is cancelled with the query), so eviction is the health pings' job:
    // every 8 ticks the oldest nodes are pinged.
    net.run_for(Duration::from_secs(15 * 60));
    let still: Vec<_> = addrs
        .iter()
        .filter(|x| **x != victim)
        .filter(|x| net.nodes[x].table().get(&node_id(&victim)).is_some())
        .collect();
    assert!(
        still.is_empty(),
        "{} nodes still list the dead node",
        still.len()
    );
    for x in addrs.iter().filter(|x| **x != victim) {
        assert!(net.nodes[x].table().len() >= 10, "tables stay full");
    }
}

#[test]
fn down_hints_make_the_receiver_check_the_node() {
    let (mut net, addrs) = testnet(20);
    let receiver = addrs[1];
    let victim = *net.nodes[&receiver]
        .nodes(100)
        .iter()
        .find(|x| **x != addrs[2])
        .unwrap();
    net.dead.push(victim);
    let hint = RequestPacket {
        tid: 1,
        to: receiver,
        id: None,
        token: None,
        internal: true,
        command: DOWN_HINT,
        target: None,
        value: Some(&messages::encode_addr(&victim)),
    }
    .encode();
    let now = net.now;
    let n = net.nodes.get_mut(&receiver).unwrap();
    n.handle_datagram(now, SocketId::SERVER, SocketAddr::V4(addrs[2]), &hint)
        .unwrap();
    net.flush(receiver);
    assert!(net.nodes[&receiver]
        .table()
        .get(&node_id(&victim))
        .is_some());
    net.run_for(Duration::from_secs(6));
    assert!(
        net.nodes[&receiver]
            .table()
            .get(&node_id(&victim))
            .is_none(),
        "the hinted node failed its ping and was removed"
    );
}

#[test]
fn tokens_are_checked_before_the_handler() {
    let (mut net, addrs) = testnet(5);
    let server = addrs[1];
    let from = addrs[2];
    let mut req = RequestPacket {
        tid: 9,
        to: server,
        id: None,
        token: Some([7; 32]),
        internal: false,
        command: 4,
        target: Some([1; 32]),
        value: None,
    }
    .encode();
    let now = net.now;
    let n = net.nodes.get_mut(&server).unwrap();
    n.handle_datagram(now, SocketId::SERVER, SocketAddr::V4(from), &req)
        .unwrap();
    let t = n.poll_transmit().expect("an error reply");
    match messages::decode(&t.bytes).unwrap() {
        Packet::Response(r) => {
            assert_eq!(r.error, ERROR_INVALID_TOKEN);
            assert_eq!(r.token, Some(n.token_for(from.ip())), "with a fresh token");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(n.stats().invalid_tokens, 1);
    // The right token reaches the (absent) handler: UNKNOWN_COMMAND.
    let good = n.token_for(from.ip());
    req = RequestPacket {
        tid: 10,
        to: server,
        id: None,
        token: Some(good),
        internal: false,
        command: 4,
        target: Some([1; 32]),
        value: None,
    }
    .encode();
    n.handle_datagram(now, SocketId::SERVER, SocketAddr::V4(from), &req)
        .unwrap();
    let t = n.poll_transmit().unwrap();
    match messages::decode(&t.bytes).unwrap() {
        Packet::Response(r) => assert_eq!(r.error, ERROR_UNKNOWN_COMMAND),
        other => panic!("{other:?}"),
    }
}

/// On a fast network the bootstrap query can end before the quick firewall probe's PING_NAT
/// is answered (here: the only node answers the query, then the probe). A reachable adaptive
/// node must still find out that it is not firewalled, at once rather than at its next network
/// check 20 minutes later (in JS dht-rpc this late answer is lost).
#[test]
fn a_late_quick_firewall_answer_still_unfirewalls_a_reachable_node() {
    let mut net: Net<Node> = Net::new();
    let boot = a("10.0.0.1:49737");
    net.add(boot, Config::bootstrapper(boot));
    net.run_for(Duration::from_secs(1));
    let me = a("10.0.0.7:40007");
    net.add(
        me,
        Config {
            bootstrap: vec![boot],
            ..Config::default()
        },
    );
    net.run_for(Duration::from_secs(5));
    let n = &net.nodes[&me];
    assert!(n.is_bootstrapped());
    assert!(!n.is_firewalled(), "a reachable node stays firewalled");
    assert_eq!(n.remote_address(), Some(me));
}
