//! Tests of `autobase_index` (moved out of it to keep it under about 1,000 lines).
//!
//! (About 1,050 lines: one test per signing scenario of the indexer's cores, sharing the
//! member setup at the top; the bee view's tests are in `autobase_index_bee_tests.rs`.)

use super::*;
use hyperpunch_core::autobase::cores::core_manifest;
use hyperpunch_core::autobase::{ApplyNode, Host, Views};
use hyperpunch_core::corestore::PrimaryKey;
use hyperpunch_core::hyperbee::Utf8;

/// `add:` + 32 key bytes adds an indexer, `open:NAME` opens a view, anything else is
/// appended to the view `view` (opened then).
fn apply(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
    for n in nodes {
        if let Some(k) = n.value.strip_prefix(b"add:") {
            host.add_writer(k.try_into().unwrap(), true);
        } else if let Some(name) = n.value.strip_prefix(b"open:") {
            views.open(std::str::from_utf8(name).unwrap());
        } else if let Some(op) = n.value.strip_prefix(b"bee:") {
            // `bee:put:<k>=<v>` / `bee:del:<k>` on the view `view` run as a hyperbee
            let id = views.open("view");
            let mut bee = views.bee(id).with_codecs(Utf8, Utf8);
            let op = std::str::from_utf8(op).unwrap();
            match op.strip_prefix("put:").and_then(|kv| kv.split_once('=')) {
                Some((k, v)) => bee.put(k, v).unwrap(),
                None => bee.del(op.strip_prefix("del:").unwrap()).unwrap(),
            }
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
/// added as an indexer) exchange entries until `t` counts two indexers; the two oplogs.
fn exchange_until_two_indexers(
    t: &mut Setup,
    b2: &mut Base,
    k2: [u8; 32],
    mut log1: Vec<Vec<u8>>,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
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
    (log1, log2)
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
    let sign = |key: &[u8; 32], th: &[u8; 32], len: u64| (kp.sign(&signable(key, th, len, 0)), len);
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
    let mut cores = IndexerCores::new(t.local, KeyPair::from_seed(&[9; 32]), t.entropy, &["view"])
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
    let mut cores = IndexerCores::new(t.local, KeyPair::from_seed(&[9; 32]), t.entropy, &["view"])
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

/// `lags` (the ack timer's `signed_behind`) asks for an ack only when the next entry carries
/// new signatures: an indexer whose signing is stuck (an earlier sync failed) lags what is
/// indexed for good, and no ack fixes that (it asked for one at every timer run: an ack every
/// 1-2 s in an idle chat); a healthy one asks until the entry with its signatures is written.
#[tokio::test]
async fn a_lag_no_entry_can_fix_asks_for_no_ack() {
    let mut t = setup().await;
    let mut cores = t.cores(&["view", "other"]).await;
    t.append(b"first");
    t.sync(&mut cores).await.unwrap_err();
    assert!(!t.base.indexed_system().views.is_empty(), "a view indexed");
    assert_eq!(cores.signed_length(), 0, "nothing signed");
    assert!(!cores.lags(&t.base), "no new signatures to write");

    let mut t = setup().await;
    let mut cores = t.cores(&["view"]).await;
    t.append(b"v");
    t.sync(&mut cores).await.unwrap();
    assert!(cores.lags(&t.base), "signatures to write");
    let mut m = t.base.force_ack(&t.local).unwrap();
    cores.stamp(&mut m, 1);
    t.base.update();
    t.sync(&mut cores).await.unwrap();
    assert!(!cores.lags(&t.base), "written");
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

/// An encrypted base (JS `encryptionKey`): the bootstrap writes its cores encrypted with the
/// view block keys, keyed with the encryption key in their namespaces (not the unencrypted
/// keys); a restart reopens them with the block keys and signs on. At an indexer change every
/// core moves as JS `_premigrate` moves it: the new indexers' manifest with the encryption key
/// in the namespace, the prologue the tree hash of the encrypted blocks (JS
/// `source.treeHash`), the same view block key; this indexer signs the encrypted trees, the
/// quorum's multisig verifies against the stored (encrypted) moved cores, and a restart that
/// replays both oplogs reopens the moved cores and signs on (its next multisig appends to
/// them). Before, the move was refused (`IndexError::EncryptedMove`).
#[tokio::test]
async fn an_encrypted_base_moves_its_cores_and_signs_on_after_a_restart() {
    use hyperpunch_core::autobase::encryption::view_encryption;
    use hyperpunch_core::encoding::Encode;
    let ek = [0x2a; 32];
    let mut t = setup().await;
    let enc = |t: &Setup| {
        let (local, kp, entropy) = (t.local, t.key_pair.clone(), t.entropy);
        async move {
            IndexerCores::new_encrypted(local, kp, entropy, &["view"], Some(ek))
                .await
                .unwrap()
        }
    };
    let mut cores = enc(&t).await;
    t.append(b"v0");
    t.sync(&mut cores).await.unwrap();
    let plain_keys = {
        let mut c = t.cores(&["view"]).await;
        let mut base: Base = Autobase::new(t.local, apply);
        base.record_system();
        std::mem::swap(&mut t.base, &mut base);
        t.append(b"v0");
        t.sync(&mut c).await.unwrap();
        std::mem::swap(&mut t.base, &mut base);
        c.view_keys().to_vec()
    };
    assert_ne!(
        cores.view_keys(),
        &plain_keys[..],
        "the key is in the namespace"
    );
    let h = t
        .store
        .get(GetOptions::from_key(cores.view_keys()[0]))
        .await
        .unwrap();
    let stored = t
        .store
        .core(&h)
        .unwrap()
        .get_stored(0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored,
        view_encryption(&t.local, &ek, "view").encrypt(0, 0, b"v0")
    );
    // a restart: the stored cores reopened with their block keys match the replay
    let mut base: Base = Autobase::new(t.local, apply);
    base.record_system();
    t.base = base;
    t.append(b"v0");
    t.append(b"v1");
    let mut cores = enc(&t).await;
    t.sync(&mut cores).await.unwrap();
    assert_eq!(cores.signed_length(), t.base.indexed_system().length);
    let first_key = cores.system_key();

    // a second indexer: every core moves
    let h2 = t.store.get(GetOptions::named("b2")).await.unwrap();
    let kp2 = t.store.core(&h2).unwrap().key_pair().unwrap().clone();
    let (k2, pk2) = (*h2.key(), kp2.public_key);
    let mut b2: Base = Autobase::new(t.local, apply);
    let mut log1 = Vec::new();
    let mut replay: Base = Autobase::new(t.local, apply);
    for v in [&b"v0"[..], b"v1"] {
        for m in replay.append(&t.local, vec![v.to_vec()]).unwrap() {
            log1.push(m.to_bytes());
        }
        replay.update();
    }
    let mut add = b"add:".to_vec();
    add.extend_from_slice(&k2);
    for m in t.base.append(&t.local, vec![add]).unwrap() {
        log1.push(m.to_bytes());
    }
    t.base.update();
    let (log1, log2) = exchange_until_two_indexers(&mut t, &mut b2, k2, log1);
    t.sync(&mut cores).await.unwrap();
    let pk1 = t.key_pair.public_key;
    assert_ne!(cores.system_key(), first_key);
    assert_moved_and_signed(&mut t, &mut cores, &[pk1, pk2]).await;
    // each moved core: the encryption key in its namespace, the prologue the tree of its
    // blocks as stored (encrypted with the name's view block key, built here in a core of its
    // own), and the store opens it with that block key
    let plain_system: Vec<Vec<u8>> = {
        let n = cores.scratch.length().await;
        let mut v = Vec::new();
        for i in 0..n {
            v.push(BeeCore::get(&cores.scratch, i).await.unwrap().unwrap());
        }
        v
    };
    let view_plain: Vec<Vec<u8>> = t.base.views().blocks(0).to_vec();
    let m = cores.multi.as_ref().unwrap();
    let view_handle = &m.views[0].as_ref().unwrap().handle;
    for (name, handle, blocks) in [
        ("_system", &m.system, &plain_system),
        ("view", view_handle, &view_plain),
    ] {
        let core = t.store.core(handle).unwrap();
        let manifest = core.manifest().unwrap().clone();
        let p = manifest.prologue.expect("a prologue");
        let own = scratch_core(Some(view_block_key(&t.local, &ek, name)))
            .await
            .unwrap();
        let refs: Vec<&[u8]> = blocks[..p.length as usize]
            .iter()
            .map(Vec::as_slice)
            .collect();
        own.append(&refs).await.unwrap();
        assert_eq!(
            own.lock().await.tree_hash(),
            p.hash,
            "{name}: the prologue hashes the encrypted blocks"
        );
        let plain = core_manifest(&t.local, &t.entropy, &[pk1, pk2], name, Some(p));
        assert_ne!(
            plain.key(),
            manifest.key(),
            "{name}: the key is in the namespace"
        );
        assert_eq!(
            manifest.signers[0].namespace,
            hyperpunch_core::autobase::fast_forward::view_namespace_encrypted(
                &t.local,
                Some(&ek),
                &t.entropy,
                name
            ),
            "{name}"
        );
        assert!(core.encrypted(), "{name}: opened with its block key");
    }
    assert_eq!(
        cores.encryption_key,
        core_manifest_encrypted(
            &t.local,
            Some(&ek),
            &t.entropy,
            &[pk1, pk2],
            "_encryption",
            None
        )
        .key()
    );

    // both indexers' entries carry their signatures: the quorum's multisig verifies against
    // the moved cores as stored (encrypted)
    async fn commit_both(
        t: &mut Setup,
        cores: &mut IndexerCores,
        h2: &CoreHandle,
        kp2: &KeyPair,
    ) -> u64 {
        let key = cores.system_key();
        // (`assert_moved_and_signed` stamped an entry that is not in the store: start afresh)
        cores.checkpoint = LocalCheckpoint::default();
        cores.pending = Some(signatures_of(cores, &t.base, &t.key_pair).await);
        let local_h = t.store.get(GetOptions::named("local")).await.unwrap();
        let len = t.store.core(&local_h).unwrap().length();
        let mut m = [entry_msg()];
        cores.stamp(&mut m, len);
        let b = m[0].to_bytes();
        t.store.append(0, &local_h, &[&b[..]]).await.unwrap();
        let sigs = signatures_of(cores, &t.base, kp2).await;
        let mut chk2 = LocalCheckpoint::default();
        append_checkpoint(t, h2, &mut chk2, sigs, key).await;
        let r = cores.commit_signed(&mut t.store, 0).await.unwrap();
        assert_eq!(cores.take_skip_warning(), None);
        r
    }
    let indexed = cores.scratch.length().await;
    assert_eq!(commit_both(&mut t, &mut cores, &h2, &kp2).await, indexed);
    let m = cores.multi.as_ref().unwrap();
    let vh = &m.views[0].as_ref().unwrap().handle;
    let vc = t.store.core(vh).unwrap();
    assert!(vc.length() > 0);
    let last = vc.length() - 1;
    assert_eq!(
        vc.get_stored(last).await.unwrap().unwrap(),
        view_encryption(&t.local, &ek, "view").encrypt(last, 0, &view_plain[last as usize]),
        "the moved view core stores the block encrypted"
    );
    let system_key = cores.system_key();
    let view_key = cores.view_keys()[0];

    // a restart: both oplogs replayed, the moved cores reopened, signed on
    let mut base: Base = Autobase::new(t.local, apply);
    base.record_system();
    for (i, b) in log1.iter().enumerate() {
        base.handle_block(&t.local, i as u64, b).unwrap();
    }
    for (i, b) in log2.iter().enumerate() {
        base.handle_block(&k2, i as u64, b).unwrap();
    }
    base.update();
    t.base = base;
    assert_eq!(t.base.indexed_system().indexers.len(), 2);
    let mut cores = enc(&t).await;
    t.sync(&mut cores).await.unwrap();
    assert_eq!(cores.system_key(), system_key, "the same moved system core");
    assert_eq!(cores.view_keys()[0], view_key, "the same moved view core");
    assert_eq!(cores.committed_length(&t.store), indexed);
    // more entries, which the second indexer acks until they are indexed
    let (mut log1, mut log2) = (log1, log2);
    for m in t
        .base
        .append(&t.local, vec![b"after the restart".to_vec()])
        .unwrap()
    {
        log1.push(m.to_bytes());
    }
    t.base.update();
    for step in 0..20u8 {
        for (i, b) in log1.iter().enumerate() {
            b2.handle_block(&t.local, i as u64, b).unwrap();
        }
        b2.update();
        for m in b2.append(&k2, vec![vec![b'c', step]]).into_iter().flatten() {
            log2.push(m.to_bytes());
        }
        b2.update();
        for (i, b) in log2.iter().enumerate() {
            t.base.handle_block(&k2, i as u64, b).unwrap();
        }
        for m in t.base.append(&t.local, vec![vec![b'd', step]]).unwrap() {
            log1.push(m.to_bytes());
        }
        t.base.update();
        if t.base.indexed_system().length > indexed {
            break;
        }
    }
    t.sync(&mut cores).await.unwrap();
    let more = cores.scratch.length().await;
    assert!(more > indexed);
    assert_moved_and_signed(&mut t, &mut cores, &[pk1, pk2]).await;
    // the next multisig appends to the stored moved cores: the replayed encrypted trees are theirs
    assert_eq!(commit_both(&mut t, &mut cores, &h2, &kp2).await, more);
}

/// A writer of an encrypted base that is not the bootstrap follows the moves and keeps the
/// cores too (JS writes the digest in every writer's entries): it derives the same encrypted
/// system and view keys as the bootstrap, which writes them alone. Before, it was refused
/// (`IndexError::EncryptedMove`).
#[tokio::test]
async fn a_writer_of_an_encrypted_base_that_is_not_the_bootstrap_keeps_the_cores() {
    use hyperpunch_core::autobase::messages::Node;
    let ek = [0x2a; 32];
    let mut t = setup().await;
    let mut boot =
        IndexerCores::new_encrypted(t.local, t.key_pair.clone(), t.entropy, &["view"], Some(ek))
            .await
            .unwrap();
    let mut writer = IndexerCores::new_encrypted(
        t.local,
        KeyPair::from_seed(&[9; 32]),
        t.entropy,
        &["view"],
        Some(ek),
    )
    .await
    .unwrap();
    // the same base, synced by both (its flushes taken once each: a second engine)
    let mut other: Base = Autobase::new(t.local, apply);
    other.record_system();
    for v in [&b"v0"[..], b"v1"] {
        t.append(v);
        other.append(&t.local, vec![v.to_vec()]).unwrap();
        other.update();
    }
    t.sync(&mut boot).await.unwrap();
    writer.sync(&mut t.store, 0, &mut other).await.unwrap();
    assert!(writer.multi.is_some(), "it follows the move");
    assert_eq!(writer.system_key(), boot.system_key(), "one system core");
    assert_eq!(writer.view_keys(), boot.view_keys(), "one view core");
    // its entries carry the system key, no checkpoint (not an indexer)
    let mut m = [OplogMessage::new(Node {
        heads: vec![],
        batch: 1,
        value: Some(b"x".to_vec()),
    })];
    writer.stamp(&mut m, 0);
    assert_eq!(m[0].digest.unwrap().key, Some(boot.system_key()));
    assert_eq!(m[0].checkpoint, None);
}

/// A member seeded from a fast-forward point ([`IndexerCores::seed_from_point`]: the system and
/// view cores' blocks below it, here in the same store) keeps the cores as a member that
/// linearized from the start does: after an indexer change past the point both derive the same
/// moved system and view keys and hold the same system bee and view trees. A point whose blocks
/// are not here is not seeded yet (`false`), and one that does not name a view is refused.
#[tokio::test]
async fn a_member_seeded_from_a_point_keeps_the_cores_as_one_that_linearized() {
    use hyperpunch_core::encoding::Encode;
    let mut t = setup().await;
    let mut boot = t.cores(&["view"]).await;
    let mut log1 = Vec::new();
    for i in 0..10u8 {
        for m in t.base.append(&t.local, vec![vec![b'v', i]]).unwrap() {
            log1.push(m.to_bytes());
        }
        t.base.update();
        t.sync(&mut boot).await.unwrap();
    }
    let sys = t.base.indexed_system();
    let len = sys.length;
    let info = sys.info();
    let members: Vec<([u8; 32], hyperpunch_core::autobase::messages::Member)> =
        sys.member_records().map(|(k, m)| (*k, *m)).collect();
    let vlen = t.base.indexed_view_lengths()[0] as u64;
    assert_eq!(vlen, 10);
    let point = FastForwardPoint {
        system_key: boot.system_key(),
        system_length: len,
        info: info.clone(),
        members: members.clone(),
        views: vec![("view".into(), boot.view_keys()[0], vlen)],
    };
    // past the point: a second indexer, and a value after the move
    let (k2, _) = second_writer(&mut t).await;
    let mut add = b"add:".to_vec();
    add.extend_from_slice(&k2);
    for m in t.base.append(&t.local, vec![add]).unwrap() {
        log1.push(m.to_bytes());
    }
    t.base.update();
    let mut b2: Base = Autobase::new(t.local, apply);
    let (mut log1, log2) = exchange_until_two_indexers(&mut t, &mut b2, k2, log1);
    for m in t.base.append(&t.local, vec![b"later".to_vec()]).unwrap() {
        log1.push(m.to_bytes());
    }
    t.base.update();
    let feed = |b: &mut Base| {
        for (k, log) in [(t.local, &log1), (k2, &log2)] {
            for (i, blk) in log.iter().enumerate().skip(b.oplog_start(&k) as usize) {
                b.handle_block(&k, i as u64, blk).unwrap();
            }
        }
        b.update();
    };
    // one member linearizes from the start, the other fast-forwards to the point
    let mut c: Base = Autobase::new(t.local, apply);
    c.record_system();
    feed(&mut c);
    let mut d: Base = Autobase::new(t.local, apply);
    d.record_system();
    d.fast_forward(len, &info, &members, &[("view", vlen)]);
    let _ = d.take_indexed_flushes();
    feed(&mut d);
    assert_eq!(d.views().start(0), 10, "fast-forwarded");
    assert_eq!(d.indexed_system().length, c.indexed_system().length);
    assert!(d.indexed_system().length > len);
    assert_eq!(d.indexed_system().indexers.len(), 2);

    let mut lin = IndexerCores::new(t.local, KeyPair::from_seed(&[9; 32]), t.entropy, &["view"])
        .await
        .unwrap();
    lin.sync(&mut t.store, 0, &mut c).await.unwrap();
    let mut seeded = IndexerCores::new(t.local, KeyPair::from_seed(&[8; 32]), t.entropy, &["view"])
        .await
        .unwrap();
    assert!(seeded
        .seed_from_point(&mut t.store, 0, &point)
        .await
        .unwrap());
    seeded.sync(&mut t.store, 0, &mut d).await.unwrap();
    assert_ne!(lin.system_key(), point.system_key, "moved past the point");
    assert_eq!(
        seeded.system_key(),
        lin.system_key(),
        "the same moved system key"
    );
    assert_eq!(
        seeded.view_keys(),
        lin.view_keys(),
        "the same moved view keys"
    );
    let n = lin.scratch.length().await;
    assert_eq!(seeded.scratch.length().await, n);
    for i in 0..n {
        assert_eq!(
            BeeCore::get(&seeded.scratch, i).await.unwrap(),
            BeeCore::get(&lin.scratch, i).await.unwrap(),
            "system block {i}"
        );
    }
    let tree = |c: &IndexerCores| {
        let v = c.multi.as_ref().unwrap().views[0]
            .as_ref()
            .unwrap()
            .scratch
            .clone();
        async move {
            let l = v.lock().await;
            (l.length(), l.tree_hash())
        }
    };
    assert_eq!(tree(&seeded).await, tree(&lin).await, "the same view tree");
    assert!(tree(&lin).await.0 > 10, "past the point");

    // blocks not here: not seeded yet (asked from the peers; none here)
    let mut empty = Corestore::open(MemoryStorage::new(), PrimaryKey::Given([0x62; 32]))
        .await
        .unwrap();
    let mut other = IndexerCores::new(t.local, KeyPair::from_seed(&[7; 32]), t.entropy, &["view"])
        .await
        .unwrap();
    assert!(!other.seed_from_point(&mut empty, 0, &point).await.unwrap());
    assert!(!other.seed_from_point(&mut empty, 0, &point).await.unwrap());
    // a point that does not name the view
    let mut unnamed = point.clone();
    unnamed.views.clear();
    let mut other = IndexerCores::new(t.local, KeyPair::from_seed(&[7; 32]), t.entropy, &["view"])
        .await
        .unwrap();
    assert!(matches!(
        other.seed_from_point(&mut t.store, 0, &unnamed).await,
        Err(IndexError::ViewNotListed(0))
    ));
}

#[path = "autobase_index_bee_tests.rs"]
mod bee;
