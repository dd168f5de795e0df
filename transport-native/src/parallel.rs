//! [`TwoThreads`]: the native [`Join`], which runs the two halves of a big append or batch
//! flush at once (core splits the work; it starts no thread itself, see
//! [`hyperpunch_core::parallel`]).

use std::sync::{Arc, OnceLock};

use hyperpunch_core::parallel::{sequential, Join};

/// [`Join`] on two threads: `b` on a helper thread started for the call, `a` on the caller's.
/// Core calls it only for work of thousands of items (milliseconds), so a thread's start (tens
/// of microseconds) is small beside it. When no thread can be started, `b` runs after `a`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TwoThreads;

impl Join for TwoThreads {
    fn join(&self, a: &mut (dyn FnMut() + Send), b: &mut (dyn FnMut() + Send)) {
        let spawned = std::thread::scope(|s| {
            let helper = std::thread::Builder::new()
                .name("hyperpunch-join".into())
                .spawn_scoped(s, &mut *b);
            let Ok(helper) = helper else {
                return false;
            };
            a();
            if let Err(panic) = helper.join() {
                std::panic::resume_unwind(panic);
            }
            true
        });
        if !spawned {
            a();
            b();
        }
    }
}

/// [`TwoThreads`] where the process may run two threads at once (more than one CPU is
/// available to it), [`hyperpunch_core::parallel::Sequential`] otherwise.
pub fn best_join() -> Arc<dyn Join> {
    static CPUS: OnceLock<usize> = OnceLock::new();
    let cpus = *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if cpus > 1 {
        Arc::new(TwoThreads)
    } else {
        sequential()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_halves_run_and_a_panic_is_passed_on() {
        let mut v = vec![0u64; 1 << 16];
        let (lo, hi) = v.split_at_mut(1 << 15);
        let (mut a, mut b) = (|| lo.fill(1), || hi.fill(2));
        TwoThreads.join(&mut a, &mut b);
        assert!(v[..1 << 15].iter().all(|&x| x == 1));
        assert!(v[1 << 15..].iter().all(|&x| x == 2));
        let r = std::panic::catch_unwind(|| {
            TwoThreads.join(&mut || {}, &mut || panic!("in the helper"));
        });
        assert!(r.is_err());
        // A panic on the caller's thread while the helper still runs: the helper finishes,
        // then the panic is passed on.
        let done = std::sync::atomic::AtomicBool::new(false);
        let r = std::panic::catch_unwind(|| {
            TwoThreads.join(&mut || panic!("on the caller's thread"), &mut || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        });
        assert!(r.is_err());
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// A bee batch of 10k puts flushed with the core and the batch on two threads stores the
    /// same blocks and tree nodes, under the same tree hash, as one on one thread.
    #[test]
    fn a_big_bee_batch_on_two_threads_is_the_same_bytes() {
        use futures_executor::block_on;
        use hyperpunch_core::crypto::KeyPair;
        use hyperpunch_core::hyperbee::Hyperbee;
        use hyperpunch_core::hypercore::{tree, CreateOptions, Hypercore};
        use hyperpunch_core::storage::MemoryStorage;

        let run = |join: Option<Arc<dyn Join>>| {
            block_on(async {
                let mut core = Hypercore::create(
                    MemoryStorage::new(),
                    CreateOptions {
                        key_pair: Some(KeyPair::from_seed(&[7; 32])),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                if let Some(j) = &join {
                    core.set_join(j.clone());
                }
                let session = core.into_session();
                let db = Hyperbee::new(session.clone());
                let mut b = db.batch();
                if let Some(j) = join {
                    b.set_join(j);
                }
                for i in 0..10_000u32 {
                    let k = i.wrapping_mul(2_654_435_761) % 50_000;
                    b.put(&k.to_be_bytes(), &i.to_le_bytes()).await.unwrap();
                }
                b.flush().await.unwrap();
                let core = session.lock().await;
                let length = core.tree().length;
                let mut blocks = Vec::new();
                for i in 0..length {
                    blocks.push(core.get(i).await.unwrap().unwrap());
                }
                let mut nodes = Vec::new();
                for i in 0..2 * length {
                    nodes.push(tree::get_node(core.storage(), i).await.unwrap());
                }
                (core.tree_hash(), blocks, nodes)
            })
        };
        let two = run(Some(Arc::new(TwoThreads)));
        let one = run(None);
        assert_eq!(two.1.len(), 10_001);
        // Every node of a 10,001-leaf tree (all but the few parents of its unfinished spans).
        assert!(two.2.iter().flatten().count() > 2 * 10_001 - 32);
        assert_eq!(two, one);
    }
}
