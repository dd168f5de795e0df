//! Backpressure over real loopback TCP: a client that floods block requests and never reads
//! the answers keeps the serving pump's queue bounded (its requests wait in the hub), while an
//! honest client on the same hub downloads the whole core. Everything runs on 127.0.0.1 under
//! one deadline.

use std::time::Duration;

use hyperpunch::core::crypto::KeyPair;
use hyperpunch::core::encoding::Encode;
use hyperpunch::core::hypercore::messages::{Handshake, Message, Request, RequestBlock};
use hyperpunch::core::hypercore::verifier::capability;
use hyperpunch::core::hypercore::{CreateOptions, Hypercore};
use hyperpunch::core::protomux::{ChannelOptions, Event as MuxEvent, Protomux};
use hyperpunch::core::replication::{
    HubEvent, Options, ReplicationHub, Replicator, HIGH_WATER, MAX_DEFERRED, PROTOCOL,
};
use hyperpunch::core::secretstream::{
    Entropy, Event as StreamEvent, Options as StreamOptions, SecretStream,
};
use hyperpunch::core::storage::MemoryStorage;
use hyperpunch::replicate::{replicate, SharedHub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BLOCKS: u64 = 128;
const BLOCK_SIZE: usize = 32 * 1024;
/// Requests the flooder sends: about 96 MiB of answers, far more than any socket buffers.
const FLOOD: u64 = 3000;

async fn core(key_pair: Option<KeyPair>, key: Option<[u8; 32]>) -> Hypercore<MemoryStorage> {
    Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair,
            key,
            ..CreateOptions::default()
        },
    )
    .await
    .expect("create core")
}

/// Write what the secret stream has for the socket.
async fn send_out(ss: &mut SecretStream, sock: &mut TcpStream) {
    while let Some(bytes) = ss.poll_transmit() {
        sock.write_all(&bytes).await.expect("write");
    }
}

/// Connect, shake hands, open the core's channel (reading until the server's open arrived),
/// then send [`FLOOD`] block requests and never read again. Returns the socket to keep open.
async fn flood(addr: std::net::SocketAddr, key: [u8; 32], dk: [u8; 32]) -> TcpStream {
    let mut sock = TcpStream::connect(addr).await.expect("connect");
    let mut ss = SecretStream::new_initiator(
        KeyPair::from_seed(&[8; 32]),
        Entropy::from_bytes(&[1; 64]),
        StreamOptions::default(),
        0,
    )
    .expect("secret stream");
    let mut mux = Protomux::new();
    let mut ch = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        send_out(&mut ss, &mut sock).await;
        if ch.is_some_and(|c| mux.is_opened(c)) {
            break;
        }
        let n = sock.read(&mut buf).await.expect("read");
        assert!(n > 0, "server closed during setup");
        ss.handle_input(0, &buf[..n]);
        while let Some(ev) = ss.poll_event() {
            match ev {
                StreamEvent::Connected { handshake_hash, .. } => {
                    let hs = Handshake {
                        seeks: true,
                        capability: capability(true, &key, &handshake_hash),
                    };
                    let c = mux
                        .open(
                            ChannelOptions::new(PROTOCOL)
                                .id(dk.to_vec())
                                .handshake(hs.to_bytes())
                                .message_types(10),
                        )
                        .expect("open");
                    ch = Some(c);
                }
                StreamEvent::Message(m) => {
                    mux.handle_frame(&m).expect("mux frame");
                    while let Some(ev) = mux.poll_event() {
                        let _: MuxEvent = ev;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        while let Some(f) = mux.poll_transmit() {
            ss.write(&f).expect("encrypt");
        }
    }
    let ch = ch.expect("channel");
    for id in 1..=FLOOD {
        let req = Message::Request(Request {
            id,
            block: Some(RequestBlock {
                index: id % BLOCKS,
                nodes: 0,
            }),
            ..Request::default()
        });
        mux.send(ch, req.type_id(), &req.to_bytes()).expect("send");
        while let Some(f) = mux.poll_transmit() {
            ss.write(&f).expect("encrypt");
        }
    }
    send_out(&mut ss, &mut sock).await;
    sock
}

#[tokio::test]
async fn a_client_that_never_reads_is_bounded_and_others_keep_replicating() {
    let mut writer = core(Some(KeyPair::from_seed(&[3; 32])), None).await;
    for i in 0..BLOCKS {
        writer
            .append(&[&vec![i as u8; BLOCK_SIZE]])
            .await
            .expect("append");
    }
    let key = *writer.key();
    let mut wh = ReplicationHub::new();
    let dk = wh
        .add_core(Replicator::new(writer, Options::default()))
        .expect("add core");
    let (wh, mut server_events) = SharedHub::with_events(wh);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");

    let local = tokio::task::LocalSet::new();
    let test = local.run_until(async {
        let server_hub = wh.clone();
        tokio::task::spawn_local(async move {
            let mut n = 0u8;
            while let Ok((sock, _)) = listener.accept().await {
                n += 1;
                let hub = server_hub.clone();
                tokio::task::spawn_local(async move {
                    let _ = replicate(sock, false, KeyPair::from_seed(&[10 + n; 32]), &hub).await;
                });
            }
        });

        // The flooder: its requests are read and wait in the hub once the pump's queue is full.
        let _flooder = flood(addr, key, dk).await;
        let (sid, peer) = loop {
            if let Some(HubEvent::ChannelOpened { stream, peer, .. }) = server_events.recv().await {
                break (stream, peer);
            }
        };
        loop {
            let waiting = wh
                .lock()
                .await
                .replicator(&dk)
                .expect("core")
                .deferred(peer);
            if waiting > 0 {
                assert!(waiting <= MAX_DEFERRED);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // An honest client on the same hub downloads everything meanwhile.
        let mut rh = ReplicationHub::new();
        rh.add_core(Replicator::new(
            core(None, Some(key)).await,
            Options::default(),
        ))
        .expect("add core");
        let (rh, mut events) = SharedHub::with_events(rh);
        {
            let now = rh.now();
            let mut g = rh.lock().await;
            g.replicator_mut(&dk)
                .expect("core")
                .download(now, 0, Some(BLOCKS))
                .await
                .expect("download");
        }
        let sock = TcpStream::connect(addr).await.expect("connect");
        let fetch = replicate(sock, true, KeyPair::from_seed(&[2; 32]), &rh);
        let drive = async {
            loop {
                events.recv().await.expect("events");
                let g = rh.lock().await;
                if g.replicator(&dk).expect("core").core().contiguous_length() == BLOCKS {
                    break;
                }
            }
            rh.end_all().await;
        };
        let (fetched, ()) = tokio::join!(fetch, drive);
        fetched.expect("honest client replicated");
        let g = rh.lock().await;
        g.replicator(&dk)
            .expect("core")
            .core()
            .verify_all()
            .await
            .expect("verify");
        drop(g);

        // The flooder's requests still wait; the serving pump never held more than the
        // high-water mark plus one batch.
        let g = wh.lock().await;
        assert!(g.has_stream(sid));
        assert!(g.is_congested(sid));
        assert!(g.replicator(&dk).expect("core").deferred(peer) > 0);
        drop(g);
        let max = wh.max_backlog();
        assert!(max <= HIGH_WATER + 1024 * 1024, "{max} bytes queued");
    });
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test finished in time");
}
