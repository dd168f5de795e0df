//! The client side of a connection (hyperdht lib/connect.js): find the server's relays with
//! FIND_PEER, send the Noise IK handshake through up to 2 of them at once, then connect
//! directly (open server), or holepunch: a probe round and a punch round of PEER_HOLEPUNCH
//! through the server's relay while the puncher opens the path.
//!
//! (Over 1,000 lines on purpose: one state machine, the phases of connect.js in their order;
//! its options are in `options.rs`. Splitting the phases apart would scatter the shared
//! attempt state they all read and write.)

use core::net::SocketAddrV4;
use core::time::Duration;
use std::collections::VecDeque;

mod options;

pub use options::{ConnectError, ConnectOptions, DEFAULT_CONNECT_TIMEOUT};

use super::{ConnectEvent, Ctx, Established, ExternalReceived, NoiseStep, Owner, PairingId};
use crate::crypto::{hash, KeyPair};
use crate::dht::holepunch::puncher::{Puncher, RandomPunchLimiter};
use crate::dht::holepunch::SecurePayload;
use crate::dht::messages_connect::{
    command, error_code, Firewall, HandshakeMessage, HolepunchMessage, HolepunchPayload, Mode,
    NoisePayload, RelayInfo, RelayThroughInfo, UdxInfo,
};
use crate::dht::noise_wrap::{HandshakeResult, NoiseWrap};
use crate::dht::rpc::{QueryOptions, RequestId, RequestSpec, Response, SocketId};

/// Parallel handshakes (JS semaphore of 2, 3 with preconnect).
const PARALLEL: usize = 2;
/// Our firewall is OPEN: wait this long for the server to connect to us.
const PASSIVE_WAIT: Duration = Duration::from_secs(10);
/// The server's firewall is still UNKNOWN after the probe round: give it this long.
const ANALYZE_SLEEP: Duration = Duration::from_secs(1);
/// connect.js `tryLater`: a random punch refused for now (TRY_LATER, or our own random punch
/// limit) is tried again after 10 s plus up to 10 s more, while a relay pairing runs.
const TRY_LATER_MIN_MS: u64 = 10_000;
const TRY_LATER_SPREAD_MS: u64 = 10_000;
/// Beyond JS: how long the LAN shortcut's ping has to itself before the probe round starts.
/// connect.js sends both at once, and a server that aborts the punch (its NAT analysis found
/// nothing stable, as on one host) destroys the handshake's stream: a LAN ping answered just
/// before that abort connected JS (and us, before) to a stream that is gone, and the connection
/// hung until UDX gave up. A LAN answers well within this, so the probe is rarely sent at all; a
/// blocked ping costs the punch this much. When the pong still comes while a punch request is
/// out, the LAN path is taken only once that request is answered without an abort
/// (`lan_ready`): an abort fails the attempt with an error instead of a hang.
const LAN_FIRST: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
struct Connected {
    relay_address: SocketAddrV4,
    server_address: SocketAddrV4,
    payload: NoisePayload,
    /// `None` when the handshake ran outside (its keys are the key pair owner's).
    hs: Option<HandshakeResult>,
}

/// Who runs the Noise handshake.
enum Noise {
    /// Here, with our key pair.
    Local(Box<NoiseWrap>),
    /// Outside, by the key pair's owner ([`ConnectEvent::ExternalNoise`]).
    External,
    /// Used up (a reply failed to decrypt, or the owner refused).
    Spent,
}

/// A handshake reply handed out for decryption, waiting for [`Client::external_received`].
#[derive(Debug, Clone, Copy)]
struct PendingReply {
    to: SocketAddrV4,
    local: SocketAddrV4,
    peer_address: Option<SocketAddrV4>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Handshake(SocketAddrV4),
    Probe {
        retry: bool,
    },
    Punch,
    /// The non-punching update sent before the first TRY_LATER wait of our own limiter.
    Delay,
    Abort,
    Lan(SocketAddrV4),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Finding,
    Holepunch,
    /// Waiting for a probe reply.
    Probe {
        retry: bool,
    },
    /// The remote's firewall is unknown: sleep, then analyze.
    ProbeSleep {
        until: Duration,
        retry: bool,
    },
    /// Waiting for our NAT analysis (or a socket reopen).
    Analyze {
        retry: bool,
        reopening: bool,
    },
    /// Waiting for the punch round's reply.
    Punch,
    /// Waiting for the reply to the update sent before a TRY_LATER wait.
    Delay,
    /// A random punch was refused for now (connect.js `tryLater`): punch again at `until`.
    TryLater {
        until: Duration,
    },
    /// Punching: waiting for the puncher.
    Punching,
    /// Our firewall is open: the server connects to us.
    Passive {
        until: Duration,
    },
    /// The LAN shortcut's ping is out: the probe round waits for it until `until`.
    LanFirst {
        until: Duration,
    },
    Done,
}

pub(crate) struct Client {
    id: u64,
    target: [u8; 32],
    opts: ConnectOptions,
    stream_id: u32,
    noise: Noise,
    /// The first handshake message (empty while an external handshake has not given it).
    request: Vec<u8>,
    /// An external handshake's reply being decrypted by the owner.
    pending_reply: Option<PendingReply>,
    remote_public_key: [u8; 32],
    firewall: Firewall,
    inflight: usize,
    queued: VecDeque<SocketAddrV4>,
    tried: Vec<SocketAddrV4>,
    attempts: usize,
    tries_left: usize,
    query_running: bool,
    connect: Option<Connected>,
    secure: Option<SecurePayload>,
    puncher: Option<Puncher>,
    server_relay: Option<RelayInfo>,
    probe_token: Option<[u8; 32]>,
    probe_peer: Option<SocketAddrV4>,
    round: u64,
    early: Option<(SocketId, SocketAddrV4)>,
    phase: Phase,
    finished: bool,
    relay_token: Option<[u8; 32]>,
    pending_reqs: Vec<(RequestId, Req)>,
    /// A blind-relay pairing runs: punch failures wait for it.
    relaying: bool,
    /// The punch failure held back while relaying.
    punch_error: Option<ConnectError>,
    /// The relay's address: its packets are not a direct path.
    relay_addr: Option<SocketAddrV4>,
    /// The path chosen is the relay's.
    relayed_path: bool,
    /// The relayed connection was handed over ([`ConnectEvent::Connected`] with `relayed`)
    /// while the punch goes on: a punched path now upgrades it ([`ConnectEvent::Upgrade`]),
    /// a failed punch just ends the punching (connect.js `isDone`, `c.onsocket` with
    /// `rawStream.connected`).
    upgrading: bool,
    /// Only the LAN ping can connect (the server gave no holepunch info).
    lan_only: bool,
    /// The LAN ping was answered while a punch request was out: connect there once it is
    /// answered (an abort means the server dropped the handshake's stream).
    lan_ready: Option<SocketAddrV4>,
    /// connect.js `roundPunch(..., delayed)`: the punch was put off once (TRY_LATER); later
    /// punch rounds go through the server's chosen relay, without a token.
    delayed: bool,
    /// How many TRY_LATER waits this attempt went through.
    try_laters: u32,
    /// Our key pair (none when the handshake runs outside), for a retry through the fallback
    /// relay.
    retry_key: Option<KeyPair>,
    /// Set when the attempt failed and should be made again with these options.
    retry_with: Option<ConnectOptions>,
}

fn owner(c: &Client) -> Owner {
    Owner::Client(c.id)
}

impl Client {
    /// After a failure: the options and keys to start again with (fallback relay).
    pub fn take_retry(&mut self) -> Option<(KeyPair, [u8; 32], ConnectOptions)> {
        let opts = self.retry_with.take()?;
        let key_pair = self.retry_key.clone()?;
        Some((key_pair, self.remote_public_key, opts))
    }

    /// Starts an attempt; with no `key_pair` the Noise handshake runs outside: the owner is
    /// asked for the first message at once ([`ConnectEvent::ExternalNoise`]).
    pub fn start(
        ctx: &mut Ctx<'_>,
        id: u64,
        key_pair: Option<KeyPair>,
        remote_public_key: [u8; 32],
        opts: ConnectOptions,
    ) -> Client {
        let stream_id = ctx.random_u32().max(1);
        let eph = ctx.ephemeral();
        let relay_token = opts.relay_through.map(|_| ctx.node.random_bytes32());
        let remote = ctx.node.remote_address();
        let firewall = if remote.is_some() {
            Firewall::Open
        } else {
            Firewall::Unknown
        };
        let mut addresses4: Vec<SocketAddrV4> = remote.into_iter().collect();
        if opts.local_connection {
            addresses4.extend_from_slice(ctx.local_addresses);
        }
        let payload = NoisePayload {
            firewall,
            addresses4,
            udx: Some(UdxInfo {
                version: 1,
                reusable_socket: false,
                id: u64::from(stream_id),
                seq: 0,
            }),
            secret_stream: Some(1),
            relay_through: opts
                .relay_through
                .zip(relay_token)
                .map(|(public_key, token)| RelayThroughInfo {
                    version: 1,
                    public_key,
                    token,
                }),
            ..NoisePayload::default()
        };
        let retry_key = key_pair.clone();
        let external = key_pair.is_none();
        let (noise, request) = match key_pair {
            None => (Noise::External, Vec::new()),
            Some(kp) => match NoiseWrap::initiator(kp, remote_public_key, eph) {
                Ok(mut n) => match n.send(&payload) {
                    Ok(r) => (Noise::Local(Box::new(n)), r),
                    Err(_) => (Noise::Spent, Vec::new()),
                },
                Err(_) => (Noise::Spent, Vec::new()),
            },
        };
        let tries_left = if opts.relay_addresses.is_empty() {
            1
        } else {
            2
        };
        let mut c = Client {
            id,
            target: hash(&remote_public_key),
            opts,
            stream_id,
            noise,
            request,
            pending_reply: None,
            remote_public_key,
            firewall,
            inflight: 0,
            queued: VecDeque::new(),
            tried: Vec::new(),
            attempts: 0,
            tries_left,
            query_running: false,
            connect: None,
            secure: None,
            puncher: None,
            server_relay: None,
            probe_token: None,
            probe_peer: None,
            round: 0,
            early: None,
            phase: Phase::Finding,
            finished: false,
            relay_token,
            pending_reqs: Vec::new(),
            relaying: false,
            punch_error: None,
            relay_addr: None,
            relayed_path: false,
            upgrading: false,
            lan_only: false,
            lan_ready: None,
            delayed: false,
            try_laters: 0,
            retry_key,
            retry_with: None,
        };
        if matches!(c.noise, Noise::Spent) {
            c.fail(ctx, ConnectError::InvalidPublicKey);
            return c;
        }
        if external {
            ctx.events.push_back(ConnectEvent::ExternalNoise {
                conn: id,
                step: NoiseStep::Send(Box::new(payload)),
            });
        }
        for a in c.opts.relay_addresses.clone() {
            c.queued.push_back(a);
        }
        c.pump_handshakes(ctx);
        c.start_query(ctx);
        c
    }

    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether the connection was handed over (relayed) and only the punch for a direct path
    /// goes on: the attempt's deadline no longer applies.
    pub fn is_upgrading(&self) -> bool {
        self.upgrading
    }

    fn start_query(&mut self, ctx: &mut Ctx<'_>) {
        if self.tries_left == 0 {
            return;
        }
        self.tries_left -= 1;
        let opts = QueryOptions {
            nodes: self.opts.relay_addresses.clone(),
            retries: Some(3),
            ..QueryOptions::default()
        };
        if let Ok(q) = ctx
            .node
            .query(ctx.now, self.target, command::FIND_PEER, None, opts)
        {
            ctx.queries.insert(q, owner(self));
            self.query_running = true;
        }
    }

    pub fn on_query_reply(&mut self, ctx: &mut Ctx<'_>, reply: Response) {
        if self.phase != Phase::Finding {
            return;
        }
        // mapFindPeer: only replies carrying a decodable `peer` record count.
        let Some(v) = reply.value.as_deref() else {
            return;
        };
        if v.len() < 33 {
            return;
        }
        if self.tried.contains(&reply.from.addr) || self.queued.contains(&reply.from.addr) {
            return;
        }
        self.queued.push_back(reply.from.addr);
        self.pump_handshakes(ctx);
    }

    pub fn on_query_done(&mut self, ctx: &mut Ctx<'_>) {
        self.query_running = false;
        if self.phase == Phase::Finding
            && self.pending_reply.is_none()
            && self.connect.is_none()
            && self.queued.is_empty()
            && self.inflight == 0
        {
            if self.tries_left > 0 {
                self.start_query(ctx);
                if self.query_running {
                    return;
                }
            }
            self.fail_not_found(ctx);
        }
    }

    fn fail_not_found(&mut self, ctx: &mut Ctx<'_>) {
        let e = if self.attempts > 0 {
            ConnectError::PeerConnectionFailed
        } else {
            ConnectError::PeerNotFound
        };
        self.fail(ctx, e);
    }

    fn pump_handshakes(&mut self, ctx: &mut Ctx<'_>) {
        // An external handshake: not before its first message, nor while a reply is out.
        if self.request.is_empty() || self.pending_reply.is_some() {
            return;
        }
        while self.inflight < PARALLEL && self.connect.is_none() && !self.finished {
            let Some(to) = self.queued.pop_front() else {
                break;
            };
            self.tried.push(to);
            self.attempts += 1;
            let mut spec = RequestSpec::new(to, command::PEER_HANDSHAKE);
            spec.target = Some(self.target);
            spec.value = Some(
                HandshakeMessage {
                    mode: Mode::FromClient,
                    noise: self.request.clone(),
                    peer_address: None,
                    relay_address: None,
                }
                .encode(),
            );
            if let Ok(rid) = ctx.node.request(ctx.now, spec) {
                ctx.requests.insert(rid, owner(self));
                self.inflight += 1;
                self.pending_reqs.push((rid, Req::Handshake(to)));
            }
        }
    }
}

impl Client {
    fn take_req(&mut self, id: RequestId) -> Option<Req> {
        let i = self.pending_reqs.iter().position(|(r, _)| *r == id)?;
        Some(self.pending_reqs.swap_remove(i).1)
    }

    pub fn on_response(&mut self, ctx: &mut Ctx<'_>, id: RequestId, res: Result<&Response, ()>) {
        let Some(req) = self.take_req(id) else { return };
        if self.finished {
            return;
        }
        match req {
            Req::Handshake(to) => {
                self.inflight = self.inflight.saturating_sub(1);
                if let Ok(r) = res {
                    self.on_handshake_reply(ctx, to, r);
                }
                if self.connect.is_none() && !self.finished {
                    self.pump_handshakes(ctx);
                    if self.inflight == 0 && self.queued.is_empty() && !self.query_running {
                        self.on_query_done(ctx);
                    }
                }
            }
            Req::Probe { retry } => match self.holepunch_reply(ctx, res, false) {
                Err(e) => self.fail_punch(ctx, e),
                Ok((reply, payload)) => self.on_probe_reply(ctx, retry, reply, payload),
            },
            Req::Punch => match self.holepunch_reply(ctx, res, true) {
                Err(e) => self.fail_punch(ctx, e),
                Ok((_, payload)) if payload.error == error_code::TRY_LATER => {
                    // connect.js: `reply.tryLater`: wait, then punch again through the
                    // server's relay.
                    self.delayed = true;
                    self.try_later(ctx);
                }
                Ok(_) => self.after_punch_reply(ctx),
            },
            Req::Delay => match self.holepunch_reply(ctx, res, false) {
                Err(e) => self.fail_punch(ctx, e),
                Ok(_) => self.try_later(ctx),
            },
            Req::Abort => {}
            Req::Lan(addr) => match res {
                Ok(_) if self.punch_in_flight() => self.lan_ready = Some(addr),
                Ok(_) => self.on_socket(ctx, SocketId::SERVER, addr),
                Err(()) if self.lan_only => self.fail(ctx, ConnectError::HolepunchAborted),
                Err(()) if matches!(self.phase, Phase::LanFirst { .. }) => {
                    self.probe_round(ctx, true)
                }
                Err(()) => {}
            },
        }
        if !self.finished && !self.punch_in_flight() {
            if let Some(addr) = self.lan_ready.take() {
                self.on_socket(ctx, SocketId::SERVER, addr);
            }
        }
    }

    /// Whether a probe, punch or delay request is out (its answer may be the server's abort).
    fn punch_in_flight(&self) -> bool {
        self.pending_reqs
            .iter()
            .any(|(_, r)| matches!(r, Req::Probe { .. } | Req::Punch | Req::Delay))
    }

    fn on_handshake_reply(&mut self, ctx: &mut Ctx<'_>, to: SocketAddrV4, r: &Response) {
        if self.connect.is_some() {
            return;
        }
        let Some(hs) = r
            .value
            .as_deref()
            .and_then(|v| HandshakeMessage::decode(v).ok())
        else {
            return;
        };
        if hs.mode != Mode::Reply || r.from.addr != to || hs.noise.is_empty() {
            return; // BAD_HANDSHAKE_REPLY: this route failed
        }
        let reply = PendingReply {
            to,
            local: r.to,
            peer_address: hs.peer_address,
        };
        let mut noise = match core::mem::replace(&mut self.noise, Noise::Spent) {
            Noise::Local(n) => *n,
            Noise::External if self.pending_reply.is_none() => {
                self.noise = Noise::External;
                self.pending_reply = Some(reply);
                ctx.events.push_back(ConnectEvent::ExternalNoise {
                    conn: self.id,
                    step: NoiseStep::Recv(hs.noise),
                });
                return;
            }
            other => {
                self.noise = other;
                return;
            }
        };
        let payload = match noise.recv(&hs.noise) {
            Ok(p) => p,
            Err(_) => return, // the handshake object is spent, as in JS
        };
        let Ok(result) = noise.finish() else { return };
        let holepunch_secret = result.holepunch_secret;
        self.after_noise(ctx, reply, payload, Some(result), holepunch_secret);
    }

    /// The owner of an external handshake gave its first message (`None`: it refused).
    pub fn external_sent(&mut self, ctx: &mut Ctx<'_>, message: Option<Vec<u8>>) {
        if self.finished || !matches!(self.noise, Noise::External) || !self.request.is_empty() {
            return;
        }
        match message {
            Some(m) if !m.is_empty() => {
                self.request = m;
                self.pump_handshakes(ctx);
            }
            _ => {
                self.noise = Noise::Spent;
                self.fail(ctx, ConnectError::ServerError("Handshake denied".into()));
            }
        }
    }

    /// The owner of an external handshake decrypted the server's reply (`None`: it could not,
    /// or refused: the attempt fails, as JS's 'Handshake denied').
    pub fn external_received(&mut self, ctx: &mut Ctx<'_>, received: Option<ExternalReceived>) {
        if self.finished || !matches!(self.noise, Noise::External) {
            return;
        }
        let Some(reply) = self.pending_reply.take() else {
            return;
        };
        self.noise = Noise::Spent;
        match received {
            Some(r) => self.after_noise(ctx, reply, r.payload, None, r.holepunch_secret),
            None => self.fail(ctx, ConnectError::ServerError("Handshake denied".into())),
        }
    }

    /// The rest of a handshake reply, once its payload is read (here or outside).
    fn after_noise(
        &mut self,
        ctx: &mut Ctx<'_>,
        reply: PendingReply,
        payload: NoisePayload,
        result: Option<HandshakeResult>,
        holepunch_secret: [u8; 32],
    ) {
        let PendingReply {
            to,
            local,
            peer_address,
        } = reply;
        if payload.version != 1 {
            return self.fail(ctx, ConnectError::ServerIncompatible);
        }
        if payload.error != error_code::NONE {
            return self.fail(
                ctx,
                ConnectError::ServerError(format!("Server returned error code {}", payload.error)),
            );
        }
        if payload.udx.is_none() {
            return self.fail(
                ctx,
                ConnectError::ServerError("Server did not send UDX data".into()),
            );
        }
        let relayed = peer_address.is_some();
        let server_address = peer_address.unwrap_or(to);
        let nonce_secret = ctx.node.random_bytes32();
        self.secure = Some(SecurePayload::new(holepunch_secret, nonce_secret));
        let relay = match (
            &payload.relay_through,
            self.opts.relay_through.zip(self.relay_token),
        ) {
            (Some(r), _) => Some((false, r.public_key, r.token)),
            (None, Some((pk, token))) => Some((true, pk, token)),
            (None, None) => None,
        };
        self.connect = Some(Connected {
            relay_address: to,
            server_address,
            payload,
            hs: result,
        });
        if let Some((is_initiator, relay_public_key, token)) = relay {
            // connect.js relayConnection: `c.relayToken = token` (the server's, when it chose
            // the relay): a TRY_LATER is then waited out.
            self.relay_token = Some(token);
            self.relaying = true;
            ctx.events.push_back(ConnectEvent::RelayPairing {
                pairing: PairingId(owner(self)),
                relay_public_key,
                token,
                is_initiator,
                stream_id: self.stream_id,
            });
        }
        if let Some((socket, addr)) = self.early.take() {
            return self.on_socket(ctx, socket, addr);
        }
        if !relayed {
            let socket = ctx.node.default_socket();
            return self.on_socket(ctx, socket, to);
        }
        self.phase = Phase::Holepunch;
        self.holepunch(ctx, local);
    }

    /// connect.js `holepunch()`.
    fn holepunch(&mut self, ctx: &mut Ctx<'_>, client_address: SocketAddrV4) {
        let Some(c) = self.connect.clone() else {
            return;
        };
        let remote_holepunchable = c
            .payload
            .holepunch
            .as_ref()
            .is_some_and(|h| !h.relays.is_empty());
        let relayed = c.server_address != c.relay_address;
        if c.payload.firewall == Firewall::Open || (relayed && !remote_holepunchable) {
            let addr = c
                .payload
                .addresses4
                .iter()
                .find(|a| !super::bogon::is_bogon(a.ip()))
                .copied()
                .unwrap_or(c.server_address);
            let socket = ctx.node.default_socket();
            return self.on_socket(ctx, socket, addr);
        }
        if self.firewall == Firewall::Open {
            self.phase = Phase::Passive {
                until: ctx.now + PASSIVE_WAIT,
            };
            return;
        }
        // The LAN shortcut, raced with the punch (after LAN_FIRST): same public host, and the server shares
        // addresses that are not reserved: ping the best-matching one from the server socket.
        if self.opts.local_connection && relayed && *client_address.ip() == *c.server_address.ip() {
            let server_addrs: Vec<SocketAddrV4> = c
                .payload
                .addresses4
                .iter()
                .filter(|a| !super::bogon::is_reserved(a.ip()))
                .copied()
                .collect();
            if !server_addrs.is_empty() {
                let addr = crate::dht::holepunch::puncher::match_address(
                    ctx.local_addresses,
                    &server_addrs,
                )
                .unwrap_or(server_addrs[0]);
                let mut spec = RequestSpec::new(addr, crate::dht::rpc::PING);
                spec.internal = true;
                spec.socket = Some(SocketId::SERVER);
                if let Ok(rid) = ctx.node.request(ctx.now, spec) {
                    ctx.requests.insert(rid, owner(self));
                    self.pending_reqs.push((rid, Req::Lan(addr)));
                }
                if !remote_holepunchable {
                    self.lan_only = true;
                    return;
                }
            }
        }
        if !remote_holepunchable {
            return self.fail(ctx, ConnectError::CannotHolepunch);
        }
        if !self.opts.holepunch {
            // JS: "Client aborted holepunch" (after its probe round; we skip the probe).
            return self.fail(ctx, ConnectError::HolepunchAborted);
        }
        let relays = &c.payload.holepunch.as_ref().unwrap().relays;
        let server_relay = relays
            .iter()
            .find(|r| r.relay_address == c.relay_address)
            .copied()
            .unwrap_or(relays[0]);
        self.server_relay = Some(server_relay);
        let nodes = ctx.node.nodes(usize::MAX);
        let seed = ctx.node.random_below(u64::MAX);
        self.puncher = Some(Puncher::new(
            true,
            c.payload.firewall,
            ctx.node.is_firewalled(),
            nodes,
            seed,
        ));
        self.drain(ctx);
        if self
            .pending_reqs
            .iter()
            .any(|(_, r)| matches!(r, Req::Lan(_)))
        {
            self.phase = Phase::LanFirst {
                until: ctx.now + LAN_FIRST,
            };
            return;
        }
        self.probe_round(ctx, true);
    }

    fn probe_round(&mut self, ctx: &mut Ctx<'_>, retry: bool) {
        let (Some(c), Some(relay)) = (self.connect.clone(), self.server_relay) else {
            return;
        };
        let fast = self.opts.fast_open.then_some(c.server_address);
        let Some(p) = self.puncher.as_mut() else {
            return;
        };
        if let Some(a) = fast {
            p.open_session(a);
        }
        let payload = HolepunchPayload {
            error: error_code::NONE,
            firewall: p.nat.firewall,
            round: self.round,
            addresses: p.nat.addresses.clone(),
            remote_address: fast,
            ..Default::default()
        };
        self.round += 1;
        self.phase = Phase::Probe { retry };
        self.drain(ctx);
        self.send_holepunch(
            ctx,
            relay.relay_address,
            relay.peer_address,
            &payload,
            Req::Probe { retry },
        );
    }

    fn send_holepunch(
        &mut self,
        ctx: &mut Ctx<'_>,
        relay: SocketAddrV4,
        peer: SocketAddrV4,
        payload: &HolepunchPayload,
        kind: Req,
    ) {
        let (Some(c), Some(sp), Some(p)) = (
            self.connect.as_ref(),
            self.secure.as_ref(),
            self.puncher.as_ref(),
        ) else {
            return;
        };
        let id = c.payload.holepunch.as_ref().map(|h| h.id).unwrap_or(0);
        let nonce = ctx.nonce();
        let boxed = sp.encrypt(payload, nonce);
        let mut spec = RequestSpec::new(relay, command::PEER_HOLEPUNCH);
        spec.target = Some(self.target);
        spec.socket = ctx.puncher_socket(owner(self), p);
        spec.value = Some(
            HolepunchMessage {
                mode: Mode::FromClient,
                id,
                payload: boxed,
                peer_address: Some(peer),
            }
            .encode(),
        );
        match ctx.node.request(ctx.now, spec) {
            Ok(rid) => {
                ctx.requests.insert(rid, owner(self));
                self.pending_reqs.push((rid, kind));
            }
            Err(_) if kind != Req::Abort => self.fail_punch(ctx, ConnectError::HolepunchAborted),
            Err(_) => {}
        }
    }

    /// `updateHolepunch`'s reply half: decode, decrypt, check, update the puncher.
    fn holepunch_reply(
        &mut self,
        ctx: &mut Ctx<'_>,
        res: Result<&Response, ()>,
        punching: bool,
    ) -> Result<(Response, HolepunchPayload), ConnectError> {
        let r = res.map_err(|_| ConnectError::HolepunchAborted)?;
        let hp = r
            .value
            .as_deref()
            .and_then(|v| HolepunchMessage::decode(v).ok())
            .ok_or(ConnectError::BadHolepunchReply)?;
        if hp.mode != Mode::Reply {
            return Err(ConnectError::BadHolepunchReply);
        }
        let sp = self.secure.as_ref().ok_or(ConnectError::HolepunchAborted)?;
        let remote = sp
            .decrypt(&hp.payload)
            .ok_or(ConnectError::HolepunchInvalid)?;
        let try_later =
            remote.error == error_code::TRY_LATER && self.relay_token.is_some() && punching;
        if remote.error != error_code::NONE && !try_later {
            return Err(ConnectError::RemoteAborted(remote.error));
        }
        let peer = hp.peer_address.unwrap_or(r.from.addr);
        let sent_token = self
            .connect
            .as_ref()
            .map(|c| self.secure.as_ref().unwrap().token(c.server_address.ip()));
        let echoed = punching && remote.remote_token.is_some() && remote.remote_token == sent_token;
        if try_later {
            // connect.js returns `{ tryLater: true }` without taking the reply in, so the
            // server's echo of our token is lost, and the delayed punch (sent without a token)
            // never verifies the server's address: every random punch after a TRY_LATER then
            // fails with REMOTE_NOT_HOLEPUNCHABLE there. Beyond JS: keep the verified address
            // the echo proves (only that; the next reply sets the rest).
            if let (true, Some(p)) = (echoed, self.puncher.as_mut()) {
                let holepunching = p.remote_holepunching;
                let firewall = p.remote_firewall;
                p.update_remote(
                    holepunching,
                    firewall,
                    remote.addresses.as_deref(),
                    Some(*peer.ip()),
                );
            }
            return Ok((r.clone(), remote));
        }
        if let Some(p) = self.puncher.as_mut() {
            p.update_remote(
                remote.punching,
                remote.firewall,
                remote.addresses.as_deref(),
                echoed.then(|| *peer.ip()),
            );
        }
        self.probe_peer = Some(peer);
        let _ = ctx;
        Ok((r.clone(), remote))
    }

    fn on_probe_reply(
        &mut self,
        ctx: &mut Ctx<'_>,
        retry: bool,
        reply: Response,
        payload: HolepunchPayload,
    ) {
        self.probe_token = payload.token;
        if let Some(p) = self.puncher.as_mut() {
            p.nat.add(reply.to, reply.from.addr);
        }
        let remote_unknown = self
            .puncher
            .as_ref()
            .is_some_and(|p| p.remote_firewall == Firewall::Unknown);
        if remote_unknown {
            self.phase = Phase::ProbeSleep {
                until: ctx.now + ANALYZE_SLEEP,
                retry,
            };
        } else {
            self.phase = Phase::Analyze {
                retry,
                reopening: false,
            };
            self.step_analyze(ctx);
        }
    }

    /// The rest of `probeRound` once the NAT analysis (or a reopen) concluded.
    fn step_analyze(&mut self, ctx: &mut Ctx<'_>) {
        let Phase::Analyze { retry, reopening } = self.phase.clone() else {
            return;
        };
        let Some(p) = self.puncher.as_mut() else {
            return;
        };
        let stable = if reopening {
            match p.reopen_result() {
                None => return,
                Some(true) => return self.probe_round(ctx, false),
                Some(false) => false,
            }
        } else {
            match p.analyze() {
                None => return,
                Some(true) => true,
                Some(false) => {
                    p.start_reopen();
                    self.phase = Phase::Analyze {
                        retry,
                        reopening: true,
                    };
                    self.drain(ctx);
                    return self.step_analyze(ctx);
                }
            }
        };
        let _ = stable;
        let p = self.puncher.as_ref().unwrap();
        if (p.remote_firewall == Firewall::Unknown || self.probe_token.is_none()) && retry {
            return self.probe_round(ctx, false);
        }
        if p.remote_firewall == Firewall::Unknown || p.nat.firewall == Firewall::Unknown {
            return self.abort(ctx, ConnectError::HolepunchProbeTimeout);
        }
        if p.remote_firewall >= Firewall::Random && p.nat.firewall >= Firewall::Random {
            return self.abort(ctx, ConnectError::DoubleRandomizedNats);
        }
        self.round_punch(ctx);
    }

    fn round_punch(&mut self, ctx: &mut Ctx<'_>) {
        let (Some(mut c), Some(relay)) = (self.connect.clone(), self.server_relay) else {
            return;
        };
        if relay.relay_address == c.relay_address {
            if let Some(peer) = self.probe_peer {
                if peer != c.server_address {
                    c.server_address = peer;
                    if let Some(p) = self.puncher.as_mut() {
                        p.open_session(peer);
                    }
                    self.connect = Some(c.clone());
                }
            }
        }
        let now_ms = ctx.now.as_millis() as u64;
        let Some(p) = self.puncher.as_mut() else {
            return;
        };
        p.nat.freeze();
        let is_random = p.remote_firewall >= Firewall::Random || p.nat.firewall >= Firewall::Random;
        if is_random && ctx.limiter.is_limited(now_ms) {
            // connect.js: no relay can help: bail.
            if self.relay_token.is_none() {
                return self.fail_punch(ctx, ConnectError::HolepunchAborted);
            }
            if !self.delayed {
                // Tell the server our final NAT state (not punching), then wait.
                self.delayed = true;
                let token = self.secure.as_ref().map(|s| s.token(c.server_address.ip()));
                let payload = HolepunchPayload {
                    error: error_code::NONE,
                    firewall: p.nat.firewall,
                    round: self.round,
                    punching: false,
                    addresses: p.nat.addresses.clone(),
                    token,
                    remote_token: self.probe_token,
                    ..Default::default()
                };
                self.round += 1;
                self.phase = Phase::Delay;
                self.send_holepunch(ctx, c.relay_address, c.server_address, &payload, Req::Delay);
                return;
            }
            return self.try_later(ctx);
        }
        // A delayed punch goes through the server's chosen relay, without a token.
        let (to, via, token) = if self.delayed {
            (relay.peer_address, relay.relay_address, None)
        } else {
            let token = self.secure.as_ref().map(|s| s.token(c.server_address.ip()));
            (c.server_address, c.relay_address, token)
        };
        let payload = HolepunchPayload {
            error: error_code::NONE,
            firewall: p.nat.firewall,
            round: self.round,
            punching: true,
            addresses: p.nat.addresses.clone(),
            token,
            remote_token: self.probe_token,
            ..Default::default()
        };
        self.round += 1;
        self.phase = Phase::Punch;
        self.drain(ctx);
        self.send_holepunch(ctx, via, to, &payload, Req::Punch);
    }

    /// connect.js `tryLater`: sleep 10-20 s, then run the punch round again.
    fn try_later(&mut self, ctx: &mut Ctx<'_>) {
        if self.relay_token.is_none() {
            return self.fail_punch(ctx, ConnectError::HolepunchAborted);
        }
        self.try_laters += 1;
        let wait = TRY_LATER_MIN_MS + ctx.node.random_below(TRY_LATER_SPREAD_MS + 1);
        self.phase = Phase::TryLater {
            until: ctx.now + Duration::from_millis(wait),
        };
    }

    /// How many TRY_LATER waits the attempt went through.
    #[cfg(test)]
    pub fn try_laters(&self) -> u32 {
        self.try_laters
    }

    fn after_punch_reply(&mut self, ctx: &mut Ctx<'_>) {
        let now_ms = ctx.now.as_millis() as u64;
        let Some(p) = self.puncher.as_mut() else {
            return;
        };
        if !p.remote_holepunching {
            return self.fail_punch(ctx, ConnectError::RemoteNotHolepunching);
        }
        if !p.punch(now_ms, ctx.limiter) {
            return self.fail_punch(ctx, ConnectError::RemoteNotHolepunchable);
        }
        self.phase = Phase::Punching;
        self.drain(ctx);
    }

    /// connect.js `abort()`: tell the server, then fail.
    fn abort(&mut self, ctx: &mut Ctx<'_>, err: ConnectError) {
        if let Some(relay) = self.server_relay {
            let payload = HolepunchPayload {
                error: error_code::ABORTED,
                round: self.round,
                ..Default::default()
            };
            self.round += 1;
            self.send_holepunch(
                ctx,
                relay.relay_address,
                relay.peer_address,
                &payload,
                Req::Abort,
            );
        }
        self.fail_punch(ctx, err);
    }

    fn fail_punch(&mut self, ctx: &mut Ctx<'_>, err: ConnectError) {
        // The server aborted (or the punch failed): the handshake's stream may be gone there.
        self.lan_ready = None;
        self.destroy_puncher(ctx);
        self.fail(ctx, err);
    }

    fn destroy_puncher(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(mut p) = self.puncher.take() {
            p.destroy(ctx.now.as_millis() as u64, ctx.limiter);
            ctx.drain_puncher(owner(self), &mut p);
        }
    }

    fn drain(&mut self, ctx: &mut Ctx<'_>) {
        let o = owner(self);
        let Some(p) = self.puncher.as_mut() else {
            return;
        };
        let out = ctx.drain_puncher(o, p);
        if let Some((socket, addr)) = out.connected {
            return self.on_socket(ctx, socket, addr);
        }
        if out.aborted && !self.finished {
            self.puncher = None;
            self.fail(ctx, ConnectError::HolepunchAborted);
        }
    }

    pub fn with_puncher(&mut self, ctx: &mut Ctx<'_>, f: impl FnOnce(&mut Puncher)) {
        if let Some(p) = self.puncher.as_mut() {
            f(p);
        }
        self.drain(ctx);
        if matches!(self.phase, Phase::Analyze { .. }) {
            self.step_analyze(ctx);
        }
    }

    pub fn with_puncher_lim(
        &mut self,
        ctx: &mut Ctx<'_>,
        f: impl FnOnce(&mut Puncher, &mut RandomPunchLimiter),
    ) {
        if let Some(p) = self.puncher.as_mut() {
            f(p, ctx.limiter);
        }
        self.drain(ctx);
    }

    /// The raw stream's firewall: the server reached our stream id first. A stream handed over
    /// relayed (`upgrading`) is connected: like libudx (firewall only for unconnected streams),
    /// a packet for it never moves it (the relay sees the ids); only the puncher's verified
    /// path does (`c.onsocket`). Returning `false` leaves the packet to the stream's socket.
    pub fn on_firewall(&mut self, ctx: &mut Ctx<'_>, socket: SocketId, from: SocketAddrV4) -> bool {
        if self.finished || self.upgrading || self.relay_addr == Some(from) {
            return false;
        }
        if self.connect.is_none() {
            self.early = Some((socket, from));
            return false;
        }
        self.on_socket(ctx, socket, from);
        true
    }

    /// `c.onsocket`: the path is chosen; hand the connection over.
    fn on_socket(&mut self, ctx: &mut Ctx<'_>, socket: SocketId, addr: SocketAddrV4) {
        let remote_id = self
            .connect
            .as_ref()
            .and_then(|c| c.payload.udx)
            .map(|u| u.id as u32)
            .unwrap_or(0);
        self.established(ctx, socket, addr, remote_id);
    }

    /// The blind relay paired us: the stream runs to the relay's stream `remote_id`.
    pub fn relay_paired(
        &mut self,
        ctx: &mut Ctx<'_>,
        socket: SocketId,
        relay: SocketAddrV4,
        remote_id: u32,
    ) {
        self.relaying = false;
        if self.finished || self.upgrading {
            return;
        }
        self.relayed_path = true;
        if self.puncher.is_some() && self.punch_error.is_none() {
            // connect.js: the relayed stream starts while the puncher goes on (`isDone` is
            // false while `c.relaySocket` is set and the puncher neither connected nor
            // destroyed); a punched path then moves the stream (`c.onsocket`).
            self.upgrading = true;
            self.report(ctx, socket, relay, remote_id);
            return;
        }
        self.established(ctx, socket, relay, remote_id);
    }

    /// Our connection to the relay is up at `relay`.
    pub fn relay_connected(&mut self, relay: SocketAddrV4) {
        self.relay_addr = Some(relay);
    }

    /// The blind relay could not pair us.
    pub fn relay_failed(&mut self, ctx: &mut Ctx<'_>) {
        if !self.relaying {
            return;
        }
        self.relaying = false;
        // Still punching: its result decides; else report why the punch failed, or the relay.
        if self.puncher.is_none() || self.punch_error.is_some() {
            let e = self
                .punch_error
                .take()
                .unwrap_or(ConnectError::RelayAborted);
            self.fail(ctx, e);
        }
    }

    fn established(
        &mut self,
        ctx: &mut Ctx<'_>,
        socket: SocketId,
        addr: SocketAddrV4,
        remote_id: u32,
    ) {
        if self.finished || self.connect.is_none() {
            return;
        }
        self.finished = true;
        self.relaying = false;
        self.phase = Phase::Done;
        if let Some(mut p) = self.puncher.take() {
            p.destroy(ctx.now.as_millis() as u64, ctx.limiter);
            ctx.drain_puncher(owner(self), &mut p);
        }
        self.cancel_requests(ctx);
        if self.upgrading {
            // connect.js `c.onsocket` on a connected raw stream: `changeRemote(socket,
            // payload.udx.id, port, host)` and confirmDirectUpgrade.
            self.upgrading = false;
            ctx.events.push_back(ConnectEvent::Upgrade {
                local_id: self.stream_id,
                socket,
                remote_id,
                remote: addr,
            });
            return;
        }
        self.report(ctx, socket, addr, remote_id);
    }

    /// Hands the connection over ([`ConnectEvent::Connected`]).
    fn report(&mut self, ctx: &mut Ctx<'_>, socket: SocketId, addr: SocketAddrV4, remote_id: u32) {
        let Some(c) = self.connect.clone() else {
            return;
        };
        ctx.events.push_back(ConnectEvent::Connected {
            conn: self.id,
            established: Established {
                is_initiator: true,
                handshake: c.hs,
                remote_public_key: self.remote_public_key,
                socket,
                local_id: self.stream_id,
                remote_id,
                remote: addr,
                relayed: self.relayed_path,
                external_handshake: None,
            },
        });
    }

    fn cancel_requests(&mut self, ctx: &mut Ctx<'_>) {
        for (rid, kind) in std::mem::take(&mut self.pending_reqs) {
            if kind != Req::Abort {
                ctx.requests.remove(&rid);
                ctx.node.cancel_request(rid);
            }
        }
    }

    fn fail(&mut self, ctx: &mut Ctx<'_>, error: ConnectError) {
        if self.finished {
            return;
        }
        if self.upgrading {
            // The relayed connection stays; only the punching ends (connect.js
            // maybeDestroyEncryptedSocket returns: the encrypted socket has its raw stream).
            self.upgrading = false;
            self.finished = true;
            self.phase = Phase::Done;
            self.destroy_puncher(ctx);
            self.cancel_requests(ctx);
            return;
        }
        if self.relaying && error != ConnectError::Destroyed {
            // connect.js maybeDestroyEncryptedSocket: "waiting for the relay".
            self.destroy_puncher(ctx);
            self.cancel_requests(ctx);
            self.phase = Phase::Done;
            self.punch_error = Some(error);
            return;
        }
        self.finished = true;
        self.phase = Phase::Done;
        self.destroy_puncher(ctx);
        self.cancel_requests(ctx);
        if let (Some(relay), None, true) = (
            self.opts.fallback_relay,
            self.opts.relay_through,
            error.is_punch_failure(),
        ) {
            // Beyond JS: try again through the deployment's relay (the Connector restarts us).
            self.retry_with = Some(ConnectOptions {
                relay_through: Some(relay),
                fallback_relay: None,
                ..self.opts.clone()
            });
            return;
        }
        ctx.events.push_back(ConnectEvent::ConnectFailed {
            conn: self.id,
            error,
        });
    }

    pub fn destroy(&mut self, ctx: &mut Ctx<'_>) {
        self.fail(ctx, ConnectError::Destroyed);
    }

    /// The attempt's overall deadline passed: fail now, whatever it waits for (a relay
    /// pairing included; no fallback retry).
    pub fn expire(&mut self, ctx: &mut Ctx<'_>, after: Duration) {
        self.relaying = false;
        self.retry_with = None;
        self.fail(ctx, ConnectError::Timeout(after.as_millis() as u64));
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        let own = match self.phase {
            Phase::ProbeSleep { until, .. }
            | Phase::Passive { until }
            | Phase::LanFirst { until }
            | Phase::TryLater { until } => Some(until),
            _ => None,
        };
        let p = self
            .puncher
            .as_ref()
            .and_then(|p| p.poll_timeout())
            .map(Duration::from_millis);
        own.into_iter().chain(p).min()
    }

    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if let Some(p) = self.puncher.as_mut() {
            p.handle_timeout(now.as_millis() as u64, ctx.limiter);
            self.drain(ctx);
        }
        match self.phase.clone() {
            Phase::ProbeSleep { until, retry } if until <= now => {
                self.phase = Phase::Analyze {
                    retry,
                    reopening: false,
                };
                self.step_analyze(ctx);
            }
            Phase::Passive { until } if until <= now => {
                self.fail(ctx, ConnectError::HolepunchAborted)
            }
            Phase::TryLater { until } if until <= now => self.round_punch(ctx),
            Phase::LanFirst { until } if until <= now => self.probe_round(ctx, true),
            _ => {}
        }
    }
}
