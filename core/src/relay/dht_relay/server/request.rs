//! What a session asks its owner to do on the DHT node ([`Request`]).

#[cfg(doc)]
use super::Session;
use crate::dht::messages_connect::NoisePayload;

use crate::crypto::KeyPair;
use crate::dht::connect::ExternalReceived;

/// What the owner must do on its DHT node.
#[derive(Clone)]
pub enum Request {
    /// Connect `key_pair` to `remote_public_key`; report [`Session::stream_open`] or
    /// [`Session::stream_closed`].
    Connect {
        /// The relay's alias of the stream.
        stream: u32,
        /// The client's key pair (custodial).
        key_pair: KeyPair,
        /// The server.
        remote_public_key: [u8; 32],
    },
    /// Connect a non-custodial client to `remote_public_key` with the Noise handshake run by
    /// the client: report its steps with [`Session::noise_send`] / [`Session::noise_receive`],
    /// carry out [`Request::NoiseSent`] / [`Request::NoiseReceived`], then report
    /// [`Session::stream_open`] (no handshake hash) or [`Session::stream_closed`].
    ConnectExternal {
        /// The relay's alias of the stream.
        stream: u32,
        /// The server.
        remote_public_key: [u8; 32],
    },
    /// The client's first handshake message for a [`Request::ConnectExternal`] (`None`: it
    /// refused).
    NoiseSent {
        /// The stream.
        stream: u32,
        /// The Noise message.
        message: Option<Vec<u8>>,
    },
    /// The server's reply as the client decrypted it (`None`: it could not, or refused).
    NoiseReceived {
        /// The stream.
        stream: u32,
        /// The payload and the holepunch secret.
        received: Option<ExternalReceived>,
    },
    /// Create a server for `key_pair` and listen; report [`Session::server_listening`], then
    /// [`Session::server_connection`] per connection.
    Listen {
        /// The relay's alias of the server.
        server: u32,
        /// The client's key pair (custodial).
        key_pair: KeyPair,
    },
    /// Create a server for a non-custodial client's `public_key` and listen, the key pair
    /// staying with the client: report the server's handshake steps with
    /// [`Session::server_noise_receive`] / [`Session::server_noise_send`] and its
    /// announcements to sign with [`Session::server_sign_announce`], carry out
    /// [`Request::ServerNoiseReceived`] / [`Request::ServerNoiseSent`] /
    /// [`Request::ServerSigned`]; report [`Session::server_listening`], then
    /// [`Session::server_connection_external`] per connection.
    ListenExternal {
        /// The relay's alias of the server.
        server: u32,
        /// The client's public key (it keeps the secret key).
        public_key: [u8; 32],
    },
    /// A client's first handshake message to a [`Request::ListenExternal`] server, as the
    /// client decrypted it: its noise payload and public key (`None`: it refused).
    ServerNoiseReceived {
        /// The server.
        server: u32,
        /// The owner's handshake id, as given to [`Session::server_noise_receive`].
        handshake: u64,
        /// The payload and the remote public key.
        received: Option<(NoisePayload, [u8; 32])>,
    },
    /// The server's reply encrypted by the client, and the holepunch secret of the finished
    /// handshake (`None`: it refused).
    ServerNoiseSent {
        /// The server.
        server: u32,
        /// The owner's handshake id.
        handshake: u64,
        /// The Noise message and the holepunch secret.
        sent: Option<(Vec<u8>, [u8; 32])>,
    },
    /// The client's signature of one of its server's announcements (`None`: not a signature).
    ServerSigned {
        /// The server.
        server: u32,
        /// The owner's sign id, as given to [`Session::server_sign_announce`].
        sign: u64,
        /// The Ed25519 signature.
        signature: Option<[u8; 64]>,
    },
    /// Close a server (its connections stay); report [`Session::server_closed`].
    CloseServer {
        /// The server.
        server: u32,
    },
    /// Look up a topic; report [`Session::query_result`]s and [`Session::query_done`].
    Lookup {
        /// The relay's query id (the client's, which is unique per session).
        query: u32,
        /// The topic.
        topic: [u8; 32],
    },
    /// Announce `key_pair` on a topic; results as for `Lookup`.
    Announce {
        /// The query.
        query: u32,
        /// The topic.
        topic: [u8; 32],
        /// The client's key pair (custodial).
        key_pair: KeyPair,
    },
    /// Announce a non-custodial client's `public_key` on a topic with its own signatures:
    /// report each storing node's record to sign with [`Session::sign_announce`], carry out
    /// [`Request::AnnounceSigned`]; results as for `Lookup`.
    AnnounceExternal {
        /// The query.
        query: u32,
        /// The topic.
        topic: [u8; 32],
        /// The client's public key (it keeps the secret key).
        public_key: [u8; 32],
    },
    /// The client's signature of one record of an [`Request::AnnounceExternal`] (`None`: not a
    /// signature).
    AnnounceSigned {
        /// The query.
        query: u32,
        /// The owner's sign id, as given to [`Session::sign_announce`].
        sign: u64,
        /// The Ed25519 signature.
        signature: Option<[u8; 64]>,
    },
    /// Remove an announcement; results as for `Lookup`.
    Unannounce {
        /// The query.
        query: u32,
        /// The topic.
        topic: [u8; 32],
        /// The client's key pair (custodial).
        key_pair: KeyPair,
    },
    /// Remove a non-custodial client's announcement of `public_key` with its own signatures:
    /// report each listing node's record to sign with [`Session::sign_unannounce`], carry out
    /// [`Request::AnnounceSigned`]; results as for `Lookup`.
    UnannounceExternal {
        /// The query.
        query: u32,
        /// The topic.
        topic: [u8; 32],
        /// The client's public key.
        public_key: [u8; 32],
    },
    /// Write one message to a stream.
    Write {
        /// The stream.
        stream: u32,
        /// The message.
        data: Vec<u8>,
    },
    /// End our side of a stream.
    End {
        /// The stream.
        stream: u32,
    },
    /// Destroy a stream (the client destroyed it).
    Destroy {
        /// The stream.
        stream: u32,
    },
}

/// A request's fields, its key pair by public key (for equality).
type RequestKey<'a> = (u8, u32, Option<[u8; 32]>, Option<[u8; 32]>, &'a [u8]);

impl Request {
    /// The request without its key pair (compared by public key), for equality.
    fn key(&self) -> RequestKey<'_> {
        match self {
            Request::Connect {
                stream,
                key_pair,
                remote_public_key,
            } => (
                0,
                *stream,
                Some(key_pair.public_key),
                Some(*remote_public_key),
                &[],
            ),
            Request::Listen { server, key_pair } => {
                (1, *server, Some(key_pair.public_key), None, &[])
            }
            Request::ConnectExternal {
                stream,
                remote_public_key,
            } => (9, *stream, None, Some(*remote_public_key), &[]),
            Request::AnnounceExternal {
                query,
                topic,
                public_key,
            } => (12, *query, Some(*public_key), Some(*topic), &[]),
            Request::AnnounceSigned {
                query,
                sign,
                signature,
            } => (
                13,
                *query,
                None,
                Some({
                    let mut k = [0u8; 32];
                    k[..8].copy_from_slice(&sign.to_le_bytes());
                    k
                }),
                signature.as_ref().map(|s| &s[..]).unwrap_or(&[]),
            ),
            Request::NoiseSent { stream, message } => {
                (10, *stream, None, None, message.as_deref().unwrap_or(&[]))
            }
            Request::NoiseReceived { stream, received } => (
                11,
                *stream,
                None,
                received.as_ref().map(|r| r.holepunch_secret),
                &[],
            ),
            Request::CloseServer { server } => (2, *server, None, None, &[]),
            Request::ListenExternal { server, public_key } => {
                (14, *server, Some(*public_key), None, &[])
            }
            Request::ServerNoiseReceived {
                server,
                handshake,
                received,
            } => (
                15,
                *server,
                received.as_ref().map(|r| r.1),
                Some(u64_key(*handshake)),
                &[],
            ),
            Request::ServerNoiseSent {
                server,
                handshake,
                sent,
            } => (
                16,
                *server,
                sent.as_ref().map(|r| r.1),
                Some(u64_key(*handshake)),
                sent.as_ref().map(|r| &r.0[..]).unwrap_or(&[]),
            ),
            Request::ServerSigned {
                server,
                sign,
                signature,
            } => (
                17,
                *server,
                None,
                Some(u64_key(*sign)),
                signature.as_ref().map(|s| &s[..]).unwrap_or(&[]),
            ),
            Request::Lookup { query, topic } => (3, *query, None, Some(*topic), &[]),
            Request::Announce {
                query,
                topic,
                key_pair,
            } => (4, *query, Some(key_pair.public_key), Some(*topic), &[]),
            Request::Unannounce {
                query,
                topic,
                key_pair,
            } => (5, *query, Some(key_pair.public_key), Some(*topic), &[]),
            Request::UnannounceExternal {
                query,
                topic,
                public_key,
            } => (18, *query, Some(*public_key), Some(*topic), &[]),
            Request::Write { stream, data } => (6, *stream, None, None, data),
            Request::End { stream } => (7, *stream, None, None, &[]),
            Request::Destroy { stream } => (8, *stream, None, None, &[]),
        }
    }
}

fn u64_key(n: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&n.to_le_bytes());
    k
}

impl PartialEq for Request {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl core::fmt::Debug for Request {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Request::Connect { stream, .. } => write!(f, "Connect({stream})"),
            Request::Listen { server, .. } => write!(f, "Listen({server})"),
            Request::ConnectExternal { stream, .. } => write!(f, "ConnectExternal({stream})"),
            Request::AnnounceExternal { query, .. } => write!(f, "AnnounceExternal({query})"),
            Request::AnnounceSigned { query, sign, .. } => {
                write!(f, "AnnounceSigned({query}, {sign})")
            }
            Request::NoiseSent { stream, message } => {
                write!(
                    f,
                    "NoiseSent({stream}, {:?})",
                    message.as_ref().map(Vec::len)
                )
            }
            Request::NoiseReceived { stream, received } => {
                write!(f, "NoiseReceived({stream}, {})", received.is_some())
            }
            Request::CloseServer { server } => write!(f, "CloseServer({server})"),
            Request::ListenExternal { server, .. } => write!(f, "ListenExternal({server})"),
            Request::ServerNoiseReceived {
                server,
                handshake,
                received,
            } => write!(
                f,
                "ServerNoiseReceived({server}, {handshake}, {})",
                received.is_some()
            ),
            Request::ServerNoiseSent {
                server,
                handshake,
                sent,
            } => write!(
                f,
                "ServerNoiseSent({server}, {handshake}, {})",
                sent.is_some()
            ),
            Request::ServerSigned {
                server,
                sign,
                signature,
            } => write!(f, "ServerSigned({server}, {sign}, {})", signature.is_some()),
            Request::Lookup { query, .. } => write!(f, "Lookup({query})"),
            Request::Announce { query, .. } => write!(f, "Announce({query})"),
            Request::Unannounce { query, .. } => write!(f, "Unannounce({query})"),
            Request::UnannounceExternal { query, .. } => {
                write!(f, "UnannounceExternal({query})")
            }
            Request::Write { stream, data } => write!(f, "Write({stream}, {} bytes)", data.len()),
            Request::End { stream } => write!(f, "End({stream})"),
            Request::Destroy { stream } => write!(f, "Destroy({stream})"),
        }
    }
}
