//! Scenarios for `tests/interop/hypercore-ops.js` and the parsed results it prints.
//!
//! A [`Scenario`] is serialised into a `build` job ([`Scenario::to_job`]); the Rust side runs the
//! very same [`Op`]s on its own core. [`verify_job`] builds a `verify` job from proof encodings.

use std::time::Duration;

use serde_json::{json, Value};

use crate::node::{self, NodeError};

/// The driver script, relative to `tests/interop`.
pub const SCRIPT: &str = "hypercore-ops.js";

/// One operation on a writer core.
#[derive(Debug, Clone)]
pub enum Op {
    /// Append these blocks in one batch.
    Append(Vec<Vec<u8>>),
    /// Append `count` blocks of `size` bytes, block `k` filled with `(fill + k) & 0xff`, `batch`
    /// blocks per append call.
    Generate {
        /// Number of blocks.
        count: usize,
        /// Size of each block.
        size: usize,
        /// Fill byte of the first block.
        fill: u8,
        /// Blocks per append call.
        batch: usize,
    },
    /// Truncate to this length (the fork goes up by one).
    Truncate(u64),
    /// Take a snapshot session here (JS `core.snapshot()`); proofs with
    /// [`ProofRequest::snapshot`] come from the last one.
    Snapshot,
}

impl Op {
    /// The blocks this op appends, in append-call batches (empty for a truncation).
    pub fn batches(&self) -> Vec<Vec<Vec<u8>>> {
        match self {
            Op::Append(blocks) => vec![blocks.clone()],
            Op::Generate {
                count,
                size,
                fill,
                batch,
            } => node::generated_blocks(*count, *size, *fill)
                .chunks((*batch).max(1))
                .map(<[Vec<u8>]>::to_vec)
                .collect(),
            Op::Truncate(_) | Op::Snapshot => Vec::new(),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Op::Append(blocks) => {
                json!({ "append": blocks.iter().map(hex::encode).collect::<Vec<_>>() })
            }
            Op::Generate {
                count,
                size,
                fill,
                batch,
            } => {
                json!({ "generate": { "count": count, "size": size, "fill": fill, "batch": batch } })
            }
            Op::Truncate(len) => json!({ "truncate": len }),
            Op::Snapshot => json!({ "snapshot": true }),
        }
    }
}

/// A proof request, as `core.proof(...)` takes it: `(index, nodes)` for block and hash,
/// `(bytes, padding)` for seek, `(start, length)` for upgrade.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProofRequest {
    /// Block `index`, with `nodes` tree nodes the requester already has.
    pub block: Option<(u64, u64)>,
    /// Tree node `index`, with `nodes` already known.
    pub hash: Option<(u64, u64)>,
    /// Byte offset to seek to, and padding.
    pub seek: Option<(u64, u64)>,
    /// Upgrade from `start` to `start + length`.
    pub upgrade: Option<(u64, u64)>,
    /// Prove from the last [`Op::Snapshot`] session instead of the core.
    pub snapshot: bool,
}

impl ProofRequest {
    /// Whether a fresh reader (length 0) can verify the proof on its own: it upgrades from 0.
    pub fn standalone(&self) -> bool {
        matches!(self.upgrade, Some((0, _)))
    }

    fn to_json(self) -> Value {
        let mut o = serde_json::Map::new();
        if let Some((index, nodes)) = self.block {
            o.insert("block".into(), json!({ "index": index, "nodes": nodes }));
        }
        if let Some((index, nodes)) = self.hash {
            o.insert("hash".into(), json!({ "index": index, "nodes": nodes }));
        }
        if let Some((bytes, padding)) = self.seek {
            o.insert("seek".into(), json!({ "bytes": bytes, "padding": padding }));
        }
        if let Some((start, length)) = self.upgrade {
            o.insert(
                "upgrade".into(),
                json!({ "start": start, "length": length }),
            );
        }
        if self.snapshot {
            o.insert("snapshot".into(), json!(true));
        }
        Value::Object(o)
    }
}

/// A writer core built from a seed, operations run on it, and proofs taken at the end.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name, for messages.
    pub name: String,
    /// Seed of the key pair (`hypercore-crypto` `keyPair(seed)`).
    pub seed: [u8; 32],
    /// Compat core (key = public key, 80-byte signable, raw signatures).
    pub compat: bool,
    /// Default block encryption with this key.
    pub encryption_key: Option<[u8; 32]>,
    /// The operations, in order.
    pub ops: Vec<Op>,
    /// Proofs taken after the last op.
    pub proofs: Vec<ProofRequest>,
}

impl Scenario {
    /// The `build` job for the JS driver.
    pub fn to_job(&self) -> Value {
        json!({
            "mode": "build",
            "seed": hex::encode(self.seed),
            "compat": self.compat,
            "encryptionKey": self.encryption_key.map(hex::encode),
            "ops": self.ops.iter().map(Op::to_json).collect::<Vec<_>>(),
            "proofs": self.proofs.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
        })
    }
}

/// The state of a core after one op, as JS printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreState {
    /// Number of blocks.
    pub length: u64,
    /// Bytes of user data (without encryption padding).
    pub byte_length: u64,
    /// Bytes in the merkle tree (stored blocks, with padding).
    pub tree_byte_length: u64,
    /// Fork id.
    pub fork: u64,
    /// Merkle tree hash.
    pub tree_hash: Vec<u8>,
    /// The stored signature as it goes on the wire.
    pub signature: Vec<u8>,
}

/// What the JS `build` job printed.
#[derive(Debug, Clone)]
pub struct Built {
    /// Core key.
    pub key: Vec<u8>,
    /// Discovery key.
    pub discovery_key: Vec<u8>,
    /// The writer's public key.
    pub public_key: Vec<u8>,
    /// Whether the core is a compat core.
    pub compat: bool,
    /// Encoded manifest.
    pub manifest: Vec<u8>,
    /// State after each op.
    pub states: Vec<CoreState>,
    /// Per requested proof: its `wire.data` encoding, or the error JS threw.
    pub proofs: Vec<Result<Vec<u8>, String>>,
}

/// One result of a JS `verify` job.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Whether the proof was accepted.
    pub ok: bool,
    /// The error code or message when it threw.
    pub error: Option<String>,
    /// Reader length afterwards.
    pub length: u64,
    /// Reader fork afterwards.
    pub fork: u64,
    /// Reader byte length afterwards.
    pub byte_length: u64,
    /// Reader tree hash afterwards.
    pub tree_hash: Vec<u8>,
    /// The block the proof carried, read back (decrypted) from the reader: (index, value).
    pub block: Option<(u64, Vec<u8>)>,
    /// The blocks the reader holds afterwards (indexes below its length).
    pub held: Vec<u64>,
}

fn unhex(v: &Value, what: &str) -> Vec<u8> {
    hex::decode(
        v.as_str()
            .unwrap_or_else(|| panic!("{what}: not a string: {v}")),
    )
    .unwrap_or_else(|e| panic!("{what}: bad hex: {e}"))
}

fn num(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what}: not an integer: {v}"))
}

impl Built {
    /// Parses one `build` result.
    pub fn parse(v: &Value) -> Built {
        let states = v["states"]
            .as_array()
            .expect("states")
            .iter()
            .map(|s| CoreState {
                length: num(&s["length"], "length"),
                byte_length: num(&s["byteLength"], "byteLength"),
                tree_byte_length: num(&s["treeByteLength"], "treeByteLength"),
                fork: num(&s["fork"], "fork"),
                tree_hash: unhex(&s["treeHash"], "treeHash"),
                signature: unhex(&s["signature"], "signature"),
            })
            .collect();
        let proofs = v["proofs"]
            .as_array()
            .expect("proofs")
            .iter()
            .map(|p| match p.get("data") {
                Some(d) => Ok(unhex(d, "proof data")),
                None => Err(p["error"].to_string()),
            })
            .collect();
        Built {
            key: unhex(&v["key"], "key"),
            discovery_key: unhex(&v["discoveryKey"], "discoveryKey"),
            public_key: unhex(&v["publicKey"], "publicKey"),
            compat: v["compat"].as_bool().expect("compat"),
            manifest: unhex(&v["manifest"], "manifest"),
            states,
            proofs,
        }
    }
}

impl Verified {
    /// Parses the results of one `verify` job.
    pub fn parse_all(v: &Value) -> Vec<Verified> {
        v["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| Verified {
                ok: r["ok"].as_bool().expect("ok"),
                error: r.get("error").map(|e| e.to_string()),
                length: num(&r["length"], "length"),
                fork: num(&r["fork"], "fork"),
                byte_length: num(&r["byteLength"], "byteLength"),
                tree_hash: unhex(&r["treeHash"], "treeHash"),
                block: r.get("block").map(|b| {
                    (
                        num(&b["index"], "block.index"),
                        unhex(&b["value"], "block.value"),
                    )
                }),
                held: r["held"]
                    .as_array()
                    .map(|a| a.iter().map(|i| num(i, "held")).collect())
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// A proof for a JS `verify` job: its `wire.data` encoding, and whether to start a fresh reader.
#[derive(Debug, Clone)]
pub struct VerifyItem {
    /// `wire.data` encoding.
    pub data: Vec<u8>,
    /// Start a new, empty reader before applying it.
    pub fresh: bool,
}

/// A `verify` job: a reader of `key` (with `manifest`, compat, encryption) applying `items`.
pub fn verify_job(
    key: &[u8],
    manifest: &[u8],
    compat: bool,
    encryption_key: Option<[u8; 32]>,
    items: &[VerifyItem],
) -> Value {
    json!({
        "mode": "verify",
        "key": hex::encode(key),
        "manifest": hex::encode(manifest),
        "compat": compat,
        "encryptionKey": encryption_key.map(hex::encode),
        "proofs": items.iter().map(|i| json!({ "data": hex::encode(&i.data), "fresh": i.fresh })).collect::<Vec<_>>(),
    })
}

/// Runs a batch of jobs in one node process; returns one result per job.
pub fn run_jobs(jobs: Vec<Value>, timeout: Duration) -> Result<Vec<Value>, NodeError> {
    let n = jobs.len();
    let out = node::run_script(SCRIPT, &Value::Array(jobs), timeout)?;
    let out = out.as_array().cloned().unwrap_or_default();
    assert_eq!(
        out.len(),
        n,
        "{SCRIPT} returned {} results for {n} jobs",
        out.len()
    );
    Ok(out)
}
