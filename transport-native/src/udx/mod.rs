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
//! This file holds the socket handle and the shared types; `stream` the stream handle's calls
//! and its [`AsyncRead`]/[`AsyncWrite`], `driver` the task that does the I/O.
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

mod driver;
mod stream;
#[cfg(test)]
mod tests;

use driver::Driver;

/// Writers wait while a stream holds more than this many unsent bytes.
const WRITE_HIGH_WATER: usize = 1 << 20;
/// Received bytes (data and messages) handed to a stream's handle and not read yet, at most
/// (then the engine keeps them: its receive window closes, and it drops further MESSAGEs).
const READ_HIGH_WATER: usize = 1 << 20;
/// The driver sends what it gathered once this many bytes of datagrams are waiting.
const OUT_BUF_MAX: usize = 1 << 20;
/// A handle tells the driver what it took from its events once this many bytes add up (one
/// command, and one wakeup of the driver, per batch); well under [`READ_HIGH_WATER`], so the
/// driver always has something to hand over while the handle waits.
const CONSUMED_BATCH: usize = READ_HIGH_WATER / 4;
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
    Consumed(u32, usize, Vec<Vec<u8>>),
    /// The handle was dropped; `graceful` when it had ended its write side.
    Dropped {
        id: u32,
        graceful: bool,
    },
    Stats(u32, oneshot::Sender<Option<StreamStats>>),
    /// Where the stream's latest packet on this socket came from.
    SeenFrom(u32, oneshot::Sender<Option<SocketAddr>>),
    Datagrams(mpsc::Sender<Datagram>),
    /// Hand UDX datagrams for unknown stream ids to the datagram receiver too.
    Firewall(bool),
    /// Keep the packets for this reserved, unconnected stream id until it connects.
    Expect(u32),
    /// The reservation was dropped unconnected: forget its packets.
    Unexpect(u32),
    /// Route a datagram as if it had just arrived from this address.
    Inject(SocketAddr, Vec<u8>),
    /// A UDX packet the owner routes back (it came before the stream's connect, or to a sibling
    /// socket): to its stream here, else dropped.
    Deliver(Vec<u8>),
    ChangeRemote {
        id: u32,
        remote_id: u32,
        remote: SocketAddr,
        done: oneshot::Sender<Result<(), UsageError>>,
    },
    /// Move stream `id` to the socket whose driver takes `to`'s commands, then change its
    /// remote there ([`UdxSocket::move_stream`]). `to_ids` is that socket's id set, where `id`
    /// was reserved by the caller (released again if the move does not happen).
    MoveOut {
        id: u32,
        to: mpsc::UnboundedSender<Command>,
        to_ids: Arc<Mutex<HashSet<u32>>>,
        remote_id: u32,
        remote: SocketAddr,
        done: oneshot::Sender<Result<(), UsageError>>,
    },
    /// A stream moved here from another socket's driver ([`Command::MoveOut`]).
    MoveIn(Box<driver::Moved>),
    /// Tell when the stream next takes a packet received on its own socket.
    WatchDirect(u32, oneshot::Sender<()>),
}

impl Command {
    /// The stream a per-stream command is about.
    fn stream_id(&self) -> Option<u32> {
        match self {
            Command::Write { id, .. }
            | Command::End(id)
            | Command::Message(id, _)
            | Command::Destroy(id)
            | Command::Consumed(id, _, _)
            | Command::Dropped { id, .. }
            | Command::Stats(id, _)
            | Command::SeenFrom(id, _)
            | Command::ChangeRemote { id, .. }
            | Command::MoveOut { id, .. }
            | Command::WatchDirect(id, _) => Some(*id),
            _ => None,
        }
    }
}

/// The time origin of every driver's engine, shared so that a stream's timers (deadlines, RTT
/// samples, pacing) keep their meaning when it moves to another socket's driver.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
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
    traffic: Arc<Traffic>,
    /// Bytes taken from events and not yet reported to the driver ([`CONSUMED_BATCH`]).
    unreported: usize,
    /// Data buffers given back ([`UdxStream::recycle`]), returned to the driver with the next
    /// report of consumed bytes.
    spare: Vec<Vec<u8>>,
}

/// Bytes a stream's handle took and gave (JS `rawBytesRead` / `rawBytesWritten`).
#[derive(Debug, Default)]
struct Traffic {
    read: std::sync::atomic::AtomicU64,
    written: std::sync::atomic::AtomicU64,
}

/// A second handle on a [`UdxStream`] ([`UdxStream::handle`]): its byte counters, and a way to
/// destroy it from elsewhere.
#[derive(Debug, Clone)]
pub struct StreamHandle {
    id: u32,
    commands: mpsc::UnboundedSender<Command>,
    traffic: Arc<Traffic>,
}

impl StreamHandle {
    /// Bytes read from the stream so far.
    pub fn bytes_read(&self) -> u64 {
        self.traffic.read.load(Ordering::Relaxed)
    }

    /// Bytes written to the stream so far.
    pub fn bytes_written(&self) -> u64 {
        self.traffic.written.load(Ordering::Relaxed)
    }

    /// Destroys the stream (the peer sees a reset; the handle's reads end with an error).
    pub fn destroy(&self) {
        let _ = self.commands.send(Command::Destroy(self.id));
    }

    /// The address the stream's latest packet came from (the peer's socket, which may not be
    /// the address we send to: libudx takes a connected stream's packets from any address);
    /// `None` before any packet, or once the stream is gone.
    pub async fn seen_from(&self) -> Option<SocketAddr> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::SeenFrom(self.id, tx)).ok()?;
        rx.await.ok().flatten()
    }

    /// The engine's counters for the stream (as [`UdxStream::stats`]); fails once it is gone.
    pub async fn stats(&self) -> io::Result<StreamStats> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Stats(self.id, tx))
            .map_err(|_| gone())?;
        rx.await
            .map_err(|_| gone())?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the stream has finished"))
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the UDX socket driver stopped")
}

fn usage(e: UsageError) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, e)
}

pub(crate) fn stream_failed(e: &StreamError) -> io::Error {
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
        if let Some(state) = &state {
            // Room for a burst: the default (about 200 KiB, some 150 full datagrams) overflows
            // whenever the receiving process is a moment slower than its sender, and every
            // overflow is a retransmission (16% of the packets of a two-process `udx perf` on
            // loopback). Best effort: the kernel caps it at net.core.rmem_max.
            let _ = state.set_recv_buffer_size((&udp).into(), RECV_BUFFER_BYTES);
        }
        let udp = Arc::new(udp);
        let ids = Arc::new(Mutex::new(HashSet::new()));
        let (commands, rx) = mpsc::unbounded_channel();
        let driver = Driver::new(udp.clone(), local_addr, state, ids.clone(), options.batched);
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
        let r = connect_command(&self.commands, local_id, remote_id, remote, config);
        if r.is_err() {
            ids.remove(&local_id);
        }
        r
    }

    /// Reserves stream id `local_id` for a stream connected later, once the peer's id is
    /// known (a stream made with udx-native `createStream` and connected afterwards, as
    /// hypershell's tunnels do): the peer may send to it before that, and what it sends is
    /// kept (up to 64 packets) for the stream rather than dropped and resent after a
    /// retransmission timeout. Fails if the id is in use. Dropping the reservation unconnected
    /// frees the id.
    pub fn reserve(&self, local_id: u32) -> io::Result<ReservedStream> {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if !ids.insert(local_id) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("stream id {local_id} is in use on this socket"),
            ));
        }
        if self.commands.send(Command::Expect(local_id)).is_err() {
            ids.remove(&local_id);
            return Err(gone());
        }
        Ok(ReservedStream {
            id: local_id,
            commands: self.commands.clone(),
            ids: self.ids.clone(),
            connected: false,
        })
    }
}

/// A stream id reserved on a socket ([`UdxSocket::reserve`]), not connected yet.
pub struct ReservedStream {
    id: u32,
    commands: mpsc::UnboundedSender<Command>,
    ids: Arc<Mutex<HashSet<u32>>>,
    connected: bool,
}

impl ReservedStream {
    /// The reserved id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Connects the stream to the peer's `remote_id` at `remote`; the packets that came
    /// early are handed to it first.
    pub fn connect(mut self, remote_id: u32, remote: SocketAddr) -> io::Result<UdxStream> {
        let s = connect_command(
            &self.commands,
            self.id,
            remote_id,
            remote,
            Config::default(),
        )?;
        self.connected = true;
        Ok(s)
    }
}

impl Drop for ReservedStream {
    fn drop(&mut self) {
        if !self.connected {
            let _ = self.commands.send(Command::Unexpect(self.id));
            self.ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.id);
        }
    }
}

/// Tells the driver to connect stream `local_id` (already in the socket's id set).
fn connect_command(
    commands: &mpsc::UnboundedSender<Command>,
    local_id: u32,
    remote_id: u32,
    remote: SocketAddr,
    config: Config,
) -> io::Result<UdxStream> {
    {
        let (events_tx, events) = mpsc::unbounded_channel();
        let max_payload = config.max_payload;
        if commands
            .send(Command::Connect {
                local_id,
                remote_id,
                config: Box::new(config),
                remote,
                events: events_tx,
            })
            .is_err()
        {
            return Err(gone());
        }
        Ok(UdxStream {
            id: local_id,
            max_payload,
            commands: commands.clone(),
            events,
            ended: AtomicBool::new(false),
            read_buf: Vec::new(),
            read_pos: 0,
            read_end: None,
            messages: VecDeque::new(),
            pending_write: None,
            unreported: 0,
            spare: Vec::new(),
            traffic: Arc::default(),
        })
    }
}

impl UdxSocket {
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

    /// Hands this socket's stream a UDX packet the owner got back as unknown: one that beat the
    /// stream's connect (this command is queued behind it), or one that arrived on another
    /// socket of the same owner, as libudx does for the sockets of one `udx_t` (stream ids are
    /// looked up across all of them). A packet for a stream this socket does not have is
    /// dropped, never handed back to the owner.
    pub fn deliver(&self, bytes: Vec<u8>) -> io::Result<()> {
        self.commands
            .send(Command::Deliver(bytes))
            .map_err(|_| gone())
    }

    /// Moves this socket's stream `id`, live, to socket `to`, and there to the peer's stream
    /// `remote_id` at `remote` (udx-native `changeRemote(socket, remoteId, port, host)` with
    /// another socket: how hyperdht moves a relayed connection to the punched socket). The
    /// engine's state moves whole (sequence numbers, unacknowledged packets, buffered data,
    /// the handle's channels): from now on the stream's packets leave from `to`, its
    /// retransmissions included, and `to` routes its incoming packets; packets still reaching
    /// this socket for it (the old path) are handed over, as are the handle's calls, so no
    /// byte is lost or delivered twice. Resolves when the remote change completes (every
    /// packet sent before it acknowledged), like `changeRemote`'s promise. With `to` this very
    /// socket it is a plain [`UdxStream::change_remote`]. Fails if `id` is in use on `to`, a
    /// change is still pending, or the stream is gone.
    pub async fn move_stream(
        &self,
        id: u32,
        to: &UdxSocket,
        remote_id: u32,
        remote: SocketAddr,
    ) -> io::Result<()> {
        move_via(&self.commands, id, to, remote_id, remote).await
    }

    /// [`UdxSocket::move_stream`] in two steps: the move starts now (commands and packets sent
    /// to this socket's stream afterwards follow it), and the returned future resolves when
    /// the remote change completed.
    pub fn start_move(
        &self,
        id: u32,
        to: &UdxSocket,
        remote_id: u32,
        remote: SocketAddr,
    ) -> io::Result<impl Future<Output = io::Result<()>> + Send + 'static> {
        let rx = begin_move(&self.commands, id, to, remote_id, remote)?;
        Ok(finish_move(rx))
    }

    /// Sends an unreliable MESSAGE on this socket's stream `id` (an empty one is how hyperdht
    /// makes the peer observe a direct path: relay-connection.js `confirmDirectUpgrade`).
    pub fn send_stream_message(&self, id: u32, bytes: Vec<u8>) -> io::Result<()> {
        self.commands
            .send(Command::Message(id, bytes))
            .map_err(|_| gone())
    }

    /// Resolves when stream `id` next takes a packet that arrived on its own socket from its
    /// remote address (not one handed over from another socket, nor from anyone else: after a
    /// move, one from the new path); fails if the stream goes away first.
    pub fn next_direct_packet(&self, id: u32) -> io::Result<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::WatchDirect(id, tx))
            .map_err(|_| gone())?;
        Ok(rx)
    }

    /// Routes `bytes` as if they had just arrived from `from` (after a firewall decision).
    pub fn inject(&self, from: SocketAddr, bytes: Vec<u8>) -> io::Result<()> {
        self.commands
            .send(Command::Inject(from, bytes))
            .map_err(|_| gone())
    }
}

/// [`UdxSocket::move_stream`] through the commands of the stream's current socket.
async fn move_via(
    commands: &mpsc::UnboundedSender<Command>,
    id: u32,
    to: &UdxSocket,
    remote_id: u32,
    remote: SocketAddr,
) -> io::Result<()> {
    finish_move(begin_move(commands, id, to, remote_id, remote)?).await
}

/// Sends the move (or plain remote change) command; the receiver tells when it completed.
fn begin_move(
    commands: &mpsc::UnboundedSender<Command>,
    id: u32,
    to: &UdxSocket,
    remote_id: u32,
    remote: SocketAddr,
) -> io::Result<oneshot::Receiver<Result<(), UsageError>>> {
    let (done, rx) = oneshot::channel();
    let command = if commands.same_channel(&to.commands) {
        Command::ChangeRemote {
            id,
            remote_id,
            remote,
            done,
        }
    } else {
        if !to.ids.lock().unwrap_or_else(|e| e.into_inner()).insert(id) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("stream id {id} is in use on the socket it should move to"),
            ));
        }
        Command::MoveOut {
            id,
            to: to.commands.clone(),
            to_ids: to.ids.clone(),
            remote_id,
            remote,
            done,
        }
    };
    if let Err(mpsc::error::SendError(command)) = commands.send(command) {
        if let Command::MoveOut { to_ids, .. } = command {
            to_ids.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        }
        return Err(gone());
    }
    Ok(rx)
}

async fn finish_move(rx: oneshot::Receiver<Result<(), UsageError>>) -> io::Result<()> {
    rx.await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the stream finished before its remote change completed",
            )
        })?
        .map_err(usage)
}

/// The receive buffer a socket asks the kernel for.
const RECV_BUFFER_BYTES: usize = 4 << 20;

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
