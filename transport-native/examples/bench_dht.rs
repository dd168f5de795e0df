//! DHT benchmarks for `just bench` (`bench/dht.sh`, called by `bench/run.sh`): one load
//! generator for both a `hyperpunch dht bootstrap` process and a JS hyperdht node
//! (`bench/js/dht-node.js`), so both nodes get exactly the same client workload.
//!
//! ```sh
//! bench_dht announce ADDR COUNT TOPICS     # store COUNT signed announcements (COUNT/TOPICS
//!                                          # keys on each of TOPICS topics) on the node at ADDR
//! bench_dht lookups TAG ADDR SECS WINDOW PID  # LOOKUP requests for a topic holding 20 records,
//!                                          # WINDOW outstanding, for SECS seconds; the node's CPU
//!                                          # seconds come from /proc/PID
//! bench_dht rss TAG PID                    # the node's resident memory
//! ```
//!
//! Every figure is printed as `BENCH <name> <value>`.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use hyperpunch::crypto::{self, KeyPair};
use hyperpunch_core::dht::messages::{Announce, PeerRecord};
use hyperpunch_core::dht::rpc::messages::{decode, node_id, Packet, RequestPacket};
use hyperpunch_core::dht::signing::sign_announce;
use hyperpunch_core::dht::{ANNOUNCE, LOOKUP};

type Error = Box<dyn std::error::Error>;

/// The topic the lookup benchmark asks for (20 records are stored under it).
const LOOKUP_TOPIC: [u8; 32] = [0x42; 32];

fn report(name: &str, value: f64) {
    println!("BENCH {name} {value:.3}");
}

fn topic_of(i: usize) -> [u8; 32] {
    if i == 0 {
        LOOKUP_TOPIC
    } else {
        crypto::hash(&(i as u64).to_le_bytes())
    }
}

struct Client {
    sock: UdpSocket,
    to: SocketAddrV4,
    tid: u16,
    buf: Vec<u8>,
}

impl Client {
    fn new(to: SocketAddrV4) -> Result<Self, Error> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Client {
            sock,
            to,
            tid: 0,
            buf: vec![0; 65536],
        })
    }

    fn next_tid(&mut self) -> u16 {
        self.tid = self.tid.wrapping_add(1);
        self.tid
    }

    fn send(
        &mut self,
        tid: u16,
        command: u64,
        target: [u8; 32],
        token: Option<[u8; 32]>,
        value: Option<&[u8]>,
    ) -> Result<(), Error> {
        let p = RequestPacket {
            tid,
            to: self.to,
            id: None,
            token,
            internal: false,
            command,
            target: Some(target),
            value,
        }
        .encode();
        self.sock.send_to(&p, self.to)?;
        Ok(())
    }

    /// The next response: (tid, token, value length).
    fn recv(&mut self) -> Option<(u16, Option<[u8; 32]>, usize, u64)> {
        let (n, _) = self.sock.recv_from(&mut self.buf).ok()?;
        match decode(&self.buf[..n]) {
            Ok(Packet::Response(r)) => {
                Some((r.tid, r.token, r.value.map_or(0, |v| v.len()), r.error))
            }
            _ => None,
        }
    }

    /// A fresh write token (from a LOOKUP reply).
    fn token(&mut self) -> Result<[u8; 32], Error> {
        for _ in 0..50 {
            let tid = self.next_tid();
            self.send(tid, LOOKUP, LOOKUP_TOPIC, None, None)?;
            let until = Instant::now() + Duration::from_millis(500);
            while Instant::now() < until {
                if let Some((t, Some(token), _, _)) = self.recv() {
                    if t == tid {
                        return Ok(token);
                    }
                }
            }
        }
        Err("the node does not answer".into())
    }
}

fn announce(addr: SocketAddrV4, count: usize, topics: usize) -> Result<(), Error> {
    let mut c = Client::new(addr)?;
    let id = node_id(&addr);
    let keys_per_topic = count.div_ceil(topics.max(1));
    let mut token = c.token()?;
    let mut token_at = Instant::now();
    let started = Instant::now();
    let mut pending: HashMap<u16, usize> = HashMap::new();
    let mut queue: Vec<usize> = (0..count).rev().collect();
    let mut stored = 0usize;
    let mut attempts = 0usize;
    while stored < count {
        if token_at.elapsed() > Duration::from_secs(4) {
            // Tokens rotate every 7.5 s; refresh well before. Pending writes with the old one
            // are re-queued if unanswered.
            token = c.token()?;
            token_at = Instant::now();
        }
        while pending.len() < 64 {
            let Some(i) = queue.pop() else { break };
            let key = KeyPair::from_seed(&crypto::hash(&(i as u64 + 1_000_000).to_le_bytes()));
            let topic = topic_of(i / keys_per_topic);
            let peer = PeerRecord {
                public_key: key.public_key,
                relay_addresses: vec![],
            };
            let sig = sign_announce(&key, &topic, &id, &token, &peer);
            let value = Announce {
                peer: Some(peer),
                refresh: None,
                signature: Some(sig),
                bump: 0,
            }
            .encode();
            let tid = c.next_tid();
            c.send(tid, ANNOUNCE, topic, Some(token), Some(&value))?;
            pending.insert(tid, i);
            attempts += 1;
        }
        match c.recv() {
            Some((tid, _, _, 0)) => {
                if pending.remove(&tid).is_some() {
                    stored += 1;
                }
            }
            Some((tid, _, _, _)) => {
                // INVALID_TOKEN: the token rotated; send again with a fresh one.
                if let Some(i) = pending.remove(&tid) {
                    queue.push(i);
                    token_at = Instant::now() - Duration::from_secs(10);
                }
            }
            None => {
                // Lost or refused: retry what is outstanding.
                for (_, i) in pending.drain() {
                    queue.push(i);
                }
                token_at = Instant::now() - Duration::from_secs(10);
            }
        }
        if attempts > count * 4 + 1000 {
            return Err(format!("only {stored} of {count} announcements were accepted").into());
        }
    }
    eprintln!(
        "stored {count} announcements in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of /proc/PID/stat (11 and 12 after the name).
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

fn lookups(tag: &str, addr: SocketAddrV4, secs: u64, window: usize, pid: u32) -> Result<(), Error> {
    let mut c = Client::new(addr)?;
    c.sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    // Warm up and check the records are there.
    let _ = c.token()?;
    let mut pending: HashMap<u16, Instant> = HashMap::new();
    let mut done = 0u64;
    let mut value_bytes = 0u64;
    let mut lost = 0u64;
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    while Instant::now() < end {
        while pending.len() < window {
            let tid = c.next_tid();
            c.send(tid, LOOKUP, LOOKUP_TOPIC, None, None)?;
            pending.insert(tid, Instant::now());
        }
        match c.recv() {
            Some((tid, _, len, _)) => {
                if pending.remove(&tid).is_some() {
                    done += 1;
                    value_bytes += len as u64;
                }
            }
            None => {
                let now = Instant::now();
                pending.retain(|_, t| {
                    let keep = now.duration_since(*t) < Duration::from_millis(500);
                    if !keep {
                        lost += 1;
                    }
                    keep
                });
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let per_s = done as f64 / elapsed;
    eprintln!(
        "{tag}: {done} lookups in {elapsed:.1} s ({per_s:.0}/s), {:.0} B of records per reply, node CPU {cpu:.2} s, {lost} unanswered",
        value_bytes as f64 / done.max(1) as f64
    );
    if value_bytes / done.max(1) < 600 {
        return Err("the replies do not carry the 20 stored records".into());
    }
    report(&format!("dht_lookups_s_{tag}"), per_s);
    if cpu > 0.0 {
        report(&format!("dht_lookups_cpu_s_{tag}"), done as f64 / cpu);
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let addr = |s: &str| -> Result<SocketAddrV4, Error> {
        match s.parse::<SocketAddr>()? {
            SocketAddr::V4(a) => Ok(a),
            SocketAddr::V6(_) => Err("IPv4 only".into()),
        }
    };
    match arg(1) {
        "announce" => announce(addr(arg(2))?, arg(3).parse()?, arg(4).parse()?),
        "lookups" => lookups(arg(2), addr(arg(3))?, arg(4).parse()?, arg(5).parse()?, arg(6).parse()?),
        "rss" => {
            report(&format!("dht_rss_{}_kib", arg(2)), rss_kib(arg(3).parse()?));
            Ok(())
        }
        _ => Err("usage: bench_dht announce ADDR COUNT TOPICS | lookups TAG ADDR SECS WINDOW PID | rss TAG PID".into()),
    }
}
