//! Hypercore replication over tokio byte streams: a pump, no protocol decisions.
//!
//! [`replicate`] runs one connection: bytes read from the socket go into a [`SecretStream`];
//! its decrypted messages go into a [`ReplicationHub`] as frames; the hub's outgoing frames
//! are encrypted by the secret stream and written back. Timers of both come from their
//! `poll_timeout` and are driven with `tokio::time`; the secret stream's entropy comes from the
//! operating system (`getrandom`).
//!
//! The same driver runs a [`Corestore`]: a [`SharedCorestore`] replicates every core of the
//! store over each connection, one protomux stream per connection, and opens the stored cores
//! the remote asks for ([`Corestore`] answers the hub's unknown-core opens while it handles
//! frames).
//!
//! One [`SharedHub`] serves any number of connections at once (a server runs one
//! [`replicate`] task per accepted client on the same hub). Frames the hub produces for a
//! stream are routed to that stream's connection whenever the hub lock is released, so driving
//! a replicator through [`SharedHub::lock`] (e.g. `download` or `append`) reaches every peer.
//!
//! Each connection runs as two tasks: the pump (socket I/O and the secret stream: reading,
//! decrypting, encrypting, writing), which is the future [`replicate`] returns, and an
//! applier, spawned with `tokio::spawn`, which does everything that needs the hub's lock: it
//! gives the decrypted messages to the hub in order (verification and storage), tells it the
//! pump's backlog and runs its timers. On a multi-thread runtime the two run in parallel: a
//! fast download uses two cores. A bounded queue between them keeps the pump at most a few
//! reads ahead. The pump itself never waits for the hub's lock, so the task that polls
//! [`replicate`] may lock the hub too (e.g. to look at the core between events).
//!
//! Outgoing bytes are queued in memory while the socket is not writable; reading continues
//! meanwhile, so two pumps can never deadlock each other on full socket buffers. The queue is
//! bounded all the same: the pump tells the hub how many bytes it holds
//! ([`ReplicationHub::set_backlog`]), and past the hub's high-water mark the peer's requests
//! wait for the queue to drain instead of being answered (a peer that sends requests but never
//! reads cannot grow our memory; [`SharedHub::max_backlog`] shows the most ever held).

use std::collections::{HashMap, VecDeque};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex, MutexGuard, Notify};
use tokio::time::Instant;

use crate::core::corestore::Corestore;
use crate::core::crypto::KeyPair;
use crate::core::protomux::OutFrame;
use crate::core::replication::{
    backlog_report_due, HubEvent, ReplicationError, ReplicationHost, ReplicationHub, StreamId,
};
use crate::core::secretstream::{
    Entropy, Event as StreamEvent, Options as StreamOptions, SecretStream, StreamError,
};

/// Bytes read from the socket at most per read call. The messages of one read go to the hub
/// together and the blocks among them are stored in one write: bigger reads, fewer writes.
const READ_CHUNK: usize = 256 * 1024;

/// Why [`replicate`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    /// Reading or writing the socket failed.
    #[error("connection I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The operating system's random source failed (needed for the handshake).
    #[error("cannot get randomness from the operating system: {0}")]
    Random(String),
    /// The secret stream failed (handshake, decryption, framing) or closed with an error.
    #[error("secret stream: {0}")]
    Stream(#[from] StreamError),
    /// The replication hub failed locally (storage) or destroyed the stream (protocol violation
    /// by the peer).
    #[error("replication: {0}")]
    Replication(#[from] ReplicationError),
}

/// What the hub routes to one connection. It has a lock of its own, held only to move frames
/// in or out, so that the connection's pump never waits for the hub (which its applier may
/// hold for a while, verifying and storing).
#[derive(Debug, Default)]
struct ConnQueue {
    /// Frames from the hub, not yet given to the secret stream.
    frames: VecDeque<OutFrame>,
    /// Their bytes (part of the connection's backlog, see [`Applier`]).
    bytes: usize,
    /// The hub destroyed the stream: drop the connection with this error.
    destroyed: Option<ReplicationError>,
    /// The owner asked for a graceful end.
    end: bool,
}

/// Per-connection state the hub routes to.
#[derive(Debug, Default)]
struct Conn {
    queue: std::sync::Mutex<ConnQueue>,
    /// Wakes the connection's task.
    wake: Arc<Notify>,
}

impl Conn {
    fn queue(&self) -> std::sync::MutexGuard<'_, ConnQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Which events a subscriber wants ([`SharedHost::subscribe_filtered`]).
type EventFilter = Box<dyn Fn(&HubEvent) -> bool + Send>;

struct State<H> {
    hub: H,
    conns: HashMap<StreamId, Arc<Conn>>,
    events: Option<mpsc::UnboundedSender<HubEvent>>,
    /// More subscribers ([`SharedHost::subscribe`], [`SharedHost::subscribe_filtered`]), each
    /// with the events it wants (`None`: all); closed ones are dropped.
    taps: Vec<(mpsc::UnboundedSender<HubEvent>, Option<EventFilter>)>,
    /// Woken whenever the hub reported events (see [`SharedHost::changed`]).
    changed: Arc<Notify>,
}

impl<H: ReplicationHost> State<H> {
    /// Move the hub's frames to their connections and its events to the subscriber.
    fn route(&mut self) {
        while let Some((sid, frame)) = self.hub.poll_transmit_frame() {
            if let Some(c) = self.conns.get(&sid) {
                let mut q = c.queue();
                q.bytes += frame.len();
                q.frames.push_back(frame);
                drop(q);
                c.wake.notify_one();
            }
        }
        let mut any = false;
        while let Some(event) = self.hub.poll_event() {
            any = true;
            if let HubEvent::StreamClosed { stream, error } = &event {
                if let Some(c) = self.conns.get(stream) {
                    c.queue().destroyed = Some(error.clone());
                    c.wake.notify_one();
                }
            }
            if !self.taps.is_empty() {
                self.taps.retain(|(tx, filter)| {
                    if filter.as_ref().is_some_and(|f| !f(&event)) {
                        return !tx.is_closed();
                    }
                    tx.send(event.clone()).is_ok()
                });
            }
            if let Some(tx) = &self.events {
                if tx.send(event).is_err() {
                    self.events = None;
                }
            }
        }
        if any | self.hub.take_changed() {
            self.changed.notify_waiters();
        }
    }
}

/// A [`ReplicationHub`] (or another [`ReplicationHost`], such as a [`Corestore`]) shared by
/// the connections that [`replicate`] runs, with one clock.
///
/// Cloning gives another handle to the same host.
///
/// [`Corestore`]: crate::core::corestore::Corestore
pub struct SharedHost<H> {
    state: Arc<Mutex<State<H>>>,
    /// The most bytes a connection held unwritten at once.
    max_backlog: Arc<AtomicUsize>,
    /// The hub's next timer (`u64::MAX`: none), as of the last release of its lock: the pumps
    /// read it without taking the lock.
    timeout: Arc<AtomicU64>,
    start: Instant,
    /// [`State::changed`], reachable without the lock.
    changed: Arc<Notify>,
}

impl<H> Clone for SharedHost<H> {
    fn clone(&self) -> Self {
        SharedHost {
            state: self.state.clone(),
            max_backlog: self.max_backlog.clone(),
            timeout: self.timeout.clone(),
            start: self.start,
            changed: self.changed.clone(),
        }
    }
}

/// A shared [`ReplicationHub`] on storage `S`.
pub type SharedHub<S> = SharedHost<ReplicationHub<S>>;

/// A shared [`Corestore`] on storage `S`: every core of
/// the store replicated over each connection ([`replicate`]), cores the remote asks for opened
/// from storage on demand.
pub type SharedCorestore<S> = SharedHost<Corestore<S>>;

impl<H: ReplicationHost> SharedHost<H> {
    /// Share `hub`; its events are dropped.
    pub fn new(hub: H) -> Self {
        Self::build(hub, None)
    }

    /// Share `hub` and receive all of its events (unbounded: keep reading them).
    pub fn with_events(hub: H) -> (Self, mpsc::UnboundedReceiver<HubEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self::build(hub, Some(tx)), rx)
    }

    fn build(hub: H, events: Option<mpsc::UnboundedSender<HubEvent>>) -> Self {
        let timeout = Arc::new(AtomicU64::new(hub.poll_timeout().unwrap_or(u64::MAX)));
        let changed = Arc::new(Notify::new());
        SharedHost {
            state: Arc::new(Mutex::new(State {
                hub,
                conns: HashMap::new(),
                events,
                taps: Vec::new(),
                changed: changed.clone(),
            })),
            max_backlog: Arc::new(AtomicUsize::new(0)),
            timeout,
            start: Instant::now(),
            changed,
        }
    }

    /// Every event of the hub from now on, in order (beside the receiver of
    /// [`SharedHost::with_events`]; unbounded: keep reading it, or drop it).
    pub async fn subscribe(&self) -> mpsc::UnboundedReceiver<HubEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.state.lock().await.taps.push((tx, None));
        rx
    }

    /// The events of the hub from now on for which `filter` is true, in order (as
    /// [`SharedHost::subscribe`], but the others are never queued: a subscriber interested in a
    /// few cores does not collect the events of the whole store).
    pub async fn subscribe_filtered(
        &self,
        filter: impl Fn(&HubEvent) -> bool + Send + 'static,
    ) -> mpsc::UnboundedReceiver<HubEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.state
            .lock()
            .await
            .taps
            .push((tx, Some(Box::new(filter))));
        rx
    }

    /// Woken (`notify_waiters`) each time a release of the hub's lock delivered events: blocks
    /// downloaded, upgrades, peers syncing or leaving. To wait for a condition on the hub
    /// without missing a wake-up: create and `enable` a [`Notify::notified`] future, then
    /// check the condition under [`SharedHost::lock`], release the lock, and await the future.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Waits until `check`, run on the hub under its lock (first at once, then after each
    /// [`changed`](Self::changed)), gives a value; `Ok(None)` when `deadline` passes first.
    pub async fn wait_until<T, E>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&mut H) -> Result<Option<T>, E>,
    ) -> Result<Option<T>, E> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut g = self.lock().await;
                if let Some(v) = check(&mut g)? {
                    return Ok(Some(v));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    /// The hub's next timer as of the last release of its lock.
    fn next_timeout(&self) -> Option<u64> {
        Some(self.timeout.load(Ordering::Acquire)).filter(|&t| t != u64::MAX)
    }

    /// Milliseconds since this hub was shared: the `now` to pass to hub and replicator calls.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Exclusive access to the hub. When the guard drops, the hub is flushed and its frames
    /// and events are routed to the connections and the event subscriber.
    pub async fn lock(&self) -> HubGuard<'_, H> {
        HubGuard {
            state: self.state.lock().await,
            timeout: &self.timeout,
        }
    }

    /// [`SharedHost::lock`] if the hub is not locked now.
    pub(crate) fn try_lock(&self) -> Option<HubGuard<'_, H>> {
        Some(HubGuard {
            state: self.state.try_lock().ok()?,
            timeout: &self.timeout,
        })
    }

    /// Ask every current connection to end gracefully (each [`replicate`] call then returns
    /// once the peer has ended too).
    pub async fn end_all(&self) {
        let st = self.state.lock().await;
        for c in st.conns.values() {
            c.queue().end = true;
            c.wake.notify_one();
        }
    }

    /// Number of connections currently replicating (handshake done, not yet closed).
    pub async fn connections(&self) -> usize {
        self.state.lock().await.conns.len()
    }

    /// The most bytes one connection ever held encrypted but not yet written: bounded by the
    /// hub's high-water mark plus about one answer, however little the peer reads.
    pub fn max_backlog(&self) -> usize {
        self.max_backlog.load(Ordering::Relaxed)
    }

    pub(crate) fn deadline(&self, at_ms: u64) -> Instant {
        self.start + Duration::from_millis(at_ms)
    }
}

/// Exclusive access to a [`SharedHost`]'s hub (see [`SharedHost::lock`]).
pub struct HubGuard<'a, H: ReplicationHost> {
    state: MutexGuard<'a, State<H>>,
    /// [`SharedHub::timeout`], updated when the guard drops.
    timeout: &'a AtomicU64,
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
        self.state.route();
        let t = self.state.hub.poll_timeout().unwrap_or(u64::MAX);
        let old = self.timeout.swap(t, Ordering::AcqRel);
        if t < old {
            // An earlier timer: the pumps sleeping until the old one must re-arm theirs.
            for c in self.state.conns.values() {
                c.wake.notify_one();
            }
        }
    }
}

/// 64 bytes from the operating system's random source.
fn entropy() -> Result<Entropy, ReplicateError> {
    let mut bytes = [0u8; 64];
    getrandom::fill(&mut bytes).map_err(|e| ReplicateError::Random(e.to_string()))?;
    Ok(Entropy::from_bytes(&bytes))
}

/// Replicate every core of `hub` over `io` until the connection closes.
///
/// `is_initiator` picks the Noise role (the dialing side is the initiator; the two ends must
/// differ). `key_pair` is this peer's static key for the secret-stream handshake. Returns
/// `Ok(())` after a clean close by either side (end of stream from both, see
/// [`SharedHub::end_all`]), or the first error. The hub's stream is removed in every case.
pub async fn replicate<H, T>(
    io: T,
    is_initiator: bool,
    key_pair: KeyPair,
    hub: &SharedHost<H>,
) -> Result<(), ReplicateError>
where
    H: ReplicationHost + 'static,
    T: AsyncRead + AsyncWrite + Unpin,
{
    replicate_with(io, is_initiator, key_pair, StreamOptions::default(), hub).await
}

/// [`replicate`] with secret-stream options, e.g. a receive timeout (`timeout`, which also
/// bounds the handshake) and keep-alives (`keep_alive`) so that a stalled peer is dropped with
/// [`StreamError::TimedOut`] while an idle but healthy one is not.
pub async fn replicate_with<H, T>(
    io: T,
    is_initiator: bool,
    key_pair: KeyPair,
    opts: StreamOptions,
    hub: &SharedHost<H>,
) -> Result<(), ReplicateError>
where
    H: ReplicationHost + 'static,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let now = hub.now();
    let stream = if is_initiator {
        SecretStream::new_initiator(key_pair, entropy()?, opts, now)?
    } else {
        SecretStream::new_responder(key_pair, entropy()?, opts, now)?
    };
    replicate_secret(io, stream, hub).await
}

/// Replicate every core of `hub` over a hyperdht connection (a swarm's, or
/// [`Dht::connect_raw`](crate::dht::Dht::connect_raw)'s / [`Server::accept_raw`](crate::dht::Server::accept_raw)'s):
/// secret-stream over its UDX stream with the handshake the DHT made, keep-alives as
/// hyperdht's. Returns when the connection closes, as [`replicate`].
pub async fn replicate_connection<H>(
    conn: crate::dht::RawConnection,
    hub: &SharedHost<H>,
) -> Result<(), ReplicateError>
where
    H: ReplicationHost + 'static,
{
    let opts = StreamOptions {
        keep_alive: crate::dht::KEEP_ALIVE_MS,
        ..StreamOptions::default()
    };
    let parts = conn.into_parts(opts, hub.now())?;
    let result = replicate_secret(parts.udx, parts.stream, hub).await;
    drop(parts.socket);
    drop(parts.guards);
    result
}

/// Replicate over `io` with a secret stream made already (its handshake done or under way).
async fn replicate_secret<H, T>(
    io: T,
    stream: SecretStream,
    hub: &SharedHost<H>,
) -> Result<(), ReplicateError>
where
    H: ReplicationHost + 'static,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut pump = Pump {
        stream,
        hub,
        wake: Arc::new(Notify::new()),
        ended_by_us: false,
        reported: 0,
        applier: None,
        conn: None,
    };
    let mut result = pump.run(io).await;
    if let Some(applier) = pump.applier.take() {
        // What was read is applied before the stream goes (the applier removes it last).
        if let Err(e) = applier.finish().await {
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result
}

/// Batches of decrypted messages waiting for the [`Applier`] of a connection, at most.
const APPLY_QUEUE: usize = 4;
/// The applier takes queued batches together up to this many bytes.
const MERGE_BYTES: usize = 2 * 1024 * 1024;

/// What a connection's pump asks of its [`Applier`] besides applying messages, and how the
/// applier answers.
#[derive(Default)]
struct Requests {
    /// The backlog to tell the hub ([`ReplicationHub::set_backlog`]), the latest only.
    backlog: std::sync::Mutex<Option<usize>>,
    /// The hub's timer is due: run [`ReplicationHost::handle_timeout`]. Set by the pump, cleared
    /// by the applier once it ran the timers (the pump does not ask again meanwhile).
    timer: std::sync::atomic::AtomicBool,
    /// Wakes the applier for the two above.
    poke: Notify,
    /// The error that stopped the applier (the hub failed locally).
    failed: std::sync::Mutex<Option<ReplicationError>>,
}

impl Requests {
    fn fail(&self, e: ReplicationError) {
        let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert(e);
    }
}

/// Everything one connection does with the hub, on a task of its own: it adds the stream to
/// the hub, applies the decrypted messages in order (verification and storage), tells the hub
/// the pump's backlog, runs the hub's timers, and removes the stream at the end.
///
/// So on a multi-thread runtime a connection's reading and decryption (the pump) and its
/// verification and storage (the hub) run in parallel; and the pump never waits for the hub's
/// lock. That matters when the task polling [`replicate`] also locks the hub (as `core fetch`
/// does between events): a pump that awaited the lock could be granted it and then not be
/// polled, while the same task waited for the lock: both stalled for good.
struct Applier {
    tx: Option<mpsc::Sender<Vec<Vec<u8>>>>,
    /// Applied batches, whose buffers the secret stream reuses.
    spent: mpsc::UnboundedReceiver<Vec<Vec<u8>>>,
    requests: Arc<Requests>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Applier {
    /// Start the task: it adds a stream for the handshake (`is_initiator`, `handshake_hash`)
    /// whose frames go to `conn`, then serves the pump.
    fn spawn<H: ReplicationHost + 'static>(
        hub: SharedHost<H>,
        is_initiator: bool,
        handshake_hash: [u8; 64],
        conn: Arc<Conn>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Vec<Vec<u8>>>(APPLY_QUEUE);
        let (spent_tx, spent) = mpsc::unbounded_channel();
        let requests = Arc::new(Requests::default());
        let task = tokio::spawn(Self::run(
            hub,
            is_initiator,
            handshake_hash,
            conn,
            rx,
            spent_tx,
            requests.clone(),
        ));
        Applier {
            tx: Some(tx),
            spent,
            requests,
            task: Some(task),
        }
    }

    async fn run<H: ReplicationHost + 'static>(
        hub: SharedHost<H>,
        is_initiator: bool,
        handshake_hash: [u8; 64],
        conn: Arc<Conn>,
        mut rx: mpsc::Receiver<Vec<Vec<u8>>>,
        spent_tx: mpsc::UnboundedSender<Vec<Vec<u8>>>,
        requests: Arc<Requests>,
    ) {
        let sid = {
            let mut g = hub.lock().await;
            match g.add_stream(is_initiator, handshake_hash) {
                Ok(sid) => {
                    g.state.conns.insert(sid, conn.clone());
                    sid
                }
                Err(e) => {
                    drop(g);
                    requests.fail(e);
                    conn.wake.notify_one();
                    return;
                }
            }
        };
        if let Err(e) = Self::serve(&hub, sid, &conn, &mut rx, &spent_tx, &requests).await {
            requests.fail(e);
            conn.wake.notify_one();
        }
        let now = hub.now();
        let mut g = hub.lock().await;
        g.state.conns.remove(&sid);
        let removed = g.remove_stream(now, sid).await;
        drop(g);
        if let Err(e) = removed {
            requests.fail(e);
        }
    }

    /// Apply batches and run the pump's requests until the pump is done with us.
    async fn serve<H: ReplicationHost + 'static>(
        hub: &SharedHost<H>,
        sid: StreamId,
        conn: &Conn,
        rx: &mut mpsc::Receiver<Vec<Vec<u8>>>,
        spent_tx: &mpsc::UnboundedSender<Vec<Vec<u8>>>,
        requests: &Requests,
    ) -> Result<(), ReplicationError> {
        // The pump's backlog as it last told, and what we last told the hub.
        let (mut pump_backlog, mut told) = (0usize, 0usize);
        loop {
            let mut frames = tokio::select! {
                f = rx.recv() => match f {
                    Some(f) => Some(f),
                    None => return Ok(()),
                },
                () = requests.poke.notified() => None,
            };
            if let Some(f) = &mut frames {
                // Batches that queued up while the last one was applied go with it: the blocks
                // of one batch are verified together (hashed several at a time) and stored in
                // one write.
                let mut bytes: usize = f.iter().map(Vec::len).sum();
                while bytes < MERGE_BYTES {
                    let Ok(more) = rx.try_recv() else { break };
                    bytes += more.iter().map(Vec::len).sum::<usize>();
                    f.extend(more);
                }
            }
            let backlog = requests
                .backlog
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            let timer = requests.timer.load(Ordering::Acquire);
            let now = hub.now();
            let mut g = hub.lock().await;
            if !g.has_stream(sid) {
                // Destroyed: what is left is dropped (the pump is told through `conn`).
                drop(g);
                requests.timer.store(false, Ordering::Release);
                continue;
            }
            // The backlog first, so that these frames' requests are not answered past the
            // high-water mark: what the pump holds encrypted plus the frames routed to it that
            // it has not taken yet (it may not have run since we last applied a batch).
            if let Some(bytes) = backlog {
                pump_backlog = bytes;
            }
            let backlog = pump_backlog + conn.queue().bytes;
            if backlog_report_due(backlog, told) {
                told = backlog;
                g.set_backlog(now, sid, backlog).await?;
            }
            if let Some(frames) = &frames {
                if g.has_stream(sid) {
                    g.handle_frames(now, sid, frames).await?;
                }
            }
            if timer {
                if g.poll_timeout().is_some_and(|t| t <= now) {
                    g.handle_timeout(now).await?;
                }
                requests.timer.store(false, Ordering::Release);
            }
            drop(g);
            if timer {
                // The pump re-arms its sleep for the hub's next timer.
                conn.wake.notify_one();
            }
            if let Some(frames) = frames {
                // The pump may be gone; the buffers are then just freed.
                let _ = spent_tx.send(frames);
            }
        }
    }

    fn error(&self) -> Option<ReplicationError> {
        self.requests
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Queue a batch (waits while [`APPLY_QUEUE`] batches wait).
    async fn send(&mut self, frames: Vec<Vec<u8>>) -> Result<(), ReplicateError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(frames).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        Err(self
            .error()
            .unwrap_or(ReplicationError::UnknownStream)
            .into())
    }

    /// Tell the hub the pump holds `bytes` unwritten (the latest value wins).
    fn report_backlog(&self, bytes: usize) {
        *self
            .requests
            .backlog
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        self.requests.poke.notify_one();
    }

    /// Whether the hub's timers were asked to run and have not run yet.
    fn timer_asked(&self) -> bool {
        self.requests.timer.load(Ordering::Acquire)
    }

    /// Ask for the hub's timers to run.
    fn ask_timer(&self) {
        self.requests.timer.store(true, Ordering::Release);
        self.requests.poke.notify_one();
    }

    /// Apply what is queued, remove the stream from the hub, then stop; the error that stopped
    /// the task, if any.
    async fn finish(mut self) -> Result<(), ReplicateError> {
        self.tx = None;
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
        match self.error() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// Buffers given to one vectored write at most.
const MAX_IOV: usize = 64;

/// Write what `out` holds (from `offset` in its first buffer), up to [`MAX_IOV`] buffers in one
/// vectored write: a secret stream's frames come in pieces ([`SecretStream::write_owned`]).
async fn write_from<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &VecDeque<Vec<u8>>,
    offset: usize,
) -> std::io::Result<usize> {
    let mut iov = [std::io::IoSlice::new(&[]); MAX_IOV];
    let mut n = 0;
    for (i, b) in out.iter().take(MAX_IOV).enumerate() {
        iov[i] = std::io::IoSlice::new(if i == 0 { &b[offset..] } else { b });
        n += 1;
    }
    wr.write_vectored(&iov[..n]).await
}

struct Pump<'h, H> {
    stream: SecretStream,
    hub: &'h SharedHost<H>,
    wake: Arc<Notify>,
    ended_by_us: bool,
    /// The backlog last told to the hub.
    reported: usize,
    /// Does everything with the hub (once the stream is connected).
    applier: Option<Applier>,
    /// What the hub routes to us (once the stream is connected).
    conn: Option<Arc<Conn>>,
}

impl<H: ReplicationHost + 'static> Pump<'_, H> {
    async fn run<T: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: T,
    ) -> Result<(), ReplicateError> {
        let (mut rd, mut wr) = tokio::io::split(io);
        let mut buf = vec![0u8; READ_CHUNK];
        let mut out: VecDeque<Vec<u8>> = VecDeque::new();
        let mut offset = 0usize;
        // Bytes in `out` not yet written.
        let mut queued = 0usize;
        let mut reading = true;
        let mut shut_down = false;
        loop {
            if let Some(a) = &mut self.applier {
                if let Some(e) = a.error() {
                    return Err(e.into());
                }
                while let Ok(spent) = a.spent.try_recv() {
                    for b in spent {
                        self.stream.recycle(b);
                    }
                }
            }
            self.take_frames()?;
            while let Some(bytes) = self.stream.poll_transmit() {
                if !bytes.is_empty() {
                    queued += bytes.len();
                    out.push_back(bytes);
                }
            }
            self.report(queued);
            if out.is_empty() {
                if self.stream.wants_shutdown() && !shut_down {
                    shut_down = true;
                    // The peer may already be gone; closing is best effort.
                    let _ = wr.shutdown().await;
                }
                if self.stream.is_closed() {
                    return Ok(());
                }
            }
            // The hub's timer counts only once the applier exists, and not while it is asked
            // to run the timers already.
            let hub_timer = self
                .applier
                .as_ref()
                .filter(|a| !a.timer_asked())
                .and_then(|_| self.hub.next_timeout());
            let timeout = [self.stream.poll_timeout(), hub_timer]
                .into_iter()
                .flatten()
                .min();
            let sleep_until = self.hub.deadline(timeout.unwrap_or(0));
            tokio::select! {
                r = rd.read(&mut buf), if reading => {
                    let now = self.hub.now();
                    match r {
                        Ok(0) | Err(_) => {
                            reading = false;
                            self.stream.handle_eof(now);
                        }
                        Ok(n) => self.stream.handle_input(now, &buf[..n]),
                    }
                }
                r = write_from(&mut wr, &out, offset), if !out.is_empty() => {
                    let mut n = r?;
                    if n == 0 {
                        return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
                    }
                    queued -= n;
                    while let Some(b) = out.front() {
                        let left = b.len() - offset;
                        if n < left {
                            offset += n;
                            break;
                        }
                        n -= left;
                        out.pop_front();
                        offset = 0;
                    }
                }
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(sleep_until), if timeout.is_some() => {
                    let now = self.hub.now();
                    if self.stream.poll_timeout().is_some_and(|t| t <= now) {
                        self.stream.handle_timeout(now);
                    }
                    if let Some(a) = &self.applier {
                        if hub_timer.is_some_and(|t| t <= now) {
                            a.ask_timer();
                        }
                    }
                }
            }
            self.handle_stream_events().await?;
        }
    }

    /// Tell the hub (through the applier) how many bytes we hold unwritten, when that changed
    /// enough.
    fn report(&mut self, queued: usize) {
        self.hub.max_backlog.fetch_max(queued, Ordering::Relaxed);
        let Some(a) = &self.applier else {
            return;
        };
        if !backlog_report_due(queued, self.reported) {
            return;
        }
        self.reported = queued;
        a.report_backlog(queued);
    }

    /// Give the hub's frames for our stream to the secret stream; act on end/destroy requests.
    fn take_frames(&mut self) -> Result<(), ReplicateError> {
        let Some(conn) = &self.conn else {
            return Ok(());
        };
        let (frames, destroyed, end) = {
            let mut q = conn.queue();
            q.bytes = 0;
            (
                std::mem::take(&mut q.frames),
                q.destroyed.take(),
                std::mem::take(&mut q.end),
            )
        };
        if let Some(error) = destroyed {
            self.stream.destroy(None);
            return Err(error.into());
        }
        for f in frames {
            if self.stream.is_closed() {
                break;
            }
            // Encrypted in place (no copy of the frame, nor of the blocks kept apart in it);
            // its pieces go out in one vectored write with the others queued.
            self.stream.write_parts(f.bytes, f.pieces)?;
        }
        if end && !self.ended_by_us {
            self.ended_by_us = true;
            self.stream.end();
        }
        Ok(())
    }

    /// Act on the secret stream's events; its messages go to the hub together (one lock, one
    /// [`ReplicationHub::handle_frames`] call for all those of one read).
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
                    let conn = Arc::new(Conn {
                        wake: self.wake.clone(),
                        ..Conn::default()
                    });
                    self.conn = Some(conn.clone());
                    self.applier = Some(Applier::spawn(
                        self.hub.clone(),
                        self.stream.is_initiator(),
                        handshake_hash,
                        conn,
                    ));
                }
                StreamEvent::Message(_) => {}
                StreamEvent::End => {
                    if !self.ended_by_us {
                        self.ended_by_us = true;
                        self.stream.end();
                    }
                }
                StreamEvent::Closed(Some(err)) => return Err(err.into()),
                StreamEvent::Closed(None) => {}
            }
        }
        self.deliver(&mut messages).await
    }

    /// Give `messages` (decrypted frames, in order) to the applier, which hands them to the
    /// hub (waits while the applier is [`APPLY_QUEUE`] batches behind).
    async fn deliver(&mut self, messages: &mut Vec<Vec<u8>>) -> Result<(), ReplicateError> {
        if messages.is_empty() {
            return Ok(());
        }
        let frames = std::mem::take(messages);
        match &mut self.applier {
            Some(a) => a.send(frames).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "replicate_tests.rs"]
mod tests;
