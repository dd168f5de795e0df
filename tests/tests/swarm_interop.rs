//! hyperswarm live: hyperpunch swarms with each other and with the pinned JS hyperswarm
//! (4.17.2) on 127.0.0.1 DHTs with explicit bootstrap lists: peers found by topic, one
//! connection per pair (JS's tie-break on both sides of a mixed pair), and hypercore
//! replication by discovery key both ways.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::{Dht, DhtOptions};
use hyperpunch::swarm::{JoinOptions, Swarm, SwarmConnection, SwarmOptions};

const T: Duration = Duration::from_secs(60);
const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A hyperpunch testnet: a bootstrapper and `n - 1` persistent nodes on 127.0.0.1.
async fn rust_testnet(n: usize) -> (Vec<Dht>, String) {
    let probe = std::net::UdpSocket::bind((LOCAL, 0)).unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let boot = Dht::bootstrap(DhtOptions::bootstrapper(SocketAddrV4::new(LOCAL, port)))
        .await
        .expect("bootstrapper");
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

    async fn open(&self) -> usize {
        self.swarm.lock().await.stats().await.1
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
