//! hypercore replication (JS `lib/replicator.js`) as sans-IO engines.
//!
//! - [`Replicator`]: one core shared with many peers. Input is decoded wire [`Message`]s per peer
//!   ([`Replicator::handle_message`], async because it awaits the core's storage), output is
//!   `(peer, message)` pairs from [`Replicator::poll_transmit`], [`Event`]s from
//!   [`Replicator::poll_event`] and a deadline from [`Replicator::poll_timeout`] (request timeouts,
//!   invalid-request backoff) to feed back with [`Replicator::handle_timeout`].
//! - [`ReplicationHub`]: the stream-level glue. It owns the cores' replicators and one
//!   [`Protomux`](crate::protomux::Protomux) per stream, opens the `hypercore/alpha` channel (id =
//!   discovery key, handshake = `{seeks, capability}`) for every core on every stream, checks the
//!   remote capability, and maps channels to replicator peers: a transport only moves frames
//!   (secret-stream plaintext messages) in and out.
//! - [`ReplicationHost`]: what a transport drives, a hub
//!   or a [`Corestore`](crate::corestore::Corestore) that owns one.
//! - [`RemoteBitfield`]: what one remote says it has;
//!   [`RemoteWants`]: what it says it wants.
//!
//! Time is milliseconds from any origin the caller picks; nothing here reads a clock.
//!
//! [`Message`]: crate::hypercore::messages::Message

pub mod host;
pub mod hub;
pub mod remote_bitfield;
pub mod replicator;
#[cfg(test)]
mod tests;

pub use host::ReplicationHost;
pub use hub::{
    backlog_report_due, HubEvent, ReplicationHub, StreamId, BACKLOG_REPORT_STEP, HIGH_WATER,
    LOW_WATER, PROTOCOL, PROTOCOL_ALIAS,
};
pub use remote_bitfield::{RemoteBitfield, RemoteWants};
pub use replicator::{
    DownloadId, Event, Options, PeerId, PeerInfo, ReplicationError, Replicator, SeekId, TreeHashId,
    MAX_DEFERRED, MAX_INFLIGHT, MAX_INVALID_REQUESTS, PUSH_CATCH_UP,
};
