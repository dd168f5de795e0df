//! Sessions: cheap, clonable handles that share one core (JS `core.session()`), and snapshot
//! sessions whose length, byte length and fork stay frozen (JS `core.snapshot()`).
//!
//! A [`Session`] wraps a [`Hypercore`] in an async lock (no I/O, no threads: it builds for
//! wasm32 like the rest of the core). Every live session sees every append, truncate or download
//! made through any other; a snapshot session reads the blocks it had until a truncation drops
//! below them, then fails with [`HypercoreError::SnapshotNotAvailable`].
//!
//! ```
//! # use hyperpunch_core::{crypto::KeyPair, storage::MemoryStorage};
//! # use hyperpunch_core::hypercore::{CreateOptions, Hypercore, Session};
//! # futures_executor::block_on(async {
//! let core = Hypercore::create(MemoryStorage::new(), CreateOptions {
//!     key_pair: Some(KeyPair::from_seed(&[1; 32])),
//!     ..Default::default()
//! }).await?;
//! let a = Session::new(core);
//! let b = a.session();
//! a.append(&[b"hello"]).await?;
//! let snap = b.snapshot().await;
//! b.append(&[b"world"]).await?;
//! assert_eq!(a.length().await, 2);
//! assert_eq!(snap.length().await, 1);
//! assert_eq!(snap.get(0).await?.as_deref(), Some(&b"hello"[..]));
//! # Ok::<(), hyperpunch_core::hypercore::HypercoreError>(())
//! # }).unwrap();
//! ```

use std::sync::Arc;

use async_lock::{Mutex, MutexGuard};

use super::core::{AppendOutcome, Hypercore, Snapshot};
use super::error::HypercoreError;
use super::messages::Data;
use super::proof::ProofRequest;
use crate::storage::Storage;

/// A handle on a shared core; see the module docs.
pub struct Session<S: Storage> {
    core: Arc<Mutex<Hypercore<S>>>,
    snapshot: Option<Snapshot>,
}

impl<S: Storage> Clone for Session<S> {
    fn clone(&self) -> Self {
        Session {
            core: self.core.clone(),
            snapshot: self.snapshot.clone(),
        }
    }
}

impl<S: Storage> core::fmt::Debug for Session<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}

impl<S: Storage> Session<S> {
    /// The first session of `core`.
    pub fn new(core: Hypercore<S>) -> Self {
        Session {
            core: Arc::new(Mutex::new(core)),
            snapshot: None,
        }
    }

    /// Another live session on the same core (JS `core.session()`).
    pub fn session(&self) -> Self {
        Session {
            core: self.core.clone(),
            snapshot: None,
        }
    }

    /// A snapshot session: frozen at the core's current length, byte length and fork (JS
    /// `core.snapshot()`). A snapshot of a snapshot is the same frozen view.
    pub async fn snapshot(&self) -> Self {
        let snapshot = match &self.snapshot {
            Some(s) => s.clone(),
            None => self.core.lock().await.snapshot(),
        };
        Session {
            core: self.core.clone(),
            snapshot: Some(snapshot),
        }
    }

    /// True for snapshot sessions.
    pub fn is_snapshot(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Exclusive access to the shared core, for everything this handle does not wrap (proofs,
    /// seeks, clear, ...). Hold it briefly: other sessions wait for it.
    pub async fn lock(&self) -> MutexGuard<'_, Hypercore<S>> {
        self.core.lock().await
    }

    /// The core's key.
    pub async fn key(&self) -> [u8; 32] {
        *self.core.lock().await.key()
    }

    /// Length: frozen for a snapshot, current otherwise.
    pub async fn length(&self) -> u64 {
        match &self.snapshot {
            Some(s) => s.length(),
            None => self.core.lock().await.length(),
        }
    }

    /// User-visible byte length: frozen for a snapshot, current otherwise.
    pub async fn byte_length(&self) -> u64 {
        match &self.snapshot {
            Some(s) => s.byte_length(),
            None => self.core.lock().await.byte_length(),
        }
    }

    /// Fork: frozen for a snapshot, current otherwise.
    pub async fn fork(&self) -> u64 {
        match &self.snapshot {
            Some(s) => s.fork(),
            None => self.core.lock().await.fork(),
        }
    }

    /// Block `index` (decrypted) as this session sees it.
    pub async fn get(&self, index: u64) -> Result<Option<Vec<u8>>, HypercoreError> {
        let core = self.core.lock().await;
        match &self.snapshot {
            Some(s) => core.get_at(s, index).await,
            None => core.get(index).await,
        }
    }

    /// The proof answering `req` as this session sees the core (JS `session.proof()`): a
    /// snapshot session proves its frozen tree ([`Hypercore::proof_at`]: upgrades reach its
    /// length with its signature), a live one the current tree ([`Hypercore::proof`]).
    pub async fn proof(&self, req: &ProofRequest) -> Result<Data, HypercoreError> {
        let core = self.core.lock().await;
        match &self.snapshot {
            Some(s) => core.proof_at(s, req).await,
            None => core.proof(req).await,
        }
    }

    /// Append to the shared core. Snapshot sessions are read-only
    /// ([`HypercoreError::NotWritable`]).
    pub async fn append(&self, blocks: &[&[u8]]) -> Result<AppendOutcome, HypercoreError> {
        if self.snapshot.is_some() {
            return Err(HypercoreError::NotWritable);
        }
        self.core.lock().await.append(blocks).await
    }

    /// Truncate the shared core (see [`Hypercore::truncate`]). Snapshot sessions are read-only.
    pub async fn truncate(&self, new_length: u64, fork: Option<u64>) -> Result<(), HypercoreError> {
        if self.snapshot.is_some() {
            return Err(HypercoreError::NotWritable);
        }
        self.core.lock().await.truncate(new_length, fork).await
    }
}

impl<S: Storage> Hypercore<S> {
    /// This core behind a clonable, shared handle: the first [`Session`] (JS
    /// `core.session()`; same as [`Session::new`]).
    pub fn into_session(self) -> Session<S> {
        Session::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;
    use crate::hypercore::core::CreateOptions;
    use crate::storage::MemoryStorage;
    use futures_executor::block_on;

    async fn session() -> Session<MemoryStorage> {
        let core = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[3; 32])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        Session::new(core)
    }

    #[test]
    fn sessions_share_one_core() {
        block_on(async {
            let a = session().await;
            let b = a.session();
            let c = b.clone();
            a.append(&[b"a0", b"a1"]).await.unwrap();
            b.append(&[b"b2"]).await.unwrap();
            c.append(&[b"c3"]).await.unwrap();
            for s in [&a, &b, &c] {
                assert_eq!(s.length().await, 4);
                assert_eq!(s.byte_length().await, 8);
                assert_eq!(s.get(2).await.unwrap().as_deref(), Some(&b"b2"[..]));
                assert_eq!(s.key().await, a.key().await);
            }
            // Interleaved: appends through one handle are read through another at once.
            for i in 0..20u8 {
                let (w, r) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
                w.append(&[&[i]]).await.unwrap();
                let len = r.length().await;
                assert_eq!(r.get(len - 1).await.unwrap(), Some(vec![i]));
            }
        });
    }

    /// A snapshot session proves its own tree after the core grew: the upgrade stops at its
    /// length with its signature and verifies on a fresh reader, which then holds its length;
    /// blocks past it are not in it; a live session proves the current tree. Once truncated
    /// below, the snapshot can no longer prove anything.
    #[test]
    fn snapshot_sessions_prove_their_own_tree() {
        use crate::hypercore::messages::{RequestBlock, RequestUpgrade};
        block_on(async {
            let a = session().await;
            a.append(&[b"a", b"bb", b"ccc", b"dddd"]).await.unwrap();
            let snap = a.snapshot().await;
            let sig = a.lock().await.signature().to_vec();
            a.append(&[b"e", b"ff", b"ggg"]).await.unwrap();
            let req = ProofRequest {
                block: Some(RequestBlock { index: 2, nodes: 0 }),
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: 4,
                }),
                ..ProofRequest::default()
            };
            let mut proof = snap.proof(&req).await.unwrap();
            proof.manifest = a.lock().await.manifest().cloned();
            let up = proof.upgrade.as_ref().unwrap();
            assert_eq!(up.signature, sig, "the snapshot's own signature");
            assert!(up.additional_nodes.is_empty());
            let key = a.key().await;
            let mut reader = Hypercore::create(
                MemoryStorage::new(),
                CreateOptions {
                    key: Some(key),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            reader.apply_proof(&proof).await.unwrap();
            assert_eq!(reader.length(), 4);
            assert_eq!(reader.get(2).await.unwrap().as_deref(), Some(&b"ccc"[..]));
            // The live core's proof of the same request reaches its whole tree instead.
            let live = a.proof(&req).await.unwrap();
            assert!(!live.upgrade.unwrap().additional_nodes.is_empty());
            let past = ProofRequest {
                block: Some(RequestBlock { index: 5, nodes: 0 }),
                ..ProofRequest::default()
            };
            assert!(snap.proof(&past).await.is_err());
            assert!(a.proof(&past).await.is_ok());
            a.truncate(3, None).await.unwrap();
            assert!(matches!(
                snap.proof(&req).await.unwrap_err(),
                HypercoreError::SnapshotNotAvailable { available: 3, .. }
            ));
        });
    }

    #[test]
    fn snapshot_sessions_are_frozen_and_read_only() {
        block_on(async {
            let a = session().await;
            a.append(&[b"x", b"yy", b"zzz"]).await.unwrap();
            let snap = a.snapshot().await;
            assert!(snap.is_snapshot() && !a.is_snapshot());
            let snap2 = snap.snapshot().await;
            a.append(&[b"more"]).await.unwrap();
            for s in [&snap, &snap2] {
                assert_eq!(s.length().await, 3);
                assert_eq!(s.byte_length().await, 6);
                assert_eq!(s.fork().await, 0);
                assert_eq!(s.get(1).await.unwrap().as_deref(), Some(&b"yy"[..]));
                assert!(matches!(
                    s.get(3).await.unwrap_err(),
                    HypercoreError::OutOfBounds { .. }
                ));
            }
            assert_eq!(
                snap.append(&[b"no"]).await.unwrap_err(),
                HypercoreError::NotWritable
            );
            assert_eq!(
                snap.truncate(0, None).await.unwrap_err(),
                HypercoreError::NotWritable
            );
            // A truncate below the snapshot: what it still covers reads, the rest is gone.
            a.truncate(2, None).await.unwrap();
            a.append(&[b"new"]).await.unwrap();
            assert_eq!(a.fork().await, 1);
            assert_eq!(snap.fork().await, 0);
            assert_eq!(snap.get(1).await.unwrap().as_deref(), Some(&b"yy"[..]));
            assert!(matches!(
                snap.get(2).await.unwrap_err(),
                HypercoreError::SnapshotNotAvailable { index: 2, .. }
            ));
            assert_eq!(a.get(2).await.unwrap().as_deref(), Some(&b"new"[..]));
        });
    }
}
