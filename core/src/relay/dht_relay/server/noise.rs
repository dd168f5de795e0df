//! Non-custodial sessions: the client runs its own Noise handshakes (`noiseSend` /
//! `noiseReceive` / `noiseReply`) for the streams it connects and the servers it listens with.

use super::*;

impl Session {
    pub(super) fn on_noise_reply(
        &mut self,
        id: u32,
        payload: Vec<u8>,
        complete: Option<([u8; 32], [u8; 32])>,
        remote_public_key: Option<[u8; 32]>,
    ) {
        // Replies to nothing (or twice) are ignored, as JS does.
        let Some((stream, wait)) = self.handshakes.get_mut(&id) else {
            return;
        };
        let (stream, Some(wait)) = (*stream, wait.take()) else {
            return;
        };
        match wait {
            NoiseWait::ServerReceive(server, handshake) => {
                // Empty: the client's firewall denied the peer (JS 'Handshake denied').
                let received = match (payload.is_empty(), remote_public_key) {
                    (false, Some(rpk)) => NoisePayload::decode(&payload).ok().map(|p| (p, rpk)),
                    _ => None,
                };
                if received.is_none() {
                    self.forget_server_handshake(id);
                }
                self.requests.push_back(Request::ServerNoiseReceived {
                    server,
                    handshake,
                    received,
                });
            }
            NoiseWait::ServerSend(server, handshake) => {
                let sent = match (payload.is_empty(), complete) {
                    (false, Some((_remote_id, holepunch_secret))) => {
                        Some((payload, holepunch_secret))
                    }
                    _ => None,
                };
                if sent.is_none() {
                    self.forget_server_handshake(id);
                }
                self.requests.push_back(Request::ServerNoiseSent {
                    server,
                    handshake,
                    sent,
                });
            }
            NoiseWait::Send => self.requests.push_back(Request::NoiseSent {
                stream,
                message: (!payload.is_empty()).then_some(payload),
            }),
            NoiseWait::Receive => {
                // An empty payload is JS's 'Handshake denied'; a payload that is not a noise
                // payload, or a missing holepunch secret, fails the same way.
                let received = match (payload.is_empty(), complete) {
                    (false, Some((_remote_id, holepunch_secret))) => NoisePayload::decode(&payload)
                        .ok()
                        .map(|payload| ExternalReceived {
                            payload,
                            holepunch_secret,
                        }),
                    _ => None,
                };
                self.requests
                    .push_back(Request::NoiseReceived { stream, received });
            }
        }
    }

    /// A non-custodial connect needs its first Noise message: the client encrypts `payload`
    /// (JS `noiseSend`).
    pub fn noise_send(&mut self, stream: u32, payload: &NoisePayload) {
        let Some(client_alias) = self.streams.get(&stream).and_then(|s| s.client_alias) else {
            return;
        };
        let id = match self.streams.get(&stream).and_then(|s| s.handshake) {
            Some(id) => id,
            None => {
                let id = self.alias();
                self.streams.get_mut(&stream).expect("checked").handshake = Some(id);
                id
            }
        };
        self.handshakes.insert(id, (stream, Some(NoiseWait::Send)));
        self.send(&Message::NoiseSend {
            id,
            remote_stream_alias: Some(client_alias),
            payload: payload.encode(),
        });
    }

    /// A non-custodial connect got the server's reply: the client decrypts `message` (JS
    /// `noiseReceive`).
    pub fn noise_receive(&mut self, stream: u32, message: Vec<u8>) {
        let Some(id) = self.streams.get(&stream).and_then(|s| s.handshake) else {
            return;
        };
        self.handshakes
            .insert(id, (stream, Some(NoiseWait::Receive)));
        self.send(&Message::NoiseReceive {
            id,
            server_alias: None,
            payload: message,
        });
    }

    pub(super) fn forget_server_handshake(&mut self, id: u32) {
        self.handshakes.remove(&id);
        self.server_handshakes.retain(|_, h| *h != id);
    }

    /// A non-custodial server got a client's first handshake message: the client decrypts it
    /// (JS `noiseReceive` with the server's alias). `handshake` is the owner's id of it.
    pub fn server_noise_receive(&mut self, server: u32, handshake: u64, message: Vec<u8>) {
        if !self.servers.get(&server).is_some_and(|s| s.external) {
            return;
        }
        if self.handshakes.len() >= self.limits.max_streams * 2 {
            // The owner hears nothing back and its handshake times out.
            return;
        }
        let id = self.alias();
        self.server_handshakes.insert((server, handshake), id);
        self.handshakes
            .insert(id, (0, Some(NoiseWait::ServerReceive(server, handshake))));
        self.send(&Message::NoiseReceive {
            id,
            server_alias: Some(server),
            payload: message,
        });
    }

    /// A non-custodial server's reply to encrypt (JS `noiseSend` without a stream alias).
    pub fn server_noise_send(&mut self, server: u32, handshake: u64, payload: &NoisePayload) {
        let Some(&id) = self.server_handshakes.get(&(server, handshake)) else {
            return;
        };
        self.handshakes
            .insert(id, (0, Some(NoiseWait::ServerSend(server, handshake))));
        self.send(&Message::NoiseSend {
            id,
            remote_stream_alias: None,
            payload: payload.encode(),
        });
    }

    /// A non-custodial server announces itself to a node: the client signs the record (JS
    /// `signAnnounce` with the server as signee; the client knows the target, the hash of its
    /// public key, and the record has no relay addresses).
    pub fn server_sign_announce(
        &mut self,
        server: u32,
        sign: u64,
        token: [u8; 32],
        peer_id: [u8; 32],
    ) {
        let Some(s) = self.servers.get(&server).filter(|s| s.external) else {
            return;
        };
        let signee = s.client_alias;
        let id = self.alias();
        self.signs.insert(id, SignFor::Server(server, sign));
        self.send(&Message::SignAnnounce(SignRequest {
            id,
            signee,
            token,
            peer_id: peer_id.to_vec(),
            relay_addresses: Vec::new(),
        }));
    }

    /// A non-custodial server got a connection whose handshake the client ran (its owner's id
    /// `handshake`): returns the stream's alias for the owner's later reports, or `None` when
    /// the session has no room for it (drop the connection).
    pub fn server_connection_external(
        &mut self,
        server: u32,
        handshake: u64,
        remote_public_key: [u8; 32],
    ) -> Option<u32> {
        let id = self.server_handshakes.remove(&(server, handshake))?;
        self.handshakes.remove(&id);
        self.open_server_stream(server, remote_public_key, HandshakeRef::Id(id))
    }
}
