//! Fuzz a whole persistent hyperdht node (`dht::HyperDht`): a stream of arbitrary datagrams
//! from arbitrary IPv4 senders, on either socket, with time moving forward. Nothing panics, and
//! the node's state stays bounded (inflight requests, stored records).
//!
//! Input: repeated `[socket bit + time step][6-byte sender][u8 length][bytes]`.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use hyperpunch_core::dht::rpc::SocketId;
use hyperpunch_core::dht::{DhtConfig, HyperDht};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let public = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 49737);
    let mut now = Duration::from_secs(1_700_000_000);
    let mut cfg = DhtConfig::bootstrapper(public);
    cfg.rpc.bootstrap = vec![SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 49737)];
    let mut dht = HyperDht::new(cfg, now, [7; 32]);
    let mut rest = data;
    while rest.len() >= 8 {
        let ctl = rest[0];
        let from = SocketAddrV4::new(
            Ipv4Addr::new(rest[1], rest[2], rest[3], rest[4]),
            u16::from_le_bytes([rest[5], rest[6]]),
        );
        let len = (rest[7] as usize).min(rest.len() - 8);
        let bytes = &rest[8..8 + len];
        rest = &rest[8 + len..];
        now += Duration::from_millis((ctl >> 1) as u64 * 50);
        let socket = if ctl & 1 == 0 { SocketId::SERVER } else { SocketId::CLIENT };
        let _ = dht.handle_datagram(now, socket, SocketAddr::V4(from), bytes);
        if dht.poll_timeout().is_some_and(|t| t <= now) {
            dht.handle_timeout(now);
        }
        while dht.poll_transmit().is_some() {}
        while dht.poll_event().is_some() {}
        assert!(dht.rpc().inflight() <= dht.rpc().config().limits.max_inflight);
    }
});
