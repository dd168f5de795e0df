//! Hyperbee operations and queries in the JSON shapes of `tests/interop/bee-common.js`, applied
//! to a Rust bee, so that one list drives both implementations; and the generated workloads
//! the interop tests and benchmarks use.

use hyperpunch_core::hyperbee::{
    BeeCore, BeeError, HistoryOptions, HistoryType, Hyperbee, RangeOptions, Utf8,
};
use serde_json::{json, Value};

/// A bee with the encodings the JS side uses (`'utf-8'` keys and values).
pub type Db<C> = Hyperbee<C, Utf8, Utf8>;

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn view<C: BeeCore>(db: &Db<C>, o: &Value) -> Db<C> {
    match (s(o, "sub"), s(o, "sep")) {
        (None, _) => db.clone(),
        (Some(p), Some(sep)) => db.sub_with_sep(p, sep.as_bytes()),
        (Some(p), None) => db.sub(p),
    }
}

fn key(o: &Value) -> &str {
    s(o, "key").expect("op key")
}

/// Apply `ops` in order (see `bee-common.js` for the shapes). The bee's version after each:
/// the versions a checkout can read (a version inside a batch has no root).
pub async fn apply<C: BeeCore>(db: &Db<C>, ops: &[Value]) -> Result<Vec<u64>, BeeError> {
    let mut versions = Vec::with_capacity(ops.len());
    for o in ops {
        let t = view(db, o);
        match s(o, "op").expect("op") {
            "put" => t.put(key(o), s(o, "value").unwrap()).await?,
            "put-null" => t.put_null(key(o)).await?,
            "del" => t.del(key(o)).await?,
            "cas-put" => {
                let expect = s(o, "expect").map(str::to_string);
                t.put_cas(key(o), s(o, "value").unwrap(), |prev, _| {
                    prev.value == expect
                })
                .await?;
            }
            "cas-del" => {
                let expect = s(o, "expect").map(str::to_string);
                t.del_cas(key(o), |prev, _| prev.value == expect).await?;
            }
            "batch" => {
                let mut b = t.batch();
                for x in o["ops"].as_array().expect("batch ops") {
                    let expect = s(x, "expect").map(str::to_string);
                    match s(x, "op").expect("op") {
                        "put" => b.put(key(x), s(x, "value").unwrap()).await?,
                        "put-null" => b.put_null(key(x)).await?,
                        "del" => b.del(key(x)).await?,
                        "cas-put" => {
                            b.put_cas(key(x), s(x, "value").unwrap(), |prev, _| {
                                prev.value == expect
                            })
                            .await?;
                        }
                        "cas-del" => {
                            b.del_cas(key(x), |prev, _| prev.value == expect).await?;
                        }
                        other => panic!("unknown batch op {other}"),
                    }
                }
                if o["flush"] == json!(false) {
                    b.close();
                } else {
                    b.flush().await?;
                }
            }
            other => panic!("unknown op {other}"),
        }
        versions.push(db.version().await);
    }
    Ok(versions)
}

fn entry(seq: u64, key: String, value: Option<String>) -> Value {
    json!([seq, key, value])
}

fn range_of(q: &Value) -> RangeOptions<'_, Utf8> {
    RangeOptions {
        gt: s(q, "gt"),
        gte: s(q, "gte"),
        lt: s(q, "lt"),
        lte: s(q, "lte"),
        reverse: q["reverse"].as_bool().unwrap_or(false),
        limit: q["limit"].as_u64(),
    }
}

async fn ranges<C: BeeCore>(db: &Db<C>, qs: &Value) -> Result<Value, BeeError> {
    let mut out = Vec::new();
    for q in qs.as_array().into_iter().flatten() {
        let rows = view(db, q)
            .create_read_stream(range_of(q))
            .collect()
            .await?;
        out.push(Value::Array(
            rows.into_iter()
                .map(|e| entry(e.seq, e.key, e.value))
                .collect(),
        ));
    }
    Ok(Value::Array(out))
}

/// Run the queries of `q` (see `bee-common.js`); the same JSON as the JS side prints.
pub async fn queries<C: BeeCore>(db: &Db<C>, q: &Value) -> Result<Value, BeeError> {
    let mut gets = Vec::new();
    for g in q["gets"].as_array().into_iter().flatten() {
        gets.push(match view(db, g).get(key(g)).await? {
            Some(e) => entry(e.seq, e.key, e.value),
            None => Value::Null,
        });
    }
    let mut histories = Vec::new();
    for h in q["histories"].as_array().into_iter().flatten() {
        let o = HistoryOptions {
            gt: h["gt"].as_i64(),
            gte: h["gte"].as_i64(),
            lt: h["lt"].as_i64(),
            lte: h["lte"].as_i64(),
            reverse: h["reverse"].as_bool().unwrap_or(false),
            limit: h["limit"].as_u64(),
            live: false,
        };
        let rows = db.create_history_stream(o)?.collect().await?;
        histories.push(Value::Array(
            rows.into_iter()
                .map(|e| {
                    let t = if e.kind == HistoryType::Put {
                        "put"
                    } else {
                        "del"
                    };
                    json!([t, e.seq, e.key, e.value])
                })
                .collect(),
        ));
    }
    let mut diffs = Vec::new();
    for d in q["diffs"].as_array().into_iter().flatten() {
        let v = d["version"].as_u64().expect("diff version");
        let rows = db
            .create_diff_stream_to(v, range_of(d))
            .await
            .collect()
            .await?;
        let side = |e: Option<hyperpunch_core::hyperbee::Entry<String, String>>| match e {
            Some(e) => entry(e.seq, e.key, e.value),
            None => Value::Null,
        };
        diffs.push(Value::Array(
            rows.into_iter()
                .map(|r| json!([side(r.left), side(r.right)]))
                .collect(),
        ));
    }
    let mut versions = Vec::new();
    for v in q["versions"].as_array().into_iter().flatten() {
        let snap = db.checkout(v["version"].as_u64().expect("version")).await;
        versions.push(ranges(&snap, &v["ranges"]).await?);
    }
    Ok(json!({
        "ranges": ranges(db, &q["ranges"]).await?,
        "gets": gets,
        "histories": histories,
        "diffs": diffs,
        "versions": versions,
    }))
}

/// A small seeded generator.
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Key `i` of the generated workloads.
pub fn key_name(i: u64) -> String {
    format!("key-{:05}", i)
}

/// About `keys` keys written one at a time and in batches, then overwritten, deleted, compare-
/// and-swapped, in subs, with unicode and empty keys and values: every kind of write JS has.
pub fn workload(seed: u64, keys: u64) -> Vec<Value> {
    let mut r = Rng::new(seed);
    let mut order: Vec<u64> = (0..keys).collect();
    for i in (1..order.len()).rev() {
        let j = r.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let mut ops = Vec::new();
    let mut it = order.into_iter();
    let mut step = 0u64;
    let mut written: Vec<u64> = Vec::new();
    loop {
        step += 1;
        let kind = r.below(20);
        if kind < 1 {
            // A batch of fresh keys, overwrites and deletes (some of its own keys).
            let mut bops = Vec::new();
            let n = 10 + r.below(50);
            for _ in 0..n {
                match r.below(6) {
                    0 if !written.is_empty() => {
                        let k = written[r.below(written.len() as u64) as usize];
                        bops.push(json!({"op": "del", "key": key_name(k)}));
                    }
                    1 if !written.is_empty() => {
                        let k = written[r.below(written.len() as u64) as usize];
                        bops.push(
                            json!({"op": "put", "key": key_name(k), "value": format!("b{step}")}),
                        );
                    }
                    2 if !written.is_empty() => {
                        let k = written[r.below(written.len() as u64) as usize];
                        bops.push(json!({"op": "cas-put", "key": key_name(k), "value": format!("c{step}"), "expect": format!("v{k}")}));
                    }
                    _ => {
                        match it.next() {
                            Some(k) => {
                                written.push(k);
                                bops.push(json!({"op": "put", "key": key_name(k), "value": format!("v{k}")}));
                            }
                            None => break,
                        }
                    }
                }
            }
            let flush = r.below(8) != 0;
            ops.push(json!({"op": "batch", "ops": bops, "flush": flush}));
            if !flush {
                // Discarded: its fresh keys were never written.
                written.retain(|k| {
                    !ops.last().unwrap()["ops"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|o| {
                            o["key"] == json!(key_name(*k)) && o["value"] == json!(format!("v{k}"))
                        })
                });
            }
            continue;
        }
        match kind {
            1..=3 if !written.is_empty() => {
                let k = written[r.below(written.len() as u64) as usize];
                ops.push(json!({"op": "put", "key": key_name(k), "value": format!("o{step}")}));
            }
            4 if !written.is_empty() => {
                let k = written[r.below(written.len() as u64) as usize];
                ops.push(json!({"op": "del", "key": key_name(k)}));
            }
            5 => ops.push(json!({"op": "del", "key": format!("absent-{step}")})),
            6 if !written.is_empty() => {
                let k = written[r.below(written.len() as u64) as usize];
                let expect = if r.below(2) == 0 {
                    format!("v{k}")
                } else {
                    "nope".into()
                };
                ops.push(json!({"op": "cas-put", "key": key_name(k), "value": format!("c{step}"), "expect": expect}));
            }
            7 if !written.is_empty() => {
                let k = written[r.below(written.len() as u64) as usize];
                let expect = if r.below(2) == 0 {
                    format!("v{k}")
                } else {
                    "nope".into()
                };
                ops.push(json!({"op": "cas-del", "key": key_name(k), "expect": expect}));
            }
            8 => {
                let sep = if r.below(2) == 0 {
                    Value::Null
                } else {
                    json!("/")
                };
                let mut o = json!({"op": "put", "sub": "users", "key": format!("u{}", r.below(50)), "value": format!("s{step}")});
                if !sep.is_null() {
                    o["sep"] = sep;
                }
                ops.push(o);
            }
            9 => ops.push(json!({"op": "put-null", "key": format!("null-{}", r.below(10))})),
            _ => match it.next() {
                Some(k) => {
                    written.push(k);
                    ops.push(json!({"op": "put", "key": key_name(k), "value": format!("v{k}")}));
                }
                None => break,
            },
        }
    }
    // Odd keys and values, and a batch whose compare-and-swap refuses before later puts (JS
    // keeps the nodes that refused put marked changed, and rewrites them with the next put).
    ops.push(json!({"op": "put", "key": "", "value": "empty key"}));
    ops.push(json!({"op": "put", "key": "empty value", "value": ""}));
    ops.push(json!({"op": "put", "key": "ünïcødé ✓", "value": "värde 🐝"}));
    ops.push(json!({"op": "put", "key": "key-\u{0}nul", "value": "nul"}));
    ops.push(json!({"op": "batch", "ops": [
        {"op": "cas-put", "key": key_name(3), "value": "refused", "expect": "never"},
        {"op": "put", "key": key_name(keys / 2), "value": "after a refusal"},
        {"op": "put", "key": "zzz-after", "value": "1"},
        {"op": "cas-del", "key": key_name(5), "expect": "never"},
        {"op": "del", "key": key_name(keys / 3)},
    ]}));
    ops.push(json!({"op": "batch", "sub": "users", "ops": [
        {"op": "put", "key": "batched", "value": "in a sub"},
        {"op": "del", "key": "u1"},
    ]}));
    ops
}

/// Queries covering every range option (bounds inclusive and exclusive, present and absent
/// keys, reverse, limits), subs, gets, histories, diffs and checkouts, for a bee of about
/// `keys` keys whose versions after each operation were `versions` (what [`apply`] returns).
pub fn query_set(keys: u64, versions: &[u64]) -> Value {
    let length = *versions.last().unwrap_or(&1);
    let at = |f: f64| versions[((versions.len() - 1) as f64 * f) as usize] as i64;
    let bounds = [
        Value::Null,
        json!(key_name(0)),
        json!(key_name(keys / 3)),
        json!(format!("{}x", key_name(keys / 2))),
        json!(key_name(keys - 1)),
        json!("a"),
        json!("zzzz"),
    ];
    let mut ranges = Vec::new();
    for lo in &bounds {
        for hi in &bounds {
            for (i, (reverse, limit)) in [
                (false, Value::Null),
                (true, json!(7)),
                (true, Value::Null),
                (false, json!(0)),
            ]
            .into_iter()
            .enumerate()
            {
                let (gk, lk) = if i % 2 == 0 {
                    ("gte", "lt")
                } else {
                    ("gt", "lte")
                };
                let mut q = json!({"reverse": reverse, "limit": limit});
                if !lo.is_null() {
                    q[gk] = lo.clone();
                }
                if !hi.is_null() {
                    q[lk] = hi.clone();
                }
                ranges.push(q);
            }
        }
    }
    ranges.push(
        json!({"gt": key_name(10), "gte": key_name(5), "lt": key_name(40), "lte": key_name(50)}),
    );
    for sub in [json!({"sub": "users"}), json!({"sub": "users", "sep": "/"})] {
        ranges.push(sub.clone());
        let mut r = sub.clone();
        r["reverse"] = json!(true);
        ranges.push(r);
        let mut r = sub.clone();
        r["gte"] = json!("u2");
        r["lt"] = json!("u4");
        ranges.push(r);
    }
    let mut gets: Vec<Value> = (0..keys)
        .step_by((keys / 40).max(1) as usize)
        .map(|k| json!({"key": key_name(k)}))
        .collect();
    gets.extend([
        json!({"key": ""}),
        json!({"key": "empty value"}),
        json!({"key": "ünïcødé ✓"}),
        json!({"key": "absent"}),
        json!({"key": "null-3"}),
        json!({"key": "batched", "sub": "users"}),
        json!({"key": "u7", "sub": "users"}),
        json!({"key": "u7", "sub": "users", "sep": "/"}),
    ]);
    let l = length as i64;
    let histories = json!([
        {},
        {"gte": l / 2, "lt": l / 2 + 30},
        {"gt": 10, "lte": 40, "reverse": true},
        {"gte": -25},
        {"reverse": true, "limit": 33},
        {"lt": 0},
        {"lte": -3, "limit": 5},
    ]);
    let diffs = json!([
        {"version": 1},
        {"version": at(0.33)},
        {"version": at(0.5), "gte": key_name(keys / 4), "lt": key_name(keys / 2)},
        {"version": at(0.97), "gt": key_name(3), "lte": key_name(keys - 3)},
        {"version": at(0.99), "limit": 3},
        {"version": l},
    ]);
    let versions = json!([
        {"version": at(0.25), "ranges": [{}, {"gte": key_name(keys / 5), "limit": 20}, {"reverse": true, "limit": 9}]},
        {"version": at(0.6), "ranges": [{"lt": key_name(keys / 2), "reverse": true}]},
    ]);
    json!({"ranges": ranges, "gets": gets, "histories": histories, "diffs": diffs, "versions": versions})
}
