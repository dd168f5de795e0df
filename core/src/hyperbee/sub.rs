//! Sub-databases (JS `sub(prefix, { sep })`) and how ranges are bounded in them (JS
//! `encRange`).
//!
//! A sub is a view of the same bee whose keys are stored as `parent prefix ‖ prefix ‖ sep ‖ key`
//! (`sep` defaults to `0x00`). Its reads and writes add the prefix, its results drop it, and an
//! unbounded range stops at the sub's edges: `gt = prefix ‖ 0x00` and `lt = prefix` with its
//! last byte (the separator) plus one. As in JS, that lower edge leaves out the key `""` and
//! the key `"\0"` of a sub from unbounded ranges (they are still found by `get`).

use super::encodings::Codec;
use super::iterators::{RangeOptions, RawRange};
use super::source::BeeCore;
use super::Hyperbee;

impl<C: BeeCore, K: Codec, V: Codec> Hyperbee<C, K, V> {
    /// A sub-database under `prefix`, separated by this bee's separator (JS `sub(prefix)`).
    pub fn sub(&self, prefix: impl AsRef<[u8]>) -> Self {
        let sep = self.sep.clone();
        self.sub_with_sep(prefix, &sep)
    }

    /// A sub-database under `prefix` with separator `sep` (JS `sub(prefix, { sep })`). Its own
    /// subs use this bee's separator unless given another, as in JS.
    pub fn sub_with_sep(&self, prefix: impl AsRef<[u8]>, sep: &[u8]) -> Self {
        let mut p = self.prefix.to_vec();
        p.extend_from_slice(prefix.as_ref());
        p.extend_from_slice(sep);
        let mut out = self.clone();
        out.prefix = p.into();
        out
    }

    /// JS `encRange`: encode the bounds, and bound an open side to the sub.
    pub(crate) fn raw_range(&self, r: &RangeOptions<'_, K>) -> RawRange {
        let enc = |k: Option<&K::Value>| k.map(|k| self.enc_key(k).to_vec());
        let mut out = RawRange {
            gt: enc(r.gt),
            gte: enc(r.gte),
            lt: enc(r.lt),
            lte: enc(r.lte),
            reverse: r.reverse,
            limit: r.limit.map_or(-1, |l| l.min(i64::MAX as u64) as i64),
        };
        self.bound_to_sub(&mut out);
        out
    }

    /// The sub edges for the open sides of `r` (no-op for the root bee).
    pub(crate) fn bound_to_sub(&self, r: &mut RawRange) {
        if self.prefix.is_empty() {
            return;
        }
        if r.gt.is_none() && r.gte.is_none() {
            let mut gt = self.prefix.to_vec();
            gt.push(0);
            r.gt = Some(gt);
        }
        if r.lt.is_none() && r.lte.is_none() {
            let mut lt = self.prefix.to_vec();
            if let Some(last) = lt.last_mut() {
                *last = last.wrapping_add(1);
            }
            r.lt = Some(lt);
        }
    }
}
