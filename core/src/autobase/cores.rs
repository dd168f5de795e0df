//! The system core and the views as hypercores, as an indexer writes them (JS `AutoStore`,
//! `SystemView.flush`, `ApplyState._flush`), the sans-IO parts.
//!
//! * Keys: every autobase core (the system core `_system`, each user view) is keyed by the
//!   manifest JS `_createManifest` builds from the indexers' signing keys and a namespace per
//!   name ([`core_manifest`], built on [`super::fast_forward::view_manifest`] and
//!   [`super::fast_forward::view_namespace`]).
//! * Blocks: the system core is a hyperbee; each applied batch of the linear order is one bee
//!   batch (the member records that changed, then the `info` record), recorded by the engine
//!   ([`super::Autobase::record_system`], [`SystemFlush`]) and put here ([`write_flushes`]) with
//!   the view keys filled in; the same puts give the same blocks as JS, byte for byte. A view
//!   core's blocks are the values apply appended to it, in order.
//!
//! * Prologues: when an indexed batch changes the indexers (the bootstrap's first batch makes it
//!   the first indexer), JS moves each core to the new indexers' manifest with a prologue, the
//!   tree hash of the core's blocks at that point ([`prologue`]; none for an empty view).
//!
//! Only the indexed batches are written (the tip may still be reordered).

use super::fast_forward::{view_manifest, view_namespace_encrypted, INFO_KEY, MEMBERS_PREFIX};
use super::messages::{Checkout, Checkpoint, Checkpointer, Digest, IndexCheckpoint, OplogMessage};
use super::system::SystemFlush;
use crate::encoding::Encode;
use crate::hyperbee::{source::BeeCore, BeeError, Hyperbee};
use crate::hypercore::manifest::{Manifest, Prologue};
use crate::hypercore::tree::TreeBatch;

/// The manifest of the autobase core `name` (`_system`, or a user view's name) of a base whose
/// indexers sign with `indexer_public_keys` (version 1, as JS `_createManifest`), with the
/// `prologue` of the last move ([`prologue`]). `entropy`: the first indexer's oplog manifest's
/// signer namespace (autobase version 1).
pub fn core_manifest(
    bootstrap: &[u8; 32],
    entropy: &[u8; 32],
    indexer_public_keys: &[[u8; 32]],
    name: &str,
    prologue: Option<Prologue>,
) -> Manifest {
    core_manifest_encrypted(
        bootstrap,
        None,
        entropy,
        indexer_public_keys,
        name,
        prologue,
    )
}

/// [`core_manifest`] of a base encrypted with `encryption_key` (it enters the signers'
/// namespace, JS `_deriveNamespace`).
pub fn core_manifest_encrypted(
    bootstrap: &[u8; 32],
    encryption_key: Option<&[u8; 32]>,
    entropy: &[u8; 32],
    indexer_public_keys: &[[u8; 32]],
    name: &str,
    prologue: Option<Prologue>,
) -> Manifest {
    let ns = view_namespace_encrypted(bootstrap, encryption_key, entropy, name);
    view_manifest(1, prologue, indexer_public_keys, &ns)
}

/// [`prologue`] of a core whose blocks are stored encrypted with `encryption` at fork 0 (the
/// tree hashes the stored bytes): an encrypted base's view or system core, whose block key
/// depends only on the base and the name ([`super::encryption::view_encryption`]), so the
/// moved core's predecessor held exactly these bytes.
pub fn prologue_encrypted<B: AsRef<[u8]>>(
    blocks: &[B],
    length: u64,
    encryption: Option<&crate::hypercore::encryption::BlockEncryption>,
) -> Option<Prologue> {
    let Some(e) = encryption else {
        return prologue(blocks, length);
    };
    let n = usize::try_from(length).ok()?.min(blocks.len());
    let stored: Vec<Vec<u8>> = blocks[..n]
        .iter()
        .enumerate()
        .map(|(i, b)| e.encrypt(i as u64, 0, b.as_ref()))
        .collect();
    prologue(&stored, n as u64)
}

/// The prologue JS gives a core it moves to new indexers when it holds `length` indexed blocks:
/// the tree hash of `blocks[..length]` (JS `treeHash(length)`); none when `length` is 0.
pub fn prologue<B: AsRef<[u8]>>(blocks: &[B], length: u64) -> Option<Prologue> {
    let n = usize::try_from(length).ok()?.min(blocks.len());
    if n == 0 {
        return None;
    }
    let mut tree = TreeBatch::empty(0);
    for b in &blocks[..n] {
        tree.append(b.as_ref());
    }
    Some(Prologue {
        hash: tree.hash(),
        length: n as u64,
    })
}

/// Where the system core and each view were last moved (the last indexed batch that changed
/// the indexers, among `flushes` from the first): the system length, and each view id's length
/// then. `None` when no batch changed them.
pub fn last_move(flushes: &[SystemFlush]) -> Option<(u64, Vec<(usize, u64)>)> {
    let f = flushes.iter().rev().find(|f| f.indexers_changed)?;
    let views = f
        .view_ids
        .iter()
        .zip(&f.info.views)
        .map(|(&id, v)| (id, v.length))
        .collect();
    Some((f.length, views))
}

/// The hyperbee puts of one system batch, in JS's order: `(key, value)` with the member records'
/// keys under [`MEMBERS_PREFIX`] and the `info` record last, its views keyed by `view_keys[id]`.
pub fn flush_puts(flush: &SystemFlush, view_keys: &[[u8; 32]]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(flush.members.len() + 1);
    for (key, m) in &flush.members {
        let mut k = MEMBERS_PREFIX.to_vec();
        k.extend_from_slice(key);
        out.push((k, m.to_bytes()));
    }
    let mut info = flush.info.clone();
    info.views = flush
        .view_ids
        .iter()
        .zip(&flush.info.views)
        .map(|(&id, v)| Checkout {
            key: view_keys.get(id).copied().unwrap_or([0; 32]),
            length: v.length,
        })
        .collect();
    out.push((INFO_KEY.to_vec(), info.to_bytes()));
    out
}

/// Put `flushes` into the system bee `bee`, one bee batch each (JS `SystemView.flush`). The bee's
/// core must be the system core at the length the first batch starts from.
pub async fn write_flushes<C: BeeCore>(
    bee: &Hyperbee<C>,
    flushes: &[SystemFlush],
    view_keys: &[[u8; 32]],
) -> Result<(), BeeError> {
    for f in flushes {
        let mut batch = bee.batch();
        for (k, v) in flush_puts(f, view_keys) {
            batch.put(&k, &v).await?;
        }
        batch.flush().await?;
    }
    Ok(())
}

/// The key of the system core a base has before it has indexers (JS `getBootstrapSystemKey`: no
/// signers, a static prologue `H(bootstrap ‖ "_system")` at length 0).
pub fn bootstrap_system_key(bootstrap: &[u8; 32]) -> [u8; 32] {
    let mut data = bootstrap.to_vec();
    data.extend_from_slice(b"_system");
    Manifest {
        version: 1,
        hash: crate::hypercore::manifest::HASH_BLAKE2B,
        allow_patch: true,
        quorum: 0,
        signers: Vec::new(),
        prologue: Some(Prologue {
            hash: crate::crypto::hash(&data),
            length: 0,
        }),
        linked: None,
        user_data: None,
    }
    .key()
}

/// An indexer's signature of one core at a length, and the oplog length of the entry that
/// carries it (JS `{ signature, length, at }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// The partial signature (ed25519 over the core's signable).
    pub signature: [u8; 64],
    /// The signed length.
    pub length: u64,
    /// The 1-based oplog length of the entry holding it.
    pub at: u64,
}

/// What a local indexer puts in each oplog entry (JS `CheckpointCore` on the local writer:
/// `makeCheckpoints`, `makeDigest`): its latest signatures of the system, encryption and user
/// view cores, as checkpoints or pointers back to the entry holding them, and the system key as
/// a digest or a pointer back to it.
#[derive(Debug, Clone, Default)]
pub struct LocalCheckpoint {
    system: Option<Signed>,
    encryption: Option<Signed>,
    user: Vec<Option<Signed>>,
    digest: Option<([u8; 32], u64)>,
}

/// The signatures of one signing round: system, encryption and user views (`None` for a view
/// not indexed yet); each `(signature, length)`.
pub type Signatures = (
    ([u8; 64], u64),
    ([u8; 64], u64),
    Vec<Option<([u8; 64], u64)>>,
);

impl LocalCheckpoint {
    /// The state a writer's latest oplog entry records (JS `CheckpointCore.updateCheckpoints`
    /// on the local core when it opens): its signatures, each with the 1-based oplog length of
    /// the entry holding it, and the digest key with the length of the entry holding it.
    pub fn restore(
        system: Option<Signed>,
        encryption: Option<Signed>,
        user: Vec<Option<Signed>>,
        digest: Option<([u8; 32], u64)>,
    ) -> Self {
        LocalCheckpoint {
            system,
            encryption,
            user,
            digest,
        }
    }

    /// The signed system length (JS `signedLength()`).
    pub fn signed_length(&self) -> u64 {
        self.system.map_or(0, |s| s.length)
    }

    /// Whether this indexer's latest signatures sign less of the views than `indexed` (the
    /// indexed views' lengths, in the order of the system `info`'s views): then its next entry
    /// should carry new ones, so it acks even when `shouldAck` does not ask for it (JS
    /// `ApplyState.shouldWrite`, `SHOULD_SIGN_THRESHOLD` 0). No views indexed: `false`. JS also
    /// writes for an encryption core signed short of `info.encryptionLength`; the bases this
    /// handles (manifest version 1) have none.
    pub fn lags(&self, indexed: &[u64]) -> bool {
        if indexed.is_empty() {
            return false;
        }
        if indexed.len() > self.user.len() {
            return true;
        }
        indexed
            .iter()
            .zip(&self.user)
            .any(|(&len, s)| s.map_or(0, |s| s.length) < len)
    }

    /// Record signatures made for the entry at oplog length `at` (JS
    /// `updateInternalSignatures` + `updateUserSignatures`).
    pub fn update(&mut self, at: u64, sigs: Signatures) {
        let (sys, enc, user) = sigs;
        let mk = |(signature, length): ([u8; 64], u64)| Signed {
            signature,
            length,
            at,
        };
        self.system = Some(mk(sys));
        self.encryption = Some(mk(enc));
        let old = std::mem::take(&mut self.user);
        self.user = user
            .into_iter()
            .enumerate()
            .map(|(i, u)| u.map(mk).or_else(|| old.get(i).copied().flatten()))
            .collect();
    }

    /// Fill the checkpoints and digests of `msgs`, the next entries of the local oplog, which
    /// holds `local_length` entries before them, the system core being `system_key` (JS
    /// `_appendLocalNodes`, autobase 7.28.1 `lib/apply-state.js:1410-1437`).
    ///
    /// `sigs`, the signatures made for this append, are recorded at the batch's last entry
    /// (JS `signedAt = local.length + blocks.length`, updated only when `length === signedAt`),
    /// so the entries before it point back to the previous signatures. `local_indexer`: the
    /// indexed system lists this writer as an indexer (JS `localIndexer`); then every entry
    /// carries a checkpoint (all null before anything is signed, as JS `makeCheckpoints` returns
    /// an object of nulls, `lib/apply-state.js:92-98`), else only the digest
    /// (`lib/apply-state.js:1438-1444`).
    pub fn stamp_batch(
        &mut self,
        msgs: &mut [OplogMessage],
        local_length: u64,
        sigs: Option<Signatures>,
        local_indexer: bool,
        system_key: [u8; 32],
    ) {
        let signed_at = local_length + msgs.len() as u64;
        let mut sigs = if local_indexer { sigs } else { None };
        for (i, m) in msgs.iter_mut().enumerate() {
            let length = local_length + i as u64 + 1;
            if length == signed_at {
                if let Some(s) = sigs.take() {
                    self.update(length, s);
                }
            }
            self.stamp(m, length, local_indexer, system_key);
        }
    }

    /// Fill `msg`'s checkpoint and digest for the entry at oplog length `length`, the system core
    /// being `system_key` (JS `makeCheckpoints` / `makeDigest`; the checkpoint only for a local
    /// indexer).
    pub fn stamp(
        &mut self,
        msg: &mut OplogMessage,
        length: u64,
        local_indexer: bool,
        system_key: [u8; 32],
    ) {
        let mk = |s: &Option<Signed>| {
            s.map(|s| {
                let checkpointer = length.saturating_sub(s.at);
                Checkpointer {
                    checkpointer,
                    checkpoint: (checkpointer == 0).then_some(IndexCheckpoint {
                        signature: s.signature,
                        length: s.length,
                    }),
                }
            })
        };
        msg.checkpoint = local_indexer.then(|| Checkpoint {
            system: mk(&self.system),
            encryption: mk(&self.encryption),
            user: (!self.user.is_empty()).then(|| {
                self.user
                    .iter()
                    .map(|u| mk(u).unwrap_or_default())
                    .collect()
            }),
        });
        msg.digest = Some(match self.digest {
            Some((key, at)) if key == system_key => Digest {
                pointer: length.saturating_sub(at),
                key: None,
            },
            _ => {
                self.digest = Some((system_key, length));
                Digest {
                    pointer: 0,
                    key: Some(system_key),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autobase::messages::{Info, Member};
    use crate::autobase::{ApplyNode, Autobase, Host, Views};
    use crate::crypto::KeyPair;
    use crate::encoding::Decode;
    use crate::hypercore::{CreateOptions, Hypercore};
    use crate::storage::MemoryStorage;

    fn apply(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
        let v = views.open("view");
        for n in nodes {
            if let Some(k) = n.value.strip_prefix(b"add:") {
                host.add_writer(&k.try_into().unwrap(), false);
                continue;
            }
            views.append(v, n.value.to_vec());
        }
    }

    /// A single-writer base: one batch per node, each the writer's member record and the info
    /// record; the bee written from them holds the header, then those records, and its length
    /// is the system length the engine counts.
    /// JS `shouldWrite`: an indexer writes when its latest signatures sign less of a view
    /// than is indexed, or a view it never signed; not when nothing is indexed or it is even.
    #[test]
    fn a_checkpoint_lags_what_is_indexed() {
        let mut c = LocalCheckpoint::default();
        assert!(!c.lags(&[]), "no views indexed");
        assert!(c.lags(&[3]), "a view never signed");
        c.update(5, (([1; 64], 10), ([2; 64], 0), vec![Some(([3; 64], 3))]));
        assert!(!c.lags(&[3]));
        assert!(c.lags(&[4]), "the view grew");
        assert!(c.lags(&[3, 1]), "a new view");
        // a round that did not sign the view keeps the older signature
        c.update(6, (([1; 64], 12), ([2; 64], 0), vec![None]));
        assert!(!c.lags(&[3]));
    }

    #[test]
    fn flushes_fill_the_system_bee() {
        let kp = KeyPair::from_seed(&[3; 32]);
        let boot = kp.public_key;
        let mut base = Autobase::new(boot, apply);
        base.record_system();
        for i in 0..5u8 {
            base.append(&boot, vec![vec![b'a' + i]]).unwrap();
            base.update();
        }
        let flushes = base.take_indexed_flushes();
        assert!(!flushes.is_empty());
        assert!(
            flushes[0].indexers_changed,
            "the bootstrap became the indexer"
        );
        assert!(flushes[1..].iter().all(|f| !f.indexers_changed));
        assert_eq!(last_move(&flushes).unwrap().0, flushes[0].length);
        assert_eq!(flushes.last().unwrap().length, base.indexed_system().length);
        assert!(base.take_indexed_flushes().is_empty(), "taken once");
        let last = flushes.last().unwrap();
        assert_eq!(last.info.views.len(), 1);
        assert_eq!(last.view_ids, vec![0]);
        let puts = flush_puts(last, &[[9; 32]]);
        let (k, v) = puts.last().unwrap();
        assert_eq!(k.as_slice(), INFO_KEY);
        let info = Info::from_bytes(v).unwrap();
        assert_eq!(info.views[0].key, [9; 32]);
        assert_eq!(info.views[0].length, 5);
        let (mk, mv) = &puts[0];
        assert_eq!(&mk[2..], &boot);
        assert!(Member::from_bytes(mv).unwrap().is_indexer);

        futures_executor::block_on(async {
            let core = Hypercore::create(
                MemoryStorage::new(),
                CreateOptions {
                    key_pair: Some(kp),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            let bee = Hyperbee::new(core.into_session());
            write_flushes(&bee, &flushes, &[[9; 32]]).await.unwrap();
            assert_eq!(bee.version().await, base.indexed_system().length);
            let got = bee.get(INFO_KEY).await.unwrap().unwrap();
            assert_eq!(
                Info::from_bytes(got.value.as_deref().unwrap())
                    .unwrap()
                    .views[0]
                    .length,
                5
            );
        });
    }

    /// JS `makeCheckpoints` / `makeDigest`: the entry that carries new signatures holds them,
    /// later ones point back to it; the digest is written once per system key, then pointed to.
    #[test]
    fn checkpoints_and_digests_point_back() {
        use crate::autobase::messages::Node;
        let msg = || {
            OplogMessage::new(Node {
                heads: vec![],
                batch: 1,
                value: Some(b"x".to_vec()),
            })
        };
        let mut c = LocalCheckpoint::default();
        let mut m = msg();
        c.stamp(&mut m, 1, false, [1; 32]);
        assert_eq!(m.checkpoint, None, "not an indexer yet");
        assert_eq!(
            m.digest,
            Some(Digest {
                pointer: 0,
                key: Some([1; 32])
            })
        );
        c.update(3, (([7; 64], 5), ([8; 64], 0), vec![Some(([9; 64], 2))]));
        assert_eq!(c.signed_length(), 5);
        let mut m = msg();
        c.stamp(&mut m, 3, true, [1; 32]);
        let chk = m.checkpoint.clone().unwrap();
        assert_eq!(chk.system.unwrap().checkpointer, 0);
        assert_eq!(chk.system.unwrap().checkpoint.unwrap().length, 5);
        assert_eq!(
            chk.user.as_ref().unwrap()[0].checkpoint.unwrap().signature,
            [9; 64]
        );
        assert_eq!(
            m.digest,
            Some(Digest {
                pointer: 2,
                key: None
            })
        );
        let mut m = msg();
        c.stamp(&mut m, 4, true, [2; 32]);
        let chk = m.checkpoint.clone().unwrap();
        assert_eq!(chk.system.unwrap().checkpointer, 1);
        assert_eq!(chk.system.unwrap().checkpoint, None);
        assert_eq!(chk.encryption.unwrap().checkpointer, 1);
        assert_eq!(
            m.digest,
            Some(Digest {
                pointer: 0,
                key: Some([2; 32])
            }),
            "a new system key is written out"
        );
        // the encoded entry decodes to the same
        let bytes = m.to_bytes();
        assert_eq!(OplogMessage::from_bytes(&bytes).unwrap(), m);
        assert_ne!(
            bootstrap_system_key(&[1; 32]),
            bootstrap_system_key(&[2; 32])
        );
    }

    /// A batch of three entries appended with new signatures, as JS `_appendLocalNodes`
    /// (autobase 7.28.1 `lib/apply-state.js:1410-1437`): `signedAt` is the batch's last entry,
    /// the signatures are recorded only there (`length === signedAt`), so entries 1 and 2 point
    /// back to the previous signatures (made at oplog length 2) and entry 3 carries the new
    /// ones. A local indexer that signed nothing yet writes a checkpoint of nulls (flag set,
    /// one zero flags byte: `makeCheckpoints` at `lib/apply-state.js:92-98` returns an object,
    /// encoded by `encoding/spec/autobase/index.js:182-199`); a writer that is not an indexer
    /// writes none (`lib/apply-state.js:1438-1444`).
    #[test]
    fn a_batch_records_its_signatures_at_its_last_entry() {
        use crate::autobase::messages::Node;
        let msg = |v: u8| {
            OplogMessage::new(Node {
                heads: vec![],
                batch: 1,
                value: Some(vec![v]),
            })
        };
        let old = (([1; 64], 3), ([2; 64], 0), vec![Some(([3; 64], 1))]);
        let new = (([4; 64], 9), ([5; 64], 0), vec![Some(([6; 64], 4))]);
        let mut c = LocalCheckpoint::default();
        let mut first = [msg(0), msg(1)];
        c.stamp_batch(&mut first, 0, Some(old.clone()), true, [7; 32]);
        let mut batch = [msg(2), msg(3), msg(4)];
        c.stamp_batch(&mut batch, 2, Some(new), true, [7; 32]);
        let back = |n: u64| Checkpointer {
            checkpointer: n,
            checkpoint: None,
        };
        let here = |sig: [u8; 64], length: u64| Checkpointer {
            checkpointer: 0,
            checkpoint: Some(IndexCheckpoint {
                signature: sig,
                length,
            }),
        };
        for (i, m) in batch.iter().take(2).enumerate() {
            let chk = m.checkpoint.clone().unwrap();
            // entry at length 3 + i points back to length 2
            assert_eq!(chk.system, Some(back(1 + i as u64)), "entry {i}");
            assert_eq!(chk.encryption, Some(back(1 + i as u64)), "entry {i}");
            assert_eq!(chk.user, Some(vec![back(1 + i as u64)]), "entry {i}");
        }
        let chk = batch[2].checkpoint.clone().unwrap();
        assert_eq!(chk.system, Some(here([4; 64], 9)));
        assert_eq!(chk.encryption, Some(here([5; 64], 0)));
        assert_eq!(chk.user, Some(vec![here([6; 64], 4)]));
        assert_eq!(c.signed_length(), 9);
        // the digest was written at length 1: pointers back to it
        assert_eq!(batch[0].digest.unwrap().pointer, 2);
        assert_eq!(batch[2].digest.unwrap().pointer, 4);

        // a local indexer before any signature: a checkpoint of nulls, one zero flags byte in a frame
        let mut c = LocalCheckpoint::default();
        let mut m = [msg(0)];
        c.stamp_batch(&mut m, 0, None, true, [7; 32]);
        assert_eq!(m[0].checkpoint, Some(Checkpoint::default()));
        let with = m[0].to_bytes();
        let mut none = m[0].clone();
        none.checkpoint = None;
        // framed (`encoding/spec/autobase/index.js:322`): length 1, then the zero flags byte
        assert_eq!(
            with.len(),
            none.to_bytes().len() + 2,
            "a frame of one flags byte"
        );
        assert_eq!(OplogMessage::from_bytes(&with).unwrap(), m[0]);
        // not an indexer: no checkpoint, even with signatures offered
        let mut c = LocalCheckpoint::default();
        let mut m = [msg(0)];
        c.stamp_batch(&mut m, 0, Some(old), false, [7; 32]);
        assert_eq!(m[0].checkpoint, None);
        assert_eq!(c.signed_length(), 0);
    }

    #[test]
    fn manifests_differ_by_name() {
        let a = core_manifest(&[1; 32], &[2; 32], &[[3; 32]], "_system", None);
        let b = core_manifest(&[1; 32], &[2; 32], &[[3; 32]], "view", None);
        assert_ne!(a.key(), b.key());
        assert_eq!(a.quorum, 1);
    }
}
