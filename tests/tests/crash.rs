//! kill -9 crash test: a child process (`crash-appender`) appends to a FileStorage-backed
//! hypercore in a loop, printing every acknowledged length; we SIGKILL it at random moments,
//! then reopen the core and check that
//! * its length is at least the last length the child printed (acknowledged writes survive),
//! * every block verifies (`verify_all`) and holds exactly the bytes that were appended,
//! * appending still works.
//!
//! The same with blocks of 64 KiB (as `core fetch` of a file writes them): each block is a
//! value in the store's append-only data file, written before the batch that references it
//! commits, so a kill between the two leaves unreferenced bytes that the next open skips.
//!
//! And with small blocks again, the appender beginning a compaction of the store's journal at
//! every open (`compact_journal_at` 1: fjall's worker flushes what the journal holds while the
//! appender appends; the close, here the check's, replaces the journal by an empty one), half of
//! the kills landing anywhere from its start on, so also in the middle of that flush.
//!
//! And with appends of 8000 small blocks among small ones: batches of over 1 MiB, whose tree
//! pages and block chunks of 1 KiB or more the store writes to its data file too (the journal
//! gets their references only), and whose partial tree page and bitfield pages later small
//! appends overwrite inline.
//!
//! The random schedule is printed; rerun it with `HP_CRASH_SEED=<seed>`.

use futures_executor::block_on;
use hyperpunch::hypercore::core::{Hypercore, HypercoreError, OpenOptions};
use hyperpunch::FileStorage;
use hyperpunch_tests::crash::{content, Rng};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills in total.
const KILLS: usize = 60;
/// A fresh core every this many kills, so `verify_all` stays fast in debug builds.
const KILLS_PER_CORE: usize = 10;

/// The last complete line of the child's output, as a length.
fn last_acknowledged(out: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(out);
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => return None,
    };
    complete.lines().last().map(|l| {
        l.trim()
            .parse()
            .unwrap_or_else(|e| panic!("child printed {l:?}: {e}"))
    })
}

/// Reopen after a kill and check everything; returns the length after one more append.
fn check(
    dir: &Path,
    acknowledged: Option<u64>,
    round: usize,
    rng: &mut Rng,
    large: bool,
) -> Option<u64> {
    // Made only by a clean close, removed by the open: a process killed after it opened the
    // store (it acknowledged an append) leaves none (an open that finds one does not sync the
    // data file before fjall's recovery syncs references to it).
    assert!(
        acknowledged.is_none() || !dir.join("db.data.synced").exists(),
        "round {round}: a killed process left the data-synced marker"
    );
    let storage = FileStorage::open(dir).unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
    let mut core = match block_on(Hypercore::open(storage, OpenOptions::default())) {
        Ok(c) => c,
        Err(HypercoreError::NotFound) => {
            // Killed before `create` committed: allowed only if nothing was acknowledged.
            assert_eq!(acknowledged, None, "round {round}: core vanished");
            return None;
        }
        Err(e) => panic!("round {round}: open after kill: {e}"),
    };
    let len = core.length();
    if let Some(ack) = acknowledged {
        assert!(
            len >= ack,
            "round {round}: length {len} < acknowledged {ack}"
        );
    }
    block_on(core.verify_all()).unwrap_or_else(|e| panic!("round {round}: verify_all: {e}"));
    // The content of the newest block and a few random ones is exactly what was appended.
    let mut probe = vec![len.saturating_sub(1)];
    probe.extend((0..8).map(|_| rng.below(len.max(1))));
    for i in probe.into_iter().filter(|&i| i < len) {
        let got = block_on(core.get(i)).unwrap_or_else(|e| panic!("round {round}: get {i}: {e}"));
        assert_eq!(got, Some(content(i, large)), "round {round}: block {i}");
    }
    let out = block_on(core.append(&[&content(len, large)]))
        .unwrap_or_else(|e| panic!("round {round}: append after kill: {e}"));
    assert_eq!(out.length, len + 1);
    Some(out.length)
}

/// Small blocks, then 64 KiB blocks. One test, not two: while one test's check holds a store
/// open, a child the other test forks at that moment inherits the store's lock until its `exec`,
/// and the next child of the first test could find the folder locked.
#[test]
fn acknowledged_appends_survive_kill_9() {
    kill_9_rounds(KILLS, Mode::Small, false);
    kill_9_rounds(KILLS / 2, Mode::Large, false);
    kill_9_rounds(KILLS / 2, Mode::Small, true);
    kill_9_rounds(KILLS / 2, Mode::Big, false);
}

/// What the appender appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Small blocks, 1 to 1000 at a time.
    Small,
    /// Blocks of 64 KiB, 1 to 32 at a time.
    Large,
    /// Small blocks, 1, 20 or 8000 at a time (batches of over 1 MiB).
    Big,
}

/// `kills` rounds of: start the appender, SIGKILL it, check the store. With `compact`, the
/// appender begins a compaction of the journal at every open (`compact_journal_at` 1) and half
/// of the kills land anywhere from its start on.
fn kill_9_rounds(kills: usize, mode: Mode, compact: bool) {
    let large = mode == Mode::Large;
    let seed: u64 = std::env::var("HP_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("crash test seed: {seed} (rerun with HP_CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);
    let root = tempfile_dir();
    let started = Instant::now();
    let mut max_len = 0u64;
    let mut kills_with_ack = 0;
    for round in 0..kills {
        let dir = root.join(format!("core-{}", round / KILLS_PER_CORE));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crash-appender"));
        if compact {
            cmd.env("HP_CRASH_COMPACT_AT", "1");
        }
        let mut child = cmd
            .arg(&dir)
            .arg(rng.next_u64().to_string())
            .arg(match mode {
                Mode::Small => "small",
                Mode::Large => "large",
                Mode::Big => "big",
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn crash-appender");
        // Collect the child's stdout on a thread, which reports the first acknowledged append.
        let mut stdout = child.stdout.take().expect("stdout");
        let (first_ack_tx, first_ack) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            let mut told = false;
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
                if !told && out.contains(&b'\n') {
                    let _ = first_ack_tx.send(());
                    told = true;
                }
            }
            out
        });
        if round % if compact { 2 } else { 4 } == 0 {
            // Anywhere from spawn on: covers kills while opening or creating the store.
            std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        } else {
            // In the middle of appending: after the first acknowledgement, 0 to 30 ms more.
            if first_ack.recv_timeout(Duration::from_secs(20)).is_err() {
                let _ = child.kill();
                let _ = child.wait();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("round {round}: child acknowledged nothing within 20 s: {err}");
            }
            std::thread::sleep(Duration::from_micros(rng.below(30_000)));
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("round {round}: child exited early ({status}): {err}");
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap child");
        let out = reader.join().expect("reader thread");
        let ack = last_acknowledged(&out);
        if ack.is_some() {
            kills_with_ack += 1;
        }
        if let Some(len) = check(&dir, ack, round, &mut rng, large) {
            max_len = max_len.max(len);
        }
    }
    eprintln!(
        "{kills} kills ({kills_with_ack} after acknowledged appends), largest core {max_len} blocks, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let expected_acks = if compact { kills / 2 } else { kills * 3 / 4 };
    assert!(
        kills_with_ack >= expected_acks,
        "too few kills landed after an append ({kills_with_ack}/{kills}): the test is not testing"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// A fresh directory under the system temp dir (no tempfile dependency in this crate).
fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "hyperpunch-crash-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}
