//! hypercore-crypto: BLAKE2b (plain, keyed, batched), namespaces, discovery keys and Ed25519.
//!
//! Everything here is a pure function. Key generation takes the seed as an argument: the core never
//! reads a global random number generator (the transports supply randomness).

use blake2b_simd::Params;

pub(crate) mod blake2b_x8;

/// A 32-byte BLAKE2b digest, a public key or a seed.
pub type Hash = [u8; 32];

/// BLAKE2b-256 over the concatenation of `parts` (libsodium `crypto_generichash_batch`).
#[inline]
pub fn hash_batch(parts: &[&[u8]]) -> Hash {
    let mut st = Params::new().hash_length(32).to_state();
    for p in parts {
        st.update(p);
    }
    to32(st.finalize().as_bytes())
}

/// BLAKE2b-256 of one buffer.
#[inline]
pub fn hash(data: &[u8]) -> Hash {
    to32(Params::new().hash_length(32).hash(data).as_bytes())
}

/// BLAKE2b-512 of one buffer.
pub fn hash64(data: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out.copy_from_slice(Params::new().hash_length(64).hash(data).as_bytes());
    out
}

/// BLAKE2b-256 keyed with `key` (BLAKE2b's own key parameter, up to 64 bytes) over the concatenation
/// of `parts`.
///
/// # Panics
/// If `key` is longer than 64 bytes (a programming error: every caller passes a fixed-size key).
pub fn keyed_hash_batch(key: &[u8], parts: &[&[u8]]) -> Hash {
    let mut st = Params::new().hash_length(32).key(key).to_state();
    for p in parts {
        st.update(p);
    }
    to32(st.finalize().as_bytes())
}

/// BLAKE2b-512 keyed with `key`, over the concatenation of `parts`.
pub fn keyed_hash64_batch(key: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    let mut st = Params::new().hash_length(64).key(key).to_state();
    for p in parts {
        st.update(p);
    }
    let mut out = [0u8; 64];
    out.copy_from_slice(st.finalize().as_bytes());
    out
}

#[inline]
fn to32(b: &[u8]) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(&b[..32]);
    out
}

/// Leaf hash of a block: `H(0x00 ‖ u64le(len) ‖ data)`.
#[inline]
pub fn leaf_hash(data: &[u8]) -> Hash {
    hash_batch(&[&[0u8], &(data.len() as u64).to_le_bytes(), data])
}

/// Parent hash: `H(0x01 ‖ u64le(size) ‖ left ‖ right)`; `left` is the operand with the smaller index.
#[inline]
pub fn parent_hash(size: u64, left: &Hash, right: &Hash) -> Hash {
    hash_batch(&[&[1u8], &size.to_le_bytes(), left, right])
}

/// Tree hash (root of roots): `H(0x02 ‖ for each root: hash ‖ u64le(index) ‖ u64le(size))`.
pub fn tree_hash<'a>(roots: impl IntoIterator<Item = (u64, u64, &'a Hash)>) -> Hash {
    let mut st = Params::new().hash_length(32).to_state();
    st.update(&[2u8]);
    for (index, size, h) in roots {
        st.update(h);
        st.update(&index.to_le_bytes());
        st.update(&size.to_le_bytes());
    }
    to32(st.finalize().as_bytes())
}

/// Discovery key of a core key: BLAKE2b-256 of the ASCII string `hypercore`, keyed with the core key.
pub fn discovery_key(key: &Hash) -> Hash {
    keyed_hash_batch(key, &[b"hypercore"])
}

/// `crypto.namespace(name, count)`: `ns = H(name)`, `id_i = H(ns ‖ byte i)`.
pub fn namespace(name: &[u8], count: usize) -> Vec<Hash> {
    let ns = hash(name);
    (0..count).map(|i| hash_batch(&[&ns, &[i as u8]])).collect()
}

/// An Ed25519 key pair in libsodium layout: the secret key is `seed ‖ public key` (64 bytes).
#[derive(Clone)]
pub struct KeyPair {
    /// 32-byte Ed25519 public key.
    pub public_key: Hash,
    /// 64-byte libsodium secret key: seed followed by the public key.
    pub secret_key: [u8; 64],
    /// The expanded secret key (SHA-512 of the seed, clamped), kept so that signing does not
    /// re-derive it each time (`SigningKey::sign` hashes the seed again on every call).
    expanded: Expanded,
    /// The public key as a point, decompressed once.
    verifying: ed25519_dalek::VerifyingKey,
}

/// [`ed25519_dalek::hazmat::ExpandedSecretKey`] (zeroed on drop), cloneable.
struct Expanded(ed25519_dalek::hazmat::ExpandedSecretKey);

impl Clone for Expanded {
    fn clone(&self) -> Self {
        Expanded(ed25519_dalek::hazmat::ExpandedSecretKey {
            scalar: self.0.scalar,
            hash_prefix: self.0.hash_prefix,
        })
    }
}

impl core::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key", &Hex(&self.public_key))
            .finish_non_exhaustive()
    }
}

struct Hex<'a>(&'a [u8]);
impl core::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl KeyPair {
    /// The key pair libsodium's `crypto_sign_seed_keypair(seed)` gives (and so hypercore-crypto's
    /// `keyPair(seed)`).
    pub fn from_seed(seed: &Hash) -> Self {
        let sk = ed25519_dalek::SigningKey::from_bytes(seed);
        let verifying = sk.verifying_key();
        let public_key = verifying.to_bytes();
        let mut secret_key = [0u8; 64];
        secret_key[..32].copy_from_slice(seed);
        secret_key[32..].copy_from_slice(&public_key);
        KeyPair {
            public_key,
            secret_key,
            // What `SigningKey::sign` derives from the seed on every call.
            expanded: Expanded(ed25519_dalek::hazmat::ExpandedSecretKey::from(seed)),
            verifying,
        }
    }

    /// Rebuild from a 64-byte libsodium secret key (`seed ‖ public key`). Fails when the public half
    /// does not match the seed.
    pub fn from_secret_key(secret_key: &[u8; 64]) -> Result<Self, CryptoError> {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&secret_key[..32]);
        let kp = Self::from_seed(&seed);
        if kp.secret_key[32..] != secret_key[32..] {
            return Err(CryptoError::BadSecretKey);
        }
        Ok(kp)
    }

    /// The 32-byte seed.
    pub fn seed(&self) -> Hash {
        let mut s = [0u8; 32];
        s.copy_from_slice(&self.secret_key[..32]);
        s
    }

    /// Detached Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        ed25519_dalek::hazmat::raw_sign::<sha2::Sha512>(&self.expanded.0, message, &self.verifying)
            .to_bytes()
    }
}

/// Verify a detached Ed25519 signature. Returns false for malformed keys or signatures.
pub fn verify(message: &[u8], signature: &[u8], public_key: &[u8]) -> bool {
    let (Ok(sig), Ok(pk)) = (
        <[u8; 64]>::try_from(signature),
        <[u8; 32]>::try_from(public_key),
    ) else {
        return false;
    };
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&pk) else {
        return false;
    };
    vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok()
}

/// Errors from key handling.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The public half of a 64-byte secret key does not belong to its seed.
    #[error("secret key's public half does not match its seed")]
    BadSecretKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn namespaces_match_js() {
        let ns = namespace(b"hypercore", 6);
        assert_eq!(
            ns[0].to_vec(),
            h("9fac70b50ca14efc4e91c833b204e75b8b5aad8b5881bfc0adb5ef38a3275b9c")
        );
        assert_eq!(
            ns[5].to_vec(),
            h("9aedb6f1dea8487cc1e1698f97eb2f063f6db4c649695622e7b675e2ceafa6e9")
        );
    }

    #[test]
    fn keypair_and_discovery_key_match_js() {
        let kp = KeyPair::from_seed(&[1u8; 32]);
        assert_eq!(
            kp.public_key.to_vec(),
            h("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c")
        );
        assert_eq!(
            discovery_key(&kp.public_key).to_vec(),
            h("c1feb82a2b3ba065ffed9f6addcf19ac250793bcab748986a1b4272c62da20e6")
        );
        let sig = kp.sign(b"hello");
        assert!(verify(b"hello", &sig, &kp.public_key));
        assert!(!verify(b"hellp", &sig, &kp.public_key));
        assert!(!verify(b"hello", &sig[..63], &kp.public_key));
    }

    #[test]
    fn tree_hashes_match_js() {
        let l0 = leaf_hash(b"a");
        assert_eq!(
            l0.to_vec(),
            h("423177bd3da55c6ac57419beff9c763bab05e12a6d8908b38b7fc14360228d4a")
        );
        let l2 = leaf_hash(b"b");
        let p1 = parent_hash(2, &l0, &l2);
        assert_eq!(
            p1.to_vec(),
            h("9cac92aaed9e7d11eb629465684582ce39cb496303998de123533b09e16f2f06")
        );
        let l4 = leaf_hash(b"c");
        let th = tree_hash([(1u64, 2u64, &p1), (4, 1, &l4)]);
        assert_eq!(
            th.to_vec(),
            h("7ea73eb86179fb7328e73663f90f4c91256574af1112efe97fdf9309e03b67a7")
        );
    }
}
