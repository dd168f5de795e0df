//! Connections (hyperswarm index.js `_connect`, `_handleServerConnection`,
//! `_attemptClientConnections`): the queue drained into attempts, at most `max_parallel` at
//! once; one connection per remote key, duplicates settled by JS's tie-break; what a close
//! means for retries.

use core::time::Duration;

use super::{Action, ConnectionId, Event, Swarm};

/// One connection or attempt.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub public_key: [u8; 32],
    /// We dialed it.
    pub client: bool,
    /// Handed to the application (JS `connections`).
    pub announced: bool,
    /// A client attempt whose stream opened.
    pub opened: bool,
    /// The attempt came from the queue (counts for flushes).
    pub queued: bool,
    /// Replaces a duplicate that is closing (not yet in the connection set).
    pub held: bool,
}

impl Swarm {
    /// JS `_enqueue`.
    pub(crate) fn enqueue(&mut self, now: Duration, key: [u8; 32]) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.queued {
            return;
        }
        p.queued = true;
        p.flush_tick = self.flush_tick;
        self.queue.add(key, p.priority);
        self.attempt_client_connections(now);
    }

    /// JS `_requeue`: peers whose retry timer fired.
    pub(crate) fn requeue(&mut self, now: Duration, batch: Vec<[u8; 32]>) {
        for key in batch {
            let connected = self.by_key.contains_key(&key);
            let Some(p) = self.peers.get_mut(&key) else {
                continue;
            };
            p.waiting = false;
            if !p.update_priority() || connected || p.queued {
                // (JS leaves such a peer in the map until something else collects it.)
                continue;
            }
            p.queued = true;
            p.flush_tick = self.flush_tick;
            self.queue.add(key, p.priority);
        }
        self.attempt_client_connections(now);
    }

    fn should_connect_explicit(&self) -> bool {
        !self.destroyed && self.connecting < self.max_parallel
    }

    fn should_connect(&self) -> bool {
        !self.destroyed
            && self.connecting < self.max_parallel
            && self.within_max_peers()
            && self.client_connections < self.max_client_connections
    }

    /// JS `_shouldRequeue`.
    fn should_requeue(&self, key: &[u8; 32]) -> bool {
        let Some(p) = self.peers.get(key) else {
            return false;
        };
        if p.explicit {
            return true;
        }
        !self.destroyed
            && p.topics
                .iter()
                .any(|t| self.discovery.get(t).is_some_and(|d| !d.destroyed))
    }

    /// JS `_attemptClientConnections`.
    pub(crate) fn attempt_client_connections(&mut self, now: Duration) {
        for key in self.explicit.clone() {
            if !self.should_connect_explicit() {
                break;
            }
            let Some(p) = self.peers.get(&key) else {
                continue;
            };
            let backoff = Duration::from_secs(u64::from(p.attempts));
            if p.attempts >= 5 || now.saturating_sub(p.disconnected_time) < backoff {
                continue;
            }
            self.connect(now, key, false);
        }
        while !self.queue.is_empty() && self.should_connect() {
            let Some(key) = self.queue.shift(&mut self.rng) else {
                break;
            };
            if let Some(p) = self.peers.get_mut(&key) {
                p.queued = false;
            }
            self.connect(now, key, true);
        }
        if self.connecting == 0 {
            self.flush_all_maybe();
        }
    }

    /// JS `_connect`.
    fn connect(&mut self, _now: Duration, key: [u8; 32], queued: bool) {
        let banned = self.peers.get(&key).is_none_or(|p| p.banned);
        if banned || self.by_key.contains_key(&key) || self.firewall.refuses(&key) {
            self.sync_bans();
            if queued {
                self.flush_maybe(&key);
            }
            return;
        }
        let relay_addresses = self.peers[&key].relay_addresses.clone();
        let id = ConnectionId(self.next_id());
        self.conns.insert(
            id,
            Conn {
                public_key: key,
                client: true,
                announced: false,
                opened: false,
                queued,
                held: false,
            },
        );
        self.by_key.insert(key, id);
        self.stats.client_attempted += 1;
        self.connecting += 1;
        self.client_connections += 1;
        self.actions.push_back(Action::Connect {
            id,
            public_key: key,
            relay_addresses,
        });
        self.stats.updates += 1;
    }

    /// JS `_connectDone`.
    fn connect_done(&mut self, now: Duration) {
        self.connecting -= 1;
        if self.connecting < self.max_parallel {
            self.attempt_client_connections(now);
        }
        if self.connecting == 0 {
            self.flush_all_maybe();
        }
    }

    /// A dialed connection's stream opened. Returns false when the swarm no longer wants it
    /// (it was destroyed meanwhile): then destroy it and report its close.
    pub fn handle_connected(&mut self, now: Duration, id: ConnectionId) -> bool {
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        if !c.client || c.opened {
            return !c.client || c.opened;
        }
        c.opened = true;
        c.announced = true;
        let (key, queued) = (c.public_key, c.queued);
        self.stats.client_opened += 1;
        self.connect_done(now);
        let topics = match self.peers.get_mut(&key) {
            Some(p) => {
                p.connected(now);
                p.client = true;
                p.topics.clone()
            }
            None => Vec::new(),
        };
        self.events.push_back(Event::Connection {
            id,
            public_key: key,
            client: true,
            topics,
        });
        if queued {
            self.flush_maybe(&key);
        }
        self.stats.updates += 1;
        true
    }

    /// A server connection arrived from `remote_public_key` (after the firewall). `is_active`
    /// says whether a connection has already moved bytes both ways (JS `rawBytesRead > 0 &&
    /// rawBytesWritten > 0`). The connection is handed out ([`Event::Connection`]), destroyed
    /// as a duplicate ([`Action::Destroy`]), or held until the duplicate it replaces closed.
    pub fn handle_server_connection(
        &mut self,
        now: Duration,
        remote_public_key: [u8; 32],
        is_active: &dyn Fn(ConnectionId) -> bool,
    ) -> ConnectionId {
        let id = ConnectionId(self.next_id());
        self.conns.insert(
            id,
            Conn {
                public_key: remote_public_key,
                client: false,
                announced: false,
                opened: true,
                queued: false,
                held: false,
            },
        );
        self.server_connection(now, id, is_active);
        id
    }

    fn server_connection(
        &mut self,
        now: Duration,
        id: ConnectionId,
        is_active: &dyn Fn(ConnectionId) -> bool,
    ) {
        let key = self.conns[&id].public_key;
        if self.destroyed {
            self.actions.push_back(Action::Destroy(id));
            return;
        }
        if let Some(&existing) = self.by_key.get(&key) {
            // Both from the same peer: keep the new one if the existing stream is established
            // (the other side must have lost it and is reconnecting), else the one the larger
            // key dials (the same choice on both sides).
            let existing_is_outdated = is_active(existing);
            let expected_initiator = self.key_pair.public_key > key;
            let keep_new = existing_is_outdated || !expected_initiator;
            if !keep_new {
                self.actions.push_back(Action::KeepAlive(existing));
                self.actions.push_back(Action::Destroy(id));
                return;
            }
            self.actions.push_back(Action::Destroy(existing));
            if let Some(c) = self.conns.get_mut(&id) {
                c.held = true;
            }
            if let Some(older) = self.swaps.insert(existing, id) {
                // A connection already waited for this one: it loses to the newer.
                self.actions.push_back(Action::Destroy(older));
            }
            return;
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.held = false;
            c.announced = true;
        }
        self.stats.server_opened += 1;
        let topics = match self.upsert_peer_raw(key, None) {
            Some(p) => {
                p.client = false;
                p.topics.clone()
            }
            None => Vec::new(),
        };
        self.by_key.insert(key, id);
        self.server_connections += 1;
        self.events.push_back(Event::Connection {
            id,
            public_key: key,
            client: false,
            topics,
        });
        self.stats.updates += 1;
        let _ = now;
    }

    /// A connection (or attempt) closed. `is_active` as for
    /// [`handle_server_connection`](Self::handle_server_connection) (a connection waiting for
    /// this one to close is reconsidered).
    pub fn handle_closed(
        &mut self,
        now: Duration,
        id: ConnectionId,
        is_active: &dyn Fn(ConnectionId) -> bool,
    ) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        let key = c.public_key;
        let standing = self.by_key.get(&key) == Some(&id);
        if c.held {
            // It was waiting for a duplicate to close: forget it.
            self.swaps.retain(|_, v| *v != id);
        } else if c.client {
            if !c.opened {
                self.connect_done(now);
            }
            self.stats.client_closed += 1;
            if standing {
                self.by_key.remove(&key);
            }
            self.client_connections -= 1;
            let requeue = self.should_requeue(&key);
            if let Some(p) = self.peers.get_mut(&key) {
                p.disconnected(now);
                let waiting = requeue && self.timer.add(now, p);
                p.waiting = waiting;
            }
            self.maybe_delete_peer(&key);
            if !c.opened && c.queued {
                self.flush_maybe(&key);
            }
            self.attempt_client_connections(now);
            self.stats.updates += 1;
        } else if c.announced {
            if standing {
                self.by_key.remove(&key);
            }
            self.server_connections -= 1;
            self.stats.server_closed += 1;
            self.maybe_delete_peer(&key);
            self.attempt_client_connections(now);
            self.stats.updates += 1;
        }
        // A server connection waiting for this one takes its place now.
        if let Some(next) = self.swaps.remove(&id) {
            if self.conns.contains_key(&next) {
                self.server_connection(now, next, is_active);
            }
        }
    }
}
