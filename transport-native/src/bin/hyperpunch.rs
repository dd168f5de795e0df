//! The `hyperpunch` command-line tool. Run `hyperpunch --help` (and `hyperpunch core --help`).

#[path = "../cli/mod.rs"]
mod cli;

use clap::Parser;

fn main() {
    let args = cli::args::Cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("error: {e}");
        std::process::exit(e.code);
    }
}
