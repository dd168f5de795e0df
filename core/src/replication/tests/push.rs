//! Push mode: blocks pushed to readers that allow them, bad pushes rejected, pushed and
//! requested upgrades contiguous, `push_only`, upgrades from below our length.

use super::*;

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
            Event::Block { index, peer, .. } if *peer == from => Some(*index),
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

/// The last `sync` `node` sent, and how many it sent.
fn syncs_sent(net: &Net, node: usize) -> Vec<Sync> {
    net.sent[node]
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Sync(s) => Some(*s),
            _ => None,
        })
        .collect()
}

/// JS `isDownloading` / `isAllowingPush`: a reader that does not download says so in its
/// `sync` and offers no pushes even with `allow_push` (the writer pushes it nothing); turned
/// on, one new `sync` offers both and pushes flow; turned off, `allowPush` goes at once and
/// `downloading` once the linger has passed; requests in flight keep it downloading.
#[test]
fn sync_says_downloading_and_allow_push_only_while_downloading() {
    let opts = Options {
        allow_push: true,
        push_only: true,
        downloading: false,
        not_downloading_linger: 500,
        ..Options::default()
    };
    let mut net = push_pair(8, opts, 7);
    let (wp, _) = net.connect(0, 1);
    net.run_idle();
    assert!(!net.reps[1].is_downloading() && !net.reps[1].is_allowing_push());
    let syncs = syncs_sent(&net, 1);
    assert!(
        syncs.iter().all(|s| !s.downloading && !s.allow_push),
        "{syncs:?}"
    );
    let info = net.reps[0].peer_info(wp).unwrap();
    assert!(!info.remote_downloading && !info.remote_allow_push);
    assert_eq!(
        block_on(net.reps[0].push(0)).unwrap(),
        0,
        "nobody to push to"
    );

    block_on(net.reps[1].set_downloading(net.now, true)).unwrap();
    let sent = syncs_sent(&net, 1).len();
    net.run_idle();
    let syncs = syncs_sent(&net, 1);
    assert!(syncs[sent..].iter().all(|s| s.downloading && s.allow_push));
    assert!(net.reps[0].peer_info(wp).unwrap().remote_allow_push);
    for i in 0..8 {
        assert_eq!(block_on(net.reps[0].push(i)).unwrap(), 1);
    }
    net.run_idle();
    assert!(net.has_all(1, 8));

    let (before, t0) = (syncs_sent(&net, 1).len(), net.now);
    block_on(net.reps[1].set_downloading(net.now, false)).unwrap();
    net.collect();
    let first = syncs_sent(&net, 1)[before];
    assert!(first.downloading && !first.allow_push, "{first:?}");
    assert!(net.reps[1].is_downloading() && !net.reps[1].is_allowing_push());
    net.run_idle();
    assert!(net.now >= t0 + 500, "the linger ran out");
    let last = *syncs_sent(&net, 1).last().unwrap();
    assert!(!last.downloading && !last.allow_push, "{last:?}");
    assert!(!net.reps[0].peer_info(wp).unwrap().remote_downloading);

    // Switched on and off again before the linger ends: nothing changes for the peers.
    block_on(net.reps[1].set_downloading(net.now, true)).unwrap();
    block_on(net.reps[1].set_downloading(net.now, false)).unwrap();
    net.run_idle();
    assert!(!syncs_sent(&net, 1).last().unwrap().downloading);

    // A reader that is not downloading but has requests in flight says it downloads.
    let mut net = pair(4, 8);
    block_on(net.reps[1].set_downloading(0, false)).unwrap();
    let (_, rp) = net.connect(0, 1);
    let _ = rp;
    net.run_until(|n| n.reps[1].inflight() > 0);
    assert!(net.reps[1].is_downloading());
}

/// A memory storage, and the number of blocks each of its writes stores (writes of none left
/// out).
fn counting_block_writes() -> (
    crate::storage::Instrumented<MemoryStorage>,
    std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
) {
    let storage = crate::storage::Instrumented::new(MemoryStorage::new());
    let writes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let w = writes.clone();
    storage.observe(move |batch| {
        let blocks = batch
            .ops
            .iter()
            .filter(|op| {
                matches!(op, crate::storage::Op::Put(k, _) | crate::storage::Op::PutParts(k, _)
                    if k.first() == Some(&crate::hypercore::layout::BLOCK))
            })
            .count();
        if blocks > 0 {
            w.lock().unwrap().push(blocks);
        }
    });
    (storage, writes)
}

/// Pushed blocks that arrive together are verified and stored together, like answers: the
/// first push (with the upgrade and the manifest) alone, the next ones in one write even while
/// they still carry the manifest (as a JS writer sends them until it hears our length), a bad
/// one in the run rejected alone. Before, each push was its own write.
#[test]
fn consecutive_pushes_are_stored_in_one_write() {
    block_on(async {
        let (w, _) = writer(24, None).await;
        let (storage, block_writes) = counting_block_writes();
        let r = Hypercore::create(
            storage.clone(),
            CreateOptions {
                key: Some(*w.key()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let mut w = Rep::new(w, Options::default());
        let mut r = Replicator::new(
            r,
            Options {
                allow_push: true,
                push_only: true,
                ..Options::default()
            },
        );
        let (wp, rp) = (w.add_peer(), r.add_peer());
        // Syncs both ways, as many rounds as it takes.
        for _ in 0..4 {
            let to_r: Vec<Message> =
                std::iter::from_fn(|| w.poll_transmit().map(|t| t.1)).collect();
            r.handle_messages(0, rp, to_r).await.unwrap();
            let to_w: Vec<Message> =
                std::iter::from_fn(|| r.poll_transmit().map(|t| t.1)).collect();
            w.handle_messages(0, wp, to_w).await.unwrap();
        }
        assert!(w.peer_info(wp).unwrap().remote_allow_push);
        for i in 0..24 {
            assert_eq!(w.push(i).await.unwrap(), 1);
        }
        let mut pushes: Vec<Message> =
            std::iter::from_fn(|| w.poll_transmit().map(|t| t.1)).collect();
        let manifest = w.core().manifest().cloned();
        assert_eq!(pushes.len(), 24);
        for m in pushes.iter_mut() {
            let Message::Data(d) = m else {
                panic!("not a push: {m:?}")
            };
            // As a JS writer does while it still thinks our core is empty.
            d.manifest = manifest.clone();
            // Block 20's bytes altered: rejected alone.
            if let Some(b) = d.block.as_mut().filter(|b| b.index == 20) {
                b.value[0] ^= 1;
            }
        }
        r.handle_messages(0, rp, pushes).await.unwrap();
        let events: Vec<Event> = std::iter::from_fn(|| r.poll_event()).collect();
        let stored: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Block { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        assert_eq!(stored, (0..24).filter(|&i| i != 20).collect::<Vec<_>>());
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::InvalidData { .. })));
        assert_eq!(*block_writes.lock().unwrap(), vec![1, 22]);
        r.core().verify_all().await.unwrap();
        assert!(!r.core().has(20));
    });
}

/// A writer with [`Options::push`] and a push-only reader: blocks appended while the reader's
/// `sync` is still on its way, and blocks the writer held before, all reach the reader (the
/// `sync` triggers a catch-up push); later appends are pushed without `push` being called.
#[test]
fn a_pushing_writer_catches_up_a_reader_whose_sync_comes_late() {
    for seed in [1u64, 2, 3, 4, 5] {
        let mut net = block_on(async {
            let (w, _) = writer(7, None).await;
            let r = reader(*w.key(), None).await;
            let push = Options {
                push: true,
                downloading: false,
                ..Options::default()
            };
            Net::new(
                vec![Rep::new(w, push), Rep::new(r, push_only_reader())],
                seed,
            )
        });
        let (_, rp) = net.connect(0, 1);
        // Appended before anything was delivered: the reader's sync is not there yet.
        let more: Vec<Vec<u8>> = (7..10).map(|i| block(i, "v0")).collect();
        let refs: Vec<&[u8]> = more.iter().map(Vec::as_slice).collect();
        block_on(net.reps[0].append(net.now, &refs)).unwrap();
        net.run_idle();
        assert!(net.has_all(1, 10), "seed {seed}");
        for i in 10..13u64 {
            block_on(net.reps[0].append(net.now, &[&block(i, "v0")])).unwrap();
            net.run_idle();
        }
        assert!(net.has_all(1, 13), "seed {seed}");
        block_on(net.reps[1].core().verify_all()).unwrap();
        block_on(check_blocks(net.reps[1].core(), "v0", 0..13));
        assert_eq!(blocks_from(&net, 1, rp), (0..13).collect());
        assert!(requests_sent(&net, 1).is_empty());
        // Each block went once: the catch-up does not repeat what is on its way.
        let mut pushed: Vec<u64> = pushes_sent(&net, 0)
            .iter()
            .map(|d| d.block.as_ref().unwrap().index)
            .collect();
        pushed.sort_unstable();
        assert_eq!(pushed, (0..13).collect::<Vec<_>>(), "seed {seed}");
    }
}

/// The catch-up pushes at most [`PUSH_CATCH_UP`] blocks: the newest, with the upgrade to our
/// length.
#[test]
fn the_catch_up_push_is_bounded() {
    let n = PUSH_CATCH_UP + 40;
    let mut net = block_on(async {
        let (w, _) = writer(n, None).await;
        let r = reader(*w.key(), None).await;
        let push = Options {
            push: true,
            downloading: false,
            ..Options::default()
        };
        Net::new(vec![Rep::new(w, push), Rep::new(r, push_only_reader())], 9)
    });
    net.connect(0, 1);
    net.run_idle();
    let core = net.reps[1].core();
    assert_eq!(core.length(), n);
    assert!((0..40).all(|i| !core.has(i)));
    assert!((40..n).all(|i| core.has(i)));
    assert_eq!(pushes_sent(&net, 0).len() as u64, PUSH_CATCH_UP);
}
