//! The autobase suite on IndexedDB in headless Chromium: the npm package's `Autobase`
//! (`hyperpunch_web::autobase::Autobase`; `apply` a `js_sys::Function`, a closure called through
//! JavaScript as the package's callback is, its promise awaited per batch) on several members,
//! each on its own IndexedDB corestore, replicating over in-memory duplexes in one page
//! (`memory_duplex` + `replicate_with`, as `tests/corestore.rs`).
//!
//! Scenarios: writers and the indexer partitioned, appending concurrently, then healed; a writer
//! removed by the indexer while partitioned (its later nodes are not applied); members closed
//! and reopened from IndexedDB; writers whose oplog cores hold bytes that are not oplog entries,
//! or a node linking a head nobody has; a seeded simulation of five writers (one or three
//! indexers) under random partitions and heals; the wakeup channel (a page announcing its
//! unindexed writer, a page member fetching a writer it learns of only from an announce); a page
//! indexer acking on its ack timer while it only waits for `changed()`. Members ack on the
//! engine's ack timer (JS `ackInterval`, [`ACK_INTERVAL_MS`]), which also breaks stalls of
//! crossed acks: no test writes a value to unstick indexers. Every member's view is checked on every update (what was indexed never
//! changes), and the converged view, indexed lengths and system length are compared with the
//! core engine (`hyperpunch_core::autobase::Autobase`) fed the same oplog blocks in-process.
//!
//! The apply (the same for the page's base and the in-process engine): a value `add:i‖key` or
//! `add:w‖key` adds an indexer or a writer, `rm:‖key` removes a writer, anything else is
//! appended to the view `view`.
//!
//! Run with `scripts/test-browser.sh --test autobase`.
#![cfg(target_arch = "wasm32")]

mod common;
use common::sleep;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use hyperpunch_core::autobase::messages::{Checkout, Node, OplogMessage};
use hyperpunch_core::autobase::wakeup::HubWakeup;
use hyperpunch_core::autobase::{ApplyNode, Autobase as Engine, AutobaseError, Host, Views};
use hyperpunch_core::corestore::{GetOptions, Namespace};
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::encoding::Encode;
use hyperpunch_core::secretstream::Options as StreamOptions;
use hyperpunch_web::autobase::Autobase;
use hyperpunch_web::drive::{Corestore, WebStore};
use hyperpunch_web::replicate::{memory_duplex, replicate_with, HubEvents};
use hyperpunch_web::storage::IdbStorage;
use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(f: &Function, ms: i32) -> JsValue;
}

/// The members' ack timer (JS `ackInterval`, here in milliseconds): short, so that the bounded
/// rounds of a [`settle`] see it run many times (each run acks only when the engine's timer
/// asks; a configuration, not a timing asserted).
const ACK_INTERVAL_MS: f64 = 50.0;

/// The rounds a [`settle`] takes at most (each updates every member, then naps 20 ms when
/// nothing is converged yet): a bound, not a timing.
const MAX_ROUNDS: usize = 400;

// ---- the apply, in JavaScript and in Rust -------------------------------------------------

enum Op {
    Add([u8; 32], bool),
    Remove([u8; 32]),
    Append,
}

fn op(value: &[u8]) -> Op {
    if let Some(rest) = value.strip_prefix(b"add:") {
        if let Some((&kind, k)) = rest.split_first() {
            if let Ok(k) = <[u8; 32]>::try_from(k) {
                return Op::Add(k, kind == b'i');
            }
        }
    }
    if let Some(k) = value.strip_prefix(b"rm:") {
        if let Ok(k) = <[u8; 32]>::try_from(k) {
            return Op::Remove(k);
        }
    }
    Op::Append
}

fn add(key: &[u8; 32], indexer: bool) -> Vec<u8> {
    let mut v = if indexer { b"add:i" } else { b"add:w" }.to_vec();
    v.extend_from_slice(key);
    v
}

fn rm(key: &[u8; 32]) -> Vec<u8> {
    let mut v = b"rm:".to_vec();
    v.extend_from_slice(key);
    v
}

/// The in-process engine's apply.
fn apply_rs(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
    let view = views.open("view");
    for n in nodes {
        match op(n.value) {
            Op::Add(k, i) => host.add_writer(&k, i),
            Op::Remove(k) => host.remove_writer(&k).expect("remove a writer"),
            Op::Append => views.append(view, n.value.to_vec()),
        }
    }
}

fn pair(a: &JsValue, b: &JsValue) -> Array {
    let x = Array::new();
    x.push(a);
    x.push(b);
    x
}

/// The page's apply (what the npm package's `Autobase` hands the wasm `Autobase`): the view
/// kept in `view` (truncated to the length the engine gives, as `pkg/index.js` does), the
/// operations handed back; `calls` counts the batches.
fn js_apply(view: Rc<RefCell<Vec<Vec<u8>>>>, calls: Rc<Cell<u64>>) -> Function {
    let f = Closure::<dyn FnMut(JsValue, JsValue) -> JsValue>::new(
        move |nodes: JsValue, lengths: JsValue| {
            calls.set(calls.get() + 1);
            let lengths: Array = lengths.unchecked_into();
            let len = lengths.get(0).as_f64().expect("a view length") as usize;
            let mut view = view.borrow_mut();
            assert!(len <= view.len(), "apply: the view grew behind our back");
            view.truncate(len);
            let ops = Array::new();
            for n in nodes.unchecked_into::<Array>().iter() {
                let value = Reflect::get(&n, &"value".into())
                    .unwrap()
                    .unchecked_into::<Uint8Array>()
                    .to_vec();
                let o = match op(&value) {
                    Op::Add(k, i) => {
                        let o = pair(&"add".into(), &Uint8Array::from(&k[..]));
                        o.push(&i.into());
                        o
                    }
                    Op::Remove(k) => pair(&"remove".into(), &Uint8Array::from(&k[..])),
                    Op::Append => {
                        let o = pair(&"append".into(), &JsValue::from(0));
                        o.push(&Uint8Array::from(&value[..]));
                        view.push(value);
                        o
                    }
                };
                ops.push(&o);
            }
            ops.into()
        },
    );
    f.into_js_value().unchecked_into()
}

// ---- members ---------------------------------------------------------------------------

/// What `Autobase.update()` resolves to.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    length: usize,
    indexed_view: usize,
    indexed_nodes: u64,
    system_length: u64,
    writable: bool,
    indexer: bool,
    /// Writers peers' wakeup announces made the base fetch.
    wakeup_hints: u64,
}

fn field(o: &JsValue, name: &str) -> JsValue {
    Reflect::get(o, &name.into()).unwrap()
}

impl Summary {
    fn from_js(o: &JsValue) -> Summary {
        let first = |name: &str| {
            field(o, name)
                .unchecked_into::<Array>()
                .get(0)
                .as_f64()
                .unwrap() as usize
        };
        Summary {
            length: first("lengths"),
            indexed_view: first("indexedLengths"),
            indexed_nodes: field(o, "indexedLength").as_f64().unwrap() as u64,
            system_length: field(o, "systemLength").as_f64().unwrap() as u64,
            writable: field(o, "writable").as_bool().unwrap(),
            indexer: field(o, "isIndexer").as_bool().unwrap(),
            wakeup_hints: field(o, "wakeupHints").as_f64().unwrap() as u64,
        }
    }
}

struct Member {
    label: String,
    db: String,
    bootstrap: Option<[u8; 32]>,
    store: Corestore,
    base: Autobase,
    key: [u8; 32],
    view: Rc<RefCell<Vec<Vec<u8>>>>,
    calls: Rc<Cell<u64>>,
    /// The view's indexed blocks the last update showed: never changed by a later one.
    indexed: Vec<Vec<u8>>,
    last: Option<Summary>,
}

fn db_name(label: &str) -> String {
    // Unique per run (the name only, never an asserted value).
    let salt = (js_sys::Math::random() * 1e12) as u64;
    format!("hyperpunch-autobase-{label}-{salt:x}")
}

async fn open_store(db: &str, primary_key: [u8; 32]) -> Corestore {
    Corestore::open(db.to_string(), Some(primary_key.to_vec()))
        .await
        .map_err(JsValue::from)
        .expect("open the corestore")
}

async fn open_base(
    store: &Corestore,
    bootstrap: Option<[u8; 32]>,
    view: &Rc<RefCell<Vec<Vec<u8>>>>,
    calls: &Rc<Cell<u64>>,
) -> Autobase {
    Autobase::open(
        store,
        bootstrap.map(|k| k.to_vec()),
        vec!["view".to_string()],
        js_apply(view.clone(), calls.clone()),
        Some(ACK_INTERVAL_MS),
    )
    .await
    .map_err(JsValue::from)
    .expect("open the autobase")
}

impl Member {
    /// A new member on a fresh IndexedDB database; `bootstrap` absent: it creates the base.
    async fn new(label: &str, seed: u8, bootstrap: Option<[u8; 32]>) -> Member {
        let db = db_name(label);
        IdbStorage::delete_database(&db).await.unwrap();
        Member::open(label, db, Some([seed; 32]), bootstrap).await
    }

    /// A member on the database `db`: a new store with `primary_key`, or (`None`) the store
    /// the database holds.
    async fn open(
        label: &str,
        db: String,
        primary_key: Option<[u8; 32]>,
        bootstrap: Option<[u8; 32]>,
    ) -> Member {
        let store = Corestore::open(db.clone(), primary_key.map(|k| k.to_vec()))
            .await
            .map_err(JsValue::from)
            .expect("open the corestore");
        let view = Rc::new(RefCell::new(Vec::new()));
        let calls = Rc::new(Cell::new(0));
        let base = open_base(&store, bootstrap, &view, &calls).await;
        let key: [u8; 32] = base.local_key().try_into().unwrap();
        Member {
            label: label.to_string(),
            db,
            bootstrap,
            store,
            base,
            key,
            view,
            calls,
            indexed: Vec::new(),
            last: None,
        }
    }

    fn base_key(&self) -> [u8; 32] {
        self.base.key().try_into().unwrap()
    }

    fn store(&self) -> WebStore {
        self.store.web_store().clone()
    }

    /// `update()`: the summary, with the view checked against it and what was indexed before.
    async fn update(&mut self) -> Summary {
        let o = JsFuture::from(self.base.update())
            .await
            .unwrap_or_else(|e| panic!("{}: update failed: {e:?}", self.label));
        let s = Summary::from_js(&o);
        let mut view = self.view.borrow_mut();
        // the engine may have undone blocks without a new batch to apply (pkg/index.js too)
        assert!(view.len() >= s.length, "{}: view behind", self.label);
        view.truncate(s.length);
        assert!(s.indexed_view <= s.length, "{}", self.label);
        let indexed = &view[..s.indexed_view];
        assert!(
            indexed.len() >= self.indexed.len()
                && indexed[..self.indexed.len()] == self.indexed[..],
            "{}: indexed blocks changed: {:?} then {:?}",
            self.label,
            show(&self.indexed),
            show(indexed)
        );
        self.indexed = indexed.to_vec();
        drop(view);
        self.last = Some(s.clone());
        s
    }

    async fn append(&mut self, values: &[&[u8]]) -> Result<(), JsValue> {
        let values: Vec<Uint8Array> = values.iter().map(|v| Uint8Array::from(*v)).collect();
        JsFuture::from(self.base.append(values)).await?;
        self.update().await;
        Ok(())
    }

    fn view(&self) -> Vec<Vec<u8>> {
        self.view.borrow().clone()
    }

    /// Close the base and let go of the store (the database stays).
    async fn close(self) -> Closed {
        JsFuture::from(self.base.close()).await.unwrap();
        let view = self.view.borrow().clone();
        Closed {
            label: self.label,
            db: self.db,
            bootstrap: self.bootstrap,
            key: self.key,
            primary_key: self.store.primary_key().try_into().unwrap(),
            view,
            summary: self.last.unwrap(),
        }
    }
}

/// A closed member: where it was, and what it showed last.
struct Closed {
    label: String,
    db: String,
    bootstrap: Option<[u8; 32]>,
    key: [u8; 32],
    primary_key: [u8; 32],
    view: Vec<Vec<u8>>,
    summary: Summary,
}

fn show(v: &[Vec<u8>]) -> Vec<String> {
    v.iter()
        .map(|b| {
            if b.len() > 20 {
                format!("{}…", String::from_utf8_lossy(&b[..5]))
            } else {
                String::from_utf8_lossy(b).into_owned()
            }
        })
        .collect()
}

// ---- links -----------------------------------------------------------------------------

/// One replication connection between two members' stores over an in-memory duplex.
struct Link {
    stop: Function,
    /// What the pumps returned (two once closed).
    done: Rc<RefCell<Vec<Result<(), String>>>>,
}

/// Replicate two stores over an in-memory duplex; `ids` seed the two ends' Noise key pairs.
fn link(sa: WebStore, sb: WebStore, ids: (u8, u8)) -> Link {
    let (x, y) = memory_duplex();
    let mut stop = None;
    let stopped = Promise::new(&mut |resolve, _| stop = Some(resolve));
    let done = Rc::new(RefCell::new(Vec::new()));
    let d = done.clone();
    spawn_local(async move {
        let stop = async move {
            let _ = JsFuture::from(stopped).await;
        };
        let kp = KeyPair::from_seed(&[ids.0; 32]);
        let r = replicate_with(x, true, kp, StreamOptions::default(), &sa, stop).await;
        d.borrow_mut().push(r.map_err(|e| e.to_string()));
    });
    let d = done.clone();
    spawn_local(async move {
        let kp = KeyPair::from_seed(&[ids.1; 32]);
        let never = std::future::pending();
        let r = replicate_with(y, false, kp, StreamOptions::default(), &sb, never).await;
        d.borrow_mut().push(r.map_err(|e| e.to_string()));
    });
    Link {
        stop: stop.unwrap(),
        done,
    }
}

fn connect(a: &Member, b: &Member, ids: (u8, u8)) -> Link {
    link(a.store(), b.store(), ids)
}

impl Link {
    /// End the connection gracefully and wait for both pumps (bounded).
    async fn close(self) {
        self.stop.call0(&JsValue::NULL).unwrap();
        for _ in 0..MAX_ROUNDS {
            if self.done.borrow().len() == 2 {
                break;
            }
            sleep(10).await;
        }
        let done = self.done.borrow();
        assert!(
            done.len() == 2 && done.iter().all(Result::is_ok),
            "both pumps closed cleanly: {done:?}"
        );
    }
}

/// The links between members, by pair `(i, j)`, `i < j`.
#[derive(Default)]
struct Net {
    links: BTreeMap<(usize, usize), Link>,
}

impl Net {
    /// Connect exactly the pairs in the same group (`group[i]` per member; `None`: offline).
    async fn partition(&mut self, members: &[Member], group: &[Option<usize>]) {
        let n = members.len();
        for i in 0..n {
            for j in i + 1..n {
                let want = group[i].is_some() && group[i] == group[j];
                let have = self.links.contains_key(&(i, j));
                if have && !want {
                    self.links.remove(&(i, j)).unwrap().close().await;
                } else if want && !have {
                    let l = connect(&members[i], &members[j], (i as u8 * 2 + 1, j as u8 * 2 + 2));
                    self.links.insert((i, j), l);
                }
            }
        }
    }

    async fn heal(&mut self, members: &[Member]) {
        self.partition(members, &vec![Some(0); members.len()]).await;
    }

    async fn split(&mut self, members: &[Member]) {
        let all: Vec<Option<usize>> = (0..members.len()).map(Some).collect();
        self.partition(members, &all).await;
    }

    async fn close(&mut self) {
        for (_, l) in std::mem::take(&mut self.links) {
            l.close().await;
        }
    }
}

/// Update every member until `done` holds (bounded by [`MAX_ROUNDS`]).
async fn settle(members: &mut [Member], what: &str, done: impl Fn(&[Member]) -> bool) {
    for _ in 0..MAX_ROUNDS {
        for m in members.iter_mut() {
            m.update().await;
        }
        if done(members) {
            return;
        }
        sleep(20).await;
    }
    let state: Vec<String> = members
        .iter()
        .map(|m| format!("{}: {:?} {:?}", m.label, m.last, show(&m.view())))
        .collect();
    panic!(
        "{what}: not reached after {MAX_ROUNDS} rounds:\n{}",
        state.join("\n")
    );
}

fn all_writable(members: &[Member]) -> bool {
    members
        .iter()
        .all(|m| m.last.as_ref().is_some_and(|s| s.writable))
}

/// Every member holds the same view, all of it indexed, with the same indexed length and
/// system length, and `want` values in it.
fn converged(members: &[Member], want: usize) -> bool {
    let first = members[0].view();
    let s0 = members[0].last.clone().unwrap();
    first.len() == want
        && members.iter().all(|m| {
            let s = m.last.as_ref().unwrap();
            m.view() == first
                && s.indexed_view == want
                && s.indexed_nodes == s0.indexed_nodes
                && s.system_length == s0.system_length
        })
}

/// Every block of `keys`' oplogs in `store`, waiting (bounded) for the ones still coming.
async fn oplogs(store: &WebStore, keys: &[[u8; 32]]) -> Vec<([u8; 32], Vec<Vec<u8>>)> {
    for _ in 0..MAX_ROUNDS {
        let mut out = Vec::new();
        let mut g = store.lock().await;
        let mut complete = true;
        for k in keys {
            let h = g.get(GetOptions::from_key(*k)).await.unwrap();
            let core = g.core(&h).unwrap();
            let mut blocks = Vec::new();
            for i in 0..core.length() {
                if !core.has(i) {
                    complete = false;
                    break;
                }
                blocks.push(core.get(i).await.unwrap().expect("a block it has"));
            }
            out.push((*k, blocks));
        }
        drop(g);
        if complete {
            return out;
        }
        sleep(10).await;
    }
    panic!("the oplogs did not all arrive");
}

/// The core engine fed the oplogs `member` holds of `keys`, in-process: its view, indexed
/// length and system length must be the page's. Returns the engine's errors per block.
async fn check_with_engine(member: &Member, keys: &[[u8; 32]]) -> Vec<AutobaseError> {
    let logs = oplogs(&member.store(), keys).await;
    let apply: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = apply_rs;
    let mut engine = Engine::new(member.base_key(), apply);
    let view = engine.open_view("view");
    let mut errors = Vec::new();
    for (k, blocks) in &logs {
        for (i, b) in blocks.iter().enumerate() {
            if let Err(e) = engine.handle_block(k, i as u64, b) {
                errors.push(e);
            }
        }
    }
    for _ in 0..1000 {
        if !engine.update() {
            break;
        }
    }
    let s = member.last.clone().unwrap();
    assert_eq!(
        show(engine.views().blocks(view)),
        show(&member.view()),
        "{}: the engine's view",
        member.label
    );
    assert_eq!(engine.views().blocks(view), &member.view()[..]);
    assert_eq!(engine.indexed_view_lengths()[view], s.indexed_view);
    assert_eq!(engine.indexed_nodes(), s.indexed_nodes);
    assert_eq!(engine.system().length, s.system_length);
    errors
}

async fn drop_members(members: Vec<Member>) {
    let mut dbs = Vec::new();
    for m in members {
        dbs.push(m.close().await.db);
    }
    for db in dbs {
        IdbStorage::delete_database(&db).await.unwrap();
    }
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

fn values(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// A bootstrap and `writers` writers it adds (the first `indexers` of them as indexers), all
/// connected, all writable.
async fn base_with_writers(label: &str, writers: usize, indexers: usize) -> (Vec<Member>, Net) {
    let mut members = vec![Member::new(&format!("{label}-b"), 1, None).await];
    let key = members[0].base_key();
    for i in 0..writers {
        members.push(Member::new(&format!("{label}-w{i}"), 2 + i as u8, Some(key)).await);
    }
    let adds: Vec<Vec<u8>> = members[1..]
        .iter()
        .enumerate()
        .map(|(i, m)| add(&m.key, i < indexers))
        .collect();
    let refs: Vec<&[u8]> = adds.iter().map(Vec::as_slice).collect();
    members[0].append(&refs).await.unwrap();
    let mut net = Net::default();
    net.heal(&members).await;
    settle(&mut members, "everyone writable", |m| {
        all_writable(m)
            && m.iter()
                .enumerate()
                .all(|(i, x)| x.last.as_ref().unwrap().indexer == (i <= indexers))
    })
    .await;
    (members, net)
}

fn keys(members: &[Member]) -> Vec<[u8; 32]> {
    members.iter().map(|m| m.key).collect()
}

// ---- scenarios -------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn partitioned_writers_and_indexer_converge_after_healing() {
    let (mut m, mut net) = base_with_writers("heal", 2, 0).await;
    assert!(m[0].last.as_ref().unwrap().indexer);
    assert!(!m[1].last.as_ref().unwrap().indexer);
    net.split(&m).await;
    m[0].append(&[b"b0"]).await.unwrap();
    m[1].append(&[b"w0-0", b"w0-1"]).await.unwrap();
    m[2].append(&[b"w1-0"]).await.unwrap();
    m[0].append(&[b"b1"]).await.unwrap();
    m[1].append(&[b"w0-2"]).await.unwrap();
    // alone, each sees its own values only
    assert_eq!(m[0].view(), values(&["b0", "b1"]));
    assert_eq!(m[1].view(), values(&["w0-0", "w0-1", "w0-2"]));
    assert_eq!(m[2].view(), values(&["w1-0"]));
    assert_eq!(
        m[0].last.as_ref().unwrap().indexed_view,
        2,
        "the indexer's own values"
    );
    net.heal(&m).await;
    settle(&mut m, "healed", |m| converged(m, 6)).await;
    assert_eq!(
        sorted(m[0].view()),
        values(&["b0", "b1", "w0-0", "w0-1", "w0-2", "w1-0"])
    );
    // a batch stays in one piece, in order
    let v = show(&m[0].view());
    let at = v.iter().position(|s| s == "w0-0").unwrap();
    assert_eq!(v[at + 1], "w0-1");
    let errors = check_with_engine(&m[2], &keys(&m)).await;
    assert!(errors.is_empty(), "{errors:?}");
    net.close().await;
    drop_members(m).await;
}

#[wasm_bindgen_test]
async fn a_writer_removed_by_the_indexer_stops_counting() {
    let (mut m, mut net) = base_with_writers("rm", 2, 0).await;
    m[1].append(&[b"w0 before"]).await.unwrap();
    settle(&mut m, "first value", |m| converged(m, 1)).await;
    // the removed writer is cut off: it does not hear of its removal and writes on
    net.partition(&m, &[Some(0), None, Some(0)]).await;
    let w0 = m[1].key;
    m[0].append(&[&rm(&w0)]).await.unwrap();
    m[0].append(&[b"b after"]).await.unwrap();
    m[1].append(&[b"w0 after"]).await.unwrap();
    m[2].append(&[b"w1 after"]).await.unwrap();
    assert_eq!(m[1].view(), values(&["w0 before", "w0 after"]));
    net.heal(&m).await;
    settle(&mut m, "healed", |m| {
        converged(m, 3)
            && m.iter()
                .all(|x| x.last.as_ref().unwrap().writable != (x.key == m[1].key))
    })
    .await;
    assert_eq!(
        sorted(m[0].view()),
        values(&["b after", "w0 before", "w1 after"])
    );
    assert_eq!(m[0].view()[0], b"w0 before");
    // the removed writer may no longer append
    assert!(m[1].append(&[b"refused"]).await.is_err());
    let errors = check_with_engine(&m[0], &keys(&m)).await;
    assert!(errors.is_empty(), "{errors:?}");
    net.close().await;
    drop_members(m).await;
}

#[wasm_bindgen_test]
async fn members_reopened_from_indexeddb_show_the_same_view_and_go_on() {
    let (mut m, mut net) = base_with_writers("reopen", 1, 0).await;
    m[0].append(&[b"b0"]).await.unwrap();
    m[1].append(&[b"w0", b"w1"]).await.unwrap();
    settle(&mut m, "before closing", |m| converged(m, 3)).await;
    // the writer writes more alone, so that it closes with a value not indexed yet
    net.split(&m).await;
    m[1].append(&[b"w2 offline"]).await.unwrap();
    net.close().await;
    let mut closed = Vec::new();
    for x in m {
        assert!(x.calls.get() > 0);
        closed.push(x.close().await);
    }
    // reopened with the primary key the database holds, offline: the view is replayed from
    // the oplogs in IndexedDB through the page's apply
    let mut m = Vec::new();
    for c in closed {
        let mut x = Member::open(&c.label, c.db, None, c.bootstrap).await;
        assert_eq!(x.key, c.key, "{}: the same local writer", c.label);
        assert_eq!(x.store.primary_key(), c.primary_key.to_vec());
        let s = x.update().await;
        assert!(x.calls.get() > 0, "{}: applied again", c.label);
        assert_eq!(
            x.view(),
            c.view,
            "{}: the same view after reopening",
            c.label
        );
        assert_eq!(s, c.summary, "{}: the same state after reopening", c.label);
        m.push(x);
    }
    assert_eq!(show(&m[1].view()), ["b0", "w0", "w1", "w2 offline"]);
    assert_eq!(m[1].last.as_ref().unwrap().indexed_view, 3);
    // and they go on
    m[0].append(&[b"b1"]).await.unwrap();
    m[1].append(&[b"w3"]).await.unwrap();
    net.heal(&m).await;
    settle(&mut m, "after reopening", |m| converged(m, 6)).await;
    assert_eq!(
        sorted(m[0].view()),
        values(&["b0", "b1", "w0", "w1", "w2 offline", "w3"])
    );
    let errors = check_with_engine(&m[1], &keys(&m)).await;
    assert!(errors.is_empty(), "{errors:?}");
    net.close().await;
    drop_members(m).await;
}

/// Write `blocks` raw into the core named `local` of `store` (the one an `Autobase` on it
/// would write); its key.
async fn raw_local(store: &WebStore, blocks: &[Vec<u8>]) -> [u8; 32] {
    let mut g = store.lock().await;
    let h = g
        .get(GetOptions::named(b"local").in_namespace(Namespace::ROOT))
        .await
        .unwrap();
    if !blocks.is_empty() {
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        let now = store.now();
        g.append(now, &h, &refs).await.unwrap();
    }
    *h.key()
}

fn node(heads: Vec<Checkout>, value: &[u8]) -> Vec<u8> {
    OplogMessage::new(Node {
        heads,
        batch: 1,
        value: Some(value.to_vec()),
    })
    .to_bytes()
}

#[wasm_bindgen_test]
async fn writers_of_bad_blocks_are_ignored_and_nothing_indexed_is_lost() {
    let (mut m, mut net) = base_with_writers("bad", 1, 0).await;
    let bkey = m[0].base_key();
    m[0].append(&[b"b0"]).await.unwrap();
    m[1].append(&[b"w0"]).await.unwrap();
    settle(&mut m, "before", |m| converged(m, 2)).await;
    // Two more stores, no autobase on them: their `local` cores will hold what we write.
    let x_db = db_name("bad-x");
    let y_db = db_name("bad-y");
    let x = open_store(&x_db, [40; 32]).await;
    let y = open_store(&y_db, [41; 32]).await;
    let (xs, ys) = (x.web_store().clone(), y.web_store().clone());
    let xk = raw_local(&xs, &[]).await;
    let yk = raw_local(&ys, &[]).await;
    m[0].append(&[&add(&xk, false), &add(&yk, false)])
        .await
        .unwrap();
    let blen = {
        let logs = oplogs(&m[0].store(), &[bkey]).await;
        logs[0].1.len() as u64
    };
    let after_add = vec![Checkout {
        key: bkey,
        length: blen,
    }];
    // x: a good node after the add, then bytes that are not an oplog entry, then a good node
    raw_local(
        &xs,
        &[
            node(after_add.clone(), b"x0"),
            b"\xff\xff\xff\xff not an oplog entry".to_vec(),
            node(vec![Checkout { key: xk, length: 1 }], b"x2"),
        ],
    )
    .await;
    // y: a node linking a head nobody has (it waits for ever), then one after it
    raw_local(
        &ys,
        &[
            node(
                vec![
                    after_add[0],
                    Checkout {
                        key: [0x77; 32],
                        length: 3,
                    },
                ],
                b"y0",
            ),
            node(vec![Checkout { key: yk, length: 1 }], b"y1"),
        ],
    )
    .await;
    let indexed_before = m[0].indexed.clone();
    // x serves the bootstrap, y the writer (the bootstrap gets y's blocks through it)
    let l0 = link(xs.clone(), m[0].store(), (72, 73));
    let l1 = link(ys.clone(), m[1].store(), (74, 75));
    m[0].append(&[b"b1"]).await.unwrap();
    m[1].append(&[b"w1"]).await.unwrap();
    settle(&mut m, "with the bad writers", |m| {
        converged(m, 5) && m.iter().all(|x| x.view().iter().any(|v| v == b"x0"))
    })
    .await;
    assert_eq!(sorted(m[0].view()), values(&["b0", "b1", "w0", "w1", "x0"]));
    assert_eq!(&m[0].view()[..indexed_before.len()], &indexed_before[..]);
    for x in &m {
        let s = x.last.as_ref().unwrap();
        assert!(s.writable, "{}", x.label);
    }
    // the engine in-process: the same view, and a typed error for the block that is no entry
    let mut all = keys(&m);
    all.extend([xk, yk]);
    let errors = check_with_engine(&m[1], &all).await;
    assert!(
        matches!(&errors[..], [AutobaseError::BadBlock { seq: 1, .. }]),
        "{errors:?}"
    );
    // and the bases go on
    m[0].append(&[b"b2"]).await.unwrap();
    settle(&mut m, "after", |m| converged(m, 6)).await;
    l0.close().await;
    l1.close().await;
    net.close().await;
    drop((xs, ys, x, y));
    drop_members(m).await;
    IdbStorage::delete_database(&x_db).await.unwrap();
    IdbStorage::delete_database(&y_db).await.unwrap();
}

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

/// Five writers (the bootstrap and four it adds; on even seeds two of them indexers too) under
/// random partitions: each seed splits the network into 1-3 groups (a member may be offline)
/// three times, members append batches in between, then heals; every member converges to one
/// view holding every value written, all indexed, and equal to the in-process engine's.
#[wasm_bindgen_test]
async fn five_writers_under_seeded_partitions_converge() {
    for seed in [1u64, 2, 3, 4, 5, 6] {
        let indexers = if seed % 2 == 0 { 2 } else { 0 };
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
        let (mut m, mut net) = base_with_writers(&format!("sim{seed}"), 4, indexers).await;
        let n = m.len();
        let mut written = Vec::new();
        for epoch in 0..3 {
            let groups = 1 + rng.below(3);
            let group: Vec<Option<usize>> = (0..n)
                .map(|_| {
                    let g = rng.below(groups + 1);
                    (g < groups).then_some(g)
                })
                .collect();
            net.partition(&m, &group).await;
            for _ in 0..(4 + rng.below(6)) {
                let i = rng.below(n);
                if rng.below(3) == 0 {
                    m[i].update().await;
                    continue;
                }
                let mut batch = Vec::new();
                for _ in 0..1 + rng.below(2) {
                    let v = format!("s{seed} m{i} e{epoch} #{}", written.len()).into_bytes();
                    written.push(v.clone());
                    batch.push(v);
                }
                let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                m[i].append(&refs)
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed}: m{i} append: {e:?}"));
                if rng.below(2) == 0 {
                    // let the group's connections carry it before the next action
                    sleep(5).await;
                    for x in m.iter_mut() {
                        x.update().await;
                    }
                }
            }
        }
        // the partitions kept some values from some members (deterministic for these seeds:
        // a member outside a writer's group has no link to it)
        for x in m.iter_mut() {
            x.update().await;
        }
        assert!(
            m.iter().any(|x| x.view().len() < written.len()),
            "seed {seed}: no partition mattered"
        );
        net.heal(&m).await;
        // Three indexers whose acks crossed (every value on every member, `shouldAck` asking
        // none of them for another) used to wait here for a new value, as JS indexers do; the
        // suite had an indexer write one. The engine's ack timer breaks that stall by itself
        // (its stall ack): no new value is written, and the bounded rounds must see every value
        // indexed.
        settle(&mut m, &format!("seed {seed}: every value indexed"), |m| {
            converged(m, written.len())
        })
        .await;
        assert_eq!(sorted(m[0].view()), sorted(written), "seed {seed}");
        let errors = check_with_engine(&m[n - 1], &keys(&m)).await;
        assert!(errors.is_empty(), "seed {seed}: {errors:?}");
        net.close().await;
        drop_members(m).await;
    }
}

/// The first `len` blocks of `key`'s oplog in `store`, waiting (bounded) for them.
async fn oplog_of(store: &WebStore, key: [u8; 32], len: usize) -> Vec<Vec<u8>> {
    for _ in 0..MAX_ROUNDS {
        let got = oplogs(store, &[key]).await.remove(0).1;
        if got.len() >= len {
            return got;
        }
        sleep(20).await;
    }
    panic!("the oplog did not arrive");
}

/// Hand `store`'s hub events to a wakeup topic driven by the test (as a native peer does).
async fn pump<A: hyperpunch_core::autobase::Apply>(
    store: &WebStore,
    events: &mut HubEvents,
    wakeup: &mut HubWakeup,
    engine: &mut Engine<A>,
) {
    let mut g = store.lock().await;
    let now = store.now();
    while let Some(ev) = events.try_next() {
        wakeup
            .handle_hub_event(now, g.hub_mut(), engine, &ev)
            .await
            .unwrap();
    }
}

/// The wakeup channel of page members, both ways. The writer `w` appends while the bootstrap is
/// away (nodes not indexed). A peer `x` (a store driven by the test with the core's wakeup topic
/// and an engine, as a native or JS peer) holds `w`'s oplog but not the bootstrap's: `w`'s page
/// announces its unindexed writer to `x` (a hint there). A new member `r` is connected only to
/// `x` (so it cannot read the system's add of `w`): `x` announces `w`, `r`'s base takes the
/// announce as a hint, opens `w`'s oplog and downloads it from `x`. Without the page's wakeup
/// channel neither happens (`r` never opens that core). Once `r` meets `w`, it applies `w`'s
/// nodes.
#[wasm_bindgen_test]
async fn a_writer_reaches_a_page_member_only_through_wakeup() {
    let (mut m, mut net) = base_with_writers("wake", 1, 0).await;
    net.close().await;
    m[1].append(&[b"w-0", b"w-1"]).await.unwrap();
    let key = m[0].base_key();
    let (b, w) = (m[0].key, m[1].key);
    let logs = oplogs(&m[1].store(), &[b, w]).await;
    let w_len = logs[1].1.len();

    // x: w's oplog only (not the bootstrap's), and an engine fed the bootstrap's oplog: it
    // knows w is a writer, not w's nodes
    let xdb = db_name("wake-x");
    let x = open_store(&xdb, [40; 32]).await;
    let xs = x.web_store().clone();
    let mut x_events = xs.subscribe().await;
    let mut x_wakeup = HubWakeup::new(key);
    let apply: fn(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) = apply_rs;
    let mut x_engine = Engine::new(key, apply);
    x_engine.open_view("view");
    let feed = |engine: &mut Engine<_>, (k, blocks): &([u8; 32], Vec<Vec<u8>>)| {
        for (i, blk) in blocks.iter().enumerate() {
            engine.handle_block(k, i as u64, blk).unwrap();
        }
        for _ in 0..1000 {
            if !engine.update() {
                break;
            }
        }
    };
    feed(&mut x_engine, &logs[0]);
    {
        let mut g = xs.lock().await;
        x_wakeup.attach(g.hub_mut());
        let h = g.get(GetOptions::from_key(w)).await.unwrap();
        g.replicator_mut(&h)
            .unwrap()
            .download(0, 0, Some(w_len as u64))
            .await
            .unwrap();
    }
    let wx = link(m[1].store(), xs.clone(), (21, 22));
    // w's page announces its unindexed writer on its wakeup channel: x takes it as a hint
    let mut hinted = false;
    for _ in 0..MAX_ROUNDS {
        pump(&xs, &mut x_events, &mut x_wakeup, &mut x_engine).await;
        m[1].update().await;
        if x_wakeup.wakeup().hints >= 1 {
            hinted = true;
            break;
        }
        sleep(20).await;
    }
    assert!(hinted, "w's page announced w to x");
    let x_w = oplog_of(&xs, w, w_len).await;
    assert_eq!(x_w, logs[1].1, "x holds w's oplog");
    feed(&mut x_engine, &(w, x_w));
    let announced = hyperpunch_core::autobase::wakeup::wakeup_writers(&x_engine);
    assert!(
        announced
            .iter()
            .any(|a| a.key == w && a.length == w_len as u64),
        "x announces w: {announced:?}"
    );

    let mut r = Member::new("wake-r", 30, Some(key)).await;
    let rx = link(r.store(), xs.clone(), (23, 24));
    let mut hinted = false;
    for _ in 0..MAX_ROUNDS {
        pump(&xs, &mut x_events, &mut x_wakeup, &mut x_engine).await;
        let s = r.update().await;
        if s.wakeup_hints >= 1 {
            hinted = true;
            break;
        }
        sleep(20).await;
    }
    assert!(hinted, "r took x's announce of w as a hint");
    // the base opened w's oplog on the hint and downloads it from x
    let got = oplog_of(&r.store(), w, w_len).await;
    assert_eq!(got, logs[1].1, "w's oplog reached r through x");
    assert!(r.view().is_empty(), "r does not know w is a writer yet");
    assert_eq!(r.last.as_ref().unwrap().system_length, 0);

    // r meets w: the system's add arrives, and w's nodes are applied
    let rw = connect(&r, &m[1], (25, 26));
    let mut all = vec![r, m.remove(1)];
    settle(&mut all, "r applies w's nodes", |m| {
        m[0].view() == values(&["w-0", "w-1"]) && m[1].view() == m[0].view()
    })
    .await;
    for l in [rw, rx, wx] {
        l.close().await;
    }
    all.push(m.remove(0));
    drop_members(all).await;
    drop(x);
    IdbStorage::delete_database(&xdb).await.unwrap();
}

/// A page indexer acks on its timer while the page only waits for `changed()` (as the npm
/// package's loop does: `changed()`, then `update()`): the writer's value comes in, nothing more
/// changes in the store, and the ack that indexes it is written because `changed()` resolves when
/// the engine's ack timer is due. Each wait is bounded: a `changed()` that has not resolved after
/// [`CHANGED_BOUND_MS`] fails the test (without the timer in `changed()` it never does).
#[wasm_bindgen_test]
async fn a_page_indexer_acks_on_its_timer_while_it_waits_for_changes() {
    let (mut m, mut net) = base_with_writers("timer", 1, 0).await;
    m[1].append(&[b"w-0"]).await.unwrap();
    let mut indexed = false;
    for _ in 0..MAX_ROUNDS {
        let next = m[0].base.changed();
        let s = m[0].update().await;
        if s.indexed_view == 1 && m[0].view() == values(&["w-0"]) {
            indexed = true;
            break;
        }
        let bound = Promise::new(&mut |resolve, _| {
            let f = Closure::once_into_js(move || {
                let _ = resolve.call1(&JsValue::NULL, &JsValue::from_str("bound"));
            });
            set_timeout(f.unchecked_ref(), CHANGED_BOUND_MS);
        });
        let won = JsFuture::from(Promise::race(&Array::of2(&next, &bound)))
            .await
            .unwrap();
        assert!(
            won.as_string().is_none(),
            "changed() did not resolve while the writer's value waited for an ack"
        );
    }
    assert!(indexed, "the writer's value was indexed by the page's ack");
    net.close().await;
    drop_members(m).await;
}

/// How long a `changed()` may take in [`a_page_indexer_acks_on_its_timer_while_it_waits_for_changes`]
/// (a bound on a wait that, with the ack timer at [`ACK_INTERVAL_MS`], ends within a few times
/// that).
const CHANGED_BOUND_MS: i32 = 5_000;
