//! nat-sampler 1.0.1: our public address as the network reports it.
//!
//! Every reply (and some requests) carries `to`, the address the remote saw us at. The sampler
//! keeps the last 16 samples as 32 slots of `(host, port)` / `(host, 0)` pairs and reports a
//! `host:port` once its hits reach a threshold that grows with the sample count, or only the
//! host (port 0, a *randomized* NAT) if only host hits do. As in JS, a sample only adds to the
//! hits of an equal sample among the last four pairs; an equal sample further back starts a new
//! counter. The samples are shared objects in JS (one object can fill many slots); here they live
//! in a small arena with reference counts, so the state stays bounded (at most 34 objects).

use core::net::Ipv4Addr;

#[derive(Debug, Clone, Copy)]
struct Sample {
    host: Ipv4Addr,
    port: u16,
    hits: i32,
    refs: u32,
}

/// The NAT sampler.
#[derive(Debug, Clone, Default)]
pub struct NatSampler {
    /// The public host, once consistent.
    pub host: Option<Ipv4Addr>,
    /// The public port, 0 when unknown or randomized.
    pub port: u16,
    /// Samples taken, counting up to 16.
    pub size: usize,
    arena: Vec<Sample>,
    free: Vec<usize>,
    a: Option<usize>,
    b: Option<usize>,
    threshold: i32,
    top: usize,
    samples: Vec<usize>,
}

impl NatSampler {
    /// An empty sampler.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when the host is known but the port is not (a NAT that randomizes ports).
    pub fn randomized(&self) -> bool {
        self.host.is_some() && self.port == 0
    }

    fn alloc(&mut self, host: Ipv4Addr, port: u16) -> usize {
        let s = Sample {
            host,
            port,
            hits: 1,
            refs: 0,
        };
        if let Some(i) = self.free.pop() {
            self.arena[i] = s;
            i
        } else {
            self.arena.push(s);
            self.arena.len() - 1
        }
    }

    fn incref(&mut self, i: usize) {
        self.arena[i].refs += 1;
    }

    fn decref(&mut self, i: usize) {
        self.arena[i].refs -= 1;
        if self.arena[i].refs == 0 {
            self.free.push(i);
        }
    }

    fn bump(&mut self, host: Ipv4Addr, port: u16, inc: usize) -> usize {
        for i in 0..4 {
            let j = (self.top as i64 - inc as i64 - 2 * i as i64) as usize & 31;
            if j >= self.samples.len() {
                return self.alloc(host, port);
            }
            let s = self.samples[j];
            if self.arena[s].port == port && self.arena[s].host == host {
                self.arena[s].hits += 1;
                return s;
            }
        }
        self.alloc(host, port)
    }

    fn set_top(&mut self, which_a: bool, new: usize) {
        let slot = if which_a { &mut self.a } else { &mut self.b };
        let old = slot.replace(new);
        self.arena[new].refs += 1;
        if let Some(o) = old {
            self.decref(o);
        }
    }

    /// Add one sample; returns the hits of its `(host, port)` counter.
    pub fn add(&mut self, host: Ipv4Addr, port: u16) -> i32 {
        // A fresh sample is not on the free list, so `b` cannot take `a`'s slot.
        let a = self.bump(host, port, 2);
        let b = self.bump(host, 0, 1);
        self.incref(a);
        self.incref(b);

        if self.samples.len() < 32 {
            self.size += 1;
            let n = self.size as i32;
            self.threshold = n - if n < 4 {
                0
            } else if n < 8 {
                1
            } else if n < 12 {
                2
            } else {
                3
            };
            self.samples.push(a);
            self.samples.push(b);
            self.top += 2;
        } else {
            if self.top == 32 {
                self.top = 0;
            }
            let oa = self.samples[self.top];
            self.samples[self.top] = a;
            self.top += 1;
            self.arena[oa].hits -= 1;
            self.decref(oa);

            let ob = self.samples[self.top];
            self.samples[self.top] = b;
            self.top += 1;
            self.arena[ob].hits -= 1;
            self.decref(ob);
        }

        if self
            .a
            .is_none_or(|x| self.arena[x].hits < self.arena[a].hits)
        {
            self.set_top(true, a);
        }
        if self
            .b
            .is_none_or(|x| self.arena[x].hits < self.arena[b].hits)
        {
            self.set_top(false, b);
        }

        let (ta, tb) = (self.a.unwrap_or(a), self.b.unwrap_or(b));
        if self.arena[ta].hits >= self.threshold {
            self.host = Some(self.arena[ta].host);
            self.port = self.arena[ta].port;
        } else if self.arena[tb].hits >= self.threshold {
            self.host = Some(self.arena[tb].host);
            self.port = 0;
        } else {
            self.host = None;
            self.port = 0;
        }
        self.arena[a].hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn check(n: &mut NatSampler, host: &str, port: u16, hits: i32, want: (Option<&str>, u16)) {
        assert_eq!(n.add(ip(host), port), hits, "hits of {host}:{port}");
        assert_eq!((n.host, n.port), (want.0.map(ip), want.1));
    }

    // nat-sampler's own test.js, case by case.
    #[test]
    fn small_consistent_samples() {
        let mut n = NatSampler::new();
        for hits in 1..=3 {
            check(&mut n, "127.0.0.1", 9090, hits, (Some("127.0.0.1"), 9090));
        }
    }

    #[test]
    fn small_consistent_samples_with_errors() {
        let mut n = NatSampler::new();
        check(&mut n, "127.0.0.1", 9090, 1, (Some("127.0.0.1"), 9090));
        check(&mut n, "127.0.0.1", 9091, 1, (Some("127.0.0.1"), 0));
        check(&mut n, "127.0.0.1", 9090, 2, (Some("127.0.0.1"), 0));
        check(&mut n, "127.0.0.1", 9090, 3, (Some("127.0.0.1"), 9090));
        check(&mut n, "127.0.0.1", 9091, 2, (Some("127.0.0.1"), 0));
        assert!(n.randomized());
    }

    #[test]
    fn host_consistency() {
        let mut n = NatSampler::new();
        assert_eq!(n.add(ip("127.0.0.1"), 9090), 1);
        assert_eq!(n.add(ip("127.0.0.2"), 9090), 1);
        assert_eq!(n.add(ip("127.0.0.1"), 9090), 2);
        assert_eq!(n.add(ip("127.0.0.2"), 9090), 2);
        assert_eq!((n.host, n.port), (None, 0));
        check(&mut n, "127.0.0.1", 9090, 3, (None, 0));
        check(&mut n, "127.0.0.1", 9090, 4, (None, 0));
        check(&mut n, "127.0.0.1", 9090, 5, (None, 0));
        check(&mut n, "127.0.0.1", 9091, 1, (Some("127.0.0.1"), 0));
    }

    #[test]
    fn can_recover_up_to_3_errors() {
        let mut n = NatSampler::new();
        for _ in 0..20 {
            n.add(ip("127.0.0.1"), 9090);
        }
        assert_eq!(n.add(ip("127.0.0.1"), 9091), 1);
        assert_eq!(n.add(ip("127.0.0.2"), 9091), 1);
        assert_eq!(n.add(ip("127.0.0.3"), 9091), 1);
        assert_eq!((n.host, n.port), (Some(ip("127.0.0.1")), 9090));
        for _ in 0..5 {
            n.add(ip("127.0.0.1"), 9090);
        }
        assert_eq!((n.host, n.port), (Some(ip("127.0.0.1")), 9090));
        n.add(ip("127.0.0.1"), 9095);
        assert_eq!((n.host, n.port), (Some(ip("127.0.0.1")), 0));
        n.add(ip("127.0.0.2"), 9095);
        assert_eq!((n.host, n.port), (Some(ip("127.0.0.1")), 0));
        n.add(ip("127.0.0.2"), 9095);
        assert_eq!((n.host, n.port), (None, 0));
    }

    #[test]
    fn long_runs_stay_bounded() {
        let mut n = NatSampler::new();
        for i in 0..10_000u32 {
            n.add(ip("1.2.3.4"), 5000);
            if i % 7 == 0 {
                n.add(ip("9.9.9.9"), (i % 60000) as u16);
            }
        }
        assert!(n.arena.len() <= 40, "arena {}", n.arena.len());
        assert_eq!(n.size, 16);
        assert_eq!(n.host, Some(ip("1.2.3.4")));
    }
}
