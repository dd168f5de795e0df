//! Hypercore replication in the browser: a pump, no protocol decisions.
//!
//! The browser twin of the native tokio driver (`hyperpunch::replicate`). [`replicate`] runs one
//! connection over a [`Duplex`] (chunks of bytes each way): chunks received go into a
//! [`SecretStream`]; its decrypted messages go into a [`ReplicationHub`] as frames; the hub's
//! outgoing frames are encrypted by the secret stream and sent back. Timers of both come from
//! their `poll_timeout` and run on `setTimeout`; time is `performance.now()`; the secret stream's
//! entropy comes from `crypto.getRandomValues` (through `getrandom`).
//!
//! The same driver runs a [`Corestore`] ([`SharedCorestore`]): every core of the store over
//! each connection, stored cores the remote asks for opened on demand.
//!
//! One [`SharedHub`] serves any number of connections at once. Frames the hub produces for a
//! stream are routed to that stream's connection whenever the hub lock is released, so driving
//! a replicator through [`SharedHub::lock`] (e.g. `download` or `append`) reaches every peer.
//!
//! Everything runs on the page's single thread: connections are tasks spawned with
//! `wasm_bindgen_futures::spawn_local`, sharing the hub through an async lock.
//!
//! Backpressure, as in the native driver: the pump hands encrypted chunks to the carrier only
//! while the carrier buffers less than [`CARRIER_HIGH_WATER`] ([`Duplex::buffered_amount`],
//! WebSocket and `RTCDataChannel` `bufferedAmount`) and keeps the rest itself; reading goes on
//! meanwhile, so two pumps cannot deadlock each other. It tells the hub how many bytes it and
//! the carrier hold unwritten ([`ReplicationHub::set_backlog`]), and past the hub's high-water
//! mark the peer's requests wait for that to drain instead of being answered: a peer that
//! sends requests but never reads cannot grow our memory or the carrier's buffer
//! ([`SharedHub::max_backlog`] shows the most ever held). The carrier wakes the pump as its
//! buffer drains ([`Duplex::poll_drained`]; a carrier without such an event, as a WebSocket,
//! is looked at every few milliseconds instead), so the shrinking backlog reaches the hub and
//! the waiting requests are answered. A carrier that reports no buffered bytes (the trait's
//! default) is given every chunk at once, as before, and only the pump's own queue counts.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::ops::{Deref, DerefMut};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_lock::{Mutex, MutexGuard};
use hyperpunch_core::corestore::Corestore;
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hyperbee::{CoreHost, SharedCoreHost};
use hyperpunch_core::replication::{
    backlog_report_due, HubEvent, ReplicationError, ReplicationHost, ReplicationHub, StreamId,
};
use hyperpunch_core::secretstream::{
    Entropy, Event as StreamEvent, Options as StreamOptions, SecretStream, StreamError,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::chan::{channel, Receiver, Sender, WakeFlag};
use crate::duplex::Outbox;
pub use crate::duplex::{
    memory_duplex, memory_duplex_with_capacity, Duplex, DuplexError, MemoryDuplex,
    CARRIER_HIGH_WATER, MEMORY_DUPLEX_CAPACITY,
};

#[wasm_bindgen]
extern "C" {
    /// The global `setTimeout` (windows and workers alike).
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &js_sys::Function, ms: f64) -> JsValue;
    /// The global `clearTimeout`.
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
    /// `performance.now()`: monotonic milliseconds.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    pub(crate) fn performance_now() -> f64;
}

/// Why [`replicate`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    /// The duplex refused to send.
    #[error("connection: {0}")]
    Duplex(#[from] DuplexError),
    /// The browser's random source failed (needed for the handshake).
    #[error("cannot get randomness from the browser: {0}")]
    Random(String),
    /// The secret stream failed (handshake, decryption, framing) or closed with an error.
    #[error("secret stream: {0}")]
    Stream(#[from] StreamError),
    /// The replication hub failed locally (storage) or destroyed the stream (protocol violation
    /// by the peer).
    #[error("replication: {0}")]
    Replication(#[from] ReplicationError),
}

/// Per-connection state the hub routes to.
#[derive(Default)]
struct Conn {
    /// Frames from the hub, not yet given to the secret stream.
    frames: Vec<Vec<u8>>,
    /// The hub destroyed the stream: drop the connection with this error.
    destroyed: Option<ReplicationError>,
    /// The owner asked for a graceful end.
    end: bool,
    /// Wakes the connection's task.
    wake: Rc<WakeFlag>,
}

/// Called with the hub each time its lock is released (see [`SharedHost::set_observer`]).
type Observer<H> = Box<dyn FnMut(&H)>;

/// Which events a subscriber wants ([`SharedHost::subscribe_filtered`]).
pub(crate) type EventFilter = Box<dyn Fn(&HubEvent) -> bool>;

struct State<H> {
    hub: H,
    conns: HashMap<StreamId, Conn>,
    /// Every subscriber's queue ([`SharedHost::with_events`], [`SharedHost::subscribe`],
    /// [`SharedHost::subscribe_filtered`]), with the events it wants (`None`: all).
    events: Vec<(Sender<HubEvent>, Option<EventFilter>)>,
}

impl<H: ReplicationHost> State<H> {
    /// Move the hub's frames to their connections and its events to the subscriber.
    /// Routes the hub's frames and events; whether there were any.
    fn route(&mut self) -> bool {
        let mut any = false;
        while let Some((sid, frame)) = self.hub.poll_transmit() {
            any = true;
            if let Some(c) = self.conns.get_mut(&sid) {
                c.frames.push(frame);
                c.wake.notify();
            }
        }
        while let Some(event) = self.hub.poll_event() {
            any = true;
            if let HubEvent::StreamClosed { stream, error } = &event {
                if let Some(c) = self.conns.get_mut(stream) {
                    c.destroyed = Some(error.clone());
                    c.wake.notify();
                }
            }
            deliver(&mut self.events, &event);
        }
        any
    }
}

/// Queue `event` to the subscribers that want it; a subscriber that went away (its receiver
/// dropped) is forgotten, whether it wanted the event or not.
pub(crate) fn deliver(
    subscribers: &mut Vec<(Sender<HubEvent>, Option<EventFilter>)>,
    event: &HubEvent,
) {
    subscribers.retain(|(tx, wants)| match wants {
        Some(wants) if !wants(event) => !tx.is_gone(),
        _ => tx.send(event.clone()).is_ok(),
    });
}

struct Inner<H> {
    state: Mutex<State<H>>,
    observer: RefCell<Option<Observer<H>>>,
    /// Tasks waiting for the hub to change ([`SharedHost::changed`]).
    changed: Rc<Waiters>,
    /// The most bytes a connection held unwritten at once (its queue and its carrier's).
    max_backlog: Cell<usize>,
    /// `performance.now()` when the hub was shared.
    start: f64,
}

/// A [`ReplicationHub`] (or another [`ReplicationHost`], such as a [`Corestore`]) shared by
/// the connections that [`replicate`] runs, with one clock.
///
/// Cloning gives another handle to the same host.
pub struct SharedHost<H> {
    inner: Rc<Inner<H>>,
}

/// A shared [`ReplicationHub`] on storage `S`.
pub type SharedHub<S> = SharedHost<ReplicationHub<S>>;

/// A shared [`Corestore`] on storage `S` (e.g. `Rc<IdbStorage>`): every core of the store
/// replicated over each connection, stored cores the remote asks for opened on demand.
pub type SharedCorestore<S> = SharedHost<Corestore<S>>;

impl<H> Clone for SharedHost<H> {
    fn clone(&self) -> Self {
        SharedHost {
            inner: self.inner.clone(),
        }
    }
}

/// The events of a [`SharedHub`] (see [`SharedHub::with_events`]).
pub struct HubEvents(Receiver<HubEvent>);

/// A sender and its [`HubEvents`], as the hub holds them (for unit tests).
#[cfg(test)]
pub(crate) fn test_events() -> (Sender<HubEvent>, HubEvents) {
    let (tx, rx) = channel();
    (tx, HubEvents(rx))
}

impl HubEvents {
    /// The next event; `None` once the hub is gone.
    pub async fn next(&mut self) -> Option<HubEvent> {
        self.0.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_next(&mut self) -> Option<HubEvent> {
        match self
            .0
            .poll_recv(&mut Context::from_waker(std::task::Waker::noop()))
        {
            Poll::Ready(e) => e,
            Poll::Pending => None,
        }
    }
}

impl<H: ReplicationHost> SharedHost<H> {
    /// Share `hub`; its events are dropped.
    pub fn new(hub: H) -> Self {
        Self::build(hub, Vec::new())
    }

    /// Share `hub` and receive all of its events (unbounded: keep reading them).
    pub fn with_events(hub: H) -> (Self, HubEvents) {
        let (tx, rx) = channel();
        (Self::build(hub, vec![(tx, None)]), HubEvents(rx))
    }

    /// Receive every event of the hub from now on, beside the other subscribers (unbounded:
    /// keep reading them, or drop the receiver).
    pub async fn subscribe(&self) -> HubEvents {
        let (tx, rx) = channel();
        self.inner.state.lock().await.events.push((tx, None));
        HubEvents(rx)
    }

    /// The events of the hub from now on for which `wants` is true, in order (as
    /// [`SharedHost::subscribe`], but the others are never queued: a subscriber interested in a
    /// few cores does not collect the events of the whole store).
    pub async fn subscribe_filtered(
        &self,
        wants: impl Fn(&HubEvent) -> bool + 'static,
    ) -> HubEvents {
        let (tx, rx) = channel();
        self.inner
            .state
            .lock()
            .await
            .events
            .push((tx, Some(Box::new(wants))));
        HubEvents(rx)
    }

    fn build(hub: H, events: Vec<(Sender<HubEvent>, Option<EventFilter>)>) -> Self {
        SharedHost {
            inner: Rc::new(Inner {
                state: Mutex::new(State {
                    hub,
                    conns: HashMap::new(),
                    events,
                }),
                observer: RefCell::new(None),
                changed: Rc::default(),
                max_backlog: Cell::new(0),
                start: performance_now(),
            }),
        }
    }

    /// Call `observer` with the hub every time its lock is released (after its frames and
    /// events are routed), replacing any previous observer. Lets synchronous code keep a
    /// snapshot of the hub's state; the observer must not lock the hub.
    pub fn set_observer(&self, observer: impl FnMut(&H) + 'static) {
        *self.inner.observer.borrow_mut() = Some(Box::new(observer));
    }

    /// Resolves once the hub may have changed after this call (blocks may have arrived, the
    /// length may have changed): check the state, then await this, then check again.
    pub fn changed(&self) -> Changed {
        Changed {
            seen: self.inner.changed.generation.get(),
            waiters: self.inner.changed.clone(),
        }
    }

    /// Milliseconds since this hub was shared: the `now` to pass to hub and replicator calls.
    pub fn now(&self) -> u64 {
        // `performance.now()` is monotonic and finite; the cast saturates.
        (performance_now() - self.inner.start).max(0.0) as u64
    }

    /// Exclusive access to the hub. When the guard drops, the hub is flushed and its frames
    /// and events are routed to the connections and the event subscriber.
    pub async fn lock(&self) -> HubGuard<'_, H> {
        HubGuard {
            state: self.inner.state.lock().await,
            observer: &self.inner.observer,
            changed: &self.inner.changed,
            may_change: true,
        }
    }

    /// Ask every current connection to end gracefully (each [`replicate`] call then returns
    /// once the peer has ended too).
    pub async fn end_all(&self) {
        let mut st = self.inner.state.lock().await;
        for c in st.conns.values_mut() {
            c.end = true;
            c.wake.notify();
        }
    }

    /// Number of connections currently replicating (handshake done, not yet closed).
    pub async fn connections(&self) -> usize {
        self.inner.state.lock().await.conns.len()
    }

    /// The most bytes one connection ever held encrypted but not yet passed on: its own queue
    /// plus what its carrier buffered ([`Duplex::buffered_amount`]). Bounded by the hub's
    /// high-water mark plus about one answer, however little the peer reads.
    pub fn max_backlog(&self) -> usize {
        self.inner.max_backlog.get()
    }
}

/// What a [`HostCore`](hyperpunch_core::hyperbee::HostCore) (a bee or drive core of the page)
/// needs of the host it reads: the lock, the clock, the wake-ups and `setTimeout`.
impl<H: CoreHost> SharedCoreHost for SharedHost<H> {
    type Host = H;
    type Guard<'a> = HubGuard<'a, H>;
    type Changed<'a> = Changed;

    /// A read of the page's cores does not wait for the peers to announce their length.
    const UPDATE_TIMEOUT: Option<Duration> = None;

    /// A reader's lock: its release wakes the waiters only when it sent or delivered something
    /// (a request, an event). Otherwise two readers waiting for blocks would wake each other
    /// for ever, each release of one's check waking the other, and the page's other tasks
    /// (the WebSocket, IndexedDB) would never run.
    async fn lock(&self) -> HubGuard<'_, H> {
        let mut g = SharedHost::lock(self).await;
        g.may_change = false;
        g
    }

    fn now(&self) -> u64 {
        SharedHost::now(self)
    }

    /// Nothing to arm: a [`Changed`] notes the hub's generation when it is made, before the
    /// waiter's check.
    fn changed(&self) -> Changed {
        SharedHost::changed(self)
    }

    /// A reader changed the core itself (an append): wake the waiters.
    fn notify_changed(&self) {
        self.inner.changed.bump();
    }

    fn sleep_until(&self, at: u64) -> impl Future<Output = ()> {
        sleep(at.saturating_sub(self.now()))
    }
}

/// The tasks waiting for a [`SharedHost`] to change, and how many times it may have.
///
/// The generation moves on when a release of the hub's lock may have changed what a waiter
/// checks: every release of [`SharedHost::lock`]'s guard (the connections feed the hub through
/// it), and a reader's ([`SharedCoreHost::lock`]) only when it sent frames or delivered events.
#[derive(Default)]
pub struct Waiters {
    generation: Cell<u64>,
    wakers: RefCell<Vec<std::task::Waker>>,
}

impl Waiters {
    fn bump(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }
}

/// A change of a [`SharedHost`] after this was made (see [`SharedHost::changed`]).
pub struct Changed {
    seen: u64,
    waiters: Rc<Waiters>,
}

impl Future for Changed {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.waiters.generation.get() != self.seen {
            return Poll::Ready(());
        }
        let mut wakers = self.waiters.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Exclusive access to a [`SharedHost`]'s hub (see [`SharedHost::lock`]).
pub struct HubGuard<'a, H: ReplicationHost> {
    state: MutexGuard<'a, State<H>>,
    observer: &'a RefCell<Option<Observer<H>>>,
    changed: &'a Waiters,
    /// Whether this release wakes the waiters whatever it routed (see [`Waiters`]).
    may_change: bool,
}

impl<H: ReplicationHost> Deref for HubGuard<'_, H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.state.hub
    }
}

impl<H: ReplicationHost> DerefMut for HubGuard<'_, H> {
    fn deref_mut(&mut self) -> &mut H {
        &mut self.state.hub
    }
}

impl<H: ReplicationHost> Drop for HubGuard<'_, H> {
    fn drop(&mut self) {
        self.state.hub.flush();
        let routed = self.state.route() | self.state.hub.take_changed();
        if let Some(observe) = self.observer.borrow_mut().as_mut() {
            observe(&self.state.hub);
        }
        if self.may_change || routed {
            self.changed.bump();
        }
    }
}

/// 64 bytes from the browser's random source.
pub(crate) fn entropy() -> Result<Entropy, ReplicateError> {
    let mut bytes = [0u8; 64];
    getrandom::fill(&mut bytes).map_err(|e| ReplicateError::Random(e.to_string()))?;
    Ok(Entropy::from_bytes(&bytes))
}

/// A `setTimeout` of `ms` milliseconds as a future; dropping it clears the timeout.
pub(crate) fn sleep(ms: u64) -> impl Future<Output = ()> {
    Sleep::new(ms)
}

/// A `setTimeout` as a future; dropping it clears the timeout.
struct Sleep {
    id: JsValue,
    done: JsFuture,
}

impl Sleep {
    fn new(ms: u64) -> Self {
        let mut id = JsValue::UNDEFINED;
        let promise = js_sys::Promise::new(&mut |resolve, _reject| {
            id = set_timeout(&resolve, ms as f64);
        });
        Sleep {
            id,
            done: JsFuture::from(promise),
        }
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The promise only ever resolves (with `undefined`).
        Pin::new(&mut self.done).poll(cx).map(|_| ())
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        clear_timeout(&self.id);
    }
}

/// Replicate every core of `hub` over `io` until the connection closes.
///
/// `is_initiator` picks the Noise role (the two ends must differ). `key_pair` is this peer's
/// static key for the secret-stream handshake. Returns `Ok(())` after a clean close by either
/// side (end of stream from both, see [`SharedHub::end_all`]), or the first error. The hub's
/// stream is removed in every case.
pub async fn replicate<H, D>(
    io: D,
    is_initiator: bool,
    key_pair: KeyPair,
    hub: &SharedHost<H>,
) -> Result<(), ReplicateError>
where
    H: ReplicationHost,
    D: Duplex,
{
    let opts = StreamOptions::default();
    replicate_with(
        io,
        is_initiator,
        key_pair,
        opts,
        hub,
        std::future::pending(),
    )
    .await
}

/// [`replicate`] with secret-stream options `opts` (keep-alive, idle timeout), ending this
/// connection gracefully once `stop` completes (the call returns when the peer has ended too).
pub async fn replicate_with<H, D>(
    io: D,
    is_initiator: bool,
    key_pair: KeyPair,
    opts: StreamOptions,
    hub: &SharedHost<H>,
    stop: impl Future<Output = ()>,
) -> Result<(), ReplicateError>
where
    H: ReplicationHost,
    D: Duplex,
{
    let now = hub.now();
    let stream = if is_initiator {
        SecretStream::new_initiator(key_pair, entropy()?, opts, now)?
    } else {
        SecretStream::new_responder(key_pair, entropy()?, opts, now)?
    };
    replicate_link(io, stream, hub, stop).await
}

/// Replicate every core of `hub` over `io` through `link` (what turns the carrier's chunks into
/// replication frames and back: a [`SecretStream`], or a [`FramedLink`] when something else
/// already secured the stream), until the connection closes or `stop` completes.
pub async fn replicate_link<H, D, L>(
    mut io: D,
    link: L,
    hub: &SharedHost<H>,
    stop: impl Future<Output = ()>,
) -> Result<(), ReplicateError>
where
    H: ReplicationHost,
    D: Duplex,
    L: Link,
{
    let mut pump = Pump {
        stream: link,
        hub,
        sid: None,
        wake: Rc::new(WakeFlag::default()),
        ended_by_us: false,
        reported: 0,
    };
    let result = pump.run(&mut io, stop).await;
    if let Some(sid) = pump.sid.take() {
        let now = hub.now();
        let mut g = hub.lock().await;
        g.state.conns.remove(&sid);
        let removed = g.remove_stream(now, sid).await;
        drop(g);
        if result.is_ok() {
            removed?;
        }
    }
    if result.is_err() {
        io.close();
    }
    result
}

/// What turns a carrier's chunks into replication frames and back: the [`SecretStream`] of a
/// connection, or a [`FramedLink`] for a stream something else already secured (a custodial
/// relay runs secret-stream itself and carries one plaintext message per chunk).
///
/// The methods are [`SecretStream`]'s: input and end of input, frames to write and the end of
/// our side, chunks to transmit, events (first [`StreamEvent::Connected`] with the handshake
/// hash the replication capabilities are made with) and timers.
pub trait Link {
    /// Whether this side is the initiator (it picks the capability's direction).
    fn is_initiator(&self) -> bool;
    /// Whether the link closed.
    fn is_closed(&self) -> bool;
    /// A chunk from the carrier.
    fn handle_input(&mut self, now: u64, input: &[u8]);
    /// The carrier's input ended.
    fn handle_eof(&mut self, now: u64);
    /// Queue a frame for the peer.
    fn write(&mut self, frame: &[u8]) -> Result<(), StreamError>;
    /// End our side after what was written.
    fn end(&mut self);
    /// Close at once.
    fn destroy(&mut self, reason: Option<StreamError>);
    /// The next chunk for the carrier.
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    /// Our side ended: close the carrier once its chunks are sent.
    fn wants_shutdown(&self) -> bool;
    /// The next event.
    fn poll_event(&mut self) -> Option<StreamEvent>;
    /// When [`Link::handle_timeout`] is due.
    fn poll_timeout(&self) -> Option<u64>;
    /// A timer fired.
    fn handle_timeout(&mut self, now: u64);
}

impl Link for SecretStream {
    fn is_initiator(&self) -> bool {
        SecretStream::is_initiator(self)
    }
    fn is_closed(&self) -> bool {
        SecretStream::is_closed(self)
    }
    fn handle_input(&mut self, now: u64, input: &[u8]) {
        SecretStream::handle_input(self, now, input)
    }
    fn handle_eof(&mut self, now: u64) {
        SecretStream::handle_eof(self, now)
    }
    fn write(&mut self, frame: &[u8]) -> Result<(), StreamError> {
        SecretStream::write(self, frame)
    }
    fn end(&mut self) {
        SecretStream::end(self)
    }
    fn destroy(&mut self, reason: Option<StreamError>) {
        SecretStream::destroy(self, reason)
    }
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        SecretStream::poll_transmit(self)
    }
    fn wants_shutdown(&self) -> bool {
        SecretStream::wants_shutdown(self)
    }
    fn poll_event(&mut self) -> Option<StreamEvent> {
        SecretStream::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<u64> {
        SecretStream::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: u64) {
        SecretStream::handle_timeout(self, now)
    }
}

/// A [`Link`] over a stream that is already secured and message-framed: each chunk is one
/// replication frame, each way. What a custodial dht-relay stream is (the relay runs Noise and
/// secret-stream and forwards each decrypted message as one chunk, JS dht-relay's `Stream`,
/// which JS hypercore replicates over as it is, with the relay's `handshakeHash`). Empty
/// chunks are keep-alives (JS dht-relay sends them) and are dropped.
#[derive(Debug)]
pub struct FramedLink {
    is_initiator: bool,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<StreamEvent>,
    local_ended: bool,
    remote_ended: bool,
    closed: bool,
}

impl FramedLink {
    /// A link that is connected at once, with the handshake hash and remote key of the
    /// handshake that secured the stream.
    pub fn new(is_initiator: bool, remote_public_key: [u8; 32], handshake_hash: [u8; 64]) -> Self {
        FramedLink {
            is_initiator,
            out: VecDeque::new(),
            events: VecDeque::from([StreamEvent::Connected {
                remote_public_key,
                handshake_hash,
            }]),
            local_ended: false,
            remote_ended: false,
            closed: false,
        }
    }

    fn close_if_done(&mut self) {
        if self.local_ended && self.remote_ended && !self.closed {
            self.closed = true;
            self.events.push_back(StreamEvent::Closed(None));
        }
    }
}

impl Link for FramedLink {
    fn is_initiator(&self) -> bool {
        self.is_initiator
    }
    fn is_closed(&self) -> bool {
        self.closed
    }
    fn handle_input(&mut self, _now: u64, input: &[u8]) {
        if !self.closed && !self.remote_ended && !input.is_empty() {
            self.events.push_back(StreamEvent::Message(input.to_vec()));
        }
    }
    fn handle_eof(&mut self, _now: u64) {
        if !self.closed && !self.remote_ended {
            self.remote_ended = true;
            self.events.push_back(StreamEvent::End);
            self.close_if_done();
        }
    }
    fn write(&mut self, frame: &[u8]) -> Result<(), StreamError> {
        if self.closed || self.local_ended {
            return Err(StreamError::NotWritable);
        }
        self.out.push_back(frame.to_vec());
        Ok(())
    }
    fn end(&mut self) {
        if !self.closed {
            self.local_ended = true;
            self.close_if_done();
        }
    }
    fn destroy(&mut self, reason: Option<StreamError>) {
        if !self.closed {
            self.closed = true;
            self.out.clear();
            self.events.push_back(StreamEvent::Closed(reason));
        }
    }
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }
    fn wants_shutdown(&self) -> bool {
        self.local_ended && self.out.is_empty()
    }
    fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }
    fn poll_timeout(&self) -> Option<u64> {
        None
    }
    fn handle_timeout(&mut self, _now: u64) {}
}

struct Pump<'h, H, L> {
    stream: L,
    hub: &'h SharedHost<H>,
    sid: Option<StreamId>,
    wake: Rc<WakeFlag>,
    ended_by_us: bool,
    /// The backlog last told to the hub.
    reported: usize,
}

/// Milliseconds between two looks at the buffer of a carrier that reports
/// [`Duplex::buffered_amount`] but does not wake the pump when it drained
/// ([`Duplex::poll_drained`] left at its default, as a WebSocket, which has no drain event).
const DRAIN_POLL_MS: u64 = 10;

/// The most bytes of input the pump takes from its carrier before it acts on them: what is
/// already there is read at once (up to this), so that the blocks of many chunks are stored in
/// one write.
const READ_BATCH_BYTES: usize = 4 << 20;

/// What woke the pump.
enum Wakeup {
    Timer,
    Stop,
    Input(Option<Vec<u8>>),
    Frames,
    /// The carrier said its buffer drained to this level.
    Drained(usize),
    /// Time to look at the buffer of a carrier that does not say when it drained.
    DrainTick,
}

impl<H: ReplicationHost, L: Link> Pump<'_, H, L> {
    async fn run<D: Duplex>(
        &mut self,
        io: &mut D,
        stop: impl Future<Output = ()>,
    ) -> Result<(), ReplicateError> {
        let mut stop = pin!(stop);
        let mut stopped = false;
        let mut reading = true;
        let mut shut_down = false;
        // The armed timer and the deadline (hub milliseconds) it fires at.
        let mut timer: Option<(u64, Sleep)> = None;
        // Encrypted chunks the carrier has no room for yet.
        let mut out = Outbox::default();
        // The carrier's `poll_drained` proved uninformative: poll its buffer on `drain_tick`.
        let mut drain_polling = false;
        let mut drain_tick: Option<Sleep> = None;
        // Events the link holds before any input: a `FramedLink` is connected from the start,
        // and the hub must open its channels at once, not after the peer's first message (two
        // such links would each wait for the other forever: two pages through relays).
        self.handle_stream_events().await?;
        loop {
            self.take_frames().await?;
            while let Some(bytes) = self.stream.poll_transmit() {
                out.push(bytes);
            }
            out.flush(io)?;
            self.report(out.backlog(io)).await?;
            if out.is_empty() {
                if self.stream.wants_shutdown() && !shut_down {
                    shut_down = true;
                    io.close();
                }
                if self.stream.is_closed() {
                    return Ok(());
                }
            }
            let deadline = {
                let hub_t = self.hub.inner.state.lock().await.hub.poll_timeout();
                [self.stream.poll_timeout(), hub_t]
                    .into_iter()
                    .flatten()
                    .min()
            };
            match deadline {
                Some(at) if timer.as_ref().is_some_and(|t| t.0 == at) => {}
                Some(at) => {
                    let wait = at.saturating_sub(self.hub.now());
                    timer = Some((at, Sleep::new(wait)));
                }
                None => timer = None,
            }
            // Wait for the carrier to drain while chunks wait for room or the hub must hear
            // that the backlog shrank: by its wake-up, or on our own tick for a carrier whose
            // `poll_drained` tells nothing.
            let drain = out.drain_target(io, self.reported);
            if drain.is_none() {
                drain_tick = None;
            } else if drain_polling && drain_tick.is_none() {
                drain_tick = Some(Sleep::new(DRAIN_POLL_MS));
            }
            let wake = self.wake.clone();
            let wakeup = poll_fn(|cx| {
                if let Some((_, sleep)) = timer.as_mut() {
                    if Pin::new(sleep).poll(cx).is_ready() {
                        return Poll::Ready(Wakeup::Timer);
                    }
                }
                if !stopped && stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wakeup::Stop);
                }
                if wake.poll_notified(cx).is_ready() {
                    return Poll::Ready(Wakeup::Frames);
                }
                if reading {
                    if let Poll::Ready(chunk) = io.poll_recv(cx) {
                        return Poll::Ready(Wakeup::Input(chunk));
                    }
                }
                if let Some(low) = drain {
                    if let Some(tick) = drain_tick.as_mut() {
                        if Pin::new(tick).poll(cx).is_ready() {
                            return Poll::Ready(Wakeup::DrainTick);
                        }
                    } else if io.poll_drained(cx, low).is_ready() {
                        return Poll::Ready(Wakeup::Drained(low));
                    }
                }
                Poll::Pending
            })
            .await;
            let now = self.hub.now();
            match wakeup {
                Wakeup::Input(Some(chunk)) => {
                    self.stream.handle_input(now, &chunk);
                    // Take the chunks the carrier already holds too (those that arrived while
                    // the last blocks were being stored): their messages then reach the hub
                    // together, and their blocks are stored in one write (one IndexedDB
                    // transaction) instead of one each.
                    let mut taken = chunk.len();
                    while reading && taken < READ_BATCH_BYTES {
                        match poll_fn(|cx| Poll::Ready(io.poll_recv(cx))).await {
                            Poll::Ready(Some(chunk)) => {
                                taken += chunk.len();
                                self.stream.handle_input(now, &chunk);
                            }
                            Poll::Ready(None) => {
                                reading = false;
                                self.stream.handle_eof(now);
                            }
                            Poll::Pending => break,
                        }
                    }
                }
                Wakeup::Input(None) => {
                    reading = false;
                    self.stream.handle_eof(now);
                }
                Wakeup::Frames => {}
                Wakeup::Drained(low) => {
                    // Ready without having drained (e.g. the default): poll on a tick from now
                    // on instead of spinning.
                    drain_polling |= io.buffered_amount() > low;
                }
                Wakeup::DrainTick => drain_tick = None,
                Wakeup::Stop => {
                    stopped = true;
                    self.end();
                }
                Wakeup::Timer => {
                    timer = None;
                    if self.stream.poll_timeout().is_some_and(|t| t <= now) {
                        self.stream.handle_timeout(now);
                    }
                    let mut g = self.hub.lock().await;
                    if g.poll_timeout().is_some_and(|t| t <= now) {
                        g.handle_timeout(now).await?;
                    }
                }
            }
            self.handle_stream_events().await?;
        }
    }

    /// Tell the hub how many bytes we and the carrier hold unwritten, when that changed enough.
    async fn report(&mut self, backlog: usize) -> Result<(), ReplicateError> {
        let max = &self.hub.inner.max_backlog;
        max.set(max.get().max(backlog));
        let Some(sid) = self.sid else {
            return Ok(());
        };
        if !backlog_report_due(backlog, self.reported) {
            return Ok(());
        }
        self.reported = backlog;
        let now = self.hub.now();
        let mut g = self.hub.lock().await;
        if g.has_stream(sid) {
            g.set_backlog(now, sid, backlog).await?;
        }
        Ok(())
    }

    /// End our side of the secret stream (once).
    fn end(&mut self) {
        if !self.ended_by_us {
            self.ended_by_us = true;
            self.stream.end();
        }
    }

    /// Give the hub's frames for our stream to the secret stream; act on end/destroy requests.
    async fn take_frames(&mut self) -> Result<(), ReplicateError> {
        let Some(sid) = self.sid else {
            return Ok(());
        };
        let (frames, destroyed, end) = {
            let mut st = self.hub.inner.state.lock().await;
            match st.conns.get_mut(&sid) {
                Some(c) => (
                    std::mem::take(&mut c.frames),
                    c.destroyed.take(),
                    std::mem::take(&mut c.end),
                ),
                None => return Ok(()),
            }
        };
        if let Some(error) = destroyed {
            self.stream.destroy(None);
            return Err(error.into());
        }
        for f in frames {
            // Once our side ended (a graceful end: ours, or in answer to the peer's), the
            // frames the hub still makes for this stream (answers to the peer's last requests,
            // requests of a download) have nowhere to go: dropped, not an error that would
            // fail a clean close (the secret stream refuses writes after its end).
            if self.ended_by_us || self.stream.is_closed() {
                break;
            }
            self.stream.write(&f)?;
        }
        if end {
            self.end();
        }
        Ok(())
    }

    /// Act on the secret stream's events; its messages go to the hub together (one lock, one
    /// `handle_frames` call for all those of one read), so their blocks are stored in one write.
    async fn handle_stream_events(&mut self) -> Result<(), ReplicateError> {
        let mut messages = Vec::new();
        while let Some(event) = self.stream.poll_event() {
            if let StreamEvent::Message(m) = event {
                messages.push(m);
                continue;
            }
            self.deliver(&mut messages).await?;
            match event {
                StreamEvent::Connected { handshake_hash, .. } => {
                    let mut g = self.hub.lock().await;
                    let sid = g.add_stream(self.stream.is_initiator(), handshake_hash)?;
                    g.state.conns.insert(
                        sid,
                        Conn {
                            wake: self.wake.clone(),
                            ..Conn::default()
                        },
                    );
                    self.sid = Some(sid);
                }
                StreamEvent::Message(_) => {}
                StreamEvent::End => self.end(),
                StreamEvent::Closed(Some(err)) => return Err(err.into()),
                StreamEvent::Closed(None) => {}
            }
        }
        self.deliver(&mut messages).await
    }

    /// Give `messages` (decrypted frames, in order) to the hub.
    async fn deliver(&mut self, messages: &mut Vec<Vec<u8>>) -> Result<(), ReplicateError> {
        if messages.is_empty() {
            return Ok(());
        }
        let frames = std::mem::take(messages);
        if let Some(sid) = self.sid {
            let now = self.hub.now();
            let mut g = self.hub.lock().await;
            if g.has_stream(sid) {
                g.handle_frames(now, sid, &frames).await?;
            }
        }
        Ok(())
    }
}
