//! End-to-end tests of the `hyperpunch core` CLI: the built binary on temporary folders.

mod common;
use common::{hp, ok};
use futures_executor::block_on;
use hyperpunch::storage::{Batch, Storage};
use hyperpunch::FileStorage;
use std::path::Path;

const SEED1: &str = "0101010101010101010101010101010101010101010101010101010101010101";
/// JS `new Hypercore(..., { keyPair: crypto.keyPair(0x01 × 32) }).key` (vectors 02-hypercore-tree).
const JS_KEY_DEFAULT: &str = "d8c3a0597903b28d751c6e0b7107775e388ec5a3cf669bdd1e7ec41b8b8f6e72";
/// The same with `compat: true`: the public key.
const JS_KEY_COMPAT: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";

fn fails(args: &[&str], stdin: &[u8]) -> (i32, String) {
    let out = hp(args, stdin);
    assert!(!out.status.success(), "{args:?} should have failed");
    let err = String::from_utf8(out.stderr).expect("utf8 stderr");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{args:?}: {err}");
    (out.status.code().unwrap_or(-1), err)
}

fn dir_arg(p: &Path) -> &str {
    p.to_str().expect("utf8 temp path")
}

fn info_json(d: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["core", "info", "--storage", d, "--json"], b"")).expect("json")
}

#[test]
fn create_with_seed_gives_the_js_keys() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let key = ok(
        &["core", "create", "--storage", dir_arg(&a), "--seed", SEED1],
        b"",
    );
    assert_eq!(key.trim(), JS_KEY_DEFAULT);
    let b = t.path().join("b");
    let key = ok(
        &[
            "core",
            "create",
            "--storage",
            dir_arg(&b),
            "--seed",
            SEED1,
            "--compat",
        ],
        b"",
    );
    assert_eq!(key.trim(), JS_KEY_COMPAT);
    let info = info_json(dir_arg(&b));
    assert_eq!(info["key"], JS_KEY_COMPAT);
    assert_eq!(info["compat"], true);
    assert_eq!(info["length"], 0);
    // Creating twice in the same folder is refused.
    let (code, err) = fails(&["core", "create", "--storage", dir_arg(&a)], b"");
    assert_eq!(code, 1);
    assert!(err.starts_with("error: "), "{err}");
}

#[test]
fn js_vector_tree_hash_and_signature_after_three_blocks() {
    // vectors 02-hypercore-tree, compat mode: blocks "a", "b", "c".
    let t = tempfile::tempdir().unwrap();
    let d = dir_arg(t.path());
    ok(
        &[
            "core",
            "create",
            "--storage",
            d,
            "--seed",
            SEED1,
            "--compat",
        ],
        b"",
    );
    let inputs = tempfile::tempdir().unwrap();
    let files: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|f| {
            let p = inputs.path().join(f);
            std::fs::write(&p, f).unwrap();
            p.to_string_lossy().into_owned()
        })
        .collect();
    let mut args = vec!["core", "append", "--storage", d];
    args.extend(files.iter().map(String::as_str));
    assert_eq!(ok(&args, b"").trim(), "3");
    let info = info_json(d);
    assert_eq!(info["length"], 3);
    assert_eq!(info["byteLength"], 3);
    assert_eq!(info["fork"], 0);
    assert_eq!(
        info["treeHash"],
        "7ea73eb86179fb7328e73663f90f4c91256574af1112efe97fdf9309e03b67a7"
    );
    assert_eq!(
        info["signature"],
        "deb1a2d6b46b1ac51fa3111f84cd6d0874ab43f325e160aff4d3d95acfdfec67b399fd0bd4e09b86fdbf19bd894b28e0a9d4bbf58c4ccb326fc888d8428d960e"
    );
}

#[test]
fn append_get_info_truncate_verify_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let d = dir_arg(t.path());
    let key = ok(&["core", "create", "--storage", d], b"");
    assert_eq!(key.trim().len(), 64);

    // Lines: newline kept, unterminated tail is a block too.
    assert_eq!(
        ok(&["core", "append", "--storage", d], b"alpha\nbeta\n\ngamma").trim(),
        "4"
    );
    assert_eq!(ok(&["core", "get", "--storage", d, "0"], b""), "alpha\n");
    assert_eq!(ok(&["core", "get", "--storage", d, "2"], b""), "\n");
    assert_eq!(ok(&["core", "get", "--storage", d, "3"], b""), "gamma");

    // Fixed-size chunks, with small batches so several writes happen.
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let n = ok(
        &[
            "core",
            "append",
            "--storage",
            d,
            "--block-size",
            "1000",
            "--batch",
            "3",
        ],
        &data,
    );
    assert_eq!(n.trim(), "14");
    let out = hp(&["core", "get", "--storage", d, "13"], b"");
    assert_eq!(out.stdout, &data[9000..]);

    let info = info_json(d);
    assert_eq!(info["key"], key.trim());
    assert_eq!(info["length"], 14);
    assert_eq!(info["byteLength"], 6 + 5 + 1 + 5 + 10_000);
    assert_eq!(info["fork"], 0);
    assert_eq!(info["encrypted"], false);
    // A non-compat core's signature is the encoded multisig (signer, 64-byte signature, patch).
    let sig = hex::decode(info["signature"].as_str().unwrap()).unwrap();
    assert!(sig.len() > 64, "multisig encoding: {} bytes", sig.len());
    assert_eq!(info["discoveryKey"].as_str().unwrap().len(), 64);
    let human = ok(&["core", "info", "--storage", d], b"");
    assert!(
        human.contains(key.trim()) && human.contains("14"),
        "{human}"
    );

    ok(&["core", "verify", "--storage", d], b"");

    ok(&["core", "truncate", "--storage", d, "2"], b"");
    let info = info_json(d);
    assert_eq!(info["length"], 2);
    assert_eq!(info["byteLength"], 11);
    assert_eq!(info["fork"], 1);
    let (code, err) = fails(&["core", "get", "--storage", d, "2"], b"");
    assert_eq!(code, 1);
    assert!(err.contains('2'), "{err}");
    ok(&["core", "verify", "--storage", d], b"");
    assert_eq!(
        ok(&["core", "append", "--storage", d], b"again\n").trim(),
        "3"
    );
    assert_eq!(ok(&["core", "get", "--storage", d, "2"], b""), "again\n");
    ok(&["core", "verify", "--storage", d], b"");

    // Truncating beyond the end is an error, not a panic.
    let (code, _) = fails(&["core", "truncate", "--storage", d, "99"], b"");
    assert_eq!(code, 1);
}

#[test]
fn encrypted_core_round_trips_and_stores_ciphertext() {
    let t = tempfile::tempdir().unwrap();
    let d = dir_arg(t.path());
    let ek = "07".repeat(32);
    ok(
        &["core", "create", "--storage", d, "--encryption-key", &ek],
        b"",
    );
    let secret = b"top secret block content 0123456789\n";
    assert_eq!(ok(&["core", "append", "--storage", d], secret).trim(), "1");
    assert_eq!(
        ok(&["core", "get", "--storage", d, "0"], b"").as_bytes(),
        secret
    );
    assert_eq!(info_json(d)["encrypted"], true);
    ok(&["core", "verify", "--storage", d], b"");
    // The plaintext is nowhere in the store.
    let s = FileStorage::open(t.path()).unwrap();
    let all = block_on(s.scan(&[], &[0xff; 64], None)).unwrap();
    assert!(!all
        .iter()
        .any(|(_, v)| v.windows(secret.len()).any(|w| w == secret.as_slice())));
}

#[test]
fn verify_detects_a_corrupted_block() {
    let t = tempfile::tempdir().unwrap();
    let d = dir_arg(t.path());
    ok(&["core", "create", "--storage", d], b"");
    let marker = b"UNIQUE-BLOCK-CONTENT-4242\n";
    let mut input = b"first\nsecond\n".to_vec();
    input.extend_from_slice(marker);
    input.extend_from_slice(b"last\n");
    assert_eq!(ok(&["core", "append", "--storage", d], &input).trim(), "4");
    ok(&["core", "verify", "--storage", d], b"");

    // Flip one byte of block 2 wherever the store keeps it (layout-independent).
    {
        let s = FileStorage::open(t.path()).unwrap();
        let all = block_on(s.scan(&[], &[0xff; 64], None)).unwrap();
        let mut hits = 0;
        let mut b = Batch::new();
        for (k, mut v) in all {
            if let Some(pos) = v.windows(marker.len()).position(|w| w == marker.as_slice()) {
                v[pos + 3] ^= 0x20;
                b.put(k, v);
                hits += 1;
            }
        }
        assert_eq!(hits, 1, "the block is stored exactly once");
        block_on(s.write(b)).unwrap();
    }
    let (code, err) = fails(&["core", "verify", "--storage", d], b"");
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("block 2"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line message: {err}");
}

#[test]
fn clear_errors_for_bad_input() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nope");
    let (code, err) = fails(&["core", "info", "--storage", dir_arg(&missing)], b"");
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: ") && err.contains("no core"),
        "{err}"
    );
    assert!(
        !missing.exists(),
        "a read command must not create the folder"
    );

    let (code, err) = fails(
        &[
            "core",
            "create",
            "--storage",
            dir_arg(t.path()),
            "--seed",
            "zz",
        ],
        b"",
    );
    assert_ne!(code, 0);
    assert!(err.contains("seed"), "{err}");

    let d = t.path().join("c");
    ok(&["core", "create", "--storage", dir_arg(&d)], b"");
    let (code, err) = fails(&["core", "get", "--storage", dir_arg(&d), "0"], b"");
    assert_eq!(code, 1);
    assert!(err.starts_with("error: "), "{err}");
    let (code, _) = fails(&["core", "get", "--storage", dir_arg(&d), "minus-one"], b"");
    assert_eq!(code, 2, "usage errors exit with 2");
    let (_, err) = fails(
        &[
            "core",
            "append",
            "--storage",
            dir_arg(&d),
            "/definitely/not/here",
        ],
        b"",
    );
    assert!(err.contains("/definitely/not/here"), "{err}");
    // Nothing was appended by the failed command.
    assert_eq!(info_json(dir_arg(&d))["length"], 0);
}

#[test]
fn help_teaches_with_examples() {
    let h = ok(&["core", "--help"], b"");
    assert!(
        h.contains("Examples:") && h.contains("hyperpunch core append"),
        "{h}"
    );
    let h = ok(&["core", "append", "--help"], b"");
    assert!(h.contains("--block-size") && h.contains("Examples:"), "{h}");
}
