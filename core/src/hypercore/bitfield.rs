//! The local bitfield: which blocks this core holds (`lib/bitfield.js`).
//!
//! One bit per block, LSB first: bit `i` is bit `i & 31` of the little-endian u32 word `i >> 5`
//! (`quickbit-universal`). Bits are grouped in pages of [`BITS_PER_PAGE`] bits, persisted as
//! records; only pages that were ever set exist (sparse). Changed pages are tracked so the caller
//! can write them back ([`Bitfield::take_dirty_pages`]).
//!
//! A stored page is either the raw [`BYTES_PER_PAGE`] bytes or, when shorter, runs of words:
//! `kind: u8, count: u16le` with kind 0 = `count` zero words, 1 = `count` all-ones words, 2 =
//! `count` literal words (`count × u32le` follow); the counts add up to the page's 1024 words.
//! A writer's page (ones up to the length, zeros after) is a few bytes instead of 4 KiB, which is
//! most of what an append of one block writes otherwise. Pages are storage only: the wire
//! `bitfield` message is built from the bits, not from these bytes.

use std::collections::{BTreeMap, BTreeSet};

/// Bits in one page (JS `BITS_PER_PAGE`).
pub const BITS_PER_PAGE: u64 = 32768;
/// Bytes of one stored page.
pub const BYTES_PER_PAGE: usize = 4096;
/// Bits in one segment: the unit of a `want` answer (JS `BITS_PER_SEGMENT`).
pub const BITS_PER_SEGMENT: u64 = 2_097_152;

const WORDS_PER_PAGE: usize = BYTES_PER_PAGE / 4;
const PAGE_MASK: u64 = BITS_PER_PAGE - 1;
const PAGES_PER_SEGMENT: u64 = BITS_PER_SEGMENT / BITS_PER_PAGE;
const WORDS_PER_SEGMENT: u64 = BITS_PER_SEGMENT / 32;
const INITIAL_WORDS_PER_SEGMENT: u64 = 1024;

type Page = Box<[u32; WORDS_PER_PAGE]>;

/// Errors loading stored pages.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BitfieldError {
    /// A stored page is neither [`BYTES_PER_PAGE`] raw bytes nor a valid run encoding.
    #[error("bitfield page {page} ({len} bytes) is not a valid stored page")]
    BadPage {
        /// Page index.
        page: u64,
        /// Its length.
        len: usize,
    },
    /// A stored page lies past the last page of the `u64` index space.
    #[error("bitfield page {0} is out of range")]
    PageOutOfRange(u64),
}

/// A sparse bitfield of blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitfield {
    pages: BTreeMap<u64, Page>,
    dirty: BTreeSet<u64>,
}

/// Mask of the bits `lo..hi` (0 ≤ lo < hi ≤ 32) of a word.
#[inline]
fn mask(lo: u32, hi: u32) -> u32 {
    let upper = if hi >= 32 { u32::MAX } else { (1u32 << hi) - 1 };
    upper & (u32::MAX << lo)
}

#[inline]
fn split(index: u64) -> (u64, usize) {
    (index / BITS_PER_PAGE, (index & PAGE_MASK) as usize)
}

impl Bitfield {
    /// An empty bitfield.
    pub fn new() -> Self {
        Self::default()
    }

    /// Install a stored page (not marked dirty). Replaces the page if present.
    pub fn load_page(&mut self, page_index: u64, bytes: &[u8]) -> Result<(), BitfieldError> {
        let page = page_from_bytes(bytes).ok_or(BitfieldError::BadPage {
            page: page_index,
            len: bytes.len(),
        })?;
        if page_index > u64::MAX / BITS_PER_PAGE {
            return Err(BitfieldError::PageOutOfRange(page_index));
        }
        self.pages.insert(page_index, page);
        self.dirty.remove(&page_index);
        Ok(())
    }

    /// The stored form of page `page_index`, if it exists.
    pub fn page_bytes(&self, page_index: u64) -> Option<Vec<u8>> {
        self.pages.get(&page_index).map(|p| page_to_bytes(p))
    }

    /// Indexes of the pages that exist.
    pub fn page_indexes(&self) -> impl Iterator<Item = u64> + '_ {
        self.pages.keys().copied()
    }

    /// The pages changed since the last call, with their stored bytes, in page order.
    pub fn take_dirty_pages(&mut self) -> Vec<(u64, Vec<u8>)> {
        let dirty = core::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|i| self.pages.get(&i).map(|p| (i, page_to_bytes(p))))
            .collect()
    }

    /// Whether any page changed since the last [`Bitfield::take_dirty_pages`].
    pub fn has_dirty_pages(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Drop every page (and the dirty set). The caller deletes the stored pages.
    pub fn clear(&mut self) {
        self.pages.clear();
        self.dirty.clear();
    }

    /// Bit `index`.
    pub fn get(&self, index: u64) -> bool {
        let (p, bit) = split(index);
        self.pages
            .get(&p)
            .is_some_and(|pg| pg[bit >> 5] & (1 << (bit & 31)) != 0)
    }

    /// Set bit `index` to `value`; returns whether it changed. Clearing a bit of a page that does not
    /// exist creates nothing.
    pub fn set(&mut self, index: u64, value: bool) -> bool {
        let (p, bit) = split(index);
        let page = match self.pages.get_mut(&p) {
            Some(pg) => pg,
            None if value => self.pages.entry(p).or_insert_with(new_page),
            None => return false,
        };
        let w = &mut page[bit >> 5];
        let m = 1u32 << (bit & 31);
        let old = *w;
        if value {
            *w |= m;
        } else {
            *w &= !m;
        }
        let changed = *w != old;
        if changed {
            self.dirty.insert(p);
        }
        changed
    }

    /// Set the bits `start..end` to `value`.
    pub fn set_range(&mut self, start: u64, end: u64, value: bool) {
        let mut i = start;
        while i < end {
            let (p, lo) = split(i);
            let page_end = (p + 1).saturating_mul(BITS_PER_PAGE);
            let stop = end.min(page_end);
            let hi = (stop - p * BITS_PER_PAGE) as usize; // ≤ BITS_PER_PAGE
            let page = match self.pages.get_mut(&p) {
                Some(pg) => Some(pg),
                None if value => Some(self.pages.entry(p).or_insert_with(new_page)),
                None => None,
            };
            if let Some(page) = page {
                if fill(page, lo, hi, value) {
                    self.dirty.insert(p);
                }
            }
            if stop == end {
                break;
            }
            i = stop;
        }
    }

    /// First index ≥ `from` whose bit is `value`. For `false` this is always `Some` unless `from`
    /// lies in the last possible page and every later bit is set.
    pub fn find_first(&self, value: bool, from: u64) -> Option<u64> {
        let (p0, bit0) = split(from);
        if value {
            for (&p, page) in self.pages.range(p0..) {
                let start = if p == p0 { bit0 } else { 0 };
                if let Some(b) = scan_forward(page, start, false) {
                    return Some(p * BITS_PER_PAGE + b as u64);
                }
            }
            return None;
        }
        let (mut p, mut bit) = (p0, bit0);
        loop {
            match self.pages.get(&p) {
                None => return Some(p * BITS_PER_PAGE + bit as u64),
                Some(page) => {
                    if let Some(b) = scan_forward(page, bit, true) {
                        return Some(p * BITS_PER_PAGE + b as u64);
                    }
                }
            }
            if p >= u64::MAX / BITS_PER_PAGE {
                return None;
            }
            p += 1;
            bit = 0;
        }
    }

    /// Last index ≤ `from` whose bit is `value`.
    pub fn find_last(&self, value: bool, from: u64) -> Option<u64> {
        let (p0, bit0) = split(from);
        if value {
            for (&p, page) in self.pages.range(..=p0).rev() {
                let start = if p == p0 {
                    bit0
                } else {
                    BITS_PER_PAGE as usize - 1
                };
                if let Some(b) = scan_backward(page, start, false) {
                    return Some(p * BITS_PER_PAGE + b as u64);
                }
            }
            return None;
        }
        let (mut p, mut bit) = (p0, bit0);
        loop {
            match self.pages.get(&p) {
                None => return Some(p * BITS_PER_PAGE + bit as u64),
                Some(page) => {
                    if let Some(b) = scan_backward(page, bit, true) {
                        return Some(p * BITS_PER_PAGE + b as u64);
                    }
                }
            }
            if p == 0 {
                return None;
            }
            p -= 1;
            bit = BITS_PER_PAGE as usize - 1;
        }
    }

    /// First set bit at or after `from`.
    pub fn first_set(&self, from: u64) -> Option<u64> {
        self.find_first(true, from)
    }

    /// First unset bit at or after `from`.
    pub fn first_unset(&self, from: u64) -> Option<u64> {
        self.find_first(false, from)
    }

    /// Last set bit at or before `from`.
    pub fn last_set(&self, from: u64) -> Option<u64> {
        self.find_last(true, from)
    }

    /// Last unset bit at or before `from`.
    pub fn last_unset(&self, from: u64) -> Option<u64> {
        self.find_last(false, from)
    }

    /// Number of bits equal to `value` in `start..start + length` (the end saturates).
    pub fn count(&self, start: u64, length: u64, value: bool) -> u64 {
        let end = start.saturating_add(length);
        if end <= start {
            return 0;
        }
        let (p0, _) = split(start);
        let (p1, _) = split(end - 1);
        let mut ones = 0u64;
        for (&p, page) in self.pages.range(p0..=p1) {
            let base = p * BITS_PER_PAGE;
            let lo = start.saturating_sub(base) as usize;
            let hi = (end - base).min(BITS_PER_PAGE) as usize;
            ones += popcount(page, lo, hi);
        }
        if value {
            ones
        } else {
            (end - start) - ones
        }
    }

    /// Whether any bit in `start..start + length` is set.
    pub fn has_set(&self, start: u64, length: u64) -> bool {
        length > 0
            && self
                .first_set(start)
                .is_some_and(|i| i < start.saturating_add(length))
    }

    /// Whether any bit in `start..start + length` is unset.
    pub fn has_unset(&self, start: u64, length: u64) -> bool {
        length > 0
            && self
                .first_unset(start)
                .is_some_and(|i| i < start.saturating_add(length))
    }

    /// The u32 words (LSB first) covering bits `start..start + length`, with `start` rounded down
    /// and the end rounded up to a multiple of 32. Missing pages read as zeros.
    ///
    /// Allocates `length / 8` bytes: callers bound `length` (wire wants are at most 2^21 bits).
    pub fn words(&self, start: u64, length: u64) -> Vec<u32> {
        let first = start / 32;
        let last = start.saturating_add(length).div_ceil(32);
        let mut out = vec![0u32; (last - first) as usize];
        let p0 = first / WORDS_PER_PAGE as u64;
        let p1 = last.saturating_sub(1) / WORDS_PER_PAGE as u64;
        if last > first {
            for (&p, page) in self.pages.range(p0..=p1) {
                let base = p * WORDS_PER_PAGE as u64;
                let lo = first.max(base);
                let hi = last.min(base + WORDS_PER_PAGE as u64);
                out[(lo - first) as usize..(hi - first) as usize]
                    .copy_from_slice(&page[(lo - base) as usize..(hi - base) as usize]);
            }
        }
        out
    }

    /// The `bitfield` messages answering a want of `start..start + length` (JS `Bitfield.want`):
    /// `start` is aligned down to 32; one `(start, words)` per 2^21-bit segment holding a page, the
    /// words cut at the segment's allocated size as JS sizes it (segment 0 grows 1024·4^k words,
    /// other segments are whole).
    pub fn want(&self, start: u64, length: u64) -> Vec<(u64, Vec<u32>)> {
        let d = start & 31;
        let start = start - d;
        let mut length = length.saturating_add(d);
        let mut j = start % BITS_PER_SEGMENT;
        let mut i = start / BITS_PER_SEGMENT;
        let mut out = Vec::new();
        while length > 0 {
            let seg_pages = i * PAGES_PER_SEGMENT..(i + 1) * PAGES_PER_SEGMENT;
            if let Some((&max_page, _)) = self.pages.range(seg_pages).next_back() {
                let alloc = if i == 0 {
                    let need = (max_page + 1) * WORDS_PER_PAGE as u64;
                    let mut a = INITIAL_WORDS_PER_SEGMENT;
                    while a < need {
                        a *= 4;
                    }
                    a
                } else {
                    WORDS_PER_SEGMENT
                };
                let mut end = j.saturating_add(length).min(BITS_PER_SEGMENT);
                if end & 31 != 0 {
                    end += 32 - (end & 31);
                }
                let (wlo, whi) = (j / 32, (end / 32).min(alloc));
                let seg_start = i * BITS_PER_SEGMENT;
                let words = if whi > wlo {
                    self.words(seg_start + wlo * 32, (whi - wlo) * 32)
                } else {
                    Vec::new()
                };
                out.push((seg_start + j, words));
            }
            j = 0;
            i += 1;
            length = length.saturating_sub(BITS_PER_SEGMENT);
        }
        out
    }
}

fn new_page() -> Page {
    Box::new([0u32; WORDS_PER_PAGE])
}

const RUN_ZEROS: u8 = 0;
const RUN_ONES: u8 = 1;
const RUN_LITERAL: u8 = 2;

/// The stored form of a page: its runs if that is shorter than the raw bytes, else the raw bytes.
fn page_to_bytes(p: &[u32; WORDS_PER_PAGE]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < WORDS_PER_PAGE {
        let kind = match p[i] {
            0 => RUN_ZEROS,
            u32::MAX => RUN_ONES,
            _ => RUN_LITERAL,
        };
        let same = |w: u32| match kind {
            RUN_ZEROS => w == 0,
            RUN_ONES => w == u32::MAX,
            _ => w != 0 && w != u32::MAX,
        };
        let mut j = i + 1;
        while j < WORDS_PER_PAGE && same(p[j]) {
            j += 1;
        }
        out.push(kind);
        out.extend_from_slice(&((j - i) as u16).to_le_bytes());
        if kind == RUN_LITERAL {
            for w in &p[i..j] {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        if out.len() >= BYTES_PER_PAGE {
            return p.iter().flat_map(|w| w.to_le_bytes()).collect();
        }
        i = j;
    }
    out
}

/// A page from its stored form (raw or runs); `None` if it is neither.
fn page_from_bytes(bytes: &[u8]) -> Option<Page> {
    let mut page = new_page();
    if bytes.len() == BYTES_PER_PAGE {
        for (w, c) in page.iter_mut().zip(bytes.chunks_exact(4)) {
            *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        return Some(page);
    }
    let mut at = 0usize;
    let mut rest = bytes;
    while let [kind, c0, c1, tail @ ..] = rest {
        let count = u16::from_le_bytes([*c0, *c1]) as usize;
        let end = at
            .checked_add(count)
            .filter(|&e| e <= WORDS_PER_PAGE && count > 0)?;
        rest = tail;
        match *kind {
            RUN_ZEROS => {}
            RUN_ONES => page[at..end].fill(u32::MAX),
            RUN_LITERAL => {
                let (words, tail) = rest.split_at_checked(count * 4)?;
                for (w, c) in page[at..end].iter_mut().zip(words.chunks_exact(4)) {
                    *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
                rest = tail;
            }
            _ => return None,
        }
        at = end;
    }
    (rest.is_empty() && at == WORDS_PER_PAGE).then_some(page)
}

/// Set bits `lo..hi` of a page to `value`; returns whether anything changed.
fn fill(page: &mut [u32; WORDS_PER_PAGE], lo: usize, hi: usize, value: bool) -> bool {
    let mut changed = false;
    let mut apply = |w: &mut u32, m: u32| {
        let old = *w;
        if value {
            *w |= m;
        } else {
            *w &= !m;
        }
        changed |= *w != old;
    };
    let (w0, w1) = (lo >> 5, (hi - 1) >> 5);
    if w0 == w1 {
        apply(
            &mut page[w0],
            mask((lo & 31) as u32, ((hi - 1) & 31) as u32 + 1),
        );
        return changed;
    }
    apply(&mut page[w0], mask((lo & 31) as u32, 32));
    for w in &mut page[w0 + 1..w1] {
        apply(w, u32::MAX);
    }
    apply(&mut page[w1], mask(0, ((hi - 1) & 31) as u32 + 1));
    changed
}

/// First bit ≥ `start` that is set (or, with `invert`, unset) within the page.
fn scan_forward(page: &[u32; WORDS_PER_PAGE], start: usize, invert: bool) -> Option<usize> {
    let mut wi = start >> 5;
    let mut w = (if invert { !page[wi] } else { page[wi] }) & (u32::MAX << (start & 31));
    loop {
        if w != 0 {
            return Some((wi << 5) + w.trailing_zeros() as usize);
        }
        wi += 1;
        if wi == WORDS_PER_PAGE {
            return None;
        }
        w = if invert { !page[wi] } else { page[wi] };
    }
}

/// Last bit ≤ `start` that is set (or, with `invert`, unset) within the page.
fn scan_backward(page: &[u32; WORDS_PER_PAGE], start: usize, invert: bool) -> Option<usize> {
    let mut wi = start >> 5;
    let mut w = (if invert { !page[wi] } else { page[wi] }) & (u32::MAX >> (31 - (start & 31)));
    loop {
        if w != 0 {
            return Some((wi << 5) + 31 - w.leading_zeros() as usize);
        }
        if wi == 0 {
            return None;
        }
        wi -= 1;
        w = if invert { !page[wi] } else { page[wi] };
    }
}

/// Set bits in `lo..hi` of a page.
fn popcount(page: &[u32; WORDS_PER_PAGE], lo: usize, hi: usize) -> u64 {
    if lo >= hi {
        return 0;
    }
    let (w0, w1) = (lo >> 5, (hi - 1) >> 5);
    if w0 == w1 {
        let m = mask((lo & 31) as u32, ((hi - 1) & 31) as u32 + 1);
        return u64::from((page[w0] & m).count_ones());
    }
    let mut n = u64::from((page[w0] & mask((lo & 31) as u32, 32)).count_ones());
    n += page[w0 + 1..w1]
        .iter()
        .map(|w| u64::from(w.count_ones()))
        .sum::<u64>();
    n + u64::from((page[w1] & mask(0, ((hi - 1) & 31) as u32 + 1)).count_ones())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn get_set_and_layout() {
        let mut b = Bitfield::new();
        assert!(!b.get(0));
        assert!(b.set(0, true));
        assert!(!b.set(0, true));
        assert!(b.set(33, true));
        assert!(b.set(40_000, true));
        assert!(b.get(0) && b.get(33) && b.get(40_000) && !b.get(1));
        let pages = b.take_dirty_pages();
        assert_eq!(pages.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1]);
        // bit 0 → byte 0 bit 0; bit 33 → word 1 bit 1 → byte 4 = 0x02
        // Stored as runs: 2 literal words (bit 0 → word 0 = 1; bit 33 → word 1 = 2), then zeros.
        assert_eq!(
            pages[0].1,
            [&[2u8, 2, 0, 1, 0, 0, 0, 2, 0, 0, 0][..], &[0, 254, 3]].concat()
        );
        // 40_000 - 32_768 = 7232 → word 226 bit 0
        assert_eq!(pages[1].1, [0u8, 226, 0, 2, 1, 0, 1, 0, 0, 0, 0, 29, 3]);
        assert!(b.take_dirty_pages().is_empty());
        // clearing a bit on a missing page creates nothing
        assert!(!b.set(1 << 40, false));
        assert!(!b.has_dirty_pages());
        assert_eq!(b.page_indexes().count(), 2);
        assert!(b.set(0, false));
        assert_eq!(b.take_dirty_pages()[0].0, 0);
    }

    #[test]
    fn load_pages() {
        let mut b = Bitfield::new();
        b.set_range(10, 100_000, true);
        let pages = b.take_dirty_pages();
        let mut c = Bitfield::new();
        for (i, bytes) in &pages {
            c.load_page(*i, bytes).unwrap();
        }
        assert!(!c.has_dirty_pages());
        assert_eq!(c, b);
        assert_eq!(c.count(0, 200_000, true), 100_000 - 10);
        assert_eq!(c.page_bytes(0), Some(pages[0].1.clone()));
        assert_eq!(c.page_bytes(9), None);
        assert_eq!(
            c.load_page(3, &[0; 100]),
            Err(BitfieldError::BadPage { page: 3, len: 100 })
        );
        // A stored page past the index space (a corrupt key) is refused: its bits could not
        // be addressed and queries over it would overflow.
        let full = vec![0xff; BYTES_PER_PAGE];
        for page in [u64::MAX, u64::MAX / BITS_PER_PAGE + 1] {
            let mut d = Bitfield::new();
            assert_eq!(
                d.load_page(page, &full),
                Err(BitfieldError::PageOutOfRange(page))
            );
            assert_eq!(d.first_set(0), None);
        }
        let last = u64::MAX / BITS_PER_PAGE;
        c.load_page(last, &full).unwrap();
        assert_eq!(c.first_set(200_000), Some(last * BITS_PER_PAGE));
    }

    /// Pages round-trip through both stored forms; the runs are used only when shorter; raw pages
    /// (the form stores written before the runs existed) still load; bad runs are errors.
    #[test]
    fn stored_page_forms() {
        let mut b = Bitfield::new();
        b.set_range(0, 32_768 + 1000, true);
        let pages = b.take_dirty_pages();
        assert_eq!(pages[0].1, [1u8, 0, 4]); // all ones
        assert_eq!(pages[1].1.len(), 3 + 7 + 3); // ones, one literal word, zeros
                                                 // Noise: every word literal → longer than raw → stored raw.
        let mut n = Bitfield::new();
        for i in (0..32_768).step_by(3) {
            n.set(i, true);
        }
        let noisy = n.take_dirty_pages();
        assert_eq!(noisy[0].1.len(), BYTES_PER_PAGE);
        for (i, bytes) in pages.iter().chain(&noisy) {
            let mut c = Bitfield::new();
            c.load_page(*i, bytes).unwrap();
            let want = if bytes.len() == BYTES_PER_PAGE {
                &n
            } else {
                &b
            };
            assert_eq!(c.page_bytes(*i), want.page_bytes(*i));
            // The raw form of the same page loads to the same bits.
            let raw: Vec<u8> = c.pages[i].iter().flat_map(|w| w.to_le_bytes()).collect();
            let mut r = Bitfield::new();
            r.load_page(*i, &raw).unwrap();
            assert_eq!(r, c);
        }
        for bad in [
            &[][..],
            &[1, 0, 4, 0][..],       // trailing byte
            &[1, 0, 2][..],          // too few words
            &[1, 0, 4, 0, 1, 0][..], // too many words
            &[3, 0, 4][..],          // unknown kind
            &[1, 0, 0, 1, 0, 4][..], // empty run
            &[2, 0, 4, 1, 2, 3][..], // literal words missing
        ] {
            assert!(Bitfield::new().load_page(0, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn find_and_count() {
        let mut b = Bitfield::new();
        assert_eq!(b.first_set(0), None);
        assert_eq!(b.first_unset(5), Some(5));
        assert_eq!(b.last_unset(5), Some(5));
        assert_eq!(b.last_set(1 << 50), None);
        b.set_range(0, 70_000, true);
        assert_eq!(b.first_unset(0), Some(70_000));
        assert_eq!(b.first_set(0), Some(0));
        assert_eq!(b.first_set(70_000), None);
        assert_eq!(b.last_set(u64::MAX), Some(69_999));
        assert_eq!(b.last_unset(69_999), None);
        b.set(1_000_000_000, true);
        assert_eq!(b.first_set(70_000), Some(1_000_000_000));
        assert_eq!(b.last_set(999_999_999), Some(69_999));
        assert_eq!(b.last_unset(1_000_000_000), Some(999_999_999));
        assert_eq!(b.count(0, 1 << 40, true), 70_001);
        assert_eq!(b.count(10, 20, false), 0);
        assert_eq!(b.count(69_990, 20, false), 10);
        assert_eq!(b.count(u64::MAX - 5, 100, false), 5);
        assert!(b.has_set(69_999, 1) && !b.has_set(70_000, 1000));
        assert!(b.has_unset(69_000, 2000) && !b.has_unset(0, 70_000));
        // clear part of a range
        b.set_range(100, 65_636, false);
        assert_eq!(b.count(0, 70_000, true), 70_000 - 65_536);
        assert_eq!(b.first_unset(0), Some(100));
        assert_eq!(b.first_set(100), Some(65_636));
        // the very end of the index space
        let mut e = Bitfield::new();
        e.set(u64::MAX, true);
        assert!(e.get(u64::MAX));
        assert_eq!(e.last_set(u64::MAX), Some(u64::MAX));
        e.set_range(u64::MAX - 40, u64::MAX, true);
        assert_eq!(e.count(u64::MAX - 100, 100, true), 40);
        assert_eq!(e.first_unset(u64::MAX - 40), None);
    }

    #[test]
    fn words_and_want() {
        let mut b = Bitfield::new();
        b.set_range(0, 5, true);
        b.set(40, true);
        assert_eq!(b.words(0, 64), vec![0x1f, 1 << 8]);
        assert_eq!(b.words(33, 1), vec![1 << 8]);
        // JS: segment 0 holding page 0 is 1024 words long, so a 2^21 want yields 1024 words
        let w = b.want(0, BITS_PER_SEGMENT);
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].0, w[0].1.len()), (0, 1024));
        assert_eq!(&w[0].1[..2], &[0x1f, 1 << 8]);
        // an unaligned start is aligned down
        let w = b.want(35, 10);
        assert_eq!(w, vec![(32, vec![1 << 8])]);
        // a page 1 grows segment 0 to 4096 words
        b.set(BITS_PER_PAGE, true);
        assert_eq!(b.want(0, BITS_PER_SEGMENT)[0].1.len(), 4096);
        // segments without pages yield nothing; later segments are whole
        b.set(3 * BITS_PER_SEGMENT + 1, true);
        let w = b.want(BITS_PER_SEGMENT, 3 * BITS_PER_SEGMENT);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].0, 3 * BITS_PER_SEGMENT);
        assert_eq!(w[0].1.len(), 65536);
        assert_eq!(w[0].1[0], 2);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(u64, bool),
        Range(u64, u64, bool),
    }

    fn idx() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..200, 32_700u64..32_900, 0u64..200_000]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (idx(), any::<bool>()).prop_map(|(i, v)| Op::Set(i, v)),
            (idx(), 0u64..70_000, any::<bool>()).prop_map(|(s, l, v)| Op::Range(s, s + l, v)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Against a plain `Vec<bool>` model.
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 1..20), probes in proptest::collection::vec((idx(), 0u64..100_000), 1..10)) {
            const N: usize = 300_000;
            let mut model = vec![false; N];
            let mut b = Bitfield::new();
            for op in &ops {
                match *op {
                    Op::Set(i, v) => {
                        b.set(i, v);
                        model[i as usize] = v;
                    }
                    Op::Range(s, e, v) => {
                        b.set_range(s, e, v);
                        model[s as usize..e as usize].fill(v);
                    }
                }
            }
            for &(p, len) in &probes {
                let pu = p as usize;
                prop_assert_eq!(b.get(p), model[pu]);
                for v in [true, false] {
                    let ff = model[pu..].iter().position(|&x| x == v).map(|i| (pu + i) as u64);
                    prop_assert_eq!(b.find_first(v, p), ff.or(if v { None } else { Some(N as u64) }));
                    let fl = model[..=pu].iter().rposition(|&x| x == v).map(|i| i as u64);
                    prop_assert_eq!(b.find_last(v, p), fl);
                    let end = (pu + len as usize).min(N);
                    let c = model[pu..end].iter().filter(|&&x| x == v).count() as u64;
                    prop_assert_eq!(b.count(p, (end - pu) as u64, v), c);
                }
                let words = b.words(p, len);
                let first = (p / 32) as usize * 32;
                for (k, w) in words.iter().enumerate() {
                    for bit in 0..32 {
                        let i = first + 32 * k + bit;
                        prop_assert_eq!((w >> bit) & 1 == 1, i < N && model[i]);
                    }
                }
            }
            // persisted pages reload to the same bits
            let mut c = Bitfield::new();
            for (i, bytes) in b.take_dirty_pages() {
                c.load_page(i, &bytes).unwrap();
            }
            for &(p, _) in &probes {
                prop_assert_eq!(c.get(p), model[p as usize]);
            }
        }

        #[test]
        fn load_page_never_panics(i in any::<u64>(), bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let mut b = Bitfield::new();
            let ok = b.load_page(i, &bytes).is_ok();
            prop_assert!(ok || bytes.len() != BYTES_PER_PAGE || i > u64::MAX / BITS_PER_PAGE);
            prop_assert!(!ok || i <= u64::MAX / BITS_PER_PAGE);
            if ok {
                // Whatever loaded re-stores and reloads to the same bits.
                let mut c = Bitfield::new();
                c.load_page(i, &b.page_bytes(i).unwrap()).unwrap();
                prop_assert_eq!(c, b);
            }
        }

        #[test]
        fn stored_pages_round_trip(runs in proptest::collection::vec((0u8..3, 1usize..300), 1..20)) {
            let mut b = Bitfield::new();
            let mut bit = 0u64;
            for (kind, len) in runs {
                let end = (bit + len as u64).min(BITS_PER_PAGE);
                match kind {
                    0 => {}
                    1 => { b.set_range(bit, end, true); }
                    _ => for j in (bit..end).step_by(2) { b.set(j, true); },
                }
                bit = end;
            }
            b.set(0, true);
            let pages = b.take_dirty_pages();
            let mut c = Bitfield::new();
            c.load_page(0, &pages[0].1).unwrap();
            prop_assert!(pages[0].1.len() <= BYTES_PER_PAGE);
            prop_assert_eq!(c, b);
        }
    }
}
