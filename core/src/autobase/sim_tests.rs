//! Seeded simulation: 5-12 members of one autobase (the bootstrap indexes; it adds the others
//! as writers) append while the network splits into partitions that sync among themselves,
//! blocks arrive writer by writer in random interleavings, then the network heals. What a
//! member indexed is never lost or changed, and every member ends with the same view, all of
//! it indexed, holding every value written.
#![allow(clippy::needless_range_loop, clippy::type_complexity)] // indexes pair members with their oplogs

use super::{ApplyNode, Autobase, Host, Views};
use crate::encoding::Encode;

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
        if let Some(k) = n.value.strip_prefix(b"add:") {
            if let Ok(k) = <[u8; 32]>::try_from(k) {
                host.add_writer(&k, false);
            }
            continue;
        }
        views.append(view, n.value.to_vec());
    }
}

type Base = Autobase<fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>)>;

struct Member {
    key: [u8; 32],
    base: Base,
    indexed: Vec<Vec<u8>>,
}

impl Member {
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

fn run(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let n = 5 + rng.below(8);
    let keys: Vec<[u8; 32]> = (0..n)
        .map(|i| {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&rng.next().to_le_bytes());
            k[31] = i as u8;
            k
        })
        .collect();
    let f: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = apply;
    let mut members: Vec<Member> = keys
        .iter()
        .map(|k| {
            let mut base = Autobase::new(keys[0], f);
            base.open_view("view");
            Member {
                key: *k,
                base,
                indexed: Vec::new(),
            }
        })
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
    // the bootstrap adds everyone, and everyone hears of it
    for k in keys.iter().skip(1) {
        let mut v = b"add:".to_vec();
        v.extend_from_slice(k);
        write(0, vec![v], &mut members, &mut oplogs, &mut have);
    }
    for to in 1..n {
        sync(&oplogs, &keys, &mut have, to, 0, &mut rng, &mut members[to]);
        members[to].base.update();
    }
    let mut counter = 0u64;
    for epoch in 0..4 {
        // partitions: every member in one of 1-3 groups
        let groups = 1 + rng.below(3);
        let group: Vec<usize> = (0..n).map(|_| rng.below(groups)).collect();
        for _ in 0..(10 + rng.below(20)) {
            let i = rng.below(n);
            if rng.below(3) == 0 {
                let j = rng.below(n);
                if group[i] == group[j] && i != j {
                    sync(&oplogs, &keys, &mut have, i, j, &mut rng, &mut members[i]);
                    members[i].base.update();
                    members[i].check_indexed();
                }
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
        }
    }
    // heal: everyone syncs from everyone, the bootstrap writes last (it sees everything, so
    // everything is indexed), everyone syncs again
    for round in 0..2 {
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
        if round == 0 {
            write(
                0,
                vec![b"last".to_vec()],
                &mut members,
                &mut oplogs,
                &mut have,
            );
        }
    }
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
    // every value written by a writer made it into the view
    assert_eq!(total as u64, counter + 1, "seed {seed}");
}

#[test]
fn members_converge_under_partitions() {
    for seed in 1..=40 {
        run(seed);
    }
}
