//! One hyperdht connection: secret-stream (from the DHT's Noise IK handshake) over a UDX
//! stream, as a message pipe. A pump task owns both engines; the [`Connection`] handle sends
//! and receives whole secret-stream messages.

use std::future::Future;
use std::io;
use std::pin::Pin;

use hyperpunch_core::dht::connect::Established;
use hyperpunch_core::secretstream::{
    Entropy, Event as StreamEvent, Options as StreamOptions, SecretStream,
};
use std::net::SocketAddrV4;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::udx::{UdxEvent, UdxSocket, UdxStream};

/// hyperdht's `connectionKeepAlive`: an empty message after 5 s of write idleness.
pub const KEEP_ALIVE_MS: u64 = 5000;

/// Messages queued by the application are encrypted together, up to about this many bytes,
/// into one buffer handed to UDX in one write (one wakeup of its driver per batch, not per
/// message).
const WRITE_BATCH: usize = 256 * 1024;

enum Out {
    Message(Vec<u8>),
    End,
}

/// A connection to a peer: the remote key, messages in and out.
pub struct Connection {
    pub(crate) socket: hyperpunch_core::dht::rpc::SocketId,
    pub(crate) remote: std::net::SocketAddrV4,
    pub(crate) relayed: bool,
    remote_public_key: [u8; 32],
    handshake_hash: [u8; 64],
    is_initiator: bool,
    out: mpsc::Sender<Out>,
    incoming: mpsc::Receiver<io::Result<Vec<u8>>>,
    finished: tokio::sync::watch::Receiver<bool>,
    direct: Option<tokio::sync::watch::Receiver<Option<SocketAddrV4>>>,
    host: Option<StreamHost>,
}

/// The path of a connection, for more UDX streams beside it to the same peer (hyperdht
/// `connectRawStream(encryptedStream, rawStream, remoteId)`: the raw stream connects on the
/// encrypted stream's socket to its remote address): what hypershell's tunnels run on.
#[derive(Clone)]
pub struct StreamHost {
    socket: Arc<UdxSocket>,
    remote: std::net::SocketAddr,
    /// The connection's own stream: where its peer's packets come from.
    main: crate::udx::StreamHandle,
    /// Tells the DHT node which socket a new stream lives on.
    registry: Option<Arc<StreamRegistry>>,
}

/// Tells the DHT node that a stream id lives on the connection's socket.
pub(crate) type StreamRegistry = Box<dyn Fn(u32) + Send + Sync>;

impl StreamHost {
    /// Reserves a fresh random stream id on the connection's socket (hyperdht
    /// `createRawStream`); what the peer sends to it before it is connected is kept.
    pub fn reserve(&self) -> io::Result<crate::udx::ReservedStream> {
        let mut last = None;
        for _ in 0..8 {
            let mut b = [0u8; 4];
            getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
            match self.socket.reserve(u32::from_le_bytes(b)) {
                Ok(r) => {
                    // Packets for it that reach another socket of the node come here (the
                    // peer sends to the address it sends the connection's packets to).
                    if let Some(reg) = &self.registry {
                        reg(r.id());
                    }
                    return Ok(r);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free stream id")))
    }

    /// Connects a reserved stream to the peer's stream `remote_id`, at the address the
    /// connection's packets come from (the peer's stream lives on that socket, and a libudx
    /// stream drops what reaches it through another socket of its node: the address we send
    /// the connection's packets to may be another one, when the peer answered from its other
    /// socket), and runs a fresh
    /// secret-stream over it (Noise XX with a random key pair, as `new SecretStream(isInitiator,
    /// rawStream)` without options; keep-alive 5 s as hypershell sets), as a message pipe.
    /// The peer's key is whatever random key it made: such a stream is tied to the
    /// authenticated connection only by its path, as in JS. Its
    /// [`Connection::remote_public_key`] and [`Connection::handshake_hash`] read zeros.
    pub async fn open_secret(
        &self,
        reserved: crate::udx::ReservedStream,
        remote_id: u32,
        is_initiator: bool,
    ) -> io::Result<Connection> {
        let to = self.main.seen_from().await.unwrap_or(self.remote);
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
        let key_pair = hyperpunch_core::crypto::KeyPair::from_seed(&seed);
        let opts = StreamOptions {
            keep_alive: KEEP_ALIVE_MS,
            ..StreamOptions::default()
        };
        let stream = if is_initiator {
            SecretStream::new_initiator(key_pair, entropy()?, opts, 0)
        } else {
            SecretStream::new_responder(key_pair, entropy()?, opts, 0)
        }
        .map_err(|e| io::Error::other(e.to_string()))?;
        let udx = reserved.connect(remote_id, to)?;
        let epoch = Instant::now();
        let (out_tx, out_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = mpsc::channel(64);
        let (done_tx, finished) = tokio::sync::watch::channel(false);
        let socket = self.socket.clone();
        tokio::spawn(async move {
            pump(udx, stream, out_rx, in_tx, epoch, socket).await;
            let _ = done_tx.send(true);
        });
        let remote = match to {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(_) => SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
        };
        Ok(Connection {
            socket: hyperpunch_core::dht::rpc::SocketId(u32::MAX),
            remote,
            relayed: false,
            remote_public_key: [0; 32],
            handshake_hash: [0; 64],
            is_initiator,
            out: out_tx,
            incoming: in_rx,
            finished,
            direct: None,
            host: Some(self.clone()),
        })
    }
}

async fn wait_finished(mut w: tokio::sync::watch::Receiver<bool>) {
    let _ = w.wait_for(|done| *done).await;
}

impl Connection {
    /// Waits until the connection is over: both sides ended and what we sent was acknowledged
    /// by the peer's UDX stream (or the connection failed). Exiting a process before this loses
    /// data still in flight.
    pub async fn finished(&self) {
        wait_finished(self.finished.clone()).await
    }

    /// The peer's public key (authenticated by the handshake).
    pub fn remote_public_key(&self) -> [u8; 32] {
        self.remote_public_key
    }

    /// The Noise handshake hash (JS `handshakeHash`): both sides have the same.
    pub fn handshake_hash(&self) -> [u8; 64] {
        self.handshake_hash
    }

    /// Whether the connection runs on one of a holepuncher's sockets (the path was punched),
    /// rather than on the DHT's own sockets (a direct connection to an open peer, or a relay).
    pub fn is_holepunched(&self) -> bool {
        self.socket.0 >= 2 && !self.relayed
    }

    /// Whether the connection runs through a blind relay (it may move to a direct path later:
    /// [`Connection::upgraded`]).
    pub fn is_relayed(&self) -> bool {
        self.relayed
    }

    /// For a relayed connection: resolves with the peer's direct address once the stream moved
    /// there (the punch that went on after the relay paired succeeded: hyperdht's
    /// `changeRemote`); pending while it may still, `None` for a connection that was not
    /// relayed (or once the node stopped).
    pub fn upgraded(
        &self,
    ) -> impl std::future::Future<Output = Option<SocketAddrV4>> + Send + 'static {
        wait_direct(self.direct.clone())
    }

    /// The peer's address (the relay's, for a relayed connection).
    pub fn remote_addr(&self) -> std::net::SocketAddrV4 {
        self.remote
    }

    /// Whether we connected out (the secret-stream initiator).
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// The path of this connection, for more streams beside it ([`StreamHost`]); `None` for a
    /// relayed connection (a stream beside it would go to the relay, which pairs only the
    /// streams it was asked to).
    pub fn stream_host(&self) -> Option<StreamHost> {
        self.host.clone()
    }

    /// Sends one message (at most 16 MiB - 1 - 17 bytes).
    pub async fn send(&self, message: Vec<u8>) -> io::Result<()> {
        self.out
            .send(Out::Message(message))
            .await
            .map_err(|_| closed())
    }

    /// Ends our side: the peer reads the end after our messages.
    pub async fn end(&self) -> io::Result<()> {
        self.out.send(Out::End).await.map_err(|_| closed())
    }

    /// The next message; `None` once the peer ended (or the connection closed cleanly).
    pub async fn recv(&mut self) -> Option<io::Result<Vec<u8>>> {
        self.incoming.recv().await
    }

    /// Splits into a sender and a receiver half.
    pub fn split(self) -> (ConnectionSender, ConnectionReceiver) {
        (
            ConnectionSender {
                out: self.out,
                finished: self.finished,
            },
            ConnectionReceiver {
                incoming: self.incoming,
            },
        )
    }
}

/// The sending half of a [`Connection`].
#[derive(Clone)]
pub struct ConnectionSender {
    out: mpsc::Sender<Out>,
    finished: tokio::sync::watch::Receiver<bool>,
}

impl ConnectionSender {
    /// See [`Connection::finished`].
    pub async fn finished(&self) {
        wait_finished(self.finished.clone()).await
    }

    /// Sends one message.
    pub async fn send(&self, message: Vec<u8>) -> io::Result<()> {
        self.out
            .send(Out::Message(message))
            .await
            .map_err(|_| closed())
    }
    /// Ends our side.
    pub async fn end(&self) -> io::Result<()> {
        self.out.send(Out::End).await.map_err(|_| closed())
    }
}

/// The receiving half of a [`Connection`].
pub struct ConnectionReceiver {
    incoming: mpsc::Receiver<io::Result<Vec<u8>>>,
}

impl ConnectionReceiver {
    /// The next message; `None` at the peer's end.
    pub async fn recv(&mut self) -> Option<io::Result<Vec<u8>>> {
        self.incoming.recv().await
    }

    /// The next message if one was already received, without waiting; `None` when there is
    /// none yet, and at the peer's end (which [`ConnectionReceiver::recv`] then reports).
    pub fn try_recv(&mut self) -> Option<io::Result<Vec<u8>>> {
        self.incoming.try_recv().ok()
    }

    /// A receiver fed by `incoming` (tests of what reads connections).
    #[cfg(test)]
    pub(crate) fn from_channel(incoming: mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        ConnectionReceiver { incoming }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the connection is closed")
}

fn entropy() -> io::Result<Entropy> {
    let mut b = [0u8; 64];
    getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(Entropy::from_bytes(&b))
}

/// An established connection whose stream is not started yet: the UDX stream on the socket
/// the path was found on, and the handshake to run secret-stream with. Turn it into a message
/// pipe ([`RawConnection::into_messages`]) or drive it yourself ([`RawConnection::into_parts`];
/// replication does).
pub struct RawConnection {
    udx: UdxStream,
    socket: Arc<UdxSocket>,
    est: Established,
    guards: Vec<Box<dyn Send>>,
    /// For a relayed connection: the peer's direct address once the stream moved there.
    direct: Option<tokio::sync::watch::Receiver<Option<SocketAddrV4>>>,
    registry: Option<Arc<StreamRegistry>>,
}

/// Waits until a relayed connection's stream moved to a direct path; `None` if it never does.
async fn wait_direct(
    direct: Option<tokio::sync::watch::Receiver<Option<SocketAddrV4>>>,
) -> Option<SocketAddrV4> {
    let mut rx = direct?;
    let r = rx.wait_for(|d| d.is_some()).await.ok()?;
    *r
}

/// A [`RawConnection`] taken apart ([`RawConnection::into_parts`]).
pub struct RawParts {
    /// The UDX stream (carries the secret-stream bytes).
    pub udx: UdxStream,
    /// The secret-stream engine, its header ready to send.
    pub stream: SecretStream,
    /// The socket the stream runs on: keep it while the stream runs.
    pub socket: Arc<UdxSocket>,
    /// Values to drop when the connection is over (e.g. a swarm's close notice).
    pub guards: Vec<Box<dyn Send>>,
}

impl RawConnection {
    pub(crate) fn new(udx: UdxStream, est: Established, socket: Arc<UdxSocket>) -> Self {
        RawConnection {
            udx,
            socket,
            est,
            guards: Vec::new(),
            direct: None,
            registry: None,
        }
    }

    pub(crate) fn set_stream_registry(&mut self, registry: StreamRegistry) {
        self.registry = Some(Arc::new(registry));
    }

    pub(crate) fn set_direct(&mut self, rx: tokio::sync::watch::Receiver<Option<SocketAddrV4>>) {
        self.direct = Some(rx);
    }

    /// For a relayed connection: resolves with the peer's direct address once the stream moved
    /// there (the punch that went on after the relay paired succeeded: hyperdht's
    /// `changeRemote`); pending while it may still, `None` for a connection that was not
    /// relayed (or once the node stopped).
    pub fn upgraded(
        &self,
    ) -> impl std::future::Future<Output = Option<SocketAddrV4>> + Send + 'static {
        wait_direct(self.direct.clone())
    }

    /// Keeps `guard` until the connection is over (dropped with the message pump, or handed
    /// out by [`RawConnection::into_parts`]).
    pub fn attach(&mut self, guard: impl Send + 'static) {
        self.guards.push(Box::new(guard));
    }

    /// A handle on the UDX stream: its byte counters, and `destroy`.
    pub fn stream_handle(&self) -> crate::udx::StreamHandle {
        self.udx.handle()
    }

    /// The peer's public key (authenticated by the handshake).
    pub fn remote_public_key(&self) -> [u8; 32] {
        self.est.remote_public_key
    }

    /// The Noise handshake hash (JS `handshakeHash`): both sides have the same. `None` when
    /// the handshake ran outside ([`Dht::connect_external`](super::Dht::connect_external)).
    pub fn handshake_hash(&self) -> Option<[u8; 64]> {
        self.est.handshake.as_ref().map(|h| h.split.hash)
    }

    /// For a connection to a server made with [`Dht::listen_external`](super::Dht::listen_external):
    /// the id of the handshake its owner ran ([`ServerStep::Noise`](super::ServerStep)).
    pub fn external_handshake(&self) -> Option<u64> {
        self.est.external_handshake
    }

    /// Whether we connected out (the secret-stream initiator).
    pub fn is_initiator(&self) -> bool {
        self.est.is_initiator
    }

    /// The peer's address (the relay's, for a relayed connection).
    pub fn remote_addr(&self) -> SocketAddrV4 {
        self.est.remote
    }

    /// Whether the connection runs through a blind relay.
    pub fn is_relayed(&self) -> bool {
        self.est.relayed
    }

    /// Whether the path was punched (see [`Connection::is_holepunched`]).
    pub fn is_holepunched(&self) -> bool {
        self.est.socket.0 >= 2 && !self.est.relayed
    }

    /// Destroys the stream (the peer sees a reset).
    pub fn destroy(self) {
        let _ = self.udx.destroy();
    }

    /// The UDX stream, the secret-stream engine (its header is ready to send; `now_ms` is its
    /// clock in the caller's milliseconds), the socket and the guards.
    pub fn into_parts(self, opts: StreamOptions, now_ms: u64) -> io::Result<RawParts> {
        let Some(handshake) = self.est.handshake.as_ref() else {
            return Err(io::Error::other(
                "the handshake ran outside: its owner runs secret-stream (into_bytes)",
            ));
        };
        let stream = SecretStream::from_handshake(
            self.est.is_initiator,
            handshake.split.clone(),
            entropy()?,
            opts,
            now_ms,
        );
        Ok(RawParts {
            udx: self.udx,
            stream,
            socket: self.socket,
            guards: self.guards,
        })
    }

    /// The UDX stream as it is, its bytes not decrypted (for a connection whose handshake ran
    /// outside: the key pair's owner runs secret-stream over these bytes), the socket to keep
    /// while it runs, and the guards.
    pub fn into_bytes(self) -> (UdxStream, Arc<UdxSocket>, Vec<Box<dyn Send>>) {
        (self.udx, self.socket, self.guards)
    }

    /// Starts the connection as a message pipe (keep-alives as hyperdht's).
    pub fn into_messages(self) -> Connection {
        let epoch = Instant::now();
        let opts = StreamOptions {
            keep_alive: KEEP_ALIVE_MS,
            ..StreamOptions::default()
        };
        let est = self.est.clone();
        let direct = self.direct.clone();
        let host = (!est.relayed).then(|| StreamHost {
            socket: self.socket.clone(),
            remote: std::net::SocketAddr::V4(est.remote),
            main: self.udx.handle(),
            registry: self.registry.clone(),
        });
        let (out_tx, out_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = mpsc::channel(64);
        let (done_tx, finished) = tokio::sync::watch::channel(false);
        match self.into_parts(opts, 0) {
            Ok(p) => {
                tokio::spawn(async move {
                    pump(p.udx, p.stream, out_rx, in_tx, epoch, p.socket).await;
                    drop(p.guards);
                    let _ = done_tx.send(true);
                });
            }
            Err(e) => {
                let _ = in_tx.try_send(Err(e));
                let _ = done_tx.send(true);
            }
        }
        Connection {
            socket: est.socket,
            remote: est.remote,
            relayed: est.relayed,
            remote_public_key: est.remote_public_key,
            handshake_hash: est
                .handshake
                .as_ref()
                .map(|h| h.split.hash)
                .unwrap_or([0; 64]),
            is_initiator: est.is_initiator,
            out: out_tx,
            incoming: in_rx,
            finished,
            direct,
            host,
        }
    }
}

async fn pump(
    mut udx: UdxStream,
    mut stream: SecretStream,
    mut out: mpsc::Receiver<Out>,
    incoming: mpsc::Sender<io::Result<Vec<u8>>>,
    epoch: Instant,
    // Held while the connection runs: the socket (and its datagrams to us) stays bound.
    _socket: std::sync::Arc<crate::udx::UdxSocket>,
) {
    // Dropped at the peer's end, so that the reader sees `None` while we may still write.
    let mut incoming = Some(incoming);
    async fn deliver(
        incoming: &Option<mpsc::Sender<io::Result<Vec<u8>>>>,
        item: io::Result<Vec<u8>>,
    ) {
        if let Some(tx) = incoming {
            let _ = tx.send(item).await;
        }
    }
    let mut out_open = true;
    let mut read_open = true;
    let mut shut = false;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    // Set while the UDX stream holds more than its high-water mark unsent: resolves when it
    // has room again. Meanwhile nothing more is taken from `out`, but the peer's bytes are
    // still read: waiting for room without reading stalls the connection for good when the
    // peer does the same (each one's receive window stays full of what the other does not
    // read; 1 run in ~17 of the NAT lab's upgrade cell, where both sides send 4 MiB at once).
    let mut room: Option<Pin<Box<dyn Future<Output = io::Result<()>> + Send>>> = None;
    loop {
        // Each buffer is handed to the UDX driver as it is (no copy). What the secret-stream
        // has queued is bounded: one batch from `out` (or a keep-alive) at a time.
        while let Some(bytes) = stream.poll_transmit() {
            match udx.write_queued(bytes) {
                Ok(r) => room = Some(Box::pin(r)),
                Err(_) => {
                    deliver(&incoming, Err(closed())).await;
                    return;
                }
            }
        }
        if stream.wants_shutdown() && !shut {
            shut = true;
            let _ = udx.shutdown().await;
        }
        while let Some(ev) = stream.poll_event() {
            match ev {
                StreamEvent::Message(m) => {
                    deliver(&incoming, Ok(m)).await;
                }
                StreamEvent::End => incoming = None,
                StreamEvent::Closed(err) => {
                    let clean = err.is_none();
                    if let Some(e) = err {
                        deliver(&incoming, Err(io::Error::other(e.to_string()))).await;
                    }
                    let _ = udx.shutdown().await;
                    if clean {
                        // Until the peer acknowledged everything we sent (bounded).
                        let _ =
                            tokio::time::timeout(std::time::Duration::from_secs(30), udx.closed())
                                .await;
                    }
                    return;
                }
                StreamEvent::Connected { .. } => {}
            }
        }
        if !read_open && !out_open && shut {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), udx.closed()).await;
            return;
        }
        let deadline = stream
            .poll_timeout()
            .map(|t| epoch + std::time::Duration::from_millis(t));
        tokio::select! {
            written = async { room.as_mut().expect("only while set").await }, if room.is_some() => {
                room = None;
                if written.is_err() {
                    deliver(&incoming, Err(closed())).await;
                    return;
                }
            }
            // The stream's events directly (not through `AsyncRead`, which copies each chunk
            // once more).
            ev = udx.next_event(), if read_open => match ev {
                Some(UdxEvent::Data(d)) => {
                    stream.handle_input(epoch.elapsed().as_millis() as u64, &d);
                    udx.recycle(d);
                }
                // Unreliable datagrams: not part of the byte stream.
                Some(UdxEvent::Message(_)) => {}
                Some(UdxEvent::Ended | UdxEvent::Closed) => {
                    read_open = false;
                    stream.handle_eof(epoch.elapsed().as_millis() as u64);
                }
                Some(UdxEvent::Error(e)) => {
                    deliver(&incoming, Err(crate::udx::stream_failed(&e))).await;
                    return;
                }
                None => {
                    deliver(&incoming, Err(closed())).await;
                    return;
                }
            },
            m = out.recv(), if out_open && room.is_none() => {
                // This message and those already queued behind it, together.
                let mut end = false;
                let mut bytes = 0;
                let mut next = m;
                loop {
                    match next {
                        Some(Out::Message(m)) => {
                            bytes += m.len();
                            batch.push(m);
                        }
                        Some(Out::End) | None => {
                            end = true;
                            break;
                        }
                    }
                    if bytes >= WRITE_BATCH {
                        break;
                    }
                    next = match out.try_recv() {
                        Ok(o) => Some(o),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                    };
                }
                if let Err(e) = stream.write_batch(&batch) {
                    deliver(&incoming, Err(io::Error::other(e.to_string()))).await;
                    return;
                }
                batch.clear();
                if end {
                    out_open = false;
                    stream.end();
                }
            },
            _ = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => stream.handle_timeout(epoch.elapsed().as_millis() as u64),
        }
    }
}
