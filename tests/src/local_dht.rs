//! A hyperpunch DHT bootstrap node on 127.0.0.1 for the tests.

use std::net::{Ipv4Addr, SocketAddrV4};

use hyperpunch::dht::{Dht, DhtOptions};

/// A bootstrapper on a free port of 127.0.0.1, and that port.
///
/// It binds port 0 and takes the port it got as its public one: a port picked first and bound
/// later could be taken in between by another process (tests run in parallel, and a birthday
/// punch binds 256 sockets).
pub async fn bootstrapper_on_a_free_port() -> (Dht, u16) {
    let d = Dht::bootstrap(DhtOptions::bootstrapper(SocketAddrV4::new(
        Ipv4Addr::LOCALHOST,
        0,
    )))
    .await
    .unwrap_or_else(|e| panic!("a bootstrapper on 127.0.0.1: {e}"));
    let port = d
        .info()
        .server_addr
        .expect("a bootstrapper has a server socket")
        .port();
    assert_ne!(port, 0);
    (d, port)
}

/// How long one step of a local testnet may take: generous, the machine may be busy.
const STEP: std::time::Duration = std::time::Duration::from_secs(60);

/// A loopback testnet: a bootstrapper and `n - 1` persistent nodes. Returns the nodes (keep
/// them alive) and the bootstrap address.
pub async fn testnet(n: usize) -> (Vec<Dht>, String) {
    let (first, port) = tokio::time::timeout(STEP, bootstrapper_on_a_free_port())
        .await
        .expect("bootstrapper in time");
    let boot = format!("127.0.0.1:{port}");
    let mut nodes = vec![first];
    for _ in 1..n {
        let d = tokio::time::timeout(
            STEP,
            Dht::bootstrap(DhtOptions::persistent(
                vec![boot.clone()],
                Ipv4Addr::LOCALHOST,
                0,
            )),
        )
        .await
        .expect("node in time")
        .expect("node");
        nodes.push(d);
    }
    (nodes, boot)
}

/// An ephemeral node on 127.0.0.1 bootstrapped from `boot`.
pub async fn peer(boot: &str) -> Dht {
    let d = Dht::spawn(DhtOptions::on(
        Ipv4Addr::LOCALHOST,
        &[boot.parse().expect("a bootstrap address")],
    ))
    .await
    .expect("bind");
    tokio::time::timeout(STEP, d.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    d
}
