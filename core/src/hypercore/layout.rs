//! The storage key layout of one hypercore: every key [`super::core::Hypercore`] and
//! [`super::tree`] read or write is built here.
//!
//! One core owns one [`crate::storage::Storage`] (use [`crate::storage::Prefixed`] to put several
//! cores in one store). Keys are a one-byte type tag followed by big-endian indexes, so a range
//! scan over one type returns its records in index order:
//!
//! | key | value |
//! |---|---|
//! | `0x00` | the header ([`super::core`]'s `Header`: format version, key, manifest, key pair, fork, length, tree hash, signature, encryption flag, a detected conflict) |
//! | `0x01 ‖ u64be(index)` | block `index` as stored (encrypted and padded when the core is encrypted) |
//! | `0x02 ‖ u64be(page)` | merkle tree nodes `32·page .. 32·page+31`: `u32le(presence bitmap) ‖ 32 × (u64le(size) ‖ hash(32))` ([`super::tree::NodePage`], 1284 bytes) |
//! | `0x03 ‖ u64be(page)` | local bitfield page `page` (4096 bytes) |
//!
//! The header is rewritten in the same atomic batch as every change it summarises, so a reopened
//! core always sees a consistent state.

/// Tag of the header record.
pub const HEADER: u8 = 0x00;
/// Tag of block records.
pub const BLOCK: u8 = 0x01;
/// Tag of tree node records.
pub const TREE_NODE: u8 = 0x02;
/// Tag of bitfield page records.
pub const BITFIELD: u8 = 0x03;

/// Length of every key except the header's.
pub const KEY_LEN: usize = 9;

/// The header key.
pub fn header_key() -> Vec<u8> {
    vec![HEADER]
}

#[inline]
fn tagged(tag: u8, index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(KEY_LEN);
    k.push(tag);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Key of block `index`.
#[inline]
pub fn block_key(index: u64) -> Vec<u8> {
    tagged(BLOCK, index)
}

/// Key of tree node page `page` (nodes `32·page ..= 32·page + 31`, see [`super::tree::page_of`]).
#[inline]
pub fn tree_node_key(page: u64) -> Vec<u8> {
    tagged(TREE_NODE, page)
}

/// Key of bitfield page `page`.
#[inline]
pub fn bitfield_key(page: u64) -> Vec<u8> {
    tagged(BITFIELD, page)
}

/// First key after every record of type `tag` (exclusive scan end).
pub fn tag_end(tag: u8) -> Vec<u8> {
    vec![tag + 1]
}

/// Parse the index out of a 9-byte typed key.
pub fn index_of(key: &[u8]) -> Option<u64> {
    if key.len() != KEY_LEN {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[1..]);
    Some(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_index() {
        let mut keys: Vec<Vec<u8>> = [5u64, 256, 1, 65536, 0]
            .iter()
            .map(|&i| block_key(i))
            .collect();
        keys.sort();
        let idx: Vec<u64> = keys.iter().map(|k| index_of(k).unwrap()).collect();
        assert_eq!(idx, vec![0, 1, 5, 256, 65536]);
        assert!(header_key() < block_key(0));
        assert!(block_key(u64::MAX) < tree_node_key(0));
        assert!(tree_node_key(u64::MAX) < tag_end(TREE_NODE));
        assert_eq!(index_of(&header_key()), None);
    }
}
