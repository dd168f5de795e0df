//! Autobase fast-forward over a replicated corestore (the I/O around
//! [`crate::core::autobase::fast_forward`]): what JS `lib/fast-forward.js` fetches before
//! `_applyFastForward`. Reads only the last entries of the bootstrap's oplog (its digest names
//! the system core), the system core's last block at its signed length and its member records
//! (sparse hyperbee reads), and the manifests of the indexers and views; no oplog block below
//! the indexed point.

use std::time::Duration;

use tokio::time::Instant;

use crate::bee::StoreCore;
use crate::core::autobase::encryption::view_block_key;
pub use crate::core::autobase::fast_forward::FastForwardPoint;
use crate::core::autobase::fast_forward::{
    check_view_key, digest_source, info_from_block, match_views_encrypted, member_from_entry,
    namespace_entropy, view_namespace_encrypted, DigestSource, FastForwardError, MEMBERS_PREFIX,
};
use crate::core::autobase::messages::OplogMessage;
use crate::core::autobase::{Apply, Autobase};
use crate::core::corestore::{layout, CoreHandle, Corestore, GetOptions};
use crate::core::encoding::{Decode, Encode};
use crate::core::hyperbee::{BeeCore, Hyperbee, RangeOptions};
use crate::core::hypercore::manifest::Manifest;
use crate::core::storage::{Batch, Storage};
use crate::replicate::SharedCorestore;

pub use crate::core::autobase::fast_forward::MINIMUM;

/// Why a fast-forward could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FastForwardReadError {
    /// Nothing arrived in time.
    #[error("{0} did not arrive in time")]
    Timeout(&'static str),
    /// Nothing to fast-forward to.
    #[error("nothing signed yet")]
    Empty,
    /// A refused source.
    #[error(transparent)]
    Refused(#[from] FastForwardError),
    /// The store or a core failed.
    #[error("{0}")]
    Core(String),
}

fn core_err(e: impl ToString) -> FastForwardReadError {
    FastForwardReadError::Core(e.to_string())
}

async fn open<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
    opts: GetOptions,
    wait: Duration,
) -> Result<(CoreHandle, StoreCore<S>), FastForwardReadError> {
    let h = store.lock().await.get(opts).await.map_err(core_err)?;
    let core = StoreCore::new(store.clone(), *h.discovery_key())
        .with_block_timeout(Some(wait))
        .with_update_timeout(wait);
    Ok((h, core))
}

async fn block<S: Storage + Clone + 'static>(
    core: &StoreCore<S>,
    seq: u64,
    what: &'static str,
) -> Result<Vec<u8>, FastForwardReadError> {
    BeeCore::get(core, seq)
        .await
        .map_err(core_err)?
        .ok_or(FastForwardReadError::Timeout(what))
}

async fn manifest<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
    h: &CoreHandle,
    wait: Duration,
) -> Result<Manifest, FastForwardReadError> {
    let deadline = Instant::now() + wait;
    store
        .wait_until(deadline, |hub| {
            Ok::<_, FastForwardReadError>(hub.core(h).map_err(core_err)?.manifest().cloned())
        })
        .await?
        .ok_or(FastForwardReadError::Timeout("a manifest"))
}

/// Read and check the point a new reader of the autobase `bootstrap` fast-forwards to, over
/// the peers `store` replicates with; `names` are the view names the reader's apply opens
/// (each view core is matched to its name by its signers' namespace). `wait` bounds each
/// network wait.
///
/// Trust root: the bootstrap's latest oplog entry (signed by the bootstrap) names the system key
/// by its digest; a new JS reader trusts the same (its initial system has the bootstrap as only
/// indexer, quorum 1, and `_checkSystemUpgrade` follows a quorum of indexer digests). The system
/// key must be the one of the manifest JS `_createManifest` builds from the public keys of the
/// indexers its `info` lists and the `_system` namespace, so the signature the hypercore layer
/// verifies is a quorum of those indexers' ([`check_view_key`]). Each name's view key is derived
/// the same way and looked up in the info ([`match_views`](crate::core::autobase::fast_forward::match_views)): a name with no entry is refused.
/// No peer answering within `wait` is [`FastForwardReadError::Timeout`], not `Empty`.
/// An unencrypted base; see [`read_fast_forward_encrypted`].
pub async fn read_fast_forward<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
    bootstrap: [u8; 32],
    names: &[&str],
    wait: Duration,
) -> Result<FastForwardPoint, FastForwardReadError> {
    read_fast_forward_encrypted(store, bootstrap, None, names, wait).await
}

/// [`read_fast_forward`] of a base encrypted with `encryption_key` (JS `encryptionKey`; its
/// cores must have manifest version 1, what JS creates): the oplogs it opens are decrypted with
/// the keys hypercore derives from it, the system core and each matched view with their view
/// block keys ([`crate::core::autobase::encryption`]), and the key enters the namespaces the
/// system and view keys are derived with. Opened here, those cores stay open in `store` with
/// their encryption: a later `get` by key reads them decrypted. A key that is not the base's
/// (or none for an encrypted base) is [`FastForwardError::WrongEncryptionKey`] (the bootstrap's
/// entry decrypts to something that is not an oplog entry, or the system key derived with that
/// key is not the one the bootstrap's digest names), or, for no key, a malformed entry.
pub async fn read_fast_forward_encrypted<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
    bootstrap: [u8; 32],
    encryption_key: Option<[u8; 32]>,
    names: &[&str],
    wait: Duration,
) -> Result<FastForwardPoint, FastForwardReadError> {
    read_fast_forward_past(store, bootstrap, encryption_key, names, wait, 0)
        .await?
        .ok_or(FastForwardReadError::Empty)
}

/// [`read_fast_forward_encrypted`] for a member that has indexed some of the base already (JS
/// `FastForward` with its `minimum`): `None` when the signed system core is shorter than
/// `min_length` ([`Autobase::fast_forward_minimum`]: not worth it), found after reading only the
/// bootstrap's latest entries and the system core's length; the point otherwise. A running or
/// restarted member calls it to learn whether it fell far enough behind, and
/// [`adopt`] checks again when the point arrives.
pub async fn read_fast_forward_past<S: Storage + Clone + 'static>(
    store: &SharedCorestore<S>,
    bootstrap: [u8; 32],
    encryption_key: Option<[u8; 32]>,
    names: &[&str],
    wait: Duration,
    min_length: u64,
) -> Result<Option<FastForwardPoint>, FastForwardReadError> {
    let ek = encryption_key.as_ref();
    // an oplog (writer core): hypercore's derived keys
    let oplog = |key: [u8; 32]| match ek {
        Some(k) => GetOptions::from_key(key).with_encryption_key(*k),
        None => GetOptions::from_key(key),
    };
    let not_oplog = |e: crate::core::encoding::DecodeError| -> FastForwardReadError {
        if ek.is_some() {
            FastForwardError::WrongEncryptionKey(
                "the bootstrap's entry does not decrypt to an oplog entry",
            )
            .into()
        } else {
            FastForwardError::Malformed {
                what: "oplog entry",
                reason: e.to_string(),
            }
            .into()
        }
    };
    // 1. the system key, from the bootstrap's latest oplog entry (JS `_checkSystemUpgrade`)
    let (_boot_h, boot) = open(store, oplog(bootstrap), wait).await?;
    boot.update().await.map_err(core_err)?;
    let len = boot.state().await.length;
    if len == 0 {
        if !boot.any_peer_synced().await.map_err(core_err)? {
            return Err(FastForwardReadError::Timeout("the bootstrap's length"));
        }
        return Err(FastForwardReadError::Empty);
    }
    let last = OplogMessage::from_bytes(&block(&boot, len - 1, "the bootstrap's head").await?)
        .map_err(not_oplog)?;
    let system_key = match digest_source(&last, len)? {
        DigestSource::Key(k) => k,
        DigestSource::At(seq) => {
            let m = OplogMessage::from_bytes(&block(&boot, seq, "the digest entry").await?)
                .map_err(not_oplog)?;
            match digest_source(&m, seq + 1)? {
                DigestSource::Key(k) => k,
                DigestSource::At(_) => return Err(FastForwardError::NoDigest.into()),
            }
        }
    };

    // 2. the system core at its signed length
    let sys_opts = match ek {
        Some(k) => GetOptions::from_key(system_key)
            .with_block_encryption_key(view_block_key(&bootstrap, k, "_system")),
        None => GetOptions::from_key(system_key),
    };
    let (sys_h, sys) = open(store, sys_opts, wait).await?;
    sys.update().await.map_err(core_err)?;
    let system_length = sys.state().await.length;
    if system_length == 0 {
        if !sys.any_peer_synced().await.map_err(core_err)? {
            return Err(FastForwardReadError::Timeout("the system core's length"));
        }
        return Err(FastForwardReadError::Empty);
    }
    if system_length < min_length {
        return Ok(None);
    }
    let info = info_from_block(
        system_length - 1,
        &block(&sys, system_length - 1, "the system info").await?,
    )?;

    // 3. the indexers' public keys (their oplogs' manifests) and the namespace entropy; the
    //    system key must be the one of the manifest JS derives from them (`_createManifest`)
    let mut public_keys = Vec::new();
    let mut first_ns = None;
    for idx in &info.indexers {
        let (h, _) = open(store, oplog(idx.key), wait).await?;
        let m = manifest(store, &h, wait).await?;
        let s = m.signers.first().ok_or(FastForwardError::Manifest {
            name: "an indexer's oplog".into(),
            reason: "no signer",
        })?;
        first_ns.get_or_insert(s.namespace);
        public_keys.push(s.public_key);
    }
    let entropy = namespace_entropy(&info, first_ns).ok_or(FastForwardError::Manifest {
        name: "_system".into(),
        reason: "no indexers",
    })?;
    // the version JS passes is the system core's own manifest's (fast-forward.js)
    let sys_m = manifest(store, &sys_h, wait).await?;
    let version = sys_m.version;
    check_view_key(
        &system_key,
        "_system",
        version,
        sys_m.prologue,
        &view_namespace_encrypted(&bootstrap, ek, &entropy, "_system"),
        &public_keys,
    )
    .map_err(|e| match e {
        // the key is in the namespace: with another key, another system key
        FastForwardError::Manifest { reason, .. }
            if ek.is_some() && reason.starts_with("the core key") =>
        {
            FastForwardError::WrongEncryptionKey(
                "the system key derived with it is not the one the bootstrap names",
            )
        }
        e => e,
    })?;

    // 4. the member records at the signed length
    let bee: Hyperbee<StoreCore<S>> = Hyperbee::new(sys.clone()).checkout(system_length).await;
    let lt = [1u8, 1];
    let mut it = bee.create_read_stream(RangeOptions {
        gte: Some(MEMBERS_PREFIX),
        lt: Some(&lt[..]),
        ..Default::default()
    });
    let mut members = Vec::new();
    while let Some(e) = it.next().await.map_err(core_err)? {
        let Some(v) = e.value else { continue };
        members.push(member_from_entry(&e.key, &v)?);
    }

    // 5. the views: each name's key from the indexers' manifest for it, found in the info
    //    (their manifests, for a recreated view's prologue; an empty view has none to fetch)
    let mut manifests = Vec::with_capacity(info.views.len());
    for v in &info.views {
        if v.length == 0 {
            manifests.push(None);
            continue;
        }
        let (h, _) = open(store, GetOptions::from_key(v.key), wait).await?;
        manifests.push(Some(manifest(store, &h, wait).await?));
    }
    let views = match_views_encrypted(
        &info,
        &manifests,
        names,
        version,
        &bootstrap,
        ek,
        &entropy,
        &public_keys,
    )?;
    // each matched view decrypts with its name's block key from now on
    if let Some(k) = ek {
        for (name, key, _) in &views {
            let _opened = open(
                store,
                GetOptions::from_key(*key)
                    .with_block_encryption_key(view_block_key(&bootstrap, k, name)),
                wait,
            )
            .await?;
        }
    }
    Ok(Some(FastForwardPoint {
        system_key,
        system_length,
        info,
        members,
        views,
    }))
}

/// The fast-forward point stored for the autobase `bootstrap` in `store` (see [`save_point`]), if
/// any. A stored point that does not decode is an error, not "none": the caller decides whether
/// to read a new one.
pub async fn load_point<S: Storage + Clone>(
    store: &Corestore<S>,
    bootstrap: &[u8; 32],
) -> Result<Option<FastForwardPoint>, FastForwardReadError> {
    let Some(b) = store
        .storage()
        .get(&layout::autobase_point_key(bootstrap))
        .await
        .map_err(core_err)?
    else {
        return Ok(None);
    };
    FastForwardPoint::from_bytes(&b).map(Some).map_err(|e| {
        FastForwardError::Malformed {
            what: "stored fast-forward point",
            reason: e.to_string(),
        }
        .into()
    })
}

/// Store `point` as the fast-forward point of the autobase `bootstrap`, in one atomic batch of
/// its own (the system key and length, the `info` record with the heads and view lengths, the
/// member records, the views' names and keys): after a crash it is there whole or not at all.
/// It replaces an earlier one.
pub async fn save_point<S: Storage + Clone>(
    store: &Corestore<S>,
    bootstrap: &[u8; 32],
    point: &FastForwardPoint,
) -> Result<(), FastForwardReadError> {
    let mut batch = Batch::new();
    batch.put(layout::autobase_point_key(bootstrap), point.to_bytes());
    store.storage().write(batch).await.map_err(core_err)
}

fn apply_point<A: Apply>(base: &mut Autobase<A>, point: &FastForwardPoint) {
    base.fast_forward(
        point.system_length,
        &point.info,
        &point.members,
        &point.view_lengths(),
    );
}

/// Resume `base` from the fast-forward point stored in `store` ([`save_point`]), if there is one:
/// the engine starts from it as after [`adopt`], without reading the system core again; the
/// oplog blocks held above the point are fed as usual. Call it before feeding any block.
pub async fn resume<S: Storage + Clone, A: Apply>(
    store: &Corestore<S>,
    base: &mut Autobase<A>,
) -> Result<Option<FastForwardPoint>, FastForwardReadError> {
    let point = load_point(store, base.bootstrap()).await?;
    if let Some(p) = &point {
        apply_point(base, p);
    }
    Ok(point)
}

/// Fast-forward `base` to `point` (as read by [`read_fast_forward`]) when the engine says it is
/// worth it ([`Autobase::fast_forward_worth`], JS `_applyFastForward`'s check: at least
/// [`MINIMUM`] system blocks past what `base` has indexed, and behind it in nothing), for a new
/// member as for a running or restarted one that fell behind: the point is stored first
/// ([`save_point`], one atomic batch replacing the earlier point), then the engine continues
/// from it ([`Autobase::fast_forward`]). Whether it did. A crash before the store leaves the
/// earlier point, or none (a restart resumes from that one, or reads one again); after it, a
/// restart [`resume`]s from the new one.
pub async fn adopt<S: Storage + Clone, A: Apply>(
    store: &Corestore<S>,
    base: &mut Autobase<A>,
    point: &FastForwardPoint,
) -> Result<bool, FastForwardReadError> {
    if !base.fast_forward_worth(point.system_length, &point.members, &point.view_lengths()) {
        return Ok(false);
    }
    save_point(store, base.bootstrap(), point).await?;
    apply_point(base, point);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::autobase::{ApplyNode, Host, Views};
    use crate::core::corestore::PrimaryKey;
    use crate::core::storage::MemoryStorage;

    /// No peer at all: the wait for the bootstrap's length ends as a timeout, not as "nothing
    /// signed yet".
    #[tokio::test]
    async fn no_peer_is_a_timeout() {
        let store = Corestore::open(MemoryStorage::new(), PrimaryKey::Given([1; 32]))
            .await
            .unwrap();
        let store = SharedCorestore::new(store);
        let r = read_fast_forward(&store, [2; 32], &["view"], Duration::from_millis(50)).await;
        assert!(
            matches!(
                r,
                Err(FastForwardReadError::Timeout("the bootstrap's length"))
            ),
            "{r:?}"
        );
    }

    fn point(system_length: u64) -> FastForwardPoint {
        use crate::core::autobase::messages::{Checkout, Info, Member};
        let boot = [7u8; 32];
        let at = |length| Checkout { key: boot, length };
        FastForwardPoint {
            system_key: [8; 32],
            system_length,
            info: Info {
                version: 1,
                members: 1,
                pending_indexers: vec![],
                indexers: vec![at(20)],
                heads: vec![at(20)],
                views: vec![Checkout {
                    key: [9; 32],
                    length: 20,
                }],
                encryption_length: 0,
                entropy: None,
            },
            members: vec![(
                boot,
                Member {
                    is_indexer: true,
                    is_removed: false,
                    length: 20,
                },
            )],
            views: vec![("messages".into(), [9; 32], 20)],
        }
    }

    /// A memory store whose writes fail when told to (a crash before the batch landed).
    type Flaky = crate::core::storage::Instrumented<MemoryStorage>;

    fn base() -> Autobase<fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>)> {
        let f: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = crate::chat::apply;
        let mut b = Autobase::new([7; 32], f);
        b.open_view("messages");
        b
    }

    /// A point is adopted only when it is `MINIMUM` system blocks ahead; adopted, it is stored
    /// and a new engine on the same store resumes from it (same view start, same oplog starts,
    /// same indexed system) without any network; a store write that fails (a crash before the
    /// batch) leaves neither a stored point nor a fast-forwarded engine; a stored point that
    /// does not decode is a typed error.
    #[tokio::test]
    async fn adopted_points_persist_and_resume() {
        let storage = Flaky::default();
        let store = Corestore::open(storage.clone(), PrimaryKey::Given([1; 32]))
            .await
            .unwrap();
        let mut b = base();
        assert!(!adopt(&store, &mut b, &point(MINIMUM - 1)).await.unwrap());
        assert!(load_point(&store, &[7; 32]).await.unwrap().is_none());

        storage.fail_writes(true);
        assert!(adopt(&store, &mut b, &point(40)).await.is_err());
        assert!(load_point(&store, &[7; 32]).await.unwrap().is_none());
        let view = b.open_view("messages");
        assert_eq!(b.views().start(view), 0, "not fast-forwarded");

        storage.fail_writes(false);
        assert!(adopt(&store, &mut b, &point(40)).await.unwrap());
        assert_eq!(b.views().start(view), 20);
        assert_eq!(b.oplog_start(&[7; 32]), 20);

        let mut again = base();
        let p = resume(&store, &mut again).await.unwrap().expect("stored");
        assert_eq!(p, point(40));
        let view = again.open_view("messages");
        assert_eq!(again.views().start(view), 20);
        assert_eq!(again.indexed_view_lengths()[view], 20);
        assert_eq!(again.oplog_start(&[7; 32]), 20);
        assert_eq!(again.indexed_system().length, 40);

        // a running member that fell behind: a newer point replaces the stored one when it is
        // MINIMUM ahead of what the engine indexed, not before
        assert!(!adopt(&store, &mut again, &point(40 + MINIMUM - 1))
            .await
            .unwrap());
        assert_eq!(load_point(&store, &[7; 32]).await.unwrap(), Some(point(40)));
        assert!(adopt(&store, &mut again, &point(40 + MINIMUM))
            .await
            .unwrap());
        assert_eq!(again.indexed_system().length, 40 + MINIMUM);
        let p = resume(&store, &mut base()).await.unwrap().expect("stored");
        assert_eq!(p, point(40 + MINIMUM), "the newer point replaced the older");

        let mut batch = Batch::new();
        batch.put(layout::autobase_point_key(&[7; 32]), vec![1, 2, 3]);
        store.storage().write(batch).await.unwrap();
        assert!(matches!(
            resume(&store, &mut base()).await,
            Err(FastForwardReadError::Refused(
                FastForwardError::Malformed { .. }
            ))
        ));
    }
}
