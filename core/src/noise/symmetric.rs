//! The Noise primitives as noise-handshake 4.2.0 builds them: BLAKE2b-512 hash, HMAC-BLAKE2b,
//! HKDF, ChaCha20-Poly1305 (IETF) cipher state and the noise-curve-ed Diffie-Hellman.

use blake2b_simd::Params;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::traits::IsIdentity;

use super::NoiseError;
use crate::crypto::KeyPair;

/// BLAKE2b-512 output length, the Noise `HASHLEN`.
pub(crate) const HASHLEN: usize = 64;
/// BLAKE2b block length, the HMAC block size.
const BLOCKLEN: usize = 128;
/// Authentication tag length of ChaCha20-Poly1305.
pub(crate) const MACLEN: usize = 16;
/// Largest ciphertext noise-handshake encrypts or decrypts.
pub(crate) const MAX_CIPHERTEXT: usize = 65535;

/// BLAKE2b-512 over the concatenation of `parts`.
fn blake2b512(parts: &[&[u8]]) -> [u8; HASHLEN] {
    let mut st = Params::new().hash_length(HASHLEN).to_state();
    for p in parts {
        st.update(p);
    }
    let mut out = [0u8; HASHLEN];
    out.copy_from_slice(st.finalize().as_bytes());
    out
}

/// HMAC-BLAKE2b-512 as noise-handshake's `hmac.js` computes it (keys up to 128 bytes are zero-padded,
/// longer ones hashed first).
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; HASHLEN] {
    let mut block = [0u8; BLOCKLEN];
    if key.len() > BLOCKLEN {
        block[..HASHLEN].copy_from_slice(&blake2b512(&[key]));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0u8; BLOCKLEN];
    let mut opad = [0u8; BLOCKLEN];
    for i in 0..BLOCKLEN {
        ipad[i] = block[i] ^ 0x36;
        opad[i] = block[i] ^ 0x5c;
    }
    let mut inner = Params::new().hash_length(HASHLEN).to_state();
    inner.update(&ipad);
    for p in parts {
        inner.update(p);
    }
    let inner = inner.finalize();
    blake2b512(&[&opad, inner.as_bytes()])
}

/// HKDF (RFC 5869) over HMAC-BLAKE2b-512 with empty info, two 64-byte outputs.
pub(crate) fn hkdf(salt: &[u8], ikm: &[u8]) -> ([u8; HASHLEN], [u8; HASHLEN]) {
    let prk = hmac(salt, &[ikm]);
    let out1 = hmac(&prk, &[&[1u8]]);
    let out2 = hmac(&prk, &[&out1, &[2u8]]);
    (out1, out2)
}

/// The noise-curve-ed Diffie-Hellman: the local Ed25519 secret scalar (SHA-512 of the seed,
/// clamped) times the remote Ed25519 public point, as libsodium's
/// `crypto_scalarmult_ed25519_noclamp`, which rejects non-canonical, small-order and off-subgroup
/// points and an identity result.
pub(crate) fn dh(remote_public: &[u8; 32], local: &KeyPair) -> Result<[u8; 32], NoiseError> {
    let compressed = CompressedEdwardsY(*remote_public);
    let point = compressed
        .decompress()
        .ok_or(NoiseError::InvalidPublicKey)?;
    if point.compress() != compressed || point.is_small_order() || !point.is_torsion_free() {
        return Err(NoiseError::InvalidPublicKey);
    }
    // The point is in the prime-order subgroup, so multiplying by the clamped scalar reduced
    // modulo the group order gives the same point as libsodium's unreduced multiplication.
    let scalar = ed25519_dalek::SigningKey::from_bytes(&local.seed()).to_scalar();
    let shared = scalar * point;
    if shared.is_identity() {
        return Err(NoiseError::InvalidPublicKey);
    }
    Ok(shared.compress().to_bytes())
}

/// Noise `SymmetricState` with its `CipherState`.
#[derive(Clone)]
pub(crate) struct SymmetricState {
    /// The running handshake hash `h`.
    pub(crate) digest: [u8; HASHLEN],
    chaining_key: [u8; HASHLEN],
    key: Option<[u8; 32]>,
    nonce: u32,
}

impl SymmetricState {
    /// `InitializeSymmetric(protocol_name)`.
    pub(crate) fn new(protocol: &[u8]) -> Self {
        let digest = if protocol.len() <= HASHLEN {
            let mut d = [0u8; HASHLEN];
            d[..protocol.len()].copy_from_slice(protocol);
            d
        } else {
            blake2b512(&[protocol])
        };
        SymmetricState {
            digest,
            chaining_key: digest,
            key: None,
            nonce: 0,
        }
    }

    pub(crate) fn has_key(&self) -> bool {
        self.key.is_some()
    }

    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        self.digest = blake2b512(&[&self.digest, data]);
    }

    /// `MixKey(DH(remote, local))`.
    pub(crate) fn mix_key(&mut self, remote: &[u8; 32], local: &KeyPair) -> Result<(), NoiseError> {
        let shared = dh(remote, local)?;
        let (ck, k) = hkdf(&self.chaining_key, &shared);
        self.chaining_key = ck;
        let mut key = [0u8; 32];
        key.copy_from_slice(&k[..32]);
        self.key = Some(key);
        self.nonce = 0;
        Ok(())
    }

    fn nonce_bytes(&self) -> [u8; 12] {
        // noise-handshake writes the counter as a u32 LE at offset 4 of the 12-byte IETF nonce.
        let mut n = [0u8; 12];
        n[4..8].copy_from_slice(&self.nonce.to_le_bytes());
        n
    }

    pub(crate) fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let out = match self.key {
            None => plaintext.to_vec(),
            Some(key) => {
                if plaintext.len() + MACLEN > MAX_CIPHERTEXT {
                    return Err(NoiseError::MessageTooLong {
                        len: plaintext.len() + MACLEN,
                    });
                }
                let cipher = ChaCha20Poly1305::new(&key.into());
                let mut buf = plaintext.to_vec();
                let tag = cipher
                    .encrypt_in_place_detached(&self.nonce_bytes().into(), &self.digest, &mut buf)
                    .map_err(|_| NoiseError::MessageTooLong { len: buf.len() })?;
                buf.extend_from_slice(&tag);
                self.nonce = self
                    .nonce
                    .checked_add(1)
                    .ok_or(NoiseError::NonceExhausted)?;
                buf
            }
        };
        self.mix_hash(&out);
        Ok(out)
    }

    pub(crate) fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let out = match self.key {
            None => ciphertext.to_vec(),
            Some(key) => {
                if ciphertext.len() > MAX_CIPHERTEXT {
                    return Err(NoiseError::MessageTooLong {
                        len: ciphertext.len(),
                    });
                }
                if ciphertext.len() < MACLEN {
                    return Err(NoiseError::Decrypt);
                }
                let (body, tag) = ciphertext.split_at(ciphertext.len() - MACLEN);
                let cipher = ChaCha20Poly1305::new(&key.into());
                let mut buf = body.to_vec();
                cipher
                    .decrypt_in_place_detached(
                        &self.nonce_bytes().into(),
                        &self.digest,
                        &mut buf,
                        tag.into(),
                    )
                    .map_err(|_| NoiseError::Decrypt)?;
                self.nonce = self
                    .nonce
                    .checked_add(1)
                    .ok_or(NoiseError::NonceExhausted)?;
                buf
            }
        };
        self.mix_hash(ciphertext);
        Ok(out)
    }

    /// `Split()`: the two 32-byte transport keys, initiator-to-responder first.
    pub(crate) fn split(&self) -> ([u8; 32], [u8; 32]) {
        let (a, b) = hkdf(&self.chaining_key, &[]);
        let mut k1 = [0u8; 32];
        let mut k2 = [0u8; 32];
        k1.copy_from_slice(&a[..32]);
        k2.copy_from_slice(&b[..32]);
        (k1, k2)
    }
}
