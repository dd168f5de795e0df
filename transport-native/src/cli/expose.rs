//! A local service under a key pair, shared by the tools that forward one (`tele`, `ssh`): the
//! server side ([`serve`]: announce, admit by an [`Access`] rule, pipe every peer to a fresh
//! connection to the service), the client side ([`dial`] with errors that say what happened,
//! [`forward`] a local port), and hyper-cmd's identity file ([`read_identity`]).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::{ConnectOptions, Connection, Dht, DhtError, ServerOptions};
use hyperpunch::tele::Access;
use serde_json::Value;

use super::peer::{join, parse_key, ToolNet};
use super::pipe::{splice, Framing};
use super::CliError;

/// A local service: a TCP address or a Unix socket.
pub enum Target {
    /// IP and port.
    Tcp(IpAddr, u16),
    /// A socket path.
    Unix(PathBuf),
}

/// Reads a JSON file holding an object (`None`: an empty object).
pub fn read_json_object(path: Option<&Path>) -> Result<Value, CliError> {
    let Some(path) = path else {
        return Ok(Value::Object(Default::default()));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        let hint = if text.contains("PRIVATE KEY-----") {
            " (an SSH private key: an identity file is hyper-cmd's JSON key pair; `hyperpunch \
             ssh` takes an SSH key with --ssh-key)"
        } else {
            ""
        };
        CliError::new(format!("{} is not valid JSON: {e}{hint}", path.display()))
    })?;
    if !v.is_object() {
        return Err(CliError::new(format!(
            "{} must hold a JSON object",
            path.display()
        )));
    }
    Ok(v)
}

/// A string field of a JSON object.
pub fn conf_str(conf: &Value, key: &str) -> Option<String> {
    conf.get(key).and_then(Value::as_str).map(str::to_string)
}

/// hyper-cmd's identity file: `{ "publicKey": HEX, "secretKey": HEX (64 bytes) }`.
pub fn read_identity(path: &Path) -> Result<KeyPair, CliError> {
    let v = read_json_object(Some(path))?;
    let sk = conf_str(&v, "secretKey").unwrap_or_default();
    let mut secret = [0u8; 64];
    hex::decode_to_slice(sk.trim(), &mut secret).map_err(|_| {
        CliError::new(format!(
            "{}: \"secretKey\" must be 128 hex characters",
            path.display()
        ))
    })?;
    let kp = KeyPair::from_secret_key(&secret)
        .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    if let Some(pk) = conf_str(&v, "publicKey") {
        if parse_key("publicKey", &pk)? != kp.public_key {
            return Err(CliError::new(format!(
                "{}: \"publicKey\" does not belong to \"secretKey\"",
                path.display()
            )));
        }
    }
    Ok(kp)
}

/// Announces `kp` and pipes every admitted peer to a new connection to `target`. `announced`
/// runs once the key is announced (it prints the tool's banner). Runs until the node stops.
pub async fn serve(
    kp: KeyPair,
    access: Access,
    target: Target,
    framing: Framing,
    net: &ToolNet,
    announced: impl FnOnce(&KeyPair),
) -> Result<(), CliError> {
    let peer = join(net, None).await?;
    let opts = ServerOptions {
        firewall: Some(Box::new(move |remote, _, _| access.refuses(remote))),
        ..ServerOptions::default()
    };
    let mut server = tokio::time::timeout(net.timeout(), peer.listen(kp.clone(), opts))
        .await
        .map_err(|_| CliError::new("announcing the key timed out"))?
        .map_err(|e| CliError::new(e.to_string()))?;
    announced(&kp);
    let target = Arc::new(target);
    while let Some(conn) = server.accept().await {
        let target = Arc::clone(&target);
        tokio::spawn(async move {
            let who = short(&conn.remote_public_key());
            if let Err(e) = expose(conn, &target, framing).await {
                eprintln!("connection from {who}: {e}");
            }
        });
    }
    Err(CliError::new("the DHT node stopped"))
}

/// One peer's connection to the exposed service.
async fn expose(conn: Connection, target: &Target, framing: Framing) -> Result<(), String> {
    match target {
        Target::Tcp(ip, port) => {
            let s = tokio::net::TcpStream::connect((*ip, *port))
                .await
                .map_err(|e| format!("cannot connect to the service at {ip}:{port}: {e}"))?;
            let _ = s.set_nodelay(true);
            let (r, w) = s.into_split();
            splice(conn, r, w, framing, false).await.map(drop)
        }
        Target::Unix(path) => {
            let s = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| format!("cannot connect to the service at {}: {e}", path.display()))?;
            let (r, w) = s.into_split();
            splice(conn, r, w, framing, false).await.map(drop)
        }
    }
}

/// Connects to the server of `key`, bounded by `--timeout`; the error says what most likely
/// happened (no server under the key, refused by its allow list, no route).
pub async fn dial(
    peer: &Dht,
    key: [u8; 32],
    key_pair: KeyPair,
    net: &ToolNet,
) -> Result<Connection, String> {
    let who = short(&key);
    tokio::time::timeout(
        net.timeout(),
        peer.connect(key, key_pair, ConnectOptions::default()),
    )
    .await
    .map_err(|_| {
        format!(
            "connecting to {who}… timed out after {} s (no route to the server?)",
            net.timeout
        )
    })?
    .map_err(|e| explain(&who, &e))
}

fn explain(who: &str, e: &DhtError) -> String {
    let s = e.to_string();
    if s.starts_with("PEER_NOT_FOUND") {
        format!("{s}: no server announces the key {who}… on this DHT (is the server running, and is the key right?)")
    } else if s.starts_with("PEER_CONNECTION_FAILED") {
        format!(
            "{s}: the server of {who}… did not answer the handshake; most likely it refused \
             this client's public key (its allow list), or it stopped"
        )
    } else {
        format!("connecting to {who}…: {s}")
    }
}

/// Listens on `listen` and forwards every connection to it to the server of `peer_key`,
/// printing `Server ready @ADDRESS` (hypertele's line) once listening. Runs until an accept
/// fails.
pub async fn forward(
    peer_key: [u8; 32],
    key_pair: KeyPair,
    listen: Target,
    framing: Framing,
    net: &ToolNet,
) -> Result<(), CliError> {
    let peer = Arc::new(join(net, None).await?);
    let net = Arc::new(net.clone());
    let pipe = move |s: Piped| {
        let (peer, kp, net) = (Arc::clone(&peer), key_pair.clone(), Arc::clone(&net));
        tokio::spawn(async move {
            let r = async {
                let conn = dial(&peer, peer_key, kp, &net).await?;
                match s {
                    Piped::Tcp(s) => {
                        let (r, w) = s.into_split();
                        splice(conn, r, w, framing, false).await
                    }
                    Piped::Unix(s) => {
                        let (r, w) = s.into_split();
                        splice(conn, r, w, framing, false).await
                    }
                }
            };
            if let Err(e) = r.await {
                eprintln!("error: {e}");
            }
        });
    };
    match listen {
        Target::Tcp(ip, port) => {
            let l = tokio::net::TcpListener::bind((ip, port))
                .await
                .map_err(|e| CliError::new(format!("cannot listen on {ip}:{port}: {e}")))?;
            let a = l
                .local_addr()
                .map_err(|e| CliError::new(format!("cannot listen on {ip}:{port}: {e}")))?;
            println!("Server ready @{}:{}", a.ip(), a.port());
            loop {
                let (s, _) = l
                    .accept()
                    .await
                    .map_err(|e| CliError::new(format!("accepting: {e}")))?;
                let _ = s.set_nodelay(true);
                pipe(Piped::Tcp(s));
            }
        }
        Target::Unix(path) => {
            let l = tokio::net::UnixListener::bind(&path)
                .map_err(|e| CliError::new(format!("cannot listen on {}: {e}", path.display())))?;
            println!("Server ready @{}", path.display());
            loop {
                let (s, _) = l
                    .accept()
                    .await
                    .map_err(|e| CliError::new(format!("accepting: {e}")))?;
                pipe(Piped::Unix(s));
            }
        }
    }
}

/// An accepted local connection.
enum Piped {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// The first 8 bytes of a key, in hex (for messages).
pub fn short(key: &[u8; 32]) -> String {
    hex::encode(&key[..8])
}
