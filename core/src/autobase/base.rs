//! The autobase engine (the DAG-loading and applying parts of `NM/autobase/index.js`,
//! `lib/writer.js` and `lib/apply-state.js`), sans-IO: oplog blocks come in through
//! [`Autobase::handle_block`], [`Autobase::update`] loads the nodes whose dependencies are there,
//! linearizes them and applies them to the views with the caller's [`Apply`].
//!
//! The order is the one JS autobase computes for the same oplogs: nodes the indexers confirmed
//! come first, in consensus order, then the tip; when a new node reorders the tip, the applied
//! nodes past the common prefix are undone (views truncated, the system restored) and applied
//! again. When an indexed node changes the indexers, the engine restarts from the indexed state
//! with the new indexers, as JS reboots.
//!
//! (About 1,300 lines: the engine is one state machine, the `Autobase` object of JS's index.js
//! and apply-state.js, with the interface its apply function sees (`Views`, `Host`, `Apply`) at
//! the top; its parts that stand alone are siblings: `graph`, `linearizer`, `consensus`,
//! `topolist`, `system`, `clock`, `fast_forward`, `cores`, `encryption`, `acks`; the ack
//! timer's methods are in `base_acks.rs`. The apply interface is the next cut if it grows.)

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::acks::AckState;
use super::graph::{DagNode, Graph, NodeId, WriterId};
use super::linearizer::Linearizer;
use super::messages::{Checkout, Info, Member, OplogMessage};
use super::system::{SystemFlush, SystemState};
use super::topolist::Update;
use super::views::{ViewId, Views};
use crate::encoding::Decode;

/// JS `REMOTE_ADD_BATCH`: nodes added to the DAG between two linearizer updates.
const REMOTE_ADD_BATCH: u64 = 64;
/// JS `MAX_PRELOAD`: nodes a writer loads ahead.
const MAX_PRELOAD: u64 = 4;

/// Errors of the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutobaseError {
    /// An oplog block did not decode; the writer is frozen at that block.
    #[error("writer {writer}: block {seq} is not an oplog message: {reason}")]
    BadBlock {
        /// The writer key (hex).
        writer: String,
        /// The block.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// The host refused a call from apply.
    #[error("{0}")]
    Host(&'static str),
    /// A block of a writer the engine holds no member record of, while it holds
    /// [`MAX_NONMEMBER_BLOCKS`] such blocks already: not stored (a peer cannot make the engine
    /// hold unbounded blocks of writers it never applies). Feed it again once the writer is a
    /// member.
    #[error("writer {writer}: block {seq} not stored: not a member, {MAX_NONMEMBER_BLOCKS} blocks of non-members held")]
    NotAMember {
        /// The writer key (hex).
        writer: String,
        /// The block.
        seq: u64,
    },
}

/// One node handed to [`Apply::apply`].
#[derive(Debug, Clone, Copy)]
pub struct ApplyNode<'a> {
    /// Indexed (confirmed by the indexers) or on the tip (may be undone).
    pub indexed: bool,
    /// An optimistic node of a writer that is not a member (JS `node.optimistic`): apply keeps it
    /// only by acking its writer ([`Host::ack_writer`], or adding it); otherwise everything this
    /// apply did is rolled back. See [`Autobase::set_optimistic`].
    pub optimistic: bool,
    /// The writer.
    pub from: &'a [u8; 32],
    /// The node's length in its writer's oplog.
    pub length: u64,
    /// Its value.
    pub value: &'a [u8],
    /// The heads it linked.
    pub heads: &'a [Checkout],
}

/// The system calls apply may make (JS `host`).
pub struct Host<'a> {
    system: &'a mut SystemState,
    added: Vec<[u8; 32]>,
    removed: Vec<[u8; 32]>,
}

impl Host<'_> {
    /// JS `host.addWriter(key, { indexer })`.
    pub fn add_writer(&mut self, key: &[u8; 32], indexer: bool) {
        self.system.add(key, indexer);
        self.added.push(*key);
    }
    /// JS `host.removeWriter(key)`: refused for the last indexer.
    pub fn remove_writer(&mut self, key: &[u8; 32]) -> Result<(), AutobaseError> {
        if !self.removeable(key) {
            return Err(AutobaseError::Host(
                "Not allowed to remove the last indexer",
            ));
        }
        self.system.remove(key);
        self.removed.push(*key);
        Ok(())
    }
    /// JS `host.ackWriter(key)`: record the writer's length as the system saw it (its member
    /// record, created for a writer that is not a member: not an indexer and still removed, so
    /// it does not become a writer). This is how apply keeps an optimistic node.
    pub fn ack_writer(&mut self, key: &[u8; 32]) {
        self.system.ack(key);
    }
    /// JS `host.removeable(key)`: not the last indexer.
    pub fn removeable(&self, key: &[u8; 32]) -> bool {
        let s = &self.system;
        if s.indexers.len() != 1 {
            return true;
        }
        s.indexers[0].key != *key
    }
    /// The system state as apply sees it.
    pub fn system(&self) -> &SystemState {
        self.system
    }
}

/// The caller's apply function (JS `apply(nodes, view, host)`).
pub trait Apply {
    /// Apply one batch of nodes.
    fn apply(&mut self, nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>);
}

impl<F: FnMut(&[ApplyNode<'_>], &mut Views, &mut Host<'_>)> Apply for F {
    fn apply(&mut self, nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
        self(nodes, views, host)
    }
}

/// An apply function that may wait (JS's `async apply(nodes, view, host)`), for
/// [`Autobase::update_async`]: the engine waits for each batch's future before it goes on, so
/// a caller whose apply runs elsewhere (a JavaScript callback in the browser) applies batch by
/// batch, in order. The future writes to `views` and calls `host` as [`Apply::apply`] does.
pub trait AsyncApply {
    /// Apply one batch of nodes; the engine waits for the future.
    fn apply<'a, 'b: 'a>(
        &'a mut self,
        nodes: &'a [ApplyNode<'b>],
        views: &'a mut Views,
        host: &'a mut Host<'b>,
    ) -> Pin<Box<dyn Future<Output = ()> + 'a>>;
}

/// No [`AsyncApply`]: the engine's own [`Apply`] runs (the type of `update`'s `None`).
enum SyncOnly {}

impl AsyncApply for SyncOnly {
    fn apply<'a, 'b: 'a>(
        &'a mut self,
        _: &'a [ApplyNode<'b>],
        _: &'a mut Views,
        _: &'a mut Host<'b>,
    ) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
        match *self {}
    }
}

/// Drive a future that never waits (the engine's update with its synchronous [`Apply`]: every
/// `.await` in it is on a future that is ready at once) to its end.
fn run_ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        // With no `AsyncApply` nothing in the update waits (no input can change that).
        Poll::Pending => unreachable!("the synchronous update waited"),
    }
}

#[derive(Debug, Clone)]
struct Applied {
    batch: usize,
    indexers: bool,
    system: SystemState,
    views: Vec<usize>,
}

/// The most writers [`Autobase::hint_writer_length`] holds as hints (a peer cannot make the
/// engine want unbounded writers).
pub const MAX_HINTED: usize = 1024;

/// The most oplog blocks the engine holds of writers with no member record (never added nor
/// acked): past it [`Autobase::handle_block`] refuses them ([`AutobaseError::NotAMember`]) and
/// [`Autobase::hint_writer_length`] refuses hints of non-members.
pub const MAX_NONMEMBER_BLOCKS: usize = 4096;

/// Blocks a peer's hint of a writer makes the engine want past what it holds while it knows no
/// member yet (its system not read: it cannot tell a member from a stranger, as a new JS member
/// wakes any hinted writer); once the system names members such hints of non-members are
/// dropped (see [`Autobase::hint_writer_length`]).
pub const MAX_UNKNOWN_SYSTEM_BLOCKS: u64 = 64;

/// A writer [`Autobase::wanted_ranges`] names: fetch its blocks `from..until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WantedWriter {
    /// The writer key.
    pub key: [u8; 32],
    /// The next block the engine needs ([`Autobase::oplog_len`]).
    pub from: u64,
    /// The end (exclusive) for a writer the engine may never apply (a non-member hinted by a
    /// peer, or one a pending node depends on); `None`: every block, following the core.
    pub until: Option<u64>,
}

/// The engine.
pub struct Autobase<A: Apply> {
    bootstrap: [u8; 32],
    apply: A,
    oplogs: HashMap<[u8; 32], Vec<OplogMessage>>,
    /// Per writer, the oplog blocks before the ones held (set by a fast-forward: the length the
    /// system had applied).
    oplog_start: HashMap<[u8; 32], u64>,
    frozen: HashMap<[u8; 32], u64>,
    graph: Graph,
    lin: Linearizer,
    active: Vec<WriterId>,
    /// The writers in `active`, for lookups (`active` keeps their order): with many writers
    /// (an optimistic base wakes any writer it is told of) a scan of `active` per writer was
    /// quadratic.
    active_set: HashSet<WriterId>,
    pending: HashMap<WriterId, NodeId>,
    system: SystemState,
    views: Views,
    updates: Vec<Applied>,
    indexed_system: SystemState,
    indexed_views: Vec<usize>,
    indexed_nodes: u64,
    /// The system batches applied (recorded only after [`Autobase::record_system`]), oldest
    /// first, not yet taken by [`Autobase::take_indexed_flushes`].
    flushes: Option<Vec<SystemFlush>>,
    /// JS `optimistic: true`: optimistic nodes of non-members are applied (and kept when acked).
    optimistic: bool,
    /// Writers named by [`Autobase::hint_writer`] and [`Autobase::hint_writer_length`] (JS
    /// wakeup hints), oldest first.
    hinted: Vec<[u8; 32]>,
    /// The same, each with the end it is wanted to (`None`: the application's hint, every
    /// block) and whether an update ran since (a peer's hint expires at the next one).
    hints: HashMap<[u8; 32], (Option<u64>, bool)>,
    /// Oplog blocks held of writers with no member record (recounted by each update).
    nonmember_blocks: usize,
    /// The ack timer ([`Autobase::set_ack_timer`]).
    acks: AckState,
    /// Linearizer restarts because indexers changed.
    pub reboots: u64,
}

impl<A: Apply> Autobase<A> {
    /// An autobase whose bootstrap (first indexer) is `bootstrap`, applying with `apply`.
    pub fn new(bootstrap: [u8; 32], apply: A) -> Self {
        let mut graph = Graph::new();
        let system = SystemState::new();
        let lin = Linearizer::new(&mut graph, Vec::new(), &[]);
        let mut base = Autobase {
            bootstrap,
            apply,
            oplogs: HashMap::new(),
            oplog_start: HashMap::new(),
            frozen: HashMap::new(),
            graph,
            lin,
            active: Vec::new(),
            active_set: HashSet::new(),
            pending: HashMap::new(),
            indexed_system: system.clone(),
            system,
            views: Views::default(),
            updates: Vec::new(),
            indexed_views: Vec::new(),
            indexed_nodes: 0,
            flushes: None,
            optimistic: false,
            hinted: Vec::new(),
            hints: HashMap::new(),
            nonmember_blocks: 0,
            acks: AckState::default(),
            reboots: 0,
        };
        base.restart();
        base
    }

    /// The bootstrap key.
    pub fn bootstrap(&self) -> &[u8; 32] {
        &self.bootstrap
    }

    /// Make the base optimistic (JS `new Autobase(store, key, { optimistic: true })`): a writer
    /// that is not a member (never added, or removed) may append an optimistic node
    /// ([`Autobase::append_optimistic`]); the engine loads such writers' oplogs (the ones it holds
    /// blocks of, see [`Autobase::hint_writer`]) and applies each optimistic node alone, flagged
    /// [`ApplyNode::optimistic`]. Apply keeps it by acking its writer ([`Host::ack_writer`], or
    /// [`Host::add_writer`]); if it does not, the system and the views are rolled back to before
    /// that node, which leaves no trace (JS `_optimisticApply`). Other nodes of non-members are
    /// skipped as always. Every member must agree on this setting, as in JS (it changes the view).
    pub fn set_optimistic(&mut self, on: bool) {
        self.optimistic = on;
    }

    /// Whether the base is optimistic ([`Autobase::set_optimistic`]).
    pub fn is_optimistic(&self) -> bool {
        self.optimistic
    }

    /// A writer the application says is active (JS `hintWakeup` with length -1):
    /// [`Autobase::wanted`] names it from now on, every block of it, in an optimistic base (a
    /// plain base never applies a non-member's nodes; a member is wanted anyway), and the engine
    /// then loads its nodes. This is how a non-member's optimistic oplog is found: its key comes
    /// from outside the system. Not bounded: the application's call (a peer's hint is
    /// [`Autobase::hint_writer_length`]).
    pub fn hint_writer(&mut self, key: &[u8; 32]) {
        if self.hints.insert(*key, (None, false)).is_none() {
            self.hinted.push(*key);
        }
    }

    /// A hint from a peer (JS `hintWakeup({ key, length })` from a wakeup announce). Returns
    /// whether the writer is wanted now. Dropped when stale (the engine holds `length` blocks
    /// already) and, in a base that is not optimistic, when `key` is not a member (its nodes
    /// cannot be applied; JS skips them as stale or GCs the writer), unless the system has no
    /// member yet (a new member that has not read it: then the writer is wanted up to
    /// [`MAX_UNKNOWN_SYSTEM_BLOCKS`] past what is held). A member is wanted anyway (true,
    /// nothing held). In an optimistic base a non-member is held as a hint, bounded: it is
    /// wanted up to `length` and one block past what the engine holds (its next optimistic
    /// node; apply acks it before the rest is fetched), at most [`MAX_HINTED`] hints and
    /// [`MAX_NONMEMBER_BLOCKS`] blocks of non-members are held, and a hint expires once its
    /// blocks are held or at the second [`Autobase::update`] after it (JS clears its hints after
    /// each drain; here the driver reads [`Autobase::wanted_ranges`] after the first and starts
    /// the bounded download).
    pub fn hint_writer_length(&mut self, key: &[u8; 32], length: u64) -> bool {
        let have = self.oplog_len(key);
        if length <= have {
            return false;
        }
        let member = self.system.get(key);
        if member.is_some_and(|m| !m.is_removed) || self.is_open_ended(key) {
            return true;
        }
        // no member yet (a new member that has not read the system): nobody can tell
        let unknown = self.system.bootstrapping();
        if !(self.optimistic || unknown) || self.nonmember_blocks >= MAX_NONMEMBER_BLOCKS {
            return false;
        }
        // an acked (or removed) writer is wanted to its hinted length; a stranger one block on,
        // or while the system is unknown a few
        let end = if member.is_some() {
            length
        } else if unknown {
            length.min(have.saturating_add(MAX_UNKNOWN_SYSTEM_BLOCKS))
        } else {
            length.min(have.saturating_add(1))
        };
        match self.hints.get_mut(key) {
            Some((None, _)) => return true,
            Some((Some(e), drained)) => {
                *e = (*e).max(end);
                *drained = false;
                return true;
            }
            None => {}
        }
        if self.hinted.len() >= MAX_HINTED {
            self.expire_hints(false);
            if self.hinted.len() >= MAX_HINTED {
                return false;
            }
        }
        self.hints.insert(*key, (Some(end), false));
        self.hinted.push(*key);
        true
    }

    /// Whether every block of `key` is wanted without a hint: the bootstrap while bootstrapping,
    /// an active indexer, or a linearized writer with a member record.
    fn is_open_ended(&self, key: &[u8; 32]) -> bool {
        (self.system.bootstrapping() && *key == self.bootstrap)
            || self.system.get(key).is_some_and(|m| !m.is_removed)
            || self.graph.find_writer(key).is_some_and(|w| {
                self.active_set.contains(&w)
                    && (self.graph.writers[w].is_active_indexer || self.system.get(key).is_some())
            })
    }

    /// Drop the hints that are handled (JS clears its hints after each drain): a peer's hint
    /// once its blocks are held, its writer is a member (wanted anyway) or an update drained it
    /// already (`drained`: the driver was told, see [`Autobase::hint_writer_length`]); every
    /// peer's hint in a base that is not optimistic.
    fn expire_hints(&mut self, drained: bool) {
        let keep: Vec<[u8; 32]> = self
            .hinted
            .iter()
            .filter(|k| match self.hints.get(*k) {
                Some((None, _)) => true,
                Some((Some(end), was_drained)) => {
                    !(drained && *was_drained)
                        && (self.optimistic || self.system.bootstrapping())
                        && self.oplog_len(k) < *end
                        && self.system.get(k).is_none_or(|m| m.is_removed)
                }
                None => false,
            })
            .copied()
            .collect();
        let keep_set: HashSet<[u8; 32]> = keep.iter().copied().collect();
        self.hints.retain(|k, _| keep_set.contains(k));
        if drained {
            for v in self.hints.values_mut() {
                v.1 = true;
            }
        }
        self.hinted = keep;
    }

    /// Recount the blocks held of writers with no member record.
    fn count_nonmember_blocks(&mut self) {
        self.nonmember_blocks = self
            .oplogs
            .iter()
            .filter(|(k, _)| !self.is_member_record(k))
            .map(|(_, v)| v.len())
            .sum();
    }

    /// Whether `key` has a member record (added, acked or removed) or is the bootstrap.
    fn is_member_record(&self, key: &[u8; 32]) -> bool {
        *key == self.bootstrap || self.system.get(key).is_some()
    }

    /// Record every system batch from now on, for an indexer that writes the system core
    /// ([`super::cores`]); [`Autobase::take_indexed_flushes`] hands out the indexed ones.
    pub fn record_system(&mut self) {
        self.flushes.get_or_insert_with(Vec::new);
    }

    /// The recorded system batches that are indexed now, oldest first, each once (batches of the
    /// tip wait: a reorder may undo them).
    pub fn take_indexed_flushes(&mut self) -> Vec<SystemFlush> {
        let indexed = self.indexed_system.length;
        let Some(f) = self.flushes.as_mut() else {
            return Vec::new();
        };
        let n = f.iter().take_while(|b| b.length <= indexed).count();
        f.drain(..n).collect()
    }

    /// Drop recorded batches past what the system holds now (undone or restarted).
    fn trim_flushes(&mut self) {
        let len = self.system.length;
        if let Some(f) = self.flushes.as_mut() {
            while f.last().is_some_and(|b| b.length > len) {
                f.pop();
            }
        }
    }

    /// The views.
    pub fn views(&self) -> &Views {
        &self.views
    }

    /// Open (create) a view by name, as JS `open` does.
    pub fn open_view(&mut self, name: &str) -> ViewId {
        self.views.open(name)
    }

    /// Fast-forward (JS `_applyFastForward`): continue from the indexed state a system core
    /// holds at `system_length` blocks (its `info` record and member records, read and verified
    /// by the caller, see [`super::fast_forward`]) instead of linearizing the oplogs from the
    /// start. Each view in `views` (name, length the info records for it) then starts at that
    /// length, its blocks below it staying in the view's hypercore ([`Views::start`]); other
    /// views start empty. Every member's oplog is wanted from the length the system applied
    /// ([`Autobase::oplog_start`]): blocks held below it are dropped, blocks above it kept.
    /// The tip is linearized again from there by the next [`Autobase::update`].
    pub fn fast_forward(
        &mut self,
        system_length: u64,
        info: &Info,
        members: &[([u8; 32], Member)],
        views: &[(&str, u64)],
    ) {
        self.indexed_system = SystemState::from_indexed(system_length, info, members);
        for (key, m) in members {
            let start = self.oplog_start(key);
            if m.length <= start {
                continue;
            }
            if let Some(log) = self.oplogs.get_mut(key) {
                let drop = usize::try_from(m.length - start).unwrap_or(usize::MAX);
                log.drain(..drop.min(log.len()));
            }
            self.oplog_start.insert(*key, m.length);
        }
        for i in 0..self.views.logs.len() {
            self.views.reset(i, 0);
        }
        for (name, length) in views {
            let id = self.views.open(name);
            self.views
                .reset(id, usize::try_from(*length).unwrap_or(usize::MAX));
        }
        self.indexed_views = self.views.lengths();
        self.restart();
    }

    /// The least signed system length worth fast-forwarding to from here: [`MINIMUM`] blocks past
    /// the system length this member indexed (JS `_queueFastForward` and `FastForward`'s
    /// `_minLength`). A driver reads a fast-forward point only when the signed system core is at
    /// least this long.
    ///
    /// [`MINIMUM`]: super::fast_forward::MINIMUM
    pub fn fast_forward_minimum(&self) -> u64 {
        self.indexed_system
            .length
            .saturating_add(super::fast_forward::MINIMUM)
    }

    /// Whether a running member that holds no system core its peers announce should look for a
    /// newer fast-forward point (JS looks when the system core it replicates is
    /// [`Autobase::fast_forward_minimum`] long; a driver that knows the system core's announced
    /// length compares that instead): the writers' oplogs are known (`known`: each writer's
    /// length its peers announced) to hold at least [`MINIMUM`] entries past what this engine
    /// holds of them, so the signed system may be [`MINIMUM`] blocks ahead. Only a hint for
    /// when to read; [`Autobase::fast_forward_worth`] decides.
    ///
    /// [`MINIMUM`]: super::fast_forward::MINIMUM
    pub fn fast_forward_may_be_due(&self, known: &[([u8; 32], u64)]) -> bool {
        known
            .iter()
            .map(|(k, len)| len.saturating_sub(self.oplog_len(k)))
            .fold(0u64, u64::saturating_add)
            >= super::fast_forward::MINIMUM
    }

    /// Whether to fast-forward to a verified point (arguments as [`Autobase::fast_forward`]), JS
    /// `_applyFastForward`'s check made when the point is applied (the member may have indexed
    /// more while it was read): its system is at least [`Autobase::fast_forward_minimum`] long,
    /// and it is behind this member in nothing: every member record indexed here is in it with at
    /// least the length indexed here, and every view named in `views` is at least as long as
    /// indexed here. So a fast-forward never goes back.
    pub fn fast_forward_worth(
        &self,
        system_length: u64,
        members: &[([u8; 32], Member)],
        views: &[(&str, u64)],
    ) -> bool {
        if system_length < self.fast_forward_minimum() {
            return false;
        }
        let members_ahead = self.indexed_system.member_records().all(|(k, m)| {
            members
                .iter()
                .any(|(pk, pm)| pk == k && pm.length >= m.length)
        });
        let views_ahead = views.iter().all(|(name, length)| {
            let Some(id) = self.views.find(name) else {
                return true;
            };
            let here = self.indexed_views.get(id).copied().unwrap_or(0) as u64;
            *length >= here
        });
        // a view that holds indexed blocks here and that the point does not name would be reset
        // to nothing by [`Autobase::fast_forward`]: not a point to take
        let views_named = self.views.logs.iter().enumerate().all(|(id, l)| {
            self.indexed_views.get(id).copied().unwrap_or(0) == 0
                || views.iter().any(|(name, _)| *name == l.name)
        });
        members_ahead && views_ahead && views_named
    }

    /// [`Autobase::fast_forward`] when [`Autobase::fast_forward_worth`] says so; whether it did.
    pub fn fast_forward_if_worth(
        &mut self,
        system_length: u64,
        info: &Info,
        members: &[([u8; 32], Member)],
        views: &[(&str, u64)],
    ) -> bool {
        if !self.fast_forward_worth(system_length, members, views) {
            return false;
        }
        self.fast_forward(system_length, info, members, views);
        true
    }

    /// The block at which `key`'s oplog froze: the first that did not decode as an oplog
    /// message ([`AutobaseError::BadBlock`]). [`Autobase::handle_block`] ignores every block of
    /// a frozen writer from then on (its length stays at that block), so a driver feeding a
    /// writer's blocks until its [`Autobase::oplog_len`] stops moving must stop at this.
    pub fn frozen_at(&self, key: &[u8; 32]) -> Option<u64> {
        self.frozen.get(key).copied()
    }

    /// Whether the bootstrap's oplog is unreadable from its first block on: the first block of it
    /// this engine was given (block 0, or the first past a fast-forward point) did not decode as
    /// an oplog message, so no entry of the bootstrap was ever read. The bootstrap writes every
    /// base's first entries, so when this member opened the oplogs with an encryption key that key
    /// is not the base's (the cipher has no MAC: a wrong key reads as bytes that do not decode),
    /// and when it gave none the base is encrypted (or not an autobase). A block that does not
    /// decode after readable ones only freezes the bootstrap, as any writer.
    pub fn bootstrap_unreadable(&self) -> bool {
        self.frozen
            .get(&self.bootstrap)
            .is_some_and(|&seq| seq == self.oplog_start(&self.bootstrap))
            && self.oplogs.get(&self.bootstrap).is_none_or(Vec::is_empty)
    }

    /// The views' lengths at the indexed point.
    pub fn indexed_view_lengths(&self) -> Vec<usize> {
        let mut v = self.indexed_views.clone();
        v.resize(self.views.logs.len(), 0);
        v
    }

    /// The system state (tip).
    pub fn system(&self) -> &SystemState {
        &self.system
    }

    /// The system state at the indexed point.
    pub fn indexed_system(&self) -> &SystemState {
        &self.indexed_system
    }

    /// Nodes indexed so far.
    pub fn indexed_nodes(&self) -> u64 {
        self.indexed_nodes
    }

    /// Writers the engine wants blocks of: `(key, next block index)` ([`Autobase::wanted_ranges`]
    /// without the ends).
    pub fn wanted(&self) -> Vec<([u8; 32], u64)> {
        self.wanted_ranges()
            .into_iter()
            .map(|w| (w.key, w.from))
            .collect()
    }

    /// Writers the engine wants blocks of, each with the range: every block of each member of
    /// the system, of each writer it linearizes with a member record (added, acked or removed)
    /// and of the active indexers; of the writers it linearizes without a record (which it never
    /// applies but for a dependency or an optimistic node), up to what its pending nodes depend
    /// on; of each hinted writer ([`Autobase::hint_writer`], [`Autobase::hint_writer_length`],
    /// in an optimistic base or while the system has no member), up to the hint's end.
    pub fn wanted_ranges(&self) -> Vec<WantedWriter> {
        let mut need: HashMap<[u8; 32], u64> = HashMap::new();
        for &n in self.pending.values() {
            let node = self.graph.node(n);
            for h in node.heads.iter().skip(node.dependencies.len()) {
                let e = need.entry(h.key).or_default();
                *e = (*e).max(h.length);
            }
        }
        if self.optimistic || self.system.bootstrapping() {
            for (k, (end, _)) in &self.hints {
                let e = need.entry(*k).or_default();
                *e = (*e).max(end.unwrap_or(u64::MAX));
            }
        }
        let mut out: Vec<WantedWriter> = Vec::new();
        let mut seen: HashSet<[u8; 32]> = HashSet::new();
        let mut push = |key: [u8; 32], until: Option<u64>| {
            if !seen.insert(key) {
                return;
            }
            let from = self.oplog_len(&key);
            let until = until.filter(|&u| u != u64::MAX);
            if until.is_some_and(|u| u <= from) {
                return;
            }
            out.push(WantedWriter { key, from, until });
        };
        for &w in &self.active {
            let key = self.graph.writers[w].key;
            if self.is_open_ended(&key) {
                push(key, None);
            } else if let Some(&u) = need.get(&key) {
                push(key, Some(u));
            }
        }
        for (k, m) in self.system.member_records() {
            if !m.is_removed {
                push(*k, None);
            }
        }
        for k in &self.hinted {
            if let Some(&u) = need.get(k) {
                push(*k, Some(u));
            }
        }
        out
    }

    /// Every writer the engine knows: `(key, indexed, linearized, loaded, removed, indexer)`.
    pub fn writer_states(&self) -> Vec<([u8; 32], u64, u64, u64, bool, bool)> {
        self.active
            .iter()
            .map(|&w| {
                let ws = &self.graph.writers[w];
                (
                    ws.key,
                    ws.offset,
                    ws.length,
                    ws.loaded(),
                    ws.is_removed,
                    ws.is_active_indexer,
                )
            })
            .collect()
    }

    /// A writer's pending (not yet loadable) node: its heads and resolved dependencies.
    pub fn pending_node(&self, key: &[u8; 32]) -> Option<(u64, Vec<Checkout>, usize)> {
        let w = self.graph.find_writer(key)?;
        let n = self.graph.node(*self.pending.get(&w)?);
        Some((n.length, n.heads.clone(), n.dependencies.len()))
    }

    /// The consensus state, for debugging.
    pub fn explain(&self) -> String {
        let r = |n: &NodeId| {
            let node = self.graph.node(*n);
            let k = self.graph.key_of(*n);
            format!(
                "{:02x}{:02x}:{}{}",
                k[0],
                k[1],
                node.length,
                if node.value.is_some() { "*" } else { "" }
            )
        };
        let writers: Vec<String> = self
            .graph
            .writers
            .iter()
            .enumerate()
            .map(|(i, w)| format!("w{i}={:02x}{:02x}", w.key[0], w.key[1]))
            .collect();
        format!(
            "{} | writers {} | tip {:?} heads {:?} tails {:?} pending {:?}",
            self.lin.consensus.explain(&self.graph),
            writers.join(" "),
            self.lin.tip.tip.iter().map(r).collect::<Vec<_>>(),
            self.lin.heads.iter().map(r).collect::<Vec<_>>(),
            self.lin.tails.iter().map(r).collect::<Vec<_>>(),
            self.pending.values().map(r).collect::<Vec<_>>(),
        )
    }

    /// Oplog blocks held for `key`.
    pub fn oplog_len(&self, key: &[u8; 32]) -> u64 {
        self.oplog_start(key)
            .saturating_add(self.oplogs.get(key).map_or(0, |v| v.len() as u64))
    }

    /// The first oplog block the engine holds (or wants) of `key`: 0, or after a fast-forward
    /// the length of `key`'s oplog the system had applied there.
    pub fn oplog_start(&self, key: &[u8; 32]) -> u64 {
        self.oplog_start.get(key).copied().unwrap_or(0)
    }

    fn oplog_get(&self, key: &[u8; 32], seq: u64) -> Option<&OplogMessage> {
        let i = seq.checked_sub(self.oplog_start(key))?;
        self.oplogs.get(key)?.get(usize::try_from(i).ok()?)
    }

    /// Block `seq` of writer `key`'s oplog. Blocks must come in order per writer (a block past
    /// the next one expected is ignored); a block that does not decode freezes the writer there.
    pub fn handle_block(
        &mut self,
        key: &[u8; 32],
        seq: u64,
        block: &[u8],
    ) -> Result<(), AutobaseError> {
        if self.frozen.contains_key(key) {
            return Ok(());
        }
        if seq != self.oplog_len(key) {
            return Ok(());
        }
        let stranger = !self.is_member_record(key);
        if stranger && self.nonmember_blocks >= MAX_NONMEMBER_BLOCKS {
            return Err(AutobaseError::NotAMember {
                writer: key.iter().map(|b| format!("{b:02x}")).collect(),
                seq,
            });
        }
        match OplogMessage::from_bytes(block) {
            Ok(m) => {
                self.oplogs.entry(*key).or_default().push(m);
                if stranger {
                    self.nonmember_blocks += 1;
                }
                // JS `_onremotewriterchange` hears of the writers it opened: members (and any
                // writer in an optimistic base), not a hinted non-member's blocks
                if self.acks.config.is_some_and(|(_, local)| local != *key)
                    && (self.optimistic
                        || *key == self.bootstrap
                        || self.system.get(key).is_some_and(|m| !m.is_removed))
                {
                    self.acks.remote_changed = true;
                }
                Ok(())
            }
            Err(e) => {
                self.frozen.insert(*key, seq);
                Err(AutobaseError::BadBlock {
                    writer: key.iter().map(|b| format!("{b:02x}")).collect(),
                    seq,
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Record a locally written message (the local writer's own block).
    pub fn handle_message(&mut self, key: &[u8; 32], msg: OplogMessage) {
        self.oplogs.entry(*key).or_default().push(msg);
        self.acks.local_wrote = true;
    }

    /// Whether `local` may append: a member of the system that is not removed (JS `writable`).
    pub fn is_writable(&self, local: &[u8; 32]) -> bool {
        match self.system.get(local) {
            Some(m) => !m.is_removed,
            None => self.system.bootstrapping() && *local == self.bootstrap,
        }
    }

    /// Append `values` as one batch from the local writer `local` (JS `append` / `_addLocalHeads`):
    /// the nodes link the DAG's current heads, enter the linearizer at once and are applied by
    /// the next [`Autobase::update`]. Returns the oplog messages to append to the local core, in
    /// order (no digest or checkpoint: this writer does not index). `None` when not writable or
    /// when the local writer's oplog still has blocks to load.
    pub fn append(&mut self, local: &[u8; 32], values: Vec<Vec<u8>>) -> Option<Vec<OplogMessage>> {
        self.append_nodes(local, values.into_iter().map(Some).collect(), false)
    }

    /// Append `value` as an optimistic node (JS `append(value, { optimistic: true })`): allowed
    /// whether or not `local` is a member, always a batch of its own, flagged optimistic in its
    /// oplog message. On an optimistic base ([`Autobase::set_optimistic`]) apply sees it and keeps
    /// it only by acking `local`; on other bases a non-member's node is never applied (as JS, which
    /// writes it all the same). From a member it is an ordinary node (the flag only changes where
    /// it sorts among concurrent nodes). `None` when the local oplog still has blocks to load.
    pub fn append_optimistic(
        &mut self,
        local: &[u8; 32],
        value: Vec<u8>,
    ) -> Option<Vec<OplogMessage>> {
        self.append_nodes(local, vec![Some(value)], true)
    }

    /// Whether `local` is one of the indexers the linearizer runs with (JS `ackable`).
    pub fn is_indexer(&self, local: &[u8; 32]) -> bool {
        self.graph
            .find_writer(local)
            .is_some_and(|w| self.graph.writers[w].is_active_indexer)
    }

    /// JS `ack()` for the local indexer: when the linearizer says an ack moves consensus on
    /// (`shouldAck`), append a node without a value and return its message for the local core.
    pub fn ack(&mut self, local: &[u8; 32]) -> Option<Vec<OplogMessage>> {
        let w = self.graph.find_writer(local)?;
        if !self.graph.writers[w].is_active_indexer {
            return None;
        }
        let pending = self.system.indexers.len() > self.lin.indexers().len();
        if !self.lin.should_ack(&self.graph, w, pending) {
            return None;
        }
        self.append_nodes(local, vec![None], false)
    }

    /// Append an ack (a node without a value) whether or not `shouldAck` asks for one (JS
    /// `append(null)`): an indexer breaks a stall with it, as JS never acks its own lone head.
    pub fn force_ack(&mut self, local: &[u8; 32]) -> Option<Vec<OplogMessage>> {
        self.append_nodes(local, vec![None], false)
    }

    /// An ack to break a stall that JS's `shouldAck` does not see (JS autobase 7.28.1): when two
    /// indexers ack concurrently, each ack crossing the other's (neither seeing the other's
    /// latest node), consensus counts for a node only the other indexer's *next* node after
    /// what the node saw, and after two such crossings no unindexed node has one that sees it;
    /// yet `shouldAck` says no to both, as each indexer's head already saw every value (JS to
    /// JS too: two JS indexers stall there until a new value comes; JS's own tests force acks
    /// in turn). Only a node that sees the other indexers' latest nodes moves it on. So this
    /// writes an ack when the local writer is an active indexer, nodes wait unindexed, and a
    /// DAG head is another writer's node (the ack sees something new); never when the local
    /// writer's node is the only head (that self-ack confirms nothing: the other indexers must
    /// ack it). `None` otherwise. Call it when nothing moves; `ack` first.
    pub fn stall_ack(&mut self, local: &[u8; 32]) -> Option<Vec<OplogMessage>> {
        let w = self.graph.find_writer(local)?;
        if !self.graph.writers[w].is_active_indexer || self.lin.size == 0 {
            return None;
        }
        if !self
            .lin
            .heads
            .iter()
            .any(|&h| self.graph.node(h).writer != w)
        {
            return None;
        }
        self.append_nodes(local, vec![None], false)
    }

    fn append_nodes(
        &mut self,
        local: &[u8; 32],
        values: Vec<Option<Vec<u8>>>,
        optimistic: bool,
    ) -> Option<Vec<OplogMessage>> {
        if values.is_empty() || !(optimistic || self.is_writable(local)) {
            return None;
        }
        let w = self.writer_by_key(local, None, false);
        self.load(w);
        let ws = &self.graph.writers[w];
        let held = self.oplog_len(local);
        if ws.length != ws.available || ws.loaded() != held || self.pending.contains_key(&w) {
            return None;
        }
        let n = values.len() as u64;
        self.acks.local_wrote = true;
        let mut out = Vec::with_capacity(values.len());
        for (i, value) in values.into_iter().enumerate() {
            let heads = self.lin.get_heads(&self.graph);
            let deps = self.lin.heads.clone();
            let batch = n - i as u64;
            let length = self.graph.writers[w].loaded() + 1;
            let mut node = DagNode::new(w, length, value.clone(), heads.clone(), batch, optimistic);
            node.dependencies = deps;
            let id = self.graph.insert(node);
            let ws = &mut self.graph.writers[w];
            ws.nodes.push_back(id);
            ws.available += 1;
            ws.length += 1;
            self.lin.add_head(&mut self.graph, id);
            let mut msg = OplogMessage::new(super::messages::Node {
                heads,
                batch,
                value,
            });
            msg.optimistic = optimistic;
            self.oplogs.entry(*local).or_default().push(msg.clone());
            out.push(msg);
        }
        Some(out)
    }

    // ------------------------------------------------------------------ writers

    /// JS `_getWriterByKey(key, len, seen, allowGC, isAdded, system)`.
    fn writer_by_key(&mut self, key: &[u8; 32], len: Option<u64>, is_added: bool) -> WriterId {
        let info = self.system.get(key);
        let len = len.unwrap_or_else(|| info.map_or(0, |m| m.length));
        let is_active = info.is_some_and(|m| is_added || !m.is_removed);
        let id = self.graph.writer_id(key, len);
        let w = &mut self.graph.writers[id];
        w.is_removed = !is_active;
        if w.is_removed && self.system.bootstrapping() && *key == self.bootstrap {
            w.is_removed = false;
        }
        if self.active_set.insert(id) {
            self.active.push(id);
        }
        id
    }

    /// Activate the members we hold unapplied blocks of (what JS learns from the wakeup
    /// protocol and the peers' announcements): after a restart only the indexers and the heads'
    /// writers are known again. An optimistic base activates non-members too (their nodes load
    /// as a removed writer's; only their optimistic nodes can be applied).
    fn wake_writers(&mut self) {
        let mut keys: Vec<[u8; 32]> = self
            .oplogs
            .iter()
            .filter(|(k, log)| {
                let m = self.system.get(k);
                // an optimistic base loads non-members too (JS wakes any writer it is told of)
                let wanted = match m {
                    Some(m) => !m.is_removed || self.optimistic,
                    None => self.optimistic,
                };
                wanted
                    && self.oplog_start(k).saturating_add(log.len() as u64)
                        > m.map_or(0, |m| m.length)
            })
            .map(|(k, _)| *k)
            .collect();
        keys.sort_unstable();
        for k in keys {
            let known = self
                .graph
                .find_writer(&k)
                .is_some_and(|w| self.active_set.contains(&w));
            if !known {
                self.writer_by_key(&k, None, false);
            }
        }
    }

    fn restart(&mut self) {
        self.acks.rebooted = true;
        self.graph = Graph::new();
        self.active.clear();
        self.active_set.clear();
        self.pending.clear();
        self.system = self.indexed_system.clone();
        self.views.truncate(&self.indexed_views);
        self.updates.clear();
        self.trim_flushes();
        if self.system.indexers.is_empty() {
            // JS `_bootstrapLinearizer`
            let b = self.graph.writer_id(&self.bootstrap, 0);
            self.graph.writers[b].is_removed = false;
            self.graph.writers[b].is_active_indexer = true;
            self.active.push(b);
            self.active_set.insert(b);
            self.lin = Linearizer::new(&mut self.graph, vec![b], &[]);
            return;
        }
        let sys = self.system.clone();
        let mut indexers = Vec::new();
        for idx in &sys.indexers {
            indexers.push(self.writer_by_key(&idx.key, Some(idx.length), false));
        }
        for &i in &indexers {
            self.graph.writers[i].is_active_indexer = true;
        }
        self.lin = Linearizer::new(&mut self.graph, indexers, &sys.heads);
        for h in &sys.heads {
            self.writer_by_key(&h.key, Some(h.length), false);
        }
    }

    /// JS `writer.update`: load nodes whose dependencies are in.
    fn load(&mut self, w: WriterId) {
        let key = self.graph.writers[w].key;
        loop {
            let ws = &self.graph.writers[w];
            if ws.available - ws.length >= MAX_PRELOAD {
                break;
            }
            let seq = ws.loaded();
            let Some(msg) = self.oplog_get(&key, seq) else {
                break;
            };
            let node = match self.pending.get(&w) {
                Some(&n) => n,
                None => {
                    let n = DagNode::new(
                        w,
                        seq + 1,
                        msg.node.value.clone(),
                        msg.node.heads.clone(),
                        msg.node.batch,
                        msg.optimistic,
                    );
                    let id = self.graph.insert(n);
                    self.pending.insert(w, id);
                    id
                }
            };
            if !self.ensure_dependencies(w, node) {
                break;
            }
            self.pending.remove(&w);
            let ws = &mut self.graph.writers[w];
            ws.nodes.push_back(node);
            if self.graph.node(node).batch == 1 {
                let ws = &mut self.graph.writers[w];
                ws.available = ws.loaded();
            }
        }
    }

    fn ensure_dependencies(&mut self, w: WriterId, node: NodeId) -> bool {
        loop {
            let n = self.graph.node(node);
            if n.dependencies.len() >= n.heads.len() {
                break;
            }
            let raw = n.heads[n.dependencies.len()];
            let hw = self.writer_by_key(&raw.key, None, false);
            if hw != w && self.graph.writers[hw].length < raw.length {
                return false;
            }
            let mut head = self.graph.writers[hw].node_at(raw.length as i64 - 1);
            if head.is_none() {
                head = self.lin.heads.iter().copied().find(|&h| {
                    let hn = self.graph.node(h);
                    hn.length == raw.length && self.graph.writers[hn.writer].key == raw.key
                });
            }
            let n = self.graph.node_mut(node);
            match head {
                None => {
                    // already yielded
                    let i = n.dependencies.len();
                    n.heads.remove(i);
                }
                Some(h) if n.dependencies.contains(&h) || h == node => {
                    // JS asserts 'Corrupted DAG': a head listed twice; drop the duplicate
                    let i = n.dependencies.len();
                    n.heads.remove(i);
                }
                Some(h) => n.dependencies.push(h),
            }
        }
        let offset = self.graph.node(node).length - 1;
        let ws = &self.graph.writers[w];
        if offset > ws.indexed() {
            if let Some(prev) = ws.node_at(offset as i64 - 1) {
                let n = self.graph.node_mut(node);
                if !n.dependencies.contains(&prev) {
                    n.dependencies.push(prev);
                }
            }
        }
        true
    }

    fn advance(&mut self, w: WriterId) -> Option<NodeId> {
        let ws = &mut self.graph.writers[w];
        if ws.length < ws.available {
            let n = ws.node_at(ws.length as i64);
            ws.length += 1;
            n
        } else {
            None
        }
    }

    fn add_remote_heads(&mut self) -> u64 {
        let mut added = 0;
        while added < REMOTE_ADD_BATCH {
            // a writer met while loading (a head's writer) is loaded in the next round
            let known = self.active.len();
            let writers = self.active.clone();
            for &w in &writers {
                self.load(w);
            }
            let mut advanced = 0;
            for &w in &self.active.clone() {
                let Some(mut node) = self.advance(w) else {
                    continue;
                };
                advanced += self.graph.node(node).batch;
                loop {
                    self.lin.add_head(&mut self.graph, node);
                    if self.graph.node(node).batch == 1 {
                        break;
                    }
                    match self.advance(w) {
                        Some(n) => node = n,
                        None => break,
                    }
                }
            }
            if advanced == 0 {
                if self.active.len() != known {
                    continue;
                }
                break;
            }
            added += advanced;
        }
        added
    }

    /// Load, linearize and apply everything the blocks held allow. Returns whether anything
    /// changed.
    pub fn update(&mut self) -> bool {
        run_ready(self.update_with(None::<&mut SyncOnly>))
    }

    /// [`Autobase::update`] with `apply` (an [`AsyncApply`]) instead of the engine's own
    /// [`Apply`]: each batch waits for `apply`'s future. The engine is borrowed until it ends;
    /// a caller must not drop it half-way (the batch being applied would be lost).
    pub async fn update_async<P: AsyncApply + ?Sized>(&mut self, apply: &mut P) -> bool {
        self.update_with(Some(apply)).await
    }

    async fn update_with<P: AsyncApply + ?Sized>(&mut self, mut ext: Option<&mut P>) -> bool {
        let mut changed = false;
        let mut remote = false;
        loop {
            self.wake_writers();
            let added = self.add_remote_heads();
            remote |= added > 0;
            let Some(u) = self.lin.update(&mut self.graph) else {
                if added == 0 {
                    break;
                }
                continue;
            };
            changed = true;
            if self.apply_update(&u, &mut ext).await {
                self.reboots += 1;
                self.restart();
            }
        }
        if remote {
            self.acks.updates += 1;
        }
        self.expire_hints(true);
        self.count_nonmember_blocks();
        changed
    }

    fn shift_writer(&mut self, w: WriterId) {
        let ws = &self.graph.writers[w];
        if ws.length <= ws.offset {
            return;
        }
        while let Some(n) = self.graph.writers[w].nodes.pop_front() {
            self.graph.writers[w].offset += 1;
            if self.graph.node(n).batch <= 1 {
                break;
            }
        }
    }

    fn refresh_writers(&mut self) {
        for &w in &self.active {
            let ws = &mut self.graph.writers[w];
            let data = self.system.get(&ws.key);
            let bootstrapper = self.system.length == 0 && ws.key == self.bootstrap;
            ws.is_removed = data.map_or(!bootstrapper, |m| m.is_removed);
        }
    }

    fn undo(&mut self, mut popped: usize) {
        while popped > 0 {
            let Some(u) = self.updates.pop() else { break };
            popped = popped.saturating_sub(u.batch);
        }
        let (sys, views) = match self.updates.last() {
            Some(u) => (u.system.clone(), u.views.clone()),
            None => (self.indexed_system.clone(), self.indexed_views.clone()),
        };
        self.system = sys;
        self.views.truncate(&views);
        self.trim_flushes();
        self.refresh_writers();
    }

    fn push_update(&mut self, batch: usize, indexers: bool) {
        self.updates.push(Applied {
            batch,
            indexers,
            system: self.system.clone(),
            views: self.views.lengths(),
        });
    }

    fn causal_dependencies(&self, node: NodeId) -> Vec<NodeId> {
        let mut order = vec![node];
        let mut stack = vec![node];
        let mut visited: Vec<NodeId> = Vec::new();
        while let Some(n) = stack.pop() {
            for &dep in &self.graph.node(n).dependencies {
                let dw = &self.graph.writers[self.graph.node(dep).writer];
                if !dw.is_removed || dw.is_active_indexer {
                    continue;
                }
                if visited.contains(&dep) {
                    continue;
                }
                visited.push(dep);
                stack.push(dep);
                order.push(dep);
            }
        }
        order
    }

    /// Apply an update; returns whether the indexers changed at an indexed node (reboot).
    async fn apply_update<P: AsyncApply + ?Sized>(
        &mut self,
        u: &Update,
        ext: &mut Option<&mut P>,
    ) -> bool {
        let mut indexers_updated = 0;
        let mut j = 0;
        let mut i = 0;
        while i < u.indexed.len().min(u.shared) {
            let node = u.indexed[i];
            i += 1;
            if self.graph.node(node).batch > 1 {
                continue;
            }
            self.shift_writer(self.graph.node(node).writer);
            let indexers = self.updates.get(j).is_some_and(|a| a.indexers);
            j += 1;
            if indexers {
                indexers_updated = i;
                break;
            }
        }
        if u.undo > 0 {
            self.undo(u.undo);
        }
        if self.system.bootstrapping() {
            let b = self.bootstrap;
            self.system.add(&b, true);
        }
        let mut batch = 0;
        let mut apply_batch: Vec<(NodeId, bool)> = Vec::new();
        for i in u.shared..u.length {
            let indexed = i < u.indexed.len();
            let node = u.at(i);
            batch += 1;
            let n = self.graph.node(node);
            let w = n.writer;
            let (removed, active_indexer) = (
                self.graph.writers[w].is_removed,
                self.graph.writers[w].is_active_indexer,
            );
            // JS: a non-member's optimistic node, first of its batch, is applied alone and kept
            // only if apply acked its writer
            let optimist = removed
                && n.optimistic
                && batch == 1
                && self.optimistic
                && self.optimistic_apply(node, indexed, ext).await;
            if !optimist {
                if removed && !active_indexer {
                    if self.graph.node(node).batch > 1 {
                        continue;
                    }
                    self.push_update(batch, false);
                    batch = 0;
                    continue;
                }
                let deps = self.causal_dependencies(node);
                for &d in deps[1..].iter().rev() {
                    let dn = self.graph.node(d);
                    let key = self.graph.writers[dn.writer].key;
                    if self.system.linkable(&key, dn.length) {
                        self.system.add_head(&key, dn.length, &dn.actual_heads);
                    }
                }
                let n = self.graph.node(node);
                let key = self.graph.writers[w].key;
                self.system.add_head(&key, n.length, &n.actual_heads);
                if n.value.is_some() && !self.graph.writers[w].is_removed {
                    apply_batch.push((node, indexed));
                }
                if self.graph.node(node).batch > 1 {
                    continue;
                }
                if !apply_batch.is_empty() {
                    self.run_apply(&apply_batch, false, ext).await;
                }
            }
            let indexers = self.system.indexer_update;
            if let Some(f) = self.flushes.as_mut() {
                let lengths = self.views.lengths();
                f.extend(self.system.flush_views(&lengths, true));
            } else {
                self.system.flush();
            }
            self.push_update(batch, indexers);
            batch = 0;
            apply_batch.clear();
            if !indexed || indexers_updated > 0 {
                continue;
            }
            self.shift_writer(w);
            if indexers {
                indexers_updated = i + 1;
            }
        }
        if !u.indexed.is_empty() {
            self.index_updates(if indexers_updated > 0 {
                indexers_updated
            } else {
                u.indexed.len()
            });
        }
        indexers_updated > 0
    }

    /// JS `_optimisticApply`: apply a non-member's optimistic node alone; keep what apply did only
    /// if it changed the writer's member record (acked or added it), else restore the system and
    /// the views as they were before the node. Whether it was kept.
    async fn optimistic_apply<P: AsyncApply + ?Sized>(
        &mut self,
        node: NodeId,
        indexed: bool,
        ext: &mut Option<&mut P>,
    ) -> bool {
        let checkpoint = self.system.clone();
        let view_lengths = self.views.lengths();
        let n = self.graph.node(node);
        let key = self.graph.writers[n.writer].key;
        let (length, heads) = (n.length, n.actual_heads.clone());
        self.system.add_head(&key, length, &heads);
        let pre = self.system.get(&key).map_or(0, |m| m.length);
        self.run_apply(&[(node, indexed)], true, ext).await;
        let kept = self.system.get(&key).is_some_and(|m| m.length != pre);
        if !kept {
            self.system = checkpoint;
            self.views.truncate(&view_lengths);
        }
        self.refresh_writers();
        kept
    }

    async fn run_apply<P: AsyncApply + ?Sized>(
        &mut self,
        nodes: &[(NodeId, bool)],
        optimistic: bool,
        ext: &mut Option<&mut P>,
    ) {
        let keys: Vec<[u8; 32]> = nodes
            .iter()
            .map(|&(n, _)| self.graph.writers[self.graph.node(n).writer].key)
            .collect();
        let batch: Vec<ApplyNode<'_>> = nodes
            .iter()
            .zip(&keys)
            .map(|(&(n, indexed), key)| {
                let node = self.graph.node(n);
                ApplyNode {
                    indexed,
                    optimistic,
                    from: key,
                    length: node.length,
                    value: node.value.as_deref().unwrap_or(&[]),
                    heads: &node.actual_heads,
                }
            })
            .collect();
        let mut host = Host {
            system: &mut self.system,
            added: Vec::new(),
            removed: Vec::new(),
        };
        match ext {
            Some(p) => p.apply(&batch, &mut self.views, &mut host).await,
            None => self.apply.apply(&batch, &mut self.views, &mut host),
        }
        let (added, removed) = (host.added, host.removed);
        drop(batch);
        for key in added {
            self.writer_by_key(&key, None, true);
        }
        for key in removed {
            if let Some(w) = self.graph.find_writer(&key) {
                self.graph.writers[w].is_removed = true;
            }
        }
    }

    fn index_updates(&mut self, mut indexed: usize) {
        let mut shift = 0;
        while indexed > 0 && shift < self.updates.len() {
            indexed = indexed.saturating_sub(self.updates[shift].batch);
            shift += 1;
        }
        if shift == 0 {
            return;
        }
        let last = &self.updates[shift - 1];
        self.indexed_system = last.system.clone();
        self.indexed_views = last.views.clone();
        self.indexed_nodes += self.updates[..shift]
            .iter()
            .map(|u| u.batch as u64)
            .sum::<u64>();
        self.updates.drain(..shift);
    }
}

// The ack timer's side of the engine (JS `_ackTimer`, `ack(bg)`, `_triggerAckAsap`).
#[path = "base_acks.rs"]
mod acks_impl;
