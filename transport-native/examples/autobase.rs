//! Run: `cargo run -p hyperpunch --example autobase` (exits 0 when done).
//!
//! Two writers of one autobase in one process: each member keeps its oplog (a hypercore) in a
//! corestore, the sans-IO engine (`hyperpunch::core::autobase`) orders every writer's nodes
//! into one history and a small `Apply` of our own turns them into a view. The bootstrap (the
//! base's creator, its only indexer) adds the second writer, both append, the two stores
//! replicate over an in-memory connection (a TCP socket or a swarm connection works the
//! same), and both end with the same view.
use std::time::Duration;

use hyperpunch::core::autobase::{Apply, ApplyNode, Autobase, Host, Views};
use hyperpunch::corestore::{CoreHandle, Corestore, GetOptions, PrimaryKey};
use hyperpunch::crypto::KeyPair;
use hyperpunch::encoding::Encode;
use hyperpunch::replicate::{replicate, SharedCorestore};
use hyperpunch::storage::MemoryStorage;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The whole example, and each of its waits, is bounded by this.
const T: Duration = Duration::from_secs(30);

/// Our apply (JS `apply(nodes, view, host)`): a node `add <hex key>` makes that key a writer;
/// any other node is a line of text, appended to the view `lines` as `<writer>: <text>`.
/// Apply must be deterministic: every member runs it on the same nodes in the same order.
struct Lines;

impl Apply for Lines {
    fn apply(&mut self, nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
        let view = views.open("lines");
        for node in nodes {
            let text = String::from_utf8_lossy(node.value);
            if let Some(key) = text.strip_prefix("add ") {
                let key = hex::decode(key)
                    .ok()
                    .and_then(|k| <[u8; 32]>::try_from(k).ok());
                if let Some(key) = key {
                    // A writer that is not an indexer (the bootstrap stays the only one).
                    host.add_writer(&key, false);
                }
                continue;
            }
            let from = hex::encode(&node.from[..4]);
            views.append(view, format!("{from}: {text}").into_bytes());
        }
    }
}

/// One member: its store (its own oplog core and the other writers' oplogs), the engine.
struct Member {
    name: &'static str,
    store: SharedCorestore<MemoryStorage>,
    base: Autobase<Lines>,
    /// Our writer key: the key of our oplog core.
    local: [u8; 32],
    local_core: CoreHandle,
    /// Every oplog core the engine reads, ours included.
    oplogs: Vec<([u8; 32], CoreHandle)>,
}

impl Member {
    /// A member whose oplog is its store's core "oplog"; `bootstrap`: the base to join (the
    /// creator's writer key), `None` to create one.
    async fn open(
        name: &'static str,
        seed: u8,
        bootstrap: Option<[u8; 32]>,
    ) -> Result<Member, Error> {
        let mut store =
            Corestore::open(MemoryStorage::new(), PrimaryKey::StoredOrNew([seed; 32])).await?;
        let local_core = store.get(GetOptions::named("oplog")).await?;
        let local = *local_core.key();
        let bootstrap = bootstrap.unwrap_or(local);
        let mut oplogs = vec![(local, store.get(GetOptions::named("oplog")).await?)];
        if bootstrap != local {
            // The creator's oplog: read it from the peers, every block.
            let h = store.get(GetOptions::from_key(bootstrap)).await?;
            store.replicator_mut(&h)?.download(0, 0, None).await?;
            oplogs.push((bootstrap, h));
        }
        let mut base = Autobase::new(bootstrap, Lines);
        base.open_view("lines");
        Ok(Member {
            name,
            store: SharedCorestore::new(store),
            base,
            local,
            local_core,
            oplogs,
        })
    }

    /// Feed the engine the oplog blocks the store holds that it has not seen, open (and
    /// download) the oplogs of writers it learns of, then linearize and apply.
    async fn sync(&mut self) -> Result<(), Error> {
        let mut store = self.store.lock().await;
        let now = self.store.now();
        loop {
            let mut progressed = false;
            for (key, h) in &self.oplogs {
                let core = store.core(h)?;
                while self.base.oplog_len(key) < core.contiguous_length() {
                    let seq = self.base.oplog_len(key);
                    let block = core.get(seq).await?.ok_or("a stored block is missing")?;
                    self.base.handle_block(key, seq, &block)?;
                    progressed = true;
                }
            }
            self.base.update();
            for (key, _length) in self.base.wanted() {
                if !self.oplogs.iter().any(|(k, _)| *k == key) {
                    let h = store.get(GetOptions::from_key(key)).await?;
                    store.replicator_mut(&h)?.download(now, 0, None).await?;
                    self.oplogs.push((key, h));
                    progressed = true;
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Append `values` as one batch (or, with `None`, an indexer's ack when one is due):
    /// the engine gives the oplog messages, we append them to our oplog core.
    async fn write(&mut self, values: Option<Vec<&str>>) -> Result<bool, Error> {
        let msgs = match values {
            Some(v) => self.base.append(
                &self.local,
                v.into_iter().map(|s| s.as_bytes().to_vec()).collect(),
            ),
            None => self.base.ack(&self.local),
        };
        let Some(msgs) = msgs else { return Ok(false) };
        let blocks: Vec<Vec<u8>> = msgs.iter().map(Encode::to_bytes).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        let now = self.store.now();
        self.store
            .lock()
            .await
            .append(now, &self.local_core, &refs)
            .await?;
        self.base.update();
        Ok(true)
    }

    fn view(&mut self) -> Vec<String> {
        let view = self.base.open_view("lines");
        self.base
            .views()
            .blocks(view)
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

/// Sync both members (the bootstrap acks, so that its nodes get indexed) until `done`.
async fn settle(
    a: &mut Member,
    b: &mut Member,
    done: impl Fn(&mut Member, &mut Member) -> bool,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        a.sync().await?;
        b.sync().await?;
        if a.base.is_indexer(&a.local) {
            a.write(None).await?;
        }
        if done(a, b) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the members did not converge in time".into());
        }
        // Wait for a change in either store (blocks arrived), at most 50 ms.
        let (ca, cb) = (a.store.changed().notified(), b.store.changed().notified());
        let _ = tokio::time::timeout(Duration::from_millis(50), async {
            tokio::select! { _ = ca => {}, _ = cb => {} }
        })
        .await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tokio::time::timeout(T, run())
        .await
        .map_err(|_| "timed out")?
}

async fn run() -> Result<(), Error> {
    // The creator's writer key is the base's key (JS `base.key` for a new base).
    let mut alice = Member::open("alice", 1, None).await?;
    let mut bob = Member::open("bob", 2, Some(alice.local)).await?;
    println!("base (alice's oplog) {}", hex::encode(alice.local));
    println!("bob's oplog          {}", hex::encode(bob.local));

    // Replicate the two stores over one in-memory connection: every core either has, the
    // oplogs included.
    let (x, y) = tokio::io::duplex(64 * 1024);
    let (sa, sb) = (alice.store.clone(), bob.store.clone());
    let ra =
        tokio::spawn(async move { replicate(x, true, KeyPair::from_seed(&[11; 32]), &sa).await });
    let rb =
        tokio::spawn(async move { replicate(y, false, KeyPair::from_seed(&[12; 32]), &sb).await });

    // Alice writes and adds Bob; Bob cannot write until he sees that.
    alice.sync().await?;
    let add = format!("add {}", hex::encode(bob.local));
    alice.write(Some(vec!["hello from alice", &add])).await?;
    println!(
        "bob writable before the add arrived: {}",
        bob.base.is_writable(&bob.local)
    );
    settle(&mut alice, &mut bob, |_, b| b.base.is_writable(&b.local)).await?;
    println!("bob writable now: {}", bob.base.is_writable(&bob.local));

    // Both append, concurrently (neither has seen the other's new node yet).
    alice.write(Some(vec!["alice again"])).await?;
    bob.write(Some(vec!["hi, bob here", "and bob again, same batch"]))
        .await?;

    // Replication brings each the other's nodes; both linearize them in the same order.
    settle(&mut alice, &mut bob, |a, b| {
        let (va, vb) = (a.view(), b.view());
        va.len() == 4 && va == vb && a.base.indexed_view_lengths() == b.base.indexed_view_lengths()
    })
    .await?;
    for m in [&mut alice, &mut bob] {
        let view = m.view();
        println!(
            "{}'s view ({} lines, {} indexed):",
            m.name,
            view.len(),
            m.base.indexed_view_lengths()[0]
        );
        for line in view {
            println!("  {line}");
        }
    }
    assert_eq!(alice.view(), bob.view());

    // End the replication on both sides.
    alice.store.end_all().await;
    ra.await??;
    rb.await??;
    Ok(())
}
