//! # hyperpunch-web
//!
//! hyperpunch compiled to wasm for browsers: the sans-IO engines of
//! [`hyperpunch_core`] plus what only a browser provides.
//!
//! - `storage` (wasm32 only, so not linked from native docs): `storage::IdbStorage`, the
//!   [`Storage`](hyperpunch_core::storage::Storage) backend on IndexedDB.
//! - `replicate` (wasm32 only): the replication driver, pumping a
//!   [`ReplicationHub`](hyperpunch_core::replication::ReplicationHub) through a secret stream
//!   over any `Duplex` of byte chunks (an in-page `memory_duplex` now, a relay WebSocket
//!   later), with `setTimeout` timers, and backpressure from the carrier's buffered bytes.
//! - [`duplex`]: the [`Duplex`](duplex::Duplex) carrier trait (chunks each way, plus the
//!   carrier's `bufferedAmount` and a wake-up when it drains) and the in-page
//!   [`memory_duplex`](duplex::memory_duplex); pure Rust, so also built natively.
//! - `websocket` (wasm32 only): a WebSocket as a `Duplex` carrier, and `RelaySession`, the
//!   dht-relay client engine of [`hyperpunch_core::relay::dht_relay`] driven over one.
//! - `relay` (wasm32 only): `Relay`, a dht-relay session shared by the page's tasks (lookups,
//!   connections by public key), `RelayStream` (one connection, a `Duplex`) and
//!   `replicate_relayed`, replication over one (custodial: frames as the relay forwards them,
//!   with its handshake hash; non-custodial: secret-stream in the page).
//! - `js` (wasm32 only): the JavaScript API, `Hypercore` on IndexedDB and `replicate(a, b)`
//!   between two cores of the page, plus [`version`] and [`discovery_key`].
//!
//! - `autobase` (wasm32 only): `Autobase`, the driver of the core's autobase engine on a
//!   `Corestore` (oplogs fed from the store's cores, the page's JavaScript `apply` per batch,
//!   the local oplog written).
//! - `bee` (wasm32 only): `Hyperbee`, the JavaScript class over the core's hyperbee on a page's
//!   `Hypercore`, and `WebCore`, that core as a `BeeCore`.
//! - `drive` (wasm32 only): `Corestore` on IndexedDB (JS corestore's keys), `StoreCore` (a core
//!   of it as a bee / blobs core) and `Hyperdrive` (JS hyperdrive 13) in it.
//! - `swarm` (wasm32 only): `Swarm`, hyperswarm in the page: the core's swarm engine driven
//!   over a dht-relay session (topics announced and looked up through it, connections by
//!   public key), its connections as `SwarmConnection`s (messages, or a core's replication).
//!
//! On native targets only [`duplex`] and the wasm-bindgen functions are compiled (the latter as
//! plain Rust functions), so the crate still builds (and unit-tests) with the rest of the
//! workspace.
#![warn(missing_docs)]

use wasm_bindgen::prelude::*;

#[cfg(target_arch = "wasm32")]
pub mod autobase;
#[cfg(target_arch = "wasm32")]
pub mod bee;
#[cfg(target_arch = "wasm32")]
mod chan;
#[cfg(target_arch = "wasm32")]
pub mod drive;
pub mod duplex;
#[cfg(target_arch = "wasm32")]
pub mod js;
#[cfg(target_arch = "wasm32")]
mod opfs;
#[cfg(target_arch = "wasm32")]
pub mod relay;
#[cfg(target_arch = "wasm32")]
pub mod replicate;
#[cfg(target_arch = "wasm32")]
pub mod storage;
#[cfg(target_arch = "wasm32")]
pub mod store_features;
#[cfg(target_arch = "wasm32")]
pub mod swarm;
#[cfg(target_arch = "wasm32")]
pub mod websocket;
#[cfg(target_arch = "wasm32")]
pub mod write_behind;

/// The version of this crate (and of the hyperpunch workspace).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// A byte string that should have been a 32-byte hypercore key was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLengthError {
    /// The length received.
    pub len: usize,
}

impl std::fmt::Display for KeyLengthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a hypercore key is 32 bytes, got {}", self.len)
    }
}

impl std::error::Error for KeyLengthError {}

fn discovery_key_of(key: &[u8]) -> Result<hyperpunch_core::crypto::Hash, KeyLengthError> {
    let key: &hyperpunch_core::crypto::Hash = key
        .try_into()
        .map_err(|_| KeyLengthError { len: key.len() })?;
    Ok(hyperpunch_core::crypto::discovery_key(key))
}

/// The discovery key of a 32-byte hypercore public key (BLAKE2b-256 of `hypercore`, keyed with
/// the key), as JS `discoveryKey(key)`.
///
/// Throws an `Error` in JS when `key` is not 32 bytes long.
#[wasm_bindgen(js_name = discoveryKey)]
pub fn discovery_key(key: &[u8]) -> Result<Vec<u8>, JsError> {
    discovery_key_of(key)
        .map(|dk| dk.to_vec())
        .map_err(|e| JsError::new(&format!("discoveryKey: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_key_checks_length_and_matches_core() {
        let key = [7u8; 32];
        assert_eq!(
            discovery_key_of(&key),
            Ok(hyperpunch_core::crypto::discovery_key(&key))
        );
        assert_eq!(
            discovery_key_of(&[0u8; 33]),
            Err(KeyLengthError { len: 33 })
        );
        assert_eq!(discovery_key_of(&[]), Err(KeyLengthError { len: 0 }));
        assert_eq!(version(), env!("CARGO_PKG_VERSION"));
    }
}
