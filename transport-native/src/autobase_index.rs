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

use hyperpunch_core::autobase::cores::{
    bootstrap_system_key, core_manifest, last_move, prologue, write_flushes, LocalCheckpoint,
    Signatures, Signed,
};
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
        let scratch = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[0; 32])),
                ..Default::default()
            },
        )
        .await?
        .into_session();
        let pks = [key_pair.public_key];
        let encryption_key = core_manifest(&bootstrap, &entropy, &pks, "_encryption", None).key();
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
            multi: None,
            skipped: None,
        })
    }

    /// The oplog core key of the writer that signs with this key pair (a version-1 manifest,
    /// one signer in the `entropy` namespace, as corestore gives it).
    fn writer_key(&self) -> [u8; 32] {
        let mut m = Manifest::default_signer(self.key_pair.public_key);
        m.signers[0].namespace = self.entropy;
        m.key()
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
                let m = core_manifest(
                    &self.bootstrap,
                    &self.entropy,
                    &pks,
                    name,
                    prologue(blocks, at),
                );
                self.view_keys.push(m.key());
                let handle = s
                    .get(GetOptions::from_manifest(m).with_key_pair(self.key_pair.clone()))
                    .await?;
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
            let m = core_manifest(
                &self.bootstrap,
                &self.entropy,
                &pks,
                "_system",
                prologue(&head, moved_at),
            );
            let key = m.key();
            let handle = s
                .get(GetOptions::from_manifest(m).with_key_pair(self.key_pair.clone()))
                .await?;
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
                    let m =
                        core_manifest(&self.bootstrap, &entropy, &pks, name, prologue(&blocks, at));
                    let key = m.key();
                    let handle = s.get(GetOptions::from_manifest(m)).await?;
                    fetch_all(s, now, &handle).await;
                    let scratch = scratch_core().await?;
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
                let m = core_manifest(
                    &self.bootstrap,
                    &entropy,
                    &pks,
                    "_system",
                    prologue(&head, f.length),
                );
                let system_key = m.key();
                let system = s.get(GetOptions::from_manifest(m)).await?;
                fetch_all(s, now, &system).await;
                self.encryption_key =
                    core_manifest(&self.bootstrap, &entropy, &pks, "_encryption", None).key();
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
        if start != 0 || len > blocks.len() as u64 {
            return Err(IndexError::ViewLength {
                id,
                indexed: len,
                written: 0,
                start,
            });
        }
        Ok(blocks[..len as usize].to_vec())
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

/// An in-memory core for a tree this indexer signs (its manifest does not matter).
async fn scratch_core() -> Result<Session<MemoryStorage>, IndexError> {
    Ok(Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[0; 32])),
            ..Default::default()
        },
    )
    .await?
    .into_session())
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
mod tests {
    use super::*;
    use hyperpunch_core::autobase::{ApplyNode, Host, Views};
    use hyperpunch_core::corestore::PrimaryKey;

    /// `add:` + 32 key bytes adds an indexer, `open:NAME` opens a view, anything else is
    /// appended to the view `view` (opened then).
    fn apply(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
        for n in nodes {
            if let Some(k) = n.value.strip_prefix(b"add:") {
                host.add_writer(k.try_into().unwrap(), true);
            } else if let Some(name) = n.value.strip_prefix(b"open:") {
                views.open(std::str::from_utf8(name).unwrap());
            } else if let Some(v) = n.value.strip_prefix(b"other:") {
                let id = views.open("other");
                views.append(id, v.to_vec());
            } else {
                let v = views.open("view");
                views.append(v, n.value.to_vec());
            }
        }
    }

    type Base = Autobase<fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>)>;

    struct Setup {
        store: Corestore<MemoryStorage>,
        local: [u8; 32],
        key_pair: KeyPair,
        entropy: [u8; 32],
        base: Base,
    }

    async fn setup() -> Setup {
        let mut store = Corestore::open(MemoryStorage::new(), PrimaryKey::Given([0x61; 32]))
            .await
            .unwrap();
        let h = store.get(GetOptions::named("local")).await.unwrap();
        let c = store.core(&h).unwrap();
        let key_pair = c.key_pair().unwrap().clone();
        let entropy = c.manifest().unwrap().signers[0].namespace;
        let local = *h.key();
        let mut base: Base = Autobase::new(local, apply);
        base.record_system();
        Setup {
            store,
            local,
            key_pair,
            entropy,
            base,
        }
    }

    impl Setup {
        fn append(&mut self, value: &[u8]) {
            self.base
                .append(&self.local, vec![value.to_vec()])
                .expect("writable");
            self.base.update();
        }
        async fn cores(&self, names: &[&str]) -> IndexerCores {
            IndexerCores::new(self.local, self.key_pair.clone(), self.entropy, names)
                .await
                .unwrap()
        }
        async fn sync(&mut self, cores: &mut IndexerCores) -> Result<(), IndexError> {
            cores.sync(&mut self.store, 0, &mut self.base).await
        }
    }

    #[tokio::test]
    async fn the_bootstrap_writes_its_view_and_signs_what_is_indexed() {
        let mut t = setup().await;
        let mut cores = t.cores(&["view"]).await;
        assert_eq!(
            cores.writer_key(),
            t.local,
            "the writer key of the key pair"
        );
        for i in 0..3u8 {
            t.append(&[b'v', i]);
            t.sync(&mut cores).await.unwrap();
        }
        let h = t
            .store
            .get(GetOptions::from_key(cores.view_keys()[0]))
            .await
            .unwrap();
        assert_eq!(t.store.core(&h).unwrap().length(), 3);
        assert_eq!(cores.signed_length(), t.base.indexed_system().length);
    }

    /// `t`'s writer (whose oplog so far is `log1`) and a second writer `b2` (key `k2`, just
    /// added as an indexer) exchange entries until `t` counts two indexers.
    fn exchange_until_two_indexers(
        t: &mut Setup,
        b2: &mut Base,
        k2: [u8; 32],
        mut log1: Vec<Vec<u8>>,
    ) {
        use hyperpunch_core::encoding::Encode;
        let mut log2 = Vec::new();
        let (mut fed1, mut fed2) = (0, 0);
        for step in 0..20u8 {
            while fed1 < log1.len() {
                b2.handle_block(&t.local, fed1 as u64, &log1[fed1]).unwrap();
                fed1 += 1;
            }
            b2.update();
            for m in b2.append(&k2, vec![vec![b'b', step]]).into_iter().flatten() {
                log2.push(m.to_bytes());
            }
            b2.update();
            while fed2 < log2.len() {
                t.base.handle_block(&k2, fed2 as u64, &log2[fed2]).unwrap();
                fed2 += 1;
            }
            for m in t.base.append(&t.local, vec![vec![b'a', step]]).unwrap() {
                log1.push(m.to_bytes());
            }
            t.base.update();
            if t.base.indexed_system().indexers.len() == 2 {
                break;
            }
        }
        assert_eq!(
            t.base.indexed_system().indexers.len(),
            2,
            "{}",
            t.base.explain()
        );
    }

    /// A second writer's oplog core in `t`'s store (so its manifest is known): its key and
    /// public key.
    async fn second_writer(t: &mut Setup) -> ([u8; 32], [u8; 32]) {
        let h = t.store.get(GetOptions::named("b2")).await.unwrap();
        let pk = t.store.core(&h).unwrap().manifest().unwrap().signers[0].public_key;
        (*h.key(), pk)
    }

    /// The entry stamped after a sync names the moved system core and carries this indexer's
    /// signature of its scratch tree at the indexed length.
    async fn assert_moved_and_signed(t: &mut Setup, cores: &mut IndexerCores, pks: &[[u8; 32]]) {
        use hyperpunch_core::autobase::messages::Node;
        let key = cores.system_key();
        assert_ne!(key, bootstrap_system_key(&t.local));
        let m = cores.multi.as_ref().expect("moved");
        let sys = t.store.core(&m.system).unwrap();
        let manifest = sys.manifest().unwrap();
        assert_eq!(manifest.key(), key);
        let signers: Vec<[u8; 32]> = manifest.signers.iter().map(|s| s.public_key).collect();
        assert_eq!(signers, pks, "the indexers' keys, in order");
        assert_eq!(manifest.quorum, 2);
        let len = t.base.indexed_system().length;
        assert!(manifest.prologue.map_or(0, |p| p.length) <= len);
        let mut msgs = [OplogMessage::new(Node {
            heads: vec![],
            batch: 1,
            value: Some(b"x".to_vec()),
        })];
        cores.stamp(&mut msgs, 9);
        assert_eq!(msgs[0].digest.unwrap().key, Some(key), "the new system key");
        let chk = msgs[0].checkpoint.clone().unwrap().system.unwrap();
        let c = chk.checkpoint.unwrap();
        assert_eq!(c.length, len, "signed at the indexed length");
        let th = cores.scratch.lock().await.tree_hash();
        // this signer's signature of the scratch tree (at the move the tree is the prologue's)
        if let Some(p) = manifest.prologue {
            if p.length == len {
                assert_eq!(p.hash, th, "the prologue is the tree at the move");
            }
        }
        assert!(hyperpunch_core::crypto::verify(
            &signable(&key, &th, len, 0),
            &c.signature,
            &t.key_pair.public_key
        ));
    }

    /// Two moves in the first sync (the bootstrap becoming the indexer, then a second indexer),
    /// as a restarted creator replays them: every core moves to the two indexers' manifest.
    #[tokio::test]
    async fn two_moves_before_the_first_sync_move_the_cores() {
        use hyperpunch_core::encoding::Encode;
        let mut t = setup().await;
        let mut cores = t.cores(&["view"]).await;
        let (k2, pk2) = second_writer(&mut t).await;
        // a second writer, added as an indexer; it becomes one when its first node is applied
        let mut b2: Base = Autobase::new(t.local, apply);
        let mut add = b"add:".to_vec();
        add.extend_from_slice(&k2);
        let mut log1 = Vec::new();
        for m in t.base.append(&t.local, vec![add]).unwrap() {
            log1.push(m.to_bytes());
        }
        t.base.update();
        exchange_until_two_indexers(&mut t, &mut b2, k2, log1);
        t.sync(&mut cores).await.unwrap();
        let pk1 = t.key_pair.public_key;
        assert_moved_and_signed(&mut t, &mut cores, &[pk1, pk2]).await;
    }

    /// An indexer whose oplog core is not here: its manifest is unknown, a typed error.
    #[tokio::test]
    async fn an_unknown_indexer_is_a_typed_error() {
        use hyperpunch_core::encoding::Encode;
        let mut t = setup().await;
        let mut cores = t.cores(&["view"]).await;
        let k2 = [7; 32];
        let mut b2: Base = Autobase::new(t.local, apply);
        let mut add = b"add:".to_vec();
        add.extend_from_slice(&k2);
        let mut log1 = Vec::new();
        for m in t.base.append(&t.local, vec![add]).unwrap() {
            log1.push(m.to_bytes());
        }
        t.base.update();
        exchange_until_two_indexers(&mut t, &mut b2, k2, log1);
        let e = t.sync(&mut cores).await.unwrap_err();
        assert!(matches!(e, IndexError::IndexerManifest(_)), "{e}");
    }

    /// After the first sync, a batch that adds a second indexer: the call that meets it writes
    /// and signs the batches before it into the first cores, then moves the cores and signs
    /// the moved ones; the next calls go on.
    #[tokio::test]
    async fn an_indexer_change_moves_the_cores() {
        use hyperpunch_core::encoding::Encode;
        let mut t = setup().await;
        let mut cores = t.cores(&["view"]).await;
        t.append(b"first");
        t.sync(&mut cores).await.unwrap();
        let first_key = cores.system_key();
        let (k2, pk2) = second_writer(&mut t).await;
        let mut b2: Base = Autobase::new(t.local, apply);
        let mut log1 = Vec::new();
        // the first entry again, for b2
        let mut replay: Base = Autobase::new(t.local, apply);
        for m in replay.append(&t.local, vec![b"first".to_vec()]).unwrap() {
            log1.push(m.to_bytes());
        }
        let mut add = b"add:".to_vec();
        add.extend_from_slice(&k2);
        for m in t.base.append(&t.local, vec![add]).unwrap() {
            log1.push(m.to_bytes());
        }
        t.base.update();
        exchange_until_two_indexers(&mut t, &mut b2, k2, log1);
        t.sync(&mut cores).await.unwrap();
        assert_ne!(cores.system_key(), first_key);
        let pk1 = t.key_pair.public_key;
        assert_moved_and_signed(&mut t, &mut cores, &[pk1, pk2]).await;
        // the first system core kept what was signed before the change
        let h = t.store.get(GetOptions::from_key(first_key)).await.unwrap();
        assert!(t.store.core(&h).unwrap().length() > 0);
        // nothing signed by a quorum yet: the moved system core is empty
        assert_eq!(cores.commit_signed(&mut t.store, 0).await.unwrap(), 0);
        t.append(b"later");
        t.sync(&mut cores).await.unwrap();
    }

    /// The cores moved to two indexers (this writer and a second one, `b2`, whose oplog core
    /// is in `t`'s store: its handle and key pair), with more indexed after the move.
    async fn moved_to_two() -> (Setup, IndexerCores, CoreHandle, KeyPair) {
        use hyperpunch_core::encoding::Encode;
        let mut t = setup().await;
        let mut cores = t.cores(&["view"]).await;
        t.append(b"first");
        t.sync(&mut cores).await.unwrap();
        let h2 = t.store.get(GetOptions::named("b2")).await.unwrap();
        let kp2 = t.store.core(&h2).unwrap().key_pair().unwrap().clone();
        let k2 = *h2.key();
        let mut b2: Base = Autobase::new(t.local, apply);
        let mut log1 = Vec::new();
        let mut replay: Base = Autobase::new(t.local, apply);
        for m in replay.append(&t.local, vec![b"first".to_vec()]).unwrap() {
            log1.push(m.to_bytes());
        }
        let mut add = b"add:".to_vec();
        add.extend_from_slice(&k2);
        for m in t.base.append(&t.local, vec![add]).unwrap() {
            log1.push(m.to_bytes());
        }
        t.base.update();
        exchange_until_two_indexers(&mut t, &mut b2, k2, log1);
        t.sync(&mut cores).await.unwrap();
        // what the engine indexes is the moved cores' prologues; more indexed after the move
        // (blocks the multisig must cover), as `sync_multi` records it: a system block and a
        // view block, and the views at that system length
        let m = cores.multi.as_mut().expect("moved");
        let v = m.views[0].as_ref().unwrap();
        v.scratch.append(&[b"v+"]).await.unwrap();
        let vlen = v.scratch.length().await;
        cores.scratch.append(&[b"s+"]).await.unwrap();
        let len = cores.scratch.length().await;
        m.infos.push((len, vec![(0, vlen)]));
        (t, cores, h2, kp2)
    }

    /// What the indexer with key pair `kp` signs of the moved cores as `cores` holds them.
    async fn signatures_of(cores: &IndexerCores, base: &Base, kp: &KeyPair) -> Signatures {
        let m = cores.multi.as_ref().unwrap();
        let sign =
            |key: &[u8; 32], th: &[u8; 32], len: u64| (kp.sign(&signable(key, th, len, 0)), len);
        let (th, len) = {
            let c = cores.scratch.lock().await;
            (c.tree_hash(), c.length())
        };
        let system = sign(&m.system_key, &th, len);
        let encryption = sign(&cores.encryption_key, &hash_roots(&[]), 0);
        let mut user = Vec::new();
        for (id, _) in &base.indexed_system().views {
            let v = m.views[*id].as_ref().unwrap();
            let c = v.scratch.lock().await;
            user.push((c.length() > 0).then(|| sign(&v.key, &c.tree_hash(), c.length())));
        }
        (system, encryption, user)
    }

    fn entry_msg() -> OplogMessage {
        OplogMessage::new(hyperpunch_core::autobase::messages::Node {
            heads: vec![],
            batch: 1,
            value: Some(b"x".to_vec()),
        })
    }

    /// Append one entry carrying `sigs` (and the system key) to the oplog core `h`.
    async fn append_checkpoint(
        t: &mut Setup,
        h: &CoreHandle,
        chk: &mut LocalCheckpoint,
        sigs: Signatures,
        key: [u8; 32],
    ) {
        use hyperpunch_core::encoding::Encode;
        let len = t.store.core(h).unwrap().length();
        let mut m = [entry_msg()];
        chk.stamp_batch(&mut m, len, Some(sigs), true, key);
        let b = m[0].to_bytes();
        t.store.append(0, h, &[&b[..]]).await.unwrap();
    }

    /// A checkpoint of the other indexer that does not verify (a forged system signature) or
    /// that signs a view below the length to commit skips that round only (JS drops the round,
    /// `maybeSigned().catch(noop)`): once its valid checkpoint arrives the quorum's multisig
    /// is written.
    #[tokio::test]
    async fn a_bad_checkpoint_skips_the_round_and_later_rounds_commit() {
        use hyperpunch_core::encoding::Encode;
        for case in ["forged system signature", "view signed below the length"] {
            let (mut t, mut cores, h2, kp2) = moved_to_two().await;
            let key = cores.system_key();
            let indexed = cores.scratch.length().await;
            // our entry: our signatures of what is indexed
            cores.pending = Some(signatures_of(&cores, &t.base, &t.key_pair).await);
            let local_h = t.store.get(GetOptions::named("local")).await.unwrap();
            let len = t.store.core(&local_h).unwrap().length();
            let mut m = [entry_msg()];
            cores.stamp(&mut m, len);
            let b = m[0].to_bytes();
            t.store.append(0, &local_h, &[&b[..]]).await.unwrap();
            // the other indexer's bad entry
            let good = signatures_of(&cores, &t.base, &kp2).await;
            let mut bad = good.clone();
            match case {
                "forged system signature" => bad.0 .0[0] ^= 1,
                _ => {
                    let v = bad.2[0].as_mut().expect("the view is signed");
                    assert!(v.1 > 0);
                    v.1 -= 1;
                }
            }
            let mut chk2 = LocalCheckpoint::default();
            append_checkpoint(&mut t, &h2, &mut chk2, bad, key).await;
            for _ in 0..2 {
                let r = cores.commit_signed(&mut t.store, 0).await;
                assert_eq!(r.unwrap(), 0, "{case}: the round is skipped");
            }
            if case == "forged system signature" {
                let w = cores.take_skip_warning();
                assert!(w.is_some_and(|w| w.contains("signature")), "{case}");
                assert_eq!(cores.take_skip_warning(), None, "{case}: told once");
            }
            // its next entry is valid: the quorum's signatures are written
            append_checkpoint(&mut t, &h2, &mut chk2, good, key).await;
            let r = cores.commit_signed(&mut t.store, 0).await;
            assert_eq!(r.unwrap(), indexed, "{case}");
            assert_eq!(cores.committed_length(&t.store), indexed, "{case}");
            let m = cores.multi.as_ref().unwrap();
            assert!(
                m.infos.iter().all(|(l, _)| *l > indexed),
                "{case}: committed lengths are trimmed"
            );
        }
    }

    /// After the move (here: a writer that is not an indexer follows the bootstrap's), a batch
    /// naming a view the names lack is refused before anything of it is put into the system
    /// bee (else its key would be [0; 32], silently).
    #[tokio::test]
    async fn after_a_move_a_view_the_names_lack_is_refused() {
        let mut t = setup().await;
        let mut cores =
            IndexerCores::new(t.local, KeyPair::from_seed(&[9; 32]), t.entropy, &["view"])
                .await
                .unwrap();
        t.append(b"first");
        t.sync(&mut cores).await.unwrap();
        assert!(cores.multi.is_some(), "moved");
        let before = cores.scratch.length().await;
        t.append(b"other:x");
        let e = t.sync(&mut cores).await.unwrap_err();
        assert!(matches!(e, IndexError::ViewNotListed(1)), "{e}");
        assert_eq!(
            cores.scratch.length().await,
            before,
            "nothing put in the bee"
        );
    }

    /// A key pair that is not the bootstrap's: a writer that is not an indexer, whose entries
    /// carry the system key and no checkpoint (JS `_appendLocalNodes` for a non-indexer).
    #[tokio::test]
    async fn a_writer_that_is_not_an_indexer_writes_the_digest_only() {
        use hyperpunch_core::autobase::messages::Node;
        let mut t = setup().await;
        let mut cores =
            IndexerCores::new(t.local, KeyPair::from_seed(&[9; 32]), t.entropy, &["view"])
                .await
                .unwrap();
        t.append(b"first");
        t.sync(&mut cores).await.unwrap();
        assert_eq!(cores.signed_length(), 0);
        let mut msgs = [OplogMessage::new(Node {
            heads: vec![],
            batch: 1,
            value: Some(b"x".to_vec()),
        })];
        cores.stamp(&mut msgs, 0);
        assert_eq!(msgs[0].checkpoint, None);
        assert_eq!(msgs[0].digest.unwrap().key, Some(cores.system_key()));
        assert_ne!(
            cores.system_key(),
            bootstrap_system_key(&t.local),
            "the indexed system"
        );
    }

    #[tokio::test]
    async fn a_view_not_opened_yet_is_an_error_and_later_syncs_refuse() {
        let mut t = setup().await;
        let mut cores = t.cores(&["view", "other"]).await;
        t.append(b"first");
        let e = t.sync(&mut cores).await.unwrap_err();
        assert!(
            matches!(&e, IndexError::ViewNotOpened { id: 1, name } if name == "other"),
            "{e}"
        );
        // the batches that call took are not in the cores: nothing more is written
        t.append(b"open:other");
        t.append(b"second");
        let e = t.sync(&mut cores).await.unwrap_err();
        assert!(matches!(e, IndexError::Failed(_)), "{e}");
        assert_eq!(cores.signed_length(), 0);
    }

    /// A run that wrote and signed the cores and stopped before appending its local entry: the
    /// restarted run replays an oplog without that entry, finds the stored cores ahead of (or
    /// different from) the replay and refuses to sign them.
    #[tokio::test]
    async fn stored_blocks_the_replay_lacks_are_not_signed() {
        for (case, after) in [
            ("crash, then nothing", None),
            ("crash, then other", Some(&b"other"[..])),
        ] {
            let mut t = setup().await;
            let mut cores = t.cores(&["view"]).await;
            t.append(b"v0");
            t.sync(&mut cores).await.unwrap();
            // the second entry: the cores are written, the entry is never stored
            t.append(b"v1");
            t.sync(&mut cores).await.unwrap();
            // restart: the same store, the oplog replayed without the lost entry
            let mut base: Base = Autobase::new(t.local, apply);
            base.record_system();
            t.base = base;
            t.append(b"v0");
            if let Some(v) = after {
                t.append(v);
            }
            let mut cores = t.cores(&["view"]).await;
            let e = t.sync(&mut cores).await.unwrap_err();
            assert!(
                matches!(&e, IndexError::StoredMismatch { .. }),
                "{case}: {e}"
            );
            assert_eq!(cores.signed_length(), 0, "{case}");
        }
    }

    /// A restart whose replay gives what the stored cores hold (and more) goes on signing.
    #[tokio::test]
    async fn a_restart_that_matches_the_stored_cores_signs_on() {
        let mut t = setup().await;
        let mut cores = t.cores(&["view"]).await;
        t.append(b"v0");
        t.sync(&mut cores).await.unwrap();
        let mut base: Base = Autobase::new(t.local, apply);
        base.record_system();
        t.base = base;
        t.append(b"v0");
        t.append(b"v1");
        let mut cores = t.cores(&["view"]).await;
        t.sync(&mut cores).await.unwrap();
        assert_eq!(cores.signed_length(), t.base.indexed_system().length);
        let h = t
            .store
            .get(GetOptions::from_key(cores.view_keys()[0]))
            .await
            .unwrap();
        assert_eq!(t.store.core(&h).unwrap().length(), 2);
    }

    /// A restart reloads what the local oplog says was signed last (JS `CheckpointCore` on the
    /// local core): the next entry points back to those signatures and to the digest instead
    /// of writing them again, and nothing is signed again until more is indexed.
    #[tokio::test]
    async fn a_restart_reloads_the_last_checkpoint() {
        use hyperpunch_core::autobase::messages::Node;
        use hyperpunch_core::encoding::Encode;
        let mut t = setup().await;
        let local_h = t.store.get(GetOptions::named("local")).await.unwrap();
        let mut cores = t.cores(&["view"]).await;
        let msg = || {
            OplogMessage::new(Node {
                heads: vec![],
                batch: 1,
                value: Some(b"x".to_vec()),
            })
        };
        // two entries: the first carries the signatures and the digest key
        t.append(b"v0");
        t.sync(&mut cores).await.unwrap();
        for _ in 0..2 {
            let len = t.store.core(&local_h).unwrap().length();
            let mut m = [msg()];
            cores.stamp(&mut m, len);
            let b = m[0].to_bytes();
            t.store.append(0, &local_h, &[&b[..]]).await.unwrap();
        }
        let signed = cores.signed_length();
        assert!(signed > 0);
        // restart: the same store, a new IndexerCores, the replay
        let mut base: Base = Autobase::new(t.local, apply);
        base.record_system();
        t.base = base;
        t.append(b"v0");
        let mut cores = t.cores(&["view"]).await;
        cores.reload(&t.store).await;
        assert_eq!(cores.signed_length(), signed, "reloaded");
        t.sync(&mut cores).await.unwrap();
        let mut m = [msg()];
        cores.stamp(&mut m, 2);
        let chk = m[0].checkpoint.clone().unwrap().system.unwrap();
        assert_eq!(chk.checkpointer, 2, "points back to the first entry");
        assert_eq!(chk.checkpoint, None);
        let d = m[0].digest.unwrap();
        assert_eq!((d.pointer, d.key), (2, None), "the digest points back too");
        // more indexed: signed again, in the new entry
        t.append(b"v1");
        t.sync(&mut cores).await.unwrap();
        let mut m = [msg()];
        cores.stamp(&mut m, 3);
        let chk = m[0].checkpoint.clone().unwrap().system.unwrap();
        assert_eq!(chk.checkpointer, 0);
        assert!(chk.checkpoint.unwrap().length > signed);
    }

    #[tokio::test]
    async fn a_view_the_names_lack_is_refused() {
        let mut t = setup().await;
        let mut cores = t.cores(&[]).await;
        t.append(b"first");
        let e = t.sync(&mut cores).await.unwrap_err();
        assert!(matches!(e, IndexError::ViewNotListed(0)), "{e}");
    }
}
