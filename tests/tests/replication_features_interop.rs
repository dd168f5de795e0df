//! hypercore replication features, live against JS over TCP loopback: the Rust sans-IO stack
//! (secret-stream → protomux → [`ReplicationHub`] → [`Replicator`]) and a real JS hypercore 11
//! (`tests/interop/replicate-features-peer.js`).
//! * A Rust reader seeks into a JS-written core (through an upgrade carrying the seek and through
//!   `hash` requests, downloading no block) and gets JS's own `core.seek` answers; it fetches
//!   tree hashes at shorter lengths (`hash` requests for the roots) equal to JS's `core.treeHash`.
//! * A JS reader seeks into a Rust-served core and gets the answers the block sizes dictate.
//! * A Rust core and a JS core signed by the same key pair over different blocks (a forked
//!   writer) meet: Rust's failed upgrade leads to a conflict check (request id 0) that JS
//!   answers; both sides detect the conflict and close the core's channel. Ours stores the
//!   conflict with the core: reopened, it refuses to append.
//! * A Rust reader follows a JS writer's truncation onto the new fork, finding the fork point
//!   with `hash` requests and keeping every block before it.
//! * A Rust reader of an empty JS core gets its manifest through a manifest-only request.
//! * User extension messages go both ways (JS echoes them), with the repeated-name compression.
//! * Push mode both ways: a JS writer's `replicator.push` reaches a Rust reader that allows
//!   pushes (push-only: it sends JS no request at all; or sparse: it asks for no block and holds
//!   exactly the pushed ones), appended blocks arriving with their upgrades; a Rust writer's
//!   [`Replicator::push`] reaches a JS reader created with `allowPush` (push-only, or taking
//!   its own upgrades meanwhile, which the writer starts where its pushes ended), which verifies
//!   and holds every block.
//!
//! Every step has a deadline and the node process is killed when a test ends.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use futures_executor::block_on;
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hypercore::{
    Conflict, CreateOptions, Hypercore, HypercoreError, OpenOptions, ProofError,
};
use hyperpunch_core::replication::{
    Event, HubEvent, Options, PeerId, ReplicationError, ReplicationHub, Replicator, SeekId,
    TreeHashId,
};
use hyperpunch_core::secretstream::{Options as StreamOptions, SecretStream};
use hyperpunch_core::storage::MemoryStorage;
use hyperpunch_tests::hub_driver::{
    entropy, js_client, js_server, key_of, lines_until_closed, no_complaints, Driver, STEP,
};
use hyperpunch_tests::node_peer::NodePeer;
use serde_json::{json, Value};

const SCRIPT: &str = "replicate-features-peer.js";
const COUNT: u64 = 200;
/// Lengths whose tree hash a Rust reader fetches from a JS writer.
const TREE_HASH_LENGTHS: &[u64] = &[1, 2, 7, 64, 133, 199, COUNT];

/// Block `k` as the JS peer builds it.
fn block(k: u64) -> Vec<u8> {
    let mut b = format!("block {k} ").into_bytes();
    b.extend(std::iter::repeat_n(
        (k & 255) as u8,
        ((k * 37) % 3000) as usize,
    ));
    b
}

/// Byte offsets to seek in a core of [`COUNT`] blocks: both ends, block boundaries, and bytes
/// inside blocks spread over the core.
fn offsets() -> Vec<u64> {
    let sizes: Vec<u64> = (0..COUNT).map(|k| block(k).len() as u64).collect();
    let total: u64 = sizes.iter().sum();
    let upto = |n: usize| sizes[..n].iter().sum::<u64>();
    vec![
        total / 3,
        0,
        1,
        upto(1),
        upto(64),
        upto(64) + 5,
        upto(133) - 1,
        total / 2 + 17,
        (total / 7) * 6,
        total - 1,
        total,
    ]
}

/// `[index, offset]` of user byte `bytes` from the block sizes alone.
fn expected(bytes: u64) -> Value {
    let mut rem = bytes;
    for k in 0..COUNT {
        let s = block(k).len() as u64;
        if rem < s {
            return json!([k, rem]);
        }
        rem -= s;
    }
    assert_eq!(rem, 0);
    json!([COUNT, 0])
}

fn seek_results(events: &[HubEvent]) -> Vec<(SeekId, Value)> {
    events
        .iter()
        .filter_map(|e| match e {
            HubEvent::Core {
                event: Event::Seek { id, index, offset },
                ..
            } => Some((*id, json!([index, offset]))),
            _ => None,
        })
        .collect()
}

#[test]
fn rust_seeks_into_js_written_core() {
    let offsets = offsets();
    let (mut peer, socket, ready) = js_server(
        SCRIPT,
        json!({
            "mode": "server", "role": "writer", "streamSeed": hex::encode([0x31; 32]),
            "seed": hex::encode([0x6b; 32]), "count": COUNT, "seeks": offsets,
            "treeHashes": TREE_HASH_LENGTHS, "deadline": 30000,
        }),
    );
    let js_seeks = ready["seeks"].as_array().unwrap().clone();
    for (bytes, js) in offsets.iter().zip(&js_seeks) {
        assert_eq!(js, &expected(*bytes), "JS seek of byte {bytes}");
    }
    let key = key_of(&ready);
    let (mut hub, dk) = reader_hub(key, Options::default());
    // The first seek is asked before we know the length: it rides on the upgrade request.
    let first = block_on(hub.replicator_mut(&dk).unwrap().seek(0, offsets[0])).unwrap();
    let mut d = Driver::initiator(socket, hub, 0x14, 3);
    d.pump_until("the upgrade and the first seek", &mut peer, |d| {
        !seek_results(&d.events).is_empty()
    });
    assert_eq!(d.hub.replicator(&dk).unwrap().core().length(), COUNT);
    // The rest once upgraded: through `hash` requests for the subtrees we lack.
    let mut ids = vec![first];
    for &bytes in &offsets[1..] {
        let now = d.now();
        ids.push(block_on(d.hub.replicator_mut(&dk).unwrap().seek(now, bytes)).unwrap());
        d.hub.flush();
    }
    d.pump_until("every seek", &mut peer, |d| {
        seek_results(&d.events).len() == ids.len()
    });
    let got = seek_results(&d.events);
    for (i, id) in ids.iter().enumerate() {
        let (_, v) = got.iter().find(|(g, _)| g == id).unwrap();
        assert_eq!(v, &js_seeks[i], "byte {}", offsets[i]);
    }
    // Tree hashes at shorter lengths, through `hash` requests for the roots we lack.
    let mut hash_ids = Vec::new();
    for &length in TREE_HASH_LENGTHS {
        let now = d.now();
        hash_ids.push(block_on(d.hub.replicator_mut(&dk).unwrap().tree_hash(now, length)).unwrap());
        d.hub.flush();
    }
    let tree_hashes = |events: &[HubEvent]| -> Vec<(TreeHashId, u64, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                HubEvent::Core {
                    event: Event::TreeHash { id, length, hash },
                    ..
                } => Some((*id, *length, hex::encode(hash))),
                _ => None,
            })
            .collect()
    };
    d.pump_until("every tree hash", &mut peer, |d| {
        tree_hashes(&d.events).len() == hash_ids.len()
    });
    let got = tree_hashes(&d.events);
    for (i, id) in hash_ids.iter().enumerate() {
        let (_, length, hash) = got.iter().find(|(g, _, _)| g == id).unwrap();
        assert_eq!(*length, TREE_HASH_LENGTHS[i]);
        assert_eq!(
            hash,
            ready["treeHashes"][i].as_str().unwrap(),
            "length {length}"
        );
    }
    let c = d.hub.replicator(&dk).unwrap().core();
    assert_eq!(
        c.bitfield().count(0, COUNT, true),
        0,
        "no block was downloaded"
    );
    assert!(no_complaints(&d.events), "{:?}", d.events);
    let closed = d.close(&mut peer);
    assert_eq!(closed["error"], Value::Null, "{closed}");
    assert_eq!(peer.wait(STEP), Some(true));
}

#[test]
fn js_seeks_into_rust_served_core() {
    let offsets = offsets();
    let mut core = block_on(Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[0x4d; 32])),
            ..CreateOptions::default()
        },
    ))
    .unwrap();
    let blocks: Vec<Vec<u8>> = (0..COUNT).map(block).collect();
    let blocks: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
    block_on(core.append(&blocks)).unwrap();
    let key = *core.key();
    let mut hub = ReplicationHub::new();
    hub.add_core(Replicator::new(core, Options::default()))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (mut peer, socket) = js_client(
        SCRIPT,
        json!({
            "mode": "client", "port": port, "role": "reader",
            "streamSeed": hex::encode([0x32; 32]), "key": hex::encode(key),
            "expect": COUNT, "seeks": offsets, "deadline": 30000,
        }),
        &listener,
    );
    let stream = SecretStream::new_responder(
        KeyPair::from_seed(&[0x15; 32]),
        entropy(4),
        StreamOptions::default(),
        0,
    )
    .unwrap();
    let mut d = Driver::new(socket, stream, hub);
    // JS seeks, prints its answers and ends the stream; we end ours in reply.
    d.pump_until("the JS reader to seek and close", &mut peer, |d| d.closed);
    let mut lines = Vec::new();
    loop {
        let v = peer.next(STEP).unwrap();
        let event = v["event"].as_str().unwrap_or_default().to_owned();
        lines.push(v);
        if event == "closed" {
            break;
        }
    }
    assert!(
        lines
            .iter()
            .all(|v| v["event"] != "verification-error" && v["event"] != "invalid-request"),
        "{lines:?}"
    );
    let seeked = lines
        .iter()
        .find(|v| v["event"] == "seeked")
        .unwrap_or_else(|| panic!("JS never finished seeking: {lines:?}"));
    assert_eq!(seeked["length"], json!(COUNT));
    let got = seeked["seeks"].as_array().unwrap();
    assert_eq!(got.len(), offsets.len());
    for (bytes, v) in offsets.iter().zip(got) {
        assert_eq!(v, &expected(*bytes), "byte {bytes}");
    }
    assert!(no_complaints(&d.events), "{:?}", d.events);
    assert_eq!(lines.last().unwrap()["error"], Value::Null);
    assert_eq!(peer.wait(STEP), Some(true));
}

#[test]
fn forked_writer_conflict_is_detected_on_both_sides() {
    const SEED: [u8; 32] = [0x7e; 32];
    let (mut peer, socket, ready) = js_server(
        SCRIPT,
        json!({
            "mode": "server", "role": "writer", "streamSeed": hex::encode([0x33; 32]),
            "seed": hex::encode(SEED), "count": 6, "deadline": 30000,
        }),
    );
    // Same key pair, other blocks: a second signed tree of the same core.
    let mut core = block_on(Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&SEED)),
            ..CreateOptions::default()
        },
    ))
    .unwrap();
    for k in 0..5u64 {
        block_on(core.append(&[format!("fork {k}").as_bytes()])).unwrap();
    }
    assert_eq!(hex::encode(core.key()), ready["key"].as_str().unwrap());
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(core, Options::default()))
        .unwrap();
    let mut d = Driver::initiator(socket, hub, 0x16, 5);
    // JS's upgrade 5 → 6 cannot verify on our tree; its answer to our check proves its tree.
    d.pump_until("the conflict", &mut peer, |d| {
        d.hub.replicator(&dk).unwrap().is_frozen()
    });
    assert!(d.events.iter().any(|e| matches!(
        e,
        HubEvent::Core {
            event: Event::Conflict { length: 5, .. },
            ..
        }
    )));
    d.pump_until("the core's channel to close", &mut peer, |d| {
        d.events.iter().any(|e| {
            matches!(
                e,
                HubEvent::ChannelClosed { discovery_key, error: Some(ReplicationError::Conflict { length: 5 }), .. }
                    if *discovery_key == dk
            )
        })
    });
    // JS detected it too, from the proof we sent before closing.
    let deadline = Instant::now() + STEP;
    let conflict = loop {
        d.step(Duration::from_millis(20));
        if let Ok(v) = peer.next(Duration::from_millis(1)) {
            if v["event"] == "conflict" {
                break v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "JS never reported the conflict: {}",
            peer.stderr()
        );
    };
    assert_eq!(conflict["length"], json!(5));
    let c = d.hub.replicator(&dk).unwrap().core();
    assert_eq!(c.length(), 5);
    block_on(c.verify_all()).unwrap();
    // The conflict is stored with our core: reopened, it still refuses to append.
    assert_eq!(c.conflict(), Some(Conflict { length: 5, fork: 0 }));
    let mut reopened =
        block_on(Hypercore::open(c.storage().clone(), OpenOptions::default())).unwrap();
    assert_eq!(reopened.conflict(), Some(Conflict { length: 5, fork: 0 }));
    assert_eq!(
        block_on(reopened.append(&[b"fork 5"])).unwrap_err(),
        HypercoreError::Conflict { length: 5, fork: 0 }
    );
    d.stream.end();
    d.pump_until("the close", &mut peer, |d| d.closed);
    peer.next_event("closed", STEP).unwrap();
    assert_eq!(peer.wait(STEP), Some(true));
}

#[test]
fn rust_reader_follows_a_js_truncation_keeping_the_shared_prefix() {
    const LEN: u64 = 40;
    const CUT: u64 = 23;
    const ADDED: u64 = 6;
    let (mut peer, socket, ready) = js_server(
        SCRIPT,
        json!({
            "mode": "server", "role": "writer", "streamSeed": hex::encode([0x34; 32]),
            "seed": hex::encode([0x2f; 32]), "count": LEN,
            "truncate": { "at": CUT, "append": ADDED }, "deadline": 30000,
        }),
    );
    let key = key_of(&ready);
    let (mut hub, dk) = reader_hub(key, Options::default());
    block_on(hub.replicator_mut(&dk).unwrap().download(0, 0, None)).unwrap();
    let mut d = Driver::initiator(socket, hub, 0x17, 6);
    d.pump_until("the first download", &mut peer, |d| {
        let c = d.hub.replicator(&dk).unwrap().core();
        c.fork() == 0 && c.contiguous_length() == LEN
    });
    let total = CUT + ADDED;
    d.pump_until("the reorg onto JS's new fork", &mut peer, |d| {
        let c = d.hub.replicator(&dk).unwrap().core();
        c.fork() == 1 && c.length() == total && c.contiguous_length() == total
    });
    // After the reorg only the blocks past the fork point were fetched again.
    let reorg_at = d
        .events
        .iter()
        .position(|e| {
            matches!(
                e,
                HubEvent::Core {
                    event: Event::Reorg { fork: 1, .. },
                    ..
                }
            )
        })
        .expect("a reorg event");
    let refetched: Vec<u64> = d.events[reorg_at..]
        .iter()
        .filter_map(|e| match e {
            HubEvent::Core {
                event: Event::Block { index, .. },
                ..
            } => Some(*index),
            _ => None,
        })
        .collect();
    let mut sorted = refetched.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (CUT..total).collect::<Vec<u64>>());
    let c = d.hub.replicator(&dk).unwrap().core();
    block_on(c.verify_all()).unwrap();
    for k in 0..total {
        let want = if k < CUT {
            block(k)
        } else {
            format!("fork {k}").into_bytes()
        };
        assert_eq!(block_on(c.get(k)).unwrap(), Some(want), "block {k}");
    }
    assert!(no_complaints(&d.events), "{:?}", d.events);
    let closed = d.close(&mut peer);
    assert_eq!(closed["length"], json!(total));
    assert_eq!(peer.wait(STEP), Some(true));
}

#[test]
fn rust_reader_gets_the_manifest_of_an_empty_js_core() {
    let (mut peer, socket, ready) = js_server(
        SCRIPT,
        json!({
            "mode": "server", "role": "writer", "streamSeed": hex::encode([0x35; 32]),
            "seed": hex::encode([0x3e; 32]), "count": 0, "deadline": 30000,
        }),
    );
    assert_eq!(ready["length"], json!(0));
    let key = key_of(&ready);
    let (hub, dk) = reader_hub(key, Options::default());
    assert!(hub.replicator(&dk).unwrap().core().manifest().is_none());
    let mut d = Driver::initiator(socket, hub, 0x18, 7);
    // Nothing to upgrade to: the manifest comes from a request of its own.
    d.pump_until("the manifest", &mut peer, |d| {
        d.hub.replicator(&dk).unwrap().core().manifest().is_some()
    });
    let c = d.hub.replicator(&dk).unwrap().core();
    assert_eq!(c.manifest().unwrap().key(), key);
    assert_eq!(c.length(), 0);
    assert!(no_complaints(&d.events), "{:?}", d.events);
    d.close(&mut peer);
    assert_eq!(peer.wait(STEP), Some(true));
}

#[test]
fn extension_messages_round_trip_with_js() {
    let (mut peer, socket, ready) = js_server(
        SCRIPT,
        json!({
            "mode": "server", "role": "writer", "streamSeed": hex::encode([0x36; 32]),
            "seed": hex::encode([0x4a; 32]), "count": 1, "extension": "hp-echo", "deadline": 30000,
        }),
    );
    let key = key_of(&ready);
    let core = block_on(Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key: Some(key),
            ..CreateOptions::default()
        },
    ))
    .unwrap();
    let mut rep = Replicator::new(core, Options::default());
    rep.register_extension("hp-echo");
    let mut hub = ReplicationHub::new();
    let dk = hub.add_core(rep).unwrap();
    let mut d = Driver::initiator(socket, hub, 0x19, 8);
    d.pump_until("the channel", &mut peer, |d| {
        d.events
            .iter()
            .any(|e| matches!(e, HubEvent::ChannelOpened { .. }))
    });
    let js = d
        .events
        .iter()
        .find_map(|e| match e {
            HubEvent::ChannelOpened { peer, .. } => Some(*peer),
            _ => None,
        })
        .unwrap();
    // The second message goes out with the empty "same name as before" name.
    for m in [&b"hello"[..], b"again", b"\x00\xffbytes"] {
        let rep = d.hub.replicator_mut(&dk).unwrap();
        rep.send_extension(js, "hp-echo", m).unwrap();
        d.hub.flush();
    }
    let echoes = |events: &[HubEvent]| -> Vec<Vec<u8>> {
        events
            .iter()
            .filter_map(|e| match e {
                HubEvent::Core {
                    event: Event::Extension { name, message, .. },
                    ..
                } if name == "hp-echo" => Some(message.clone()),
                _ => None,
            })
            .collect()
    };
    d.pump_until("three echoes", &mut peer, |d| echoes(&d.events).len() == 3);
    assert_eq!(
        echoes(&d.events),
        [
            b"echo:hello".to_vec(),
            b"echo:again".to_vec(),
            b"echo:\x00\xffbytes".to_vec()
        ]
    );
    for want in ["hello", "again"] {
        let v = peer.next_event("extension", STEP).unwrap();
        assert_eq!(v["message"], json!(want));
    }
    d.stream.end();
    d.pump_until("the clean close", &mut peer, |d| d.closed);
    assert_eq!(peer.wait(STEP), Some(true));
}

/// A Rust reader hub for `key` with `opts`.
fn reader_hub(key: [u8; 32], opts: Options) -> (ReplicationHub<MemoryStorage>, [u8; 32]) {
    let core = block_on(Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key: Some(key),
            ..CreateOptions::default()
        },
    ))
    .unwrap();
    let mut hub = ReplicationHub::new();
    let dk = hub.add_core(Replicator::new(core, opts)).unwrap();
    (hub, dk)
}

/// Indexes of the blocks `events` report as downloaded.
fn downloaded(events: &[HubEvent]) -> Vec<u64> {
    let mut v: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            HubEvent::Core {
                event: Event::Block { index, .. },
                ..
            } => Some(*index),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    v
}

/// A JS writer pushes all its blocks, then appends five more pushing each, to a Rust reader in
/// push-only mode: it ends with every block verified, and JS received no request from it.
#[test]
fn js_writer_pushes_to_a_push_only_rust_reader() {
    const N: u64 = 60;
    let (mut peer, socket, ready) = js_server(
        SCRIPT,
        json!({
            "mode": "server", "role": "writer", "streamSeed": hex::encode([0x37; 32]),
            "seed": hex::encode([0x51; 32]), "count": N,
            "push": { "blocks": (0..N).collect::<Vec<u64>>(), "append": 5 }, "deadline": 30000,
        }),
    );
    let opts = Options {
        allow_push: true,
        push_only: true,
        ..Options::default()
    };
    let (hub, dk) = reader_hub(key_of(&ready), opts);
    let mut d = Driver::initiator(socket, hub, 0x1a, 9);
    let total = N + 5;
    d.pump_until("every pushed block", &mut peer, |d| {
        let c = d.hub.replicator(&dk).unwrap().core();
        c.length() == total && c.contiguous_length() == total
    });
    let pushed = peer.next_event("pushed", STEP).unwrap();
    assert_eq!(pushed["length"], json!(total));
    let c = d.hub.replicator(&dk).unwrap().core();
    block_on(c.verify_all()).unwrap();
    for k in 0..total {
        assert_eq!(block_on(c.get(k)).unwrap(), Some(block(k)), "block {k}");
    }
    assert_eq!(downloaded(&d.events), (0..total).collect::<Vec<u64>>());
    assert!(no_complaints(&d.events), "{:?}", d.events);
    let closed = d.close(&mut peer);
    assert_eq!(closed["error"], Value::Null, "{closed}");
    assert_eq!(closed["requestsReceived"], json!(0), "{closed}");
    assert_eq!(peer.wait(STEP), Some(true));
}

/// A Rust reader that allows pushes but wants no block takes its upgrades by request and the
/// blocks JS pushes (a sparse few, then appended ones): it holds exactly those, and JS got no
/// block request.
#[test]
fn js_writer_pushes_a_sparse_set_to_a_rust_reader() {
    const N: u64 = 80;
    let sparse: Vec<u64> = vec![0, 5, 17, 33, 64, 79];
    let (mut peer, socket, ready) = js_server(
        SCRIPT,
        json!({
            "mode": "server", "role": "writer", "streamSeed": hex::encode([0x38; 32]),
            "seed": hex::encode([0x52; 32]), "count": N,
            "push": { "blocks": sparse, "append": 3 }, "deadline": 30000,
        }),
    );
    let opts = Options {
        allow_push: true,
        ..Options::default()
    };
    let (hub, dk) = reader_hub(key_of(&ready), opts);
    let mut d = Driver::initiator(socket, hub, 0x1b, 10);
    let total = N + 3;
    let want: Vec<u64> = sparse.iter().copied().chain(N..total).collect();
    d.pump_until("the pushed blocks", &mut peer, |d| {
        let c = d.hub.replicator(&dk).unwrap().core();
        c.length() == total && want.iter().all(|&k| c.has(k))
    });
    peer.next_event("pushed", STEP).unwrap();
    let c = d.hub.replicator(&dk).unwrap().core();
    assert_eq!(c.bitfield().count(0, total, true), want.len() as u64);
    for &k in &want {
        assert_eq!(block_on(c.get(k)).unwrap(), Some(block(k)), "block {k}");
    }
    assert_eq!(downloaded(&d.events), want);
    assert!(no_complaints(&d.events), "{:?}", d.events);
    let closed = d.close(&mut peer);
    assert_eq!(closed["error"], Value::Null, "{closed}");
    assert_eq!(closed["blockRequestsReceived"], json!(0), "{closed}");
    assert_eq!(peer.wait(STEP), Some(true));
}

/// A Rust writer serving `count` blocks to a JS client reader started with `js` (plus the
/// common fields); returns the driver, the JS peer's handle and the core's discovery key once
/// JS's `sync` allowed pushes.
fn rust_writer_to_js_reader(
    seed: u8,
    count: u64,
    js: Value,
) -> (Driver, NodePeer, PeerId, [u8; 32]) {
    let mut core = block_on(Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[seed; 32])),
            ..CreateOptions::default()
        },
    ))
    .unwrap();
    let blocks: Vec<Vec<u8>> = (0..count).map(block).collect();
    let blocks: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
    block_on(core.append(&blocks)).unwrap();
    let key = *core.key();
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(core, Options::default()))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = json!({
        "mode": "client", "port": port, "role": "reader", "key": hex::encode(key),
        "streamSeed": hex::encode([seed ^ 0x80; 32]), "allowPush": true, "received": true,
        "deadline": 30000,
    });
    for (k, v) in js.as_object().unwrap() {
        config[k] = v.clone();
    }
    let (mut peer, socket) = js_client(SCRIPT, config, &listener);
    let stream = SecretStream::new_responder(
        KeyPair::from_seed(&[seed; 32]),
        entropy(seed),
        StreamOptions::default(),
        0,
    )
    .unwrap();
    let mut d = Driver::new(socket, stream, hub);
    d.pump_until("JS to allow pushes", &mut peer, |d| {
        let rep = d.hub.replicator(&dk).unwrap();
        rep.peers()
            .any(|p| rep.peer_info(p).is_some_and(|i| i.remote_allow_push))
    });
    let js_peer = {
        let rep = d.hub.replicator(&dk).unwrap();
        rep.peers().next().unwrap()
    };
    (d, peer, js_peer, dk)
}

/// What the JS reader printed once it held every block: no verification error, every block
/// as written; returns its `received` line.
fn js_received(d: &mut Driver, peer: &mut NodePeer, total: u64) -> Value {
    d.pump_until("the JS reader to get every block and close", peer, |d| {
        d.closed
    });
    let lines = lines_until_closed(peer);
    assert!(
        lines
            .iter()
            .all(|v| v["event"] != "verification-error" && v["event"] != "invalid-request"),
        "{lines:?}"
    );
    let received = lines
        .iter()
        .find(|v| v["event"] == "received")
        .unwrap_or_else(|| panic!("JS never held every block: {lines:?}"))
        .clone();
    assert_eq!(received["length"], json!(total), "{received}");
    assert_eq!(received["mismatched"], json!([]), "{received}");
    assert_eq!(lines.last().unwrap()["error"], Value::Null);
    assert_eq!(peer.wait(STEP), Some(true));
    assert!(no_complaints(&d.events), "{:?}", d.events);
    received
}

/// A Rust writer pushes every block, then appends five more pushing each (with upgrades), to a
/// JS reader created with `allowPush` and `pushOnly`: JS verifies and holds them all without
/// sending a single request.
#[test]
fn rust_writer_pushes_to_a_push_only_js_reader() {
    const N: u64 = 60;
    let total = N + 5;
    let (mut d, mut peer, js, dk) =
        rust_writer_to_js_reader(0x5c, N, json!({ "pushOnly": true, "expect": total }));
    for k in 0..N {
        let rep = d.hub.replicator_mut(&dk).unwrap();
        assert_eq!(block_on(rep.push(k)).unwrap(), 1, "block {k}");
        d.hub.flush();
    }
    for k in N..total {
        let now = d.now();
        let rep = d.hub.replicator_mut(&dk).unwrap();
        block_on(rep.append(now, &[&block(k)])).unwrap();
        assert_eq!(block_on(rep.push(k)).unwrap(), 1, "block {k}");
        d.hub.flush();
        d.step(Duration::from_millis(5));
    }
    assert_eq!(
        d.hub
            .replicator(&dk)
            .unwrap()
            .peer_info(js)
            .unwrap()
            .pushed_length,
        total
    );
    let received = js_received(&mut d, &mut peer, total);
    assert_eq!(received["requestsSent"], json!(0), "{received}");
}

/// A Rust writer appends and pushes while a JS reader (`allowPush`, not push-only) asks for its
/// own upgrades: JS verifies while more arrives, so its requests can start below what we
/// pushed; we answer them from where our pushes ended and JS never fails to verify. The blocks
/// JS was not pushed at first are pushed at the end.
#[test]
fn rust_writer_pushes_while_a_js_reader_upgrades() {
    const N: u64 = 20;
    const ROUNDS: u64 = 15;
    let total = N + 2 * ROUNDS;
    let (mut d, mut peer, js, dk) = rust_writer_to_js_reader(0x5d, N, json!({ "expect": total }));
    for k in (0..N).step_by(3) {
        let rep = d.hub.replicator_mut(&dk).unwrap();
        block_on(rep.push(k)).unwrap();
        d.hub.flush();
    }
    // Each round: append a block and push it, append another (its `sync` may reach JS while it
    // still verifies the push), then wait for JS to catch up.
    for r in 0..ROUNDS {
        let k = N + 2 * r;
        let now = d.now();
        let rep = d.hub.replicator_mut(&dk).unwrap();
        block_on(rep.append(now, &[&block(k)])).unwrap();
        block_on(rep.push(k)).unwrap();
        block_on(rep.append(now, &[&block(k + 1)])).unwrap();
        d.hub.flush();
        d.pump_until("JS to take the new length", &mut peer, |d| {
            let rep = d.hub.replicator(&dk).unwrap();
            rep.peer_info(js).unwrap().remote_length == k + 2
        });
    }
    // The rest (no upgrade needed any more).
    for k in 0..total {
        let rep = d.hub.replicator_mut(&dk).unwrap();
        block_on(rep.push(k)).unwrap();
        d.hub.flush();
    }
    let received = js_received(&mut d, &mut peer, total);
    assert!(received["requestsSent"].as_u64().unwrap() > 0, "{received}");
}

/// A Rust reader that allows pushes comes back, holding 30 blocks, to a JS writer (a new
/// process, so nothing pushed yet) that has grown to 50 and pushes 40..50 a little later. JS
/// moves the start of our upgrade request back to what it pushed (0): such a proof, from below
/// our length, cannot show our tree is part of the new one (JS's own verifier fails on it too)
/// and is refused without pausing JS (no block or length is taken on trust); the next upgrade
/// request goes through. The reader ends at 50 with its old blocks and the pushed ones, every
/// one verified. (Had JS pushed before it answered, its pushes would build on the refused
/// upgrade and fail to verify: JS readers lose them too.)
#[test]
fn rust_reader_that_allows_pushes_rejoins_a_js_writer() {
    const SEED: [u8; 32] = [0x53; 32];
    let storage = MemoryStorage::new();
    let mut key = [0u8; 32];
    for (round, (count, push)) in [(30u64, None), (50, Some((40..50).collect::<Vec<u64>>()))]
        .into_iter()
        .enumerate()
    {
        let mut config = json!({
            "mode": "server", "role": "writer",
            "streamSeed": hex::encode([0x39 + round as u8; 32]),
            "seed": hex::encode(SEED), "count": count, "deadline": 30000,
        });
        if let Some(blocks) = &push {
            config["push"] = json!({ "blocks": blocks, "delay": 1000 });
        }
        let (mut peer, socket, ready) = js_server(SCRIPT, config);
        key = key_of(&ready);
        let core = if round == 0 {
            block_on(Hypercore::create(
                storage.clone(),
                CreateOptions {
                    key: Some(key),
                    ..CreateOptions::default()
                },
            ))
        } else {
            block_on(Hypercore::open(storage.clone(), OpenOptions::default()))
        }
        .unwrap();
        let opts = Options {
            allow_push: true,
            ..Options::default()
        };
        let mut rep = Replicator::new(core, opts);
        if round == 0 {
            block_on(rep.download(0, 0, Some(count))).unwrap();
        }
        let mut hub = ReplicationHub::new();
        let dk = hub.add_core(rep).unwrap();
        let mut d = Driver::initiator(socket, hub, 0x1c + round as u8, 11 + round as u8);
        let want: Vec<u64> = match &push {
            None => (0..count).collect(),
            Some(p) => (0..30).chain(p.iter().copied()).collect(),
        };
        d.pump_until("the blocks", &mut peer, |d| {
            let c = d.hub.replicator(&dk).unwrap().core();
            c.length() == count && want.iter().all(|&k| c.has(k))
        });
        if push.is_some() {
            peer.next_event("pushed", STEP).unwrap();
        }
        let rep = d.hub.replicator(&dk).unwrap();
        let c = rep.core();
        assert_eq!(c.bitfield().count(0, count, true), want.len() as u64);
        block_on(c.verify_all()).unwrap();
        for &k in &want {
            assert_eq!(block_on(c.get(k)).unwrap(), Some(block(k)), "block {k}");
        }
        assert!(!rep.is_frozen());
        for e in &d.events {
            match e {
                HubEvent::Core {
                    event: Event::InvalidData { error, .. },
                    ..
                } => assert!(
                    matches!(
                        error,
                        HypercoreError::InvalidProof(ProofError::Unverifiable(_))
                    ),
                    "{error:?}"
                ),
                HubEvent::Core {
                    event: Event::InvalidRequest { .. } | Event::Conflict { .. },
                    ..
                } => panic!("{e:?}"),
                _ => {}
            }
        }
        let js = rep.peers().next().unwrap();
        assert!(!rep.peer_info(js).unwrap().paused);
        // JS answered our first upgrade request from 0 (it had pushed nothing yet): refused,
        // once; the pushes, a second later, found us at 50.
        let refused = if round == 0 { 0 } else { 1 };
        assert_eq!(rep.peer_info(js).unwrap().invalid_data, refused);
        let closed = d.close(&mut peer);
        assert_eq!(closed["error"], Value::Null, "{closed}");
        let block_requests = closed["blockRequestsReceived"].as_u64().unwrap();
        if round == 0 {
            assert!(block_requests >= count, "{closed}");
        } else {
            assert_eq!(block_requests, 0, "{closed}");
        }
        assert_eq!(peer.wait(STEP), Some(true));
    }
    assert_ne!(key, [0u8; 32]);
}
