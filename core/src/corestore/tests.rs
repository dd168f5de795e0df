//! Corestore tests: opening, named cores, sessions, listing, bad stored bytes, and a
//! deterministic simulation of stores replicating many cores over streams with random delays.

use std::collections::BTreeMap;

use futures_executor::block_on;

use super::*;
use crate::replication::{Event, ReplicationHost};
use crate::storage::MemoryStorage;

type Store = Corestore<MemoryStorage>;

async fn store(pk: u8) -> (Store, MemoryStorage) {
    let storage = MemoryStorage::new();
    let s = Corestore::open(storage.clone(), PrimaryKey::Given([pk; 32]))
        .await
        .unwrap();
    (s, storage)
}

#[test]
fn primary_key_is_stored_created_or_checked() {
    block_on(async {
        let storage = MemoryStorage::new();
        assert_eq!(
            Corestore::open(storage.clone(), PrimaryKey::Stored)
                .await
                .unwrap_err(),
            CorestoreError::NotFound("no corestore in this storage")
        );
        let s = Corestore::open(storage.clone(), PrimaryKey::StoredOrNew([5; 32]))
            .await
            .unwrap();
        assert_eq!(s.primary_key(), &[5; 32]);
        drop(s);
        // Other random bytes at the next open do not replace the stored key.
        let s = Corestore::open(storage.clone(), PrimaryKey::StoredOrNew([6; 32]))
            .await
            .unwrap();
        assert_eq!(s.primary_key(), &[5; 32]);
        let s = Corestore::open(storage.clone(), PrimaryKey::Stored)
            .await
            .unwrap();
        assert_eq!(s.primary_key(), &[5; 32]);
        assert_eq!(
            Corestore::open(storage.clone(), PrimaryKey::Given([6; 32]))
                .await
                .unwrap_err(),
            CorestoreError::PrimaryKeyMismatch
        );
        Corestore::open(storage, PrimaryKey::Given([5; 32]))
            .await
            .unwrap();
    });
}

#[test]
fn named_cores_derive_like_js_and_persist() {
    block_on(async {
        let (mut s, storage) = store(7).await;
        let db = s.get(GetOptions::named("db")).await.unwrap();
        // vectors/data/07: primary key 07…07, name "db".
        assert_eq!(
            hex::encode(db.key()),
            "9d56810a89a0211db2a242b81ce8eac5265ac648769910177524c82908ab866d"
        );
        assert_eq!(
            hex::encode(db.discovery_key()),
            "2cad275d1165e91ee87db9943190d3d130d0d9f821c7b70d552cac2a2358f451"
        );
        assert!(s.core(&db).unwrap().writable());
        s.append(0, &db, &[b"a", b"b"]).await.unwrap();
        let nested_ns = Namespace::ROOT.child("app").child("x");
        let nested = s
            .get(GetOptions::named("db").in_namespace(nested_ns))
            .await
            .unwrap();
        let expect = named_core(&[7; 32], &nested_ns, b"db", 1).unwrap();
        assert_eq!(nested.key(), &expect.key);
        assert_eq!(
            s.create_key_pair(&nested_ns, "db").public_key,
            expect.key_pair.public_key
        );
        assert_eq!(s.core(&nested).unwrap().manifest(), Some(&expect.manifest));
        drop(s);

        // Reopen: the same cores, their data, names and keys.
        let mut s = Corestore::open(storage, PrimaryKey::Stored).await.unwrap();
        let db2 = s.get(GetOptions::named("db")).await.unwrap();
        assert_eq!(db2.key(), db.key());
        assert_eq!(s.core(&db2).unwrap().length(), 2);
        assert_eq!(
            s.core(&db2).unwrap().get(1).await.unwrap().as_deref(),
            Some(&b"b"[..])
        );
        s.append(0, &db2, &[b"c"]).await.unwrap();
        let mut list = s.list().await.unwrap();
        list.sort_by_key(|c| c.id);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].key, *db.key());
        assert_eq!(list[0].name, Some((Namespace::ROOT, b"db".to_vec())));
        assert_eq!(list[1].name, Some((nested_ns, b"db".to_vec())));
        assert_eq!(
            s.list_names(&nested_ns).await.unwrap(),
            vec![(b"db".to_vec(), *nested.discovery_key())]
        );
        assert_eq!(
            s.list_names(&Namespace::ROOT).await.unwrap(),
            vec![(b"db".to_vec(), *db.discovery_key())]
        );
        assert!(s
            .list_names(&Namespace::ROOT.child("app"))
            .await
            .unwrap()
            .is_empty());
        assert!(s.has_core(db.discovery_key()).await.unwrap());
        assert_eq!(
            s.find(db.discovery_key()).await.unwrap().unwrap().key,
            *db.key()
        );
        assert!(s.find(&[0; 32]).await.unwrap().is_none());
    });
}

#[test]
fn sessions_share_one_core_and_close_with_the_last() {
    block_on(async {
        let (mut s, _) = store(1).await;
        let a = s.get(GetOptions::named("log")).await.unwrap();
        let b = s.get(GetOptions::named("log")).await.unwrap();
        let c = s.session(&a).unwrap();
        assert_ne!(a, b);
        s.append(0, &a, &[b"x"]).await.unwrap();
        s.append(0, &b, &[b"y"]).await.unwrap();
        assert_eq!(s.core(&c).unwrap().length(), 2);
        assert_eq!(s.open_cores().count(), 1);
        s.close_core(a).unwrap();
        s.close_core(b).unwrap();
        assert!(s.is_open(c.discovery_key()));
        let dk = *c.discovery_key();
        let stale = CoreHandle {
            key: *c.key(),
            discovery_key: dk,
            session: c.session,
            id: c.id,
        };
        s.close_core(c).unwrap();
        assert!(!s.is_open(&dk));
        assert_eq!(s.core(&stale).unwrap_err(), CorestoreError::UnknownHandle);
        assert_eq!(
            s.close_core(stale).unwrap_err(),
            CorestoreError::UnknownHandle
        );
        // Reopened from storage.
        let d = s.get(GetOptions::from_discovery_key(dk)).await.unwrap();
        assert_eq!(s.core(&d).unwrap().length(), 2);
        s.close();
        assert_eq!(s.core(&d).unwrap_err(), CorestoreError::Closed);
        assert_eq!(
            s.get(GetOptions::named("log")).await.unwrap_err(),
            CorestoreError::Closed
        );
    });
}

#[test]
fn purge_deletes_a_core_and_nothing_else() {
    block_on(async {
        let (mut s, storage) = store(1).await;
        let keep = s.get(GetOptions::named("keep")).await.unwrap();
        s.append(0, &keep, &[b"k"]).await.unwrap();
        let a = s.get(GetOptions::named("log")).await.unwrap();
        let b = s.session(&a).unwrap();
        s.append(0, &a, &[b"x", b"y"]).await.unwrap();
        let (dk, key) = (*a.discovery_key(), *a.key());
        let everything = |st: &MemoryStorage| {
            let st = st.clone();
            async move { st.scan(&[], &[0xff], None).await.unwrap() }
        };
        let before = everything(&storage).await;
        assert!(s.purge(&dk).await.unwrap());
        // Every session ended, the core is neither open nor stored.
        assert!(!s.is_open(&dk));
        assert_eq!(s.core(&a).unwrap_err(), CorestoreError::UnknownHandle);
        assert_eq!(s.core(&b).unwrap_err(), CorestoreError::UnknownHandle);
        assert!(!s.has_core(&dk).await.unwrap());
        assert_eq!(s.list().await.unwrap().len(), 1);
        assert!(s
            .list_names(&Namespace::default())
            .await
            .unwrap()
            .iter()
            .all(|(n, _)| n == b"keep"));
        // Only the purged core's records went: its record, alias and data prefix.
        let id = s.find(keep.discovery_key()).await.unwrap().unwrap().id;
        let after = everything(&storage).await;
        let gone: Vec<&Vec<u8>> = before
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !after.iter().any(|(a, _)| a == *k))
            .collect();
        assert!(!gone.is_empty());
        for k in &gone {
            assert!(
                k[0] == layout::CORE || k[0] == layout::ALIAS || k[0] == layout::DATA,
                "an unexpected key went: {k:?}"
            );
            assert!(!k.starts_with(&layout::data_prefix(id)));
        }
        assert!(after
            .iter()
            .all(|(k, _)| !k.starts_with(&layout::data_prefix(id + 1))));
        assert_eq!(s.core(&keep).unwrap().length(), 1);
        // Purging again: nothing stored.
        assert!(!s.purge(&dk).await.unwrap());
        // The name gives a new, empty core with the same key.
        let c = s.get(GetOptions::named("log")).await.unwrap();
        assert_eq!(c.key(), &key);
        assert_eq!(s.core(&c).unwrap().length(), 0);
        s.append(0, &c, &[b"z"]).await.unwrap();
        drop(s);
        // Reopened from storage: still the new core, the kept one untouched.
        let mut s = Corestore::open(storage, PrimaryKey::Given([1; 32]))
            .await
            .unwrap();
        let c = s.get(GetOptions::named("log")).await.unwrap();
        assert_eq!(
            s.core(&c).unwrap().get(0).await.unwrap().as_deref(),
            Some(&b"z"[..])
        );
        assert_eq!(s.core(&c).unwrap().length(), 1);
        let keep = s.get(GetOptions::named("keep")).await.unwrap();
        assert_eq!(s.core(&keep).unwrap().length(), 1);
        s.close();
        assert_eq!(s.purge(&dk).await.unwrap_err(), CorestoreError::Closed);
    });
}

#[test]
fn cores_by_key_key_pair_manifest_and_discovery_key() {
    block_on(async {
        let (mut s, _) = store(2).await;
        let kp = KeyPair::from_seed(&[9; 32]);
        let w = s.get(GetOptions::from_key_pair(kp.clone())).await.unwrap();
        assert_eq!(
            w.key(),
            &Manifest::default_signer(kp.public_key).key(),
            "key of a key pair's default manifest"
        );
        assert!(s.core(&w).unwrap().writable());
        // The same core by key: one core, two sessions.
        let by_key = s.get(GetOptions::from_key(*w.key())).await.unwrap();
        assert_eq!(s.open_cores().count(), 1);
        s.append(0, &by_key, &[b"k"]).await.unwrap();
        // A remote core: a reader.
        let remote = s.get(GetOptions::from_key([4; 32])).await.unwrap();
        assert!(!s.core(&remote).unwrap().writable());
        assert_eq!(s.core(&remote).unwrap().manifest(), None);
        // A manifest with a key pair that signs it (hyperdrive's blobs core).
        let mut m = Manifest::default_signer(kp.public_key);
        m.signers[0].namespace = [3; 32];
        let blobs = s
            .get(GetOptions::from_manifest(m.clone()).with_key_pair(kp.clone()))
            .await
            .unwrap();
        assert_eq!(blobs.key(), &m.key());
        assert!(s.core(&blobs).unwrap().writable());
        // Discovery keys only find stored cores.
        assert_eq!(
            s.get(GetOptions::from_discovery_key([1; 32]))
                .await
                .unwrap_err(),
            CorestoreError::NotFound("no such core in this store")
        );
        assert_eq!(
            s.get(GetOptions::from_key([8; 32]).must_exist())
                .await
                .unwrap_err(),
            CorestoreError::NotFound("no such core in this store")
        );
        assert!(!s.has_core(&discovery_key(&[8; 32])).await.unwrap());
        assert!(matches!(
            s.get(GetOptions::default()).await.unwrap_err(),
            CorestoreError::InvalidArgument(_)
        ));
        assert!(matches!(
            s.get(GetOptions::from_key([5; 32]).with_key_pair(kp.clone()))
                .await
                .unwrap_err(),
            CorestoreError::Hypercore(HypercoreError::KeyMismatch(_))
        ));
        assert!(matches!(
            s.get(GetOptions {
                key: Some([4; 32]),
                discovery_key: Some([0; 32]),
                ..GetOptions::default()
            })
            .await
            .unwrap_err(),
            CorestoreError::InvalidArgument(_)
        ));
        assert_eq!(s.list().await.unwrap().len(), 3);
    });
}

#[test]
fn an_alias_keeps_the_core_a_name_was_first_given() {
    block_on(async {
        // A store whose cores get version-0 manifests names "db"; reopened with the default
        // version, "db" is still that core (JS `getAlias`).
        let storage = MemoryStorage::new();
        let mut opts = StoreOptions::new(PrimaryKey::Given([3; 32]));
        opts.manifest_version = 0;
        let mut s = Corestore::open_with(storage.clone(), opts).await.unwrap();
        let v0 = s.get(GetOptions::named("db")).await.unwrap();
        assert_eq!(
            v0.key(),
            &named_core(&[3; 32], &Namespace::ROOT, b"db", 0)
                .unwrap()
                .key
        );
        drop(s);
        let mut s = Corestore::open(storage, PrimaryKey::Stored).await.unwrap();
        let again = s.get(GetOptions::named("db")).await.unwrap();
        assert_eq!(again.key(), v0.key());
        assert!(s.core(&again).unwrap().writable());
    });
}

/// Storage whose writes fail when told to.
type Flaky = crate::storage::Instrumented<MemoryStorage>;

#[test]
fn a_failed_create_leaves_nothing_behind() {
    block_on(async {
        let storage = Flaky::default();
        let mut s = Corestore::open(storage.clone(), PrimaryKey::Given([1; 32]))
            .await
            .unwrap();
        let before = storage.inner().scan(&[], &[0xff], None).await.unwrap();
        storage.fail_writes(true);
        assert!(matches!(
            s.get(GetOptions::named("a")).await.unwrap_err(),
            CorestoreError::Hypercore(HypercoreError::Storage(_)) | CorestoreError::Storage(_)
        ));
        assert_eq!(
            storage.inner().scan(&[], &[0xff], None).await.unwrap(),
            before
        );
        assert_eq!(s.open_cores().count(), 0);
        storage.fail_writes(false);
        let a = s.get(GetOptions::named("a")).await.unwrap();
        assert_eq!(s.find(a.discovery_key()).await.unwrap().unwrap().id, 0);
    });
}

#[test]
fn corrupt_stored_entries_are_typed_errors() {
    block_on(async {
        let (mut s, storage) = store(4).await;
        let a = s.get(GetOptions::named("a")).await.unwrap();
        s.append(0, &a, &[b"1"]).await.unwrap();
        let dk = *a.discovery_key();
        drop(s);
        let put = |k: Vec<u8>, v: Vec<u8>| {
            let storage = storage.clone();
            async move {
                let mut b = Batch::new();
                b.put(k, v);
                storage.write(b).await.unwrap();
            }
        };
        let corrupt = |r: Result<CoreHandle, CorestoreError>| {
            assert!(
                matches!(
                    r,
                    Err(CorestoreError::Corrupt(_) | CorestoreError::Hypercore(_))
                ),
                "{r:?}"
            );
        };
        let good_record = storage.get(&layout::core_key(&dk)).await.unwrap().unwrap();
        let good_alias = storage
            .get(&layout::alias_key(&Namespace::ROOT, b"a"))
            .await
            .unwrap()
            .unwrap();
        let core_header = [layout::data_prefix(0), vec![0]].concat();
        let good_header = storage.get(&core_header).await.unwrap().unwrap();

        // Every truncation of each record, and junk.
        for cut in 0..good_record.len() {
            put(layout::core_key(&dk), good_record[..cut].to_vec()).await;
            let mut s = Corestore::open(storage.clone(), PrimaryKey::Stored)
                .await
                .unwrap();
            corrupt(s.get(GetOptions::named("a")).await);
            assert!(s.list().await.is_err());
        }
        put(layout::core_key(&dk), good_record.clone()).await;
        put(layout::alias_key(&Namespace::ROOT, b"a"), vec![1, 2, 3]).await;
        let mut s = Corestore::open(storage.clone(), PrimaryKey::Stored)
            .await
            .unwrap();
        corrupt(s.get(GetOptions::named("a")).await);
        assert!(s.list_names(&Namespace::ROOT).await.is_err());
        put(layout::alias_key(&Namespace::ROOT, b"a"), good_alias).await;
        for cut in [0, 1, 5, 40, good_header.len() - 1] {
            put(core_header.clone(), good_header[..cut].to_vec()).await;
            let mut s = Corestore::open(storage.clone(), PrimaryKey::Stored)
                .await
                .unwrap();
            corrupt(s.get(GetOptions::named("a")).await);
        }
        // A record pointing at another core's data.
        put(core_header.clone(), good_header).await;
        let mut s = Corestore::open(storage.clone(), PrimaryKey::Stored)
            .await
            .unwrap();
        let b = s.get(GetOptions::named("b")).await.unwrap();
        let mut wrong = CoreRecord::decode(&good_record).unwrap();
        wrong.id = 1;
        drop(s);
        put(layout::core_key(&dk), wrong.encode()).await;
        let mut s = Corestore::open(storage.clone(), PrimaryKey::Stored)
            .await
            .unwrap();
        corrupt(s.get(GetOptions::named("a")).await);
        let _ = b;
        // Store-level records.
        put(layout::next_id_key(), vec![0xff]).await;
        assert!(matches!(
            Corestore::open(storage.clone(), PrimaryKey::Stored).await,
            Err(CorestoreError::Corrupt(_))
        ));
        put(layout::header_key(), vec![1, 2]).await;
        assert!(matches!(
            Corestore::open(storage.clone(), PrimaryKey::Stored).await,
            Err(CorestoreError::Corrupt(_))
        ));
    });
}

// ------------------------------------------------------------------------------ simulation

/// xorshift64*: the simulation's only randomness, seeded.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A frame in flight on one direction of a link.
struct InFlight {
    at: u64,
    frame: Vec<u8>,
}

/// Stores joined pairwise by streams: frames keep their order on a link (a TCP stream does)
/// and arrive after random delays; links interleave at random; several due frames of a link
/// are handed over in one `handle_frames` call at random.
struct Sim {
    stores: Vec<Store>,
    /// (from, stream at from) → (to, stream at to).
    links: BTreeMap<(usize, StreamId), (usize, StreamId)>,
    /// Per (to, stream at to): frames in order.
    queues: BTreeMap<(usize, StreamId), std::collections::VecDeque<InFlight>>,
    rng: Rng,
    now: u64,
    events: Vec<Vec<HubEvent>>,
}

impl Sim {
    fn new(stores: Vec<Store>, seed: u64) -> Self {
        let n = stores.len();
        Sim {
            stores,
            links: BTreeMap::new(),
            queues: BTreeMap::new(),
            rng: Rng(seed | 1),
            now: 1000,
            events: (0..n).map(|_| Vec::new()).collect(),
        }
    }

    fn connect(&mut self, a: usize, b: usize) {
        let hh = [self.rng.below(256) as u8; 64];
        let sa = self.stores[a].add_stream(true, hh).unwrap();
        let sb = self.stores[b].add_stream(false, hh).unwrap();
        self.links.insert((a, sa), (b, sb));
        self.links.insert((b, sb), (a, sa));
    }

    fn collect(&mut self) {
        for from in 0..self.stores.len() {
            self.stores[from].flush();
            while let Some((sid, frame)) = self.stores[from].poll_transmit() {
                let Some(&(to, tsid)) = self.links.get(&(from, sid)) else {
                    continue;
                };
                let q = self.queues.entry((to, tsid)).or_default();
                let last = q.back().map_or(0, |f| f.at);
                let at = last.max(self.now + 1 + self.rng.below(30));
                q.push_back(InFlight { at, frame });
            }
            while let Some(e) = self.stores[from].poll_event() {
                self.events[from].push(e);
            }
        }
    }

    /// Deliver one link's due frames or fire timers; false when idle.
    async fn step(&mut self) -> bool {
        self.collect();
        let next = self
            .queues
            .iter()
            .filter_map(|(k, q)| q.front().map(|f| (f.at, *k)))
            .min_by_key(|(at, k)| (*at, self.rng_key(k)));
        let timer = (0..self.stores.len())
            .filter_map(|i| self.stores[i].poll_timeout().map(|t| (t, i)))
            .min();
        match (next, timer) {
            (Some((at, (to, sid))), t) if t.is_none_or(|(t, _)| at <= t) => {
                self.now = self.now.max(at);
                let take = 1 + self.rng.below(4) as usize;
                let q = self.queues.get_mut(&(to, sid)).unwrap();
                let mut frames = Vec::new();
                while frames.len() < take && q.front().is_some_and(|f| f.at <= self.now) {
                    frames.push(q.pop_front().unwrap().frame);
                }
                if self.stores[to].has_stream(sid) {
                    self.stores[to]
                        .handle_frames(self.now, sid, &frames)
                        .await
                        .unwrap();
                }
                true
            }
            (_, Some((t, i))) => {
                self.now = self.now.max(t);
                self.stores[i].handle_timeout(self.now).await.unwrap();
                true
            }
            _ => false,
        }
    }

    /// A tie breaker that varies with the seed but is stable within a step.
    fn rng_key(&self, k: &(usize, StreamId)) -> u64 {
        (k.0 as u64 * 1_000_003 + k.1.get()).wrapping_mul(self.rng.0 | 1)
    }

    async fn run_until(&mut self, mut done: impl FnMut(&Sim) -> bool) {
        for _ in 0..2_000_000 {
            if done(self) {
                return;
            }
            if !self.step().await {
                assert!(done(self), "network went idle before the goal");
                return;
            }
        }
        panic!("simulation did not converge");
    }
}

fn block(core: usize, i: u64) -> Vec<u8> {
    format!("core {core} block {i} {}", "z".repeat((i % 13) as usize)).into_bytes()
}

/// Three stores, eight cores, streams between every pair, random delays and batching: readers
/// open remote cores by key and download them; a store that has a core in storage but not open
/// opens it when a remote asks; a key nobody has is rejected everywhere and the rest goes on.
fn simulate(seed: u64) {
    block_on(async {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let (mut a, _) = store(10).await;
        let (mut b, _) = store(11).await;
        let (mut c, c_storage) = store(12).await;
        // A writes five named cores, B three (one in a namespace).
        let mut written = Vec::new();
        for i in 0..5 {
            let h = a.get(GetOptions::named(format!("a{i}"))).await.unwrap();
            let n = 1 + rng.below(40);
            for k in 0..n {
                a.append(0, &h, &[&block(i, k)]).await.unwrap();
            }
            written.push((0usize, i, *h.key(), n));
        }
        for i in 0..3 {
            let ns = if i == 2 {
                Namespace::ROOT.child("ns")
            } else {
                Namespace::ROOT
            };
            let h = b
                .get(GetOptions::named(format!("b{i}")).in_namespace(ns))
                .await
                .unwrap();
            let n = 1 + rng.below(40);
            for k in 0..n {
                b.append(0, &h, &[&block(10 + i, k)]).await.unwrap();
            }
            written.push((1usize, 10 + i, *h.key(), n));
        }
        // C had a0 once (stored, closed: it opens on demand) and wants a1, a3, b0, b2 now.
        let a0 = written[0].2;
        let h = c.get(GetOptions::from_key(a0)).await.unwrap();
        c.close_core(h).unwrap();
        assert!(!c.is_open(&discovery_key(&a0)));
        let mut c_wants = Vec::new();
        for &(_, i, key, n) in &written {
            if [1, 3, 10, 12].contains(&i) {
                let h = c.get(GetOptions::from_key(key)).await.unwrap();
                c.replicator_mut(&h)
                    .unwrap()
                    .download(0, 0, None)
                    .await
                    .unwrap();
                c_wants.push((h, i, n));
            }
        }
        // B wants a2 and a core nobody has.
        let h = b.get(GetOptions::from_key(written[2].2)).await.unwrap();
        b.replicator_mut(&h)
            .unwrap()
            .download(0, 0, None)
            .await
            .unwrap();
        let b_wants = vec![(h, 2usize, written[2].3)];
        let nobody = b.get(GetOptions::from_key([0xee; 32])).await.unwrap();
        b.replicator_mut(&nobody)
            .unwrap()
            .download(0, 0, None)
            .await
            .unwrap();

        let mut sim = Sim::new(vec![a, b, c], seed);
        let mut pairs = [(0, 1), (0, 2), (1, 2)];
        // Connect in a random order.
        for i in 0..3 {
            pairs.swap(i, rng.below(3) as usize);
        }
        for (x, y) in pairs {
            sim.connect(x, y);
        }
        let dk_a0 = discovery_key(&a0);
        let len_a0 = written[0].3;
        let done = |sim: &Sim| {
            let full = |s: &Store, h: &CoreHandle, n: u64| {
                let core = s.core(h).unwrap();
                core.length() == n && core.contiguous_length() == n
            };
            c_wants.iter().all(|(h, _, n)| full(&sim.stores[2], h, *n))
                && b_wants.iter().all(|(h, _, n)| full(&sim.stores[1], h, *n))
                && sim.stores[2]
                    .open_core(&dk_a0)
                    .is_some_and(|c| c.length() == len_a0)
        };
        sim.run_until(done).await;

        // Every block verified and right.
        for (h, i, n) in &c_wants {
            let core = sim.stores[2].core(h).unwrap();
            core.verify_all().await.unwrap();
            for k in 0..*n {
                assert_eq!(
                    core.get(k).await.unwrap(),
                    Some(block(*i, k)),
                    "seed {seed}"
                );
            }
        }
        for (h, i, n) in &b_wants {
            let core = sim.stores[1].core(h).unwrap();
            for k in 0..*n {
                assert_eq!(core.get(k).await.unwrap(), Some(block(*i, k)));
            }
        }
        // a0 was opened on demand in C (no session), and upgraded by A.
        assert!(sim.stores[2].is_open(&dk_a0));
        // Nobody has the unknown core: never opened anywhere, B's core has no peer.
        let dk_nobody = *nobody.discovery_key();
        assert_eq!(
            sim.stores[1].replicator(&nobody).unwrap().peers().count(),
            0
        );
        for i in [0, 2] {
            assert!(!sim.stores[i].is_open(&dk_nobody));
            assert!(!sim.stores[i].has_core(&dk_nobody).await.unwrap());
        }
        // No bad data, no dropped stream.
        for evs in &sim.events {
            for e in evs {
                assert!(
                    !matches!(
                        e,
                        HubEvent::StreamClosed { .. }
                            | HubEvent::CoreOpenFailed { .. }
                            | HubEvent::Core {
                                event: Event::InvalidData { .. }
                                    | Event::InvalidRequest { .. }
                                    | Event::Disconnect { .. },
                                ..
                            }
                    ),
                    "seed {seed}: {e:?}"
                );
            }
        }

        // The connections go: C's on-demand core closes with its last peer; cores with
        // sessions stay open.
        let streams: Vec<(usize, StreamId)> = sim.links.keys().copied().collect();
        for (i, sid) in streams {
            sim.stores[i].remove_stream(sim.now, sid).await.unwrap();
        }
        assert!(!sim.stores[2].is_open(&dk_a0));
        assert!(c_wants
            .iter()
            .all(|(h, _, _)| sim.stores[2].is_open(h.discovery_key())));
        // What C got on demand is stored.
        let mut c2 = Corestore::open(c_storage, PrimaryKey::Stored)
            .await
            .unwrap();
        let h = c2.get(GetOptions::from_key(a0).must_exist()).await.unwrap();
        assert_eq!(c2.core(&h).unwrap().length(), len_a0);
    });
}

#[test]
fn stores_replicate_many_cores_over_random_delays() {
    for seed in 1..=24 {
        simulate(seed);
    }
}

/// The remote opens a core that exists in the storage while the store has no session at all;
/// the store serves it and closes it again when the channel goes.
#[test]
fn a_stored_core_is_served_on_demand_and_closed_after() {
    block_on(async {
        let (mut w, w_storage) = store(20).await;
        let h = w.get(GetOptions::named("served")).await.unwrap();
        for k in 0..30 {
            w.append(0, &h, &[&block(0, k)]).await.unwrap();
        }
        let key = *h.key();
        drop(w);
        // Reopened: nothing open, everything on demand.
        let w = Corestore::open(w_storage, PrimaryKey::Stored)
            .await
            .unwrap();
        let (mut r, _) = store(21).await;
        let rh = r.get(GetOptions::from_key(key)).await.unwrap();
        r.replicator_mut(&rh)
            .unwrap()
            .download(0, 0, Some(30))
            .await
            .unwrap();
        let mut sim = Sim::new(vec![w, r], 7);
        sim.connect(1, 0);
        sim.run_until(|sim| sim.stores[1].core(&rh).unwrap().contiguous_length() == 30)
            .await;
        assert!(sim.stores[0].is_open(&discovery_key(&key)));
        // The reader closes its core: the channel closes, the writer closes its core.
        let rh_dk = *rh.discovery_key();
        sim.stores[1].close_core(rh).unwrap();
        assert!(!sim.stores[1].is_open(&rh_dk));
        sim.run_until(|sim| !sim.stores[0].is_open(&rh_dk)).await;
        sim.collect();
        assert!(sim.events[0]
            .iter()
            .any(|e| matches!(e, HubEvent::ChannelClosed { discovery_key, .. } if *discovery_key == rh_dk)));
    });
}

/// An encrypted core opened without its key (as for a remote) gets it from a later session.
#[test]
fn a_later_session_brings_the_encryption_key() {
    block_on(async {
        let (mut s, _) = store(30).await;
        let key = [0x33; 32];
        let h = s
            .get(GetOptions::named("e").with_encryption_key(key))
            .await
            .unwrap();
        s.append(0, &h, &[b"secret"]).await.unwrap();
        let dk = *h.discovery_key();
        s.close_core(h).unwrap();
        let bare = s.get(GetOptions::from_discovery_key(dk)).await.unwrap();
        assert!(s.core(&bare).unwrap().get(0).await.is_err());
        let keyed = s
            .get(GetOptions::named("e").with_encryption_key(key))
            .await
            .unwrap();
        assert_eq!(
            s.core(&bare).unwrap().get(0).await.unwrap().as_deref(),
            Some(&b"secret"[..])
        );
        assert!(s.core(&keyed).unwrap().encrypted());
        let plain = s.get(GetOptions::named("plain")).await.unwrap();
        assert!(matches!(
            s.get(GetOptions::named("plain").with_encryption_key(key))
                .await
                .unwrap_err(),
            CorestoreError::Hypercore(HypercoreError::InvalidArgument(_))
        ));
        let _ = plain;
    });
}

/// A block key used as is (JS `{ block: true }`, an autobase view's key): the stored block is
/// hypercore's default encryption under that key, a session that gives the key reads the
/// plaintext, and a reader core opened by key without encryption switches to it.
#[test]
fn a_block_key_is_used_as_is() {
    use crate::hypercore::encryption::BlockEncryption;
    block_on(async {
        let (mut s, _) = store(31).await;
        let bk = [0x44; 32];
        let h = s
            .get(GetOptions::named("v").with_block_encryption_key(bk))
            .await
            .unwrap();
        s.append(0, &h, &[b"secret"]).await.unwrap();
        let core = s.core(&h).unwrap();
        assert!(core.encrypted());
        let stored = core.get_stored(0).await.unwrap().unwrap();
        assert_eq!(
            stored,
            BlockEncryption::from_block_key(bk).encrypt(0, 0, b"secret")
        );
        assert_eq!(core.get(0).await.unwrap().as_deref(), Some(&b"secret"[..]));

        let (mut r, _) = store(32).await;
        let key = *h.key();
        let rh = r.get(GetOptions::from_key(key)).await.unwrap();
        assert!(!r.core(&rh).unwrap().encrypted());
        let rh2 = r
            .get(GetOptions::from_key(key).with_block_encryption_key(bk))
            .await
            .unwrap();
        assert!(r.core(&rh).unwrap().encrypted());
        let _ = rh2;
    });
}

/// Counts the batches written to a memory storage.
type Counting = crate::storage::Instrumented<MemoryStorage>;

#[test]
fn purge_many_deletes_several_cores_in_one_batch_and_new_ones_are_another_generation() {
    block_on(async {
        let storage = Counting::default();
        let mut s = Corestore::open(storage.clone(), PrimaryKey::Given([4; 32]))
            .await
            .unwrap();
        let a = s.get(GetOptions::named("a")).await.unwrap();
        let b = s.get(GetOptions::named("b")).await.unwrap();
        let keep = s.get(GetOptions::named("keep")).await.unwrap();
        s.append(0, &a, &[b"1"]).await.unwrap();
        s.append(0, &b, &[b"2"]).await.unwrap();
        let (da, db) = (*a.discovery_key(), *b.discovery_key());
        let (ga, gb) = (a.generation(), b.generation());
        assert_ne!(ga, gb);
        assert_eq!(s.open_generation(&da), Some(ga));
        let before = storage.writes();
        // A repeated key and one not stored count once / not at all.
        assert_eq!(s.purge_many(&[da, db, da, [9; 32]]).await.unwrap(), 2);
        assert_eq!(storage.writes(), before + 1, "one batch");
        assert!(!s.has_core(&da).await.unwrap() && !s.has_core(&db).await.unwrap());
        assert!(s.was_purged(ga) && s.was_purged(gb));
        assert!(!s.was_purged(keep.generation()));
        assert_eq!(s.purge_many(&[da, db]).await.unwrap(), 0);
        // Made again under the same key: another generation.
        let a2 = s.get(GetOptions::named("a")).await.unwrap();
        assert_eq!(a2.key(), a.key());
        assert_ne!(a2.generation(), ga);
        assert_eq!(s.open_generation(&da), Some(a2.generation()));
        assert!(!s.was_purged(a2.generation()));
    });
}
