//! A sans-IO UDX socket: a table of streams keyed by their local id, each optionally bound to
//! the remote address it sends to.
//!
//! Incoming datagrams are routed by the receiver id in bytes 4-7; datagrams that are not UDX
//! (shorter than 20 bytes, wrong magic or version) are handed back to the caller, which is how
//! the DHT shares the socket. A datagram for an id the socket does not hold goes to the owner's
//! *firewall* ([`Incoming::Firewall`]): libudx asks its `on_firewall` hook before the first
//! packet reaches a stream that is not connected yet (that is how a hyperdht server learns the
//! path a client's packets take). The owner connects a stream with [`Socket::connect`] and feeds
//! the datagram again, or drops it. As in libudx, a connected stream takes its packets from any
//! address; an owner wanting more compares the sender with [`Socket::remote_addr`].
//!
//! A stream can also *relay* ([`Socket::relay_to`], libudx `udx_stream_relay_to`): every
//! datagram for it is forwarded, with bytes 4-7 rewritten to the destination stream's remote
//! id, to the destination's remote. That is the data plane of a blind relay, which pairs two
//! streams this way in both directions.

use core::net::SocketAddr;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::packet::{self, DecodeError, Flags};
use super::stream::{Event, Stream, UsageError};

/// What became of an incoming datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Delivered to the stream with this local id.
    Stream(u32),
    /// Addressed to the relaying stream `id` and queued for [`Socket::poll_transmit`] on
    /// behalf of stream `to` ([`Socket::relay_to`]).
    Relayed {
        /// The relaying stream.
        id: u32,
        /// The destination stream it was forwarded through.
        to: u32,
    },
    /// UDX for a stream id we do not have: dropped ([`Socket::handle_datagram`]).
    UnknownStream(u32),
    /// UDX from `from` for a stream id we do not have ([`Socket::handle_datagram_from`]): not
    /// processed. The owner's firewall decides: connect a stream with this local id (usually to
    /// `from`) and feed the datagram again, or drop it.
    Firewall {
        /// The local stream id the datagram is addressed to.
        id: u32,
        /// Where it came from.
        from: SocketAddr,
    },
    /// UDX-looking bytes that do not decode (for a known stream): dropped.
    Malformed(DecodeError),
    /// Not UDX: the caller's to handle (DHT messages, holepunch probes).
    NotUdx,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The local id of the sending stream.
    pub id: u32,
    /// The stream's remote address; `None` for streams added with [`Socket::insert`], whose
    /// addresses the owner keeps.
    pub to: Option<SocketAddr>,
    /// The datagram.
    pub bytes: Vec<u8>,
}

/// Streams sharing one UDP socket, each with one remote.
#[derive(Debug, Default)]
pub struct Socket {
    streams: BTreeMap<u32, Stream>,
    remotes: BTreeMap<u32, SocketAddr>,
    /// Relaying stream → destination stream.
    relays: BTreeMap<u32, u32>,
    /// Forwarded datagrams waiting for [`Socket::poll_transmit`].
    forwarded: VecDeque<Transmit>,
    /// The latest time seen.
    now: Duration,
    /// Round-robin cursor for fair transmission.
    cursor: u32,
}

impl Socket {
    /// An empty socket.
    pub fn new() -> Self {
        Socket::default()
    }

    /// Adds a stream under its local id, returning any stream it replaces. Its remote address
    /// is the owner's business ([`Transmit::to`] is `None`).
    pub fn insert(&mut self, stream: Stream) -> Option<Stream> {
        self.remotes.remove(&stream.local_id());
        self.streams.insert(stream.local_id(), stream)
    }

    /// Adds a stream bound to the remote address it sends to (libudx `udx_stream_connect`),
    /// returning any stream it replaces.
    pub fn connect(&mut self, stream: Stream, remote: SocketAddr) -> Option<Stream> {
        self.remotes.insert(stream.local_id(), remote);
        self.streams.insert(stream.local_id(), stream)
    }

    /// The remote address a stream sends to, if the socket knows it.
    pub fn remote_addr(&self, id: u32) -> Option<SocketAddr> {
        self.remotes.get(&id).copied()
    }

    /// Moves a stream to another remote stream id and address mid-flight (see
    /// [`Stream::change_remote`]): every datagram it sends from now on goes to `remote`.
    /// Returns whether the change completed at once; [`Socket::poll_remote_changed`] reports
    /// it either way.
    pub fn change_remote(
        &mut self,
        id: u32,
        remote_id: u32,
        remote: SocketAddr,
    ) -> Result<bool, UsageError> {
        let stream = self.streams.get_mut(&id).ok_or(UsageError::Closed)?;
        let done = stream.change_remote(remote_id)?;
        self.remotes.insert(id, remote);
        Ok(done)
    }

    /// Makes stream `id` relay to stream `to`: every datagram that arrives for `id` from now on
    /// is forwarded with bytes 4-7 rewritten to `to`'s remote id, to `to`'s remote address;
    /// `id`'s own engine no longer sees it. A forwarded DESTROY also resets `id`, and when a
    /// stream goes away every stream relaying to it closes without a DESTROY of its own
    /// (libudx `relay_packet`, `close_stream`).
    pub fn relay_to(&mut self, id: u32, to: u32) -> Result<(), UsageError> {
        let live = |s: Option<&Stream>| s.is_some_and(|s| !s.is_finished() && !s.is_closed());
        if !live(self.streams.get(&id)) || !live(self.streams.get(&to)) {
            return Err(UsageError::Closed);
        }
        if self.relays.contains_key(&id) {
            return Err(UsageError::AlreadyRelaying);
        }
        self.relays.insert(id, to);
        Ok(())
    }

    /// The next stream whose remote change completed (everything sent to the old remote is
    /// acknowledged).
    pub fn poll_remote_changed(&mut self) -> Option<u32> {
        self.streams
            .iter_mut()
            .find_map(|(&id, s)| s.poll_remote_changed().then_some(id))
    }

    /// The stream with this local id.
    pub fn stream(&self, id: u32) -> Option<&Stream> {
        self.streams.get(&id)
    }

    /// The stream with this local id, mutably.
    pub fn stream_mut(&mut self, id: u32) -> Option<&mut Stream> {
        self.streams.get_mut(&id)
    }

    /// Removes a stream; streams relaying to it close.
    pub fn remove(&mut self, id: u32) -> Option<Stream> {
        self.forget(id);
        self.streams.remove(&id)
    }

    /// Drops a stream's address and relay entries; streams relaying to it close quietly.
    fn forget(&mut self, id: u32) {
        self.remotes.remove(&id);
        self.unrelay(id);
    }

    /// Ends a stream's relaying; streams relaying to it close quietly.
    fn unrelay(&mut self, id: u32) {
        self.relays.remove(&id);
        let relaying: Vec<u32> = self
            .relays
            .iter()
            .filter(|&(_, &to)| to == id)
            .map(|(&from, _)| from)
            .collect();
        for from in relaying {
            self.relays.remove(&from);
            if let Some(s) = self.streams.get_mut(&from) {
                s.close_quietly();
            }
        }
    }

    /// Local ids of the streams present.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.streams.keys().copied()
    }

    /// Removes every finished stream (see [`Stream::is_finished`]) and returns their ids.
    pub fn remove_finished(&mut self) -> Vec<u32> {
        let done: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| s.is_finished())
            .map(|(&id, _)| id)
            .collect();
        for id in &done {
            self.streams.remove(id);
            self.forget(*id);
        }
        done
    }

    /// Routes one incoming datagram.
    pub fn handle_datagram(&mut self, now: Duration, bytes: &[u8]) -> Incoming {
        self.now = self.now.max(now);
        let Some(id) = packet::stream_id(bytes) else {
            return Incoming::NotUdx;
        };
        if let Some(&to) = self.relays.get(&id) {
            return self.relay(now, id, to, bytes);
        }
        match self.streams.get_mut(&id) {
            None => Incoming::UnknownStream(id),
            Some(stream) => match stream.handle_datagram(now, bytes) {
                Ok(()) => Incoming::Stream(id),
                Err(e) => Incoming::Malformed(e),
            },
        }
    }

    fn relay(&mut self, now: Duration, id: u32, to: u32, bytes: &[u8]) -> Incoming {
        let Some(dest) = self.streams.get(&to) else {
            return Incoming::UnknownStream(id);
        };
        let mut forwarded = bytes.to_vec();
        forwarded[4..8].copy_from_slice(&dest.remote_id().to_le_bytes());
        self.forwarded.push_back(Transmit {
            id: to,
            to: self.remotes.get(&to).copied(),
            bytes: forwarded,
        });
        if Flags(bytes[2]).contains(Flags::DESTROY) {
            // The relaying stream is reset too, and with it whatever relays to it.
            if let Some(s) = self.streams.get_mut(&id) {
                let _ = s.handle_datagram(now, bytes);
            }
            self.unrelay(id);
        }
        Incoming::Relayed { id, to }
    }

    /// Routes one incoming datagram that came from `from`; a datagram for an unknown stream id
    /// goes to the owner's firewall ([`Incoming::Firewall`]).
    pub fn handle_datagram_from(
        &mut self,
        now: Duration,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Incoming {
        match self.handle_datagram(now, bytes) {
            Incoming::UnknownStream(id) => Incoming::Firewall { id, from },
            other => other,
        }
    }

    /// Runs every stream's due timers.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.now = self.now.max(now);
        for stream in self.streams.values_mut() {
            stream.handle_timeout(now);
        }
    }

    /// The next datagram any stream wants to send, with the sending stream's local id; streams
    /// take turns.
    pub fn poll_transmit(&mut self, now: Duration) -> Option<(u32, Vec<u8>)> {
        self.poll_transmit_to(now).map(|t| (t.id, t.bytes))
    }

    /// [`Socket::poll_transmit`] with the destination address of streams added with
    /// [`Socket::connect`].
    pub fn poll_transmit_to(&mut self, now: Duration) -> Option<Transmit> {
        let mut bytes = Vec::new();
        let (id, to) = self.poll_transmit_into(now, &mut bytes)?;
        Some(Transmit { id, to, bytes })
    }

    /// [`Socket::poll_transmit_to`] appending the datagram to `out` (where the owner gathers a
    /// batch for one send; a stream's DATA payload is copied straight from its send buffer).
    /// Returns the sending stream's local id and its remote address, if the socket knows it.
    pub fn poll_transmit_into(
        &mut self,
        now: Duration,
        out: &mut Vec<u8>,
    ) -> Option<(u32, Option<SocketAddr>)> {
        self.now = self.now.max(now);
        if let Some(t) = self.forwarded.pop_front() {
            out.extend_from_slice(&t.bytes);
            return Some((t.id, t.to));
        }
        let cursor = self.cursor;
        let found = self
            .streams
            .range_mut(cursor..)
            .find_map(|(&id, s)| s.poll_transmit_into(now, out).then_some(id));
        let found = found.or_else(|| {
            self.streams
                .range_mut(..cursor)
                .find_map(|(&id, s)| s.poll_transmit_into(now, out).then_some(id))
        });
        let id = found?;
        self.cursor = id.wrapping_add(1);
        Some((id, self.remotes.get(&id).copied()))
    }

    /// The next event of any stream, with its local id.
    pub fn poll_event(&mut self) -> Option<(u32, Event)> {
        self.streams
            .iter_mut()
            .find_map(|(&id, s)| s.poll_event().map(|e| (id, e)))
    }

    /// The earliest deadline over all streams (the latest time seen while forwarded datagrams
    /// wait).
    pub fn poll_timeout(&self) -> Option<Duration> {
        if !self.forwarded.is_empty() {
            return Some(self.now);
        }
        self.streams.values().filter_map(|s| s.poll_timeout()).min()
    }
}
