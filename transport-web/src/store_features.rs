//! corestore `watch` and hyperdrive `monitor` in the browser: [`Corestore::watch`] gives a
//! [`CoreWatcher`] of the cores the page's store opens (JS `store.watch(fn)`, see
//! [`hyperpunch_core::corestore::watch`]), [`Hyperdrive::monitor`] a [`DriveMonitor`] of one
//! file's upload and download statistics fed by the blobs core's replication events (JS
//! `drive.monitor(name)`, see [`hyperpunch_core::hyperdrive::monitor`]). The npm package wraps
//! them in JS `watch(fn)` / `unwatch(fn)` and a `Monitor` emitting `update`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use hyperpunch_core::corestore::{OpenedCore, WatchId};
use hyperpunch_core::hyperbee::SharedCoreHost;
use hyperpunch_core::hyperdrive::monitor::{HubEventEffect, Monitor, TransferStats};
use js_sys::{Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::chan::Stop;
use crate::drive::{drive_err, Corestore, Hyperdrive, WebStore};
use crate::replicate::HubEvents;

#[wasm_bindgen]
impl Corestore {
    /// Watch the cores the store opens from now on, in any namespace or session of it (JS
    /// `store.watch(fn)`): each [`CoreWatcher::next`] gives the next one.
    #[wasm_bindgen(unchecked_return_type = "Promise<CoreWatcher>")]
    pub fn watch(&self) -> Promise {
        let store = self.web_store().clone();
        future_to_promise(async move {
            let id = store.lock().await.watch();
            Ok(CoreWatcher {
                store,
                id,
                left: Rc::default(),
                closed: Rc::default(),
            }
            .into())
        })
    }
}

/// A watcher of the cores a [`Corestore`] opens (see [`Corestore::watch`]).
#[wasm_bindgen]
pub struct CoreWatcher {
    store: WebStore,
    id: WatchId,
    /// What the store had reported when the watcher was closed, still to give out.
    left: Rc<RefCell<VecDeque<OpenedCore>>>,
    closed: Rc<Cell<bool>>,
}

fn opened_js(c: OpenedCore) -> JsValue {
    let o = Object::new();
    let _ = Reflect::set(&o, &"key".into(), &Uint8Array::from(&c.key[..]));
    let _ = Reflect::set(
        &o,
        &"discoveryKey".into(),
        &Uint8Array::from(&c.discovery_key[..]),
    );
    let _ = Reflect::set(&o, &"forRemote".into(), &JsValue::from_bool(c.for_remote));
    o.into()
}

#[wasm_bindgen]
impl CoreWatcher {
    /// The next core the store opened (`{ key, discoveryKey, forRemote }`), waiting for one;
    /// `null` once closed and every core opened before the close was given out, or once the
    /// store is closed and nothing is left.
    #[wasm_bindgen(
        unchecked_return_type = "Promise<{ key: Uint8Array, discoveryKey: Uint8Array, forRemote: boolean } | null>"
    )]
    pub fn next(&self) -> Promise {
        let (store, id) = (self.store.clone(), self.id);
        let (left, closed) = (self.left.clone(), self.closed.clone());
        future_to_promise(async move {
            let next = loop {
                if let Some(c) = left.borrow_mut().pop_front() {
                    break Some(c);
                }
                if closed.get() {
                    break None;
                }
                let changed = store.changed();
                {
                    // A reader's lock: its release wakes no one (the public lock's would wake
                    // this loop itself at once, for ever).
                    let mut g = SharedCoreHost::lock(&store).await;
                    if closed.get() {
                        continue;
                    }
                    if let Some(c) = g.poll_watch(id) {
                        break Some(c);
                    }
                    if g.is_closed() {
                        break None;
                    }
                }
                changed.await;
            };
            Ok(next.map_or(JsValue::NULL, opened_js))
        })
    }

    /// Stop watching (JS `store.unwatch(fn)`): the cores opened before are still given out by
    /// `next`, then it gives `null`. Resolves once nothing more is watched.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        let (store, id) = (self.store.clone(), self.id);
        let (left, closed) = (self.left.clone(), self.closed.clone());
        future_to_promise(async move {
            let mut g = store.lock().await;
            while let Some(c) = g.poll_watch(id) {
                left.borrow_mut().push_back(c);
            }
            g.unwatch(id);
            closed.set(true);
            // the guard's release wakes a waiting `next`
            drop(g);
            Ok(JsValue::UNDEFINED)
        })
    }
}

#[wasm_bindgen]
impl Hyperdrive {
    /// A monitor of file `name` (JS `drive.monitor(name)`): its entry is read first, then the
    /// blobs core's blocks in its range count as they are downloaded or uploaded. No name, or a
    /// name not in the drive: every block of both cores counts (as JS).
    #[wasm_bindgen(unchecked_return_type = "Promise<DriveMonitor>")]
    pub fn monitor(&self, name: Option<String>) -> Promise {
        let drive = self.inner().clone();
        let store = self.web_store().clone();
        future_to_promise(async move {
            let entry = match &name {
                Some(n) => drive.entry(n).await.map_err(|e| drive_err("monitor", e))?,
                None => None,
            };
            let mut monitor = Monitor::for_entry(store.now(), entry.as_ref());
            let db = *drive.db().discovery_key();
            let blobs = *drive.blobs().core().discovery_key();
            let events = store
                .subscribe_filtered(move |ev| Monitor::wants_event(&db, &blobs, ev))
                .await;
            monitor.set_peers(peers(&store, &blobs).await);
            Ok(DriveMonitor {
                inner: Rc::new(RefCell::new(MonitorState {
                    monitor,
                    events: Some(events),
                })),
                store,
                db,
                blobs,
                stop: Stop::default(),
            }
            .into())
        })
    }
}

struct MonitorState {
    monitor: Monitor,
    /// Taken while a `next` waits on it; `None` for good once closed.
    events: Option<HubEvents>,
}

impl MonitorState {
    /// Put back the receiver a `next` took, unless the monitor was closed meanwhile: then it is
    /// dropped, and the hub forgets this subscriber at its next event.
    fn give_back(&mut self, events: HubEvents, stop: &Stop) {
        if !stop.is_stopped() {
            self.events = Some(events);
        }
    }

    /// Drop the receiver (if no `next` holds it; else [`MonitorState::give_back`] drops it).
    fn close(&mut self) {
        self.events = None;
    }
}

/// A drive monitor (see [`Hyperdrive::monitor`]).
#[wasm_bindgen]
pub struct DriveMonitor {
    inner: Rc<RefCell<MonitorState>>,
    store: WebStore,
    db: [u8; 32],
    blobs: [u8; 32],
    stop: Stop,
}

async fn peers(store: &WebStore, dk: &[u8; 32]) -> usize {
    store
        .lock()
        .await
        .hub()
        .replicator(dk)
        .map_or(0, |r| r.peers().count())
}

fn stats_js(s: &TransferStats) -> JsValue {
    let o = Object::new();
    for (k, v) in [
        ("startTime", s.start_time as f64),
        ("percentage", s.percentage),
        ("peers", s.peers as f64),
        ("speed", s.speed),
        ("blocks", s.blocks as f64),
        ("totalBytes", s.total_bytes as f64),
        ("monitoringBytes", s.monitoring_bytes as f64),
        ("targetBytes", s.target_bytes as f64),
        ("targetBlocks", s.target_blocks as f64),
    ] {
        let _ = Reflect::set(&o, &k.into(), &JsValue::from_f64(v));
    }
    o.into()
}

#[wasm_bindgen]
impl DriveMonitor {
    /// Wait for the next change of the statistics (JS `update`): `true`, or `false` once
    /// closed (or the store gone). One `next` at a time.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn next(&self) -> Promise {
        let (inner, store, stop) = (self.inner.clone(), self.store.clone(), self.stop.clone());
        let (db, blobs) = (self.db, self.blobs);
        future_to_promise(async move {
            if stop.is_stopped() {
                return Ok(JsValue::FALSE);
            }
            let Some(mut events) = inner.borrow_mut().events.take() else {
                return Err(JsError::new("monitor.next: another next is waiting").into());
            };
            let changed = stop
                .or(async {
                    while let Some(ev) = events.next().await {
                        let effect = inner.borrow_mut().monitor.handle_hub_event(
                            store.now(),
                            &db,
                            &blobs,
                            &ev,
                        );
                        match effect {
                            HubEventEffect::Stats { changed: true } => return true,
                            HubEventEffect::Stats { changed: false } => {}
                            HubEventEffect::PeersChanged => {
                                let n = peers(&store, &blobs).await;
                                inner.borrow_mut().monitor.set_peers(n);
                            }
                        }
                    }
                    false
                })
                .await
                .unwrap_or(false);
            inner.borrow_mut().give_back(events, &stop);
            Ok(JsValue::from_bool(changed))
        })
    }

    /// What was downloaded (JS `monitor.downloadStats`).
    #[wasm_bindgen(
        getter,
        js_name = downloadStats,
        unchecked_return_type = "Record<string, number>"
    )]
    pub fn download_stats(&self) -> JsValue {
        stats_js(self.inner.borrow().monitor.download_stats())
    }

    /// What was uploaded (JS `monitor.uploadStats`).
    #[wasm_bindgen(getter, js_name = uploadStats, unchecked_return_type = "Record<string, number>")]
    pub fn upload_stats(&self) -> JsValue {
        stats_js(self.inner.borrow().monitor.upload_stats())
    }

    /// The blobs core's peers (JS `monitor.peers`).
    #[wasm_bindgen(getter)]
    pub fn peers(&self) -> f64 {
        self.inner.borrow().monitor.peers() as f64
    }

    /// The download speed now, bytes per second (JS `monitor.downloadSpeed()`).
    #[wasm_bindgen(js_name = downloadSpeed)]
    pub fn download_speed(&self) -> f64 {
        let now = self.store.now();
        self.inner.borrow_mut().monitor.download_speed(now)
    }

    /// The upload speed now, bytes per second (JS `monitor.uploadSpeed()`).
    #[wasm_bindgen(js_name = uploadSpeed)]
    pub fn upload_speed(&self) -> f64 {
        let now = self.store.now();
        self.inner.borrow_mut().monitor.upload_speed(now)
    }

    /// Stop: a pending `next` gives `false`, and so does every later one. The monitor stops
    /// receiving the store's events (its queue is dropped now, or when a pending `next` ends);
    /// the statistics keep their last values.
    pub fn close(&self) {
        self.stop.stop();
        self.inner.borrow_mut().close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicate::test_events;
    use hyperpunch_core::replication::HubEvent;

    fn state(events: HubEvents) -> MonitorState {
        MonitorState {
            monitor: Monitor::new(0, None),
            events: Some(events),
        }
    }

    fn event() -> HubEvent {
        HubEvent::Core {
            discovery_key: [0; 32],
            event: hyperpunch_core::replication::Event::Upgraded { length: 1, fork: 0 },
        }
    }

    /// A closed monitor drops its receiver, whether a `next` held it or not, so the hub's send
    /// fails and the hub forgets the subscriber (before: `next` put it back and `close` kept it:
    /// the closed monitor queued every event of the store for good).
    #[wasm_bindgen_test::wasm_bindgen_test]
    fn a_closed_monitor_lets_go_of_the_stores_events() {
        // closed while a `next` waits
        let (tx, rx) = test_events();
        let mut s = state(rx);
        let stop = Stop::default();
        let held = s.events.take().unwrap();
        stop.stop();
        s.close();
        s.give_back(held, &stop);
        assert!(s.events.is_none());
        assert!(tx.send(event()).is_err(), "the hub still delivers to it");
        // closed between two `next`s
        let (tx, rx) = test_events();
        let mut s = state(rx);
        let stop = Stop::default();
        let held = s.events.take().unwrap();
        s.give_back(held, &stop);
        assert!(tx.send(event()).is_ok(), "open: still subscribed");
        stop.stop();
        s.close();
        assert!(tx.send(event()).is_err(), "the hub still delivers to it");
    }

    /// A monitor's subscription queues only its drive's events (the db and blobs cores, the
    /// blobs core's channels), not every event of the store, and is forgotten once dropped
    /// even if no event it wants comes (before, a page's monitor queued all of the store's
    /// events while it was open).
    #[wasm_bindgen_test::wasm_bindgen_test]
    fn a_monitor_queues_only_its_drives_events() {
        use crate::replicate::deliver;
        let (db, blobs, other) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let core = |dk: [u8; 32]| HubEvent::Core {
            discovery_key: dk,
            event: hyperpunch_core::replication::Event::Upgraded { length: 1, fork: 0 },
        };
        let (tx, mut rx) = test_events();
        let (all_tx, mut all) = test_events();
        let wants: Box<dyn Fn(&HubEvent) -> bool> =
            Box::new(move |ev| Monitor::wants_event(&db, &blobs, ev));
        let mut subs = vec![(tx, Some(wants)), (all_tx, None)];
        for dk in [other, db, other, blobs, other] {
            deliver(&mut subs, &core(dk));
        }
        let mut got = Vec::new();
        while let Some(HubEvent::Core { discovery_key, .. }) = rx.try_next() {
            got.push(discovery_key);
        }
        assert_eq!(got, vec![db, blobs]);
        let mut n = 0;
        while all.try_next().is_some() {
            n += 1;
        }
        assert_eq!(n, 5, "an unfiltered subscriber gets every event");
        drop(rx);
        deliver(&mut subs, &core(other));
        assert_eq!(subs.len(), 1, "a dropped monitor is forgotten");
    }
}
