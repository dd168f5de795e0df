use super::*;

/// What `read_stream` reported: the chunks of each `data` event, then whether it ended.
async fn read_all(messages: Vec<Vec<u8>>) -> (Vec<Vec<Vec<u8>>>, bool) {
    let (tx, rx) = mpsc::channel(messages.len().max(1));
    for m in messages {
        tx.send(Ok(m)).await.unwrap();
    }
    drop(tx);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let (_paused_tx, paused_rx) = watch::channel(false);
    read_stream(7, ConnectionReceiver::from_channel(rx), ev_tx, paused_rx).await;
    let mut data = Vec::new();
    let mut ended = false;
    while let Ok(ev) = ev_rx.try_recv() {
        match ev {
            Ev::Data(7, chunks) => data.push(chunks),
            Ev::End(7) => ended = true,
            _ => panic!("unexpected event"),
        }
    }
    (data, ended)
}

#[tokio::test]
async fn messages_already_received_go_in_one_data_event_up_to_the_batch_size() {
    let block = 100 * 1024;
    let messages: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; block]).collect();
    let (data, ended) = read_all(messages.clone()).await;
    assert!(ended);
    // 3 × 100 KiB reach DATA_BATCH_BYTES (256 KiB): the rest go in the next event.
    assert_eq!(data, vec![messages[..3].to_vec(), messages[3..].to_vec()]);
    // Small messages all go together; one larger than the batch size goes alone.
    let small: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 10]).collect();
    assert_eq!(read_all(small.clone()).await.0, vec![small]);
    let big = vec![vec![1; DATA_BATCH_BYTES + 1], vec![2; 1]];
    assert_eq!(
        read_all(big.clone()).await.0,
        vec![vec![big[0].clone()], vec![big[1].clone()]]
    );
}

/// What `read_raw` reported for BYTES written (all of them before it reads) in pieces of
/// PIECE: the size of each `data` event, whether it ended, and the bytes.
async fn read_raw_all(bytes: usize, piece: usize) -> (Vec<usize>, bool, Vec<u8>) {
    let (mut w, r) = tokio::io::duplex(bytes + 1);
    let sent: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    for p in sent.chunks(piece) {
        w.write_all(p).await.unwrap();
    }
    drop(w);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let (_paused_tx, paused_rx) = watch::channel(false);
    read_raw(7, r, ev_tx, paused_rx).await;
    let (mut sizes, mut ended, mut got) = (Vec::new(), false, Vec::new());
    while let Ok(ev) = ev_rx.try_recv() {
        match ev {
            Ev::Data(7, chunks) => {
                assert!(!ended);
                assert_eq!(chunks.len(), 1);
                sizes.push(chunks[0].len());
                got.extend_from_slice(&chunks[0]);
            }
            Ev::End(7) => ended = true,
            _ => panic!("unexpected event"),
        }
    }
    assert_eq!(got, sent);
    (sizes, ended, got)
}

#[tokio::test]
async fn raw_bytes_already_waiting_go_in_one_data_event_up_to_the_batch_size() {
    // 500 KiB waiting: 256 KiB, then the rest (not one event per 64 KiB read).
    let (sizes, ended, _) = read_raw_all(500 * 1024, 100 * 1024).await;
    assert!(ended);
    assert_eq!(sizes, vec![DATA_BATCH_BYTES, 500 * 1024 - DATA_BATCH_BYTES]);
    // Small writes all go together.
    let (sizes, ended, _) = read_raw_all(500, 10).await;
    assert!(ended);
    assert_eq!(sizes, vec![500]);
}

#[tokio::test]
async fn raw_bytes_arriving_later_go_in_a_later_data_event() {
    let (mut w, r) = tokio::io::duplex(1 << 20);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let (_paused_tx, paused_rx) = watch::channel(false);
    let reader = tokio::spawn(read_raw(7, r, ev_tx, paused_rx));
    w.write_all(&[1; 1000]).await.unwrap();
    match ev_rx.recv().await {
        Some(Ev::Data(7, chunks)) => assert_eq!(chunks, vec![vec![1; 1000]]),
        _ => panic!("expected data"),
    }
    w.write_all(&[2; 10]).await.unwrap();
    drop(w);
    let mut rest = Vec::new();
    let mut ended = false;
    while let Some(ev) = ev_rx.recv().await {
        match ev {
            Ev::Data(7, chunks) => rest.extend(chunks.concat()),
            Ev::End(7) => ended = true,
            _ => panic!("unexpected event"),
        }
    }
    assert!(ended);
    assert_eq!(rest, vec![2; 10]);
    reader.await.unwrap();
}
