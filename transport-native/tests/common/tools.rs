//! Helpers of the tool tests (tele, beam, shell): whole processes (the built `hyperpunch`, and
//! the pinned JS tools run unchanged through `tests/interop/tool-run.js`) on a loopback testnet
//! of `hyperpunch dht` nodes the test starts itself. Every process is killed when dropped;
//! every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any one step may take: a bound that only a hang reaches. A 50 MiB copy through
/// a JS tool took over 60 s on a machine loaded to 17 (2 cores), so it is generous.
pub const STEP: Duration = Duration::from_secs(150);

/// A free UDP port on 127.0.0.1 (for a bootstrap node).
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The address in `hyperpunch dht bootstrap`'s `bootstrap node HOST:PORT (bound to ...)` line.
/// Tests start it with `--port 0` and read the port it took: a port picked by the test and
/// bound later by the process could be taken in between by another test.
#[allow(dead_code)]
pub fn bootstrap_addr(line: &str) -> String {
    let addr = line
        .split("bootstrap node ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    assert!(!addr.ends_with(":0"), "{line:?}");
    addr.to_string()
}

/// `tests/interop`, with the pinned JS reference installed.
pub fn interop_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop");
    assert!(
        dir.join("node_modules/hyperdht").is_dir(),
        "the JS reference is not installed: run `bash scripts/install-js-reference.sh`"
    );
    dir
}

/// A running process: its output lines (stdout and stderr) watched, stdout also kept whole.
pub struct Proc {
    pub name: String,
    pub child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stdout_done: Receiver<()>,
    /// A node script's own temporary folder (its `TMPDIR`), removed after it is killed: a
    /// killed script cannot clean up what it put under `os.tmpdir()`.
    tmp: Option<tempfile::TempDir>,
}

fn watch(name: String, r: impl Read + Send + 'static, tx: Sender<String>) {
    thread::spawn(move || {
        for l in BufReader::new(r).lines() {
            let Ok(l) = l else { break };
            if std::env::var_os("TOOLS_TEST_VERBOSE").is_some() {
                eprintln!("[{name}] {l}");
            }
            if tx.send(l).is_err() {
                break;
            }
        }
    });
}

impl Proc {
    /// Starts `cmd` with piped stdio, in a process group of its own (killed whole on drop), and
    /// killed by the kernel if the test process dies first (a CI timeout kills the test binary
    /// without unwinding: no sshd, agent or DHT node is left behind). The kernel's signal comes
    /// when the starting *thread* ends: start a `Proc` on the test's thread, not a helper's.
    pub fn start(name: &str, mut cmd: Command) -> Proc {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (prctl, getppid, setpgid) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0
                    || libc::setpgid(0, 0) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // The test process died before the prctl: the signal will never come.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, lines) = channel();
        watch(
            format!("{name} err"),
            child.stderr.take().unwrap(),
            tx.clone(),
        );
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, stdout_done) = channel();
        let mut so = child.stdout.take().unwrap();
        let keep = Arc::clone(&stdout);
        let (ltx, lrx) = std::sync::mpsc::channel::<Vec<u8>>();
        let label = format!("{name} out");
        thread::spawn(move || {
            let mut b = vec![0u8; 64 * 1024];
            loop {
                match so.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        keep.lock().unwrap().extend_from_slice(&b[..n]);
                        let _ = ltx.send(b[..n].to_vec());
                    }
                }
            }
            drop(ltx);
            let _ = done_tx.send(());
        });
        // Lines of stdout too (for banners such as `hypertele: KEY`).
        thread::spawn(move || {
            let mut pending = Vec::new();
            while let Ok(chunk) = lrx.recv() {
                pending.extend_from_slice(&chunk);
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line = String::from_utf8_lossy(&pending[..i]).into_owned();
                    pending.drain(..=i);
                    if std::env::var_os("TOOLS_TEST_VERBOSE").is_some() {
                        eprintln!("[{label}] {line}");
                    }
                    if tx.send(line).is_err() {
                        return;
                    }
                }
                if pending.len() > 1 << 20 {
                    pending.clear();
                }
            }
        });
        Proc {
            name: name.to_string(),
            child,
            lines,
            seen: Vec::new(),
            stdout,
            stdout_done,
            tmp: None,
        }
    }

    /// `node SCRIPT ARGS` in `tests/interop` (`$NODE` if set), with a temporary folder of its
    /// own.
    pub fn node(name: &str, script: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let dir = interop_dir();
        let tmp = tempfile::tempdir().expect("a temporary folder for node");
        let mut cmd = Command::new(std::env::var_os("NODE").unwrap_or_else(|| "node".into()));
        cmd.arg(script)
            .args(args)
            .current_dir(&dir)
            .env("NODE_PATH", dir.join("node_modules"))
            .env("TMPDIR", tmp.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = Proc::start(name, cmd);
        proc.tmp = Some(tmp);
        proc
    }

    /// The built `hyperpunch ARGS`, without the environment's bootstrap or relays.
    pub fn hp(name: &str, args: &[&str]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hyperpunch"));
        cmd.args(args)
            .env_remove("HYPERPUNCH_BOOTSTRAP")
            .env_remove("HYPERPUNCH_RELAYS");
        Proc::start(name, cmd)
    }

    /// A pinned JS tool's script, unchanged, on the testnet of `boot`
    /// (`node tool-run.js <bin> ARGS`).
    pub fn js(name: &str, bin: &str, args: &[&str], boot: &str, env: &[(&str, &str)]) -> Proc {
        let mut all = vec![bin];
        all.extend_from_slice(args);
        let mut env = env.to_vec();
        env.push(("HYPERPUNCH_TEST_BOOTSTRAP", boot));
        Proc::node(name, "tool-run.js", &all, &env)
    }

    /// Waits for an output line containing `what` and returns it.
    pub fn expect(&mut self, what: &str) -> String {
        let deadline = Instant::now() + STEP;
        if let Some(l) = self.seen.iter().find(|l| l.contains(what)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(what) {
                        return l;
                    }
                }
                Err(e) => panic!(
                    "{}: no `{what}` in its output ({}); got {:?}",
                    self.name,
                    self.why(e),
                    self.seen
                ),
            }
        }
    }

    /// Waits for the `n`th (1-based) output line containing `what` and returns it.
    pub fn expect_nth(&mut self, what: &str, n: usize) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(l) = self.seen.iter().filter(|l| l.contains(what)).nth(n - 1) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(e) => panic!(
                    "{}: no {n} lines with `{what}` in its output ({}); got {:?}",
                    self.name,
                    self.why(e),
                    self.seen
                ),
            }
        }
    }

    /// Waits for an output line containing any of `what` and returns it.
    pub fn expect_any(&mut self, what: &[&str]) -> String {
        let deadline = Instant::now() + STEP;
        let hit = |l: &String| what.iter().any(|w| l.contains(w));
        if let Some(l) = self.seen.iter().find(|l| hit(l)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if hit(&l) {
                        return l;
                    }
                }
                Err(e) => panic!(
                    "{}: none of {what:?} in its output ({}); got {:?}",
                    self.name,
                    self.why(e),
                    self.seen
                ),
            }
        }
    }

    /// Why a wait for a line ended without it.
    fn why(&self, e: std::sync::mpsc::RecvTimeoutError) -> String {
        match e {
            std::sync::mpsc::RecvTimeoutError::Timeout => format!("waited {STEP:?}"),
            std::sync::mpsc::RecvTimeoutError::Disconnected => {
                format!("its output ended; exit {:?}", self.exited())
            }
        }
    }

    /// Every line seen so far (and any waiting).
    pub fn output(&mut self) -> Vec<String> {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.clone()
    }

    /// Writes to stdin (keeps it open).
    pub fn write(&mut self, data: &[u8]) {
        let stdin = self.child.stdin.as_mut().expect("stdin open");
        stdin.write_all(data).unwrap();
        stdin.flush().unwrap();
    }

    /// Writes `data` to stdin from a thread, then closes stdin (a process that reads its input
    /// only once connected cannot block the test).
    pub fn feed(&mut self, data: Vec<u8>) {
        let mut stdin = self.child.stdin.take().expect("stdin open");
        thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }

    /// Closes stdin.
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Whether the child exited, and its exit code (`None` when killed by a signal), without
    /// reaping it: until `Drop` reaps it, its process id (its group's) stays reserved.
    pub fn exited(&self) -> Option<Option<i32>> {
        // SAFETY: waitid(2) fills `info`, a plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r != 0 {
            // Already reaped (a test waited on `child` itself): it exited.
            return Some(None);
        }
        // SAFETY: set by waitid for WEXITED.
        if unsafe { info.si_pid() } == 0 {
            return None;
        }
        let status = unsafe { info.si_status() };
        Some((info.si_code == libc::CLD_EXITED).then_some(status))
    }

    /// Waits (bounded) for the exit; returns the exit code and the whole stdout.
    pub fn finish(&mut self) -> (Option<i32>, Vec<u8>) {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(code) = self.exited() {
                let _ = self.stdout_done.recv_timeout(STEP);
                let out = self.stdout.lock().unwrap().clone();
                return (code, out);
            }
            if Instant::now() >= deadline {
                let seen = self.output();
                panic!(
                    "{} did not exit within {STEP:?}; stdout {} bytes; output {seen:?}",
                    self.name,
                    self.stdout.lock().unwrap().len()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The whole group (ssh's ProxyCommand, sshd's sessions). The child is reaped only here
        // (`finish` does not reap), so the group's id is still its own.
        // SAFETY: a plain kill(2).
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback testnet: a `hyperpunch dht bootstrap` node and `n` persistent `dht node`s.
/// Returns the processes (keep them alive) and the bootstrap address.
pub fn testnet(n: usize) -> (Vec<Proc>, String) {
    let mut b = Proc::hp(
        "bootstrap",
        &["dht", "bootstrap", "--host", "127.0.0.1", "--port", "0"],
    );
    let boot = bootstrap_addr(&b.expect("bootstrap node"));
    let mut all = vec![b];
    for i in 0..n {
        let mut node = Proc::hp(
            &format!("node{i}"),
            &["dht", "node", "--bootstrap", &boot, "--host", "127.0.0.1"],
        );
        node.expect("persistent, id");
        all.push(node);
    }
    (all, boot)
}

/// A TCP echo server on 127.0.0.1 (echoes until the client's end, then ends); its port.
pub fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

/// Sends `data` to 127.0.0.1:`port` and reads `data.len()` bytes back (or until the end);
/// with `half_close`, shuts our side down after sending and reads to the end.
pub fn round_trip(port: u16, data: &[u8], half_close: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    let mut w = s.try_clone().unwrap();
    let d = data.to_vec();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&d);
        if half_close {
            let _ = w.shutdown(std::net::Shutdown::Write);
        }
    });
    let mut got = Vec::new();
    let mut b = vec![0u8; 64 * 1024];
    while half_close || got.len() < data.len() {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    let _ = writer.join();
    got
}

/// `n` bytes of a pattern that does not repeat every 256 bytes.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n as u32).map(|i| (i % 251) as u8).collect()
}

/// Asserts two byte strings are equal, reporting lengths and the first difference (not the
/// bytes themselves).
#[track_caller]
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, want {}; first difference at {:?}",
            got.len(),
            want.len(),
            at
        );
    }
}
