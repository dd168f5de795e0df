//! `HYPERPUNCH_TIMING=1`: phase timings of a whole CLI run on stderr, to see where a process
//! spends its time (process start, storage open, connecting, the transfer, closing, the final
//! sync, exit).
//!
//! Each [`mark`] prints `timing: PHASE +MS ms (at MS ms)`: the time since the previous mark and
//! since the process started (as the kernel recorded it, so the dynamic loader and everything
//! before `main` count too). Without the variable nothing is printed and a mark costs one
//! relaxed load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The environment variable that turns the timings on (any value but `0` or empty).
pub const TIMING_ENV: &str = "HYPERPUNCH_TIMING";

static ENABLED: AtomicBool = AtomicBool::new(false);
/// (the process start, the last mark)
static MARKS: Mutex<Option<(Instant, Instant)>> = Mutex::new(None);

/// Read [`TIMING_ENV`]; call once, first thing in `main`.
pub fn init() {
    let on = std::env::var_os(TIMING_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    if !on {
        return;
    }
    let now = Instant::now();
    let start = now
        .checked_sub(since_process_start().unwrap_or_default())
        .unwrap_or(now);
    *MARKS.lock().unwrap_or_else(|p| p.into_inner()) = Some((start, start));
    ENABLED.store(true, Ordering::Relaxed);
    mark("main");
}

/// Whether timings are printed.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The end of phase `phase`: print how long it took.
pub fn mark(phase: &str) {
    if !enabled() {
        return;
    }
    let now = Instant::now();
    let mut g = MARKS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((start, last)) = g.as_mut() {
        eprintln!(
            "timing: {phase} +{:.1} ms (at {:.1} ms){}",
            ms(now - *last),
            ms(now - *start),
            resident().map_or(String::new(), |mb| format!(", {mb:.1} MB resident"))
        );
        *last = now;
    }
}

/// The process's resident memory in MB (Linux `/proc/self/statm`), which each new page it
/// touches grows: page faults are a large part of a big batch's CPU.
#[cfg(target_os = "linux")]
fn resident() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * hyperpunch::prefault::page_size() as f64 / 1e6)
}

#[cfg(not(target_os = "linux"))]
fn resident() -> Option<f64> {
    None
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How long ago the kernel started this process (Linux: field 22 of `/proc/self/stat`, in clock
/// ticks since boot, against the uptime); `None` elsewhere.
fn since_process_start() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let start_ticks: f64 = rest.split(' ').nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    // USER_HZ is 100 on every Linux ABI the binary runs on.
    let started = start_ticks / 100.0;
    Some(Duration::from_secs_f64((uptime - started).max(0.0)))
}
