//! Every line of `vectors/data/01-compact-encoding.out` (compact-encoding 3.5.2 under node):
//! encoding gives those bytes and decoding those bytes gives the value back and consumes them all.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use serde_json::json;

use super::*;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/vectors/data/01-compact-encoding.out"
);

type EncFn = Box<dyn Fn(&mut Vec<u8>) -> Result<(), EncodeError>>;
type CheckFn = Box<dyn Fn(&[u8])>;

struct Cases(BTreeMap<String, (EncFn, CheckFn)>);

impl Cases {
    fn add<T: PartialEq + Debug + 'static>(
        &mut self,
        key: impl Into<String>,
        enc: impl Fn(&mut Vec<u8>) -> Result<(), EncodeError> + 'static,
        dec: impl for<'x> Fn(&mut Decoder<'x>) -> Result<T, DecodeError> + 'static,
        want: T,
    ) {
        let key = key.into();
        let k = key.clone();
        let check = move |b: &[u8]| {
            let mut d = Decoder::new(b);
            let got = dec(&mut d).unwrap_or_else(|e| panic!("{k}: decode failed: {e}"));
            assert_eq!(got, want, "{k}: decoded value");
            assert_eq!(d.remaining(), 0, "{k}: decode left bytes");
        };
        let old = self.0.insert(key.clone(), (Box::new(enc), Box::new(check)));
        assert!(old.is_none(), "duplicate case {key}");
    }
}

fn ok(f: impl Fn(&mut Vec<u8>)) -> impl Fn(&mut Vec<u8>) -> Result<(), EncodeError> {
    move |o| {
        f(o);
        Ok(())
    }
}

fn cases() -> Cases {
    let mut c = Cases(BTreeMap::new());
    for n in [
        0u64,
        1,
        0xfc,
        0xfd,
        0xfe,
        0xff,
        0x100,
        0xffff,
        0x10000,
        0xffff_ffff,
        0x1_0000_0000,
        (1 << 53) - 1,
    ] {
        c.add(
            format!("uint({n})"),
            ok(move |o| write_uint(o, n)),
            |d| d.uint(),
            n,
        );
    }
    for n in [
        0i64,
        -1,
        1,
        -2,
        2,
        126,
        -127,
        127,
        (1 << 52) - 1,
        -(1 << 52),
        1 << 52,
    ] {
        c.add(
            format!("int({n})"),
            move |o| try_write_int(o, n),
            |d| d.int(),
            n,
        );
    }
    c.add("uint8(171)", ok(|o| write_u8(o, 0xab)), |d| d.u8(), 0xab);
    c.add(
        "uint16(4660)",
        ok(|o| write_u16(o, 0x1234)),
        |d| d.u16(),
        0x1234,
    );
    c.add(
        "uint24(1193046)",
        ok(|o| write_u24(o, 0x123456)),
        |d| d.u24(),
        0x123456,
    );
    c.add(
        "uint32(305419896)",
        ok(|o| write_u32(o, 0x12345678)),
        |d| d.u32(),
        0x12345678,
    );
    c.add(
        "uint40(78187493530)",
        ok(|o| write_u40(o, 0x12_3456_789a)),
        |d| d.u40(),
        0x12_3456_789a,
    );
    c.add(
        "uint48(20015998343868)",
        ok(|o| write_u48(o, 0x1234_5678_9abc)),
        |d| d.u48(),
        0x1234_5678_9abc,
    );
    c.add(
        "uint56(5124095576030430)",
        ok(|o| write_u56(o, 0x12_3456_789a_bcde)),
        |d| d.u56_safe(),
        0x12_3456_789a_bcde,
    );
    let max = MAX_SAFE_INTEGER;
    c.add(
        "uint64(9007199254740991)",
        ok(move |o| write_u64(o, max)),
        |d| d.u64_safe(),
        max,
    );
    c.add(
        "uint32be(305419896)",
        ok(|o| write_u32_be(o, 0x12345678)),
        |d| d.u32_be(),
        0x12345678,
    );
    c.add(
        "uint64be(4328719365)",
        ok(|o| write_u64_be(o, 0x01_0203_0405)),
        |d| d.u64_be_safe(),
        0x01_0203_0405,
    );
    c.add("int8(-1)", ok(|o| write_int8(o, -1)), |d| d.int8(), -1);
    c.add("int32(-2)", ok(|o| write_int32(o, -2)), |d| d.int32(), -2);
    c.add("int64(-3)", ok(|o| write_int64(o, -3)), |d| d.int64(), -3);
    c.add(
        "biguint64(72623859790382856n)",
        ok(|o| write_u64(o, 0x0102_0304_0506_0708)),
        |d| d.biguint64(),
        0x0102_0304_0506_0708,
    );
    c.add(
        "bigint64(-1n)",
        ok(|o| write_bigint64(o, -1)),
        |d| d.bigint64(),
        -1,
    );
    c.add(
        "biguint(0n)",
        ok(|o| BigUint::default().encode(o)),
        |d| d.biguint(),
        BigUint::default(),
    );
    c.add(
        "biguint(1n)",
        ok(|o| BigUint::from(1u64).encode(o)),
        |d| d.biguint(),
        BigUint::from(1u64),
    );
    let two64 = BigUint::from(1u128 << 64);
    let t = two64.clone();
    c.add(
        "biguint(18446744073709551616n)",
        ok(move |o| t.encode(o)),
        |d| d.biguint(),
        two64,
    );
    c.add(
        "bigint(-1n)",
        ok(|o| BigInt::from(-1i64).encode(o)),
        |d| d.bigint(),
        BigInt::from(-1i64),
    );
    c.add("float32(1.5)", ok(|o| write_f32(o, 1.5)), |d| d.f32(), 1.5);
    c.add("float64(1.5)", ok(|o| write_f64(o, 1.5)), |d| d.f64(), 1.5);
    c.add(
        "float64(-0.1)",
        ok(|o| write_f64(o, -0.1)),
        |d| d.f64(),
        -0.1,
    );
    c.add("bool(true)", ok(|o| true.encode(o)), |d| d.bool(), true);
    c.add("bool(false)", ok(|o| false.encode(o)), |d| d.bool(), false);
    let owned = |r: Result<&[u8], DecodeError>| r.map(<[u8]>::to_vec);
    c.add(
        "buffer(b\"abc\")",
        ok(|o| write_buffer(o, b"abc")),
        move |d| owned(d.buffer()),
        b"abc".to_vec(),
    );
    c.add(
        "buffer(b\"\")",
        ok(|o| write_buffer(o, b"")),
        move |d| owned(d.buffer()),
        vec![],
    );
    c.add(
        "optionalBuffer(null)",
        ok(|o| write_optional_buffer(o, None)),
        |d| d.optional_buffer().map(|b| b.map(<[u8]>::to_vec)),
        None,
    );
    c.add(
        "optionalBuffer(b\"\\x01\\x02\")",
        ok(|o| write_optional_buffer(o, Some(&[1, 2]))),
        |d| d.optional_buffer().map(|b| b.map(<[u8]>::to_vec)),
        Some(vec![1, 2]),
    );
    for key in ["raw(b\"abc\")", "raw.buffer(b\"abc\")"] {
        c.add(
            key,
            ok(|o| o.extend_from_slice(b"abc")),
            |d| Ok(d.rest().to_vec()),
            b"abc".to_vec(),
        );
    }
    for s in ["hello", "héllo", ""] {
        c.add(
            format!("string({s:?})"),
            ok(move |o| write_string(o, s)),
            |d| d.string().map(str::to_owned),
            s.to_owned(),
        );
    }
    c.add(
        "ascii(\"hi\")",
        |o| write_ascii(o, "hi"),
        |d| d.ascii().map(str::to_owned),
        "hi".to_owned(),
    );
    c.add(
        "hex(\"beef\")",
        |o| write_hex(o, "beef"),
        |d| d.hex(),
        "beef".to_owned(),
    );
    c.add(
        "base64(\"AQID\")",
        |o| write_base64(o, "AQID"),
        |d| d.base64(),
        "AQID".to_owned(),
    );
    c.add(
        "utf16le(\"hi\")",
        ok(|o| write_utf16le(o, "hi")),
        |d| d.utf16le(),
        "hi".to_owned(),
    );
    c.add(
        "fixed32(aa*32)",
        ok(|o| [0xaa; 32].encode(o)),
        |d| d.fixed::<32>(),
        [0xaa; 32],
    );
    c.add(
        "fixed(3)(010203)",
        ok(|o| [1u8, 2, 3].encode(o)),
        |d| d.fixed::<3>(),
        [1, 2, 3],
    );
    c.add(
        "array(uint)([1,300,70000])",
        ok(|o| write_array(o, &[1u64, 300, 70000])),
        |d| d.array::<u64>(),
        vec![1, 300, 70000],
    );
    c.add(
        "array(string)([\"a\",\"bc\"])",
        ok(|o| write_array_with(o, &["a", "bc"], |o, s| write_string(o, s))),
        |d| d.array_with(|d| d.string().map(str::to_owned)),
        vec!["a".to_owned(), "bc".to_owned()],
    );
    c.add(
        "frame(uint)(300)",
        ok(|o| write_frame(o, |o| write_uint(o, 300))),
        |d| d.frame(|d| d.uint()),
        300,
    );
    c.add(
        "frame(array(uint))([1,2,3])",
        ok(|o| write_frame(o, |o| write_array(o, &[1u64, 2, 3]))),
        |d| d.frame(|d| d.array::<u64>()),
        vec![1, 2, 3],
    );
    let v = json!({"a": 1, "b": [true, null]});
    let w = v.clone();
    c.add(
        "json({\"a\":1,\"b\":[true,null]})",
        ok(move |o| write_json(o, &w)),
        |d| d.json(),
        v,
    );
    c.add(
        "ndjson({\"a\":1})",
        ok(|o| write_ndjson(o, &json!({"a": 1}))),
        |d| d.json(),
        json!({"a": 1}),
    );
    c.add(
        "raw.json({\"a\":1})",
        ok(|o| write_raw_json(o, &json!({"a": 1}))),
        |d| d.raw_json(),
        json!({"a": 1}),
    );
    // The closure is needed: the bare path is not generic over the decoder's lifetime.
    #[allow(clippy::redundant_closure)]
    c.add(
        "none(\"anything\")",
        ok(|o| ().encode(o)),
        |d| <()>::decode(d),
        (),
    );
    c.add(
        "date(Date(1700000000000))",
        |o| write_date(o, 1_700_000_000_000),
        |d| d.date(),
        1_700_000_000_000,
    );
    let any = AnyValue::Object(vec![
        ("a".into(), AnyValue::Uint(1)),
        ("b".into(), AnyValue::String("x".into())),
        (
            "c".into(),
            AnyValue::Array(vec![
                AnyValue::Bool(true),
                AnyValue::Null,
                AnyValue::from_js_number(-1.0),
                AnyValue::from_js_number(1.5),
                AnyValue::Buffer(vec![9]),
            ]),
        ),
    ]);
    let a = any.clone();
    c.add(
        "any({a:1,b:\"x\",c:[true,null,-1,1.5,<09>]})",
        ok(move |o| a.encode(o)),
        |d| d.any(),
        any,
    );
    let bits = vec![true, false, true, true, false, false, false, false, true];
    let b = bits.clone();
    c.add(
        "bitarray([true,false,true,true,false,false,false,false,true])",
        ok(move |o| write_bitarray(o, &b)),
        |d| d.bitarray(),
        bits,
    );
    c.add(
        "uint32array(Uint32Array[1,0xdeadbeef])",
        ok(|o| write_typed_array::<u32>(o, &[1, 0xdeadbeef])),
        |d| d.typed_array::<u32>(),
        vec![1, 0xdeadbeef],
    );
    c.add(
        "uint16array(Uint16Array[1,2])",
        ok(|o| write_typed_array::<u16>(o, &[1, 2])),
        |d| d.typed_array::<u16>(),
        vec![1, 2],
    );
    c.add(
        "stringRecord({\"k\":\"v\"})",
        ok(|o| {
            write_record_with(o, &[("k", "v")], |o, k, v| {
                write_string(o, k);
                write_string(o, v)
            })
        }),
        |d| {
            d.string_record().map(|r| {
                r.into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect::<Vec<_>>()
            })
        },
        vec![("k".to_owned(), "v".to_owned())],
    );
    let ip4: Ipv4Addr = "10.0.0.1".parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    c.add(
        "ipv4(\"10.0.0.1\")",
        ok(move |o| ip4.encode(o)),
        |d| d.ipv4(),
        ip4,
    );
    let sa4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080);
    c.add(
        "ipv4Address(127.0.0.1:8080)",
        ok(move |o| sa4.encode(o)),
        |d| d.ipv4_address(),
        sa4,
    );
    c.add(
        "ipv6(\"::1\")",
        ok(|o| Ipv6Addr::LOCALHOST.encode(o)),
        |d| d.ipv6(),
        Ipv6Addr::LOCALHOST,
    );
    let ip = IpAddr::from([1, 2, 3, 4]);
    c.add("ip(\"1.2.3.4\")", ok(move |o| ip.encode(o)), |d| d.ip(), ip);
    let sa = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1);
    c.add(
        "ipAddress([::1]:1)",
        ok(move |o| sa.encode(o)),
        |d| d.ip_address(),
        sa,
    );
    for n in [0u64, 250, 251, 255, 256, 65535, 65536, 0x100_0000] {
        c.add(
            format!("lexint({n})"),
            move |o| write_lexint(o, n),
            |d| d.lexint(),
            n,
        );
    }
    c
}

/// The DECODE lines: description → what the Rust decoder says (`THROWS` for an error).
fn decode_case(desc: &str) -> Option<String> {
    fn show<T: ToString>(r: Result<T, DecodeError>) -> String {
        r.map_or_else(|_| "THROWS".to_owned(), |v| v.to_string())
    }
    let h = |s: &str| hex::decode(s).unwrap_or_default();
    Some(match desc {
        "uint decode fd0000 (non-canonical 0)" => show(Decoder::new(&h("fd0000")).uint()),
        "uint decode fe01000000" => show(Decoder::new(&h("fe01000000")).uint()),
        "uint decode ff ffffffffffffff00 (2^56-1 > 2^53)" => {
            show(Decoder::new(&h("ffffffffffffffff00")).uint())
        }
        "bool decode 02" => show(Decoder::new(&h("02")).bool()),
        "array decode len 0x100001" => {
            let r = Decoder::new(&h("fe01001000")).array::<u64>();
            assert_eq!(r, Err(DecodeError::ArrayTooLarge(0x100001)));
            show(r.map(|v| v.len()))
        }
        "noData-style trailing: c.decode(uint) ignores trailing bytes?" => {
            show(u64::from_bytes(&h("0102")))
        }
        _ => return None,
    })
}

#[test]
fn every_line_of_the_compact_encoding_vectors() {
    let text = std::fs::read_to_string(VECTORS).expect("vector file");
    let cases = cases();
    let mut seen = Vec::new();
    let mut lines = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        lines += 1;
        if let Some(rest) = line.strip_prefix("DECODE ") {
            let (desc, want) = rest.split_once(" => ").expect("DECODE line");
            let got = decode_case(desc).unwrap_or_else(|| panic!("no case for: {line}"));
            if want.starts_with("THROWS") {
                assert_eq!(got, "THROWS", "{line}");
            } else {
                assert_eq!(got, want, "{line}");
            }
            continue;
        }
        let (key, want) = line.split_once(" =").expect("vector line");
        let want = want.trim();
        let (enc, check) = cases
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no case for vector line: {line}"));
        seen.push(key.to_owned());
        let mut out = Vec::new();
        let r = enc(&mut out);
        if want.starts_with("THROWS") {
            assert!(
                r.is_err(),
                "{line}: encoding must fail, wrote {}",
                hex::encode(&out)
            );
            continue;
        }
        r.unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(hex::encode(&out), want, "{line}");
        check(&out);
    }
    assert_eq!(lines, 95, "the vector file changed");
    for key in cases.0.keys() {
        assert!(seen.contains(key), "case {key} is not in the vector file");
    }
}
