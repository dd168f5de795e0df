//! The WebSocket server of `bench/browser-floor.sh`: what a page can receive from a native
//! WebSocket peer on loopback when it does nothing else, the floor under the relay path
//! (issue 14).
//!
//! ```sh
//! bench_ws_floor        # prints `floor ws://127.0.0.1:PORT`, then serves until killed
//! ```
//!
//! Each connection sends one text message `SIZE TOTAL` (bytes); the server answers with
//! TOTAL / SIZE binary messages of SIZE bytes each (one pseudo-random payload, the same every
//! message), as fast as the socket takes them, then waits for the client to close. The
//! WebSocket stack is the relay's (tokio-tungstenite, the relay's configuration, one `send`
//! per message as its session writer does), so the page side measures Chromium and the page,
//! not this server.

// The allocator the `hyperpunch` binary uses (feature `mimalloc`, on by default).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// The largest message a client may ask for (the relay's batches are 256 KiB).
const MAX_SIZE: usize = 16 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("floor ws://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = serve(tcp).await {
                eprintln!("connection: {e}");
            }
        });
    }
}

async fn serve(tcp: TcpStream) -> Result<(), Box<dyn std::error::Error>> {
    tcp.set_nodelay(true)?;
    // As the relay's `ws_config`: a 16 KiB read buffer.
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
    let mut ws = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await?;
    let request = match ws.next().await {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => return Err(format!("expected `SIZE TOTAL`, got {other:?}").into()),
    };
    let mut words = request.split_whitespace().map(str::parse::<usize>);
    let (Some(Ok(size)), Some(Ok(total))) = (words.next(), words.next()) else {
        return Err(format!("expected `SIZE TOTAL`, got {request:?}").into());
    };
    if size == 0 || size > MAX_SIZE {
        return Err(format!("size {size} out of 1..={MAX_SIZE}").into());
    }
    // xorshift64: incompressible enough, no RNG crate needed.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let payload: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let payload = Bytes::from(payload);
    for _ in 0..total / size {
        ws.send(Message::Binary(payload.clone())).await?;
    }
    while let Some(m) = ws.next().await {
        if matches!(m?, Message::Close(_)) {
            break;
        }
    }
    Ok(())
}
