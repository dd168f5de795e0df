//! The indexers' consensus (`NM/autobase/lib/consensus.js`): which nodes a majority of the
//! indexers confirmed, decided from the vector clocks of the indexers' own nodes, so that every
//! peer holding the same DAG indexes the same nodes in the same order.

use super::clock::Clock;
use super::graph::{Graph, NodeId, WriterId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirm {
    Unseen,
    Newer,
    Acked,
}

/// The consensus state over a fixed set of indexers.
#[derive(Debug, Clone)]
pub struct Consensus {
    merges: Vec<NodeId>,
    /// Indexers needed for a majority.
    pub majority: usize,
    /// The indexers, in system order.
    pub indexers: Vec<WriterId>,
    /// What is indexed already, per writer.
    pub removed: Clock,
    updated: bool,
}

impl Consensus {
    /// Consensus among `indexers`.
    pub fn new(indexers: Vec<WriterId>) -> Self {
        Consensus {
            merges: Vec::new(),
            majority: (indexers.len() >> 1) + 1,
            indexers,
            removed: Clock::new(),
            updated: false,
        }
    }

    fn is_indexer(&self, w: WriterId) -> bool {
        self.indexers.contains(&w)
    }

    /// A new head from an active indexer.
    pub fn add_head(&mut self, g: &Graph, node: NodeId) {
        if !g.writers[g.node(node).writer].is_active_indexer {
            return;
        }
        if self.is_merge(g, node) && !self.merges.contains(&node) {
            self.merges.push(node);
        }
        self.updated = true;
    }

    fn includes(g: &Graph, clock_of: NodeId, target: NodeId) -> bool {
        let t = g.node(target);
        g.node(clock_of).clock.includes(t.writer, t.length)
    }

    fn tails_of(&self, g: &Graph, node: NodeId, tails: &[NodeId]) -> Vec<NodeId> {
        tails
            .iter()
            .copied()
            .filter(|&t| Self::includes(g, node, t))
            .collect()
    }

    fn tails_and_merges(&self, g: &Graph, node: NodeId, tails: &[NodeId]) -> Vec<NodeId> {
        let mut all = self.tails_of(g, node, tails);
        for &m in &self.merges {
            if m != node && Self::includes(g, node, m) && !all.contains(&m) {
                all.push(m);
            }
        }
        all
    }

    fn is_merge(&self, g: &Graph, node: NodeId) -> bool {
        let n = g.node(node);
        if !g.writers[n.writer].is_active_indexer {
            return false;
        }
        let mut deps: Vec<NodeId> = Vec::new();
        for &idx in &self.indexers {
            let mut seq = n.clock.get(idx) as i64 - 1;
            if idx == n.writer {
                seq -= 1;
            }
            let Some(head) = g.writers[idx].get(seq) else {
                continue;
            };
            let h = g.node(head);
            if self.removed.includes(h.writer, h.length) {
                continue;
            }
            let mut is_dep = true;
            let mut i = 0;
            while i < deps.len() {
                let d = deps[i];
                if d == head {
                    i += 1;
                    continue;
                }
                if Self::includes(g, d, head) {
                    is_dep = false;
                    break;
                }
                if Self::includes(g, head, d) {
                    let popped = deps.pop().expect("non-empty");
                    if d == popped {
                        i += 1;
                        continue;
                    }
                    deps[i] = popped;
                    continue; // JS `i--` then the loop's `i++`
                }
                i += 1;
            }
            if is_dep {
                deps.push(head);
            }
        }
        deps.len() > 1
    }

    fn indexer_tails(&self, g: &Graph) -> Vec<NodeId> {
        let mut tails: Vec<NodeId> = Vec::new();
        for &idx in &self.indexers {
            let w = &g.writers[idx];
            let length = if self.removed.has(idx) {
                self.removed.get(idx)
            } else {
                w.indexed()
            };
            let Some(head) = w.get(length as i64) else {
                continue;
            };
            let h = g.node(head);
            if self.removed.includes(h.writer, h.length) {
                continue;
            }
            let mut is_tail = true;
            let mut k = 0;
            while k < tails.len() {
                let t = tails[k];
                if Self::includes(g, head, t) {
                    is_tail = false;
                    break;
                }
                if Self::includes(g, t, head) {
                    tails.remove(k);
                    continue;
                }
                k += 1;
            }
            if is_tail {
                tails.push(head);
            }
        }
        tails
    }

    /// `parent` is strictly newer than `object`: for every node in `parent`'s view, either it
    /// sees `object` or `object` sees it.
    fn strictly_newer(&self, g: &Graph, object: NodeId, parent: NodeId) -> bool {
        let o = g.node(object);
        let p = g.node(parent);
        if !p.clock.includes(o.writer, o.length) {
            return false;
        }
        for (key, latest) in p.clock.iter() {
            let oldest = self.removed.get(key);
            if latest <= oldest {
                continue;
            }
            let mut length = o.clock.get(key);
            if length <= oldest {
                length = oldest;
            }
            if latest < length {
                return false;
            }
            if latest == length {
                continue;
            }
            let next = if self.is_indexer(key) {
                let w = &g.writers[key];
                w.get(if length >= w.indexed() {
                    length
                } else {
                    w.indexed()
                } as i64)
            } else {
                None
            };
            let Some(next) = next else { continue };
            if Self::includes(g, next, object) {
                continue;
            }
            if latest < g.node(next).length {
                continue;
            }
            return false;
        }
        true
    }

    fn acks(&self, g: &Graph, target: NodeId) -> Vec<NodeId> {
        let t = g.node(target);
        let mut acks = if g.writers[t.writer].is_active_indexer {
            vec![target]
        } else {
            vec![]
        };
        for &idx in &self.indexers {
            if idx == t.writer {
                continue;
            }
            let w = &g.writers[idx];
            let mut next = t.clock.get(idx);
            if next < w.offset {
                next = w.offset;
            }
            let Some(nin) = w.get(if next >= w.indexed() {
                next
            } else {
                w.indexed()
            } as i64) else {
                continue;
            };
            if !Self::includes(g, nin, target) {
                continue;
            }
            if !self.strictly_newer(g, target, nin) {
                continue;
            }
            acks.push(nin);
        }
        acks
    }

    /// The indexers whose acks of `target` the node `view` saw (JS `acksFromNode`).
    pub fn acks_from_node(&self, g: &Graph, target: NodeId, view: Option<NodeId>) -> Vec<WriterId> {
        let mut acks = Vec::new();
        let Some(view) = view else { return acks };
        if !Self::includes(g, view, target) {
            return acks;
        }
        let v = g.node(view);
        acks.push(v.writer);
        let t = g.node(target);
        for &idx in &self.indexers {
            if idx == v.writer {
                continue;
            }
            let length = v.clock.get(idx);
            if length == 0 {
                continue;
            }
            if t.clock.includes(idx, length) {
                continue;
            }
            let Some(head) = g.writers[idx].get(length as i64 - 1) else {
                continue;
            };
            if Self::includes(g, head, target) && !acks.contains(&idx) {
                acks.push(idx);
            }
        }
        acks
    }

    fn acked_at(&self, g: &Graph, acks: &[NodeId], parent: NodeId) -> bool {
        let mut seen = 0;
        let mut missing = acks.len();
        for &node in acks {
            missing -= 1;
            if !Self::includes(g, parent, node) {
                if seen + missing < self.majority {
                    return false;
                }
                continue;
            }
            seen += 1;
            if seen >= self.majority {
                return true;
            }
        }
        false
    }

    fn confirms(
        &self,
        g: &Graph,
        indexer: WriterId,
        target: NodeId,
        acks: &[NodeId],
        length: u64,
    ) -> Confirm {
        if length == 0 || self.removed.get(indexer) >= length {
            return Confirm::Unseen;
        }
        let w = &g.writers[indexer];
        let mut jump = true;
        let mut newer = true;
        let mut i = length as i64 - 1;
        while i >= 0 {
            let Some(head) = w.get(i) else {
                return Confirm::Unseen;
            };
            let mut seen = 0;
            for &node in acks {
                if !Self::includes(g, head, node) {
                    continue;
                }
                seen += 1;
                if seen >= self.majority {
                    break;
                }
            }
            if !newer && seen < self.majority {
                break;
            }
            if !self.strictly_newer(g, target, head) {
                if jump {
                    jump = false;
                    let mut t = length as i64 - 1;
                    let mut b: i64 = 0;
                    while t > b {
                        let mid = (t + b) >> 1;
                        let node = w.get(mid);
                        let go_up = match node {
                            None => true,
                            Some(n) => {
                                !Self::includes(g, n, target) || self.strictly_newer(g, target, n)
                            }
                        };
                        if go_up {
                            b = mid + 1;
                        } else {
                            t = mid - 1;
                        }
                    }
                    if b + 1 < i {
                        i = b + 2;
                    }
                }
                newer = false;
                i -= 1;
                continue;
            } else if seen < self.majority {
                return Confirm::Newer;
            }
            return Confirm::Acked;
        }
        Confirm::Unseen
    }

    fn is_confirmed(&self, g: &Graph, target: NodeId, parent: Option<NodeId>) -> bool {
        let acks = self.acks(g, target);
        if acks.len() < self.majority {
            return false;
        }
        let mut confs: Vec<WriterId> = Vec::new();
        let mut all_newer = true;
        for &indexer in &self.indexers {
            let length = match parent {
                Some(p) => {
                    let pn = g.node(p);
                    if pn.writer == indexer {
                        pn.length - 1
                    } else {
                        pn.clock.get(indexer)
                    }
                }
                None => g.writers[indexer].length,
            };
            let result = self.confirms(g, indexer, target, &acks, length);
            if result == Confirm::Acked {
                if !confs.contains(&indexer) {
                    confs.push(indexer);
                }
                if confs.len() >= self.majority {
                    return true;
                }
            }
            if result == Confirm::Unseen {
                all_newer = false;
            }
        }
        if let Some(p) = parent {
            return self.is_confirmable_at(g, target, p, &acks, &confs);
        }
        all_newer
    }

    fn is_confirmable_at(
        &self,
        g: &Graph,
        target: NodeId,
        parent: NodeId,
        acks: &[NodeId],
        confs: &[WriterId],
    ) -> bool {
        if !self.acked_at(g, acks, parent) {
            return false;
        }
        let mut potential = confs.len();
        for &indexer in &self.indexers {
            if confs.contains(&indexer) {
                continue;
            }
            let length = g.node(parent).clock.get(indexer);
            let is_seen = g.node(target).clock.includes(indexer, length);
            if !is_seen {
                if let Some(head) = g.writers[indexer].get(length as i64 - 1) {
                    let h = g.node(head);
                    if !self.removed.includes(h.writer, h.length)
                        && !self.strictly_newer(g, target, head)
                    {
                        continue;
                    }
                }
            }
            potential += 1;
            if potential >= self.majority {
                return true;
            }
        }
        false
    }

    /// A node was indexed (may be called more than once for a node).
    pub fn remove(&mut self, g: &Graph, node: NodeId) -> NodeId {
        self.merges.retain(|&m| m != node);
        let n = g.node(node);
        self.removed.set(n.writer, n.length);
        node
    }

    /// The next confirmed nodes, or none.
    pub fn shift(&mut self, g: &Graph) -> Vec<NodeId> {
        if !self.updated {
            return Vec::new();
        }
        let tails = self.indexer_tails(g);
        for &tail in &tails {
            if self.is_confirmed(g, tail, None) {
                return vec![self.remove(g, tail)];
            }
        }
        let merges = self.merges.clone();
        for merge in merges {
            if self.is_confirmed(g, merge, None) {
                return self.yield_next(g, merge, &tails);
            }
        }
        self.updated = false;
        Vec::new()
    }

    fn yield_next(&mut self, g: &Graph, mut node: NodeId, tails: &[NodeId]) -> Vec<NodeId> {
        while !tails.contains(&node) {
            let mut next = None;
            for t in self.tails_and_merges(g, node, tails) {
                if self.is_confirmed(g, t, Some(node)) {
                    next = Some(t);
                    break;
                }
            }
            if let Some(n) = next {
                node = n;
                continue;
            }
            let mut out = Vec::new();
            for t in self.tails_of(g, node, tails) {
                out.push(self.remove(g, t));
            }
            return out;
        }
        vec![self.remove(g, node)]
    }

    /// A one-line account of the indexer tails and their acks (debugging).
    pub fn explain(&self, g: &Graph) -> String {
        let mut out = format!(
            "majority {} indexers {:?} updated {} merges {}; ",
            self.majority,
            self.indexers,
            self.updated,
            self.merges.len()
        );
        for t in self.indexer_tails(g) {
            let n = g.node(t);
            let acks = self.acks(g, t);
            out += &format!(
                "tail w{}:{} clock {:?} acks {:?} confirmed {}; ",
                n.writer,
                n.length,
                n.clock.iter().collect::<Vec<_>>(),
                acks.iter()
                    .map(|&a| (g.node(a).writer, g.node(a).length))
                    .collect::<Vec<_>>(),
                self.is_confirmed(g, t, None)
            );
        }
        for &m in self.merges.iter().take(3) {
            let n = g.node(m);
            let acks = self.acks(g, m);
            let conf: Vec<_> = self
                .indexers
                .iter()
                .map(|&ix| self.confirms(g, ix, m, &acks, g.writers[ix].length))
                .collect();
            out += &format!(
                "merge w{}:{} clock {:?} acks {:?} confirms {:?}; ",
                n.writer,
                n.length,
                n.clock.iter().collect::<Vec<_>>(),
                acks.iter()
                    .map(|&a| (g.node(a).writer, g.node(a).length))
                    .collect::<Vec<_>>(),
                conf
            );
        }
        for &i in &self.indexers {
            let w = &g.writers[i];
            out += &format!(
                "w{i} offset {} length {} removed {}; ",
                w.offset,
                w.length,
                self.removed.get(i)
            );
        }
        out
    }

    /// Whether `writer` (an indexer) should ack to move consensus along (JS `shouldAck`).
    pub fn should_ack(&self, g: &Graph, writer: WriterId) -> bool {
        for t in self.indexer_tails(g) {
            if g.node(t).writer == writer {
                continue;
            }
            if self.should_ack_node(g, t, writer) {
                return true;
            }
        }
        false
    }

    fn should_ack_node(&self, g: &Graph, target: NodeId, writer: WriterId) -> bool {
        let w = &g.writers[writer];
        let head = w.head();
        let next = g.node(target).clock.get(writer);
        let nin = w.get(if next >= w.indexed() {
            next
        } else {
            w.indexed()
        } as i64);
        if nin.is_none() && writer != g.node(target).writer {
            return true;
        }
        if let Some(nin) = nin {
            if !Self::includes(g, nin, target) {
                return match head {
                    Some(h) => !Self::includes(g, h, target),
                    None => true,
                };
            }
            if !self.strictly_newer(g, target, nin) {
                return false;
            }
        }
        let acks = self.acks(g, target);
        if acks.len() >= self.majority {
            return self.confirms(g, writer, target, &acks, w.length) == Confirm::Unseen;
        }
        false
    }
}
