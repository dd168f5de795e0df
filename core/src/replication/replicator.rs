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
//! * **push mode** (JS `allowPush` / `push`): [`Replicator::push`] sends a block nobody asked
//!   for (`data` with request id 0) to every peer whose `sync` set `allowPush` and `downloading`
//!   and that lacks it, with the proof from the length the peer has (or our upgrades already
//!   brought it to, JS `pushedLength`) plus an upgrade to our length when the block lies past
//!   that, and the manifest to an empty peer. An upgrade request from such a peer that starts
//!   below what we pushed is answered from where our pushed upgrades ended (JS moves its start;
//!   for a plain upgrade request we also do when it asked for less, where JS's answer fails to
//!   verify for the peer), so the upgrades it gets chain.
//!   With [`Options::allow_push`] our `sync` sets `allowPush` and pushed `data` on our fork is
//!   verified and stored like an answer ([`Event::Block`], [`Event::Upgraded`]); any `data`
//!   is accepted whatever request it names (JS `_matchingRequest`). An upgrade starting below
//!   our length is verified from our roots at its start. A pushed proof that does not fit our
//!   tree is reported ([`Event::InvalidData`]) without pausing the peer; one that fails its
//!   hashes pauses it until it answers the fork check, as in JS. [`Options::push_only`] stops
//!   every request but the manifest request and fork checks (JS `pushOnly`).
//! * **timeouts**: a request unanswered for [`Options::request_timeout`] ms is cancelled (`cancel`)
//!   and its block rescheduled. Request ids start at 1 (0 is the unsolicited/conflict id) and are
//!   reused only after their answer arrived.
//!
//! Not implemented (JS features with no wire-compat impact): freezing a conflicting core in
//! storage (JS marks the header `frozen`; here only the replicator is
//! frozen), the `downloading` state (our `sync` always says we download, so its `allowPush`
//! follows [`Options::allow_push`] alone; JS clears both when no session is active), request
//! priorities, and `SMALL_WANTS` (4096-block `want` batches and `any` wants: we
//! send 2^21-block wants, and honour both kinds from peers). Seek requests carry the `seek` only
//! to peers whose handshake set `seeks` ([`Replicator::set_remote_seeks`]; the hub tells it).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::crypto::Hash;
use crate::encoding::{DecodeError, Encode};
use crate::hypercore::messages::{
    Bitfield as WireBitfield, Cancel, Data, DataUpgrade, Extension, Message, NoData, Range,
    Request, RequestBlock, RequestSeek, RequestUpgrade, Sync, TreeNode, Want,
    NO_DATA_INVALID_REQUEST, NO_DATA_NOT_AVAILABLE,
};
use crate::hypercore::{flat_tree, proof, tree};
use crate::hypercore::{
    AppendOutcome, ApplyOutcome, Hypercore, HypercoreError, MerkleTree, ProofError, ProofRequest,
    SeekResult, VerifiedProof,
};
use crate::protomux::{ChannelError, MuxError};
use crate::storage::Storage;

use super::remote_bitfield::{RemoteBitfield, RemoteWants};

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
    /// For cores of small blocks, more requests are kept in flight per peer than
    /// [`Options::max_inflight`]: as many as make about this many bytes of blocks (from the
    /// core's average block size), up to [`MAX_INFLIGHT`]. A reader verifies and stores what
    /// one read of the connection brings before it asks again, so with fewer bytes in flight
    /// than a read or two, reader and writer take turns instead of working at once (25k x 4 KiB
    /// in one process on two cores: ~1.2x faster than with 48 requests at 1 MiB, another ~5%
    /// at the default 2 MiB, which is [`MAX_INFLIGHT`] 4 KiB blocks). 0 turns this off.
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
    /// carries the `allowPush` flag (we always say we are downloading), and a `data` with
    /// request id 0 is verified and stored like an answer. A proof that is malformed for our
    /// tree (JS `INVALID_OPERATION`) no longer pauses its peer; one that fails its hashes or
    /// signature still does until the peer answers the fork check (as in JS). See
    /// [`Replicator::set_allow_push`] and, for the sending side, [`Replicator::push`].
    pub allow_push: bool,
    /// Send no requests at all (JS `pushOnly`): no upgrades, blocks, hashes, seeks or fork
    /// proofs; the core grows only through what peers push (with [`Options::allow_push`]).
    /// `want`s, fork checks after bad data and, as in JS, the manifest request to a peer with an
    /// empty core are still sent. See [`Replicator::set_push_only`].
    pub push_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_inflight: 48,
            inflight_bytes: 2 * 1024 * 1024,
            request_timeout: 30_000,
            eager_upgrade: true,
            allow_fork: true,
            disconnect_on_invalid_data: false,
            allow_push: false,
            push_only: false,
        }
    }
}

/// Why replication failed or a peer must go.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReplicationError {
    /// The local core failed (storage): not the peer's fault.
    #[error("local core: {0}")]
    Core(#[from] HypercoreError),
    /// The peer handle is unknown (never added, or removed).
    #[error("unknown peer {0:?}")]
    UnknownPeer(PeerId),
    /// The peer sent [`MAX_INVALID_REQUESTS`] requests that could not be answered.
    #[error("peer sent {0} invalid requests")]
    TooManyInvalidRequests(u64),
    /// The peer sent a proof that does not verify (with [`Options::disconnect_on_invalid_data`]).
    #[error("peer sent invalid data: {0}")]
    InvalidData(HypercoreError),
    /// The remote's channel handshake carried the wrong replication capability.
    #[error("remote sent an invalid replication capability")]
    InvalidCapability,
    /// A message of the channel does not decode.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// The stream's protomux failed (protocol violation by the remote).
    #[error("protomux: {0}")]
    Mux(#[from] MuxError),
    /// A channel operation was refused.
    #[error("channel: {0}")]
    Channel(#[from] ChannelError),
    /// Two validly signed trees of this core diverge at `length` (a forked writer): the core is
    /// frozen and every peer let go ([`Event::Conflict`]).
    #[error("conflicting signed trees at length {length}")]
    Conflict {
        /// The length at which the trees diverge.
        length: u64,
    },
    /// The stream handle is unknown.
    #[error("unknown stream")]
    UnknownStream,
    /// No core with this discovery key is replicated.
    #[error("unknown core")]
    UnknownCore,
    /// The peer kept more than [`MAX_DEFERRED`] requests and `want`s waiting for answers while
    /// it did not read ours.
    #[error("peer has more than {MAX_DEFERRED} requests waiting while it does not read")]
    TooManyDeferred,
}

/// What happened, for the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The core grew to `length` through a verified upgrade from a peer.
    Upgraded {
        /// New length.
        length: u64,
        /// Fork.
        fork: u64,
    },
    /// The core moved to a peer's higher fork (a reorg); blocks past the shared prefix are gone.
    Reorg {
        /// New fork.
        fork: u64,
        /// New length.
        length: u64,
    },
    /// Block `index` was downloaded from `peer`, verified and stored.
    Block {
        /// Block index.
        index: u64,
        /// Where it came from.
        peer: PeerId,
    },
    /// A [`Replicator::seek`] resolved: user byte `bytes` is byte `offset` of block `index`
    /// (`index` is the length and `offset` 0 when `bytes` is the byte length).
    Seek {
        /// The seek.
        id: SeekId,
        /// Block index.
        index: u64,
        /// Offset inside the block.
        offset: u64,
    },
    /// A [`Replicator::tree_hash`] resolved: the tree hash (root of roots) of the core's first
    /// `length` blocks on the current fork.
    TreeHash {
        /// The request.
        id: TreeHashId,
        /// The length asked for.
        length: u64,
        /// BLAKE2b tree hash of the roots at `length`.
        hash: Hash,
    },
    /// Every block of a bounded [`Replicator::download`] range is held locally.
    Downloaded {
        /// The range.
        id: DownloadId,
    },
    /// A peer announced its state (a `sync`).
    PeerSync {
        /// The peer.
        peer: PeerId,
        /// Its fork.
        fork: u64,
        /// Its length.
        length: u64,
    },
    /// A message of a registered extension.
    Extension {
        /// From.
        peer: PeerId,
        /// Extension name.
        name: String,
        /// Payload.
        message: Vec<u8>,
    },
    /// `peer` proved a signed tree that diverges from ours at `length` (JS `conflict`): two valid
    /// signatures exist for different trees. The replicator is now frozen ([`Replicator::is_frozen`]):
    /// it sent every peer its own proof of that length (so they detect the conflict too) and let
    /// them all go with [`Event::Disconnect`] ([`ReplicationError::Conflict`]; close their
    /// channels, not whole streams). The owner should stop using the core.
    Conflict {
        /// The peer whose proof revealed it.
        peer: PeerId,
        /// The length at which the trees diverge.
        length: u64,
    },
    /// A peer's proof did not verify: the peer is paused (JS `verification-error`).
    InvalidData {
        /// The peer.
        peer: PeerId,
        /// What failed.
        error: HypercoreError,
    },
    /// A peer's request could not be answered (JS `invalid-request`).
    InvalidRequest {
        /// The peer.
        peer: PeerId,
        /// What failed.
        error: HypercoreError,
    },
    /// The peer was removed for misbehaving; the owner should close its channel / stream.
    Disconnect {
        /// The peer (already removed).
        peer: PeerId,
        /// Why.
        error: ReplicationError,
    },
}

/// A snapshot of what we know about a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer has sent a `sync`.
    pub synced: bool,
    /// Its fork.
    pub remote_fork: u64,
    /// Its length.
    pub remote_length: u64,
    /// It holds blocks `0..remote_contiguous_length`.
    pub remote_contiguous_length: u64,
    /// It says it can prove an upgrade from our length.
    pub remote_can_upgrade: bool,
    /// We told it we can prove an upgrade from its length.
    pub can_upgrade: bool,
    /// Our requests in flight to it.
    pub inflight: usize,
    /// No longer used for requests (bad data or too many `noData`).
    pub paused: bool,
    /// Invalid requests it sent.
    pub invalid_requests: u64,
    /// Invalid proofs it sent.
    pub invalid_data: u64,
    /// Its last `sync` set `allowPush`: it accepts [`Replicator::push`]es.
    pub remote_allow_push: bool,
    /// Its last `sync` set `downloading` (assumed until it says otherwise).
    pub remote_downloading: bool,
    /// The length our upgrade proofs (answers and pushes) brought it to on this fork.
    pub pushed_length: u64,
}

#[derive(Debug)]
struct Peer {
    /// Bytes of answers we may still queue for it (see [`Replicator::set_window`]).
    window: usize,
    /// Its requests and `want`s waiting for window, oldest first.
    deferred: VecDeque<Message>,
    synced: bool,
    remote_fork: u64,
    remote_length: u64,
    remote_can_upgrade: bool,
    remote_has_manifest: bool,
    remote_allow_push: bool,
    remote_downloading: bool,
    /// The length our upgrade proofs brought it to (JS `pushedLength`).
    pushed_length: u64,
    /// Its channel handshake did not set `seeks`.
    no_seeks: bool,
    /// We asked it for the manifest alone.
    manifest_asked: bool,
    length_acked: u64,
    can_upgrade: bool,
    last_upgradable: Option<(u64, u64)>,
    remote_contig: u64,
    remote_bitfield: RemoteBitfield,
    remote_wants: RemoteWants,
    wants_sent: BTreeSet<u64>,
    inflight: usize,
    paused: bool,
    invalid_requests: u64,
    invalid_data: u64,
    backoffs: u64,
    timeouts: u64,
    fully_signaled: u64,
    last_ext_sent: Option<String>,
    last_ext_recv: Option<String>,
}

impl Default for Peer {
    fn default() -> Self {
        Peer {
            window: usize::MAX,
            deferred: VecDeque::new(),
            synced: false,
            remote_fork: 0,
            remote_length: 0,
            remote_can_upgrade: false,
            remote_has_manifest: false,
            remote_allow_push: false,
            remote_downloading: true,
            pushed_length: 0,
            no_seeks: false,
            manifest_asked: false,
            length_acked: 0,
            can_upgrade: false,
            last_upgradable: None,
            remote_contig: 0,
            remote_bitfield: RemoteBitfield::default(),
            remote_wants: RemoteWants::default(),
            wants_sent: BTreeSet::new(),
            inflight: 0,
            paused: false,
            invalid_requests: 0,
            invalid_data: 0,
            backoffs: 0,
            timeouts: 0,
            fully_signaled: 0,
            last_ext_sent: None,
            last_ext_recv: None,
        }
    }
}

impl Peer {
    fn has_block(&self, index: u64) -> bool {
        index < self.remote_contig || self.remote_bitfield.get(index)
    }
}

/// Where a pending seek stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeekTarget {
    /// The byte lies past our length: it needs an upgrade (carrying the seek).
    Grow,
    /// The byte lies in blocks `start..end` whose tree nodes we lack: a hash request for one of
    /// them, with the seek, brings the nodes.
    Nodes { start: u64, end: u64 },
}

#[derive(Debug, Clone, Copy)]
struct PendingSeek {
    bytes: u64,
    target: SeekTarget,
    request: Option<u64>,
}

/// A verified reorg proof whose divergence point is being narrowed down with `hash` requests on
/// the new fork (JS `ReorgBatch`).
#[derive(Debug)]
struct PendingReorg {
    /// The peer whose proof started it.
    peer: PeerId,
    fork: u64,
    verified: VerifiedProof,
    /// The highest node of the new tree known to differ from ours (verified).
    diff: TreeNode,
    /// Blocks under `diff` that we hold, and the levels from one of them up to `diff`.
    want: (u64, u64, u64),
    request: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct PendingTreeHash {
    length: u64,
    /// The first root of `length` we lack (`None`: `length` is past our length).
    missing: Option<u64>,
    request: Option<u64>,
}

#[derive(Debug, Clone)]
struct Inflight {
    peer: PeerId,
    req: Request,
    deadline: u64,
}

/// JS `backoff(times)`: how long to wait before answering the `times`-th invalid request.
fn backoff(times: u64) -> u64 {
    match times {
        0..2 => 200,
        2..5 => 500,
        5..40 => 1000,
        _ => 5000,
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
            frozen: false,
            pending_reorg: None,
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

    /// A conflict was detected ([`Event::Conflict`]): nothing is requested, answered or accepted
    /// any more.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Requests in flight, over all peers.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    // ------------------------------------------------------------------ outputs

    /// Next message to send, and to which peer.
    pub fn poll_transmit(&mut self) -> Option<(PeerId, Message)> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Replicator::handle_timeout`] wants to run next (request timeouts, delayed answers).
    pub fn poll_timeout(&self) -> Option<u64> {
        let a = self.inflight.values().map(|r| r.deadline).min();
        let b = self.delayed.iter().map(|d| d.0).min();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

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
        self.update(now).await
    }

    // ------------------------------------------------------------------ peers

    /// A peer's channel opened (capability checked): sends our `sync` and, if we hold a contiguous
    /// prefix, `range{0, contiguous}`.
    pub fn add_peer(&mut self) -> PeerId {
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        self.peers.insert(id, Peer::default());
        if self.frozen {
            return id;
        }
        self.send_sync(id);
        let contig = self.core.contiguous_length().min(self.core.length());
        if contig > 0 {
            self.broadcast_range(id, 0, contig, false);
        }
        id
    }

    /// Record the `seeks` flag of the peer's channel handshake (assumed set until told
    /// otherwise; every JS peer sets it). Seek requests to a peer without it carry no `seek`.
    pub fn set_remote_seeks(&mut self, peer: PeerId, seeks: bool) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.no_seeks = !seeks;
        }
    }

    /// The peer's channel closed: forget it and move its requests to other peers.
    pub async fn remove_peer(&mut self, now: u64, peer: PeerId) -> Result<(), ReplicationError> {
        self.drop_peer(peer);
        self.update(now).await
    }

    /// Set how many bytes of answers (to its requests and `want`s) we may still queue for
    /// `peer`: the owner's send buffer room for the peer's stream (unlimited until set; 0: the
    /// stream is congested). Answers use the window up; while it is used up, requests and
    /// `want`s wait, in order (JS holds them until the protomux stream drains), at most
    /// [`MAX_DEFERRED`] of them: a peer that keeps more waiting while it does not read our
    /// answers is disconnected ([`ReplicationError::TooManyDeferred`]). Waiting ones are
    /// answered here as far as the new window reaches. Other messages are always handled.
    pub async fn set_window(
        &mut self,
        now: u64,
        peer: PeerId,
        window: usize,
    ) -> Result<(), ReplicationError> {
        let Some(p) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        p.window = window;
        if self.frozen {
            p.deferred.clear();
        }
        while let Some(msg) = self
            .peers
            .get_mut(&peer)
            .filter(|p| p.window > 0)
            .and_then(|p| p.deferred.pop_front())
        {
            self.answer(now, peer, msg).await?;
        }
        Ok(())
    }

    /// Requests and `want`s of `peer` waiting for window ([`Replicator::set_window`]).
    pub fn deferred(&self, peer: PeerId) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.deferred.len())
    }

    /// Answer a request or `want` of `peer` and take the answers' size off its window.
    async fn answer(
        &mut self,
        now: u64,
        peer: PeerId,
        msg: Message,
    ) -> Result<(), ReplicationError> {
        let before = self.transmits.len();
        match msg {
            Message::Request(m) => self.on_request(now, peer, m).await?,
            Message::Want(w) => self.on_want(peer, w),
            _ => {}
        }
        let used: usize = self
            .transmits
            .iter()
            .skip(before)
            .filter(|t| t.0 == peer)
            .map(|t| t.1.encoded_len())
            .sum();
        if let Some(p) = self.peers.get_mut(&peer) {
            p.window = p.window.saturating_sub(used);
        }
        Ok(())
    }

    /// Answer a request or `want` of `peer` now if its window allows and none waits before
    /// it, else queue it.
    async fn answer_or_defer(
        &mut self,
        now: u64,
        peer: PeerId,
        msg: Message,
    ) -> Result<(), ReplicationError> {
        let Some(p) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        if p.window > 0 && p.deferred.is_empty() {
            return self.answer(now, peer, msg).await;
        }
        if p.deferred.len() >= MAX_DEFERRED {
            self.disconnect(peer, ReplicationError::TooManyDeferred);
            return Ok(());
        }
        p.deferred.push_back(msg);
        Ok(())
    }

    /// Forget a peer without rescheduling its requests yet (they move to other peers on the next
    /// message or timeout). For owners that cannot await, e.g. when a whole stream dies.
    pub fn forget_peer(&mut self, peer: PeerId) {
        self.drop_peer(peer);
    }

    fn drop_peer(&mut self, peer: PeerId) {
        self.release_peer(peer);
        self.transmits.retain(|t| t.0 != peer);
    }

    /// Forget a peer but still send what is queued for it.
    fn release_peer(&mut self, peer: PeerId) {
        if self.peers.remove(&peer).is_none() {
            return;
        }
        let ids: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, r)| r.peer == peer)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.finish_request(id, false);
        }
        self.delayed.retain(|d| d.1 != peer);
    }

    fn disconnect(&mut self, peer: PeerId, error: ReplicationError) {
        self.drop_peer(peer);
        self.events.push_back(Event::Disconnect { peer, error });
    }

    // ------------------------------------------------------------------ local API

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

    /// Find the block holding user byte `bytes` (padding excluded), like JS `core.seek`. Resolved
    /// from the local tree when its nodes are stored ([`Event::Seek`] at once); otherwise a peer
    /// is asked: past our length with an upgrade request carrying the seek, inside it with a
    /// `hash` request (plus the seek) for a block of the subtree whose nodes we lack. Each verified
    /// answer stores nodes and the seek is retried until [`Event::Seek`] reports the result. A
    /// seek past every peer's length waits for the core to grow.
    pub async fn seek(&mut self, now: u64, bytes: u64) -> Result<SeekId, ReplicationError> {
        let id = SeekId(self.next_seek);
        self.next_seek += 1;
        self.seeks.insert(
            id,
            PendingSeek {
                bytes,
                target: SeekTarget::Grow,
                request: None,
            },
        );
        self.check_seeks().await?;
        self.update(now).await?;
        Ok(id)
    }

    /// Stop a pending seek (a request already sent for it is left to finish).
    pub fn cancel_seek(&mut self, id: SeekId) {
        self.seeks.remove(&id);
    }

    /// The tree hash of the first `length` blocks (what a signature at `length` signs), without
    /// downloading blocks: from the stored roots of `length` when we have them
    /// ([`Event::TreeHash`] at once), else each missing root is fetched with a `hash` request to
    /// a peer holding its blocks and verified against our tree. A `length` past ours waits for the
    /// core to grow.
    pub async fn tree_hash(
        &mut self,
        now: u64,
        length: u64,
    ) -> Result<TreeHashId, ReplicationError> {
        let id = TreeHashId(self.next_tree_hash);
        self.next_tree_hash += 1;
        self.tree_hashes.insert(
            id,
            PendingTreeHash {
                length,
                missing: None,
                request: None,
            },
        );
        self.check_seeks().await?;
        self.update(now).await?;
        Ok(id)
    }

    /// Stop a pending [`Replicator::tree_hash`].
    pub fn cancel_tree_hash(&mut self, id: TreeHashId) {
        self.tree_hashes.remove(&id);
    }

    /// Register an extension: its messages from peers are reported as [`Event::Extension`].
    pub fn register_extension(&mut self, name: impl Into<String>) {
        self.extensions.insert(name.into());
    }

    /// Send an extension message to one peer.
    pub fn send_extension(
        &mut self,
        peer: PeerId,
        name: &str,
        message: &[u8],
    ) -> Result<(), ReplicationError> {
        let p = self
            .peers
            .get_mut(&peer)
            .ok_or(ReplicationError::UnknownPeer(peer))?;
        let wire_name = if p.last_ext_sent.as_deref() == Some(name) {
            String::new()
        } else {
            name.to_owned()
        };
        p.last_ext_sent = Some(name.to_owned());
        self.transmits.push_back((
            peer,
            Message::Extension(Extension {
                name: wire_name,
                message: message.to_vec(),
            }),
        ));
        Ok(())
    }

    /// Send an extension message to every peer.
    pub fn broadcast_extension(&mut self, name: &str, message: &[u8]) {
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for p in peers {
            // Every listed peer exists.
            let _ = self.send_extension(p, name, message);
        }
    }

    /// Accept pushed blocks or not ([`Options::allow_push`]); peers learn it from a new `sync`
    /// (JS `setAllowPush`).
    pub fn set_allow_push(&mut self, allow_push: bool) {
        if allow_push == self.opts.allow_push {
            return;
        }
        self.opts.allow_push = allow_push;
        if self.frozen {
            return;
        }
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for p in peers {
            self.send_sync(p);
        }
    }

    /// Send no requests ([`Options::push_only`], JS `setPushOnly`). Requests in flight are left
    /// to finish; when turned off, whatever is wanted is requested at once.
    pub async fn set_push_only(
        &mut self,
        now: u64,
        push_only: bool,
    ) -> Result<(), ReplicationError> {
        if push_only == self.opts.push_only {
            return Ok(());
        }
        self.opts.push_only = push_only;
        self.update(now).await
    }

    /// Push block `index` to every peer that accepts pushes (JS `replicator.push`): to each
    /// peer whose last `sync` set `allowPush` and `downloading`, is on our fork and does not
    /// advertise the block, send an unrequested `data` (request id 0) with the block and its
    /// proof. Its proof reaches up to the roots of the longest of the peer's length and the
    /// length our earlier proofs brought it to ([`PeerInfo::pushed_length`]); from there, when
    /// `index` lies past it, the `data` also carries an upgrade to our length (and the manifest
    /// when the peer's core is empty and no upgrade of ours went to it yet). An upgrade request
    /// from such a peer that starts below what we pushed is answered from where our pushes
    /// ended (JS `_handleRequest`); a plain upgrade request that asked for less gets the rest of
    /// our tree from there, or no upgrade when our pushes reached our length: each upgrade it
    /// gets starts where the previous one ended.
    ///
    /// Returns how many peers it was sent to: none when we do not hold the block (or the core
    /// is frozen). Paused peers get nothing (as for requests). The `data` uses up the peer's
    /// window ([`Replicator::set_window`]) but is not held back by it.
    pub async fn push(&mut self, index: u64) -> Result<usize, ReplicationError> {
        let (len, fork) = (self.core.length(), self.core.fork());
        if self.frozen || index >= len || !self.core.has(index) {
            return Ok(0);
        }
        let targets: Vec<(PeerId, u64, bool)> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.synced
                    && p.remote_allow_push
                    && p.remote_downloading
                    && !p.paused
                    && p.remote_fork == fork
                    && !p.has_block(index)
            })
            .map(|(&id, p)| {
                // JS sends the manifest while the peer says it is empty; once an upgrade of
                // ours (which carried it) is on its way, it has it.
                let from = p.remote_length.max(p.pushed_length);
                (id, from, from == 0)
            })
            .collect();
        let mut sent = 0;
        for (peer, remote_length, manifest) in targets {
            let req = ProofRequest {
                block: Some(RequestBlock {
                    index,
                    nodes: MerkleTree::max_missing_nodes(2 * index, remote_length),
                }),
                upgrade: (index >= remote_length).then(|| RequestUpgrade {
                    start: remote_length,
                    length: len - remote_length,
                }),
                ..ProofRequest::default()
            };
            let mut data = match self.core.proof(&req).await {
                Ok(data) => data,
                Err(HypercoreError::Storage(e)) => return Err(HypercoreError::Storage(e).into()),
                // Nothing provable from the length it claims (longer than ours, say).
                Err(_) => continue,
            };
            data.request = 0;
            data.fork = fork;
            if manifest && !self.core.is_compat() {
                data.manifest = self.core.manifest().cloned();
            }
            self.note_upgrade_sent(peer, &data);
            let msg = Message::Data(Box::new(data));
            if let Some(p) = self.peers.get_mut(&peer) {
                p.window = p.window.saturating_sub(msg.encoded_len());
            }
            self.transmits.push_back((peer, msg));
            sent += 1;
        }
        Ok(sent)
    }

    /// JS `_fulfillRequest`: an upgrade proof sent to `peer` brings it to its length.
    fn note_upgrade_sent(&mut self, peer: PeerId, data: &Data) {
        if let (Some(up), Some(p)) = (&data.upgrade, self.peers.get_mut(&peer)) {
            p.pushed_length = p.pushed_length.max(upgrade_length(up));
        }
    }

    /// Append to a writable core and tell the peers (sync + range).
    pub async fn append(
        &mut self,
        now: u64,
        blocks: &[&[u8]],
    ) -> Result<AppendOutcome, ReplicationError> {
        let out = self.core.append(blocks).await?;
        self.notify_local_change(now).await?;
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

    // ------------------------------------------------------------------ input

    /// A decoded message from `peer`. Errors are local failures only (storage); whatever the peer
    /// sends is handled (ignored, answered with `noData`, or punished through events).
    pub async fn handle_message(
        &mut self,
        now: u64,
        peer: PeerId,
        msg: Message,
    ) -> Result<(), ReplicationError> {
        if !self.peers.contains_key(&peer) {
            return Err(ReplicationError::UnknownPeer(peer));
        }
        if self.frozen {
            return Ok(());
        }
        self.dispatch(now, peer, msg).await?;
        self.update(now).await
    }

    /// Decoded messages from `peer`, in order, with the effect of one
    /// [`Replicator::handle_message`] call each, but the blocks of consecutive answers to our
    /// requests are verified and stored together, in one storage write
    /// ([`Hypercore::apply_proofs`]): each [`Event::Block`] still comes only once its block is
    /// stored, and a proof that does not verify is punished alone, as it would be on its own.
    /// Messages after the peer was disconnected (or the core frozen) are dropped.
    pub async fn handle_messages(
        &mut self,
        now: u64,
        peer: PeerId,
        msgs: impl IntoIterator<Item = Message>,
    ) -> Result<(), ReplicationError> {
        if !self.peers.contains_key(&peer) {
            return Err(ReplicationError::UnknownPeer(peer));
        }
        let mut group: Vec<Data> = Vec::new();
        for msg in msgs {
            if self.frozen || !self.peers.contains_key(&peer) {
                break;
            }
            match msg {
                Message::Data(d) if self.joins_group(peer, &d, &group) => {
                    self.finish_request(d.request, true);
                    group.push(*d);
                }
                msg => {
                    self.apply_group(peer, &mut group).await?;
                    if self.frozen || !self.peers.contains_key(&peer) {
                        break;
                    }
                    self.dispatch(now, peer, msg).await?;
                }
            }
        }
        self.apply_group(peer, &mut group).await?;
        if self.frozen {
            return Ok(());
        }
        self.update(now).await
    }

    /// Whether `data` from `peer` is a plain answer to one of our requests to it (at our fork,
    /// no upgrade, matching the request) whose block is not in `group` yet: what
    /// [`Replicator::on_data`] would verify and apply right away.
    fn joins_group(&self, peer: PeerId, data: &Data, group: &[Data]) -> bool {
        if data.request == 0 || !self.core.is_batchable(data) {
            return false;
        }
        let Some(r) = self.inflight.get(&data.request).filter(|r| r.peer == peer) else {
            return false;
        };
        let dup = data.block.as_ref().is_some_and(|b| {
            group
                .iter()
                .any(|g| g.block.as_ref().is_some_and(|x| x.index == b.index))
        });
        !dup && matching_request(Some(&r.req), data)
    }

    /// Verify and store the proofs of `group` (their requests are finished) in one write, then
    /// act on each outcome in order, as [`Replicator::on_data`] does for one.
    async fn apply_group(
        &mut self,
        peer: PeerId,
        group: &mut Vec<Data>,
    ) -> Result<(), ReplicationError> {
        if group.is_empty() {
            return Ok(());
        }
        let (old_len, old_fork) = (self.core.length(), self.core.fork());
        let proofs: Vec<&Data> = group.iter().collect();
        let results = self.core.apply_proofs(&proofs).await?;
        group.clear();
        for applied in results {
            self.after_apply(peer, applied, old_len, old_fork).await?;
        }
        Ok(())
    }

    /// Act on one message (no request update).
    async fn dispatch(
        &mut self,
        now: u64,
        peer: PeerId,
        msg: Message,
    ) -> Result<(), ReplicationError> {
        match msg {
            Message::Sync(m) => self.on_sync(peer, m).await?,
            Message::Request(m) => self.answer_or_defer(now, peer, Message::Request(m)).await?,
            Message::Cancel(Cancel { request }) => {
                self.delayed.retain(|d| {
                    !(d.1 == peer && matches!(&d.2, Message::NoData(n) if n.request == request))
                });
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.deferred
                        .retain(|m| !matches!(m, Message::Request(r) if r.id == request));
                }
            }
            Message::Data(d) => self.on_data(peer, *d).await?,
            Message::NoData(m) => self.on_no_data(peer, m),
            Message::Want(w) => self.answer_or_defer(now, peer, Message::Want(w)).await?,
            Message::Unwant(w) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.remote_wants.remove(w.start, w.length, w.any);
                }
            }
            Message::Bitfield(b) => self.on_bitfield(peer, b),
            Message::Range(r) => self.on_range(peer, r),
            Message::Extension(e) => self.on_extension(peer, e),
        }
        Ok(())
    }

    async fn on_sync(&mut self, peer: PeerId, m: Sync) -> Result<(), ReplicationError> {
        let (local_len, local_fork) = (self.core.length(), self.core.fork());
        let Some(p) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        let length_changed = m.length != p.remote_length;
        let same_fork = m.fork == local_fork;
        p.synced = true;
        if m.fork != p.remote_fork {
            // What we pushed was on the fork it left.
            p.pushed_length = 0;
        }
        p.remote_allow_push = m.allow_push;
        p.remote_downloading = m.downloading;
        p.remote_fork = m.fork;
        p.remote_length = m.length;
        p.remote_can_upgrade = m.can_upgrade;
        p.remote_has_manifest = m.has_manifest;
        p.length_acked = if same_fork { m.remote_length } else { 0 };
        let upgrade = if !length_changed || !same_fork {
            p.can_upgrade && same_fork
        } else {
            self.can_upgrade_to(m.length, m.fork).await
        };
        if let Some(p) = self.peers.get_mut(&peer) {
            p.can_upgrade = upgrade;
            if upgrade {
                p.last_upgradable = Some((m.fork, m.length));
            }
        }
        self.events.push_back(Event::PeerSync {
            peer,
            fork: m.fork,
            length: m.length,
        });
        if local_fork == m.fork && local_len > m.length {
            self.signal_upgrade(peer).await?;
        }
        Ok(())
    }

    async fn on_request(
        &mut self,
        now: u64,
        peer: PeerId,
        mut req: Request,
    ) -> Result<(), ReplicationError> {
        let paused = self.peers.get(&peer).is_none_or(|p| p.paused);
        if let (Some(up), Some(p)) = (req.upgrade, self.peers.get(&peer)) {
            // JS `_handleRequest`: a peer that accepts pushes may have our pushed upgrades in
            // flight; start this one where they end so the upgrades it gets stay contiguous.
            // Never for a fork check (id 0), which must prove the tree from 0.
            let (pushed, len) = (p.pushed_length, self.core.length());
            let upgrade_only = req.block.is_none() && req.hash.is_none() && req.seek.is_none();
            if p.remote_allow_push && req.id != 0 && pushed > up.start {
                let end = up.start.saturating_add(up.length);
                if pushed < end {
                    req.upgrade = Some(RequestUpgrade {
                        start: pushed,
                        length: end - pushed,
                    });
                } else if upgrade_only {
                    // JS leaves this one alone: its proof (from below what the peer has by
                    // then, up to our length) then fails to verify there. A plain upgrade
                    // request gets the rest of our tree, or nothing when our pushes reached it
                    // (a block, hash or seek part may need the upgrade it asked for).
                    req.upgrade = (pushed < len).then(|| RequestUpgrade {
                        start: pushed,
                        length: len - pushed,
                    });
                }
            }
            // JS also moves a start back to what it pushed: we leave those alone (the peer
            // holds our roots at its own length, not necessarily at what we pushed).
        }
        let has_block = req.block.is_none_or(|b| self.core.has(b.index));
        if req.fork != self.core.fork() || !has_block {
            self.not_available(peer, &req);
            return Ok(());
        }
        match self.core.proof(&ProofRequest::from(&req)).await {
            Ok(mut data) => {
                if paused && data.block.is_some() {
                    return Ok(());
                }
                data.request = req.id;
                data.fork = req.fork;
                if req.manifest && !self.core.is_compat() {
                    data.manifest = self.core.manifest().cloned();
                }
                self.note_upgrade_sent(peer, &data);
                self.transmits
                    .push_back((peer, Message::Data(Box::new(data))));
            }
            Err(HypercoreError::Storage(e)) => return Err(HypercoreError::Storage(e).into()),
            Err(HypercoreError::BlockNotAvailable(_)) => self.not_available(peer, &req),
            Err(error) => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return Ok(());
                };
                p.invalid_requests += 1;
                let n = p.invalid_requests;
                self.events.push_back(Event::InvalidRequest { peer, error });
                if n >= MAX_INVALID_REQUESTS {
                    self.disconnect(peer, ReplicationError::TooManyInvalidRequests(n));
                    return Ok(());
                }
                let answer = Message::NoData(NoData {
                    request: req.id,
                    reason: NO_DATA_INVALID_REQUEST,
                });
                self.delayed.push((now + backoff(n), peer, answer));
            }
        }
        Ok(())
    }

    fn not_available(&mut self, peer: PeerId, req: &Request) {
        let manifest = self.core.manifest().filter(|_| !self.core.is_compat());
        let msg = match manifest {
            Some(m) if req.manifest => Message::Data(Box::new(Data {
                request: req.id,
                fork: self.core.fork(),
                manifest: Some(m.clone()),
                ..Data::default()
            })),
            _ => Message::NoData(NoData {
                request: req.id,
                reason: NO_DATA_NOT_AVAILABLE,
            }),
        };
        self.transmits.push_back((peer, msg));
    }

    async fn on_data(&mut self, peer: PeerId, data: Data) -> Result<(), ReplicationError> {
        if data.request == 0 && data.upgrade.as_ref().is_some_and(|u| u.start == 0) {
            // A conflict proof is always looked at (JS `checkConflict`).
            match self.core.check_conflict(&data).await {
                Ok(true) => {
                    let length = data.upgrade.as_ref().map_or(0, |u| u.length);
                    return self.on_conflict(peer, length).await;
                }
                Ok(false) => {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.paused = false;
                    }
                }
                Err(HypercoreError::Storage(e)) => return Err(HypercoreError::Storage(e).into()),
                Err(_) => return Ok(()),
            }
        }
        let local_fork = self.core.fork();
        let req = if data.request > 0 {
            match self.inflight.get(&data.request) {
                Some(r) if r.peer == peer => Some(r.req),
                Some(_) => return Ok(()),
                None => None,
            }
        } else {
            None
        };
        let reorg = data.fork > local_fork;
        let pushed = req.is_none() && !reorg;
        if pushed && (!self.opts.allow_push || data.fork != local_fork) {
            // Unsolicited (or cancelled / timed-out) data is ignored unless pushes are allowed
            // (JS `_handleData`); a push on a fork we left cannot verify (JS `core.verify`).
            return Ok(());
        }
        if req.is_some() {
            self.finish_request(data.request, true);
        }
        if reorg {
            let from_peer = self
                .peers
                .get(&peer)
                .is_some_and(|p| p.remote_fork == data.fork);
            if !self.opts.allow_fork || !from_peer {
                return Ok(());
            }
            if data.upgrade.is_none() {
                if matching_request(req.as_ref(), &data) {
                    return self.on_reorg_hash(peer, &data).await;
                }
                return Ok(());
            }
            return match self.core.verify_proof(&data).await {
                Ok(verified) => self.start_reorg(peer, data.fork, verified).await,
                Err(HypercoreError::Storage(e)) => Err(HypercoreError::Storage(e).into()),
                Err(error) => {
                    self.invalid_data(peer, error);
                    Ok(())
                }
            };
        } else if !self.opts.allow_push && !matching_request(req.as_ref(), &data) {
            // JS `_matchingRequest` accepts any data in push mode.
            self.on_no_data_effects(peer, 0);
            return Ok(());
        }
        let held = data.block.as_ref().is_some_and(|b| self.core.has(b.index));
        if pushed && held && data.upgrade.is_none() {
            // A pushed block we already hold (it raced a request or another push).
            return Ok(());
        }
        let (old_len, old_fork) = (self.core.length(), self.core.fork());
        let mut applied = self.core.apply_proof(&data).await;
        if let (true, Ok(out)) = (pushed && held, applied.as_mut()) {
            // Only its upgrade was new: no block event, no range broadcast.
            out.block = None;
        }
        self.after_apply(peer, applied, old_len, old_fork).await
    }

    /// Report and propagate what applying a proof from `peer` did.
    async fn after_apply(
        &mut self,
        peer: PeerId,
        applied: Result<ApplyOutcome, HypercoreError>,
        old_len: u64,
        old_fork: u64,
    ) -> Result<(), ReplicationError> {
        match applied {
            Ok(out) => {
                let (len, fork) = (self.core.length(), self.core.fork());
                if fork != old_fork {
                    self.events.push_back(Event::Reorg { fork, length: len });
                } else if let Some(length) = out.upgraded_to.filter(|&l| l != old_len) {
                    self.events.push_back(Event::Upgraded { length, fork });
                }
                if let Some(index) = out.block {
                    self.events.push_back(Event::Block { index, peer });
                }
                if fork != old_fork || len != old_len {
                    self.after_upgrade(old_fork).await?;
                }
                if let Some(index) = out.block {
                    // Hotswapped duplicates of this block are no longer needed.
                    let others = self
                        .inflight_blocks
                        .get(&index)
                        .cloned()
                        .unwrap_or_default();
                    for id in others {
                        self.cancel_request(id);
                    }
                    let peers: Vec<PeerId> = self.peers.keys().copied().collect();
                    for p in peers {
                        self.broadcast_range(p, index, 1, false);
                    }
                }
                self.check_downloads();
                self.check_seeks().await?;
            }
            Err(HypercoreError::Storage(e)) => return Err(HypercoreError::Storage(e).into()),
            Err(error) => self.invalid_data(peer, error),
        }
        Ok(())
    }

    /// A verified reorg proof (a signed upgrade from 0 on a higher fork): its roots tell which
    /// prefix of ours it keeps; inside the first root that differs, `hash` requests on the new
    /// fork find the first differing block (JS `ReorgBatch`) before the reorg is applied.
    async fn start_reorg(
        &mut self,
        peer: PeerId,
        fork: u64,
        verified: VerifiedProof,
    ) -> Result<(), ReplicationError> {
        if self.pending_reorg.as_ref().is_some_and(|r| r.fork > fork) {
            return Ok(());
        }
        let old_len = self.core.length();
        let b = &verified.batch;
        let ancestors = b.ancestors;
        let diff = b
            .roots
            .iter()
            .find(|r| flat_tree::left_span(r.index) / 2 == ancestors)
            .copied();
        self.pending_reorg = None;
        match diff {
            Some(diff) if ancestors < old_len.min(b.length) => {
                let mut pending = PendingReorg {
                    peer,
                    fork,
                    verified,
                    diff,
                    want: (0, 0, 0),
                    request: None,
                };
                if narrow_reorg(&mut pending, diff, old_len) {
                    self.apply_reorg(peer, pending.verified).await
                } else {
                    self.pending_reorg = Some(pending);
                    Ok(())
                }
            }
            _ => self.apply_reorg(peer, verified).await,
        }
    }

    /// A `hash` proof on the new fork for the pending reorg: it must lead to the differing node;
    /// then descend along it (JS `ReorgBatch._update`).
    async fn on_reorg_hash(&mut self, peer: PeerId, data: &Data) -> Result<(), ReplicationError> {
        let Some(mut pending) = self
            .pending_reorg
            .take_if(|r| r.fork == data.fork && data.hash.is_some())
        else {
            return Ok(());
        };
        let mut nodes = Vec::new();
        let root = proof::verify_tree(data, &mut nodes);
        let root = match root {
            Ok(Some(r)) if r == pending.diff => r,
            Ok(Some(r)) if r.index != pending.diff.index => {
                // An answer about a node we no longer ask about.
                self.pending_reorg = Some(pending);
                return Ok(());
            }
            Ok(_) => {
                self.pending_reorg = Some(pending);
                let index = data.hash.as_ref().map_or(0, |h| h.index);
                self.invalid_data(peer, ProofError::InvalidChecksum(index).into());
                return Ok(());
            }
            Err(e) => {
                self.pending_reorg = Some(pending);
                self.invalid_data(peer, e.into());
                return Ok(());
            }
        };
        let by_index: BTreeMap<u64, TreeNode> = nodes.iter().map(|n| (n.index, *n)).collect();
        let mut diff = root;
        let mut ite = flat_tree::Iterator::new(root.index);
        while ite.index & 1 != 0 {
            let Some(&left) = by_index.get(&ite.left_child()) else {
                break;
            };
            let local = self.core.tree_node(left.index).await?;
            if local != Some(left) {
                diff = left;
            } else {
                match by_index.get(&ite.sibling()) {
                    Some(&right) => diff = right,
                    None => break,
                }
            }
        }
        pending.verified.batch.nodes.extend(nodes);
        let old_len = self.core.length();
        if narrow_reorg(&mut pending, diff, old_len) {
            self.apply_reorg(peer, pending.verified).await
        } else {
            self.pending_reorg = Some(pending);
            Ok(())
        }
    }

    async fn apply_reorg(
        &mut self,
        peer: PeerId,
        verified: VerifiedProof,
    ) -> Result<(), ReplicationError> {
        let (old_len, old_fork) = (self.core.length(), self.core.fork());
        let applied = self.core.apply_verified(verified, None).await;
        if let Err(HypercoreError::InvalidArgument(_)) = applied {
            // Our tree moved since the proof was verified: a new reorg proof will be asked for.
            return Ok(());
        }
        self.after_apply(peer, applied, old_len, old_fork).await
    }

    /// One `hash` request in flight for the pending reorg, to a peer on its fork holding a block
    /// under the differing node (JS `_requestForkRange`). When no peer on that fork can be asked,
    /// the reorg is applied with the shared prefix found so far (the rest is fetched again).
    async fn request_reorg_hash(&mut self, now: u64) -> Result<(), ReplicationError> {
        let max = self.max_inflight();
        let Some(r) = self.pending_reorg.as_ref().filter(|r| r.request.is_none()) else {
            return Ok(());
        };
        let (fork, (start, end, nodes)) = (r.fork, r.want);
        let push_only = self.opts.push_only;
        let pick = self.peers.iter().find_map(|(&id, p)| {
            if push_only || p.paused || p.remote_fork != fork || p.inflight >= max {
                return None;
            }
            let end = end.min(p.remote_length);
            let i = if start < p.remote_contig {
                start
            } else {
                p.remote_bitfield.find_first(true, start, end)?
            };
            (i < end).then_some((id, i))
        });
        let Some((peer, index)) = pick else {
            let busy = self
                .peers
                .values()
                .any(|p| !p.paused && p.remote_fork == fork && p.inflight >= max);
            if push_only || !busy {
                if let Some(r) = self.pending_reorg.take() {
                    self.apply_reorg(r.peer, r.verified).await?;
                }
            }
            return Ok(());
        };
        let req = Request {
            fork,
            hash: Some(RequestBlock {
                index: 2 * index,
                nodes,
            }),
            ..Request::default()
        };
        let id = self.send_request(now, peer, req);
        if let Some(r) = self.pending_reorg.as_mut() {
            r.request = Some(id);
        }
        Ok(())
    }

    /// Our length/fork changed through a peer's proof.
    async fn after_upgrade(&mut self, old_fork: u64) -> Result<(), ReplicationError> {
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

    fn invalid_data(&mut self, peer: PeerId, error: HypercoreError) {
        let local_len = self.core.length();
        // JS: in push mode an occasional bad message is expected; one that does not fit our
        // tree (JS `INVALID_OPERATION`: no fork check) leaves the peer running.
        let keep_running = self.opts.allow_push && does_not_fit(&error);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let was_paused = p.paused;
        p.paused |= !keep_running;
        p.invalid_data += 1;
        // JS `_checkIfConflict`: a proof that fails to verify may mean the writer forked; ask the
        // peer to prove its tree at the length we share (request id 0, never tracked). Once per
        // pause: the answers in flight behind the first bad one need no check of their own.
        let length = local_len.min(p.remote_length);
        let malformed = matches!(
            error,
            HypercoreError::InvalidProof(ProofError::InvalidRequest(_))
        );
        if !was_paused && !malformed && !keep_running && length > 0 {
            let check = Request {
                id: 0,
                fork: p.remote_fork,
                upgrade: Some(RequestUpgrade { start: 0, length }),
                ..Request::default()
            };
            self.transmits.push_back((peer, Message::Request(check)));
        }
        self.events.push_back(Event::InvalidData {
            peer,
            error: error.clone(),
        });
        if self.opts.disconnect_on_invalid_data {
            self.disconnect(peer, ReplicationError::InvalidData(error));
        }
    }

    /// JS `onconflict`: freeze, send every peer our own proof of the shared length (request 0) so
    /// it can detect the conflict too, and let every peer go.
    async fn on_conflict(&mut self, peer: PeerId, length: u64) -> Result<(), ReplicationError> {
        self.frozen = true;
        self.events.push_back(Event::Conflict { peer, length });
        let (len, fork) = (self.core.length(), self.core.fork());
        let peers: Vec<(PeerId, u64, u64)> = self
            .peers
            .iter()
            .map(|(&id, p)| (id, p.remote_length, p.remote_fork))
            .collect();
        for (id, remote_length, remote_fork) in peers {
            if remote_length > 0 && remote_fork == fork {
                let req = ProofRequest {
                    upgrade: Some(RequestUpgrade {
                        start: 0,
                        length: len.min(remote_length),
                    }),
                    ..ProofRequest::default()
                };
                match self.core.proof(&req).await {
                    Ok(mut data) => {
                        data.request = 0;
                        self.transmits
                            .push_back((id, Message::Data(Box::new(data))));
                    }
                    Err(HypercoreError::Storage(e)) => {
                        return Err(HypercoreError::Storage(e).into())
                    }
                    Err(_) => {}
                }
            }
            self.release_peer(id);
            self.events.push_back(Event::Disconnect {
                peer: id,
                error: ReplicationError::Conflict { length },
            });
        }
        self.seeks.clear();
        self.tree_hashes.clear();
        Ok(())
    }

    fn on_no_data(&mut self, peer: PeerId, nd: NoData) {
        let Some(r) = self.inflight.get(&nd.request).filter(|r| r.peer == peer) else {
            return;
        };
        let index = match (r.req.block, r.req.hash) {
            (Some(b), _) => Some(b.index),
            (None, Some(h)) if h.index % 2 == 0 => Some(h.index / 2),
            _ => None,
        };
        self.finish_request(nd.request, true);
        if let (Some(index), Some(p)) = (index, self.peers.get_mut(&peer)) {
            // It does not have it after all: don't ask it again until it says otherwise.
            p.remote_bitfield.set(index, false);
            p.remote_contig = p.remote_contig.min(index);
        }
        self.on_no_data_effects(peer, nd.reason);
    }

    fn on_no_data_effects(&mut self, peer: PeerId, reason: u64) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if reason == NO_DATA_NOT_AVAILABLE || reason == NO_DATA_INVALID_REQUEST {
                p.backoffs += 1;
                if p.backoffs >= MAX_BACKOFFS {
                    p.paused = true;
                }
            }
        }
    }

    fn on_want(&mut self, peer: PeerId, w: Want) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.remote_wants.add(w.start, w.length, w.any) || p.paused {
            return;
        }
        let length = self.core.length();
        let contig = self.core.contiguous_length().min(length);
        let end = w.start.saturating_add(w.length);
        if end < contig || length == contig || (w.any && w.start < contig) {
            self.transmits.push_back((
                peer,
                Message::Range(Range {
                    drop: false,
                    start: 0,
                    length: contig,
                }),
            ));
            return;
        }
        let len = w.length.min(length.saturating_sub(w.start));
        if w.any {
            if let Some(bit) = self.core.bitfield().first_set(w.start) {
                if bit < w.start + len {
                    self.transmits.push_back((
                        peer,
                        Message::Range(Range {
                            drop: false,
                            start: bit,
                            length: 1,
                        }),
                    ));
                }
            }
            return;
        }
        for (start, bitfield) in self.core.bitfield().want(w.start, len) {
            self.transmits
                .push_back((peer, Message::Bitfield(WireBitfield { start, bitfield })));
        }
    }

    fn on_bitfield(&mut self, peer: PeerId, b: WireBitfield) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !b.start.is_multiple_of(32) {
            return;
        }
        if b.start < p.remote_contig {
            p.remote_contig = b.start;
        }
        p.remote_bitfield.insert(b.start, &b.bitfield);
    }

    fn on_range(&mut self, peer: PeerId, r: Range) {
        let local_len = self.core.length();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let has = !r.drop;
        if r.drop && r.start < p.remote_contig {
            p.remote_contig = r.start;
        }
        if r.start == 0 && has {
            p.remote_contig = p.remote_contig.max(r.length);
        } else if r.length == 1 {
            p.remote_bitfield.set(r.start, has);
        } else {
            let mut end = r.start.saturating_add(r.length);
            if has {
                // Bound what a peer can make us allocate to the lengths in play.
                end = end.min(p.remote_length.max(local_len));
            }
            p.remote_bitfield.set_range(r.start, end, has);
        }
    }

    fn on_extension(&mut self, peer: PeerId, e: Extension) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let name = if e.name.is_empty() {
            match &p.last_ext_recv {
                Some(n) => n.clone(),
                None => return,
            }
        } else {
            e.name
        };
        p.last_ext_recv = Some(name.clone());
        if self.extensions.contains(&name) {
            self.events.push_back(Event::Extension {
                peer,
                name,
                message: e.message,
            });
        }
    }

    // ------------------------------------------------------------------ sync / ranges

    async fn can_upgrade_to(&self, remote_length: u64, remote_fork: u64) -> bool {
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
    async fn signal_upgrade(&mut self, peer: PeerId) -> Result<(), ReplicationError> {
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

    fn send_sync(&mut self, peer: PeerId) {
        let (len, fork) = (self.core.length(), self.core.fork());
        let has_manifest = self.core.manifest().is_some() && !self.core.is_compat();
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
            downloading: true,
            has_manifest,
            allow_push: self.opts.allow_push,
        };
        self.transmits.push_back((peer, Message::Sync(sync)));
    }

    /// JS `broadcastRange`: ranges ending more than [`LAST_BLOCKS`] before our length go only to
    /// peers that want them, unless we hold every block.
    fn broadcast_range(&mut self, peer: PeerId, mut start: u64, mut length: u64, drop: bool) {
        let (len, contig) = (self.core.length(), self.core.contiguous_length());
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.paused {
            return;
        }
        let fully = contig == len;
        if !drop
            && !fully
            && start.saturating_add(LAST_BLOCKS) < len
            && !p.remote_wants.has_range(start, length)
        {
            return;
        }
        let mut force = false;
        if fully && !drop {
            start = 0;
            length = len;
            if p.fully_signaled < length {
                p.fully_signaled = length;
                force = true;
            }
        }
        if !force && !drop {
            if p.remote_contig >= start.saturating_add(length) {
                return;
            }
            let end = start.saturating_add(length);
            if p.remote_bitfield.find_first(false, start, end).is_none() {
                return;
            }
        }
        self.transmits.push_back((
            peer,
            Message::Range(Range {
                drop,
                start,
                length,
            }),
        ));
    }

    // ------------------------------------------------------------------ requests

    fn is_wanted(&self, index: u64) -> bool {
        self.downloads
            .values()
            .any(|&(s, e)| index >= s && e.is_none_or(|e| index < e))
    }

    fn check_downloads(&mut self) {
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

    fn send_request(&mut self, now: u64, peer: PeerId, mut req: Request) -> u64 {
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
    fn finish_request(&mut self, id: u64, roundtrip: bool) {
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

    fn cancel_request(&mut self, id: u64) {
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
    fn cancel_stale_requests(&mut self) {
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

    fn can_request(&self, p: &Peer, index: u64) -> bool {
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
    async fn update(&mut self, now: u64) -> Result<(), ReplicationError> {
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

    fn request_reorg(&mut self, now: u64) {
        if !self.opts.allow_fork || self.opts.push_only || self.reorg_inflight.is_some() {
            return;
        }
        let fork = self
            .core
            .fork()
            .max(self.pending_reorg.as_ref().map_or(0, |r| r.fork));
        let max = self.max_inflight();
        let pick = self.peers.iter().find(|(_, p)| {
            !p.paused && p.synced && p.remote_fork > fork && p.remote_length > 0 && p.inflight < max
        });
        if let Some((&peer, p)) = pick {
            let req = Request {
                fork: p.remote_fork,
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: p.remote_length,
                }),
                manifest: self.core.manifest().is_none(),
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

    /// Ask peers that do not advertise block `index` whether they have its batch (`want`).
    fn maybe_want(&mut self, index: u64) {
        let batch = index / WANT_BATCH;
        let mut out = Vec::new();
        for (&id, p) in self.peers.iter_mut() {
            if p.paused || !p.synced || index < p.remote_contig || p.has_block(index) {
                continue;
            }
            if p.wants_sent.insert(batch) {
                out.push((
                    id,
                    Message::Want(Want {
                        start: batch * WANT_BATCH,
                        length: WANT_BATCH,
                        any: false,
                    }),
                ));
            }
        }
        self.transmits.extend(out);
    }
}

impl<S: Storage> Replicator<S> {
    // ------------------------------------------------------------------ seeks

    /// Retry every pending seek against the local tree (JS `ByteSeeker.update`): resolved ones
    /// give [`Event::Seek`], the others learn what they still need.
    async fn check_seeks(&mut self) -> Result<(), ReplicationError> {
        self.check_tree_hashes().await?;
        let ids: Vec<SeekId> = self.seeks.keys().copied().collect();
        for id in ids {
            let Some(bytes) = self.seeks.get(&id).map(|s| s.bytes) else {
                continue;
            };
            let target = match self.core.seek(bytes).await {
                Ok(SeekResult::Found { index, offset }) => {
                    self.seeks.remove(&id);
                    self.events.push_back(Event::Seek { id, index, offset });
                    continue;
                }
                Ok(SeekResult::Missing { start, end }) => SeekTarget::Nodes { start, end },
                Ok(SeekResult::OutOfBounds) => SeekTarget::Grow,
                Err(HypercoreError::Storage(e)) => return Err(HypercoreError::Storage(e).into()),
                // A node we need is not stored (yet): keep asking peers for the whole core.
                Err(_) => SeekTarget::Grow,
            };
            if let Some(s) = self.seeks.get_mut(&id) {
                s.target = target;
            }
        }
        Ok(())
    }

    /// Resolve the pending [`Replicator::tree_hash`]es whose roots are all stored.
    async fn check_tree_hashes(&mut self) -> Result<(), ReplicationError> {
        let len = self.core.length();
        let pending: Vec<(TreeHashId, u64)> = self
            .tree_hashes
            .iter()
            .map(|(&id, t)| (id, t.length))
            .collect();
        for (id, length) in pending {
            let missing = if length > len {
                None
            } else {
                let mut roots = Vec::new();
                let mut missing = None;
                for i in flat_tree::roots_of_length(length) {
                    match self.core.tree_node(i).await? {
                        Some(n) => roots.push(n),
                        None => {
                            missing = Some(i);
                            break;
                        }
                    }
                }
                if missing.is_none() {
                    self.tree_hashes.remove(&id);
                    let hash = tree::hash_roots(&roots);
                    self.events.push_back(Event::TreeHash { id, length, hash });
                    continue;
                }
                missing
            };
            if let Some(t) = self.tree_hashes.get_mut(&id) {
                t.missing = missing;
            }
        }
        Ok(())
    }

    /// One `hash` request in flight per pending tree hash, for its first missing root, to a
    /// peer that holds every block under it (and so the node).
    async fn request_tree_hashes(&mut self, now: u64) -> Result<(), ReplicationError> {
        let fork = self.core.fork();
        let max = self.max_inflight();
        let pending: Vec<(TreeHashId, u64)> = self
            .tree_hashes
            .iter()
            .filter(|(_, t)| t.request.is_none())
            .filter_map(|(&id, t)| t.missing.map(|m| (id, m)))
            .collect();
        for (id, node) in pending {
            let (start, end) = flat_tree::spans(node);
            let (start, end) = (start / 2, end / 2 + 1);
            let peer = self.peers.iter().find_map(|(&pid, p)| {
                let holds = p.remote_contig >= end
                    || (p.has_block(start)
                        && p.remote_bitfield.find_first(false, start, end).is_none());
                (!p.paused
                    && p.remote_fork == fork
                    && p.inflight < max
                    && p.remote_length >= end
                    && holds
                    && self.can_request(p, start))
                .then_some(pid)
            });
            let Some(peer) = peer else {
                self.maybe_want(start);
                continue;
            };
            let nodes = self.core.missing_nodes(node).await?;
            let req = Request {
                fork,
                hash: Some(RequestBlock { index: node, nodes }),
                ..Request::default()
            };
            let rid = self.send_request(now, peer, req);
            if let Some(t) = self.tree_hashes.get_mut(&id) {
                t.request = Some(rid);
            }
        }
        Ok(())
    }

    /// JS `_requestSeek`: one request in flight per pending seek.
    fn request_seeks(&mut self, now: u64) {
        if self.opts.push_only {
            return;
        }
        let (len, fork, padding) = (self.core.length(), self.core.fork(), self.core.padding());
        let max = self.max_inflight();
        let mut upgrading = self.upgrade_inflight.is_some();
        let mut sent: Vec<(SeekId, PeerId, Request)> = Vec::new();
        let mut wants = Vec::new();
        for (&id, s) in &self.seeks {
            if s.request.is_some() {
                continue;
            }
            let seek = Some(RequestSeek {
                bytes: s.bytes,
                padding,
            });
            match s.target {
                SeekTarget::Grow if !upgrading => {
                    let pick = self.peers.iter().find(|(_, p)| {
                        !p.paused
                            && p.remote_fork == fork
                            && p.remote_can_upgrade
                            && p.remote_length > len
                            && p.length_acked == len
                            && p.inflight < max
                    });
                    if let Some((&peer, p)) = pick {
                        upgrading = true;
                        let req = Request {
                            fork,
                            seek,
                            upgrade: Some(RequestUpgrade {
                                start: len,
                                length: p.remote_length - len,
                            }),
                            manifest: self.core.manifest().is_none() && p.remote_has_manifest,
                            ..Request::default()
                        };
                        sent.push((id, peer, req));
                    }
                }
                SeekTarget::Grow => {}
                SeekTarget::Nodes { start, end } => {
                    let found = self.peers.iter().find_map(|(&peer, p)| {
                        if p.paused || p.remote_fork != fork || p.inflight >= max {
                            return None;
                        }
                        self.seek_candidate(p, start, end).map(|i| (peer, i))
                    });
                    match found {
                        Some((peer, index)) => {
                            let req = Request {
                                fork,
                                hash: Some(RequestBlock {
                                    index: 2 * index,
                                    nodes: flat_tree::depth(start + end - 1),
                                }),
                                seek,
                                ..Request::default()
                            };
                            sent.push((id, peer, req));
                        }
                        None => wants.push(start),
                    }
                }
            }
        }
        for (id, peer, mut req) in sent {
            if self.peers.get(&peer).is_some_and(|p| p.no_seeks) {
                // JS: peers whose handshake lacks `seeks` get the hash/upgrade part only.
                req.seek = None;
            }
            let rid = self.send_request(now, peer, req);
            if let Some(s) = self.seeks.get_mut(&id) {
                s.request = Some(rid);
            }
        }
        for start in wants {
            self.maybe_want(start);
        }
    }

    /// A block of `start..end` that `p` advertises, we lack and may ask it about.
    fn seek_candidate(&self, p: &Peer, start: u64, end: u64) -> Option<u64> {
        let mut i = start;
        for _ in 0..SEEK_SCAN {
            if i >= end {
                return None;
            }
            let c = if i < p.remote_contig {
                i
            } else {
                p.remote_bitfield.find_first(true, i, end)?
            };
            if c >= end {
                return None;
            }
            if !self.core.has(c) && c < p.remote_length && self.can_request(p, c) {
                return Some(c);
            }
            i = c + 1;
        }
        None
    }

    // ------------------------------------------------------------------ hotswap

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

/// JS `ReorgBatch._updateDiffRoot`: `diff` (a verified node of the new tree) differs from ours and
/// every block left of it is shared. Sets the reorg's `ancestors` to its first block; true when
/// that is final (a leaf, or nothing of ours under it), else sets what to ask for next.
fn narrow_reorg(pending: &mut PendingReorg, diff: TreeNode, old_len: u64) -> bool {
    let (s, e) = flat_tree::spans(diff.index);
    let (start, end) = (s / 2, (e / 2 + 1).min(old_len));
    pending.diff = diff;
    let batch = &mut pending.verified.batch;
    batch.ancestors = batch.ancestors.max(start.min(old_len)).min(batch.length);
    if diff.index & 1 == 0 || start >= old_len || end <= start {
        return true;
    }
    pending.want = (start, end, flat_tree::depth(diff.index));
    false
}

/// Whether `error` is a proof that does not fit our tree (nodes missing or out of place, a root
/// we do not store): what JS reports as `INVALID_OPERATION` and does not check for a fork.
fn does_not_fit(error: &HypercoreError) -> bool {
    matches!(
        error,
        HypercoreError::MissingNode(_)
            | HypercoreError::InvalidProof(
                ProofError::MissingNode { .. }
                    | ProofError::UnexpectedNode { .. }
                    | ProofError::UnexpectedAdditionalNode(_)
                    | ProofError::Unverifiable(_)
                    | ProofError::NodeOutOfRange(_)
                    | ProofError::InvalidUpgrade(_)
                    | ProofError::InvalidRequest(_)
            )
    )
}

/// JS `MerkleTree.upgradeLength`: the length a peer has once it applied `up` (additional nodes
/// take it to the prover's whole tree).
fn upgrade_length(up: &DataUpgrade) -> u64 {
    match up.additional_nodes.last() {
        Some(last) => flat_tree::right_span(last.index) / 2 + 1,
        None => up.start.saturating_add(up.length),
    }
}

/// JS `_matchingRequest`: the data answers what was asked.
fn matching_request(req: Option<&Request>, data: &Data) -> bool {
    let Some(req) = req else {
        return false;
    };
    if let Some(b) = &data.block {
        if req.block.is_none_or(|r| r.index != b.index) {
            return false;
        }
    }
    if let Some(h) = &data.hash {
        if req.hash.is_none_or(|r| r.index != h.index) {
            return false;
        }
    }
    if let Some(s) = &data.seek {
        if req.seek.is_none_or(|r| r.bytes != s.bytes) {
            return false;
        }
    }
    if data.upgrade.is_some() && req.upgrade.is_none() {
        return false;
    }
    req.fork == data.fork
}
