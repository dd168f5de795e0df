//! `hyperpunch dht listen | connect | relay` end to end: the built binary as whole processes on
//! 127.0.0.1 (a CLI bootstrap node and CLI DHT nodes), piping data both ways like netcat,
//! directly and through a `dht relay`, and PEER_NOT_FOUND. Every process is killed when its
//! test ends.

mod common;
use common::hp;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread;
use std::time::{Duration, Instant};

const STEP: Duration = Duration::from_secs(60);

/// A `hyperpunch` process: stderr lines watched, stdout collected, stdin piped; killed on drop.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    out: Receiver<Vec<u8>>,
}

impl Proc {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hyperpunch"));
        cmd.args(args)
            .env_remove("HYPERPUNCH_BOOTSTRAP")
            .env_remove("HYPERPUNCH_RELAYS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hyperpunch");
        let err = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        thread::spawn(move || {
            for l in BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut so = child.stdout.take().unwrap();
        let (otx, out) = channel();
        thread::spawn(move || {
            let mut all = Vec::new();
            let _ = so.read_to_end(&mut all);
            let _ = otx.send(all);
        });
        Proc { child, lines, out }
    }

    fn expect(&self, what: &str) -> String {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(STEP) {
                Ok(l) if l.contains(what) => return l,
                Ok(l) => seen.push(l),
                Err(_) => panic!("no `{what}` on stderr within {STEP:?}; got {seen:?}"),
            }
        }
    }

    /// Writes `data` to stdin and closes it.
    fn feed(&mut self, data: &[u8]) {
        let mut stdin = self.child.stdin.take().unwrap();
        stdin.write_all(data).unwrap();
    }

    /// Waits for the exit (bounded) and returns (success, stdout).
    fn finish(&mut self) -> (bool, Vec<u8>) {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let out = self.out.recv_timeout(STEP).unwrap_or_default();
                return (status.success(), out);
            }
            assert!(Instant::now() < deadline, "the process did not end");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli_dht(n: usize) -> (Vec<Proc>, String) {
    let b = Proc::spawn(
        &["dht", "bootstrap", "--host", "127.0.0.1", "--port", "0"],
        &[],
    );
    let boot = common::tools::bootstrap_addr(&b.expect("bootstrap node"));
    let mut all = vec![b];
    for _ in 0..n {
        let node = Proc::spawn(
            &["dht", "node", "--bootstrap", &boot, "--host", "127.0.0.1"],
            &[],
        );
        node.expect("persistent, id");
        all.push(node);
    }
    (all, boot)
}

fn net(boot: &str) -> [&str; 4] {
    ["--bootstrap", boot, "--host", "127.0.0.1"]
}

fn pipe_both_ways(boot: &str, listen_extra: &[&str], connect_env: &[(&str, &str)]) {
    let seed = "01".repeat(32);
    let mut args = vec!["dht", "listen", "--seed", &seed];
    args.extend_from_slice(listen_extra);
    args.extend_from_slice(&net(boot));
    let mut server = Proc::spawn(&args, &[]);
    let line = server.expect("listening ");
    let key = line.trim().strip_prefix("listening ").unwrap().to_string();
    assert_eq!(key.len(), 64);
    let mut args = vec!["dht", "connect", &key];
    args.extend_from_slice(&net(boot));
    let mut client = Proc::spawn(&args, connect_env);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    client.feed(&big);
    server.feed(b"hello from the server\n");
    let (ok_c, out_c) = client.finish();
    let (ok_s, out_s) = server.finish();
    assert!(ok_c && ok_s, "both exit cleanly");
    assert_eq!(out_c, b"hello from the server\n");
    assert_eq!(out_s.len(), big.len());
    assert_eq!(out_s, big);
}

#[test]
fn listen_and_connect_pipe_both_ways() {
    let (_dht, boot) = cli_dht(3);
    pipe_both_ways(&boot, &[], &[]);
}

#[test]
fn listen_with_relay_through_a_cli_relay() {
    let (_dht, boot) = cli_dht(3);
    let mut args = vec!["dht", "relay", "--seed", "05"];
    let seed = "05".repeat(32);
    args[3] = &seed;
    args.extend_from_slice(&net(&boot));
    let relay = Proc::spawn(&args, &[]);
    let line = relay.expect("relay ");
    let rkey = line.trim().strip_prefix("relay ").unwrap().to_string();
    // On loopback the CLI nodes find they are not firewalled, so the direct path wins the race
    // with the relay; the relayed path itself is tested in tests/tests/dht_connect_interop.rs.
    pipe_both_ways(&boot, &["--relay-through", &rkey], &[]);
    drop(relay);
}

#[test]
fn connect_to_an_unknown_key_is_peer_not_found() {
    let (_dht, boot) = cli_dht(2);
    let key = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
    let mut args = vec!["dht", "connect", key, "--timeout", "60"];
    args.extend_from_slice(&net(&boot));
    let out = hp(&args, b"");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PEER_NOT_FOUND"), "{err}");
    let out = hp(&["dht", "connect", "zz", "--bootstrap", &boot], b"");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("64 hex"),
        "clear error on a bad key"
    );
}

/// `--timeout` bounds the whole attempt in the core: a server that stops answering (stopped
/// with SIGSTOP: its announcement stays on the DHT, its handshakes go unanswered) gives
/// CONNECT_TIMEOUT after the given seconds, past the core's default of 60 s too (before,
/// `--timeout 120` was cut short at 60 s by the core's default bound).
#[test]
fn connect_gives_up_after_its_timeout() {
    let (_dht, boot) = cli_dht(2);
    let seed = "07".repeat(32);
    let mut args = vec!["dht", "listen", "--seed", &seed];
    args.extend_from_slice(&net(&boot));
    let server = Proc::spawn(&args, &[]);
    let line = server.expect("listening ");
    let key = line.trim().strip_prefix("listening ").unwrap().to_string();
    let pid = server.child.id().to_string();
    let stop = |sig: &str| {
        let st = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(st.success(), "kill {sig} {pid}");
    };
    stop("-STOP");
    let mut args = vec!["dht", "connect", &key, "--timeout", "2"];
    args.extend_from_slice(&net(&boot));
    let out = hp(&args, b"");
    stop("-CONT");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("CONNECT_TIMEOUT: no connection within 2000 ms"),
        "the core's timeout, not the CLI's backstop: {err}"
    );
}
