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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::crypto::{discovery_key, Hash, KeyPair};
use crate::encoding::{write_buffer, write_uint, Decode, Decoder, Encode};
use crate::storage::{Batch, Storage, StorageError};

use super::bitfield::Bitfield;
use super::blocks;
use super::encryption::{BlockEncryption, PADDING};
// Re-exported here too: `hypercore::core::HypercoreError` is the path callers have used.
pub use super::error::HypercoreError;
use super::error::ProofError;
use super::flat_tree;
use super::layout;
use super::manifest::Manifest;
use super::messages::{Data, DataBlock, TreeNode};
use super::proof::{self, ProofRequest};
use super::tree::{self, MerkleTree, SeekResult, TreeBatch};
use super::verifier::Verifier;

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

/// A frozen view of a core ([`Hypercore::snapshot`]).
#[derive(Debug, Clone)]
pub struct Snapshot {
    length: u64,
    byte_length: u64,
    fork: u64,
    tree_hash: Hash,
    available: Arc<AtomicU64>,
}

impl Snapshot {
    /// Length when the snapshot was taken.
    pub fn length(&self) -> u64 {
        self.length
    }
    /// User-visible byte length when the snapshot was taken.
    pub fn byte_length(&self) -> u64 {
        self.byte_length
    }
    /// Fork when the snapshot was taken.
    pub fn fork(&self) -> u64 {
        self.fork
    }
    /// Tree hash when the snapshot was taken.
    pub fn tree_hash(&self) -> Hash {
        self.tree_hash
    }
    /// Blocks below this index are still readable (a truncation lowers it).
    pub fn available_length(&self) -> u64 {
        self.available.load(Ordering::Acquire).min(self.length)
    }
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
}

// uint version ‖ uint flags(1 manifest, 2 key pair, 4 encrypted) ‖ fixed32 key ‖ [manifest] ‖
// [fixed64 secret key] ‖ uint fork ‖ uint length ‖ fixed32 tree hash ‖ buffer signature
impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        write_uint(&mut out, HEADER_VERSION);
        let flags = u64::from(self.manifest.is_some())
            | u64::from(self.secret_key.is_some()) << 1
            | u64::from(self.encrypted) << 2;
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
        Ok(Header {
            key,
            manifest,
            secret_key,
            encrypted: flags & 4 != 0,
            fork: d.uint()?,
            length: d.uint()?,
            tree_hash: d.fixed::<32>()?,
            signature: d.buffer()?.to_vec(),
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
        }
        .encode()
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

    // ---------------------------------------------------------------- accessors

    /// This core behind a clonable, shared handle: the first [`super::Session`] (JS
    /// `core.session()`; same as [`super::Session::new`]).
    pub fn into_session(self) -> super::Session<S> {
        super::Session::new(self)
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

    /// User-visible byte length (encryption padding excluded).
    pub fn byte_length(&self) -> u64 {
        self.tree.byte_length - self.tree.length * self.padding()
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

    // ---------------------------------------------------------------- writing

    fn sign(&self, hash: &Hash, length: u64, fork: u64) -> Result<Vec<u8>, HypercoreError> {
        let (Some(kp), Some(v)) = (&self.key_pair, &self.verifier) else {
            return Err(HypercoreError::NotWritable);
        };
        Ok(v.sign(kp, hash, length, fork)?)
    }

    /// Append `blocks` (one atomic storage write, one signature). Returns the new length.
    pub async fn append(&mut self, blocks: &[&[u8]]) -> Result<AppendOutcome, HypercoreError> {
        if !self.writable() {
            return Err(HypercoreError::NotWritable);
        }
        if self.encrypted && self.encryption.is_none() {
            return Err(HypercoreError::EncryptionKeyRequired);
        }
        if let Some(b) = blocks.iter().find(|b| b.len() > MAX_BLOCK_SIZE) {
            return Err(HypercoreError::BlockTooLarge {
                size: b.len(),
                max: MAX_BLOCK_SIZE,
            });
        }
        if blocks.is_empty() {
            return Ok(AppendOutcome {
                length: self.length(),
                byte_length: self.byte_length(),
            });
        }
        let start = self.tree.length;
        let fork = self.tree.fork;
        let mut tb = self.tree.batch();
        tb.nodes.reserve(blocks.len() * 2);
        let mut batch = Batch::new();
        batch.ops.reserve(blocks.len() * 3 + 4);
        // Plain blocks are hashed and stored straight from the caller's buffers.
        let stored: Vec<std::borrow::Cow<'_, [u8]>> = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| match &self.encryption {
                Some(e) => e.encrypt(start + i as u64, fork, b).into(),
                None => std::borrow::Cow::Borrowed(*b),
            })
            .collect();
        let hashes = tree::leaf_hashes(&stored);
        for (data, hash) in stored.iter().zip(hashes) {
            tb.append_leaf(hash, data.len() as u64);
        }
        let refs: Vec<&[u8]> = stored.iter().map(|b| b.as_ref()).collect();
        blocks::put(&mut batch, start, &refs);
        let hash = tb.hash();
        let signature = self.sign(&hash, tb.length, tb.fork)?;
        tb.write_ops_cached(&self.storage, Some(&self.node_cache), &mut batch)
            .await?;
        self.bitfield.set_range(start, tb.length, true);
        for (page, bytes) in self.bitfield.take_dirty_pages() {
            batch.put(layout::bitfield_key(page), bytes);
        }
        batch.put(
            layout::header_key(),
            self.header_bytes(&tb, hash, &signature, self.manifest.as_ref()),
        );
        if let Err(e) = self.write(batch).await {
            self.bitfield.set_range(start, tb.length, false);
            self.bitfield.take_dirty_pages();
            return Err(e.into());
        }
        tb.signature = Some(signature);
        self.tree.commit(&tb);
        if self.contiguous_length == start {
            self.contiguous_length = self
                .bitfield
                .first_unset(start)
                .unwrap_or(u64::MAX)
                .min(self.tree.length);
        }
        Ok(AppendOutcome {
            length: self.length(),
            byte_length: self.byte_length(),
        })
    }

    /// Truncate to `new_length` blocks with fork `fork` (default: current fork + 1) and re-sign.
    /// Blocks, tree nodes and bitfield bits past the new length are deleted in the same write.
    pub async fn truncate(
        &mut self,
        new_length: u64,
        fork: Option<u64>,
    ) -> Result<(), HypercoreError> {
        if !self.writable() {
            return Err(HypercoreError::NotWritable);
        }
        if new_length > self.tree.length {
            return Err(HypercoreError::OutOfBounds {
                index: new_length,
                length: self.tree.length,
            });
        }
        let fork = fork.unwrap_or(self.tree.fork + 1);
        let old_length = self.tree.length;
        let mut tb = self
            .tree
            .truncate_batch(&self.storage, new_length, fork)
            .await?;
        let hash = tb.hash();
        let signature = self.sign(&hash, tb.length, tb.fork)?;
        let mut batch = Batch::new();
        tb.write_ops_cached(&self.storage, Some(&self.node_cache), &mut batch)
            .await?;
        blocks::remove(&self.storage, &mut batch, new_length, None).await?;
        let saved = self.bitfield.clone();
        self.bitfield.set_range(new_length, old_length, false);
        for (page, bytes) in self.bitfield.take_dirty_pages() {
            batch.put(layout::bitfield_key(page), bytes);
        }
        batch.put(
            layout::header_key(),
            self.header_bytes(&tb, hash, &signature, self.manifest.as_ref()),
        );
        if let Err(e) = self.write(batch).await {
            self.bitfield = saved;
            return Err(e.into());
        }
        tb.signature = Some(signature);
        self.tree.commit(&tb);
        self.contiguous_length = self.contiguous_length.min(new_length);
        self.on_truncate(new_length);
        Ok(())
    }

    fn on_truncate(&mut self, new_length: u64) {
        self.snapshots.retain(|w| match w.upgrade() {
            Some(a) => {
                a.fetch_min(new_length, Ordering::AcqRel);
                true
            }
            None => false,
        });
    }

    /// Delete the local copies of blocks `start..end` (the tree is kept, so they can be fetched
    /// and verified again).
    pub async fn clear(&mut self, start: u64, end: u64) -> Result<(), HypercoreError> {
        let end = end.min(self.tree.length);
        if start >= end {
            return Ok(());
        }
        let mut batch = Batch::new();
        blocks::remove(&self.storage, &mut batch, start, Some(end)).await?;
        let saved = self.bitfield.clone();
        self.bitfield.set_range(start, end, false);
        for (page, bytes) in self.bitfield.take_dirty_pages() {
            batch.put(layout::bitfield_key(page), bytes);
        }
        if let Err(e) = self.write(batch).await {
            self.bitfield = saved;
            return Err(e.into());
        }
        self.contiguous_length = self.contiguous_length.min(start);
        Ok(())
    }

    // ---------------------------------------------------------------- reading

    /// Whether block `index` is held locally.
    pub fn has(&self, index: u64) -> bool {
        index < self.tree.length && self.bitfield.get(index)
    }

    /// Block `index`, decrypted. `Ok(None)` when the block is not held locally (a reader's sparse
    /// data, or cleared); [`HypercoreError::OutOfBounds`] past the length.
    pub async fn get(&self, index: u64) -> Result<Option<Vec<u8>>, HypercoreError> {
        if index >= self.tree.length {
            return Err(HypercoreError::OutOfBounds {
                index,
                length: self.tree.length,
            });
        }
        let Some(stored) = self.get_stored(index).await? else {
            return Ok(None);
        };
        self.decode_block(index, stored).map(Some)
    }

    fn decode_block(&self, index: u64, mut stored: Vec<u8>) -> Result<Vec<u8>, HypercoreError> {
        if !self.encrypted {
            return Ok(stored);
        }
        let e = self
            .encryption
            .as_ref()
            .ok_or(HypercoreError::EncryptionKeyRequired)?;
        e.decrypt_in_place(index, &mut stored)?;
        stored.drain(..PADDING);
        Ok(stored)
    }

    /// Block `index` exactly as stored (encrypted and padded for encrypted cores): the bytes the
    /// merkle tree hashes and proofs carry. `None` when not held locally.
    pub async fn get_stored(&self, index: u64) -> Result<Option<Vec<u8>>, HypercoreError> {
        if !self.bitfield.get(index) {
            return Ok(None);
        }
        self.chunk_cache.get(&self.storage, index).await
    }

    /// Blocks `start..end` decrypted, in one storage scan (missing ones are `None`).
    pub async fn get_range(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Option<Vec<u8>>>, HypercoreError> {
        if end > self.tree.length || start > end {
            return Err(HypercoreError::OutOfBounds {
                index: end,
                length: self.tree.length,
            });
        }
        let mut out: Vec<Option<Vec<u8>>> = (start..end).map(|_| None).collect();
        for (i, v) in blocks::range(&self.storage, start, end).await? {
            out[(i - start) as usize] = Some(self.decode_block(i, v)?);
        }
        Ok(out)
    }

    /// Where user-visible byte offset `bytes` falls (padding excluded).
    pub async fn seek(&self, bytes: u64) -> Result<SeekResult, HypercoreError> {
        self.tree.seek(&self.storage, bytes, self.padding()).await
    }

    /// Stored node `index` of the merkle tree, if present.
    pub async fn tree_node(&self, index: u64) -> Result<Option<TreeNode>, HypercoreError> {
        if index >= 2 * self.tree.length {
            return Ok(None);
        }
        tree::get_node(&self.storage, index).await
    }

    /// How many tree levels above node `index` are missing locally at the current length: the
    /// `nodes` field to put in a block/hash request (JS `missingNodes`).
    pub async fn missing_nodes(&self, index: u64) -> Result<u64, HypercoreError> {
        MerkleTree::missing_nodes_cached(
            &self.storage,
            Some(&self.node_cache),
            index,
            self.tree.length,
        )
        .await
    }

    /// Whether every root of a tree of `length` blocks is stored (so an upgrade from `length` can
    /// be proven: JS `upgradeable`, sent as `sync.canUpgrade`).
    pub async fn upgradeable(&self, length: u64) -> Result<bool, HypercoreError> {
        if length > self.tree.length {
            return Ok(false);
        }
        let idx = flat_tree::roots_of_length(length);
        Ok(tree::get_nodes(&self.storage, &idx)
            .await?
            .iter()
            .all(|n| n.is_some()))
    }

    // ---------------------------------------------------------------- snapshots

    /// Freeze the current length, byte length, fork and tree hash.
    pub fn snapshot(&mut self) -> Snapshot {
        let available = Arc::new(AtomicU64::new(self.tree.length));
        self.snapshots.retain(|w| w.strong_count() > 0);
        self.snapshots.push(Arc::downgrade(&available));
        Snapshot {
            length: self.tree.length,
            byte_length: self.byte_length(),
            fork: self.tree.fork,
            tree_hash: self.tree.hash(),
            available,
        }
    }

    /// Block `index` as seen by `snapshot`.
    pub async fn get_at(
        &self,
        snapshot: &Snapshot,
        index: u64,
    ) -> Result<Option<Vec<u8>>, HypercoreError> {
        if index >= snapshot.length {
            return Err(HypercoreError::OutOfBounds {
                index,
                length: snapshot.length,
            });
        }
        let available = snapshot.available_length();
        if index >= available {
            return Err(HypercoreError::SnapshotNotAvailable { index, available });
        }
        self.get(index).await
    }

    // ---------------------------------------------------------------- proofs

    /// Generate the proof answering `req` (JS `core.proof`): block proofs carry the stored
    /// block bytes. The result's `request` is 0 and `manifest` is `None`; set them for the wire.
    pub async fn proof(&self, req: &ProofRequest) -> Result<Data, HypercoreError> {
        if let Some(b) = req.block {
            if b.index < self.tree.length && !self.bitfield.get(b.index) {
                return Err(HypercoreError::BlockNotAvailable(b.index));
            }
        }
        let prologue = self.verifier.as_ref().and_then(|v| v.prologue()).copied();
        let mut data = proof::generate_cached(
            &self.storage,
            Some(&self.node_cache),
            &self.tree,
            prologue.as_ref(),
            req,
        )
        .await?;
        if let Some(b) = data.block.as_mut() {
            b.value = self
                .chunk_cache
                .get(&self.storage, b.index)
                .await?
                .ok_or(HypercoreError::BlockNotAvailable(b.index))?;
        }
        Ok(data)
    }

    fn resolve_manifest(&self, offered: Option<&Manifest>) -> Result<Manifest, HypercoreError> {
        if let Some(m) = &self.manifest {
            return Ok(m.clone());
        }
        let m = match offered {
            Some(m) => m.clone(),
            None => Manifest::default_signer(self.key),
        };
        if m.key() == self.key || m.is_compat(&self.key) {
            Ok(m)
        } else {
            Err(HypercoreError::KeyMismatch(
                "manifest does not belong to this core key",
            ))
        }
    }

    /// Verify `proof` against the local state without changing anything (see
    /// [`Hypercore::apply_proof`] for what is accepted). An empty proof (as JS answers a lone seek
    /// request) verifies trivially; a proof carrying only a manifest, while we have none, gives
    /// that manifest if its hash is our key.
    pub async fn verify_proof(&self, proof: &Data) -> Result<VerifiedProof, HypercoreError> {
        self.verify_proof_with(proof, None, None).await
    }

    /// [`Hypercore::verify_proof`], where `known` gives nodes already trusted without a storage
    /// read: verified by earlier proofs of one [`Hypercore::apply_proofs`] call (not stored
    /// yet, they count as stored) or stored and cached (see [`proof::verify_tree_with_leaf`]);
    /// `leaf` is the block's leaf hash, computed already.
    async fn verify_proof_with(
        &self,
        proof: &Data,
        known: Option<proof::KnownNodes<'_>>,
        leaf: Option<crate::crypto::Hash>,
    ) -> Result<VerifiedProof, HypercoreError> {
        if let Some(b) = &proof.block {
            if b.value.len() > MAX_BLOCK_SIZE + PADDING {
                return Err(HypercoreError::BlockTooLarge {
                    size: b.value.len(),
                    max: MAX_BLOCK_SIZE,
                });
            }
        }
        if proof.fork != self.tree.fork {
            return self.verify_reorg(proof).await;
        }
        let mut batch = self.tree.batch();
        // An upgrade that starts below our length (a pushing peer's: JS moves the start of the
        // upgrades it answers to what it pushed) is checked from our roots at its start.
        let mut behind = None;
        if let Some(up) = proof
            .upgrade
            .as_ref()
            .filter(|u| u.start < self.tree.length)
        {
            let idx = flat_tree::roots_of_length(up.start);
            let stored = tree::get_nodes_cached(&self.storage, &self.node_cache, &idx).await?;
            let mut roots = Vec::with_capacity(idx.len());
            for (n, &i) in stored.into_iter().zip(&idx) {
                roots.push(n.ok_or(ProofError::Unverifiable(i))?);
            }
            batch.byte_length = roots.iter().fold(0u64, |a, r| a.saturating_add(r.size));
            batch.roots = roots;
            batch.length = up.start;
            behind = Some(idx);
        }
        let mut unverified = proof::verify_tree_with_leaf(proof, &mut batch.nodes, leaf, known)?;
        let mut new_manifest = None;
        if let Some(up) = &proof.upgrade {
            let (manifest, verifier) = self.verifier_for(proof)?;
            let consumed =
                proof::verify_upgrade(proof.fork, up, unverified, &mut batch, verifier.prologue())?;
            if consumed {
                unverified = None;
            }
            if batch.length <= self.tree.length {
                // Not an upgrade for us: every root must match what we store.
                let idx: Vec<u64> = batch.roots.iter().map(|r| r.index).collect();
                let stored = tree::get_nodes(&self.storage, &idx).await?;
                for (r, s) in batch.roots.iter().zip(stored) {
                    if s.is_none_or(|s| s.hash != r.hash || s.size != r.size) {
                        return Err(ProofError::Conflict(batch.length).into());
                    }
                }
                batch.upgraded = false;
            } else {
                let sig = batch.signature.clone().unwrap_or_default();
                verifier.verify_with_roots(
                    &batch.roots,
                    &batch.hash(),
                    batch.length,
                    batch.fork,
                    &sig,
                )?;
                if let Some(start_roots) = &behind {
                    // Our tree must be a prefix of the new one: each of our roots is one of the
                    // roots we started from or a node of the proof with the same hash.
                    for r in &self.tree.roots {
                        if start_roots.contains(&r.index) {
                            continue;
                        }
                        let mut same = batch.nodes.iter().filter(|n| n.index == r.index).peekable();
                        if same.peek().is_none() {
                            return Err(ProofError::Unverifiable(r.index).into());
                        }
                        if same.any(|n| n.hash != r.hash || n.size != r.size) {
                            return Err(ProofError::Conflict(self.tree.length).into());
                        }
                    }
                }
                new_manifest = manifest;
            }
        }
        if let (None, None, Some(m)) = (&self.manifest, &new_manifest, &proof.manifest) {
            // A manifest on its own (JS answers a manifest request so): kept if it is the one
            // whose hash is our key.
            new_manifest = Some(self.resolve_manifest(Some(m))?);
        }
        if let Some(u) = unverified {
            let local = match known.and_then(|f| f(u.index)) {
                Some(n) => Some(n),
                None => tree::get_nodes_cached(&self.storage, &self.node_cache, &[u.index])
                    .await?
                    .pop()
                    .flatten(),
            };
            let local = local
                .filter(|_| u.index < 2 * self.tree.length)
                .ok_or(ProofError::Unverifiable(u.index))?;
            if local.hash != u.hash || local.size != u.size {
                return Err(ProofError::InvalidChecksum(u.index).into());
            }
        }
        if let Some(b) = &proof.block {
            if b.index >= batch.length.max(self.tree.length) {
                return Err(ProofError::Unverifiable(2 * b.index).into());
            }
        }
        if !batch.upgraded {
            // Keep our state: only the verified nodes are new.
            batch.roots.clone_from(&self.tree.roots);
            batch.length = self.tree.length;
            batch.byte_length = self.tree.byte_length;
            batch.fork = self.tree.fork;
            batch.signature = None;
        }
        Ok(VerifiedProof {
            batch,
            manifest: new_manifest,
        })
    }

    /// The manifest to verify `proof` with (`Some` when it is newly learned) and its verifier.
    fn verifier_for(&self, proof: &Data) -> Result<(Option<Manifest>, Verifier), HypercoreError> {
        if let Some(v) = &self.verifier {
            return Ok((None, v.clone()));
        }
        let m = self.resolve_manifest(proof.manifest.as_ref())?;
        let v = Verifier::for_core(self.key, m.clone());
        Ok((Some(m), v))
    }

    /// A proof from a higher fork: only a signed upgrade from 0 (what the replicator asks a
    /// forked peer for) is accepted. The new tree is rebuilt from the proof alone; the local
    /// prefix whose roots match it is kept and everything past it is dropped on apply.
    async fn verify_reorg(&self, proof: &Data) -> Result<VerifiedProof, HypercoreError> {
        let fork_err = ProofError::ForkMismatch {
            local: self.tree.fork,
            got: proof.fork,
        };
        let Some(up) = proof.upgrade.as_ref() else {
            return Err(fork_err.into());
        };
        if proof.fork < self.tree.fork || up.start != 0 {
            return Err(fork_err.into());
        }
        let mut batch = TreeBatch::empty(self.tree.fork);
        batch.tree_length = self.tree.length;
        let unverified = proof::verify_tree(proof, &mut batch.nodes)?;
        let (manifest, verifier) = self.verifier_for(proof)?;
        let consumed =
            proof::verify_upgrade(proof.fork, up, unverified, &mut batch, verifier.prologue())?;
        if let (Some(u), false) = (unverified, consumed) {
            return Err(ProofError::Unverifiable(u.index).into());
        }
        let sig = batch.signature.clone().unwrap_or_default();
        verifier.verify_with_roots(&batch.roots, &batch.hash(), batch.length, batch.fork, &sig)?;
        // Shared prefix: the leading new roots we store identically.
        let idx: Vec<u64> = batch.roots.iter().map(|r| r.index).collect();
        let stored = tree::get_nodes(&self.storage, &idx).await?;
        let mut ancestors = 0;
        for (r, s) in batch.roots.iter().zip(stored) {
            let end = flat_tree::right_span(r.index) / 2 + 1;
            match s {
                Some(s) if s.hash == r.hash && s.size == r.size && end <= self.tree.length => {
                    ancestors = end;
                }
                _ => break,
            }
        }
        batch.ancestors = ancestors;
        batch.upgraded = true;
        if let Some(b) = &proof.block {
            if b.index >= batch.length {
                return Err(ProofError::Unverifiable(2 * b.index).into());
            }
        }
        Ok(VerifiedProof { batch, manifest })
    }

    /// JS `checkConflict`: whether `proof` (a signed upgrade from 0 on our fork, to a length we
    /// hold, as a peer sends for a conflict check with request id 0) proves a different tree at
    /// that length than ours: two valid signatures over diverging trees, a forked writer.
    /// `Ok(false)` when the check does not apply (other fork, longer than our core, no manifest,
    /// roots not stored) or the trees agree; an error when the proof does not verify on its own.
    pub async fn check_conflict(&self, proof: &Data) -> Result<bool, HypercoreError> {
        let (Some(up), Some(verifier)) = (proof.upgrade.as_ref(), self.verifier.as_ref()) else {
            return Ok(false);
        };
        if up.start != 0
            || up.length == 0
            || up.length > self.tree.length
            || proof.fork != self.tree.fork
        {
            return Ok(false);
        }
        let mut batch = TreeBatch::empty(self.tree.fork);
        let unverified = proof::verify_tree(proof, &mut batch.nodes)?;
        let consumed =
            proof::verify_upgrade(proof.fork, up, unverified, &mut batch, verifier.prologue())?;
        if let (Some(u), false) = (unverified, consumed) {
            return Err(ProofError::Unverifiable(u.index).into());
        }
        let sig = batch.signature.clone().unwrap_or_default();
        verifier.verify_with_roots(&batch.roots, &batch.hash(), batch.length, batch.fork, &sig)?;
        let idx = flat_tree::roots_of_length(up.length);
        let stored = tree::get_nodes(&self.storage, &idx).await?;
        for (i, local) in idx.iter().zip(stored) {
            let remote = batch.nodes.iter().find(|n| n.index == *i);
            match (local, remote) {
                (Some(l), Some(r)) if l.hash != r.hash || l.size != r.size => return Ok(true),
                (Some(_), Some(_)) => {}
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Verify `proof` and store what it proves, in one atomic write: a signed upgrade grows the
    /// core (new roots, nodes, signature; the manifest too when the proof carries the first one),
    /// a block is stored and marked in the bitfield. On any error the core is unchanged.
    ///
    /// Accepted: proofs at the local fork (block/hash/seek proofs checked against stored nodes or
    /// folded into a signed upgrade); and from a higher fork, a signed upgrade starting at 0,
    /// which re-roots the core on the new fork (a reorg: blocks and nodes past the shared prefix
    /// are deleted and `upgraded_to` reports the new length). Other forks give
    /// [`ProofError::ForkMismatch`].
    pub async fn apply_proof(&mut self, proof: &Data) -> Result<ApplyOutcome, HypercoreError> {
        let verified = self.verify_proof(proof).await?;
        self.apply_verified(verified, proof.block.as_ref()).await
    }

    /// Whether [`Hypercore::apply_proofs`] can take `proof` into a shared write: a proof at our
    /// fork with no upgrade and no manifest (a block, hash or seek proof checked against the
    /// nodes we hold).
    pub fn is_batchable(&self, proof: &Data) -> bool {
        proof.fork == self.tree.fork && proof.upgrade.is_none() && proof.manifest.is_none()
    }

    /// The block of `proof` whose leaf [`Hypercore::apply_proofs`] hashes with the others: of a
    /// batchable proof, and not oversized (those are refused unhashed).
    fn batch_leaf<'d>(&self, proof: &'d Data) -> Option<&'d DataBlock> {
        proof
            .block
            .as_ref()
            .filter(|b| self.is_batchable(proof) && b.value.len() <= MAX_BLOCK_SIZE + PADDING)
    }

    /// Verify each of `proofs` and store those that verify (blocks, tree nodes, bitfield) in one
    /// atomic storage write: the result for each proof in order, as [`Hypercore::apply_proof`]
    /// would give one by one (a later proof may verify against nodes an earlier one proves).
    ///
    /// Every proof must be [`Hypercore::is_batchable`]; one that is not gets
    /// [`HypercoreError::InvalidArgument`] and changes nothing. A proof that does not verify gets
    /// its error and changes nothing; the others are stored. The outer error is a storage failure
    /// (reading, or the one write): then nothing is stored and the core is unchanged.
    pub async fn apply_proofs(
        &mut self,
        proofs: &[&Data],
    ) -> Result<Vec<Result<ApplyOutcome, HypercoreError>>, HypercoreError> {
        let mut results = Vec::with_capacity(proofs.len());
        let mut blocks: Vec<&DataBlock> = Vec::new();
        // The leaf hashes of all the blocks at once (SIMD lanes: about twice the throughput of
        // hashing them one by one), but those of proofs refused anyway.
        let values: Vec<&[u8]> = proofs
            .iter()
            .filter_map(|p| self.batch_leaf(p))
            .map(|b| b.value.as_slice())
            .collect();
        let mut leaves = tree::leaf_hashes(&values).into_iter();
        // The nodes verified so far in this batch, by index: what the batch stores.
        let mut pending: HashMap<u64, TreeNode> = HashMap::new();
        let in_tree = 2 * self.tree.length;
        for &proof in proofs {
            if !self.is_batchable(proof) {
                results.push(Err(HypercoreError::InvalidArgument(
                    "only proofs at the core's fork without upgrade or manifest are batched",
                )));
                continue;
            }
            let leaf = self.batch_leaf(proof).and_then(|_| leaves.next());
            let (pend, cache) = (&pending, &self.node_cache);
            let known = move |i: u64| {
                pend.get(&i)
                    .copied()
                    .or_else(|| cache.peek(i))
                    .filter(|_| i < in_tree)
            };
            match self.verify_proof_with(proof, Some(&known), leaf).await {
                Ok(v) => {
                    pending.extend(v.batch.nodes.into_iter().map(|n| (n.index, n)));
                    if let Some(b) = &proof.block {
                        blocks.push(b);
                    }
                    results.push(Ok(ApplyOutcome {
                        block: proof.block.as_ref().map(|b| b.index),
                        ..ApplyOutcome::default()
                    }));
                }
                Err(HypercoreError::Storage(e)) => return Err(HypercoreError::Storage(e)),
                Err(e) => results.push(Err(e)),
            }
        }
        if pending.is_empty() && blocks.is_empty() {
            return Ok(results);
        }
        let mut tb = self.tree.batch();
        tb.nodes = pending.into_values().collect();
        let mut batch = Batch::new();
        tb.write_ops_cached(&self.storage, Some(&self.node_cache), &mut batch)
            .await?;
        let mut set = Vec::new();
        for b in blocks {
            // As in `apply_verified`: a block already held (or twice in `proofs`) is stored once.
            if self.bitfield.set(b.index, true) {
                blocks::put(&mut batch, b.index, &[&b.value]);
                set.push(b.index);
            }
        }
        for (page, bytes) in self.bitfield.take_dirty_pages() {
            batch.put(layout::bitfield_key(page), bytes);
        }
        if let Err(e) = self.write(batch).await {
            for i in set {
                self.bitfield.set(i, false);
            }
            self.bitfield.take_dirty_pages();
            return Err(e.into());
        }
        if self.contiguous_length < self.tree.length && self.bitfield.get(self.contiguous_length) {
            self.contiguous_length = self
                .bitfield
                .first_unset(self.contiguous_length)
                .unwrap_or(u64::MAX)
                .min(self.tree.length);
        }
        Ok(results)
    }

    /// Store a proof verified by [`Hypercore::verify_proof`] (with `block`, the proof's block).
    /// The replicator refines a reorg's batch before this (a higher `ancestors` and more nodes of
    /// the new tree, each checked against the batch's verified nodes); the batch must start from
    /// the current tree.
    pub(crate) async fn apply_verified(
        &mut self,
        verified: VerifiedProof,
        block: Option<&DataBlock>,
    ) -> Result<ApplyOutcome, HypercoreError> {
        let VerifiedProof {
            batch: tb,
            manifest: new_manifest,
        } = verified;
        if tb.upgraded && tb.tree_length != self.tree.length {
            return Err(HypercoreError::InvalidArgument(
                "the proof was verified against an older tree",
            ));
        }
        let mut out = ApplyOutcome::default();
        let mut batch = Batch::new();
        tb.write_ops_cached(&self.storage, Some(&self.node_cache), &mut batch)
            .await?;
        let old_length = self.tree.length;
        let reorg = tb.truncates();
        let saved = reorg.then(|| self.bitfield.clone());
        if reorg {
            blocks::remove(&self.storage, &mut batch, tb.ancestors, None).await?;
            self.bitfield.set_range(tb.ancestors, old_length, false);
        }
        let mut bit_set = None;
        if let Some(b) = block {
            // A block already held is not stored twice (chunks never overlap); it verified
            // against the same tree, so it is the same bytes.
            if self.bitfield.set(b.index, true) {
                blocks::put(&mut batch, b.index, &[&b.value]);
                bit_set = Some(b.index);
            }
            for (page, bytes) in self.bitfield.take_dirty_pages() {
                batch.put(layout::bitfield_key(page), bytes);
            }
            out.block = Some(b.index);
        }
        let manifest = new_manifest.as_ref().or(self.manifest.as_ref());
        if tb.upgraded || new_manifest.is_some() {
            let sig = tb
                .signature
                .clone()
                .unwrap_or_else(|| self.tree.signature.clone());
            batch.put(
                layout::header_key(),
                self.header_bytes(&tb, tb.hash(), &sig, manifest),
            );
        }
        if reorg {
            for (page, bytes) in self.bitfield.take_dirty_pages() {
                batch.put(layout::bitfield_key(page), bytes);
            }
        }
        if let Err(e) = self.write(batch).await {
            if let Some(saved) = saved {
                self.bitfield = saved;
            } else if let Some(i) = bit_set {
                self.bitfield.set(i, false);
            }
            self.bitfield.take_dirty_pages();
            return Err(e.into());
        }
        if reorg {
            self.contiguous_length = self.contiguous_length.min(tb.ancestors);
            self.on_truncate(tb.ancestors);
        }
        if tb.upgraded {
            self.tree.commit(&tb);
            out.upgraded_to = Some(tb.length);
        }
        if let Some(m) = new_manifest {
            let verifier = Verifier::for_core(self.key, m.clone());
            // A reader created from the key alone assumed a non-compat block key.
            if let Some(ek) = &self.encryption_key {
                self.encryption = Some(BlockEncryption::new(ek, &self.key, verifier.is_compat()));
            }
            self.verifier = Some(verifier);
            self.manifest = Some(m);
            out.manifest_stored = true;
        }
        if self.contiguous_length < self.tree.length && self.bitfield.get(self.contiguous_length) {
            self.contiguous_length = self
                .bitfield
                .first_unset(self.contiguous_length)
                .unwrap_or(u64::MAX)
                .min(self.tree.length);
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- integrity

    /// Re-hash every stored block against the tree, check the roots rebuild to the stored ones
    /// when all blocks are present, and check the signature of the current length.
    pub async fn verify_all(&self) -> Result<(), HypercoreError> {
        const CHUNK: u64 = 4096;
        let length = self.tree.length;
        let complete = self.contiguous_length == length;
        let mut rebuilt = TreeBatch::empty(self.tree.fork);
        let mut start = 0;
        while start < length {
            let end = (start + CHUNK).min(length);
            let rows = blocks::range(&self.storage, start, end).await?;
            let mut leaf_idx = Vec::with_capacity(rows.len());
            let mut leaves = Vec::with_capacity(rows.len());
            let mut expect = start;
            for &(i, ref v) in &rows {
                if complete && i != expect {
                    return Err(HypercoreError::BlockNotAvailable(expect));
                }
                expect = i + 1;
                let leaf = tree::block_node(2 * i, v);
                if complete {
                    rebuilt.append_leaf(leaf.hash, leaf.size);
                }
                leaf_idx.push(2 * i);
                leaves.push(leaf);
            }
            if complete && expect != end {
                return Err(HypercoreError::BlockNotAvailable(expect));
            }
            let stored = tree::get_nodes(&self.storage, &leaf_idx).await?;
            for (leaf, s) in leaves.iter().zip(stored) {
                match s {
                    Some(s) if s.hash == leaf.hash && s.size == leaf.size => {}
                    _ => return Err(HypercoreError::BlockMismatch(leaf.index / 2)),
                }
            }
            rebuilt.nodes.clear();
            start = end;
        }
        if complete && rebuilt.roots != self.tree.roots {
            return Err(HypercoreError::TreeMismatch);
        }
        if length > 0 {
            let v = self.verifier.as_ref().ok_or(HypercoreError::NoManifest)?;
            v.verify_with_roots(
                &self.tree.roots,
                &self.tree.hash(),
                length,
                self.tree.fork,
                &self.tree.signature,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
