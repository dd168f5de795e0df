//! hyperdht's SecurePayload (lib/secure-payload.js): holepunch payloads boxed with
//! `crypto_secretbox_easy` (XSalsa20-Poly1305) under the holepunch secret, behind a random
//! 24-byte nonce, and the address tokens that prove a peer's public host.

use poly1305::{universal_hash::KeyInit, Poly1305};
use salsa20::cipher::{KeyIvInit, StreamCipher};
use salsa20::XSalsa20;
use subtle::ConstantTimeEq;

use crate::crypto::keyed_hash_batch;
use crate::dht::messages_connect::HolepunchPayload;

/// Nonce plus MAC: the bytes a box adds to its plaintext.
pub const OVERHEAD: usize = 24 + 16;

/// Boxes and opens holepunch payloads for one connection attempt.
#[derive(Clone)]
pub struct SecurePayload {
    shared: [u8; 32],
    local_secret: [u8; 32],
}

impl SecurePayload {
    /// `shared` is the handshake's holepunch secret; `local_secret` 32 random bytes that key this
    /// side's address tokens.
    pub fn new(shared: [u8; 32], local_secret: [u8; 32]) -> Self {
        SecurePayload {
            shared,
            local_secret,
        }
    }

    /// Boxes `payload` behind `nonce` (24 random bytes from the caller).
    pub fn encrypt(&self, payload: &HolepunchPayload, nonce: [u8; 24]) -> Vec<u8> {
        seal(&self.shared, &nonce, &payload.encode())
    }

    /// Opens a box from the peer; `None` when it is too short, not authentic or not a
    /// `holepunchPayload` (JS returns null for all three).
    pub fn decrypt(&self, wire: &[u8]) -> Option<HolepunchPayload> {
        let plain = open(&self.shared, wire)?;
        HolepunchPayload::decode(&plain).ok()
    }

    /// `token(addr) = H(utf8 host, key = localSecret)`: the host only, as a dotted string.
    pub fn token(&self, host: &core::net::Ipv4Addr) -> [u8; 32] {
        keyed_hash_batch(&self.local_secret, &[host.to_string().as_bytes()])
    }
}

/// libsodium `crypto_secretbox_easy` with the nonce in front: `nonce || mac || ciphertext`.
pub fn seal(key: &[u8; 32], nonce: &[u8; 24], plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OVERHEAD + plain.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(plain);
    let mut cipher = XSalsa20::new(key.into(), nonce.into());
    let mut poly_key = [0u8; 32];
    cipher.apply_keystream(&mut poly_key);
    cipher.apply_keystream(&mut out[OVERHEAD..]);
    let mac = Poly1305::new(&poly_key.into()).compute_unpadded(&out[OVERHEAD..]);
    out[24..OVERHEAD].copy_from_slice(&mac);
    out
}

/// Opens `nonce || mac || ciphertext`. Like JS it needs at least one byte of ciphertext
/// (`end <= start` is refused).
pub fn open(key: &[u8; 32], wire: &[u8]) -> Option<Vec<u8>> {
    if wire.len() <= OVERHEAD {
        return None;
    }
    let nonce: [u8; 24] = wire[..24].try_into().ok()?;
    let mut cipher = XSalsa20::new(key.into(), (&nonce).into());
    let mut poly_key = [0u8; 32];
    cipher.apply_keystream(&mut poly_key);
    let body = &wire[OVERHEAD..];
    let expected = Poly1305::new(&poly_key.into()).compute_unpadded(body);
    if !bool::from(expected.as_slice().ct_eq(&wire[24..OVERHEAD])) {
        return None;
    }
    let mut plain = body.to_vec();
    cipher.apply_keystream(&mut plain);
    Some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dht::messages_connect::Firewall;
    use core::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn matches_js_vector() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/vectors/net/vectors-static.json"
        );
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let v = &j["securePayload"];
        let key: [u8; 32] = hex::decode(v["key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let payload = HolepunchPayload {
            firewall: Firewall::Consistent,
            addresses: Some(vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000)]),
            ..Default::default()
        };
        assert_eq!(hex::encode(payload.encode()), v["plain"]);
        let sp = SecurePayload::new(key, [3; 32]);
        let wire = sp.encrypt(&payload, [7; 24]);
        assert_eq!(hex::encode(&wire), v["wire"]);
        assert_eq!(sp.decrypt(&wire), Some(payload));
    }

    #[test]
    fn forged_or_short_boxes_are_refused() {
        let sp = SecurePayload::new([1; 32], [2; 32]);
        let wire = sp.encrypt(&HolepunchPayload::default(), [9; 24]);
        for i in 0..wire.len() {
            let mut w = wire.clone();
            w[i] ^= 1;
            assert!(sp.decrypt(&w).is_none(), "flipped byte {i}");
        }
        assert!(sp.decrypt(&wire[..OVERHEAD]).is_none());
        assert!(sp.decrypt(&[]).is_none());
        let other = SecurePayload::new([5; 32], [2; 32]);
        assert!(other.decrypt(&wire).is_none());
        // Authentic but not a holepunchPayload.
        assert!(sp.decrypt(&seal(&[1; 32], &[0; 24], &[0xff])).is_none());
    }

    #[test]
    fn tokens_hash_the_host_only() {
        let sp = SecurePayload::new([1; 32], [2; 32]);
        let a = sp.token(&Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(a, keyed_hash_batch(&[2; 32], &[b"1.2.3.4"]));
        assert_ne!(a, sp.token(&Ipv4Addr::new(1, 2, 3, 5)));
    }
}
