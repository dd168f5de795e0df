//! Fuzz the replication engine with a hostile peer: arbitrary message sequences (decoded like the
//! hub does) go to a [`Replicator`] of a writer (40 blocks) or of a reader that holds the
//! writer's tree and a few of its blocks, with a download, a seek and a tree hash pending, and
//! two peers so hotswaps run. Nothing may panic or loop; `handle_message` errs only on local
//! storage failures (never here); the local core keeps its length and blocks.
//!
//! Input: `[ctl] ([sel] [len] [len bytes])*` — `ctl` bit 0 picks the reader; per chunk, `sel`
//! bit 0 picks the peer, `sel >> 1` the message type (0..=9), or 10: time passes, 11: the peer
//! leaves and a new one joins.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hypercore::messages::{Message, RequestBlock, RequestUpgrade};
use hyperpunch_core::hypercore::{CreateOptions, Hypercore, ProofRequest};
use hyperpunch_core::replication::{Options, Replicator};
use hyperpunch_core::storage::MemoryStorage;
use libfuzzer_sys::fuzz_target;

/// Memory storage never waits: every future completes on its first poll.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("memory storage future pending"),
    }
}

const LEN: u64 = 40;
const HELD: u64 = 10;

async fn cores() -> (Hypercore<MemoryStorage>, Hypercore<MemoryStorage>) {
    let opts = CreateOptions {
        key_pair: Some(KeyPair::from_seed(&[7; 32])),
        ..CreateOptions::default()
    };
    let mut w = Hypercore::create(MemoryStorage::new(), opts).await.unwrap();
    let blocks: Vec<Vec<u8>> = (0..LEN).map(|i| vec![i as u8; 1 + i as usize]).collect();
    let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
    w.append(&refs).await.unwrap();
    let opts = CreateOptions {
        key: Some(*w.key()),
        ..CreateOptions::default()
    };
    let mut r = Hypercore::create(MemoryStorage::new(), opts).await.unwrap();
    let up = ProofRequest {
        upgrade: Some(RequestUpgrade {
            start: 0,
            length: LEN,
        }),
        ..ProofRequest::default()
    };
    let mut data = w.proof(&up).await.unwrap();
    data.manifest = w.manifest().cloned();
    r.apply_proof(&data).await.unwrap();
    for i in 0..HELD {
        let req = ProofRequest {
            block: Some(RequestBlock {
                index: i,
                nodes: r.missing_nodes(2 * i).await.unwrap(),
            }),
            ..ProofRequest::default()
        };
        r.apply_proof(&w.proof(&req).await.unwrap()).await.unwrap();
    }
    (w, r)
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, mut rest)) = data.split_first() else {
        return;
    };
    let (w, r) = ready(cores());
    let reader = ctl & 1 == 1;
    let core = if reader { r } else { w };
    let mut rep = Replicator::new(
        core,
        Options {
            max_inflight: 4,
            ..Options::default()
        },
    );
    let mut now = 1000;
    let mut peers = [rep.add_peer(), rep.add_peer()];
    if reader {
        ready(rep.download(now, 0, None)).unwrap();
        ready(rep.seek(now, 500)).unwrap();
        ready(rep.tree_hash(now, 7)).unwrap();
    }
    while let [sel, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, r) = tail.split_at(n);
        rest = r;
        let slot = usize::from(sel & 1);
        now += 1;
        match sel >> 1 {
            t @ 0..=9 => {
                let Ok(msg) = Message::decode(u64::from(t), payload) else {
                    continue;
                };
                if rep.peers().any(|p| p == peers[slot]) {
                    ready(rep.handle_message(now, peers[slot], msg)).unwrap();
                }
            }
            10 => {
                now += 10_000;
                ready(rep.handle_timeout(now)).unwrap();
            }
            _ => {
                ready(rep.remove_peer(now, peers[slot])).unwrap();
                peers[slot] = rep.add_peer();
            }
        }
        while rep.poll_transmit().is_some() {}
        while rep.poll_event().is_some() {}
        assert_eq!(rep.core().length(), LEN);
        assert_eq!(rep.core().fork(), 0);
    }
    let held = if reader { HELD } else { LEN };
    for i in 0..held {
        assert!(rep.core().has(i), "block {i} lost");
    }
});
