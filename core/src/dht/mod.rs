//! The DHT: dht-rpc ([`rpc`]) and, on top of it, hyperdht: the record layer and connecting to a
//! public key through the DHT (the Noise IK handshake routed by relaying nodes, holepunching,
//! blind-relay fallback), as sans-IO engines.
//!
//! - [`messages_connect`] — the PEER_HANDSHAKE / PEER_HOLEPUNCH values and their payloads.
//! - [`noise_wrap`] — the IK handshake with hyperdht payloads and `final()`.
//! - [`holepunch`] — SecurePayload, the NAT analysis and the puncher's strategies.
pub mod connect;
pub mod holepunch;
pub mod messages_connect;
pub mod noise_wrap;
pub mod router;
pub mod rpc;
