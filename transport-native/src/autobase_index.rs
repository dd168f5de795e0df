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
//! indexers later is refused ([`IndexError::IndexersChanged`]).

use hyperpunch_core::autobase::cores::{
    bootstrap_system_key, core_manifest, last_move, prologue, write_flushes, LocalCheckpoint,
    Signatures,
};
use hyperpunch_core::autobase::messages::OplogMessage;
use hyperpunch_core::autobase::{Apply, Autobase};
use hyperpunch_core::corestore::{CoreHandle, Corestore, CorestoreError, GetOptions};
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hyperbee::{source::BeeCore, BeeError, Hyperbee};
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
        })
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
    pub async fn sync<S: Storage + Clone + 'static, A: Apply>(
        &mut self,
        s: &mut Corestore<S>,
        now: u64,
        base: &mut Autobase<A>,
    ) -> Result<(), IndexError> {
        let flushes = base.take_indexed_flushes();
        let pks = [self.key_pair.public_key];
        if self.system.is_none() {
            if flushes.is_empty() {
                return Ok(());
            }
            let (moved_at, moved_views) = last_move(&flushes).ok_or(IndexError::IndexersChanged)?;
            if flushes
                .iter()
                .skip_while(|f| f.length < moved_at)
                .skip(1)
                .any(|f| f.indexers_changed)
            {
                return Err(IndexError::IndexersChanged);
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
            self.system = Some((handle, key));
        } else {
            if flushes.iter().any(|f| f.indexers_changed) {
                return Err(IndexError::IndexersChanged);
            }
            if let Some(bee) = &self.bee {
                write_flushes(bee, &flushes, &self.view_keys).await?;
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
            let len = indexed.get(id).copied().unwrap_or(0) as u64;
            if len <= v.written {
                continue;
            }
            let start = base.views().start(id) as u64;
            let blocks = base.views().blocks(id);
            let from = (v.written.max(start) - start) as usize;
            let to = ((len - start) as usize).min(blocks.len());
            let refs: Vec<&[u8]> = blocks[from..to].iter().map(Vec::as_slice).collect();
            s.append(now, &v.handle, &refs).await?;
            v.written = len;
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
            let last = base.indexed_system().clone();
            let mut user = Vec::new();
            for &(id, _) in &last.views {
                let sig = match self.views.get(id).and_then(Option::as_ref) {
                    Some(v) if v.written > 0 => {
                        let c = s.core(&v.handle)?;
                        Some(sign(c.key(), &c.tree_hash(), c.length()))
                    }
                    _ => None,
                };
                user.push(sig);
            }
            self.pending = Some((system, encryption, user));
        }
        Ok(())
    }

    /// Fill the checkpoints and digests of `msgs`, the next entries of the local oplog, which
    /// holds `local_length` entries before them.
    pub fn stamp(&mut self, msgs: &mut [OplogMessage], local_length: u64) {
        let key = self.system_key();
        let n = msgs.len() as u64;
        if let Some(p) = self.pending.take() {
            self.checkpoint.update(local_length + n, p);
        }
        for (i, m) in msgs.iter_mut().enumerate() {
            self.checkpoint.stamp(m, local_length + i as u64 + 1, key);
        }
    }
}
