//! Run: `cargo run -p hyperpunch --example swarm` (exits 0 when done).
//!
//! Find peers by topic with hyperswarm and replicate a hypercore to them: a local DHT testnet
//! on 127.0.0.1 (in this process; never the public bootstrap nodes), a writer that joins its
//! core's discovery key as a server, a reader that knows only the core's key and joins the same
//! topic as a client, finds the writer, connects and downloads every block.
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hyperpunch::corestore::{Corestore, GetOptions, PrimaryKey};
use hyperpunch::dht::{Dht, DhtOptions};
use hyperpunch::replicate::{replicate_connection, ReplicateError, SharedCorestore};
use hyperpunch::storage::MemoryStorage;
use hyperpunch::swarm::{JoinOptions, Swarm, SwarmOptions};
use tokio::task::JoinHandle;

/// Every wait of this example is bounded by this (a busy machine is slow; an idle one takes
/// well under a second for all of it).
const T: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tokio::time::timeout(T, run())
        .await
        .map_err(|_| "timed out")?
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // 1. A local DHT: a bootstrap node on a free port of 127.0.0.1 and three persistent nodes
    //    (JS hyperdht's testnet). In a real deployment the swarms would use the default
    //    bootstrap list (or your own), not nodes of their own.
    let boot = Dht::bootstrap(DhtOptions::bootstrapper(SocketAddrV4::new(
        Ipv4Addr::LOCALHOST,
        0,
    )))
    .await?;
    let port = boot
        .info()
        .server_addr
        .ok_or("the bootstrapper has no server socket")?
        .port();
    let bootstrap = format!("127.0.0.1:{port}");
    let mut testnet = vec![boot];
    for _ in 0..3 {
        let node = Dht::bootstrap(DhtOptions::persistent(
            vec![bootstrap.clone()],
            Ipv4Addr::LOCALHOST,
            0,
        ))
        .await?;
        node.wait_for(|i| !i.ephemeral).await?;
        testnet.push(node);
    }
    println!(
        "local DHT testnet: bootstrap {bootstrap}, {} nodes",
        testnet.len()
    );
    // The options of each swarm's own DHT node: on 127.0.0.1, bootstrapping from the testnet.
    let dht = || DhtOptions {
        ephemeral: Some(true),
        ..DhtOptions::on(
            Ipv4Addr::LOCALHOST,
            &[SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)],
        )
    };

    // 2. The writer: a core in a corestore (in memory here; `FileStorage` on disk).
    let mut store = Corestore::open(MemoryStorage::new(), PrimaryKey::StoredOrNew([1; 32])).await?;
    let log = store.get(GetOptions::named("log")).await?;
    store
        .append(0, &log, &[b"hello", b"from", b"the swarm"])
        .await?;
    let (key, topic) = (*log.key(), *log.discovery_key());
    let writer = SharedCorestore::new(store);
    println!("writer core {}", hex::encode(key));

    // The writer joins the core's discovery key as a server only (it announces itself, and
    // peers that look the topic up dial it); `flushed` waits for the announcement.
    let mut writer_swarm = Swarm::new(SwarmOptions::new(dht())).await?;
    let announced = writer_swarm
        .join(
            topic,
            JoinOptions {
                client: false,
                ..JoinOptions::default()
            },
        )
        .await;
    if !announced.flushed().await {
        return Err("the announcement failed".into());
    }
    println!("writer announced on topic {}", hex::encode(topic));

    // 3. The reader knows only the key: it opens the core by key, wants every block, and joins
    //    the topic as a client only (it looks the topic up and dials who it finds).
    let mut store = Corestore::open(MemoryStorage::new(), PrimaryKey::StoredOrNew([2; 32])).await?;
    let remote = store.get(GetOptions::from_key(key)).await?;
    store.replicator_mut(&remote)?.download(0, 0, None).await?;
    let reader = SharedCorestore::new(store);
    let mut reader_swarm = Swarm::new(SwarmOptions::new(dht())).await?;
    let _lookup = reader_swarm
        .join(
            topic,
            JoinOptions {
                server: false,
                ..JoinOptions::default()
            },
        )
        .await;

    // 4. Each swarm hands out one connection per peer: replicate every core of the store over
    //    it at once (secret-stream and protomux on the DHT's UDX stream, as JS
    //    `swarm.on('connection', conn => store.replicate(conn))`).
    let (serving, fetching) = tokio::join!(
        serve(&mut writer_swarm, writer.clone(), "writer"),
        serve(&mut reader_swarm, reader.clone(), "reader")
    );
    let (serving, fetching) = (serving?, fetching?);

    // 5. Wait until the reader holds all three blocks (woken by each change of the store).
    let done = reader
        .wait_until(tokio::time::Instant::now() + T, |store| {
            Ok::<_, Box<dyn std::error::Error>>(
                (store.core(&remote)?.contiguous_length() == 3).then_some(()),
            )
        })
        .await?;
    done.ok_or("not downloaded in time")?;
    {
        let g = reader.lock().await;
        let core = g.core(&remote)?;
        core.verify_all().await?;
        for i in 0..core.length() {
            let block = core.get(i).await?.expect("downloaded");
            println!("reader block {i} = {}", String::from_utf8_lossy(&block));
        }
    }

    // 6. Clean up: end the replication (both sides), leave and stop the swarms, stop the DHT.
    reader.end_all().await;
    serving.await??;
    fetching.await??;
    reader_swarm.destroy().await;
    writer_swarm.destroy().await;
    for node in testnet {
        node.destroy().await;
    }
    println!("done");
    Ok(())
}

/// Takes the next connection `swarm` hands out and replicates every core of `store` over it
/// in a task of its own (the task ends when the connection closes).
///
/// Start each connection as soon as it comes (as a JS `swarm.on('connection')` handler does):
/// the listening side hands its end out when the first packet of the dialing side arrives (JS
/// hyperdht's `onsocket`), so a dialed connection held unstarted may never show up there.
async fn serve(
    swarm: &mut Swarm,
    store: SharedCorestore<MemoryStorage>,
    who: &str,
) -> Result<JoinHandle<Result<(), ReplicateError>>, &'static str> {
    let conn = swarm.accept().await.ok_or("the swarm stopped")?;
    println!(
        "{who}: connected to {} (we dialed: {})",
        hex::encode(&conn.remote_public_key()[..8]),
        conn.is_client()
    );
    Ok(tokio::spawn(async move {
        replicate_connection(conn.into_raw(), &store).await
    }))
}
