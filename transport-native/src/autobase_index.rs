//! A hyperpunch indexer's autobase cores, as JS writes them: the system core (a hyperbee) and the
//! user views as hypercores in the corestore, keyed as JS derives them and signed by the
//! indexer, and the checkpoints and digest its oplog entries carry, so that a new reader (JS or
//! hyperpunch) fast-forwards to what it indexed.
//!
//! The engine ([`Autobase::record_system`]) records each system batch; [`IndexerCores::sync`]
//! puts the indexed ones into the system bee (built in memory with
//! [`hyperpunch_core::autobase::cores::write_flushes`], its new blocks appended to the system
//! core in one signed append), appends the views' indexed blocks to their cores, and signs each
//! core at its indexed length (ed25519 over the core's signable, as JS `_signViewCore`);
//! [`IndexerCores::stamp`] puts those signatures and the system key into the oplog entries the
//! indexer appends next (JS `_appendLocalNodes`). The cores replicate like any stored core.
//!
//! While this indexer (the bootstrap) is the only one, it signs alone and writes the cores as it
//! indexes. At a batch that changes the indexers every core moves (JS `_premigrate`): a new key
//! from the new indexers' manifest, with the prologue of what it held; this indexer keeps an
//! in-memory copy of each moved core, signs it at its indexed length and puts the new system key
//! in its entries, and [`IndexerCores::commit_signed`] assembles a quorum's signatures (read from
//! the indexers' latest oplog entries, JS `CheckpointCore`, `maybeSigned`, `_assembleMultisig`)
//! into a multisig and writes the moved cores up to there. An indexer whose oplog core is not
//! here is a typed error ([`IndexError::IndexerManifest`]), and so is a key pair that is not an
//! indexer's ([`IndexError::NotTheIndexer`]). After any error the cores lack that call's
//! batches, so every later [`IndexerCores::sync`] refuses ([`IndexError::Failed`]).
//!
//! A member that fast-forwarded holds none of the cores' blocks below its point:
//! [`IndexerCores::seed_from_point`] downloads them from the peers (the cores the point names,
//! verified by the hypercore layer) and continues from there like a member that linearized from
//! the start.
//!
//! (About 1,300 lines, its tests in `autobase_index_tests.rs`. Known debt: the quorum signing
//! decisions here (`commit_signed`: which length a quorum signed, the checkpoint and digest
//! pointers, the multisig assembly) are protocol and belong in `core::autobase`, sans-IO, so that
//! the browser can share them; only the store access should stay here.)

use hyperpunch_core::autobase::cores::{
    bootstrap_system_key, core_manifest_encrypted, last_move, prologue_encrypted, write_flushes,
    LocalCheckpoint, Signatures, Signed,
};
use hyperpunch_core::autobase::encryption::{view_block_key, view_encryption};
use hyperpunch_core::autobase::fast_forward::FastForwardPoint;
use hyperpunch_core::autobase::messages::{Checkpoint, Checkpointer, OplogMessage};
use hyperpunch_core::autobase::{Apply, Autobase};
use hyperpunch_core::corestore::{CoreHandle, Corestore, CorestoreError, GetOptions};
use hyperpunch_core::crypto::discovery_key;
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::encoding::Decode;
use hyperpunch_core::hyperbee::{source::BeeCore, BeeError, Hyperbee};
use hyperpunch_core::hypercore::manifest::Manifest;
use hyperpunch_core::hypercore::session::Session;
use hyperpunch_core::hypercore::tree::hash_roots;
use hyperpunch_core::hypercore::verifier::{signable, Verifier};
use hyperpunch_core::hypercore::{CreateOptions, Hypercore, HypercoreError};
use hyperpunch_core::storage::{MemoryStorage, Storage};

/// Why the cores could not be written.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The corestore failed.
    #[error("corestore: {0}")]
    Store(#[from] CorestoreError),
    /// The system bee failed.
    #[error("system bee: {0}")]
    Bee(#[from] BeeError),
    /// The scratch core failed.
    #[error("hypercore: {0}")]
    Core(#[from] HypercoreError),
    /// The manifest of an indexer's oplog core is not known here (its core not replicated).
    #[error("the manifest of indexer {0} is not known")]
    IndexerManifest(String),
    /// The indexed system's indexers are not exactly the writer of this key pair.
    #[error("the indexers are not exactly this key pair's writer ({indexers} indexers)")]
    NotTheIndexer {
        /// How many indexers the indexed system has.
        indexers: usize,
    },
    /// A view named in `view_names` has not been opened by apply yet.
    #[error("view {name:?} (id {id}) is not opened yet")]
    ViewNotOpened {
        /// Its id.
        id: usize,
        /// Its name.
        name: String,
    },
    /// The system records a view that `view_names` does not name.
    #[error("view id {0} is not in the view names")]
    ViewNotListed(usize),
    /// A view's indexed length is below what the engine holds in memory, or its core lacks the
    /// blocks before them.
    #[error("view id {id}: indexed length {indexed}, core length {written}, blocks in memory from {start}")]
    ViewLength {
        /// The view id.
        id: usize,
        /// Its indexed length.
        indexed: u64,
        /// Its core's length.
        written: u64,
        /// Where its blocks in memory start.
        start: u64,
    },
    /// The cores stored by an earlier run hold blocks that the replayed oplogs do not give (the
    /// run stopped after writing them and before appending the local entry they were for):
    /// nothing more is written or signed, so the orphan blocks are never signed.
    #[error("the stored {core} core does not match the replayed oplog (stored length {stored}, replayed {replayed}, first difference at {at})")]
    StoredMismatch {
        /// `_system` or the view's name.
        core: String,
        /// The stored core's length.
        stored: u64,
        /// The length the replay gives.
        replayed: u64,
        /// The first index that differs (or is missing in the replay).
        at: u64,
    },
    /// An earlier call failed: its batches are not in the cores, so nothing more is written.
    #[error("an earlier sync failed ({0}); the cores lack its batches")]
    Failed(String),
}

struct ViewCore {
    handle: CoreHandle,
    written: u64,
}

/// The cores one local indexer writes and signs.
pub struct IndexerCores {
    bootstrap: [u8; 32],
    key_pair: KeyPair,
    entropy: [u8; 32],
    view_names: Vec<String>,
    /// The system bee, built in memory; its blocks are copied to the system core.
    scratch: Session<MemoryStorage>,
    bee: Option<Hyperbee<Session<MemoryStorage>>>,
    system: Option<(CoreHandle, [u8; 32])>,
    view_keys: Vec<[u8; 32]>,
    views: Vec<Option<ViewCore>>,
    encryption_key: [u8; 32],
    checkpoint: LocalCheckpoint,
    pending: Option<Signatures>,
    /// Set by a failed `sync`: its batches were taken from the engine but not written.
    failed: Option<String>,
    /// After [`Self::seed_from_point`]: by view id, each view's blocks below the point (the
    /// engine holds the view from there on).
    view_prefix: Vec<Vec<Vec<u8>>>,
    /// The cores [`Self::seed_from_point`] opened and asked the peers for (the system core,
    /// then the views by id).
    seeding: Option<Vec<CoreHandle>>,
    /// The base's encryption key (JS `encryptionKey`), for an encrypted base.
    base_encryption: Option<[u8; 32]>,
    /// After the cores moved to several indexers (or moved a second time): the moved cores,
    /// written as a quorum of the indexers signs them.
    multi: Option<Multi>,
    /// Why [`Self::commit_signed`] last skipped a round, and whether that was not told yet.
    skipped: Option<(String, bool)>,
}

/// One moved view: its real core (written up to what a quorum signed) and a scratch copy with
/// every indexed block (the tree this indexer signs, and the patches of longer signatures).
struct MovedView {
    handle: CoreHandle,
    key: [u8; 32],
    scratch: Session<MemoryStorage>,
}

/// The cores after a move to several indexers (JS `_premigrate` / `_migrateView`), and what
/// the indexers signed of them (JS `CheckpointCore` per indexer, `maybeSigned`,
/// `_assembleMultisig`).
struct Multi {
    /// The indexers' writer keys, in the system's order (the manifests' signer order).
    indexers: Vec<[u8; 32]>,
    quorum: usize,
    system: CoreHandle,
    system_key: [u8; 32],
    /// By view id.
    views: Vec<Option<MovedView>>,
    /// The view ids of `info.views`, in order, at each system length indexed since the move,
    /// with their lengths (the views a multisig at that length covers).
    infos: Vec<(u64, Vec<(usize, u64)>)>,
}

/// An indexer's latest signatures, read from its oplog (JS `CheckpointCore.updateCheckpoints`).
#[derive(Debug, Clone)]
struct Remote {
    digest: [u8; 32],
    system: ([u8; 64], u64),
    user: Vec<Option<([u8; 64], u64)>>,
}

/// What one round of [`IndexerCores::commit_signed`] did.
enum Round {
    /// A quorum's multisig was written up to this system length.
    Committed(u64),
    /// Nothing to write yet; the system length written.
    Waiting(u64),
}

/// Whether `e` comes from what other indexers sent (a signature that does not verify, a
/// length their checkpoint does not cover) rather than from the store: the round is skipped.
fn peer_fault(e: &IndexError) -> bool {
    use hyperpunch_core::replication::replicator::ReplicationError;
    fn core(e: &HypercoreError) -> bool {
        matches!(
            e,
            HypercoreError::InvalidSignature(_) | HypercoreError::BlockNotAvailable(_)
        )
    }
    match e {
        IndexError::Core(e) => core(e),
        IndexError::Store(CorestoreError::Hypercore(e)) => core(e),
        IndexError::Store(CorestoreError::Replication(ReplicationError::Core(e))) => core(e),
        _ => false,
    }
}

impl IndexerCores {
    /// The cores of the base `bootstrap` as the writer that signs with `key_pair` (its oplog
    /// core's signer) and whose oplog manifest's signer namespace is `entropy` keeps them: the
    /// bootstrap, or another writer (which follows the moves and signs once an indexer);
    /// `view_names`: the names of the views in the order apply opens them (their view ids).
    pub async fn new(
        bootstrap: [u8; 32],
        key_pair: KeyPair,
        entropy: [u8; 32],
        view_names: &[&str],
    ) -> Result<Self, IndexError> {
        Self::new_encrypted(bootstrap, key_pair, entropy, view_names, None).await
    }

    /// [`Self::new`] for a base encrypted with `encryption_key` (JS `encryptionKey`): the system
    /// core and views are written encrypted with their view block keys
    /// ([`hyperpunch_core::autobase::encryption::view_block_key`]) and keyed with the
    /// encryption key in their namespaces, as JS derives them (the local oplog core is the
    /// caller's: open it with the key too). A core that moves to other indexers (JS
    /// `_premigrate`) keeps its view block key (version-1 cores: JS `getCompatBlockKey` depends
    /// on the base and the name only) and its prologue hashes the encrypted blocks (JS
    /// `source.treeHash`); the in-memory trees this indexer signs are encrypted the same way.
    pub async fn new_encrypted(
        bootstrap: [u8; 32],
        key_pair: KeyPair,
        entropy: [u8; 32],
        view_names: &[&str],
        encryption_key_arg: Option<[u8; 32]>,
    ) -> Result<Self, IndexError> {
        // the system bee's blocks, encrypted as the system core stores them (its tree is the
        // one signed after a move)
        let scratch =
            scratch_core(encryption_key_arg.map(|ek| view_block_key(&bootstrap, &ek, "_system")))
                .await?;
        let pks = [key_pair.public_key];
        let encryption_key = core_manifest_encrypted(
            &bootstrap,
            encryption_key_arg.as_ref(),
            &entropy,
            &pks,
            "_encryption",
            None,
        )
        .key();
        let base_encryption = encryption_key_arg;
        Ok(IndexerCores {
            bootstrap,
            key_pair,
            entropy,
            view_names: view_names.iter().map(|s| s.to_string()).collect(),
            scratch,
            bee: None,
            system: None,
            view_keys: Vec::new(),
            views: Vec::new(),
            encryption_key,
            checkpoint: LocalCheckpoint::default(),
            pending: None,
            failed: None,
            view_prefix: Vec::new(),
            seeding: None,
            multi: None,
            skipped: None,
            base_encryption,
        })
    }

    /// The options of core `name`'s manifest `m`, signed by this indexer, encrypted with the
    /// name's view block key in an encrypted base.
    fn core_options(&self, m: Manifest, name: &str) -> GetOptions {
        self.moved_options(m, name)
            .with_key_pair(self.key_pair.clone())
    }

    /// The options of core `name`'s manifest `m` (signed by a quorum of the indexers), with
    /// the name's view block key in an encrypted base (JS `getViewCore`: `encryption:
    /// getEncryption(name)`, the same block key before and after a move).
    fn moved_options(&self, m: Manifest, name: &str) -> GetOptions {
        let o = GetOptions::from_manifest(m);
        match self.block_key(name) {
            Some(bk) => o.with_block_encryption_key(bk),
            None => o,
        }
    }

    /// The options of the core `key` (its manifest known from the peers), with the name's view
    /// block key in an encrypted base.
    fn key_options(&self, key: [u8; 32], name: &str) -> GetOptions {
        let o = GetOptions::from_key(key);
        match self.block_key(name) {
            Some(bk) => o.with_block_encryption_key(bk),
            None => o,
        }
    }

    /// The view block key of core `name` in an encrypted base (none for `_encryption`, which
    /// JS does not encrypt).
    fn block_key(&self, name: &str) -> Option<[u8; 32]> {
        self.base_encryption
            .filter(|_| name != "_encryption")
            .map(|ek| view_block_key(&self.bootstrap, &ek, name))
    }

    /// The manifest of core `name` for these indexers, moved when `blocks[..at]` were indexed.
    fn manifest_of<B: AsRef<[u8]>>(
        &self,
        pks: &[[u8; 32]],
        name: &str,
        blocks: &[B],
        at: u64,
    ) -> Manifest {
        self.moved_manifest(&self.entropy, pks, name, blocks, at)
    }

    /// The manifest of core `name` moved to the indexers `pks` when `blocks[..at]` (plain)
    /// were indexed (JS `_migrateView`): the encryption key in the namespace of an encrypted
    /// base, and the prologue the tree hash of the blocks as stored (encrypted with the name's
    /// view block key, JS `source.treeHash(indexedLength)`).
    fn moved_manifest<B: AsRef<[u8]>>(
        &self,
        entropy: &[u8; 32],
        pks: &[[u8; 32]],
        name: &str,
        blocks: &[B],
        at: u64,
    ) -> Manifest {
        let enc = self
            .base_encryption
            .map(|ek| view_encryption(&self.bootstrap, &ek, name));
        core_manifest_encrypted(
            &self.bootstrap,
            self.base_encryption.as_ref(),
            entropy,
            pks,
            name,
            prologue_encrypted(blocks, at, enc.as_ref()),
        )
    }

    /// The oplog core key of the writer that signs with this key pair (a version-1 manifest,
    /// one signer in the `entropy` namespace, as corestore gives it).
    fn writer_key(&self) -> [u8; 32] {
        let mut m = Manifest::default_signer(self.key_pair.public_key);
        m.signers[0].namespace = self.entropy;
        m.key()
    }

    /// Whether the cores moved to several indexers (or were seeded past such a move): their
    /// lengths are then what a quorum signed ([`Self::commit_signed`]).
    pub fn is_moved(&self) -> bool {
        self.multi.is_some()
    }

    /// The system core's key (before the first indexed batch: the bootstrap system key).
    pub fn system_key(&self) -> [u8; 32] {
        if let Some(m) = &self.multi {
            return m.system_key;
        }
        self.system
            .as_ref()
            .map_or_else(|| bootstrap_system_key(&self.bootstrap), |s| s.1)
    }

    /// The system core as this member holds it in the store, if it is open: after a move to
    /// several indexers (or [`Self::seed_from_point`]'s completion) the moved core, while
    /// [`Self::seed_from_point`] downloads the blocks below the point the core it asked for,
    /// else the core written here (`None` before the first indexed batch). Its peers announce
    /// their length of it (the room's signed system length as they know it).
    pub fn system_handle(&self) -> Option<&CoreHandle> {
        if let Some(m) = &self.multi {
            return Some(&m.system);
        }
        if let Some(h) = self.seeding.as_ref().and_then(|s| s.first()) {
            return Some(h);
        }
        self.system.as_ref().map(|s| &s.0)
    }

    /// The view cores' keys, by view id (empty before the first indexed batch).
    pub fn view_keys(&self) -> &[[u8; 32]] {
        &self.view_keys
    }

    /// The length of the system core a quorum of the indexers signed, as written in the store
    /// (after a move to several indexers; before, the length this indexer signed).
    pub fn committed_length<S: Storage + Clone + 'static>(&self, s: &Corestore<S>) -> u64 {
        match &self.multi {
            Some(m) => s.core(&m.system).map_or(0, |c| c.length()),
            None => self.signed_length(),
        }
    }

    /// The signed system length.
    pub fn signed_length(&self) -> u64 {
        self.pending
            .as_ref()
            .map_or(self.checkpoint.signed_length(), |p| p.0 .1)
    }

    /// For a member that fast-forwarded to `point` and so holds none of the cores' blocks below
    /// it: open the system and view cores the point names ([`FastForwardPoint::indexer_prefix`];
    /// after a move, the moved cores), ask the peers for their blocks below the point (the
    /// replication verifies them against the cores' signed trees) and, once every one is here,
    /// take them as this member's copy: the system bee continues from them, the views' trees
    /// hold them, and the cores as the point's indexers sign them are followed from there
    /// (written as a quorum signs them, moved at the next indexer change, signed by this member
    /// once it is an indexer), as for a member that linearized from the start.
    ///
    /// Returns whether the blocks are all here (`false`: call again later). Until then the
    /// engine's indexed batches past the point must be left in it (not taken by anyone), and
    /// [`Self::sync`] and [`Self::stamp`] not called. A point that does not name a view of
    /// `view_names` is [`IndexError::ViewNotListed`]. Call it on a new `IndexerCores`.
    pub async fn seed_from_point<S: Storage + Clone + 'static>(
        &mut self,
        s: &mut Corestore<S>,
        now: u64,
        point: &FastForwardPoint,
    ) -> Result<bool, IndexError> {
        if self.bee.is_some() {
            return Ok(true);
        }
        let names: Vec<&str> = self.view_names.iter().map(String::as_str).collect();
        let p = point.indexer_prefix(&names);
        let mut cores = vec![("_system".to_string(), p.system.0, p.system.1)];
        for (id, v) in p.views.iter().enumerate() {
            let Some((key, len)) = v else {
                return Err(IndexError::ViewNotListed(id));
            };
            cores.push((self.view_names[id].clone(), *key, *len));
        }
        if self.seeding.is_none() {
            let mut handles = Vec::new();
            for (name, key, len) in &cores {
                let h = s.get(self.key_options(*key, name)).await?;
                if *len > 0 {
                    if let Ok(r) = s.replicator_mut(&h) {
                        let _ = r.download(now, 0, Some(*len)).await;
                    }
                }
                handles.push(h);
            }
            self.seeding = Some(handles);
        }
        let handles = self.seeding.as_ref().map_or(&[][..], Vec::as_slice);
        for ((_, _, len), h) in cores.iter().zip(handles) {
            let c = s.core(h)?;
            if c.length() < *len || !(0..*len).all(|i| c.has(i)) {
                return Ok(false);
            }
        }
        let mut blocks_of = Vec::new();
        for ((_, _, len), h) in cores.iter().zip(handles) {
            let c = s.core(h)?;
            let mut blocks = Vec::with_capacity(*len as usize);
            for i in 0..*len {
                match c.get(i).await? {
                    Some(b) => blocks.push(b),
                    None => return Ok(false),
                }
            }
            blocks_of.push(blocks);
        }
        // the signers of the cores at the point
        let mut pks = Vec::new();
        let mut first_ns = None;
        for k in &p.indexers {
            let (pk, ns) = self.indexer_signer(s, k)?;
            first_ns.get_or_insert(ns);
            pks.push(pk);
        }
        let entropy = point.info.entropy.or(first_ns).unwrap_or(self.entropy);
        let mut handles = self.seeding.take().unwrap_or_default().into_iter();
        let system = handles.next().ok_or(IndexError::ViewNotListed(0))?;
        let mut views = Vec::new();
        self.view_keys.clear();
        self.view_prefix.clear();
        for (id, name) in self.view_names.iter().enumerate() {
            let (_, key, _) = cores[id + 1];
            let scratch = scratch_core(self.block_key(name)).await?;
            let blocks = &blocks_of[id + 1];
            let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
            if !refs.is_empty() {
                scratch.append(&refs).await?;
            }
            self.view_keys.push(key);
            self.view_prefix.push(blocks.clone());
            let Some(handle) = handles.next() else {
                return Err(IndexError::ViewNotListed(id));
            };
            views.push(Some(MovedView {
                handle,
                key,
                scratch,
            }));
        }
        // the system bee's blocks below the point: the bee continues from them
        let sys = &blocks_of[0];
        let refs: Vec<&[u8]> = sys.iter().map(Vec::as_slice).collect();
        if !refs.is_empty() {
            self.scratch.append(&refs).await?;
        }
        self.encryption_key = core_manifest_encrypted(
            &self.bootstrap,
            self.base_encryption.as_ref(),
            &entropy,
            &pks,
            "_encryption",
            None,
        )
        .key();
        self.multi = Some(Multi {
            indexers: p.indexers.clone(),
            quorum: p.quorum,
            system,
            system_key: p.system.0,
            views,
            infos: Vec::new(),
        });
        self.bee = Some(Hyperbee::new(self.scratch.clone()));
        Ok(true)
    }

    /// Write what `base` indexed since the last call into the cores and sign them.
    ///
    /// The indexed batches are taken from `base` by this call: after an error they are not in
    /// the cores, and this and every later call return [`IndexError::Failed`].
    pub async fn sync<S: Storage + Clone + 'static, A: Apply>(
        &mut self,
        s: &mut Corestore<S>,
        now: u64,
        base: &mut Autobase<A>,
    ) -> Result<(), IndexError> {
        if let Some(e) = &self.failed {
            return Err(IndexError::Failed(e.clone()));
        }
        let r = self.sync_inner(s, now, base).await;
        if let Err(e) = &r {
            self.failed = Some(e.to_string());
        }
        r
    }

    async fn sync_inner<S: Storage + Clone + 'static, A: Apply>(
        &mut self,
        s: &mut Corestore<S>,
        now: u64,
        base: &mut Autobase<A>,
    ) -> Result<(), IndexError> {
        let flushes = base.take_indexed_flushes();
        if self.multi.is_some() {
            return self.sync_multi(s, now, base, &flushes).await;
        }
        let pks = [self.key_pair.public_key];
        let opened = base.indexed_view_lengths().len();
        // after a batch that changes the indexers: the view lengths of the last batch written
        let mut cut_views: Option<Vec<(usize, u64)>> = None;
        for f in &flushes {
            if let Some(&id) = f.view_ids.iter().find(|&&id| id >= self.view_names.len()) {
                return Err(IndexError::ViewNotListed(id));
            }
        }
        if self.system.is_none() {
            if flushes.is_empty() {
                return Ok(());
            }
            // a writer that is not the bootstrap: it follows every move, and signs once it is
            // an indexer (JS writes the digest in every writer's entries)
            if self.writer_key() != self.bootstrap {
                self.bee = Some(Hyperbee::new(self.scratch.clone()));
                return self.sync_multi(s, now, base, &flushes).await;
            }
            // the indexers are writers (oplog core keys); ours is the default-signer manifest
            // of this key pair in the `entropy` namespace
            let indexers = &base.indexed_system().indexers;
            if !indexers.iter().any(|i| i.key == self.writer_key()) {
                return Err(IndexError::NotTheIndexer {
                    indexers: indexers.len(),
                });
            }
            // more than the bootstrap becoming the indexer (a restart after a later change):
            // every core as moved since
            let moves = flushes.iter().filter(|f| f.indexers_changed).count();
            if moves != 1 || indexers.len() != 1 {
                let bee = Hyperbee::new(self.scratch.clone());
                self.bee = Some(bee);
                return self.sync_multi(s, now, base, &flushes).await;
            }
            let Some((moved_at, moved_views)) = last_move(&flushes) else {
                return Ok(());
            };
            if let Some((id, name)) = self.view_names.iter().enumerate().nth(opened) {
                return Err(IndexError::ViewNotOpened {
                    id,
                    name: name.clone(),
                });
            }
            for (id, name) in self.view_names.iter().enumerate() {
                let at = moved_views.iter().find(|v| v.0 == id).map_or(0, |v| v.1);
                let blocks = base.views().blocks(id);
                let m = self.manifest_of(&pks, name, blocks, at);
                self.view_keys.push(m.key());
                let handle = s.get(self.core_options(m, name)).await?;
                // a stored core (a reopened store) keeps what it holds
                let written = s.core(&handle)?.length();
                self.views.push(Some(ViewCore { handle, written }));
            }
            let bee = Hyperbee::new(self.scratch.clone());
            write_flushes(&bee, &flushes, &self.view_keys).await?;
            self.bee = Some(bee);
            let mut head = Vec::new();
            for i in 0..moved_at {
                head.push(BeeCore::get(&self.scratch, i).await?.unwrap_or_default());
            }
            let m = self.manifest_of(&pks, "_system", &head, moved_at);
            let key = m.key();
            let handle = s.get(self.core_options(m, "_system")).await?;
            self.verify_stored(s, &handle, base).await?;
            self.system = Some((handle, key));
        } else {
            // write and sign the batches before the first that changes the indexers; from
            // there the cores move (`sync_multi`)
            let take = match flushes.iter().position(|f| f.indexers_changed) {
                Some(0) => return self.sync_multi(s, now, base, &flushes).await,
                Some(i) => {
                    let f = &flushes[i - 1];
                    cut_views = Some(
                        f.view_ids
                            .iter()
                            .zip(&f.info.views)
                            .map(|(&id, v)| (id, v.length))
                            .collect(),
                    );
                    i
                }
                None => flushes.len(),
            };
            if let Some(bee) = &self.bee {
                write_flushes(bee, &flushes[..take], &self.view_keys).await?;
            }
        }
        let Some((sys_handle, _)) = &self.system else {
            return Ok(());
        };
        // the system core: the bee's new blocks in one signed append
        let have = s.core(sys_handle)?.length();
        let want = self.scratch.state().await.length;
        if want > have {
            let mut blocks = Vec::with_capacity((want - have) as usize);
            for i in have..want {
                blocks.push(BeeCore::get(&self.scratch, i).await?.unwrap_or_default());
            }
            let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
            s.append(now, sys_handle, &refs).await?;
        }
        // the views: their indexed blocks
        let indexed = base.indexed_view_lengths();
        for (id, v) in self.views.iter_mut().enumerate() {
            let Some(v) = v else { continue };
            let len = match &cut_views {
                Some(c) => c.iter().find(|c| c.0 == id).map_or(0, |c| c.1),
                None => indexed.get(id).copied().unwrap_or(0) as u64,
            };
            if len <= v.written {
                continue;
            }
            // `len > 0` here, so apply opened view `id` (`indexed` has an entry per opened view)
            let start = base.views().start(id) as u64;
            let blocks = base.views().blocks(id);
            if len < start || v.written < start || len - start > blocks.len() as u64 {
                return Err(IndexError::ViewLength {
                    id,
                    indexed: len,
                    written: v.written,
                    start,
                });
            }
            let from = (v.written - start) as usize;
            let to = (len - start) as usize;
            let refs: Vec<&[u8]> = blocks[from..to].iter().map(Vec::as_slice).collect();
            s.append(now, &v.handle, &refs).await?;
            v.written += refs.len() as u64;
        }
        // sign what is indexed now (JS signs at the next local append)
        let sys_len = s.core(sys_handle)?.length();
        if sys_len > self.signed_length() {
            let sign = |key: &[u8; 32], th: &[u8; 32], len: u64| {
                (self.key_pair.sign(&signable(key, th, len, 0)), len)
            };
            let sc = s.core(sys_handle)?;
            let system = sign(sc.key(), &sc.tree_hash(), sys_len);
            let encryption = sign(&self.encryption_key, &hash_roots(&[]), 0);
            let ids: Vec<usize> = match &cut_views {
                Some(c) => c.iter().map(|c| c.0).collect(),
                None => base.indexed_system().views.iter().map(|v| v.0).collect(),
            };
            let mut user = Vec::new();
            for id in ids {
                let Some(v) = self.views.get(id).and_then(Option::as_ref) else {
                    return Err(IndexError::ViewNotListed(id));
                };
                let sig = if v.written > 0 {
                    let c = s.core(&v.handle)?;
                    Some(sign(c.key(), &c.tree_hash(), c.length()))
                } else {
                    None
                };
                user.push(sig);
            }
            self.pending = Some((system, encryption, user));
        }
        if cut_views.is_some() {
            if let Some(i) = flushes.iter().position(|f| f.indexers_changed) {
                return self.sync_multi(s, now, base, &flushes[i..]).await;
            }
        }
        Ok(())
    }

    /// The public key and signer namespace of the indexer `key`'s oplog (its core's manifest:
    /// ours from our key pair, another's from its replicated core).
    fn indexer_signer<S: Storage + Clone + 'static>(
        &self,
        s: &Corestore<S>,
        key: &[u8; 32],
    ) -> Result<([u8; 32], [u8; 32]), IndexError> {
        if *key == self.writer_key() {
            return Ok((self.key_pair.public_key, self.entropy));
        }
        s.open_core(&discovery_key(key))
            .and_then(|c| c.manifest())
            .and_then(|m| m.signers.first())
            .map(|sg| (sg.public_key, sg.namespace))
            .ok_or_else(|| IndexError::IndexerManifest(hex::encode(key)))
    }

    /// Write `flushes` after the cores moved to several indexers (or moved again), JS
    /// `_premigrate`: at each batch that changes the indexers every core gets the new indexers'
    /// manifest, with the prologue of what it held then (the views' blocks, the system core's
    /// blocks through that batch, whose `info` names the moved views); this indexer signs each
    /// core's tree at its indexed length (the next entries carry the signatures and the new
    /// system key), and the real cores take what a quorum signed ([`Self::commit_signed`]).
    async fn sync_multi<S: Storage + Clone + 'static, A: Apply>(
        &mut self,
        s: &mut Corestore<S>,
        now: u64,
        base: &mut Autobase<A>,
        flushes: &[hyperpunch_core::autobase::system::SystemFlush],
    ) -> Result<(), IndexError> {
        // as in `sync_inner`: a view the names lack would be keyed [0; 32] in the system bee
        for f in flushes {
            if let Some(&id) = f.view_ids.iter().find(|&&id| id >= self.view_names.len()) {
                return Err(IndexError::ViewNotListed(id));
            }
        }
        let Some(bee) = self.bee.clone() else {
            return Ok(());
        };
        for f in flushes {
            if f.indexers_changed {
                // the views move first: the batch's info names their new keys
                let mut indexers = Vec::new();
                let mut pks = Vec::new();
                let mut first_ns = None;
                for c in &f.info.indexers {
                    let (pk, ns) = self.indexer_signer(s, &c.key)?;
                    first_ns.get_or_insert(ns);
                    indexers.push(c.key);
                    pks.push(pk);
                }
                let entropy = f.info.entropy.or(first_ns).unwrap_or(self.entropy);
                let mut views: Vec<Option<MovedView>> = Vec::new();
                for (id, name) in self.view_names.iter().enumerate() {
                    let at = f
                        .view_ids
                        .iter()
                        .zip(&f.info.views)
                        .find(|(&v, _)| v == id)
                        .map_or(0, |(_, c)| c.length);
                    let blocks = self.view_blocks(base, id, at)?;
                    let m = self.moved_manifest(&entropy, &pks, name, &blocks, at);
                    let key = m.key();
                    let handle = s.get(self.moved_options(m, name)).await?;
                    fetch_all(s, now, &handle).await;
                    // encrypted as the core stores them: the tree this indexer signs
                    let scratch = scratch_core(self.block_key(name)).await?;
                    let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
                    scratch.append(&refs).await?;
                    if id < self.view_keys.len() {
                        self.view_keys[id] = key;
                    } else {
                        self.view_keys.push(key);
                    }
                    views.push(Some(MovedView {
                        handle,
                        key,
                        scratch,
                    }));
                }
                write_flushes(&bee, std::slice::from_ref(f), &self.view_keys).await?;
                let mut head = Vec::new();
                for i in 0..f.length {
                    head.push(BeeCore::get(&self.scratch, i).await?.unwrap_or_default());
                }
                let m = self.moved_manifest(&entropy, &pks, "_system", &head, f.length);
                let system_key = m.key();
                let system = s.get(self.moved_options(m, "_system")).await?;
                fetch_all(s, now, &system).await;
                self.encryption_key = core_manifest_encrypted(
                    &self.bootstrap,
                    self.base_encryption.as_ref(),
                    &entropy,
                    &pks,
                    "_encryption",
                    None,
                )
                .key();
                let n = pks.len();
                self.multi = Some(Multi {
                    indexers,
                    quorum: n.min(n / 2 + 1),
                    system,
                    system_key,
                    views,
                    infos: Vec::new(),
                });
            } else {
                write_flushes(&bee, std::slice::from_ref(f), &self.view_keys).await?;
            }
            if let Some(m) = &mut self.multi {
                let lens = f
                    .view_ids
                    .iter()
                    .zip(&f.info.views)
                    .map(|(&id, c)| (id, c.length))
                    .collect();
                m.infos.push((f.length, lens));
            }
        }
        let Some(m) = &self.multi else {
            return Ok(());
        };
        // the views' scratch copies take their indexed blocks
        let indexed = base.indexed_view_lengths();
        for (id, v) in m.views.iter().enumerate() {
            let Some(v) = v else { continue };
            let len = indexed.get(id).copied().unwrap_or(0) as u64;
            let have = v.scratch.length().await;
            if len > have {
                let blocks = self.view_blocks(base, id, len)?;
                let refs: Vec<&[u8]> = blocks[have as usize..].iter().map(Vec::as_slice).collect();
                v.scratch.append(&refs).await?;
            }
        }
        // sign what is indexed now, if this indexer is one of them (JS `localIndexer`)
        let sys_len = self.scratch.length().await;
        if m.indexers.contains(&self.writer_key()) && sys_len > self.signed_length() {
            let sign = |key: &[u8; 32], th: &[u8; 32], len: u64| {
                (self.key_pair.sign(&signable(key, th, len, 0)), len)
            };
            let th = self.scratch.lock().await.tree_hash();
            let system = sign(&m.system_key, &th, sys_len);
            let encryption = sign(&self.encryption_key, &hash_roots(&[]), 0);
            let mut user = Vec::new();
            for (id, _) in &base.indexed_system().views {
                let Some(v) = m.views.get(*id).and_then(Option::as_ref) else {
                    return Err(IndexError::ViewNotListed(*id));
                };
                let c = v.scratch.lock().await;
                user.push((c.length() > 0).then(|| sign(&v.key, &c.tree_hash(), c.length())));
            }
            self.pending = Some((system, encryption, user));
        }
        Ok(())
    }

    /// The first `len` blocks of view `id` (the engine holds them from its start, 0 for a base
    /// that was never fast-forwarded).
    fn view_blocks<A: Apply>(
        &self,
        base: &Autobase<A>,
        id: usize,
        len: u64,
    ) -> Result<Vec<Vec<u8>>, IndexError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let start = base.views().start(id) as u64;
        let blocks = base.views().blocks(id);
        // below a fast-forward point: the blocks read from the view core
        let prefix = self.view_prefix.get(id).map_or(&[][..], Vec::as_slice);
        if start != prefix.len() as u64 || len > start + blocks.len() as u64 {
            return Err(IndexError::ViewLength {
                id,
                indexed: len,
                written: 0,
                start,
            });
        }
        Ok(prefix
            .iter()
            .chain(blocks)
            .take(len as usize)
            .cloned()
            .collect())
    }

    /// After a move to several indexers: assemble what a quorum of them signed (their latest
    /// oplog entries' checkpoints and digests, ours included) into multisigs and write the
    /// moved cores up to there (JS `maybeSigned`, `_assembleMultisig`, then `commit` at the
    /// next flush). Returns the system length written. Indexers whose entries name another
    /// system key, or signed past what is indexed here, wait (as in JS).
    ///
    /// What other indexers sent cannot end the signing: a checkpoint that does not cover the
    /// length to commit, or a multisig that does not verify (a forged or stale signature),
    /// skips this round (JS drops the round, `maybeSigned().catch(noop)`) and the next call
    /// tries again with their newer entries; [`Self::take_skip_warning`] says why, once per
    /// reason. Only a failure of the store itself is an error.
    pub async fn commit_signed<S: Storage + Clone + 'static>(
        &mut self,
        s: &mut Corestore<S>,
        now: u64,
    ) -> Result<u64, IndexError> {
        match self.commit_round(s, now).await {
            Ok(Round::Committed(len)) => {
                self.skipped = None;
                Ok(len)
            }
            Ok(Round::Waiting(len)) => Ok(len),
            Err(e) if peer_fault(&e) => {
                let why = e.to_string();
                if self.skipped.as_ref().map(|w| &w.0) != Some(&why) {
                    self.skipped = Some((why, true));
                }
                Ok(self.committed_length(s))
            }
            Err(e) => Err(e),
        }
    }

    /// Why the last rounds of [`Self::commit_signed`] were skipped (a checkpoint of another
    /// indexer that did not verify): `Some` once per new reason, for a warning.
    pub fn take_skip_warning(&mut self) -> Option<String> {
        match &mut self.skipped {
            Some((why, fresh)) if *fresh => {
                *fresh = false;
                Some(why.clone())
            }
            _ => None,
        }
    }

    async fn commit_round<S: Storage + Clone + 'static>(
        &mut self,
        s: &mut Corestore<S>,
        now: u64,
    ) -> Result<Round, IndexError> {
        let Some(m) = &mut self.multi else {
            return Ok(Round::Waiting(self.signed_length()));
        };
        let committed = s.core(&m.system)?.length();
        // the views a multisig covers, at the lengths that may still be committed
        m.infos.retain(|(l, _)| *l > committed);
        let wait = Ok(Round::Waiting(committed));
        let m = &*m;
        let indexed = self.scratch.length().await;
        let mut chks = Vec::new();
        for (signer, key) in m.indexers.iter().enumerate() {
            if let Some(r) = read_remote(s, key).await {
                chks.push((signer as u64, r));
            }
        }
        if chks.len() < m.quorum {
            return wait;
        }
        chks.sort_by_key(|c| c.1.system.1);
        let thres = chks.len() - m.quorum;
        let signable = chks[thres].1.system.1;
        if signable <= committed || signable > indexed {
            return wait;
        }
        let top = &chks[thres..];
        if top
            .iter()
            .any(|(_, r)| r.digest != m.system_key || r.system.1 > indexed)
        {
            return wait;
        }
        let Some((_, views)) = m.infos.iter().find(|(l, _)| *l == signable) else {
            return wait;
        };
        // the views (JS commits them before the system core), then the system core
        for (pos, &(id, len)) in views.iter().enumerate() {
            let Some(v) = m.views.get(id).and_then(Option::as_ref) else {
                continue;
            };
            let have = s.core(&v.handle)?.length();
            if len <= have {
                continue;
            }
            let scratch = v.scratch.lock().await;
            let mut parts = Vec::new();
            for (signer, r) in top {
                let Some(Some((sig, at))) = r.user.get(pos) else {
                    return wait;
                };
                // a signature below the length to commit (JS: a partial that fails to verify)
                // or past what is indexed here: not this round
                if *at < len || *at > scratch.length() {
                    return wait;
                }
                parts.push(scratch.partial_signature(*signer, len, *at, *sig).await?);
            }
            let verifier = scratch_verifier(s, &v.handle)?;
            let signature = verifier.assemble(&parts);
            let mut blocks = Vec::new();
            for i in have..len {
                blocks.push(scratch.get(i).await?.unwrap_or_default());
            }
            drop(scratch);
            let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
            s.append_signed(now, &v.handle, &refs, &signature).await?;
        }
        let sys = self.scratch.lock().await;
        let mut parts = Vec::new();
        for (signer, r) in top {
            parts.push(
                sys.partial_signature(*signer, signable, r.system.1, r.system.0)
                    .await?,
            );
        }
        let signature = scratch_verifier(s, &m.system)?.assemble(&parts);
        let mut blocks = Vec::new();
        for i in committed..signable {
            blocks.push(sys.get(i).await?.unwrap_or_default());
        }
        drop(sys);
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        s.append_signed(now, &m.system, &refs, &signature).await?;
        if let Some(m) = &mut self.multi {
            m.infos.retain(|(l, _)| *l > signable);
        }
        Ok(Round::Committed(signable))
    }

    /// Check, once after opening, that the stored cores hold a prefix of what the replay gives:
    /// the system core's blocks against the system bee built from the replay, each view's
    /// against the engine's blocks (those before the engine's first block in memory are not
    /// checked). The local oplog entry is appended after the cores are written, so a run that
    /// stopped in between left blocks no oplog entry backs; signing them would sign a state no
    /// reader can reproduce.
    async fn verify_stored<S: Storage + Clone + 'static, A: Apply>(
        &self,
        s: &Corestore<S>,
        sys_handle: &CoreHandle,
        base: &Autobase<A>,
    ) -> Result<(), IndexError> {
        let sys = s.core(sys_handle)?;
        let have = sys.length();
        let want = self.scratch.state().await.length;
        for i in 0..have {
            let ours = if i < want {
                BeeCore::get(&self.scratch, i).await?
            } else {
                None
            };
            if ours.is_none() || sys.get(i).await? != ours {
                return Err(IndexError::StoredMismatch {
                    core: "_system".into(),
                    stored: have,
                    replayed: want,
                    at: i,
                });
            }
        }
        let indexed = base.indexed_view_lengths();
        for (id, v) in self.views.iter().enumerate() {
            let Some(v) = v else { continue };
            let len = indexed.get(id).copied().unwrap_or(0) as u64;
            let mismatch = |at| IndexError::StoredMismatch {
                core: self.view_names[id].clone(),
                stored: v.written,
                replayed: len,
                at,
            };
            if v.written > len {
                return Err(mismatch(len));
            }
            if v.written == 0 {
                continue;
            }
            let start = base.views().start(id) as u64;
            let blocks = base.views().blocks(id);
            let core = s.core(&v.handle)?;
            for i in start..v.written {
                let ours = blocks.get((i - start) as usize);
                if ours.is_none() || core.get(i).await?.as_ref() != ours {
                    return Err(mismatch(i));
                }
            }
        }
        Ok(())
    }

    /// Reload what this writer's oplog says it signed last, as JS does when it opens (its
    /// `CheckpointCore` on the local core reads the latest entry, following its pointers): the
    /// next entries then point back to those signatures and that digest instead of writing them
    /// again, and nothing is signed again until more is indexed. An entry with no digest, or a
    /// pointer to an entry that is not here, leaves the state empty (as JS, which keeps none).
    pub async fn reload<S: Storage + Clone + 'static>(&mut self, s: &Corestore<S>) {
        let key = self.writer_key();
        let Some(len) = s.open_core(&discovery_key(&key)).map(|c| c.length()) else {
            return;
        };
        if len == 0 {
            return;
        }
        let Some(last) = entry(s, &key, len - 1).await else {
            return;
        };
        let Some(d) = last.digest else { return };
        let digest_at = len.saturating_sub(d.pointer);
        let digest = match d.key {
            Some(k) if d.pointer == 0 => k,
            _ => match digest_at.checked_sub(1) {
                Some(seq) => match entry(s, &key, seq).await.and_then(|m| m.digest?.key) {
                    Some(k) => k,
                    None => return,
                },
                None => return,
            },
        };
        let mut restored = (None, None, Vec::new());
        if let Some(chk) = &last.checkpoint {
            // each checkpointer here (0) or `checkpointer` entries back
            async fn at<S: Storage + Clone + 'static>(
                s: &Corestore<S>,
                key: &[u8; 32],
                len: u64,
                c: &Checkpointer,
                pick: impl Fn(&Checkpoint) -> Option<Checkpointer>,
            ) -> Option<Signed> {
                let at = len.checked_sub(c.checkpointer)?;
                let p = if c.checkpointer == 0 {
                    c.checkpoint?
                } else {
                    let m = entry(s, key, at.checked_sub(1)?).await?;
                    pick(m.checkpoint.as_ref()?)?.checkpoint?
                };
                Some(Signed {
                    signature: p.signature,
                    length: p.length,
                    at,
                })
            }
            if let Some(c) = &chk.system {
                restored.0 = at(s, &key, len, c, |c| c.system).await;
            }
            if let Some(c) = &chk.encryption {
                restored.1 = at(s, &key, len, c, |c| c.encryption).await;
            }
            for (i, u) in chk.user.iter().flatten().enumerate() {
                let v = at(s, &key, len, u, |c| {
                    c.user.as_ref().and_then(|u| u.get(i).copied())
                })
                .await;
                restored.2.push(v);
            }
        }
        self.checkpoint = LocalCheckpoint::restore(
            restored.0,
            restored.1,
            restored.2,
            Some((digest, digest_at)),
        );
        self.pending = None;
    }

    /// Whether this indexer's latest checkpoint signs less of the views than `base` indexed
    /// (JS `shouldWrite`, [`LocalCheckpoint::lags`]) and its next entry would carry new
    /// signatures (made by [`IndexerCores::sync`], not written yet): then its ack timer writes
    /// one ([`Autobase::poll_ack`]'s `signed_behind`). A lag that no entry can fix (signing
    /// stuck after a failed sync, a listed view this indexer never signs) asks for nothing: the
    /// timer would ack at every run. JS signs at the append itself, so its new entry always
    /// carries what is indexed.
    pub fn lags<A: Apply>(&self, base: &Autobase<A>) -> bool {
        if self.pending.is_none() {
            return false;
        }
        let views: Vec<u64> = base.indexed_system().views.iter().map(|v| v.1).collect();
        self.checkpoint.lags(&views)
    }

    /// Fill the checkpoints and digests of `msgs`, the next entries of the local oplog, which
    /// holds `local_length` entries before them.
    pub fn stamp(&mut self, msgs: &mut [OplogMessage], local_length: u64) {
        let key = self.system_key();
        // the indexed system lists this writer as its indexer once the first batch is written
        let local_indexer = match &self.multi {
            Some(m) => m.indexers.contains(&self.writer_key()),
            None => self.system.is_some(),
        };
        let sigs = if msgs.is_empty() {
            None
        } else {
            self.pending.take()
        };
        self.checkpoint
            .stamp_batch(msgs, local_length, sigs, local_indexer, key);
    }
}

/// Download every block of a moved core that other indexers write (another indexer may
/// write a quorum's signature first: our core then takes that length from it, and should
/// hold the blocks to serve them too).
async fn fetch_all<S: Storage + Clone + 'static>(s: &mut Corestore<S>, now: u64, h: &CoreHandle) {
    if let Ok(r) = s.replicator_mut(h) {
        let _ = r.download(now, 0, None).await;
    }
}

/// An in-memory core for a tree this indexer signs (its manifest does not matter), its blocks
/// encrypted with `block_key` as an encrypted base's core stores them (the tree hashes the
/// stored bytes; reads decrypt).
async fn scratch_core(block_key: Option<[u8; 32]>) -> Result<Session<MemoryStorage>, IndexError> {
    let mut core = Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[0; 32])),
            ..Default::default()
        },
    )
    .await?;
    if let Some(bk) = block_key {
        core.set_block_encryption_key(bk);
    }
    Ok(core.into_session())
}

/// The verifier of a stored core (its manifest's), to assemble a multisig for it.
fn scratch_verifier<S: Storage + Clone + 'static>(
    s: &Corestore<S>,
    h: &CoreHandle,
) -> Result<Verifier, IndexError> {
    let c = s.core(h)?;
    let m = c
        .manifest()
        .cloned()
        .ok_or_else(|| IndexError::IndexerManifest(hex::encode(c.key())))?;
    Ok(Verifier::for_core(*c.key(), m))
}

/// Entry `seq` of the oplog `key`, if stored here.
async fn entry<S: Storage + Clone + 'static>(
    s: &Corestore<S>,
    key: &[u8; 32],
    seq: u64,
) -> Option<OplogMessage> {
    let c = s.open_core(&discovery_key(key))?;
    let b = c.get(seq).await.ok()??;
    OplogMessage::from_bytes(&b).ok()
}

/// The latest signatures and system key in the oplog `key` (JS `CheckpointCore`: from its
/// latest entry, following the pointers back); `None` when that entry carries no digest or no
/// system signature, or an entry it points to is not here.
async fn read_remote<S: Storage + Clone + 'static>(
    s: &Corestore<S>,
    key: &[u8; 32],
) -> Option<Remote> {
    let len = s.open_core(&discovery_key(key))?.length();
    let last = entry(s, key, len.checked_sub(1)?).await?;
    let d = last.digest?;
    let digest = match d.key {
        Some(k) if d.pointer == 0 => k,
        _ => {
            let at = len.checked_sub(d.pointer)?.checked_sub(1)?;
            entry(s, key, at).await?.digest?.key?
        }
    };
    let chk = last.checkpoint.clone()?;
    // a checkpointer here or `checkpointer` entries back
    async fn resolve<S: Storage + Clone + 'static>(
        s: &Corestore<S>,
        key: &[u8; 32],
        len: u64,
        c: &Checkpointer,
        pick: impl Fn(&Checkpoint) -> Option<Checkpointer>,
    ) -> Option<([u8; 64], u64)> {
        if c.checkpointer == 0 {
            return c.checkpoint.map(|p| (p.signature, p.length));
        }
        let at = len.checked_sub(c.checkpointer)?.checked_sub(1)?;
        let m = entry(s, key, at).await?;
        let p = pick(m.checkpoint.as_ref()?)?.checkpoint?;
        Some((p.signature, p.length))
    }
    let system = resolve(s, key, len, chk.system.as_ref()?, |c| c.system).await?;
    let mut user = Vec::new();
    for (i, u) in chk.user.iter().flatten().enumerate() {
        user.push(
            resolve(s, key, len, u, |c| {
                c.user.as_ref().and_then(|u| u.get(i).copied())
            })
            .await,
        );
    }
    Some(Remote {
        digest,
        system,
        user,
    })
}

#[cfg(test)]
#[path = "autobase_index_tests.rs"]
mod tests;
