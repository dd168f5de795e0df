//! Two corestores, one connection: a store on files writes two named cores, a second store
//! reads both over one secret-stream connection (here an in-memory duplex; a TCP socket works
//! the same): `cargo run -p hyperpunch --example corestore`.
use hyperpunch::corestore::{Corestore, GetOptions, PrimaryKey};
use hyperpunch::crypto::KeyPair;
use hyperpunch::replicate::{replicate, SharedCorestore};
use hyperpunch::storage::MemoryStorage;
use hyperpunch::FileStorage;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("hyperpunch-corestore-{}", std::process::id()));
    let mut random = [0u8; 32];
    getrandom::fill(&mut random)?;
    // The writer: the primary key is drawn once and kept in the store.
    let mut store =
        Corestore::open(FileStorage::open(&dir)?, PrimaryKey::StoredOrNew(random)).await?;
    let db = store.get(GetOptions::named("db")).await?;
    let blobs = store.get(GetOptions::named("blobs")).await?;
    store.append(0, &db, &[b"hello", b"world"]).await?;
    store.append(0, &blobs, &[b"a blob"]).await?;
    println!("db    {}", hex::encode(db.key()));
    println!("blobs {}", hex::encode(blobs.key()));
    let (db_key, blobs_key) = (*db.key(), *blobs.key());
    let writer = SharedCorestore::new(store);

    // The reader opens both by key and wants every block.
    let mut reader =
        Corestore::open(MemoryStorage::new(), PrimaryKey::StoredOrNew([7; 32])).await?;
    let mut handles = Vec::new();
    for key in [db_key, blobs_key] {
        let h = reader.get(GetOptions::from_key(key)).await?;
        reader.replicator_mut(&h)?.download(0, 0, None).await?;
        handles.push(h);
    }
    let (reader, mut events) = SharedCorestore::with_events(reader);

    // One connection carries both cores.
    let (a, b) = tokio::io::duplex(64 * 1024);
    let w = writer.clone();
    let serve =
        tokio::spawn(async move { replicate(a, false, KeyPair::from_seed(&[1; 32]), &w).await });
    let r = reader.clone();
    let fetch =
        tokio::spawn(async move { replicate(b, true, KeyPair::from_seed(&[2; 32]), &r).await });
    loop {
        {
            let g = reader.lock().await;
            if g.core(&handles[0])?.contiguous_length() == 2
                && g.core(&handles[1])?.contiguous_length() == 1
            {
                let block = g.core(&handles[0])?.get(1).await?.expect("downloaded");
                println!(
                    "reader got db block 1 = {}",
                    String::from_utf8_lossy(&block)
                );
                break;
            }
        }
        events.recv().await.ok_or("replication stopped")?;
    }
    reader.end_all().await;
    serve.await??;
    fetch.await??;
    drop(writer);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
