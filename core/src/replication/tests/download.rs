//! Downloads: whole cores and single blocks, live appends, truncations followed as reorgs
//! (keeping the shared prefix), random appends/truncations/reads converging, encrypted cores,
//! batched delivery through reorgs.

use super::*;

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
