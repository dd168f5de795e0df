//! Watching the cores a [`SharedCorestore`] opens, natively (corestore 7.x `store.watch(fn)`
//! / `unwatch(fn)`): [`SharedCorestore::watch`] gives a [`CoreWatcher`] whose
//! [`CoreWatcher::next`] waits for the next core the store opens, by [`Corestore::get`] in any
//! namespace or for a remote that asked for a stored core (see
//! [`hyperpunch_core::corestore::watch`] for what is reported, and its one deviation from JS).
//! Each watcher's queue keeps the last
//! [`WATCH_QUEUE_MAX`](hyperpunch_core::corestore::WATCH_QUEUE_MAX) cores not yet taken by
//! [`CoreWatcher::next`] (older ones are dropped).
//!
//! ```
//! # use hyperpunch::core::corestore::{Corestore, GetOptions, PrimaryKey};
//! # use hyperpunch::core::storage::MemoryStorage;
//! # use hyperpunch::replicate::SharedCorestore;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = SharedCorestore::new(Corestore::open(MemoryStorage::new(), PrimaryKey::Given([1; 32])).await?);
//! let mut watcher = store.watch().await;
//! let db = store.lock().await.get(GetOptions::named("db")).await?;
//! assert_eq!(watcher.next().await.map(|c| c.key), Some(*db.key()));
//! watcher.unwatch().await;
//! # Ok::<(), hyperpunch::core::corestore::CorestoreError>(())
//! # }).unwrap();
//! ```
//!
//! [`Corestore::get`]: hyperpunch_core::corestore::Corestore::get

use hyperpunch_core::corestore::{OpenedCore, WatchId};
use hyperpunch_core::storage::Storage;

use crate::replicate::SharedCorestore;

/// A watcher of the cores a [`SharedCorestore`] opens ([`SharedCorestore::watch`]). Dropping it
/// stops the watch too (at once when the store is not locked, else from a task on the current
/// tokio runtime); [`CoreWatcher::unwatch`] does it in order.
pub struct CoreWatcher<S: Storage + Clone + 'static> {
    store: SharedCorestore<S>,
    id: Option<WatchId>,
}

impl<S: Storage + Clone + 'static> std::fmt::Debug for CoreWatcher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreWatcher").field("id", &self.id).finish()
    }
}

impl<S: Storage + Clone + 'static> SharedCorestore<S> {
    /// Watch the cores the store opens from now on (JS `store.watch(fn)`).
    pub async fn watch(&self) -> CoreWatcher<S> {
        let id = self.lock().await.watch();
        CoreWatcher {
            store: self.clone(),
            id: Some(id),
        }
    }
}

impl<S: Storage + Clone + 'static> CoreWatcher<S> {
    /// The next core the store opened since the watch began (oldest first), waiting for one;
    /// `None` once the store is closed and nothing is left to report.
    pub async fn next(&mut self) -> Option<OpenedCore> {
        let id = self.id?;
        loop {
            let notified = self.store.changed().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut g = self.store.lock().await;
                if let Some(c) = g.poll_watch(id) {
                    return Some(c);
                }
                if g.is_closed() {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// The next core opened, if one is waiting (does not wait for one to open).
    pub async fn try_next(&mut self) -> Option<OpenedCore> {
        let id = self.id?;
        self.store.lock().await.poll_watch(id)
    }

    /// Stop watching (JS `store.unwatch(fn)`).
    pub async fn unwatch(mut self) {
        if let Some(id) = self.id.take() {
            self.store.lock().await.unwatch(id);
        }
    }
}

impl<S: Storage + Clone + 'static> Drop for CoreWatcher<S> {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        if let Some(mut g) = self.store.try_lock() {
            g.unwatch(id);
        } else if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            rt.spawn(async move {
                store.lock().await.unwatch(id);
            });
        }
        // Else (no runtime, store locked): the store keeps the watcher's queue.
    }
}
