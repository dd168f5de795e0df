//! The `hyperpunch` command-line tool. Run `hyperpunch --help` (and `hyperpunch core --help`).

#[path = "../cli/mod.rs"]
mod cli;

use clap::Parser;

// Both wrapped in `Prefault`, which does nothing until a command enables it (`bee batch`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: hyperpunch::prefault::Prefault<mimalloc::MiMalloc> =
    hyperpunch::prefault::Prefault(mimalloc::MiMalloc);
#[cfg(not(feature = "mimalloc"))]
#[global_allocator]
static ALLOC: hyperpunch::prefault::Prefault<std::alloc::System> =
    hyperpunch::prefault::Prefault(std::alloc::System);

fn main() {
    cli::timing::init();
    let args = cli::args::Cli::parse();
    let result = cli::run(args);
    cli::timing::mark("command done (everything dropped)");
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.code
        }
    };
    exit_now(code);
}

/// End the process with `code` once the command is done and everything it opened is dropped
/// (stores closed and synced): stdout is flushed, then the process exits without running
/// libc's exit handlers. The only one of them with work left is mimalloc's, which hands every
/// page it holds back to the kernel (`madvise`) one range at a time: ~5% of the CPU of a
/// `bee batch` of 100k lines (`perf`, 2026-12-07), for memory the kernel takes back at exit
/// anyway.
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    // As the Rust runtime does at exit: a failure to flush (a closed pipe) changes nothing.
    let _ = std::io::stdout().flush();
    #[cfg(unix)]
    {
        // SAFETY: `_exit` ends the process at once; nothing of this program runs after it, and
        // its open files are closed by the kernel as at any exit (the stores were closed
        // before this point).
        unsafe { libc::_exit(code) }
    }
    #[cfg(not(unix))]
    std::process::exit(code)
}
