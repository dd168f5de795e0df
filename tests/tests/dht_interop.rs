//! dht-rpc / hyperdht live against the pinned JS reference (hyperdht 6.34.0, dht-rpc 6.27.0)
//! on 127.0.0.1 with explicit bootstrap lists: mixed DHTs in both directions, records written
//! by one side and read by the other, and JS peers connecting through a DHT of hyperpunch
//! nodes only.

use std::net::Ipv4Addr;
use std::time::Duration;

use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::{Dht, DhtOptions};
use hyperpunch_core::crypto;
use hyperpunch_tests::js_dht::JsDht;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);
const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn js(j: &mut JsDht, cmd: Value) -> Value {
    tokio::task::block_in_place(|| j.must(cmd, T))
}

fn hex32(v: &Value) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(v.as_str().expect("hex string"), &mut out).expect("32 hex bytes");
    out
}

async fn rust_node(bootstrap: &[String]) -> Dht {
    let d = Dht::bootstrap(DhtOptions::persistent(bootstrap.to_vec(), LOCAL, 0))
        .await
        .expect("rust node");
    d.wait_for(|i| !i.ephemeral).await.expect("persistent");
    d
}

async fn rust_bootstrapper() -> (Dht, String) {
    let (d, port) = hyperpunch_tests::local_dht::bootstrapper_on_a_free_port().await;
    (d, format!("127.0.0.1:{port}"))
}

async fn lookup_keys(d: &Dht, topic: [u8; 32]) -> Vec<[u8; 32]> {
    let mut l = d.lookup(topic);
    let mut keys = Vec::new();
    while let Some(r) = l.next().await {
        for p in r.peers {
            if !keys.contains(&p.public_key) {
                keys.push(p.public_key);
            }
        }
    }
    l.result().expect("ended").expect("lookup ok");
    keys
}

/// A JS DHT bootstraps from a hyperpunch bootstrap node; a JS node announces, a hyperpunch node
/// finds it, and the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_nodes_bootstrap_from_a_hyperpunch_bootstrapper() {
    let (boot, boot_addr) = rust_bootstrapper().await;
    assert!(!boot.info().ephemeral);
    let mut j = JsDht::spawn(Duration::from_secs(180)).unwrap();
    let started = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot_addr], "count": 8}),
    );
    let started = started.as_array().unwrap();
    for n in started {
        assert_eq!(n["ephemeral"], json!(false), "JS node got an id: {n}");
        assert!(n["table"].as_u64().unwrap() >= 1, "{n}");
    }
    let r1 = rust_node(std::slice::from_ref(&boot_addr)).await;
    let r2 = rust_node(std::slice::from_ref(&boot_addr)).await;
    assert!(r1.info().table_size >= 5, "{:?}", r1.info());

    // JS announces, Rust looks up.
    let topic = crypto::hash(b"js announces");
    let seed = "11".repeat(32);
    let a = js(
        &mut j,
        json!({"cmd": "announce", "node": 3, "topic": hex::encode(topic), "seed": seed}),
    );
    assert!(a["closest"].as_u64().unwrap() >= 5, "{a}");
    let js_key = KeyPair::from_seed(&[0x11; 32]).public_key;
    assert!(lookup_keys(&r1, topic).await.contains(&js_key));

    // Rust announces, JS looks up.
    let topic2 = crypto::hash(b"rust announces");
    let key = KeyPair::from_seed(&[0x22; 32]);
    let stored = r2.announce(topic2, &key, vec![]).await.unwrap();
    assert!(stored.len() >= 5, "{stored:?}");
    let found = js(
        &mut j,
        json!({"cmd": "lookup", "node": 5, "topic": hex::encode(topic2)}),
    );
    assert!(
        found["peers"]
            .as_array()
            .unwrap()
            .contains(&json!(hex::encode(key.public_key))),
        "{found}"
    );
    js(&mut j, json!({"cmd": "exit"}));
}

/// A hyperpunch DHT bootstraps from a JS bootstrap node; records cross both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyperpunch_nodes_bootstrap_from_a_js_bootstrapper() {
    let mut j = JsDht::spawn(Duration::from_secs(180)).unwrap();
    // The script picks a free port itself, and picks another when one was taken before it bound.
    let b = js(&mut j, json!({"cmd": "bootstrapper"}));
    assert_eq!(b["ephemeral"], json!(false), "{b}");
    let port = b["port"].as_u64().expect("the bootstrapper's port");
    let boot = vec![format!("127.0.0.1:{port}")];
    let mut rs = Vec::new();
    for _ in 0..8 {
        rs.push(rust_node(&boot).await);
    }
    js(
        &mut j,
        json!({"cmd": "start", "bootstrap": boot, "count": 3}),
    );
    for r in &rs {
        let i = r.info();
        assert!(i.id.is_some() && !i.firewalled, "{i:?}");
    }
    let info = js(&mut j, json!({"cmd": "info", "node": 1}));
    assert!(
        info["table"].as_u64().unwrap() >= 8,
        "JS sees the Rust nodes: {info}"
    );

    // Mutable: Rust writes, JS reads; JS writes, Rust reads.
    let key = KeyPair::from_seed(&[0x33; 32]);
    rs[2]
        .mutable_put(&key, b"from rust".to_vec(), 4)
        .await
        .unwrap();
    let got = js(
        &mut j,
        json!({"cmd": "mutableGet", "node": 2, "publicKey": hex::encode(key.public_key)}),
    );
    assert_eq!(got, json!({"seq": 4, "value": "from rust"}));
    let put = js(
        &mut j,
        json!({"cmd": "mutablePut", "node": 1, "seed": "44".repeat(32), "value": "from js", "seq": 9}),
    );
    let got = rs[5]
        .mutable_get(hex32(&put["publicKey"]), 0)
        .await
        .unwrap()
        .expect("found");
    assert_eq!((got.seq, got.value.as_slice()), (9, &b"from js"[..]));

    // Immutable both ways.
    let hash = rs[1]
        .immutable_put(b"immutable from rust".to_vec())
        .await
        .unwrap();
    let got = js(
        &mut j,
        json!({"cmd": "immutableGet", "node": 2, "hash": hex::encode(hash)}),
    );
    assert_eq!(got, json!({"value": "immutable from rust"}));
    let put = js(
        &mut j,
        json!({"cmd": "immutablePut", "node": 1, "value": "immutable from js"}),
    );
    let got = rs[6].immutable_get(hex32(&put["hash"])).await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"immutable from js"[..]));

    // Unannounce from Rust removes the records JS would find.
    let topic = crypto::hash(b"come and go");
    let key = KeyPair::from_seed(&[0x55; 32]);
    rs[3].announce(topic, &key, vec![]).await.unwrap();
    let found = js(
        &mut j,
        json!({"cmd": "lookup", "node": 0, "topic": hex::encode(topic)}),
    );
    assert_eq!(found["peers"], json!([hex::encode(key.public_key)]));
    rs[3].unannounce(topic, &key).await.unwrap();
    let found = js(
        &mut j,
        json!({"cmd": "lookup", "node": 0, "topic": hex::encode(topic)}),
    );
    assert_eq!(found["peers"], json!([]), "{found}");
    js(&mut j, json!({"cmd": "exit"}));
}

/// Two JS peers find each other and connect (Noise, holepunch, UDX) through a DHT made of
/// hyperpunch nodes only: FIND_PEER, the self-announce, and the router relaying
/// PEER_HANDSHAKE / PEER_HOLEPUNCH are all ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_peers_connect_through_a_hyperpunch_dht() {
    let (_boot, boot_addr) = rust_bootstrapper().await;
    let mut rs = Vec::new();
    for _ in 0..6 {
        rs.push(rust_node(std::slice::from_ref(&boot_addr)).await);
    }
    let mut j = JsDht::spawn(Duration::from_secs(180)).unwrap();
    // Ephemeral, firewalled JS peers (as a laptop behind a NAT would be).
    let peers = js(
        &mut j,
        json!({"cmd": "start", "bootstrap": [boot_addr], "count": 2, "ephemeral": true, "firewalled": true}),
    );
    assert_eq!(peers[0]["ephemeral"], json!(true));
    // Topic discovery through our DHT.
    let topic = crypto::hash(b"meet here");
    js(
        &mut j,
        json!({"cmd": "announce", "node": 0, "topic": hex::encode(topic), "seed": "66".repeat(32)}),
    );
    let found = js(
        &mut j,
        json!({"cmd": "lookup", "node": 1, "topic": hex::encode(topic)}),
    );
    let server_key = KeyPair::from_seed(&[0x66; 32]).public_key;
    assert_eq!(found["peers"], json!([hex::encode(server_key)]));
    // And a connection by public key.
    let l = js(
        &mut j,
        json!({"cmd": "listen", "node": 0, "seed": "77".repeat(32)}),
    );
    let c = js(
        &mut j,
        json!({"cmd": "connect", "node": 1, "publicKey": l["publicKey"], "message": "hello through hyperpunch"}),
    );
    assert_eq!(c["echo"], json!("hello through hyperpunch"));
    let forwards: usize = rs.iter().map(|r| r.info().stored.3).sum();
    assert!(
        forwards >= 1,
        "a hyperpunch node holds the server's forward entry"
    );
    js(&mut j, json!({"cmd": "exit"}));
}
