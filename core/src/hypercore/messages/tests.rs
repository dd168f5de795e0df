//! Tests of the wire messages: every message against the JS encodings in the golden vectors, and\n//! malformed input.

use super::*;
use crate::hypercore::manifest::{Signer, DEFAULT_NAMESPACE};
use proptest::prelude::*;
use serde_json::{json, Value};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/data/");

fn read_vector(name: &str) -> String {
    std::fs::read_to_string(format!("{VECTORS}{name}"))
        .unwrap_or_else(|e| panic!("cannot read vector {name}: {e}"))
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn nodes_json(nodes: &[TreeNode]) -> Value {
    Value::Array(
        nodes
            .iter()
            .map(|n| json!({"index": n.index, "size": n.size, "hash": hex::encode(n.hash)}))
            .collect(),
    )
}

fn manifest_json(m: &Manifest) -> Value {
    json!({
        "version": m.version,
        "hash": if m.hash == 0 { "blake2b" } else { "?" },
        "allowPatch": m.allow_patch,
        "quorum": m.quorum,
        "signers": m.signers.iter().map(|s: &Signer| json!({
            "signature": if s.signature == 0 { "ed25519" } else { "?" },
            "namespace": hex::encode(s.namespace),
            "publicKey": hex::encode(s.public_key),
        })).collect::<Vec<_>>(),
        "prologue": m.prologue.map(|p| json!({"hash": hex::encode(p.hash), "length": p.length})),
        "linked": m.linked.as_ref().map(|l| l.iter().map(hex::encode).collect::<Vec<_>>()),
        "userData": m.user_data.as_ref().map(hex::encode),
    })
}

fn rb(b: &Option<RequestBlock>) -> Value {
    b.map_or(Value::Null, |b| json!({"index": b.index, "nodes": b.nodes}))
}

/// The JSON the vector scripts print for a message (buffers as hex, absent parts as null).
fn js_json(m: &Message) -> Value {
    match m {
        Message::Sync(s) => json!({
            "fork": s.fork, "length": s.length, "remoteLength": s.remote_length,
            "canUpgrade": s.can_upgrade, "uploading": s.uploading,
            "downloading": s.downloading, "hasManifest": s.has_manifest,
            "allowPush": s.allow_push,
        }),
        Message::Request(r) => json!({
            "id": r.id, "fork": r.fork, "block": rb(&r.block), "hash": rb(&r.hash),
            "seek": r.seek.map_or(Value::Null, |s| json!({"bytes": s.bytes, "padding": s.padding})),
            "upgrade": r.upgrade.map_or(Value::Null, |u| json!({"start": u.start, "length": u.length})),
            "manifest": r.manifest, "priority": r.priority,
        }),
        Message::Data(d) => json!({
            "request": d.request, "fork": d.fork,
            "block": d.block.as_ref().map(|b| json!({"index": b.index, "value": hex::encode(&b.value), "nodes": nodes_json(&b.nodes)})),
            "hash": d.hash.as_ref().map(|b| json!({"index": b.index, "nodes": nodes_json(&b.nodes)})),
            "seek": d.seek.as_ref().map(|b| json!({"bytes": b.bytes, "nodes": nodes_json(&b.nodes)})),
            "upgrade": d.upgrade.as_ref().map(|u| json!({
                "start": u.start, "length": u.length, "nodes": nodes_json(&u.nodes),
                "additionalNodes": nodes_json(&u.additional_nodes),
                "signature": if u.signature.is_empty() { Value::Null } else { hex::encode(&u.signature).into() },
            })),
            "manifest": d.manifest.as_ref().map(manifest_json),
        }),
        Message::Range(r) => json!({"drop": r.drop, "start": r.start, "length": r.length}),
        other => panic!("no JSON form for {other:?}"),
    }
}

/// Decode, check that re-encoding gives the same bytes and return the message.
fn round_trip(type_id: u64, bytes: &[u8]) -> Message {
    let m = Message::decode(type_id, bytes).unwrap();
    assert_eq!(m.type_id(), type_id);
    assert_eq!(
        hex::encode(m.to_bytes()),
        hex::encode(bytes),
        "re-encode of {m:?}"
    );
    assert_eq!(m.encoded_len(), bytes.len());
    m
}

/// Every `key` of `expected` (an object) equals the same key of `actual`.
fn assert_subset(actual: &Value, expected: &Value) {
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(&actual[k], v, "field {k}");
    }
}

fn json_after(line: &str, prefix: &str) -> Value {
    serde_json::from_str(line.strip_prefix(prefix).unwrap().trim()).unwrap()
}

#[test]
fn proofs_vectors_03() {
    let text = read_vector("03-proofs.out");
    let lines: Vec<&str> = text.lines().collect();
    let (mut requests, mut datas) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        if let Some(enc) = line.strip_prefix("wire.request enc ") {
            let m = round_trip(1, &h(enc));
            let want = json_after(lines[i - 1], "request ");
            let got = js_json(&m);
            assert_subset(&got, &want);
            assert_eq!(got["id"], 1);
            assert_eq!(got["fork"], 0);
            requests += 1;
        } else if let Some(enc) = line
            .strip_prefix("wire.data enc ")
            .or_else(|| line.strip_prefix("P3 wire.data enc "))
        {
            let m = round_trip(3, &h(enc));
            let prev = lines[i - 1];
            let want = if let Some(p) = prev.strip_prefix("P3 (length-3 bootstrap proof) ") {
                serde_json::from_str(p).unwrap()
            } else {
                json_after(prev, "proof ")
            };
            let got = js_json(&m);
            assert_eq!(got["request"], 1);
            assert_subset(&got, &want);
            datas += 1;
        }
    }
    assert_eq!((requests, datas), (10, 11));
}

fn tail<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no line {key}"));
    line[key.len()..].split_whitespace().collect()
}

#[test]
fn every_wire_message_03() {
    let text = read_vector("03-proofs.out");

    let t = tail(&text, "wire.data manifest-only");
    let Message::Data(d) = round_trip(3, &h(t[0])) else {
        unreachable!()
    };
    assert_eq!((d.request, d.fork), (7, 0));
    assert!(d.block.is_none() && d.upgrade.is_none());
    let pk: [u8; 32] = h("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c")
        .try_into()
        .unwrap();
    assert_eq!(d.manifest, Some(Manifest::default_signer(pk)));
    assert_eq!(d.manifest.unwrap().signers[0].namespace, DEFAULT_NAMESPACE);

    let t = tail(&text, "wire.handshake");
    let hs = Handshake::from_bytes(&h(t[0])).unwrap();
    assert_eq!(
        hs,
        Handshake {
            seeks: true,
            capability: [0xcc; 32]
        }
    );
    assert_eq!(hs.to_bytes(), h(t[0]));

    let t = tail(&text, "wire.sync");
    let Message::Sync(s) = round_trip(0, &h(t[0])) else {
        unreachable!()
    };
    assert_eq!(
        s,
        Sync {
            fork: 0,
            length: 5,
            remote_length: 3,
            can_upgrade: true,
            uploading: true,
            downloading: true,
            has_manifest: true,
            allow_push: false
        }
    );

    let t = tail(&text, "wire.cancel");
    assert_eq!(
        round_trip(2, &h(t[0])),
        Message::Cancel(Cancel { request: 3 })
    );

    let t = tail(&text, "wire.noData");
    assert_eq!(t[0], "reason0");
    assert_eq!(
        round_trip(4, &h(t[1])),
        Message::NoData(NoData {
            request: 3,
            reason: 0
        })
    );
    assert_eq!(t[2], "reason1");
    assert_eq!(
        round_trip(4, &h(t[3])),
        Message::NoData(NoData {
            request: 3,
            reason: 1
        })
    );

    let t = tail(&text, "wire.want");
    let w = Want {
        start: 0,
        length: 2_097_152,
        any: false,
    };
    assert_eq!(round_trip(5, &h(t[0])), Message::Want(w));
    assert_eq!(t[1], "any");
    assert_eq!(
        round_trip(5, &h(t[2])),
        Message::Want(Want {
            start: 4096,
            length: 4096,
            any: true
        })
    );
    let t = tail(&text, "wire.unwant");
    assert_eq!(round_trip(6, &h(t[0])), Message::Unwant(w));

    let t = tail(&text, "wire.bitfield");
    assert_eq!(
        round_trip(7, &h(t[0])),
        Message::Bitfield(Bitfield {
            start: 0,
            bitfield: vec![0x1f]
        })
    );

    let t = tail(&text, "wire.range");
    let expect = [
        ("len1", false, 4, 1),
        ("len5", false, 0, 5),
        ("drop", true, 2, 3),
    ];
    for (k, (label, drop, start, length)) in expect.into_iter().enumerate() {
        assert_eq!(t[2 * k], label);
        assert_eq!(
            round_trip(8, &h(t[2 * k + 1])),
            Message::Range(Range {
                drop,
                start,
                length
            })
        );
    }

    let t = tail(&text, "wire.extension");
    assert_eq!(
        round_trip(9, &h(t[0])),
        Message::Extension(Extension {
            name: "hyperbee".into(),
            message: vec![1, 2]
        })
    );

    let t = tail(&text, "wire.request block+upgrade+manifest+priority");
    assert_eq!(
        round_trip(1, &h(t[0])),
        Message::Request(Request {
            id: 2,
            fork: 1,
            block: Some(RequestBlock { index: 9, nodes: 3 }),
            hash: None,
            seek: None,
            upgrade: Some(RequestUpgrade {
                start: 5,
                length: 5
            }),
            manifest: true,
            priority: 2
        })
    );
}

/// The capture abbreviates long buffers as `"<first 8 bytes hex>..(<n>B)"`: check such a value
/// against the full one, then put the full one in its place.
fn expand_abbreviations(expected: &mut Value, actual: &Value) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e.iter_mut() {
                if let Some(av) = a.get(k) {
                    expand_abbreviations(v, av);
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for (v, av) in e.iter_mut().zip(a) {
                expand_abbreviations(v, av);
            }
        }
        (e @ Value::String(_), Value::String(a)) => {
            let es = e.as_str().unwrap_or_default().to_owned();
            if let Some((prefix, n)) = es.split_once("..(") {
                let n: usize = n.trim_end_matches("B)").parse().unwrap();
                assert!(a.starts_with(prefix), "{a} does not start with {prefix}");
                assert_eq!(a.len(), 2 * n, "abbreviated length");
                *e = Value::String(a.clone());
            }
        }
        _ => {}
    }
}

fn check_capture(m: &Message, js: &str) {
    let got = js_json(m);
    let mut want: Value = serde_json::from_str(js).unwrap();
    expand_abbreviations(&mut want, &got);
    assert_eq!(got, want);
}

fn type_of(name: &str) -> u64 {
    match name {
        "sync" => 0,
        "request" => 1,
        "data" => 3,
        "range" => 8,
        other => panic!("unexpected message {other}"),
    }
}

/// Every channel message of a real JS replication session (plain protomux frames).
#[test]
fn replication_capture_04() {
    let text = read_vector("04-replication-capture.out");
    let lines: Vec<&str> = text.lines().collect();
    let mut seen = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(frame) = line
            .strip_prefix("I-> ")
            .or_else(|| line.strip_prefix("R-> "))
        else {
            continue;
        };
        let frame = h(frame);
        let desc = lines[i + 1].trim();
        let mut d = Decoder::new(&frame);
        let channel = d.uint().unwrap();
        if let Some(rest) = desc.strip_prefix("ch1 ") {
            assert_eq!(channel, 1);
            let t = d.uint().unwrap();
            let (name, js) = rest.split_once(' ').unwrap();
            assert_eq!(t, type_of(name));
            check_capture(&round_trip(t, d.rest()), js);
            seen += 1;
        } else if let Some(batch) = desc.strip_prefix("CTRL batch ") {
            // protomux batch: 00 00 ‖ uint channel ‖ (uint len ‖ uint type ‖ payload)*
            assert_eq!((channel, d.uint().unwrap(), d.uint().unwrap()), (0, 0, 1));
            let items: Vec<&str> = batch
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split("] [")
                .collect();
            for item in items {
                let len = d.uint_usize().unwrap();
                let mut md = Decoder::new(d.take(len).unwrap());
                let t = md.uint().unwrap();
                let rest = item.strip_prefix("ch1 ").unwrap();
                let (name, js) = rest.split_once(' ').unwrap();
                assert_eq!(t, type_of(name));
                check_capture(&round_trip(t, md.rest()), js);
                seen += 1;
            }
            assert!(d.is_empty());
        }
    }
    assert_eq!(seen, 16);
}

#[test]
fn trailing_optional_fields() {
    // noData / want without their trailing flags decode with flags 0
    assert_eq!(
        NoData::from_bytes(&[5]).unwrap(),
        NoData {
            request: 5,
            reason: 0
        }
    );
    assert_eq!(
        Want::from_bytes(&[1, 2]).unwrap(),
        Want {
            start: 1,
            length: 2,
            any: false
        }
    );
    // flags present but bit 0 clear: no reason follows
    assert_eq!(NoData::from_bytes(&[5, 0]).unwrap().reason, 0);
    // flags say a reason follows but it is missing
    assert!(NoData::from_bytes(&[5, 1]).is_err());
    assert!(Want::from_bytes(&[1]).is_err());
    // handshake flags 0
    assert!(!Handshake::from_bytes(&[0; 33]).unwrap().seeks);
    assert!(Handshake::from_bytes(&[1; 32]).is_err());
}

#[test]
fn hostile_lengths_are_errors() {
    // bitfield claiming 2^32 words with 4 bytes present
    let mut b = vec![0u8];
    write_uint(&mut b, 1 << 32);
    b.extend_from_slice(&[0; 4]);
    assert!(Bitfield::from_bytes(&b).is_err());
    // max safe count * 4 must not overflow
    let mut b = vec![0u8];
    write_uint(&mut b, crate::encoding::MAX_SAFE_INTEGER);
    assert!(Bitfield::from_bytes(&b).is_err());
    // data block with a huge value length
    let mut b = vec![1u8, 1, 0, 0];
    write_uint(&mut b, 1 << 40);
    assert!(Data::from_bytes(&b).is_err());
    // array of nodes with a huge count
    let mut b = vec![2u8, 1, 0, 0];
    write_uint(&mut b, 1 << 30);
    assert!(Data::from_bytes(&b).is_err());
    assert!(Message::decode(10, &[]).is_err());
    // an invalid UTF-8 extension name decodes lossily, as in JS
    assert_eq!(
        Extension::from_bytes(&[1, 0xff, 7]).unwrap().name,
        "\u{fffd}"
    );
    assert!(Extension::from_bytes(&[2, 0x61]).is_err());
}

fn arb_node() -> impl Strategy<Value = TreeNode> {
    (any::<u64>(), any::<u64>(), any::<[u8; 32]>()).prop_map(|(i, s, hash)| TreeNode {
        index: i >> 11,
        size: s >> 11,
        hash,
    })
}

fn safe() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![0u64..300, 0u64..=crate::encoding::MAX_SAFE_INTEGER]
}

fn pair() -> impl Strategy<Value = (u64, u64)> {
    (safe(), safe())
}

fn arb_nodes() -> impl Strategy<Value = Vec<TreeNode>> {
    proptest::collection::vec(arb_node(), 0..4)
}

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..80)
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (safe(), safe(), safe(), any::<[bool; 5]>()).prop_map(|(f, l, r, b)| Message::Sync(Sync {
            fork: f,
            length: l,
            remote_length: r,
            can_upgrade: b[0],
            uploading: b[1],
            downloading: b[2],
            has_manifest: b[3],
            allow_push: b[4]
        })),
        (
            (safe(), safe(), safe()),
            proptest::option::of(pair()),
            proptest::option::of(pair()),
            proptest::option::of(pair()),
            proptest::option::of(pair()),
            any::<bool>()
        )
            .prop_map(|((id, fork, priority), b, hs, s, u, manifest)| {
                Message::Request(Request {
                    id,
                    fork,
                    block: b.map(|(index, nodes)| RequestBlock { index, nodes }),
                    hash: hs.map(|(index, nodes)| RequestBlock { index, nodes }),
                    seek: s.map(|(bytes, padding)| RequestSeek { bytes, padding }),
                    upgrade: u.map(|(start, length)| RequestUpgrade { start, length }),
                    manifest,
                    priority,
                })
            }),
        safe().prop_map(|request| Message::Cancel(Cancel { request })),
        (
            (safe(), safe()),
            proptest::option::of((safe(), arb_bytes(), arb_nodes())),
            proptest::option::of((safe(), arb_nodes())),
            proptest::option::of((safe(), arb_nodes())),
            proptest::option::of((safe(), safe(), arb_nodes(), arb_nodes(), arb_bytes())),
            proptest::option::of(any::<[u8; 32]>()),
        )
            .prop_map(|((request, fork), b, hs, s, u, m)| {
                Message::Data(Box::new(Data {
                    request,
                    fork,
                    block: b.map(|(index, value, nodes)| DataBlock {
                        index,
                        value,
                        nodes,
                    }),
                    hash: hs.map(|(index, nodes)| DataHash { index, nodes }),
                    seek: s.map(|(bytes, nodes)| DataSeek { bytes, nodes }),
                    upgrade: u.map(|(start, length, nodes, additional_nodes, signature)| {
                        DataUpgrade {
                            start,
                            length,
                            nodes,
                            additional_nodes,
                            signature,
                        }
                    }),
                    manifest: m.map(Manifest::default_signer),
                }))
            }),
        pair().prop_map(|(request, reason)| Message::NoData(NoData { request, reason })),
        (safe(), safe(), any::<bool>()).prop_map(|(start, length, any)| Message::Want(Want {
            start,
            length,
            any
        })),
        (safe(), safe(), any::<bool>()).prop_map(|(start, length, any)| Message::Unwant(Want {
            start,
            length,
            any
        })),
        (safe(), proptest::collection::vec(any::<u32>(), 0..20))
            .prop_map(|(start, bitfield)| Message::Bitfield(Bitfield { start, bitfield })),
        (any::<bool>(), safe(), safe()).prop_map(|(drop, start, length)| Message::Range(Range {
            drop,
            start,
            length
        })),
        (".{0,12}", arb_bytes())
            .prop_map(|(name, message)| Message::Extension(Extension { name, message })),
    ]
}

proptest! {
    #[test]
    fn decoders_never_panic(t in 0u64..12, bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Message::decode(t, &bytes);
        let _ = Handshake::from_bytes(&bytes);
        let _ = ReorgHint::from_bytes(&bytes);
        let _ = TreeNode::from_bytes(&bytes);
    }

    #[test]
    fn messages_round_trip(m in arb_message()) {
        let bytes = m.to_bytes();
        prop_assert_eq!(bytes.len(), m.encoded_len());
        let back = Message::decode(m.type_id(), &bytes).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn handshake_round_trip(seeks in any::<bool>(), capability in any::<[u8; 32]>(), from in safe(), to in safe(), ancestors in safe()) {
        let hs = Handshake { seeks, capability };
        prop_assert_eq!(Handshake::from_bytes(&hs.to_bytes()).unwrap(), hs);
        let r = ReorgHint { from, to, ancestors };
        prop_assert_eq!(r.to_bytes().len(), r.encoded_len());
        prop_assert_eq!(ReorgHint::from_bytes(&r.to_bytes()).unwrap(), r);
    }
}

/// `Data::encode_around_block` with the block's bytes inserted at its offset is `encode`.
#[test]
fn data_encoded_around_its_block_joins_to_its_encoding() {
    let node = |i: u64| TreeNode {
        index: i,
        size: 10 * i,
        hash: [i as u8; 32],
    };
    let with = |value: Vec<u8>, hash: bool| Data {
        request: 300,
        fork: 2,
        block: Some(DataBlock {
            index: 70_000,
            value,
            nodes: vec![node(1), node(5)],
        }),
        hash: hash.then(|| DataHash {
            index: 9,
            nodes: vec![node(9)],
        }),
        ..Data::default()
    };
    for d in [
        with(vec![7; 70_000], false),
        with(vec![3; 5], true),
        with(Vec::new(), false),
    ] {
        let (mut head, at) = d.encode_around_block().unwrap();
        let tail = head.split_off(at);
        head.extend_from_slice(&d.block.as_ref().unwrap().value);
        head.extend_from_slice(&tail);
        assert_eq!(head, d.to_bytes());
    }
    assert!(Data::default().encode_around_block().is_none());
}
