//! What every driver of the engine does the same way with a member's oplog cores in its
//! [`Corestore`] (the native chat, the page's `Autobase`): feed the engine the blocks the store
//! holds ([`feed_oplogs`]) and decide which ranges to ask peers for ([`Fetches`]). The driver
//! opens the cores (with its own options) and carries out the downloads.

use std::collections::HashMap;

use super::{Apply, Autobase, WantedWriter};
use crate::corestore::{CoreHandle, Corestore, CorestoreError};
use crate::storage::Storage;

/// Feed `engine` every block of `cores` (writer key, open core) that the store holds past what
/// the engine has, each writer's in order, until a block the store lacks. A writer frozen at a
/// bad block is skipped (the engine ignores its blocks: its length would never move). Whether
/// any block was fed.
pub async fn feed_oplogs<S: Storage + Clone, A: Apply>(
    engine: &mut Autobase<A>,
    store: &Corestore<S>,
    cores: &[([u8; 32], CoreHandle)],
) -> Result<bool, CorestoreError> {
    let mut fed = false;
    for (k, h) in cores {
        if engine.frozen_at(k).is_some() {
            continue;
        }
        let core = store.core(h)?;
        let have = core.length();
        loop {
            let seq = engine.oplog_len(k);
            if seq >= have || !core.has(seq) {
                break;
            }
            let Ok(Some(block)) = core.get(seq).await else {
                break;
            };
            if engine.handle_block(k, seq, &block).is_err() {
                break; // a bad block freezes that writer; the base goes on
            }
            fed = true;
        }
    }
    Ok(fed)
}

/// The downloads asked of peers for each writer the engine wants: from the block it needs to
/// the end it gives (`None`: following the core), asked again only when that end moves on.
#[derive(Debug, Default)]
pub struct Fetches {
    asked: HashMap<[u8; 32], Option<u64>>,
}

impl Fetches {
    /// The writers of `wanted` (but `local`) whose download is to be asked now; each is
    /// recorded as asked.
    pub fn due(&mut self, wanted: &[WantedWriter], local: &[u8; 32]) -> Vec<WantedWriter> {
        let mut due = Vec::new();
        for w in wanted {
            if w.key == *local {
                continue;
            }
            match self.asked.get(&w.key) {
                Some(None) => continue,
                Some(Some(end)) if w.until.is_some_and(|u| u <= *end) => continue,
                _ => {}
            }
            self.asked.insert(w.key, w.until);
            due.push(*w);
        }
        due
    }

    /// Forget what was asked (the cores were reopened: ask again).
    pub fn clear(&mut self) {
        self.asked.clear();
    }
}
