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
//!
//! Not done yet (JS features): the linearizer, the system view, apply and views, checkpoints,
//! fast-forward, acks, optimistic writers, encryption.

pub mod messages;
#[cfg(test)]
mod vectors_tests;
