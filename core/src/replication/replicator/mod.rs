//! [`Replicator`]: one core replicated with many peers (JS `Replicator` + `Peer`).
//!
//! Each peer is a paired `hypercore/alpha` channel; the owner adds it with
//! [`Replicator::add_peer`] once the channel is open and its capability checked, feeds it the
//! peer's decoded messages, and sends what [`Replicator::poll_transmit`] yields on that channel.
//!
//! What it does, following `lib/replicator.js` (v11):
//! * **sync**: sent on open and whenever the local length/fork changes; `remoteLength` echoes the
//!   peer's length (it acknowledges it), `canUpgrade` says whether we hold the roots to prove an
//!   upgrade from the peer's length.
//! * **upgrades**: requested eagerly from a peer that can upgrade us and acknowledged our length,
//!   at most one in flight, with the manifest when we lack it. A peer with an empty core that has
//!   a manifest is asked for it alone (JS `_requestManifest`); it is kept if it hashes to our key.
//! * **reorgs**: a peer on a higher fork is asked for a signed upgrade from 0 on its fork. Its
//!   roots show the prefix we share; inside the first root that differs, `hash` requests on the
//!   new fork descend to the first differing block (JS `ReorgBatch`), then the core moves to the
//!   new fork keeping every block before that point ([`Event::Reorg`]).
//! * **blocks**: the blocks of the [`Replicator::download`] ranges are requested from peers that
//!   advertise them (`range`/`bitfield`), least-loaded first, at most
//!   [`Options::max_inflight`] per peer; peers that do not advertise a wanted block get a `want`
//!   for its 2^21-block batch. Verified blocks give [`Event::Block`] and a `range` broadcast.
//! * **hotswap**: with several peers, a peer with spare capacity (half its window, at least 16)
//!   also requests blocks already in flight at other peers (up to 3 requests per block, fewest
//!   requests and oldest first; JS picks at random). The first answer wins, the other requests
//!   are cancelled: a slow peer does not hold a download back.
//! * **seeks**: [`Replicator::seek`] finds the block holding a byte offset from the local tree
//!   when its nodes are stored, else asks a peer: past our length with the upgrade request
//!   carrying the `seek`, inside it with a `hash` request for a block of the subtree we lack
//!   (plus the `seek`), as JS `_requestSeek` does. Answers are verified and stored like any
//!   proof (tree nodes only, no block); [`Event::Seek`] gives the result.
//! * **tree hashes**: [`Replicator::tree_hash`] gives the tree hash at a length (what a signature
//!   at that length signs) without blocks: missing roots of that length come through `hash`
//!   requests to a peer holding their blocks ([`Event::TreeHash`]). JS has no such call (its
//!   `treeHash` downloads the last block); the `hash` requests are the ones JS sends for seeks.
//! * **answers**: proofs through [`Hypercore::proof`] (block, hash, seek and upgrade parts,
//!   byte-identical to JS); wrong fork or missing block → manifest-only
//!   `data` if the manifest was asked for and we have one, else `noData(NOT_AVAILABLE)`; a proof
//!   that cannot be generated → `noData(INVALID_REQUEST)` after the JS backoff (200 ms → 5 s), and at
//!   [`MAX_INVALID_REQUESTS`] the peer is disconnected ([`Event::Disconnect`]).
//! * **backpressure**: answers to a peer's requests and `want`s use up a window of bytes the
//!   owner grants ([`Replicator::set_window`]; the hub grants its stream's send buffer room);
//!   without window they wait, in order, until it grows again (JS queues requests while the
//!   stream is not drained). More than [`MAX_DEFERRED`] waiting: the peer is disconnected.
//! * **ranges**: `range` broadcasts of blocks older than the last 256 go only to peers whose
//!   `want`s cover them, unless we hold every block (JS `broadcastRange` with `RemoteWants`);
//!   peers that never send `want` still hear about new blocks and full contiguity.
//! * **bad data**: a proof that does not verify pauses the peer (no more requests to it, no
//!   block uploads) and gives [`Event::InvalidData`]; with [`Options::disconnect_on_invalid_data`]
//!   it is disconnected at once.
//! * **fork conflicts**: a proof that fails to verify (other than a malformed one) makes us ask
//!   the peer for its signed tree at the length we share (`request` id 0, JS `_checkIfConflict`).
//!   A `data` with request 0 and an upgrade from 0 is always checked ([`Hypercore::check_conflict`]):
//!   a validly signed tree that diverges from ours is a conflict ([`Event::Conflict`]): the
//!   replicator freezes, sends every peer its own proof of that length and lets them all go
//!   (the hub closes the core's channels); a proof that agrees with our tree resumes the peer.
//!   The conflict is stored with the core ([`Hypercore::conflict`]): it refuses writes, and a
//!   replicator made for it later starts frozen.
//! * **push mode** (JS `allowPush` / `push`): [`Replicator::push`] sends a block nobody asked
//!   for (`data` with request id 0) to every peer whose `sync` set `allowPush` and `downloading`
//!   and that lacks it, with the proof from the length the peer has (or our upgrades already
//!   brought it to, JS `pushedLength`) plus an upgrade to our length when the block lies past
//!   that, and the manifest to an empty peer. An upgrade request from such a peer that starts
//!   below what we pushed is answered from where our pushed upgrades ended (JS moves its start;
//!   for a plain upgrade request we also do when it asked for less, where JS's answer fails to
//!   verify for the peer), so the upgrades it gets chain.
//!   With [`Options::allow_push`] our `sync` sets `allowPush` (while we download) and pushed
//!   `data` on our fork is verified and stored like an answer ([`Event::Block`],
//!   [`Event::Upgraded`]), consecutive pushed blocks in one batch like consecutive answers
//!   ([`Replicator::handle_messages`]); any `data` is accepted whatever request it names (JS
//!   `_matchingRequest`). An upgrade starting below
//!   our length is verified from our roots at its start. A pushed proof that does not fit our
//!   tree is reported ([`Event::InvalidData`]) without pausing the peer; one that fails its
//!   hashes pauses it until it answers the fork check, as in JS. [`Options::push_only`] stops
//!   every request but the manifest request and fork checks (JS `pushOnly`).
//! * **downloading** (JS `setDownloading` / `isDownloading` / `isAllowingPush`): our `sync`
//!   says `downloading` while [`Options::downloading`] holds or requests of ours are in flight,
//!   and `allowPush` only while downloading; [`Replicator::set_downloading`] switches it (off
//!   after [`Options::not_downloading_linger`], `allowPush` at once), telling every peer.
//! * **timeouts**: a request unanswered for [`Options::request_timeout`] ms is cancelled (`cancel`)
//!   and its block rescheduled. Request ids start at 1 (0 is the unsolicited/conflict id) and are
//!   reused only after their answer arrived.
//!
//! Not implemented (JS features with no wire-compat impact): closing a channel when neither
//! side downloads (JS `closeIfIdle`, and reopening it when downloading starts again; a JS peer
//! still closes such a channel from its side), request priorities, and `SMALL_WANTS`
//! (4096-block `want` batches and `any` wants: we send 2^21-block wants, and honour both kinds
//! from peers). Seek requests carry the `seek` only
//! to peers whose handshake set `seeks` ([`Replicator::set_remote_seeks`]; the hub tells it).
//!
//! The code is split by concern (this file is the hub: options, handles, the state and the
//! outputs): `events` (what the owner hears: [`Event`], [`ReplicationError`]), `peer` (peer
//! state, adding and removing peers, the answer window, extensions), `receive` (input: messages
//! dispatched, answers and pushes verified and stored, bad data punished), `serve` (answers to
//! requests: proofs, `noData`, backoff), `push` (push mode), `sync` (our `sync`, local appends
//! and truncations), `ranges` (`range`/`bitfield`/`want` in both directions), `schedule` (what
//! is requested from whom, request ids, timeouts, hotswaps), `seek` (seeks and tree hashes) and
//! `fork` (reorgs and conflicts).

mod events;
mod fork;
mod peer;
mod push;
mod ranges;
mod receive;
mod schedule;
mod seek;
mod serve;
mod sync;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::hypercore::messages::Message;
use crate::hypercore::Hypercore;
use crate::storage::Storage;

pub use events::{Event, ReplicationError};
use fork::PendingReorg;
use peer::Peer;
pub use peer::PeerInfo;
pub use push::PUSH_CATCH_UP;
use schedule::Inflight;
use seek::{PendingSeek, PendingTreeHash};

/// Invalid requests a peer may send before it is disconnected (JS `MAX_INVALID_REQUESTS`).
pub const MAX_INVALID_REQUESTS: u64 = 64;
/// Requests and `want`s a peer may keep waiting for answers while it does not read ours
/// ([`Replicator::set_window`]): 8 times the most requests a JS peer keeps in flight (512).
pub const MAX_DEFERRED: usize = 4096;
/// `noData` answers after which a peer is paused (JS `MAX_BACKOFFS`).
const MAX_BACKOFFS: u64 = MAX_INVALID_REQUESTS / 2;
/// Blocks per `want` (JS COMPAT want batches: 2^21).
const WANT_BATCH: u64 = 1 << 21;
/// Index visits per scheduling pass (bounds the work one message can cause).
const MAX_SCAN: u64 = 1 << 16;
/// Ranges that end this far before our length are broadcast only to peers that want them (JS
/// `LAST_BLOCKS`).
const LAST_BLOCKS: u64 = 256;
/// Requests for one block in flight at once, the first one included (JS hotswap queues).
const MAX_BLOCK_REQUESTS: usize = 3;
/// Candidate blocks a seek looks at per peer and pass.
const SEEK_SCAN: u32 = 64;

/// Handle of a peer of one [`Replicator`]. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(u64);

impl PeerId {
    #[cfg(test)]
    pub(crate) fn from_raw(n: u64) -> Self {
        PeerId(n)
    }

    /// The raw handle number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Handle of a [`Replicator::download`] range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DownloadId(u64);

impl DownloadId {
    /// The raw handle number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Handle of a [`Replicator::seek`]. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeekId(u64);

impl SeekId {
    /// The raw handle number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Handle of a [`Replicator::tree_hash`]. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TreeHashId(u64);

impl TreeHashId {
    /// The raw handle number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The most requests [`Options::inflight_bytes`] keeps in flight per peer (JS's upper bound).
pub const MAX_INFLIGHT: usize = 512;

/// Tuning of a [`Replicator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Requests in flight per peer (JS: 16..512 scaled by RTT; 48 on non-UDX streams); see
    /// also [`Options::inflight_bytes`].
    pub max_inflight: usize,
    /// For cores of blocks below this size / [`Options::max_inflight`] (170 KiB at the
    /// defaults), more requests are kept in flight per peer than [`Options::max_inflight`]: as
    /// many as make about this many bytes of blocks (from the core's average block size), up
    /// to [`MAX_INFLIGHT`]. A reader verifies and stores what one read of the connection brings
    /// before it asks again, so with fewer bytes in flight than a few reads, reader and writer
    /// take turns instead of working at once (25k x 4 KiB in one process on two cores: ~1.2x
    /// faster than with 48 requests at 1 MiB, another ~5% at 2 MiB, which is [`MAX_INFLIGHT`]
    /// 4 KiB blocks). The default, 8 MiB, is 128 requests of 64 KiB blocks: `core serve` ->
    /// `core fetch` of 100 MiB over TCP on loopback downloaded in ~226 ms on average against
    /// ~258 ms with the 48 requests (3 MiB) of 2 MiB, 5 interleaved rounds each (2026-12-07,
    /// `BENCHMARKS.md`); the server answers up to its own high-water mark and keeps the rest
    /// of the requests waiting, so it never idles while the reader verifies. 0 turns this off.
    pub inflight_bytes: u64,
    /// Milliseconds before an unanswered request is cancelled and rescheduled.
    pub request_timeout: u64,
    /// Upgrade to a peer's length as soon as it announces one (JS `eagerUpgrade`, default true).
    pub eager_upgrade: bool,
    /// Follow peers onto higher forks (JS `allowFork`, default true).
    pub allow_fork: bool,
    /// Disconnect a peer on its first proof that does not verify, instead of only pausing it.
    pub disconnect_on_invalid_data: bool,
    /// Accept blocks peers push without being asked (JS `allowPush`, default false): our `sync`
    /// carries the `allowPush` flag while we are downloading ([`Options::downloading`]), and a
    /// `data` with request id 0 is verified and stored like an answer (consecutive ones in one
    /// write, [`Replicator::handle_messages`]). A proof that is malformed for our
    /// tree (JS `INVALID_OPERATION`) no longer pauses its peer; one that fails its hashes or
    /// signature still does until the peer answers the fork check (as in JS). See
    /// [`Replicator::set_allow_push`] and, for the sending side, [`Replicator::push`].
    pub allow_push: bool,
    /// Send no requests at all (JS `pushOnly`): no upgrades, blocks, hashes, seeks or fork
    /// proofs; the core grows only through what peers push (with [`Options::allow_push`]).
    /// `want`s, fork checks after bad data and, as in JS, the manifest request to a peer with an
    /// empty core are still sent. See [`Replicator::set_push_only`].
    pub push_only: bool,
    /// Push what we hold to peers that accept pushes, without being asked (default false): every
    /// block [`Replicator::append`] adds is [pushed](Replicator::push), and a peer whose `sync`
    /// shows it accepting pushes but behind us gets the newest blocks it lacks (at most
    /// [`PUSH_CATCH_UP`]), so a push-only reader that connects while we append misses nothing.
    /// JS has no such switch (its apps call `replicator.push`); the wire is the same.
    pub push: bool,
    /// Whether this core is downloading (JS: a session of the core is active; default true):
    /// our `sync` says `downloading` while it is, or while requests of ours are in flight (JS
    /// `isDownloading`), and carries `allowPush` only while it is (JS `isAllowingPush`), so
    /// peers push only to a core someone reads. A seeder that only serves sets it false (the
    /// CLI's `core serve` does). See [`Replicator::set_downloading`].
    pub downloading: bool,
    /// Milliseconds a core keeps saying it downloads after [`Replicator::set_downloading`]
    /// turned it off (JS `notDownloadingLinger`, 20-40 s at random there); `allowPush` is
    /// dropped at once. 0: at once.
    pub not_downloading_linger: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_inflight: 48,
            inflight_bytes: 8 * 1024 * 1024,
            request_timeout: 30_000,
            eager_upgrade: true,
            allow_fork: true,
            disconnect_on_invalid_data: false,
            allow_push: false,
            push_only: false,
            push: false,
            downloading: true,
            not_downloading_linger: 30_000,
        }
    }
}

/// The replication engine of one core (see the [module docs](self)).
#[derive(Debug)]
pub struct Replicator<S: Storage> {
    core: Hypercore<S>,
    opts: Options,
    peers: BTreeMap<PeerId, Peer>,
    next_peer: u64,
    inflight: BTreeMap<u64, Inflight>,
    free_ids: BTreeSet<u64>,
    next_id: u64,
    /// Block → ids of the requests for it in flight (several when hotswapped).
    inflight_blocks: BTreeMap<u64, Vec<u64>>,
    seeks: BTreeMap<SeekId, PendingSeek>,
    next_seek: u64,
    tree_hashes: BTreeMap<TreeHashId, PendingTreeHash>,
    next_tree_hash: u64,
    upgrade_inflight: Option<u64>,
    reorg_inflight: Option<u64>,
    downloads: BTreeMap<DownloadId, (u64, Option<u64>)>,
    next_download: u64,
    extensions: BTreeSet<String>,
    delayed: Vec<(u64, PeerId, Message)>,
    transmits: VecDeque<(PeerId, Message)>,
    events: VecDeque<Event>,
    last_length: u64,
    last_fork: u64,
    frozen: bool,
    pending_reorg: Option<PendingReorg>,
    /// When a [`Replicator::set_downloading`]`(false)` takes effect (JS `_notDownloadingTimer`).
    not_downloading_at: Option<u64>,
}

impl<S: Storage> Replicator<S> {
    /// Requests in flight per peer: [`Options::max_inflight`], raised for small blocks to
    /// about [`Options::inflight_bytes`] (at most [`MAX_INFLIGHT`]).
    fn max_inflight(&self) -> usize {
        let base = self.opts.max_inflight;
        let len = self.core.length();
        if self.opts.inflight_bytes == 0 || len == 0 {
            return base;
        }
        let avg = (self.core.byte_length() / len).max(1);
        let by_bytes = usize::try_from(self.opts.inflight_bytes / avg).unwrap_or(usize::MAX);
        base.max(by_bytes.min(MAX_INFLIGHT))
    }

    /// A replicator for `core`.
    pub fn new(core: Hypercore<S>, opts: Options) -> Self {
        let (last_length, last_fork) = (core.length(), core.fork());
        // A core that detected a conflict before (stored with it) stays frozen.
        let frozen = core.conflict().is_some();
        Replicator {
            core,
            opts,
            peers: BTreeMap::new(),
            next_peer: 1,
            inflight: BTreeMap::new(),
            free_ids: BTreeSet::new(),
            next_id: 1,
            inflight_blocks: BTreeMap::new(),
            seeks: BTreeMap::new(),
            next_seek: 1,
            tree_hashes: BTreeMap::new(),
            next_tree_hash: 1,
            upgrade_inflight: None,
            reorg_inflight: None,
            downloads: BTreeMap::new(),
            next_download: 1,
            extensions: BTreeSet::new(),
            delayed: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            last_length,
            last_fork,
            frozen,
            pending_reorg: None,
            not_downloading_at: None,
        }
    }

    /// The core.
    pub fn core(&self) -> &Hypercore<S> {
        &self.core
    }

    /// The core, to mutate directly; call [`Replicator::notify_local_change`] afterwards so peers
    /// learn about appends and truncations (or use [`Replicator::append`] /
    /// [`Replicator::truncate`]).
    pub fn core_mut(&mut self) -> &mut Hypercore<S> {
        &mut self.core
    }

    /// Give the core back.
    pub fn into_core(self) -> Hypercore<S> {
        self.core
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The live peers.
    pub fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys().copied()
    }

    /// What we know about `peer`.
    pub fn peer_info(&self, peer: PeerId) -> Option<PeerInfo> {
        self.peers.get(&peer).map(|p| PeerInfo {
            synced: p.synced,
            remote_fork: p.remote_fork,
            remote_length: p.remote_length,
            remote_contiguous_length: p.remote_contig,
            remote_can_upgrade: p.remote_can_upgrade,
            can_upgrade: p.can_upgrade,
            inflight: p.inflight,
            paused: p.paused,
            invalid_requests: p.invalid_requests,
            invalid_data: p.invalid_data,
            remote_allow_push: p.remote_allow_push,
            remote_downloading: p.remote_downloading,
            pushed_length: p.pushed_length,
        })
    }

    /// A conflict was detected ([`Event::Conflict`]), now or before the core was reopened
    /// ([`Hypercore::conflict`]): nothing is requested, answered or accepted any more.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Requests in flight, over all peers.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Next message to send, and to which peer.
    pub fn poll_transmit(&mut self) -> Option<(PeerId, Message)> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Replicator::handle_timeout`] wants to run next (request timeouts, delayed answers,
    /// the end of the not-downloading linger).
    pub fn poll_timeout(&self) -> Option<u64> {
        let a = self.inflight.values().map(|r| r.deadline).min();
        let b = self.delayed.iter().map(|d| d.0).min();
        [a, b, self.not_downloading_at].into_iter().flatten().min()
    }
}
