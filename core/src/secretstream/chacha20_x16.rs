//! The ChaCha20 (IETF: 32-bit block counter, 12-byte nonce) keystream of sixteen consecutive
//! blocks at once, one block per 32-bit lane of AVX-512 registers (eight in AVX2 registers).
//!
//! Secret-stream encrypts every message with ChaCha20; the `chacha20` crate's fastest x86 backend
//! runs four blocks in AVX2 registers, two per register, shuffling them between rounds. On CPUs
//! with AVX-512F [`xor_keystream`] XORs whole kilobytes (sixteen 64-byte blocks) with the
//! keystream at about twice that speed; with AVX2 only, whole 512-byte runs (eight blocks, one
//! per lane: no shuffles between rounds). It leaves the tail to the caller; elsewhere (other
//! CPUs, wasm) it does nothing and returns 0.
//!
//! Like `crypto::blake2b_x8`, this module holds `unsafe` code: the intrinsics that load and store
//! memory take raw pointers, and a `#[target_feature]` function may only be called once the CPU
//! is known to have the feature. The tests compare its output with the `chacha20` crate's.
#![allow(unsafe_code)]

/// XORs `data` with the keystream of `key` and `nonce` from block `counter` on, for as many
/// whole 1 KiB runs (16 blocks) as `data` holds with AVX-512F, or whole 512-byte runs (8 blocks)
/// with AVX2 only; returns how many bytes that was (0 on other CPUs). The caller encrypts the
/// rest from block `counter + n / 64`.
pub fn xor_keystream(key: &[u8; 32], nonce: &[u8; 12], counter: u32, data: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if data.len() >= 1024 && std::is_x86_feature_detected!("avx512f") {
            let n = data.len() - data.len() % 1024;
            // SAFETY: AVX-512F was detected just above.
            unsafe { avx512::xor16(key, nonce, counter, &mut data[..n]) };
            return n;
        }
        if data.len() >= 512 && std::is_x86_feature_detected!("avx2") {
            let n = data.len() - data.len() % 512;
            // SAFETY: AVX2 was detected just above.
            unsafe { avx2::xor8(key, nonce, counter, &mut data[..n]) };
            return n;
        }
    }
    let _ = (key, nonce, counter, data);
    0
}

/// Appends to `out` the first whole 512-byte runs of `src` XORed with the keystream of `key`
/// and `nonce` from block `counter` on, in one pass (no copy of `src` first), with AVX2 on
/// x86-64 CPUs without AVX-512F; returns how many bytes that was (0 elsewhere, where the caller
/// copies and then uses [`xor_keystream`]). The caller encrypts the rest from block
/// `counter + n / 64`.
pub fn append_xor_keystream(
    key: &[u8; 32],
    nonce: &[u8; 12],
    counter: u32,
    src: &[u8],
    out: &mut Vec<u8>,
) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if src.len() >= 512
            && !std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx2")
        {
            let n = src.len() - src.len() % 512;
            out.reserve(n);
            let dst = &mut out.spare_capacity_mut()[..n];
            // SAFETY: AVX2 was detected just above; `dst` has room for `n` bytes, all of which
            // `xor8_to` writes.
            unsafe {
                avx2::xor8_to(
                    key,
                    nonce,
                    counter,
                    src[..n].as_ptr(),
                    dst.as_mut_ptr() as *mut u8,
                    n,
                );
                out.set_len(out.len() + n);
            }
            return n;
        }
    }
    let _ = (key, nonce, counter, src, out);
    0
}

/// The ChaCha20 state words of `key` and `nonce` (the counter word, 12, is set per run).
#[cfg(target_arch = "x86_64")]
fn input_words(key: &[u8; 32], nonce: &[u8; 12]) -> [u32; 16] {
    let mut input = [0u32; 16];
    input[..4].copy_from_slice(&[0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574]);
    for (i, w) in key.chunks_exact(4).enumerate() {
        input[4 + i] = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    }
    for (i, w) in nonce.chunks_exact(4).enumerate() {
        input[13 + i] = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    }
    input
}

/// The same in AVX2 registers: eight blocks at once, one per 32-bit lane (CPUs without
/// AVX-512F, such as this project's AMD EPYC machine, where it replaces the `chacha20` crate's
/// four-block AVX2 backend for all but the tail).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2")]
    #[inline]
    fn rol16(v: __m256i) -> __m256i {
        let m = _mm256_setr_epi8(
            2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11,
            8, 9, 14, 15, 12, 13,
        );
        _mm256_shuffle_epi8(v, m)
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn rol8(v: __m256i) -> __m256i {
        let m = _mm256_setr_epi8(
            3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14, 3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9,
            10, 15, 12, 13, 14,
        );
        _mm256_shuffle_epi8(v, m)
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn qr(x: &mut [__m256i; 16], a: usize, b: usize, c: usize, d: usize) {
        x[a] = _mm256_add_epi32(x[a], x[b]);
        x[d] = rol16(_mm256_xor_si256(x[d], x[a]));
        x[c] = _mm256_add_epi32(x[c], x[d]);
        let t = _mm256_xor_si256(x[b], x[c]);
        x[b] = _mm256_or_si256(_mm256_slli_epi32::<12>(t), _mm256_srli_epi32::<20>(t));
        x[a] = _mm256_add_epi32(x[a], x[b]);
        x[d] = rol8(_mm256_xor_si256(x[d], x[a]));
        x[c] = _mm256_add_epi32(x[c], x[d]);
        let t = _mm256_xor_si256(x[b], x[c]);
        x[b] = _mm256_or_si256(_mm256_slli_epi32::<7>(t), _mm256_srli_epi32::<25>(t));
    }

    /// Eight keystream blocks: `out[w]` holds word `w` of blocks `counter..counter + 8`, one
    /// block per lane.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn blocks8(input: &[u32; 16], counter: u32) -> [__m256i; 16] {
        let mut start = [_mm256_setzero_si256(); 16];
        for (s, &w) in start.iter_mut().zip(input) {
            *s = _mm256_set1_epi32(w as i32);
        }
        start[12] = _mm256_add_epi32(
            _mm256_set1_epi32(counter as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        let mut x = start;
        for _ in 0..10 {
            qr(&mut x, 0, 4, 8, 12);
            qr(&mut x, 1, 5, 9, 13);
            qr(&mut x, 2, 6, 10, 14);
            qr(&mut x, 3, 7, 11, 15);
            qr(&mut x, 0, 5, 10, 15);
            qr(&mut x, 1, 6, 11, 12);
            qr(&mut x, 2, 7, 8, 13);
            qr(&mut x, 3, 4, 9, 14);
        }
        for (xi, si) in x.iter_mut().zip(&start) {
            *xi = _mm256_add_epi32(*xi, *si);
        }
        x
    }

    /// XORs `data` (a multiple of 512 bytes) with the keystream from block `counter` on.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn xor8(key: &[u8; 32], nonce: &[u8; 12], counter: u32, data: &mut [u8]) {
        let p = data.as_mut_ptr();
        // SAFETY: AVX2 (the caller's promise); in place over `data`.
        unsafe { xor8_to(key, nonce, counter, p, p, data.len()) }
    }

    /// Writes `len` bytes (a multiple of 512) to `dst`: those at `src` XORed with the keystream
    /// from block `counter` on. `src` and `dst` may be the same (in place).
    ///
    /// # Safety
    /// The CPU must support AVX2; `src` must be readable and `dst` writable for `len` bytes, and
    /// they are either equal or do not overlap.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn xor8_to(
        key: &[u8; 32],
        nonce: &[u8; 12],
        counter: u32,
        src: *const u8,
        dst: *mut u8,
        len: usize,
    ) {
        debug_assert_eq!(len % 512, 0);
        let input = super::input_words(key, nonce);
        for k in 0..len / 512 {
            let x = blocks8(&input, counter.wrapping_add(8 * k as u32));
            // Within each 128-bit lane k: u[g][m] holds words 4g..4g+3 of block 4k+m.
            let mut u = [[_mm256_setzero_si256(); 4]; 4];
            for (g, ug) in u.iter_mut().enumerate() {
                let w = 4 * g;
                let t0 = _mm256_unpacklo_epi32(x[w], x[w + 1]);
                let t1 = _mm256_unpackhi_epi32(x[w], x[w + 1]);
                let t2 = _mm256_unpacklo_epi32(x[w + 2], x[w + 3]);
                let t3 = _mm256_unpackhi_epi32(x[w + 2], x[w + 3]);
                ug[0] = _mm256_unpacklo_epi64(t0, t2);
                ug[1] = _mm256_unpackhi_epi64(t0, t2);
                ug[2] = _mm256_unpacklo_epi64(t1, t3);
                ug[3] = _mm256_unpackhi_epi64(t1, t3);
            }
            let [u0, u1, u2, u3] = u;
            for (m, ((&a0, &a1), (&a2, &a3))) in
                u0.iter().zip(&u1).zip(u2.iter().zip(&u3)).enumerate()
            {
                // Block m: the low 128-bit lanes; block 4 + m: the high ones.
                let halves = [
                    (m, 0, _mm256_permute2x128_si256::<0x20>(a0, a1)),
                    (m, 1, _mm256_permute2x128_si256::<0x20>(a2, a3)),
                    (4 + m, 0, _mm256_permute2x128_si256::<0x31>(a0, a1)),
                    (4 + m, 1, _mm256_permute2x128_si256::<0x31>(a2, a3)),
                ];
                for (b, h, ks) in halves {
                    let at = 512 * k + 64 * b + 32 * h;
                    // SAFETY: `at + 32 <= len` (b < 8, h < 2, k < len / 512), within what the
                    // caller vouched for; unaligned loads and stores.
                    unsafe {
                        let from = src.add(at) as *const __m256i;
                        let to = dst.add(at) as *mut __m256i;
                        _mm256_storeu_si256(to, _mm256_xor_si256(_mm256_loadu_si256(from), ks));
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn qr(x: &mut [__m512i; 16], a: usize, b: usize, c: usize, d: usize) {
        x[a] = _mm512_add_epi32(x[a], x[b]);
        x[d] = _mm512_rol_epi32::<16>(_mm512_xor_si512(x[d], x[a]));
        x[c] = _mm512_add_epi32(x[c], x[d]);
        x[b] = _mm512_rol_epi32::<12>(_mm512_xor_si512(x[b], x[c]));
        x[a] = _mm512_add_epi32(x[a], x[b]);
        x[d] = _mm512_rol_epi32::<8>(_mm512_xor_si512(x[d], x[a]));
        x[c] = _mm512_add_epi32(x[c], x[d]);
        x[b] = _mm512_rol_epi32::<7>(_mm512_xor_si512(x[b], x[c]));
    }

    /// Sixteen keystream blocks: `out[w]` holds word `w` of blocks `counter..counter + 16`, one
    /// block per lane.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn blocks16(input: &[u32; 16], counter: u32) -> [__m512i; 16] {
        let mut start = [_mm512_setzero_si512(); 16];
        for (s, &w) in start.iter_mut().zip(input) {
            *s = _mm512_set1_epi32(w as i32);
        }
        start[12] = _mm512_add_epi32(
            _mm512_set1_epi32(counter as i32),
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        );
        let mut x = start;
        for _ in 0..10 {
            qr(&mut x, 0, 4, 8, 12);
            qr(&mut x, 1, 5, 9, 13);
            qr(&mut x, 2, 6, 10, 14);
            qr(&mut x, 3, 7, 11, 15);
            qr(&mut x, 0, 5, 10, 15);
            qr(&mut x, 1, 6, 11, 12);
            qr(&mut x, 2, 7, 8, 13);
            qr(&mut x, 3, 4, 9, 14);
        }
        for (xi, si) in x.iter_mut().zip(&start) {
            *xi = _mm512_add_epi32(*xi, *si);
        }
        x
    }

    /// Turns word-major `x` (word `w` of block `b` in lane `b` of `x[w]`) into block-major
    /// vectors: output `b` is block `b`'s 64 bytes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn to_blocks(x: [__m512i; 16]) -> [__m512i; 16] {
        // Within each 128-bit lane k: u[g][m] holds words 4g..4g+3 of block 4k+m.
        let mut u = [[_mm512_setzero_si512(); 4]; 4];
        for (g, ug) in u.iter_mut().enumerate() {
            let w = 4 * g;
            let t0 = _mm512_unpacklo_epi32(x[w], x[w + 1]);
            let t1 = _mm512_unpackhi_epi32(x[w], x[w + 1]);
            let t2 = _mm512_unpacklo_epi32(x[w + 2], x[w + 3]);
            let t3 = _mm512_unpackhi_epi32(x[w + 2], x[w + 3]);
            ug[0] = _mm512_unpacklo_epi64(t0, t2);
            ug[1] = _mm512_unpackhi_epi64(t0, t2);
            ug[2] = _mm512_unpacklo_epi64(t1, t3);
            ug[3] = _mm512_unpackhi_epi64(t1, t3);
        }
        // Block 4k+m is lane k of u[0][m], u[1][m], u[2][m], u[3][m]: a 4×4 transpose of
        // 128-bit lanes.
        let mut out = [_mm512_setzero_si512(); 16];
        for m in 0..4 {
            let lo01 = _mm512_shuffle_i32x4::<0b01_00_01_00>(u[0][m], u[1][m]);
            let hi01 = _mm512_shuffle_i32x4::<0b11_10_11_10>(u[0][m], u[1][m]);
            let lo23 = _mm512_shuffle_i32x4::<0b01_00_01_00>(u[2][m], u[3][m]);
            let hi23 = _mm512_shuffle_i32x4::<0b11_10_11_10>(u[2][m], u[3][m]);
            out[m] = _mm512_shuffle_i32x4::<0b10_00_10_00>(lo01, lo23);
            out[4 + m] = _mm512_shuffle_i32x4::<0b11_01_11_01>(lo01, lo23);
            out[8 + m] = _mm512_shuffle_i32x4::<0b10_00_10_00>(hi01, hi23);
            out[12 + m] = _mm512_shuffle_i32x4::<0b11_01_11_01>(hi01, hi23);
        }
        out
    }

    /// XORs `data` (a multiple of 1024 bytes) with the keystream from block `counter` on.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn xor16(key: &[u8; 32], nonce: &[u8; 12], counter: u32, data: &mut [u8]) {
        debug_assert_eq!(data.len() % 1024, 0);
        let input = super::input_words(key, nonce);
        for (k, chunk) in data.chunks_exact_mut(1024).enumerate() {
            let ks = to_blocks(blocks16(&input, counter.wrapping_add(16 * k as u32)));
            for (b, ksb) in ks.iter().enumerate() {
                let p = chunk[64 * b..64 * b + 64].as_mut_ptr() as *mut __m512i;
                // SAFETY: `p` points at 64 bytes of `chunk` (b < 16, chunk is 1024 bytes);
                // unaligned load and store.
                unsafe { _mm512_storeu_si512(p, _mm512_xor_si512(_mm512_loadu_si512(p), *ksb)) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

    #[test]
    fn equals_the_chacha20_crate() {
        let key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let nonce: [u8; 12] = std::array::from_fn(|i| (i * 13 + 1) as u8);
        for (len, counter) in [
            (0, 2),
            (512, 2),
            (1000, 2),
            (1024, 2),
            (1025, 0),
            (5000, 2),
            (65536, 7),
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let mut want = data.clone();
            let mut c = chacha20::ChaCha20::new(&key.into(), &nonce.into());
            c.seek(64 * counter as u64);
            c.apply_keystream(&mut want);

            let mut got = data.clone();
            let n = xor_keystream(&key, &nonce, counter, &mut got);
            assert_eq!(n % 512, 0);
            let mut c = chacha20::ChaCha20::new(&key.into(), &nonce.into());
            c.seek(64 * counter as u64 + n as u64);
            c.apply_keystream(&mut got[n..]);
            assert_eq!(
                got, want,
                "length {len}, counter {counter}, {n} bytes in AVX-512"
            );
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx512f") && len >= 1024 {
                assert_eq!(n, len - len % 1024);
            } else if std::is_x86_feature_detected!("avx2") {
                assert_eq!(n, len - len % 512);
            }

            // Appending, encrypted as it is copied, after bytes already there.
            let mut out = vec![0xee; 3];
            let n = append_xor_keystream(&key, &nonce, counter, &data, &mut out);
            assert_eq!(n % 512, 0);
            assert_eq!(out.len(), 3 + n);
            assert_eq!(&out[..3], &[0xee; 3]);
            assert_eq!(
                &out[3..],
                &want[..n],
                "length {len}, counter {counter}, appended"
            );
        }
    }
}
