//! The DHT against bad input: malformed, truncated and oversized datagrams, forged tokens,
//! bad signatures, floods from one address and from many, write floods that would fill the
//! store. Each ends in a typed error or a drop, never a panic, and the node's state stays
//! bounded. The sans-IO engine is driven directly (exact counts), and a `hyperpunch dht node`
//! process is flooded over real UDP (it keeps answering another peer; its RSS stays bounded).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use hyperpunch_core::crypto::{self, KeyPair};
use hyperpunch_core::dht::messages::{Announce, MutablePutRequest, PeerRecord};
use hyperpunch_core::dht::rpc::messages::{self as wire, node_id, Packet, RequestPacket};
use hyperpunch_core::dht::rpc::{self, PacketError, RateLimits, SocketId, PING};
use hyperpunch_core::dht::signing::{sign_announce, sign_mutable};
use hyperpunch_core::dht::{DhtConfig, HyperDht, StoreLimits, ANNOUNCE, LOOKUP, MUTABLE_PUT};

const PUBLIC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 49737);
const T0: Duration = Duration::from_secs(1_700_000_000);

fn node(limits: RateLimits, store: StoreLimits) -> HyperDht {
    let mut cfg = DhtConfig::bootstrapper(PUBLIC);
    cfg.rpc.limits.rate = limits;
    cfg.store = store;
    let mut d = HyperDht::new(cfg, T0, [9; 32]);
    d.handle_timeout(T0);
    while d.poll_transmit().is_some() {}
    while d.poll_event().is_some() {}
    assert!(
        d.rpc().id().is_some(),
        "a bootstrapper is persistent at once"
    );
    d
}

fn ping(tid: u16, to: SocketAddrV4) -> Vec<u8> {
    RequestPacket {
        tid,
        to,
        id: None,
        token: None,
        internal: true,
        command: PING,
        target: None,
        value: None,
    }
    .encode()
}

fn from(i: u32) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(0x0b00_0000 + i),
        1000 + (i % 60000) as u16,
    ))
}

/// Responses the node sent to `to` (drains the transmit queue).
fn replies_to(d: &mut HyperDht, to: SocketAddr) -> usize {
    let mut n = 0;
    while let Some(t) = d.poll_transmit() {
        if SocketAddr::V4(t.to) == to {
            n += 1;
        }
    }
    n
}

#[test]
fn malformed_and_oversized_datagrams_are_typed_errors() {
    let mut d = node(RateLimits::default(), StoreLimits::default());
    let f = from(1);
    type Case = (Vec<u8>, fn(&PacketError) -> bool);
    let cases: Vec<Case> = vec![
        (vec![], |e| matches!(e, PacketError::TooShort(0))),
        (vec![0x03], |e| matches!(e, PacketError::TooShort(1))),
        (vec![0x42, 0x00], |e| {
            matches!(e, PacketError::UnknownType(0x42))
        }),
        (vec![0x03, 0x00, 0x01], |e| {
            matches!(e, PacketError::Malformed(_))
        }),
        // value length far past the end
        (
            vec![
                0x03, 0x14, 1, 0, 10, 0, 0, 1, 0x49, 0xc2, 0x00, 0xfe, 0xff, 0xff, 0xff, 0x7f,
            ],
            |e| matches!(e, PacketError::Malformed(_)),
        ),
        // a response with 10,000 closer nodes
        (
            {
                let mut v = vec![0x13, 0x04, 1, 0, 10, 0, 0, 1, 0x49, 0xc2, 0xfd, 0x10, 0x27];
                v.extend(std::iter::repeat_n(7u8, 60_000));
                v
            },
            |e| matches!(e, PacketError::Malformed(_)),
        ),
    ];
    for (bytes, ok) in cases {
        let e = d
            .handle_datagram(T0, SocketId::SERVER, f, &bytes)
            .expect_err("must be rejected");
        assert!(ok(&e), "{e:?} for {:02x?}", &bytes[..bytes.len().min(16)]);
    }
    // A 64 KiB request with a huge value decodes and is answered like any PING.
    let mut big = RequestPacket {
        tid: 5,
        to: PUBLIC,
        id: None,
        token: None,
        internal: true,
        command: PING,
        target: None,
        value: Some(&[0u8; 65_000]),
    }
    .encode();
    d.handle_datagram(T0, SocketId::SERVER, f, &big).unwrap();
    assert_eq!(replies_to(&mut d, f), 1);
    // A forged id (not the hash of the sender's address) is ignored: no table entry.
    big = RequestPacket {
        tid: 6,
        to: PUBLIC,
        id: Some([1; 32]),
        token: None,
        internal: true,
        command: PING,
        target: None,
        value: None,
    }
    .encode();
    d.handle_datagram(T0, SocketId::SERVER, f, &big).unwrap();
    assert_eq!(replies_to(&mut d, f), 1, "answered, as any ping");
    assert_eq!(d.rpc().table().len(), 0);
    // IPv6 senders are not dht-rpc.
    let v6: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
    assert_eq!(
        d.handle_datagram(T0, SocketId::SERVER, v6, &ping(7, PUBLIC)),
        Err(PacketError::NotIpv4)
    );
    assert_eq!(d.rpc().stats().malformed, 6);
    // Responses nobody asked for are dropped.
    let stray = wire::ResponsePacket {
        tid: 999,
        to: PUBLIC,
        id: None,
        token: None,
        closer_nodes: None,
        error: 0,
        value: None,
    }
    .encode();
    d.handle_datagram(T0, SocketId::SERVER, f, &stray).unwrap();
    assert_eq!(replies_to(&mut d, f), 0);
}

/// One address sends 10x its rate limit for 10 s while an honest peer pings 20 times a second:
/// the flooder gets its share (the limit) and no more, the honest peer gets every answer, and
/// nothing accumulates.
#[test]
fn a_flood_from_one_address_gets_its_fair_share() {
    let limits = RateLimits {
        per_address: 100,
        per_host: 1000,
        max_sources: 4096,
    };
    let mut d = node(limits, StoreLimits::default());
    let flooder = from(1);
    let honest = from(2);
    let (mut flood_answers, mut honest_answers) = (0, 0);
    let mut now = T0;
    for ms in 0..10_000u64 {
        now = T0 + Duration::from_millis(ms);
        // 1,000 requests a second: 10x the per-address limit.
        d.handle_datagram(now, SocketId::SERVER, flooder, &ping(ms as u16, PUBLIC))
            .unwrap();
        if ms % 50 == 0 {
            d.handle_datagram(now, SocketId::SERVER, honest, &ping(ms as u16, PUBLIC))
                .unwrap();
        }
        if d.poll_timeout().is_some_and(|t| t <= now) {
            d.handle_timeout(now);
        }
        while let Some(t) = d.poll_transmit() {
            match SocketAddr::V4(t.to) {
                a if a == flooder => flood_answers += 1,
                a if a == honest => honest_answers += 1,
                _ => {}
            }
        }
        while d.poll_event().is_some() {}
    }
    assert_eq!(honest_answers, 200, "every honest request was answered");
    assert!(
        (900..=1100).contains(&flood_answers),
        "the flooder got {flood_answers} answers for 10,000 requests (limit 100/s)"
    );
    assert!(d.rpc().stats().rate_limited >= 8_900);
    assert_eq!(d.rpc().inflight(), 0);
    let _ = now;
}

/// Spoofed sources: a flood from 100,000 addresses keeps the limiter's state bounded.
#[test]
fn a_spoofed_flood_keeps_state_bounded() {
    let limits = RateLimits {
        per_address: 10,
        per_host: 100,
        max_sources: 1000,
    };
    let mut d = node(limits, StoreLimits::default());
    for i in 0..100_000u32 {
        let now = T0 + Duration::from_micros(i as u64 * 10);
        d.handle_datagram(now, SocketId::SERVER, from(i), &ping(i as u16, PUBLIC))
            .unwrap();
        while d.poll_transmit().is_some() {}
    }
    // Only max_sources distinct senders per window were served.
    let served = 100_000 - d.rpc().stats().rate_limited;
    assert!(served <= 1000 + 1000, "served {served}");
    assert_eq!(
        d.rpc().table().len(),
        0,
        "ephemeral senders never enter the table"
    );
}

fn token_for(d: &mut HyperDht, who: SocketAddr, tid: u16, target: [u8; 32]) -> [u8; 32] {
    let req = RequestPacket {
        tid,
        to: PUBLIC,
        id: None,
        token: None,
        internal: false,
        command: LOOKUP,
        target: Some(target),
        value: None,
    }
    .encode();
    d.handle_datagram(T0, SocketId::SERVER, who, &req).unwrap();
    let t = d.poll_transmit().expect("a reply");
    match wire::decode(&t.bytes).unwrap() {
        Packet::Response(r) => r.token.expect("a token"),
        other => panic!("{other:?}"),
    }
}

/// Announces with forged tokens or signatures are refused; 1,000 valid announces of distinct
/// keys into a store limited to 100 records per generation keep at most 200.
#[test]
fn forged_writes_are_refused_and_floods_of_valid_ones_stay_bounded() {
    let store = StoreLimits {
        max_size: 100,
        max_value_bytes: 64 * 1024,
        ..StoreLimits::default()
    };
    let mut d = node(RateLimits::unlimited(), store);
    let id = d.rpc().id().unwrap();
    let topic = [4u8; 32];
    let who = from(3);
    let key = KeyPair::from_seed(&[1; 32]);
    let peer = PeerRecord {
        public_key: key.public_key,
        relay_addresses: vec![],
    };
    let token = token_for(&mut d, who, 1, topic);
    let announce = |token: [u8; 32], sig: [u8; 64], tid: u16| {
        RequestPacket {
            tid,
            to: PUBLIC,
            id: None,
            token: Some(token),
            internal: false,
            command: ANNOUNCE,
            target: Some(topic),
            value: Some(
                &Announce {
                    peer: Some(peer.clone()),
                    refresh: None,
                    signature: Some(sig),
                    bump: 0,
                }
                .encode(),
            ),
        }
        .encode()
    };
    // Forged token: INVALID_TOKEN (with a fresh token), nothing stored.
    let good_sig = sign_announce(&key, &topic, &id, &token, &peer);
    d.handle_datagram(
        T0,
        SocketId::SERVER,
        who,
        &announce([0xee; 32], good_sig, 2),
    )
    .unwrap();
    match wire::decode(&d.poll_transmit().unwrap().bytes).unwrap() {
        Packet::Response(r) => assert_eq!(r.error, rpc::ERROR_INVALID_TOKEN),
        other => panic!("{other:?}"),
    }
    // Signature over another node's id: silently dropped.
    let wrong = sign_announce(&key, &topic, &node_id(&PUBLIC).map(|b| !b), &token, &peer);
    d.handle_datagram(T0, SocketId::SERVER, who, &announce(token, wrong, 3))
        .unwrap();
    assert!(d.poll_transmit().is_none());
    // Another host's token: INVALID_TOKEN.
    d.handle_datagram(
        T0,
        SocketId::SERVER,
        from(77),
        &announce(token, good_sig, 4),
    )
    .unwrap();
    assert!(d.poll_transmit().is_some());
    assert_eq!(d.store_sizes().unwrap().0, 0);
    // The real thing.
    d.handle_datagram(T0, SocketId::SERVER, who, &announce(token, good_sig, 5))
        .unwrap();
    assert_eq!(d.store_sizes().unwrap().0, 1);

    // A flood of valid announces from distinct keys.
    for i in 0..1_000u32 {
        let k = KeyPair::from_seed(&crypto::hash(&i.to_le_bytes()));
        let p = PeerRecord {
            public_key: k.public_key,
            relay_addresses: vec![],
        };
        let sig = sign_announce(&k, &topic, &id, &token, &p);
        let req = RequestPacket {
            tid: i as u16,
            to: PUBLIC,
            id: None,
            token: Some(token),
            internal: false,
            command: ANNOUNCE,
            target: Some(topic),
            value: Some(
                &Announce {
                    peer: Some(p),
                    refresh: None,
                    signature: Some(sig),
                    bump: 0,
                }
                .encode(),
            ),
        }
        .encode();
        d.handle_datagram(T0, SocketId::SERVER, who, &req).unwrap();
        while d.poll_transmit().is_some() {}
    }
    let (records, ..) = d.store_sizes().unwrap();
    assert!(records <= 200, "{records} records kept");

    // Mutable values of 8 KiB each under a 64 KiB budget per generation.
    for i in 0..60u32 {
        let k = KeyPair::from_seed(&crypto::hash(&(i + 10_000).to_le_bytes()));
        let value = vec![i as u8; 8 * 1024];
        let put = MutablePutRequest {
            public_key: k.public_key,
            seq: 1,
            signature: sign_mutable(&k, 1, &value),
            value,
        }
        .encode();
        let target = crypto::hash(&k.public_key);
        let t = token_for(&mut d, who, 40_000 + i as u16, target);
        let req = RequestPacket {
            tid: i as u16,
            to: PUBLIC,
            id: None,
            token: Some(t),
            internal: false,
            command: MUTABLE_PUT,
            target: Some(target),
            value: Some(&put),
        }
        .encode();
        d.handle_datagram(T0, SocketId::SERVER, who, &req).unwrap();
        while d.poll_transmit().is_some() {}
    }
    assert!(
        d.store_sizes().unwrap().1 < 60,
        "old values were rotated out"
    );
    assert!(
        d.store_bytes() <= 200 * 1024,
        "store holds {} bytes",
        d.store_bytes()
    );
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A `hyperpunch dht bootstrap` process flooded over loopback with 200,000 datagrams (garbage,
/// truncated, valid PINGs and LOOKUPs) from one socket keeps answering another socket, and its
/// memory stays bounded.
#[test]
fn a_live_node_survives_a_flood() {
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/hyperpunch");
    if !bin.is_file() {
        // The tests crate does not build the binary; `cargo build -p hyperpunch` does.
        let st = std::process::Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "hyperpunch"])
            .status()
            .unwrap();
        assert!(st.success());
    }
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(
        std::process::Command::new(&bin)
            .args([
                "dht",
                "bootstrap",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    std::thread::sleep(Duration::from_millis(300));
    let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let honest = UdpSocket::bind("127.0.0.1:0").unwrap();
    honest
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let ask = |tid: u16| -> bool {
        let mut buf = [0u8; 2048];
        for _ in 0..3 {
            honest.send_to(&ping(tid, target), target).unwrap();
            let deadline = Instant::now() + Duration::from_millis(1500);
            while Instant::now() < deadline {
                if let Ok((n, _)) = honest.recv_from(&mut buf) {
                    if let Ok(Packet::Response(r)) = wire::decode(&buf[..n]) {
                        if r.tid == tid {
                            return true;
                        }
                    }
                } else {
                    break;
                }
            }
        }
        false
    };
    // Until it is up (its start can be slow on a loaded machine), then it answers.
    let up_by = Instant::now() + Duration::from_secs(60);
    while !ask(1) {
        assert!(Instant::now() < up_by, "the node answers before the flood");
    }
    let before = rss_kib(pid);
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut garbage = vec![0u8; 1200];
    let lookup = RequestPacket {
        tid: 0,
        to: target,
        id: None,
        token: None,
        internal: false,
        command: LOOKUP,
        target: Some([3; 32]),
        value: None,
    }
    .encode();
    let mut answered = 0;
    for i in 0..200_000u32 {
        let d: Vec<u8> = match i % 4 {
            0 => ping(i as u16, target),
            1 => lookup.clone(),
            2 => {
                garbage[0] = 0x03;
                garbage[1] = (i % 251) as u8;
                garbage[..(i as usize % 1200).max(2)].to_vec()
            }
            _ => vec![0x13, (i % 256) as u8, (i >> 8) as u8],
        };
        let _ = flooder.send_to(&d, target);
        if i % 20_000 == 19_999 && ask(2 + (i / 20_000) as u16) {
            answered += 1;
        }
    }
    assert!(
        answered >= 8,
        "the honest peer got {answered}/10 answers during the flood"
    );
    assert!(ask(100), "the node answers after the flood");
    let after = rss_kib(pid);
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}
