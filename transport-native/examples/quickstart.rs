//! Create a hypercore in a folder, append, read back, reopen: `cargo run -p hyperpunch --example quickstart`.
use hyperpunch::crypto::KeyPair;
use hyperpunch::hypercore::{CreateOptions, Hypercore, OpenOptions};
use hyperpunch::FileStorage;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    futures_executor::block_on(async {
        let dir =
            std::env::temp_dir().join(format!("hyperpunch-quickstart-{}", std::process::id()));
        {
            let storage = FileStorage::open(&dir)?;
            let mut core = Hypercore::create(
                storage,
                CreateOptions {
                    key_pair: Some(KeyPair::from_seed(&[1; 32])),
                    ..Default::default()
                },
            )
            .await?;
            core.append(&[b"hello", b"world"]).await?;
            println!("key    {}", hex::encode(core.key()));
            println!("length {}", core.length());
        }
        // Everything is on disk: reopen and read.
        let core = Hypercore::open(FileStorage::open(&dir)?, OpenOptions::default()).await?;
        let block = core.get(1).await?.expect("block 1 is stored");
        println!("block 1 = {}", String::from_utf8_lossy(&block));
        assert_eq!(block, b"world");
        core.verify_all().await?;
        println!("verified");
        drop(core);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    })
}
