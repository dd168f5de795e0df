//! `hyperpunch bee ...` end to end (the built binary on temporary folders), sparse reading of a
//! 10k-key bee served by `core serve`, and the hyperbee suite on `FileStorage`.

mod common;
use common::{hp, ok};
use futures_executor::block_on;
use hyperpunch::bee::HubCore;
use hyperpunch::core::hyperbee::{suite, Hyperbee, Utf8};
use hyperpunch::core::replication::{Options, ReplicationHub, Replicator};
use hyperpunch::crypto::KeyPair;
use hyperpunch::hypercore::core::{CreateOptions, Hypercore, OpenOptions};
use hyperpunch::replicate::{replicate, SharedHub};
use hyperpunch::FileStorage;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SEED: &str = "0808080808080808080808080808080808080808080808080808080808080808";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `core serve` on an ephemeral port; killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hyperpunch"))
            .args(["core", "serve", "-s", s(dir), "--tcp", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("serve printed {line:?}"))
            .to_string();
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn err(args: &[&str], stdin: &[u8]) -> (i32, String) {
    let out = hp(args, stdin);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn put_get_del_batch_list_history_info() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let d = s(&db);
    ok(&["core", "create", "-s", d, "--seed", SEED], b"");
    ok(&["bee", "put", "-s", d, "hello", "world"], b"");
    assert_eq!(ok(&["bee", "get", "-s", d, "hello"], b""), "world\n");
    let (code, msg) = err(&["bee", "get", "-s", d, "absent"], b"");
    assert_eq!(code, 1);
    assert!(msg.contains("\"absent\" is not in the bee"), "{msg}");
    ok(
        &["bee", "batch", "-s", d],
        b"a\t1\nb\t2 with\ttab\r\nc\t\nd\t4\n",
    );
    assert_eq!(ok(&["bee", "get", "-s", d, "b"], b""), "2 with\ttab\n");
    assert_eq!(ok(&["bee", "get", "-s", d, "c"], b""), "\n");
    let all = "a\t1\nb\t2 with\ttab\nc\t\nd\t4\nhello\tworld\n";
    assert_eq!(ok(&["bee", "list", "-s", d], b""), all);
    for (args, want) in [
        (vec!["--gte", "b", "--lt", "d"], "b\t2 with\ttab\nc\t\n"),
        (vec!["--gt", "b", "--lte", "d"], "c\t\nd\t4\n"),
        (vec!["--reverse", "--limit", "2"], "hello\tworld\nd\t4\n"),
        (vec!["--gte", "c", "--reverse"], "hello\tworld\nd\t4\nc\t\n"),
        (vec!["--limit", "0"], ""),
        (vec!["--gte", "zzz"], ""),
    ] {
        let mut a = vec!["bee", "list", "-s", d];
        a.extend(args.iter().copied());
        assert_eq!(ok(&a, b""), want, "{args:?}");
    }
    let json = ok(&["bee", "list", "-s", d, "--limit", "1", "--json"], b"");
    assert_eq!(json, "{\"seq\":2,\"key\":\"a\",\"value\":\"1\"}\n");
    ok(&["bee", "del", "-s", d, "hello"], b"");
    ok(&["bee", "del", "-s", d, "never there"], b"");
    ok(&["bee", "batch", "-s", d, "--del"], b"a\nd\n");
    assert_eq!(ok(&["bee", "list", "-s", d], b""), "b\t2 with\ttab\nc\t\n");
    let hist = ok(&["bee", "history", "-s", d], b"");
    assert_eq!(
        hist,
        "put\t1\thello\tworld\nput\t2\ta\t1\nput\t3\tb\t2 with\ttab\nput\t4\tc\t\nput\t5\td\t4\n\
         del\t6\thello\ndel\t7\ta\ndel\t8\td\n"
    );
    assert_eq!(
        ok(
            &["bee", "history", "-s", d, "--gte", "-2", "--reverse"],
            b""
        ),
        "del\t8\td\ndel\t7\ta\n"
    );
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["bee", "info", "-s", d, "--json"], b"")).unwrap();
    assert_eq!(info["version"], 9);
    assert_eq!(info["writable"], true);
    assert_eq!(info["header"], true);
    assert!(ok(&["bee", "info", "-s", d], b"").contains("header:      hyperbee"));
    // A bad batch writes nothing.
    let (_, msg) = err(&["bee", "batch", "-s", d], b"x\t1\nno tab here\n");
    assert!(msg.contains("line 2 of stdin has no tab"), "{msg}");
    assert_eq!(ok(&["bee", "get", "-s", d, "b"], b""), "2 with\ttab\n");
    assert!(err(&["bee", "get", "-s", d, "x"], b"")
        .1
        .contains("not in the bee"));
    // --help teaches.
    let help = ok(&["bee", "--help"], b"");
    assert!(
        help.contains("Examples:") && help.contains("bee batch"),
        "{help}"
    );
    assert!(ok(&["bee", "list", "--help"], b"").contains("--reverse"));
}

#[test]
fn clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let none = tmp.path().join("none");
    let (_, msg) = err(&["bee", "get", "-s", s(&none), "k"], b"");
    assert!(
        msg.contains("no core in") && msg.contains("core create"),
        "{msg}"
    );
    let (_, msg) = err(&["bee", "put", "-s", s(&none), "k", "v"], b"");
    assert!(msg.contains("no core in"), "{msg}");

    // A core of other blocks is not a bee.
    let raw = tmp.path().join("raw");
    ok(&["core", "create", "-s", s(&raw)], b"");
    ok(&["core", "append", "-s", s(&raw)], b"just\nlines\n");
    for args in [
        vec!["bee", "get", "-s", s(&raw), "k"],
        vec!["bee", "list", "-s", s(&raw)],
        vec!["bee", "put", "-s", s(&raw), "k", "v"],
    ] {
        let (_, msg) = err(&args, b"");
        assert!(msg.contains("is not a hyperbee"), "{args:?}: {msg}");
    }

    // A fetched copy is read-only; its blocks read fine.
    let db = tmp.path().join("db");
    let key = ok(&["core", "create", "-s", s(&db), "--seed", SEED], b"");
    ok(&["bee", "put", "-s", s(&db), "k", "v"], b"");
    let copy = tmp.path().join("copy");
    {
        let server = Server::start(&db);
        ok(
            &[
                "core",
                "fetch",
                "-s",
                s(&copy),
                "--key",
                key.trim(),
                "--tcp",
                &server.addr,
                "--timeout",
                "60",
            ],
            b"",
        );
    }
    assert_eq!(ok(&["bee", "get", "-s", s(&copy), "k"], b""), "v\n");
    for args in [
        vec!["bee", "put", "-s", s(&copy), "k", "w"],
        vec!["bee", "del", "-s", s(&copy), "k"],
    ] {
        let (_, msg) = err(&args, b"");
        assert!(msg.contains("read-only"), "{args:?}: {msg}");
    }
    let (_, msg) = err(&["bee", "batch", "-s", s(&copy)], b"a\tb\n");
    assert!(msg.contains("read-only"), "{msg}");
    assert!(ok(&["bee", "info", "-s", s(&copy)], b"").contains("no (a read-only copy)"));

    // A sparse copy: a key whose blocks were not fetched says how to get them.
    let sparse = tmp.path().join("sparse");
    {
        let server = Server::start(&db);
        ok(
            &[
                "core",
                "fetch",
                "-s",
                s(&sparse),
                "--key",
                key.trim(),
                "--tcp",
                &server.addr,
                "--start",
                "0",
                "--end",
                "1",
            ],
            b"",
        );
    }
    let (_, msg) = err(&["bee", "get", "-s", s(&sparse), "k"], b"");
    assert!(msg.contains("not stored") && msg.contains("--tcp"), "{msg}");
}

/// Blocks of the core in `dir` stored locally.
fn stored(dir: &Path) -> (u64, u64) {
    let storage = FileStorage::open(dir).unwrap();
    let core = block_on(Hypercore::open(storage, OpenOptions::default())).unwrap();
    let n = (0..core.length()).filter(|&i| core.has(i)).count() as u64;
    (n, core.length())
}

/// A bee of 10k keys served by `core serve`: a `get` reads O(depth) blocks, not the core, both
/// through the library ([`HubCore`]) and through `bee get --tcp` (whose copy keeps only them);
/// `bee list --tcp` with a limit reads a few more.
#[test]
fn sparse_reads_from_core_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let key = ok(&["core", "create", "-s", s(&db), "--seed", SEED], b"");
    let key = key.trim().to_string();
    let lines: String = (0..10_000u32)
        .map(|i| format!("key{:06}\tvalue of {i}\n", (i * 7919) % 10_000))
        .collect();
    ok(&["bee", "batch", "-s", s(&db)], lines.as_bytes());
    let server = Server::start(&db);

    // The library: a reader core in memory... on files, through a HubCore.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let storage = FileStorage::open(tmp.path().join("lib")).unwrap();
        let k: [u8; 32] = hex::decode(&key).unwrap().try_into().unwrap();
        let reader = Hypercore::create(
            storage,
            CreateOptions {
                key: Some(k),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let mut hub = ReplicationHub::new();
        let dk = hub
            .add_core(Replicator::new(reader, Options::default()))
            .unwrap();
        let hub = SharedHub::new(hub);
        let socket = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
        let conn = tokio::spawn({
            let hub = hub.clone();
            async move { replicate(socket, true, KeyPair::from_seed(&[5; 32]), &hub).await }
        });
        let core = HubCore::new(hub.clone(), dk).with_block_timeout(Some(Duration::from_secs(60)));
        let db = Hyperbee::new(core.clone()).with_codecs(Utf8, Utf8);
        let e = db.get("key004321").await.unwrap().unwrap();
        assert_eq!(
            e.value.as_deref(),
            Some(
                format!(
                    "value of {}",
                    (0..10_000u32)
                        .find(|i| (i * 7919) % 10_000 == 4321)
                        .unwrap()
                )
                .as_str()
            )
        );
        let n = core.stored_blocks().await.unwrap();
        eprintln!("sparse: one get downloaded {n} of 10001 blocks");
        assert!(n <= 60, "one get downloaded {n} of 10001 blocks");
        assert!(db.get("key999999").await.unwrap().is_none());
        let more = core.stored_blocks().await.unwrap();
        assert!(
            more <= 2 * n + 10,
            "a second get downloaded {} more",
            more - n
        );
        hub.end_all().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
    });

    // The CLI: `bee get --tcp` into a fresh copy, then `bee list --tcp --limit`.
    let copy = tmp.path().join("copy");
    let c = s(&copy);
    let out = ok(
        &[
            "bee",
            "get",
            "-s",
            c,
            "--key",
            &key,
            "--tcp",
            &server.addr,
            "key000042",
        ],
        b"",
    );
    assert!(out.starts_with("value of "), "{out}");
    let (n, length) = stored(&copy);
    assert_eq!(length, 10_001);
    eprintln!("sparse: bee get --tcp stored {n} of {length} blocks");
    assert!(n <= 60, "bee get --tcp stored {n} of {length} blocks");
    let listed = ok(
        &[
            "bee",
            "list",
            "-s",
            c,
            "--tcp",
            &server.addr,
            "--gte",
            "key005000",
            "--limit",
            "3",
        ],
        b"",
    );
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.starts_with("key005000\t"), "{listed}");
    let (m, _) = stored(&copy);
    assert!(m <= n + 60, "a 3-entry list stored {} more blocks", m - n);
    // What was fetched reads offline; what was not says so.
    assert_eq!(ok(&["bee", "get", "-s", c, "key000042"], b""), out);
    drop(server);
    assert!(err(&["bee", "list", "-s", c], b"").1.contains("not stored"));
}

#[test]
fn suite_on_file_storage() {
    let tmp = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    block_on(suite::run_all(|| {
        let dir = tmp.path().join(format!(
            "s{}",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        async move { FileStorage::open(dir).unwrap() }
    }));
}
