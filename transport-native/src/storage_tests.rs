use super::*;
use futures_executor::block_on;
use std::os::unix::fs::FileExt;

#[test]
fn file_backend_passes_conformance() {
    let root = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    block_on(hyperpunch_core::storage::conformance::run_all(|| {
        let dir = root.path().join(
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                .to_string(),
        );
        async move { FileStorage::open(dir).unwrap() }
    }));
}

/// Opens a new store in `dir` with the scratch root set to `root` and, if given, the copy
/// into place failing after `fail_copy_after` files; writes short and long values, reopens
/// it (as normal) and reads them back.
fn create_write_reopen(dir: &Path, root: &Path, fail_copy_after: Option<usize>) {
    create::SCRATCH_ROOT_OVERRIDE.with(|o| *o.borrow_mut() = Some(root.to_path_buf()));
    create::FAIL_COPY_AFTER.with(|f| f.set(fail_copy_after));
    let s = FileStorage::open(dir);
    create::SCRATCH_ROOT_OVERRIDE.with(|o| *o.borrow_mut() = None);
    create::FAIL_COPY_AFTER.with(|f| f.set(None));
    let s = s.unwrap();
    assert!(s.inner.data.is_some(), "a new store has a data file");
    assert!(!dir.join(DB_INCOMPLETE).exists(), "the marker is left");
    let mut b = Batch::new();
    b.put(b"short".to_vec(), b"s".to_vec())
        .put(b"long".to_vec(), vec![9; 70_000]);
    block_on(s.write(b)).unwrap();
    s.sync().unwrap();
    drop(s);
    let s = FileStorage::open(dir).unwrap();
    assert_eq!(block_on(s.get(b"short")).unwrap(), Some(b"s".to_vec()));
    assert_eq!(block_on(s.get(b"long")).unwrap(), Some(vec![9; 70_000]));
}

/// Without a usable scratch folder in memory (none there, or a file in its place), a new
/// store is created in place by fjall, and works.
#[test]
fn new_stores_are_created_in_place_without_a_scratch_root() {
    let root = tempfile::tempdir().unwrap();
    let file_root = root.path().join("a-file");
    std::fs::write(&file_root, b"x").unwrap();
    for (i, scratch) in [root.path().join("missing"), file_root].iter().enumerate() {
        let dir = root.path().join(format!("store{i}"));
        create_write_reopen(&dir, scratch, None);
    }
    assert!(!root.path().join("missing").exists());
}

/// A failure while copying the scratch database into place falls back to creating it in
/// place: the store works, nothing of the partial copy nor the scratch folder remains.
#[test]
fn a_failed_copy_into_place_falls_back_to_creating_in_place() {
    let root = tempfile::tempdir().unwrap();
    let scratch = root.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    for after in [0, 2] {
        let dir = root.path().join(format!("store{after}"));
        create_write_reopen(&dir, &scratch, Some(after));
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    }
    // Through the scratch folder (no failure) the same.
    create_write_reopen(&root.path().join("store"), &scratch, None);
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
}

/// A store as the versions before the data file made it: keyspace [`KEYSPACE`], values in
/// fjall as they are (the same fjall settings those versions used).
fn create_store_without_data_file(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let db = builder(&dir.join(DB_DIR)).open().unwrap();
    db.keyspace(KEYSPACE, keyspace_options).unwrap();
    db.persist(PersistMode::SyncAll).unwrap();
}

#[test]
fn stores_without_data_file_pass_conformance() {
    let root = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    block_on(hyperpunch_core::storage::conformance::run_all(|| {
        let dir = root.path().join(
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                .to_string(),
        );
        create_store_without_data_file(&dir);
        async move {
            let s = FileStorage::open(dir).unwrap();
            assert!(s.inner.data.is_none());
            s
        }
    }));
}

/// A store written by the versions before the data file (raw values in fjall, short and
/// long) opens, reads and takes new writes; it keeps its layout (no data file appears).
#[test]
fn stores_without_data_file_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let long = |i: u8| vec![i; 70_000];
    {
        create_store_without_data_file(dir.path());
        let db = builder(&dir.path().join(DB_DIR)).open().unwrap();
        let ks = db.keyspace(KEYSPACE, keyspace_options).unwrap();
        ks.insert(b"short", b"s").unwrap();
        ks.insert(b"long", long(1)).unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }
    for round in 0..2u8 {
        let s = FileStorage::open(dir.path()).unwrap();
        assert_eq!(block_on(s.get(b"short")).unwrap(), Some(b"s".to_vec()));
        assert_eq!(block_on(s.get(b"long")).unwrap(), Some(long(1)));
        let mut b = Batch::new();
        b.put(vec![b'n', round], long(round + 2));
        block_on(s.write(b)).unwrap();
        s.sync().unwrap();
    }
    let s = FileStorage::open(dir.path()).unwrap();
    assert_eq!(block_on(s.get(b"n\x01")).unwrap(), Some(long(3)));
    assert!(!dir.path().join(DATA_FILE).exists());
}

/// New stores keep long values in the data file; bytes written past the last commit (a
/// write interrupted by a kill) are never referenced and new values go after them; a data
/// file cut short or changed gives errors, not wrong values.
/// Power-loss ordering: fjall syncs its whole journal when its worker flushes a sealed
/// memtable, so whenever that can happen the data file is synced before a batch commits
/// (no reference may reach the disk before its bytes). Filling memtables with inline values
/// while long values go to the data file: after every write during which a memtable was
/// sealed (or got sealed), the data file was synced up to its end.
#[test]
fn the_data_file_is_synced_before_fjall_can_sync_references_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStorage::open(dir.path()).unwrap();
    let (mut checked, mut unsynced_writes) = (0, 0);
    for i in 0..2_000u32 {
        let mut b = Batch::new();
        // ~9 KiB inline (4 KiB x 2 + key) and 16 KiB to the data file per batch.
        b.put(format!("page-a-{i}").into_bytes(), vec![1; 4096])
            .put(format!("page-b-{i}").into_bytes(), vec![2; 4096])
            .put(format!("block-{i}").into_bytes(), vec![3; 16 * 1024]);
        let memtable = s.inner.ks.tree.active_memtable().id();
        block_on(s.write(b)).unwrap();
        let tail = s.inner.write_lock.lock().unwrap();
        // The write that fills the memtable seals it itself (`throttle`), deterministically.
        let sealed_now = s.inner.ks.tree.active_memtable().id() != memtable;
        if sealed_now || s.inner.ks.sealed_memtable_count() > 0 {
            checked += 1;
            assert_eq!(
                tail.synced, tail.end,
                "write {i}: a flush may sync references"
            );
        } else if tail.synced < tail.end {
            unsynced_writes += 1;
        }
    }
    // 2 000 x ~9 KiB of memtable: a seal every ~1 800 writes at 16 MiB.
    assert!(
        checked > 0,
        "no memtable was sealed: the test checks nothing"
    );
    // Most writes do not pay for a sync.
    assert!(unsynced_writes > 1_000, "{unsynced_writes}");
    drop(s);
    // Closing synced everything; a reopen reads it all.
    let s = FileStorage::open(dir.path()).unwrap();
    assert_eq!(
        block_on(s.get(b"block-1999")).unwrap(),
        Some(vec![3; 16 * 1024])
    );
}

#[test]
fn long_values_live_in_the_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(DATA_FILE);
    let long = |i: u8| vec![i; 65_536];
    {
        let s = FileStorage::open(dir.path()).unwrap();
        assert!(s.inner.data.is_some());
        let mut b = Batch::new();
        b.put(b"a".to_vec(), long(1))
            .put(b"b".to_vec(), vec![2; DATA_THRESHOLD - 1])
            .put(b"c".to_vec(), vec![3; DATA_THRESHOLD]);
        block_on(s.write(b)).unwrap();
        s.sync().unwrap();
    }
    let committed = std::fs::metadata(&data).unwrap().len();
    assert_eq!(committed, 65_536 + DATA_THRESHOLD as u64);
    {
        // A 4 KiB value rewritten again and again (a bitfield page) stays in fjall.
        let s = FileStorage::open(dir.path()).unwrap();
        for i in 0..20u8 {
            let mut b = Batch::new();
            b.put(b"page".to_vec(), vec![i; 4096]);
            block_on(s.write(b)).unwrap();
        }
        assert_eq!(block_on(s.get(b"page")).unwrap(), Some(vec![19; 4096]));
        let mut b = Batch::new();
        b.delete(b"page".to_vec());
        block_on(s.write(b)).unwrap();
    }
    assert_eq!(std::fs::metadata(&data).unwrap().len(), committed);
    // What an interrupted write leaves: bytes no committed record points to.
    let mut f = OpenOptions::new().append(true).open(&data).unwrap();
    std::io::Write::write_all(&mut f, &[9u8; 5000]).unwrap();
    drop(f);
    {
        let s = FileStorage::open(dir.path()).unwrap();
        assert_eq!(block_on(s.get(b"a")).unwrap(), Some(long(1)));
        assert_eq!(
            block_on(s.get(b"b")).unwrap(),
            Some(vec![2; DATA_THRESHOLD - 1])
        );
        let mut b = Batch::new();
        b.put(b"d".to_vec(), long(4)).delete(b"c".to_vec());
        block_on(s.write(b)).unwrap();
        assert_eq!(block_on(s.get(b"d")).unwrap(), Some(long(4)));
        assert_eq!(block_on(s.get(b"c")).unwrap(), None);
        assert_eq!(
            block_on(s.scan(b"a", b"z", None)).unwrap(),
            vec![
                (b"a".to_vec(), long(1)),
                (b"b".to_vec(), vec![2; DATA_THRESHOLD - 1]),
                (b"d".to_vec(), long(4)),
            ]
        );
        s.sync().unwrap();
    }
    assert_eq!(
        std::fs::metadata(&data).unwrap().len(),
        committed + 5000 + 65_536
    );
    // A byte of "a" changed: its checksum no longer matches.
    let f = OpenOptions::new().write(true).open(&data).unwrap();
    f.write_all_at(&[0], 10).unwrap();
    drop(f);
    {
        let s = FileStorage::open(dir.path()).unwrap();
        assert!(matches!(
            block_on(s.get(b"a")),
            Err(StorageError::Corrupt(_))
        ));
        assert_eq!(block_on(s.get(b"d")).unwrap(), Some(long(4)));
    }
    // The data file cut before "d" (a power cut that lost its bytes but not the journal).
    let f = OpenOptions::new().write(true).open(&data).unwrap();
    f.set_len(committed + 5000 + 100).unwrap();
    drop(f);
    let s = FileStorage::open(dir.path()).unwrap();
    assert!(matches!(
        block_on(s.get(b"d")),
        Err(StorageError::Corrupt(_))
    ));
    assert!(block_on(s.scan(b"a", b"z", None)).is_err());
    drop(s);
    // Without its data file the store does not open.
    std::fs::remove_file(&data).unwrap();
    assert!(matches!(
        FileStorage::open(dir.path()),
        Err(StorageError::Corrupt(_))
    ));
}

/// A batch of [`BIG_BATCH`] bytes or more puts its values of [`BIG_BATCH_DATA_THRESHOLD`] bytes
/// or more in the data file (the journal gets their references only), shorter ones inline; a
/// smaller batch keeps them all inline. Everything reads back, also after reopening, and a big
/// batch's value overwritten by a small batch reads as the new one.
#[test]
fn a_big_batch_puts_its_values_of_a_kib_or_more_in_the_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(DATA_FILE);
    let value = |i: u32, len: usize| vec![(i % 251) as u8; len];
    let n = (BIG_BATCH / BIG_BATCH_DATA_THRESHOLD) as u32;
    let mut want = BTreeMap::new();
    {
        let s = FileStorage::open_with(dir.path(), compact_at(u64::MAX)).unwrap();
        // Just under BIG_BATCH: every value inline.
        let mut b = Batch::new();
        for i in 0..n - 1 {
            let (k, v) = (
                format!("small{i:05}").into_bytes(),
                value(i, BIG_BATCH_DATA_THRESHOLD),
            );
            b.put(k.clone(), v.clone());
            want.insert(k, v);
        }
        block_on(s.write(b)).unwrap();
        assert_eq!(std::fs::metadata(&data).unwrap().len(), 0);
        let journal = journal_size(dir.path()).0;
        assert!(journal > (n as u64 - 1) * BIG_BATCH_DATA_THRESHOLD as u64);
        // BIG_BATCH and more: the long values in the data file, the short ones inline.
        let mut b = Batch::new();
        for i in 0..n {
            let (k, v) = (
                format!("big{i:05}").into_bytes(),
                value(i, BIG_BATCH_DATA_THRESHOLD + i as usize % 100),
            );
            b.put(k.clone(), v.clone());
            want.insert(k, v);
        }
        let short = value(7, BIG_BATCH_DATA_THRESHOLD - 1);
        b.put(b"short".to_vec(), short.clone());
        want.insert(b"short".to_vec(), short);
        block_on(s.write(b)).unwrap();
        let long: u64 = (0..n)
            .map(|i| (BIG_BATCH_DATA_THRESHOLD + i as usize % 100) as u64)
            .sum();
        assert_eq!(std::fs::metadata(&data).unwrap().len(), long);
        let grew = journal_size(dir.path()).0 - journal;
        assert!(
            grew < 128 * 1024,
            "the journal grew by {grew} bytes for references"
        );
        assert_holds(&s, &want);
        // Overwritten by a small batch: inline, the old bytes left in the data file.
        let mut b = Batch::new();
        b.put(b"big00003".to_vec(), b"inline now".to_vec());
        block_on(s.write(b)).unwrap();
        want.insert(b"big00003".to_vec(), b"inline now".to_vec());
        assert_eq!(std::fs::metadata(&data).unwrap().len(), long);
        assert_holds(&s, &want);
    }
    let s = FileStorage::open_with(dir.path(), compact_at(u64::MAX)).unwrap();
    assert_holds(&s, &want);
}

/// The close of a store that wrote a big batch compacts its journal, though the journal (the
/// references of the values in the data file) is far below `compact_journal_at`; a store that
/// wrote only small batches keeps its small journal.
#[test]
fn a_close_after_a_big_batch_compacts_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = BTreeMap::new();
    let s = FileStorage::open(dir.path()).unwrap();
    let mut b = Batch::new();
    b.put(b"small".to_vec(), b"value".to_vec());
    want.insert(b"small".to_vec(), b"value".to_vec());
    block_on(s.write(b)).unwrap();
    drop(s);
    let (small, files) = journal_size(dir.path());
    assert!(small > 0 && files == 1, "a small batch's journal is kept");
    let s = FileStorage::open(dir.path()).unwrap();
    let mut b = Batch::new();
    for i in 0..(BIG_BATCH / BIG_BATCH_DATA_THRESHOLD) as u32 {
        let (k, v) = (
            format!("big{i:05}").into_bytes(),
            vec![(i % 251) as u8; BIG_BATCH_DATA_THRESHOLD],
        );
        b.put(k.clone(), v.clone());
        want.insert(k, v);
    }
    block_on(s.write(b)).unwrap();
    let (journal, _) = journal_size(dir.path());
    assert!(
        journal < JOURNAL_COMPACT_AT / 4,
        "journal of {journal} bytes"
    );
    drop(s);
    assert_eq!(
        journal_size(dir.path()),
        (0, 1),
        "one empty journal after the close"
    );
    let s = FileStorage::open(dir.path()).unwrap();
    assert_holds(&s, &want);
}

/// Any stored record, however damaged, reads as a value or a typed error, never a panic
/// (nor a huge allocation: a reference past the data file's end is refused before reading).
#[test]
fn damaged_records_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStorage::open(dir.path()).unwrap();
    let mut b = Batch::new();
    b.put(b"a".to_vec(), vec![5u8; 20_000]);
    block_on(s.write(b)).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (next() % 40) as usize;
        let mut r: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(t) = r.first_mut() {
            *t %= 3;
        }
        if r.len() == DATA_REF_LEN && next() % 2 == 0 {
            // A plausible reference: inside the file, or just past it.
            r[0] = TAG_DATA;
            r[1..9].copy_from_slice(&(next() % 20_100).to_le_bytes());
            r[9..13].copy_from_slice(&((next() % 20_100) as u32).to_le_bytes());
        }
        let _ = s.value(&r);
    }
    let mut r = vec![TAG_DATA];
    r.extend_from_slice(&0u64.to_le_bytes());
    r.extend_from_slice(&u32::MAX.to_le_bytes());
    r.extend_from_slice(&0u64.to_le_bytes());
    assert!(matches!(s.value(&r), Err(StorageError::Corrupt(_))));
}

#[test]
fn data_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = FileStorage::open(dir.path()).unwrap();
        let mut b = Batch::new();
        for i in 0u32..500 {
            b.put(i.to_be_bytes().to_vec(), vec![i as u8; 64]);
        }
        block_on(s.write(b)).unwrap();
        let mut b = Batch::new();
        b.delete_range(100u32.to_be_bytes().to_vec(), 200u32.to_be_bytes().to_vec());
        block_on(s.write(b)).unwrap();
    }
    let s = FileStorage::open(dir.path()).unwrap();
    let all = block_on(s.scan(&[], &[0xff; 5], None)).unwrap();
    assert_eq!(all.len(), 400);
    assert_eq!(
        block_on(s.get(&7u32.to_be_bytes())).unwrap(),
        Some(vec![7u8; 64])
    );
    assert_eq!(block_on(s.get(&150u32.to_be_bytes())).unwrap(), None);
    s.sync().unwrap();
}

/// A creation killed half-way (the marker still there, `db` holding whatever fjall had
/// made, here a file where a folder belongs) or a staging folder of an earlier version:
/// the next open starts over with an empty store, and a completed store is kept.
#[test]
fn interrupted_creations_are_redone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(DB_DIR).join("keyspaces")).unwrap();
    std::fs::write(dir.path().join(DB_DIR).join("version"), b"half").unwrap();
    std::fs::write(dir.path().join(DB_INCOMPLETE), b"").unwrap();
    std::fs::create_dir_all(dir.path().join(DB_STAGING_DIR).join("junk")).unwrap();
    {
        let s = FileStorage::open(dir.path()).unwrap();
        assert!(!dir.path().join(DB_INCOMPLETE).exists());
        assert!(!dir.path().join(DB_STAGING_DIR).exists());
        assert_eq!(block_on(s.scan(&[], &[0xff], None)).unwrap(), Vec::new());
        let mut b = Batch::new();
        b.put(b"k".to_vec(), b"v".to_vec());
        block_on(s.write(b)).unwrap();
        s.sync().unwrap();
    }
    let s = FileStorage::open(dir.path()).unwrap();
    assert_eq!(block_on(s.get(b"k")).unwrap(), Some(b"v".to_vec()));
}

#[test]
fn repeated_keys_in_a_batch_keep_the_last_op() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = FileStorage::open(dir.path()).unwrap();
        let mut b = Batch::new();
        b.put(b"a".to_vec(), b"1".to_vec())
            .put(b"b".to_vec(), b"1".to_vec())
            .put(b"a".to_vec(), b"2".to_vec())
            .delete(b"b".to_vec())
            .delete(b"c".to_vec())
            .put(b"c".to_vec(), vec![3; 4096])
            .delete(b"a".to_vec())
            .put(b"a".to_vec(), b"3".to_vec());
        block_on(s.write(b)).unwrap();
        assert_eq!(block_on(s.get(b"a")).unwrap(), Some(b"3".to_vec()));
        assert_eq!(block_on(s.get(b"b")).unwrap(), None);
    }
    let s = FileStorage::open(dir.path()).unwrap();
    assert_eq!(
        block_on(s.scan(b"a", b"z", None)).unwrap(),
        vec![
            (b"a".to_vec(), b"3".to_vec()),
            (b"c".to_vec(), vec![3; 4096])
        ]
    );
}

#[test]
fn second_open_is_refused_while_held() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStorage::open(dir.path()).unwrap();
    match FileStorage::open(dir.path()) {
        Err(StorageError::Unavailable(m)) => assert!(m.contains("in use"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    drop(s);
    FileStorage::open(dir.path()).unwrap();
}

#[test]
fn invalid_keys_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStorage::open(dir.path()).unwrap();
    let mut b = Batch::new();
    b.put(b"ok".to_vec(), b"1".to_vec())
        .put(Vec::new(), b"x".to_vec());
    assert!(matches!(block_on(s.write(b)), Err(StorageError::Io(_))));
    // Nothing of the rejected batch was applied.
    assert_eq!(block_on(s.get(b"ok")).unwrap(), None);
    assert_eq!(block_on(s.get(b"")).unwrap(), None);
    let mut b = Batch::new();
    b.put(vec![1u8; MAX_KEY_LEN + 1], b"x".to_vec());
    assert!(block_on(s.write(b)).is_err());
}

#[test]
fn sync_durability_mode_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStorage::open_with(
        dir.path(),
        FileStorageOptions {
            durability: Durability::Sync,
            ..FileStorageOptions::default()
        },
    )
    .unwrap();
    assert_eq!(s.durability(), Durability::Sync);
    let mut b = Batch::new();
    b.put(b"k".to_vec(), b"v".to_vec());
    block_on(s.write(b)).unwrap();
    assert_eq!(block_on(s.get(b"k")).unwrap(), Some(b"v".to_vec()));
}

#[test]
fn damaged_files_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = FileStorage::open(dir.path()).unwrap();
        for round in 0u32..4 {
            let mut b = Batch::new();
            for i in 0u32..200 {
                b.put((round * 1000 + i).to_be_bytes().to_vec(), vec![0xab; 100]);
            }
            block_on(s.write(b)).unwrap();
        }
    }
    // Flip bytes all over every file of the store, then try to use it.
    let mut files = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(!files.is_empty());
    for f in &files {
        let mut bytes = std::fs::read(f).unwrap();
        for i in (0..bytes.len()).step_by(7) {
            bytes[i] ^= 0x5a;
        }
        std::fs::write(f, bytes).unwrap();
    }
    // Either opening fails cleanly, or reads return data / errors: never a panic.
    if let Ok(s) = FileStorage::open(dir.path()) {
        let _ = block_on(s.scan(&[], &[0xff; 5], None));
        let _ = block_on(s.get(&5u32.to_be_bytes()));
    }
}

/// Options that compact a journal of at least `at` bytes at open.
fn compact_at(at: u64) -> FileStorageOptions {
    FileStorageOptions {
        compact_journal_at: at,
        ..FileStorageOptions::default()
    }
}

/// Total bytes of the store's journal files, and how many there are.
fn journal_size(dir: &Path) -> (u64, usize) {
    let j = journal_files(&dir.join(DB_DIR)).unwrap();
    (j.iter().map(|j| j.len).sum(), j.len())
}

/// Writes `rounds` batches into a store in `dir` opened without compaction: 100 keys overwritten
/// round after round (values of 2000 bytes, each round's different), every 10th round a long
/// value (in the data file) and a delete. Returns what the store must hold.
fn fill_without_compaction(dir: &Path, rounds: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let s = FileStorage::open_with(dir, compact_at(u64::MAX)).unwrap();
    let mut want = BTreeMap::new();
    for r in 0..rounds {
        let mut b = Batch::new();
        for k in 0u32..10 {
            let key = format!("key{:03}", (r * 10 + k) % 100).into_bytes();
            let value = format!("round {r} key {k} ").repeat(120).into_bytes();
            b.put(key.clone(), value.clone());
            want.insert(key, value);
        }
        if r % 10 == 0 {
            let key = format!("long{r}").into_bytes();
            let value = vec![r as u8; 20_000];
            b.put(key.clone(), value.clone());
            want.insert(key, value);
            let gone = format!("key{:03}", (r * 7) % 100).into_bytes();
            b.delete(gone.clone());
            want.remove(&gone);
        }
        block_on(s.write(b)).unwrap();
    }
    want
}

fn assert_holds(s: &FileStorage, want: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let all = block_on(s.scan(&[0], &[0xff], None)).unwrap();
    let want: Vec<_> = want.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(all.len(), want.len());
    assert!(all == want, "the store does not hold what was written");
}

/// Overwrites a key and reads it back, before and after reopening.
fn overwrite_and_check(dir: &Path, want: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
    let s = FileStorage::open_with(dir, compact_at(u64::MAX)).unwrap();
    let mut b = Batch::new();
    b.put(b"key005".to_vec(), b"newest".to_vec());
    block_on(s.write(b)).unwrap();
    want.insert(b"key005".to_vec(), b"newest".to_vec());
    assert_eq!(
        block_on(s.get(b"key005")).unwrap(),
        Some(b"newest".to_vec())
    );
    assert_holds(&s, want);
    drop(s);
    let s = FileStorage::open_with(dir, compact_at(u64::MAX)).unwrap();
    assert_holds(&s, want);
}

/// A journal of at least `compact_journal_at` bytes found at open is moved into tables and
/// replaced by an empty one when the store closes (so later opens do not read it all again);
/// everything written, before and while the store was open, is still there, and later writes
/// are visible over the older values.
#[test]
fn a_big_journal_is_compacted_by_the_next_open_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = fill_without_compaction(dir.path(), 300);
    let (before, _) = journal_size(dir.path());
    assert!(before > 512 * 1024, "journal of {before} bytes");
    // Below the threshold: left as it is.
    let s = FileStorage::open_with(dir.path(), compact_at(before + 1)).unwrap();
    let seqno = s.inner.db.seqno();
    drop(s);
    assert_eq!(journal_size(dir.path()).0, before);
    let s = FileStorage::open_with(dir.path(), compact_at(before)).unwrap();
    assert_holds(&s, &want);
    // Written while the journal's contents are being flushed.
    let mut b = Batch::new();
    b.put(b"key001".to_vec(), b"during".to_vec())
        .put(b"long-during".to_vec(), vec![3; 30_000]);
    block_on(s.write(b)).unwrap();
    want.insert(b"key001".to_vec(), b"during".to_vec());
    want.insert(b"long-during".to_vec(), vec![3; 30_000]);
    assert_holds(&s, &want);
    drop(s);
    assert_eq!(
        journal_size(dir.path()),
        (0, 1),
        "one empty journal after compaction"
    );
    let s = FileStorage::open_with(dir.path(), compact_at(u64::MAX)).unwrap();
    assert_holds(&s, &want);
    // fjall numbers new writes from this: had it started again from 0 (as it does when it finds
    // no journal at all), they would count as older than what the tables hold.
    assert!(
        s.inner.db.seqno() >= seqno,
        "the sequence number is not recovered: {} < {seqno}",
        s.inner.db.seqno()
    );
    drop(s);
    overwrite_and_check(dir.path(), &mut want);
}

/// A close that finds a big journal compacts it, though the open found a small one: the writer
/// of a big batch pays the flush, and the next open reads an empty journal.
#[test]
fn a_close_compacts_the_journal_its_process_made_big() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStorage::open_with(dir.path(), compact_at(256 * 1024)).unwrap();
    let mut want = BTreeMap::new();
    let mut b = Batch::new();
    for i in 0..2000u32 {
        let (k, v) = (
            format!("key{i:05}").into_bytes(),
            vec![(i % 251) as u8; 300],
        );
        b.put(k.clone(), v.clone());
        want.insert(k, v);
    }
    block_on(s.write(b)).unwrap();
    assert!(
        journal_size(dir.path()).0 >= 256 * 1024,
        "the batch made the journal big"
    );
    drop(s);
    assert_eq!(
        journal_size(dir.path()),
        (0, 1),
        "one empty journal after the close"
    );
    let s = FileStorage::open_with(dir.path(), compact_at(u64::MAX)).unwrap();
    assert_holds(&s, &want);
    drop(s);
    overwrite_and_check(dir.path(), &mut want);
}

/// A compaction interrupted after any of its steps (as by a crash: the files as that step left
/// them) leaves a store that opens with everything in it and keeps working; the next open and
/// close compact again.
#[test]
fn an_interrupted_compaction_loses_nothing() {
    for step in [1u8, 3] {
        let dir = tempfile::tempdir().unwrap();
        let mut want = fill_without_compaction(dir.path(), 100);
        COMPACT_STOP_AFTER.with(|s| s.set(Some(step)));
        drop(FileStorage::open_with(dir.path(), compact_at(1)).unwrap());
        COMPACT_STOP_AFTER.with(|s| s.set(None));
        let (bytes, files) = journal_size(dir.path());
        assert!(bytes > 0, "step {step}: the old journal is gone");
        assert_eq!(files, if step == 3 { 2 } else { 1 }, "step {step}");
        {
            let s = FileStorage::open_with(dir.path(), compact_at(u64::MAX)).unwrap();
            assert_holds(&s, &want);
        }
        overwrite_and_check(dir.path(), &mut want);
        drop(FileStorage::open_with(dir.path(), compact_at(1)).unwrap());
        assert_eq!(journal_size(dir.path()), (0, 1), "step {step}");
        let s = FileStorage::open_with(dir.path(), compact_at(u64::MAX)).unwrap();
        assert_holds(&s, &want);
    }
}

/// A clean close leaves the marker that the data file is synced; an open removes it before
/// anything is written (so a process killed while the store is open leaves none, and the next
/// open syncs the data file before fjall's recovery syncs references to it).
#[test]
fn the_data_synced_marker_exists_only_between_a_clean_close_and_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join(DATA_SYNCED);
    let s = FileStorage::open(dir.path()).unwrap();
    assert!(!marker.exists());
    let mut b = Batch::new();
    b.put(b"long".to_vec(), vec![7; 20_000]);
    block_on(s.write(b)).unwrap();
    assert!(!marker.exists());
    drop(s);
    assert!(marker.exists(), "a clean close leaves the marker");
    let s = FileStorage::open(dir.path()).unwrap();
    assert!(!marker.exists(), "an open removes the marker");
    assert_eq!(block_on(s.get(b"long")).unwrap(), Some(vec![7; 20_000]));
    drop(s);
    assert!(marker.exists());
    assert!(FileStorage::FILE_NAMES.contains(&DATA_SYNCED));
}

/// The marker says what the clean close left: a data file written since (by a process that
/// knows no marker) or a marker from an earlier store of the folder does not skip the sync.
#[test]
fn the_data_synced_marker_holds_only_for_the_state_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join(DATA_SYNCED);
    let s = FileStorage::open(dir.path()).unwrap();
    let mut b = Batch::new();
    b.put(b"long".to_vec(), vec![7; 20_000]);
    block_on(s.write(b)).unwrap();
    drop(s);
    let recorded = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(Some(recorded.clone()), synced_state(dir.path()));
    // the data file grows behind the marker's back
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.path().join(DATA_FILE))
        .unwrap();
    std::io::Write::write_all(&mut f, &[1; 100]).unwrap();
    drop(f);
    assert_ne!(Some(recorded), synced_state(dir.path()), "the state moved");
    // a marker left by an earlier store does not survive a new store's creation
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join(DATA_SYNCED), "v1 0 0 0 0\n").unwrap();
    let s = FileStorage::open(other.path()).unwrap();
    assert!(!other.path().join(DATA_SYNCED).exists());
    drop(s);
}

/// `suspend` syncs what was written and holds every later read and write until `resume`;
/// then they go on and the store works as before.
#[test]
fn suspend_syncs_and_holds_reads_and_writes_until_resume() {
    use futures_util::FutureExt;
    let dir = tempfile::tempdir().unwrap();
    let s = FileStorage::open(dir.path()).unwrap();
    let mut b = Batch::new();
    b.put(b"a".to_vec(), b"1".to_vec())
        .put(b"long".to_vec(), vec![7; 50_000]);
    block_on(s.write(b)).unwrap();
    {
        let tail = s.write_lock();
        assert!(tail.synced < tail.end, "the long value is not synced yet");
    }
    s.suspend().unwrap();
    assert!(s.is_suspended());
    {
        let tail = s.write_lock();
        assert_eq!(tail.synced, tail.end, "suspend synced the data file");
    }
    let other = s.clone();
    let mut read = Box::pin(other.get(b"a"));
    let mut scan = Box::pin(other.scan(b"a", b"z", None));
    let mut b = Batch::new();
    b.put(b"b".to_vec(), b"2".to_vec());
    let mut write = Box::pin(other.write(b));
    assert!((&mut read).now_or_never().is_none(), "a read waits");
    assert!((&mut scan).now_or_never().is_none(), "a scan waits");
    assert!((&mut write).now_or_never().is_none(), "a write waits");
    s.suspend().unwrap(); // twice is once
    assert!((&mut write).now_or_never().is_none(), "still waiting");
    s.resume();
    assert!(!s.is_suspended());
    block_on(write).unwrap();
    assert_eq!(block_on(read).unwrap(), Some(b"1".to_vec()));
    // Waiters go on in no particular order: the scan may see the write.
    let keys: Vec<Vec<u8>> = block_on(scan).unwrap().into_iter().map(|e| e.0).collect();
    assert!(keys.contains(&b"a".to_vec()) && keys.contains(&b"long".to_vec()));
    assert_eq!(block_on(s.get(b"b")).unwrap(), Some(b"2".to_vec()));
    assert_eq!(block_on(s.get(b"long")).unwrap(), Some(vec![7; 50_000]));
    s.resume(); // not suspended: nothing
    drop((s, other));
    let s = FileStorage::open(dir.path()).unwrap();
    assert_eq!(block_on(s.get(b"b")).unwrap(), Some(b"2".to_vec()));
}
