//! Autobase in the browser (JS autobase 7.28.1 on a page's [`Corestore`]): the driver of the
//! sans-IO engine [`hyperpunch_core::autobase::Autobase`].
//!
//! It feeds the blocks of every writer's oplog core (the store's cores, downloaded from its
//! peers) into the engine, applies batch by batch with the page's JavaScript `apply` (an
//! [`AsyncApply`]: each batch waits for the callback's promise), writes the local writer's
//! oplog entries (appends and acks) to its core `local` in the store, and opens the cores of
//! the writers the system adds, so that the store's replication (`store.replicate(conn)`)
//! carries every oplog.
//!
//! The JavaScript side (`pkg/index.js`) keeps each view's blocks as the callback wrote them and
//! hands back, per batch, what the callback did: `["append", view, bytes]`,
//! `["add", key, indexer]`, `["remove", key]`, `["ack", key]`; this driver replays them into
//! the engine's [`Views`] and [`Host`].
//!
//! The base's wakeup topic (protomux-wakeup, JS `base.replicate(stream)`) runs on every
//! connection of the store beside the cores, as natively: the decisions are the core's
//! [`HubWakeup`] (peers' announces become hints, so the engine opens and fetches writers it
//! does not know yet; the local writer is announced while it has nodes not indexed; lookups are
//! answered). The driver hands it the store's hub events at each update and sends what it says.
//!
//! When the local writer acks is the engine's decision, JS's ack timer
//! ([`Engine::set_ack_timer`], [`Engine::poll_ack`]: `ackInterval`, JS's 10 s by default; the
//! stall-breaking ack of crossed acks comes with it): every update asks the engine at the page's
//! clock (the store's, `performance.now()`), with randomness seeded once from
//! `crypto.getRandomValues`, and [`Autobase::changed`] also resolves when the timer is due
//! ([`Engine::ack_timeout`]), so the page's loop updates then.
//!
//! Not done here: writing and signing the system core and view cores (a page indexer orders
//! and acks; JS members linearize its oplog, no fast-forward to it), fast-forward, encrypted
//! bases, optimistic apply.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use hyperpunch_core::autobase::acks::AckConfig;
use hyperpunch_core::autobase::driver::OplogCores;
use hyperpunch_core::autobase::wakeup::HubWakeup;
use hyperpunch_core::autobase::{
    Apply, ApplyNode, AsyncApply, Autobase as Engine, Host, ViewId, Views,
};
use hyperpunch_core::corestore::GetOptions;
use hyperpunch_core::encoding::Encode;
use hyperpunch_core::hyperbee::SharedCoreHost;
use hyperpunch_core::rng::Rng;
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::chan::Stop;
use crate::drive::{Corestore, WebStore};
use crate::js::{js_err, key32};
use crate::replicate::{sleep, HubEvents};

/// The engine's own [`Apply`], never called: the driver applies through [`JsApply`] with
/// [`Engine::update_async`] only.
struct Deferred;

impl Apply for Deferred {
    fn apply(&mut self, _: &[ApplyNode<'_>], _: &mut Views, _: &mut Host<'_>) {}
}

/// The page's `apply`, called once per batch: `f(nodes, lengths)` resolves to the list of
/// what it did (see the [module docs](self)).
struct JsApply {
    f: Function,
    views: Vec<ViewId>,
    /// The first error of a callback (it threw, or handed back something that is not an
    /// operation): the base stops there, as JS autobase closes on an apply error.
    error: Option<String>,
}

fn bytes(v: &JsValue) -> Option<Vec<u8>> {
    v.dyn_ref::<Uint8Array>().map(Uint8Array::to_vec)
}

fn err_string(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

impl JsApply {
    fn node(n: &ApplyNode<'_>) -> JsValue {
        let o = Object::new();
        let heads: Array = n
            .heads
            .iter()
            .map(|h| {
                let pair = Array::new();
                pair.push(&Uint8Array::from(&h.key[..]));
                pair.push(&JsValue::from(h.length as f64));
                JsValue::from(pair)
            })
            .collect();
        let _ = Reflect::set(&o, &"indexed".into(), &n.indexed.into());
        let _ = Reflect::set(&o, &"from".into(), &Uint8Array::from(&n.from[..]));
        let _ = Reflect::set(&o, &"length".into(), &JsValue::from(n.length as f64));
        let _ = Reflect::set(&o, &"value".into(), &Uint8Array::from(n.value));
        let _ = Reflect::set(&o, &"heads".into(), &heads);
        o.into()
    }

    /// Replay the callback's operations into the engine.
    fn replay(&self, ops: &JsValue, views: &mut Views, host: &mut Host<'_>) -> Result<(), String> {
        let ops = ops
            .dyn_ref::<Array>()
            .ok_or("apply's operations are not an array")?;
        for op in ops.iter() {
            let op = op
                .dyn_ref::<Array>()
                .ok_or("an operation is not an array")?;
            let kind = op.get(0).as_string().unwrap_or_default();
            let key = || -> Result<[u8; 32], String> {
                let k = bytes(&op.get(1)).ok_or("a writer key is not bytes")?;
                k.try_into()
                    .map_err(|_| "a writer key is not 32 bytes".to_string())
            };
            match kind.as_str() {
                "append" => {
                    let i = op
                        .get(1)
                        .as_f64()
                        .filter(|i| i.fract() == 0.0 && *i >= 0.0)
                        .ok_or("a view index is not a number")?;
                    let id = *self
                        .views
                        .get(i as usize)
                        .ok_or("a view index out of range")?;
                    let block = bytes(&op.get(2)).ok_or("a view block is not bytes")?;
                    views.append(id, block);
                }
                "add" => host.add_writer(&key()?, op.get(2).as_bool().unwrap_or(true)),
                "remove" => host.remove_writer(&key()?).map_err(|e| e.to_string())?,
                "ack" => host.ack_writer(&key()?),
                other => return Err(format!("unknown apply operation {other:?}")),
            }
        }
        Ok(())
    }
}

impl AsyncApply for JsApply {
    fn apply<'a, 'b: 'a>(
        &'a mut self,
        nodes: &'a [ApplyNode<'b>],
        views: &'a mut Views,
        host: &'a mut Host<'b>,
    ) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
        let arr: Array = nodes.iter().map(Self::node).collect();
        let lengths: Array = self
            .views
            .iter()
            .map(|&v| JsValue::from(views.len(v) as f64))
            .collect();
        let called = if self.error.is_some() {
            Err(JsValue::from_str("an earlier apply failed"))
        } else {
            self.f.call2(&JsValue::NULL, &arr, &lengths)
        };
        Box::pin(async move {
            if self.error.is_some() {
                return;
            }
            let result = match called {
                Ok(v) => JsFuture::from(Promise::resolve(&v)).await,
                Err(e) => Err(e),
            };
            let r = match result {
                Ok(ops) => self.replay(&ops, views, host),
                Err(e) => Err(format!("apply threw: {}", err_string(&e))),
            };
            if let Err(e) = r {
                self.error = Some(e);
            }
        })
    }
}

/// The driver's state, behind the base's lock.
struct State {
    engine: Engine<Deferred>,
    apply: JsApply,
    local: [u8; 32],
    /// The oplog cores open in the store: the local one and the bootstrap's for good, the
    /// others while the engine wants them (bounded: a peer's made-up hints cannot make the page
    /// open, store and replicate a core each for good), with the downloads asked of them.
    oplogs: OplogCores,
    /// The base's wakeup channel on the store's connections.
    wakeup: HubWakeup,
    /// The store's hub events, for [`State::wakeup`] (`None` once closed: the store forgets
    /// a subscriber whose receiver is gone, so a closed base holds none of its events).
    events: Option<HubEvents>,
    /// The ack timer's randomness (seeded once from the browser's random source).
    rng: Rng,
    closed: bool,
}

/// An autobase (JS autobase 7.28.1) on a page's [`Corestore`]; see the [module docs](self).
/// JavaScript reaches it through the npm package's `Autobase` class.
#[wasm_bindgen]
pub struct Autobase {
    store: WebStore,
    state: Rc<async_lock::Mutex<State>>,
    key: [u8; 32],
    local: [u8; 32],
    stop: Stop,
}

impl State {
    /// Feed the blocks the store holds that the engine has not seen, apply, open the cores of
    /// the writers the engine wants and ask peers for their blocks; until nothing new comes.
    /// Whether anything changed. Takes the store's reader lock: its release wakes the store's
    /// waiters only when it sent something (a plain lock's release always does, and the base's
    /// loop, which waits for a change after each sync, would then never let the page run).
    async fn sync(&mut self, store: &WebStore) -> Result<bool, JsError> {
        let mut any = false;
        self.wakeup_events(store).await;
        loop {
            let fed = {
                let s = SharedCoreHost::lock(store).await;
                self.oplogs
                    .feed(&mut self.engine, &s)
                    .await
                    .map_err(|e| js_err("autobase: an oplog core", e))?
            };
            if self.engine.update_async(&mut self.apply).await {
                any = true;
            }
            if let Some(e) = &self.apply.error {
                return Err(JsError::new(&format!("autobase: {e}")));
            }
            let opened = {
                let mut s = SharedCoreHost::lock(store).await;
                let now = store.now();
                // open the cores of the writers the engine wants (bounded), close the others,
                // and ask each wanted writer up to the end the engine gives (a non-member: its
                // hinted node), again when that end moves on
                self.oplogs
                    .sync(&self.engine, &mut s, now, true, |k| {
                        GetOptions::from_key(*k)
                    })
                    .await
                    .map_err(|e| js_err("autobase: a writer's oplog", e))?
                    .opened
                    > 0
            };
            any |= fed;
            if !fed && !opened {
                return Ok(any);
            }
        }
    }

    /// Hand the store's hub events to the wakeup topic (hints go to the engine, which then
    /// wants those writers: [`State::sync`] opens and fetches them).
    async fn wakeup_events(&mut self, store: &WebStore) {
        let Some(rx) = self.events.as_mut() else {
            return;
        };
        let events: Vec<_> = std::iter::from_fn(|| rx.try_next()).collect();
        if events.is_empty() {
            return;
        }
        let mut s = SharedCoreHost::lock(store).await;
        let now = store.now();
        for ev in &events {
            // errors are the hub's (a stream gone meanwhile): nothing to do but go on
            let _ = self
                .wakeup
                .handle_hub_event(now, s.hub_mut(), &mut self.engine, ev)
                .await;
        }
    }

    /// Announce the local writer's unindexed nodes where that changed (after an update or an
    /// append).
    async fn wakeup_refresh(&mut self, store: &WebStore) {
        let mut s = SharedCoreHost::lock(store).await;
        self.wakeup.refresh(s.hub_mut(), &self.engine);
    }

    /// Write the local writer's entries to its core, then apply them.
    async fn write_local(
        &mut self,
        store: &WebStore,
        msgs: Vec<hyperpunch_core::autobase::messages::OplogMessage>,
    ) -> Result<(), JsError> {
        let blocks: Vec<Vec<u8>> = msgs.iter().map(Encode::to_bytes).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        {
            let mut s = store.lock().await;
            let now = store.now();
            let (_, local) = self
                .oplogs
                .cores()
                .first()
                .ok_or_else(|| JsError::new("autobase: closed"))?;
            s.append(now, local, &refs)
                .await
                .map_err(|e| js_err("autobase: append to the local oplog", e))?;
        }
        self.sync(store).await?;
        self.wakeup_refresh(store).await;
        Ok(())
    }

    /// The ack the engine's ack timer asks for now ([`Engine::poll_ack`] at the store's
    /// clock: a pending indexer's first ack at once, an indexer's when the timer runs out and
    /// `shouldAck` asks, or the one that breaks a stall of crossed acks), written and applied.
    /// Whether one was written.
    async fn poll_ack(&mut self, store: &WebStore) -> Result<bool, JsError> {
        let now = store.now();
        // the page keeps no signed cores: nothing is signed behind
        let Some(msgs) = self.engine.poll_ack(now, &mut self.rng, false) else {
            return Ok(false);
        };
        self.write_local(store, msgs).await?;
        Ok(true)
    }

    /// An ack now (JS `base.ack()`): a pending indexer that wrote nothing always writes one,
    /// an indexer when `shouldAck` asks. Whether one was written.
    async fn ack_now(&mut self, store: &WebStore) -> Result<bool, JsError> {
        let msgs = if self.engine.is_pending_indexer(&self.local)
            && self.engine.is_writable(&self.local)
        {
            self.engine.force_ack(&self.local)
        } else if self.engine.is_indexer(&self.local) {
            self.engine.ack(&self.local)
        } else {
            None
        };
        let Some(msgs) = msgs else { return Ok(false) };
        self.write_local(store, msgs).await?;
        Ok(true)
    }

    fn summary(&mut self) -> JsValue {
        let o = Object::new();
        let lengths: Array = self
            .apply
            .views
            .iter()
            .map(|&v| JsValue::from(self.engine.views().len(v) as f64))
            .collect();
        let indexed = self.engine.indexed_view_lengths();
        let indexed: Array = self
            .apply
            .views
            .iter()
            .map(|&v| JsValue::from(indexed.get(v).copied().unwrap_or(0) as f64))
            .collect();
        let _ = Reflect::set(&o, &"lengths".into(), &lengths);
        let _ = Reflect::set(&o, &"indexedLengths".into(), &indexed);
        let writable = self.engine.is_writable(&self.local);
        let _ = Reflect::set(&o, &"writable".into(), &writable.into());
        let indexer = self.engine.is_indexer(&self.local);
        let _ = Reflect::set(&o, &"isIndexer".into(), &indexer.into());
        let _ = Reflect::set(
            &o,
            &"indexedLength".into(),
            &JsValue::from(self.engine.indexed_nodes() as f64),
        );
        let _ = Reflect::set(
            &o,
            &"systemLength".into(),
            &JsValue::from(self.engine.system().length as f64),
        );
        let _ = Reflect::set(
            &o,
            &"wakeupHints".into(),
            &JsValue::from(self.wakeup.wakeup().hints as f64),
        );
        o.into()
    }
}

#[wasm_bindgen]
impl Autobase {
    /// Open the autobase of `store` whose bootstrap (first indexer) is `bootstrap` (32 bytes),
    /// or a new one this page bootstraps (`bootstrap` absent: its key is the local writer's),
    /// with the views `views` (by name, as the page's `open` named them) and the page's
    /// `apply(nodes, lengths)` (see the [module docs](self)). The local writer is the store's
    /// core named `local` (JS autobase's). `ack_interval`: JS `ackInterval` in milliseconds
    /// (absent: JS's 10 s; 0: no timer, the page acks with `ack`). Replays what the store holds
    /// (nothing is applied yet: call `update`).
    pub async fn open(
        store: &Corestore,
        bootstrap: Option<Vec<u8>>,
        views: Vec<String>,
        apply: Function,
        ack_interval: Option<f64>,
    ) -> Result<Autobase, JsError> {
        let interval = match ack_interval {
            None => AckConfig::default().interval,
            Some(ms) if ms.is_finite() && ms >= 0.0 && ms.fract() == 0.0 => ms as u64,
            Some(_) => {
                return Err(JsError::new(
                    "autobase: ackInterval must be a whole number of milliseconds, 0 or more",
                ))
            }
        };
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| JsError::new(&format!("autobase: no randomness: {e}")))?;
        let web = store.web_store().clone();
        let local_handle = web
            .lock()
            .await
            .get(GetOptions::named(b"local").in_namespace(store.namespace_of()))
            .await
            .map_err(|e| js_err("autobase: open the local oplog", e))?;
        let local = *local_handle.key();
        let key = match bootstrap {
            Some(b) => key32("bootstrap", &b)?,
            None => local,
        };
        let mut cores = vec![(local, local_handle)];
        if key != local {
            let h = web
                .lock()
                .await
                .get(GetOptions::from_key(key))
                .await
                .map_err(|e| js_err("autobase: open the bootstrap's oplog", e))?;
            cores.push((key, h));
        }
        let mut engine = Engine::new(key, Deferred);
        let ids = views.iter().map(|n| engine.open_view(n)).collect();
        engine.set_ack_timer(
            local,
            AckConfig {
                interval,
                ..AckConfig::default()
            },
        );
        // subscribed first: the streams there already are reported once the protocol is paired
        let events = web.subscribe().await;
        let wakeup = HubWakeup::new(key);
        wakeup.attach(web.lock().await.hub_mut());
        let state = State {
            engine,
            apply: JsApply {
                f: apply,
                views: ids,
                error: None,
            },
            local,
            oplogs: OplogCores::new(local, cores),
            wakeup,
            events: Some(events),
            rng: Rng::from_seed(seed),
            closed: false,
        };
        Ok(Autobase {
            store: web,
            state: Rc::new(async_lock::Mutex::new(state)),
            key,
            local,
            stop: Stop::default(),
        })
    }

    /// The base's key: the bootstrap's oplog key (32 bytes).
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> Vec<u8> {
        self.key.to_vec()
    }

    /// The local writer's oplog key (32 bytes).
    #[wasm_bindgen(getter, js_name = localKey)]
    pub fn local_key(&self) -> Vec<u8> {
        self.local.to_vec()
    }

    /// Take the wakeup channel's news, feed what the store holds, apply, write the ack the
    /// ack timer asks for now and announce the local writer if that changed; resolves to `{ changed, lengths,
    /// indexedLengths, writable, isIndexer, indexedLength, systemLength, wakeupHints }` (per
    /// view: its length and its indexed length, in the order of the names given to `open`;
    /// `wakeupHints`: the writers peers' wakeup announces made the base fetch so far).
    #[wasm_bindgen(
        unchecked_return_type = "Promise<{ changed: boolean, lengths: number[], indexedLengths: number[], writable: boolean, isIndexer: boolean, indexedLength: number, systemLength: number, wakeupHints: number }>"
    )]
    pub fn update(&self) -> Promise {
        let (state, store) = (self.state.clone(), self.store.clone());
        future_to_promise(async move {
            let mut st = state.lock().await;
            if st.closed {
                return Err(JsError::new("autobase: closed").into());
            }
            let due = st.engine.ack_timeout();
            let mut changed = st.sync(&store).await?;
            if st.poll_ack(&store).await? {
                changed = true;
            }
            if st.engine.ack_timeout() != due {
                // a `changed()` made before this update may wait for the old deadline (or for
                // none): wake it, so that the page's loop asks again
                SharedCoreHost::notify_changed(&store);
            }
            st.wakeup_refresh(&store).await;
            let o = st.summary();
            let _ = Reflect::set(&o, &"changed".into(), &changed.into());
            Ok(o)
        })
    }

    /// Append `values` (encoded) as one batch from the local writer (JS `base.append`), then
    /// apply them. Refused when this writer is not a member of the system.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn append(&self, values: Vec<Uint8Array>) -> Promise {
        let (state, store) = (self.state.clone(), self.store.clone());
        future_to_promise(async move {
            let mut st = state.lock().await;
            if st.closed {
                return Err(JsError::new("autobase: closed").into());
            }
            st.sync(&store).await?;
            let values: Vec<Vec<u8>> = values.iter().map(Uint8Array::to_vec).collect();
            let local = st.local;
            let Some(msgs) = st.engine.append(&local, values) else {
                return Err(
                    JsError::new("autobase: not writable (not a writer of this base)").into(),
                );
            };
            st.write_local(&store, msgs).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Write an ack now (JS `base.ack()`): a pending indexer that wrote nothing always, an
    /// indexer when `shouldAck` asks (the timer acks by itself: this is for `ackInterval: 0`
    /// or an app that wants one now); resolves to whether one was written.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn ack(&self) -> Promise {
        let (state, store) = (self.state.clone(), self.store.clone());
        future_to_promise(async move {
            let mut st = state.lock().await;
            if st.closed {
                return Err(JsError::new("autobase: closed").into());
            }
            st.sync(&store).await?;
            Ok(st.ack_now(&store).await?.into())
        })
    }

    /// Resolves at the store's next change (a block downloaded or appended, a peer), when the
    /// ack timer is due ([`Engine::ack_timeout`]; an update that moves it counts as a change),
    /// or at `close`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn changed(&self) -> Promise {
        let changed = self.store.changed();
        let (stop, state, store) = (self.stop.clone(), self.state.clone(), self.store.clone());
        future_to_promise(async move {
            let due = state.lock().await.engine.ack_timeout();
            let timer = async move {
                match due {
                    Some(at) => sleep(at.saturating_sub(store.now())).await,
                    None => std::future::pending().await,
                }
            };
            let (mut changed, mut timer) = (std::pin::pin!(changed), std::pin::pin!(timer));
            let either = std::future::poll_fn(|cx| {
                if changed.as_mut().poll(cx).is_ready() || timer.as_mut().poll(cx).is_ready() {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            });
            let _ = stop.or(either).await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Close the base: its oplog cores' sessions end (the store stays open).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        self.stop.stop();
        let (state, store) = (self.state.clone(), self.store.clone());
        future_to_promise(async move {
            let mut st = state.lock().await;
            if st.closed {
                return Ok(JsValue::UNDEFINED);
            }
            st.closed = true;
            st.events = None;
            let mut s = store.lock().await;
            let st = &mut *st;
            st.oplogs
                .close_all(&st.engine, &mut s)
                .await
                .map_err(|e| js_err("autobase: close an oplog", e))?;
            Ok(JsValue::UNDEFINED)
        })
    }
}
