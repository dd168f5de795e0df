//! UDX over a tokio UDP socket: a driver task runs the sans-IO [`hyperpunch_core::udx::Socket`]
//! (routing datagrams by stream id, sending what the engines emit, sleeping until their
//! deadlines) and hands each stream's events to its [`UdxStream`] handle.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use hyperpunch::udx::UdxSocket;
//! let socket = UdxSocket::bind("127.0.0.1:0".parse().unwrap()).await?;
//! let mut stream = socket.connect(1, 2, "127.0.0.1:4000".parse().unwrap())?;
//! stream.write(b"hello".to_vec()).await?;
//! stream.end()?;
//! while let Some(event) = stream.next_event().await {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyperpunch_core::udx::{Config, Event, Socket, Stream, UsageError};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub use hyperpunch_core::udx::{Event as UdxEvent, StreamError};

/// Writers wait while a stream holds more than this many unsent bytes.
const WRITE_HIGH_WATER: usize = 1 << 20;

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
}

/// A bound UDP socket carrying UDX streams. Dropping it (and every stream handle) stops the
/// driver once its streams have finished.
pub struct UdxSocket {
    commands: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
}

/// One stream on a [`UdxSocket`].
pub struct UdxStream {
    id: u32,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the UDX socket driver stopped")
}

impl UdxSocket {
    /// Binds a UDP socket and starts its driver task on the current tokio runtime.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let udp = UdpSocket::bind(addr).await?;
        let local_addr = udp.local_addr()?;
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(drive(udp, rx));
        Ok(UdxSocket {
            commands,
            local_addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Opens a stream with our `local_id` to the peer's `remote_id` at `remote`.
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
        let (events_tx, events) = mpsc::unbounded_channel();
        self.commands
            .send(Command::Connect {
                local_id,
                remote_id,
                config: Box::new(config),
                remote,
                events: events_tx,
            })
            .map_err(|_| gone())?;
        Ok(UdxStream {
            id: local_id,
            commands: self.commands.clone(),
            events,
        })
    }
}

impl UdxStream {
    /// Our stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Queues bytes; waits while more than 1 MiB is waiting to be sent.
    pub async fn write(&self, bytes: Vec<u8>) -> io::Result<()> {
        let (done, rx) = oneshot::channel();
        self.commands
            .send(Command::Write {
                id: self.id,
                bytes,
                done,
            })
            .map_err(|_| gone())?;
        rx.await
            .map_err(|_| gone())?
            .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))
    }

    /// Ends the write side.
    pub fn end(&self) -> io::Result<()> {
        self.commands
            .send(Command::End(self.id))
            .map_err(|_| gone())
    }

    /// Sends an unreliable MESSAGE datagram.
    pub fn send_message(&self, bytes: Vec<u8>) -> io::Result<()> {
        self.commands
            .send(Command::Message(self.id, bytes))
            .map_err(|_| gone())
    }

    /// Destroys the stream (the peer sees a reset).
    pub fn destroy(&self) -> io::Result<()> {
        self.commands
            .send(Command::Destroy(self.id))
            .map_err(|_| gone())
    }

    /// The next event; `None` once the stream finished and its events were drained.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

struct Driver {
    udp: UdpSocket,
    engine: Socket,
    epoch: Instant,
    remotes: HashMap<u32, SocketAddr>,
    events: HashMap<u32, mpsc::UnboundedSender<Event>>,
    writers: Vec<(u32, oneshot::Sender<Result<(), UsageError>>)>,
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
                self.remotes.insert(local_id, remote);
                self.events.insert(local_id, events);
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
        }
    }

    /// Sends everything due, forwards events, releases writers; repeats until quiet.
    async fn flush(&mut self) -> io::Result<()> {
        loop {
            let mut progressed = false;
            while let Some((id, event)) = self.engine.poll_event() {
                progressed = true;
                if let Some(tx) = self.events.get(&id) {
                    let _ = tx.send(event);
                }
            }
            let now = self.now();
            while let Some((id, bytes)) = self.engine.poll_transmit(now) {
                progressed = true;
                if let Some(addr) = self.remotes.get(&id) {
                    // A full or failing socket is like a lost datagram: UDX recovers.
                    let _ = self.udp.send_to(&bytes, addr).await;
                }
            }
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
                // Only now: every event of a finished stream has been forwarded.
                for id in self.engine.remove_finished() {
                    self.remotes.remove(&id);
                    self.events.remove(&id);
                }
                return Ok(());
            }
        }
    }
}

async fn drive(udp: UdpSocket, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut d = Driver {
        udp,
        engine: Socket::new(),
        epoch: Instant::now(),
        remotes: HashMap::new(),
        events: HashMap::new(),
        writers: Vec::new(),
    };
    let mut buf = vec![0u8; 65536];
    let mut open = true;
    loop {
        if d.flush().await.is_err() {
            break;
        }
        if !open && d.engine.ids().next().is_none() {
            break;
        }
        let deadline = d.engine.poll_timeout().map(|t| d.epoch + t);
        tokio::select! {
            received = d.udp.recv_from(&mut buf) => {
                if let Ok((n, from)) = received {
                    let now = d.now();
                    // Only the stream's bound peer may feed it (the firewall hook's default).
                    let allowed = hyperpunch_core::udx::packet::stream_id(&buf[..n])
                        .and_then(|id| d.remotes.get(&id))
                        .is_some_and(|addr| *addr == from);
                    if allowed {
                        d.engine.handle_datagram(now, &buf[..n]);
                    }
                }
            }
            command = commands.recv(), if open => match command {
                Some(c) => d.apply(c),
                None => open = false,
            },
            _ = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = d.now();
                d.engine.handle_timeout(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, tag: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(13).wrapping_add(tag))
            .collect()
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

    #[tokio::test]
    async fn two_tokio_sockets_exchange_and_close() {
        let a = UdxSocket::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let b = UdxSocket::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
        let mut sb = b.connect(2, 1, a.local_addr()).unwrap();
        let (big, small) = (pattern(3 << 20, 1), pattern(100_000, 7));
        let run = async {
            sa.send_message(b"ping".to_vec()).unwrap();
            for chunk in big.chunks(256 * 1024) {
                sa.write(chunk.to_vec()).await.unwrap();
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
                sb.write(small.clone()).await.unwrap();
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
    async fn destroy_resets_the_remote() {
        let a = UdxSocket::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let b = UdxSocket::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut sa = a.connect(5, 6, b.local_addr()).unwrap();
        let mut sb = b.connect(6, 5, a.local_addr()).unwrap();
        sa.write(b"x".to_vec()).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), sb.next_event()).await;
        assert_eq!(first.unwrap(), Some(Event::Data(b"x".to_vec())));
        sa.destroy().unwrap();
        assert_eq!(sa.next_event().await, Some(Event::Closed));
        let reset = tokio::time::timeout(Duration::from_secs(10), sb.next_event()).await;
        assert_eq!(reset.unwrap(), Some(Event::Error(StreamError::Reset)));
    }
}
