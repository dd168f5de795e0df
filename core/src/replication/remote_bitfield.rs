//! What one remote peer says it has: a sparse, paged bitfield (JS `lib/remote-bitfield.js`).
//!
//! Fed by `range` and `bitfield` messages. Pages of 32768 bits are allocated only when a bit in
//! them is set, so memory follows what the remote actually advertised; callers bound the ranges
//! they set (see the replicator, which clamps them to the lengths in play).

use std::collections::BTreeMap;

/// Bits per page.
const PAGE_BITS: u64 = 32768;
/// u32 words per page.
const PAGE_WORDS: usize = (PAGE_BITS / 32) as usize;

/// A sparse bitfield of the blocks a remote peer has.
#[derive(Debug, Clone, Default)]
pub struct RemoteBitfield {
    pages: BTreeMap<u64, Box<[u32; PAGE_WORDS]>>,
}

impl RemoteBitfield {
    /// An empty bitfield (the remote has nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether bit `index` is set.
    pub fn get(&self, index: u64) -> bool {
        let (p, bit) = (index / PAGE_BITS, (index % PAGE_BITS) as usize);
        self.pages
            .get(&p)
            .is_some_and(|pg| pg[bit >> 5] & (1 << (bit & 31)) != 0)
    }

    /// Set bit `index` to `value`.
    pub fn set(&mut self, index: u64, value: bool) {
        let (p, bit) = (index / PAGE_BITS, (index % PAGE_BITS) as usize);
        let page = match self.pages.get_mut(&p) {
            Some(pg) => pg,
            None if value => self
                .pages
                .entry(p)
                .or_insert_with(|| Box::new([0; PAGE_WORDS])),
            None => return,
        };
        let m = 1u32 << (bit & 31);
        if value {
            page[bit >> 5] |= m;
        } else {
            page[bit >> 5] &= !m;
        }
    }

    /// Set bits `start..end` to `value` (whole words at a time where possible).
    pub fn set_range(&mut self, start: u64, end: u64, value: bool) {
        let mut i = start;
        while i < end {
            if i.is_multiple_of(32) && end - i >= 32 {
                let (p, w) = (i / PAGE_BITS, ((i % PAGE_BITS) / 32) as usize);
                match self.pages.get_mut(&p) {
                    Some(pg) => pg[w] = if value { u32::MAX } else { 0 },
                    None if value => {
                        let mut pg = Box::new([0; PAGE_WORDS]);
                        pg[w] = u32::MAX;
                        self.pages.insert(p, pg);
                    }
                    None => {
                        // Nothing to clear in a missing page: skip to the next page.
                        i = (p + 1) * PAGE_BITS;
                        continue;
                    }
                }
                i += 32;
            } else {
                self.set(i, value);
                i += 1;
            }
        }
    }

    /// Overwrite the words starting at bit `start` (a multiple of 32) with `words` (a `bitfield`
    /// message: bit `k` of word `j` is block `start + 32·j + k`).
    pub fn insert(&mut self, start: u64, words: &[u32]) {
        debug_assert_eq!(start % 32, 0);
        for (j, &w) in words.iter().enumerate() {
            let Some(bit) = start.checked_add(32 * j as u64) else {
                return;
            };
            let (p, wi) = (bit / PAGE_BITS, ((bit % PAGE_BITS) / 32) as usize);
            match self.pages.get_mut(&p) {
                Some(pg) => pg[wi] = w,
                None if w != 0 => {
                    let mut pg = Box::new([0; PAGE_WORDS]);
                    pg[wi] = w;
                    self.pages.insert(p, pg);
                }
                None => {}
            }
        }
    }

    /// First bit at or after `from` whose value is `value`, below `end`.
    pub fn find_first(&self, value: bool, from: u64, end: u64) -> Option<u64> {
        let mut i = from;
        while i < end {
            let p = i / PAGE_BITS;
            match self.pages.get(&p) {
                None if !value => return Some(i),
                None => {
                    // Jump to the next allocated page.
                    let next = self
                        .pages
                        .range(p + 1..)
                        .next()
                        .map(|(&q, _)| q * PAGE_BITS)?;
                    i = next;
                }
                Some(pg) => {
                    let wi = ((i % PAGE_BITS) / 32) as usize;
                    let w = if value { pg[wi] } else { !pg[wi] };
                    let w = w & (u32::MAX << (i % 32));
                    if w != 0 {
                        let hit = i - i % 32 + u64::from(w.trailing_zeros());
                        return (hit < end).then_some(hit);
                    }
                    i = i - i % 32 + 32;
                }
            }
        }
        None
    }

    /// Drop everything (the remote re-rooted on a new fork).
    pub fn clear(&mut self) {
        self.pages.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_ranges_and_insert() {
        let mut b = RemoteBitfield::new();
        assert!(!b.get(5));
        b.set(5, true);
        assert!(b.get(5));
        b.set_range(10, 100_000, true);
        assert!(b.get(10) && b.get(99_999) && !b.get(100_000) && !b.get(9));
        assert_eq!(b.find_first(false, 10, 200_000), Some(100_000));
        assert_eq!(b.find_first(true, 6, 200_000), Some(10));
        b.set_range(50, 70_000, false);
        assert!(b.get(49) && !b.get(50) && !b.get(69_999) && b.get(70_000));
        assert_eq!(b.find_first(true, 50, 200_000), Some(70_000));
        b.insert(1 << 20, &[0b101, 0, 1]);
        assert!(b.get(1 << 20) && !b.get((1 << 20) + 1) && b.get((1 << 20) + 2));
        assert!(b.get((1 << 20) + 64));
        assert_eq!(b.find_first(true, 100_000, u64::MAX), Some(1 << 20));
        assert_eq!(b.find_first(true, (1 << 20) + 65, u64::MAX), None);
        b.clear();
        assert!(!b.get(5));
        // Clearing a missing page allocates nothing and terminates quickly.
        b.set_range(0, 1 << 40, false);
        assert!(b.pages.is_empty());
    }
}
