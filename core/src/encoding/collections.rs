//! Composite codecs: `array` with an element codec, `frame`, typed arrays, `bitarray`, `record`
//! and the unprefixed `raw.array` / raw typed arrays (`index.js:393-466, 664-710, 1006-1035`).

use super::{uint_len, write_uint, DecodeError, Decoder, MAX_ARRAY_LEN};

/// An element of a JS typed array (`uint16array`, `float64array`, ...): fixed size,
/// little-endian. `u8` is `uint8array` (same bytes as `buffer`), `i64` is `bigint64array` and
/// `u64` is `biguint64array` (two's complement, not zig-zag).
pub trait TypedElement: Copy {
    /// Bytes per element (JS `BYTES_PER_ELEMENT`).
    const SIZE: usize;
    /// Append the little-endian bytes.
    fn write_le(self, out: &mut Vec<u8>);
    /// Read from exactly [`TypedElement::SIZE`] bytes.
    fn read_le(b: &[u8]) -> Self;
}

macro_rules! typed_element {
    ($($t:ty),*) => {$(
        impl TypedElement for $t {
            const SIZE: usize = core::mem::size_of::<$t>();
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes())
            }
            fn read_le(b: &[u8]) -> Self {
                let mut a = [0u8; core::mem::size_of::<$t>()];
                a.copy_from_slice(&b[..Self::SIZE]);
                <$t>::from_le_bytes(a)
            }
        }
    )*};
}
typed_element!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

/// Bytes a typed array of `count` elements takes.
pub fn typed_array_len<T: TypedElement>(count: usize) -> usize {
    uint_len(count as u64) + count * T::SIZE
}
/// Append a typed array: `uint` element count, then the elements little-endian.
pub fn write_typed_array<T: TypedElement>(out: &mut Vec<u8>, items: &[T]) {
    write_uint(out, items.len() as u64);
    for &x in items {
        x.write_le(out);
    }
}

/// Bytes `bitarray` takes for `bits` elements.
pub fn bitarray_len(bits: usize) -> usize {
    uint_len(bits as u64) + bits.div_ceil(8)
}
/// Append `bitarray`: `uint` bit count, then the bits packed LSB first.
pub fn write_bitarray(out: &mut Vec<u8>, bits: &[bool]) {
    write_uint(out, bits.len() as u64);
    for chunk in bits.chunks(8) {
        let byte = chunk
            .iter()
            .enumerate()
            .fold(0u8, |b, (j, &on)| b | (u8::from(on) << j));
        out.push(byte);
    }
}

/// Append `array(enc)` with an explicit element encoder.
pub fn write_array_with<T>(out: &mut Vec<u8>, items: &[T], mut f: impl FnMut(&mut Vec<u8>, &T)) {
    write_uint(out, items.len() as u64);
    for it in items {
        f(out, it);
    }
}

/// Append `frame(enc)`: the inner encoding written by `f`, prefixed with its byte length.
pub fn write_frame(out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    write_uint(out, inner.len() as u64);
    out.extend_from_slice(&inner);
}

/// Append `record(keyEnc, valueEnc)`: `uint` entry count, then key and value of each entry.
pub fn write_record_with<K, V>(
    out: &mut Vec<u8>,
    entries: &[(K, V)],
    mut f: impl FnMut(&mut Vec<u8>, &K, &V),
) {
    write_uint(out, entries.len() as u64);
    for (k, v) in entries {
        f(out, k, v);
    }
}

impl<'a> Decoder<'a> {
    /// `array(enc)` with an explicit element decoder (count limited to [`MAX_ARRAY_LEN`] as in
    /// JS).
    pub fn array_with<T>(
        &mut self,
        mut f: impl FnMut(&mut Decoder<'a>) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.array_len()?;
        let mut v = Vec::with_capacity(n.min(self.remaining()));
        for _ in 0..n {
            v.push(f(self)?);
        }
        Ok(v)
    }
    /// `frame(enc)`: read the `uint` byte length, decode the inner value from exactly those bytes
    /// and skip whatever the inner decoder left (JS skips the slack too).
    pub fn frame<T>(
        &mut self,
        f: impl FnOnce(&mut Decoder<'a>) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let n = self.uint_usize()?;
        let inner = self.take(n)?;
        f(&mut Decoder::new(inner))
    }
    /// A typed array (`uint16array`, `int32array`, `float64array`, ...): `uint` element count
    /// then the elements little-endian.
    pub fn typed_array<T: TypedElement>(&mut self) -> Result<Vec<T>, DecodeError> {
        let n = self.uint_usize()?;
        let bytes = n
            .checked_mul(T::SIZE)
            .ok_or(DecodeError::IntegerOutOfRange)
            .and_then(|len| self.take(len))?;
        Ok(bytes.chunks_exact(T::SIZE).map(T::read_le).collect())
    }
    /// `bitarray`: `uint` bit count then the bits packed LSB first.
    pub fn bitarray(&mut self) -> Result<Vec<bool>, DecodeError> {
        let n = self.uint_usize()?;
        let bytes = self.take(n.div_ceil(8))?;
        Ok((0..n).map(|i| bytes[i / 8] & (1 << (i % 8)) != 0).collect())
    }
    /// `record(keyEnc, valueEnc)` / `stringRecord`: entries in wire order (JS builds an object, so
    /// a repeated key keeps its last value there).
    pub fn record_with<K, V>(
        &mut self,
        mut f: impl FnMut(&mut Decoder<'a>) -> Result<(K, V), DecodeError>,
    ) -> Result<Vec<(K, V)>, DecodeError> {
        let n = self.uint()?;
        // Each entry takes at least one byte; never trust the count for the allocation.
        let mut v = Vec::with_capacity((n as usize).min(self.remaining()));
        for _ in 0..n {
            let before = self.position();
            v.push(f(self)?);
            if self.position() == before && n > MAX_ARRAY_LEN {
                // Entries of zero bytes and a huge count: refuse instead of spinning.
                return Err(DecodeError::ArrayTooLarge(n));
            }
        }
        Ok(v)
    }
    /// `stringRecord`: `record(utf8, utf8)`.
    pub fn string_record(&mut self) -> Result<Vec<(&'a str, &'a str)>, DecodeError> {
        self.record_with(|d| Ok((d.string()?, d.string()?)))
    }
    /// `raw.array(enc)`: decode elements until the input ends.
    pub fn raw_array_with<T>(
        &mut self,
        mut f: impl FnMut(&mut Decoder<'a>) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let mut v = Vec::new();
        while !self.is_empty() {
            let before = self.position();
            v.push(f(self)?);
            if self.position() == before {
                // An element codec that reads nothing would loop forever (JS hangs here).
                return Err(DecodeError::Invalid("raw.array element of zero bytes"));
            }
        }
        Ok(v)
    }
    /// Raw typed array (`raw.uint32array`, ...): everything left, which must be a whole number of
    /// elements (JS throws a `RangeError` otherwise).
    pub fn raw_typed_array<T: TypedElement>(&mut self) -> Result<Vec<T>, DecodeError> {
        if !self.remaining().is_multiple_of(T::SIZE) {
            return Err(DecodeError::Invalid("raw typed array length"));
        }
        Ok(self.rest().chunks_exact(T::SIZE).map(T::read_le).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_arrays_round_trip() {
        let mut v = vec![];
        write_typed_array(&mut v, &[1.5f64, -0.0, f64::MAX]);
        write_typed_array(&mut v, &[-1i16, 2]);
        write_typed_array::<i64>(&mut v, &[i64::MIN]);
        let mut d = Decoder::new(&v);
        assert_eq!(d.typed_array::<f64>().unwrap(), [1.5, -0.0, f64::MAX]);
        assert_eq!(d.typed_array::<i16>().unwrap(), [-1, 2]);
        assert_eq!(d.typed_array::<i64>().unwrap(), [i64::MIN]);
        d.finish().unwrap();
        assert_eq!(typed_array_len::<f64>(3), 25);
        // count larger than the input
        assert!(Decoder::new(&[3, 0, 0, 0, 0]).typed_array::<u16>().is_err());
        assert!(
            Decoder::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0, 0])
                .typed_array::<u64>()
                .is_err()
        );
        assert_eq!(
            Decoder::new(&[1, 2, 3]).raw_typed_array::<u16>(),
            Err(DecodeError::Invalid("raw typed array length"))
        );
        assert_eq!(
            Decoder::new(&[1, 0, 3, 0])
                .raw_typed_array::<u16>()
                .unwrap(),
            [1, 3]
        );
    }

    #[test]
    fn frame_skips_slack_and_bounds_inner() {
        // frame of 3 bytes whose inner uint uses 1 byte: the 2 slack bytes are skipped
        let mut d = Decoder::new(&[3, 7, 0xaa, 0xbb, 9]);
        assert_eq!(d.frame(|d| d.uint()).unwrap(), 7);
        assert_eq!(d.uint().unwrap(), 9);
        // the inner decoder cannot read past the frame
        let mut d = Decoder::new(&[1, 0xfd, 1, 0]);
        assert!(d.frame(|d| d.uint()).is_err());
        let mut v = vec![];
        write_frame(&mut v, |o| write_uint(o, 300));
        assert_eq!(v, [3, 0xfd, 0x2c, 1]);
    }

    #[test]
    fn bitarray_and_records() {
        let bits = [
            true, false, false, true, true, true, false, false, true, true,
        ];
        let mut v = vec![];
        write_bitarray(&mut v, &bits);
        assert_eq!(v.len(), bitarray_len(bits.len()));
        assert_eq!(Decoder::new(&v).bitarray().unwrap(), bits);
        assert!(Decoder::new(&[9, 0]).bitarray().is_err());
        let mut v = vec![];
        write_record_with(&mut v, &[("a", 1u64), ("b", 2)], |o, k, n| {
            super::super::write_string(o, k);
            write_uint(o, *n);
        });
        let back = Decoder::new(&v)
            .record_with(|d| Ok((d.string()?, d.uint()?)))
            .unwrap();
        assert_eq!(back, [("a", 1), ("b", 2)]);
        assert!(Decoder::new(&[0xfe, 0, 0, 0, 1]).string_record().is_err());
        assert_eq!(
            Decoder::new(&[1, 2, 3]).raw_array_with(|d| d.u8()).unwrap(),
            [1, 2, 3]
        );
        assert!(Decoder::new(&[1]).raw_array_with(|_| Ok(())).is_err());
    }
}
