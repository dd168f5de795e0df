//! A long-running `node` peer (such as `tests/interop/secretstream-peer.js`) that reports what it
//! does as one JSON object per stdout line while the test talks to it over a socket.
//!
//! [`NodePeer::spawn`] starts `node <script> <json config>` in `tests/interop`; [`NodePeer::next`]
//! waits (with a timeout) for its next line; dropping the peer kills the process and removes the
//! process's own temporary folder (its `TMPDIR`, so whatever the script puts under `os.tmpdir()`
//! goes away even though a killed script cannot clean up).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::node::{check_modules, interop_dir, NodeError};

/// A running node script; killed when dropped.
pub struct NodePeer {
    child: Child,
    script: String,
    lines: Receiver<Result<Value, String>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    tmp: std::path::PathBuf,
}

/// A fresh, empty folder for one node process's temporary files.
fn private_tmp() -> Result<std::path::PathBuf, NodeError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hp-node-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(NodeError::TempDir)?;
    Ok(dir)
}

impl NodePeer {
    /// Starts `node <script> <config as JSON>` (a path relative to `tests/interop`).
    pub fn spawn(script: &str, config: &Value) -> Result<Self, NodeError> {
        Self::start(script, config, Stdio::null())
    }

    /// The same with the script's stdin piped: commands for it, one line each.
    pub fn spawn_with_stdin(script: &str, config: &Value) -> Result<(Self, ChildStdin), NodeError> {
        let mut peer = Self::start(script, config, Stdio::piped())?;
        let stdin = peer.child.stdin.take().expect("stdin is piped");
        Ok((peer, stdin))
    }

    fn start(script: &str, config: &Value, stdin: Stdio) -> Result<Self, NodeError> {
        let modules = check_modules()?;
        let tmp = private_tmp()?;
        let mut child = Command::new(std::env::var_os("NODE").unwrap_or_else(|| "node".into()))
            .arg(script)
            .arg(config.to_string())
            .current_dir(interop_dir())
            .env("NODE_PATH", &modules)
            .env("TMPDIR", &tmp)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&tmp);
                NodeError::Spawn(e)
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parsed = serde_json::from_str(&line).map_err(|_| line);
                if tx.send(parsed).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().map(|mut s| s.extend_from_slice(&buf[..n])).ok();
            }
        });
        Ok(NodePeer {
            child,
            script: script.to_string(),
            lines,
            stderr,
            tmp,
        })
    }

    /// What the script wrote on stderr so far.
    pub fn stderr(&self) -> String {
        let bytes = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The next JSON line, waiting at most `timeout`. Fails with the script's stderr if it printed
    /// something else, exited or took too long.
    pub fn next(&mut self, timeout: Duration) -> Result<Value, String> {
        match self.lines.recv_timeout(timeout) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(line)) => Err(format!(
                "node {} printed a non-JSON line {line:?}; stderr:\n{}",
                self.script,
                self.stderr()
            )),
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "node {} printed nothing within {timeout:?}; stderr:\n{}",
                self.script,
                self.stderr()
            )),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                Err(format!(
                    "node {} exited ({status:?}); stderr:\n{}",
                    self.script,
                    self.stderr()
                ))
            }
        }
    }

    /// The next line whose `event` field is `event`, skipping others.
    pub fn next_event(&mut self, event: &str, timeout: Duration) -> Result<Value, String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let v = self.next(left)?;
            if v["event"] == event {
                return Ok(v);
            }
        }
    }

    /// Waits up to `timeout` for the process to exit and returns whether it exited successfully.
    pub fn wait(&mut self, timeout: Duration) -> Option<bool> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status.success()),
                Ok(None) if std::time::Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10))
                }
                _ => return None,
            }
        }
    }
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}
