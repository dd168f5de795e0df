//! The blocks of `tests/interop/replicate-matrix.js`, built the same way on the Rust side.
//!
//! Block `k` of core `name` on fork `f` is `"{name}/{f} {k} "` followed by [`size`]`(k)` bytes
//! equal to `(k + f) & 255`: mostly small, with a block of about 1 MiB every 1000.

/// The length of block `k`'s filler.
pub fn size(k: u64) -> usize {
    if k % 1000 == 999 {
        (1 << 20) - (k % 7) as usize
    } else {
        ((k * 37) % 3000) as usize
    }
}

/// Block `k` of core `name` on fork `fork`.
pub fn block(name: &str, fork: u64, k: u64) -> Vec<u8> {
    let mut b = format!("{name}/{fork} {k} ").into_bytes();
    b.extend(std::iter::repeat_n((k + fork) as u8, size(k)));
    b
}

/// `count` distinct indices below `below`, spread by a fixed seed (a sparse download's wish list).
pub fn sparse_indices(seed: u64, count: usize, below: u64) -> Vec<u64> {
    let mut x = seed | 1;
    let mut out = std::collections::BTreeSet::new();
    while out.len() < count.min(below as usize) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.insert(x % below);
    }
    out.into_iter().collect()
}
