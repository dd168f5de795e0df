//! Streams and servers: what the owner reports about the connections and servers a session
//! asked for, and how the session tells the client.

use super::*;

impl Session {
    pub(super) fn destroy_stream(&mut self, stream: u32, error: Option<&str>) {
        let Some(s) = self.streams.remove(&stream) else {
            return;
        };
        if let Some(h) = s.handshake {
            self.handshakes.remove(&h);
        }
        if let Some(a) = s.client_alias {
            self.client_streams.remove(&a);
        }
        let destroy = if s.paired {
            Destroy {
                paired: true,
                alias: stream,
                error: error.map(str::to_owned),
            }
        } else {
            match s.client_alias {
                Some(a) => Destroy {
                    paired: false,
                    alias: a,
                    error: error.map(str::to_owned),
                },
                None => return,
            }
        };
        self.send(&Message::Destroy(destroy));
    }

    /// A `connect` succeeded; `handshake_hash` is the Noise handshake hash (`None` for a
    /// non-custodial stream: the client has it, the relay does not).
    pub fn stream_open(&mut self, stream: u32, handshake_hash: Option<[u8; 64]>) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(remote_alias) = s.client_alias else {
            s.paired = true;
            return;
        };
        let handshake = match (s.handshake, handshake_hash) {
            (Some(id), _) => HandshakeRef::Id(id),
            (None, Some(hash)) => HandshakeRef::Hash(hash),
            (None, None) => return self.destroy_stream(stream, Some("no handshake")),
        };
        s.paired = true;
        if let HandshakeRef::Id(id) = handshake {
            self.handshakes.remove(&id);
        }
        self.send(&Message::Open {
            alias: stream,
            remote_alias,
            handshake,
        });
    }

    /// A server got a connection: returns the stream's alias for the owner's later reports, or
    /// `None` when the session has no room for it (drop the connection).
    pub fn server_connection(
        &mut self,
        server: u32,
        remote_public_key: [u8; 32],
        handshake_hash: [u8; 64],
    ) -> Option<u32> {
        self.open_server_stream(
            server,
            remote_public_key,
            HandshakeRef::Hash(handshake_hash),
        )
    }

    /// A stream for a server's new connection, announced to the client (`None`: the server is
    /// gone, the session is closing or has no room).
    pub(super) fn open_server_stream(
        &mut self,
        server: u32,
        remote_public_key: [u8; 32],
        handshake: HandshakeRef,
    ) -> Option<u32> {
        if !self.servers.contains_key(&server) || self.close.is_some() {
            return None;
        }
        if self.streams.len() >= self.limits.max_streams {
            return None;
        }
        let stream = self.alias();
        self.streams.insert(
            stream,
            Stream {
                client_alias: None,
                paired: true,
                buffered: 0,
                handshake: None,
            },
        );
        self.send(&Message::Connection {
            alias: stream,
            server_alias: server,
            remote_public_key,
            handshake,
        });
        Some(stream)
    }

    /// One message from a stream's peer.
    pub fn stream_data(&mut self, stream: u32, data: Vec<u8>) {
        self.stream_data_many(stream, vec![data]);
    }

    /// Messages from a stream's peer, in order, sent to the client in one `data` message (a
    /// relay that has several at hand spares the client a frame per message, as JS dht-relay's
    /// streams do with the chunks of one `_writev`). Nothing is sent for none.
    pub fn stream_data_many(&mut self, stream: u32, data: Vec<Vec<u8>>) {
        if !data.is_empty() && self.streams.contains_key(&stream) {
            self.send(&Message::Data {
                alias: stream,
                data,
            });
        }
    }

    /// The stream's peer ended its side.
    pub fn stream_end(&mut self, stream: u32) {
        if self.streams.contains_key(&stream) {
            self.send(&Message::End { alias: stream });
        }
    }

    /// The owner wrote `bytes` of what the client sent to the stream (they left the relay).
    pub fn stream_written(&mut self, stream: u32, bytes: usize) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.buffered = s.buffered.saturating_sub(bytes);
        }
    }

    /// The stream is gone (failed to connect, or closed); `error` says why it failed.
    pub fn stream_closed(&mut self, stream: u32, error: Option<&str>) {
        self.destroy_stream(stream, error);
    }

    /// A server announced itself; `addr` is the DHT node's address.
    pub fn server_listening(&mut self, server: u32, addr: SocketAddrV4) {
        if let Some(s) = self.servers.get(&server) {
            let remote_alias = s.client_alias;
            self.send(&Message::Listening {
                alias: server,
                remote_alias,
                addr,
            });
        }
    }

    /// A server closed.
    pub fn server_closed(&mut self, server: u32) {
        self.signs
            .retain(|_, f| !matches!(f, SignFor::Server(s, _) if *s == server));
        let gone: Vec<u32> = self
            .server_handshakes
            .iter()
            .filter(|((s, _), _)| *s == server)
            .map(|(_, id)| *id)
            .collect();
        for id in gone {
            self.forget_server_handshake(id);
        }
        if let Some(s) = self.servers.remove(&server) {
            self.client_servers.remove(&s.client_alias);
            self.send(&Message::Closed { alias: server });
        }
    }
}
