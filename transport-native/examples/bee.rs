//! Run: `cargo run -p hyperpunch --example bee` (exits 0 when done).
//!
//! A hyperbee (an append-only B-tree, byte-identical to JS hyperbee) on a hypercore in a folder:
//! put/get/del, a batch, a range read, a sub-database, a checkout of an old version, then the
//! bee reopened from disk.
use hyperpunch::crypto::KeyPair;
use hyperpunch::hyperbee::{Hyperbee, RangeOptions, Utf8};
use hyperpunch::hypercore::{CreateOptions, Hypercore, OpenOptions};
use hyperpunch::FileStorage;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A temporary folder, removed when `dir` is dropped.
    let dir = tempfile::tempdir()?;
    let version;
    {
        let core = Hypercore::create(
            FileStorage::open(dir.path())?,
            CreateOptions {
                key_pair: Some(KeyPair::from_seed(&[1; 32])),
                ..Default::default()
            },
        )
        .await?;
        // The bee runs on a session of the core; keys and values as UTF-8 strings
        // (`Binary` and `Json` are the other codecs).
        let db = Hyperbee::new(core.into_session()).with_codecs(Utf8, Utf8);

        // Single writes: each is one block of the core (block 0 is the bee's header).
        db.put("hello", "world").await?;
        db.put("goodbye", "moon").await?;
        db.del("goodbye").await?;
        let hello = db.get("hello").await?.expect("hello is there");
        println!("get hello   = {:?} (block {})", hello.value, hello.seq);
        println!(
            "get goodbye = {:?}",
            db.get("goodbye").await?.map(|e| e.value)
        );

        // Remember this version for the checkout below.
        version = db.version().await;

        // A batch: its writes are appended together at flush (reads on the batch see them).
        let mut batch = db.batch();
        for (k, v) in [
            ("fruit/apple", "red"),
            ("fruit/banana", "yellow"),
            ("fruit/cherry", "dark red"),
        ] {
            batch.put(k, v).await?;
        }
        batch.del("hello").await?;
        batch.flush().await?;
        println!(
            "after the batch: version {} (was {version})",
            db.version().await
        );

        // A range read: keys in [fruit/a, fruit/c), in order.
        let range = db
            .create_read_stream(RangeOptions {
                gte: Some("fruit/a"),
                lt: Some("fruit/c"),
                ..Default::default()
            })
            .collect()
            .await?;
        for e in &range {
            println!(
                "range       {} = {}",
                e.key,
                e.value.as_deref().unwrap_or("")
            );
        }
        assert_eq!(range.len(), 2);

        // A sub-database: its keys are stored as `users\0<key>`, and it reads only its own.
        let users = db.sub("users");
        users.put("alice", "admin").await?;
        users.put("bob", "guest").await?;
        let names: Vec<String> = users
            .create_read_stream(RangeOptions::default())
            .collect()
            .await?
            .into_iter()
            .map(|e| e.key)
            .collect();
        println!("sub users   {names:?}");
        assert_eq!(names, ["alice", "bob"]);

        // A checkout: the bee as it was at `version`, read-only; `hello` is still there.
        let old = db.checkout(version).await;
        let then = old.get("hello").await?.and_then(|e| e.value);
        println!(
            "checkout {version}: hello = {then:?}, now {:?}",
            db.get("hello").await?.map(|e| e.value)
        );
        assert_eq!(then.as_deref(), Some("world"));
    }

    // Everything is on disk: reopen the core, the bee reads what was written.
    let core = Hypercore::open(FileStorage::open(dir.path())?, OpenOptions::default()).await?;
    let db = Hyperbee::new(core.into_session()).with_codecs(Utf8, Utf8);
    let all = db
        .create_read_stream(RangeOptions::default())
        .collect()
        .await?;
    println!(
        "reopened: version {}, {} entries:",
        db.version().await,
        all.len()
    );
    for e in &all {
        println!("  {:?} = {}", e.key, e.value.as_deref().unwrap_or(""));
    }
    let cherry = db.get("fruit/cherry").await?.and_then(|e| e.value);
    assert_eq!(cherry.as_deref(), Some("dark red"));
    assert_eq!(
        db.sub("users")
            .get("alice")
            .await?
            .and_then(|e| e.value)
            .as_deref(),
        Some("admin")
    );
    Ok(())
}
