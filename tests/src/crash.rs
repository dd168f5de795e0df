//! Shared pieces of the kill -9 crash test (`tests/crash.rs`) and its child process
//! (`src/bin/crash-appender.rs`): the core's key pair and the content of every block, so the
//! test can check each surviving block byte for byte.

use hyperpunch::crypto::KeyPair;

/// Seed of the crash test core's key pair.
pub const SEED: [u8; 32] = [7u8; 32];

/// The key pair the crash test core is created with.
pub fn key_pair() -> KeyPair {
    KeyPair::from_seed(&SEED)
}

/// The bytes of block `index`: a readable header and 0 to 299 filler bytes, varying per index.
pub fn block_content(index: u64) -> Vec<u8> {
    let mut b = format!("block {index}:").into_bytes();
    let fill = (index.wrapping_mul(7919) % 300) as usize;
    b.resize(b.len() + fill, (index % 251) as u8);
    b
}

/// Size of a block in the crash test's large-block mode: as `core fetch` of a file in 64 KiB
/// blocks writes them, each block its own record in the store's data file.
pub const LARGE_BLOCK: usize = 64 * 1024;

/// The bytes of block `index` in large-block mode: [`block_content`] padded to
/// [`LARGE_BLOCK`] bytes with a filler that varies per index.
pub fn large_block_content(index: u64) -> Vec<u8> {
    let mut b = block_content(index);
    let fill = (index.wrapping_mul(31) % 251) as u8;
    b.resize(LARGE_BLOCK, fill);
    b
}

/// The content of block `index`: [`large_block_content`] if `large`, else [`block_content`].
pub fn content(index: u64, large: bool) -> Vec<u8> {
    if large {
        large_block_content(index)
    } else {
        block_content(index)
    }
}

/// A small xorshift64* generator: deterministic from its seed (the tests print it).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (zero is replaced, xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_differ_and_rng_is_deterministic() {
        assert_ne!(block_content(1), block_content(2));
        assert!(block_content(5).starts_with(b"block 5:"));
        let (mut a, mut b) = (Rng::new(3), Rng::new(3));
        assert_eq!(a.next_u64(), b.next_u64());
        assert!(a.below(10) < 10);
    }
}
