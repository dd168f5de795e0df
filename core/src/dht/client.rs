//! hyperdht's client operations (index.js): lookup, findPeer, announce (with `clear`),
//! unannounce (lookupAndUnannounce), immutablePut/Get, mutablePut/Get, each a query on the
//! dht-rpc node with its own map and commit.

use core::net::SocketAddrV4;
use core::time::Duration;

use super::messages::{Announce, LookupReply, MutableGetResponse, MutablePutRequest, PeerRecord};
use super::node::{
    Event, FindPeerResult, HyperDht, LookupResult, MutableValue, OpError, OpId, OpOutput,
};
use super::rpc::{
    Commit, CommitAction, QueryError, QueryId, QueryOptions, QueryResult, RequestSpec, Response,
};
use super::signing::{sign_announce, sign_mutable, sign_unannounce, verify_mutable};
use super::*;
use crate::crypto::{self, KeyPair};
use crate::encoding::write_uint;

/// Options of [`HyperDht::announce`].
#[derive(Debug, Clone, Default)]
pub struct AnnounceOptions {
    /// First remove our older announcements from the nodes that list us (JS `clear`).
    pub clear: bool,
    /// The topic's bump (JS `bump`, ms since the Unix epoch; 0: none).
    pub bump: u64,
    /// Start from these nodes (JS `closestNodes`), e.g. the last announce's.
    pub nodes: Vec<SocketAddrV4>,
}

/// What a request an operation made is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// An UNANNOUNCE sent while walking (the commit waits for these).
    Side,
    /// A commit request (the query counts it).
    Commit,
}

/// Who signs an announcement.
#[derive(Debug, Clone)]
pub(crate) enum Signer {
    /// Here, with the key pair.
    Local(Box<KeyPair>),
    /// The key pair's owner, asked per storing node ([`Event::SignAnnounce`]).
    External([u8; 32]),
}

impl Signer {
    fn public_key(&self) -> [u8; 32] {
        match self {
            Signer::Local(kp) => kp.public_key,
            Signer::External(pk) => *pk,
        }
    }
}

/// An ANNOUNCE waiting for its external signature.
#[derive(Debug, Clone)]
pub(crate) struct PendingSign {
    to: SocketAddrV4,
    token: [u8; 32],
    peer: PeerRecord,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Lookup,
    FindPeer,
    Announce {
        target: [u8; 32],
        key_pair: Signer,
        relay_addresses: Vec<SocketAddrV4>,
        bump: u64,
        clear: bool,
    },
    Unannounce {
        target: [u8; 32],
        key_pair: Box<KeyPair>,
    },
    /// An unannounce signed by the key pair's owner ([`Event::SignAnnounce`] of an
    /// [`HyperDht::unannounce_external`] operation).
    UnannounceExternal {
        target: [u8; 32],
        public_key: [u8; 32],
    },
    ImmutablePut {
        hash: [u8; 32],
        value: Vec<u8>,
    },
    ImmutableGet {
        hash: [u8; 32],
    },
    MutablePut {
        target: [u8; 32],
        public_key: [u8; 32],
        seq: u64,
        signature: [u8; 64],
        encoded: Vec<u8>,
    },
    MutableGet {
        public_key: [u8; 32],
        seq: u64,
        latest: bool,
        best: Option<MutableValue>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub kind: Kind,
    pub query: Option<QueryId>,
    /// Side requests (unannounces) not yet settled.
    pub side: usize,
    /// A commit waiting for the side requests.
    pub pending_commit: Option<Vec<Response>>,
    /// Announcements waiting for their external signatures, by sign id.
    pub signs: std::collections::BTreeMap<u64, PendingSign>,
    pub next_sign: u64,
}

fn uint_bytes(n: u64) -> Vec<u8> {
    let mut v = Vec::new();
    write_uint(&mut v, n);
    v
}

/// JS `mapLookup`.
fn map_lookup(r: &Response) -> Option<LookupResult> {
    let l = LookupReply::decode(r.value.as_deref()?).ok()?;
    Some(LookupResult {
        from: r.from,
        to: r.to,
        token: r.token,
        peers: l.peers,
        bump: l.bump,
    })
}

impl HyperDht {
    fn start_op(
        &mut self,
        now: Duration,
        kind: Kind,
        target: [u8; 32],
        command: u64,
        value: Option<Vec<u8>>,
        opts: QueryOptions,
    ) -> Result<OpId, OpError> {
        let q = self.rpc.query(now, target, command, value, opts)?;
        let id = self.new_op();
        self.ops.insert(
            id,
            Op {
                kind,
                query: Some(q),
                side: 0,
                pending_commit: None,
                signs: std::collections::BTreeMap::new(),
                next_sign: 0,
            },
        );
        self.query_ops.insert(q, id);
        self.process();
        Ok(id)
    }

    /// Find the announcers of `target` (JS `dht.lookup(topic)`): [`Event::Lookup`] per reply
    /// with records, then [`Event::OpDone`].
    pub fn lookup(&mut self, now: Duration, target: [u8; 32]) -> Result<OpId, OpError> {
        self.start_op(
            now,
            Kind::Lookup,
            target,
            LOOKUP,
            None,
            QueryOptions::default(),
        )
    }

    /// Find the nodes that relay to the server with this public key (JS `dht.findPeer`):
    /// [`Event::FindPeer`] per reply with a record.
    pub fn find_peer(&mut self, now: Duration, public_key: &[u8; 32]) -> Result<OpId, OpError> {
        let target = crypto::hash(public_key);
        self.start_op(
            now,
            Kind::FindPeer,
            target,
            FIND_PEER,
            None,
            QueryOptions::default(),
        )
    }

    /// Announce `key_pair`'s public key (with up to 3 relay addresses) under `target` on the
    /// closest nodes (JS `dht.announce(target, keyPair, relayAddresses, opts)`). The walk's
    /// replies come as [`Event::Lookup`] (announcing also finds the other announcers).
    pub fn announce(
        &mut self,
        now: Duration,
        target: [u8; 32],
        key_pair: &KeyPair,
        relay_addresses: Vec<SocketAddrV4>,
        opts: AnnounceOptions,
    ) -> Result<OpId, OpError> {
        if opts.clear {
            self.local_unannounce(&target, &key_pair.public_key);
        }
        let kind = Kind::Announce {
            target,
            key_pair: Signer::Local(Box::new(key_pair.clone())),
            relay_addresses,
            bump: opts.bump,
            clear: opts.clear,
        };
        let q = QueryOptions {
            commit: Commit::External,
            nodes: opts.nodes,
            ..QueryOptions::default()
        };
        self.start_op(now, kind, target, LOOKUP, None, q)
    }

    /// [`HyperDht::announce`] of `public_key` with the signatures made by the key pair's owner
    /// (JS `announce(target, keyPair, relayAddresses, { signAnnounce })`, as a dht-relay does
    /// for a non-custodial client): the node never holds the secret key. Each storing node's
    /// record waits for its [`Event::SignAnnounce`] to be answered with
    /// [`HyperDht::announce_signed`]; the operation ends once every one was. No `clear` (it
    /// would need unannounce signatures too).
    pub fn announce_external(
        &mut self,
        now: Duration,
        target: [u8; 32],
        public_key: [u8; 32],
        relay_addresses: Vec<SocketAddrV4>,
        opts: AnnounceOptions,
    ) -> Result<OpId, OpError> {
        let kind = Kind::Announce {
            target,
            key_pair: Signer::External(public_key),
            relay_addresses,
            bump: opts.bump,
            clear: false,
        };
        let q = QueryOptions {
            commit: Commit::External,
            nodes: opts.nodes,
            ..QueryOptions::default()
        };
        self.start_op(now, kind, target, LOOKUP, None, q)
    }

    /// The owner's signature of one storing node's record (`None`: it refused; that node is
    /// skipped). Anything not waited for is ignored.
    pub fn announce_signed(&mut self, op: OpId, sign: u64, signature: Option<[u8; 64]>) {
        let Some(o) = self.ops.get_mut(&op) else {
            return;
        };
        let Some(p) = o.signs.remove(&sign) else {
            return;
        };
        if let Kind::UnannounceExternal { target, .. } = o.kind {
            let signature = signature.map(|signature| Announce {
                peer: Some(p.peer),
                refresh: None,
                signature: Some(signature),
                bump: 0,
            });
            let sent = signature.and_then(|value| {
                let mut spec = RequestSpec::new(p.to, UNANNOUNCE);
                spec.token = Some(p.token);
                spec.target = Some(target);
                spec.value = Some(value.encode());
                let now = self.rpc.now();
                self.rpc.request(now, spec).ok()
            });
            match sent {
                // Settled (and counted down) when its response comes.
                Some(rid) => {
                    self.request_ops.insert(rid, (op, Role::Side));
                }
                None => self.op_request_settled(op, Role::Side, None),
            }
            self.process();
            return;
        }
        let (Some(q), Kind::Announce { target, bump, .. }) = (o.query, &o.kind) else {
            return;
        };
        let action = match signature {
            Some(signature) => {
                let value = Announce {
                    peer: Some(p.peer),
                    refresh: None,
                    signature: Some(signature),
                    bump: *bump,
                }
                .encode();
                let mut spec = RequestSpec::new(p.to, ANNOUNCE);
                spec.token = Some(p.token);
                spec.target = Some(*target);
                spec.value = Some(value);
                CommitAction::Request(spec)
            }
            None => CommitAction::Done(false),
        };
        let now = self.rpc.now();
        if let Ok(Some(rid)) = self.rpc.commit(now, q, action) {
            self.request_ops.insert(rid, (op, Role::Commit));
        }
        self.process();
    }

    /// Remove `key_pair`'s announcement of `target` from the nodes that list it (JS
    /// `dht.unannounce`, via `lookupAndUnannounce`).
    pub fn unannounce(
        &mut self,
        now: Duration,
        target: [u8; 32],
        key_pair: &KeyPair,
    ) -> Result<OpId, OpError> {
        self.local_unannounce(&target, &key_pair.public_key);
        let kind = Kind::Unannounce {
            target,
            key_pair: Box::new(key_pair.clone()),
        };
        let q = QueryOptions {
            commit: Commit::External,
            ..QueryOptions::default()
        };
        self.start_op(now, kind, target, LOOKUP, None, q)
    }

    /// [`HyperDht::unannounce`] with the signatures made by the key pair's owner (JS
    /// `lookupAndUnannounce(target, keyPair, { signUnannounce })`, as a dht-relay does for a
    /// non-custodial client): each node that lists `public_key` asks for its signature with an
    /// [`Event::SignAnnounce`] of this operation, whose signable is the unannounce one
    /// ([`sign_unannounce`]'s, no relay addresses); answer with [`HyperDht::announce_signed`].
    pub fn unannounce_external(
        &mut self,
        now: Duration,
        target: [u8; 32],
        public_key: [u8; 32],
    ) -> Result<OpId, OpError> {
        self.local_unannounce(&target, &public_key);
        let kind = Kind::UnannounceExternal { target, public_key };
        let q = QueryOptions {
            commit: Commit::External,
            ..QueryOptions::default()
        };
        self.start_op(now, kind, target, LOOKUP, None, q)
    }

    fn local_unannounce(&mut self, target: &[u8; 32], pk: &[u8; 32]) {
        if let Some(p) = self.persistent.as_mut() {
            p.unannounce(&mut self.router, target, pk);
        }
    }

    /// Store `value` under its BLAKE2b-256 hash on the closest nodes (JS `immutablePut`).
    pub fn immutable_put(&mut self, now: Duration, value: Vec<u8>) -> Result<OpId, OpError> {
        let hash = crypto::hash(&value);
        let q = QueryOptions {
            commit: Commit::External,
            ..QueryOptions::default()
        };
        self.start_op(
            now,
            Kind::ImmutablePut { hash, value },
            hash,
            IMMUTABLE_GET,
            None,
            q,
        )
    }

    /// Fetch the value whose hash is `hash` (JS `immutableGet`): the first reply whose value
    /// hashes to it ends the operation.
    pub fn immutable_get(&mut self, now: Duration, hash: [u8; 32]) -> Result<OpId, OpError> {
        self.start_op(
            now,
            Kind::ImmutableGet { hash },
            hash,
            IMMUTABLE_GET,
            None,
            QueryOptions::default(),
        )
    }

    /// Store a signed `value` with sequence number `seq` under H(public key) (JS `mutablePut`).
    pub fn mutable_put(
        &mut self,
        now: Duration,
        key_pair: &KeyPair,
        value: Vec<u8>,
        seq: u64,
    ) -> Result<OpId, OpError> {
        let target = crypto::hash(&key_pair.public_key);
        let signature = sign_mutable(key_pair, seq, &value);
        let encoded = MutablePutRequest {
            public_key: key_pair.public_key,
            seq,
            value,
            signature,
        }
        .encode();
        let kind = Kind::MutablePut {
            target,
            public_key: key_pair.public_key,
            seq,
            signature,
            encoded,
        };
        let q = QueryOptions {
            commit: Commit::External,
            ..QueryOptions::default()
        };
        self.start_op(now, kind, target, MUTABLE_GET, Some(uint_bytes(0)), q)
    }

    /// Fetch the mutable record of `public_key` with a sequence number of at least `seq` (JS
    /// `mutableGet`): with `latest` the highest valid one seen, otherwise the first.
    pub fn mutable_get(
        &mut self,
        now: Duration,
        public_key: [u8; 32],
        seq: u64,
        latest: bool,
    ) -> Result<OpId, OpError> {
        let target = crypto::hash(&public_key);
        let kind = Kind::MutableGet {
            public_key,
            seq,
            latest,
            best: None,
        };
        self.start_op(
            now,
            kind,
            target,
            MUTABLE_GET,
            Some(uint_bytes(seq)),
            QueryOptions::default(),
        )
    }

    /// Stop an operation: it ends with [`OpError::Cancelled`].
    pub fn cancel(&mut self, op: OpId) {
        self.finish_op(op, Err(OpError::Cancelled));
    }

    fn finish_op(&mut self, op: OpId, result: Result<OpOutput, OpError>) {
        let Some(o) = self.ops.remove(&op) else {
            return;
        };
        if let Some(q) = o.query {
            if self.query_ops.remove(&q).is_some() {
                self.rpc.destroy_query(q);
            }
        }
        self.request_ops.retain(|_, (id, _)| *id != op);
        self.events.push_back(Event::OpDone { op, result });
    }

    pub(crate) fn op_reply(&mut self, op: OpId, reply: Response) {
        let Some(o) = self.ops.get_mut(&op) else {
            return;
        };
        match &mut o.kind {
            Kind::Lookup
            | Kind::Announce { clear: false, .. }
            | Kind::Announce {
                key_pair: Signer::External(_),
                ..
            } => {
                if let Some(r) = map_lookup(&reply) {
                    self.events.push_back(Event::Lookup { op, reply: r });
                }
            }
            Kind::Announce {
                clear: true,
                target,
                key_pair: Signer::Local(key_pair),
                ..
            } => {
                let Some(r) = map_lookup(&reply) else { return };
                let (target, key_pair) = (*target, (**key_pair).clone());
                self.unannounce_if_listed(op, &r, target, &key_pair);
                self.events.push_back(Event::Lookup { op, reply: r });
            }
            Kind::Unannounce { target, key_pair } => {
                let Some(r) = map_lookup(&reply) else { return };
                let (target, key_pair) = (*target, (**key_pair).clone());
                self.unannounce_if_listed(op, &r, target, &key_pair);
                self.events.push_back(Event::Lookup { op, reply: r });
            }
            Kind::UnannounceExternal { target, public_key } => {
                let Some(r) = map_lookup(&reply) else { return };
                let (target, public_key) = (*target, *public_key);
                let listed =
                    r.peers.len() >= 20 || r.peers.iter().any(|p| p.public_key == public_key);
                if let (true, Some(token), Some(id)) = (listed, r.token, r.from.id) {
                    // The owner signs; the commit waits for this side request.
                    let sign = o.next_sign;
                    o.next_sign += 1;
                    o.side += 1;
                    o.signs.insert(
                        sign,
                        PendingSign {
                            to: r.from.addr,
                            token,
                            peer: PeerRecord {
                                public_key,
                                relay_addresses: Vec::new(),
                            },
                        },
                    );
                    self.events.push_back(Event::SignAnnounce {
                        op,
                        sign,
                        target,
                        token,
                        peer_id: id,
                        relay_addresses: Vec::new(),
                    });
                }
                self.events.push_back(Event::Lookup { op, reply: r });
            }
            Kind::FindPeer => {
                let peer = reply
                    .value
                    .as_deref()
                    .and_then(|v| PeerRecord::decode(v).ok());
                if let Some(peer) = peer {
                    self.events.push_back(Event::FindPeer {
                        op,
                        reply: FindPeerResult {
                            from: reply.from,
                            to: reply.to,
                            token: reply.token,
                            peer,
                        },
                    });
                }
            }
            Kind::ImmutableGet { hash } => {
                if let Some(v) = reply.value {
                    if crypto::hash(&v) == *hash {
                        self.finish_op(op, Ok(OpOutput::ImmutableGet(Some((v, reply.from.addr)))));
                    }
                }
            }
            Kind::MutableGet {
                public_key,
                seq,
                latest,
                best,
            } => {
                let Some(m) = reply
                    .value
                    .as_deref()
                    .and_then(|v| MutableGetResponse::decode(v).ok())
                else {
                    return;
                };
                if best.as_ref().is_some_and(|b| m.seq <= b.seq) {
                    return;
                }
                if m.seq < *seq || !verify_mutable(&m.signature, m.seq, &m.value, public_key) {
                    return;
                }
                let found = MutableValue {
                    seq: m.seq,
                    value: m.value,
                    signature: m.signature,
                    from: reply.from.addr,
                };
                if !*latest {
                    self.finish_op(op, Ok(OpOutput::MutableGet(Some(found))));
                } else {
                    *best = Some(found);
                }
            }
            Kind::ImmutablePut { .. } | Kind::MutablePut { .. } => {}
        }
    }

    /// lookupAndUnannounce's map: unannounce from a node that lists us (or is full).
    fn unannounce_if_listed(&mut self, op: OpId, r: &LookupResult, target: [u8; 32], kp: &KeyPair) {
        let Some(token) = r.token else { return };
        let found = r.peers.len() >= 20 || r.peers.iter().any(|p| p.public_key == kp.public_key);
        let Some(id) = r.from.id else { return };
        if !found {
            return;
        }
        let peer = PeerRecord {
            public_key: kp.public_key,
            relay_addresses: Vec::new(),
        };
        let signature = sign_unannounce(kp, &target, &id, &token, &peer);
        let value = Announce {
            peer: Some(peer),
            refresh: None,
            signature: Some(signature),
            bump: 0,
        }
        .encode();
        let mut spec = RequestSpec::new(r.from.addr, UNANNOUNCE);
        spec.token = Some(token);
        spec.target = Some(target);
        spec.value = Some(value);
        let now = self.rpc.now();
        if let Ok(rid) = self.rpc.request(now, spec) {
            self.request_ops.insert(rid, (op, Role::Side));
            if let Some(o) = self.ops.get_mut(&op) {
                o.side += 1;
            }
        }
    }

    pub(crate) fn op_commit(&mut self, op: OpId, replies: Vec<Response>) {
        let Some(o) = self.ops.get_mut(&op) else {
            return;
        };
        let waits = matches!(
            o.kind,
            Kind::Unannounce { .. }
                | Kind::UnannounceExternal { .. }
                | Kind::Announce { clear: true, .. }
        );
        if waits && o.side > 0 {
            o.pending_commit = Some(replies);
            return;
        }
        self.run_commit(op, replies);
    }

    fn run_commit(&mut self, op: OpId, replies: Vec<Response>) {
        let Some(o) = self.ops.get(&op) else { return };
        let Some(q) = o.query else { return };
        let kind = o.kind.clone();
        let now = self.rpc.now();
        for r in replies {
            let action = match &kind {
                Kind::Announce {
                    target,
                    key_pair,
                    relay_addresses,
                    bump,
                    ..
                } => match (r.token, r.from.id) {
                    (Some(token), Some(id)) => {
                        let peer = PeerRecord {
                            public_key: key_pair.public_key(),
                            relay_addresses: relay_addresses.clone(),
                        };
                        let key_pair = match key_pair {
                            Signer::Local(kp) => kp,
                            Signer::External(_) => {
                                // The owner signs; the commit action waits for it.
                                let Some(o) = self.ops.get_mut(&op) else {
                                    return;
                                };
                                let sign = o.next_sign;
                                o.next_sign += 1;
                                o.signs.insert(
                                    sign,
                                    PendingSign {
                                        to: r.from.addr,
                                        token,
                                        peer,
                                    },
                                );
                                self.events.push_back(Event::SignAnnounce {
                                    op,
                                    sign,
                                    target: *target,
                                    token,
                                    peer_id: id,
                                    relay_addresses: relay_addresses.clone(),
                                });
                                continue;
                            }
                        };
                        let signature = sign_announce(key_pair, target, &id, &token, &peer);
                        let value = Announce {
                            peer: Some(peer),
                            refresh: None,
                            signature: Some(signature),
                            bump: *bump,
                        }
                        .encode();
                        let mut spec = RequestSpec::new(r.from.addr, ANNOUNCE);
                        spec.token = Some(token);
                        spec.target = Some(*target);
                        spec.value = Some(value);
                        CommitAction::Request(spec)
                    }
                    _ => CommitAction::Done(false),
                },
                Kind::Unannounce { .. } | Kind::UnannounceExternal { .. } => {
                    CommitAction::Done(true)
                }
                Kind::ImmutablePut { hash, value } => match r.token {
                    Some(token) => {
                        let mut spec = RequestSpec::new(r.from.addr, IMMUTABLE_PUT);
                        spec.token = Some(token);
                        spec.target = Some(*hash);
                        spec.value = Some(value.clone());
                        CommitAction::Request(spec)
                    }
                    None => CommitAction::Done(false),
                },
                Kind::MutablePut {
                    target, encoded, ..
                } => match r.token {
                    Some(token) => {
                        let mut spec = RequestSpec::new(r.from.addr, MUTABLE_PUT);
                        spec.token = Some(token);
                        spec.target = Some(*target);
                        spec.value = Some(encoded.clone());
                        CommitAction::Request(spec)
                    }
                    None => CommitAction::Done(false),
                },
                _ => CommitAction::Done(true),
            };
            if let Ok(Some(rid)) = self.rpc.commit(now, q, action) {
                self.request_ops.insert(rid, (op, Role::Commit));
            }
        }
    }

    pub(crate) fn op_request_settled(&mut self, op: OpId, role: Role, _res: Option<Response>) {
        if role != Role::Side {
            return;
        }
        let Some(o) = self.ops.get_mut(&op) else {
            return;
        };
        o.side = o.side.saturating_sub(1);
        if o.side == 0 {
            if let Some(replies) = o.pending_commit.take() {
                self.run_commit(op, replies);
            }
        }
    }

    pub(crate) fn op_query_done(&mut self, op: OpId, result: Result<QueryResult, QueryError>) {
        let Some(o) = self.ops.get_mut(&op) else {
            return;
        };
        o.query = None;
        let result = match result {
            Err(e) => Err(OpError::Query(e)),
            Ok(r) => Ok(match &mut o.kind {
                Kind::Lookup | Kind::FindPeer => OpOutput::Lookup {
                    closest_nodes: r.closest_nodes(),
                },
                Kind::Announce { .. } => OpOutput::Announce {
                    closest_nodes: r.closest_nodes(),
                },
                Kind::Unannounce { .. } | Kind::UnannounceExternal { .. } => OpOutput::Unannounce,
                Kind::ImmutablePut { hash, .. } => OpOutput::ImmutablePut {
                    hash: *hash,
                    closest_nodes: r.closest_nodes(),
                },
                Kind::ImmutableGet { .. } => OpOutput::ImmutableGet(None),
                Kind::MutablePut {
                    public_key,
                    seq,
                    signature,
                    ..
                } => OpOutput::MutablePut {
                    public_key: *public_key,
                    seq: *seq,
                    signature: *signature,
                    closest_nodes: r.closest_nodes(),
                },
                Kind::MutableGet { best, .. } => OpOutput::MutableGet(best.take()),
            }),
        };
        self.finish_op(op, result);
    }
}
