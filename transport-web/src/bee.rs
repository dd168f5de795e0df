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

use hyperpunch_core::hyperbee::{
    self as hb, BeeCore, BeeError, Binary, CoreState, Entry, HostCore, RangeOptions,
};
use hyperpunch_core::hypercore::HypercoreError;
use js_sys::{Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

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

fn bee_err(what: &str, e: BeeError) -> JsValue {
    js_err(what, e).into()
}

/// `{ seq, key, value }` (value `null` for a key put without one), as JS hyperbee's nodes.
fn entry_js(e: Entry<Vec<u8>, Vec<u8>>) -> JsValue {
    let o = Object::new();
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(&o, &"seq".into(), &JsValue::from(e.seq as f64));
    let _ = Reflect::set(&o, &"key".into(), &Uint8Array::from(&e.key[..]).into());
    let value = match e.value {
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

#[wasm_bindgen]
impl Hyperbee {
    /// A bee on `core` (JS `new Hyperbee(core)`): an empty writable core becomes a bee with its
    /// first write (block 0, the header, is written then, as JS does).
    #[wasm_bindgen(constructor)]
    pub fn new(core: &Hypercore) -> Hyperbee {
        Hyperbee {
            bee: hb::Hyperbee::new(WebCore::new(core)),
        }
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

    /// Put `value` under `key` (JS `put(key, value)`); without `value` the key is put with no
    /// value (JS `put(key)`). Resolves once appended and stored.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn put(&self, key: Vec<u8>, value: Option<Vec<u8>>) -> Promise {
        let bee = self.bee.clone();
        future_to_promise(async move {
            match value {
                Some(v) => bee.put(&key, &v).await,
                None => bee.put_null(&key).await,
            }
            .map_err(|e| bee_err("put", e))?;
            Ok(JsValue::UNDEFINED)
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

    /// Delete `key` (JS `del(key)`); deleting a missing key appends nothing.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn del(&self, key: Vec<u8>) -> Promise {
        let bee = self.bee.clone();
        future_to_promise(async move {
            bee.del(&key).await.map_err(|e| bee_err("del", e))?;
            Ok(JsValue::UNDEFINED)
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
        let range = Range {
            gt,
            gte,
            lt,
            lte,
            reverse: reverse.unwrap_or(false),
            limit: self::limit(limit)?,
        };
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
    /// Stage a put (JS `batch.put(key, value)`; without `value`, a key with no value).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn put(&self, key: Vec<u8>, value: Option<Vec<u8>>) -> Promise {
        self.run("batch put", |b| async move {
            let mut g = b.lock().await;
            let b = g.as_mut().ok_or_else(closed)?;
            match value {
                Some(v) => b.put(&key, &v).await?,
                None => b.put_null(&key).await?,
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Stage a delete (JS `batch.del(key)`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn del(&self, key: Vec<u8>) -> Promise {
        self.run("batch del", |b| async move {
            let mut g = b.lock().await;
            g.as_mut().ok_or_else(closed)?.del(&key).await?;
            Ok(JsValue::UNDEFINED)
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
