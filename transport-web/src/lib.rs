//! # hyperpunch-web
//!
//! hyperpunch compiled to wasm for browsers.
