use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pattern(len: usize, tag: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(tag))
        .collect()
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Collects a stream's data until it closes; fails on errors.
async fn collect(stream: &mut UdxStream) -> (Vec<u8>, Vec<Vec<u8>>, bool) {
    let (mut data, mut messages, mut ended) = (Vec::new(), Vec::new(), false);
    while let Some(event) = stream.next_event().await {
        match event {
            Event::Data(d) => data.extend_from_slice(&d),
            Event::Message(m) => messages.push(m),
            Event::Ended => ended = true,
            Event::Closed => break,
            Event::Error(e) => panic!("stream failed: {e}"),
        }
    }
    (data, messages, ended)
}

async fn exchange_and_close(options: SocketOptions) {
    let a = UdxSocket::bind_with(loopback(), options).await.unwrap();
    let b = UdxSocket::bind_with(loopback(), options).await.unwrap();
    let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
    let mut sb = b.connect(2, 1, a.local_addr()).unwrap();
    let (big, small) = (pattern(3 << 20, 1), pattern(100_000, 7));
    let run = async {
        sa.send_message(b"ping".to_vec()).unwrap();
        for chunk in big.chunks(256 * 1024) {
            sa.write_owned(chunk.to_vec()).await.unwrap();
        }
        sa.end().unwrap();
        let a_side = collect(&mut sa);
        let b_side = async {
            // b answers only after a's END: the half-closed direction still works.
            let mut got = Vec::new();
            let mut messages = Vec::new();
            loop {
                match sb.next_event().await.unwrap() {
                    Event::Data(d) => got.extend_from_slice(&d),
                    Event::Message(m) => messages.push(m),
                    Event::Ended => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            sb.write_owned(small.clone()).await.unwrap();
            sb.end().unwrap();
            let (rest, _, _) = collect(&mut sb).await;
            assert!(rest.is_empty());
            (got, messages)
        };
        tokio::join!(a_side, b_side)
    };
    let ((a_got, _, a_ended), (b_got, b_messages)) =
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("exchange finished");
    assert!(a_ended);
    assert!(b_got == big, "a -> b bytes differ");
    assert!(a_got == small, "b -> a bytes differ");
    assert_eq!(b_messages, vec![b"ping".to_vec()]);
}

#[tokio::test]
async fn two_tokio_sockets_exchange_and_close() {
    exchange_and_close(SocketOptions::default()).await;
}

#[tokio::test]
async fn one_datagram_per_syscall_works_too() {
    exchange_and_close(SocketOptions { batched: false }).await;
}

#[tokio::test]
async fn destroy_resets_the_remote() {
    let a = UdxSocket::bind(loopback()).await.unwrap();
    let b = UdxSocket::bind(loopback()).await.unwrap();
    let mut sa = a.connect(5, 6, b.local_addr()).unwrap();
    let mut sb = b.connect(6, 5, a.local_addr()).unwrap();
    sa.write_owned(b"x".to_vec()).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), sb.next_event()).await;
    assert_eq!(first.unwrap(), Some(Event::Data(b"x".to_vec())));
    sa.destroy().unwrap();
    assert_eq!(sa.next_event().await, Some(Event::Closed));
    let reset = tokio::time::timeout(Duration::from_secs(10), sb.next_event()).await;
    assert_eq!(reset.unwrap(), Some(Event::Error(StreamError::Reset)));
    // Reading a reset stream is an error of its own kind.
    let mut buf = [0u8; 8];
    let err = sb.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
}

/// A peer sending MESSAGE datagrams to a handle that does not read fills bounded queues and
/// then loses messages, instead of growing memory; stream data still arrives intact.
#[tokio::test]
async fn unread_messages_are_bounded() {
    let a = UdxSocket::bind(loopback()).await.unwrap();
    let b = UdxSocket::bind(loopback()).await.unwrap();
    let sa = a.connect(1, 2, b.local_addr()).unwrap();
    let mut sb = b.connect(2, 1, a.local_addr()).unwrap();
    let sent = 4000;
    let run = async {
        for i in 0..sent {
            sa.send_message(pattern(1000, i as u8)).unwrap();
            if i % 50 == 49 {
                // Paced, so the kernel's socket buffer is not what drops them.
                let _ = sa.stats().await;
                let _ = sb.stats().await;
            }
        }
        sa.write_owned(b"after".to_vec()).await.unwrap();
        sa.end().unwrap();
        let mut messages = 0;
        let mut data = Vec::new();
        loop {
            match sb.next_event().await.unwrap() {
                Event::Message(m) => {
                    assert_eq!(m.len(), 1000);
                    messages += 1;
                }
                Event::Data(d) => data.extend_from_slice(&d),
                Event::Ended => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        (messages, data)
    };
    let (messages, data) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("done in time");
    assert_eq!(data, b"after");
    // 1 MiB in the handle's queue plus 1 MiB in the engine, 1000 bytes each.
    assert!(
        messages > 0 && messages <= 2 * 1049,
        "{messages} of {sent} kept"
    );
}

/// Bytes through AsyncWrite/AsyncRead both ways at once; a reader that does not read stalls
/// the writer (the receive window closes) instead of buffering without bound.
#[tokio::test]
async fn async_read_write_with_backpressure() {
    let a = UdxSocket::bind(loopback()).await.unwrap();
    let b = UdxSocket::bind(loopback()).await.unwrap();
    let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
    let mut sb = b.connect(2, 1, a.local_addr()).unwrap();
    // Unread bytes sit in the handle (1 MiB), the engine (a 4 MiB window) and the sender (1 MiB).
    let (ab, ba) = (pattern(12 << 20, 3), pattern(1 << 20, 9));
    let run = async {
        // Nobody reads b yet: a's writes stop after a bounded amount. A write that waits
        // counts as stalled once b's engine is holding data back (its window is closing).
        let mut written = 0usize;
        while written < ab.len() {
            let write = sa.write(&ab[written..]);
            match tokio::time::timeout(Duration::from_millis(500), write).await {
                Ok(n) => written += n.unwrap(),
                Err(_) if sb.stats().await.unwrap().recv_buffered > 0 => break,
                Err(_) => {}
            }
        }
        assert!(written < ab.len(), "12 MiB went into a stream nobody reads");
        let a_side = async {
            sa.write_all(&ab[written..]).await.unwrap();
            sa.shutdown().await.unwrap();
            let mut got = Vec::new();
            sa.read_to_end(&mut got).await.unwrap();
            got
        };
        let b_side = async {
            let mut got = Vec::new();
            sb.read_to_end(&mut got).await.unwrap();
            sb.write_all(&ba).await.unwrap();
            sb.shutdown().await.unwrap();
            got
        };
        tokio::join!(a_side, b_side)
    };
    let (a_got, b_got) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("exchange finished");
    assert!(b_got == ab, "a -> b bytes differ");
    assert!(a_got == ba, "b -> a bytes differ");
}

/// Datagrams that are not UDX reach the owner; UDX for unknown streams reaches nobody;
/// raw datagrams go out on the same socket; streams keep working beside them.
#[tokio::test]
async fn non_udx_datagrams_are_demultiplexed() {
    let a = UdxSocket::bind(loopback()).await.unwrap();
    let b = UdxSocket::bind(loopback()).await.unwrap();
    let mut raw_b = b.datagrams().unwrap();
    let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
    let mut sb = b.connect(2, 1, a.local_addr()).unwrap();
    // A DHT request, a holepunch probe, UDX for a stream id b does not have.
    let mut unknown = pattern(40, 0);
    unknown[..8].copy_from_slice(&[0xff, 0x01, 0x01, 0x00, 99, 0, 0, 0]);
    for d in [&b"\x03\x04\x34\x12"[..], &[0u8][..], &unknown[..]] {
        a.send_datagram(d, b.local_addr()).await.unwrap();
    }
    sa.write_all(b"stream bytes").await.unwrap();
    sa.shutdown().await.unwrap();
    let run = async {
        let first = raw_b.recv().await.unwrap();
        let second = raw_b.recv().await.unwrap();
        let mut got = Vec::new();
        sb.read_to_end(&mut got).await.unwrap();
        (first, second, got)
    };
    let (first, second, got) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("datagrams and stream arrived");
    assert_eq!(first, (a.local_addr(), b"\x03\x04\x34\x12".to_vec()));
    assert_eq!(second, (a.local_addr(), vec![0u8]));
    assert_eq!(got, b"stream bytes");
    assert!(
        raw_b.try_recv().is_err(),
        "UDX datagrams are not handed out"
    );
}

/// Hypercore replication (secret-stream, protomux, hypercore messages) runs on UDX streams.
#[tokio::test]
async fn replication_runs_over_udx_streams() {
    use crate::core::crypto::KeyPair;
    use crate::core::hypercore::{CreateOptions, Hypercore};
    use crate::core::replication::{Options, ReplicationHub, Replicator};
    use crate::core::storage::MemoryStorage;
    use crate::replicate::{replicate, SharedHub};

    let create = |key_pair, key| {
        Hypercore::create(
            MemoryStorage::new(),
            CreateOptions {
                key_pair,
                key,
                ..CreateOptions::default()
            },
        )
    };
    let mut writer = create(Some(KeyPair::from_seed(&[5; 32])), None)
        .await
        .unwrap();
    let blocks: Vec<Vec<u8>> = (0..300u32)
        .map(|i| pattern(i as usize * 37 % 5000 + 1, i as u8))
        .collect();
    let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
    writer.append(&refs).await.unwrap();
    let reader = create(None, Some(*writer.key())).await.unwrap();
    let mut wh = ReplicationHub::new();
    let dk = wh
        .add_core(Replicator::new(writer, Options::default()))
        .unwrap();
    let wh = SharedHub::new(wh);
    let mut rh = ReplicationHub::new();
    rh.add_core(Replicator::new(reader, Options::default()))
        .unwrap();
    let (rh, mut events) = SharedHub::with_events(rh);
    {
        let now = rh.now();
        let mut g = rh.lock().await;
        g.replicator_mut(&dk)
            .unwrap()
            .download(now, 0, None)
            .await
            .unwrap();
    }
    let a = UdxSocket::bind(loopback()).await.unwrap();
    let b = UdxSocket::bind(loopback()).await.unwrap();
    let sa = a.connect(1, 2, b.local_addr()).unwrap();
    let sb = b.connect(2, 1, a.local_addr()).unwrap();
    let serve = replicate(sa, false, KeyPair::from_seed(&[1; 32]), &wh);
    let fetch = replicate(sb, true, KeyPair::from_seed(&[2; 32]), &rh);
    let drive = async {
        loop {
            events.recv().await.expect("events");
            let g = rh.lock().await;
            if g.replicator(&dk).unwrap().core().contiguous_length() == 300 {
                break;
            }
        }
        rh.end_all().await;
    };
    let all = async { tokio::join!(serve, fetch, drive) };
    let (s, f, ()) = tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("replication finished in time");
    s.unwrap();
    f.unwrap();
    let g = rh.lock().await;
    let c = g.replicator(&dk).unwrap().core();
    c.verify_all().await.unwrap();
    assert_eq!(c.get(299).await.unwrap(), Some(blocks[299].clone()));
}

/// The peer destroys the stream once everything it wrote was acknowledged, while our handle is
/// megabytes behind on reading: every acknowledged byte is read, in order, before the reset.
#[tokio::test]
async fn acknowledged_data_is_read_before_a_reset() {
    let a = UdxSocket::bind(loopback()).await.unwrap();
    let b = UdxSocket::bind(loopback()).await.unwrap();
    let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
    let mut sb = b.connect(2, 1, a.local_addr()).unwrap();
    let data = pattern(3 << 20, 7);
    let run = async {
        sa.write_all(&data).await.unwrap();
        sa.flush().await.unwrap();
        loop {
            let s = sa.stats().await.unwrap();
            if s.send_buffered == 0 && s.unacked_packets == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sa.destroy().unwrap();
        sa.closed().await.unwrap();
        let mut got = Vec::new();
        let err = sb.read_to_end(&mut got).await.unwrap_err();
        (got, err)
    };
    let (got, err) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("done in time");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert!(got == data, "{} of {} bytes", got.len(), data.len());
}

/// A stream that finishes (no linger) while its handle is behind on reading keeps its data
/// and final events until the handle has taken them.
#[tokio::test]
async fn finished_stream_keeps_unread_data() {
    let a = UdxSocket::bind(loopback()).await.unwrap();
    let b = UdxSocket::bind(loopback()).await.unwrap();
    let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
    let no_linger = Config {
        linger: Some(Duration::ZERO),
        ..Config::default()
    };
    let mut sb = b.connect_with(2, 1, a.local_addr(), no_linger).unwrap();
    let data = pattern(3 << 20, 5);
    let run = async {
        sb.end().unwrap();
        sa.write_all(&data).await.unwrap();
        sa.shutdown().await.unwrap();
        // Everything was delivered and acknowledged: b's engine is done with the stream.
        sa.closed().await.unwrap();
        let mut got = Vec::new();
        sb.read_to_end(&mut got).await.unwrap();
        sb.closed().await.unwrap();
        got
    };
    let got = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("done in time");
    assert!(got == data, "{} of {} bytes", got.len(), data.len());
}

/// A dual-stack IPv6 socket talks to an IPv4 peer (mapped addresses both ways).
#[tokio::test]
async fn dual_stack_socket_reaches_ipv4_peers() {
    let a = UdxSocket::bind("[::]:0".parse().unwrap()).await;
    let Ok(a) = a else {
        eprintln!("skipped: no IPv6 on this machine ({:?})", a.err());
        return;
    };
    let b = UdxSocket::bind(loopback()).await.unwrap();
    let a_v4: SocketAddr = ([127, 0, 0, 1], a.local_addr().port()).into();
    let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
    let mut sb = b.connect(2, 1, a_v4).unwrap();
    let run = async {
        sa.write_all(b"over v6").await.unwrap();
        sa.shutdown().await.unwrap();
        let mut got = Vec::new();
        sb.read_to_end(&mut got).await.unwrap();
        sb.shutdown().await.unwrap();
        sa.closed().await.unwrap();
        got
    };
    let got = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("done in time");
    assert_eq!(got, b"over v6");
}

/// Both ends first talk through a forwarder (a relay), then move to each other's direct
/// address mid-transfer: the writer with megabytes in flight, so its change waits for
/// acknowledgements that still come over the relay. Every byte arrives once, in order;
/// the relay is shut down afterwards and nothing more needs it.
#[tokio::test]
async fn change_remote_from_a_relay_to_the_direct_path() {
    let a = UdxSocket::bind(loopback()).await.unwrap();
    let b = UdxSocket::bind(loopback()).await.unwrap();
    let relay = UdpSocket::bind(loopback()).await.unwrap();
    let via = relay.local_addr().unwrap();
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    let forward = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, from) = relay.recv_from(&mut buf).await.unwrap();
            let to = if from == a_addr { b_addr } else { a_addr };
            let _ = relay.send_to(&buf[..n], to).await;
        }
    });
    let sa = a.connect(1, 2, via).unwrap();
    let mut sb = b.connect(2, 1, via).unwrap();
    let data = pattern(8 << 20, 11);
    // B moves once it got 1 MiB and tells A, which moves after writing 2 MiB, with data in
    // flight: its change completes when that is acknowledged.
    let (moved_tx, moved_rx) = oneshot::channel::<()>();
    let writer = async {
        let mut moved_rx = Some(moved_rx);
        for (i, chunk) in data.chunks(256 * 1024).enumerate() {
            if i == 8 {
                moved_rx.take().unwrap().await.unwrap();
                sa.change_remote(2, b_addr).await.unwrap();
            }
            sa.write_owned(chunk.to_vec()).await.unwrap();
        }
        sa.end().unwrap();
    };
    let reader = async {
        let mut got = Vec::new();
        let mut moved_tx = Some(moved_tx);
        loop {
            match sb.next_event().await.unwrap() {
                Event::Data(d) => got.extend_from_slice(&d),
                Event::Ended => break,
                other => panic!("unexpected {other:?}"),
            }
            if got.len() >= 1 << 20 {
                if let Some(tx) = moved_tx.take() {
                    sb.change_remote(1, a_addr).await.unwrap();
                    tx.send(()).unwrap();
                }
            }
        }
        got
    };
    let (_, got) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(writer, reader)
    })
    .await
    .expect("transfer in time");
    forward.abort();
    assert!(
        got == data,
        "{} of {} bytes, or different ones",
        got.len(),
        data.len()
    );
    // The close handshake runs without the relay.
    let mut sa = sa;
    sb.end().unwrap();
    let close = async { tokio::join!(sa.closed(), sb.closed()) };
    let (ca, cb) = tokio::time::timeout(Duration::from_secs(10), close)
        .await
        .expect("closed in time");
    ca.unwrap();
    cb.unwrap();
}

#[tokio::test]
async fn stream_ids_are_unique_per_socket() {
    let a = UdxSocket::bind(loopback()).await.unwrap();
    let peer = "127.0.0.1:9".parse().unwrap();
    let _s = a.connect(7, 8, peer).unwrap();
    let err = a.connect(7, 9, peer).err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert!(a.connect(8, 9, peer).is_ok());
}

/// As in libudx, a stream takes its packets from any address: here the peer sends from one
/// socket while we send to another of its sockets (a hyperdht server that became reachable
/// answers from its server socket while the relays named its client socket). Both directions
/// still deliver.
#[tokio::test]
async fn a_stream_takes_packets_from_another_address_of_its_peer() {
    let a = UdxSocket::bind(loopback()).await.unwrap();
    let b = UdxSocket::bind(loopback()).await.unwrap();
    // The peer's other socket: it forwards what reaches it to `b`.
    let other = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let other_addr = other.local_addr().unwrap();
    let b_addr = b.local_addr();
    let forward = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, _)) = other.recv_from(&mut buf).await {
            let _ = other.send_to(&buf[..n], b_addr).await;
        }
    });
    let mut sa = a.connect(1, 2, other_addr).unwrap();
    let mut sb = b.connect(2, 1, a.local_addr()).unwrap();
    let (one, two) = (pattern(300_000, 3), pattern(200_000, 5));
    let run = async {
        sa.write_owned(one.clone()).await.unwrap();
        sa.end().unwrap();
        sb.write_owned(two.clone()).await.unwrap();
        sb.end().unwrap();
        tokio::join!(collect(&mut sa), collect(&mut sb))
    };
    let ((got_a, _, ended_a), (got_b, _, ended_b)) =
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("both directions delivered in time");
    assert!(ended_a && ended_b);
    assert!(got_a == two, "a got {} bytes", got_a.len());
    assert!(got_b == one, "b got {} bytes", got_b.len());
    forward.abort();
}

/// A writer blocked above the send high-water mark (its peer acknowledges nothing, as a blind
/// relay whose other side is gone) is woken when the peer's DESTROY arrives, with the reset,
/// instead of waiting forever (an earlier session saw a sender hang after a relay destroyed
/// its stream).
#[tokio::test]
async fn a_writer_blocked_on_a_silent_peer_is_woken_by_its_destroy() {
    use hyperpunch_core::udx::packet::{encode, Flags, Header};
    let a = UdxSocket::bind(loopback()).await.unwrap();
    // The peer: a plain UDP socket that never acknowledges.
    let peer = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let sa = a.connect(1, 2, peer.local_addr().unwrap()).unwrap();
    let handle = sa.handle();
    let writer = {
        tokio::spawn(async move {
            // 4 MiB in 64 KiB writes: blocks at the 1 MiB high-water mark.
            let mut result = Ok(());
            for _ in 0..64 {
                result = sa.write_owned(vec![7u8; 64 * 1024]).await;
                if result.is_err() {
                    break;
                }
            }
            (sa, result)
        })
    };
    // Wait until the writer is blocked: with nothing acknowledged, at most a congestion
    // window of it leaves the send buffer, so a write past 1 MiB waits.
    let mut buf = vec![0u8; 2048];
    let (_, from) = peer.recv_from(&mut buf).await.unwrap();
    for _ in 0..3000 {
        if handle.bytes_written() >= 16 * 64 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        handle.bytes_written() >= 16 * 64 * 1024,
        "the writer never got going"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let destroy = Header {
        flags: Flags::DESTROY,
        data_offset: 0,
        id: 1,
        rwnd: 0,
        seq: 0,
        ack: 0,
    };
    peer.send_to(&encode(&destroy, &[], &[]), from)
        .await
        .unwrap();
    let (mut sa, result) = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the blocked writer was never woken")
        .unwrap();
    assert!(
        result.is_err() || sa.next_event().await == Some(Event::Error(StreamError::Reset)),
        "the writer saw neither an error nor the reset"
    );
}

/// A peer that sends to another of our sockets than the one our stream sends from (a hyperdht
/// server answers from one socket while the client was told the other): the owner hands the
/// packets to the stream's socket (`deliver`, as libudx looks stream ids up across the sockets
/// of one instance) and the exchange completes both ways. Without the hand-over the peer's data
/// never reaches the stream; a packet for a stream the socket does not have is dropped.
#[tokio::test]
async fn packets_reaching_a_sibling_socket_are_delivered_to_the_stream() {
    let home = std::sync::Arc::new(UdxSocket::bind(loopback()).await.unwrap());
    let sibling = UdxSocket::bind(loopback()).await.unwrap();
    sibling.set_firewall(true).unwrap();
    let mut misrouted = sibling.datagrams().unwrap();
    let peer = UdxSocket::bind(loopback()).await.unwrap();
    // Our stream sends from `home`; the peer sends to `sibling`.
    let mut ours = home.connect(7, 8, peer.local_addr()).unwrap();
    let mut theirs = peer.connect(8, 7, sibling.local_addr()).unwrap();
    let forward = {
        let home = home.clone();
        tokio::spawn(async move {
            let mut handed = 0usize;
            while let Some((_, bytes)) = misrouted.recv().await {
                handed += 1;
                home.deliver(bytes).unwrap();
            }
            handed
        })
    };
    let up = pattern(200_000, 1);
    let down = pattern(150_000, 2);
    let run = async {
        let (mut got_theirs, mut got_ours) = (Vec::new(), Vec::new());
        let a = async {
            theirs.write_all(&up).await.unwrap();
            theirs.shutdown().await.unwrap();
            theirs.read_to_end(&mut got_theirs).await.unwrap();
        };
        let b = async {
            ours.write_all(&down).await.unwrap();
            ours.shutdown().await.unwrap();
            ours.read_to_end(&mut got_ours).await.unwrap();
        };
        tokio::join!(a, b);
        (got_theirs, got_ours)
    };
    let (got_theirs, got_ours) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the exchange finished");
    assert!(got_ours == up, "peer -> us bytes differ");
    assert!(got_theirs == down, "us -> peer bytes differ");
    // A packet for a stream `home` does not have is dropped, not bounced back.
    let mut stray = pattern(40, 0);
    stray[..8].copy_from_slice(&[0xff, 0x01, 0x01, 0x00, 99, 0, 0, 0]);
    home.deliver(stray).unwrap();
    drop(sibling);
    let handed = tokio::time::timeout(Duration::from_secs(10), forward)
        .await
        .expect("the forwarder ended")
        .unwrap();
    assert!(handed > 0, "the peer's packets went to the sibling socket");
}

/// A bare reset (`packet::reset`, what a DHT node sends for a connection it cannot run) from
/// any socket ends the peer's stream with ConnectionReset, while it waits for data.
#[tokio::test]
async fn a_bare_reset_from_another_socket_ends_the_stream() {
    let a = UdxSocket::bind(loopback()).await.unwrap();
    let b = UdxSocket::bind(loopback()).await.unwrap();
    let other = UdxSocket::bind(loopback()).await.unwrap();
    let mut sa = a.connect(1, 2, b.local_addr()).unwrap();
    let _sb = b.connect(2, 1, a.local_addr()).unwrap();
    sa.write_all(b"hello").await.unwrap();
    let run = async {
        other
            .send_datagram(&hyperpunch_core::udx::packet::reset(1), a.local_addr())
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        sa.read(&mut buf).await
    };
    let r = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("done in time");
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
}

/// A relayed stream moves, live, to another socket (what hyperdht does when a punch succeeds
/// after a blind relay paired the connection: `changeRemote(punchedSocket, ...)`). Both ends
/// first talk through a forwarder; mid-transfer, with megabytes in flight both ways, our end
/// moves from socket `a` to socket `b` and then the peer to `b`'s address. Packets the peer
/// still sends to `a` (the old path) are handed over to the stream, the handles keep working
/// (they were split for reading and writing before the move), and once both changes completed
/// the forwarder stops: the rest, retransmissions included, can only go between `b` and the
/// peer. Every byte arrives once, in order, both ways, and the close handshake completes.
#[tokio::test]
async fn a_stream_moves_to_another_socket_mid_transfer() {
    let a = UdxSocket::bind(loopback()).await.unwrap();
    let b = UdxSocket::bind(loopback()).await.unwrap();
    let peer = UdxSocket::bind(loopback()).await.unwrap();
    let relay = UdpSocket::bind(loopback()).await.unwrap();
    let via = relay.local_addr().unwrap();
    let (a_addr, b_addr, p_addr) = (a.local_addr(), b.local_addr(), peer.local_addr());
    let relayed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let forward = {
        let relayed = relayed.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let (n, from) = relay.recv_from(&mut buf).await.unwrap();
                let to = if from == a_addr { p_addr } else { a_addr };
                relayed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = relay.send_to(&buf[..n], to).await;
            }
        })
    };
    let ours = a.connect(1, 2, via).unwrap();
    let theirs = peer.connect(2, 1, via).unwrap();
    let ours_traffic = ours.handle();
    let up = pattern(8 << 20, 21);
    let down = pattern(8 << 20, 22);
    let (mut ours_r, mut ours_w) = tokio::io::split(ours);
    let (mut theirs_r, mut theirs_w) = tokio::io::split(theirs);
    let ours_reader = async {
        let mut got = Vec::new();
        ours_r.read_to_end(&mut got).await.unwrap();
        got
    };
    let theirs_reader = async {
        let mut got = Vec::new();
        theirs_r.read_to_end(&mut got).await.unwrap();
        got
    };
    // Each writer writes 2 MiB, then the rest once our end has started moving: the move
    // happens mid-transfer whatever the machine's load.
    let (moving_tx, moving) = tokio::sync::watch::channel(false);
    let ours_writer = async {
        ours_w.write_all(&down[..2 << 20]).await.unwrap();
        let _ = moving.clone().wait_for(|m| *m).await;
        ours_w.write_all(&down[2 << 20..]).await.unwrap();
        ours_w.shutdown().await.unwrap();
    };
    let theirs_writer = async {
        theirs_w.write_all(&up[..2 << 20]).await.unwrap();
        let _ = moving.clone().wait_for(|m| *m).await;
        theirs_w.write_all(&up[2 << 20..]).await.unwrap();
        theirs_w.shutdown().await.unwrap();
    };
    let mover = async {
        while ours_traffic.bytes_read() < 1 << 20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let read_at_move = ours_traffic.bytes_read();
        let moved = a.move_stream(1, &b, 2, p_addr);
        moving_tx.send(true).unwrap();
        moved.await.unwrap();
        // The stream holds its id on `b` now.
        assert_eq!(
            b.connect(1, 9, p_addr).err().map(|e| e.kind()),
            Some(io::ErrorKind::AddrInUse)
        );
        peer.move_stream(2, &peer, 1, b_addr).await.unwrap();
        forward.abort();
        let relayed_at_stop = relayed.load(std::sync::atomic::Ordering::Relaxed);
        (read_at_move, relayed_at_stop)
    };
    let run = async {
        tokio::join!(
            ours_reader,
            theirs_reader,
            ours_writer,
            theirs_writer,
            mover
        )
    };
    let (got_ours, got_theirs, (), (), (read_at_move, relayed_at_stop)) =
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("transfer in time");
    assert!(
        read_at_move < up.len() as u64,
        "the move happened mid-transfer ({read_at_move} bytes read)"
    );
    assert!(
        relayed_at_stop > 0,
        "the stream ran through the relay first"
    );
    assert!(
        got_ours == up,
        "peer -> us: {} of {} bytes, or different ones",
        got_ours.len(),
        up.len()
    );
    assert!(
        got_theirs == down,
        "us -> peer: {} of {} bytes, or different ones",
        got_theirs.len(),
        down.len()
    );
}

/// `next_direct_packet` (which ends a relay connection after a move) fires only for a packet
/// from the stream's remote: anyone who knows the stream id (the relay sees it) must not
/// confirm the path. A stranger's packet is taken (acknowledged to the remote) but confirms
/// nothing; the peer's next packet does.
#[tokio::test]
async fn only_the_streams_remote_confirms_a_direct_path() {
    use hyperpunch_core::udx::packet::{decode, encode, Flags, Header};
    let a = UdxSocket::bind(loopback()).await.unwrap();
    let peer = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let stranger = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let _sa = a.connect(1, 2, peer.local_addr().unwrap()).unwrap();
    let mut direct = a.next_direct_packet(1).unwrap();
    let data = |seq| Header {
        flags: Flags::DATA,
        data_offset: 0,
        id: 1,
        rwnd: 1 << 20,
        seq,
        ack: 0,
    };
    stranger
        .send_to(&encode(&data(0), &[], b"x"), a.local_addr())
        .await
        .unwrap();
    // The stream took it: it acknowledges seq 0 to its remote, the peer.
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(60), peer.recv_from(&mut buf))
            .await
            .expect("the stream never acknowledged the stranger's packet")
            .unwrap();
        if decode(&buf[..n]).is_ok_and(|p| p.header.ack >= 1) {
            break;
        }
    }
    assert!(
        direct.try_recv().is_err(),
        "a stranger's packet confirmed the direct path"
    );
    peer.send_to(&encode(&data(1), &[], b"y"), a.local_addr())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), direct)
        .await
        .expect("the remote's packet did not confirm the path")
        .unwrap();
}
