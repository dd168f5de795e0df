//! The bee against the JS golden vectors (`tests/vectors/data/06-hyperbee.out`,
//! `06b-hyperbee-batch.out`), and the suite on memory storage.

use futures_executor::block_on;

use super::*;
use crate::crypto::KeyPair;
use crate::hypercore::{CreateOptions, Hypercore, Session};
use crate::storage::MemoryStorage;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/data/");

fn vector(name: &str) -> String {
    std::fs::read_to_string(format!("{VECTORS}{name}")).expect("vector file")
}

/// `#N HEX` lines of a vector dump: block N's bytes.
fn blocks_of(out: &str) -> Vec<(u64, Vec<u8>)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('#')?;
            let mut parts = rest.split_whitespace();
            let n: u64 = parts.next()?.parse().ok()?;
            let mut h = parts.next()?;
            if h == "HEADER" {
                h = parts.next()?;
            }
            Some((n, hex::decode(h).ok()?))
        })
        .collect()
}

async fn session(seed: u8) -> Session<MemoryStorage> {
    Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[seed; 32])),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_session()
}

async fn all_blocks(core: &Session<MemoryStorage>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..core.length().await {
        out.push(core.get(i).await.unwrap().unwrap());
    }
    out
}

#[test]
fn vector_06_blocks_reads_and_diff() {
    block_on(async {
        let core = session(1).await;
        let db = Hyperbee::new(core.clone()).with_codecs(Utf8, Utf8);
        for i in 1..=10 {
            db.put(&format!("k{i:02}"), &format!("v{i}")).await.unwrap();
        }
        db.del("k05").await.unwrap();
        let sub = db.sub("s");
        sub.put("x", "y").await.unwrap();
        let sub2 = db.sub_with_sep("s", b"/");
        sub2.put("x2", "y2").await.unwrap();

        let out = vector("06-hyperbee.out");
        let expected = blocks_of(&out);
        assert_eq!(expected.len(), 14);
        let got = all_blocks(&core).await;
        for (n, bytes) in &expected {
            assert_eq!(
                hex::encode(&got[*n as usize]),
                hex::encode(bytes),
                "block {n}"
            );
        }
        assert_eq!(db.version().await, 14);

        let k03 = db.get("k03").await.unwrap().unwrap();
        assert_eq!(
            (k03.seq, k03.key.as_str(), k03.value.as_deref()),
            (3, "k03", Some("v3"))
        );
        assert_eq!(db.get("k05").await.unwrap(), None);

        let all: Vec<String> = db
            .create_read_stream(Default::default())
            .collect()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key.replace('\0', "\\0"))
            .collect();
        assert_eq!(
            all.join(" | "),
            "k01 | k02 | k03 | k04 | k06 | k07 | k08 | k09 | k10 | s\\0x | s/x2"
        );
        let subs: Vec<String> = sub
            .create_read_stream(Default::default())
            .collect()
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{}={}@{}", e.key, e.value.unwrap(), e.seq))
            .collect();
        assert_eq!(subs, ["x=y@12"]);

        // createDiffStream(6): left = current, right = version 6.
        let diff = db.create_diff_stream_to(6, Default::default()).await;
        let lines: Vec<String> = diff
            .collect()
            .await
            .unwrap()
            .into_iter()
            .map(|d| {
                let side = |e: &Option<Entry<String, String>>| match e {
                    Some(e) => format!(
                        "{{\"seq\":{},\"key\":\"{}\"}}",
                        e.seq,
                        e.key.replace('\0', "\\0")
                    ),
                    None => "null".into(),
                };
                format!(
                    "{{\"left\":{},\"right\":{}}}",
                    side(&d.left),
                    side(&d.right)
                )
            })
            .collect();
        let want: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("createDiffStream(6)"))
            .skip(1)
            .take_while(|l| l.starts_with("  {"))
            .map(str::trim)
            .collect();
        assert_eq!(lines, want);
    });
}

#[test]
fn vector_06b_batch() {
    block_on(async {
        let core = session(1).await;
        let db = Hyperbee::new(core.clone()).with_codecs(Utf8, Binary);
        let mut b = db.batch();
        for k in ["b", "a", "c"] {
            b.put(k, k.to_uppercase().as_bytes()).await.unwrap();
        }
        // Reads through the batch see its pending writes; the bee does not yet.
        assert_eq!(b.get("a").await.unwrap().unwrap().value.unwrap(), b"A");
        assert_eq!(db.get("a").await.unwrap(), None);
        b.flush().await.unwrap();
        assert_eq!(core.length().await, 4);
        let out = vector("06b-hyperbee-batch.out");
        let got = all_blocks(&core).await;
        let mut n = 0;
        for l in out.lines().filter(|l| l.starts_with('#')) {
            let mut p = l[1..].split_whitespace();
            let i: usize = p.next().unwrap().parse().unwrap();
            assert_eq!(hex::encode(&got[i]), p.next().unwrap(), "block {i}");
            n += 1;
        }
        assert_eq!(n, 3);
        let keys: Vec<String> = db
            .create_read_stream(Default::default())
            .collect()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["a", "b", "c"]);
    });
}

#[test]
fn suite_on_memory() {
    block_on(suite::run_all(|| async { MemoryStorage::new() }));
}
