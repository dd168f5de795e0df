//! `hyperpunch core serve` + `hyperpunch core fetch` end to end: the built binary on temporary
//! folders over loopback TCP. Every process has a deadline and the server is killed when the
//! test ends.

mod common;
use common::{hp, ok};
use hyperpunch::core::crypto::KeyPair;
use hyperpunch::core::secretstream::{
    Entropy, Event as StreamEvent, Options as StreamOptions, SecretStream,
};
use serde_json::Value;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
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

/// A process whose stdout lines are read on a thread; killed on drop.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(args: &[&str], stdin: Stdio) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hyperpunch"));
        cmd.args(args);
        Self::spawn_cmd(cmd, stdin)
    }

    fn spawn_cmd(mut cmd: Command, stdin: Stdio) -> Self {
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the process");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err_pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            stderr,
        }
    }

    /// The next stdout line (panics after [`STEP`]).
    fn line(&self) -> String {
        match self.lines.recv_timeout(STEP) {
            Ok(line) => line,
            Err(e) => {
                let stderr = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
                panic!("the process printed no line in time ({e}); its stderr:\n{stderr}")
            }
        }
    }

    /// Skip stdout lines until `want`.
    fn wait_for(&self, want: &str) {
        loop {
            if self.line() == want {
                return;
            }
        }
    }

    /// Wait (bounded) for the process to exit; its exit status.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `core serve` process, killed on drop.
struct Server {
    proc: Proc,
    addr: String,
}

impl Server {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[], Stdio::null())
    }

    fn start_with(dir: &Path, extra: &[&str], stdin: Stdio) -> Self {
        let mut args = vec!["core", "serve", "-s", dir.to_str().unwrap()];
        args.extend(["--tcp", "127.0.0.1:0"]);
        args.extend(extra);
        let proc = Proc::spawn(&args, stdin);
        let line = proc.line();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected serve output {line:?}"))
            .to_string();
        Server { proc, addr }
    }
}

fn fetch(dir: &Path, key: &str, addr: &str, extra: &[&str]) -> Output {
    let mut args = vec!["core", "fetch", "-s", dir.to_str().unwrap()];
    args.extend(["--key", key, "--tcp", addr, "--timeout", "60"]);
    args.extend(extra);
    hp(&args, b"")
}

/// A `fetch --live` (plus `extra`) into `dir` running in the background.
fn follow(dir: &Path, key: &str, addr: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["core", "fetch", "-s", dir.to_str().unwrap()];
    args.extend(["--key", key, "--tcp", addr, "--live", "--timeout", "60"]);
    args.extend(extra);
    Proc::spawn(&args, Stdio::null())
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
/// `core serve`, which tells it that it is not downloading itself. Needs node and the pinned JS
/// reference (`./run.sh test` installs both).
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
    // `core serve` only seeds: its `sync` says it is not downloading and takes no pushes (JS
    // `isDownloading` / `isAllowingPush`).
    assert_eq!(done["remoteDownloading"], false, "serve says it downloads");
    assert_eq!(
        done["remoteAllowPush"], false,
        "serve offers to take pushes"
    );
    let closed = lines
        .iter()
        .find(|v| v["event"] == "closed")
        .expect("closed");
    assert_eq!(closed["error"], Value::Null, "{closed}");
}

/// `core fetch` into a writer's own folder from a JS writer (`tests/interop/
/// replicate-features-peer.js`) that signed other blocks with the same key pair, a forked
/// writer: the fetch detects the conflict and stops, saying why; the conflict is stored with
/// the core, so after the process ended `core info` reports it and `core append` refuses,
/// saying why. Needs node and the pinned JS reference.
#[test]
fn a_conflict_with_a_forked_js_writer_freezes_the_stored_core() {
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
    ok(&["core", "append", "-s", s], b"a\nb\nc\nd\ne\n");
    let config = serde_json::json!({
        "mode": "server", "role": "writer", "streamSeed": "44".repeat(32), "seed": SEED,
        "count": 6, "deadline": 40000,
    });
    let mut cmd = Command::new(std::env::var_os("NODE").unwrap_or_else(|| "node".into()));
    cmd.arg("replicate-features-peer.js")
        .arg(config.to_string())
        .current_dir(&interop);
    let js = Proc::spawn_cmd(cmd, Stdio::null());
    let ready: Value = serde_json::from_str(&js.line()).expect("ready line");
    assert_eq!(ready["key"], key.as_str(), "the same key pair: {ready}");
    let listening: Value = serde_json::from_str(&js.line()).expect("listening line");
    let addr = format!("127.0.0.1:{}", listening["port"]);
    let out = fetch(&src, &key, &addr, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "fetch succeeded: {err}");
    assert!(
        err.contains("is frozen") && err.contains("conflicting signed tree at length 5"),
        "{err}"
    );
    let v = info(&src);
    assert_eq!(
        v["conflict"],
        serde_json::json!({ "length": 5, "fork": 0 }),
        "{v}"
    );
    assert_eq!(v["length"], 5);
    let human = ok(&["core", "info", "-s", s], b"");
    assert!(human.contains("conflict:       yes"), "{human}");
    let out = hp(&["core", "append", "-s", s], b"more\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "append succeeded");
    assert!(err.contains("is frozen"), "{err}");
    assert_eq!(info(&src)["length"], 5);
    ok(&["core", "verify", "-s", s], b"");
}

fn lines_block(i: usize) -> String {
    format!("live {i} {}\n", "z".repeat(i % 41))
}

/// `serve --live` fed by a pipe: a `fetch --live` connected before the appends sees each one
/// (it prints every length it has caught up to), a second client after stdin ended still gets
/// everything, and when the server goes away the live fetch exits 0 with a copy equal to the
/// writer's.
#[test]
fn live_serve_from_a_pipe_and_live_fetch_follow_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let s = src.to_str().unwrap();
    let key = ok(&["core", "create", "-s", s, "--seed", SEED], b"");
    let key = key.trim().to_string();
    let first: String = (0..10).map(lines_block).collect();
    ok(&["core", "append", "-s", s], first.as_bytes());

    let mut server = Server::start_with(&src, &["--live"], Stdio::piped());
    let mut feed = server.proc.child.stdin.take().expect("serve stdin");
    let dst = tmp.path().join("copy");
    let d = dst.to_str().unwrap();
    let mut follower = follow(&dst, &key, &server.addr, &[]);
    follower.wait_for("length 10");
    // One line at a time: each append reaches the follower before the next is written.
    for i in 10..15 {
        feed.write_all(lines_block(i).as_bytes()).unwrap();
        feed.flush().unwrap();
        server.proc.wait_for(&format!("length {}", i + 1));
        follower.wait_for(&format!("length {}", i + 1));
    }
    // A burst: appended in batches, the follower ends up with all of it.
    let burst: String = (15..2015).map(lines_block).collect();
    feed.write_all(burst.as_bytes()).unwrap();
    drop(feed);
    server.proc.wait_for("length 2015");
    follower.wait_for("length 2015");
    // stdin is closed, the server keeps serving new clients.
    let late = tmp.path().join("late");
    let out = fetch(&late, &key, &server.addr, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server goes away: the follower, caught up, stops on its own and succeeds.
    drop(server);
    let status = follower.wait();
    assert!(status.success(), "fetch --live exited with {status}");
    drop(follower);
    let expected = info(&src);
    assert_eq!(expected["length"], 2015);
    same_core(&expected, &info(&dst));
    same_core(&expected, &info(&late));
    ok(&["core", "verify", "-s", d], b"");
    for i in [0, 12, 2014] {
        assert_eq!(
            ok(&["core", "get", "-s", d, &i.to_string()], b""),
            lines_block(i)
        );
    }
}

/// `serve --live --push` sends each append to a `fetch --live --push-only` follower, which sends
/// no requests at all: every block it ends up holding came as a push (JS `allowPush` /
/// `pushOnly` / `replicator.push`), one line at a time and in a burst.
#[test]
fn live_serve_pushes_to_a_push_only_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let s = src.to_str().unwrap();
    let key = ok(&["core", "create", "-s", s, "--seed", SEED], b"");
    let key = key.trim().to_string();
    let mut server = Server::start_with(&src, &["--live", "--push"], Stdio::piped());
    let mut feed = server.proc.child.stdin.take().expect("serve stdin");
    let dst = tmp.path().join("copy");
    let d = dst.to_str().unwrap();
    let mut follower = follow(&dst, &key, &server.addr, &["--push-only"]);
    // Connected and synced (an empty core: caught up at 0) before anything is appended.
    follower.wait_for("length 0");
    for i in 0..5 {
        feed.write_all(lines_block(i).as_bytes()).unwrap();
        feed.flush().unwrap();
        server.proc.wait_for(&format!("length {}", i + 1));
        follower.wait_for(&format!("length {}", i + 1));
    }
    let burst: String = (5..505).map(lines_block).collect();
    feed.write_all(burst.as_bytes()).unwrap();
    drop(feed);
    server.proc.wait_for("length 505");
    follower.wait_for("length 505");
    drop(server);
    let status = follower.wait();
    assert!(
        status.success(),
        "fetch --live --push-only exited with {status}"
    );
    drop(follower);
    same_core(&info(&src), &info(&dst));
    ok(&["core", "verify", "-s", d], b"");
    for i in [0, 4, 504] {
        assert_eq!(
            ok(&["core", "get", "-s", d, &i.to_string()], b""),
            lines_block(i)
        );
    }
}

/// `--push` and `--push-only` only make sense with --live: clap says so.
#[test]
fn push_flags_need_live() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("c");
    let s = s.to_str().unwrap();
    let key = "00".repeat(32);
    for args in [
        vec!["core", "serve", "-s", s, "--tcp", "127.0.0.1:0", "--push"],
        vec![
            "core",
            "fetch",
            "-s",
            s,
            "--key",
            &key,
            "--tcp",
            "127.0.0.1:1",
            "--push-only",
        ],
    ] {
        let out = hp(&args, b"");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--live"), "{err}");
    }
}

/// `serve --live --block-size`: stdin is cut into fixed-size blocks while serving.
#[test]
fn live_serve_with_block_size() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let s = src.to_str().unwrap();
    let key = ok(&["core", "create", "-s", s, "--seed", SEED], b"");
    let key = key.trim().to_string();
    let mut server = Server::start_with(&src, &["--live", "--block-size", "1000"], Stdio::piped());
    let mut feed = server.proc.child.stdin.take().expect("serve stdin");
    let data: Vec<u8> = (0..10_500u32).map(|i| (i * 7 % 251) as u8).collect();
    feed.write_all(&data).unwrap();
    drop(feed);
    server.proc.wait_for("length 11");
    let dst = tmp.path().join("copy");
    let out = fetch(&dst, &key, &server.addr, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);
    let d = dst.to_str().unwrap();
    let mut got = Vec::new();
    for i in 0..11 {
        let out = hp(&["core", "get", "-s", d, &i.to_string()], b"");
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), if i < 10 { 1000 } else { 500 });
        got.extend(out.stdout);
    }
    assert_eq!(got, data);
    same_core(&info(&src), &info(&dst));
}

/// `serve --live` refuses a core it cannot write (a fetched copy), with a clear message.
#[test]
fn live_serve_needs_a_writable_core() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("reader");
    let d = dir.to_str().unwrap();
    // A reader core (no secret key), as `fetch` leaves behind: fetch from a closed port fails
    // after creating it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let _ = fetch(&dir, &"ab".repeat(32), &addr, &[]);
    let out = hp(
        &["core", "serve", "-s", d, "--tcp", "127.0.0.1:0", "--live"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no secret key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `fetch --start --end` downloads exactly that range (verified); the other blocks are absent
/// and `core get` says so; a range past the peer's length fails clearly.
#[test]
fn fetch_a_range_gives_a_sparse_verified_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let s = src.to_str().unwrap();
    let key = ok(&["core", "create", "-s", s, "--seed", SEED], b"");
    let key = key.trim().to_string();
    let blocks: Vec<String> = (0..300).map(lines_block).collect();
    ok(&["core", "append", "-s", s], blocks.concat().as_bytes());
    let server = Server::start(&src);
    let dst = tmp.path().join("part");
    let d = dst.to_str().unwrap();
    let out = fetch(
        &dst,
        &key,
        &server.addr,
        &["--start", "100", "--end", "140"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every block of the range, and the absent ones around it and at both ends.
    for i in (95..145).chain([0, 1, 298, 299]) {
        let b = &blocks[i];
        let out = hp(&["core", "get", "-s", d, &i.to_string()], b"");
        if (100..140).contains(&i) {
            assert!(out.status.success(), "block {i}");
            assert_eq!(&String::from_utf8(out.stdout).unwrap(), b);
        } else {
            assert_eq!(out.status.code(), Some(1), "block {i} should be absent");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("not stored locally"), "block {i}: {err}");
        }
    }
    // Past the end of the core.
    let out = fetch(
        &tmp.path().join("past"),
        &key,
        &server.addr,
        &["--start", "250", "--end", "400"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only 300 blocks"), "{err}");
    // The copy knows the whole signed length, and what it holds verifies.
    let got = info(&dst);
    drop(server);
    same_core(&info(&src), &got);
    ok(&["core", "verify", "-s", d], b"");
}

/// A tiny deterministic generator for the garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Read until the server closes the connection; false if it did not within [`STEP`].
fn closed_by_server(socket: &mut TcpStream) -> bool {
    socket.set_read_timeout(Some(STEP)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::TimedOut,
        }
    }
}

/// Complete a real secret-stream handshake (as initiator) over a blocking socket.
fn handshake(socket: &mut TcpStream, seed: u8) -> SecretStream {
    let mut stream = SecretStream::new_initiator(
        KeyPair::from_seed(&[seed; 32]),
        Entropy::from_bytes(&[seed; 64]),
        StreamOptions::default(),
        0,
    )
    .unwrap();
    socket.set_read_timeout(Some(STEP)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(bytes) = stream.poll_transmit() {
            socket.write_all(&bytes).unwrap();
        }
        while let Some(ev) = stream.poll_event() {
            if matches!(ev, StreamEvent::Connected { .. }) {
                return stream;
            }
        }
        let n = socket.read(&mut buf).expect("handshake reply");
        assert!(n > 0, "server closed during the handshake");
        stream.handle_input(0, &buf[..n]);
    }
}

/// One misbehaving client of kind `kind`: it sends its garbage, stops writing, and must then see
/// the server close the connection.
fn garbage_client(addr: &str, kind: usize, rng: &mut Rng) {
    let mut socket = TcpStream::connect(addr).unwrap();
    match kind {
        // Random bytes before any handshake.
        0 => {
            let n = 1 + (rng.next() % 4096) as usize;
            let _ = socket.write_all(&rng.bytes(n));
        }
        // A truncated frame: the 3-byte length prefix promises more than follows.
        1 => {
            let _ = socket.write_all(&[200, 0, 0]);
            let _ = socket.write_all(&rng.bytes(50));
        }
        // An oversized frame (16 MiB - 1 announced).
        2 => {
            let _ = socket.write_all(&[0xff, 0xff, 0xff]);
            let _ = socket.write_all(&rng.bytes(1000));
        }
        // Connect and leave at once.
        3 => {}
        // A real handshake, then raw bytes that do not decrypt.
        4 => {
            let _stream = handshake(&mut socket, 0x40);
            let _ = socket.write_all(&rng.bytes(300));
        }
        // A real handshake, then encrypted messages that are not protomux frames.
        _ => {
            let mut stream = handshake(&mut socket, 0x41);
            for _ in 0..5 {
                let n = 1 + (rng.next() % 200) as usize;
                stream.write(&rng.bytes(n)).unwrap();
            }
            while let Some(bytes) = stream.poll_transmit() {
                let _ = socket.write_all(&bytes);
            }
        }
    }
    let _ = socket.shutdown(Shutdown::Write);
    assert!(
        closed_by_server(&mut socket),
        "the server kept a garbage connection (kind {kind}) open"
    );
}

/// A live `core serve` fed 200 garbage connections (random bytes, truncated and oversized
/// frames, garbage after a real handshake) and some stalled ones: each bad connection is closed
/// on its own, stalled ones after the idle timeout with a clear error, the process lives and a
/// real client fetches the whole core meanwhile.
#[test]
fn serve_survives_garbage_and_stalled_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let s = src.to_str().unwrap();
    let key = ok(&["core", "create", "-s", s, "--seed", SEED], b"");
    let key = key.trim().to_string();
    let blocks: String = (0..500).map(lines_block).collect();
    ok(&["core", "append", "-s", s], blocks.as_bytes());
    let mut server = Server::start_with(&src, &["--idle-timeout", "2"], Stdio::null());

    // Stalled: silent, or half a handshake frame and then nothing.
    let mut stalled: Vec<TcpStream> = (0..8)
        .map(|i| {
            let mut c = TcpStream::connect(&server.addr).unwrap();
            if i % 2 == 1 {
                c.write_all(&[100, 0, 0, 1, 2, 3]).unwrap();
            }
            c
        })
        .collect();
    // 200 garbage connections from 4 threads, while a real client fetches.
    let garbage: Vec<_> = (0..4u64)
        .map(|t| {
            let addr = server.addr.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1));
                for i in 0..50 {
                    garbage_client(&addr, (t as usize * 50 + i) % 6, &mut rng);
                }
            })
        })
        .collect();
    let dst = tmp.path().join("copy");
    let out = fetch(&dst, &key, &server.addr, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for g in garbage {
        g.join().expect("garbage client");
    }
    // The stalled clients are dropped by the idle timeout.
    for c in &mut stalled {
        assert!(closed_by_server(c), "a stalled client was never dropped");
    }
    assert!(
        server.proc.child.try_wait().unwrap().is_none(),
        "serve died"
    );
    // Still serving.
    let again = tmp.path().join("again");
    let out = fetch(&again, &key, &server.addr, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server reports a connection closed after the client saw it end: wait for the lines.
    let reported_by = std::time::Instant::now() + STEP;
    let log = loop {
        let log = server.proc.stderr.lock().unwrap().clone();
        if log.matches(": closed").count() >= 8 + 200 || std::time::Instant::now() > reported_by {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        log.matches(": closed").count() >= 8 + 200,
        "each bad connection is closed and reported: {log}"
    );
    assert!(log.contains("timed out"), "{log}");
    drop(server);
    let expected = info(&src);
    same_core(&expected, &info(&dst));
    same_core(&expected, &info(&again));
}

/// Six `serve`/`fetch` pairs at once, 3000 small blocks each. Under this load `fetch` used to
/// stall for good part way: its loop polled the connection and locked the hub in one task, and
/// the connection's lock of the hub, granted but not yet polled, waited for the loop, which
/// waited for the lock. Each fetch must finish well within its `--timeout`.
#[test]
fn parallel_fetches_of_many_small_blocks_all_finish() {
    const PAIRS: usize = 6;
    let tmp = tempfile::tempdir().unwrap();
    let lines: String = (0..3000).map(|i| format!("{i}\n")).collect();
    let mut pairs = Vec::new();
    for p in 0..PAIRS {
        let src = tmp.path().join(format!("src{p}"));
        let s = src.to_str().unwrap();
        let seed = format!("{:02x}", 0x30 + p).repeat(32);
        let key = ok(&["core", "create", "-s", s, "--seed", &seed], b"")
            .trim()
            .to_string();
        ok(&["core", "append", "-s", s], lines.as_bytes());
        let expected = info(&src);
        pairs.push((src, key, expected));
    }
    let servers: Vec<Server> = pairs.iter().map(|(src, ..)| Server::start(src)).collect();
    let fetches: Vec<_> = pairs
        .iter()
        .zip(&servers)
        .enumerate()
        .map(|(p, ((_, key, _), server))| {
            let dst = tmp.path().join(format!("dst{p}"));
            let (key, addr) = (key.clone(), server.addr.clone());
            std::thread::spawn(move || {
                let out = fetch(&dst, &key, &addr, &[]);
                (dst, out)
            })
        })
        .collect();
    for ((_, _, expected), f) in pairs.iter().zip(fetches) {
        let (dst, out) = f.join().expect("fetch thread");
        assert!(
            out.status.success(),
            "fetch into {} failed: {}",
            dst.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        same_core(expected, &info(&dst));
    }
}
