//! Fuzz every compact-encoding decoder: the first byte picks the codec, the rest is its input.
//! Decoding must never panic; a decoded value must encode to bytes that decode to the same value.
#![no_main]

use hyperpunch_core::encoding::*;
use libfuzzer_sys::fuzz_target;

fn rt<T: PartialEq + std::fmt::Debug>(
    b: &[u8],
    dec: impl for<'x> Fn(&mut Decoder<'x>) -> Result<T, DecodeError>,
    enc: impl Fn(&mut Vec<u8>, &T),
) {
    let mut d = Decoder::new(b);
    let Ok(v) = dec(&mut d) else { return };
    assert!(d.position() <= b.len());
    let mut out = Vec::new();
    enc(&mut out, &v);
    let mut d2 = Decoder::new(&out);
    assert_eq!(dec(&mut d2).as_ref(), Ok(&v), "re-encoded as {out:02x?}");
    assert_eq!(d2.remaining(), 0, "re-encoding not fully consumed");
}

fn decode_only<T>(b: &[u8], dec: impl for<'x> Fn(&mut Decoder<'x>) -> Result<T, DecodeError>) {
    let mut d = Decoder::new(b);
    let _ = dec(&mut d);
    assert!(d.position() <= b.len());
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, b)) = data.split_first() else { return };
    match sel % 40 {
        0 => rt(b, |d| d.uint(), |o, n| write_uint(o, *n)),
        1 => rt(b, |d| d.uint_full(), |o, n| write_uint(o, *n)),
        2 => rt(b, |d| d.int(), |o, n| try_write_int(o, *n).unwrap()),
        3 => rt(b, |d| d.int_full(), |o, n| write_int(o, *n)),
        4 => rt(b, |d| d.u24(), |o, n| write_u24(o, *n)),
        5 => rt(b, |d| d.u40(), |o, n| write_u40(o, *n)),
        6 => rt(b, |d| d.u56_safe(), |o, n| write_u56(o, *n)),
        7 => rt(b, |d| d.u64_be_safe(), |o, n| write_u64_be(o, *n)),
        8 => rt(b, |d| d.int24(), |o, n| write_int24(o, *n)),
        9 => rt(b, |d| d.int64(), |o, n| write_int64(o, *n)),
        10 => rt(b, |d| d.bigint64(), |o, n| write_bigint64(o, *n)),
        11 => rt(b, |d| d.biguint(), |o, v| v.encode(o)),
        12 => rt(b, |d| d.bigint(), |o, v| v.encode(o)),
        13 => decode_only(b, |d| d.f64()),
        14 => rt(b, |d| d.bool(), |o, v| v.encode(o)),
        15 => rt(b, |d| d.buffer().map(<[u8]>::to_vec), |o, v| write_buffer(o, v)),
        16 => rt(
            b,
            |d| d.optional_buffer().map(|x| x.map(<[u8]>::to_vec)),
            |o, v| write_optional_buffer(o, v.as_deref()),
        ),
        17 => rt(b, |d| d.string().map(str::to_owned), |o, v| write_string(o, v)),
        18 => rt(b, |d| d.string_lossy().map(|s| s.into_owned()), |o, v| write_string(o, v)),
        19 => rt(b, |d| d.ascii().map(str::to_owned), |o, v| write_ascii(o, v).unwrap()),
        20 => rt(b, |d| d.hex(), |o, v| write_hex(o, v).unwrap()),
        21 => rt(b, |d| d.base64(), |o, v| write_base64(o, v).unwrap()),
        22 => decode_only(b, |d| d.utf16le()),
        23 => rt(
            b,
            |d| d.fixed_string(5).map(str::to_owned),
            |o, v| write_fixed_string(o, v, 5).unwrap(),
        ),
        24 => rt(b, |d| d.array::<u64>(), |o, v| write_array(o, v)),
        25 => rt(
            b,
            |d| d.array_with(|d| d.string().map(str::to_owned)),
            |o, v| write_array_with(o, v, |o, s| write_string(o, s)),
        ),
        26 => rt(
            b,
            |d| d.frame(|d| d.array::<u64>()),
            |o, v| write_frame(o, |o| write_array(o, v)),
        ),
        27 => rt(b, |d| d.typed_array::<u16>(), |o, v| write_typed_array(o, v)),
        28 => rt(b, |d| d.typed_array::<i64>(), |o, v| write_typed_array(o, v)),
        29 => decode_only(b, |d| d.typed_array::<f32>()),
        30 => rt(b, |d| d.bitarray(), |o, v| write_bitarray(o, v)),
        31 => rt(
            b,
            |d| {
                d.string_record().map(|r| {
                    r.into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect::<Vec<_>>()
                })
            },
            |o, v| {
                write_record_with(o, v, |o, k, x| {
                    write_string(o, k);
                    write_string(o, x)
                })
            },
        ),
        32 => rt(b, |d| d.ip(), |o, v| v.encode(o)),
        33 => rt(b, |d| d.ip_address(), |o, v| v.encode(o)),
        34 => {
            // lexint is exact below 2^32 (lossy above, as in JS)
            if let Ok(n) = Decoder::new(b).lexint() {
                let mut out = Vec::new();
                if write_lexint(&mut out, n).is_ok() && n < 1 << 32 {
                    assert_eq!(Decoder::new(&out).lexint(), Ok(n));
                }
            }
        }
        35 => {
            // json: compare re-encodings (numbers may change between integer and float form)
            if let Ok(v) = Decoder::new(b).json() {
                let mut once = Vec::new();
                write_json(&mut once, &v);
                let again = Decoder::new(&once).json().map(|v| {
                    let mut out = Vec::new();
                    write_json(&mut out, &v);
                    out
                });
                assert_eq!(again, Ok(once));
            }
        }
        36 => {
            if let Ok(v) = Decoder::new(b).any() {
                let once = v.to_bytes();
                assert_eq!(once.len(), v.encoded_len());
                assert_eq!(AnyValue::from_bytes(&once).map(|v| v.to_bytes()), Ok(once));
            }
        }
        37 => rt(b, |d| d.raw_array_with(|d| d.uint()), |o, v| {
            v.iter().for_each(|n| write_uint(o, *n))
        }),
        38 => decode_only(b, |d| d.raw_typed_array::<u32>()),
        _ => rt(b, |d| d.date(), |o, n| write_date(o, *n).unwrap()),
    }
});
