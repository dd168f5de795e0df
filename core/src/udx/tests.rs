//! Wire-level behaviour of one stream, checked against what udx-native puts on the wire
//! (`out-udx.txt`).

use std::time::Duration;

use super::packet::{decode, encode, Flags, Header, SackRange};
use super::stream::DEFAULT_RECV_WINDOW;
use super::*;

const T0: Duration = Duration::ZERO;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn drain(s: &mut Stream, now: Duration) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| s.poll_transmit(now)).collect()
}

fn events(s: &mut Stream) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn data(id: u32, seq: u32, flags: Flags, payload: &[u8]) -> Vec<u8> {
    let h = Header {
        flags,
        data_offset: 0,
        id,
        rwnd: DEFAULT_RECV_WINDOW,
        seq,
        ack: 0,
    };
    encode(&h, &[], payload)
}

#[test]
fn first_packets_look_like_udx_native() {
    let mut a = Stream::new(1, 2, T0, Config::default());
    a.write(&vec![b'a'; 20_000]).unwrap();
    let out = drain(&mut a, T0);
    // The initial window is 10 packets (pacing lets them all out within the 1 ms burst).
    assert_eq!(out.len(), 10);
    assert_eq!(
        hex::encode(&out[0][..20]),
        "ff01010002000000000040000000000000000000"
    );
    assert_eq!(out[0].len(), 20 + 1152);
    for (i, d) in out.iter().enumerate() {
        let p = decode(d).unwrap();
        assert_eq!(p.header.seq, i as u32);
        assert_eq!(p.header.flags, Flags::DATA);
    }
}

#[test]
fn receiver_acks_every_packet_and_sacks_holes() {
    let mut b = Stream::new(2, 1, T0, Config::default());
    b.handle_datagram(T0, &data(2, 0, Flags::DATA, b"zero"))
        .unwrap();
    // Unread data shrinks the advertised window; reading it restores the full 4 MiB.
    assert_eq!(b.recv_buffered(), 4);
    assert_eq!(events(&mut b), vec![Event::Data(b"zero".to_vec())]);
    let acks = drain(&mut b, T0);
    assert_eq!(acks.len(), 1);
    assert_eq!(
        hex::encode(&acks[0]),
        "ff01000001000000000040000000000001000000"
    );
    b.handle_datagram(T0, &data(2, 1, Flags::DATA, b"one"))
        .unwrap();
    // seq 2 is lost; 3 and 4 arrive.
    for seq in [3, 4] {
        b.handle_datagram(T0, &data(2, seq, Flags::DATA, b"x"))
            .unwrap();
    }
    let acks = drain(&mut b, T0);
    assert_eq!(acks.len(), 1, "one (coalesced) ack per drain");
    let p = decode(&acks[0]).unwrap();
    assert_eq!(p.header.flags, Flags::SACK);
    assert_eq!(p.header.ack, 2);
    assert_eq!(p.sacks, vec![SackRange { start: 3, end: 5 }]);
    assert_eq!(acks[0].len(), 28);
    assert_eq!(events(&mut b), vec![Event::Data(b"one".to_vec())]);
    // The hole fills: everything is delivered in order and the ack jumps to 5.
    b.handle_datagram(T0, &data(2, 2, Flags::DATA, b"two"))
        .unwrap();
    let p = decode(&drain(&mut b, T0)[0]).unwrap().header;
    assert_eq!((p.flags, p.ack), (Flags::ACK, 5));
    assert_eq!(
        events(&mut b),
        // Packets delivered together come as one chunk.
        vec![Event::Data(b"twoxx".to_vec())]
    );
    // A duplicate is acked again but not delivered twice.
    b.handle_datagram(T0, &data(2, 3, Flags::DATA, b"x"))
        .unwrap();
    assert_eq!(drain(&mut b, T0).len(), 1);
    assert!(events(&mut b).is_empty());
}

#[test]
fn padding_and_messages_and_heartbeats() {
    let mut b = Stream::new(2, 1, T0, Config::default());
    let mut h = Header {
        flags: Flags::DATA,
        data_offset: 37,
        id: 2,
        rwnd: 1000,
        seq: 0,
        ack: 0,
    };
    b.handle_datagram(T0, &encode(&h, &[], b"padded")).unwrap();
    h.flags = Flags::MESSAGE;
    h.data_offset = 0;
    h.seq = 1;
    b.handle_datagram(T0, &encode(&h, &[], b"datagram!"))
        .unwrap();
    assert_eq!(
        events(&mut b),
        vec![
            Event::Data(b"padded".to_vec()),
            Event::Message(b"datagram!".to_vec())
        ]
    );
    assert_eq!(drain(&mut b, T0).len(), 1, "DATA is acked, MESSAGE is not");
    h.flags = Flags::HEARTBEAT;
    b.handle_datagram(T0, &encode(&h, &[], &[])).unwrap();
    let ack = decode(&drain(&mut b, T0)[0]).unwrap().header;
    assert_eq!((ack.flags, ack.ack, ack.seq), (Flags::ACK, 1, 0));
    // A MESSAGE carries the current seq without consuming it.
    b.send_message(b"m").unwrap();
    b.write(b"d").unwrap();
    let out = drain(&mut b, T0);
    let (m, d) = (decode(&out[0]).unwrap(), decode(&out[1]).unwrap());
    assert_eq!((m.header.flags, m.header.seq), (Flags::MESSAGE, 0));
    assert_eq!((d.header.flags, d.header.seq), (Flags::DATA, 0));
    assert_eq!(
        b.send_message(&[0; 1153]),
        Err(UsageError::MessageTooLarge {
            len: 1153,
            max: 1152
        })
    );
}

#[test]
fn end_consumes_a_seq_and_closes_both_sides() {
    let mut a = Stream::new(1, 2, T0, Config::default());
    let mut b = Stream::new(2, 1, T0, Config::default());
    a.write(b"ping").unwrap();
    a.end().unwrap();
    assert_eq!(a.write(b"more"), Err(UsageError::Ended));
    let out = drain(&mut a, T0);
    let hs: Vec<Header> = out.iter().map(|d| decode(d).unwrap().header).collect();
    assert_eq!((hs[0].flags, hs[0].seq), (Flags::DATA, 0));
    assert_eq!((hs[1].flags, hs[1].seq), (Flags::END, 1));
    for d in &out {
        b.handle_datagram(ms(10), d).unwrap();
    }
    assert_eq!(
        events(&mut b),
        vec![Event::Data(b"ping".to_vec()), Event::Ended]
    );
    b.end().unwrap();
    let out = drain(&mut b, ms(10));
    let hs: Vec<Header> = out.iter().map(|d| decode(d).unwrap().header).collect();
    // The ack (ack = 2) and b's END at seq 0.
    assert!(hs.iter().any(|h| h.flags == Flags::ACK && h.ack == 2));
    assert!(hs.iter().any(|h| h.flags == Flags::END && h.seq == 0));
    for d in &out {
        a.handle_datagram(ms(20), d).unwrap();
    }
    assert_eq!(events(&mut a), vec![Event::Ended, Event::Closed]);
    assert!(a.is_closed() && !a.is_finished());
    let out = drain(&mut a, ms(20));
    let last = decode(out.last().unwrap()).unwrap().header;
    assert_eq!((last.flags, last.seq, last.ack), (Flags::ACK, 2, 1));
    for d in &out {
        b.handle_datagram(ms(30), d).unwrap();
    }
    assert_eq!(events(&mut b), vec![Event::Closed]);
    // Lingering: a retransmitted END is still acknowledged, then the stream finishes.
    b.handle_datagram(ms(40), &out[0]).unwrap();
    a.handle_datagram(ms(40), &data(1, 0, Flags::END, &[]))
        .unwrap();
    assert_eq!(drain(&mut a, ms(40)).len(), 1);
    let linger = a.poll_timeout().unwrap();
    a.handle_timeout(linger);
    assert!(a.is_finished());
    assert_eq!(a.poll_timeout(), None);
}

/// A DESTROY after data the stream acknowledged (and the owner has not polled yet): the
/// acknowledged bytes still come out, in order, before the reset; what sat out of order
/// above a hole (only selectively acknowledged) does not.
#[test]
fn acknowledged_data_is_delivered_before_a_reset() {
    let mut b = Stream::new(2, 1, T0, Config::default());
    for (seq, payload) in [(0, &b"zero"[..]), (1, b"one"), (3, b"three")] {
        b.handle_datagram(T0, &data(2, seq, Flags::DATA, payload))
            .unwrap();
    }
    let acks = drain(&mut b, T0);
    assert_eq!(decode(acks.last().unwrap()).unwrap().header.ack, 2);
    let mut destroy = data(2, 4, Flags::DESTROY, b"");
    destroy.truncate(20);
    b.handle_datagram(ms(1), &destroy).unwrap();
    assert_eq!(
        events(&mut b),
        vec![
            Event::Data(b"zeroone".to_vec()),
            Event::Error(StreamError::Reset)
        ]
    );
    assert!(b.is_finished());
}

#[test]
fn destroy_sends_one_packet_and_consumes_a_seq() {
    let mut a = Stream::new(3, 4, T0, Config::default());
    a.write(b"x").unwrap();
    drain(&mut a, T0);
    a.destroy();
    assert!(!a.is_finished());
    let out = drain(&mut a, ms(1));
    assert_eq!(out.len(), 1);
    assert_eq!(
        hex::encode(&out[0]),
        "ff01100004000000000040000100000000000000"
    );
    assert_eq!(events(&mut a), vec![Event::Closed]);
    assert!(a.is_finished());
    let mut b = Stream::new(4, 3, T0, Config::default());
    b.handle_datagram(T0, &out[0]).unwrap();
    assert_eq!(events(&mut b), vec![Event::Error(StreamError::Reset)]);
    assert_eq!(b.write(b"y"), Err(UsageError::Closed));
}

/// The bare reset a side sends for a stream it agreed to but cannot run: the peer's stream,
/// mid-transfer with data outstanding, fails with a reset at once whatever sequence it expects.
#[test]
fn a_bare_reset_ends_the_peer_stream_at_once() {
    let mut b = Stream::new(4, 3, T0, Config::default());
    b.write(&[7u8; 5000]).unwrap();
    assert!(!drain(&mut b, T0).is_empty());
    let reset = packet::reset(4);
    assert_eq!(
        hex::encode(&reset),
        "ff01100004000000000000000000000000000000"
    );
    b.handle_datagram(ms(1), &reset).unwrap();
    assert_eq!(events(&mut b), vec![Event::Error(StreamError::Reset)]);
    // A reset for another id leaves a stream alone.
    let mut c = Stream::new(5, 3, T0, Config::default());
    c.handle_datagram(ms(1), &reset).unwrap();
    assert_eq!(events(&mut c), vec![]);
}

#[test]
fn other_ids_and_garbage_are_ignored() {
    let mut b = Stream::new(2, 1, T0, Config::default());
    b.handle_datagram(T0, &data(9, 0, Flags::DATA, b"not mine"))
        .unwrap();
    assert!(events(&mut b).is_empty());
    assert!(drain(&mut b, T0).is_empty());
    assert!(b.handle_datagram(T0, b"\x03 dht message").is_err());
    // Random bodies behind a valid header for our id never panic.
    let mut x = 0x9e37_79b9u64;
    for i in 0..2000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut d = data(2, (x as u32) % 64, Flags(x as u8 >> 2), &x.to_le_bytes());
        d[3] = (x >> 8) as u8 % 12;
        d[16..20].copy_from_slice(&((x >> 32) as u32 % 8).to_le_bytes());
        let _ = b.handle_datagram(ms(u64::from(i)), &d);
        drain(&mut b, ms(u64::from(i)));
        events(&mut b);
        b.handle_timeout(ms(u64::from(i)));
    }
}

#[test]
fn socket_routes_by_id() {
    let mut socket = Socket::new();
    socket.insert(Stream::new(2, 1, T0, Config::default()));
    socket.insert(Stream::new(5, 6, T0, Config::default()));
    assert_eq!(
        socket.handle_datagram(T0, &data(5, 0, Flags::DATA, b"five")),
        Incoming::Stream(5)
    );
    assert_eq!(
        socket.handle_datagram(T0, &data(7, 0, Flags::DATA, b"seven")),
        Incoming::UnknownStream(7)
    );
    assert_eq!(socket.handle_datagram(T0, &[0x13, 1, 2]), Incoming::NotUdx);
    let mut bad = data(2, 0, Flags::DATA, b"");
    bad[3] = 9;
    assert!(matches!(
        socket.handle_datagram(T0, &bad),
        Incoming::Malformed(_)
    ));
    assert_eq!(
        socket.poll_event(),
        Some((5, Event::Data(b"five".to_vec())))
    );
    let (id, ack) = socket.poll_transmit(T0).unwrap();
    assert_eq!(id, 5);
    assert_eq!(decode(&ack).unwrap().header.id, 6);
    assert_eq!(socket.poll_transmit(T0), None);
    socket.stream_mut(2).unwrap().destroy();
    assert_eq!(socket.poll_timeout(), Some(T0));
    assert!(socket.poll_transmit(T0).is_some());
    assert_eq!(socket.remove_finished(), vec![2]);
    assert_eq!(socket.ids().collect::<Vec<_>>(), vec![5]);
}

#[test]
fn tail_loss_probe_then_rto_backoff() {
    let mut a = Stream::new(1, 2, T0, Config::default());
    a.write(b"lonely").unwrap();
    assert_eq!(drain(&mut a, T0).len(), 1);
    // No RTT yet: the probe fires at the initial RTO (1 s) and resends the packet.
    let t1 = a.poll_timeout().unwrap();
    assert_eq!(t1, Duration::from_secs(1));
    a.handle_timeout(t1);
    let probe = drain(&mut a, t1);
    assert_eq!(probe.len(), 1);
    assert_eq!(decode(&probe[0]).unwrap().header.seq, 0);
    // Then RTOs after 1 s, 2 s, 4 s, ... (at most 30 s) with the packet resent at each of the
    // six the stream survives; the seventh fails it, as in libudx.
    let mut now = t1;
    let mut gaps = Vec::new();
    let mut resends = 0;
    while let Some(t) = a.poll_timeout() {
        gaps.push(t - now);
        now = t;
        a.handle_timeout(now);
        resends += drain(&mut a, now).len();
    }
    assert_eq!(gaps, [1, 2, 4, 8, 16, 30, 30].map(Duration::from_secs));
    assert_eq!(resends, 6);
    assert_eq!(events(&mut a), vec![Event::Error(StreamError::Timeout)]);
}

#[test]
fn the_peers_first_packet_resends_what_it_did_not_acknowledge() {
    // `udx cat` with stdin at EOF half-closes at once, before its peer's socket exists: the
    // END is dropped. When the peer's first DATA arrives (acknowledging nothing of ours), the
    // END goes again at once instead of after the initial RTO (1 s).
    let mut b = Stream::new(2, 1, T0, Config::default());
    b.end().unwrap();
    assert_eq!(drain(&mut b, T0).len(), 1);
    assert_eq!(b.poll_timeout(), Some(Duration::from_secs(1)));
    b.handle_datagram(ms(300), &data(2, 0, Flags::DATA, b"hello"))
        .unwrap();
    let out = drain(&mut b, ms(300));
    let end = out
        .iter()
        .map(|d| decode(d).unwrap().header)
        .find(|h| h.flags.contains(Flags::END))
        .expect("the END is resent with the ack");
    assert_eq!((end.seq, end.ack), (0, 1));
    // Only the first packet does this: the next ones wait for the usual timers.
    b.handle_datagram(ms(301), &data(2, 1, Flags::DATA, b"again"))
        .unwrap();
    let out = drain(&mut b, ms(301));
    assert!(out
        .iter()
        .all(|d| !decode(d).unwrap().header.flags.contains(Flags::END)));
}

fn ack_packet(id: u32, ack: u32, sacks: &[SackRange]) -> Vec<u8> {
    let h = Header {
        flags: if sacks.is_empty() {
            Flags::ACK
        } else {
            Flags::SACK
        },
        data_offset: 0,
        id,
        rwnd: DEFAULT_RECV_WINDOW,
        seq: 0,
        ack,
    };
    encode(&h, sacks, &[])
}

/// MTU probes are full DATA packets padded (`data_offset` zero bytes) to the probe size: the
/// first acknowledgement starts the search with a probe of the base size, each acknowledged
/// probe raises the MTU by 32 bytes, and a lost probe is resent without its padding.
#[test]
fn mtu_probes_are_padded_data_packets() {
    let mut a = Stream::new(1, 2, T0, Config::default());
    assert_eq!((a.mtu(), a.mtu_state()), (1200, MtuState::Base));
    a.write(&vec![7u8; 1 << 20]).unwrap();
    let first = drain(&mut a, T0);
    assert!(first.iter().all(|d| d[3] == 0 && d.len() == 20 + 1152));
    // Each ack frees window; the probe is the first new packet after an acknowledgement.
    let mut now = T0;
    let mut step = |a: &mut Stream, ack: u32, sacks: &[SackRange]| {
        now += ms(20);
        a.handle_datagram(now, &ack_packet(1, ack, sacks)).unwrap();
        (now, drain(a, now))
    };
    let (_, out) = step(&mut a, 1, &[]);
    assert_eq!(a.mtu_state(), MtuState::Search);
    // The base-size probe of a full packet needs no padding.
    assert_eq!((out[0][3], out[0].len()), (0, 1172));
    let probe_1200 = decode(&out[0]).unwrap().header.seq;
    let (_, out) = step(&mut a, probe_1200 + 1, &[]);
    assert_eq!(a.mtu(), 1200);
    let p = decode(&out[0]).unwrap();
    assert_eq!((p.header.data_offset, out[0].len()), (32, 1232 - 28));
    assert_eq!(p.payload, &[7u8; 1152][..]);
    assert!(out[0][20..52].iter().all(|&b| b == 0));
    let (_, out) = step(&mut a, p.header.seq + 1, &[]);
    assert_eq!((a.mtu(), a.max_payload()), (1232, 1184));
    // The 1264-byte probe is lost: the packets after it are selectively acknowledged and RACK
    // declares it lost after the reordering window.
    let lost = decode(&out[0]).unwrap().header;
    assert_eq!((lost.data_offset, out[0].len()), (32, 1264 - 28));
    let sack = SackRange {
        start: lost.seq + 1,
        end: lost.seq + out.len() as u32,
    };
    let (now, _) = step(&mut a, lost.seq, &[sack]);
    let at = a.poll_timeout().unwrap().max(now + ms(30));
    a.handle_timeout(at);
    let resent = drain(&mut a, at);
    let r = resent
        .iter()
        .map(|d| decode(d).unwrap())
        .find(|p| p.header.seq == lost.seq)
        .expect("the lost probe is retransmitted");
    assert_eq!((r.header.data_offset, r.payload.len()), (0, 1184));
    // One failure of three: the search goes on at the same size.
    assert_eq!((a.mtu(), a.mtu_state()), (1232, MtuState::Search));
}

/// `mtu_max` at the base switches the search off.
#[test]
fn mtu_search_can_be_disabled() {
    let config = Config {
        mtu_max: 1200,
        ..Config::default()
    };
    let mut a = Stream::new(1, 2, T0, config);
    a.write(&vec![1u8; 100_000]).unwrap();
    drain(&mut a, T0);
    a.handle_datagram(ms(10), &ack_packet(1, 5, &[])).unwrap();
    assert!(drain(&mut a, ms(10)).iter().all(|d| d[3] == 0));
    assert_eq!(a.mtu_state(), MtuState::SearchComplete);
}

/// `change_remote` moves everything sent afterwards, retransmissions included, to the new
/// remote id with seq continuity, and completes once the packets sent before it are acked.
#[test]
fn change_remote_waits_for_the_old_remote_acks() {
    let mut a = Stream::new(1, 100, T0, Config::default());
    a.write(&[5u8; 3000]).unwrap();
    let before = drain(&mut a, T0);
    assert_eq!(before.len(), 3);
    assert!(before.iter().all(|d| decode(d).unwrap().header.id == 100));
    assert_eq!(a.change_remote(2), Ok(false));
    assert!(a.is_remote_changing());
    assert_eq!(a.change_remote(3), Err(UsageError::RemoteChanging));
    a.write(b"after").unwrap();
    let after = drain(&mut a, T0);
    let h = decode(&after[0]).unwrap().header;
    assert_eq!((h.id, h.seq), (2, 3));
    // The old remote acknowledged seq 0 only; the rest is lost on the old path and is resent,
    // same seqs, to the new id.
    a.handle_datagram(ms(10), &ack_packet(1, 1, &[])).unwrap();
    assert!(a.is_remote_changing() && !a.poll_remote_changed());
    let mut resent = Vec::new();
    let mut now = ms(10);
    while resent.len() < 3 {
        now = a.poll_timeout().unwrap().max(now);
        a.handle_timeout(now);
        resent.extend(drain(&mut a, now).iter().map(|d| decode(d).unwrap().header));
    }
    assert!(resent.iter().all(|h| h.id == 2 && (1..4).contains(&h.seq)));
    // Acked up to (not including) the first packet sent after the change: complete.
    a.handle_datagram(now, &ack_packet(1, 3, &[])).unwrap();
    assert!(!a.is_remote_changing());
    assert!(a.poll_remote_changed());
    assert!(!a.poll_remote_changed());
    // With nothing in flight a change completes at once.
    a.handle_datagram(now, &ack_packet(1, 4, &[])).unwrap();
    assert_eq!(a.change_remote(7), Ok(true));
    assert!(a.poll_remote_changed());
    a.destroy();
    drain(&mut a, now);
    assert_eq!(a.change_remote(8), Err(UsageError::Closed));
}

/// A socket follows a remote change with the destination address, and hands datagrams for
/// ids it does not hold to the owner's firewall, which may connect a stream and re-feed.
#[test]
fn socket_addresses_and_firewall() {
    let addr = |port| core::net::SocketAddr::from(([10, 0, 0, 1], port));
    let mut socket = Socket::new();
    socket.connect(Stream::new(1, 100, T0, Config::default()), addr(1000));
    assert_eq!(socket.remote_addr(1), Some(addr(1000)));
    socket.stream_mut(1).unwrap().write(b"hi").unwrap();
    let t = socket.poll_transmit_to(T0).unwrap();
    assert_eq!((t.id, t.to), (1, Some(addr(1000))));
    assert_eq!(decode(&t.bytes).unwrap().header.id, 100);
    assert_eq!(socket.change_remote(1, 200, addr(2000)), Ok(false));
    assert_eq!(socket.remote_addr(1), Some(addr(2000)));
    assert_eq!(socket.poll_remote_changed(), None);
    socket.stream_mut(1).unwrap().write(b"there").unwrap();
    let t = socket.poll_transmit_to(T0).unwrap();
    assert_eq!(t.to, Some(addr(2000)));
    assert_eq!(decode(&t.bytes).unwrap().header.id, 200);
    // Acks come back over either path.
    assert_eq!(
        socket.handle_datagram_from(ms(5), addr(1000), &ack_packet(1, 1, &[])),
        Incoming::Stream(1)
    );
    assert_eq!(socket.poll_remote_changed(), Some(1));
    assert_eq!(socket.poll_remote_changed(), None);
    assert_eq!(socket.change_remote(9, 1, addr(1)), Err(UsageError::Closed));
    // First packet for id 2 from a peer: the firewall decides.
    let first = data(2, 0, Flags::DATA, b"knock");
    let from = addr(3000);
    assert_eq!(
        socket.handle_datagram_from(ms(6), from, &first),
        Incoming::Firewall { id: 2, from }
    );
    assert!(socket.stream(2).is_none());
    socket.connect(Stream::new(2, 7, ms(6), Config::default()), from);
    assert_eq!(
        socket.handle_datagram_from(ms(6), from, &first),
        Incoming::Stream(2)
    );
    assert_eq!(
        socket.poll_event(),
        Some((2, Event::Data(b"knock".to_vec())))
    );
    let mut acks = Vec::new();
    while let Some(t) = socket.poll_transmit_to(ms(6)) {
        acks.push(t);
    }
    assert!(acks.iter().any(|t| t.id == 2 && t.to == Some(from)));
    // Not UDX is still the caller's.
    assert_eq!(
        socket.handle_datagram_from(ms(6), from, b"dht"),
        Incoming::NotUdx
    );
    socket.remove(2);
    assert_eq!(socket.remote_addr(2), None);
}

/// Nothing is delivered past the peer's END, even packets buffered beyond it before it arrived
/// (found by the `udx_stream` fuzz harness).
#[test]
fn nothing_is_delivered_after_end() {
    let mut b = Stream::new(2, 1, T0, Config::default());
    b.handle_datagram(T0, &data(2, 1, Flags::DATA, b"beyond the end"))
        .unwrap();
    b.handle_datagram(T0, &data(2, 0, Flags::END, &[])).unwrap();
    assert_eq!(events(&mut b), vec![Event::Ended]);
    assert_eq!(b.recv_buffered(), 0);
}

/// A relay pair forwards each way with the receiver id rewritten; a DESTROY is forwarded too,
/// resets the stream it came through and closes its partner without a DESTROY of its own.
#[test]
fn relay_pair_forwards_and_tears_down() {
    let addr = |port| core::net::SocketAddr::from(([10, 0, 0, 3], port));
    let (a, b) = (addr(1), addr(2));
    let mut relay = Socket::new();
    relay.connect(Stream::new(100, 1, T0, Config::default()), a);
    relay.connect(Stream::new(101, 2, T0, Config::default()), b);
    relay.relay_to(100, 101).unwrap();
    relay.relay_to(101, 100).unwrap();
    assert_eq!(relay.relay_to(100, 101), Err(UsageError::AlreadyRelaying));
    assert_eq!(relay.relay_to(100, 7), Err(UsageError::Closed));
    let hello = data(100, 0, Flags::DATA, b"hello b");
    assert_eq!(
        relay.handle_datagram_from(T0, a, &hello),
        Incoming::Relayed { id: 100, to: 101 }
    );
    assert_eq!(relay.poll_timeout(), Some(T0));
    let t = relay.poll_transmit_to(T0).unwrap();
    assert_eq!((t.id, t.to), (101, Some(b)));
    let mut want = hello.clone();
    want[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(t.bytes, want);
    // The relaying streams themselves neither saw nor answer it.
    assert_eq!(relay.poll_transmit_to(T0), None);
    assert_eq!(relay.poll_event(), None);
    assert_eq!(relay.poll_timeout(), None);
    // B destroys: forwarded to A as id 1, and the relay pair goes away.
    let destroy = data(101, 5, Flags::DESTROY, &[]);
    assert_eq!(
        relay.handle_datagram_from(ms(1), b, &destroy),
        Incoming::Relayed { id: 101, to: 100 }
    );
    let t = relay.poll_transmit_to(ms(1)).unwrap();
    assert_eq!((t.to, decode(&t.bytes).unwrap().header.id), (Some(a), 1));
    assert_eq!(decode(&t.bytes).unwrap().header.flags, Flags::DESTROY);
    assert_eq!(relay.poll_transmit_to(ms(1)), None, "no DESTROY of its own");
    let mut seen = Vec::new();
    while let Some(e) = relay.poll_event() {
        seen.push(e);
    }
    seen.sort_by_key(|e| e.0);
    assert_eq!(
        seen,
        vec![
            (100, Event::Closed),
            (101, Event::Error(StreamError::Reset))
        ]
    );
    assert_eq!(relay.remove_finished(), vec![100, 101]);
    assert_eq!(
        relay.handle_datagram_from(ms(2), a, &hello),
        Incoming::Firewall { id: 100, from: a }
    );
}

/// Destroying a stream that already closed cleanly ends its lingering without a DESTROY or a
/// second `Closed` (found by the `udx_stream` fuzz harness).
#[test]
fn destroy_after_close_only_stops_lingering() {
    let mut a = Stream::new(1, 2, T0, Config::default());
    let mut b = Stream::new(2, 1, T0, Config::default());
    a.end().unwrap();
    b.end().unwrap();
    for _ in 0..3 {
        for d in drain(&mut a, T0) {
            b.handle_datagram(T0, &d).unwrap();
        }
        for d in drain(&mut b, T0) {
            a.handle_datagram(T0, &d).unwrap();
        }
    }
    assert_eq!(events(&mut a), vec![Event::Ended, Event::Closed]);
    assert!(a.is_closed() && !a.is_finished());
    a.destroy();
    assert!(drain(&mut a, T0).is_empty());
    assert!(events(&mut a).is_empty());
    assert!(a.is_finished());
}

/// A receiver holds at most two windows out of order, so a sender whose first packet never
/// arrives keeps sending new data while the peer acknowledges the rest selectively (those
/// bytes are out of its pipe, beyond one window), but no more than two windows of it.
#[test]
fn outstanding_data_stays_within_twice_the_window() {
    const RWND: u32 = 64 * 1024;
    let config = Config {
        mtu_max: 1200,
        ..Config::default()
    };
    let mut s = Stream::new(1, 2, T0, config);
    s.write(&vec![7u8; 1 << 20]).unwrap();
    let mut sent = std::collections::BTreeMap::new();
    for t in 1..400 {
        for d in drain(&mut s, ms(t)) {
            let p = decode(&d).unwrap();
            if p.header.flags.contains(Flags::DATA) {
                sent.insert(p.header.seq, p.payload.len());
            }
        }
        let top = *sent.keys().next_back().unwrap();
        let h = Header {
            flags: Flags::SACK,
            data_offset: 0,
            id: 1,
            rwnd: RWND,
            seq: 0,
            ack: 0,
        };
        let sacks = [SackRange {
            start: 1,
            end: top + 1,
        }];
        s.handle_datagram(ms(t), &encode(&h, &sacks, &[])).unwrap();
    }
    let outstanding: usize = sent.values().sum();
    assert!(
        outstanding > RWND as usize && outstanding <= 2 * RWND as usize,
        "{outstanding} bytes outstanding with a {RWND}-byte window"
    );
}
