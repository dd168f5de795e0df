//! Fuzz `secretstream::SecretStream` with hostile wire bytes: arbitrary chunks go to
//! `handle_input` of a fresh responder, a fresh initiator (after its first handshake message), or
//! one side of an honestly connected pair (after the handshake, optionally after the honest header
//! frame too, so the message-decrypt path is reached); on a connected side the chunks are also
//! opened with `recv_datagram`. Nothing may panic, a closed stream must stay closed and quiet, and
//! the events must be well formed.
//!
//! Input: `[ctl] ([len] [len bytes])*` — `ctl` bits 0-1 the scenario, bit 2 the side of a connected
//! pair that is fed, bit 3 a small `max_frame_len`, bit 4 keep-alive/timeout options; a chunk whose
//! length byte is 0xff is replaced by a `handle_eof`, 0xfe by a `handle_timeout`.
#![no_main]

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::secretstream::cipher::HEADERBYTES;
use hyperpunch_core::secretstream::{Entropy, Event, Options, SecretStream};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn keys() -> &'static (KeyPair, KeyPair) {
    static K: OnceLock<(KeyPair, KeyPair)> = OnceLock::new();
    K.get_or_init(|| (KeyPair::from_seed(&[0x11; 32]), KeyPair::from_seed(&[0x22; 32])))
}

fn entropy(seed: u8) -> Entropy {
    Entropy {
        ephemeral_seed: [seed; 32],
        header: [seed ^ 0x5a; HEADERBYTES],
        send_counter: [seed; 8],
    }
}

fn drain(s: &mut SecretStream) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

/// Drains events, checking that nothing follows `Closed` and that it comes only once.
fn events(s: &mut SecretStream, closed_seen: &mut bool) {
    while let Some(e) = s.poll_event() {
        assert!(!*closed_seen, "event {e:?} after Closed");
        if matches!(e, Event::Closed(_)) {
            *closed_seen = true;
            assert!(s.is_closed());
        }
    }
}

/// An honestly connected pair: (initiator, responder, the initiator's frames still to deliver to
/// the responder, the responder's frames still to deliver to the initiator) — the header frames.
fn connected(options: &Options) -> (SecretStream, SecretStream, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (ik, rk) = keys();
    let mut i = SecretStream::new_initiator(ik.clone(), entropy(1), options.clone(), 0).unwrap();
    let mut r = SecretStream::new_responder(rk.clone(), entropy(2), options.clone(), 0).unwrap();
    for m in drain(&mut i) {
        r.handle_input(0, &m);
    }
    // Responder: message 2. Initiator: message 3 + its header frame.
    for m in drain(&mut r) {
        i.handle_input(0, &m);
    }
    assert!(i.is_connected());
    let mut from_i = drain(&mut i);
    // The first frame is handshake message 3, the rest (header) is for after it.
    let msg3 = from_i.remove(0);
    r.handle_input(0, &msg3);
    assert!(r.is_connected());
    let from_r = drain(&mut r);
    (i, r, from_i, from_r)
}

fn chunks(mut b: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&len, rest) = b.split_first()?;
        let n = usize::from(len).min(rest.len());
        let n = if len >= 0xfe { 0 } else { n };
        let (c, r) = rest.split_at(n);
        b = r;
        Some((len, c))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let mut options = Options::default();
    if ctl & 8 != 0 {
        options.max_frame_len = 200;
    }
    if ctl & 16 != 0 {
        options.keep_alive = 5;
        options.timeout = 50;
    }
    let (ik, rk) = keys();
    let (mut s, datagrams) = match ctl & 3 {
        0 => (SecretStream::new_responder(rk.clone(), entropy(2), options, 0).unwrap(), false),
        1 => {
            let mut i = SecretStream::new_initiator(ik.clone(), entropy(1), options, 0).unwrap();
            drain(&mut i);
            (i, false)
        }
        mode => {
            let (i, r, from_i, from_r) = connected(&options);
            let (mut s, header) = if ctl & 4 == 0 { (r, from_i) } else { (i, from_r) };
            if mode == 3 {
                // The honest header frame first: then the chunks are encrypted messages.
                for f in header {
                    s.handle_input(0, &f);
                }
                assert!(s.is_connected());
            }
            drain(&mut s);
            (s, true)
        }
    };
    let mut closed_seen = false;
    let mut now = 0u64;
    for (len, chunk) in chunks(rest) {
        now += 1;
        let was_closed = s.is_closed();
        match len {
            0xff => s.handle_eof(now),
            0xfe => {
                now += 10;
                s.handle_timeout(now)
            }
            _ => s.handle_input(now, chunk),
        }
        if was_closed {
            assert!(s.is_closed());
        }
        if datagrams {
            let opened = s.recv_datagram(chunk);
            if s.is_closed() {
                assert!(opened.is_none());
            }
        }
        events(&mut s, &mut closed_seen);
        let out = drain(&mut s);
        if s.is_closed() {
            assert!(out.is_empty(), "closed stream transmits");
            assert!(s.poll_timeout().is_none());
        }
    }
    if !s.is_closed() {
        // A stream still alive after the hostile input can still be written to and ended.
        if s.is_connected() {
            let _ = s.write(b"still alive");
            let _ = s.send_datagram(b"dgram");
        }
        s.end();
        drain(&mut s);
        s.handle_eof(now + 1);
        events(&mut s, &mut closed_seen);
    }
});
