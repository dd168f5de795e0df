//! Connect-by-key benchmarks for `just bench` (`bench/connect.sh`): the hyperpunch side of
//! `bench/js/connect.js`, with the same modes and the same `BENCH <name> <value>` lines. Every
//! node binds 127.0.0.1 and bootstraps from the local testnet given (never public nodes).
//!
//! ```sh
//! bench_connect serve BOOT ECHO_SEED SINK_SEED    # echo server on the first key pair, sink on
//!                                                 # the second (counts bytes until the end,
//!                                                 # answers the count as 8 bytes LE); prints
//!                                                 # `listening ECHO SINK`, runs until killed
//! bench_connect inproc TAG BOOT ECHO SINK N MIB   # N sequential connects from one warm node
//!                                                 # (connect() to the echoed byte), then MIB MiB
//!                                                 # to the sink over one connection
//! bench_connect procs TAG N CMD [ARGS..]          # N runs of a whole process (CMD gets `x` on
//!                                                 # stdin): spawn to the first byte on its stdout
//! bench_connect swarm-serve BOOT TOPIC            # a swarm joined as server; prints `joined`
//! bench_connect swarm-join TAG BOOT TOPIC N       # N times: a fresh swarm (new node) joins TOPIC
//!                                                 # as client; its creation to the connection
//! ```

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::{ConnectOptions, Connection, Dht, DhtOptions, ServerOptions};
use hyperpunch::swarm::{JoinOptions, Swarm, SwarmOptions};

type Error = Box<dyn std::error::Error>;

/// Give up on any one step after this long (a bench must end by itself).
const STEP: Duration = Duration::from_secs(60);

fn report(name: &str, value: f64) {
    println!("BENCH {name} {value:.3}");
}

/// Median and p99 (nearest rank) of `ms`.
fn stats(tag: &str, ms: &[f64]) {
    let mut s = ms.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = |p: f64| s[((p / 100.0 * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    report(&format!("{tag}_median_ms"), rank(50.0));
    report(&format!("{tag}_p99_ms"), rank(99.0));
}

fn hex32(s: &str) -> Result<[u8; 32], Error> {
    let v = hex::decode(s)?;
    v.try_into()
        .map_err(|_| "expected 64 hex characters".into())
}

fn options(boot: &str) -> DhtOptions {
    DhtOptions {
        host: Ipv4Addr::LOCALHOST,
        ..DhtOptions::new(boot.split(',').map(str::to_string).collect())
    }
}

fn random_key_pair() -> KeyPair {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("randomness");
    KeyPair::from_seed(&seed)
}

async fn step<T>(what: &str, f: impl std::future::Future<Output = T>) -> Result<T, Error> {
    tokio::time::timeout(STEP, f)
        .await
        .map_err(|_| format!("{what} timed out").into())
}

async fn echo(mut c: Connection) {
    while let Some(Ok(m)) = c.recv().await {
        if c.send(m).await.is_err() {
            return;
        }
    }
    let _ = c.end().await;
    c.finished().await;
}

async fn sink(mut c: Connection) {
    let mut n = 0u64;
    while let Some(Ok(m)) = c.recv().await {
        n += m.len() as u64;
    }
    if c.send(n.to_le_bytes().to_vec()).await.is_ok() {
        let _ = c.end().await;
        c.finished().await;
    }
}

async fn serve(boot: &str, echo_seed: &str, sink_seed: &str) -> Result<(), Error> {
    let dht = Dht::bootstrap(options(boot)).await?;
    let e = KeyPair::from_seed(&hex32(echo_seed)?);
    let k = KeyPair::from_seed(&hex32(sink_seed)?);
    let mut echo_server = dht.listen(e.clone(), ServerOptions::default()).await?;
    let mut sink_server = dht.listen(k.clone(), ServerOptions::default()).await?;
    println!(
        "listening {} {}",
        hex::encode(e.public_key),
        hex::encode(k.public_key)
    );
    tokio::spawn(async move {
        while let Some(c) = sink_server.accept().await {
            tokio::spawn(sink(c));
        }
    });
    while let Some(c) = echo_server.accept().await {
        tokio::spawn(echo(c));
    }
    Ok(())
}

async fn inproc(
    tag: &str,
    boot: &str,
    echo_key: &str,
    sink_key: &str,
    n: usize,
    mib: usize,
) -> Result<(), Error> {
    let (echo_key, sink_key) = (hex32(echo_key)?, hex32(sink_key)?);
    let dht = Dht::bootstrap(options(boot)).await?;
    let key_pair = random_key_pair();
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let mut c = step(
            "connect",
            dht.connect(echo_key, key_pair.clone(), ConnectOptions::default()),
        )
        .await??;
        let connected = t0.elapsed();
        c.send(b"x".to_vec()).await?;
        step("echo", c.recv())
            .await?
            .ok_or("closed before the echo")??;
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            eprintln!(
                "connect {}: {:.1} ms (connected after {:.1} ms), {}",
                ms.len(),
                ms[ms.len() - 1],
                connected.as_secs_f64() * 1000.0,
                if c.is_relayed() {
                    "relayed"
                } else if c.is_holepunched() {
                    "punched"
                } else {
                    "direct"
                }
            );
        }
        let _ = c.end().await;
        tokio::spawn(async move {
            // Drain the peer's end so that the pump closes cleanly.
            while let Some(Ok(_)) = c.recv().await {}
        });
    }
    report(&format!("{tag}_inproc_first_ms"), ms[0]);
    stats(&format!("{tag}_inproc"), &ms[1..]);

    let total = (mib * 1024 * 1024) as u64;
    let chunk = vec![0xab; 64 * 1024];
    let t0 = Instant::now();
    let raw = step(
        "connect",
        dht.connect_raw(sink_key, key_pair.clone(), ConnectOptions::default()),
    )
    .await??;
    let t1 = Instant::now();
    let udx = raw.stream_handle();
    let (tx, mut rx) = raw.into_messages().split();
    let mut sent = 0u64;
    while sent < total {
        tx.send(chunk.clone()).await?;
        sent += chunk.len() as u64;
    }
    tx.end().await?;
    let answer = step("the sink's answer", rx.recv())
        .await?
        .ok_or("closed before the answer")??;
    let t2 = Instant::now();
    // The sender's UDX counters: how many of its data packets it sent again.
    if let Ok(s) = udx.stats().await {
        if s.packets_sent > 0 {
            report(
                &format!("{tag}_stream_retransmit_pct"),
                s.retransmits as f64 * 100.0 / s.packets_sent as f64,
            );
        }
    }
    let got = u64::from_le_bytes(answer.get(..8).ok_or("short answer")?.try_into()?);
    if got != total {
        return Err(format!("the sink got {got} bytes of {total}").into());
    }
    report(
        &format!("{tag}_stream_open_ms"),
        (t1 - t0).as_secs_f64() * 1000.0,
    );
    report(
        &format!("{tag}_stream_mb_s"),
        total as f64 / 1e6 / (t2 - t1).as_secs_f64(),
    );
    Ok(())
}

/// Spawn to the first byte on stdout, `n` times (each run is killed after its byte).
fn procs(tag: &str, n: usize, cmd: &[String]) -> Result<(), Error> {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(b"x")?;
        let mut stdout = child.stdout.take().expect("piped");
        // The read blocks; a watchdog kills a process that never answers.
        let pid = child.id();
        let (done, watch) = std::sync::mpsc::channel::<()>();
        let dog = std::thread::spawn(move || {
            if watch.recv_timeout(STEP).is_err() {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        });
        let mut b = [0u8; 1];
        let got = stdout.read(&mut b)?;
        let elapsed = t0.elapsed();
        let _ = done.send(());
        let _ = dog.join();
        let _ = child.kill();
        let _ = child.wait();
        drop(stdin);
        if got == 0 {
            return Err(format!("{} ended without echoing", cmd[0]).into());
        }
        ms.push(elapsed.as_secs_f64() * 1000.0);
    }
    stats(&format!("{tag}_proc"), &ms);
    Ok(())
}

async fn swarm_serve(boot: &str, topic: &str) -> Result<(), Error> {
    let topic = hex32(topic)?;
    let mut swarm = Swarm::new(SwarmOptions::new(options(boot))).await?;
    let d = swarm
        .join(
            topic,
            JoinOptions {
                server: true,
                client: false,
                limit: None,
            },
        )
        .await;
    d.flushed().await;
    println!("joined");
    let mut held = Vec::new();
    while let Some(c) = swarm.accept().await {
        held.push(c.into_messages());
    }
    Ok(())
}

async fn swarm_join(tag: &str, boot: &str, topic: &str, n: usize) -> Result<(), Error> {
    let topic = hex32(topic)?;
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let mut swarm = Swarm::new(SwarmOptions::new(options(boot))).await?;
        let _d = swarm
            .join(
                topic,
                JoinOptions {
                    server: false,
                    client: true,
                    limit: None,
                },
            )
            .await;
        let c = step("the swarm connection", swarm.accept())
            .await?
            .ok_or("the swarm stopped")?;
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        drop(c);
        swarm.destroy().await;
    }
    stats(&format!("{tag}_swarm"), &ms);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| args.get(i).map(String::as_str).ok_or("missing argument");
    match a(0)? {
        "serve" => serve(a(1)?, a(2)?, a(3)?).await,
        "inproc" => inproc(a(1)?, a(2)?, a(3)?, a(4)?, a(5)?.parse()?, a(6)?.parse()?).await,
        "procs" => procs(
            a(1)?,
            a(2)?.parse()?,
            args.get(3..).ok_or("missing command")?,
        ),
        "swarm-serve" => swarm_serve(a(1)?, a(2)?).await,
        "swarm-join" => swarm_join(a(1)?, a(2)?, a(3)?, a(4)?.parse()?).await,
        m => Err(format!("unknown mode {m}").into()),
    }
}
