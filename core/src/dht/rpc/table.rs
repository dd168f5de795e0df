//! The routing table: kademlia-routing-table 1.0.6 plus dht-rpc's time-ordered node list.
//!
//! 256 rows, row `i` holding up to k = 20 nodes whose id first differs from ours at bit `i`
//! (MSB first), each row sorted by id. [`Table::closest`] walks rows `d, d-1, …, 0` and then
//! `d+1, …` taking nodes in row order, as JS does (not a strict XOR sort; queries re-sort).
//!
//! dht-rpc also keeps every table node in a *time-ordered set* (`this.nodes`, time-ordered-set):
//! moved to the "latest" end whenever the node is heard from; health pings walk it from the
//! oldest end. Here both live in one slab, so a node is in the table exactly when it is in the
//! list, and the whole structure is bounded by 256 × k nodes.

use core::net::SocketAddrV4;

use super::messages::NodeId;

/// Nodes per row (`k`).
pub const K: usize = 20;
/// Rows: one per bit of an id.
pub const ROWS: usize = 256;

/// A node in the routing table, with dht-rpc's bookkeeping (ticks are the node's 5-second
/// tick counter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNode {
    /// `H(ipv4Address)` of its address.
    pub id: NodeId,
    /// Its address.
    pub addr: SocketAddrV4,
    /// Our address as this node saw us (its `to` field), if it told us.
    pub to: Option<SocketAddrV4>,
    /// Tick of the last NAT sample taken from it (0: never).
    pub sampled: u64,
    /// Tick it was added.
    pub added: u64,
    /// Tick of the last interaction (sent or heard).
    pub pinged: u64,
    /// Tick we last heard from it.
    pub seen: u64,
    /// DOWN_HINTs received about it.
    pub down_hints: u32,
    prev: Option<usize>,
    next: Option<usize>,
}

impl TableNode {
    /// A node record for `addr` with its id computed from the address; ticks are set when added.
    pub fn new(id: NodeId, addr: SocketAddrV4, to: Option<SocketAddrV4>) -> Self {
        TableNode {
            id,
            addr,
            to,
            sampled: 0,
            added: 0,
            pinged: 0,
            seen: 0,
            down_hints: 0,
            prev: None,
            next: None,
        }
    }
}

/// What [`Table::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new node, now in the table (and the latest in the time-ordered list).
    New,
    /// A node with this id was already there: the record was replaced.
    Replaced,
    /// Its row is full (the JS row emits `full`); the node was not added.
    RowFull(usize),
    /// The node has our own id.
    Own,
}

/// Routing table and time-ordered node list.
#[derive(Debug, Clone)]
pub struct Table {
    id: NodeId,
    slab: Vec<Option<TableNode>>,
    free: Vec<usize>,
    rows: Vec<Vec<usize>>,
    /// Indexes of the rows holding nodes, ascending.
    nonempty: Vec<u16>,
    size: usize,
    oldest: Option<usize>,
    latest: Option<usize>,
}

/// A handle to a node in the table (valid until the node is removed).
pub type Slot = usize;

impl Table {
    /// An empty table around `id`.
    pub fn new(id: NodeId) -> Self {
        Table {
            id,
            slab: Vec::new(),
            free: Vec::new(),
            rows: vec![Vec::new(); ROWS],
            nonempty: Vec::new(),
            size: 0,
            oldest: None,
            latest: None,
        }
    }

    /// Our table id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Nodes in the table.
    pub fn len(&self) -> usize {
        self.size
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The row an id belongs to: the index of its first bit that differs from ours (255 for our
    /// own id).
    pub fn diff(&self, id: &NodeId) -> usize {
        for (i, (a, b)) in id.iter().zip(self.id.iter()).enumerate() {
            let x = a ^ b;
            if x != 0 {
                return i * 8 + x.leading_zeros() as usize;
            }
        }
        ROWS - 1
    }

    fn find(&self, row: usize, id: &NodeId) -> Result<usize, usize> {
        self.rows[row].binary_search_by(|&s| self.node_at(s).id.cmp(id))
    }

    fn node_at(&self, slot: Slot) -> &TableNode {
        self.slab[slot].as_ref().expect("live slot")
    }

    /// The node with this id.
    pub fn get(&self, id: &NodeId) -> Option<&TableNode> {
        self.slot_of(id).map(|s| self.node_at(s))
    }

    /// The node with this id, mutably.
    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut TableNode> {
        let s = self.slot_of(id)?;
        self.slab[s].as_mut()
    }

    /// The slot of the node with this id.
    pub fn slot_of(&self, id: &NodeId) -> Option<Slot> {
        let row = self.diff(id);
        self.find(row, id).ok().map(|i| self.rows[row][i])
    }

    /// The node in `slot`.
    pub fn node(&self, slot: Slot) -> Option<&TableNode> {
        self.slab.get(slot).and_then(Option::as_ref)
    }

    /// The node in `slot`, mutably.
    pub fn node_mut(&mut self, slot: Slot) -> Option<&mut TableNode> {
        self.slab.get_mut(slot).and_then(Option::as_mut)
    }

    /// Add a node (kademlia's `table.add` plus dht-rpc's `nodes.add`). A new node becomes the
    /// latest in the time-ordered list; a node with an id already present replaces the record
    /// in place (keeping its list position).
    pub fn add(&mut self, node: TableNode) -> Added {
        if node.id == self.id {
            return Added::Own;
        }
        let row = self.diff(&node.id);
        match self.find(row, &node.id) {
            Ok(i) => {
                let s = self.rows[row][i];
                let old = self.slab[s].as_mut().expect("live slot");
                let (prev, next) = (old.prev, old.next);
                *old = TableNode { prev, next, ..node };
                Added::Replaced
            }
            Err(_) if self.rows[row].len() >= K => Added::RowFull(row),
            Err(i) => {
                let slot = match self.free.pop() {
                    Some(s) => {
                        self.slab[s] = Some(node);
                        s
                    }
                    None => {
                        self.slab.push(Some(node));
                        self.slab.len() - 1
                    }
                };
                self.rows[row].insert(i, slot);
                if self.rows[row].len() == 1 {
                    let at = self.nonempty.partition_point(|&r| (r as usize) < row);
                    self.nonempty.insert(at, row as u16);
                }
                self.size += 1;
                self.link_latest(slot);
                Added::New
            }
        }
    }

    /// Remove the node with this id; returns it.
    pub fn remove(&mut self, id: &NodeId) -> Option<TableNode> {
        let row = self.diff(id);
        let i = self.find(row, id).ok()?;
        let slot = self.rows[row].remove(i);
        if self.rows[row].is_empty() {
            self.nonempty.retain(|&r| r as usize != row);
        }
        self.unlink(slot);
        self.size -= 1;
        self.free.push(slot);
        self.slab[slot].take()
    }

    /// The nodes of row `row`, in id order.
    pub fn row(&self, row: usize) -> impl Iterator<Item = &TableNode> + '_ {
        self.rows[row].iter().map(move |&s| self.node_at(s))
    }

    /// The rows to take nodes from for a target in row `d`, in kademlia-routing-table's
    /// order: `d, d-1, …, 0`, then `d+1, …` (empty rows skipped).
    fn walk(&self, d: usize) -> impl Iterator<Item = usize> + '_ {
        let split = self.nonempty.partition_point(|&r| (r as usize) <= d);
        let (down, up) = self.nonempty.split_at(split);
        down.iter().rev().chain(up.iter()).map(|&r| r as usize)
    }

    /// Up to `k` nodes close to `id`, in kademlia-routing-table's order.
    pub fn closest(&self, id: &NodeId, k: usize) -> Vec<&TableNode> {
        let mut out: Vec<&TableNode> = Vec::with_capacity(k.min(self.size));
        for row in self.walk(self.diff(id)) {
            if out.len() >= k {
                break;
            }
            let missing = (k - out.len()).min(self.rows[row].len());
            for &s in &self.rows[row][..missing] {
                out.push(self.node_at(s));
            }
        }
        out
    }

    /// The addresses of [`Table::closest`].
    pub fn closest_addrs(&self, id: &NodeId, k: usize) -> Vec<SocketAddrV4> {
        let mut out = Vec::with_capacity(k.min(self.size));
        for row in self.walk(self.diff(id)) {
            if out.len() >= k {
                break;
            }
            let missing = (k - out.len()).min(self.rows[row].len());
            for &s in &self.rows[row][..missing] {
                out.push(self.node_at(s).addr);
            }
        }
        out
    }

    /// The node at position `n` counting through the rows in order (JS `table.random()` with
    /// `n = random(size)`).
    pub fn nth(&self, mut n: usize) -> Option<&TableNode> {
        for row in &self.rows {
            if n < row.len() {
                return Some(self.node_at(row[n]));
            }
            n -= row.len();
        }
        None
    }

    /// Every node, closest to our id first (JS `table.toArray()`).
    pub fn to_vec(&self) -> Vec<TableNode> {
        self.closest(&self.id, usize::MAX)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Start over around a new id, re-adding every node (closest to the old id first). Nodes
    /// that no longer fit, or have the new id, are dropped and returned.
    pub fn rebuild(&mut self, id: NodeId) -> Vec<TableNode> {
        // Keep the time order: re-add in list order, oldest first, after sorting the survivors.
        let by_closeness = self.to_vec();
        let mut order = Vec::with_capacity(self.size);
        let mut cur = self.oldest;
        while let Some(s) = cur {
            order.push(self.node_at(s).id);
            cur = self.node_at(s).next;
        }
        let mut keep = Table::new(id);
        let mut dropped = Vec::new();
        for n in by_closeness {
            let plain = TableNode {
                prev: None,
                next: None,
                ..n
            };
            match keep.add(plain.clone()) {
                Added::New | Added::Replaced => {}
                Added::RowFull(_) | Added::Own => dropped.push(plain),
            }
        }
        // Restore the time order of the survivors.
        let mut fresh = Table::new(id);
        for nid in order {
            if let Some(n) = keep.get(&nid) {
                fresh.add(n.clone());
            }
        }
        *self = fresh;
        dropped
    }

    // --- time-ordered list ---

    fn link_latest(&mut self, slot: Slot) {
        let prev = self.latest;
        {
            let n = self.slab[slot].as_mut().expect("live slot");
            n.prev = prev;
            n.next = None;
        }
        match prev {
            Some(p) => self.slab[p].as_mut().expect("live slot").next = Some(slot),
            None => self.oldest = Some(slot),
        }
        self.latest = Some(slot);
    }

    fn unlink(&mut self, slot: Slot) {
        let (prev, next) = {
            let n = self.slab[slot].as_ref().expect("live slot");
            (n.prev, n.next)
        };
        match prev {
            Some(p) => self.slab[p].as_mut().expect("live slot").next = next,
            None => self.oldest = next,
        }
        match next {
            Some(nx) => self.slab[nx].as_mut().expect("live slot").prev = prev,
            None => self.latest = prev,
        }
        let n = self.slab[slot].as_mut().expect("live slot");
        n.prev = None;
        n.next = None;
    }

    /// Move a node to the latest end of the time-ordered list (JS `nodes.add(node)`).
    pub fn touch(&mut self, slot: Slot) {
        if self.latest == Some(slot) {
            return;
        }
        self.unlink(slot);
        self.link_latest(slot);
    }

    /// The node heard from least recently.
    pub fn oldest(&self) -> Option<Slot> {
        self.oldest
    }

    /// The node heard from most recently.
    pub fn latest(&self) -> Option<Slot> {
        self.latest
    }

    /// The next newer node in the time-ordered list.
    pub fn newer(&self, slot: Slot) -> Option<Slot> {
        self.node(slot).and_then(|n| n.next)
    }

    /// The next older node in the time-ordered list.
    pub fn older(&self, slot: Slot) -> Option<Slot> {
        self.node(slot).and_then(|n| n.prev)
    }

    /// Up to `limit` addresses, most recently heard first (JS `dht.toArray({ limit })`).
    pub fn latest_addrs(&self, limit: usize) -> Vec<SocketAddrV4> {
        let mut out = Vec::new();
        let mut cur = self.latest;
        while let Some(s) = cur {
            if out.len() >= limit {
                break;
            }
            let n = self.node_at(s);
            out.push(n.addr);
            cur = n.prev;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dht::rpc::messages::node_id;
    use core::net::Ipv4Addr;

    fn addr(i: u32) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 1000 + (i % 50000) as u16)
    }

    fn node(i: u32) -> TableNode {
        let a = addr(i);
        TableNode::new(node_id(&a), a, None)
    }

    #[test]
    fn diff_is_first_differing_bit() {
        let mut id = [0u8; 32];
        let t = Table::new(id);
        id[0] = 0x80;
        assert_eq!(t.diff(&id), 0);
        id[0] = 0x01;
        assert_eq!(t.diff(&id), 7);
        id[0] = 0;
        id[3] = 0x10;
        assert_eq!(t.diff(&id), 27);
        assert_eq!(t.diff(&[0; 32]), 255);
    }

    #[test]
    fn rows_fill_to_k_and_report_full() {
        let mut t = Table::new([0; 32]);
        let mut full = 0;
        for i in 0..2000 {
            match t.add(node(i)) {
                Added::New => {}
                Added::RowFull(r) => {
                    assert_eq!(t.rows[r].len(), K);
                    full += 1
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(full > 0);
        assert!(t.rows.iter().all(|r| r.len() <= K));
        assert_eq!(t.len(), t.rows.iter().map(Vec::len).sum::<usize>());
        for r in &t.rows {
            for w in r.windows(2) {
                assert!(t.node_at(w[0]).id < t.node_at(w[1]).id);
            }
        }
    }

    #[test]
    fn closest_walks_rows_like_js() {
        let mut t = Table::new([0; 32]);
        for i in 0..300 {
            t.add(node(i));
        }
        let target = node_id(&addr(77_777));
        let got = t.closest(&target, K);
        assert_eq!(got.len(), K);
        // Reference: the JS walk.
        let d = t.diff(&target);
        let mut want = Vec::new();
        let order: Vec<usize> = (0..=d).rev().chain(d + 1..ROWS).collect();
        for r in order {
            for n in t.row(r) {
                if want.len() < K {
                    want.push(n.id);
                }
            }
        }
        assert_eq!(got.iter().map(|n| n.id).collect::<Vec<_>>(), want);
        let addrs: Vec<_> = got.iter().map(|n| n.addr).collect();
        assert_eq!(t.closest_addrs(&target, K), addrs);
        // Every row as a target, and small k.
        for row in [0usize, 1, 5, 9, 200, 255] {
            let mut id = *t.id();
            if row < 255 {
                id[row / 8] ^= 0x80 >> (row % 8);
            }
            for k in [1, 3, 20, 1000] {
                let d = t.diff(&id);
                let mut want = Vec::new();
                for r in (0..=d).rev().chain(d + 1..ROWS) {
                    for n in t.row(r) {
                        if want.len() < k {
                            want.push(n.addr);
                        }
                    }
                }
                assert_eq!(t.closest_addrs(&id, k), want, "row {row} k {k}");
            }
        }
    }

    #[test]
    fn time_order_and_removal() {
        let mut t = Table::new([0; 32]);
        let ids: Vec<_> = (0..5).map(|i| node(i).id).collect();
        for i in 0..5 {
            t.add(node(i));
        }
        let oldest = t.oldest().unwrap();
        assert_eq!(t.node(oldest).unwrap().id, ids[0]);
        t.touch(oldest);
        assert_eq!(t.node(t.latest().unwrap()).unwrap().id, ids[0]);
        assert_eq!(t.node(t.oldest().unwrap()).unwrap().id, ids[1]);
        assert!(t.remove(&ids[2]).is_some());
        assert!(t.get(&ids[2]).is_none());
        assert_eq!(t.len(), 4);
        let mut walk = Vec::new();
        let mut cur = t.oldest();
        while let Some(s) = cur {
            walk.push(t.node(s).unwrap().id);
            cur = t.newer(s);
        }
        assert_eq!(walk, vec![ids[1], ids[3], ids[4], ids[0]]);
        assert_eq!(t.latest_addrs(2), vec![addr(0), addr(4)]);
    }

    #[test]
    fn rebuild_keeps_fitting_nodes_in_time_order() {
        let mut t = Table::new([0; 32]);
        for i in 0..100 {
            t.add(node(i));
        }
        let new_id = node(5).id;
        let before = t.len();
        let dropped = t.rebuild(new_id);
        assert_eq!(t.id(), &new_id);
        assert!(t.get(&new_id).is_none());
        assert_eq!(t.len() + dropped.len(), before);
        assert_eq!(t.node(t.oldest().unwrap()).unwrap().id, node(0).id);
    }
}
