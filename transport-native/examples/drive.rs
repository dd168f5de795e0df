//! Run: `cargo run -p hyperpunch --example drive` (exits 0 when done).
//!
//! A hyperdrive (a file system on two hypercores, byte-identical to JS hyperdrive) in a
//! corestore on disk: files, a symlink, listings, a byte range, a local folder mirrored in, and
//! the diff between two versions.
use hyperpunch::core::mirror_drive::{Mirror, MirrorEvent, MirrorOptions};
use hyperpunch::corestore::{Corestore, PrimaryKey};
use hyperpunch::drive::open_local;
use hyperpunch::hyperblobs::ReadRange;
use hyperpunch::hyperdrive::{ListOptions, PutOptions};
use hyperpunch::localdrive::Localdrive;
use hyperpunch::replicate::SharedCorestore;
use hyperpunch::FileStorage;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Temporary folders, removed when dropped: the store, and a folder to mirror in.
    let store_dir = tempfile::tempdir()?;
    let folder = tempfile::tempdir()?;

    // The drive this store writes (JS `new Hyperdrive(store)`): the store's core "db" and its
    // blobs core. A store with the same primary key gives the same drive key as JS.
    let mut random = [0u8; 32];
    getrandom::fill(&mut random)?;
    let store = Corestore::open(
        FileStorage::open(store_dir.path())?,
        PrimaryKey::StoredOrNew(random),
    )
    .await?;
    let store = SharedCorestore::new(store);
    let (drive, cores) = open_local(&store).await?;
    println!("drive key {}", hex::encode(drive.key().await));

    // Files and a symlink; each write is one entry (one block of the db core).
    drive
        .put("/docs/hello.txt", b"hello, drive", PutOptions::default())
        .await?;
    drive
        .put(
            "/docs/notes/todo.txt",
            b"write examples",
            PutOptions::default(),
        )
        .await?;
    let run = PutOptions {
        executable: true,
        ..Default::default()
    };
    drive
        .put("/bin/run.sh", b"#!/bin/sh\necho hi\n", run)
        .await?;
    drive.symlink("/latest", "/docs/hello.txt", None).await?;
    let v1 = drive.version().await;

    // Listings: every file below a folder (recursive), or the names directly in it.
    for e in drive.list("/", ListOptions::default())?.collect().await? {
        let what = match &e.value.linkname {
            Some(target) => format!("-> {target}"),
            None => format!("{} bytes", e.byte_length()),
        };
        println!("list    {} ({what})", e.key);
    }
    println!("readdir / = {:?}", drive.readdir("/").await?);
    println!("readdir /docs = {:?}", drive.readdir("/docs").await?);

    // Reads: a whole file, a file through a symlink, a byte range.
    let linked = drive
        .entry_follow("/latest")
        .await?
        .expect("the link's target exists");
    println!("/latest -> {}", linked.key);
    let range = drive
        .reader("/docs/hello.txt", ReadRange::start_len(7, 5))
        .await?
        .read_to_end()
        .await?;
    println!(
        "bytes 7..12 of /docs/hello.txt = {:?}",
        String::from_utf8_lossy(&range)
    );
    assert_eq!(range, b"drive");

    // Mirror a folder on disk into /site of the drive (JS mirror-drive with a localdrive):
    // files missing in the drive are added, changed ones copied; with `prune` (the default)
    // what only the drive has below the prefix is removed.
    std::fs::create_dir_all(folder.path().join("site/css"))?;
    std::fs::write(folder.path().join("site/index.html"), "<h1>hi</h1>")?;
    std::fs::write(folder.path().join("site/css/main.css"), "h1 { color: red }")?;
    let local = Localdrive::new(folder.path())?;
    let opts = MirrorOptions {
        prefix: vec!["/site".into()],
        ..Default::default()
    };
    let report = Mirror::new(&local, &drive, opts)
        .run(|e| {
            if let MirrorEvent::Op(op) = e {
                println!("mirror  {:?} {} (+{} bytes)", op.op, op.key, op.bytes_added);
            }
        })
        .await?;
    println!(
        "mirrored: {} added, {} bytes",
        report.count.add, report.bytes_added
    );
    assert_eq!(report.count.add, 2);

    // One more change, then the diff between v1 and now (key order; `left` is now, `right` v1).
    drive.del("/docs/notes/todo.txt").await?;
    println!("diff v{v1} -> v{}:", drive.version().await);
    for d in drive.diff(v1, "/").await?.collect().await? {
        match (&d.left, &d.right) {
            (Some(now), None) => println!("  added   {}", now.key),
            (None, Some(then)) => println!("  removed {}", then.key),
            (Some(now), Some(_)) => println!("  changed {}", now.key),
            (None, None) => {}
        }
    }
    // The old version is still readable.
    let old = drive.checkout(v1).await;
    assert!(old.get("/docs/notes/todo.txt").await?.is_some());
    assert!(drive.get("/docs/notes/todo.txt").await?.is_none());

    // Close the drive's cores (their store sessions) before the folders are removed.
    cores.close(&store).await?;
    Ok(())
}
