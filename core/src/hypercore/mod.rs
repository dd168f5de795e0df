//! hypercore: the signed append-only log.
//!
//! - [`flat_tree`]: flat-tree indexing of the merkle tree.
//! - [`tree`]: the merkle tree (leaf/parent/root hashes, roots, tree hash) over storage.
//! - [`manifest`]: manifests v0-v3 and the core key (manifest hash).
//! - [`verifier`]: the 112/80-byte signables, multisig blobs, quorum and prologue checks.
//! - [`encryption`]: default block encryption (XSalsa20 with the 8-byte padding).
//! - [`error`]: [`HypercoreError`] and [`ProofError`], apart so that the modules returning them
//!   do not depend on each other.
//! - [`messages`]: the wire encodings of tree nodes, proofs and replication messages.
//! - [`proof`]: proof generation and verification (block, hash, seek, upgrade, additional nodes).
//! - [`bitfield`]: the local bitfield (which blocks are present).
//! - [`layout`]: the storage key layout of one core.
//! - [`core`]: [`Hypercore`], the log itself on a [`crate::storage::Storage`].
//! - [`session`]: [`Session`], clonable handles sharing one core, and snapshot sessions.

pub mod bitfield;
mod blocks;
pub mod core;
pub mod encryption;
pub mod error;
pub mod flat_tree;
pub mod layout;
pub mod manifest;
pub mod messages;
pub mod proof;
pub mod session;
pub mod tree;
pub mod verifier;

pub use self::core::{
    AppendOutcome, ApplyOutcome, Conflict, CreateOptions, Hypercore, OpenOptions, Snapshot,
    VerifiedProof, MAX_BLOCK_SIZE,
};
pub use self::error::{HypercoreError, ProofError};
pub use self::proof::ProofRequest;
pub use self::session::Session;
pub use self::tree::{MerkleTree, SeekResult};
