//! Replication through the relay, in headless Chromium: the page opens a session on
//! `hyperpunch relay --ws` (custodial, and non-custodial: the page's key never leaves it, Noise
//! and secret-stream run in wasm, the relay forwards ciphertext), looks up a core's discovery
//! key, connects by public key to the native `hyperpunch core serve --swarm` that announced it,
//! and downloads and verifies the whole core into IndexedDB; then reopens it from IndexedDB
//! alone.
//!
//! scripts/test-browser.sh starts the bootstrap node, the relay and the server (a core whose
//! block i is the UTF-8 text `hyperpunch block <i>`), and passes at build time
//! HYPERPUNCH_TEST_RELAY (the relay's URL) and HYPERPUNCH_TEST_CORE (`<KEY HEX>:<LENGTH>`).
#![cfg(target_arch = "wasm32")]

use futures_util::future::{select, Either};
use hyperpunch_core::hypercore::{CreateOptions, Hypercore, OpenOptions};
use hyperpunch_core::replication::{Event, HubEvent, Options, ReplicationHub, Replicator};
use hyperpunch_web::relay::{replicate_relayed, Relay};
use hyperpunch_web::replicate::SharedHub;
use hyperpunch_web::storage::IdbStorage;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn relay_url() -> &'static str {
    match option_env!("HYPERPUNCH_TEST_RELAY") {
        Some(url) => url,
        None => panic!(
            "HYPERPUNCH_TEST_RELAY is unset: run the browser tests with scripts/test-browser.sh"
        ),
    }
}

/// The served core's key and length.
fn served_core() -> ([u8; 32], u64) {
    let Some(spec) = option_env!("HYPERPUNCH_TEST_CORE") else {
        panic!("HYPERPUNCH_TEST_CORE is unset: run the browser tests with scripts/test-browser.sh")
    };
    let (key, len) = spec.split_once(':').expect("KEY:LENGTH");
    let key: Vec<u8> = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&key[i..i + 2], 16).expect("hex key"))
        .collect();
    (
        key.try_into().expect("32-byte key"),
        len.parse().expect("length"),
    )
}

fn block(i: u64) -> Vec<u8> {
    format!("hyperpunch block {i}").into_bytes()
}

#[wasm_bindgen_test]
async fn a_page_downloads_a_native_core_through_the_relay_into_indexeddb() {
    let (key, length) = served_core();
    let name = format!(
        "hyperpunch-relay-repl-{:x}",
        (js_sys::Math::random() * 1e12) as u64
    );
    IdbStorage::delete_database(&name).await.unwrap();
    let core = Hypercore::create(
        IdbStorage::open(&name).await.unwrap(),
        CreateOptions {
            key: Some(key),
            ..CreateOptions::default()
        },
    )
    .await
    .expect("a reader of the served core");
    let relay = Relay::open(relay_url())
        .await
        .expect("the relay accepts us");
    fetch(core, &relay, length, true).await;
    drop(relay);

    // Everything is in IndexedDB: reopened without any peer.
    let core = Hypercore::open(
        IdbStorage::open(&name).await.unwrap(),
        OpenOptions::default(),
    )
    .await
    .expect("reopen");
    assert_eq!(core.length(), length);
    assert_eq!(core.get(length - 1).await.unwrap(), Some(block(length - 1)));
    drop(core);
    IdbStorage::delete_database(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_page_downloads_a_native_core_non_custodially_through_the_relay() {
    let (key, length) = served_core();
    let name = format!(
        "hyperpunch-relay-nc-{:x}",
        (js_sys::Math::random() * 1e12) as u64
    );
    IdbStorage::delete_database(&name).await.unwrap();
    let core = Hypercore::create(
        IdbStorage::open(&name).await.unwrap(),
        CreateOptions {
            key: Some(key),
            ..CreateOptions::default()
        },
    )
    .await
    .expect("a reader of the served core");
    let relay = Relay::open_non_custodial(relay_url())
        .await
        .expect("the relay accepts us");
    fetch(core, &relay, length, false).await;
    drop(relay);
    IdbStorage::delete_database(&name).await.unwrap();
}

/// Downloads every block of `core` from the first peer `relay` finds, checks them, and ends the
/// connection gracefully. `custodial`: which link the stream must give (the relay's frames, or
/// secret-stream run here from the page's own handshake).
async fn fetch(core: Hypercore<IdbStorage>, relay: &Relay, length: u64, custodial: bool) {
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(core, Options::default()))
        .unwrap();
    let (hub, mut events) = SharedHub::with_events(hub);
    // The server announced the discovery key (as JS `swarm.join(core.discoveryKey)`).
    let peers = relay.lookup(dk).await.expect("lookup through the relay");
    assert!(
        !peers.is_empty(),
        "the native server is announced on the core's discovery key"
    );
    let stream = relay
        .connect(peers[0])
        .await
        .expect("connected by public key through the relay");
    assert_eq!(stream.remote_public_key(), peers[0]);
    assert_eq!(stream.is_custodial(), custodial);

    let want = {
        let now = hub.now();
        let mut g = hub.lock().await;
        g.replicator_mut(&dk)
            .unwrap()
            .download(now, 0, Some(length))
            .await
            .unwrap()
    };
    let pump = std::pin::pin!(replicate_relayed(stream, &hub, std::future::pending()));
    let wait = std::pin::pin!(async {
        loop {
            let ev = events.next().await.expect("hub events");
            match ev {
                HubEvent::Core {
                    event: Event::Downloaded { id },
                    ..
                } if id == want => return,
                HubEvent::Core {
                    event: Event::InvalidData { .. },
                    ..
                } => panic!("{ev:?}"),
                _ => {}
            }
        }
    });
    let pump = match select(pump, wait).await {
        Either::Left((r, _)) => panic!("the relayed connection ended before the download: {r:?}"),
        Either::Right(((), pump)) => pump,
    };
    // A graceful end through the relay: ours, then the server's.
    hub.end_all().await;
    pump.await.expect("the relayed connection closed cleanly");
    assert_eq!(hub.connections().await, 0);
    {
        let g = hub.lock().await;
        let core = g.replicator(&dk).unwrap().core();
        assert_eq!(core.length(), length);
        for i in 0..length {
            assert_eq!(core.get(i).await.unwrap(), Some(block(i)), "block {i}");
        }
    }
}
