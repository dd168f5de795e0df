//! Merkle proofs: generation ([`generate`], JS `generateProof` merkle-tree.js:1314-1359) and
//! verification ([`verify_tree`] and [`verify_upgrade`], JS 881-999).
//!
//! A proof is a1's wire [`Data`](super::messages::Data) message minus `request`/`manifest`: a block
//! or hash proof (the untrusted node and its siblings bottom-up), a seek proof, and an upgrade (the
//! nodes taking the requester's roots at `start` to the tree at `start + length`, the
//! `additional_nodes` reaching the sender's full length, and the sender's signature of that full
//! length).
//!
//! Generation first works out which node indexes are needed (as JS does synchronously), then reads
//! them all in one `get_many` round trip. Verification is pure: it folds the proof into a
//! [`TreeBatch`](super::tree::TreeBatch); the caller checks the signature of the upgraded batch, or
//! compares the returned unverified root with its stored node.
//!
//! Split by concern: `generate` builds proofs, `verify` checks them; this file holds the
//! request type and the bounds both apply to untrusted indexes.

use super::error::ProofError;
use super::flat_tree::Iterator;
use super::messages::{Request, RequestBlock, RequestSeek, RequestUpgrade};

mod generate;
#[cfg(test)]
mod tests;
mod verify;

pub use generate::generate;
pub(crate) use generate::generate_cached;
pub use verify::{verify_tree, verify_tree_with_leaf, verify_upgrade, KnownNodes};

/// What is asked of a proof (the proof part of a wire [`Request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProofRequest {
    /// A block with its value: block index and how many levels the requester lacks.
    pub block: Option<RequestBlock>,
    /// A tree node (no value): node index and levels lacking.
    pub hash: Option<RequestBlock>,
    /// The node holding a byte offset.
    pub seek: Option<RequestSeek>,
    /// Nodes and signature to grow from `start` blocks to `start + length`.
    pub upgrade: Option<RequestUpgrade>,
}

impl From<&Request> for ProofRequest {
    fn from(r: &Request) -> Self {
        ProofRequest {
            block: r.block,
            hash: r.hash,
            seek: r.seek,
            upgrade: r.upgrade,
        }
    }
}

pub use super::flat_tree::MAX_INDEX;

/// Fail once a walk over untrusted nodes leaves the range of valid trees.
fn in_range(ite: &Iterator) -> Result<(), ProofError> {
    if ite.index >= MAX_INDEX || ite.factor >= MAX_INDEX {
        return Err(ProofError::NodeOutOfRange(ite.index));
    }
    Ok(())
}

const MAX_STEPS: u32 = 1024;

fn steps(cnt: &mut u32) -> Result<(), ProofError> {
    *cnt += 1;
    if *cnt >= MAX_STEPS {
        return Err(ProofError::InvalidRequest("tree walk too deep"));
    }
    Ok(())
}
