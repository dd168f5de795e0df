//! Queries (dht-rpc lib/query.js): the iterative walk towards a target and the commit phase.
//!
//! Reproduced from JS because results and traffic must match it: candidates are visited LIFO;
//! a node is queued only if it is closer than the k-th best reply so far, and each closer-nodes
//! list is walked in order until the first node that is not closer; requests that timed out
//! once are *slow* and stop counting against the concurrency; a query started from given nodes
//! runs at concurrency 3 until `concurrency` answers came back; it ends when nothing is pending
//! and nothing (or only slow requests, with k replies held) is inflight, re-seeding from the
//! routing table first if it started from cache and fewer than k/4 nodes answered. A request
//! that times out marks its address DOWN and sends DOWN_HINTs to every node that referred it.

use core::cmp::Ordering;
use core::net::SocketAddrV4;
use std::collections::{BTreeSet, HashMap};

use super::io::Owner;
use super::messages::{encode_addr, node_id, NodeId};
use super::node::{Node, REFRESH_TICKS};
use super::table::K;
use super::{
    Commit, CommitAction, Event, Peer, QueryError, QueryId, QueryOptions, QueryResult,
    RequestError, RequestId, Response, DOWN_HINT, FIND_NODE,
};

/// Refs kept per address (nodes that told us about it, for DOWN_HINTs).
const MAX_REFS: usize = 20;

#[derive(Debug, Clone)]
pub(crate) enum Seen {
    /// Queued or inflight; these nodes referred us to it.
    Refs(Vec<Peer>),
    /// Answered.
    Done,
    /// Timed out.
    Down,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub id: NodeId,
    pub addr: SocketAddrV4,
}

/// Who started a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryOwner {
    /// The user: events go out.
    User,
    /// A background refresh (FIND_NODE).
    Background,
    /// The bootstrap's background FIND_NODE on our own id.
    Bootstrap,
}

#[derive(Debug)]
pub(crate) struct Query {
    pub owner: QueryOwner,
    pub target: NodeId,
    pub internal: bool,
    pub command: u64,
    pub value: Option<Vec<u8>>,
    pub concurrency: usize,
    pub inflight: usize,
    pub successes: usize,
    pub errors: usize,
    pub slow: usize,
    pub slowdown: bool,
    pub seen: HashMap<SocketAddrV4, Seen>,
    pub pending: Vec<Candidate>,
    pub from_table: bool,
    pub commit: Commit,
    pub committing: bool,
    pub only_closest_nodes: bool,
    pub retries: u32,
    pub force: bool,
    pub closest: Vec<Response>,
    /// Visit and DOWN_HINT requests (JS session): cancelled when the query ends.
    pub session: BTreeSet<u16>,
    /// Commits not yet settled.
    pub commit_pending: usize,
    /// External commit actions not yet given.
    pub commit_actions: usize,
    pub commit_success: usize,
    pub commit_error: Option<RequestError>,
    /// Background concurrency (refresh queries switch between it and the full one).
    pub background: Option<usize>,
}

impl Node {
    /// Start a user-command query towards `target` (JS `dht.query({ target, command, value })`).
    pub fn query(
        &mut self,
        now: core::time::Duration,
        target: NodeId,
        command: u64,
        value: Option<Vec<u8>>,
        opts: QueryOptions,
    ) -> Result<QueryId, QueryError> {
        self.now = now;
        self.refresh_ticks = REFRESH_TICKS;
        self.start_query(target, false, command, value, opts, QueryOwner::User, None)
    }

    /// Start a FIND_NODE query (JS `dht.findNode(target)`).
    pub fn find_node(
        &mut self,
        now: core::time::Duration,
        target: NodeId,
        opts: QueryOptions,
    ) -> Result<QueryId, QueryError> {
        self.now = now;
        self.refresh_ticks = REFRESH_TICKS;
        self.start_query(target, true, FIND_NODE, None, opts, QueryOwner::User, None)
    }

    /// Stop a query: its requests are cancelled and it ends with [`QueryError::Destroyed`].
    pub fn destroy_query(&mut self, id: QueryId) {
        if self.queries.contains_key(&id) {
            self.finish_query(id, Err(QueryError::Destroyed));
        }
    }

    /// Give one commit decision for an [`super::Commit::External`] query after its
    /// [`Event::QueryCommit`]; returns the request's id for [`CommitAction::Request`]. Calls
    /// beyond one per closest reply, or for queries not committing, are ignored (`Ok(None)`).
    pub fn commit(
        &mut self,
        now: core::time::Duration,
        id: QueryId,
        action: CommitAction,
    ) -> Result<Option<RequestId>, RequestError> {
        self.now = now;
        let Some(q) = self.queries.get_mut(&id) else {
            return Ok(None);
        };
        if !q.committing || q.commit != Commit::External || q.commit_actions == 0 {
            return Ok(None);
        }
        q.commit_actions -= 1;
        match action {
            CommitAction::Done(ok) => {
                let r = if ok {
                    Ok(())
                } else {
                    Err(RequestError::Destroyed)
                };
                self.commit_settled(id, r);
                Ok(None)
            }
            CommitAction::Request(spec) => match self.user_request(spec, Some(id)) {
                Ok(rid) => Ok(Some(rid)),
                Err(e) => {
                    self.commit_settled(id, Err(e.clone()));
                    Err(e)
                }
            },
        }
    }

    /// The closest replies a query holds so far (JS `query.closestReplies`).
    pub fn query_closest(&self, id: QueryId) -> Option<&[Response]> {
        self.queries.get(&id).map(|q| q.closest.as_slice())
    }

    /// Change a running query's concurrency.
    pub fn set_query_concurrency(&mut self, id: QueryId, concurrency: usize) {
        if let Some(q) = self.queries.get_mut(&id) {
            q.concurrency = concurrency.max(1);
        }
        self.read_more(id);
    }

    /// A background FIND_NODE (JS `_backgroundQuery`).
    pub(crate) fn background_query(
        &mut self,
        target: NodeId,
        owner: QueryOwner,
    ) -> Option<QueryId> {
        self.refresh_ticks = REFRESH_TICKS;
        let c = self.config.concurrency;
        let bg = c.min((c / 8).max(2));
        let opts = QueryOptions {
            concurrency: Some(bg),
            ..QueryOptions::default()
        };
        self.start_query(target, true, FIND_NODE, None, opts, owner, Some(bg))
            .ok()
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_query(
        &mut self,
        target: NodeId,
        internal: bool,
        command: u64,
        value: Option<Vec<u8>>,
        opts: QueryOptions,
        owner: QueryOwner,
        background: Option<usize>,
    ) -> Result<QueryId, QueryError> {
        if self.destroyed || self.queries.len() >= self.config.limits.max_queries {
            return Err(QueryError::Overloaded);
        }
        self.next_query += 1;
        let id = QueryId(self.next_query);
        self.stats.total_queries += 1;
        let retries = opts.retries.unwrap_or(if internal && command == DOWN_HINT {
            3
        } else {
            5
        });
        let q = Query {
            owner,
            target,
            internal,
            command,
            value,
            concurrency: opts.concurrency.unwrap_or(self.config.concurrency).max(1),
            inflight: 0,
            successes: 0,
            errors: 0,
            slow: 0,
            slowdown: false,
            seen: HashMap::new(),
            pending: Vec::new(),
            from_table: false,
            commit: opts.commit,
            committing: false,
            only_closest_nodes: false,
            retries,
            force: opts.force,
            closest: Vec::new(),
            session: BTreeSet::new(),
            commit_pending: 0,
            commit_actions: 0,
            commit_success: 0,
            commit_error: None,
            background,
        };
        self.queries.insert(id, q);
        for addr in opts.nodes.iter().rev() {
            self.add_pending(id, node_id(addr), *addr, None);
        }
        if let Some(q) = self.queries.get_mut(&id) {
            q.only_closest_nodes = opts.only_closest_nodes;
        }
        // _open: the routing table, then the bootstrap nodes if that was not enough.
        self.add_from_table(id);
        if self.queries.get(&id).is_some_and(|q| q.pending.len() < K) {
            for b in self.config.bootstrap.clone() {
                self.add_pending(id, node_id(&b), b, None);
            }
        }
        self.read_more(id);
        Ok(id)
    }

    fn add_from_table(&mut self, id: QueryId) {
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        if q.pending.len() >= K {
            return;
        }
        q.from_table = true;
        let want = K - q.pending.len();
        let nodes: Vec<(NodeId, SocketAddrV4)> = self
            .table
            .closest(&q.target, want)
            .iter()
            .map(|n| (n.id, n.addr))
            .collect();
        for (nid, addr) in nodes {
            self.add_pending(id, nid, addr, None);
        }
    }

    fn compare(target: &NodeId, a: &NodeId, b: &NodeId) -> Ordering {
        for i in 0..32 {
            if a[i] == b[i] {
                continue;
            }
            return (target[i] ^ a[i]).cmp(&(target[i] ^ b[i]));
        }
        Ordering::Equal
    }

    fn is_closer(q: &Query, id: &NodeId) -> bool {
        q.closest.len() < K
            || Self::compare(
                &q.target,
                id,
                q.closest
                    .last()
                    .and_then(|r| r.from.id.as_ref())
                    .expect("closest replies have ids"),
            ) == Ordering::Less
    }

    /// JS `_addPending`: returns whether the walk through a closer-nodes list goes on.
    fn add_pending(
        &mut self,
        qid: QueryId,
        id: NodeId,
        addr: SocketAddrV4,
        r: Option<Peer>,
    ) -> bool {
        let max_nodes = self.config.limits.max_query_nodes;
        let Some(q) = self.queries.get_mut(&qid) else {
            return false;
        };
        if q.only_closest_nodes {
            return false;
        }
        let closer = Self::is_closer(q, &id);
        match q.seen.get_mut(&addr) {
            Some(Seen::Done) => return closer,
            Some(Seen::Down) => {
                if let Some(r) = r {
                    self.down_hint(qid, r, addr);
                }
                return closer;
            }
            Some(Seen::Refs(refs)) => {
                if let Some(r) = r {
                    if refs.len() < MAX_REFS {
                        refs.push(r);
                    }
                }
                return closer;
            }
            None => {}
        }
        if !closer || q.seen.len() >= max_nodes {
            return false;
        }
        q.seen.insert(addr, Seen::Refs(r.into_iter().collect()));
        q.pending.push(Candidate { id, addr });
        true
    }

    /// JS `_readMore`.
    pub(crate) fn read_more(&mut self, qid: QueryId) {
        loop {
            let Some(q) = self.queries.get_mut(&qid) else {
                return;
            };
            if q.committing {
                return;
            }
            let concurrency = if q.slowdown { 3 } else { q.concurrency } + q.slow;
            let mut visits = Vec::new();
            while q.inflight + visits.len() < concurrency {
                let Some(next) = q.pending.pop() else { break };
                if !Self::is_closer(q, &next.id) {
                    continue;
                }
                visits.push(next);
            }
            for next in visits {
                if !self.visit(qid, next) {
                    return;
                }
            }
            let Some(q) = self.queries.get_mut(&qid) else {
                return;
            };
            if !q.from_table && q.successes == 0 && q.errors == 0 {
                q.slowdown = true;
            }
            if !q.pending.is_empty() {
                return;
            }
            if q.inflight == 0 || (q.slow == q.inflight && q.closest.len() >= K) {
                if !q.from_table && q.successes < K / 4 {
                    self.add_from_table(qid);
                    continue;
                }
                self.flush(qid);
            }
            return;
        }
    }

    /// Visit one node; false if the query ended because no request could be made.
    fn visit(&mut self, qid: QueryId, to: Candidate) -> bool {
        let Some(q) = self.queries.get_mut(&qid) else {
            return false;
        };
        q.inflight += 1;
        let (token, internal, command, target, value, retries, force) = (
            None,
            q.internal,
            q.command,
            Some(q.target),
            q.value.clone(),
            if q.force { 0 } else { q.retries },
            q.force,
        );
        match self.create_request(
            to.addr,
            Some(to.id),
            token,
            internal,
            command,
            target,
            value.as_deref(),
            None,
            Owner::Visit(qid),
            retries,
            None,
            0,
        ) {
            Ok(tid) => {
                if let Some(q) = self.queries.get_mut(&qid) {
                    q.session.insert(tid);
                }
                self.send(tid, force);
                true
            }
            Err(_) => {
                self.finish_query(qid, Err(QueryError::Overloaded));
                false
            }
        }
    }

    fn dec(q: &mut Query, was_slow: bool) {
        if was_slow {
            q.slow = q.slow.saturating_sub(1);
        }
        q.inflight = q.inflight.saturating_sub(1);
    }

    pub(crate) fn query_on_visit(
        &mut self,
        qid: QueryId,
        was_slow: bool,
        to: SocketAddrV4,
        m: Response,
    ) {
        let own_id = *self.table.id();
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        q.session.remove(&m.tid);
        Self::dec(q, was_slow);
        // Keyed by the address we sent to (JS `req.to`), wherever the answer came from.
        q.seen.insert(to, Seen::Done);
        if q.committing {
            return;
        }
        if m.error == 0 {
            q.successes += 1;
        } else {
            q.errors += 1;
        }
        if m.error == 0 && m.from.id.is_some() && Self::is_closer(q, m.from.id.as_ref().unwrap()) {
            push_closest(q, m.clone());
        }
        for node in &m.closer_nodes {
            let id = node_id(node);
            if self.filtered(node) || id == own_id {
                continue;
            }
            if !self.add_pending(qid, id, *node, Some(m.from)) {
                break;
            }
        }
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        if !q.from_table && q.successes + q.errors >= q.concurrency {
            q.slowdown = false;
        }
        if m.error != 0 {
            self.read_more(qid);
            return;
        }
        let owner = q.owner;
        if let Some(bg) = q.background {
            q.concurrency = if self.io.inflight.len() < 3 {
                self.config.concurrency
            } else {
                bg
            };
        }
        match owner {
            QueryOwner::User => self
                .events
                .push_back(Event::QueryReply { id: qid, reply: m }),
            QueryOwner::Bootstrap => self.on_bootstrap_data(&m),
            QueryOwner::Background => {}
        }
        self.read_more(qid);
    }

    pub(crate) fn query_on_error(
        &mut self,
        qid: QueryId,
        to: SocketAddrV4,
        was_slow: bool,
        err: &RequestError,
    ) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        if *err == RequestError::Timeout {
            let refs = match q.seen.insert(to, Seen::Down) {
                Some(Seen::Refs(r)) => r,
                _ => Vec::new(),
            };
            for r in refs {
                self.down_hint(qid, r, to);
            }
        }
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        Self::dec(q, was_slow);
        q.errors += 1;
        self.read_more(qid);
    }

    pub(crate) fn query_on_cycle(&mut self, qid: QueryId) {
        if let Some(q) = self.queries.get_mut(&qid) {
            q.slow += 1;
        }
        self.read_more(qid);
    }

    fn down_hint(&mut self, qid: QueryId, node: Peer, down: SocketAddrV4) {
        if let Some(limit) = self.config.down_hints_rate_limit {
            if self.down_hints_sent >= limit {
                return;
            }
        }
        self.down_hints_sent += 1;
        if !self.config.send_down_hints {
            return;
        }
        let value = encode_addr(&down);
        if let Ok(tid) = self.create_request(
            node.addr,
            node.id,
            None,
            true,
            DOWN_HINT,
            None,
            Some(&value),
            None,
            Owner::DownHint(qid),
            super::io::DEFAULT_RETRIES,
            None,
            0,
        ) {
            if let Some(q) = self.queries.get_mut(&qid) {
                q.session.insert(tid);
            }
            self.send(tid, false);
        }
    }

    /// JS `_flush`: the walk is over; commit or end.
    fn flush(&mut self, qid: QueryId) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        if q.committing {
            return;
        }
        q.committing = true;
        match q.commit {
            Commit::None => self.finish_query(qid, Ok(())),
            Commit::Auto => {
                let replies = q.closest.clone();
                let (target, command, value) = (q.target, q.command, q.value.clone());
                if replies.is_empty() {
                    self.finish_query(qid, Err(QueryError::TooFewNodes));
                    return;
                }
                q.commit_pending = replies.len();
                for r in replies {
                    let Some(token) = r.token else {
                        self.commit_settled(qid, Err(RequestError::Destroyed));
                        continue;
                    };
                    let made = self.create_request(
                        r.from.addr,
                        None,
                        Some(token),
                        false,
                        command,
                        Some(target),
                        value.as_deref(),
                        None,
                        Owner::AutoCommit(qid),
                        super::io::DEFAULT_RETRIES,
                        None,
                        0,
                    );
                    match made {
                        Ok(tid) => self.send(tid, false),
                        Err(e) => self.commit_settled(qid, Err(e)),
                    }
                }
            }
            Commit::External => {
                let replies = q.closest.clone();
                if replies.is_empty() {
                    self.finish_query(qid, Err(QueryError::TooFewNodes));
                    return;
                }
                q.commit_pending = replies.len();
                q.commit_actions = replies.len();
                self.events
                    .push_back(Event::QueryCommit { id: qid, replies });
            }
        }
    }

    /// One commit finished.
    pub(crate) fn commit_settled(&mut self, qid: QueryId, result: Result<(), RequestError>) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        if !q.committing || q.commit_pending == 0 {
            return;
        }
        q.commit_pending -= 1;
        match result {
            Ok(()) => q.commit_success += 1,
            Err(e) => q.commit_error = Some(e),
        }
        if q.commit_pending > 0 {
            return;
        }
        if q.commit_success > 0 {
            self.finish_query(qid, Ok(()));
        } else {
            let err = match (q.commit, q.commit_error.clone()) {
                (Commit::External, Some(RequestError::Destroyed)) => QueryError::CommitRejected,
                (_, Some(e)) => QueryError::CommitFailed(e),
                (_, None) => QueryError::CommitRejected,
            };
            self.finish_query(qid, Err(err));
        }
    }

    /// End a query: cancel what it still has inflight (JS session destroy), report.
    pub(crate) fn finish_query(&mut self, qid: QueryId, result: Result<(), QueryError>) {
        let Some(q) = self.queries.remove(&qid) else {
            return;
        };
        for tid in &q.session {
            if self.io.inflight.contains_key(tid) {
                // JS Session.destroy frees a congestion slot and req.destroy frees another.
                self.io.congestion.recv();
                self.destroy_request(*tid, RequestError::Destroyed);
            }
        }
        let result = result.map(|()| QueryResult {
            closest_replies: q.closest.clone(),
            successes: q.successes,
            errors: q.errors,
        });
        match q.owner {
            QueryOwner::User => self.events.push_back(Event::QueryDone { id: qid, result }),
            QueryOwner::Bootstrap => self.on_bootstrap_query_done(),
            QueryOwner::Background => {}
        }
    }
}

/// JS `_pushClosest`: insert sorted by XOR distance, dropping a duplicate, keeping k.
fn push_closest(q: &mut Query, m: Response) {
    let id = m.from.id.expect("closest replies have ids");
    q.closest.push(m);
    let mut i = q.closest.len() - 1;
    while i > 0 {
        let prev_id = q.closest[i - 1].from.id.expect("closest replies have ids");
        match Node::compare(&q.target, &prev_id, &id) {
            Ordering::Less => break,
            Ordering::Equal => {
                q.closest.remove(i);
                break;
            }
            Ordering::Greater => {
                q.closest.swap(i - 1, i);
                i -= 1;
            }
        }
    }
    if q.closest.len() > K {
        q.closest.pop();
    }
}
