//! The engines' randomness: a ChaCha20 keystream seeded by the transport.
//!
//! The core never reads a global RNG. An engine that needs randomness takes a 32-byte seed or an
//! [`Rng`] (the native driver draws the seed from the operating system, the simulation from its
//! own seeded generator) and expands it with ChaCha20. dht-rpc draws its first tid, the routing
//! table's random id, the token secrets, the tick offsets and `table.random()` from here
//! ([`crate::dht::rpc::Node::new`]); hyperswarm its retry jitter and queue order; autobase its ack
//! timer's jitter.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;

/// A deterministic cryptographically secure generator (ChaCha20 keystream of a 32-byte seed).
pub struct Rng {
    cipher: ChaCha20,
    buf: [u8; 64],
    pos: usize,
}

impl core::fmt::Debug for Rng {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Rng")
    }
}

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Rng {
            cipher: ChaCha20::new(&seed.into(), &[0u8; 12].into()),
            buf: [0; 64],
            pos: 64,
        }
    }

    /// Fill `out` with random bytes.
    pub fn fill(&mut self, mut out: &mut [u8]) {
        while !out.is_empty() {
            if self.pos == 64 {
                self.buf = [0; 64];
                self.cipher.apply_keystream(&mut self.buf);
                self.pos = 0;
            }
            let n = out.len().min(64 - self.pos);
            out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            out = &mut out[n..];
        }
    }

    /// 32 random bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.fill(&mut out);
        out
    }

    /// A uniformly random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// A uniformly random integer in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Rejection sampling keeps it unbiased.
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::from_seed([7; 32]);
        let mut b = Rng::from_seed([7; 32]);
        assert_eq!(a.bytes32(), b.bytes32());
        assert_eq!(a.next_u64(), b.next_u64());
        let mut c = Rng::from_seed([8; 32]);
        assert_ne!(a.bytes32(), c.bytes32());
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::from_seed([1; 32]);
        for n in [1u64, 2, 3, 10, 1000] {
            for _ in 0..100 {
                assert!(r.below(n) < n);
            }
        }
        assert_eq!(r.below(0), 0);
    }
}
