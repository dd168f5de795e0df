//! What a core's state tells its peers, live against a JS hypercore 11 over TCP loopback
//! (`tests/interop/replicate-features-peer.js`), the Rust side pumped by
//! [`hyperpunch_tests::hub_driver::Driver`]:
//! * **downloading**: a Rust reader that allows pushes but is not downloading says so in its
//!   `sync` (`downloading` and `allowPush` off, as JS `isDownloading` / `isAllowingPush`), and a
//!   JS writer pushes it nothing; once it downloads, JS hears `allowPush` and pushes. Turned off
//!   again, `allowPush` goes at once and `downloading` after the linger.
//! * **pushed batches**: the blocks JS pushes are verified and stored like requested ones, the
//!   pushes of one socket read in one storage write (JS sends each with the manifest while it
//!   thinks our core is empty).
//!
//! Every step has a deadline and the node process is killed when a test ends.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_executor::block_on;
use hyperpunch_core::hypercore::{layout, CreateOptions, Hypercore};
use hyperpunch_core::replication::{Options, ReplicationHub, Replicator};
use hyperpunch_core::storage::{Batch, Instrumented, MemoryStorage, Op, Storage};
use hyperpunch_tests::hub_driver::{js_server, key_of, no_complaints, Driver, STEP};
use hyperpunch_tests::node_peer::NodePeer;
use serde_json::{json, Value};

const SCRIPT: &str = "replicate-features-peer.js";

/// Block `k` as the JS peer builds it.
fn block(k: u64) -> Vec<u8> {
    let mut b = format!("block {k} ").into_bytes();
    b.extend(std::iter::repeat_n(
        (k & 255) as u8,
        ((k * 37) % 3000) as usize,
    ));
    b
}

/// A [`MemoryStorage`], and how many blocks each of its writes stores (writes of none left out).
fn counting_block_writes() -> (Instrumented<MemoryStorage>, Arc<Mutex<Vec<usize>>>) {
    let storage = Instrumented::new(MemoryStorage::new());
    let writes = Arc::new(Mutex::new(Vec::new()));
    let w = writes.clone();
    storage.observe(move |batch: &Batch| {
        let blocks = batch
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Put(k, _) | Op::PutParts(k, _) if k.first() == Some(&layout::BLOCK)))
            .count();
        if blocks > 0 {
            w.lock().unwrap().push(blocks);
        }
    });
    (storage, writes)
}

/// Pump `d` until the node peer prints a line with `event`; every line it printed on the way
/// goes to `lines`.
fn pump_until_line<S: Storage>(
    d: &mut Driver<S>,
    peer: &mut NodePeer,
    event: &str,
    lines: &mut Vec<Value>,
) -> Value {
    let deadline = Instant::now() + STEP;
    loop {
        while let Ok(v) = peer.next(Duration::from_millis(1)) {
            lines.push(v.clone());
            if v["event"] == event {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {event} line; node printed {lines:?}; stderr:\n{}",
            peer.stderr()
        );
        d.step(Duration::from_millis(10));
    }
}

/// The flags of a `remote-sync` line.
fn flags(line: &Value) -> (bool, bool) {
    (
        line["downloading"].as_bool().unwrap(),
        line["allowPush"].as_bool().unwrap(),
    )
}

/// A Rust reader that allows pushes but is not downloading: JS hears neither `downloading` nor
/// `allowPush` and waits. Turned on, JS hears both and pushes all 200 blocks while we do not
/// read; we then take them in a few socket reads and store each read's pushes in one write
/// (the first, carrying the upgrade, alone), every block verified. Turned off again (300 ms
/// linger), JS hears `allowPush` go at once and `downloading` after the linger.
#[test]
fn js_pushes_only_while_a_rust_reader_downloads_and_its_pushes_are_stored_in_batches() {
    const N: u64 = 200;
    let (mut peer, socket, ready) = js_server(
        SCRIPT,
        json!({
            "mode": "server", "role": "writer", "streamSeed": hex::encode([0x61; 32]),
            "seed": hex::encode([0x62; 32]), "count": N,
            "push": { "blocks": (0..N).collect::<Vec<u64>>() },
            "reportSync": true, "deadline": 30000,
        }),
    );
    let (storage, block_writes) = counting_block_writes();
    let core = block_on(Hypercore::create(
        storage.clone(),
        CreateOptions {
            key: Some(key_of(&ready)),
            ..CreateOptions::default()
        },
    ))
    .unwrap();
    let opts = Options {
        allow_push: true,
        push_only: true,
        downloading: false,
        not_downloading_linger: 300,
        ..Options::default()
    };
    let mut hub = ReplicationHub::new();
    let dk = hub.add_core(Replicator::new(core, opts)).unwrap();
    let mut d = Driver::initiator(socket, hub, 0x63, 5);
    let mut lines = Vec::new();

    let first = pump_until_line(&mut d, &mut peer, "remote-sync", &mut lines);
    assert_eq!(flags(&first), (false, false), "{first}");

    // Downloading: one new sync, then JS pushes everything while we do not read.
    let now = d.now();
    block_on(
        d.hub
            .replicator_mut(&dk)
            .unwrap()
            .set_downloading(now, true),
    )
    .unwrap();
    d.hub.flush();
    d.flush();
    let pushed = loop {
        let v = peer
            .next(STEP)
            .unwrap_or_else(|e| panic!("{e} after {lines:?}"));
        lines.push(v.clone());
        if v["event"] == "pushed" {
            break v;
        }
    };
    assert_eq!(pushed["length"], json!(N));
    let syncs: Vec<&Value> = lines
        .iter()
        .filter(|v| v["event"] == "remote-sync")
        .collect();
    assert_eq!(flags(syncs.last().unwrap()), (true, true), "{syncs:?}");
    d.pump_until("every pushed block", &mut peer, |d| {
        let c = d.hub.replicator(&dk).unwrap().core();
        c.length() == N && (0..N).all(|k| c.has(k))
    });
    let c = d.hub.replicator(&dk).unwrap().core();
    block_on(c.verify_all()).unwrap();
    for k in [0, 1, 99, N - 1] {
        assert_eq!(block_on(c.get(k)).unwrap(), Some(block(k)), "block {k}");
    }
    assert!(no_complaints(&d.events), "{:?}", d.events);
    let writes = block_writes.lock().unwrap().clone();
    assert_eq!(writes.iter().sum::<usize>() as u64, N, "{writes:?}");
    assert_eq!(writes[0], 1, "the push with the upgrade: {writes:?}");
    assert!(
        (writes.len() as u64) < N / 4,
        "pushes stored one by one: {writes:?}"
    );

    // Not downloading: `allowPush` off at once, `downloading` after the linger.
    let before = lines.len();
    let now = d.now();
    block_on(
        d.hub
            .replicator_mut(&dk)
            .unwrap()
            .set_downloading(now, false),
    )
    .unwrap();
    // (Syncs sent before, with both flags on, may still be on their way.)
    let lingering = loop {
        let v = pump_until_line(&mut d, &mut peer, "remote-sync", &mut lines);
        if flags(&v) != (true, true) {
            break v;
        }
    };
    assert_eq!(flags(&lingering), (true, false), "{lingering}");
    let off = pump_until_line(&mut d, &mut peer, "remote-sync", &mut lines);
    assert_eq!(flags(&off), (false, false), "{off}");
    assert!(d.now() >= now + 300, "{:?}", &lines[before..]);
    let closed = d.close(&mut peer);
    assert_eq!(closed["error"], Value::Null, "{closed}");
    assert_eq!(peer.wait(STEP), Some(true));
}
