//! The DHT: dht-rpc ([`rpc`]) and, on top of it, hyperdht's record layer.
pub mod rpc;
