//! `any`: compact-encoding's self-describing value (`index.js:763-843, 1037-1051`): a `uint` type
//! tag then the payload — 0 null (`none`), 1 `bool`, 2 `string`, 3 `buffer`, 4 `uint`, 5 `int`,
//! 6 `float64`, 7 array (`uint` count + items), 8 object (`uint` count + (`utf8` key, item)...),
//! 9 `date`.

use super::{
    buffer_len, int_len, uint_len, write_buffer, write_date, write_f64, write_int, write_string,
    write_uint, Decode, DecodeError, Decoder, Encode,
};

/// Deepest array/object nesting [`AnyValue`] decodes (JS would overflow its stack eventually;
/// here deep input is an error instead of a crash).
pub const MAX_ANY_DEPTH: usize = 256;

/// A value of the `any` codec.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyValue {
    /// Tag 0: `null` / `undefined`.
    Null,
    /// Tag 1.
    Bool(bool),
    /// Tag 2.
    String(String),
    /// Tag 3: a `Buffer`.
    Buffer(Vec<u8>),
    /// Tag 4: a non-negative integer number.
    Uint(u64),
    /// Tag 5: a negative integer number.
    Int(i64),
    /// Tag 6: any other number.
    Float(f64),
    /// Tag 7.
    Array(Vec<AnyValue>),
    /// Tag 8: an object's entries in wire order (JS keeps the last of repeated keys and lists
    /// array-index keys first when it re-encodes).
    Object(Vec<(String, AnyValue)>),
    /// Tag 9: a `Date`, in milliseconds since the Unix epoch.
    Date(i64),
}

impl AnyValue {
    /// The variant JS `getType` picks for a number: `Uint` for non-negative integers, `Int` for
    /// negative integers, `Float` otherwise.
    pub fn from_js_number(n: f64) -> AnyValue {
        if n.is_finite() && n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
            if n >= 0.0 {
                AnyValue::Uint(n as u64)
            } else {
                AnyValue::Int(n as i64)
            }
        } else {
            AnyValue::Float(n)
        }
    }

    fn tag(&self) -> u64 {
        match self {
            AnyValue::Null => 0,
            AnyValue::Bool(_) => 1,
            AnyValue::String(_) => 2,
            AnyValue::Buffer(_) => 3,
            AnyValue::Uint(_) => 4,
            AnyValue::Int(_) => 5,
            AnyValue::Float(_) => 6,
            AnyValue::Array(_) => 7,
            AnyValue::Object(_) => 8,
            AnyValue::Date(_) => 9,
        }
    }

    fn decode_depth(d: &mut Decoder<'_>, depth: usize) -> Result<AnyValue, DecodeError> {
        if depth > MAX_ANY_DEPTH {
            return Err(DecodeError::Invalid("any: nesting too deep"));
        }
        Ok(match d.uint()? {
            0 => AnyValue::Null,
            1 => AnyValue::Bool(d.bool()?),
            2 => AnyValue::String(d.string()?.to_owned()),
            3 => AnyValue::Buffer(d.buffer()?.to_vec()),
            4 => AnyValue::Uint(d.uint()?),
            5 => AnyValue::Int(d.int()?),
            6 => AnyValue::Float(d.f64()?),
            7 => {
                let n = d.uint()?;
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(Self::decode_depth(d, depth + 1)?);
                }
                AnyValue::Array(v)
            }
            8 => {
                let n = d.uint()?;
                let mut v = Vec::new();
                for _ in 0..n {
                    let k = d.string()?.to_owned();
                    v.push((k, Self::decode_depth(d, depth + 1)?));
                }
                AnyValue::Object(v)
            }
            9 => AnyValue::Date(d.date()?),
            _ => return Err(DecodeError::Invalid("any: unknown type")),
        })
    }
}

/// `any`. Integers are written as JS writes them (`Int` and `Date` outside ±2^52 produce bytes JS
/// and [`Decoder::any`] reject; `Date` outside that range is written as its clamped `int`).
impl Encode for AnyValue {
    fn encoded_len(&self) -> usize {
        1 + match self {
            AnyValue::Null => 0,
            AnyValue::Bool(_) => 1,
            AnyValue::String(s) => buffer_len(s.len()),
            AnyValue::Buffer(b) => buffer_len(b.len()),
            AnyValue::Uint(n) => uint_len(*n),
            AnyValue::Int(n) => int_len(*n),
            AnyValue::Float(_) => 8,
            AnyValue::Array(a) => {
                uint_len(a.len() as u64) + a.iter().map(Encode::encoded_len).sum::<usize>()
            }
            AnyValue::Object(o) => {
                uint_len(o.len() as u64)
                    + o.iter()
                        .map(|(k, v)| buffer_len(k.len()) + v.encoded_len())
                        .sum::<usize>()
            }
            AnyValue::Date(ms) => int_len(clamp_date(*ms)),
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.tag());
        match self {
            AnyValue::Null => {}
            AnyValue::Bool(b) => out.push(u8::from(*b)),
            AnyValue::String(s) => write_string(out, s),
            AnyValue::Buffer(b) => write_buffer(out, b),
            AnyValue::Uint(n) => write_uint(out, *n),
            AnyValue::Int(n) => write_int(out, *n),
            AnyValue::Float(f) => write_f64(out, *f),
            AnyValue::Array(a) => {
                write_uint(out, a.len() as u64);
                for x in a {
                    x.encode(out);
                }
            }
            AnyValue::Object(o) => {
                write_uint(out, o.len() as u64);
                for (k, v) in o {
                    write_string(out, k);
                    v.encode(out);
                }
            }
            AnyValue::Date(ms) => {
                // In range after clamping, so this cannot fail.
                let _ = write_date(out, clamp_date(*ms));
            }
        }
    }
}

fn clamp_date(ms: i64) -> i64 {
    ms.clamp(super::MIN_SAFE_INT, super::MAX_SAFE_INT)
}

impl Decode<'_> for AnyValue {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        AnyValue::decode_depth(d, 0)
    }
}

impl Decoder<'_> {
    /// `any` (nesting limited to [`MAX_ANY_DEPTH`]).
    pub fn any(&mut self) -> Result<AnyValue, DecodeError> {
        AnyValue::decode_depth(self, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut b = Vec::new();
        for _ in 0..100_000 {
            b.extend_from_slice(&[7, 1]);
        }
        b.push(0);
        assert_eq!(
            Decoder::new(&b).any(),
            Err(DecodeError::Invalid("any: nesting too deep"))
        );
        // a huge count with no items fails quickly
        assert!(Decoder::new(&[7, 0xfe, 0xff, 0xff, 0xff, 0xff])
            .any()
            .is_err());
        assert!(Decoder::new(&[10]).any().is_err());
    }

    #[test]
    fn round_trip_and_js_number_classes() {
        let v = AnyValue::Object(vec![
            ("u".into(), AnyValue::from_js_number(3.0)),
            ("i".into(), AnyValue::from_js_number(-3.0)),
            ("f".into(), AnyValue::from_js_number(0.5)),
            ("d".into(), AnyValue::Date(-1)),
            ("b".into(), AnyValue::Buffer(vec![1, 2])),
            (
                "n".into(),
                AnyValue::Array(vec![AnyValue::Null, AnyValue::Bool(false)]),
            ),
        ]);
        let bytes = v.to_bytes();
        assert_eq!(bytes.len(), v.encoded_len());
        assert_eq!(AnyValue::from_bytes(&bytes).unwrap(), v);
        assert_eq!(AnyValue::from_js_number(-3.0), AnyValue::Int(-3));
        assert_eq!(AnyValue::from_js_number(3.0), AnyValue::Uint(3));
        assert_eq!(
            AnyValue::Date(i64::MAX).to_bytes().len(),
            AnyValue::Date(i64::MAX).encoded_len()
        );
    }
}
