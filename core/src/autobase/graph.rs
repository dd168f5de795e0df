//! The causal DAG's storage: every node not yet indexed-and-shifted, and every writer the
//! linearizer knows (`NM/autobase/lib/linearizer.js` `Node`, `lib/writer.js`,
//! `lib/node-buffer.js`).
//!
//! JS links node objects to each other; here nodes live in a slab addressed by [`NodeId`] and
//! writers in a vector addressed by [`WriterId`]. Sets of nodes (dependencies, dependents, heads,
//! tails) are small vectors that keep insertion order, because JS iterates its `Set`s in
//! insertion order and the order of iteration decides ties.

use std::collections::{HashMap, VecDeque};

use super::clock::Clock;
use super::messages::Checkout;

/// A writer's index in [`Graph::writers`].
pub type WriterId = usize;

/// A node's slot in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) u32);

/// One DAG node (JS `Linearizer.createNode`).
#[derive(Debug, Clone)]
pub struct DagNode {
    /// Its writer.
    pub writer: WriterId,
    /// Its 1-based index in the writer's oplog.
    pub length: u64,
    /// The value (`None`: an ack).
    pub value: Option<Vec<u8>>,
    /// The heads it links to that are not yet yielded (JS mutates `heads` while loading).
    pub heads: Vec<Checkout>,
    /// The heads as written.
    pub actual_heads: Vec<Checkout>,
    /// Nodes that depend on it.
    pub dependents: Vec<NodeId>,
    /// Nodes it depends on (not yet yielded).
    pub dependencies: Vec<NodeId>,
    /// Position in the list being sorted (topolist scratch).
    pub index: usize,
    /// An optimistic node (batch of one with a value, flagged by its writer).
    pub optimistic: bool,
    /// Nodes left in its batch including itself.
    pub batch: u64,
    /// Dependencies yielded in the same indexed batch (links kept for sorting).
    pub dropped: usize,
    /// What it causally saw (indexer lengths only).
    pub clock: Clock,
    /// Indexed and removed from the DAG.
    pub yielded: bool,
    /// Being indexed.
    pub yielding: bool,
}

impl DagNode {
    /// A node as a writer's oplog holds it.
    pub fn new(
        writer: WriterId,
        length: u64,
        value: Option<Vec<u8>>,
        heads: Vec<Checkout>,
        batch: u64,
        optimistic: bool,
    ) -> Self {
        DagNode {
            writer,
            length,
            optimistic: optimistic && batch == 1 && value.is_some(),
            value,
            actual_heads: heads.clone(),
            heads,
            dependents: Vec::new(),
            dependencies: Vec::new(),
            index: 0,
            batch,
            dropped: 0,
            clock: Clock::new(),
            yielded: false,
            yielding: false,
        }
    }

    /// No dependency left but the ones yielded alongside (JS `isTail`).
    pub fn is_tail(&self) -> bool {
        self.dependencies.len() == self.dropped
    }
}

/// A writer as the linearizer sees it (JS `Writer`, the DAG part).
#[derive(Debug, Clone)]
pub struct WriterState {
    /// Its oplog key.
    pub key: [u8; 32],
    /// Loaded nodes from `offset` on.
    pub nodes: VecDeque<NodeId>,
    /// Nodes before this are indexed and dropped (JS `nodes.offset`, `writer.indexed`).
    pub offset: u64,
    /// Nodes handed to the linearizer.
    pub length: u64,
    /// Nodes loaded whose batch is complete.
    pub available: u64,
    /// Not (or no longer) a writer of the system.
    pub is_removed: bool,
    /// One of the current indexers.
    pub is_active_indexer: bool,
}

impl WriterState {
    /// Nodes loaded, including dropped ones (JS `nodes.length`).
    pub fn loaded(&self) -> u64 {
        self.offset + self.nodes.len() as u64
    }

    /// The loaded node at `seq` (0-based), whether or not it was handed on (JS `nodes.get`).
    pub fn node_at(&self, seq: i64) -> Option<NodeId> {
        if seq < self.offset as i64 {
            return None;
        }
        self.nodes.get((seq as u64 - self.offset) as usize).copied()
    }

    /// The node at `seq` if it was handed to the linearizer (JS `writer.get`).
    pub fn get(&self, seq: i64) -> Option<NodeId> {
        if seq < self.length as i64 {
            self.node_at(seq)
        } else {
            None
        }
    }

    /// The last node handed on (JS `writer.head()`).
    pub fn head(&self) -> Option<NodeId> {
        self.get(self.length as i64 - 1)
    }

    /// Indexed length (JS `writer.indexed`).
    pub fn indexed(&self) -> u64 {
        self.offset
    }
}

/// Nodes and writers.
#[derive(Debug, Default)]
pub struct Graph {
    slots: Vec<Option<DagNode>>,
    free: Vec<u32>,
    /// Every writer, by id.
    pub writers: Vec<WriterState>,
    by_key: HashMap<[u8; 32], WriterId>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Graph::default()
    }

    /// The writer of `key`, created (removed, not an indexer, at `length`) when new.
    pub fn writer_id(&mut self, key: &[u8; 32], length: u64) -> WriterId {
        if let Some(&id) = self.by_key.get(key) {
            return id;
        }
        let id = self.writers.len();
        self.writers.push(WriterState {
            key: *key,
            nodes: VecDeque::new(),
            offset: length,
            length,
            available: length,
            is_removed: true,
            is_active_indexer: false,
        });
        self.by_key.insert(*key, id);
        id
    }

    /// The writer of `key`, if known.
    pub fn find_writer(&self, key: &[u8; 32]) -> Option<WriterId> {
        self.by_key.get(key).copied()
    }

    /// Store a node.
    pub fn insert(&mut self, node: DagNode) -> NodeId {
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = Some(node);
            NodeId(i)
        } else {
            self.slots.push(Some(node));
            NodeId(self.slots.len() as u32 - 1)
        }
    }

    /// Drop a node (after its writer shifted it out, indexed and applied).
    pub fn remove(&mut self, id: NodeId) -> Option<DagNode> {
        let n = self.slots.get_mut(id.0 as usize)?.take();
        if n.is_some() {
            self.free.push(id.0);
        }
        n
    }

    /// A live node.
    pub fn node(&self, id: NodeId) -> &DagNode {
        self.slots[id.0 as usize].as_ref().expect("live DAG node")
    }

    /// A live node, mutably.
    pub fn node_mut(&mut self, id: NodeId) -> &mut DagNode {
        self.slots[id.0 as usize].as_mut().expect("live DAG node")
    }

    /// The node's writer key.
    pub fn key_of(&self, id: NodeId) -> &[u8; 32] {
        &self.writers[self.node(id).writer].key
    }

    /// Nodes stored.
    pub fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}
