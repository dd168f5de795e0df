//! A JS hyperdht process (`tests/interop/dht-peer.js`) driven by JSON commands on its stdin.
//!
//! [`JsDht::spawn`] starts it; [`JsDht::call`] sends one command and waits (with a timeout) for
//! its answer. Dropping it kills the process.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::node::{check_modules, interop_dir, NodeError};

/// A running `dht-peer.js`.
pub struct JsDht {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
    stderr: Arc<Mutex<Vec<u8>>>,
    next: u64,
}

impl JsDht {
    /// Start the script; it exits by itself after `timeout`.
    pub fn spawn(timeout: Duration) -> Result<Self, NodeError> {
        Self::spawn_script("dht-peer.js", timeout)
    }

    /// Start another script of `tests/interop` speaking the same JSON-lines protocol.
    pub fn spawn_script(script: &str, timeout: Duration) -> Result<Self, NodeError> {
        let modules = check_modules()?;
        let cfg = json!({ "timeoutMs": timeout.as_millis() as u64 });
        let mut child = Command::new(std::env::var_os("NODE").unwrap_or_else(|| "node".into()))
            .arg(script)
            .arg(cfg.to_string())
            .current_dir(interop_dir())
            .env("NODE_PATH", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(NodeError::Spawn)?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let mut pipe = child.stderr.take().expect("piped");
        thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut b) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&b[..n]);
            }
        });
        let js = JsDht {
            child,
            stdin,
            lines,
            stderr,
            next: 0,
        };
        // Wait for the ready line.
        match js.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(v) if v["event"] == "ready" => Ok(js),
            other => panic!(
                "dht-peer.js did not start: {other:?}; stderr: {}",
                js.stderr()
            ),
        }
    }

    /// What the script wrote on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Send `cmd` (an object with a `cmd` field) and wait up to `timeout` for its result.
    pub fn call(&mut self, mut cmd: Value, timeout: Duration) -> Result<Value, String> {
        self.next += 1;
        let id = self.next;
        cmd["id"] = json!(id);
        writeln!(self.stdin, "{cmd}").map_err(|e| format!("write to node: {e}"))?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["id"] == json!(id) => {
                    return if v["ok"] == json!(true) {
                        Ok(v["result"].clone())
                    } else {
                        Err(v["error"].as_str().unwrap_or("error").to_string())
                    };
                }
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{} timed out; stderr: {}",
                        cmd["cmd"],
                        self.stderr()
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("node exited; stderr: {}", self.stderr()))
                }
            }
        }
    }

    /// [`JsDht::call`] that panics on failure.
    pub fn must(&mut self, cmd: Value, timeout: Duration) -> Value {
        let what = cmd["cmd"].clone();
        self.call(cmd, timeout)
            .unwrap_or_else(|e| panic!("JS {what} failed: {e}"))
    }
}

impl Drop for JsDht {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
