//! A Rust replication stack over one blocking TCP socket, for live tests against a JS peer:
//! secret-stream → protomux → [`ReplicationHub`] → [`Replicator`](hyperpunch_core::replication::Replicator),
//! pumped by the test itself ([`Driver::step`], [`Driver::pump_until`]). Every frame of one
//! socket read goes to the hub in one [`ReplicationHub::handle_frames`] call, as the native
//! transport does, so the blocks they carry are verified and stored together. Plus the helpers
//! the replication interop tests share: starting a JS peer script as server or client, and
//! reading its lines.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use futures_executor::block_on;
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::replication::{Event, HubEvent, ReplicationHub, StreamId};
use hyperpunch_core::secretstream::{
    Entropy, Event as StreamEvent, Options as StreamOptions, SecretStream, StreamError,
};
use hyperpunch_core::storage::{MemoryStorage, Storage};
use serde_json::Value;

use crate::node_peer::NodePeer;

/// How long each step of a test may take.
pub const STEP: Duration = Duration::from_secs(30);

/// Deterministic secret-stream entropy from `tag`.
pub fn entropy(tag: u8) -> Entropy {
    let mut bytes = [0u8; 64];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = tag.wrapping_mul(53).wrapping_add(i as u8);
    }
    Entropy::from_bytes(&bytes)
}

/// secret-stream + replication hub over one blocking socket.
pub struct Driver<S: Storage = MemoryStorage> {
    pub socket: TcpStream,
    pub stream: SecretStream,
    pub hub: ReplicationHub<S>,
    pub sid: Option<StreamId>,
    pub start: Instant,
    pub eof: bool,
    pub closed: bool,
    pub events: Vec<HubEvent>,
}

impl<S: Storage> Driver<S> {
    /// A driver dialing as the Noise initiator, static key from `key_seed`, entropy `tag`.
    pub fn initiator(socket: TcpStream, hub: ReplicationHub<S>, key_seed: u8, tag: u8) -> Self {
        let stream = SecretStream::new_initiator(
            KeyPair::from_seed(&[key_seed; 32]),
            entropy(tag),
            StreamOptions::default(),
            0,
        )
        .unwrap();
        Driver::new(socket, stream, hub)
    }

    /// End our side, pump until the stream closed cleanly, and return the node peer's
    /// `closed` line.
    pub fn close(&mut self, peer: &mut NodePeer) -> Value {
        self.stream.end();
        self.pump_until("the clean close", peer, |d| d.closed);
        peer.next_event("closed", STEP).unwrap()
    }

    pub fn new(socket: TcpStream, stream: SecretStream, hub: ReplicationHub<S>) -> Self {
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

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn flush(&mut self) {
        while let Some((_, frame)) = self.hub.poll_transmit() {
            match self.stream.write(&frame) {
                // The stream ended or closed (the peer may close first): what the hub still
                // sends (closing its channels) has nowhere to go.
                Err(StreamError::NotWritable) => {}
                r => r.expect("secret-stream write"),
            }
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

    pub fn handle_stream_events(&mut self) {
        // Frames of one read go to the hub together (as the native transport hands them over).
        let mut frames: Vec<Vec<u8>> = Vec::new();
        while let Some(e) = self.stream.poll_event() {
            let now = self.now();
            if let StreamEvent::Message(m) = e {
                frames.push(m);
                continue;
            }
            self.deliver(&mut frames);
            match e {
                StreamEvent::Connected { handshake_hash, .. } => {
                    let sid = self
                        .hub
                        .add_stream(self.stream.is_initiator(), handshake_hash)
                        .unwrap();
                    self.sid = Some(sid);
                }
                StreamEvent::Message(_) => unreachable!(),
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
        self.deliver(&mut frames);
        self.flush();
    }

    /// Hand `frames` (taken) to the hub in one call.
    fn deliver(&mut self, frames: &mut Vec<Vec<u8>>) {
        if frames.is_empty() {
            return;
        }
        let sid = self.sid.expect("message before connect");
        if self.hub.has_stream(sid) {
            let now = self.now();
            block_on(self.hub.handle_frames(now, sid, frames.drain(..))).unwrap();
        }
        frames.clear();
    }

    /// One round: flush, read (at most `max_wait` or until the next timer), feed, run timers.
    pub fn step(&mut self, max_wait: Duration) {
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

    pub fn pump_until(
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

/// Start a JS peer `script` as a server (a writer prints `ready` first) and connect to it:
/// the peer, the socket, and its `ready` line (`null` for a reader).
pub fn js_server(script: &str, config: Value) -> (NodePeer, TcpStream, Value) {
    let mut peer = NodePeer::spawn(script, &config).expect("spawn node");
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

/// Start a JS peer `script` as a client of `listener` and accept its connection.
pub fn js_client(script: &str, config: Value, listener: &TcpListener) -> (NodePeer, TcpStream) {
    let peer = NodePeer::spawn(script, &config).expect("spawn node");
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

/// Whether `events` hold no invalid data or request.
pub fn no_complaints(events: &[HubEvent]) -> bool {
    events.iter().all(|e| {
        !matches!(
            e,
            HubEvent::Core {
                event: Event::InvalidData { .. } | Event::InvalidRequest { .. },
                ..
            }
        )
    })
}

/// The key a JS writer printed in its `ready` line.
pub fn key_of(ready: &Value) -> [u8; 32] {
    hex::decode(ready["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// Every line the node peer prints until its `closed` line.
pub fn lines_until_closed(peer: &mut NodePeer) -> Vec<Value> {
    let mut lines = Vec::new();
    loop {
        let v = peer
            .next(STEP)
            .unwrap_or_else(|e| panic!("{e:?} after {lines:?}; stderr:\n{}", peer.stderr()));
        let closed = v["event"] == "closed";
        lines.push(v);
        if closed {
            return lines;
        }
    }
}
