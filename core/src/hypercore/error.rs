//! The errors of hypercore operations: [`HypercoreError`] for everything a core does, and
//! [`ProofError`] for the part of a proof that failed. They live apart from the code that
//! returns them so that the core, its block store, its merkle tree and its proofs all depend on
//! this module and not on each other.

use crate::encoding::DecodeError;
use crate::storage::StorageError;

use super::bitfield::BitfieldError;
use super::encryption::EncryptionError;
use super::manifest::ManifestError;
use super::verifier::VerifyError;

/// Everything that can go wrong in a hypercore operation.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HypercoreError {
    /// The storage backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Stored bytes are inconsistent (a header, node or page that cannot be right).
    #[error("corrupt core: {0}")]
    Corrupt(String),
    /// Stored or received bytes do not decode.
    #[error("decode error: {0}")]
    Decode(#[from] DecodeError),
    /// A signature does not verify (or could not be made).
    #[error("invalid signature: {0}")]
    InvalidSignature(#[from] VerifyError),
    /// A proof does not verify or cannot be generated; says which part failed.
    #[error("invalid proof: {0}")]
    InvalidProof(#[from] ProofError),
    /// A manifest is invalid or does not belong to this core.
    #[error("manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// A block is larger than [`MAX_BLOCK_SIZE`](super::MAX_BLOCK_SIZE).
    #[error("block of {size} bytes exceeds the {max}-byte limit")]
    BlockTooLarge {
        /// Size of the offending block.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The core has no key pair that may sign for it.
    #[error("core is not writable")]
    NotWritable,
    /// An index or length beyond the core's length.
    #[error("index {index} out of bounds (length {length})")]
    OutOfBounds {
        /// The index asked for.
        index: u64,
        /// The core's length.
        length: u64,
    },
    /// A snapshot read of a block that a truncation has since removed.
    #[error(
        "snapshot not available: block {index} was truncated (snapshot valid below {available})"
    )]
    SnapshotNotAvailable {
        /// Block asked for.
        index: u64,
        /// Blocks below this index are still readable through the snapshot.
        available: u64,
    },
    /// No core is stored in this storage.
    #[error("no hypercore in this storage")]
    NotFound,
    /// A core is already stored in this storage.
    #[error("a hypercore already exists in this storage")]
    AlreadyExists,
    /// A tree node that must be stored is missing.
    #[error("tree node {0} is missing from storage")]
    MissingNode(u64),
    /// The key pair is not a signer of the core's manifest, or the key does not match.
    #[error("key mismatch: {0}")]
    KeyMismatch(&'static str),
    /// The core is encrypted and no encryption key was given.
    #[error("core is encrypted and no encryption key was given")]
    EncryptionKeyRequired,
    /// Decrypting a stored block failed.
    #[error("encryption: {0}")]
    Encryption(#[from] EncryptionError),
    /// A block's hash does not match the tree
    /// ([`Hypercore::verify_all`](super::Hypercore::verify_all)).
    #[error("block {0} does not match the merkle tree")]
    BlockMismatch(u64),
    /// The tree rebuilt from the blocks does not match the stored roots.
    #[error("tree rebuilt from blocks does not match the stored roots")]
    TreeMismatch,
    /// A block is not stored locally (readers hold sparse data).
    #[error("block {0} is not available locally")]
    BlockNotAvailable(u64),
    /// The core has no manifest yet (a reader that has not received one).
    #[error("core has no manifest yet")]
    NoManifest,
    /// The core detected a fork conflict ([`Hypercore::conflict`](super::Hypercore::conflict)):
    /// a peer proved a validly signed tree of this core that diverges from ours, so its writer
    /// signed two different histories. The core is frozen: it refuses appends, truncations and
    /// proofs, also after a restart (the conflict is stored with it).
    #[error(
        "core is frozen: a peer proved a conflicting signed tree at length {length} (fork \
         {fork}), so its writer forked; it refuses writes"
    )]
    Conflict {
        /// The length at which the two signed trees diverge.
        length: u64,
        /// Their fork.
        fork: u64,
    },
    /// An argument outside what the operation accepts.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The core was purged (deleted from its store) after this reader or writer of it was
    /// made; a core made again under the same key is another one, which it does not touch.
    #[error("the core was purged from its store")]
    Purged,
}

impl From<BitfieldError> for HypercoreError {
    fn from(e: BitfieldError) -> Self {
        HypercoreError::Corrupt(e.to_string())
    }
}

/// Why a proof was rejected or could not be produced.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProofError {
    /// The proof lacks a node where one was expected.
    #[error("expected proof node {expected}, got none")]
    MissingNode {
        /// Index the verifier needed.
        expected: u64,
    },
    /// The proof has a different node where one was expected.
    #[error("expected proof node {expected}, got node {got}")]
    UnexpectedNode {
        /// Index the verifier needed.
        expected: u64,
        /// Index the proof had.
        got: u64,
    },
    /// A node index outside any valid tree.
    #[error("node index {0} out of range")]
    NodeOutOfRange(u64),
    /// An additional (upgrade) node that does not fit the tree.
    #[error("unexpected additional node {0}")]
    UnexpectedAdditionalNode(u64),
    /// The upgrade does not start at 0 while the core has a prologue it does not cover.
    #[error("upgrade does not satisfy the prologue")]
    PrologueNotSatisfied,
    /// The tree at the prologue length does not have the prologue hash.
    #[error("tree hash does not match the prologue")]
    PrologueHashMismatch,
    /// The proof's root does not match the node stored locally.
    #[error("invalid checksum at node {0}")]
    InvalidChecksum(u64),
    /// The proof ends in a node the verifier does not have, and carries no upgrade reaching it.
    #[error("node {0} cannot be verified: not stored locally")]
    Unverifiable(u64),
    /// The sizes of the proof's nodes add up past `u64::MAX` (at node `.0`).
    #[error("node sizes overflow at node {0}")]
    SizeOverflow(u64),
    /// The upgrade is malformed (empty, or does not extend the local tree).
    #[error("invalid upgrade: {0}")]
    InvalidUpgrade(&'static str),
    /// The request cannot be answered (JS INVALID_OPERATION on generation).
    #[error("invalid proof request: {0}")]
    InvalidRequest(&'static str),
    /// The proof is for another fork than the local one.
    #[error("proof is for fork {got}, local fork is {local}")]
    ForkMismatch {
        /// Local fork.
        local: u64,
        /// Fork of the proof.
        got: u64,
    },
    /// An upgrade for a length we have, with a different tree (a fork/conflict).
    #[error("upgrade to length {0} conflicts with the local tree")]
    Conflict(u64),
}
