//! The JavaScript API: [`Hypercore`], a hypercore stored in IndexedDB, and [`replicate`], which
//! connects two of them in the same page over an in-memory duplex (secret stream included).
//!
//! ```js
//! const writer = await Hypercore.create('writer-db')
//! await writer.append(new TextEncoder().encode('hello'))
//! const reader = await Hypercore.createReader('reader-db', writer.key)
//! const session = replicate(writer, reader)
//! const block = await reader.get(0) // waits for the block to arrive
//! await session.end()
//! ```
//!
//! Each `Hypercore` replicates through its own [`SharedHub`]; its synchronous getters read a
//! snapshot refreshed every time the hub is released, so they are current whenever JS runs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use hyperpunch_core::crypto::{Hash, KeyPair};
use hyperpunch_core::hypercore::{self as hc, CreateOptions, OpenOptions};
use hyperpunch_core::replication::{
    DownloadId, Event, HubEvent, Options, ReplicationHub, Replicator,
};
use hyperpunch_core::secretstream::Options as StreamOptions;
use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

use crate::chan::{channel, Receiver, Sender};
use crate::replicate::{memory_duplex, replicate_with, SharedHub};
use crate::storage::IdbStorage;
use crate::KeyLengthError;

/// What the synchronous getters report, refreshed on every release of the hub.
#[derive(Debug, Clone)]
struct Info {
    length: u64,
    contiguous_length: u64,
    byte_length: u64,
    fork: u64,
    tree_hash: Hash,
}

impl Info {
    fn of(core: &hc::Hypercore<IdbStorage>) -> Self {
        Info {
            length: core.length(),
            contiguous_length: core.contiguous_length(),
            byte_length: core.byte_length(),
            fork: core.fork(),
            tree_hash: core.tree_hash(),
        }
    }
}

/// Bounded downloads someone waits for, by id.
type Waiters = Rc<RefCell<HashMap<DownloadId, Sender<()>>>>;

struct Inner {
    hub: SharedHub<IdbStorage>,
    key: [u8; 32],
    discovery_key: [u8; 32],
    writable: bool,
    encrypted: bool,
    info: Rc<RefCell<Info>>,
    waiters: Waiters,
}

/// A hypercore (signed append-only log) stored in one IndexedDB database.
///
/// Create a writer with [`Hypercore::create`], a reader of someone else's core with
/// [`Hypercore::create_reader`], reopen either with [`Hypercore::open`]; connect two with
/// [`replicate`]. Block indexes and lengths are JS numbers (integers below 2^53).
#[wasm_bindgen]
pub struct Hypercore {
    inner: Rc<Inner>,
}

/// A JS-facing error with context.
fn js_err(what: &str, e: impl std::fmt::Display) -> JsError {
    JsError::new(&format!("{what}: {e}"))
}

/// A 32-byte key from JS bytes.
fn key32(what: &str, bytes: &[u8]) -> Result<[u8; 32], JsError> {
    bytes
        .try_into()
        .map_err(|_| js_err(what, KeyLengthError { len: bytes.len() }))
}

/// A block index or length from a JS number.
fn index(what: &str, n: f64) -> Result<u64, JsError> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if n.fract() != 0.0 || !(0.0..=MAX_SAFE).contains(&n) {
        return Err(JsError::new(&format!(
            "{what} must be a non-negative integer below 2^53, got {n}"
        )));
    }
    Ok(n as u64)
}

/// A fresh signing key pair from the browser's random source.
fn random_key_pair() -> Result<KeyPair, JsError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| js_err("crypto.getRandomValues", e))?;
    Ok(KeyPair::from_seed(&seed))
}

#[wasm_bindgen]
impl Hypercore {
    /// Create a new writable core in the IndexedDB database `name` (which must not hold a core
    /// yet), with a fresh random key pair kept in the database. With `encryptionKey` (32
    /// bytes) blocks are stored and sent encrypted.
    pub async fn create(
        name: String,
        #[wasm_bindgen(js_name = encryptionKey)] encryption_key: Option<Vec<u8>>,
    ) -> Result<Hypercore, JsError> {
        let opts = CreateOptions {
            key_pair: Some(random_key_pair()?),
            encryption_key: encryption_key
                .map(|k| key32("encryptionKey", &k))
                .transpose()?,
            ..CreateOptions::default()
        };
        Self::create_with(name, opts).await
    }

    /// Create a reader of the core with public key `key` (32 bytes) in the IndexedDB database
    /// `name` (which must not hold a core yet). Give the writer's `encryptionKey` to read an
    /// encrypted core.
    #[wasm_bindgen(js_name = createReader)]
    pub async fn create_reader(
        name: String,
        key: Vec<u8>,
        #[wasm_bindgen(js_name = encryptionKey)] encryption_key: Option<Vec<u8>>,
    ) -> Result<Hypercore, JsError> {
        let opts = CreateOptions {
            key: Some(key32("key", &key)?),
            encryption_key: encryption_key
                .map(|k| key32("encryptionKey", &k))
                .transpose()?,
            ..CreateOptions::default()
        };
        Self::create_with(name, opts).await
    }

    /// Open the core stored in the IndexedDB database `name` (writer or reader, with every
    /// block it verified before). An encrypted core needs its `encryptionKey`.
    pub async fn open(
        name: String,
        #[wasm_bindgen(js_name = encryptionKey)] encryption_key: Option<Vec<u8>>,
    ) -> Result<Hypercore, JsError> {
        let storage = IdbStorage::open(&name)
            .await
            .map_err(|e| js_err("open IndexedDB", e))?;
        let opts = OpenOptions {
            encryption_key: encryption_key
                .map(|k| key32("encryptionKey", &k))
                .transpose()?,
            ..OpenOptions::default()
        };
        let core = hc::Hypercore::open(storage, opts)
            .await
            .map_err(|e| js_err(&format!("open the core in {name:?}"), e))?;
        Self::share(core)
    }

    /// Delete the IndexedDB database `name` and every core block in it. Open connections to it
    /// close (their calls then fail).
    #[wasm_bindgen(js_name = deleteDatabase)]
    pub async fn delete_database(name: String) -> Result<(), JsError> {
        IdbStorage::delete_database(&name)
            .await
            .map_err(|e| js_err("delete IndexedDB", e))
    }

    /// The core's public key (32 bytes): what a reader needs to follow it.
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> Vec<u8> {
        self.inner.key.to_vec()
    }

    /// The discovery key (32 bytes): the hash of the key peers announce and meet on.
    #[wasm_bindgen(getter, js_name = discoveryKey)]
    pub fn discovery_key(&self) -> Vec<u8> {
        self.inner.discovery_key.to_vec()
    }

    /// Number of blocks in the core (as far as this peer verified).
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.inner.info.borrow().length as f64
    }

    /// Number of blocks from index 0 on that are all stored locally.
    #[wasm_bindgen(getter, js_name = contiguousLength)]
    pub fn contiguous_length(&self) -> f64 {
        self.inner.info.borrow().contiguous_length as f64
    }

    /// Total size of the blocks in bytes.
    #[wasm_bindgen(getter, js_name = byteLength)]
    pub fn byte_length(&self) -> f64 {
        self.inner.info.borrow().byte_length as f64
    }

    /// The fork id (bumped by truncations).
    #[wasm_bindgen(getter)]
    pub fn fork(&self) -> f64 {
        self.inner.info.borrow().fork as f64
    }

    /// The tree hash (32 bytes) of the current length: equal on two peers iff they hold the
    /// same log up to that length.
    #[wasm_bindgen(getter, js_name = treeHash)]
    pub fn tree_hash(&self) -> Vec<u8> {
        self.inner.info.borrow().tree_hash.to_vec()
    }

    /// Whether this peer can append (it holds the signing key).
    #[wasm_bindgen(getter)]
    pub fn writable(&self) -> bool {
        self.inner.writable
    }

    /// Whether blocks are encrypted.
    #[wasm_bindgen(getter)]
    pub fn encrypted(&self) -> bool {
        self.inner.encrypted
    }

    /// Append one block; resolves to the new length once it is stored, and tells connected
    /// peers.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn append(&self, block: Vec<u8>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let now = inner.hub.now();
            let mut g = inner.hub.lock().await;
            let out = g
                .replicator_mut(&inner.discovery_key)
                .ok_or_else(|| JsError::new("the core left its hub"))?
                .append(now, &[&block])
                .await
                .map_err(|e| js_err("append", e))?;
            Ok(JsValue::from(out.length as f64))
        })
    }

    /// The block at `index`. When it is not stored locally and `wait` is not `false`, it is
    /// downloaded from connected peers first (the promise stays pending until one has it);
    /// with `wait: false` a missing block resolves to `undefined`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array | undefined>")]
    pub fn get(&self, index: f64, wait: Option<bool>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let i = self::index("index", index)?;
            if let Some(block) = inner.get_local(i).await? {
                return Ok(js_sys::Uint8Array::from(&block[..]).into());
            }
            if wait == Some(false) {
                return Ok(JsValue::UNDEFINED);
            }
            inner.download(i, Some(i + 1)).await?;
            Ok(match inner.get_local(i).await? {
                Some(block) => js_sys::Uint8Array::from(&block[..]).into(),
                None => JsValue::UNDEFINED,
            })
        })
    }

    /// Download blocks `start..end` from connected peers; resolves once all are stored
    /// locally. Without `end`, keeps downloading every block from `start` on as the core grows
    /// (live) and resolves at once.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn download(&self, start: f64, end: Option<f64>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let start = index("start", start)?;
            let end = end.map(|e| index("end", e)).transpose()?;
            inner.download(start, end).await?;
            Ok(JsValue::UNDEFINED)
        })
    }
}

impl Hypercore {
    async fn create_with(name: String, opts: CreateOptions) -> Result<Hypercore, JsError> {
        let storage = IdbStorage::open(&name)
            .await
            .map_err(|e| js_err("open IndexedDB", e))?;
        let core = hc::Hypercore::create(storage, opts)
            .await
            .map_err(|e| js_err(&format!("create a core in {name:?}"), e))?;
        Self::share(core)
    }

    /// Put `core` in its own hub, keep the getters' snapshot fresh and resolve waiters of
    /// bounded downloads from the hub's events.
    fn share(core: hc::Hypercore<IdbStorage>) -> Result<Hypercore, JsError> {
        let key = *core.key();
        let writable = core.writable();
        let encrypted = core.encrypted();
        let info = Rc::new(RefCell::new(Info::of(&core)));
        let mut hub = ReplicationHub::new();
        let discovery_key = hub
            .add_core(Replicator::new(core, Options::default()))
            .map_err(|e| js_err("replicate the core", e))?;
        let (hub, mut events) = SharedHub::with_events(hub);
        hub.set_observer({
            let info = info.clone();
            move |h| {
                if let Some(r) = h.replicator(&discovery_key) {
                    *info.borrow_mut() = Info::of(r.core());
                }
            }
        });
        let waiters: Waiters = Rc::default();
        // Ends when the hub is gone (its event sender drops with it).
        spawn_local({
            let waiters = waiters.clone();
            async move {
                while let Some(event) = events.next().await {
                    if let HubEvent::Core {
                        event: Event::Downloaded { id },
                        ..
                    } = event
                    {
                        if let Some(tx) = waiters.borrow_mut().remove(&id) {
                            // The waiter may have gone away; nothing to tell then.
                            let _ = tx.send(());
                        }
                    }
                }
            }
        });
        Ok(Hypercore {
            inner: Rc::new(Inner {
                hub,
                key,
                discovery_key,
                writable,
                encrypted,
                info,
                waiters,
            }),
        })
    }
}

impl Inner {
    /// The block at `index` if stored locally.
    async fn get_local(&self, index: u64) -> Result<Option<Vec<u8>>, JsError> {
        let g = self.hub.lock().await;
        let r = g
            .replicator(&self.discovery_key)
            .ok_or_else(|| JsError::new("the core left its hub"))?;
        if !r.core().has(index) {
            // Not stored, or beyond the length this peer knows.
            return Ok(None);
        }
        r.core().get(index).await.map_err(|e| js_err("get", e))
    }

    /// Want `start..end`; for a bounded range, wait until it is all stored.
    async fn download(&self, start: u64, end: Option<u64>) -> Result<(), JsError> {
        let done: Option<Receiver<()>> = {
            let now = self.hub.now();
            let mut g = self.hub.lock().await;
            let id = g
                .replicator_mut(&self.discovery_key)
                .ok_or_else(|| JsError::new("the core left its hub"))?
                .download(now, start, end)
                .await
                .map_err(|e| js_err("download", e))?;
            // Registered before the guard drops, so before its `Downloaded` event is routed.
            end.map(|_| {
                let (tx, rx) = channel();
                self.waiters.borrow_mut().insert(id, tx);
                rx
            })
        };
        if let Some(mut done) = done {
            done.recv()
                .await
                .ok_or_else(|| JsError::new("download: the core was closed"))?;
        }
        Ok(())
    }
}

/// A running replication between two [`Hypercore`]s of the page (see [`replicate`]).
#[wasm_bindgen]
pub struct Replication {
    stop: Option<Sender<()>>,
    results: Vec<Receiver<Result<(), String>>>,
}

#[wasm_bindgen]
impl Replication {
    /// End the replication gracefully; resolves when both sides have closed, rejects with the
    /// first error either side stopped with (also one that happened before `end`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn end(&mut self) -> Promise {
        // Dropping the sender completes the initiator's stop signal; the responder follows.
        self.stop.take();
        let results = std::mem::take(&mut self.results);
        future_to_promise(async move {
            for mut r in results {
                match r.recv().await {
                    Some(Ok(())) | None => {}
                    Some(Err(e)) => return Err(JsError::new(&format!("replication: {e}")).into()),
                }
            }
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// Replicate `a` and `b` (cores of this page) with each other over an in-memory duplex: the
/// same secret-stream + protomux connection two browsers would run over a relay, with fresh
/// random handshake keys. Cores with the same key exchange blocks; ask for them with
/// `get`/`download`. Returns the running [`Replication`]; freeing it ends it too.
#[wasm_bindgen]
pub fn replicate(a: &Hypercore, b: &Hypercore) -> Result<Replication, JsError> {
    let (da, db) = memory_duplex();
    let (stop_tx, mut stop_rx) = channel::<()>();
    let mut results = Vec::new();
    let sides = [
        (da, true, a.inner.hub.clone()),
        (db, false, b.inner.hub.clone()),
    ];
    let mut stop = Some(async move {
        // Completes when the sender sends or is dropped.
        let _ = stop_rx.recv().await;
    });
    for (duplex, initiator, hub) in sides {
        let key_pair = random_key_pair()?;
        let (tx, rx) = channel();
        results.push(rx);
        // Only the initiator needs the signal: its end makes the responder end too.
        let stop = stop.take();
        spawn_local(async move {
            let opts = StreamOptions::default();
            let r = match stop {
                Some(stop) => replicate_with(duplex, initiator, key_pair, opts, &hub, stop).await,
                None => {
                    let never = std::future::pending();
                    replicate_with(duplex, initiator, key_pair, opts, &hub, never).await
                }
            };
            // Nobody may be listening any more.
            let _ = tx.send(r.map_err(|e| e.to_string()));
        });
    }
    Ok(Replication {
        stop: Some(stop_tx),
        results,
    })
}
