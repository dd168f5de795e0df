//! BLAKE2b-256 of eight equal-length messages at once, one message per 64-bit lane of AVX-512
//! registers.
//!
//! Hypercore hashes every block into a leaf (`BLAKE2b-256(0x00 ‖ u64le(len) ‖ block)`), and an
//! append or a replicated batch hashes many blocks of the same size. `blake2b_simd` runs four
//! messages in AVX2 lanes, where each of BLAKE2b's 64-bit rotations costs a shuffle or three
//! instructions; AVX-512 has twice the lanes and a rotate instruction (`vprorq`). On CPUs with
//! AVX-512F this runs the compression function on eight messages per instruction stream; without
//! it (other CPUs, wasm) [`leaf_hashes_x8`] returns `None` and the caller uses `blake2b_simd`.
//!
//! This module and `secretstream::chacha20_x16` are the core's only `unsafe` code: the `std::arch` intrinsics that load
//! memory take raw pointers, and a `#[target_feature]` function may only be called once the CPU is
//! known to have the feature. Each `unsafe` block says why it is sound; the tests compare every
//! result with `blake2b_simd` over lengths that cover each block-boundary case.
#![allow(unsafe_code)]

use super::Hash;

/// The eight lanes' leaf hashes of eight blocks of one length, or `None` when this CPU lacks
/// AVX-512F (or the blocks' lengths differ).
pub fn leaf_hashes_x8(blocks: [&[u8]; 8]) -> Option<[Hash; 8]> {
    #[cfg(target_arch = "x86_64")]
    {
        let len = blocks[0].len();
        if blocks.iter().any(|b| b.len() != len) || !available() {
            return None;
        }
        let mut prefix = [0u8; 9];
        prefix[1..].copy_from_slice(&(len as u64).to_le_bytes());
        let mut out = [[0u8; 32]; 8];
        // SAFETY: `available()` checked that this CPU has AVX-512F, the only feature the function
        // is compiled with.
        unsafe { avx512::hash8(&prefix[..], &blocks, &mut out) };
        Some(out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = blocks;
        None
    }
}

/// BLAKE2b-256 of eight messages of one length at once (a merkle tree's parent nodes: 73 bytes
/// each), or `None` when this CPU lacks AVX-512F (or the lengths differ).
pub fn hashes_x8(messages: [&[u8]; 8]) -> Option<[Hash; 8]> {
    #[cfg(target_arch = "x86_64")]
    {
        let len = messages[0].len();
        if messages.iter().any(|m| m.len() != len) || !available() {
            return None;
        }
        let mut out = [[0u8; 32]; 8];
        // SAFETY: `available()` checked that this CPU has AVX-512F, the only feature the function
        // is compiled with.
        unsafe { avx512::hash8(&[], &messages, &mut out) };
        Some(out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = messages;
        None
    }
}

/// Whether this CPU runs [`leaf_hashes_x8`] and [`hashes_x8`] (x86-64 with AVX-512F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    const IV: [u64; 8] = [
        0x6a09e667f3bcc908,
        0xbb67ae8584caa73b,
        0x3c6ef372fe94f82b,
        0xa54ff53a5f1d36f1,
        0x510e527fade682d1,
        0x9b05688c2b3e6c1f,
        0x1f83d9abfb41bd6b,
        0x5be0cd19137e2179,
    ];

    const SIGMA: [[usize; 16]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
        [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
        [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
        [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
        [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
        [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
        [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
        [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
        [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
    ];

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn g(v: &mut [__m512i; 16], a: usize, b: usize, c: usize, d: usize, x: __m512i, y: __m512i) {
        v[a] = _mm512_add_epi64(_mm512_add_epi64(v[a], v[b]), x);
        v[d] = _mm512_ror_epi64::<32>(_mm512_xor_si512(v[d], v[a]));
        v[c] = _mm512_add_epi64(v[c], v[d]);
        v[b] = _mm512_ror_epi64::<24>(_mm512_xor_si512(v[b], v[c]));
        v[a] = _mm512_add_epi64(_mm512_add_epi64(v[a], v[b]), y);
        v[d] = _mm512_ror_epi64::<16>(_mm512_xor_si512(v[d], v[a]));
        v[c] = _mm512_add_epi64(v[c], v[d]);
        v[b] = _mm512_ror_epi64::<63>(_mm512_xor_si512(v[b], v[c]));
    }

    /// One BLAKE2b compression of the eight lanes' state `h` with message words `m` (word `w` of
    /// every lane in `m[w]`), byte counter `t` and the final-block flag.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn compress(h: &mut [__m512i; 8], m: &[__m512i; 16], t: u64, last: bool) {
        let mut v = [_mm512_setzero_si512(); 16];
        v[..8].copy_from_slice(h);
        for i in 0..8 {
            v[8 + i] = _mm512_set1_epi64(IV[i] as i64);
        }
        v[12] = _mm512_set1_epi64((IV[4] ^ t) as i64);
        if last {
            v[14] = _mm512_set1_epi64(!IV[6] as i64);
        }
        for r in 0..12 {
            let s = &SIGMA[r % 10];
            g(&mut v, 0, 4, 8, 12, m[s[0]], m[s[1]]);
            g(&mut v, 1, 5, 9, 13, m[s[2]], m[s[3]]);
            g(&mut v, 2, 6, 10, 14, m[s[4]], m[s[5]]);
            g(&mut v, 3, 7, 11, 15, m[s[6]], m[s[7]]);
            g(&mut v, 0, 5, 10, 15, m[s[8]], m[s[9]]);
            g(&mut v, 1, 6, 11, 12, m[s[10]], m[s[11]]);
            g(&mut v, 2, 7, 8, 13, m[s[12]], m[s[13]]);
            g(&mut v, 3, 4, 9, 14, m[s[14]], m[s[15]]);
        }
        for i in 0..8 {
            h[i] = _mm512_xor_si512(h[i], _mm512_xor_si512(v[i], v[i + 8]));
        }
    }

    /// Transposes an 8×8 matrix of 64-bit words: row `j` of `r` (lane `j`'s eight words) becomes
    /// element `j` of every output vector (output `w` holds word `w` of all lanes).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn transpose(r: [__m512i; 8]) -> [__m512i; 8] {
        // Pairs of rows: a0 = r0.0 r1.0 r0.2 r1.2 r0.4 r1.4 r0.6 r1.6, a1 = the odd words.
        let a0 = _mm512_unpacklo_epi64(r[0], r[1]);
        let a1 = _mm512_unpackhi_epi64(r[0], r[1]);
        let a2 = _mm512_unpacklo_epi64(r[2], r[3]);
        let a3 = _mm512_unpackhi_epi64(r[2], r[3]);
        let a4 = _mm512_unpacklo_epi64(r[4], r[5]);
        let a5 = _mm512_unpackhi_epi64(r[4], r[5]);
        let a6 = _mm512_unpacklo_epi64(r[6], r[7]);
        let a7 = _mm512_unpackhi_epi64(r[6], r[7]);
        // Quads of rows: b0 = words 0 and 4 of rows 0-3, b1 = words 2 and 6, b2 = 1 and 5,
        // b3 = 3 and 7; b4..b7 the same of rows 4-7.
        let even = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
        let odd = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
        let b0 = _mm512_permutex2var_epi64(a0, even, a2);
        let b1 = _mm512_permutex2var_epi64(a0, odd, a2);
        let b2 = _mm512_permutex2var_epi64(a1, even, a3);
        let b3 = _mm512_permutex2var_epi64(a1, odd, a3);
        let b4 = _mm512_permutex2var_epi64(a4, even, a6);
        let b5 = _mm512_permutex2var_epi64(a4, odd, a6);
        let b6 = _mm512_permutex2var_epi64(a5, even, a7);
        let b7 = _mm512_permutex2var_epi64(a5, odd, a7);
        // All eight rows: the low halves give words 0-3, the high halves words 4-7.
        let lo = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
        let hi = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
        [
            _mm512_permutex2var_epi64(b0, lo, b4),
            _mm512_permutex2var_epi64(b2, lo, b6),
            _mm512_permutex2var_epi64(b1, lo, b5),
            _mm512_permutex2var_epi64(b3, lo, b7),
            _mm512_permutex2var_epi64(b0, hi, b4),
            _mm512_permutex2var_epi64(b2, hi, b6),
            _mm512_permutex2var_epi64(b1, hi, b5),
            _mm512_permutex2var_epi64(b3, hi, b7),
        ]
    }

    /// BLAKE2b-256 of `prefix ‖ blocks[j]` into `out[j]` for the eight lanes; every block has the
    /// same length. `prefix` is at most 128 bytes (9 or none).
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn hash8(prefix: &[u8], blocks: &[&[u8]; 8], out: &mut [[u8; 32]; 8]) {
        let n = blocks[0].len();
        debug_assert!(blocks.iter().all(|b| b.len() == n));
        let total = n + prefix.len();
        // An empty message is still one (zero) block.
        let count = total.div_ceil(128).max(1);
        // Parameter block: 32-byte digest, no key, fanout 1, depth 1.
        let mut h = [_mm512_setzero_si512(); 8];
        for (i, hi) in h.iter_mut().enumerate() {
            let p = if i == 0 { 0x0101_0020 } else { 0 };
            *hi = _mm512_set1_epi64((IV[i] ^ p) as i64);
        }
        // Blocks that are not wholly inside a lane's data (the first, with the prefix, and a
        // short last one) are copied here, zero-padded.
        let mut staging = [[0u8; 128]; 8];
        for k in 0..count {
            let start = k * 128;
            let end = (start + 128).min(total);
            let inside = start >= prefix.len() && end - start == 128;
            let mut lo = [_mm512_setzero_si512(); 8];
            let mut hi = [_mm512_setzero_si512(); 8];
            for j in 0..8 {
                let ptr = if inside {
                    // Message bytes [start, start + 128) are data bytes from start - 9, all
                    // within the block since end = start + 128 <= total.
                    blocks[j][start - prefix.len()..end - prefix.len()].as_ptr()
                } else {
                    let buf = &mut staging[j];
                    buf.fill(0);
                    let mut at = 0;
                    if start < prefix.len() {
                        at = prefix.len() - start;
                        buf[..at].copy_from_slice(&prefix[start..]);
                    }
                    let from = (start + at) - prefix.len();
                    let to = end - prefix.len();
                    buf[at..at + (to - from)].copy_from_slice(&blocks[j][from..to]);
                    buf.as_ptr()
                };
                // SAFETY: `ptr` points at 128 readable bytes (a 128-byte slice of the block or
                // the staging buffer); unaligned loads allow any alignment.
                unsafe {
                    lo[j] = _mm512_loadu_si512(ptr as *const __m512i);
                    hi[j] = _mm512_loadu_si512(ptr.add(64) as *const __m512i);
                }
            }
            let lo = transpose(lo);
            let hi = transpose(hi);
            let mut m = [_mm512_setzero_si512(); 16];
            m[..8].copy_from_slice(&lo);
            m[8..].copy_from_slice(&hi);
            compress(&mut h, &m, end as u64, k + 1 == count);
        }
        let mut words = [[0u64; 8]; 4];
        for (w, hw) in words.iter_mut().zip(&h) {
            // SAFETY: `w` is 64 writable bytes; unaligned store.
            unsafe { _mm512_storeu_si512(w.as_mut_ptr() as *mut __m512i, *hw) };
        }
        for (j, o) in out.iter_mut().enumerate() {
            for (w, word) in words.iter().enumerate() {
                o[w * 8..w * 8 + 8].copy_from_slice(&word[j].to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::leaf_hash;

    #[test]
    fn equals_leaf_hash_at_every_boundary() {
        if !available() {
            eprintln!("no AVX-512F on this CPU: leaf_hashes_x8 is not used here");
            assert!(leaf_hashes_x8([&[][..]; 8]).is_none());
            return;
        }
        // Lengths around each 128-byte boundary of the 9-byte-prefixed message, and large ones.
        let mut lens: Vec<usize> = (0..300).collect();
        for k in 2..40 {
            for d in [-2i64, -1, 0, 1, 2] {
                lens.push((k * 128 + d - 9) as usize);
            }
        }
        lens.extend([4096, 4097, 65536, 1 << 20]);
        for len in lens {
            let data: Vec<Vec<u8>> = (0..8)
                .map(|j| {
                    (0..len)
                        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(j * 7 + len as u32) as u8)
                        .collect()
                })
                .collect();
            let blocks: [&[u8]; 8] = std::array::from_fn(|j| data[j].as_slice());
            let got = leaf_hashes_x8(blocks).expect("AVX-512F available");
            for j in 0..8 {
                assert_eq!(got[j], leaf_hash(&data[j]), "length {len}, lane {j}");
            }
        }
    }

    #[test]
    fn hashes_x8_equals_blake2b() {
        if !available() {
            assert!(hashes_x8([&[][..]; 8]).is_none());
            return;
        }
        let mut lens: Vec<usize> = (0..300).collect();
        lens.extend([383, 384, 385, 4096, 65537]);
        for len in lens {
            let data: Vec<Vec<u8>> = (0..8)
                .map(|j| {
                    (0..len)
                        .map(|i| (i as u32).wrapping_mul(17).wrapping_add(j * 5 + len as u32) as u8)
                        .collect()
                })
                .collect();
            let messages: [&[u8]; 8] = std::array::from_fn(|j| data[j].as_slice());
            let got = hashes_x8(messages).expect("AVX-512F available");
            for j in 0..8 {
                assert_eq!(
                    got[j],
                    crate::crypto::hash(&data[j]),
                    "length {len}, lane {j}"
                );
            }
        }
        let a = [0u8; 73];
        let b = [0u8; 72];
        let mut messages: [&[u8]; 8] = [&a; 8];
        messages[3] = &b;
        assert!(hashes_x8(messages).is_none());
    }

    #[test]
    fn refuses_unequal_lengths() {
        let a = [0u8; 10];
        let b = [0u8; 11];
        let mut blocks: [&[u8]; 8] = [&a; 8];
        blocks[5] = &b;
        assert!(leaf_hashes_x8(blocks).is_none());
    }
}
