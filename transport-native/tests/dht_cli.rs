//! `hyperpunch dht ...` end to end: the built binary as whole processes on 127.0.0.1 (a
//! bootstrap node, persistent nodes, announce/lookup, mutable and immutable values), and a JS
//! hyperdht node (`tests/interop/dht-peer.js`) reading what the CLI wrote and the other way
//! round. Every process is killed when its test ends.

mod common;
use common::hp;
use common::js_peer::JsPeer;
use common::tools::{free_port, testnet, Proc};
use serde_json::json;
use std::process::Command;

fn run(args: &[&str], boot: &str) -> (bool, String, String) {
    let mut full: Vec<&str> = args.to_vec();
    full.extend_from_slice(&[
        "--bootstrap",
        boot,
        "--host",
        "127.0.0.1",
        "--timeout",
        "60",
    ]);
    let out = hp(&full, b"");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str], boot: &str) -> String {
    let (success, out, err) = run(args, boot);
    assert!(success, "{args:?} failed: {err}");
    out
}

const TOPIC: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const SEED1: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const SEED2: &str = "0202020202020202020202020202020202020202020202020202020202020202";
/// The public keys of SEED1 and SEED2 (hyperdht `DHT.keyPair(seed)`, see the vectors).
const PK1: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
const PK2: &str = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";

#[test]
fn announce_lookup_and_values_between_cli_processes() {
    let (_nodes, boot) = testnet(6);
    let mut ann = Proc::hp(
        "announce",
        &[
            "dht",
            "announce",
            TOPIC,
            "--seed",
            SEED1,
            "--bootstrap",
            &boot,
            "--host",
            "127.0.0.1",
        ],
    );
    assert_eq!(ann.expect("announced"), "announced");
    assert_eq!(ok(&["dht", "lookup", TOPIC], &boot), format!("{PK1}\n"));

    // Mutable: repeated puts bump the sequence number; the get prints the latest.
    assert_eq!(
        ok(&["dht", "mutable-put", "first", "--seed", SEED2], &boot),
        format!("{PK2}\n")
    );
    ok(&["dht", "mutable-put", "second", "--seed", SEED2], &boot);
    assert_eq!(ok(&["dht", "mutable-get", PK2], &boot), "second\n");
    // An explicit older seq is refused by the nodes; the value stays.
    ok(
        &["dht", "mutable-put", "old", "--seed", SEED2, "--seq", "0"],
        &boot,
    );
    assert_eq!(ok(&["dht", "mutable-get", PK2], &boot), "second\n");

    let hash = ok(&["dht", "immutable-put", "hello world"], &boot);
    assert_eq!(
        hash.trim(),
        "256c83b297114d201b30179f3f0ef0cace9783622da5974326b436178aeef610"
    );
    assert_eq!(
        ok(&["dht", "immutable-get", hash.trim()], &boot),
        "hello world\n"
    );

    // Misses are errors with a message.
    let (success, _, err) = run(&["dht", "immutable-get", &"44".repeat(32)], &boot);
    assert!(!success && err.contains("not found"), "{err}");
    let (success, _, err) = run(&["dht", "mutable-get", &"45".repeat(32)], &boot);
    assert!(!success && err.contains("not found"), "{err}");
    // An empty topic lookup succeeds with no output.
    assert_eq!(ok(&["dht", "lookup", &"46".repeat(32)], &boot), "");
}

#[test]
fn usage_errors_are_clear() {
    // No bootstrap anywhere: clap names the flag and the variable.
    let out = Command::new(env!("CARGO_BIN_EXE_hyperpunch"))
        .args(["dht", "lookup", TOPIC])
        .env_remove("HYPERPUNCH_BOOTSTRAP")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--bootstrap"), "{err}");
    // The variable works in place of the flag; a bad topic is explained.
    let out = Command::new(env!("CARGO_BIN_EXE_hyperpunch"))
        .args(["dht", "lookup", "abc", "--host", "127.0.0.1"])
        .env("HYPERPUNCH_BOOTSTRAP", "127.0.0.1:9")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TOPIC must be 64 hex characters"), "{err}");
    // Nobody at the bootstrap address.
    let port = free_port();
    let (success, _, err) = run(&["dht", "lookup", TOPIC], &format!("127.0.0.1:{port}"));
    assert!(!success && err.contains("no DHT node answered"), "{err}");
    let help = hp(&["dht", "announce", "--help"], b"");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Examples:") && help.contains("64 hex characters"),
        "{help}"
    );
}

#[test]
fn cli_and_js_read_each_others_records() {
    let (_nodes, boot) = testnet(5);
    let mut js = JsPeer::spawn("dht-peer.js", 120_000);
    js.call(json!({"cmd": "start", "bootstrap": [boot], "count": 3}));

    // CLI announces, JS looks up; JS announces, the CLI looks up.
    let mut ann = Proc::hp(
        "announce",
        &[
            "dht",
            "announce",
            TOPIC,
            "--seed",
            SEED1,
            "--bootstrap",
            &boot,
            "--host",
            "127.0.0.1",
        ],
    );
    ann.expect("announced");
    let r = js.call(json!({"cmd": "lookup", "node": 0, "topic": TOPIC}));
    assert_eq!(r["peers"], json!([PK1]));
    let topic2 = "47".repeat(32);
    js.call(json!({"cmd": "announce", "node": 1, "topic": topic2, "seed": SEED2}));
    assert_eq!(ok(&["dht", "lookup", &topic2], &boot), format!("{PK2}\n"));

    // Values both ways.
    ok(&["dht", "mutable-put", "cli value", "--seed", SEED1], &boot);
    let r = js.call(json!({"cmd": "mutableGet", "node": 2, "publicKey": PK1}));
    assert_eq!(r["value"], json!("cli value"));
    js.call(json!({"cmd": "mutablePut", "node": 2, "seed": SEED2, "value": "js value", "seq": 3}));
    assert_eq!(ok(&["dht", "mutable-get", PK2], &boot), "js value\n");
    let r = js.call(json!({"cmd": "immutablePut", "node": 0, "value": "from js"}));
    let hash = r["hash"].as_str().unwrap();
    assert_eq!(ok(&["dht", "immutable-get", hash], &boot), "from js\n");
    let hash = ok(&["dht", "immutable-put", "from the cli"], &boot);
    let r = js.call(json!({"cmd": "immutableGet", "node": 1, "hash": hash.trim()}));
    assert_eq!(r["value"], json!("from the cli"));
    js.call(json!({"cmd": "exit"}));
}
