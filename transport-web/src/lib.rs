//! # hyperpunch-web
//!
//! hyperpunch compiled to wasm for browsers: the sans-IO engines of
//! [`hyperpunch_core`] plus what only a browser provides.
//!
//! - `storage` (wasm32 only, so not linked from native docs): `storage::IdbStorage`, the
//!   [`Storage`](hyperpunch_core::storage::Storage) backend on IndexedDB.
//! - A small wasm-bindgen surface ([`version`], [`discovery_key`]) proving the core runs in the
//!   page; the JS package built on it comes later.
//!
//! On native targets only the wasm-bindgen functions are compiled (as plain Rust functions), so
//! the crate still builds with the rest of the workspace.
#![warn(missing_docs)]

use wasm_bindgen::prelude::*;

#[cfg(target_arch = "wasm32")]
pub mod storage;

/// The version of this crate (and of the hyperpunch workspace).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// The discovery key of a 32-byte hypercore public key (BLAKE2b-256 of `hypercore`, keyed with
/// the key), as JS `discoveryKey(key)`.
///
/// Throws a `TypeError` in JS (returns `Err` in Rust) when `key` is not 32 bytes long.
#[wasm_bindgen(js_name = discoveryKey)]
pub fn discovery_key(key: &[u8]) -> Result<Vec<u8>, JsError> {
    let key: &hyperpunch_core::crypto::Hash = key.try_into().map_err(|_| {
        JsError::new(&format!(
            "discoveryKey: a hypercore key is 32 bytes, got {}",
            key.len()
        ))
    })?;
    Ok(hyperpunch_core::crypto::discovery_key(key).to_vec())
}
