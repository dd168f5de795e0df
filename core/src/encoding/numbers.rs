//! Fixed-width, big-endian, zig-zag, arbitrary-precision and floating-point numbers
//! (`index.js:42-322`, `1135-1192`).

use super::MAX_SAFE_INTEGER;
use super::{uint_len, write_uint, Decode, DecodeError, Decoder, Encode, EncodeError};

/// Largest value JS `int` (and `date`) encodes: 2^52-1 (zig-zag doubles the magnitude).
pub const MAX_SAFE_INT: i64 = (1 << 52) - 1;
/// Smallest value JS `int` (and `date`) encodes: -2^52.
pub const MIN_SAFE_INT: i64 = -(1 << 52);

/// Zig-zag encode (0, -1, 1, -2, 2 → 0, 1, 2, 3, 4), identical to JS for every `i64`.
#[inline]
pub fn zigzag_encode(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

/// Zig-zag decode, the inverse of [`zigzag_encode`].
#[inline]
pub fn zigzag_decode(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// Append `uint8`.
#[inline]
pub fn write_u8(out: &mut Vec<u8>, n: u8) {
    out.push(n)
}
/// Append `uint16` (little-endian); also `port`.
#[inline]
pub fn write_u16(out: &mut Vec<u8>, n: u16) {
    out.extend_from_slice(&n.to_le_bytes())
}
/// Append `uint24` (little-endian). Like JS, only the low 24 bits of `n` are written.
#[inline]
pub fn write_u24(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes()[..3])
}
/// Append `uint32` (little-endian).
#[inline]
pub fn write_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes())
}
/// Append `uint40` (little-endian). Like JS, only the low 40 bits of `n` are written.
#[inline]
pub fn write_u40(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_le_bytes()[..5])
}
/// Append `uint48` (little-endian). Like JS, only the low 48 bits of `n` are written.
#[inline]
pub fn write_u48(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_le_bytes()[..6])
}
/// Append `uint56` (little-endian). Like JS, only the low 56 bits of `n` are written.
#[inline]
pub fn write_u56(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_le_bytes()[..7])
}
/// Append `uint64` / `biguint64` (little-endian).
#[inline]
pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_le_bytes())
}
/// Append `uint32be`.
#[inline]
pub fn write_u32_be(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_be_bytes())
}
/// Append `uint64be`.
#[inline]
pub fn write_u64_be(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_be_bytes())
}

/// Append a varint `uint`, failing like JS (`use biguint`) above [`MAX_SAFE_INTEGER`].
pub fn try_write_uint(out: &mut Vec<u8>, n: u64) -> Result<(), EncodeError> {
    if n > MAX_SAFE_INTEGER {
        return Err(EncodeError::IntegerOutOfRange("uint"));
    }
    write_uint(out, n);
    Ok(())
}

/// Bytes [`write_int`] takes.
#[inline]
pub fn int_len(n: i64) -> usize {
    uint_len(zigzag_encode(n))
}
/// Append a zig-zag varint `int`. Every `i64` is written; JS only accepts
/// [`MIN_SAFE_INT`]`..=`[`MAX_SAFE_INT`] and [`Decoder::int`] rejects what lies outside, so use
/// [`try_write_int`] for values that are not known to be in range.
#[inline]
pub fn write_int(out: &mut Vec<u8>, n: i64) {
    write_uint(out, zigzag_encode(n))
}
/// Append a zig-zag varint `int`, failing like JS (`use bigint`) outside
/// [`MIN_SAFE_INT`]`..=`[`MAX_SAFE_INT`].
pub fn try_write_int(out: &mut Vec<u8>, n: i64) -> Result<(), EncodeError> {
    if !(MIN_SAFE_INT..=MAX_SAFE_INT).contains(&n) {
        return Err(EncodeError::IntegerOutOfRange("int"));
    }
    write_int(out, n);
    Ok(())
}
/// Append `date`: the `int` of milliseconds since the Unix epoch (same range rules as `int`).
pub fn write_date(out: &mut Vec<u8>, ms: i64) -> Result<(), EncodeError> {
    try_write_int(out, ms)
}
/// Append `int8` (zig-zag `uint8`).
#[inline]
pub fn write_int8(out: &mut Vec<u8>, n: i8) {
    out.push(((n << 1) ^ (n >> 7)) as u8)
}
/// Append `int16` (zig-zag `uint16`).
#[inline]
pub fn write_int16(out: &mut Vec<u8>, n: i16) {
    write_u16(out, ((n << 1) ^ (n >> 15)) as u16)
}
/// Append `int24` (zig-zag `uint24`); like JS only the low 24 bits of the zig-zag value are
/// written, so `n` must lie in `-2^23..2^23` to round-trip.
#[inline]
pub fn write_int24(out: &mut Vec<u8>, n: i32) {
    write_u24(out, ((n << 1) ^ (n >> 31)) as u32)
}
/// Append `int32` (zig-zag `uint32`).
#[inline]
pub fn write_int32(out: &mut Vec<u8>, n: i32) {
    write_u32(out, ((n << 1) ^ (n >> 31)) as u32)
}
/// Append `int40` (zig-zag `uint40`, low 40 bits like JS).
#[inline]
pub fn write_int40(out: &mut Vec<u8>, n: i64) {
    write_u40(out, zigzag_encode(n))
}
/// Append `int48` (zig-zag `uint48`, low 48 bits like JS).
#[inline]
pub fn write_int48(out: &mut Vec<u8>, n: i64) {
    write_u48(out, zigzag_encode(n))
}
/// Append `int56` (zig-zag `uint56`, low 56 bits like JS).
#[inline]
pub fn write_int56(out: &mut Vec<u8>, n: i64) {
    write_u56(out, zigzag_encode(n))
}
/// Append `int64` (zig-zag `uint64`). Also `bigint64`: see [`write_bigint64`].
#[inline]
pub fn write_int64(out: &mut Vec<u8>, n: i64) {
    write_u64(out, zigzag_encode(n))
}
/// Append `bigint64` (zig-zag `biguint64`, the full `i64` range).
#[inline]
pub fn write_bigint64(out: &mut Vec<u8>, n: i64) {
    write_int64(out, n)
}
/// Append `float32` (IEEE-754 little-endian).
#[inline]
pub fn write_f32(out: &mut Vec<u8>, n: f32) {
    out.extend_from_slice(&n.to_le_bytes())
}
/// Append `float64` (IEEE-754 little-endian).
#[inline]
pub fn write_f64(out: &mut Vec<u8>, n: f64) {
    out.extend_from_slice(&n.to_le_bytes())
}

fn safe(n: u64) -> Result<u64, DecodeError> {
    if n > MAX_SAFE_INTEGER {
        Err(DecodeError::IntegerOutOfRange)
    } else {
        Ok(n)
    }
}

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

impl<'a> Decoder<'a> {
    /// `uint40` (little-endian).
    pub fn u40(&mut self) -> Result<u64, DecodeError> {
        Ok(le(self.take(5)?))
    }
    /// `uint48` (little-endian).
    pub fn u48(&mut self) -> Result<u64, DecodeError> {
        Ok(le(self.take(6)?))
    }
    /// `uint56` (little-endian, the full 56-bit range; JS rejects values above 2^53-1, see
    /// [`Decoder::u56_safe`]).
    pub fn u56(&mut self) -> Result<u64, DecodeError> {
        Ok(le(self.take(7)?))
    }
    /// `uint56` limited to the JS safe range as JS decodes it.
    pub fn u56_safe(&mut self) -> Result<u64, DecodeError> {
        safe(self.u56()?)
    }
    /// `uint32be`.
    pub fn u32_be(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.fixed()?))
    }
    /// `uint64be` over the full 64-bit range (JS rejects above 2^53-1, see
    /// [`Decoder::u64_be_safe`]).
    pub fn u64_be(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.fixed()?))
    }
    /// `uint64be` limited to the JS safe range as JS decodes it.
    pub fn u64_be_safe(&mut self) -> Result<u64, DecodeError> {
        safe(self.u64_be()?)
    }
    /// `biguint64` (little-endian, full range).
    pub fn biguint64(&mut self) -> Result<u64, DecodeError> {
        self.u64()
    }
    /// `bigint64` (zig-zag `biguint64`, full `i64` range).
    pub fn bigint64(&mut self) -> Result<i64, DecodeError> {
        Ok(zigzag_decode(self.u64()?))
    }
    /// Zig-zag varint `int`; like JS the zig-zag value must be at most 2^53-1, so the result lies in
    /// [`MIN_SAFE_INT`]`..=`[`MAX_SAFE_INT`].
    pub fn int(&mut self) -> Result<i64, DecodeError> {
        Ok(zigzag_decode(self.uint()?))
    }
    /// Zig-zag varint `int` over the full `i64` range (the inverse of [`write_int`]).
    pub fn int_full(&mut self) -> Result<i64, DecodeError> {
        Ok(zigzag_decode(self.uint_full()?))
    }
    /// `date`: an `int` of milliseconds since the Unix epoch.
    pub fn date(&mut self) -> Result<i64, DecodeError> {
        self.int()
    }
    /// `int8`.
    pub fn int8(&mut self) -> Result<i8, DecodeError> {
        let n = self.u8()?;
        Ok(((n >> 1) as i8) ^ -((n & 1) as i8))
    }
    /// `int16`.
    pub fn int16(&mut self) -> Result<i16, DecodeError> {
        let n = self.u16()?;
        Ok(((n >> 1) as i16) ^ -((n & 1) as i16))
    }
    /// `int24`.
    pub fn int24(&mut self) -> Result<i32, DecodeError> {
        let n = self.u24()?;
        Ok(((n >> 1) as i32) ^ -((n & 1) as i32))
    }
    /// `int32`.
    pub fn int32(&mut self) -> Result<i32, DecodeError> {
        let n = self.u32()?;
        Ok(((n >> 1) as i32) ^ -((n & 1) as i32))
    }
    /// `int40`.
    pub fn int40(&mut self) -> Result<i64, DecodeError> {
        Ok(zigzag_decode(self.u40()?))
    }
    /// `int48`.
    pub fn int48(&mut self) -> Result<i64, DecodeError> {
        Ok(zigzag_decode(self.u48()?))
    }
    /// `int56`; like JS the zig-zag value must be at most 2^53-1.
    pub fn int56(&mut self) -> Result<i64, DecodeError> {
        Ok(zigzag_decode(self.u56_safe()?))
    }
    /// `int64`; like JS the zig-zag value must be at most 2^53-1 (see [`Decoder::bigint64`] for
    /// the full range).
    pub fn int64(&mut self) -> Result<i64, DecodeError> {
        Ok(zigzag_decode(self.u64_safe()?))
    }
    /// `float32` (IEEE-754 little-endian).
    pub fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_le_bytes(self.fixed()?))
    }
    /// `float64` (IEEE-754 little-endian).
    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.fixed()?))
    }
    /// `biguint`: a `uint` limb count, then 64-bit little-endian limbs, least significant first.
    pub fn biguint(&mut self) -> Result<BigUint, DecodeError> {
        let n = self.uint_usize()?;
        let bytes = n
            .checked_mul(8)
            .ok_or(DecodeError::IntegerOutOfRange)
            .and_then(|len| self.take(len))?;
        Ok(BigUint::from_limbs(
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        ))
    }
    /// `bigint`: the zig-zag `biguint`.
    pub fn bigint(&mut self) -> Result<BigInt, DecodeError> {
        Ok(BigInt::from_zigzag(self.biguint()?))
    }
}

/// A non-negative integer of any size (JS `BigInt` as `biguint` encodes it): little-endian 64-bit
/// limbs without high zero limbs (zero has no limbs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct BigUint {
    limbs: Vec<u64>,
}

impl BigUint {
    /// Build from little-endian limbs (high zero limbs are dropped).
    pub fn from_limbs(mut limbs: Vec<u64>) -> Self {
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
        BigUint { limbs }
    }
    /// The little-endian limbs (empty for zero).
    pub fn limbs(&self) -> &[u64] {
        &self.limbs
    }
    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.limbs.is_empty()
    }
    /// The value as a `u128`, if it fits.
    pub fn to_u128(&self) -> Option<u128> {
        match self.limbs.as_slice() {
            [] => Some(0),
            [a] => Some(*a as u128),
            [a, b] => Some(*a as u128 | (*b as u128) << 64),
            _ => None,
        }
    }
    fn is_odd(&self) -> bool {
        self.limbs.first().is_some_and(|l| l & 1 == 1)
    }
    fn shl1(&self) -> BigUint {
        let mut out = Vec::with_capacity(self.limbs.len() + 1);
        let mut carry = 0;
        for &l in &self.limbs {
            out.push((l << 1) | carry);
            carry = l >> 63;
        }
        out.push(carry);
        BigUint::from_limbs(out)
    }
    fn shr1(&self) -> BigUint {
        let mut out = self.limbs.clone();
        for i in 0..out.len() {
            let hi = out.get(i + 1).map_or(0, |h| h << 63);
            out[i] = (out[i] >> 1) | hi;
        }
        BigUint::from_limbs(out)
    }
    fn add1(&self) -> BigUint {
        let mut out = self.limbs.clone();
        for l in out.iter_mut() {
            let (v, overflow) = l.overflowing_add(1);
            *l = v;
            if !overflow {
                return BigUint::from_limbs(out);
            }
        }
        out.push(1);
        BigUint::from_limbs(out)
    }
    /// `self - 1` for a non-zero value.
    fn sub1(&self) -> BigUint {
        let mut out = self.limbs.clone();
        for l in out.iter_mut() {
            let (v, borrow) = l.overflowing_sub(1);
            *l = v;
            if !borrow {
                break;
            }
        }
        BigUint::from_limbs(out)
    }
}

impl From<u64> for BigUint {
    fn from(n: u64) -> Self {
        BigUint::from_limbs(vec![n])
    }
}
impl From<u128> for BigUint {
    fn from(n: u128) -> Self {
        BigUint::from_limbs(vec![n as u64, (n >> 64) as u64])
    }
}

/// `biguint`.
impl Encode for BigUint {
    fn encoded_len(&self) -> usize {
        uint_len(self.limbs.len() as u64) + 8 * self.limbs.len()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.limbs.len() as u64);
        for l in &self.limbs {
            write_u64(out, *l);
        }
    }
}
impl Decode<'_> for BigUint {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.biguint()
    }
}

/// A signed integer of any size (JS `BigInt` as `bigint` encodes it: zig-zag, then `biguint`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct BigInt {
    negative: bool,
    magnitude: BigUint,
}

impl BigInt {
    /// Build from a sign and a magnitude (negative zero becomes zero).
    pub fn new(negative: bool, magnitude: BigUint) -> Self {
        BigInt {
            negative: negative && !magnitude.is_zero(),
            magnitude,
        }
    }
    /// True below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }
    /// The absolute value.
    pub fn magnitude(&self) -> &BigUint {
        &self.magnitude
    }
    /// The value as an `i128`, if it fits.
    pub fn to_i128(&self) -> Option<i128> {
        let m = self.magnitude.to_u128()?;
        if self.negative {
            0i128.checked_sub_unsigned(m)
        } else {
            i128::try_from(m).ok()
        }
    }
    /// The zig-zag form `bigint` writes (`n < 0 ? 2|n|-1 : 2n`).
    pub fn to_zigzag(&self) -> BigUint {
        let doubled = self.magnitude.shl1();
        if self.negative {
            doubled.sub1()
        } else {
            doubled
        }
    }
    /// Undo [`BigInt::to_zigzag`].
    pub fn from_zigzag(z: BigUint) -> Self {
        if z.is_odd() {
            BigInt::new(true, z.add1().shr1())
        } else {
            BigInt::new(false, z.shr1())
        }
    }
}

impl From<i64> for BigInt {
    fn from(n: i64) -> Self {
        BigInt::new(n < 0, BigUint::from(n.unsigned_abs()))
    }
}
impl From<i128> for BigInt {
    fn from(n: i128) -> Self {
        BigInt::new(n < 0, BigUint::from(n.unsigned_abs()))
    }
}

/// `bigint`.
impl Encode for BigInt {
    fn encoded_len(&self) -> usize {
        self.to_zigzag().encoded_len()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        self.to_zigzag().encode(out)
    }
}
impl Decode<'_> for BigInt {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.bigint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_matches_js_formula() {
        for n in [
            0i64,
            -1,
            1,
            -2,
            2,
            i64::MAX,
            i64::MIN,
            MAX_SAFE_INT,
            MIN_SAFE_INT,
        ] {
            let js = if n < 0 {
                (2 * -(n as i128) - 1) as u64
            } else {
                2 * n as u64
            };
            assert_eq!(zigzag_encode(n), js, "{n}");
            assert_eq!(zigzag_decode(js), n);
        }
    }

    #[test]
    fn fixed_width_round_trips() {
        let mut v = vec![];
        write_u40(&mut v, 0x12_3456_789a);
        write_u48(&mut v, 0x1234_5678_9abc);
        write_u56(&mut v, 0xff_ffff_ffff_ffff);
        write_u64_be(&mut v, 1 << 60);
        write_int8(&mut v, -128);
        write_int16(&mut v, i16::MIN);
        write_int24(&mut v, -(1 << 23));
        write_int32(&mut v, i32::MIN);
        write_int40(&mut v, -5);
        write_int48(&mut v, 7);
        write_int56(&mut v, -(1 << 52));
        write_int64(&mut v, MAX_SAFE_INT);
        write_bigint64(&mut v, i64::MIN);
        let mut d = Decoder::new(&v);
        assert_eq!(d.u40().unwrap(), 0x12_3456_789a);
        assert_eq!(d.u48().unwrap(), 0x1234_5678_9abc);
        assert_eq!(d.clone().u56_safe(), Err(DecodeError::IntegerOutOfRange));
        assert_eq!(d.u56().unwrap(), 0xff_ffff_ffff_ffff);
        assert_eq!(d.clone().u64_be_safe(), Err(DecodeError::IntegerOutOfRange));
        assert_eq!(d.u64_be().unwrap(), 1 << 60);
        assert_eq!(d.int8().unwrap(), -128);
        assert_eq!(d.int16().unwrap(), i16::MIN);
        assert_eq!(d.int24().unwrap(), -(1 << 23));
        assert_eq!(d.int32().unwrap(), i32::MIN);
        assert_eq!(d.int40().unwrap(), -5);
        assert_eq!(d.int48().unwrap(), 7);
        assert_eq!(d.int56().unwrap(), -(1 << 52));
        assert_eq!(d.int64().unwrap(), MAX_SAFE_INT);
        assert_eq!(d.bigint64().unwrap(), i64::MIN);
        d.finish().unwrap();
    }

    #[test]
    fn int_range_like_js() {
        let mut v = vec![];
        assert_eq!(
            try_write_int(&mut v, MAX_SAFE_INT + 1),
            Err(EncodeError::IntegerOutOfRange("int"))
        );
        assert_eq!(
            try_write_int(&mut v, MIN_SAFE_INT - 1),
            Err(EncodeError::IntegerOutOfRange("int"))
        );
        assert!(v.is_empty());
        write_int(&mut v, MAX_SAFE_INT + 1);
        assert_eq!(Decoder::new(&v).int(), Err(DecodeError::IntegerOutOfRange));
        assert_eq!(Decoder::new(&v).int_full().unwrap(), MAX_SAFE_INT + 1);
        assert_eq!(
            try_write_uint(&mut v, MAX_SAFE_INTEGER + 1),
            Err(EncodeError::IntegerOutOfRange("uint"))
        );
    }

    #[test]
    fn bigints_round_trip() {
        for n in [
            0i128,
            1,
            -1,
            i64::MAX as i128,
            i64::MIN as i128,
            u64::MAX as i128,
            -(u64::MAX as i128),
            i128::MAX,
            i128::MIN + 1,
            i128::MIN,
        ] {
            let b = BigInt::from(n);
            let bytes = b.to_bytes();
            assert_eq!(bytes.len(), b.encoded_len());
            let back = BigInt::from_bytes(&bytes).unwrap();
            assert_eq!(back.to_i128(), Some(n), "{n}");
        }
        let big = BigUint::from_limbs(vec![1, 2, 3, 0]);
        assert_eq!(big.limbs(), &[1, 2, 3]);
        assert_eq!(BigUint::from_bytes(&big.to_bytes()).unwrap(), big);
        assert_eq!(big.to_u128(), None);
        // non-canonical high zero limbs decode to the same value, as in JS
        let mut v = vec![2];
        write_u64(&mut v, 5);
        write_u64(&mut v, 0);
        assert_eq!(BigUint::from_bytes(&v).unwrap(), BigUint::from(5u64));
        // a limb count that cannot be backed by the input fails without allocating
        assert!(Decoder::new(&[0xfe, 0xff, 0xff, 0xff, 0xff])
            .biguint()
            .is_err());
    }
}
