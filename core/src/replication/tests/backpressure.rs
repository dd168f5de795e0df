//! Backpressure: answers wait, in order and bounded, while a peer does not read ours.

use std::collections::{BTreeSet, VecDeque};

use futures_executor::block_on;

use super::super::*;
use super::Rng;
use crate::crypto::KeyPair;
use crate::encoding::Encode;
use crate::hypercore::messages::{Handshake, Message, Request, RequestBlock, Want};
use crate::hypercore::verifier::capability;
use crate::hypercore::{CreateOptions, Hypercore};
use crate::protomux::{ChannelId, ChannelOptions, Event as MuxEvent, Protomux};
use crate::storage::MemoryStorage;

const BLOCKS: u64 = 128;
const BLOCK_SIZE: usize = 16 * 1024;
/// What one answer may add past the window: a block with its proof and the frame around it.
const SLACK: usize = BLOCK_SIZE + 4096;

/// A peer speaking raw protomux on a hub's stream: it sends what the test says and reads
/// only when the test says so.
struct RawPeer {
    mux: Protomux,
    ch: ChannelId,
    /// Request ids answered (`data` or `noData`).
    answered: BTreeSet<u64>,
    /// `range`/`bitfield` answers to our `want`s.
    want_answers: usize,
}

impl RawPeer {
    fn send(&mut self, msg: &Message) {
        self.mux
            .send(self.ch, msg.type_id(), &msg.to_bytes())
            .unwrap();
    }

    fn read(&mut self, frame: &[u8]) {
        self.mux.handle_frame(frame).unwrap();
        while let Some(ev) = self.mux.poll_event() {
            if let MuxEvent::Message {
                message_type,
                payload,
                ..
            } = ev
            {
                match Message::decode(message_type, &payload).unwrap() {
                    Message::Data(d) => assert!(self.answered.insert(d.request)),
                    Message::NoData(n) => assert!(self.answered.insert(n.request)),
                    Message::Range(_) | Message::Bitfield(_) => self.want_answers += 1,
                    _ => {}
                }
            }
        }
    }
}

/// A hub serving a core of [`BLOCKS`] blocks of [`BLOCK_SIZE`] bytes and a raw peer whose
/// channel on it is open (the peer read everything up to the open).
async fn setup() -> (
    ReplicationHub<MemoryStorage>,
    StreamId,
    [u8; 32],
    PeerId,
    RawPeer,
) {
    let mut core = Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[9; 32])),
            ..CreateOptions::default()
        },
    )
    .await
    .unwrap();
    for i in 0..BLOCKS {
        core.append(&[&vec![i as u8; BLOCK_SIZE]]).await.unwrap();
    }
    let key = *core.key();
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(core, Options::default()))
        .unwrap();
    let hh = [5u8; 64];
    let sid = hub.add_stream(false, hh).unwrap();
    let mut mux = Protomux::new();
    let hs = Handshake {
        seeks: true,
        capability: capability(true, &key, &hh),
    };
    let ch = mux
        .open(
            ChannelOptions::new(PROTOCOL)
                .id(dk.to_vec())
                .handshake(hs.to_bytes())
                .message_types(10),
        )
        .unwrap();
    let mut raw = RawPeer {
        mux,
        ch,
        answered: BTreeSet::new(),
        want_answers: 0,
    };
    while let Some((_, f)) = hub.poll_transmit() {
        raw.read(&f);
    }
    let frames: Vec<Vec<u8>> = std::iter::from_fn(|| raw.mux.poll_transmit()).collect();
    hub.handle_frames(0, sid, frames).await.unwrap();
    let mut peer = None;
    while let Some(ev) = hub.poll_event() {
        if let HubEvent::ChannelOpened { peer: p, .. } = ev {
            peer = Some(p);
        }
    }
    assert!(raw.mux.is_opened(ch));
    (hub, sid, dk, peer.expect("channel opened"), raw)
}

/// Send `count` random block requests (ids 1..) and identical `want`s to the hub in
/// batches, without reading; the transport queues all the hub gives it. Returns the
/// request ids sent.
async fn flood(
    hub: &mut ReplicationHub<MemoryStorage>,
    sid: StreamId,
    raw: &mut RawPeer,
    held: &mut VecDeque<Vec<u8>>,
    rng: &mut Rng,
    count: u64,
) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    let mut i = 0;
    while i < count && hub.has_stream(sid) {
        for _ in 0..64 {
            i += 1;
            if rng.next().is_multiple_of(5) {
                raw.send(&Message::Want(Want {
                    start: 0,
                    length: 1 << 20,
                    any: false,
                }));
            } else {
                ids.insert(i);
                raw.send(&Message::Request(Request {
                    id: i,
                    block: Some(RequestBlock {
                        index: rng.next() % BLOCKS,
                        nodes: 0,
                    }),
                    ..Request::default()
                }));
            }
        }
        let frames: Vec<Vec<u8>> = std::iter::from_fn(|| raw.mux.poll_transmit()).collect();
        hub.handle_frames(0, sid, frames).await.unwrap();
        take(hub, sid, held).await;
    }
    ids
}

/// The transport takes the hub's frames and reports what it holds; the bound holds.
async fn take(
    hub: &mut ReplicationHub<MemoryStorage>,
    sid: StreamId,
    held: &mut VecDeque<Vec<u8>>,
) {
    while let Some((_, f)) = hub.poll_transmit() {
        held.push_back(f);
    }
    if !hub.has_stream(sid) {
        return;
    }
    let backlog = held.iter().map(Vec::len).sum();
    hub.set_backlog(0, sid, backlog).await.unwrap();
    while let Some((_, f)) = hub.poll_transmit() {
        held.push_back(f);
    }
    let backlog: usize = held.iter().map(Vec::len).sum();
    assert!(backlog <= HIGH_WATER + SLACK, "{backlog} bytes queued");
}

/// A peer that floods requests and `want`s and never reads: what we queue for it stays
/// below the high-water mark (plus one answer), what waits stays below [`MAX_DEFERRED`],
/// and past that it is disconnected.
#[test]
fn a_peer_that_never_reads_is_bounded_then_dropped() {
    for seed in [1u64, 2, 3] {
        block_on(async {
            let (mut hub, sid, dk, peer, mut raw) = setup().await;
            let mut held = VecDeque::new();
            let mut rng = Rng(seed);
            let n = (MAX_DEFERRED + 2000) as u64;
            flood(&mut hub, sid, &mut raw, &mut held, &mut rng, n).await;
            assert!(!hub.has_stream(sid), "seed {seed}: the flooder was dropped");
            assert!(hub.replicator(&dk).unwrap().deferred(peer) == 0);
            let mut closed = false;
            while let Some(ev) = hub.poll_event() {
                closed |= matches!(
                    ev,
                    HubEvent::StreamClosed {
                        error: ReplicationError::TooManyDeferred,
                        ..
                    }
                );
            }
            assert!(closed, "seed {seed}");
        });
    }
}

/// A peer with many requests that stops reading for a while: the answers wait, in bounded
/// memory, and once it reads again every request is answered.
#[test]
fn a_peer_that_reads_late_gets_every_answer() {
    for seed in [4u64, 5, 6] {
        block_on(async {
            let (mut hub, sid, dk, peer, mut raw) = setup().await;
            let mut held = VecDeque::new();
            let mut rng = Rng(seed);
            let ids = flood(&mut hub, sid, &mut raw, &mut held, &mut rng, 1500).await;
            assert!(hub.has_stream(sid));
            assert!(hub.is_congested(sid), "seed {seed}: the test congests");
            let waiting = hub.replicator(&dk).unwrap().deferred(peer);
            assert!(waiting > 0 && waiting <= MAX_DEFERRED, "{waiting}");
            // The transport writes up to 256 KiB a step; the peer reads it.
            for _ in 0..10_000 {
                let mut written = 0;
                while written < 256 * 1024 {
                    let Some(f) = held.pop_front() else { break };
                    written += f.len();
                    raw.read(&f);
                }
                take(&mut hub, sid, &mut held).await;
                if held.is_empty() && hub.replicator(&dk).unwrap().deferred(peer) == 0 {
                    break;
                }
            }
            assert_eq!(raw.answered, ids, "seed {seed}");
            assert!(raw.want_answers > 0);
        });
    }
}
