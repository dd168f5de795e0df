//! Hyperswarm in the page: [`Swarm`] drives the core's hyperswarm engine
//! ([`hyperpunch_core::swarm::Swarm`], hyperswarm 4.17.2's topics, refreshes, connection queue,
//! retries and duplicate tie-break) over one dht-relay session ([`Relay`]): the engine's
//! announces and lookups go through the relay, its server listens there, and its connections
//! are relayed streams.
//!
//! Each connection is a [`SwarmConnection`]: the encrypted stream's messages (read, write, end,
//! destroy), or a core's replication over it ([`replicate_connection`], JS
//! `core.replicate(conn)`). A connection's messages wait in the page until read.
//!
//! What the relay sees: non-custodial by default (the swarm's key pair never leaves the page,
//! which runs Noise and secret-stream for every connection; the relay forwards ciphertext and
//! sees who connects to whom and the topics announced and looked up). A relay that refuses
//! that mode (close code 4005) is retried custodially; `custodial: true` asks for it (a JS
//! `@hyperswarm/dht-relay`, which stores no non-custodial announcement, needs it): the relay
//! then holds the swarm's key pair (made for this swarm alone) and reads the traffic.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::dht::messages::PeerRecord;
use hyperpunch_core::secretstream::{Event as StreamEvent, Options as StreamOptions};
use hyperpunch_core::swarm::{
    Action, ConnectionId, Event, FlushId, JoinOptions, QueryId, QueryKind, SessionId,
    Swarm as Engine, SwarmConfig,
};
use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

use crate::chan::{channel, Sender};
use crate::duplex::{Duplex, DuplexError};
use crate::js::{js_err, Hypercore};
use crate::relay::{Relay, RelayServer, RelayStream};
use crate::replicate::{performance_now, replicate_link, sleep, FramedLink, Link, SharedHost};
use hyperpunch_core::replication::ReplicationHost;

/// How long `destroy` waits for the connections to close before closing the session.
const DESTROY_GRACE_MS: u64 = 2000;

/// Unread bytes a connection holds before its pump stops reading the relayed stream (and
/// decrypting it); it reads again once the reader (JS `read`, or a replication) takes the inbox
/// below this. A connection left unread, or read slowly, so holds at most this much decrypted
/// (plus the messages of one received chunk).
const HIGH_WATER: usize = 4 << 20;

/// An armed `setTimeout`.
type Timer = Pin<Box<dyn Future<Output = ()>>>;

fn now_ms() -> u64 {
    performance_now().max(0.0) as u64
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

/// One connection's state, shared by its pump (the relayed stream and its secret-stream), its
/// reader (JS, or a replication) and the swarm.
#[derive(Default)]
struct Conn {
    /// Set once the stream's handshake is known (at once when the relay ran it).
    handshake_hash: Option<[u8; 64]>,
    /// Messages received and not yet read.
    inbox: VecDeque<Vec<u8>>,
    /// The bytes in `inbox`.
    inbox_bytes: usize,
    remote_ended: bool,
    /// The stream closed: `Some(error)` (None: cleanly).
    closed: Option<Option<String>>,
    /// Messages to send.
    outbox: VecDeque<Vec<u8>>,
    outbox_bytes: usize,
    end_requested: bool,
    destroy_requested: bool,
    /// A message went each way (JS `rawBytesRead > 0 && rawBytesWritten > 0`: the swarm keeps
    /// such a connection over a newer duplicate).
    read_any: bool,
    wrote_any: bool,
    /// A reader took the messages (a replication, or JS reads).
    taken: Option<&'static str>,
    pump_waker: Option<Waker>,
    /// Readers, `whenClosed` and replications waiting for the stream.
    reader_wakers: Vec<Waker>,
}

impl Conn {
    fn park_reader(&mut self, cx: &Context<'_>) {
        if !self.reader_wakers.iter().any(|w| w.will_wake(cx.waker())) {
            self.reader_wakers.push(cx.waker().clone());
        }
    }

    fn wake_readers(&mut self) {
        for w in self.reader_wakers.drain(..) {
            w.wake();
        }
    }
}

type ConnRef = Rc<RefCell<Conn>>;

/// A connection attempt or an open connection of the swarm.
#[derive(Default)]
struct Slot {
    /// The open stream's state (None while dialing).
    conn: Option<ConnRef>,
    /// The engine asked to destroy it while it was dialing.
    destroy_on_open: bool,
}

struct Shared {
    engine: Engine,
    relay: Rc<Relay>,
    key_pair: KeyPair,
    slots: HashMap<ConnectionId, Slot>,
    cancelled: HashSet<QueryId>,
    flushes: HashMap<FlushId, Sender<bool>>,
    /// Connections handed out by the engine, not yet taken by `nextConnection`.
    ready: VecDeque<SwarmConnection>,
    ready_waker: Option<Waker>,
    /// `destroy` waiting for the connections to close.
    destroy_waker: Option<Waker>,
    /// The listen task stops when this is dropped.
    listen_stop: Option<Sender<()>>,
    kicked: bool,
    driver_waker: Option<Waker>,
    destroyed: bool,
}

impl Shared {
    fn kick(&mut self) {
        self.kicked = true;
        wake(&mut self.driver_waker);
    }

    fn now(&self) -> Duration {
        Duration::from_millis(now_ms())
    }

    /// The engine's `handle_closed` for `id`.
    fn closed(&mut self, id: ConnectionId) {
        let now = self.now();
        self.slots.remove(&id);
        let Shared { engine, slots, .. } = self;
        engine.handle_closed(now, id, &|id| is_active(slots, id));
        self.kick();
    }
}

fn is_active(slots: &HashMap<ConnectionId, Slot>, id: ConnectionId) -> bool {
    slots
        .get(&id)
        .and_then(|s| s.conn.as_ref())
        .is_some_and(|c| {
            let c = c.borrow();
            c.read_any && c.wrote_any
        })
}

type SharedRef = Rc<RefCell<Shared>>;

/// Run the stream's secret-stream (or the relay's framing, custodially) between the relayed
/// stream and `conn` until it closes; then tell the swarm.
async fn pump(
    mut stream: RelayStream,
    conn: ConnRef,
    swarm: Weak<RefCell<Shared>>,
    id: ConnectionId,
) {
    let error = run_pump(&mut stream, &conn).await.err();
    {
        let mut c = conn.borrow_mut();
        if c.closed.is_none() {
            c.closed = Some(error.or_else(|| stream.error()));
        }
        c.outbox.clear();
        c.outbox_bytes = 0;
        c.wake_readers();
    }
    drop(stream);
    if let Some(s) = swarm.upgrade() {
        s.borrow_mut().closed(id);
    }
}

enum Wakeup {
    Input(Option<Vec<u8>>),
    /// The relay destroyed the stream, after the peer's end or while the inbox was full, with
    /// this error (see [`RelayStream::reset`]).
    Reset(Option<String>),
    Timer,
    Work,
}

async fn run_pump(stream: &mut RelayStream, conn: &ConnRef) -> Result<(), String> {
    let mut link = stream
        .link(StreamOptions::default(), now_ms())
        .map_err(|e| e.to_string())?;
    let mut reading = true;
    let mut shut_down = false;
    let mut ended = false;
    let mut destroyed = false;
    let mut timer: Option<(u64, Timer)> = None;
    loop {
        while let Some(event) = link.poll_event() {
            let mut c = conn.borrow_mut();
            match event {
                StreamEvent::Connected { handshake_hash, .. } => {
                    c.handshake_hash = Some(handshake_hash);
                }
                StreamEvent::Message(m) => {
                    c.read_any = true;
                    c.inbox_bytes += m.len();
                    c.inbox.push_back(m);
                }
                StreamEvent::End => c.remote_ended = true,
                StreamEvent::Closed(e) => {
                    c.closed = Some(e.map(|e| e.to_string()));
                }
            }
            c.wake_readers();
        }
        {
            let mut c = conn.borrow_mut();
            if c.destroy_requested && !destroyed {
                destroyed = true;
                link.destroy(None);
                continue;
            }
            while let Some(m) = c.outbox.pop_front() {
                c.outbox_bytes -= m.len();
                if link.write(&m).is_err() {
                    break;
                }
                c.wrote_any = true;
            }
            if c.end_requested && !ended {
                ended = true;
                link.end();
            }
        }
        while let Some(chunk) = link.poll_transmit() {
            stream.send(chunk).map_err(|e| e.to_string())?;
        }
        if link.wants_shutdown() && !shut_down {
            shut_down = true;
            stream.close();
        }
        if link.is_closed() {
            // The last events (Closed) are read above on the next turn; then done.
            while let Some(event) = link.poll_event() {
                if let StreamEvent::Closed(e) = event {
                    let mut c = conn.borrow_mut();
                    c.closed = Some(e.map(|e| e.to_string()));
                }
            }
            return Ok(());
        }
        match link.poll_timeout() {
            Some(at) if timer.as_ref().is_some_and(|t| t.0 == at) => {}
            Some(at) => {
                let wait = at.saturating_sub(now_ms());
                timer = Some((at, Box::pin(sleep(wait))));
            }
            None => timer = None,
        }
        let wakeup = poll_fn(|cx| {
            if let Some((_, t)) = timer.as_mut() {
                if t.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wakeup::Timer);
                }
            }
            let mut c = conn.borrow_mut();
            // Backpressure: with the inbox full, the stream waits until the reader drains it
            // (`poll_recv` wakes the pump then). It still hears of a destroy meanwhile: the
            // relay client destroys a stream whose reader stalls while the peer writes on
            // (`ClientEvent::Overrun`), and that is just when the inbox is full.
            if reading && c.inbox_bytes < HIGH_WATER {
                if let Poll::Ready(chunk) = stream.poll_recv(cx) {
                    return Poll::Ready(Wakeup::Input(chunk));
                }
            } else if let Poll::Ready(why) = stream.poll_reset(cx) {
                return Poll::Ready(Wakeup::Reset(why));
            }
            if !c.outbox.is_empty()
                || (c.end_requested && !ended)
                || (c.destroy_requested && !destroyed)
            {
                return Poll::Ready(Wakeup::Work);
            }
            c.pump_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        let now = now_ms();
        match wakeup {
            Wakeup::Input(Some(chunk)) => link.handle_input(now, &chunk),
            Wakeup::Input(None) => {
                reading = false;
                // A stream the relay destroyed (the peer reset it, or its UDX stream timed out)
                // closes the connection, with the relay's error, as JS dht-relay's client
                // destroys its stream: taken for the peer's end, it would stay half open, and
                // the swarm would never hear of it (nor dial the peer again).
                if let Some(why) = stream.reset() {
                    return why.map_or(Ok(()), Err);
                }
                link.handle_eof(now);
            }
            Wakeup::Reset(why) => return why.map_or(Ok(()), Err),
            Wakeup::Timer => {
                timer = None;
                link.handle_timeout(now);
            }
            Wakeup::Work => {}
        }
    }
}

/// The messages of a [`Conn`] as a [`Duplex`] (one message a chunk), for a replication.
struct MessageDuplex(ConnRef);

impl Duplex for MessageDuplex {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        let mut c = self.0.borrow_mut();
        if let Some(m) = c.inbox.pop_front() {
            let full = c.inbox_bytes >= HIGH_WATER;
            c.inbox_bytes -= m.len();
            if full && c.inbox_bytes < HIGH_WATER {
                wake(&mut c.pump_waker);
            }
            return Poll::Ready(Some(m));
        }
        if c.remote_ended || c.closed.is_some() {
            return Poll::Ready(None);
        }
        c.park_reader(cx);
        Poll::Pending
    }

    fn send(&mut self, chunk: Vec<u8>) -> Result<(), DuplexError> {
        let mut c = self.0.borrow_mut();
        if c.closed.is_some() || c.end_requested {
            return Err(DuplexError("the swarm connection is closed".into()));
        }
        c.outbox_bytes += chunk.len();
        c.outbox.push_back(chunk);
        wake(&mut c.pump_waker);
        Ok(())
    }

    fn close(&mut self) {
        let mut c = self.0.borrow_mut();
        c.end_requested = true;
        wake(&mut c.pump_waker);
    }

    fn buffered_amount(&self) -> usize {
        self.0.borrow().outbox_bytes
    }
}

/// One connection of a [`Swarm`] (JS hyperswarm's `'connection'` stream): the peer's key, and
/// either its messages ([`SwarmConnection::read`], [`SwarmConnection::write`]) or a core's
/// replication over it ([`replicate_connection`]).
#[wasm_bindgen]
pub struct SwarmConnection {
    conn: ConnRef,
    remote_public_key: [u8; 32],
    is_initiator: bool,
}

#[wasm_bindgen]
impl SwarmConnection {
    /// The peer's public key (32 bytes).
    #[wasm_bindgen(getter, js_name = remotePublicKey)]
    pub fn remote_public_key(&self) -> Vec<u8> {
        self.remote_public_key.to_vec()
    }

    /// Whether this page dialed the connection (a client connection).
    #[wasm_bindgen(getter, js_name = isInitiator)]
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// Whether the stream has closed.
    #[wasm_bindgen(getter)]
    pub fn closed(&self) -> bool {
        self.conn.borrow().closed.is_some()
    }

    /// The next message from the peer, or `null` once the peer ended (or the stream closed).
    /// Fails once a replication took the connection.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array | null>")]
    pub fn read(&self) -> Promise {
        let conn = self.conn.clone();
        future_to_promise(async move {
            {
                let mut c = conn.borrow_mut();
                match c.taken {
                    Some("read") | None => c.taken = Some("read"),
                    Some(other) => {
                        return Err(JsError::new(&format!(
                            "the connection's messages go to a {other}"
                        ))
                        .into())
                    }
                }
            }
            let m = poll_fn(|cx| MessageDuplex(conn.clone()).poll_recv(cx)).await;
            Ok(m.map_or(JsValue::NULL, |m| Uint8Array::from(&m[..]).into()))
        })
    }

    /// Send `data` as one message; false once the connection is ended or closed.
    pub fn write(&self, data: Vec<u8>) -> bool {
        MessageDuplex(self.conn.clone()).send(data).is_ok()
    }

    /// End our side gracefully (the stream closes once the peer ended too).
    pub fn end(&self) {
        MessageDuplex(self.conn.clone()).close();
    }

    /// Destroy the stream now.
    pub fn destroy(&self) {
        let mut c = self.conn.borrow_mut();
        c.destroy_requested = true;
        wake(&mut c.pump_waker);
    }

    /// Resolves once the stream closed: to `null` when cleanly, to the reason otherwise.
    #[wasm_bindgen(js_name = whenClosed, unchecked_return_type = "Promise<string | null>")]
    pub fn when_closed(&self) -> Promise {
        let conn = self.conn.clone();
        future_to_promise(async move {
            let closed = poll_fn(|cx| {
                let mut c = conn.borrow_mut();
                if let Some(e) = c.closed.clone() {
                    return Poll::Ready(e);
                }
                c.park_reader(cx);
                Poll::Pending
            })
            .await;
            Ok(closed.map_or(JsValue::NULL, |e| JsValue::from_str(&e)))
        })
    }
}

/// Replicate `core` with the peer over `connection` (JS `core.replicate(conn)`): the core's
/// replication protocol runs in the connection's encrypted stream, as JS hypercore's does over
/// a hyperswarm connection. Resolves when the connection closed cleanly; the connection's
/// messages are the replication's from then on.
#[wasm_bindgen(js_name = replicateConnection, unchecked_return_type = "Promise<void>")]
pub fn replicate_connection(core: &Hypercore, connection: &SwarmConnection) -> Promise {
    replicate_conn(core.inner.hub.clone(), connection)
}

/// Replicate `host` (a core's hub, or a corestore) over `connection`; see
/// [`replicate_connection`].
pub(crate) fn replicate_conn<H: ReplicationHost + 'static>(
    hub: SharedHost<H>,
    connection: &SwarmConnection,
) -> Promise {
    let conn = connection.conn.clone();
    let (is_initiator, remote) = (connection.is_initiator, connection.remote_public_key);
    future_to_promise(async move {
        {
            let mut c = conn.borrow_mut();
            if let Some(other) = c.taken {
                return Err(JsError::new(&format!(
                    "the connection's messages already go to a {other}"
                ))
                .into());
            }
            c.taken = Some("replication");
        }
        let hash = poll_fn(|cx| {
            let mut c = conn.borrow_mut();
            if let Some(h) = c.handshake_hash {
                return Poll::Ready(Ok(h));
            }
            if let Some(e) = c.closed.clone() {
                return Poll::Ready(Err(e.unwrap_or_else(|| "closed".into())));
            }
            c.park_reader(cx);
            Poll::Pending
        })
        .await
        .map_err(|e| js_err("replicate over the connection", e))?;
        let link = FramedLink::new(is_initiator, remote, hash);
        replicate_link(MessageDuplex(conn), link, &hub, std::future::pending())
            .await
            .map_err(|e| js_err("replicate over the connection", e))?;
        Ok(JsValue::UNDEFINED)
    })
}

/// Hyperswarm in the page through a dht-relay (see the [module docs](self)).
#[wasm_bindgen]
pub struct Swarm {
    shared: SharedRef,
    public_key: [u8; 32],
}

#[wasm_bindgen]
impl Swarm {
    /// A swarm on a session with the dht-relay at `url` (`ws://` or `wss://`), with a key pair
    /// made for it. Non-custodial unless `custodial` is true; a relay that refuses that mode
    /// (4005) is retried custodially unless `custodial` is false.
    pub async fn open(url: String, custodial: Option<bool>) -> Result<Swarm, JsError> {
        let relay = match custodial {
            Some(true) => Relay::open(&url).await,
            other => match Relay::open_non_custodial(&url).await {
                Err(e) if other.is_none() && e.to_string().contains("(4005 ") => {
                    Relay::open(&url).await
                }
                r => r,
            },
        }
        .map_err(|e| js_err(&format!("relay {url}"), e))?;
        let key_pair = relay.key_pair();
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| js_err("crypto.getRandomValues", e))?;
        let engine = Engine::new(SwarmConfig::new(key_pair.clone()), seed);
        let shared = Rc::new(RefCell::new(Shared {
            engine,
            relay: Rc::new(relay),
            key_pair: key_pair.clone(),
            slots: HashMap::new(),
            cancelled: HashSet::new(),
            flushes: HashMap::new(),
            ready: VecDeque::new(),
            ready_waker: None,
            destroy_waker: None,
            listen_stop: None,
            kicked: false,
            driver_waker: None,
            destroyed: false,
        }));
        spawn_local(drive(Rc::downgrade(&shared)));
        Ok(Swarm {
            shared,
            public_key: key_pair.public_key,
        })
    }

    /// The swarm's public key (32 bytes): what its peers see as `remotePublicKey`.
    #[wasm_bindgen(getter, js_name = publicKey)]
    pub fn public_key(&self) -> Vec<u8> {
        self.public_key.to_vec()
    }

    /// Whether the relay holds the swarm's key (custodial) or the page does.
    #[wasm_bindgen(getter)]
    pub fn custodial(&self) -> bool {
        self.shared.borrow().relay.is_custodial()
    }

    /// Join `topic` (32 bytes): announce it and accept connections (`server`, default true),
    /// look it up and connect to its peers (`client`, default true). Returns the session id
    /// for [`Swarm::leave_session`].
    pub fn join(
        &self,
        topic: Vec<u8>,
        server: Option<bool>,
        client: Option<bool>,
    ) -> Result<f64, JsError> {
        let topic = crate::js::key32("topic", &topic)?;
        let mut s = self.shared.borrow_mut();
        let now = s.now();
        let opts = JoinOptions {
            server: server.unwrap_or(true),
            client: client.unwrap_or(true),
            limit: None,
        };
        let id = s.engine.join(now, topic, opts).ok_or_else(|| {
            JsError::new("join: the swarm is destroyed, or neither server nor client")
        })?;
        s.kick();
        Ok(id.0 as f64)
    }

    /// Leave one join (JS `discovery.destroy()`).
    #[wasm_bindgen(js_name = leaveSession)]
    pub fn leave_session(&self, session: f64) {
        let mut s = self.shared.borrow_mut();
        let now = s.now();
        s.engine.leave_session(now, SessionId(session as u64));
        s.kick();
    }

    /// Leave `topic` (JS `swarm.leave(topic)`): stop announcing and looking it up (the
    /// announcement is removed); connections stay.
    pub fn leave(&self, topic: Vec<u8>) -> Result<(), JsError> {
        let topic = crate::js::key32("topic", &topic)?;
        let mut s = self.shared.borrow_mut();
        let now = s.now();
        s.engine.leave(now, topic);
        s.kick();
        Ok(())
    }

    /// Resolves once every topic's announce / lookup ran and every peer found was tried (JS
    /// `swarm.flush()`); `topic`: that topic's only (JS `discovery.flushed()`). To false when
    /// the swarm was destroyed first.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn flush(&self, topic: Option<Vec<u8>>) -> Result<Promise, JsError> {
        let topic = topic.map(|t| crate::js::key32("topic", &t)).transpose()?;
        let (tx, mut rx) = channel();
        {
            let mut s = self.shared.borrow_mut();
            let now = s.now();
            let id = match topic {
                Some(t) => s.engine.flush_topic(now, t),
                None => s.engine.flush(now),
            };
            s.flushes.insert(id, tx);
            s.kick();
        }
        Ok(future_to_promise(async move {
            Ok(JsValue::from_bool(rx.recv().await.unwrap_or(false)))
        }))
    }

    /// The next connection (JS `'connection'`), or `null` once the swarm is destroyed.
    #[wasm_bindgen(
        js_name = nextConnection,
        unchecked_return_type = "Promise<SwarmConnection | null>"
    )]
    pub fn next_connection(&self) -> Promise {
        let shared = self.shared.clone();
        future_to_promise(async move {
            let next = poll_fn(|cx| {
                let mut s = shared.borrow_mut();
                if let Some(c) = s.ready.pop_front() {
                    return Poll::Ready(Some(c));
                }
                if s.destroyed {
                    return Poll::Ready(None);
                }
                s.ready_waker = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            Ok(next.map_or(JsValue::NULL, JsValue::from))
        })
    }

    /// Connections open now.
    #[wasm_bindgen(getter)]
    pub fn connections(&self) -> u32 {
        self.shared
            .borrow()
            .slots
            .values()
            .filter(|s| s.conn.as_ref().is_some_and(|c| c.borrow().closed.is_none()))
            .count() as u32
    }

    /// Leave every topic (announcements removed), let the connections close or finish what is
    /// in flight for up to 2 s, destroy those still open, and close the relay session (JS
    /// `swarm.destroy()`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn destroy(&self) -> Promise {
        let shared = self.shared.clone();
        future_to_promise(async move {
            {
                let mut s = shared.borrow_mut();
                if s.destroyed {
                    return Ok(JsValue::UNDEFINED);
                }
                let now = s.now();
                s.engine.destroy(now);
                s.destroyed = true;
                s.listen_stop = None;
                wake(&mut s.ready_waker);
                s.kick();
            }
            // The engine's actions (destroys, unannounces) run; connections close, or carry
            // what is in flight (a replication's last answers) for up to the grace.
            wait_closed(&shared, DESTROY_GRACE_MS).await;
            // The engine leaves open connections to the application; JS hyperswarm's
            // `destroy` ends them with its DHT node (their streams die with its socket).
            // Destroy those still open (a replication over one would run on until the relay
            // noticed the session closing, after `destroy` resolved), and each dial as it opens.
            let open = {
                let mut s = shared.borrow_mut();
                for slot in s.slots.values_mut() {
                    match &slot.conn {
                        Some(conn) => {
                            let mut c = conn.borrow_mut();
                            c.destroy_requested = true;
                            wake(&mut c.pump_waker);
                        }
                        None => slot.destroy_on_open = true,
                    }
                }
                !s.slots.is_empty()
            };
            if open {
                wait_closed(&shared, DESTROY_GRACE_MS).await;
            }
            let relay = shared.borrow().relay.clone();
            relay.close();
            Ok(JsValue::UNDEFINED)
        })
    }
}

impl Swarm {
    /// How many bytes a connection may hold in the relay session that the page has not taken
    /// before the relay client destroys it ([`Relay::set_max_unread`]; 32 MiB unless set). A
    /// connection whose reader stalls takes up to 4 MiB more into its inbox, then stops; a
    /// peer that writes on past both closes the connection with an error.
    pub fn set_max_unread(&self, bytes: usize) {
        self.shared.borrow().relay.set_max_unread(bytes);
    }
}

/// Wait until the swarm has no connection (or dial) left, or `ms` passed.
async fn wait_closed(shared: &SharedRef, ms: u64) {
    let mut grace = pin!(sleep(ms));
    poll_fn(|cx| {
        if grace.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let mut s = shared.borrow_mut();
        if s.slots.is_empty() {
            return Poll::Ready(());
        }
        // Re-polled when the driver runs (every close kicks it).
        s.destroy_waker = Some(cx.waker().clone());
        Poll::Pending
    })
    .await;
}

/// The swarm's task: the engine's actions and events, and its timers.
async fn drive(shared: Weak<RefCell<Shared>>) {
    let mut timer: Option<(Duration, Timer)> = None;
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        {
            let mut s = strong.borrow_mut();
            while let Some(action) = s.engine.poll_action() {
                act(&strong, &mut s, action);
            }
            while let Some(event) = s.engine.poll_event() {
                match event {
                    Event::Connection {
                        id,
                        public_key,
                        client,
                        ..
                    } => {
                        if let Some(conn) = s.slots.get(&id).and_then(|sl| sl.conn.clone()) {
                            s.ready.push_back(SwarmConnection {
                                conn,
                                remote_public_key: public_key,
                                is_initiator: client,
                            });
                        }
                    }
                    Event::Flushed { id, ok } => {
                        if let Some(tx) = s.flushes.remove(&id) {
                            let _ = tx.send(ok);
                        }
                    }
                    Event::Ban { .. } | Event::Refreshed { .. } => {}
                }
            }
            // Wakes `nextConnection` (and `destroy`, which watches the slots).
            wake(&mut s.ready_waker);
            wake(&mut s.destroy_waker);
            if s.destroyed && s.slots.is_empty() && s.engine.poll_timeout().is_none() {
                return;
            }
            match s.engine.poll_timeout() {
                Some(at) if timer.as_ref().is_some_and(|t| t.0 == at) => {}
                Some(at) => {
                    let wait = at.saturating_sub(s.now()).as_millis() as u64;
                    timer = Some((at, Box::pin(sleep(wait))));
                }
                None => timer = None,
            }
        }
        // Not held across the wait: a swarm dropped by JS (without `destroy`) is freed, and
        // this task ends at its next wake.
        drop(strong);
        let fired = poll_fn(|cx| {
            let Some(strong) = shared.upgrade() else {
                return Poll::Ready(None);
            };
            if let Some((_, t)) = timer.as_mut() {
                if t.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(true));
                }
            }
            let mut s = strong.borrow_mut();
            if std::mem::take(&mut s.kicked) {
                return Poll::Ready(Some(false));
            }
            s.driver_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        match fired {
            None => return,
            Some(true) => {
                timer = None;
                let Some(strong) = shared.upgrade() else {
                    return;
                };
                let mut s = strong.borrow_mut();
                let now = s.now();
                s.engine.handle_timeout(now);
            }
            Some(false) => {}
        }
    }
}

/// Carry out one of the engine's actions.
fn act(shared: &SharedRef, s: &mut Shared, action: Action) {
    let weak = Rc::downgrade(shared);
    match action {
        Action::Listen => {
            let (stop_tx, stop_rx) = channel::<()>();
            s.listen_stop = Some(stop_tx);
            let relay = s.relay.clone();
            let key_pair = s.key_pair.clone();
            spawn_local(listen(relay, key_pair, weak, stop_rx));
        }
        Action::Query {
            id, topic, kind, ..
        } => {
            let relay = s.relay.clone();
            let key_pair = s.key_pair.clone();
            spawn_local(async move {
                let found = match kind {
                    QueryKind::Announce { .. } => relay.announce_and_find(topic, key_pair).await,
                    QueryKind::Lookup => relay.lookup(topic).await,
                    QueryKind::LookupAndUnannounce => {
                        let r = relay.lookup(topic).await;
                        let _ = relay.unannounce(topic, key_pair).await;
                        r
                    }
                };
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let mut s = shared.borrow_mut();
                if s.cancelled.remove(&id) {
                    return;
                }
                let now = s.now();
                let result = match found {
                    Ok(peers) => {
                        let records: Vec<PeerRecord> = peers
                            .into_iter()
                            .map(|public_key| PeerRecord {
                                public_key,
                                relay_addresses: Vec::new(),
                            })
                            .collect();
                        s.engine.handle_query_peers(now, id, &records);
                        // The relay's answer names no nodes: the next refresh starts afresh.
                        Ok(Vec::new())
                    }
                    Err(_) => Err(()),
                };
                s.engine.handle_query_done(now, id, result);
                s.kick();
            });
        }
        Action::CancelQuery(id) => {
            s.cancelled.insert(id);
        }
        Action::Unannounce { topic, .. } => {
            let relay = s.relay.clone();
            let key_pair = s.key_pair.clone();
            spawn_local(async move {
                // Best effort, as hyperswarm's.
                let _ = relay.unannounce(topic, key_pair).await;
            });
        }
        Action::Connect { id, public_key, .. } => {
            s.slots.insert(id, Slot::default());
            let relay = s.relay.clone();
            spawn_local(async move {
                let r = relay.connect(public_key).await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let mut s = shared.borrow_mut();
                let destroy = s.slots.get(&id).is_none_or(|sl| sl.destroy_on_open);
                match r {
                    Ok(stream) if !destroy => {
                        let conn: ConnRef = Rc::default();
                        if let Some(sl) = s.slots.get_mut(&id) {
                            sl.conn = Some(conn.clone());
                        }
                        spawn_local(pump(stream, conn.clone(), Rc::downgrade(&shared), id));
                        let now = s.now();
                        if !s.engine.handle_connected(now, id) {
                            conn.borrow_mut().destroy_requested = true;
                        }
                        s.kick();
                    }
                    _ => s.closed(id),
                }
            });
        }
        Action::Destroy(id) => match s.slots.get_mut(&id) {
            Some(Slot {
                conn: Some(conn), ..
            }) => {
                let mut c = conn.borrow_mut();
                c.destroy_requested = true;
                wake(&mut c.pump_waker);
            }
            Some(sl) => sl.destroy_on_open = true,
            None => s.closed(id),
        },
        // The page's secret-stream sends its own keep-alives.
        Action::KeepAlive(_) => {}
    }
}

/// The swarm's server: listen through the relay, and give every connection to the engine.
async fn listen(
    relay: Rc<Relay>,
    key_pair: KeyPair,
    swarm: Weak<RefCell<Shared>>,
    mut stop: crate::chan::Receiver<()>,
) {
    let server: RelayServer = match relay.listen(key_pair).await {
        Ok(server) => server,
        Err(e) => {
            web_sys::console::warn_1(&JsValue::from_str(&format!(
                "hyperpunch: the swarm could not listen through the relay: {e}"
            )));
            return;
        }
    };
    drop(relay);
    {
        let Some(shared) = swarm.upgrade() else {
            return;
        };
        let mut s = shared.borrow_mut();
        let now = s.now();
        s.engine.handle_listening(now);
        s.kick();
    }
    loop {
        let next = {
            let mut accept = pin!(server.accept());
            poll_fn(|cx| {
                if stop.poll_recv(cx).is_ready() {
                    return Poll::Ready(None);
                }
                accept.as_mut().poll(cx).map(Some)
            })
            .await
        };
        let Some(Some(stream)) = next else {
            return;
        };
        let Some(shared) = swarm.upgrade() else {
            return;
        };
        let mut s = shared.borrow_mut();
        let now = s.now();
        let remote = stream.remote_public_key();
        let conn: ConnRef = Rc::default();
        let id = {
            let Shared { engine, slots, .. } = &mut *s;
            engine.handle_server_connection(now, remote, &|id| is_active(slots, id))
        };
        s.slots.insert(
            id,
            Slot {
                conn: Some(conn.clone()),
                destroy_on_open: false,
            },
        );
        spawn_local(pump(stream, conn, Rc::downgrade(&shared), id));
        s.kick();
    }
}

#[cfg(test)]
#[path = "swarm_tests.rs"]
mod tests;
