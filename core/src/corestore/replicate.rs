//! A [`Corestore`] replicating: the [`ReplicationHost`] a transport drives, and the answers to
//! the remote's opens of cores that are not open (JS `corestore.replicate` + `_attachMaybe`):
//! a core stored here is opened and replicated, any other open is rejected.

use crate::hypercore::{Hypercore, OpenOptions as CoreOpenOptions};
use crate::replication::{HubEvent, ReplicationError, ReplicationHost, Replicator, StreamId};
use crate::storage::Storage;

use super::{Corestore, CorestoreError, OpenCore};

impl<S: Storage + Clone> Corestore<S> {
    /// Answer the remote's opens of cores that were not open, then close what went idle. Runs
    /// at the end of every call that hands the hub input.
    async fn settle(&mut self, now: u64) -> Result<(), ReplicationError> {
        self.pull_events();
        while let Some((stream, dk)) = self.unknown.pop_front() {
            if self.closed || !self.hub.has_stream(stream) {
                self.hub.reject_unknown(stream, &dk);
                continue;
            }
            match self.open_for_remote(now, &dk).await {
                Ok(true) => {}
                Ok(false) => self.hub.reject_unknown(stream, &dk),
                Err(e) => {
                    // The core is there but cannot be opened (its storage failed or is
                    // corrupt): refuse the remote, keep the store and the stream going.
                    self.hub.reject_unknown(stream, &dk);
                    self.events.push_back(HubEvent::CoreOpenFailed {
                        stream,
                        discovery_key: dk,
                        error: e.into(),
                    });
                }
            }
            self.pull_events();
        }
        self.collect_idle();
        Ok(())
    }

    /// Open the stored core `dk` and replicate it, answering the remote's waiting opens.
    /// `false` when it is not stored here.
    async fn open_for_remote(&mut self, now: u64, dk: &[u8; 32]) -> Result<bool, CorestoreError> {
        if self.open.contains_key(dk) {
            // Opened meanwhile (by a session): the hub already answered the open.
            return Ok(true);
        }
        let Some(rec) = self.record(dk).await? else {
            return Ok(false);
        };
        let core = Hypercore::open(self.core_storage(rec.id), CoreOpenOptions::default()).await?;
        if core.discovery_key() != dk {
            return Err(CorestoreError::Corrupt(
                "a core record points at another core's data".into(),
            ));
        }
        let key = *core.key();
        let rep = Replicator::new(core, self.replicator.clone());
        self.hub.accept_core(now, rep).await?;
        self.watchers.opened(super::OpenedCore {
            key,
            discovery_key: *dk,
            for_remote: true,
        });
        self.open.insert(
            *dk,
            OpenCore {
                sessions: Default::default(),
                id: rec.id,
            },
        );
        // No session: it closes when its last peer goes.
        self.idle.insert(*dk);
        Ok(true)
    }

    /// A stream went: its cores may be idle now.
    fn stream_gone(&mut self) {
        let idle: Vec<[u8; 32]> = self
            .open
            .iter()
            .filter(|(_, c)| c.sessions.is_empty())
            .map(|(dk, _)| *dk)
            .collect();
        self.idle.extend(idle);
    }
}

impl<S: Storage + Clone> ReplicationHost for Corestore<S> {
    fn add_stream(
        &mut self,
        is_initiator: bool,
        handshake_hash: [u8; 64],
    ) -> Result<StreamId, ReplicationError> {
        if self.closed {
            return Err(CorestoreError::Closed.into());
        }
        let sid = self.hub.add_stream(is_initiator, handshake_hash)?;
        self.pull_events();
        Ok(sid)
    }

    async fn remove_stream(&mut self, now: u64, stream: StreamId) -> Result<(), ReplicationError> {
        self.hub.remove_stream(now, stream).await?;
        self.stream_gone();
        self.settle(now).await
    }

    fn has_stream(&self, stream: StreamId) -> bool {
        self.hub.has_stream(stream)
    }

    async fn handle_frames(
        &mut self,
        now: u64,
        stream: StreamId,
        frames: &[Vec<u8>],
    ) -> Result<(), ReplicationError> {
        self.hub.handle_frames(now, stream, frames.iter()).await?;
        if !self.hub.has_stream(stream) {
            self.stream_gone();
        }
        self.settle(now).await
    }

    async fn set_backlog(
        &mut self,
        now: u64,
        stream: StreamId,
        bytes: usize,
    ) -> Result<(), ReplicationError> {
        self.hub.set_backlog(now, stream, bytes).await?;
        self.settle(now).await
    }

    async fn handle_timeout(&mut self, now: u64) -> Result<(), ReplicationError> {
        self.hub.handle_timeout(now).await?;
        self.settle(now).await
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.hub.poll_timeout()
    }

    fn flush(&mut self) {
        self.flush_hub();
    }

    fn poll_transmit(&mut self) -> Option<(StreamId, Vec<u8>)> {
        self.hub.poll_transmit()
    }

    fn poll_transmit_frame(&mut self) -> Option<(StreamId, crate::protomux::OutFrame)> {
        self.hub.poll_transmit_frame()
    }

    fn take_changed(&mut self) -> bool {
        self.watchers.take_changed()
    }

    fn poll_event(&mut self) -> Option<HubEvent> {
        self.pull_events();
        self.events.pop_front()
    }
}
