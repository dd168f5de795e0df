//! The linearizer (`NM/autobase/lib/linearizer.js`): the DAG's heads and tails, the tip order
//! ([`Topolist`]) and the indexers' [`Consensus`]; [`Linearizer::update`] yields the nodes the
//! indexers confirmed (in their causal order, ties by writer key) and the new tip.

use super::consensus::Consensus;
use super::graph::{Graph, NodeId, WriterId};
use super::messages::Checkout;
use super::topolist::{self, Topolist, Update};
use std::collections::HashSet;

/// Heads, tails, tip and consensus over a [`Graph`].
#[derive(Debug)]
pub struct Linearizer {
    /// Nodes nothing depends on yet.
    pub heads: Vec<NodeId>,
    /// Nodes with no unyielded dependency.
    pub tails: Vec<NodeId>,
    /// The tip's order.
    pub tip: Topolist,
    /// Nodes in the DAG.
    pub size: usize,
    updated: bool,
    /// The consensus.
    pub consensus: Consensus,
    initial_heads: Vec<Checkout>,
}

impl Linearizer {
    /// A linearizer for `indexers`, starting after the DAG `heads` the system already applied
    /// (their writers must be in `g`).
    pub fn new(g: &mut Graph, indexers: Vec<WriterId>, heads: &[Checkout]) -> Self {
        let mut consensus = Consensus::new(indexers);
        for h in heads {
            let w = g.writer_id(&h.key, h.length);
            consensus.removed.set(w, h.length);
        }
        Linearizer {
            heads: Vec::new(),
            tails: Vec::new(),
            tip: Topolist::new(),
            size: 0,
            updated: false,
            consensus,
            initial_heads: heads.to_vec(),
        }
    }

    /// The indexers.
    pub fn indexers(&self) -> &[WriterId] {
        &self.consensus.indexers
    }

    /// The DAG's heads as a new node links them (JS `getHeads`).
    pub fn get_heads(&self, g: &Graph) -> Vec<Checkout> {
        let mut heads = self.initial_heads.clone();
        for &n in &self.heads {
            heads.push(Checkout {
                key: *g.key_of(n),
                length: g.node(n).length,
            });
        }
        heads
    }

    fn has_dependency(g: &Graph, node: NodeId, dep: NodeId) -> bool {
        let d = g.node(dep);
        let key = &g.writers[d.writer].key;
        g.node(node)
            .actual_heads
            .iter()
            .any(|h| &h.key == key && h.length == d.length)
    }

    fn activate(g: &mut Graph, node: NodeId) {
        let deps = std::mem::take(&mut g.node_mut(node).dependencies);
        let mut kept = Vec::with_capacity(deps.len());
        for dep in deps {
            if g.node(dep).yielded {
                continue; // nodes might be yielded during buffering
            }
            let dn = g.node_mut(dep);
            if !dn.dependents.contains(&node) {
                dn.dependents.push(node);
            }
            let clock = g.node(dep).clock.clone();
            g.node_mut(node).clock.add(&clock);
            kept.push(dep);
        }
        let n = g.node_mut(node);
        n.dependencies = kept;
        let (w, len) = (n.writer, n.length);
        if g.writers[w].is_active_indexer {
            g.node_mut(node).clock.set(w, len);
        }
    }

    /// Add a node whose dependencies are all in the DAG (or yielded).
    pub fn add_head(&mut self, g: &mut Graph, node: NodeId) -> NodeId {
        Self::activate(g, node);
        if !self.initial_heads.is_empty() {
            let actual = g.node(node).actual_heads.clone();
            self.initial_heads
                .retain(|ih| !actual.iter().any(|h| h == ih));
        }
        if g.node(node).is_tail() && !self.tails.contains(&node) {
            self.tails.push(node);
        }
        let heads = std::mem::take(&mut self.heads);
        self.heads = heads
            .into_iter()
            .filter(|&h| !Self::has_dependency(g, node, h))
            .collect();
        self.tip.add(g, node);
        if g.writers[g.node(node).writer].is_active_indexer {
            self.consensus.add_head(g, node);
        }
        self.size += 1;
        if !self.heads.contains(&node) {
            self.heads.push(node);
        }
        self.updated = true;
        node
    }

    /// What changed since the last update, if anything: the newly indexed nodes and the tip.
    pub fn update(&mut self, g: &mut Graph) -> Option<Update> {
        if !self.updated {
            return None;
        }
        self.updated = false;
        let mut indexed = Vec::new();
        loop {
            let nodes = self.consensus.shift(g);
            if nodes.is_empty() {
                break;
            }
            self.yield_nodes(g, nodes, &mut indexed);
        }
        Some(self.tip.flush(g, indexed))
    }

    fn yield_nodes(&mut self, g: &mut Graph, mut nodes: Vec<NodeId>, indexed: &mut Vec<NodeId>) {
        let offset = indexed.len();
        let mut tails = Vec::new();
        while let Some(node) = nodes.pop() {
            let n = g.node_mut(node);
            if n.yielding {
                continue;
            }
            n.yielding = true;
            if n.is_tail() {
                tails.push(node);
            }
            nodes.extend_from_slice(&g.node(node).dependencies);
        }
        while let Some(tail) = tails.pop() {
            let batch = self.remove_batch(g, tail);
            let last = *batch.last().expect("a batch has a node");
            for t in batch {
                topolist::add_sorted(g, t, indexed, offset);
            }
            for &dep in &g.node(last).dependents {
                let d = g.node(dep);
                if d.is_tail() && d.yielding {
                    tails.push(dep);
                }
            }
        }
    }

    fn is_future_tail(g: &Graph, node: NodeId) -> bool {
        let n = g.node(node);
        let mut dropped = n.dropped;
        for &dep in &n.dependencies {
            if g.node(dep).yielded {
                continue;
            }
            if dropped == 0 {
                return false;
            }
            dropped -= 1;
        }
        true
    }

    fn remove_node(&mut self, g: &mut Graph, node: NodeId) -> NodeId {
        self.tails.retain(|&t| t != node);
        self.heads.retain(|&h| h != node);
        self.consensus.remove(g, node);
        let dependents = g.node(node).dependents.clone();
        for d in dependents {
            let dn = g.node_mut(d);
            if dn.yielding && dn.dependencies.contains(&node) {
                dn.dropped += 1; // keep links for the indexed batch
            } else {
                dn.dependencies.retain(|&x| x != node);
            }
            if Self::is_future_tail(g, d) && !self.tails.contains(&d) {
                self.tails.push(d);
            }
        }
        g.node_mut(node).yielded = true;
        self.size -= 1;
        if self.heads.is_empty() {
            // a single writer's DAG may drain at once
            let n = g.node(node);
            self.initial_heads.push(Checkout {
                key: g.writers[n.writer].key,
                length: n.length,
            });
        }
        node
    }

    fn remove_batch(&mut self, g: &mut Graph, mut node: NodeId) -> Vec<NodeId> {
        let mut batch = vec![self.remove_node(g, node)];
        while g.node(node).batch != 1 {
            let n = g.node(node);
            if n.dependents.is_empty() {
                // a badly linked batch node: link the writer's next node (JS auto-corrects too)
                let (w, len, b) = (n.writer, n.length, n.batch);
                if let Some(next) = g.writers[w].get(len as i64) {
                    if g.node(next).batch == b - 1 {
                        g.node_mut(node).dependents.push(next);
                    }
                }
            }
            // JS asserts exactly one dependent; a malformed batch ends here instead.
            let Some(&next) = g.node(node).dependents.first() else {
                break;
            };
            if g.node(node).dependents.len() != 1 || g.node(next).yielded {
                break;
            }
            node = next;
            batch.push(self.remove_node(g, node));
        }
        batch
    }

    /// Whether `writer` (the local indexer) should append an ack (JS `shouldAck`).
    pub fn should_ack(&self, g: &Graph, writer: WriterId, pending: bool) -> bool {
        if !g.writers[writer].is_active_indexer {
            return false;
        }
        for &w in self.indexers() {
            if g.writers[w].length != g.writers[w].available {
                return false;
            }
        }
        let mut is_head = false;
        for &h in &self.heads {
            let hw = g.node(h).writer;
            if !g.writers[hw].is_active_indexer {
                return true;
            }
            if hw == writer {
                is_head = true;
            }
        }
        if self.heads.len() == 1 && is_head {
            return false; // never self-ack
        }
        let mut visited = Vec::new();
        let mut value_check = false;
        for &tail in &self.tails {
            if pending || Self::non_null(g, tail, &mut visited) {
                value_check = true;
                break;
            }
        }
        if !value_check {
            return false;
        }
        if self.consensus.should_ack(g, writer) {
            return true;
        }
        self.should_ack_heads(g, writer, pending)
    }

    /// A node with a value is not indexed yet (JS `shouldAck`'s value check over the tails).
    pub fn values_unindexed(&self, g: &Graph) -> bool {
        let mut visited = Vec::new();
        self.tails
            .iter()
            .any(|&t| Self::non_null(g, t, &mut visited))
    }

    /// How many nodes with a value are not indexed yet.
    pub fn values_unindexed_count(&self, g: &Graph) -> u64 {
        let mut visited = HashSet::new();
        let mut stack: Vec<NodeId> = self.tails.clone();
        let mut n = 0;
        while let Some(node) = stack.pop() {
            if !visited.insert(node) {
                continue;
            }
            let d = g.node(node);
            n += u64::from(d.value.is_some());
            stack.extend_from_slice(&d.dependents);
        }
        n
    }

    fn non_null(g: &Graph, target: NodeId, visited: &mut Vec<NodeId>) -> bool {
        let mut stack = vec![target];
        while let Some(node) = stack.pop() {
            if visited.contains(&node) {
                continue;
            }
            let n = g.node(node);
            if n.value.is_some() {
                return true;
            }
            visited.push(node);
            stack.extend_from_slice(&n.dependents);
        }
        false
    }

    fn should_ack_heads(&self, g: &Graph, writer: WriterId, pending: bool) -> bool {
        let prev = g.writers[writer].head();
        for &head in &self.heads {
            if g.node(head).writer == writer {
                continue;
            }
            let mut stack = vec![head];
            let mut visited = Vec::new();
            while let Some(node) = stack.pop() {
                if visited.contains(&node) {
                    continue;
                }
                visited.push(node);
                if pending || g.node(node).value.is_some() {
                    let acks = self.consensus.acks_from_node(g, node, Some(head));
                    let prev_acks = self.consensus.acks_from_node(g, node, prev);
                    if acks.len() > prev_acks.len() {
                        return true;
                    }
                    if acks.iter().any(|a| !prev_acks.contains(a)) {
                        return true;
                    }
                    if !prev_acks.is_empty() && !acks.is_empty() {
                        continue;
                    }
                }
                stack.extend_from_slice(&g.node(node).dependencies);
            }
        }
        false
    }
}
