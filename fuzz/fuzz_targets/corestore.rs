//! Fuzz what a corestore reads from its storage: the store header, core records, aliases and
//! the next id decode without panicking (and what decodes re-encodes to itself), and a store
//! opened on storage holding arbitrary entries next to a real core answers `get`, `list` and
//! `list_names` with values or typed errors, never a panic.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use hyperpunch_core::corestore::layout::{self, CoreRecord, StoreHeader};
use hyperpunch_core::corestore::{Corestore, GetOptions, Namespace, PrimaryKey};
use hyperpunch_core::storage::{Batch, MemoryStorage, Storage};
use libfuzzer_sys::fuzz_target;

/// Memory storage never waits: every future completes on its first poll.
fn now<T>(f: impl Future<Output = T>) -> T {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("memory storage future was pending"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, b)) = data.split_first() else { return };
    match sel % 5 {
        0 => {
            if let Ok(h) = StoreHeader::decode(b) {
                assert_eq!(StoreHeader::decode(&h.encode()), Ok(h));
            }
        }
        1 => {
            if let Ok(r) = CoreRecord::decode(b) {
                assert_eq!(CoreRecord::decode(&r.encode()), Ok(r));
            }
        }
        2 => {
            let _ = layout::decode_alias(b);
            let _ = layout::decode_next_id(b);
            let _ = layout::discovery_key_of(b);
        }
        _ => {
            // A store with one named core, then entries from the input written over it:
            // `len ‖ key ‖ len ‖ value` pairs, the key's first byte a store tag.
            let storage = MemoryStorage::new();
            let mut s = now(Corestore::open(storage.clone(), PrimaryKey::Given([1; 32]))).unwrap();
            let h = now(s.get(GetOptions::named("a"))).unwrap();
            now(s.append(0, &h, &[b"x"])).unwrap();
            let dk = *h.discovery_key();
            drop(s);
            let mut batch = Batch::new();
            let mut rest = b;
            while rest.len() >= 2 {
                let (kl, vl) = (rest[0] as usize % 48, rest[1] as usize);
                rest = &rest[2..];
                if rest.len() < kl + vl || kl == 0 {
                    break;
                }
                let mut key = rest[..kl].to_vec();
                key[0] = [layout::HEADER, layout::NEXT_ID, layout::CORE, layout::ALIAS, layout::DATA]
                    [key[0] as usize % 5];
                if key[0] == layout::CORE && sel % 2 == 0 {
                    key = layout::core_key(&dk);
                }
                batch.put(key, rest[kl..kl + vl].to_vec());
                rest = &rest[kl + vl..];
            }
            now(storage.write(batch)).unwrap();
            let Ok(mut s) = now(Corestore::open(storage, PrimaryKey::Stored)) else { return };
            let _ = now(s.list());
            let _ = now(s.list_names(&Namespace::ROOT));
            if let Ok(h) = now(s.get(GetOptions::named("a"))) {
                let _ = s.core(&h).map(|c| c.length());
            }
            let _ = now(s.get(GetOptions::from_discovery_key(dk)));
        }
    }
});
