//! `lexint`: an order-preserving unsigned integer (`NM/compact-encoding/lexint.js`).
//!
//! Below 2^32 it is exact: one byte below 251, else a flag `fb`..`fe` and 1-4 big-endian bytes of
//! `n - 251`. From 2^32 up JS switches to a floating form, `ff ‖ lexint(exp) ‖ 6 bytes`, holding
//! about 44 significant bits, so large values come back rounded — exactly as in JS, whose float
//! arithmetic is reproduced here.

use super::{DecodeError, Decoder, EncodeError};

const MAX: u64 = 251;

/// Bytes [`write_lexint`] takes for `n`.
pub fn lexint_len(n: u64) -> usize {
    match n {
        0..251 => 1,
        251..0x100 => 2,
        0x100..0x1_0000 => 3,
        0x1_0000..0x100_0000 => 4,
        0x100_0000..0x1_0000_0000 => 5,
        _ => 8,
    }
}

/// Append `lexint`. Values in `2^32..2^32+251` fail like in JS (whose encoder writes past its
/// buffer there); values from `2^32 + 251` up use the lossy floating form.
pub fn write_lexint(out: &mut Vec<u8>, n: u64) -> Result<(), EncodeError> {
    let x = n.wrapping_sub(MAX);
    match n {
        0..251 => out.push(n as u8),
        251..0x100 => out.extend_from_slice(&[0xfb, x as u8]),
        0x100..0x1_0000 => out.extend_from_slice(&[0xfc, (x >> 8) as u8, x as u8]),
        0x1_0000..0x100_0000 => {
            out.extend_from_slice(&[0xfd, (x >> 16) as u8, (x >> 8) as u8, x as u8])
        }
        0x100_0000..0x1_0000_0000 => {
            out.push(0xfe);
            out.extend_from_slice(&(x as u32).to_be_bytes());
        }
        0x1_0000_0000..0x1_0000_00fb => return Err(EncodeError::IntegerOutOfRange("lexint")),
        _ => {
            // JS: exp = floor(log(x) / log(2)) - 32; rem = x / 2^(exp - 11)
            let xf = n as f64 - MAX as f64;
            let exp = ((xf.ln() / 2f64.ln()).floor() as i32 - 32).max(0);
            let rem = xf / 2f64.powi(exp - 11);
            out.push(0xff);
            out.push(exp as u8);
            for i in (0..6).rev() {
                let part = (rem / 2f64.powi(8 * i)).trunc();
                out.push((part as u64 & 0xff) as u8);
            }
        }
    }
    Ok(())
}

fn decode(d: &mut Decoder<'_>, allow_float: bool) -> Result<f64, DecodeError> {
    let flag = d.u8()?;
    if flag < 251 {
        return Ok(flag as f64);
    }
    let need = (flag - 251 + 1) as usize;
    if d.remaining() < need {
        return Err(DecodeError::OutOfBounds {
            offset: d.position(),
            needed: need - d.remaining(),
        });
    }
    if flag < 255 {
        let b = d.take(need)?;
        let v = b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64);
        return Ok((v + MAX) as f64);
    }
    if !allow_float {
        // The exponent would be at least 2^32, so the value is not a finite number in JS.
        return Err(DecodeError::Invalid("lexint exponent"));
    }
    let exp = decode(d, false)?;
    let b = d.take(6)?;
    let rem = b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64) as f64;
    let e = (exp as i64 - 11).min(4096) as i32;
    Ok(rem * 2f64.powi(e) + MAX as f64)
}

impl Decoder<'_> {
    /// `lexint`. The floating form must come out as a whole number below 2^64 (JS can also
    /// produce fractions, infinity and NaN from hand-made bytes; those are
    /// [`DecodeError::Invalid`] here).
    pub fn lexint(&mut self) -> Result<u64, DecodeError> {
        let v = decode(self, true)?;
        if v.fract() != 0.0 || !(0.0..18_446_744_073_709_551_616.0).contains(&v) {
            return Err(DecodeError::Invalid("lexint value"));
        }
        Ok(v as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(n: u64) -> Result<String, EncodeError> {
        let mut v = vec![];
        write_lexint(&mut v, n)?;
        assert_eq!(v.len(), lexint_len(n));
        Ok(hex::encode(v))
    }

    #[test]
    fn large_values_match_js() {
        // from compact-encoding 3.5.2 under node 20: (n, bytes, what JS decodes)
        for (n, hex_, back) in [
            (4294967295u64, "feffffff04", 4294967295u64),
            (4294967547, "ff00080000000000", 4294967547),
            (4294968296, "ff00080000176800", 4294968296),
            (1099511627776, "ff070ffffffff050", 1099511627776),
            (35184372101177, "ff0d080000000bcf", 35184372101175),
            (9007199254740991, "ff140fffffffffff", 9007199254740731),
        ] {
            assert_eq!(enc(n).unwrap(), hex_, "{n}");
            let b = hex::decode(hex_).unwrap();
            assert_eq!(Decoder::new(&b).lexint().unwrap(), back, "{n}");
        }
        for n in [4294967296u64, 4294967546] {
            assert_eq!(enc(n), Err(EncodeError::IntegerOutOfRange("lexint")));
        }
    }

    #[test]
    fn order_preserving_and_bad_input() {
        let ns = [
            0u64,
            1,
            250,
            251,
            255,
            256,
            65535,
            65536,
            1 << 24,
            (1 << 32) - 1,
        ];
        let enc: Vec<Vec<u8>> = ns
            .iter()
            .map(|&n| {
                let mut v = vec![];
                write_lexint(&mut v, n).unwrap();
                assert_eq!(Decoder::new(&v).lexint().unwrap(), n);
                v
            })
            .collect();
        assert!(enc.windows(2).all(|w| w[0] < w[1]));
        // JS decodes these to 8589934842.999512 and a fraction: not integers
        for h in ["ff000fffffffffff", "ff05000000000001"] {
            let b = hex::decode(h).unwrap();
            assert_eq!(
                Decoder::new(&b).lexint(),
                Err(DecodeError::Invalid("lexint value"))
            );
        }
        assert!(Decoder::new(&[0xff, 0xff, 0xff]).lexint().is_err());
        assert!(Decoder::new(&[0xfe, 1, 2]).lexint().is_err());
    }
}
