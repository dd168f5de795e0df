//! `hyperpunch drive ...` end to end (the built binary on temporary folders): mirror a folder
//! in, ls / cat / info, export it back out identical, changes and dry runs, truncate and purge,
//! errors, serve and
//! fetch over TCP, a mirror killed with SIGKILL mid-way that a re-run completes, JS reading a
//! drive the CLI serves and the CLI fetching a drive JS serves, and the drive suite on
//! `FileStorage`.

mod common;
use common::tools::Proc;
use common::{hp, ok};
use hyperpunch::crypto::hash;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn err(args: &[&str]) -> String {
    let out = hp(args, b"");
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What a folder holds: path -> (contents, executable) for files, `-> target` for symlinks.
fn tree(root: &Path) -> BTreeMap<String, (Vec<u8>, bool)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, bool)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let key = format!("/{}", p.strip_prefix(root).unwrap().to_str().unwrap());
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                let t = fs::read_link(&p).unwrap();
                out.insert(key, (format!("-> {}", t.display()).into_bytes(), false));
            } else if ft.is_dir() {
                walk(root, &p, out);
            } else {
                use std::os::unix::fs::PermissionsExt;
                let x = e.metadata().unwrap().permissions().mode() & 0o100 != 0;
                out.insert(key, (fs::read(&p).unwrap(), x));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

/// A folder with nested folders, an empty file, an executable, symlinks and a 300 KB file.
fn sample(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir.join("docs/deep/er")).unwrap();
    fs::write(dir.join("readme.md"), b"# hello\n").unwrap();
    fs::write(dir.join("empty"), b"").unwrap();
    fs::write(dir.join("docs/deep/er/note.txt"), b"deep").unwrap();
    fs::write(dir.join("docs/big.bin"), pattern(300_000, 7)).unwrap();
    fs::write(dir.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(dir.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("readme.md", dir.join("link")).unwrap();
    std::os::unix::fs::symlink("../readme.md", dir.join("docs/up")).unwrap();
    fs::write(dir.join("ünï code.txt"), b"u").unwrap();
}

fn info(store: &Path) -> Value {
    serde_json::from_str(&ok(&["drive", "info", "-s", s(store), "--json"], b"")).unwrap()
}

#[test]
fn mirror_ls_cat_info_export_and_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let store = tmp.path().join("store");
    sample(&src);
    let out = hp(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap();
    let key = key.trim();
    assert_eq!(key.len(), 64, "stdout is the key: {key:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("8 files compared (+8 -0 ~0)"), "{stderr}");

    let i = info(&store);
    assert_eq!(i["key"], key);
    assert_eq!(i["writable"], true);
    assert_eq!(i["files"], 8);
    assert_eq!(i["contentKey"], i["blobsKey"]);
    assert_eq!(i["version"], 9, "header + 8 entries");
    assert_eq!(i["discoveryKey"].as_str().unwrap().len(), 64);

    let ls = ok(&["drive", "ls", "-s", s(&store)], b"");
    assert_eq!(
        ls,
        "/docs/big.bin\n/docs/deep/er/note.txt\n/docs/up\n/empty\n/link\n/readme.md\n/run.sh\n/ünï code.txt\n"
    );
    assert_eq!(
        ok(&["drive", "ls", "-s", s(&store), "/docs/deep"], b""),
        "/docs/deep/er/note.txt\n"
    );
    let long = ok(&["drive", "ls", "-s", s(&store), "-l"], b"");
    assert!(long.contains("18 x /run.sh"), "{long}");
    assert!(long.contains("l /link -> readme.md"), "{long}");
    let json_line = ok(&["drive", "ls", "-s", s(&store), "/run.sh", "--json"], b"");
    assert!(json_line.is_empty(), "a file is not a folder: {json_line}");
    let all_json = ok(&["drive", "ls", "-s", s(&store), "--json"], b"");
    let first: Value = serde_json::from_str(all_json.lines().next().unwrap()).unwrap();
    assert_eq!(first["key"], "/docs/big.bin");
    assert_eq!(first["value"]["blob"]["byteLength"], 300_000);

    assert_eq!(
        ok(&["drive", "cat", "-s", s(&store), "/readme.md"], b""),
        "# hello\n"
    );
    assert_eq!(
        ok(&["drive", "cat", "-s", s(&store), "link"], b""),
        "# hello\n"
    );
    assert_eq!(
        ok(&["drive", "cat", "-s", s(&store), "/docs/up"], b""),
        "# hello\n"
    );
    let big = hp(&["drive", "cat", "-s", s(&store), "/docs/big.bin"], b"");
    assert!(big.stdout == pattern(300_000, 7));
    let part = hp(
        &[
            "drive",
            "cat",
            "-s",
            s(&store),
            "/docs/big.bin",
            "--start",
            "65530",
            "--length",
            "20",
        ],
        b"",
    );
    assert_eq!(part.stdout, pattern(300_000, 7)[65530..65550]);
    let part = hp(
        &[
            "drive",
            "cat",
            "-s",
            s(&store),
            "/docs/big.bin",
            "--start",
            "10",
            "--end",
            "19",
        ],
        b"",
    );
    assert_eq!(part.stdout, pattern(300_000, 7)[10..20]);

    // Export: the same tree, executable bits and symlinks included.
    let out_dir = tmp.path().join("out");
    ok(&["drive", "export", "-s", s(&store), s(&out_dir)], b"");
    assert_eq!(tree(&out_dir), tree(&src));

    // Unchanged: nothing written.
    ok(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    assert_eq!(info(&store)["version"], 9);

    // Changes: an edit, a removal, an executable bit, a new file, a retargeted link.
    use std::os::unix::fs::PermissionsExt;
    fs::write(src.join("readme.md"), b"# hello again\n").unwrap();
    fs::remove_file(src.join("empty")).unwrap();
    fs::set_permissions(
        src.join("docs/deep/er/note.txt"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    fs::write(src.join("docs/new.txt"), b"new").unwrap();
    fs::remove_file(src.join("link")).unwrap();
    std::os::unix::fs::symlink("run.sh", src.join("link")).unwrap();
    let dry = hp(
        &[
            "drive",
            "mirror",
            s(&src),
            "-s",
            s(&store),
            "--dry-run",
            "-v",
        ],
        b"",
    );
    let e = String::from_utf8_lossy(&dry.stderr);
    assert!(e.contains("(+1 -1 ~3)"), "{e}");
    assert!(
        e.contains("- /empty 0 B") && e.contains("+ /docs/new.txt 3 B"),
        "{e}"
    );
    assert!(e.contains("~ /readme.md 14 B (+6 B)"), "{e}");
    assert!(e.contains("nothing was written"), "{e}");
    assert_eq!(info(&store)["version"], 9, "a dry run writes nothing");
    let run = hp(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    assert!(String::from_utf8_lossy(&run.stderr).contains("(+1 -1 ~3)"));
    let out2 = tmp.path().join("out2");
    ok(&["drive", "export", "-s", s(&store), s(&out2)], b"");
    assert_eq!(tree(&out2), tree(&src));
    // Export into the old copy: without --prune the removed file stays; with it, it goes.
    ok(&["drive", "export", "-s", s(&store), s(&out_dir)], b"");
    assert!(out_dir.join("empty").exists());
    ok(
        &["drive", "export", "-s", s(&store), s(&out_dir), "--prune"],
        b"",
    );
    assert_eq!(tree(&out_dir), tree(&src));
    // --no-prune keeps what the folder lost; --ignore leaves paths out.
    fs::remove_file(src.join("docs/new.txt")).unwrap();
    ok(
        &["drive", "mirror", s(&src), "-s", s(&store), "--no-prune"],
        b"",
    );
    assert_eq!(
        ok(&["drive", "cat", "-s", s(&store), "/docs/new.txt"], b""),
        "new"
    );
    ok(
        &[
            "drive",
            "mirror",
            s(&src),
            "-s",
            s(&store),
            "--ignore",
            "/docs",
        ],
        b"",
    );
    assert_eq!(
        ok(&["drive", "cat", "-s", s(&store), "/docs/new.txt"], b""),
        "new"
    );
    ok(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    assert!(err(&["drive", "cat", "-s", s(&store), "/docs/new.txt"]).contains("no such file"));

    // A storage folder inside the mirrored folder is left out.
    let inner = src.join(".store");
    let k2 = ok(&["drive", "mirror", s(&src), "-s", s(&inner)], b"");
    assert_eq!(k2.trim().len(), 64);
    assert!(!ok(&["drive", "ls", "-s", s(&inner)], b"").contains(".store"));
}

#[test]
fn errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let nothing = tmp.path().join("nothing");
    for cmd in [
        vec!["drive", "ls", "-s", s(&nothing)],
        vec!["drive", "info", "-s", s(&nothing)],
        vec!["drive", "cat", "-s", s(&nothing), "/x"],
        vec!["drive", "export", "-s", s(&nothing), "/tmp/never-used"],
        vec!["drive", "serve", "-s", s(&nothing), "--tcp", "127.0.0.1:0"],
    ] {
        let e = err(&cmd);
        assert!(e.contains("no drive in"), "{cmd:?}: {e}");
    }
    assert!(!nothing.exists(), "reading commands create nothing");
    let src = tmp.path().join("src");
    let store = tmp.path().join("store");
    sample(&src);
    ok(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    assert!(err(&[
        "drive",
        "mirror",
        s(&src.join("readme.md")),
        "-s",
        s(&store)
    ])
    .contains("is not a folder"));
    assert!(err(&["drive", "cat", "-s", s(&store), "/nope"])
        .contains("no such file in the drive: /nope"));
    assert!(err(&["drive", "cat", "-s", s(&store), "/docs"]).contains("/docs is a folder"));
    assert!(err(&["drive", "cat", "-s", s(&store), "/"]).contains("invalid path"));
    assert!(err(&["drive", "cat", "-s", s(&store), "../.."]).contains("invalid path"));
    assert!(err(&["drive", "ls", "-s", s(&store), "--key", "xyz"]).contains("--key must be 64 hex"));
    assert!(
        err(&["drive", "ls", "-s", s(&store), "--key", &"ab".repeat(32)]).contains("is not in")
    );
    assert!(err(&[
        "drive",
        "fetch",
        "-s",
        s(&tmp.path().join("c")),
        "--key",
        "00",
        "--tcp",
        "127.0.0.1:1"
    ])
    .contains("--key must be 64 hex"));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    assert!(err(&[
        "drive",
        "fetch",
        "-s",
        s(&tmp.path().join("c")),
        "--key",
        &"ab".repeat(32),
        "--tcp",
        &addr
    ])
    .contains("cannot connect"));
    let e = err(&[
        "drive",
        "export",
        "-s",
        s(&store),
        s(&src.join("readme.md")),
    ]);
    assert!(e.contains("is not a folder"), "{e}");
    // --help teaches.
    let help = ok(&["drive", "--help"], b"");
    for word in ["mirror", "export", "fetch", "serve", "drives"] {
        assert!(help.contains(word), "{word}");
    }
    assert!(ok(&["drive", "mirror", "--help"], b"").contains("--dry-run"));
}

#[test]
fn truncate_and_purge() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let store = tmp.path().join("store");
    sample(&src);
    let key = ok(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    let key = key.trim().to_string();
    let before = info(&store);
    assert_eq!(before["version"], 9);
    // Two more files (the second 2 blocks), then back to version 9.
    fs::write(src.join("later.txt"), b"later").unwrap();
    fs::write(src.join("later.bin"), pattern(70_000, 3)).unwrap();
    ok(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    let grown = info(&store);
    assert_eq!(grown["version"], 11);
    assert_eq!(
        grown["blobsLength"].as_u64().unwrap(),
        before["blobsLength"].as_u64().unwrap() + 3
    );
    // Refused: past either core's end; nothing changes.
    let e = err(&["drive", "truncate", "-s", s(&store), "12"]);
    assert!(
        e.contains("bad truncation length: 12 blocks of the db core, which has 11"),
        "{e}"
    );
    let e = err(&["drive", "truncate", "-s", s(&store), "9", "--blobs", "999"]);
    assert!(e.contains("of the blobs core"), "{e}");
    assert_eq!(info(&store), grown);
    let out = hp(&["drive", "truncate", "-s", s(&store), "9"], b"");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    assert!(e.contains("truncated to version 9: db 9 blocks"), "{e}");
    let cut = info(&store);
    assert_eq!(cut["version"], 9);
    assert_eq!(
        cut["blobsLength"], before["blobsLength"],
        "JS getBlobsLength(9)"
    );
    assert_eq!(cut["files"], 8);
    assert!(!ok(&["drive", "ls", "-s", s(&store)], b"").contains("later"));
    let out_dir = tmp.path().join("out");
    ok(&["drive", "export", "-s", s(&store), s(&out_dir)], b"");
    fs::remove_file(src.join("later.txt")).unwrap();
    fs::remove_file(src.join("later.bin")).unwrap();
    assert_eq!(
        tree(&out_dir),
        tree(&src),
        "the drive as it was at version 9"
    );
    // Writes go on from there.
    fs::write(src.join("again.txt"), b"again").unwrap();
    ok(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    assert_eq!(info(&store)["version"], 10);
    assert_eq!(
        ok(&["drive", "cat", "-s", s(&store), "/again.txt"], b""),
        "again"
    );
    // A fetched copy cannot be truncated.
    let copy = tmp.path().join("copy");
    {
        let (_server, addr) = serve(&store);
        ok(
            &[
                "drive",
                "fetch",
                "-s",
                s(&copy),
                "--key",
                &key,
                "--tcp",
                &addr,
            ],
            b"",
        );
    }
    let e = err(&["drive", "truncate", "-s", s(&copy), "2"]);
    assert!(e.contains("not writable"), "{e}");
    // Purge: refused without --yes, then the drive is gone, the copy's too.
    let e = err(&["drive", "purge", "-s", s(&store)]);
    assert!(e.contains("add --yes"), "{e}");
    assert_eq!(info(&store)["files"], 9);
    let out = hp(&["drive", "purge", "-s", s(&store), "--yes"], b"");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    assert!(e.contains(&format!("purged drive {key}")), "{e}");
    assert!(err(&["drive", "ls", "-s", s(&store)]).contains("no drive in"));
    let cores: Value =
        serde_json::from_str(&ok(&["store", "info", "-s", s(&store), "--json"], b"")).unwrap();
    assert_eq!(cores["cores"], json!([]), "both cores deleted");
    // Made again: the same key, empty before the mirror.
    let out = hp(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), key);
    assert!(String::from_utf8_lossy(&out.stderr).contains("(+9 -0 ~0)"));
    assert_eq!(info(&store)["version"], 10);
    ok(
        &["drive", "purge", "-s", s(&copy), "--key", &key, "--yes"],
        b"",
    );
    assert!(err(&["drive", "info", "-s", s(&copy)]).contains("no drive in"));
    let help = ok(&["drive", "truncate", "--help"], b"");
    assert!(
        help.contains("getBlobsLength") && help.contains("--blobs"),
        "{help}"
    );
    assert!(ok(&["drive", "purge", "--help"], b"").contains("--yes"));
}

/// Delete only the blobs core of the drive `key` in the store `dir`: what a purge of an older
/// version (blobs core, then db core, in two writes) killed between its writes left.
fn purge_blobs_only(dir: &Path, key: &str) {
    use hyperpunch::core::corestore::{Corestore, PrimaryKey};
    futures_executor::block_on(async {
        let storage = hyperpunch::FileStorage::open(dir).unwrap();
        let mut store = Corestore::open(storage, PrimaryKey::Stored).await.unwrap();
        let mut k = [0u8; 32];
        hex::decode_to_slice(key, &mut k).unwrap();
        let dk = hyperpunch::core::crypto::discovery_key(&k);
        let db = store
            .get(hyperpunch::core::corestore::GetOptions::from_discovery_key(dk).must_exist())
            .await
            .unwrap();
        let m = store.core(&db).unwrap().manifest().cloned().unwrap();
        let blobs = hyperpunch::core::hyperdrive::keys::content_key(&m, &k).unwrap();
        store.close_core(db).unwrap();
        let blobs_dk = hyperpunch::core::crypto::discovery_key(&blobs);
        assert!(store.purge(&blobs_dk).await.unwrap());
        store.close();
    });
}

#[test]
fn purge_finishes_what_an_interrupted_purge_left() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let store = tmp.path().join("store");
    let copy = tmp.path().join("copy");
    sample(&src);
    let key = ok(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    let key = key.trim().to_string();
    {
        let (_server, addr) = serve(&store);
        ok(
            &[
                "drive",
                "fetch",
                "-s",
                s(&copy),
                "--key",
                &key,
                "--tcp",
                &addr,
            ],
            b"",
        );
    }
    for dir in [&store, &copy] {
        purge_blobs_only(dir, &key);
        let cores: Value =
            serde_json::from_str(&ok(&["store", "info", "-s", s(dir), "--json"], b"")).unwrap();
        assert_eq!(
            cores["cores"].as_array().unwrap().len(),
            1,
            "the db core is left"
        );
        let out = hp(&["drive", "purge", "-s", s(dir), "--yes"], b"");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {e}", dir.display());
        assert!(e.contains(&format!("purged drive {key}")), "{e}");
        let cores: Value =
            serde_json::from_str(&ok(&["store", "info", "-s", s(dir), "--json"], b"")).unwrap();
        assert_eq!(cores["cores"], json!([]), "{}", dir.display());
    }
    // The writer refuses such a drive instead of writing a new blobs core under its entries.
    let store2 = tmp.path().join("store2");
    ok(&["drive", "mirror", s(&src), "-s", s(&store2)], b"");
    let key2 = info(&store2)["key"].as_str().unwrap().to_string();
    purge_blobs_only(&store2, &key2);
    fs::write(src.join("new.txt"), b"new").unwrap();
    let e = err(&["drive", "mirror", s(&src), "-s", s(&store2)]);
    assert!(e.contains("blobs core is not stored"), "{e}");
    let help = ok(&["drive", "purge", "--help"], b"");
    assert!(
        help.contains("one atomic write") && help.contains("db.data"),
        "{help}"
    );
}

/// `drive serve` on an ephemeral port; killed on drop.
fn serve(store: &Path) -> (Proc, String) {
    let mut p = Proc::hp(
        "serve",
        &["drive", "serve", "-s", s(store), "--tcp", "127.0.0.1:0"],
    );
    let line = p.expect("listening on ");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    (p, addr)
}

#[test]
fn serve_and_fetch_over_tcp() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let store = tmp.path().join("store");
    sample(&src);
    let key = ok(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    let key = key.trim();
    let (_server, addr) = serve(&store);
    let copy = tmp.path().join("copy");
    let out = hp(
        &[
            "drive",
            "fetch",
            "-s",
            s(&copy),
            "--key",
            key,
            "--tcp",
            &addr,
        ],
        b"",
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    assert!(e.contains("8 files"), "{e}");
    let i = info(&copy);
    assert_eq!(i["key"], key);
    assert_eq!(i["writable"], false);
    assert_eq!(i["blobsStored"], i["blobsLength"]);
    let out_dir = tmp.path().join("out");
    ok(&["drive", "export", "-s", s(&copy), s(&out_dir)], b"");
    assert_eq!(tree(&out_dir), tree(&src));
    assert!(err(&["drive", "mirror", s(&src), "-s", s(&copy)]).contains("cannot be written"));
    // Fetch again (an update; nothing new) and with --key of a drive the peer does not have.
    ok(
        &[
            "drive",
            "fetch",
            "-s",
            s(&copy),
            "--key",
            key,
            "--tcp",
            &addr,
        ],
        b"",
    );
    let e = err(&[
        "drive",
        "fetch",
        "-s",
        s(&tmp.path().join("c2")),
        "--key",
        &"cd".repeat(32),
        "--tcp",
        &addr,
        "--timeout",
        "2",
    ]);
    assert!(e.contains("did not send the drive"), "{e}");
}

#[test]
fn mirror_killed_mid_way_completes_on_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let store = tmp.path().join("store");
    for d in 0..20 {
        fs::create_dir_all(src.join(format!("d{d:02}"))).unwrap();
        for f in 0..50 {
            let n = (d * 50 + f) * 97 % 20_000;
            fs::write(src.join(format!("d{d:02}/f{f:02}")), pattern(n, d as u8)).unwrap();
        }
    }
    // Kill it once it reported 300 of the 1000 files (`-v` prints each before writing it).
    let mut p = Proc::hp(
        "mirror",
        &["drive", "mirror", s(&src), "-s", s(&store), "-v"],
    );
    p.expect("+ /d05/f");
    let _ = p.child.kill(); // SIGKILL
    let _ = p.child.wait();
    drop(p);
    // Readable as it was left, and a re-run completes it.
    let listed = ok(&["drive", "ls", "-s", s(&store)], b"").lines().count();
    eprintln!("the killed mirror left {listed} of 1000 files");
    let out = hp(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ok(&["drive", "ls", "-s", s(&store)], b"").lines().count(),
        1000
    );
    let out_dir = tmp.path().join("out");
    ok(&["drive", "export", "-s", s(&store), s(&out_dir)], b"");
    assert_eq!(tree(&out_dir), tree(&src));
    let again = hp(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    assert!(String::from_utf8_lossy(&again.stderr).contains("(+0 -0 ~0)"));
}

/// `node drive-peer.js CONFIG`.
fn js_peer(config: &Value) -> Proc {
    Proc::node("js", "drive-peer.js", &[&config.to_string()], &[])
}

fn hex_hash(b: &[u8]) -> String {
    hex::encode(hash(b))
}

#[test]
fn js_reads_a_drive_the_cli_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let store = tmp.path().join("store");
    sample(&src);
    let key = ok(&["drive", "mirror", s(&src), "-s", s(&store)], b"");
    let (_server, addr) = serve(&store);
    let port: u64 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut js = js_peer(&json!({
        "mode": "client", "key": key.trim(), "port": port, "streamSeed": hex::encode([5u8; 32]),
        "deadline": 55000, "folders": ["/", "/docs"],
    }));
    let line = js.expect("\"event\":\"dump\"");
    let dump: Value = serde_json::from_str(&line).unwrap();
    let files: BTreeMap<String, String> = tree(&src)
        .into_iter()
        .filter(|(_, (b, _))| !b.starts_with(b"-> "))
        .map(|(k, (b, _))| (k, hex_hash(&b)))
        .collect();
    assert_eq!(dump["files"], json!(files));
    assert_eq!(
        dump["readdir"]["/"],
        json!([
            "docs",
            "empty",
            "link",
            "readme.md",
            "run.sh",
            "ünï code.txt"
        ])
    );
    let list = dump["list"].as_array().unwrap();
    let link = list.iter().find(|e| e["key"] == "/link").unwrap();
    assert!(link["value"]
        .as_str()
        .unwrap()
        .contains("\"linkname\":\"readme.md\""));
    let run = list.iter().find(|e| e["key"] == "/run.sh").unwrap();
    assert!(run["value"]
        .as_str()
        .unwrap()
        .contains("\"executable\":true"));
}

#[test]
fn cli_fetches_a_drive_js_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let ops = json!([
        {"op": "put", "path": "/a/b.txt", "len": 1000, "seed": 1},
        {"op": "put", "path": "/x", "len": 200000, "seed": 2, "executable": true},
        {"op": "put", "path": "/empty", "len": 0, "seed": 0},
        {"op": "symlink", "path": "/l", "target": "/x"},
    ]);
    let mut js = js_peer(&json!({
        "mode": "server", "streamSeed": hex::encode([6u8; 32]), "deadline": 55000, "ops": ops,
    }));
    let ready: Value = serde_json::from_str(&js.expect("\"event\":\"ready\"")).unwrap();
    let dump: Value = serde_json::from_str(&js.expect("\"event\":\"dump\"")).unwrap();
    let port: Value = serde_json::from_str(&js.expect("\"event\":\"listening\"")).unwrap();
    let addr = format!("127.0.0.1:{}", port["port"]);
    let copy = tmp.path().join("copy");
    let key = ready["key"].as_str().unwrap();
    ok(
        &[
            "drive",
            "fetch",
            "-s",
            s(&copy),
            "--key",
            key,
            "--tcp",
            &addr,
        ],
        b"",
    );
    assert_eq!(
        ok(&["drive", "ls", "-s", s(&copy)], b""),
        "/a/b.txt\n/empty\n/l\n/x\n"
    );
    for (path, h) in dump["files"].as_object().unwrap() {
        let out = hp(&["drive", "cat", "-s", s(&copy), path], b"");
        assert_eq!(&json!(hex_hash(&out.stdout)), h, "{path}");
    }
    assert_eq!(info(&copy)["contentKey"], ready["contentKey"]);
    let out_dir = tmp.path().join("out");
    ok(&["drive", "export", "-s", s(&copy), s(&out_dir)], b"");
    use std::os::unix::fs::PermissionsExt;
    assert!(
        fs::metadata(out_dir.join("x"))
            .unwrap()
            .permissions()
            .mode()
            & 0o100
            != 0
    );
    assert_eq!(fs::read_link(out_dir.join("l")).unwrap(), out_dir.join("x"));
}

#[test]
fn drive_suite_on_file_storage() {
    let tmp = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicU32::new(0);
    futures_executor::block_on(hyperpunch::core::hyperdrive::suite::run_all(|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = tmp.path().join(format!("s{i}"));
        async move { hyperpunch::FileStorage::open(dir).unwrap() }
    }));
}
