//! hypershell 0.0.15: shells, commands and file copies on a server reached by its public key,
//! over one hyperdht connection carrying protomux. What is protocol lives here, sans-IO: the
//! messages ([`messages`]), the channels both sides open and what each message means
//! ([`ShellServer`], [`ShellClient`] over a [`Protomux`]), who may connect ([`AllowList`],
//! the `authorized_peers` file), the key file ([`parse_key_file`]), and the tar stream copies
//! carry ([`tar`]).
//!
//! The wire (hypershell `lib/shell.js`, `lib/upload.js`, `lib/download.js`):
//!
//! - `hypershell`: the client opens with [`Spawn`] (command, args, terminal size); the server
//!   answers the open, spawns the command (its shell when empty) in a PTY, and sends message 1
//!   (stdout, `buffer`) with what the PTY prints, message 3 (`uint`) with the exit code when
//!   it exits, then closes the channel; message 2 (stderr) only carries a spawn failure. The
//!   client sends message 0 (stdin, `buffer`) and message 4 ([`Resize`]).
//! - `hypershell-upload`: the client opens with [`Upload`] (target path, whether a folder) and
//!   sends message 2 (`raw`) chunks of a tar stream (tar-fs `pack` of the source), an empty one
//!   at its end; the server extracts (a file is renamed to the target's base name) and closes
//!   the channel when done, or sends message 1 ([`RemoteError`]) and closes.
//! - `hypershell-download`: the client opens with [`Download`] (source path); the server sends
//!   message 0 ([`DownloadHeader`]), then message 2 tar chunks and an empty one at the end (or
//!   message 1 and a close); the client closes once extracted.
//! - `hypershell-tunnel-local` (`lib/local-tunnel.js`, `-L`): a JSON target handshake and a
//!   JSON message of UDX stream ids per forwarded TCP connection, each connection then a UDX
//!   stream of its own with a fresh secret-stream; see [`tunnel`].
//!
//! The side that answers an open sends the codec's encoding of `{}` as its handshake
//! ([`messages::js_empty_spawn`] and friends); nobody reads it.

pub mod messages;
pub mod tar;
pub mod tunnel;

use std::collections::BTreeMap;

use thiserror::Error;

use crate::encoding::{write_buffer, write_uint, Decode, DecodeError, Decoder, Encode};
use crate::protomux::{ChannelError, ChannelId, ChannelOptions, Event, Protomux};

pub use messages::{Download, DownloadHeader, RemoteError, Resize, Spawn, Upload};
pub use tunnel::{LocalForward, PortRange, StreamIds, TunnelPolicy, TunnelTarget};

/// The shell channel's protocol name.
pub const SHELL: &str = "hypershell";
/// The upload channel's protocol name.
pub const UPLOAD: &str = "hypershell-upload";
/// The download channel's protocol name.
pub const DOWNLOAD: &str = "hypershell-download";
/// Local port forwarding (`-L`, [`tunnel`]).
pub const TUNNEL: &str = "hypershell-tunnel-local";

/// Message types of the shell channel.
pub mod shell_msg {
    /// Client to server: bytes for the PTY.
    pub const STDIN: u64 = 0;
    /// Server to client: what the PTY printed.
    pub const STDOUT: u64 = 1;
    /// Server to client: a spawn failure's message.
    pub const STDERR: u64 = 2;
    /// Server to client: the exit code.
    pub const EXIT_CODE: u64 = 3;
    /// Client to server: a terminal size change.
    pub const RESIZE: u64 = 4;
}

/// Message types of the upload and download channels.
pub mod copy_msg {
    /// Download only, server to client: [`super::DownloadHeader`].
    pub const HEADER: u64 = 0;
    /// The side that fails: [`super::RemoteError`].
    pub const ERROR: u64 = 1;
    /// Tar stream chunks; an empty one ends it.
    pub const DATA: u64 = 2;
}

/// A peer broke the protocol (the owner should destroy the connection, as JS does when a
/// message does not decode).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShellError {
    /// A handshake or message does not decode.
    #[error("malformed hypershell message: {0}")]
    Decode(#[from] DecodeError),
    /// A protomux operation failed.
    #[error("protomux: {0}")]
    Channel(#[from] ChannelError),
    /// A tunnel handshake or message (`c.json`) is not the JSON it must be.
    #[error("malformed hypershell-tunnel-local JSON")]
    Json,
}

/// What a channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A shell or command.
    Shell,
    /// A copy to the server.
    Upload,
    /// A copy from the server.
    Download,
    /// Local port forwarding.
    Tunnel,
}

impl Kind {
    /// The protocol name.
    pub fn protocol(self) -> &'static str {
        match self {
            Kind::Shell => SHELL,
            Kind::Upload => UPLOAD,
            Kind::Download => DOWNLOAD,
            Kind::Tunnel => TUNNEL,
        }
    }
}

fn buffer_msg(data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 9);
    write_buffer(&mut v, data);
    v
}

fn decode_buffer(payload: &[u8]) -> Result<Vec<u8>, DecodeError> {
    // JS `c.buffer`: trailing bytes are ignored.
    Ok(Decoder::new(payload).buffer()?.to_vec())
}

/// What a server must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// Spawn `spawn` in a PTY for this channel.
    Spawn {
        /// The channel.
        channel: ChannelId,
        /// What to run.
        spawn: Spawn,
    },
    /// Bytes for the channel's PTY.
    Stdin {
        /// The channel.
        channel: ChannelId,
        /// The bytes (may be empty).
        data: Vec<u8>,
    },
    /// Resize the channel's PTY.
    Resize {
        /// The channel.
        channel: ChannelId,
        /// The size.
        size: Resize,
    },
    /// A tar stream to extract follows.
    Upload {
        /// The channel.
        channel: ChannelId,
        /// Where.
        upload: Upload,
    },
    /// A chunk of an upload's tar stream; empty at its end.
    UploadData {
        /// The channel.
        channel: ChannelId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Send this path.
    Download {
        /// The channel.
        channel: ChannelId,
        /// What.
        download: Download,
    },
    /// A tunnel opened to an allowed target: its connections go there.
    TunnelOpened {
        /// The channel.
        channel: ChannelId,
        /// Where.
        target: TunnelTarget,
    },
    /// A tunnel's target is not allowed (the policy, or no usable target in the handshake):
    /// the channel was closed, as JS does. For the log.
    TunnelRefused {
        /// The channel.
        channel: ChannelId,
        /// The target, when the handshake named one.
        target: Option<TunnelTarget>,
    },
    /// The client forwards a new TCP connection on an open tunnel: make a UDX stream, answer
    /// with [`ShellServer::tunnel_stream`], connect the stream to `client_id` on the
    /// connection's socket and address, connect TCP to `target`, and run secret-stream as
    /// initiator between them.
    TunnelConnect {
        /// The channel.
        channel: ChannelId,
        /// The client's UDX stream id.
        client_id: u32,
        /// Where to connect.
        target: TunnelTarget,
    },
    /// The channel closed (by either side): kill its process, drop its transfer, destroy
    /// its tunnel streams.
    Closed {
        /// The channel.
        channel: ChannelId,
        /// What it carried.
        kind: Kind,
    },
}

/// The server half: answers the client's opens of the protocols it serves.
#[derive(Debug)]
pub struct ShellServer {
    serve: Vec<Kind>,
    channels: BTreeMap<ChannelId, Kind>,
    policy: TunnelPolicy,
    /// Open tunnels' targets (allowed ones only).
    targets: BTreeMap<ChannelId, TunnelTarget>,
}

impl ShellServer {
    /// Registers the pairings of `serve` on `mux` (JS `--protocol`; every other open is
    /// rejected).
    pub fn new(mux: &mut Protomux, serve: &[Kind]) -> Self {
        for k in serve {
            mux.pair(k.protocol(), None);
        }
        ShellServer {
            serve: serve.to_vec(),
            channels: BTreeMap::new(),
            policy: TunnelPolicy::default(),
            targets: BTreeMap::new(),
        }
    }

    /// Restricts tunnel targets (JS `--tunnel-host`, `--tunnel-port`; default: any target).
    pub fn with_tunnel_policy(mut self, policy: TunnelPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// What a channel carries, while open.
    pub fn kind(&self, channel: ChannelId) -> Option<Kind> {
        self.channels.get(&channel).copied()
    }

    /// Feeds one protomux event. Events of channels this server does not own give `Ok(None)`.
    pub fn handle_event(
        &mut self,
        mux: &mut Protomux,
        event: Event,
    ) -> Result<Option<ServerEvent>, ShellError> {
        match event {
            Event::PairRequest { protocol, id, .. } => {
                let kind = self
                    .serve
                    .iter()
                    .copied()
                    .find(|k| k.protocol() == protocol && id.is_none());
                match kind {
                    Some(kind) => {
                        let (types, hs) = match kind {
                            Kind::Shell => (5, messages::js_empty_spawn()),
                            Kind::Upload => (3, messages::js_empty_upload()),
                            Kind::Download => (3, messages::js_empty_download()),
                            Kind::Tunnel => (1, tunnel::empty_handshake()),
                        };
                        let ch = mux.open(
                            ChannelOptions::new(kind.protocol())
                                .handshake(hs)
                                .message_types(types),
                        )?;
                        self.channels.insert(ch, kind);
                    }
                    None => mux.reject(&protocol, id.as_deref())?,
                }
                Ok(None)
            }
            Event::ChannelOpened { channel, handshake } => {
                let Some(kind) = self.kind(channel) else {
                    return Ok(None);
                };
                Ok(Some(match kind {
                    Kind::Shell => ServerEvent::Spawn {
                        channel,
                        spawn: Spawn::from_bytes(&handshake)?,
                    },
                    Kind::Upload => ServerEvent::Upload {
                        channel,
                        upload: Upload::from_bytes(&handshake)?,
                    },
                    Kind::Download => ServerEvent::Download {
                        channel,
                        download: Download::from_bytes(&handshake)?,
                    },
                    Kind::Tunnel => match TunnelTarget::from_handshake(&handshake)? {
                        Some(target) if self.policy.allows(&target) => {
                            self.targets.insert(channel, target.clone());
                            ServerEvent::TunnelOpened { channel, target }
                        }
                        target => {
                            // JS `onopen`: not allowed, `channel.close()`.
                            mux.close(channel)?;
                            ServerEvent::TunnelRefused { channel, target }
                        }
                    },
                }))
            }
            Event::Message {
                channel,
                message_type,
                payload,
            } => {
                let Some(kind) = self.kind(channel) else {
                    return Ok(None);
                };
                Ok(match (kind, message_type) {
                    (Kind::Shell, shell_msg::STDIN) => Some(ServerEvent::Stdin {
                        channel,
                        data: decode_buffer(&payload)?,
                    }),
                    (Kind::Shell, shell_msg::RESIZE) => Some(ServerEvent::Resize {
                        channel,
                        size: Resize::from_bytes(&payload)?,
                    }),
                    (Kind::Upload, copy_msg::DATA) => Some(ServerEvent::UploadData {
                        channel,
                        data: payload,
                    }),
                    (Kind::Tunnel, tunnel::STREAM_IDS) => {
                        let ids = StreamIds::from_bytes(&payload)?;
                        // Only on a tunnel that was allowed (a refused one is closed).
                        self.targets
                            .get(&channel)
                            .map(|target| ServerEvent::TunnelConnect {
                                channel,
                                client_id: ids.client_id,
                                target: target.clone(),
                            })
                    }
                    // Messages JS has no handler for are ignored.
                    _ => None,
                })
            }
            Event::ChannelClosed { channel, .. } | Event::ChannelRejected { channel } => {
                self.targets.remove(&channel);
                Ok(self
                    .channels
                    .remove(&channel)
                    .map(|kind| ServerEvent::Closed { channel, kind }))
            }
        }
    }

    /// Answers a [`ServerEvent::TunnelConnect`] with our stream's id.
    pub fn tunnel_stream(
        &mut self,
        mux: &mut Protomux,
        channel: ChannelId,
        client_id: u32,
        server_id: u32,
    ) -> Result<(), ShellError> {
        let ids = StreamIds {
            client_id,
            server_id,
        };
        Ok(mux.send(channel, tunnel::STREAM_IDS, &ids.to_bytes())?)
    }

    /// PTY output.
    pub fn stdout(
        &mut self,
        mux: &mut Protomux,
        channel: ChannelId,
        data: &[u8],
    ) -> Result<(), ShellError> {
        Ok(mux.send(channel, shell_msg::STDOUT, &buffer_msg(data))?)
    }

    /// A spawn failure's text.
    pub fn stderr(
        &mut self,
        mux: &mut Protomux,
        channel: ChannelId,
        data: &[u8],
    ) -> Result<(), ShellError> {
        Ok(mux.send(channel, shell_msg::STDERR, &buffer_msg(data))?)
    }

    /// The exit code.
    pub fn exit_code(
        &mut self,
        mux: &mut Protomux,
        channel: ChannelId,
        code: u64,
    ) -> Result<(), ShellError> {
        let mut v = Vec::with_capacity(9);
        write_uint(&mut v, code);
        Ok(mux.send(channel, shell_msg::EXIT_CODE, &v)?)
    }

    /// A download's header.
    pub fn download_header(
        &mut self,
        mux: &mut Protomux,
        channel: ChannelId,
        header: DownloadHeader,
    ) -> Result<(), ShellError> {
        Ok(mux.send(channel, copy_msg::HEADER, &header.to_bytes())?)
    }

    /// A download's tar chunk (empty: the end).
    pub fn data(
        &mut self,
        mux: &mut Protomux,
        channel: ChannelId,
        data: &[u8],
    ) -> Result<(), ShellError> {
        Ok(mux.send(channel, copy_msg::DATA, data)?)
    }

    /// A transfer's failure; the caller closes the channel after it.
    pub fn error(
        &mut self,
        mux: &mut Protomux,
        channel: ChannelId,
        error: &RemoteError,
    ) -> Result<(), ShellError> {
        Ok(mux.send(channel, copy_msg::ERROR, &error.to_bytes())?)
    }

    /// Closes a channel (after the exit code, or a finished transfer).
    pub fn close(&mut self, mux: &mut Protomux, channel: ChannelId) -> Result<(), ShellError> {
        Ok(mux.close(channel)?)
    }
}

/// What a client must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server answered the open.
    Opened {
        /// The channel.
        channel: ChannelId,
    },
    /// PTY output.
    Stdout {
        /// The channel.
        channel: ChannelId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A spawn failure's text.
    Stderr {
        /// The channel.
        channel: ChannelId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The command's exit code.
    ExitCode {
        /// The channel.
        channel: ChannelId,
        /// The code.
        code: u64,
    },
    /// A download's header.
    DownloadHeader {
        /// The channel.
        channel: ChannelId,
        /// It.
        header: DownloadHeader,
    },
    /// A download's tar chunk; empty at its end.
    Data {
        /// The channel.
        channel: ChannelId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The server reports a failure of the transfer.
    Error {
        /// The channel.
        channel: ChannelId,
        /// What.
        error: RemoteError,
    },
    /// The server answered a tunnel connection: connect our UDX stream `client_id` to its
    /// `server_id` on the connection's socket and address, and run secret-stream as responder.
    TunnelStream {
        /// The channel.
        channel: ChannelId,
        /// Our stream's id.
        client_id: u32,
        /// The server's stream id.
        server_id: u32,
    },
    /// The channel closed; `rejected` when the server does not serve its protocol. A tunnel
    /// the server closes right after opening it was refused (its target is not allowed).
    Closed {
        /// The channel.
        channel: ChannelId,
        /// The server refused the open.
        rejected: bool,
    },
}

/// The client half: opens channels and reads what the server sends.
#[derive(Debug, Default)]
pub struct ShellClient {
    channels: BTreeMap<ChannelId, Kind>,
}

impl ShellClient {
    /// A client with no channel yet.
    pub fn new() -> Self {
        ShellClient::default()
    }

    fn open(
        &mut self,
        mux: &mut Protomux,
        kind: Kind,
        handshake: Vec<u8>,
    ) -> Result<ChannelId, ShellError> {
        let types = match kind {
            Kind::Shell => 5,
            Kind::Upload | Kind::Download => 3,
            Kind::Tunnel => 1,
        };
        let ch = mux.open(
            ChannelOptions::new(kind.protocol())
                .handshake(handshake)
                .message_types(types),
        )?;
        self.channels.insert(ch, kind);
        Ok(ch)
    }

    /// Runs `spawn` on the server.
    pub fn open_shell(
        &mut self,
        mux: &mut Protomux,
        spawn: &Spawn,
    ) -> Result<ChannelId, ShellError> {
        self.open(mux, Kind::Shell, spawn.to_bytes())
    }

    /// Starts a copy to the server; send the tar stream with [`ShellClient::data`].
    pub fn open_upload(
        &mut self,
        mux: &mut Protomux,
        upload: &Upload,
    ) -> Result<ChannelId, ShellError> {
        self.open(mux, Kind::Upload, upload.to_bytes())
    }

    /// Asks for a path of the server.
    pub fn open_download(
        &mut self,
        mux: &mut Protomux,
        download: &Download,
    ) -> Result<ChannelId, ShellError> {
        self.open(mux, Kind::Download, download.to_bytes())
    }

    /// Opens a tunnel to `target` (one per connection: protomux pairs one
    /// `hypershell-tunnel-local` channel; JS makes a connection per `-L`).
    pub fn open_tunnel(
        &mut self,
        mux: &mut Protomux,
        target: &TunnelTarget,
    ) -> Result<ChannelId, ShellError> {
        self.open(mux, Kind::Tunnel, target.to_handshake())
    }

    /// Asks the server to connect one more TCP connection on a tunnel; `client_id` is the id
    /// of our UDX stream for it (made now, connected on [`ClientEvent::TunnelStream`]).
    pub fn tunnel_connect(
        &mut self,
        mux: &mut Protomux,
        channel: ChannelId,
        client_id: u32,
    ) -> Result<(), ShellError> {
        let ids = StreamIds {
            client_id,
            server_id: 0,
        };
        Ok(mux.send(channel, tunnel::STREAM_IDS, &ids.to_bytes())?)
    }

    /// Bytes for the remote PTY.
    pub fn stdin(
        &mut self,
        mux: &mut Protomux,
        channel: ChannelId,
        data: &[u8],
    ) -> Result<(), ShellError> {
        Ok(mux.send(channel, shell_msg::STDIN, &buffer_msg(data))?)
    }

    /// The local terminal's new size.
    pub fn resize(
        &mut self,
        mux: &mut Protomux,
        channel: ChannelId,
        size: Resize,
    ) -> Result<(), ShellError> {
        Ok(mux.send(channel, shell_msg::RESIZE, &size.to_bytes())?)
    }

    /// An upload's tar chunk (empty: the end).
    pub fn data(
        &mut self,
        mux: &mut Protomux,
        channel: ChannelId,
        data: &[u8],
    ) -> Result<(), ShellError> {
        Ok(mux.send(channel, copy_msg::DATA, data)?)
    }

    /// Closes a channel (a download extracted, or giving up).
    pub fn close(&mut self, mux: &mut Protomux, channel: ChannelId) -> Result<(), ShellError> {
        Ok(mux.close(channel)?)
    }

    /// Feeds one protomux event.
    pub fn handle_event(&mut self, event: Event) -> Result<Option<ClientEvent>, ShellError> {
        match event {
            Event::ChannelOpened { channel, .. } => Ok(self
                .channels
                .contains_key(&channel)
                .then_some(ClientEvent::Opened { channel })),
            Event::Message {
                channel,
                message_type,
                payload,
            } => {
                let Some(&kind) = self.channels.get(&channel) else {
                    return Ok(None);
                };
                Ok(match (kind, message_type) {
                    (Kind::Shell, shell_msg::STDOUT) => Some(ClientEvent::Stdout {
                        channel,
                        data: decode_buffer(&payload)?,
                    }),
                    (Kind::Shell, shell_msg::STDERR) => Some(ClientEvent::Stderr {
                        channel,
                        data: decode_buffer(&payload)?,
                    }),
                    (Kind::Shell, shell_msg::EXIT_CODE) => Some(ClientEvent::ExitCode {
                        channel,
                        code: Decoder::new(&payload).uint()?,
                    }),
                    (Kind::Download, copy_msg::HEADER) => Some(ClientEvent::DownloadHeader {
                        channel,
                        header: DownloadHeader::from_bytes(&payload)?,
                    }),
                    (Kind::Download, copy_msg::DATA) => Some(ClientEvent::Data {
                        channel,
                        data: payload,
                    }),
                    (Kind::Upload | Kind::Download, copy_msg::ERROR) => Some(ClientEvent::Error {
                        channel,
                        error: RemoteError::from_bytes(&payload)?,
                    }),
                    (Kind::Tunnel, tunnel::STREAM_IDS) => {
                        let ids = StreamIds::from_bytes(&payload)?;
                        Some(ClientEvent::TunnelStream {
                            channel,
                            client_id: ids.client_id,
                            server_id: ids.server_id,
                        })
                    }
                    _ => None,
                })
            }
            Event::ChannelClosed { channel, .. } => {
                Ok(self.channels.remove(&channel).map(|_| ClientEvent::Closed {
                    channel,
                    rejected: false,
                }))
            }
            Event::ChannelRejected { channel } => {
                Ok(self.channels.remove(&channel).map(|_| ClientEvent::Closed {
                    channel,
                    rejected: true,
                }))
            }
            Event::PairRequest { .. } => Ok(None),
        }
    }
}

/// Who may connect to a server (`authorized_peers`): the keys of the file, one per line
/// (hex or z-base-32; `#` starts a comment, blank lines are skipped, as tiny-configs), or
/// everyone (`--disable-firewall`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    /// Everyone.
    Anyone,
    /// Only these keys.
    Keys(Vec<[u8; 32]>),
}

/// A line of an allow list that is not a key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line} of the allow list is not a public key (64 hex or 52 z-base-32 characters)")]
pub struct BadAllowLine {
    /// 1-based line number.
    pub line: usize,
}

impl AllowList {
    /// Parses an `authorized_peers` file. JS throws on a bad key (and keeps the previous list
    /// when reloading); so does the caller with the error.
    pub fn parse(text: &str) -> Result<AllowList, BadAllowLine> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            keys.push(crate::id_encoding::decode(line).map_err(|_| BadAllowLine { line: i + 1 })?);
        }
        Ok(AllowList::Keys(keys))
    }

    /// Whether the firewall refuses `remote` (JS `onFirewall` returning true).
    pub fn refuses(&self, remote: &[u8; 32]) -> bool {
        match self {
            AllowList::Anyone => false,
            AllowList::Keys(k) => !k.contains(remote),
        }
    }
}

/// The names of `known_peers` (`NAME KEY` per line, `#` comments, as tiny-configs with
/// `split: ' ', length: 2`): what `hypershell NAME` and `hypershell-copy @NAME:PATH` resolve.
/// Lines that are not exactly two words are skipped, as JS does.
pub fn parse_known_peers(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let words: Vec<&str> = line.split_whitespace().collect();
            (words.len() == 2).then(|| (words[0].to_string(), words[1].to_string()))
        })
        .collect()
}

/// A server named on the command line: a `known_peers` name, else the key itself (JS
/// `getKnownPeer`).
pub fn resolve_peer(
    host: &str,
    known_peers: &str,
) -> Result<[u8; 32], crate::id_encoding::IdError> {
    let key = parse_known_peers(known_peers)
        .into_iter()
        .find(|(name, _)| name == host)
        .map_or_else(|| host.to_string(), |(_, key)| key);
    crate::id_encoding::decode(key.trim())
}

/// The seed of a key file (`hypershell-keygen`: the z-base-32 seed, maybe ` # comment`, a
/// newline). The key pair is `KeyPair::from_seed(seed)` (JS `DHT.keyPair(seed)`).
pub fn parse_key_file(text: &str) -> Option<[u8; 32]> {
    let s = text.split('#').next().unwrap_or("").trim();
    crate::id_encoding::decode(s).ok()
}

/// The text of a key file for `seed` (what `hypershell-keygen` writes).
pub fn key_file(seed: &[u8; 32]) -> String {
    format!("{}\n", crate::id_encoding::encode(seed))
}

#[cfg(test)]
mod tests;
