//! hypercore replication, live against JS: the Rust sans-IO stack (secret-stream → protomux →
//! [`ReplicationHub`] → [`Replicator`]) over a blocking `std::net::TcpStream` against a real JS
//! hypercore 11.37.1 replicating over @hyperswarm/secret-stream 6.9.2
//! (`tests/interop/replicate-peer.js`). Rust reads a JS-written core (full download, every block
//! verified, live appends followed) and JS reads a Rust-written core (including live appends).
//! Every step has a deadline and the node process is killed when a test ends.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use futures_executor::block_on;
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hypercore::{CreateOptions, Hypercore};
use hyperpunch_core::replication::{
    Event, HubEvent, Options, ReplicationHub, Replicator, StreamId,
};
use hyperpunch_core::secretstream::{
    Entropy, Event as StreamEvent, Options as StreamOptions, SecretStream,
};
use hyperpunch_core::storage::MemoryStorage;
use hyperpunch_tests::node_peer::NodePeer;
use serde_json::{json, Value};

const SCRIPT: &str = "replicate-peer.js";
const STEP: Duration = Duration::from_secs(30);

/// Block `k` as the JS peer builds it.
fn block(k: u64) -> Vec<u8> {
    let mut b = format!("block {k} ").into_bytes();
    b.extend(std::iter::repeat_n(
        (k & 255) as u8,
        ((k * 37) % 3000) as usize,
    ));
    b
}

fn entropy(tag: u8) -> Entropy {
    let mut bytes = [0u8; 64];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = tag.wrapping_mul(53).wrapping_add(i as u8);
    }
    Entropy::from_bytes(&bytes)
}

/// secret-stream + replication hub over one blocking socket.
struct Driver {
    socket: TcpStream,
    stream: SecretStream,
    hub: ReplicationHub<MemoryStorage>,
    sid: Option<StreamId>,
    start: Instant,
    eof: bool,
    closed: bool,
    events: Vec<HubEvent>,
}

impl Driver {
    fn new(socket: TcpStream, stream: SecretStream, hub: ReplicationHub<MemoryStorage>) -> Self {
        socket.set_nodelay(true).unwrap();
        socket
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Driver {
            socket,
            stream,
            hub,
            sid: None,
            start: Instant::now(),
            eof: false,
            closed: false,
            events: Vec::new(),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn flush(&mut self) {
        while let Some((_, frame)) = self.hub.poll_transmit() {
            self.stream.write(&frame).expect("secret-stream write");
        }
        self.events
            .extend(std::iter::from_fn(|| self.hub.poll_event()));
        while let Some(bytes) = self.stream.poll_transmit() {
            if self.socket.write_all(&bytes).is_err() {
                break;
            }
        }
        if self.stream.wants_shutdown() {
            let _ = self.socket.shutdown(Shutdown::Write);
        }
    }

    fn handle_stream_events(&mut self) {
        while let Some(e) = self.stream.poll_event() {
            let now = self.now();
            match e {
                StreamEvent::Connected { handshake_hash, .. } => {
                    let sid = self
                        .hub
                        .add_stream(self.stream.is_initiator(), handshake_hash)
                        .unwrap();
                    self.sid = Some(sid);
                }
                StreamEvent::Message(m) => {
                    let sid = self.sid.expect("message before connect");
                    if self.hub.has_stream(sid) {
                        block_on(self.hub.handle_frame(now, sid, &m)).unwrap();
                    }
                }
                StreamEvent::End => self.stream.end(),
                StreamEvent::Closed(err) => {
                    assert_eq!(err, None, "secret-stream closed with an error");
                    self.closed = true;
                    if let Some(sid) = self.sid {
                        block_on(self.hub.remove_stream(now, sid)).unwrap();
                    }
                }
            }
            self.flush();
        }
    }

    /// One round: flush, read (at most `max_wait` or until the next timer), feed, run timers.
    fn step(&mut self, max_wait: Duration) {
        self.flush();
        if self.closed {
            std::thread::sleep(max_wait.min(Duration::from_millis(5)));
            return;
        }
        let mut wait = max_wait;
        let timers = [self.stream.poll_timeout(), self.hub.poll_timeout()];
        for at in timers.into_iter().flatten() {
            wait = wait.min(Duration::from_millis(at.saturating_sub(self.now())));
        }
        let mut buf = vec![0u8; 64 * 1024];
        if self.eof {
            std::thread::sleep(wait);
        } else {
            self.socket
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .unwrap();
            let now = self.now();
            match self.socket.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    self.stream.handle_eof(now);
                }
                Ok(n) => self.stream.handle_input(now, &buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => {
                    self.eof = true;
                    self.stream.handle_eof(now);
                }
            }
        }
        self.handle_stream_events();
        let now = self.now();
        if self.stream.poll_timeout().is_some_and(|t| t <= now) {
            self.stream.handle_timeout(now);
            self.handle_stream_events();
        }
        if self.hub.poll_timeout().is_some_and(|t| t <= now) {
            block_on(self.hub.handle_timeout(now)).unwrap();
        }
        self.flush();
    }

    fn pump_until(
        &mut self,
        what: &str,
        peer: &mut NodePeer,
        mut done: impl FnMut(&mut Self) -> bool,
    ) {
        let deadline = Instant::now() + STEP;
        while !done(self) {
            if Instant::now() >= deadline {
                let lines: Vec<Value> =
                    std::iter::from_fn(|| peer.next(Duration::from_millis(100)).ok()).collect();
                panic!(
                    "timed out waiting for {what}; events {:?}; node printed {lines:?}; stderr:\n{}",
                    self.events,
                    peer.stderr()
                );
            }
            assert!(!self.closed, "stream closed while waiting for {what}");
            self.step(Duration::from_millis(20));
        }
    }
}

fn js_server(config: Value) -> (NodePeer, TcpStream, Value) {
    let mut peer = NodePeer::spawn(SCRIPT, &config).expect("spawn node");
    let ready = if config["role"] == "writer" {
        peer.next_event("ready", STEP).unwrap()
    } else {
        Value::Null
    };
    let listening = peer.next_event("listening", STEP).unwrap();
    let port = listening["port"].as_u64().unwrap() as u16;
    let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    (peer, socket, ready)
}

fn js_client(config: Value, listener: &TcpListener) -> (NodePeer, TcpStream) {
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

fn rust_reads_js_core(encryption_key: Option<[u8; 32]>) {
    const COUNT: u64 = 120;
    const LIVE: u64 = 3;
    let mut config = json!({
        "mode": "server", "role": "writer", "streamSeed": hex::encode([0x21; 32]),
        "seed": hex::encode([0x5a; 32]), "count": COUNT, "live": LIVE, "deadline": 40000,
    });
    if let Some(k) = encryption_key {
        config["encryptionKey"] = json!(hex::encode(k));
    }
    let (mut peer, socket, ready) = js_server(config);
    let key: [u8; 32] = hex::decode(ready["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let core = block_on(Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key: Some(key),
            encryption_key,
            ..CreateOptions::default()
        },
    ))
    .unwrap();
    assert_eq!(
        hex::encode(core.discovery_key()),
        ready["discoveryKey"].as_str().unwrap()
    );
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(core, Options::default()))
        .unwrap();
    block_on(hub.replicator_mut(&dk).unwrap().download(0, 0, None)).unwrap();
    let stream = SecretStream::new_initiator(
        KeyPair::from_seed(&[0x12; 32]),
        entropy(1),
        StreamOptions::default(),
        0,
    )
    .unwrap();
    let mut d = Driver::new(socket, stream, hub);
    let total = COUNT + LIVE;
    d.pump_until("the full download incl. live appends", &mut peer, |d| {
        let c = d.hub.replicator(&dk).unwrap().core();
        c.length() == total && c.contiguous_length() == total
    });
    let c = d.hub.replicator(&dk).unwrap().core();
    block_on(c.verify_all()).unwrap();
    for k in 0..total {
        assert_eq!(block_on(c.get(k)).unwrap(), Some(block(k)), "block {k}");
    }
    assert_eq!(c.encrypted(), encryption_key.is_some());
    // Blocks arrived one verified proof at a time, and the live ones by upgrade.
    let blocks = d
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                HubEvent::Core {
                    event: Event::Block { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(blocks as u64, total);
    assert!(d.events.iter().any(|e| matches!(
        e,
        HubEvent::Core { event: Event::Upgraded { length, .. }, .. } if *length == total
    )));
    assert!(d.events.iter().all(|e| !matches!(
        e,
        HubEvent::Core {
            event: Event::InvalidData { .. } | Event::InvalidRequest { .. },
            ..
        }
    )));
    // Close: end our side, JS ends too.
    d.stream.end();
    d.pump_until("the clean close", &mut peer, |d| d.closed);
    let closed = peer.next_event("closed", STEP).unwrap();
    assert_eq!(closed["length"], json!(total));
    assert_eq!(peer.wait(STEP), Some(true));
}

#[test]
fn rust_reads_js_written_core() {
    rust_reads_js_core(None);
}

#[test]
fn rust_reads_js_written_encrypted_core() {
    rust_reads_js_core(Some([0x77; 32]));
}

#[test]
fn js_reads_rust_written_core() {
    const COUNT: u64 = 100;
    const LIVE: u64 = 2;
    let mut core = block_on(Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[0x3c; 32])),
            ..CreateOptions::default()
        },
    ))
    .unwrap();
    for k in 0..COUNT {
        block_on(core.append(&[&block(k)])).unwrap();
    }
    let key = *core.key();
    let mut hub = ReplicationHub::new();
    let dk = hub
        .add_core(Replicator::new(core, Options::default()))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (mut peer, socket) = js_client(
        json!({
            "mode": "client", "port": port, "role": "reader",
            "streamSeed": hex::encode([0x22; 32]), "key": hex::encode(key),
            "expect": COUNT + LIVE, "deadline": 40000,
        }),
        &listener,
    );
    let stream = SecretStream::new_responder(
        KeyPair::from_seed(&[0x13; 32]),
        entropy(2),
        StreamOptions::default(),
        0,
    )
    .unwrap();
    let mut d = Driver::new(socket, stream, hub);
    // Wait until the JS reader has upgraded to our length, then append live.
    d.pump_until("the JS reader to reach our length", &mut peer, |d| {
        d.events.iter().any(|e| {
            matches!(
                e,
                HubEvent::Core { event: Event::PeerSync { length, .. }, .. } if *length == COUNT
            )
        })
    });
    let now = d.now();
    let rep = d.hub.replicator_mut(&dk).unwrap();
    let live: Vec<Vec<u8>> = (COUNT..COUNT + LIVE).map(block).collect();
    let live: Vec<&[u8]> = live.iter().map(Vec::as_slice).collect();
    block_on(rep.append(now, &live)).unwrap();
    d.hub.flush();
    // JS downloads everything, prints it and ends the stream; we end ours in reply.
    d.pump_until("the JS reader to finish and close", &mut peer, |d| d.closed);
    // Everything JS printed up to its close: no verification or invalid-request complaints.
    let mut lines = Vec::new();
    loop {
        let v = peer.next(STEP).unwrap();
        let event = v["event"].as_str().unwrap_or_default().to_owned();
        lines.push(v);
        if event == "closed" {
            break;
        }
    }
    assert!(
        lines
            .iter()
            .all(|v| v["event"] != "verification-error" && v["event"] != "invalid-request"),
        "{lines:?}"
    );
    let done = lines
        .iter()
        .find(|v| v["event"] == "done")
        .expect("JS finished");
    assert_eq!(done["length"], json!(COUNT + LIVE));
    let blocks = done["blocks"].as_array().unwrap();
    assert_eq!(blocks.len() as u64, COUNT + LIVE);
    for (k, b) in blocks.iter().enumerate() {
        assert_eq!(
            hex::decode(b.as_str().unwrap()).unwrap(),
            block(k as u64),
            "block {k}"
        );
    }
    let closed = lines.last().unwrap();
    assert_eq!(closed["error"], Value::Null, "{closed}");
    assert_eq!(peer.wait(STEP), Some(true));
}
