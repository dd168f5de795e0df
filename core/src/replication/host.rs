//! [`ReplicationHost`]: what a transport drives, so that one driver serves a bare
//! [`ReplicationHub`] and a [`Corestore`](crate::corestore::Corestore) (which owns a hub and
//! answers the remote's opens of cores it has in storage) alike.
//!
//! The methods are the hub's: streams come and go, decrypted frames go in, frames to encrypt
//! and events come out, timers are polled and fired. A host may do more in them (a corestore
//! opens stored cores the remote asks for while handling frames).

use std::future::Future;

use crate::protomux::OutFrame;
use crate::storage::{MaybeSend, Storage};

use super::hub::{HubEvent, ReplicationHub, StreamId};
use super::replicator::ReplicationError;

/// Something a transport drives like a [`ReplicationHub`]; see the [module docs](self).
pub trait ReplicationHost: MaybeSend {
    /// A connection's secret-stream handshake finished ([`ReplicationHub::add_stream`]).
    fn add_stream(
        &mut self,
        is_initiator: bool,
        handshake_hash: [u8; 64],
    ) -> Result<StreamId, ReplicationError>;

    /// The connection ended ([`ReplicationHub::remove_stream`]).
    fn remove_stream(
        &mut self,
        now: u64,
        stream: StreamId,
    ) -> impl Future<Output = Result<(), ReplicationError>> + MaybeSend;

    /// Whether the stream is live ([`ReplicationHub::has_stream`]).
    fn has_stream(&self, stream: StreamId) -> bool;

    /// Decrypted frames from `stream`, in order ([`ReplicationHub::handle_frames`]).
    fn handle_frames(
        &mut self,
        now: u64,
        stream: StreamId,
        frames: &[Vec<u8>],
    ) -> impl Future<Output = Result<(), ReplicationError>> + MaybeSend;

    /// The transport's unwritten bytes of `stream` ([`ReplicationHub::set_backlog`]).
    fn set_backlog(
        &mut self,
        now: u64,
        stream: StreamId,
        bytes: usize,
    ) -> impl Future<Output = Result<(), ReplicationError>> + MaybeSend;

    /// Time passed ([`ReplicationHub::handle_timeout`]).
    fn handle_timeout(
        &mut self,
        now: u64,
    ) -> impl Future<Output = Result<(), ReplicationError>> + MaybeSend;

    /// The next deadline ([`ReplicationHub::poll_timeout`]).
    fn poll_timeout(&self) -> Option<u64>;

    /// Move queued messages out to the streams ([`ReplicationHub::flush`]).
    fn flush(&mut self);

    /// Next frame to encrypt and write ([`ReplicationHub::poll_transmit`]).
    fn poll_transmit(&mut self) -> Option<(StreamId, Vec<u8>)>;

    /// Next frame to encrypt and write, with its large blocks apart
    /// ([`ReplicationHub::poll_transmit_frame`]).
    fn poll_transmit_frame(&mut self) -> Option<(StreamId, OutFrame)> {
        self.poll_transmit().map(|(sid, f)| (sid, f.into()))
    }

    /// Next event ([`ReplicationHub::poll_event`]).
    fn poll_event(&mut self) -> Option<HubEvent>;

    /// Whether something the owner may wait for changed since the last call without an event
    /// to show for it (a [`Corestore`](crate::corestore::Corestore) opened a core its watchers
    /// are told of, [`Corestore::watch`](crate::corestore::Corestore::watch)); a transport
    /// wakes its waiters then as it does for events. A bare hub: never.
    fn take_changed(&mut self) -> bool {
        false
    }
}

impl<S: Storage> ReplicationHost for ReplicationHub<S> {
    fn add_stream(
        &mut self,
        is_initiator: bool,
        handshake_hash: [u8; 64],
    ) -> Result<StreamId, ReplicationError> {
        ReplicationHub::add_stream(self, is_initiator, handshake_hash)
    }

    fn remove_stream(
        &mut self,
        now: u64,
        stream: StreamId,
    ) -> impl Future<Output = Result<(), ReplicationError>> + MaybeSend {
        ReplicationHub::remove_stream(self, now, stream)
    }

    fn has_stream(&self, stream: StreamId) -> bool {
        ReplicationHub::has_stream(self, stream)
    }

    fn handle_frames(
        &mut self,
        now: u64,
        stream: StreamId,
        frames: &[Vec<u8>],
    ) -> impl Future<Output = Result<(), ReplicationError>> + MaybeSend {
        ReplicationHub::handle_frames(self, now, stream, frames.iter())
    }

    fn set_backlog(
        &mut self,
        now: u64,
        stream: StreamId,
        bytes: usize,
    ) -> impl Future<Output = Result<(), ReplicationError>> + MaybeSend {
        ReplicationHub::set_backlog(self, now, stream, bytes)
    }

    fn handle_timeout(
        &mut self,
        now: u64,
    ) -> impl Future<Output = Result<(), ReplicationError>> + MaybeSend {
        ReplicationHub::handle_timeout(self, now)
    }

    fn poll_timeout(&self) -> Option<u64> {
        ReplicationHub::poll_timeout(self)
    }

    fn flush(&mut self) {
        ReplicationHub::flush(self)
    }

    fn poll_transmit(&mut self) -> Option<(StreamId, Vec<u8>)> {
        ReplicationHub::poll_transmit(self)
    }

    fn poll_transmit_frame(&mut self) -> Option<(StreamId, OutFrame)> {
        ReplicationHub::poll_transmit_frame(self)
    }

    fn poll_event(&mut self) -> Option<HubEvent> {
        ReplicationHub::poll_event(self)
    }
}
