//! NAT analysis of one puncher socket (hyperdht lib/nat.js): DHT nodes are pinged from the socket,
//! and the addresses they saw it at (`res.to`) are counted per `host:port` and per host.

use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::HashMap;

use crate::dht::messages_connect::Firewall;

/// Samples wanted before the analysis resolves (nat.js `_minSamples`).
pub const MIN_SAMPLES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    host: Ipv4Addr,
    port: u16,
    hits: u32,
}

/// `addSample`: count a hit, keeping the list sorted by hits (stable bubble up).
fn add_sample(samples: &mut Vec<Sample>, host: Ipv4Addr, port: u16) {
    if let Some(mut i) = samples
        .iter()
        .position(|s| s.host == host && s.port == port)
    {
        samples[i].hits += 1;
        while i > 0 && samples[i - 1].hits < samples[i].hits {
            samples.swap(i - 1, i);
            i -= 1;
        }
        return;
    }
    samples.push(Sample {
        host,
        port,
        hits: 1,
    });
}

/// The NAT view of one socket.
#[derive(Debug, Clone)]
pub struct Nat {
    samples_host: Vec<Sample>,
    samples_full: Vec<Sample>,
    /// 1 = pinged, 2 = sampled (nat.js `_visited`).
    visited: HashMap<SocketAddrV4, u8>,
    min_samples: usize,
    auto_sampling: bool,
    retry: bool,
    pending: usize,
    dht_firewalled: bool,
    frozen: bool,
    resolved: bool,
    /// Samples taken.
    pub sampled: usize,
    /// The current classification.
    pub firewall: Firewall,
    /// The public addresses to give the peer (None while UNKNOWN).
    pub addresses: Option<Vec<SocketAddrV4>>,
}

impl Nat {
    /// `dht_firewalled`: whether the DHT node itself is firewalled (if not, the socket is OPEN).
    pub fn new(dht_firewalled: bool) -> Self {
        Nat {
            samples_host: Vec::new(),
            samples_full: Vec::new(),
            visited: HashMap::new(),
            min_samples: MIN_SAMPLES,
            auto_sampling: false,
            retry: true,
            pending: 0,
            dht_firewalled,
            frozen: false,
            resolved: false,
            sampled: 0,
            firewall: if dht_firewalled {
                Firewall::Unknown
            } else {
                Firewall::Open
            },
            addresses: None,
        }
    }

    /// Whether the analysis concluded (JS `await nat.analyzing` returns).
    pub fn is_analyzed(&self) -> bool {
        self.resolved
    }

    /// `autoSample()`: the DHT nodes to ping from the socket, given the routing table's nodes
    /// newest first. The newest 5 are skipped when the table holds 8 or more. Call again with
    /// the table when [`wants_resample`](Self::wants_resample) says so (the one retry pass).
    pub fn auto_sample(&mut self, nodes_newest_first: &[SocketAddrV4]) -> Vec<SocketAddrV4> {
        if self.auto_sampling {
            return Vec::new();
        }
        self.auto_sampling = true;
        let mut skip = if nodes_newest_first.len() >= 8 { 5 } else { 0 };
        let mut out = Vec::new();
        for node in nodes_newest_first {
            if self.sampled + self.pending >= self.min_samples {
                break;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if self.visited.contains_key(node) {
                continue;
            }
            self.visited.insert(*node, 1);
            self.pending += 1;
            out.push(*node);
        }
        self.pending += 1;
        self.ping_done();
        out
    }

    /// Whether the first sampling pass ran out of nodes and a second pass is due.
    pub fn wants_resample(&self) -> bool {
        !self.auto_sampling && !self.resolved
    }

    fn ping_done(&mut self) {
        self.pending = self.pending.saturating_sub(1);
        if self.pending == 0 && self.sampled < self.min_samples {
            if self.retry {
                self.retry = false;
                self.auto_sampling = false;
                return;
            }
            self.resolved = true;
        }
    }

    /// A sampling ping from `from` timed out or failed.
    pub fn handle_ping_failed(&mut self) {
        if self.pending > 0 {
            self.ping_done();
        }
    }

    /// A sampling ping answered: `to` is this socket's address as `from` saw it.
    pub fn handle_pong(&mut self, to: SocketAddrV4, from: SocketAddrV4) {
        self.add(to, from);
        if self.pending > 0 {
            self.ping_done();
        }
    }

    /// `add(addr, from)`: one sample (also fed from holepunch replies).
    pub fn add(&mut self, addr: SocketAddrV4, from: SocketAddrV4) {
        if self.visited.get(&from) == Some(&2) {
            return;
        }
        self.visited.insert(from, 2);
        add_sample(&mut self.samples_host, *addr.ip(), 0);
        add_sample(&mut self.samples_full, *addr.ip(), addr.port());
        self.sampled += 1;
        if (self.sampled >= 3 || !self.dht_firewalled) && !self.frozen {
            self.update();
        }
        if matches!(self.firewall, Firewall::Consistent | Firewall::Open)
            || self.sampled >= self.min_samples
        {
            self.resolved = true;
        }
    }

    /// Stops updates while the view is being told to the peer.
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Resumes updates.
    pub fn unfreeze(&mut self) {
        self.frozen = false;
        self.update_firewall();
        self.update_addresses();
    }

    /// `destroy()`: resolves any waiter.
    pub fn destroy(&mut self) {
        self.auto_sampling = true;
        self.min_samples = 0;
        self.resolved = true;
    }

    fn update(&mut self) {
        if self.dht_firewalled && self.firewall == Firewall::Open {
            self.firewall = Firewall::Unknown;
        }
        self.update_firewall();
        self.update_addresses();
    }

    fn update_firewall(&mut self) {
        if !self.dht_firewalled {
            self.firewall = Firewall::Open;
            return;
        }
        if self.sampled < 3 {
            return;
        }
        let max = self.samples_full[0].hits;
        if max >= 3 {
            self.firewall = Firewall::Consistent;
        } else if max == 1 || (self.samples_host.len() == 1 && self.sampled > 3) {
            // One hit each, or one host whose ports disagree: randomized.
            self.firewall = Firewall::Random;
        } else if self.samples_host.len() > 1
            && self.samples_full.get(1).is_some_and(|s| s.hits > 1)
        {
            self.firewall = Firewall::Consistent;
        } else if self.sampled > 4 {
            self.firewall = Firewall::Random;
        }
    }

    fn consistent_addresses(&self) -> Vec<SocketAddrV4> {
        let mut v = Vec::new();
        for s in &self.samples_full {
            if s.hits >= 2 || v.len() < 2 {
                v.push(SocketAddrV4::new(s.host, s.port));
            }
        }
        v
    }

    fn update_addresses(&mut self) {
        self.addresses = match self.firewall {
            Firewall::Unknown => None,
            Firewall::Random => self
                .samples_host
                .first()
                .map(|s| vec![SocketAddrV4::new(s.host, s.port)]),
            Firewall::Consistent => Some(self.consistent_addresses()),
            // Beyond JS (nat.js:137-154 has no OPEN branch and keeps none): OPEN lists where
            // it was seen, as CONSISTENT does. A node whose firewall check finished after its
            // handshake (sent as UNKNOWN, so the server punches) says OPEN in its punch round,
            // and a server behind a randomizing NAT needs an address there to punch to: a JS
            // server aborts without one (HOLEPUNCH_ABORTED; found in the NAT lab).
            Firewall::Open if !self.samples_full.is_empty() && !js_open() => {
                Some(self.consistent_addresses())
            }
            Firewall::Open => self.addresses.take(),
        };
    }
}

#[cfg(test)]
std::thread_local! {
    /// Tests: this thread's Nats list no address when OPEN, as hyperdht's do.
    pub(crate) static JS_OPEN: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

#[cfg(test)]
fn js_open() -> bool {
    JS_OPEN.with(|j| j.get())
}

#[cfg(not(test))]
fn js_open() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(h: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, h), port)
    }

    #[test]
    fn consistent_after_three_equal_samples() {
        let mut n = Nat::new(true);
        let nodes: Vec<_> = (1..=4).map(|i| a(i, 1000)).collect();
        assert_eq!(n.auto_sample(&nodes).len(), 4);
        let me = SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 5000);
        n.handle_pong(me, nodes[0]);
        n.handle_pong(me, nodes[1]);
        assert!(!n.is_analyzed());
        n.handle_pong(me, nodes[2]);
        assert!(n.is_analyzed());
        assert_eq!(n.firewall, Firewall::Consistent);
        assert_eq!(n.addresses, Some(vec![me]));
    }

    #[test]
    fn random_when_every_port_differs() {
        let mut n = Nat::new(true);
        let nodes: Vec<_> = (1..=4).map(|i| a(i, 1000)).collect();
        n.auto_sample(&nodes);
        for (i, node) in nodes.iter().enumerate() {
            n.handle_pong(
                SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 5000 + i as u16),
                *node,
            );
        }
        assert!(n.is_analyzed());
        assert_eq!(n.firewall, Firewall::Random);
        assert_eq!(
            n.addresses,
            Some(vec![SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 0)])
        );
    }

    #[test]
    fn open_when_the_dht_is_not_firewalled() {
        let mut n = Nat::new(false);
        assert_eq!(n.firewall, Firewall::Open);
        n.auto_sample(&[a(1, 1)]);
        n.handle_pong(a(9, 9), a(1, 1));
        assert!(n.is_analyzed());
        assert_eq!(n.firewall, Firewall::Open);
    }

    #[test]
    fn open_lists_where_it_was_seen() {
        let mut n = Nat::new(false);
        assert_eq!(n.addresses, None, "nothing seen yet");
        n.add(a(7, 7000), a(1, 1));
        assert_eq!(n.firewall, Firewall::Open);
        assert_eq!(n.addresses, Some(vec![a(7, 7000)]));
    }

    #[test]
    fn retry_pass_then_resolves_unknown() {
        let mut n = Nat::new(true);
        let nodes = [a(1, 1), a(2, 2)];
        assert_eq!(n.auto_sample(&nodes).len(), 2);
        n.handle_ping_failed();
        n.handle_ping_failed();
        assert!(n.wants_resample());
        // Already visited nodes are not pinged again; nothing left, so it resolves.
        assert!(n.auto_sample(&nodes).is_empty());
        assert!(n.is_analyzed());
        assert_eq!(n.firewall, Firewall::Unknown);
    }

    #[test]
    fn a_sender_counts_once_and_frozen_views_do_not_move() {
        let mut n = Nat::new(true);
        let me = a(50, 50);
        n.add(me, a(1, 1));
        n.add(me, a(1, 1));
        assert_eq!(n.sampled, 1);
        n.freeze();
        n.add(me, a(2, 2));
        n.add(me, a(3, 3));
        assert_eq!(n.firewall, Firewall::Unknown);
        n.unfreeze();
        assert_eq!(n.firewall, Firewall::Consistent);
    }
}
