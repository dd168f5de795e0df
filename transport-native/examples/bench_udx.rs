//! UDX benchmarks for `just bench` (`bench/run.sh`): [`hyperpunch::udx`] against udx-native
//! (`bench/js/udx.js`, `bench/js/udx-peer.js`) and TCP on loopback (the ceiling).
//!
//! ```sh
//! bench_udx one MIB        # one stream, MIB MiB over loopback, both ends on one thread (udx.js)
//! bench_udx tcp MIB        # the same over tokio TCP on loopback (the ceiling)
//! bench_udx eight MIB      # eight concurrent streams sharing MIB MiB: aggregate and fairness
//! bench_udx split MIB      # one stream, sender and receiver on threads of their own: CPU
//!                          # seconds per GiB sent and per GiB received
//! bench_udx recv TAG LOCAL REMOTE MIB   # one end of a stream in a process of its own (for the
//! bench_udx send LOCAL REMOTE MIB       # network-namespace run): LOCAL/REMOTE are IP:PORT
//! bench_udx relay A_SIDE B_SIDE A B DELAY_MS LOSS_PERMILLE SEED  # user-space delay and loss
//! ```
//!
//! Besides human-readable lines every figure is printed as one `BENCH <name> <value>` line,
//! which `bench/run.sh` parses. CPU seconds come from `/proc` (USER_HZ = 100 ticks).

// The allocator the `hyperpunch` binary uses (feature `mimalloc`, on by default).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperpunch::udx::{UdxEvent, UdxSocket, UdxStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Bytes per write, as udx.js (`Buffer.alloc(65536)`).
const CHUNK: usize = 64 * 1024;
/// Any run longer than this is a hang.
const DEADLINE: Duration = Duration::from_secs(300);

fn report(name: &str, value: f64) {
    println!("BENCH {name} {value:.3}");
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// User + system CPU seconds from a `/proc/.../stat` file (fields 14 and 15).
fn cpu_seconds_of(path: &str) -> Result<f64, Error> {
    let stat = std::fs::read_to_string(path)?;
    let rest = stat.rsplit_once(')').ok_or("malformed stat file")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, Error> {
        Ok(fields.get(i).ok_or("short stat file")?.parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU seconds of this process.
fn cpu_process() -> Result<f64, Error> {
    cpu_seconds_of("/proc/self/stat")
}

/// CPU seconds of the calling thread.
fn cpu_thread() -> Result<f64, Error> {
    cpu_seconds_of("/proc/thread-self/stat")
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn bind_local() -> Result<UdxSocket, Error> {
    Ok(UdxSocket::bind("127.0.0.1:0".parse()?).await?)
}

/// Writes `total` bytes in 64 KiB chunks, ends, and waits until the stream closes.
async fn send_all(mut stream: UdxStream, total: u64) -> Result<(), Error> {
    let chunk = vec![7u8; CHUNK];
    let mut sent = 0u64;
    while sent < total {
        let n = CHUNK.min((total - sent) as usize);
        stream.write_all(&chunk[..n]).await?;
        sent += n as u64;
    }
    stream.end()?;
    drain(&mut stream, true).await
}

/// Waits for the stream to close, ignoring data and ending our side once the peer ended
/// (unless `ended` already); fails on a stream error.
async fn drain(stream: &mut UdxStream, mut ended: bool) -> Result<(), Error> {
    while let Some(event) = stream.next_event().await {
        match event {
            UdxEvent::Closed => return Ok(()),
            UdxEvent::Error(e) => return Err(format!("stream failed: {e}").into()),
            UdxEvent::Ended if !ended => {
                ended = true;
                stream.end()?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Counts received bytes into `got` until `total` arrived; returns when that was (and the time
/// of the first byte), then ends our side and waits for the close.
/// The longest time between two data events of any [`receive_all`] so far, in microseconds (a
/// stall: the worst the application waited for its next bytes).
static LONGEST_GAP_US: AtomicU64 = AtomicU64::new(0);

async fn receive_all(
    mut stream: UdxStream,
    total: u64,
    got: Arc<AtomicU64>,
) -> Result<(Instant, Instant), Error> {
    let mut first = None;
    let mut last: Option<Instant> = None;
    loop {
        match stream.next_event().await {
            Some(UdxEvent::Data(d)) => {
                let now = Instant::now();
                first.get_or_insert(now);
                if let Some(last) = last {
                    let gap = (now - last).as_micros() as u64;
                    LONGEST_GAP_US.fetch_max(gap, Ordering::Relaxed);
                }
                last = Some(now);
                if got.fetch_add(d.len() as u64, Ordering::Relaxed) + d.len() as u64 >= total {
                    break;
                }
            }
            Some(UdxEvent::Error(e)) => return Err(format!("stream failed: {e}").into()),
            Some(UdxEvent::Ended | UdxEvent::Closed) | None => {
                return Err(format!(
                    "the stream ended after {} of {total} bytes",
                    got.load(Ordering::Relaxed)
                )
                .into())
            }
            Some(UdxEvent::Message(_)) => {}
        }
    }
    let done = Instant::now();
    drain(&mut stream, false).await?;
    Ok((first.unwrap_or(done), done))
}

/// `one MIB`: udx.js's work: two sockets on 127.0.0.1, one stream, MIB MiB in 64 KiB writes,
/// timed from before the first write to the last byte received; both ends on this thread.
async fn one(mib: u64) -> Result<(), Error> {
    let total = mib << 20;
    let (a, b) = (bind_local().await?, bind_local().await?);
    let sa = a.connect(1, 2, b.local_addr())?;
    let sb = b.connect(2, 1, a.local_addr())?;
    let cpu0 = cpu_process()?;
    let t = Instant::now();
    let (s, r) = tokio::time::timeout(DEADLINE, async {
        tokio::join!(send_all(sa, total), receive_all(sb, total, Arc::default()))
    })
    .await
    .map_err(|_| "the transfer did not finish in time")?;
    let (_, done) = r?;
    s?;
    let cpu = cpu_process()? - cpu0;
    let elapsed = done - t;
    println!(
        "udx loopback {mib} MiB, one stream: {} ms, {:.0} MB/s, {cpu:.2} CPU s (sender + receiver, one thread)",
        elapsed.as_millis(),
        mb_s(total, elapsed)
    );
    report("udx_one_mb_s", mb_s(total, elapsed));
    report("udx_one_cpu_s_per_gib", cpu / gib(total));
    Ok(())
}

/// `tcp MIB`: the same transfer over a tokio TCP connection on loopback.
async fn tcp(mib: u64) -> Result<(), Error> {
    let total = mib << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cpu0 = cpu_process()?;
    let t = Instant::now();
    let send = async {
        let mut c = TcpStream::connect(addr).await?;
        let chunk = vec![7u8; CHUNK];
        let mut sent = 0u64;
        while sent < total {
            let n = CHUNK.min((total - sent) as usize);
            c.write_all(&chunk[..n]).await?;
            sent += n as u64;
        }
        c.shutdown().await?;
        Ok::<_, Error>(())
    };
    let recv = async {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        while got < total {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Err::<Instant, Error>("TCP connection closed early".into());
            }
            got += n as u64;
        }
        Ok(Instant::now())
    };
    let (s, r) = tokio::time::timeout(DEADLINE, async { tokio::join!(send, recv) })
        .await
        .map_err(|_| "the transfer did not finish in time")?;
    s?;
    let elapsed = r? - t;
    let cpu = cpu_process()? - cpu0;
    println!(
        "tcp loopback {mib} MiB: {} ms, {:.0} MB/s, {cpu:.2} CPU s",
        elapsed.as_millis(),
        mb_s(total, elapsed)
    );
    report("tcp_mb_s", mb_s(total, elapsed));
    report("tcp_cpu_s_per_gib", cpu / gib(total));
    Ok(())
}

/// `eight MIB`: eight streams between the same two sockets, MIB/8 MiB each, all started at
/// once. Aggregate = all bytes / time to the last byte. Fairness: Jain's index of the bytes each
/// stream had received when the first one finished (1 = equal shares, 1/8 = one stream only),
/// and the first and last completion times.
async fn eight(mib: u64) -> Result<(), Error> {
    const N: u32 = 8;
    let per = (mib << 20) / u64::from(N);
    let total = per * u64::from(N);
    let (a, b) = (bind_local().await?, bind_local().await?);
    let counters: Vec<Arc<AtomicU64>> = (0..N).map(|_| Arc::default()).collect();
    let first_done = Arc::new(AtomicBool::new(false));
    let snapshot: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    let cpu0 = cpu_process()?;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..N {
        let sa = a.connect(1 + i, 101 + i, b.local_addr())?;
        let sb = b.connect(101 + i, 1 + i, a.local_addr())?;
        tasks.push(tokio::spawn(async move {
            send_all(sa, per).await.map(|()| None)
        }));
        let (got, counters) = (counters[i as usize].clone(), counters.clone());
        let (first_done, snapshot) = (first_done.clone(), snapshot.clone());
        tasks.push(tokio::spawn(async move {
            let (_, done) = receive_all(sb, per, got).await?;
            if !first_done.swap(true, Ordering::Relaxed) {
                let shares = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
                *snapshot.lock().map_err(|_| "poisoned")? = shares;
            }
            Ok::<_, Error>(Some(done))
        }));
    }
    let mut finished = Vec::new();
    for task in tasks {
        let r = tokio::time::timeout(DEADLINE, task)
            .await
            .map_err(|_| "the transfers did not finish in time")??;
        if let Some(done) = r? {
            finished.push(done - t);
        }
    }
    let cpu = cpu_process()? - cpu0;
    finished.sort();
    let (first, last) = (finished[0], finished[finished.len() - 1]);
    let shares: Vec<f64> = snapshot
        .lock()
        .map_err(|_| "poisoned")?
        .iter()
        .map(|&x| x as f64)
        .collect();
    let sum: f64 = shares.iter().sum();
    let sq: f64 = shares.iter().map(|x| x * x).sum();
    let jain = sum * sum / (shares.len() as f64 * sq);
    println!(
        "udx loopback, {N} streams x {} MiB: {} ms, aggregate {:.0} MB/s, {cpu:.2} CPU s; \
         first stream done at {} ms, last at {} ms; Jain's fairness index at the first finish {jain:.3}",
        per >> 20,
        last.as_millis(),
        mb_s(total, last),
        first.as_millis(),
        last.as_millis()
    );
    report("udx_eight_mb_s", mb_s(total, last));
    report("udx_eight_jain", jain);
    report("udx_eight_first_ms", first.as_secs_f64() * 1e3);
    report("udx_eight_last_ms", last.as_secs_f64() * 1e3);
    report("udx_eight_cpu_s_per_gib", cpu / gib(total));
    Ok(())
}

/// `split MIB`: one stream with the sender and the receiver each on a thread (and runtime) of
/// its own, so each side's CPU time is its own thread's.
fn split(mib: u64) -> Result<(), Error> {
    let total = mib << 20;
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let (back_tx, back_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let receiver = std::thread::spawn(move || -> Result<(f64, Duration), Error> {
        runtime()?.block_on(async move {
            let b = bind_local().await?;
            addr_tx.send(b.local_addr())?;
            let a_addr = back_rx.recv()?;
            let sb = b.connect(2, 1, a_addr)?;
            let cpu0 = cpu_thread()?;
            let (first, done) =
                tokio::time::timeout(DEADLINE, receive_all(sb, total, Arc::default()))
                    .await
                    .map_err(|_| "the transfer did not finish in time")??;
            Ok((cpu_thread()? - cpu0, done - first))
        })
    });
    let sender = std::thread::spawn(move || -> Result<f64, Error> {
        runtime()?.block_on(async move {
            let a = bind_local().await?;
            back_tx.send(a.local_addr())?;
            let b_addr = addr_rx.recv()?;
            let sa = a.connect(1, 2, b_addr)?;
            let cpu0 = cpu_thread()?;
            tokio::time::timeout(DEADLINE, send_all(sa, total))
                .await
                .map_err(|_| "the transfer did not finish in time")??;
            cpu_thread().map(|c| c - cpu0)
        })
    });
    let send_cpu = sender.join().map_err(|_| "sender thread panicked")??;
    let (recv_cpu, elapsed) = receiver.join().map_err(|_| "receiver thread panicked")??;
    println!(
        "udx loopback {mib} MiB, sender and receiver on two threads: {:.0} MB/s (first to last byte); \
         {:.2} CPU s per GiB sent, {:.2} per GiB received",
        mb_s(total, elapsed),
        send_cpu / gib(total),
        recv_cpu / gib(total)
    );
    report("udx_split_mb_s", mb_s(total, elapsed));
    report("udx_send_cpu_s_per_gib", send_cpu / gib(total));
    report("udx_recv_cpu_s_per_gib", recv_cpu / gib(total));
    Ok(())
}

/// `recv TAG LOCAL REMOTE MIB`: receive MIB MiB on stream 2 (peer stream 1) at LOCAL from
/// REMOTE; throughput from the first to the last byte.
async fn recv(tag: &str, local: SocketAddr, remote: SocketAddr, mib: u64) -> Result<(), Error> {
    let total = mib << 20;
    let socket = UdxSocket::bind(local).await?;
    let stream = socket.connect(2, 1, remote)?;
    println!("ready");
    let cpu0 = cpu_process()?;
    let (first, done) = tokio::time::timeout(DEADLINE, receive_all(stream, total, Arc::default()))
        .await
        .map_err(|_| "the transfer did not finish in time")??;
    let cpu = cpu_process()? - cpu0;
    let elapsed = done - first;
    println!(
        "received {mib} MiB: {} ms, {:.1} MB/s, {cpu:.2} CPU s",
        elapsed.as_millis(),
        mb_s(total, elapsed)
    );
    report(&format!("{tag}_mb_s"), mb_s(total, elapsed));
    report(
        &format!("{tag}_longest_stall_ms"),
        LONGEST_GAP_US.load(Ordering::Relaxed) as f64 / 1000.0,
    );
    Ok(())
}

/// `send LOCAL REMOTE MIB`: send MIB MiB on stream 1 (peer stream 2) from LOCAL to REMOTE.
async fn send(local: SocketAddr, remote: SocketAddr, mib: u64) -> Result<(), Error> {
    let socket = UdxSocket::bind(local).await?;
    let stream = socket.connect(1, 2, remote)?;
    tokio::time::timeout(DEADLINE, send_all(stream, mib << 20))
        .await
        .map_err(|_| "the transfer did not finish in time")?
}

/// splitmix64: the relay's seeded loss decisions.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `relay A_SIDE B_SIDE A B DELAY_MS LOSS_PERMILLE SEED`: a user-space stand-in for netem when
/// the kernel has none. Datagrams from A arriving at A_SIDE leave from B_SIDE to B and the other
/// way round, each one `DELAY_MS` later, and `LOSS_PERMILLE`/1000 of them (seeded) are dropped,
/// independently in each direction. Runs until killed.
async fn relay(
    a_side: SocketAddr,
    b_side: SocketAddr,
    a: SocketAddr,
    b: SocketAddr,
    delay: Duration,
    loss_permille: u64,
    seed: u64,
) -> Result<(), Error> {
    use std::collections::VecDeque;
    use tokio::net::UdpSocket;
    let (sa, sb) = (
        UdpSocket::bind(a_side).await?,
        UdpSocket::bind(b_side).await?,
    );
    let mut rng = Rng(seed);
    // Queued datagrams per direction: (due, bytes); a constant delay keeps them in order.
    let (mut to_b, mut to_a): (VecDeque<_>, VecDeque<_>) = (VecDeque::new(), VecDeque::new());
    let (mut buf_a, mut buf_b) = (vec![0u8; 65536], vec![0u8; 65536]);
    println!("relaying");
    loop {
        let due = [to_b.front(), to_a.front()]
            .into_iter()
            .flatten()
            .map(|(t, _): &(tokio::time::Instant, Vec<u8>)| *t)
            .min();
        tokio::select! {
            r = sa.recv_from(&mut buf_a) => {
                let (n, from) = r?;
                if from == a && rng.next() % 1000 >= loss_permille {
                    to_b.push_back((tokio::time::Instant::now() + delay, buf_a[..n].to_vec()));
                }
            }
            r = sb.recv_from(&mut buf_b) => {
                let (n, from) = r?;
                if from == b && rng.next() % 1000 >= loss_permille {
                    to_a.push_back((tokio::time::Instant::now() + delay, buf_b[..n].to_vec()));
                }
            }
            () = async {
                match due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = tokio::time::Instant::now();
                while to_b.front().is_some_and(|(t, _)| *t <= now) {
                    if let Some((_, d)) = to_b.pop_front() {
                        // A full socket buffer is one more lost datagram, as on a real link.
                        let _ = sb.send_to(&d, b).await;
                    }
                }
                while to_a.front().is_some_and(|(t, _)| *t <= now) {
                    if let Some((_, d)) = to_a.pop_front() {
                        let _ = sa.send_to(&d, a).await;
                    }
                }
            }
        }
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["one", mib] => runtime()?.block_on(one(mib.parse()?)),
        ["tcp", mib] => runtime()?.block_on(tcp(mib.parse()?)),
        ["eight", mib] => runtime()?.block_on(eight(mib.parse()?)),
        ["split", mib] => split(mib.parse()?),
        ["recv", tag, local, remote, mib] => {
            runtime()?.block_on(recv(tag, local.parse()?, remote.parse()?, mib.parse()?))
        }
        ["send", local, remote, mib] => {
            runtime()?.block_on(send(local.parse()?, remote.parse()?, mib.parse()?))
        }
        ["relay", a_side, b_side, pa, pb, delay_ms, loss, seed] => runtime()?.block_on(relay(
            a_side.parse()?,
            b_side.parse()?,
            pa.parse()?,
            pb.parse()?,
            Duration::from_millis(delay_ms.parse()?),
            loss.parse()?,
            seed.parse()?,
        )),
        _ => Err(
            "usage: bench_udx one MIB | tcp MIB | eight MIB | split MIB | \
                  recv TAG LOCAL REMOTE MIB | send LOCAL REMOTE MIB | \
                  relay A_SIDE B_SIDE A B DELAY_MS LOSS_PERMILLE SEED"
                .into(),
        ),
    }
}
