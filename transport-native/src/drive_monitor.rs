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

use crate::core::hyperdrive::monitor::{Monitor, MonitoredCore, TransferStats};
use crate::core::hyperdrive::DriveError;
use crate::core::replication::HubEvent;
use crate::core::storage::Storage;
use crate::drive::StoreDrive;
use crate::replicate::SharedCorestore;

/// A drive monitor (JS `drive.monitor(name)`); see the [module docs](self).
pub struct DriveMonitor<S: Storage + Clone + 'static> {
    store: SharedCorestore<S>,
    monitor: Monitor,
    db: [u8; 32],
    blobs: [u8; 32],
    events: mpsc::UnboundedReceiver<HubEvent>,
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
        let now = store.now();
        let mut monitor = match &entry {
            Some(e) => match &e.value.blob {
                Some(blob) => Monitor::new(now, Some(blob)),
                None => Monitor::for_entry_without_blob(now),
            },
            None => Monitor::new(now, None),
        };
        let events = store.subscribe().await;
        let blobs = *drive.blobs().core().discovery_key();
        monitor.set_peers(peers(store, &blobs).await);
        Ok(DriveMonitor {
            store: store.clone(),
            monitor,
            db: *drive.db().discovery_key(),
            blobs,
            events,
        })
    }

    /// Wait for the next change of the statistics (JS `update`); `None` once the store is gone.
    pub async fn update(&mut self) -> Option<()> {
        loop {
            let ev = self.events.recv().await?;
            if self.handle(ev).await {
                return Some(());
            }
        }
    }

    /// Take in every event already delivered, without waiting; whether the statistics changed.
    pub async fn poll(&mut self) -> bool {
        let mut changed = false;
        while let Ok(ev) = self.events.try_recv() {
            changed |= self.handle(ev).await;
        }
        changed
    }

    async fn handle(&mut self, ev: HubEvent) -> bool {
        match ev {
            HubEvent::Core {
                discovery_key,
                event,
            } => {
                let core = if discovery_key == self.blobs {
                    MonitoredCore::Blobs
                } else if discovery_key == self.db {
                    MonitoredCore::Db
                } else {
                    return false;
                };
                self.monitor.handle_event(self.store.now(), core, &event)
            }
            HubEvent::ChannelOpened { discovery_key, .. }
            | HubEvent::ChannelClosed { discovery_key, .. }
                if discovery_key == self.blobs =>
            {
                self.monitor
                    .set_peers(peers(&self.store, &self.blobs).await);
                false
            }
            _ => false,
        }
    }

    /// What was downloaded (JS `monitor.downloadStats`).
    pub fn download_stats(&self) -> &TransferStats {
        self.monitor.download_stats()
    }

    /// What was uploaded (JS `monitor.uploadStats`).
    pub fn upload_stats(&self) -> &TransferStats {
        self.monitor.upload_stats()
    }

    /// The blobs core's peers (JS `monitor.peers`).
    pub fn peers(&self) -> usize {
        self.monitor.peers()
    }

    /// The download speed now, bytes per second (JS `monitor.downloadSpeed()`).
    pub fn download_speed(&mut self) -> f64 {
        self.monitor.download_speed(self.store.now())
    }

    /// The upload speed now, bytes per second (JS `monitor.uploadSpeed()`).
    pub fn upload_speed(&mut self) -> f64 {
        self.monitor.upload_speed(self.store.now())
    }

    /// The sans-IO monitor.
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
