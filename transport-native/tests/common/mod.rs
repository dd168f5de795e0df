//! Helpers shared by the CLI integration tests: run the built `hyperpunch` binary.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Run `hyperpunch ARGS` with `stdin` as its standard input.
pub fn hp(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hyperpunch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hyperpunch");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Run `hyperpunch ARGS`; panic with its stderr unless it succeeds; return its stdout.
pub fn ok(args: &[&str], stdin: &[u8]) -> String {
    let out = hp(args, stdin);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8 stdout")
}
#[allow(dead_code)]
pub mod js_peer;
#[allow(dead_code)]
pub mod shell;
#[allow(dead_code)]
pub mod tools;
