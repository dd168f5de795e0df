//! Fuzz the hyperbee decoders and the B-tree over hostile blocks. First byte mod 4:
//! 0-2: `Node`, `Header`, `YoloIndex` decoding: no panic, and what decodes re-encodes to bytes
//! that decode to the same value (decoding is lenient like JS: the bytes themselves may differ).
//! 3: a core of a header and fuzzed blocks (raw bytes, or nodes whose index levels point at
//! fuzzed seqs and offsets: cycles, references past the version, missing levels, huge nodes),
//! then every bee operation on it: get, ranges both ways with bounds, history, diff against a
//! checkout, put, del, a batch. Each must end with a value or a typed error: no panic, no hang.
#![no_main]

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hyperbee::messages::{encode_node, Level, YoloIndex};
use hyperpunch_core::hyperbee::{Header, HistoryOptions, Hyperbee, Node, RangeOptions};
use hyperpunch_core::hypercore::{CreateOptions, Hypercore};
use hyperpunch_core::storage::MemoryStorage;
use libfuzzer_sys::fuzz_target;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Memory storage and uncontended locks never wait: every future completes on its first poll.
fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a bee operation on memory storage waited"),
    }
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
}

fn tree(data: &[u8]) {
    let mut d = Bytes(data);
    let mut blocks: Vec<Vec<u8>> = vec![Header::new(None).encode()];
    while !d.0.is_empty() && blocks.len() < 64 {
        let seq = blocks.len() as u64;
        let kind = d.byte();
        if kind & 1 == 0 {
            let n = d.byte() as usize % 40;
            blocks.push(d.take(n));
            continue;
        }
        // A node: levels of keys/children referring to seqs near this one.
        let mut levels = Vec::new();
        for _ in 0..(kind >> 1) % 5 {
            let mut l = Level::default();
            for _ in 0..d.byte() % 12 {
                l.keys.push((d.byte() as u64) % (seq + 3));
            }
            let children = d.byte() % 12;
            for _ in 0..children {
                l.children.push((d.byte() as u64) % (seq + 3));
                l.children.push((d.byte() as u64) % 6);
            }
            levels.push(l);
        }
        let key = d.take(d.0.first().copied().unwrap_or(0) as usize % 6 + 1);
        let value = (d.byte() & 1 == 0).then(|| d.take(3));
        blocks.push(encode_node(&YoloIndex { levels }.encode(), &key, value.as_deref()));
    }
    run(async {
        let core = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[9; 32])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let session = core.into_session();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        session.append(&refs).await.unwrap();
        let db = Hyperbee::new(session.clone());
        for k in [&b""[..], b"a", b"m", b"\xff\xff"] {
            let _ = db.get(k).await;
        }
        for reverse in [false, true] {
            for (gt, lt) in [(None, None), (Some(&b"b"[..]), Some(&b"x"[..]))] {
                let mut it = db.create_read_stream(RangeOptions {
                    gt,
                    lt,
                    reverse,
                    limit: Some(200),
                    ..Default::default()
                });
                for _ in 0..200 {
                    match it.next().await {
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
            }
        }
        if let Ok(h) = db.create_history_stream(HistoryOptions::default()) {
            let _ = h.collect().await;
        }
        let old = db.checkout(blocks.len() as u64 / 2).await;
        let mut diff = db.create_diff_stream(&old, Default::default());
        for _ in 0..200 {
            match diff.next().await {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let _ = db.put(b"m", b"v").await;
        let _ = db.del(b"a").await;
        let mut b = db.batch();
        let _ = b.put(b"k", b"1").await;
        let _ = b.del(b"m").await;
        let _ = b.get(b"k").await;
        let _ = b.flush().await;
        let _ = db.peek(Default::default()).await;
    });
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, b)) = data.split_first() else { return };
    match sel % 4 {
        0 => {
            if let Ok(n) = Node::decode(b) {
                assert_eq!(Node::decode(&n.encode()).as_ref(), Ok(&n));
            }
        }
        1 => {
            if let Ok(h) = Header::decode(b) {
                assert_eq!(Header::decode(&h.encode()).as_ref(), Ok(&h));
            }
        }
        2 => {
            if let Ok(i) = YoloIndex::decode(b) {
                assert_eq!(YoloIndex::decode(&i.encode()).as_ref(), Ok(&i));
                assert_eq!(i.encode().len(), i.encoded_len());
            }
        }
        _ => tree(b),
    }
});
