//! Browser tests of replication: two in-page peers, each on its own IndexedDB database, connected
//! by an in-memory duplex through the full stack (secret stream, protomux, replicator), in
//! headless Chromium. Also the JavaScript API ([`hyperpunch_web::js`]) end to end.
//!
//! Run with `scripts/test-browser.sh`.
#![cfg(target_arch = "wasm32")]

mod common;
use common::sleep;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_util::future::{join, select, Either};
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::hypercore::{CreateOptions, Hypercore, OpenOptions};
use hyperpunch_core::replication::{
    DownloadId, Event, HubEvent, Options, ReplicationHub, Replicator, HIGH_WATER,
};
use hyperpunch_core::secretstream::{Options as StreamOptions, StreamError};
use hyperpunch_web::js;
use hyperpunch_web::replicate::{
    memory_duplex, memory_duplex_with_capacity, replicate, replicate_with, Duplex, DuplexError,
    HubEvents, MemoryDuplex, ReplicateError, SharedHub, CARRIER_HIGH_WATER,
};
use hyperpunch_web::storage::IdbStorage;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
}

/// A database name no other test (or earlier run in the same profile) uses.
fn unique_name(prefix: &str) -> String {
    let n = COUNTER.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    let salt = (js_sys::Math::random() * 1e12) as u64;
    format!("hyperpunch-repl-{prefix}-{n}-{salt:x}")
}

async fn fresh_idb(name: &str) -> IdbStorage {
    IdbStorage::delete_database(name).await.expect("delete");
    IdbStorage::open(name).await.expect("open IndexedDB")
}

/// `n` blocks of mixed sizes up to 64 KiB, contents differing per block: sizes spread evenly
/// over the powers of two (so about 1/17 of them are 32..64 KiB, and the last one is exactly
/// 64 KiB), which keeps the debug-build crypto of the suite fast.
fn blocks(n: u32) -> Vec<Vec<u8>> {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = if i + 1 == n {
                64 * 1024
            } else {
                // 0, or in [2^(b-1), 2^b) for b in 1..=16.
                match (x >> 24) % 17 {
                    0 => 0,
                    b => ((1u32 << (b - 1)) + x % (1 << (b - 1))) as usize,
                }
            };
            (0..len as u32)
                .map(|j| {
                    (j.wrapping_mul(2_654_435_761)
                        .wrapping_add(i.wrapping_mul(40_503))
                        >> 24) as u8
                })
                .collect()
        })
        .collect()
}

/// A writable core on a fresh database holding `data`, appended in batches.
async fn writer(
    name: &str,
    encryption_key: Option<[u8; 32]>,
    data: &[Vec<u8>],
) -> Hypercore<IdbStorage> {
    let mut core = Hypercore::create(
        fresh_idb(name).await,
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[7; 32])),
            encryption_key,
            ..CreateOptions::default()
        },
    )
    .await
    .expect("create writer");
    for chunk in data.chunks(50) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        core.append(&refs).await.expect("append");
    }
    core
}

/// A reader of `key` on a fresh database.
async fn reader(
    name: &str,
    key: [u8; 32],
    encryption_key: Option<[u8; 32]>,
) -> Hypercore<IdbStorage> {
    Hypercore::create(
        fresh_idb(name).await,
        CreateOptions {
            key: Some(key),
            encryption_key,
            ..CreateOptions::default()
        },
    )
    .await
    .expect("create reader")
}

/// The writer's and reader's hubs (reader with events) and the core's discovery key.
fn hubs(
    w: Hypercore<IdbStorage>,
    r: Hypercore<IdbStorage>,
) -> (
    SharedHub<IdbStorage>,
    SharedHub<IdbStorage>,
    HubEvents,
    [u8; 32],
) {
    let mut wh = ReplicationHub::new();
    let dk = wh.add_core(Replicator::new(w, Options::default())).unwrap();
    let mut rh = ReplicationHub::new();
    rh.add_core(Replicator::new(r, Options::default())).unwrap();
    let (rh, events) = SharedHub::with_events(rh);
    (SharedHub::new(wh), rh, events, dk)
}

/// Fails on any sign of a peer misbehaving.
fn check_event(ev: &HubEvent) {
    assert!(
        !matches!(
            ev,
            HubEvent::Core {
                event: Event::InvalidData { .. }
                    | Event::InvalidRequest { .. }
                    | Event::Disconnect { .. },
                ..
            } | HubEvent::StreamClosed { .. }
        ),
        "{ev:?}"
    );
}

/// Block `i` of `core` is the `i`-th of `blocks`, for each of them.
async fn assert_blocks<'a>(
    core: &Hypercore<IdbStorage>,
    blocks: impl Iterator<Item = &'a Vec<u8>>,
) {
    for (i, block) in blocks.enumerate() {
        assert_eq!(
            core.get(i as u64).await.unwrap().as_ref(),
            Some(block),
            "block {i}"
        );
    }
}

/// Waits (on events, no polling) until the bounded download `id` completed.
async fn until_downloaded(events: &mut HubEvents, id: DownloadId) {
    loop {
        let ev = events.next().await.expect("hub events");
        check_event(&ev);
        if matches!(ev, HubEvent::Core { event: Event::Downloaded { id: got }, .. } if got == id) {
            return;
        }
    }
}

/// Runs the writer's (responder) and reader's (initiator) pumps over an in-memory duplex next
/// to `drive`, which must end the connection; both pumps must close cleanly.
async fn connect(
    wh: &SharedHub<IdbStorage>,
    rh: &SharedHub<IdbStorage>,
    drive: impl std::future::Future<Output = ()>,
) {
    let (a, b) = memory_duplex();
    let serve = replicate(a, false, KeyPair::from_seed(&[1; 32]), wh);
    let fetch = replicate(b, true, KeyPair::from_seed(&[2; 32]), rh);
    let ((s, f), ()) = join(join(serve, fetch), drive).await;
    s.expect("writer's pump closed cleanly");
    f.expect("reader's pump closed cleanly");
    assert_eq!(wh.connections().await, 0);
    assert_eq!(rh.connections().await, 0);
}

/// (a) + (d): 500 blocks up to 64 KiB, plain and encrypted, downloaded over the secret stream
/// into IndexedDB; equal blocks, tree hash, length and fork; still there after reopening.
#[wasm_bindgen_test]
async fn full_download_plain_and_encrypted_then_reopen() {
    let data = blocks(500);
    assert_eq!(data.iter().map(Vec::len).max(), Some(64 * 1024));
    assert!(data.iter().filter(|b| b.len() >= 32 * 1024).count() > 10);
    assert!(data.iter().filter(|b| b.len() < 1024).count() > 100);
    for encryption_key in [None, Some([9u8; 32])] {
        let (wname, rname) = (unique_name("full-w"), unique_name("full-r"));
        let w = writer(&wname, encryption_key, &data).await;
        let key = *w.key();
        let r = reader(&rname, key, encryption_key).await;
        let (wh, rh, mut events, dk) = hubs(w, r);
        let id = {
            let now = rh.now();
            let mut g = rh.lock().await;
            g.replicator_mut(&dk)
                .unwrap()
                .download(now, 0, Some(500))
                .await
                .unwrap()
        };
        connect(&wh, &rh, async {
            until_downloaded(&mut events, id).await;
            rh.end_all().await;
        })
        .await;

        let (wg, rg) = (wh.lock().await, rh.lock().await);
        let (wc, rc) = (
            wg.replicator(&dk).unwrap().core(),
            rg.replicator(&dk).unwrap().core(),
        );
        assert_eq!(rc.length(), 500);
        assert_eq!(rc.contiguous_length(), 500);
        assert_eq!(rc.fork(), wc.fork());
        assert_eq!(rc.byte_length(), wc.byte_length());
        assert_eq!(rc.tree_hash(), wc.tree_hash());
        assert_eq!(rc.encrypted(), encryption_key.is_some());
        assert_blocks(rc, data.iter()).await;
        if encryption_key.is_some() {
            // Stored (and sent) encrypted: the raw bytes are not the plaintext.
            let raw = rc.get_stored(499).await.unwrap().unwrap();
            assert_ne!(raw, data[499]);
        }
        rc.verify_all().await.unwrap();
        let tree_hash = rc.tree_hash();
        drop((wg, rg));
        // Closes both databases.
        drop((wh, rh));

        let reopened = Hypercore::open(
            IdbStorage::open(&rname).await.expect("reopen IndexedDB"),
            OpenOptions {
                encryption_key,
                ..OpenOptions::default()
            },
        )
        .await
        .expect("reopen the reader's core");
        assert_eq!(reopened.key(), &key);
        assert_eq!(reopened.length(), 500);
        assert_eq!(reopened.contiguous_length(), 500);
        assert_eq!(reopened.tree_hash(), tree_hash);
        assert!(!reopened.writable());
        reopened.verify_all().await.unwrap();
        for i in [0usize, 1, 250, 499] {
            assert_eq!(
                reopened.get(i as u64).await.unwrap().as_ref(),
                Some(&data[i])
            );
        }
    }
}

/// (b): blocks the writer appends while connected reach the reader through the live download,
/// one after the other, without the reader asking again.
#[wasm_bindgen_test]
async fn live_appends_reach_the_reader() {
    let data = blocks(3);
    let w = writer(&unique_name("live-w"), None, &data).await;
    let key = *w.key();
    let r = reader(&unique_name("live-r"), key, None).await;
    let (wh, rh, mut events, dk) = hubs(w, r);
    {
        let now = rh.now();
        let mut g = rh.lock().await;
        g.replicator_mut(&dk)
            .unwrap()
            .download(now, 0, None)
            .await
            .unwrap();
    }
    let live: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1000 * (i as usize + 1)]).collect();
    connect(&wh, &rh, async {
        let mut want = 3;
        loop {
            let ev = events.next().await.expect("hub events");
            check_event(&ev);
            let have = rh
                .lock()
                .await
                .replicator(&dk)
                .unwrap()
                .core()
                .contiguous_length();
            if have < want {
                continue;
            }
            assert_eq!(have, want, "nothing beyond what was appended");
            let Some(block) = live.get((want - 3) as usize) else {
                break;
            };
            let now = wh.now();
            let mut g = wh.lock().await;
            let out = g
                .replicator_mut(&dk)
                .unwrap()
                .append(now, &[block])
                .await
                .unwrap();
            want += 1;
            assert_eq!(out.length, want);
        }
        rh.end_all().await;
    })
    .await;
    let (wg, rg) = (wh.lock().await, rh.lock().await);
    let (wc, rc) = (
        wg.replicator(&dk).unwrap().core(),
        rg.replicator(&dk).unwrap().core(),
    );
    assert_eq!(rc.length(), 8);
    assert_eq!(rc.tree_hash(), wc.tree_hash());
    assert_blocks(rc, data.iter().chain(&live)).await;
}

/// (c): a bounded range downloads exactly that range (and the length upgrade), nothing else.
#[wasm_bindgen_test]
async fn sparse_range_only() {
    let data = blocks(200);
    let w = writer(&unique_name("sparse-w"), None, &data).await;
    let key = *w.key();
    let r = reader(&unique_name("sparse-r"), key, None).await;
    let (wh, rh, mut events, dk) = hubs(w, r);
    let id = {
        let now = rh.now();
        let mut g = rh.lock().await;
        g.replicator_mut(&dk)
            .unwrap()
            .download(now, 50, Some(80))
            .await
            .unwrap()
    };
    connect(&wh, &rh, async {
        until_downloaded(&mut events, id).await;
        rh.end_all().await;
    })
    .await;
    let (wg, rg) = (wh.lock().await, rh.lock().await);
    let (wc, rc) = (
        wg.replicator(&dk).unwrap().core(),
        rg.replicator(&dk).unwrap().core(),
    );
    assert_eq!(rc.length(), 200, "upgraded to the writer's length");
    assert_eq!(rc.tree_hash(), wc.tree_hash());
    assert_eq!(rc.contiguous_length(), 0);
    for i in 0..200u64 {
        let wanted = (50..80).contains(&i);
        assert_eq!(rc.has(i), wanted, "block {i}");
        let got = rc.get(i).await.unwrap();
        assert_eq!(got.as_ref(), wanted.then(|| &data[i as usize]), "block {i}");
    }
}

/// One writer hub serves two readers at once (one connection each, routed by the shared hub),
/// and the readers are connected to each other too: three hubs with two connections each.
#[wasm_bindgen_test]
async fn one_hub_serves_two_readers() {
    let data = blocks(60);
    let w = writer(&unique_name("two-w"), None, &data).await;
    let key = *w.key();
    let r1 = reader(&unique_name("two-r1"), key, None).await;
    let r2 = reader(&unique_name("two-r2"), key, None).await;
    let (wh, rh1, mut ev1, dk) = hubs(w, r1);
    let mut h2 = ReplicationHub::new();
    h2.add_core(Replicator::new(r2, Options::default()))
        .unwrap();
    let (rh2, mut ev2) = SharedHub::with_events(h2);
    let mut ids = Vec::new();
    for rh in [&rh1, &rh2] {
        let now = rh.now();
        let mut g = rh.lock().await;
        ids.push(
            g.replicator_mut(&dk)
                .unwrap()
                .download(now, 0, Some(60))
                .await
                .unwrap(),
        );
    }
    let (a1, b1) = memory_duplex();
    let (a2, b2) = memory_duplex();
    let (c1, c2) = memory_duplex();
    let pumps = join(
        join(
            join(
                replicate(a1, false, KeyPair::from_seed(&[1; 32]), &wh),
                replicate(b1, true, KeyPair::from_seed(&[2; 32]), &rh1),
            ),
            join(
                replicate(a2, false, KeyPair::from_seed(&[1; 32]), &wh),
                replicate(b2, true, KeyPair::from_seed(&[3; 32]), &rh2),
            ),
        ),
        join(
            replicate(c1, false, KeyPair::from_seed(&[2; 32]), &rh1),
            replicate(c2, true, KeyPair::from_seed(&[3; 32]), &rh2),
        ),
    );
    let drive = async {
        join(
            until_downloaded(&mut ev1, ids[0]),
            until_downloaded(&mut ev2, ids[1]),
        )
        .await;
        assert_eq!(wh.connections().await, 2);
        assert_eq!(rh1.connections().await, 2);
        rh1.end_all().await;
        rh2.end_all().await;
    };
    let ((((s1, f1), (s2, f2)), (p1, p2)), ()) = join(pumps, drive).await;
    for r in [s1, f1, s2, f2, p1, p2] {
        r.expect("pump closed cleanly");
    }
    let wg = wh.lock().await;
    let tree_hash = wg.replicator(&dk).unwrap().core().tree_hash();
    for rh in [&rh1, &rh2] {
        let g = rh.lock().await;
        let c = g.replicator(&dk).unwrap().core();
        assert_eq!(c.contiguous_length(), 60);
        assert_eq!(c.tree_hash(), tree_hash);
        assert_blocks(c, data.iter()).await;
    }
}

/// Bytes that are no handshake end the pump with an error, no panic, no hang.
#[wasm_bindgen_test]
async fn garbage_from_the_peer_is_an_error() {
    let hub: SharedHub<IdbStorage> = SharedHub::new(ReplicationHub::new());
    let (a, mut b) = memory_duplex();
    let mut junk = vec![0xffu8; 3];
    junk.extend([0x5a; 200]);
    b.send(junk).unwrap();
    b.close();
    let r = replicate(a, false, KeyPair::from_seed(&[4; 32]), &hub).await;
    assert!(matches!(r, Err(ReplicateError::Stream(_))), "{r:?}");
    assert_eq!(hub.connections().await, 0);
}

/// The idle timeout runs on the driver's `setTimeout` timer: a peer that stays silent (but
/// keeps the duplex open) ends the pump with `TimedOut`.
#[wasm_bindgen_test]
async fn silent_peer_times_out() {
    let hub: SharedHub<IdbStorage> = SharedHub::new(ReplicationHub::new());
    let (a, _silent) = memory_duplex();
    let opts = StreamOptions {
        timeout: 50,
        ..StreamOptions::default()
    };
    let kp = KeyPair::from_seed(&[5; 32]);
    let r = replicate_with(a, false, kp, opts, &hub, std::future::pending()).await;
    assert!(
        matches!(r, Err(ReplicateError::Stream(StreamError::TimedOut))),
        "{r:?}"
    );
}

/// Stops and resumes the reading of a [`Gated`] duplex.
#[derive(Clone, Default)]
struct Gate(Rc<RefCell<(bool, Option<Waker>)>>);

impl Gate {
    fn close(&self) {
        self.0.borrow_mut().0 = true;
    }

    fn open(&self) {
        let mut g = self.0.borrow_mut();
        g.0 = false;
        if let Some(w) = g.1.take() {
            w.wake();
        }
    }
}

/// A duplex end whose owner receives nothing while its [`Gate`] is closed: a peer that does
/// not read (its sending is unaffected).
struct Gated {
    inner: MemoryDuplex,
    gate: Gate,
}

impl Duplex for Gated {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        let mut g = self.gate.0.borrow_mut();
        if g.0 {
            g.1 = Some(cx.waker().clone());
            return Poll::Pending;
        }
        drop(g);
        self.inner.poll_recv(cx)
    }
    fn send(&mut self, chunk: Vec<u8>) -> Result<(), DuplexError> {
        self.inner.send(chunk)
    }
    fn close(&mut self) {
        self.inner.close();
    }
    fn buffered_amount(&self) -> usize {
        self.inner.buffered_amount()
    }
    fn poll_drained(&mut self, cx: &mut Context<'_>, low: usize) -> Poll<()> {
        self.inner.poll_drained(cx, low)
    }
}

/// A duplex end that, like a WebSocket, reports its `bufferedAmount` but has no drain event
/// (`poll_drained` keeps its default): the pump must look at the buffer on its own timer.
struct NoDrainEvent {
    inner: MemoryDuplex,
    /// Times the pump looked at the buffer.
    looks: Rc<Cell<u32>>,
}

impl Duplex for NoDrainEvent {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        self.inner.poll_recv(cx)
    }
    fn send(&mut self, chunk: Vec<u8>) -> Result<(), DuplexError> {
        self.inner.send(chunk)
    }
    fn close(&mut self) {
        self.inner.close();
    }
    fn buffered_amount(&self) -> usize {
        self.looks.set(self.looks.get() + 1);
        self.inner.buffered_amount()
    }
}

/// The writer's end of the duplex in [`a_reader_that_stops_reading`].
enum WriterEnd {
    /// The in-memory duplex, which wakes the pump as the reader drains it.
    Memory(MemoryDuplex),
    /// Wrapped in [`NoDrainEvent`].
    Polled(NoDrainEvent),
}

/// Backpressure: the reader asks for 200 blocks of 32 KiB (6.25 MiB, more than the hub's
/// high-water mark) and does not read its end of the duplex. The writer's pump keeps its own
/// queue plus the carrier's buffer below the high-water mark plus about one answer (the
/// remaining requests wait in the writer's hub), and hands the carrier at most
/// [`CARRIER_HIGH_WATER`] plus one chunk (its capacity here: one more chunk and `send` would
/// fail). Once the reader reads again, everything arrives intact.
async fn a_reader_that_stops_reading(polled: bool) {
    const N: u64 = 200;
    const SIZE: usize = 32 * 1024;
    /// About one answer (a block with its proof) and the pump's reporting step.
    const SLACK: usize = 128 * 1024;
    let data: Vec<Vec<u8>> = (0..N as usize)
        .map(|i| {
            (0..SIZE)
                .map(|j| (i.wrapping_mul(131) ^ j.wrapping_mul(7)) as u8)
                .collect()
        })
        .collect();
    let w = writer(&unique_name("bp-w"), None, &data).await;
    let key = *w.key();
    let r = reader(&unique_name("bp-r"), key, None).await;
    let mut wh = ReplicationHub::new();
    let dk = wh.add_core(Replicator::new(w, Options::default())).unwrap();
    let (wh, mut wevents) = SharedHub::with_events(wh);
    let mut rh = ReplicationHub::new();
    // Every block requested at once; none cancelled while the reader stops reading.
    let ropts = Options {
        max_inflight: 256,
        request_timeout: 600_000,
        ..Options::default()
    };
    rh.add_core(Replicator::new(r, ropts)).unwrap();
    let (rh, mut events) = SharedHub::with_events(rh);

    let (a, b) = memory_duplex_with_capacity(CARRIER_HIGH_WATER + SLACK);
    let looks = Rc::new(Cell::new(0));
    let a = if polled {
        WriterEnd::Polled(NoDrainEvent {
            inner: a,
            looks: looks.clone(),
        })
    } else {
        WriterEnd::Memory(a)
    };
    let gate = Gate::default();
    let b = Gated {
        inner: b,
        gate: gate.clone(),
    };
    let serve = async {
        let kp = KeyPair::from_seed(&[1; 32]);
        match a {
            WriterEnd::Memory(a) => replicate(a, false, kp, &wh).await,
            WriterEnd::Polled(a) => replicate(a, false, kp, &wh).await,
        }
    };
    let fetch = replicate(b, true, KeyPair::from_seed(&[2; 32]), &rh);
    let drive = async {
        // Connected and upgraded to the writer's length; then the reader stops reading and
        // asks for every block.
        loop {
            let ev = events.next().await.expect("hub events");
            check_event(&ev);
            if rh.lock().await.replicator(&dk).unwrap().core().length() == N {
                break;
            }
        }
        gate.close();
        let id = {
            let now = rh.now();
            let mut g = rh.lock().await;
            g.replicator_mut(&dk)
                .unwrap()
                .download(now, 0, Some(N))
                .await
                .unwrap()
        };
        let (sid, peer) = loop {
            match wevents.next().await.expect("writer events") {
                HubEvent::ChannelOpened { stream, peer, .. } => break (stream, peer),
                ev => check_event(&ev),
            }
        };
        // The writer answers until its backlog reaches the high-water mark; then the rest
        // of the requests wait in its hub.
        let mut waited = 0;
        loop {
            let deferred = wh.lock().await.replicator(&dk).unwrap().deferred(peer);
            if deferred > 0 {
                break;
            }
            waited += 1;
            assert!(waited < 3000, "the writer never held requests back");
            sleep(10).await;
        }
        // And it stays so while the reader does not read.
        sleep(300).await;
        {
            let g = wh.lock().await;
            assert!(g.is_congested(sid));
            assert!(g.replicator(&dk).unwrap().deferred(peer) > 0);
        }
        let max = wh.max_backlog();
        assert!(
            max >= HIGH_WATER,
            "{max} bytes: the backlog reached the hub"
        );
        assert!(max <= HIGH_WATER + SLACK, "{max} bytes held");
        let got = rh
            .lock()
            .await
            .replicator(&dk)
            .unwrap()
            .core()
            .contiguous_length();
        assert!(
            got < N / 2,
            "{got} blocks arrived while the reader did not read"
        );
        // Waiting for a drain that does not come costs a look every few milliseconds, no spin.
        let before = looks.get();
        sleep(200).await;
        let during = looks.get() - before;
        assert!(
            !polled || (5..=400).contains(&during),
            "{during} looks in 200 ms"
        );

        gate.open();
        // Bounded: a pump that never tells the hub its backlog drained stalls here.
        let done = std::pin::pin!(until_downloaded(&mut events, id));
        if let Either::Right(_) = select(done, std::pin::pin!(sleep(60_000))).await {
            panic!("the download stalled after the reader read again");
        }
        rh.end_all().await;
    };
    let ((s, f), ()) = join(join(serve, fetch), drive).await;
    s.expect("writer's pump closed cleanly");
    f.expect("reader's pump closed cleanly");
    let max = wh.max_backlog();
    assert!(max <= HIGH_WATER + SLACK, "{max} bytes held");

    let (wg, rg) = (wh.lock().await, rh.lock().await);
    let (wc, rc) = (
        wg.replicator(&dk).unwrap().core(),
        rg.replicator(&dk).unwrap().core(),
    );
    assert_eq!(rc.contiguous_length(), N);
    assert_eq!(rc.tree_hash(), wc.tree_hash());
    rc.verify_all().await.unwrap();
    assert_blocks(rc, data.iter()).await;
}

/// [`a_reader_that_stops_reading`] over the in-memory duplex, whose reads wake the pump.
#[wasm_bindgen_test]
async fn backpressure_a_reader_that_stops_reading() {
    a_reader_that_stops_reading(false).await;
}

/// [`a_reader_that_stops_reading`] over a carrier without a drain event (as a WebSocket): the
/// pump sees it drain by looking on a timer.
#[wasm_bindgen_test]
async fn backpressure_over_a_carrier_without_drain_event() {
    a_reader_that_stops_reading(true).await;
}

async fn resolve(p: js_sys::Promise) -> JsValue {
    JsFuture::from(p).await.expect("promise resolved")
}

fn bytes(v: JsValue) -> Vec<u8> {
    js_sys::Uint8Array::new(&v).to_vec()
}

/// The JavaScript API end to end: create, append, replicate, `get` waiting for a download and
/// for a live append, `end`, reopen from IndexedDB, delete.
#[wasm_bindgen_test]
async fn js_api_round_trip() {
    let (wname, rname) = (unique_name("js-w"), unique_name("js-r"));
    let ek = vec![3u8; 32];
    let w = js::Hypercore::create(wname.clone(), Some(ek.clone()))
        .await
        .map_err(JsValue::from)
        .unwrap();
    assert!(w.writable() && w.encrypted());
    assert_eq!(resolve(w.append(b"first".to_vec())).await, 1.0);
    assert_eq!(resolve(w.append(vec![5; 70_000])).await, 2.0);
    assert_eq!(w.length(), 2.0);
    assert_eq!(w.byte_length(), 70_005.0);

    let bad_key = js::Hypercore::create_reader(rname.clone(), vec![0; 31], None).await;
    assert!(bad_key.is_err());
    let r = js::Hypercore::create_reader(rname.clone(), w.key(), Some(ek.clone()))
        .await
        .map_err(JsValue::from)
        .unwrap();
    assert_eq!(r.discovery_key(), w.discovery_key());
    assert!(!r.writable());
    assert_eq!(r.length(), 0.0);
    assert_eq!(resolve(r.get(0.0, Some(false))).await, JsValue::UNDEFINED);
    assert!(JsFuture::from(r.get(-1.0, None)).await.is_err());

    let mut session = js::replicate(&w, &r).map_err(JsValue::from).unwrap();
    assert_eq!(bytes(resolve(r.get(1.0, None)).await), vec![5; 70_000]);
    // Block 2 does not exist yet: the get waits for the live append below.
    let pending = JsFuture::from(r.get(2.0, None));
    resolve(r.download(0.0, Some(2.0))).await;
    assert_eq!(resolve(w.append(b"live".to_vec())).await, 3.0);
    assert_eq!(bytes(pending.await.expect("live block")), b"live");
    assert_eq!(r.length(), 3.0);
    assert_eq!(r.contiguous_length(), 3.0);
    assert_eq!(r.tree_hash(), w.tree_hash());
    assert_eq!(r.fork(), w.fork());
    resolve(session.end()).await;
    drop((w, r));

    let again = js::Hypercore::open(rname.clone(), Some(ek))
        .await
        .map_err(JsValue::from)
        .unwrap();
    assert_eq!(again.length(), 3.0);
    assert_eq!(bytes(resolve(again.get(0.0, Some(false))).await), b"first");
    drop(again);
    js::Hypercore::delete_database(rname.clone())
        .await
        .map_err(JsValue::from)
        .unwrap();
    assert!(
        js::Hypercore::open(rname, None).await.is_err(),
        "deleted: no core left"
    );
}

/// Two readers of the page waiting on the same unchanged core (a bee's `get` of a missing
/// block, a watcher) do not wake each other: each one's check of the hub releases its lock,
/// and when every release woke every waiter they woke each other for ever in the microtask
/// queue, so no timer, WebSocket message or IndexedDB callback of the page ran again (this test
/// then never ends). An append wakes both.
#[wasm_bindgen_test]
async fn waiting_readers_leave_the_page_its_timers() {
    use hyperpunch_core::hyperbee::{BeeCore, HostCore};
    let w = writer(&unique_name("wait-w"), None, &blocks(2)).await;
    let mut wh = ReplicationHub::new();
    let dk = wh.add_core(Replicator::new(w, Options::default())).unwrap();
    let hub = SharedHub::new(wh);
    let (a, b) = (
        HostCore::new(hub.clone(), dk),
        HostCore::new(hub.clone(), dk),
    );
    let woken = Cell::new(0);
    let waits = join(
        async {
            a.wait_change(2, 0).await;
            woken.set(woken.get() + 1);
        },
        async {
            b.wait_change(2, 0).await;
            woken.set(woken.get() + 1);
        },
    );
    let append = async {
        sleep(20).await;
        assert_eq!(woken.get(), 0, "nothing changed yet");
        let now = hub.now();
        let mut g = hub.lock().await;
        let out = g
            .replicator_mut(&dk)
            .unwrap()
            .append(now, &[b"more"])
            .await
            .unwrap();
        assert_eq!(out.length, 3);
    };
    join(waits, append).await;
    assert_eq!(woken.get(), 2);
}
