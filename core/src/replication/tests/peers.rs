//! Several peers and peer answers: blocks from whoever has them, load sharing, timeouts,
//! manifest requests, `noData` and manifest-only answers, extensions, hotswaps of slow peers,
//! `range` broadcasts to the peers that want them.

use super::*;

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
                Event::Block { index, peer: p, .. } if *p == peer => Some(*index),
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
        .any(|e| matches!(e, Event::Block { index: 10, peer, .. } if *peer == a_at_b)));
    // Now B wants batch 0: A announces its next old block there.
    get(&mut net, 1, 20);
    assert_eq!(ranges_to_b(&net, 20), 1);
}
