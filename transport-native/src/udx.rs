//! UDX over a tokio UDP socket: a driver task runs the sans-IO [`hyperpunch_core::udx::Socket`]
//! (routing datagrams by stream id, sending what the engines emit, sleeping until their
//! deadlines) and hands each stream's events to its [`UdxStream`] handle.
//!
//! - **Streams.** [`UdxStream`] is an [`AsyncRead`] + [`AsyncWrite`] byte stream (what
//!   [`crate::replicate::replicate`] runs on), and also offers the engine's events directly
//!   ([`UdxStream::next_event`]) and unreliable MESSAGE datagrams.
//! - **Backpressure both ways.** Writers wait while a stream holds more than 1 MiB unsent;
//!   received data is handed to the handle only while less than 1 MiB of it is unread there,
//!   the rest stays in the engine, whose receive window then closes on the sender.
//! - **One socket, several protocols.** The first bytes tell UDX (`0xff 0x01`) from everything
//!   else (DHT RPC `0x03`/`0x13`, one-byte holepunch probes): datagrams that are not UDX go to
//!   the owner through [`UdxSocket::datagrams`], and [`UdxSocket::send_datagram`] sends raw
//!   datagrams on the same socket. UDX packets for unknown stream ids, or from an address other
//!   than the stream's peer, are dropped. [`UdxStream::change_remote`] moves a stream to
//!   another peer address and id mid-flight.
//! - **Batched syscalls.** With [`SocketOptions::batched`] (the default) datagrams are received
//!   with `recvmmsg` (and GRO where the kernel has it) and consecutive same-size datagrams to one
//!   peer leave in one `sendmsg` with GSO; elsewhere this falls back to one datagram per call.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use hyperpunch::udx::UdxSocket;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let socket = UdxSocket::bind("127.0.0.1:0".parse().unwrap()).await?;
//! let mut stream = socket.connect(1, 2, "127.0.0.1:4000".parse().unwrap())?;
//! stream.write_all(b"hello").await?;
//! stream.shutdown().await?; // END: the peer reads EOF after our bytes
//! let mut reply = Vec::new();
//! stream.read_to_end(&mut reply).await?;
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyperpunch_core::udx::packet::{self, Flags};
use hyperpunch_core::udx::{Config, Event, Socket, Stream, UsageError};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub use hyperpunch_core::udx::{Event as UdxEvent, StreamError};

/// Writers wait while a stream holds more than this many unsent bytes.
const WRITE_HIGH_WATER: usize = 1 << 20;
/// Received bytes (data and messages) handed to a stream's handle and not read yet, at most
/// (then the engine keeps them: its receive window closes, and it drops further MESSAGEs).
const READ_HIGH_WATER: usize = 1 << 20;
/// Largest chunk one `poll_write` takes.
const WRITE_CHUNK: usize = 64 * 1024;
/// Non-UDX datagrams queued for the owner at most; more are dropped, like a full socket buffer.
const DATAGRAM_QUEUE: usize = 1024;
/// MESSAGE datagrams kept for [`UdxStream::take_message`] while reading bytes; older ones are
/// dropped (they are unreliable anyway).
const MESSAGE_QUEUE: usize = 256;
/// Receive buffers per `recvmmsg` call.
const RECV_BATCH: usize = 16;
/// Size of one receive buffer: a whole GRO batch, or the largest datagram.
const RECV_BUF: usize = 64 * 1024;
/// Receive calls per wakeup before the driver flushes acks and timers again.
const RECV_ROUNDS: usize = 8;
/// Largest GSO batch in bytes (a UDP datagram's limit).
const GSO_MAX_BYTES: usize = 65_000;
/// Commands applied per wakeup before the driver flushes again.
const COMMAND_BATCH: usize = 256;

/// A datagram that is not UDX: who sent it and its bytes.
pub type Datagram = (SocketAddr, Vec<u8>);

/// How a [`UdxSocket`] does its I/O.
#[derive(Clone, Copy, Debug)]
pub struct SocketOptions {
    /// Batched syscalls: `recvmmsg`, GSO/GRO where the kernel supports them. `false` sends and
    /// receives one datagram per call.
    pub batched: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions { batched: true }
    }
}

/// Counters of one stream, from [`UdxStream::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Smoothed round-trip time, once measured.
    pub rtt: Option<Duration>,
    /// Congestion window in packets.
    pub cwnd: u32,
    /// Pacing rate in bytes per second.
    pub pacing_rate: u64,
    /// Datagrams sent (all kinds).
    pub packets_sent: u64,
    /// DATA/END packets sent again.
    pub retransmits: u64,
    /// Bytes written and not yet sent.
    pub send_buffered: usize,
    /// Packets sent and not yet acknowledged.
    pub unacked_packets: usize,
    /// Bytes received and held by the engine (out of order, or not yet handed over).
    pub recv_buffered: usize,
}

enum Command {
    Connect {
        local_id: u32,
        remote_id: u32,
        config: Box<Config>,
        remote: SocketAddr,
        events: mpsc::UnboundedSender<Event>,
    },
    Write {
        id: u32,
        bytes: Vec<u8>,
        done: oneshot::Sender<Result<(), UsageError>>,
    },
    End(u32),
    Message(u32, Vec<u8>),
    Destroy(u32),
    /// The handle took this many bytes of data events.
    Consumed(u32, usize),
    /// The handle was dropped; `graceful` when it had ended its write side.
    Dropped {
        id: u32,
        graceful: bool,
    },
    Stats(u32, oneshot::Sender<Option<StreamStats>>),
    Datagrams(mpsc::Sender<Datagram>),
    /// Hand UDX datagrams for unknown stream ids to the datagram receiver too.
    Firewall(bool),
    /// Route a datagram as if it had just arrived from this address.
    Inject(SocketAddr, Vec<u8>),
    ChangeRemote {
        id: u32,
        remote_id: u32,
        remote: SocketAddr,
        done: oneshot::Sender<Result<(), UsageError>>,
    },
}

/// A bound UDP socket carrying UDX streams (and, for its owner, other datagrams). Dropping it
/// and every stream handle stops the driver once its streams have finished.
pub struct UdxSocket {
    commands: mpsc::UnboundedSender<Command>,
    udp: Arc<UdpSocket>,
    ids: Arc<Mutex<HashSet<u32>>>,
    local_addr: SocketAddr,
}

/// One stream on a [`UdxSocket`]: bytes through [`AsyncRead`]/[`AsyncWrite`] (or
/// [`UdxStream::write_owned`] and [`UdxStream::next_event`]), plus MESSAGE datagrams.
///
/// Dropping the handle destroys the stream, unless its write side was ended
/// ([`UdxStream::end`], `shutdown`): then the driver keeps it running until it closes, so
/// what was written still arrives, and discards what the peer sends.
pub struct UdxStream {
    id: u32,
    max_payload: usize,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    ended: AtomicBool,
    read_buf: Vec<u8>,
    read_pos: usize,
    read_end: Option<Result<(), StreamError>>,
    messages: VecDeque<Vec<u8>>,
    pending_write: Option<oneshot::Receiver<Result<(), UsageError>>>,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the UDX socket driver stopped")
}

fn usage(e: UsageError) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, e)
}

fn stream_failed(e: &StreamError) -> io::Error {
    let kind = match e {
        StreamError::Reset => io::ErrorKind::ConnectionReset,
        StreamError::Timeout => io::ErrorKind::TimedOut,
    };
    io::Error::new(kind, e.clone())
}

impl UdxSocket {
    /// Binds a UDP socket and starts its driver task on the current tokio runtime.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Self::bind_with(addr, SocketOptions::default()).await
    }

    /// [`UdxSocket::bind`] with explicit I/O options.
    pub async fn bind_with(addr: SocketAddr, options: SocketOptions) -> io::Result<Self> {
        let udp = UdpSocket::bind(addr).await?;
        let local_addr = udp.local_addr()?;
        let state = if options.batched {
            Some(UdpSocketState::new((&udp).into())?)
        } else {
            None
        };
        let udp = Arc::new(udp);
        let ids = Arc::new(Mutex::new(HashSet::new()));
        let (commands, rx) = mpsc::unbounded_channel();
        let driver = Driver {
            udp: udp.clone(),
            ipv6: local_addr.is_ipv6(),
            state,
            engine: Socket::new(),
            epoch: Instant::now(),
            slots: HashMap::new(),
            ids: ids.clone(),
            writers: Vec::new(),
            datagrams: None,
            firewall: false,
            outgoing: Vec::new(),
            gso_buf: Vec::new(),
            recv_bufs: vec![vec![0u8; RECV_BUF]; if options.batched { RECV_BATCH } else { 1 }],
            recv_meta: vec![RecvMeta::default(); RECV_BATCH],
        };
        tokio::spawn(driver.run(rx));
        Ok(UdxSocket {
            commands,
            udp,
            ids,
            local_addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Opens a stream with our `local_id` to the peer's `remote_id` at `remote`. Fails if
    /// `local_id` is in use on this socket.
    pub fn connect(
        &self,
        local_id: u32,
        remote_id: u32,
        remote: SocketAddr,
    ) -> io::Result<UdxStream> {
        self.connect_with(local_id, remote_id, remote, Config::default())
    }

    /// [`UdxSocket::connect`] with explicit engine parameters.
    pub fn connect_with(
        &self,
        local_id: u32,
        remote_id: u32,
        remote: SocketAddr,
        config: Config,
    ) -> io::Result<UdxStream> {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if !ids.insert(local_id) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("stream id {local_id} is in use on this socket"),
            ));
        }
        let (events_tx, events) = mpsc::unbounded_channel();
        let max_payload = config.max_payload;
        if self
            .commands
            .send(Command::Connect {
                local_id,
                remote_id,
                config: Box::new(config),
                remote,
                events: events_tx,
            })
            .is_err()
        {
            ids.remove(&local_id);
            return Err(gone());
        }
        Ok(UdxStream {
            id: local_id,
            max_payload,
            commands: self.commands.clone(),
            events,
            ended: AtomicBool::new(false),
            read_buf: Vec::new(),
            read_pos: 0,
            read_end: None,
            messages: VecDeque::new(),
            pending_write: None,
        })
    }

    /// Receives the datagrams arriving on this socket that are not UDX (DHT messages,
    /// holepunch probes), with their sender. Only the latest receiver gets them; until one is
    /// taken, and while its queue holds 1024 datagrams, they are dropped.
    pub fn datagrams(&self) -> io::Result<mpsc::Receiver<Datagram>> {
        let (tx, rx) = mpsc::channel(DATAGRAM_QUEUE);
        self.commands
            .send(Command::Datagrams(tx))
            .map_err(|_| gone())?;
        Ok(rx)
    }

    /// Sends one raw datagram from this socket (the UDX streams share it).
    pub async fn send_datagram(&self, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
        let to = for_family(to, self.local_addr.is_ipv6());
        self.udp.send_to(bytes, to).await.map(|_| ())
    }

    /// Sends one raw datagram with IP TTL `ttl` (libudx `udx_socket_send_ttl`: the socket's TTL
    /// is set for this send and put back to 64 after it). A TTL of 0 sends with the default.
    pub async fn send_datagram_ttl(&self, bytes: &[u8], to: SocketAddr, ttl: u8) -> io::Result<()> {
        if ttl == 0 || ttl == 64 {
            return self.send_datagram(bytes, to).await;
        }
        self.udp.set_ttl(u32::from(ttl))?;
        let sent = self.send_datagram(bytes, to).await;
        let _ = self.udp.set_ttl(64);
        sent
    }

    /// The firewall hook of libudx streams that are not connected yet: with `true`, UDX
    /// datagrams for stream ids this socket does not have go to the [`datagrams`](Self::datagrams)
    /// receiver (their first byte is `0xff`, the id is in bytes 4-7). The owner may then
    /// [`connect`](Self::connect) a stream with that id and [`inject`](Self::inject) the
    /// datagram so that it is not lost.
    pub fn set_firewall(&self, on: bool) -> io::Result<()> {
        self.commands
            .send(Command::Firewall(on))
            .map_err(|_| gone())
    }

    /// Routes `bytes` as if they had just arrived from `from` (after a firewall decision).
    pub fn inject(&self, from: SocketAddr, bytes: Vec<u8>) -> io::Result<()> {
        self.commands
            .send(Command::Inject(from, bytes))
            .map_err(|_| gone())
    }
}

impl UdxStream {
    /// Our stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Queues an owned buffer; waits while more than 1 MiB is waiting to be sent. (The
    /// [`AsyncWrite`] methods do the same for borrowed slices.)
    pub async fn write_owned(&self, bytes: Vec<u8>) -> io::Result<()> {
        let (done, rx) = oneshot::channel();
        self.commands
            .send(Command::Write {
                id: self.id,
                bytes,
                done,
            })
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(usage)
    }

    /// Ends the write side: END follows the written bytes (the peer reads EOF).
    pub fn end(&self) -> io::Result<()> {
        self.ended.store(true, Ordering::Relaxed);
        self.commands
            .send(Command::End(self.id))
            .map_err(|_| gone())
    }

    /// Sends an unreliable MESSAGE datagram (at most one packet's payload, 1152 bytes by
    /// default).
    pub fn send_message(&self, bytes: Vec<u8>) -> io::Result<()> {
        if bytes.len() > self.max_payload {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                UsageError::MessageTooLarge {
                    len: bytes.len(),
                    max: self.max_payload,
                },
            ));
        }
        self.commands
            .send(Command::Message(self.id, bytes))
            .map_err(|_| gone())
    }

    /// Moves the stream to the peer's stream `remote_id` at `remote` mid-flight (libudx
    /// `udx_stream_change_remote`; hyperdht upgrades a relayed connection to a direct path
    /// this way). Everything sent from now on goes there, retransmissions of earlier packets
    /// included; sequence numbers continue, so no byte is lost or delivered twice. Datagrams
    /// from the previous address are still accepted until the change has completed and the
    /// peer was heard from at the new one. This resolves when the change completes: once every
    /// packet sent before it was acknowledged (as udx-native's `changeRemote` promise). Fails if a change is still pending
    /// ([`UsageError::RemoteChanging`]) or the stream closed first.
    pub async fn change_remote(&self, remote_id: u32, remote: SocketAddr) -> io::Result<()> {
        let (done, rx) = oneshot::channel();
        self.commands
            .send(Command::ChangeRemote {
                id: self.id,
                remote_id,
                remote,
                done,
            })
            .map_err(|_| gone())?;
        rx.await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the stream finished before its remote change completed",
                )
            })?
            .map_err(usage)
    }

    /// Destroys the stream (the peer sees a reset).
    pub fn destroy(&self) -> io::Result<()> {
        self.commands
            .send(Command::Destroy(self.id))
            .map_err(|_| gone())
    }

    /// The engine's counters for this stream; fails once the stream is gone.
    pub async fn stats(&self) -> io::Result<StreamStats> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Stats(self.id, tx))
            .map_err(|_| gone())?;
        rx.await
            .map_err(|_| gone())?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the stream has finished"))
    }

    /// The next event; `None` once the stream finished and its events were drained. Do not mix
    /// with reading through [`AsyncRead`] (whichever takes an event consumes it).
    pub async fn next_event(&mut self) -> Option<Event> {
        let event = self.events.recv().await?;
        self.took(&event);
        Some(event)
    }

    /// Waits until the stream has closed: both sides ended and everything was acknowledged
    /// (or this side destroyed it). Data and messages still arriving are discarded; a reset or
    /// timeout is an error.
    pub async fn closed(&mut self) -> io::Result<()> {
        loop {
            match self.next_event().await {
                Some(Event::Closed) | None => return Ok(()),
                Some(Event::Error(e)) => return Err(stream_failed(&e)),
                Some(_) => {}
            }
        }
    }

    /// A MESSAGE datagram that arrived while bytes were being read through [`AsyncRead`].
    pub fn take_message(&mut self) -> Option<Vec<u8>> {
        self.messages.pop_front()
    }

    fn took(&self, event: &Event) {
        if let Event::Data(d) | Event::Message(d) = event {
            let _ = self.commands.send(Command::Consumed(self.id, d.len()));
        }
    }

    fn poll_pending_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(rx) = &mut self.pending_write {
            let result = ready!(Pin::new(rx).poll(cx));
            self.pending_write = None;
            result.map_err(|_| gone())?.map_err(usage)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for UdxStream {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Dropped {
            id: self.id,
            graceful: self.ended.load(Ordering::Relaxed),
        });
    }
}

impl AsyncRead for UdxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.read_pos < this.read_buf.len() {
                let n = buf.remaining().min(this.read_buf.len() - this.read_pos);
                buf.put_slice(&this.read_buf[this.read_pos..this.read_pos + n]);
                this.read_pos += n;
                return Poll::Ready(Ok(()));
            }
            match &this.read_end {
                Some(Ok(())) => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(stream_failed(e))),
                None => {}
            }
            let event = ready!(this.events.poll_recv(cx));
            if let Some(event) = &event {
                this.took(event);
            }
            match event {
                Some(Event::Data(d)) => {
                    this.read_buf = d;
                    this.read_pos = 0;
                }
                Some(Event::Message(m)) => {
                    if this.messages.len() == MESSAGE_QUEUE {
                        this.messages.pop_front();
                    }
                    this.messages.push_back(m);
                }
                Some(Event::Ended | Event::Closed) => this.read_end = Some(Ok(())),
                Some(Event::Error(e)) => this.read_end = Some(Err(e)),
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the UDX stream is gone (finished, or its socket driver stopped)",
                    )))
                }
            }
        }
    }
}

impl AsyncWrite for UdxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending_write(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(WRITE_CHUNK);
        let (done, rx) = oneshot::channel();
        this.commands
            .send(Command::Write {
                id: this.id,
                bytes: buf[..n].to_vec(),
                done,
            })
            .map_err(|_| gone())?;
        this.pending_write = Some(rx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_pending_write(cx)
    }

    /// Sends END after everything written (it does not wait for the peer's acknowledgement).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending_write(cx))?;
        if !this.ended.load(Ordering::Relaxed) {
            this.end()?;
        }
        Poll::Ready(Ok(()))
    }
}

/// The driver's view of one stream.
struct Slot {
    remote: SocketAddr,
    /// The address before a remote change; datagrams from it are accepted until the change
    /// completed and the peer was heard from at the new address (it may move later than we
    /// do, or packets may still be on their way over the old path).
    previous: Option<SocketAddr>,
    /// Told when the pending remote change completes.
    changed: Option<oneshot::Sender<Result<(), UsageError>>>,
    events: mpsc::UnboundedSender<Event>,
    /// Data and message bytes handed to the handle and not taken yet.
    unread: usize,
    /// The handle is gone: events are discarded.
    detached: bool,
    /// Highest DATA/END seq sent, to count retransmissions.
    highest_seq: Option<u32>,
    packets_sent: u64,
    retransmits: u64,
}

impl Slot {
    fn count(&mut self, datagram: &[u8]) {
        self.packets_sent += 1;
        let Ok(p) = packet::decode(datagram) else {
            return;
        };
        let h = p.header;
        if !(h.flags.contains(Flags::DATA) || h.flags.contains(Flags::END)) {
            return;
        }
        match self.highest_seq {
            Some(top) if (h.seq.wrapping_sub(top) as i32) <= 0 => self.retransmits += 1,
            _ => self.highest_seq = Some(h.seq),
        }
    }
}

struct Driver {
    udp: Arc<UdpSocket>,
    /// The socket is IPv6 (IPv4 peers are reached through mapped addresses).
    ipv6: bool,
    /// Batched I/O state; `None` for one datagram per syscall.
    state: Option<UdpSocketState>,
    engine: Socket,
    epoch: Instant,
    slots: HashMap<u32, Slot>,
    ids: Arc<Mutex<HashSet<u32>>>,
    writers: Vec<(u32, oneshot::Sender<Result<(), UsageError>>)>,
    datagrams: Option<mpsc::Sender<Datagram>>,
    /// Unknown-stream UDX datagrams go to `datagrams` too.
    firewall: bool,
    outgoing: Vec<(SocketAddr, Vec<u8>)>,
    gso_buf: Vec<u8>,
    recv_bufs: Vec<Vec<u8>>,
    recv_meta: Vec<RecvMeta>,
}

impl Driver {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Connect {
                local_id,
                remote_id,
                config,
                remote,
                events,
            } => {
                let stream = Stream::new(local_id, remote_id, self.now(), *config);
                self.slots.insert(
                    local_id,
                    Slot {
                        // Compared with normalized sources.
                        remote: normalize(remote),
                        previous: None,
                        changed: None,
                        events,
                        unread: 0,
                        detached: false,
                        highest_seq: None,
                        packets_sent: 0,
                        retransmits: 0,
                    },
                );
                self.engine.insert(stream);
            }
            Command::Write { id, bytes, done } => match self.engine.stream_mut(id) {
                None => {
                    let _ = done.send(Err(UsageError::Closed));
                }
                Some(stream) => match stream.write(&bytes) {
                    Err(e) => {
                        let _ = done.send(Err(e));
                    }
                    Ok(()) => self.writers.push((id, done)),
                },
            },
            Command::End(id) => {
                if let Some(s) = self.engine.stream_mut(id) {
                    let _ = s.end();
                }
            }
            Command::Message(id, bytes) => {
                if let Some(s) = self.engine.stream_mut(id) {
                    let _ = s.send_message(&bytes);
                }
            }
            Command::Destroy(id) => {
                if let Some(s) = self.engine.stream_mut(id) {
                    s.destroy();
                }
            }
            Command::Consumed(id, n) => {
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.unread = slot.unread.saturating_sub(n);
                }
            }
            Command::Dropped { id, graceful } => {
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.detached = true;
                    if !graceful {
                        if let Some(s) = self.engine.stream_mut(id) {
                            s.destroy();
                        }
                    }
                }
            }
            Command::Stats(id, reply) => {
                let stats = self
                    .engine
                    .stream(id)
                    .zip(self.slots.get(&id))
                    .map(|(s, slot)| StreamStats {
                        rtt: s.rtt(),
                        cwnd: s.cwnd(),
                        pacing_rate: s.pacing_rate(),
                        packets_sent: slot.packets_sent,
                        retransmits: slot.retransmits,
                        send_buffered: s.send_buffered(),
                        unacked_packets: s.unacked_packets(),
                        recv_buffered: s.recv_buffered(),
                    });
                let _ = reply.send(stats);
            }
            Command::Datagrams(tx) => self.datagrams = Some(tx),
            Command::Firewall(on) => self.firewall = on,
            Command::Inject(from, bytes) => {
                let now = self.now();
                self.route(now, normalize(from), &bytes);
            }
            Command::ChangeRemote {
                id,
                remote_id,
                remote,
                done,
            } => {
                let (Some(stream), Some(slot)) =
                    (self.engine.stream_mut(id), self.slots.get_mut(&id))
                else {
                    let _ = done.send(Err(UsageError::Closed));
                    return;
                };
                match stream.change_remote(remote_id) {
                    Err(e) => {
                        let _ = done.send(Err(e));
                    }
                    // Completion (even at once) is reported by `poll_remote_changed`.
                    Ok(_) => {
                        slot.previous = Some(slot.remote);
                        slot.remote = normalize(remote);
                        slot.changed = Some(done);
                    }
                }
            }
        }
    }

    /// Forwards events (within each handle's read allowance), sends everything due, releases
    /// writers; repeats until quiet.
    async fn flush(&mut self) {
        loop {
            let mut progressed = false;
            let ids: Vec<u32> = self.engine.ids().collect();
            for id in ids {
                let (Some(slot), Some(stream)) =
                    (self.slots.get_mut(&id), self.engine.stream_mut(id))
                else {
                    continue;
                };
                if stream.poll_remote_changed() {
                    if let Some(done) = slot.changed.take() {
                        let _ = done.send(Ok(()));
                    }
                }
                while slot.detached || slot.unread < READ_HIGH_WATER {
                    let Some(event) = stream.poll_event() else {
                        break;
                    };
                    progressed = true;
                    if slot.detached {
                        continue;
                    }
                    if let Event::Data(d) | Event::Message(d) = &event {
                        slot.unread += d.len();
                    }
                    if slot.events.send(event).is_err() {
                        slot.detached = true;
                    }
                }
            }
            let now = self.now();
            while let Some((id, bytes)) = self.engine.poll_transmit(now) {
                progressed = true;
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.count(&bytes);
                    self.outgoing.push((slot.remote, bytes));
                }
            }
            self.send_outgoing().await;
            let engine = &self.engine;
            let mut i = 0;
            while i < self.writers.len() {
                let id = self.writers[i].0;
                let release = engine
                    .stream(id)
                    .is_none_or(|s| s.send_buffered() < WRITE_HIGH_WATER || s.is_finished());
                if release {
                    let (_, done) = self.writers.swap_remove(i);
                    let _ = done.send(Ok(()));
                } else {
                    i += 1;
                }
            }
            if !progressed {
                self.remove_finished();
                return;
            }
        }
    }

    /// Forgets finished streams whose events have all been handed over. Runs once `flush` is
    /// quiet, so a stream under its read allowance has an empty event queue; one over it may
    /// still hold data and its final event, and stays until its handle takes more.
    fn remove_finished(&mut self) {
        let done: Vec<u32> = self
            .engine
            .ids()
            .filter(|id| {
                self.engine.stream(*id).is_some_and(Stream::is_finished)
                    && self
                        .slots
                        .get(id)
                        .is_none_or(|s| s.detached || s.unread < READ_HIGH_WATER)
            })
            .collect();
        if done.is_empty() {
            return;
        }
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        for id in done {
            self.engine.remove(id);
            self.slots.remove(&id);
            ids.remove(&id);
        }
    }

    /// Sends the queued datagrams, runs of same-size datagrams to one peer as one GSO batch.
    async fn send_outgoing(&mut self) {
        let mut batch = std::mem::take(&mut self.outgoing);
        // Streams take turns, so datagrams to different peers interleave: group them by peer
        // (stably, keeping each peer's order) so runs can form.
        batch.sort_by_key(|(dest, _)| *dest);
        let state = self.state.as_ref();
        let max_segments = state.map_or(1, |s| s.max_gso_segments());
        let mut i = 0;
        while i < batch.len() {
            let (dest, first) = (batch[i].0, &batch[i].1);
            let limit = max_segments.min(GSO_MAX_BYTES / first.len().max(1)).max(1);
            let mut j = i + 1;
            while j < batch.len() && j - i < limit && batch[j].0 == dest {
                let len = batch[j].1.len();
                if len > first.len() {
                    break;
                }
                j += 1;
                // Only the last segment of a GSO batch may be shorter.
                if len < first.len() {
                    break;
                }
            }
            if j - i == 1 {
                transmit(&self.udp, state, for_family(dest, self.ipv6), first, None).await;
            } else {
                self.gso_buf.clear();
                for (_, d) in &batch[i..j] {
                    self.gso_buf.extend_from_slice(d);
                }
                let dest = for_family(dest, self.ipv6);
                transmit(&self.udp, state, dest, &self.gso_buf, Some(first.len())).await;
            }
            i = j;
        }
        self.outgoing = batch;
        self.outgoing.clear();
    }

    /// Reads what the socket has queued (a bounded number of calls) and feeds it in.
    fn receive(&mut self) {
        for _ in 0..RECV_ROUNDS {
            let received = match &self.state {
                Some(state) => {
                    let mut slices: Vec<IoSliceMut<'_>> = self
                        .recv_bufs
                        .iter_mut()
                        .map(|b| IoSliceMut::new(b))
                        .collect();
                    let meta = &mut self.recv_meta;
                    self.udp.try_io(Interest::READABLE, || {
                        state.recv((&*self.udp).into(), &mut slices, meta)
                    })
                }
                None => self
                    .udp
                    .try_recv_from(&mut self.recv_bufs[0])
                    .map(|(len, addr)| {
                        let meta = &mut self.recv_meta[0];
                        meta.addr = addr;
                        meta.len = len;
                        meta.stride = len;
                        1
                    }),
            };
            let n = match received {
                Ok(n) => n,
                // WouldBlock: drained. Other errors (e.g. ICMP unreachable reported on the
                // socket) concern single datagrams: carry on.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => continue,
            };
            let now = self.now();
            for k in 0..n {
                let meta = self.recv_meta[k];
                let from = normalize(meta.addr);
                let stride = meta.stride.max(1);
                let buf = std::mem::take(&mut self.recv_bufs[k]);
                for datagram in buf[..meta.len].chunks(stride) {
                    self.route(now, from, datagram);
                }
                self.recv_bufs[k] = buf;
            }
        }
    }

    /// One received datagram: to its stream, or to the owner.
    fn route(&mut self, now: Duration, from: SocketAddr, datagram: &[u8]) {
        let to_owner = |d: &mut Option<mpsc::Sender<Datagram>>| {
            if let Some(tx) = d {
                if let Err(mpsc::error::TrySendError::Closed(_)) =
                    tx.try_send((from, datagram.to_vec()))
                {
                    *d = None;
                }
            }
        };
        match packet::stream_id(datagram) {
            None => to_owner(&mut self.datagrams),
            Some(id) => {
                // Only the stream's peer may feed it (at its previous address too
                // while a remote change is under way).
                let Some(slot) = self.slots.get_mut(&id) else {
                    if self.firewall {
                        to_owner(&mut self.datagrams);
                    }
                    return;
                };
                if slot.remote == from {
                    let changing = self
                        .engine
                        .stream(id)
                        .is_some_and(Stream::is_remote_changing);
                    if !changing {
                        slot.previous = None;
                    }
                } else if slot.previous != Some(from) {
                    return;
                }
                self.engine.handle_datagram(now, datagram);
            }
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut open = true;
        loop {
            self.flush().await;
            if !open && self.engine.ids().next().is_none() {
                break;
            }
            let deadline = self.engine.poll_timeout().map(|t| self.epoch + t);
            let udp = self.udp.clone();
            tokio::select! {
                readable = udp.readable() => {
                    if readable.is_err() {
                        break;
                    }
                    self.receive();
                }
                command = commands.recv(), if open => match command {
                    Some(c) => {
                        self.apply(c);
                        for _ in 1..COMMAND_BATCH {
                            match commands.try_recv() {
                                Ok(c) => self.apply(c),
                                Err(_) => break,
                            }
                        }
                    }
                    None => open = false,
                },
                _ = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = self.now();
                    self.engine.handle_timeout(now);
                }
            }
        }
    }
}

/// `addr` in the form a socket of this family sends to: IPv4 as IPv4-mapped IPv6 on an IPv6
/// (dual-stack) socket.
fn for_family(addr: SocketAddr, ipv6_socket: bool) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if ipv6_socket => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        other => other,
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) as plain IPv4.
fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// Sends one datagram, or a GSO batch of `segment_size`-byte datagrams. A full or failing
/// socket is like a lost datagram, which UDX recovers from.
async fn transmit(
    udp: &UdpSocket,
    state: Option<&UdpSocketState>,
    dest: SocketAddr,
    contents: &[u8],
    segment_size: Option<usize>,
) {
    loop {
        let sent = match state {
            Some(state) => udp.try_io(Interest::WRITABLE, || {
                state.try_send(
                    udp.into(),
                    &Transmit {
                        destination: dest,
                        ecn: None,
                        contents,
                        segment_size,
                        src_ip: None,
                    },
                )
            }),
            None => udp.try_send_to(contents, dest).map(|_| ()),
        };
        match sent {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if udp.writable().await.is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pattern(len: usize, tag: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(13).wrapping_add(tag))
            .collect()
    }

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// Collects a stream's data until it closes; fails on errors.
    async fn collect(stream: &mut UdxStream) -> (Vec<u8>, Vec<Vec<u8>>, bool) {
        let (mut data, mut messages, mut ended) = (Vec::new(), Vec::new(), false);
        while let Some(event) = stream.next_event().await {
            match event {
                Event::Data(d) => data.extend_from_slice(&d),
                Event::Message(m) => messages.push(m),
                Event::Ended => ended = true,
                Event::Closed => break,
                Event::Error(e) => panic!("stream failed: {e}"),
            }
        }
        (data, messages, ended)
    }

    async fn exchange_and_close(options: SocketOptions) {
        let a = UdxSocket::bind_with(loopback(), options).await.unwrap();
        let b = UdxSocket::bind_with(loopback(), options).await.unwrap();
        let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
        let mut sb = b.connect(2, 1, a.local_addr()).unwrap();
        let (big, small) = (pattern(3 << 20, 1), pattern(100_000, 7));
        let run = async {
            sa.send_message(b"ping".to_vec()).unwrap();
            for chunk in big.chunks(256 * 1024) {
                sa.write_owned(chunk.to_vec()).await.unwrap();
            }
            sa.end().unwrap();
            let a_side = collect(&mut sa);
            let b_side = async {
                // b answers only after a's END: the half-closed direction still works.
                let mut got = Vec::new();
                let mut messages = Vec::new();
                loop {
                    match sb.next_event().await.unwrap() {
                        Event::Data(d) => got.extend_from_slice(&d),
                        Event::Message(m) => messages.push(m),
                        Event::Ended => break,
                        other => panic!("unexpected {other:?}"),
                    }
                }
                sb.write_owned(small.clone()).await.unwrap();
                sb.end().unwrap();
                let (rest, _, _) = collect(&mut sb).await;
                assert!(rest.is_empty());
                (got, messages)
            };
            tokio::join!(a_side, b_side)
        };
        let ((a_got, _, a_ended), (b_got, b_messages)) =
            tokio::time::timeout(Duration::from_secs(30), run)
                .await
                .expect("exchange finished");
        assert!(a_ended);
        assert!(b_got == big, "a -> b bytes differ");
        assert!(a_got == small, "b -> a bytes differ");
        assert_eq!(b_messages, vec![b"ping".to_vec()]);
    }

    #[tokio::test]
    async fn two_tokio_sockets_exchange_and_close() {
        exchange_and_close(SocketOptions::default()).await;
    }

    #[tokio::test]
    async fn one_datagram_per_syscall_works_too() {
        exchange_and_close(SocketOptions { batched: false }).await;
    }

    #[tokio::test]
    async fn destroy_resets_the_remote() {
        let a = UdxSocket::bind(loopback()).await.unwrap();
        let b = UdxSocket::bind(loopback()).await.unwrap();
        let mut sa = a.connect(5, 6, b.local_addr()).unwrap();
        let mut sb = b.connect(6, 5, a.local_addr()).unwrap();
        sa.write_owned(b"x".to_vec()).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), sb.next_event()).await;
        assert_eq!(first.unwrap(), Some(Event::Data(b"x".to_vec())));
        sa.destroy().unwrap();
        assert_eq!(sa.next_event().await, Some(Event::Closed));
        let reset = tokio::time::timeout(Duration::from_secs(10), sb.next_event()).await;
        assert_eq!(reset.unwrap(), Some(Event::Error(StreamError::Reset)));
        // Reading a reset stream is an error of its own kind.
        let mut buf = [0u8; 8];
        let err = sb.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    /// A peer sending MESSAGE datagrams to a handle that does not read fills bounded queues and
    /// then loses messages, instead of growing memory; stream data still arrives intact.
    #[tokio::test]
    async fn unread_messages_are_bounded() {
        let a = UdxSocket::bind(loopback()).await.unwrap();
        let b = UdxSocket::bind(loopback()).await.unwrap();
        let sa = a.connect(1, 2, b.local_addr()).unwrap();
        let mut sb = b.connect(2, 1, a.local_addr()).unwrap();
        let sent = 4000;
        let run = async {
            for i in 0..sent {
                sa.send_message(pattern(1000, i as u8)).unwrap();
                if i % 50 == 49 {
                    // Paced, so the kernel's socket buffer is not what drops them.
                    let _ = sa.stats().await;
                    let _ = sb.stats().await;
                }
            }
            sa.write_owned(b"after".to_vec()).await.unwrap();
            sa.end().unwrap();
            let mut messages = 0;
            let mut data = Vec::new();
            loop {
                match sb.next_event().await.unwrap() {
                    Event::Message(m) => {
                        assert_eq!(m.len(), 1000);
                        messages += 1;
                    }
                    Event::Data(d) => data.extend_from_slice(&d),
                    Event::Ended => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            (messages, data)
        };
        let (messages, data) = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("done in time");
        assert_eq!(data, b"after");
        // 1 MiB in the handle's queue plus 1 MiB in the engine, 1000 bytes each.
        assert!(
            messages > 0 && messages <= 2 * 1049,
            "{messages} of {sent} kept"
        );
    }

    /// Bytes through AsyncWrite/AsyncRead both ways at once; a reader that does not read stalls
    /// the writer (the receive window closes) instead of buffering without bound.
    #[tokio::test]
    async fn async_read_write_with_backpressure() {
        let a = UdxSocket::bind(loopback()).await.unwrap();
        let b = UdxSocket::bind(loopback()).await.unwrap();
        let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
        let mut sb = b.connect(2, 1, a.local_addr()).unwrap();
        // Unread bytes sit in the handle (1 MiB), the engine (a 4 MiB window) and the sender (1 MiB).
        let (ab, ba) = (pattern(12 << 20, 3), pattern(1 << 20, 9));
        let run = async {
            // Nobody reads b yet: a's writes stop after a bounded amount. A write that waits
            // counts as stalled once b's engine is holding data back (its window is closing).
            let mut written = 0usize;
            while written < ab.len() {
                let write = sa.write(&ab[written..]);
                match tokio::time::timeout(Duration::from_millis(500), write).await {
                    Ok(n) => written += n.unwrap(),
                    Err(_) if sb.stats().await.unwrap().recv_buffered > 0 => break,
                    Err(_) => {}
                }
            }
            assert!(written < ab.len(), "12 MiB went into a stream nobody reads");
            let a_side = async {
                sa.write_all(&ab[written..]).await.unwrap();
                sa.shutdown().await.unwrap();
                let mut got = Vec::new();
                sa.read_to_end(&mut got).await.unwrap();
                got
            };
            let b_side = async {
                let mut got = Vec::new();
                sb.read_to_end(&mut got).await.unwrap();
                sb.write_all(&ba).await.unwrap();
                sb.shutdown().await.unwrap();
                got
            };
            tokio::join!(a_side, b_side)
        };
        let (a_got, b_got) = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("exchange finished");
        assert!(b_got == ab, "a -> b bytes differ");
        assert!(a_got == ba, "b -> a bytes differ");
    }

    /// Datagrams that are not UDX reach the owner; UDX for unknown streams reaches nobody;
    /// raw datagrams go out on the same socket; streams keep working beside them.
    #[tokio::test]
    async fn non_udx_datagrams_are_demultiplexed() {
        let a = UdxSocket::bind(loopback()).await.unwrap();
        let b = UdxSocket::bind(loopback()).await.unwrap();
        let mut raw_b = b.datagrams().unwrap();
        let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
        let mut sb = b.connect(2, 1, a.local_addr()).unwrap();
        // A DHT request, a holepunch probe, UDX for a stream id b does not have.
        let mut unknown = pattern(40, 0);
        unknown[..8].copy_from_slice(&[0xff, 0x01, 0x01, 0x00, 99, 0, 0, 0]);
        for d in [&b"\x03\x04\x34\x12"[..], &[0u8][..], &unknown[..]] {
            a.send_datagram(d, b.local_addr()).await.unwrap();
        }
        sa.write_all(b"stream bytes").await.unwrap();
        sa.shutdown().await.unwrap();
        let run = async {
            let first = raw_b.recv().await.unwrap();
            let second = raw_b.recv().await.unwrap();
            let mut got = Vec::new();
            sb.read_to_end(&mut got).await.unwrap();
            (first, second, got)
        };
        let (first, second, got) = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("datagrams and stream arrived");
        assert_eq!(first, (a.local_addr(), b"\x03\x04\x34\x12".to_vec()));
        assert_eq!(second, (a.local_addr(), vec![0u8]));
        assert_eq!(got, b"stream bytes");
        assert!(
            raw_b.try_recv().is_err(),
            "UDX datagrams are not handed out"
        );
    }

    /// Hypercore replication (secret-stream, protomux, hypercore messages) runs on UDX streams.
    #[tokio::test]
    async fn replication_runs_over_udx_streams() {
        use crate::core::crypto::KeyPair;
        use crate::core::hypercore::{CreateOptions, Hypercore};
        use crate::core::replication::{Options, ReplicationHub, Replicator};
        use crate::core::storage::MemoryStorage;
        use crate::replicate::{replicate, SharedHub};

        let create = |key_pair, key| {
            Hypercore::create(
                MemoryStorage::new(),
                CreateOptions {
                    key_pair,
                    key,
                    ..CreateOptions::default()
                },
            )
        };
        let mut writer = create(Some(KeyPair::from_seed(&[5; 32])), None)
            .await
            .unwrap();
        let blocks: Vec<Vec<u8>> = (0..300u32)
            .map(|i| pattern(i as usize * 37 % 5000 + 1, i as u8))
            .collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        writer.append(&refs).await.unwrap();
        let reader = create(None, Some(*writer.key())).await.unwrap();
        let mut wh = ReplicationHub::new();
        let dk = wh
            .add_core(Replicator::new(writer, Options::default()))
            .unwrap();
        let wh = SharedHub::new(wh);
        let mut rh = ReplicationHub::new();
        rh.add_core(Replicator::new(reader, Options::default()))
            .unwrap();
        let (rh, mut events) = SharedHub::with_events(rh);
        {
            let now = rh.now();
            let mut g = rh.lock().await;
            g.replicator_mut(&dk)
                .unwrap()
                .download(now, 0, None)
                .await
                .unwrap();
        }
        let a = UdxSocket::bind(loopback()).await.unwrap();
        let b = UdxSocket::bind(loopback()).await.unwrap();
        let sa = a.connect(1, 2, b.local_addr()).unwrap();
        let sb = b.connect(2, 1, a.local_addr()).unwrap();
        let serve = replicate(sa, false, KeyPair::from_seed(&[1; 32]), &wh);
        let fetch = replicate(sb, true, KeyPair::from_seed(&[2; 32]), &rh);
        let drive = async {
            loop {
                events.recv().await.expect("events");
                let g = rh.lock().await;
                if g.replicator(&dk).unwrap().core().contiguous_length() == 300 {
                    break;
                }
            }
            rh.end_all().await;
        };
        let all = async { tokio::join!(serve, fetch, drive) };
        let (s, f, ()) = tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("replication finished in time");
        s.unwrap();
        f.unwrap();
        let g = rh.lock().await;
        let c = g.replicator(&dk).unwrap().core();
        c.verify_all().await.unwrap();
        assert_eq!(c.get(299).await.unwrap(), Some(blocks[299].clone()));
    }

    /// A stream that finishes (no linger) while its handle is behind on reading keeps its data
    /// and final events until the handle has taken them.
    #[tokio::test]
    async fn finished_stream_keeps_unread_data() {
        let a = UdxSocket::bind(loopback()).await.unwrap();
        let b = UdxSocket::bind(loopback()).await.unwrap();
        let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
        let no_linger = Config {
            linger: Some(Duration::ZERO),
            ..Config::default()
        };
        let mut sb = b.connect_with(2, 1, a.local_addr(), no_linger).unwrap();
        let data = pattern(3 << 20, 5);
        let run = async {
            sb.end().unwrap();
            sa.write_all(&data).await.unwrap();
            sa.shutdown().await.unwrap();
            // Everything was delivered and acknowledged: b's engine is done with the stream.
            sa.closed().await.unwrap();
            let mut got = Vec::new();
            sb.read_to_end(&mut got).await.unwrap();
            sb.closed().await.unwrap();
            got
        };
        let got = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("done in time");
        assert!(got == data, "{} of {} bytes", got.len(), data.len());
    }

    /// A dual-stack IPv6 socket talks to an IPv4 peer (mapped addresses both ways).
    #[tokio::test]
    async fn dual_stack_socket_reaches_ipv4_peers() {
        let a = UdxSocket::bind("[::]:0".parse().unwrap()).await;
        let Ok(a) = a else {
            eprintln!("skipped: no IPv6 on this machine ({:?})", a.err());
            return;
        };
        let b = UdxSocket::bind(loopback()).await.unwrap();
        let a_v4: SocketAddr = ([127, 0, 0, 1], a.local_addr().port()).into();
        let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
        let mut sb = b.connect(2, 1, a_v4).unwrap();
        let run = async {
            sa.write_all(b"over v6").await.unwrap();
            sa.shutdown().await.unwrap();
            let mut got = Vec::new();
            sb.read_to_end(&mut got).await.unwrap();
            sb.shutdown().await.unwrap();
            sa.closed().await.unwrap();
            got
        };
        let got = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("done in time");
        assert_eq!(got, b"over v6");
    }

    /// Both ends first talk through a forwarder (a relay), then move to each other's direct
    /// address mid-transfer: the writer with megabytes in flight, so its change waits for
    /// acknowledgements that still come over the relay. Every byte arrives once, in order;
    /// the relay is shut down afterwards and nothing more needs it.
    #[tokio::test]
    async fn change_remote_from_a_relay_to_the_direct_path() {
        let a = UdxSocket::bind(loopback()).await.unwrap();
        let b = UdxSocket::bind(loopback()).await.unwrap();
        let relay = UdpSocket::bind(loopback()).await.unwrap();
        let via = relay.local_addr().unwrap();
        let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
        let forward = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let (n, from) = relay.recv_from(&mut buf).await.unwrap();
                let to = if from == a_addr { b_addr } else { a_addr };
                let _ = relay.send_to(&buf[..n], to).await;
            }
        });
        let sa = a.connect(1, 2, via).unwrap();
        let mut sb = b.connect(2, 1, via).unwrap();
        let data = pattern(8 << 20, 11);
        // B moves once it got 1 MiB and tells A, which moves after writing 2 MiB, with data in
        // flight: its change completes when that is acknowledged.
        let (moved_tx, moved_rx) = oneshot::channel::<()>();
        let writer = async {
            let mut moved_rx = Some(moved_rx);
            for (i, chunk) in data.chunks(256 * 1024).enumerate() {
                if i == 8 {
                    moved_rx.take().unwrap().await.unwrap();
                    sa.change_remote(2, b_addr).await.unwrap();
                }
                sa.write_owned(chunk.to_vec()).await.unwrap();
            }
            sa.end().unwrap();
        };
        let reader = async {
            let mut got = Vec::new();
            let mut moved_tx = Some(moved_tx);
            loop {
                match sb.next_event().await.unwrap() {
                    Event::Data(d) => got.extend_from_slice(&d),
                    Event::Ended => break,
                    other => panic!("unexpected {other:?}"),
                }
                if got.len() >= 1 << 20 {
                    if let Some(tx) = moved_tx.take() {
                        sb.change_remote(1, a_addr).await.unwrap();
                        tx.send(()).unwrap();
                    }
                }
            }
            got
        };
        let (_, got) = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(writer, reader)
        })
        .await
        .expect("transfer in time");
        forward.abort();
        assert!(
            got == data,
            "{} of {} bytes, or different ones",
            got.len(),
            data.len()
        );
        // The close handshake runs without the relay.
        let mut sa = sa;
        sb.end().unwrap();
        let close = async { tokio::join!(sa.closed(), sb.closed()) };
        let (ca, cb) = tokio::time::timeout(Duration::from_secs(10), close)
            .await
            .expect("closed in time");
        ca.unwrap();
        cb.unwrap();
    }

    #[tokio::test]
    async fn stream_ids_are_unique_per_socket() {
        let a = UdxSocket::bind(loopback()).await.unwrap();
        let peer = "127.0.0.1:9".parse().unwrap();
        let _s = a.connect(7, 8, peer).unwrap();
        let err = a.connect(7, 9, peer).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(a.connect(8, 9, peer).is_ok());
    }
}
