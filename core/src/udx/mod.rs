//! UDX, the reliable, congestion-controlled stream transport over UDP that Holepunch uses
//! (libudx / udx-native), as sans-IO engines. Datagrams in, datagrams out, timers as outputs;
//! the clock is an argument.
//!
//! - [`packet`] — the wire codec: the 20-byte header, the DATA / END / SACK / MESSAGE / DESTROY /
//!   HEARTBEAT type bits, SACK blocks and `data_offset` padding.
//! - [`Stream`] — one stream: one seq per DATA/END packet, cumulative acks plus SACK ranges,
//!   RACK-TLP loss detection and fast retransmit, RTO with exponential backoff (a timeout budget
//!   ends the stream with [`StreamError::Timeout`]), BBR (v1 style) congestion control with
//!   pacing deadlines, receive-window flow control with zero-window probes, END half-close,
//!   DESTROY, keepalive HEARTBEATs, unordered MESSAGE datagrams, the path-MTU search (1200-byte
//!   base, padded DATA probes in 32-byte steps up to 1500, fallback after 3 lost probes) and
//!   changing the remote mid-flight ([`Stream::change_remote`], for relayed → direct upgrades).
//! - [`Socket`] — routes datagrams to streams by the id in bytes 4-7, keeps each stream's
//!   remote address (following a remote change), hands datagrams for unknown ids to the owner's
//!   firewall ([`Incoming::Firewall`]), relays between paired streams ([`Socket::relay_to`], a
//!   blind relay's data plane) and gives the rest (DHT traffic) back to the caller.
//!
//! The OS link-MTU lookup libudx does on connect is the owner's: it passes the result as
//! [`Config::mtu_max`].
//!
//! Time is a [`core::time::Duration`] since an epoch the caller chooses; nothing here reads a
//! clock, does I/O or draws randomness.

pub mod bbr;
pub mod packet;
pub mod socket;
pub mod stream;

pub use bbr::BbrState;
pub use socket::{Incoming, Socket, Transmit};
pub use stream::{Config, Event, MtuState, Stream, StreamError, UsageError};

#[cfg(test)]
mod tests;
