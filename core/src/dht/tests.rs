//! hyperdht's record layer against the JS vectors and capture, and on a small lossless
//! network of [`HyperDht`] nodes.

use core::net::{SocketAddr, SocketAddrV4};
use core::time::Duration;

use super::messages::*;
use super::messages_connect::{
    Firewall, HandshakeMessage, HolepunchInfo, HolepunchMessage, HolepunchPayload, Mode,
    NoisePayload, RelayInfo, RelayThroughInfo, UdxInfo,
};
use super::rpc::tests::{addr_n, seed_of, unhex, vectors, Engine, Net, NET};
use super::rpc::{
    self, messages as rpcm, node_id, Config, ReplyOptions, RequestSpec, SocketId, Transmit,
};
use super::signing::*;
use super::*;
use crate::crypto::{self, KeyPair};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn a(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

fn kp(byte: u8) -> KeyPair {
    KeyPair::from_seed(&[byte; 32])
}

#[test]
fn namespaces_match() {
    let v = vectors();
    let ns = &v["hyperdht"]["NS"];
    assert_eq!(hex(&ns_announce()), ns["ANNOUNCE"].as_str().unwrap());
    assert_eq!(hex(&ns_unannounce()), ns["UNANNOUNCE"].as_str().unwrap());
    assert_eq!(hex(&ns_mutable_put()), ns["MUTABLE_PUT"].as_str().unwrap());
    assert_eq!(
        hex(&ns_peer_handshake()),
        ns["PEER_HANDSHAKE"].as_str().unwrap()
    );
    assert_eq!(
        hex(&ns_peer_holepunch()),
        ns["PEER_HOLEPUNCH"].as_str().unwrap()
    );
    assert_eq!(hex(&ns_plugin()), ns["PLUGIN"].as_str().unwrap());
}

#[test]
fn every_message_matches_the_vectors() {
    let v = vectors();
    let m = &v["hyperdht"]["messages"];
    let s = |k: &str| m[k].as_str().unwrap().to_string();
    let server = kp(1).public_key;
    let p1234 = a("1.2.3.4:1234");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "handshake_fromClient",
            HandshakeMessage {
                mode: Mode::FromClient,
                noise: b"noise".to_vec(),
                peer_address: None,
                relay_address: None,
            }
            .encode(),
        ),
        (
            "handshake_fromRelay",
            HandshakeMessage {
                mode: Mode::FromRelay,
                noise: b"noise".to_vec(),
                peer_address: Some(p1234),
                relay_address: None,
            }
            .encode(),
        ),
        (
            "handshake_fromSecondRelay",
            HandshakeMessage {
                mode: Mode::FromSecondRelay,
                noise: b"noise".to_vec(),
                peer_address: Some(p1234),
                relay_address: Some(a("5.6.7.8:5678")),
            }
            .encode(),
        ),
        (
            "handshake_reply",
            HandshakeMessage {
                mode: Mode::Reply,
                noise: b"noise".to_vec(),
                peer_address: Some(p1234),
                relay_address: None,
            }
            .encode(),
        ),
        (
            "holepunch_fromClient",
            HolepunchMessage {
                mode: Mode::FromClient,
                id: 7,
                payload: b"p".to_vec(),
                peer_address: Some(p1234),
            }
            .encode(),
        ),
        (
            "holepunch_reply",
            HolepunchMessage {
                mode: Mode::Reply,
                id: 7,
                payload: b"p".to_vec(),
                peer_address: None,
            }
            .encode(),
        ),
        (
            "noisePayload_client",
            NoisePayload {
                version: 1,
                addresses4: vec![a("192.168.1.2:49737")],
                udx: Some(UdxInfo {
                    version: 1,
                    reusable_socket: false,
                    id: 0x01020304,
                    seq: 0,
                }),
                secret_stream: Some(1),
                ..NoisePayload::default()
            }
            .encode(),
        ),
        (
            "noisePayload_server_full",
            NoisePayload {
                version: 1,
                error: 0,
                firewall: Firewall::Consistent,
                holepunch: Some(HolepunchInfo {
                    id: 3,
                    relays: vec![RelayInfo {
                        relay_address: a("9.9.9.9:9"),
                        peer_address: a("8.8.8.8:8"),
                    }],
                }),
                addresses4: vec![a("1.1.1.1:1")],
                addresses6: vec!["[::1]:2".parse().unwrap()],
                udx: Some(UdxInfo {
                    version: 1,
                    reusable_socket: true,
                    id: 5,
                    seq: 0,
                }),
                secret_stream: Some(1),
                relay_through: Some(RelayThroughInfo {
                    version: 1,
                    public_key: [0xee; 32],
                    token: [0xdd; 32],
                }),
                relay_addresses: Some(vec![a("7.7.7.7:7")]),
            }
            .encode(),
        ),
        (
            "holepunchPayload_probe",
            HolepunchPayload {
                firewall: Firewall::Consistent,
                addresses: Some(vec![a("1.2.3.4:40000")]),
                remote_address: Some(a("5.6.7.8:50000")),
                ..HolepunchPayload::default()
            }
            .encode(),
        ),
        (
            "holepunchPayload_punch",
            HolepunchPayload {
                firewall: Firewall::Consistent,
                round: 1,
                punching: true,
                addresses: Some(vec![a("1.2.3.4:40000")]),
                token: Some([1; 32]),
                remote_token: Some([2; 32]),
                ..HolepunchPayload::default()
            }
            .encode(),
        ),
        (
            "peer",
            PeerRecord {
                public_key: server,
                relay_addresses: vec![a("1.2.3.4:5")],
            }
            .encode(),
        ),
        (
            "lookupRawReply",
            LookupReply {
                peers: vec![PeerRecord {
                    public_key: server,
                    relay_addresses: vec![],
                }],
                bump: 0,
            }
            .encode(),
        ),
        (
            "lookupRawReply_bump",
            LookupReply {
                peers: vec![],
                bump: 1_700_000_000_000,
            }
            .encode(),
        ),
        (
            "mutablePutRequest",
            MutablePutRequest {
                public_key: server,
                seq: 1,
                value: b"v".to_vec(),
                signature: [5; 64],
            }
            .encode(),
        ),
        (
            "mutableGetResponse",
            MutableGetResponse {
                seq: 1,
                value: b"v".to_vec(),
                signature: [5; 64],
            }
            .encode(),
        ),
        (
            "pluginRequest",
            PluginRequest {
                plugin: "x".into(),
                version: 1,
                command: 2,
                value: Some(b"v".to_vec()),
            }
            .encode(),
        ),
        (
            "hyperdhtAddress_keyOnly",
            HyperdhtAddress {
                key: server,
                nodes: None,
            }
            .encode(),
        ),
        (
            "hyperdhtAddress_withNodes",
            HyperdhtAddress {
                key: server,
                nodes: Some(vec![a("1.2.3.4:5")]),
            }
            .encode(),
        ),
    ];
    for (name, bytes) in &cases {
        assert_eq!(hex(bytes), s(name), "{name}");
    }
    // And every one decodes back to itself.
    for (name, bytes) in cases {
        let again = match name {
            n if n.starts_with("handshake_") => HandshakeMessage::decode(&bytes).unwrap().encode(),
            n if n.starts_with("holepunch_") => HolepunchMessage::decode(&bytes).unwrap().encode(),
            n if n.starts_with("noisePayload") => NoisePayload::decode(&bytes).unwrap().encode(),
            n if n.starts_with("holepunchPayload") => {
                HolepunchPayload::decode(&bytes).unwrap().encode()
            }
            "peer" => PeerRecord::decode(&bytes).unwrap().encode(),
            n if n.starts_with("lookupRawReply") => LookupReply::decode(&bytes).unwrap().encode(),
            "mutablePutRequest" => MutablePutRequest::decode(&bytes).unwrap().encode(),
            "mutableGetResponse" => MutableGetResponse::decode(&bytes).unwrap().encode(),
            "pluginRequest" => PluginRequest::decode(&bytes).unwrap().encode(),
            n if n.starts_with("hyperdhtAddress") => {
                HyperdhtAddress::decode(&bytes).unwrap().encode()
            }
            _ => unreachable!(),
        };
        assert_eq!(again, bytes, "{name} round trip");
    }
    assert_eq!(s("mutableGetRequestValue_seq0"), "00");
    // Decoders accept what JS accepts: a bare key address, a lookup reply without a bump.
    assert_eq!(HyperdhtAddress::decode(&server).unwrap().nodes, None);
    assert_eq!(
        LookupReply::decode(&[0]).unwrap(),
        LookupReply {
            peers: vec![],
            bump: 0
        }
    );
    // A payload of another version decodes to defaults.
    assert_eq!(NoisePayload::decode(&[2, 0xff]).unwrap().version, 2);
}

#[test]
fn signatures_match_the_vectors() {
    let v = vectors();
    let ann = &v["hyperdht"]["announce"];
    let key = kp(1);
    let (target, token, id) = ([0x33; 32], [0x44; 32], [0x55; 32]);
    let peer = PeerRecord {
        public_key: key.public_key,
        relay_addresses: vec![],
    };
    let signable = announce_signable(&ns_announce(), &target, &id, &token, &peer, None);
    assert_eq!(hex(&signable), ann["signable"].as_str().unwrap());
    let sig = sign_announce(&key, &target, &id, &token, &peer);
    assert_eq!(hex(&sig), ann["signature"].as_str().unwrap());
    let value = Announce {
        peer: Some(peer.clone()),
        refresh: None,
        signature: Some(sig),
        bump: 0,
    }
    .encode();
    assert_eq!(hex(&value), ann["encodedAnnounceValue"].as_str().unwrap());
    assert_eq!(
        hex(&sign_unannounce(&key, &target, &id, &token, &peer)),
        ann["unannounceSignature"].as_str().unwrap()
    );
    let m = &v["hyperdht"]["mutable"];
    let msig = sign_mutable(&key, 5, b"hello");
    assert_eq!(
        hex(&mutable_signable_hash(5, b"hello")),
        m["signable"].as_str().unwrap()
    );
    assert_eq!(hex(&msig), m["signature"].as_str().unwrap());
    assert!(verify_mutable(&msig, 5, b"hello", &key.public_key));
    assert!(!verify_mutable(&msig, 6, b"hello", &key.public_key));
    assert_eq!(
        hex(&crypto::hash(&key.public_key)),
        m["target_blake2b_pk"].as_str().unwrap()
    );
    assert_eq!(
        hex(&crypto::hash(b"hello")),
        v["hyperdht"]["immutable"]["target"].as_str().unwrap()
    );
}

/// The captured ANNOUNCE / UNANNOUNCE / MUTABLE_PUT requests of a JS run carry signatures that
/// verify here against the receiving node's id and the token it issued.
#[test]
fn captured_record_writes_verify() {
    let text = std::fs::read_to_string(format!("{NET}/out-records.jsonl")).unwrap();
    let (mut anns, mut unanns, mut muts) = (0, 0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        if j["dir"] != "tx" {
            continue;
        }
        let Some(h) = j["hex"].as_str() else { continue };
        let bytes = unhex(h);
        let Ok(rpcm::Packet::Request(r)) = rpcm::decode(&bytes) else {
            continue;
        };
        // The receiving node's id is the hash of the address the request was sent to.
        let node = node_id(&r.to);
        match r.command {
            ANNOUNCE | UNANNOUNCE if !r.internal => {
                let ann = Announce::decode(r.value.unwrap()).unwrap();
                let peer = ann.peer.unwrap();
                let ns = if r.command == ANNOUNCE {
                    ns_announce()
                } else {
                    ns_unannounce()
                };
                let s = announce_signable(
                    &ns,
                    &r.target.unwrap(),
                    &node,
                    &r.token.unwrap(),
                    &peer,
                    None,
                );
                assert!(
                    crypto::verify(&s, &ann.signature.unwrap(), &peer.public_key),
                    "{h}"
                );
                assert_eq!(
                    Announce::decode(r.value.unwrap()).unwrap().encode(),
                    r.value.unwrap()
                );
                if r.command == ANNOUNCE {
                    anns += 1
                } else {
                    unanns += 1
                }
            }
            MUTABLE_PUT if !r.internal => {
                let p = MutablePutRequest::decode(r.value.unwrap()).unwrap();
                assert!(verify_mutable(&p.signature, p.seq, &p.value, &p.public_key));
                assert_eq!(crypto::hash(&p.public_key), r.target.unwrap());
                muts += 1;
            }
            _ => {}
        }
    }
    assert!(
        anns >= 3 && unanns >= 3 && muts >= 3,
        "{anns} {unanns} {muts}"
    );
}

#[test]
fn malformed_messages_are_errors() {
    assert!(HandshakeMessage::decode(&[]).is_err());
    assert!(
        HandshakeMessage::decode(&[1, 0, 0]).is_err(),
        "peer address flag without the address"
    );
    assert!(HolepunchMessage::decode(&[0, 0, 0, 5, 1]).is_err());
    assert!(NoisePayload::decode(&[1, 0xff, 0, 0]).is_err());
    assert!(HolepunchPayload::decode(&[0x10, 0, 0, 0, 1, 2]).is_err());
    assert!(PeerRecord::decode(&[0; 31]).is_err());
    assert!(LookupReply::decode(&[5]).is_err());
    assert!(Announce::decode(&[4, 1, 2]).is_err());
    assert!(MutablePutRequest::decode(&[0; 40]).is_err());
    assert!(MutableGetResponse::decode(&[1, 5, 1]).is_err());
    assert!(PluginRequest::decode(&[2, 0xff, 0xfe]).is_err());
    assert!(HyperdhtAddress::decode(&[0; 31]).is_err());
}

// ---------------------------------------------------------------- a small network

impl Engine for HyperDht {
    type Ev = Event;
    fn datagram(&mut self, now: Duration, from: SocketAddr, bytes: &[u8]) {
        let _ = self.handle_datagram(now, SocketId::SERVER, from, bytes);
    }
    fn timeout(&mut self, now: Duration) {
        self.handle_timeout(now)
    }
    fn transmit(&mut self) -> Option<Transmit> {
        self.poll_transmit()
    }
    fn deadline(&mut self) -> Option<Duration> {
        self.poll_timeout()
    }
    fn event(&mut self) -> Option<Event> {
        self.poll_event()
    }
}

fn dht_testnet(n: usize) -> (Net<HyperDht>, Vec<SocketAddrV4>) {
    let mut net: Net<HyperDht> = Net::new();
    let boot = a("10.0.0.1:49737");
    net.insert(
        boot,
        HyperDht::new(DhtConfig::bootstrapper(boot), net.now, seed_of(&boot)),
    );
    for i in 1..n {
        let addr = addr_n(i);
        let cfg = DhtConfig {
            rpc: Config {
                bootstrap: vec![boot],
                ephemeral: Some(false),
                firewalled: false,
                server_port: addr.port(),
                ..Config::default()
            },
            ..DhtConfig::default()
        };
        let node = HyperDht::new(cfg, net.now, seed_of(&addr));
        net.insert(addr, node);
        net.run_for(Duration::from_millis(200));
    }
    net.run_for(Duration::from_secs(5));
    let addrs = addrs_all(&net);
    (net, addrs)
}

fn addrs_all(net: &Net<HyperDht>) -> Vec<SocketAddrV4> {
    net.nodes.keys().copied().collect()
}

/// An ephemeral client node.
fn client(net: &mut Net<HyperDht>, i: usize) -> SocketAddrV4 {
    let addr = SocketAddrV4::new([10, 9, 0, i as u8].into(), 5000 + i as u16);
    let cfg = DhtConfig {
        rpc: Config {
            bootstrap: vec![a("10.0.0.1:49737")],
            ephemeral: Some(true),
            server_port: addr.port(),
            ..Config::default()
        },
        ..DhtConfig::default()
    };
    let node = HyperDht::new(cfg, net.now, seed_of(&addr));
    net.insert(addr, node);
    net.run_for(Duration::from_secs(3));
    addr
}

fn done(
    net: &mut Net<HyperDht>,
    at: SocketAddrV4,
    op: OpId,
) -> (Vec<Event>, Result<OpOutput, OpError>) {
    let evs = net.take_events(at);
    let r = evs
        .iter()
        .find_map(|e| match e {
            Event::OpDone { op: o, result } if *o == op => Some(result.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("op {op:?} did not finish: {evs:?}"));
    (evs, r)
}

#[test]
fn announce_lookup_unannounce() {
    let (mut net, _) = dht_testnet(25);
    let server = client(&mut net, 1);
    let finder = client(&mut net, 2);
    let topic = crypto::hash(b"a topic");
    let key = kp(7);
    let relays = vec![
        a("1.2.3.4:5"),
        a("1.2.3.4:6"),
        a("1.2.3.4:7"),
        a("1.2.3.4:8"),
    ];
    let op = net.with(server, |d, now| {
        d.announce(now, topic, &key, relays.clone(), AnnounceOptions::default())
            .unwrap()
    });
    net.run_for(Duration::from_secs(10));
    let (_, r) = done(&mut net, server, op);
    let Ok(OpOutput::Announce { closest_nodes }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(closest_nodes.len(), 20);
    // Each of the 20 closest nodes stores it.
    let stored: usize = closest_nodes
        .iter()
        .filter(|x| net.nodes[x].store_sizes().unwrap().0 == 1)
        .count();
    assert_eq!(stored, 20);

    let op = net.with(finder, |d, now| d.lookup(now, topic).unwrap());
    net.run_for(Duration::from_secs(10));
    let (evs, r) = done(&mut net, finder, op);
    assert!(r.is_ok());
    let found: Vec<&PeerRecord> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Lookup { reply, .. } => Some(&reply.peers),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(found.len() >= 10, "{} replies with records", found.len());
    for p in &found {
        assert_eq!(p.public_key, key.public_key);
        assert_eq!(
            p.relay_addresses,
            relays[..3],
            "relay addresses truncated to 3"
        );
    }

    let op = net.with(server, |d, now| d.unannounce(now, topic, &key).unwrap());
    net.run_for(Duration::from_secs(10));
    let (_, r) = done(&mut net, server, op);
    assert_eq!(r, Ok(OpOutput::Unannounce));
    let left: usize = net
        .nodes
        .values()
        .filter_map(|d| d.store_sizes())
        .map(|s| s.0)
        .sum();
    assert_eq!(left, 0, "every record was removed");
}

#[test]
fn records_expire_after_their_lifetime() {
    let (mut net, _) = dht_testnet(22);
    let server = client(&mut net, 1);
    let topic = [9; 32];
    let op = net.with(server, |d, now| {
        d.announce(now, topic, &kp(3), vec![], AnnounceOptions::default())
            .unwrap()
    });
    net.run_for(Duration::from_secs(10));
    assert!(done(&mut net, server, op).1.is_ok());
    let count = |net: &Net<HyperDht>| -> usize {
        net.nodes
            .values()
            .filter_map(|d| d.store_sizes())
            .map(|s| s.0)
            .sum()
    };
    assert_eq!(count(&net), 20);
    net.run_for(Duration::from_secs(12 * 60));
    assert_eq!(count(&net), 20, "alive before 2/3 of the 20 min");
    net.run_for(Duration::from_secs(20 * 60));
    assert_eq!(count(&net), 0, "gone after 4/3 of the 20 min");
}

#[test]
fn mutable_and_immutable_records() {
    let (mut net, _) = dht_testnet(24);
    let writer = client(&mut net, 1);
    let reader = client(&mut net, 2);
    let key = kp(5);

    let op = net.with(writer, |d, now| {
        d.mutable_put(now, &key, b"v1".to_vec(), 1).unwrap()
    });
    net.run_for(Duration::from_secs(10));
    let (_, r) = done(&mut net, writer, op);
    let Ok(OpOutput::MutablePut {
        seq: 1, signature, ..
    }) = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(signature, sign_mutable(&key, 1, b"v1"));

    let op = net.with(reader, |d, now| {
        d.mutable_get(now, key.public_key, 0, true).unwrap()
    });
    net.run_for(Duration::from_secs(10));
    let (_, r) = done(&mut net, reader, op);
    let Ok(OpOutput::MutableGet(Some(m))) = r else {
        panic!("{r:?}")
    };
    assert_eq!((m.seq, m.value.as_slice()), (1, &b"v1"[..]));

    // A newer version wins; asking for a higher seq than stored finds nothing.
    let op = net.with(writer, |d, now| {
        d.mutable_put(now, &key, b"v2".to_vec(), 2).unwrap()
    });
    net.run_for(Duration::from_secs(10));
    assert!(done(&mut net, writer, op).1.is_ok());
    let op = net.with(reader, |d, now| {
        d.mutable_get(now, key.public_key, 0, true).unwrap()
    });
    net.run_for(Duration::from_secs(10));
    let (_, r) = done(&mut net, reader, op);
    assert!(
        matches!(
            r,
            Ok(OpOutput::MutableGet(Some(MutableValue { seq: 2, .. })))
        ),
        "{r:?}"
    );
    let op = net.with(reader, |d, now| {
        d.mutable_get(now, key.public_key, 3, true).unwrap()
    });
    net.run_for(Duration::from_secs(10));
    assert_eq!(done(&mut net, reader, op).1, Ok(OpOutput::MutableGet(None)));

    let op = net.with(writer, |d, now| {
        d.immutable_put(now, b"hello".to_vec()).unwrap()
    });
    net.run_for(Duration::from_secs(10));
    let (_, r) = done(&mut net, writer, op);
    let Ok(OpOutput::ImmutablePut { hash, .. }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(hash, crypto::hash(b"hello"));
    let op = net.with(reader, |d, now| d.immutable_get(now, hash).unwrap());
    net.run_for(Duration::from_secs(10));
    let (_, r) = done(&mut net, reader, op);
    assert!(
        matches!(r, Ok(OpOutput::ImmutableGet(Some((ref v, _)))) if v == b"hello"),
        "{r:?}"
    );
    let op = net.with(reader, |d, now| d.immutable_get(now, [1; 32]).unwrap());
    net.run_for(Duration::from_secs(10));
    assert_eq!(
        done(&mut net, reader, op).1,
        Ok(OpOutput::ImmutableGet(None))
    );
}

/// Write requests sent straight to one storing node (bypassing the client code) to check the
/// server side's refusals.
#[test]
fn store_refuses_bad_writes() {
    let (mut net, addrs) = dht_testnet(6);
    let node = addrs[2];
    let from = client(&mut net, 1);
    let key = kp(4);
    let target = crypto::hash(&key.public_key);

    // Get a token.
    let send = |net: &mut Net<HyperDht>, spec: RequestSpec| -> rpc::Response {
        let id = net.with(from, |d, now| d.rpc_mut().request(now, spec).unwrap());
        let mut seen = Vec::new();
        for _ in 0..60 {
            net.run_for(Duration::from_millis(100));
            seen.extend(net.take_events(from));
            let r = seen.iter().find_map(|e| match e {
                Event::Rpc(rpc::Event::Response { id: i, response }) if *i == id => {
                    Some(response.clone())
                }
                Event::Rpc(rpc::Event::RequestFailed { id: i, .. }) if *i == id => {
                    Some(rpc::Response {
                        error: u64::MAX,
                        ..dummy()
                    })
                }
                _ => None,
            });
            if let Some(r) = r {
                return r;
            }
        }
        panic!("request did not settle")
    };
    let mut get = RequestSpec::new(node, MUTABLE_GET);
    get.target = Some(target);
    get.value = Some(vec![0]);
    let token = send(&mut net, get.clone()).token.expect("a token");

    let put = |seq: u64, value: &[u8], sig: [u8; 64], token: Option<[u8; 32]>| {
        let mut s = RequestSpec::new(node, MUTABLE_PUT);
        s.token = token;
        s.target = Some(target);
        s.value = Some(
            MutablePutRequest {
                public_key: key.public_key,
                seq,
                value: value.to_vec(),
                signature: sig,
            }
            .encode(),
        );
        s.retries = 0;
        s
    };
    // No token: dropped without an answer (times out).
    assert_eq!(
        send(&mut net, put(1, b"a", sign_mutable(&key, 1, b"a"), None)).error,
        u64::MAX
    );
    // Forged token: INVALID_TOKEN.
    assert_eq!(
        send(
            &mut net,
            put(1, b"a", sign_mutable(&key, 1, b"a"), Some([9; 32]))
        )
        .error,
        rpc::ERROR_INVALID_TOKEN
    );
    // Wrong signature: dropped.
    assert_eq!(
        send(
            &mut net,
            put(1, b"a", sign_mutable(&key, 2, b"a"), Some(token))
        )
        .error,
        u64::MAX
    );
    assert_eq!(net.nodes[&node].store_sizes().unwrap().1, 0);
    // Good.
    assert_eq!(
        send(
            &mut net,
            put(2, b"a", sign_mutable(&key, 2, b"a"), Some(token))
        )
        .error,
        0
    );
    assert_eq!(net.nodes[&node].store_sizes().unwrap().1, 1);
    let token = send(&mut net, get.clone()).token.unwrap();
    // Same seq, other value: SEQ_REUSED; lower: SEQ_TOO_LOW; same seq same value: fine.
    assert_eq!(
        send(
            &mut net,
            put(2, b"b", sign_mutable(&key, 2, b"b"), Some(token))
        )
        .error,
        ERROR_SEQ_REUSED
    );
    assert_eq!(
        send(
            &mut net,
            put(1, b"b", sign_mutable(&key, 1, b"b"), Some(token))
        )
        .error,
        ERROR_SEQ_TOO_LOW
    );
    assert_eq!(
        send(
            &mut net,
            put(2, b"a", sign_mutable(&key, 2, b"a"), Some(token))
        )
        .error,
        0
    );

    // Announce signed for another node's id: dropped.
    let token = send(&mut net, get).token.unwrap();
    let topic = [3; 32];
    let peer = PeerRecord {
        public_key: key.public_key,
        relay_addresses: vec![],
    };
    let wrong = sign_announce(&key, &topic, &[0; 32], &token, &peer);
    let mut ann = RequestSpec::new(node, ANNOUNCE);
    ann.token = Some(token);
    ann.target = Some(topic);
    ann.retries = 0;
    ann.value = Some(
        Announce {
            peer: Some(peer.clone()),
            refresh: None,
            signature: Some(wrong),
            bump: 0,
        }
        .encode(),
    );
    assert_eq!(send(&mut net, ann.clone()).error, u64::MAX);
    assert_eq!(net.nodes[&node].store_sizes().unwrap().0, 0);
    // Immutable with a mismatched hash: dropped.
    let mut imm = RequestSpec::new(node, IMMUTABLE_PUT);
    imm.token = Some(token);
    imm.target = Some([1; 32]);
    imm.value = Some(b"x".to_vec());
    imm.retries = 0;
    assert_eq!(send(&mut net, imm).error, u64::MAX);
    assert_eq!(net.nodes[&node].store_sizes().unwrap().2, 0);
}

fn dummy() -> rpc::Response {
    rpc::Response {
        tid: 0,
        from: rpc::Peer {
            addr: a("0.0.0.0:1"),
            id: None,
        },
        to: a("0.0.0.0:1"),
        token: None,
        closer_nodes: vec![],
        error: 0,
        value: None,
        rtt: Duration::ZERO,
        socket: SocketId::SERVER,
    }
}

/// A server announces itself (target = H(pk)) to a node, which then relays a client's
/// PEER_HANDSHAKE to it, and relays the server's answer back with the client's tid.
#[test]
fn handshakes_are_relayed_through_the_forward() {
    let (mut net, _) = dht_testnet(22);
    let server = client(&mut net, 1);
    let cl = client(&mut net, 2);
    let key = kp(8);
    let target = crypto::hash(&key.public_key);
    net.with(server, |d, _| {
        d.register_server(
            target,
            PeerRecord {
                public_key: key.public_key,
                relay_addresses: vec![],
            }
            .encode(),
        )
    });
    let op = net.with(server, |d, now| {
        d.announce(now, target, &key, vec![], AnnounceOptions::default())
            .unwrap()
    });
    net.run_for(Duration::from_secs(10));
    let (_, r) = done(&mut net, server, op);
    let Ok(OpOutput::Announce { closest_nodes }) = r else {
        panic!("{r:?}")
    };
    let relay = closest_nodes[0];
    assert!(
        net.nodes[&relay].forward(&target).is_some(),
        "self-announce stored a forward"
    );

    // FIND_PEER finds the record.
    let op = net.with(cl, |d, now| d.find_peer(now, &key.public_key).unwrap());
    net.run_for(Duration::from_secs(10));
    let (evs, _) = done(&mut net, cl, op);
    assert!(evs.iter().any(
        |e| matches!(e, Event::FindPeer { reply, .. } if reply.peer.public_key == key.public_key)
    ));

    let rid = net.with(cl, |d, now| {
        d.peer_handshake(
            now,
            target,
            b"hello noise".to_vec(),
            None,
            None,
            relay,
            None,
        )
        .unwrap()
    });
    net.run_for(Duration::from_millis(50));
    let evs = net.take_events(server);
    let (req, hs) = evs
        .into_iter()
        .find_map(|e| match e {
            Event::PeerHandshake { req, handshake } => Some((req, handshake)),
            _ => None,
        })
        .expect("the server got the handshake");
    assert_eq!(hs.mode, Mode::FromRelay);
    assert_eq!(hs.noise, b"hello noise");
    assert_eq!(
        hs.peer_address,
        Some(cl),
        "the relay says where the client is"
    );
    net.with(server, |d, _| {
        d.server_handshake_reply(&req, &hs, b"reply noise".to_vec(), None)
    });
    net.run_for(Duration::from_millis(50));
    let res = net
        .take_events(cl)
        .into_iter()
        .find_map(|e| match e {
            Event::Rpc(rpc::Event::Response { id, response }) if id == rid => Some(response),
            _ => None,
        })
        .expect("the client got the answer under its own request");
    let reply = router::parse_handshake_reply(&res, relay).unwrap();
    assert_eq!(reply.noise, b"reply noise");
    assert!(reply.relayed);
    assert_eq!(reply.server_address, server);
    assert_eq!(reply.client_address, cl);

    // Holepunch: client → relay → server → relay → client.
    let hid = net.with(cl, |d, now| {
        d.peer_holepunch(now, target, 3, b"hp".to_vec(), None, relay, None)
            .unwrap()
    });
    net.run_for(Duration::from_millis(50));
    let (req, hp) = net
        .take_events(server)
        .into_iter()
        .find_map(|e| match e {
            Event::PeerHolepunch { req, holepunch } => Some((req, holepunch)),
            _ => None,
        })
        .expect("the server got the holepunch");
    assert_eq!(
        (hp.id, hp.payload.as_slice(), hp.peer_address),
        (3, &b"hp"[..], Some(cl))
    );
    net.with(server, |d, _| {
        d.server_holepunch_reply(&req, &hp, b"hp reply".to_vec(), None)
    });
    net.run_for(Duration::from_millis(50));
    let res = net
        .take_events(cl)
        .into_iter()
        .find_map(|e| match e {
            Event::Rpc(rpc::Event::Response { id, response }) if id == hid => Some(response),
            _ => None,
        })
        .expect("holepunch answer");
    let reply = router::parse_holepunch_reply(&res, relay).unwrap();
    assert_eq!(reply.payload, b"hp reply");
    assert_eq!(reply.peer_address, server);

    // A node with no forward helps the client route: an empty reply with closer nodes.
    let other = *net
        .nodes
        .keys()
        .find(|x| net.nodes[x].forward(&target).is_none() && **x != cl && **x != server)
        .unwrap();
    let rid = net.with(cl, |d, now| {
        d.peer_handshake(now, target, b"n".to_vec(), None, None, other, None)
            .unwrap()
    });
    net.run_for(Duration::from_millis(50));
    let res = net
        .take_events(cl)
        .into_iter()
        .find_map(|e| match e {
            Event::Rpc(rpc::Event::Response { id, response }) if id == rid => Some(response),
            _ => None,
        })
        .unwrap();
    assert!(res.value.is_none() && !res.closer_nodes.is_empty() && res.token.is_none());
    let _ = ReplyOptions::BARE;
}

#[test]
fn ephemeral_nodes_answer_unknown_command() {
    let (mut net, _) = dht_testnet(4);
    let c = client(&mut net, 1);
    let other = client(&mut net, 2);
    let mut spec = RequestSpec::new(other, LOOKUP);
    spec.target = Some([1; 32]);
    let id = net.with(c, |d, now| d.rpc_mut().request(now, spec).unwrap());
    net.run_for(Duration::from_secs(1));
    let evs = net.take_events(c);
    assert!(evs.iter().any(|e| matches!(e, Event::Rpc(rpc::Event::Response { id: i, response }) if *i == id && response.error == rpc::ERROR_UNKNOWN_COMMAND)));
}
