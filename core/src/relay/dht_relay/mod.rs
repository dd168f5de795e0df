//! `@hyperswarm/dht-relay` 0.4.3: the DHT relayed over one framed stream (a WebSocket from a
//! browser), so that a peer without UDP can connect, listen, look up and announce through a
//! relay that is a DHT node.
//!
//! The wire is one protomux channel [`PROTOCOL`] (no id, no handshake) carrying the 28
//! [`messages`]; every WebSocket binary message is one protomux frame.
//!
//! - [`messages`] — the codecs, byte for byte.
//! - [`client`] — the client's side (what a browser runs), custodial or not.
//! - [`server`] — the relay's side of one client session, with per-session limits and the
//!   [`close_code`]s it ends a session with.
//!
//! Modes: in the JS wire's *custodial* mode the client hands its secret key to the relay, which
//! then runs the Noise handshake and secret-stream and forwards plaintext; see the crate README
//! for what each mode lets the relay see.

pub mod client;
pub mod messages;
pub mod server;

pub use client::{Client, ClientError, ClientEvent, Handshake};
pub use messages::{Announcers, Destroy, HandshakeRef, Keys, Message, Node, Peer, SignRequest};
pub use server::{Close, Limits, Request, Session};

/// The protomux protocol name.
pub const PROTOCOL: &str = "@hyperswarm/dht-relay";

/// WebSocket close codes a relay ends a session with (1000-1011 are RFC 6455's; 4000-4999 are
/// for applications).
pub mod close_code {
    /// The client closed the relay channel, or the relay shuts down cleanly.
    pub const NORMAL: u16 = 1000;
    /// The relay is going away (shutting down).
    pub const GOING_AWAY: u16 = 1001;
    /// A frame that is not a valid protomux frame or dht-relay message.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame (the relay speaks binary frames only).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A frame larger than the relay accepts.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Too many streams or servers at once.
    pub const TOO_MANY_STREAMS: u16 = 4001;
    /// Too many requests per second, or too many queries at once.
    pub const TOO_MANY_REQUESTS: u16 = 4002;
    /// The client left more than the high-water mark unread for longer than the stall timeout.
    pub const NOT_READING: u16 = 4003;
    /// No pong for three heartbeat intervals.
    pub const HEARTBEAT: u16 = 4004;
    /// The client asked for a mode this relay does not offer.
    pub const UNSUPPORTED: u16 = 4005;
    /// The relay is at its connection limit.
    pub const RELAY_FULL: u16 = 4006;
}
