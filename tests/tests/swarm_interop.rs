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

async fn next(s: &mut Swarm) -> SwarmConnection {
    tokio::time::timeout(T, s.accept())
        .await
        .expect("a connection in time")
        .expect("the swarm runs")
}

/// Two hyperpunch swarms join a topic as server and client both: each finds the other, the
/// two dial at once, and one connection survives on both sides, the one the larger key dialed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_swarms_find_each_other_and_keep_one_connection() {
    let (_nodes, boot) = rust_testnet(4).await;
    let topic = [42u8; 32];
    let mut a = rust_swarm(&boot, 1).await;
    let mut b = rust_swarm(&boot, 2).await;
    let (da, db) = tokio::join!(
        a.join(topic, JoinOptions::default()),
        b.join(topic, JoinOptions::default())
    );
    assert!(tokio::time::timeout(T, da.flushed()).await.unwrap());
    assert!(tokio::time::timeout(T, db.flushed()).await.unwrap());
    // Refresh once more so that each surely looked the other up after both announced.
    da.refresh(JoinOptions::default()).await;
    db.refresh(JoinOptions::default()).await;
    let ca = next(&mut a).await;
    let cb = next(&mut b).await;
    assert_eq!(ca.remote_public_key(), b.key_pair().public_key);
    assert_eq!(cb.remote_public_key(), a.key_pair().public_key);
    assert_ne!(
        ca.is_client(),
        cb.is_client(),
        "one dialed, the other accepted"
    );
    let a_dials = a.key_pair().public_key > b.key_pair().public_key;
    assert_eq!(
        ca.is_client(),
        a_dials,
        "the larger key's connection survives"
    );
    let mut ma = ca.into_messages();
    let mut mb = cb.into_messages();
    ma.send(b"from a".to_vec()).await.unwrap();
    mb.send(b"from b".to_vec()).await.unwrap();
    assert_eq!(mb.recv().await.unwrap().unwrap(), b"from a");
    assert_eq!(ma.recv().await.unwrap().unwrap(), b"from b");
    // Let any duplicate settle: still exactly one connection each.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.stats().await.1, 1);
    assert_eq!(b.stats().await.1, 1);
    assert!(tokio::time::timeout(Duration::from_millis(200), a.accept())
        .await
        .is_err());
}
