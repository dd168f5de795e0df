//! Drives the UDX engines with untrusted input. Shared by the `udx_packet` / `udx_stream` fuzz
//! targets (fuzz/, which include this file by path) and the `udx_props` property tests.
//!
//! - [`packet_round_trip`]: decoding never panics, and what decodes encodes to bytes that decode
//!   to the same packet.
//! - [`hostile_peer`]: one stream fed datagrams the input crafts (plausible headers near the
//!   live seq/ack numbers, SACK blocks, padding, raw bytes), time jumps and API calls. Nothing
//!   panics, its own datagrams decode and fit the MTU, nothing follows `Closed`/`Error`, and the
//!   receive side stays within its bound (window, out-of-order limit) however the peer behaves.
//! - [`honest_pair`]: two streams whose datagrams the input delivers, drops, duplicates, reorders
//!   and delays. Each side only ever receives a prefix of what the other wrote; once the input
//!   is spent the network turns perfect and both deliver everything and close, unless a side
//!   times out because the lossy phase used up its retransmission budget.
//! - [`hostile_socket`]: a socket with a connected stream and a relay pair fed datagrams for
//!   known and unknown ids from several addresses, with firewall decisions, remote changes,
//!   writes and removals. Nothing panics, every datagram it emits goes to a known address and
//!   looks like UDX, and a re-fed datagram after accepting a firewall request reaches the new stream.

use std::net::SocketAddr;
use std::time::Duration;

use hyperpunch_core::udx::packet::{self, Flags, Header, SackRange};
use hyperpunch_core::udx::{Config, Event, Incoming, Socket, Stream, StreamError};

const RECV_WINDOW: u32 = 64 * 1024;
/// Largest datagram a stream may emit: the 1500-byte MTU minus IP and UDP headers.
const MAX_DATAGRAM: usize = 1500 - 28;

/// Reads the input front to back; zeros once it is spent.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(seed: u32) -> Config {
    Config {
        recv_window: RECV_WINDOW,
        max_timeouts: 4,
        seed,
        ..Config::default()
    }
}

/// Bytes of a written stream: position-dependent so reordering or duplication shows.
fn pattern(tag: u8, from: usize, len: usize) -> Vec<u8> {
    (from..from + len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ tag)
        .collect()
}

/// Decodes `bytes`; if that works, re-encodes and checks the packet survives the round trip.
pub fn packet_round_trip(bytes: &[u8]) {
    let Ok(p) = packet::decode(bytes) else {
        return;
    };
    assert!(p.sacks.len() <= packet::MAX_SACKS);
    let again = packet::encode(&p.header, &p.sacks, p.payload);
    assert_eq!(packet::decode(&again).as_ref(), Ok(&p), "{bytes:02x?}");
    assert_eq!(packet::stream_id(bytes), Some(p.header.id));
}

/// Lifecycle checks on one stream's events.
#[derive(Default)]
struct Watch {
    closed: bool,
    failed: Option<StreamError>,
    ended: bool,
    received: Vec<u8>,
}

impl Watch {
    fn drain(&mut self, s: &mut Stream) {
        while let Some(e) = s.poll_event() {
            assert!(
                self.failed.is_none(),
                "{e:?} after Error({:?})",
                self.failed
            );
            match e {
                Event::Data(d) => {
                    assert!(!self.ended && !self.closed, "data after Ended/Closed");
                    assert!(!d.is_empty());
                    self.received.extend_from_slice(&d);
                }
                Event::Message(_) => {}
                Event::Ended => {
                    assert!(!self.ended, "Ended twice");
                    self.ended = true;
                }
                Event::Closed => {
                    assert!(!self.closed, "Closed twice");
                    self.closed = true;
                }
                Event::Error(e) => {
                    assert!(!self.closed, "Error after Closed");
                    self.failed = Some(e);
                }
            }
        }
    }
}

/// Checks every datagram a stream emits and returns them.
fn transmit(s: &mut Stream, now: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(d) = s.poll_transmit(now) {
        let p = packet::decode(&d).expect("the engine's own datagrams decode");
        assert_eq!(p.header.id, s.remote_id());
        assert!(d.len() <= MAX_DATAGRAM, "{}-byte datagram", d.len());
        out.push(d);
        assert!(out.len() < 100_000, "endless transmission");
    }
    out
}

/// The receive side's memory bound: the window (plus one packet) in unread or out-of-order data.
fn check_bounded(s: &Stream) {
    assert!(
        s.recv_buffered() <= 3 * RECV_WINDOW as usize + MAX_DATAGRAM,
        "{} bytes buffered",
        s.recv_buffered()
    );
}

/// One stream (local id 1, remote id 2) against a peer the input controls.
pub fn hostile_peer(data: &[u8]) {
    let mut input = Input(data);
    let mut s = Stream::new(1, 2, Duration::ZERO, config(u32::from(input.u8())));
    let mut watch = Watch::default();
    let mut now = Duration::ZERO;
    // The numbers a plausible peer would use: its seq, and the highest seq we sent.
    let mut peer_seq = 0u32;
    let mut our_seq = 0u32;
    let mut written = 0usize;
    let mut steps = 0;
    while !input.is_empty() && steps < 4096 {
        steps += 1;
        match input.u8() % 10 {
            0..=3 => {
                let flags = Flags(input.u8() & 0x3f);
                let n_sacks = usize::from(input.u8() % 4);
                let sacks: Vec<SackRange> = (0..n_sacks)
                    .map(|_| {
                        let start = our_seq.wrapping_sub(u32::from(input.u8() % 32));
                        SackRange {
                            start,
                            end: start.wrapping_add(u32::from(input.u8() % 8)),
                        }
                    })
                    .collect();
                let sack_flag = if sacks.is_empty() {
                    Flags(0)
                } else {
                    Flags::SACK
                };
                let header = Header {
                    flags: flags | sack_flag,
                    data_offset: input.u8() % 8,
                    id: if input.u8() == 0xff { input.u32() } else { 1 },
                    rwnd: match input.u8() % 4 {
                        0 => 0,
                        1 => u32::from(input.u16()),
                        _ => 4 << 20,
                    },
                    seq: peer_seq
                        .wrapping_add(u32::from(input.u8() % 16))
                        .wrapping_sub(4),
                    ack: our_seq.wrapping_sub(u32::from(input.u8() % 16)),
                };
                let len = usize::from(input.u16() % 1500);
                let payload = pattern(0x77, 0, len);
                if header.flags.is_sequenced() && input.u8() % 2 == 0 {
                    peer_seq = header.seq.wrapping_add(1);
                }
                let _ = s.handle_datagram(now, &packet::encode(&header, &sacks, &payload));
            }
            4 => {
                let len = usize::from(input.u8());
                let mut raw = input.take(len).to_vec();
                if raw.len() >= 2 && raw[0] % 2 == 0 {
                    raw[0] = packet::MAGIC;
                    raw[1] = packet::VERSION;
                }
                let _ = s.handle_datagram(now, &raw);
            }
            5 => {
                now += ms(u64::from(input.u16()));
                s.handle_timeout(now);
            }
            6 => {
                if let Some(t) = s.poll_timeout() {
                    now = now.max(t);
                }
                s.handle_timeout(now);
            }
            7 => {
                let len = usize::from(input.u16() % 20_000);
                if s.write(&pattern(1, written, len)).is_ok() {
                    written += len;
                }
            }
            8 => match input.u8() % 6 {
                0 => {
                    let _ = s.end();
                }
                1 => {
                    let len = usize::from(input.u16() % 1400);
                    let _ = s.send_message(&pattern(2, 0, len));
                }
                2 => s.destroy(),
                3 => {
                    let _ = s.change_remote(input.u32());
                }
                4 => s.set_keepalive(Some(ms(u64::from(input.u16()) + 1))),
                _ => s.set_keepalive(None),
            },
            _ => {}
        }
        for d in transmit(&mut s, now) {
            let h = packet::decode(&d).unwrap().header;
            if h.flags.is_sequenced() && (h.seq.wrapping_sub(our_seq) as i32) >= 0 {
                our_seq = h.seq.wrapping_add(1);
            }
        }
        watch.drain(&mut s);
        check_bounded(&s);
        // Every unacknowledged packet holds written bytes, or is the END.
        assert!(s.unacked_packets() <= written + 1);
        if s.is_finished() {
            assert!(s.poll_timeout().is_none() && transmit(&mut s, now).is_empty());
        }
    }
}

/// Two honest streams over a network the input controls, then a perfect network.
pub fn honest_pair(data: &[u8]) {
    let mut input = Input(data);
    let seed = u32::from(input.u8());
    let mut eps = [
        Stream::new(1, 2, Duration::ZERO, config(seed)),
        Stream::new(2, 1, Duration::ZERO, config(seed ^ 0xff)),
    ];
    let sizes = [
        usize::from(input.u16()) * 2 % 150_000,
        usize::from(input.u16()) % 40_000,
    ];
    let sent = [pattern(1, 0, sizes[0]), pattern(2, 0, sizes[1])];
    for side in 0..2 {
        eps[side].write(&sent[side]).unwrap();
        eps[side].end().unwrap();
    }
    let mut watches = [Watch::default(), Watch::default()];
    let mut now = Duration::ZERO;
    // In flight: (destination side, datagram).
    let mut wire: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut steps = 0;
    let step = |eps: &mut [Stream; 2],
                watches: &mut [Watch; 2],
                wire: &mut Vec<(usize, Vec<u8>)>,
                now: Duration| {
        for side in 0..2 {
            for d in transmit(&mut eps[side], now) {
                wire.push((1 - side, d));
            }
            watches[side].drain(&mut eps[side]);
            check_bounded(&eps[side]);
            let got = &watches[side].received;
            assert!(
                sent[1 - side].starts_with(got),
                "side {side} received bytes that were not written there"
            );
            assert_ne!(watches[side].failed, Some(StreamError::Reset));
        }
    };
    while !input.is_empty() && steps < 20_000 {
        steps += 1;
        step(&mut eps, &mut watches, &mut wire, now);
        let op = input.u8();
        match op % 8 {
            0..=3 if !wire.is_empty() => {
                // Deliver one, chosen by the input (reordering).
                let i = usize::from(input.u8()) % wire.len().min(8);
                let (to, d) = wire.remove(i);
                eps[to].handle_datagram(now, &d).unwrap();
            }
            4 if !wire.is_empty() => {
                let i = usize::from(input.u8()) % wire.len();
                wire.remove(i);
            }
            5 if !wire.is_empty() => {
                let i = usize::from(input.u8()) % wire.len();
                let copy = wire[i].clone();
                wire.push(copy);
            }
            6 => {
                now += ms(u64::from(input.u8()) * 4);
                for ep in eps.iter_mut() {
                    ep.handle_timeout(now);
                }
            }
            _ => {
                let next = eps.iter().filter_map(|e| e.poll_timeout()).min();
                now = now.max(next.unwrap_or(now));
                for ep in eps.iter_mut() {
                    ep.handle_timeout(now);
                }
            }
        }
    }
    // A perfect network: deliver everything in order, run the timers.
    for _ in 0..1_000_000 {
        step(&mut eps, &mut watches, &mut wire, now);
        if watches.iter().all(|w| w.closed || w.failed.is_some()) {
            break;
        }
        if wire.is_empty() {
            let Some(next) = eps.iter().filter_map(|e| e.poll_timeout()).min() else {
                break;
            };
            now = now.max(next);
            for ep in eps.iter_mut() {
                ep.handle_timeout(now);
            }
        } else {
            for (to, d) in std::mem::take(&mut wire) {
                eps[to].handle_datagram(now, &d).unwrap();
            }
            now += ms(1);
        }
    }
    // A side whose retransmission budget the lossy phase used up may still time out (and its
    // peer, without keepalive, then waits forever); otherwise both must finish intact.
    if watches.iter().all(|w| w.failed.is_none()) {
        for side in 0..2 {
            let w = &watches[side];
            assert_eq!(w.failed, None, "side {side} failed on a perfect network");
            assert!(w.closed && w.ended, "side {side} did not finish");
            assert!(w.received == sent[1 - side], "side {side}: bytes differ");
        }
    }
}

/// A socket holding a connected stream (1 → 2) and a relay pair (100 ⇄ 101) against datagrams
/// and calls the input picks.
pub fn hostile_socket(data: &[u8]) {
    let mut input = Input(data);
    let addr = |n: u8| SocketAddr::from(([10, 0, 0, n % 4], 4000));
    let mut socket = Socket::new();
    socket.connect(Stream::new(1, 2, Duration::ZERO, config(1)), addr(1));
    socket.connect(Stream::new(100, 5, Duration::ZERO, config(2)), addr(2));
    socket.connect(Stream::new(101, 6, Duration::ZERO, config(3)), addr(3));
    socket.relay_to(100, 101).unwrap();
    socket.relay_to(101, 100).unwrap();
    let mut now = Duration::ZERO;
    let mut steps = 0;
    while !input.is_empty() && steps < 2048 {
        steps += 1;
        let ids = [1, 100, 101, 7, 8];
        match input.u8() % 8 {
            0..=4 => {
                let id = match input.u8() % 6 {
                    5 => input.u32(),
                    k => ids[usize::from(k)],
                };
                let header = Header {
                    flags: Flags(input.u8() & 0x3f),
                    data_offset: input.u8() % 4,
                    id,
                    rwnd: 4 << 20,
                    seq: u32::from(input.u8() % 16),
                    ack: u32::from(input.u8() % 16),
                };
                let sacks = [SackRange {
                    start: u32::from(input.u8() % 16),
                    end: u32::from(input.u8() % 16),
                }];
                let payload = pattern(3, 0, usize::from(input.u16() % 1300));
                let bytes = packet::encode(&header, &sacks, &payload);
                let from = addr(input.u8());
                if let Incoming::Firewall {
                    id: fid,
                    from: ffrom,
                } = socket.handle_datagram_from(now, from, &bytes)
                {
                    assert_eq!((fid, ffrom), (id, from));
                    assert!(socket.stream(id).is_none());
                    if input.u8() % 2 == 0 {
                        let stream = Stream::new(id, input.u32(), now, config(4));
                        socket.connect(stream, from);
                        let again = socket.handle_datagram_from(now, from, &bytes);
                        assert!(
                            !matches!(again, Incoming::Firewall { .. }),
                            "{again:?} after accepting"
                        );
                    }
                }
            }
            5 => {
                now += ms(u64::from(input.u16()));
                socket.handle_timeout(now);
            }
            6 => {
                let id = ids[usize::from(input.u8() % 5)];
                match input.u8() % 5 {
                    0 => {
                        let _ = socket.change_remote(id, input.u32(), addr(input.u8()));
                    }
                    1 => {
                        let to = ids[usize::from(input.u8() % 5)];
                        let _ = socket.relay_to(id, to);
                    }
                    2 => {
                        socket.remove(id);
                    }
                    3 => {
                        if let Some(s) = socket.stream_mut(id) {
                            let _ = s.write(&pattern(4, 0, usize::from(input.u16() % 8000)));
                        }
                    }
                    _ => {
                        if let Some(s) = socket.stream_mut(id) {
                            s.destroy();
                        }
                    }
                }
            }
            _ => {
                if let Some(t) = socket.poll_timeout() {
                    now = now.max(t);
                }
                socket.handle_timeout(now);
            }
        }
        let mut sent = 0;
        while let Some(t) = socket.poll_transmit_to(now) {
            assert!(
                t.to.is_some(),
                "every stream here was connected with an address"
            );
            // Relayed datagrams are forwarded as they came (a blind relay does not parse them).
            assert!(packet::is_udx(&t.bytes));
            sent += 1;
            assert!(sent < 100_000, "endless transmission");
        }
        while socket.poll_event().is_some() {}
        while socket.poll_remote_changed().is_some() {}
        socket.remove_finished();
        for id in socket.ids().collect::<Vec<_>>() {
            check_bounded(socket.stream(id).unwrap());
        }
    }
}
