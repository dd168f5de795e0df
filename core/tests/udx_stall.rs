//! Stalls under loss: one UDX stream (two sans-IO [`Stream`] engines) moves a bulk transfer over
//! a seeded virtual path shaped like the lossy relay benchmark (`bench_udx relay`: 10 ms each
//! way, random loss each way, data and acks alike, some reordering, a rate-limited bottleneck
//! with a finite queue, timers on whole milliseconds as tokio's), over many seeds, on virtual
//! time. The longest stall is the longest virtual time during which the receiver got no new
//! in-order byte while the transfer was under way; the tests bound it per seed, so a stall
//! that needs a rare combination of losses shows up here with its seed instead of as a
//! multi-second pause in a benchmark.
//!
//! `UDX_STALL_SEEDS=N` runs N seeds per path instead of the default; `UDX_STALL_REPORT=1`
//! prints every seed's figures.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use hyperpunch_core::udx::{Config, Event, Stream};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn below(&mut self, d: Duration) -> Duration {
        if d.is_zero() {
            return d;
        }
        Duration::from_nanos(self.next() % d.as_nanos() as u64)
    }
}

#[derive(Clone, Copy, Debug)]
struct Path {
    delay: Duration,
    loss: f64,
    /// Chance that a datagram is held back by up to one extra delay.
    reorder: f64,
    /// Bottleneck in bits per second (28 bytes of IP+UDP counted per datagram).
    rate_bps: u64,
    /// Bytes the bottleneck queue holds before it drops.
    queue_bytes: u64,
    /// The receiving application takes data at this many bytes per second at most (a process
    /// slower than the path); `None`: at once.
    reader_bps: Option<u64>,
    /// The receive window (bytes).
    recv_window: u32,
    /// Drop every HEARTBEAT of the sender (its zero-window probes), so that the receiver alone
    /// must recover from a lost window update (as with a sender that probes late).
    mute_probes: bool,
}

/// What one run measured.
#[derive(Debug)]
struct Run {
    seed: u64,
    /// Virtual time from the first write to the last byte received.
    elapsed: Duration,
    /// The longest time without a new in-order byte at the receiver, and when it began.
    longest_stall: Duration,
    stall_at: Duration,
    /// Data packets sent (first transmissions and retransmissions) per packet's worth of data.
    sent: u64,
    retransmits: u64,
}

const TICK: Duration = Duration::from_millis(1);

/// A datagram on the wire: (arrival, tiebreak, destination, bytes).
type InFlight = (Duration, u64, usize, Vec<u8>);

/// Moves `size` bytes from endpoint 0 to endpoint 1 over `path` (both directions alike).
fn transfer(seed: u64, path: Path, size: usize) -> Run {
    let mut rng = Rng(seed);
    let mut eps = [
        Stream::new(
            1,
            2,
            Duration::ZERO,
            Config {
                seed: seed as u32,
                recv_window: path.recv_window,
                ..Config::default()
            },
        ),
        Stream::new(
            2,
            1,
            Duration::ZERO,
            Config {
                recv_window: path.recv_window,
                ..Config::default()
            },
        ),
    ];
    // The reader may take its next event once `now` reaches this.
    let mut reader_ready = Duration::ZERO;
    let mut wire: BinaryHeap<Reverse<InFlight>> = BinaryHeap::new();
    let mut busy_until = [Duration::ZERO; 2];
    let mut counter = 0u64;
    let mut now = Duration::ZERO;
    let chunk = vec![0x5a; 256 * 1024];
    let mut written = 0usize;
    let mut received = 0usize;
    let mut last_progress = Duration::ZERO;
    let mut longest_stall = Duration::ZERO;
    let mut stall_at = Duration::ZERO;
    let mut sent = 0u64;
    let mut highest_sent: Option<u32> = None;
    let mut retransmits = 0u64;
    let deadline = Duration::from_secs(600);
    loop {
        // The application keeps 1 MiB queued, as the driver's write high-water mark does.
        while written < size && eps[0].send_buffered() < 1 << 20 {
            let n = chunk.len().min(size - written);
            eps[0].write(&chunk[..n]).unwrap();
            written += n;
        }
        if written == size {
            let _ = eps[0].end();
        }
        for (side, ep) in eps.iter_mut().enumerate() {
            while side == 0 || now >= reader_ready {
                let Some(event) = ep.poll_event() else { break };
                match event {
                    Event::Data(d) if side == 1 => {
                        received += d.len();
                        if let Some(rate) = path.reader_bps {
                            reader_ready = Duration::from_nanos(
                                (received as u128 * 1_000_000_000 / u128::from(rate)) as u64,
                            );
                        }
                        let gap = now - last_progress;
                        if gap > longest_stall {
                            longest_stall = gap;
                            stall_at = last_progress;
                        }
                        last_progress = now;
                    }
                    Event::Error(e) => panic!("seed {seed}: side {side} failed: {e:?}"),
                    _ => {}
                }
            }
            while let Some(d) = ep.poll_transmit(now) {
                if side == 0 && d.len() > 20 {
                    // DATA: a sequence number not above the highest sent is a retransmission.
                    let seq = u32::from_le_bytes(d[12..16].try_into().unwrap());
                    sent += 1;
                    if highest_sent.is_some_and(|h| seq.wrapping_sub(h) as i32 <= 0) {
                        retransmits += 1;
                    } else {
                        highest_sent = Some(seq);
                    }
                }
                if rng.chance(path.loss) {
                    continue;
                }
                if side == 0 && path.mute_probes && d[2] & 32 != 0 {
                    continue;
                }
                let start = busy_until[side].max(now);
                let queued = (start - now).as_secs_f64() * path.rate_bps as f64 / 8.0;
                if queued > path.queue_bytes as f64 {
                    continue; // tail drop
                }
                let bits = (d.len() as u64 + 28) * 8;
                let depart = start + Duration::from_nanos(bits * 1_000_000_000 / path.rate_bps);
                busy_until[side] = depart;
                let mut at = depart + path.delay;
                if rng.chance(path.reorder) {
                    at += rng.below(path.delay);
                }
                counter += 1;
                wire.push(Reverse((at, counter, 1 - side, d)));
            }
        }
        if received == size {
            break;
        }
        let tick = |t: Duration| {
            if t > now {
                let g = TICK.as_nanos();
                Duration::from_nanos((t.as_nanos().div_ceil(g) * g) as u64)
            } else {
                t
            }
        };
        let next = [
            wire.peek().map(|r| r.0 .0),
            eps[0].poll_timeout().map(tick),
            eps[1].poll_timeout().map(tick),
            (reader_ready > now).then_some(reader_ready),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| {
            panic!(
                "seed {seed}: nothing left to do at {now:?}, {received} of {size} bytes received"
            )
        });
        now = now.max(next);
        assert!(
            now < deadline,
            "seed {seed}: {received} of {size} bytes after {deadline:?}"
        );
        while wire.peek().is_some_and(|r| r.0 .0 <= now) {
            let Reverse((_, _, to, d)) = wire.pop().unwrap();
            eps[to].handle_datagram(now, &d).unwrap();
        }
        for ep in eps.iter_mut() {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
        }
    }
    Run {
        seed,
        elapsed: now,
        longest_stall,
        stall_at,
        sent,
        retransmits,
    }
}

fn seeds(default: u64) -> u64 {
    std::env::var("UDX_STALL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs `n` seeds over `path` and returns the runs, worst stall first.
fn sweep(path: Path, size: usize, n: u64, first_seed: u64) -> Vec<Run> {
    let mut runs: Vec<Run> = (first_seed..first_seed + n)
        .map(|seed| transfer(seed, path, size))
        .collect();
    if std::env::var("UDX_STALL_REPORT").is_ok() {
        for r in &runs {
            eprintln!("{r:?}");
        }
    }
    runs.sort_by_key(|r| Reverse(r.longest_stall));
    let worst = &runs[0];
    let total_sent: u64 = runs.iter().map(|r| r.sent).sum();
    let total_retx: u64 = runs.iter().map(|r| r.retransmits).sum();
    let mut elapsed: Vec<Duration> = runs.iter().map(|r| r.elapsed).collect();
    elapsed.sort();
    eprintln!(
        "{path:?}: {n} seeds × {size} bytes: longest stall {:?} (seed {}, at {:?}), median \
         transfer {:?}, slowest {:?}, retransmitted {:.2}% of data packets",
        worst.longest_stall,
        worst.seed,
        worst.stall_at,
        elapsed[elapsed.len() / 2],
        elapsed[elapsed.len() - 1],
        100.0 * total_retx as f64 / total_sent as f64,
    );
    runs
}

/// The relay benchmark's path: 20 ms RTT, 1% loss each way, a 400 Mbit/s bottleneck with one
/// bandwidth-delay product of queue. A single loss costs about one RTT (RACK repairs it when
/// a later packet is acknowledged); even a lost retransmission or a lost tail is repaired by
/// the tail-loss probe within a few RTTs, never by a backed-off retransmission timeout.
#[test]
fn one_percent_loss_never_stalls_long() {
    let path = Path {
        delay: Duration::from_millis(10),
        loss: 0.01,
        reorder: 0.0,
        rate_bps: 400_000_000,
        queue_bytes: 400_000_000 / 8 / 50,
        reader_bps: None,
        recv_window: Config::default().recv_window,
        mute_probes: false,
    };
    let runs = sweep(path, 4 << 20, seeds(40), 0);
    let worst = &runs[0];
    assert!(
        worst.longest_stall <= Duration::from_millis(300),
        "seed {}: no progress for {:?} from {:?}",
        worst.seed,
        worst.longest_stall,
        worst.stall_at
    );
}

/// The same with reordering (2% of datagrams held back by up to 10 ms) and 5% loss.
#[test]
fn five_percent_loss_with_reordering_never_stalls_long() {
    let path = Path {
        delay: Duration::from_millis(10),
        loss: 0.05,
        reorder: 0.02,
        rate_bps: 400_000_000,
        queue_bytes: 400_000_000 / 8 / 50,
        reader_bps: None,
        recv_window: Config::default().recv_window,
        mute_probes: false,
    };
    let runs = sweep(path, 1 << 20, seeds(40), 10_000);
    let worst = &runs[0];
    assert!(
        worst.longest_stall <= Duration::from_millis(600),
        "seed {}: no progress for {:?} from {:?}",
        worst.seed,
        worst.longest_stall,
        worst.stall_at
    );
}

/// A reader slower than the path (10 MB/s on a 400 Mbit/s path, as a receiving process busier
/// than its sender) with a 512 KiB window: the window closes and reopens over and over, and 1%
/// of the window updates are lost with everything else. A lost update must not leave the
/// sender waiting for its zero-window probe: before, the probe came one RTO (a second at
/// least) later, and 40 seeds stalled up to 971 ms (seed 20025). Now the sender probes after
/// two RTTs, and the receiver repeats its update until data comes, which covers a sender
/// that probes late (libudx; the run with the sender's probes dropped).
#[test]
fn slow_reader_with_loss_never_stalls_long() {
    let path = Path {
        delay: Duration::from_millis(10),
        loss: 0.01,
        reorder: 0.0,
        rate_bps: 400_000_000,
        queue_bytes: 400_000_000 / 8 / 50,
        reader_bps: Some(10_000_000),
        recv_window: 512 * 1024,
        mute_probes: false,
    };
    for mute_probes in [false, true] {
        let path = Path {
            mute_probes,
            ..path
        };
        let runs = sweep(path, 4 << 20, seeds(40), 20_000);
        let worst = &runs[0];
        assert!(
            worst.longest_stall <= Duration::from_millis(300),
            "seed {} (probes muted: {mute_probes}): no progress for {:?} from {:?}",
            worst.seed,
            worst.longest_stall,
            worst.stall_at
        );
    }
}
