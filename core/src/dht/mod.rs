//! The DHT, sans-IO: dht-rpc ([`rpc`]) and hyperdht 6.34.0's record layer on top of it
//! ([`HyperDht`]).
//!
//! [`HyperDht`] wraps a [`rpc::Node`] with the same poll interface (`handle_datagram`,
//! `handle_timeout`, `poll_transmit`, `poll_timeout`, `poll_event`) and adds:
//!
//! - the **record store** of persistent nodes ([`persistent`]): LOOKUP, FIND_PEER, ANNOUNCE,
//!   UNANNOUNCE (signed, with relay addresses and refresh chains), MUTABLE_PUT/GET (signed,
//!   sequence numbers), IMMUTABLE_PUT/GET, in xache / record-cache generations with
//!   hyperdht's sizes and lifetimes ([`cache`]);
//! - the **router** ([`router`]): forward entries from self-announces, and the relaying of
//!   PEER_HANDSHAKE / PEER_HOLEPUNCH between clients and firewalled servers (the server and
//!   client halves are hooks for the connect/holepunch layer: [`HyperDht::register_server`],
//!   [`Event::PeerHandshake`], [`HyperDht::server_handshake_reply`],
//!   [`HyperDht::peer_handshake`], ...);
//! - **client operations** ([`client`]): [`HyperDht::lookup`], [`HyperDht::find_peer`],
//!   [`HyperDht::announce`], [`HyperDht::unannounce`], [`HyperDht::immutable_put`] /
//!   [`HyperDht::immutable_get`], [`HyperDht::mutable_put`] / [`HyperDht::mutable_get`], each
//!   an [`OpId`] whose replies and result come as [`Event`]s;
//! - every message schema ([`messages`]) and signature ([`signing`]) of hyperdht.
//!
//! Commands a layer above wants to add go through [`HyperDht::rpc_mut`]: raw requests,
//! queries (with an external commit) and their events come back as [`Event::Rpc`].
//!
//! Connecting by public key sits on top ([`connect`]): [`connect::Connector`] runs
//! `listen(keyPair)` and `connect(publicKey)` over a [`HyperDht`], with the messages of
//! [`messages_connect`], the IK handshake of [`noise_wrap`] and the punching of [`holepunch`].

pub mod announcer;
pub mod cache;
pub mod client;
pub mod connect;
pub mod holepunch;
pub mod messages;
pub mod messages_connect;
mod node;
pub mod noise_wrap;
pub mod persistent;
pub mod router;
pub mod rpc;
pub mod signing;
#[cfg(test)]
mod tests;

pub use client::AnnounceOptions;
pub use node::{
    hyperdht_filter, DhtConfig, Event, FindPeerResult, HyperDht, LookupResult, MutableValue,
    OpError, OpId, OpOutput,
};
pub use persistent::StoreLimits;

/// hyperdht's default port.
pub const DEFAULT_PORT: u16 = 49737;

/// User command: PEER_HANDSHAKE (Noise through a relay).
pub const PEER_HANDSHAKE: u64 = 0;
/// User command: PEER_HOLEPUNCH.
pub const PEER_HOLEPUNCH: u64 = 1;
/// User command: FIND_PEER (the forward record of a server).
pub const FIND_PEER: u64 = 2;
/// User command: LOOKUP (a topic's announcers).
pub const LOOKUP: u64 = 3;
/// User command: ANNOUNCE.
pub const ANNOUNCE: u64 = 4;
/// User command: UNANNOUNCE.
pub const UNANNOUNCE: u64 = 5;
/// User command: MUTABLE_PUT.
pub const MUTABLE_PUT: u64 = 6;
/// User command: MUTABLE_GET.
pub const MUTABLE_GET: u64 = 7;
/// User command: IMMUTABLE_PUT.
pub const IMMUTABLE_PUT: u64 = 8;
/// User command: IMMUTABLE_GET.
pub const IMMUTABLE_GET: u64 = 9;
/// User command: PLUGIN.
pub const PLUGIN: u64 = 10;

/// hyperdht error: none.
pub const ERROR_NONE: u64 = 0;
/// hyperdht error: aborted.
pub const ERROR_ABORTED: u64 = 1;
/// hyperdht error: version mismatch.
pub const ERROR_VERSION_MISMATCH: u64 = 2;
/// hyperdht error: try later.
pub const ERROR_TRY_LATER: u64 = 3;
/// MUTABLE_PUT answer: this sequence number was used for another value.
pub const ERROR_SEQ_REUSED: u64 = 16;
/// MUTABLE_PUT answer: a higher sequence number is stored.
pub const ERROR_SEQ_TOO_LOW: u64 = 17;
