//! Relaying connections through a third peer.
//!
//! - [`blind`] — blind-relay 1.x: two peers pair by token on a relay, which forwards their UDX
//!   streams without seeing the (end-to-end encrypted) contents.
//! - [`dht_relay`] — `@hyperswarm/dht-relay`: the DHT over one framed stream (WebSocket), for
//!   browsers.

pub mod blind;
pub mod dht_relay;
