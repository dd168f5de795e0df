//! Drive purge: one storage batch for both cores (a write failing anywhere leaves the whole
//! drive or nothing), what an interrupted purge of an older version left (a db core without its
//! blobs core) refused by the writer and deleted by `purge_stored`, and drive objects held
//! across a purge failing with `Purged` also once the drive is made again.

use super::*;
use crate::core::corestore::PrimaryKey;
use crate::core::hyperblobs::BlobError;
use crate::core::hypercore::HypercoreError;
use crate::core::hyperdrive::PutOptions;
use crate::core::storage::MemoryStorage;

/// A storage whose writes fail once the number allowed succeeded (`allow_writes`: a crash,
/// or a full disk, at that point: a failed write changes nothing, as an atomic batch that did
/// not commit).
type Failing<S = MemoryStorage> = crate::core::storage::Instrumented<S>;

const PK: [u8; 32] = [3; 32];

async fn shared<S: Storage + Clone + 'static>(storage: &Failing<S>) -> SharedCorestore<Failing<S>> {
    SharedCorestore::new(
        Corestore::open(storage.clone(), PrimaryKey::Given(PK))
            .await
            .unwrap(),
    )
}

/// The discovery keys of the drive's db and blobs cores.
fn dks(cores: &DriveCores) -> ([u8; 32], [u8; 32]) {
    (*cores.db.discovery_key(), *cores.blobs.discovery_key())
}

fn purged(e: &DriveError) -> bool {
    matches!(
        e,
        DriveError::Bee(BeeError::Core(HypercoreError::Purged))
            | DriveError::Blob(BlobError::Core(HypercoreError::Purged))
    )
}

#[tokio::test]
async fn a_purge_stopped_at_any_write_leaves_the_whole_drive_or_nothing() {
    let five = vec![5u8; 100_000];
    let mut outcomes = Vec::new();
    for allowed in 0..3 {
        let storage = Failing::new(MemoryStorage::new());
        let store = shared(&storage).await;
        let (drive, cores) = open_local(&store).await.unwrap();
        drive.put("/a", &five, PutOptions::default()).await.unwrap();
        let (db, blobs) = dks(&cores);
        drop(drive);
        storage.allow_writes(allowed);
        let result = cores.purge(&store).await;
        storage.allow_writes(usize::MAX);
        // What a restart finds.
        let store = shared(&storage).await;
        let (has_db, has_blobs) = {
            let g = store.lock().await;
            (
                g.has_core(&db).await.unwrap(),
                g.has_core(&blobs).await.unwrap(),
            )
        };
        assert_eq!(
            has_db, has_blobs,
            "after a purge stopped after {allowed} writes: db stored {has_db}, blobs stored \
             {has_blobs}"
        );
        assert_eq!(result.is_ok(), !has_db, "{allowed}: {result:?}");
        if has_db {
            let (drive, _cores) = open_local(&store).await.unwrap();
            assert_eq!(drive.get("/a").await.unwrap().as_deref(), Some(&five[..]));
        }
        outcomes.push(has_db);
    }
    // The first try's write failed, the next ones committed the whole purge.
    assert_eq!(outcomes, [true, false, false]);
}

#[tokio::test]
async fn a_db_left_without_its_blobs_is_refused_and_purge_stored_deletes_it() {
    let storage = Failing::new(MemoryStorage::new());
    let store = shared(&storage).await;
    let (drive, cores) = open_local(&store).await.unwrap();
    drive
        .put("/a", &[5u8; 100_000], PutOptions::default())
        .await
        .unwrap();
    let key = drive.key().await;
    let (db, blobs) = dks(&cores);
    drop(drive);
    // What an older version's purge killed between its two batches left: the blobs core gone.
    assert!(store.lock().await.purge(&blobs).await.unwrap());
    let store = shared(&storage).await;
    // The writer does not make a new, empty blobs core under the old entries (the reviewer's
    // probe: a later /b would fill the offsets /a points at).
    assert!(matches!(
        open_local(&store).await,
        Err(DriveOpenError::BlobsMissing)
    ));
    assert!(matches!(
        open_remote(&store, key, Duration::ZERO).await,
        Err(DriveOpenError::BlobsMissing)
    ));
    assert!(!store.lock().await.has_core(&blobs).await.unwrap());
    assert!(
        !store.lock().await.is_open(&db),
        "the refused open closed its session"
    );
    assert!(purge_stored(&store, key).await.unwrap());
    assert!(store.lock().await.list().await.unwrap().is_empty());
    assert!(!purge_stored(&store, key).await.unwrap());
    // Made again: empty, and its writes are its own.
    let (drive, _cores) = open_local(&store).await.unwrap();
    assert_eq!(drive.key().await, key);
    drive
        .put("/b", &[9u8; 100_000], PutOptions::default())
        .await
        .unwrap();
    assert_eq!(drive.get("/a").await.unwrap(), None);
    assert_eq!(drive.get("/b").await.unwrap(), Some(vec![9u8; 100_000]));
}

#[tokio::test]
async fn purge_stored_deletes_a_whole_drive_in_one_write() {
    let storage = Failing::new(MemoryStorage::new());
    let store = shared(&storage).await;
    let (drive, _cores) = open_local(&store).await.unwrap();
    drive.put("/a", b"x", PutOptions::default()).await.unwrap();
    let key = drive.key().await;
    storage.allow_writes(1);
    assert!(purge_stored(&store, key).await.unwrap());
    assert!(store.lock().await.list().await.unwrap().is_empty());
    assert!(purged(&drive.get("/a").await.unwrap_err()));
}

#[tokio::test]
async fn drive_objects_held_across_a_purge_keep_failing_after_it_is_made_again() {
    let storage = Failing::new(MemoryStorage::new());
    let store = shared(&storage).await;
    let (stale, cores) = open_local(&store).await.unwrap();
    stale
        .put("/a", b"old", PutOptions::default())
        .await
        .unwrap();
    let checkout = stale.checkout(stale.version().await).await;
    let clone = stale.clone();
    let key = stale.key().await;
    cores.purge(&store).await.unwrap();
    assert!(purged(&stale.get("/a").await.unwrap_err()));
    // Made again under the same key, written to.
    let (fresh, _cores) = open_local(&store).await.unwrap();
    assert_eq!(fresh.key().await, key);
    fresh
        .put("/b", b"new", PutOptions::default())
        .await
        .unwrap();
    for d in [&stale, &clone, &checkout] {
        assert!(purged(&d.get("/b").await.unwrap_err()));
        assert!(purged(&d.get("/a").await.unwrap_err()));
    }
    for d in [&stale, &clone] {
        let e = d
            .put("/c", b"stale", PutOptions::default())
            .await
            .unwrap_err();
        assert!(purged(&e), "{e:?}");
    }
    assert_eq!(fresh.get("/c").await.unwrap(), None);
    assert_eq!(fresh.get("/a").await.unwrap(), None);
    assert_eq!(fresh.get("/b").await.unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(fresh.version().await, 2, "header and /b only");
}

/// The same on the file storage, reopened from disk after each stopped purge.
#[tokio::test]
async fn a_purge_stopped_at_any_write_leaves_the_whole_drive_or_nothing_on_disk() {
    let five = vec![5u8; 100_000];
    let mut outcomes = Vec::new();
    for allowed in 0..3 {
        let tmp = tempfile::tempdir().unwrap();
        let (db, blobs, result) = {
            let storage = Failing::new(crate::FileStorage::open(tmp.path()).unwrap());
            let store = shared(&storage).await;
            let (drive, cores) = open_local(&store).await.unwrap();
            drive.put("/a", &five, PutOptions::default()).await.unwrap();
            drive
                .put("/b", b"small", PutOptions::default())
                .await
                .unwrap();
            let (db, blobs) = dks(&cores);
            drop(drive);
            storage.allow_writes(allowed);
            let result = cores.purge(&store).await;
            store.lock().await.close();
            (db, blobs, result)
        };
        let storage = Failing::new(crate::FileStorage::open(tmp.path()).unwrap());
        let store = shared(&storage).await;
        let (has_db, has_blobs) = {
            let g = store.lock().await;
            (
                g.has_core(&db).await.unwrap(),
                g.has_core(&blobs).await.unwrap(),
            )
        };
        assert_eq!(
            has_db, has_blobs,
            "{allowed}: db {has_db}, blobs {has_blobs}"
        );
        assert_eq!(result.is_ok(), !has_db, "{allowed}: {result:?}");
        if has_db {
            let (drive, _cores) = open_local(&store).await.unwrap();
            assert_eq!(drive.get("/a").await.unwrap().as_deref(), Some(&five[..]));
            assert_eq!(
                drive.get("/b").await.unwrap().as_deref(),
                Some(&b"small"[..])
            );
        } else {
            let g = store.lock().await;
            assert!(g.list().await.unwrap().is_empty());
            // Nothing of either core's data prefix is left.
            let rest = storage
                .inner()
                .scan(
                    &[crate::core::corestore::layout::DATA],
                    &[crate::core::corestore::layout::DATA + 1],
                    None,
                )
                .await
                .unwrap();
            assert!(rest.is_empty(), "{} data keys left", rest.len());
        }
        outcomes.push(has_db);
    }
    assert_eq!(outcomes, [true, false, false]);
}
