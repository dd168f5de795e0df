//! The node's upkeep (dht-rpc index.js): the 5 s tick, the bootstrap, the NAT/firewall decision
//! that makes a node persistent, health pings of old nodes, full-row swaps, sleep detection and
//! the network health window (lib/health.js).

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;
use std::collections::BTreeSet;

use super::io::Owner;
use super::messages::{node_id, NodeId};
use super::nat::NatSampler;
use super::node::{Node, MORE_STABLE_TICKS, OLD_NODE, RECENT_NODE};
use super::query::QueryOwner;
use super::table::{TableNode, K};
use super::{Event, Response, PING, PING_NAT, TICK_INTERVAL};

/// A tick this late means the machine slept.
const SLEEPING_INTERVAL: Duration = Duration::from_millis(3 * TICK_INTERVAL.as_millis() as u64);

/// Where the bootstrap is (JS `_bootstrap`, an async function here unrolled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boot {
    NotStarted,
    /// The background FIND_NODE on our id of round `round` (0 or 1) runs.
    Querying {
        round: u8,
        first: bool,
        test_nat: bool,
    },
    /// `_updateNetworkState` of round `round` waits for its firewall check.
    Updating {
        round: u8,
    },
    Done,
}

/// Why a network-state update runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckPurpose {
    Boot(u8),
    Tick,
}

/// A `_checkIfFirewalled` in progress (PING_NAT to a few nodes, replies counted when all
/// settled).
#[derive(Debug, Clone)]
pub(crate) struct NetCheck {
    pub id: u64,
    pub purpose: CheckPurpose,
    pub only_firewall: bool,
    pub host: Option<Ipv4Addr>,
    pub port: u16,
    pub asked: usize,
    pub pending: usize,
    pub pongs: Vec<Response>,
    /// Hosts that sent anything to our server socket while the check ran.
    pub server_hosts: BTreeSet<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, Default)]
struct HealthSample {
    responses: u64,
    timeouts: u64,
    offline: Option<bool>,
    degraded: Option<bool>,
}

/// dht-rpc's NetworkHealth: a 4-tick window of response/timeout counters.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    window: Vec<HealthSample>,
    head: usize,
    offline_ticks: u32,
    degraded_ticks: u32,
    healthy_ticks: u32,
    h_online: bool,
    h_degraded: bool,
    /// The node's view (JS `dht.online`, `dht.degraded`).
    pub online: bool,
    pub degraded: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            window: Vec::new(),
            head: 3,
            offline_ticks: 0,
            degraded_ticks: 0,
            healthy_ticks: 0,
            h_online: true,
            h_degraded: false,
            online: true,
            degraded: false,
        }
    }
}

const MAX_HEALTH_WINDOW: usize = 4;

impl Health {
    fn tail(&self) -> usize {
        (self.head + 1) % MAX_HEALTH_WINDOW
    }
    fn newest(&self) -> Option<&HealthSample> {
        self.window.get(self.head)
    }
    fn previous(&self) -> Option<&HealthSample> {
        self.window
            .get((self.head + MAX_HEALTH_WINDOW - 1) % MAX_HEALTH_WINDOW)
    }
    fn delta(&self) -> (u64, u64) {
        match (self.newest(), self.previous()) {
            (Some(n), Some(p)) => (
                n.responses.saturating_sub(p.responses),
                n.timeouts.saturating_sub(p.timeouts),
            ),
            _ => (0, 0),
        }
    }

    /// Back to a fresh window; returns the event to emit, if the node's view changed.
    fn reset(&mut self) -> Option<Event> {
        *self = Health {
            online: self.online,
            degraded: self.degraded,
            ..Health::default()
        };
        self.set(true, false)
    }

    fn set(&mut self, online: bool, degraded: bool) -> Option<Event> {
        if (self.online, self.degraded) == (online, degraded) {
            return None;
        }
        self.online = online;
        self.degraded = degraded;
        Some(Event::NetworkUpdate { online, degraded })
    }

    fn update(&mut self, responses: u64, timeouts: u64) -> Option<Event> {
        let tail = self.tail();
        if let Some(old) = self.window.get(tail) {
            match old.degraded {
                Some(true) => self.degraded_ticks = self.degraded_ticks.saturating_sub(1),
                Some(false) => self.healthy_ticks = self.healthy_ticks.saturating_sub(1),
                None => {}
            }
        }
        self.head = tail;
        let s = HealthSample {
            responses,
            timeouts,
            ..HealthSample::default()
        };
        if self.head < self.window.len() {
            self.window[self.head] = s;
        } else {
            self.window.push(s);
        }
        let (r, t) = self.delta();
        let cold = self.window.len() < MAX_HEALTH_WINDOW;
        let idle = r + t < 4;
        if cold || idle {
            return None;
        }
        let rate = if t == 0 {
            0.0
        } else {
            t as f64 / (r + t) as f64
        };
        let offline = r == 0;
        let degraded = !offline && rate > 0.5;
        let head = self.head;
        self.window[head].offline = Some(offline);
        self.window[head].degraded = Some(degraded);
        if offline {
            self.offline_ticks += 1;
        } else {
            self.offline_ticks = 0;
            if degraded {
                self.degraded_ticks += 1;
            } else {
                self.healthy_ticks += 1;
            }
        }
        if !offline {
            self.h_online = true;
        } else if self.offline_ticks >= 2 {
            self.h_online = false;
        }
        if !self.h_online || self.healthy_ticks as usize == MAX_HEALTH_WINDOW {
            self.h_degraded = false;
        } else if self.degraded_ticks as usize == MAX_HEALTH_WINDOW {
            self.h_degraded = true;
        }
        if self.h_online && !self.h_degraded {
            self.set(true, false)
        } else if self.h_degraded {
            self.set(true, true)
        } else {
            self.set(false, false)
        }
    }
}

impl Node {
    // ------------------------------------------------------------------ bootstrap

    pub(crate) fn start_bootstrap(&mut self, _now: Duration) {
        let first = self.firewalled && self.config.quick_firewall && !self.force_persistent;
        self.boot_round(0, first);
    }

    fn boot_round(&mut self, round: u8, first: bool) {
        self.boot = Boot::Querying {
            round,
            first,
            test_nat: false,
        };
        let id = *self.table.id();
        if self.background_query(id, QueryOwner::Bootstrap).is_none() {
            self.finish_bootstrap();
        }
    }

    pub(crate) fn on_bootstrap_data(&mut self, m: &Response) {
        let Boot::Querying {
            round,
            first,
            test_nat,
        } = self.boot
        else {
            return;
        };
        if !first {
            return;
        }
        self.boot = Boot::Querying {
            round,
            first: false,
            test_nat,
        };
        let value = self.config.server_port.to_le_bytes();
        if let Ok(tid) = self.create_request(
            m.from.addr,
            m.from.id,
            None,
            true,
            PING_NAT,
            None,
            Some(&value),
            None,
            Owner::QuickFirewall,
            super::io::DEFAULT_RETRIES,
            None,
            0,
        ) {
            self.send(tid, false);
        }
    }

    pub(crate) fn on_quick_firewall_pong(&mut self) {
        match self.boot {
            Boot::Querying { round, first, .. } => {
                self.boot = Boot::Querying {
                    round,
                    first,
                    test_nat: true,
                };
            }
            // Beyond JS: on a fast network the bootstrap query can end before this answer
            // (JS then drops it, and a reachable node stays firewalled until its network check
            // 20 minutes later, so peers holepunch to a public server). Run the firewall check
            // the answer would have started.
            Boot::Done if self.firewalled && self.ephemeral => {
                let _ = self.update_network_state(true, CheckPurpose::Tick);
            }
            _ => {}
        }
    }

    pub(crate) fn on_bootstrap_query_done(&mut self) {
        let Boot::Querying {
            round, test_nat, ..
        } = self.boot
        else {
            return;
        };
        if self.bootstrapped || (!test_nat && !self.force_persistent) {
            self.finish_bootstrap();
            return;
        }
        self.boot = Boot::Updating { round };
        let only_firewall = !self.force_persistent;
        // `None`: the firewall check calls back when it is done.
        if let Some(result) = self.update_network_state(only_firewall, CheckPurpose::Boot(round)) {
            self.on_boot_network_state(round, result);
        }
    }

    fn on_boot_network_state(&mut self, round: u8, updated: bool) {
        if !updated || round >= 1 {
            self.finish_bootstrap();
        } else {
            self.boot_round(round + 1, false);
        }
    }

    fn finish_bootstrap(&mut self) {
        self.boot = Boot::Done;
        if self.bootstrapped {
            return;
        }
        self.bootstrapped = true;
        self.events.push_back(Event::Ready);
    }

    // ------------------------------------------------------------------ NAT / firewall

    /// JS `_updateNetworkState`: `Some(result)` when decided at once, `None` when a firewall
    /// check was started (its end calls [`Node::finish_network_state`]).
    pub(crate) fn update_network_state(
        &mut self,
        only_firewall: bool,
        purpose: CheckPurpose,
    ) -> Option<bool> {
        if !self.ephemeral {
            return Some(false);
        }
        if only_firewall && !self.firewalled {
            return Some(false);
        }
        let (host, port) = (self.nat.host, self.nat.port);
        if !only_firewall {
            self.stable_ticks = MORE_STABLE_TICKS;
            self.last_host = host;
        }
        if host.is_none() || port == 0 {
            return Some(false);
        }
        if !self.firewalled {
            let sampler = self.nat.clone();
            return Some(self.finish_network_state(
                only_firewall,
                host,
                port,
                false,
                sampler,
                false,
            ));
        }
        if self.net_check.is_some() {
            // One check at a time; a concurrent call finds nothing new.
            return Some(false);
        }
        // _checkIfFirewalled: PING_NAT the 5 latest nodes (plus the bootstrap nodes if fewer).
        let mut nodes: Vec<(SocketAddrV4, NodeId)> = Vec::new();
        let mut cur = self.table.latest();
        while let Some(s) = cur {
            if nodes.len() >= 5 {
                break;
            }
            let n = self.table.node(s).expect("listed node");
            nodes.push((n.addr, n.id));
            cur = self.table.older(s);
        }
        if nodes.len() < 5 {
            for b in &self.config.bootstrap {
                nodes.push((*b, node_id(b)));
            }
        }
        if nodes.is_empty() {
            return Some(self.finish_network_state(
                only_firewall,
                host,
                port,
                true,
                NatSampler::new(),
                true,
            ));
        }
        self.next_check += 1;
        let check_id = self.next_check;
        self.net_check = Some(NetCheck {
            id: check_id,
            purpose,
            only_firewall,
            host,
            port,
            asked: nodes.len(),
            pending: 0,
            pongs: Vec::new(),
            server_hosts: BTreeSet::new(),
        });
        let value = self.config.server_port.to_le_bytes();
        for (addr, id) in nodes {
            match self.create_request(
                addr,
                Some(id),
                None,
                true,
                PING_NAT,
                None,
                Some(&value),
                None,
                Owner::FirewallCheck(check_id),
                super::io::DEFAULT_RETRIES,
                None,
                0,
            ) {
                Ok(tid) => {
                    if let Some(c) = self.net_check.as_mut() {
                        c.pending += 1;
                    }
                    self.send(tid, false);
                }
                Err(_) => break,
            }
        }
        if self.net_check.as_ref().is_some_and(|c| c.pending == 0) {
            self.complete_check();
            return None;
        }
        None
    }

    pub(crate) fn on_firewall_pong(&mut self, check: u64, res: Option<Response>) {
        let Some(c) = self.net_check.as_mut() else {
            return;
        };
        if c.id != check {
            return;
        }
        if let Some(r) = res {
            c.pongs.push(r);
        }
        c.pending = c.pending.saturating_sub(1);
        if c.pending == 0 {
            self.complete_check();
        }
    }

    fn complete_check(&mut self) {
        let Some(c) = self.net_check.take() else {
            return;
        };
        let mut sampler = NatSampler::new();
        let mut count = 0;
        for r in &c.pongs {
            if c.server_hosts.contains(r.from.addr.ip()) {
                count += 1;
                sampler.add(*r.to.ip(), r.to.port());
            }
        }
        let need = if c.asked >= 5 { 3 } else { 1 };
        let firewalled = count < need
            || sampler.host.is_none()
            || self.nat.host != sampler.host
            || sampler.port == 0
            || sampler.port != self.config.server_port;
        let result =
            self.finish_network_state(c.only_firewall, c.host, c.port, firewalled, sampler, true);
        match c.purpose {
            CheckPurpose::Boot(round) => {
                if self.boot == (Boot::Updating { round }) {
                    self.on_boot_network_state(round, result);
                }
            }
            CheckPurpose::Tick => {}
        }
    }

    /// The second half of `_updateNetworkState`, after the firewall verdict.
    pub(crate) fn finish_network_state(
        &mut self,
        only_firewall: bool,
        host: Option<Ipv4Addr>,
        port: u16,
        firewalled: bool,
        sampler: NatSampler,
        fresh_sampler: bool,
    ) -> bool {
        if firewalled {
            return false;
        }
        self.firewalled = false;
        if !self.ephemeral || host != self.nat.host || port != self.nat.port {
            return false;
        }
        let (Some(shost), true) = (sampler.host, sampler.port != 0) else {
            return false;
        };
        if Some(shost) != host {
            return false;
        }
        let id = node_id(&SocketAddrV4::new(shost, sampler.port));
        if !only_firewall {
            self.ephemeral = false;
        }
        if fresh_sampler {
            let prev = (self.nat.host, self.nat.port);
            self.none_persistent_samples.clear();
            self.nat = sampler;
            if prev != (self.nat.host, self.nat.port) {
                self.events.push_back(Event::NatUpdate {
                    host: self.nat.host,
                    port: self.nat.port,
                });
            }
        }
        if self.table.id() != &id {
            for n in self.table.rebuild(id) {
                self.events.push_back(Event::NodeRemoved(n.addr));
            }
            if self.bootstrapped {
                self.refresh();
            }
        }
        if !self.ephemeral {
            self.events.push_back(Event::Persistent);
        }
        true
    }

    // ------------------------------------------------------------------ ticks

    pub(crate) fn on_tick(&mut self, now: Duration) {
        if now.saturating_sub(self.last_tick) > SLEEPING_INTERVAL {
            self.on_wakeup();
        } else {
            self.tick += 1;
        }
        self.last_tick = now;
        if !self.bootstrapped {
            return;
        }
        if self.adaptive && self.ephemeral {
            self.stable_ticks -= 1;
            if self.stable_ticks <= 0 {
                if self.last_host == self.nat.host {
                    self.stable_ticks = MORE_STABLE_TICKS;
                } else {
                    let _ = self.update_network_state(false, CheckPurpose::Tick);
                }
            }
        }
        if self.tick & 7 == 0 {
            self.ping_some();
        }
        let small = self.tick & 63 == 0 && self.table.len() < K;
        if small || {
            self.refresh_ticks -= 1;
            self.refresh_ticks <= 0
        } {
            self.refresh();
        }
        self.down_hints_sent = 0;
        let (r, t) = (self.stats.responses, self.stats.timeouts);
        if let Some(e) = self.health.update(r, t) {
            self.events.push_back(e);
        }
    }

    fn on_wakeup(&mut self) {
        let mut tick = self.tick as i64 + 2 * OLD_NODE as i64;
        tick += 8 - (tick & 7) - 2;
        self.tick = tick as u64;
        self.stable_ticks = MORE_STABLE_TICKS;
        self.refresh_ticks = 1;
        self.last_host = None;
        if let Some(e) = self.health.reset() {
            self.events.push_back(e);
        }
        if self.adaptive && !self.ephemeral {
            self.ephemeral = true;
            self.events.push_back(Event::Ephemeral);
        }
        self.events.push_back(Event::Wakeup);
    }

    /// Run a background FIND_NODE on a random table node's id (JS `dht.refresh()`).
    pub fn refresh(&mut self) {
        let n = self.rng.below(self.table.len() as u64) as usize;
        let target = self.table.nth(n).map(|n| n.id).unwrap_or(*self.table.id());
        self.background_query(target, QueryOwner::Background);
    }

    fn ping_some(&mut self) {
        let mut cnt = if self.io.inflight.len() > 2 { 3 } else { 5 };
        let Some(oldest) = self.table.oldest() else {
            self.refresh();
            return;
        };
        let tick = self.tick;
        let pinged = self.table.node(oldest).map_or(0, |n| n.pinged);
        if tick.saturating_sub(pinged) < RECENT_NODE {
            cnt = 2;
        }
        let mut cur = Some(oldest);
        while cnt > 0 {
            cnt -= 1;
            let Some(s) = cur else { continue };
            let Some(n) = self.table.node(s) else {
                continue;
            };
            if n.pinged == tick {
                continue;
            }
            let id = n.id;
            let next = self.table.newer(s);
            self.check(id);
            cur = next;
        }
    }

    /// JS `_check(node)`: ping a table node; no answer (or no news) removes it.
    pub(crate) fn check(&mut self, id: NodeId) {
        let tick = self.tick;
        let Some(n) = self.table.get_mut(&id) else {
            return;
        };
        n.pinged = tick;
        let (addr, last_seen) = (n.addr, n.seen);
        self.checks += 1;
        match self.create_request(
            addr,
            None,
            None,
            true,
            PING,
            None,
            None,
            None,
            Owner::Check { id, last_seen },
            super::io::DEFAULT_RETRIES,
            None,
            0,
        ) {
            Ok(tid) => self.send(tid, false),
            Err(_) => self.checks -= 1,
        }
    }

    /// A full row got a new node (JS `_onfullrow`).
    pub(crate) fn on_full_row(&mut self, new: TableNode, row: usize) {
        if !self.bootstrapped || self.repinging >= 3 {
            return;
        }
        let tick = self.tick;
        let mut oldest: Option<&TableNode> = None;
        for n in self.table.row(row) {
            if n.pinged == tick {
                continue;
            }
            if oldest
                .is_none_or(|o| o.pinged > n.pinged || (o.pinged == n.pinged && o.added > n.added))
            {
                oldest = Some(n);
            }
        }
        let Some(o) = oldest else { return };
        if tick.saturating_sub(o.pinged) < RECENT_NODE && tick.saturating_sub(o.added) > OLD_NODE {
            return;
        }
        let (old_id, old_addr, last_seen) = (o.id, o.addr, o.seen);
        if let Some(n) = self.table.get_mut(&old_id) {
            n.pinged = tick;
        }
        self.repinging += 1;
        match self.create_request(
            old_addr,
            None,
            None,
            true,
            PING,
            None,
            None,
            None,
            Owner::Reping {
                old: old_id,
                last_seen,
                new: Box::new(new),
            },
            super::io::DEFAULT_RETRIES,
            None,
            0,
        ) {
            Ok(tid) => self.send(tid, false),
            Err(_) => self.repinging -= 1,
        }
    }

    /// The old node of a full row did not prove alive: swap in the new one.
    pub(crate) fn swap_node(&mut self, old: &NodeId, new: TableNode) {
        self.repinging = self.repinging.saturating_sub(1);
        self.remove_node(old);
        self.add_table_node(new);
    }
}
