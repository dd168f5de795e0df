//! Splicing a byte stream (a TCP or Unix socket, stdin and stdout) with a hyperdht connection,
//! as hyper-cmd-lib-net's `connPiper` and hyperbeam do: each read becomes one message, each
//! message is written out in order; the end of one side's input ends the other side's output
//! (half-close both ways), and an error on either side ends both.

use std::time::Duration;

use hyperpunch::dht::Connection;
use hyperpunch::tele;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a finished splice waits for the peer to acknowledge what was sent.
const DRAIN: Duration = Duration::from_secs(30);

/// What a splice does to the bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Framing {
    /// Bytes as they are (one read, one message).
    #[default]
    Raw,
    /// hypertele `--compress`: each message one gzip member.
    Gzip,
}

/// Which side ended a splice first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both directions ended cleanly.
    Both,
    /// The peer's messages ended and, with `end_with_peer`, our input was not read to its end.
    Peer,
}

/// Copies `input` to the connection and the connection to `output` until both directions
/// ended. With `end_with_peer`, the peer's end also ends our direction (hyperbeam: `beam.on('end',
/// () => beam.end())`) without waiting for `input`'s end. Errors name the side that failed.
pub async fn splice<R, W>(
    conn: Connection,
    mut input: R,
    mut output: W,
    framing: Framing,
    end_with_peer: bool,
) -> Result<Ended, String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = conn.split();
    let (peer_done, mut peer_ended) = tokio::sync::watch::channel(false);
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut cut = false;
        loop {
            let n = tokio::select! {
                r = input.read(&mut buf) => r.map_err(|e| format!("reading: {e}"))?,
                _ = peer_ended.wait_for(|d| *d), if end_with_peer => { cut = true; 0 }
            };
            if n == 0 {
                break;
            }
            let msg = match framing {
                Framing::Raw => buf[..n].to_vec(),
                Framing::Gzip => tele::compress(&buf[..n]),
            };
            tx.send(msg).await.map_err(|e| format!("sending: {e}"))?;
        }
        tx.end().await.map_err(|e| format!("ending: {e}"))?;
        Ok::<_, String>(cut)
    };
    let down = async {
        while let Some(m) = rx.recv().await {
            let m = m.map_err(|e| format!("connection: {e}"))?;
            let bytes = match framing {
                Framing::Raw => m,
                Framing::Gzip => tele::decompress(&m).map_err(|e| e.to_string())?,
            };
            output
                .write_all(&bytes)
                .await
                .map_err(|e| format!("writing: {e}"))?;
            output.flush().await.map_err(|e| format!("writing: {e}"))?;
        }
        let _ = peer_done.send(true);
        // The peer ended: half-close our output (a TCP FIN, or the end of stdout).
        let _ = output.shutdown().await;
        Ok::<_, String>(())
    };
    let (cut, ()) = tokio::try_join!(up, down)?;
    // Everything we sent must reach the peer before the caller exits or drops the socket.
    let _ = tokio::time::timeout(DRAIN, tx.finished()).await;
    Ok(if cut { Ended::Peer } else { Ended::Both })
}
