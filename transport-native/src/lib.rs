//! # hyperpunch
//!
//! The native face of hyperpunch: everything in [`hyperpunch_core`] (re-exported as [`core`]), plus
//! the effects the core leaves out: file storage, and (in later work) tokio sockets.
#![warn(missing_docs)]

pub use hyperpunch_core as core;
pub use hyperpunch_core::{
    beam, corestore, crypto, encoding, hyperbee, hyperblobs, hypercore, hyperdrive, id_encoding,
    storage, tele,
};

#[path = "storage.rs"]
pub mod file_storage;
pub use file_storage::{Durability, FileStorage, FileStorageOptions};

pub mod autobase_ff;
pub mod autobase_index;
pub mod bee;
pub mod chat;
pub mod dht;
pub mod dht_relay;
pub mod drive;
pub mod drive_monitor;
pub mod localdrive;
pub mod parallel;
pub mod prefault;
pub mod replicate;
pub mod shell;
pub mod store_watch;
pub mod swarm;
pub mod udx;
