//! The NAT matrix, live: hyperdht connections through real NATs (iptables MASQUERADE in
//! network namespaces, tests/nat/lab.sh), hyperpunch against hyperpunch and against the pinned
//! JS hyperdht in both roles. The cells that must connect do (punched, birthday-punched,
//! relayed), random + random fails as JS does unless a blind relay is offered.
//!
//! Root only: without root, network namespaces or NAT support in the kernel, the test says so
//! and skips. The lab deletes its namespaces on exit; if the lab itself is killed, the guard
//! here deletes them. Bounded: every client has a timeout, and the whole lab one.
//! The full matrix with times (and JS-JS beside it) is `bash tests/nat/matrix.sh`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What one cell did (a line of lab.sh's TSV output).
#[derive(Debug, Clone)]
struct Cell {
    result: String,
    how: String,
    detail: String,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The hyperpunch binary, built (or brought up to date) by cargo: the tests crate does not
/// build it by itself.
fn hyperpunch_bin() -> PathBuf {
    let st = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "hyperpunch", "--bin", "hyperpunch"])
        .current_dir(root())
        .status()
        .expect("run cargo build");
    assert!(st.success(), "cargo build -p hyperpunch failed");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let dir = meta["target_directory"].as_str().expect("target_directory");
    Path::new(dir).join("debug/hyperpunch")
}

/// Kills the lab (TERM first, so that its trap deletes its namespaces) and deletes whatever
/// namespaces of its prefix are left.
struct Lab {
    child: Option<Child>,
    prefix: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if c.try_wait().ok().flatten().is_none() {
                let _ = Command::new("kill")
                    .args(["-TERM", &c.id().to_string()])
                    .status();
                let until = Instant::now() + Duration::from_secs(5);
                while Instant::now() < until && c.try_wait().ok().flatten().is_none() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let ns = line.split_whitespace().next().unwrap_or("");
            if !ns.starts_with(&self.prefix) {
                continue;
            }
            if let Ok(p) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&p.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// One lab at a time (the tests of this file run in parallel threads).
static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the lab on `cells` (with `extra` options); `None` when this machine cannot run it (the
/// reason is printed).
fn run_lab(
    cells: &[&str],
    extra: &[&str],
    timeout: u64,
    budget: Duration,
) -> Option<HashMap<String, Cell>> {
    let _one = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let hp = hyperpunch_bin();
    let modules = root().join("tests/interop/node_modules/hyperdht/package.json");
    assert!(
        modules.is_file(),
        "the JS reference is not installed: run `bash scripts/install-js-reference.sh`"
    );
    let out = std::env::temp_dir().join(format!("hp-nat-matrix-{}.tsv", std::process::id()));
    let child = Command::new("bash")
        .arg(root().join("tests/nat/lab.sh"))
        .arg("--hp")
        .arg(&hp)
        .args(["--timeout", &timeout.to_string()])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .args(cells)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run tests/nat/lab.sh");
    let prefix = format!("hpn{}", child.id());
    let mut lab = Lab {
        child: Some(child),
        prefix,
    };
    let start = Instant::now();
    let status = loop {
        if let Some(st) = lab.child.as_mut().unwrap().try_wait().expect("wait") {
            break st;
        }
        assert!(
            start.elapsed() < budget,
            "the NAT lab ran past its budget of {budget:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(lab);
    if status.code() == Some(77) {
        eprintln!(
            "SKIP nat_matrix: this machine cannot run the NAT lab (see the lab's message above)"
        );
        return None;
    }
    assert!(status.success(), "tests/nat/lab.sh failed: {status}");
    let tsv = std::fs::read_to_string(&out).expect("the lab's results");
    let _ = std::fs::remove_file(&out);
    let mut cells = HashMap::new();
    for line in tsv.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 10, "a result line of 10 fields: {line:?}");
        let relay = match f[4] {
            "none" => String::new(),
            r => format!(":{r}"),
        };
        let key = format!("{}/{}:{}+{}{}", f[0], f[1], f[2], f[3], relay);
        eprintln!(
            "{key}: {} {} connect {} ms, process {} ms {}",
            f[5], f[6], f[7], f[8], f[9]
        );
        cells.insert(
            key,
            Cell {
                result: f[5].into(),
                how: f[6].into(),
                detail: f[9].into(),
            },
        );
    }
    Some(cells)
}

#[test]
fn nat_matrix() {
    // Few cells, each bounded: the birthday punches get the 35 s that hyperdht's random probes
    // take at most, the rest connect in about a second.
    let must_connect = [
        ("hp/hp:consistent+consistent", "punched"),
        ("hp/hp:open+random", "direct"),
        ("hp/hp:consistent+random", "punched"),
        ("hp/hp:random+consistent", "punched"),
        ("hp/hp:random+random:relay", "relayed"),
        ("hp/hp:random+random:fallback", "relayed"),
        ("js/hp:consistent+random", "punched"),
        ("hp/js:random+consistent", "punched"),
        // A JS client on a public address that connects before its firewall check: it may
        // learn it is OPEN between its handshake and its punch round, and then lists no
        // address (hyperdht's Nat keeps none for OPEN). Our server punches the address its
        // echoed token verifies; a JS server aborts (HOLEPUNCH_ABORTED), as did ours in 3 of
        // 7 runs before.
        ("hp/js:random+open:early", "punched"),
    ];
    let must_fail = ["hp/hp:random+random"];
    let mut cells: Vec<&str> = must_connect.iter().map(|c| c.0).collect();
    cells.extend(must_fail);
    let Some(got) = run_lab(&cells, &[], 36, Duration::from_secs(420)) else {
        return;
    };
    let mut failures = Vec::new();
    for (cell, how) in must_connect {
        match got.get(cell) {
            Some(c) if c.result == "ok" && c.how == how => {}
            Some(c) => failures.push(format!(
                "{cell}: {} {} {} (wanted ok via {how})",
                c.result, c.how, c.detail
            )),
            None => failures.push(format!("{cell}: no result")),
        }
    }
    // Both NATs randomize ports: without a relay the connection fails, as in JS (with
    // HOLEPUNCH_DOUBLE_RANDOMIZED_NATS when the client finds out first, REMOTE_ABORTED when
    // the server does), and says so instead of timing out.
    for cell in must_fail {
        match got.get(cell) {
            Some(c) if c.result == "fail" && c.detail != "timeout" => {}
            Some(c) => failures.push(format!(
                "{cell}: {} {} {} (wanted a hyperdht error)",
                c.result, c.how, c.detail
            )),
            None => failures.push(format!("{cell}: no result")),
        }
    }
    assert!(
        failures.is_empty(),
        "NAT matrix cells:\n{}",
        failures.join("\n")
    );
}

/// hyperdht's relayed-to-direct upgrade, live: a client that pairs through a blind relay
/// (consistent NAT on one side, random on the other) is handed the relayed stream first; the
/// punch goes on, and when it succeeds both sides move the stream to the punched path
/// (`changeRemote`), each printing `upgraded to direct` (`relayed>direct` in the lab). The
/// consistent side's router holds the direct path until both sides printed that they connected
/// through the relay (`--hold-direct`: a lucky birthday punch can otherwise beat the relay, 1
/// run in 6 here, and then there is nothing to upgrade); the punch opens it after. Each side sends 4 MiB, then 64 KiB
/// every 250 ms until it upgraded, then 4 MiB more; each must receive exactly what the other
/// sent (sha256). hyperpunch on both ends, and against the pinned JS hyperdht in both roles.
///
/// Ignored in CI: the birthday punch it waits for does not always succeed in time on a busy
/// machine. In 2026-12-07's runs of the hyperpunch-hyperpunch cell at load 20-29 (debug build,
/// `lab.sh --bulk 8 --hold-direct`), 2 of 25 stayed relayed (`relayed`, data intact, no
/// upgrade within the client's life), which fails this test. The stall it was first ignored for
/// (1 of about 17 runs: both sides upgraded, then the transfer stopped until the 86 s bound) was
/// the connection pump's, fixed since (`dht_duplex.rs`): 0 of those 25 runs stalled, against 1
/// of 25 just before the fix. Run it with
/// `cargo test -p hyperpunch-tests --test nat_matrix -- --ignored`.
#[test]
#[ignore = "the punch after the relay does not always succeed in time on a busy machine (2 of 25 hp/hp runs at load 20-29 stayed relayed)"]
fn relayed_connections_upgrade_to_the_punched_path() {
    let cells = [
        "hp/hp:consistent+random:relay",
        "js/hp:consistent+random:relay",
        "hp/js:random+consistent:relay",
    ];
    let Some(got) = run_lab(
        &cells,
        &["--bulk", "8", "--hold-direct"],
        36,
        Duration::from_secs(420),
    ) else {
        return;
    };
    let mut failures = Vec::new();
    for cell in cells {
        match got.get(cell) {
            Some(c) if c.result == "ok" && c.how == "relayed>direct" => {}
            Some(c) => failures.push(format!(
                "{cell}: {} {} {} (wanted ok via relayed>direct)",
                c.result, c.how, c.detail
            )),
            None => failures.push(format!("{cell}: no result")),
        }
    }
    assert!(
        failures.is_empty(),
        "upgrade cells (the lab's logs are on stderr above):\n{}",
        failures.join("\n")
    );
}
