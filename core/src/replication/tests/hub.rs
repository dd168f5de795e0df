//! Hubs over protomux frames: replication through frames (also in batches and through a slow,
//! congested transport), channels closed on conflicts and wrong capabilities, streams destroyed
//! on garbage, backlog reports.

use super::*;

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

/// Channels of other protocols beside the cores (the autobase wakeup channel's way): both hubs
/// pair `x`, hear of the stream, open `x` and exchange a message, while the core replicates on
/// the same stream; an open of a protocol nobody pairs is rejected; the channel's close comes
/// out when the stream goes. Hubs that pair nothing say nothing of streams.
#[test]
fn channels_of_other_protocols_beside_the_cores() {
    use crate::protomux::{ChannelOptions, Event as MuxEvent};
    block_on(async {
        let (w, _) = writer(5, None).await;
        let r = reader(*w.key(), None).await;
        let mut ha = ReplicationHub::new();
        let mut hb = ReplicationHub::new();
        let dk = ha.add_core(Rep::new(w, Options::default())).unwrap();
        hb.add_core(Rep::new(r, Options::default())).unwrap();
        let hh = [3u8; 64];
        let sa = ha.add_stream(true, hh).unwrap();
        ha.pair_protocol("x");
        hb.pair_protocol("x");
        let sb = hb.add_stream(false, hh).unwrap();
        let added = |h: &mut ReplicationHub<MemoryStorage>| -> Vec<HubEvent> {
            std::iter::from_fn(|| h.poll_event())
                .filter(|e| matches!(e, HubEvent::StreamAdded { .. }))
                .collect()
        };
        // the stream there before the pairing is reported too
        assert_eq!(
            added(&mut ha),
            [HubEvent::StreamAdded {
                stream: sa,
                is_initiator: true,
                handshake_hash: hh
            }]
        );
        assert_eq!(
            added(&mut hb),
            [HubEvent::StreamAdded {
                stream: sb,
                is_initiator: false,
                handshake_hash: hh
            }]
        );
        let ca = ha
            .open_other(
                0,
                sa,
                ChannelOptions::new("x")
                    .id(vec![1])
                    .handshake(b"ha".to_vec()),
            )
            .await
            .unwrap();
        let cb = hb
            .open_other(
                0,
                sb,
                ChannelOptions::new("x")
                    .id(vec![1])
                    .handshake(b"hb".to_vec()),
            )
            .await
            .unwrap();
        ha.send_other(sa, ca, 0, b"hello").unwrap();
        // not paired by B: refused
        let cy = ha
            .open_other(0, sa, ChannelOptions::new("y"))
            .await
            .unwrap();
        hb.replicator_mut(&dk)
            .unwrap()
            .download(0, 0, None)
            .await
            .unwrap();
        hb.flush();
        run_hubs(&mut ha, sa, &mut hb, sb, 0).await;
        assert_eq!(
            hb.replicator(&dk).unwrap().core().length(),
            5,
            "the core replicates beside"
        );
        assert!(ha.is_core_open(sa, &dk) && hb.is_core_open(sb, &dk));
        assert!(!ha.is_core_open(sa, &[9; 32]));
        let other = |h: &mut ReplicationHub<MemoryStorage>| -> Vec<MuxEvent> {
            std::iter::from_fn(|| h.poll_event())
                .filter_map(|e| match e {
                    HubEvent::Other { event, .. } => Some(event),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            other(&mut hb),
            [
                MuxEvent::ChannelOpened {
                    channel: cb,
                    handshake: b"ha".to_vec()
                },
                MuxEvent::Message {
                    channel: cb,
                    message_type: 0,
                    payload: b"hello".to_vec()
                },
            ]
        );
        assert_eq!(
            other(&mut ha),
            [
                MuxEvent::ChannelOpened {
                    channel: ca,
                    handshake: b"hb".to_vec()
                },
                MuxEvent::ChannelRejected { channel: cy },
            ]
        );
        assert!(
            ha.send_other(sa, cy, 0, b"no").is_err(),
            "a refused channel is gone"
        );
        // an open of a paired protocol nobody opened is offered to the owner, who may refuse it
        let c2 = ha
            .open_other(0, sa, ChannelOptions::new("x").id(vec![2]))
            .await
            .unwrap();
        run_hubs(&mut ha, sa, &mut hb, sb, 0).await;
        let asked = other(&mut hb);
        assert!(
            matches!(&asked[..], [MuxEvent::PairRequest { protocol, id: Some(id), .. }] if protocol == "x" && id == &[2]),
            "{asked:?}"
        );
        hb.reject_other(sb, "x", Some(&[2])).unwrap();
        run_hubs(&mut ha, sa, &mut hb, sb, 0).await;
        assert_eq!(other(&mut ha), [MuxEvent::ChannelRejected { channel: c2 }]);
        hb.remove_stream(1, sb).await.unwrap();
        assert_eq!(
            other(&mut hb),
            [MuxEvent::ChannelClosed {
                channel: cb,
                by_remote: true
            }]
        );

        // a hub that pairs nothing reports no stream
        let mut hc: ReplicationHub<MemoryStorage> = ReplicationHub::new();
        hc.add_stream(true, hh).unwrap();
        assert!(added(&mut hc).is_empty());
    });
}
