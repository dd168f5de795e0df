//! A hyperpunch DHT bootstrap node on 127.0.0.1 for the tests.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4};

use hyperpunch::dht::{Dht, DhtError, DhtOptions};

/// A bootstrapper on a free port of 127.0.0.1, and that port.
///
/// Port 0 cannot be a bootstrapper's public address, so a free port is picked first; another
/// process (tests run in parallel, and a birthday punch binds 256 sockets) may take it before the
/// bootstrapper binds it, so this tries again with another port then (at most 20 times).
pub async fn bootstrapper_on_a_free_port() -> (Dht, u16) {
    let local = Ipv4Addr::LOCALHOST;
    for _ in 0..20 {
        let probe = std::net::UdpSocket::bind((local, 0)).expect("a free UDP port");
        let port = probe.local_addr().expect("its address").port();
        drop(probe);
        match Dht::bootstrap(DhtOptions::bootstrapper(SocketAddrV4::new(local, port))).await {
            Ok(d) => return (d, port),
            Err(DhtError::Io(e)) if e.kind() == ErrorKind::AddrInUse => continue,
            Err(e) => panic!("bootstrapper on 127.0.0.1:{port}: {e}"),
        }
    }
    panic!("no free port for a bootstrapper in 20 tries");
}
