//! The autobase wakeup protocol (protomux-wakeup 2.9.0), live against JS autobase 7.28.1
//! (`tests/interop/autobase-wakeup-peer.js`, `base.replicate(stream)`): the `wakeup` channel
//! opens beside corestore replication on one TCP connection ([`HubWakeup`] on the store's hub).
//! (a) JS announces its writer with unindexed nodes and our engine gets it as a hint with its
//! length; (b) we announce our optimistic local writer and JS, told of it by nothing else,
//! hints it, fetches it and applies it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hyperpunch::core::autobase::wakeup::HubWakeup;
use hyperpunch::core::autobase::{ApplyNode, Autobase, Host, Views};
use hyperpunch::core::corestore::{Corestore, GetOptions, PrimaryKey};
use hyperpunch::core::crypto::KeyPair;
use hyperpunch::core::encoding::Encode;
use hyperpunch::core::protomux_wakeup::WakeupWriter;
use hyperpunch::core::storage::MemoryStorage;
use hyperpunch::replicate::{replicate, SharedCorestore};
use hyperpunch_tests::node_peer::NodePeer;
use serde_json::{json, Value};

fn key(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// `add:<key>` adds a writer, a value starting with `ok` acks its writer, the rest goes to the
/// view (the apply of autobase-wakeup-peer.js).
fn apply(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
    let view = views.open("view");
    for n in nodes {
        let s = String::from_utf8_lossy(n.value);
        if n.value.starts_with(b"ok") {
            host.ack_writer(n.from);
        }
        if let Some(k) = s.strip_prefix("add:") {
            host.add_writer(&key(k), false);
            continue;
        }
        views.append(view, n.value.to_vec());
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Every line the JS peer printed so far, without blocking; fails on its failure events.
fn drain(peer: &mut NodePeer, seen: &mut Vec<Value>) {
    while let Ok(v) = peer.next(Duration::from_millis(1)) {
        assert!(
            !matches!(v["event"].as_str(), Some("failed" | "deadline")),
            "{v}\n{}",
            peer.stderr()
        );
        seen.push(v);
    }
}

/// (a) JS → us: a JS writer B (added by a JS bootstrap that never acks, so B's nodes stay
/// unindexed: B is in its `_getWakeup`) serves the connection. Both ends open the wakeup
/// channel (JS's session has our peer); once the bootstrap's oplog made B a member of our
/// system we ask (lookup) and JS's announce reaches our engine as a hint for B at B's length,
/// which makes the engine want B's oplog.
#[test]
fn js_announce_reaches_our_engine_as_a_hint() {
    let step = Duration::from_secs(60);
    runtime().block_on(async {
        let mut peer = NodePeer::spawn(
            "autobase-wakeup-peer.js",
            &json!({ "mode": "writer", "values": 3, "deadline": 60000 }),
        )
        .expect("spawn node");
        let ready = peer.next_event("ready", step).unwrap();
        let bootstrap = key(ready["bootstrap"].as_str().unwrap());
        let writer = key(ready["writer"].as_str().unwrap());
        let writer_length = ready["writerLength"].as_u64().unwrap();
        assert_eq!(writer_length, 3);
        let port = peer.next_event("listening", step).unwrap()["port"]
            .as_u64()
            .unwrap() as u16;

        let mut store = Corestore::open(MemoryStorage::new(), PrimaryKey::Given([0x45; 32]))
            .await
            .unwrap();
        let boot = store.get(GetOptions::from_key(bootstrap)).await.unwrap();
        store
            .replicator_mut(&boot)
            .unwrap()
            .download(0, 0, None)
            .await
            .unwrap();
        let mut wakeup = HubWakeup::new(bootstrap);
        wakeup.attach(store.hub_mut());
        let (store, mut events) = SharedCorestore::with_events(store);
        let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let conn = tokio::spawn({
            let store = store.clone();
            async move { replicate(socket, true, KeyPair::from_seed(&[0x46; 32]), &store).await }
        });

        let mut base = Autobase::new(bootstrap, apply);
        assert!(
            !base.wanted().iter().any(|(k, _)| *k == writer),
            "not known before"
        );
        let mut hints: Vec<WakeupWriter> = Vec::new();
        let mut js: Vec<Value> = Vec::new();
        let mut asked = false;
        let deadline = Instant::now() + Duration::from_secs(50);
        loop {
            assert!(
                Instant::now() < deadline,
                "no announce; hints {hints:?} js {js:?} session peers {}\n{}",
                wakeup.wakeup().session().peers().count(),
                peer.stderr()
            );
            drain(&mut peer, &mut js);
            if let Ok(Some(ev)) =
                tokio::time::timeout(Duration::from_millis(50), events.recv()).await
            {
                let mut s = store.lock().await;
                let now = store.now();
                hints.extend(
                    wakeup
                        .handle_hub_event(now, s.hub_mut(), &mut base, &ev)
                        .await
                        .unwrap(),
                );
            }
            // the bootstrap's oplog (which adds B) in: B is a member of our system, so its
            // hint is taken (a base that is not optimistic drops hints of non-members)
            {
                let s = store.lock().await;
                let core = s.core(&boot).unwrap();
                while base.oplog_len(&bootstrap) < core.contiguous_length() {
                    let seq = base.oplog_len(&bootstrap);
                    let block = core.get(seq).await.unwrap().expect("contiguous block");
                    base.handle_block(&bootstrap, seq, &block).unwrap();
                }
                base.update();
            }
            if !asked
                && wakeup.wakeup().session().peers().count() == 1
                && base.system().get(&writer).is_some()
            {
                let mut s = store.lock().await;
                wakeup.broadcast_lookup(s.hub_mut());
                asked = true;
            }
            let js_peer = js.iter().any(|v| v["event"] == "wakeup-peer");
            if js_peer
                && hints.contains(&WakeupWriter {
                    key: writer,
                    length: writer_length,
                })
            {
                break;
            }
        }
        // JS's session has our peer, active; it counted our lookup and its announce
        let p = js.iter().find(|v| v["event"] == "wakeup-peer").unwrap();
        assert_eq!(p["active"], true, "{p}");
        assert_eq!(
            hints,
            [WakeupWriter {
                key: writer,
                length: writer_length
            }],
            "only B, at its length"
        );
        assert!(
            base.wanted().contains(&(writer, 0)),
            "the engine wants B's oplog now"
        );
        let st = wakeup.wakeup().session().stats();
        assert_eq!((st.lookup_tx, st.announce_rx), (1, 1), "{st:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !js.iter().any(|v| {
            v["event"] == "stats" && v["wireLookup"]["rx"] == 1 && v["wireAnnounce"]["tx"] == 1
        }) {
            assert!(Instant::now() < deadline, "JS stats {js:?}");
            drain(&mut peer, &mut js);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        conn.abort();
        let _ = peer.next_event("closed", step);
    });
}

/// (b) us → JS: an optimistic JS bootstrap serves the connection; we are a non-writer that
/// appends optimistically (`ok hp 1`). Nothing on the JS side opens our core or hints it: our
/// announce of the local writer (the engine's wakeup writers, sent by [`HubWakeup::refresh`])
/// makes JS `hintWakeup` it at our length, fetch our oplog over the same connection and apply
/// it (its apply acks `ok` values): `ok hp 1` is in JS's view.
#[test]
fn our_announce_makes_js_fetch_an_optimistic_writer() {
    let step = Duration::from_secs(60);
    runtime().block_on(async {
        let mut store = Corestore::open(MemoryStorage::new(), PrimaryKey::Given([0x55; 32]))
            .await
            .unwrap();
        let local = store.get(GetOptions::named("local")).await.unwrap();
        let local_key = *local.key();
        let mut peer = NodePeer::spawn(
            "autobase-wakeup-peer.js",
            &json!({ "mode": "optimistic", "expect": 1, "deadline": 60000 }),
        )
        .expect("spawn node");
        let bootstrap = key(peer.next_event("ready", step).unwrap()["bootstrap"]
            .as_str()
            .unwrap());
        let port = peer.next_event("listening", step).unwrap()["port"]
            .as_u64()
            .unwrap() as u16;
        let boot = store.get(GetOptions::from_key(bootstrap)).await.unwrap();
        store
            .replicator_mut(&boot)
            .unwrap()
            .download(0, 0, None)
            .await
            .unwrap();
        let mut handles = HashMap::from([(bootstrap, boot)]);
        let mut wakeup = HubWakeup::new(bootstrap);
        wakeup.attach(store.hub_mut());
        let (store, mut events) = SharedCorestore::with_events(store);
        let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let conn = tokio::spawn({
            let store = store.clone();
            async move { replicate(socket, true, KeyPair::from_seed(&[0x56; 32]), &store).await }
        });

        let mut base = Autobase::new(bootstrap, apply);
        base.set_optimistic(true);
        let view = base.open_view("view");
        let mut written = false;
        let mut js: Vec<Value> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(50);
        loop {
            assert!(
                Instant::now() < deadline,
                "JS did not apply our writer; view {:?} js {js:?}\n{}",
                base.views()
                    .blocks(view)
                    .iter()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect::<Vec<_>>(),
                peer.stderr()
            );
            drain(&mut peer, &mut js);
            if js.iter().any(|v| v["event"] == "done") {
                break;
            }
            let ev = tokio::time::timeout(Duration::from_millis(20), events.recv()).await;
            let mut s = store.lock().await;
            let now = store.now();
            if let Ok(Some(ev)) = ev {
                wakeup
                    .handle_hub_event(now, s.hub_mut(), &mut base, &ev)
                    .await
                    .unwrap();
            }
            for (k, h) in &handles {
                let core = s.core(h).unwrap();
                while base.oplog_len(k) < core.contiguous_length() {
                    let seq = base.oplog_len(k);
                    let block = core.get(seq).await.unwrap().expect("contiguous block");
                    base.handle_block(k, seq, &block).unwrap();
                }
            }
            base.update();
            for (k, _) in base.wanted() {
                if k == local_key {
                    continue;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = handles.entry(k) {
                    let h = s.get(GetOptions::from_key(k)).await.unwrap();
                    s.replicator_mut(&h)
                        .unwrap()
                        .download(now, 0, None)
                        .await
                        .unwrap();
                    e.insert(h);
                }
            }
            // once the bootstrap's value is in: append optimistically, once
            if !written && base.views().len(view) >= 1 {
                assert!(!base.is_writable(&local_key), "never added");
                let msgs = base
                    .append_optimistic(&local_key, b"ok hp 1".to_vec())
                    .expect("optimistic");
                let blocks: Vec<Vec<u8>> = msgs.iter().map(Encode::to_bytes).collect();
                let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
                s.append(now, &local, &refs).await.unwrap();
                base.update();
                written = true;
            }
            wakeup.refresh(s.hub_mut(), &base);
        }
        let hint = js
            .iter()
            .find(|v| v["event"] == "hint")
            .expect("JS was hinted");
        assert_eq!(hint["key"], hex::encode(local_key), "{hint}");
        assert_eq!(hint["length"], 1, "{hint}");
        let done = js.iter().find(|v| v["event"] == "done").unwrap();
        assert!(
            done["view"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == "ok hp 1"),
            "{done}"
        );
        assert!(wakeup.wakeup().session().stats().announce_tx >= 1);
        conn.abort();
        let _ = peer.next_event("closed", step);
    });
}
