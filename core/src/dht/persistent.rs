//! The record store of a persistent node (hyperdht lib/persistent.js): announcements per
//! topic, bumps, refresh chains, mutable and immutable values, and the handlers of LOOKUP,
//! FIND_PEER, ANNOUNCE, UNANNOUNCE, MUTABLE_PUT/GET and IMMUTABLE_PUT/GET.
//!
//! As in JS, writes need a token (a write without one is dropped unanswered), invalid
//! signatures are dropped unanswered, and a mutable write with a reused sequence number and a
//! different value is answered SEQ_REUSED (16), an older one SEQ_TOO_LOW (17).

use core::time::Duration;

use super::cache::{MaxCache, RecordCache, Weight};
use super::messages::{Announce, LookupReply, MutableGetResponse, MutablePutRequest};
use super::node::HyperDht;
use super::router::Forward;
use super::rpc::{IncomingRequest, ReplyOptions};
use super::signing::{announce_signable, ns_announce, ns_unannounce, verify_mutable};
use super::{ERROR_SEQ_REUSED, ERROR_SEQ_TOO_LOW};
use crate::crypto;
use crate::encoding::Decoder;

/// A bump may be at most this far in the future (ms).
const MAX_BUMP_DRIFT_MS: u64 = 60_000;
/// Records a LOOKUP reply carries at most.
pub const LOOKUP_RECORDS: usize = 20;
/// Relay addresses kept per announcement.
pub const MAX_RELAY_ADDRESSES: usize = 3;

/// Sizes and lifetimes of the record caches (hyperdht's `defaultCacheOpts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Entries per cache generation (65,536; mutables and immutables get half).
    pub max_size: usize,
    /// Lifetime of announcements, bumps, refreshes and forwards (20 min).
    pub max_age: Duration,
    /// Lifetime of mutable and immutable values (48 h).
    pub value_max_age: Duration,
    /// Bytes of mutable (and, separately, immutable) values per generation (a hyperpunch
    /// bound; JS has none): 32 MiB, so at most ~64 MiB each.
    pub max_value_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_size: 65_536,
            max_age: Duration::from_secs(20 * 60),
            value_max_age: Duration::from_secs(48 * 3600),
            max_value_bytes: 32 << 20,
        }
    }
}

/// A refresh-chain entry: the record a refresh hash re-validates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refresh {
    pub topic: [u8; 32],
    pub record: Vec<u8>,
    pub announce_self: bool,
}

impl Weight for Refresh {
    fn weight(&self) -> usize {
        self.record.len() + 33
    }
}

/// The caches of a persistent node.
#[derive(Debug, Clone)]
pub(crate) struct Persistent {
    pub records: RecordCache,
    pub bumps: MaxCache<[u8; 32], u64>,
    pub refreshes: MaxCache<[u8; 32], Refresh>,
    pub mutables: MaxCache<[u8; 32], Vec<u8>>,
    pub immutables: MaxCache<[u8; 32], Vec<u8>>,
}

impl Persistent {
    pub fn new(l: &StoreLimits, now: Duration) -> Self {
        let half = (l.max_size / 2).max(1);
        Persistent {
            records: RecordCache::new(l.max_size, l.max_age, now),
            bumps: MaxCache::new(l.max_size, l.max_age, usize::MAX, now),
            refreshes: MaxCache::new(l.max_size, l.max_age, usize::MAX, now),
            mutables: MaxCache::new(half, l.value_max_age, l.max_value_bytes, now),
            immutables: MaxCache::new(half, l.value_max_age, l.max_value_bytes, now),
        }
    }

    pub fn advance(&mut self, now: Duration) {
        self.records.advance(now);
        self.bumps.advance(now);
        self.refreshes.advance(now);
        self.mutables.advance(now);
        self.immutables.advance(now);
    }

    /// Drop `public_key`'s announcement of `target` (and the forward, for a self-announce).
    pub fn unannounce(
        &mut self,
        router: &mut super::router::Router,
        target: &[u8; 32],
        pk: &[u8; 32],
    ) {
        if &crypto::hash(pk) == target {
            router.forwards.delete(target);
        }
        self.records.remove(target, pk);
    }
}

const DONE: ReplyOptions = ReplyOptions::BARE;

impl HyperDht {
    fn store(&mut self) -> &mut Persistent {
        self.persistent.as_mut().expect("checked by on_request")
    }

    pub(crate) fn on_lookup(&mut self, req: &IncomingRequest) {
        let Some(target) = req.target else { return };
        let p = self.persistent.as_mut().expect("checked by on_request");
        let bump = p.bumps.get(&target).copied().unwrap_or(0);
        let mut records = p.records.get(&target, LOOKUP_RECORDS, &mut self.rpc.rng);
        if let Some(fwd) = self.router.forwards.get(&target) {
            if records.len() < LOOKUP_RECORDS {
                records.push(&fwd.record);
            }
        }
        let value = (!records.is_empty()).then(|| LookupReply::encode_raw(&records, bump));
        self.rpc.reply(req, value.as_deref(), ReplyOptions::REPLY);
    }

    pub(crate) fn on_find_peer(&mut self, req: &IncomingRequest) {
        let Some(target) = req.target else { return };
        let record = self.router.forwards.get(&target).map(|f| f.record.clone());
        self.rpc.reply(req, record.as_deref(), ReplyOptions::REPLY);
    }

    pub(crate) fn on_unannounce(&mut self, req: &IncomingRequest) {
        let (Some(target), Some(token)) = (req.target, req.token) else {
            return;
        };
        let Some(unann) = req.value.as_deref().and_then(|v| Announce::decode(v).ok()) else {
            return;
        };
        let (Some(peer), Some(signature)) = (&unann.peer, &unann.signature) else {
            return;
        };
        let Some(id) = self.rpc.id() else { return };
        let signable = announce_signable(
            &ns_unannounce(),
            &target,
            &id,
            &token,
            peer,
            unann.refresh.as_ref(),
        );
        if !crypto::verify(&signable, signature, &peer.public_key) {
            return;
        }
        let pk = peer.public_key;
        let p = self.persistent.as_mut().expect("checked by on_request");
        p.unannounce(&mut self.router, &target, &pk);
        self.rpc.reply(req, None, DONE);
    }

    fn on_refresh(&mut self, refresh: [u8; 32], req: &IncomingRequest) {
        let active = crypto::hash(&refresh);
        let Some(r) = self.store().refreshes.get(&active).cloned() else {
            return;
        };
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&r.record[..32]);
        if r.announce_self {
            self.router.set(
                r.topic,
                Forward {
                    relay: Some(req.from.addr),
                    record: r.record.clone(),
                    server: false,
                },
            );
            self.store().records.remove(&r.topic, &pk);
        } else {
            self.store().records.add(r.topic, pk, r.record.clone());
        }
        let p = self.store();
        p.refreshes.delete(&active);
        p.refreshes.set(refresh, r);
        self.rpc.reply(req, None, DONE);
    }

    pub(crate) fn on_announce(&mut self, req: &IncomingRequest) {
        let (Some(target), Some(token), Some(id)) = (req.target, req.token, self.rpc.id()) else {
            return;
        };
        let Some(ann) = req.value.as_deref().and_then(|v| Announce::decode(v).ok()) else {
            return;
        };
        let Some(mut peer) = ann.peer.clone() else {
            if let Some(refresh) = ann.refresh {
                self.on_refresh(refresh, req);
            }
            return;
        };
        let signable = announce_signable(
            &ns_announce(),
            &target,
            &id,
            &token,
            &peer,
            ann.refresh.as_ref(),
        );
        match &ann.signature {
            Some(sig) if crypto::verify(&signable, sig, &peer.public_key) => {}
            _ => return,
        }
        peer.relay_addresses.truncate(MAX_RELAY_ADDRESSES);
        let announce_self = crypto::hash(&peer.public_key) == target;
        let record = peer.encode();
        let now_ms = self.rpc.now().as_millis() as u64;
        if announce_self {
            self.router.set(
                target,
                Forward {
                    relay: Some(req.from.addr),
                    record: record.clone(),
                    server: false,
                },
            );
            self.store().records.remove(&target, &peer.public_key);
        } else {
            let p = self.store();
            let current = p.bumps.get(&target).copied().unwrap_or(0);
            if ann.bump > current && ann.bump <= now_ms + MAX_BUMP_DRIFT_MS {
                p.bumps.set(target, ann.bump);
            }
            p.records.add(target, peer.public_key, record.clone());
        }
        if let Some(refresh) = ann.refresh {
            self.store().refreshes.set(
                refresh,
                Refresh {
                    topic: target,
                    record,
                    announce_self,
                },
            );
        }
        self.rpc.reply(req, None, DONE);
    }

    pub(crate) fn on_mutable_get(&mut self, req: &IncomingRequest) {
        let (Some(target), Some(v)) = (req.target, req.value.as_deref()) else {
            return;
        };
        let Ok(seq) = Decoder::new(v).uint() else {
            return;
        };
        let value = self.store().mutables.get(&target).cloned();
        let Some(value) = value else {
            self.rpc.reply(req, None, ReplyOptions::REPLY);
            return;
        };
        let local = Decoder::new(&value).uint().unwrap_or(0);
        let out = (local >= seq).then_some(value.as_slice());
        self.rpc.reply(req, out, ReplyOptions::REPLY);
    }

    pub(crate) fn on_mutable_put(&mut self, req: &IncomingRequest) {
        let (Some(target), Some(_), Some(v)) = (req.target, req.token, req.value.as_deref()) else {
            return;
        };
        let Ok(p) = MutablePutRequest::decode(v) else {
            return;
        };
        if crypto::hash(&p.public_key) != target {
            return;
        }
        if !verify_mutable(&p.signature, p.seq, &p.value, &p.public_key) {
            return;
        }
        if let Some(local) = self.store().mutables.get(&target) {
            if let Ok(existing) = MutableGetResponse::decode(local) {
                if existing.seq == p.seq && existing.value != p.value {
                    self.rpc.error(req, ERROR_SEQ_REUSED, ReplyOptions::ERROR);
                    return;
                }
                if p.seq < existing.seq {
                    self.rpc.error(req, ERROR_SEQ_TOO_LOW, ReplyOptions::ERROR);
                    return;
                }
            }
        }
        let stored = MutableGetResponse {
            seq: p.seq,
            value: p.value,
            signature: p.signature,
        }
        .encode();
        self.store().mutables.set(target, stored);
        self.rpc.reply(req, None, ReplyOptions::REPLY);
    }

    pub(crate) fn on_immutable_get(&mut self, req: &IncomingRequest) {
        let Some(target) = req.target else { return };
        let value = self.store().immutables.get(&target).cloned();
        self.rpc.reply(req, value.as_deref(), ReplyOptions::REPLY);
    }

    pub(crate) fn on_immutable_put(&mut self, req: &IncomingRequest) {
        let (Some(target), Some(_), Some(v)) = (req.target, req.token, req.value.as_deref()) else {
            return;
        };
        if crypto::hash(v) != target {
            return;
        }
        let v = v.to_vec();
        self.store().immutables.set(target, v);
        self.rpc.reply(req, None, ReplyOptions::REPLY);
    }
}
