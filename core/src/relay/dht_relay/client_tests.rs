use super::*;
use crate::relay::dht_relay::server::{Limits, Request, Session};
use core::time::Duration;

fn pump(c: &mut Client, s: &mut Session) {
    loop {
        let mut moved = false;
        while let Some(f) = c.poll_transmit() {
            s.handle_frame(Duration::ZERO, &f);
            moved = true;
        }
        while let Some(f) = s.poll_transmit() {
            c.handle_frame(&f).unwrap();
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

#[test]
fn custodial_client_against_the_session() {
    let me = KeyPair::from_seed(&[1; 32]);
    let mut c = Client::new(&me, true, [0; 32]);
    let mut s = Session::new(Duration::ZERO, Limits::default());
    pump(&mut c, &mut s);
    assert_eq!(s.client(), Some((me.public_key, true)));

    let stream = c.connect([5; 32], me.clone());
    pump(&mut c, &mut s);
    let Some(Request::Connect { stream: rs, .. }) = s.poll_request() else {
        panic!()
    };
    s.stream_open(rs, Some([7; 64]));
    s.stream_data(rs, b"from the peer".to_vec());
    pump(&mut c, &mut s);
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::Opened { stream: st, handshake: Handshake::Relay(h), .. }) if st == stream && h == [7; 64]
    ));
    assert!(
        matches!(c.poll_event(), Some(ClientEvent::Data { data, .. }) if data == b"from the peer")
    );
    assert!(c.write(stream, b"to the peer".to_vec()));
    pump(&mut c, &mut s);
    assert_eq!(
        s.poll_request(),
        Some(Request::Write {
            stream: rs,
            data: b"to the peer".to_vec()
        })
    );

    // A server and an accepted connection.
    let server = c.listen(me.clone());
    pump(&mut c, &mut s);
    let Some(Request::Listen { server: rsv, .. }) = s.poll_request() else {
        panic!()
    };
    s.server_listening(rsv, SocketAddrV4::new([127, 0, 0, 1].into(), 9));
    let rstream = s.server_connection(rsv, [6; 32], [8; 64]).unwrap();
    pump(&mut c, &mut s);
    assert!(
        matches!(c.poll_event(), Some(ClientEvent::Listening { server: sv, .. }) if sv == server)
    );
    let Some(ClientEvent::Connection { stream: cs, .. }) = c.poll_event() else {
        panic!()
    };
    assert!(c.write(cs, b"x".to_vec()));
    pump(&mut c, &mut s);
    assert_eq!(
        s.poll_request(),
        Some(Request::Write {
            stream: rstream,
            data: b"x".to_vec()
        })
    );

    // A failed connect.
    let failing = c.connect([9; 32], me.clone());
    pump(&mut c, &mut s);
    let Some(Request::Connect { stream: rf, .. }) = s.poll_request() else {
        panic!()
    };
    s.stream_closed(rf, Some("PEER_NOT_FOUND"));
    pump(&mut c, &mut s);
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::Closed { stream, error: Some(e) }) if stream == failing && e == "PEER_NOT_FOUND"
    ));
}

#[test]
fn non_custodial_connect_against_the_session() {
    use crate::dht::messages_connect::{NoisePayload, UdxInfo};
    use crate::dht::noise_wrap::NoiseWrap;
    let me = KeyPair::from_seed(&[1; 32]);
    let server = KeyPair::from_seed(&[2; 32]);
    let mut c = Client::new(&me, false, [3; 32]);
    let mut s = Session::new(Duration::ZERO, Limits::default());
    pump(&mut c, &mut s);
    assert_eq!(s.client(), Some((me.public_key, false)));

    let stream = c.connect(server.public_key, me.clone());
    pump(&mut c, &mut s);
    // The session asks for a connect with no key pair: only the server's public key.
    let Some(Request::ConnectExternal {
        stream: rs,
        remote_public_key,
    }) = s.poll_request()
    else {
        panic!()
    };
    assert_eq!(remote_public_key, server.public_key);

    // The DHT's first step: the client encrypts our payload.
    let payload = NoisePayload {
        udx: Some(UdxInfo {
            version: 1,
            reusable_socket: false,
            id: 5,
            seq: 0,
        }),
        secret_stream: Some(1),
        ..NoisePayload::default()
    };
    s.noise_send(rs, &payload);
    pump(&mut c, &mut s);
    let Some(Request::NoiseSent {
        stream: st,
        message: Some(m1),
    }) = s.poll_request()
    else {
        panic!()
    };
    assert_eq!(st, rs);
    let mut responder = NoiseWrap::responder(server.clone(), KeyPair::from_seed(&[4; 32])).unwrap();
    assert_eq!(responder.recv(&m1).unwrap(), payload);
    assert_eq!(responder.remote_public_key(), Some(me.public_key));
    let reply = NoisePayload {
        udx: Some(UdxInfo {
            version: 1,
            reusable_socket: false,
            id: 6,
            seq: 0,
        }),
        secret_stream: Some(1),
        ..NoisePayload::default()
    };
    let m2 = responder.send(&reply).unwrap();
    let server_side = responder.finish().unwrap();

    // The reply: the client decrypts it and gives the holepunch secret, not the keys.
    s.noise_receive(rs, m2);
    pump(&mut c, &mut s);
    let Some(Request::NoiseReceived {
        stream: st,
        received: Some(r),
    }) = s.poll_request()
    else {
        panic!()
    };
    assert_eq!(st, rs);
    assert_eq!(r.payload, reply);
    assert_eq!(r.holepunch_secret, server_side.holepunch_secret);

    s.stream_open(rs, None);
    pump(&mut c, &mut s);
    let Some(ClientEvent::Opened {
        stream: st,
        handshake: Handshake::Local(split),
        ..
    }) = c.poll_event()
    else {
        panic!()
    };
    assert_eq!(st, stream);
    assert_eq!(split.tx, server_side.split.rx);
    assert_eq!(split.hash, server_side.split.hash);

    // A reply that is not a noise payload fails the handshake.
    let _ = c.connect(server.public_key, me.clone());
    pump(&mut c, &mut s);
    let Some(Request::ConnectExternal { stream: rs2, .. }) = s.poll_request() else {
        panic!()
    };
    s.noise_send(rs2, &payload);
    pump(&mut c, &mut s);
    assert!(matches!(
        s.poll_request(),
        Some(Request::NoiseSent {
            message: Some(_),
            ..
        })
    ));
    s.noise_receive(rs2, vec![7; 80]);
    pump(&mut c, &mut s);
    assert!(matches!(
        s.poll_request(),
        Some(Request::NoiseReceived { received: None, .. })
    ));
}

#[test]
fn non_custodial_listen_against_the_session() {
    use crate::dht::messages_connect::{NoisePayload, UdxInfo};
    use crate::dht::noise_wrap::NoiseWrap;
    let me = KeyPair::from_seed(&[1; 32]);
    let peer = KeyPair::from_seed(&[2; 32]);
    let mut c = Client::new(&me, false, [3; 32]);
    let mut s = Session::new(Duration::ZERO, Limits::default());
    pump(&mut c, &mut s);
    let server = c.listen(me.clone());
    pump(&mut c, &mut s);
    // The session asks to listen with the public key only.
    let Some(Request::ListenExternal {
        server: rsv,
        public_key,
    }) = s.poll_request()
    else {
        panic!()
    };
    assert_eq!(public_key, me.public_key);

    // The server's announcement: the client signs hyperdht's signable for H(pk).
    s.server_sign_announce(rsv, 9, [4; 32], [5; 32]);
    pump(&mut c, &mut s);
    let Some(Request::ServerSigned {
        server: sv,
        sign: 9,
        signature: Some(sig),
    }) = s.poll_request()
    else {
        panic!()
    };
    assert_eq!(sv, rsv);
    let signable = crate::dht::connect::signable(
        4,
        &crypto::hash(&me.public_key),
        &[5; 32],
        &[4; 32],
        &crate::dht::connect::encode_peer(&me.public_key, &[]),
        None,
    );
    assert!(crypto::verify(&signable, &sig, &me.public_key));
    s.server_listening(rsv, SocketAddrV4::new([127, 0, 0, 1].into(), 9));
    pump(&mut c, &mut s);
    assert!(
        matches!(c.poll_event(), Some(ClientEvent::Listening { server: sv, .. }) if sv == server)
    );

    // A peer's first message: the client decrypts it.
    let hello = NoisePayload {
        udx: Some(UdxInfo {
            version: 1,
            reusable_socket: false,
            id: 5,
            seq: 0,
        }),
        secret_stream: Some(1),
        ..NoisePayload::default()
    };
    let mut initiator =
        NoiseWrap::initiator(peer.clone(), me.public_key, KeyPair::from_seed(&[6; 32])).unwrap();
    let m1 = initiator.send(&hello).unwrap();
    s.server_noise_receive(rsv, 77, m1);
    pump(&mut c, &mut s);
    let Some(Request::ServerNoiseReceived {
        server: sv,
        handshake: 77,
        received: Some((payload, rpk)),
    }) = s.poll_request()
    else {
        panic!()
    };
    assert_eq!((sv, payload, rpk), (rsv, hello, peer.public_key));

    // Our reply: the client encrypts it and finishes; the relay gets the holepunch secret.
    let reply = NoisePayload {
        udx: Some(UdxInfo {
            version: 1,
            reusable_socket: false,
            id: 6,
            seq: 0,
        }),
        secret_stream: Some(1),
        ..NoisePayload::default()
    };
    s.server_noise_send(rsv, 77, &reply);
    pump(&mut c, &mut s);
    let Some(Request::ServerNoiseSent {
        handshake: 77,
        sent: Some((m2, holepunch_secret)),
        ..
    }) = s.poll_request()
    else {
        panic!()
    };
    assert_eq!(initiator.recv(&m2).unwrap(), reply);
    let peer_side = initiator.finish().unwrap();
    assert_eq!(holepunch_secret, peer_side.holepunch_secret);

    // The connection: the client holds the keys, paired with the peer's.
    let rs = s
        .server_connection_external(rsv, 77, peer.public_key)
        .unwrap();
    pump(&mut c, &mut s);
    let Some(ClientEvent::Connection {
        server: sv,
        stream,
        remote_public_key,
        handshake: Handshake::Local(split),
    }) = c.poll_event()
    else {
        panic!()
    };
    assert_eq!((sv, remote_public_key), (server, peer.public_key));
    assert_eq!(split.tx, peer_side.split.rx);
    assert_eq!(split.rx, peer_side.split.tx);
    assert!(c.write(stream, b"ciphertext".to_vec()));
    pump(&mut c, &mut s);
    assert_eq!(
        s.poll_request(),
        Some(Request::Write {
            stream: rs,
            data: b"ciphertext".to_vec()
        })
    );

    // A handshake the session did not start is not answered.
    assert!(s
        .server_connection_external(rsv, 78, peer.public_key)
        .is_none());
}

#[test]
fn non_custodial_unannounce_against_the_session() {
    let me = KeyPair::from_seed(&[1; 32]);
    let mut c = Client::new(&me, false, [3; 32]);
    let mut s = Session::new(Duration::ZERO, Limits::default());
    pump(&mut c, &mut s);
    let query = c.unannounce([0x42; 32], me.clone());
    pump(&mut c, &mut s);
    let Some(Request::UnannounceExternal {
        query: q,
        topic,
        public_key,
    }) = s.poll_request()
    else {
        panic!()
    };
    assert_eq!((q, topic, public_key), (query, [0x42; 32], me.public_key));
    // One listing node's removal: the client signs hyperdht's unannounce signable.
    s.sign_unannounce(q, 3, [4; 32], [5; 32]);
    pump(&mut c, &mut s);
    let Some(Request::AnnounceSigned {
        sign: 3,
        signature: Some(sig),
        ..
    }) = s.poll_request()
    else {
        panic!()
    };
    let peer = crate::dht::messages::PeerRecord {
        public_key: me.public_key,
        relay_addresses: Vec::new(),
    };
    assert_eq!(
        sig,
        crate::dht::signing::sign_unannounce(&me, &[0x42; 32], &[5; 32], &[4; 32], &peer)
    );
    s.query_done(q);
    pump(&mut c, &mut s);
    assert!(matches!(c.poll_event(), Some(ClientEvent::QueryDone { query: d }) if d == query));
}

#[test]
fn a_non_custodial_session_refuses_a_secret_key() {
    let me = KeyPair::from_seed(&[1; 32]);
    let mut c = Client::new(&me, false, [3; 32]);
    let mut s = Session::new(Duration::ZERO, Limits::default());
    pump(&mut c, &mut s);
    // A client that said non-custodial, then hands a secret key over anyway.
    c.custodial = true;
    let _ = c.listen(me.clone());
    pump(&mut c, &mut s);
    assert_eq!(s.poll_request(), None, "no request holds the key");
    assert_eq!(
        s.close_reason().map(|c| c.code),
        Some(super::super::close_code::PROTOCOL_ERROR)
    );
}

#[test]
fn garbage_from_the_relay_is_an_error() {
    let me = KeyPair::from_seed(&[1; 32]);
    let mut c = Client::new(&me, false, [0; 32]);
    assert!(c.handle_frame(&[0xff; 12]).is_err());
    assert!(c.handle_frame(&[]).is_err());
}

/// A peer that keeps sending to a reader that does not read: the stream is destroyed once
/// more than `max_unread` bytes wait (the relay is told), not buffered without bound; what was
/// consumed does not count.
#[test]
fn a_stream_whose_peer_overruns_the_unread_limit_is_destroyed() {
    let me = KeyPair::from_seed(&[1; 32]);
    let mut c = Client::new(&me, true, [0; 32]);
    c.set_max_unread(10_000);
    let mut s = Session::new(Duration::ZERO, Limits::default());
    pump(&mut c, &mut s);
    let stream = c.connect([5; 32], me.clone());
    pump(&mut c, &mut s);
    let Some(Request::Connect { stream: rs, .. }) = s.poll_request() else {
        panic!()
    };
    s.stream_open(rs, Some([7; 64]));
    pump(&mut c, &mut s);
    assert!(matches!(c.poll_event(), Some(ClientEvent::Opened { .. })));

    // 3 × 4000 bytes, each read: nothing unread.
    for _ in 0..3 {
        s.stream_data(rs, vec![1; 4000]);
        pump(&mut c, &mut s);
        let Some(ClientEvent::Data { data, .. }) = c.poll_event() else {
            panic!("data")
        };
        c.consumed(stream, data.len());
    }
    // Nothing read from here: 8000 unread is under the limit, 12000 is over it.
    s.stream_data(rs, vec![2; 4000]);
    s.stream_data(rs, vec![2; 4000]);
    pump(&mut c, &mut s);
    let mut data = 0;
    while let Some(ClientEvent::Data { .. }) = c.poll_event() {
        data += 1;
    }
    assert_eq!(data, 2);
    s.stream_data(rs, vec![3; 4000]);
    pump(&mut c, &mut s);
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::Overrun { stream: st, unread: 12_000 }) if st == stream
    ));
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::Closed { stream: st, error: Some(_) }) if st == stream
    ));
    assert!(!c.is_paired(stream));
    assert!(!c.write(stream, b"x".to_vec()));
    // The relay was told to destroy it.
    let mut destroyed = false;
    while let Some(r) = s.poll_request() {
        destroyed |= matches!(r, Request::Destroy { stream: d } if d == rs);
    }
    assert!(destroyed, "the relay destroys the stream");
    // Later data for it is dropped.
    s.stream_data(rs, vec![4; 4000]);
    pump(&mut c, &mut s);
    assert!(c.poll_event().is_none());
}
