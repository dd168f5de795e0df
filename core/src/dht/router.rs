//! hyperdht's router (lib/router.js): the forward table (target → where its server announced
//! from) and the relaying of PEER_HANDSHAKE / PEER_HOLEPUNCH between client, relaying nodes and
//! server, keeping the client's tid so that the final REPLY resolves its request.
//!
//! The router relays on its own through the [`Node`]; a request for a server this node hosts
//! comes back to the caller as [`Routed`] so that the server engine can answer it.

use core::net::SocketAddrV4;
use core::time::Duration;
use std::collections::HashMap;

use crate::dht::messages_connect::{HandshakeMessage, HolepunchMessage, Mode};
use crate::dht::rpc::{IncomingRequest, Node, ReplyOptions, SocketId};

/// Forward entries live this long (xache maxAge 20 min), unless retained by a local server.
pub const FORWARD_MAX_AGE: Duration = Duration::from_secs(20 * 60);
/// Entries kept at most (the oldest go first).
pub const MAX_FORWARDS: usize = 65536;

/// A forward entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Where the server announced from, as this node saw it (`None` for a local server).
    pub relay: Option<SocketAddrV4>,
    /// The encoded `peer` record (FIND_PEER answers with it).
    pub record: Vec<u8>,
    /// The local server this target belongs to, if any (never expires).
    pub local: Option<u64>,
    added: Duration,
}

impl Forward {
    /// A remote server's entry (self-announce).
    pub fn remote(relay: SocketAddrV4, record: Vec<u8>, now: Duration) -> Self {
        Forward {
            relay: Some(relay),
            record,
            local: None,
            added: now,
        }
    }
    /// A server hosted here.
    pub fn local(server: u64, record: Vec<u8>) -> Self {
        Forward {
            relay: None,
            record,
            local: Some(server),
            added: Duration::ZERO,
        }
    }
}

/// A request addressed to a server hosted on this node, for the server engine to answer.
#[derive(Debug, Clone)]
pub enum Routed {
    /// A PEER_HANDSHAKE for local server `server`.
    Handshake {
        /// The local server.
        server: u64,
        /// The request (its tid goes back with the answer).
        req: IncomingRequest,
        /// The decoded value.
        msg: HandshakeMessage,
    },
    /// A PEER_HOLEPUNCH (FROM_RELAY, with a peer address) for local server `server`.
    Holepunch {
        /// The local server.
        server: u64,
        /// The request.
        req: IncomingRequest,
        /// The decoded value.
        msg: HolepunchMessage,
    },
}

/// The forward table and the relaying rules.
#[derive(Debug, Default)]
pub struct Router {
    forwards: HashMap<[u8; 32], Forward>,
}

impl Router {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or replaces) the entry of `target`.
    pub fn set(&mut self, target: [u8; 32], forward: Forward) {
        if self.forwards.len() >= MAX_FORWARDS && !self.forwards.contains_key(&target) {
            if let Some(oldest) = self
                .forwards
                .iter()
                .filter(|(_, f)| f.local.is_none())
                .min_by_key(|(_, f)| f.added)
                .map(|(t, _)| *t)
            {
                self.forwards.remove(&oldest);
            }
        }
        self.forwards.insert(target, forward);
    }

    /// The live entry of `target`.
    pub fn get(&self, target: &[u8; 32], now: Duration) -> Option<&Forward> {
        self.forwards
            .get(target)
            .filter(|f| f.local.is_some() || now.saturating_sub(f.added) < FORWARD_MAX_AGE)
    }

    /// Removes the entry of `target`.
    pub fn delete(&mut self, target: &[u8; 32]) {
        self.forwards.remove(target);
    }

    /// Handles an incoming PEER_HANDSHAKE (`onpeerhandshake`). Relays what is not for a local
    /// server; malformed or unroutable requests are dropped (as JS does).
    pub fn on_peer_handshake(&mut self, node: &mut Node, req: IncomingRequest) -> Option<Routed> {
        let msg = HandshakeMessage::decode(req.value.as_deref()?).ok()?;
        let now = node.now();
        let state = req.target.and_then(|t| self.get(&t, now).cloned());
        if let Some(server) = state.as_ref().and_then(|s| s.local) {
            return Some(Routed::Handshake { server, req, msg });
        }
        let relay = state.and_then(|s| s.relay);
        match msg.mode {
            Mode::FromClient => {
                let Some(to) = msg.relay_address.or(relay) else {
                    // Help the client route: an empty reply with closer nodes.
                    node.reply(
                        &req,
                        None,
                        ReplyOptions {
                            token: false,
                            closer_nodes: true,
                            to: None,
                            socket: None,
                        },
                    );
                    return None;
                };
                let value = HandshakeMessage {
                    mode: Mode::FromRelay,
                    noise: msg.noise,
                    peer_address: Some(req.from.addr),
                    relay_address: None,
                }
                .encode();
                node.relay(&req, Some(&value), to, None);
            }
            Mode::FromRelay => {
                let relay = relay?;
                let value = HandshakeMessage {
                    mode: Mode::FromSecondRelay,
                    noise: msg.noise,
                    peer_address: msg.peer_address,
                    relay_address: Some(req.from.addr),
                }
                .encode();
                node.relay(&req, Some(&value), relay, None);
            }
            Mode::FromServer => {
                let peer = msg.peer_address?;
                let value = HandshakeMessage {
                    mode: Mode::Reply,
                    noise: msg.noise,
                    peer_address: Some(req.from.addr),
                    relay_address: None,
                }
                .encode();
                node.reply(
                    &req,
                    Some(&value),
                    ReplyOptions {
                        token: false,
                        closer_nodes: false,
                        to: Some(peer),
                        socket: None,
                    },
                );
            }
            _ => {}
        }
        None
    }

    /// Handles an incoming PEER_HOLEPUNCH (`onpeerholepunch`).
    pub fn on_peer_holepunch(&mut self, node: &mut Node, req: IncomingRequest) -> Option<Routed> {
        let msg = HolepunchMessage::decode(req.value.as_deref()?).ok()?;
        let now = node.now();
        let state = req.target.and_then(|t| self.get(&t, now).cloned());
        let local = state.as_ref().and_then(|s| s.local);
        let relay = state.and_then(|s| s.relay);
        match msg.mode {
            Mode::FromClient => {
                let to = msg.peer_address.or(relay)?;
                let value = HolepunchMessage {
                    mode: Mode::FromRelay,
                    id: msg.id,
                    payload: msg.payload,
                    peer_address: Some(req.from.addr),
                }
                .encode();
                node.relay(&req, Some(&value), to, None);
                None
            }
            Mode::FromRelay => {
                let server = local?;
                msg.peer_address?;
                Some(Routed::Holepunch { server, req, msg })
            }
            Mode::FromServer => {
                let peer = msg.peer_address?;
                let value = HolepunchMessage {
                    mode: Mode::Reply,
                    id: msg.id,
                    payload: msg.payload,
                    peer_address: Some(req.from.addr),
                }
                .encode();
                node.reply(
                    &req,
                    Some(&value),
                    ReplyOptions {
                        token: false,
                        closer_nodes: false,
                        to: Some(peer),
                        socket: None,
                    },
                );
                None
            }
            _ => None,
        }
    }
}

/// The server's answer to a routed PEER_HANDSHAKE, sent per its mode (router.js:100-127).
pub fn answer_handshake(
    node: &mut Node,
    req: &IncomingRequest,
    msg: &HandshakeMessage,
    noise: &[u8],
    socket: Option<SocketId>,
) {
    let opts = ReplyOptions {
        token: false,
        closer_nodes: false,
        to: None,
        socket,
    };
    match msg.mode {
        Mode::FromClient => {
            let value = HandshakeMessage {
                mode: Mode::Reply,
                noise: noise.to_vec(),
                peer_address: None,
                relay_address: None,
            }
            .encode();
            node.reply(req, Some(&value), opts);
        }
        Mode::FromRelay => {
            let value = HandshakeMessage {
                mode: Mode::FromServer,
                noise: noise.to_vec(),
                peer_address: msg.peer_address,
                relay_address: None,
            }
            .encode();
            node.relay(req, Some(&value), req.from.addr, socket);
        }
        Mode::FromSecondRelay => {
            if let Some(relay) = msg.relay_address {
                let value = HandshakeMessage {
                    mode: Mode::FromServer,
                    noise: noise.to_vec(),
                    peer_address: msg.peer_address,
                    relay_address: None,
                }
                .encode();
                node.relay(req, Some(&value), relay, socket);
            }
        }
        _ => {}
    }
}

/// The server's answer to a routed PEER_HOLEPUNCH: FROM_SERVER back to the relay.
pub fn answer_holepunch(
    node: &mut Node,
    req: &IncomingRequest,
    msg: &HolepunchMessage,
    payload: Vec<u8>,
    socket: Option<SocketId>,
) {
    let value = HolepunchMessage {
        mode: Mode::FromServer,
        id: 0,
        payload,
        peer_address: msg.peer_address,
    }
    .encode();
    node.relay(req, Some(&value), req.from.addr, socket);
}
