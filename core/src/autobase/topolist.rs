//! The tip's sort (`NM/autobase/lib/topolist.js`): nodes not yet indexed kept in a causal order
//! where concurrent nodes go by writer key (lowest first) and then length, with optimistic
//! nodes moved as late as their links allow. Tracks how much of the previous order survived
//! (`shared`) and how many applied nodes must be undone (`undo`).

use std::cmp::Ordering;

use super::graph::{Graph, NodeId};

/// What [`Topolist::flush`] reports (JS `{ shared, undo, length, indexed, tip }`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// Nodes of the previous order that are still in place.
    pub shared: usize,
    /// Applied nodes to undo before applying from `shared` on.
    pub undo: usize,
    /// `indexed.len() + tip.len()`.
    pub length: usize,
    /// Nodes indexed by this update, in order.
    pub indexed: Vec<NodeId>,
    /// The remaining (unindexed) order.
    pub tip: Vec<NodeId>,
}

impl Update {
    /// The node at position `i` of the whole order (indexed first, then the tip).
    pub fn at(&self, i: usize) -> NodeId {
        if i < self.indexed.len() {
            self.indexed[i]
        } else {
            self.tip[i - self.indexed.len()]
        }
    }
}

/// The tip.
#[derive(Debug, Default, Clone)]
pub struct Topolist {
    /// The current order.
    pub tip: Vec<NodeId>,
    undo: usize,
    shared: usize,
}

impl Topolist {
    /// Empty.
    pub fn new() -> Self {
        Topolist::default()
    }

    fn mark(&mut self) {
        self.shared = self.tip.len();
        self.undo = 0;
    }

    /// Take the nodes just indexed out of the tip and report the change since the last flush.
    pub fn flush(&mut self, g: &mut Graph, indexed: Vec<NodeId>) -> Update {
        if !indexed.is_empty() {
            self.apply_indexed(g, &indexed);
        }
        let u = Update {
            shared: self.shared,
            undo: self.undo,
            length: indexed.len() + self.tip.len(),
            indexed,
            tip: self.tip.clone(),
        };
        self.mark();
        u
    }

    fn apply_indexed(&mut self, g: &mut Graph, nodes: &[NodeId]) {
        let mut shared = 0;
        while shared < nodes.len() {
            if self.tip.get(shared) != Some(&nodes[shared]) {
                break;
            }
            shared += 1;
        }
        if shared < nodes.len() {
            self.track(shared);
        }
        let mut tip = Vec::with_capacity(self.tip.len().saturating_sub(nodes.len()));
        let old = std::mem::take(&mut self.tip);
        for &node in old.iter().skip(shared) {
            if g.node(node).yielded {
                continue;
            }
            let s = add_sorted(g, node, &mut tip, 0);
            if s == tip.len() - 1 {
                continue;
            }
            self.track(shared + s);
        }
        self.tip = tip;
    }

    /// Insert a new node.
    pub fn add(&mut self, g: &mut Graph, node: NodeId) {
        let mut tip = std::mem::take(&mut self.tip);
        let shared = add_sorted(g, node, &mut tip, 0);
        self.tip = tip;
        self.track(shared);
    }

    fn track(&mut self, shared: usize) {
        if shared < self.shared {
            self.undo += self.shared - shared;
            self.shared = shared;
        }
    }
}

/// JS `TopoList.compare`.
pub fn compare(g: &Graph, a: NodeId, b: NodeId) -> Ordering {
    cmp(g, a, b)
}

fn has_optimistic_deps(g: &Graph, node: NodeId) -> bool {
    g.node(node)
        .dependencies
        .iter()
        .any(|&d| g.node(d).optimistic)
}

fn get_optimistic_deps(g: &Graph, node: NodeId, list: &[NodeId]) -> Vec<NodeId> {
    let mut deps: Vec<NodeId> = Vec::new();
    let mut stack = vec![node];
    while let Some(next) = stack.pop() {
        if deps.contains(&next) {
            continue;
        }
        let n = g.node(next);
        if n.optimistic && next != node {
            deps.push(next);
        }
        for &d in &n.dependencies {
            if g.node(d).optimistic {
                stack.push(d);
            }
        }
    }
    let mut result = Vec::new();
    let mut i = list.len();
    while deps.len() != result.len() && i > 0 {
        i -= 1;
        if deps.contains(&list[i]) {
            result.push(list[i]);
        }
    }
    result.reverse();
    result
}

fn add_sorted_optimistic(g: &mut Graph, node: NodeId, list: &mut [NodeId], offset: usize) -> usize {
    let opt = get_optimistic_deps(g, node, list);
    let mut pos = Vec::with_capacity(opt.len());
    for &n in &opt {
        pos.push(g.node(n).index);
        move_down(g, n, list, offset);
    }
    move_down_and_up(g, node, list, offset);
    for &n in opt.iter().rev() {
        move_optimistic_up(g, n, list, offset);
    }
    let mut shared = g.node(node).index;
    for (i, &n) in opt.iter().enumerate() {
        let idx = pos[i];
        let now = g.node(n).index;
        if idx == now {
            continue;
        }
        shared = shared.min(idx).min(now);
    }
    shared
}

/// Insert `node` into `list` (from `offset` on) at its sorted place; returns its index.
pub fn add_sorted(g: &mut Graph, node: NodeId, list: &mut Vec<NodeId>, offset: usize) -> usize {
    list.push(node);
    g.node_mut(node).index = list.len() - 1;
    if has_optimistic_deps(g, node) {
        return add_sorted_optimistic(g, node, list, offset);
    }
    move_down_and_up(g, node, list, offset);
    g.node(node).index
}

fn swap(g: &mut Graph, list: &mut [NodeId], i: usize, j: usize) {
    list.swap(i, j);
    g.node_mut(list[i]).index = i;
    g.node_mut(list[j]).index = j;
}

fn move_down(g: &mut Graph, node: NodeId, list: &mut [NodeId], offset: usize) {
    loop {
        let i = g.node(node).index;
        if i <= offset {
            break;
        }
        let prev = list[i - 1];
        if links(g, node, prev) {
            break;
        }
        swap(g, list, i - 1, i);
    }
}

fn move_optimistic_up(g: &mut Graph, node: NodeId, list: &mut [NodeId], offset: usize) {
    loop {
        let i = g.node(node).index;
        if i + 1 >= list.len() {
            break;
        }
        let next = list[i + 1];
        if links(g, next, node) {
            break;
        }
        swap(g, list, i, i + 1);
    }
    loop {
        let i = g.node(node).index;
        if i <= offset {
            break;
        }
        let prev = list[i - 1];
        if !g.node(prev).optimistic {
            break;
        }
        if cmp(g, prev, node) != Ordering::Greater {
            break;
        }
        swap(g, list, i - 1, i);
    }
}

fn move_non_optimistic_up(g: &mut Graph, node: NodeId, list: &mut [NodeId]) {
    loop {
        let i = g.node(node).index;
        if i + 1 >= list.len() {
            break;
        }
        let next = list[i + 1];
        if cmp_non_optimistic(g, node, next, list) != Ordering::Greater {
            break;
        }
        swap(g, list, i, i + 1);
    }
}

fn move_down_and_up(g: &mut Graph, node: NodeId, list: &mut [NodeId], offset: usize) {
    move_down(g, node, list, offset);
    if g.node(node).optimistic {
        move_optimistic_up(g, node, list, offset);
    } else {
        move_non_optimistic_up(g, node, list);
    }
}

/// `a` links to `b`: `b` is a dependency of `a`, or `a` directly follows `b` in one oplog.
pub fn links(g: &Graph, a: NodeId, b: NodeId) -> bool {
    let (na, nb) = (g.node(a), g.node(b));
    if nb.dependents.contains(&a) {
        return true;
    }
    na.length > 0 && nb.length == na.length - 1 && na.writer == nb.writer
}

fn cmp_non_optimistic(g: &Graph, a: NodeId, b: NodeId, list: &[NodeId]) -> Ordering {
    if !g.node(b).optimistic {
        return cmp(g, a, b);
    }
    for &node in &list[g.node(b).index + 1..] {
        if !g.node(node).optimistic {
            return cmp(g, a, node);
        }
    }
    Ordering::Less
}

fn cmp(g: &Graph, a: NodeId, b: NodeId) -> Ordering {
    if links(g, b, a) {
        Ordering::Less
    } else {
        cmp_unlinked(g, a, b)
    }
}

fn cmp_unlinked(g: &Graph, a: NodeId, b: NodeId) -> Ordering {
    match g.key_of(a).cmp(g.key_of(b)) {
        Ordering::Equal => {
            if g.node(a).length < g.node(b).length {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        c => c,
    }
}
