//! The ack timer ([`Autobase::poll_ack`], JS `ackInterval`/`ackThreshold`) on a virtual clock:
//! members exchange every block at once; time passes only in the test's steps.

use super::acks::{AckConfig, DEFAULT_ACK_INTERVAL, MAX_WAIT};
use super::messages::{Node, OplogMessage};
use super::{ApplyNode, Autobase, Host, Views};
use crate::encoding::Encode;
use crate::rng::Rng;

fn apply(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
    let view = views.open("view");
    for n in nodes {
        if let Some(rest) = n.value.strip_prefix(b"add:") {
            if let Ok(k) = <[u8; 32]>::try_from(&rest[1..]) {
                host.add_writer(&k, rest[0] == b'i');
            }
            continue;
        }
        views.append(view, n.value.to_vec());
    }
}

type Base = Autobase<fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>)>;

/// Members whose blocks reach every other member at once.
struct Room {
    keys: Vec<[u8; 32]>,
    bases: Vec<Base>,
    logs: Vec<Vec<Vec<u8>>>,
    fed: Vec<Vec<usize>>,
    rngs: Vec<Rng>,
    /// Per member: the virtual times of the acks it wrote.
    acks: Vec<Vec<u64>>,
    /// Per member: reachable; an offline member neither gets nor gives blocks, nor runs.
    online: Vec<bool>,
}

impl Room {
    /// `n` members, member 0 the bootstrap, each running the ack timer with `config`; the
    /// members' randomness is seeded from `seed`.
    fn new(n: usize, config: AckConfig, seed: u8) -> Self {
        let keys: Vec<[u8; 32]> = (1..=n as u8).map(|i| [i; 32]).collect();
        let f: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = apply;
        let bases = keys
            .iter()
            .map(|k| {
                let mut b = Autobase::new(keys[0], f);
                b.open_view("view");
                b.set_ack_timer(*k, config);
                b
            })
            .collect();
        Room {
            bases,
            logs: vec![Vec::new(); n],
            fed: vec![vec![0; n]; n],
            rngs: (0..n)
                .map(|i| {
                    let mut s = [0u8; 32];
                    s[0] = seed;
                    s[1] = i as u8;
                    Rng::from_seed(s)
                })
                .collect(),
            acks: vec![Vec::new(); n],
            online: vec![true; n],
            keys,
        }
    }

    fn put(&mut self, i: usize, msgs: Vec<super::messages::OplogMessage>) {
        for m in msgs {
            self.logs[i].push(m.to_bytes());
        }
        self.bases[i].update();
    }

    /// Every member gets the blocks it lacks, updates and polls its timer at `now`.
    fn exchange(&mut self, now: u64) {
        loop {
            let mut moved = false;
            for to in 0..self.keys.len() {
                if !self.online[to] {
                    continue;
                }
                for w in 0..self.keys.len() {
                    while self.online[w] && self.fed[to][w] < self.logs[w].len() {
                        if to != w {
                            let seq = self.fed[to][w];
                            self.bases[to]
                                .handle_block(&self.keys[w], seq as u64, &self.logs[w][seq])
                                .unwrap();
                            moved = true;
                        }
                        self.fed[to][w] += 1;
                    }
                }
                self.bases[to].update();
                self.poll(to, now);
            }
            if !moved {
                break;
            }
        }
    }

    fn poll(&mut self, i: usize, now: u64) {
        let rng = &mut self.rngs[i];
        if let Some(m) = self.bases[i].poll_ack(now, rng, false) {
            assert!(m.iter().all(|m| m.node.value.is_none()), "an ack");
            self.acks[i].push(now);
            self.put(i, m);
        }
    }

    fn write(&mut self, i: usize, value: &[u8], now: u64) {
        let k = self.keys[i];
        let m = self.bases[i].append(&k, vec![value.to_vec()]).unwrap();
        self.put(i, m);
        self.exchange(now);
    }

    fn add(&mut self, who: usize, indexer: bool, now: u64) {
        let mut v = if indexer {
            b"add:i".to_vec()
        } else {
            b"add:w".to_vec()
        };
        v.extend_from_slice(&self.keys[who]);
        self.write(0, &v, now);
    }

    /// Run the clock from `from` to `to`, waking every member at its timeout.
    fn run_until(&mut self, from: u64, to: u64) -> u64 {
        let mut now = from;
        loop {
            let next = self
                .bases
                .iter()
                .zip(&self.online)
                .filter(|(_, &on)| on)
                .filter_map(|(b, _)| b.ack_timeout())
                .min();
            match next {
                Some(t) if t <= to => {
                    now = now.max(t);
                    self.exchange(now);
                }
                _ => return to,
            }
        }
    }

    fn indexed(&mut self, i: usize) -> (usize, usize) {
        let b = &mut self.bases[i];
        let v = b.open_view("view");
        (b.views().len(v), b.indexed_view_lengths()[v])
    }

    fn total_acks(&self) -> usize {
        self.acks.iter().map(Vec::len).sum()
    }
}

fn no_threshold() -> AckConfig {
    AckConfig {
        interval: DEFAULT_ACK_INTERVAL,
        threshold: 0,
    }
}

/// A writer's 30 values, one every half second: the indexer acks once, 10 to 20 s (and at most a
/// third of the interval more) after the last one pushed its timer, not once per update (the
/// rule the chat had acked 30 times). Everything is indexed by that one ack.
fn one_ack_for_a_burst(seed: u8) -> Vec<u64> {
    let mut room = Room::new(2, no_threshold(), seed);
    room.add(1, false, 0);
    assert_eq!(
        room.total_acks(),
        0,
        "the bootstrap alone indexes its own add"
    );
    let mut now = 0;
    for i in 0..30 {
        now += 500;
        room.write(1, format!("b{i}").as_bytes(), now);
    }
    let last = now;
    assert_eq!(
        room.total_acks(),
        0,
        "no ack while the writer keeps writing"
    );
    assert_eq!(room.indexed(0), (30, 0));
    room.run_until(now, last + 60_000);
    assert_eq!(room.acks[0].len(), 1, "one ack: {:?}", room.acks);
    let at = room.acks[0][0];
    assert!(
        (last + DEFAULT_ACK_INTERVAL..last + 2 * DEFAULT_ACK_INTERVAL + 3_334).contains(&at),
        "acked at {at}, last value at {last}"
    );
    assert!(
        room.acks[1].is_empty(),
        "a writer that is not an indexer never acks"
    );
    assert_eq!(room.indexed(0), (30, 30));
    assert_eq!(room.indexed(1), (30, 30));
    room.acks[0].clone()
}

#[test]
fn an_indexer_acks_once_per_interval_not_per_update() {
    one_ack_for_a_burst(1);
}

/// The jitter comes from the rng argument: the same seed gives the same schedule, another seed
/// another one.
#[test]
fn the_same_seed_gives_the_same_schedule() {
    let a = one_ack_for_a_burst(7);
    assert_eq!(a, one_ack_for_a_burst(7));
    assert_ne!(a, one_ack_for_a_burst(8));
}

/// A writer that never stops: remote blocks push the timer back, but not past its limit
/// (`random2over1(2 min)` after the first push), so the indexer still acks every few minutes.
#[test]
fn pushes_of_a_busy_writer_do_not_delay_acks_past_the_limit() {
    let mut room = Room::new(2, no_threshold(), 2);
    room.add(1, false, 0);
    let mut now = 0;
    for i in 0..1200 {
        now += 500;
        room.write(1, format!("b{i}").as_bytes(), now);
    }
    // 600 s of values: an ack at most every 2 × MAX_WAIT + 2 intervals
    let n = room.acks[0].len();
    let most = (2 * MAX_WAIT + 2 * DEFAULT_ACK_INTERVAL + 3_334) as usize;
    assert!(n >= 600_000 / most, "{n} acks: {:?}", room.acks[0]);
    assert!(
        n <= 600_000 / MAX_WAIT as usize + 1,
        "{n} acks: {:?}",
        room.acks[0]
    );
    let mut prev = 0;
    for &at in &room.acks[0] {
        assert!(at - prev <= most as u64, "{prev} -> {at}");
        prev = at;
    }
    assert!(room.indexed(0).1 > 0);
}

/// With `ackThreshold`, updates without a local write bring the timer forward: after
/// `random2over1(indexers × threshold)` of them (4 to 7 here) the ack comes within a third of
/// the interval instead of waiting for the writer to stop.
#[test]
fn updates_past_the_threshold_bring_the_ack_forward() {
    let mut room = Room::new(2, AckConfig::default(), 3);
    room.add(1, false, 0);
    let mut now = 0;
    for i in 0..120 {
        now += 500;
        room.write(1, format!("b{i}").as_bytes(), now);
    }
    // 120 updates in 60 s: an ack every 4 to 7 updates, each after at most two waits of a
    // third of the interval (2 to 11 s a round)
    let n = room.acks[0].len();
    assert!((5..=30).contains(&n), "{n} acks: {:?}", room.acks[0]);
    assert!(room.acks[1].is_empty());
}

/// An idle base writes no acks: once everything is indexed, an hour of timer runs writes
/// nothing, while the timer keeps running.
#[test]
fn an_idle_base_writes_no_acks() {
    let mut room = Room::new(3, AckConfig::default(), 4);
    room.add(1, true, 0);
    room.add(2, true, 0);
    let mut now = room.run_until(0, 120_000);
    room.write(1, b"one", now);
    now = room.run_until(now, now + 120_000);
    room.write(2, b"two", now);
    now = room.run_until(now, now + 120_000);
    for i in 0..3 {
        assert!(room.bases[i].is_indexer(&room.keys[i]), "{i} indexes");
        assert_eq!(room.indexed(i), (2, 2), "member {i}");
    }
    let before = room.total_acks();
    assert!(before > 0);
    room.run_until(now, now + 3_600_000);
    assert_eq!(room.total_acks(), before, "{:?}", room.acks);
    assert!(room.bases.iter().all(|b| b.ack_timeout().is_some()));
}

/// A writer that is not an indexer runs no timer and never acks; an indexer added later does,
/// and its first ack (JS: a pending indexer that has written nothing) comes at once.
#[test]
fn a_non_indexer_never_acks_and_a_pending_indexer_acks_at_once() {
    let mut room = Room::new(3, AckConfig::default(), 5);
    room.add(1, false, 0);
    room.write(0, b"a", 0);
    room.write(1, b"b", 100);
    let now = room.run_until(100, 600_000);
    assert!(room.acks[1].is_empty());
    assert_eq!(room.bases[1].ack_timeout(), None);
    assert_eq!(room.indexed(1), (2, 2));
    room.add(2, true, now);
    assert_eq!(
        room.acks[2],
        vec![now],
        "the pending indexer's first entry, at once"
    );
    room.run_until(now, now + 600_000);
    assert!(room.bases[2].is_indexer(&room.keys[2]));
    assert!(room.bases[2].ack_timeout().is_some());
    assert!(room.acks[1].is_empty());
}

/// Without a timer (JS `ackInterval: 0`) nothing is written but a pending indexer's first ack.
#[test]
fn no_interval_no_timer() {
    let cfg = AckConfig {
        interval: 0,
        threshold: 4,
    };
    let mut room = Room::new(2, cfg, 6);
    room.add(1, true, 0);
    assert_eq!(room.acks[1], vec![0]);
    room.write(0, b"x", 10);
    room.run_until(10, 600_000);
    assert!(room.bases.iter().all(|b| b.ack_timeout().is_none()));
    assert_eq!(room.total_acks(), 1);
}

/// Two indexers whose acks crossed (JS autobase 7.28.1's stall: `shouldAck` says no on both
/// sides while a value waits unindexed, see `sim_tests::crossing_acks_stall_until_an_ack_sees_
/// the_other_indexer`): when a timer runs twice with nothing come in nor indexed in between,
/// it writes the ack that moves it on ([`Autobase::stall_ack`]), and the value is indexed.
#[test]
fn a_timer_breaks_a_stall_of_crossed_acks() {
    let mut room = crossed_acks_stall();
    // the timers run: one of them finds nothing moved since its last run and writes the ack
    room.run_until(0, 120_000);
    assert_eq!(room.indexed(0), (2, 2), "{}", room.bases[0].explain());
    assert_eq!(room.indexed(1), (2, 2));
    let acks = room.total_acks();
    assert!(acks <= 4, "{:?}", room.acks);
    // and then nothing more
    room.run_until(120_000, 3_600_000);
    assert_eq!(room.total_acks(), acks, "{:?}", room.acks);
}

/// Two indexers stalled on crossed acks, their timers not run yet.
fn crossed_acks_stall() -> Room {
    let mut room = Room::new(2, no_threshold(), 9);
    room.write(0, b"a 0", 0);
    room.add(1, true, 0);
    for turn in 0..8 {
        let i = turn % 2;
        let k = room.keys[i];
        if let Some(m) = room.bases[i].force_ack(&k) {
            room.put(i, m);
        }
        room.exchange(0);
    }
    assert!(room
        .bases
        .iter()
        .all(|b| b.is_indexer(&[1; 32]) && b.is_indexer(&[2; 32])));
    // the second indexer's value crosses an ack of the first's, then both ack at the same
    // moments until they stop asking
    let k0 = room.keys[0];
    let m = room.bases[0].force_ack(&k0).unwrap();
    room.put(0, m);
    let k1 = room.keys[1];
    let m = room.bases[1]
        .append(&k1, vec![b"b value".to_vec()])
        .unwrap();
    room.put(1, m);
    room.exchange(0);
    for _ in 0..20 {
        for i in 0..2 {
            let k = room.keys[i];
            if let Some(m) = room.bases[i].ack(&k) {
                room.put(i, m);
            }
        }
        room.exchange(0);
    }
    assert_eq!(
        room.indexed(0),
        (2, 1),
        "stalled: {}",
        room.bases[0].explain()
    );
    assert_eq!(room.indexed(1), (2, 1));
    assert!(room.total_acks() <= 1, "{:?}", room.acks);
    room
}

/// The same stall while a writer that is no member (hinted, as the wakeup protocol does) sends
/// a block a second to both indexers: its blocks are never linearized, so they are no progress,
/// and the timers still break the stall (they did not: every run saw more blocks held).
#[test]
fn blocks_of_a_non_member_do_not_keep_a_stall() {
    let mut room = crossed_acks_stall();
    let stranger = [9u8; 32];
    for b in &mut room.bases {
        b.hint_writer(&stranger);
    }
    let mut now = 0;
    for seq in 0..600u64 {
        let block = OplogMessage::new(Node {
            heads: Vec::new(),
            batch: 1,
            value: Some(format!("junk {seq}").into_bytes()),
        })
        .to_bytes();
        for b in &mut room.bases {
            b.handle_block(&stranger, seq, &block).unwrap();
            b.update();
        }
        now = room.run_until(now, now + 1_000);
    }
    assert_eq!(room.indexed(0), (2, 2), "{}", room.bases[0].explain());
    assert_eq!(room.indexed(1), (2, 2));
}

/// Four indexers, two of them offline (the majority of three is out of reach) and a value
/// waiting: nothing the two online indexers write can index it. JS's `shouldAck` writes nothing
/// there; the stall rule must not make them trade acks forever (each one's stall ack was the
/// other writer's head that made the other's next one legal: 50 acks an hour each at a 10 s
/// interval). A stall ack is written only when it can move something, so a bounded handful
/// comes, then none.
#[test]
fn two_indexers_without_a_quorum_do_not_trade_acks() {
    // JS's default interval, and the chat's 1 s
    without_a_quorum(AckConfig::default());
    without_a_quorum(AckConfig {
        interval: 1_000,
        threshold: 4,
    });
}

fn without_a_quorum(config: AckConfig) {
    let mut room = Room::new(4, config, 11);
    room.add(1, true, 0);
    room.add(2, true, 0);
    room.add(3, true, 0);
    let mut now = room.run_until(0, 200_000);
    for i in 0..4 {
        assert!(room.bases[i].is_indexer(&room.keys[i]), "{i} indexes");
        assert!(room.bases[0].is_indexer(&room.keys[i]), "{i} indexes");
    }
    let settled = room.total_acks();
    now = room.run_until(now, now + 200_000);
    assert_eq!(room.total_acks(), settled, "settled: {:?}", room.acks);
    room.online[2] = false;
    room.online[3] = false;
    room.write(0, b"waits", now);
    let before: Vec<usize> = room.acks.iter().map(Vec::len).collect();
    now = room.run_until(now, now + 3_600_000);
    let (n, indexed) = room.indexed(0);
    assert_eq!(indexed + 1, n, "the value waits for the quorum");
    let during: Vec<usize> = room
        .acks
        .iter()
        .zip(&before)
        .map(|(a, b)| a.len() - b)
        .collect();
    // the ordinary acks of the value (JS's too) and at most one stall ack each
    assert!(
        during[0] <= 3 && during[1] <= 3,
        "acks in the hour: {during:?}, at {:?}",
        room.acks
    );
    // and none once settled
    let total = room.total_acks();
    room.run_until(now, now + 3_600_000);
    assert_eq!(room.total_acks(), total, "{:?}", room.acks);
    // back online: the value is indexed
    room.online[2] = true;
    room.online[3] = true;
    room.exchange(now + 3_600_000);
    room.run_until(now + 3_600_000, now + 3_900_000);
    let (n, indexed) = room.indexed(0);
    assert_eq!(indexed, n, "{}", room.bases[0].explain());
}

/// While the driver reads a fast-forward point (JS `isFastForwarding()`) the timer writes no
/// ack, as JS's `ack()` returns early then; a pending indexer still acks at once. Once the read
/// is over the indexer acks as before.
#[test]
fn no_ack_while_a_fast_forward_is_read() {
    let mut room = Room::new(3, no_threshold(), 12);
    room.add(1, false, 0);
    room.bases[0].set_fast_forwarding(true);
    let mut now = 0;
    for i in 0..10 {
        now += 500;
        room.write(1, format!("b{i}").as_bytes(), now);
    }
    now = room.run_until(now, now + 600_000);
    assert_eq!(room.total_acks(), 0, "{:?}", room.acks);
    assert_eq!(room.indexed(0), (10, 0));
    assert!(room.bases[0].ack_timeout().is_some(), "the timer runs");
    // a pending indexer's first entry comes all the same
    room.bases[2].set_fast_forwarding(true);
    room.add(2, true, now);
    assert_eq!(room.acks[2], vec![now]);
    room.bases[2].set_fast_forwarding(false);
    room.bases[0].set_fast_forwarding(false);
    room.run_until(now, now + 600_000);
    assert!(!room.acks[0].is_empty());
    assert_eq!(room.indexed(0), (10, 10), "{}", room.bases[0].explain());
}
