//! hypercore replication, live against JS: the Rust sans-IO stack (secret-stream → protomux →
//! [`ReplicationHub`] → [`Replicator`]) over a blocking `std::net::TcpStream` against a real JS
//! hypercore 11.37.1 replicating over @hyperswarm/secret-stream 6.9.2
//! (`tests/interop/replicate-peer.js`). Rust reads a JS-written core (full download, every block
//! verified, live appends followed) and JS reads a Rust-written core (including live appends).
//! Every step has a deadline and the node process is killed when a test ends.

use std::net::TcpListener;

use futures_executor::block_on;
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hypercore::{CreateOptions, Hypercore};
use hyperpunch_core::replication::{Event, HubEvent, Options, ReplicationHub, Replicator};
use hyperpunch_core::secretstream::{Options as StreamOptions, SecretStream};
use hyperpunch_core::storage::MemoryStorage;
use hyperpunch_tests::hub_driver::{entropy, js_client, js_server, Driver, STEP};
use serde_json::{json, Value};

const SCRIPT: &str = "replicate-peer.js";

/// Block `k` as the JS peer builds it.
fn block(k: u64) -> Vec<u8> {
    let mut b = format!("block {k} ").into_bytes();
    b.extend(std::iter::repeat_n(
        (k & 255) as u8,
        ((k * 37) % 3000) as usize,
    ));
    b
}

fn rust_reads_js_core(encryption_key: Option<[u8; 32]>) {
    const COUNT: u64 = 120;
    const LIVE: u64 = 3;
    let mut config = json!({
        "mode": "server", "role": "writer", "streamSeed": hex::encode([0x21; 32]),
        "seed": hex::encode([0x5a; 32]), "count": COUNT, "live": LIVE, "deadline": 40000,
    });
    if let Some(k) = encryption_key {
        config["encryptionKey"] = json!(hex::encode(k));
    }
    let (mut peer, socket, ready) = js_server(SCRIPT, config);
    let key: [u8; 32] = hex::decode(ready["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let core = block_on(Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key: Some(key),
            encryption_key,
            ..CreateOptions::default()
        },
    ))
    .unwrap();
    assert_eq!(
        hex::encode(core.discovery_key()),
        ready["discoveryKey"].as_str().unwrap()
    );
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(core, Options::default()))
        .unwrap();
    block_on(hub.replicator_mut(&dk).unwrap().download(0, 0, None)).unwrap();
    let stream = SecretStream::new_initiator(
        KeyPair::from_seed(&[0x12; 32]),
        entropy(1),
        StreamOptions::default(),
        0,
    )
    .unwrap();
    let mut d = Driver::new(socket, stream, hub);
    let total = COUNT + LIVE;
    d.pump_until("the full download incl. live appends", &mut peer, |d| {
        let c = d.hub.replicator(&dk).unwrap().core();
        c.length() == total && c.contiguous_length() == total
    });
    let c = d.hub.replicator(&dk).unwrap().core();
    block_on(c.verify_all()).unwrap();
    for k in 0..total {
        assert_eq!(block_on(c.get(k)).unwrap(), Some(block(k)), "block {k}");
    }
    assert_eq!(c.encrypted(), encryption_key.is_some());
    // Blocks arrived one verified proof at a time, and the live ones by upgrade.
    let blocks = d
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                HubEvent::Core {
                    event: Event::Block { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(blocks as u64, total);
    assert!(d.events.iter().any(|e| matches!(
        e,
        HubEvent::Core { event: Event::Upgraded { length, .. }, .. } if *length == total
    )));
    assert!(d.events.iter().all(|e| !matches!(
        e,
        HubEvent::Core {
            event: Event::InvalidData { .. } | Event::InvalidRequest { .. },
            ..
        }
    )));
    // Close: end our side, JS ends too.
    d.stream.end();
    d.pump_until("the clean close", &mut peer, |d| d.closed);
    let closed = peer.next_event("closed", STEP).unwrap();
    assert_eq!(closed["length"], json!(total));
    assert_eq!(peer.wait(STEP), Some(true));
}

#[test]
fn rust_reads_js_written_core() {
    rust_reads_js_core(None);
}

#[test]
fn rust_reads_js_written_encrypted_core() {
    rust_reads_js_core(Some([0x77; 32]));
}

#[test]
fn js_reads_rust_written_core() {
    const COUNT: u64 = 100;
    const LIVE: u64 = 2;
    let mut core = block_on(Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[0x3c; 32])),
            ..CreateOptions::default()
        },
    ))
    .unwrap();
    for k in 0..COUNT {
        block_on(core.append(&[&block(k)])).unwrap();
    }
    let key = *core.key();
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(core, Options::default()))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (mut peer, socket) = js_client(
        SCRIPT,
        json!({
            "mode": "client", "port": port, "role": "reader",
            "streamSeed": hex::encode([0x22; 32]), "key": hex::encode(key),
            "expect": COUNT + LIVE, "deadline": 40000,
        }),
        &listener,
    );
    let stream = SecretStream::new_responder(
        KeyPair::from_seed(&[0x13; 32]),
        entropy(2),
        StreamOptions::default(),
        0,
    )
    .unwrap();
    let mut d = Driver::new(socket, stream, hub);
    // Wait until the JS reader has upgraded to our length, then append live.
    d.pump_until("the JS reader to reach our length", &mut peer, |d| {
        d.events.iter().any(|e| {
            matches!(
                e,
                HubEvent::Core { event: Event::PeerSync { length, .. }, .. } if *length == COUNT
            )
        })
    });
    let now = d.now();
    let rep = d.hub.replicator_mut(&dk).unwrap();
    let live: Vec<Vec<u8>> = (COUNT..COUNT + LIVE).map(block).collect();
    let live: Vec<&[u8]> = live.iter().map(Vec::as_slice).collect();
    block_on(rep.append(now, &live)).unwrap();
    d.hub.flush();
    // JS downloads everything, prints it and ends the stream; we end ours in reply.
    d.pump_until("the JS reader to finish and close", &mut peer, |d| d.closed);
    // Everything JS printed up to its close: no verification or invalid-request complaints.
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
    let done = lines
        .iter()
        .find(|v| v["event"] == "done")
        .expect("JS finished");
    assert_eq!(done["length"], json!(COUNT + LIVE));
    let blocks = done["blocks"].as_array().unwrap();
    assert_eq!(blocks.len() as u64, COUNT + LIVE);
    for (k, b) in blocks.iter().enumerate() {
        assert_eq!(
            hex::decode(b.as_str().unwrap()).unwrap(),
            block(k as u64),
            "block {k}"
        );
    }
    let closed = lines.last().unwrap();
    assert_eq!(closed["error"], Value::Null, "{closed}");
    assert_eq!(peer.wait(STEP), Some(true));
}
