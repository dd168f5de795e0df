//! The `hyperpunch` command-line tool. Run `hyperpunch --help` (and `hyperpunch core --help`).

#[path = "../cli/mod.rs"]
mod cli;

use clap::Parser;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    cli::timing::init();
    let args = cli::args::Cli::parse();
    let result = cli::run(args);
    cli::timing::mark("command done (everything dropped)");
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(e.code);
    }
}
