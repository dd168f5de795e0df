//! Deterministic replication tests: replicators on [`MemoryStorage`] joined by a virtual network
//! with seeded per-message delays (FIFO per link, reordered across links), and hubs joined by
//! protomux frames.

use std::collections::{BTreeMap, BTreeSet};

use futures_executor::block_on;

use super::*;
use crate::crypto::KeyPair;
use crate::hypercore::messages::{Message, NoData, Request, RequestUpgrade, Sync};
use crate::hypercore::{
    CreateOptions, Hypercore, HypercoreError, OpenOptions, ProofError, ProofRequest,
};
use crate::storage::MemoryStorage;

type Rep = Replicator<MemoryStorage>;

fn block(i: u64, tag: &str) -> Vec<u8> {
    format!("{tag} block #{i} {}", "x".repeat((i % 7) as usize)).into_bytes()
}

async fn writer(
    n: u64,
    encryption_key: Option<[u8; 32]>,
) -> (Hypercore<MemoryStorage>, MemoryStorage) {
    let storage = MemoryStorage::new();
    let mut core = Hypercore::create(
        storage.clone(),
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[7; 32])),
            encryption_key,
            ..CreateOptions::default()
        },
    )
    .await
    .unwrap();
    for i in 0..n {
        core.append(&[&block(i, "v0")]).await.unwrap();
    }
    (core, storage)
}

async fn reader(key: [u8; 32], encryption_key: Option<[u8; 32]>) -> Hypercore<MemoryStorage> {
    Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key: Some(key),
            encryption_key,
            ..CreateOptions::default()
        },
    )
    .await
    .unwrap()
}

/// xorshift64*: the tests' only randomness, seeded.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

struct Pending {
    at: u64,
    seq: u64,
    to: usize,
    peer: PeerId,
    msg: Message,
}

/// Replicators joined by links; `handle_message` in delivery order.
struct Net {
    reps: Vec<Rep>,
    links: BTreeMap<(usize, PeerId), (usize, PeerId)>,
    link_clock: BTreeMap<(usize, PeerId), u64>,
    queue: Vec<Pending>,
    events: Vec<Vec<Event>>,
    sent: Vec<Vec<(PeerId, Message)>>,
    /// Nodes whose outgoing `data` blocks get a byte flipped.
    corrupt: BTreeSet<usize>,
    /// Nodes that never answer (messages to them vanish).
    deaf: BTreeSet<usize>,
    /// Extra one-way latency (ms) of everything a node sends.
    slow: BTreeMap<usize, u64>,
    rng: Rng,
    max_delay: u64,
    now: u64,
    seq: u64,
    /// Deliver with [`Replicator::handle_messages`]: the first due message of a link together
    /// with every later one on that link due within `max_delay` (as a transport reading several
    /// frames at once does).
    batch: bool,
    /// Largest number of messages delivered in one `handle_messages` call.
    largest_batch: usize,
}

impl Net {
    fn new(reps: Vec<Rep>, seed: u64) -> Self {
        let n = reps.len();
        Net {
            reps,
            links: BTreeMap::new(),
            link_clock: BTreeMap::new(),
            queue: Vec::new(),
            events: vec![Vec::new(); n],
            sent: vec![Vec::new(); n],
            corrupt: BTreeSet::new(),
            deaf: BTreeSet::new(),
            slow: BTreeMap::new(),
            rng: Rng(seed | 1),
            max_delay: 20,
            now: 1000,
            seq: 0,
            batch: false,
            largest_batch: 0,
        }
    }

    fn connect(&mut self, a: usize, b: usize) -> (PeerId, PeerId) {
        let pa = self.reps[a].add_peer();
        let pb = self.reps[b].add_peer();
        self.links.insert((a, pa), (b, pb));
        self.links.insert((b, pb), (a, pa));
        self.collect();
        (pa, pb)
    }

    fn collect(&mut self) {
        for from in 0..self.reps.len() {
            while let Some((peer, mut msg)) = self.reps[from].poll_transmit() {
                self.sent[from].push((peer, msg.clone()));
                let Some(&(to, to_peer)) = self.links.get(&(from, peer)) else {
                    continue;
                };
                if self.deaf.contains(&to) {
                    continue;
                }
                if self.corrupt.contains(&from) {
                    if let Message::Data(d) = &mut msg {
                        if let Some(b) = d.block.as_mut() {
                            b.value[0] ^= 1;
                        }
                    }
                }
                let jitter =
                    self.rng.next() % self.max_delay + self.slow.get(&from).copied().unwrap_or(0);
                let clock = self.link_clock.entry((from, peer)).or_default();
                let at = (*clock).max(self.now + 1 + jitter);
                *clock = at;
                self.seq += 1;
                self.queue.push(Pending {
                    at,
                    seq: self.seq,
                    to,
                    peer: to_peer,
                    msg,
                });
            }
            while let Some(e) = self.reps[from].poll_event() {
                self.events[from].push(e);
            }
        }
    }

    /// Deliver one message (or fire one timer). False when nothing is left to do.
    fn step(&mut self) -> bool {
        self.collect();
        let next = self
            .queue
            .iter()
            .enumerate()
            .min_by_key(|(_, p)| (p.at, p.seq))
            .map(|(i, p)| (i, p.at));
        let timer = (0..self.reps.len())
            .filter_map(|i| self.reps[i].poll_timeout().map(|t| (t, i)))
            .min();
        match (next, timer) {
            (Some((i, at)), t) if t.is_none_or(|(t, _)| at <= t) => {
                let p = self.queue.swap_remove(i);
                self.now = self.now.max(p.at);
                let (to, peer) = (p.to, p.peer);
                if self.batch {
                    let horizon = p.at + self.max_delay;
                    let (mut group, rest): (Vec<Pending>, Vec<Pending>) =
                        std::mem::take(&mut self.queue)
                            .into_iter()
                            .partition(|q| q.to == to && q.peer == peer && q.at <= horizon);
                    self.queue = rest;
                    group.push(p);
                    group.sort_by_key(|q| q.seq);
                    self.now = group.iter().map(|q| q.at).fold(self.now, u64::max);
                    self.largest_batch = self.largest_batch.max(group.len());
                    if self.reps[to].peers().any(|x| x == peer) {
                        let msgs = group.into_iter().map(|q| q.msg);
                        block_on(self.reps[to].handle_messages(self.now, peer, msgs)).unwrap();
                    }
                } else if self.reps[to].peers().any(|x| x == peer) {
                    block_on(self.reps[to].handle_message(self.now, peer, p.msg)).unwrap();
                }
            }
            (_, Some((t, i))) => {
                self.now = self.now.max(t);
                block_on(self.reps[i].handle_timeout(self.now)).unwrap();
            }
            _ => return false,
        }
        self.collect();
        true
    }

    fn run_until(&mut self, mut done: impl FnMut(&Net) -> bool) {
        for _ in 0..200_000 {
            if done(self) {
                return;
            }
            if !self.step() {
                break;
            }
        }
        if !done(self) {
            for (i, r) in self.reps.iter().enumerate() {
                let peers: Vec<_> = r.peers().map(|p| (p, r.peer_info(p))).collect();
                eprintln!("node {i}: len {} peers {peers:?}", r.core().length());
            }
            panic!("network went idle before the condition held");
        }
    }

    fn run_idle(&mut self) {
        for _ in 0..200_000 {
            if !self.step() {
                return;
            }
        }
        panic!("network never went idle");
    }

    fn has_all(&self, node: usize, len: u64) -> bool {
        let c = self.reps[node].core();
        c.length() == len && (0..len).all(|i| c.has(i))
    }
}

async fn check_blocks(core: &Hypercore<MemoryStorage>, tag: &str, range: std::ops::Range<u64>) {
    for i in range {
        assert_eq!(core.get(i).await.unwrap(), Some(block(i, tag)), "block {i}");
    }
}

fn pair(n: u64, seed: u64) -> Net {
    block_on(async {
        let (w, _) = writer(n, None).await;
        let r = reader(*w.key(), None).await;
        Net::new(
            vec![
                Rep::new(w, Options::default()),
                Rep::new(r, Options::default()),
            ],
            seed,
        )
    })
}

#[test]
fn full_download_every_block_verified() {
    for seed in [1, 2, 3, 99] {
        let mut net = pair(300, seed);
        net.connect(0, 1);
        let id = block_on(net.reps[1].download(net.now, 0, Some(300))).unwrap();
        net.run_until(|n| n.events[1].contains(&Event::Downloaded { id }));
        assert!(net.has_all(1, 300));
        let core = net.reps[1].core();
        block_on(core.verify_all()).unwrap();
        block_on(check_blocks(core, "v0", 0..300));
        assert!(core.manifest().is_some());
        assert!(net.events[1].contains(&Event::Upgraded {
            length: 300,
            fork: 0
        }));
        // Request ids are 1-based, small (reused after their round trip) and never 0.
        let ids: BTreeSet<u64> = net.sent[1]
            .iter()
            .filter_map(|(_, m)| match m {
                Message::Request(r) => Some(r.id),
                _ => None,
            })
            .collect();
        assert!(
            !ids.contains(&0) && ids.iter().all(|&i| i <= MAX_INFLIGHT as u64 + 1),
            "{ids:?}"
        );
        net.run_idle();
        assert_eq!(net.reps[1].inflight(), 0);
    }
}

#[test]
fn sparse_single_block_get() {
    let mut net = pair(100, 5);
    net.connect(0, 1);
    // Nothing wanted: only the upgrade happens, no block moves.
    net.run_idle();
    assert_eq!(net.reps[1].core().length(), 100);
    assert_eq!(net.reps[1].core().bitfield().count(0, 100, true), 0);
    let id = block_on(net.reps[1].download(net.now, 37, Some(38))).unwrap();
    net.run_until(|n| n.events[1].contains(&Event::Downloaded { id }));
    let core = net.reps[1].core();
    assert!(core.has(37));
    assert_eq!(core.bitfield().count(0, 100, true), 1);
    block_on(check_blocks(core, "v0", 37..38));
    let blocks: Vec<&Event> = net.events[1]
        .iter()
        .filter(|e| matches!(e, Event::Block { .. }))
        .collect();
    assert_eq!(blocks.len(), 1);
}

#[test]
fn get_beyond_known_length_waits_for_upgrade() {
    let mut net = pair(10, 8);
    // Wanted before any peer exists: completes once a peer upgrades us.
    let id = block_on(net.reps[1].download(net.now, 9, Some(10))).unwrap();
    net.connect(0, 1);
    net.run_until(|n| n.events[1].contains(&Event::Downloaded { id }));
    assert!(net.reps[1].core().has(9));
}

#[test]
fn live_append_propagates_without_polling() {
    let mut net = pair(5, 11);
    net.connect(0, 1);
    block_on(net.reps[1].download(net.now, 0, None)).unwrap();
    net.run_until(|n| n.has_all(1, 5));
    for round in 0..5u64 {
        let len = net.reps[0].core().length();
        let b = block(len, "v0");
        let now = net.now;
        block_on(net.reps[0].append(now, &[&b])).unwrap();
        net.run_until(|n| n.has_all(1, len + 1));
        assert!(net.events[1].contains(&Event::Upgraded {
            length: len + 1,
            fork: 0
        }));
        assert_eq!(round + 6, net.reps[1].core().length());
    }
    block_on(check_blocks(net.reps[1].core(), "v0", 0..10));
    // The writer learned the reader's length (its sync acknowledged it).
    net.run_idle();
    let w_peer = net.reps[0].peers().next().unwrap();
    assert_eq!(net.reps[0].peer_info(w_peer).unwrap().remote_length, 10);
}

#[test]
fn writer_truncation_reorgs_the_reader() {
    let mut net = pair(10, 21);
    net.connect(0, 1);
    block_on(net.reps[1].download(net.now, 0, None)).unwrap();
    net.run_until(|n| n.has_all(1, 10));
    let now = net.now;
    block_on(net.reps[0].truncate(now, 7, None)).unwrap();
    for i in 7..12 {
        block_on(net.reps[0].append(now, &[&block(i, "v1")])).unwrap();
    }
    net.run_until(|n| n.has_all(1, 12) && n.reps[1].core().fork() == 1);
    assert!(net.events[1]
        .iter()
        .any(|e| matches!(e, Event::Reorg { fork: 1, .. })));
    let core = net.reps[1].core();
    block_on(core.verify_all()).unwrap();
    block_on(check_blocks(core, "v0", 0..7));
    block_on(check_blocks(core, "v1", 7..12));
    // No honest peer got punished for answering a request of the old fork.
    assert!(!net.events[1]
        .iter()
        .any(|e| matches!(e, Event::InvalidData { .. })));
}

#[test]
fn reorg_keeps_every_block_before_the_fork_point() {
    for seed in 1..=10u64 {
        let mut rng = Rng(seed * 101);
        let n = 20 + rng.next() % 50;
        let cut = 1 + rng.next() % (n - 1);
        let added = 1 + rng.next() % 12;
        let mut net = pair(n, seed);
        net.connect(0, 1);
        block_on(net.reps[1].download(net.now, 0, None)).unwrap();
        net.run_until(|x| x.has_all(1, n));
        let now = net.now;
        block_on(net.reps[0].truncate(now, cut, None)).unwrap();
        for i in cut..cut + added {
            block_on(net.reps[0].append(now, &[&block(i, "v1")])).unwrap();
        }
        let before = net.events[1].len();
        let total = cut + added;
        net.run_until(|x| x.has_all(1, total) && x.reps[1].core().fork() == 1);
        let after = &net.events[1][before..];
        assert!(after
            .iter()
            .any(|e| matches!(e, Event::Reorg { fork: 1, .. })));
        // Only the blocks past the fork point moved again.
        let fetched: BTreeSet<u64> = after
            .iter()
            .filter_map(|e| match e {
                Event::Block { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        assert_eq!(
            fetched,
            (cut..total).collect(),
            "seed {seed}: n {n} cut {cut} added {added}"
        );
        let core = net.reps[1].core();
        block_on(core.verify_all()).unwrap();
        block_on(check_blocks(core, "v0", 0..cut));
        block_on(check_blocks(core, "v1", cut..total));
        assert!(!net.events[1]
            .iter()
            .any(|e| matches!(e, Event::InvalidData { .. })));
    }
}

#[test]
fn reorg_through_a_peer_without_blocks_keeps_the_shared_roots() {
    for seed in [7, 8, 9] {
        // W (0) writes 24 blocks; R (1) holds them all; P (2) only follows the length.
        let mut net = block_on(async {
            let (w, _) = writer(24, None).await;
            let key = *w.key();
            Net::new(
                vec![
                    Rep::new(w, Options::default()),
                    Rep::new(reader(key, None).await, Options::default()),
                    Rep::new(reader(key, None).await, Options::default()),
                ],
                seed,
            )
        });
        let (_, w_at_r) = net.connect(0, 1);
        net.connect(0, 2);
        block_on(net.reps[1].download(net.now, 0, None)).unwrap();
        net.run_until(|x| x.has_all(1, 24) && x.reps[2].core().length() == 24);
        net.reps[1].forget_peer(w_at_r);
        let now = net.now;
        block_on(net.reps[0].truncate(now, 21, None)).unwrap();
        block_on(net.reps[0].append(now, &[&block(21, "v1")])).unwrap();
        net.run_until(|x| x.reps[2].core().fork() == 1);
        // R meets P only: P proves fork 1 but holds no block to narrow the fork point with.
        net.connect(1, 2);
        net.run_until(|x| x.reps[1].core().fork() == 1);
        let core = net.reps[1].core();
        assert_eq!(core.length(), 22);
        // Roots of 22 are 0..16, 16..20, 20..22: the first two are shared and kept.
        assert_eq!(core.bitfield().count(0, 22, true), 20);
        block_on(check_blocks(core, "v0", 0..20));
        assert!(!net.events[1]
            .iter()
            .any(|e| matches!(e, Event::InvalidData { .. })));
        // Meeting W, R fetches what it dropped.
        block_on(net.reps[1].download(net.now, 0, None)).unwrap();
        net.connect(0, 1);
        net.run_until(|x| x.has_all(1, 22));
        let core = net.reps[1].core();
        block_on(core.verify_all()).unwrap();
        block_on(check_blocks(core, "v0", 0..21));
        block_on(check_blocks(core, "v1", 21..22));
    }
}

/// A writer that appends and truncates at random while two readers (connected to it and to each
/// other) download random ranges, seek and follow its forks: afterwards both hold exactly the
/// writer's blocks, and no honest peer was ever punished.
#[test]
fn random_appends_truncations_and_reads_converge() {
    for seed in 1..=12u64 {
        let mut rng = Rng(seed * 7717);
        let mut net = block_on(async {
            let (w, _) = writer(10, None).await;
            let key = *w.key();
            Net::new(
                vec![
                    Rep::new(w, Options::default()),
                    Rep::new(reader(key, None).await, Options::default()),
                    Rep::new(reader(key, None).await, Options::default()),
                ],
                seed,
            )
        });
        // Odd seeds deliver in batches (blocks stored together).
        net.batch = seed % 2 == 1;
        net.connect(0, 1);
        net.connect(0, 2);
        net.connect(1, 2);
        // Block i written in round `r` is `block(i, "r{r}")`.
        let mut tags: Vec<String> = (0..10).map(|_| "v0".to_string()).collect();
        for round in 1..=25u64 {
            let now = net.now;
            match rng.next() % 6 {
                0 | 1 => {
                    let len = net.reps[0].core().length();
                    for i in len..len + 1 + rng.next() % 4 {
                        let tag = format!("r{round}");
                        block_on(net.reps[0].append(now, &[&block(i, &tag)])).unwrap();
                        tags.push(tag);
                    }
                }
                2 => {
                    let len = net.reps[0].core().length();
                    let to = len - rng.next() % len.min(6);
                    block_on(net.reps[0].truncate(now, to, None)).unwrap();
                    tags.truncate(to as usize);
                }
                3 | 4 => {
                    let node = 1 + (rng.next() % 2) as usize;
                    let len = net.reps[0].core().length();
                    let start = rng.next() % len;
                    let end = start + 1 + rng.next() % 8;
                    block_on(net.reps[node].download(now, start, Some(end))).unwrap();
                }
                _ => {
                    let node = 1 + (rng.next() % 2) as usize;
                    let bytes = rng.next() % (net.reps[0].core().byte_length() + 1);
                    block_on(net.reps[node].seek(now, bytes)).unwrap();
                }
            }
            for _ in 0..rng.next() % 40 {
                if !net.step() {
                    break;
                }
            }
        }
        let len = net.reps[0].core().length();
        let fork = net.reps[0].core().fork();
        for node in [1, 2] {
            block_on(net.reps[node].download(net.now, 0, None)).unwrap();
        }
        net.run_until(|x| {
            [1, 2]
                .iter()
                .all(|&n| x.has_all(n, len) && x.reps[n].core().fork() == fork)
        });
        net.run_idle();
        for node in [1, 2] {
            let core = net.reps[node].core();
            block_on(core.verify_all()).unwrap();
            for (i, tag) in tags.iter().enumerate() {
                let i = i as u64;
                assert_eq!(
                    block_on(core.get(i)).unwrap(),
                    Some(block(i, tag)),
                    "seed {seed} node {node} block {i}"
                );
            }
            assert!(
                !net.events[node].iter().any(|e| matches!(
                    e,
                    Event::InvalidData { .. } | Event::Conflict { .. } | Event::Disconnect { .. }
                )),
                "seed {seed} node {node}: {:?}",
                net.events[node]
                    .iter()
                    .filter(|e| matches!(e, Event::InvalidData { .. }))
                    .collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn encrypted_core_replicates() {
    let key = Some([9u8; 32]);
    let mut net = block_on(async {
        let (w, _) = writer(40, key).await;
        let r = reader(*w.key(), key).await;
        Net::new(
            vec![
                Rep::new(w, Options::default()),
                Rep::new(r, Options::default()),
            ],
            4,
        )
    });
    net.connect(0, 1);
    let id = block_on(net.reps[1].download(net.now, 0, Some(40))).unwrap();
    net.run_until(|n| n.events[1].contains(&Event::Downloaded { id }));
    let core = net.reps[1].core();
    assert!(core.encrypted());
    block_on(core.verify_all()).unwrap();
    block_on(check_blocks(core, "v0", 0..40));
    // On the wire the blocks were ciphertext.
    let plain = block(3, "v0");
    assert!(net.sent[0].iter().all(|(_, m)| match m {
        Message::Data(d) => d.block.as_ref().is_none_or(|b| !b.value.ends_with(&plain)),
        _ => true,
    }));
}

/// Writer (0), a bad copy of it (1) that corrupts its blocks, a reader (2) connected to both.
fn with_bad_peer(opts: Options, seed: u64) -> Net {
    block_on(async {
        let (w, storage) = writer(64, None).await;
        let key = *w.key();
        let copy = Hypercore::open(storage.clone(), OpenOptions::default())
            .await
            .unwrap();
        let r = reader(key, None).await;
        Net::new(
            vec![
                Rep::new(w, Options::default()),
                Rep::new(copy, Options::default()),
                Rep::new(r, opts),
            ],
            seed,
        )
    })
}

#[test]
fn bad_proofs_pause_the_peer_and_blocks_come_from_the_good_one() {
    let mut net = with_bad_peer(Options::default(), 31);
    net.corrupt.insert(1);
    let (_, _bad_at_reader) = net.connect(1, 2);
    net.connect(0, 2);
    let bad = _bad_at_reader;
    let id = block_on(net.reps[2].download(net.now, 0, Some(64))).unwrap();
    net.run_until(|n| n.events[2].contains(&Event::Downloaded { id }));
    assert!(net.events[2]
        .iter()
        .any(|e| matches!(e, Event::InvalidData { peer, .. } if *peer == bad)));
    let info = net.reps[2].peer_info(bad).unwrap();
    assert!(info.invalid_data >= 1);
    // Each bad proof made us check for a fork (request id 0); the honest tree answer means no
    // conflict, and JS resumes such a peer.
    let checks = net.sent[2]
        .iter()
        .filter(|(p, m)| *p == bad && matches!(m, Message::Request(r) if r.id == 0))
        .count() as u64;
    // One check per pause, not one per bad answer already in flight.
    assert!(
        checks >= 1 && checks < info.invalid_data,
        "{checks} {info:?}"
    );
    assert!(!net.reps[2].is_frozen());
    assert!(!net.events[2]
        .iter()
        .any(|e| matches!(e, Event::Conflict { .. })));
    // Every stored block came from the good peer.
    assert!(net.events[2]
        .iter()
        .all(|e| !matches!(e, Event::Block { peer, .. } if *peer == bad)));
    block_on(net.reps[2].core().verify_all()).unwrap();
    block_on(check_blocks(net.reps[2].core(), "v0", 0..64));
}

/// Messages delivered in batches (blocks stored together): a full download from two peers, one
/// of them corrupting its blocks, ends as with one message at a time: every block verified and
/// from the good peer, the bad one paused and checked for a fork, never disconnected; with
/// `disconnect_on_invalid_data`, disconnected.
#[test]
fn batched_delivery_punishes_only_bad_proofs() {
    for seed in 40..48 {
        // The JS-sized window (48), so that both peers get requests for the 64 blocks.
        let opts = Options {
            inflight_bytes: 0,
            ..Options::default()
        };
        let mut net = with_bad_peer(opts, seed);
        net.batch = true;
        net.corrupt.insert(1);
        let (_, bad) = net.connect(1, 2);
        let (_, good) = net.connect(0, 2);
        let id = block_on(net.reps[2].download(net.now, 0, Some(64))).unwrap();
        net.run_until(|n| n.events[2].contains(&Event::Downloaded { id }));
        assert!(net.largest_batch > 4, "seed {seed}: {}", net.largest_batch);
        let info = net.reps[2].peer_info(bad).unwrap();
        assert!(info.invalid_data >= 1, "seed {seed}");
        assert!(net.reps[2].peer_info(good).is_some());
        assert!(net.sent[2]
            .iter()
            .any(|(p, m)| *p == bad && matches!(m, Message::Request(r) if r.id == 0)));
        assert!(!net.reps[2].is_frozen());
        let mut blocks = BTreeSet::new();
        for e in &net.events[2] {
            if let Event::Block { peer, index } = e {
                assert_eq!(*peer, good, "seed {seed}");
                blocks.insert(*index);
            }
        }
        assert_eq!(blocks.len(), 64, "seed {seed}");
        block_on(net.reps[2].core().verify_all()).unwrap();
        block_on(check_blocks(net.reps[2].core(), "v0", 0..64));

        let opts = Options {
            disconnect_on_invalid_data: true,
            inflight_bytes: 0,
            ..Options::default()
        };
        let mut net = with_bad_peer(opts, seed);
        net.batch = true;
        net.corrupt.insert(1);
        let (_, bad) = net.connect(1, 2);
        net.connect(0, 2);
        let id = block_on(net.reps[2].download(net.now, 0, Some(64))).unwrap();
        net.run_until(|n| n.events[2].contains(&Event::Downloaded { id }));
        assert!(net.reps[2].peer_info(bad).is_none(), "seed {seed}");
        block_on(check_blocks(net.reps[2].core(), "v0", 0..64));
    }
}

/// Batched delivery through appends, truncations (reorgs) and downloads converges like single
/// delivery does.
#[test]
fn batched_delivery_follows_reorgs() {
    for seed in 50..54 {
        let mut net = pair(40, seed);
        net.batch = true;
        net.connect(0, 1);
        block_on(net.reps[1].download(net.now, 0, None)).unwrap();
        net.run_until(|n| n.has_all(1, 40));
        block_on(net.reps[0].truncate(net.now, 25, None)).unwrap();
        let more: Vec<Vec<u8>> = (25..60).map(|i| block(i, "v1")).collect();
        let refs: Vec<&[u8]> = more.iter().map(Vec::as_slice).collect();
        block_on(net.reps[0].append(net.now, &refs)).unwrap();
        net.run_until(|n| n.has_all(1, 60) && n.reps[1].core().fork() == 1);
        block_on(check_blocks(net.reps[1].core(), "v0", 0..25));
        block_on(check_blocks(net.reps[1].core(), "v1", 25..60));
        block_on(net.reps[1].core().verify_all()).unwrap();
        assert!(net.largest_batch > 4, "seed {seed}");
        assert!(!net.events[1]
            .iter()
            .any(|e| matches!(e, Event::InvalidData { .. })));
    }
}

#[test]
fn bad_proofs_disconnect_when_asked_to() {
    let opts = Options {
        disconnect_on_invalid_data: true,
        ..Options::default()
    };
    let mut net = with_bad_peer(opts, 32);
    net.corrupt.insert(1);
    let (_, bad) = net.connect(1, 2);
    net.connect(0, 2);
    let id = block_on(net.reps[2].download(net.now, 0, Some(64))).unwrap();
    net.run_until(|n| n.events[2].contains(&Event::Downloaded { id }));
    assert!(net.events[2].iter().any(|e| matches!(
        e,
        Event::Disconnect { peer, error: ReplicationError::InvalidData(_) } if *peer == bad
    )));
    assert!(net.reps[2].peer_info(bad).is_none());
    block_on(check_blocks(net.reps[2].core(), "v0", 0..64));
}

#[test]
fn three_peers_blocks_from_whoever_has_them() {
    // W (0) has 60 blocks; A (1) fetches the first 30 only; B (2) talks to A alone and gets
    // those 30 (and the upgrade) from A; then B also meets W and gets the rest from W.
    let mut net = block_on(async {
        let (w, _) = writer(60, None).await;
        let key = *w.key();
        Net::new(
            vec![
                Rep::new(w, Options::default()),
                Rep::new(reader(key, None).await, Options::default()),
                Rep::new(reader(key, None).await, Options::default()),
            ],
            41,
        )
    });
    net.connect(0, 1);
    let a = block_on(net.reps[1].download(net.now, 0, Some(30))).unwrap();
    net.run_until(|n| n.events[1].contains(&Event::Downloaded { id: a }));
    let (_, a_at_b) = net.connect(1, 2);
    let first = block_on(net.reps[2].download(net.now, 0, Some(30))).unwrap();
    net.run_until(|n| n.events[2].contains(&Event::Downloaded { id: first }));
    assert_eq!(net.reps[2].core().length(), 60);
    let rest = block_on(net.reps[2].download(net.now, 0, Some(60))).unwrap();
    net.run_idle();
    assert!(!net.events[2].contains(&Event::Downloaded { id: rest }));
    // A lacks 30..60: B asked it with a want and learned it via a bitfield.
    assert!(net.sent[2]
        .iter()
        .any(|(p, m)| *p == a_at_b && matches!(m, Message::Want(_))));
    let (_, w_at_b) = net.connect(0, 2);
    net.run_until(|n| n.events[2].contains(&Event::Downloaded { id: rest }));
    let from = |peer: PeerId| {
        net.events[2]
            .iter()
            .filter_map(|e| match e {
                Event::Block { index, peer: p } if *p == peer => Some(*index),
                _ => None,
            })
            .collect::<BTreeSet<u64>>()
    };
    assert_eq!(from(a_at_b), (0..30).collect());
    assert_eq!(from(w_at_b), (30..60).collect());
    block_on(net.reps[2].core().verify_all()).unwrap();
}

#[test]
fn two_full_sources_share_the_load() {
    let mut net = with_bad_peer(Options::default(), 51);
    let (_, p1) = net.connect(0, 2);
    let (_, p2) = net.connect(1, 2);
    let id = block_on(net.reps[2].download(net.now, 0, Some(64))).unwrap();
    net.run_until(|n| n.events[2].contains(&Event::Downloaded { id }));
    let sources: BTreeSet<PeerId> = net.events[2]
        .iter()
        .filter_map(|e| match e {
            Event::Block { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect();
    assert_eq!(sources, [p1, p2].into_iter().collect());
}

#[test]
fn timed_out_requests_are_cancelled_and_rescheduled() {
    let mut net = with_bad_peer(Options::default(), 61);
    net.deaf.insert(1);
    // The silent copy syncs first (its messages still reach the reader) but never answers.
    let (_, silent) = net.connect(1, 2);
    net.run_idle();
    net.deaf.clear();
    net.deaf.insert(1);
    net.connect(0, 2);
    let id = block_on(net.reps[2].download(net.now, 0, Some(64))).unwrap();
    net.run_until(|n| n.events[2].contains(&Event::Downloaded { id }));
    let cancels = net.sent[2]
        .iter()
        .filter(|(p, m)| *p == silent && matches!(m, Message::Cancel(_)))
        .count();
    let requests = net.sent[2]
        .iter()
        .filter(|(p, m)| *p == silent && matches!(m, Message::Request(_)))
        .count();
    assert!(requests > 0 && cancels == requests, "{requests} {cancels}");
    block_on(check_blocks(net.reps[2].core(), "v0", 0..64));
}

#[test]
fn manifest_of_an_empty_core_is_asked_for_alone() {
    for seed in [12, 13] {
        let mut net = pair(0, seed);
        net.connect(0, 1);
        net.run_idle();
        let want = net.reps[0].core().manifest().cloned();
        assert!(want.is_some());
        assert_eq!(net.reps[1].core().manifest().cloned(), want);
        assert!(net.sent[1].iter().any(|(_, m)| matches!(
            m,
            Message::Request(r) if r.manifest && r.upgrade.is_none() && r.block.is_none()
        )));
    }
    // A manifest that does not hash to the key is refused.
    let mut r = block_on(async { Rep::new(reader([5; 32], None).await, Options::default()) });
    let peer = r.add_peer();
    let sync = Sync {
        has_manifest: true,
        ..Sync::default()
    };
    block_on(r.handle_message(0, peer, Message::Sync(sync))).unwrap();
    let id = std::iter::from_fn(|| r.poll_transmit())
        .find_map(|(_, m)| match m {
            Message::Request(q) if q.manifest => Some(q.id),
            _ => None,
        })
        .expect("a manifest request");
    let wrong = crate::hypercore::manifest::Manifest::default_signer([6; 32]);
    let data = crate::hypercore::messages::Data {
        request: id,
        manifest: Some(wrong),
        ..Default::default()
    };
    block_on(r.handle_message(0, peer, Message::Data(Box::new(data)))).unwrap();
    assert!(r.core().manifest().is_none());
    assert!(std::iter::from_fn(|| r.poll_event()).any(|e| matches!(e, Event::InvalidData { .. })));
}

#[test]
fn not_available_and_manifest_only_answers() {
    let mut net = pair(4, 71);
    let (_, p) = net.connect(0, 1);
    net.run_idle();
    let w = &mut net.reps[0];
    let wp = w.peers().next().unwrap();
    let _ = p;
    // Wrong fork, manifest asked: data with only the manifest.
    let req = Request {
        id: 5,
        fork: 3,
        manifest: true,
        ..Request::default()
    };
    block_on(w.handle_message(2000, wp, Message::Request(req))).unwrap();
    match w.poll_transmit() {
        Some((_, Message::Data(d))) => {
            assert_eq!((d.request, d.fork), (5, 0));
            assert!(d.manifest.is_some() && d.block.is_none() && d.upgrade.is_none());
        }
        other => panic!("{other:?}"),
    }
    // A block we do not have (beyond the length): noData(NOT_AVAILABLE) at once.
    let req = Request {
        id: 6,
        block: Some(crate::hypercore::messages::RequestBlock {
            index: 50,
            nodes: 0,
        }),
        ..Request::default()
    };
    block_on(w.handle_message(2000, wp, Message::Request(req))).unwrap();
    assert_eq!(
        w.poll_transmit(),
        Some((
            wp,
            Message::NoData(NoData {
                request: 6,
                reason: 1
            })
        ))
    );
}

#[test]
fn invalid_requests_back_off_then_disconnect() {
    let mut net = pair(4, 81);
    net.connect(0, 1);
    net.run_idle();
    let w = &mut net.reps[0];
    let wp = w.peers().next().unwrap();
    let bad = |id| {
        Message::Request(Request {
            id,
            upgrade: Some(RequestUpgrade {
                start: 2,
                length: 100,
            }),
            ..Request::default()
        })
    };
    block_on(w.handle_message(10_000, wp, bad(1))).unwrap();
    assert!(matches!(w.poll_event(), Some(Event::InvalidRequest { .. })));
    assert_eq!(w.poll_transmit(), None, "answer is delayed");
    assert_eq!(w.poll_timeout(), Some(10_200));
    block_on(w.handle_timeout(10_199)).unwrap();
    assert_eq!(w.poll_transmit(), None);
    block_on(w.handle_timeout(10_200)).unwrap();
    assert_eq!(
        w.poll_transmit(),
        Some((
            wp,
            Message::NoData(NoData {
                request: 1,
                reason: 2
            })
        ))
    );
    // A cancel withdraws a delayed answer.
    block_on(w.handle_message(20_000, wp, bad(2))).unwrap();
    block_on(w.handle_message(
        20_000,
        wp,
        Message::Cancel(crate::hypercore::messages::Cancel { request: 2 }),
    ))
    .unwrap();
    block_on(w.handle_timeout(30_000)).unwrap();
    assert_eq!(w.poll_transmit(), None);
    for id in 3..=MAX_INVALID_REQUESTS {
        block_on(w.handle_message(40_000, wp, bad(id))).unwrap();
    }
    let events: Vec<Event> = std::iter::from_fn(|| w.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Disconnect {
            error: ReplicationError::TooManyInvalidRequests(64),
            ..
        }
    )));
    assert_eq!(w.peers().count(), 0);
    assert!(matches!(
        block_on(w.handle_message(40_000, wp, bad(1))),
        Err(ReplicationError::UnknownPeer(_))
    ));
}

fn conflict_proof(length: u64, nodes: Vec<crate::hypercore::messages::TreeNode>) -> Message {
    Message::Data(Box::new(crate::hypercore::messages::Data {
        request: 0,
        upgrade: Some(crate::hypercore::messages::DataUpgrade {
            start: 0,
            length,
            nodes,
            additional_nodes: vec![],
            signature: vec![1; 64],
        }),
        ..Default::default()
    }))
}

#[test]
fn hostile_messages_do_not_break_the_replicator() {
    let mut net = pair(4, 91);
    net.connect(0, 1);
    net.run_idle();
    let r = &mut net.reps[1];
    let rp = r.peers().next().unwrap();
    let hostile = [
        Message::Range(crate::hypercore::messages::Range {
            drop: false,
            start: 5,
            length: u64::MAX,
        }),
        Message::Bitfield(crate::hypercore::messages::Bitfield {
            start: u64::MAX - 31,
            bitfield: vec![u32::MAX; 8],
        }),
        Message::Bitfield(crate::hypercore::messages::Bitfield {
            start: 3,
            bitfield: vec![1],
        }),
        Message::Want(crate::hypercore::messages::Want {
            start: u64::MAX,
            length: 1 << 21,
            any: true,
        }),
        Message::Data(Box::default()),
        Message::NoData(NoData {
            request: 999,
            reason: 7,
        }),
        Message::Sync(Sync {
            fork: u64::MAX,
            length: u64::MAX,
            remote_length: u64::MAX,
            can_upgrade: true,
            ..Sync::default()
        }),
        // After that sync the peer claims a huge length: ranges up to it must neither loop
        // over it nor allocate for it, nor overflow at the top of the index space.
        Message::Range(crate::hypercore::messages::Range {
            drop: false,
            start: 1,
            length: u64::MAX,
        }),
        Message::Range(crate::hypercore::messages::Range {
            drop: true,
            start: u64::MAX - 32767,
            length: 64,
        }),
        Message::Extension(crate::hypercore::messages::Extension {
            name: String::new(),
            message: vec![1],
        }),
        // Conflict proofs (request 0, upgrade from 0) that do not verify, or overflow.
        conflict_proof(u64::MAX, vec![]),
        conflict_proof(
            4,
            vec![crate::hypercore::messages::TreeNode {
                index: 3,
                size: 4,
                hash: [9; 32],
            }],
        ),
        conflict_proof(2, vec![]),
        // Misshapen wants (the peer then counts as wanting everything) and unwants.
        Message::Want(crate::hypercore::messages::Want {
            start: 3,
            length: 100,
            any: false,
        }),
        Message::Unwant(crate::hypercore::messages::Want {
            start: 0,
            length: 0,
            any: false,
        }),
        Message::Unwant(crate::hypercore::messages::Want {
            start: u64::MAX,
            length: u64::MAX,
            any: true,
        }),
        // An unsolicited hash + seek answer.
        Message::Data(Box::new(crate::hypercore::messages::Data {
            request: 7,
            hash: Some(crate::hypercore::messages::DataHash {
                index: u64::MAX,
                nodes: vec![],
            }),
            ..Default::default()
        })),
    ];
    for m in hostile {
        block_on(r.handle_message(5000, rp, m)).unwrap();
    }
    // Seeks anywhere, including far past the end, only wait.
    for bytes in [u64::MAX, u64::MAX / 2, 1 << 40] {
        block_on(r.seek(5000, bytes)).unwrap();
    }
    while r.poll_transmit().is_some() {}
    assert_eq!(r.core().length(), 4);
    assert!(!r.is_frozen());
}

#[test]
fn extensions_by_name_with_repeat_compression() {
    let mut net = pair(1, 101);
    let (p0, _) = net.connect(0, 1);
    net.reps[1].register_extension("chat");
    net.reps[0].send_extension(p0, "chat", b"hello").unwrap();
    net.reps[0].send_extension(p0, "chat", b"again").unwrap();
    net.reps[0].send_extension(p0, "other", b"ignored").unwrap();
    net.run_idle();
    let names: Vec<&str> = net.sent[0]
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Extension(e) => Some(e.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["chat", "", "other"]);
    let got: Vec<Vec<u8>> = net.events[1]
        .iter()
        .filter_map(|e| match e {
            Event::Extension { name, message, .. } if name == "chat" => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got, [b"hello".to_vec(), b"again".to_vec()]);
    assert!(!net.events[1]
        .iter()
        .any(|e| matches!(e, Event::Extension { name, .. } if name == "other")));
}

// ---------------------------------------------------------------------- seeks, hash requests

/// Where user byte `bytes` falls, from the block sizes alone (JS `core.seek` semantics: a byte
/// at a block boundary belongs to the next block; the byte length maps to `(length, 0)`).
fn seek_oracle(sizes: &[u64], bytes: u64) -> (u64, u64) {
    let mut rem = bytes;
    for (i, &s) in sizes.iter().enumerate() {
        if rem < s {
            return (i as u64, rem);
        }
        rem -= s;
    }
    assert_eq!(rem, 0, "seek past the end");
    (sizes.len() as u64, 0)
}

fn seek_results(events: &[Event]) -> BTreeMap<SeekId, (u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Seek { id, index, offset } => Some((*id, (*index, *offset))),
            _ => None,
        })
        .collect()
}

#[test]
fn seek_resolves_through_hash_requests_without_downloading_blocks() {
    for seed in 1..=8u64 {
        let n = 20 + seed * 19;
        let encryption_key = (seed == 4).then_some([3u8; 32]);
        let mut net = block_on(async {
            let (w, _) = writer(n, encryption_key).await;
            let r = reader(*w.key(), encryption_key).await;
            Net::new(
                vec![
                    Rep::new(w, Options::default()),
                    Rep::new(r, Options::default()),
                ],
                seed,
            )
        });
        let sizes: Vec<u64> = (0..n).map(|i| block(i, "v0").len() as u64).collect();
        let total: u64 = sizes.iter().sum();
        net.connect(0, 1);
        net.run_idle();
        assert_eq!(net.reps[1].core().length(), n);
        let mut rng = Rng(seed * 7919);
        let mut wanted = vec![0, total, total - 1, sizes[0], 1];
        wanted.extend((0..6).map(|_| rng.next() % (total + 1)));
        // All seeks run at once.
        let mut ids = Vec::new();
        for &bytes in &wanted {
            let id = block_on(net.reps[1].seek(net.now, bytes)).unwrap();
            ids.push((id, bytes));
        }
        net.run_until(|n| seek_results(&n.events[1]).len() == ids.len());
        let got = seek_results(&net.events[1]);
        for (id, bytes) in &ids {
            assert_eq!(
                got[id],
                seek_oracle(&sizes, *bytes),
                "seed {seed} bytes {bytes}"
            );
        }
        // Only tree nodes moved: no block was downloaded.
        assert_eq!(net.reps[1].core().bitfield().count(0, n, true), 0);
        assert!(net.sent[1].iter().any(|(_, m)| matches!(
            m,
            Message::Request(r) if r.hash.is_some() && r.seek.is_some() && r.block.is_none()
        )));
        // The nodes are stored: the same seeks now resolve locally, with no traffic.
        net.run_idle();
        let before = net.sent[1].len();
        for &(_, bytes) in &ids {
            let id = block_on(net.reps[1].seek(net.now, bytes)).unwrap();
            net.collect();
            assert_eq!(
                seek_results(&net.events[1]).get(&id),
                Some(&seek_oracle(&sizes, bytes))
            );
        }
        assert_eq!(net.sent[1].len(), before);
        // A downloaded block verifies against the nodes the seeks stored.
        let id = block_on(net.reps[1].download(net.now, n / 2, Some(n / 2 + 1))).unwrap();
        net.run_until(|n| n.events[1].contains(&Event::Downloaded { id }));
        assert!(!net.events[1]
            .iter()
            .any(|e| matches!(e, Event::InvalidData { .. })));
    }
}

#[test]
fn seek_asks_a_peer_that_holds_the_blocks() {
    for seed in [41, 42, 43] {
        // W (0) has 60 blocks; A (1) holds 0..30 only; B (2) meets A first, W later.
        let mut net = block_on(async {
            let (w, _) = writer(60, None).await;
            let key = *w.key();
            Net::new(
                vec![
                    Rep::new(w, Options::default()),
                    Rep::new(reader(key, None).await, Options::default()),
                    Rep::new(reader(key, None).await, Options::default()),
                ],
                seed,
            )
        });
        let sizes: Vec<u64> = (0..60).map(|i| block(i, "v0").len() as u64).collect();
        net.connect(0, 1);
        let a = block_on(net.reps[1].download(net.now, 0, Some(30))).unwrap();
        net.run_until(|n| n.events[1].contains(&Event::Downloaded { id: a }));
        let (_, a_at_b) = net.connect(1, 2);
        net.run_idle();
        assert_eq!(net.reps[2].core().length(), 60);
        let early = sizes[..10].iter().sum::<u64>() + 2;
        let late = sizes[..45].iter().sum::<u64>() + 4;
        let s_early = block_on(net.reps[2].seek(net.now, early)).unwrap();
        let s_late = block_on(net.reps[2].seek(net.now, late)).unwrap();
        net.run_idle();
        let got = seek_results(&net.events[2]);
        assert_eq!(got.get(&s_early), Some(&(10, 2)));
        // Nobody B knows holds block 45's part of the tree.
        assert!(!got.contains_key(&s_late));
        let hash_requests = |net: &Net, to: PeerId| {
            net.sent[2]
                .iter()
                .filter(|(p, m)| *p == to && matches!(m, Message::Request(r) if r.hash.is_some()))
                .count()
        };
        assert!(hash_requests(&net, a_at_b) > 0);
        let (_, w_at_b) = net.connect(0, 2);
        net.run_until(|n| seek_results(&n.events[2]).contains_key(&s_late));
        assert_eq!(seek_results(&net.events[2])[&s_late], (45, 4));
        assert!(hash_requests(&net, w_at_b) > 0);
        assert!(!net.events[2]
            .iter()
            .any(|e| matches!(e, Event::InvalidData { .. })));
        // A was never asked about blocks it does not hold (it answered nothing invalid).
        assert!(!net.events[1]
            .iter()
            .any(|e| matches!(e, Event::InvalidRequest { .. })));
    }
}

#[test]
fn seek_without_remote_seek_support_uses_hash_requests_alone() {
    for seed in [51, 52, 53] {
        let mut net = pair(150, seed);
        let (_, w_at_r) = net.connect(0, 1);
        net.run_idle();
        net.reps[1].set_remote_seeks(w_at_r, false);
        let sizes: Vec<u64> = (0..150).map(|i| block(i, "v0").len() as u64).collect();
        let total: u64 = sizes.iter().sum();
        let mut rng = Rng(seed);
        let mut ids = Vec::new();
        for _ in 0..4 {
            let bytes = rng.next() % total;
            ids.push((block_on(net.reps[1].seek(net.now, bytes)).unwrap(), bytes));
        }
        net.run_until(|n| seek_results(&n.events[1]).len() == ids.len());
        let got = seek_results(&net.events[1]);
        for (id, bytes) in ids {
            assert_eq!(got[&id], seek_oracle(&sizes, bytes), "bytes {bytes}");
        }
        let requests: Vec<&Request> = net.sent[1]
            .iter()
            .filter_map(|(_, m)| match m {
                Message::Request(r) => Some(r),
                _ => None,
            })
            .collect();
        assert!(requests.iter().any(|r| r.hash.is_some()));
        assert!(requests.iter().all(|r| r.seek.is_none()));
    }
}

#[test]
fn seek_before_the_upgrade_rides_on_the_upgrade_request() {
    for seed in [3, 17, 29] {
        let mut net = pair(77, seed);
        let sizes: Vec<u64> = (0..77).map(|i| block(i, "v0").len() as u64).collect();
        let bytes = sizes[..40].iter().sum::<u64>() + 3;
        let id = block_on(net.reps[1].seek(net.now, bytes)).unwrap();
        assert!(seek_results(&net.events[1]).is_empty());
        net.connect(0, 1);
        net.run_until(|n| !seek_results(&n.events[1]).is_empty());
        assert_eq!(seek_results(&net.events[1])[&id], (40, 3));
        let first = net.sent[1]
            .iter()
            .find_map(|(_, m)| match m {
                Message::Request(r) => Some(*r),
                _ => None,
            })
            .unwrap();
        assert!(first.upgrade.is_some() && first.seek.is_some(), "{first:?}");
        // The seek proof alone located the byte: no hash request was needed.
        assert!(!net.sent[1]
            .iter()
            .any(|(_, m)| matches!(m, Message::Request(r) if r.hash.is_some())));
    }
}

#[test]
fn seek_past_the_end_waits_for_a_live_append() {
    for seed in [5, 6] {
        let mut net = pair(10, seed);
        net.connect(0, 1);
        net.run_idle();
        let total: u64 = (0..10).map(|i| block(i, "v0").len() as u64).sum();
        let id = block_on(net.reps[1].seek(net.now, total + 20)).unwrap();
        net.run_idle();
        assert!(seek_results(&net.events[1]).is_empty());
        let now = net.now;
        block_on(net.reps[0].append(now, &[&[7u8; 50]])).unwrap();
        net.run_until(|n| !seek_results(&n.events[1]).is_empty());
        assert_eq!(seek_results(&net.events[1])[&id], (10, 20));
        // Cancelled seeks never report.
        let id = block_on(net.reps[1].seek(net.now, total + 500)).unwrap();
        net.reps[1].cancel_seek(id);
        let now = net.now;
        block_on(net.reps[0].append(now, &[&[8u8; 600]])).unwrap();
        net.run_idle();
        assert!(!seek_results(&net.events[1]).contains_key(&id));
    }
}

fn tree_hash_results(events: &[Event]) -> BTreeMap<TreeHashId, (u64, [u8; 32])> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TreeHash { id, length, hash } => Some((*id, (*length, *hash))),
            _ => None,
        })
        .collect()
}

#[test]
fn tree_hash_at_a_length_through_hash_requests() {
    for seed in [2, 9, 14, 23] {
        let n = 40 + seed * 3;
        let mut net = pair(n, seed);
        net.connect(0, 1);
        net.run_idle();
        // Oracle: the tree hash after each append of an independent writer of the same blocks.
        let oracle: Vec<[u8; 32]> = block_on(async {
            let (mut w, _) = writer(0, None).await;
            let mut out = vec![w.tree_hash()];
            for i in 0..n {
                w.append(&[&block(i, "v0")]).await.unwrap();
                out.push(w.tree_hash());
            }
            out
        });
        let mut rng = Rng(seed);
        let mut lengths = vec![1, n, n - 1, 2, 3];
        lengths.extend((0..5).map(|_| 1 + rng.next() % n));
        let mut ids = Vec::new();
        for &l in &lengths {
            ids.push((block_on(net.reps[1].tree_hash(net.now, l)).unwrap(), l));
        }
        net.run_until(|x| tree_hash_results(&x.events[1]).len() == ids.len());
        let got = tree_hash_results(&net.events[1]);
        for (id, l) in ids {
            assert_eq!(got[&id], (l, oracle[l as usize]), "seed {seed} length {l}");
        }
        assert_eq!(net.reps[1].core().bitfield().count(0, n, true), 0);
        assert!(net.sent[1].iter().any(|(_, m)| matches!(
            m,
            Message::Request(r) if r.hash.is_some() && r.block.is_none() && r.seek.is_none()
        )));
        // Past our length: waits for the core to grow.
        let id = block_on(net.reps[1].tree_hash(net.now, n + 2)).unwrap();
        net.run_idle();
        assert!(!tree_hash_results(&net.events[1]).contains_key(&id));
        let now = net.now;
        for i in n..n + 2 {
            block_on(net.reps[0].append(now, &[&block(i, "v0")])).unwrap();
        }
        net.run_until(|x| tree_hash_results(&x.events[1]).contains_key(&id));
        assert_eq!(
            tree_hash_results(&net.events[1])[&id],
            (n + 2, net.reps[0].core().tree_hash())
        );
    }
}

/// The JS golden proofs of `vectors/data/03-proofs.out` (a default core of blocks a..e signed
/// by `KeyPair::from_seed([1; 32])`): the replicator's wire answers to the same wire requests
/// are byte-identical.
#[test]
fn hash_and_seek_answers_match_js() {
    use crate::encoding::{Decode, Encode};
    let cases = [
        // hash index 2 (block 1's leaf), nodes 1
        (
            "0201000201",
            "02010002020201520abb1082986713dabf6862ccfe1bb6b87037647d0019b31219493ef186597c0001423177bd3da55c6ac57419beff9c763bab05e12a6d8908b38b7fc14360228d4a",
        ),
        // seek bytes 3 + upgrade 0..5
        (
            "0c010003000005",
            "0c0100030304019435aca782b6bc40e253392d45c885f3b1ad47f23e7b6c3f9daf5b0868c438c5060120915cf95a391fc2b132d5b481d1c2467314cc0f2d135f39f060dea90b9a118a01029cac92aaed9e7d11eb629465684582ce39cb496303998de123533b09e16f2f060005010801154996491ba67a786f089c2b396b5ce1e8479ad9416b9057a7431dad4cce19e30044010008e73935474edbfc1aacbb6fea559f9a1dbae4d6715497d07b07f5005ab431574e43affb680e9153941e4aa424676caf86329eda57e8c38fa8c5c09ec0f2920b0000",
        ),
        // a lone seek: an empty proof
        ("0401000300", "000100"),
    ];
    let mut w = block_on(async {
        let mut core = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[1; 32])),
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
        core.append(&[b"a", b"b", b"c", b"d", b"e"]).await.unwrap();
        Rep::new(core, Options::default())
    });
    let peer = w.add_peer();
    while w.poll_transmit().is_some() {}
    for (req, data) in cases {
        let req = Request::from_bytes(&hex::decode(req).unwrap()).unwrap();
        block_on(w.handle_message(1000, peer, Message::Request(req))).unwrap();
        match w.poll_transmit() {
            Some((p, Message::Data(d))) if p == peer => {
                assert_eq!(hex::encode(d.to_bytes()), data)
            }
            other => panic!("{other:?}"),
        }
    }
}

// ---------------------------------------------------------------------- several peers

#[test]
fn slow_peer_is_hotswapped_and_the_download_keeps_the_fast_pace() {
    const SLOW: u64 = 5_000;
    for seed in [61, 62, 63, 64, 65] {
        let mut net = with_bad_peer(Options::default(), seed);
        let (_, fast) = net.connect(0, 2);
        let (_, slow) = net.connect(1, 2);
        net.slow.insert(1, SLOW);
        net.run_idle();
        assert_eq!(net.reps[2].core().length(), 64);
        let start = net.now;
        let id = block_on(net.reps[2].download(start, 0, Some(64))).unwrap();
        net.collect();
        // Both peers got requests at first.
        let to_slow = net.sent[2]
            .iter()
            .filter(|(p, m)| *p == slow && matches!(m, Message::Request(r) if r.block.is_some()))
            .count();
        assert!(to_slow > 0);
        net.run_until(|n| n.events[2].contains(&Event::Downloaded { id }));
        // Done before the slow peer's first answer could even arrive.
        assert!(net.now - start < SLOW, "took {} ms", net.now - start);
        let from: BTreeSet<PeerId> = net.events[2]
            .iter()
            .filter_map(|e| match e {
                Event::Block { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect();
        assert_eq!(from, [fast].into_iter().collect());
        // The slow peer's requests were duplicated to the fast one, then cancelled.
        let cancels = net.sent[2]
            .iter()
            .filter(|(p, m)| *p == slow && matches!(m, Message::Cancel(_)))
            .count();
        assert_eq!(cancels, to_slow);
        net.run_idle();
        assert_eq!(net.reps[2].inflight(), 0);
        block_on(net.reps[2].core().verify_all()).unwrap();
        block_on(check_blocks(net.reps[2].core(), "v0", 0..64));
    }
}

#[test]
fn range_broadcasts_go_to_peers_that_want_them() {
    // W (0) has 1000 blocks; A (1) fetches single blocks from W; B (2) is connected to A only.
    let mut net = block_on(async {
        let (w, _) = writer(1000, None).await;
        let key = *w.key();
        Net::new(
            vec![
                Rep::new(w, Options::default()),
                Rep::new(reader(key, None).await, Options::default()),
                Rep::new(reader(key, None).await, Options::default()),
            ],
            77,
        )
    });
    net.connect(0, 1);
    let (b_at_a, a_at_b) = net.connect(1, 2);
    net.run_idle();
    let ranges_to_b = |net: &Net, start: u64| {
        net.sent[1]
            .iter()
            .filter(|(p, m)| *p == b_at_a && matches!(m, Message::Range(r) if r.start == start))
            .count()
    };
    let get = |net: &mut Net, node: usize, i: u64| {
        let id = block_on(net.reps[node].download(net.now, i, Some(i + 1))).unwrap();
        net.run_until(|n| n.events[node].contains(&Event::Downloaded { id }));
        net.run_idle();
    };
    // An old block B never asked about: not announced.
    get(&mut net, 1, 10);
    assert_eq!(ranges_to_b(&net, 10), 0);
    // One of the last 256 blocks: announced to everyone (peers that never send `want` rely on it).
    get(&mut net, 1, 990);
    assert_eq!(ranges_to_b(&net, 990), 1);
    // B wants block 10: it asks A with a want for its batch and gets it from A.
    get(&mut net, 2, 10);
    assert!(net.events[2]
        .iter()
        .any(|e| matches!(e, Event::Block { index: 10, peer } if *peer == a_at_b)));
    // Now B wants batch 0: A announces its next old block there.
    get(&mut net, 1, 20);
    assert_eq!(ranges_to_b(&net, 20), 1);
}

// ---------------------------------------------------------------------- fork conflicts

#[test]
fn forked_writer_is_detected_as_a_conflict() {
    for seed in [71, 72, 73, 74] {
        // W1 (0) and W2 (1) share a key pair but wrote different blocks: two signed trees.
        let mut net = block_on(async {
            let (w1, _) = writer(5, None).await;
            let key = *w1.key();
            let mut w2 = Hypercore::create(
                MemoryStorage::new(),
                CreateOptions {
                    key_pair: Some(KeyPair::from_seed(&[7; 32])),
                    ..CreateOptions::default()
                },
            )
            .await
            .unwrap();
            for i in 0..6 {
                w2.append(&[&block(i, "v1")]).await.unwrap();
            }
            assert_eq!(*w2.key(), key);
            Net::new(
                vec![
                    Rep::new(w1, Options::default()),
                    Rep::new(w2, Options::default()),
                    Rep::new(reader(key, None).await, Options::default()),
                ],
                seed,
            )
        });
        let (r_at_w1, w1_at_r) = net.connect(0, 2);
        let id = block_on(net.reps[2].download(net.now, 0, Some(5))).unwrap();
        net.run_until(|n| n.events[2].contains(&Event::Downloaded { id }));
        // W2 offers an upgrade to 6 that cannot verify on top of W1's tree.
        let (_, w2_at_r) = net.connect(1, 2);
        net.run_until(|n| n.reps[2].is_frozen());
        net.run_idle();
        assert!(net.events[2].contains(&Event::Conflict {
            peer: w2_at_r,
            length: 5
        }));
        // It asked W2 to prove its tree at the shared length (request id 0).
        assert!(net.sent[2].iter().any(|(p, m)| *p == w2_at_r
            && matches!(m, Message::Request(r) if r.id == 0
                && r.upgrade == Some(RequestUpgrade { start: 0, length: 5 }))));
        // Every peer got our proof and was let go.
        for p in [w1_at_r, w2_at_r] {
            assert!(net.sent[2].iter().any(|(to, m)| *to == p
                && matches!(m, Message::Data(d) if d.request == 0 && d.upgrade.is_some())));
            assert!(net.events[2].iter().any(|e| matches!(
                e,
                Event::Disconnect { peer, error: ReplicationError::Conflict { length: 5 } }
                    if *peer == p
            )));
        }
        assert_eq!(net.reps[2].peers().count(), 0);
        // W2 learned of the conflict from our proof; W1, whose tree we share, did not.
        assert!(net.reps[1].is_frozen());
        assert!(!net.reps[0].is_frozen());
        assert!(!net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Conflict { .. })));
        assert!(net.reps[0].peer_info(r_at_w1).is_some());
        // Our core kept W1's tree.
        let core = net.reps[2].core();
        assert_eq!(core.length(), 5);
        block_on(core.verify_all()).unwrap();
        block_on(check_blocks(core, "v0", 0..5));
    }
}

// ---------------------------------------------------------------------- hubs over protomux

async fn run_hubs(
    a: &mut ReplicationHub<MemoryStorage>,
    sa: StreamId,
    b: &mut ReplicationHub<MemoryStorage>,
    sb: StreamId,
    now: u64,
) {
    for _ in 0..100_000 {
        let mut moved = false;
        while let Some((s, f)) = a.poll_transmit() {
            assert_eq!(s, sa);
            if b.has_stream(sb) {
                b.handle_frame(now, sb, &f).await.unwrap();
            }
            moved = true;
        }
        while let Some((s, f)) = b.poll_transmit() {
            assert_eq!(s, sb);
            if a.has_stream(sa) {
                a.handle_frame(now, sa, &f).await.unwrap();
            }
            moved = true;
        }
        if !moved {
            return;
        }
    }
    panic!("hubs never went idle");
}

#[test]
fn hubs_replicate_over_protomux_frames() {
    block_on(async {
        let (w, _) = writer(50, None).await;
        let r = reader(*w.key(), None).await;
        let mut ha = ReplicationHub::new();
        let mut hb = ReplicationHub::new();
        let dk = ha.add_core(Rep::new(w, Options::default())).unwrap();
        hb.add_core(Rep::new(r, Options::default())).unwrap();
        let hh = [3u8; 64];
        let sa = ha.add_stream(true, hh).unwrap();
        let sb = hb.add_stream(false, hh).unwrap();
        let id = hb
            .replicator_mut(&dk)
            .unwrap()
            .download(0, 0, None)
            .await
            .unwrap();
        let _ = id;
        hb.flush();
        run_hubs(&mut ha, sa, &mut hb, sb, 0).await;
        let rb = hb.replicator(&dk).unwrap().core();
        assert_eq!(rb.length(), 50);
        rb.verify_all().await.unwrap();
        check_blocks(rb, "v0", 0..50).await;
        // Live: append on A through the hub's replicator.
        ha.replicator_mut(&dk)
            .unwrap()
            .append(1, &[b"live"])
            .await
            .unwrap();
        ha.flush();
        run_hubs(&mut ha, sa, &mut hb, sb, 1).await;
        let rb = hb.replicator(&dk).unwrap().core();
        assert_eq!(rb.get(50).await.unwrap(), Some(b"live".to_vec()));
        let events: Vec<HubEvent> = std::iter::from_fn(|| hb.poll_event()).collect();
        assert!(events.iter().any(
            |e| matches!(e, HubEvent::ChannelOpened { discovery_key, .. } if *discovery_key == dk)
        ));
        // The connection ends: the peer goes away.
        hb.remove_stream(2, sb).await.unwrap();
        assert_eq!(hb.replicator(&dk).unwrap().peers().count(), 0);
    });
}

/// 4 KiB blocks through two hubs, each side handing over every frame the other produced in one
/// `handle_frames` call: the download completes and verifies, and no batch frame grows far past
/// `BATCH_BYTES` (many answers in flight are split over several frames).
#[test]
fn hubs_take_frames_in_batches_and_bound_batch_frames() {
    block_on(async {
        let storage = MemoryStorage::new();
        let mut w = Hypercore::create(
            storage,
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[7; 32])),
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
        let blocks: Vec<Vec<u8>> = (0..300u32).map(|i| vec![i as u8; 4096]).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        w.append(&refs).await.unwrap();
        let r = reader(*w.key(), None).await;
        let mut ha = ReplicationHub::new();
        let mut hb = ReplicationHub::new();
        let dk = ha.add_core(Rep::new(w, Options::default())).unwrap();
        hb.add_core(Rep::new(r, Options::default())).unwrap();
        let hh = [3u8; 64];
        let sa = ha.add_stream(true, hh).unwrap();
        let sb = hb.add_stream(false, hh).unwrap();
        hb.replicator_mut(&dk)
            .unwrap()
            .download(0, 0, None)
            .await
            .unwrap();
        hb.flush();
        let (mut largest, mut frames_in_a_call) = (0, 0);
        for _ in 0..10_000 {
            let to_b: Vec<Vec<u8>> =
                std::iter::from_fn(|| ha.poll_transmit().map(|f| f.1)).collect();
            let to_a: Vec<Vec<u8>> =
                std::iter::from_fn(|| hb.poll_transmit().map(|f| f.1)).collect();
            if to_a.is_empty() && to_b.is_empty() {
                break;
            }
            largest = to_b.iter().map(Vec::len).fold(largest, usize::max);
            frames_in_a_call = frames_in_a_call.max(to_b.len());
            hb.handle_frames(0, sb, to_b).await.unwrap();
            ha.handle_frames(0, sa, to_a).await.unwrap();
        }
        let rb = hb.replicator(&dk).unwrap().core();
        assert_eq!(rb.contiguous_length(), 300);
        rb.verify_all().await.unwrap();
        assert_eq!(rb.get(299).await.unwrap(), Some(blocks[299].clone()));
        assert!(largest < 64 * 1024 + 8 * 1024, "{largest}");
        assert!(frames_in_a_call > 1, "{frames_in_a_call}");
    });
}

#[test]
fn hub_closes_only_the_conflicting_cores_channel() {
    block_on(async {
        // B holds W1's tree (5 blocks); A serves a fork of the same key pair (6 other blocks)
        // and an unrelated core X that B reads over the same stream.
        let (w1, _) = writer(5, None).await;
        let key = *w1.key();
        let mut w2 = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[7; 32])),
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
        for i in 0..6 {
            w2.append(&[&block(i, "v1")]).await.unwrap();
        }
        let mut x = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[8; 32])),
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
        for i in 0..20 {
            x.append(&[&block(i, "x")]).await.unwrap();
        }
        let x_reader = reader(*x.key(), None).await;
        let mut ha = ReplicationHub::new();
        let mut hb = ReplicationHub::new();
        let dk = ha.add_core(Rep::new(w2, Options::default())).unwrap();
        let dkx = ha.add_core(Rep::new(x, Options::default())).unwrap();
        assert_eq!(hb.add_core(Rep::new(w1, Options::default())).unwrap(), dk);
        hb.add_core(Rep::new(x_reader, Options::default())).unwrap();
        let hh = [4u8; 64];
        let sa = ha.add_stream(true, hh).unwrap();
        let sb = hb.add_stream(false, hh).unwrap();
        run_hubs(&mut ha, sa, &mut hb, sb, 0).await;
        assert!(hb.replicator(&dk).unwrap().is_frozen());
        assert!(ha.replicator(&dk).unwrap().is_frozen());
        let events: Vec<HubEvent> = std::iter::from_fn(|| hb.poll_event()).collect();
        assert!(events.iter().any(|e| matches!(
            e,
            HubEvent::ChannelClosed {
                discovery_key,
                error: Some(ReplicationError::Conflict { length: 5 }),
                ..
            } if *discovery_key == dk
        )));
        assert!(!events
            .iter()
            .any(|e| matches!(e, HubEvent::StreamClosed { .. })));
        // The stream lives on for the other core.
        assert!(ha.has_stream(sa) && hb.has_stream(sb));
        let rx = hb.replicator_mut(&dkx).unwrap();
        rx.download(1, 0, Some(20)).await.unwrap();
        hb.flush();
        run_hubs(&mut ha, sa, &mut hb, sb, 1).await;
        check_blocks(hb.replicator(&dkx).unwrap().core(), "x", 0..20).await;
        assert_eq!(key, *hb.replicator(&dk).unwrap().core().key());
    });
}

#[test]
fn hub_closes_channel_on_wrong_capability() {
    block_on(async {
        let (w, _) = writer(5, None).await;
        let r = reader(*w.key(), None).await;
        let mut ha = ReplicationHub::new();
        let mut hb = ReplicationHub::new();
        let dk = ha.add_core(Rep::new(w, Options::default())).unwrap();
        hb.add_core(Rep::new(r, Options::default())).unwrap();
        // Different handshake hashes: each side's capability is wrong for the other.
        let sa = ha.add_stream(true, [1; 64]).unwrap();
        let sb = hb.add_stream(false, [2; 64]).unwrap();
        run_hubs(&mut ha, sa, &mut hb, sb, 0).await;
        let events: Vec<HubEvent> = std::iter::from_fn(|| hb.poll_event()).collect();
        assert!(
            events.iter().any(|e| matches!(
                e,
                HubEvent::ChannelClosed {
                    error: Some(ReplicationError::InvalidCapability),
                    ..
                }
            )),
            "{events:?}"
        );
        assert_eq!(hb.replicator(&dk).unwrap().core().length(), 0);
        assert_eq!(hb.replicator(&dk).unwrap().peers().count(), 0);
    });
}

#[test]
fn hub_destroys_stream_on_garbage() {
    block_on(async {
        let (w, _) = writer(5, None).await;
        let mut ha = ReplicationHub::new();
        ha.add_core(Rep::new(w, Options::default())).unwrap();
        let sa = ha.add_stream(true, [1; 64]).unwrap();
        // A batch frame that does not parse.
        ha.handle_frame(0, sa, &[0, 0, 1, 200]).await.unwrap();
        let events: Vec<HubEvent> = std::iter::from_fn(|| ha.poll_event()).collect();
        assert!(events
            .iter()
            .any(|e| matches!(e, HubEvent::StreamClosed { stream, .. } if *stream == sa)));
        assert!(!ha.has_stream(sa));
        assert_eq!(
            ha.handle_frame(0, sa, &[1]).await,
            Err(ReplicationError::UnknownStream)
        );
    });
}

// ---------------------------------------------------------------------- backpressure

mod backpressure {
    use std::collections::{BTreeSet, VecDeque};

    use futures_executor::block_on;

    use super::super::*;
    use super::Rng;
    use crate::crypto::KeyPair;
    use crate::encoding::Encode;
    use crate::hypercore::messages::{Handshake, Message, Request, RequestBlock, Want};
    use crate::hypercore::verifier::capability;
    use crate::hypercore::{CreateOptions, Hypercore};
    use crate::protomux::{ChannelId, ChannelOptions, Event as MuxEvent, Protomux};
    use crate::storage::MemoryStorage;

    const BLOCKS: u64 = 128;
    const BLOCK_SIZE: usize = 16 * 1024;
    /// What one answer may add past the window: a block with its proof and the frame around it.
    const SLACK: usize = BLOCK_SIZE + 4096;

    /// A peer speaking raw protomux on a hub's stream: it sends what the test says and reads
    /// only when the test says so.
    struct RawPeer {
        mux: Protomux,
        ch: ChannelId,
        /// Request ids answered (`data` or `noData`).
        answered: BTreeSet<u64>,
        /// `range`/`bitfield` answers to our `want`s.
        want_answers: usize,
    }

    impl RawPeer {
        fn send(&mut self, msg: &Message) {
            self.mux
                .send(self.ch, msg.type_id(), &msg.to_bytes())
                .unwrap();
        }

        fn read(&mut self, frame: &[u8]) {
            self.mux.handle_frame(frame).unwrap();
            while let Some(ev) = self.mux.poll_event() {
                if let MuxEvent::Message {
                    message_type,
                    payload,
                    ..
                } = ev
                {
                    match Message::decode(message_type, &payload).unwrap() {
                        Message::Data(d) => assert!(self.answered.insert(d.request)),
                        Message::NoData(n) => assert!(self.answered.insert(n.request)),
                        Message::Range(_) | Message::Bitfield(_) => self.want_answers += 1,
                        _ => {}
                    }
                }
            }
        }
    }

    /// A hub serving a core of [`BLOCKS`] blocks of [`BLOCK_SIZE`] bytes and a raw peer whose
    /// channel on it is open (the peer read everything up to the open).
    async fn setup() -> (
        ReplicationHub<MemoryStorage>,
        StreamId,
        [u8; 32],
        PeerId,
        RawPeer,
    ) {
        let mut core = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[9; 32])),
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
        for i in 0..BLOCKS {
            core.append(&[&vec![i as u8; BLOCK_SIZE]]).await.unwrap();
        }
        let key = *core.key();
        let mut hub = ReplicationHub::new();
        let dk = hub
            .add_core(Replicator::new(core, Options::default()))
            .unwrap();
        let hh = [5u8; 64];
        let sid = hub.add_stream(false, hh).unwrap();
        let mut mux = Protomux::new();
        let hs = Handshake {
            seeks: true,
            capability: capability(true, &key, &hh),
        };
        let ch = mux
            .open(
                ChannelOptions::new(PROTOCOL)
                    .id(dk.to_vec())
                    .handshake(hs.to_bytes())
                    .message_types(10),
            )
            .unwrap();
        let mut raw = RawPeer {
            mux,
            ch,
            answered: BTreeSet::new(),
            want_answers: 0,
        };
        while let Some((_, f)) = hub.poll_transmit() {
            raw.read(&f);
        }
        let frames: Vec<Vec<u8>> = std::iter::from_fn(|| raw.mux.poll_transmit()).collect();
        hub.handle_frames(0, sid, frames).await.unwrap();
        let mut peer = None;
        while let Some(ev) = hub.poll_event() {
            if let HubEvent::ChannelOpened { peer: p, .. } = ev {
                peer = Some(p);
            }
        }
        assert!(raw.mux.is_opened(ch));
        (hub, sid, dk, peer.expect("channel opened"), raw)
    }

    /// Send `count` random block requests (ids 1..) and identical `want`s to the hub in
    /// batches, without reading; the transport queues all the hub gives it. Returns the
    /// request ids sent.
    async fn flood(
        hub: &mut ReplicationHub<MemoryStorage>,
        sid: StreamId,
        raw: &mut RawPeer,
        held: &mut VecDeque<Vec<u8>>,
        rng: &mut Rng,
        count: u64,
    ) -> BTreeSet<u64> {
        let mut ids = BTreeSet::new();
        let mut i = 0;
        while i < count && hub.has_stream(sid) {
            for _ in 0..64 {
                i += 1;
                if rng.next().is_multiple_of(5) {
                    raw.send(&Message::Want(Want {
                        start: 0,
                        length: 1 << 20,
                        any: false,
                    }));
                } else {
                    ids.insert(i);
                    raw.send(&Message::Request(Request {
                        id: i,
                        block: Some(RequestBlock {
                            index: rng.next() % BLOCKS,
                            nodes: 0,
                        }),
                        ..Request::default()
                    }));
                }
            }
            let frames: Vec<Vec<u8>> = std::iter::from_fn(|| raw.mux.poll_transmit()).collect();
            hub.handle_frames(0, sid, frames).await.unwrap();
            take(hub, sid, held).await;
        }
        ids
    }

    /// The transport takes the hub's frames and reports what it holds; the bound holds.
    async fn take(
        hub: &mut ReplicationHub<MemoryStorage>,
        sid: StreamId,
        held: &mut VecDeque<Vec<u8>>,
    ) {
        while let Some((_, f)) = hub.poll_transmit() {
            held.push_back(f);
        }
        if !hub.has_stream(sid) {
            return;
        }
        let backlog = held.iter().map(Vec::len).sum();
        hub.set_backlog(0, sid, backlog).await.unwrap();
        while let Some((_, f)) = hub.poll_transmit() {
            held.push_back(f);
        }
        let backlog: usize = held.iter().map(Vec::len).sum();
        assert!(backlog <= HIGH_WATER + SLACK, "{backlog} bytes queued");
    }

    /// A peer that floods requests and `want`s and never reads: what we queue for it stays
    /// below the high-water mark (plus one answer), what waits stays below [`MAX_DEFERRED`],
    /// and past that it is disconnected.
    #[test]
    fn a_peer_that_never_reads_is_bounded_then_dropped() {
        for seed in [1u64, 2, 3] {
            block_on(async {
                let (mut hub, sid, dk, peer, mut raw) = setup().await;
                let mut held = VecDeque::new();
                let mut rng = Rng(seed);
                let n = (MAX_DEFERRED + 2000) as u64;
                flood(&mut hub, sid, &mut raw, &mut held, &mut rng, n).await;
                assert!(!hub.has_stream(sid), "seed {seed}: the flooder was dropped");
                assert!(hub.replicator(&dk).unwrap().deferred(peer) == 0);
                let mut closed = false;
                while let Some(ev) = hub.poll_event() {
                    closed |= matches!(
                        ev,
                        HubEvent::StreamClosed {
                            error: ReplicationError::TooManyDeferred,
                            ..
                        }
                    );
                }
                assert!(closed, "seed {seed}");
            });
        }
    }

    /// A peer with many requests that stops reading for a while: the answers wait, in bounded
    /// memory, and once it reads again every request is answered.
    #[test]
    fn a_peer_that_reads_late_gets_every_answer() {
        for seed in [4u64, 5, 6] {
            block_on(async {
                let (mut hub, sid, dk, peer, mut raw) = setup().await;
                let mut held = VecDeque::new();
                let mut rng = Rng(seed);
                let ids = flood(&mut hub, sid, &mut raw, &mut held, &mut rng, 1500).await;
                assert!(hub.has_stream(sid));
                assert!(hub.is_congested(sid), "seed {seed}: the test congests");
                let waiting = hub.replicator(&dk).unwrap().deferred(peer);
                assert!(waiting > 0 && waiting <= MAX_DEFERRED, "{waiting}");
                // The transport writes up to 256 KiB a step; the peer reads it.
                for _ in 0..10_000 {
                    let mut written = 0;
                    while written < 256 * 1024 {
                        let Some(f) = held.pop_front() else { break };
                        written += f.len();
                        raw.read(&f);
                    }
                    take(&mut hub, sid, &mut held).await;
                    if held.is_empty() && hub.replicator(&dk).unwrap().deferred(peer) == 0 {
                        break;
                    }
                }
                assert_eq!(raw.answered, ids, "seed {seed}");
                assert!(raw.want_answers > 0);
            });
        }
    }
}

/// Two hubs whose writer side's transport writes only a few KiB per step (reporting its
/// backlog): the writer's stream congests again and again, the reader's requests wait, and
/// the download still completes with every block verified (no deadlock), for several seeds.
#[test]
fn hubs_replicate_through_a_slow_congested_transport() {
    for seed in [11u64, 12] {
        block_on(async {
            let mut rng = Rng(seed);
            let mut w = Hypercore::create(
                MemoryStorage::new(),
                CreateOptions {
                    key_pair: Some(KeyPair::from_seed(&[7; 32])),
                    ..CreateOptions::default()
                },
            )
            .await
            .unwrap();
            let blocks = 320u64;
            for i in 0..blocks {
                w.append(&[&vec![i as u8; 16 * 1024]]).await.unwrap();
            }
            let r = reader(*w.key(), None).await;
            let mut ha = ReplicationHub::new();
            let mut hb = ReplicationHub::new();
            let dk = ha.add_core(Rep::new(w, Options::default())).unwrap();
            // JS's most requests in flight: 8 MiB of blocks asked for at once.
            let opts = Options {
                max_inflight: 512,
                ..Options::default()
            };
            hb.add_core(Rep::new(r, opts)).unwrap();
            let hh = [4u8; 64];
            let sa = ha.add_stream(false, hh).unwrap();
            let sb = hb.add_stream(true, hh).unwrap();
            hb.replicator_mut(&dk)
                .unwrap()
                .download(0, 0, Some(blocks))
                .await
                .unwrap();
            hb.flush();
            // The writer's transport queue, written a seeded few KiB per step.
            let mut held: std::collections::VecDeque<Vec<u8>> = Default::default();
            let mut congested = false;
            for _ in 0..200_000 {
                while let Some((_, f)) = hb.poll_transmit() {
                    ha.handle_frame(0, sa, &f).await.unwrap();
                }
                while let Some((_, f)) = ha.poll_transmit() {
                    held.push_back(f);
                }
                let mut budget = 1024 + rng.next() % (256 * 1024);
                while let Some(f) = held.pop_front() {
                    budget = budget.saturating_sub(f.len() as u64);
                    hb.handle_frame(0, sb, &f).await.unwrap();
                    if budget == 0 {
                        break;
                    }
                }
                let backlog: usize = held.iter().map(Vec::len).sum();
                assert!(backlog <= HIGH_WATER + 64 * 1024, "{backlog}");
                ha.set_backlog(0, sa, backlog).await.unwrap();
                if ha.poll_timeout().is_some_and(|t| t == 0) {
                    ha.handle_timeout(0).await.unwrap();
                }
                congested |= ha.is_congested(sa);
                let done = hb.replicator(&dk).unwrap().core().contiguous_length() == blocks;
                if done {
                    break;
                }
            }
            assert!(congested, "seed {seed}: the transport congested");
            let core = hb.replicator(&dk).unwrap().core();
            assert_eq!(core.contiguous_length(), blocks, "seed {seed}");
            core.verify_all().await.unwrap();
        });
    }
}

// ---------------------------------------------------------------------- push mode

/// A writer of `n` blocks and a reader with `opts`, not connected yet.
fn push_pair(n: u64, opts: Options, seed: u64) -> Net {
    block_on(async {
        let (w, _) = writer(n, None).await;
        let r = reader(*w.key(), None).await;
        Net::new(
            vec![Rep::new(w, Options::default()), Rep::new(r, opts)],
            seed,
        )
    })
}

fn push_only_reader() -> Options {
    Options {
        allow_push: true,
        push_only: true,
        ..Options::default()
    }
}

fn requests_sent(net: &Net, node: usize) -> Vec<Request> {
    net.sent[node]
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Request(r) => Some(*r),
            _ => None,
        })
        .collect()
}

fn blocks_from(net: &Net, node: usize, from: PeerId) -> BTreeSet<u64> {
    net.events[node]
        .iter()
        .filter_map(|e| match e {
            Event::Block { index, peer } if *peer == from => Some(*index),
            _ => None,
        })
        .collect()
}

/// Pushed `data` messages `node` sent (request id 0).
fn pushes_sent(net: &Net, node: usize) -> Vec<crate::hypercore::messages::Data> {
    net.sent[node]
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Data(d) if d.request == 0 && d.block.is_some() => Some((**d).clone()),
            _ => None,
        })
        .collect()
}

/// A reader that allows pushes and requests nothing gets every block the writer pushes: the
/// first push of an empty reader carries the upgrade and the manifest, later ones only the
/// block and the nodes it lacks, and blocks appended later come with an upgrade from where the
/// previous one ended (several in flight at once). It never sends a request.
#[test]
fn writer_pushes_blocks_to_a_reader_that_allows_them() {
    for seed in [1u64, 2, 3] {
        let mut net = push_pair(20, push_only_reader(), seed);
        let (wp, rp) = net.connect(0, 1);
        net.run_idle();
        let info = net.reps[0].peer_info(wp).unwrap();
        assert!(info.remote_allow_push && info.remote_downloading);
        assert_eq!(
            net.reps[1].core().length(),
            0,
            "push-only: no upgrade asked"
        );
        for i in 0..20 {
            assert_eq!(block_on(net.reps[0].push(i)).unwrap(), 1, "block {i}");
        }
        net.run_idle();
        assert!(net.has_all(1, 20), "seed {seed}");
        assert_eq!(net.reps[0].peer_info(wp).unwrap().pushed_length, 20);
        let pushes = pushes_sent(&net, 0);
        assert_eq!(pushes.len(), 20);
        let first = &pushes[0];
        assert_eq!(
            first.upgrade.as_ref().map(|u| (u.start, u.length)),
            Some((0, 20))
        );
        assert!(first.manifest.is_some());
        assert!(pushes[1..]
            .iter()
            .all(|d| d.upgrade.is_none() && d.manifest.is_none()));
        // The reader has them all now (its ranges told the writer): nothing more to push.
        assert_eq!(block_on(net.reps[0].push(3)).unwrap(), 0);

        // Live appends, pushed one by one and three at once.
        for i in 20..23u64 {
            block_on(net.reps[0].append(net.now, &[&block(i, "v0")])).unwrap();
            assert_eq!(block_on(net.reps[0].push(i)).unwrap(), 1);
            net.run_idle();
        }
        let more: Vec<Vec<u8>> = (23..26).map(|i| block(i, "v0")).collect();
        let refs: Vec<&[u8]> = more.iter().map(Vec::as_slice).collect();
        block_on(net.reps[0].append(net.now, &refs)).unwrap();
        for i in 23..26 {
            assert_eq!(block_on(net.reps[0].push(i)).unwrap(), 1);
        }
        net.run_idle();
        assert!(net.has_all(1, 26), "seed {seed}");
        let ups: Vec<(u64, u64)> = pushes_sent(&net, 0)
            .iter()
            .filter_map(|d| d.upgrade.as_ref().map(|u| (u.start, u.length)))
            .collect();
        assert_eq!(ups, [(0, 20), (20, 1), (21, 1), (22, 1), (23, 3)]);
        let core = net.reps[1].core();
        block_on(core.verify_all()).unwrap();
        block_on(check_blocks(core, "v0", 0..26));
        assert_eq!(blocks_from(&net, 1, rp), (0..26).collect());
        assert!(net.events[1].contains(&Event::Upgraded {
            length: 26,
            fork: 0
        }));
        assert!(
            requests_sent(&net, 1).is_empty(),
            "{:?}",
            requests_sent(&net, 1)
        );
        assert!(!net.events[1]
            .iter()
            .any(|e| matches!(e, Event::InvalidData { .. })));
    }
}

/// Without `allow_push` the reader's `sync` does not offer it, the writer pushes nothing, and
/// unsolicited `data` is dropped unverified; `set_allow_push` tells the writer with a new
/// `sync`, and pushes flow.
#[test]
fn pushes_need_the_reader_to_allow_them() {
    use crate::hypercore::messages::RequestBlock;
    let opts = Options {
        push_only: true,
        ..Options::default()
    };
    let mut net = push_pair(8, opts, 5);
    let (wp, rp) = net.connect(0, 1);
    net.run_idle();
    assert!(!net.reps[0].peer_info(wp).unwrap().remote_allow_push);
    assert_eq!(block_on(net.reps[0].push(0)).unwrap(), 0);
    // A push built by hand (as a peer ignoring the flag would send it) is ignored.
    let mut data = block_on(net.reps[0].core().proof(&ProofRequest {
        block: Some(RequestBlock { index: 0, nodes: 0 }),
        upgrade: Some(RequestUpgrade {
            start: 0,
            length: 8,
        }),
        ..ProofRequest::default()
    }))
    .unwrap();
    data.manifest = net.reps[0].core().manifest().cloned();
    let msg = Message::Data(Box::new(data.clone()));
    block_on(net.reps[1].handle_message(net.now, rp, msg)).unwrap();
    assert_eq!(net.reps[1].core().length(), 0);
    assert!(!net.reps[1].core().has(0));
    net.collect();
    assert!(net.events[1]
        .iter()
        .all(|e| !matches!(e, Event::Block { .. } | Event::InvalidData { .. })));

    net.reps[1].set_allow_push(true);
    net.collect();
    assert!(matches!(
        net.sent[1].last(),
        Some((
            _,
            Message::Sync(Sync {
                allow_push: true,
                downloading: true,
                ..
            })
        ))
    ));
    net.run_idle();
    assert!(net.reps[0].peer_info(wp).unwrap().remote_allow_push);
    // The same hand-built push is taken now.
    let msg = Message::Data(Box::new(data));
    block_on(net.reps[1].handle_message(net.now, rp, msg)).unwrap();
    assert_eq!(net.reps[1].core().length(), 8);
    assert!(net.reps[1].core().has(0));
    net.run_idle();
    for i in 1..8 {
        assert_eq!(block_on(net.reps[0].push(i)).unwrap(), 1);
    }
    net.run_idle();
    assert!(net.has_all(1, 8));
    // Turned off again: pushes stop at the writer.
    net.reps[1].set_allow_push(false);
    net.run_idle();
    assert!(!net.reps[0].peer_info(wp).unwrap().remote_allow_push);
    assert!(requests_sent(&net, 1).is_empty());
}

/// A pushed block whose bytes were altered fails its hashes: it is not stored, the peer is
/// reported and checked for a fork (paused until it answers, as JS does), then resumed; a
/// pushed proof that does not fit the tree is reported without pausing anyone; the honest
/// push of the same block is then stored.
#[test]
fn bad_pushed_proofs_are_rejected_and_not_stored() {
    use crate::hypercore::messages::{Data, RequestBlock};
    let mut net = push_pair(16, push_only_reader(), 7);
    let (wp, rp) = net.connect(0, 1);
    net.run_idle();
    assert_eq!(block_on(net.reps[0].push(0)).unwrap(), 1);
    net.run_idle();
    assert_eq!(net.reps[1].core().length(), 16);

    // Corrupted bytes.
    net.corrupt.insert(0);
    assert_eq!(block_on(net.reps[0].push(5)).unwrap(), 1);
    net.run_idle();
    net.corrupt.clear();
    assert!(!net.reps[1].core().has(5));
    assert!(net.events[1].iter().any(|e| matches!(
        e,
        Event::InvalidData { peer, error: HypercoreError::InvalidProof(ProofError::InvalidChecksum(_)) }
            if *peer == rp
    )));
    let checks: Vec<Request> = requests_sent(&net, 1);
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].id, 0);
    let info = net.reps[1].peer_info(rp).unwrap();
    assert_eq!(info.invalid_data, 1);
    assert!(!info.paused, "the fork check's answer resumed it");
    assert!(!net.reps[1].is_frozen());

    // Nodes out of place: reported, not paused, no fork check.
    let mut data: Data = block_on(net.reps[0].core().proof(&ProofRequest {
        block: Some(RequestBlock {
            index: 9,
            nodes: crate::hypercore::MerkleTree::max_missing_nodes(18, 16),
        }),
        ..ProofRequest::default()
    }))
    .unwrap();
    let good = data.clone();
    let nodes = &mut data.block.as_mut().unwrap().nodes;
    assert!(nodes.len() >= 2);
    nodes.swap(0, 1);
    block_on(net.reps[1].handle_message(net.now, rp, Message::Data(Box::new(data)))).unwrap();
    net.collect();
    assert!(!net.reps[1].core().has(9));
    let info = net.reps[1].peer_info(rp).unwrap();
    assert_eq!(info.invalid_data, 2);
    assert!(!info.paused);
    assert_eq!(requests_sent(&net, 1).len(), 1, "no second fork check");
    // The same proof intact is stored.
    block_on(net.reps[1].handle_message(net.now, rp, Message::Data(Box::new(good)))).unwrap();
    assert!(net.reps[1].core().has(9));

    // The writer pushes block 5 again, honestly this time.
    net.run_idle();
    assert_eq!(block_on(net.reps[0].push(5)).unwrap(), 1);
    net.run_idle();
    assert!(net.reps[1].core().has(5));
    block_on(check_blocks(net.reps[1].core(), "v0", 5..6));
    block_on(net.reps[1].core().verify_all()).unwrap();
    assert!(net.reps[0].peer_info(wp).is_some() && net.reps[1].peer_info(rp).is_some());
}

/// A live download while the writer appends and pushes: the reader's own upgrade and block
/// requests interleave with pushes that carry upgrades; every upgrade the reader gets starts
/// at or below the length it has by then (no gap), and each verifies.
#[test]
fn pushed_and_requested_upgrades_stay_contiguous() {
    for seed in 60..72u64 {
        let opts = Options {
            allow_push: true,
            ..Options::default()
        };
        let mut net = push_pair(10, opts, seed);
        let (_, rp) = net.connect(0, 1);
        block_on(net.reps[1].download(net.now, 0, None)).unwrap();
        let mut rng = Rng(seed);
        let mut len = 10;
        for _ in 0..40 {
            let add = 1 + rng.next() % 3;
            let more: Vec<Vec<u8>> = (len..len + add).map(|i| block(i, "v0")).collect();
            let refs: Vec<&[u8]> = more.iter().map(Vec::as_slice).collect();
            block_on(net.reps[0].append(net.now, &refs)).unwrap();
            for i in len..len + add {
                if !rng.next().is_multiple_of(4) {
                    block_on(net.reps[0].push(i)).unwrap();
                }
            }
            len += add;
            for _ in 0..rng.next() % 12 {
                net.step();
            }
        }
        net.run_until(|n| n.has_all(1, len));
        net.run_idle();
        assert!(
            !net.events[1]
                .iter()
                .any(|e| matches!(e, Event::InvalidData { .. })),
            "seed {seed}: {:?}",
            net.events[1]
        );
        block_on(net.reps[1].core().verify_all()).unwrap();
        block_on(check_blocks(net.reps[1].core(), "v0", 0..len));
        assert!(!blocks_from(&net, 1, rp).is_empty());
        assert!(!pushes_sent(&net, 0).is_empty());
        // Upgrades in the order the writer sent them: none starts past what the earlier ones
        // reached (the reader would lack the roots to verify it).
        let mut reached = 0;
        for (_, m) in &net.sent[0] {
            if let Message::Data(d) = m {
                if let Some(u) = &d.upgrade {
                    assert!(u.start <= reached, "seed {seed}: {} > {reached}", u.start);
                    reached = reached.max(u.start + u.length);
                }
            }
        }
        assert_eq!(reached, len);
        let asked = requests_sent(&net, 1);
        assert!(asked.iter().any(|r| r.upgrade.is_some()), "seed {seed}");
        assert!(asked.iter().any(|r| r.block.is_some()), "seed {seed}");
    }
}

/// An upgrade request from a peer that allows pushes, sent before it saw our pushed upgrades
/// (as a JS reader does while it still verifies them), is answered from where they ended (JS
/// `_handleRequest`); a fork check (id 0), or a peer that does not allow pushes, gets what it
/// asked for.
#[test]
fn upgrade_requests_start_where_pushed_upgrades_ended() {
    let answer = |net: &mut Net, node: usize, peer: PeerId, req: Request| {
        block_on(net.reps[node].handle_message(net.now, peer, Message::Request(req))).unwrap();
        net.collect();
        match net.sent[node].last() {
            Some((_, Message::Data(d))) if d.request == req.id => {
                d.upgrade.as_ref().map(|u| (u.start, u.length))
            }
            other => panic!("{other:?}"),
        }
    };
    for allow_push in [true, false] {
        let opts = Options {
            allow_push,
            push_only: true,
            ..Options::default()
        };
        let mut net = push_pair(6, opts, 13);
        let (wp, _) = net.connect(0, 1);
        net.run_idle();
        // The reader took 0..6 from a push; the writer grows to 9 and pushes 7 (upgrade 6..9)
        // and then to 12.
        block_on(net.reps[0].push(0)).unwrap();
        net.run_idle();
        let more: Vec<Vec<u8>> = (6..12).map(|i| block(i, "v0")).collect();
        let refs: Vec<&[u8]> = more.iter().map(Vec::as_slice).collect();
        block_on(net.reps[0].append(net.now, &refs[..3])).unwrap();
        block_on(net.reps[0].push(7)).unwrap();
        block_on(net.reps[0].append(net.now, &refs[3..])).unwrap();
        net.collect();
        let pushed = net.reps[0].peer_info(wp).unwrap().pushed_length;
        assert_eq!(pushed, if allow_push { 9 } else { 0 });
        let upgrade = |id: u64, start: u64, length: u64| Request {
            id,
            fork: 0,
            upgrade: Some(RequestUpgrade { start, length }),
            ..Request::default()
        };
        // Upgrade requests the reader sent at length 6, for 6..8 (it saw our sync of 8 only)
        // and for 6..12: from where the push ended, to our length at least.
        let up = answer(&mut net, 0, wp, upgrade(7, 6, 2));
        let want = if allow_push { (9, 3) } else { (6, 2) };
        assert_eq!(up, Some(want), "allow_push {allow_push}");
        let up = answer(&mut net, 0, wp, upgrade(8, 6, 6));
        let want = if allow_push { (12, 0) } else { (6, 6) };
        if allow_push {
            // Our answer to 6..8 already took it to 12: nothing left to prove.
            assert_eq!(up, None);
        } else {
            assert_eq!(up, Some(want));
        }
        assert_eq!(net.reps[0].peer_info(wp).unwrap().pushed_length, 12);
        // With a block its upgrade stays what it asked for (JS), the proof depends on it.
        let with_block = Request {
            block: Some(crate::hypercore::messages::RequestBlock { index: 7, nodes: 0 }),
            ..upgrade(9, 6, 2)
        };
        assert_eq!(answer(&mut net, 0, wp, with_block), Some((6, 2)));
        // A fork check is answered from 0, whatever was pushed.
        let check = Request {
            id: 0,
            fork: 0,
            upgrade: Some(RequestUpgrade {
                start: 0,
                length: 12,
            }),
            ..Request::default()
        };
        let up = answer(&mut net, 0, wp, check);
        assert_eq!(up, Some((0, 12)));
        // The reader follows the chain (the answers are `data` to it too): each verifies.
        net.run_idle();
        assert!(!net.events[1]
            .iter()
            .any(|e| matches!(e, Event::InvalidData { .. })));
        assert_eq!(net.reps[1].core().length(), if allow_push { 12 } else { 0 });
    }
}

/// `push_only` sends no request at all (no upgrade, block, hash or seek request) though
/// blocks, a seek and a tree hash are wanted; `want`s still go out. Turned off, they are all
/// requested and the download completes.
#[test]
fn push_only_makes_no_requests() {
    let mut net = push_pair(40, push_only_reader(), 9);
    net.connect(0, 1);
    let now = net.now;
    let id = block_on(net.reps[1].download(now, 0, Some(40))).unwrap();
    block_on(net.reps[1].seek(now, 100)).unwrap();
    block_on(net.reps[1].tree_hash(now, 5)).unwrap();
    net.run_idle();
    assert!(
        requests_sent(&net, 1).is_empty(),
        "{:?}",
        requests_sent(&net, 1)
    );
    assert_eq!(net.reps[1].core().length(), 0);
    assert_eq!(net.reps[1].inflight(), 0);
    block_on(net.reps[1].set_push_only(net.now, false)).unwrap();
    net.run_until(|n| n.events[1].contains(&Event::Downloaded { id }));
    assert!(net.has_all(1, 40));
    assert!(requests_sent(&net, 1).iter().any(|r| r.block.is_some()));
    net.run_idle();
    assert!(net.events[1]
        .iter()
        .any(|e| matches!(e, Event::Seek { .. })));
    assert!(net.events[1]
        .iter()
        .any(|e| matches!(e, Event::TreeHash { length: 5, .. })));
}

/// An upgrade that starts below the reader's length verifies from the reader's roots at its
/// start (JS writers answer from what they pushed, 0 on a new connection): one that ends at
/// or below its length changes nothing, one past it grows the core when the proof shows our
/// roots; one whose nodes do not show them is refused, never stored over a tree it did not
/// check.
#[test]
fn upgrades_from_below_our_length_verify_from_our_roots() {
    use crate::hypercore::messages::RequestBlock;
    let up = |start: u64, length: u64, block: Option<u64>| ProofRequest {
        block: block.map(|index| RequestBlock {
            index,
            nodes: crate::hypercore::MerkleTree::max_missing_nodes(2 * index, start),
        }),
        upgrade: Some(RequestUpgrade { start, length }),
        ..ProofRequest::default()
    };
    block_on(async {
        // A reader at `len` of a writer at `len`; then the writer grows to 13.
        let pair_at = |len: u64| async move {
            let (w, _) = writer(len, None).await;
            let mut r = reader(*w.key(), None).await;
            let mut d = w.proof(&up(0, len, None)).await.unwrap();
            d.manifest = w.manifest().cloned();
            r.apply_proof(&d).await.unwrap();
            (w, r)
        };
        let (mut w, mut r) = pair_at(8).await;
        // It stores the root of 8 (node 7) alone: from 4 it lacks our root there (node 3).
        let d = w.proof(&up(4, 2, None)).await.unwrap();
        assert!(matches!(
            r.apply_proof(&d).await,
            Err(HypercoreError::InvalidProof(ProofError::Unverifiable(3)))
        ));
        for i in 0..8 {
            let nodes = r.missing_nodes(2 * i).await.unwrap();
            let req = ProofRequest {
                block: Some(RequestBlock { index: i, nodes }),
                ..ProofRequest::default()
            };
            r.apply_proof(&w.proof(&req).await.unwrap()).await.unwrap();
        }
        for (s, l) in [(4, 2), (0, 8), (6, 2), (0, 3)] {
            let d = w.proof(&up(s, l, None)).await.unwrap();
            let out = r.apply_proof(&d).await.unwrap();
            assert_eq!(out.upgraded_to, None, "{s}+{l}");
            assert_eq!(r.length(), 8);
        }
        for i in 8..13u64 {
            w.append(&[&block(i, "v0")]).await.unwrap();
        }
        // 0..13: its nodes (the roots of 13: 7, 17, 24) include our root 7.
        let d = w.proof(&up(0, 13, Some(12))).await.unwrap();
        let out = r.apply_proof(&d).await.unwrap();
        assert_eq!(out.upgraded_to, Some(13));
        assert!(r.has(12));
        assert_eq!(r.tree_node(7).await.unwrap(), w.tree_node(7).await.unwrap());
        check_blocks(&r, "v0", 12..13).await;

        // A reader at 6 (roots 3 and 9) given 4..13: the proof grows from root 3 through node
        // 11, never showing node 9, so nothing tells the trees agree: refused, unchanged.
        let (mut w, mut r) = pair_at(6).await;
        for i in 6..13u64 {
            w.append(&[&block(i, "v0")]).await.unwrap();
        }
        let d = w.proof(&up(4, 9, None)).await.unwrap();
        assert!(matches!(
            r.apply_proof(&d).await,
            Err(HypercoreError::InvalidProof(ProofError::Unverifiable(9)))
        ));
        assert_eq!(r.length(), 6);
        // From its own length it upgrades.
        let d = w.proof(&up(6, 7, None)).await.unwrap();
        assert_eq!(r.apply_proof(&d).await.unwrap().upgraded_to, Some(13));
        r.verify_all().await.unwrap();
    });
}

/// A transport tells the hub its backlog when it moved by a step, or emptied.
#[test]
fn backlog_reports_on_a_step_or_when_emptied() {
    assert!(!backlog_report_due(0, 0));
    assert!(!backlog_report_due(BACKLOG_REPORT_STEP - 1, 0));
    assert!(backlog_report_due(BACKLOG_REPORT_STEP, 0));
    assert!(!backlog_report_due(BACKLOG_REPORT_STEP + 1, 2));
    assert!(backlog_report_due(1, BACKLOG_REPORT_STEP + 1));
    assert!(backlog_report_due(0, 1));
    assert!(!backlog_report_due(1, 1));
}
