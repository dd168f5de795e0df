//! secret-stream's unordered datagrams (`stream.send()` / the `message` event over a UDX stream):
//! each message is boxed with libsodium `crypto_secretbox_easy` (XSalsa20-Poly1305) under a
//! per-direction key derived from the handshake hash, with an 8-byte little-endian counter as the
//! nonce prefix.
//!
//! Envelope: `counter(8, LE, incremented before use) ‖ mac(16) ‖ ciphertext`; nonce = counter ‖ 16
//! zero bytes; keys `BLAKE2b-256(NS_INITIATOR ‖ NS_SEND, key = handshake hash)` for what the
//! initiator sends and `BLAKE2b-256(NS_RESPONDER ‖ NS_SEND, key = handshake hash)` for what the
//! responder sends.

use poly1305::universal_hash::KeyInit;
use poly1305::Poly1305;
use salsa20::cipher::{KeyIvInit, StreamCipher};
use salsa20::XSalsa20;
use subtle::ConstantTimeEq;

use super::{namespaces, StreamError};
use crate::crypto::keyed_hash_batch;

/// Bytes an envelope adds to its message: the 8-byte counter and the 16-byte MAC.
pub const DATAGRAM_OVERHEAD: usize = 8 + 16;

/// The datagram keys and the send counter of one side (JS `_sendState`).
#[derive(Clone)]
pub struct SecretSend {
    encrypt: [u8; 32],
    decrypt: [u8; 32],
    counter: [u8; 8],
    initial: [u8; 8],
}

impl core::fmt::Debug for SecretSend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecretSend").finish_non_exhaustive()
    }
}

impl SecretSend {
    /// Derives the keys from the handshake hash for the side `is_initiator`; `initial_counter` is
    /// the random start of the send counter (JS draws 8 random bytes).
    pub fn new(handshake_hash: &[u8; 64], is_initiator: bool, initial_counter: [u8; 8]) -> Self {
        let [ns_initiator, ns_responder, ns_send] = namespaces();
        let initiator_key = keyed_hash_batch(handshake_hash, &[&ns_initiator, &ns_send]);
        let responder_key = keyed_hash_batch(handshake_hash, &[&ns_responder, &ns_send]);
        let (encrypt, decrypt) = if is_initiator {
            (initiator_key, responder_key)
        } else {
            (responder_key, initiator_key)
        };
        SecretSend {
            encrypt,
            decrypt,
            counter: initial_counter,
            initial: initial_counter,
        }
    }

    /// The key boxing what this side sends.
    pub fn send_key(&self) -> [u8; 32] {
        self.encrypt
    }

    /// The key opening what this side receives.
    pub fn recv_key(&self) -> [u8; 32] {
        self.decrypt
    }

    /// Boxes `message` into an envelope (JS `_boxMessage`). Fails with
    /// [`StreamError::NonceExhausted`] once the counter comes back to its initial value.
    pub fn seal(&mut self, message: &[u8]) -> Result<Vec<u8>, StreamError> {
        increment_le(&mut self.counter);
        if self.counter == self.initial {
            return Err(StreamError::NonceExhausted);
        }
        let mut nonce = [0u8; 24];
        nonce[..8].copy_from_slice(&self.counter);
        let mut out = Vec::with_capacity(DATAGRAM_OVERHEAD + message.len());
        out.extend_from_slice(&self.counter);
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(message);
        let mut cipher = XSalsa20::new(&self.encrypt.into(), &nonce.into());
        let mut poly_key = [0u8; 32];
        cipher.apply_keystream(&mut poly_key);
        cipher.apply_keystream(&mut out[DATAGRAM_OVERHEAD..]);
        let mac = Poly1305::new(&poly_key.into()).compute_unpadded(&out[DATAGRAM_OVERHEAD..]);
        out[8..DATAGRAM_OVERHEAD].copy_from_slice(&mac);
        Ok(out)
    }

    /// Opens an envelope from the peer (JS `_onmessage`); `None` for anything too short or not
    /// authentic (JS drops those silently).
    pub fn open(&self, envelope: &[u8]) -> Option<Vec<u8>> {
        // JS requires at least a nonce's worth (24 bytes), which is also the envelope overhead.
        if envelope.len() < DATAGRAM_OVERHEAD {
            return None;
        }
        let mut nonce = [0u8; 24];
        nonce[..8].copy_from_slice(&envelope[..8]);
        let mac = &envelope[8..DATAGRAM_OVERHEAD];
        let body = &envelope[DATAGRAM_OVERHEAD..];
        let mut cipher = XSalsa20::new(&self.decrypt.into(), &nonce.into());
        let mut poly_key = [0u8; 32];
        cipher.apply_keystream(&mut poly_key);
        let expected = Poly1305::new(&poly_key.into()).compute_unpadded(body);
        if !bool::from(expected.as_slice().ct_eq(mac)) {
            return None;
        }
        let mut plain = body.to_vec();
        cipher.apply_keystream(&mut plain);
        Some(plain)
    }
}

#[cfg(test)]
impl SecretSend {
    /// Sets the counter and its start (tests reach exhaustion without 2^64 sends).
    pub(crate) fn set_counter(&mut self, counter: [u8; 8], initial: [u8; 8]) {
        self.counter = counter;
        self.initial = initial;
    }
}

/// libsodium `sodium_increment`: little-endian increment with wrap-around.
fn increment_le(n: &mut [u8; 8]) {
    *n = u64::from_le_bytes(*n).wrapping_add(1).to_le_bytes();
}
