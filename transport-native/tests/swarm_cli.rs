//! `hyperpunch core serve --swarm` and `core fetch --swarm` end to end: the built binary as
//! whole processes on 127.0.0.1 (a CLI bootstrap node and CLI DHT nodes), a core found by its
//! discovery key alone, between two CLI processes and with JS hyperswarm + hypercore
//! (`tests/interop/swarm-peer.js`) both ways. Every process is killed when its test ends.

mod common;
use common::js_peer::JsPeer;
use common::tools::{testnet, Proc};
use common::{hp, ok};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};

const SEED: &str = "0707070707070707070707070707070707070707070707070707070707070707";

fn info(dir: &Path) -> Value {
    serde_json::from_str(&ok(
        &["core", "info", "-s", dir.to_str().unwrap(), "--json"],
        b"",
    ))
    .unwrap()
}

fn fetch(dir: &Path, key: &str, boot: &str) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hyperpunch"));
    cmd.args([
        "core",
        "fetch",
        "-s",
        dir.to_str().unwrap(),
        "--key",
        key,
        "--swarm",
        "--bootstrap",
        boot,
        "--host",
        "127.0.0.1",
        "--timeout",
        "60",
    ])
    .env_remove("HYPERPUNCH_BOOTSTRAP")
    .stdin(Stdio::null());
    cmd.output().expect("run fetch")
}

fn serve(dir: &Path, boot: &str) -> (Proc, String) {
    let mut s = Proc::hp(
        "core serve",
        &[
            "core",
            "serve",
            "-s",
            dir.to_str().unwrap(),
            "--swarm",
            "--bootstrap",
            boot,
            "--host",
            "127.0.0.1",
        ],
    );
    let line = s.expect("announced ");
    let dk = line.trim().strip_prefix("announced ").unwrap().to_string();
    (s, dk)
}

fn make_core(dir: &Path, blocks: usize) -> Value {
    let d = dir.to_str().unwrap();
    ok(&["core", "create", "-s", d, "--seed", SEED], b"");
    let lines: String = (0..blocks).map(|i| format!("block {i}\n")).collect();
    ok(&["core", "append", "-s", d], lines.as_bytes());
    info(dir)
}

#[test]
fn serve_and_fetch_by_discovery_key() {
    let (_nodes, boot) = testnet(3);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let expected = make_core(&src, 500);
    let (_server, dk) = serve(&src, &boot);
    assert_eq!(dk, expected["discoveryKey"].as_str().unwrap());
    let dst = tmp.path().join("copy");
    let out = fetch(&dst, expected["key"].as_str().unwrap(), &boot);
    assert!(
        out.status.success(),
        "fetch --swarm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = info(&dst);
    for f in ["key", "length", "byteLength", "treeHash", "signature"] {
        assert_eq!(got[f], expected[f], "{f}");
    }
    assert_eq!(
        ok(&["core", "get", "-s", dst.to_str().unwrap(), "499"], b""),
        "block 499\n"
    );
}

#[test]
fn swarm_usage_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("c");
    let key = "ab".repeat(32);
    let out = Command::new(env!("CARGO_BIN_EXE_hyperpunch"))
        .args([
            "core",
            "fetch",
            "-s",
            d.to_str().unwrap(),
            "--key",
            &key,
            "--swarm",
        ])
        .env_remove("HYPERPUNCH_BOOTSTRAP")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--bootstrap"),
        "{err}"
    );
    let out = hp(
        &[
            "core",
            "fetch",
            "-s",
            d.to_str().unwrap(),
            "--key",
            &key,
            "--swarm",
            "--bootstrap",
            "127.0.0.1:1",
            "--tcp",
            "127.0.0.1:2",
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--tcp"), "{err}");
    let out = hp(
        &["core", "fetch", "-s", d.to_str().unwrap(), "--key", &key],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--tcp") && err.contains("--swarm"),
        "{err}"
    );
    let help = String::from_utf8_lossy(&hp(&["core", "fetch", "--help"], b"").stdout).to_string();
    assert!(
        help.contains("--swarm") && help.contains("discovery key"),
        "{help}"
    );
}

/// A JS hyperswarm seeds a core; `core fetch --swarm` gets it by its key. Then `core serve
/// --swarm` seeds a CLI core and a JS hyperswarm downloads it.
#[test]
fn cli_and_js_swarms_replicate_both_ways() {
    let (_nodes, boot) = testnet(3);
    let tmp = tempfile::tempdir().unwrap();
    let mut js = JsPeer::spawn("swarm-peer.js", 150_000);
    let a = js.call(json!({"cmd": "swarm", "bootstrap": [boot], "seed": "11".repeat(32)}));
    let created = js.call(json!({"cmd": "createCore", "swarm": a["index"], "dir": tmp.path().join("js-src"), "blocks": 300}));
    js.call(json!({"cmd": "join", "swarm": a["index"], "topic": created["discoveryKey"], "client": false}));
    let dst = tmp.path().join("from-js");
    let out = fetch(&dst, created["key"].as_str().unwrap(), &boot);
    assert!(
        out.status.success(),
        "fetch --swarm from JS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(info(&dst)["length"], 300);
    assert_eq!(
        ok(&["core", "get", "-s", dst.to_str().unwrap(), "299"], b"").trim_end(),
        "block 299"
    );

    let src = tmp.path().join("cli-src");
    let expected = make_core(&src, 300);
    let (_server, dk) = serve(&src, &boot);
    let b = js.call(json!({"cmd": "swarm", "bootstrap": [boot], "seed": "12".repeat(32)}));
    js.call(json!({"cmd": "openCore", "swarm": b["index"], "dir": tmp.path().join("js-copy"), "key": expected["key"]}));
    js.call(json!({"cmd": "join", "swarm": b["index"], "topic": dk, "server": false}));
    let got = js.call(json!({"cmd": "download", "swarm": b["index"], "length": 300}));
    // `core append` keeps each line's newline in its block.
    assert_eq!(got["blocks"][0], "block 0\n");
    assert_eq!(got["blocks"][299], "block 299\n");
    let _ = js.call(json!({"cmd": "exit"}));
}

/// `hash` of tests/interop/swarm-peer.js: BLAKE2b-256 hex (hypercore-crypto `hash`).
fn blake2b_hex(b: &[u8]) -> String {
    hex::encode(hyperpunch::crypto::hash(b))
}

/// `drive fetch --swarm` of a drive a JS hyperswarm seeds (JS `drives seed`: the store
/// replicated on every connection of `swarm.join(drive.discoveryKey)`); then `drive serve
/// --swarm` seeds a CLI drive, and a JS hyperswarm and a CLI `drive fetch --swarm` download it.
#[test]
fn drive_swarm_with_js_both_ways() {
    let (_nodes, boot) = testnet(3);
    let tmp = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..300 * 1024).map(|i| ((i * 7) & 255) as u8).collect();
    let mut js = JsPeer::spawn("swarm-peer.js", 150_000);

    // JS seeds, the CLI fetches.
    let a = js.call(json!({"cmd": "swarm", "bootstrap": [boot], "seed": "21".repeat(32)}));
    let created = js.call(json!({"cmd": "createDrive", "swarm": a["index"], "dir": tmp.path().join("js-src"), "files": 40}));
    js.call(json!({"cmd": "join", "swarm": a["index"], "topic": created["discoveryKey"], "client": false}));
    let key = created["key"].as_str().unwrap();
    let dst = tmp.path().join("from-js");
    let d = dst.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hyperpunch"))
        .args([
            "drive",
            "fetch",
            "-s",
            d,
            "--key",
            key,
            "--swarm",
            "--bootstrap",
            &boot,
        ])
        .args(["--host", "127.0.0.1", "--timeout", "60"])
        .env_remove("HYPERPUNCH_BOOTSTRAP")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "drive fetch --swarm from JS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = ok(&["drive", "ls", "-s", d], b"");
    assert_eq!(listed.lines().count(), 41, "{listed}");
    assert_eq!(ok(&["drive", "cat", "-s", d, "/f/7.txt"], b""), "file 7\n");
    let got = common::hp(&["drive", "cat", "-s", d, "/big.bin"], b"");
    assert!(got.status.success());
    assert_eq!(got.stdout, big);
    let info: Value =
        serde_json::from_str(&ok(&["drive", "info", "-s", d, "--json"], b"")).unwrap();
    assert_eq!(info["key"], created["key"]);
    assert_eq!(info["discoveryKey"], created["discoveryKey"]);
    assert_eq!(info["blobsStored"], info["blobsLength"]);

    // The CLI seeds a drive mirrored from a folder; JS and the CLI fetch it.
    let folder = tmp.path().join("site");
    std::fs::create_dir_all(folder.join("docs")).unwrap();
    std::fs::write(folder.join("docs/a.txt"), "alpha\n").unwrap();
    std::fs::write(folder.join("docs/b.txt"), "").unwrap();
    std::fs::write(folder.join("big.bin"), &big).unwrap();
    let src = tmp.path().join("cli-src");
    let key = ok(
        &[
            "drive",
            "mirror",
            folder.to_str().unwrap(),
            "-s",
            src.to_str().unwrap(),
        ],
        b"",
    )
    .trim()
    .to_string();
    let mut server = Proc::hp(
        "drive serve",
        &[
            "drive",
            "serve",
            "-s",
            src.to_str().unwrap(),
            "--swarm",
            "--bootstrap",
            &boot,
            "--host",
            "127.0.0.1",
        ],
    );
    let line = server.expect("announced ");
    let dk = line.trim().strip_prefix("announced ").unwrap().to_string();
    let b = js.call(json!({"cmd": "swarm", "bootstrap": [boot], "seed": "22".repeat(32)}));
    let opened = js.call(json!({"cmd": "openDrive", "swarm": b["index"], "dir": tmp.path().join("js-copy"), "key": key}));
    assert_eq!(opened["discoveryKey"].as_str().unwrap(), dk);
    js.call(json!({"cmd": "join", "swarm": b["index"], "topic": dk, "server": false}));
    let got = js.call(json!({"cmd": "downloadDrive", "swarm": b["index"], "files": 3}));
    assert_eq!(
        got["list"],
        json!(["/big.bin", "/docs/a.txt", "/docs/b.txt"])
    );
    assert_eq!(got["contents"]["/docs/a.txt"], "alpha\n");
    assert_eq!(got["contents"]["/docs/b.txt"], "");
    assert_eq!(got["contents"]["/big.bin"], blake2b_hex(&big));

    let copy = tmp.path().join("cli-copy");
    let c = copy.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hyperpunch"))
        .args([
            "drive",
            "fetch",
            "-s",
            c,
            "--key",
            &key,
            "--swarm",
            "--bootstrap",
            &boot,
        ])
        .args(["--host", "127.0.0.1", "--timeout", "60"])
        .env_remove("HYPERPUNCH_BOOTSTRAP")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "drive fetch --swarm from the CLI failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ok(&["drive", "ls", "-s", c], b""),
        "/big.bin\n/docs/a.txt\n/docs/b.txt\n"
    );
    assert_eq!(
        ok(&["drive", "cat", "-s", c, "/docs/a.txt"], b""),
        "alpha\n"
    );

    // A drive nobody serves: a clear error once --timeout passes.
    let none = tmp.path().join("none");
    let out = Command::new(env!("CARGO_BIN_EXE_hyperpunch"))
        .args([
            "drive",
            "fetch",
            "-s",
            none.to_str().unwrap(),
            "--key",
            &"cd".repeat(32),
        ])
        .args([
            "--swarm",
            "--bootstrap",
            &boot,
            "--host",
            "127.0.0.1",
            "--timeout",
            "2",
        ])
        .env_remove("HYPERPUNCH_BOOTSTRAP")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no peer sent the drive"),
        "{err}"
    );
    let _ = js.call(json!({"cmd": "exit"}));
}
