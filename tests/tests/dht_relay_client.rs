//! hyperpunch's dht-relay client engine (`relay::dht_relay::Client`, what the browser runs) live
//! over a WebSocket: non-custodial through the JS relay (`@hyperswarm/dht-relay` 0.4.3; the
//! secret key never leaves the client: Noise IK and secret-stream run in the client, the relay
//! asks it to sign announcements) and through our relay (to a hyperpunch server and a JS
//! hyperdht server: the relay forwards ciphertext), and custodial through our relay, on a
//! loopback testnet with an explicit bootstrap list.
//!
//! dht-relay 0.4.3's relay reads hyperdht 6.34's announcements in an older shape when it asks a
//! non-custodial client to sign them, so records signed that way are not stored (its own JS
//! client fails the same way): through a JS relay, a non-custodial client connects but cannot
//! be found when it announces or listens.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyperpunch::core::relay::dht_relay::{Client, ClientEvent, Handshake};
use hyperpunch::core::secretstream::{
    Entropy, Event as StreamEvent, Options as StreamOptions, SecretStream,
};
use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::{Dht, DhtOptions, ServerOptions};
use hyperpunch::dht_relay::{RelayOptions, WsRelay};
use hyperpunch_tests::js_dht::JsDht;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const T: Duration = Duration::from_secs(60);

fn js(j: &mut JsDht, cmd: Value) -> Value {
    tokio::task::block_in_place(|| j.must(cmd, T))
}

fn js_testnet(j: &mut JsDht, n: usize) -> String {
    let first = js(j, json!({"cmd": "start", "bootstrap": [], "count": 1}));
    let boot = format!("127.0.0.1:{}", first[0]["port"]);
    js(
        j,
        json!({"cmd": "start", "bootstrap": [boot], "count": n - 1}),
    );
    boot
}

async fn rust_peer(boot: &str) -> Arc<Dht> {
    let d = Dht::spawn(DhtOptions {
        bootstrap: vec![boot.to_string()],
        host: Ipv4Addr::LOCALHOST,
        ephemeral: Some(true),
        quick_firewall: false,
        ..DhtOptions::default()
    })
    .await
    .expect("bind");
    tokio::time::timeout(T, d.ready()).await.unwrap().unwrap();
    Arc::new(d)
}

async fn echo_server(peer: &Dht, kp: KeyPair) {
    let mut server = tokio::time::timeout(T, peer.listen(kp, ServerOptions::default()))
        .await
        .unwrap()
        .unwrap();
    tokio::spawn(async move {
        while let Some(c) = server.accept().await {
            tokio::spawn(async move {
                let (tx, mut rx) = c.split();
                while let Some(Ok(m)) = rx.recv().await {
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
                let _ = tx.end().await;
            });
        }
    });
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// The client engine over a WebSocket: a test driver.
struct Driver {
    ws: Ws,
    client: Client,
}

impl Driver {
    async fn connect(url: &str, key_pair: &KeyPair, custodial: bool) -> Driver {
        let addr = url.trim_start_matches("ws://").to_string();
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let ws = tokio_tungstenite::client_async(url, tcp).await.unwrap().0;
        let client = Client::new(key_pair, custodial, [9; 32]);
        let mut d = Driver { ws, client };
        d.flush().await;
        d
    }

    async fn flush(&mut self) {
        while let Some(f) = self.client.poll_transmit() {
            self.ws.send(WsMessage::Binary(f.into())).await.unwrap();
        }
    }

    /// Runs until `f` returns `Some` for an event.
    async fn until<R>(&mut self, mut f: impl FnMut(ClientEvent) -> Option<R>) -> R {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            while let Some(e) = self.client.poll_event() {
                if let Some(r) = f(e) {
                    self.flush().await;
                    return r;
                }
            }
            self.flush().await;
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("the relay answers in time")
                .expect("the relay stays")
                .unwrap();
            if let WsMessage::Binary(b) = m {
                self.client.handle_frame(&b).unwrap();
            }
        }
    }

    /// Sends `msg` over a stream and waits for the same bytes back (custodial: plaintext
    /// messages; non-custodial: secret-stream run here).
    async fn echo(&mut self, stream: u32, hs: Handshake, is_initiator: bool, msg: &[u8]) {
        match hs {
            Handshake::Relay(_) => {
                assert!(self.client.write(stream, msg.to_vec()));
                let got = self
                    .until(|e| match e {
                        ClientEvent::Data { stream: s, data } if s == stream => Some(data),
                        _ => None,
                    })
                    .await;
                assert_eq!(got, msg);
            }
            Handshake::Local(split) => {
                let mut ss = SecretStream::from_handshake(
                    is_initiator,
                    split,
                    Entropy::from_bytes(&[3; 64]),
                    StreamOptions::default(),
                    0,
                );
                ss.write(msg).unwrap();
                loop {
                    while let Some(b) = ss.poll_transmit() {
                        assert!(self.client.write(stream, b));
                    }
                    if let Some(StreamEvent::Message(m)) = std::iter::from_fn(|| ss.poll_event())
                        .find(|e| matches!(e, StreamEvent::Message(_)))
                    {
                        assert_eq!(m, msg);
                        return;
                    }
                    let chunk = self
                        .until(|e| match e {
                            ClientEvent::Data { stream: s, data } if s == stream => Some(data),
                            ClientEvent::Closed { stream: s, error } if s == stream => {
                                panic!("stream closed: {error:?}")
                            }
                            _ => None,
                        })
                        .await;
                    // What the relay forwarded is ciphertext: the plaintext is nowhere in it.
                    assert!(
                        !chunk.windows(msg.len()).any(|w| w == msg),
                        "the relay forwarded plaintext"
                    );
                    ss.handle_input(1, &chunk);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_custodial_client_through_the_js_relay() {
    let mut j = JsDht::spawn_script("dht-relay-peer.js", Duration::from_secs(150)).unwrap();
    let boot = js_testnet(&mut j, 4);
    let url = js(&mut j, json!({"cmd": "relay", "bootstrap": [boot]}))["url"]
        .as_str()
        .unwrap()
        .to_string();
    let peer = rust_peer(&boot).await;
    let server_kp = KeyPair::from_seed(&[7; 32]);
    echo_server(&peer, server_kp.clone()).await;

    let me = KeyPair::from_seed(&[1; 32]);
    let mut d = Driver::connect(&url, &me, false).await;
    // Connect: the relay asks us for each Noise step; secret-stream runs here.
    let stream = d.client.connect(server_kp.public_key, me.clone());
    d.flush().await;
    let hs = d
        .until(|e| match e {
            ClientEvent::Opened {
                stream: s,
                handshake,
                remote_public_key,
            } if s == stream => {
                assert_eq!(remote_public_key, server_kp.public_key);
                Some(handshake)
            }
            ClientEvent::Closed { error, .. } => panic!("connect failed: {error:?}"),
            _ => None,
        })
        .await;
    assert!(matches!(hs, Handshake::Local(_)), "the keys stay here");
    d.echo(stream, hs, true, b"end to end through the js relay")
        .await;

    // Announcing through the JS relay in non-custodial mode ends (the relay asks us to sign)
    // but stores nothing: dht-relay 0.4.3's signee proxy reads hyperdht 6.34's announce as an
    // older shape, and the JS client fails the same way. Not asserted here.
    let q = d.client.announce([0x44; 32], me.clone());
    d.flush().await;
    d.until(|e| matches!(e, ClientEvent::QueryDone { query } if query == q).then_some(()))
        .await;

    // Listening the same way announces the server through the same signee proxy, so a
    // non-custodial server behind a JS relay cannot be found either; not tested here.
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custodial_client_through_our_relay() {
    let mut j = JsDht::spawn_script("dht-relay-peer.js", Duration::from_secs(150)).unwrap();
    let boot = js_testnet(&mut j, 4);
    let relay_peer = rust_peer(&boot).await;
    let relay = WsRelay::bind(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        relay_peer,
        RelayOptions::default(),
    )
    .await
    .unwrap();
    let url = format!("ws://{}", relay.local_addr());
    let peer = rust_peer(&boot).await;
    let server_kp = KeyPair::from_seed(&[7; 32]);
    echo_server(&peer, server_kp.clone()).await;

    let me = KeyPair::from_seed(&[1; 32]);
    let mut d = Driver::connect(&url, &me, true).await;
    let stream = d.client.connect(server_kp.public_key, me.clone());
    d.flush().await;
    let hs = d
        .until(|e| match e {
            ClientEvent::Opened {
                stream: s,
                handshake,
                ..
            } if s == stream => Some(handshake),
            ClientEvent::Closed { error, .. } => panic!("connect failed: {error:?}"),
            _ => None,
        })
        .await;
    assert!(matches!(hs, Handshake::Relay(_)));
    d.echo(stream, hs, true, b"plaintext to our relay").await;
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_custodial_client_through_our_relay() {
    let mut j = JsDht::spawn_script("dht-relay-peer.js", Duration::from_secs(150)).unwrap();
    let boot = js_testnet(&mut j, 4);
    let relay_peer = rust_peer(&boot).await;
    let relay = WsRelay::bind(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        relay_peer,
        RelayOptions::default(),
    )
    .await
    .unwrap();
    let url = format!("ws://{}", relay.local_addr());
    // A hyperpunch server and a JS hyperdht server, both echoing.
    let peer = rust_peer(&boot).await;
    let server_kp = KeyPair::from_seed(&[7; 32]);
    echo_server(&peer, server_kp.clone()).await;
    let js_server = js(
        &mut j,
        json!({"cmd": "dhtListen", "bootstrap": [boot], "seed": "08".repeat(32)}),
    );
    let js_pk = KeyPair::from_seed(&[8; 32]).public_key;
    assert_eq!(js_server["publicKey"], hex::encode(js_pk));

    // The client's handshake carries no secret key: our relay never has one for it.
    let me = KeyPair::from_seed(&[1; 32]);
    let mut d = Driver::connect(&url, &me, false).await;
    for (server, what) in [
        (
            server_kp.public_key,
            &b"end to end through our relay to hyperpunch"[..],
        ),
        (
            js_pk,
            &b"end to end through our relay to a JS hyperdht server"[..],
        ),
    ] {
        let stream = d.client.connect(server, me.clone());
        d.flush().await;
        let hs = d
            .until(|e| match e {
                ClientEvent::Opened {
                    stream: s,
                    handshake,
                    remote_public_key,
                } if s == stream => {
                    assert_eq!(remote_public_key, server);
                    Some(handshake)
                }
                ClientEvent::Closed { stream: s, error } if s == stream => {
                    panic!("connect failed: {error:?}")
                }
                _ => None,
            })
            .await;
        // The Noise keys are the client's (the relay sent a handshake id, not a hash).
        assert!(matches!(hs, Handshake::Local(_)), "the keys stay here");
        d.echo(stream, hs, true, what).await;
    }

    // Announce with our own signatures (the relay asks for one per storing node): the record
    // is stored, a lookup on another node finds our key.
    let topic = [0x45; 32];
    let q = d.client.announce(topic, me.clone());
    d.flush().await;
    d.until(|e| matches!(e, ClientEvent::QueryDone { query } if query == q).then_some(()))
        .await;
    let mut found = Vec::new();
    let mut l = peer.lookup(topic);
    while let Some(r) = tokio::time::timeout(T, l.next())
        .await
        .expect("lookup in time")
    {
        found.extend(r.peers.iter().map(|p| p.public_key));
    }
    assert!(
        found.contains(&me.public_key),
        "the non-custodial announcement is stored"
    );
    assert_eq!(
        relay
            .stats()
            .closed_with_error
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}
