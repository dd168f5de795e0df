//! hypertele 1.1.4: a local TCP port exposed under a key pair (`hypertele-server`) and opened
//! elsewhere as a local port (`hypertele`), each TCP connection one hyperdht connection. What is
//! protocol in it lives here, sans-IO:
//!
//! - who may connect ([`Access`]): anyone, an allow list of client public keys (`allow` in the
//!   JSON configuration), or, in private mode (`--private`), only clients holding the server's
//!   own key pair: the seed is the capability, so the client derives the server's key pair from
//!   it, connects with it, and the server's firewall admits its own public key only;
//! - `--compress` ([`compress`], [`decompress`]): every message on the connection is one gzip
//!   member of one chunk of the TCP stream (node's `zlib.gzip` of each `data` chunk), both ways.
//!
//! The bytes otherwise pass through untouched: a TCP half-close is the connection's end, and
//! the connection's end half-closes the TCP socket.

use std::io::{Read, Write};

use crate::crypto::KeyPair;

/// The largest chunk [`decompress`] gives: a gzip member that inflates further is refused (a
/// decompression bomb). JS has no bound; its senders gzip one TCP chunk (at most 64 KiB in
/// node) per message.
pub const MAX_CHUNK: usize = 16 * 1024 * 1024;

/// Why a compressed message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TeleError {
    /// The message is not a gzip member.
    #[error("a compressed message is not valid gzip: {0}")]
    Gzip(String),
    /// The member inflates beyond [`MAX_CHUNK`].
    #[error("a compressed message inflates beyond {MAX_CHUNK} bytes")]
    TooLarge,
}

/// Who may connect to a hypertele server (its firewall).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Everyone (no `allow` list).
    Anyone,
    /// Only these client public keys (`allow` in the configuration).
    AllowList(Vec<[u8; 32]>),
    /// Private mode: only clients that hold the server's key pair (its public key).
    Private([u8; 32]),
}

impl Access {
    /// Whether the firewall refuses a client (JS `firewall` returning true).
    pub fn refuses(&self, remote_public_key: &[u8; 32]) -> bool {
        match self {
            Access::Anyone => false,
            Access::AllowList(keys) => !keys.contains(remote_public_key),
            Access::Private(own) => own != remote_public_key,
        }
    }
}

/// The server's key pair from its seed (`HyperDHT.keyPair(seed)`); in private mode the client
/// derives the same pair from the same seed and connects with it.
pub fn key_pair(seed: &[u8; 32]) -> KeyPair {
    KeyPair::from_seed(seed)
}

/// One chunk as one gzip member (what `zlib.gzip(chunk)` sends; the bytes may differ from
/// node's, any gzip reader inflates both).
pub fn compress(chunk: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(chunk.len() / 2 + 32),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = e.write_all(chunk);
    e.finish().unwrap_or_default()
}

/// Inflates one message (`zlib.gunzip`): one gzip member, or several back to back as node
/// accepts; at most [`MAX_CHUNK`] bytes.
pub fn decompress(message: &[u8]) -> Result<Vec<u8>, TeleError> {
    let mut out = Vec::new();
    let d = flate2::read::MultiGzDecoder::new(message);
    let n = d
        .take(MAX_CHUNK as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| TeleError::Gzip(e.to_string()))?;
    if n > MAX_CHUNK {
        return Err(TeleError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_rules() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert!(!Access::Anyone.refuses(&a));
        assert!(!Access::AllowList(vec![a]).refuses(&a));
        assert!(Access::AllowList(vec![a]).refuses(&b));
        assert!(Access::AllowList(vec![]).refuses(&a));
        assert!(!Access::Private(a).refuses(&a));
        assert!(Access::Private(a).refuses(&b));
    }

    #[test]
    fn private_mode_pairs_match() {
        let seed = [7u8; 32];
        assert_eq!(
            key_pair(&seed).public_key,
            KeyPair::from_seed(&seed).public_key
        );
    }

    #[test]
    fn gzip_round_trip_and_node_output() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(decompress(&compress(&data)).unwrap(), data);
        assert_eq!(decompress(&compress(b"")).unwrap(), b"");
        // node -e "process.stdout.write(require('zlib').gzipSync('hello\n').toString('hex'))"
        let node = hex_bytes("1f8b0800000000000003cb48cdc9c9e7020020303a3606000000");
        assert_eq!(decompress(&node).unwrap(), b"hello\n");
        // Two members back to back, as zlib.gunzip accepts.
        let mut two = compress(b"ab");
        two.extend(compress(b"cd"));
        assert_eq!(decompress(&two).unwrap(), b"abcd");
    }

    #[test]
    fn bad_gzip_and_bombs_are_errors() {
        assert!(matches!(decompress(b"not gzip"), Err(TeleError::Gzip(_))));
        let mut cut = compress(b"hello world hello world");
        cut.truncate(cut.len() - 3);
        assert!(decompress(&cut).is_err());
        let bomb = compress(&vec![0u8; MAX_CHUNK + 1]);
        assert!(bomb.len() < 64 * 1024);
        assert_eq!(decompress(&bomb), Err(TeleError::TooLarge));
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
