//! The `hyperpunch` command-line tool. Run `hyperpunch --help` (and `hyperpunch core --help`).

#[path = "../cli/mod.rs"]
mod cli;

use clap::Parser;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = cli::args::Cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("error: {e}");
        std::process::exit(e.code);
    }
}
