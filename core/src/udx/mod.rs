//! UDX, the reliable, congestion-controlled stream transport over UDP that Holepunch uses
//! (libudx / udx-native), as sans-IO engines.
//!
//! - [`packet`] — the wire codec (20-byte header, SACK blocks, `data_offset` padding).
//! - [`Stream`] — one stream: reliability (cumulative acks, SACK, RACK-TLP, RTO backoff), BBR
//!   congestion control with pacing deadlines, flow control, END half-close, DESTROY,
//!   heartbeats and MESSAGE datagrams.
//! - [`Socket`] — routes datagrams to streams by the id in bytes 4-7 and leaves the rest
//!   (DHT traffic, unknown ids) to the caller.
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
