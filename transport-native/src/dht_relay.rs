//! The WebSocket relay for browsers (`@hyperswarm/dht-relay` 0.4.3's wire): every WebSocket
//! binary message is one protomux frame of a [`Session`] (core's sans-IO relay session), whose
//! requests this driver carries out on a [`Dht`] node.
//!
//! A non-custodial client's connection runs its Noise handshake in the client: the driver
//! passes the DHT's handshake steps ([`Dht::connect_external`]) to the session and the
//! client's answers back, then forwards the stream's bytes (the client's secret-stream
//! ciphertext) as they are, never decrypting them (it has no key to).
//!
//! The driver makes no protocol decisions: the session decides what to send, what to ask of
//! the DHT and when to close (with which code); this file moves bytes between the WebSocket,
//! the session and the DHT's connections, and enforces the carrier's own limits (frame size,
//! connection count).

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use hyperpunch_core::dht::connect::{ExternalReceived, NoiseStep};
use hyperpunch_core::dht::{AnnounceOptions, LookupResult};
use hyperpunch_core::relay::dht_relay::{
    close_code, Announcers, Limits, Node, Peer, Request, Session,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

use crate::dht::{
    ConnectOptions, Connection, ConnectionReceiver, ConnectionSender, Dht, ExternalProgress,
    Lookup, RawConnection, ServerControl, ServerOptions, ServerStep, SignAnnounceRequest,
};
use crate::udx::{StreamHandle, UdxStream};

/// How to run a relay.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Per-session limits (streams, requests per second, buffering, heartbeat).
    pub limits: Limits,
    /// Sessions at once; more are closed at once with [`close_code::RELAY_FULL`].
    pub max_connections: usize,
    /// The largest WebSocket message accepted; larger ones close the session with
    /// [`close_code::MESSAGE_TOO_BIG`].
    pub max_message: usize,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            limits: Limits::default(),
            max_connections: 1024,
            max_message: 1 << 20,
        }
    }
}

/// Counters of a running relay.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Sessions open now.
    pub sessions: AtomicUsize,
    /// Sessions accepted since the start.
    pub accepted: AtomicUsize,
    /// Sessions the relay closed with a code other than 1000.
    pub closed_with_error: AtomicUsize,
    /// DHT streams open now, over all sessions.
    pub streams: AtomicUsize,
}

/// A relay serving WebSocket clients on a listener.
pub struct WsRelay {
    local: SocketAddr,
    stats: Arc<RelayStats>,
    task: tokio::task::JoinHandle<()>,
}

impl WsRelay {
    /// Binds `addr` and serves clients through `peer` until dropped.
    pub async fn bind(
        addr: SocketAddr,
        peer: Arc<Dht>,
        opts: RelayOptions,
    ) -> std::io::Result<WsRelay> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let stats = Arc::new(RelayStats::default());
        let task = tokio::spawn(serve(listener, peer, opts, stats.clone()));
        Ok(WsRelay { local, stats, task })
    }

    /// The address clients connect to (`ws://ADDR`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The relay's counters.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }
}

impl Drop for WsRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, peer: Arc<Dht>, opts: RelayOptions, stats: Arc<RelayStats>) {
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let mut sessions = JoinSet::new();
    let epoch = Instant::now();
    loop {
        tokio::select! {
            a = listener.accept() => {
                let Ok((tcp, _)) = a else { continue };
                let _ = tcp.set_nodelay(true);
                let peer = peer.clone();
                let opts = opts.clone();
                let stats = stats.clone();
                let permit = slots.clone().try_acquire_owned().ok();
                sessions.spawn(async move {
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    match permit {
                        Some(_permit) => {
                            stats.sessions.fetch_add(1, Ordering::Relaxed);
                            run_session(tcp, peer, &opts, &stats, epoch).await;
                            stats.sessions.fetch_sub(1, Ordering::Relaxed);
                        }
                        None => refuse(tcp, &opts).await,
                    }
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// The WebSocket read buffer of a session. tungstenite allocates it in full per connection
/// (128 KiB by default), which was most of an idle session's memory (about 150 KiB each, 1000
/// idle sessions: 160 MiB RSS, bench/relay.sh); clients mostly send small requests, and a
/// larger message is read into a buffer that grows for it.
const WS_READ_BUFFER: usize = 16 * 1024;

fn ws_config(opts: &RelayOptions) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(Some(opts.max_message))
        .max_frame_size(Some(opts.max_message))
}

fn close_message(code: u16, reason: &str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    }))
}

async fn refuse(tcp: TcpStream, opts: &RelayOptions) {
    let Ok(Ok(mut ws)) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config(opts))),
    )
    .await
    else {
        return;
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        ws.send(close_message(close_code::RELAY_FULL, "the relay is full")),
    )
    .await;
}

/// What the session's helpers report to it.
enum Ev {
    Open(u32, Result<RawConnection, String>),
    /// A non-custodial connect's handshake step, for the client.
    Noise(u32, NoiseStep),
    /// A non-custodial announce's record to sign, for the client.
    Sign(u32, SignAnnounceRequest),
    /// Messages (custodial) or bytes (non-custodial) from the stream's peer, in order: what
    /// one relay `data` message carries to the client.
    Data(u32, Vec<Vec<u8>>),
    End(u32),
    Closed(u32, Option<String>),
    Written(u32, usize),
    Listening(u32, SocketAddrV4),
    Incoming(u32, RawConnection),
    /// A non-custodial server's step, for the client.
    ServerStep(u32, ServerStep),
    ServerClosed(u32),
    Result(u32, LookupResult),
    Done(u32),
}

enum StreamCmd {
    Write(Vec<u8>),
    End,
}

/// The client's answer to a handshake step of a non-custodial connect.
// One value a step, handed over at once (never stored in bulk): not worth a box.
#[allow(clippy::large_enum_variant)]
enum NoiseAnswer {
    Sent(Option<Vec<u8>>),
    Received(Option<ExternalReceived>),
}

struct Streams {
    /// Writers of open streams.
    writers: HashMap<u32, mpsc::UnboundedSender<StreamCmd>>,
    /// The UDX streams, to destroy with the relay stream.
    udx: HashMap<u32, StreamHandle>,
    /// Every task of a stream (connect, reader, writer), to stop on destroy.
    tasks: HashMap<u32, Vec<tokio::task::AbortHandle>>,
    /// Non-custodial connects waiting for the client's handshake answers.
    noise: HashMap<u32, mpsc::UnboundedSender<NoiseAnswer>>,
}

impl Streams {
    fn stop(&mut self, stream: u32) {
        self.writers.remove(&stream);
        self.noise.remove(&stream);
        if let Some(h) = self.udx.remove(&stream) {
            h.destroy();
        }
        for t in self.tasks.remove(&stream).unwrap_or_default() {
            t.abort();
        }
    }
}

async fn run_session(
    tcp: TcpStream,
    peer: Arc<Dht>,
    opts: &RelayOptions,
    stats: &RelayStats,
    epoch: Instant,
) {
    let Ok(Ok(ws)) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config(opts))),
    )
    .await
    else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let now = || epoch.elapsed();
    let mut session = Session::new(now(), opts.limits.clone());

    // The writer: frames in order; `buffered` counts bytes not yet handed to the socket.
    let buffered = Arc::new(AtomicUsize::new(0));
    let drained = Arc::new(Notify::new());
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<WsMessage>();
    let writer = {
        let buffered = buffered.clone();
        let drained = drained.clone();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let n = m.len();
                let close = matches!(m, WsMessage::Close(_));
                if sink.send(m).await.is_err() {
                    break;
                }
                buffered.fetch_sub(n, Ordering::Relaxed);
                drained.notify_one();
                if close {
                    break;
                }
            }
            let _ = sink.close().await;
        })
    };

    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Ev>();
    let (paused_tx, paused_rx) = watch::channel(false);
    let mut streams = Streams {
        writers: HashMap::new(),
        udx: HashMap::new(),
        tasks: HashMap::new(),
        noise: HashMap::new(),
    };
    let mut servers: HashMap<u32, tokio::task::AbortHandle> = HashMap::new();
    // Non-custodial servers: where the client's answers to their steps go.
    let mut server_controls: HashMap<u32, ServerControl> = HashMap::new();
    let mut queries: HashMap<u32, tokio::task::AbortHandle> = HashMap::new();
    // Records of non-custodial announces the client is signing.
    let mut signing: HashMap<(u32, u64), SignAnnounceRequest> = HashMap::new();
    // Non-custodial unannounces: their records to sign are removals (signUnannounce).
    let mut unannouncing: std::collections::HashSet<u32> = std::collections::HashSet::new();
    let mut tasks = JoinSet::new();
    let mut ws_close: Option<(u16, String)> = None;

    loop {
        // Requests first, then frames out, then the buffer level.
        while let Some(r) = session.poll_request() {
            match r {
                Request::Connect {
                    stream,
                    key_pair,
                    remote_public_key,
                } => {
                    let peer = peer.clone();
                    let ev = ev_tx.clone();
                    let h = tasks.spawn(async move {
                        let r = peer
                            .connect_raw(remote_public_key, key_pair, ConnectOptions::default())
                            .await
                            .map_err(|e| e.to_string());
                        let _ = ev.send(Ev::Open(stream, r));
                    });
                    streams.tasks.entry(stream).or_default().push(h);
                }
                Request::ConnectExternal {
                    stream,
                    remote_public_key,
                } => {
                    let peer = peer.clone();
                    let ev = ev_tx.clone();
                    let (answers_tx, answers) = mpsc::unbounded_channel();
                    streams.noise.insert(stream, answers_tx);
                    let h = tasks.spawn(connect_external(
                        peer,
                        stream,
                        remote_public_key,
                        answers,
                        ev,
                    ));
                    streams.tasks.entry(stream).or_default().push(h);
                }
                Request::NoiseSent { stream, message } => {
                    if let Some(tx) = streams.noise.get(&stream) {
                        let _ = tx.send(NoiseAnswer::Sent(message));
                    }
                }
                Request::NoiseReceived { stream, received } => {
                    if let Some(tx) = streams.noise.get(&stream) {
                        let _ = tx.send(NoiseAnswer::Received(received));
                    }
                }
                Request::Listen { server, key_pair } => {
                    let peer = peer.clone();
                    let ev = ev_tx.clone();
                    let h = tasks.spawn(async move {
                        let Ok(mut s) = peer.listen(key_pair, ServerOptions::default()).await
                        else {
                            let _ = ev.send(Ev::ServerClosed(server));
                            return;
                        };
                        let addr = match peer.firewalled().await {
                            Ok((false, Some(a))) => a,
                            _ => peer.local_addr(),
                        };
                        let _ = ev.send(Ev::Listening(server, addr));
                        while let Some(c) = s.accept_raw().await {
                            if ev.send(Ev::Incoming(server, c)).is_err() {
                                return;
                            }
                        }
                        let _ = ev.send(Ev::ServerClosed(server));
                    });
                    servers.insert(server, h);
                }
                Request::ListenExternal { server, public_key } => {
                    let Ok((mut s, mut steps)) = peer
                        .listen_external(public_key, ServerOptions::default())
                        .await
                    else {
                        session.server_closed(server);
                        continue;
                    };
                    server_controls.insert(server, s.control());
                    let peer = peer.clone();
                    let ev = ev_tx.clone();
                    let h = tasks.spawn(async move {
                        loop {
                            tokio::select! {
                                step = steps.recv() => match step {
                                    Some(ServerStep::Listening) => {
                                        let addr = match peer.firewalled().await {
                                            Ok((false, Some(a))) => a,
                                            _ => peer.local_addr(),
                                        };
                                        let _ = ev.send(Ev::Listening(server, addr));
                                    }
                                    Some(step) => {
                                        if ev.send(Ev::ServerStep(server, step)).is_err() {
                                            return;
                                        }
                                    }
                                    None => break,
                                },
                                c = s.accept_raw() => match c {
                                    Some(c) => {
                                        if ev.send(Ev::Incoming(server, c)).is_err() {
                                            return;
                                        }
                                    }
                                    None => break,
                                },
                            }
                        }
                        let _ = ev.send(Ev::ServerClosed(server));
                    });
                    servers.insert(server, h);
                }
                Request::ServerNoiseReceived {
                    server,
                    handshake,
                    received,
                } => {
                    if let Some(c) = server_controls.get(&server) {
                        c.noise_received(handshake, received);
                    }
                }
                Request::ServerNoiseSent {
                    server,
                    handshake,
                    sent,
                } => {
                    if let Some(c) = server_controls.get(&server) {
                        c.noise_sent(handshake, sent);
                    }
                }
                Request::ServerSigned {
                    server,
                    sign,
                    signature,
                } => {
                    if let Some(c) = server_controls.get(&server) {
                        c.signed(sign, signature);
                    }
                }
                Request::CloseServer { server } => {
                    if let Some(h) = servers.remove(&server) {
                        h.abort();
                    }
                    server_controls.remove(&server);
                    session.server_closed(server);
                }
                Request::Lookup { query, topic } => {
                    let op = peer.lookup(topic);
                    queries.insert(query, spawn_query(&mut tasks, query, op, ev_tx.clone()));
                }
                Request::Announce {
                    query,
                    topic,
                    key_pair,
                } => {
                    let op = peer.announce_lookup(
                        topic,
                        &key_pair,
                        Vec::new(),
                        AnnounceOptions::default(),
                    );
                    queries.insert(query, spawn_query(&mut tasks, query, op, ev_tx.clone()));
                }
                Request::AnnounceExternal {
                    query,
                    topic,
                    public_key,
                } => {
                    let (op, signs) = peer.announce_external(topic, public_key);
                    let h = tasks.spawn(run_external_query(query, op, signs, ev_tx.clone()));
                    queries.insert(query, h);
                }
                Request::UnannounceExternal {
                    query,
                    topic,
                    public_key,
                } => {
                    let (op, signs) = peer.unannounce_external(topic, public_key);
                    let h = tasks.spawn(run_external_query(query, op, signs, ev_tx.clone()));
                    queries.insert(query, h);
                    unannouncing.insert(query);
                }
                Request::AnnounceSigned {
                    query,
                    sign,
                    signature,
                } => {
                    if let Some(req) = signing.remove(&(query, sign)) {
                        peer.announce_signed(&req, signature);
                    }
                }
                Request::Unannounce {
                    query,
                    topic,
                    key_pair,
                } => {
                    let op = peer.lookup_and_unannounce(topic, &key_pair);
                    queries.insert(query, spawn_query(&mut tasks, query, op, ev_tx.clone()));
                }
                Request::Write { stream, data } => {
                    if let Some(w) = streams.writers.get(&stream) {
                        let _ = w.send(StreamCmd::Write(data));
                    }
                }
                Request::End { stream } => {
                    if let Some(w) = streams.writers.get(&stream) {
                        let _ = w.send(StreamCmd::End);
                    }
                }
                Request::Destroy { stream } => {
                    if streams.tasks.contains_key(&stream) {
                        stats.streams.fetch_sub(1, Ordering::Relaxed);
                    }
                    streams.stop(stream);
                }
            }
        }
        while let Some(f) = session.poll_transmit() {
            buffered.fetch_add(f.len(), Ordering::Relaxed);
            let _ = out_tx.send(WsMessage::Binary(f.into()));
        }
        session.handle_buffered(now(), buffered.load(Ordering::Relaxed));
        paused_tx.send_if_modified(|p| {
            let changed = *p != session.should_pause();
            *p = session.should_pause();
            changed
        });
        if let Some(c) = session.close_reason() {
            ws_close = Some((c.code, c.reason.clone()));
        }
        if ws_close.is_some() {
            break;
        }

        let deadline = session.poll_timeout().map(|t| epoch + t);
        tokio::select! {
            m = source.next() => match m {
                Some(Ok(WsMessage::Binary(b))) => session.handle_frame(now(), &b),
                Some(Ok(WsMessage::Text(_))) => {
                    ws_close = Some((close_code::UNSUPPORTED_DATA, "binary frames only".into()));
                }
                Some(Ok(WsMessage::Close(_))) | None => break,
                Some(Ok(_)) => {} // ping/pong: answered by tungstenite
                Some(Err(WsError::Capacity(e))) => {
                    ws_close = Some((close_code::MESSAGE_TOO_BIG, format!("{e}")));
                }
                Some(Err(WsError::Protocol(e))) => {
                    ws_close = Some((close_code::PROTOCOL_ERROR, format!("{e}")));
                }
                Some(Err(_)) => break,
            },
            Some(ev) = ev_rx.recv() => match ev {
                Ev::Open(stream, Ok(conn)) => {
                    if streams.tasks.contains_key(&stream) {
                        streams.noise.remove(&stream);
                        session.stream_open(stream, conn.handshake_hash());
                        stats.streams.fetch_add(1, Ordering::Relaxed);
                        start_stream(&mut tasks, &mut streams, stream, conn, &ev_tx, &paused_rx);
                    }
                }
                Ev::Noise(stream, NoiseStep::Send(payload)) => session.noise_send(stream, &payload),
                Ev::Sign(query, req) => {
                    if unannouncing.contains(&query) {
                        session.sign_unannounce(query, req.sign, req.token, req.peer_id);
                    } else {
                        session.sign_announce(
                            query,
                            req.sign,
                            req.token,
                            req.peer_id,
                            req.relay_addresses.clone(),
                        );
                    }
                    signing.insert((query, req.sign), req);
                }
                Ev::Noise(stream, NoiseStep::Recv(message)) => {
                    session.noise_receive(stream, message)
                }
                Ev::Open(stream, Err(e)) => {
                    streams.stop(stream);
                    session.stream_closed(stream, Some(&e));
                }
                Ev::ServerStep(server, ServerStep::Noise { handshake, step: NoiseStep::Recv(m) }) => {
                    session.server_noise_receive(server, handshake, m)
                }
                Ev::ServerStep(server, ServerStep::Noise { handshake, step: NoiseStep::Send(p) }) => {
                    session.server_noise_send(server, handshake, &p)
                }
                Ev::ServerStep(server, ServerStep::Sign { sign, token, node_id }) => {
                    session.server_sign_announce(server, sign, token, node_id)
                }
                Ev::ServerStep(_, ServerStep::Listening) => {}
                Ev::Incoming(server, conn) => {
                    let stream = match (conn.handshake_hash(), conn.external_handshake()) {
                        (Some(hash), _) => {
                            session.server_connection(server, conn.remote_public_key(), hash)
                        }
                        (None, Some(h)) => session.server_connection_external(
                            server,
                            h,
                            conn.remote_public_key(),
                        ),
                        (None, None) => None,
                    };
                    if let Some(stream) = stream {
                        stats.streams.fetch_add(1, Ordering::Relaxed);
                        start_stream(&mut tasks, &mut streams, stream, conn, &ev_tx, &paused_rx);
                    }
                }
                Ev::Data(stream, data) => session.stream_data_many(stream, data),
                Ev::End(stream) => session.stream_end(stream),
                Ev::Written(stream, n) => session.stream_written(stream, n),
                Ev::Closed(stream, error) => {
                    if streams.tasks.contains_key(&stream) {
                        stats.streams.fetch_sub(1, Ordering::Relaxed);
                    }
                    streams.stop(stream);
                    session.stream_closed(stream, error.as_deref());
                }
                Ev::Listening(server, addr) => session.server_listening(server, addr),
                Ev::ServerClosed(server) => {
                    servers.remove(&server);
                    server_controls.remove(&server);
                    session.server_closed(server);
                }
                Ev::Result(query, r) => session.query_result(query, &announcers(&r)),
                Ev::Done(query) => {
                    queries.remove(&query);
                    unannouncing.remove(&query);
                    signing.retain(|(q, _), _| *q != query);
                    session.query_done(query);
                }
            },
            _ = drained.notified() => {}
            _ = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                session.handle_buffered(now(), buffered.load(Ordering::Relaxed));
                session.handle_timeout(now());
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }

    // Stop everything the session started, then say why (if the relay closes).
    let open = streams.tasks.len();
    stats.streams.fetch_sub(
        open.min(stats.streams.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
    tasks.abort_all();
    if let Some((code, reason)) = ws_close {
        if code != close_code::NORMAL {
            stats.closed_with_error.fetch_add(1, Ordering::Relaxed);
        }
        let _ = out_tx.send(close_message(code, &reason));
    }
    drop(out_tx);
    // A client that does not read cannot take the close frame: give up after a moment.
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
}

fn spawn_query(
    tasks: &mut JoinSet<()>,
    query: u32,
    mut op: Lookup,
    ev: mpsc::UnboundedSender<Ev>,
) -> tokio::task::AbortHandle {
    tasks.spawn(async move {
        while let Some(r) = op.next().await {
            if ev.send(Ev::Result(query, r)).is_err() {
                return;
            }
        }
        let _ = ev.send(Ev::Done(query));
    })
}

/// A non-custodial announce: its replies, and its records to sign, for the client.
async fn run_external_query(
    query: u32,
    mut op: Lookup,
    mut signs: mpsc::UnboundedReceiver<SignAnnounceRequest>,
    ev: mpsc::UnboundedSender<Ev>,
) {
    loop {
        tokio::select! {
            r = op.next() => match r {
                Some(r) => {
                    if ev.send(Ev::Result(query, r)).is_err() {
                        return;
                    }
                }
                None => break,
            },
            Some(req) = signs.recv() => {
                if ev.send(Ev::Sign(query, req)).is_err() {
                    return;
                }
            }
        }
    }
    let _ = ev.send(Ev::Done(query));
}

fn announcers(r: &LookupResult) -> Announcers {
    Announcers {
        token: r.token.unwrap_or([0; 32]),
        from: Node {
            id: r.from.id.map(|i| i.to_vec()).unwrap_or_default(),
            addr: r.from.addr,
        },
        to: Node {
            id: Vec::new(),
            addr: r.to,
        },
        peers: r
            .peers
            .iter()
            .map(|p| Peer {
                public_key: p.public_key,
                relay_addresses: p.relay_addresses.clone(),
            })
            .collect(),
    }
}

/// A non-custodial connect: the DHT's handshake steps go to the client through the session,
/// its answers come back on `answers`.
async fn connect_external(
    peer: Arc<Dht>,
    stream: u32,
    remote_public_key: [u8; 32],
    mut answers: mpsc::UnboundedReceiver<NoiseAnswer>,
    ev: mpsc::UnboundedSender<Ev>,
) {
    let mut ext = match peer
        .connect_external(remote_public_key, ConnectOptions::default())
        .await
    {
        Ok(e) => e,
        Err(e) => {
            let _ = ev.send(Ev::Open(stream, Err(e.to_string())));
            return;
        }
    };
    loop {
        tokio::select! {
            p = ext.next() => match p {
                ExternalProgress::Step(step) => {
                    if ev.send(Ev::Noise(stream, step)).is_err() {
                        return;
                    }
                }
                ExternalProgress::Done(r) => {
                    let _ = ev.send(Ev::Open(stream, r.map_err(|e| e.to_string())));
                    return;
                }
            },
            Some(a) = answers.recv() => match a {
                NoiseAnswer::Sent(m) => ext.sent(m),
                NoiseAnswer::Received(r) => ext.received(r),
            },
        }
    }
}

fn start_stream(
    tasks: &mut JoinSet<()>,
    streams: &mut Streams,
    stream: u32,
    conn: RawConnection,
    ev: &mpsc::UnboundedSender<Ev>,
    paused: &watch::Receiver<bool>,
) {
    streams.udx.insert(stream, conn.stream_handle());
    if conn.handshake_hash().is_none() {
        // Non-custodial: the bytes are the client's secret-stream; forward them as they are.
        let (udx, socket, guards) = conn.into_bytes();
        let (rd, wr) = tokio::io::split(udx);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_raw(stream, rd, ev.clone(), paused.clone()));
        let reader_abort = reader.abort_handle();
        let writer = tasks.spawn(write_raw(
            stream,
            wr,
            reader,
            cmd_rx,
            ev.clone(),
            (socket, guards),
        ));
        streams.writers.insert(stream, cmd_tx);
        let t = streams.tasks.entry(stream).or_default();
        t.push(reader_abort);
        t.push(writer);
        return;
    }
    let conn: Connection = conn.into_messages();
    let (tx, rx) = conn.split();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let reader = tasks.spawn(read_stream(stream, rx, ev.clone(), paused.clone()));
    let writer = tasks.spawn(write_stream(stream, tx, cmd_rx, ev.clone()));
    streams.writers.insert(stream, cmd_tx);
    let t = streams.tasks.entry(stream).or_default();
    t.push(reader);
    t.push(writer);
}

/// The most bytes of a stream's data that one relay `data` message carries: a custodial
/// stream's messages already received when the relay reads one go together, up to this size
/// (more once the first message alone is larger; see `read_stream`); a non-custodial stream's
/// bytes already waiting, up to this size (see `read_raw`).
const DATA_BATCH_BYTES: usize = 256 * 1024;

async fn read_stream(
    stream: u32,
    mut rx: ConnectionReceiver,
    ev: mpsc::UnboundedSender<Ev>,
    mut paused: watch::Receiver<bool>,
) {
    loop {
        // Backpressure: while the client is behind, leave the peer's data in UDX.
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        match rx.recv().await {
            Some(Ok(m)) => {
                // The messages already received go with it, in one relay `data` message (one
                // WebSocket message) of up to DATA_BATCH_BYTES: the client then handles one
                // message per batch, not per block.
                let mut total = m.len();
                let mut batch = vec![m];
                let mut failed = None;
                while total < DATA_BATCH_BYTES {
                    match rx.try_recv() {
                        Some(Ok(m)) => {
                            total += m.len();
                            batch.push(m);
                        }
                        Some(Err(e)) => {
                            failed = Some(e);
                            break;
                        }
                        None => break,
                    }
                }
                if ev.send(Ev::Data(stream, batch)).is_err() {
                    return;
                }
                if let Some(e) = failed {
                    let _ = ev.send(Ev::Closed(stream, Some(e.to_string())));
                    return;
                }
            }
            Some(Err(e)) => {
                let _ = ev.send(Ev::Closed(stream, Some(e.to_string())));
                return;
            }
            None => {
                let _ = ev.send(Ev::End(stream));
                return;
            }
        }
    }
}

async fn write_stream(
    stream: u32,
    tx: ConnectionSender,
    mut cmds: mpsc::UnboundedReceiver<StreamCmd>,
    ev: mpsc::UnboundedSender<Ev>,
) {
    while let Some(c) = cmds.recv().await {
        match c {
            StreamCmd::Write(data) => {
                let n = data.len();
                if let Err(e) = tx.send(data).await {
                    let _ = ev.send(Ev::Closed(stream, Some(e.to_string())));
                    return;
                }
                let _ = ev.send(Ev::Written(stream, n));
            }
            StreamCmd::End => {
                let _ = tx.end().await;
                // Both sides ended: the stream is over once the peer acknowledged.
                tx.finished().await;
                let _ = ev.send(Ev::Closed(stream, None));
                return;
            }
        }
    }
}

/// The read buffer of a non-custodial stream (what it holds while idle).
const RAW_READ_BYTES: usize = 64 * 1024;

/// Reads a non-custodial stream's bytes (ciphertext) for the client: each read waits for
/// bytes, then takes the bytes already waiting in UDX with them (reads that complete at once),
/// up to DATA_BATCH_BYTES, into one relay `data` message (one WebSocket message). The stream
/// keeps only its RAW_READ_BYTES buffer between reads.
async fn read_raw<R: AsyncRead + Unpin>(
    stream: u32,
    mut rd: R,
    ev: mpsc::UnboundedSender<Ev>,
    mut paused: watch::Receiver<bool>,
) -> R {
    let mut buf = vec![0u8; RAW_READ_BYTES];
    loop {
        // Backpressure: while the client is behind, leave the peer's bytes in UDX.
        if paused.wait_for(|p| !*p).await.is_err() {
            return rd;
        }
        match rd.read(&mut buf).await {
            Ok(0) => {
                let _ = ev.send(Ev::End(stream));
                return rd;
            }
            Ok(n) => {
                let mut data = buf[..n].to_vec();
                // Some(None): the stream ended; Some(Some(e)): it failed (after this data).
                let mut over = None;
                while data.len() < DATA_BATCH_BYTES {
                    let want = (DATA_BATCH_BYTES - data.len()).min(buf.len());
                    match rd.read(&mut buf[..want]).now_or_never() {
                        Some(Ok(0)) => {
                            over = Some(None);
                            break;
                        }
                        Some(Ok(n)) => data.extend_from_slice(&buf[..n]),
                        Some(Err(e)) => {
                            over = Some(Some(e));
                            break;
                        }
                        // Nothing more waiting: send what there is.
                        None => break,
                    }
                }
                if ev.send(Ev::Data(stream, vec![data])).is_err() {
                    return rd;
                }
                match over {
                    None => {}
                    Some(None) => {
                        let _ = ev.send(Ev::End(stream));
                        return rd;
                    }
                    Some(Some(e)) => {
                        let _ = ev.send(Ev::Closed(stream, Some(e.to_string())));
                        return rd;
                    }
                }
            }
            Err(e) => {
                let _ = ev.send(Ev::Closed(stream, Some(e.to_string())));
                return rd;
            }
        }
    }
}

/// Writes the client's bytes (its secret-stream) to a non-custodial stream; after the
/// client's end and the peer's, waits until the peer acknowledged everything (bounded).
async fn write_raw(
    stream: u32,
    mut wr: WriteHalf<UdxStream>,
    reader: tokio::task::JoinHandle<ReadHalf<UdxStream>>,
    mut cmds: mpsc::UnboundedReceiver<StreamCmd>,
    ev: mpsc::UnboundedSender<Ev>,
    // Held while the stream runs: its socket and the connection's guards.
    _keep: impl Send,
) {
    while let Some(c) = cmds.recv().await {
        match c {
            StreamCmd::Write(data) => {
                let n = data.len();
                if let Err(e) = wr.write_all(&data).await {
                    let _ = ev.send(Ev::Closed(stream, Some(e.to_string())));
                    return;
                }
                let _ = ev.send(Ev::Written(stream, n));
            }
            StreamCmd::End => {
                let _ = wr.shutdown().await;
                if let Ok(rd) = reader.await {
                    let mut udx = rd.unsplit(wr);
                    let _ = tokio::time::timeout(Duration::from_secs(30), udx.closed()).await;
                }
                let _ = ev.send(Ev::Closed(stream, None));
                return;
            }
        }
    }
}

#[cfg(test)]
#[path = "dht_relay_tests.rs"]
mod tests;
