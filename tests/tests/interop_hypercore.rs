//! Live interop of hypercore's data layer with the pinned JS reference (`tests/interop`).
//!
//! One `node tests/interop/hypercore-ops.js` process builds every scenario's core from a seed
//! (hypercore 11.37.1) and prints its key, per-op state (length, byte length, fork, tree hash,
//! signature as sent on the wire) and the `wire.data` encoding of the requested proofs. Rust runs
//! the same operations on its own [`Hypercore`] and must reproduce all of it byte for byte; it
//! verifies the JS proofs on fresh reader cores, and a second node process verifies the proofs
//! Rust generated (and rejects tampered ones).
//!
//! Needs `npm ci --prefix tests/interop` (the test fails with that hint otherwise).

use std::time::Duration;

use futures_executor::block_on;
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::encoding::{Decode, Encode};
use hyperpunch_core::hypercore::manifest::Manifest;
use hyperpunch_core::hypercore::messages::{Data, RequestBlock, RequestSeek, RequestUpgrade};
use hyperpunch_core::hypercore::{CreateOptions, Hypercore, HypercoreError, ProofRequest};
use hyperpunch_core::storage::MemoryStorage;
use hyperpunch_tests::hypercore_ops::{
    self, verify_job, Built, Op, ProofRequest as Req, Scenario, Verified, VerifyItem,
};

const TIMEOUT: Duration = Duration::from_secs(120);
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn seed(n: u8) -> [u8; 32] {
    [n; 32]
}

fn block_upgrade(index: u64, len: u64) -> Req {
    Req {
        block: Some((index, 0)),
        upgrade: Some((0, len)),
        ..Req::default()
    }
}

fn upgrade(len: u64) -> Req {
    Req {
        upgrade: Some((0, len)),
        ..Req::default()
    }
}

/// The proofs asked of a core of `len` blocks and `bytes` (stored) bytes. The first one is the
/// full upgrade, used to bootstrap readers for the proofs that need one.
fn proof_set(len: u64, bytes: u64, padding: u64) -> Vec<Req> {
    let mid = len / 2;
    vec![
        upgrade(len),
        block_upgrade(0, len),
        block_upgrade(len - 1, len),
        block_upgrade(mid, len),
        // upgrade to a shorter length: the proof carries additional nodes up to `len`
        Req {
            block: Some((0, 0)),
            upgrade: Some((0, (len / 3).max(1))),
            ..Req::default()
        },
        upgrade((len / 2).max(1)),
        Req {
            seek: Some((bytes / 2, padding)),
            upgrade: Some((0, len)),
            ..Req::default()
        },
        // these need a reader that already has the tree (bootstrapped with the first proof)
        Req {
            block: Some((mid, missing_nodes(2 * mid, len))),
            ..Req::default()
        },
        Req {
            hash: Some((2 * (len - 1), missing_nodes(2 * (len - 1), len))),
            ..Req::default()
        },
        Req {
            seek: Some((bytes / 3, padding)),
            ..Req::default()
        },
    ]
}

/// How many tree nodes, from `tree_index` up, a reader holding only the roots of a `len`-block
/// tree lacks (JS `MerkleTree.missingNodes` right after an upgrade-only proof): the request's
/// `nodes` for a block or hash proof to such a reader.
fn missing_nodes(tree_index: u64, len: u64) -> u64 {
    let level = u64::from(tree_index.trailing_ones());
    let first_block = (tree_index >> (level + 1)) << level;
    let mut start = 0;
    for k in (0..64).rev() {
        let span = 1u64 << k;
        if len & span != 0 {
            if first_block < start + span {
                return k - level;
            }
            start += span;
        }
    }
    panic!("tree node {tree_index} is not in a tree of length {len}")
}

/// The blocks the log holds after `ops`.
fn model(ops: &[Op]) -> Vec<Vec<u8>> {
    let mut log = Vec::new();
    for op in ops {
        match op {
            Op::Truncate(len) => log.truncate(*len as usize),
            Op::Snapshot => {}
            _ => op.batches().into_iter().for_each(|b| log.extend(b)),
        }
    }
    log
}

fn scenarios() -> Vec<Scenario> {
    let small = |name: &str, n: u8, compat: bool, enc: bool| {
        let ops = vec![
            Op::Append(vec![vec![], vec![0x61], vec![0x40; 64]]),
            Op::Generate {
                count: 20,
                size: 64,
                fill: 3,
                batch: 7,
            },
            Op::Append(vec![b"hello".to_vec()]),
        ];
        let log = model(&ops);
        let bytes: u64 = log
            .iter()
            .map(|b| b.len() as u64 + if enc { 8 } else { 0 })
            .sum();
        Scenario {
            name: name.into(),
            seed: seed(n),
            compat,
            encryption_key: enc.then_some([0x09; 32]),
            proofs: proof_set(log.len() as u64, bytes, if enc { 8 } else { 0 }),
            ops,
        }
    };
    let truncations = |name: &str, n: u8, compat: bool, enc: bool| {
        let ops = vec![
            Op::Generate {
                count: 10,
                size: 64,
                fill: 0,
                batch: 10,
            },
            Op::Truncate(7),
            Op::Generate {
                count: 3,
                size: 1,
                fill: 0xf0,
                batch: 1,
            },
            Op::Truncate(0),
            Op::Append(vec![vec![], b"x".to_vec()]),
            Op::Generate {
                count: 5,
                size: 64,
                fill: 7,
                batch: 2,
            },
            Op::Truncate(3),
            Op::Generate {
                count: 4,
                size: 4 * KIB,
                fill: 1,
                batch: 4,
            },
        ];
        let len = model(&ops).len() as u64;
        Scenario {
            name: name.into(),
            seed: seed(n),
            compat,
            encryption_key: enc.then_some([0x0a; 32]),
            proofs: vec![
                upgrade(len),
                block_upgrade(0, len),
                block_upgrade(len - 1, len),
                Req {
                    seek: Some((100, 0)),
                    upgrade: Some((0, len)),
                    ..Req::default()
                },
            ],
            ops,
        }
    };
    let sizes_ops = vec![
        Op::Append(vec![vec![]]),
        Op::Append(vec![vec![0xff]]),
        Op::Append(vec![vec![0x40; 64]]),
        Op::Generate {
            count: 8,
            size: 4 * KIB,
            fill: 0x10,
            batch: 3,
        },
        Op::Generate {
            count: 3,
            size: MIB,
            fill: 0x20,
            batch: 1,
        },
        Op::Append(vec![vec![]]),
    ];
    let sizes_len = model(&sizes_ops).len() as u64;
    let big_ops = vec![Op::Generate {
        count: 10_000,
        size: 32,
        fill: 0,
        batch: 1000,
    }];
    let mut big_proofs = vec![upgrade(10_000)];
    // a fixed spread of indexes (LCG), each with the full upgrade
    let mut x: u64 = 12345;
    for _ in 0..8 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        big_proofs.push(block_upgrade((x >> 33) % 10_000, 10_000));
    }
    big_proofs.extend([
        upgrade(4_097),
        Req {
            seek: Some((160_001, 0)),
            upgrade: Some((0, 10_000)),
            ..Req::default()
        },
        Req {
            block: Some((7_777, missing_nodes(2 * 7_777, 10_000))),
            ..Req::default()
        },
        Req {
            hash: Some((2 * 4_096 + 1, missing_nodes(2 * 4_096 + 1, 10_000))),
            ..Req::default()
        },
    ]);
    vec![
        small("default", 1, false, false),
        small("compat", 2, true, false),
        small("default+encrypted", 3, false, true),
        small("compat+encrypted", 4, true, true),
        truncations("default truncations", 5, false, false),
        truncations("compat+encrypted truncations", 6, true, true),
        Scenario {
            name: "block sizes 0 B .. 1 MiB".into(),
            seed: seed(7),
            compat: false,
            encryption_key: None,
            ops: sizes_ops,
            proofs: vec![
                upgrade(sizes_len),
                block_upgrade(0, sizes_len),
                block_upgrade(1, sizes_len),
                block_upgrade(2, sizes_len),
                block_upgrade(5, sizes_len),
                block_upgrade(12, sizes_len),
                block_upgrade(13, sizes_len),
                Req {
                    seek: Some((2 * MIB as u64, 0)),
                    upgrade: Some((0, sizes_len)),
                    ..Req::default()
                },
            ],
        },
        Scenario {
            name: "10k blocks".into(),
            seed: seed(8),
            compat: false,
            encryption_key: Some([0x0b; 32]),
            ops: big_ops,
            proofs: big_proofs,
        },
    ]
}

fn to_request(r: &Req) -> ProofRequest {
    ProofRequest {
        block: r.block.map(|(index, nodes)| RequestBlock { index, nodes }),
        hash: r.hash.map(|(index, nodes)| RequestBlock { index, nodes }),
        seek: r
            .seek
            .map(|(bytes, padding)| RequestSeek { bytes, padding }),
        upgrade: r
            .upgrade
            .map(|(start, length)| RequestUpgrade { start, length }),
    }
}

/// The writer Rust builds for a scenario, and the `wire.data` encodings of its proofs.
struct RustSide {
    core: Hypercore<MemoryStorage>,
    proofs: Vec<Vec<u8>>,
}

async fn build_rust(s: &Scenario, js: &Built) -> RustSide {
    let kp = KeyPair::from_seed(&s.seed);
    assert_eq!(
        kp.public_key.as_slice(),
        js.public_key,
        "{}: public key",
        s.name
    );
    let mut core = Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair: Some(kp),
            compat: s.compat,
            encryption_key: s.encryption_key,
            ..CreateOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{}: create: {e}", s.name));
    assert_eq!(core.key().as_slice(), js.key, "{}: key", s.name);
    assert_eq!(
        core.discovery_key().as_slice(),
        js.discovery_key,
        "{}: discovery key",
        s.name
    );
    assert_eq!(core.is_compat(), js.compat, "{}: compat", s.name);
    let manifest = core.manifest().expect("a writer has a manifest").to_bytes();
    assert_eq!(manifest, js.manifest, "{}: encoded manifest", s.name);

    assert_eq!(
        s.ops.len(),
        js.states.len(),
        "{}: one JS state per op",
        s.name
    );
    let mut snapshot = None;
    for (i, (op, want)) in s.ops.iter().zip(&js.states).enumerate() {
        match op {
            Op::Truncate(len) => core
                .truncate(*len, None)
                .await
                .unwrap_or_else(|e| panic!("{}: op {i} truncate: {e}", s.name)),
            Op::Snapshot => snapshot = Some(core.snapshot()),
            _ => {
                for batch in op.batches() {
                    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                    core.append(&refs)
                        .await
                        .unwrap_or_else(|e| panic!("{}: op {i} append: {e}", s.name));
                }
            }
        }
        let at = format!("{}: after op {i} ({op:?})", s.name);
        let at = &at[..at.len().min(200)];
        assert_eq!(core.length(), want.length, "{at}: length");
        assert_eq!(core.byte_length(), want.byte_length, "{at}: byteLength");
        assert_eq!(
            core.tree().byte_length,
            want.tree_byte_length,
            "{at}: tree byte length"
        );
        assert_eq!(core.fork(), want.fork, "{at}: fork");
        assert_eq!(
            hex::encode(core.tree_hash()),
            hex::encode(&want.tree_hash),
            "{at}: treeHash"
        );
        assert_eq!(
            hex::encode(core.signature()),
            hex::encode(&want.signature),
            "{at}: signature"
        );
    }

    let mut proofs = Vec::new();
    for (i, req) in s.proofs.iter().enumerate() {
        let (proof, fork) = match (&snapshot, req.snapshot) {
            (Some(snap), true) => (core.proof_at(snap, &to_request(req)).await, snap.fork()),
            (None, true) => panic!("{}: proof {i} from a snapshot, but none was taken", s.name),
            (_, false) => (core.proof(&to_request(req)).await, core.fork()),
        };
        let mut data = proof.unwrap_or_else(|e| panic!("{}: Rust proof {i} {req:?}: {e}", s.name));
        data.request = i as u64 + 1;
        data.fork = fork;
        proofs.push(data.to_bytes());
    }
    RustSide { core, proofs }
}

/// The readers' view after applying a sequence of proofs: what both sides must agree on.
#[derive(Debug, Clone)]
struct ReaderResult {
    ok: bool,
    /// Why the proof was rejected (not compared: the two sides word it differently).
    error: Option<String>,
    length: u64,
    fork: u64,
    byte_length: u64,
    tree_hash: String,
    block: Option<(u64, Vec<u8>)>,
    /// The blocks the reader holds afterwards.
    held: Vec<u64>,
}

impl PartialEq for ReaderResult {
    fn eq(&self, o: &Self) -> bool {
        (
            self.ok,
            self.length,
            self.fork,
            self.byte_length,
            &self.tree_hash,
            &self.block,
            &self.held,
        ) == (
            o.ok,
            o.length,
            o.fork,
            o.byte_length,
            &o.tree_hash,
            &o.block,
            &o.held,
        )
    }
}

impl From<&Verified> for ReaderResult {
    fn from(v: &Verified) -> Self {
        ReaderResult {
            ok: v.ok,
            error: v.error.clone(),
            length: v.length,
            fork: v.fork,
            byte_length: v.byte_length,
            tree_hash: hex::encode(&v.tree_hash),
            block: v.block.clone(),
            held: v.held.clone(),
        }
    }
}

async fn fresh_reader(s: &Scenario, js: &Built) -> Hypercore<MemoryStorage> {
    let manifest = Manifest::from_bytes(&js.manifest).expect("JS manifest decodes");
    let key: [u8; 32] = js.key.as_slice().try_into().expect("32-byte key");
    Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key: Some(key),
            manifest: Some(manifest),
            compat: s.compat,
            encryption_key: s.encryption_key,
            ..CreateOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{}: reader: {e}", s.name))
}

/// Applies `items` on Rust readers exactly as the JS verify job does.
async fn verify_rust(s: &Scenario, js: &Built, items: &[VerifyItem]) -> Vec<ReaderResult> {
    let mut reader = fresh_reader(s, js).await;
    let mut out = Vec::new();
    for item in items {
        if item.fresh {
            reader = fresh_reader(s, js).await;
        }
        let res: Result<Option<(u64, Vec<u8>)>, HypercoreError> = async {
            let data = Data::from_bytes(&item.data)?;
            reader.apply_proof(&data).await?;
            Ok(match &data.block {
                Some(b) => Some((b.index, reader.get(b.index).await?.unwrap_or_default())),
                None => None,
            })
        }
        .await;
        out.push(ReaderResult {
            ok: res.is_ok(),
            error: res.as_ref().err().map(|e| e.to_string()),
            length: reader.length(),
            fork: reader.fork(),
            byte_length: reader.byte_length(),
            tree_hash: hex::encode(reader.tree_hash()),
            block: res.ok().flatten(),
            held: (0..reader.length()).filter(|&i| reader.has(i)).collect(),
        });
    }
    out
}

/// For each proof: the verify items (a fresh reader, bootstrapped with proof 0 if the proof needs
/// a reader that has the tree) and the index of the item whose result is the proof's.
fn verify_plan(s: &Scenario, proofs: &[Vec<u8>]) -> (Vec<VerifyItem>, Vec<usize>) {
    let mut items = Vec::new();
    let mut at = Vec::new();
    for (req, data) in s.proofs.iter().zip(proofs) {
        if !req.standalone() {
            items.push(VerifyItem {
                data: proofs[0].clone(),
                fresh: true,
            });
        }
        items.push(VerifyItem {
            data: data.clone(),
            fresh: req.standalone(),
        });
        at.push(items.len() - 1);
    }
    (items, at)
}

/// A copy of `proof` with one byte of its block value (or else its signature) flipped.
fn tampered(proof: &[u8], in_signature: bool) -> Vec<u8> {
    let mut d = Data::from_bytes(proof).expect("decodes");
    match (&mut d.block, &mut d.upgrade) {
        (Some(b), _) if !in_signature && !b.value.is_empty() => {
            let last = b.value.len() - 1;
            b.value[last] ^= 1;
        }
        (_, Some(u)) => u.signature[10] ^= 0x80,
        _ => panic!("nothing to tamper with"),
    }
    d.to_bytes()
}

#[test]
fn hypercore_data_layer_matches_js() {
    let scenarios = scenarios();
    let jobs = scenarios.iter().map(Scenario::to_job).collect();
    let built: Vec<Built> = hypercore_ops::run_jobs(jobs, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(Built::parse)
        .collect();

    let mut verify_jobs = Vec::new();
    let mut expectations = Vec::new();
    for (s, js) in scenarios.iter().zip(&built) {
        let log = model(&s.ops);
        let rust = block_on(build_rust(s, js));
        assert_eq!(
            rust.core.length(),
            log.len() as u64,
            "{}: model length",
            s.name
        );

        // Proof generation: Rust encodes exactly what JS encodes.
        let js_proofs: Vec<Vec<u8>> = js
            .proofs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.clone()
                    .unwrap_or_else(|e| panic!("{}: JS proof {i} failed: {e}", s.name))
            })
            .collect();
        for (i, (r, j)) in rust.proofs.iter().zip(&js_proofs).enumerate() {
            assert_eq!(
                hex::encode(r),
                hex::encode(j),
                "{}: proof {i} {:?}: Rust wire.data != JS wire.data",
                s.name,
                s.proofs[i]
            );
        }

        // Rust verifies the JS proofs, on fresh readers or readers bootstrapped as the plan says;
        // for a truncated writer (fork > 0) that includes the reader's reorg onto the new fork.
        let (items, at) = verify_plan(s, &js_proofs);
        let rust_results = block_on(verify_rust(s, js, &items));
        {
            let results = &rust_results;
            for (i, &k) in at.iter().enumerate() {
                let r = &results[k];
                assert!(
                    r.ok,
                    "{}: Rust rejects JS proof {i} {:?}: {:?}",
                    s.name, s.proofs[i], r.error
                );
                if let Some((index, value)) = &r.block {
                    assert_eq!(
                        value, &log[*index as usize],
                        "{}: block {index} read back",
                        s.name
                    );
                }
            }
        }

        // Tampered Rust proofs: first proof with a block, with the block and the signature flipped.
        let k = s
            .proofs
            .iter()
            .position(|p| p.block.is_some() && p.standalone())
            .expect("a block proof");
        let bad = [
            tampered(&rust.proofs[k], false),
            tampered(&rust.proofs[k], true),
        ];
        {
            let bad_items: Vec<VerifyItem> = bad
                .iter()
                .map(|d| VerifyItem {
                    data: d.clone(),
                    fresh: true,
                })
                .collect();
            for (n, r) in block_on(verify_rust(s, js, &bad_items)).iter().enumerate() {
                assert!(!r.ok, "{}: Rust accepts tampered proof {n}", s.name);
                assert_eq!(
                    r.length, 0,
                    "{}: tampered proof {n} changed the reader",
                    s.name
                );
            }
        }

        // JS verifies the Rust proofs, then the tampered ones.
        let (mut items, at) = verify_plan(s, &rust.proofs);
        let bad_at = items.len();
        items.extend(bad.iter().map(|d| VerifyItem {
            data: d.clone(),
            fresh: true,
        }));
        verify_jobs.push(verify_job(
            &js.key,
            &js.manifest,
            s.compat,
            s.encryption_key,
            &items,
        ));
        let writer = ReaderResult {
            ok: true,
            error: None,
            length: rust.core.length(),
            fork: rust.core.fork(),
            byte_length: rust.core.byte_length(),
            tree_hash: hex::encode(rust.core.tree_hash()),
            block: None,
            held: Vec::new(),
        };
        expectations.push((at, bad_at, rust_results, log, writer));
    }

    let verified = hypercore_ops::run_jobs(verify_jobs, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    for ((s, out), (at, bad_at, rust_results, log, writer)) in
        scenarios.iter().zip(&verified).zip(expectations)
    {
        let results = Verified::parse_all(out);
        for (i, &k) in at.iter().enumerate() {
            let r = &results[k];
            assert!(
                r.ok,
                "{}: JS rejects Rust proof {i} {:?}: {:?}",
                s.name, s.proofs[i], r.error
            );
            if let Some((index, value)) = &r.block {
                assert_eq!(
                    value, &log[*index as usize],
                    "{}: JS read back block {index}",
                    s.name
                );
            }
            if s.proofs[i].block.is_some() {
                assert!(
                    r.block.is_some(),
                    "{}: JS stored no block for proof {i}",
                    s.name
                );
            }
            // Every proof upgrades (or was bootstrapped) from 0: the reader reaches the writer's
            // tree, at its fork (JS reorgs to it).
            assert_eq!(
                ReaderResult::from(r),
                ReaderResult {
                    block: r.block.clone(),
                    held: r.held.clone(),
                    ..writer.clone()
                },
                "{}: JS reader after proof {i}",
                s.name
            );
            // Same proofs (byte-identical, checked above) on the same kind of reader: same state.
            {
                assert_eq!(
                    rust_results[k],
                    ReaderResult::from(r),
                    "{}: reader after proof {i}",
                    s.name
                );
            }
        }
        for (n, r) in results[bad_at..].iter().enumerate() {
            assert!(!r.ok, "{}: JS accepts tampered Rust proof {n}", s.name);
            assert_eq!(
                r.length, 0,
                "{}: tampered proof {n} changed the JS reader",
                s.name
            );
        }
    }
}

/// A Rust reader follows a truncating JS writer the way the replicator does: it holds all of one
/// fork, then gets the next fork's signed upgrade from 0 (a reorg: the roots both trees share
/// keep their blocks, everything past them is dropped), then that fork's block proofs. A JS
/// reader fed the same JS proofs must be in the same state after every one of them (length,
/// fork, byte length, tree hash, the blocks it holds), and the reader ends each fork holding
/// exactly the writer's log.
#[test]
fn rust_reader_follows_a_truncating_js_writer() {
    let ops = [
        Op::Generate {
            count: 10,
            size: 64,
            fill: 0,
            batch: 10,
        },
        // keeps the root over blocks 0..8: a reader reorging onto fork 1 keeps those blocks
        Op::Truncate(8),
        Op::Generate {
            count: 3,
            size: 1,
            fill: 0xf0,
            batch: 1,
        },
        Op::Truncate(0),
        Op::Append(vec![vec![], b"x".to_vec()]),
        Op::Generate {
            count: 5,
            size: 64,
            fill: 7,
            batch: 2,
        },
        // keeps the root over blocks 0..4
        Op::Truncate(4),
        Op::Generate {
            count: 3,
            size: 4 * KIB,
            fill: 1,
            batch: 4,
        },
    ];
    // The writer as the reader sees it at each fork: just before each truncation, and at the end.
    let ends: Vec<usize> = (1..ops.len())
        .filter(|&i| matches!(ops[i], Op::Truncate(_)))
        .chain([ops.len()])
        .collect();
    let configs = [
        ("default", 11, false, false),
        ("compat+encrypted", 12, true, true),
    ];
    let stages: Vec<Vec<Scenario>> = configs
        .iter()
        .map(|&(name, n, compat, enc)| {
            ends.iter()
                .map(|&end| {
                    let ops = ops[..end].to_vec();
                    let len = model(&ops).len() as u64;
                    let mut proofs = vec![upgrade(len)];
                    proofs.extend((0..len).map(|i| block_upgrade(i, len)));
                    Scenario {
                        name: format!("{name} follower, first {end} ops"),
                        seed: seed(n),
                        compat,
                        encryption_key: enc.then_some([0x0c; 32]),
                        ops,
                        proofs,
                    }
                })
                .collect()
        })
        .collect();
    let jobs = stages.iter().flatten().map(Scenario::to_job).collect();
    let built: Vec<Built> = hypercore_ops::run_jobs(jobs, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(Built::parse)
        .collect();
    let mut built = built.into_iter();

    let mut verify_jobs = Vec::new();
    let mut expectations = Vec::new();
    for scenarios in &stages {
        let js: Vec<Built> = built.by_ref().take(scenarios.len()).collect();
        let mut items = Vec::new();
        let mut last = Vec::new();
        for (s, j) in scenarios.iter().zip(&js) {
            let rust = block_on(build_rust(s, j));
            for (i, (p, r)) in j.proofs.iter().zip(&rust.proofs).enumerate() {
                let p = p
                    .as_ref()
                    .unwrap_or_else(|e| panic!("{}: JS proof {i}: {e}", s.name));
                assert_eq!(hex::encode(r), hex::encode(p), "{}: proof {i}", s.name);
                items.push(VerifyItem {
                    data: p.clone(),
                    fresh: items.is_empty(),
                });
            }
            last.push((
                items.len() - 1,
                s,
                j.states.last().expect("a state").clone(),
            ));
        }
        let first = &scenarios[0];
        let rust_results = block_on(verify_rust(first, &js[0], &items));
        for (k, r) in rust_results.iter().enumerate() {
            assert!(r.ok, "{}: Rust rejects item {k}: {:?}", first.name, r.error);
        }
        // Each fork ends fully held, at the writer's state, with the writer's blocks.
        for &(k, s, ref want) in &last {
            let r = &rust_results[k];
            let log = model(&s.ops);
            assert_eq!(
                (r.length, r.fork, r.byte_length, r.tree_hash.clone()),
                (
                    want.length,
                    want.fork,
                    want.byte_length,
                    hex::encode(&want.tree_hash)
                ),
                "{}: reader after the last proof",
                s.name
            );
            assert_eq!(r.held, (0..want.length).collect::<Vec<_>>(), "{}", s.name);
            assert_eq!(
                r.block,
                Some((want.length - 1, log.last().expect("a block").clone())),
                "{}",
                s.name
            );
        }
        // The reorgs kept the shared roots' blocks: 8 onto fork 1, none onto 2, 4 onto 3.
        let kept: Vec<usize> = last[..last.len() - 1]
            .iter()
            .map(|&(k, _, _)| rust_results[k + 1].held.len())
            .collect();
        assert_eq!(kept, [8, 0, 4], "{}: blocks kept by each reorg", first.name);
        verify_jobs.push(verify_job(
            &js[0].key,
            &js[0].manifest,
            first.compat,
            first.encryption_key,
            &items,
        ));
        expectations.push((first.name.clone(), rust_results));
    }

    let verified = hypercore_ops::run_jobs(verify_jobs, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    for (out, (name, rust_results)) in verified.iter().zip(expectations) {
        let results = Verified::parse_all(out);
        assert_eq!(results.len(), rust_results.len(), "{name}");
        for (k, (j, r)) in results.iter().zip(&rust_results).enumerate() {
            assert!(j.ok, "{name}: JS rejects item {k}: {:?}", j.error);
            assert_eq!(&ReaderResult::from(j), r, "{name}: readers after item {k}");
        }
    }
}

/// Proofs from a snapshot session (JS `snapshot.proof()`, Rust [`Hypercore::proof_at`] /
/// `Session::proof`): a writer of 10 blocks takes a snapshot, then appends 6 more; proofs asked
/// of the snapshot reach its length with the signature it had, byte for byte as JS makes them,
/// and fresh readers on both sides verify each other's to the snapshot's tree (length 10), the
/// block read back as written. (Before, a snapshot could only be proven from the live tree: an
/// upgrade to 16 with its signature.)
#[test]
fn snapshot_proofs_match_js() {
    let ops = vec![
        Op::Generate {
            count: 10,
            size: 100,
            fill: 1,
            batch: 10,
        },
        Op::Snapshot,
        Op::Generate {
            count: 6,
            size: 50,
            fill: 0x90,
            batch: 3,
        },
    ];
    let snap = |r: Req| Req {
        snapshot: true,
        ..r
    };
    let proofs = vec![
        snap(block_upgrade(3, 10)),
        snap(upgrade(10)),
        snap(block_upgrade(9, 10)),
        snap(Req {
            hash: Some((10, 0)),
            upgrade: Some((0, 10)),
            ..Req::default()
        }),
        snap(Req {
            seek: Some((550, 0)),
            upgrade: Some((0, 10)),
            ..Req::default()
        }),
        snap(block_upgrade(0, 4)),
    ];
    let s = Scenario {
        name: "snapshot proofs".into(),
        seed: seed(12),
        compat: false,
        encryption_key: None,
        ops,
        proofs,
    };
    let js = Built::parse(
        &hypercore_ops::run_jobs(vec![s.to_job()], TIMEOUT).unwrap_or_else(|e| panic!("{e}"))[0],
    );
    let log = model(&s.ops);
    let rust = block_on(build_rust(&s, &js));
    assert_eq!(rust.core.length(), 16);
    for (i, (r, j)) in rust.proofs.iter().zip(&js.proofs).enumerate() {
        let j = j
            .clone()
            .unwrap_or_else(|e| panic!("JS snapshot proof {i} failed: {e}"));
        assert_eq!(hex::encode(r), hex::encode(&j), "snapshot proof {i}");
    }
    // Each proof on a fresh reader, both ways: the reader takes the snapshot's tree.
    let items: Vec<VerifyItem> = rust
        .proofs
        .iter()
        .map(|d| VerifyItem {
            data: d.clone(),
            fresh: true,
        })
        .collect();
    let snap_state = &js.states[1];
    let ours = block_on(verify_rust(&s, &js, &items));
    let out = hypercore_ops::run_jobs(
        vec![verify_job(&js.key, &js.manifest, false, None, &items)],
        TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let theirs = Verified::parse_all(&out[0]);
    for (i, (r, j)) in ours.iter().zip(&theirs).enumerate() {
        assert!(r.ok, "Rust rejects snapshot proof {i}: {:?}", r.error);
        assert!(j.ok, "JS rejects snapshot proof {i}: {:?}", j.error);
        assert_eq!(r, &ReaderResult::from(j), "reader after snapshot proof {i}");
        // Upgrades to less (additional nodes) reach the snapshot's whole tree, not the core's.
        assert_eq!(r.length, 10, "proof {i}");
        assert_eq!(r.tree_hash, hex::encode(&snap_state.tree_hash), "proof {i}");
        if let Some((index, value)) = &r.block {
            assert_eq!(value, &log[*index as usize], "proof {i}: block {index}");
        }
    }
}
