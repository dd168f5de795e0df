//! [`Hypercore`]: the signed append-only log on a [`Storage`].
//!
//! A core is either **writable** (it holds a key pair that is a signer of its manifest: it can
//! [`Hypercore::append`], [`Hypercore::truncate`] and sign) or a **reader** (created from a key
//! and/or manifest: it grows only by ingesting verified proofs with [`Hypercore::apply_proof`],
//! which is what the replication engine feeds it).
//!
//! Persistence: everything lives in the storage under the keys of [`super::layout`]. Each
//! mutating call (append, truncate, clear, apply_proof) is exactly **one** atomic
//! [`Storage::write`] holding the blocks, tree nodes, bitfield pages and the new header, so a crash
//! leaves either the old or the new state; [`Hypercore::open`] rebuilds the state purely from
//! storage. If the write fails the in-memory state is left as it was.
//!
//! Memory use does not grow with the log: only the roots (≤ 64 nodes), the header fields and the
//! local bitfield (one bit per block, in 4 KiB pages) are kept in memory.
//!
//! Sessions: a `Hypercore` is one owned value; share it between tasks the usual Rust way (e.g. a
//! mutex). [`Hypercore::snapshot`] gives a [`Snapshot`] that freezes length, byte length, fork and
//! tree hash; reads through it ([`Hypercore::get_at`]) keep working until a truncation drops below
//! the block read, then fail with [`HypercoreError::SnapshotNotAvailable`].
//!
//! The code is split by concern: this file holds the state, options, header and opening;
//! `write` appends, truncates and clears; `read` reads blocks, nodes, seeks and snapshots;
//! `verify` answers proof requests and verifies and applies peers' proofs (one at a time or in
//! batches), reorgs and conflict checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::crypto::{discovery_key, Hash, KeyPair};
use crate::encoding::{write_buffer, write_uint, Decode, Decoder, Encode};
use crate::parallel::Join;
use crate::storage::{Batch, Storage, StorageError};

use super::bitfield::Bitfield;
use super::blocks;
use super::encryption::{BlockEncryption, PADDING};
// Re-exported here too: `hypercore::core::HypercoreError` is the path callers have used.
pub use super::error::HypercoreError;
use super::layout;
use super::manifest::Manifest;
use super::tree::{self, MerkleTree, TreeBatch};
use super::verifier::Verifier;

mod read;
mod verify;
mod write;

/// Largest block [`Hypercore::append`] accepts (JS `MAX_SUGGESTED_BLOCK_SIZE`, 15 MiB).
pub const MAX_BLOCK_SIZE: usize = 15 * 1024 * 1024;

/// Version of the stored header format.
const HEADER_VERSION: u64 = 1;

/// Options of [`Hypercore::create`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Signing key pair: makes the core writable. Without one (and with `key` or `manifest`) the
    /// core is a reader. The caller generates it (the core has no RNG).
    pub key_pair: Option<KeyPair>,
    /// Key of the core to follow, for readers (checked against `manifest` if both are given).
    pub key: Option<[u8; 32]>,
    /// Compat core: key = the signer's public key, 80-byte signable, raw signatures
    /// (JS `{ compat: true }`). Default: key = manifest hash (v11 default).
    pub compat: bool,
    /// Block encryption key (JS `encryption`); blocks are stored encrypted with 8 bytes padding.
    pub encryption_key: Option<[u8; 32]>,
    /// Manifest; defaults to the single default signer of `key_pair` (v1).
    pub manifest: Option<Manifest>,
}

/// Options of [`Hypercore::open`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Block encryption key, required to read or append blocks of an encrypted core.
    pub encryption_key: Option<[u8; 32]>,
    /// Key pair to sign with, overriding the one stored with the core.
    pub key_pair: Option<KeyPair>,
}

/// What [`Hypercore::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Length after the append.
    pub length: u64,
    /// User-visible byte length after the append.
    pub byte_length: u64,
}

/// What [`Hypercore::apply_proof`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyOutcome {
    /// The core's length grew to this value (verified signed upgrade).
    pub upgraded_to: Option<u64>,
    /// This block was verified and stored.
    pub block: Option<u64>,
    /// The byte length of that block as it came (with the encryption padding, if any).
    pub block_bytes: u64,
    /// The manifest was learned from the proof.
    pub manifest_stored: bool,
}

/// A proof that verified against a core ([`Hypercore::verify_proof`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The tree after the proof: new nodes to store, and for upgrades the new roots, length,
    /// fork and signature (`upgraded`); `ancestors < tree_length` marks a reorg.
    pub batch: TreeBatch,
    /// The manifest learned from the proof (the core had none).
    pub manifest: Option<Manifest>,
}

/// A frozen view of a core ([`Hypercore::snapshot`]): its tree (roots, length, fork,
/// signature) when it was taken, so it can still be read ([`Hypercore::get_at`]) and proven
/// ([`Hypercore::proof_at`]) after the core grew.
#[derive(Debug, Clone)]
pub struct Snapshot {
    tree: MerkleTree,
    byte_length: u64,
    tree_hash: Hash,
    available: Arc<AtomicU64>,
}

impl Snapshot {
    /// Length when the snapshot was taken.
    pub fn length(&self) -> u64 {
        self.tree.length
    }
    /// User-visible byte length when the snapshot was taken.
    pub fn byte_length(&self) -> u64 {
        self.byte_length
    }
    /// Fork when the snapshot was taken.
    pub fn fork(&self) -> u64 {
        self.tree.fork
    }
    /// The signature of the tree when the snapshot was taken (empty for an empty reader).
    pub fn signature(&self) -> &[u8] {
        &self.tree.signature
    }
    /// Tree hash when the snapshot was taken.
    pub fn tree_hash(&self) -> Hash {
        self.tree_hash
    }
    /// Blocks below this index are still readable (a truncation lowers it).
    pub fn available_length(&self) -> u64 {
        self.available.load(Ordering::Acquire).min(self.tree.length)
    }
}

/// A fork conflict a core detected and keeps ([`Hypercore::conflict`]): a peer proved a validly
/// signed tree of this core that diverges from ours at `length` on fork `fork` (its writer
/// signed two different trees, JS `conflict`). It is stored with the core, so the core stays
/// closed to writes after a restart ([`HypercoreError::Conflict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    /// The length at which the two signed trees diverge.
    pub length: u64,
    /// The fork both trees claim.
    pub fork: u64,
}

/// The stored header (key `0x00`, see [`super::layout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    key: [u8; 32],
    manifest: Option<Manifest>,
    secret_key: Option<[u8; 64]>,
    encrypted: bool,
    fork: u64,
    length: u64,
    tree_hash: Hash,
    signature: Vec<u8>,
    conflict: Option<Conflict>,
}

// uint version ‖ uint flags(1 manifest, 2 key pair, 4 encrypted, 8 conflict) ‖ fixed32 key ‖
// [manifest] ‖ [fixed64 secret key] ‖ uint fork ‖ uint length ‖ fixed32 tree hash ‖
// buffer signature ‖ [uint conflict length ‖ uint conflict fork]
impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        write_uint(&mut out, HEADER_VERSION);
        let flags = u64::from(self.manifest.is_some())
            | u64::from(self.secret_key.is_some()) << 1
            | u64::from(self.encrypted) << 2
            | u64::from(self.conflict.is_some()) << 3;
        write_uint(&mut out, flags);
        out.extend_from_slice(&self.key);
        if let Some(m) = &self.manifest {
            m.encode(&mut out);
        }
        if let Some(sk) = &self.secret_key {
            out.extend_from_slice(sk);
        }
        write_uint(&mut out, self.fork);
        write_uint(&mut out, self.length);
        out.extend_from_slice(&self.tree_hash);
        write_buffer(&mut out, &self.signature);
        if let Some(c) = &self.conflict {
            write_uint(&mut out, c.length);
            write_uint(&mut out, c.fork);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, HypercoreError> {
        let mut d = Decoder::new(bytes);
        let version = d.uint()?;
        if version != HEADER_VERSION {
            return Err(HypercoreError::Corrupt(format!(
                "unknown header version {version}"
            )));
        }
        let flags = d.uint()?;
        let key = d.fixed::<32>()?;
        let manifest = if flags & 1 != 0 {
            Some(Manifest::decode(&mut d)?)
        } else {
            None
        };
        let secret_key = if flags & 2 != 0 {
            Some(d.fixed::<64>()?)
        } else {
            None
        };
        let (fork, length, tree_hash) = (d.uint()?, d.uint()?, d.fixed::<32>()?);
        let signature = d.buffer()?.to_vec();
        let conflict = if flags & 8 != 0 {
            Some(Conflict {
                length: d.uint()?,
                fork: d.uint()?,
            })
        } else {
            None
        };
        Ok(Header {
            key,
            manifest,
            secret_key,
            encrypted: flags & 4 != 0,
            fork,
            length,
            tree_hash,
            signature,
            conflict,
        })
    }
}

/// A hypercore: see the module documentation.
pub struct Hypercore<S: Storage> {
    storage: S,
    key: [u8; 32],
    discovery_key: [u8; 32],
    manifest: Option<Manifest>,
    verifier: Option<Verifier>,
    key_pair: Option<KeyPair>,
    /// Whether the stored header keeps the secret key (cores created writable do).
    store_secret: bool,
    encrypted: bool,
    encryption: Option<BlockEncryption>,
    /// The user's encryption key, to re-derive the block key when a reader learns from the
    /// manifest that the core is a compat core (JS `DefaultEncryption._reload`).
    encryption_key: Option<[u8; 32]>,
    tree: MerkleTree,
    bitfield: Bitfield,
    contiguous_length: u64,
    snapshots: Vec<Weak<AtomicU64>>,
    /// Upper tree node pages read for proofs (see [`tree::NodeCache`]).
    node_cache: tree::NodeCache,
    /// The block chunk read last (see [`blocks::ChunkCache`]).
    chunk_cache: blocks::ChunkCache,
    /// A detected fork conflict (stored in the header): writes are refused.
    conflict: Option<Conflict>,
    /// How big writes split their hashing and tree pages in two ([`Hypercore::set_join`]).
    join: Arc<dyn Join>,
}

impl<S: Storage> core::fmt::Debug for Hypercore<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Hypercore")
            .field("discovery_key", &HexKey(&self.discovery_key))
            .field("length", &self.tree.length)
            .field("fork", &self.tree.fork)
            .field("writable", &self.writable())
            .finish_non_exhaustive()
    }
}

struct HexKey<'a>(&'a [u8; 32]);
impl core::fmt::Debug for HexKey<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn resolve_key_and_manifest(
    opts: &CreateOptions,
) -> Result<([u8; 32], Option<Manifest>), HypercoreError> {
    let manifest = match (&opts.manifest, &opts.key_pair) {
        (Some(m), _) => Some(m.clone()),
        (None, Some(kp)) => Some(Manifest::default_signer(kp.public_key)),
        (None, None) => None,
    };
    let key = match &manifest {
        Some(m) => {
            if opts.compat {
                if m.signers.len() != 1 {
                    return Err(HypercoreError::InvalidArgument(
                        "a compat core has exactly one signer",
                    ));
                }
                m.signers[0].public_key
            } else if let Some(k) = opts.key.filter(|k| m.is_compat(k)) {
                k
            } else {
                m.key()
            }
        }
        None => opts.key.ok_or(HypercoreError::InvalidArgument(
            "need a key pair, a manifest or a key",
        ))?,
    };
    if let Some(k) = opts.key {
        if k != key {
            return Err(HypercoreError::KeyMismatch(
                "key does not match the manifest",
            ));
        }
    }
    Ok((key, manifest))
}

impl<S: Storage> Hypercore<S> {
    /// Create a new core in an empty `storage` ([`HypercoreError::AlreadyExists`] otherwise).
    ///
    /// With a `key_pair` the core is writable; its manifest defaults to the key pair's default
    /// single-signer manifest and its key to that manifest's hash (or the public key when
    /// `compat`). Without one, give the `key` and/or `manifest` of the core to follow.
    pub async fn create(storage: S, opts: CreateOptions) -> Result<Self, HypercoreError> {
        let (core, batch) = Self::prepare_create(storage, opts).await?;
        core.storage.write(batch).await?;
        Ok(core)
    }

    /// [`Hypercore::create`] without the write: the new core and the batch that stores it.
    /// The caller must write the batch to the core's storage (it may add writes of its own,
    /// e.g. a corestore's index entries, through [`crate::storage::Prefixed::to_inner`]) before
    /// using the core; until then nothing of it is stored.
    pub async fn prepare_create(
        storage: S,
        opts: CreateOptions,
    ) -> Result<(Self, Batch), HypercoreError> {
        if storage.get(&layout::header_key()).await?.is_some() {
            return Err(HypercoreError::AlreadyExists);
        }
        let (key, manifest) = resolve_key_and_manifest(&opts)?;
        let verifier = manifest
            .as_ref()
            .map(|m| Verifier::for_core(key, m.clone()));
        if let (Some(kp), Some(m)) = (&opts.key_pair, &manifest) {
            if !m.signers.iter().any(|s| s.public_key == kp.public_key) {
                return Err(HypercoreError::KeyMismatch(
                    "key pair is not a signer of the manifest",
                ));
            }
        }
        let compat = verifier.as_ref().is_some_and(|v| v.is_compat());
        let core = Hypercore {
            discovery_key: discovery_key(&key),
            key,
            manifest,
            verifier,
            store_secret: opts.key_pair.is_some(),
            key_pair: opts.key_pair,
            encrypted: opts.encryption_key.is_some(),
            encryption: opts
                .encryption_key
                .map(|ek| BlockEncryption::new(&ek, &key, compat)),
            encryption_key: opts.encryption_key,
            tree: MerkleTree::default(),
            bitfield: Bitfield::new(),
            contiguous_length: 0,
            snapshots: Vec::new(),
            node_cache: tree::NodeCache::default(),
            chunk_cache: blocks::ChunkCache::default(),
            join: crate::parallel::sequential(),
            conflict: None,
            storage,
        };
        let mut batch = Batch::new();
        batch.put(layout::header_key(), core.header_for(&core.tree).encode());
        Ok((core, batch))
    }

    /// Open the core stored in `storage` ([`HypercoreError::NotFound`] if there is none).
    pub async fn open(storage: S, opts: OpenOptions) -> Result<Self, HypercoreError> {
        let raw = storage
            .get(&layout::header_key())
            .await?
            .ok_or(HypercoreError::NotFound)?;
        let h = Header::decode(&raw)?;
        let tree = MerkleTree::load(&storage, h.length, h.fork, h.signature.clone()).await?;
        if tree.hash() != h.tree_hash && h.length > 0 {
            return Err(HypercoreError::Corrupt(
                "stored roots do not match the header's tree hash".into(),
            ));
        }
        let verifier = h
            .manifest
            .as_ref()
            .map(|m| Verifier::for_core(h.key, m.clone()));
        let compat = verifier.as_ref().is_some_and(|v| v.is_compat());
        let stored_kp = match &h.secret_key {
            Some(sk) => Some(
                KeyPair::from_secret_key(sk)
                    .map_err(|_| HypercoreError::Corrupt("stored secret key is invalid".into()))?,
            ),
            None => None,
        };
        let store_secret = stored_kp.is_some();
        let key_pair = opts.key_pair.or(stored_kp);
        if let (Some(kp), Some(m)) = (&key_pair, &h.manifest) {
            if !m.signers.iter().any(|s| s.public_key == kp.public_key) {
                return Err(HypercoreError::KeyMismatch(
                    "key pair is not a signer of the manifest",
                ));
            }
        }
        if opts.encryption_key.is_some() && !h.encrypted {
            return Err(HypercoreError::InvalidArgument("core is not encrypted"));
        }
        let mut bitfield = Bitfield::new();
        for (k, v) in storage
            .scan(
                &layout::bitfield_key(0),
                &layout::tag_end(layout::BITFIELD),
                None,
            )
            .await?
        {
            let page = layout::index_of(&k)
                .ok_or_else(|| HypercoreError::Corrupt("bad bitfield key".into()))?;
            bitfield.load_page(page, &v)?;
        }
        let contiguous_length = bitfield.first_unset(0).unwrap_or(u64::MAX).min(h.length);
        Ok(Hypercore {
            discovery_key: discovery_key(&h.key),
            key: h.key,
            manifest: h.manifest,
            verifier,
            key_pair,
            store_secret,
            encrypted: h.encrypted,
            encryption: opts
                .encryption_key
                .map(|ek| BlockEncryption::new(&ek, &h.key, compat)),
            encryption_key: opts.encryption_key,
            tree,
            bitfield,
            contiguous_length,
            snapshots: Vec::new(),
            node_cache: tree::NodeCache::default(),
            chunk_cache: blocks::ChunkCache::default(),
            join: crate::parallel::sequential(),
            conflict: h.conflict,
            storage,
        })
    }

    fn header_for(&self, tree: &MerkleTree) -> Header {
        Header {
            key: self.key,
            manifest: self.manifest.clone(),
            secret_key: if self.store_secret {
                self.key_pair.as_ref().map(|k| k.secret_key)
            } else {
                None
            },
            encrypted: self.encrypted,
            fork: tree.fork,
            length: tree.length,
            tree_hash: tree.hash(),
            signature: tree.signature.clone(),
            conflict: self.conflict,
        }
    }

    /// The stored header after `b`, whose tree hash is `tree_hash` (`b.hash()`, passed in since
    /// the caller computed it already to sign).
    fn header_bytes(
        &self,
        b: &TreeBatch,
        tree_hash: Hash,
        signature: &[u8],
        manifest: Option<&Manifest>,
    ) -> Vec<u8> {
        Header {
            key: self.key,
            manifest: manifest.cloned(),
            secret_key: if self.store_secret {
                self.key_pair.as_ref().map(|k| k.secret_key)
            } else {
                None
            },
            encrypted: self.encrypted,
            fork: b.fork,
            length: b.length,
            tree_hash,
            signature: signature.to_vec(),
            conflict: self.conflict,
        }
        .encode()
    }

    /// The fork conflict this core detected ([`Hypercore::check_conflict`]), if any: it refuses
    /// writes ([`HypercoreError::Conflict`]).
    pub fn conflict(&self) -> Option<Conflict> {
        self.conflict
    }

    /// [`HypercoreError::Conflict`] once a conflict was detected.
    fn check_not_frozen(&self) -> Result<(), HypercoreError> {
        match self.conflict {
            Some(Conflict { length, fork }) => Err(HypercoreError::Conflict { length, fork }),
            None => Ok(()),
        }
    }

    /// Store `conflict` with the core (the header), so it stays frozen after a restart. The
    /// first conflict is kept.
    async fn freeze(&mut self, conflict: Conflict) -> Result<(), HypercoreError> {
        if self.conflict.is_some() {
            return Ok(());
        }
        let mut header = self.header_for(&self.tree);
        header.conflict = Some(conflict);
        let mut batch = Batch::new();
        batch.put(layout::header_key(), header.encode());
        self.write(batch).await?;
        self.conflict = Some(conflict);
        Ok(())
    }

    /// Write `batch` to storage, first dropping the cached tree pages it touches, then keeping
    /// the tree pages it stored.
    async fn write(&self, batch: Batch) -> Result<(), StorageError> {
        self.node_cache.invalidate(&batch);
        self.chunk_cache.invalidate(&batch);
        let pages = tree::NodeCache::pages_of(&batch);
        self.storage.write(batch).await?;
        self.node_cache.written(pages);
        Ok(())
    }

    /// The core key (manifest hash, or the signer's public key for compat cores).
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The discovery key: `BLAKE2b_key("hypercore")`.
    pub fn discovery_key(&self) -> &[u8; 32] {
        &self.discovery_key
    }

    /// Number of blocks.
    pub fn length(&self) -> u64 {
        self.tree.length
    }

    /// Number of leading blocks held locally.
    pub fn contiguous_length(&self) -> u64 {
        self.contiguous_length
    }

    /// User-visible byte length (encryption padding excluded). Saturates at 0: a remote tree
    /// whose blocks are shorter than the padding (not valid encrypted blocks) must not panic.
    pub fn byte_length(&self) -> u64 {
        self.tree
            .byte_length
            .saturating_sub(self.tree.length.saturating_mul(self.padding()))
    }

    /// Bytes of padding per stored block (8 when encrypted, else 0).
    pub fn padding(&self) -> u64 {
        if self.encrypted {
            PADDING as u64
        } else {
            0
        }
    }

    /// Fork id.
    pub fn fork(&self) -> u64 {
        self.tree.fork
    }

    /// Tree hash of the current length.
    pub fn tree_hash(&self) -> Hash {
        self.tree.hash()
    }

    /// Signature of the current `(tree hash, length, fork)` as stored and sent (raw 64 bytes
    /// for compat cores, the multisig blob otherwise; empty when nothing is signed yet).
    pub fn signature(&self) -> &[u8] {
        &self.tree.signature
    }

    /// The manifest (`None` for a reader that has not received it yet).
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Whether the core is a compat core (key = signer public key).
    pub fn is_compat(&self) -> bool {
        self.verifier.as_ref().is_some_and(|v| v.is_compat())
    }

    /// Whether this core can append/truncate (it holds a signer's key pair).
    pub fn writable(&self) -> bool {
        self.key_pair.is_some() && self.verifier.is_some()
    }

    /// Whether blocks are stored encrypted.
    pub fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// Give an encrypted core opened without it its block encryption key (e.g. a core a
    /// corestore opened for a remote, which replicates the stored bytes without decrypting,
    /// and that a session now wants to read). [`HypercoreError::InvalidArgument`] if the core
    /// is not encrypted.
    pub fn set_encryption_key(&mut self, encryption_key: [u8; 32]) -> Result<(), HypercoreError> {
        if !self.encrypted {
            return Err(HypercoreError::InvalidArgument("core is not encrypted"));
        }
        self.encryption = Some(BlockEncryption::new(
            &encryption_key,
            &self.key,
            self.is_compat(),
        ));
        self.encryption_key = Some(encryption_key);
        Ok(())
    }

    /// Encrypt this core's blocks with `block_key` as is (JS `setEncryptionKey(key, { block:
    /// true })`: blinding key `H(block_key)`), e.g. an autobase view's key
    /// ([`crate::autobase::encryption::view_block_key`]). A core opened without encryption (a
    /// reader that followed it by key) becomes encrypted: the stored bytes are the same, reads
    /// decrypt them from now on (the flag is stored with the next header write). The block key
    /// stays when the manifest arrives (it is not derived from the core key). Only for a core
    /// whose blocks are (or will be) stored encrypted with that key: a core that holds blocks
    /// written in the clear would read them as noise.
    pub fn set_block_encryption_key(&mut self, block_key: [u8; 32]) {
        self.encrypted = true;
        self.encryption = Some(BlockEncryption::from_block_key(block_key));
        self.encryption_key = None;
    }

    /// How big writes (thousands of blocks or tree nodes, or megabytes) split their work in
    /// two, in halves that `join` may run at once (see [`crate::parallel`]): an append's leaf
    /// hashes, its wide levels of parent hashes (where the CPU hashes eight at a time, AVX-512)
    /// and the filling of its tree pages; the leaf hashes of a batch of downloaded blocks; the
    /// tree pages a truncation or a verified upgrade rewrites. The default runs them one after
    /// the other; the stored bytes are the same either way.
    pub fn set_join(&mut self, join: Arc<dyn Join>) {
        self.join = join;
    }

    /// `tb`'s tree nodes (and removals) into `batch`, through the node cache and this core's
    /// [`Join`].
    async fn queue_tree_ops(
        &self,
        tb: &TreeBatch,
        batch: &mut Batch,
    ) -> Result<(), HypercoreError> {
        tb.write_ops_cached(&self.storage, Some(&self.node_cache), &*self.join, batch)
            .await
    }

    /// The merkle tree state (roots, length, byte length, fork, signature).
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// The underlying storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The key pair used for signing, if any.
    pub fn key_pair(&self) -> Option<&KeyPair> {
        self.key_pair.as_ref()
    }

    /// The local bitfield (which blocks are held).
    pub fn bitfield(&self) -> &Bitfield {
        &self.bitfield
    }

    /// The signable bytes a signer signs for the current tree (112 bytes, or 80 for compat).
    pub fn signable(&self) -> Vec<u8> {
        let h = self.tree.hash();
        if self.is_compat() {
            super::verifier::signable_compat(&h, self.tree.length, self.tree.fork).to_vec()
        } else {
            super::verifier::signable(&self.key, &h, self.tree.length, self.tree.fork).to_vec()
        }
    }
}

#[cfg(test)]
mod tests;
