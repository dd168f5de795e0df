//! Corestore and Hyperdrive in the browser: [`Corestore`] (a corestore in one IndexedDB
//! database, JS corestore's keys for the same primary key), [`StoreCore`] (one of its cores as
//! a [`BeeCore`] / [`BlobCore`], reading missing blocks from the store's peers) and
//! [`Hyperdrive`] (JS hyperdrive 13 on two of its cores: the named core `"db"` and the blobs
//! core derived from it, so the drive key is the one JS hyperdrive gets from a corestore with
//! the same primary key).
//!
//! A store replicates every core it holds over each [`SwarmConnection`]
//! ([`Corestore::replicate_connection`], JS `store.replicate(conn)`).

use std::future::Future;
use std::rc::Rc;
use std::task::Poll;

use hyperpunch_core::corestore::{self as cs, CoreHandle, GetOptions, PrimaryKey};
use hyperpunch_core::hyperbee::{BeeCore, BeeError, Header, HostCore};
use hyperpunch_core::hyperdrive::{self as hd, DriveEntry, DriveError, ListOptions, PutOptions};
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::js::{js_err, key32};
use crate::replicate::{sleep, SharedCorestore};
use crate::storage::IdbStorage;
use crate::swarm::{replicate_conn, SwarmConnection};

/// A corestore on IndexedDB, shared by the page's tasks.
pub type WebStore = SharedCorestore<Rc<IdbStorage>>;

/// A core of a [`WebStore`] (open in it) as a [`BeeCore`] and [`BlobCore`]: a block the store
/// does not hold is asked of the store's peers and waited for.
///
/// [`BlobCore`]: hyperpunch_core::hyperblobs::BlobCore
pub type StoreCore = HostCore<WebStore>;

/// A corestore (JS corestore 7) in the IndexedDB database of the page: named cores whose keys
/// are JS corestore's for the same primary key, replicated together over each connection.
#[wasm_bindgen]
pub struct Corestore {
    store: WebStore,
    primary_key: [u8; 32],
}

#[wasm_bindgen]
impl Corestore {
    /// Open the corestore of the IndexedDB database `name`, or create it there with
    /// `primaryKey` (32 bytes; default: random), as JS `new Corestore(storage, { primaryKey })`.
    /// A database that holds a store with another primary key than the one given is an error.
    pub async fn open(
        name: String,
        #[wasm_bindgen(js_name = primaryKey)] primary_key: Option<Vec<u8>>,
    ) -> Result<Corestore, JsError> {
        let storage = IdbStorage::open(&name)
            .await
            .map_err(|e| js_err("open IndexedDB", e))?;
        let pk = match primary_key {
            Some(k) => PrimaryKey::Given(key32("primaryKey", &k)?),
            None => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| js_err("crypto.getRandomValues", e))?;
                PrimaryKey::StoredOrNew(seed)
            }
        };
        let store = cs::Corestore::open(Rc::new(storage), pk)
            .await
            .map_err(|e| js_err(&format!("open the corestore in {name:?}"), e))?;
        let primary_key = *store.primary_key();
        Ok(Corestore {
            store: SharedCorestore::new(store),
            primary_key,
        })
    }

    /// The primary key (32 bytes) every key of the store derives from.
    #[wasm_bindgen(getter, js_name = primaryKey)]
    pub fn primary_key(&self) -> Vec<u8> {
        self.primary_key.to_vec()
    }

    /// The store's core named `name` (JS `store.get({ name })`), created (writable) when
    /// missing, or the core with public key `key` (JS `store.get({ key })` / `store.get(key)`).
    #[wasm_bindgen(unchecked_return_type = "Promise<StoreCoreHandle>")]
    pub fn get(&self, name: Option<String>, key: Option<Vec<u8>>) -> Promise {
        let store = self.store.clone();
        future_to_promise(async move {
            let opts = match (name, key) {
                (Some(n), _) => GetOptions::named(n.as_bytes()),
                (None, Some(k)) => GetOptions::from_key(key32("key", &k)?),
                (None, None) => return Err(JsError::new("store.get: give a name or a key").into()),
            };
            let handle = store
                .lock()
                .await
                .get(opts)
                .await
                .map_err(|e| js_err("store.get", e))?;
            Ok(StoreCoreHandle {
                core: StoreCore::new(store.clone(), *handle.discovery_key()),
                handle: Some(handle),
            }
            .into())
        })
    }

    /// Replicate every core of the store with the peer over `connection` (JS
    /// `store.replicate(conn)`): cores the peer asks for are opened from storage; resolves once
    /// the connection closed cleanly.
    #[wasm_bindgen(
        js_name = replicateConnection,
        unchecked_return_type = "Promise<void>"
    )]
    pub fn replicate_connection(&self, connection: &SwarmConnection) -> Promise {
        replicate_conn(self.store.clone(), connection)
    }
}

/// A core of a [`Corestore`] (`store.get(...)`): key, length, append and get.
#[wasm_bindgen]
pub struct StoreCoreHandle {
    core: StoreCore,
    handle: Option<CoreHandle>,
}

#[wasm_bindgen]
impl StoreCoreHandle {
    /// The core's public key (32 bytes).
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> Vec<u8> {
        self.handle.as_ref().map_or(vec![], |h| h.key().to_vec())
    }

    /// The discovery key (32 bytes).
    #[wasm_bindgen(getter, js_name = discoveryKey)]
    pub fn discovery_key(&self) -> Vec<u8> {
        self.core.discovery_key().to_vec()
    }

    /// `{ length, writable, fork }` now.
    #[wasm_bindgen(
        unchecked_return_type = "Promise<{ length: number, writable: boolean, fork: number }>"
    )]
    pub fn info(&self) -> Promise {
        let core = self.core.clone();
        future_to_promise(async move {
            let st = BeeCore::state(&core).await;
            let o = Object::new();
            let _ = Reflect::set(&o, &"length".into(), &JsValue::from(st.length as f64));
            let _ = Reflect::set(&o, &"writable".into(), &JsValue::from(st.writable));
            let _ = Reflect::set(&o, &"fork".into(), &JsValue::from(st.fork as f64));
            Ok(o.into())
        })
    }

    /// Append one block; resolves to the new length.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn append(&self, block: Vec<u8>) -> Promise {
        let core = self.core.clone();
        future_to_promise(async move {
            let length = BeeCore::append(&core, &[&block])
                .await
                .map_err(|e| js_err("append", e))?;
            Ok(JsValue::from(length as f64))
        })
    }

    /// Block `index`, downloaded from the store's peers first when missing; past the length of
    /// a core this page does not write, it waits for the peers to extend it (as JS `get`).
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array | null>")]
    pub fn get(&self, index: f64) -> Promise {
        let core = self.core.clone();
        future_to_promise(async move {
            let i = crate::js::index("index", index)?;
            loop {
                let st = BeeCore::state(&core).await;
                if i < st.length || st.writable {
                    break;
                }
                core.hub().changed().await;
            }
            let block = BeeCore::get(&core, i).await.map_err(|e| js_err("get", e))?;
            Ok(block.map_or(JsValue::NULL, |b| Uint8Array::from(&b[..]).into()))
        })
    }

    /// End this session of the core (JS `core.close()`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&mut self) -> Promise {
        let handle = self.handle.take();
        let store = self.core.hub().clone();
        future_to_promise(async move {
            if let Some(h) = handle {
                store
                    .lock()
                    .await
                    .close_core(h)
                    .map_err(|e| js_err("close", e))?;
            }
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// How long opening a drive by key waits for a peer to send its db manifest, by default.
const MANIFEST_WAIT_MS: u64 = 30_000;

/// A Hyperdrive (JS hyperdrive 13: a file system on a db core and a blobs core) in a
/// [`Corestore`]; the same db and blobs blocks as JS for the same operations.
#[wasm_bindgen]
pub struct Hyperdrive {
    drive: hd::Hyperdrive<StoreCore>,
    store: WebStore,
    db: CoreHandle,
}

fn drive_err(what: &str, e: DriveError) -> JsValue {
    js_err(what, e).into()
}

/// `{ seq, key, value }` with the value as hyperdrive's JSON (parsed by the JS layer).
fn entry_js(e: DriveEntry) -> JsValue {
    let o = Object::new();
    let _ = Reflect::set(&o, &"seq".into(), &JsValue::from(e.seq as f64));
    let _ = Reflect::set(&o, &"key".into(), &JsValue::from_str(&e.key));
    let json = String::from_utf8_lossy(&e.value.encode()).into_owned();
    let _ = Reflect::set(&o, &"value".into(), &JsValue::from_str(&json));
    o.into()
}

#[wasm_bindgen]
impl Hyperdrive {
    /// The drive the store writes (JS `new Hyperdrive(store)`: the named core `"db"` and its
    /// blobs core, created when missing), or with `key` (32 bytes) that drive (JS `new
    /// Hyperdrive(store, key)`): the store's own when it is this one, else a reader whose db
    /// manifest must come from a connected peer within `waitMs` (default 30 s).
    pub async fn open(
        store: &Corestore,
        key: Option<Vec<u8>>,
        #[wasm_bindgen(js_name = waitMs)] wait_ms: Option<f64>,
    ) -> Result<Hyperdrive, JsError> {
        let key = key.map(|k| key32("key", &k)).transpose()?;
        let store = store.store.clone();
        let ctx = |e: cs::CorestoreError| js_err("open the drive", e);
        let db = {
            let mut g = store.lock().await;
            match key {
                None => g.get(GetOptions::named("db")).await.map_err(ctx)?,
                Some(k) => g.get(GetOptions::from_key(k)).await.map_err(ctx)?,
            }
        };
        let drive_key = *db.key();
        let wait_ms = wait_ms.map_or(MANIFEST_WAIT_MS, |w| w.max(0.0) as u64);
        let manifest = wait_manifest(&store, &db, wait_ms).await?;
        let (writable, key_pair) = {
            let g = store.lock().await;
            let core = g.core(&db).map_err(ctx)?;
            (core.writable(), core.key_pair().cloned())
        };
        let blobs = match hd::keys::content_manifest(&manifest, &drive_key) {
            Some(content) => {
                let mut get = GetOptions::from_manifest(content);
                if writable {
                    get.key_pair = key_pair;
                }
                store.lock().await.get(get).await.map_err(ctx)?
            }
            None => {
                // A compat drive: the blobs key is in the db header.
                let core = StoreCore::new(store.clone(), *db.discovery_key());
                let raw = BeeCore::get(&core, 0)
                    .await
                    .map_err(|e| drive_err("open the drive", DriveError::Bee(BeeError::Core(e))))
                    .map_err(|_| JsError::new("open the drive: no header"))?
                    .ok_or_else(|| JsError::new("open the drive: its header is not available"))?;
                let header = Header::decode(&raw).map_err(|_| {
                    JsError::new("not a hyperdrive: block 0 is not a hyperbee header")
                })?;
                let blobs_key = hd::keys::content_key_from_header(&header).ok_or_else(|| {
                    JsError::new("not a hyperdrive: the header names no blobs core")
                })?;
                store
                    .lock()
                    .await
                    .get(GetOptions::from_key(blobs_key))
                    .await
                    .map_err(ctx)?
            }
        };
        let drive = hd::Hyperdrive::new(
            StoreCore::new(store.clone(), *db.discovery_key()),
            StoreCore::new(store.clone(), *blobs.discovery_key()),
        );
        Ok(Hyperdrive { drive, store, db })
    }

    /// The drive's key (the db core's public key, 32 bytes).
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> Vec<u8> {
        self.db.key().to_vec()
    }

    /// The drive's discovery key (32 bytes): the topic its peers meet on.
    #[wasm_bindgen(getter, js_name = discoveryKey)]
    pub fn discovery_key(&self) -> Vec<u8> {
        self.db.discovery_key().to_vec()
    }

    /// The blobs core's key (JS `drive.contentKey`).
    #[wasm_bindgen(js_name = contentKey, unchecked_return_type = "Promise<Uint8Array>")]
    pub fn content_key(&self) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(
            async move { Ok(Uint8Array::from(&drive.content_key().await[..]).into()) },
        )
    }

    /// JS `drive.version`: the db core's length (at least 1).
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn version(&self) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move { Ok(JsValue::from(drive.version().await as f64)) })
    }

    /// Whether this page can write the drive.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn writable(&self) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move { Ok(JsValue::from(drive.writable().await)) })
    }

    /// Write the file `path` (JS `drive.put(path, bytes, { executable, metadata })`;
    /// `metadata` as JSON text).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn put(
        &self,
        path: String,
        bytes: Vec<u8>,
        executable: Option<bool>,
        metadata: Option<String>,
    ) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            let metadata = metadata
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(|e| js_err("put: metadata", e))?;
            let opts = PutOptions {
                executable: executable.unwrap_or(false),
                metadata,
                ..PutOptions::default()
            };
            drive
                .put(&path, &bytes, opts)
                .await
                .map_err(|e| drive_err("put", e))?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The file `path`'s bytes, or `null` (JS `drive.get(path)`).
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array | null>")]
    pub fn get(&self, path: String) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            let bytes = drive.get(&path).await.map_err(|e| drive_err("get", e))?;
            Ok(bytes.map_or(JsValue::NULL, |b| Uint8Array::from(&b[..]).into()))
        })
    }

    /// Delete the file `path` (JS `drive.del(path)`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn del(&self, path: String) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            drive.del(&path).await.map_err(|e| drive_err("del", e))?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Make `path` a symlink to `target` (JS `drive.symlink(path, target)`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn symlink(&self, path: String, target: String) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            drive
                .symlink(&path, &target, None)
                .await
                .map_err(|e| drive_err("symlink", e))?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// `path`'s entry `{ seq, key, value }` (the value as JSON text), or `null`.
    #[wasm_bindgen(
        unchecked_return_type = "Promise<{ seq: number, key: string, value: string } | null>"
    )]
    pub fn entry(&self, path: String) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            let e = drive
                .entry(&path)
                .await
                .map_err(|e| drive_err("entry", e))?;
            Ok(e.map_or(JsValue::NULL, entry_js))
        })
    }

    /// Whether the file `path` exists.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn exists(&self, path: String) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            let e = drive
                .exists(&path)
                .await
                .map_err(|e| drive_err("exists", e))?;
            Ok(JsValue::from(e))
        })
    }

    /// The entries under `folder` (every file below it, or with `recursive: false` the first
    /// under each name directly in it), in path order (JS `drive.list(folder)`).
    #[wasm_bindgen(
        unchecked_return_type = "Promise<Array<{ seq: number, key: string, value: string }>>"
    )]
    pub fn list(&self, folder: String, recursive: Option<bool>) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            let opts = ListOptions {
                recursive: recursive.unwrap_or(true),
                ..ListOptions::default()
            };
            let entries = drive
                .list(&folder, opts)
                .map_err(|e| drive_err("list", e))?
                .collect()
                .await
                .map_err(|e| drive_err("list", e))?;
            Ok(entries.into_iter().map(entry_js).collect::<Array>().into())
        })
    }

    /// The names directly in `folder` (files and folders), in order (JS `drive.readdir`).
    #[wasm_bindgen(unchecked_return_type = "Promise<string[]>")]
    pub fn readdir(&self, folder: String) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            let names = drive
                .readdir(&folder)
                .await
                .map_err(|e| drive_err("readdir", e))?;
            Ok(names
                .into_iter()
                .map(|n| JsValue::from_str(&n))
                .collect::<Array>()
                .into())
        })
    }

    /// Download every file under `folder` from the peers (JS `drive.download(folder)`);
    /// resolves to the number of blocks fetched.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn download(&self, folder: String) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            let n = drive
                .download(&folder)
                .await
                .map_err(|e| drive_err("download", e))?;
            Ok(JsValue::from(n as f64))
        })
    }

    /// Replicate the store the drive is in over `connection` (JS `drive.replicate(conn)`).
    #[wasm_bindgen(
        js_name = replicateConnection,
        unchecked_return_type = "Promise<void>"
    )]
    pub fn replicate_connection(&self, connection: &SwarmConnection) -> Promise {
        replicate_conn(self.store.clone(), connection)
    }
}

/// The db core's manifest, waiting up to `wait_ms` for a peer to send it.
async fn wait_manifest(
    store: &WebStore,
    db: &CoreHandle,
    wait_ms: u64,
) -> Result<hyperpunch_core::hypercore::manifest::Manifest, JsError> {
    let mut timeout = std::pin::pin!(sleep(wait_ms));
    loop {
        {
            let g = store.lock().await;
            let core = g.core(db).map_err(|e| js_err("open the drive", e))?;
            if let Some(m) = core.manifest() {
                return Ok(m.clone());
            }
        }
        let mut changed = std::pin::pin!(store.changed());
        let timed_out = std::future::poll_fn(|cx| {
            if changed.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            if timeout.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            Poll::Pending
        })
        .await;
        if timed_out {
            return Err(JsError::new(&format!(
                "the drive's db core is not available: no peer sent its manifest within {wait_ms} ms"
            )));
        }
    }
}
