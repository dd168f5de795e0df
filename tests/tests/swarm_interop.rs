//! hyperswarm live: hyperpunch swarms with each other and with the pinned JS hyperswarm
//! (4.17.2) on 127.0.0.1 DHTs with explicit bootstrap lists: peers found by topic, one
//! connection per pair (JS's tie-break on both sides of a mixed pair), and hypercore
//! replication by discovery key both ways.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::{Dht, DhtOptions};
use hyperpunch::swarm::{JoinOptions, Swarm, SwarmConnection, SwarmOptions};

const T: Duration = Duration::from_secs(60);
const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A hyperpunch testnet: a bootstrapper and `n - 1` persistent nodes on 127.0.0.1.
async fn rust_testnet(n: usize) -> (Vec<Dht>, String) {
    let (boot, port) = hyperpunch_tests::local_dht::bootstrapper_on_a_free_port().await;
    let addr = format!("127.0.0.1:{port}");
    let mut nodes = vec![boot];
    for _ in 1..n {
        let d = Dht::bootstrap(DhtOptions::persistent(vec![addr.clone()], LOCAL, 0))
            .await
            .expect("node");
        d.wait_for(|i| !i.ephemeral).await.expect("persistent");
        nodes.push(d);
    }
    (nodes, addr)
}

async fn rust_swarm(boot: &str, seed: u8) -> Swarm {
    let dht = DhtOptions {
        ephemeral: Some(true),
        ..DhtOptions::on(LOCAL, &[boot.parse().unwrap()])
    };
    let dht = Arc::new(Dht::bootstrap(dht).await.expect("bootstrap"));
    let opts = SwarmOptions {
        key_pair: Some(KeyPair::from_seed(&[seed; 32])),
        ..SwarmOptions::new(DhtOptions::default())
    };
    Swarm::with_dht(dht, opts).expect("swarm")
}

/// What one side's application saw: every connection the swarm handed out, run as a
/// message pipe (so that a duplicate the other side destroys ends and tells the swarm).
struct Side {
    swarm: Arc<tokio::sync::Mutex<Swarm>>,
    conns: Arc<std::sync::Mutex<Vec<Seen>>>,
    messages: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    public_key: [u8; 32],
}

struct Seen {
    remote: [u8; 32],
    client: bool,
    tx: hyperpunch::dht::ConnectionSender,
}

impl Side {
    fn new(swarm: Swarm) -> Side {
        let public_key = swarm.key_pair().public_key;
        let swarm = Arc::new(tokio::sync::Mutex::new(swarm));
        let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (mtx, messages) = tokio::sync::mpsc::unbounded_channel();
        let (s2, c2) = (swarm.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let c: Option<SwarmConnection> = {
                    let mut g = s2.lock().await;
                    tokio::time::timeout(Duration::from_millis(50), g.accept())
                        .await
                        .unwrap_or(None)
                };
                let Some(c) = c else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let (remote, client) = (c.remote_public_key(), c.is_client());
                let (tx, mut rx) = c.into_messages().split();
                c2.lock().unwrap().push(Seen { remote, client, tx });
                let mtx = mtx.clone();
                tokio::spawn(async move {
                    while let Some(Ok(m)) = rx.recv().await {
                        let _ = mtx.send(m);
                    }
                });
            }
        });
        Side {
            swarm,
            conns,
            messages,
            public_key,
        }
    }

    /// One connection open, and every connection handed out already seen here.
    async fn open(&self) -> usize {
        let (stats, open) = self.swarm.lock().await.stats().await;
        let seen = self.conns.lock().unwrap().len() as u64;
        if seen == stats.client_opened + stats.server_opened {
            open
        } else {
            usize::MAX
        }
    }
}

/// Waits until both sides hold exactly one open connection (duplicates closed).
async fn settle(a: &Side, b: &Side) {
    let until = tokio::time::Instant::now() + T;
    loop {
        if a.open().await == 1 && b.open().await == 1 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "one connection each in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `m` on every connection `from` saw (only one is alive) and checks `to` gets it.
async fn exchange(from: &Side, to: &mut Side, m: &[u8]) {
    let senders: Vec<_> = {
        let g = from.conns.lock().unwrap();
        g.iter().map(|s| s.tx.clone()).collect()
    };
    for tx in senders {
        let _ = tx.send(m.to_vec()).await;
    }
    let got = tokio::time::timeout(T, to.messages.recv())
        .await
        .expect("a message in time")
        .expect("a message");
    assert_eq!(got, m);
}

/// Two hyperpunch swarms join a topic as server and client both: each finds the other, both
/// may dial at once, and one connection survives on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_swarms_find_each_other_and_keep_one_connection() {
    let (_nodes, boot) = rust_testnet(4).await;
    let topic = [42u8; 32];
    let a = rust_swarm(&boot, 1).await;
    let b = rust_swarm(&boot, 2).await;
    let (da, db) = tokio::join!(
        a.join(topic, JoinOptions::default()),
        b.join(topic, JoinOptions::default())
    );
    assert!(tokio::time::timeout(T, da.flushed()).await.unwrap());
    assert!(tokio::time::timeout(T, db.flushed()).await.unwrap());
    // Refresh once more so that each surely looked the other up after both announced.
    tokio::join!(
        da.refresh(JoinOptions::default()),
        db.refresh(JoinOptions::default())
    );
    let a = Side::new(a);
    let mut b = Side::new(b);
    settle(&a, &b).await;
    exchange(&a, &mut b, b"from a").await;
    let mut a = a;
    exchange(&b, &mut a, b"from b").await;
    let last = |s: &Side| {
        let g = s.conns.lock().unwrap();
        let l = g.last().unwrap();
        (l.remote, l.client)
    };
    let (ra, client_a) = last(&a);
    let (rb, client_b) = last(&b);
    assert_eq!(ra, b.public_key);
    assert_eq!(rb, a.public_key);
    assert_ne!(client_a, client_b, "one dialed, the other accepted");
}

mod js {
    use super::*;
    use hyperpunch::core::replication::{Options, ReplicationHub, Replicator};
    use hyperpunch::hypercore::core::{CreateOptions, Hypercore};
    use hyperpunch::replicate::{replicate_connection, SharedHub};
    use hyperpunch::storage::MemoryStorage;
    use hyperpunch_tests::js_dht::JsDht;
    use serde_json::{json, Value};

    fn js(j: &mut JsDht, cmd: Value) -> Value {
        tokio::task::block_in_place(|| j.must(cmd, T))
    }

    fn hex32(v: &Value) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(v.as_str().expect("hex string"), &mut out).expect("32 hex bytes");
        out
    }

    fn peer() -> JsDht {
        JsDht::spawn_script("swarm-peer.js", Duration::from_secs(150)).expect("node")
    }

    /// A JS testnet of four nodes; returns its bootstrap.
    fn js_testnet(j: &mut JsDht) -> String {
        let first = js(j, json!({"cmd": "start", "bootstrap": [], "count": 1}));
        let boot = format!("127.0.0.1:{}", first[0]["port"]);
        js(j, json!({"cmd": "start", "bootstrap": [boot], "count": 3}));
        boot
    }

    fn exit(j: &mut JsDht) {
        let _ = tokio::task::block_in_place(|| j.call(json!({"cmd": "exit"}), T));
    }

    /// A JS hyperswarm and a hyperpunch one join a topic as server and client both: after
    /// duplicates settle, each holds one connection, the same stream (a message crosses it
    /// both ways), with one side the initiator. Both key orders.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mixed_pair_keeps_one_connection() {
        for (js_seed, rust_seed) in [(3u8, 4u8), (4, 3)] {
            let mut j = peer();
            let boot = js_testnet(&mut j);
            let topic = hex::encode([9u8; 32]);
            let s = js(
                &mut j,
                json!({"cmd": "swarm", "bootstrap": [boot], "seed": hex::encode([js_seed; 32])}),
            );
            let rust = rust_swarm(&boot, rust_seed).await;
            let d = rust.join([9u8; 32], JoinOptions::default()).await;
            js(
                &mut j,
                json!({"cmd": "join", "swarm": s["index"], "topic": topic}),
            );
            assert!(tokio::time::timeout(T, d.flushed()).await.unwrap());
            // Both announced: look again so that both surely find the other.
            d.refresh(JoinOptions::default()).await;
            js(
                &mut j,
                json!({"cmd": "join", "swarm": s["index"], "topic": topic}),
            );
            let mut side = Side::new(rust);
            let until = tokio::time::Instant::now() + T;
            let theirs = loop {
                let c = js(&mut j, json!({"cmd": "connections", "swarm": s["index"]}));
                let open = c["open"].as_array().unwrap().clone();
                if open.len() == 1 && side.open().await == 1 {
                    break open[0].clone();
                }
                assert!(
                    tokio::time::Instant::now() < until,
                    "one connection each in time: js {c}, rust {}",
                    side.open().await
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert_eq!(hex32(&theirs["remotePublicKey"]), side.public_key);
            let senders: Vec<_> = {
                let g = side.conns.lock().unwrap();
                let last = g.last().unwrap();
                assert_eq!(last.remote, hex32(&s["publicKey"]));
                assert_ne!(
                    last.client,
                    theirs["isInitiator"].as_bool().unwrap(),
                    "one side initiated"
                );
                g.iter().map(|s| s.tx.clone()).collect()
            };
            for tx in senders {
                let _ = tx.send(b"from rust".to_vec()).await;
            }
            js(
                &mut j,
                json!({"cmd": "send", "swarm": s["index"], "message": "from js"}),
            );
            let got = tokio::time::timeout(T, side.messages.recv())
                .await
                .expect("in time")
                .unwrap();
            assert_eq!(got, b"from js");
            let until = tokio::time::Instant::now() + T;
            loop {
                let c = js(&mut j, json!({"cmd": "connections", "swarm": s["index"]}));
                if c["received"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m == "from rust")
                {
                    break;
                }
                assert!(tokio::time::Instant::now() < until, "js got the message");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            exit(&mut j);
        }
    }

    async fn wait_for_length(hub: &SharedHub<MemoryStorage>, dk: &[u8; 32], n: u64) {
        let until = tokio::time::Instant::now() + T;
        loop {
            let changed = hub.changed().notified();
            {
                let g = hub.lock().await;
                let c = g.replicator(dk).unwrap().core();
                if c.length() >= n && c.contiguous_length() >= n {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < until, "downloaded in time");
            let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
        }
    }

    /// Replicates every connection of `swarm` with `hub` until the swarm stops.
    fn serve_hub(mut swarm: Swarm, hub: SharedHub<MemoryStorage>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Some(c) = swarm.accept().await {
                let hub = hub.clone();
                tokio::spawn(async move {
                    let _ = replicate_connection(c.into_raw(), &hub).await;
                });
            }
        })
    }

    /// A JS hyperswarm seeds a hypercore under its discovery key; a hyperpunch swarm finds it
    /// by that key alone and downloads every block.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn js_serves_hyperpunch_fetches_by_topic() {
        let mut j = peer();
        let boot = js_testnet(&mut j);
        let s = js(
            &mut j,
            json!({"cmd": "swarm", "bootstrap": [boot], "seed": hex::encode([5u8; 32])}),
        );
        let dir = tempfile::tempdir().unwrap();
        let created = js(
            &mut j,
            json!({"cmd": "createCore", "swarm": s["index"], "dir": dir.path().join("js"), "blocks": 100}),
        );
        js(
            &mut j,
            json!({"cmd": "join", "swarm": s["index"], "topic": created["discoveryKey"], "client": false}),
        );
        let key = hex32(&created["key"]);
        let core = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key: Some(key),
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
        let dk = *core.discovery_key();
        assert_eq!(dk, hex32(&created["discoveryKey"]));
        let mut hub = ReplicationHub::new();
        hub.add_core(Replicator::new(core, Options::default()))
            .unwrap();
        hub.replicator_mut(&dk)
            .unwrap()
            .download(0, 0, None)
            .await
            .unwrap();
        let hub = SharedHub::new(hub);
        let swarm = rust_swarm(&boot, 6).await;
        let d = swarm
            .join(
                dk,
                JoinOptions {
                    server: false,
                    ..JoinOptions::default()
                },
            )
            .await;
        let task = serve_hub(swarm, hub.clone());
        assert!(tokio::time::timeout(T, d.flushed()).await.unwrap());
        wait_for_length(&hub, &dk, 100).await;
        let g = hub.lock().await;
        let c = g.replicator(&dk).unwrap().core();
        c.verify_all().await.unwrap();
        for i in [0u64, 42, 99] {
            assert_eq!(
                c.get(i).await.unwrap().as_deref(),
                Some(format!("block {i}").as_bytes())
            );
        }
        drop(g);
        task.abort();
        exit(&mut j);
    }

    /// The reverse: a hyperpunch swarm seeds a hypercore under its discovery key; a JS
    /// hyperswarm looks the key up and downloads it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hyperpunch_serves_js_fetches_by_topic() {
        let mut j = peer();
        let boot = js_testnet(&mut j);
        let mut core = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[8; 32])),
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
        let blocks: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("block {i}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        core.append(&refs).await.unwrap();
        let (key, dk) = (*core.key(), *core.discovery_key());
        let mut hub = ReplicationHub::new();
        hub.add_core(Replicator::new(
            core,
            Options {
                downloading: false,
                ..Options::default()
            },
        ))
        .unwrap();
        let hub = SharedHub::new(hub);
        let swarm = rust_swarm(&boot, 7).await;
        let d = swarm
            .join(
                dk,
                JoinOptions {
                    client: false,
                    ..JoinOptions::default()
                },
            )
            .await;
        let task = serve_hub(swarm, hub.clone());
        assert!(tokio::time::timeout(T, d.flushed()).await.unwrap());
        let s = js(
            &mut j,
            json!({"cmd": "swarm", "bootstrap": [boot], "seed": hex::encode([9u8; 32])}),
        );
        let dir = tempfile::tempdir().unwrap();
        js(
            &mut j,
            json!({"cmd": "openCore", "swarm": s["index"], "dir": dir.path().join("js"), "key": hex::encode(key)}),
        );
        js(
            &mut j,
            json!({"cmd": "join", "swarm": s["index"], "topic": hex::encode(dk), "server": false}),
        );
        let got = js(
            &mut j,
            json!({"cmd": "download", "swarm": s["index"], "length": 100}),
        );
        assert_eq!(got["length"], 100);
        assert_eq!(got["blocks"][7], "block 7");
        assert_eq!(got["blocks"][99], "block 99");
        task.abort();
        exit(&mut j);
    }
}
