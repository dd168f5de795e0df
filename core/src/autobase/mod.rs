//! autobase 7.28.1 (`NM/autobase`): multi-writer systems on hypercores.
//!
//! Every writer appends to its own hypercore, the *oplog*: each block is an [`messages::OplogMessage`]
//! whose node links to the heads of the causal DAG the writer saw. A set of *indexers* reaches
//! consensus on one order of the DAG (the linearizer), an `apply` function turns the ordered nodes
//! into views, and the system core (a hyperbee) records who the writers are.
//!
//! This module is sans-IO, like the rest of `hyperpunch-core`. It is built in pieces:
//!
//! * [`messages`]: every autobase message, byte-identical to JS (oplog, system info and member
//!   records, boot record, wakeup, linearizer update, encryption descriptor, manifest data).
//! * The causal DAG ([`graph`], [`clock`]), the tip's order ([`topolist`]), the indexers'
//!   [`consensus`] and the [`linearizer`] over them: ports of the JS algorithms, keeping JS's
//!   iteration orders where they decide ties.
//! * [`system`]: members, indexers, pending indexers and applied heads with JS's rules (in memory).
//! * [`Autobase`]: the engine. Oplog blocks in ([`Autobase::handle_block`]), [`Autobase::update`]
//!   loads the nodes whose dependencies are in, linearizes them, undoes what a reorder moved and
//!   applies with the caller's [`Apply`] (a trait, or any closure) to [`Views`]; when an indexed
//!   node changes the indexers it restarts from the indexed state as JS reboots. Live-tested:
//!   the oplogs a JS autobase wrote (one or three indexers, partitioned writers, a removed
//!   writer) give the JS view, block for block, with the same indexed length and system length,
//!   whatever order the blocks arrive in (`tests/tests/autobase_interop.rs`).
//!   [`Autobase::update_async`] does the same with an [`AsyncApply`], whose future each batch
//!   waits for (the browser's JavaScript `apply`, an async callback).
//!
//! Views are append-only logs of blocks ([`Views`]); apply may run a hyperbee on one
//! ([`Views::bee`], [`bee_view`]): JS's `new Hyperbee(store.get('view'))` views, the same blocks
//! byte for byte, read outside apply with [`Views::read_bee`] / [`Autobase::indexed_bee`].
//!
//! Writing: [`Autobase::append`] adds a batch from the local writer the way JS `_addLocalHeads`
//! does and returns the oplog messages for its core; live-tested as a non-indexer writer that a
//! JS bootstrap adds, over corestore replication on TCP.
//!
//! Indexers ack with [`Autobase::ack`] (JS `shouldAck`), when JS's ack timer says so
//! ([`acks`]: `ackInterval`, `ackThreshold`; [`Autobase::poll_ack`] at [`Autobase::ack_timeout`],
//! with the time and randomness passed in); a seeded simulation runs one or three indexers
//! acking on a virtual clock under partitions.
//!
//! Fast-forward ([`fast_forward`], [`Autobase::fast_forward`]): a new reader reads a JS
//! system core at its signed length (checking its manifest names the indexers), takes the
//! indexed state from its `info` and member records, starts each view at the length recorded
//! there (the blocks below stay in the view's hypercore) and linearizes only the oplog entries
//! past it. Live-tested against a JS autobase with thousands of indexed entries.
//!
//! Indexing ([`cores`]): an indexer writes the system hyperbee and the views as JS stores them,
//! signs them and puts its checkpoints and digests in its oplog entries; at an indexer change the
//! cores move as JS `_premigrate` moves them and the quorum's multisig is assembled. Encrypted
//! bases ([`encryption`]) are read and written. Optimistic writers:
//! [`Autobase::append_optimistic`], kept only when the apply acks them (JS `_optimisticApply`).
//!
//! The wakeup protocol ([`wakeup`], over [`crate::protomux_wakeup`]): peers announce writers
//! with new blocks; announces become bounded hints ([`Autobase::hint_writer_length`]) and the
//! writers with unindexed nodes are announced, as JS autobase does.
//!
//! Not done yet (JS features): forks.

pub mod acks;
mod base;
pub mod bee_view;
pub mod clock;
pub mod consensus;
pub mod cores;
pub mod driver;
#[cfg(test)]
mod driver_tests;
pub mod encryption;
pub mod fast_forward;
pub mod graph;
pub mod linearizer;
pub mod messages;
pub mod system;
pub mod topolist;
mod views;
pub mod wakeup;

pub use base::{
    Apply, ApplyNode, AsyncApply, Autobase, AutobaseError, Host, WantedWriter, MAX_HINTED,
    MAX_NONMEMBER_BLOCKS, MAX_UNKNOWN_SYSTEM_BLOCKS,
};
pub use bee_view::{BeeEntry, BeeReader, BeeView, BeeViewBatch, ViewCore};
pub use views::{ViewId, Views};
#[cfg(test)]
mod ack_tests;
#[cfg(test)]
mod bee_view_tests;
#[cfg(test)]
mod optimistic_tests;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod vectors_tests;
#[cfg(test)]
mod wakeup_tests;
