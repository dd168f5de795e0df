//! Seeded simulation: 5-20 members of one autobase (the bootstrap indexes alone, or with two
//! more indexers on even seeds; it adds the others as writers) append while the network splits
//! into partitions that sync among themselves, blocks arrive writer by writer in random
//! interleavings, members restart, then the network heals. Every member runs JS's ack timer
//! ([`Autobase::poll_ack`], JS's default `ackInterval` and `ackThreshold`) on a virtual clock:
//! the indexers ack only when their timers say so. A restart is a process's: the engine is
//! dropped and a new one replays the oplog blocks that member stored (as the chat does), with
//! its ack timer set again. What a member indexed is never lost or changed, across restarts
//! too, and every member ends with the same view, all of it indexed, holding every value
//! written.
#![allow(clippy::needless_range_loop, clippy::type_complexity)] // indexes pair members with their oplogs

use super::acks::AckConfig;
use super::{ApplyNode, Autobase, Host, Views};
use crate::encoding::Encode;
use crate::rng::Rng as AckRng;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

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

/// [`apply`] on an optimistic base: a value starting with `ok` acks its writer.
fn apply_optimistic(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
    for n in nodes {
        if n.value.starts_with(b"ok") {
            host.ack_writer(n.from);
        }
        apply(std::slice::from_ref(n), views, host);
    }
}

type Base = Autobase<fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>)>;

struct Member {
    key: [u8; 32],
    base: Base,
    indexed: Vec<Vec<u8>>,
    /// The randomness of the member's ack timer.
    rng: AckRng,
    /// How many times it restarted.
    boots: usize,
}

impl Member {
    /// A member's engine as a process opens it: the base with its view and its ack timer (the
    /// timer's randomness from the seed, the key and the `boot` count), nothing fed yet.
    fn open(seed: u64, key: [u8; 32], boot: usize, bootstrap: [u8; 32], optimistic: bool) -> Self {
        let f: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) =
            if optimistic { apply_optimistic } else { apply };
        let mut base = Autobase::new(bootstrap, f);
        base.set_optimistic(optimistic);
        base.open_view("view");
        base.set_ack_timer(key, AckConfig::default());
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        s[8..].copy_from_slice(&key[8..]);
        s[30] ^= boot as u8;
        Member {
            key,
            base,
            indexed: Vec::new(),
            rng: AckRng::from_seed(s),
            boots: boot,
        }
    }

    /// Restart as the chat does: drop the engine, open a new one and replay what this member
    /// stored, the bootstrap's oplog and its own first, then the other writers' (in a random
    /// order, each in order). It shows the view it had, and what it had indexed is still
    /// indexed, unchanged.
    fn restart(
        &mut self,
        seed: u64,
        optimistic: bool,
        oplogs: &[Vec<Vec<u8>>],
        keys: &[[u8; 32]],
        have: &[usize],
        rng: &mut Rng,
    ) {
        let me = keys.iter().position(|k| *k == self.key).unwrap();
        let mut new = Member::open(seed, self.key, self.boots + 1, keys[0], optimistic);
        let mut order: Vec<usize> = (1..keys.len()).filter(|&w| w != me).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let first: Vec<usize> = if me == 0 { vec![0] } else { vec![0, me] };
        for (step, ws) in [first, order].iter().enumerate() {
            for &w in ws {
                for seq in 0..have[w] {
                    new.base
                        .handle_block(&keys[w], seq as u64, &oplogs[w][seq])
                        .unwrap();
                }
            }
            if step == 0 {
                new.base.update();
            }
        }
        new.base.update();
        // the same blocks held give the same linearization: the whole view, its indexed part
        // at least as long as before
        let view = self.base.open_view("view");
        assert_eq!(new.base.open_view("view"), view);
        assert_eq!(
            new.base.views().blocks(view),
            self.base.views().blocks(view),
            "the view changed across a restart"
        );
        new.indexed = std::mem::take(&mut self.indexed);
        *self = new;
        self.check_indexed();
    }

    fn check_indexed(&mut self) {
        let view = self.base.open_view("view");
        let n = self.base.indexed_view_lengths()[view];
        let now = &self.base.views().blocks(view)[..n];
        assert!(now.len() >= self.indexed.len(), "indexed view shrank");
        assert_eq!(
            &now[..self.indexed.len()],
            &self.indexed[..],
            "indexed entries changed"
        );
        self.indexed = now.to_vec();
    }
}

/// Every block `from` has (of every oplog) that `to` lacks, in order per writer.
fn sync(
    oplogs: &[Vec<Vec<u8>>],
    keys: &[[u8; 32]],
    have: &mut [Vec<usize>],
    to: usize,
    from: usize,
    rng: &mut Rng,
    m: &mut Member,
) {
    let mut writers: Vec<usize> = (0..keys.len()).collect();
    for i in (1..writers.len()).rev() {
        writers.swap(i, rng.below(i + 1));
    }
    for w in writers {
        let upto = have[from][w];
        while have[to][w] < upto {
            let seq = have[to][w];
            m.base
                .handle_block(&keys[w], seq as u64, &oplogs[w][seq])
                .unwrap();
            have[to][w] += 1;
        }
    }
}

/// `optimists`: the last members are never added; on an optimistic base they append optimistic
/// values, `ok ...` (acked by apply, kept) or `nope ...` (not acked: dropped).
fn run(seed: u64, optimists: usize) -> usize {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let n = 5 + rng.below(16);
    let keys: Vec<[u8; 32]> = (0..n)
        .map(|i| {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&rng.next().to_le_bytes());
            k[31] = i as u8;
            k
        })
        .collect();
    let writers = n - optimists;
    let mut members: Vec<Member> = keys
        .iter()
        .map(|k| Member::open(seed, *k, 0, keys[0], optimists > 0))
        .collect();
    let mut oplogs: Vec<Vec<Vec<u8>>> = vec![Vec::new(); n];
    // have[member][writer]: blocks of writer's oplog that member holds
    let mut have = vec![vec![0usize; n]; n];
    let write = |i: usize,
                 values: Vec<Vec<u8>>,
                 members: &mut Vec<Member>,
                 oplogs: &mut Vec<Vec<Vec<u8>>>,
                 have: &mut Vec<Vec<usize>>| {
        let key = members[i].key;
        if let Some(msgs) = members[i].base.append(&key, values) {
            for m in msgs {
                oplogs[i].push(m.to_bytes());
            }
            have[i][i] = oplogs[i].len();
            members[i].base.update();
        }
    };
    // every member's ack timer at `now` (a member that is not an indexer never acks)
    let poll = |i: usize,
                now: u64,
                members: &mut Vec<Member>,
                oplogs: &mut Vec<Vec<Vec<u8>>>,
                have: &mut Vec<Vec<usize>>|
     -> bool {
        let m = &mut members[i];
        let Some(msgs) = m.base.poll_ack(now, &mut m.rng, false) else {
            return false;
        };
        let sys = m.base.system();
        assert!(
            sys.indexers.iter().any(|c| c.key == m.key)
                || sys.pending_indexers.contains(&m.key)
                || m.base.is_indexer(&m.key),
            "only an indexer acks"
        );
        for msg in msgs {
            oplogs[i].push(msg.to_bytes());
        }
        have[i][i] = oplogs[i].len();
        m.base.update();
        true
    };
    // the bootstrap adds everyone (on even seeds two of them as indexers), and everyone hears
    // of it
    let indexers = if seed.is_multiple_of(2) { 3 } else { 1 };
    for (i, k) in keys.iter().enumerate().take(writers).skip(1) {
        let mut v = if i < indexers {
            b"add:i".to_vec()
        } else {
            b"add:w".to_vec()
        };
        v.extend_from_slice(k);
        write(0, vec![v], &mut members, &mut oplogs, &mut have);
    }
    for to in 1..n {
        sync(&oplogs, &keys, &mut have, to, 0, &mut rng, &mut members[to]);
        members[to].base.update();
    }
    let mut counter = 0u64;
    // the virtual clock, in ms
    let mut now = 0u64;
    let mut acks = 0usize;
    for epoch in 0..4 {
        // partitions: every member in one of 1-3 groups
        let groups = 1 + rng.below(3);
        let group: Vec<usize> = (0..n).map(|_| rng.below(groups)).collect();
        for _ in 0..(10 + rng.below(20)) {
            let i = rng.below(n);
            // a member restarts now and then, anywhere in the run
            if rng.below(12) == 0 {
                let r = rng.below(n);
                members[r].restart(seed, optimists > 0, &oplogs, &keys, &have[r], &mut rng);
            }
            let action = rng.below(6);
            // time passes: up to 4 s a step, up to 20 s when nothing else happens
            now += rng.below(4_000) as u64;
            if action == 0 {
                now += rng.below(20_000) as u64;
            } else if action < 3 {
                let j = rng.below(n);
                if group[i] == group[j] && i != j {
                    sync(&oplogs, &keys, &mut have, i, j, &mut rng, &mut members[i]);
                    members[i].base.update();
                    members[i].check_indexed();
                }
            } else if i >= writers {
                let ok = rng.below(2) == 0;
                let v = if ok {
                    counter += 1;
                    format!("ok m{i} e{epoch} #{counter}")
                } else {
                    format!("nope m{i} e{epoch}")
                };
                let key = members[i].key;
                let m = &mut members[i].base;
                assert!(m.append(&key, vec![b"plain".to_vec()]).is_none());
                if let Some(msgs) = m.append_optimistic(&key, v.into_bytes()) {
                    for m in msgs {
                        oplogs[i].push(m.to_bytes());
                    }
                    have[i][i] = oplogs[i].len();
                    members[i].base.update();
                }
                members[i].check_indexed();
            } else {
                let batch = 1 + rng.below(3);
                let values = (0..batch)
                    .map(|_| {
                        counter += 1;
                        format!("m{i} e{epoch} #{counter}").into_bytes()
                    })
                    .collect();
                write(i, values, &mut members, &mut oplogs, &mut have);
                members[i].check_indexed();
            }
            for j in 0..n {
                if poll(j, now, &mut members, &mut oplogs, &mut have) {
                    acks += 1;
                }
                members[j].check_indexed();
            }
        }
    }
    // heal: everyone syncs from everyone, and the clock runs to the next member's timer; the
    // indexers ack when their timers say so, until every value is indexed everywhere (the
    // bootstrap writes one last value first)
    write(
        0,
        vec![b"last".to_vec()],
        &mut members,
        &mut oplogs,
        &mut have,
    );
    let mut done = false;
    let mut rounds = 0;
    for _round in 0..400 {
        rounds += 1;
        // restarts go on while the network heals
        if rng.below(8) == 0 {
            let r = rng.below(n);
            members[r].restart(seed, optimists > 0, &oplogs, &keys, &have[r], &mut rng);
            // its driver runs the timer once it has replayed (it starts there)
            if poll(r, now, &mut members, &mut oplogs, &mut have) {
                acks += 1;
            }
        }
        for to in 0..n {
            for from in 0..n {
                if to != from {
                    sync(
                        &oplogs,
                        &keys,
                        &mut have,
                        to,
                        from,
                        &mut rng,
                        &mut members[to],
                    );
                }
            }
            members[to].base.update();
            members[to].check_indexed();
        }
        let view = members[0].base.open_view("view");
        let first = members[0].base.views().blocks(view).to_vec();
        if members.iter().all(|m| {
            m.base.views().blocks(view) == &first[..]
                && m.base.indexed_view_lengths()[view] == first.len()
        }) {
            done = true;
            break;
        }
        let next = members.iter().filter_map(|m| m.base.ack_timeout()).min();
        now = now.max(next.expect("an indexer's timer runs"));
        for i in 0..n {
            if poll(i, now, &mut members, &mut oplogs, &mut have) {
                acks += 1;
            }
        }
    }
    assert!(acks > 0, "seed {seed}: the timers acked");
    let restarts: usize = members.iter().map(|m| m.boots).sum();
    eprintln!(
        "seed {seed}: {n} members, {restarts} restarts, {acks} acks, {rounds} rounds to heal, \
         {now} ms"
    );
    if !done {
        let view = members[0].base.open_view("view");
        for m in &members {
            eprintln!(
                "len {} indexed {} indexers {:?} lin-ok reboots {} writable {}",
                m.base.views().len(view),
                m.base.indexed_view_lengths()[view],
                m.base
                    .system()
                    .indexers
                    .iter()
                    .map(|c| (c.key[31], c.length))
                    .collect::<Vec<_>>(),
                m.base.reboots,
                m.base.is_writable(&m.key),
            );
            eprintln!("   {}", m.base.explain());
            for (k, o, l, ld, r, i) in m.base.writer_states() {
                if k[31] < 3 {
                    eprintln!("   w{} indexed {o} lin {l} loaded {ld} removed {r} idx {i} held {} pending {:?}", k[31], m.base.oplog_len(&k), m.base.pending_node(&k).map(|p| (p.0, p.1.iter().map(|h| (h.key[31], h.length)).collect::<Vec<_>>(), p.2)));
                }
            }
        }
    }
    assert!(done, "seed {seed}: no convergence");
    let view = members[0].base.open_view("view");
    let want = members[0].base.views().blocks(view).to_vec();
    let total: usize = want.len();
    assert!(total > 10, "seed {seed}: {total} values");
    for m in &members {
        assert_eq!(
            m.base.views().blocks(view),
            &want[..],
            "seed {seed}: views differ"
        );
        assert_eq!(
            m.base.indexed_view_lengths()[view],
            total,
            "seed {seed}: all indexed"
        );
    }
    // every value written by a writer made it into the view, and no value apply did not ack
    assert_eq!(total as u64, counter + 1, "seed {seed}");
    assert!(!want.iter().any(|v| v.starts_with(b"nope")), "seed {seed}");
    want.iter().filter(|v| v.starts_with(b"ok")).count()
}

#[test]
fn members_converge_under_partitions() {
    let only: Option<u64> = std::env::var("AB_SEED").ok().and_then(|s| s.parse().ok());
    let mut failed = Vec::new();
    for seed in 1..=80 {
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        if std::panic::catch_unwind(|| run(seed, 0)).is_err() {
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failed seeds {failed:?}");
}

/// The same with two optimistic non-members on an optimistic base: their acked values are
/// indexed everywhere in one order, their other values nowhere.
#[test]
fn optimists_converge_under_partitions() {
    let only: Option<u64> = std::env::var("AB_SEED").ok().and_then(|s| s.parse().ok());
    let mut failed = Vec::new();
    let mut acked = 0;
    for seed in 1..=80 {
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        match std::panic::catch_unwind(|| run(seed, 2)) {
            Ok(n) => acked += n,
            Err(_) => failed.push(seed),
        }
    }
    assert!(failed.is_empty(), "failed seeds {failed:?}");
    assert!(acked > 0, "some optimistic values were acked");
    eprintln!("{acked} optimistic values acked and indexed");
}

#[test]
fn two_indexers_alternating() {
    let keys = [[1u8; 32], [2u8; 32]];
    let f: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = apply;
    let mut bases: Vec<Base> = keys.iter().map(|_| Autobase::new(keys[0], f)).collect();
    let mut logs: Vec<Vec<Vec<u8>>> = vec![Vec::new(), Vec::new()];
    let mut fed = [[0usize; 2]; 2];
    let mut add = b"add:i".to_vec();
    add.extend_from_slice(&keys[1]);
    let write =
        |i: usize, v: Option<Vec<u8>>, bases: &mut Vec<Base>, logs: &mut Vec<Vec<Vec<u8>>>| {
            let msgs = match v {
                Some(v) => bases[i].append(&keys[i], vec![v]),
                None => bases[i].force_ack(&keys[i]),
            };
            for m in msgs.into_iter().flatten() {
                logs[i].push(m.to_bytes());
            }
            bases[i].update();
        };
    write(0, Some(add), &mut bases, &mut logs);
    for step in 0..30 {
        for to in 0..2 {
            for w in 0..2 {
                while fed[to][w] < logs[w].len() {
                    if to != w {
                        bases[to]
                            .handle_block(&keys[w], fed[to][w] as u64, &logs[w][fed[to][w]])
                            .unwrap();
                    }
                    fed[to][w] += 1;
                }
            }
            bases[to].update();
        }
        let i = step % 2;
        write(
            i,
            Some(format!("v{step}").into_bytes()),
            &mut bases,
            &mut logs,
        );
        // every step indexes: only the newest writes are not indexed yet, and what is indexed
        // is the same everywhere
        let view = bases[0].open_view("view");
        let len = bases[0].views().len(view);
        let indexed: Vec<usize> = bases
            .iter()
            .map(|b| b.indexed_view_lengths()[view])
            .collect();
        let lowest = *indexed.iter().min().unwrap();
        if step >= 4 {
            assert!(
                lowest + keys.len() >= len,
                "step {step}: indexed {indexed:?} of {len}"
            );
        }
        for b in &bases {
            assert_eq!(
                &b.views().blocks(view)[..lowest],
                &bases[0].views().blocks(view)[..lowest]
            );
        }
        assert_eq!(
            bases[0].system().indexers.len(),
            if step >= 3 {
                keys.len()
            } else {
                bases[0].system().indexers.len()
            }
        );
    }
}

#[test]
fn three_indexers_round_robin() {
    let keys = [[1u8; 32], [2u8; 32], [3u8; 32]];
    let f: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = apply;
    let mut bases: Vec<Base> = keys.iter().map(|_| Autobase::new(keys[0], f)).collect();
    let mut logs: Vec<Vec<Vec<u8>>> = vec![Vec::new(), Vec::new(), Vec::new()];
    let mut fed = [[0usize; 3]; 3];
    let mut add = b"add:i".to_vec();
    add.extend_from_slice(&keys[1]);
    let mut add2 = b"add:i".to_vec();
    add2.extend_from_slice(&keys[2]);
    let write =
        |i: usize, v: Option<Vec<u8>>, bases: &mut Vec<Base>, logs: &mut Vec<Vec<Vec<u8>>>| {
            let msgs = match v {
                Some(v) => bases[i].append(&keys[i], vec![v]),
                None => bases[i].force_ack(&keys[i]),
            };
            for m in msgs.into_iter().flatten() {
                logs[i].push(m.to_bytes());
            }
            bases[i].update();
        };
    write(0, Some(add), &mut bases, &mut logs);
    write(0, Some(add2), &mut bases, &mut logs);
    for step in 0..30 {
        for to in 0..3 {
            for w in 0..3 {
                while fed[to][w] < logs[w].len() {
                    if to != w {
                        bases[to]
                            .handle_block(&keys[w], fed[to][w] as u64, &logs[w][fed[to][w]])
                            .unwrap();
                    }
                    fed[to][w] += 1;
                }
            }
            bases[to].update();
        }
        let i = step % 3;
        write(
            i,
            Some(format!("v{step}").into_bytes()),
            &mut bases,
            &mut logs,
        );
        // every step indexes: only the newest writes are not indexed yet, and what is indexed
        // is the same everywhere
        let view = bases[0].open_view("view");
        let len = bases[0].views().len(view);
        let indexed: Vec<usize> = bases
            .iter()
            .map(|b| b.indexed_view_lengths()[view])
            .collect();
        let lowest = *indexed.iter().min().unwrap();
        if step >= 4 {
            assert!(
                lowest + keys.len() >= len,
                "step {step}: indexed {indexed:?} of {len}"
            );
        }
        for b in &bases {
            assert_eq!(
                &b.views().blocks(view)[..lowest],
                &bases[0].views().blocks(view)[..lowest]
            );
        }
        assert_eq!(
            bases[0].system().indexers.len(),
            if step >= 3 {
                keys.len()
            } else {
                bases[0].system().indexers.len()
            }
        );
    }
}

/// Two indexers whose acks cross (each written before the other's arrived) stall with a value
/// unindexed while neither `ack` (JS `shouldAck`) asks for another: JS autobase 7.28.1 does the
/// same (`tests/interop/autobase-crossing.js` shows two JS indexers stuck there), and it is
/// what stalled the live test with one JS and one hyperpunch indexer. `stall_ack` moves it on:
/// an ack that sees the other indexer's latest node, never a self-ack of a lone head.
#[test]
fn crossing_acks_stall_until_an_ack_sees_the_other_indexer() {
    let keys = [[1u8; 32], [2u8; 32]];
    let f: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = apply;
    let mut bases: Vec<Base> = keys.iter().map(|_| Autobase::new(keys[0], f)).collect();
    let mut logs: Vec<Vec<Vec<u8>>> = vec![Vec::new(), Vec::new()];
    let mut fed = [[0usize; 2]; 2];
    let put = |i: usize,
               msgs: Option<Vec<super::messages::OplogMessage>>,
               bases: &mut Vec<Base>,
               logs: &mut Vec<Vec<Vec<u8>>>| {
        let wrote = msgs.is_some();
        for m in msgs.into_iter().flatten() {
            logs[i].push(m.to_bytes());
        }
        bases[i].update();
        wrote
    };
    let exchange = |bases: &mut Vec<Base>, logs: &Vec<Vec<Vec<u8>>>, fed: &mut [[usize; 2]; 2]| {
        for to in 0..2 {
            for w in 0..2 {
                while fed[to][w] < logs[w].len() {
                    if to != w {
                        bases[to]
                            .handle_block(&keys[w], fed[to][w] as u64, &logs[w][fed[to][w]])
                            .unwrap();
                    }
                    fed[to][w] += 1;
                }
            }
            bases[to].update();
        }
    };
    let indexed = |bases: &mut Vec<Base>| -> Vec<(usize, usize)> {
        bases
            .iter_mut()
            .map(|b| {
                let v = b.open_view("view");
                (b.views().len(v), b.indexed_view_lengths()[v])
            })
            .collect()
    };
    let mut add = b"add:i".to_vec();
    add.extend_from_slice(&keys[1]);
    let m = bases[0].append(&keys[0], vec![b"a 0".to_vec()]);
    put(0, m, &mut bases, &mut logs);
    let m = bases[0].append(&keys[0], vec![add]);
    put(0, m, &mut bases, &mut logs);
    // both become indexers and index everything: forced acks in turn, each seeing the other's
    for turn in 0..8 {
        exchange(&mut bases, &logs, &mut fed);
        let i = turn % 2;
        let m = bases[i].force_ack(&keys[i]);
        put(i, m, &mut bases, &mut logs);
    }
    exchange(&mut bases, &logs, &mut fed);
    assert!(bases
        .iter()
        .all(|b| b.is_indexer(&keys[0]) && b.is_indexer(&keys[1])));
    assert_eq!(indexed(&mut bases), vec![(1, 1), (1, 1)]);
    // the second indexer's value crosses an ack of the first's
    let m = bases[0].force_ack(&keys[0]);
    put(0, m, &mut bases, &mut logs);
    let m = bases[1].append(&keys[1], vec![b"b value".to_vec()]);
    put(1, m, &mut bases, &mut logs);
    exchange(&mut bases, &logs, &mut fed);
    // then both ack as JS would, at the same moments: their acks cross, and they stop asking
    let mut acks = 0;
    for _ in 0..20 {
        for i in 0..2 {
            let m = bases[i].ack(&keys[i]);
            if put(i, m, &mut bases, &mut logs) {
                acks += 1;
            }
        }
        exchange(&mut bases, &logs, &mut fed);
    }
    assert!(acks > 0 && acks < 8, "{acks} acks");
    assert_eq!(
        indexed(&mut bases),
        vec![(2, 1), (2, 1)],
        "stalled with the value unindexed: {}",
        bases[0].explain()
    );
    for i in 0..2 {
        assert!(bases[i].ack(&keys[i]).is_none(), "shouldAck says no");
    }
    // stall acks in turn: each sees the other indexer's latest node; then its own node is the
    // only head, and it writes no more (the other indexer has to ack it)
    let mut stall_acks = 0;
    for turn in 0..6 {
        let i = turn % 2;
        let m = bases[i].stall_ack(&keys[i]);
        if put(i, m, &mut bases, &mut logs) {
            stall_acks += 1;
            assert!(
                bases[i].stall_ack(&keys[i]).is_none(),
                "no self-ack of a lone head"
            );
        }
        exchange(&mut bases, &logs, &mut fed);
        if indexed(&mut bases) == vec![(2, 2), (2, 2)] {
            break;
        }
    }
    exchange(&mut bases, &logs, &mut fed);
    assert!(stall_acks <= 3, "{stall_acks} stall acks");
    assert_eq!(
        indexed(&mut bases),
        vec![(2, 2), (2, 2)],
        "{}",
        bases[0].explain()
    );
    let v = bases[0].open_view("view");
    assert_eq!(bases[0].views().blocks(v), bases[1].views().blocks(v));
}

/// Bad input: a block that is not an oplog message is a typed error and freezes only that
/// writer; a node linking a head that does not exist stalls only its writer (its later nodes
/// wait forever); a node listing the same head twice loads with the duplicate dropped. The
/// honest members' values are all applied and indexed, and nothing indexed is lost.
#[test]
fn bad_writers_are_ignored() {
    use super::messages::{Checkout, Node, OplogMessage};
    use super::AutobaseError;
    let keys: Vec<[u8; 32]> = (1..=4u8).map(|i| [i; 32]).collect();
    let f: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = apply;
    let mut boot = Autobase::new(keys[0], f);
    let mut log0 = Vec::new();
    for k in &keys[1..] {
        let mut v = b"add:w".to_vec();
        v.extend_from_slice(k);
        log0.extend(boot.append(&keys[0], vec![v]).unwrap());
        boot.update();
    }
    let added = log0.len() as u64;
    let head = Checkout {
        key: keys[0],
        length: added,
    };
    // writer 1: honest; writer 2: a garbage block then more; writer 3: links a head that does
    // not exist, then an honest-looking node after it
    let w1 = [OplogMessage::new(Node {
        heads: vec![head],
        batch: 1,
        value: Some(b"w1 hello".to_vec()),
    })];
    let ghost = Checkout {
        key: [9; 32],
        length: 5,
    };
    let w3 = [
        OplogMessage::new(Node {
            heads: vec![head, ghost],
            batch: 1,
            value: Some(b"w3 ghost".to_vec()),
        }),
        OplogMessage::new(Node {
            heads: vec![Checkout {
                key: keys[3],
                length: 1,
            }],
            batch: 1,
            value: Some(b"w3 after".to_vec()),
        }),
    ];
    let dup = OplogMessage::new(Node {
        heads: vec![head, head],
        batch: 1,
        value: Some(b"w2 dup".to_vec()),
    });
    for (seq, m) in w1.iter().enumerate() {
        boot.handle_block(&keys[1], seq as u64, &m.to_bytes())
            .unwrap();
    }
    boot.handle_block(&keys[2], 0, &dup.to_bytes()).unwrap();
    let err = boot
        .handle_block(&keys[2], 1, &[0xff, 0xff, 0x01])
        .unwrap_err();
    assert!(
        matches!(err, AutobaseError::BadBlock { seq: 1, .. }),
        "{err}"
    );
    // blocks after a bad one are ignored (the writer is frozen at it), the bad one too
    assert_eq!(boot.frozen_at(&keys[2]), Some(1));
    assert_eq!(boot.frozen_at(&keys[1]), None);
    boot.handle_block(&keys[2], 1, &w1[0].to_bytes()).unwrap();
    boot.handle_block(&keys[2], 2, &w1[0].to_bytes()).unwrap();
    assert_eq!(boot.oplog_len(&keys[2]), 1);
    for (seq, m) in w3.iter().enumerate() {
        boot.handle_block(&keys[3], seq as u64, &m.to_bytes())
            .unwrap();
    }
    boot.update();
    let msgs = boot.append(&keys[0], vec![b"boot last".to_vec()]).unwrap();
    assert_eq!(msgs.len(), 1);
    boot.update();
    let view = boot.open_view("view");
    let texts: Vec<String> = boot
        .views()
        .blocks(view)
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(texts.contains(&"w1 hello".to_string()), "{texts:?}");
    assert!(texts.contains(&"w2 dup".to_string()), "{texts:?}");
    assert!(
        !texts.iter().any(|t| t.starts_with("w3")),
        "the stalled writer applies nothing: {texts:?}"
    );
    assert_eq!(texts.last().map(String::as_str), Some("boot last"));
    assert_eq!(
        boot.indexed_view_lengths()[view],
        texts.len(),
        "everything honest is indexed"
    );
}

/// [`super::AsyncApply`] that waits once before it writes anything (as the browser's JS
/// `apply`, whose operations come back when its promise resolves).
struct YieldingApply {
    calls: usize,
}

impl super::AsyncApply for YieldingApply {
    fn apply<'a, 'b: 'a>(
        &'a mut self,
        nodes: &'a [ApplyNode<'b>],
        views: &'a mut Views,
        host: &'a mut Host<'b>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>> {
        self.calls += 1;
        Box::pin(async move {
            let mut yielded = false;
            std::future::poll_fn(|cx| {
                if yielded {
                    return std::task::Poll::Ready(());
                }
                yielded = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            })
            .await;
            apply(nodes, views, host);
        })
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..1_000_000 {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("the future did not end");
}

/// `update_async` with an apply that waits gives what `update` gives with the same apply run
/// at once: the same views, indexed lengths and system after each step, reorders (undo) and
/// writers added by apply included.
#[test]
fn async_apply_matches_sync_apply() {
    let keys = [[1u8; 32], [2u8; 32], [3u8; 32]];
    let f: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = apply;
    // Three members write concurrently (the bootstrap indexes and adds the other two).
    let mut bases: Vec<Base> = keys.iter().map(|_| Autobase::new(keys[0], f)).collect();
    let mut logs: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
    let write =
        |i: usize, v: Option<Vec<u8>>, bases: &mut Vec<Base>, logs: &mut Vec<Vec<Vec<u8>>>| {
            let msgs = match v {
                Some(v) => bases[i].append(&keys[i], vec![v]),
                None => bases[i].ack(&keys[i]),
            };
            for m in msgs.into_iter().flatten() {
                logs[i].push(m.to_bytes());
            }
            bases[i].update();
        };
    for k in &keys[1..] {
        let mut add = b"add:w".to_vec();
        add.extend_from_slice(k);
        write(0, Some(add), &mut bases, &mut logs);
    }
    let mut rng = Rng(7);
    let mut fed = [[0usize; 3]; 3];
    for step in 0..40 {
        let to = rng.below(3);
        for w in 0..3 {
            while w != to && fed[to][w] < logs[w].len() && rng.below(3) > 0 {
                let seq = fed[to][w];
                bases[to]
                    .handle_block(&keys[w], seq as u64, &logs[w][seq])
                    .unwrap();
                fed[to][w] += 1;
            }
        }
        bases[to].update();
        if bases[to].is_writable(&keys[to]) {
            write(
                to,
                Some(format!("v{step}").into_bytes()),
                &mut bases,
                &mut logs,
            );
        }
        write(0, None, &mut bases, &mut logs);
    }
    // An observer fed in a random order, twice: `update` and `update_async`.
    let mut sync_base: Base = Autobase::new(keys[0], f);
    let never: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = |_, _, _| {
        panic!("update_async ran the engine's own apply");
    };
    let mut async_base: Base = Autobase::new(keys[0], never);
    let mut yielding = YieldingApply { calls: 0 };
    let view = sync_base.open_view("view");
    assert_eq!(async_base.open_view("view"), view);
    let mut have = [0usize; 3];
    let mut moved = 0;
    while have.iter().zip(&logs).any(|(h, l)| *h < l.len()) {
        let w = rng.below(3);
        let take = 1 + rng.below(4);
        for _ in 0..take {
            if have[w] < logs[w].len() {
                for b in [&mut sync_base, &mut async_base] {
                    b.handle_block(&keys[w], have[w] as u64, &logs[w][have[w]])
                        .unwrap();
                }
                have[w] += 1;
            }
        }
        let before = sync_base.views().clone();
        let a = sync_base.update();
        let b = block_on(async_base.update_async(&mut yielding));
        assert_eq!(a, b);
        // a block applied before changed: the tip was reordered (undone, applied again)
        let kept = before.len(view).min(sync_base.views().len(view));
        if sync_base.views().blocks(view)[..kept] != before.blocks(view)[..kept] {
            moved += 1;
        }
        assert_eq!(
            sync_base.views().blocks(view),
            async_base.views().blocks(view)
        );
        assert_eq!(
            sync_base.indexed_view_lengths(),
            async_base.indexed_view_lengths()
        );
        assert_eq!(sync_base.system().length, async_base.system().length);
        assert_eq!(
            sync_base.system().indexers.len(),
            async_base.system().indexers.len()
        );
        assert_eq!(sync_base.indexed_nodes(), async_base.indexed_nodes());
    }
    assert!(yielding.calls > 10, "apply ran {} times", yielding.calls);
    assert!(
        sync_base.views().len(view) > 20,
        "{}",
        sync_base.views().len(view)
    );
    // the writers added by apply count (their values are in the view)
    assert!(sync_base
        .views()
        .blocks(view)
        .iter()
        .any(|b| b.starts_with(b"v")));
    assert!(moved > 0, "no reorder met: the undo path is not compared");
}
