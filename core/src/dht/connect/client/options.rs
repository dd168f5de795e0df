//! What a connection attempt is given ([`ConnectOptions`]) and how it can fail
//! ([`ConnectError`], hyperdht's error codes).

use core::net::SocketAddrV4;
use core::time::Duration;

/// The default bound on a whole connection attempt ([`ConnectOptions::timeout`]): longer than
/// the longest path hyperdht 6.34.0 can take to a connection (a birthday punch probes for
/// 1750 × 20 ms = 35 s after the handshake and the probe round; a TRY_LATER wait is 10-20 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a connection attempt failed (JS error codes of hyperdht lib/errors.js).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// No node knows the server's key.
    #[error("PEER_NOT_FOUND: Peer not found")]
    PeerNotFound,
    /// Nodes knew the key but no handshake went through.
    #[error("PEER_CONNECTION_FAILED: Failed to connect to peer")]
    PeerConnectionFailed,
    /// The server answered with another noise payload version.
    #[error("SERVER_INCOMPATIBLE: Server is using an incompatible version")]
    ServerIncompatible,
    /// The server answered with an error code (e.g. refused by its firewall: it never answers).
    #[error("SERVER_ERROR: {0}")]
    ServerError(String),
    /// The server is not reachable directly and gave no holepunch info.
    #[error("CANNOT_HOLEPUNCH: Cannot holepunch to remote")]
    CannotHolepunch,
    /// The holepunch gave up.
    #[error("HOLEPUNCH_ABORTED: Holepunch aborted")]
    HolepunchAborted,
    /// One side's NAT type stayed unknown.
    #[error("HOLEPUNCH_PROBE_TIMEOUT: Holepunching probe did not finish in time")]
    HolepunchProbeTimeout,
    /// Both NATs are randomized: no punch can work (a relay can).
    #[error("HOLEPUNCH_DOUBLE_RANDOMIZED_NATS: Both remote and local NATs are randomized")]
    DoubleRandomizedNats,
    /// The server aborted the holepunch.
    #[error("REMOTE_ABORTED: Remote aborted with error code {0}")]
    RemoteAborted(u64),
    /// The server has no punch strategy for our NAT pair.
    #[error("REMOTE_NOT_HOLEPUNCHABLE: Remote is not holepunchable")]
    RemoteNotHolepunchable,
    /// The server did not start punching.
    #[error("REMOTE_NOT_HOLEPUNCHING: Remote is not holepunching")]
    RemoteNotHolepunching,
    /// A holepunch reply did not open with the handshake's secret.
    #[error("HOLEPUNCH_INVALID: Invalid holepunch payload")]
    HolepunchInvalid,
    /// A relay answered the holepunch with something that is not a REPLY.
    #[error("BAD_HOLEPUNCH_REPLY: Bad holepunch reply")]
    BadHolepunchReply,
    /// The blind relay did not pair us (JS `RELAY_ABORTED`).
    #[error("RELAY_ABORTED: Relay aborted")]
    RelayAborted,
    /// The key to connect to is not an Ed25519 public key.
    #[error("INVALID_PUBLIC_KEY: the remote key is not a valid Ed25519 public key")]
    InvalidPublicKey,
    /// The attempt was cancelled.
    #[error("DESTROYED: connection attempt cancelled")]
    Destroyed,
    /// Beyond JS: no connection within [`ConnectOptions::timeout`] (milliseconds).
    #[error("CONNECT_TIMEOUT: no connection within {} ms", .0)]
    Timeout(u64),
}

/// Options of [`Connector::connect`](crate::dht::connect::Connector::connect).
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Nodes to try the handshake through first (JS `relayAddresses`, or the nodes of a
    /// hyperdht-address).
    pub relay_addresses: Vec<SocketAddrV4>,
    /// Open a TTL-5 session to the server before the probe round (JS `fastOpen`, default true).
    pub fast_open: bool,
    /// Share our LAN addresses (JS `localConnection`, default true).
    pub local_connection: bool,
    /// Pair through this blind relay (JS `relayThrough`).
    pub relay_through: Option<[u8; 32]>,
    /// Holepunch when needed (default true); `false` is JS `holepunch: () => false`: only a
    /// direct or relayed path is used.
    pub holepunch: bool,
    /// Beyond JS: when the punch fails (and `relay_through` is not set), connect again
    /// through this blind relay (a deployment's default relay).
    pub fallback_relay: Option<[u8; 32]>,
    /// Beyond JS (whose connects have no overall bound): the attempt fails with
    /// [`ConnectError::Timeout`] once this long went by without a connection, whatever phase
    /// it is in (finding the server, handshakes, punching, waiting for a relay, a fallback
    /// retry). `None`: no bound. Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub timeout: Option<Duration>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            relay_addresses: Vec::new(),
            fast_open: true,
            local_connection: true,
            relay_through: None,
            holepunch: true,
            fallback_relay: None,
            timeout: Some(DEFAULT_CONNECT_TIMEOUT),
        }
    }
}

impl ConnectError {
    /// Whether the handshake went through but no path could be punched (a relay can help).
    pub fn is_punch_failure(&self) -> bool {
        matches!(
            self,
            ConnectError::CannotHolepunch
                | ConnectError::HolepunchAborted
                | ConnectError::HolepunchProbeTimeout
                | ConnectError::DoubleRandomizedNats
                | ConnectError::RemoteAborted(_)
                | ConnectError::RemoteNotHolepunchable
                | ConnectError::RemoteNotHolepunching
                | ConnectError::HolepunchInvalid
                | ConnectError::BadHolepunchReply
        )
    }
}
