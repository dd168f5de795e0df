//! Tests of `replicate` (moved out of it to keep it under about 1,000 lines).

use super::*;
use crate::core::hypercore::{CreateOptions, Hypercore};
use crate::core::replication::{Event, Options, Replicator};
use crate::core::storage::MemoryStorage;

async fn core(key_pair: Option<KeyPair>, key: Option<[u8; 32]>) -> Hypercore<MemoryStorage> {
    Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair,
            key,
            ..CreateOptions::default()
        },
    )
    .await
    .expect("create core")
}

/// Two pumps over an in-memory duplex with a tiny buffer: full download, a live append,
/// then a graceful end from the reader.
#[tokio::test]
async fn duplex_download_live_append_and_clean_end() {
    let mut writer = core(Some(KeyPair::from_seed(&[3; 32])), None).await;
    let blocks: Vec<Vec<u8>> = (0..200u32)
        .map(|i| {
            format!("block {i}")
                .repeat(i as usize % 50 + 1)
                .into_bytes()
        })
        .collect();
    let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
    writer.append(&refs).await.unwrap();
    let key = *writer.key();
    let reader = core(None, Some(key)).await;

    let mut wh = ReplicationHub::new();
    let dk = wh
        .add_core(Replicator::new(writer, Options::default()))
        .unwrap();
    let wh = SharedHub::new(wh);
    let mut rh = ReplicationHub::new();
    rh.add_core(Replicator::new(reader, Options::default()))
        .unwrap();
    let (rh, mut events) = SharedHub::with_events(rh);
    {
        let now = rh.now();
        let mut g = rh.lock().await;
        g.replicator_mut(&dk)
            .unwrap()
            .download(now, 0, None)
            .await
            .unwrap();
    }

    let (a, b) = tokio::io::duplex(512);
    let serve = replicate(a, false, KeyPair::from_seed(&[1; 32]), &wh);
    let fetch = replicate(b, true, KeyPair::from_seed(&[2; 32]), &rh);
    let drive = async {
        let mut appended = false;
        loop {
            let ev = events.recv().await.expect("events");
            let len = rh
                .lock()
                .await
                .replicator(&dk)
                .unwrap()
                .core()
                .contiguous_length();
            if len == 200 && !appended {
                appended = true;
                let now = wh.now();
                let mut g = wh.lock().await;
                g.replicator_mut(&dk)
                    .unwrap()
                    .append(now, &[b"live"])
                    .await
                    .unwrap();
            }
            if len == 201 {
                break;
            }
            assert!(
                !matches!(
                    ev,
                    HubEvent::Core {
                        event: Event::InvalidData { .. } | Event::InvalidRequest { .. },
                        ..
                    }
                ),
                "{ev:?}"
            );
        }
        rh.end_all().await;
    };
    let all = async { tokio::join!(serve, fetch, drive) };
    let (s, f, ()) = tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("replication finished in time");
    s.unwrap();
    f.unwrap();
    let g = rh.lock().await;
    let c = g.replicator(&dk).unwrap().core();
    c.verify_all().await.unwrap();
    assert_eq!(c.get(200).await.unwrap().as_deref(), Some(&b"live"[..]));
    assert_eq!(c.get(7).await.unwrap(), Some(blocks[7].clone()));
    assert_eq!(wh.connections().await, 0);
}

/// Garbage from the peer ends the pump with a typed error, no panic.
#[tokio::test]
async fn garbage_from_the_peer_is_an_error() {
    let hub: SharedHub<MemoryStorage> = SharedHub::new(ReplicationHub::new());
    let (a, mut b) = tokio::io::duplex(4096);
    let peer = async {
        let mut junk = vec![0xffu8; 3];
        junk.extend([0x5a; 200]);
        let _ = b.write_all(&junk).await;
        let _ = b.shutdown().await;
        let mut sink = Vec::new();
        let _ = b.read_to_end(&mut sink).await;
    };
    let pump = replicate(a, false, KeyPair::from_seed(&[4; 32]), &hub);
    let (r, ()) = tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(pump, peer) })
        .await
        .expect("pump stopped in time");
    assert!(r.is_err(), "{r:?}");
}
