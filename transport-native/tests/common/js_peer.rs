//! A JS reference script driven over stdin as a long-running peer (`tests/interop/dht-peer.js`,
//! `swarm-peer.js`): one JSON command a line in, JSON lines out; each answer carries the
//! command's `id` and `ok`. Killed on drop; every wait is bounded.

use serde_json::{json, Value};
use std::io::Write;
use std::process::ChildStdin;

use super::tools::Proc;

/// The running script.
pub struct JsPeer {
    proc: Proc,
    stdin: ChildStdin,
    next: u64,
}

impl JsPeer {
    /// Starts `node SCRIPT {"timeoutMs": timeout_ms}` in `tests/interop` (commands wait in its
    /// stdin until it reads them).
    pub fn spawn(script: &str, timeout_ms: u64) -> Self {
        let config = json!({ "timeoutMs": timeout_ms }).to_string();
        let mut proc = Proc::node(script, script, &[&config], &[]);
        let stdin = proc.child.stdin.take().expect("stdin");
        JsPeer {
            proc,
            stdin,
            next: 0,
        }
    }

    /// Sends `cmd` and returns its `result`; panics (with what the script printed) unless the
    /// script answers it with `ok: true` in time (`tools::STEP`).
    pub fn call(&mut self, mut cmd: Value) -> Value {
        self.next += 1;
        cmd["id"] = json!(self.next);
        writeln!(self.stdin, "{cmd}").unwrap();
        let want = format!("\"id\":{}", self.next);
        for nth in 1.. {
            let line = self.proc.expect_nth(&want, nth);
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["id"] == json!(self.next) {
                assert_eq!(v["ok"], json!(true), "JS {cmd}: {v}");
                return v["result"].clone();
            }
        }
        unreachable!()
    }
}
