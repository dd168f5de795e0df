//! Misbehaving peers: bad proofs pause (or disconnect) the peer and are checked for a fork,
//! invalid requests back off then disconnect, hostile messages break nothing, and a forked
//! writer is detected as a conflict.

use super::*;

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
            if let Event::Block { peer, index, .. } = e {
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
        // The conflict is stored with the cores that saw it: frozen after a reopen too, and
        // W2 refuses to append, saying why.
        let conflict = crate::hypercore::Conflict { length: 5, fork: 0 };
        assert_eq!(net.reps[2].core().conflict(), Some(conflict));
        assert_eq!(net.reps[1].core().conflict(), Some(conflict));
        assert_eq!(net.reps[0].core().conflict(), None);
        let frozen = HypercoreError::Conflict { length: 5, fork: 0 };
        assert_eq!(
            block_on(net.reps[1].core_mut().append(&[b"more"])).unwrap_err(),
            frozen
        );
        for node in [1, 2] {
            let storage = net.reps[node].core().storage().clone();
            let reopen = || block_on(Hypercore::open(storage.clone(), OpenOptions::default()));
            let mut core = reopen().unwrap();
            assert_eq!(core.conflict(), Some(conflict), "node {node}");
            assert_eq!(block_on(core.truncate(1, None)).unwrap_err(), frozen);
            assert!(block_on(core.get(0)).unwrap().is_some(), "reads still work");
            assert!(Rep::new(reopen().unwrap(), Options::default()).is_frozen());
        }
        assert!(block_on(net.reps[0].core_mut().append(&[b"more"])).is_ok());
    }
}
