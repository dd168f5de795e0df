//! libsodium's `crypto_secretstream_xchacha20poly1305` (as sodium-secretstream's `Push`/`Pull`
//! wrap it), byte for byte, including its rekeying and its Poly1305 padding of `mlen & 15` zero
//! bytes after the ciphertext.

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use poly1305::universal_hash::{KeyInit, UniversalHash};
use poly1305::Poly1305;
use subtle::ConstantTimeEq;

/// Header length (`crypto_secretstream_xchacha20poly1305_HEADERBYTES`).
pub const HEADERBYTES: usize = 24;
/// Key length.
pub const KEYBYTES: usize = 32;
/// Bytes a pushed message grows by: one encrypted tag byte and a 16-byte MAC.
pub const ABYTES: usize = 17;

/// The tag of an ordinary message (the only one secret-stream pushes).
pub const TAG_MESSAGE: u8 = 0;
/// The tag marking the end of a set of messages.
pub const TAG_PUSH: u8 = 1;
/// The tag that makes both sides rekey after this message.
pub const TAG_REKEY: u8 = 2;
/// The tag of the last message (`TAG_PUSH | TAG_REKEY`).
pub const TAG_FINAL: u8 = 3;

/// A ciphertext did not authenticate (or is shorter than [`ABYTES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("secretstream message failed authentication")]
pub struct DecryptError;

/// The shared state of both directions: key, 12-byte nonce (u32 counter ‖ 8-byte inonce).
#[derive(Clone)]
struct State {
    k: [u8; 32],
    nonce: [u8; 12],
}

impl State {
    fn new(key: &[u8; KEYBYTES], header: &[u8; HEADERBYTES]) -> Self {
        let mut input = [0u8; 16];
        input.copy_from_slice(&header[..16]);
        let k = chacha20::hchacha::<chacha20::cipher::consts::U10>(&(*key).into(), &input.into());
        let mut nonce = [0u8; 12];
        nonce[0] = 1; // counter := 1
        nonce[4..].copy_from_slice(&header[16..]);
        State { k: k.into(), nonce }
    }

    fn cipher(&self) -> ChaCha20 {
        ChaCha20::new(&self.k.into(), &self.nonce.into())
    }

    /// The cipher positioned at keystream block 1 and the Poly1305 keyed with block 0.
    fn start(&self) -> (ChaCha20, Poly1305) {
        let mut c = self.cipher();
        let mut block0 = [0u8; 64];
        c.apply_keystream(&mut block0);
        let mut poly_key = [0u8; 32];
        poly_key.copy_from_slice(&block0[..32]);
        (c, Poly1305::new(&poly_key.into()))
    }

    /// Encrypts or decrypts a message body with `c`, the cipher positioned after the tag block
    /// (keystream block 2 on): whole kilobytes in AVX-512 lanes where the CPU has them, whole
    /// 512-byte runs in AVX2 lanes elsewhere on x86-64.
    fn apply_body(&self, c: &mut ChaCha20, body: &mut [u8]) {
        let n = super::chacha20_x16::xor_keystream(&self.k, &self.nonce, 2, body);
        if n > 0 {
            c.seek(128 + n as u64);
        }
        c.apply_keystream(&mut body[n..]);
    }

    /// [`State::apply_body`] of the part of a body that starts `at` bytes into it.
    fn apply_body_at(&self, c: &mut ChaCha20, at: u64, body: &mut [u8]) {
        let mut i = 0;
        let misaligned = (at % 64) as usize;
        if misaligned != 0 {
            // The rest of a keystream block begun by the previous part.
            i = (64 - misaligned).min(body.len());
            c.seek(128 + at);
            c.apply_keystream(&mut body[..i]);
        }
        if i == body.len() {
            return;
        }
        let pos = at + i as u64; // a multiple of 64
        let n = match u32::try_from(2 + pos / 64) {
            Ok(counter) => {
                super::chacha20_x16::xor_keystream(&self.k, &self.nonce, counter, &mut body[i..])
            }
            Err(_) => 0,
        };
        c.seek(128 + pos + n as u64);
        c.apply_keystream(&mut body[i + n..]);
    }

    /// Finishes the MAC over the tag block (already fed) and `ciphertext` (no additional data),
    /// as libsodium computes it.
    fn finish_mac(mut poly: Poly1305, ciphertext: &[u8]) -> [u8; 16] {
        let full = ciphertext.len() - ciphertext.len() % 16;
        poly.update_padded(&ciphertext[..full]);
        Self::finish_mac_tail(poly, &ciphertext[full..], ciphertext.len() as u64)
    }

    /// Finishes the MAC whose ciphertext of `total` bytes was fed but for its last `rem` bytes
    /// (fewer than 16).
    fn finish_mac_tail(poly: Poly1305, rem: &[u8], total: u64) -> [u8; 16] {
        // libsodium pads with `(0x10 - 64 + mlen) & 0xf` = `mlen & 15` zero bytes, then the two
        // lengths (no additional data; the tag block and the ciphertext).
        let mut tail = [0u8; 2 * 15 + 16];
        tail[..rem.len()].copy_from_slice(rem);
        let lens = 2 * rem.len();
        tail[lens + 8..lens + 16].copy_from_slice(&(64 + total).to_le_bytes());
        poly.compute_unpadded(&tail[..lens + 16]).into()
    }

    fn advance(&mut self, mac: &[u8; 16], tag: u8) {
        for (n, m) in self.nonce[4..].iter_mut().zip(mac) {
            *n ^= m;
        }
        let mut counter =
            u32::from_le_bytes([self.nonce[0], self.nonce[1], self.nonce[2], self.nonce[3]]);
        counter = counter.wrapping_add(1);
        self.nonce[..4].copy_from_slice(&counter.to_le_bytes());
        if tag & TAG_REKEY != 0 || counter == 0 {
            self.rekey();
        }
    }

    fn rekey(&mut self) {
        let mut buf = [0u8; 40];
        buf[..32].copy_from_slice(&self.k);
        buf[32..].copy_from_slice(&self.nonce[4..]);
        self.cipher().apply_keystream(&mut buf);
        self.k.copy_from_slice(&buf[..32]);
        self.nonce[4..].copy_from_slice(&buf[32..]);
        self.nonce[..4].copy_from_slice(&1u32.to_le_bytes());
    }
}

/// The sending half (`crypto_secretstream_xchacha20poly1305_init_push` / `_push`).
#[derive(Clone)]
pub struct Push {
    state: State,
    header: [u8; HEADERBYTES],
}

impl Push {
    /// Starts a stream with `key` and `header` (libsodium draws the header at random: pass 24
    /// fresh random bytes).
    pub fn new(key: &[u8; KEYBYTES], header: [u8; HEADERBYTES]) -> Self {
        Push {
            state: State::new(key, &header),
            header,
        }
    }

    /// The header the receiver needs to start pulling.
    pub fn header(&self) -> [u8; HEADERBYTES] {
        self.header
    }

    /// Encrypts `message` with `tag` into `tag ‖ ciphertext ‖ mac` (`message.len() + ABYTES` bytes).
    pub fn push(&mut self, message: &[u8], tag: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len() + ABYTES);
        self.push_into(&mut out, message, tag);
        out
    }

    /// [`push`](Self::push) appending to `out` (e.g. after a frame's length prefix), encrypting
    /// in place there.
    pub fn push_into(&mut self, out: &mut Vec<u8>, message: &[u8], tag: u8) {
        out.reserve(message.len() + ABYTES);
        let (mut c, mut poly) = self.state.start();
        let mut block = [0u8; 64];
        block[0] = tag;
        c.apply_keystream(&mut block);
        poly.update_padded(&block);
        out.push(block[0]);
        let body = out.len();
        // Whole 512-byte runs are encrypted as they are copied (one pass), the rest in place.
        let n = super::chacha20_x16::append_xor_keystream(
            &self.state.k,
            &self.state.nonce,
            2,
            message,
            out,
        );
        out.extend_from_slice(&message[n..]);
        if n > 0 {
            c.seek(128 + n as u64);
            c.apply_keystream(&mut out[body + n..]);
        } else {
            self.state.apply_body(&mut c, &mut out[body..]);
        }
        let mac = State::finish_mac(poly, &out[body..]);
        out.extend_from_slice(&mac);
        self.state.advance(&mac, tag);
    }

    /// [`push`](Self::push) encrypting `message` in place, for a sender that owns it: returns the
    /// encrypted tag byte (which goes before the ciphertext) and the MAC (which goes after it).
    /// The same bytes as `push`, without copying the message.
    pub fn push_in_place(&mut self, message: &mut [u8], tag: u8) -> (u8, [u8; 16]) {
        let (mut c, mut poly) = self.state.start();
        let mut block = [0u8; 64];
        block[0] = tag;
        c.apply_keystream(&mut block);
        poly.update_padded(&block);
        self.state.apply_body(&mut c, message);
        let mac = State::finish_mac(poly, message);
        self.state.advance(&mac, tag);
        (block[0], mac)
    }

    /// [`push_in_place`](Self::push_in_place) of the message made of `parts` one after the other
    /// (each encrypted in place): the same tag byte, ciphertext and MAC as of their
    /// concatenation, for a sender whose message is in pieces it owns (a frame's header and a
    /// block), so none is copied into one buffer first.
    pub fn push_parts_in_place(&mut self, parts: &mut [Vec<u8>], tag: u8) -> (u8, [u8; 16]) {
        let (mut c, mut poly) = self.state.start();
        let mut block = [0u8; 64];
        block[0] = tag;
        c.apply_keystream(&mut block);
        poly.update_padded(&block);
        let mut at = 0u64;
        // Ciphertext bytes not fed to the MAC yet. The MAC is fed whole runs of 64 bytes (four
        // Poly1305 blocks) only: its AVX2 backend takes the fast four-block path only while no
        // single blocks wait in it, so feeding a part's odd 16-byte blocks would send every
        // following part (a 64 KiB block after a message's header) down its slow path, block by
        // block (a fifth of `core serve`'s CPU, measured with `perf`).
        let mut carry = [0u8; 64];
        let mut carried = 0usize;
        for part in parts.iter_mut() {
            self.state.apply_body_at(&mut c, at, part);
            at += part.len() as u64;
            let mut p = part.as_slice();
            if carried > 0 {
                let t = (64 - carried).min(p.len());
                carry[carried..carried + t].copy_from_slice(&p[..t]);
                carried += t;
                p = &p[t..];
                if carried < 64 {
                    continue;
                }
                poly.update_padded(&carry);
            }
            let full = p.len() - p.len() % 64;
            poly.update_padded(&p[..full]);
            carried = p.len() - full;
            carry[..carried].copy_from_slice(&p[full..]);
        }
        let whole = carried - carried % 16;
        poly.update_padded(&carry[..whole]);
        let mac = State::finish_mac_tail(poly, &carry[whole..carried], at);
        self.state.advance(&mac, tag);
        (block[0], mac)
    }

    /// Forces a rekey (`crypto_secretstream_xchacha20poly1305_rekey`); the receiver must do the same
    /// at the same point.
    pub fn rekey(&mut self) {
        self.state.rekey();
    }
}

/// The receiving half (`init_pull` / `_pull`).
#[derive(Clone)]
pub struct Pull {
    state: State,
}

impl Pull {
    /// Starts pulling a stream from its `header`.
    pub fn new(key: &[u8; KEYBYTES], header: &[u8; HEADERBYTES]) -> Self {
        Pull {
            state: State::new(key, header),
        }
    }

    /// Authenticates and decrypts one pushed message; returns the plaintext and the tag. A failed
    /// message leaves the state unchanged.
    pub fn pull(&mut self, ciphertext: &[u8]) -> Result<(Vec<u8>, u8), DecryptError> {
        if ciphertext.len() < ABYTES {
            return Err(DecryptError);
        }
        let mlen = ciphertext.len() - ABYTES;
        let mut plain = ciphertext[1..1 + mlen].to_vec();
        let tag = self.pull_in_place(ciphertext[0], &mut plain, &ciphertext[1 + mlen..])?;
        Ok((plain, tag))
    }

    /// [`pull`](Self::pull) on a message split in three: its first byte (the encrypted tag),
    /// `body` (the ciphertext, decrypted in place) and the 16-byte `mac`. Returns the tag. A
    /// failed message leaves the state and `body` unchanged.
    pub fn pull_in_place(
        &mut self,
        first: u8,
        body: &mut [u8],
        mac: &[u8],
    ) -> Result<u8, DecryptError> {
        if mac.len() != ABYTES - 1 {
            return Err(DecryptError);
        }
        let (mut c, mut poly) = self.state.start();
        let mut block = [0u8; 64];
        block[0] = first;
        c.apply_keystream(&mut block);
        let tag = block[0];
        block[0] = first;
        poly.update_padded(&block);
        let expected = State::finish_mac(poly, body);
        if !bool::from(expected.ct_eq(mac)) {
            return Err(DecryptError);
        }
        self.state.apply_body(&mut c, body);
        self.state.advance(&expected, tag);
        Ok(tag)
    }

    /// Forces a rekey, mirroring [`Push::rekey`] on the sender.
    pub fn rekey(&mut self) {
        self.state.rekey();
    }
}
