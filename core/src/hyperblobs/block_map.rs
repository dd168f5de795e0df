//! Block maps (hyperblobs `lib/block-map.js`): the list of data blocks of a blob whose blocks
//! are not contiguous (deduplicated writes reuse blocks of earlier blobs).
//!
//! Each map block is `uint version (0) ‖ array({ uint index, uint byteLength })`, at most
//! 8192 entries per block; a blob's map is the concatenation of its map blocks (at most 64).
//! A block of data is identified for deduplication by the hex BLAKE2b-256 of its bytes (JS
//! `hashId`); here the 32 raw bytes.

use std::collections::HashMap;

use super::{BlobCore, BlobError, BlobId};
use crate::crypto::hash;

use crate::encoding::{write_uint, DecodeError, Decoder};

/// Entries per map block (JS 8192).
pub const ENTRIES_PER_BLOCK: usize = 8192;
/// Most map blocks a blob may have (JS: "Block map is too large").
pub const MAX_MAP_BLOCKS: u64 = 64;

/// One data block of a blob with a block map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MapEntry {
    /// Block index in the core.
    pub index: u64,
    /// Its length in bytes.
    pub byte_length: u64,
}

/// A blob's data blocks, in order (JS `{ version, blocks }`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockMap {
    /// The format version (only 0 exists).
    pub version: u64,
    /// The data blocks.
    pub blocks: Vec<MapEntry>,
}

/// Encode `blocks` as map blocks of at most [`ENTRIES_PER_BLOCK`] entries (JS `encode`). An
/// empty map has no blocks, as in JS.
pub fn encode(blocks: &[MapEntry]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for chunk in blocks.chunks(ENTRIES_PER_BLOCK) {
        let mut b = Vec::with_capacity(2 + chunk.len() * 4);
        write_uint(&mut b, 0);
        write_uint(&mut b, chunk.len() as u64);
        for e in chunk {
            write_uint(&mut b, e.index);
            write_uint(&mut b, e.byte_length);
        }
        out.push(b);
    }
    out
}

/// Decode one map block.
pub fn decode_block(bytes: &[u8]) -> Result<BlockMap, DecodeError> {
    let mut d = Decoder::new(bytes);
    let version = d.uint()?;
    if version > 0 {
        return Err(DecodeError::Invalid("unsupported block map version"));
    }
    let blocks = d.array_with(|d| {
        Ok(MapEntry {
            index: d.uint()?,
            byte_length: d.uint()?,
        })
    })?;
    Ok(BlockMap { version, blocks })
}

/// The block hash deduplication compares (JS `hashId`, without the hex).
pub fn block_hash(block: &[u8]) -> [u8; 32] {
    hash(block)
}

/// The stored map of blob `id` (which must have `block_map`), checked against the core: every
/// entry names a block before the map.
pub(crate) async fn read<C: BlobCore>(core: &C, id: &BlobId) -> Result<BlockMap, BlobError> {
    if id.block_length > MAX_MAP_BLOCKS {
        return Err(BlobError::BlockMapTooLarge(id.block_length));
    }
    let length = core.state().await.length;
    if id.end() > length {
        return Err(BlobError::OutOfBounds {
            start: id.block_offset,
            end: id.end(),
            length,
        });
    }
    let mut map = BlockMap::default();
    for i in id.block_offset..id.end() {
        let raw = core.get(i).await?.ok_or(BlobError::BlockNotAvailable(i))?;
        let part = decode_block(&raw).map_err(|e| BlobError::InvalidBlockMap {
            index: i,
            reason: e.to_string(),
        })?;
        map.blocks.extend(part.blocks);
    }
    if let Some(e) = map.blocks.iter().find(|e| e.index >= id.block_offset) {
        return Err(BlobError::InvalidBlockMap {
            index: id.block_offset,
            reason: format!("entry names block {} at or after the map", e.index),
        });
    }
    Ok(map)
}

/// The map of any blob (JS `getBlockMap` with `hashes`): the stored one, or one entry per
/// block for a plain blob; with the hash of each data block (the blocks are read).
pub(crate) async fn read_with_hashes<C: BlobCore>(
    core: &C,
    id: &BlobId,
) -> Result<HashMap<[u8; 32], MapEntry>, BlobError> {
    let length = core.state().await.length;
    if id.end() > length {
        return Err(BlobError::OutOfBounds {
            start: id.block_offset,
            end: id.end(),
            length,
        });
    }
    let entries: Vec<MapEntry> = if id.block_map {
        read(core, id).await?.blocks
    } else {
        let mut v = Vec::new();
        for i in id.block_offset..id.end() {
            v.push(MapEntry {
                index: i,
                byte_length: 0,
            });
        }
        v
    };
    let mut hashes = HashMap::with_capacity(entries.len());
    for mut e in entries {
        let b = core
            .get(e.index)
            .await?
            .ok_or(BlobError::BlockNotAvailable(e.index))?;
        e.byte_length = b.len() as u64;
        hashes.insert(block_hash(&b), e);
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_js() {
        // c.encode(map, { blocks: [{ index: 1, byteLength: 300 }] }): 00 01 01 fd 2c 01
        let b = encode(&[MapEntry {
            index: 1,
            byte_length: 300,
        }]);
        assert_eq!(b, vec![vec![0, 1, 1, 0xfd, 0x2c, 0x01]]);
        assert_eq!(decode_block(&b[0]).unwrap().blocks[0].byte_length, 300);
        let many: Vec<MapEntry> = (0..ENTRIES_PER_BLOCK as u64 + 1)
            .map(|i| MapEntry {
                index: i,
                byte_length: 1,
            })
            .collect();
        let blocks = encode(&many);
        assert_eq!(blocks.len(), 2);
        assert_eq!(decode_block(&blocks[1]).unwrap().blocks.len(), 1);
        assert!(decode_block(&[1, 0]).is_err());
        assert!(decode_block(&[0, 5, 1]).is_err());
    }
}
