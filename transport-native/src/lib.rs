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
pub mod replicate;
pub mod shell;
pub mod store_watch;
pub mod swarm;
pub mod udx;

/// Turn transparent huge pages off for this process (Linux; nothing elsewhere): the programs of
/// this package whose allocator (mimalloc) would otherwise ask for them call it first thing.
/// With them, one in-process replication run in three spent ~30% of its CPU zeroing 2 MiB
/// pages that mimalloc kept freeing and taking again; the `hyperpunch` binary keeps them only
/// for commands that build one big batch in memory (see its `huge_pages`).
#[doc(hidden)]
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: `prctl(PR_SET_THP_DISABLE)` only sets a flag of this process (checked at each page
    // fault from then on); it reads no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
