//! The server's announcer (hyperdht lib/announcer.js): a FIND_PEER query towards `H(pk)`, then a
//! signed ANNOUNCE to the 3 closest replies. Those nodes keep a forward entry for the server and
//! become its relays (`holepunch.relays` in its handshake replies). Re-announced every ~5 min;
//! nodes of the previous round that were not announced to again are unannounced.

use core::net::SocketAddrV4;
use core::time::Duration;
use std::collections::{BTreeSet, HashMap};

use crate::crypto::{hash_batch, namespace, KeyPair};
use crate::dht::messages_connect::{command, RelayInfo};
use crate::dht::rpc::{Node, NodeId};
use crate::dht::rpc::{QueryId, QueryOptions, RequestId, RequestSpec, Response};
use crate::encoding::write_uint;

/// ANNOUNCE / UNANNOUNCE commands.
pub const ANNOUNCE: u64 = 4;
/// See [`ANNOUNCE`].
pub const UNANNOUNCE: u64 = 5;
/// Relays announced to (`pickBest`).
pub const RELAYS: usize = 3;
/// Time between announce rounds (JS: 100 relay pings 3 s apart).
pub const REFRESH: Duration = Duration::from_secs(300);
/// An announce round that found no relay is retried this soon.
pub const RETRY: Duration = Duration::from_secs(5);

/// The encoded `peer` record `{publicKey, relayAddresses}`.
pub fn encode_peer(public_key: &[u8; 32], relay_addresses: &[SocketAddrV4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(33 + 6 * relay_addresses.len());
    out.extend_from_slice(public_key);
    write_uint(&mut out, relay_addresses.len() as u64);
    for a in relay_addresses {
        out.extend_from_slice(&a.ip().octets());
        out.extend_from_slice(&a.port().to_le_bytes());
    }
    out
}

/// The 64-byte announce (`ns_index` 4) or unannounce (5) signable of persistent.js:282-297.
pub fn signable(
    ns_index: usize,
    target: &[u8; 32],
    node_id: &NodeId,
    token: &[u8; 32],
    peer: &[u8],
    refresh: Option<&[u8; 32]>,
) -> [u8; 64] {
    let ns = namespace(b"hyperswarm/dht", 6)[ns_index];
    let inner = hash_batch(&[
        target,
        &node_id[..],
        token,
        peer,
        refresh.map(|r| &r[..]).unwrap_or(&[]),
    ]);
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&ns);
    out[32..].copy_from_slice(&inner);
    out
}

/// The `announce` value `{peer, signature}` (flags 1|4).
pub fn announce_value(peer: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + peer.len() + 64);
    out.push(1 | 4);
    out.extend_from_slice(peer);
    out.extend_from_slice(signature);
    out
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Announce {
        node: SocketAddrV4,
        to: SocketAddrV4,
    },
    UnannounceLookup,
    Unannounce,
}

/// The announcer of one listening key pair.
#[derive(Debug)]
pub struct Announcer {
    /// `None`: the owner signs ([`Announcer::take_sign_requests`], [`Announcer::signed`]).
    key_pair: Option<KeyPair>,
    /// Announcements waiting for the owner's signature: sign id → (node, our address as it
    /// saw it, its token).
    signs: HashMap<u64, (SocketAddrV4, SocketAddrV4, [u8; 32])>,
    sign_requests: Vec<(u64, [u8; 32], NodeId)>,
    next_sign: u64,
    target: [u8; 32],
    record: Vec<u8>,
    query: Option<QueryId>,
    closest: Vec<SocketAddrV4>,
    pending: HashMap<RequestId, Pending>,
    round_relays: Vec<RelayInfo>,
    announced: BTreeSet<SocketAddrV4>,
    previous: BTreeSet<SocketAddrV4>,
    next_at: Option<Duration>,
    stopped: bool,
    new_queries: Vec<QueryId>,
    new_requests: Vec<RequestId>,
    /// The relays of the last finished round (`holepunch.relays`).
    pub relays: Vec<RelayInfo>,
    /// Their addresses, max 3 (`relayAddresses`).
    pub relay_addresses: Vec<SocketAddrV4>,
    /// Set after the first round finished (JS `listen()` resolves).
    pub ready: bool,
}

impl Announcer {
    /// An announcer for `key_pair`; call [`start`](Self::start).
    pub fn new(key_pair: KeyPair, target: [u8; 32]) -> Self {
        let mut a = Self::new_external(key_pair.public_key, target);
        a.key_pair = Some(key_pair);
        a
    }

    /// An announcer for a key pair its owner keeps: each announcement's signature is asked
    /// for ([`Announcer::take_sign_requests`]) and comes back through [`Announcer::signed`].
    /// Without the secret key nothing is unannounced (the records expire on their own).
    pub fn new_external(public_key: [u8; 32], target: [u8; 32]) -> Self {
        let record = encode_peer(&public_key, &[]);
        Announcer {
            key_pair: None,
            signs: HashMap::new(),
            sign_requests: Vec::new(),
            next_sign: 0,
            target,
            record,
            query: None,
            closest: Vec::new(),
            pending: HashMap::new(),
            round_relays: Vec::new(),
            announced: BTreeSet::new(),
            previous: BTreeSet::new(),
            next_at: None,
            stopped: false,
            new_queries: Vec::new(),
            new_requests: Vec::new(),
            relays: Vec::new(),
            relay_addresses: Vec::new(),
            ready: false,
        }
    }

    /// The stored record.
    pub fn record(&self) -> &[u8] {
        &self.record
    }

    /// Starts a round (`_update`).
    pub fn start(&mut self, now: Duration, node: &mut Node) {
        if self.stopped || self.query.is_some() {
            return;
        }
        self.next_at = None;
        let opts = QueryOptions {
            nodes: self.closest.clone(),
            ..QueryOptions::default()
        };
        match node.query(now, self.target, command::FIND_PEER, None, opts) {
            Ok(q) => {
                self.query = Some(q);
                self.new_queries.push(q);
            }
            Err(_) => self.next_at = Some(now + RETRY),
        }
    }

    /// Queries and requests started since the last call, for the owner's routing tables.
    pub fn take_new_ids(&mut self) -> (Vec<QueryId>, Vec<RequestId>) {
        (
            std::mem::take(&mut self.new_queries),
            std::mem::take(&mut self.new_requests),
        )
    }

    /// Announcements to sign (external signer): (sign id, the node's token, its id). The
    /// signable is [`signable`]`(4, target, id, token, record, None)`.
    pub fn take_sign_requests(&mut self) -> Vec<(u64, [u8; 32], NodeId)> {
        std::mem::take(&mut self.sign_requests)
    }

    /// The owner's signature for sign id `sign` (`None`: refused; that node is skipped).
    pub fn signed(
        &mut self,
        now: Duration,
        node: &mut Node,
        sign: u64,
        signature: Option<[u8; 64]>,
    ) {
        let Some((addr, to, token)) = self.signs.remove(&sign) else {
            return;
        };
        if let (Some(sig), false) = (signature, self.stopped) {
            self.send_announce(now, node, addr, to, token, &sig);
        }
        self.maybe_finish_round(now, node);
    }

    fn send_announce(
        &mut self,
        now: Duration,
        node: &mut Node,
        addr: SocketAddrV4,
        to: SocketAddrV4,
        token: [u8; 32],
        sig: &[u8; 64],
    ) {
        let mut spec = RequestSpec::new(addr, ANNOUNCE);
        spec.token = Some(token);
        spec.target = Some(self.target);
        spec.value = Some(announce_value(&self.record, sig));
        if let Ok(rid) = node.request(now, spec) {
            self.new_requests.push(rid);
            self.pending
                .insert(rid, Pending::Announce { node: addr, to });
        }
    }

    /// Whether this query is ours.
    pub fn owns_query(&self, id: QueryId) -> bool {
        self.query == Some(id)
    }

    /// Whether this request is ours.
    pub fn owns_request(&self, id: RequestId) -> bool {
        self.pending.contains_key(&id)
    }

    /// The query ended: announce to the best 3 closest replies.
    pub fn on_query_done(&mut self, now: Duration, node: &mut Node, closest: Vec<Response>) {
        self.query = None;
        if self.stopped {
            return;
        }
        self.closest = closest.iter().map(|r| r.from.addr).collect();
        self.round_relays.clear();
        self.previous = std::mem::take(&mut self.announced);
        for reply in closest.iter().take(RELAYS) {
            let (Some(token), Some(id)) = (reply.token, reply.from.id) else {
                continue;
            };
            match &self.key_pair {
                Some(kp) => {
                    let sig = kp.sign(&signable(4, &self.target, &id, &token, &self.record, None));
                    self.send_announce(now, node, reply.from.addr, reply.to, token, &sig);
                }
                None => {
                    self.next_sign += 1;
                    self.signs
                        .insert(self.next_sign, (reply.from.addr, reply.to, token));
                    self.sign_requests.push((self.next_sign, token, id));
                }
            }
        }
        self.maybe_finish_round(now, node);
    }

    fn maybe_finish_round(&mut self, now: Duration, node: &mut Node) {
        if !self.signs.is_empty()
            || self
                .pending
                .values()
                .any(|p| matches!(p, Pending::Announce { .. }))
        {
            return;
        }
        self.relays = std::mem::take(&mut self.round_relays);
        let mut addrs = Vec::new();
        if !node.is_firewalled() {
            if let Some(a) = node.remote_address() {
                addrs.push(a);
            }
        }
        for r in &self.relays {
            if addrs.len() < RELAYS {
                addrs.push(r.relay_address);
            }
        }
        self.relay_addresses = addrs;
        self.ready = true;
        self.next_at = Some(
            now + if self.relays.is_empty() {
                RETRY
            } else {
                REFRESH
            },
        );
        let gone: Vec<_> = self.previous.difference(&self.announced).copied().collect();
        for to in gone {
            self.unannounce_lookup(now, node, to);
        }
    }

    fn unannounce_lookup(&mut self, now: Duration, node: &mut Node, to: SocketAddrV4) {
        let mut spec = RequestSpec::new(to, command::FIND_PEER);
        spec.target = Some(self.target);
        if let Ok(rid) = node.request(now, spec) {
            self.new_requests.push(rid);
            self.pending.insert(rid, Pending::UnannounceLookup);
        }
    }

    /// A response to one of our requests (error code included).
    pub fn on_response(
        &mut self,
        now: Duration,
        node: &mut Node,
        id: RequestId,
        res: Option<&Response>,
    ) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        match p {
            Pending::Announce { node: relay, to } => {
                if res.is_some_and(|r| r.error == 0) {
                    self.round_relays.push(RelayInfo {
                        relay_address: relay,
                        peer_address: to,
                    });
                    self.announced.insert(relay);
                }
                self.maybe_finish_round(now, node);
            }
            Pending::UnannounceLookup => {
                let Some(r) = res else { return };
                let (Some(token), Some(nid)) = (r.token, r.from.id) else {
                    return;
                };
                if r.value.is_none() {
                    return;
                }
                let Some(kp) = &self.key_pair else { return };
                let sig = kp.sign(&signable(5, &self.target, &nid, &token, &self.record, None));
                let mut spec = RequestSpec::new(r.from.addr, UNANNOUNCE);
                spec.token = Some(token);
                spec.target = Some(self.target);
                spec.value = Some(announce_value(&self.record, &sig));
                if let Ok(rid) = node.request(now, spec) {
                    self.new_requests.push(rid);
                    self.pending.insert(rid, Pending::Unannounce);
                }
            }
            Pending::Unannounce => {}
        }
    }

    /// `stop()`: unannounce from the current relays.
    pub fn stop(&mut self, now: Duration, node: &mut Node) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.next_at = None;
        self.signs.clear();
        self.sign_requests.clear();
        if self.key_pair.is_none() {
            return;
        }
        let relays: Vec<_> = self.announced.iter().copied().collect();
        for to in relays {
            self.unannounce_lookup(now, node, to);
        }
    }

    /// Whether the relay at `addr` is one of ours (`isRelay`).
    pub fn is_relay(&self, addr: &SocketAddrV4) -> bool {
        self.announced.contains(addr)
            || self.previous.contains(addr)
            || self.relays.iter().any(|r| r.relay_address == *addr)
    }

    /// When the next round is due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.next_at
    }

    /// Runs the refresh timer.
    pub fn handle_timeout(&mut self, now: Duration, node: &mut Node) {
        if self.next_at.is_some_and(|t| t <= now) {
            self.start(now, node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signables_match_js() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/vectors/net/vectors-static.json"
        );
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let a = &j["hyperdht"]["announce"];
        let kp = KeyPair::from_seed(&[1; 32]);
        let s = signable(
            4,
            &[0x33; 32],
            &[0x55u8; 32],
            &[0x44; 32],
            &encode_peer(&kp.public_key, &[]),
            None,
        );
        assert_eq!(hex::encode(s), a["signable"]);
        assert_eq!(hex::encode(kp.sign(&s)), a["signature"]);
        let value = announce_value(&encode_peer(&kp.public_key, &[]), &kp.sign(&s));
        assert_eq!(hex::encode(value), a["encodedAnnounceValue"]);
        let u = signable(
            5,
            &[0x33; 32],
            &[0x55u8; 32],
            &[0x44; 32],
            &encode_peer(&kp.public_key, &[]),
            None,
        );
        assert_eq!(hex::encode(kp.sign(&u)), a["unannounceSignature"]);
    }
}
