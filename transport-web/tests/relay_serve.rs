//! A page serves a core through a relay, in headless Chromium: one relay session listens
//! (`Relay::listen`) and announces its key on the core's discovery key, accepts connections
//! (`RelayServer::accept`) and replicates a writable core from IndexedDB over each; a session
//! on another relay (another DHT node), as another browser would, looks the discovery key up,
//! connects to the announced key, downloads and verifies every block and ends gracefully; after
//! `unannounce` a lookup no longer finds the key. Three pairings: our relay to our second
//! relay, serving through the JS relay (`@hyperswarm/dht-relay` 0.4.3, custodial) to a reader on
//! ours, and serving through ours to a reader on the JS relay. Both ends are custodial
//! `FramedLink`s, which neither speak first: this caught the pump waiting for the peer's first
//! message before opening its channels, and a page destroying a stream both sides had ended
//! (the peer then saw a reset). scripts/www.sh test (`just test-www`) has a native
//! `core fetch --swarm` and a JS hyperswarm reader fetch from the demo page.
//!
//! scripts/test-browser.sh starts the bootstrap node, both relays and the JS relay, and passes
//! their URLs at build time in HYPERPUNCH_TEST_RELAY, HYPERPUNCH_TEST_RELAY2 and
//! HYPERPUNCH_TEST_JSRELAY.
#![cfg(target_arch = "wasm32")]

mod common;
use common::sleep;

use futures_util::future::{select, Either};
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hypercore::{CreateOptions, Hypercore};
use hyperpunch_core::replication::{Event, HubEvent, Options, ReplicationHub, Replicator};
use hyperpunch_web::relay::{replicate_relayed, Relay};
use hyperpunch_web::replicate::SharedHub;
use hyperpunch_web::storage::IdbStorage;
use wasm_bindgen_futures::spawn_local;
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

/// The second relay (another DHT node), for the reader.
fn relay2_url() -> &'static str {
    match option_env!("HYPERPUNCH_TEST_RELAY2") {
        Some(url) => url,
        None => panic!(
            "HYPERPUNCH_TEST_RELAY2 is unset: run the browser tests with scripts/test-browser.sh"
        ),
    }
}

fn block(i: u64) -> Vec<u8> {
    format!("hyperpunch block {i}").into_bytes()
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    for x in b.iter_mut() {
        *x = (js_sys::Math::random() * 256.0) as u8;
    }
    b
}

async fn fresh(prefix: &str) -> (String, IdbStorage) {
    let name = format!(
        "hyperpunch-relay-serve-{prefix}-{:x}",
        (js_sys::Math::random() * 1e12) as u64
    );
    IdbStorage::delete_database(&name).await.unwrap();
    let s = IdbStorage::open(&name).await.unwrap();
    (name, s)
}

/// The JS relay (`@hyperswarm/dht-relay` 0.4.3 on a JS hyperdht node).
fn js_relay_url() -> &'static str {
    match option_env!("HYPERPUNCH_TEST_JSRELAY") {
        Some(url) => url,
        None => panic!(
            "HYPERPUNCH_TEST_JSRELAY is unset: run the browser tests with scripts/test-browser.sh"
        ),
    }
}

#[wasm_bindgen_test]
async fn a_page_serves_a_core_it_wrote_through_the_relay() {
    serve_and_fetch(relay_url(), relay2_url(), true).await;
}

/// The page's server key pair never leaves it: our relay listens with the public key only,
/// the page signs the announcements and runs each Noise handshake and secret-stream; the
/// fetching session (non-custodial too) runs its own, so both relays forward ciphertext; the
/// page signs its unannounce too.
#[wasm_bindgen_test]
async fn a_page_serves_non_custodially_through_our_relay() {
    serve_and_fetch(relay_url(), relay2_url(), false).await;
}

/// Our client listens and announces through the JS relay (custodial, the JS client's mode);
/// a reader through our relay fetches.
#[wasm_bindgen_test]
async fn a_page_serves_through_the_js_relay() {
    serve_and_fetch(js_relay_url(), relay_url(), true).await;
}

/// A page serving through our relay, fetched by a session on the JS relay.
#[wasm_bindgen_test]
async fn a_page_on_the_js_relay_fetches_from_a_page_serving_through_ours() {
    serve_and_fetch(relay_url(), js_relay_url(), true).await;
}

/// A page serves a fresh core through `serve_url`; a session on `fetch_url` finds, fetches and
/// verifies it; after `unannounce` a lookup no longer finds the page.
async fn serve_and_fetch(serve_url: &str, fetch_url: &str, custodial: bool) {
    const LENGTH: u64 = 64;
    // The writer: a core in IndexedDB, served through its own relay session.
    let (writer_db, storage) = fresh("writer").await;
    let mut writer = Hypercore::create(
        storage,
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&random32())),
            ..CreateOptions::default()
        },
    )
    .await
    .unwrap();
    let blocks: Vec<Vec<u8>> = (0..LENGTH).map(block).collect();
    let refs: Vec<&[u8]> = blocks.iter().map(|b| &b[..]).collect();
    writer.append(&refs).await.unwrap();
    let key = *writer.key();
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(writer, Options::default()))
        .unwrap();
    let writer_hub = SharedHub::new(hub);

    let serving = if custodial {
        Relay::open(serve_url).await
    } else {
        Relay::open_non_custodial(serve_url).await
    }
    .expect("the relay accepts us");
    let session_key = serving.key_pair();
    let server = serving
        .listen(session_key.clone())
        .await
        .expect("the relay listens for the page");
    assert_eq!(server.public_key(), session_key.public_key);
    assert!(server.addr().is_some());
    serving
        .announce(dk, session_key.clone())
        .await
        .expect("announced through the relay");
    spawn_local({
        let hub = writer_hub.clone();
        async move {
            // Ends when the session closes (the server with it).
            while let Some(stream) = server.accept().await {
                assert!(!stream.is_initiator());
                assert_eq!(stream.is_custodial(), custodial, "the stream's mode");
                let hub = hub.clone();
                spawn_local(async move {
                    let _ = replicate_relayed(stream, &hub, std::future::pending()).await;
                });
            }
        }
    });
    // A reader on another session of the page finds and fetches it.
    let (reader_db, storage) = fresh("reader").await;
    let reader = Hypercore::create(
        storage,
        CreateOptions {
            key: Some(key),
            ..CreateOptions::default()
        },
    )
    .await
    .unwrap();
    let mut hub = ReplicationHub::new();
    hub.add_core(Replicator::new(reader, Options::default()))
        .unwrap();
    let (reader_hub, mut events) = SharedHub::with_events(hub);
    let fetching = if custodial {
        Relay::open(fetch_url).await
    } else {
        Relay::open_non_custodial(fetch_url).await
    }
    .expect("a session on the second relay");
    let peers = fetching.lookup(dk).await.expect("lookup through the relay");
    assert!(
        peers.contains(&session_key.public_key),
        "the page's announcement is found: {peers:?}"
    );
    let stream = fetching
        .connect(session_key.public_key)
        .await
        .expect("connected to the page's server through the relay");
    assert_eq!(stream.is_custodial(), custodial);
    let want = {
        let now = reader_hub.now();
        let mut g = reader_hub.lock().await;
        g.replicator_mut(&dk)
            .unwrap()
            .download(now, 0, Some(LENGTH))
            .await
            .unwrap()
    };
    let pump = std::pin::pin!(replicate_relayed(
        stream,
        &reader_hub,
        std::future::pending()
    ));
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
        Either::Left((r, _)) => panic!("the connection to the page ended first: {r:?}"),
        Either::Right(((), pump)) => pump,
    };
    reader_hub.end_all().await;
    pump.await.expect("the relayed connection closed cleanly");
    {
        let g = reader_hub.lock().await;
        let core = g.replicator(&dk).unwrap().core();
        assert_eq!(core.length(), LENGTH);
        for i in 0..LENGTH {
            assert_eq!(core.get(i).await.unwrap(), Some(block(i)), "block {i}");
        }
    }

    // Unannounced (non-custodially: the page signs each removal): a lookup no longer finds
    // the page's key.
    serving
        .unannounce(dk, session_key.clone())
        .await
        .expect("unannounced");
    let peers = fetching.lookup(dk).await.expect("lookup");
    assert!(!peers.contains(&session_key.public_key), "{peers:?}");
    drop(fetching);
    drop(serving);
    IdbStorage::delete_database(&writer_db).await.unwrap();
    IdbStorage::delete_database(&reader_db).await.unwrap();
}

/// A peer that keeps sending on a stream the page does not read: a browser cannot stop reading
/// its WebSocket, so the page's relay client counts what it holds unread and destroys the
/// stream past its limit (here 1 MiB; 32 MiB by default), dropping what it held, instead of
/// buffering whatever the peer sends. The session serves on: a second stream works.
#[wasm_bindgen_test]
async fn a_stream_flooded_past_the_unread_limit_is_destroyed_and_the_session_serves_on() {
    use hyperpunch_web::duplex::Duplex;
    let serving = Relay::open(relay_url())
        .await
        .expect("the relay accepts us");
    let kp = serving.key_pair();
    let server = serving.listen(kp.clone()).await.expect("listening");
    let reading = Relay::open(relay2_url())
        .await
        .expect("a session on the second relay");
    reading.set_max_unread(1 << 20);

    let (accepted, connected) =
        futures_util::future::join(server.accept(), reading.connect(kp.public_key)).await;
    let mut sender = accepted.expect("the connection reaches the server");
    let mut receiver = connected.expect("connected through the relays");
    // 3 MiB the reader never reads.
    for _ in 0..48 {
        sender.send(vec![7; 64 * 1024]).expect("sent");
    }
    let mut waited = 0;
    while receiver.error().is_none() && waited < 30_000 {
        sleep(50).await;
        waited += 50;
    }
    let why = receiver
        .error()
        .expect("the flooded stream is destroyed, not buffered");
    assert!(why.contains("not read"), "{why}");
    let next = futures_util::future::poll_fn(|cx| receiver.poll_recv(cx)).await;
    assert!(next.is_none(), "nothing of the flood is kept");

    // The session is fine: a second stream carries bytes both ways.
    let (accepted, connected) =
        futures_util::future::join(server.accept(), reading.connect(kp.public_key)).await;
    let mut a = accepted.expect("a second connection");
    let mut b = connected.expect("connected again");
    a.send(b"ping".to_vec()).unwrap();
    let got = futures_util::future::poll_fn(|cx| b.poll_recv(cx)).await;
    assert_eq!(got.as_deref(), Some(&b"ping"[..]));
    b.send(b"pong".to_vec()).unwrap();
    let got = futures_util::future::poll_fn(|cx| a.poll_recv(cx)).await;
    assert_eq!(got.as_deref(), Some(&b"pong"[..]));
}
