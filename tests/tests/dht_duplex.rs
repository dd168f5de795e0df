//! A hyperdht connection's message pump must read while its writes wait for room
//! (a hyperpunch-only testnet on 127.0.0.1).
//!
//! The pump carries both directions over one UDX stream. It used to wait for room in the
//! stream's send buffer without reading meanwhile: when both ends of a connection did that at
//! once, neither read, both receive windows stayed full and the connection stalled for good.
//! The NAT lab's relayed-to-direct upgrade cell, where both sides send 4 MiB right after the
//! upgrade, met it in about 1 run of 17 and waited out its 86 s bound (nat_matrix.rs): both
//! sides had over 1 MiB unsent, a zero window from the peer, 4 MiB received and not read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::{ConnectOptions, ServerOptions};
use hyperpunch_core::secretstream::Options as StreamOptions;
use hyperpunch_tests::local_dht::{peer, testnet};

/// Generous: the machine running the tests may be busy.
const T: Duration = Duration::from_secs(60);
const CHUNK: usize = 64 * 1024;

/// The server holds its end raw and never reads it, so the client's writes soon wait for room
/// for good (its messages fill the server's receive window). Once they do, the server sends
/// one message: the client must still get it (the old pump, waiting for room, never read it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_arrives_while_writes_wait_for_room() {
    let (_nodes, boot) = testnet(4).await;
    let server_node = peer(&boot).await;
    let client_node = peer(&boot).await;
    let server_kp = KeyPair::from_seed(&[1; 32]);
    let mut server = tokio::time::timeout(
        T,
        server_node.listen(server_kp.clone(), ServerOptions::default()),
    )
    .await
    .expect("listening in time")
    .expect("listen");
    let client = tokio::time::timeout(
        T,
        client_node.connect(
            server_kp.public_key,
            KeyPair::from_seed(&[2; 32]),
            ConnectOptions::default(),
        ),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    let raw = tokio::time::timeout(T, server.accept_raw())
        .await
        .expect("accept in time")
        .expect("a connection");
    let mut parts = raw
        .into_parts(StreamOptions::default(), 0)
        .expect("secret-stream parts");
    // The server's header, so that the client can read what it sends later.
    while let Some(b) = parts.stream.poll_transmit() {
        parts.udx.write_owned(b).await.expect("server header");
    }
    let (tx, mut rx) = client.split();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    // Far more than the buffers between the two ends hold (a few MiB each way).
    let writer = tokio::spawn(async move {
        for i in 0..1024u32 {
            let mut m = vec![0u8; CHUNK];
            m[..4].copy_from_slice(&i.to_le_bytes());
            if tx.send(m).await.is_err() {
                return;
            }
            counter.fetch_add(CHUNK, Ordering::Relaxed);
        }
    });
    // Until the writes wait for room (no progress for a while; bounded).
    let mut last = 0;
    let mut still = 0;
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sent.load(Ordering::Relaxed);
        if now == last && now > 0 {
            still += 1;
            if still == 20 {
                break;
            }
        } else {
            still = 0;
            last = now;
        }
    }
    assert!(
        still == 20,
        "the client's writes never waited (sent {last} bytes to a server that does not read)"
    );
    assert!(!writer.is_finished(), "the writes are waiting for room");
    parts.stream.write(b"while you wait").expect("server write");
    while let Some(b) = parts.stream.poll_transmit() {
        parts.udx.write_owned(b).await.expect("server message");
    }
    let got = tokio::time::timeout(T, rx.recv())
        .await
        .unwrap_or_else(|_| {
            panic!("the server's message did not arrive while the client's {last} bytes waited")
        })
        .expect("a message")
        .expect("read");
    assert_eq!(got, b"while you wait");
    writer.abort();
}
