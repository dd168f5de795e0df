//! Fuzz `protomux`: arbitrary frames go to `Frame::decode` (a decoded frame must re-encode to bytes
//! that decode to the same frame) and to `Protomux::handle_frame` of a mux that already has an
//! opened channel (`chat`, three message types, opened with an honest peer), a channel opened
//! locally but not yet answered (`pending`), and a pairing registered for `pair`/`pair2`; the
//! owner answers every `PairRequest` (open or reject, chosen by the input). Nothing may panic, a
//! protocol violation must leave the mux destroyed, and a destroyed mux must refuse further work.
//!
//! Input: `[ctl] ([len] [len bytes])*` — each chunk is one frame; `ctl` bit 0 corks the mux around
//! the frames, bit 1 lets the honest peer's own frames be fed back in between.
#![no_main]

use hyperpunch_core::protomux::{ChannelOptions, Event, Frame, MuxError, Protomux};
use libfuzzer_sys::fuzz_target;

fn chunks(mut b: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&len, rest) = b.split_first()?;
        let n = usize::from(len).min(rest.len());
        let (c, r) = rest.split_at(n);
        b = r;
        Some(c)
    })
}

fn pump(from: &mut Protomux, to: &mut Protomux) {
    while let Some(f) = from.poll_transmit() {
        let _ = to.handle_frame(&f);
    }
}

/// `a` (the fuzzed mux) with `chat` opened against `b`, plus a pending local open.
fn setup() -> (Protomux, Protomux) {
    let (mut a, mut b) = (Protomux::new(), Protomux::new());
    b.pair("chat", None);
    a.pair("pair", None);
    a.pair("pair2", Some(b"id"));
    a.open(ChannelOptions::new("chat").handshake(b"hi".to_vec()).message_types(3)).unwrap();
    pump(&mut a, &mut b);
    while let Some(e) = b.poll_event() {
        if let Event::PairRequest { protocol, id, .. } = e {
            let mut o = ChannelOptions::new(protocol).message_types(3);
            if let Some(id) = id {
                o = o.id(id);
            }
            b.open(o).unwrap();
        }
    }
    pump(&mut b, &mut a);
    while a.poll_event().is_some() {}
    a.open(ChannelOptions::new("pending").id(b"x".to_vec()).message_types(2)).unwrap();
    while a.poll_transmit().is_some() {}
    (a, b)
}

fn check_frame(f: &[u8]) {
    let Ok(frame) = Frame::decode(f) else { return };
    let out = frame.to_bytes();
    assert_eq!(Frame::decode(&out).as_ref(), Ok(&frame), "re-encoded as {out:02x?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let (mut a, mut b) = setup();
    if ctl & 1 != 0 {
        a.cork();
    }
    let mut answer = ctl;
    for frame in chunks(rest) {
        check_frame(frame);
        let was_destroyed = a.is_destroyed();
        match a.handle_frame(frame) {
            Ok(()) => assert!(!was_destroyed || a.is_destroyed()),
            Err(e) => {
                assert!(a.is_destroyed(), "error {e:?} left the mux alive");
                if was_destroyed {
                    assert_eq!(e, MuxError::Destroyed);
                }
            }
        }
        while let Some(e) = a.poll_event() {
            match e {
                Event::PairRequest { protocol, id, .. } => {
                    answer = answer.rotate_left(1);
                    if answer & 1 == 0 {
                        let mut o = ChannelOptions::new(protocol.clone()).message_types(2);
                        if let Some(id) = &id {
                            o = o.id(id.clone());
                        }
                        let _ = a.open(o);
                    } else {
                        let _ = a.reject(&protocol, id.as_deref());
                    }
                }
                Event::Message { channel, message_type, payload } if answer & 2 != 0 => {
                    // Echo, so the send paths run too.
                    let _ = a.send(channel, message_type, &payload);
                }
                _ => {}
            }
        }
        if ctl & 2 != 0 {
            pump(&mut a, &mut b);
            while b.poll_event().is_some() {}
            pump(&mut b, &mut a);
        } else {
            while let Some(out) = a.poll_transmit() {
                check_frame(&out);
            }
        }
    }
    if ctl & 1 != 0 {
        a.uncork();
    }
    while let Some(out) = a.poll_transmit() {
        check_frame(&out);
        assert!(Frame::decode(&out).is_ok(), "mux wrote an undecodable frame {out:02x?}");
    }
    let _ = a.buffered_bytes();
    let _ = a.should_pause();
    a.destroy();
    assert!(a.is_destroyed());
});
