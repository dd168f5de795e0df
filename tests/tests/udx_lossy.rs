//! UDX through a hostile network, live against udx-native 1.21.3 (`tests/interop/udx-peer.js`):
//! a UDP proxy on loopback, run by the test with a seeded RNG, drops (5 % and 20 %), duplicates
//! and reorders datagrams in both directions while the tokio driver and udx-native each send
//! 8 MiB at the same time. Every byte is checked on both sides; both ends close cleanly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyperpunch::udx::UdxSocket;
use hyperpunch_tests::node_peer::NodePeer;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::Instant;

const SCRIPT: &str = "udx-peer.js";
const STEP: Duration = Duration::from_secs(120);
const SIZE: usize = 8 << 20;

/// SplitMix64: a small seeded generator, so every run impairs the same way.
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
}

/// What the proxy did to the traffic.
#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
}

/// How the proxy mistreats datagrams (each a probability per datagram).
#[derive(Clone, Copy)]
struct Impairment {
    drop: f64,
    duplicate: f64,
    /// Held back 1-8 ms, so later datagrams overtake it.
    reorder: f64,
}

/// A datagram held back: when to send it, a tie-breaker, where to, the bytes.
type Held = (Instant, u64, SocketAddr, Vec<u8>);

/// Relays between `rust` and whoever else talks to the proxy socket (the node peer).
async fn proxy(socket: UdpSocket, rust: SocketAddr, imp: Impairment, seed: u64, c: Arc<Counters>) {
    let mut rng = Rng(seed);
    let mut other: Option<SocketAddr> = None;
    let mut held: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let mut order = 0u64;
    let mut buf = vec![0u8; 65536];
    loop {
        let next = held.peek().map(|Reverse((at, ..))| *at);
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = received else { continue };
                let to = if from == rust {
                    match other { Some(o) => o, None => continue }
                } else {
                    other = Some(from);
                    rust
                };
                if rng.chance(imp.drop) {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let copies = if rng.chance(imp.duplicate) {
                    c.duplicated.fetch_add(1, Ordering::Relaxed);
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    if rng.chance(imp.reorder) {
                        c.delayed.fetch_add(1, Ordering::Relaxed);
                        let at = Instant::now() + Duration::from_millis(1 + rng.next() % 8);
                        order += 1;
                        held.push(Reverse((at, order, to, buf[..n].to_vec())));
                    } else {
                        c.forwarded.fetch_add(1, Ordering::Relaxed);
                        let _ = socket.send_to(&buf[..n], to).await;
                    }
                }
            }
            _ = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                while held.peek().is_some_and(|Reverse((at, ..))| *at <= Instant::now()) {
                    let Some(Reverse((_, _, to, bytes))) = held.pop() else { break };
                    c.forwarded.fetch_add(1, Ordering::Relaxed);
                    let _ = socket.send_to(&bytes, to).await;
                }
            }
        }
    }
}

fn pattern(offset: usize, len: usize, tag: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| ((i * 7 + i / 1024 + tag) & 255) as u8)
        .collect()
}

fn peer_event(peer: &mut NodePeer, event: &str) -> serde_json::Value {
    tokio::task::block_in_place(|| peer.next_event(event, STEP)).unwrap_or_else(|e| {
        panic!(
            "node peer, waiting for {event}: {e}; stderr: {}",
            peer.stderr()
        )
    })
}

/// 8 MiB each way at once through the proxy; both sides check every byte.
async fn both_ways_through(imp: Impairment, seed: u64) {
    let socket = UdxSocket::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let proxy_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy_socket.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let relay = tokio::spawn(proxy(
        proxy_socket,
        socket.local_addr(),
        imp,
        seed,
        counters.clone(),
    ));
    // udx-native ends only once it has our END, so its END carries the ack of ours and the
    // last packet of the close is our ack, which our lingering stream repeats if it is lost.
    // (Ending first, udx-native could send that last ack itself and close; when it was lost our
    // END went unanswered and the stream timed out: UDX has no TIME_WAIT on the JS side.)
    let cfg = json!({"rustPort": proxy_addr.port(), "localId": 51, "remoteId": 52,
                     "sendFirst": SIZE, "endFirst": false, "sendAfterEnd": 0,
                     "sendTag": 2, "recvTag": 8, "timeoutMs": STEP.as_millis() as u64});
    let mut peer = NodePeer::spawn(SCRIPT, &cfg).expect("node with udx-native");
    peer_event(&mut peer, "ready");
    let stream = socket.connect(52, 51, proxy_addr).unwrap();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let run = async {
        let writer = async {
            let mut off = 0;
            while off < SIZE {
                wr.write_all(&pattern(off, 65536, 8)).await.expect("write");
                off += 65536;
            }
            wr.shutdown().await.expect("end");
        };
        let reader = async {
            let mut got = Vec::with_capacity(SIZE);
            rd.read_to_end(&mut got).await.expect("read");
            got
        };
        let ((), got) = tokio::join!(writer, reader);
        let mut stream = rd.unsplit(wr);
        stream.closed().await.expect("clean close");
        got
    };
    let got = tokio::time::timeout(STEP, run)
        .await
        .expect("transfer in time");
    assert_eq!(got.len(), SIZE);
    assert!(got == pattern(0, SIZE, 2), "bytes from udx-native differ");
    let end = peer_event(&mut peer, "end");
    assert_eq!(end["received"], json!(SIZE));
    assert_eq!(end["ok"], json!(true), "udx-native saw different bytes");
    assert_eq!(peer_event(&mut peer, "close")["ok"], json!(true));
    relay.abort();
    // The network really was hostile.
    for (what, n) in [
        ("dropped", &counters.dropped),
        ("duplicated", &counters.duplicated),
        ("reordered", &counters.delayed),
    ] {
        assert!(n.load(Ordering::Relaxed) > 0, "the proxy {what} nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_with_reordering_and_duplicates() {
    let imp = Impairment {
        drop: 0.05,
        duplicate: 0.02,
        reorder: 0.05,
    };
    both_ways_through(imp, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_loss_with_reordering_and_duplicates() {
    let imp = Impairment {
        drop: 0.20,
        duplicate: 0.02,
        reorder: 0.05,
    };
    both_ways_through(imp, 20).await;
}
