//! `hyperpunch core serve` + `hyperpunch core fetch` end to end: the built binary on temporary
//! folders over loopback TCP. Every process has a deadline and the server is killed when the
//! test ends.

mod common;
use common::{hp, ok};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SEED: &str = "0707070707070707070707070707070707070707070707070707070707070707";
const STEP: Duration = Duration::from_secs(60);

fn info(dir: &Path) -> Value {
    let s = ok(
        &["core", "info", "-s", dir.to_str().unwrap(), "--json"],
        b"",
    );
    serde_json::from_str(&s).expect("info json")
}

/// A `core serve` process, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hyperpunch"))
            .args(["core", "serve", "-s", dir.to_str().unwrap()])
            .args(["--tcp", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Server {
            child,
            addr: String::new(),
        };
        let line = rx.recv_timeout(STEP).expect("serve printed its address");
        server.addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected serve output {line:?}"))
            .to_string();
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fetch(dir: &Path, key: &str, addr: &str, extra: &[&str]) -> Output {
    let mut args = vec!["core", "fetch", "-s", dir.to_str().unwrap()];
    args.extend(["--key", key, "--tcp", addr, "--timeout", "60"]);
    args.extend(extra);
    hp(&args, b"")
}

fn same_core(a: &Value, b: &Value) {
    for field in [
        "key",
        "length",
        "byteLength",
        "fork",
        "treeHash",
        "signature",
    ] {
        assert_eq!(a[field], b[field], "{field} differs: {a} vs {b}");
    }
}

#[test]
fn fetch_from_serve_gives_an_identical_verified_core() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let s = src.to_str().unwrap();
    let key = ok(&["core", "create", "-s", s, "--seed", SEED], b"");
    let key = key.trim().to_string();
    let lines: String = (0..3000)
        .map(|i| format!("line {i} {}\n", "x".repeat(i % 97)))
        .collect();
    ok(&["core", "append", "-s", s], lines.as_bytes());
    ok(
        &["core", "append", "-s", s, "--block-size", "4096"],
        &vec![9u8; 200_000],
    );
    let expected = info(&src);
    assert_eq!(expected["length"], 3000 + 49);

    let server = Server::start(&src);
    // Two clients one after the other: the server stays up across clients.
    for name in ["copy1", "copy2"] {
        let dst = tmp.path().join(name);
        let out = fetch(&dst, &key, &server.addr, &[]);
        assert!(
            out.status.success(),
            "fetch failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = info(&dst);
        same_core(&expected, &got);
        assert_eq!(got["writable"], false);
        ok(&["core", "verify", "-s", dst.to_str().unwrap()], b"");
    }
    // Fetching again into a complete copy is a no-op that still succeeds.
    let dst = tmp.path().join("copy1");
    let out = fetch(&dst, &key, &server.addr, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    same_core(&expected, &info(&dst));
}

#[test]
fn fetch_an_encrypted_core() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let s = src.to_str().unwrap();
    let ek = "55".repeat(32);
    let key = ok(
        &[
            "core",
            "create",
            "-s",
            s,
            "--seed",
            SEED,
            "--encryption-key",
            &ek,
        ],
        b"",
    );
    let key = key.trim().to_string();
    ok(&["core", "append", "-s", s], b"secret one\nsecret two\n");
    let expected = info(&src);
    let server = Server::start(&src);
    let dst = tmp.path().join("copy");
    let out = fetch(&dst, &key, &server.addr, &["--encryption-key", &ek]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    same_core(&expected, &info(&dst));
    let d = dst.to_str().unwrap();
    assert_eq!(ok(&["core", "get", "-s", d, "1"], b""), "secret two\n");
}

#[test]
fn fetch_fails_cleanly_without_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    // A port nobody listens on: bind, note it, close.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = fetch(&tmp.path().join("copy"), &"ab".repeat(32), &addr, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

/// A real JS hypercore 11 reader (`tests/interop/replicate-peer.js`) downloads everything from
/// `core serve`. Needs node and the pinned JS reference (`./run.sh test` installs both).
#[test]
fn js_reader_fetches_from_serve() {
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop");
    assert!(
        interop.join("node_modules/hypercore").is_dir(),
        "the JS reference is not installed: run `npm ci --prefix tests/interop` (or ./run.sh test)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let s = src.to_str().unwrap();
    let key = ok(&["core", "create", "-s", s, "--seed", SEED], b"");
    let key = key.trim().to_string();
    let blocks: Vec<String> = (0..500)
        .map(|i| format!("js {i} {}\n", "y".repeat(i % 300)))
        .collect();
    ok(&["core", "append", "-s", s], blocks.concat().as_bytes());
    let server = Server::start(&src);
    let port: u16 = server.addr.rsplit(':').next().unwrap().parse().unwrap();
    let config = serde_json::json!({
        "mode": "client", "port": port, "role": "reader", "streamSeed": "33".repeat(32),
        "key": key, "expect": blocks.len(), "deadline": 40000,
    });
    let child = Command::new(std::env::var_os("NODE").unwrap_or_else(|| "node".into()))
        .arg("replicate-peer.js")
        .arg(config.to_string())
        .current_dir(&interop)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = child.expect("cannot start node (needed for the JS interop test)");
    // The script exits by itself (at the latest after its 40 s deadline, with status 2).
    let out = child.wait_with_output().expect("node finished");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(
        lines
            .iter()
            .all(|v| v["event"] != "verification-error" && v["event"] != "invalid-request"),
        "{lines:?}"
    );
    let done = lines
        .iter()
        .find(|v| v["event"] == "done")
        .unwrap_or_else(|| panic!("JS did not finish: {lines:?}"));
    let got = done["blocks"].as_array().unwrap();
    assert_eq!(got.len(), blocks.len());
    for (k, b) in got.iter().enumerate() {
        assert_eq!(
            hex::decode(b.as_str().unwrap()).unwrap(),
            blocks[k].as_bytes(),
            "block {k}"
        );
    }
    let closed = lines
        .iter()
        .find(|v| v["event"] == "closed")
        .expect("closed");
    assert_eq!(closed["error"], Value::Null, "{closed}");
}
