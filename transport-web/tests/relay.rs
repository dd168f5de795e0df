//! The dht-relay client in headless Chromium: a page opens a WebSocket to `hyperpunch relay`
//! (started on 127.0.0.1 with a local bootstrap node by scripts/test-browser.sh, which passes
//! its URL in HYPERPUNCH_TEST_RELAY at build time), looks up a topic, fails to connect to a key
//! nobody serves (custodial and non-custodial), and listens and unannounces non-custodially (the
//! page signs the server's announcements and each removal).
#![cfg(target_arch = "wasm32")]

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::relay::dht_relay::{Client, ClientEvent};
use hyperpunch_web::websocket::RelaySession;
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

#[wasm_bindgen_test]
async fn custodial_lookup_and_failed_connect_through_the_relay() {
    let me = KeyPair::from_seed(&[1; 32]);
    let mut s = RelaySession::open(relay_url(), Client::new(&me, true, [2; 32]))
        .await
        .expect("the relay accepts the WebSocket");
    let q = s.client().lookup([0x55; 32]);
    loop {
        match s.next_event().await.expect("the session stays up") {
            ClientEvent::QueryDone { query } if query == q => break,
            ClientEvent::QueryResult { result, .. } => assert!(result.peers.is_empty()),
            _ => {}
        }
    }
    let stream = s.client().connect([0x66; 32], me.clone());
    loop {
        match s.next_event().await.expect("the session stays up") {
            ClientEvent::Closed { stream: st, error } if st == stream => {
                assert!(error.is_some(), "a failed connect says why");
                break;
            }
            ClientEvent::Opened { .. } => panic!("nobody serves that key"),
            _ => {}
        }
    }
}

#[wasm_bindgen_test]
async fn the_relay_serves_non_custodial_connect_listen_and_unannounce() {
    let me = KeyPair::from_seed(&[3; 32]);
    let mut s = RelaySession::open(relay_url(), Client::new(&me, false, [4; 32]))
        .await
        .expect("the relay accepts the WebSocket");
    // A non-custodial connect is served: to a key nobody serves it fails with its error.
    let stream = s.client().connect([0x66; 32], me.clone());
    loop {
        match s.next_event().await.expect("the session stays up") {
            ClientEvent::Closed { stream: st, error } if st == stream => {
                assert!(error.is_some(), "a failed connect says why");
                break;
            }
            ClientEvent::Opened { .. } => panic!("nobody serves that key"),
            _ => {}
        }
    }
    // A non-custodial listen is served too (the page signs the server's announcements).
    let server = s.client().listen(me.clone());
    loop {
        match s.next_event().await.expect("the session stays up") {
            ClientEvent::Listening { server: sv, .. } if sv == server => break,
            _ => {}
        }
    }
    // And a non-custodial unannounce (the client signs each removal).
    let query = s.client().unannounce([0x67; 32], me.clone());
    loop {
        match s.next_event().await.expect("the session stays up") {
            ClientEvent::QueryDone { query: q } if q == query => break,
            _ => {}
        }
    }
}
