//! Corestore and Hyperdrive in the browser: [`Corestore`] (a corestore in one IndexedDB
//! database, JS corestore's keys for the same primary key), [`StoreCore`] (one of its cores as
//! a [`BeeCore`] / [`BlobCore`](hyperpunch_core::hyperblobs::BlobCore), reading missing blocks from the store's peers) and
//! [`Hyperdrive`] (JS hyperdrive 13 on two of its cores: the named core `"db"` and the blobs
//! core derived from it, so the drive key is the one JS hyperdrive gets from a corestore with
//! the same primary key).
//!
//! A store replicates every core it holds over each [`SwarmConnection`]
//! ([`Corestore::replicate_connection`], JS `store.replicate(conn)`).

use std::future::Future;
use std::rc::Rc;
use std::task::Poll;

use hyperpunch_core::corestore::{self as cs, CoreHandle, GetOptions, Namespace, PrimaryKey};
use hyperpunch_core::hyperbee::{BeeCore, BeeError, Header, HostCore};
use hyperpunch_core::hyperblobs::{BlobReader, ReadRange};
use hyperpunch_core::hyperdrive::{self as hd, DriveEntry, DriveError, ListOptions, PutOptions};
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::chan::Stop;
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
    /// Where `get({ name })` looks names up (JS `store.ns`).
    namespace: Namespace,
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
            namespace: Namespace::ROOT,
        })
    }

    /// The namespace `name` of this store (JS `store.namespace(name)`): the same store, with
    /// names looked up in the child namespace `BLAKE2b-256(ns ‖ name)`, so its named cores
    /// have the keys JS corestore gives them.
    pub fn namespace(&self, name: Vec<u8>) -> Corestore {
        Corestore {
            store: self.store.clone(),
            primary_key: self.primary_key,
            namespace: self.namespace.child(name),
        }
    }

    /// Another session of the store in the same namespace (JS `store.session()`).
    pub fn session(&self) -> Corestore {
        Corestore {
            store: self.store.clone(),
            primary_key: self.primary_key,
            namespace: self.namespace,
        }
    }

    /// The namespace names are looked up in (32 bytes; JS `store.ns`).
    #[wasm_bindgen(getter)]
    pub fn ns(&self) -> Vec<u8> {
        self.namespace.as_bytes().to_vec()
    }

    /// The discovery keys of the cores stored in the store (JS `store.list()`), or with
    /// `namespace` (32 bytes) those of the named cores in it, by name.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array[]>")]
    pub fn list(&self, namespace: Option<Vec<u8>>) -> Result<Promise, JsError> {
        let ns = namespace
            .map(|n| key32("namespace", &n).map(Namespace))
            .transpose()?;
        let store = self.store.clone();
        Ok(future_to_promise(async move {
            let g = store.lock().await;
            let keys: Vec<[u8; 32]> = match ns {
                None => g
                    .list()
                    .await
                    .map(|l| l.into_iter().map(|c| c.discovery_key).collect()),
                Some(ns) => g
                    .list_names(&ns)
                    .await
                    .map(|l| l.into_iter().map(|(_, dk)| dk).collect()),
            }
            .map_err(|e| js_err("store.list", e))?;
            Ok(keys
                .iter()
                .map(|k| JsValue::from(Uint8Array::from(&k[..])))
                .collect::<Array>()
                .into())
        }))
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
        let namespace = self.namespace;
        future_to_promise(async move {
            let opts = match (name, key) {
                (Some(n), _) => GetOptions::named(n.as_bytes()).in_namespace(namespace),
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
                core: StoreCore::new(store.clone(), *handle.discovery_key())
                    .with_generation(handle.generation()),
                handle: Some(handle),
            }
            .into())
        })
    }

    /// The namespace names are looked up in.
    pub(crate) fn namespace_of(&self) -> Namespace {
        self.namespace
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

impl Hyperdrive {
    /// The drive itself.
    pub(crate) fn inner(&self) -> &hd::Hyperdrive<StoreCore> {
        &self.drive
    }

    /// The store the drive is in.
    pub(crate) fn web_store(&self) -> &WebStore {
        &self.store
    }
}

impl Corestore {
    /// The shared store under this handle (every session and namespace of it shares one), for
    /// Rust callers: replicate it over a [`Duplex`](crate::duplex::Duplex) with
    /// [`replicate`](crate::replicate::replicate) (the browser tests' in-page peers), or read
    /// and write its cores directly.
    pub fn web_store(&self) -> &WebStore {
        &self.store
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

    /// Another session of this core (JS `core.session()`): open until it is closed too.
    #[wasm_bindgen(unchecked_return_type = "Promise<StoreCoreHandle>")]
    pub fn session(&self) -> Promise {
        let core = self.core.clone();
        let key = self.handle.as_ref().map(|h| *h.key());
        future_to_promise(async move {
            let key = key.ok_or_else(|| JsError::new("core.session: the core is closed"))?;
            // A core open in the store: `get` by its key opens another session of it.
            let h = core
                .hub()
                .lock()
                .await
                .get(GetOptions::from_key(key))
                .await
                .map_err(|e| js_err("core.session", e))?;
            Ok(StoreCoreHandle {
                core,
                handle: Some(h),
            }
            .into())
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
    /// The db core's session (shared by the drive's checkouts).
    db: Rc<CoreHandle>,
}

pub(crate) fn drive_err(what: &str, e: DriveError) -> JsValue {
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
    /// The drive the store writes (JS `new Hyperdrive(store)`: the named core `"db"` of the
    /// store's namespace and its
    /// blobs core, created when missing), or with `key` (32 bytes) that drive (JS `new
    /// Hyperdrive(store, key)`): the store's own when it is this one, else a reader whose db
    /// manifest must come from a connected peer within `waitMs` (default 30 s).
    pub async fn open(
        store: &Corestore,
        key: Option<Vec<u8>>,
        #[wasm_bindgen(js_name = waitMs)] wait_ms: Option<f64>,
    ) -> Result<Hyperdrive, JsError> {
        let key = key.map(|k| key32("key", &k)).transpose()?;
        let namespace = store.namespace;
        let store = store.store.clone();
        let ctx = |e: cs::CorestoreError| js_err("open the drive", e);
        let db = {
            let mut g = store.lock().await;
            match key {
                None => g
                    .get(GetOptions::named("db").in_namespace(namespace))
                    .await
                    .map_err(ctx)?,
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
            StoreCore::new(store.clone(), *db.discovery_key()).with_generation(db.generation()),
            StoreCore::new(store.clone(), *blobs.discovery_key())
                .with_generation(blobs.generation()),
        );
        Ok(Hyperdrive {
            drive,
            store,
            db: Rc::new(db),
        })
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
            let opts = put_options(executable, metadata)?;
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

    /// `path`'s entry `{ seq, key, value }` (the value as JSON text), or `null`; with
    /// `follow`, symlinks are followed to the entry they end at (JS `drive.entry(path, {
    /// follow: true })`, at most 16 hops).
    #[wasm_bindgen(
        unchecked_return_type = "Promise<{ seq: number, key: string, value: string } | null>"
    )]
    pub fn entry(&self, path: String, follow: Option<bool>) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            let e = if follow.unwrap_or(false) {
                drive.entry_follow(&path).await
            } else {
                drive.entry(&path).await
            }
            .map_err(|e| drive_err("entry", e))?;
            Ok(e.map_or(JsValue::NULL, entry_js))
        })
    }

    /// A reader of the file `path`, or of the bytes `start` to `end` (inclusive) of it, or
    /// `length` bytes from `start` (JS `drive.createReadStream(path, { start, end, length })`;
    /// `length` wins over `end`). Only the blocks the range covers are read (downloaded from
    /// the peers when missing). A range is clamped to the file: past its end it is empty or
    /// stops there (JS reads on into the next blob's bytes, or waits for blocks nobody has).
    /// No entry at `path` rejects; a symlink reads as empty.
    #[wasm_bindgen(js_name = createReader, unchecked_return_type = "Promise<DriveReader>")]
    pub fn create_reader(
        &self,
        path: String,
        start: Option<f64>,
        end: Option<f64>,
        length: Option<f64>,
    ) -> Result<Promise, JsError> {
        let opt = |what, n: Option<f64>| n.map(|n| crate::js::index(what, n)).transpose();
        let range = ReadRange {
            start: opt("start", start)?,
            end: opt("end", end)?,
            length: opt("length", length)?,
        };
        let drive = self.drive.clone();
        Ok(future_to_promise(async move {
            let reader = drive
                .reader(&path, range)
                .await
                .map_err(|e| drive_err("createReadStream", e))?;
            Ok(DriveReader {
                reader: Rc::new(async_lock::Mutex::new(reader)),
            }
            .into())
        }))
    }

    /// Whether the file `path`, or every file below the folder `path` (a path ending in `/`,
    /// or one without an entry), is stored in this page in full (JS `drive.has(path)`): a
    /// symlink, or a folder without files, is `false`.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn has(&self, path: String) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            let has = drive.has(&path).await.map_err(|e| drive_err("has", e))?;
            Ok(JsValue::from(has))
        })
    }

    /// Delete this page's copy of the file `path`'s contents, keeping its entry (JS
    /// `drive.clear(path)`): resolves to the number of blocks that were stored and are
    /// cleared, or `null` when `path` has no entry. The blocks can be downloaded again from a
    /// peer that has them.
    #[wasm_bindgen(unchecked_return_type = "Promise<number | null>")]
    pub fn clear(&self, path: String) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            let n = drive
                .clear(&path)
                .await
                .map_err(|e| drive_err("clear", e))?;
            Ok(n.map_or(JsValue::NULL, |n| JsValue::from(n as f64)))
        })
    }

    /// Delete this page's copy of every blob of the drive (JS `drive.clearAll()`): resolves
    /// to the number of blocks that were stored and are cleared.
    #[wasm_bindgen(js_name = clearAll, unchecked_return_type = "Promise<number>")]
    pub fn clear_all(&self) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            let n = drive
                .clear_all()
                .await
                .map_err(|e| drive_err("clearAll", e))?;
            Ok(JsValue::from(n as f64))
        })
    }

    /// Download the files below `folder` that differ between this drive and its version
    /// `version` (the ones added or changed since; JS `drive.downloadDiff(version, folder)`);
    /// resolves to the number of files downloaded.
    #[wasm_bindgen(js_name = downloadDiff, unchecked_return_type = "Promise<number>")]
    pub fn download_diff(&self, version: f64, folder: String) -> Result<Promise, JsError> {
        let version = crate::js::index("version", version)?;
        let drive = self.drive.clone();
        Ok(future_to_promise(async move {
            let n = drive
                .download_diff(version, &folder)
                .await
                .map_err(|e| drive_err("downloadDiff", e))?;
            Ok(JsValue::from(n as f64))
        }))
    }

    /// The length of the blobs core the drive's version `version` (default: this drive's
    /// version) needs: the end of the last blob an entry of that version points at (JS
    /// `drive.getBlobsLength(version)`).
    #[wasm_bindgen(js_name = getBlobsLength, unchecked_return_type = "Promise<number>")]
    pub fn get_blobs_length(&self, version: Option<f64>) -> Result<Promise, JsError> {
        let version = version
            .map(|v| crate::js::index("version", v))
            .transpose()?;
        let drive = self.drive.clone();
        Ok(future_to_promise(async move {
            let version = match version {
                Some(v) => v,
                None => drive.version().await,
            };
            let n = drive
                .blobs_length(version)
                .await
                .map_err(|e| drive_err("getBlobsLength", e))?;
            Ok(JsValue::from(n as f64))
        }))
    }

    /// Cut the drive back to `version` (JS `drive.truncate(version, { blobs })`): the db
    /// core to `version` blocks, then the blobs core to `blobs` blocks, or (`undefined`) to
    /// what `version`'s files need (`getBlobsLength(version)`; as JS, version 0 keeps the
    /// current version's blobs). Both cores move to their next fork, re-signed; peers are told.
    /// Rejects (nothing truncated) when `version` or `blobs` is past its core's length ("bad
    /// truncation length"), or on a checkout or a drive this page cannot write.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn truncate(&self, version: f64, blobs: Option<f64>) -> Result<Promise, JsError> {
        let version = crate::js::index("version", version)?;
        let blobs = blobs.map(|b| crate::js::index("blobs", b)).transpose()?;
        let drive = self.drive.clone();
        Ok(future_to_promise(async move {
            drive
                .truncate(version, blobs)
                .await
                .map_err(|e| drive_err("truncate", e))?;
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// Delete the drive from the page's store (JS `drive.purge()`): every session of its db
    /// and blobs cores ends and both cores' records and blocks are deleted from IndexedDB in
    /// one transaction (a closed tab or a failure leaves the whole drive or none of it).
    /// This drive, its checkouts and any other drive object on those cores fail from then on
    /// ("the core was purged from its store"), also once the drive is opened again; opening
    /// it again gives an empty one. Rejects on a checkout. The records go; the bytes of
    /// large blocks (8 KiB and more) stay in the store's OPFS data file, unreachable, as the
    /// data file reclaims nothing yet.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn purge(&self) -> Promise {
        let (drive, store, db) = (self.drive.clone(), self.store.clone(), self.db.clone());
        future_to_promise(async move {
            if drive.checkout_version().is_some() {
                return Err(
                    JsError::new("purge: can only purge the main session, not a checkout").into(),
                );
            }
            let blobs = hyperpunch_core::crypto::discovery_key(&drive.content_key().await);
            let mut g = store.lock().await;
            let ctx = |e: cs::CorestoreError| JsValue::from(js_err("purge", e));
            g.purge_many(&[blobs, *db.discovery_key()])
                .await
                .map_err(ctx)?;
            Ok(JsValue::UNDEFINED)
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

    /// Download every file under `folder` (or the file `folder`) from the peers (JS
    /// `drive.download(folder)`); resolves to the number of files downloaded.
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

    /// The drive as of `version` (JS `drive.checkout(version)`): read-only.
    #[wasm_bindgen(unchecked_return_type = "Promise<Hyperdrive>")]
    pub fn checkout(&self, version: f64) -> Result<Promise, JsError> {
        let version = crate::js::index("version", version)?;
        let (drive, store, db) = (self.drive.clone(), self.store.clone(), self.db.clone());
        Ok(future_to_promise(async move {
            Ok(Hyperdrive {
                drive: drive.checkout(version).await,
                store,
                db,
            }
            .into())
        }))
    }

    /// The version checked out, or `undefined` for the live drive.
    #[wasm_bindgen(getter, js_name = checkoutVersion)]
    pub fn checkout_version(&self) -> Option<f64> {
        self.drive.checkout_version().map(|v| v as f64)
    }

    /// What differs between this drive and its version `version` below `folder` (JS
    /// `drive.diff(version, folder)`): `{ left, right }` entries (`null` where the path has
    /// none), in path order.
    #[wasm_bindgen(unchecked_return_type = "Promise<DriveDiffIterator>")]
    pub fn diff(&self, version: f64, folder: String) -> Result<Promise, JsError> {
        let version = crate::js::index("version", version)?;
        let drive = self.drive.clone();
        Ok(future_to_promise(async move {
            let it = drive
                .diff(version, &folder)
                .await
                .map_err(|e| drive_err("diff", e))?;
            Ok(DriveDiffIterator {
                iter: Rc::new(async_lock::Mutex::new(it)),
            }
            .into())
        }))
    }

    /// Watch `folder` (JS `drive.watch(folder)`): resolves once the watcher took its starting
    /// point; each [`DriveWatcher::next`] then gives `[current, previous]` checkouts.
    #[wasm_bindgen(unchecked_return_type = "Promise<DriveWatcher>")]
    pub fn watch(&self, folder: String) -> Result<Promise, JsError> {
        let mut watcher = self.drive.watch(&folder).map_err(|e| js_err("watch", e))?;
        let (store, db) = (self.store.clone(), self.db.clone());
        Ok(future_to_promise(async move {
            watcher.ready().await;
            Ok(DriveWatcher {
                watcher: Rc::new(async_lock::Mutex::new(watcher)),
                store,
                db,
                stop: Stop::default(),
            }
            .into())
        }))
    }

    /// A batch (JS `drive.batch()`): file contents go to the blobs core at once, the entries
    /// are appended to the db together by `flush`.
    pub fn batch(&self) -> DriveBatch {
        DriveBatch {
            batch: Rc::new(async_lock::Mutex::new(Some(self.drive.batch()))),
        }
    }

    /// A writer of the file `path` (JS `drive.createWriteStream(path, { executable, metadata
    /// })`): each chunk written is one block of the blob; `finish` puts the entry. Holds the
    /// blobs write lock until finished or aborted.
    #[wasm_bindgen(js_name = createWriter, unchecked_return_type = "Promise<DriveWriter>")]
    pub fn create_writer(
        &self,
        path: String,
        executable: Option<bool>,
        metadata: Option<String>,
    ) -> Promise {
        let drive = self.drive.clone();
        future_to_promise(async move {
            let opts = put_options(executable, metadata)?;
            let w = drive
                .writer(&path, opts)
                .await
                .map_err(|e| drive_err("createWriteStream", e))?;
            Ok(DriveWriter {
                writer: Rc::new(async_lock::Mutex::new(Some(w))),
            }
            .into())
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

/// [`PutOptions`] from the JS arguments (`metadata` as JSON text).
fn put_options(executable: Option<bool>, metadata: Option<String>) -> Result<PutOptions, JsValue> {
    let metadata = metadata
        .map(|m| serde_json::from_str(&m))
        .transpose()
        .map_err(|e| js_err("metadata", e))?;
    Ok(PutOptions {
        executable: executable.unwrap_or(false),
        metadata,
        ..PutOptions::default()
    })
}

/// The bytes of a file, or of a range of it, chunk by chunk (see
/// [`Hyperdrive::create_reader`]).
#[wasm_bindgen]
pub struct DriveReader {
    reader: Rc<async_lock::Mutex<BlobReader<StoreCore>>>,
}

#[wasm_bindgen]
impl DriveReader {
    /// The next chunk (at most one block of the file), or `null` at the end of the range.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array | null>")]
    pub fn next(&self) -> Promise {
        let reader = self.reader.clone();
        future_to_promise(async move {
            let chunk = reader
                .lock()
                .await
                .next()
                .await
                .map_err(|e| drive_err("createReadStream", e.into()))?;
            Ok(chunk.map_or(JsValue::NULL, |c| Uint8Array::from(&c[..]).into()))
        })
    }
}

/// The differences of [`Hyperdrive::diff`].
#[wasm_bindgen]
pub struct DriveDiffIterator {
    iter: Rc<async_lock::Mutex<hd::DiffStream<StoreCore>>>,
}

#[wasm_bindgen]
impl DriveDiffIterator {
    /// The next difference `{ left, right }` (entries with the value as JSON text, or `null`),
    /// or `null` at the end.
    #[wasm_bindgen(
        unchecked_return_type = "Promise<{ left: { seq: number, key: string, value: string } | null, right: { seq: number, key: string, value: string } | null } | null>"
    )]
    pub fn next(&self) -> Promise {
        let iter = self.iter.clone();
        future_to_promise(async move {
            let d = iter
                .lock()
                .await
                .next()
                .await
                .map_err(|e| drive_err("diff", e))?;
            Ok(d.map_or(JsValue::NULL, |d| {
                let o = Object::new();
                let side = |e: Option<DriveEntry>| e.map_or(JsValue::NULL, entry_js);
                let _ = Reflect::set(&o, &"left".into(), &side(d.left));
                let _ = Reflect::set(&o, &"right".into(), &side(d.right));
                o.into()
            }))
        })
    }
}

/// A watcher of a folder of a drive (see [`Hyperdrive::watch`]).
#[wasm_bindgen]
pub struct DriveWatcher {
    watcher: Rc<async_lock::Mutex<hd::DriveWatcher<StoreCore>>>,
    store: WebStore,
    db: Rc<CoreHandle>,
    stop: Stop,
}

#[wasm_bindgen]
impl DriveWatcher {
    /// Wait for the next change below the folder: `[current, previous]` checkouts of the
    /// drive, or `null` once closed.
    #[wasm_bindgen(unchecked_return_type = "Promise<[Hyperdrive, Hyperdrive] | null>")]
    pub fn next(&self) -> Promise {
        let watcher = self.watcher.clone();
        let stop = self.stop.clone();
        let (store, db) = (self.store.clone(), self.db.clone());
        future_to_promise(async move {
            let next = stop
                .or(async move { watcher.lock().await.next().await })
                .await
                .transpose()
                .map_err(|e| drive_err("watch", e))?;
            Ok(next.map_or(JsValue::NULL, |(current, previous)| {
                let wrap = |drive| -> JsValue {
                    Hyperdrive {
                        drive,
                        store: store.clone(),
                        db: db.clone(),
                    }
                    .into()
                };
                Array::of2(&wrap(current), &wrap(previous)).into()
            }))
        })
    }

    /// Stop watching: a pending and every later `next` resolves to `null`.
    pub fn close(&self) {
        self.stop.stop();
    }
}

type SharedBatch = Rc<async_lock::Mutex<Option<hd::DriveBatch<StoreCore>>>>;

/// A batch of a drive (see [`Hyperdrive::batch`]).
#[wasm_bindgen]
pub struct DriveBatch {
    /// `None` once flushed or closed.
    batch: SharedBatch,
}

impl DriveBatch {
    fn run<F, Fut>(&self, what: &'static str, f: F) -> Promise
    where
        F: FnOnce(SharedBatch) -> Fut + 'static,
        Fut: Future<Output = Result<(), DriveError>> + 'static,
    {
        let batch = self.batch.clone();
        future_to_promise(async move {
            f(batch).await.map_err(|e| drive_err(what, e))?;
            Ok(JsValue::UNDEFINED)
        })
    }
}

fn batch_done() -> DriveError {
    DriveError::Bee(BeeError::InvalidArgument("the batch was flushed or closed"))
}

#[wasm_bindgen]
impl DriveBatch {
    /// Write the file `path` in the batch (its bytes go to the blobs core now).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn put(
        &self,
        path: String,
        bytes: Vec<u8>,
        executable: Option<bool>,
        metadata: Option<String>,
    ) -> Result<Promise, JsValue> {
        let opts = put_options(executable, metadata)?;
        Ok(self.run("batch put", |b| async move {
            let mut g = b.lock().await;
            g.as_mut()
                .ok_or_else(batch_done)?
                .put(&path, &bytes, opts)
                .await
        }))
    }

    /// Delete the file `path` in the batch.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn del(&self, path: String) -> Promise {
        self.run("batch del", |b| async move {
            let mut g = b.lock().await;
            g.as_mut().ok_or_else(batch_done)?.del(&path).await
        })
    }

    /// Make `path` a symlink to `target` in the batch.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn symlink(&self, path: String, target: String) -> Promise {
        self.run("batch symlink", |b| async move {
            let mut g = b.lock().await;
            g.as_mut()
                .ok_or_else(batch_done)?
                .symlink(&path, &target, None)
                .await
        })
    }

    /// Append the staged entries to the db in one append (JS `batch.flush()`); the batch is
    /// done afterwards.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn flush(&self) -> Promise {
        self.run("batch flush", |b| async move {
            let batch = b.lock().await.take().ok_or_else(batch_done)?;
            batch.flush().await
        })
    }

    /// Discard the staged entries (the contents already in the blobs core stay there).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        self.run("batch close", |b| async move {
            b.lock().await.take();
            Ok(())
        })
    }
}

/// A writer of one file (see [`Hyperdrive::create_writer`]).
#[wasm_bindgen]
pub struct DriveWriter {
    /// `None` once finished or aborted.
    writer: Rc<async_lock::Mutex<Option<hd::DriveWriter<StoreCore>>>>,
}

#[wasm_bindgen]
impl DriveWriter {
    /// Append `chunk` as one block of the file (an empty chunk is skipped).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn write(&self, chunk: Vec<u8>) -> Promise {
        let writer = self.writer.clone();
        future_to_promise(async move {
            let mut g = writer.lock().await;
            let w = g
                .as_mut()
                .ok_or_else(|| JsError::new("write: the file was finished or aborted"))?;
            w.write_owned(chunk)
                .await
                .map_err(|e| drive_err("write", e))?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Finish the file and put its entry; resolves once the entry is appended.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn finish(&self) -> Promise {
        let writer = self.writer.clone();
        future_to_promise(async move {
            let w = writer
                .lock()
                .await
                .take()
                .ok_or_else(|| JsError::new("finish: the file was finished or aborted"))?;
            w.finish().await.map_err(|e| drive_err("finish", e))?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Give the file up: no entry is put (the blocks written stay in the blobs core).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn abort(&self) -> Promise {
        let writer = self.writer.clone();
        future_to_promise(async move {
            writer.lock().await.take();
            Ok(JsValue::UNDEFINED)
        })
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
