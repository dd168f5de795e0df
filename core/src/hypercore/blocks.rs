//! Block storage: blocks are kept in chunks of consecutive blocks, one storage record per chunk.
//!
//! An append of n small blocks then writes about n/64 records instead of n, which is most of what
//! an append of small blocks costs on an LSM or B-tree store, while a read still touches one
//! record of at most [`CHUNK_MAX_BYTES`] (or one block, when the block alone is larger).
//!
//! A chunk record lives under [`layout::block_key`]`(last)`, the index of its last block, and is
//! `u32le(count) ‖ count × u32le(length) ‖ the blocks' bytes`. Chunks never overlap and hold
//! exactly the blocks that are present locally, so block `i` is in the first chunk whose key is
//! at or after `block_key(i)`, if that chunk starts at or before `i`.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{Batch, Op, Storage};

use super::error::HypercoreError;
use super::layout;

/// Most blocks in one chunk.
pub const CHUNK_MAX_BLOCKS: u64 = 64;
/// A chunk grows past this many bytes only to hold a single larger block.
pub const CHUNK_MAX_BYTES: usize = 64 * 1024;

/// A decoded chunk: blocks `first..=last`.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    first: u64,
    last: u64,
    /// `ends[k]` is where block `first + k` ends in `bytes` (from the start of the data).
    ends: Vec<usize>,
    data_start: usize,
    bytes: Vec<u8>,
}

impl Chunk {
    fn decode(last: u64, bytes: Vec<u8>) -> Result<Self, HypercoreError> {
        let bad =
            |why: &str| HypercoreError::Corrupt(format!("block chunk ending at {last}: {why}"));
        let count = bytes
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
            .ok_or_else(|| bad("truncated header"))?;
        if count == 0 || count > CHUNK_MAX_BLOCKS.max(1) || count > last.saturating_add(1) {
            return Err(bad("bad block count"));
        }
        let data_start = 4 + 4 * count as usize;
        let lens = bytes
            .get(4..data_start)
            .ok_or_else(|| bad("truncated lengths"))?;
        let mut ends = Vec::with_capacity(count as usize);
        let mut end = 0usize;
        for l in lens.chunks_exact(4) {
            end = end
                .checked_add(u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
                .ok_or_else(|| bad("lengths overflow"))?;
            ends.push(end);
        }
        if data_start + end != bytes.len() {
            return Err(bad("lengths do not add up to the record"));
        }
        Ok(Chunk {
            first: last + 1 - count,
            last,
            ends,
            data_start,
            bytes,
        })
    }

    fn block(&self, index: u64) -> &[u8] {
        let k = (index - self.first) as usize;
        let start = if k == 0 { 0 } else { self.ends[k - 1] };
        &self.bytes[self.data_start + start..self.data_start + self.ends[k]]
    }

    fn blocks(&self, from: u64, to_incl: u64) -> Vec<&[u8]> {
        (from..=to_incl).map(|i| self.block(i)).collect()
    }
}

/// The chunk record of `blocks`.
pub(crate) fn encode_chunk(blocks: &[&[u8]]) -> Vec<u8> {
    let data: usize = blocks.iter().map(|b| b.len()).sum();
    let mut out = Vec::with_capacity(4 + 4 * blocks.len() + data);
    out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    for b in blocks {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    }
    for b in blocks {
        out.extend_from_slice(b);
    }
    out
}

/// Queue the records of blocks `start..start + blocks.len()` (none of which is stored yet).
pub(crate) fn put(batch: &mut Batch, start: u64, blocks: &[&[u8]]) {
    let mut i = 0;
    while i < blocks.len() {
        let mut j = i + 1;
        let mut bytes = blocks[i].len();
        while j < blocks.len()
            && ((j - i) as u64) < CHUNK_MAX_BLOCKS
            && bytes + blocks[j].len() <= CHUNK_MAX_BYTES
        {
            bytes += blocks[j].len();
            j += 1;
        }
        let last = start + j as u64 - 1;
        batch.put(layout::block_key(last), encode_chunk(&blocks[i..j]));
        i = j;
    }
}

/// Queue the record of block `index` alone (not stored yet), a block the caller gives away: the
/// record is put in two parts, its 8-byte chunk header and the block as it is, so the block is
/// not copied into a new record (the file backend writes both with one vectored write). The
/// same record as [`put`] of the one block.
pub(crate) fn put_owned(batch: &mut Batch, index: u64, block: Vec<u8>) {
    let mut head = Vec::with_capacity(8);
    head.extend_from_slice(&1u32.to_le_bytes());
    head.extend_from_slice(&(block.len() as u32).to_le_bytes());
    batch.put_parts(layout::block_key(index), vec![head, block]);
}

/// The first chunk whose last block is at or after `index` (a chunk holding `index` ends within
/// the next [`CHUNK_MAX_BLOCKS`] keys).
async fn chunk_at_or_after<S: Storage>(
    storage: &S,
    index: u64,
) -> Result<Option<Chunk>, HypercoreError> {
    Ok(chunks_from(storage, index, 1).await?.into_iter().next())
}

/// Up to `limit` consecutive chunks from the one holding (or following) block `index`, stopping
/// at a gap (a chunk not starting right after the previous one).
async fn chunks_from<S: Storage>(
    storage: &S,
    index: u64,
    limit: usize,
) -> Result<Vec<Chunk>, HypercoreError> {
    let span = CHUNK_MAX_BLOCKS.saturating_mul(limit as u64);
    let end = layout::block_key(index.saturating_add(span));
    let rows = storage
        .scan(&layout::block_key(index), &end, Some(limit))
        .await?;
    let mut out: Vec<Chunk> = Vec::with_capacity(rows.len());
    for (k, v) in rows {
        let last =
            layout::index_of(&k).ok_or_else(|| HypercoreError::Corrupt("bad block key".into()))?;
        let c = Chunk::decode(last, v)?;
        if out.last().is_some_and(|p| p.last + 1 != c.first) {
            break;
        }
        out.push(c);
    }
    Ok(out)
}

/// The chunk the last [`ChunkCache::get`] read, so that reading its neighbours (sequential reads,
/// uploads of consecutive blocks) costs a copy instead of a storage read each; a read right
/// after the cached chunks reads [`READ_AHEAD_CHUNKS`] chunks ahead in one scan.
///
/// Every batch the core writes goes through [`ChunkCache::invalidate`]; a read that raced with a
/// write (seen by the generation counter) is not kept.
#[derive(Debug, Default)]
pub(crate) struct ChunkCache {
    inner: Mutex<CacheSlot>,
}

#[derive(Debug, Default)]
struct CacheSlot {
    /// Consecutive chunks, ascending: the last one read and, after a sequential miss, the ones
    /// read ahead with it.
    chunks: Vec<Arc<Chunk>>,
    generation: u64,
}

/// A read that misses the cache just after its last chunk (a sequential reader, e.g. a peer
/// downloading in order) scans this many chunks at once (one storage scan instead of one
/// point read and one scan per chunk) ...
const READ_AHEAD_CHUNKS: usize = 8;
/// ... keeping at most this many bytes of them.
const READ_AHEAD_BYTES: usize = 512 * 1024;

impl ChunkCache {
    fn lock(&self) -> MutexGuard<'_, CacheSlot> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Block `index` as stored, if present.
    pub(crate) async fn get<S: Storage>(
        &self,
        storage: &S,
        index: u64,
    ) -> Result<Option<Vec<u8>>, HypercoreError> {
        let (generation, sequential) = {
            let slot = self.lock();
            if let Some(c) = slot
                .chunks
                .iter()
                .find(|c| c.first <= index && index <= c.last)
            {
                return Ok(Some(c.block(index).to_vec()));
            }
            let sequential = slot.chunks.last().is_some_and(|c| c.last + 1 == index);
            (slot.generation, sequential)
        };
        let chunks = if sequential {
            chunks_from(storage, index, READ_AHEAD_CHUNKS).await?
        } else {
            // A chunk ending at `index` (every chunk of a core appended one block at a time, and
            // the last block of the others) is a point read, cheaper than the scan that finds
            // the rest.
            match storage.get(&layout::block_key(index)).await? {
                Some(v) => vec![Chunk::decode(index, v)?],
                None => chunks_from(storage, index, 1).await?,
            }
        };
        let Some(first) = chunks.first().filter(|c| c.first <= index) else {
            return Ok(None);
        };
        let out = first.block(index).to_vec();
        // The chunk read, and those read ahead with it up to READ_AHEAD_BYTES.
        let mut bytes = 0;
        let keep: Vec<Arc<Chunk>> = chunks
            .into_iter()
            .enumerate()
            .take_while(|(i, c)| {
                bytes += c.bytes.len();
                *i == 0 || bytes <= READ_AHEAD_BYTES
            })
            .map(|(_, c)| Arc::new(c))
            .collect();
        let mut slot = self.lock();
        if slot.generation == generation {
            slot.chunks = keep;
        }
        Ok(Some(out))
    }

    /// Forget the cached chunk if `batch` writes or deletes any block record.
    pub(crate) fn invalidate(&self, batch: &Batch) {
        let touches_blocks = batch.ops.iter().any(|op| match op {
            Op::Put(k, _) | Op::PutParts(k, _) | Op::Delete(k) => k.first() == Some(&layout::BLOCK),
            Op::DeleteRange(..) => true,
        });
        if touches_blocks {
            let mut slot = self.lock();
            slot.chunks.clear();
            slot.generation = slot.generation.wrapping_add(1);
        }
    }
}

/// The present blocks of `start..end`, ascending, as `(index, stored bytes)`.
pub(crate) async fn range<S: Storage>(
    storage: &S,
    start: u64,
    end: u64,
) -> Result<Vec<(u64, Vec<u8>)>, HypercoreError> {
    if start >= end {
        return Ok(Vec::new());
    }
    // A chunk holding a block below `end` ends before `end + CHUNK_MAX_BLOCKS - 1`.
    let rows = storage
        .scan(
            &layout::block_key(start),
            &layout::block_key(end.saturating_add(CHUNK_MAX_BLOCKS)),
            None,
        )
        .await?;
    let mut out = Vec::new();
    for (k, v) in rows {
        let last =
            layout::index_of(&k).ok_or_else(|| HypercoreError::Corrupt("bad block key".into()))?;
        let c = Chunk::decode(last, v)?;
        if c.first >= end {
            break;
        }
        for i in c.first.max(start)..=c.last.min(end - 1) {
            out.push((i, c.block(i).to_vec()));
        }
    }
    Ok(out)
}

/// Queue the removal of blocks `start..end` (`end: None` = everything from `start` on): chunks
/// inside the range are deleted, chunks crossing its edges are rewritten without those blocks.
pub(crate) async fn remove<S: Storage>(
    storage: &S,
    batch: &mut Batch,
    start: u64,
    end: Option<u64>,
) -> Result<(), HypercoreError> {
    let stop = end.unwrap_or(u64::MAX);
    if start >= stop {
        return Ok(());
    }
    let mut rewrites: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut suffix_done = false;
    if let Some(c) = chunk_at_or_after(storage, start).await? {
        if c.first < start {
            rewrites.push((start - 1, encode_chunk(&c.blocks(c.first, start - 1))));
        }
        if c.last >= stop && c.first < stop {
            rewrites.push((c.last, encode_chunk(&c.blocks(stop, c.last))));
            suffix_done = true;
        }
    }
    match end {
        None => batch.delete_range(layout::block_key(start), layout::tag_end(layout::BLOCK)),
        Some(end) => {
            if !suffix_done {
                if let Some(c) = chunk_at_or_after(storage, end).await? {
                    if c.first < end {
                        rewrites.push((c.last, encode_chunk(&c.blocks(end, c.last))));
                    }
                }
            }
            batch.delete_range(layout::block_key(start), layout::block_key(end))
        }
    };
    for (last, record) in rewrites {
        batch.put(layout::block_key(last), record);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use futures_executor::block_on;

    /// Block `index` read without a cache.
    async fn get(s: &MemoryStorage, index: u64) -> Result<Option<Vec<u8>>, HypercoreError> {
        ChunkCache::default().get(s, index).await
    }

    fn blocks(n: u64) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i as u8; (i % 7) as usize]).collect()
    }

    /// Stored blocks against a model through appends in odd batch sizes, removals of every shape
    /// (inside one chunk, across chunks, to the end) and single-block re-inserts.
    #[test]
    fn chunks_match_a_model() {
        block_on(async {
            let s = MemoryStorage::new();
            // One cache through the whole test, as a core keeps it: every write invalidates it.
            let cache = ChunkCache::default();
            let write = |b: Batch| {
                cache.invalidate(&b);
                s.write(b)
            };
            let all = blocks(300);
            let mut model: Vec<Option<Vec<u8>>> = vec![None; 300];
            let mut at = 0u64;
            for n in [1u64, 5, 64, 65, 100, 30, 35] {
                let refs: Vec<&[u8]> = all[at as usize..(at + n) as usize]
                    .iter()
                    .map(Vec::as_slice)
                    .collect();
                let mut b = Batch::new();
                put(&mut b, at, &refs);
                write(b).await.unwrap();
                for i in at..at + n {
                    model[i as usize] = Some(all[i as usize].clone());
                }
                at += n;
            }
            let check = |model: Vec<Option<Vec<u8>>>| {
                let s = s.clone();
                let cache = &cache;
                async move {
                    for (i, m) in model.iter().enumerate() {
                        assert_eq!(&get(&s, i as u64).await.unwrap(), m, "block {i}");
                        assert_eq!(&cache.get(&s, i as u64).await.unwrap(), m, "cached {i}");
                    }
                    for i in (0..300u64).rev().step_by(3) {
                        assert_eq!(&cache.get(&s, i).await.unwrap(), &model[i as usize]);
                    }
                    let got = range(&s, 0, 300).await.unwrap();
                    let want: Vec<(u64, Vec<u8>)> = model
                        .iter()
                        .enumerate()
                        .filter_map(|(i, m)| m.clone().map(|m| (i as u64, m)))
                        .collect();
                    assert_eq!(got, want);
                    let got = range(&s, 70, 140).await.unwrap();
                    assert!(got.iter().all(|(i, _)| (70..140).contains(i)));
                }
            };
            check(model.clone()).await;
            for (start, end) in [
                (10u64, Some(12u64)),
                (60, Some(140)),
                (3, Some(4)),
                (200, Some(201)),
                (250, None),
            ] {
                let mut b = Batch::new();
                remove(&s, &mut b, start, end).await.unwrap();
                write(b).await.unwrap();
                for i in start..end.unwrap_or(300) {
                    model[i as usize] = None;
                }
                check(model.clone()).await;
            }
            // Re-insert single blocks into holes (what a reader downloading does).
            for i in [11u64, 100, 60, 139, 299] {
                let mut b = Batch::new();
                put(&mut b, i, &[&all[i as usize]]);
                write(b).await.unwrap();
                model[i as usize] = Some(all[i as usize].clone());
            }
            check(model.clone()).await;
        });
    }

    #[test]
    fn an_owned_block_is_put_as_the_record_of_it_alone() {
        for block in [
            vec![],
            b"x".to_vec(),
            vec![3u8; CHUNK_MAX_BYTES],
            vec![5u8; 100_000],
        ] {
            let (mut a, mut b) = (Batch::new(), Batch::new());
            put(&mut a, 7, &[&block]);
            put_owned(&mut b, 7, block.clone());
            assert!(matches!(&b.ops[..], [Op::PutParts(..)]));
            let joined: Vec<Op> = b.ops.into_iter().map(Op::joined).collect();
            assert_eq!(a.ops, joined, "block of {} bytes", block.len());
        }
    }

    #[test]
    fn big_blocks_get_their_own_chunk_and_bad_records_are_errors() {
        block_on(async {
            let s = MemoryStorage::new();
            let big = vec![7u8; CHUNK_MAX_BYTES + 1];
            let mut b = Batch::new();
            put(&mut b, 0, &[b"a", &big, b"c"]);
            assert_eq!(b.ops.len(), 3);
            s.write(b).await.unwrap();
            assert_eq!(get(&s, 1).await.unwrap(), Some(big));
            for bad in [vec![], vec![0, 0, 0, 0], vec![1, 0, 0, 0, 5, 0, 0, 0, 1]] {
                let mut b = Batch::new();
                b.put(layout::block_key(9), bad);
                s.write(b).await.unwrap();
                assert!(matches!(
                    get(&s, 9).await.unwrap_err(),
                    HypercoreError::Corrupt(_)
                ));
            }
        });
    }

    /// Sequential reads read ahead several chunks in one scan; every block still reads back
    /// exactly, across gaps (missing blocks end the read-ahead), single-block chunks, jumps
    /// backwards and invalidating writes.
    #[test]
    fn sequential_reads_read_ahead_exactly() {
        block_on(async {
            let s = MemoryStorage::new();
            let cache = ChunkCache::default();
            let block = |i: u64| format!("block-{i}").into_bytes();
            let mut b = Batch::new();
            // Blocks 0..40 in chunks of 3, 41..60 one per chunk; 40 and 60.. are missing.
            for start in (0..39).step_by(3) {
                let blocks: Vec<Vec<u8>> = (start..start + 3).map(block).collect();
                let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
                put(&mut b, start, &refs);
            }
            for i in 41..60 {
                put(&mut b, i, &[&block(i)]);
            }
            s.write(b).await.unwrap();
            let expect = |i: u64| (i < 39 || (41..60).contains(&i)).then(|| block(i));
            for round in 0..2 {
                for i in 0..64 {
                    assert_eq!(cache.get(&s, i).await.unwrap(), expect(i), "{round} {i}");
                }
                for i in [50, 7, 8, 9, 45, 46, 0, 1] {
                    assert_eq!(cache.get(&s, i).await.unwrap(), expect(i), "{round} {i}");
                }
            }
            // Rewrite the chunk of 9..12 while it is cached (read ahead from 6).
            assert_eq!(cache.get(&s, 6).await.unwrap(), Some(block(6)));
            let mut b = Batch::new();
            put(&mut b, 9, &[b"x", b"y", b"z"]);
            s.write(b.clone()).await.unwrap();
            cache.invalidate(&b);
            assert_eq!(cache.get(&s, 7).await.unwrap(), Some(block(7)));
            assert_eq!(cache.get(&s, 8).await.unwrap(), Some(block(8)));
            assert_eq!(cache.get(&s, 9).await.unwrap(), Some(b"x".to_vec()));
            assert_eq!(cache.get(&s, 11).await.unwrap(), Some(b"z".to_vec()));
        });
    }

    /// The cache serves a chunk's neighbours from memory, and a write touching blocks makes it
    /// read storage again (without the invalidation the second read would see the old bytes).
    #[test]
    fn cache_is_invalidated_by_block_writes_only() {
        block_on(async {
            let s = MemoryStorage::new();
            let cache = ChunkCache::default();
            let mut b = Batch::new();
            put(&mut b, 0, &[b"a", b"b", b"c", b"d"]);
            s.write(b).await.unwrap();
            assert_eq!(cache.get(&s, 1).await.unwrap().unwrap(), b"b");
            let mut b = Batch::new();
            b.put(
                layout::block_key(3),
                encode_chunk(&[b"a", b"b", b"X", b"d"]),
            );
            s.write(b.clone()).await.unwrap();
            // Not told: still the cached chunk (this is why the core routes every write here).
            assert_eq!(cache.get(&s, 2).await.unwrap().unwrap(), b"c");
            let mut other = Batch::new();
            other.put(vec![layout::BLOCK + 1, 0], b"x".to_vec());
            cache.invalidate(&other);
            assert_eq!(cache.get(&s, 2).await.unwrap().unwrap(), b"c");
            cache.invalidate(&b);
            assert_eq!(cache.get(&s, 2).await.unwrap().unwrap(), b"X");
            let mut b = Batch::new();
            b.delete_range(vec![0xf0], vec![0xf1]);
            s.write(b.clone()).await.unwrap();
            cache.invalidate(&b);
            let mut b = Batch::new();
            b.delete(layout::block_key(3));
            s.write(b.clone()).await.unwrap();
            cache.invalidate(&b);
            assert_eq!(cache.get(&s, 2).await.unwrap(), None);
        });
    }
}
