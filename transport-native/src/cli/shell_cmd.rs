//! `hyperpunch shell keygen | server | exec | connect | copy`: hypershell 0.0.15 (the
//! `hypershell-keygen`, `hypershell-server`, `hypershell` and `hypershell-copy` tools), wire-
//! compatible with them both ways. The wire is [`hyperpunch::core::shell`]'s; the PTY, the
//! local terminal and the file copies are [`hyperpunch::shell`]'s; this file joins them to a
//! DHT connection.
//!
//! (About 1,400 lines: the argument definitions and `--help` texts of five commands, each
//! command's driver beside them.)

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clap::Subcommand;
use hyperpunch::core::id_encoding;
use hyperpunch::core::protomux::{ChannelId, Protomux};
use hyperpunch::core::shell::{
    parse_key_file, AllowList, ClientEvent, Download, DownloadHeader, Kind, LocalForward,
    PortRange, RemoteError, Resize, ServerEvent, ShellClient, ShellServer, Spawn, TunnelPolicy,
    Upload,
};
use hyperpunch::crypto::KeyPair;
use hyperpunch::dht::{ConnectOptions, Connection, ConnectionSender, ServerOptions, StreamHost};
use hyperpunch::shell::{self as native, Extractor, Pty};
use tokio::sync::mpsc;

use super::peer::{join, random_seed, runtime, ToolNet};
use super::CliError;

/// `hyperpunch shell --help`.
pub const SHELL_LONG: &str = "\
Shells, commands and file copies on a machine reached by its public key (as hypershell): end-
to-end encrypted, holepunched through NATs, and only for the client keys the server lists.
Works with JS hypershell on either side (hypershell-server, hypershell, hypershell-copy).

  hyperpunch shell keygen                       # a key pair: ~/.hypershell/peer (mode 0600)
  hyperpunch shell server                       # prints its key; admits ~/.hypershell/authorized_peers
  hyperpunch shell connect KEY                  # an interactive shell on the server
  hyperpunch shell exec KEY -- uname -a         # one command; its exit code is ours
  hyperpunch shell copy ./notes.txt KEY:/tmp/notes.txt    # upload (files or folders)
  hyperpunch shell copy KEY:/var/log/app ./app-logs       # download
  hyperpunch shell connect KEY -L 127.0.0.1:8080:localhost:80   # a local port forwarded

Keys are 52 z-base-32 characters (as hypershell prints them) or 64 hex, or names given to
them in ~/.hypershell/known_peers (`NAME KEY` per line). Every command takes
--bootstrap (or HYPERPUNCH_BOOTSTRAP). Exit codes: exec and connect exit with the remote
command's code, or 255 (as ssh) when it could not run: no connection (refused by the server's
allow list: `PEER_CONNECTION_FAILED`; no server for the key: `PEER_NOT_FOUND`; a timeout), or
the server failed. copy and keygen exit 1 on failure; bad arguments exit 2.";

/// Exit status of `exec` / `connect` when the command could not be run (no connection, refused,
/// the server failed): 255, as ssh.
pub const EXIT_NO_SESSION: i32 = 255;

/// Where hypershell keeps its files (`~/.hypershell`).
fn shell_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".hypershell")
}

fn default_key() -> PathBuf {
    shell_dir().join("peer")
}

/// `hyperpunch shell ...`
#[derive(Debug, Subcommand)]
pub enum ShellCommand {
    /// Make a key pair and keep its seed in a file readable by you only.
    #[command(long_about = "\
Make a key pair (ed25519, as hypershell-keygen) and write its seed to FILE (default
~/.hypershell/peer) with mode 0600, refusing to overwrite one. Prints the public key: put it in a
server's authorized_peers to be let in, or give it to clients to connect to your server.")]
    Keygen {
        /// The key file.
        #[arg(short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Serve shells, commands and copies to the listed client keys.
    #[command(long_about = "\
Announce this machine's key pair (-f, made if missing) on the DHT and serve shells, commands
and file copies to clients whose public keys are listed in the allow list (--firewall, default
~/.hypershell/authorized_peers: one key per line, `#` comments; created empty if missing and
re-read whenever it changes). Any other client is refused by the DHT firewall during the
handshake, before anything runs. Commands run in a pseudo-terminal in your home folder, with
your environment, as JS hypershell-server does ($SHELL, else bash, when no command is given).

Tunnels (`connect -L`): as JS hypershell-server, by default an admitted client may have this
machine open TCP connections to ANY host and port it can reach (its own localhost services
included). Restrict the targets with --tunnel-host and --tunnel-port (a target must match
both lists given; hosts compare as the client wrote them: `localhost` is not `127.0.0.1`), or
turn tunnels off with --protocol shell upload download. A refused target's tunnel is closed
at once and logged (`Tunnel refused: HOST:PORT`).

Examples:
  hyperpunch shell server --bootstrap 127.0.0.1:49737
  # prints: hyperpunch shell connect <KEY>
  hyperpunch shell server --tunnel-host 127.0.0.1 --tunnel-port 5432 8000-8099")]
    Server {
        /// The server's key file.
        #[arg(short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
        /// The allow list of client public keys.
        #[arg(long, value_name = "FILE")]
        firewall: Option<PathBuf>,
        /// Admit everyone (no allow list).
        #[arg(long)]
        disable_firewall: bool,
        /// Serve only these protocols: shell, upload, download, tunnel (default all four).
        #[arg(long, value_name = "NAME", num_args = 1..)]
        protocol: Vec<String>,
        /// Tunnel only to these hosts (exactly as clients name them; default any host).
        #[arg(long, value_name = "ADDRESS", num_args = 1..)]
        tunnel_host: Vec<String>,
        /// Tunnel only to these ports or ranges, e.g. 22 8000-8099 (default any port).
        #[arg(long, value_name = "PORT", num_args = 1..)]
        tunnel_port: Vec<String>,
        #[command(flatten)]
        net: ToolNet,
    },
    /// Run one command on a server; exit with its exit code.
    #[command(long_about = "\
Run CMD ARGS on the server of KEY in a pseudo-terminal (as `hypershell KEY -- CMD ARGS`): what it
prints comes to stdout (with the terminal's CRLF line ends), what you type goes to it, and this
command exits with its exit code. Without CMD, the server's shell (see `connect`).

Example:
  hyperpunch shell exec $KEY -- ls -la /")]
    Exec {
        /// The server's public key.
        key: String,
        /// The command and its arguments (after --).
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
        /// The client's key file (the key the server's allow list names).
        #[arg(short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        net: ToolNet,
    },
    /// An interactive shell on a server, or local ports forwarded through it (-L).
    #[command(long_about = "\
Open the server's shell in a pseudo-terminal: your terminal is in raw mode (Ctrl-C goes to the
remote side) and window size changes follow. The session ends when the remote shell exits;
this command exits with its code.

With -L [ADDRESS:]PORT:HOST:HOSTPORT (repeatable; as `hypershell KEY -L ...`) no shell opens:
each -L listens on ADDRESS:PORT (ADDRESS defaults to 0.0.0.0, every interface, as JS; PORT 0
picks a free one) and prints `Tunnel on TCP ADDRESS:PORT` once the server accepted the
tunnel; every TCP connection made there is carried, end-to-end encrypted, to the server,
which connects it to HOST:HOSTPORT (HOST as the server resolves it: `localhost` is the
server). Runs until Ctrl-C. A server that restricts targets (--tunnel-host, --tunnel-port)
and does not allow HOST:HOSTPORT closes the tunnel: this command then says so and exits 255,
as it does when the server cannot be reached or does not serve tunnels.

Example (the server's PostgreSQL on local port 15432):
  hyperpunch shell connect $KEY -L 127.0.0.1:15432:localhost:5432")]
    Connect {
        /// The server's public key.
        key: String,
        /// The client's key file.
        #[arg(short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
        /// Forward local [ADDRESS:]PORT to HOST:HOSTPORT as the server reaches it.
        #[arg(short = 'L', value_name = "[ADDRESS:]PORT:HOST:HOSTPORT")]
        forward: Vec<String>,
        #[command(flatten)]
        net: ToolNet,
    },
    /// Copy a file or folder to or from a server.
    #[command(long_about = "\
Copy SOURCE to TARGET, one of them on the server as KEY:PATH or @NAME:PATH (a name of
~/.hypershell/known_peers: `NAME KEY` lines), as hypershell-copy. A file
becomes TARGET; a folder is copied into TARGET. Every file is written to a temporary file next
to its destination and renamed into place when complete, so a copy cut short leaves no half-
written file under its name.

Examples:
  hyperpunch shell copy ./site $KEY:/srv/site
  hyperpunch shell copy $KEY:/etc/hostname ./hostname")]
    Copy {
        /// What to copy (a local path or KEY:PATH).
        source: String,
        /// Where to (a local path or KEY:PATH).
        target: String,
        /// The client's key file.
        #[arg(short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        net: ToolNet,
    },
}

/// Runs one command.
pub fn run(c: ShellCommand) -> Result<(), CliError> {
    match c {
        ShellCommand::Keygen { file } => keygen(&file.unwrap_or_else(default_key)).map(|_| ()),
        ShellCommand::Server {
            file,
            firewall,
            disable_firewall,
            protocol,
            tunnel_host,
            tunnel_port,
            net,
        } => {
            let mut serve = Vec::new();
            for p in &protocol {
                serve.push(match p.as_str() {
                    "shell" => Kind::Shell,
                    "upload" => Kind::Upload,
                    "download" => Kind::Download,
                    "tunnel" => Kind::Tunnel,
                    other => {
                        return Err(CliError::new(format!(
                            "--protocol {other}: not one of shell, upload, download, tunnel"
                        )))
                    }
                });
            }
            // JS prints its connect hint only when --protocol is not given.
            let restricted = !serve.is_empty();
            if serve.is_empty() {
                serve = vec![Kind::Shell, Kind::Upload, Kind::Download, Kind::Tunnel];
            }
            let ports = tunnel_port
                .iter()
                .map(|p| PortRange::parse(p).map_err(|e| CliError::new(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            let policy = TunnelPolicy {
                hosts: (!tunnel_host.is_empty()).then_some(tunnel_host),
                ports: (!ports.is_empty()).then_some(ports),
            };
            let kp = load_key(&file.unwrap_or_else(default_key))?;
            let firewall = (!disable_firewall)
                .then(|| firewall.unwrap_or_else(|| shell_dir().join("authorized_peers")));
            let rt = runtime()?;
            let r = rt.block_on(server(kp, firewall, serve, restricted, policy, net));
            rt.shutdown_background();
            r
        }
        ShellCommand::Exec {
            key,
            command,
            file,
            net,
        } => {
            let spawn = Spawn {
                command: command.first().cloned().unwrap_or_default(),
                args: command.iter().skip(1).cloned().collect(),
                width: 0,
                height: 0,
            };
            session(&key, file, net, spawn)
        }
        ShellCommand::Connect {
            key,
            file,
            forward,
            net,
        } if !forward.is_empty() => {
            let forwards = forward
                .iter()
                .map(|f| LocalForward::parse(f).map_err(|e| CliError::new(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            let server_key = parse_server_key(&key)?;
            let kp = load_key(&file.unwrap_or_else(default_key))?;
            let rt = runtime()?;
            let r = rt.block_on(tunnels(server_key, kp, forwards, net));
            rt.shutdown_background();
            r.map_err(|mut e| {
                e.code = EXIT_NO_SESSION;
                e
            })
        }
        ShellCommand::Connect { key, file, net, .. } => session(&key, file, net, Spawn::default()),
        ShellCommand::Copy {
            source,
            target,
            file,
            net,
        } => {
            let (remote_key, op) = match (remote_path(&source), remote_path(&target)) {
                (Some((k, p)), _) => (k, Op::Download { source: p, target }),
                (None, Some((k, p))) => (k, Op::Upload { source, target: p }),
                (None, None) => {
                    return Err(CliError::new(
                        "one of SOURCE and TARGET must be on the server: KEY:PATH",
                    ))
                }
            };
            let server_key = parse_server_key(&remote_key)?;
            let kp = load_key(&file.unwrap_or_else(default_key))?;
            let rt = runtime()?;
            let r = rt.block_on(copy(server_key, kp, op, net));
            rt.shutdown_background();
            r
        }
    }
}

/// A server's key, or its name in ~/.hypershell/known_peers (`NAME KEY` lines).
fn parse_server_key(s: &str) -> Result<[u8; 32], CliError> {
    let known = std::fs::read_to_string(shell_dir().join("known_peers")).unwrap_or_default();
    hyperpunch::core::shell::resolve_peer(s, &known).map_err(|_| {
        CliError::new(format!(
            "unknown server {s:?}: not a key (52 z-base-32 or 64 hex characters) nor a name in \
             ~/.hypershell/known_peers"
        ))
    })
}

/// `KEY:PATH` (hypershell-copy's `publicKeyExpr`: 64 hex or 52 z32 characters then `:`), or
/// `@NAME:PATH` (a name of known_peers).
fn remote_path(s: &str) -> Option<(String, String)> {
    let (k, p) = s.split_once(':')?;
    if let Some(name) = k.strip_prefix('@') {
        return (!name.is_empty() && !p.is_empty()).then(|| (name.to_string(), p.to_string()));
    }
    let z32 = "ybndrfg8ejkmcpqxot1uwisza345h769";
    let ok = (k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()))
        || (k.len() == 52
            && k.bytes()
                .all(|b| z32.contains(b.to_ascii_lowercase() as char)));
    (ok && !p.is_empty()).then(|| (k.to_string(), p.to_string()))
}

/// Writes a new key file (0600) and prints the public key.
fn keygen(file: &Path) -> Result<KeyPair, CliError> {
    eprintln!("Generating key.");
    if file.exists() {
        return Err(CliError::new(format!("{} already exists.", file.display())));
    }
    if let Some(d) = file.parent() {
        std::fs::create_dir_all(d)
            .map_err(|e| CliError::new(format!("cannot create {}: {e}", d.display())))?;
    }
    let seed = random_seed()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| CliError::new(format!("cannot create {}: {e}", file.display())))?;
    f.write_all(hyperpunch::core::shell::key_file(&seed).as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", file.display())))?;
    let kp = KeyPair::from_seed(&seed);
    eprintln!("Your key has been saved in {}", file.display());
    eprintln!("The public key is:");
    println!("{}", id_encoding::encode(&kp.public_key));
    Ok(kp)
}

/// The key pair of a key file, made first if missing (as the JS tools do).
fn load_key(file: &Path) -> Result<KeyPair, CliError> {
    if !file.exists() {
        return keygen(file);
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::new(format!("cannot read the key file {}: {e}", file.display())))?;
    let seed = parse_key_file(&text).ok_or_else(|| {
        CliError::new(format!(
            "{} is not a key file (one z-base-32 seed, as `shell keygen` writes)",
            file.display()
        ))
    })?;
    Ok(KeyPair::from_seed(&seed))
}

async fn flush(mux: &mut Protomux, tx: &ConnectionSender) -> bool {
    while let Some(f) = mux.poll_transmit() {
        if tx.send(f).await.is_err() {
            return false;
        }
    }
    true
}

fn read_allow_list(file: &Path) -> Result<AllowList, String> {
    if !file.exists() {
        eprintln!("Notice: creating default firewall {}", file.display());
        if let Some(d) = file.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let _ = std::fs::write(file, "# <public key>\n");
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    AllowList::parse(&text).map_err(|e| format!("{}: {e}", file.display()))
}

async fn server(
    kp: KeyPair,
    firewall: Option<PathBuf>,
    serve: Vec<Kind>,
    restricted: bool,
    policy: TunnelPolicy,
    net: ToolNet,
) -> Result<(), CliError> {
    let allowed = Arc::new(RwLock::new(match &firewall {
        None => AllowList::Anyone,
        Some(f) => read_allow_list(f).map_err(CliError::new)?,
    }));
    if let Some(file) = firewall.clone() {
        // Re-read the list when it changes (JS read-file-live).
        let allowed = allowed.clone();
        tokio::spawn(async move {
            let stamp = |f: &Path| {
                std::fs::metadata(f)
                    .ok()
                    .map(|m| (m.modified().ok(), m.len()))
            };
            let mut last = (stamp(&file), std::fs::read(&file).ok());
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let now = (stamp(&file), std::fs::read(&file).ok());
                if now == last {
                    continue;
                }
                last = now;
                match read_allow_list(&file) {
                    Ok(l) => {
                        if let Ok(mut w) = allowed.write() {
                            *w = l;
                        }
                        println!("Firewall reloaded: {}", file.display());
                    }
                    Err(e) => eprintln!("Firewall not reloaded ({e}); the previous list stays"),
                }
            }
        });
    }
    let peer = join(&net, None).await?;
    let check = allowed.clone();
    let opts = ServerOptions {
        firewall: Some(Box::new(move |remote, _, _| {
            let refuse = check.read().map(|l| l.refuses(remote)).unwrap_or(true);
            if refuse {
                println!("Firewall denied: {}", id_encoding::encode(remote));
            } else {
                println!("Firewall allowed: {}", id_encoding::encode(remote));
            }
            refuse
        })),
        ..ServerOptions::default()
    };
    let public_key = kp.public_key;
    let mut srv = tokio::time::timeout(net.timeout(), peer.listen(kp, opts))
        .await
        .map_err(|_| CliError::new("announcing timed out"))?
        .map_err(|e| CliError::new(e.to_string()))?;
    if !restricted {
        println!("To connect to this shell, on another computer run:");
        println!(
            "hyperpunch shell connect {}",
            id_encoding::encode(&public_key)
        );
    } else {
        println!("Running server with restricted protocols");
        println!("Server key: {}", id_encoding::encode(&public_key));
    }
    println!();
    while let Some(conn) = srv.accept().await {
        let serve = serve.clone();
        let policy = policy.clone();
        tokio::spawn(async move {
            let who = id_encoding::encode(&conn.remote_public_key());
            if let Err(e) = serve_connection(conn, serve, policy).await {
                eprintln!("Connection {who}: {e}");
            }
            println!("Connection closed {who}");
        });
    }
    Ok(())
}

/// Bounds what a producer thread (a PTY's output, a download) queues ahead of the connection:
/// each chunk takes a credit, the connection's loop gives it back once the chunk was sent.
#[derive(Clone)]
struct Credit(Arc<tokio::sync::Semaphore>, tokio::runtime::Handle);

/// Chunks a producer may have queued at once.
const CREDITS: usize = 16;

impl Credit {
    fn new() -> Credit {
        Credit(
            Arc::new(tokio::sync::Semaphore::new(CREDITS)),
            tokio::runtime::Handle::current(),
        )
    }
    /// Waits for a credit (from a blocking thread); `false` once the loop is gone.
    fn take(&self, to: &mpsc::UnboundedSender<Local>) -> bool {
        self.1.block_on(async {
            tokio::select! {
                p = self.0.acquire() => p.map(|p| p.forget()).is_ok(),
                _ = to.closed() => false,
            }
        })
    }
    fn give(&self) {
        self.0.add_permits(1);
    }
}

/// What the server's own tasks report to a connection's loop.
enum Local {
    Output(ChannelId, Vec<u8>, Credit),
    Exited(ChannelId, u64),
    SpawnFailed(ChannelId, String),
    Header(ChannelId, bool),
    Data(ChannelId, Vec<u8>, Credit),
    Failed(ChannelId, RemoteError),
}

fn remote_error(e: &std::io::Error, path: &str) -> RemoteError {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => "ENOENT",
        std::io::ErrorKind::PermissionDenied => "EACCES",
        _ => "EIO",
    };
    RemoteError {
        code: code.into(),
        path: path.into(),
        message: format!("{code}: {e}, '{path}'"),
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Starts a PTY for a channel: its output, then its exit code, go to `local`. Returns the
/// writer and the pid.
fn start_pty(
    ch: ChannelId,
    spawn: &Spawn,
    local: mpsc::UnboundedSender<Local>,
) -> Result<(std::sync::mpsc::Sender<PtyInput>, u32), String> {
    let command = if spawn.command.is_empty() {
        std::env::var("SHELL").unwrap_or_else(|_| "bash".into())
    } else {
        spawn.command.clone()
    };
    let (w, h) = (
        if spawn.width == 0 { 80 } else { spawn.width },
        if spawn.height == 0 { 24 } else { spawn.height },
    );
    let pty = Pty::spawn(&command, &spawn.args, w, h, &home())
        .map_err(|e| format!("Error: spawn {command} {e}"))?;
    let pid = pty.pid();
    let mut reader = pty.reader().map_err(|e| e.to_string())?;
    let mut writer = pty.writer().map_err(|e| e.to_string())?;
    let (in_tx, in_rx) = std::sync::mpsc::channel::<PtyInput>();
    std::thread::spawn(move || {
        while let Ok(i) = in_rx.recv() {
            let r = match i {
                PtyInput::Data(d) => writer.write_all(&d),
                PtyInput::Resize(w, h) => writer.resize(w, h),
            };
            if r.is_err() {
                break;
            }
        }
    });
    let (out_done_tx, out_done) = std::sync::mpsc::channel::<()>();
    let l2 = local.clone();
    let credit = Credit::new();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0
                || !credit.take(&l2)
                || l2
                    .send(Local::Output(ch, buf[..n].to_vec(), credit.clone()))
                    .is_err()
            {
                break;
            }
        }
        let _ = out_done_tx.send(());
    });
    std::thread::spawn(move || {
        let code = pty.wait().map(native::exit_code).unwrap_or(1);
        // What the process printed comes before its exit code; a background process that
        // keeps the terminal open does not hold the exit code back for long.
        let _ = out_done.recv_timeout(Duration::from_secs(2));
        let _ = local.send(Local::Exited(ch, code));
    });
    Ok((in_tx, pid))
}

enum PtyInput {
    Data(Vec<u8>),
    Resize(u64, u64),
}

async fn serve_connection(
    conn: Connection,
    serve: Vec<Kind>,
    policy: TunnelPolicy,
) -> Result<(), String> {
    let host = conn.stream_host();
    let (tx, mut rx) = conn.split();
    let mut mux = Protomux::new();
    let mut server = ShellServer::new(&mut mux, &serve).with_tunnel_policy(policy);
    // Each tunnel's forwarded connections, aborted when the tunnel closes.
    let mut tunnels: HashMap<ChannelId, Vec<tokio::task::JoinHandle<()>>> = HashMap::new();
    let (local_tx, mut local) = mpsc::unbounded_channel::<Local>();
    let mut ptys: HashMap<ChannelId, (std::sync::mpsc::Sender<PtyInput>, u32)> = HashMap::new();
    let mut uploads: HashMap<ChannelId, Extractor> = HashMap::new();
    let mut downloads: HashMap<ChannelId, tokio::task::JoinHandle<()>> = HashMap::new();
    // Credits of the chunks handed to the mux since the last flush.
    let mut sent: Vec<Credit> = Vec::new();
    let result = loop {
        tokio::select! {
            f = rx.recv() => match f {
                Some(Ok(f)) => {
                    if let Err(e) = mux.handle_frame(&f) {
                        break Err(e.to_string());
                    }
                }
                Some(Err(e)) => break Err(e.to_string()),
                None => break Ok(()),
            },
            Some(l) = local.recv() => {
                let r = match l {
                    Local::Output(ch, d, credit) => {
                        sent.push(credit);
                        server.stdout(&mut mux, ch, &d)
                    }
                    Local::Exited(ch, code) => {
                        ptys.remove(&ch);
                        server
                            .exit_code(&mut mux, ch, code)
                            .and_then(|_| server.close(&mut mux, ch))
                    }
                    Local::SpawnFailed(ch, msg) => server
                        .exit_code(&mut mux, ch, 1)
                        .and_then(|_| server.stderr(&mut mux, ch, format!("{msg}\n").as_bytes()))
                        .and_then(|_| server.close(&mut mux, ch)),
                    Local::Header(ch, is_directory) => {
                        server.download_header(&mut mux, ch, DownloadHeader { is_directory })
                    }
                    Local::Data(ch, d, credit) => {
                        sent.push(credit);
                        server.data(&mut mux, ch, &d)
                    }
                    Local::Failed(ch, e) => server
                        .error(&mut mux, ch, &e)
                        .and_then(|_| server.close(&mut mux, ch)),
                };
                // A channel closed meanwhile: its late output is dropped.
                let _ = r;
            }
        }
        let mut failed = None;
        while let Some(e) = mux.poll_event() {
            let ev = match server.handle_event(&mut mux, e) {
                Ok(Some(ev)) => ev,
                Ok(None) => continue,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            };
            match ev {
                ServerEvent::Spawn { channel, spawn } => {
                    match start_pty(channel, &spawn, local_tx.clone()) {
                        Ok(p) => {
                            ptys.insert(channel, p);
                        }
                        Err(msg) => {
                            let _ = local_tx.send(Local::SpawnFailed(channel, msg));
                        }
                    }
                }
                ServerEvent::Stdin { channel, data } => {
                    if let Some((w, _)) = ptys.get(&channel) {
                        let _ = w.send(PtyInput::Data(data));
                    }
                }
                ServerEvent::Resize { channel, size } => {
                    if let Some((w, _)) = ptys.get(&channel) {
                        let _ = w.send(PtyInput::Resize(size.width, size.height));
                    }
                }
                ServerEvent::Upload { channel, upload } => {
                    let target = PathBuf::from(&upload.target);
                    let x = if upload.is_directory {
                        Extractor::new(&target, None)
                    } else {
                        let dir = target.parent().map(Path::to_path_buf).unwrap_or_default();
                        let name = target
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        Extractor::new(&dir, Some(name))
                    };
                    uploads.insert(channel, x);
                }
                ServerEvent::UploadData { channel, data } => {
                    let Some(x) = uploads.get_mut(&channel) else {
                        continue;
                    };
                    let r = if data.is_empty() {
                        let x = uploads.remove(&channel).expect("present");
                        x.finish().map(|_| true)
                    } else {
                        x.push(&data).map(|_| false)
                    };
                    match r {
                        Ok(true) => {
                            let _ = server.close(&mut mux, channel);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            uploads.remove(&channel);
                            let _ = local_tx.send(Local::Failed(channel, remote_error(&e, "")));
                        }
                    }
                }
                ServerEvent::Download { channel, download } => {
                    let local = local_tx.clone();
                    let task = tokio::task::spawn_blocking(move || {
                        send_path(channel, &download.source, local)
                    });
                    downloads.insert(
                        channel,
                        tokio::spawn(async move {
                            let _ = task.await;
                        }),
                    );
                }
                ServerEvent::TunnelOpened { channel, .. } => {
                    tunnels.insert(channel, Vec::new());
                }
                ServerEvent::TunnelRefused { target, .. } => match target {
                    Some(t) => {
                        println!("Tunnel refused: {t} (not allowed by --tunnel-host/--tunnel-port)")
                    }
                    None => println!("Tunnel refused: the client named no host and port"),
                },
                ServerEvent::TunnelConnect {
                    channel,
                    client_id,
                    target,
                } => {
                    // hypershell's LocalTunnelServer.onstreamid: our stream's id to the client,
                    // the stream beside the connection, secret-stream as initiator, TCP out.
                    let Some(host) = &host else {
                        // A relayed connection has no path for more streams.
                        let _ = server.close(&mut mux, channel);
                        continue;
                    };
                    let reserved = match host.reserve() {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("Tunnel to {target}: {e}");
                            continue;
                        }
                    };
                    let server_id = reserved.id();
                    if server
                        .tunnel_stream(&mut mux, channel, client_id, server_id)
                        .is_err()
                    {
                        continue;
                    }
                    let host = host.clone();
                    let task = tokio::spawn(async move {
                        let stream = match host.open_secret(reserved, client_id, true).await {
                            Ok(s) => s,
                            Err(e) => {
                                eprintln!("Tunnel to {target}: {e}");
                                return;
                            }
                        };
                        match tokio::net::TcpStream::connect((target.host.as_str(), target.port))
                            .await
                        {
                            Ok(tcp) => {
                                if let Err(e) = native::bridge_tcp(tcp, stream).await {
                                    eprintln!("Tunnel to {target}: {e}");
                                }
                            }
                            // Dropping the stream ends it: the client's TCP connection closes.
                            Err(e) => eprintln!("Tunnel to {target}: {e}"),
                        }
                    });
                    let list = tunnels.entry(channel).or_default();
                    list.retain(|t| !t.is_finished());
                    list.push(task);
                }
                ServerEvent::Closed {
                    kind: Kind::Tunnel,
                    channel,
                } => {
                    for t in tunnels.remove(&channel).unwrap_or_default() {
                        t.abort();
                    }
                }
                ServerEvent::Closed { channel, kind } => match kind {
                    Kind::Shell => {
                        if let Some((_, pid)) = ptys.remove(&channel) {
                            native::kill(pid);
                        }
                    }
                    Kind::Upload => {
                        // Dropping it removes a partial file's temporary.
                        uploads.remove(&channel);
                    }
                    Kind::Download => {
                        if let Some(t) = downloads.remove(&channel) {
                            t.abort();
                        }
                    }
                    Kind::Tunnel => {}
                },
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
        if !flush(&mut mux, &tx).await {
            break Ok(());
        }
        for c in sent.drain(..) {
            c.give();
        }
    };
    for (_, (_, pid)) in ptys.drain() {
        native::kill(pid);
    }
    for (_, list) in tunnels.drain() {
        for t in list {
            t.abort();
        }
    }
    // The peer ended (or failed): end ours (JS `socket.on('end', () => socket.end())`).
    let _ = tx.end().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), tx.finished()).await;
    result
}

/// A download on the server: the header, the tar chunks, the empty end; or an error.
fn send_path(ch: ChannelId, source: &str, local: mpsc::UnboundedSender<Local>) {
    let path = Path::new(source);
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            let _ = local.send(Local::Failed(ch, remote_error(&e, source)));
            return;
        }
    };
    let _ = local.send(Local::Header(ch, meta.is_dir()));
    let credit = Credit::new();
    let r = native::pack(path, |chunk| {
        credit.take(&local) && local.send(Local::Data(ch, chunk, credit.clone())).is_ok()
    });
    match r {
        Ok(()) => {
            let _ = local.send(Local::Data(ch, Vec::new(), credit));
        }
        Err(e) => {
            let _ = local.send(Local::Failed(ch, remote_error(&e, source)));
        }
    }
}

/// Connects to the server of `key` with the key file's pair.
async fn dial(
    server_key: [u8; 32],
    kp: KeyPair,
    net: &ToolNet,
) -> Result<(hyperpunch::dht::Dht, Connection), CliError> {
    let peer = join(net, None).await?;
    let conn = dial_on(&peer, server_key, kp, net).await?;
    Ok((peer, conn))
}

/// Connects to the server of `key` from a node we already run.
async fn dial_on(
    peer: &hyperpunch::dht::Dht,
    server_key: [u8; 32],
    kp: KeyPair,
    net: &ToolNet,
) -> Result<Connection, CliError> {
    let conn = tokio::time::timeout(
        net.timeout(),
        peer.connect(server_key, kp, ConnectOptions::default()),
    )
    .await
    .map_err(|_| CliError::new("connecting timed out (no route to the server?)"))?
    .map_err(|e| {
        let s = e.to_string();
        if s.contains("PEER_CONNECTION_FAILED") {
            CliError::new(format!(
                "{s} (probably refused by the server's allow list: add your public key to its \
                 authorized_peers)"
            ))
        } else if s.contains("PEER_NOT_FOUND") {
            CliError::new(format!("{s} (no server announces this key)"))
        } else {
            CliError::new(s)
        }
    })?;
    Ok(conn)
}

/// `connect -L ...`: every forward listens, connects to the server (one connection each, as
/// JS) and opens its tunnel; runs until Ctrl-C or until one fails.
async fn tunnels(
    server_key: [u8; 32],
    kp: KeyPair,
    forwards: Vec<LocalForward>,
    net: ToolNet,
) -> Result<(), CliError> {
    let peer = join(&net, None).await?;
    let mut running = tokio::task::JoinSet::new();
    for f in forwards {
        let listener = tokio::net::TcpListener::bind((f.local_host.as_str(), f.local_port))
            .await
            .map_err(|e| {
                CliError::new(format!(
                    "cannot listen on {}:{}: {e}",
                    f.local_host, f.local_port
                ))
            })?;
        let conn = dial_on(&peer, server_key, kp.clone(), &net).await?;
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        running.spawn(tunnel(conn, f.clone(), listener, ready_tx));
        // In the order given, each once the server took it (JS prints once listening).
        tokio::select! {
            r = ready => if let Ok(addr) = r {
                let host = match addr.ip() {
                    ip if ip.is_unspecified() => "localhost".to_string(),
                    ip => ip.to_string(),
                };
                println!("Tunnel on TCP {host}:{}", addr.port());
            },
            Some(r) = running.join_next() => {
                return match r {
                    Ok(r) => r,
                    Err(e) => Err(CliError::new(e.to_string())),
                };
            }
        }
    }
    let _ = std::io::stdout().flush();
    // Until Ctrl-C (the default SIGINT ends the process), or a tunnel fails.
    match running.join_next().await {
        Some(Ok(Ok(()))) | None => Err(CliError::new("the connection to the server closed")),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(CliError::new(e.to_string())),
    }
}

/// One `-L`: the tunnel channel on `conn`; each accepted TCP connection gets a stream id, the
/// server's answer connects it (hypershell's LocalTunnelClient). `ready` gets the listening
/// address once the server opened the channel.
async fn tunnel(
    conn: Connection,
    f: LocalForward,
    listener: tokio::net::TcpListener,
    ready: tokio::sync::oneshot::Sender<std::net::SocketAddr>,
) -> Result<(), CliError> {
    let target = f.remote.clone();
    let host: StreamHost = conn.stream_host().ok_or_else(|| {
        CliError::new(
            "the connection to the server is relayed: tunnels need a direct path (as in JS)",
        )
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::new(e.to_string()))?;
    let (tx, mut rx) = conn.split();
    let mut mux = Protomux::new();
    let mut client = ShellClient::new();
    let fail = |e: hyperpunch::core::shell::ShellError| CliError::new(e.to_string());
    let ch = client.open_tunnel(&mut mux, &target).map_err(fail)?;
    let mut ready = Some(ready);
    let mut answered = false;
    let mut pending: HashMap<u32, (hyperpunch::udx::ReservedStream, tokio::net::TcpStream)> =
        HashMap::new();
    let mut streams = tokio::task::JoinSet::new();
    let result = loop {
        if !flush(&mut mux, &tx).await {
            break Err(CliError::new("the connection to the server closed"));
        }
        tokio::select! {
            f = rx.recv() => match f {
                Some(Ok(f)) => mux.handle_frame(&f).map_err(|e| CliError::new(e.to_string()))?,
                Some(Err(e)) => break Err(CliError::new(format!("connection: {e}"))),
                None => break Err(CliError::new("the server ended the connection")),
            },
            a = listener.accept() => match a {
                Ok((tcp, _)) => {
                    // JS onconnection: a stream with a fresh id, its id to the server.
                    match host.reserve() {
                        Ok(r) => {
                            let id = r.id();
                            pending.insert(id, (r, tcp));
                            client.tunnel_connect(&mut mux, ch, id).map_err(fail)?;
                        }
                        Err(e) => eprintln!("Tunnel: {e}"),
                    }
                }
                Err(e) => eprintln!("Tunnel: accepting: {e}"),
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
        let mut done = None;
        while let Some(e) = mux.poll_event() {
            match client.handle_event(e).map_err(fail)? {
                Some(ClientEvent::Opened { .. }) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(local);
                    }
                }
                Some(ClientEvent::TunnelStream {
                    client_id,
                    server_id,
                    ..
                }) => {
                    answered = true;
                    let Some((reserved, tcp)) = pending.remove(&client_id) else {
                        continue;
                    };
                    let host = host.clone();
                    streams.spawn(async move {
                        let r = match host.open_secret(reserved, server_id, false).await {
                            Ok(stream) => native::bridge_tcp(tcp, stream).await.map(|_| ()),
                            Err(e) => Err(e),
                        };
                        if let Err(e) = r {
                            eprintln!("Tunnel: {e}");
                        }
                    });
                }
                Some(ClientEvent::Closed { rejected: true, .. }) => {
                    done = Some(Err(CliError::new(
                        "the server does not serve tunnels (hypershell-tunnel-local; a server                          started with --protocol that leaves out tunnel)",
                    )));
                }
                Some(ClientEvent::Closed { .. }) if !answered => {
                    done = Some(Err(CliError::new(format!(
                        "the server refused the tunnel to {target} (not allowed by its                          --tunnel-host/--tunnel-port)"
                    ))));
                }
                Some(ClientEvent::Closed { .. }) => {
                    done = Some(Err(CliError::new(format!(
                        "the server closed the tunnel to {target}"
                    ))));
                }
                _ => {}
            }
        }
        if let Some(d) = done {
            break d;
        }
    };
    streams.abort_all();
    let _ = tx.end().await;
    result
}

fn session(
    key: &str,
    file: Option<PathBuf>,
    net: ToolNet,
    mut spawn: Spawn,
) -> Result<(), CliError> {
    let server_key = parse_server_key(key)?;
    let kp = load_key(&file.unwrap_or_else(default_key))?;
    let (w, h) = native::terminal_size(1).unwrap_or((80, 24));
    spawn.width = w;
    spawn.height = h;
    let rt = runtime()?;
    let r = rt.block_on(async {
        let (_peer, conn) = dial(server_key, kp, &net).await?;
        // Raw mode only once connected, so connection errors print normally.
        let raw = if native::is_terminal(0) {
            native::RawMode::enable(0).ok()
        } else {
            None
        };
        let r = shell_session(conn, spawn).await;
        drop(raw);
        r
    });
    rt.shutdown_background();
    // Failing to reach the command exits 255 (as ssh), so a script tells it from the command's
    // own codes.
    let r = r.map_err(|mut e| {
        e.code = EXIT_NO_SESSION;
        e
    });
    match r? {
        0 => Ok(()),
        code => {
            let _ = std::io::stdout().flush();
            std::process::exit(i32::try_from(code.min(255)).unwrap_or(1))
        }
    }
}

/// A shell channel: stdin to it, its output to stdout, resizes; returns the exit code.
async fn shell_session(conn: Connection, spawn: Spawn) -> Result<u64, CliError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = conn.split();
    let mut mux = Protomux::new();
    let mut client = ShellClient::new();
    let ch = client
        .open_shell(&mut mux, &spawn)
        .map_err(|e| CliError::new(e.to_string()))?;
    if !flush(&mut mux, &tx).await {
        return Err(CliError::new("the connection closed"));
    }
    native::watch_winch();
    let mut winch = native::winch_count();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut buf = vec![0u8; 16 * 1024];
    let mut stdin_open = true;
    let mut code = None;
    let mut opened = false;
    let fail = |e: hyperpunch::core::shell::ShellError| CliError::new(e.to_string());
    let early = |why: String| {
        CliError::new(format!(
            "the server closed the connection before opening the shell ({why})"
        ))
    };
    loop {
        tokio::select! {
            f = rx.recv() => match f {
                Some(Ok(f)) => mux.handle_frame(&f).map_err(|e| CliError::new(e.to_string()))?,
                Some(Err(e)) if !opened => return Err(early(e.to_string())),
                Some(Err(e)) => return Err(CliError::new(format!("connection: {e}"))),
                None if !opened => return Err(early("it ended".into())),
                None => break,
            },
            n = stdin.read(&mut buf), if stdin_open => match n {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => client.stdin(&mut mux, ch, &buf[..n]).map_err(fail)?,
            },
            _ = tick.tick() => {
                let now = native::winch_count();
                if now != winch {
                    winch = now;
                    if let Some((width, height)) = native::terminal_size(1) {
                        let _ = client.resize(&mut mux, ch, Resize { width, height });
                    }
                }
            }
        }
        let mut closed = false;
        while let Some(e) = mux.poll_event() {
            match client.handle_event(e).map_err(fail)? {
                Some(ClientEvent::Stdout { data, .. }) => {
                    let _ = stdout.write_all(&data).await;
                    let _ = stdout.flush().await;
                }
                Some(ClientEvent::Stderr { data, .. }) => {
                    let _ = stderr.write_all(&data).await;
                }
                Some(ClientEvent::ExitCode { code: c, .. }) => code = Some(c),
                Some(ClientEvent::Opened { .. }) => opened = true,
                Some(ClientEvent::Closed { rejected, .. }) => {
                    if rejected {
                        return Err(CliError::new("the server does not serve shells"));
                    }
                    closed = true;
                }
                _ => {}
            }
        }
        if !flush(&mut mux, &tx).await || closed {
            break;
        }
    }
    let _ = tx.end().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), tx.finished()).await;
    code.ok_or_else(|| CliError::new("the connection closed before the command exited"))
}

enum Op {
    Upload { source: String, target: String },
    Download { source: String, target: String },
}

fn expand_home(p: &str) -> PathBuf {
    if p == "~" {
        return home();
    }
    match p.strip_prefix("~/") {
        Some(rest) => home().join(rest),
        None => PathBuf::from(p),
    }
}

async fn copy(server_key: [u8; 32], kp: KeyPair, op: Op, net: ToolNet) -> Result<(), CliError> {
    // Check the local side before connecting.
    if let Op::Upload { source, .. } = &op {
        let src = expand_home(source);
        if std::fs::symlink_metadata(&src).is_err() {
            return Err(CliError::new(format!(
                "{}: No such file or directory",
                src.display()
            )));
        }
    }
    let (_peer, conn) = dial(server_key, kp, &net).await?;
    let (tx, mut rx) = conn.split();
    let mut mux = Protomux::new();
    let mut client = ShellClient::new();
    let fail = |e: hyperpunch::core::shell::ShellError| CliError::new(e.to_string());
    let result: Result<(), CliError> = match op {
        Op::Upload { source, target } => {
            let src = expand_home(&source);
            let is_directory = std::fs::metadata(&src).map(|m| m.is_dir()).unwrap_or(false);
            let ch = client
                .open_upload(
                    &mut mux,
                    &Upload {
                        target,
                        is_directory,
                    },
                )
                .map_err(fail)?;
            let (chunks_tx, mut chunks) = mpsc::channel::<std::io::Result<Vec<u8>>>(8);
            tokio::task::spawn_blocking(move || {
                let t = chunks_tx.clone();
                let r = native::pack(&src, |c| t.blocking_send(Ok(c)).is_ok());
                match r {
                    Ok(()) => {
                        let _ = chunks_tx.blocking_send(Ok(Vec::new()));
                    }
                    Err(e) => {
                        let _ = chunks_tx.blocking_send(Err(e));
                    }
                }
            });
            let mut sending = true;
            let mut outcome = None;
            while outcome.is_none() {
                if !flush(&mut mux, &tx).await {
                    outcome = Some(Err(CliError::new("the connection closed")));
                    break;
                }
                tokio::select! {
                    f = rx.recv() => match f {
                        Some(Ok(f)) => mux.handle_frame(&f).map_err(|e| CliError::new(e.to_string()))?,
                        Some(Err(e)) => return Err(CliError::new(format!("connection: {e}"))),
                        None => { outcome = Some(Err(CliError::new("the server ended the connection before the copy completed"))); }
                    },
                    c = chunks.recv(), if sending => match c {
                        Some(Ok(c)) => {
                            sending = !c.is_empty();
                            client.data(&mut mux, ch, &c).map_err(fail)?;
                        }
                        Some(Err(e)) => {
                            let _ = client.close(&mut mux, ch);
                            outcome = Some(Err(CliError::new(format!("reading {source}: {e}"))));
                        }
                        None => sending = false,
                    },
                }
                while let Some(e) = mux.poll_event() {
                    match client.handle_event(e).map_err(fail)? {
                        Some(ClientEvent::Error { error, .. }) => {
                            outcome = Some(Err(CliError::new(format!(
                                "hypershell-server: {}",
                                error.message
                            ))));
                        }
                        Some(ClientEvent::Closed { rejected, .. }) if outcome.is_none() => {
                            outcome = Some(if rejected {
                                Err(CliError::new("the server does not accept uploads"))
                            } else if sending {
                                Err(CliError::new("the server closed the copy early"))
                            } else {
                                Ok(())
                            });
                        }
                        _ => {}
                    }
                }
            }
            outcome.unwrap_or(Ok(()))
        }
        Op::Download { source, target } => {
            let target = std::path::absolute(expand_home(&target))
                .map_err(|e| CliError::new(format!("{target}: {e}")))?;
            let ch = client
                .open_download(&mut mux, &Download { source })
                .map_err(fail)?;
            let mut x: Option<Extractor> = None;
            let mut outcome = None;
            while outcome.is_none() {
                if !flush(&mut mux, &tx).await {
                    outcome = Some(Err(CliError::new("the connection closed")));
                    break;
                }
                match rx.recv().await {
                    Some(Ok(f)) => mux
                        .handle_frame(&f)
                        .map_err(|e| CliError::new(e.to_string()))?,
                    Some(Err(e)) => return Err(CliError::new(format!("connection: {e}"))),
                    None => {
                        outcome = Some(Err(CliError::new(
                            "the server ended the connection before the copy completed",
                        )));
                    }
                }
                while let Some(e) = mux.poll_event() {
                    match client.handle_event(e).map_err(fail)? {
                        Some(ClientEvent::DownloadHeader { header, .. }) => {
                            x = Some(if header.is_directory {
                                Extractor::new(&target, None)
                            } else {
                                let dir =
                                    target.parent().map(Path::to_path_buf).unwrap_or_default();
                                let name = target
                                    .file_name()
                                    .map(|n| n.to_string_lossy().into_owned())
                                    .unwrap_or_default();
                                Extractor::new(&dir, Some(name))
                            });
                        }
                        Some(ClientEvent::Data { data, .. }) => {
                            let r = match (&mut x, data.is_empty()) {
                                (None, _) => Err(std::io::Error::other("data before the header")),
                                (Some(_), true) => x.take().expect("some").finish().map(|_| ()),
                                (Some(e), false) => e.push(&data),
                            };
                            match r {
                                Ok(()) if data.is_empty() => {
                                    let _ = client.close(&mut mux, ch);
                                    outcome = Some(Ok(()));
                                }
                                Ok(()) => {}
                                Err(e) => {
                                    let _ = client.close(&mut mux, ch);
                                    outcome = Some(Err(CliError::new(format!(
                                        "writing {}: {e}",
                                        target.display()
                                    ))));
                                }
                            }
                        }
                        Some(ClientEvent::Error { error, .. }) => {
                            let _ = client.close(&mut mux, ch);
                            outcome = Some(Err(CliError::new(if error.code == "ENOENT" {
                                format!(
                                    "hypershell-server: {}: No such file or directory",
                                    error.path
                                )
                            } else {
                                format!("hypershell-server: {}", error.message)
                            })));
                        }
                        Some(ClientEvent::Closed { rejected, .. }) if outcome.is_none() => {
                            outcome = Some(Err(CliError::new(if rejected {
                                "the server does not serve downloads"
                            } else {
                                "the server closed the copy early"
                            })));
                        }
                        _ => {}
                    }
                }
            }
            flush(&mut mux, &tx).await;
            outcome.unwrap_or(Ok(()))
        }
    };
    let _ = tx.end().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), tx.finished()).await;
    result
}
