//! hyperdht's namespaces and signatures (lib/constants.js, lib/persistent.js).
//!
//! - announce / unannounce: `sig = ed25519(NS ‖ H_batch(target, nodeId, token, peer, refresh))`
//!   where `nodeId` and `token` are the *responding node's*: a signature binds one node and
//!   lives as long as its token (~7.5-15 s);
//! - mutable: `sig = ed25519(NS_MUTABLE_PUT ‖ H(uint seq ‖ buffer value))`.

use super::messages::{mutable_signable, PeerRecord};
use crate::crypto::{self, KeyPair};

fn ns(cmd: u8) -> [u8; 32] {
    let base = crypto::hash(b"hyperswarm/dht");
    crypto::hash_batch(&[&base, &[cmd]])
}

/// `NS.ANNOUNCE`.
pub fn ns_announce() -> [u8; 32] {
    ns(super::ANNOUNCE as u8)
}
/// `NS.UNANNOUNCE`.
pub fn ns_unannounce() -> [u8; 32] {
    ns(super::UNANNOUNCE as u8)
}
/// `NS.MUTABLE_PUT`.
pub fn ns_mutable_put() -> [u8; 32] {
    ns(super::MUTABLE_PUT as u8)
}
/// `NS.PEER_HANDSHAKE` (the Noise prologue).
pub fn ns_peer_handshake() -> [u8; 32] {
    ns(super::PEER_HANDSHAKE as u8)
}
/// `NS.PEER_HOLEPUNCH`.
pub fn ns_peer_holepunch() -> [u8; 32] {
    ns(super::PEER_HOLEPUNCH as u8)
}
/// `NS.PLUGIN`.
pub fn ns_plugin() -> [u8; 32] {
    ns(super::PLUGIN as u8)
}

/// The 64 bytes an announce (`ns` = [`ns_announce`]) or unannounce (`ns` = [`ns_unannounce`])
/// signature covers.
pub fn announce_signable(
    ns: &[u8; 32],
    target: &[u8; 32],
    node_id: &[u8; 32],
    token: &[u8; 32],
    peer: &PeerRecord,
    refresh: Option<&[u8; 32]>,
) -> [u8; 64] {
    let peer = peer.encode();
    let inner = crypto::hash_batch(&[
        target,
        node_id,
        token,
        &peer,
        refresh.map_or(&[][..], |r| &r[..]),
    ]);
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(ns);
    out[32..].copy_from_slice(&inner);
    out
}

/// Sign an announce of `peer` for the node `node_id` that issued `token`.
pub fn sign_announce(
    key_pair: &KeyPair,
    target: &[u8; 32],
    node_id: &[u8; 32],
    token: &[u8; 32],
    peer: &PeerRecord,
) -> [u8; 64] {
    key_pair.sign(&announce_signable(
        &ns_announce(),
        target,
        node_id,
        token,
        peer,
        None,
    ))
}

/// Sign an unannounce.
pub fn sign_unannounce(
    key_pair: &KeyPair,
    target: &[u8; 32],
    node_id: &[u8; 32],
    token: &[u8; 32],
    peer: &PeerRecord,
) -> [u8; 64] {
    key_pair.sign(&announce_signable(
        &ns_unannounce(),
        target,
        node_id,
        token,
        peer,
        None,
    ))
}

/// The 64 bytes a mutable record's signature covers.
pub fn mutable_signable_hash(seq: u64, value: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&ns_mutable_put());
    out[32..].copy_from_slice(&crypto::hash(&mutable_signable(seq, value)));
    out
}

/// Sign a mutable record.
pub fn sign_mutable(key_pair: &KeyPair, seq: u64, value: &[u8]) -> [u8; 64] {
    key_pair.sign(&mutable_signable_hash(seq, value))
}

/// Check a mutable record's signature.
pub fn verify_mutable(signature: &[u8; 64], seq: u64, value: &[u8], public_key: &[u8; 32]) -> bool {
    crypto::verify(&mutable_signable_hash(seq, value), signature, public_key)
}
