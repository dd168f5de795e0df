//! The peer side of blind-relay (JS `BlindRelayClient`).

use std::collections::HashMap;

use super::messages::{Pair, Unpair};
use super::{MSG_PAIR, MSG_UNPAIR, PROTOCOL};
use crate::protomux::{ChannelError, ChannelId, ChannelOptions, Event, Protomux};

/// Why a client call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// A pairing with this token is already running (JS `ALREADY_PAIRING`).
    #[error("ALREADY_PAIRING: Already pairing")]
    AlreadyPairing,
    /// The channel is closed or destroyed (JS `CHANNEL_DESTROYED`).
    #[error("CHANNEL_DESTROYED: Channel destroyed")]
    ChannelDestroyed,
    /// The mux refused.
    #[error("protomux: {0}")]
    Channel(#[from] ChannelError),
}

/// What the relay told the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The channel opened on both sides.
    Opened,
    /// The relay paired `token`: connect the raw stream to the relay with `remote_id`.
    Paired {
        /// The token.
        token: [u8; 32],
        /// Our side of the pairing.
        is_initiator: bool,
        /// The relay's UDX stream id for us.
        remote_id: u64,
    },
    /// The channel closed; every pending pairing failed (`CHANNEL_CLOSED`).
    Closed {
        /// Tokens whose pairing was still pending.
        failed: Vec<[u8; 32]>,
    },
}

/// A peer's blind-relay channel on a connection to the relay.
#[derive(Debug)]
pub struct Client {
    channel: ChannelId,
    requests: HashMap<[u8; 32], bool>,
    closed: bool,
}

impl Client {
    /// Opens the `blind-relay` channel with id = `own_public_key` (the key of our connection to
    /// the relay, JS `id: relaySocket.publicKey`).
    pub fn open(mux: &mut Protomux, own_public_key: &[u8; 32]) -> Result<Self, ClientError> {
        let channel = mux.open(
            ChannelOptions::new(PROTOCOL)
                .id(own_public_key.to_vec())
                .message_types(2),
        )?;
        Ok(Client {
            channel,
            requests: HashMap::new(),
            closed: false,
        })
    }

    /// The channel handle.
    pub fn channel(&self) -> ChannelId {
        self.channel
    }

    /// `pair(isInitiator, token, stream)`: ask the relay to pair our UDX stream `stream_id`.
    pub fn pair(
        &mut self,
        mux: &mut Protomux,
        is_initiator: bool,
        token: [u8; 32],
        stream_id: u32,
    ) -> Result<(), ClientError> {
        if self.closed {
            return Err(ClientError::ChannelDestroyed);
        }
        if self.requests.contains_key(&token) {
            return Err(ClientError::AlreadyPairing);
        }
        self.requests.insert(token, is_initiator);
        let msg = Pair {
            is_initiator,
            token,
            id: u64::from(stream_id),
            seq: 0,
        };
        mux.send(self.channel, MSG_PAIR, &msg.encode())?;
        Ok(())
    }

    /// `unpair(token)`: cancel.
    pub fn unpair(&mut self, mux: &mut Protomux, token: [u8; 32]) -> Result<(), ClientError> {
        if self.closed {
            return Err(ClientError::ChannelDestroyed);
        }
        self.requests.remove(&token);
        mux.send(self.channel, MSG_UNPAIR, &Unpair { token }.encode())?;
        Ok(())
    }

    /// Pairings still waiting for the relay.
    pub fn pending(&self) -> usize {
        self.requests.len()
    }

    /// Feeds one mux event; returns what it means for this client (None for other channels'
    /// events and for messages it ignores: malformed, unknown token, wrong side).
    pub fn handle_event(&mut self, event: &Event) -> Option<ClientEvent> {
        match event {
            Event::ChannelOpened { channel, .. } if *channel == self.channel => {
                Some(ClientEvent::Opened)
            }
            Event::ChannelClosed { channel, .. } | Event::ChannelRejected { channel }
                if *channel == self.channel =>
            {
                self.closed = true;
                let failed = self.requests.drain().map(|(t, _)| t).collect();
                Some(ClientEvent::Closed { failed })
            }
            Event::Message {
                channel,
                message_type: MSG_PAIR,
                payload,
            } if *channel == self.channel => {
                let pair = Pair::decode(payload).ok()?;
                let is_initiator = *self.requests.get(&pair.token)?;
                if is_initiator != pair.is_initiator {
                    return None;
                }
                self.requests.remove(&pair.token);
                Some(ClientEvent::Paired {
                    token: pair.token,
                    is_initiator,
                    remote_id: pair.id,
                })
            }
            _ => None,
        }
    }
}
