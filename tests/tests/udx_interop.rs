//! UDX live against udx-native 1.21.3 (`tests/interop/udx-peer.js`).
//!
//! - The sans-IO [`Stream`] driven over a blocking `std::net::UdpSocket` on loopback: a few MiB
//!   each way, half-close in both orders, MESSAGE datagrams and a clean close.
//! - The tokio driver ([`UdxSocket`], streams through `AsyncRead`/`AsyncWrite`): 256 MiB each
//!   way with a half-closed reply, MESSAGE datagrams both ways, DESTROY from either side.
//!
//! Every byte is checked on both sides. Every step has a deadline; the node process is killed
//! when a test ends.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hyperpunch::udx::{UdxSocket, UdxStream};
use hyperpunch_core::udx::{Config, Event, Stream};
use hyperpunch_tests::node_peer::NodePeer;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const SCRIPT: &str = "udx-peer.js";
const STEP: Duration = Duration::from_secs(30);

/// Byte `i` of a stream tagged `tag`, as the JS peer builds it.
fn pattern(offset: usize, len: usize, tag: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| ((i * 7 + i / 1024 + tag) & 255) as u8)
        .collect()
}

/// What the Rust side does and saw.
#[derive(Default)]
struct Outcome {
    received: Vec<u8>,
    messages: Vec<Vec<u8>>,
    ended_at_sent: Option<usize>,
    closed: bool,
}

/// Runs one stream against the peer until it closes (or fails the test). `on_end` runs when
/// the peer ends its side.
fn run(
    udp: &UdpSocket,
    mut stream: Stream,
    remote: SocketAddr,
    start: Instant,
    mut on_end: impl FnMut(&mut Stream),
) -> Outcome {
    let deadline = start + STEP;
    let mut out = Outcome::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let now = start.elapsed();
        while let Some(event) = stream.poll_event() {
            match event {
                Event::Data(d) => out.received.extend_from_slice(&d),
                Event::Message(m) => out.messages.push(m),
                Event::Ended => {
                    out.ended_at_sent = Some(out.received.len());
                    on_end(&mut stream);
                }
                Event::Closed => out.closed = true,
                Event::Error(e) => panic!("stream failed: {e}"),
            }
        }
        while let Some(d) = stream.poll_transmit(now) {
            udp.send_to(&d, remote).unwrap();
        }
        if out.closed {
            return out;
        }
        assert!(Instant::now() < deadline, "no close within {STEP:?}");
        let wait = stream
            .poll_timeout()
            .map(|t| t.saturating_sub(now))
            .unwrap_or(Duration::from_millis(100))
            .clamp(Duration::from_micros(50), Duration::from_millis(100));
        udp.set_read_timeout(Some(wait)).unwrap();
        loop {
            match udp.recv_from(&mut buf) {
                Ok((n, from)) if from == remote => {
                    stream
                        .handle_datagram(start.elapsed(), &buf[..n])
                        .expect("udx-native sent a datagram we cannot decode");
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => panic!("recv: {e}"),
            }
            // Drain what is queued without waiting, then go back to polling.
            udp.set_read_timeout(Some(Duration::from_micros(1)))
                .unwrap();
        }
        stream.handle_timeout(start.elapsed());
    }
}

fn spawn_peer(udp: &UdpSocket, cfg: serde_json::Value) -> (NodePeer, SocketAddr) {
    let mut cfg = cfg;
    cfg["rustPort"] = json!(udp.local_addr().unwrap().port());
    let mut peer = NodePeer::spawn(SCRIPT, &cfg).expect("node with udx-native");
    let ready = peer.next_event("ready", STEP).unwrap();
    let port = ready["port"].as_u64().unwrap() as u16;
    (peer, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Rust writes 3 MiB and ends first; udx-native checks every byte, answers with 1 MiB after
/// seeing our END (half-close), then ends.
#[test]
fn rust_to_udx_native_then_reply_after_half_close() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (mut peer, remote) = spawn_peer(
        &udp,
        json!({"localId": 7, "remoteId": 11, "sendFirst": 0, "endFirst": false,
               "sendAfterEnd": 1 << 20, "sendTag": 3, "recvTag": 1, "message": "from-js"}),
    );
    let start = Instant::now();
    let mut stream = Stream::new(11, 7, start.elapsed(), Config::default());
    let sent = 3 << 20;
    stream.write(&pattern(0, sent, 1)).unwrap();
    stream.send_message(b"from-rust").unwrap();
    stream.end().unwrap();
    let out = run(&udp, stream, remote, start, |_| {});
    assert!(out.received == pattern(0, 1 << 20, 3), "reply bytes differ");
    assert_eq!(out.ended_at_sent, Some(1 << 20));
    assert_eq!(out.messages, vec![b"from-js".to_vec()]);
    let message = peer.next_event("message", STEP).unwrap();
    assert_eq!(message["hex"], json!(hex::encode("from-rust")));
    let end = peer.next_event("end", STEP).unwrap();
    assert_eq!(end["received"], json!(sent));
    assert_eq!(end["ok"], json!(true));
    let close = peer.next_event("close", STEP).unwrap();
    assert_eq!(close["ok"], json!(true));
}

/// udx-native writes 3 MiB and ends first; Rust checks every byte, then answers with 1 MiB
/// after the peer's END and ends.
#[test]
fn udx_native_to_rust_then_reply_after_half_close() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (mut peer, remote) = spawn_peer(
        &udp,
        json!({"localId": 21, "remoteId": 22, "sendFirst": 3 << 20, "endFirst": true,
               "sendAfterEnd": 0, "sendTag": 5, "recvTag": 9}),
    );
    let start = Instant::now();
    let stream = Stream::new(22, 21, start.elapsed(), Config::default());
    let out = run(&udp, stream, remote, start, |s| {
        s.write(&pattern(0, 1 << 20, 9)).unwrap();
        s.end().unwrap();
    });
    assert_eq!(out.received.len(), 3 << 20);
    assert!(out.received == pattern(0, 3 << 20, 5), "bytes differ");
    let end = peer.next_event("end", STEP).unwrap();
    assert_eq!(end["received"], json!(1 << 20));
    assert_eq!(end["ok"], json!(true));
    let close = peer.next_event("close", STEP).unwrap();
    assert_eq!(close["ok"], json!(true));
}

// ---- The tokio driver against udx-native ----

/// Bytes each way in the big transfers.
const BIG: usize = 256 << 20;
/// Deadline for one big transfer (debug builds on a loaded machine included).
const BIG_STEP: Duration = Duration::from_secs(120);

/// The pattern in 1024-byte blocks: within block `k` of a stream tagged `t`, byte `j` is
/// `(j * 7 + k + t) & 255` (as `i * 7 mod 256` repeats every 256 bytes), so block `k` is entry
/// `(k + t) & 255` here. Comparing and writing whole slices keeps 256 MiB cheap in debug builds.
fn blocks() -> &'static [Vec<u8>] {
    static BLOCKS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    BLOCKS.get_or_init(|| (0..256).map(|s| pattern(s * 1024, 1024, 0)).collect())
}

/// Whether `bytes`, found at `offset` of a stream tagged `tag`, are what the peer sent.
fn matches(offset: usize, bytes: &[u8], tag: usize) -> bool {
    let (mut off, mut rest) = (offset, bytes);
    while !rest.is_empty() {
        let (k, j) = (off / 1024, off % 1024);
        let n = rest.len().min(1024 - j);
        if rest[..n] != blocks()[(k + tag) & 255][j..j + n] {
            return false;
        }
        off += n;
        rest = &rest[n..];
    }
    true
}

/// Writes `len` pattern bytes tagged `tag`, then ends the write side.
async fn write_pattern(w: &mut (impl AsyncWrite + Unpin), len: usize, tag: usize) {
    let mut chunk = Vec::with_capacity(64 * 1024);
    let mut k = 0;
    while k * 1024 < len {
        chunk.clear();
        while chunk.len() < 64 * 1024 && (k * 1024) < len {
            let n = (len - k * 1024).min(1024);
            chunk.extend_from_slice(&blocks()[(k + tag) & 255][..n]);
            k += 1;
        }
        w.write_all(&chunk).await.expect("write");
    }
    w.shutdown().await.expect("end");
}

/// Reads to EOF; returns the byte count and whether every byte matched the pattern.
async fn read_checked(
    r: &mut (impl AsyncRead + Unpin),
    tag: usize,
) -> std::io::Result<(usize, bool)> {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut total, mut ok) = (0, true);
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((total, ok));
        }
        ok &= matches(total, &buf[..n], tag);
        total += n;
    }
}

/// Waits for the node peer without stalling the runtime's other tasks.
fn peer_event(peer: &mut NodePeer, event: &str) -> serde_json::Value {
    tokio::task::block_in_place(|| peer.next_event(event, BIG_STEP)).unwrap_or_else(|e| {
        panic!(
            "node peer, waiting for {event}: {e}; stderr: {}",
            peer.stderr()
        )
    })
}

async fn tokio_peer(socket: &UdxSocket, cfg: serde_json::Value) -> (NodePeer, SocketAddr) {
    let mut cfg = cfg;
    cfg["rustPort"] = json!(socket.local_addr().port());
    cfg["timeoutMs"] = json!(BIG_STEP.as_millis() as u64);
    let mut peer = NodePeer::spawn(SCRIPT, &cfg).expect("node with udx-native");
    let ready = peer_event(&mut peer, "ready");
    let port = ready["port"].as_u64().unwrap() as u16;
    (peer, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Runs `stream` to its close: writes `send` bytes tagged `send_tag` once `reply_after_end` is
/// false or the peer has ended, reads and checks everything tagged `recv_tag`. Returns the
/// received count, whether it matched, and the MESSAGE datagrams that arrived.
async fn transfer(
    stream: UdxStream,
    send: usize,
    send_tag: usize,
    recv_tag: usize,
    reply_after_end: bool,
) -> (usize, bool, Vec<Vec<u8>>) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (received, ok) = if reply_after_end {
        let got = read_checked(&mut rd, recv_tag).await.expect("read");
        write_pattern(&mut wr, send, send_tag).await;
        got
    } else {
        let (got, ()) = tokio::join!(
            read_checked(&mut rd, recv_tag),
            write_pattern(&mut wr, send, send_tag)
        );
        got.expect("read")
    };
    let mut stream = rd.unsplit(wr);
    stream.closed().await.expect("clean close");
    let messages = std::iter::from_fn(|| stream.take_message()).collect();
    (received, ok, messages)
}

/// Rust sends 256 MiB and ends; udx-native checks every byte and replies with 1 MiB after our
/// END (half-close). MESSAGE datagrams go both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_driver_sends_256_mib_to_udx_native() {
    let socket = UdxSocket::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (mut peer, remote) = tokio_peer(
        &socket,
        json!({"localId": 7, "remoteId": 11, "sendFirst": 0, "endFirst": false,
               "sendAfterEnd": 1 << 20, "sendTag": 3, "recvTag": 1, "message": "from-js"}),
    )
    .await;
    let stream = socket.connect(11, 7, remote).unwrap();
    stream.send_message(b"from-rust".to_vec()).unwrap();
    let run = transfer(stream, BIG, 1, 3, false);
    let (received, ok, messages) = tokio::time::timeout(BIG_STEP, run)
        .await
        .expect("transfer in time");
    assert_eq!(received, 1 << 20);
    assert!(ok, "reply bytes differ");
    assert_eq!(messages, vec![b"from-js".to_vec()]);
    let message = peer_event(&mut peer, "message");
    assert_eq!(message["hex"], json!(hex::encode("from-rust")));
    let end = peer_event(&mut peer, "end");
    assert_eq!(end["received"], json!(BIG));
    assert_eq!(end["ok"], json!(true), "udx-native saw different bytes");
    assert_eq!(peer_event(&mut peer, "close")["ok"], json!(true));
}

/// udx-native sends 256 MiB and ends; Rust checks every byte and replies with 1 MiB after the
/// peer's END. MESSAGE datagrams go both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_driver_receives_256_mib_from_udx_native() {
    let socket = UdxSocket::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (mut peer, remote) = tokio_peer(
        &socket,
        json!({"localId": 21, "remoteId": 22, "sendFirst": BIG, "endFirst": true,
               "sendAfterEnd": 0, "sendTag": 5, "recvTag": 9}),
    )
    .await;
    let stream = socket.connect(22, 21, remote).unwrap();
    let run = async {
        // udx-native only sends MESSAGE datagrams on its own; answer one from Rust mid-stream.
        stream.send_message(b"hello-js".to_vec()).unwrap();
        transfer(stream, 1 << 20, 9, 5, true).await
    };
    let (received, ok, _) = tokio::time::timeout(BIG_STEP, run)
        .await
        .expect("transfer in time");
    assert_eq!(received, BIG);
    assert!(ok, "bytes from udx-native differ");
    let message = peer_event(&mut peer, "message");
    assert_eq!(message["hex"], json!(hex::encode("hello-js")));
    let end = peer_event(&mut peer, "end");
    assert_eq!(end["received"], json!(1 << 20));
    assert_eq!(end["ok"], json!(true));
    assert_eq!(peer_event(&mut peer, "close")["ok"], json!(true));
}

/// udx-native moves its end of a stream to a new socket (another port) a quarter into sending
/// 16 MiB, as a relayed connection upgrading to a direct path does, and the Rust side follows
/// with [`UdxStream::change_remote`] when told the new port. Every byte arrives intact and
/// exactly once (packets udx-native sends from the new port before Rust follows are dropped
/// and resent); udx-native reports its change complete; Rust's reply after the move reaches
/// the new socket intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_changes_mid_transfer() {
    const SIZE: usize = 16 << 20;
    let socket = UdxSocket::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (mut peer, remote) = tokio_peer(
        &socket,
        json!({"localId": 31, "remoteId": 32, "sendFirst": SIZE, "endFirst": true,
               "sendAfterEnd": 0, "sendTag": 4, "recvTag": 6, "moveAfter": SIZE / 4}),
    )
    .await;
    let mut stream = socket.connect(32, 31, remote).unwrap();
    let moved = peer_event(&mut peer, "moved");
    let new_remote = SocketAddr::from(([127, 0, 0, 1], moved["port"].as_u64().unwrap() as u16));
    assert_ne!(new_remote, remote);
    let run = async {
        tokio::time::timeout(STEP, stream.change_remote(31, new_remote))
            .await
            .expect("change in time")
            .expect("change completes");
        let got = read_checked(&mut stream, 4).await.expect("read");
        write_pattern(&mut stream, 1 << 20, 6).await;
        stream.closed().await.expect("clean close");
        got
    };
    let (received, ok) = tokio::time::timeout(BIG_STEP, run)
        .await
        .expect("transfer in time");
    assert_eq!(received, SIZE);
    assert!(ok, "bytes from udx-native differ");
    assert_eq!(
        peer_event(&mut peer, "remote-changed")["event"],
        json!("remote-changed")
    );
    let end = peer_event(&mut peer, "end");
    assert_eq!(end["received"], json!(1 << 20));
    assert_eq!(end["ok"], json!(true), "udx-native saw different bytes");
    assert_eq!(peer_event(&mut peer, "close")["ok"], json!(true));
}

/// Rust destroys mid-transfer: udx-native sees ECONNRESET. Then udx-native destroys
/// mid-transfer: the Rust reader fails with ConnectionReset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_from_either_side() {
    let socket = UdxSocket::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (mut peer, remote) = tokio_peer(
        &socket,
        json!({"localId": 31, "remoteId": 32, "sendFirst": 0, "endFirst": false,
               "sendAfterEnd": 0, "sendTag": 0, "recvTag": 4}),
    )
    .await;
    let mut stream = socket.connect(32, 31, remote).unwrap();
    let run = async {
        stream.write_all(&pattern(0, 1 << 20, 4)).await.unwrap();
        stream.destroy().unwrap();
        stream.closed().await
    };
    tokio::time::timeout(STEP, run)
        .await
        .expect("closed in time")
        .expect("destroy closes");
    let error = peer_event(&mut peer, "error");
    assert_eq!(error["code"], json!("ECONNRESET"), "{error}");
    peer_event(&mut peer, "close");

    let (mut peer, remote) = tokio_peer(
        &socket,
        json!({"localId": 41, "remoteId": 42, "sendFirst": 0, "endFirst": false,
               "sendAfterEnd": 0, "sendTag": 0, "recvTag": 6, "destroyAfter": 1 << 20}),
    )
    .await;
    let stream = socket.connect(42, 41, remote).unwrap();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let run = async {
        let writer = async {
            // The writes stop succeeding once the reset arrived; their error does not matter.
            let mut off = 0;
            while off < 64 << 20 {
                if wr.write_all(&pattern(off, 65536, 6)).await.is_err() {
                    break;
                }
                off += 65536;
            }
        };
        let (read, ()) = tokio::join!(read_checked(&mut rd, 0), writer);
        read
    };
    let read = tokio::time::timeout(STEP, run)
        .await
        .expect("reset in time");
    let err = read.expect_err("the reader sees the reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    peer_event(&mut peer, "close");
}

#[test]
fn block_pattern_is_the_byte_pattern() {
    for (offset, len, tag) in [(0, 5000, 3), (1000, 3000, 250), (777_777, 70_000, 9)] {
        assert!(matches(offset, &pattern(offset, len, tag), tag));
        let mut wrong = pattern(offset, len, tag);
        wrong[len / 2] ^= 1;
        assert!(!matches(offset, &wrong, tag));
    }
}
