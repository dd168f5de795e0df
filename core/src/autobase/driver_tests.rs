//! The driver's shared pieces ([`super::driver`]): [`feed_oplogs`], [`Fetches`] and the bounded
//! set of open oplog cores ([`OplogCores`]) under a peer's flood of made-up wakeup hints.

use futures_executor::block_on;

use super::driver::{feed_oplogs, Fetches, OplogCores, MAX_BOUNDED_CORES};
use super::{ApplyNode, Autobase, Host, Views, WantedWriter, MAX_HINTED};
use crate::corestore::{CoreHandle, Corestore, GetOptions, PrimaryKey};
use crate::encoding::Encode;
use crate::replication::{ReplicationHost, StreamId};
use crate::storage::{MemoryStorage, Storage};

type Base = Autobase<Box<dyn FnMut(&[ApplyNode<'_>], &mut Views, &mut Host<'_>)>>;

/// Every value goes to the view; a value starting with `ok` acks its writer (how an open room
/// keeps a non-member's optimistic node).
fn base(bootstrap: [u8; 32], optimistic: bool) -> Base {
    let mut b: Base = Autobase::new(
        bootstrap,
        Box::new(|nodes, views, host| {
            let v = views.open("view");
            for n in nodes {
                if n.value.starts_with(b"ok") {
                    host.ack_writer(n.from);
                }
                views.append(v, n.value.to_vec());
            }
        }),
    );
    b.set_optimistic(optimistic);
    b.open_view("view");
    b
}

fn view(b: &Base) -> Vec<String> {
    b.views()
        .blocks(0)
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// A made-up writer key (what a peer with the room key can announce at will).
fn fake(round: usize, i: usize) -> [u8; 32] {
    let mut k = [0xeeu8; 32];
    k[..8].copy_from_slice(&((round * MAX_HINTED + i) as u64).to_le_bytes());
    k
}

async fn store(pk: u8) -> Corestore<MemoryStorage> {
    Corestore::open(MemoryStorage::new(), PrimaryKey::Given([pk; 32]))
        .await
        .unwrap()
}

/// Download ranges asked and not complete, over every open core of `store`.
fn pending_downloads<S: Storage + Clone>(store: &Corestore<S>) -> usize {
    store
        .open_cores()
        .filter_map(|dk| store.hub().replicator(dk))
        .map(|r| r.pending_downloads())
        .sum()
}

/// The drivers' loop (chat `Room::sync`, the page's `State::sync`) with [`OplogCores`]: feed,
/// update, open/close and ask; until nothing is fed or opened.
async fn drive<S: Storage + Clone>(
    engine: &mut Base,
    store: &mut Corestore<S>,
    oplogs: &mut OplogCores,
) {
    for _ in 0..100 {
        let fed = oplogs.feed(engine, store).await.unwrap();
        engine.update();
        let out = oplogs
            .sync(engine, store, 0, true, |k| GetOptions::from_key(*k))
            .await
            .unwrap();
        if !fed && out.opened == 0 {
            return;
        }
    }
    panic!("the driver's loop did not settle");
}

/// The reviewer's probe: 20 rounds of [`MAX_HINTED`] made-up writers hinted by a peer, the
/// driver's loop after each (two updates per round), in an optimistic base and in a plain base
/// that has no member yet (it cannot tell a member from a stranger). The engine's wants stay
/// bounded, and so do the cores the driver keeps open, the download ranges asked and the cores
/// stored (the made-up writers' cores are purged when closed); once the driver closes, none of
/// them is left in the store. Before [`OplogCores`] the drivers opened a core for every wanted
/// writer and kept it: the same loop with the old code (run here for three rounds) ends with a
/// core, a stored core record and a download range per made-up writer.
#[test]
fn made_up_hints_keep_open_cores_and_downloads_bounded() {
    block_on(async {
        for optimistic in [true, false] {
            let mut store = store(1).await;
            let local = store.get(GetOptions::named("local")).await.unwrap();
            let lk = *local.key();
            let mut pinned = vec![(lk, local)];
            // the optimistic base is the local writer's own (a member); the plain one another's
            // whose system this member has not read yet (no member known)
            let boot = if optimistic { lk } else { [0xb0; 32] };
            if !optimistic {
                pinned.push((boot, store.get(GetOptions::from_key(boot)).await.unwrap()));
            }
            let mut engine = base(boot, optimistic);
            if optimistic {
                let m = engine.append(&lk, vec![b"hello".to_vec()]).unwrap();
                store
                    .append(0, &pinned[0].1, &[&m[0].to_bytes()])
                    .await
                    .unwrap();
                engine.update();
            }
            let mut oplogs = OplogCores::new(lk, pinned);
            let rounds = 20;
            for round in 0..rounds {
                let mut hinted = 0;
                for i in 0..MAX_HINTED {
                    hinted += usize::from(engine.hint_writer_length(&fake(round, i), u64::MAX));
                }
                assert_eq!(hinted, MAX_HINTED, "round {round}: the engine takes them");
                drive(&mut engine, &mut store, &mut oplogs).await;
                assert!(engine.wanted_ranges().len() <= MAX_HINTED + 2);
                let open = store.open_cores().count();
                let pins = if optimistic { 1 } else { 2 };
                assert!(
                    open <= MAX_BOUNDED_CORES + pins,
                    "round {round}: {open} open"
                );
                assert_eq!(open, oplogs.cores().len());
                let asked = pending_downloads(&store);
                assert!(
                    asked <= MAX_BOUNDED_CORES + 1,
                    "round {round}: {asked} asked"
                );
                assert!(oplogs.fetches().len() <= MAX_BOUNDED_CORES + 1);
                let stored = store.list().await.unwrap().len();
                assert!(
                    stored <= MAX_BOUNDED_CORES + pins,
                    "round {round}: {stored}"
                );
            }
            assert_eq!(
                view(&engine),
                if optimistic { vec!["hello"] } else { vec![] }
            );
            oplogs.close_all(&engine, &mut store).await.unwrap();
            assert_eq!(store.open_cores().count(), 0);
            let left: Vec<[u8; 32]> = store.list().await.unwrap().iter().map(|c| c.key).collect();
            assert!(
                left.iter().all(|k| *k == lk || *k == boot),
                "no made-up writer's core is left in the store: {} of them",
                left.len()
            );
        }
        // the same flood with the drivers' code before: every wanted writer opened and kept
        let mut store = store(2).await;
        let local = store.get(GetOptions::named("local")).await.unwrap();
        let lk = *local.key();
        let mut engine = base(lk, true);
        let mut cores = vec![(lk, local)];
        let mut fetching = Fetches::default();
        for round in 0..3 {
            for i in 0..MAX_HINTED {
                engine.hint_writer_length(&fake(round, i), u64::MAX);
            }
            for _ in 0..2 {
                feed_oplogs(&mut engine, &store, &cores).await.unwrap();
                engine.update();
                let wanted = engine.wanted_ranges();
                for w in &wanted {
                    if !cores.iter().any(|(c, _)| *c == w.key) {
                        let h = store.get(GetOptions::from_key(w.key)).await.unwrap();
                        cores.push((w.key, h));
                    }
                }
                for w in fetching.due(&wanted, &lk) {
                    let (_, h) = cores.iter().find(|(c, _)| *c == w.key).unwrap();
                    let r = store.replicator_mut(h).unwrap();
                    r.download(0, w.from, w.until).await.unwrap();
                }
            }
        }
        assert_eq!(store.open_cores().count(), 3 * MAX_HINTED + 1);
        assert_eq!(pending_downloads(&store), 3 * MAX_HINTED);
        assert_eq!(store.list().await.unwrap().len(), 3 * MAX_HINTED + 1);
    });
}

/// Move frames between two stores joined by one stream until both are quiet.
async fn pump(
    a: &mut Corestore<MemoryStorage>,
    sa: StreamId,
    b: &mut Corestore<MemoryStorage>,
    sb: StreamId,
) {
    for _ in 0..10_000 {
        let mut moved = false;
        a.flush();
        while let Some((s, f)) = a.poll_transmit() {
            if s == sa {
                b.handle_frames(0, sb, &[f]).await.unwrap();
                moved = true;
            }
        }
        b.flush();
        while let Some((s, f)) = b.poll_transmit() {
            if s == sb {
                a.handle_frames(0, sa, &[f]).await.unwrap();
                moved = true;
            }
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        if !moved {
            return;
        }
    }
    panic!("the stream did not go quiet");
}

/// After a flood of made-up hints, a genuine optimistic writer B is hinted (its next announce):
/// its core is opened (a made-up writer's core closed and purged to make room) and its node
/// asked for; the engine's hint expires before the block comes (the next update), yet the core
/// stays open while the download is on the way, so the block is fed when it comes and applied.
/// Acked, B is followed as a member is; when the driver closes, B's core stays in the store
/// and the made-up writers' cores are gone from it.
#[test]
fn a_genuine_optimistic_writer_is_fetched_after_a_flood() {
    block_on(async {
        let mut sa = store(1).await;
        let mut sb = store(2).await;
        let la = sa.get(GetOptions::named("local")).await.unwrap();
        let a = *la.key();
        let lb = sb.get(GetOptions::named("local")).await.unwrap();
        let b = *lb.key();
        let mut ea = base(a, true);
        let mut eb = base(a, true);
        let m = ea.append(&a, vec![b"hello".to_vec()]).unwrap();
        sa.append(0, &la, &[&m[0].to_bytes()]).await.unwrap();
        ea.update();
        eb.handle_block(&a, 0, &m[0].to_bytes()).unwrap();
        eb.update();
        let mut oa = OplogCores::new(a, vec![(a, la)]);
        for i in 0..MAX_HINTED {
            assert!(ea.hint_writer_length(&fake(0, i), u64::MAX));
        }
        drive(&mut ea, &mut sa, &mut oa).await;
        assert_eq!(oa.cores().len(), MAX_BOUNDED_CORES + 1);
        // B writes an optimistic node the store of A does not have yet
        let m = eb.append_optimistic(&b, b"ok optimistic".to_vec()).unwrap();
        sb.append(0, &lb, &[&m[0].to_bytes()]).await.unwrap();
        assert!(ea.hint_writer_length(&b, 1));
        drive(&mut ea, &mut sa, &mut oa).await;
        assert!(oa.get(&b).is_some(), "B's core opened");
        assert_eq!(
            oa.cores().len(),
            MAX_BOUNDED_CORES + 1,
            "one made-up core made room"
        );
        assert_eq!(oa.fetches().asked(&b), Some(Some(1)));
        ea.update();
        assert!(
            !ea.wanted_ranges().iter().any(|w| w.key == b),
            "the hint expired"
        );
        drive(&mut ea, &mut sa, &mut oa).await;
        assert!(oa.get(&b).is_some(), "kept open: its block is on the way");
        // the block comes
        let hh = [9; 64];
        let s1 = sa.add_stream(true, hh).unwrap();
        let s2 = sb.add_stream(false, hh).unwrap();
        pump(&mut sa, s1, &mut sb, s2).await;
        drive(&mut ea, &mut sa, &mut oa).await;
        assert_eq!(view(&ea), ["hello", "ok optimistic"]);
        assert!(ea.system().get(&b).is_some(), "acked");
        // an acked writer is followed (its next optimistic nodes): open-ended now
        assert!(oa.get(&b).is_some());
        assert_eq!(oa.fetches().asked(&b), Some(None));
        oa.close_all(&ea, &mut sa).await.unwrap();
        let stored = sa.list().await.unwrap();
        assert_eq!(stored.len(), 2, "A's and B's: {}", stored.len());
    });
}

/// [`Fetches::due`]: the local writer is never asked; a writer is asked once per end, again
/// when the end moves on; an open-ended want is asked once; `forget` and `clear` ask again.
#[test]
fn fetches_ask_each_range_once() {
    let w = |k: u8, from: u64, until: Option<u64>| WantedWriter {
        key: [k; 32],
        from,
        until,
    };
    let mut f = Fetches::default();
    assert!(f.is_empty());
    let wanted = [w(1, 0, None), w(2, 0, Some(1)), w(3, 4, Some(9))];
    assert_eq!(f.due(&wanted, &[1; 32]), [wanted[1], wanted[2]]);
    assert_eq!(f.len(), 2);
    assert_eq!(f.asked(&[1; 32]), None, "the local writer");
    assert!(f.due(&wanted, &[1; 32]).is_empty(), "asked already");
    // the end moves on (a new hint), or not
    let later = [w(2, 1, Some(3)), w(3, 5, Some(9))];
    assert_eq!(f.due(&later, &[1; 32]), [later[0]]);
    assert_eq!(f.asked(&[2; 32]), Some(Some(3)));
    // a writer that becomes a member: every block, asked once
    let member = [w(2, 3, None)];
    assert_eq!(f.due(&member, &[1; 32]), member);
    assert_eq!(f.asked(&[2; 32]), Some(None));
    assert!(f.due(&member, &[1; 32]).is_empty());
    assert!(f.due(&[w(2, 3, Some(10))], &[1; 32]).is_empty());
    f.forget(&[2; 32]);
    assert_eq!(f.due(&member, &[1; 32]), member, "its core was closed");
    f.clear();
    assert!(f.is_empty());
    assert_eq!(f.due(&later, &[1; 32]), later);
}

/// [`feed_oplogs`] feeds each writer's blocks the store holds, in order, and says whether it
/// fed any. A writer whose block 1 is not an oplog message freezes there (the engine ignores
/// its later blocks); with more of its blocks in the store, feeding again feeds nothing and
/// ends. Before f51ab95 the chat's copy of this loop handed the frozen writer's block to the
/// engine again and again (its length never moves): this test hung there.
#[test]
fn feed_oplogs_feeds_in_order_and_skips_a_frozen_writer() {
    block_on(async {
        let mut store = store(3).await;
        let ha = store.get(GetOptions::named("a")).await.unwrap();
        let hx = store.get(GetOptions::named("x")).await.unwrap();
        let (a, x) = (*ha.key(), *hx.key());
        // A (the bootstrap) writes two entries; X one entry, a block that is no oplog entry,
        // and another entry
        let mut writer = base(a, true);
        let mut blocks_a = Vec::new();
        for v in ["one", "two"] {
            let m = writer.append(&a, vec![v.as_bytes().to_vec()]).unwrap();
            writer.update();
            blocks_a.push(m[0].to_bytes());
        }
        let mut xw = base(a, true);
        let x0 = xw.append_optimistic(&x, b"x0".to_vec()).unwrap()[0].to_bytes();
        xw.update();
        let x2 = xw.append_optimistic(&x, b"x2".to_vec()).unwrap()[0].to_bytes();
        for b in &blocks_a {
            store.append(0, &ha, &[b]).await.unwrap();
        }
        for b in [&x0[..], &[0xff; 3][..], &x2[..]] {
            store.append(0, &hx, &[b]).await.unwrap();
        }
        let cores: Vec<([u8; 32], CoreHandle)> = vec![(a, ha), (x, hx)];
        let mut engine = base(a, true);
        assert!(feed_oplogs(&mut engine, &store, &cores).await.unwrap());
        assert_eq!(engine.oplog_len(&a), 2);
        assert_eq!(engine.oplog_len(&x), 1, "fed up to the bad block");
        assert_eq!(engine.frozen_at(&x), Some(1));
        let fed = feed_oplogs(&mut engine, &store, &cores).await.unwrap();
        assert!(!fed, "nothing new");
        assert_eq!(engine.oplog_len(&x), 1);
        engine.update();
        assert_eq!(view(&engine), ["one", "two"]);
    });
}

/// [`OplogCores`] never closes its pinned cores nor a member's, closes a writer's core once the
/// engine no longer wants it and nothing asked is on the way (keeping it in the store when the
/// engine holds its blocks, purging it when not), and with [`MAX_BOUNDED_CORES`] open and all
/// wanted now defers the next one (it opens once one of them is done).
#[test]
fn oplog_cores_close_what_the_engine_no_longer_wants() {
    block_on(async {
        let mut store = store(4).await;
        let local = store.get(GetOptions::named("local")).await.unwrap();
        let lk = *local.key();
        let mut engine = base(lk, true);
        let m = engine.append(&lk, vec![b"hello".to_vec()]).unwrap();
        store.append(0, &local, &[&m[0].to_bytes()]).await.unwrap();
        engine.update();
        let mut oplogs = OplogCores::new(lk, vec![(lk, local)]);
        // more hints than the driver opens cores for, all wanted in one round
        for i in 0..MAX_BOUNDED_CORES + 10 {
            assert!(engine.hint_writer_length(&fake(0, i), 5));
        }
        engine.update();
        let out = oplogs
            .sync(&engine, &mut store, 0, true, |k| GetOptions::from_key(*k))
            .await
            .unwrap();
        assert_eq!(out.opened, MAX_BOUNDED_CORES);
        assert_eq!(out.deferred, 10);
        assert_eq!(out.closed, 0, "all wanted now: none made room");
        // the hints expire; their downloads are on the way (nothing came): the cores stay
        engine.update();
        engine.update();
        let out = oplogs
            .sync(&engine, &mut store, 0, true, |k| GetOptions::from_key(*k))
            .await
            .unwrap();
        assert_eq!(out, Default::default());
        assert_eq!(oplogs.cores().len(), MAX_BOUNDED_CORES + 1);
        // a writer whose hinted block is in the store already: fed, then no longer wanted, so
        // its core closes at once and stays stored (the engine holds the block)
        let mut other = store.get(GetOptions::named("other")).await.unwrap();
        let ok = *other.key();
        let mut ow = base(lk, true);
        let b0 = ow.append_optimistic(&ok, b"maybe".to_vec()).unwrap()[0].to_bytes();
        store.append(0, &other, &[&b0]).await.unwrap();
        store.close_core(other).unwrap();
        assert!(engine.hint_writer_length(&ok, 1));
        drive(&mut engine, &mut store, &mut oplogs).await;
        assert_eq!(engine.oplog_len(&ok), 1, "fed");
        assert_eq!(view(&engine), ["hello"], "not acked: no trace");
        assert!(oplogs.get(&ok).is_none(), "closed");
        other = store.get(GetOptions::from_key(ok)).await.unwrap();
        assert_eq!(store.core(&other).unwrap().length(), 1, "still stored");
        store.close_core(other).unwrap();
        // the pinned core is never closed
        assert_eq!(oplogs.cores()[0].0, lk);
        let stored = store.list().await.unwrap().len();
        assert_eq!(
            stored,
            MAX_BOUNDED_CORES + 1,
            "one made-up core made room, purged"
        );
        oplogs.close_all(&engine, &mut store).await.unwrap();
        assert_eq!(
            store.list().await.unwrap().len(),
            2,
            "the local and the fed one"
        );
    });
}

/// A peer may hint any key as a writer, and the store is shared with the application: a core
/// that was stored before the driver opened it for a hint (here a user's core not written yet)
/// is closed with the hint but never purged, empty as it is; a core the driver made for a
/// made-up key is.
#[test]
fn a_hinted_core_the_driver_did_not_create_is_never_purged() {
    block_on(async {
        let mut store = store(5).await;
        let local = store.get(GetOptions::named("local")).await.unwrap();
        let lk = *local.key();
        let vault = store.get(GetOptions::named("vault")).await.unwrap();
        let vk = *vault.key();
        let vdk = *vault.discovery_key();
        store.close_core(vault).unwrap();
        let mut engine = base(lk, true);
        let mut oplogs = OplogCores::new(lk, vec![(lk, local)]);
        assert!(engine.hint_writer_length(&vk, 5));
        let made_up = fake(0, 1);
        assert!(engine.hint_writer_length(&made_up, 5));
        drive(&mut engine, &mut store, &mut oplogs).await;
        assert!(oplogs.get(&vk).is_some(), "opened for the hint");
        oplogs.close_all(&engine, &mut store).await.unwrap();
        assert!(
            store.has_core(&vdk).await.unwrap(),
            "the user's empty core is still stored"
        );
        assert!(
            !store
                .has_core(&crate::crypto::discovery_key(&made_up))
                .await
                .unwrap(),
            "the core made for a made-up key is purged"
        );
    })
}
