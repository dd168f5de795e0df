//! [`Views`]: the views apply writes, each a log of blocks (JS views opened with
//! `store.get(name)`), some run as hyperbees ([`super::bee_view`]).

use std::sync::Arc;

/// The views: append-only logs by name (JS views opened with `store.get(name)`); undo truncates them.
///
/// A view is a log of blocks. Apply appends to it ([`Views::append`], a JS view core's `append`)
/// or runs a hyperbee on it ([`Views::bee`], a JS `new Hyperbee(store.get(name))` view): the
/// bee's blocks are the view's blocks, byte for byte what JS hyperbee writes for the same
/// operations. Readers outside apply read a bee view with [`Views::read_bee`] (or
/// [`super::Autobase::indexed_bee`] at the indexed length).
///
/// After a fast-forward ([`super::Autobase::fast_forward`]) a view starts at the length the system
/// core recorded for it: its first [`Views::start`] blocks are in the view's hypercore (signed
/// by the indexers), not in memory, and [`Views::blocks`] holds only the blocks applied since.
#[derive(Debug, Default)]
pub struct Views {
    pub(super) logs: Vec<ViewLog>,
}

/// One view: its name, the blocks before the ones held (a fast-forward), the blocks held and
/// the bee run on it.
#[derive(Debug, Default)]
pub(super) struct ViewLog {
    pub(super) name: String,
    pub(super) start: usize,
    /// Shared with the snapshots readers hold ([`Views::read_bee`]); copied on write while one
    /// is alive.
    pub(super) blocks: Arc<Vec<Vec<u8>>>,
    /// Bumped by every truncation: a bee's block cache keys blocks by it, so blocks a reorder
    /// undid are never read again from the cache.
    pub(super) fork: u64,
    /// The bee apply runs on this view, made at its first [`Views::bee`] (its block cache
    /// outlives one apply).
    pub(super) bee: Option<super::bee_view::LiveBee>,
}

impl Clone for Views {
    /// An independent copy: the blocks are shared until either side writes; bees (and their
    /// caches) are not shared.
    fn clone(&self) -> Self {
        Views {
            logs: self
                .logs
                .iter()
                .map(|l| ViewLog {
                    name: l.name.clone(),
                    start: l.start,
                    blocks: l.blocks.clone(),
                    fork: l.fork,
                    bee: None,
                })
                .collect(),
        }
    }
}

/// A view's index in [`Views`].
pub type ViewId = usize;

impl Views {
    /// The view called `name`, created empty if new.
    pub fn open(&mut self, name: &str) -> ViewId {
        if let Some(i) = self.logs.iter().position(|l| l.name == name) {
            return i;
        }
        self.logs.push(ViewLog {
            name: name.to_string(),
            ..Default::default()
        });
        self.logs.len() - 1
    }
    /// The view called `name`, if open.
    pub fn find(&self, name: &str) -> Option<ViewId> {
        self.logs.iter().position(|l| l.name == name)
    }
    /// A view's name.
    pub fn name(&self, view: ViewId) -> &str {
        &self.logs[view].name
    }
    /// Append a block to a view.
    pub fn append(&mut self, view: ViewId, value: Vec<u8>) {
        Arc::make_mut(&mut self.logs[view].blocks).push(value);
    }
    /// A view's blocks held in memory: all of them, or after a fast-forward the ones past
    /// [`Views::start`].
    pub fn blocks(&self, view: ViewId) -> &[Vec<u8>] {
        &self.logs[view].blocks
    }
    /// Blocks of the view that are not in memory (in its hypercore): 0 unless fast-forwarded.
    pub fn start(&self, view: ViewId) -> usize {
        self.logs[view].start
    }
    /// A view's length.
    pub fn len(&self, view: ViewId) -> usize {
        self.logs[view]
            .start
            .saturating_add(self.logs[view].blocks.len())
    }
    /// No view.
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }
    pub(super) fn log(&self, view: ViewId) -> &ViewLog {
        &self.logs[view]
    }
    pub(super) fn log_mut(&mut self, view: ViewId) -> &mut ViewLog {
        &mut self.logs[view]
    }
    pub(super) fn lengths(&self) -> Vec<usize> {
        self.logs
            .iter()
            .map(|l| l.start.saturating_add(l.blocks.len()))
            .collect()
    }
    pub(super) fn truncate(&mut self, lengths: &[usize]) {
        for (i, l) in self.logs.iter_mut().enumerate() {
            let keep = lengths.get(i).copied().unwrap_or(0).saturating_sub(l.start);
            if keep < l.blocks.len() {
                Arc::make_mut(&mut l.blocks).truncate(keep);
                l.fork += 1;
            }
        }
    }
    pub(super) fn reset(&mut self, view: ViewId, start: usize) {
        let l = &mut self.logs[view];
        l.start = start;
        l.blocks = Arc::default();
        l.fork += 1;
    }
}
