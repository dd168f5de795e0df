//! secret-stream against `vectors/data/05-noise-secretstream.out` and
//! `vectors/net/vectors-secretstream-send.json`, two Rust peers under random chunking, and hostile
//! input.

use proptest::prelude::*;

use super::cipher::{DecryptError, Pull, Push, TAG_FINAL, TAG_PUSH, TAG_REKEY};
use super::*;
use crate::noise::tests::{field, vectors_05};

fn entropy(seed: u8, header: u8) -> Entropy {
    Entropy {
        ephemeral_seed: [seed; 32],
        header: [header; HEADERBYTES],
        send_counter: [0; 8],
    }
}

/// The 05 vector peers: static seeds 0x11 / 0x22, ephemeral seeds 0xa1 / 0xb2, header 0x5a.
fn vector_pair(options: Options) -> (SecretStream, SecretStream) {
    let i = SecretStream::new_initiator(
        KeyPair::from_seed(&[0x11; 32]),
        entropy(0xa1, 0x5a),
        options.clone(),
        0,
    )
    .unwrap();
    let r = SecretStream::new_responder(
        KeyPair::from_seed(&[0x22; 32]),
        entropy(0xb2, 0x77),
        options,
        0,
    )
    .unwrap();
    (i, r)
}

fn drain(s: &mut SecretStream) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn events(s: &mut SecretStream) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// The messages among `events`, in order.
fn messages_in(events: Vec<Event>) -> Vec<Vec<u8>> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// Moves everything queued between the two peers until both are quiet.
fn pump(a: &mut SecretStream, b: &mut SecretStream, now: u64) {
    loop {
        let ab = drain(a);
        let ba = drain(b);
        if ab.is_empty() && ba.is_empty() {
            return;
        }
        for f in ab {
            b.handle_input(now, &f);
        }
        for f in ba {
            a.handle_input(now, &f);
        }
    }
}

fn hex_after(text: &str, marker: &str) -> Vec<u8> {
    let line = text.lines().find(|l| l.contains(marker)).unwrap();
    let word = line
        .split(marker)
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    hex::decode(word).unwrap()
}

#[test]
fn namespaces_and_ids_match_js() {
    let v = vectors_05();
    let [i, r, s] = namespaces();
    assert_eq!(i.to_vec(), field(&v, "NS_INITIATOR "));
    assert_eq!(r.to_vec(), field(&v, "NS_RESPONDER "));
    assert_eq!(s.to_vec(), field(&v, "NS_SEND "));
    let hash: [u8; 64] = field(&v, "handshakeHash ").try_into().unwrap();
    assert_eq!(
        stream_id(&hash, true).to_vec(),
        hex_after(&v, "key=handshakeHash) ")
    );
    assert_eq!(
        stream_id(&hash, false).to_vec(),
        field(&v, "streamId(responder) ")
    );
}

#[test]
fn cipher_matches_js_push_vectors() {
    let v = vectors_05();
    let key: [u8; 32] = field(&v, "I.tx ").try_into().unwrap();
    let mut push = Push::new(&key, [0x5a; 24]);
    let mut pull = Pull::new(&key, &[0x5a; 24]);
    let frames: Vec<Vec<u8>> = v
        .lines()
        .filter(|l| l.starts_with("push("))
        .map(|l| hex::decode(l.rsplit(' ').next().unwrap()).unwrap())
        .collect();
    let plains = [
        b"hello".to_vec(),
        vec![],
        hex::decode("0001010f6879706572636f72652f616c706861").unwrap(),
    ];
    assert_eq!(frames.len(), plains.len());
    for (p, f) in plains.iter().zip(&frames) {
        let ct = push.push(p, TAG_MESSAGE);
        assert_eq!(ct, f[3..], "push({})", hex::encode(p));
        assert_eq!(pull.pull(&ct).unwrap(), (p.clone(), TAG_MESSAGE));
    }
}

/// libsodium's push computed in one piece (keystream over the whole message, then one Poly1305
/// pass over tag block, ciphertext, `mlen & 15` zero bytes and the lengths), for a fresh stream.
fn one_shot_push(key: &[u8; 32], header: &[u8; 24], message: &[u8], tag: u8) -> Vec<u8> {
    use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
    use poly1305::universal_hash::KeyInit;
    let k = chacha20::hchacha::<chacha20::cipher::consts::U10>(
        &(*key).into(),
        &<[u8; 16]>::try_from(&header[..16]).unwrap().into(),
    );
    let mut nonce = [0u8; 12];
    nonce[0] = 1;
    nonce[4..].copy_from_slice(&header[16..]);
    let at = |block: u64| {
        let mut c = chacha20::ChaCha20::new(&k, &nonce.into());
        c.seek(block * 64);
        c
    };
    let mut poly_key = [0u8; 32];
    at(0).apply_keystream(&mut poly_key);
    let mut block = [0u8; 64];
    block[0] = tag;
    at(1).apply_keystream(&mut block);
    let mut ct = message.to_vec();
    at(2).apply_keystream(&mut ct);
    let mut mac_input = block.to_vec();
    mac_input.extend_from_slice(&ct);
    mac_input.resize(mac_input.len() + (message.len() & 15), 0);
    mac_input.extend_from_slice(&0u64.to_le_bytes());
    mac_input.extend_from_slice(&(64 + message.len() as u64).to_le_bytes());
    let mac = poly1305::Poly1305::new(&poly_key.into()).compute_unpadded(&mac_input);
    let mut out = vec![block[0]];
    out.extend_from_slice(&ct);
    out.extend_from_slice(&mac);
    out
}

#[test]
fn cipher_long_messages_match_one_shot_computation() {
    let key = [7u8; 32];
    let header = [0x33; 24];
    for len in [0, 15, 16, 17, 4095, 4096, 4097, 8192 + 5, 70_000] {
        let msg: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let ct = Push::new(&key, header).push(&msg, TAG_MESSAGE);
        assert_eq!(
            ct,
            one_shot_push(&key, &header, &msg, TAG_MESSAGE),
            "length {len}"
        );
        let mut pull = Pull::new(&key, &header);
        if len > 0 {
            // A tampered message fails and leaves the body as it was.
            let mut body = ct[1..=len].to_vec();
            body[len / 2] ^= 1;
            let before = body.clone();
            assert_eq!(
                pull.pull_in_place(ct[0], &mut body, &ct[len + 1..]),
                Err(DecryptError)
            );
            assert_eq!(body, before, "length {len}");
        }
        assert_eq!(pull.pull(&ct).unwrap(), (msg, TAG_MESSAGE), "length {len}");
    }
}

#[test]
fn cipher_tags_rekey_and_tampering() {
    let key = [9u8; 32];
    let mut push = Push::new(&key, [3; 24]);
    let mut pull = Pull::new(&key, &[3; 24]);
    for (i, tag) in [TAG_MESSAGE, TAG_PUSH, TAG_REKEY, TAG_MESSAGE, TAG_FINAL]
        .into_iter()
        .enumerate()
    {
        let msg = vec![i as u8; 10 * i + 3];
        let ct = push.push(&msg, tag);
        for pos in [0, 1, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[pos] ^= 0x80;
            assert_eq!(pull.clone().pull(&bad), Err(DecryptError));
        }
        assert_eq!(pull.pull(&ct).unwrap(), (msg, tag));
    }
    push.rekey();
    pull.rekey();
    let ct = push.push(b"after", TAG_MESSAGE);
    assert_eq!(pull.pull(&ct).unwrap().0, b"after");
    assert_eq!(pull.pull(&[0; 16]), Err(DecryptError));
    // A replayed frame fails: the nonce moved on.
    assert_eq!(pull.pull(&ct), Err(DecryptError));
}

#[test]
fn full_stream_is_byte_identical_to_js() {
    let v = vectors_05();
    let (mut i, mut r) = vector_pair(Options::default());
    let m1 = drain(&mut i);
    assert_eq!(m1, vec![field(&v, "framed msg1 ")]);
    r.handle_input(1, &m1[0]);
    let m2 = drain(&mut r);
    assert_eq!(m2.len(), 1);
    assert_eq!(m2[0][3..], field(&v, "msg2 96B ")[..]);
    i.handle_input(2, &m2[0]);
    i.write(b"hello").unwrap();
    let out = drain(&mut i);
    // msg3, then the header frame, then "hello".
    assert_eq!(out.len(), 3);
    assert_eq!(out[0][3..], field(&v, "msg3 64B ")[..]);
    assert_eq!(out[1], hex_after(&v, "(initiator->responder) = "));
    let hello = v
        .lines()
        .find(|l| l.starts_with("push(\"68656c6c6f\")"))
        .unwrap();
    assert_eq!(
        out[2],
        hex::decode(hello.rsplit(' ').next().unwrap()).unwrap()
    );

    let hash: [u8; 64] = field(&v, "handshakeHash ").try_into().unwrap();
    let ev = events(&mut i);
    assert_eq!(
        ev,
        vec![Event::Connected {
            remote_public_key: KeyPair::from_seed(&[0x22; 32]).public_key,
            handshake_hash: hash
        }]
    );
    for f in &out {
        r.handle_input(3, f);
    }
    let ev = events(&mut r);
    assert_eq!(
        ev,
        vec![
            Event::Connected {
                remote_public_key: KeyPair::from_seed(&[0x11; 32]).public_key,
                handshake_hash: hash
            },
            Event::Message(b"hello".to_vec())
        ]
    );
    assert_eq!(r.handshake_hash(), Some(hash));
}

/// `write_owned` sends the bytes `write` sends (in three pieces per message), also for
/// messages written before the handshake completed, and the peer reads them.
#[test]
fn owned_writes_send_the_bytes_of_writes() {
    let messages: Vec<Vec<u8>> = vec![
        b"early".to_vec(),
        Vec::new(),
        (0..70_000u32).map(|i| (i % 251) as u8).collect(),
        b"x".to_vec(),
    ];
    let sent = |owned: bool| {
        let (mut i, mut r) = vector_pair(Options::default());
        if owned {
            i.write_owned(messages[0].clone()).unwrap();
        } else {
            i.write(&messages[0]).unwrap();
        }
        pump(&mut i, &mut r, 1);
        let mut wire = Vec::new();
        let mut pieces = 0;
        for m in &messages[1..] {
            if owned {
                i.write_owned(m.clone()).unwrap();
            } else {
                i.write(m).unwrap();
            }
            for p in drain(&mut i) {
                pieces += 1;
                wire.extend_from_slice(&p);
            }
        }
        r.handle_input(2, &wire);
        let got = messages_in(events(&mut r));
        (wire, pieces, got)
    };
    let (plain, plain_pieces, plain_got) = sent(false);
    let (owned, owned_pieces, owned_got) = sent(true);
    assert!(plain == owned, "the bytes on the wire differ");
    assert_eq!(plain_pieces, 3);
    assert_eq!(owned_pieces, 9);
    assert!(plain_got == messages, "the messages read differ");
    assert!(owned_got == plain_got, "the messages read differ");
}

/// `write_batch` sends the bytes of writing its messages one by one, in one piece, also before
/// the handshake completed; a too-large message refuses the whole batch.
#[test]
fn batched_writes_send_the_bytes_of_writes() {
    let messages: Vec<Vec<u8>> = vec![
        Vec::new(),
        (0..70_000u32).map(|i| (i % 251) as u8).collect(),
        b"x".to_vec(),
        (0..1500u32).map(|i| (i % 7) as u8).collect(),
    ];
    let sent = |batched: bool| {
        let (mut i, mut r) = vector_pair(Options::default());
        if batched {
            i.write_batch(&messages[..2]).unwrap();
        } else {
            i.write(&messages[0]).unwrap();
            i.write(&messages[1]).unwrap();
        }
        pump(&mut i, &mut r, 1);
        let mut wire = Vec::new();
        let mut pieces = 0;
        if batched {
            i.write_batch(&messages[2..]).unwrap();
            i.write_batch::<Vec<u8>>(&[]).unwrap();
        } else {
            i.write(&messages[2]).unwrap();
            i.write(&messages[3]).unwrap();
        }
        for p in drain(&mut i) {
            pieces += 1;
            wire.extend_from_slice(&p);
        }
        r.handle_input(2, &wire);
        let got = messages_in(events(&mut r));
        (wire, pieces, got)
    };
    let (plain, plain_pieces, plain_got) = sent(false);
    let (batched, batched_pieces, batched_got) = sent(true);
    assert!(plain == batched, "the bytes on the wire differ");
    assert_eq!(plain_pieces, 2);
    assert_eq!(batched_pieces, 1);
    assert!(batched_got == messages, "the messages read differ");
    assert!(plain_got == batched_got, "the messages read differ");

    let (mut i, _r) = vector_pair(Options::default());
    let too_big = vec![b"ok".to_vec(), vec![0u8; MAX_MESSAGE_LEN + 1]];
    assert!(matches!(
        i.write_batch(&too_big),
        Err(StreamError::MessageTooLarge { .. })
    ));
}

#[test]
fn datagrams_match_js_vector() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/net/vectors-secretstream-send.json"
    );
    let send: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect(path)).unwrap();
    let stat_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/net/vectors-static.json"
    );
    let stat: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stat_path).expect(stat_path)).unwrap();
    let h = |v: &serde_json::Value| hex::decode(v.as_str().unwrap()).unwrap();
    let hash: [u8; 64] = h(&stat["noiseIK"]["handshakeHash"]).try_into().unwrap();

    // JS zeroes the counter and sets `initial` to ff.. after setup; only the counter shapes the
    // envelope, so a counter starting at 0 gives the same bytes.
    let mut s = datagram::SecretSend::new(&hash, true, [0; 8]);
    assert_eq!(s.send_key().to_vec(), h(&send["initiatorSendKey"]));
    let r = datagram::SecretSend::new(&hash, false, [1; 8]);
    assert_eq!(r.recv_key().to_vec(), h(&send["responderRecvKey"]));
    assert_eq!(r.send_key(), s.recv_key());
    let env = s.seal(b"hello").unwrap();
    assert_eq!(env, h(&send["envelope"]));
    assert_eq!(env[..8].to_vec(), h(&send["counterAfterIncrement"]));
    assert_eq!(r.open(&env).unwrap(), b"hello");
    // Tampering, truncation and the wrong direction are dropped.
    let mut bad = env.clone();
    bad[10] ^= 1;
    assert_eq!(r.open(&bad), None);
    assert_eq!(r.open(&env[..23]), None);
    assert_eq!(s.open(&env), None);
    // The counter moves on: the next envelope differs and still opens.
    let env2 = s.seal(b"").unwrap();
    assert_eq!(env2[..8], [2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(r.open(&env2), Some(vec![]));
}

#[test]
fn datagram_nonce_exhaustion_closes_the_stream() {
    let (mut i, mut r) = vector_pair(Options::default());
    pump(&mut i, &mut r, 0);
    let env = i.send_datagram(b"dgram").unwrap();
    assert_eq!(r.recv_datagram(&env).unwrap(), b"dgram");
    assert_eq!(i.recv_datagram(&env), None);
    // Put the counter one step before its (random) start: the next send would reuse a nonce.
    let session = i.session.as_mut().unwrap();
    session
        .send
        .set_counter([4, 0, 0, 0, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(i.send_datagram(b"z"), Err(StreamError::NonceExhausted));
    assert!(i.is_closed());
    assert_eq!(
        events(&mut i).last(),
        Some(&Event::Closed(Some(StreamError::NonceExhausted)))
    );
}

#[test]
fn ik_streams_connect() {
    let server = KeyPair::from_seed(&[7; 32]);
    let options = Options {
        pattern: Pattern::IK,
        remote_public_key: Some(server.public_key),
        ..Options::default()
    };
    assert!(matches!(
        SecretStream::new_initiator(
            KeyPair::from_seed(&[8; 32]),
            entropy(1, 2),
            Options {
                remote_public_key: None,
                ..options.clone()
            },
            0
        ),
        Err(StreamError::Handshake(NoiseError::MissingRemoteStatic))
    ));
    let mut i =
        SecretStream::new_initiator(KeyPair::from_seed(&[8; 32]), entropy(1, 2), options, 0)
            .unwrap();
    let mut r = SecretStream::new_responder(
        server.clone(),
        entropy(3, 4),
        Options {
            pattern: Pattern::IK,
            ..Options::default()
        },
        0,
    )
    .unwrap();
    i.write(b"early").unwrap();
    pump(&mut i, &mut r, 0);
    assert_eq!(i.remote_public_key(), Some(server.public_key));
    assert_eq!(i.handshake_hash(), r.handshake_hash());
    let ev = events(&mut r);
    assert_eq!(ev.last(), Some(&Event::Message(b"early".to_vec())));
}

#[test]
fn from_external_handshake() {
    let a = crate::noise::Split {
        tx: [1; 32],
        rx: [2; 32],
        hash: [3; 64],
        public_key: [4; 32],
        remote_public_key: [5; 32],
    };
    let b = crate::noise::Split {
        tx: a.rx,
        rx: a.tx,
        hash: a.hash,
        public_key: a.remote_public_key,
        remote_public_key: a.public_key,
    };
    let mut i = SecretStream::from_handshake(true, a.clone(), entropy(0, 6), Options::default(), 0);
    let mut r = SecretStream::from_handshake(false, b, entropy(0, 7), Options::default(), 0);
    assert!(i.is_connected() && r.is_connected());
    r.write(b"from responder").unwrap();
    pump(&mut i, &mut r, 0);
    assert_eq!(
        events(&mut i),
        vec![
            Event::Connected {
                remote_public_key: [5; 32],
                handshake_hash: [3; 64]
            },
            Event::Message(b"from responder".to_vec())
        ]
    );
    // Both sides "initiator": the stream ids do not match.
    let c = crate::noise::Split {
        tx: [2; 32],
        rx: [1; 32],
        hash: [3; 64],
        public_key: [5; 32],
        remote_public_key: [4; 32],
    };
    let mut i2 = SecretStream::from_handshake(true, c, entropy(0, 8), Options::default(), 0);
    let mut i3 = SecretStream::from_handshake(true, a, entropy(0, 6), Options::default(), 0);
    let header = drain(&mut i3).concat();
    assert_eq!(header.len(), 3 + IDHEADERBYTES);
    i2.handle_input(0, &header);
    assert_eq!(
        events(&mut i2).last(),
        Some(&Event::Closed(Some(StreamError::InvalidStreamId)))
    );
}

#[test]
fn end_and_close() {
    let (mut i, mut r) = vector_pair(Options::default());
    pump(&mut i, &mut r, 0);
    i.write(b"last").unwrap();
    i.end();
    assert_eq!(i.write(b"more"), Err(StreamError::NotWritable));
    assert!(!i.wants_shutdown());
    let frames = drain(&mut i);
    assert!(i.wants_shutdown());
    for f in frames {
        r.handle_input(1, &f);
    }
    r.handle_eof(1);
    assert_eq!(
        events(&mut r)[1..],
        [Event::Message(b"last".to_vec()), Event::End]
    );
    assert!(!r.is_closed());
    r.write(b"bye").unwrap();
    r.end();
    for f in drain(&mut r) {
        i.handle_input(2, &f);
    }
    assert!(r.is_closed());
    assert_eq!(events(&mut r), vec![Event::Closed(None)]);
    i.handle_eof(2);
    assert_eq!(
        events(&mut i)[1..],
        [
            Event::Message(b"bye".to_vec()),
            Event::End,
            Event::Closed(None)
        ]
    );
}

#[test]
fn eof_during_handshake_or_mid_frame_is_an_error() {
    let (mut i, mut r) = vector_pair(Options::default());
    let m1 = drain(&mut i);
    r.handle_input(0, &m1[0]);
    r.handle_eof(0);
    assert_eq!(
        events(&mut r),
        vec![Event::Closed(Some(StreamError::EndedDuringHandshake))]
    );

    let (mut i, mut r) = vector_pair(Options::default());
    pump(&mut i, &mut r, 0);
    i.write(b"cut short").unwrap();
    let f = drain(&mut i).concat();
    r.handle_input(0, &f[..f.len() - 1]);
    r.handle_eof(0);
    assert_eq!(
        events(&mut r).last(),
        Some(&Event::Closed(Some(StreamError::TruncatedFrame)))
    );
}

#[test]
fn timeout_and_keep_alive() {
    let options = Options {
        keep_alive: 100,
        timeout: 250,
        ..Options::default()
    };
    let (mut i, mut r) = vector_pair(options.clone());
    assert_eq!(i.poll_timeout(), Some(100));
    pump(&mut i, &mut r, 0);
    events(&mut i);
    events(&mut r);
    // Both keep each other alive: step time by 50ms for 2 seconds.
    let mut keepalive_frames = 0;
    for now in (50..2000).step_by(50) {
        for s in [&mut i, &mut r] {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        let ab = drain(&mut i);
        keepalive_frames += ab.len();
        for f in ab {
            r.handle_input(now, &f);
        }
        for f in drain(&mut r) {
            i.handle_input(now, &f);
        }
    }
    assert!(keepalive_frames >= 15, "{keepalive_frames} keep-alives");
    // Empty messages are filtered: no events at all.
    assert!(events(&mut i).is_empty() && events(&mut r).is_empty());
    assert!(!i.is_closed() && !r.is_closed());

    // The peer goes silent: the timeout fires 250ms after the last input.
    let last = 2000;
    assert!(r.poll_timeout().unwrap() <= last + 250);
    r.handle_timeout(last + 100); // keep-alive only
    assert!(!r.is_closed());
    r.handle_timeout(last + 250);
    assert!(r.is_closed());
    assert_eq!(
        events(&mut r),
        vec![Event::Closed(Some(StreamError::TimedOut))]
    );
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn zero_byte_messages_without_filter_are_reported() {
    let (mut i, mut r) = vector_pair(Options::default());
    pump(&mut i, &mut r, 0);
    i.write(&[]).unwrap();
    pump(&mut i, &mut r, 0);
    assert_eq!(events(&mut r).last(), Some(&Event::Message(vec![])));
}

#[test]
fn hostile_frames_close_with_typed_errors() {
    let connected = || {
        let (mut i, mut r) = vector_pair(Options::default());
        pump(&mut i, &mut r, 0);
        events(&mut i);
        events(&mut r);
        (i, r)
    };
    // Too short for a secretstream message.
    let (_, mut r) = connected();
    r.handle_input(0, &[3, 0, 0, 1, 2, 3]);
    assert_eq!(
        events(&mut r),
        vec![Event::Closed(Some(StreamError::InvalidMessage { len: 3 }))]
    );
    // Bad MAC.
    let (mut i, mut r) = connected();
    i.write(b"x").unwrap();
    let mut f = drain(&mut i).concat();
    let n = f.len();
    f[n - 1] ^= 1;
    r.handle_input(0, &f);
    assert_eq!(
        events(&mut r),
        vec![Event::Closed(Some(StreamError::Decrypt))]
    );
    // Wrong-size header frame.
    let (mut i, mut r) = vector_pair(Options::default());
    r.handle_input(0, &drain(&mut i).concat());
    i.handle_input(0, &drain(&mut r).concat());
    let out = drain(&mut i);
    r.handle_input(0, &out[0]); // msg3 only
    r.handle_input(0, &[2, 0, 0, 0, 0]);
    assert_eq!(
        events(&mut r).last(),
        Some(&Event::Closed(Some(StreamError::InvalidHeaderMessage {
            len: 2
        })))
    );
    // A frame over the configured maximum.
    let (_, mut r) = vector_pair(Options {
        max_frame_len: 1000,
        ..Options::default()
    });
    r.handle_input(0, &[0xe9, 0x03, 0x00]);
    assert_eq!(
        events(&mut r),
        vec![Event::Closed(Some(StreamError::FrameTooLarge {
            len: 1001,
            max: 1000
        }))]
    );
    // Garbage instead of a handshake message.
    let (_, mut r) = vector_pair(Options::default());
    r.handle_input(0, &[5, 0, 0, 1, 2, 3, 4, 5]);
    assert_eq!(
        events(&mut r),
        vec![Event::Closed(Some(StreamError::Handshake(
            NoiseError::Truncated
        )))]
    );
    assert_eq!(r.poll_transmit(), None);
    assert_eq!(r.write(b"no"), Err(StreamError::NotWritable));
    // Too large a write is refused without closing.
    let (mut i, _) = connected();
    assert!(matches!(
        i.write(&vec![0; MAX_MESSAGE_LEN + 1]),
        Err(StreamError::MessageTooLarge { .. })
    ));
    assert!(!i.is_closed());
}

/// A fresh responder and everything the initiator sends it for `messages` (handshake, header,
/// messages), the initiator having ended its side.
fn conversation(messages: &[Vec<u8>]) -> (SecretStream, Vec<u8>) {
    // The handshake part is the same every time: run it once (curve arithmetic is slow in debug
    // builds), then frame the messages with a `Push` in the state the initiator's would be in.
    static HANDSHAKE: std::sync::OnceLock<(Vec<u8>, [u8; 32])> = std::sync::OnceLock::new();
    let (prefix, tx) = HANDSHAKE.get_or_init(|| {
        let (mut i, mut probe) = vector_pair(Options::default());
        let m1 = drain(&mut i).concat();
        probe.handle_input(0, &m1);
        i.handle_input(0, &drain(&mut probe).concat());
        let mut wire = m1;
        wire.extend_from_slice(&drain(&mut i).concat());
        (wire, field(&vectors_05(), "I.tx ").try_into().unwrap())
    });
    let mut push = Push::new(tx, [0x5a; 24]);
    let mut wire = prefix.clone();
    for m in messages {
        let body = push.push(m, TAG_MESSAGE);
        wire.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
        wire.extend_from_slice(&body);
    }
    let (_, r) = vector_pair(Options::default());
    (r, wire)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_chunking_delivers_the_same_messages(
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let (mut r, wire) = conversation(&messages);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        for w in points.windows(2) {
            r.handle_input(0, &wire[w[0]..w[1]]);
            // The responder's own output (msg2, header) goes nowhere: the initiator already ran.
            drain(&mut r);
        }
        r.handle_eof(0);
        let got: Vec<Event> = events(&mut r);
        let mut want = vec![Event::Connected {
            remote_public_key: KeyPair::from_seed(&[0x11; 32]).public_key,
            handshake_hash: r.handshake_hash().unwrap(),
        }];
        want.extend(messages.iter().cloned().map(Event::Message));
        want.push(Event::End);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn garbage_never_panics(
        prefix_len in 0usize..400,
        garbage in prop::collection::vec(any::<u8>(), 0..600),
        chunk in 1usize..64,
    ) {
        let (mut r, wire) = conversation(&[b"hello".to_vec(), vec![1; 100]]);
        let mut input = wire[..prefix_len.min(wire.len())].to_vec();
        input.extend_from_slice(&garbage);
        for c in input.chunks(chunk) {
            r.handle_input(0, c);
        }
        r.handle_eof(0);
        let ev = events(&mut r);
        // Whatever happened, the stream ends in exactly one terminal state.
        let closes = ev.iter().filter(|e| matches!(e, Event::Closed(_))).count();
        let ends = ev.iter().filter(|e| matches!(e, Event::End)).count();
        prop_assert!(closes == 1 || ends == 1);
        prop_assert!(closes <= 1 && ends <= 1);
    }

    #[test]
    fn truncated_streams_never_panic(cut in 0usize..2000) {
        let (mut r, wire) = conversation(&[b"a".to_vec(), vec![2; 500], vec![3; 700]]);
        let cut = cut.min(wire.len());
        r.handle_input(0, &wire[..cut]);
        r.handle_eof(0);
        let ev = events(&mut r);
        let last = ev.last().cloned();
        if cut == wire.len() {
            prop_assert_eq!(last, Some(Event::End));
        } else {
            prop_assert!(matches!(last, Some(Event::Closed(Some(_))) | Some(Event::End)));
        }
        // Whatever arrived is a prefix of what was sent.
        let sent = [b"a".to_vec(), vec![2; 500], vec![3; 700]];
        let got = messages_in(ev);
        prop_assert_eq!(&got[..], &sent[..got.len()]);
    }
}

/// `push_parts_in_place` gives the tag, ciphertext and MAC of `push` of the joined parts, for
/// parts of any lengths (keystream blocks and MAC blocks split across parts), message after
/// message (the state advances the same).
#[test]
fn pushing_parts_equals_pushing_the_joined_message() {
    let key = [9u8; 32];
    let mut whole = Push::new(&key, [4; 24]);
    let mut split = Push::new(&key, [4; 24]);
    let msg: Vec<u8> = (0..70_001u32).map(|i| (i * 31 % 253) as u8).collect();
    let splits: Vec<Vec<usize>> = vec![
        vec![],
        vec![0],
        vec![1, 7, 16, 17, 63, 64, 65],
        vec![5, 5, 1000, 1031, 66_000],
        vec![64, 128, 65_536 + 64],
        vec![3, 3000, 69_999, 70_001],
        vec![15, 33, 100, 511, 513, 1024, 2047],
        vec![20, 40, 60, 100, 148, 149, 300],
    ];
    for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 1000, 2048, 70_001] {
        for cuts in &splits {
            let m = &msg[..len];
            let mut parts = Vec::new();
            let mut from = 0;
            for &c in cuts {
                let c = c.min(len).max(from);
                parts.push(m[from..c].to_vec());
                from = c;
            }
            parts.push(m[from..].to_vec());
            let expected = whole.push(m, TAG_MESSAGE);
            let (tag, mac) = split.push_parts_in_place(&mut parts, TAG_MESSAGE);
            let mut got = vec![tag];
            for p in &parts {
                got.extend_from_slice(p);
            }
            got.extend_from_slice(&mac);
            assert_eq!(got, expected, "{len} bytes cut at {cuts:?}");
        }
    }
}

/// `write_parts` sends the bytes `write` sends of the joined message (before and after the
/// handshake), and the peer reads it.
#[test]
fn writes_in_parts_send_the_bytes_of_writes() {
    let big: Vec<u8> = (0..65_536u32).map(|i| (i % 249) as u8).collect();
    type Pieces = Vec<(usize, Vec<u8>)>;
    let frames: Vec<(Vec<u8>, Pieces)> = vec![
        (b"early".to_vec(), vec![(2, big.clone())]),
        (b"head-tail".to_vec(), vec![(5, big.clone())]),
        (Vec::new(), vec![(0, b"only".to_vec())]),
        (
            b"ab".to_vec(),
            vec![(0, big[..100].to_vec()), (1, Vec::new()), (2, big.clone())],
        ),
        (b"plain".to_vec(), Vec::new()),
    ];
    let joined: Vec<Vec<u8>> = frames
        .iter()
        .map(|(head, pieces)| {
            let mut out = Vec::new();
            let mut from = 0;
            for (at, p) in pieces {
                out.extend_from_slice(&head[from..*at]);
                out.extend_from_slice(p);
                from = *at;
            }
            out.extend_from_slice(&head[from..]);
            out
        })
        .collect();
    let sent = |parts: bool| {
        let (mut i, mut r) = vector_pair(Options::default());
        let mut wire = Vec::new();
        for (n, (head, pieces)) in frames.iter().enumerate() {
            if parts {
                i.write_parts(head.clone(), pieces.clone()).unwrap();
            } else {
                i.write(&joined[n]).unwrap();
            }
            if n == 0 {
                pump(&mut i, &mut r, 1);
            } else {
                for p in drain(&mut i) {
                    wire.extend_from_slice(&p);
                }
            }
        }
        r.handle_input(2, &wire);
        let got = messages_in(events(&mut r));
        (wire, got)
    };
    let (wire, got) = sent(true);
    assert_eq!(wire, sent(false).0, "the same bytes on the wire");
    assert_eq!(got, joined, "the peer reads the joined messages");
}
