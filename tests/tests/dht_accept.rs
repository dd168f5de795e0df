//! Connections a server's node cannot hand over: a hyperpunch-only testnet on 127.0.0.1, a
//! server that never accepts. The connections past its accept queue are dropped by the node;
//! each is counted in `NodeInfo::incoming_dropped` with its reason, and its client's stream is
//! reset at once (the client's reads end with an error, not after a timeout on silence).

use std::time::Duration;

use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::{ConnectOptions, ServerOptions, ACCEPT_QUEUE};
use hyperpunch_tests::local_dht::{peer, testnet};

/// Generous: the machine running the tests may be busy.
const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_accept_queue_are_counted_and_reset() {
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
    assert_eq!(server_node.info().incoming_dropped, 0);
    // One by one: each is in the server's queue (or dropped) before the next starts.
    let mut conns = Vec::new();
    for i in 0..=ACCEPT_QUEUE {
        let c = tokio::time::timeout(
            T,
            client_node.connect(
                server_kp.public_key,
                KeyPair::from_seed(&[2 + i as u8; 32]),
                ConnectOptions::default(),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("connect {i} in time"))
        .unwrap_or_else(|e| panic!("connect {i}: {e}"));
        // The last one's stream may already be reset when it sends.
        let sent = c.send(format!("hello {i}").into_bytes()).await;
        if i < ACCEPT_QUEUE {
            sent.expect("send");
            assert_eq!(server_node.info().incoming_dropped, 0, "{i} was queued");
        }
        conns.push(c);
    }
    // The last one found the queue full: counted, with why.
    let info = tokio::time::timeout(T, server_node.wait_for(|i| i.incoming_dropped > 0))
        .await
        .expect("the drop is counted in time")
        .unwrap();
    assert_eq!(info.incoming_dropped, 1);
    let why = info.last_incoming_drop.unwrap_or_default();
    assert!(why.contains("accept queue is full"), "{why}");
    // The queued ones are still good: the server accepts them now and reads their messages.
    let mut got = Vec::new();
    for _ in 0..ACCEPT_QUEUE {
        let mut c = tokio::time::timeout(T, server.accept())
            .await
            .expect("accept in time")
            .expect("a queued connection");
        let m = tokio::time::timeout(T, c.recv())
            .await
            .expect("message in time")
            .expect("a message")
            .expect("read");
        let m = String::from_utf8(m).unwrap();
        let i: usize = m.strip_prefix("hello ").unwrap().parse().unwrap();
        got.push(i);
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), ACCEPT_QUEUE, "{got:?}");
    // The one not queued (the last one, unless the machine reordered two arrivals): its
    // client's stream was reset, so its reads end with an error, long before any timeout.
    let dropped = (0..=ACCEPT_QUEUE).find(|i| !got.contains(i)).unwrap();
    let r = tokio::time::timeout(T, conns[dropped].recv())
        .await
        .expect("the dropped connection ends in time");
    assert!(
        matches!(r, Some(Err(_)) | None),
        "the dropped connection ends: {r:?}"
    );
    assert_eq!(server_node.info().incoming_dropped, 1);
}
