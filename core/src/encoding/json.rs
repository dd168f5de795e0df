//! `json`, `ndjson` and `raw.json` (`index.js:724-746`, `raw.js:139-170`): the UTF-8 of
//! `JSON.stringify(value)`, reproduced byte for byte: no whitespace, JS number formatting
//! (`1e+21`, `1e-7`, `-0` → `0`), JS string escaping and JS object key order (array-index keys
//! first in ascending order, then the others in map order).
//!
//! Values are [`serde_json::Value`]. Integers beyond 2^53 are printed as the double JS would hold
//! (`JSON.stringify(JSON.parse("18446744073709551615"))` is `18446744073709552000`).
//!
//! The crate enables serde_json's `preserve_order` (objects keep the order JS would, so a decoded
//! value re-encodes to the same bytes) and `float_roundtrip` (numbers parse correctly rounded, as
//! `JSON.parse` does).

use serde_json::{Number, Value};

use super::{write_uint, DecodeError, Decoder};

const MAX_SAFE: u64 = (1 << 53) - 1;

/// JS `Number.prototype.toString()` (radix 10) for a double: the shortest round-tripping digits,
/// positional between 1e-7 and 1e21, exponential (`1.5e+300`) outside.
pub fn js_number_to_string(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i64;
    let n = exp.parse::<i64>().unwrap_or(0) + 1;
    let mut s = String::new();
    if v < 0.0 {
        s.push('-');
    }
    if k <= n && n <= 21 {
        s.push_str(&digits);
        s.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        s.push_str(&digits[..n as usize]);
        s.push('.');
        s.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-n) as usize));
        s.push_str(&digits);
    } else {
        s.push_str(&digits[..1]);
        if k > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        let e = n - 1;
        s.push('e');
        s.push(if e > 0 { '+' } else { '-' });
        s.push_str(&e.abs().to_string());
    }
    s
}

fn number(n: &Number, out: &mut String) {
    if let Some(u) = n.as_u64() {
        if u <= MAX_SAFE {
            out.push_str(&u.to_string());
            return;
        }
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= MAX_SAFE {
            out.push_str(&i.to_string());
            return;
        }
    }
    match n.as_f64() {
        Some(f) if f.is_finite() => out.push_str(&js_number_to_string(f)),
        _ => out.push_str("null"),
    }
}

fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An array index as JS orders object keys: a canonical decimal below 2^32 - 1.
fn array_index(k: &str) -> Option<u32> {
    if k.is_empty() || (k.len() > 1 && k.starts_with('0')) || !k.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    k.parse::<u32>().ok().filter(|&i| i != u32::MAX)
}

fn stringify(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => number(n, out),
        Value::String(s) => string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                stringify(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut indexed: Vec<(u32, &String, &Value)> = m
                .iter()
                .filter_map(|(k, v)| array_index(k).map(|i| (i, k, v)))
                .collect();
            indexed.sort_by_key(|e| e.0);
            let named = m.iter().filter(|(k, _)| array_index(k).is_none());
            out.push('{');
            for (i, (k, x)) in indexed
                .into_iter()
                .map(|(_, k, v)| (k, v))
                .chain(named)
                .enumerate()
            {
                if i > 0 {
                    out.push(',');
                }
                string(k, out);
                out.push(':');
                stringify(x, out);
            }
            out.push('}');
        }
    }
}

/// `JSON.stringify(v)` for a JSON value, byte-identical to JS.
pub fn json_stringify(v: &Value) -> String {
    let mut s = String::new();
    stringify(v, &mut s);
    s
}

/// Append `json`: the length-prefixed UTF-8 of `JSON.stringify(v)`.
pub fn write_json(out: &mut Vec<u8>, v: &Value) {
    let s = json_stringify(v);
    write_uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}
/// Append `ndjson`: like [`write_json`] with a trailing `\n` inside the string.
pub fn write_ndjson(out: &mut Vec<u8>, v: &Value) {
    let s = json_stringify(v);
    write_uint(out, s.len() as u64 + 1);
    out.extend_from_slice(s.as_bytes());
    out.push(b'\n');
}
/// Append `raw.json` (what `c.from('json')` writes, e.g. hypercore blocks with
/// `valueEncoding: 'json'`): `JSON.stringify(v)` without a length prefix.
pub fn write_raw_json(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(json_stringify(v).as_bytes())
}

fn parse(s: &str) -> Result<Value, DecodeError> {
    serde_json::from_str(s).map_err(|_| DecodeError::Invalid("json"))
}

impl Decoder<'_> {
    /// `json` / `ndjson`: `JSON.parse` of the string (invalid UTF-8 is replaced as JS does; the
    /// trailing newline of `ndjson` is whitespace to the parser).
    pub fn json(&mut self) -> Result<Value, DecodeError> {
        parse(&self.string_lossy()?)
    }
    /// `raw.json` / `raw.ndjson`: `JSON.parse` of everything left.
    pub fn raw_json(&mut self) -> Result<Value, DecodeError> {
        parse(&String::from_utf8_lossy(self.rest()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_like_js() {
        // JSON.stringify under node 20
        for (v, js) in [
            (1e21, "1e+21"),
            (1e-7, "1e-7"),
            (123456789012345680000.0, "123456789012345680000"),
            (0.000001, "0.000001"),
            (-0.0, "0"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-1.5, "-1.5"),
            (100.0, "100"),
            (-1.25e-10, "-1.25e-10"),
        ] {
            assert_eq!(js_number_to_string(v), js, "{v}");
        }
        assert_eq!(js_number_to_string(f64::NAN), "NaN");
        assert_eq!(
            json_stringify(&json!(9007199254740994u64)),
            "9007199254740994"
        );
        assert_eq!(json_stringify(&json!(u64::MAX)), "18446744073709552000");
        assert_eq!(
            json_stringify(&json!(-9007199254740993i64)),
            "-9007199254740992"
        );
    }

    #[test]
    fn strings_and_key_order_like_js() {
        assert_eq!(
            json_stringify(&json!("\u{1f}\u{7f}\u{2028}\"\\/\u{8}")),
            "\"\\u001f\u{7f}\u{2028}\\\"\\\\/\\b\""
        );
        let v = json!({"b":1,"a":2,"10":3,"2":4,"01":5,"4294967295":6,"4294967294":7});
        let s = json_stringify(&v);
        // node 20 prints exactly this (serde_json's preserve_order keeps insertion order)
        assert_eq!(
            s,
            r#"{"2":4,"10":3,"4294967294":7,"b":1,"a":2,"01":5,"4294967295":6}"#
        );
        assert_eq!(parse(&s).unwrap(), v);
    }

    #[test]
    fn codecs() {
        let v = json!({"a": [1, "x", null]});
        let mut b = vec![];
        write_json(&mut b, &v);
        write_ndjson(&mut b, &v);
        write_raw_json(&mut b, &v);
        let mut d = Decoder::new(&b);
        assert_eq!(d.json().unwrap(), v);
        assert_eq!(d.json().unwrap(), v);
        assert_eq!(d.raw_json().unwrap(), v);
        assert!(Decoder::new(b"\x01{").json().is_err());
    }
}
