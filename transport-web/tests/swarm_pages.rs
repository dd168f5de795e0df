//! Two pages meet through the relay, in headless Chromium: two [`Swarm`]s (the npm package's
//! `Swarm` is a thin wrapper over this wasm object), each on its own relay session and
//! WebSocket as two pages would be, join one random topic, meet (one connection each, the
//! other's key, one side the initiator), exchange a message each way and end gracefully; two
//! more meet and replicate a core one way over their connection (`core.replicate(conn)`,
//! [`replicate_connection`]), every block checked. Through one relay and through two (two DHT
//! nodes), non-custodially (the default: the relay forwards ciphertext) and custodially, and
//! through the JS relay (`@hyperswarm/dht-relay` 0.4.3, custodial only): both pages on it, and
//! one page on it and one on ours; and two pages meet on a topic where a closed session's
//! announcement is left (a dead key they try too). A page meets a JS hyperswarm 4.17.2 peer
//! through the JS relay (custodially) and through ours (non-custodially): the page dials it,
//! the peer dials a page (a server only), a message goes each way, the peer names the page's
//! key; the peer resets a connection (the page's closes with the error and the swarm dials
//! again); and a page replicates a JS peer's core over a swarm connection. Every step is
//! bounded (`STEP_MS`), so a stall fails with the step's name instead of the suite's page
//! timeout.
//!
//! scripts/test-browser.sh starts the bootstrap node, both relays, the JS relay and the JS
//! peers, and passes their URLs and keys at build time in HYPERPUNCH_TEST_RELAY,
//! HYPERPUNCH_TEST_RELAY2, HYPERPUNCH_TEST_JSRELAY, HYPERPUNCH_TEST_JSPEER and
//! HYPERPUNCH_TEST_JSDRIVE.
#![cfg(target_arch = "wasm32")]

mod common;
use common::sleep;

use std::future::Future;

use futures_util::future::{select, Either};
use hyperpunch_web::js::Hypercore;
use hyperpunch_web::relay::Relay;
use hyperpunch_web::storage::IdbStorage;
use hyperpunch_web::swarm::{replicate_connection, Swarm, SwarmConnection};
use wasm_bindgen::convert::TryFromJsValue;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// The bound of one step (a meeting, a message, a replication, a close).
const STEP_MS: u32 = 30_000;

fn relay_url() -> &'static str {
    match option_env!("HYPERPUNCH_TEST_RELAY") {
        Some(url) => url,
        None => panic!(
            "HYPERPUNCH_TEST_RELAY is unset: run the browser tests with scripts/test-browser.sh"
        ),
    }
}

/// The second relay (another DHT node).
fn relay2_url() -> &'static str {
    match option_env!("HYPERPUNCH_TEST_RELAY2") {
        Some(url) => url,
        None => panic!(
            "HYPERPUNCH_TEST_RELAY2 is unset: run the browser tests with scripts/test-browser.sh"
        ),
    }
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

fn random32() -> Vec<u8> {
    (0..32)
        .map(|_| (js_sys::Math::random() * 256.0) as u8)
        .collect()
}

/// `fut`, or a panic naming `what` after `STEP_MS`.
async fn step<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let fut = std::pin::pin!(fut);
    let timer = std::pin::pin!(sleep(STEP_MS));
    match select(fut, timer).await {
        Either::Left((v, _)) => v,
        Either::Right(_) => panic!("{what}: not done after {STEP_MS} ms"),
    }
}

/// A promise's value (a rejection is a panic naming `what`).
async fn resolve(what: &str, p: js_sys::Promise) -> JsValue {
    step(what, JsFuture::from(p))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

async fn open(url: &str, custodial: bool) -> Swarm {
    let swarm = Swarm::open(url.to_string(), Some(custodial))
        .await
        .map_err(JsValue::from)
        .unwrap_or_else(|e| panic!("a swarm on {url}: {e:?}"));
    assert_eq!(swarm.custodial(), custodial, "the session's mode");
    swarm
}

async fn next_connection(what: &str, swarm: &Swarm) -> SwarmConnection {
    let v = resolve(what, swarm.next_connection()).await;
    SwarmConnection::try_from_js_value(v)
        .unwrap_or_else(|v| panic!("{what}: not a connection: {v:?}"))
}

/// Two swarms on `a_url` and `b_url` join one fresh topic and meet: each gets one connection
/// whose remote key is the other's.
async fn meet(a_url: &str, b_url: &str, custodial: bool) -> [(Swarm, SwarmConnection); 2] {
    let a = open(a_url, custodial).await;
    let b = open(b_url, custodial).await;
    assert_ne!(a.public_key(), b.public_key());
    let topic = random32();
    a.join(topic.clone(), None, None)
        .map_err(JsValue::from)
        .unwrap();
    let flushed = resolve("a's join flushes", a.flush(Some(topic.clone())).unwrap()).await;
    assert_eq!(flushed, JsValue::TRUE);
    b.join(topic.clone(), None, None)
        .map_err(JsValue::from)
        .unwrap();
    let flushed = resolve("b's join flushes", b.flush(Some(topic)).unwrap()).await;
    assert_eq!(flushed, JsValue::TRUE);
    let ca = next_connection("a meets b", &a).await;
    let cb = next_connection("b meets a", &b).await;
    assert_eq!(ca.remote_public_key(), b.public_key(), "a's peer is b");
    assert_eq!(cb.remote_public_key(), a.public_key(), "b's peer is a");
    assert_ne!(ca.is_initiator(), cb.is_initiator(), "one side dialed");
    [(a, ca), (b, cb)]
}

async fn read(what: &str, conn: &SwarmConnection) -> Option<Vec<u8>> {
    let v = resolve(what, conn.read()).await;
    (!v.is_null()).then(|| js_sys::Uint8Array::new(&v).to_vec())
}

/// Both swarms hold exactly one open connection, then are destroyed.
async fn close(swarms: [&Swarm; 2]) {
    for s in swarms {
        resolve("the swarm is destroyed", s.destroy()).await;
        assert_eq!(s.connections(), 0);
    }
}

/// Two pages meet and exchange a message each way, then end gracefully.
async fn messages(a_url: &str, b_url: &str, custodial: bool) {
    let [(a, ca), (b, cb)] = meet(a_url, b_url, custodial).await;
    assert!(ca.write(b"hello from a".to_vec()));
    assert!(cb.write(b"hello from b".to_vec()));
    assert_eq!(
        read("b reads a's message", &cb).await.as_deref(),
        Some(&b"hello from a"[..])
    );
    assert_eq!(
        read("a reads b's message", &ca).await.as_deref(),
        Some(&b"hello from b"[..])
    );
    // An answer on the same connection: one stream each way, in order.
    assert!(cb.write(b"echo hello from a".to_vec()));
    assert_eq!(
        read("a reads b's echo", &ca).await.as_deref(),
        Some(&b"echo hello from a"[..])
    );
    assert_eq!(
        (a.connections(), b.connections()),
        (1, 1),
        "one connection each"
    );
    ca.end();
    cb.end();
    assert_eq!(read("a sees b's end", &ca).await, None);
    assert_eq!(read("b sees a's end", &cb).await, None);
    assert!(resolve("a's connection closes", ca.when_closed())
        .await
        .is_null());
    assert!(resolve("b's connection closes", cb.when_closed())
        .await
        .is_null());
    close([&a, &b]).await;
}

/// Two pages meet; one replicates the core it wrote to the other over the connection.
async fn replicate(a_url: &str, b_url: &str, custodial: bool) {
    const LENGTH: u32 = 50;
    let tag = (js_sys::Math::random() * 1e12) as u64;
    let (wname, rname) = (
        format!("hyperpunch-swarm-pages-w-{tag:x}"),
        format!("hyperpunch-swarm-pages-r-{tag:x}"),
    );
    let writer = Hypercore::create(wname.clone(), None)
        .await
        .map_err(JsValue::from)
        .unwrap();
    for i in 0..LENGTH {
        resolve(
            "append",
            writer.append(format!("page block {i}").into_bytes()),
        )
        .await;
    }
    let reader = Hypercore::create_reader(rname.clone(), writer.key(), None)
        .await
        .map_err(JsValue::from)
        .unwrap();
    let [(a, ca), (b, cb)] = meet(a_url, b_url, custodial).await;
    let served = JsFuture::from(replicate_connection(&writer, &ca));
    let fetched = JsFuture::from(replicate_connection(&reader, &cb));
    let download = resolve(
        "b downloads a's core over the connection",
        reader.download(0.0, Some(LENGTH as f64)),
    );
    let download = std::pin::pin!(download);
    let early = std::pin::pin!(async {
        let r = fetched.await;
        panic!("b's replication ended before the download: {r:?}")
    });
    select(download, early).await;
    assert_eq!(reader.length(), LENGTH as f64);
    for i in 0..LENGTH {
        let got = resolve("a downloaded block", reader.get(i as f64, Some(false))).await;
        assert_eq!(
            js_sys::Uint8Array::new(&got).to_vec(),
            format!("page block {i}").into_bytes(),
            "block {i}"
        );
    }
    assert_eq!(
        (a.connections(), b.connections()),
        (1, 1),
        "one connection each"
    );
    close([&a, &b]).await;
    // The replication on a's side ends with its swarm (destroyed).
    let _ = step("a's replication ends", served).await;
    drop((writer, reader));
    IdbStorage::delete_database(&wname).await.unwrap();
    IdbStorage::delete_database(&rname).await.unwrap();
}

#[wasm_bindgen_test]
async fn two_pages_exchange_messages_through_one_relay() {
    messages(relay_url(), relay_url(), false).await;
}

#[wasm_bindgen_test]
async fn two_pages_exchange_messages_through_one_relay_custodially() {
    messages(relay_url(), relay_url(), true).await;
}

#[wasm_bindgen_test]
async fn two_pages_exchange_messages_through_two_relays() {
    messages(relay_url(), relay2_url(), false).await;
}

#[wasm_bindgen_test]
async fn two_pages_exchange_messages_through_two_relays_custodially() {
    messages(relay_url(), relay2_url(), true).await;
}

#[wasm_bindgen_test]
async fn two_pages_exchange_messages_through_the_js_relay() {
    messages(js_relay_url(), js_relay_url(), true).await;
}

#[wasm_bindgen_test]
async fn a_page_on_the_js_relay_exchanges_messages_with_one_on_ours() {
    messages(js_relay_url(), relay_url(), true).await;
}

#[wasm_bindgen_test]
async fn a_page_replicates_a_core_to_another_through_one_relay() {
    replicate(relay_url(), relay_url(), false).await;
}

#[wasm_bindgen_test]
async fn a_page_replicates_a_core_to_another_through_one_relay_custodially() {
    replicate(relay_url(), relay_url(), true).await;
}

#[wasm_bindgen_test]
async fn a_page_replicates_a_core_to_another_through_two_relays() {
    replicate(relay_url(), relay2_url(), false).await;
}

#[wasm_bindgen_test]
async fn a_page_replicates_a_core_to_another_through_two_relays_custodially() {
    replicate(relay_url(), relay2_url(), true).await;
}

#[wasm_bindgen_test]
async fn a_page_replicates_a_core_to_another_through_the_js_relay() {
    replicate(js_relay_url(), js_relay_url(), true).await;
}

#[wasm_bindgen_test]
async fn a_page_on_ours_replicates_a_core_to_one_on_the_js_relay() {
    replicate(relay_url(), js_relay_url(), true).await;
}

/// A session announces the topic and goes without unannouncing (a page closed, its record left
/// on the DHT until it expires); two pages then meet on the topic through `url`, trying that
/// dead key too.
async fn meet_past_a_dead_announcement(dead_url: &str, url: &str, custodial: bool) {
    let topic = random32();
    let dead = Relay::open(dead_url).await.expect("a session");
    let t: [u8; 32] = topic.clone().try_into().unwrap();
    dead.announce(t, dead.key_pair()).await.expect("announced");
    let dead_key = dead.key_pair().public_key;
    dead.close();
    drop(dead);
    let a = open(url, custodial).await;
    let b = open(url, custodial).await;
    a.join(topic.clone(), None, None)
        .map_err(JsValue::from)
        .unwrap();
    resolve("a's join flushes", a.flush(Some(topic.clone())).unwrap()).await;
    b.join(topic.clone(), None, None)
        .map_err(JsValue::from)
        .unwrap();
    resolve("b's join flushes", b.flush(Some(topic)).unwrap()).await;
    let ca = next_connection("a meets b", &a).await;
    let cb = next_connection("b meets a", &b).await;
    assert_ne!(ca.remote_public_key(), dead_key.to_vec());
    assert_eq!(ca.remote_public_key(), b.public_key(), "a's peer is b");
    assert_eq!(cb.remote_public_key(), a.public_key(), "b's peer is a");
    close([&a, &b]).await;
}

#[wasm_bindgen_test]
async fn two_pages_meet_through_the_js_relay_past_a_dead_announcement() {
    meet_past_a_dead_announcement(relay_url(), js_relay_url(), true).await;
}

#[wasm_bindgen_test]
async fn two_pages_meet_through_our_relay_past_a_dead_announcement() {
    meet_past_a_dead_announcement(relay_url(), relay_url(), false).await;
}
/// A page that stops reading while the other writes on: once the connection's inbox holds its
/// 4 MiB, the page takes no more from its relay session. Of the writer's 8 MiB, either our
/// relay holds more than it buffers for a stream (`max_stream_buffer`, 4 MiB) and destroys
/// the writer's stream, so the reader's is reset, or (when the relay keeps up, as it may on a
/// busy machine) more than the reader's session may hold unread (set to 1 MiB here) waits in
/// it and the session destroys the stream. Either way the reader's connection must close with
/// that error, though its inbox is full (before the fix it stayed open, half dead).
#[wasm_bindgen_test]
async fn a_stalled_page_connection_closes_when_the_relay_resets_its_stream() {
    const MESSAGE: usize = 64 << 10;
    let [(a, ca), (b, cb)] = meet(relay_url(), relay_url(), false).await;
    b.set_max_unread(1 << 20);
    for i in 0..128u8 {
        assert!(ca.write(vec![i; MESSAGE]), "a writes message {i}");
    }
    let why = resolve("b's connection closes", cb.when_closed()).await;
    let why = why
        .as_string()
        .unwrap_or_else(|| panic!("b's connection closes with an error, not {why:?}"));
    assert!(
        why.contains("reset") || why.contains("not read"),
        "b's connection closes for the reset or its unread limit: {why}"
    );
    assert!(cb.closed());
    resolve("a is destroyed", a.destroy()).await;
    resolve("b is destroyed", b.destroy()).await;
}

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// `NAME`'s two hex keys (`A_HEX:B_HEX`), set by scripts/test-browser.sh.
fn two_keys(name: &str, value: Option<&'static str>) -> (Vec<u8>, Vec<u8>) {
    let Some(v) = value else {
        panic!("{name} is unset: run the browser tests with scripts/test-browser.sh")
    };
    let (a, b) = v.split_once(':').unwrap();
    (unhex(a), unhex(b))
}

/// The JS hyperswarm peer's topic and key (tests/interop/swarm-topic-peer.js).
fn js_peer() -> (Vec<u8>, Vec<u8>) {
    two_keys(
        "HYPERPUNCH_TEST_JSPEER",
        option_env!("HYPERPUNCH_TEST_JSPEER"),
    )
}

/// How many connections to the JS peer a test takes before it gives up on one that exchanges
/// the greeting (each bounded by `STEP_MS`).
const JS_PEER_ATTEMPTS: usize = 3;

/// The next connection of `s` (to the JS peer of key `key`) on which a message goes each way
/// and the peer answers (`hello from page`, answered `echo hello from page`; the peer's
/// `hello from js`). A connection that ends before that must close with the relay's error, not
/// stay half open: the JS relay's first connection on its DHT node can time out on loopback
/// (the JS dht-relay client through it sees that too), and the swarm then dials again, as JS
/// hyperswarm does. At most [`JS_PEER_ATTEMPTS`] connections.
async fn greet_js_peer(what: &str, s: &Swarm, key: &[u8]) -> SwarmConnection {
    for attempt in 0..JS_PEER_ATTEMPTS {
        let c = next_connection(&format!("{what}: a connection"), s).await;
        assert_eq!(c.remote_public_key(), key, "{what}: the JS peer's key");
        assert!(c.write(b"hello from page".to_vec()));
        let mut got = vec![];
        while got.len() < 2 {
            match read(&format!("{what}: a message from the JS peer"), &c).await {
                Some(m) => got.push(String::from_utf8(m).unwrap()),
                None => break,
            }
        }
        if got.len() == 2 {
            got.sort();
            assert_eq!(got, ["echo hello from page", "hello from js"], "{what}");
            return c;
        }
        let why = resolve(
            &format!("{what}: a connection that ended early closes"),
            c.when_closed(),
        )
        .await;
        let why = why.as_string().unwrap_or_else(|| {
            panic!("{what}: the connection ended after {got:?} and closed without an error")
        });
        web_sys::console::log_1(
            &format!("{what}: connection {attempt} closed early ({got:?}): {why}").into(),
        );
    }
    panic!("{what}: no connection of {JS_PEER_ATTEMPTS} exchanged the greeting");
}

/// Asks the JS peer who this page is: it answers with the key it sees and its side.
async fn whoami(what: &str, c: &SwarmConnection) -> String {
    assert!(c.write(b"whoami".to_vec()));
    let m = read(what, c)
        .await
        .unwrap_or_else(|| panic!("{what}: the connection ended"));
    String::from_utf8(m).unwrap()
}

/// A page joins the JS hyperswarm peer's topic through `url` (the peer joined first: the page
/// dials it) and meets it: a message each way, and the peer sees the page's key on its server.
/// The peer then resets the connection: the page's connection closes with the relay's error
/// (before the fix it read an end and never closed), and the swarm dials the peer again.
async fn meet_the_js_peer(url: &str, custodial: bool) {
    let (topic, key) = js_peer();
    let s = open(url, custodial).await;
    s.join(topic.clone(), None, None)
        .map_err(JsValue::from)
        .unwrap();
    let flushed = resolve("the join flushes", s.flush(Some(topic)).unwrap()).await;
    assert_eq!(flushed, JsValue::TRUE);
    let c = greet_js_peer("the page meets the JS peer", &s, &key).await;
    assert!(
        c.is_initiator(),
        "the page dialed the peer, announced before it"
    );
    assert_eq!(
        whoami("the JS peer names the page", &c).await,
        format!("you are {} server", hex(&s.public_key()))
    );
    assert!(c.write(b"reset me".to_vec()));
    assert_eq!(read("the reset connection ends", &c).await, None);
    let why = resolve("the reset connection closes", c.when_closed()).await;
    assert!(
        why.is_string(),
        "a reset closes with the relay's error: {why:?}"
    );
    assert!(c.closed());
    let again = greet_js_peer("the page meets the JS peer again", &s, &key).await;
    assert!(!again.closed());
    resolve("the swarm is destroyed", s.destroy()).await;
    assert_eq!(s.connections(), 0);
}

#[wasm_bindgen_test]
async fn a_page_meets_a_js_hyperswarm_peer_through_the_js_relay() {
    meet_the_js_peer(js_relay_url(), true).await;
}

#[wasm_bindgen_test]
async fn a_page_meets_a_js_hyperswarm_peer_through_our_relay() {
    meet_the_js_peer(relay_url(), false).await;
}

/// The JS hyperswarm peer dials a page: a page that met it asks it to join a fresh topic as a
/// client, where a second page (a server only) joined through `url`; the second page accepts
/// the peer's connection (not the initiator), a message goes each way, and the peer names the
/// page's key on its client side.
async fn the_js_peer_dials_a_page(url: &str, custodial: bool) {
    let (topic, key) = js_peer();
    let a = open(url, custodial).await;
    a.join(topic.clone(), None, None)
        .map_err(JsValue::from)
        .unwrap();
    resolve("a's join flushes", a.flush(Some(topic)).unwrap()).await;
    let ca = greet_js_peer("a meets the JS peer", &a, &key).await;
    let b = open(url, custodial).await;
    let fresh = random32();
    b.join(fresh.clone(), Some(true), Some(false))
        .map_err(JsValue::from)
        .unwrap();
    let flushed = resolve("b's join flushes", b.flush(Some(fresh.clone())).unwrap()).await;
    assert_eq!(flushed, JsValue::TRUE);
    assert!(ca.write(format!("join {}", hex(&fresh)).into_bytes()));
    let cb = greet_js_peer("the JS peer dials b", &b, &key).await;
    assert!(!cb.is_initiator(), "the peer dialed b");
    assert_eq!(
        whoami("the JS peer names b", &cb).await,
        format!("you are {} client", hex(&b.public_key()))
    );
    close([&a, &b]).await;
}

#[wasm_bindgen_test]
async fn a_js_hyperswarm_peer_dials_a_page_through_the_js_relay() {
    the_js_peer_dials_a_page(js_relay_url(), true).await;
}

#[wasm_bindgen_test]
async fn a_js_hyperswarm_peer_dials_a_page_through_our_relay() {
    the_js_peer_dials_a_page(relay_url(), false).await;
}

/// A page meets the JS hyperswarm peer through our relay, stops reading and asks it for 8 MiB
/// (`flood 128`) with its session's unread limit at 1 MiB: once the connection's inbox holds
/// its 4 MiB the page takes no more from the session, the relay client destroys the stream
/// (`ClientEvent::Overrun`), and the page's connection closes with that error (before the fix
/// that close woke nobody: the connection stayed open, half dead, never dialled again).
#[wasm_bindgen_test]
async fn a_stalled_page_connection_closes_when_the_js_peer_overruns_its_session() {
    let (topic, key) = js_peer();
    let s = open(relay_url(), false).await;
    s.set_max_unread(1 << 20);
    s.join(topic.clone(), None, None)
        .map_err(JsValue::from)
        .unwrap();
    resolve("the join flushes", s.flush(Some(topic)).unwrap()).await;
    let c = greet_js_peer("the page meets the JS peer", &s, &key).await;
    assert!(c.write(b"flood 128".to_vec()));
    let why = resolve("the flooded connection closes", c.when_closed()).await;
    let why = why
        .as_string()
        .unwrap_or_else(|| panic!("the connection closes with an error, not {why:?}"));
    assert!(
        why.contains("were not read"),
        "the connection closes for the overrun: {why}"
    );
    assert!(c.closed());
    resolve("the swarm is destroyed", s.destroy()).await;
}

/// A page replicates a JS hyperswarm peer's core (tests/interop/swarm-drive-peer.js: a
/// corestore with a hyperdrive and a core "notes" of two blocks, replicated on every
/// connection) through `url`: it joins the drive's discovery key and replicates a reader of
/// "notes" over the connection (`core.replicate(conn)`); a connection whose replication ends
/// before the download is dropped for the swarm's next one (see [`greet_js_peer`]).
async fn replicate_from_the_js_peer(url: &str, custodial: bool) {
    let (drive_key, notes_key) = two_keys(
        "HYPERPUNCH_TEST_JSDRIVE",
        option_env!("HYPERPUNCH_TEST_JSDRIVE"),
    );
    let name = format!(
        "hyperpunch-swarm-js-notes-{:x}",
        (js_sys::Math::random() * 1e12) as u64
    );
    let reader = Hypercore::create_reader(name.clone(), notes_key, None)
        .await
        .map_err(JsValue::from)
        .unwrap();
    let topic = hyperpunch_web::discovery_key(&drive_key)
        .map_err(JsValue::from)
        .unwrap();
    let s = open(url, custodial).await;
    s.join(topic.clone(), None, None)
        .map_err(JsValue::from)
        .unwrap();
    resolve("the join flushes", s.flush(Some(topic)).unwrap()).await;
    let mut download = std::pin::pin!(JsFuture::from(reader.download(0.0, Some(2.0))));
    let mut done = false;
    for attempt in 0..JS_PEER_ATTEMPTS {
        let c = next_connection("the page meets the JS drive peer", &s).await;
        let replication = JsFuture::from(replicate_connection(&reader, &c));
        match step("the notes download", select(download.as_mut(), replication)).await {
            Either::Left((r, _)) => {
                r.expect("the download");
                done = true;
                break;
            }
            Either::Right((r, _)) => web_sys::console::log_1(
                &format!("replication {attempt} ended before the download: {r:?}").into(),
            ),
        }
    }
    assert!(
        done,
        "no connection of {JS_PEER_ATTEMPTS} replicated the notes"
    );
    for (i, want) in ["note 0", "note 1"].iter().enumerate() {
        let got = resolve("a note", reader.get(i as f64, Some(false))).await;
        assert_eq!(js_sys::Uint8Array::new(&got).to_vec(), want.as_bytes());
    }
    resolve("the swarm is destroyed", s.destroy()).await;
    drop(reader);
    IdbStorage::delete_database(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_page_replicates_a_js_hyperswarm_peers_core_through_the_js_relay() {
    replicate_from_the_js_peer(js_relay_url(), true).await;
}

#[wasm_bindgen_test]
async fn a_page_replicates_a_js_hyperswarm_peers_core_through_our_relay() {
    replicate_from_the_js_peer(relay_url(), false).await;
}
