//! Deterministic replication tests: replicators on [`MemoryStorage`] joined by a virtual network
//! with seeded per-message delays (FIFO per link, reordered across links), and hubs joined by
//! protomux frames.

mod backpressure;
mod download;
mod hub;
mod misbehaviour;
mod peers;
mod push;
mod seek;

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
