//! Helpers of the autobase tests (`tests/tests/autobase_interop.rs` and the chat CLI's
//! `transport-native/tests/chat_cli.rs`): a JS autobase member process
//! (`tests/interop/autobase-chat.js`) and a new hyperpunch reader that fast-forwards over TCP.

use std::io::Write;
use std::process::ChildStdin;
use std::time::Duration;

use hyperpunch::autobase_ff::{read_fast_forward_encrypted, FastForwardPoint};
use hyperpunch::core::corestore::{Corestore, PrimaryKey};
use hyperpunch::core::crypto::KeyPair;
use hyperpunch::core::storage::MemoryStorage;
use hyperpunch::replicate::{replicate, SharedCorestore};
use serde_json::Value;

use crate::node_peer::NodePeer;

/// How long a JS member may take to report the next event.
pub const JS_STEP: Duration = Duration::from_secs(120);

/// A JS autobase member (`node autobase-chat.js <config>`, its stdin piped), killed on drop.
pub struct JsMember {
    peer: NodePeer,
    stdin: ChildStdin,
}

impl JsMember {
    /// Starts a member with `config` (see `tests/interop/autobase-chat.js`).
    pub fn spawn(config: &Value) -> Self {
        let (peer, stdin) = NodePeer::spawn_with_stdin("autobase-chat.js", config)
            .unwrap_or_else(|e| panic!("{e}"));
        JsMember { peer, stdin }
    }

    /// The next event `what` ([`JS_STEP`] at most); a `failed` or `deadline` event fails the
    /// test, with node's stderr.
    pub fn next(&mut self, what: &str) -> Value {
        loop {
            let v = self
                .peer
                .next(JS_STEP)
                .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
            assert!(
                !matches!(v["event"].as_str(), Some("failed" | "deadline")),
                "{v}\n{}",
                self.peer.stderr()
            );
            if v["event"] == what {
                return v;
            }
        }
    }

    /// Sends `command` (one JSON line) to the member.
    pub fn send(&mut self, command: &Value) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }
}

/// A new hyperpunch reader (a corestore in memory) connects to 127.0.0.1:`port` and reads the
/// fast-forward point of the base `bootstrap` (views `views`) from what its indexers signed.
pub async fn fast_forward_over_tcp(
    bootstrap: [u8; 32],
    port: u16,
    views: &[&str],
) -> FastForwardPoint {
    fast_forward_over_tcp_encrypted(bootstrap, None, port, views).await
}

/// [`fast_forward_over_tcp`] of a base encrypted with `encryption_key`.
pub async fn fast_forward_over_tcp_encrypted(
    bootstrap: [u8; 32],
    encryption_key: Option<[u8; 32]>,
    port: u16,
    views: &[&str],
) -> FastForwardPoint {
    let reader = Corestore::open(MemoryStorage::new(), PrimaryKey::Given([0x71; 32]))
        .await
        .unwrap();
    let (reader, _ev) = SharedCorestore::with_events(reader);
    let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let conn = tokio::spawn({
        let reader = reader.clone();
        async move { replicate(socket, true, KeyPair::from_seed(&[0x72; 32]), &reader).await }
    });
    let ff = tokio::time::timeout(
        Duration::from_secs(120),
        read_fast_forward_encrypted(
            &reader,
            bootstrap,
            encryption_key,
            views,
            Duration::from_secs(60),
        ),
    )
    .await
    .expect("read_fast_forward in time")
    .expect("the base's cores are signed");
    conn.abort();
    ff
}
