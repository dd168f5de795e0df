//! The handshake against the JS vectors: `vectors/data/05-noise-secretstream.out` (XX, fixed keys)
//! and `noiseIK` of `vectors/net/vectors-static.json` (IK with prologue and payloads).

use super::*;

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors");

/// The `.out` file of the 05 vector script.
pub(crate) fn vectors_05() -> String {
    std::fs::read_to_string(format!("{REFERENCE}/data/05-noise-secretstream.out"))
        .expect("tests/vectors/data/05-noise-secretstream.out")
}

/// The hex value after `prefix` on the line starting with `prefix`, up to the next space.
pub(crate) fn field(text: &str, prefix: &str) -> Vec<u8> {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?}"));
    let word = line[prefix.len()..]
        .split_whitespace()
        .find(|w| w.len() >= 2 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no hex on line {line:?}"));
    hex::decode(word).unwrap()
}

fn arr32(v: &[u8]) -> [u8; 32] {
    v.try_into().unwrap()
}

fn xx_pair() -> (Handshake, Handshake) {
    let i = Handshake::new(
        Pattern::XX,
        true,
        KeyPair::from_seed(&[0x11; 32]),
        KeyPair::from_seed(&[0xa1; 32]),
        &[],
        None,
    )
    .unwrap();
    let r = Handshake::new(
        Pattern::XX,
        false,
        KeyPair::from_seed(&[0x22; 32]),
        KeyPair::from_seed(&[0xb2; 32]),
        &[],
        None,
    )
    .unwrap();
    (i, r)
}

#[test]
fn xx_matches_js_vectors() {
    let v = vectors_05();
    let (mut i, mut r) = xx_pair();
    assert_eq!(
        Pattern::XX.protocol_name(),
        "Noise_XX_Ed25519_ChaChaPoly_BLAKE2b"
    );
    assert_eq!(
        i.handshake_hash().to_vec(),
        field(&v, "h0 (after initialise, prologue empty) ")
    );
    assert_eq!(i.public_key().to_vec(), field(&v, "initiator static pk "));
    assert_eq!(r.public_key().to_vec(), field(&v, "responder static pk "));

    assert!(i.is_my_turn() && !r.is_my_turn());
    let m1 = i.send(&[]).unwrap();
    assert_eq!(m1, field(&v, "msg1 32B "));
    assert!(r.recv(&m1).unwrap().is_empty());
    let m2 = r.send(&[]).unwrap();
    assert_eq!(m2, field(&v, "msg2 96B "));
    assert!(i.recv(&m2).unwrap().is_empty());
    assert_eq!(i.remote_static().unwrap().to_vec(), r.public_key().to_vec());
    let m3 = i.send(&[]).unwrap();
    assert_eq!(m3, field(&v, "msg3 64B "));
    assert!(i.is_complete() && !r.is_complete());
    assert!(r.recv(&m3).unwrap().is_empty());
    assert!(r.is_complete());

    let a = i.finish().unwrap();
    let b = r.finish().unwrap();
    assert_eq!(a.hash.to_vec(), field(&v, "handshakeHash "));
    assert_eq!(b.hash, a.hash);
    assert_eq!(a.tx.to_vec(), field(&v, "I.tx "));
    assert_eq!(b.tx.to_vec(), field(&v, "R.tx "));
    assert_eq!(a.rx, b.tx);
    assert_eq!(b.rx, a.tx);
    assert_eq!(a.remote_public_key, b.public_key);
    assert_eq!(b.remote_public_key, a.public_key);
}

#[test]
fn ik_matches_js_vectors() {
    let path = format!("{REFERENCE}/net/vectors-static.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).unwrap();
    let ik = &json["noiseIK"];
    let h = |k: &str| hex::decode(ik[k].as_str().unwrap()).unwrap();
    let server = KeyPair::from_seed(&[1; 32]);
    let client = KeyPair::from_seed(&[2; 32]);
    assert_eq!(server.public_key.to_vec(), h("responderStatic"));
    assert_eq!(client.public_key.to_vec(), h("initiatorStatic"));
    let prologue = h("prologue");
    let mut i = Handshake::new(
        Pattern::IK,
        true,
        client.clone(),
        KeyPair::from_seed(&arr32(&h("initiatorEphemeralSeed"))),
        &prologue,
        Some(server.public_key),
    )
    .unwrap();
    let mut r = Handshake::new(
        Pattern::IK,
        false,
        server.clone(),
        KeyPair::from_seed(&arr32(&h("responderEphemeralSeed"))),
        &prologue,
        None,
    )
    .unwrap();
    let m1 = i.send(&h("clientPayloadPlain")).unwrap();
    assert_eq!(m1, h("msg1"));
    assert_eq!(r.recv(&m1).unwrap(), h("clientPayloadPlain"));
    assert_eq!(r.remote_static().unwrap().to_vec(), h("initiatorStatic"));
    let m2 = r.send(&h("serverPayloadPlain")).unwrap();
    assert_eq!(m2, h("msg2"));
    assert!(r.is_complete());
    assert_eq!(i.recv(&m2).unwrap(), h("serverPayloadPlain"));
    let (a, b) = (i.finish().unwrap(), r.finish().unwrap());
    assert_eq!(a.hash.to_vec(), h("handshakeHash"));
    assert_eq!(b.hash, a.hash);
    assert_eq!(a.tx.to_vec(), h("initiatorTx"));
    assert_eq!(a.rx.to_vec(), h("initiatorRx"));
    assert_eq!(b.tx.to_vec(), h("responderTx"));
    assert_eq!(b.remote_public_key, client.public_key);
}

#[test]
fn ik_initiator_needs_remote_static() {
    let err = Handshake::new(
        Pattern::IK,
        true,
        KeyPair::from_seed(&[1; 32]),
        KeyPair::from_seed(&[2; 32]),
        &[],
        None,
    )
    .unwrap_err();
    assert_eq!(err, NoiseError::MissingRemoteStatic);
}

#[test]
fn turns_are_enforced() {
    let (mut i, mut r) = xx_pair();
    assert_eq!(r.send(&[]), Err(NoiseError::WrongTurn("send")));
    // A wrong-turn call is a caller error and does not poison the handshake.
    assert!(!r.is_failed());
    assert_eq!(i.recv(&[0; 32]), Err(NoiseError::WrongTurn("receive")));
    let m1 = i.send(&[]).unwrap();
    r.recv(&m1).unwrap();
    assert_eq!(i.clone().finish().unwrap_err(), NoiseError::NotComplete);
}

#[test]
fn tampered_messages_fail_and_poison() {
    let (mut i, mut r) = xx_pair();
    let m1 = i.send(&[]).unwrap();
    r.recv(&m1).unwrap();
    let m2 = r.send(b"payload").unwrap();
    for pos in [0, 31, 32, 60, m2.len() - 1] {
        let mut bad = m2.clone();
        bad[pos] ^= 1;
        let mut probe = i.clone();
        assert!(probe.recv(&bad).is_err(), "flipped byte {pos} accepted");
        assert!(probe.is_failed());
        assert_eq!(probe.recv(&m2), Err(NoiseError::Failed));
    }
    for len in 0..m2.len() {
        let mut probe = i.clone();
        assert!(
            probe.recv(&m2[..len]).is_err(),
            "truncated to {len} accepted"
        );
    }
    assert_eq!(i.recv(&m2).unwrap(), b"payload");
}

#[test]
fn invalid_ephemeral_points_are_rejected() {
    let (mut i, mut r) = xx_pair();
    i.send(&[]).unwrap();
    // The identity point (small order): libsodium refuses it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(r.clone().recv(&identity).is_ok()); // msg1 has no DH yet
    let mut r2 = r.clone();
    r2.recv(&identity).unwrap();
    assert_eq!(r2.send(&[]), Err(NoiseError::InvalidPublicKey));
    // A non-canonical encoding (y = p + 1, an alias of the identity).
    let mut noncanon = [0xffu8; 32];
    noncanon[0] = 0xee;
    noncanon[31] = 0x7f;
    r.recv(&noncanon).unwrap();
    assert_eq!(r.send(&[]), Err(NoiseError::InvalidPublicKey));
}

#[test]
fn payloads_round_trip_and_size_limit() {
    let (mut i, mut r) = xx_pair();
    let big = vec![7u8; 70000];
    // msg1 has no key: JS sends the payload in clear, any size.
    let m1 = i.send(&big).unwrap();
    assert_eq!(r.recv(&m1).unwrap(), big);
    assert!(matches!(
        r.clone().send(&big),
        Err(NoiseError::MessageTooLong { .. })
    ));
    let m2 = r.send(b"two").unwrap();
    assert_eq!(i.recv(&m2).unwrap(), b"two");
    let m3 = i.send(b"three").unwrap();
    assert_eq!(r.recv(&m3).unwrap(), b"three");
    assert_eq!(r.send(&[]), Err(NoiseError::AlreadyComplete));
}
