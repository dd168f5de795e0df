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
