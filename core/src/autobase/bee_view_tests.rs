//! Hyperbee views ([`super::bee_view`]): the blocks apply's bee writes are the blocks hyperbee
//! writes for the same operations in the applied order (reorders included), reads see the view
//! (and never a block a reorder undid), and a view that holds blocks that are not a bee gives
//! typed errors.

use super::{ApplyNode, Autobase, Host, Views};
use crate::crypto::KeyPair;
use crate::encoding::Encode;
use crate::hyperbee::source::BeeCore;
use crate::hyperbee::{BeeError, Hyperbee, RangeOptions, Utf8};
use crate::hypercore::{CreateOptions, Hypercore};
use crate::storage::MemoryStorage;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One operation of a node's value: `put:k=v`, `del:k`, or `batch:` and operations separated
/// by `;` (one bee batch).
fn ops_of(value: &str) -> (bool, Vec<(&str, Option<&str>)>) {
    let (batch, list) = match value.strip_prefix("batch:") {
        Some(rest) => (true, rest.split(';').collect::<Vec<_>>()),
        None => (false, vec![value]),
    };
    let ops = list
        .into_iter()
        .filter_map(|op| {
            if let Some(kv) = op.strip_prefix("put:") {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                Some((k, Some(v)))
            } else {
                op.strip_prefix("del:").map(|k| (k, None))
            }
        })
        .collect();
    (batch, ops)
}

/// Apply: `add:w<key>` adds a writer; anything else is appended to the log view "ops" (the
/// applied order) and run on the bee view "db".
fn apply(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
    let ops_view = views.open("ops");
    let db = views.open("db");
    for n in nodes {
        if let Some(rest) = n.value.strip_prefix(b"add:") {
            if let Ok(k) = <[u8; 32]>::try_from(&rest[1..]) {
                host.add_writer(&k, rest[0] == b'i');
            }
            continue;
        }
        views.append(ops_view, n.value.to_vec());
        let value = String::from_utf8_lossy(n.value).into_owned();
        let (batch, ops) = ops_of(&value);
        let mut bee = views.bee(db).with_codecs(Utf8, Utf8);
        if batch {
            let mut b = bee.batch();
            for (k, v) in ops {
                match v {
                    Some(v) => b.put(k, v).unwrap(),
                    None => b.del(k).unwrap(),
                }
            }
            b.flush().unwrap();
        } else {
            for (k, v) in ops {
                match v {
                    Some(v) => bee.put(k, v).unwrap(),
                    None => bee.del(k).unwrap(),
                }
            }
        }
    }
}

type Base = Autobase<fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>)>;

fn base(bootstrap: [u8; 32]) -> Base {
    let f: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = apply;
    let mut b = Autobase::new(bootstrap, f);
    b.open_view("ops");
    b.open_view("db");
    b
}

/// The blocks hyperbee writes on a core for `ops` (values of [`ops_of`]), in order.
fn hyperbee_blocks(ops: &[Vec<u8>]) -> Vec<Vec<u8>> {
    futures_executor::block_on(async {
        let core = Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[9; 32])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let session = core.into_session();
        let bee = Hyperbee::new(session.clone()).with_codecs(Utf8, Utf8);
        for op in ops {
            let value = String::from_utf8_lossy(op).into_owned();
            let (batch, ops) = ops_of(&value);
            if batch {
                let mut b = bee.batch();
                for (k, v) in ops {
                    match v {
                        Some(v) => b.put(k, v).await.unwrap(),
                        None => b.del(k).await.unwrap(),
                    }
                }
                b.flush().await.unwrap();
            } else {
                for (k, v) in ops {
                    match v {
                        Some(v) => bee.put(k, v).await.unwrap(),
                        None => bee.del(k).await.unwrap(),
                    }
                }
            }
        }
        let n = BeeCore::state(&session).await.length;
        let mut out = Vec::new();
        for i in 0..n {
            out.push(BeeCore::get(&session, i).await.unwrap().unwrap());
        }
        out
    })
}

/// What the operations leave: key → value.
fn model(ops: &[Vec<u8>]) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    for op in ops {
        let value = String::from_utf8_lossy(op).into_owned();
        for (k, v) in ops_of(&value).1 {
            match v {
                Some(v) => m.insert(k.to_string(), v.to_string()),
                None => m.remove(k),
            };
        }
    }
    m
}

/// Puts, deletes and batches of one writer: the view holds hyperbee's blocks for them; gets and
/// ranges inside apply and from readers (now, and at the indexed length) see them.
#[test]
fn puts_dels_and_batches_in_apply_are_hyperbee_blocks() {
    let me = [1u8; 32];
    let mut b = base(me);
    let mut ops: Vec<Vec<u8>> = Vec::new();
    for i in 0..40 {
        let op = match i % 5 {
            0 | 1 => format!("put:k{:02}=v{i}", (i * 7) % 23),
            2 => format!("del:k{:02}", (i * 3) % 23),
            3 => format!("batch:put:b{i}=x;put:k{:02}=y{i};del:b{}", i % 23, i - 5),
            _ => format!("put:k{:02}=w{i}", i % 23),
        };
        b.append(&me, vec![op.clone().into_bytes()]).unwrap();
        ops.push(op.into_bytes());
        if i % 3 == 0 {
            b.update();
        }
    }
    b.update();
    let db = b.open_view("db");
    let want = hyperbee_blocks(&ops);
    assert!(want.len() > 40, "the tree split: {} blocks", want.len());
    assert_eq!(b.views().blocks(db), &want[..]);
    // reads outside apply
    let m = model(&ops);
    let bee = b.views().read_bee(db).with_codecs(Utf8, Utf8);
    assert_eq!(bee.version(), want.len() as u64);
    for k in 0..23 {
        let k = format!("k{k:02}");
        assert_eq!(
            bee.get(&k).unwrap().and_then(|e| e.value),
            m.get(&k).cloned(),
            "{k}"
        );
    }
    let all: Vec<(String, String)> = bee
        .range(RangeOptions::default())
        .unwrap()
        .into_iter()
        .map(|e| (e.key, e.value.unwrap()))
        .collect();
    assert_eq!(all, m.clone().into_iter().collect::<Vec<_>>());
    let range: Vec<String> = bee
        .range(RangeOptions {
            gte: Some("k05"),
            lt: Some("k15"),
            reverse: true,
            limit: Some(4),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    let want_range: Vec<String> = m
        .range("k05".to_string().."k15".to_string())
        .rev()
        .take(4)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(range, want_range);
    assert_eq!(range.len(), 4);
    // one writer, the bootstrap: everything is indexed at once
    let indexed = b.indexed_bee(db).with_codecs(Utf8, Utf8);
    assert_eq!(indexed.version(), want.len() as u64);
    // inside apply (a bee on the view, here from outside the engine): the same answers
    let mut views = b.views().clone();
    let bee = views.bee(db).with_codecs(Utf8, Utf8);
    assert_eq!(
        bee.peek(RangeOptions {
            gt: Some("k00"),
            ..Default::default()
        })
        .unwrap()
        .map(|e| e.key),
        m.range("k01".to_string()..).next().map(|(k, _)| k.clone())
    );
}

/// Three members write concurrently; an observer fed their oplogs in a random order reorders
/// its tip (undoing applied puts and deletes, then applying again): after every update the
/// bee view holds exactly the blocks hyperbee writes for the operations in the order now
/// applied, and its reads give that order's answers. A bee cache that kept a block the undo
/// removed would give other blocks (a tree node read from the undone block) or other answers.
#[test]
fn a_reorder_undoes_bee_writes_and_reads_see_the_truncated_view() {
    let keys = [[1u8; 32], [2u8; 32], [3u8; 32]];
    let mut bases: Vec<Base> = keys.iter().map(|_| base(keys[0])).collect();
    let mut logs: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
    let write =
        |i: usize, v: Option<Vec<u8>>, bases: &mut Vec<Base>, logs: &mut Vec<Vec<Vec<u8>>>| {
            let msgs = match v {
                Some(v) => bases[i].append(&keys[i], vec![v]),
                None => bases[i].ack(&keys[i]),
            };
            for m in msgs.into_iter().flatten() {
                logs[i].push(m.to_bytes());
            }
            bases[i].update();
        };
    for k in &keys[1..] {
        let mut add = b"add:w".to_vec();
        add.extend_from_slice(k);
        write(0, Some(add), &mut bases, &mut logs);
    }
    let mut rng = Rng(11);
    let mut fed = [[0usize; 3]; 3];
    for step in 0..45 {
        let to = rng.below(3);
        for w in 0..3 {
            while w != to && fed[to][w] < logs[w].len() && rng.below(3) > 0 {
                let seq = fed[to][w];
                bases[to]
                    .handle_block(&keys[w], seq as u64, &logs[w][seq])
                    .unwrap();
                fed[to][w] += 1;
            }
        }
        bases[to].update();
        if bases[to].is_writable(&keys[to]) {
            // the same few keys from every writer: concurrent puts and deletes of one key
            let k = rng.below(6);
            let op = match rng.below(4) {
                0 => format!("del:k{k}"),
                1 => format!("batch:put:k{k}=w{to}s{step};del:k{}", (k + 1) % 6),
                _ => format!("put:k{k}=w{to}s{step}"),
            };
            write(to, Some(op.into_bytes()), &mut bases, &mut logs);
        }
        write(0, None, &mut bases, &mut logs);
    }
    let mut observer = base(keys[0]);
    let (ops_view, db) = (observer.open_view("ops"), observer.open_view("db"));
    let mut have = [0usize; 3];
    let mut moved = 0;
    let mut checked = 0;
    while have.iter().zip(&logs).any(|(h, l)| *h < l.len()) {
        let w = rng.below(3);
        for _ in 0..1 + rng.below(4) {
            if have[w] < logs[w].len() {
                observer
                    .handle_block(&keys[w], have[w] as u64, &logs[w][have[w]])
                    .unwrap();
                have[w] += 1;
            }
        }
        let before = observer.views().blocks(db).to_vec();
        observer.update();
        let views = observer.views();
        let ops = views.blocks(ops_view);
        let kept = before.len().min(views.len(db));
        if views.blocks(db)[..kept] != before[..kept] {
            moved += 1;
        }
        let want = hyperbee_blocks(ops);
        assert_eq!(views.blocks(db), &want[..], "the bee view after an update");
        let m = model(ops);
        let bee = views.read_bee(db).with_codecs(Utf8, Utf8);
        for k in 0..6 {
            let k = format!("k{k}");
            assert_eq!(
                bee.get(&k).unwrap().and_then(|e| e.value),
                m.get(&k).cloned()
            );
        }
        let all: Vec<(String, String)> = bee
            .range(RangeOptions::default())
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value.unwrap()))
            .collect();
        assert_eq!(all, m.into_iter().collect::<Vec<_>>());
        // the indexed bee reads the indexed prefix of the same operations
        let indexed_ops = observer.indexed_view_lengths()[ops_view];
        let im = model(&ops[..indexed_ops]);
        let ibee = observer.indexed_bee(db).with_codecs(Utf8, Utf8);
        for k in 0..6 {
            let k = format!("k{k}");
            assert_eq!(
                ibee.get(&k).unwrap().and_then(|e| e.value),
                im.get(&k).cloned()
            );
        }
        checked += 1;
    }
    assert!(checked > 10);
    assert!(
        observer.views().len(db) > 40,
        "{}",
        observer.views().len(db)
    );
    assert!(moved > 0, "no reorder met: the undo path is not tested");
}

/// Truncating the view (what an undo does) and writing other blocks at the same seqs: reads
/// and the next writes see the new blocks, not the cached old ones.
#[test]
fn truncation_drops_cached_blocks() {
    let mut views = Views::default();
    let v = views.open("db");
    let mut bee = views.bee(v).with_codecs(Utf8, Utf8);
    for i in 0..12 {
        bee.put(&format!("a{i:02}"), "old").unwrap();
    }
    assert_eq!(
        bee.get("a05").unwrap().unwrap().value.as_deref(),
        Some("old")
    );
    drop(bee);
    assert_eq!(views.len(v), 13);
    views.truncate(&[7]);
    let mut bee = views.bee(v).with_codecs(Utf8, Utf8);
    assert!(bee.get("a08").unwrap().is_none(), "undone");
    for i in 0..6 {
        bee.put(&format!("b{i}"), "new").unwrap();
    }
    assert!(bee.get("a08").unwrap().is_none());
    assert_eq!(
        bee.get("b3").unwrap().unwrap().value.as_deref(),
        Some("new")
    );
    drop(bee);
    let mut ops: Vec<Vec<u8>> = (0..6)
        .map(|i| format!("put:a{i:02}=old").into_bytes())
        .collect();
    ops.extend((0..6).map(|i| format!("put:b{i}=new").into_bytes()));
    assert_eq!(views.blocks(v), &hyperbee_blocks(&ops)[..]);
    // a block the bee cached, undone, and another block at its seq that the bee did not write
    // (appended to the view as a log): the bee reads the new one
    let mut views = Views::default();
    let v = views.open("db");
    let mut bee = views.bee(v).with_codecs(Utf8, Utf8);
    bee.put("a", "1").unwrap();
    assert_eq!(bee.get("a").unwrap().unwrap().value.as_deref(), Some("1"));
    drop(bee);
    views.truncate(&[1]);
    views.append(v, hyperbee_blocks(&[b"put:b=2".to_vec()])[1].clone());
    let bee = views.bee(v).with_codecs(Utf8, Utf8);
    assert!(bee.get("a").unwrap().is_none(), "a block the undo removed");
    assert_eq!(bee.get("b").unwrap().unwrap().value.as_deref(), Some("2"));
}

/// A view whose blocks are not a bee (an app that appended raw blocks, or garbage): reads and
/// writes are typed errors, never a panic.
#[test]
fn bad_blocks_in_a_view_are_typed_errors() {
    let mut views = Views::default();
    let v = views.open("db");
    // garbage as block 0 and as a node
    views.append(v, b"not a header".to_vec());
    views.append(v, vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2]);
    let mut bee = views.bee(v).with_codecs(Utf8, Utf8);
    assert!(matches!(
        bee.get("a"),
        Err(BeeError::InvalidNode { seq: 1, .. })
    ));
    assert!(matches!(
        bee.put("a", "1"),
        Err(BeeError::InvalidNode { seq: 1, .. })
    ));
    assert!(matches!(
        bee.del("a"),
        Err(BeeError::InvalidNode { seq: 1, .. })
    ));
    assert!(bee.range(RangeOptions::default()).is_err());
    let mut batch = bee.batch();
    assert!(batch.put("a", "1").is_err());
    drop(batch);
    drop(bee);
    assert_eq!(views.len(v), 2, "nothing written");
    let r = views.read_bee(v);
    assert!(matches!(
        r.get(b"a"),
        Err(BeeError::InvalidNode { seq: 1, .. })
    ));
    // a valid node whose tree points past the view, and a cycle
    let mut views = Views::default();
    let v = views.open("db");
    let mut bee = views.bee(v).with_codecs(Utf8, Utf8);
    bee.put("a", "1").unwrap();
    drop(bee);
    let good = views.blocks(v)[1].clone();
    // YoloIndex { levels: [{ keys: [9], children: [] }] }
    let past =
        crate::hyperbee::messages::encode_node(&[0x0a, 0x03, 0x0a, 0x01, 0x09], b"b", Some(b"2"));
    views.append(v, past);
    let r = views.read_bee(v).with_codecs(Utf8, Utf8);
    assert!(
        matches!(r.get("a"), Err(BeeError::Corrupt { .. })),
        "{:?}",
        r.get("a")
    );
    let mut bee = views.bee(v).with_codecs(Utf8, Utf8);
    assert!(matches!(bee.put("c", "3"), Err(BeeError::Corrupt { .. })));
    drop(bee);
    assert_eq!(views.len(v), 3);
    assert_eq!(views.blocks(v)[1], good);
    // blocks below a fast-forward's start are not in memory: a typed error
    let mut views = Views::default();
    let v = views.open("db");
    views.reset(v, 5);
    views.append(v, past_root(4));
    let r = views.read_bee(v).with_codecs(Utf8, Utf8);
    assert!(
        matches!(r.get("a"), Err(BeeError::BlockNotAvailable(4 | 3))),
        "{:?}",
        r.get("a")
    );
}

/// A node whose root has one child: the node at block `child`.
fn past_root(child: u64) -> Vec<u8> {
    // keys [child], children [(child, 0), (child, 0)]
    let c = child as u8;
    crate::hyperbee::messages::encode_node(
        &[0x0a, 0x07, 0x0a, 0x01, c, 0x12, 0x02, c, 0x00],
        b"z",
        Some(b"1"),
    )
}

/// An [`super::AsyncApply`] (the browser's JS `apply`) that waits before it writes, then
/// awaits the bee's own futures ([`super::BeeView::hyperbee`]).
struct AsyncBee;

impl super::AsyncApply for AsyncBee {
    fn apply<'a, 'b: 'a>(
        &'a mut self,
        nodes: &'a [ApplyNode<'b>],
        views: &'a mut Views,
        _host: &'a mut Host<'b>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>> {
        Box::pin(async move {
            let mut yielded = false;
            std::future::poll_fn(|cx| {
                if yielded {
                    return std::task::Poll::Ready(());
                }
                yielded = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            })
            .await;
            let db = views.open("db");
            let bee = views.bee(db).with_codecs(Utf8, Utf8);
            for n in nodes {
                let value = String::from_utf8_lossy(n.value).into_owned();
                for (k, v) in ops_of(&value).1 {
                    match v {
                        Some(v) => bee.hyperbee().put(k, v).await.unwrap(),
                        None => bee.hyperbee().del(k).await.unwrap(),
                    }
                }
            }
        })
    }
}

/// `update_async` with an apply that waits and awaits the bee: the view holds hyperbee's blocks.
#[test]
fn an_async_apply_runs_the_bee_view() {
    let me = [1u8; 32];
    let mut b = base(me);
    let mut ops = Vec::new();
    for i in 0..30 {
        let op = if i % 4 == 3 {
            format!("del:k{}", i % 7)
        } else {
            format!("put:k{}=v{i}", (i * 5) % 11)
        };
        b.append(&me, vec![op.clone().into_bytes()]).unwrap();
        ops.push(op.into_bytes());
    }
    assert!(futures_executor::block_on(b.update_async(&mut AsyncBee)));
    let db = b.open_view("db");
    assert_eq!(b.views().blocks(db), &hyperbee_blocks(&ops)[..]);
}
