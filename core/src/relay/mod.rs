//! Relaying connections through a third peer.
//!
//! - [`blind`] — blind-relay 1.x: two peers pair by token on a relay, which forwards their UDX
//!   streams without seeing the (end-to-end encrypted) contents.

pub mod blind;
