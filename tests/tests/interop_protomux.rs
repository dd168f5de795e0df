//! protomux interop: the real replication capture replayed through two Rust engines, and live
//! sessions against protomux 3.12.1 under node (`tests/interop/protomux-peer.js`) over a plain TCP
//! socket with `uint24le length ‖ frame` framing, with Rust as the opener and as the answerer.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use hyperpunch_core::encoding::{write_buffer, write_string, write_uint, Decode};
use hyperpunch_core::hypercore::messages::{Handshake, Message};
use hyperpunch_core::protomux::{ChannelId, ChannelOptions, Event, Frame, Protomux};
use hyperpunch_tests::node::run_script;
use serde_json::{json, Value};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/data/");

fn string(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_string(&mut out, s);
    out
}

fn uint(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    write_uint(&mut out, n);
    out
}

fn buffer(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_buffer(&mut out, b);
    out
}

fn drain_events(m: &mut Protomux) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

// -------------------------------------------------------------------------------------------
// 04-replication-capture.out

/// `(side, frame)` for every protomux frame of the capture (`I-> hex` / `R-> hex` lines).
fn capture() -> (Vec<u8>, Vec<(char, Vec<u8>)>) {
    let text = std::fs::read_to_string(format!("{VECTORS}04-replication-capture.out"))
        .expect("cannot read 04-replication-capture.out");
    let mut discovery_key = Vec::new();
    let mut frames = Vec::new();
    for line in text.lines() {
        if let Some(dk) = line.strip_prefix("discoveryKey ") {
            discovery_key = hex::decode(dk.trim()).unwrap();
        }
        for side in ['I', 'R'] {
            if let Some(h) = line.strip_prefix(&format!("{side}-> ")) {
                frames.push((side, hex::decode(h.trim()).unwrap()));
            }
        }
    }
    (discovery_key, frames)
}

/// Every frame of the capture decodes, re-encodes to itself, and carries hypercore messages
/// that decode with `hypercore::messages`.
#[test]
fn capture_04_frames_decode() {
    let (discovery_key, frames) = capture();
    assert_eq!(frames.len(), 18, "protomux frames in the capture");
    let (mut opens, mut messages, mut closes) = (0, 0, 0);
    for (side, bytes) in &frames {
        let frame = Frame::decode(bytes).unwrap_or_else(|e| panic!("{side}: {e}"));
        assert_eq!(&frame.to_bytes(), bytes, "re-encoding");
        match frame {
            Frame::Open(open) => {
                opens += 1;
                assert_eq!(open.local_id, 1);
                assert_eq!(open.protocol, "hypercore/alpha");
                assert_eq!(open.id, Some(&discovery_key[..]));
                let hs = Handshake::from_bytes(open.handshake).unwrap();
                assert!(hs.seeks);
                assert_eq!(open.handshake.len(), 33);
            }
            Frame::Message {
                channel,
                message_type,
                payload,
            } => {
                assert_eq!(channel, 1);
                messages += 1;
                let m = Message::decode(message_type, payload).unwrap();
                assert_eq!(m.type_id(), message_type);
            }
            Frame::Batch(items) => {
                for item in items {
                    assert_eq!(item.channel, 1);
                    messages += 1;
                    Message::decode(item.message_type, item.payload).unwrap();
                }
            }
            Frame::Close { local_id } => {
                closes += 1;
                assert_eq!(local_id, 1);
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!((opens, messages, closes), (2, 16, 1));
}

/// Two engines replay the capture: each side re-sends its frames' contents through the engine
/// (batches corked, or inside the cork a received multi-message batch holds, as JS does) and
/// every produced frame equals the captured one; the other side gets the hypercore messages.
#[test]
fn capture_04_replayed_byte_identical() {
    let (discovery_key, frames) = capture();
    let mut i = Protomux::new();
    let mut r = Protomux::new();
    // As hypercore does (`mux.pair({ protocol: 'hypercore/alpha' }, ...)`): an open that arrives
    // before ours is parked for pairing, not rejected.
    i.pair("hypercore/alpha", None);
    r.pair("hypercore/alpha", None);
    let mut chan: [Option<ChannelId>; 2] = [None, None];
    let mut sent: [Vec<(u64, Vec<u8>)>; 2] = [Vec::new(), Vec::new()];
    let mut got: [Vec<(u64, Vec<u8>)>; 2] = [Vec::new(), Vec::new()];
    let mut handshakes: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut closed_by_remote = false;

    for (side, bytes) in &frames {
        let me = usize::from(*side == 'R');
        let (this, other) = if me == 0 {
            (&mut i, &mut r)
        } else {
            (&mut r, &mut i)
        };
        let mut on_events = |events: Vec<Event>, got: &mut Vec<(u64, Vec<u8>)>| {
            for e in events {
                match e {
                    Event::Message {
                        message_type,
                        payload,
                        ..
                    } => got.push((message_type, payload)),
                    Event::ChannelOpened { handshake, .. } => handshakes[me] = handshake,
                    Event::ChannelClosed { by_remote, .. } => closed_by_remote |= by_remote,
                    // Answered by our own open of the same (protocol, id) in the next frame.
                    Event::PairRequest { .. } => {}
                    e => panic!("unexpected {e:?}"),
                }
            }
        };
        match Frame::decode(bytes).unwrap() {
            Frame::Open(open) => {
                assert!(!this.is_corked());
                let c = this
                    .open(
                        ChannelOptions::new("hypercore/alpha")
                            .aliases(["hypercore"])
                            .id(discovery_key.clone())
                            .handshake(open.handshake.to_vec()),
                    )
                    .unwrap();
                chan[me] = Some(c);
                on_events(drain_events(this), &mut got[me]);
            }
            Frame::Batch(items) => {
                let auto = this.is_corked();
                if !auto {
                    this.cork();
                }
                for item in &items {
                    this.send(chan[me].unwrap(), item.message_type, item.payload)
                        .unwrap();
                    sent[me].push((item.message_type, item.payload.to_vec()));
                }
                if auto {
                    // Handling the events releases the cork the received batch took.
                    on_events(drain_events(this), &mut got[me]);
                } else {
                    this.uncork();
                }
            }
            Frame::Message {
                message_type,
                payload,
                ..
            } => {
                on_events(drain_events(this), &mut got[me]);
                this.send(chan[me].unwrap(), message_type, payload).unwrap();
                sent[me].push((message_type, payload.to_vec()));
            }
            Frame::Close { .. } => {
                on_events(drain_events(this), &mut got[me]);
                this.close(chan[me].unwrap()).unwrap();
            }
            other => panic!("unexpected frame {other:?}"),
        }
        let out: Vec<Vec<u8>> = std::iter::from_fn(|| this.poll_transmit()).collect();
        assert_eq!(
            out.iter().map(hex::encode).collect::<Vec<_>>(),
            vec![hex::encode(bytes)],
            "{side} frame"
        );
        other.handle_frame(bytes).unwrap();
    }
    for (me, m) in [&mut i, &mut r].into_iter().enumerate() {
        for e in drain_events(m) {
            match e {
                Event::Message {
                    message_type,
                    payload,
                    ..
                } => got[me].push((message_type, payload)),
                Event::ChannelClosed { by_remote, .. } => closed_by_remote |= by_remote,
                e => panic!("unexpected {e:?}"),
            }
        }
    }
    assert_eq!(got[0], sent[1], "I received what R sent");
    assert_eq!(got[1], sent[0], "R received what I sent");
    for (t, p) in got.iter().flatten() {
        Message::decode(*t, p).unwrap();
    }
    assert!(closed_by_remote, "R saw I's close");
    // Each side saw the other's handshake.
    for hs in &handshakes {
        assert!(Handshake::from_bytes(hs).unwrap().seeks);
    }
    assert_ne!(handshakes[0], handshakes[1]);
}

// -------------------------------------------------------------------------------------------
// Live sessions against protomux under node

const KV_ID: [u8; 3] = [0xc0, 0xff, 0xee];
const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Opener,
    Answerer,
}

/// The Rust peer: the same script as `protomux-peer.js`, over a blocking socket.
struct Peer {
    role: Role,
    mux: Protomux,
    stream: TcpStream,
    inbuf: Vec<u8>,
    tx: Vec<String>,
    rx: Vec<String>,
    events: Vec<String>,
    messages: Vec<(String, u64, Vec<u8>)>,
    chat: Option<ChannelId>,
    kv: Option<ChannelId>,
    names: Vec<(ChannelId, String)>,
    write_closed: bool,
    /// The opener got the answerer's "bye".
    bye: bool,
}

impl Peer {
    fn name(&self, c: ChannelId) -> String {
        self.names
            .iter()
            .find(|(id, _)| *id == c)
            .map_or_else(|| format!("{c:?}"), |(_, n)| n.clone())
    }

    fn open(&mut self, name: &str, options: ChannelOptions) -> ChannelId {
        let c = self.mux.open(options).unwrap();
        self.names.push((c, name.to_string()));
        c
    }

    fn start(&mut self) {
        let hs = uint(if self.role == Role::Opener { 1 } else { 2 });
        let chat = self.open(
            "chat",
            ChannelOptions::new("hp/chat")
                .aliases(["hp/chat/v2"])
                .handshake(hs)
                .message_types(1),
        );
        self.chat = Some(chat);
        match self.role {
            Role::Opener => {
                let kv = self.open(
                    "kv",
                    ChannelOptions::new("hp/kv")
                        .id(KV_ID.to_vec())
                        .handshake(string("hello from rust"))
                        .message_types(3),
                );
                self.kv = Some(kv);
                self.open("hp/unknown", ChannelOptions::new("hp/unknown"));
                self.open("hp/maybe", ChannelOptions::new("hp/maybe"));
            }
            Role::Answerer => {
                self.mux.pair("hp/kv", None);
                self.mux.pair("hp/maybe", None);
            }
        }
    }

    fn send_script(&mut self) {
        let (kv, chat) = (self.kv.unwrap(), self.chat.unwrap());
        let m = &mut self.mux;
        m.send(kv, 0, &string("rust says hi")).unwrap();
        m.send(kv, 1, &uint(300)).unwrap();
        // Type 3 is unknown to the JS channel: ignored there.
        m.send(kv, 3, b"ignored by js").unwrap();
        m.cork();
        m.send(kv, 2, &buffer(&[0, 1, 0xff])).unwrap();
        m.send(kv, 0, &string("batched 1")).unwrap();
        m.send(kv, 1, &uint(1 << 40)).unwrap();
        m.send(chat, 0, &string("chat in batch")).unwrap();
        m.uncork();
        m.send(kv, 0, &string("bye")).unwrap();
    }

    /// The opener closes chat and kv (and the answerer then ends the connection) once it has
    /// the answerer's "bye" and both rejects: JS answers an open it declines after a pairing
    /// callback (a later tick), and a reject not yet written when the socket ends is never sent.
    fn finish_if_done(&mut self) {
        let rejected = self
            .events
            .iter()
            .filter(|e| e.starts_with("rejected "))
            .count();
        if self.role == Role::Opener && self.bye && rejected == 2 && !self.write_closed {
            self.mux.close(self.chat.unwrap()).unwrap();
            self.mux.close(self.kv.unwrap()).unwrap();
            self.flush();
            self.close_write();
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::ChannelOpened { channel, handshake } => {
                let name = self.name(channel);
                self.events
                    .push(format!("open {name} {}", hex::encode(&handshake)));
                if Some(channel) == self.kv {
                    self.send_script();
                }
            }
            Event::ChannelRejected { channel } => {
                let name = self.name(channel);
                self.events.push(format!("rejected {name}"));
                self.finish_if_done();
            }
            Event::ChannelClosed { channel, by_remote } => {
                let name = self.name(channel);
                self.events.push(format!("close {name} remote={by_remote}"));
                if self.role == Role::Answerer && Some(channel) == self.kv && by_remote {
                    self.flush();
                    self.close_write();
                }
            }
            Event::Message {
                channel,
                message_type,
                payload,
            } => {
                let name = self.name(channel);
                let bye = name == "kv" && message_type == 0 && payload == string("bye");
                self.messages.push((name, message_type, payload));
                if bye {
                    self.bye = true;
                    self.finish_if_done();
                }
            }
            Event::PairRequest { protocol, id, .. } => {
                self.events.push(format!(
                    "pair {protocol} {}",
                    id.as_deref().map(hex::encode).unwrap_or_default()
                ));
                if protocol == "hp/kv" {
                    let kv = self.open(
                        "kv",
                        ChannelOptions::new("hp/kv")
                            .id(id.unwrap_or_default())
                            .handshake(string("welcome from rust"))
                            .message_types(3),
                    );
                    self.kv = Some(kv);
                } else {
                    self.mux.reject(&protocol, id.as_deref()).unwrap();
                }
            }
        }
    }

    fn flush(&mut self) {
        while let Some(frame) = self.mux.poll_transmit() {
            assert!(!self.write_closed, "frame after the write side closed");
            let len = frame.len() as u32;
            assert!(len < 1 << 24);
            let mut out = len.to_le_bytes()[..3].to_vec();
            out.extend_from_slice(&frame);
            self.stream.write_all(&out).unwrap();
            self.tx.push(hex::encode(&frame));
        }
    }

    fn close_write(&mut self) {
        self.write_closed = true;
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    fn pump_events(&mut self) {
        while let Some(e) = self.mux.poll_event() {
            self.on_event(e);
        }
        self.flush();
    }

    /// Runs until the remote closes the connection.
    fn run(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        self.start();
        self.flush();
        let mut buf = [0u8; 4096];
        loop {
            assert!(Instant::now() < deadline, "live session timed out");
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("read: {e}"),
            }
            while self.inbuf.len() >= 3 {
                let len = usize::from(self.inbuf[0])
                    | usize::from(self.inbuf[1]) << 8
                    | usize::from(self.inbuf[2]) << 16;
                if self.inbuf.len() < 3 + len {
                    break;
                }
                let frame: Vec<u8> = self.inbuf.drain(..3 + len).skip(3).collect();
                self.rx.push(hex::encode(&frame));
                self.mux.handle_frame(&frame).unwrap();
                self.pump_events();
            }
        }
        assert!(self.inbuf.is_empty(), "partial frame at EOF");
        self.pump_events();
    }
}

/// Close messages in hex frames, top-level or inside a batch (JS corks its two closes into one).
fn closes(frames: &[String]) -> usize {
    controls(frames, 3)
}

/// Reject messages in hex frames, top-level or inside a batch (JS answers a batch of opens with
/// one batch, so whether its rejects travel alone or together depends on how the opens arrived).
fn rejects(frames: &[String]) -> usize {
    controls(frames, 2)
}

/// Control messages of `message_type` on channel 0, top-level or inside a batch.
fn controls(frames: &[String], message_type: u64) -> usize {
    frames
        .iter()
        .map(|f| match Frame::decode(&hex::decode(f).unwrap()).unwrap() {
            Frame::Close { .. } if message_type == 3 => 1,
            Frame::Reject { .. } if message_type == 2 => 1,
            Frame::Batch(items) => items
                .iter()
                .filter(|i| i.channel == 0 && i.message_type == message_type)
                .count(),
            _ => 0,
        })
        .sum()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn live(role: Role) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let js_role = if role == Role::Opener {
        "answerer"
    } else {
        "opener"
    };
    let input = json!({ "port": port, "role": js_role });
    let js = thread::spawn(move || {
        run_script("protomux-peer.js", &input, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"))
    });

    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if js.is_finished() {
                    js.join().unwrap();
                    panic!("node exited without connecting");
                }
                assert!(Instant::now() < deadline, "node never connected");
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut peer = Peer {
        role,
        mux: Protomux::new(),
        stream,
        inbuf: Vec::new(),
        tx: Vec::new(),
        rx: Vec::new(),
        events: Vec::new(),
        messages: Vec::new(),
        chat: None,
        kv: None,
        names: Vec::new(),
        write_closed: false,
        bye: false,
    };
    peer.run();
    drop(peer.stream.try_clone());
    let _ = peer.stream.shutdown(Shutdown::Both);
    let report = js.join().expect("node thread");

    // Byte-exact in both directions: what one side wrote is what the other read, frame by frame.
    assert_eq!(
        strings(&report["rx"]),
        peer.tx,
        "JS received exactly Rust's frames"
    );
    assert_eq!(
        strings(&report["tx"]),
        peer.rx,
        "Rust received exactly JS's frames"
    );
    // Both directions carried batch frames; the opener closed both of its channels (a channel
    // closed by the remote is not closed again on the wire, as in JS).
    for frames in [&peer.tx, &peer.rx] {
        assert!(
            frames.iter().any(|f| f.starts_with("0000")),
            "a batch frame"
        );
    }
    let (closer, other) = if role == Role::Opener {
        (&peer.tx, &peer.rx)
    } else {
        (&peer.rx, &peer.tx)
    };
    assert_eq!(closes(closer), 2, "the opener closes chat and kv");
    assert_eq!(closes(other), 0, "the answerer sends no close of its own");
    let rejects_by = if role == Role::Opener {
        &peer.rx
    } else {
        &peer.tx
    };
    assert_eq!(rejects(rejects_by), 2, "the answerer rejected two opens");

    // What JS decoded from Rust's messages (the type-3 message is unknown to JS: ignored).
    let expected_js_messages = json!([
        {"channel": "kv", "type": 0, "value": "rust says hi"},
        {"channel": "kv", "type": 1, "value": 300},
        {"channel": "kv", "type": 2, "value": "0001ff"},
        {"channel": "kv", "type": 0, "value": "batched 1"},
        {"channel": "kv", "type": 1, "value": 1u64 << 40},
        {"channel": "chat", "type": 0, "value": "chat in batch"},
        {"channel": "kv", "type": 0, "value": "bye"},
    ]);
    assert_eq!(report["messages"], expected_js_messages);
    // What Rust received from JS, byte for byte.
    let expected_rust_messages: Vec<(String, u64, Vec<u8>)> = vec![
        ("kv".into(), 0, string("js says hi")),
        ("kv".into(), 1, uint(300)),
        ("kv".into(), 2, buffer(&[0, 1, 0xff])),
        ("kv".into(), 0, string("batched 1")),
        ("kv".into(), 1, uint(1 << 40)),
        ("chat".into(), 0, string("chat in batch")),
        ("kv".into(), 0, string("bye")),
    ];
    assert_eq!(peer.messages, expected_rust_messages);

    // Channel lifecycle on both sides (order across channels depends on timing: compare sorted).
    let js_events: Vec<String> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["channel"].as_str().or(e["protocol"].as_str()).unwrap();
            match e["event"].as_str().unwrap() {
                "open" => format!("open {name} {}", e["handshake"]),
                "pair" => format!("pair {name} {}", e["id"]),
                other => format!("{other} {name} remote={}", e["remote"]),
            }
        })
        .collect();
    let hex_of = |b: Vec<u8>| hex::encode(b);
    let (want_js, want_rust) = match role {
        Role::Opener => (
            vec![
                "open chat 1".to_string(),
                "pair hp/kv \"c0ffee\"".into(),
                "pair hp/maybe null".into(),
                "open kv \"hello from rust\"".into(),
                "close chat remote=true".into(),
                "close kv remote=true".into(),
            ],
            vec![
                format!("open chat {}", hex_of(uint(2))),
                format!("open kv {}", hex_of(string("welcome from js"))),
                "rejected hp/unknown".to_string(),
                "rejected hp/maybe".into(),
                "close chat remote=false".into(),
                "close kv remote=false".into(),
            ],
        ),
        Role::Answerer => (
            vec![
                "open chat 2".to_string(),
                "open kv \"welcome from rust\"".into(),
                "rejected hp/unknown remote=true".into(),
                "rejected hp/maybe remote=true".into(),
                "close chat remote=false".into(),
                "close kv remote=false".into(),
            ],
            vec![
                format!("open chat {}", hex_of(uint(1))),
                "pair hp/kv c0ffee".to_string(),
                format!("open kv {}", hex_of(string("hello from js"))),
                "pair hp/maybe ".into(),
                "close chat remote=true".into(),
                "close kv remote=true".into(),
            ],
        ),
    };
    assert_eq!(sorted(js_events), sorted(want_js), "JS channel events");
    assert_eq!(
        sorted(peer.events),
        sorted(want_rust),
        "Rust channel events"
    );
    assert!(peer.mux.is_idle(), "every Rust channel closed");
}

/// Rust opens first (kv, chat, an unknown protocol and one JS declines); JS answers.
#[test]
fn live_rust_opens_js_answers() {
    live(Role::Opener);
}

/// JS opens first; Rust answers on pair requests and rejects.
#[test]
fn live_js_opens_rust_answers() {
    live(Role::Answerer);
}
