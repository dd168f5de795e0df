//! Request scheduling: download ranges, request ids and deadlines, which peer is asked for
//! what (upgrades, manifest, blocks least-loaded first, hotswaps), cancels and timeouts.

use crate::hypercore::messages::{Cancel, Message, Request, RequestBlock, RequestUpgrade};
use crate::storage::Storage;

use super::{
    DownloadId, Event, Peer, PeerId, ReplicationError, Replicator, MAX_BACKOFFS,
    MAX_BLOCK_REQUESTS, MAX_SCAN,
};

#[derive(Debug, Clone)]
pub(super) struct Inflight {
    pub(super) peer: PeerId,
    pub(super) req: Request,
    pub(super) deadline: u64,
}

impl<S: Storage> Replicator<S> {
    /// Time passed: cancel requests past their deadline (rescheduling them elsewhere) and send
    /// delayed answers that are due.
    pub async fn handle_timeout(&mut self, now: u64) -> Result<(), ReplicationError> {
        let expired: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(p) = self
                .inflight
                .get(&id)
                .and_then(|r| self.peers.get_mut(&r.peer))
            {
                // Slow peers go to the back of the queue, and are paused like JS backoffs.
                p.timeouts += 1;
                if p.timeouts >= MAX_BACKOFFS {
                    p.paused = true;
                }
            }
            self.cancel_request(id);
        }
        let mut due = Vec::new();
        self.delayed.retain(|d| {
            if d.0 <= now {
                due.push((d.1, d.2.clone()));
                false
            } else {
                true
            }
        });
        for (peer, msg) in due {
            if self.peers.contains_key(&peer) {
                self.transmits.push_back((peer, msg));
            }
        }
        if self.not_downloading_at.is_some_and(|at| at <= now) {
            // JS `setNotDownloadingLater`.
            self.set_downloading_now(false).await?;
        }
        self.update(now).await
    }

    /// Want blocks `start..end` (`None`: every block from `start` on, following the core as it
    /// grows). [`Event::Block`] reports each block, [`Event::Downloaded`] a bounded range once
    /// complete (at once if it already is).
    pub async fn download(
        &mut self,
        now: u64,
        start: u64,
        end: Option<u64>,
    ) -> Result<DownloadId, ReplicationError> {
        let id = DownloadId(self.next_download);
        self.next_download += 1;
        self.downloads.insert(id, (start, end));
        self.check_downloads();
        self.update(now).await?;
        Ok(id)
    }

    /// The download ranges wanted and not complete yet ([`Replicator::download`]).
    pub fn pending_downloads(&self) -> usize {
        self.downloads.len()
    }

    /// Stop wanting a download range; requests only it needed are cancelled.
    pub fn cancel_download(&mut self, id: DownloadId) {
        self.downloads.remove(&id);
        let orphans: Vec<u64> = self
            .inflight
            .iter()
            .filter_map(|(&rid, r)| {
                let b = r.req.block?;
                (!self.is_wanted(b.index)).then_some(rid)
            })
            .collect();
        for rid in orphans {
            self.cancel_request(rid);
        }
    }

    fn is_wanted(&self, index: u64) -> bool {
        self.downloads
            .values()
            .any(|&(s, e)| index >= s && e.is_none_or(|e| index < e))
    }

    pub(super) fn check_downloads(&mut self) {
        let len = self.core.length();
        let done: Vec<DownloadId> = self
            .downloads
            .iter()
            .filter(|(_, &(s, e))| match e {
                Some(e) => {
                    e <= len
                        && (s >= e || self.core.bitfield().first_unset(s).is_none_or(|u| u >= e))
                }
                None => false,
            })
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            self.downloads.remove(&id);
            self.events.push_back(Event::Downloaded { id });
        }
    }

    fn alloc_id(&mut self) -> u64 {
        if let Some(id) = self.free_ids.pop_first() {
            return id;
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(super) fn send_request(&mut self, now: u64, peer: PeerId, mut req: Request) -> u64 {
        let id = self.alloc_id();
        req.id = id;
        if let Some(b) = req.block {
            self.inflight_blocks.entry(b.index).or_default().push(id);
        }
        if req.upgrade.is_some() {
            if req.fork == self.core.fork() {
                self.upgrade_inflight = Some(id);
            } else {
                self.reorg_inflight = Some(id);
            }
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.inflight += 1;
        }
        self.inflight.insert(
            id,
            Inflight {
                peer,
                req,
                deadline: now.saturating_add(self.opts.request_timeout),
            },
        );
        self.transmits.push_back((peer, Message::Request(req)));
        id
    }

    /// Forget request `id`; its id is reusable only if the answer came back (`roundtrip`).
    pub(super) fn finish_request(&mut self, id: u64, roundtrip: bool) {
        let Some(r) = self.inflight.remove(&id) else {
            return;
        };
        if roundtrip {
            self.free_ids.insert(id);
        }
        if let Some(b) = r.req.block {
            if let Some(ids) = self.inflight_blocks.get_mut(&b.index) {
                ids.retain(|&x| x != id);
                if ids.is_empty() {
                    self.inflight_blocks.remove(&b.index);
                }
            }
        }
        for s in self.seeks.values_mut() {
            if s.request == Some(id) {
                s.request = None;
            }
        }
        for t in self.tree_hashes.values_mut() {
            if t.request == Some(id) {
                t.request = None;
            }
        }
        if let Some(r) = self
            .pending_reorg
            .as_mut()
            .filter(|r| r.request == Some(id))
        {
            r.request = None;
        }
        if self.upgrade_inflight == Some(id) {
            self.upgrade_inflight = None;
        }
        if self.reorg_inflight == Some(id) {
            self.reorg_inflight = None;
        }
        if let Some(p) = self.peers.get_mut(&r.peer) {
            p.inflight = p.inflight.saturating_sub(1);
        }
    }

    pub(super) fn cancel_request(&mut self, id: u64) {
        if let Some(r) = self.inflight.get(&id) {
            let peer = r.peer;
            self.finish_request(id, false);
            if self.peers.contains_key(&peer) {
                self.transmits
                    .push_back((peer, Message::Cancel(Cancel { request: id })));
            }
        }
    }

    /// Requests made against a fork we left can only be answered with proofs we would reject.
    pub(super) fn cancel_stale_requests(&mut self) {
        let fork = self.core.fork();
        let stale: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, r)| r.req.fork < fork || (r.req.fork == fork && r.req.upgrade.is_some()))
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            self.cancel_request(id);
        }
    }

    pub(super) fn can_request(&self, p: &Peer, index: u64) -> bool {
        let (len, fork) = (self.core.length(), self.core.fork());
        if self.opts.push_only {
            return false;
        }
        p.remote_length >= len
            || p.last_upgradable
                .is_some_and(|(f, l)| f == fork && index < l)
            || p.can_upgrade
    }

    /// Issue whatever requests the wants and peers allow.
    pub(super) async fn update(&mut self, now: u64) -> Result<(), ReplicationError> {
        if self.frozen {
            return Ok(());
        }
        self.request_manifest(now);
        self.request_reorg(now);
        self.request_reorg_hash(now).await?;
        self.request_seeks(now);
        self.request_tree_hashes(now).await?;
        self.request_upgrade(now);
        self.request_blocks(now).await?;
        self.request_hotswaps(now);
        Ok(())
    }

    /// JS `_requestManifest`: without a manifest, ask one peer with an empty core that has one
    /// (others send it with their upgrade proof).
    fn request_manifest(&mut self, now: u64) {
        if self.core.manifest().is_some() || self.peers.values().any(|p| p.manifest_asked) {
            return;
        }
        let max = self.max_inflight();
        let pick = self.peers.iter_mut().find(|(_, p)| {
            !p.paused
                && p.synced
                && p.remote_length == 0
                && p.remote_has_manifest
                && p.inflight < max
        });
        if let Some((&peer, p)) = pick {
            p.manifest_asked = true;
            let req = Request {
                fork: p.remote_fork,
                manifest: true,
                ..Request::default()
            };
            self.send_request(now, peer, req);
        }
    }

    fn request_upgrade(&mut self, now: u64) {
        if !self.opts.eager_upgrade || self.opts.push_only || self.upgrade_inflight.is_some() {
            return;
        }
        let (len, fork) = (self.core.length(), self.core.fork());
        let max = self.max_inflight();
        let pick = self.peers.iter().find(|(_, p)| {
            !p.paused
                && p.remote_fork == fork
                && p.remote_can_upgrade
                && p.remote_length > len
                && p.length_acked == len
                && p.inflight < max
        });
        if let Some((&peer, p)) = pick {
            let req = Request {
                fork,
                upgrade: Some(RequestUpgrade {
                    start: len,
                    length: p.remote_length - len,
                }),
                manifest: self.core.manifest().is_none() && p.remote_has_manifest,
                ..Request::default()
            };
            self.send_request(now, peer, req);
        }
    }

    async fn request_blocks(&mut self, now: u64) -> Result<(), ReplicationError> {
        let (len, fork) = (self.core.length(), self.core.fork());
        let max = self.max_inflight();
        let ranges: Vec<(u64, u64)> = self
            .downloads
            .values()
            .map(|&(s, e)| (s, e.unwrap_or(len).min(len)))
            .filter(|&(s, e)| s < e)
            .collect();
        let mut budget = MAX_SCAN;
        for (start, end) in ranges {
            let mut i = start;
            while i < end && budget > 0 {
                budget -= 1;
                let Some(next) = self.core.bitfield().first_unset(i) else {
                    break;
                };
                i = next;
                if i >= end {
                    break;
                }
                if self.inflight_blocks.contains_key(&i) {
                    i += 1;
                    continue;
                }
                let mut any_capacity = false;
                let mut best: Option<((u64, usize), PeerId)> = None;
                for (&id, p) in &self.peers {
                    if p.paused || p.remote_fork != fork || p.inflight >= max {
                        continue;
                    }
                    any_capacity = true;
                    let load = (p.timeouts, p.inflight);
                    if p.has_block(i) && self.can_request(p, i) && best.is_none_or(|b| load < b.0) {
                        best = Some((load, id));
                    }
                }
                if !any_capacity {
                    return Ok(());
                }
                match best {
                    Some((_, peer)) => {
                        let nodes = self.core.missing_nodes(2 * i).await?;
                        let req = Request {
                            fork,
                            block: Some(RequestBlock { index: i, nodes }),
                            ..Request::default()
                        };
                        self.send_request(now, peer, req);
                    }
                    None => self.maybe_want(i),
                }
                i += 1;
            }
        }
        Ok(())
    }

    /// JS `_updateHotswap`: with several peers, a peer with spare capacity (half its window,
    /// at least 16) also asks for blocks already in flight elsewhere, up to
    /// [`MAX_BLOCK_REQUESTS`] requests per block, fewest requests and oldest first. The first
    /// answer wins and the other requests are cancelled, so one slow peer cannot hold a download
    /// back.
    fn request_hotswaps(&mut self, now: u64) {
        if self.peers.len() < 2 || self.inflight_blocks.is_empty() {
            return;
        }
        let fork = self.core.fork();
        let max = self.max_inflight();
        let limit = (max / 2).max(16).min(max);
        let mut queue: Vec<(usize, u64, u64)> = self
            .inflight_blocks
            .iter()
            .filter(|(_, ids)| (1..MAX_BLOCK_REQUESTS).contains(&ids.len()))
            .map(|(&index, ids)| {
                let oldest = ids
                    .iter()
                    .filter_map(|id| self.inflight.get(id))
                    .map(|r| r.deadline)
                    .min()
                    .unwrap_or(u64::MAX);
                (ids.len(), oldest, index)
            })
            .collect();
        if queue.is_empty() {
            return;
        }
        queue.sort_unstable();
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            for &(_, _, index) in &queue {
                let Some(p) = self.peers.get(&peer) else {
                    break;
                };
                if p.paused || p.remote_fork != fork || p.inflight >= limit {
                    break;
                }
                let Some(ids) = self.inflight_blocks.get(&index) else {
                    continue;
                };
                if ids.len() >= MAX_BLOCK_REQUESTS
                    || ids
                        .iter()
                        .any(|id| self.inflight.get(id).is_some_and(|r| r.peer == peer))
                    || !p.has_block(index)
                    || !self.can_request(p, index)
                {
                    continue;
                }
                let Some(nodes) = self.inflight.get(&ids[0]).and_then(|r| r.req.block) else {
                    continue;
                };
                let req = Request {
                    fork,
                    block: Some(RequestBlock {
                        index,
                        nodes: nodes.nodes,
                    }),
                    ..Request::default()
                };
                self.send_request(now, peer, req);
            }
        }
    }
}
