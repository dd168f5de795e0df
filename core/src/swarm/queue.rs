//! The connection queue (shuffled-priority-queue as hyperswarm uses it): peers by priority,
//! the highest first, a random one among equals.

use crate::rng::Rng;

/// Queued public keys by priority.
#[derive(Debug, Default)]
pub(crate) struct PeerQueue {
    priorities: Vec<Vec<[u8; 32]>>,
}

impl PeerQueue {
    pub fn len(&self) -> usize {
        self.priorities.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.priorities.iter().all(Vec::is_empty)
    }

    pub fn add(&mut self, key: [u8; 32], priority: u8) {
        let p = usize::from(priority);
        while self.priorities.len() <= p {
            self.priorities.push(Vec::new());
        }
        self.priorities[p].push(key);
    }

    /// A random peer of the highest priority.
    pub fn shift(&mut self, rng: &mut Rng) -> Option<[u8; 32]> {
        let q = self.priorities.iter_mut().rev().find(|q| !q.is_empty())?;
        let i = rng.below(q.len() as u64) as usize;
        Some(q.swap_remove(i))
    }

    pub fn clear(&mut self) {
        self.priorities.clear();
    }
}
