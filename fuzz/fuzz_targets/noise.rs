//! Fuzz the Noise handshake (`noise::Handshake`, patterns XX and IK, both roles) with hostile
//! handshake messages. An honest pair first runs the handshake for a fuzz-chosen number of steps;
//! then the side whose turn it is to receive gets the fuzz bytes, either raw or as a mutation (XOR)
//! of the honest message it would have received, so the later, encrypted steps are reached too.
//! Nothing may panic; a failed step must leave the side failed and refusing further steps, and a
//! completed handshake must split.
//!
//! Input: `[ctl] ([len] [len bytes])*` — `ctl` bit 0 pattern (XX/IK), bits 1-2 honest steps before
//! the fuzzing starts, bit 3 raw/XOR; every chunk is one message for the receiving side (the side
//! whose turn it is answers with its own honest `send` between chunks).
#![no_main]

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::noise::{Handshake, NoiseError, Pattern};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Keys {
    i_static: KeyPair,
    r_static: KeyPair,
    i_eph: KeyPair,
    r_eph: KeyPair,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| Keys {
        i_static: KeyPair::from_seed(&[0x11; 32]),
        r_static: KeyPair::from_seed(&[0x22; 32]),
        i_eph: KeyPair::from_seed(&[0xa1; 32]),
        r_eph: KeyPair::from_seed(&[0xb2; 32]),
    })
}

fn pair(pattern: Pattern) -> (Handshake, Handshake) {
    let k = keys();
    let i = Handshake::new(
        pattern,
        true,
        k.i_static.clone(),
        k.i_eph.clone(),
        b"prologue",
        Some(k.r_static.public_key),
    )
    .unwrap();
    let r = Handshake::new(
        pattern,
        false,
        k.r_static.clone(),
        k.r_eph.clone(),
        b"prologue",
        None,
    )
    .unwrap();
    (i, r)
}

fn chunks(mut b: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&len, rest) = b.split_first()?;
        let n = usize::from(len).min(rest.len());
        let (c, r) = rest.split_at(n);
        b = r;
        Some(c)
    })
}

fn check_failed(h: &mut Handshake) {
    assert!(h.is_failed());
    assert!(!h.is_complete());
    assert_eq!(h.recv(&[]), Err(NoiseError::Failed));
    assert_eq!(h.send(&[]), Err(NoiseError::Failed));
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let pattern = if ctl & 1 == 0 { Pattern::XX } else { Pattern::IK };
    let steps = usize::from((ctl >> 1) & 3);
    let xor = ctl & 8 != 0;
    let (mut i, mut r) = pair(pattern);
    let total = match pattern {
        Pattern::XX => 3,
        Pattern::IK => 2,
    };
    // Honest steps (at most total - 1, so someone is left to receive).
    for _ in 0..steps.min(total - 1) {
        let (tx, rx) = if i.is_my_turn() { (&mut i, &mut r) } else { (&mut r, &mut i) };
        let m = tx.send(b"honest").unwrap();
        assert_eq!(rx.recv(&m).unwrap(), b"honest");
    }
    for chunk in chunks(rest) {
        let (tx, rx) = if i.is_my_turn() { (&mut i, &mut r) } else if r.is_my_turn() {
            (&mut r, &mut i)
        } else {
            break;
        };
        if rx.is_failed() || tx.is_failed() {
            break;
        }
        // The message the receiver would have got; the fuzzed one replaces it. The sender may
        // have accepted a forged message before (e.g. an `e` that is no curve point, which only
        // fails at the next DH), so its send may fail, but then it must be failed for good.
        let honest = match tx.send(b"payload") {
            Ok(m) => m,
            Err(_) => {
                check_failed(tx);
                break;
            }
        };
        let msg: Vec<u8> = if xor {
            let mut m = honest.clone();
            for (k, &c) in chunk.iter().enumerate() {
                match m.get_mut(k) {
                    Some(b) => *b ^= c,
                    None => m.push(c),
                }
            }
            m
        } else {
            chunk.to_vec()
        };
        match rx.recv(&msg) {
            Ok(_) => {
                if rx.is_complete() {
                    let s = rx.split().unwrap();
                    assert_eq!(s.hash, rx.handshake_hash());
                    assert!(rx.remote_static().is_some());
                    assert_eq!(rx.recv(&[]), Err(NoiseError::AlreadyComplete));
                }
            }
            Err(_) => {
                check_failed(rx);
                break;
            }
        }
        if i.is_complete() && r.is_complete() {
            let (a, b) = (i.clone().finish().unwrap(), r.clone().finish().unwrap());
            if msg == honest {
                assert_eq!((a.tx, a.rx, a.hash), (b.rx, b.tx, b.hash));
            }
            break;
        }
    }
});
