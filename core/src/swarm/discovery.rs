//! Topics (hyperswarm lib/peer-discovery.js): the sessions that joined a topic decide whether
//! it is announced (server) and/or looked up (client); a refresh runs one DHT query, then the
//! next one 10-12 minutes later; a topic that stops being served unannounces.

use core::net::SocketAddrV4;
use core::time::Duration;
use std::collections::HashSet;

use super::{Action, Event, Listening, QueryId, QueryKind, SessionId, Swarm};
use crate::dht::messages::PeerRecord;

/// A topic is refreshed this often (JS `REFRESH_INTERVAL`, 10 min) ...
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(600);
/// ... plus up to this (JS `RANDOM_JITTER`, 2 min).
pub const RANDOM_JITTER: Duration = Duration::from_secs(120);
/// A refresh timer this late (a sleeping laptop) refreshes soon instead (JS
/// `DELAY_GRACE_PERIOD`).
pub const DELAY_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// Peers remembered per refresh for the limit (JS `MAX_DISCOVERY_CACHE`).
const MAX_DISCOVERY_CACHE: usize = 64;

/// How to join a topic (JS `swarm.join(topic, { server, client, limit })`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinOptions {
    /// Announce the topic and accept connections (default true).
    pub server: bool,
    /// Look the topic up and connect to its peers (default true).
    pub client: bool,
    /// Connect to at most this many peers per refresh (default: no limit).
    pub limit: Option<usize>,
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions {
            server: true,
            client: true,
            limit: None,
        }
    }
}

/// A topic's state (JS `swarm.status(topic)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStatus {
    /// Announced.
    pub is_server: bool,
    /// Looked up.
    pub is_client: bool,
    /// A refresh is running.
    pub refreshing: bool,
    /// Sessions joined.
    pub sessions: usize,
    /// Refreshes started.
    pub refreshes: u64,
    /// The closest nodes of the last successful query.
    pub closest_nodes: Vec<SocketAddrV4>,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    id: SessionId,
    client: bool,
    server: bool,
}

#[derive(Debug, Clone, Copy)]
struct Query {
    id: QueryId,
    clock: u64,
    announcing: bool,
    /// Peers still to hand over in this refresh (None: no limit).
    limit: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    due: Duration,
    start: Duration,
    delay: Duration,
}

/// One topic.
#[derive(Debug)]
pub(crate) struct Discovery {
    sessions: Vec<Session>,
    client_sessions: usize,
    server_sessions: usize,
    is_client: bool,
    is_server: bool,
    limit: Option<usize>,
    pub destroyed: bool,
    discovered: HashSet<[u8; 32]>,
    query: Option<Query>,
    timer: Option<Timer>,
    closest_nodes: Option<Vec<SocketAddrV4>>,
    first_announce: bool,
    needs_unannounce: bool,
    refreshes: u64,
    /// The refresh running (JS `_currentRefresh`), by its clock.
    current: Option<u64>,
    /// A refresh waiting for the server to listen: its clock and `clear`.
    waiting_listen: Option<(u64, bool)>,
}

impl Discovery {
    fn new() -> Self {
        Discovery {
            sessions: Vec::new(),
            client_sessions: 0,
            server_sessions: 0,
            is_client: false,
            is_server: false,
            limit: None,
            destroyed: false,
            discovered: HashSet::new(),
            query: None,
            timer: None,
            closest_nodes: None,
            first_announce: true,
            needs_unannounce: false,
            refreshes: 0,
            current: None,
            waiting_listen: None,
        }
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timer.map(|t| t.due)
    }

    /// The clock of the refresh running, if any.
    pub fn refreshing(&self) -> Option<u64> {
        self.current
    }
}

impl Swarm {
    /// Joins a topic (JS `swarm.join`): announce it (`server`), look it up and connect to its
    /// peers (`client`). Returns the session (leave with [`Swarm::leave_session`]), or `None`
    /// once the swarm is destroyed or with neither `server` nor `client`.
    pub fn join(&mut self, now: Duration, topic: [u8; 32], opts: JoinOptions) -> Option<SessionId> {
        if self.destroyed || !(opts.server || opts.client) {
            return None;
        }
        let id = SessionId(self.next_id());
        let d = self.discovery.entry(topic).or_insert_with(Discovery::new);
        d.sessions.push(Session {
            id,
            client: false,
            server: false,
        });
        self.sessions.insert(id, topic);
        self.refresh_session(now, id, opts);
        Some(id)
    }

    /// Changes a session's roles and refreshes its topic (JS `session.refresh`). False for an
    /// unknown session or neither role.
    pub fn refresh_session(
        &mut self,
        now: Duration,
        session: SessionId,
        opts: JoinOptions,
    ) -> bool {
        if !(opts.server || opts.client) {
            return false;
        }
        let Some(topic) = self.sessions.get(&session).copied() else {
            return false;
        };
        let Some(d) = self.discovery.get_mut(&topic) else {
            return false;
        };
        let Some(s) = d.sessions.iter_mut().find(|s| s.id == session) else {
            return false;
        };
        if opts.client != s.client {
            s.client = opts.client;
            if opts.client {
                d.client_sessions += 1;
            } else {
                d.client_sessions -= 1;
            }
        }
        if opts.server != s.server {
            s.server = opts.server;
            if opts.server {
                d.server_sessions += 1;
            } else {
                d.server_sessions -= 1;
            }
        }
        d.limit = opts.limit;
        self.refresh_topic(now, topic);
        true
    }

    /// Leaves one session (JS `session.destroy`): the last one leaves the topic; when no
    /// session serves it any more, it is unannounced.
    pub fn leave_session(&mut self, now: Duration, session: SessionId) {
        let Some(topic) = self.sessions.remove(&session) else {
            return;
        };
        let Some(d) = self.discovery.get_mut(&topic) else {
            return;
        };
        if let Some(i) = d.sessions.iter().position(|s| s.id == session) {
            let s = d.sessions.swap_remove(i);
            if s.client {
                d.client_sessions -= 1;
            }
            if s.server {
                d.server_sessions -= 1;
            }
        }
        if d.sessions.is_empty() {
            self.leave(now, topic);
        } else if d.server_sessions == 0 && d.needs_unannounce {
            self.refresh_topic(now, topic);
        }
    }

    /// Leaves a topic, every session of it (JS `swarm.leave`): stops its queries and timer,
    /// and unannounces it if it was announced.
    pub fn leave(&mut self, now: Duration, topic: [u8; 32]) {
        let Some(mut d) = self.discovery.remove(&topic) else {
            return;
        };
        d.destroyed = true;
        self.sessions.retain(|_, t| *t != topic);
        if let Some(q) = d.query.take() {
            self.queries.remove(&q.id);
            self.actions.push_back(Action::CancelQuery(q.id));
        }
        d.timer = None;
        if d.current.take().is_some() {
            self.events.push_back(Event::Refreshed { topic, ok: false });
        }
        if d.needs_unannounce {
            if let Some(nodes) = d.closest_nodes.take().filter(|n| !n.is_empty()) {
                self.actions.push_back(Action::Unannounce { topic, nodes });
            }
        }
        self.check_flushes(now);
    }

    /// A topic's state.
    pub fn status(&self, topic: &[u8; 32]) -> Option<TopicStatus> {
        let d = self.discovery.get(topic)?;
        Some(TopicStatus {
            is_server: d.is_server,
            is_client: d.is_client,
            refreshing: d.current.is_some(),
            sessions: d.sessions.len(),
            refreshes: d.refreshes,
            closest_nodes: d.closest_nodes.clone().unwrap_or_default(),
        })
    }

    /// The topics joined.
    pub fn topics(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.discovery.keys()
    }

    /// Starts the server if it is not running (JS `swarm.listen()`).
    pub fn listen(&mut self) {
        if self.listening == Listening::No && !self.destroyed {
            self.listening = Listening::Pending;
            self.actions.push_back(Action::Listen);
        }
    }

    /// The server announced itself and accepts connections.
    pub fn handle_listening(&mut self, now: Duration) {
        self.listening = Listening::Yes;
        let waiting: Vec<([u8; 32], u64, bool)> = self
            .discovery
            .iter_mut()
            .filter_map(|(t, d)| d.waiting_listen.take().map(|(c, clear)| (*t, c, clear)))
            .collect();
        for (topic, clock, clear) in waiting {
            let Some(d) = self.discovery.get_mut(&topic) else {
                continue;
            };
            if clock == d.refreshes && !d.destroyed {
                d.needs_unannounce = true;
                self.start_query(topic, clock, clear);
            } else if d.current == Some(clock) {
                // JS: a refresh that yields to a newer one resolves.
                d.current = None;
                self.events.push_back(Event::Refreshed { topic, ok: true });
            }
        }
        self.check_flushes(now);
    }

    /// JS `discovery.refresh()`.
    fn refresh_topic(&mut self, now: Duration, topic: [u8; 32]) {
        let Some(d) = self.discovery.get_mut(&topic) else {
            return;
        };
        if d.destroyed {
            return;
        }
        let server = d.server_sessions > 0;
        let client = d.client_sessions > 0;
        if server == d.is_server && client == d.is_client {
            if d.current.is_some() {
                return;
            }
        } else {
            if let Some(q) = d.query.take() {
                self.queries.remove(&q.id);
                self.actions.push_back(Action::CancelQuery(q.id));
            }
            d.is_server = server;
            d.is_client = client;
            if d.current.take().is_some() {
                // The replaced refresh fails (its query was destroyed).
                self.events.push_back(Event::Refreshed { topic, ok: false });
            }
        }
        self.start_refresh(now, topic);
    }

    /// JS `_refresh`, up to the query.
    fn start_refresh(&mut self, _now: Duration, topic: [u8; 32]) {
        let Some(d) = self.discovery.get_mut(&topic) else {
            return;
        };
        d.refreshes += 1;
        let clock = d.refreshes;
        d.current = Some(clock);
        let clear = d.is_server && d.first_announce;
        if clear {
            d.first_announce = false;
        }
        if d.is_server {
            if self.listening != Listening::Yes {
                d.waiting_listen = Some((clock, clear));
                self.listen();
                return;
            }
            d.needs_unannounce = true;
        }
        self.start_query(topic, clock, clear);
    }

    fn start_query(&mut self, topic: [u8; 32], clock: u64, clear: bool) {
        let id = QueryId(self.next_id());
        let Some(d) = self.discovery.get_mut(&topic) else {
            return;
        };
        // JS counts the peers found last time that are connected against the limit, but
        // looks them up by hex string in a set of streams, which never matches: the whole
        // limit applies again.
        d.discovered.clear();
        let announcing = d.is_server;
        let kind = if announcing {
            QueryKind::Announce { clear }
        } else if d.needs_unannounce {
            QueryKind::LookupAndUnannounce
        } else {
            QueryKind::Lookup
        };
        d.query = Some(Query {
            id,
            clock,
            announcing,
            limit: d.limit,
        });
        let nodes = d.closest_nodes.clone().unwrap_or_default();
        self.queries.insert(id, topic);
        self.actions.push_back(Action::Query {
            id,
            topic,
            kind,
            nodes,
        });
    }

    /// Peers a query's reply listed.
    pub fn handle_query_peers(&mut self, now: Duration, query: QueryId, peers: &[PeerRecord]) {
        let Some(topic) = self.queries.get(&query).copied() else {
            return;
        };
        let mut found = Vec::new();
        {
            let Some(d) = self.discovery.get_mut(&topic) else {
                return;
            };
            let Some(q) = d.query.as_mut().filter(|q| q.id == query) else {
                return;
            };
            if !d.is_client || d.destroyed || self.destroyed {
                return;
            }
            for peer in peers {
                if let Some(left) = q.limit.as_mut() {
                    if d.discovered.len() < MAX_DISCOVERY_CACHE {
                        d.discovered.insert(peer.public_key);
                    }
                    if *left == 0 {
                        continue;
                    }
                    *left -= 1;
                }
                found.push(peer.clone());
            }
        }
        for peer in found {
            self.handle_peer(now, peer, topic);
        }
    }

    /// JS `_handlePeer`: a peer found under `topic`.
    fn handle_peer(&mut self, now: Duration, peer: PeerRecord, topic: [u8; 32]) {
        let key = peer.public_key;
        let Some(p) = self.upsert_peer_raw(key, Some(peer.relay_addresses)) else {
            return;
        };
        p.add_topic(topic);
        if self.by_key.contains_key(&key) {
            return;
        }
        let p = self.peers.get_mut(&key).expect("upserted");
        if !p.prioritized() || p.server() {
            p.reset();
        }
        if p.update_priority() {
            self.enqueue(now, key);
        }
    }

    /// A query ended: `Ok` with its closest nodes, or `Err` when it failed.
    pub fn handle_query_done(
        &mut self,
        now: Duration,
        query: QueryId,
        result: Result<Vec<SocketAddrV4>, ()>,
    ) {
        let Some(topic) = self.queries.remove(&query) else {
            return;
        };
        let jitter = Duration::from_millis(self.rng.below(RANDOM_JITTER.as_millis() as u64 + 1));
        let Some(d) = self.discovery.get_mut(&topic) else {
            return;
        };
        let Some(q) = d.query.filter(|q| q.id == query) else {
            return;
        };
        d.query = None;
        if !d.destroyed && !self.destroyed {
            d.timer = Some(Timer {
                due: now + REFRESH_INTERVAL + jitter,
                start: now,
                delay: REFRESH_INTERVAL + jitter,
            });
        }
        let ok = result.is_ok();
        if let Ok(nodes) = result {
            d.closest_nodes = Some(nodes);
            if q.clock == d.refreshes && !q.announcing {
                d.needs_unannounce = false;
            }
        }
        if d.current == Some(q.clock) {
            d.current = None;
            self.events.push_back(Event::Refreshed { topic, ok });
        }
        self.check_flushes(now);
    }

    /// A topic's refresh timer fired.
    pub(crate) fn refresh_timer_fired(&mut self, now: Duration, topic: [u8; 32]) {
        let jitter = Duration::from_millis(self.rng.below(RANDOM_JITTER.as_millis() as u64 + 1));
        let Some(d) = self.discovery.get_mut(&topic) else {
            return;
        };
        let Some(t) = d.timer.take() else { return };
        if now.saturating_sub(t.start) > t.delay + DELAY_GRACE_PERIOD {
            // Overdue (the machine slept): refresh soon, with jitter.
            d.timer = Some(Timer {
                due: now + jitter,
                start: now,
                delay: jitter,
            });
            return;
        }
        self.refresh_topic(now, topic);
    }
}
