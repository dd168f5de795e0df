//! `hyperpunch udx cat` (a netcat over UDX) and `hyperpunch udx perf` (throughput, retransmits
//! and RTT of one transfer), on [`hyperpunch::udx`] and a single-threaded tokio runtime.

use super::args::{UdxCommand, UdxEndpoint};
use super::CliError;
use hyperpunch::udx::{SocketOptions, StreamStats, UdxSocket, UdxStream};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Bytes `perf --loopback` sends without `--send`.
const LOOPBACK_DEFAULT: u64 = 64 << 20;
/// Bytes per write while sending.
const CHUNK: usize = 64 * 1024;
const MIB: f64 = (1u64 << 20) as f64;
/// Chunks queued between `cat`'s stdin/stdout threads and the stream.
const STDIO_QUEUE: usize = 16;

/// Run a `hyperpunch udx` command.
pub fn run(c: UdxCommand) -> Result<(), CliError> {
    match c {
        UdxCommand::Cat {
            endpoint,
            no_batch,
            stats,
        } => cat(&endpoint, options(no_batch), stats),
        UdxCommand::Perf {
            bind,
            connect,
            id,
            remote_id,
            send,
            loopback,
            no_batch,
            json,
        } => {
            let size = send.as_deref().map(parse_size).transpose()?;
            let options = options(no_batch);
            if loopback {
                return perf_loopback(size.unwrap_or(LOOPBACK_DEFAULT), options, json);
            }
            // clap requires both unless --loopback.
            let (Some(bind), Some(connect)) = (bind, connect) else {
                return Err(CliError::new("--bind and --connect are required"));
            };
            let endpoint = UdxEndpoint {
                bind,
                connect,
                id,
                remote_id,
            };
            perf(&endpoint, size, options, json)
        }
    }
}

fn options(no_batch: bool) -> SocketOptions {
    SocketOptions { batched: !no_batch }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))
}

/// Runs `work`, then stops the runtime without waiting for a blocked stdin read.
fn block_on<F: std::future::Future<Output = Result<(), CliError>>>(
    work: F,
) -> Result<(), CliError> {
    let rt = runtime()?;
    let result = rt.block_on(work);
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

fn resolve(flag: &str, s: &str) -> Result<SocketAddr, CliError> {
    s.to_socket_addrs()
        .map_err(|e| CliError::new(format!("{flag} {s}: not a HOST:PORT address ({e})")))?
        .next()
        .ok_or_else(|| CliError::new(format!("{flag} {s}: the name has no address")))
}

/// Parses a byte count: a number with an optional K/KiB, M/MiB or G/GiB suffix.
pub fn parse_size(s: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::new(format!(
            "bad size {s:?}: use a number of bytes, optionally with K/KiB, M/MiB or G/GiB"
        ))
    };
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift).ok_or_else(bad)
}

async fn open(
    endpoint: &UdxEndpoint,
    options: SocketOptions,
    what: &str,
) -> Result<(UdxSocket, UdxStream), CliError> {
    let bind = resolve("--bind", &endpoint.bind)?;
    let connect = resolve("--connect", &endpoint.connect)?;
    let socket = UdxSocket::bind_with(bind, options)
        .await
        .map_err(|e| CliError::new(format!("cannot bind {bind}: {e}")))?;
    eprintln!(
        "udx {what}: bound to {}, stream {} to {} at {connect}",
        socket.local_addr(),
        endpoint.id,
        endpoint.remote_id
    );
    let stream = socket
        .connect(endpoint.id, endpoint.remote_id, connect)
        .map_err(|e| CliError::new(format!("cannot open stream {}: {e}", endpoint.id)))?;
    Ok((socket, stream))
}

fn stream_err(what: &str) -> impl Fn(io::Error) -> CliError + '_ {
    move |e| CliError::new(format!("{what}: {e}"))
}

/// `udx cat`: stdin to the stream, the stream to stdout, until both sides ended.
///
/// stdin and stdout are read and written on threads of their own (blocking, as the terminal
/// or pipe is), so the runtime's thread only drives UDX. Every byte the stream delivered is
/// written to stdout and flushed before `cat` reports a failure (a reset, a timeout): what was
/// acknowledged reaches the reader even when a reset follows.
fn cat(endpoint: &UdxEndpoint, options: SocketOptions, stats: bool) -> Result<(), CliError> {
    block_on(async {
        let (_socket, stream) = open(endpoint, options, "cat").await?;
        let (mut from_peer, mut to_peer) = tokio::io::split(stream);
        // Fails with whether the stream failed (rather than stdin).
        let up = async {
            let mut stdin = stdin_chunks();
            while let Some(chunk) = stdin.recv().await {
                let chunk = chunk.map_err(|e| (false, stream_err("reading stdin")(e)))?;
                to_peer
                    .write_all(&chunk)
                    .await
                    .map_err(|e| (true, stream_err("sending stdin")(e)))?;
            }
            to_peer
                .shutdown()
                .await
                .map_err(|e| (true, stream_err("ending")(e)))
        };
        let down = async {
            let (stdout, written) = stdout_writer();
            let mut buf = vec![0u8; CHUNK];
            let received = loop {
                match from_peer.read(&mut buf).await {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        if stdout.send(buf[..n].to_vec()).await.is_err() {
                            // The writer stopped: its error is reported below.
                            break Ok(());
                        }
                    }
                    Err(e) => break Err(e),
                }
            };
            // Everything received goes out before any failure is reported.
            drop(stdout);
            let wrote = written
                .await
                .unwrap_or_else(|_| Err(io::Error::other("the stdout writer stopped")));
            wrote.map_err(stream_err("writing stdout"))?;
            received.map_err(stream_err("receiving"))
        };
        {
            tokio::pin!(up, down);
            tokio::select! {
                received = &mut down => {
                    // The peer ended (stdin may still have more to send), or the stream failed.
                    received?;
                    up.await.map_err(|(_, e)| e)?;
                }
                sent = &mut up => match sent {
                    Ok(()) => down.await?,
                    Err((false, e)) => return Err(e),
                    Err((true, e)) => {
                        // Writes fail once the stream has failed; the reading side knows why,
                        // and writes out what it received first.
                        return Err(down.await.err().unwrap_or(e));
                    }
                },
            }
        }
        // Both sides ended; exit once everything we sent is acknowledged.
        let mut stream = from_peer.unsplit(to_peer);
        let counters = if stats {
            stream.stats().await.ok()
        } else {
            None
        };
        stream.closed().await.map_err(stream_err("closing"))?;
        if let Some(s) = counters {
            let pct = if s.packets_sent > 0 {
                s.retransmits as f64 * 100.0 / s.packets_sent as f64
            } else {
                0.0
            };
            let rtt = s
                .rtt
                .map(|r| format!("{:.1} ms", r.as_secs_f64() * 1000.0))
                .unwrap_or_else(|| "unknown".into());
            eprintln!(
                "udx cat: {} packets sent, {} retransmits ({pct:.3}%), rtt {rtt}",
                s.packets_sent, s.retransmits
            );
        }
        Ok(())
    })
}

/// Reads stdin on a thread of its own, in chunks of up to [`CHUNK`] bytes, until EOF (the
/// channel closes) or an error (the last item).
fn stdin_chunks() -> mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(STDIO_QUEUE);
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        loop {
            let mut buf = vec![0u8; CHUNK];
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

/// Writes what it is sent to stdout on a thread of its own; once the sender is dropped it
/// flushes and reports how that went.
fn stdout_writer() -> (mpsc::Sender<Vec<u8>>, oneshot::Receiver<io::Result<()>>) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(STDIO_QUEUE);
    let (done, written) = oneshot::channel();
    std::thread::spawn(move || {
        let mut stdout = io::stdout().lock();
        let mut result = Ok(());
        while let Some(chunk) = rx.blocking_recv() {
            if let Err(e) = stdout.write_all(&chunk) {
                result = Err(e);
                break;
            }
        }
        let _ = done.send(result.and_then(|()| stdout.flush()));
    });
    (tx, written)
}

/// What one end of a `perf` transfer measured.
struct Report {
    sent: bool,
    bytes: u64,
    elapsed: Duration,
    stats: StreamStats,
}

impl Report {
    fn print(&self, json: bool) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let rate = self.bytes as f64 / MIB / secs;
        let rtt_ms = self.stats.rtt.map(|r| r.as_secs_f64() * 1000.0);
        if json {
            let v = serde_json::json!({
                "role": if self.sent { "send" } else { "recv" },
                "bytes": self.bytes,
                "seconds": secs,
                "mibPerSec": rate,
                "packets": self.stats.packets_sent,
                "retransmits": self.stats.retransmits,
                "rttMs": rtt_ms,
                "cwnd": self.stats.cwnd,
            });
            println!("{v}");
        } else {
            println!(
                "{} {:.1} MiB in {secs:.2} s: {rate:.1} MiB/s; {} packets sent, {} retransmits, rtt {}",
                if self.sent { "sent" } else { "received" },
                self.bytes as f64 / MIB,
                self.stats.packets_sent,
                self.stats.retransmits,
                rtt_ms.map_or("unmeasured".to_string(), |ms| format!("{ms:.2} ms")),
            );
        }
    }
}

/// Writes `size` bytes, ends, and waits until the peer ended too and everything was acked.
async fn send_side(stream: &mut UdxStream, size: u64) -> io::Result<Report> {
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 7 + i / 1024) as u8).collect();
    let start = Instant::now();
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        stream.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    stream.shutdown().await?;
    stream.closed().await?;
    let elapsed = start.elapsed();
    Ok(Report {
        sent: true,
        bytes: size,
        elapsed,
        stats: stream.stats().await?,
    })
}

/// Reads until the peer ends, ends too, and waits for the close.
async fn recv_side(stream: &mut UdxStream) -> io::Result<Report> {
    let mut buf = vec![0u8; CHUNK];
    let (mut bytes, mut start) = (0u64, None);
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        start.get_or_insert_with(Instant::now);
        bytes += n as u64;
    }
    let elapsed = start.map_or(Duration::ZERO, |s| s.elapsed());
    stream.shutdown().await?;
    let stats = stream.stats().await?;
    stream.closed().await?;
    Ok(Report {
        sent: false,
        bytes,
        elapsed,
        stats,
    })
}

/// `udx perf` with a remote peer: send `size` bytes, or receive without it.
fn perf(
    endpoint: &UdxEndpoint,
    size: Option<u64>,
    options: SocketOptions,
    json: bool,
) -> Result<(), CliError> {
    block_on(async {
        let (_socket, mut stream) = open(endpoint, options, "perf").await?;
        let report = match size {
            Some(size) => send_side(&mut stream, size).await,
            None => recv_side(&mut stream).await,
        }
        .map_err(stream_err("transfer failed"))?;
        report.print(json);
        Ok(())
    })
}

/// `udx perf --loopback`: both ends in this process.
fn perf_loopback(size: u64, options: SocketOptions, json: bool) -> Result<(), CliError> {
    block_on(async {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let bind_err = |e| CliError::new(format!("cannot bind 127.0.0.1: {e}"));
        let a = UdxSocket::bind_with(any, options).await.map_err(bind_err)?;
        let b = UdxSocket::bind_with(any, options).await.map_err(bind_err)?;
        let open_err = |e| CliError::new(format!("cannot open a stream: {e}"));
        let mut sender = a.connect(1, 2, b.local_addr()).map_err(open_err)?;
        let mut receiver = b.connect(2, 1, a.local_addr()).map_err(open_err)?;
        let (sent, received) = tokio::join!(send_side(&mut sender, size), recv_side(&mut receiver));
        let sent = sent.map_err(stream_err("sending failed"))?;
        let received = received.map_err(stream_err("receiving failed"))?;
        if received.bytes != size {
            return Err(CliError::new(format!(
                "sent {size} bytes but {} arrived",
                received.bytes
            )));
        }
        sent.print(json);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("4K").unwrap(), 4096);
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("2 gib").unwrap(), 2 << 30);
        for bad in ["", "MiB", "12XB", "-1", "99999999999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
