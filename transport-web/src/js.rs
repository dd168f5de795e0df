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

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use hyperpunch_core::crypto::{Hash, KeyPair};
use hyperpunch_core::hypercore::{self as hc, CreateOptions, HypercoreError, OpenOptions};
use hyperpunch_core::replication::{
    DownloadId, Event, HubEvent, Options, ReplicationHub, Replicator,
};
use hyperpunch_core::secretstream::Options as StreamOptions;
use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

use crate::chan::{channel, Receiver, Sender};
use crate::relay::{replicate_relayed, Relay, RelayServer};
use crate::replicate::{memory_duplex, replicate_with, sleep, SharedHub};
use crate::storage::IdbStorage;
use crate::websocket::RelayError;
use crate::write_behind::WriteBehind;
use crate::KeyLengthError;

/// The storage of a page's core: IndexedDB (and its OPFS data file) with the writes behind
/// ([`WriteBehind`]): the replication goes on while earlier batches are committed, and what the
/// page tells its user waits for [`WriteBehind::durable`].
pub(crate) type Store = WriteBehind<IdbStorage>;

/// Open the store `name`.
async fn open_store(name: &str) -> Result<Store, JsError> {
    let storage = IdbStorage::open(name)
        .await
        .map_err(|e| js_err("open IndexedDB", e))?;
    Ok(WriteBehind::new(storage))
}

/// What the synchronous getters report, refreshed on every release of the hub.
#[derive(Debug, Clone, PartialEq)]
struct Info {
    length: u64,
    contiguous_length: u64,
    byte_length: u64,
    fork: u64,
    tree_hash: Hash,
}

impl Info {
    fn of(core: &hc::Hypercore<Store>) -> Self {
        Info {
            length: core.length(),
            contiguous_length: core.contiguous_length(),
            byte_length: core.byte_length(),
            fork: core.fork(),
            tree_hash: core.tree_hash(),
        }
    }
}

/// The getters' snapshot: what they report (committed: every write it depends on is durable)
/// and newer snapshots waiting for their writes, each with the last write queued when it was
/// taken.
#[derive(Debug)]
struct InfoLog {
    current: Info,
    pending: std::collections::VecDeque<(u64, Info)>,
}

impl InfoLog {
    /// A snapshot of the hub's core after write `seq` was queued (`durable`: the last write
    /// committed; older snapshots are dropped, so the log stays as short as the write queue).
    fn push(&mut self, seq: u64, info: Info, durable: u64) {
        self.current(durable);
        let last = self.pending.back().map_or(&self.current, |(_, i)| i);
        if *last == info {
            return;
        }
        match self.pending.back_mut() {
            Some((s, i)) if *s == seq => *i = info,
            _ => self.pending.push_back((seq, info)),
        }
    }
    /// The newest snapshot whose writes are durable (`durable`: the last write committed).
    fn current(&mut self, durable: u64) -> &Info {
        while self.pending.front().is_some_and(|(s, _)| *s <= durable) {
            if let Some((_, i)) = self.pending.pop_front() {
                self.current = i;
            }
        }
        &self.current
    }
}

/// Bounded downloads someone waits for, by id.
type Waiters = Rc<RefCell<HashMap<DownloadId, Sender<()>>>>;

pub(crate) struct Inner {
    pub(crate) hub: SharedHub<Store>,
    /// The core's storage (the hub's): its durability is what the page reports.
    pub(crate) store: Store,
    key: [u8; 32],
    pub(crate) discovery_key: [u8; 32],
    writable: bool,
    encrypted: bool,
    info: Rc<RefCell<InfoLog>>,
    waiters: Waiters,
    pub(crate) listener: Listener,
    /// Peers replicating the core now (channels open, over any connection).
    peers: Rc<Cell<u32>>,
}

/// The function events go to (see [`Hypercore::on_event`]).
pub(crate) type Listener = Rc<RefCell<Option<js_sys::Function>>>;

/// Call the listener with `(name, value)`; what it throws is reported on the console.
pub(crate) fn emit(listener: &Listener, name: &str, value: f64) {
    let f = listener.borrow().clone();
    if let Some(f) = f {
        if let Err(e) = f.call2(
            &JsValue::NULL,
            &JsValue::from_str(name),
            &JsValue::from(value),
        ) {
            web_sys::console::error_2(
                &JsValue::from_str("hyperpunch: an event listener threw"),
                &e,
            );
        }
    }
}

/// A hypercore (signed append-only log) stored in one IndexedDB database.
///
/// Create a writer with [`Hypercore::create`], a reader of someone else's core with
/// [`Hypercore::create_reader`], reopen either with [`Hypercore::open`]; connect two with
/// [`replicate`]. Block indexes and lengths are JS numbers (integers below 2^53).
#[wasm_bindgen]
pub struct Hypercore {
    pub(crate) inner: Rc<Inner>,
}

/// A JS-facing error with context.
pub(crate) fn js_err(what: &str, e: impl std::fmt::Display) -> JsError {
    JsError::new(&format!("{what}: {e}"))
}

/// A 32-byte key from JS bytes.
pub(crate) fn key32(what: &str, bytes: &[u8]) -> Result<[u8; 32], JsError> {
    bytes
        .try_into()
        .map_err(|_| js_err(what, KeyLengthError { len: bytes.len() }))
}

/// A block index or length from a JS number.
pub(crate) fn index(what: &str, n: f64) -> Result<u64, JsError> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if n.fract() != 0.0 || !(0.0..=MAX_SAFE).contains(&n) {
        return Err(JsError::new(&format!(
            "{what} must be a non-negative integer below 2^53, got {n}"
        )));
    }
    Ok(n as u64)
}

/// A fresh signing key pair from the browser's random source.
pub(crate) fn random_key_pair() -> Result<KeyPair, JsError> {
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
        let storage = open_store(&name).await?;
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

    /// Open the core stored in the IndexedDB database `name`, or create it there when the
    /// database holds none: a reader of `key` (32 bytes), or without `key` a new writable core.
    /// With `key`, a database holding another core is an error.
    pub async fn load(
        name: String,
        key: Option<Vec<u8>>,
        #[wasm_bindgen(js_name = encryptionKey)] encryption_key: Option<Vec<u8>>,
    ) -> Result<Hypercore, JsError> {
        let key = key.map(|k| key32("key", &k)).transpose()?;
        let encryption_key = encryption_key
            .map(|k| key32("encryptionKey", &k))
            .transpose()?;
        let storage = open_store(&name).await?;
        let opts = OpenOptions {
            encryption_key,
            ..OpenOptions::default()
        };
        match hc::Hypercore::open(storage, opts).await {
            Ok(core) => {
                if key.is_some_and(|k| k != *core.key()) {
                    return Err(JsError::new(&format!(
                        "the IndexedDB database {name:?} holds another core ({})",
                        hex(core.key())
                    )));
                }
                Self::share(core)
            }
            Err(HypercoreError::NotFound) => {
                let opts = CreateOptions {
                    key,
                    key_pair: if key.is_none() {
                        Some(random_key_pair()?)
                    } else {
                        None
                    },
                    encryption_key,
                    ..CreateOptions::default()
                };
                Self::create_with(name, opts).await
            }
            Err(e) => Err(js_err(&format!("open the core in {name:?}"), e)),
        }
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
        self.inner.info().length as f64
    }

    /// Number of blocks from index 0 on that are all stored locally.
    #[wasm_bindgen(getter, js_name = contiguousLength)]
    pub fn contiguous_length(&self) -> f64 {
        self.inner.info().contiguous_length as f64
    }

    /// Total size of the blocks in bytes.
    #[wasm_bindgen(getter, js_name = byteLength)]
    pub fn byte_length(&self) -> f64 {
        self.inner.info().byte_length as f64
    }

    /// The fork id (bumped by truncations).
    #[wasm_bindgen(getter)]
    pub fn fork(&self) -> f64 {
        self.inner.info().fork as f64
    }

    /// The tree hash (32 bytes) of the current length: equal on two peers iff they hold the
    /// same log up to that length.
    #[wasm_bindgen(getter, js_name = treeHash)]
    pub fn tree_hash(&self) -> Vec<u8> {
        self.inner.info().tree_hash.to_vec()
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

    /// Number of peers replicating this core now (over any connection).
    #[wasm_bindgen(getter)]
    pub fn peers(&self) -> u32 {
        self.inner.peers.get()
    }

    /// Send this core's events to `listener(name, value)` (replacing any earlier listener;
    /// `null` removes it): `'append'` with the new length (a local append, or a peer's verified
    /// upgrade), `'download'` with the index of a block downloaded, verified and stored,
    /// `'peer-add'` / `'peer-remove'` with the number of peers after the change.
    #[wasm_bindgen(js_name = onEvent)]
    pub fn on_event(
        &self,
        #[wasm_bindgen(unchecked_param_type = "((name: string, value: number) => void) | null")]
        listener: Option<js_sys::Function>,
    ) {
        *self.inner.listener.borrow_mut() = listener;
    }

    /// Find the peers of this core through the dht-relay at `url` (`ws://` or `wss://`: a
    /// `hyperpunch relay --ws`, or a JS `@hyperswarm/dht-relay`), connect to them by public key
    /// (at most `maxPeers`, default 8) and replicate with each: `get` and `download` then fetch
    /// from them. Resolves once at least one is connected; rejects when nobody announces the
    /// core or no connection succeeds.
    ///
    /// The session is non-custodial unless `custodial` is true: its key pair (made for the
    /// session) never leaves the page, the Noise handshake and secret-stream run here and the
    /// relay forwards ciphertext. Custodial (JS dht-relay's default mode), the relay holds that
    /// key pair, runs the encryption to the peers and sees the replication traffic. Either way
    /// it cannot forge blocks, which are verified here against the core's signed tree.
    #[wasm_bindgen(
        js_name = replicateThroughRelay,
        unchecked_return_type = "Promise<RelayReplication>"
    )]
    pub fn replicate_through_relay(
        &self,
        url: String,
        max_peers: Option<u32>,
        custodial: Option<bool>,
    ) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let opened = if custodial.unwrap_or(false) {
                Relay::open(&url).await
            } else {
                Relay::open_non_custodial(&url).await
            };
            let relay = Rc::new(opened.map_err(|e| js_err(&format!("relay {url}"), e))?);
            let found = relay
                .lookup(inner.discovery_key)
                .await
                .map_err(|e| js_err(&format!("relay {url}"), e))?;
            if found.is_empty() {
                return Err(JsError::new(&format!(
                    "no peer announces the core {} (looked up through {url})",
                    hex(&inner.key)
                ))
                .into());
            }
            let mut replication = RelayReplication {
                stops: Vec::new(),
                results: Vec::new(),
                connected: Rc::new(Cell::new(0)),
            };
            let mut errors = Vec::new();
            for peer in found
                .into_iter()
                .take(max_peers.unwrap_or(8).max(1) as usize)
            {
                let stream = match relay.connect(peer).await {
                    Ok(s) => s,
                    Err(e) => {
                        errors.push(e.to_string());
                        continue;
                    }
                };
                let (stop_tx, mut stop_rx) = channel::<()>();
                let (tx, rx) = channel();
                replication.stops.push(stop_tx);
                replication.results.push(rx);
                let connected = replication.connected.clone();
                connected.set(connected.get() + 1);
                let hub = inner.hub.clone();
                // Each connection keeps the session open until it ends.
                let relay = relay.clone();
                spawn_local(async move {
                    let stop = async move {
                        let _ = stop_rx.recv().await;
                    };
                    let r = replicate_relayed(stream, &hub, stop).await;
                    connected.set(connected.get() - 1);
                    drop(relay);
                    // Nobody may be listening any more.
                    let _ = tx.send(r.map_err(|e| e.to_string()));
                });
            }
            if replication.stops.is_empty() {
                return Err(JsError::new(&format!(
                    "could not connect to any peer of the core through {url}: {}",
                    errors.join("; ")
                ))
                .into());
            }
            Ok(replication.into())
        })
    }

    /// Serve this core to the peers of the DHT through the dht-relay at `url` (`ws://` or
    /// `wss://`): the relay listens on the DHT for a key pair made for this session, the page
    /// announces that key on the core's discovery key (as JS `swarm.join(core.discoveryKey)`
    /// does for a server), and every peer that connects replicates with this core (native
    /// `hyperpunch core fetch --swarm`, JS hyperswarm + hypercore, other pages). Resolves once
    /// the announce finished; the announce is refreshed every 5 minutes while serving.
    ///
    /// `onStop(error)` is called once serving stopped: with `null` after
    /// [`RelayServing::close`], with the reason (a string) when the relay session or a
    /// connection failed; a session that ended stops serving (no reconnect).
    ///
    /// Non-custodial unless `custodial` is true: the session's key pair never leaves the page,
    /// which signs the server's announcements and runs each peer's Noise handshake and
    /// secret-stream; the relay forwards ciphertext (`hyperpunch relay` serves this; a relay
    /// that closes the session with 4005, an older `hyperpunch relay`, is retried custodially).
    /// A JS `@hyperswarm/dht-relay` 0.4.3 takes a non-custodial listen but stores none of its
    /// announcements: pass `custodial: true` there. Custodial, the relay holds the session's
    /// key pair, never the core's signing key; it runs the encryption to the peers and sees
    /// the replication traffic. Either way blocks are signed here, so it cannot forge them.
    #[wasm_bindgen(
        js_name = serveThroughRelay,
        unchecked_return_type = "Promise<RelayServing>"
    )]
    pub fn serve_through_relay(
        &self,
        url: String,
        #[wasm_bindgen(
            js_name = onStop,
            unchecked_param_type = "((error: string | null) => void) | null | undefined"
        )]
        on_stop: Option<js_sys::Function>,
        custodial: Option<bool>,
    ) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let ctx = |e: RelayError| js_err(&format!("relay {url}"), e);
            let listen = |custodial: bool| {
                let url = url.clone();
                async move {
                    let relay = if custodial {
                        Relay::open(&url).await?
                    } else {
                        Relay::open_non_custodial(&url).await?
                    };
                    let key_pair = relay.key_pair();
                    let server = relay.listen(key_pair.clone()).await?;
                    Ok::<_, RelayError>((relay, key_pair, server))
                }
            };
            let (relay, key_pair, server) = match listen(custodial.unwrap_or(false)).await {
                // The session's failure comes as its text ("... (4005 ...)").
                Err(e) if custodial.is_none() && e.to_string().contains("(4005 ") => {
                    listen(true).await
                }
                r => r,
            }
            .map_err(ctx)?;
            let relay = Rc::new(relay);
            relay
                .announce(inner.discovery_key, key_pair.clone())
                .await
                .map_err(ctx)?;
            let connected = Rc::new(Cell::new(0u32));
            let (stop_tx, stop_rx) = channel::<()>();
            let (done_tx, done_rx) = channel();
            // Refresh the announcement while the session lives.
            spawn_local({
                let relay = Rc::downgrade(&relay);
                let topic = inner.discovery_key;
                let key_pair = key_pair.clone();
                async move {
                    loop {
                        sleep(REANNOUNCE_MS).await;
                        let Some(relay) = relay.upgrade() else { return };
                        if relay.error().is_some() {
                            return;
                        }
                        if let Err(e) = relay.announce(topic, key_pair.clone()).await {
                            web_sys::console::warn_1(&JsValue::from_str(&format!(
                                "hyperpunch: re-announce through the relay: {e}"
                            )));
                        }
                    }
                }
            });
            spawn_local(serve_loop(
                inner.hub.clone(),
                relay,
                inner.discovery_key,
                server,
                connected.clone(),
                stop_rx,
                done_tx,
                on_stop,
            ));
            Ok(RelayServing {
                public_key: key_pair.public_key,
                connected,
                stop: Some(stop_tx),
                done: Some(done_rx),
            }
            .into())
        })
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
            drop(g);
            inner
                .store
                .durable()
                .await
                .map_err(|e| js_err("append", e))?;
            emit(&inner.listener, "append", out.length as f64);
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
        let storage = open_store(&name).await?;
        let core = hc::Hypercore::create(storage, opts)
            .await
            .map_err(|e| js_err(&format!("create a core in {name:?}"), e))?;
        // Created means stored.
        core.storage()
            .durable()
            .await
            .map_err(|e| js_err(&format!("create a core in {name:?}"), e))?;
        Self::share(core)
    }

    /// Put `core` in its own hub, keep the getters' snapshot fresh and resolve waiters of
    /// bounded downloads from the hub's events.
    fn share(core: hc::Hypercore<Store>) -> Result<Hypercore, JsError> {
        let key = *core.key();
        let writable = core.writable();
        let encrypted = core.encrypted();
        let store = core.storage().clone();
        let info = Rc::new(RefCell::new(InfoLog {
            current: Info::of(&core),
            pending: Default::default(),
        }));
        let mut hub = ReplicationHub::new();
        let discovery_key = hub
            .add_core(Replicator::new(core, replicator_options()))
            .map_err(|e| js_err("replicate the core", e))?;
        let (hub, mut events) = SharedHub::with_events(hub);
        hub.set_observer({
            let info = info.clone();
            let store = store.clone();
            move |h| {
                if let Some(r) = h.replicator(&discovery_key) {
                    // Reported once the writes it depends on (all queued by now) are durable.
                    info.borrow_mut().push(
                        store.queued_seq(),
                        Info::of(r.core()),
                        store.durable_seq(),
                    );
                }
            }
        });
        let waiters: Waiters = Rc::default();
        let listener: Listener = Rc::default();
        let peers = Rc::new(Cell::new(0u32));
        // Ends when the hub is gone (its event sender drops with it).
        spawn_local({
            let waiters = waiters.clone();
            let listener = listener.clone();
            let peers = peers.clone();
            let store = store.clone();
            async move {
                let mut ready = Vec::new();
                while let Some(event) = events.next().await {
                    // The events that came meanwhile too, then the writes they depend on (all
                    // queued before the hub sent them): a block is reported stored, and a
                    // download done, only once durable.
                    ready.push(event);
                    while let Some(e) = events.try_next() {
                        ready.push(e);
                    }
                    if let Err(e) = store.durable().await {
                        // Nothing will be stored any more: the waiting downloads fail.
                        web_sys::console::error_1(
                            &format!("hyperpunch: the core's storage failed: {e}").into(),
                        );
                        waiters.borrow_mut().clear();
                        ready.clear();
                        continue;
                    }
                    for event in ready.drain(..) {
                        match event {
                            HubEvent::Core {
                                event: Event::Downloaded { id },
                                ..
                            } => {
                                if let Some(tx) = waiters.borrow_mut().remove(&id) {
                                    // The waiter may have gone away; nothing to tell then.
                                    let _ = tx.send(());
                                }
                            }
                            HubEvent::Core {
                                event: Event::Block { index, .. },
                                ..
                            } => emit(&listener, "download", index as f64),
                            HubEvent::Core {
                                event: Event::Upgraded { length, .. } | Event::Reorg { length, .. },
                                ..
                            } => emit(&listener, "append", length as f64),
                            HubEvent::ChannelOpened { .. } => {
                                peers.set(peers.get() + 1);
                                emit(&listener, "peer-add", peers.get() as f64);
                            }
                            HubEvent::ChannelClosed { .. } => {
                                peers.set(peers.get().saturating_sub(1));
                                emit(&listener, "peer-remove", peers.get() as f64);
                            }
                            _ => {}
                        }
                    }
                }
            }
        });
        Ok(Hypercore {
            inner: Rc::new(Inner {
                hub,
                store,
                key,
                discovery_key,
                writable,
                encrypted,
                info,
                waiters,
                listener,
                peers,
            }),
        })
    }
}

impl Inner {
    /// What the getters report: the core as of its last durable write.
    fn info(&self) -> std::cell::RefMut<'_, Info> {
        let durable = self.store.durable_seq();
        std::cell::RefMut::map(self.info.borrow_mut(), |log| {
            log.current(durable);
            &mut log.current
        })
    }

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
    pub(crate) async fn download(&self, start: u64, end: Option<u64>) -> Result<(), JsError> {
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

/// Replication with the peers of a core through a dht-relay (see
/// [`Hypercore::replicate_through_relay`]).
#[wasm_bindgen]
pub struct RelayReplication {
    stops: Vec<Sender<()>>,
    results: Vec<Receiver<Result<(), String>>>,
    connected: Rc<Cell<u32>>,
}

#[wasm_bindgen]
impl RelayReplication {
    /// Connections through the relay that are still replicating.
    #[wasm_bindgen(getter)]
    pub fn connections(&self) -> u32 {
        self.connected.get()
    }

    /// End every connection gracefully and close the relay session; resolves when all have
    /// closed, rejects with the first error one stopped with (also before `end`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn end(&mut self) -> Promise {
        self.stops.clear();
        let results = std::mem::take(&mut self.results);
        future_to_promise(async move {
            let mut first_error = None;
            for mut r in results {
                if let Some(Err(e)) = r.recv().await {
                    first_error.get_or_insert(e);
                }
            }
            match first_error {
                Some(e) => Err(JsError::new(&format!("replication: {e}")).into()),
                None => Ok(JsValue::UNDEFINED),
            }
        })
    }
}

/// How often a serving page refreshes its announcement (hyperdht keeps records 20 minutes).
const REANNOUNCE_MS: u64 = 5 * 60 * 1000;

/// How long closing a served core waits for its connections to end gracefully before the
/// relay session is closed under them.
const CLOSE_GRACE_MS: u64 = 2000;

/// Accept the connections of `server` and replicate `hub` over each, until `stop` fires or the
/// session ends; then end every connection gracefully and tell `done` the first error.
#[allow(clippy::too_many_arguments)]
async fn serve_loop(
    hub: SharedHub<Store>,
    relay: Rc<Relay>,
    topic: [u8; 32],
    server: RelayServer,
    connected: Rc<Cell<u32>>,
    mut stop: Receiver<()>,
    done: Sender<Result<(), String>>,
    on_stop: Option<js_sys::Function>,
) {
    // Per connection: its stop signal, its result, whether it finished.
    type Conn = (Sender<()>, Receiver<Result<(), String>>, Rc<Cell<bool>>);
    let mut conns: Vec<Conn> = Vec::new();
    loop {
        let next = {
            let mut accept = pin!(server.accept());
            poll_fn(|cx| {
                if stop.poll_recv(cx).is_ready() {
                    return Poll::Ready(None);
                }
                accept.as_mut().poll(cx).map(Some)
            })
            .await
        };
        let stream = match next {
            Some(Some(stream)) => stream,
            // Stopped, or the server is gone (the session ended).
            _ => break,
        };
        conns.retain(|(_, _, finished)| !finished.get());
        let (stop_tx, mut stop_rx) = channel::<()>();
        let (tx, rx) = channel();
        let finished = Rc::new(Cell::new(false));
        conns.push((stop_tx, rx, finished.clone()));
        connected.set(connected.get() + 1);
        let hub = hub.clone();
        let connected = connected.clone();
        spawn_local(async move {
            let stop = async move {
                let _ = stop_rx.recv().await;
            };
            let r = replicate_relayed(stream, &hub, stop).await;
            connected.set(connected.get() - 1);
            finished.set(true);
            // Nobody may be listening any more.
            let _ = tx.send(r.map_err(|e| e.to_string()));
        });
    }
    drop(server);
    let session_error = relay.error();
    if session_error.is_none() {
        // Closed: take the announcement back (as hyperswarm's `leave`), so that lookups stop
        // finding a key nobody listens on (non-custodially the page signs each removal). Best
        // effort: a failure changes nothing here.
        let _ = relay.unannounce(topic, relay.key_pair()).await;
    }
    let mut first_error = None;
    let (stops, results): (Vec<_>, Vec<_>) = conns.into_iter().map(|(s, r, _)| (s, r)).unzip();
    drop(stops);
    // Each connection ends gracefully, within a grace period: a peer that vanished without
    // ending (a killed process) is not waited for; closing the session destroys its stream.
    let mut grace = pin!(sleep(CLOSE_GRACE_MS));
    let mut expired = false;
    for mut r in results {
        let got = poll_fn(|cx| {
            if let Poll::Ready(v) = r.poll_recv(cx) {
                return Poll::Ready(Some(v));
            }
            if !expired && grace.as_mut().poll(cx).is_ready() {
                expired = true;
            }
            if expired {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        match got {
            Some(Some(Err(e))) => {
                first_error.get_or_insert(e);
            }
            Some(_) => {}
            None => break,
        }
    }
    drop(relay);
    let result = match (session_error, first_error) {
        (Some(e), _) => Err(format!("relay session: {e}")),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(()),
    };
    if let Some(f) = on_stop {
        let arg = match &result {
            Ok(()) => JsValue::NULL,
            Err(e) => JsValue::from_str(e),
        };
        if let Err(e) = f.call1(&JsValue::NULL, &arg) {
            web_sys::console::error_2(&JsValue::from_str("hyperpunch: onStop threw"), &e);
        }
    }
    let _ = done.send(result);
}

/// A core served through a dht-relay (see [`Hypercore::serve_through_relay`]).
#[wasm_bindgen]
pub struct RelayServing {
    public_key: [u8; 32],
    connected: Rc<Cell<u32>>,
    stop: Option<Sender<()>>,
    done: Option<Receiver<Result<(), String>>>,
}

#[wasm_bindgen]
impl RelayServing {
    /// The public key (32 bytes) the page is announced and reachable under (made for this
    /// session; not the core's key).
    #[wasm_bindgen(getter, js_name = publicKey)]
    pub fn public_key(&self) -> Vec<u8> {
        self.public_key.to_vec()
    }

    /// Peers connected and replicating now.
    #[wasm_bindgen(getter)]
    pub fn connections(&self) -> u32 {
        self.connected.get()
    }

    /// Stop serving: the server closes, the announcement is removed, every connection ends
    /// gracefully (those that did not within 2 s are destroyed), the relay session closes.
    /// Resolves once all closed; rejects with the first error a connection or the session
    /// stopped with.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&mut self) -> Promise {
        self.stop.take();
        let done = self.done.take();
        future_to_promise(async move {
            let Some(mut done) = done else {
                return Ok(JsValue::UNDEFINED);
            };
            match done.recv().await {
                Some(Err(e)) => Err(JsError::new(&format!("serve: {e}")).into()),
                _ => Ok(JsValue::UNDEFINED),
            }
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// Bytes of blocks a page keeps requested from each peer (JS hypercore's bound is 512 requests,
/// 32 MiB of 64 KiB blocks), above the default (2 MiB, at least 48 requests: 3 MiB of 64 KiB
/// blocks): the page stops requesting while it stores a batch (about 10 ms: data file append +
/// IndexedDB commit), and more in flight lets more of the next batches arrive meanwhile. 64 MiB of
/// 64 KiB blocks through `hyperpunch relay`, nine alternating pairs of runs at load 11-21, faster
/// in 8: 33.6 MB/s mean against 27.3 with the default, 2.5 against 2.9 Chromium CPU s
/// (BENCHMARKS.md, "Browser").
const PAGE_INFLIGHT_BYTES: u64 = 16 << 20;

/// The replication options of a page's core.
fn replicator_options() -> Options {
    Options {
        inflight_bytes: PAGE_INFLIGHT_BYTES,
        ..Options::default()
    }
}
