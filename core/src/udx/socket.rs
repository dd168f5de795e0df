//! A sans-IO UDX socket: a table of streams keyed by their local id.
//!
//! Incoming datagrams are routed by the receiver id in bytes 4-7; datagrams that are not UDX
//! (shorter than 20 bytes, wrong magic or version) are handed back to the caller, which is how
//! the DHT shares the socket, and datagrams for unknown ids are ignored, as libudx does.

use std::collections::BTreeMap;
use std::time::Duration;

use super::packet::{self, DecodeError};
use super::stream::{Event, Stream};

/// What became of an incoming datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Delivered to the stream with this local id.
    Stream(u32),
    /// UDX for a stream id we do not have: dropped.
    UnknownStream(u32),
    /// UDX-looking bytes that do not decode (for a known stream): dropped.
    Malformed(DecodeError),
    /// Not UDX: the caller's to handle (DHT messages, holepunch probes).
    NotUdx,
}

/// Streams sharing one UDP socket (and one remote each; addresses are the driver's business).
#[derive(Debug, Default)]
pub struct Socket {
    streams: BTreeMap<u32, Stream>,
    /// Round-robin cursor for fair transmission.
    cursor: u32,
}

impl Socket {
    /// An empty socket.
    pub fn new() -> Self {
        Socket::default()
    }

    /// Adds a stream under its local id, returning any stream it replaces.
    pub fn insert(&mut self, stream: Stream) -> Option<Stream> {
        self.streams.insert(stream.local_id(), stream)
    }

    /// The stream with this local id.
    pub fn stream(&self, id: u32) -> Option<&Stream> {
        self.streams.get(&id)
    }

    /// The stream with this local id, mutably.
    pub fn stream_mut(&mut self, id: u32) -> Option<&mut Stream> {
        self.streams.get_mut(&id)
    }

    /// Removes a stream.
    pub fn remove(&mut self, id: u32) -> Option<Stream> {
        self.streams.remove(&id)
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
        }
        done
    }

    /// Routes one incoming datagram.
    pub fn handle_datagram(&mut self, now: Duration, bytes: &[u8]) -> Incoming {
        let Some(id) = packet::stream_id(bytes) else {
            return Incoming::NotUdx;
        };
        match self.streams.get_mut(&id) {
            None => Incoming::UnknownStream(id),
            Some(stream) => match stream.handle_datagram(now, bytes) {
                Ok(()) => Incoming::Stream(id),
                Err(e) => Incoming::Malformed(e),
            },
        }
    }

    /// Runs every stream's due timers.
    pub fn handle_timeout(&mut self, now: Duration) {
        for stream in self.streams.values_mut() {
            stream.handle_timeout(now);
        }
    }

    /// The next datagram any stream wants to send, with the sending stream's local id; streams
    /// take turns.
    pub fn poll_transmit(&mut self, now: Duration) -> Option<(u32, Vec<u8>)> {
        let ids: Vec<u32> = self
            .streams
            .range(self.cursor..)
            .chain(self.streams.range(..self.cursor))
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            if let Some(bytes) = self.streams.get_mut(&id).and_then(|s| s.poll_transmit(now)) {
                self.cursor = id.wrapping_add(1);
                return Some((id, bytes));
            }
        }
        None
    }

    /// The next event of any stream, with its local id.
    pub fn poll_event(&mut self) -> Option<(u32, Event)> {
        self.streams
            .iter_mut()
            .find_map(|(&id, s)| s.poll_event().map(|e| (id, e)))
    }

    /// The earliest deadline over all streams.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.streams.values().filter_map(|s| s.poll_timeout()).min()
    }
}
