//! Default block encryption (`lib/default-encryption.js`).
//!
//! Each stored block is `pad(8) ‖ ciphertext`. The pad is the fork id (u64 LE) XORed with the
//! XSalsa20 keystream of the blinding key under the nonce `u64le(index) ‖ 0^16`; the body is XORed
//! with the XSalsa20 keystream of the block key under the nonce `u64le(index) ‖ pad ‖ 0^8`. The
//! merkle tree hashes the stored (encrypted, padded) bytes.

use salsa20::cipher::{KeyIvInit, StreamCipher};
use salsa20::XSalsa20;

use crate::crypto::{hash, hash_batch, keyed_hash_batch};

use super::manifest::DEFAULT_ENCRYPTION;

/// Bytes prepended to every encrypted block.
pub const PADDING: usize = 8;

/// Why a stored block could not be decrypted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EncryptionError {
    /// The stored block is shorter than the padding.
    #[error("encrypted block of {0} bytes is shorter than the {PADDING}-byte padding")]
    TooShort(usize),
}

/// The keys of one core's block encryption.
#[derive(Clone, PartialEq, Eq)]
pub struct BlockEncryption {
    block_key: [u8; 32],
    blinding_key: [u8; 32],
}

impl core::fmt::Debug for BlockEncryption {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BlockEncryption").finish_non_exhaustive()
    }
}

impl BlockEncryption {
    /// Derive the keys from the user's `encryption_key` and the core key (JS `deriveKeys`):
    /// block key = `H(DEFAULT_ENCRYPTION ‖ core_key ‖ encryption_key)`, or for compat cores
    /// `H_{core_key}(encryption_key)`.
    pub fn new(encryption_key: &[u8; 32], core_key: &[u8; 32], compat: bool) -> Self {
        let block_key = if compat {
            keyed_hash_batch(core_key, &[encryption_key])
        } else {
            hash_batch(&[&DEFAULT_ENCRYPTION, core_key, encryption_key])
        };
        Self::from_block_key(block_key)
    }

    /// Use `block_key` as is (JS `{ block: true }`); the blinding key is `H(block_key)`.
    pub fn from_block_key(block_key: [u8; 32]) -> Self {
        BlockEncryption {
            blinding_key: hash(&block_key),
            block_key,
        }
    }

    /// The block key.
    pub fn block_key(&self) -> &[u8; 32] {
        &self.block_key
    }

    /// The blinding key (encrypts the fork id in the padding).
    pub fn blinding_key(&self) -> &[u8; 32] {
        &self.blinding_key
    }

    /// Encrypt block `index` appended at `fork`: returns `PADDING + plain.len()` bytes.
    pub fn encrypt(&self, index: u64, fork: u64, plain: &[u8]) -> Vec<u8> {
        let mut pad = [0u8; PADDING];
        let mut out = Vec::with_capacity(PADDING + plain.len());
        out.extend_from_slice(&[0u8; PADDING]);
        out.extend_from_slice(plain);
        self.encrypt_parts(index, fork, &mut pad, &mut out[PADDING..]);
        out[..PADDING].copy_from_slice(&pad);
        out
    }

    /// Encrypt in place: `block` is `PADDING` bytes (overwritten) followed by the plaintext.
    pub fn encrypt_in_place(
        &self,
        index: u64,
        fork: u64,
        block: &mut [u8],
    ) -> Result<(), EncryptionError> {
        if block.len() < PADDING {
            return Err(EncryptionError::TooShort(block.len()));
        }
        let (pad, body) = block.split_at_mut(PADDING);
        let mut p = [0u8; PADDING];
        self.encrypt_parts(index, fork, &mut p, body);
        pad.copy_from_slice(&p);
        Ok(())
    }

    fn encrypt_parts(&self, index: u64, fork: u64, pad: &mut [u8; PADDING], body: &mut [u8]) {
        let mut nonce = [0u8; 24];
        nonce[..8].copy_from_slice(&index.to_le_bytes());
        *pad = fork.to_le_bytes();
        XSalsa20::new(&self.blinding_key.into(), &nonce.into()).apply_keystream(pad);
        nonce[8..16].copy_from_slice(pad);
        XSalsa20::new(&self.block_key.into(), &nonce.into()).apply_keystream(body);
    }

    /// Decrypt stored block `index` (`pad ‖ ciphertext`), returning the plaintext.
    pub fn decrypt(&self, index: u64, stored: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        let mut buf = stored.to_vec();
        self.decrypt_in_place(index, &mut buf)?;
        buf.drain(..PADDING);
        Ok(buf)
    }

    /// Decrypt in place: the bytes after the padding become the plaintext (the padding is kept).
    pub fn decrypt_in_place(&self, index: u64, block: &mut [u8]) -> Result<(), EncryptionError> {
        if block.len() < PADDING {
            return Err(EncryptionError::TooShort(block.len()));
        }
        let (pad, body) = block.split_at_mut(PADDING);
        let mut nonce = [0u8; 24];
        nonce[..8].copy_from_slice(&index.to_le_bytes());
        nonce[8..16].copy_from_slice(pad);
        XSalsa20::new(&self.block_key.into(), &nonce.into()).apply_keystream(body);
        Ok(())
    }

    /// The fork id hidden in a stored block's padding.
    pub fn fork_of(&self, index: u64, stored: &[u8]) -> Result<u64, EncryptionError> {
        if stored.len() < PADDING {
            return Err(EncryptionError::TooShort(stored.len()));
        }
        let mut pad = [0u8; PADDING];
        pad.copy_from_slice(&stored[..PADDING]);
        let mut nonce = [0u8; 24];
        nonce[..8].copy_from_slice(&index.to_le_bytes());
        XSalsa20::new(&self.blinding_key.into(), &nonce.into()).apply_keystream(&mut pad);
        Ok(u64::from_le_bytes(pad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercore::manifest::Manifest;
    use proptest::prelude::*;

    #[test]
    fn matches_js_vector() {
        let pk = crate::crypto::KeyPair::from_seed(&[1u8; 32]).public_key;
        let core_key = Manifest::default_signer(pk).key();
        let enc = BlockEncryption::new(&[9u8; 32], &core_key, false);
        assert_eq!(
            hex::encode(enc.block_key()),
            "ae2b114d228f158cb8e048afe529f254933fa6df6cdd2b66447b35912a80b8d1"
        );
        assert_eq!(
            hex::encode(enc.blinding_key()),
            "7ef5da7070bd892073b1a29bef8c568df5725f4d5d7019d914b763d362a7a600"
        );
        let stored = enc.encrypt(3, 5, b"hello");
        assert_eq!(hex::encode(&stored), "8400a6088e6b8d7596b1ca3b72");
        assert_eq!(enc.decrypt(3, &stored).unwrap(), b"hello");
        assert_eq!(enc.fork_of(3, &stored).unwrap(), 5);
        // wrong index: garbage, not the plaintext
        assert_ne!(enc.decrypt(4, &stored).unwrap(), b"hello");
    }

    #[test]
    fn compat_and_block_keys() {
        let core_key = [7u8; 32];
        let enc = BlockEncryption::new(&[9u8; 32], &core_key, true);
        assert_eq!(enc.block_key(), &keyed_hash_batch(&core_key, &[&[9u8; 32]]));
        let raw = BlockEncryption::from_block_key([9u8; 32]);
        assert_eq!(raw.block_key(), &[9u8; 32]);
        assert_eq!(raw.blinding_key(), &hash(&[9u8; 32]));
    }

    #[test]
    fn short_blocks_are_errors() {
        let enc = BlockEncryption::from_block_key([1u8; 32]);
        assert_eq!(enc.decrypt(0, &[0u8; 7]), Err(EncryptionError::TooShort(7)));
        assert_eq!(enc.fork_of(0, &[]), Err(EncryptionError::TooShort(0)));
        assert_eq!(enc.decrypt(0, &[0u8; 8]).unwrap(), Vec::<u8>::new());
        assert!(enc.encrypt_in_place(0, 0, &mut [0u8; 3]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(index in any::<u64>(), fork in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let enc = BlockEncryption::from_block_key([3u8; 32]);
            let stored = enc.encrypt(index, fork, &data);
            prop_assert_eq!(stored.len(), data.len() + PADDING);
            prop_assert_eq!(enc.decrypt(index, &stored).unwrap(), data);
            prop_assert_eq!(enc.fork_of(index, &stored).unwrap(), fork);
        }
    }
}
