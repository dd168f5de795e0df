//! [`BlobReader`] (JS `BlobReadStream` / `BlockMapReadStream`): a blob, or a byte range of it,
//! block by block.

use super::block_map::{self, MapEntry};
use super::{BlobCore, BlobError, BlobId};

/// A byte range of a blob (JS `{ start, end, length }`): from `start` (default 0) to `end`
/// **inclusive**, or `length` bytes (`length` wins over `end`, as in JS). Ranges are clamped
/// to the blob (JS reads past a blob's end into the next one's bytes; here a range stops at the
/// blob's end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadRange {
    /// First byte.
    pub start: Option<u64>,
    /// Last byte (inclusive).
    pub end: Option<u64>,
    /// Number of bytes.
    pub length: Option<u64>,
}

impl ReadRange {
    /// `length` bytes from `start`.
    pub fn start_len(start: u64, length: u64) -> Self {
        ReadRange {
            start: Some(start),
            end: None,
            length: Some(length),
        }
    }

    /// Bytes `start..=end`.
    pub fn inclusive(start: u64, end: u64) -> Self {
        ReadRange {
            start: Some(start),
            end: Some(end),
            length: None,
        }
    }

    /// `(start, end)` as offsets into content of `size` bytes, end exclusive, clamped.
    pub fn resolve(&self, size: u64) -> (u64, u64) {
        let start = self.start.unwrap_or(0).min(size);
        let end = match (self.length, self.end) {
            (Some(l), _) => start.saturating_add(l),
            (None, Some(e)) => e.saturating_add(1),
            (None, None) => size,
        };
        (start, end.clamp(start, size))
    }
}

/// Reads a blob; see [`super::Hyperblobs::reader`]. [`BlobReader::next`] gives the chunks in
/// order (whole blocks, cut at the range's edges).
#[derive(Debug)]
pub struct BlobReader<C: BlobCore> {
    core: C,
    /// The blocks to read: a plain blob's run, or a block map's entries.
    plan: Plan,
    /// Remaining bytes.
    remaining: u64,
    /// Bytes to skip at the start of the next block.
    skip: u64,
}

#[derive(Debug)]
enum Plan {
    Run { next: u64, end: u64 },
    Map { entries: Vec<MapEntry>, next: usize },
}

impl<C: BlobCore> BlobReader<C> {
    pub(super) async fn open(core: C, id: BlobId, range: ReadRange) -> Result<Self, BlobError> {
        if id.block_map {
            let map = block_map::read(&core, &id).await?;
            let size: u64 = map
                .blocks
                .iter()
                .fold(0u64, |a, b| a.saturating_add(b.byte_length));
            let (start, end) = range.resolve(size);
            // Find the first block (JS `seekBlockMap`).
            let mut first = map.blocks.len();
            let mut skip = 0;
            let mut at = 0u64;
            for (i, b) in map.blocks.iter().enumerate() {
                if start < at.saturating_add(b.byte_length) {
                    first = i;
                    skip = start - at;
                    break;
                }
                at = at.saturating_add(b.byte_length);
            }
            let entries = map.blocks[first.min(map.blocks.len())..].to_vec();
            let blocks: Vec<u64> = entries.iter().map(|e| e.index).collect();
            for (s, e) in runs(&blocks) {
                core.prefetch(s, e).await;
            }
            return Ok(BlobReader {
                core,
                plan: Plan::Map { entries, next: 0 },
                remaining: end - start,
                skip,
            });
        }
        let (start, end) = range.resolve(id.byte_length);
        let blob_end = id.end();
        let length = core.state().await.length;
        if blob_end > length {
            return Err(BlobError::OutOfBounds {
                start: id.block_offset,
                end: blob_end,
                length,
            });
        }
        let (first, skip) = if start == 0 {
            (id.block_offset, 0)
        } else {
            locate(&core, &id, start).await?
        };
        let last = if end == id.byte_length || end == start {
            blob_end
        } else {
            match core.seek(id.byte_offset.saturating_add(end)).await? {
                // The block holding the end byte (exclusive): read up to and including it.
                Some((i, off)) => (if off == 0 { i } else { i + 1 }).clamp(first, blob_end),
                None => blob_end,
            }
        };
        if end > start {
            core.prefetch(first, last).await;
        }
        Ok(BlobReader {
            core,
            plan: Plan::Run {
                next: first,
                end: blob_end,
            },
            remaining: end - start,
            skip,
        })
    }

    /// A reader of nothing.
    pub fn empty(core: C) -> Self {
        BlobReader {
            core,
            plan: Plan::Run { next: 0, end: 0 },
            remaining: 0,
            skip: 0,
        }
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next chunk; `None` at the end of the range. A block no peer has is
    /// [`BlobError::BlockNotAvailable`].
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, BlobError> {
        while self.remaining > 0 {
            let index = match &mut self.plan {
                Plan::Run { next, end } => {
                    if *next >= *end {
                        return Ok(None);
                    }
                    *next += 1;
                    *next - 1
                }
                Plan::Map { entries, next } => {
                    let Some(e) = entries.get(*next) else {
                        return Ok(None);
                    };
                    *next += 1;
                    e.index
                }
            };
            let mut block = self
                .core
                .get(index)
                .await?
                .ok_or(BlobError::BlockNotAvailable(index))?;
            let skip = std::mem::take(&mut self.skip);
            if skip as usize >= block.len() {
                // A block shorter than the offset (a map entry lying about its size).
                continue;
            }
            if skip > 0 {
                block.drain(..skip as usize);
            }
            if block.len() as u64 > self.remaining {
                block.truncate(self.remaining as usize);
            }
            self.remaining -= block.len() as u64;
            if block.is_empty() {
                continue;
            }
            return Ok(Some(block));
        }
        Ok(None)
    }

    /// Read everything left into one buffer.
    pub async fn read_to_end(mut self) -> Result<Vec<u8>, BlobError> {
        let mut out = Vec::with_capacity(self.remaining.min(1 << 30) as usize);
        while let Some(c) = self.next().await? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }
}

/// The block and offset of content byte `start` of a plain blob: by the core's tree, or by
/// walking the blob's blocks where the tree nodes are not held.
async fn locate<C: BlobCore>(core: &C, id: &BlobId, start: u64) -> Result<(u64, u64), BlobError> {
    if let Some((index, offset)) = core.seek(id.byte_offset.saturating_add(start)).await? {
        if index >= id.block_offset && index <= id.end() {
            return Ok((index, offset));
        }
    }
    let mut at = 0u64;
    for i in id.block_offset..id.end() {
        let len = core
            .get(i)
            .await?
            .ok_or(BlobError::BlockNotAvailable(i))?
            .len() as u64;
        if start < at + len {
            return Ok((i, start - at));
        }
        at += len;
    }
    Ok((id.end(), 0))
}

/// Consecutive runs `[start, end)` of `blocks`.
fn runs(blocks: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &b in blocks {
        match out.last_mut() {
            Some((_, e)) if *e == b => *e += 1,
            _ => out.push((b, b + 1)),
        }
    }
    out
}
