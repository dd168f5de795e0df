//! UDX live against udx-native 1.21.3 (`tests/interop/udx-peer.js`): the sans-IO
//! [`Stream`] driven over a blocking `std::net::UdpSocket` on loopback, a few MiB each way,
//! every byte checked on both sides, half-close in both orders, MESSAGE datagrams and a clean
//! close. Every step has a deadline; the node process is killed when a test ends.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hyperpunch_core::udx::{Config, Event, Stream};
use hyperpunch_tests::node_peer::NodePeer;
use serde_json::json;

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
