//! Shared helpers for the cross-crate tests.

pub mod autobase_js;
pub mod bee_ops;
pub mod crash;
pub mod drive_ops;
pub mod hub_driver;
pub mod hypercore_ops;
pub mod js_dht;
pub mod local_dht;
pub mod matrix;
pub mod netsim;
pub mod node;
pub mod node_peer;
pub mod swarm_host;
