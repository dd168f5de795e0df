//! Announcing our state: `sync` messages, local appends and truncations, and the `canUpgrade`
//! flag (JS `signalUpgrade`).

use crate::hypercore::messages::{Message, Sync};
use crate::hypercore::AppendOutcome;
use crate::storage::Storage;

use super::{PeerId, ReplicationError, Replicator};

impl<S: Storage> Replicator<S> {
    /// Whether our `sync` says we are downloading (JS `isDownloading`):
    /// [`Options::downloading`](super::Options::downloading), or requests of ours are in flight.
    pub fn is_downloading(&self) -> bool {
        self.opts.downloading || !self.inflight.is_empty()
    }

    /// Whether our `sync` offers to take pushes (JS `isAllowingPush`):
    /// [`Options::allow_push`](super::Options::allow_push) while downloading, and not while a
    /// [`Replicator::set_downloading`]`(false)` lingers.
    pub fn is_allowing_push(&self) -> bool {
        self.opts.allow_push && self.opts.downloading && self.not_downloading_at.is_none()
    }

    /// Say whether this core is downloading ([`Options::downloading`](super::Options::downloading),
    /// JS `setDownloading`, which JS calls as its sessions open and close). Turned on, peers hear
    /// it at once (a new `sync`). Turned off, `allowPush` is dropped from our `sync` at once, and
    /// `downloading` [`Options::not_downloading_linger`](super::Options::not_downloading_linger) ms
    /// later ([`Replicator::handle_timeout`]), unless it was turned on again meanwhile; while
    /// requests of ours are in flight we still say we download.
    pub async fn set_downloading(
        &mut self,
        now: u64,
        downloading: bool,
    ) -> Result<(), ReplicationError> {
        let allow_push = self.is_allowing_push();
        self.not_downloading_at = None;
        if downloading || self.opts.not_downloading_linger == 0 {
            if !self.set_downloading_now(downloading).await? {
                self.signal_allow_push(allow_push).await?;
            }
            return Ok(());
        }
        self.not_downloading_at = Some(now.saturating_add(self.opts.not_downloading_linger));
        self.signal_allow_push(allow_push).await
    }

    /// JS `_setDownloadingNow`: true when peers were told.
    pub(super) async fn set_downloading_now(
        &mut self,
        downloading: bool,
    ) -> Result<bool, ReplicationError> {
        self.not_downloading_at = None;
        if self.opts.downloading == downloading {
            return Ok(false);
        }
        self.opts.downloading = downloading;
        if !downloading && self.is_downloading() {
            return Ok(false);
        }
        self.signal_all().await?;
        Ok(true)
    }

    /// JS `signalAllowPush`: tell the peers when `allowPush` changed from `before`.
    async fn signal_allow_push(&mut self, before: bool) -> Result<(), ReplicationError> {
        if before == self.is_allowing_push() {
            return Ok(());
        }
        self.signal_all().await
    }

    async fn signal_all(&mut self) -> Result<(), ReplicationError> {
        if self.frozen {
            return Ok(());
        }
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for p in peers {
            self.signal_upgrade(p).await?;
        }
        Ok(())
    }

    /// Append to a writable core and tell the peers (sync + range); with [`Options::push`](super::Options::push),
    /// push the new blocks to the peers that accept pushes.
    pub async fn append(
        &mut self,
        now: u64,
        blocks: &[&[u8]],
    ) -> Result<AppendOutcome, ReplicationError> {
        let start = self.core.length();
        let out = self.core.append(blocks).await?;
        self.notify_local_change(now).await?;
        self.push_appended(start).await?;
        Ok(out)
    }

    /// Append with a signature made elsewhere ([`crate::hypercore::Hypercore::append_signed`]: a multisig
    /// assembled from its signers' partial signatures) and tell the peers, as [`Self::append`].
    pub async fn append_signed(
        &mut self,
        now: u64,
        blocks: &[&[u8]],
        signature: &[u8],
    ) -> Result<AppendOutcome, ReplicationError> {
        let start = self.core.length();
        let out = self.core.append_signed(blocks, signature).await?;
        self.notify_local_change(now).await?;
        self.push_appended(start).await?;
        Ok(out)
    }

    /// Truncate a writable core (fork + 1 by default) and tell the peers (`range{drop}` + sync).
    pub async fn truncate(
        &mut self,
        now: u64,
        length: u64,
        fork: Option<u64>,
    ) -> Result<(), ReplicationError> {
        self.core.truncate(length, fork).await?;
        self.notify_local_change(now).await
    }

    /// The core changed through [`Replicator::core_mut`]: announce the new length/fork.
    pub async fn notify_local_change(&mut self, now: u64) -> Result<(), ReplicationError> {
        let (len, fork) = (self.core.length(), self.core.fork());
        let (old_len, old_fork) = (self.last_length, self.last_fork);
        self.last_length = len;
        self.last_fork = fork;
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        if fork != old_fork || len != old_len {
            self.pending_reorg = None;
        }
        if fork != old_fork || len < old_len {
            self.cancel_stale_requests();
            // Without knowing the shared prefix of a fork change, drop everything past it.
            let from = if fork != old_fork { 0 } else { len };
            for &p in &peers {
                if let Some(pp) = self.peers.get_mut(&p) {
                    pp.fully_signaled = pp.fully_signaled.min(from);
                    pp.pushed_length = pp.pushed_length.min(from);
                }
                if old_len > from {
                    self.broadcast_range(p, from, old_len - from, true);
                }
                self.send_sync(p);
                let contig = self.core.contiguous_length().min(len);
                if contig > 0 {
                    self.broadcast_range(p, 0, contig, false);
                }
            }
        } else if len > old_len {
            for &p in &peers {
                self.signal_upgrade(p).await?;
                self.broadcast_range(p, old_len, len - old_len, false);
            }
        }
        self.check_downloads();
        self.check_seeks().await?;
        self.update(now).await
    }

    /// Our length/fork changed through a peer's proof.
    pub(super) async fn after_upgrade(&mut self, old_fork: u64) -> Result<(), ReplicationError> {
        let (len, fork) = (self.core.length(), self.core.fork());
        self.last_length = len;
        self.last_fork = fork;
        if fork != old_fork {
            self.cancel_stale_requests();
        }
        // A pending reorg was checked against the tree we just left.
        self.pending_reorg = None;
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for p in peers {
            if fork != old_fork {
                if let Some(pp) = self.peers.get_mut(&p) {
                    pp.fully_signaled = pp.fully_signaled.min(self.core.contiguous_length());
                    pp.pushed_length = 0;
                }
            }
            self.signal_upgrade(p).await?;
        }
        Ok(())
    }

    pub(super) async fn can_upgrade_to(&self, remote_length: u64, remote_fork: u64) -> bool {
        if remote_fork != self.core.fork() {
            return false;
        }
        if remote_length == 0 {
            return true;
        }
        if remote_length >= self.core.length() {
            return false;
        }
        self.core.upgradeable(remote_length).await.unwrap_or(false)
    }

    /// JS `signalUpgrade`: recompute `canUpgrade` if it may have become true, else resend `sync`.
    pub(super) async fn signal_upgrade(&mut self, peer: PeerId) -> Result<(), ReplicationError> {
        let (len, fork) = (self.core.length(), self.core.fork());
        let Some(p) = self.peers.get(&peer) else {
            return Ok(());
        };
        if fork == p.remote_fork && len > p.remote_length && !p.can_upgrade {
            let (rl, rf) = (p.remote_length, p.remote_fork);
            let can = self.can_upgrade_to(rl, rf).await;
            if let Some(p) = self.peers.get_mut(&peer) {
                if can != p.can_upgrade {
                    p.can_upgrade = can;
                    if can {
                        p.last_upgradable = Some((rf, rl));
                    }
                    self.send_sync(peer);
                }
            }
        } else {
            self.send_sync(peer);
        }
        Ok(())
    }

    pub(super) fn send_sync(&mut self, peer: PeerId) {
        let (len, fork) = (self.core.length(), self.core.fork());
        let has_manifest = self.core.manifest().is_some() && !self.core.is_compat();
        let (downloading, allow_push) = (self.is_downloading(), self.is_allowing_push());
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if fork != p.remote_fork {
            p.can_upgrade = false;
        }
        let sync = Sync {
            fork,
            length: len,
            remote_length: if fork == p.remote_fork {
                p.remote_length
            } else {
                0
            },
            can_upgrade: p.can_upgrade,
            uploading: true,
            downloading,
            has_manifest,
            allow_push,
        };
        self.transmits.push_back((peer, Message::Sync(sync)));
    }
}
