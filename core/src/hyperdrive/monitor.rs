//! hyperdrive 13.3.4 `drive.monitor(name)` (`NM/hyperdrive/lib/monitor.js`): upload and
//! download statistics of one file's blob range, fed by the replication events of the drive's
//! blobs core (and, when no file is monitored, of its db core too).
//!
//! A [`Monitor`] is sans-IO: the transport hands it the replicator events of the blobs core
//! ([`Monitor::handle_event`]) with the time, and the peer count when it changes; each event
//! that counts updates [`Monitor::download_stats`] or [`Monitor::upload_stats`] and returns
//! `true` (JS emits `update`). Speeds are JS `speedometer`'s ([`Speedometer`]): bytes per second
//! over a five-second window in quarter-second ticks, taken from the `now` given, not a clock.
//!
//! As JS: a block counts when its index lies in the file's `[blockOffset, blockOffset +
//! blockLength)` (for a file stored with a block map, the map's blocks, as JS); without a file
//! (no name given, or the name not found) every block of the blobs and db cores counts;
//! `totalBytes` is the same as `monitoringBytes` (JS never adds the local bytes its comment
//! mentions); `percentage` is `blocks / targetBlocks * 100` rounded to two decimals (infinite
//! when the target is 0, as in JS).
//!
//! Deviation: a monitored entry without a blob (a symlink) makes JS throw at open; here it
//! has targets 0 and no block counts.
//!
//! ```
//! use hyperpunch_core::hyperblobs::BlobId;
//! use hyperpunch_core::hyperdrive::monitor::Monitor;
//! let blob = BlobId { block_offset: 4, byte_offset: 0, block_length: 2, byte_length: 100, block_map: false };
//! let m = Monitor::new(0, Some(&blob));
//! assert!(m.in_range(5) && !m.in_range(6));
//! assert_eq!(m.download_stats().target_bytes, 100);
//! // then, for each replicator event of the blobs core:
//! // if m.handle_event(now, MonitoredCore::Blobs, &event) { /* JS 'update' */ }
//! ```

use crate::hyperblobs::BlobId;
use crate::replication::{Event, HubEvent};

/// Quarter-second ticks (JS speedometer's `resolution`).
const RESOLUTION: u64 = 4;
/// The window, in seconds (JS speedometer's default).
const WINDOW_SECONDS: u64 = 5;
/// Milliseconds per tick.
const TICK_MS: u64 = 1000 / RESOLUTION;

/// JS `speedometer` 1.1.0: bytes per second over the last five seconds, in quarter-second
/// ticks counted from time 0 of the `now` given (JS counts ticks with a global timer).
#[derive(Debug, Clone)]
pub struct Speedometer {
    buffer: Vec<u64>,
    pointer: usize,
    last: u64,
}

impl Speedometer {
    /// A speedometer started at `now` (milliseconds).
    pub fn new(now: u64) -> Self {
        Speedometer {
            buffer: vec![0],
            pointer: 1,
            last: (now / TICK_MS).wrapping_sub(1),
        }
    }

    /// Count `delta` bytes at `now` (0: only read) and give the speed in bytes per second.
    pub fn update(&mut self, now: u64, delta: u64) -> f64 {
        let size = (RESOLUTION * WINDOW_SECONDS) as usize;
        let tick = now / TICK_MS;
        let mut dist = tick.wrapping_sub(self.last).min(size as u64);
        if tick < self.last && self.last != u64::MAX {
            dist = 0; // time went back: no ticks passed
        }
        self.last = tick;
        while dist > 0 {
            dist -= 1;
            if self.pointer == size {
                self.pointer = 0;
            }
            let prev = self.buffer[if self.pointer == 0 {
                size - 1
            } else {
                self.pointer - 1
            }];
            if self.pointer < self.buffer.len() {
                self.buffer[self.pointer] = prev;
            } else {
                self.buffer.push(prev);
            }
            self.pointer += 1;
        }
        self.buffer[self.pointer - 1] += delta;
        let top = self.buffer[self.pointer - 1];
        let btm = if self.buffer.len() < size {
            0
        } else {
            self.buffer[if self.pointer == size {
                0
            } else {
                self.pointer
            }]
        };
        if (self.buffer.len() as u64) < RESOLUTION {
            top as f64
        } else {
            (top - btm) as f64 * RESOLUTION as f64 / self.buffer.len() as f64
        }
    }
}

/// One direction's statistics (JS `monitor.uploadStats` / `downloadStats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransferStats {
    /// `now` of the first block counted (0: none yet).
    pub start_time: u64,
    /// `blocks / target_blocks * 100`, rounded to two decimals.
    pub percentage: f64,
    /// Peers of the blobs core.
    pub peers: usize,
    /// Bytes per second at the last block counted ([`Speedometer`]).
    pub speed: f64,
    /// Blocks counted.
    pub blocks: u64,
    /// Bytes counted (JS: the same as `monitoring_bytes`).
    pub total_bytes: u64,
    /// Bytes counted.
    pub monitoring_bytes: u64,
    /// The file's byte length (0 without a file).
    pub target_bytes: u64,
    /// The file's block length (0 without a file).
    pub target_blocks: u64,
}

/// Which of the drive's cores an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitoredCore {
    /// The blobs core.
    Blobs,
    /// The db core (its blocks count only when no file is monitored).
    Db,
}

/// What a hub event did to a monitor ([`Monitor::handle_hub_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubEventEffect {
    /// Whether the transfer stats changed (JS `update`).
    Stats {
        /// They did.
        changed: bool,
    },
    /// The blobs core's peers may have changed: count them and [`Monitor::set_peers`].
    PeersChanged,
}

/// A drive monitor; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Monitor {
    /// The monitored blocks of the blobs core, `None` without a file (every block counts).
    range: Option<(u64, u64)>,
    upload: TransferStats,
    download: TransferStats,
    upload_speed: Speedometer,
    download_speed: Speedometer,
}

impl Monitor {
    /// A monitor started at `now` (milliseconds) of the file whose blob is `blob` (JS
    /// `drive.monitor(name)` with the entry found; `None`: no name, or not found).
    pub fn new(now: u64, blob: Option<&BlobId>) -> Self {
        Self::with_range(
            now,
            blob.map(|b| (b.block_offset, b.block_length, b.byte_length)),
        )
    }

    /// A monitor of what `drive.monitor(name)` found: a file's blob range, nothing for an entry
    /// without a blob (a symlink; JS throws), every block of both cores when `entry` is `None`
    /// (no name, or not found).
    pub fn for_entry(now: u64, entry: Option<&super::DriveEntry>) -> Self {
        match entry {
            Some(e) => match &e.value.blob {
                Some(blob) => Self::new(now, Some(blob)),
                None => Self::for_entry_without_blob(now),
            },
            None => Self::new(now, None),
        }
    }

    /// A monitor of a file entry without a blob (a symlink): nothing counts (JS throws).
    pub fn for_entry_without_blob(now: u64) -> Self {
        Self::with_range(now, Some((0, 0, 0)))
    }

    fn with_range(now: u64, file: Option<(u64, u64, u64)>) -> Self {
        let mut stats = TransferStats::default();
        if let Some((_, blocks, bytes)) = file {
            stats.target_blocks = blocks;
            stats.target_bytes = bytes;
        }
        Monitor {
            range: file.map(|(offset, length, _)| (offset, length)),
            upload: stats.clone(),
            download: stats,
            upload_speed: Speedometer::new(now),
            download_speed: Speedometer::new(now),
        }
    }

    /// Whether a file is monitored (else every block of both cores counts).
    pub fn has_file(&self) -> bool {
        self.range.is_some()
    }

    /// Whether block `index` of the blobs core is in the monitored range.
    pub fn in_range(&self, index: u64) -> bool {
        self.range
            .is_none_or(|(offset, length)| index >= offset && index - offset < length)
    }

    /// The blobs core's peer count changed (JS `peer-add` / `peer-remove`).
    pub fn set_peers(&mut self, peers: usize) {
        self.upload.peers = peers;
        self.download.peers = peers;
    }

    /// The blobs core's peers.
    pub fn peers(&self) -> usize {
        self.download.peers
    }

    /// Whether a monitor of the drive whose db and blobs cores have these discovery keys wants
    /// `event` of the store's hub: the events of its two cores, and the blobs core's channels
    /// opening and closing (its peer count). A transport subscribes with this filter, so a
    /// monitor does not collect the events of every other core of the store.
    pub fn wants_event(db: &[u8; 32], blobs: &[u8; 32], event: &HubEvent) -> bool {
        match event {
            HubEvent::Core { discovery_key, .. } => discovery_key == blobs || discovery_key == db,
            HubEvent::ChannelOpened { discovery_key, .. }
            | HubEvent::ChannelClosed { discovery_key, .. } => discovery_key == blobs,
            _ => false,
        }
    }

    /// An event of the store's hub, for a monitor of the drive whose db and blobs cores have
    /// these discovery keys: its cores' replicator events go to [`Monitor::handle_event`]; a
    /// channel of the blobs core opening or closing asks the caller to count the blobs core's
    /// peers again ([`Monitor::set_peers`]: the hub knows them); the rest changes nothing.
    pub fn handle_hub_event(
        &mut self,
        now: u64,
        db: &[u8; 32],
        blobs: &[u8; 32],
        event: &HubEvent,
    ) -> HubEventEffect {
        if !Self::wants_event(db, blobs, event) {
            return HubEventEffect::Stats { changed: false };
        }
        match event {
            HubEvent::Core {
                discovery_key,
                event,
            } => {
                let core = if discovery_key == blobs {
                    MonitoredCore::Blobs
                } else {
                    MonitoredCore::Db
                };
                HubEventEffect::Stats {
                    changed: self.handle_event(now, core, event),
                }
            }
            // What `wants_event` lets through besides: the blobs core's channels.
            _ => HubEventEffect::PeersChanged,
        }
    }

    /// A replicator event of the drive's `core`: [`Event::Block`] (a download) and
    /// [`Event::Uploaded`] count when in range. Whether the stats changed (JS `update`).
    pub fn handle_event(&mut self, now: u64, core: MonitoredCore, event: &Event) -> bool {
        if core == MonitoredCore::Db && self.range.is_some() {
            return false;
        }
        let (index, bytes, upload) = match *event {
            Event::Block { index, bytes, .. } => (index, bytes, false),
            Event::Uploaded { index, bytes, .. } => (index, bytes, true),
            _ => return false,
        };
        if core == MonitoredCore::Blobs && !self.in_range(index) {
            return false;
        }
        let (stats, speed) = if upload {
            (&mut self.upload, &mut self.upload_speed)
        } else {
            (&mut self.download, &mut self.download_speed)
        };
        if stats.start_time == 0 {
            stats.start_time = now;
        }
        stats.speed = speed.update(now, bytes);
        stats.blocks += 1;
        stats.monitoring_bytes += bytes;
        stats.total_bytes += bytes;
        stats.percentage =
            (stats.blocks as f64 / stats.target_blocks as f64 * 100.0 * 100.0).round() / 100.0;
        true
    }

    /// What was downloaded (JS `monitor.downloadStats`).
    pub fn download_stats(&self) -> &TransferStats {
        &self.download
    }

    /// What was uploaded (JS `monitor.uploadStats`).
    pub fn upload_stats(&self) -> &TransferStats {
        &self.upload
    }

    /// The download speed now, bytes per second (JS `monitor.downloadSpeed()`).
    pub fn download_speed(&mut self, now: u64) -> f64 {
        self.download_speed.update(now, 0)
    }

    /// The upload speed now, bytes per second (JS `monitor.uploadSpeed()`).
    pub fn upload_speed(&mut self, now: u64) -> f64 {
        self.upload_speed.update(now, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::PeerId;

    fn peer() -> PeerId {
        PeerId::from_raw(3)
    }

    fn down(index: u64, bytes: u64) -> Event {
        Event::Block {
            index,
            bytes,
            peer: peer(),
        }
    }

    fn up(index: u64, bytes: u64) -> Event {
        Event::Uploaded {
            index,
            bytes,
            peer: peer(),
        }
    }

    /// JS speedometer, step by step: the values node prints for the same deltas at the same
    /// ticks (`speedometer()` with ticks 250 ms apart, computed by hand from its source).
    #[test]
    fn speedometer_follows_js() {
        let mut s = Speedometer::new(0);
        // Tick 0: buffer grows to [0, 0] then 100 is added: fewer than 4 entries, `top`.
        assert_eq!(s.update(0, 100), 100.0);
        assert_eq!(s.update(250, 100), 200.0); // [0,100,200]
                                               // [0,100,200,200,500]: (500 - 0) * 4 / 5
        assert_eq!(s.update(750, 300), 400.0);
        // 10 s later: the window is full of the same total, so nothing in the last 5 s.
        assert_eq!(s.update(10_750, 0), 0.0);
        assert_eq!(s.update(10_750, 1000), 1000.0 * 4.0 / 20.0);
    }

    #[test]
    fn counts_the_files_blocks_in_each_direction() {
        let blob = BlobId {
            block_offset: 10,
            byte_offset: 0,
            block_length: 3,
            byte_length: 150,
            block_map: false,
        };
        let mut m = Monitor::new(0, Some(&blob));
        assert!(m.has_file());
        assert_eq!(m.download_stats().target_blocks, 3);
        assert_eq!(m.upload_stats().target_bytes, 150);
        assert!(!m.handle_event(5, MonitoredCore::Blobs, &down(9, 50)));
        assert!(!m.handle_event(5, MonitoredCore::Blobs, &down(13, 50)));
        assert!(!m.handle_event(5, MonitoredCore::Db, &down(10, 50)));
        assert!(m.handle_event(5, MonitoredCore::Blobs, &down(10, 50)));
        assert!(m.handle_event(6, MonitoredCore::Blobs, &down(12, 40)));
        assert!(m.handle_event(7, MonitoredCore::Blobs, &up(11, 60)));
        let d = m.download_stats();
        assert_eq!((d.blocks, d.monitoring_bytes, d.total_bytes), (2, 90, 90));
        assert_eq!(d.start_time, 5);
        assert_eq!(d.percentage, 66.67);
        let u = m.upload_stats();
        assert_eq!((u.blocks, u.monitoring_bytes, u.start_time), (1, 60, 7));
        assert_eq!(u.percentage, 33.33);
        m.set_peers(2);
        assert_eq!((m.peers(), m.upload_stats().peers), (2, 2));
        assert!(!m.handle_event(
            8,
            MonitoredCore::Blobs,
            &Event::PeerSync {
                peer: peer(),
                fork: 0,
                length: 1
            }
        ));
    }

    #[test]
    fn without_a_file_every_block_of_both_cores_counts() {
        let mut m = Monitor::new(0, None);
        assert!(m.handle_event(1, MonitoredCore::Blobs, &down(1000, 1)));
        assert!(m.handle_event(1, MonitoredCore::Db, &down(0, 2)));
        assert_eq!(m.download_stats().blocks, 2);
        assert!(m.download_stats().percentage.is_infinite());
        let mut m = Monitor::for_entry_without_blob(0);
        assert!(!m.handle_event(1, MonitoredCore::Blobs, &down(0, 1)));
    }
    /// A hub event, as both transports hand them over: the drive's two cores count, the blobs
    /// core's channels ask for a peer count, everything else (and what `wants_event` filters
    /// out) changes nothing.
    #[test]
    fn hub_events_of_the_drive_and_of_other_cores() {
        let (db, blobs, other) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let core = |dk: [u8; 32]| HubEvent::Core {
            discovery_key: dk,
            event: down(0, 5),
        };
        let opened = |dk: [u8; 32]| HubEvent::ChannelOpened {
            stream: crate::replication::StreamId::from_raw(1),
            discovery_key: dk,
            peer: peer(),
        };
        let mut m = Monitor::new(0, None);
        let mut handle = |ev: &HubEvent| m.handle_hub_event(1, &db, &blobs, ev);
        assert_eq!(
            handle(&core(blobs)),
            HubEventEffect::Stats { changed: true }
        );
        assert_eq!(handle(&core(db)), HubEventEffect::Stats { changed: true });
        assert_eq!(
            handle(&core(other)),
            HubEventEffect::Stats { changed: false }
        );
        assert_eq!(handle(&opened(blobs)), HubEventEffect::PeersChanged);
        assert_eq!(
            handle(&opened(db)),
            HubEventEffect::Stats { changed: false }
        );
        assert_eq!(m.download_stats().blocks, 2);
        for ev in [core(blobs), core(db), opened(blobs)] {
            assert!(Monitor::wants_event(&db, &blobs, &ev));
        }
        for ev in [core(other), opened(db), opened(other)] {
            assert!(!Monitor::wants_event(&db, &blobs, &ev));
        }
    }
}
