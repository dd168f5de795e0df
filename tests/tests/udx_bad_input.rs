//! The tokio UDX driver under bad input, live on loopback:
//!
//! - 100 000 random datagrams (non-UDX bytes, UDX headers for unknown stream ids, and garbage
//!   UDX packets for a stream whose peer is the attacker) hit both sockets while 16 MiB move
//!   between them: the transfer completes intact and nothing panics (a panicking driver would
//!   stop every stream).
//! - A peer that never acknowledges: the stream fails with a timeout error, and the writer is
//!   held back on the way (memory stays bounded).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use hyperpunch::core::udx::Config;
use hyperpunch::udx::{UdxEvent, UdxSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

const STEP: Duration = Duration::from_secs(60);
const SIZE: usize = 16 << 20;
const JUNK: usize = 100_000;

/// SplitMix64 (seeded, so every run sends the same junk).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| ((i * 7 + i / 1024 + 3) & 255) as u8)
        .collect()
}

/// One random datagram: raw bytes, a UDX header for a random id, or a UDX packet for
/// `victim_id` with random flags, data offset, window, seq, ack, SACK blocks and payload.
fn junk(rng: &mut Rng, victim_id: u32) -> Vec<u8> {
    let len = (rng.next() % 1400) as usize;
    let mut d = rng.bytes(len);
    match rng.next() % 3 {
        0 => {}
        kind => {
            d.resize(d.len().max(20), 0);
            d[0] = 0xff;
            d[1] = 1;
            let id = if kind == 1 {
                rng.next() as u32
            } else {
                victim_id
            };
            d[4..8].copy_from_slice(&id.to_le_bytes());
            // Small seq/ack distances now and then, so the engine takes them seriously.
            if rng.next().is_multiple_of(2) {
                d[12..16].copy_from_slice(&((rng.next() % 64) as u32).to_le_bytes());
                d[16..20].copy_from_slice(&((rng.next() % 64) as u32).to_le_bytes());
            }
        }
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_datagrams_during_a_transfer() {
    let a = UdxSocket::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let b = UdxSocket::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let attacker_addr = attacker.local_addr().unwrap();
    let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
    let mut sb = b.connect(2, 1, a.local_addr()).unwrap();
    // Streams whose peer is the attacker: its garbage reaches their engines.
    let mut victim_a = a.connect(9, 9, attacker_addr).unwrap();
    let mut victim_b = b.connect(9, 9, attacker_addr).unwrap();
    let targets: [SocketAddr; 2] = [a.local_addr(), b.local_addr()];
    let run = async {
        let blast = async {
            let mut rng = Rng(0x5eed);
            for i in 0..JUNK {
                let d = junk(&mut rng, 9);
                // A full socket buffer drops junk; that is fine.
                let _ = attacker.send_to(&d, targets[i % 2]).await;
                if i.is_multiple_of(1000) {
                    tokio::task::yield_now().await;
                }
            }
        };
        let send = async {
            let mut off = 0;
            while off < SIZE {
                sa.write_all(&pattern(off, 65536)).await.expect("write");
                off += 65536;
            }
            sa.shutdown().await.expect("end");
        };
        let receive = async {
            let mut got = Vec::with_capacity(SIZE);
            sb.read_to_end(&mut got).await.expect("read");
            sb.shutdown().await.expect("end");
            got
        };
        let ((), (), got) = tokio::join!(blast, send, receive);
        sa.closed().await.expect("a closes cleanly");
        sb.closed().await.expect("b closes cleanly");
        got
    };
    let got = tokio::time::timeout(STEP, run)
        .await
        .expect("transfer in time");
    assert_eq!(got.len(), SIZE);
    assert!(got == pattern(0, SIZE), "bytes differ");
    // The sockets still serve new streams.
    let mut s1 = a.connect(3, 4, b.local_addr()).unwrap();
    let mut s2 = b.connect(4, 3, a.local_addr()).unwrap();
    let check = async {
        s1.write_all(b"still alive").await.unwrap();
        s1.shutdown().await.unwrap();
        let mut got = Vec::new();
        s2.read_to_end(&mut got).await.unwrap();
        got
    };
    let got = tokio::time::timeout(STEP, check)
        .await
        .expect("new stream in time");
    assert_eq!(got, b"still alive");
    // The attacked streams are failed, reset or still open, but their handles answer.
    for victim in [&mut victim_a, &mut victim_b] {
        let _ = victim.stats().await;
        victim.destroy().unwrap();
    }
}

#[tokio::test]
async fn a_peer_that_never_acks_times_the_stream_out() {
    let a = UdxSocket::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // Bound, so the datagrams are not refused, but it never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        max_timeouts: 2,
        ..Config::default()
    };
    let stream = a
        .connect_with(1, 2, silent.local_addr().unwrap(), config)
        .unwrap();
    let run = async {
        let mut accepted = 0usize;
        let chunk = vec![7u8; 65536];
        let (mut rd, mut wr) = tokio::io::split(stream);
        let writer = async {
            // Writes are taken until the send buffer is full, then wait; the timeout ends them.
            while wr.write_all(&chunk).await.is_ok() && wr.flush().await.is_ok() {
                accepted += chunk.len();
            }
        };
        let mut buf = [0u8; 16];
        let (read, ()) = tokio::join!(rd.read(&mut buf), writer);
        (read, accepted, rd.unsplit(wr))
    };
    let (read, accepted, mut stream) = tokio::time::timeout(STEP, run)
        .await
        .expect("the stream gave up in time");
    let err = read.expect_err("reading a timed-out stream fails");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    // 1 MiB send buffer, one more chunk, the packets in flight: nowhere near unbounded.
    assert!(
        accepted <= 2 << 20,
        "{accepted} bytes accepted by a dead stream"
    );
    // The engine reported the timeout and then let go of the stream.
    assert_eq!(stream.next_event().await, None::<UdxEvent>);
}
