//! Browser tests of the corestore on IndexedDB (headless Chromium): a store reopens from its
//! database with its primary key and cores, and two stores replicate several cores over one
//! in-memory duplex through the full stack, the serving store opening its stored cores on
//! demand and rejecting a core it does not have.
//!
//! Run with `scripts/test-browser.sh`.
#![cfg(target_arch = "wasm32")]

use std::rc::Rc;

use futures_util::future::join;
use hyperpunch_core::corestore::{Corestore, GetOptions, Namespace, PrimaryKey};
use hyperpunch_core::crypto::{discovery_key, KeyPair};
use hyperpunch_core::replication::{Event, HubEvent};
use hyperpunch_web::replicate::{memory_duplex, replicate, HubEvents, SharedCorestore};
use hyperpunch_web::storage::IdbStorage;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

type Store = Corestore<Rc<IdbStorage>>;

fn unique_name(prefix: &str) -> String {
    let salt = (js_sys::Math::random() * 1e12) as u64;
    format!("hyperpunch-corestore-{prefix}-{salt:x}")
}

async fn idb(name: &str, fresh: bool) -> Rc<IdbStorage> {
    if fresh {
        IdbStorage::delete_database(name).await.expect("delete");
    }
    Rc::new(IdbStorage::open(name).await.expect("open IndexedDB"))
}

fn block(core: usize, i: u64) -> Vec<u8> {
    format!("core {core} block {i}:")
        .into_bytes()
        .repeat(1 + (i % 40) as usize)
}

#[wasm_bindgen_test]
async fn a_store_reopens_from_indexeddb_with_its_primary_key_and_cores() {
    let name = unique_name("reopen");
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).unwrap();
    let (pk, keys) = {
        let mut s: Store = Corestore::open(idb(&name, true).await, PrimaryKey::StoredOrNew(random))
            .await
            .unwrap();
        let mut keys = Vec::new();
        for (i, ns) in [Namespace::ROOT, Namespace::ROOT.child("app")]
            .iter()
            .enumerate()
        {
            let h = s
                .get(GetOptions::named("db").in_namespace(*ns))
                .await
                .unwrap();
            let blocks: Vec<Vec<u8>> = (0..10 + i as u64).map(|b| block(i, b)).collect();
            let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
            s.append(0, &h, &refs).await.unwrap();
            keys.push(*h.key());
        }
        (*s.primary_key(), keys)
    };
    let mut s: Store = Corestore::open(idb(&name, false).await, PrimaryKey::StoredOrNew([0; 32]))
        .await
        .unwrap();
    assert_eq!(s.primary_key(), &pk);
    assert_eq!(s.list().await.unwrap().len(), 2);
    for (i, ns) in [Namespace::ROOT, Namespace::ROOT.child("app")]
        .iter()
        .enumerate()
    {
        let h = s
            .get(GetOptions::named("db").in_namespace(*ns))
            .await
            .unwrap();
        assert_eq!(h.key(), &keys[i]);
        let core = s.core(&h).unwrap();
        assert_eq!(core.length(), 10 + i as u64);
        core.verify_all().await.unwrap();
        assert_eq!(core.get(9).await.unwrap(), Some(block(i, 9)));
    }
    drop(s);
    IdbStorage::delete_database(&name).await.unwrap();
}

fn check_event(ev: &HubEvent) {
    assert!(
        !matches!(
            ev,
            HubEvent::Core {
                event: Event::InvalidData { .. } | Event::Disconnect { .. },
                ..
            } | HubEvent::StreamClosed { .. }
                | HubEvent::CoreOpenFailed { .. }
        ),
        "{ev:?}"
    );
}

#[wasm_bindgen_test]
async fn stores_on_indexeddb_replicate_several_cores_over_one_stream() {
    let (wname, rname) = (unique_name("w"), unique_name("r"));
    // The writer: three named cores, then reopened so that none is open.
    let mut written = Vec::new();
    {
        let mut w: Store = Corestore::open(idb(&wname, true).await, PrimaryKey::Given([5; 32]))
            .await
            .unwrap();
        for i in 0..3usize {
            let h = w.get(GetOptions::named(format!("c{i}"))).await.unwrap();
            let n = 15 + 10 * i as u64;
            let blocks: Vec<Vec<u8>> = (0..n).map(|b| block(i, b)).collect();
            let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
            w.append(0, &h, &refs).await.unwrap();
            written.push((*h.key(), n));
        }
    }
    let w: Store = Corestore::open(idb(&wname, false).await, PrimaryKey::Stored)
        .await
        .unwrap();
    let writer = SharedCorestore::new(w);
    // The reader wants the first two and a core nobody has.
    let mut r: Store = Corestore::open(idb(&rname, true).await, PrimaryKey::StoredOrNew([6; 32]))
        .await
        .unwrap();
    let mut wanted = Vec::new();
    for (i, &(key, n)) in written.iter().enumerate().take(2) {
        let h = r.get(GetOptions::from_key(key)).await.unwrap();
        r.replicator_mut(&h)
            .unwrap()
            .download(0, 0, Some(n))
            .await
            .unwrap();
        wanted.push((h, i, n));
    }
    let nobody = r.get(GetOptions::from_key([0xcd; 32])).await.unwrap();
    let (reader, mut events): (SharedCorestore<Rc<IdbStorage>>, HubEvents) =
        SharedCorestore::with_events(r);

    let (a, b) = memory_duplex();
    let serve = replicate(a, false, KeyPair::from_seed(&[1; 32]), &writer);
    let fetch = replicate(b, true, KeyPair::from_seed(&[2; 32]), &reader);
    let drive = async {
        loop {
            let done = {
                let g = reader.lock().await;
                wanted
                    .iter()
                    .all(|(h, _, n)| g.core(h).unwrap().contiguous_length() == *n)
            };
            if done {
                break;
            }
            let ev = events.next().await.expect("events");
            check_event(&ev);
        }
        reader.end_all().await;
    };
    let ((s, f), ()) = join(join(serve, fetch), drive).await;
    s.expect("writer's pump closed cleanly");
    f.expect("reader's pump closed cleanly");

    let g = reader.lock().await;
    for (h, i, n) in &wanted {
        let core = g.core(h).unwrap();
        core.verify_all().await.unwrap();
        for b in 0..*n {
            assert_eq!(core.get(b).await.unwrap(), Some(block(*i, b)));
        }
    }
    assert_eq!(g.replicator(&nobody).unwrap().peers().count(), 0);
    drop(g);
    // The writer opened exactly the two asked for, and closed them with the connection.
    let g = writer.lock().await;
    assert_eq!(g.open_cores().count(), 0);
    assert!(!g.is_open(&discovery_key(&written[2].0)));
    drop(g);
    drop(writer);
    drop(reader);
    IdbStorage::delete_database(&wname).await.unwrap();
    IdbStorage::delete_database(&rname).await.unwrap();
}
