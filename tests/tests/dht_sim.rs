//! The DHT in simulation: hundreds of sans-IO [`HyperDht`] nodes on the seeded virtual network
//! of `hyperpunch_tests::netsim` (latency, jitter and so reordering, loss, duplication, NATs),
//! on virtual time, over many seeds. `HP_SIM_SEEDS=n` runs n seeds per test (default 2).
//!
//! Checked: the bootstrap converges (every node persistent, tables full and correct, each
//! node knows its true closest neighbours), lookups find announcers under loss, records
//! survive node churn, nodes behind NATs and firewalls stay firewalled (their records go
//! through others) while reachable adaptive nodes become persistent, and a run is a pure
//! function of its seed.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hyperpunch_core::crypto::{self, KeyPair};
use hyperpunch_core::dht::rpc::{node_id, table::K, Config};
use hyperpunch_core::dht::{AnnounceOptions, DhtConfig, Event, OpId, OpOutput};
use hyperpunch_tests::netsim::{DhtHost, HostId, LinkModel, Nat, SimNet, SimRng};

const START: Duration = Duration::from_secs(1_700_000_000);
const SEC: Duration = Duration::from_secs(1);
const BOOT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 49737);

fn seeds() -> Vec<u64> {
    let n = std::env::var("HP_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2u64);
    (1..=n).collect()
}

fn ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1 + (i / 250) as u8, (i % 250) as u8, 2)
}

struct World {
    net: SimNet<DhtHost>,
    rng: SimRng,
    next: usize,
}

impl World {
    fn new(seed: u64, link: LinkModel) -> Self {
        let mut net = SimNet::new(seed, START, link);
        let mut rng = SimRng::new(seed.wrapping_mul(31));
        let boot = DhtHost::new(
            DhtConfig::bootstrapper(BOOT),
            *BOOT.ip(),
            BOOT.port(),
            START,
            &mut rng,
        );
        net.add(boot, Nat::Open);
        World { net, rng, next: 0 }
    }

    fn config(ephemeral: Option<bool>, firewalled: bool) -> DhtConfig {
        DhtConfig {
            rpc: Config {
                bootstrap: vec![BOOT],
                ephemeral,
                firewalled,
                ..Config::default()
            },
            ..DhtConfig::default()
        }
    }

    /// A node on its own IP behind `nat`.
    fn add(&mut self, config: DhtConfig, nat: Nat) -> HostId {
        self.next += 1;
        let now = self.net.now;
        let h = DhtHost::new(config, ip(self.next), 40000, now, &mut self.rng);
        self.net.add(h, nat)
    }

    /// A persistent, reachable node (hyperdht testnet style).
    fn add_persistent(&mut self) -> HostId {
        self.add(Self::config(Some(false), false), Nat::Open)
    }

    /// An ephemeral client behind a consistent NAT.
    fn add_client(&mut self) -> HostId {
        let public = Ipv4Addr::new(
            172,
            16 + (self.next / 250) as u8,
            (self.next % 250) as u8,
            9,
        );
        self.add(Self::config(Some(true), true), Nat::consistent(public))
    }

    fn dht(&self, id: HostId) -> &hyperpunch_core::dht::HyperDht {
        &self.net.host(id).expect("live").dht
    }

    /// Start an operation and run until it finishes; its events and result.
    fn op(
        &mut self,
        id: HostId,
        start: impl FnOnce(&mut hyperpunch_core::dht::HyperDht, Duration) -> OpId,
    ) -> (Vec<Event>, OpOutput) {
        let op = self.net.with(id, |h, now| start(&mut h.dht, now));
        let mut evs = Vec::new();
        for _ in 0..600 {
            self.net.run_for(Duration::from_millis(100));
            let Some(h) = self.net.hosts[id].as_mut() else {
                panic!("host gone")
            };
            evs.extend(h.take_events());
            if let Some(r) = evs.iter().find_map(|e| match e {
                Event::OpDone { op: o, result } if *o == op => Some(result.clone()),
                _ => None,
            }) {
                return (evs, r.unwrap_or_else(|e| panic!("op failed: {e}")));
            }
        }
        panic!("operation did not finish in 60 s of virtual time")
    }

    fn lookup_keys(&mut self, id: HostId, topic: [u8; 32]) -> BTreeSet<[u8; 32]> {
        let (evs, _) = self.op(id, |d, now| d.lookup(now, topic).unwrap());
        evs.iter()
            .filter_map(|e| match e {
                Event::Lookup { reply, .. } => Some(reply.peers.iter().map(|p| p.public_key)),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

fn xor_dist(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut d = [0u8; 32];
    for i in 0..32 {
        d[i] = a[i] ^ b[i];
    }
    d
}

/// 250 persistent nodes join one by one under 1% loss and up to 50 ms of jitter.
#[test]
fn bootstrap_converges_and_tables_are_correct() {
    for seed in seeds() {
        let mut w = World::new(seed, LinkModel::default());
        let mut ids = Vec::new();
        for _ in 0..250 {
            ids.push(w.add_persistent());
            w.net.run_for(Duration::from_millis(300));
        }
        w.net.run_for(120 * SEC);

        let all: Vec<(HostId, SocketAddrV4)> = ids
            .iter()
            .map(|&i| (i, w.net.host(i).unwrap().server))
            .collect();
        let live: BTreeSet<SocketAddrV4> = all.iter().map(|x| x.1).chain([BOOT]).collect();
        let mut knows_closest = 0usize;
        let mut closest_total = 0usize;
        let mut table_total = 0usize;
        for &(id, addr) in &all {
            let d = w.dht(id).rpc();
            assert!(d.is_bootstrapped(), "seed {seed}: {addr} not bootstrapped");
            assert_eq!(
                d.id(),
                Some(node_id(&addr)),
                "seed {seed}: {addr} has no/wrong id"
            );
            let t = d.table();
            // A late joiner learns the far rows with its refreshes; everyone knows at least k.
            assert!(
                t.len() >= K,
                "seed {seed}: {addr} knows only {} nodes",
                t.len()
            );
            table_total += t.len();
            // Every table node is a real node, in the row its id belongs to, at most k per row.
            for row in 0..256 {
                let nodes: Vec<_> = t.row(row).collect();
                assert!(nodes.len() <= K);
                for n in nodes {
                    assert!(
                        live.contains(&n.addr),
                        "seed {seed}: unknown node {} in {addr}'s table",
                        n.addr
                    );
                    assert_eq!(n.id, node_id(&n.addr));
                    assert_eq!(t.diff(&n.id), row);
                }
            }
            // Its 8 true closest neighbours should be in its table.
            let me = node_id(&addr);
            let mut others: Vec<_> = live.iter().filter(|a| **a != addr).map(node_id).collect();
            others.sort_by_key(|o| xor_dist(o, &me));
            for o in &others[..8] {
                closest_total += 1;
                if t.get(o).is_some() {
                    knows_closest += 1;
                }
            }
        }
        // A full table for 250 nodes holds about 90 (20 + 20 + 20 + 16 + 8 + 4 + 2 + 1 ...).
        let avg = table_total as f64 / all.len() as f64;
        assert!(
            avg >= 2.5 * K as f64,
            "seed {seed}: tables hold {avg:.1} nodes on average"
        );
        let share = knows_closest as f64 / closest_total as f64;
        assert!(
            share > 0.95,
            "seed {seed}: nodes know {:.1}% of their 8 closest neighbours",
            share * 100.0
        );
        let s = w.net.stats;
        assert!(s.lost > 0 && s.delivered > 10_000, "seed {seed}: {s:?}");
    }
}

/// Clients behind NATs announce 30 topics; other clients find every one, under 3% loss.
#[test]
fn lookups_find_announcers() {
    for seed in seeds() {
        let link = LinkModel {
            loss: 0.03,
            ..LinkModel::default()
        };
        let mut w = World::new(seed, link);
        for _ in 0..150 {
            w.add_persistent();
            w.net.run_for(Duration::from_millis(200));
        }
        w.net.run_for(60 * SEC);
        let announcers: Vec<HostId> = (0..30).map(|_| w.add_client()).collect();
        let finders: Vec<HostId> = (0..10).map(|_| w.add_client()).collect();
        w.net.run_for(10 * SEC);
        let mut topics = Vec::new();
        for (i, &a) in announcers.iter().enumerate() {
            let topic = crypto::hash(format!("topic {i}").as_bytes());
            let key = KeyPair::from_seed(&w.rng.bytes32());
            let (_, out) = w.op(a, |d, now| {
                d.announce(now, topic, &key, vec![], AnnounceOptions::default())
                    .unwrap()
            });
            let OpOutput::Announce { closest_nodes } = out else {
                unreachable!()
            };
            assert!(
                closest_nodes.len() >= 15,
                "seed {seed}: stored on {} nodes",
                closest_nodes.len()
            );
            topics.push((topic, key.public_key));
        }
        for (i, (topic, pk)) in topics.iter().enumerate() {
            let f = finders[i % finders.len()];
            let found = w.lookup_keys(f, *topic);
            assert!(found.contains(pk), "seed {seed}: topic {i} not found");
            assert_eq!(found.len(), 1);
        }
    }
}

/// Announce once, then replace a third of the nodes (crashed ones vanish, new ones join):
/// the 20 replicas are enough for lookups to keep finding the record until it expires. With
/// re-announcing every ~10 minutes (hyperswarm's rule) it survives 30 minutes of continuous
/// churn (longer than a record lives).
#[test]
fn records_survive_churn() {
    for seed in seeds() {
        let mut w = World::new(seed, LinkModel::default());
        let mut nodes = Vec::new();
        for _ in 0..120 {
            nodes.push(w.add_persistent());
            w.net.run_for(Duration::from_millis(200));
        }
        w.net.run_for(60 * SEC);
        let announcer = w.add_client();
        let finder = w.add_client();
        w.net.run_for(5 * SEC);
        let topic = crypto::hash(b"churn");
        let key = KeyPair::from_seed(&[7; 32]);
        let announce = |w: &mut World| {
            let (_, out) = w.op(announcer, |d, now| {
                d.announce(now, topic, &key, vec![], AnnounceOptions::default())
                    .unwrap()
            });
            let OpOutput::Announce { closest_nodes } = out else {
                unreachable!()
            };
            closest_nodes
        };
        let stored = announce(&mut w);
        // Kill 10 of the 20 storing nodes at once, plus 40 others over the next minutes.
        let mut victims: Vec<HostId> = nodes
            .iter()
            .copied()
            .filter(|n| stored.contains(&w.net.host(*n).unwrap().server))
            .take(10)
            .collect();
        for v in &victims {
            w.net.remove(*v);
        }
        for _ in 0..40 {
            let i = w.rng.below(nodes.len() as u64) as usize;
            let v = nodes[i];
            if w.net.host(v).is_some() {
                w.net.remove(v);
                victims.push(v);
            }
            nodes.push(w.add_persistent());
            w.net.run_for(3 * SEC);
        }
        w.net.run_for(60 * SEC);
        assert!(
            w.lookup_keys(finder, topic).contains(&key.public_key),
            "seed {seed}: lost after churn"
        );

        // Continuous churn for 30 minutes with re-announces every 10 minutes.
        for minute in 0..30 {
            if minute % 10 == 9 {
                announce(&mut w);
            }
            for _ in 0..2 {
                let live: Vec<HostId> = nodes
                    .iter()
                    .copied()
                    .filter(|n| w.net.host(*n).is_some())
                    .collect();
                let v = live[w.rng.below(live.len() as u64) as usize];
                w.net.remove(v);
                nodes.push(w.add_persistent());
                w.net.run_for(10 * SEC);
            }
            w.net.run_for(40 * SEC);
        }
        assert!(
            w.lookup_keys(finder, topic).contains(&key.public_key),
            "seed {seed}: lost after 30 minutes of churn with re-announcing"
        );
        // And without re-announcing it expires (records live at most ~27 minutes).
        w.net.run_for(30 * 60 * SEC);
        assert!(
            w.lookup_keys(finder, topic).is_empty(),
            "seed {seed}: record outlived its lifetime"
        );
    }
}

/// Adaptive nodes (JS defaults): reachable ones pass the PING_NAT firewall check after ~20
/// stable minutes and become persistent with the id of their public address; nodes behind a
/// firewall or NAT stay firewalled and ephemeral.
#[test]
fn adaptive_nodes_decide_persistence_from_the_network() {
    for seed in seeds() {
        let mut w = World::new(seed, LinkModel::default());
        for _ in 0..40 {
            w.add_persistent();
            w.net.run_for(Duration::from_millis(200));
        }
        let open: Vec<HostId> = (0..10)
            .map(|_| w.add(World::config(None, true), Nat::Open))
            .collect();
        let walled: Vec<HostId> = (0..5)
            .map(|_| w.add(World::config(None, true), Nat::firewall()))
            .collect();
        let natted: Vec<HostId> = (0..5)
            .map(|i| {
                w.add(
                    World::config(None, true),
                    Nat::consistent(Ipv4Addr::new(172, 31, 0, i as u8 + 1)),
                )
            })
            .collect();
        let random: Vec<HostId> = (0..3)
            .map(|i| {
                w.add(
                    World::config(None, true),
                    Nat::random(Ipv4Addr::new(172, 30, 0, i as u8 + 1)),
                )
            })
            .collect();
        w.net.run_for(60 * SEC);
        for &n in open.iter().chain(&walled).chain(&natted) {
            assert!(
                w.dht(n).rpc().is_ephemeral(),
                "seed {seed}: adaptive nodes start ephemeral"
            );
        }
        w.net.run_for(25 * 60 * SEC);
        for &n in &open {
            let r = w.dht(n).rpc();
            let addr = w.net.host(n).unwrap().server;
            assert!(
                !r.is_firewalled(),
                "seed {seed}: open node still firewalled"
            );
            assert_eq!(
                r.id(),
                Some(node_id(&addr)),
                "seed {seed}: open node not persistent"
            );
        }
        for &n in walled.iter().chain(&natted).chain(&random) {
            let r = w.dht(n).rpc();
            assert!(
                r.is_firewalled() && r.is_ephemeral(),
                "seed {seed}: {n} behind a NAT/firewall became reachable"
            );
        }
        // A NAT'd node knows its public address; a randomizing NAT shows as randomized.
        let (host, port) = w.dht(natted[0]).rpc().nat_address();
        assert_eq!(host, Some(Ipv4Addr::new(172, 31, 0, 1)), "seed {seed}");
        assert_ne!(port, 0);
        assert!(
            w.dht(random[0]).rpc().is_randomized(),
            "seed {seed}: random NAT not detected"
        );
        // Nobody lists an ephemeral node.
        let hidden: BTreeSet<_> = walled
            .iter()
            .chain(&natted)
            .map(|n| node_id(&w.net.host(*n).unwrap().server))
            .collect();
        for id in w.net.live() {
            for h in &hidden {
                assert!(w.dht(id).rpc().table().get(h).is_none());
            }
        }
    }
}

/// Mutable and immutable values under 5% loss.
#[test]
fn values_under_loss() {
    for seed in seeds() {
        let link = LinkModel {
            loss: 0.05,
            ..LinkModel::default()
        };
        let mut w = World::new(seed, link);
        for _ in 0..100 {
            w.add_persistent();
            w.net.run_for(Duration::from_millis(200));
        }
        w.net.run_for(60 * SEC);
        let a = w.add_client();
        let b = w.add_client();
        w.net.run_for(5 * SEC);
        let key = KeyPair::from_seed(&[3; 32]);
        for seq in 0..3u64 {
            let v = format!("value {seq}").into_bytes();
            w.op(a, |d, now| d.mutable_put(now, &key, v, seq).unwrap());
            let (_, out) = w.op(b, |d, now| {
                d.mutable_get(now, key.public_key, 0, true).unwrap()
            });
            let OpOutput::MutableGet(Some(m)) = out else {
                panic!("seed {seed}: {out:?}")
            };
            assert_eq!((m.seq, m.value), (seq, format!("value {seq}").into_bytes()));
        }
        let (_, out) = w.op(a, |d, now| {
            d.immutable_put(now, b"immutable".to_vec()).unwrap()
        });
        let OpOutput::ImmutablePut { hash, .. } = out else {
            unreachable!()
        };
        let (_, out) = w.op(b, |d, now| d.immutable_get(now, hash).unwrap());
        assert!(
            matches!(out, OpOutput::ImmutableGet(Some((ref v, _))) if v == b"immutable"),
            "seed {seed}"
        );
    }
}

/// The same seed gives the same run, datagram for datagram.
#[test]
fn runs_are_deterministic() {
    let run = |seed: u64| {
        let mut w = World::new(seed, LinkModel::default());
        for _ in 0..40 {
            w.add_persistent();
            w.net.run_for(Duration::from_millis(100));
        }
        w.net.run_for(30 * SEC);
        let c = w.add_client();
        w.net.run_for(3 * SEC);
        let key = KeyPair::from_seed(&[1; 32]);
        w.op(c, |d, now| {
            d.announce(now, [5; 32], &key, vec![], AnnounceOptions::default())
                .unwrap()
        });
        w.net.stats
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).trace, run(8).trace);
}
