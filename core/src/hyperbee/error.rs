//! [`BeeError`]: everything a bee operation can fail with.

use super::messages::MessageError;
use crate::hypercore::HypercoreError;

/// Everything that can go wrong in a hyperbee operation. Bytes from storage or from peers that
/// are not a valid bee become [`BeeError::InvalidNode`] / [`BeeError::Corrupt`], never a panic.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BeeError {
    /// The core failed (storage, a snapshot read after a truncation, ...).
    #[error(transparent)]
    Core(#[from] HypercoreError),
    /// A block the operation needs is not stored locally and could not be downloaded.
    #[error("block {0} is not available (not stored locally, and no peer sent it)")]
    BlockNotAvailable(u64),
    /// A block is not a hyperbee node (JS `DECODING_ERROR`).
    #[error("block {seq} is not a hyperbee node: {error}")]
    InvalidNode {
        /// The block.
        seq: u64,
        /// What did not decode.
        error: MessageError,
    },
    /// The tree the blocks describe is inconsistent (a reference out of range, a cycle, ...).
    #[error("corrupt tree at block {seq}: {reason}")]
    Corrupt {
        /// The block being read.
        seq: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// Block 0 is not a hyperbee header (the core holds something else).
    #[error("not a hyperbee: block 0 is not a hyperbee header")]
    NotABee,
    /// The bee was opened read-only, or this is a checkout / snapshot (JS: "Hyperbee is marked
    /// as read-only").
    #[error("the bee is read-only")]
    ReadOnly,
    /// The core cannot be written (no secret key: a replicated copy).
    #[error("the core is not writable (it has no secret key)")]
    NotWritable,
    /// A stored key or value does not decode with the bee's key or value encoding.
    #[error("cannot decode with the {codec} encoding: {reason}")]
    Encoding {
        /// The encoding.
        codec: &'static str,
        /// Why.
        reason: String,
    },
    /// A checkout or snapshot asked for a version the core does not have (yet).
    #[error("version {version} is not available (the core has {length} blocks)")]
    VersionNotAvailable {
        /// The version asked for.
        version: u64,
        /// The core's length.
        length: u64,
    },
    /// An argument the operation does not accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

impl BeeError {
    /// A decode error of block `seq`.
    pub(crate) fn node(seq: u64, error: MessageError) -> Self {
        BeeError::InvalidNode { seq, error }
    }

    /// A corrupt-tree error at block `seq`.
    pub(crate) fn corrupt(seq: u64, reason: &'static str) -> Self {
        BeeError::Corrupt { seq, reason }
    }
}
