//! A vector clock (`NM/autobase/lib/clock.js`): for every writer the DAG node saw, the highest
//! length it saw. Writers are the small ids of [`Graph`](super::graph::Graph), kept sorted, so
//! merging two clocks is one pass.

use super::graph::WriterId;

/// Writer → highest length seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clock {
    seen: Vec<(WriterId, u64)>,
}

impl Clock {
    /// An empty clock.
    pub fn new() -> Self {
        Clock::default()
    }

    fn find(&self, w: WriterId) -> Result<usize, usize> {
        self.seen.binary_search_by_key(&w, |e| e.0)
    }

    /// Whether `w` is in the clock at all.
    pub fn has(&self, w: WriterId) -> bool {
        self.find(w).is_ok()
    }

    /// Whether the clock saw `w` up to at least `length`.
    pub fn includes(&self, w: WriterId, length: u64) -> bool {
        matches!(self.find(w), Ok(i) if self.seen[i].1 >= length)
    }

    /// The length seen for `w` (0 when none).
    pub fn get(&self, w: WriterId) -> u64 {
        self.find(w).map_or(0, |i| self.seen[i].1)
    }

    /// Set the length of `w`.
    pub fn set(&mut self, w: WriterId, length: u64) {
        match self.find(w) {
            Ok(i) => self.seen[i].1 = length,
            Err(i) => self.seen.insert(i, (w, length)),
        }
    }

    /// Take the maximum of both clocks for every writer.
    pub fn add(&mut self, other: &Clock) {
        if self.seen.is_empty() {
            self.seen.clone_from(&other.seen);
            return;
        }
        let mut out = Vec::with_capacity(self.seen.len().max(other.seen.len()));
        let (mut i, mut j) = (0, 0);
        while i < self.seen.len() && j < other.seen.len() {
            let (a, b) = (self.seen[i], other.seen[j]);
            match a.0.cmp(&b.0) {
                std::cmp::Ordering::Less => {
                    out.push(a);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(b);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push((a.0, a.1.max(b.1)));
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&self.seen[i..]);
        out.extend_from_slice(&other.seen[j..]);
        self.seen = out;
    }

    /// Every `(writer, length)`.
    pub fn iter(&self) -> impl Iterator<Item = (WriterId, u64)> + '_ {
        self.seen.iter().copied()
    }

    /// Writers in the clock.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// No writer in the clock.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}
