//! Corestore natively: a store on files reopens with its primary key and cores, and two stores
//! replicate several cores over one loopback TCP connection through the tokio driver
//! ([`SharedCorestore`] + [`replicate`]), the serving store opening its stored cores on demand.

use std::time::Duration;

use hyperpunch::core::corestore::{
    Corestore, CorestoreError, GetOptions, Namespace, PrimaryKey, StoredCore,
};
use hyperpunch::core::crypto::KeyPair;
use hyperpunch::core::replication::HubEvent;
use hyperpunch::core::storage::MemoryStorage;
use hyperpunch::replicate::{replicate, SharedCorestore};
use hyperpunch::FileStorage;
use tokio::net::{TcpListener, TcpStream};

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("OS randomness");
    b
}

fn block(core: usize, i: u64) -> Vec<u8> {
    format!("core {core} block {i}:")
        .into_bytes()
        .repeat(1 + (i % 50) as usize)
}

#[tokio::test]
async fn a_file_store_reopens_with_its_primary_key_and_cores() {
    let dir = tempfile::tempdir().unwrap();
    let pk;
    let keys: Vec<[u8; 32]>;
    {
        let mut store = Corestore::open(
            FileStorage::open(dir.path()).unwrap(),
            PrimaryKey::StoredOrNew(random32()),
        )
        .await
        .unwrap();
        pk = *store.primary_key();
        let mut k = Vec::new();
        for (i, name) in ["db", "blobs", "local"].iter().enumerate() {
            let ns = if i == 2 {
                Namespace::ROOT.child("app")
            } else {
                Namespace::ROOT
            };
            let h = store
                .get(GetOptions::named(name).in_namespace(ns))
                .await
                .unwrap();
            for b in 0..=i as u64 {
                store.append(0, &h, &[&block(i, b)]).await.unwrap();
            }
            k.push(*h.key());
        }
        // A reader core of someone else's key.
        let r = store.get(GetOptions::from_key([9; 32])).await.unwrap();
        k.push(*r.key());
        keys = k;
    }
    // New random bytes do not replace the stored primary key.
    let mut store = Corestore::open(
        FileStorage::open(dir.path()).unwrap(),
        PrimaryKey::StoredOrNew(random32()),
    )
    .await
    .unwrap();
    assert_eq!(store.primary_key(), &pk);
    let mut listed: Vec<StoredCore> = store.list().await.unwrap();
    listed.sort_by_key(|c| c.id);
    assert_eq!(
        listed.iter().map(|c| c.key).collect::<Vec<_>>(),
        keys,
        "every core, in creation order"
    );
    assert_eq!(
        listed[2].name,
        Some((Namespace::ROOT.child("app"), b"local".to_vec()))
    );
    for (i, name) in ["db", "blobs"].iter().enumerate() {
        let h = store.get(GetOptions::named(name)).await.unwrap();
        assert_eq!(h.key(), &keys[i]);
        let core = store.core(&h).unwrap();
        assert!(core.writable());
        assert_eq!(core.length(), i as u64 + 1);
        core.verify_all().await.unwrap();
        assert_eq!(core.get(i as u64).await.unwrap(), Some(block(i, i as u64)));
    }
    drop(store);
    assert_eq!(
        Corestore::open(
            FileStorage::open(dir.path()).unwrap(),
            PrimaryKey::Given([1; 32])
        )
        .await
        .unwrap_err(),
        CorestoreError::PrimaryKeyMismatch
    );
}

/// Wait until `done` holds for the reader, reading its events (a bad event fails the test).
async fn follow(
    store: &SharedCorestore<MemoryStorage>,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<HubEvent>,
    mut done: impl FnMut(&Corestore<MemoryStorage>) -> bool,
) {
    loop {
        if done(&*store.lock().await) {
            return;
        }
        let ev = events.recv().await.expect("events");
        assert!(
            !matches!(
                ev,
                HubEvent::StreamClosed { .. } | HubEvent::CoreOpenFailed { .. }
            ),
            "{ev:?}"
        );
    }
}

/// A writer store on files with four cores, reopened so that none is open; a reader store that
/// wants three of them and one core nobody has. One TCP connection: the writer opens the three
/// on demand and serves them, rejects the unknown one, and the reader downloads everything.
#[tokio::test]
async fn stores_replicate_several_cores_over_one_tcp_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    {
        let mut w = Corestore::open(
            FileStorage::open(dir.path()).unwrap(),
            PrimaryKey::Given([3; 32]),
        )
        .await
        .unwrap();
        for i in 0..4usize {
            let h = w.get(GetOptions::named(format!("c{i}"))).await.unwrap();
            let n = 20 + 30 * i as u64;
            let blocks: Vec<Vec<u8>> = (0..n).map(|b| block(i, b)).collect();
            let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
            w.append(0, &h, &refs).await.unwrap();
            written.push((*h.key(), n));
        }
    }
    let w = Corestore::open(FileStorage::open(dir.path()).unwrap(), PrimaryKey::Stored)
        .await
        .unwrap();
    assert_eq!(w.open_cores().count(), 0);
    let writer = SharedCorestore::new(w);

    let mut r = Corestore::open(MemoryStorage::new(), PrimaryKey::StoredOrNew(random32()))
        .await
        .unwrap();
    let mut wanted = Vec::new();
    for (i, &(key, n)) in written.iter().enumerate().take(3) {
        let h = r.get(GetOptions::from_key(key)).await.unwrap();
        r.replicator_mut(&h)
            .unwrap()
            .download(0, 0, Some(n))
            .await
            .unwrap();
        wanted.push((h, i, n));
    }
    let nobody = r.get(GetOptions::from_key([0xab; 32])).await.unwrap();
    let (reader, mut events) = SharedCorestore::with_events(r);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = {
        let writer = writer.clone();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            replicate(sock, false, KeyPair::from_seed(&[1; 32]), &writer).await
        })
    };
    let fetch = {
        let reader = reader.clone();
        tokio::spawn(async move {
            let sock = TcpStream::connect(addr).await.unwrap();
            replicate(sock, true, KeyPair::from_seed(&[2; 32]), &reader).await
        })
    };
    let all_done = |s: &Corestore<MemoryStorage>| {
        wanted
            .iter()
            .all(|(h, _, n)| s.core(h).unwrap().contiguous_length() == *n)
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        follow(&reader, &mut events, all_done),
    )
    .await
    .expect("download in time");
    {
        let g = reader.lock().await;
        for (h, i, n) in &wanted {
            let core = g.core(h).unwrap();
            core.verify_all().await.unwrap();
            for b in 0..*n {
                assert_eq!(core.get(b).await.unwrap(), Some(block(*i, b)));
            }
        }
        // The unknown core was rejected; its channel never opened.
        assert_eq!(g.replicator(&nobody).unwrap().peers().count(), 0);
    }
    {
        // On demand: exactly the three asked for are open at the writer, the fourth is not.
        let g = writer.lock().await;
        assert_eq!(g.open_cores().count(), 3);
        assert!(!g.is_open(&hyperpunch::core::crypto::discovery_key(&written[3].0)));
        assert_eq!(g.hub().cores().count(), 3);
    }
    assert_eq!(writer.connections().await, 1);
    reader.end_all().await;
    let (s, f) = tokio::time::timeout(Duration::from_secs(30), async {
        (serve.await.unwrap(), fetch.await.unwrap())
    })
    .await
    .expect("connection ended in time");
    s.unwrap();
    f.unwrap();
    // The connection is gone: the writer's cores, opened for it alone, are closed again.
    let g = writer.lock().await;
    assert_eq!(g.open_cores().count(), 0);
}
