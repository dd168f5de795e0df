//! blind-relay 1.6.1 (index.js) as sans-IO engines over a [`Protomux`](crate::protomux::Protomux).
//!
//! The relay and each peer talk over a normal hyperdht connection to the relay's key, on a
//! protomux channel `blind-relay` whose id is the peer's public key. A peer sends
//! [`Pair`]`{is_initiator, token, id: its UDX stream id}`; when both sides of a token arrived,
//! the relay creates two UDX streams, relays each to the other, and answers each side with
//! `Pair{id: the relay stream id}`. The peer then connects its raw UDX stream to the relay's
//! address with that id, and secret-stream runs end to end through it.
//!
//! - [`messages`] — `pair` and `unpair`.
//! - [`Client`] — a peer's side (JS `BlindRelayClient`).
//! - [`Server`] and [`ServerSession`] — the relay's pairing table and one session per peer
//!   connection (JS `BlindRelayServer`, `BlindRelaySession`). The owner creates and links the
//!   UDX streams when [`Server::handle_pair`] reports a match.

pub mod client;
pub mod messages;
pub mod server;

pub use client::{Client, ClientError, ClientEvent};
pub use messages::{Pair, Unpair};
pub use server::{LinkEnd, Match, Server, ServerEvent, ServerSession, SessionId, Stats};

/// The protomux protocol name.
pub const PROTOCOL: &str = "blind-relay";
/// Message type of `pair`.
pub const MSG_PAIR: u64 = 0;
/// Message type of `unpair`.
pub const MSG_UNPAIR: u64 = 1;

#[cfg(test)]
mod tests;
