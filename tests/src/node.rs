//! Running the pinned JS reference (`tests/interop`) as a real `node` process.
//!
//! [`run_script`] spawns `node <script>` with `tests/interop` as the working directory and
//! `NODE_PATH` pointing at its `node_modules`, feeds it a JSON document on stdin, waits for it with
//! a timeout (killing it on expiry) and parses the JSON document it prints on stdout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Why a node script could not produce a result.
#[derive(Debug)]
pub enum NodeError {
    /// `tests/interop/node_modules` is missing or incomplete.
    MissingModules(PathBuf),
    /// `node` could not be started.
    Spawn(std::io::Error),
    /// The node process's temporary folder could not be created.
    TempDir(std::io::Error),
    /// The script ran longer than the timeout and was killed.
    Timeout {
        /// The script.
        script: String,
        /// The timeout that expired.
        after: Duration,
        /// What it wrote on stderr before being killed.
        stderr: String,
    },
    /// The script exited unsuccessfully.
    Failed {
        /// The script.
        script: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// The script's stdout was not one JSON document.
    BadOutput {
        /// The parse error.
        error: serde_json::Error,
        /// The start of what was printed.
        stdout: String,
    },
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeError::MissingModules(dir) => write!(
                f,
                "the JS reference is not installed ({} is missing): run `npm ci --prefix tests/interop` \
                 (or `just setup`) first",
                dir.display()
            ),
            NodeError::Spawn(e) => write!(f, "cannot start `node` (is Node.js installed?): {e}"),
            NodeError::TempDir(e) => write!(f, "cannot create a temporary folder for node: {e}"),
            NodeError::Timeout {
                script,
                after,
                stderr,
            } => write!(
                f,
                "node {script} did not finish within {after:?} and was killed; stderr:\n{stderr}"
            ),
            NodeError::Failed {
                script,
                status,
                stderr,
            } => write!(f, "node {script} failed ({status}); stderr:\n{stderr}"),
            NodeError::BadOutput { error, stdout } => {
                write!(f, "node printed something that is not JSON ({error}): {stdout}")
            }
        }
    }
}

impl std::error::Error for NodeError {}

/// `tests/interop`, where the JS reference and the interop scripts live.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// Checks that `tests/interop/node_modules` holds the JS reference.
pub fn check_modules() -> Result<PathBuf, NodeError> {
    let modules = interop_dir().join("node_modules");
    for package in ["hypercore", "hypercore-crypto", "compact-encoding"] {
        if !modules.join(package).join("package.json").is_file() {
            return Err(NodeError::MissingModules(modules.join(package)));
        }
    }
    Ok(modules)
}

/// Runs `node <script>` (a path relative to `tests/interop`) with `input` as JSON on stdin and
/// returns the JSON document it printed on stdout.
pub fn run_script(script: &str, input: &Value, timeout: Duration) -> Result<Value, NodeError> {
    let modules = check_modules()?;
    let dir = interop_dir();
    let mut child = Command::new(std::env::var_os("NODE").unwrap_or_else(|| "node".into()))
        .arg(script)
        .current_dir(&dir)
        .env("NODE_PATH", &modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NodeError::Spawn)?;

    let input = serde_json::to_vec(input).expect("serializing a serde_json::Value cannot fail");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let writer = thread::spawn(move || {
        // A script that dies early closes its stdin; its exit status tells what happened.
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(NodeError::Spawn)? {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => thread::sleep(Duration::from_millis(5)),
        }
    };
    let _ = writer.join();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let script = script.to_string();
    let Some(status) = status else {
        return Err(NodeError::Timeout {
            script,
            after: timeout,
            stderr,
        });
    };
    if !status.success() {
        return Err(NodeError::Failed {
            script,
            status,
            stderr,
        });
    }
    serde_json::from_slice(&stdout).map_err(|error| NodeError::BadOutput {
        error,
        stdout: String::from_utf8_lossy(&stdout[..stdout.len().min(2000)]).into_owned(),
    })
}

/// The blocks the JS driver's `generate` op appends: `count` blocks of `size` bytes, block `k`
/// filled with `(fill + k) & 0xff`.
pub fn generated_blocks(count: usize, size: usize, fill: u8) -> Vec<Vec<u8>> {
    (0..count)
        .map(|k| vec![fill.wrapping_add(k as u8); size])
        .collect()
}
