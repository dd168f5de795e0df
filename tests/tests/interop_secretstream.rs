//! secret-stream interop, live: the Rust sans-IO [`SecretStream`] over a blocking
//! `std::net::TcpStream` against a real @hyperswarm/secret-stream 6.9.2 under node
//! (`tests/interop/secretstream-peer.js`), with Rust as initiator and as responder, `XX` and `IK`,
//! messages up to 1 MiB, keep-alives, timeouts and graceful close. Every step has a deadline and
//! the node process is killed when a test ends.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use hyperpunch_core::crypto::{hash, KeyPair};
use hyperpunch_core::noise::Pattern;
use hyperpunch_core::secretstream::{Entropy, Event, Options, SecretStream, StreamError};
use hyperpunch_tests::node_peer::NodePeer;
use serde_json::{json, Value};

const SCRIPT: &str = "secretstream-peer.js";
const STEP: Duration = Duration::from_secs(20);

/// Message `k` of `n` bytes, as the JS peer builds it: byte `j` is `(k * 31 + j) & 255`.
fn message(k: usize, n: usize) -> Vec<u8> {
    (0..n).map(|j| ((k * 31 + j) & 255) as u8).collect()
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}"))).unwrap()
}

/// Deterministic per-test "randomness" (the transport would draw it from the OS).
fn entropy(tag: u8) -> Entropy {
    let mut bytes = [0u8; 64];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = tag.wrapping_mul(37).wrapping_add(i as u8);
    }
    Entropy::from_bytes(&bytes)
}

/// The Rust side: a [`SecretStream`] pumped over a blocking socket.
struct Driver {
    socket: TcpStream,
    stream: SecretStream,
    start: Instant,
    shut_down: bool,
    eof: bool,
    bytes_read: usize,
}

impl Driver {
    fn new(socket: TcpStream, stream: SecretStream, start: Instant) -> Self {
        socket.set_nodelay(true).unwrap();
        socket
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Driver {
            socket,
            stream,
            start,
            shut_down: false,
            eof: false,
            bytes_read: 0,
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Writes out what the stream queued and shuts the write half once it asks for it.
    fn flush(&mut self) {
        while let Some(bytes) = self.stream.poll_transmit() {
            if self.socket.write_all(&bytes).is_err() {
                // The peer went away; reading will tell how.
                break;
            }
        }
        if self.stream.wants_shutdown() && !self.shut_down {
            self.shut_down = true;
            let _ = self.socket.shutdown(Shutdown::Write);
        }
    }

    /// One round: flush, wait for input (at most `max_wait`, or until the stream's next timer),
    /// feed it, run due timers, flush again.
    fn step(&mut self, max_wait: Duration) {
        self.flush();
        if self.stream.is_closed() {
            return;
        }
        let mut wait = max_wait;
        if let Some(at) = self.stream.poll_timeout() {
            let left = Duration::from_millis(at.saturating_sub(self.now()));
            wait = wait.min(left);
        }
        let mut buf = vec![0u8; 64 * 1024];
        if self.eof {
            std::thread::sleep(wait);
        } else {
            self.socket
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .unwrap();
            match self.socket.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    let now = self.now();
                    self.stream.handle_eof(now);
                }
                Ok(n) => {
                    self.bytes_read += n;
                    let now = self.now();
                    self.stream.handle_input(now, &buf[..n]);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    // Reset by the peer: the same as the stream ending under us.
                    self.eof = true;
                    let now = self.now();
                    self.stream.handle_eof(now);
                }
            }
        }
        let now = self.now();
        if self.stream.poll_timeout().is_some_and(|t| t <= now) {
            self.stream.handle_timeout(now);
        }
        self.flush();
    }

    /// The next event, pumping the socket until it comes (panics after `within`).
    fn event(&mut self, within: Duration) -> Event {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.stream.poll_event() {
                // A clean close may have come from our own `end()`: send the FIN it asks for.
                self.flush();
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no secret-stream event within {within:?}"
            );
            if self.stream.is_closed() && self.eof {
                panic!("stream closed without a final event");
            }
            self.step(Duration::from_millis(50));
        }
    }

    /// Pumps for `duration` and returns every event seen meanwhile.
    fn idle(&mut self, duration: Duration) -> Vec<Event> {
        let until = Instant::now() + duration;
        let mut events = Vec::new();
        while Instant::now() < until && !self.stream.is_closed() {
            self.step(until.saturating_duration_since(Instant::now()));
            events.extend(std::iter::from_fn(|| self.stream.poll_event()));
        }
        events.extend(std::iter::from_fn(|| self.stream.poll_event()));
        events
    }

    fn expect_connected(&mut self) -> ([u8; 32], [u8; 64]) {
        match self.event(STEP) {
            Event::Connected {
                remote_public_key,
                handshake_hash,
            } => (remote_public_key, handshake_hash),
            other => panic!("expected Connected, got {other:?}"),
        }
    }

    fn expect_message(&mut self) -> Vec<u8> {
        match self.event(STEP) {
            Event::Message(m) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Ends our side and waits for the clean close (peer's end, then Closed(None)).
    fn close_gracefully(&mut self) {
        self.stream.end();
        loop {
            match self.event(STEP) {
                Event::End => continue,
                Event::Closed(None) => return,
                other => panic!("expected End/Closed, got {other:?}"),
            }
        }
    }
}

/// Checks that both sides agree on keys and handshake hash.
fn check_agreement(
    js: &Value,
    rust: &SecretStream,
    remote_public_key: [u8; 32],
    handshake_hash: [u8; 64],
    js_key: &KeyPair,
) {
    assert_eq!(hex_field(js, "handshakeHash"), handshake_hash.to_vec());
    assert_eq!(hex_field(js, "remotePublicKey"), rust.public_key().to_vec());
    assert_eq!(hex_field(js, "publicKey"), js_key.public_key.to_vec());
    assert_eq!(remote_public_key, js_key.public_key);
    assert_eq!(rust.handshake_hash(), Some(handshake_hash));
}

/// JS's list of `{len, hash}` for what it received.
fn js_received(closed: &Value) -> Vec<(usize, Vec<u8>)> {
    closed["received"]
        .as_array()
        .unwrap_or_else(|| panic!("no received list in {closed}"))
        .iter()
        .map(|r| (r["len"].as_u64().unwrap() as usize, hex_field(r, "hash")))
        .collect()
}

fn digests(messages: &[Vec<u8>]) -> Vec<(usize, Vec<u8>)> {
    messages
        .iter()
        .map(|m| (m.len(), hash(m).to_vec()))
        .collect()
}

fn js_server(config: Value) -> (NodePeer, TcpStream) {
    let mut peer = NodePeer::spawn(SCRIPT, &config).expect("spawn node");
    let listening = peer.next_event("listening", STEP).unwrap();
    let port = listening["port"].as_u64().unwrap() as u16;
    let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    (peer, socket)
}

fn js_client(config: Value) -> (NodePeer, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = config;
    config["port"] = json!(port);
    let peer = NodePeer::spawn(SCRIPT, &config).expect("spawn node");
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + STEP;
    let socket = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("node never connected ({e}); stderr:\n{}", peer.stderr()),
        }
    };
    socket.set_nonblocking(false).unwrap();
    (peer, socket)
}

const SIZES: [usize; 8] = [1, 5, 17, 1000, 65535, 65536, 1 << 20, 3];

#[test]
fn rust_initiator_js_responder_echo() {
    let start = Instant::now();
    let js_key = KeyPair::from_seed(&[0x42; 32]);
    let (mut peer, socket) = js_server(json!({
        "mode": "server", "seed": hex::encode([0x42; 32]), "echo": true,
    }));
    let rust_key = KeyPair::from_seed(&[0x11; 32]);
    let stream = SecretStream::new_initiator(rust_key, entropy(1), Options::default(), 0).unwrap();
    let mut d = Driver::new(socket, stream, start);
    let (remote, hh) = d.expect_connected();
    let js = peer.next_event("connected", STEP).unwrap();
    check_agreement(&js, &d.stream, remote, hh, &js_key);

    let sent: Vec<Vec<u8>> = SIZES
        .iter()
        .enumerate()
        .map(|(k, &n)| message(k, n))
        .collect();
    for m in &sent {
        d.stream.write(m).unwrap();
    }
    for m in &sent {
        let echoed = d.expect_message();
        assert!(echoed == *m, "echo of a {}-byte message differs", m.len());
    }
    d.close_gracefully();
    let closed = peer.next_event("closed", STEP).unwrap();
    assert_eq!(closed["error"], Value::Null, "{closed}");
    assert_eq!(closed["ended"], true);
    assert_eq!(js_received(&closed), digests(&sent));
    assert_eq!(peer.wait(STEP), Some(true));
}

#[test]
fn rust_responder_js_initiator_sends() {
    let start = Instant::now();
    let js_key = KeyPair::from_seed(&[0x43; 32]);
    let (mut peer, socket) = js_client(json!({
        "mode": "client", "seed": hex::encode([0x43; 32]),
        "send": SIZES, "endAfterSend": true,
    }));
    let stream = SecretStream::new_responder(
        KeyPair::from_seed(&[0x22; 32]),
        entropy(2),
        Options::default(),
        0,
    )
    .unwrap();
    let mut d = Driver::new(socket, stream, start);
    let (remote, hh) = d.expect_connected();
    let js = peer.next_event("connected", STEP).unwrap();
    check_agreement(&js, &d.stream, remote, hh, &js_key);

    // Reply with a few messages of our own while JS's arrive.
    let replies: Vec<Vec<u8>> = vec![b"hello from rust".to_vec(), message(9, 300_000)];
    for m in &replies {
        d.stream.write(m).unwrap();
    }
    for (k, &n) in SIZES.iter().enumerate() {
        let got = d.expect_message();
        assert!(got == message(k, n), "message {k} ({n} bytes) differs");
    }
    assert_eq!(d.event(STEP), Event::End);
    d.stream.end();
    assert_eq!(d.event(STEP), Event::Closed(None));
    let closed = peer.next_event("closed", STEP).unwrap();
    assert_eq!(closed["error"], Value::Null, "{closed}");
    assert_eq!(js_received(&closed), digests(&replies));
    assert_eq!(peer.wait(STEP), Some(true));
}

#[test]
fn ik_both_directions() {
    // Rust initiator, JS responder.
    let start = Instant::now();
    let js_key = KeyPair::from_seed(&[0x44; 32]);
    let (mut peer, socket) = js_server(json!({
        "mode": "server", "seed": hex::encode([0x44; 32]), "pattern": "IK", "echo": true,
    }));
    let options = Options {
        pattern: Pattern::IK,
        remote_public_key: Some(js_key.public_key),
        ..Options::default()
    };
    let stream =
        SecretStream::new_initiator(KeyPair::from_seed(&[0x33; 32]), entropy(3), options, 0)
            .unwrap();
    let mut d = Driver::new(socket, stream, start);
    // Written before the handshake completes: queued, then sent encrypted.
    d.stream.write(b"ik early bird").unwrap();
    let (remote, hh) = d.expect_connected();
    let js = peer.next_event("connected", STEP).unwrap();
    check_agreement(&js, &d.stream, remote, hh, &js_key);
    assert_eq!(d.expect_message(), b"ik early bird");
    d.close_gracefully();
    assert_eq!(
        peer.next_event("closed", STEP).unwrap()["error"],
        Value::Null
    );

    // JS initiator, Rust responder.
    let rust_key = KeyPair::from_seed(&[0x34; 32]);
    let js_key = KeyPair::from_seed(&[0x45; 32]);
    let (mut peer, socket) = js_client(json!({
        "mode": "client", "seed": hex::encode([0x45; 32]), "pattern": "IK",
        "remotePublicKey": hex::encode(rust_key.public_key),
        "send": [10, 70000], "endAfterSend": true,
    }));
    let options = Options {
        pattern: Pattern::IK,
        ..Options::default()
    };
    let stream = SecretStream::new_responder(rust_key, entropy(4), options, 0).unwrap();
    let mut d = Driver::new(socket, stream, Instant::now());
    let (remote, hh) = d.expect_connected();
    let js = peer.next_event("connected", STEP).unwrap();
    check_agreement(&js, &d.stream, remote, hh, &js_key);
    assert_eq!(d.expect_message(), message(0, 10));
    assert_eq!(d.expect_message(), message(1, 70000));
    assert_eq!(d.event(STEP), Event::End);
    d.stream.end();
    assert_eq!(d.event(STEP), Event::Closed(None));
    assert_eq!(
        peer.next_event("closed", STEP).unwrap()["error"],
        Value::Null
    );
}

#[test]
fn keep_alives_hold_timeouts_off_both_ways() {
    let js_key = KeyPair::from_seed(&[0x46; 32]);
    // JS: keep-alive every 200 ms and a 4 s timeout; Rust the same. Idle for 9 s (more than
    // twice the timeout): neither side may time out, because each one's keep-alives refresh
    // the other's timer. The margins leave room for a node event loop starved by a loaded
    // machine; the clock starts once node is up, not before its start-up.
    let (mut peer, socket) = js_server(json!({
        "mode": "server", "seed": hex::encode([0x46; 32]), "echo": true,
        "keepAlive": 200, "timeout": 4000,
    }));
    let start = Instant::now();
    let options = Options {
        keep_alive: 200,
        timeout: 4000,
        ..Options::default()
    };
    let stream =
        SecretStream::new_initiator(KeyPair::from_seed(&[0x35; 32]), entropy(5), options, 0)
            .unwrap();
    let mut d = Driver::new(socket, stream, start);
    let (remote, hh) = d.expect_connected();
    let js = peer.next_event("connected", STEP).unwrap();
    check_agreement(&js, &d.stream, remote, hh, &js_key);
    // A round trip first, so that JS's header frame is in before counting.
    d.stream.write(b"ping").unwrap();
    assert_eq!(d.expect_message(), b"ping");
    let before = d.bytes_read;
    let events = d.idle(Duration::from_millis(9000));
    assert!(
        events.is_empty(),
        "unexpected events while idle: {events:?}"
    );
    assert!(!d.stream.is_closed());
    // JS's keep-alives are empty messages: 3 + 17 bytes each, about one per 200 ms.
    let keep_alive_bytes = d.bytes_read - before;
    assert!(
        keep_alive_bytes >= 5 * 20,
        "{keep_alive_bytes} bytes of keep-alives in 9 s"
    );
    // Still alive both ways.
    d.stream.write(b"still here").unwrap();
    assert_eq!(d.expect_message(), b"still here");
    d.close_gracefully();
    let closed = peer.next_event("closed", STEP).unwrap();
    assert_eq!(closed["error"], Value::Null, "{closed}");
    // JS filtered the empty keep-alives (it has keep-alive on): only our message arrived.
    assert_eq!(
        js_received(&closed),
        digests(&[b"ping".to_vec(), b"still here".to_vec()])
    );
}

#[test]
fn silent_peers_time_out() {
    // Rust times out a JS peer that sends nothing after the handshake. The timeout also
    // bounds the handshake: the clock starts once node is up (its start-up on a loaded
    // machine is not the handshake's), and leaves the handshake a second.
    let (mut peer, socket) = js_server(json!({
        "mode": "server", "seed": hex::encode([0x47; 32]),
    }));
    let start = Instant::now();
    let options = Options {
        timeout: 1000,
        ..Options::default()
    };
    let stream =
        SecretStream::new_initiator(KeyPair::from_seed(&[0x36; 32]), entropy(6), options, 0)
            .unwrap();
    let mut d = Driver::new(socket, stream, start);
    d.expect_connected();
    let connected_at = Instant::now();
    assert_eq!(d.event(STEP), Event::Closed(Some(StreamError::TimedOut)));
    let waited = connected_at.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(6),
        "timed out after {waited:?}"
    );
    drop(d); // closes the socket: JS sees its stream close
    let closed = peer.next_event("closed", STEP).unwrap();
    assert!(js_received(&closed).is_empty());

    // JS times out a silent Rust peer: Rust sees the stream end under it.
    let (mut peer, socket) = js_client(json!({
        "mode": "client", "seed": hex::encode([0x48; 32]), "timeout": 3000,
    }));
    let stream = SecretStream::new_responder(
        KeyPair::from_seed(&[0x37; 32]),
        entropy(7),
        Options::default(),
        0,
    )
    .unwrap();
    let mut d = Driver::new(socket, stream, Instant::now());
    d.expect_connected();
    let closed = peer.next_event("closed", STEP).unwrap();
    assert_eq!(closed["error"], "Stream timed out");
    // JS destroyed its socket: Rust gets the end of the stream.
    assert_eq!(d.event(STEP), Event::End);
}
