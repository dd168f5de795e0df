//! hyperdrive's `drive.monitor(name)` natively: a [`DriveMonitor`] feeds the sans-IO
//! [`Monitor`] with the replication events of the drive's blobs core (and of its db core when
//! no file is monitored), taken from the [`SharedCorestore`] ([`SharedCorestore::subscribe`]).
//! Times are the store's clock ([`SharedCorestore::now`], milliseconds).
//!
//! ```no_run
//! # async fn demo(store: hyperpunch::replicate::SharedCorestore<hyperpunch::FileStorage>, key: [u8; 32]) -> Result<(), Box<dyn std::error::Error>> {
//! use hyperpunch::drive::open_remote;
//! use hyperpunch::drive_monitor::DriveMonitor;
//! let (drive, _cores) = open_remote(&store, key, std::time::Duration::from_secs(10)).await?;
//! let mut monitor = DriveMonitor::open(&store, &drive, Some("/video.mp4")).await?;
//! let reading = drive.get("/video.mp4");
//! tokio::pin!(reading);
//! loop {
//!     tokio::select! {
//!         data = &mut reading => { data?; break }
//!         Some(()) = monitor.update() => {
//!             let s = monitor.download_stats();
//!             println!("{}% {} B/s", s.percentage, s.speed);
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! [`SharedCorestore::subscribe`]: crate::replicate::SharedHost::subscribe
//! [`SharedCorestore::now`]: crate::replicate::SharedHost::now

use tokio::sync::mpsc;

use crate::core::hyperdrive::monitor::{HubEventEffect, Monitor, TransferStats};
use crate::core::hyperdrive::DriveError;
use crate::core::replication::HubEvent;
use crate::core::storage::Storage;
use crate::drive::StoreDrive;
use crate::replicate::SharedCorestore;

/// A drive monitor (JS `drive.monitor(name)`); see the [module docs](self).
///
/// It subscribes only to the events of its drive's two cores
/// ([`SharedHost::subscribe_filtered`](crate::replicate::SharedHost::subscribe_filtered)), so
/// what waits in its queue is bounded by the drive's own traffic, and its getters take in what
/// is waiting first: reading the statistics on a timer, without [`DriveMonitor::update`] or
/// [`DriveMonitor::poll`], is fine.
pub struct DriveMonitor<S: Storage + Clone + 'static> {
    store: SharedCorestore<S>,
    monitor: Monitor,
    db: [u8; 32],
    blobs: [u8; 32],
    events: mpsc::UnboundedReceiver<HubEvent>,
    /// A channel of the blobs core opened or closed since the peers were last counted.
    peers_stale: bool,
}

impl<S: Storage + Clone + 'static> std::fmt::Debug for DriveMonitor<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriveMonitor")
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

impl<S: Storage + Clone + 'static> DriveMonitor<S> {
    /// Monitor file `name` of `drive` (JS `drive.monitor(name)`): its entry is read first (from
    /// peers if need be), then the blobs core's blocks in its range are counted as they are
    /// downloaded or uploaded. `None`, or a name that is not in the drive: every block of both
    /// cores counts (as JS).
    pub async fn open(
        store: &SharedCorestore<S>,
        drive: &StoreDrive<S>,
        name: Option<&str>,
    ) -> Result<Self, DriveError> {
        let entry = match name {
            Some(n) => drive.entry(n).await?,
            None => None,
        };
        let mut monitor = Monitor::for_entry(store.now(), entry.as_ref());
        let db = *drive.db().discovery_key();
        let blobs = *drive.blobs().core().discovery_key();
        let events = store
            .subscribe_filtered(move |ev| Monitor::wants_event(&db, &blobs, ev))
            .await;
        monitor.set_peers(peers(store, &blobs).await);
        Ok(DriveMonitor {
            store: store.clone(),
            monitor,
            db,
            blobs,
            events,
            peers_stale: false,
        })
    }

    /// Wait for the next change of the statistics (JS `update`); `None` once the store is gone.
    /// Cancel-safe (e.g. in a `tokio::select!`): nothing taken in is lost.
    pub async fn update(&mut self) -> Option<()> {
        loop {
            let changed = self.take_pending();
            if self.peers_stale {
                // the flag stays set until the count is in: a cancelled wait here recounts later
                let n = peers(&self.store, &self.blobs).await;
                self.monitor.set_peers(n);
                self.peers_stale = false;
            }
            if changed {
                return Some(());
            }
            let ev = self.events.recv().await?;
            if self.handle(ev) {
                return Some(());
            }
        }
    }

    /// Take in every event already delivered, without waiting for more; whether the
    /// statistics changed.
    pub async fn poll(&mut self) -> bool {
        let changed = self.take_pending();
        if self.peers_stale {
            let n = peers(&self.store, &self.blobs).await;
            self.monitor.set_peers(n);
            self.peers_stale = false;
        }
        changed
    }

    /// Take in the events waiting, without waiting; whether the statistics changed. The peers
    /// are recounted if the hub is free now, else later.
    fn take_pending(&mut self) -> bool {
        let mut changed = false;
        while let Ok(ev) = self.events.try_recv() {
            changed |= self.handle(ev);
        }
        changed
    }

    /// [`Self::take_pending`], then recount the peers if that is due and the hub is free now.
    fn catch_up(&mut self) {
        self.take_pending();
        if self.peers_stale {
            if let Some(g) = self.store.try_lock() {
                let n = g
                    .hub()
                    .replicator(&self.blobs)
                    .map_or(0, |r| r.peers().count());
                drop(g);
                self.monitor.set_peers(n);
                self.peers_stale = false;
            }
        }
    }

    fn handle(&mut self, ev: HubEvent) -> bool {
        let now = self.store.now();
        match self
            .monitor
            .handle_hub_event(now, &self.db, &self.blobs, &ev)
        {
            HubEventEffect::Stats { changed } => changed,
            HubEventEffect::PeersChanged => {
                self.peers_stale = true;
                false
            }
        }
    }

    /// What was downloaded (JS `monitor.downloadStats`), with the events delivered so far.
    pub fn download_stats(&mut self) -> &TransferStats {
        self.catch_up();
        self.monitor.download_stats()
    }

    /// What was uploaded (JS `monitor.uploadStats`), with the events delivered so far.
    pub fn upload_stats(&mut self) -> &TransferStats {
        self.catch_up();
        self.monitor.upload_stats()
    }

    /// The blobs core's peers (JS `monitor.peers`).
    pub fn peers(&mut self) -> usize {
        self.catch_up();
        self.monitor.peers()
    }

    /// The download speed now, bytes per second (JS `monitor.downloadSpeed()`).
    pub fn download_speed(&mut self) -> f64 {
        self.catch_up();
        self.monitor.download_speed(self.store.now())
    }

    /// The upload speed now, bytes per second (JS `monitor.uploadSpeed()`).
    pub fn upload_speed(&mut self) -> f64 {
        self.catch_up();
        self.monitor.upload_speed(self.store.now())
    }

    /// The sans-IO monitor, as of the last [`DriveMonitor::update`], [`DriveMonitor::poll`] or
    /// getter call.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }
}

async fn peers<S: Storage + Clone + 'static>(store: &SharedCorestore<S>, dk: &[u8; 32]) -> usize {
    store
        .lock()
        .await
        .hub()
        .replicator(dk)
        .map_or(0, |r| r.peers().count())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::corestore::{Corestore, PrimaryKey};
    use crate::core::hyperdrive::PutOptions;
    use crate::core::storage::MemoryStorage;
    use crate::crypto::KeyPair;
    use crate::drive::{open_local, open_remote};
    use crate::replicate::replicate;

    const STEP: Duration = Duration::from_secs(20);

    async fn store(seed: u8) -> SharedCorestore<MemoryStorage> {
        SharedCorestore::new(
            Corestore::open(MemoryStorage::new(), PrimaryKey::Given([seed; 32]))
                .await
                .unwrap(),
        )
    }

    /// A store serving a drive with file `/f` (`len` bytes) to `reader`; the drive's key.
    async fn serve(seed: u8, len: usize, reader: &SharedCorestore<MemoryStorage>) -> [u8; 32] {
        let writer = store(seed).await;
        let (drive, _cores) = open_local(&writer).await.unwrap();
        drive
            .put("/f", &vec![seed; len], PutOptions::default())
            .await
            .unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        tokio::spawn({
            let writer = writer.clone();
            async move { replicate(a, false, KeyPair::from_seed(&[seed; 32]), &writer).await }
        });
        tokio::spawn({
            let reader = reader.clone();
            async move { replicate(b, true, KeyPair::from_seed(&[seed + 1; 32]), &reader).await }
        });
        drive.key().await
    }

    /// A monitor only queues its drive's events (another drive's download, in the same store,
    /// leaves its queue empty), and its getters count the blocks downloaded without a
    /// `poll`/`update`. Before: every event of the store was queued until the next
    /// `poll`/`update`, and the getters gave 0 blocks.
    #[tokio::test]
    async fn the_queue_holds_only_the_drives_events_and_the_getters_catch_up() {
        let reader = store(9).await;
        let watched = serve(1, 200_000, &reader).await;
        let other = serve(3, 300_000, &reader).await;
        let (drive, _c) = open_remote(&reader, watched, STEP).await.unwrap();
        let (other, _o) = open_remote(&reader, other, STEP).await.unwrap();
        let mut monitor = DriveMonitor::open(&reader, &drive, Some("/f"))
            .await
            .unwrap();
        assert_eq!(monitor.download_stats().blocks, 0);
        let data = tokio::time::timeout(STEP, other.get("/f"))
            .await
            .expect("in time")
            .unwrap()
            .unwrap();
        assert_eq!(data.len(), 300_000);
        assert_eq!(monitor.events.len(), 0, "another drive's events queued");
        let data = tokio::time::timeout(STEP, drive.get("/f"))
            .await
            .expect("in time")
            .unwrap()
            .unwrap();
        assert_eq!(data.len(), 200_000);
        let d = monitor.download_stats().clone();
        assert_eq!(d.monitoring_bytes, 200_000);
        assert_eq!(d.percentage, 100.0);
        assert_eq!(monitor.events.len(), 0);
        assert!(!monitor.poll().await, "the getter took the events in");
        reader.end_all().await;
    }
}
