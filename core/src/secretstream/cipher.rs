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

    fn cipher(&self, block: u32) -> ChaCha20 {
        let mut c = ChaCha20::new(&self.k.into(), &self.nonce.into());
        c.seek(u64::from(block) * 64);
        c
    }

    /// MAC over the tag block and the ciphertext (no additional data), as libsodium computes it.
    fn mac(&self, tag_block: &[u8; 64], ciphertext: &[u8]) -> [u8; 16] {
        let mut poly_key = [0u8; 32];
        self.cipher(0).apply_keystream(&mut poly_key);
        let mut poly = Poly1305::new(&poly_key.into());
        // No additional data: zero bytes and zero padding.
        poly.update_padded(tag_block);
        let full = ciphertext.len() - ciphertext.len() % 16;
        poly.update_padded(&ciphertext[..full]);
        let rem = &ciphertext[full..];
        // libsodium pads with `(0x10 - 64 + mlen) & 0xf` = `mlen & 15` zero bytes.
        let mut tail = Vec::with_capacity(2 * rem.len() + 16);
        tail.extend_from_slice(rem);
        tail.resize(2 * rem.len(), 0);
        tail.extend_from_slice(&0u64.to_le_bytes());
        tail.extend_from_slice(&(64 + ciphertext.len() as u64).to_le_bytes());
        poly.compute_unpadded(&tail).into()
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
        self.cipher(0).apply_keystream(&mut buf);
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
        let mut block = [0u8; 64];
        block[0] = tag;
        self.state.cipher(1).apply_keystream(&mut block);
        out.push(block[0]);
        out.extend_from_slice(message);
        self.state.cipher(2).apply_keystream(&mut out[1..]);
        let mac = self.state.mac(&block, &out[1..]);
        out.extend_from_slice(&mac);
        self.state.advance(&mac, tag);
        out
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
        let mut block = [0u8; 64];
        block[0] = ciphertext[0];
        self.state.cipher(1).apply_keystream(&mut block);
        let tag = block[0];
        block[0] = ciphertext[0];
        let body = &ciphertext[1..1 + mlen];
        let mac = self.state.mac(&block, body);
        if !bool::from(mac.ct_eq(&ciphertext[1 + mlen..])) {
            return Err(DecryptError);
        }
        let mut plain = body.to_vec();
        self.state.cipher(2).apply_keystream(&mut plain);
        self.state.advance(&mac, tag);
        Ok((plain, tag))
    }

    /// Forces a rekey, mirroring [`Push::rekey`] on the sender.
    pub fn rekey(&mut self) {
        self.state.rekey();
    }
}
