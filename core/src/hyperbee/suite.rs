//! The hyperbee suite every storage backend runs: memory here, native files in `hyperpunch`,
//! IndexedDB in `hyperpunch-web` (in headless Chromium). Each check builds a bee on a fresh store
//! from the factory and panics with a message naming what failed.
//!
//! What it covers: get/put/del, every range option against an ordered-map model, batches
//! (pending reads, one append, the write lock), subs, encodings, checkouts and snapshots,
//! history and diff streams, compare-and-swap, watchers, the header, blocks that are not bee
//! nodes (typed errors, no panic) and a seeded random workload against the model.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::*;
use crate::crypto::KeyPair;
use crate::hypercore::{CreateOptions, Hypercore, Session};
use crate::storage::Storage;

type Bee<S> = Hyperbee<Session<S>, Utf8, Utf8>;

/// Run every check, each on a fresh store from `fresh`.
pub async fn run_all<S, F, Fut>(fresh: F)
where
    S: Storage + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    basics(fresh().await).await;
    ranges(fresh().await).await;
    batches(fresh().await).await;
    subs_and_encodings(fresh().await).await;
    versions_history_diff(fresh().await).await;
    compare_and_swap(fresh().await).await;
    watchers(fresh().await).await;
    header_and_bad_blocks(fresh().await, fresh().await).await;
    for seed in 1..=3 {
        model(fresh().await, seed, 300).await;
    }
}

async fn session<S: Storage + 'static>(storage: S, seed: u8) -> Session<S> {
    Hypercore::create(
        storage,
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[seed; 32])),
            ..Default::default()
        },
    )
    .await
    .expect("create core")
    .into_session()
}

async fn bee<S: Storage + 'static>(storage: S) -> (Session<S>, Bee<S>) {
    let core = session(storage, 7).await;
    let db = Hyperbee::new(core.clone()).with_codecs(Utf8, Utf8);
    (core, db)
}

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

async fn keys_of<S: Storage + 'static>(db: &Bee<S>, r: RangeOptions<'_, Utf8>) -> Vec<String> {
    db.create_read_stream(r)
        .collect()
        .await
        .expect("range")
        .into_iter()
        .map(|e| e.key)
        .collect()
}

/// Put, overwrite, get, delete, an empty bee, empty keys and values.
pub async fn basics<S: Storage + 'static>(storage: S) {
    let (core, db) = bee(storage).await;
    assert_eq!(db.version().await, 1, "empty bee version");
    assert_eq!(db.get("a").await.unwrap(), None, "get on an empty core");
    assert!(keys_of(&db, Default::default()).await.is_empty());
    db.del("nothing").await.unwrap();
    assert_eq!(
        core.length().await,
        1,
        "a delete on an empty bee writes the header only"
    );
    db.put("a", "1").await.unwrap();
    db.put("b", "2").await.unwrap();
    db.put("a", "3").await.unwrap();
    let a = db.get("a").await.unwrap().expect("a");
    assert_eq!((a.seq, a.value.as_deref()), (3, Some("3")), "overwrite");
    db.put("", "").await.unwrap();
    assert_eq!(
        db.get("").await.unwrap().unwrap().value.as_deref(),
        Some(""),
        "empty key and value"
    );
    db.del("a").await.unwrap();
    assert_eq!(db.get("a").await.unwrap(), None, "deleted");
    assert_eq!(core.length().await, 6);
    db.del("a").await.unwrap();
    assert_eq!(
        core.length().await,
        6,
        "deleting an absent key writes nothing"
    );
    db.put_null("n").await.unwrap();
    let n = db.get("n").await.unwrap().expect("a null put is found");
    assert_eq!(n.value, None);
    assert_eq!(
        db.get_by_seq(2).await.unwrap(),
        ("b".into(), Some("2".into()))
    );
    assert_eq!(keys_of(&db, Default::default()).await, ["", "b", "n"]);
    assert!(db.writable().await);
    assert_eq!(db.key().await, core.key().await);
}

type Range = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    Option<u64>,
);

/// JS's range semantics on an ordered map: `gt` wins over `gte`, `lt` over `lte`.
fn model_range(map: &BTreeMap<String, String>, r: &Range) -> Vec<String> {
    let (gt, gte, lt, lte, reverse, limit) = r;
    let lower = match (gt, gte) {
        (Some(k), _) => Bound::Excluded(k.as_str()),
        (None, Some(k)) => Bound::Included(k.as_str()),
        _ => Bound::Unbounded,
    };
    let upper = match (lt, lte) {
        (Some(k), _) => Bound::Excluded(k.as_str()),
        (None, Some(k)) => Bound::Included(k.as_str()),
        _ => Bound::Unbounded,
    };
    let inside = |k: &str| {
        (match lower {
            Bound::Excluded(l) => k > l,
            Bound::Included(l) => k >= l,
            Bound::Unbounded => true,
        }) && (match upper {
            Bound::Excluded(u) => k < u,
            Bound::Included(u) => k <= u,
            Bound::Unbounded => true,
        })
    };
    let mut keys: Vec<String> = map.keys().filter(|k| inside(k)).cloned().collect();
    if *reverse {
        keys.reverse();
    }
    if let Some(l) = limit {
        keys.truncate(*l as usize);
    }
    keys
}

async fn check_range<S: Storage + 'static>(db: &Bee<S>, map: &BTreeMap<String, String>, r: &Range) {
    let opts = RangeOptions::<Utf8> {
        gt: r.0.as_deref(),
        gte: r.1.as_deref(),
        lt: r.2.as_deref(),
        lte: r.3.as_deref(),
        reverse: r.4,
        limit: r.5,
    };
    let got = keys_of(db, opts.clone()).await;
    assert_eq!(got, model_range(map, r), "range {r:?}");
    let first = db.peek(opts).await.unwrap().map(|e| e.key);
    let want = model_range(
        map,
        &(
            r.0.clone(),
            r.1.clone(),
            r.2.clone(),
            r.3.clone(),
            r.4,
            Some(1),
        ),
    );
    assert_eq!(first, want.into_iter().next(), "peek {r:?}");
}

/// Every range option (gt/gte/lt/lte, reverse, limit) on a three-level tree.
pub async fn ranges<S: Storage + 'static>(storage: S) {
    let (_core, db) = bee(storage).await;
    let mut map = BTreeMap::new();
    let mut b = db.batch();
    for i in (0..120).step_by(2) {
        let k = format!("k{i:03}");
        b.put(&k, &format!("v{i}")).await.unwrap();
        map.insert(k, format!("v{i}"));
    }
    b.flush().await.unwrap();
    let bounds: Vec<Option<String>> = vec![
        None,
        Some("k000".into()),
        Some("k001".into()),
        Some("k050".into()),
        Some("k051".into()),
        Some("k118".into()),
        Some("k2".into()),
        Some("a".into()),
    ];
    let mut n = 0;
    for lower in &bounds {
        for upper in &bounds {
            for (reverse, limit) in [
                (false, None),
                (true, None),
                (false, Some(3)),
                (true, Some(1)),
                (false, Some(0)),
            ] {
                for incl in [false, true] {
                    let r = if incl {
                        (None, lower.clone(), None, upper.clone(), reverse, limit)
                    } else {
                        (lower.clone(), None, upper.clone(), None, reverse, limit)
                    };
                    check_range(&db, &map, &r).await;
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 640);
    // Both bounds of a side given: gt wins over gte, lt over lte (JS).
    check_range(
        &db,
        &map,
        &(
            Some("k010".into()),
            Some("k004".into()),
            Some("k020".into()),
            Some("k030".into()),
            false,
            None,
        ),
    )
    .await;
}

/// Batches: pending reads, one append, the write lock, reuse after flush, drop discards.
pub async fn batches<S: Storage + 'static>(storage: S) {
    let (core, db) = bee(storage).await;
    db.put("x", "0").await.unwrap();
    let len = core.length().await;
    let mut b = db.batch();
    for i in 0..30 {
        b.put(&format!("b{i:02}"), "v").await.unwrap();
    }
    b.del("x").await.unwrap();
    b.del("missing").await.unwrap();
    assert_eq!(b.len(), 31, "a delete of an absent key stages nothing");
    assert_eq!(b.get("x").await.unwrap(), None, "the batch sees its delete");
    assert_eq!(b.get("b07").await.unwrap().unwrap().seq, len + 7);
    let staged = b
        .create_read_stream(RangeOptions {
            gte: Some("b10"),
            lt: Some("b13"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        staged.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["b10", "b11", "b12"]
    );
    assert_eq!(
        b.peek(Default::default()).await.unwrap().unwrap().key,
        "b00"
    );
    assert_eq!(
        db.get("x").await.unwrap().unwrap().value.as_deref(),
        Some("0"),
        "the bee does not"
    );

    // The batch holds the write lock: a put waits for the flush.
    {
        let mut put = pin!(db.put("after", "batch"));
        assert!(
            poll_once(put.as_mut()).is_pending(),
            "a put waits while a batch holds the lock"
        );
        assert_eq!(
            core.length().await,
            len,
            "nothing appended before the flush"
        );
        b.flush().await.unwrap();
        assert_eq!(
            core.length().await,
            len + 31,
            "one append of every staged block"
        );
        put.await.unwrap();
    }
    assert_eq!(db.get("after").await.unwrap().unwrap().seq, len + 31);
    assert_eq!(db.get("x").await.unwrap(), None);
    // Reused after a flush; dropped without one, nothing is written and the lock is free.
    b.put("again", "1").await.unwrap();
    b.flush().await.unwrap();
    assert_eq!(db.get("again").await.unwrap().unwrap().seq, len + 32);
    let mut d = db.batch();
    d.put("dropped", "1").await.unwrap();
    drop(d);
    db.put("free", "1").await.unwrap();
    assert_eq!(db.get("dropped").await.unwrap(), None);
    assert_eq!(core.length().await, len + 34);
    // Flushing an empty batch writes nothing.
    let mut e = db.batch();
    e.flush().await.unwrap();
    assert_eq!(core.length().await, len + 34);
}

/// Subs (prefix, separator, bounded ranges, subs of subs) and the JSON / binary encodings.
pub async fn subs_and_encodings<S: Storage + 'static>(storage: S) {
    let (core, db) = bee(storage).await;
    let users = db.sub("users");
    let admins = users.sub("admins");
    let slash = db.sub_with_sep("path", b"/");
    db.put("top", "t").await.unwrap();
    users.put("ann", "1").await.unwrap();
    users.put("bob", "2").await.unwrap();
    admins.put("root", "0").await.unwrap();
    slash.put("a", "s").await.unwrap();
    assert_eq!(
        keys_of(&users, Default::default()).await,
        ["admins\0root", "ann", "bob"]
    );
    assert_eq!(keys_of(&admins, Default::default()).await, ["root"]);
    assert_eq!(keys_of(&slash, Default::default()).await, ["a"]);
    assert_eq!(
        keys_of(
            &users,
            RangeOptions {
                gt: Some("ann"),
                ..Default::default()
            }
        )
        .await,
        ["bob"]
    );
    assert_eq!(
        users.get("bob").await.unwrap().unwrap().value.as_deref(),
        Some("2")
    );
    assert_eq!(
        db.get("users\0bob")
            .await
            .unwrap()
            .unwrap()
            .value
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        db.get("path/a").await.unwrap().unwrap().value.as_deref(),
        Some("s")
    );
    assert_eq!(users.prefix(), b"users\0");
    assert_eq!(admins.prefix(), b"users\0admins\0");
    let mut b = users.batch();
    b.put("cat", "3").await.unwrap();
    assert_eq!(b.get("cat").await.unwrap().unwrap().key, "cat");
    b.flush().await.unwrap();
    assert_eq!(keys_of(&db, Default::default()).await.len(), 6);

    let json = db.with_codecs(Utf8, Json);
    let v = serde_json::json!({"name": "ann", "tags": [1, 2.5, null], "ok": true});
    json.put("j", &v).await.unwrap();
    assert_eq!(json.get("j").await.unwrap().unwrap().value, Some(v));
    let raw = db.with_codecs(Binary, Binary);
    assert_eq!(
        raw.get(b"j").await.unwrap().unwrap().value.unwrap(),
        br#"{"name":"ann","tags":[1,2.5,null],"ok":true}"#
    );
    assert!(matches!(
        json.get("top").await,
        Err(BeeError::Encoding { codec: "json", .. })
    ));
    assert_eq!(core.length().await, 8);
}

/// Checkouts and snapshots, the history stream with every option, diff streams.
pub async fn versions_history_diff<S: Storage + 'static>(storage: S) {
    let (core, db) = bee(storage).await;
    let mut states: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(), BTreeMap::new()];
    let mut ops: Vec<(String, Option<String>)> = vec![(String::new(), None)];
    let mut map = BTreeMap::new();
    for i in 0..40u32 {
        let k = format!("h{:02}", (i * 7) % 23);
        if i % 5 == 4 && map.contains_key(&k) {
            db.del(&k).await.unwrap();
            map.remove(&k);
            ops.push((k, None));
        } else {
            db.put(&k, &format!("{i}")).await.unwrap();
            map.insert(k.clone(), format!("{i}"));
            ops.push((k, Some(format!("{i}"))));
        }
        states.push(map.clone());
    }
    let version = db.version().await;
    assert_eq!(version as usize, states.len() - 1);
    // Checkouts read the past; a snapshot does not move.
    for v in [1u64, 2, 10, 25, version] {
        let old = db.checkout(v).await;
        let want: Vec<String> = states[v as usize].keys().cloned().collect();
        assert_eq!(
            keys_of(&old, Default::default()).await,
            want,
            "checkout {v}"
        );
        assert_eq!(old.version().await, v);
        assert!(matches!(old.put("x", "y").await, Err(BeeError::ReadOnly)));
    }
    let snap = db.snapshot().await;
    db.put("later", "1").await.unwrap();
    assert_eq!(snap.get("later").await.unwrap(), None);
    assert!(db.get("later").await.unwrap().is_some());
    let future = db.checkout(version + 100).await;
    assert!(matches!(
        future.get("h01").await,
        Err(BeeError::VersionNotAvailable { .. })
    ));

    // History: every option.
    let all = db
        .create_history_stream(Default::default())
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 41);
    for e in &all[..40] {
        let (k, v) = &ops[e.seq as usize];
        assert_eq!((&e.key, &e.value), (k, v), "history {}", e.seq);
        assert_eq!(
            e.kind,
            if v.is_some() {
                HistoryType::Put
            } else {
                HistoryType::Del
            }
        );
    }
    let dbr = &db;
    let seqs = |o: HistoryOptions| async move {
        dbr.create_history_stream(o)
            .unwrap()
            .collect()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>()
    };
    let v = (version + 1) as i64; // one more put since
    assert_eq!(
        seqs(HistoryOptions {
            gte: Some(5),
            lt: Some(9),
            ..Default::default()
        })
        .await,
        [5, 6, 7, 8]
    );
    assert_eq!(
        seqs(HistoryOptions {
            gt: Some(5),
            lte: Some(9),
            ..Default::default()
        })
        .await,
        [6, 7, 8, 9]
    );
    assert_eq!(
        seqs(HistoryOptions {
            gte: Some(-3),
            ..Default::default()
        })
        .await,
        [v as u64 - 3, v as u64 - 2, v as u64 - 1]
    );
    assert_eq!(
        seqs(HistoryOptions {
            reverse: true,
            limit: Some(3),
            ..Default::default()
        })
        .await,
        [41, 40, 39]
    );
    assert_eq!(
        seqs(HistoryOptions {
            reverse: true,
            gte: Some(3),
            lt: Some(6),
            ..Default::default()
        })
        .await,
        [5, 4, 3]
    );
    assert_eq!(
        seqs(HistoryOptions {
            lt: Some(0),
            ..Default::default()
        })
        .await,
        Vec::<u64>::new()
    );
    assert_eq!(
        seqs(HistoryOptions {
            limit: Some(2),
            gte: Some(10),
            ..Default::default()
        })
        .await,
        [10, 11]
    );
    assert!(db
        .create_history_stream(HistoryOptions {
            live: true,
            reverse: true,
            ..Default::default()
        })
        .is_err());
    // Live history follows the core.
    let mut live = db
        .create_history_stream(HistoryOptions {
            live: true,
            gte: Some(-1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(live.next().await.unwrap().unwrap().key, "later");
    {
        let mut next = pin!(live.next());
        assert!(
            poll_once(next.as_mut()).is_pending(),
            "a live history waits"
        );
        db.put("live", "1").await.unwrap();
        assert_eq!(next.await.unwrap().unwrap().key, "live");
    }

    // Diff against every checkout, whole and within a range.
    let now = db.version().await;
    let mut cur = states.last().unwrap().clone();
    cur.insert("later".into(), "1".into());
    cur.insert("live".into(), "1".into());
    for v in [1u64, 3, 17, 30, 41, now] {
        let old = db.checkout(v).await;
        let diff = db
            .create_diff_stream(&old, Default::default())
            .collect()
            .await
            .unwrap();
        let past = states
            .get(v as usize)
            .cloned()
            .unwrap_or_else(|| cur.clone());
        let mut want: Vec<(String, Option<String>, Option<String>)> = Vec::new();
        let keys: std::collections::BTreeSet<&String> = cur.keys().chain(past.keys()).collect();
        for k in keys {
            // Every put writes a value of its own, so a changed seq is a changed value.
            let (l, r) = (cur.get(k), past.get(k));
            if l != r {
                want.push((k.clone(), l.cloned(), r.cloned()));
            }
        }
        let got: Vec<(String, Option<String>, Option<String>)> = diff
            .iter()
            .map(|d| {
                let k = d.left.as_ref().or(d.right.as_ref()).unwrap().key.clone();
                (
                    k,
                    d.left.as_ref().and_then(|e| e.value.clone()),
                    d.right.as_ref().and_then(|e| e.value.clone()),
                )
            })
            .collect();
        assert_eq!(got, want, "diff against version {v}");
        let ranged = db
            .create_diff_stream(
                &old,
                RangeOptions {
                    gte: Some("h05"),
                    lt: Some("h15"),
                    ..Default::default()
                },
            )
            .collect()
            .await
            .unwrap();
        let inside: Vec<_> = want
            .iter()
            .filter(|w| w.0.as_str() >= "h05" && w.0.as_str() < "h15")
            .collect();
        assert_eq!(
            ranged.len(),
            inside.len(),
            "ranged diff against version {v}"
        );
    }
    assert_eq!(core.length().await, now);
}

/// Compare-and-swap on puts and deletes, single and batched.
pub async fn compare_and_swap<S: Storage + 'static>(storage: S) {
    let (core, db) = bee(storage).await;
    db.put("k", "1").await.unwrap();
    let len = core.length().await;
    let wrote = db
        .put_cas("k", "2", |old, new| {
            old.value.as_deref() == Some("0") && new.value.as_deref() == Some("2")
        })
        .await
        .unwrap();
    assert!(!wrote, "refused");
    assert_eq!(core.length().await, len);
    let wrote = db
        .put_cas("k", "2", |old, new| {
            assert_eq!((old.seq, new.seq), (1, 2));
            old.value.as_deref() == Some("1")
        })
        .await
        .unwrap();
    assert!(wrote);
    assert!(
        db.put_cas("new", "n", |_, _| false).await.unwrap(),
        "a new key is always written"
    );
    assert!(!db
        .del_cas("k", |old, new| {
            assert!(new.value.is_none());
            old.value.as_deref() == Some("1")
        })
        .await
        .unwrap());
    assert!(db
        .del_cas("k", |old, _| old.value.as_deref() == Some("2"))
        .await
        .unwrap());
    assert_eq!(db.get("k").await.unwrap(), None);
    let mut b = db.batch();
    assert!(!b.put_cas("new", "x", |_, _| false).await.unwrap());
    assert!(b
        .put_cas("new", "y", |old, _| old.value.as_deref() == Some("n"))
        .await
        .unwrap());
    b.flush().await.unwrap();
    assert_eq!(
        db.get("new").await.unwrap().unwrap().value.as_deref(),
        Some("y")
    );
}

/// `get_and_watch` and `watch`. (A watcher that would report must not be pending on memory
/// storage; on IndexedDB every read is asynchronous, so only `is_pending` is asserted and the
/// reports are awaited.)
pub async fn watchers<S: Storage + 'static>(storage: S) {
    let (_core, db) = bee(storage).await;
    db.put("a", "1").await.unwrap();
    let mut w = db.get_and_watch("a").await.unwrap();
    assert_eq!(w.node().unwrap().value.as_deref(), Some("1"));
    {
        let mut ch = pin!(w.changed());
        assert!(poll_once(ch.as_mut()).is_pending());
        db.put("b", "other key").await.unwrap();
        assert!(
            poll_once(ch.as_mut()).is_pending(),
            "another key is no change"
        );
        db.put("a", "2").await.unwrap();
        let r = ch.await;
        assert_eq!(r.unwrap().unwrap().value.as_deref(), Some("2"));
    }
    let mut watcher = db.watch(
        RangeOptions {
            gte: Some("m"),
            lt: Some("p"),
            ..Default::default()
        },
        false,
    );
    {
        let mut next = pin!(watcher.next());
        assert!(poll_once(next.as_mut()).is_pending());
        db.put("z", "outside").await.unwrap();
        assert!(
            poll_once(next.as_mut()).is_pending(),
            "a change outside the range"
        );
        db.put("n", "inside").await.unwrap();
        let (cur, prev) = next.await.unwrap();
        assert_eq!(
            cur.get("n").await.unwrap().unwrap().value.as_deref(),
            Some("inside")
        );
        assert_eq!(prev.get("n").await.unwrap(), None);
    }
    let mut eager = db.watch(Default::default(), true);
    let (cur, prev) = eager.next().await.unwrap();
    assert_eq!(prev.version().await, 1);
    assert!(cur.version().await > 1);
    // `ready` takes the starting point (JS `await watcher.ready()`): a change made before the
    // first `next` is reported by it, not waited past.
    let mut early = db.watch(Default::default(), false);
    early.ready().await;
    let before = db.version().await;
    db.put("q", "after ready").await.unwrap();
    let (cur, prev) = early.next().await.unwrap();
    assert_eq!(prev.version().await, before);
    assert_eq!(cur.version().await, before + 1);
}

/// The header and its metadata, `is_hyperbee`, and blocks that are not a valid bee.
pub async fn header_and_bad_blocks<S: Storage + 'static>(storage: S, other: S) {
    let core = session(storage, 9).await;
    let meta = Metadata {
        content_feed: Some(vec![0xaa; 32]),
        user_data: None,
    };
    let db = Hyperbee::with_options(
        core.clone(),
        BeeOptions {
            metadata: Some(meta.clone()),
            ..Default::default()
        },
    );
    assert!(!Hyperbee::is_hyperbee(&core).await.unwrap());
    assert_eq!(db.get_header().await.unwrap(), None);
    db.ensure_header().await.unwrap();
    assert_eq!(
        core.get(0).await.unwrap().unwrap(),
        Header::new(Some(meta.clone())).encode()
    );
    assert_eq!(db.get_header().await.unwrap().unwrap().metadata, Some(meta));
    assert!(Hyperbee::is_hyperbee(&core).await.unwrap());

    // A core of other blocks: typed errors everywhere, never a panic.
    let bad = session(other, 10).await;
    bad.append(&[b"not a header", b"\xff\xff\xff", b"\x0a\x05"])
        .await
        .unwrap();
    assert!(!Hyperbee::is_hyperbee(&bad).await.unwrap());
    let db = Hyperbee::new(bad.clone()).with_codecs(Utf8, Utf8);
    assert!(matches!(
        db.get("a").await,
        Err(BeeError::InvalidNode { seq: 2, .. })
    ));
    assert!(db
        .create_read_stream(Default::default())
        .next()
        .await
        .is_err());
    assert!(db
        .create_history_stream(Default::default())
        .unwrap()
        .collect()
        .await
        .is_err());
    assert!(db.get_header().await.is_err());
    // Valid nodes, impossible trees: a cycle, a reference past the version, a missing level.
    let node = |levels: Vec<messages::Level>, key: &[u8]| {
        messages::encode_node(&messages::YoloIndex { levels }.encode(), key, Some(b"v"))
    };
    let lv = |keys: Vec<u64>, children: Vec<u64>| messages::Level { keys, children };
    bad.append(&[&node(vec![lv(vec![3], vec![3, 0, 3, 0])], b"m")])
        .await
        .unwrap();
    assert!(matches!(db.get("a").await, Err(BeeError::Corrupt { .. })));
    assert!(db
        .create_read_stream(Default::default())
        .collect()
        .await
        .is_err());
    assert!(db
        .create_read_stream(RangeOptions {
            reverse: true,
            ..Default::default()
        })
        .collect()
        .await
        .is_err());
    assert!(db.put("a", "b").await.is_err());
    bad.append(&[&node(vec![lv(vec![99], vec![])], b"m")])
        .await
        .unwrap();
    assert!(matches!(db.get("a").await, Err(BeeError::Corrupt { .. })));
    bad.append(&[&node(vec![lv(vec![5], vec![5, 7, 5, 0])], b"m")])
        .await
        .unwrap();
    assert!(matches!(db.get("a").await, Err(BeeError::Corrupt { .. })));
    assert!(db.del("m").await.is_err(), "deleting through a bad child");
    bad.append(&[&node(vec![], b"m")]).await.unwrap();
    assert!(matches!(db.get("m").await, Err(BeeError::Corrupt { .. })));
}

/// A small seeded generator (xorshift): each call gives a number in `0..n`.
pub(crate) fn seeded(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    }
}

/// A seeded random workload of puts, deletes, batches and compare-and-swaps against an ordered
/// map: every `get`, and ranges with random bounds, agree after every step.
pub async fn model<S: Storage + 'static>(storage: S, seed: u64, steps: usize) {
    let (_core, db) = bee(storage).await;
    let mut next = seeded(seed);
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    let key = |i: u64| format!("{:03}", i * 37 % 101);
    for step in 0..steps {
        match next(10) {
            0..=4 => {
                let k = key(next(80));
                let v = format!("{step}");
                db.put(&k, &v).await.unwrap();
                map.insert(k, v);
            }
            5..=6 => {
                let k = key(next(80));
                db.del(&k).await.unwrap();
                map.remove(&k);
            }
            7 => {
                let mut b = db.batch();
                let mut staged = map.clone();
                for j in 0..next(12) {
                    let k = key(next(80));
                    if next(3) == 0 {
                        b.del(&k).await.unwrap();
                        staged.remove(&k);
                    } else {
                        let v = format!("{step}.{j}");
                        b.put(&k, &v).await.unwrap();
                        staged.insert(k, v);
                    }
                }
                if next(4) == 0 {
                    drop(b);
                } else {
                    b.flush().await.unwrap();
                    map = staged;
                }
            }
            _ => {
                let k = key(next(80));
                let want = format!("{}", next(3));
                let v = format!("cas{step}");
                let wrote = db
                    .put_cas(&k, &v, |old, _| {
                        old.value.as_deref().is_some_and(|o| o.ends_with(&want))
                    })
                    .await
                    .unwrap();
                let expect = map.get(&k).is_none_or(|o| o.ends_with(&want));
                assert_eq!(wrote, expect, "cas at step {step}");
                if wrote {
                    map.insert(k, v);
                }
            }
        }
        if step % 25 == 24 || step + 1 == steps {
            for i in 0..80 {
                let k = key(i);
                let got = db.get(&k).await.unwrap().and_then(|e| e.value);
                assert_eq!(
                    got.as_ref(),
                    map.get(&k),
                    "get {k} at step {step} (seed {seed})"
                );
            }
            for _ in 0..6 {
                let b = |next: &mut dyn FnMut(u64) -> u64| (next(3) > 0).then(|| key(next(101)));
                let r: Range = if next(2) == 0 {
                    (
                        b(&mut next),
                        None,
                        b(&mut next),
                        None,
                        next(2) == 0,
                        (next(3) == 0).then(|| next(20)),
                    )
                } else {
                    (
                        None,
                        b(&mut next),
                        None,
                        b(&mut next),
                        next(2) == 0,
                        (next(3) == 0).then(|| next(20)),
                    )
                };
                check_range(&db, &map, &r).await;
            }
        }
    }
}
