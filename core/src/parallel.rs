//! Fork-join: how an engine's big, pure computations use a second core without the core crate
//! starting a thread (rule: core performs no I/O and owns no threads).
//!
//! An engine that can split work in two independent halves (the leaf hashes of a 100k-block
//! append, the encoding of a hyperbee batch's blocks) calls [`Join::join`] with both; the
//! default, [`Sequential`], runs one after the other. A transport with a spare core hands the
//! engine a [`Join`] that runs them at once (the native crate's `TwoThreads`). The halves only
//! compute into memory they were given: the result is the same bytes whichever `Join` runs them.

use std::sync::Arc;

/// Runs two closures and returns once both have returned: one after the other, or at once
/// on two threads. A panic in either is passed on to the caller.
pub trait Join: Send + Sync + core::fmt::Debug {
    /// Run `a` and `b` (each exactly once) and return when both are done.
    fn join(&self, a: &mut (dyn FnMut() + Send), b: &mut (dyn FnMut() + Send));
}

/// [`Join`] on the caller's thread: `a`, then `b`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sequential;

impl Join for Sequential {
    fn join(&self, a: &mut (dyn FnMut() + Send), b: &mut (dyn FnMut() + Send)) {
        a();
        b();
    }
}

/// The default [`Join`] of an engine that was given none.
pub fn sequential() -> Arc<dyn Join> {
    Arc::new(Sequential)
}

/// Work of fewer items than this (blocks to encode, parents of one tree depth; tree pages
/// count 32 nodes each, leaf hashes also split from 4 MiB of blocks) is not split: a thread's
/// start costs tens of microseconds, about what a few thousand small items take.
pub(crate) const SPLIT_AT: usize = 4096;

/// Where to cut `items` in two halves of about equal cost: the first index of the second half,
/// in `1..items.len()` for two items or more (each half keeps at least one).
pub(crate) fn split_by_cost<T>(items: &[T], cost: impl Fn(&T) -> usize) -> usize {
    let half = items.iter().map(&cost).sum::<usize>() / 2;
    let (mut mid, mut seen) = (0, 0);
    while mid + 1 < items.len() && (mid == 0 || seen < half) {
        seen += cost(&items[mid]);
        mid += 1;
    }
    mid
}

/// Run `a` and `b` through `join` and return both results.
pub(crate) fn join2<RA: Send, RB: Send>(
    join: &dyn Join,
    a: impl FnOnce() -> RA + Send,
    b: impl FnOnce() -> RB + Send,
) -> (RA, RB) {
    let (mut a, mut b) = (Some(a), Some(b));
    let (mut ra, mut rb) = (None, None);
    join.join(
        &mut || {
            if let Some(a) = a.take() {
                ra = Some(a());
            }
        },
        &mut || {
            if let Some(b) = b.take() {
                rb = Some(b());
            }
        },
    );
    // A `Join` that skipped one (a broken implementation) gets it run here.
    let ra = ra.unwrap_or_else(|| a.take().map(|a| a()).expect("run once"));
    let rb = rb.unwrap_or_else(|| b.take().map(|b| b()).expect("run once"));
    (ra, rb)
}

/// Tests: a [`Join`] that runs `b` first, so that a split whose second half depended on the
/// first would give other bytes than [`Sequential`].
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Reversed;

#[cfg(test)]
impl Join for Reversed {
    fn join(&self, a: &mut (dyn FnMut() + Send), b: &mut (dyn FnMut() + Send)) {
        b();
        a();
    }
}

/// Tests: [`Reversed`] that counts its calls (to check that work was split at all).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct CountedReversed(pub(crate) std::sync::atomic::AtomicUsize);

#[cfg(test)]
impl Join for CountedReversed {
    fn join(&self, a: &mut (dyn FnMut() + Send), b: &mut (dyn FnMut() + Send)) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Reversed.join(a, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct SkipsB;
    impl Join for SkipsB {
        fn join(&self, a: &mut (dyn FnMut() + Send), _b: &mut (dyn FnMut() + Send)) {
            a();
        }
    }

    #[test]
    fn split_by_cost_keeps_an_item_on_each_side() {
        assert_eq!(split_by_cost(&[1, 1, 1, 1], |&c| c), 2);
        assert_eq!(split_by_cost(&[0, 0, 0, 9], |&c| c), 3);
        assert_eq!(split_by_cost(&[9, 0, 0, 0], |&c| c), 1);
        assert_eq!(split_by_cost(&[0usize; 5], |&c| c), 1);
        assert_eq!(split_by_cost(&[5, 5], |&c| c), 1);
        assert_eq!(split_by_cost(&[5], |&c| c), 0);
        assert_eq!(split_by_cost::<usize>(&[], |&c| c), 0);
    }

    #[test]
    fn join2_returns_both_results_whatever_the_order() {
        for j in [&Sequential as &dyn Join, &Reversed, &SkipsB] {
            let mut v = [0u32; 4];
            let (l, r) = v.split_at_mut(2);
            let (x, y) = join2(
                j,
                || {
                    l.fill(1);
                    "a"
                },
                || {
                    r.fill(2);
                    7
                },
            );
            assert_eq!((x, y), ("a", 7));
            assert_eq!(v, [1, 1, 2, 2]);
        }
    }
}
