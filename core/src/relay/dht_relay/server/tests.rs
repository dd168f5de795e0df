use super::*;
use crate::relay::dht_relay::messages::{Node, Peer, SignRequest};

const T0: Duration = Duration::from_secs(1000);

/// A client end: a protomux with the relay channel, to talk to a session.
struct Client {
    mux: Protomux,
    ch: ChannelId,
}

impl Client {
    fn new() -> Client {
        let mut mux = Protomux::new();
        let ch = mux.open(ChannelOptions::new(PROTOCOL)).unwrap();
        Client { mux, ch }
    }
    fn send(&mut self, s: &mut Session, now: Duration, m: Message) {
        self.mux
            .send(self.ch, m.message_type(), &m.encode())
            .unwrap();
        while let Some(f) = self.mux.poll_transmit() {
            s.handle_frame(now, &f);
        }
    }
    fn recv(&mut self, s: &mut Session) -> Vec<Message> {
        while let Some(f) = s.poll_transmit() {
            self.mux.handle_frame(&f).unwrap();
        }
        let mut out = Vec::new();
        while let Some(e) = self.mux.poll_event() {
            if let MuxEvent::Message {
                message_type,
                payload,
                ..
            } = e
            {
                out.push(Message::decode(message_type, &payload).unwrap());
            }
        }
        out
    }
}

fn keys(seed: u8) -> (KeyPair, Keys) {
    let kp = KeyPair::from_seed(&[seed; 32]);
    let k = Keys {
        public_key: kp.public_key,
        secret_key: Some(kp.secret_key),
    };
    (kp, k)
}

fn session() -> (Session, Client) {
    let mut s = Session::new(T0, Limits::default());
    let mut c = Client::new();
    c.send(&mut s, T0, Message::Handshake(keys(1).1));
    assert!(c.recv(&mut s).is_empty());
    (s, c)
}

#[test]
fn connect_open_data_end_destroy() {
    let (mut s, mut c) = session();
    c.send(
        &mut s,
        T0,
        Message::Connect {
            alias: 7,
            keys: keys(2).1,
            remote_public_key: [9; 32],
        },
    );
    let Some(Request::Connect {
        stream,
        key_pair,
        remote_public_key,
    }) = s.poll_request()
    else {
        panic!("no connect request")
    };
    assert_eq!(key_pair.public_key, keys(2).0.public_key);
    assert_eq!(remote_public_key, [9; 32]);
    s.stream_open(stream, Some([5; 64]));
    s.stream_data(stream, b"hello".to_vec());
    // Several messages at hand go in one `data` message, in order; none sends nothing.
    s.stream_data_many(stream, vec![b"a".to_vec(), Vec::new(), b"bc".to_vec()]);
    s.stream_data_many(stream, Vec::new());
    assert_eq!(
        c.recv(&mut s),
        vec![
            Message::Open {
                alias: stream,
                remote_alias: 7,
                handshake: HandshakeRef::Hash([5; 64])
            },
            Message::Data {
                alias: stream,
                data: vec![b"hello".to_vec()]
            },
            Message::Data {
                alias: stream,
                data: vec![b"a".to_vec(), Vec::new(), b"bc".to_vec()]
            }
        ]
    );
    c.send(
        &mut s,
        T0,
        Message::Data {
            alias: 7,
            data: vec![b"a".to_vec(), b"bc".to_vec()],
        },
    );
    c.send(&mut s, T0, Message::End { alias: 7 });
    let reqs: Vec<_> = std::iter::from_fn(|| s.poll_request()).collect();
    assert_eq!(
        reqs,
        vec![
            Request::Write {
                stream,
                data: b"a".to_vec()
            },
            Request::Write {
                stream,
                data: b"bc".to_vec()
            },
            Request::End { stream }
        ]
    );
    s.stream_closed(stream, Some("gone"));
    assert_eq!(
        c.recv(&mut s),
        vec![Message::Destroy(Destroy {
            paired: true,
            alias: stream,
            error: Some("gone".into())
        })]
    );
    assert_eq!(s.stream_count(), 0);
}

#[test]
fn failed_connect_names_the_client_alias() {
    let (mut s, mut c) = session();
    c.send(
        &mut s,
        T0,
        Message::Connect {
            alias: 3,
            keys: keys(2).1,
            remote_public_key: [9; 32],
        },
    );
    let Some(Request::Connect { stream, .. }) = s.poll_request() else {
        panic!()
    };
    s.stream_closed(stream, Some("PEER_NOT_FOUND: Peer not found"));
    assert_eq!(
        c.recv(&mut s),
        vec![Message::Destroy(Destroy {
            paired: false,
            alias: 3,
            error: Some("PEER_NOT_FOUND: Peer not found".into())
        })]
    );
}

#[test]
fn listen_connection_connected() {
    let (mut s, mut c) = session();
    c.send(
        &mut s,
        T0,
        Message::Listen {
            alias: 4,
            keys: keys(3).1,
        },
    );
    let Some(Request::Listen { server, .. }) = s.poll_request() else {
        panic!()
    };
    let addr = SocketAddrV4::new([127, 0, 0, 1].into(), 4000);
    s.server_listening(server, addr);
    let stream = s.server_connection(server, [8; 32], [6; 64]).unwrap();
    assert_eq!(
        c.recv(&mut s),
        vec![
            Message::Listening {
                alias: server,
                remote_alias: 4,
                addr
            },
            Message::Connection {
                alias: stream,
                server_alias: server,
                remote_public_key: [8; 32],
                handshake: HandshakeRef::Hash([6; 64])
            }
        ]
    );
    c.send(
        &mut s,
        T0,
        Message::Connected {
            alias: 11,
            remote_alias: stream,
        },
    );
    c.send(
        &mut s,
        T0,
        Message::Data {
            alias: 11,
            data: vec![b"x".to_vec()],
        },
    );
    assert_eq!(
        s.poll_request(),
        Some(Request::Write {
            stream,
            data: b"x".to_vec()
        })
    );
    c.send(&mut s, T0, Message::Close { alias: 4 });
    assert_eq!(s.poll_request(), Some(Request::CloseServer { server }));
    s.server_closed(server);
    assert_eq!(c.recv(&mut s), vec![Message::Closed { alias: server }]);
}

#[test]
fn lookup_results_and_finished() {
    let (mut s, mut c) = session();
    c.send(
        &mut s,
        T0,
        Message::Lookup {
            id: 1,
            topic: [7; 32],
        },
    );
    assert_eq!(
        s.poll_request(),
        Some(Request::Lookup {
            query: 1,
            topic: [7; 32]
        })
    );
    let a = Announcers {
        token: [1; 32],
        from: Node {
            id: vec![2; 32],
            addr: SocketAddrV4::new([127, 0, 0, 1].into(), 1),
        },
        to: Node {
            id: vec![],
            addr: SocketAddrV4::new([127, 0, 0, 1].into(), 2),
        },
        peers: vec![Peer {
            public_key: [3; 32],
            relay_addresses: vec![SocketAddrV4::new([127, 0, 0, 1].into(), 3)],
        }],
    };
    s.query_result(1, &a);
    s.query_done(1);
    let got = c.recv(&mut s);
    assert_eq!(
        got,
        vec![
            Message::Result {
                id: 1,
                data: a.encode()
            },
            Message::Finished { id: 1 }
        ]
    );
    assert_eq!(Announcers::decode(&a.encode()).unwrap(), a);
}

#[test]
fn nothing_before_the_handshake() {
    let mut s = Session::new(T0, Limits::default());
    let mut c = Client::new();
    c.send(
        &mut s,
        T0,
        Message::Lookup {
            id: 1,
            topic: [7; 32],
        },
    );
    assert_eq!(s.poll_request(), None);
    assert!(s.close_reason().is_none());
}

#[test]
fn limits_close_with_codes() {
    // Too many streams.
    let limits = Limits {
        max_streams: 2,
        ..Limits::default()
    };
    let mut s = Session::new(T0, limits);
    let mut c = Client::new();
    c.send(&mut s, T0, Message::Handshake(keys(1).1));
    for alias in 0..3 {
        c.send(
            &mut s,
            T0,
            Message::Connect {
                alias,
                keys: keys(2).1,
                remote_public_key: [9; 32],
            },
        );
    }
    assert_eq!(
        s.close_reason().map(|c| c.code),
        Some(close_code::TOO_MANY_STREAMS)
    );

    // Too many requests per second: the burst, then one more at the same instant.
    let (mut s, mut c) = session();
    let burst = s.limits().request_burst;
    for id in 0..=burst {
        c.send(&mut s, T0, Message::Lookup { id, topic: [0; 32] });
        s.query_done(id);
    }
    assert_eq!(
        s.close_reason().map(|c| c.code),
        Some(close_code::TOO_MANY_REQUESTS)
    );
    // ... but the same number spread over time is fine.
    let (mut s, mut c) = session();
    for id in 0..=burst * 2 {
        let now = T0 + Duration::from_millis(100) * id;
        c.send(&mut s, now, Message::Lookup { id, topic: [0; 32] });
        s.query_done(id);
    }
    assert!(s.close_reason().is_none());

    // Garbage.
    let (mut s, _) = session();
    s.handle_frame(
        T0,
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    );
    assert_eq!(
        s.close_reason().map(|c| c.code),
        Some(close_code::PROTOCOL_ERROR)
    );
    // A truncated message on the channel.
    let (mut s, mut c) = session();
    c.mux.send(c.ch, 3, &[1, 0, 0]).unwrap();
    while let Some(f) = c.mux.poll_transmit() {
        s.handle_frame(T0, &f);
    }
    assert_eq!(
        s.close_reason().map(|c| c.code),
        Some(close_code::PROTOCOL_ERROR)
    );
}

#[test]
fn heartbeat_and_stall() {
    let (mut s, mut c) = session();
    let hb = s.limits().heartbeat;
    s.handle_timeout(T0 + hb);
    assert_eq!(c.recv(&mut s), vec![Message::Ping]);
    c.send(&mut s, T0 + hb, Message::Pong);
    // No pong for three intervals.
    s.handle_timeout(T0 + hb * 2);
    s.handle_timeout(T0 + hb * 3);
    assert!(s.close_reason().is_none());
    s.handle_timeout(T0 + hb * 4);
    assert_eq!(
        s.close_reason().map(|c| c.code),
        Some(close_code::HEARTBEAT)
    );

    let (mut s, _) = session();
    let hw = s.limits().high_water;
    let st = s.limits().stall_timeout;
    s.handle_buffered(T0, hw + 1);
    assert!(s.should_pause());
    s.handle_buffered(T0 + st / 2, hw / 2);
    assert!(!s.should_pause());
    s.handle_buffered(T0 + st, hw + 1);
    s.handle_timeout(T0 + st * 2 - Duration::from_millis(1));
    assert!(s.close_reason().is_none());
    s.handle_timeout(T0 + st * 2);
    assert_eq!(
        s.close_reason().map(|c| c.code),
        Some(close_code::NOT_READING)
    );
}

#[test]
fn stream_buffer_limit_destroys_the_stream() {
    let limits = Limits {
        max_stream_buffer: 10,
        ..Limits::default()
    };
    let mut s = Session::new(T0, limits);
    let mut c = Client::new();
    c.send(&mut s, T0, Message::Handshake(keys(1).1));
    c.send(
        &mut s,
        T0,
        Message::Connect {
            alias: 1,
            keys: keys(2).1,
            remote_public_key: [9; 32],
        },
    );
    let Some(Request::Connect { stream, .. }) = s.poll_request() else {
        panic!()
    };
    s.stream_open(stream, Some([0; 64]));
    c.recv(&mut s);
    c.send(
        &mut s,
        T0,
        Message::Data {
            alias: 1,
            data: vec![vec![0; 8]],
        },
    );
    s.stream_written(stream, 8);
    c.send(
        &mut s,
        T0,
        Message::Data {
            alias: 1,
            data: vec![vec![0; 8]],
        },
    );
    assert!(s.close_reason().is_none());
    c.send(
        &mut s,
        T0,
        Message::Data {
            alias: 1,
            data: vec![vec![0; 8]],
        },
    );
    let msgs = c.recv(&mut s);
    assert!(matches!(
        &msgs[..],
        [Message::Destroy(Destroy { paired: true, .. })]
    ));
    assert!(s.close_reason().is_none());
}

#[test]
fn messages_round_trip() {
    let kp = keys(1).1;
    let all = vec![
        Message::Handshake(kp.clone()),
        Message::Handshake(Keys {
            public_key: [1; 32],
            secret_key: None,
        }),
        Message::Ping,
        Message::Pong,
        Message::Connect {
            alias: 1,
            keys: kp.clone(),
            remote_public_key: [2; 32],
        },
        Message::Connection {
            alias: 1,
            server_alias: 2,
            remote_public_key: [3; 32],
            handshake: HandshakeRef::Id(4),
        },
        Message::Connected {
            alias: 1,
            remote_alias: 2,
        },
        Message::Incoming {
            id: 1,
            server_alias: 2,
            remote_public_key: [3; 32],
            payload: vec![4, 5],
        },
        Message::Deny { id: 1 },
        Message::Accept { id: 2 },
        Message::Destroy(Destroy {
            paired: false,
            alias: 3,
            error: None,
        }),
        Message::Listen {
            alias: 1,
            keys: kp.clone(),
        },
        Message::Close { alias: 1 },
        Message::Closed { alias: 1 },
        Message::Open {
            alias: 1,
            remote_alias: 2,
            handshake: HandshakeRef::Hash([7; 64]),
        },
        Message::End { alias: 1 },
        Message::Finished { id: 1 },
        Message::Unannounce {
            id: 1,
            topic: [1; 32],
            keys: kp.clone(),
        },
        Message::SignAnnounce(SignRequest {
            id: 1,
            signee: 2,
            token: [3; 32],
            peer_id: vec![4; 32],
            relay_addresses: vec![SocketAddrV4::new([1, 2, 3, 4].into(), 5)],
        }),
        Message::Signature {
            id: 1,
            signature: vec![9; 64],
        },
        Message::NoiseSend {
            id: 1,
            remote_stream_alias: Some(2),
            payload: vec![3],
        },
        Message::NoiseReceive {
            id: 1,
            server_alias: Some(2),
            payload: vec![3],
        },
        Message::NoiseReply {
            id: 1,
            is_initiator: false,
            payload: vec![1],
            remote_public_key: Some([2; 32]),
            complete: None,
        },
        Message::NoiseReply {
            id: 1,
            is_initiator: true,
            payload: vec![1],
            remote_public_key: None,
            complete: Some(([3; 32], [4; 32])),
        },
    ];
    for m in all {
        let bytes = m.encode();
        assert_eq!(Message::decode(m.message_type(), &bytes).unwrap(), m);
        // Every truncation is a typed error or a shorter valid message, never a panic.
        for n in 0..bytes.len() {
            let _ = Message::decode(m.message_type(), &bytes[..n]);
        }
    }
}

#[test]
fn non_custodial_announce_asks_the_client_to_sign() {
    let (mut s, mut c) = session();
    let pk = keys(2).0.public_key;
    c.send(
        &mut s,
        T0,
        Message::Announce {
            id: 5,
            topic: [4; 32],
            keys: Keys {
                public_key: pk,
                secret_key: None,
            },
        },
    );
    assert_eq!(
        s.poll_request(),
        Some(Request::AnnounceExternal {
            query: 5,
            topic: [4; 32],
            public_key: pk
        })
    );
    s.sign_announce(5, 9, [1; 32], [2; 32], vec![]);
    let msgs = c.recv(&mut s);
    let [Message::SignAnnounce(r)] = &msgs[..] else {
        panic!("{msgs:?}")
    };
    assert_eq!(
        (r.signee, r.token, r.peer_id.clone()),
        (5, [1; 32], vec![2; 32])
    );
    c.send(
        &mut s,
        T0,
        Message::Signature {
            id: r.id,
            signature: vec![7; 64],
        },
    );
    assert_eq!(
        s.poll_request(),
        Some(Request::AnnounceSigned {
            query: 5,
            sign: 9,
            signature: Some([7; 64])
        })
    );
    // Answered once; a second answer, or one to nothing, is ignored.
    c.send(
        &mut s,
        T0,
        Message::Signature {
            id: r.id,
            signature: vec![7; 64],
        },
    );
    assert_eq!(s.poll_request(), None);
    // A signature that is not 64 bytes is no signature.
    s.sign_announce(5, 10, [1; 32], [2; 32], vec![]);
    let msgs = c.recv(&mut s);
    let [Message::SignAnnounce(r)] = &msgs[..] else {
        panic!("{msgs:?}")
    };
    c.send(
        &mut s,
        T0,
        Message::Signature {
            id: r.id,
            signature: vec![7; 3],
        },
    );
    assert_eq!(
        s.poll_request(),
        Some(Request::AnnounceSigned {
            query: 5,
            sign: 10,
            signature: None
        })
    );
    assert!(s.close_reason().is_none());
}
