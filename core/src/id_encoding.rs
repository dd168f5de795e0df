//! hypercore-id-encoding 1.3.0 (and z32, the z-base-32 it uses): how hypershell and other tools
//! print and read 32-byte keys. [`encode`] gives 52 z-base-32 characters; [`decode`] takes
//! those, 64 hex characters, or a `pear://KEY/...` link.

/// The z-base-32 alphabet.
const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not 52 z-base-32 nor 64 hex characters (JS `Invalid Hypercore key`).
    #[error("invalid key: expected 52 z-base-32 or 64 hex characters")]
    Invalid,
}

fn quintet(c: u8) -> Result<u8, IdError> {
    ALPHABET
        .iter()
        .position(|&a| a == c)
        .map(|p| p as u8)
        .ok_or(IdError::Invalid)
}

/// z-base-32 of any bytes (z32 `encode`): 5 bits a character, most significant first, the
/// last character padded with zero bits.
pub fn z32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes z-base-32 (z32 `decode`): every whole byte the characters carry; leftover bits are
/// dropped as z32 drops them. A character outside the alphabet is an error (z32 reads it as a
/// garbage quintet).
pub fn z32_decode(s: &str) -> Result<Vec<u8>, IdError> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in s.as_bytes() {
        acc = (acc << 5) | u32::from(quintet(c)?);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// A key as hypershell prints it (`HypercoreId.encode`): 52 z-base-32 characters.
pub fn encode(key: &[u8; 32]) -> String {
    z32_encode(key)
}

/// Reads a key (`HypercoreId.decode`): 52 z-base-32 characters, 64 hex characters, or a
/// `pear://` link whose first path part is one of those.
pub fn decode(id: &str) -> Result<[u8; 32], IdError> {
    let id = match id.strip_prefix("pear://") {
        Some(rest) => rest.split('/').next().unwrap_or(""),
        None => id,
    };
    let mut key = [0u8; 32];
    match id.len() {
        52 => {
            let v = z32_decode(id)?;
            key.copy_from_slice(v.get(..32).ok_or(IdError::Invalid)?);
        }
        64 => {
            for (i, pair) in id.as_bytes().chunks(2).enumerate() {
                let hi = (pair[0] as char).to_digit(16).ok_or(IdError::Invalid)?;
                let lo = (pair[1] as char).to_digit(16).ok_or(IdError::Invalid)?;
                key[i] = (hi * 16 + lo) as u8;
            }
        }
        _ => return Err(IdError::Invalid),
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_vectors() {
        // node -e "const z = require('z32'); console.log(z.encode(Buffer.alloc(32, 1)))", and of "hello"
        assert_eq!(
            encode(&[1u8; 32]),
            "yryonyebyryonyebyryonyebyryonyebyryonyebyryonyebyryo"
        );
        assert_eq!(z32_encode(b"hello"), "pb1sa5dx");
        assert_eq!(z32_decode("pb1sa5dx").unwrap(), b"hello");
        let key: [u8; 32] = core::array::from_fn(|i| i as u8 * 7);
        assert_eq!(decode(&encode(&key)).unwrap(), key);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(decode(&hex).unwrap(), key);
        assert_eq!(
            decode(&format!("pear://{}/app", encode(&key))).unwrap(),
            key
        );
    }

    #[test]
    fn bad_ids() {
        assert_eq!(decode("short"), Err(IdError::Invalid));
        assert_eq!(decode(&"0".repeat(52)), Err(IdError::Invalid)); // '0' is not in the alphabet
        assert_eq!(decode(&"zz".repeat(32)), Err(IdError::Invalid));
        assert_eq!(decode(&"é".repeat(26)), Err(IdError::Invalid));
    }
}
