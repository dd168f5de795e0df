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
//! Covers a base whose only indexer is this one (the bootstrap); a batch that changes the
//! indexers later is refused ([`IndexError::IndexersChanged`]), and so is a key pair that is not
//! the indexer's ([`IndexError::NotTheIndexer`]). After any error the cores lack that call's
//! batches, so every later [`IndexerCores::sync`] refuses ([`IndexError::Failed`]).

use hyperpunch_core::autobase::cores::{
    bootstrap_system_key, core_manifest, last_move, prologue, write_flushes, LocalCheckpoint,
    Signatures,
};
use hyperpunch_core::autobase::messages::OplogMessage;
use hyperpunch_core::autobase::{Apply, Autobase};
use hyperpunch_core::corestore::{CoreHandle, Corestore, CorestoreError, GetOptions};
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hyperbee::{source::BeeCore, BeeError, Hyperbee};
use hyperpunch_core::hypercore::manifest::Manifest;
use hyperpunch_core::hypercore::session::Session;
use hyperpunch_core::hypercore::tree::hash_roots;
use hyperpunch_core::hypercore::verifier::signable;
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
    /// The indexers changed after the bootstrap (moving the cores again is not done).
    #[error("the indexers changed after the bootstrap: writing the moved cores is not supported")]
    IndexersChanged,
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
    /// Set when a `sync` met a batch that changes the indexers: what came before it is written
    /// and signed, every later call refuses.
    changed: bool,
}

impl IndexerCores {
    /// The cores of the base `bootstrap` whose indexer signs with `key_pair` (its oplog core's
    /// signer) and whose oplog manifest's signer namespace is `entropy`; `view_names`: the names
    /// of the views in the order apply opens them (their view ids).
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
            changed: false,
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
        self.system
            .as_ref()
            .map_or_else(|| bootstrap_system_key(&self.bootstrap), |s| s.1)
    }

    /// The view cores' keys, by view id (empty before the first indexed batch).
    pub fn view_keys(&self) -> &[[u8; 32]] {
        &self.view_keys
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
        if self.changed {
            return Err(IndexError::IndexersChanged);
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
            // one move only: the bootstrap becoming the indexer
            if flushes.iter().filter(|f| f.indexers_changed).count() != 1 {
                return Err(IndexError::IndexersChanged);
            }
            let (moved_at, moved_views) = last_move(&flushes).ok_or(IndexError::IndexersChanged)?;
            // the indexers are writers (oplog core keys); ours is the default-signer manifest
            // of this key pair in the `entropy` namespace
            let indexers = &base.indexed_system().indexers;
            if indexers.len() != 1 || indexers[0].key != self.writer_key() {
                return Err(IndexError::NotTheIndexer {
                    indexers: indexers.len(),
                });
            }
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
            // write and sign the batches before the first that changes the indexers (moving the
            // cores is not done); later calls refuse
            let take = match flushes.iter().position(|f| f.indexers_changed) {
                Some(0) => return Err(IndexError::IndexersChanged),
                Some(i) => {
                    let f = &flushes[i - 1];
                    cut_views = Some(
                        f.view_ids
                            .iter()
                            .zip(&f.info.views)
                            .map(|(&id, v)| (id, v.length))
                            .collect(),
                    );
                    self.changed = true;
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
        Ok(())
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

    /// Fill the checkpoints and digests of `msgs`, the next entries of the local oplog, which
    /// holds `local_length` entries before them.
    pub fn stamp(&mut self, msgs: &mut [OplogMessage], local_length: u64) {
        let key = self.system_key();
        // the indexed system lists this writer as its indexer once the first batch is written
        let local_indexer = self.system.is_some();
        let sigs = if msgs.is_empty() {
            None
        } else {
            self.pending.take()
        };
        self.checkpoint
            .stamp_batch(msgs, local_length, sigs, local_indexer, key);
    }
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

    #[tokio::test]
    async fn two_moves_before_the_first_sync_are_refused() {
        use hyperpunch_core::encoding::Encode;
        let mut t = setup().await;
        let mut cores = t.cores(&["view"]).await;
        // a second writer, added as an indexer; it becomes one when its first node is applied
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
        assert!(matches!(e, IndexError::IndexersChanged), "{e}");
    }

    /// After the first sync, a batch that adds a second indexer: the call that meets it writes
    /// and signs the batches before it (not the change), the next call refuses.
    #[tokio::test]
    async fn the_batches_before_an_indexer_change_are_signed() {
        use hyperpunch_core::encoding::Encode;
        let mut t = setup().await;
        let mut cores = t.cores(&["view"]).await;
        t.append(b"first");
        t.sync(&mut cores).await.unwrap();
        let k2 = [7; 32];
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
        let before = t.base.indexed_system().length;
        exchange_until_two_indexers(&mut t, &mut b2, k2, log1);
        t.sync(&mut cores).await.unwrap();
        let signed = cores.signed_length();
        assert!(signed >= before, "{signed} < {before}");
        assert!(
            signed < t.base.indexed_system().length,
            "the change is not signed"
        );
        let e = t.sync(&mut cores).await.unwrap_err();
        assert!(matches!(e, IndexError::IndexersChanged), "{e}");
    }

    #[tokio::test]
    async fn a_key_pair_that_is_not_the_indexers_is_refused() {
        let mut t = setup().await;
        let mut cores =
            IndexerCores::new(t.local, KeyPair::from_seed(&[9; 32]), t.entropy, &["view"])
                .await
                .unwrap();
        t.append(b"first");
        let e = t.sync(&mut cores).await.unwrap_err();
        assert!(
            matches!(e, IndexError::NotTheIndexer { indexers: 1 }),
            "{e}"
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

    #[tokio::test]
    async fn a_view_the_names_lack_is_refused() {
        let mut t = setup().await;
        let mut cores = t.cores(&[]).await;
        t.append(b"first");
        let e = t.sync(&mut cores).await.unwrap_err();
        assert!(matches!(e, IndexError::ViewNotListed(0)), "{e}");
    }
}
