//! Watching the cores a store opens (corestore 7.x `store.watch(fn)` / `store.unwatch(fn)`,
//! `NM/corestore/index.js` `CoreTracker.watch`, `_emit`).
//!
//! JS calls every watcher's function with each core the store opens after the watch: a core
//! opened by [`Corestore::get`] in any namespace (JS: any session or namespace of the store, they
//! share one core tracker), and a stored core opened because a remote asked for it (JS
//! `_attachMaybe`). A second session of a core that is already open opens nothing and is not
//! reported. Here a watcher is a [`WatchId`] with its own queue of [`OpenedCore`]s, drained with
//! [`Corestore::poll_watch`]: no callbacks into the sans-IO core; a transport wakes its waiters
//! when [`ReplicationHost::take_changed`](crate::replication::ReplicationHost::take_changed)
//! says a core was opened.
//!
//! One deviation from JS follows from closing: JS keeps a core whose last session closed open
//! for some seconds (its gc cycle) and a `get` in that time reuses it without reporting it; a
//! [`Corestore`] closes it at once, so a `get` after the last session closed opens (and reports)
//! it again.

use std::collections::VecDeque;

use crate::storage::Storage;

use super::Corestore;

/// A watcher of a [`Corestore`]'s opened cores ([`Corestore::watch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(u64);

/// A core a store opened, as reported to its watchers (JS passes the core to `fn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedCore {
    /// The core key.
    pub key: [u8; 32],
    /// The discovery key.
    pub discovery_key: [u8; 32],
    /// Whether it was opened for a remote that asked for it (no session holds it) rather than
    /// by [`Corestore::get`].
    pub for_remote: bool,
}

/// The most [`OpenedCore`]s a watcher's queue holds ([`Corestore::watch`]): past it, the oldest
/// is dropped for each new one. A remote can make the store open (and report) a stored core
/// again and again; a watcher that is not drained stays bounded.
pub const WATCH_QUEUE_MAX: usize = 4096;

/// The watchers of a store and what each has not drained yet.
#[derive(Debug, Default)]
pub(super) struct Watchers {
    next: u64,
    queues: Vec<(WatchId, VecDeque<OpenedCore>)>,
    /// A core was opened while someone watched, since [`Watchers::take_changed`].
    changed: bool,
}

impl Watchers {
    pub(super) fn opened(&mut self, core: OpenedCore) {
        for (_, q) in &mut self.queues {
            if q.len() >= WATCH_QUEUE_MAX {
                q.pop_front();
            }
            q.push_back(core);
        }
        self.changed |= !self.queues.is_empty();
    }

    /// The store closed: watchers waiting must look (and find it closed).
    pub(super) fn store_closed(&mut self) {
        self.changed |= !self.queues.is_empty();
    }

    pub(super) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}

impl<S: Storage + Clone> Corestore<S> {
    /// Start watching the cores this store opens from now on (JS `store.watch(fn)`): each one
    /// opened by [`Corestore::get`] in any namespace, or for a remote, is queued for this
    /// watcher until [`Corestore::poll_watch`] takes it. The queue holds the last
    /// [`WATCH_QUEUE_MAX`] cores at most (older ones are dropped): drain it, and
    /// [`Corestore::unwatch`] it when done.
    pub fn watch(&mut self) -> WatchId {
        let id = WatchId(self.watchers.next);
        self.watchers.next += 1;
        self.watchers.queues.push((id, VecDeque::new()));
        id
    }

    /// Stop watching (JS `store.unwatch(fn)`); what it had not drained is dropped. Whether it
    /// was watching.
    pub fn unwatch(&mut self, id: WatchId) -> bool {
        let before = self.watchers.queues.len();
        self.watchers.queues.retain(|(w, _)| *w != id);
        self.watchers.queues.len() != before
    }

    /// The next core opened since `id` started watching, oldest first; `None` when there is
    /// none yet (or `id` is not watching).
    pub fn poll_watch(&mut self, id: WatchId) -> Option<OpenedCore> {
        self.watchers
            .queues
            .iter_mut()
            .find(|(w, _)| *w == id)
            .and_then(|(_, q)| q.pop_front())
    }

    /// Whether `id` is watching.
    pub fn is_watching(&self, id: WatchId) -> bool {
        self.watchers.queues.iter().any(|(w, _)| *w == id)
    }
}

#[cfg(test)]
mod tests {
    use futures_executor::block_on;

    use super::*;
    use crate::corestore::{GetOptions, Namespace, PrimaryKey};
    use crate::replication::{HubEvent, ReplicationHost};
    use crate::storage::MemoryStorage;

    /// A watcher that is not drained keeps the last [`WATCH_QUEUE_MAX`] cores opened (the
    /// oldest dropped), however often a core is opened again; another watcher the same.
    #[test]
    fn an_undrained_watcher_keeps_the_newest_cores_up_to_the_cap() {
        block_on(async {
            let mut s = Corestore::open(MemoryStorage::new(), PrimaryKey::Given([5; 32]))
                .await
                .unwrap();
            let w = s.watch();
            let v = s.watch();
            let first = s.get(GetOptions::named("first")).await.unwrap();
            let first_key = *first.key();
            s.close_core(first).unwrap();
            let mut again = s.get(GetOptions::named("again")).await.unwrap();
            let again_key = *again.key();
            for _ in 0..WATCH_QUEUE_MAX {
                s.close_core(again).unwrap();
                again = s.get(GetOptions::named("again")).await.unwrap();
            }
            assert_eq!(s.poll_watch(v).map(|c| c.key), Some(again_key));
            let left = keys(&mut s, w);
            assert_eq!(left.len(), WATCH_QUEUE_MAX);
            assert!(left.iter().all(|(k, _)| *k == again_key));
            assert!(!left.iter().any(|(k, _)| *k == first_key));
        })
    }

    fn keys(store: &mut Corestore<MemoryStorage>, id: WatchId) -> Vec<([u8; 32], bool)> {
        std::iter::from_fn(|| store.poll_watch(id))
            .map(|c| (c.key, c.for_remote))
            .collect()
    }

    /// The sequence JS reports (`tests/interop/corestore-watch.js` checks it live): new cores in
    /// any namespace, not second sessions, not before the watch or after the unwatch; a core
    /// opened again after its last session closed is reported again.
    #[test]
    fn reports_each_core_opened_after_the_watch() {
        block_on(async {
            let mut s = Corestore::open(MemoryStorage::new(), PrimaryKey::Given([3; 32]))
                .await
                .unwrap();
            let before = s.get(GetOptions::named("before")).await.unwrap();
            let w = s.watch();
            assert!(!s.take_changed());
            assert_eq!(keys(&mut s, w), vec![]);
            let a = s.get(GetOptions::named("a")).await.unwrap();
            assert!(s.take_changed());
            assert!(!s.take_changed());
            let a2 = s.get(GetOptions::named("a")).await.unwrap();
            let a3 = s.session(&a).unwrap();
            let _before2 = s.get(GetOptions::named("before")).await.unwrap();
            let ns = Namespace::ROOT.child("ns");
            let b = s
                .get(GetOptions::named("a").in_namespace(ns))
                .await
                .unwrap();
            let w2 = s.watch();
            let r = s.get(GetOptions::from_key([9; 32])).await.unwrap();
            assert_eq!(
                keys(&mut s, w),
                vec![(*a.key(), false), (*b.key(), false), (*r.key(), false)]
            );
            assert_eq!(keys(&mut s, w2), vec![(*r.key(), false)]);
            // Closing a core and opening it again reports it again (JS: after its gc delay).
            for h in [a, a2, a3] {
                s.close_core(h).unwrap();
            }
            let a = s.get(GetOptions::named("a")).await.unwrap();
            assert!(s.unwatch(w));
            assert!(!s.unwatch(w));
            assert!(!s.is_watching(w));
            let c = s.get(GetOptions::named("c")).await.unwrap();
            assert_eq!(s.poll_watch(w), None);
            assert_eq!(keys(&mut s, w2), vec![(*a.key(), false), (*c.key(), false)]);
            let _ = before;
        });
    }

    /// A stored core a remote asks for is opened for it and reported as such; a core the store
    /// does not hold is not.
    #[test]
    fn reports_cores_opened_for_a_remote() {
        block_on(async {
            let storage = MemoryStorage::new();
            let mut s = Corestore::open(storage.clone(), PrimaryKey::Given([4; 32]))
                .await
                .unwrap();
            let h = s.get(GetOptions::named("served")).await.unwrap();
            s.append(0, &h, &[b"x"]).await.unwrap();
            let key = *h.key();
            s.close_core(h).unwrap();
            let mut remote = Corestore::open(MemoryStorage::new(), PrimaryKey::Given([5; 32]))
                .await
                .unwrap();
            let _r = remote.get(GetOptions::from_key(key)).await.unwrap();
            let _u = remote.get(GetOptions::from_key([8; 32])).await.unwrap();
            let w = s.watch();
            let sa = s.add_stream(true, [1; 64]).unwrap();
            let sb = remote.add_stream(false, [1; 64]).unwrap();
            for _ in 0..20 {
                s.flush();
                remote.flush();
                let to_b: Vec<_> = std::iter::from_fn(|| s.poll_transmit())
                    .map(|f| f.1)
                    .collect();
                let to_a: Vec<_> = std::iter::from_fn(|| remote.poll_transmit())
                    .map(|f| f.1)
                    .collect();
                if to_a.is_empty() && to_b.is_empty() {
                    break;
                }
                s.handle_frames(1, sa, &to_a).await.unwrap();
                remote.handle_frames(1, sb, &to_b).await.unwrap();
            }
            while let Some(e) = s.poll_event() {
                assert!(!matches!(e, HubEvent::CoreOpenFailed { .. }), "{e:?}");
            }
            assert!(s.take_changed());
            assert_eq!(keys(&mut s, w), vec![(key, true)]);
        });
    }
}
