//! The server side (hyperdht lib/server.js): the announcer, one handshake slot per client
//! handshake (`_addHandshake`, deduplicated by the noise bytes), the firewall callback, and the
//! answers to PEER_HOLEPUNCH rounds (`_onpeerholepunch`) with the server's puncher.
//!
//! (Over 1,000 lines on purpose: one handshake slot's life, from the handshake through the
//! punch rounds to the relayed or direct stream, as server.js keeps it in one file; the
//! announcer is in `announcer.rs`.)

use core::net::SocketAddrV4;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::announcer::Announcer;
use super::{ConnectEvent, Ctx, Established, NoiseStep, Owner, PairingId, ServerId};
use crate::crypto::{hash, KeyPair};
use crate::dht::holepunch::puncher::{Puncher, RandomPunchLimiter};
use crate::dht::holepunch::SecurePayload;
use crate::dht::messages_connect::Mode;
use crate::dht::messages_connect::{
    error_code, Firewall, HandshakeMessage, HolepunchInfo, HolepunchMessage, HolepunchPayload,
    NoisePayload, RelayThroughInfo, UdxInfo,
};
use crate::dht::noise_wrap::{HandshakeResult, NoiseWrap};
use crate::dht::rpc::{IncomingRequest, Node, ReplyOptions, RequestId, Response, SocketId};

/// How long a relayed connection's slot keeps punching for a direct path at most.
pub(crate) const UPGRADE_WAIT: Duration = Duration::from_secs(120);
/// A handshake slot is freed this long after it finished (`handshakeClearWait`).
const CLEAR_WAIT: Duration = Duration::from_secs(10);
/// A slot that never connects is given up after this long (`HANDSHAKE_INITIAL_TIMEOUT`).
const INITIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshake slots (and cached answers) kept at most.
const MAX_SLOTS: usize = 1024;

/// The firewall callback: `(remote public key, its noise payload, its address)`; `true` drops
/// the handshake silently.
pub type FirewallFn = Box<dyn FnMut(&[u8; 32], &NoisePayload, SocketAddrV4) -> bool + Send>;

/// Options of [`Connector::listen`](super::Connector::listen).
#[derive(Default)]
pub struct ServerOptions {
    /// Refuse clients (JS `firewall`).
    pub firewall: Option<FirewallFn>,
    /// Ask clients to pair through this blind relay (JS `relayThrough`).
    pub relay_through: Option<[u8; 32]>,
    /// Never holepunch (JS `holepunch: false`).
    pub never_punch: bool,
    /// Do not share our LAN addresses with clients (JS `shareLocalAddress: false`).
    pub no_local_address: bool,
}

struct PendingPunch {
    req: IncomingRequest,
    msg: HolepunchMessage,
    remote: HolepunchPayload,
    token: [u8; 32],
    is_server_relay: bool,
    reopening: bool,
}

struct Slot {
    round: u64,
    reply: Vec<u8>,
    puncher: Option<Puncher>,
    secure: Option<SecurePayload>,
    stream_id: u32,
    remote_stream_id: u32,
    remote_public_key: [u8; 32],
    hs: Option<HandshakeResult>,
    reply_from_puncher: bool,
    prepunching: Option<Duration>,
    clearing: Option<Duration>,
    connected: bool,
    pending: Vec<PendingPunch>,
    key: Vec<u8>,
    direct: Option<(SocketId, SocketAddrV4)>,
    /// A blind-relay pairing runs.
    relaying: bool,
    /// The relay's address: its packets are not a direct path.
    relay_addr: Option<SocketAddrV4>,
    /// The path chosen is the relay's.
    relayed_path: bool,
    /// The relayed connection was handed over while the puncher goes on: a punched path
    /// upgrades it ([`ConnectEvent::Upgrade`], server.js `hs.onsocket` on a connected raw
    /// stream).
    upgrading: bool,
    /// The client's UDX stream id (from its handshake payload): the direct path's remote id.
    client_stream_id: u32,
    /// The owner's handshake id (external handshakes).
    external: Option<u64>,
}

/// A handshake run by the key pair's owner ([`Server::new_external`]), between its steps.
struct ExternalHs {
    req: IncomingRequest,
    msg: HandshakeMessage,
    client_address: SocketAddrV4,
    direct: bool,
    /// After the owner decrypted the client's message: what the reply needs.
    reply: Option<ReplyPlan>,
}

/// The parts of a handshake reply chosen before it is encrypted.
struct ReplyPlan {
    slot: usize,
    error: u64,
    stream_id: u32,
    relay_token: Option<[u8; 32]>,
    remote_payload: NoisePayload,
    remote_public_key: [u8; 32],
}

pub(crate) struct Server {
    id: ServerId,
    /// `None`: the handshakes and the announcer's signatures are the owner's
    /// ([`ConnectEvent::ServerNoise`], [`ConnectEvent::ServerSign`]).
    key_pair: Option<KeyPair>,
    externals: BTreeMap<u64, ExternalHs>,
    next_external: u64,
    /// Slots promised to external handshakes still running.
    reserved: BTreeSet<usize>,
    target: [u8; 32],
    opts: ServerOptions,
    announcer: Announcer,
    slots: Vec<Option<Slot>>,
    /// Noise bytes → slot (None: refused, kept so repeats are dropped too).
    connects: HashMap<Vec<u8>, Option<usize>>,
    refused: Vec<(Vec<u8>, Duration)>,
    listening_sent: bool,
    closed: bool,
}

impl Server {
    pub fn new(id: ServerId, key_pair: KeyPair, opts: ServerOptions) -> Self {
        let target = hash(&key_pair.public_key);
        let announcer = Announcer::new(key_pair.clone(), target);
        Self::build(id, announcer, Some(key_pair), target, opts)
    }

    /// A server whose key pair stays with its owner: each handshake's Noise steps and each
    /// announcement's signature are asked for with events.
    pub fn new_external(id: ServerId, public_key: [u8; 32], opts: ServerOptions) -> Self {
        let target = hash(&public_key);
        let announcer = Announcer::new_external(public_key, target);
        Self::build(id, announcer, None, target, opts)
    }

    fn build(
        id: ServerId,
        announcer: Announcer,
        key_pair: Option<KeyPair>,
        target: [u8; 32],
        opts: ServerOptions,
    ) -> Self {
        Server {
            id,
            announcer,
            key_pair,
            externals: BTreeMap::new(),
            next_external: 0,
            reserved: BTreeSet::new(),
            target,
            opts,
            slots: Vec::new(),
            connects: HashMap::new(),
            refused: Vec::new(),
            listening_sent: false,
            closed: false,
        }
    }

    /// The key hash this server answers for.
    pub fn target(&self) -> [u8; 32] {
        self.target
    }

    /// The record FIND_PEER answers with here.
    pub fn record(&self) -> Vec<u8> {
        self.announcer.record().to_vec()
    }

    pub fn start(&mut self, ctx: &mut Ctx<'_>) {
        self.announcer.start(ctx.now, ctx.node);
        self.track_announcer(ctx);
    }

    /// The announcer's new query and requests come back to us through the hub's tables.
    fn track_announcer(&mut self, ctx: &mut Ctx<'_>) {
        let (queries, requests) = self.announcer.take_new_ids();
        for q in queries {
            ctx.queries.insert(q, Owner::Announcer(self.id));
        }
        for r in requests {
            ctx.requests.insert(r, Owner::Announcer(self.id));
        }
        for (sign, token, node_id) in self.announcer.take_sign_requests() {
            ctx.events.push_back(ConnectEvent::ServerSign {
                server: self.id,
                sign,
                token,
                node_id,
            });
        }
    }

    /// The owner's signature of one announcement ([`ConnectEvent::ServerSign`]).
    pub fn external_signed(&mut self, ctx: &mut Ctx<'_>, sign: u64, signature: Option<[u8; 64]>) {
        self.announcer.signed(ctx.now, ctx.node, sign, signature);
        self.after_announcer(ctx);
    }

    pub fn close(&mut self, ctx: &mut Ctx<'_>) {
        self.closed = true;
        self.externals.clear();
        self.reserved.clear();
        self.announcer.stop(ctx.now, ctx.node);
        self.track_announcer(ctx);
        for i in 0..self.slots.len() {
            self.destroy_slot_puncher(ctx, i);
        }
    }

    pub fn relay_addresses(&self) -> Vec<SocketAddrV4> {
        self.announcer.relay_addresses.clone()
    }

    pub fn on_query_done(&mut self, ctx: &mut Ctx<'_>, closest: Vec<Response>) {
        self.announcer.on_query_done(ctx.now, ctx.node, closest);
        self.after_announcer(ctx);
    }

    pub fn on_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        _owner: Owner,
        id: RequestId,
        res: Option<&Response>,
    ) {
        self.announcer.on_response(ctx.now, ctx.node, id, res);
        self.after_announcer(ctx);
    }

    fn after_announcer(&mut self, ctx: &mut Ctx<'_>) {
        self.track_announcer(ctx);
        if self.announcer.ready && !self.listening_sent {
            self.listening_sent = true;
            ctx.events
                .push_back(ConnectEvent::Listening { server: self.id });
        }
    }

    /// `_onpeerhandshake` + `_addHandshake`.
    pub fn on_handshake(&mut self, ctx: &mut Ctx<'_>, req: IncomingRequest, msg: HandshakeMessage) {
        if self.closed {
            return;
        }
        if let Some(entry) = self.connects.get(&msg.noise) {
            if let Some(i) = *entry {
                if let Some(s) = self.slots[i].as_ref() {
                    let socket = self.reply_socket(ctx, i, s);
                    answer_handshake(ctx.node, &req, &msg, &s.reply, socket);
                }
            }
            return;
        }
        let direct = msg.peer_address.is_none();
        let client_address = msg.peer_address.unwrap_or(req.from.addr);
        if self.key_pair.is_none() {
            return self.start_external(ctx, req, msg, client_address, direct);
        }
        let slot = self.add_handshake(ctx, &msg, client_address, &req, direct);
        if self.connects.len() >= MAX_SLOTS * 4 {
            self.connects.retain(|_, v| v.is_some());
        }
        self.connects.insert(msg.noise.clone(), slot);
        match slot {
            None => self.refused.push((msg.noise.clone(), ctx.now + CLEAR_WAIT)),
            Some(i) => {
                let s = self.slots[i].as_ref().unwrap();
                let socket = self.reply_socket(ctx, i, s);
                answer_handshake(ctx.node, &req, &msg, &s.reply, socket);
                // A direct or OPEN client is connected to at once (after the reply left).
                self.maybe_connect_now(ctx, i);
            }
        }
    }

    fn reply_socket(&self, ctx: &Ctx<'_>, i: usize, s: &Slot) -> Option<SocketId> {
        if !s.reply_from_puncher {
            return None;
        }
        s.puncher
            .as_ref()
            .and_then(|p| ctx.puncher_socket(Owner::Slot(self.id, i), p))
    }

    fn add_handshake(
        &mut self,
        ctx: &mut Ctx<'_>,
        msg: &HandshakeMessage,
        client_address: SocketAddrV4,
        req: &IncomingRequest,
        direct: bool,
    ) -> Option<usize> {
        let live = self.slots.iter().filter(|s| s.is_some()).count() + self.reserved.len();
        if live >= MAX_SLOTS {
            return None;
        }
        let eph = ctx.ephemeral();
        let mut noise = NoiseWrap::responder(self.key_pair.clone()?, eph).ok()?;
        let remote_payload = noise.recv(&msg.noise).ok()?;
        let remote_pk = noise.remote_public_key()?;
        let plan = self.plan_reply(ctx, remote_payload, remote_pk, client_address)?;
        let reply_payload = self.reply_payload(ctx, &plan);
        let reply = noise.send(&reply_payload).ok()?;
        let hs = noise.finish().ok()?;
        let secret = hs.holepunch_secret;
        self.finish_handshake(
            ctx,
            msg,
            client_address,
            req,
            direct,
            plan,
            reply,
            Some(hs),
            secret,
        )
    }

    /// A client's first message to a server whose key pair is its owner's: ask the owner to
    /// decrypt it.
    fn start_external(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: IncomingRequest,
        msg: HandshakeMessage,
        client_address: SocketAddrV4,
        direct: bool,
    ) {
        // A retransmission of a handshake already with the owner waits for that one.
        if self.externals.values().any(|e| e.msg.noise == msg.noise) {
            return;
        }
        let live = self.slots.iter().filter(|s| s.is_some()).count() + self.externals.len();
        if live >= MAX_SLOTS {
            return;
        }
        self.next_external += 1;
        let handshake = self.next_external;
        let noise = msg.noise.clone();
        self.externals.insert(
            handshake,
            ExternalHs {
                req,
                msg,
                client_address,
                direct,
                reply: None,
            },
        );
        ctx.events.push_back(ConnectEvent::ServerNoise {
            server: self.id,
            handshake,
            step: NoiseStep::Recv(noise),
        });
    }

    /// The owner decrypted a client's first message (`None`: it could not, or refused).
    pub fn external_received(
        &mut self,
        ctx: &mut Ctx<'_>,
        handshake: u64,
        received: Option<(NoisePayload, [u8; 32])>,
    ) {
        let Some(e) = self.externals.get(&handshake) else {
            return;
        };
        if e.reply.is_some() {
            return;
        }
        let client_address = e.client_address;
        let plan = received.and_then(|(payload, remote_pk)| {
            self.plan_reply(ctx, payload, remote_pk, client_address)
        });
        let Some(plan) = plan else {
            let e = self.externals.remove(&handshake).expect("checked");
            self.connects.insert(e.msg.noise.clone(), None);
            self.refused.push((e.msg.noise, ctx.now + CLEAR_WAIT));
            return;
        };
        self.reserved.insert(plan.slot);
        let payload = self.reply_payload(ctx, &plan);
        self.externals.get_mut(&handshake).expect("checked").reply = Some(plan);
        ctx.events.push_back(ConnectEvent::ServerNoise {
            server: self.id,
            handshake,
            step: NoiseStep::Send(Box::new(payload)),
        });
    }

    /// The owner encrypted our reply (`message`) and finished its handshake
    /// (`holepunch_secret`); `None`: it refused.
    pub fn external_sent(
        &mut self,
        ctx: &mut Ctx<'_>,
        handshake: u64,
        sent: Option<(Vec<u8>, [u8; 32])>,
    ) {
        if self
            .externals
            .get(&handshake)
            .is_none_or(|e| e.reply.is_none())
        {
            return;
        }
        let e = self.externals.remove(&handshake).expect("checked");
        let plan = e.reply.expect("checked");
        let Some((reply, holepunch_secret)) = sent else {
            self.reserved.remove(&plan.slot);
            self.connects.insert(e.msg.noise.clone(), None);
            self.refused.push((e.msg.noise, ctx.now + CLEAR_WAIT));
            return;
        };
        let slot = self.finish_handshake(
            ctx,
            &e.msg,
            e.client_address,
            &e.req,
            e.direct,
            plan,
            reply,
            None,
            holepunch_secret,
        );
        self.connects.insert(e.msg.noise.clone(), slot);
        match slot {
            None => self
                .refused
                .push((e.msg.noise.clone(), ctx.now + CLEAR_WAIT)),
            Some(i) => {
                if let Some(s) = self.slots[i].as_mut() {
                    s.external = Some(handshake);
                }
                let s = self.slots[i].as_ref().expect("just made");
                let socket = self.reply_socket(ctx, i, s);
                answer_handshake(ctx.node, &e.req, &e.msg, &s.reply, socket);
                self.maybe_connect_now(ctx, i);
            }
        }
    }

    /// Firewall, slot and stream id for a client whose first message decrypted to
    /// `remote_payload` (`None`: refused).
    fn plan_reply(
        &mut self,
        ctx: &mut Ctx<'_>,
        remote_payload: NoisePayload,
        remote_pk: [u8; 32],
        client_address: SocketAddrV4,
    ) -> Option<ReplyPlan> {
        if let Some(fw) = self.opts.firewall.as_mut() {
            if fw(&remote_pk, &remote_payload, client_address) {
                return None;
            }
        }
        let error = if remote_payload.version != 1 {
            error_code::VERSION_MISMATCH
        } else if remote_payload.udx.is_none() {
            error_code::ABORTED
        } else {
            error_code::NONE
        };
        let slot = (0..=self.slots.len() + self.reserved.len())
            .find(|i| self.slots.get(*i).is_none_or(|s| s.is_none()) && !self.reserved.contains(i))
            .unwrap_or(usize::MAX);
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, || None);
        }
        let stream_id = if error == error_code::NONE {
            ctx.random_u32().max(1)
        } else {
            0
        };
        let relay_token = self.opts.relay_through.map(|_| ctx.node.random_bytes32());
        Some(ReplyPlan {
            slot,
            error,
            stream_id,
            relay_token,
            remote_payload,
            remote_public_key: remote_pk,
        })
    }

    /// The noise payload of our reply.
    fn reply_payload(&self, ctx: &mut Ctx<'_>, plan: &ReplyPlan) -> NoisePayload {
        let (id, error, stream_id, relay_token) =
            (plan.slot, plan.error, plan.stream_id, plan.relay_token);
        let our_remote = ctx.node.remote_address();
        let mut addresses4: Vec<SocketAddrV4> = our_remote.into_iter().collect();
        if !self.opts.no_local_address {
            addresses4.extend_from_slice(ctx.local_addresses);
        }
        let relay_addresses = self.announcer.relay_addresses.clone();
        NoisePayload {
            error,
            firewall: if our_remote.is_some() {
                Firewall::Open
            } else {
                Firewall::Unknown
            },
            holepunch: if our_remote.is_some() {
                None
            } else {
                Some(HolepunchInfo {
                    id: id as u64,
                    relays: self.announcer.relays.clone(),
                })
            },
            addresses4,
            udx: Some(UdxInfo {
                version: 1,
                reusable_socket: false,
                id: u64::from(stream_id),
                seq: 0,
            }),
            secret_stream: Some(1),
            relay_through: self
                .opts
                .relay_through
                .zip(relay_token)
                .map(|(public_key, token)| RelayThroughInfo {
                    version: 1,
                    public_key,
                    token,
                }),
            relay_addresses: (!relay_addresses.is_empty()).then_some(relay_addresses),
            ..NoisePayload::default()
        }
    }

    /// The slot of a handshake whose reply (`reply`, encrypted) is ready.
    #[allow(clippy::too_many_arguments)]
    fn finish_handshake(
        &mut self,
        ctx: &mut Ctx<'_>,
        msg: &HandshakeMessage,
        client_address: SocketAddrV4,
        req: &IncomingRequest,
        direct: bool,
        plan: ReplyPlan,
        reply: Vec<u8>,
        hs: Option<HandshakeResult>,
        holepunch_secret: [u8; 32],
    ) -> Option<usize> {
        let ReplyPlan {
            slot: id,
            error,
            stream_id,
            relay_token,
            remote_payload,
            remote_public_key: remote_pk,
        } = plan;
        self.reserved.remove(&id);
        if self.slots.len() <= id {
            self.slots.resize_with(id + 1, || None);
        }
        if self.slots[id].is_some() {
            return None;
        }
        let our_remote = ctx.node.remote_address();
        let mut slot = Slot {
            round: 0,
            reply,
            puncher: None,
            secure: None,
            stream_id,
            remote_stream_id: remote_payload.udx.map(|u| u.id as u32).unwrap_or(0),
            remote_public_key: remote_pk,
            hs,
            reply_from_puncher: false,
            prepunching: None,
            clearing: None,
            connected: false,
            pending: Vec::new(),
            key: msg.noise.clone(),
            direct: None,
            relaying: false,
            relay_addr: None,
            relayed_path: false,
            upgrading: false,
            client_stream_id: remote_payload.udx.map(|u| u.id as u32).unwrap_or(0),
            external: None,
        };
        if error != error_code::NONE {
            slot.clearing = Some(ctx.now + CLEAR_WAIT);
            slot.connected = true;
            self.slots[id] = Some(slot);
            return Some(id);
        }
        if remote_payload.firewall == Firewall::Open || direct {
            // Connected right after the reply (maybe_connect_now).
            slot.prepunching = Some(ctx.now);
            let socket = if direct {
                req.socket
            } else {
                ctx.node.default_socket()
            };
            slot.direct = Some((socket, client_address));
            self.slots[id] = Some(slot);
            return Some(id);
        }
        // server.js _relayConnection: our relay (we pair as initiator) or the client's.
        let relay = match (
            self.opts.relay_through.zip(relay_token),
            &remote_payload.relay_through,
        ) {
            (Some((pk, token)), _) => Some((true, pk, token)),
            (None, Some(r)) => Some((false, r.public_key, r.token)),
            (None, None) => None,
        };
        if let Some((is_initiator, relay_public_key, token)) = relay {
            slot.relaying = true;
            ctx.events.push_back(ConnectEvent::RelayPairing {
                pairing: PairingId(Owner::Slot(self.id, id)),
                relay_public_key,
                token,
                is_initiator,
                stream_id,
            });
        }
        if our_remote.is_some() || self.opts.never_punch {
            slot.prepunching = Some(ctx.now + INITIAL_TIMEOUT);
            self.slots[id] = Some(slot);
            return Some(id);
        }
        let nonce_secret = ctx.node.random_bytes32();
        slot.secure = Some(SecurePayload::new(holepunch_secret, nonce_secret));
        let nodes = ctx.node.nodes(usize::MAX);
        let seed = ctx.node.random_below(u64::MAX);
        let mut p = Puncher::new(
            false,
            remote_payload.firewall,
            ctx.node.is_firewalled(),
            nodes,
            seed,
        );
        ctx.drain_puncher(Owner::Slot(self.id, id), &mut p);
        slot.puncher = Some(p);
        slot.reply_from_puncher = true;
        slot.prepunching = Some(ctx.now + INITIAL_TIMEOUT);
        self.slots[id] = Some(slot);
        Some(id)
    }
}

impl Server {
    fn owner(&self, i: usize) -> Owner {
        Owner::Slot(self.id, i)
    }

    fn maybe_connect_now(&mut self, ctx: &mut Ctx<'_>, i: usize) {
        let Some(s) = self.slots[i].as_mut() else {
            return;
        };
        if let Some((socket, addr)) = s.direct.take() {
            self.on_socket(ctx, i, socket, addr);
        }
    }

    /// `_onpeerholepunch`.
    pub fn on_holepunch(&mut self, ctx: &mut Ctx<'_>, req: IncomingRequest, msg: HolepunchMessage) {
        if self.closed {
            return;
        }
        let i = msg.id as usize;
        let Some(Some(s)) = self.slots.get_mut(i) else {
            return;
        };
        let Some(peer_address) = msg.peer_address else {
            return;
        };
        let Some(sp) = s.secure.clone() else {
            return self.reply_abort(ctx, i, &req, &msg, error_code::ABORTED);
        };
        let Some(remote) = sp.decrypt(&msg.payload) else {
            return;
        };
        if s.puncher.is_none() {
            return self.reply_abort(ctx, i, &req, &msg, error_code::ABORTED);
        }
        let is_server_relay = self.announcer.is_relay(&req.from.addr);
        if remote.error != error_code::NONE {
            if remote.round >= s.round {
                s.round = remote.round;
            }
            return self.reply_abort(ctx, i, &req, &msg, error_code::ABORTED);
        }
        let token = sp.token(peer_address.ip());
        let echoed = is_server_relay && remote.remote_token == Some(token);
        let owner = Owner::Slot(self.id, i);
        let p = s.puncher.as_mut().unwrap();
        if ctx.puncher_socket(owner, p) == Some(req.socket) {
            p.nat.add(req.to, req.from.addr);
        }
        if remote.round >= s.round {
            s.round = remote.round;
            // Beyond JS: a client that says it is OPEN but lists no address is punched at the
            // address its echoed token verifies. hyperdht's Nat keeps no addresses for OPEN, so
            // a JS client on a public address whose firewall check finished after its handshake
            // (sent as UNKNOWN, so we punch) says OPEN with none, and server.js, finding no
            // address to punch, aborts (HOLEPUNCH_ABORTED; the NAT lab's `:early` cells).
            let seen = [peer_address];
            let addresses = match remote.addresses.as_deref() {
                Some(a) if !a.is_empty() => Some(a),
                _ if echoed && remote.firewall == Firewall::Open => Some(&seen[..]),
                other => other,
            };
            p.update_remote(
                remote.punching,
                remote.firewall,
                addresses,
                echoed.then(|| *peer_address.ip()),
            );
        }
        s.pending.push(PendingPunch {
            req,
            msg,
            remote,
            token,
            is_server_relay,
            reopening: false,
        });
        self.continue_holepunch(ctx, i);
    }

    /// The part of `_onpeerholepunch` after `await p.analyze(...)`, for each waiting request.
    fn continue_holepunch(&mut self, ctx: &mut Ctx<'_>, i: usize) {
        loop {
            let Some(Some(s)) = self.slots.get_mut(i) else {
                return;
            };
            let Some(p) = s.puncher.as_mut() else {
                s.pending.clear();
                return;
            };
            let Some(pp) = s.pending.first_mut() else {
                return;
            };
            let now_ms = ctx.now.as_millis() as u64;
            if !pp.reopening {
                let Some(stable) = p.analyze() else { return };
                if !p.remote_holepunching && !stable {
                    pp.reopening = true;
                    p.start_reopen();
                    let out = ctx.drain_puncher(Owner::Slot(self.id, i), p);
                    let _ = out;
                    continue;
                }
            } else {
                match p.reopen_result() {
                    None => return,
                    Some(false) => {
                        let pp = s.pending.remove(0);
                        self.reply_abort(ctx, i, &pp.req, &pp.msg, error_code::ABORTED);
                        continue;
                    }
                    Some(true) => {}
                }
            }
            let pp = s.pending.remove(0);
            // Fast mode: consistent here and the client opened a session to one of our addresses.
            let consistent = matches!(p.nat.firewall, Firewall::Open | Firewall::Consistent);
            if consistent
                && pp
                    .remote
                    .remote_address
                    .is_some_and(|a| p.nat.addresses.as_ref().is_some_and(|v| v.contains(&a)))
            {
                if let Some(peer) = pp.msg.peer_address {
                    p.ping(peer);
                }
            }
            if p.remote_holepunching {
                s.prepunching = None;
                let random =
                    p.remote_firewall >= Firewall::Random || p.nat.firewall >= Firewall::Random;
                // Beyond JS: a puncher that already runs the random punch is not limited by
                // itself. A PEER_HOLEPUNCH retried by the client (its request timed out while
                // we opened the birthday sockets) must get the same answer, not TRY_LATER:
                // server.js counts its own punch in `_randomPunches` and aborts it.
                if random && !p.is_randomized() && ctx.limiter.is_limited(now_ms) {
                    // server.js `h.relayToken`: set while the relay pairs and after it paired.
                    let relaying = self.slots[i]
                        .as_ref()
                        .is_some_and(|s| s.relaying || s.upgrading);
                    if !relaying {
                        // server.js: without a relay token, abort with TRY_LATER.
                        self.reply_abort(ctx, i, &pp.req, &pp.msg, error_code::TRY_LATER);
                        continue;
                    }
                    // With a relay pairing under way: TRY_LATER, keeping the puncher.
                    let s = self.slots[i].as_mut().unwrap();
                    let p = s.puncher.as_ref().unwrap();
                    let payload = HolepunchPayload {
                        error: error_code::TRY_LATER,
                        firewall: p.nat.firewall,
                        round: s.round,
                        connected: p.is_connected(),
                        punching: p.is_punching(),
                        addresses: p.nat.addresses.clone(),
                        remote_address: None,
                        token: pp.is_server_relay.then_some(pp.token),
                        remote_token: pp.remote.token,
                    };
                    let nonce = ctx.nonce();
                    let boxed = s.secure.as_ref().unwrap().encrypt(&payload, nonce);
                    let socket = ctx.puncher_socket(Owner::Slot(self.id, i), p);
                    answer_holepunch(ctx.node, &pp.req, &pp.msg, boxed, socket);
                    continue;
                }
                let s = self.slots[i].as_mut().unwrap();
                let p = s.puncher.as_mut().unwrap();
                if !p.punch(now_ms, ctx.limiter) {
                    self.reply_abort(ctx, i, &pp.req, &pp.msg, error_code::ABORTED);
                    continue;
                }
            }
            let s = self.slots[i].as_mut().unwrap();
            let p = s.puncher.as_mut().unwrap();
            if p.nat.firewall != Firewall::Unknown {
                p.nat.freeze();
            }
            let payload = HolepunchPayload {
                error: error_code::NONE,
                firewall: p.nat.firewall,
                round: s.round,
                connected: p.is_connected(),
                punching: p.is_punching(),
                addresses: p.nat.addresses.clone(),
                remote_address: None,
                token: pp.is_server_relay.then_some(pp.token),
                remote_token: pp.remote.token,
            };
            let nonce = ctx.nonce();
            let boxed = s.secure.as_ref().unwrap().encrypt(&payload, nonce);
            let socket = ctx.puncher_socket(Owner::Slot(self.id, i), p);
            self.drain_slot(ctx, i);
            answer_holepunch(ctx.node, &pp.req, &pp.msg, boxed, socket);
        }
    }

    /// `_abort(h, error)`: an encrypted error payload from the DHT socket.
    fn reply_abort(
        &mut self,
        ctx: &mut Ctx<'_>,
        i: usize,
        req: &IncomingRequest,
        msg: &HolepunchMessage,
        error: u64,
    ) {
        let Some(Some(s)) = self.slots.get_mut(i) else {
            return;
        };
        let Some(sp) = s.secure.clone() else {
            self.destroy_slot_puncher(ctx, i);
            return;
        };
        let payload = HolepunchPayload {
            error,
            round: s.round,
            ..Default::default()
        };
        let nonce = ctx.nonce();
        let boxed = sp.encrypt(&payload, nonce);
        self.destroy_slot_puncher(ctx, i);
        let socket = ctx.node.default_socket();
        answer_holepunch(ctx.node, req, msg, boxed, Some(socket));
    }

    fn destroy_slot_puncher(&mut self, ctx: &mut Ctx<'_>, i: usize) {
        let owner = self.owner(i);
        let Some(Some(s)) = self.slots.get_mut(i) else {
            return;
        };
        if let Some(mut p) = s.puncher.take() {
            p.destroy(ctx.now.as_millis() as u64, ctx.limiter);
            ctx.drain_puncher(owner, &mut p);
        }
        if s.clearing.is_none() && !s.relaying {
            s.clearing = Some(ctx.now + CLEAR_WAIT);
        }
    }

    /// The relay paired slot `i`.
    pub fn relay_paired(
        &mut self,
        ctx: &mut Ctx<'_>,
        i: usize,
        socket: SocketId,
        relay: SocketAddrV4,
        remote_id: u32,
    ) {
        let Some(Some(s)) = self.slots.get_mut(i) else {
            return;
        };
        s.relaying = false;
        if s.connected {
            return;
        }
        s.relayed_path = true;
        s.remote_stream_id = remote_id;
        if s.puncher.is_some() {
            // server.js: pairing hands the relayed stream over and leaves the puncher (and the
            // handshake's slot) alone; a punched path then moves the stream (`hs.onsocket`).
            s.upgrading = true;
        }
        self.on_socket(ctx, i, socket, relay);
    }

    /// The connection to slot `i`'s relay is up at `relay`.
    pub fn relay_connected(&mut self, i: usize, relay: SocketAddrV4) {
        if let Some(Some(s)) = self.slots.get_mut(i) {
            s.relay_addr = Some(relay);
        }
    }

    /// The relay could not pair slot `i`.
    pub fn relay_failed(&mut self, ctx: &mut Ctx<'_>, i: usize) {
        let Some(Some(s)) = self.slots.get_mut(i) else {
            return;
        };
        s.relaying = false;
        if s.puncher.is_none() && s.clearing.is_none() {
            s.clearing = Some(ctx.now + CLEAR_WAIT);
        }
    }

    fn drain_slot(&mut self, ctx: &mut Ctx<'_>, i: usize) {
        let owner = self.owner(i);
        let Some(Some(s)) = self.slots.get_mut(i) else {
            return;
        };
        let Some(p) = s.puncher.as_mut() else { return };
        let out = ctx.drain_puncher(owner, p);
        if out.aborted {
            s.puncher = None;
            if s.clearing.is_none() {
                s.clearing = Some(ctx.now + CLEAR_WAIT);
            }
        }
        if let Some((socket, addr)) = out.connected {
            self.on_socket(ctx, i, socket, addr);
        }
    }

    pub fn with_puncher(&mut self, ctx: &mut Ctx<'_>, i: usize, f: impl FnOnce(&mut Puncher)) {
        if let Some(Some(s)) = self.slots.get_mut(i) {
            if let Some(p) = s.puncher.as_mut() {
                f(p);
            }
        }
        self.drain_slot(ctx, i);
        self.continue_holepunch(ctx, i);
    }

    pub fn with_puncher_lim(
        &mut self,
        ctx: &mut Ctx<'_>,
        i: usize,
        f: impl FnOnce(&mut Puncher, &mut RandomPunchLimiter),
    ) {
        if let Some(Some(s)) = self.slots.get_mut(i) {
            if let Some(p) = s.puncher.as_mut() {
                f(p, ctx.limiter);
            }
        }
        self.drain_slot(ctx, i);
    }

    /// The raw stream's firewall hook: the first UDX packet for a slot's stream id. A stream
    /// handed over relayed (`upgrading`) moves (server.js `hs.onsocket`, `changeRemote`) only
    /// when the packet comes on one of the slot's punching sockets from the peer as the punch
    /// knows it ([`Puncher::vouches_for`]): the relay, and anyone on path, sees the stream ids,
    /// so one packet from anywhere must not move it (beyond JS, whose firewall takes any
    /// non-relay sender). Other packets are left to the stream's own socket (`false`).
    pub fn on_firewall(
        &mut self,
        ctx: &mut Ctx<'_>,
        socket: SocketId,
        from: SocketAddrV4,
        stream_id: u32,
    ) -> bool {
        let Some(i) = self.slots.iter().position(|s| {
            s.as_ref()
                .is_some_and(|s| s.stream_id == stream_id && (!s.connected || s.upgrading))
        }) else {
            return false;
        };
        // server.js firewall: traffic from the relay before the pairing answer is not a path.
        if self.slots[i]
            .as_ref()
            .is_some_and(|s| s.relay_addr == Some(from))
        {
            return false;
        }
        let local = ctx.pool.local_of(Owner::Slot(self.id, i), socket);
        if self.slots[i].as_ref().is_some_and(|s| {
            s.connected
                && !s
                    .puncher
                    .as_ref()
                    .zip(local)
                    .is_some_and(|(p, l)| p.vouches_for(l, from))
        }) {
            return false;
        }
        self.on_socket(ctx, i, socket, from);
        true
    }

    /// `hs.onsocket`: hand the connection over.
    fn on_socket(&mut self, ctx: &mut Ctx<'_>, i: usize, socket: SocketId, addr: SocketAddrV4) {
        let Some(Some(s)) = self.slots.get_mut(i) else {
            return;
        };
        if s.connected && s.upgrading {
            // server.js `hs.onsocket` on a connected raw stream: `changeRemote(socket,
            // remotePayload.udx.id, port, host)`, confirmDirectUpgrade.
            s.upgrading = false;
            s.clearing = Some(ctx.now + CLEAR_WAIT);
            let upgrade = ConnectEvent::Upgrade {
                local_id: s.stream_id,
                socket,
                remote_id: s.client_stream_id,
                remote: addr,
            };
            self.destroy_slot_puncher(ctx, i);
            ctx.events.push_back(upgrade);
            return;
        }
        if s.connected {
            return;
        }
        s.connected = true;
        s.prepunching = None;
        if s.upgrading {
            // The punch goes on; the slot stays while it does (bounded: beyond JS, which keeps
            // it until the stream closes).
            s.clearing = Some(ctx.now + UPGRADE_WAIT);
            let established = Established {
                is_initiator: false,
                handshake: s.hs.clone(),
                remote_public_key: s.remote_public_key,
                socket,
                local_id: s.stream_id,
                remote_id: s.remote_stream_id,
                remote: addr,
                relayed: true,
                external_handshake: s.external,
            };
            ctx.events.push_back(ConnectEvent::Incoming {
                server: self.id,
                remote_public_key: s.remote_public_key,
                established,
            });
            return;
        }
        s.clearing = Some(ctx.now + CLEAR_WAIT);
        let established = Established {
            is_initiator: false,
            handshake: s.hs.clone(),
            remote_public_key: s.remote_public_key,
            socket,
            local_id: s.stream_id,
            remote_id: s.remote_stream_id,
            remote: addr,
            relayed: s.relayed_path,
            external_handshake: s.external,
        };
        let remote_public_key = s.remote_public_key;
        self.destroy_slot_puncher(ctx, i);
        ctx.events.push_back(ConnectEvent::Incoming {
            server: self.id,
            remote_public_key,
            established,
        });
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        let slots = self.slots.iter().flatten().flat_map(|s| {
            let p = s
                .puncher
                .as_ref()
                .and_then(|p| p.poll_timeout())
                .map(Duration::from_millis);
            [s.prepunching, s.clearing, p]
        });
        let refused = self.refused.first().map(|(_, t)| *t);
        slots
            .flatten()
            .chain(refused)
            .chain(self.announcer.poll_timeout())
            .min()
    }

    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        self.announcer.handle_timeout(now, ctx.node);
        self.track_announcer(ctx);
        while self.refused.first().is_some_and(|(_, t)| *t <= now) {
            let (k, _) = self.refused.remove(0);
            if self.connects.get(&k) == Some(&None) {
                self.connects.remove(&k);
            }
        }
        for i in 0..self.slots.len() {
            let Some(s) = self.slots[i].as_mut() else {
                continue;
            };
            if let Some(p) = s.puncher.as_mut() {
                p.handle_timeout(now.as_millis() as u64, ctx.limiter);
                self.drain_slot(ctx, i);
            }
            let Some(s) = self.slots[i].as_mut() else {
                continue;
            };
            if s.prepunching.is_some_and(|t| t <= now) {
                s.prepunching = None;
                self.destroy_slot_puncher(ctx, i);
            }
            let Some(s) = self.slots[i].as_ref() else {
                continue;
            };
            if s.clearing.is_some_and(|t| t <= now) {
                let key = s.key.clone();
                self.destroy_slot_puncher(ctx, i);
                self.connects.remove(&key);
                self.slots[i] = None;
            }
        }
        while self.slots.last().is_some_and(|s| s.is_none()) {
            self.slots.pop();
        }
    }
}

/// The server's answer to a routed PEER_HANDSHAKE, sent per its mode (router.js:100-127).
fn answer_handshake(
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
fn answer_holepunch(
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
