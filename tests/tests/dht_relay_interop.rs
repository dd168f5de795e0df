//! `hyperpunch relay` (the WebSocket relay for browsers) live against `@hyperswarm/dht-relay`
//! 0.4.3's JS client, on a loopback testnet with an explicit bootstrap list: the JS client
//! connects through our relay to a hyperpunch server, listens for a hyperpunch client, announces
//! and looks up; in non-custodial mode it connects through our relay to hyperpunch and JS
//! servers; and misbehaving clients are closed with their close codes while the relay goes on
//! serving.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyperpunch::core::protomux::{ChannelOptions, Protomux};
use hyperpunch::core::relay::dht_relay::{close_code, Keys, Limits, Message, PROTOCOL};
use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::{ConnectOptions, Dht, DhtOptions, ServerOptions};
use hyperpunch::dht_relay::{RelayOptions, WsRelay};
use hyperpunch_tests::js_dht::JsDht;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const T: Duration = Duration::from_secs(60);

fn js(j: &mut JsDht, cmd: Value) -> Value {
    tokio::task::block_in_place(|| j.must(cmd, T))
}

fn relay_peer() -> JsDht {
    JsDht::spawn_script("dht-relay-peer.js", Duration::from_secs(150)).expect("node")
}

/// A JS testnet of `n` nodes; returns its bootstrap.
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
    tokio::time::timeout(T, d.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    Arc::new(d)
}

async fn relay(boot: &str, opts: RelayOptions) -> WsRelay {
    let peer = rust_peer(boot).await;
    WsRelay::bind(SocketAddr::from(([127, 0, 0, 1], 0)), peer, opts)
        .await
        .expect("relay binds")
}

/// An echo server on its own DHT node.
async fn echo_server(peer: &Dht, kp: KeyPair) {
    let mut server = tokio::time::timeout(T, peer.listen(kp, ServerOptions::default()))
        .await
        .expect("listening in time")
        .expect("listening");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_dht_relay_client_through_our_relay() {
    let mut j = relay_peer();
    let boot = js_testnet(&mut j, 4);
    let relay = relay(&boot, RelayOptions::default()).await;
    let url = format!("ws://{}", relay.local_addr());

    // A hyperpunch server the JS client connects to through the relay.
    let server_peer = rust_peer(&boot).await;
    let server_kp = KeyPair::from_seed(&[7; 32]);
    echo_server(&server_peer, server_kp.clone()).await;

    let c = js(
        &mut j,
        json!({"cmd": "client", "url": url, "seed": "02".repeat(32)}),
    );
    assert_eq!(
        c["publicKey"],
        hex::encode(KeyPair::from_seed(&[2; 32]).public_key)
    );
    let r = js(
        &mut j,
        json!({"cmd": "connect", "publicKey": hex::encode(server_kp.public_key), "message": "hello through the relay"}),
    );
    assert_eq!(r["echo"], "hello through the relay");
    assert_eq!(r["remotePublicKey"], hex::encode(server_kp.public_key));

    // The JS client listens through the relay; a hyperpunch client connects to it.
    let l = js(&mut j, json!({"cmd": "listen", "seed": "03".repeat(32)}));
    let listen_pk = KeyPair::from_seed(&[3; 32]).public_key;
    assert_eq!(l["publicKey"], hex::encode(listen_pk));
    let mut conn = tokio::time::timeout(
        T,
        server_peer.connect(
            listen_pk,
            KeyPair::from_seed(&[4; 32]),
            ConnectOptions::default(),
        ),
    )
    .await
    .expect("connect in time")
    .expect("connected to the relayed server");
    assert_eq!(conn.remote_public_key(), listen_pk);
    conn.send(b"to the browser side".to_vec()).await.unwrap();
    let echo = tokio::time::timeout(T, conn.recv())
        .await
        .expect("echo in time")
        .expect("a message")
        .unwrap();
    assert_eq!(echo, b"to the browser side");
    assert_eq!(js(&mut j, json!({"cmd": "serverStats"}))["connections"], 1);

    // Records: announce through the relay, look up through the relay.
    let topic = hex::encode([0x42; 32]);
    js(
        &mut j,
        json!({"cmd": "announce", "topic": topic, "seed": "05".repeat(32)}),
    );
    let found = js(&mut j, json!({"cmd": "lookup", "topic": topic}));
    let peers: Vec<String> = serde_json::from_value(found["peers"].clone()).unwrap();
    assert!(
        peers.contains(&hex::encode(KeyPair::from_seed(&[5; 32]).public_key)),
        "the announced key is found: {peers:?}"
    );
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}

/// The JS client in non-custodial mode (`{ custodial: false }`): its secret key stays in the
/// client, which answers our relay's `noiseSend`/`noiseReceive` and runs secret-stream itself;
/// it connects through our relay to a hyperpunch server and to a JS hyperdht server, announces,
/// and listens (a hyperpunch client connects to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_non_custodial_client_through_our_relay() {
    let mut j = relay_peer();
    let boot = js_testnet(&mut j, 4);
    let relay = relay(&boot, RelayOptions::default()).await;
    let url = format!("ws://{}", relay.local_addr());
    let server_peer = rust_peer(&boot).await;
    let server_kp = KeyPair::from_seed(&[7; 32]);
    echo_server(&server_peer, server_kp.clone()).await;
    let js_server = js(
        &mut j,
        json!({"cmd": "dhtListen", "bootstrap": [boot], "seed": "08".repeat(32)}),
    );

    js(
        &mut j,
        json!({"cmd": "client", "url": url, "seed": "02".repeat(32), "custodial": false}),
    );
    for (pk, msg) in [
        (
            hex::encode(server_kp.public_key),
            "non-custodial to hyperpunch",
        ),
        (
            js_server["publicKey"].as_str().unwrap().to_string(),
            "non-custodial to a JS hyperdht server",
        ),
    ] {
        let r = js(
            &mut j,
            json!({"cmd": "connect", "publicKey": pk, "message": msg}),
        );
        assert_eq!(r["echo"], msg);
        assert_eq!(r["remotePublicKey"], pk);
    }
    // Announce signed by the JS client (signAnnounce), found by a lookup through the relay
    // (through a JS 0.4.3 relay the same records are not stored: see the README).
    let topic = hex::encode([0x46; 32]);
    js(
        &mut j,
        json!({"cmd": "announce", "topic": topic, "seed": "06".repeat(32)}),
    );
    let found = js(&mut j, json!({"cmd": "lookup", "topic": topic}));
    let peers: Vec<String> = serde_json::from_value(found["peers"].clone()).unwrap();
    assert!(
        peers.contains(&hex::encode(KeyPair::from_seed(&[6; 32]).public_key)),
        "the non-custodial announcement is stored: {peers:?}"
    );
    // A non-custodial listen: the relay announces the JS client's server with its signatures
    // and hands it each handshake (noiseReceive/noiseSend); a hyperpunch client connects and
    // the echo runs over the JS client's own secret-stream.
    let l = js(&mut j, json!({"cmd": "listen", "seed": "09".repeat(32)}));
    let listen_pk = KeyPair::from_seed(&[9; 32]).public_key;
    assert_eq!(l["publicKey"], hex::encode(listen_pk));
    let mut conn = tokio::time::timeout(
        T,
        server_peer.connect(
            listen_pk,
            KeyPair::from_seed(&[10; 32]),
            ConnectOptions::default(),
        ),
    )
    .await
    .expect("connect in time")
    .expect("connected to the non-custodial server through the relay");
    assert_eq!(conn.remote_public_key(), listen_pk);
    conn.send(b"to the non-custodial server".to_vec())
        .await
        .unwrap();
    let echo = tokio::time::timeout(T, conn.recv())
        .await
        .expect("echo in time")
        .expect("a message")
        .unwrap();
    assert_eq!(echo, b"to the non-custodial server");
    assert_eq!(relay.stats().closed_with_error.load(Ordering::Relaxed), 0);
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn ws_connect(relay: &WsRelay) -> Ws {
    let tcp = tokio::net::TcpStream::connect(relay.local_addr())
        .await
        .unwrap();
    let url = format!("ws://{}/", relay.local_addr());
    tokio_tungstenite::client_async(url, tcp).await.unwrap().0
}

/// Reads until the relay closes; returns its close code (None: the connection just ended).
async fn close_code_of(ws: &mut Ws) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(WsMessage::Close(Some(f)))) => return Some(u16::from(f.code)),
            Some(Ok(WsMessage::Close(None))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// A client speaking the relay protocol: its protomux frames.
struct Proto {
    mux: Protomux,
    ch: hyperpunch::core::protomux::ChannelId,
}

impl Proto {
    fn new() -> Proto {
        let mut mux = Protomux::new();
        let ch = mux.open(ChannelOptions::new(PROTOCOL)).unwrap();
        Proto { mux, ch }
    }
    fn frames(&mut self, m: &Message) -> Vec<Vec<u8>> {
        self.mux
            .send(self.ch, m.message_type(), &m.encode())
            .unwrap();
        std::iter::from_fn(|| self.mux.poll_transmit()).collect()
    }
}

fn keys(kp: &KeyPair) -> Keys {
    Keys {
        public_key: kp.public_key,
        secret_key: Some(kp.secret_key),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_are_closed_and_the_relay_goes_on() {
    let mut j = relay_peer();
    let boot = js_testnet(&mut j, 3);
    let opts = RelayOptions {
        limits: Limits {
            high_water: 64 * 1024,
            stall_timeout: Duration::from_millis(500),
            max_streams: 4,
            ..Limits::default()
        },
        max_message: 64 * 1024,
        ..RelayOptions::default()
    };
    let relay = relay(&boot, opts).await;

    // Garbage: not a protomux frame.
    let mut ws = ws_connect(&relay).await;
    ws.send(WsMessage::Binary(vec![0xff; 40].into()))
        .await
        .unwrap();
    assert_eq!(
        close_code_of(&mut ws).await,
        Some(close_code::PROTOCOL_ERROR)
    );

    // A frame over the size limit.
    let mut ws = ws_connect(&relay).await;
    ws.send(WsMessage::Binary(vec![0; 65 * 1024].into()))
        .await
        .unwrap();
    assert_eq!(
        close_code_of(&mut ws).await,
        Some(close_code::MESSAGE_TOO_BIG)
    );

    // A text frame.
    let mut ws = ws_connect(&relay).await;
    ws.send(WsMessage::Text("hello".into())).await.unwrap();
    assert_eq!(
        close_code_of(&mut ws).await,
        Some(close_code::UNSUPPORTED_DATA)
    );

    // Too many streams (to a server that keeps them open).
    let echo_peer = rust_peer(&boot).await;
    let echo_kp = KeyPair::from_seed(&[10; 32]);
    echo_server(&echo_peer, echo_kp.clone()).await;
    let mut ws = ws_connect(&relay).await;
    let mut p = Proto::new();
    let me = KeyPair::from_seed(&[9; 32]);
    for f in p.frames(&Message::Handshake(keys(&me))) {
        ws.send(WsMessage::Binary(f.into())).await.unwrap();
    }
    for alias in 0..5 {
        for f in p.frames(&Message::Connect {
            alias,
            keys: keys(&me),
            remote_public_key: echo_kp.public_key,
        }) {
            ws.send(WsMessage::Binary(f.into())).await.unwrap();
        }
    }
    assert_eq!(
        close_code_of(&mut ws).await,
        Some(close_code::TOO_MANY_STREAMS)
    );

    // Disconnects in the middle of the WebSocket handshake, and right after the relay's.
    let mut tcp = tokio::net::TcpStream::connect(relay.local_addr())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    drop(tcp);
    let mut ws = ws_connect(&relay).await;
    for f in p.frames(&Message::Handshake(keys(&me))) {
        ws.send(WsMessage::Binary(f.into())).await.unwrap();
    }
    drop(ws);

    // A client that opens a stream to a server that floods it, and never reads.
    let flood_peer = rust_peer(&boot).await;
    let flood_kp = KeyPair::from_seed(&[8; 32]);
    let mut server = tokio::time::timeout(
        T,
        flood_peer.listen(flood_kp.clone(), ServerOptions::default()),
    )
    .await
    .unwrap()
    .unwrap();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let flood = tokio::spawn(async move {
        let c = server.accept().await.expect("the relay connects");
        while c.send(vec![7; 16 * 1024]).await.is_ok() {
            if counter.fetch_add(16 * 1024, Ordering::Relaxed) > 256 << 20 {
                break;
            }
        }
    });
    let mut ws = ws_connect(&relay).await;
    let mut p = Proto::new();
    for f in p.frames(&Message::Handshake(keys(&me))) {
        ws.send(WsMessage::Binary(f.into())).await.unwrap();
    }
    for f in p.frames(&Message::Connect {
        alias: 1,
        keys: keys(&me),
        remote_public_key: flood_kp.public_key,
    }) {
        ws.send(WsMessage::Binary(f.into())).await.unwrap();
    }
    // The relay stops reading the flood, then closes the session once it stalled.
    let deadline = tokio::time::Instant::now() + T;
    while relay.stats().sessions.load(Ordering::Relaxed) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "every session ends ({} sessions, {} streams left; the server sent {} bytes)",
            relay.stats().sessions.load(Ordering::Relaxed),
            relay.stats().streams.load(Ordering::Relaxed),
            sent.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relay.stats().streams.load(Ordering::Relaxed), 0);
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        sent < 256 << 20,
        "the relay stopped reading the flood (the peer got {sent} bytes out)"
    );
    flood.abort();
    assert!(relay.stats().closed_with_error.load(Ordering::Relaxed) >= 5);
    drop(ws);

    // The relay still serves: a JS client announces and looks up through it.
    let url = format!("ws://{}", relay.local_addr());
    js(&mut j, json!({"cmd": "client", "url": url}));
    let topic = hex::encode([0x43; 32]);
    js(
        &mut j,
        json!({"cmd": "announce", "topic": topic, "seed": "06".repeat(32)}),
    );
    let found = js(&mut j, json!({"cmd": "lookup", "topic": topic}));
    assert!(!found["peers"].as_array().unwrap().is_empty());
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}
