//! The two caches hyperdht keeps records in, on virtual time.
//!
//! - [`MaxCache`] is xache 1.x: a *latest* and an *oldest* generation plus *retained* entries.
//!   A `set` goes to latest; when latest holds `max_size` entries, or every `⌈2/3 · max_age⌉`
//!   unless that already happened since the last tick, latest becomes oldest and the old
//!   oldest is dropped. A `get` of an oldest entry moves it back to latest. Retained entries
//!   never expire (hyperdht retains the forward entries of its own servers). Entries thus live
//!   between 2/3 and 4/3 of `max_age`; at most `2 · max_size` are kept.
//! - [`RecordCache`] is record-cache 1.x: per topic, a set of records keyed by public key, in a
//!   *fresh* and a *stale* generation with the same rotation rule (gc when fresh holds more
//!   than `max_size`).
//!
//! A byte budget (`max_bytes`) is a hyperpunch addition: JS bounds only entry counts, so 32,768
//! mutable values of up to ~64 KiB each could hold gigabytes; here latest also rotates when its
//! values reach `max_bytes`, bounding the cache to about `2 · max_bytes`.

use core::hash::Hash;
use core::time::Duration;
use std::collections::HashMap;

use crate::rng::Rng;

fn gc_interval(max_age: Duration) -> Option<Duration> {
    if max_age.is_zero() {
        return None;
    }
    let ms = max_age.as_millis() as u64;
    Some(Duration::from_millis((2 * ms).div_ceil(3)))
}

/// Something with a size in bytes (for the byte budget).
pub trait Weight {
    /// Bytes this value holds.
    fn weight(&self) -> usize;
}

impl Weight for Vec<u8> {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weight for u64 {
    fn weight(&self) -> usize {
        8
    }
}

/// xache's MaxCache.
#[derive(Debug, Clone)]
pub struct MaxCache<K, V> {
    max_size: usize,
    max_bytes: usize,
    interval: Option<Duration>,
    next_gc: Option<Duration>,
    latest: HashMap<K, V>,
    latest_bytes: usize,
    oldest: HashMap<K, V>,
    oldest_bytes: usize,
    retained: HashMap<K, V>,
    gced: bool,
}

impl<K: Hash + Eq + Clone, V: Weight> MaxCache<K, V> {
    /// A cache of `max_size` entries per generation living about `max_age` (zero: forever),
    /// at most `max_bytes` of values per generation.
    pub fn new(max_size: usize, max_age: Duration, max_bytes: usize, now: Duration) -> Self {
        let interval = gc_interval(max_age);
        MaxCache {
            max_size: max_size.max(1),
            max_bytes,
            interval,
            next_gc: interval.map(|i| now + i),
            latest: HashMap::new(),
            latest_bytes: 0,
            oldest: HashMap::new(),
            oldest_bytes: 0,
            retained: HashMap::new(),
            gced: false,
        }
    }

    /// Run the age-based rotations due at `now` (xache's interval timer).
    pub fn advance(&mut self, now: Duration) {
        let (Some(interval), Some(mut next)) = (self.interval, self.next_gc) else {
            return;
        };
        let mut rounds = 0;
        while now >= next {
            if !self.gced {
                self.gc();
            }
            self.gced = false;
            next += interval;
            rounds += 1;
            if rounds >= 2 {
                // Everything is gone after two rotations; skip ahead.
                self.gced = false;
                while now >= next {
                    next += interval;
                }
            }
        }
        self.next_gc = Some(next);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.latest.len() + self.oldest.len() + self.retained.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of values held.
    pub fn bytes(&self) -> usize {
        self.latest_bytes
            + self.oldest_bytes
            + self.retained.values().map(Weight::weight).sum::<usize>()
    }

    /// Store a value (ignored if the key is retained).
    pub fn set(&mut self, k: K, v: V) {
        if self.retained.contains_key(&k) {
            return;
        }
        if let Some(old) = self.oldest.remove(&k) {
            self.oldest_bytes -= old.weight();
        }
        self.latest_bytes += v.weight();
        if let Some(old) = self.latest.insert(k, v) {
            self.latest_bytes -= old.weight();
        }
        if self.latest.len() >= self.max_size || self.latest_bytes >= self.max_bytes {
            self.gc();
        }
    }

    /// Keep a value until deleted.
    pub fn retain(&mut self, k: K, v: V) {
        if let Some(old) = self.latest.remove(&k) {
            self.latest_bytes -= old.weight();
        } else if let Some(old) = self.oldest.remove(&k) {
            self.oldest_bytes -= old.weight();
        }
        self.retained.insert(k, v);
    }

    /// Remove a key.
    pub fn delete(&mut self, k: &K) -> bool {
        if let Some(old) = self.latest.remove(k) {
            self.latest_bytes -= old.weight();
            return true;
        }
        if let Some(old) = self.oldest.remove(k) {
            self.oldest_bytes -= old.weight();
            return true;
        }
        self.retained.remove(k).is_some()
    }

    /// True if the key is held.
    pub fn has(&self, k: &K) -> bool {
        self.latest.contains_key(k) || self.oldest.contains_key(k) || self.retained.contains_key(k)
    }

    /// Look up a value; an oldest entry moves back to latest.
    pub fn get(&mut self, k: &K) -> Option<&V> {
        if let Some(v) = self.oldest.remove(k) {
            self.oldest_bytes -= v.weight();
            self.latest_bytes += v.weight();
            self.latest.insert(k.clone(), v);
            return self.latest.get(k);
        }
        if self.latest.contains_key(k) {
            return self.latest.get(k);
        }
        self.retained.get(k)
    }

    /// Look up without touching the generations.
    pub fn peek(&self, k: &K) -> Option<&V> {
        self.latest
            .get(k)
            .or_else(|| self.oldest.get(k))
            .or_else(|| self.retained.get(k))
    }

    fn gc(&mut self) {
        self.gced = true;
        self.oldest = core::mem::take(&mut self.latest);
        self.oldest_bytes = core::mem::replace(&mut self.latest_bytes, 0);
    }
}

/// One topic's records, keyed by public key (record-cache's RecordSet).
#[derive(Debug, Clone, Default)]
struct RecordSet {
    list: Vec<([u8; 32], Vec<u8>)>,
    index: HashMap<[u8; 32], usize>,
}

impl RecordSet {
    fn add(&mut self, key: [u8; 32], value: Vec<u8>) -> bool {
        if self.index.contains_key(&key) {
            return false;
        }
        self.index.insert(key, self.list.len());
        self.list.push((key, value));
        true
    }
    fn remove(&mut self, key: &[u8; 32]) -> bool {
        let Some(i) = self.index.remove(key) else {
            return false;
        };
        self.list.swap_remove(i);
        if i < self.list.len() {
            let moved = self.list[i].0;
            self.index.insert(moved, i);
        }
        true
    }
}

#[derive(Debug, Clone, Default)]
struct RecordStore {
    topics: HashMap<[u8; 32], RecordSet>,
    size: usize,
    bytes: usize,
}

impl RecordStore {
    fn add(&mut self, topic: [u8; 32], key: [u8; 32], value: Vec<u8>) -> bool {
        let len = value.len();
        if self.topics.entry(topic).or_default().add(key, value) {
            self.size += 1;
            self.bytes += len + 32;
            true
        } else {
            false
        }
    }
    fn remove(&mut self, topic: &[u8; 32], key: &[u8; 32]) -> bool {
        let Some(set) = self.topics.get_mut(topic) else {
            return false;
        };
        let len = set
            .index
            .get(key)
            .map(|&i| set.list[i].1.len())
            .unwrap_or(0);
        if !set.remove(key) {
            return false;
        }
        self.size -= 1;
        self.bytes -= len + 32;
        if set.list.is_empty() {
            self.topics.remove(topic);
        }
        true
    }
    fn get(&self, topic: &[u8; 32]) -> &[([u8; 32], Vec<u8>)] {
        self.topics.get(topic).map_or(&[], |s| s.list.as_slice())
    }
}

/// record-cache's RecordCache: announcements per topic.
#[derive(Debug, Clone)]
pub struct RecordCache {
    max_size: usize,
    interval: Option<Duration>,
    next_gc: Option<Duration>,
    fresh: RecordStore,
    stale: RecordStore,
    gced: bool,
}

impl RecordCache {
    /// `max_size` records per generation, living about `max_age`.
    pub fn new(max_size: usize, max_age: Duration, now: Duration) -> Self {
        let interval = gc_interval(max_age);
        RecordCache {
            max_size: max_size.max(1),
            interval,
            next_gc: interval.map(|i| now + i),
            fresh: RecordStore::default(),
            stale: RecordStore::default(),
            gced: false,
        }
    }

    /// Run the age-based rotations due at `now`.
    pub fn advance(&mut self, now: Duration) {
        let (Some(interval), Some(mut next)) = (self.interval, self.next_gc) else {
            return;
        };
        let mut rounds = 0;
        while now >= next {
            if !self.gced {
                self.gc();
            }
            self.gced = false;
            next += interval;
            rounds += 1;
            if rounds >= 2 {
                while now >= next {
                    next += interval;
                }
            }
        }
        self.next_gc = Some(next);
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.fresh.size + self.stale.size
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes held (values plus keys).
    pub fn bytes(&self) -> usize {
        self.fresh.bytes + self.stale.bytes
    }

    /// Add (or refresh) `key`'s record under `topic`. As in JS, a record already fresh is not
    /// replaced.
    pub fn add(&mut self, topic: [u8; 32], key: [u8; 32], value: Vec<u8>) {
        self.stale.remove(&topic, &key);
        if self.fresh.add(topic, key, value) && self.fresh.size > self.max_size {
            self.gc();
        }
    }

    /// Remove `key`'s record under `topic`.
    pub fn remove(&mut self, topic: &[u8; 32], key: &[u8; 32]) {
        self.fresh.remove(topic, key);
        self.stale.remove(topic, key);
    }

    /// Up to `n` of the topic's records, picked at random across both generations (all of
    /// them, in storage order, when there are at most `n`).
    pub fn get(&self, topic: &[u8; 32], n: usize, rng: &mut Rng) -> Vec<&[u8]> {
        let a = self.fresh.get(topic);
        let b = self.stale.get(topic);
        let len = a.len() + b.len();
        let pick = |k: usize| -> &[u8] {
            if k < a.len() {
                &a[k].1
            } else {
                &b[k - a.len()].1
            }
        };
        if len <= n {
            return (0..len).map(pick).collect();
        }
        let mut idx: Vec<usize> = (0..len).collect();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let j = i + rng.below((len - i) as u64) as usize;
            idx.swap(i, j);
            out.push(pick(idx[i]));
        }
        out
    }

    fn gc(&mut self) {
        self.stale = core::mem::take(&mut self.fresh);
        self.gced = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn max_cache_rotates_on_size() {
        let mut c: MaxCache<u32, u64> = MaxCache::new(3, Duration::ZERO, usize::MAX, S);
        c.set(1, 1);
        c.set(2, 2);
        assert_eq!(c.len(), 2);
        c.set(3, 3); // latest reaches 3: rotate
        assert!(c.has(&1) && c.has(&3));
        c.set(4, 4);
        c.set(5, 5);
        c.set(6, 6); // rotate again: 1..3 dropped
        assert!(!c.has(&1) && c.has(&4) && c.has(&6));
        // a get of an oldest entry moves it to latest
        assert_eq!(c.get(&4), Some(&4));
        c.set(7, 7);
        c.set(8, 8); // latest {4,7,8} rotates, {5,6} dropped
        assert!(c.has(&4) && !c.has(&5));
    }

    #[test]
    fn max_cache_ages_out() {
        let mut c: MaxCache<u32, u64> = MaxCache::new(100, 30 * S, usize::MAX, S);
        c.set(1, 1);
        c.advance(21 * S); // first tick (20 s): rotate
        assert!(c.has(&1));
        c.advance(41 * S); // second tick: dropped
        assert!(!c.has(&1));
        c.retain(9, 9);
        c.advance(1000 * S);
        assert!(c.has(&9), "retained entries stay");
        c.set(9, 10);
        assert_eq!(c.peek(&9), Some(&9), "set does not override a retained key");
    }

    #[test]
    fn max_cache_byte_budget() {
        let mut c: MaxCache<u32, Vec<u8>> = MaxCache::new(1000, Duration::ZERO, 1000, S);
        for i in 0..100 {
            c.set(i, vec![0; 100]);
        }
        assert!(c.bytes() <= 2000, "{}", c.bytes());
    }

    #[test]
    fn record_cache_generations() {
        let mut rng = Rng::from_seed([3; 32]);
        let mut r = RecordCache::new(4, 30 * S, S);
        let t = [1; 32];
        for i in 0..3u8 {
            r.add(t, [i; 32], vec![i]);
        }
        assert_eq!(r.get(&t, 20, &mut rng).len(), 3);
        r.add(t, [0; 32], vec![99]);
        let mut got = r.get(&t, 20, &mut rng);
        got.sort();
        assert_eq!(
            got,
            vec![vec![0], vec![1], vec![2]],
            "a fresh record is not replaced"
        );
        r.remove(&t, &[1; 32]);
        assert_eq!(r.len(), 2);
        r.advance(21 * S);
        r.add(t, [0; 32], vec![7]); // stale → fresh, with the new value
        let mut got = r.get(&t, 20, &mut rng);
        got.sort();
        assert_eq!(got, vec![&[2][..], &[7]]);
        r.advance(41 * S);
        assert_eq!(r.get(&t, 20, &mut rng), vec![&[7][..]]);
        r.advance(81 * S);
        assert!(r.is_empty());
        // size rotation
        for i in 0..10u8 {
            r.add([i; 32], [i; 32], vec![i]);
        }
        assert!(r.len() <= 8, "{}", r.len());
        assert_eq!(r.get(&[9; 32], 5, &mut rng).len(), 1);
    }
}
