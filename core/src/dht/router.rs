//! hyperdht's router (lib/router.js): forward entries per server key hash, and the routing of
//! PEER_HANDSHAKE / PEER_HOLEPUNCH.
//!
//! A node that stores a server's self-announce keeps a *forward* `{relay: the server's
//! address as seen, record}` and relays handshakes and holepunch messages between clients and
//! that server, keeping the client's tid so the final answer resolves the client's request.
//! That relay role is complete here. The *server* role (a server this process hosts,
//! registered with [`HyperDht::register_server`]) hands each message up as
//! [`Event::PeerHandshake`] / [`Event::PeerHolepunch`]; the Noise/holepunch logic answers with
//! [`HyperDht::server_handshake_reply`] / [`HyperDht::server_holepunch_reply`]. The client
//! side sends with [`HyperDht::peer_handshake`] / [`HyperDht::peer_holepunch`] and checks the
//! answer with [`parse_handshake_reply`] / [`parse_holepunch_reply`].

use core::net::SocketAddrV4;
use core::time::Duration;

use super::cache::{MaxCache, Weight};
use super::messages_connect::{HandshakeMessage, HolepunchMessage, Mode};
use super::node::{Event, HyperDht};
use super::persistent::StoreLimits;
use super::rpc::{
    IncomingRequest, ReplyOptions, RequestError, RequestId, RequestSpec, Response, SocketId,
};
use super::{PEER_HANDSHAKE, PEER_HOLEPUNCH};

/// A forward entry: how to reach the server announced under a key hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The server's address as it announced itself to us (`None` for a local server).
    pub relay: Option<SocketAddrV4>,
    /// Its encoded peer record (the FIND_PEER answer).
    pub record: Vec<u8>,
    /// A server this process hosts (JS: a state with `onpeerhandshake`).
    pub server: bool,
}

impl Weight for Forward {
    fn weight(&self) -> usize {
        self.record.len() + 8
    }
}

/// The forward table.
#[derive(Debug, Clone)]
pub struct Router {
    /// Forward entries by target (server key hash); local servers are retained.
    pub forwards: MaxCache<[u8; 32], Forward>,
}

impl Router {
    /// A forward table with hyperdht's size and age.
    pub fn new(l: &StoreLimits, now: Duration) -> Self {
        Router {
            forwards: MaxCache::new(l.max_size, l.max_age, usize::MAX, now),
        }
    }

    /// JS `router.set`: local servers are retained, others cached.
    pub fn set(&mut self, target: [u8; 32], f: Forward) {
        if f.server {
            self.forwards.retain(target, f);
        } else {
            self.forwards.set(target, f);
        }
    }
}

/// Why a PEER_HANDSHAKE / PEER_HOLEPUNCH answer is not acceptable (JS BAD_HANDSHAKE_REPLY,
/// BAD_HOLEPUNCH_REPLY).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReply {
    /// No value, undecodable, not mode REPLY, or from an address we did not send to.
    #[error("bad handshake reply")]
    Handshake,
    /// Same for holepunch.
    #[error("bad holepunch reply")]
    Holepunch,
}

/// A valid PEER_HANDSHAKE answer (JS `router.peerHandshake` result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeReply {
    /// The server's Noise message.
    pub noise: Vec<u8>,
    /// It came through a relay.
    pub relayed: bool,
    /// The server's address (as the relay saw it, or the node we asked).
    pub server_address: SocketAddrV4,
    /// Our address as the answering node saw us.
    pub client_address: SocketAddrV4,
}

/// Check a PEER_HANDSHAKE response to a request sent to `to`.
pub fn parse_handshake_reply(res: &Response, to: SocketAddrV4) -> Result<HandshakeReply, BadReply> {
    let hs = res
        .value
        .as_deref()
        .and_then(|v| HandshakeMessage::decode(v).ok())
        .ok_or(BadReply::Handshake)?;
    if hs.mode != Mode::Reply || res.from.addr != to {
        return Err(BadReply::Handshake);
    }
    Ok(HandshakeReply {
        noise: hs.noise,
        relayed: hs.peer_address.is_some(),
        server_address: hs.peer_address.unwrap_or(to),
        client_address: res.to,
    })
}

/// A valid PEER_HOLEPUNCH answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolepunchReply {
    /// Who answered.
    pub from: SocketAddrV4,
    /// Our address as it saw us.
    pub to: SocketAddrV4,
    /// The server's encrypted payload.
    pub payload: Vec<u8>,
    /// The server's address.
    pub peer_address: SocketAddrV4,
}

/// Check a PEER_HOLEPUNCH response to a request sent to `to`.
pub fn parse_holepunch_reply(res: &Response, to: SocketAddrV4) -> Result<HolepunchReply, BadReply> {
    let hp = res
        .value
        .as_deref()
        .and_then(|v| HolepunchMessage::decode(v).ok())
        .ok_or(BadReply::Holepunch)?;
    if hp.mode != Mode::Reply || res.from.addr != to {
        return Err(BadReply::Holepunch);
    }
    Ok(HolepunchReply {
        from: res.from.addr,
        to: res.to,
        payload: hp.payload,
        peer_address: hp.peer_address.unwrap_or(to),
    })
}

impl HyperDht {
    /// Host a server for `target` (= H(public key)): PEER_HANDSHAKE / PEER_HOLEPUNCH for it
    /// come up as events, and FIND_PEER/LOOKUP here answer with `record`.
    pub fn register_server(&mut self, target: [u8; 32], record: Vec<u8>) {
        self.router.set(
            target,
            Forward {
                relay: None,
                record,
                server: true,
            },
        );
    }

    /// Stop hosting the server for `target`.
    pub fn unregister_server(&mut self, target: &[u8; 32]) {
        self.router.forwards.delete(target);
    }

    /// The forward entry for `target`, if any.
    pub fn forward(&self, target: &[u8; 32]) -> Option<&Forward> {
        self.router.forwards.peek(target)
    }

    /// Client side of PEER_HANDSHAKE (JS `router.peerHandshake`): send `noise` towards the
    /// server `target` through `to`. The response comes as an [`Event::Rpc`] `Response` with
    /// the returned id; check it with [`parse_handshake_reply`].
    #[allow(clippy::too_many_arguments)]
    pub fn peer_handshake(
        &mut self,
        now: Duration,
        target: [u8; 32],
        noise: Vec<u8>,
        peer_address: Option<SocketAddrV4>,
        relay_address: Option<SocketAddrV4>,
        to: SocketAddrV4,
        socket: Option<SocketId>,
    ) -> Result<RequestId, RequestError> {
        let value = HandshakeMessage {
            mode: Mode::FromClient,
            noise,
            peer_address,
            relay_address,
        }
        .encode();
        let mut spec = RequestSpec::new(to, PEER_HANDSHAKE);
        spec.target = Some(target);
        spec.value = Some(value);
        spec.socket = socket;
        self.rpc.request(now, spec)
    }

    /// Client side of PEER_HOLEPUNCH (JS `router.peerHolepunch`).
    #[allow(clippy::too_many_arguments)]
    pub fn peer_holepunch(
        &mut self,
        now: Duration,
        target: [u8; 32],
        id: u64,
        payload: Vec<u8>,
        peer_address: Option<SocketAddrV4>,
        to: SocketAddrV4,
        socket: Option<SocketId>,
    ) -> Result<RequestId, RequestError> {
        let value = HolepunchMessage {
            mode: Mode::FromClient,
            id,
            payload,
            peer_address,
        }
        .encode();
        let mut spec = RequestSpec::new(to, PEER_HOLEPUNCH);
        spec.target = Some(target);
        spec.value = Some(value);
        spec.socket = socket;
        self.rpc.request(now, spec)
    }

    /// Server side: answer a [`Event::PeerHandshake`] with our Noise reply, as router.js does
    /// for its own servers (a direct FROM_CLIENT gets a REPLY; FROM_RELAY and
    /// FROM_SECOND_RELAY go back through the relay as FROM_SERVER). `socket` is the socket to
    /// answer from (JS `reply.socket`, e.g. a holepunch socket).
    pub fn server_handshake_reply(
        &mut self,
        req: &IncomingRequest,
        handshake: &HandshakeMessage,
        noise: Vec<u8>,
        socket: Option<SocketId>,
    ) {
        let opts = ReplyOptions {
            socket,
            ..ReplyOptions::BARE
        };
        match handshake.mode {
            Mode::FromClient => {
                let v = HandshakeMessage {
                    mode: Mode::Reply,
                    noise,
                    peer_address: None,
                    relay_address: None,
                }
                .encode();
                self.rpc.reply(req, Some(&v), opts);
            }
            Mode::FromRelay => {
                let v = HandshakeMessage {
                    mode: Mode::FromServer,
                    noise,
                    peer_address: handshake.peer_address,
                    relay_address: None,
                }
                .encode();
                self.rpc.relay(req, Some(&v), req.from.addr, socket);
            }
            Mode::FromSecondRelay => {
                let Some(relay) = handshake.relay_address else {
                    return;
                };
                let v = HandshakeMessage {
                    mode: Mode::FromServer,
                    noise,
                    peer_address: handshake.peer_address,
                    relay_address: None,
                }
                .encode();
                self.rpc.relay(req, Some(&v), relay, socket);
            }
            _ => {}
        }
    }

    /// Server side: answer a [`Event::PeerHolepunch`] (FROM_RELAY) with our encrypted payload,
    /// back through the relay as FROM_SERVER.
    pub fn server_holepunch_reply(
        &mut self,
        req: &IncomingRequest,
        holepunch: &HolepunchMessage,
        payload: Vec<u8>,
        socket: Option<SocketId>,
    ) {
        let v = HolepunchMessage {
            mode: Mode::FromServer,
            id: 0,
            payload,
            peer_address: holepunch.peer_address,
        }
        .encode();
        self.rpc.relay(req, Some(&v), req.from.addr, socket);
    }

    /// PEER_HANDSHAKE arrived (JS `onpeerhandshake`).
    pub(crate) fn on_peer_handshake(&mut self, req: IncomingRequest) {
        let Some(hs) = req
            .value
            .as_deref()
            .and_then(|v| HandshakeMessage::decode(v).ok())
        else {
            return;
        };
        let state = req
            .target
            .and_then(|t| self.router.forwards.get(&t).cloned());
        let relay = state.as_ref().and_then(|s| s.relay);
        if state.as_ref().is_some_and(|s| s.server) {
            self.events
                .push_back(Event::PeerHandshake { req, handshake: hs });
            return;
        }
        match hs.mode {
            Mode::FromClient => {
                let Some(dest) = hs.relay_address.or(relay) else {
                    // Help the client route: closer nodes, nothing else.
                    let opts = ReplyOptions {
                        closer_nodes: true,
                        ..ReplyOptions::BARE
                    };
                    self.rpc.reply(&req, None, opts);
                    return;
                };
                let v = HandshakeMessage {
                    mode: Mode::FromRelay,
                    noise: hs.noise,
                    peer_address: Some(req.from.addr),
                    relay_address: None,
                }
                .encode();
                self.rpc.relay(&req, Some(&v), dest, None);
            }
            Mode::FromRelay => {
                let Some(relay) = relay else { return };
                let v = HandshakeMessage {
                    mode: Mode::FromSecondRelay,
                    noise: hs.noise,
                    peer_address: hs.peer_address,
                    relay_address: Some(req.from.addr),
                }
                .encode();
                self.rpc.relay(&req, Some(&v), relay, None);
            }
            Mode::FromServer => {
                let Some(peer) = hs.peer_address else { return };
                let v = HandshakeMessage {
                    mode: Mode::Reply,
                    noise: hs.noise,
                    peer_address: Some(req.from.addr),
                    relay_address: None,
                }
                .encode();
                let opts = ReplyOptions {
                    to: Some(peer),
                    ..ReplyOptions::BARE
                };
                self.rpc.reply(&req, Some(&v), opts);
            }
            _ => {}
        }
    }

    /// PEER_HOLEPUNCH arrived (JS `onpeerholepunch`).
    pub(crate) fn on_peer_holepunch(&mut self, req: IncomingRequest) {
        let Some(hp) = req
            .value
            .as_deref()
            .and_then(|v| HolepunchMessage::decode(v).ok())
        else {
            return;
        };
        let state = req
            .target
            .and_then(|t| self.router.forwards.get(&t).cloned());
        let relay = state.as_ref().and_then(|s| s.relay);
        let is_server = state.as_ref().is_some_and(|s| s.server);
        match hp.mode {
            Mode::FromClient => {
                let Some(dest) = hp.peer_address.or(relay) else {
                    return;
                };
                let v = HolepunchMessage {
                    mode: Mode::FromRelay,
                    id: hp.id,
                    payload: hp.payload,
                    peer_address: Some(req.from.addr),
                }
                .encode();
                self.rpc.relay(&req, Some(&v), dest, None);
            }
            Mode::FromRelay => {
                if !is_server || hp.peer_address.is_none() {
                    return;
                }
                self.events
                    .push_back(Event::PeerHolepunch { req, holepunch: hp });
            }
            Mode::FromServer => {
                let to = hp.peer_address.unwrap_or(req.from.addr);
                let v = HolepunchMessage {
                    mode: Mode::Reply,
                    id: hp.id,
                    payload: hp.payload,
                    peer_address: Some(req.from.addr),
                }
                .encode();
                let opts = ReplyOptions {
                    to: Some(to),
                    ..ReplyOptions::BARE
                };
                self.rpc.reply(&req, Some(&v), opts);
            }
            _ => {}
        }
    }
}
