use super::*;
use crate::protomux::Protomux;

fn vectors() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/net/vectors-static.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn messages_match_js() {
    let j = vectors();
    let v = &j["blindRelay"];
    let init = Pair {
        is_initiator: true,
        token: [9; 32],
        id: 1234,
        seq: 0,
    };
    let resp = Pair {
        is_initiator: false,
        token: [9; 32],
        id: 70000,
        seq: 0,
    };
    assert_eq!(hex::encode(init.encode()), v["pair_initiator"]);
    assert_eq!(hex::encode(resp.encode()), v["pair_responder"]);
    assert_eq!(hex::encode(Unpair { token: [9; 32] }.encode()), v["unpair"]);
    assert_eq!(Pair::decode(&init.encode()).unwrap(), init);
    assert_eq!(Pair::decode(&resp.encode()).unwrap(), resp);
    assert_eq!(
        Unpair::decode(&Unpair { token: [9; 32] }.encode())
            .unwrap()
            .token,
        [9; 32]
    );
    // A 2-byte bitfield (0xfd prefix) still carries isInitiator in bit 0.
    let mut wide = vec![0xfd, 1, 0];
    wide.extend_from_slice(&[9; 32]);
    wide.extend_from_slice(&[5, 0]);
    assert!(Pair::decode(&wide).unwrap().is_initiator);
    let bytes = init.encode();
    for n in 0..bytes.len() {
        assert!(Pair::decode(&bytes[..n]).is_err());
    }
}

/// Moves frames between two muxes until both are quiet, collecting each side's events.
fn pump(
    a: &mut Protomux,
    b: &mut Protomux,
) -> (Vec<crate::protomux::Event>, Vec<crate::protomux::Event>) {
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    loop {
        let mut moved = false;
        while let Some(f) = a.poll_transmit() {
            b.handle_frame(&f).unwrap();
            moved = true;
        }
        while let Some(f) = b.poll_transmit() {
            a.handle_frame(&f).unwrap();
            moved = true;
        }
        while let Some(e) = a.poll_event() {
            ea.push(e);
        }
        while let Some(e) = b.poll_event() {
            eb.push(e);
        }
        if !moved {
            return (ea, eb);
        }
    }
}

#[test]
fn two_clients_pair_through_a_server() {
    let mut server = Server::new();
    let (pk_a, pk_b) = ([0xaa; 32], [0xbb; 32]);
    // Peer A <-> relay, peer B <-> relay.
    let (mut ma, mut mra) = (Protomux::new(), Protomux::new());
    let (mut mb, mut mrb) = (Protomux::new(), Protomux::new());
    let mut ca = Client::open(&mut ma, &pk_a).unwrap();
    let mut cb = Client::open(&mut mb, &pk_b).unwrap();
    let sa = ServerSession::accept(&mut server, &mut mra, &pk_a).unwrap();
    let sb = ServerSession::accept(&mut server, &mut mrb, &pk_b).unwrap();
    let token = [7; 32];
    ca.pair(&mut ma, true, token, 11).unwrap();
    assert_eq!(
        ca.pair(&mut ma, true, token, 11),
        Err(ClientError::AlreadyPairing)
    );
    let (ev_a, ev_ra) = pump(&mut ma, &mut mra);
    assert!(ev_a
        .iter()
        .any(|e| ca.handle_event(e) == Some(ClientEvent::Opened)));
    let mut matched = None;
    for e in &ev_ra {
        if let Some(ServerEvent::Matched(m)) = sa.handle_event(&mut server, e) {
            matched = Some(m);
        }
    }
    assert!(matched.is_none());
    assert_eq!(server.pending(), 1);
    cb.pair(&mut mb, false, token, 22).unwrap();
    let (_, ev_rb) = pump(&mut mb, &mut mrb);
    for e in &ev_rb {
        if let Some(ServerEvent::Matched(m)) = sb.handle_event(&mut server, e) {
            matched = Some(m);
        }
    }
    let m = matched.expect("matched");
    assert_eq!(m.links[1].remote_id, 11);
    assert_eq!(m.links[0].remote_id, 22);
    let replies = server.activate(&m, [100, 101]);
    for (session, pair) in replies {
        if session == sa.id() {
            sa.send_pair(&mut mra, &pair).unwrap();
        } else {
            sb.send_pair(&mut mrb, &pair).unwrap();
        }
    }
    let (ev_a, _) = pump(&mut ma, &mut mra);
    let (ev_b, _) = pump(&mut mb, &mut mrb);
    let got_a: Vec<_> = ev_a.iter().filter_map(|e| ca.handle_event(e)).collect();
    let got_b: Vec<_> = ev_b.iter().filter_map(|e| cb.handle_event(e)).collect();
    assert_eq!(
        got_a,
        vec![ClientEvent::Paired {
            token,
            is_initiator: true,
            remote_id: 101
        }]
    );
    assert!(got_b.contains(&ClientEvent::Paired {
        token,
        is_initiator: false,
        remote_id: 100
    }));
    assert_eq!(server.active(), 1);
    // Unpair from A tears both relay streams down.
    ca.unpair(&mut ma, token).unwrap();
    let (_, ev_ra) = pump(&mut ma, &mut mra);
    let destroyed: Vec<_> = ev_ra
        .iter()
        .filter_map(|e| sa.handle_event(&mut server, e))
        .collect();
    assert_eq!(
        destroyed,
        vec![ServerEvent::Destroy {
            streams: vec![100, 101]
        }]
    );
    assert_eq!(server.active(), 0);
}

#[test]
fn wrong_tokens_and_sides_are_ignored() {
    let mut server = Server::new();
    let (mut mc, mut mr) = (Protomux::new(), Protomux::new());
    let mut c = Client::open(&mut mc, &[1; 32]).unwrap();
    let s = ServerSession::accept(&mut server, &mut mr, &[1; 32]).unwrap();
    c.pair(&mut mc, true, [3; 32], 5).unwrap();
    pump(&mut mc, &mut mr);
    // The relay answers a token the client never asked for, and the right token with the
    // wrong side: both ignored; a garbage payload too.
    s.send_pair(
        &mut mr,
        &Pair {
            is_initiator: true,
            token: [4; 32],
            id: 1,
            seq: 0,
        },
    )
    .unwrap();
    s.send_pair(
        &mut mr,
        &Pair {
            is_initiator: false,
            token: [3; 32],
            id: 1,
            seq: 0,
        },
    )
    .unwrap();
    mr.send(s.channel(), MSG_PAIR, &[1, 2, 3]).unwrap();
    let (ev, _) = pump(&mut mc, &mut mr);
    assert!(ev
        .iter()
        .filter_map(|e| c.handle_event(e))
        .all(|e| e == ClientEvent::Opened));
    assert_eq!(c.pending(), 1);
    // Same side twice for one token on the server: the second is ignored.
    assert!(server
        .handle_pair(
            s.id(),
            Pair {
                is_initiator: false,
                token: [8; 32],
                id: 1,
                seq: 0
            }
        )
        .is_none());
    assert!(server
        .handle_pair(
            s.id(),
            Pair {
                is_initiator: false,
                token: [8; 32],
                id: 2,
                seq: 0
            }
        )
        .is_none());
    assert_eq!(server.stats.requested, 1);
    // Closing the session drops its pending pairings.
    assert!(server.session_closed(s.id()).is_empty());
    assert_eq!(server.pending(), 0);
}
