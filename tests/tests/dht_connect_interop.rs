//! hyperdht connections live against the pinned JS reference (hyperdht 6.34.0) on 127.0.0.1
//! with explicit bootstrap lists: a JS server and a hyperpunch client, a hyperpunch server and
//! a JS client, data both ways over secret-stream on UDX, on a DHT of JS nodes (which relay
//! the handshake and the holepunch rounds).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::{ConnectOptions, Dht, DhtError, DhtOptions, RelayServer, ServerOptions};
use hyperpunch_tests::js_dht::JsDht;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

fn js(j: &mut JsDht, cmd: Value) -> Value {
    tokio::task::block_in_place(|| j.must(cmd, T))
}

fn hex32(v: &Value) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(v.as_str().expect("hex string"), &mut out).expect("32 hex bytes");
    out
}

/// A JS testnet of `n` nodes (the first one bootstraps the rest); returns its bootstrap.
fn js_testnet(j: &mut JsDht, n: usize) -> String {
    let first = js(j, json!({"cmd": "start", "bootstrap": [], "count": 1}));
    let boot = format!("127.0.0.1:{}", first[0]["port"]);
    js(
        j,
        json!({"cmd": "start", "bootstrap": [boot], "count": n - 1}),
    );
    boot
}

/// A hyperpunch peer. Like the JS peers (`ephemeral: true`) it stays firewalled, so that
/// connections to and from it are holepunched, not direct.
async fn rust_peer(boot: &str) -> Dht {
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
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_connects_to_a_js_server() {
    let mut j = connect_peer();
    let boot = js_testnet(&mut j, 4);
    // The server's node is firewalled and ephemeral, as a user's machine: the client must punch.
    let server = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot], "count": 1, "ephemeral": true, "firewalled": true, "quickFirewall": false}),
    );
    let node = server[0]["index"].clone();
    let listen = js(
        &mut j,
        json!({"cmd": "listen", "node": node, "seed": "01".repeat(32), "shareLocalAddress": false}),
    );
    let pk = hex32(&listen["publicKey"]);
    let peer = rust_peer(&boot).await;
    assert!(
        peer.firewalled().await.unwrap().0,
        "the rust peer stays firewalled"
    );
    let mut conn = tokio::time::timeout(
        T,
        peer.connect(pk, KeyPair::from_seed(&[2; 32]), ConnectOptions::default()),
    )
    .await
    .expect("connect in time")
    .expect("connected");
    assert!(
        conn.is_holepunched(),
        "the path was punched (a puncher socket)"
    );
    assert_eq!(conn.remote_public_key(), pk);
    conn.send(b"hello from rust".to_vec()).await.unwrap();
    let echo = tokio::time::timeout(T, conn.recv())
        .await
        .expect("echo in time")
        .expect("a message")
        .unwrap();
    assert_eq!(echo, b"hello from rust");
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_connects_to_a_rust_server() {
    let mut j = connect_peer();
    let boot = js_testnet(&mut j, 4);
    let peer = rust_peer(&boot).await;
    let kp = KeyPair::from_seed(&[3; 32]);
    let mut server = tokio::time::timeout(
        T,
        peer.listen(
            kp.clone(),
            ServerOptions {
                no_local_address: true,
                ..ServerOptions::default()
            },
        ),
    )
    .await
    .expect("listening in time")
    .expect("listening");
    // Echo the first connection's messages.
    let echo = tokio::spawn(async move {
        let mut c = server.accept().await.expect("a connection");
        let punched = c.is_holepunched();
        while let Some(Ok(m)) = c.recv().await {
            c.send(m).await.unwrap();
        }
        (c.remote_public_key(), punched)
    });
    let client = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot], "count": 1, "ephemeral": true, "firewalled": true, "quickFirewall": false}),
    );
    let r = js(
        &mut j,
        json!({"cmd": "connect", "node": client[0]["index"], "publicKey": hex::encode(kp.public_key), "message": "hello from js"}),
    );
    assert_eq!(r["echo"], "hello from js");
    let (remote, punched) = tokio::time::timeout(T, echo)
        .await
        .expect("the client closed")
        .unwrap();
    assert_ne!(remote, kp.public_key, "the client's own key");
    assert!(punched, "the path was punched (a puncher socket): {r}");
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_is_peer_not_found() {
    let mut j = connect_peer();
    let boot = js_testnet(&mut j, 3);
    let peer = rust_peer(&boot).await;
    let r = tokio::time::timeout(
        T,
        peer.connect(
            KeyPair::from_seed(&[9; 32]).public_key,
            KeyPair::from_seed(&[2; 32]),
            ConnectOptions::default(),
        ),
    )
    .await
    .expect("answer in time");
    assert!(
        matches!(
            r,
            Err(DhtError::Connect(
                hyperpunch::dht::ConnectError::PeerNotFound
            ))
        ),
        "{:?}",
        r.err()
    );
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}

fn connect_peer() -> JsDht {
    JsDht::spawn_script("dht-connect-peer.js", Duration::from_secs(150)).expect("node")
}

/// A hyperpunch client through a JS blind relay to a JS server that asks for it
/// (`relayThrough` on the server, punching refused on both sides).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_through_a_js_blind_relay() {
    let mut j = connect_peer();
    let boot = js_testnet(&mut j, 4);
    let r = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot], "count": 1, "ephemeral": true, "firewalled": true, "quickFirewall": false}),
    );
    let relay = js(
        &mut j,
        json!({"cmd": "relay", "node": r[0]["index"], "seed": "05".repeat(32)}),
    );
    let s = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot], "count": 1, "ephemeral": true, "firewalled": true, "quickFirewall": false}),
    );
    let listen = js(
        &mut j,
        json!({"cmd": "listen", "node": s[0]["index"], "seed": "01".repeat(32), "relayThrough": relay["publicKey"], "holepunch": false, "shareLocalAddress": false}),
    );
    let pk = hex32(&listen["publicKey"]);
    let peer = rust_peer(&boot).await;
    let opts = ConnectOptions {
        holepunch: false,
        ..ConnectOptions::default()
    };
    let mut conn = tokio::time::timeout(T, peer.connect(pk, KeyPair::from_seed(&[2; 32]), opts))
        .await
        .expect("connect in time")
        .expect("connected through the relay");
    assert!(conn.is_relayed());
    conn.send(b"via the js relay".to_vec()).await.unwrap();
    let echo = tokio::time::timeout(T, conn.recv())
        .await
        .expect("echo in time")
        .expect("a message")
        .unwrap();
    assert_eq!(echo, b"via the js relay");
    let stats = js(&mut j, json!({"cmd": "relayStats"}));
    assert_eq!(stats["matched"], 1, "{stats}");
    let ss = js(&mut j, json!({"cmd": "serverStats"}));
    assert_eq!(ss["relaying"]["successes"], 1, "{ss}");
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}

/// A JS client asks for a hyperpunch blind relay (`relayThrough`) to reach a JS server that
/// refuses to punch: the relay pairs them and relays the UDX stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_through_a_rust_blind_relay() {
    let mut j = connect_peer();
    let boot = js_testnet(&mut j, 4);
    let relay_peer = rust_peer(&boot).await;
    let relay = tokio::time::timeout(
        T,
        RelayServer::start(&relay_peer, KeyPair::from_seed(&[5; 32])),
    )
    .await
    .expect("relay listening in time")
    .expect("relay listening");
    let s = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot], "count": 1, "ephemeral": true, "firewalled": true, "quickFirewall": false}),
    );
    // No LAN shortcut (both on 127.0.0.1) and no punching: only the relay can connect them.
    let listen = js(
        &mut j,
        json!({"cmd": "listen", "node": s[0]["index"], "seed": "01".repeat(32), "holepunch": false, "shareLocalAddress": false}),
    );
    let c = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot], "count": 1, "ephemeral": true, "firewalled": true, "quickFirewall": false}),
    );
    let r = js(
        &mut j,
        json!({"cmd": "connect", "node": c[0]["index"], "publicKey": listen["publicKey"], "message": "via the rust relay", "relayThrough": hex::encode(relay.public_key()), "holepunch": false, "fastOpen": false, "localConnection": false}),
    );
    assert_eq!(r["echo"], "via the rust relay");
    assert!(
        r["remoteId"].as_u64().unwrap() >= 0x4000_0000,
        "the client's stream goes to a relay stream: {r}"
    );
    let ss = js(&mut j, json!({"cmd": "serverStats"}));
    assert_eq!(
        ss["relaying"]["successes"],
        1,
        "{ss} client {r} relay at {}",
        relay_peer.local_addr()
    );
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}

/// hyperpunch on both ends and as the relay, with a JS DHT in between: the server asks for
/// the relay and refuses to punch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_peers_through_a_rust_relay() {
    let mut j = connect_peer();
    let boot = js_testnet(&mut j, 4);
    let relay_peer = rust_peer(&boot).await;
    let relay = RelayServer::start(&relay_peer, KeyPair::from_seed(&[5; 32]))
        .await
        .expect("relay");
    let server_peer = rust_peer(&boot).await;
    let kp = KeyPair::from_seed(&[6; 32]);
    let opts = ServerOptions {
        relay_through: Some(relay.public_key()),
        never_punch: true,
        ..ServerOptions::default()
    };
    let mut server = tokio::time::timeout(T, server_peer.listen(kp.clone(), opts))
        .await
        .expect("in time")
        .expect("listening");
    tokio::spawn(async move {
        let mut c = server.accept().await.expect("a connection");
        while let Some(Ok(m)) = c.recv().await {
            c.send(m).await.unwrap();
        }
    });
    let client_peer = rust_peer(&boot).await;
    let opts = ConnectOptions {
        holepunch: false,
        ..ConnectOptions::default()
    };
    let mut conn = tokio::time::timeout(
        T,
        client_peer.connect(kp.public_key, KeyPair::from_seed(&[7; 32]), opts),
    )
    .await
    .expect("in time")
    .expect("connected");
    let relay_addr = relay_peer.local_addr();
    assert_eq!(conn.remote_addr().ip(), relay_addr.ip());
    assert!(conn.is_relayed());
    for i in 0..20u8 {
        conn.send(vec![i; 1000 * i as usize + 1]).await.unwrap();
        let echo = tokio::time::timeout(T, conn.recv())
            .await
            .expect("in time")
            .expect("a message")
            .unwrap();
        assert_eq!(echo, vec![i; 1000 * i as usize + 1]);
    }
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}

/// Both peers on one host (the same public address): the client pings the server's shared
/// LAN address from its server socket and connects there, without punching (JS's LAN
/// shortcut), in both directions. The shortcut races the punch; without fast open (the server's
/// early probe) the punch needs a second round, so the shortcut wins every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_shortcut_both_ways() {
    let mut j = connect_peer();
    let boot = js_testnet(&mut j, 4);
    let s = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot], "count": 1, "ephemeral": true, "firewalled": true, "quickFirewall": false}),
    );
    let listen = js(
        &mut j,
        json!({"cmd": "listen", "node": s[0]["index"], "seed": "01".repeat(32)}),
    );
    let peer = rust_peer(&boot).await;
    let mut conn = tokio::time::timeout(
        T,
        peer.connect(
            hex32(&listen["publicKey"]),
            KeyPair::from_seed(&[2; 32]),
            ConnectOptions {
                fast_open: false,
                ..ConnectOptions::default()
            },
        ),
    )
    .await
    .expect("in time")
    .expect("connected");
    assert!(
        !conn.is_holepunched() && !conn.is_relayed(),
        "the LAN path, on the DHT socket"
    );
    conn.send(b"lan".to_vec()).await.unwrap();
    assert_eq!(conn.recv().await.unwrap().unwrap(), b"lan");

    let kp = KeyPair::from_seed(&[3; 32]);
    let mut server = peer
        .listen(kp.clone(), ServerOptions::default())
        .await
        .expect("listening");
    tokio::spawn(async move {
        let mut c = server.accept().await.expect("a connection");
        while let Some(Ok(m)) = c.recv().await {
            c.send(m).await.unwrap();
        }
    });
    let c = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot], "count": 1, "ephemeral": true, "firewalled": true, "quickFirewall": false}),
    );
    let r = js(
        &mut j,
        json!({"cmd": "connect", "node": c[0]["index"], "publicKey": hex::encode(kp.public_key), "message": "lan from js", "fastOpen": false}),
    );
    assert_eq!(r["echo"], "lan from js");
    assert_eq!(
        r["remote"],
        format!("127.0.0.1:{}", peer.local_addr().port()),
        "JS connected to our server socket: {r}"
    );
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}

/// The server's firewall callback refuses a client: hyperpunch server refusing a JS client,
/// and a JS server refusing a hyperpunch client (PEER_CONNECTION_FAILED).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_refuses_clients_both_ways() {
    let mut j = connect_peer();
    let boot = js_testnet(&mut j, 4);
    let peer = rust_peer(&boot).await;
    let kp = KeyPair::from_seed(&[3; 32]);
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = refused.clone();
    let opts = ServerOptions {
        firewall: Some(Box::new(
            move |_pk: &[u8; 32],
                  _payload: &hyperpunch_core::dht::messages_connect::NoisePayload,
                  _from| {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                true
            },
        )),
        ..ServerOptions::default()
    };
    let mut server = peer.listen(kp.clone(), opts).await.expect("listening");
    let c = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot], "count": 1, "ephemeral": true, "firewalled": true, "quickFirewall": false}),
    );
    let r = tokio::task::block_in_place(|| {
        j.call(json!({"cmd": "connect", "node": c[0]["index"], "publicKey": hex::encode(kp.public_key), "message": "x"}), T)
    });
    assert_eq!(r, Err("PEER_CONNECTION_FAILED".to_string()));
    assert!(refused.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), server.accept())
            .await
            .is_err(),
        "no connection"
    );

    let s = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot], "count": 1, "ephemeral": true, "firewalled": true, "quickFirewall": false}),
    );
    let client_kp = KeyPair::from_seed(&[2; 32]);
    let listen = js(
        &mut j,
        json!({"cmd": "listen", "node": s[0]["index"], "seed": "01".repeat(32), "deny": [hex::encode(client_kp.public_key)]}),
    );
    let r = tokio::time::timeout(
        T,
        peer.connect(
            hex32(&listen["publicKey"]),
            client_kp,
            ConnectOptions::default(),
        ),
    )
    .await
    .expect("answer in time");
    assert!(
        matches!(
            r,
            Err(DhtError::Connect(
                hyperpunch::dht::ConnectError::PeerConnectionFailed
            ))
        ),
        "{:?}",
        r.err()
    );
    let ss = js(&mut j, json!({"cmd": "serverStats"}));
    assert!(
        ss["firewallCalls"].as_u64().unwrap() >= 1 && ss["connections"] == 0,
        "{ss}"
    );
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}

/// Beyond JS: the punch fails (the JS server refuses to punch) and the hyperpunch client,
/// configured with a deployment relay, connects again through it; without the fallback the
/// same connect fails with the punch error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_fallback_after_a_failed_punch() {
    let mut j = connect_peer();
    let boot = js_testnet(&mut j, 4);
    let r = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot], "count": 1, "ephemeral": true, "firewalled": true, "quickFirewall": false}),
    );
    let relay = js(
        &mut j,
        json!({"cmd": "relay", "node": r[0]["index"], "seed": "05".repeat(32)}),
    );
    let s = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot], "count": 1, "ephemeral": true, "firewalled": true, "quickFirewall": false}),
    );
    let listen = js(
        &mut j,
        json!({"cmd": "listen", "node": s[0]["index"], "seed": "01".repeat(32), "holepunch": false, "shareLocalAddress": false}),
    );
    let pk = hex32(&listen["publicKey"]);
    let boot_addr: SocketAddrV4 = boot.parse().unwrap();
    let options = |fallback: bool| DhtOptions {
        bootstrap: vec![boot_addr.to_string()],
        host: Ipv4Addr::LOCALHOST,
        ephemeral: Some(true),
        quick_firewall: false,
        relays: vec![hex32(&relay["publicKey"])],
        relay_fallback: fallback,
        ..DhtOptions::default()
    };
    let without = Dht::spawn(options(false)).await.unwrap();
    without.ready().await.unwrap();
    let r = tokio::time::timeout(
        T,
        without.connect(
            pk,
            KeyPair::from_seed(&[2; 32]),
            ConnectOptions {
                fast_open: false,
                ..ConnectOptions::default()
            },
        ),
    )
    .await
    .expect("in time");
    match r {
        Err(DhtError::Connect(e)) => assert!(e.is_punch_failure(), "{e}"),
        other => panic!(
            "expected a punch failure, got {:?}",
            other.map(|c| c.remote_addr())
        ),
    }
    let with = Dht::spawn(options(true)).await.unwrap();
    with.ready().await.unwrap();
    let mut conn = tokio::time::timeout(
        T,
        with.connect(
            pk,
            KeyPair::from_seed(&[2; 32]),
            ConnectOptions {
                fast_open: false,
                ..ConnectOptions::default()
            },
        ),
    )
    .await
    .expect("in time")
    .expect("connected through the fallback relay");
    assert!(conn.is_relayed());
    conn.send(b"fallback".to_vec()).await.unwrap();
    assert_eq!(conn.recv().await.unwrap().unwrap(), b"fallback");
    let stats = js(&mut j, json!({"cmd": "relayStats"}));
    assert_eq!(stats["matched"], 1, "{stats}");
    let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
}
