//! Holepunching (hyperdht lib/holepuncher.js, lib/nat.js, lib/secure-payload.js).
//!
//! - [`SecurePayload`] boxes the holepunch payloads exchanged through PEER_HOLEPUNCH.
//! - [`Nat`] classifies this side's NAT from the addresses DHT nodes saw a puncher socket at.
//! - [`Puncher`] runs the punch strategies as a state machine whose outputs are "open pool socket
//!   k", "send a probe from socket k to an address with TTL t" and timers.

pub mod nat;
pub mod puncher;
pub mod secure_payload;

pub use nat::Nat;
pub use puncher::{PunchAction, Puncher};
pub use secure_payload::SecurePayload;
