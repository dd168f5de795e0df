//! What a [`Replicator`] reports: its [`Event`]s and why replication failed or a peer had to go
//! ([`ReplicationError`]).

use crate::crypto::Hash;
use crate::encoding::DecodeError;
use crate::hypercore::HypercoreError;
use crate::protomux::{ChannelError, MuxError};

use super::{DownloadId, PeerId, SeekId, TreeHashId, MAX_DEFERRED};

/// Why replication failed or a peer must go.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReplicationError {
    /// The local core failed (storage): not the peer's fault.
    #[error("local core: {0}")]
    Core(#[from] HypercoreError),
    /// The peer handle is unknown (never added, or removed).
    #[error("unknown peer {0:?}")]
    UnknownPeer(PeerId),
    /// The peer sent [`MAX_INVALID_REQUESTS`](super::MAX_INVALID_REQUESTS) requests that could not be answered.
    #[error("peer sent {0} invalid requests")]
    TooManyInvalidRequests(u64),
    /// The peer sent a proof that does not verify (with
    /// [`Options::disconnect_on_invalid_data`](super::Options::disconnect_on_invalid_data)).
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
    /// Block `index` was downloaded from `peer`, verified and stored (JS `download`).
    Block {
        /// Block index.
        index: u64,
        /// Its byte length (without the encryption padding, as JS reports it).
        bytes: u64,
        /// Where it came from.
        peer: PeerId,
    },
    /// Block `index` was sent to `peer` in answer to its request (JS `upload`).
    Uploaded {
        /// Block index.
        index: u64,
        /// Its byte length (without the encryption padding, as JS reports it).
        bytes: u64,
        /// Who it went to.
        peer: PeerId,
    },
    /// A [`Replicator::seek`](super::Replicator::seek) resolved: user byte `bytes` is byte `offset`
    /// of block `index` (`index` is the length and `offset` 0 when `bytes` is the byte length).
    Seek {
        /// The seek.
        id: SeekId,
        /// Block index.
        index: u64,
        /// Offset inside the block.
        offset: u64,
    },
    /// A [`Replicator::tree_hash`](super::Replicator::tree_hash) resolved: the tree hash (root of
    /// roots) of the core's first `length` blocks on the current fork.
    TreeHash {
        /// The request.
        id: TreeHashId,
        /// The length asked for.
        length: u64,
        /// BLAKE2b tree hash of the roots at `length`.
        hash: Hash,
    },
    /// Every block of a bounded [`Replicator::download`](super::Replicator::download) range is held
    /// locally.
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
    /// signatures exist for different trees. The replicator is now frozen
    /// ([`Replicator::is_frozen`](super::Replicator::is_frozen)): it sent every peer its own proof
    /// of that length (so they detect the conflict too) and let them all go with
    /// [`Event::Disconnect`] ([`ReplicationError::Conflict`]; close their channels, not whole
    /// streams). The core itself is frozen, in storage too: it refuses writes, also after a
    /// restart ([`Hypercore::conflict`](crate::hypercore::Hypercore::conflict),
    /// [`HypercoreError::Conflict`]).
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
