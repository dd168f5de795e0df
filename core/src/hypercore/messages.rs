//! Wire encodings of hypercore's data structures: tree nodes, proofs and the replication messages
//! (`lib/messages.js` in the JS reference).

use crate::encoding::{uint_len, write_uint, Decode, DecodeError, Decoder, Encode};

/// A merkle tree node: `uint index ‖ uint size ‖ fixed32 hash` (messages.js:243-263).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeNode {
    /// Flat-tree index.
    pub index: u64,
    /// Bytes covered by the node.
    pub size: u64,
    /// BLAKE2b-256 hash.
    pub hash: [u8; 32],
}

impl Encode for TreeNode {
    fn encoded_len(&self) -> usize {
        uint_len(self.index) + uint_len(self.size) + 32
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.index);
        write_uint(out, self.size);
        out.extend_from_slice(&self.hash);
    }
}

impl Decode<'_> for TreeNode {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(TreeNode {
            index: d.uint()?,
            size: d.uint()?,
            hash: d.fixed()?,
        })
    }
}
