//! The shell tests' helpers (`shell_interop`, `shell_tunnel`): a HOME of their own for each side,
//! and our CLI or a JS hypershell script run with it.

use std::path::Path;
use std::process::Command;

use super::tools::Proc;

/// A temporary HOME (hypershell keeps its keys and allow list under `~/.hypershell`).
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

/// `hyperpunch ARGS` with HOME and SHELL set.
pub fn hp(name: &str, home: &Home, args: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hyperpunch"));
    cmd.args(args)
        .env_remove("HYPERPUNCH_BOOTSTRAP")
        .env_remove("HYPERPUNCH_RELAYS")
        .env("HOME", home.path())
        .env("SHELL", "/bin/sh");
    Proc::start(name, cmd)
}

/// A JS hypershell script with HOME and SHELL set.
pub fn js(name: &str, bin: &str, home: &Home, args: &[&str], boot: &str) -> Proc {
    let h = home.path().to_str().unwrap();
    Proc::js(
        name,
        &format!("hypershell/bin/{bin}"),
        args,
        boot,
        &[("HOME", h), ("SHELL", "/bin/sh")],
    )
}
