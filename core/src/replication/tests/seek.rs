//! Seeks and tree hashes through `hash` requests, and hash/seek answers byte-identical to JS.

use super::*;

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
