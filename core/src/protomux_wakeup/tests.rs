//! Byte tests against what `tests/interop/wakeup-vectors.js` prints (protomux-wakeup 2.9.0's
//! own encoders, `hypercore-crypto`), and the session's reaction to each message.

use super::*;
use crate::protomux::{Event as MuxEvent, Protomux};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

const K1: [u8; 32] = [0x11; 32];
const K2: [u8; 32] = [0x22; 32];
const HH: [u8; 64] = [0x33; 64];

#[test]
fn messages_equal_js_bytes() {
    let hs = |version, capability, active| {
        Handshake {
            version,
            capability,
            active,
        }
        .to_bytes()
    };
    assert_eq!(
        hs(0, K1, true),
        h("00111111111111111111111111111111111111111111111111111111111111111101")
    );
    assert_eq!(
        hs(0, K1, false),
        h("00111111111111111111111111111111111111111111111111111111111111111100")
    );
    assert_eq!(
        hs(300, K2, true),
        h("fd2c01222222222222222222222222222222222222222222222222222222222222222201")
    );
    assert_eq!(Lookup { hash: None }.to_bytes(), h("00"));
    assert_eq!(
        Lookup { hash: Some(K2) }.to_bytes(),
        h("012222222222222222222222222222222222222222222222222222222222222222")
    );
    assert_eq!(Info { active: true }.to_bytes(), h("01"));
    assert_eq!(Info { active: false }.to_bytes(), h("00"));
    assert_eq!(Announce(vec![]).to_bytes(), h("00"));
    let two = Announce(vec![
        WakeupWriter { key: K1, length: 5 },
        WakeupWriter {
            key: K2,
            length: 70000,
        },
    ]);
    let js_two = h("021111111111111111111111111111111111111111111111111111111111111111052222222222222222222222222222222222222222222222222222222222222222fe70110100");
    assert_eq!(two.to_bytes(), js_two);
    assert_eq!(two.encoded_len(), js_two.len());
    // and back
    assert_eq!(Announce::from_bytes(&js_two).unwrap(), two);
    assert_eq!(
        Handshake::from_bytes(&h(
            "fd2c01222222222222222222222222222222222222222222222222222222222222222201"
        ))
        .unwrap(),
        Handshake {
            version: 300,
            capability: K2,
            active: true
        }
    );
    assert_eq!(
        Lookup::from_bytes(&h(
            "012222222222222222222222222222222222222222222222222222222222222222"
        ))
        .unwrap()
        .hash,
        Some(K2)
    );
    // JS reads only flag bit 0: 3 is active, a lookup with flags 2 has no hash
    assert!(Info::from_bytes(&h("03")).unwrap().active);
    assert_eq!(Lookup::from_bytes(&h("02")).unwrap().hash, None);
}

#[test]
fn capability_and_topic_equal_js() {
    assert_eq!(
        capability_proof(true, &K1, &HH).to_vec(),
        h("841d2486c117d7431857c6fd4adcb00555f195540efa183e0d28271eeaebf8bf")
    );
    assert_eq!(
        capability_proof(false, &K1, &HH).to_vec(),
        h("f790af39ce501a923ba53b690606c4f6fed7969fd0e3e2351aa6652d05d246aa")
    );
    assert_eq!(
        topic_id(&K1).to_vec(),
        h("2ba0e6762cfb34ffc87790be3d7b553807952b7183788999271b65ab914bfd79")
    );
    assert_eq!(
        WakeupSession::<u32>::new(K1, None, true).id(),
        &topic_id(&K1)
    );
    assert_eq!(WakeupSession::<u32>::new(K1, Some(K2), true).id(), &K2);
}

/// Both ends of one connection: a session over a real [`Protomux`] each (the peer is 1 on both
/// sides), the channel opened as the owner opens it (B paired for `wakeup`, as JS pairs).
struct End {
    s: WakeupSession<u32>,
    mux: Protomux,
    ch: Option<crate::protomux::ChannelId>,
    initiator: bool,
}

fn pump(from: &mut End, to: &mut End) {
    while let Some(o) = from.s.poll_output() {
        match o {
            Output::Send {
                message_type,
                payload,
                ..
            } => from
                .mux
                .send(from.ch.unwrap(), message_type, &payload)
                .unwrap(),
            Output::Close { .. } => from.mux.close(from.ch.unwrap()).unwrap(),
        }
    }
    while let Some(f) = from.mux.poll_transmit() {
        to.mux.handle_frame(&f).unwrap();
    }
    while let Some(ev) = to.mux.poll_event() {
        match ev {
            MuxEvent::PairRequest { protocol, id, .. } => {
                assert_eq!(protocol, PROTOCOL);
                assert_eq!(id.as_deref(), Some(&to.s.id()[..]));
                let o = to.s.add_peer(1, to.initiator, HH).unwrap();
                to.ch = Some(to.mux.open(o).unwrap());
            }
            MuxEvent::ChannelOpened { handshake, .. } => {
                let _ = to.s.handle_open(1, &handshake);
            }
            MuxEvent::Message {
                message_type,
                payload,
                ..
            } => to.s.handle_message(1, message_type, &payload).unwrap(),
            MuxEvent::ChannelClosed { .. } | MuxEvent::ChannelRejected { .. } => {
                to.s.handle_closed(1)
            }
        }
    }
}

fn pair(a_active: bool, b_active: bool) -> (End, End) {
    let mut a = End {
        s: WakeupSession::new(K1, None, a_active),
        mux: Protomux::new(),
        ch: None,
        initiator: true,
    };
    let mut b = End {
        s: WakeupSession::new(K1, None, b_active),
        mux: Protomux::new(),
        ch: None,
        initiator: false,
    };
    b.mux.pair(PROTOCOL, None);
    let o = a.s.add_peer(1, true, HH).unwrap();
    a.ch = Some(a.mux.open(o).unwrap());
    pump(&mut a, &mut b);
    pump(&mut b, &mut a);
    assert!(a.s.is_open(1) && b.s.is_open(1));
    (a, b)
}

fn events(s: &mut WakeupSession<u32>) -> Vec<WakeupEvent<u32>> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

#[test]
fn open_announce_lookup_info() {
    let (mut a, mut b) = pair(true, false);
    // a sees b added (inactive), b sees a added and active
    assert_eq!(events(&mut a.s), vec![WakeupEvent::PeerAdded { peer: 1 }]);
    assert_eq!(
        events(&mut b.s),
        vec![
            WakeupEvent::PeerAdded { peer: 1 },
            WakeupEvent::PeerActive { peer: 1 }
        ]
    );
    assert_eq!((a.s.active_peers(), b.s.active_peers()), (0, 1));

    let w = [WakeupWriter { key: K2, length: 9 }];
    assert!(a.s.announce(1, &w));
    pump(&mut a, &mut b);
    assert_eq!(
        events(&mut b.s),
        vec![WakeupEvent::Announce {
            peer: 1,
            writers: w.to_vec()
        }]
    );

    b.s.broadcast_lookup(None);
    pump(&mut b, &mut a);
    assert_eq!(
        events(&mut a.s),
        vec![WakeupEvent::Lookup {
            peer: 1,
            hash: None
        }]
    );

    b.s.set_active(true);
    b.s.set_active(true); // no second info
    pump(&mut b, &mut a);
    assert_eq!(events(&mut a.s), vec![WakeupEvent::PeerActive { peer: 1 }]);
    a.s.set_active(false);
    pump(&mut a, &mut b);
    assert_eq!(
        events(&mut b.s),
        vec![WakeupEvent::PeerInactive { peer: 1 }]
    );
    assert_eq!(b.s.active_peers(), 0);

    let s = a.s.stats();
    assert_eq!(
        (s.announce_tx, s.lookup_rx, s.info_tx, s.info_rx),
        (1, 1, 1, 1)
    );

    // b closes its channel: on a, the active peer goes inactive, then is removed
    b.mux.close(b.ch.unwrap()).unwrap();
    pump(&mut b, &mut a);
    assert_eq!(
        events(&mut a.s),
        vec![
            WakeupEvent::PeerInactive { peer: 1 },
            WakeupEvent::PeerRemoved { peer: 1 }
        ]
    );
    assert_eq!(a.s.active_peers(), 0);
    assert!(!a.s.announce(1, &w));
}

#[test]
fn announce_waits_for_the_open_and_one_channel_per_peer() {
    let mut a = WakeupSession::<u32>::new(K1, None, true);
    assert!(a.add_peer(1, true, HH).is_some());
    assert!(a.add_peer(1, true, HH).is_none());
    assert!(!a.announce(1, &[]));
    assert!(a.poll_output().is_none());
    // a lookup may go to a pending peer (JS broadcastLookup does)
    assert!(a.lookup(1, Some(K2)));
    assert!(matches!(
        a.poll_output(),
        Some(Output::Send {
            message_type: 0,
            ..
        })
    ));
}

fn proof(is_initiator: bool, capability: &[u8; 32], hh: &[u8; 64]) -> Vec<u8> {
    Handshake {
        version: 0,
        capability: capability_proof(is_initiator, capability, hh),
        active: true,
    }
    .to_bytes()
}

#[test]
fn wrong_capability_closes_the_channel() {
    // we are the initiator: the remote proves as the responder
    let mut a = WakeupSession::<u32>::new(K1, None, true);
    a.add_peer(1, true, HH).unwrap();
    assert_eq!(
        a.handle_open(1, &proof(false, &K2, &HH)),
        Err(WakeupError::InvalidCapability)
    );
    assert_eq!(a.poll_output(), Some(Output::Close { peer: 1 }));
    assert!(events(&mut a).is_empty());
    assert!(!a.is_open(1));

    // the right capability but the proof of our own role (a reflected handshake)
    let mut a = WakeupSession::<u32>::new(K1, None, true);
    a.add_peer(1, true, HH).unwrap();
    assert_eq!(
        a.handle_open(1, &proof(true, &K1, &HH)),
        Err(WakeupError::InvalidCapability)
    );

    // another connection's handshake hash
    let mut a = WakeupSession::<u32>::new(K1, None, true);
    a.add_peer(1, true, HH).unwrap();
    assert_eq!(
        a.handle_open(1, &proof(false, &K1, &[0x44; 64])),
        Err(WakeupError::InvalidCapability)
    );

    // and the right one
    let mut a = WakeupSession::<u32>::new(K1, None, true);
    a.add_peer(1, true, HH).unwrap();
    assert_eq!(a.handle_open(1, &proof(false, &K1, &HH)), Ok(()));
    assert_eq!(
        events(&mut a),
        vec![
            WakeupEvent::PeerAdded { peer: 1 },
            WakeupEvent::PeerActive { peer: 1 }
        ]
    );
}

#[test]
fn hostile_input_is_a_typed_error() {
    let (a, _b) = pair(true, true);
    let mut a = a.s;
    events(&mut a);
    // an announce cut short
    let r = a.handle_message(1, 1, &h("0211"));
    assert!(matches!(r, Err(WakeupError::Decode(_))));
    assert_eq!(a.poll_output(), Some(Output::Close { peer: 1 }));
    assert_eq!(
        events(&mut a),
        vec![
            WakeupEvent::PeerInactive { peer: 1 },
            WakeupEvent::PeerRemoved { peer: 1 }
        ]
    );
    // the peer is gone now
    assert_eq!(
        a.handle_message(1, 0, &h("00")),
        Err(WakeupError::UnknownPeer)
    );
    assert_eq!(a.handle_open(7, &[]), Err(WakeupError::UnknownPeer));

    for (ty, bytes) in [
        (0u64, "01aa"),            // lookup hash cut short
        (1, "ff"),                 // array length cut short
        (1, "fe00002000"),         // 2 MiB items: more than JS accepts
        (1, "01"),                 // one writer, no bytes
        (2, ""),                   // empty info
        (2, "ffffffffffffffffff"), // flags past 2^53
    ] {
        let mut a = pair(true, true).0.s;
        assert!(
            matches!(
                a.handle_message(1, ty, &h(bytes)),
                Err(WakeupError::Decode(_))
            ),
            "{ty} {bytes}"
        );
        assert_eq!(a.poll_output(), Some(Output::Close { peer: 1 }));
    }
    // a bad handshake
    let mut a = WakeupSession::<u32>::new(K1, None, true);
    a.add_peer(1, true, HH).unwrap();
    assert!(matches!(
        a.handle_open(1, &h("00aa")),
        Err(WakeupError::Decode(_))
    ));
    // a message before the open
    let mut a = WakeupSession::<u32>::new(K1, None, true);
    a.add_peer(1, true, HH).unwrap();
    assert_eq!(a.handle_message(1, 2, &h("01")), Err(WakeupError::NotOpen));
    // an unknown message type is dropped, as protomux drops it
    let mut a = pair(true, true).0.s;
    events(&mut a);
    assert_eq!(a.handle_message(1, 3, &h("ffff")), Ok(()));
    assert!(events(&mut a).is_empty());
    assert!(a.poll_output().is_none());
}
