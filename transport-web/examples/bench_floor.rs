//! The wasm side of `bench/browser-floor.sh` (issue 14's floor): the work a page replicating a
//! core must do in wasm for each WebSocket message, without the rest of hypercore. Built for
//! wasm32 as a `cdylib` with the workspace's release profile (the npm package's flags) and bound
//! with wasm-bindgen by the script; not part of the npm package.
//!
//! - [`take`]: the message copied into wasm memory (as the relay client's
//!   `Uint8Array::to_vec` does), nothing else.
//! - [`Leaves`]: the same copy, then the hashing a verified fetch does: a BLAKE2b leaf hash per
//!   block and the parent hashes of the tree over them (hyperpunch-core's `leaf_hash` and
//!   `parent_hash`, the functions replication verifies with).

use hyperpunch_core::crypto::{leaf_hash, parent_hash, Hash};
use wasm_bindgen::prelude::*;

/// Copies `data` into wasm memory (wasm-bindgen's argument copy) and returns its length.
#[wasm_bindgen]
pub fn take(data: &[u8]) -> usize {
    std::hint::black_box(data).len()
}

/// A flat tree built over the blocks pushed into it, as a verified download hashes them.
#[wasm_bindgen]
pub struct Leaves {
    block_size: usize,
    /// The full subtrees so far: (leaves under it, bytes under it, hash), largest first.
    roots: Vec<(u64, u64, Hash)>,
    blocks: u64,
    parents: u64,
}

#[wasm_bindgen]
impl Leaves {
    /// Blocks of `block_size` bytes (the last one of a message may be shorter).
    #[wasm_bindgen(constructor)]
    pub fn new(block_size: usize) -> Leaves {
        Leaves {
            block_size: block_size.max(1),
            roots: Vec::new(),
            blocks: 0,
            parents: 0,
        }
    }

    /// Hashes the blocks of `data` into the tree; returns the blocks hashed so far.
    pub fn push(&mut self, data: &[u8]) -> u64 {
        for block in data.chunks(self.block_size) {
            let mut node = (1u64, block.len() as u64, leaf_hash(block));
            while let Some(&(n, bytes, h)) = self.roots.last() {
                if n != node.0 {
                    break;
                }
                self.roots.pop();
                let size = bytes + node.1;
                node = (n * 2, size, parent_hash(size, &h, &node.2));
                self.parents += 1;
            }
            self.roots.push(node);
            self.blocks += 1;
        }
        self.blocks
    }

    /// Parent hashes computed so far.
    pub fn parents(&self) -> u64 {
        self.parents
    }
}
