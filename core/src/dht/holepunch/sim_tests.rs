//! Puncher strategies over a seeded virtual network of two NATs: consistent/consistent,
//! consistent/random and random/consistent (the birthday punch), random/random (no strategy),
//! with endpoint-dependent filtering and TTL-limited session probes.

use super::*;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Consistent,
    Random,
}

/// A NAT with one public IP. Consistent: one public port per local socket. Random: one per
/// (socket, destination). Inbound passes only from an address the mapping has sent to.
pub(crate) struct NatBox {
    pub(crate) ip: Ipv4Addr,
    kind: Kind,
    out: HashMap<(SocketId, SocketAddrV4), u16>,
    inbound: HashMap<u16, (SocketId, HashSet<SocketAddrV4>)>,
    next_port: u16,
    rng: u64,
}

impl NatBox {
    pub(crate) fn new(ip: Ipv4Addr, kind: Kind, seed: u64) -> Self {
        NatBox {
            ip,
            kind,
            out: HashMap::new(),
            inbound: HashMap::new(),
            next_port: 20000,
            rng: seed | 1,
        }
    }
    fn rand_port(&mut self) -> u16 {
        loop {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let p = 1024 + (self.rng % 64000) as u16;
            if !self.inbound.contains_key(&p) {
                return p;
            }
        }
    }
    /// The public source address of a datagram from `sock` to `to` (creating the mapping).
    pub(crate) fn send(&mut self, sock: SocketId, to: SocketAddrV4) -> SocketAddrV4 {
        let key = match self.kind {
            Kind::Consistent => (sock, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            Kind::Random => (sock, to),
        };
        let port = match self.out.get(&key) {
            Some(p) => *p,
            None => {
                let p = match self.kind {
                    Kind::Consistent => {
                        self.next_port += 7;
                        self.next_port
                    }
                    Kind::Random => self.rand_port(),
                };
                self.out.insert(key, p);
                p
            }
        };
        self.inbound
            .entry(port)
            .or_insert_with(|| (sock, HashSet::new()))
            .1
            .insert(to);
        SocketAddrV4::new(self.ip, port)
    }
    pub(crate) fn recv(&self, port: u16, from: SocketAddrV4) -> Option<SocketId> {
        let (sock, allowed) = self.inbound.get(&port)?;
        allowed.contains(&from).then_some(*sock)
    }
}

struct Side {
    p: Puncher,
    nat: NatBox,
    open: HashSet<SocketId>,
    connected: Option<(SocketId, SocketAddrV4)>,
    aborted: bool,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ev {
    at: u64,
    seq: u64,
    to_side: usize,
    to_port: u16,
    from: SocketAddrV4,
}

const LATENCY: u64 = 15;

fn dht_nodes() -> Vec<SocketAddrV4> {
    (1..=6)
        .map(|i| SocketAddrV4::new(Ipv4Addr::new(50, 0, 0, i), 49737))
        .collect()
}

fn drain(
    sides: &mut [Side; 2],
    i: usize,
    now: u64,
    q: &mut BinaryHeap<Reverse<Ev>>,
    seq: &mut u64,
    lim: &mut RandomPunchLimiter,
) {
    while let Some(a) = sides[i].p.poll_action() {
        match a {
            PunchAction::OpenSocket(s) => {
                sides[i].open.insert(s);
            }
            PunchAction::ReleaseSocket(s) => {
                sides[i].open.remove(&s);
            }
            PunchAction::NatPing { socket, to } => {
                let seen = sides[i].nat.send(socket, to);
                sides[i].p.handle_nat_pong(socket, seen, to);
            }
            PunchAction::Probe { socket, to, ttl } => {
                assert!(
                    sides[i].open.contains(&socket),
                    "probe from a socket not open"
                );
                let from = sides[i].nat.send(socket, to);
                if ttl >= 10 {
                    let other = 1 - i;
                    if *to.ip() == sides[other].nat.ip {
                        *seq += 1;
                        q.push(Reverse(Ev {
                            at: now + LATENCY,
                            seq: *seq,
                            to_side: other,
                            to_port: to.port(),
                            from,
                        }));
                    }
                }
            }
            PunchAction::Connected { socket, addr } => sides[i].connected = Some((socket, addr)),
            PunchAction::Aborted => sides[i].aborted = true,
        }
    }
    let _ = lim;
}

/// Runs one punch; returns (client connected, events of sim time in ms).
fn run(client: Kind, server: Kind, seed: u64) -> (bool, bool, u64) {
    let nodes = dht_nodes();
    let mut lim = [RandomPunchLimiter::default(), RandomPunchLimiter::default()];
    let mut sides = [
        Side {
            p: Puncher::new(true, Firewall::Unknown, true, nodes.clone(), seed),
            nat: NatBox::new(Ipv4Addr::new(1, 1, 1, 1), client, seed * 3 + 1),
            open: HashSet::new(),
            connected: None,
            aborted: false,
        },
        Side {
            p: Puncher::new(false, Firewall::Unknown, true, nodes.clone(), seed + 99),
            nat: NatBox::new(Ipv4Addr::new(2, 2, 2, 2), server, seed * 5 + 2),
            open: HashSet::new(),
            connected: None,
            aborted: false,
        },
    ];
    let mut q = BinaryHeap::new();
    let mut seq = 0;
    for i in 0..2 {
        let mut l = lim[i].clone();
        drain(&mut sides, i, 0, &mut q, &mut seq, &mut l);
        lim[i] = l;
        assert!(sides[i].p.analyze().is_some(), "analysis finished");
    }
    let fw = [sides[0].p.nat.firewall, sides[1].p.nat.firewall];
    let expect = |k: Kind| {
        if k == Kind::Consistent {
            Firewall::Consistent
        } else {
            Firewall::Random
        }
    };
    assert_eq!(fw, [expect(client), expect(server)]);
    // Exchange the round-1 payloads; tokens were echoed, so each side's host is verified.
    for i in 0..2 {
        let o = 1 - i;
        let addrs = sides[o].p.nat.addresses.clone().unwrap();
        let host = sides[o].nat.ip;
        sides[i]
            .p
            .update_remote(true, fw[o], Some(&addrs), Some(host));
    }
    let started = [
        sides[0].p.punch(0, &mut lim[0]),
        sides[1].p.punch(0, &mut lim[1]),
    ];
    if !started[0] || !started[1] {
        return (false, started[0] || started[1], 0);
    }
    let mut now = 0;
    while now < 60_000 && sides[0].connected.is_none() && !sides[0].aborted {
        for (i, l) in lim.iter_mut().enumerate() {
            drain(&mut sides, i, now, &mut q, &mut seq, l);
        }
        let next_timer = [sides[0].p.poll_timeout(), sides[1].p.poll_timeout()];
        let next_ev = q.peek().map(|Reverse(e)| e.at);
        let Some(next) = next_timer.iter().flatten().copied().chain(next_ev).min() else {
            break;
        };
        now = next;
        while q.peek().is_some_and(|Reverse(e)| e.at <= now) {
            let Reverse(e) = q.pop().unwrap();
            if let Some(sock) = sides[e.to_side].nat.recv(e.to_port, e.from) {
                if sides[e.to_side].open.contains(&sock) {
                    let mut l = lim[e.to_side].clone();
                    sides[e.to_side].p.handle_probe(sock, e.from, now, &mut l);
                    lim[e.to_side] = l;
                }
            }
        }
        for i in 0..2 {
            sides[i].p.handle_timeout(now, &mut lim[i]);
        }
    }
    let ok = sides[0].connected.is_some();
    if ok {
        // Only the winning socket stays open on the client.
        let (sock, _) = sides[0].connected.unwrap();
        let mut l = lim[0].clone();
        drain(&mut sides, 0, now, &mut q, &mut seq, &mut l);
        assert_eq!(
            sides[0].open.iter().copied().collect::<Vec<_>>(),
            vec![sock]
        );
        assert_eq!(l.punches, 0);
    }
    (ok, true, now)
}

#[test]
fn consistent_to_consistent_connects_in_a_few_rounds() {
    for seed in 1..=20 {
        let (ok, started, at) = run(Kind::Consistent, Kind::Consistent, seed);
        assert!(started && ok, "seed {seed}");
        assert!(at <= 2_000, "seed {seed}: {at} ms");
    }
}

#[test]
fn birthday_punch_connects_random_to_consistent_both_ways() {
    let mut ok_count = 0;
    let seeds = 1..=12u64;
    let n = seeds.clone().count();
    let mut times = BTreeMap::new();
    for seed in seeds {
        for (c, s) in [
            (Kind::Random, Kind::Consistent),
            (Kind::Consistent, Kind::Random),
        ] {
            let (ok, started, at) = run(c, s, seed);
            assert!(started, "seed {seed}");
            if ok {
                ok_count += 1;
                times.insert((seed, c == Kind::Random), at);
            }
        }
    }
    // 256 sockets against 64536 ports: each probe hits with p ~ 1/252, so 1750 probes
    // (35 s) succeed with p > 0.999 per run.
    assert!(
        ok_count >= 2 * n - 1,
        "{ok_count} of {} connected: {times:?}",
        2 * n
    );
}

#[test]
fn random_to_random_has_no_strategy() {
    let (ok, started, _) = run(Kind::Random, Kind::Random, 7);
    assert!(!ok && !started);
}

#[test]
fn responder_echoes_and_initiator_takes_the_first_probe() {
    let mut lim = RandomPunchLimiter::default();
    let a = SocketAddrV4::new(Ipv4Addr::new(9, 9, 9, 9), 9);
    let mut r = Puncher::new(false, Firewall::Consistent, true, vec![], 1);
    while r.poll_action().is_some() {}
    r.handle_probe(0, a, 0, &mut lim);
    assert_eq!(
        r.poll_action(),
        Some(PunchAction::Probe {
            socket: 0,
            to: a,
            ttl: DEFAULT_TTL
        })
    );
    // A probe on a socket the puncher does not own is ignored.
    r.handle_probe(77, a, 0, &mut lim);
    assert_eq!(r.poll_action(), None);
    let mut i = Puncher::new(true, Firewall::Consistent, true, vec![], 1);
    while i.poll_action().is_some() {}
    i.handle_probe(0, a, 0, &mut lim);
    i.handle_probe(0, a, 0, &mut lim);
    assert_eq!(
        i.poll_action(),
        Some(PunchAction::Connected { socket: 0, addr: a })
    );
    assert_eq!(i.poll_action(), None);
}

#[test]
fn unstable_nat_reopens_at_most_three_times() {
    let nodes = dht_nodes();
    let mut p = Puncher::new(true, Firewall::Random, true, nodes.clone(), 5);
    let mut nat = NatBox::new(Ipv4Addr::new(3, 3, 3, 3), Kind::Random, 11);
    let mut opened = 0;
    let mut run = |p: &mut Puncher, nat: &mut NatBox| {
        while let Some(a) = p.poll_action() {
            match a {
                PunchAction::OpenSocket(_) => opened += 1,
                PunchAction::NatPing { socket, to } => {
                    let seen = nat.send(socket, to);
                    p.handle_nat_pong(socket, seen, to);
                }
                _ => {}
            }
        }
    };
    run(&mut p, &mut nat);
    assert_eq!(p.analyze(), Some(false));
    p.start_reopen();
    run(&mut p, &mut nat);
    assert_eq!(p.reopen_result(), Some(false));
    assert_eq!(opened, 1 + MAX_REOPENS);
}

#[test]
fn match_address_prefers_the_longest_prefix() {
    let l = [SocketAddrV4::new(Ipv4Addr::new(192, 168, 122, 238), 1)];
    let r = [
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 0, 23), 2),
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 122, 1), 3),
    ];
    assert_eq!(match_address(&l, &r), Some(r[1]));
    assert_eq!(match_address(&l, &r[..1]), Some(r[0]));
    assert_eq!(
        match_address(&l, &[SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1)]),
        None
    );
}
