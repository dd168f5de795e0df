//! The relay side of blind-relay (JS `BlindRelayServer`, `BlindRelaySession`): a pairing table
//! shared by all sessions, one [`ServerSession`] per peer connection.

use std::collections::{HashMap, HashSet};

use super::messages::{Pair, Unpair};
use super::{MSG_PAIR, MSG_UNPAIR, PROTOCOL};
use crate::protomux::{ChannelError, ChannelId, ChannelOptions, Event, Protomux};

/// One peer connection to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// One side of a pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkEnd {
    /// The session it came in on.
    pub session: SessionId,
    /// Its side.
    pub is_initiator: bool,
    /// The peer's own UDX stream id: the relay stream for this side connects to it.
    pub remote_id: u64,
}

/// Both sides of a token arrived: the owner creates one UDX stream per side (each with a
/// firewall hook that connects it, on its first packet, to the packet's socket and address with
/// the side's `remote_id`), relays them to each other, then calls [`Server::activate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// The token.
    pub token: [u8; 32],
    /// `[responder side, initiator side]` (JS `links[+isInitiator]`).
    pub links: [LinkEnd; 2],
}

/// What a session event means for the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The channel opened.
    Opened,
    /// A pairing matched (see [`Match`]).
    Matched(Match),
    /// Relay streams to destroy (an `unpair` of a live link, or the session closed).
    Destroy {
        /// The local relay stream ids.
        streams: Vec<u32>,
    },
}

#[derive(Debug, Default)]
struct SessionState {
    pairing: HashSet<[u8; 32]>,
    links: HashSet<[u8; 32]>,
}

/// Counters (JS `stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pair requests accepted.
    pub requested: u64,
    /// Pairings matched.
    pub matched: u64,
    /// Pairings cancelled.
    pub cancelled: u64,
}

/// The pairing table of one relay.
#[derive(Debug, Default)]
pub struct Server {
    pairing: HashMap<[u8; 32], [Option<LinkEnd>; 2]>,
    links: HashMap<[u8; 32], Vec<(SessionId, u32)>>,
    sessions: HashMap<SessionId, SessionState>,
    next_session: u64,
    /// Counters.
    pub stats: Stats,
}

impl Server {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pairings waiting for their other side.
    pub fn pending(&self) -> usize {
        self.pairing.len()
    }

    /// Links with relay streams.
    pub fn active(&self) -> usize {
        self.links.len()
    }

    /// `_onpair`.
    pub fn handle_pair(&mut self, session: SessionId, pair: Pair) -> Option<Match> {
        let state = self.sessions.get_mut(&session)?;
        let side = usize::from(pair.is_initiator);
        let entry = self.pairing.entry(pair.token).or_insert([None, None]);
        if entry[side].is_some() {
            return None;
        }
        state.pairing.insert(pair.token);
        self.stats.requested += 1;
        entry[side] = Some(LinkEnd {
            session,
            is_initiator: pair.is_initiator,
            remote_id: pair.id,
        });
        let [Some(a), Some(b)] = *entry else {
            return None;
        };
        self.pairing.remove(&pair.token);
        self.stats.matched += 1;
        for end in [a, b] {
            if let Some(s) = self.sessions.get_mut(&end.session) {
                s.pairing.remove(&pair.token);
                s.links.insert(pair.token);
            }
        }
        Some(Match {
            token: pair.token,
            links: [a, b],
        })
    }

    /// The owner created relay stream `streams[i]` for `m.links[i]`: the `pair` replies to send,
    /// per session (see [`ServerSession::send_pair`]).
    pub fn activate(&mut self, m: &Match, streams: [u32; 2]) -> [(SessionId, Pair); 2] {
        self.links.insert(
            m.token,
            vec![
                (m.links[0].session, streams[0]),
                (m.links[1].session, streams[1]),
            ],
        );
        [0, 1].map(|i| {
            let l = m.links[i];
            (
                l.session,
                Pair {
                    is_initiator: l.is_initiator,
                    token: m.token,
                    id: u64::from(streams[i]),
                    seq: 0,
                },
            )
        })
    }

    /// `_onunpair`: cancels a pending pairing, or returns the relay streams of a live link to
    /// destroy (only when `session` is part of it).
    pub fn handle_unpair(&mut self, session: SessionId, token: [u8; 32]) -> Vec<u32> {
        if let Some(ends) = self.pairing.remove(&token) {
            for e in ends.into_iter().flatten() {
                if let Some(s) = self.sessions.get_mut(&e.session) {
                    s.pairing.remove(&token);
                }
            }
            self.stats.cancelled += 1;
            return Vec::new();
        }
        let part_of = self
            .sessions
            .get(&session)
            .is_some_and(|s| s.links.contains(&token));
        if !part_of {
            return Vec::new();
        }
        self.stats.cancelled += 1;
        self.unlink(&token)
    }

    fn unlink(&mut self, token: &[u8; 32]) -> Vec<u32> {
        let ends = self.links.remove(token).unwrap_or_default();
        for (s, _) in &ends {
            if let Some(st) = self.sessions.get_mut(s) {
                st.links.remove(token);
            }
        }
        ends.into_iter().map(|(_, id)| id).collect()
    }

    /// A relay stream closed by itself: forget its link; returns the other stream of the link.
    pub fn stream_closed(&mut self, stream: u32) -> Vec<u32> {
        let token = self
            .links
            .iter()
            .find(|(_, v)| v.iter().any(|(_, id)| *id == stream))
            .map(|(t, _)| *t);
        match token {
            Some(t) => self
                .unlink(&t)
                .into_iter()
                .filter(|id| *id != stream)
                .collect(),
            None => Vec::new(),
        }
    }

    fn new_session(&mut self) -> SessionId {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        self.sessions.insert(id, SessionState::default());
        id
    }

    /// `_onclose` of a session: its pending pairings are dropped and the relay streams it owns
    /// are returned for destruction (JS destroys this session's side of each link).
    pub fn session_closed(&mut self, session: SessionId) -> Vec<u32> {
        let Some(state) = self.sessions.remove(&session) else {
            return Vec::new();
        };
        for t in &state.pairing {
            if let Some(ends) = self.pairing.get_mut(t) {
                for e in ends.iter_mut() {
                    if e.is_some_and(|e| e.session == session) {
                        *e = None;
                    }
                }
                if ends.iter().all(Option::is_none) {
                    self.pairing.remove(t);
                }
                self.stats.cancelled += 1;
            }
        }
        let mut out = Vec::new();
        for t in &state.links {
            if let Some(v) = self.links.get_mut(t) {
                v.retain(|(s, id)| {
                    if *s == session {
                        out.push(*id);
                        false
                    } else {
                        true
                    }
                });
                if v.is_empty() {
                    self.links.remove(t);
                }
            }
        }
        out
    }
}

/// The relay's channel with one peer (JS `BlindRelaySession`).
#[derive(Debug)]
pub struct ServerSession {
    id: SessionId,
    channel: ChannelId,
}

impl ServerSession {
    /// Accepts a peer connection: opens `blind-relay` with id = the peer's public key (JS
    /// `accept(socket, {id: socket.remotePublicKey})`).
    pub fn accept(
        server: &mut Server,
        mux: &mut Protomux,
        remote_public_key: &[u8; 32],
    ) -> Result<Self, ChannelError> {
        let channel = mux.open(
            ChannelOptions::new(PROTOCOL)
                .id(remote_public_key.to_vec())
                .message_types(2),
        )?;
        Ok(ServerSession {
            id: server.new_session(),
            channel,
        })
    }

    /// This session's id in the table.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The channel handle.
    pub fn channel(&self) -> ChannelId {
        self.channel
    }

    /// Sends a `pair` reply from [`Server::activate`].
    pub fn send_pair(&self, mux: &mut Protomux, pair: &Pair) -> Result<(), ChannelError> {
        mux.send(self.channel, MSG_PAIR, &pair.encode())
    }

    /// Feeds one mux event. Malformed messages are ignored (JS would destroy the mux on a decode
    /// error; the owner may treat `Err` from the mux itself as fatal).
    pub fn handle_event(&self, server: &mut Server, event: &Event) -> Option<ServerEvent> {
        match event {
            Event::ChannelOpened { channel, .. } if *channel == self.channel => {
                Some(ServerEvent::Opened)
            }
            Event::ChannelClosed { channel, .. } | Event::ChannelRejected { channel }
                if *channel == self.channel =>
            {
                Some(ServerEvent::Destroy {
                    streams: server.session_closed(self.id),
                })
            }
            Event::Message {
                channel,
                message_type,
                payload,
            } if *channel == self.channel => match *message_type {
                MSG_PAIR => server
                    .handle_pair(self.id, Pair::decode(payload).ok()?)
                    .map(ServerEvent::Matched),
                MSG_UNPAIR => {
                    let u = Unpair::decode(payload).ok()?;
                    let streams = server.handle_unpair(self.id, u.token);
                    (!streams.is_empty()).then_some(ServerEvent::Destroy { streams })
                }
                _ => None,
            },
            _ => None,
        }
    }
}
