//! blind-relay natively: the client half that pairs a connection through a relay (driven by
//! the connector's [`ConnectEvent::RelayPairing`](hyperpunch_core::dht::connect::ConnectEvent)),
//! and [`RelayServer`], a blind relay reachable by a key pair.
//!
//! Both speak protomux over a hyperdht [`Connection`] (one secret-stream message per frame)
//! with the sans-IO engines of [`hyperpunch_core::relay::blind`]. The relay's data plane (UDX
//! packets for a relay stream id forwarded to the paired peer with bytes 4-7 rewritten, as
//! libudx `relay_to` does) runs in the DHT driver, which sees every packet for an unknown
//! stream id.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::dht::connect::PairingId;
use hyperpunch_core::dht::rpc::SocketId;
use hyperpunch_core::protomux::Protomux;
use hyperpunch_core::relay::blind::{
    Client, ClientEvent, Server, ServerEvent, ServerSession, SessionId,
};
use tokio::sync::mpsc;

use super::{Cmd, Connection, ConnectionSender, Dht, DhtError, ServerOptions};

/// How long a pairing may take (JS `relayTimeout`, 15 s).
pub const PAIRING_TIMEOUT: Duration = Duration::from_secs(15);

/// What to pair.
pub(crate) struct Job {
    pub pairing: PairingId,
    pub token: [u8; 32],
    pub is_initiator: bool,
    pub stream_id: u32,
    /// Fires when the stream moved to a direct path: the relay connection ends.
    pub close: tokio::sync::oneshot::Receiver<()>,
}

async fn flush(mux: &mut Protomux, tx: &ConnectionSender) -> bool {
    while let Some(f) = mux.poll_transmit() {
        if tx.send(f).await.is_err() {
            return false;
        }
    }
    true
}

/// Pairs over an established connection to the relay, reports the result to the driver, then
/// keeps the relay connection open until either side closes it.
pub(crate) async fn pair(
    conn: Connection,
    own_public_key: [u8; 32],
    job: Job,
    cmds: mpsc::WeakUnboundedSender<Cmd>,
) {
    let (socket, relay) = (conn.socket, conn.remote);
    let (tx, mut rx) = conn.split();
    let report = |c: Cmd| {
        if let Some(s) = cmds.upgrade() {
            let _ = s.send(c);
        }
    };
    let mut mux = Protomux::new();
    let paired = async {
        let mut client = Client::open(&mut mux, &own_public_key).ok()?;
        client
            .pair(&mut mux, job.is_initiator, job.token, job.stream_id)
            .ok()?;
        if !flush(&mut mux, &tx).await {
            return None;
        }
        loop {
            let frame = rx.recv().await?.ok()?;
            mux.handle_frame(&frame).ok()?;
            while let Some(e) = mux.poll_event() {
                match client.handle_event(&e) {
                    Some(ClientEvent::Paired { remote_id, .. }) => {
                        return u32::try_from(remote_id).ok()
                    }
                    Some(ClientEvent::Closed { .. }) => return None,
                    _ => {}
                }
            }
            if !flush(&mut mux, &tx).await {
                return None;
            }
        }
    };
    match tokio::time::timeout(PAIRING_TIMEOUT, paired).await {
        Ok(Some(remote_id)) => report(Cmd::RelayPaired {
            pairing: job.pairing,
            socket,
            relay,
            remote_id,
        }),
        _ => {
            report(Cmd::RelayFailed(job.pairing));
            return;
        }
    }
    // Keep the relay connection (JS keeps relaySocket with keepalive until the stream closes),
    // and end it once the stream moved to a direct path (relay-connection.js
    // `closeRelayConnection`: `relaySocket.end()`).
    let mut close = Some(job.close);
    loop {
        let frame = tokio::select! {
            frame = rx.recv() => frame,
            fired = async { close.as_mut().expect("armed").await }, if close.is_some() => {
                close = None;
                if fired.is_ok() {
                    let _ = tx.end().await;
                }
                continue;
            }
        };
        let Some(Ok(frame)) = frame else { break };
        if mux.handle_frame(&frame).is_err() {
            break;
        }
        while mux.poll_event().is_some() {}
        if !flush(&mut mux, &tx).await {
            break;
        }
    }
}

/// A blind relay reachable by its key pair (JS `new BlindRelay.Server({ createStream })` on a
/// hyperdht server): peers that connect to it and pair the same token get their UDX streams
/// relayed to each other.
pub struct RelayServer {
    public_key: [u8; 32],
    task: tokio::task::JoinHandle<()>,
    matched: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RelayServer {
    /// Listens on `key_pair` through `peer` and relays until dropped.
    pub async fn start(peer: &Dht, key_pair: KeyPair) -> Result<RelayServer, DhtError> {
        let public_key = key_pair.public_key;
        let mut server = peer.listen(key_pair, ServerOptions::default()).await?;
        let cmds = peer.commands().clone();
        let matched = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = matched.clone();
        let task = tokio::spawn(async move {
            let (frames_tx, mut frames) = mpsc::channel::<(SessionId, Option<Vec<u8>>)>(256);
            let mut table = Server::new();
            // Per session: its mux, its blind-relay state, its sender, and where its peer is
            // (the connection's socket and remote address).
            #[allow(clippy::type_complexity)]
            let mut sessions: HashMap<
                SessionId,
                (
                    Protomux,
                    ServerSession,
                    ConnectionSender,
                    (SocketId, SocketAddrV4),
                ),
            > = HashMap::new();
            let mut next_stream: u32 = 0x4000_0000;
            loop {
                tokio::select! {
                    c = server.accept() => {
                        let Some(conn) = c else { return };
                        let remote = conn.remote_public_key();
                        let at = (conn.socket, conn.remote);
                        let mut mux = Protomux::new();
                        let Ok(session) = ServerSession::accept(&mut table, &mut mux, &remote) else { continue };
                        let id = session.id();
                        let (tx, mut rx) = conn.split();
                        let _ = flush(&mut mux, &tx).await;
                        sessions.insert(id, (mux, session, tx, at));
                        let ftx = frames_tx.clone();
                        tokio::spawn(async move {
                            while let Some(Ok(f)) = rx.recv().await {
                                if ftx.send((id, Some(f))).await.is_err() {
                                    return;
                                }
                            }
                            let _ = ftx.send((id, None)).await;
                        });
                    }
                    f = frames.recv() => {
                        let Some((id, frame)) = f else { return };
                        let mut events = Vec::new();
                        let Some((mux, session, _, _)) = sessions.get_mut(&id) else { continue };
                        let ok = match &frame {
                            Some(f) => mux.handle_frame(f).is_ok(),
                            None => false,
                        };
                        if !ok {
                            mux.destroy();
                        }
                        while let Some(e) = mux.poll_event() {
                            if let Some(ev) = session.handle_event(&mut table, &e) {
                                events.push(ev);
                            }
                        }
                        for ev in events {
                            match ev {
                                ServerEvent::Matched(m) => {
                                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    let ids = [next_stream, next_stream + 1];
                                    next_stream = next_stream.wrapping_add(2).max(0x4000_0000);
                                    let remotes = [m.links[0].remote_id as u32, m.links[1].remote_id as u32];
                                    // As JS connects each relay stream to its session's peer
                                    // at once: packets flow both ways from the first one.
                                    let at = [
                                        sessions.get(&m.links[0].session).map(|s| s.3),
                                        sessions.get(&m.links[1].session).map(|s| s.3),
                                    ];
                                    let _ = cmds.send(Cmd::RelayLink { ids, remotes, at });
                                    for (sid, pair) in table.activate(&m, ids) {
                                        if let Some((mux, session, _, _)) = sessions.get_mut(&sid) {
                                            let _ = session.send_pair(mux, &pair);
                                        }
                                    }
                                }
                                ServerEvent::Destroy { streams } => {
                                    let _ = cmds.send(Cmd::RelayUnlink(streams));
                                }
                                ServerEvent::Opened => {}
                            }
                        }
                        let mut gone = Vec::new();
                        for (sid, (mux, _, tx, _)) in sessions.iter_mut() {
                            if !flush(mux, tx).await || mux.is_destroyed() {
                                gone.push(*sid);
                            }
                        }
                        for sid in gone {
                            sessions.remove(&sid);
                            let streams = table.session_closed(sid);
                            if !streams.is_empty() {
                                let _ = cmds.send(Cmd::RelayUnlink(streams));
                            }
                        }
                    }
                }
            }
        });
        Ok(RelayServer {
            public_key,
            task,
            matched,
        })
    }

    /// Pairings matched so far (both peers of a token arrived and got relay streams).
    pub fn pairings(&self) -> u64 {
        self.matched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The relay's public key (what peers pass as `relayThrough`).
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }
}

impl Drop for RelayServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The driver's relay table: relay stream id → the peer it belongs to and its pair.
#[derive(Default)]
pub(crate) struct Links {
    ends: HashMap<u32, End>,
}

struct End {
    /// The peer's own stream id (bytes 4-7 of what we forward to it).
    remote_id: u32,
    /// Where the peer is: its pairing connection's socket and address (or, without one, where
    /// its first packet came from).
    at: Option<(SocketId, SocketAddrV4)>,
    /// The other relay stream of the pair.
    other: u32,
}

impl Links {
    pub fn link(
        &mut self,
        ids: [u32; 2],
        remotes: [u32; 2],
        at: [Option<(SocketId, SocketAddrV4)>; 2],
    ) {
        self.ends.insert(
            ids[0],
            End {
                remote_id: remotes[0],
                at: at[0],
                other: ids[1],
            },
        );
        self.ends.insert(
            ids[1],
            End {
                remote_id: remotes[1],
                at: at[1],
                other: ids[0],
            },
        );
    }

    pub fn unlink(&mut self, ids: &[u32]) {
        for id in ids {
            if let Some(e) = self.ends.remove(id) {
                self.ends.remove(&e.other);
            }
        }
    }

    pub fn contains(&self, id: u32) -> bool {
        self.ends.contains_key(&id)
    }

    /// A packet for relay stream `id` from `from` on `socket`: where to forward it, with the
    /// bytes rewritten. A DESTROY tears the pair down after it is forwarded.
    pub fn forward(
        &mut self,
        id: u32,
        socket: SocketId,
        from: SocketAddrV4,
        bytes: &mut [u8],
    ) -> Option<(SocketId, SocketAddrV4)> {
        let end = self.ends.get_mut(&id)?;
        match end.at {
            None => end.at = Some((socket, from)),
            Some((_, at)) if at != from => return None, // only the paired peer feeds it
            Some(_) => {}
        }
        let other = end.other;
        let o = self.ends.get(&other)?;
        let (osock, oaddr) = o.at?;
        bytes[4..8].copy_from_slice(&o.remote_id.to_le_bytes());
        if bytes[2] & 16 != 0 {
            self.unlink(&[id]);
        }
        Some((osock, oaddr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(id: u32) -> Vec<u8> {
        let mut b = vec![0xff, 1, 1, 0];
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&[0; 12]);
        b
    }

    /// The first packet of a pair goes through at once, before the other side sent anything
    /// (the relay knows both peers from their pairing connections, as JS `stream.connect`),
    /// rewritten to the other peer's stream id; other senders are dropped.
    #[test]
    fn a_linked_pair_forwards_from_the_first_packet() {
        let a: SocketAddrV4 = "198.18.0.11:4000".parse().unwrap();
        let b: SocketAddrV4 = "198.18.0.12:5000".parse().unwrap();
        let mut links = Links::default();
        links.link(
            [100, 101],
            [7, 8],
            [Some((SocketId::SERVER, a)), Some((SocketId(3), b))],
        );
        let mut p = pkt(100);
        assert_eq!(
            links.forward(100, SocketId::SERVER, a, &mut p),
            Some((SocketId(3), b))
        );
        assert_eq!(&p[4..8], &8u32.to_le_bytes());
        let mut p = pkt(101);
        assert_eq!(
            links.forward(101, SocketId(3), b, &mut p),
            Some((SocketId::SERVER, a))
        );
        assert_eq!(&p[4..8], &7u32.to_le_bytes());
        let stranger: SocketAddrV4 = "198.18.0.13:6000".parse().unwrap();
        assert_eq!(
            links.forward(100, SocketId::SERVER, stranger, &mut pkt(100)),
            None
        );
        // Without the pairing addresses, a side is learnt from its first packet.
        links.link([200, 201], [1, 2], [None, None]);
        assert_eq!(links.forward(200, SocketId::SERVER, a, &mut pkt(200)), None);
        assert_eq!(
            links.forward(201, SocketId::SERVER, b, &mut pkt(201)),
            Some((SocketId::SERVER, a))
        );
    }
}
