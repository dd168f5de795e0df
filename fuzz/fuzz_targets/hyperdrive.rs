//! Fuzz the hyperdrive and hyperblobs decoders and a drive over hostile cores. First byte mod 3:
//! 0: `EntryValue::decode` (the entry JSON): no panic, and what decodes re-encodes to bytes that
//! decode to the same entry and re-encode to the same bytes.
//! 1: `block_map::decode_block`: no panic, and what decodes re-encodes to the same block.
//! 2: a drive whose db holds fuzzed entries (raw bytes, or entries whose blob ids point at
//! fuzzed offsets of a blobs core of fuzzed blocks, with or without a block map, and symlinks
//! to fuzzed targets), then every drive operation on it: list (recursive, shallow), readdir,
//! entry, entry_follow, get, readers over fuzzed ranges, has, download, diff, clear. Each must
//! end with a value or a typed error: no panic, no hang.
#![no_main]

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hyperbee::Hyperbee;
use hyperpunch_core::hyperblobs::{block_map, ReadRange};
use hyperpunch_core::hyperdrive::suite::local_cores;
use hyperpunch_core::hyperdrive::{EntryValue, Hyperdrive, ListOptions};
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
        Poll::Pending => panic!("a drive operation on memory storage waited"),
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
    fn num(&mut self) -> u64 {
        match self.byte() % 4 {
            0 => self.byte() as u64 % 8,
            1 => self.byte() as u64 * 257 + self.byte() as u64,
            2 => u64::from_le_bytes([self.byte(), self.byte(), self.byte(), 0, 0, 0, 0, 0]),
            _ => u64::MAX >> (self.byte() % 64),
        }
    }
}

fn drive(data: &[u8]) {
    let mut d = Bytes(data);
    run(async {
        let (db, blobs) = local_cores(
            MemoryStorage::new(),
            MemoryStorage::new(),
            KeyPair::from_seed(&[4; 32]),
        )
        .await;
        // The blobs core: fuzzed blocks, some of them block maps.
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        for _ in 0..d.byte() % 12 {
            if d.byte() & 1 == 0 {
                let n = d.byte() as usize % 300;
                blocks.push(d.take(n));
            } else {
                let entries: Vec<block_map::MapEntry> = (0..d.byte() % 6)
                    .map(|_| block_map::MapEntry {
                        index: d.num(),
                        byte_length: d.num(),
                    })
                    .collect();
                blocks.extend(block_map::encode(&entries));
            }
        }
        if !blocks.is_empty() {
            let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
            blobs.append(&refs).await.unwrap();
        }
        let drive = Hyperdrive::new(db.clone(), blobs);
        let raw = Hyperbee::new(db).sub("files");
        let names = ["/a", "/b/c", "/b/d", "/e", "/b/c/x", "/z0"];
        for _ in 0..d.byte() % 10 {
            let name = names[d.byte() as usize % names.len()];
            match d.byte() % 3 {
                0 => {
                    let n = d.byte() as usize % 60;
                    let _ = raw.put(name.as_bytes(), &d.take(n)).await;
                }
                1 => {
                    let v = EntryValue {
                        executable: d.byte() & 1 == 1,
                        linkname: None,
                        blob: Some(hyperpunch_core::hyperblobs::BlobId {
                            block_offset: d.num(),
                            byte_offset: d.num(),
                            block_length: d.num(),
                            byte_length: d.num(),
                            block_map: d.byte() & 1 == 1,
                        }),
                        metadata: None,
                    };
                    let _ = drive.put_entry(name, &v).await;
                }
                _ => {
                    let target = names[d.byte() as usize % names.len()];
                    let _ = drive.symlink(name, target, None).await;
                }
            }
        }
        let range = ReadRange {
            start: Some(d.num()),
            end: (d.byte() & 1 == 1).then(|| d.num()),
            length: (d.byte() & 1 == 1).then(|| d.num()),
        };
        for recursive in [true, false] {
            if let Ok(it) = drive.list("/", ListOptions { recursive, ignore: vec![] }) {
                let _ = it.collect().await;
            }
        }
        let _ = drive.readdir("/b").await;
        for name in names {
            let _ = drive.entry(name).await;
            let _ = drive.entry_follow(name).await;
            let _ = drive.get(name).await;
            if let Ok(mut r) = drive.reader(name, range).await {
                for _ in 0..64 {
                    match r.next().await {
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
            }
            let _ = drive.has(name).await;
        }
        if let Ok(diff) = drive.diff(2, "/").await {
            let _ = diff.collect().await;
        }
        let _ = drive.download("/").await;
        let _ = drive.clear("/a").await;
        let _ = drive.blobs_length(3).await;
    });
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, b)) = data.split_first() else { return };
    match sel % 3 {
        0 => {
            if let Ok(v) = EntryValue::decode(b) {
                // Metadata numbers re-read as JS reads them (0.0 is 0): the fields and the
                // re-encoding are stable.
                let again = v.encode();
                let back = EntryValue::decode(&again).expect("re-encoding decodes");
                assert_eq!((back.executable, &back.linkname, back.blob), (v.executable, &v.linkname, v.blob));
                assert_eq!(back.encode(), again);
            }
        }
        1 => {
            if let Ok(m) = block_map::decode_block(b) {
                let again = block_map::encode(&m.blocks);
                if !m.blocks.is_empty() && m.blocks.len() <= block_map::ENTRIES_PER_BLOCK {
                    assert_eq!(again.len(), 1);
                    assert_eq!(block_map::decode_block(&again[0]).as_ref(), Ok(&m));
                }
            }
        }
        _ => drive(b),
    }
});
