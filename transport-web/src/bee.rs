//! Hyperbee in the browser: [`Hyperbee`], the JavaScript class over
//! [`hyperpunch_core::hyperbee::Hyperbee`] on a page's [`Hypercore`] (IndexedDB), and
//! [`WebCore`], that core as a [`BeeCore`].
//!
//! The bee stores bytes: the npm package's JS layer applies `keyEncoding` / `valueEncoding`
//! (`'binary'`, `'utf-8'`, `'json'`, as the JS `codecs` package encodes them) before calling in,
//! so the blocks are the ones JS hyperbee 2.x writes for the same operations.
//!
//! A read of a block the core does not hold asks the core's peers for that one block and waits
//! for it (as JS hyperbee on a sparse core), so a bee replicated with [`Hypercore`]'s
//! `replicate` downloads only what its queries walk.

use std::future::Future;
use std::rc::Rc;

use std::cell::RefCell;

use hyperpunch_core::hyperbee::{
    self as hb, BeeCore, BeeError, Binary, CoreState, Entry, HistoryOptions, HistoryType, HostCore,
    RangeOptions,
};
use hyperpunch_core::hypercore::HypercoreError;
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::chan::Stop;
use crate::js::{emit, js_err, Hypercore, Inner, Store};
use crate::replicate::SharedHub;

/// A page's [`Hypercore`] as the core of a bee (see the [module docs](self)): the core's
/// [`HostCore`] in its hub, announcing local appends to the core's listener.
#[derive(Clone)]
pub struct WebCore {
    core: HostCore<SharedHub<Store>>,
    inner: Rc<Inner>,
}

impl WebCore {
    /// The core of `core`.
    pub fn new(core: &Hypercore) -> Self {
        WebCore {
            core: HostCore::new(core.inner.hub.clone(), core.inner.discovery_key),
            inner: core.inner.clone(),
        }
    }
}

impl BeeCore for WebCore {
    async fn key(&self) -> [u8; 32] {
        self.core.key().await
    }

    async fn state(&self) -> CoreState {
        self.core.state().await
    }

    async fn snapshot(&self) -> Self {
        WebCore {
            core: self.core.snapshot().await,
            inner: self.inner.clone(),
        }
    }

    /// A block the core does not hold is downloaded from its peers first (waiting for as long
    /// as that takes, as JS does by default).
    async fn get(&self, index: u64) -> Result<Option<Vec<u8>>, HypercoreError> {
        self.core.get(index).await
    }

    async fn append(&self, blocks: &[&[u8]]) -> Result<u64, HypercoreError> {
        let length = self.core.append(blocks).await?;
        // Appended means stored (the core's writes go behind, `write_behind`).
        self.inner.store.durable().await?;
        emit(&self.inner.listener, "append", length as f64);
        Ok(length)
    }

    async fn wait_change(&self, length: u64, fork: u64) {
        self.core.wait_change(length, fork).await
    }
}

type Bee = hb::Hyperbee<WebCore, Binary, Binary>;

/// An entry of a bee with bytes for keys and values.
type RawEntry = Entry<Vec<u8>, Vec<u8>>;

fn bee_err(what: &str, e: BeeError) -> JsValue {
    js_err(what, e).into()
}

/// `{ seq, key, value }` (value `null` for a key put without one), as JS hyperbee's nodes.
fn entry_js(e: Entry<Vec<u8>, Vec<u8>>) -> JsValue {
    entry_ref_js(&e)
}

/// [`entry_js`] of a borrowed entry.
fn entry_ref_js(e: &Entry<Vec<u8>, Vec<u8>>) -> JsValue {
    let o = Object::new();
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(&o, &"seq".into(), &JsValue::from(e.seq as f64));
    let _ = Reflect::set(&o, &"key".into(), &Uint8Array::from(&e.key[..]).into());
    let value = match &e.value {
        Some(v) => Uint8Array::from(&v[..]).into(),
        None => JsValue::NULL,
    };
    let _ = Reflect::set(&o, &"value".into(), &value);
    o.into()
}

/// A Hyperbee (JS hyperbee 2.x: an append-only B-tree) on a page's [`Hypercore`], with bytes
/// for keys and values (the npm package encodes them). Blocks are byte-identical to JS
/// hyperbee's for the same operations.
#[wasm_bindgen]
pub struct Hyperbee {
    bee: Bee,
}

/// Range bounds and options of [`Hyperbee::read_stream`] (JS `createReadStream(range)`).
struct Range {
    gt: Option<Vec<u8>>,
    gte: Option<Vec<u8>>,
    lt: Option<Vec<u8>>,
    lte: Option<Vec<u8>>,
    reverse: bool,
    limit: Option<u64>,
}

impl Range {
    /// The bounds as a JS call gives them (`reverse` absent: false; `limit`: see [`limit`]).
    fn new(
        gt: Option<Vec<u8>>,
        gte: Option<Vec<u8>>,
        lt: Option<Vec<u8>>,
        lte: Option<Vec<u8>>,
        reverse: Option<bool>,
        limit: Option<f64>,
    ) -> Result<Range, JsError> {
        Ok(Range {
            gt,
            gte,
            lt,
            lte,
            reverse: reverse.unwrap_or(false),
            limit: self::limit(limit)?,
        })
    }

    fn opts(&self) -> RangeOptions<'_, Binary> {
        RangeOptions {
            gt: self.gt.as_deref(),
            gte: self.gte.as_deref(),
            lt: self.lt.as_deref(),
            lte: self.lte.as_deref(),
            reverse: self.reverse,
            limit: self.limit,
        }
    }
}

fn limit(limit: Option<f64>) -> Result<Option<u64>, JsError> {
    match limit {
        // JS hyperbee: a negative limit (its default, -1) means none.
        Some(l) if l < 0.0 => Ok(None),
        Some(l) => crate::js::index("limit", l).map(Some),
        None => Ok(None),
    }
}

/// A history bound from a JS number: an integer seq, negative counting back from the version.
fn seq_bound(what: &str, n: Option<f64>) -> Result<Option<i64>, JsError> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    match n {
        None => Ok(None),
        Some(n) if n.fract() == 0.0 && (-MAX_SAFE..=MAX_SAFE).contains(&n) => Ok(Some(n as i64)),
        Some(n) => Err(JsError::new(&format!(
            "{what} must be an integer (negative: back from the version), got {n}"
        ))),
    }
}

/// A JS compare-and-swap callback `(stored, next) => boolean` for the bee's `*_cas` calls: a
/// throw is kept (the write is refused) and handed back by [`JsCas::result`].
struct JsCas {
    f: Function,
    thrown: Rc<RefCell<Option<JsValue>>>,
}

impl JsCas {
    fn new(f: Function) -> Self {
        JsCas {
            f,
            thrown: Rc::default(),
        }
    }

    fn callback(&self) -> impl FnMut(&RawEntry, &RawEntry) -> bool + 'static {
        let f = self.f.clone();
        let thrown = self.thrown.clone();
        move |stored, next| {
            if thrown.borrow().is_some() {
                return false;
            }
            match f.call2(&JsValue::NULL, &entry_ref_js(stored), &entry_ref_js(next)) {
                Ok(v) => v.is_truthy(),
                Err(e) => {
                    *thrown.borrow_mut() = Some(e);
                    false
                }
            }
        }
    }

    /// `r`, unless the callback threw: then what it threw.
    fn result<T>(&self, r: Result<T, BeeError>) -> Result<Result<T, BeeError>, JsValue> {
        match self.thrown.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(r),
        }
    }
}

/// `{ type: 'put' | 'del', seq, key, value }` (JS hyperbee's history entries).
fn history_js(e: hb::HistoryEntry<Vec<u8>, Vec<u8>>) -> JsValue {
    let o = entry_js(Entry {
        seq: e.seq,
        key: e.key,
        value: e.value,
    });
    let kind = match e.kind {
        HistoryType::Put => "put",
        HistoryType::Del => "del",
    };
    let _ = Reflect::set(&o, &"type".into(), &kind.into());
    o
}

#[wasm_bindgen]
impl Hyperbee {
    /// A bee on `core` (JS `new Hyperbee(core, { metadata: { contentFeed, userData } })`): an
    /// empty writable core becomes a bee with its first write (block 0, the header, is written
    /// then, as JS does, with `contentFeed` and `userData` in its metadata when either is
    /// given).
    #[wasm_bindgen(constructor)]
    pub fn new(
        core: &Hypercore,
        #[wasm_bindgen(js_name = contentFeed)] content_feed: Option<Vec<u8>>,
        #[wasm_bindgen(js_name = userData)] user_data: Option<Vec<u8>>,
    ) -> Hyperbee {
        let metadata = (content_feed.is_some() || user_data.is_some()).then_some(hb::Metadata {
            content_feed,
            user_data,
        });
        let opts = hb::BeeOptions {
            metadata,
            ..hb::BeeOptions::default()
        };
        Hyperbee {
            bee: hb::Hyperbee::with_options(WebCore::new(core), opts),
        }
    }

    /// Block 0 of the core, the bee's header (JS `getHeader()`): `{ protocol, metadata }`
    /// with `metadata` `{ contentFeed, userData }` (each bytes or `null`) or `null` when the
    /// header has none; `null` for a core without blocks. A block 0 that is not a header
    /// rejects.
    #[wasm_bindgen(
        js_name = getHeader,
        unchecked_return_type = "Promise<{ protocol: string, metadata: { contentFeed: Uint8Array | null, userData: Uint8Array | null } | null } | null>"
    )]
    pub fn get_header(&self) -> Promise {
        let bee = self.bee.clone();
        future_to_promise(async move {
            let Some(h) = bee
                .get_header()
                .await
                .map_err(|e| bee_err("getHeader", e))?
            else {
                return Ok(JsValue::NULL);
            };
            let bytes =
                |b: Option<Vec<u8>>| b.map_or(JsValue::NULL, |b| Uint8Array::from(&b[..]).into());
            let o = Object::new();
            let _ = Reflect::set(&o, &"protocol".into(), &JsValue::from_str(&h.protocol));
            let metadata = h.metadata.map_or(JsValue::NULL, |m| {
                let md = Object::new();
                let _ = Reflect::set(&md, &"contentFeed".into(), &bytes(m.content_feed));
                let _ = Reflect::set(&md, &"userData".into(), &bytes(m.user_data));
                md.into()
            });
            let _ = Reflect::set(&o, &"metadata".into(), &metadata);
            Ok(o.into())
        })
    }

    /// A sub-database under `prefix` (JS `bee.sub(prefix, { sep })`; `sep` defaults to one
    /// zero byte): its keys are stored as `prefix ‖ sep ‖ key`.
    pub fn sub(&self, prefix: Vec<u8>, sep: Option<Vec<u8>>) -> Hyperbee {
        Hyperbee {
            bee: match sep {
                Some(sep) => self.bee.sub_with_sep(prefix, &sep),
                None => self.bee.sub(prefix),
            },
        }
    }

    /// Put `value` under `key` (JS `put(key, value, { cas })`); without `value` the key is put
    /// with no value (JS `put(key)`). With `cas`, an existing entry is replaced only when
    /// `cas(stored, new)` returns a truthy value (both `{ seq, key, value }` with encoded bytes;
    /// called synchronously, as JS hyperbee does; a throw rejects the put and writes nothing).
    /// Resolves once appended and stored, to whether a block was written.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn put(
        &self,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        #[wasm_bindgen(
            unchecked_param_type = "((stored: { seq: number, key: Uint8Array, value: Uint8Array | null }, next: { seq: number, key: Uint8Array, value: Uint8Array | null }) => unknown) | null | undefined"
        )]
        cas: Option<Function>,
    ) -> Promise {
        let bee = self.bee.clone();
        future_to_promise(async move {
            let written = match (value, cas) {
                (Some(v), None) => bee.put(&key, &v).await.map(|_| true),
                (None, None) => bee.put_null(&key).await.map(|_| true),
                (Some(v), Some(f)) => {
                    let cas = JsCas::new(f);
                    let r = bee.put_cas(&key, &v, cas.callback()).await;
                    cas.result(r)?
                }
                (None, Some(_)) => Err(BeeError::InvalidArgument(
                    "a compare-and-swap put needs a value",
                )),
            }
            .map_err(|e| bee_err("put", e))?;
            Ok(JsValue::from(written))
        })
    }

    /// `key`'s entry `{ seq, key, value }`, or `null` (JS `get(key)`).
    #[wasm_bindgen(
        unchecked_return_type = "Promise<{ seq: number, key: Uint8Array, value: Uint8Array | null } | null>"
    )]
    pub fn get(&self, key: Vec<u8>) -> Promise {
        let bee = self.bee.clone();
        future_to_promise(async move {
            let e = bee.get(&key).await.map_err(|e| bee_err("get", e))?;
            Ok(e.map_or(JsValue::NULL, entry_js))
        })
    }

    /// Delete `key` (JS `del(key, { cas })`); deleting a missing key appends nothing. With
    /// `cas`, the key is deleted only when `cas(stored, deletion)` returns a truthy value.
    /// Resolves to whether a block was written.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn del(
        &self,
        key: Vec<u8>,
        #[wasm_bindgen(
            unchecked_param_type = "((stored: { seq: number, key: Uint8Array, value: Uint8Array | null }, next: { seq: number, key: Uint8Array, value: Uint8Array | null }) => unknown) | null | undefined"
        )]
        cas: Option<Function>,
    ) -> Promise {
        let bee = self.bee.clone();
        future_to_promise(async move {
            let written = match cas {
                None => bee
                    .del_cas(&key, |_, _| true)
                    .await
                    .map_err(|e| bee_err("del", e))?,
                Some(f) => {
                    let cas = JsCas::new(f);
                    let r = bee.del_cas(&key, cas.callback()).await;
                    cas.result(r)?.map_err(|e| bee_err("del", e))?
                }
            };
            Ok(JsValue::from(written))
        })
    }

    /// The bee as of `version` (JS `checkout(version)`): read-only; reads fail while the core
    /// is shorter than `version`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Hyperbee>")]
    pub fn checkout(&self, version: f64) -> Result<Promise, JsError> {
        let version = crate::js::index("version", version)?;
        let bee = self.bee.clone();
        Ok(future_to_promise(async move {
            Ok(Hyperbee {
                bee: bee.checkout(version).await,
            }
            .into())
        }))
    }

    /// The bee as it is now, read-only (JS `snapshot()`); a checkout stays as it is.
    #[wasm_bindgen(unchecked_return_type = "Promise<Hyperbee>")]
    pub fn snapshot(&self) -> Promise {
        let bee = self.bee.clone();
        future_to_promise(async move {
            Ok(Hyperbee {
                bee: bee.snapshot().await,
            }
            .into())
        })
    }

    /// The version checked out (a checkout or snapshot), or `undefined` for the live bee.
    #[wasm_bindgen(getter, js_name = checkoutVersion)]
    pub fn checkout_version(&self) -> Option<f64> {
        self.bee.checkout_version().map(|v| v as f64)
    }

    /// Every put and delete in block order (JS `createHistoryStream({ gt, gte, lt, lte,
    /// reverse, limit, live })`): seqs, negative ones counting back from the version; `live`
    /// keeps following the core as it grows. Entries `{ type: 'put' | 'del', seq, key, value }`.
    #[wasm_bindgen(js_name = historyStream)]
    #[allow(clippy::too_many_arguments)]
    pub fn history_stream(
        &self,
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
        reverse: Option<bool>,
        limit: Option<f64>,
        live: Option<bool>,
    ) -> Result<HistoryIterator, JsError> {
        let opts = HistoryOptions {
            gt: seq_bound("gt", gt)?,
            gte: seq_bound("gte", gte)?,
            lt: seq_bound("lt", lt)?,
            lte: seq_bound("lte", lte)?,
            reverse: reverse.unwrap_or(false),
            limit: self::limit(limit)?,
            live: live.unwrap_or(false),
        };
        let iter = self
            .bee
            .create_history_stream(opts)
            .map_err(|e| js_err("history stream", e))?;
        Ok(HistoryIterator {
            iter: Rc::new(async_lock::Mutex::new(iter)),
            stop: Stop::default(),
        })
    }

    /// What differs between this bee (left) and `other` (right; e.g. a checkout) within the
    /// bounds (JS `createDiffStream(other, range)`): `{ left, right }` entries (`null` on the
    /// side without the key), in key order.
    #[wasm_bindgen(js_name = diffStream)]
    #[allow(clippy::too_many_arguments)]
    pub fn diff_stream(
        &self,
        other: &Hyperbee,
        gt: Option<Vec<u8>>,
        gte: Option<Vec<u8>>,
        lt: Option<Vec<u8>>,
        lte: Option<Vec<u8>>,
        reverse: Option<bool>,
        limit: Option<f64>,
    ) -> Result<DiffIterator, JsError> {
        let range = Range::new(gt, gte, lt, lte, reverse, limit)?;
        let iter = self.bee.create_diff_stream(&other.bee, range.opts());
        Ok(DiffIterator {
            iter: Rc::new(async_lock::Mutex::new(iter)),
        })
    }

    /// Watch the bounds (JS `watch(range)`): resolves once the watcher took its starting
    /// snapshot (JS `watcher.ready()`); each [`BeeWatcher::next`] then waits for a change in
    /// range (made here or replicated) and gives `[current, previous]` snapshots.
    /// With `eager`, changes are counted from the empty bee (version 1), so the first `next`
    /// reports at once when the range holds anything (JS `watch(range, { eager: true })`).
    #[wasm_bindgen(unchecked_return_type = "Promise<BeeWatcher>")]
    pub fn watch(
        &self,
        gt: Option<Vec<u8>>,
        gte: Option<Vec<u8>>,
        lt: Option<Vec<u8>>,
        lte: Option<Vec<u8>>,
        eager: Option<bool>,
    ) -> Promise {
        let range = Range {
            gt,
            gte,
            lt,
            lte,
            reverse: false,
            limit: None,
        };
        let mut watcher = self.bee.watch(range.opts(), eager.unwrap_or(false));
        future_to_promise(async move {
            watcher.ready().await;
            Ok(BeeWatcher {
                watcher: Rc::new(async_lock::Mutex::new(watcher)),
                stop: Stop::default(),
            }
            .into())
        })
    }

    /// The key and value block `seq` wrote (JS `getBySeq(seq)`; a deletion's value is
    /// `null`), `{ key, value }`.
    #[wasm_bindgen(
        js_name = getBySeq,
        unchecked_return_type = "Promise<{ key: Uint8Array, value: Uint8Array | null }>"
    )]
    pub fn get_by_seq(&self, seq: f64) -> Result<Promise, JsError> {
        let seq = crate::js::index("seq", seq)?;
        let bee = self.bee.clone();
        Ok(future_to_promise(async move {
            let (key, value) = bee
                .get_by_seq(seq)
                .await
                .map_err(|e| bee_err("getBySeq", e))?;
            let o = Object::new();
            let _ = Reflect::set(&o, &"key".into(), &Uint8Array::from(&key[..]).into());
            let value = value.map_or(JsValue::NULL, |v| Uint8Array::from(&v[..]).into());
            let _ = Reflect::set(&o, &"value".into(), &value);
            Ok(o.into())
        }))
    }

    /// `key`'s entry now and a watcher of its changes (JS `getAndWatch(key)`).
    #[wasm_bindgen(js_name = getAndWatch, unchecked_return_type = "Promise<BeeEntryWatcher>")]
    pub fn get_and_watch(&self, key: Vec<u8>) -> Promise {
        let bee = self.bee.clone();
        future_to_promise(async move {
            let w = bee
                .get_and_watch(&key)
                .await
                .map_err(|e| bee_err("getAndWatch", e))?;
            Ok(BeeEntryWatcher {
                node: Rc::new(RefCell::new(w.node().cloned())),
                watcher: Rc::new(async_lock::Mutex::new(w)),
                stop: Stop::default(),
            }
            .into())
        })
    }

    /// JS `version`: the core's length (at least 1).
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn version(&self) -> Promise {
        let bee = self.bee.clone();
        future_to_promise(async move { Ok(JsValue::from(bee.version().await as f64)) })
    }

    /// A batch (JS `bee.batch()`): puts and deletes staged in memory, appended in one write by
    /// `flush`; its first write takes the bee's write lock until then.
    pub fn batch(&self) -> BeeBatch {
        BeeBatch {
            batch: Rc::new(async_lock::Mutex::new(Some(self.bee.batch()))),
        }
    }

    /// Entries in key order within the bounds (JS `createReadStream({ gt, gte, lt, lte,
    /// reverse, limit })`), read from a snapshot taken at the first `next`. Bounds are encoded
    /// keys; a negative or absent `limit` means none.
    #[wasm_bindgen(js_name = readStream)]
    #[allow(clippy::too_many_arguments)]
    pub fn read_stream(
        &self,
        gt: Option<Vec<u8>>,
        gte: Option<Vec<u8>>,
        lt: Option<Vec<u8>>,
        lte: Option<Vec<u8>>,
        reverse: Option<bool>,
        limit: Option<f64>,
    ) -> Result<BeeIterator, JsError> {
        let range = Range::new(gt, gte, lt, lte, reverse, limit)?;
        let iter = self.bee.create_read_stream(range.opts());
        Ok(BeeIterator {
            iter: Rc::new(async_lock::Mutex::new(iter)),
        })
    }
}

/// An iterator over a bee's entries (see [`Hyperbee::read_stream`]).
#[wasm_bindgen]
pub struct BeeIterator {
    iter: Rc<async_lock::Mutex<hb::RangeIter<WebCore, Binary, Binary>>>,
}

#[wasm_bindgen]
impl BeeIterator {
    /// The next entry `{ seq, key, value }`, or `null` at the end.
    #[wasm_bindgen(
        unchecked_return_type = "Promise<{ seq: number, key: Uint8Array, value: Uint8Array | null } | null>"
    )]
    pub fn next(&self) -> Promise {
        let iter = self.iter.clone();
        future_to_promise(async move {
            let mut it = iter.lock().await;
            let e = it.next().await.map_err(|e| bee_err("read stream", e))?;
            Ok(e.map_or(JsValue::NULL, entry_js))
        })
    }
}

/// The history stream of a bee (see [`Hyperbee::history_stream`]).
#[wasm_bindgen]
pub struct HistoryIterator {
    iter: Rc<async_lock::Mutex<hb::HistoryIter<WebCore, Binary, Binary>>>,
    stop: Stop,
}

#[wasm_bindgen]
impl HistoryIterator {
    /// The next entry `{ type, seq, key, value }`, or `null` at the end (a live stream waits
    /// for the core to grow instead, until [`HistoryIterator::close`]).
    #[wasm_bindgen(
        unchecked_return_type = "Promise<{ type: 'put' | 'del', seq: number, key: Uint8Array, value: Uint8Array | null } | null>"
    )]
    pub fn next(&self) -> Promise {
        let iter = self.iter.clone();
        let stop = self.stop.clone();
        future_to_promise(async move {
            let next = stop
                .or(async move { iter.lock().await.next().await })
                .await
                .transpose()
                .map_err(|e| bee_err("history stream", e))?
                .flatten();
            Ok(next.map_or(JsValue::NULL, history_js))
        })
    }

    /// End the stream: a pending and every later `next` resolves to `null`.
    pub fn close(&self) {
        self.stop.stop();
    }
}

/// The diff stream of two versions of a bee (see [`Hyperbee::diff_stream`]).
#[wasm_bindgen]
pub struct DiffIterator {
    iter: Rc<async_lock::Mutex<hb::DiffIter<WebCore, Binary, Binary>>>,
}

#[wasm_bindgen]
impl DiffIterator {
    /// The next difference `{ left, right }` (each an entry or `null`), or `null` at the end.
    #[wasm_bindgen(
        unchecked_return_type = "Promise<{ left: { seq: number, key: Uint8Array, value: Uint8Array | null } | null, right: { seq: number, key: Uint8Array, value: Uint8Array | null } | null } | null>"
    )]
    pub fn next(&self) -> Promise {
        let iter = self.iter.clone();
        future_to_promise(async move {
            let d = iter
                .lock()
                .await
                .next()
                .await
                .map_err(|e| bee_err("diff stream", e))?;
            Ok(d.map_or(JsValue::NULL, |d| {
                let o = Object::new();
                let side = |e: Option<Entry<Vec<u8>, Vec<u8>>>| e.map_or(JsValue::NULL, entry_js);
                let _ = Reflect::set(&o, &"left".into(), &side(d.left));
                let _ = Reflect::set(&o, &"right".into(), &side(d.right));
                o.into()
            }))
        })
    }
}

/// A watcher of a range of a bee (see [`Hyperbee::watch`]).
#[wasm_bindgen]
pub struct BeeWatcher {
    watcher: Rc<async_lock::Mutex<hb::Watcher<WebCore, Binary, Binary>>>,
    stop: Stop,
}

#[wasm_bindgen]
impl BeeWatcher {
    /// Wait for the next change in range: `[current, previous]` snapshots, or `null` once
    /// closed.
    #[wasm_bindgen(unchecked_return_type = "Promise<[Hyperbee, Hyperbee] | null>")]
    pub fn next(&self) -> Promise {
        let watcher = self.watcher.clone();
        let stop = self.stop.clone();
        future_to_promise(async move {
            let next = stop
                .or(async move { watcher.lock().await.next().await })
                .await
                .transpose()
                .map_err(|e| bee_err("watch", e))?;
            Ok(next.map_or(JsValue::NULL, |(current, previous)| {
                Array::of2(
                    &Hyperbee { bee: current }.into(),
                    &Hyperbee { bee: previous }.into(),
                )
                .into()
            }))
        })
    }

    /// Stop watching: a pending and every later `next` resolves to `null`.
    pub fn close(&self) {
        self.stop.stop();
    }
}

/// A watcher of one key (see [`Hyperbee::get_and_watch`]).
#[wasm_bindgen]
pub struct BeeEntryWatcher {
    watcher: Rc<async_lock::Mutex<hb::EntryWatcher<WebCore, Binary, Binary>>>,
    node: Rc<RefCell<Option<RawEntry>>>,
    stop: Stop,
}

#[wasm_bindgen]
impl BeeEntryWatcher {
    /// The key's entry as of the last change, or `null`.
    #[wasm_bindgen(
        getter,
        unchecked_return_type = "{ seq: number, key: Uint8Array, value: Uint8Array | null } | null"
    )]
    pub fn node(&self) -> JsValue {
        self.node
            .borrow()
            .as_ref()
            .map_or(JsValue::NULL, entry_ref_js)
    }

    /// Wait until the entry changes (another seq, or a truncation): `true`, with
    /// [`BeeEntryWatcher::node`] updated; `false` once closed.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn changed(&self) -> Promise {
        let watcher = self.watcher.clone();
        let node = self.node.clone();
        let stop = self.stop.clone();
        future_to_promise(async move {
            let changed = stop
                .or(async move {
                    let mut w = watcher.lock().await;
                    let n = w.changed().await?.cloned();
                    *node.borrow_mut() = n;
                    Ok::<(), BeeError>(())
                })
                .await
                .transpose()
                .map_err(|e| bee_err("getAndWatch", e))?;
            Ok(JsValue::from(changed.is_some()))
        })
    }

    /// Stop watching: a pending and every later `changed` resolves to `false`.
    pub fn close(&self) {
        self.stop.stop();
    }
}

/// A batch of a [`Hyperbee`] (see [`Hyperbee::batch`]).
#[wasm_bindgen]
pub struct BeeBatch {
    /// `None` once closed.
    batch: Rc<async_lock::Mutex<Option<hb::Batch<WebCore, Binary, Binary>>>>,
}

impl BeeBatch {
    fn run<F, Fut>(&self, what: &'static str, f: F) -> Promise
    where
        F: FnOnce(Rc<async_lock::Mutex<Option<hb::Batch<WebCore, Binary, Binary>>>>) -> Fut
            + 'static,
        Fut: Future<Output = Result<JsValue, BeeError>> + 'static,
    {
        let batch = self.batch.clone();
        future_to_promise(async move { f(batch).await.map_err(|e| bee_err(what, e)) })
    }
}

fn closed() -> BeeError {
    BeeError::InvalidArgument("the batch is closed")
}

#[wasm_bindgen]
impl BeeBatch {
    /// Stage a put (JS `batch.put(key, value, { cas })`; without `value`, a key with no
    /// value); with `cas` as [`Hyperbee::put`]. Resolves to whether it was staged.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn put(
        &self,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        #[wasm_bindgen(
            unchecked_param_type = "((stored: { seq: number, key: Uint8Array, value: Uint8Array | null }, next: { seq: number, key: Uint8Array, value: Uint8Array | null }) => unknown) | null | undefined"
        )]
        cas: Option<Function>,
    ) -> Promise {
        let batch = self.batch.clone();
        future_to_promise(async move {
            let mut g = batch.lock().await;
            let b = g
                .as_mut()
                .ok_or_else(closed)
                .map_err(|e| bee_err("batch put", e))?;
            let staged = match (value, cas) {
                (Some(v), None) => b.put(&key, &v).await.map(|_| true),
                (None, None) => b.put_null(&key).await.map(|_| true),
                (Some(v), Some(f)) => {
                    let cas = JsCas::new(f);
                    let r = b.put_cas(&key, &v, cas.callback()).await;
                    cas.result(r)?
                }
                (None, Some(_)) => Err(BeeError::InvalidArgument(
                    "a compare-and-swap put needs a value",
                )),
            }
            .map_err(|e| bee_err("batch put", e))?;
            Ok(JsValue::from(staged))
        })
    }

    /// Stage a delete (JS `batch.del(key, { cas })`); resolves to whether it was staged.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn del(
        &self,
        key: Vec<u8>,
        #[wasm_bindgen(
            unchecked_param_type = "((stored: { seq: number, key: Uint8Array, value: Uint8Array | null }, next: { seq: number, key: Uint8Array, value: Uint8Array | null }) => unknown) | null | undefined"
        )]
        cas: Option<Function>,
    ) -> Promise {
        let batch = self.batch.clone();
        future_to_promise(async move {
            let mut g = batch.lock().await;
            let b = g
                .as_mut()
                .ok_or_else(closed)
                .map_err(|e| bee_err("batch del", e))?;
            let staged = match cas {
                None => b.del_cas(&key, |_, _| true).await,
                Some(f) => {
                    let cas = JsCas::new(f);
                    let r = b.del_cas(&key, cas.callback()).await;
                    cas.result(r)?
                }
            }
            .map_err(|e| bee_err("batch del", e))?;
            Ok(JsValue::from(staged))
        })
    }

    /// `key`'s entry with the staged writes applied, or `null` (JS `batch.get(key)`).
    #[wasm_bindgen(
        unchecked_return_type = "Promise<{ seq: number, key: Uint8Array, value: Uint8Array | null } | null>"
    )]
    pub fn get(&self, key: Vec<u8>) -> Promise {
        self.run("batch get", |b| async move {
            let mut g = b.lock().await;
            let e = g.as_mut().ok_or_else(closed)?.get(&key).await?;
            Ok(e.map_or(JsValue::NULL, entry_js))
        })
    }

    /// Append every staged write in one atomic append and release the lock (JS
    /// `batch.flush()`). The batch can be used again afterwards.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn flush(&self) -> Promise {
        self.run("batch flush", |b| async move {
            let mut g = b.lock().await;
            g.as_mut().ok_or_else(closed)?.flush().await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Discard what is staged and release the lock (JS `batch.close()`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        self.run("batch close", |b| async move {
            b.lock().await.take();
            Ok(JsValue::UNDEFINED)
        })
    }
}
