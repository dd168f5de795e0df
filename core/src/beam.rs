//! hyperbeam 3.1.0: a 1-1 end-to-end encrypted pipe named by a passphrase. The protocol parts,
//! sans-IO:
//!
//! - the passphrase is 32 random bytes in lowercase RFC 4648 base32 without padding (52
//!   characters, [`new_passphrase`]); both sides derive one key pair from it
//!   (`DHT.keyPair(base32decode(passphrase))`, [`key_pair`]);
//! - the side that announces (the one that made the passphrase, or any side given `-r`) listens
//!   on that key pair and its firewall admits only clients connecting *with the same key pair*
//!   ([`refuses`]): knowing the passphrase is the capability; the other side connects to the
//!   pair's public key with the pair;
//! - the bytes pass as they are, one message per write; when one side's input ends its
//!   messages end, and a side whose peer ended ends too.

use crate::crypto::KeyPair;

/// Why a passphrase is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeamError {
    /// A character outside base32 (JS `Invalid base32 characters`).
    #[error("the passphrase has characters outside base32 (a-z, 2-7)")]
    NotBase32,
    /// It does not decode to 32 bytes (JS fails deriving the key pair).
    #[error("the passphrase must decode to 32 bytes (52 base32 characters), not {0}")]
    Length(usize),
}

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The passphrase of 32 random bytes (`toBase32(randomBytes(32))`).
pub fn new_passphrase(random: &[u8; 32]) -> String {
    let mut out = String::with_capacity(52);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in random {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The bytes of a passphrase as hi-base32 0.5.1 `decode.asBytes(passphrase.toUpperCase())`
/// reads them: `=` anywhere is ignored; a last group of 1, 3 or 6 characters gives no bytes.
pub fn decode(passphrase: &str) -> Result<Vec<u8>, BeamError> {
    let mut q = Vec::with_capacity(passphrase.len());
    for c in passphrase.bytes() {
        match c.to_ascii_lowercase() {
            b'=' => {}
            c => q.push(
                ALPHABET
                    .iter()
                    .position(|&a| a == c)
                    .ok_or(BeamError::NotBase32)? as u8,
            ),
        }
    }
    let whole = q.len() / 8 * 8;
    let tail = match q.len() - whole {
        2 => 1,
        4 => 2,
        5 => 3,
        7 => 4,
        _ => 0,
    };
    let mut out = Vec::with_capacity(whole / 8 * 5 + tail);
    let mut acc: u64 = 0;
    let mut bits = 0;
    for &v in &q {
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out.truncate(whole / 8 * 5 + tail);
    Ok(out)
}

/// The key pair both sides derive from the passphrase.
pub fn key_pair(passphrase: &str) -> Result<KeyPair, BeamError> {
    let bytes = decode(passphrase)?;
    let seed: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| BeamError::Length(bytes.len()))?;
    Ok(KeyPair::from_seed(&seed))
}

/// The announcing side's firewall: refuse every client that does not connect with the
/// passphrase's key pair.
pub fn refuses(own_public_key: &[u8; 32], remote_public_key: &[u8; 32]) -> bool {
    own_public_key != remote_public_key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_vectors() {
        // node: seed[i] = i * 3; b32.encode(seed).replace(/=/g, '').toLowerCase(), and
        // DHT.keyPair(Buffer.from(b32.decode.asBytes(key.toUpperCase()))).publicKey
        let seed: [u8; 32] = core::array::from_fn(|i| (i * 3) as u8);
        let key = new_passphrase(&seed);
        assert_eq!(key, "aabqmcimb4jbkga3dyqsijzkfuydgnrzhq7uerkijnhfcvcxljoq");
        let pk = key_pair(&key).unwrap().public_key;
        assert_eq!(
            pk.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "9a3360596bc21712c03345a9d4e9f184c0920619ecd4795b063d4f0987cf863f"
        );
        assert_eq!(key_pair(&key.to_uppercase()).unwrap().public_key, pk);
        assert_eq!(decode("MZXW6===").unwrap(), b"foo");
        assert_eq!(decode("AB=CD").unwrap(), [0, 68]);
    }

    #[test]
    fn bad_passphrases() {
        assert_eq!(decode("hello world"), Err(BeamError::NotBase32));
        assert_eq!(decode("abc1"), Err(BeamError::NotBase32));
        // 51 characters: hi-base32 drops a 3-character tail, 30 bytes.
        let k = new_passphrase(&[9; 32]);
        assert_eq!(key_pair(&k[..51]).unwrap_err(), BeamError::Length(30));
        assert!(matches!(
            key_pair(&format!("{k}a")),
            Err(BeamError::Length(33))
        ));
        assert!(matches!(key_pair(""), Err(BeamError::Length(0))));
    }

    #[test]
    fn only_the_pair_gets_in() {
        let kp = key_pair(&new_passphrase(&[1; 32])).unwrap();
        assert!(!refuses(&kp.public_key, &kp.public_key));
        assert!(refuses(&kp.public_key, &[0; 32]));
    }
}
