//! The system view's state (`NM/autobase/lib/system.js`): members, indexers, pending indexers
//! and the DAG heads applied so far, with the same rules as JS for adding and removing writers,
//! acks and head tracking.
//!
//! JS keeps this state in the system core, a hyperbee of [`Member`] records and one [`Info`]
//! record. Here it lives in memory: [`SystemState::flush`] commits a batch the way JS's `flush`
//! writes it and counts the blocks that write appends, so [`SystemState::length`] is the JS
//! system core's length; it also returns the batch itself ([`SystemFlush`]: the member records
//! and the `info` record, in JS's order), which [`super::cores`] writes into the system hyperbee.

use std::collections::BTreeMap;

use super::messages::{Checkout, Info, Member};

/// The system's state at one point of the applied order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemState {
    /// The autobase version.
    pub version: u64,
    /// Active writers.
    pub members: u64,
    /// Indexers added that have not written yet.
    pub pending_indexers: Vec<[u8; 32]>,
    /// The indexers and their applied lengths.
    pub indexers: Vec<Checkout>,
    /// The applied DAG heads.
    pub heads: Vec<Checkout>,
    /// The indexers changed in the batch being applied.
    pub indexer_update: bool,
    db: BTreeMap<[u8; 32], Member>,
    changes: Vec<([u8; 32], Member)>,
    clock_updates: Vec<([u8; 32], u64)>,
    /// The user views in the order of `info.views` (JS `mappedIndex`): view id and length.
    pub views: Vec<(usize, u64)>,
    /// Blocks of the JS system core (header, member records and info records).
    pub length: u64,
}

/// One JS system `flush`: the puts of one hyperbee batch, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemFlush {
    /// The member records put, in order (key: the writer key).
    pub members: Vec<([u8; 32], Member)>,
    /// The `info` record put last; `info.views` holds zero keys, the view ids are in
    /// [`SystemFlush::view_ids`] (the caller knows the view cores' keys).
    pub info: Info,
    /// The view id of each entry of `info.views`.
    pub view_ids: Vec<usize>,
    /// The system core's length after this batch (the bee's header counted in the first).
    pub length: u64,
    /// The batch changed the indexers: once indexed, JS moves every autobase core to a new key
    /// (the new indexers' manifest, with a prologue at this length, see
    /// [`super::cores::prologue`]).
    pub indexers_changed: bool,
}

impl SystemState {
    /// An empty (bootstrapping) system.
    pub fn new() -> Self {
        SystemState {
            version: 1,
            ..Default::default()
        }
    }

    /// The state a system core holds at `length` blocks: its `info` record (the last entry of
    /// every flush) and its member records, as a fast-forward reads them (JS `SystemView` at a
    /// checkout).
    pub fn from_indexed(length: u64, info: &Info, members: &[([u8; 32], Member)]) -> Self {
        SystemState {
            version: info.version,
            members: info.members,
            pending_indexers: info.pending_indexers.clone(),
            indexers: info.indexers.clone(),
            heads: info.heads.clone(),
            indexer_update: false,
            db: members.iter().copied().collect(),
            changes: Vec::new(),
            clock_updates: Vec::new(),
            views: Vec::new(),
            length,
        }
    }

    /// No member yet.
    pub fn bootstrapping(&self) -> bool {
        self.members == 0
    }

    /// The `info` record JS would write now (views not tracked yet).
    pub fn info(&self) -> Info {
        Info {
            version: self.version,
            members: self.members,
            pending_indexers: self.pending_indexers.clone(),
            indexers: self.indexers.clone(),
            heads: self.heads.clone(),
            views: Vec::new(),
            encryption_length: 0,
            entropy: None,
        }
    }

    /// The flushed member records.
    pub fn member_records(&self) -> impl Iterator<Item = (&[u8; 32], &Member)> {
        self.db.iter()
    }

    fn seen_length(&self, key: &[u8; 32]) -> u64 {
        self.clock_updates
            .iter()
            .find(|(k, _)| k == key)
            .map_or(0, |e| e.1)
    }

    /// A writer's record, pending changes first (JS `_get` / `get`).
    pub fn get(&self, key: &[u8; 32]) -> Option<Member> {
        if let Some((_, m)) = self.changes.iter().rev().find(|(k, _)| k == key) {
            return Some(*m);
        }
        self.db.get(key).copied()
    }

    /// JS `addHead`: record that `node` (writer `key`, `length`, linking `actual_heads`) is applied.
    pub fn add_head(&mut self, key: &[u8; 32], length: u64, actual_heads: &[Checkout]) -> bool {
        let h = Checkout { key: *key, length };
        let mut i = 0;
        while i < self.heads.len() {
            let head = self.heads[i];
            if !actual_heads.contains(&head) {
                if head.key != *key {
                    i += 1;
                    continue;
                }
                if head.length > length {
                    return false;
                }
            }
            let popped = self.heads.pop().expect("non-empty");
            if popped != head {
                self.heads[i] = popped;
                continue;
            }
            i += 1;
        }
        self.heads.push(h);
        match self.clock_updates.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = length,
            None => self.clock_updates.push((*key, length)),
        }
        if let Some(i) = self.pending_indexers.iter().position(|k| k == key) {
            self.update_indexer(key, Some(length), true, i);
            return true;
        }
        if let Some(idx) = self.indexers.iter_mut().find(|c| c.key == *key) {
            idx.length = length;
        }
        false
    }

    fn update_indexer(
        &mut self,
        key: &[u8; 32],
        length: Option<u64>,
        is_indexer: bool,
        from: usize,
    ) {
        if !is_indexer {
            if let Some(p) = self.indexers.iter().position(|c| c.key == *key) {
                self.indexer_update = true;
                self.indexers.remove(p);
            }
            return;
        }
        let length = length.unwrap_or(0);
        let mut i = from;
        while i < self.pending_indexers.len() {
            if self.pending_indexers[i] == *key {
                break;
            }
            i += 1;
        }
        if length == 0 {
            if i >= self.pending_indexers.len() {
                self.pending_indexers.push(*key);
            }
            return;
        }
        if i < self.pending_indexers.len() {
            let top = self.pending_indexers.pop().expect("non-empty");
            if i < self.pending_indexers.len() {
                self.pending_indexers[i] = top;
            }
        }
        match self.indexers.iter_mut().find(|c| c.key == *key) {
            Some(idx) => idx.length = length,
            None => {
                self.indexers.push(Checkout { key: *key, length });
                // the bootstrap is added silently so that the first views have no prologue
                if !self.bootstrapping() {
                    self.indexer_update = true;
                }
            }
        }
    }

    /// JS `ack`.
    pub fn ack(&mut self, key: &[u8; 32]) {
        let value = self.get(key);
        let length = self.seen_length(key);
        if matches!(value, Some(v) if v.length == length) {
            return;
        }
        let m = Member {
            is_indexer: value.is_some_and(|v| v.is_indexer),
            is_removed: value.is_none_or(|v| v.is_removed),
            length,
        };
        self.changes.push((*key, m));
    }

    /// JS `add` (host `addWriter`).
    pub fn add(&mut self, key: &[u8; 32], is_indexer: bool) {
        let mut length = self.seen_length(key);
        let value = self.get(key);
        let mut changed = true;
        let (mut was_tracked, mut was_indexer) = (false, false);
        if let Some(v) = value {
            was_tracked = !v.is_removed;
            was_indexer = v.is_indexer;
            if length < v.length {
                length = v.length;
            }
            if v.length == length && v.is_indexer == is_indexer && !v.is_removed {
                changed = false;
            }
        }
        if changed {
            self.changes.push((
                *key,
                Member {
                    is_indexer,
                    is_removed: false,
                    length,
                },
            ));
        }
        if !was_tracked {
            self.members += 1;
        }
        if was_indexer || is_indexer {
            self.update_indexer(key, Some(length), is_indexer, 0);
        }
    }

    /// JS `remove` (host `removeWriter`); whether it was an indexer.
    pub fn remove(&mut self, key: &[u8; 32]) -> bool {
        let is_indexer = self.indexers.iter().any(|c| c.key == *key);
        if is_indexer {
            self.update_indexer(key, None, false, 0);
        }
        let value = self.get(key);
        let changed = value.is_none_or(|v| !v.is_removed);
        let was_tracked = value.is_some_and(|v| !v.is_removed);
        let length = value.map_or(0, |v| v.length);
        if changed {
            self.changes.push((
                *key,
                Member {
                    is_indexer: false,
                    is_removed: true,
                    length,
                },
            ));
        }
        if was_tracked {
            self.members -= 1;
        }
        is_indexer
    }

    /// JS `linkable`: whether the node `key`:`length` is past what the system applied.
    pub fn linkable(&self, key: &[u8; 32], length: u64) -> bool {
        let len = self.seen_length(key);
        if len > 0 {
            return length > len;
        }
        length > self.get(key).map_or(0, |m| m.length)
    }

    /// JS `flush`: commit the batch (member records, then the info record), without recording it.
    pub fn flush(&mut self) {
        self.flush_views(&[], false);
    }

    /// JS `flush(views)`: commit the batch; `view_lengths[id]` is the length of view `id` (its
    /// core's length, tip included, as JS reads `view.core.length`). With `record`, returns the
    /// batch's puts.
    pub fn flush_views(&mut self, view_lengths: &[usize], record: bool) -> Option<SystemFlush> {
        let mut members = Vec::new();
        let indexers_changed = self.indexer_update;
        let mut puts = 0u64;
        if self.length == 0 {
            puts += 1; // the bee's header
        }
        let changes = std::mem::take(&mut self.changes);
        for (key, m) in &changes {
            if self.clock_updates.iter().any(|(k, _)| k == key) {
                continue;
            }
            self.db.insert(*key, *m);
            if record {
                members.push((*key, *m));
            }
            puts += 1;
        }
        let updates = std::mem::take(&mut self.clock_updates);
        for (key, length) in updates {
            let is_indexer = self.indexers.iter().any(|c| c.key == key);
            let info = changes
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|e| e.1)
                .or_else(|| self.db.get(&key).copied());
            let is_removed = info.is_none_or(|m| m.is_removed);
            let m = Member {
                is_indexer,
                is_removed,
                length,
            };
            self.db.insert(key, m);
            if record {
                members.push((key, m));
            }
            puts += 1;
        }
        // JS: every view with a length keeps its slot in `info.views` (its `mappedIndex`), a new
        // one is pushed
        for (id, &len) in view_lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            match self.views.iter_mut().find(|v| v.0 == id) {
                Some(v) => v.1 = len as u64,
                None => self.views.push((id, len as u64)),
            }
        }
        self.length += puts + 1;
        self.indexer_update = false;
        record.then(|| {
            let mut info = self.info();
            info.views = self
                .views
                .iter()
                .map(|&(_, length)| Checkout {
                    key: [0; 32],
                    length,
                })
                .collect();
            SystemFlush {
                members,
                info,
                view_ids: self.views.iter().map(|v| v.0).collect(),
                length: self.length,
                indexers_changed,
            }
        })
    }
}
