//! The replication interop matrix, live over TCP loopback against a real JS hypercore 11
//! (`tests/interop/replicate-matrix.js`). The Rust side is the tokio transport
//! ([`hyperpunch::replicate`]) over in-memory cores; the cases of one run share one node process
//! and one secret-stream connection (one protomux channel per core).
//!
//! - Rust reads JS-written cores: default keys with 10k blocks of mixed sizes (up to 1 MiB),
//!   compat + encrypted, a sparse download of random blocks (exactly those arrive), a live tail
//!   while JS appends, a JS writer that truncates mid-session (new fork), and a user extension
//!   message round trip.
//! - JS reads Rust-written cores: the same cases (3000 mixed-size blocks, compat + encrypted,
//!   sparse, live tail while Rust appends, Rust truncating mid-session, extension).
//! - Three peers mixing implementations: a Rust reader gets a whole core from two seeders that
//!   each hold only half of it (two JS seeders; one JS and one Rust seeder), every block from
//!   the seeder that has it.
//!
//! Every step has a deadline and node is killed when a test ends.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hyperpunch::replicate::{replicate, SharedHub};
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hypercore::{CreateOptions, Hypercore};
use hyperpunch_core::replication::{Event, HubEvent, Options, ReplicationHub, Replicator};
use hyperpunch_core::storage::MemoryStorage;
use hyperpunch_tests::matrix::{block, sparse_indices};
use hyperpunch_tests::node_peer::NodePeer;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

const SCRIPT: &str = "replicate-matrix.js";
const STEP: Duration = Duration::from_secs(60);
const EXT: &str = "hp-echo";

/// A Rust writer core: name, key pair seed, compat, encryption key, block count.
type Spec = (&'static str, u8, bool, Option<[u8; 32]>, u64);

fn hex32(s: &Value) -> [u8; 32] {
    hex::decode(s.as_str().expect("hex string"))
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

/// Every line node printed until `closed` (or its exit): none may complain.
fn drain_until_closed(peer: &mut NodePeer) -> Vec<Value> {
    let mut lines = Vec::new();
    loop {
        let v = peer.next(STEP).unwrap();
        let event = v["event"].as_str().unwrap_or_default().to_owned();
        lines.push(v);
        if event == "closed" {
            break;
        }
    }
    for v in &lines {
        assert!(
            !matches!(
                v["event"].as_str(),
                Some("verification-error" | "invalid-request" | "failed" | "deadline")
            ),
            "node complained: {v}; all: {lines:?}"
        );
    }
    lines
}

/// What node printed so far (for failure messages).
fn printed(peer: &mut NodePeer) -> Vec<Value> {
    std::iter::from_fn(|| peer.next(Duration::from_millis(100)).ok()).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One Rust reader per JS writer core, all over one connection.
#[test]
fn rust_reads_js_written_cores() {
    let enc = [0x66u8; 32];
    let sparse = sparse_indices(7, 40, 3000);
    let config = json!({
        "mode": "server", "streamSeed": hex::encode([0x31; 32]), "deadline": 55000,
        "cores": [
            {"name": "full", "role": "writer", "seed": hex::encode([1; 32]), "count": 10000},
            {"name": "compat-enc", "role": "writer", "seed": hex::encode([2; 32]), "compat": true,
             "encryptionKey": hex::encode(enc), "count": 1500},
            {"name": "sparse", "role": "writer", "seed": hex::encode([3; 32]), "count": 3000},
            {"name": "live", "role": "writer", "seed": hex::encode([4; 32]), "count": 100, "live": 60},
            {"name": "fork", "role": "writer", "seed": hex::encode([5; 32]), "count": 100,
             "truncate": {"to": 60, "append": 30}},
            {"name": "ext", "role": "writer", "seed": hex::encode([6; 32]), "count": 1,
             "extension": EXT},
        ]
    });
    let mut peer = NodePeer::spawn(SCRIPT, &config).expect("spawn node");
    let mut keys = BTreeMap::new();
    for _ in 0..6 {
        let ready = peer.next_event("ready", STEP).unwrap();
        keys.insert(ready["name"].as_str().unwrap().to_owned(), ready);
    }
    let port = peer.next_event("listening", STEP).unwrap()["port"]
        .as_u64()
        .unwrap() as u16;

    rt().block_on(async {
        let mut hub = ReplicationHub::new();
        let mut dks = BTreeMap::new();
        for (name, ready) in &keys {
            let core = Hypercore::create(
                MemoryStorage::new(),
                CreateOptions {
                    key: Some(hex32(&ready["key"])),
                    encryption_key: (name == "compat-enc").then_some(enc),
                    ..CreateOptions::default()
                },
            )
            .await
            .unwrap();
            assert_eq!(
                hex::encode(core.discovery_key()),
                ready["discoveryKey"].as_str().unwrap(),
                "{name}"
            );
            let mut rep = Replicator::new(core, Options::default());
            if name == "ext" {
                rep.register_extension(EXT);
            }
            dks.insert(name.clone(), hub.add_core(rep).unwrap());
        }
        let (hub, mut events) = SharedHub::with_events(hub);
        {
            let now = hub.now();
            let mut g = hub.lock().await;
            for (name, dk) in &dks {
                let rep = g.replicator_mut(dk).unwrap();
                if name == "sparse" {
                    for &k in &sparse {
                        rep.download(now, k, Some(k + 1)).await.unwrap();
                    }
                } else {
                    rep.download(now, 0, None).await.unwrap();
                }
            }
        }
        let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let conn = replicate(socket, true, KeyPair::from_seed(&[0x32; 32]), &hub);
        tokio::pin!(conn);
        let mut pong = None;
        let mut invalid = Vec::new();
        let all_done = |g: &ReplicationHub<MemoryStorage>, pong: &Option<Vec<u8>>| {
            let c = |n: &str| g.replicator(&dks[n]).unwrap().core();
            let complete = |n: &str, len: u64| {
                let c = c(n);
                c.length() == len && c.contiguous_length() == len
            };
            complete("full", 10000)
                && complete("compat-enc", 1500)
                && complete("live", 160)
                && complete("fork", 90)
                && c("fork").fork() == 1
                && c("sparse").length() == 3000
                && sparse.iter().all(|&k| c("sparse").has(k))
                && pong.is_some()
        };
        let work = async {
            loop {
                if all_done(&*hub.lock().await, &pong) {
                    break;
                }
                tokio::select! {
                    r = &mut conn => panic!(
                        "the connection ended early: {r:?}; node printed {:?}; stderr:\n{}",
                        printed(&mut peer),
                        peer.stderr()
                    ),
                    ev = events.recv() => match ev.expect("hub events") {
                        HubEvent::ChannelOpened { discovery_key, peer, .. }
                            if discovery_key == dks["ext"] => {
                            let mut g = hub.lock().await;
                            let rep = g.replicator_mut(&discovery_key).unwrap();
                            rep.send_extension(peer, EXT, b"ping:rust").unwrap();
                        }
                        HubEvent::Core { event: Event::Extension { name, message, .. }, .. } => {
                            assert_eq!(name, EXT);
                            pong = Some(message);
                        }
                        HubEvent::Core { event: e @ (Event::InvalidData { .. }
                            | Event::InvalidRequest { .. }), .. } => invalid.push(e),
                        _ => {}
                    },
                }
            }
        };
        tokio::time::timeout(STEP, work).await.unwrap_or_else(|_| {
            panic!(
                "timed out; node printed {:?}; stderr:\n{}",
                printed(&mut peer),
                peer.stderr()
            )
        });
        assert!(invalid.is_empty(), "{invalid:?}");
        assert_eq!(pong.as_deref(), Some(&b"pong:ping:rust"[..]));

        // Check what arrived, block by block.
        let g = hub.lock().await;
        for (name, len) in [("full", 10000), ("compat-enc", 1500), ("live", 160)] {
            let c = g.replicator(&dks[name]).unwrap().core();
            c.verify_all().await.unwrap();
            for k in 0..len {
                assert_eq!(
                    c.get(k).await.unwrap(),
                    Some(block(name, 0, k)),
                    "{name} {k}"
                );
            }
        }
        let c = g.replicator(&dks["compat-enc"]).unwrap().core();
        assert!(c.is_compat() && c.encrypted());
        assert_eq!(c.key(), &KeyPair::from_seed(&[2; 32]).public_key);
        let c = g.replicator(&dks["fork"]).unwrap().core();
        c.verify_all().await.unwrap();
        for k in 0..90 {
            let fork = if k < 60 { 0 } else { 1 };
            assert_eq!(
                c.get(k).await.unwrap(),
                Some(block("fork", fork, k)),
                "fork {k}"
            );
        }
        let c = g.replicator(&dks["sparse"]).unwrap().core();
        c.verify_all().await.unwrap();
        let wanted: BTreeSet<u64> = sparse.iter().copied().collect();
        for k in 0..3000 {
            if wanted.contains(&k) {
                assert_eq!(
                    c.get(k).await.unwrap(),
                    Some(block("sparse", 0, k)),
                    "sparse {k}"
                );
            } else {
                assert!(
                    !c.has(k),
                    "sparse block {k} was downloaded but not asked for"
                );
            }
        }
        drop(g);
        // Close: end our side, JS ends too.
        hub.end_all().await;
        tokio::time::timeout(STEP, &mut conn)
            .await
            .expect("clean close in time")
            .expect("clean close");
    });
    let lines = drain_until_closed(&mut peer);
    assert!(
        lines
            .iter()
            .any(|v| v["event"] == "extension" && v["message"] == "ping:rust"),
        "{lines:?}"
    );
    assert_eq!(peer.wait(STEP), Some(true));
}

/// JS reads Rust-written cores over one connection: full (mixed sizes up to 1 MiB), compat +
/// encrypted, sparse, a live tail, a truncation mid-session (new fork), and a user extension.
#[test]
fn js_reads_rust_written_cores() {
    const LIVE_FROM: u64 = 100;
    const LIVE: u64 = 40;
    let enc = [0x67u8; 32];
    let sparse = sparse_indices(11, 30, 2000);
    rt().block_on(async {
        // (name, key pair seed, compat, encryption key, blocks)
        let specs: [Spec; 6] = [
            ("live", 14, false, None, LIVE_FROM),
            ("fork", 15, false, None, 100),
            ("full", 11, false, None, 3000),
            ("compat-enc", 12, true, Some(enc), 1200),
            ("sparse", 13, false, None, 2000),
            ("ext", 16, false, None, 1),
        ];
        let mut hub = ReplicationHub::new();
        let mut dks = BTreeMap::new();
        let mut readers = Vec::new();
        for (name, seed, compat, encryption_key, count) in specs {
            let mut core = Hypercore::create(
                MemoryStorage::new(),
                CreateOptions {
                    key_pair: Some(KeyPair::from_seed(&[seed; 32])),
                    compat,
                    encryption_key,
                    ..CreateOptions::default()
                },
            )
            .await
            .unwrap();
            for start in (0..count).step_by(500) {
                let blocks: Vec<Vec<u8>> = (start..(start + 500).min(count))
                    .map(|k| block(name, 0, k))
                    .collect();
                let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
                core.append(&refs).await.unwrap();
            }
            let mut reader = json!({
                "name": name, "role": "reader", "key": hex::encode(core.key()),
                "expect": count,
            });
            if let Some(k) = encryption_key {
                reader["encryptionKey"] = json!(hex::encode(k));
            }
            if compat {
                reader["compat"] = json!(true);
            }
            match name {
                "sparse" => reader["blocks"] = json!(sparse),
                "ext" => reader["extension"] = json!(EXT),
                "live" => reader["expect"] = json!(LIVE_FROM + LIVE),
                "fork" => {
                    reader["expect"] = json!(90);
                    reader["fork"] = json!(1);
                    reader["forkFrom"] = json!(60);
                }
                _ => {}
            }
            readers.push(reader);
            let mut rep = Replicator::new(core, Options::default());
            if name == "ext" {
                rep.register_extension(EXT);
            }
            dks.insert(name, hub.add_core(rep).unwrap());
        }
        let (hub, mut events) = SharedHub::with_events(hub);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut peer = NodePeer::spawn(
            SCRIPT,
            &json!({
                "mode": "client", "port": port, "streamSeed": hex::encode([0x33; 32]),
                "deadline": 55000, "cores": readers,
            }),
        )
        .expect("spawn node");
        let (socket, _) = tokio::time::timeout(STEP, listener.accept())
            .await
            .expect("node connected in time")
            .unwrap();
        let conn = tokio::spawn({
            let hub = hub.clone();
            async move { replicate(socket, false, KeyPair::from_seed(&[0x34; 32]), &hub).await }
        });
        tokio::pin!(conn);
        let mut invalid = Vec::new();
        let (mut live, mut truncated) = (false, false);
        let work = async {
            loop {
                tokio::select! {
                    r = &mut conn => return r.expect("replication task"),
                    ev = events.recv() => match ev.expect("hub events") {
                        HubEvent::Core { discovery_key, event: Event::PeerSync { length, .. } } => {
                            if dks.get("live") == Some(&discovery_key) && length == LIVE_FROM && !live {
                                // The JS reader has everything: append one block at a time.
                                live = true;
                                let hub = hub.clone();
                                tokio::spawn(async move {
                                    for k in LIVE_FROM..LIVE_FROM + LIVE {
                                        let mut g = hub.lock().await;
                                        let rep = g.replicator_mut(&discovery_key).unwrap();
                                        rep.append(hub.now(), &[&block("live", 0, k)]).await.unwrap();
                                        drop(g);
                                        tokio::time::sleep(Duration::from_millis(5)).await;
                                    }
                                });
                            }
                            // The JS reader has the whole fork 0: truncate and write fork 1.
                            if dks.get("fork") == Some(&discovery_key) && length == 100 && !truncated {
                                truncated = true;
                                let now = hub.now();
                                let mut g = hub.lock().await;
                                let rep = g.replicator_mut(&discovery_key).unwrap();
                                rep.truncate(now, 60, None).await.unwrap();
                                let blocks: Vec<Vec<u8>> =
                                    (60..90).map(|k| block("fork", 1, k)).collect();
                                let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
                                rep.append(now, &refs).await.unwrap();
                            }
                        }
                        HubEvent::Core { discovery_key, event: Event::Extension { peer, name, message } } => {
                            let mut g = hub.lock().await;
                            let rep = g.replicator_mut(&discovery_key).unwrap();
                            let mut reply = b"pong:".to_vec();
                            reply.extend(&message);
                            rep.send_extension(peer, &name, &reply).unwrap();
                        }
                        HubEvent::Core { event: e @ (Event::InvalidData { .. }
                            | Event::InvalidRequest { .. }), .. } => invalid.push(e),
                        _ => {}
                    },
                }
            }
        };
        // JS ends the stream once every reader is done; we end ours in reply.
        let r = tokio::time::timeout(STEP, work)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out; node printed {:?}; stderr:\n{}",
                    printed(&mut peer),
                    peer.stderr()
                )
            });
        r.expect("clean close");
        assert!(invalid.is_empty(), "{invalid:?}");
        assert!(live && truncated);
        let lines = drain_until_closed(&mut peer);
        let done: BTreeMap<String, &Value> = lines
            .iter()
            .filter(|v| v["event"] == "done")
            .map(|v| (v["name"].as_str().unwrap().to_owned(), v))
            .collect();
        assert_eq!(done.len(), 6, "{lines:?}");
        for (name, d) in &done {
            assert_eq!(d["bad"], json!([]), "{name}: {d}");
        }
        let g = hub.lock().await;
        for (name, (length, fork, checked, held)) in [
            ("full", (3000, 0, 3000, 3000)),
            ("compat-enc", (1200, 0, 1200, 1200)),
            ("sparse", (2000, 0, 30, 30)),
            ("ext", (1, 0, 1, 1)),
            ("fork", (90, 1, 90, 90)),
            ("live", (LIVE_FROM + LIVE, 0, 140, 140)),
        ] {
            let d = done[name];
            assert_eq!(d["length"], json!(length), "{name}: {d}");
            assert_eq!(d["fork"], json!(fork), "{name}: {d}");
            assert_eq!(d["checked"], json!(checked), "{name}: {d}");
            assert_eq!(d["held"], json!(held), "{name}: {d}");
            let c = g.replicator(&dks[name]).unwrap().core();
            assert_eq!(d["byteLength"], json!(c.byte_length()), "{name}: {d}");
        }
        assert!(
            lines
                .iter()
                .any(|v| v["event"] == "extension" && v["message"] == "pong:ping:ext"),
            "{lines:?}"
        );
        drop(g);
        assert_eq!(peer.wait(STEP), Some(true));
    });
}

/// Blocks of the split core, and the seeders' halves.
const SPLIT: u64 = 600;
const HALF: u64 = 300;

/// A JS seeder of the split core (key pair seed 9) holding everything but `clear`.
fn js_split_seeder(clear: [u64; 2], stream_seed: u8) -> (NodePeer, [u8; 32], u16) {
    let config = json!({
        "mode": "server", "streamSeed": hex::encode([stream_seed; 32]), "deadline": 55000,
        "cores": [{"name": "split", "role": "writer", "seed": hex::encode([9; 32]),
                   "count": SPLIT, "clear": clear}],
    });
    let mut peer = NodePeer::spawn(SCRIPT, &config).expect("spawn node");
    let key = hex32(&peer.next_event("ready", STEP).unwrap()["key"]);
    let port = peer.next_event("listening", STEP).unwrap()["port"]
        .as_u64()
        .unwrap() as u16;
    (peer, key, port)
}

/// A Rust reader connects to every seeder in `ports` and downloads the split core; each seeder
/// holds one half, so blocks must come from both. Returns after checking every block.
async fn read_split_from(ports: &[u16], key: [u8; 32]) {
    let core = Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key: Some(key),
            ..CreateOptions::default()
        },
    )
    .await
    .unwrap();
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(core, Options::default()))
        .unwrap();
    let (hub, mut events) = SharedHub::with_events(hub);
    {
        let now = hub.now();
        let mut g = hub.lock().await;
        let rep = g.replicator_mut(&dk).unwrap();
        rep.download(now, 0, None).await.unwrap();
    }
    let mut conns = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let hub = hub.clone();
        conns.push(tokio::spawn(async move {
            replicate(
                socket,
                true,
                KeyPair::from_seed(&[0x50 + i as u8; 32]),
                &hub,
            )
            .await
        }));
    }
    let mut sources = BTreeMap::new();
    let work = async {
        loop {
            {
                let g = hub.lock().await;
                let c = g.replicator(&dk).unwrap().core();
                if c.length() == SPLIT && c.contiguous_length() == SPLIT {
                    break;
                }
            }
            match events.recv().await.expect("hub events") {
                HubEvent::Core {
                    event: Event::Block { index, peer, .. },
                    ..
                } => {
                    sources.insert(index, peer);
                }
                HubEvent::Core {
                    event: e @ (Event::InvalidData { .. } | Event::InvalidRequest { .. }),
                    ..
                } => panic!("{e:?}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(STEP, work)
        .await
        .expect("the split core arrived in time");
    // Block events queued before the check saw the core complete.
    while let Ok(ev) = events.try_recv() {
        if let HubEvent::Core {
            event: Event::Block { index, peer, .. },
            ..
        } = ev
        {
            sources.insert(index, peer);
        }
    }
    // Each half came from the one seeder holding it.
    let first: BTreeSet<_> = sources.range(..HALF).map(|(_, p)| *p).collect();
    let second: BTreeSet<_> = sources.range(HALF..).map(|(_, p)| *p).collect();
    assert_eq!(sources.len() as u64, SPLIT);
    assert_eq!((first.len(), second.len()), (1, 1), "{sources:?}");
    assert_ne!(first, second);
    let g = hub.lock().await;
    let c = g.replicator(&dk).unwrap().core();
    c.verify_all().await.unwrap();
    for k in 0..SPLIT {
        assert_eq!(c.get(k).await.unwrap(), Some(block("split", 0, k)), "{k}");
    }
    drop(g);
    hub.end_all().await;
    for conn in conns {
        tokio::time::timeout(STEP, conn)
            .await
            .expect("close in time")
            .unwrap()
            .expect("clean close");
    }
}

/// Two JS seeders, each holding half of a core, and a Rust reader that gets all of it.
#[test]
fn rust_reads_from_two_js_seeders_holding_halves() {
    let (mut a, key, port_a) = js_split_seeder([HALF, SPLIT], 0x61);
    let (mut b, key_b, port_b) = js_split_seeder([0, HALF], 0x62);
    assert_eq!(key, key_b);
    rt().block_on(read_split_from(&[port_a, port_b], key));
    for peer in [&mut a, &mut b] {
        drain_until_closed(peer);
        assert_eq!(peer.wait(STEP), Some(true));
    }
}

/// One JS seeder and one Rust seeder, each holding half of the same core (same key pair, same
/// blocks, so the same signed tree), and a Rust reader that gets all of it.
#[test]
fn rust_reads_from_a_js_and_a_rust_seeder_holding_halves() {
    let (mut a, key, port_a) = js_split_seeder([HALF, SPLIT], 0x63);
    rt().block_on(async {
        let mut core = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[9; 32])),
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
        let blocks: Vec<Vec<u8>> = (0..SPLIT).map(|k| block("split", 0, k)).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        core.append(&refs).await.unwrap();
        assert_eq!(core.key(), &key, "Rust and JS derive the same core");
        core.clear(0, HALF).await.unwrap();
        let mut hub = ReplicationHub::new();
        hub.add_core(Replicator::new(core, Options::default()))
            .unwrap();
        let hub = SharedHub::new(hub);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port_r = listener.local_addr().unwrap().port();
        let seeder = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            replicate(socket, false, KeyPair::from_seed(&[0x64; 32]), &hub).await
        });
        read_split_from(&[port_a, port_r], key).await;
        tokio::time::timeout(STEP, seeder)
            .await
            .expect("Rust seeder closed in time")
            .unwrap()
            .expect("Rust seeder closed cleanly");
    });
    drain_until_closed(&mut a);
    assert_eq!(a.wait(STEP), Some(true));
}
