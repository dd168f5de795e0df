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
/// Pages one remote may make us hold (16 MiB, 2^27 advertised blocks beyond its contiguous
/// prefix): bits on further pages are dropped, so a hostile peer cannot exhaust memory.
pub const MAX_PAGES: usize = 4096;

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

    /// The page `p` to set bits in, allocated if missing and the [`MAX_PAGES`] budget allows.
    fn page_for_set(&mut self, p: u64) -> Option<&mut [u32; PAGE_WORDS]> {
        if !self.pages.contains_key(&p) && self.pages.len() >= MAX_PAGES {
            return None;
        }
        Some(
            self.pages
                .entry(p)
                .or_insert_with(|| Box::new([0; PAGE_WORDS])),
        )
    }

    /// First bit of the first allocated page after page `p`.
    fn next_page_start(&self, p: u64) -> Option<u64> {
        self.pages
            .range(p + 1..)
            .next()
            .map(|(&q, _)| q * PAGE_BITS)
    }

    /// Set bit `index` to `value`. Setting a bit on a new page beyond the [`MAX_PAGES`] budget
    /// is dropped.
    pub fn set(&mut self, index: u64, value: bool) {
        let (p, bit) = (index / PAGE_BITS, (index % PAGE_BITS) as usize);
        let page = if value {
            self.page_for_set(p)
        } else {
            self.pages.get_mut(&p).map(|pg| &mut **pg)
        };
        let Some(page) = page else {
            return;
        };
        let m = 1u32 << (bit & 31);
        if value {
            page[bit >> 5] |= m;
        } else {
            page[bit >> 5] &= !m;
        }
    }

    /// Set bits `start..end` to `value` (whole words at a time where possible). Pages that are
    /// missing (to clear) or over the budget (to set) are skipped, so the work follows the pages
    /// held, not the length of the range.
    pub fn set_range(&mut self, start: u64, end: u64, value: bool) {
        let mut i = start;
        while i < end {
            let p = i / PAGE_BITS;
            let page = if value {
                self.page_for_set(p)
            } else {
                self.pages.get_mut(&p).map(|pg| &mut **pg)
            };
            let Some(page) = page else {
                // Nothing to do on this page: go to the next one we hold.
                match self.next_page_start(p) {
                    Some(next) => i = next.max(i),
                    None => return,
                }
                continue;
            };
            // The rest of the range on this page.
            let page_end = end.min((p + 1).saturating_mul(PAGE_BITS));
            while i < page_end {
                let bit = (i % PAGE_BITS) as usize;
                if bit.is_multiple_of(32) && page_end - i >= 32 {
                    page[bit >> 5] = if value { u32::MAX } else { 0 };
                    i += 32;
                } else {
                    let m = 1u32 << (bit & 31);
                    if value {
                        page[bit >> 5] |= m;
                    } else {
                        page[bit >> 5] &= !m;
                    }
                    i += 1;
                }
            }
        }
    }

    /// Overwrite the words starting at bit `start` (a multiple of 32) with `words` (a `bitfield`
    /// message: bit `k` of word `j` is block `start + 32·j + k`). Words for new pages beyond the
    /// [`MAX_PAGES`] budget are dropped.
    pub fn insert(&mut self, start: u64, words: &[u32]) {
        debug_assert_eq!(start % 32, 0);
        for (j, &w) in words.iter().enumerate() {
            let Some(bit) = start.checked_add(32 * j as u64) else {
                return;
            };
            let (p, wi) = (bit / PAGE_BITS, ((bit % PAGE_BITS) / 32) as usize);
            let page = if w != 0 {
                self.page_for_set(p)
            } else {
                self.pages.get_mut(&p).map(|pg| &mut **pg)
            };
            if let Some(pg) = page {
                pg[wi] = w;
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
                // Jump to the next allocated page.
                None => i = self.next_page_start(p)?,
                Some(pg) => {
                    let wi = ((i % PAGE_BITS) / 32) as usize;
                    let w = if value { pg[wi] } else { !pg[wi] };
                    let w = w & (u32::MAX << (i % 32));
                    if w != 0 {
                        let hit = i - i % 32 + u64::from(w.trailing_zeros());
                        return (hit < end).then_some(hit);
                    }
                    // The last word of the index space has no successor.
                    i = (i - i % 32).checked_add(32)?;
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

/// Largest `want` a remote may send (JS `MAX_RANGE`, 2^21 blocks); longer ones are ignored.
pub const MAX_WANT_RANGE: u64 = 8 * 256 * 1024;
/// Smallest batch-aligned `want` (JS `MIN_RANGE`).
const MIN_WANT_RANGE: u64 = 32;
/// Tracked batch wants before the remote counts as wanting everything (JS `MAX`).
const MAX_WANTS: usize = 512;
/// Tracked `any` wants before the remote counts as wanting everything (JS `MAX_ANY`).
const MAX_ANY_WANTS: usize = 16;
/// Distinct batch sizes before the remote counts as wanting everything (JS `MAX_REMOTE_BATCHES`).
const MAX_WANT_BATCHES: usize = 4;

/// What one remote said it wants (`want`/`unwant`), to filter `range` broadcasts (JS
/// `RemoteWants` in `lib/wants.js`). Misshapen or too many wants make it want everything.
#[derive(Debug, Clone, Default)]
pub struct RemoteWants {
    any: Vec<(u64, u64)>,
    all: bool,
    size: usize,
    /// Batch length → batch numbers (`start / length`).
    batches: BTreeMap<u64, std::collections::BTreeSet<u64>>,
}

fn valid_batch(start: u64, length: u64) -> bool {
    (MIN_WANT_RANGE..=MAX_WANT_RANGE).contains(&length)
        && length.is_power_of_two()
        && start & (length - 1) == 0
}

impl RemoteWants {
    /// Nothing wanted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a `want`; false when it is ignored (longer than [`MAX_WANT_RANGE`]).
    pub fn add(&mut self, start: u64, length: u64, any: bool) -> bool {
        if any {
            if self.any.len() < MAX_ANY_WANTS {
                self.any.push((start, length));
            } else {
                self.all = true;
            }
            return true;
        }
        if length > MAX_WANT_RANGE {
            return false;
        }
        if !valid_batch(start, length) || self.size >= MAX_WANTS {
            self.all = true;
            return true;
        }
        if !self.batches.contains_key(&length) && self.batches.len() >= MAX_WANT_BATCHES {
            self.all = true;
            return true;
        }
        if self
            .batches
            .entry(length)
            .or_default()
            .insert(start / length)
        {
            self.size += 1;
        }
        true
    }

    /// Forget a want (`unwant`).
    pub fn remove(&mut self, start: u64, length: u64, any: bool) {
        if any {
            if let Some(i) = self.any.iter().position(|&a| a == (start, length)) {
                self.any.swap_remove(i);
            }
            return;
        }
        if !valid_batch(start, length) {
            return;
        }
        if let Some(set) = self.batches.get_mut(&length) {
            if set.remove(&(start / length)) {
                self.size -= 1;
            }
            if set.is_empty() {
                self.batches.remove(&length);
            }
        }
    }

    fn has_any(&self, start: u64, length: u64) -> bool {
        let e = start.saturating_add(length);
        self.any.iter().any(|&(s, l)| {
            let end = s.saturating_add(l);
            (s <= start && start < end) || (s < e && e <= end)
        })
    }

    /// Whether block `index` lies in a wanted batch.
    pub fn has(&self, index: u64) -> bool {
        self.all
            || self
                .batches
                .iter()
                .any(|(&len, set)| set.contains(&(index / len)))
    }

    /// Whether any of `start..start + length` may be wanted (JS `hasRange`: checks at most three
    /// batches of the smallest size, then assumes yes).
    pub fn has_range(&self, start: u64, length: u64) -> bool {
        if self.has_any(start, length) {
            return true;
        }
        if length == 1 {
            return self.has(start);
        }
        let Some(&smallest) = self.batches.keys().next() else {
            return self.all;
        };
        let end = start.saturating_add(length);
        let mut i = start - (start & (smallest - 1));
        let mut checked = 0;
        while i < end {
            if checked == 3 || self.has(i) {
                return true;
            }
            checked += 1;
            i = i.saturating_add(smallest);
        }
        self.all
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

    #[test]
    fn hostile_ranges_terminate_and_stay_bounded() {
        let mut b = RemoteBitfield::new();
        // Clearing the last page of the index space used to overflow `(page + 1) * PAGE_BITS`.
        b.set_range(u64::MAX - (PAGE_BITS - 1), u64::MAX, false);
        b.set_range(0, u64::MAX, false);
        assert!(b.pages.is_empty());
        // Bits at the very top: set, found, cleared.
        b.set_range(u64::MAX - 40, u64::MAX, true);
        assert!(b.get(u64::MAX - 1) && !b.get(u64::MAX - 41));
        assert_eq!(b.find_first(true, 0, u64::MAX), Some(u64::MAX - 40));
        assert_eq!(b.find_first(false, u64::MAX - 40, u64::MAX), None);
        b.set_range(u64::MAX - 40, u64::MAX, false);
        assert_eq!(b.find_first(true, 0, u64::MAX), None);
        // A huge advertised range allocates at most MAX_PAGES pages, and quickly.
        b.set_range(1, u64::MAX, true);
        assert_eq!(b.pages.len(), MAX_PAGES);
        assert!(b.get(1) && !b.get(0));
        // So do single bits and bitfield words scattered over distinct pages.
        let mut b = RemoteBitfield::new();
        for k in 0..2 * MAX_PAGES as u64 {
            b.set(k * PAGE_BITS, true);
            b.insert(((k + 1) << 30) * PAGE_BITS, &[1]);
        }
        assert_eq!(b.pages.len(), MAX_PAGES);
        // Pages already held still take updates.
        b.insert(0, &[0b110]);
        assert!(b.get(1) && b.get(2) && !b.get(0));
    }

    #[test]
    fn remote_wants_follow_js_rules() {
        let mut w = RemoteWants::new();
        assert!(!w.has_range(0, 1000) && !w.has(5));
        assert!(
            !w.add(0, MAX_WANT_RANGE * 2, false),
            "over-long wants are ignored"
        );
        assert!(w.add(1 << 21, 1 << 21, false));
        assert!(w.has((1 << 21) + 7) && !w.has(7));
        assert!(w.has_range((1 << 21) - 10, 20) && !w.has_range(0, 100));
        w.remove(1 << 21, 1 << 21, false);
        assert!(!w.has((1 << 21) + 7));
        // `any` wants match overlapping ranges.
        w.add(100, 50, true);
        assert!(w.has_range(120, 1000) && w.has_range(50, 60) && !w.has_range(200, 10));
        w.remove(100, 50, true);
        assert!(!w.has_range(120, 1000));
        // A misaligned want means "everything".
        w.add(3, 64, false);
        assert!(w.has(1 << 40) && w.has_range(5, 5));
    }
}
