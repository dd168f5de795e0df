//! Tests of the protomux engine: the JS vectors byte for byte, two engines back to back, protocol
//! violations, and random input.

use proptest::prelude::*;

use super::frame::{BatchItem, Frame, OpenFrame, MAX_BATCH};
use super::*;
use crate::encoding::{write_string, write_uint};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/data/");

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn string(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_string(&mut out, s);
    out
}

fn uint(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    write_uint(&mut out, n);
    out
}

fn transmits(m: &mut Protomux) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| m.poll_transmit()).collect()
}

fn events(m: &mut Protomux) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// Delivers every frame `from` has to `to`, returning them.
fn deliver(from: &mut Protomux, to: &mut Protomux) -> Vec<Vec<u8>> {
    let frames = transmits(from);
    for f in &frames {
        to.handle_frame(f).unwrap();
    }
    frames
}

fn opened(channel: ChannelId, handshake: &[u8]) -> Event {
    Event::ChannelOpened {
        channel,
        handshake: handshake.to_vec(),
    }
}

fn message(channel: ChannelId, message_type: u64, payload: &[u8]) -> Event {
    Event::Message {
        channel,
        message_type,
        payload: payload.to_vec(),
    }
}

/// `(direction, frame)` for every frame line of `09-protomux.out`.
fn vector_frames() -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(format!("{VECTORS}09-protomux.out"))
        .expect("cannot read 09-protomux.out");
    text.lines()
        .filter_map(|l| {
            let (dir, hex) = l.split_once(' ')?;
            (dir == "A->B" || dir == "B->A").then(|| (dir.to_string(), h(hex.trim())))
        })
        .collect()
}

/// Replays `09-protomux.js` with two engines: every frame equals the JS one, in order, and every
/// frame decodes with [`Frame`] and encodes back to itself.
#[test]
fn vector_09_byte_identical() {
    let want = vector_frames();
    assert_eq!(want.len(), 7, "frames in 09-protomux.out");
    let mut got: Vec<(String, Vec<u8>)> = Vec::new();
    let (mut a, mut b) = (Protomux::new(), Protomux::new());
    let ab = |a: &mut Protomux, b: &mut Protomux, got: &mut Vec<(String, Vec<u8>)>| {
        for f in deliver(a, b) {
            got.push(("A->B".into(), f));
        }
        for f in deliver(b, a) {
            got.push(("B->A".into(), f));
        }
    };

    // A opens "proto" (handshake c.string("hi")); B has no pair handler and rejects.
    let ch_a = a
        .open(ChannelOptions::new("proto").handshake(string("hi")))
        .unwrap();
    ab(&mut a, &mut b, &mut got);
    assert_eq!(events(&mut b), vec![]);
    assert_eq!(
        events(&mut a),
        vec![Event::ChannelRejected { channel: ch_a }]
    );

    // B pairs; A opens ("proto", beef); B answers on the pair request.
    b.pair("proto", Some(&h("beef")));
    let ch_a2 = a
        .open(
            ChannelOptions::new("proto")
                .id(h("beef"))
                .handshake(string("hi2")),
        )
        .unwrap();
    assert_eq!(a.local_id(ch_a2), Some(1), "the rejected id is reused");
    for f in deliver(&mut a, &mut b) {
        got.push(("A->B".into(), f));
    }
    assert_eq!(
        events(&mut b),
        vec![Event::PairRequest {
            protocol: "proto".into(),
            id: Some(h("beef")),
            handshake: string("hi2"),
        }]
    );
    let ch_b = b
        .open(
            ChannelOptions::new("proto")
                .id(h("beef"))
                .handshake(string("yo")),
        )
        .unwrap();
    assert_eq!(events(&mut b), vec![opened(ch_b, &string("hi2"))]);
    for f in deliver(&mut b, &mut a) {
        got.push(("B->A".into(), f));
    }
    assert_eq!(events(&mut a), vec![opened(ch_a2, &string("yo"))]);

    // One message, then a corked batch of two, then close.
    a.send(ch_a2, 0, &string("msg")).unwrap();
    ab(&mut a, &mut b, &mut got);
    a.cork();
    a.send(ch_a2, 0, &string("a")).unwrap();
    a.send(ch_a2, 1, &uint(300)).unwrap();
    assert_eq!(a.poll_transmit(), None, "nothing leaves while corked");
    a.uncork();
    ab(&mut a, &mut b, &mut got);
    assert_eq!(
        events(&mut b),
        vec![
            message(ch_b, 0, &string("msg")),
            message(ch_b, 0, &string("a")),
            message(ch_b, 1, &uint(300)),
        ]
    );
    a.close(ch_a2).unwrap();
    ab(&mut a, &mut b, &mut got);
    assert_eq!(
        events(&mut a),
        vec![Event::ChannelClosed {
            channel: ch_a2,
            by_remote: false
        }]
    );
    assert_eq!(
        events(&mut b),
        vec![Event::ChannelClosed {
            channel: ch_b,
            by_remote: true
        }]
    );
    assert!(a.is_idle() && b.is_idle());

    for (i, ((gd, gf), (wd, wf))) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            (gd, hex::encode(gf)),
            (wd, hex::encode(wf)),
            "frame {i} of 09-protomux.out"
        );
    }
    assert_eq!(got.len(), want.len());
}

/// Each vector frame decodes to what the script did, and re-encodes to the same bytes.
#[test]
fn vector_09_frames_decode() {
    let frames = vector_frames();
    let decoded: Vec<Frame<'_>> = frames
        .iter()
        .map(|(_, f)| Frame::decode(f).unwrap())
        .collect();
    let hs_hi = string("hi");
    let hs_hi2 = string("hi2");
    let hs_yo = string("yo");
    let beef = h("beef");
    let msg = string("msg");
    let a = string("a");
    let n300 = uint(300);
    let expect = vec![
        Frame::Open(OpenFrame {
            local_id: 1,
            protocol: "proto",
            id: None,
            handshake: &hs_hi,
        }),
        Frame::Reject { remote_id: 1 },
        Frame::Open(OpenFrame {
            local_id: 1,
            protocol: "proto",
            id: Some(&beef),
            handshake: &hs_hi2,
        }),
        Frame::Open(OpenFrame {
            local_id: 1,
            protocol: "proto",
            id: Some(&beef),
            handshake: &hs_yo,
        }),
        Frame::Message {
            channel: 1,
            message_type: 0,
            payload: &msg,
        },
        Frame::Batch(vec![
            BatchItem {
                channel: 1,
                message_type: 0,
                payload: &a,
            },
            BatchItem {
                channel: 1,
                message_type: 1,
                payload: &n300,
            },
        ]),
        Frame::Close { local_id: 1 },
    ];
    assert_eq!(decoded, expect);
    for ((_, bytes), frame) in frames.iter().zip(&decoded) {
        assert_eq!(&frame.to_bytes(), bytes);
    }
}

/// A full session between two engines: simultaneous opens pair, messages flow both ways,
/// closing frees ids that the next open reuses.
#[test]
fn back_to_back_open_messages_close_reopen() {
    let (mut a, mut b) = (Protomux::new(), Protomux::new());
    let opts = |hs: &str| {
        ChannelOptions::new("echo")
            .id(b"room".to_vec())
            .handshake(string(hs))
    };
    let ca = a.open(opts("from a")).unwrap();
    let cb = b.open(opts("from b")).unwrap();
    // Both opens cross on the wire.
    let fa = transmits(&mut a);
    let fb = transmits(&mut b);
    for f in &fa {
        b.handle_frame(f).unwrap();
    }
    for f in &fb {
        a.handle_frame(f).unwrap();
    }
    assert_eq!(events(&mut a), vec![opened(ca, &string("from b"))]);
    assert_eq!(events(&mut b), vec![opened(cb, &string("from a"))]);
    assert!(a.is_opened(ca) && b.is_opened(cb));
    assert_eq!((a.remote_id(ca), b.remote_id(cb)), (Some(1), Some(1)));
    assert!(a.is_protocol_opened("echo", Some(b"room")));

    a.send(ca, 3, b"ping").unwrap();
    b.send(cb, 4, b"pong").unwrap();
    deliver(&mut a, &mut b);
    deliver(&mut b, &mut a);
    assert_eq!(events(&mut b), vec![message(cb, 3, b"ping")]);
    assert_eq!(events(&mut a), vec![message(ca, 4, b"pong")]);

    // A second protocol takes local id 2 on both sides.
    let ca2 = a.open(ChannelOptions::new("other")).unwrap();
    let cb2 = b.open(ChannelOptions::new("other")).unwrap();
    deliver(&mut a, &mut b);
    deliver(&mut b, &mut a);
    events(&mut a);
    events(&mut b);
    assert_eq!((a.local_id(ca2), b.local_id(cb2)), (Some(2), Some(2)));

    // Close the first channel: both sides free local id 1 and the next open reuses it.
    a.close(ca).unwrap();
    assert_eq!(a.send(ca, 0, b"late"), Err(ChannelError::UnknownChannel));
    assert_eq!(deliver(&mut a, &mut b), vec![h("000301")]);
    assert_eq!(
        events(&mut b),
        vec![Event::ChannelClosed {
            channel: cb,
            by_remote: true
        }]
    );
    assert_eq!(b.send(cb, 0, b"x"), Err(ChannelError::UnknownChannel));
    let ca3 = a.open(opts("again a")).unwrap();
    let cb3 = b.open(opts("again b")).unwrap();
    assert_ne!(ca3, ca, "handles are never reused");
    assert_eq!((a.local_id(ca3), b.local_id(cb3)), (Some(1), Some(1)));
    deliver(&mut a, &mut b);
    deliver(&mut b, &mut a);
    assert_eq!(
        events(&mut a),
        vec![
            Event::ChannelClosed {
                channel: ca,
                by_remote: false
            },
            opened(ca3, &string("again b"))
        ]
    );
    assert_eq!(events(&mut b), vec![opened(cb3, &string("again a"))]);
    // A message from B's old channel id 1 now reaches the new channel.
    b.send(cb3, 0, b"new").unwrap();
    deliver(&mut b, &mut a);
    assert_eq!(events(&mut a), vec![message(ca3, 0, b"new")]);

    // Unique channels: a second open of an opened (protocol, id) is refused, unless not unique.
    assert_eq!(a.open(opts("dup")), Err(ChannelError::AlreadyOpen));
    assert!(a.open(opts("dup").unique(false)).is_ok());
}

/// A local id closed before the remote answered is only reused once the remote's open arrives.
#[test]
fn id_freed_only_after_remote_answer() {
    let (mut a, mut b) = (Protomux::new(), Protomux::new());
    let ca = a.open(ChannelOptions::new("p")).unwrap();
    a.close(ca).unwrap();
    assert_eq!(
        events(&mut a),
        vec![Event::ChannelClosed {
            channel: ca,
            by_remote: false
        }]
    );
    let ca2 = a.open(ChannelOptions::new("q")).unwrap();
    assert_eq!(a.local_id(ca2), Some(2), "id 1 still waits for the remote");
    // B answers the (closed) "p" open: A frees id 1 silently.
    let cb = b.open(ChannelOptions::new("p")).unwrap();
    deliver(&mut b, &mut a);
    assert_eq!(events(&mut a), vec![]);
    let ca3 = a.open(ChannelOptions::new("r")).unwrap();
    assert_eq!(a.local_id(ca3), Some(1));
    // B saw A's open then close; its own channel is closed by that close.
    deliver(&mut a, &mut b);
    let ev = events(&mut b);
    assert_eq!(
        ev[..2],
        [
            opened(cb, &[]),
            Event::ChannelClosed {
                channel: cb,
                by_remote: true
            }
        ]
    );
}

/// Opens nobody asked for: rejected without `pair`, offered with it; messages sent before the
/// answer are buffered and delivered after the open.
#[test]
fn pair_request_reject_and_buffering() {
    let (mut a, mut b) = (Protomux::new(), Protomux::new());
    // Not paired: immediate reject.
    let c1 = a.open(ChannelOptions::new("nobody")).unwrap();
    deliver(&mut a, &mut b);
    assert_eq!(events(&mut b), vec![]);
    assert_eq!(deliver(&mut b, &mut a), vec![h("000201")]);
    assert_eq!(events(&mut a), vec![Event::ChannelRejected { channel: c1 }]);

    // Paired for any id of "svc": the owner rejects the first request, accepts the second.
    b.pair("svc", None);
    let c2 = a
        .open(ChannelOptions::new("svc").id(b"one".to_vec()))
        .unwrap();
    a.send(c2, 0, b"lost").unwrap();
    deliver(&mut a, &mut b);
    assert_eq!(b.buffered_bytes(), 512 + 4);
    assert_eq!(
        events(&mut b),
        vec![Event::PairRequest {
            protocol: "svc".into(),
            id: Some(b"one".to_vec()),
            handshake: vec![],
        }]
    );
    assert_eq!(
        b.reject("svc", Some(b"nope")),
        Err(ChannelError::NoPendingOpen)
    );
    b.reject("svc", Some(b"one")).unwrap();
    assert_eq!(b.buffered_bytes(), 0);
    assert_eq!(deliver(&mut b, &mut a), vec![h("000201")]);
    assert_eq!(events(&mut a), vec![Event::ChannelRejected { channel: c2 }]);

    let c3 = a
        .open(
            ChannelOptions::new("svc")
                .id(b"two".to_vec())
                .handshake(b"HS".to_vec()),
        )
        .unwrap();
    a.send(c3, 0, b"early 1").unwrap();
    a.send(c3, 1, b"early 2").unwrap();
    deliver(&mut a, &mut b);
    assert_eq!(b.buffered_bytes(), 2 * 512 + 14);
    assert!(matches!(&events(&mut b)[..], [Event::PairRequest { .. }]));
    let cb = b
        .open(ChannelOptions::new("svc").id(b"two".to_vec()))
        .unwrap();
    assert_eq!(
        events(&mut b),
        vec![
            opened(cb, b"HS"),
            message(cb, 0, b"early 1"),
            message(cb, 1, b"early 2")
        ]
    );
    assert_eq!(b.buffered_bytes(), 0);
    deliver(&mut b, &mut a);
    assert_eq!(events(&mut a), vec![opened(c3, &[])]);
    b.unpair("svc", None);
    a.open(ChannelOptions::new("svc")).unwrap();
    deliver(&mut a, &mut b);
    assert_eq!(events(&mut b), vec![], "unpaired again: rejected");
    assert_eq!(transmits(&mut b), vec![h("000202")]);
}

/// Messages past the buffering limit make `should_pause` true.
#[test]
fn buffering_limit() {
    let (mut a, mut b) = (Protomux::new(), Protomux::new());
    b.pair("p", None);
    let c = a.open(ChannelOptions::new("p")).unwrap();
    for _ in 0..64 {
        a.send(c, 0, b"x").unwrap();
    }
    deliver(&mut a, &mut b);
    assert_eq!(b.buffered_bytes(), 64 * 513);
    assert!(b.should_pause());
    events(&mut b);
    b.open(ChannelOptions::new("p")).unwrap();
    assert!(!b.should_pause());
    assert_eq!(events(&mut b).len(), 65);
}

/// Aliases: an open naming an alias pairs with the local channel.
#[test]
fn aliases_pair() {
    let mut a = Protomux::new();
    let id = [7u8; 32];
    let ca = a
        .open(
            ChannelOptions::new("hypercore/alpha")
                .aliases(["hypercore"])
                .id(id.to_vec()),
        )
        .unwrap();
    let out = transmits(&mut a);
    assert_eq!(
        Frame::decode(&out[0]).unwrap(),
        Frame::Open(OpenFrame {
            local_id: 1,
            protocol: "hypercore/alpha",
            id: Some(&id),
            handshake: &[],
        })
    );
    let remote_open = Frame::Open(OpenFrame {
        local_id: 1,
        protocol: "hypercore",
        id: Some(&id),
        handshake: b"old",
    })
    .to_bytes();
    a.handle_frame(&remote_open).unwrap();
    assert_eq!(events(&mut a), vec![opened(ca, b"old")]);
    assert!(a.is_protocol_opened("hypercore", Some(&id)));
    a.close(ca).unwrap();
    assert!(!a.is_protocol_opened("hypercore", Some(&id)));
    assert!(!a.is_protocol_opened("hypercore/alpha", Some(&id)));
}

/// Cork collects control and channel messages in one batch (shared prefixes, `00 id` switches,
/// channel-0 items without their leading `00`); nested corks send once.
#[test]
fn cork_batches_everything() {
    let (mut a, mut b) = (Protomux::new(), Protomux::new());
    b.pair("x", None);
    b.pair("y", None);
    a.cork();
    a.cork();
    let cx = a.open(ChannelOptions::new("x")).unwrap();
    let cy = a.open(ChannelOptions::new("y")).unwrap();
    a.send(cx, 0, b"1").unwrap();
    a.send(cx, 1, b"2").unwrap();
    a.send(cy, 0, b"3").unwrap();
    a.uncork();
    assert!(a.is_corked());
    assert_eq!(a.poll_transmit(), None);
    a.uncork();
    a.uncork(); // not corked: no effect
    let frames = transmits(&mut a);
    assert_eq!(frames.len(), 1);
    let mut want = h("000000"); // batch, first channel 0
    for (proto, local) in [("x", 1u64), ("y", 2)] {
        let open = frame::open_frame(local, proto, None, &[]);
        write_uint(&mut want, (open.len() - 1) as u64);
        want.extend_from_slice(&open[1..]);
    }
    want.extend_from_slice(&h("0001")); // switch to channel 1
    want.extend_from_slice(&h("0200310201320002020033"));
    assert_eq!(hex::encode(&frames[0]), hex::encode(&want));
    b.handle_frame(&frames[0]).unwrap();
    let ev = events(&mut b);
    assert_eq!(
        ev.len(),
        2,
        "two pair requests; messages are buffered: {ev:?}"
    );
}

/// The batch is split once it reaches 8 MiB, like JS.
#[test]
fn batch_split_at_max_batch() {
    let (mut a, mut b) = (Protomux::new(), Protomux::new());
    let c = a.open(ChannelOptions::new("big")).unwrap();
    let cb = b.open(ChannelOptions::new("big")).unwrap();
    deliver(&mut a, &mut b);
    deliver(&mut b, &mut a);
    events(&mut a);
    events(&mut b);
    let chunk = vec![0xabu8; 1 << 20];
    a.cork();
    for _ in 0..9 {
        a.send(c, 0, &chunk).unwrap();
    }
    a.uncork();
    let frames = transmits(&mut a);
    assert_eq!(frames.len(), 2);
    // 8 items make the first frame reach MAX_BATCH, the 9th starts a new one.
    assert!(frames[0].len() >= MAX_BATCH && frames[1].len() < MAX_BATCH);
    for f in &frames {
        b.handle_frame(f).unwrap();
    }
    let ev = events(&mut b);
    assert_eq!(ev.len(), 9);
    assert!(ev.iter().all(|e| *e == message(cb, 0, &chunk)));
}

/// A received batch of several messages corks replies until the owner drained the events.
#[test]
fn replies_to_a_batch_are_batched() {
    let (mut a, mut b) = (Protomux::new(), Protomux::new());
    let ca = a.open(ChannelOptions::new("p")).unwrap();
    let cb = b.open(ChannelOptions::new("p")).unwrap();
    deliver(&mut a, &mut b);
    deliver(&mut b, &mut a);
    events(&mut a);
    events(&mut b);
    a.cork();
    a.send(ca, 0, b"q1").unwrap();
    a.send(ca, 0, b"q2").unwrap();
    a.uncork();
    deliver(&mut a, &mut b);
    assert!(b.is_corked());
    while let Some(ev) = b.poll_event() {
        if let Event::Message { payload, .. } = ev {
            let mut reply = b"re ".to_vec();
            reply.extend_from_slice(&payload);
            b.send(cb, 1, &reply).unwrap();
        }
    }
    assert!(!b.is_corked());
    let frames = transmits(&mut b);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        Frame::decode(&frames[0]).unwrap(),
        Frame::Batch(vec![
            BatchItem {
                channel: 1,
                message_type: 1,
                payload: b"re q1"
            },
            BatchItem {
                channel: 1,
                message_type: 1,
                payload: b"re q2"
            },
        ])
    );
    // A single-message batch does not cork.
    a.cork();
    a.send(ca, 0, b"q3").unwrap();
    a.uncork();
    deliver(&mut a, &mut b);
    assert!(!b.is_corked());
}

/// Things JS ignores: empty frames, unknown control types, unknown channels, unknown message
/// types, closes of unknown ids.
#[test]
fn ignored_input() {
    let (mut a, mut b) = (Protomux::new(), Protomux::new());
    let ca = a.open(ChannelOptions::new("p")).unwrap();
    let cb = b.open(ChannelOptions::new("p").message_types(2)).unwrap();
    deliver(&mut a, &mut b);
    deliver(&mut b, &mut a);
    events(&mut a);
    events(&mut b);
    for f in [
        "",
        "0009aabb",
        "05000000",
        "000305",
        "000300",
        "0103",
        "fe000000f000",
    ] {
        b.handle_frame(&h(f)).unwrap();
    }
    a.send(ca, 2, b"unknown type").unwrap();
    a.send(ca, 1, b"known").unwrap();
    deliver(&mut a, &mut b);
    assert_eq!(events(&mut b), vec![message(cb, 1, b"known")]);
    assert!(!b.is_destroyed());
    // A batch item whose length runs past the frame end is cut, as in JS.
    b.handle_frame(&h("0000010901616263")).unwrap();
    assert_eq!(events(&mut b), vec![message(cb, 1, b"abc")]);
}

fn violation(setup: &[&str], frame: &str) -> MuxError {
    let mut m = Protomux::new();
    m.pair("p", None);
    for f in setup {
        m.handle_frame(&h(f)).unwrap();
    }
    let err = m.handle_frame(&h(frame)).unwrap_err();
    assert!(m.is_destroyed());
    assert_eq!(m.handle_frame(&h(frame)), Err(MuxError::Destroyed));
    err
}

/// Protocol violations are typed errors and destroy the mux.
#[test]
fn protocol_violations() {
    let open = |id: u8| format!("0001{id:02x}017000");
    assert_eq!(
        violation(&[], &open(2)),
        MuxError::InvalidOpen { remote_id: 2 },
        "ids grow by one"
    );
    assert_eq!(
        violation(&[&open(1)], &open(1)),
        MuxError::InvalidOpen { remote_id: 1 },
        "id in use"
    );
    assert_eq!(
        violation(&[], &open(0)),
        MuxError::InvalidOpen { remote_id: 0 }
    );
    assert_eq!(
        violation(&[], "000201"),
        MuxError::InvalidReject { local_id: 1 }
    );
    assert!(matches!(violation(&[], "0000"), MuxError::Decode(_)));
    assert!(matches!(violation(&[], "000001ff"), MuxError::Decode(_)));
    assert!(matches!(violation(&[], "0001"), MuxError::Decode(_)));
    assert!(matches!(violation(&[], "00010105"), MuxError::Decode(_)));
    assert!(matches!(violation(&[], "fd00"), MuxError::Decode(_)));
    // A batch item with an empty type.
    assert!(matches!(violation(&[], "00000101"), MuxError::Decode(_)));
    // Batches in batches in batches...
    let mut nested = h("0103");
    for _ in 0..=MAX_BATCH_DEPTH {
        let mut outer = h("000000");
        write_uint(&mut outer, nested.len() as u64 - 1);
        outer.extend_from_slice(&nested[1..]);
        nested = outer;
    }
    assert_eq!(
        violation(&[], &hex::encode(&nested)),
        MuxError::BatchTooDeep
    );
}

/// A violation closes every channel, as the stream closing does in JS.
#[test]
fn violation_closes_channels() {
    let (mut a, mut b) = (Protomux::new(), Protomux::new());
    let ca = a.open(ChannelOptions::new("p")).unwrap();
    b.open(ChannelOptions::new("p")).unwrap();
    deliver(&mut a, &mut b);
    deliver(&mut b, &mut a);
    events(&mut a);
    a.send(ca, 0, b"unsent").unwrap();
    assert!(a.handle_frame(&h("000209")).is_err());
    assert_eq!(
        events(&mut a),
        vec![Event::ChannelClosed {
            channel: ca,
            by_remote: true
        }]
    );
    assert_eq!(a.poll_transmit(), None, "unsent frames are dropped");
    assert_eq!(a.send(ca, 0, b"x"), Err(ChannelError::Destroyed));
    assert_eq!(
        a.open(ChannelOptions::new("p")),
        Err(ChannelError::Destroyed)
    );
}

/// A well-formed open of the control channel inside a batch is the same violation.
#[test]
fn control_open_in_batch() {
    let err = violation(&[], "000000050100017000");
    assert_eq!(err, MuxError::InvalidOpen { remote_id: 0 });
}

proptest! {
    /// Arbitrary frames never panic, whatever state the mux is in.
    #[test]
    fn random_frames_never_panic(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..16),
        prefix in 0usize..4,
    ) {
        let mut m = Protomux::new();
        m.pair("p", None);
        let own = m.open(ChannelOptions::new("p")).unwrap();
        let valid = ["000101017000", "000102017000", "01000102", "000000020003 01"];
        for f in valid.iter().take(prefix) {
            let _ = m.handle_frame(&h(&f.replace(' ', "")));
        }
        for f in &frames {
            let _ = m.handle_frame(f);
            while m.poll_event().is_some() {}
            while m.poll_transmit().is_some() {}
            let _ = m.send(own, 0, b"x");
        }
    }

    /// Framed random input: a control prefix so more paths are reached.
    #[test]
    fn random_control_frames_never_panic(
        kind in 0u8..5,
        body in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        let mut m = Protomux::new();
        m.pair("p", None);
        let mut f = vec![0, kind];
        f.extend_from_slice(&body);
        let _ = m.handle_frame(&f);
        while m.poll_event().is_some() {}
        let _ = Frame::decode(&f);
    }

    /// Whatever `Frame::decode` accepts, `encode` writes bytes that decode to the same frame.
    #[test]
    fn frame_roundtrip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(frame) = Frame::decode(&bytes) {
            let again = frame.to_bytes();
            prop_assert_eq!(Frame::decode(&again).unwrap(), frame);
        }
    }
}

/// `send_with_piece` gives the frames `send` gives of the joined payload, corked (in a batch,
/// among other messages) or not, and the peer reads the joined payload.
#[test]
fn a_piece_sent_apart_joins_to_the_payload() {
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
    let run = |apart: bool| {
        let (mut a, mut b) = (Protomux::new(), Protomux::new());
        let ca = a.open(ChannelOptions::new("p")).unwrap();
        let cb = b.open(ChannelOptions::new("p")).unwrap();
        deliver(&mut a, &mut b);
        deliver(&mut b, &mut a);
        events(&mut a);
        events(&mut b);
        let send = |m: &mut Protomux, head: &[u8], at: usize, piece: &[u8]| {
            if apart {
                m.send_with_piece(ca, 3, head, at, piece.to_vec()).unwrap();
            } else {
                let mut joined = head[..at].to_vec();
                joined.extend_from_slice(piece);
                joined.extend_from_slice(&head[at..]);
                m.send(ca, 3, &joined).unwrap();
            }
        };
        send(&mut a, b"head", 2, &big);
        a.cork();
        a.send(ca, 1, b"small").unwrap();
        send(&mut a, b"xy", 0, &big);
        send(&mut a, b"", 0, &big[..10]);
        send(&mut a, b"tail", 4, &big);
        a.uncork();
        let frames: Vec<OutFrame> = std::iter::from_fn(|| a.poll_transmit_frame()).collect();
        let pieces: usize = frames.iter().map(|f| f.pieces.len()).sum();
        let wire: Vec<Vec<u8>> = frames.into_iter().map(OutFrame::into_bytes).collect();
        for f in &wire {
            b.handle_frame(f).unwrap();
        }
        (wire, pieces, events(&mut b), cb)
    };
    let (wire, pieces, got, cb) = run(true);
    let (plain_wire, plain_pieces, plain_got, _) = run(false);
    assert_eq!((pieces, plain_pieces), (4, 0));
    assert!(wire == plain_wire, "the same frames");
    assert!(got == plain_got, "the same messages");
    let mut first = b"he".to_vec();
    first.extend_from_slice(&big);
    first.extend_from_slice(b"ad");
    assert_eq!(got[0], message(cb, 3, &first));
    assert_eq!(got.len(), 5);
}
