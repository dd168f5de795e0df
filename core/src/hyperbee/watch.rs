//! Watching a bee (JS `watch` and `getAndWatch`): wait for changes made by this process or
//! arriving through replication, whatever [`BeeCore::wait_change`] reports.

use super::diff::DiffIter;
use super::encodings::Codec;
use super::error::BeeError;
use super::iterators::{RangeOptions, RawRange};
use super::source::BeeCore;
use super::{Entry, Hyperbee};

/// Yields `(current, previous)` snapshots each time the bee changed within a range (JS
/// `watch(range)`); made by [`Hyperbee::watch`].
pub struct Watcher<C: BeeCore, K: Codec, V: Codec> {
    bee: Hyperbee<C, K, V>,
    range: RawRange,
    current: Option<Hyperbee<C, K, V>>,
    eager: bool,
}

impl<C: BeeCore, K: Codec, V: Codec> Hyperbee<C, K, V> {
    /// Watch `range` of this bee (JS `watch(range, { eager })`). With `eager`, the first
    /// [`Watcher::next`] compares with the empty bee (version 1), so it reports at once if the
    /// range holds anything.
    pub fn watch(&self, range: RangeOptions<'_, K>, eager: bool) -> Watcher<C, K, V> {
        let mut range = self.raw_range(&range);
        range.limit = -1;
        range.reverse = false;
        Watcher {
            bee: self.clone(),
            range,
            current: None,
            eager,
        }
    }

    /// `key`'s entry now, and a watcher reporting each change of it (JS `getAndWatch`).
    pub async fn get_and_watch(&self, key: &K::Value) -> Result<EntryWatcher<C, K, V>, BeeError> {
        let st = self.shared.core.state().await;
        let node = self.get(key).await?;
        Ok(EntryWatcher {
            bee: self.clone(),
            key: self.enc_key(key).to_vec(),
            node,
            length: st.length,
            fork: st.fork,
        })
    }
}

impl<C: BeeCore, K: Codec, V: Codec> Watcher<C, K, V> {
    /// Take the point changes are counted from now (JS `watcher.ready()`), instead of at the
    /// first [`Watcher::next`]: a change made between the two is then reported.
    pub async fn ready(&mut self) {
        if self.current.is_none() {
            self.current = Some(if self.eager {
                self.bee.checkout(1).await
            } else {
                self.bee.snapshot().await
            });
        }
    }

    /// Wait for the next change within the range: `(current, previous)` snapshots of the bee
    /// (diff them with [`Hyperbee::create_diff_stream`]). A truncation is always a change.
    pub async fn next(&mut self) -> Result<(Hyperbee<C, K, V>, Hyperbee<C, K, V>), BeeError> {
        self.ready().await;
        loop {
            let current = self.current.take().expect("set above");
            let version = current.checkout_version().unwrap_or(1);
            let prev_fork = match &current.checkout {
                Some((snap, _)) => snap.state().await.fork,
                None => 0,
            };
            let core = &self.bee.shared.core;
            let live = core.state().await;
            if version >= live.length.max(1) && live.fork == prev_fork {
                core.wait_change(live.length, live.fork).await;
            }
            let previous = current;
            let next = self.bee.snapshot().await;
            self.current = Some(next.clone());
            let next_fork = match &next.checkout {
                Some((snap, _)) => snap.state().await.fork,
                None => 0,
            };
            if next_fork != prev_fork {
                return Ok((next, previous));
            }
            let mut range = self.range.clone();
            range.limit = 1;
            let mut diff = DiffIter::new(next.clone(), previous.clone(), range);
            if diff.next().await?.is_some() {
                return Ok((next, previous));
            }
        }
    }
}

/// The current entry of one key, and a way to wait for it to change (JS `getAndWatch`'s
/// watcher); made by [`Hyperbee::get_and_watch`].
pub struct EntryWatcher<C: BeeCore, K: Codec, V: Codec> {
    bee: Hyperbee<C, K, V>,
    key: Vec<u8>,
    node: Option<Entry<K::Owned, V::Owned>>,
    length: u64,
    fork: u64,
}

impl<C: BeeCore, K: Codec, V: Codec> EntryWatcher<C, K, V> {
    /// The entry as of the last update (`None`: absent).
    pub fn node(&self) -> Option<&Entry<K::Owned, V::Owned>> {
        self.node.as_ref()
    }

    /// Wait until the entry changes (another seq, or any truncation), then return it (JS
    /// `'update'`).
    pub async fn changed(&mut self) -> Result<Option<&Entry<K::Owned, V::Owned>>, BeeError> {
        loop {
            let core = &self.bee.shared.core;
            core.wait_change(self.length, self.fork).await;
            let st = core.state().await;
            let forced = st.fork != self.fork;
            self.length = st.length;
            self.fork = st.fork;
            let ctx = self.bee.read_ctx().await?;
            let mut t = super::read::CommittedTree { ctx };
            let node = match super::read::get(&mut t, &self.key).await? {
                Some(b) => Some(self.bee.entry_of(&b)?),
                None => None,
            };
            let seq = |n: &Option<Entry<K::Owned, V::Owned>>| n.as_ref().map(|e| e.seq);
            if forced || seq(&node) != seq(&self.node) {
                self.node = node;
                return Ok(self.node.as_ref());
            }
        }
    }
}
