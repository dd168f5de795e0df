//! The `hyperpunch` command line: argument parsing ([`args`]), input splitting ([`input`]), the
//! storage folder of a core ([`store`]) and the commands themselves, a file per group
//! ([`core_cmd`] for the local `core` commands, [`net_cmd`] for `core serve`/`core fetch`,
//! [`corestore_cmd`] for `store info`, [`udx_cmd`] for `udx cat`/`udx perf`, [`dht_cmd`] and
//! [`dht_connect_cmd`] for `dht ...`, [`bee_cmd`] for the `bee` commands, [`drive_cmd`] for the `drive` commands, [`relay_cmd`] for
//! `relay`, [`chat_cmd`] for `chat`, [`tele_cmd`], [`beam_cmd`], [`shell_cmd`] and [`ssh_cmd`] for
//! the tools `tele`, `beam`, `shell` and `ssh`, which share [`peer`] (joining the DHT), [`pipe`]
//! (splicing a byte stream with a connection) and, for `tele` and `ssh`, [`expose`] (a local
//! service under a key pair, and dialing one)). The commands share
//! helpers through [`store`] and this hub only; none imports another, except that
//! `dht_connect_cmd` takes `dht_cmd`'s network options and `dht_cmd` lists its subcommands, and
//! `relay_cmd` starts its DHT node as `dht_connect_cmd` does.

pub mod args;
pub mod beam_cmd;
pub mod bee_cmd;
pub mod chat_cmd;
pub mod core_cmd;
pub mod corestore_cmd;
pub mod dht_cmd;
pub mod dht_connect_cmd;
pub mod drive_cmd;
pub mod expose;
pub mod input;
pub mod net_cmd;
pub mod peer;
pub mod pipe;
pub mod relay_cmd;
pub mod shell_cmd;
pub mod ssh_cmd;
pub mod store;
pub mod tele_cmd;
pub mod timing;
pub mod udx_cmd;

use std::fmt;

/// Exit status of a failed command (clap's usage errors exit with 2 on their own).
pub const EXIT_ERROR: i32 = 1;
/// Exit status of `verify` finding corruption.
pub const EXIT_CORRUPT: i32 = 3;

/// A command failed: a one-line message and an exit status.
#[derive(Debug)]
pub struct CliError {
    /// One line, no trailing newline.
    pub message: String,
    /// The process exit status.
    pub code: i32,
}

impl CliError {
    /// A general failure (exit status 1).
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: EXIT_ERROR,
        }
    }
    /// Corruption found (exit status 3).
    pub fn corrupt(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: EXIT_CORRUPT,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages from lower layers may span lines; keep the CLI's output to one line.
        let one_line: Vec<&str> = self.message.lines().map(str::trim).collect();
        f.write_str(&one_line.join(" "))
    }
}

/// Parse 64 hex characters into 32 bytes; `what` names the argument in the error.
pub fn parse_hex32(what: &str, s: &str) -> Result<[u8; 32], CliError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out)
        .map_err(|_| CliError::new(format!("{what} must be 64 hex characters (32 bytes)")))?;
    Ok(out)
}

/// Run the parsed command line.
pub fn run(cli: args::Cli) -> Result<(), CliError> {
    match cli.command {
        args::Command::Core(c) => run_core(c),
        args::Command::Udx(c) => udx_cmd::run(c),
        args::Command::Bee(c) => bee_cmd::run(c),
        args::Command::Drive(c) => drive_cmd::run(c),
        args::Command::Chat(c) => chat_cmd::run(c),
        args::Command::Dht(c) => dht_cmd::run(c),
        args::Command::Tele(c) => tele_cmd::run(c),
        args::Command::Beam(a) => beam_cmd::run(a),
        args::Command::Shell(c) => shell_cmd::run(c),
        args::Command::Ssh(a) => ssh_cmd::run(a),
        args::Command::Store(args::StoreCommand::Info { storage, json }) => {
            corestore_cmd::info(&storage.storage, json)
        }
        args::Command::Relay(a) => relay_cmd::run(a),
    }
}

/// Run one `core` subcommand.
fn run_core(cmd: args::CoreCommand) -> Result<(), CliError> {
    use args::CoreCommand as C;
    match cmd {
        C::Create {
            storage,
            seed,
            compat,
            encryption_key,
        } => core_cmd::create(
            &storage.storage,
            seed.as_deref(),
            compat,
            encryption_key.as_deref(),
        ),
        C::Append {
            storage,
            block_size,
            batch,
            files,
        } => core_cmd::append(&storage.storage, block_size, batch, files),
        C::Get { storage, index } => core_cmd::get(&storage.storage, index),
        C::Truncate { storage, length } => core_cmd::truncate(&storage.storage, length),
        C::Info { storage, json } => core_cmd::info(&storage.storage, json),
        C::Verify { storage } => core_cmd::verify(&storage.storage),
        C::Serve(args) => net_cmd::serve(&args),
        C::Fetch(args) => net_cmd::fetch(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex32_parses_and_rejects() {
        assert_eq!(parse_hex32("seed", &"01".repeat(32)).unwrap(), [1u8; 32]);
        assert!(parse_hex32("seed", "01")
            .unwrap_err()
            .message
            .contains("seed"));
        assert!(parse_hex32("seed", &"zz".repeat(32)).is_err());
    }

    #[test]
    fn messages_are_one_line() {
        let e = CliError::new("a\n  b\n");
        assert_eq!(e.to_string(), "a b");
    }
}
