//! `hyperpunch ssh`: OpenSSH carried over a hyperdht connection, as hyperssh 5.0.4. The server
//! side exposes a local sshd under the key pair of a seed (hypertele's server, through
//! [`super::expose::serve`]: what JS hyperssh's README runs as `hypertele-server -l 22`); the
//! client runs the system's `ssh` with this binary's `ssh proxy` as its ProxyCommand (JS
//! hyperssh opens a local TCP port instead, which any local user could reach), and `ssh proxy`
//! pipes stdin and stdout to the connection.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use hyperpunch::crypto::KeyPair;
use hyperpunch::tele::{self, Access};

use super::expose::{dial, forward, read_identity, serve, Target};
use super::peer::{join, parse_key, random_seed, runtime, ToolNet};
use super::pipe::{splice, Framing};
use super::{parse_hex32, CliError};

/// Exit status when no SSH session could be made (no connection, refused, no server): 255, as
/// ssh itself.
pub const EXIT_NO_SESSION: i32 = 255;

/// `hyperpunch ssh --help`.
pub const SSH_LONG: &str = "\
SSH to a machine by its public key, through the DHT (as hyperssh): holepunched through NATs,
end-to-end encrypted twice (the DHT connection, then SSH itself), no open port on either side.
Works with JS hyperssh 5.0.4 (client) and JS hypertele-server (server) either way.

On the server (it needs an SSH server, e.g. OpenSSH's sshd on port 22):
  hyperpunch ssh server --seed $(openssl rand -hex 32) --bootstrap 127.0.0.1:49737
  # prints `hyperssh: <KEY>`; keep the seed: the same seed is the same key

On the client (it needs OpenSSH's `ssh`):
  hyperpunch ssh <KEY> -u alice --bootstrap 127.0.0.1:49737              # a login shell
  hyperpunch ssh <KEY> -u alice -e 'uname -a' --bootstrap 127.0.0.1:49737  # one command
  hyperpunch ssh <KEY> -u alice --bootstrap ... -- tar czf - /etc > etc.tgz

The client runs `ssh` with `hyperpunch ssh proxy <KEY>` as its ProxyCommand, so no local port
is opened, and exits with ssh's exit code: the remote command's, or 255 when no session could be
made (the reason is printed above ssh's own message). To use plain `ssh` (and scp, rsync, git),
put the proxy in ~/.ssh/config; see `hyperpunch ssh proxy --help`.

The server's sshd host key is remembered under the name hyperpunch-<KEY> in known_hosts the
first time (StrictHostKeyChecking=accept-new: the DHT already proved the server holds KEY) and
checked from then on; JS hyperssh checks none. Your own -o options come first and win, e.g.
-o StrictHostKeyChecking=yes. HYPERPUNCH_SSH names another ssh program.

Only the keys of --allow may connect to a server that lists some; anyone else is refused by the
DHT's firewall before any byte reaches sshd. A client's key is random unless it gives an
identity (-i, hyper-cmd's JSON key pair, as hyperssh and hypertele). Set HYPERPUNCH_BOOTSTRAP
once instead of --bootstrap.";

/// `hyperpunch ssh ...`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SshArgs {
    /// `server` or `proxy`; without one, connect to KEY.
    #[command(subcommand)]
    pub command: Option<SshCommand>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The client's arguments (`hyperpunch ssh KEY ...`).
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server's public key (64 hex or 52 z-base-32 characters).
    #[arg(value_name = "KEY", required_unless_present = "server")]
    pub key: Option<String>,
    /// The server's public key (hyperssh's spelling of KEY).
    #[arg(
        short = 's',
        long = "server",
        value_name = "KEY",
        conflicts_with = "key"
    )]
    pub server: Option<String>,
    /// The remote user (default: ssh's, your local user name).
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// hyper-cmd identity file ({"publicKey","secretKey"} in hex): the DHT key pair to connect
    /// with, the one a server's --allow names. Not an SSH key: see --ssh-key.
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// The SSH private key to log in with (ssh -i).
    #[arg(long = "ssh-key", value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// An ssh option (ssh -o, repeatable), e.g. -o BatchMode=yes.
    #[arg(short = 'o', value_name = "OPTION")]
    pub options: Vec<String>,
    /// Any other argument for ssh, before the destination (repeatable), e.g. --ssh-arg=-v.
    #[arg(long = "ssh-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub ssh_args: Vec<String>,
    /// The remote command, as one string (hyperssh's -e).
    #[arg(
        short = 'e',
        long = "exec",
        value_name = "COMMAND",
        conflicts_with = "command"
    )]
    pub exec: Option<String>,
    /// Instead of ssh, forward a local port to the server (hyperssh --rdp: Windows Remote
    /// Desktop, with `hypertele-server -l 3389` on the server); see --rdp-port.
    #[arg(long)]
    pub rdp: bool,
    /// The local port of --rdp (0: any free port; `Server ready @127.0.0.1:PORT` tells which).
    #[arg(long, value_name = "PORT", default_value_t = 3389, requires = "rdp")]
    pub rdp_port: u16,
    /// The remote command and its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    #[command(flatten)]
    pub net: ToolNet,
}

/// `hyperpunch ssh server | proxy`.
#[derive(Debug, Subcommand)]
pub enum SshCommand {
    /// Expose the local SSH server under a key pair.
    #[command(long_about = "\
Expose the local SSH server (127.0.0.1:22 unless told otherwise) under the key pair of a seed:
announce it on the DHT and print `hyperssh: <PUBLIC KEY HEX>` on stdout; every peer that
connects gets a fresh TCP connection to the SSH server, piped end to end. This is what JS
hyperssh's README runs as `hypertele-server --seed SEED -l 22`, and it is hypertele's wire:
JS hyperssh, `hyperpunch ssh KEY` and `hypertele`/`hyperpunch tele client` all connect to it.

sshd still does its own authentication (keys, passwords) as for any SSH client. --allow adds
a first gate: only the listed DHT public keys (a client's -i identity) may connect; anyone else
is refused by the DHT's firewall during the handshake, before sshd sees a byte.

Examples:
  hyperpunch ssh server --seed $(openssl rand -hex 32) --bootstrap 127.0.0.1:49737
  hyperpunch ssh server --seed $SEED -l 2222 --allow $ALICE_KEY --allow $BOB_KEY")]
    Server {
        /// Seed of the key pair, 64 hex characters (the same seed is the same key).
        #[arg(long, value_name = "HEX")]
        seed: String,
        /// The SSH server's port.
        #[arg(
            short = 'l',
            long = "port",
            visible_alias = "listen-port",
            value_name = "PORT",
            default_value_t = 22
        )]
        port: u16,
        /// The SSH server's address.
        #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
        address: IpAddr,
        /// Admit only these client public keys (repeatable); without it anyone may connect.
        #[arg(long, value_name = "KEY")]
        allow: Vec<String>,
        #[command(flatten)]
        net: ToolNet,
    },
    /// Pipe stdin and stdout to the SSH server of KEY (an ssh ProxyCommand).
    #[command(long_about = "\
Connect to the server of KEY and pipe stdin to it and it to stdout: an ssh ProxyCommand, so
plain ssh, scp, sftp, rsync and git reach a machine by its key. `hyperpunch ssh KEY` uses it.
It exits 255 with the reason on stderr when it cannot connect (no server under the key,
refused by its allow list, no route before --timeout).

Example ~/.ssh/config (then `ssh mybox`, `scp file mybox:`, `git clone mybox:repo`):
  Host mybox
    User alice
    ProxyCommand hyperpunch ssh proxy <KEY> --bootstrap 127.0.0.1:49737 -i ~/.hyper-id.json

Or once, without a config:
  ssh -o ProxyCommand='hyperpunch ssh proxy <KEY> --bootstrap 127.0.0.1:49737' alice@mybox")]
    Proxy {
        /// The server's public key (64 hex or 52 z-base-32 characters).
        #[arg(value_name = "KEY")]
        key: String,
        /// hyper-cmd identity file: the DHT key pair to connect with (random without it).
        #[arg(short = 'i', long = "identity", value_name = "FILE")]
        identity: Option<PathBuf>,
        #[command(flatten)]
        net: ToolNet,
    },
}

/// Runs `hyperpunch ssh ...`.
pub fn run(a: SshArgs) -> Result<(), CliError> {
    match a.command {
        Some(SshCommand::Server {
            seed,
            port,
            address,
            allow,
            net,
        }) => server(&seed, port, address, &allow, net),
        Some(SshCommand::Proxy { key, identity, net }) => proxy(&key, identity.as_deref(), net)
            .map_err(|mut e| {
                e.code = EXIT_NO_SESSION;
                e
            }),
        None => client(a.client),
    }
}

fn server(
    seed: &str,
    port: u16,
    address: IpAddr,
    allow: &[String],
    net: ToolNet,
) -> Result<(), CliError> {
    if port == 0 {
        return Err(CliError::new("--port 0: give the SSH server's port"));
    }
    let kp = tele::key_pair(&parse_hex32("--seed", seed)?);
    let keys = allow
        .iter()
        .map(|k| parse_key("--allow", k))
        .collect::<Result<Vec<_>, _>>()?;
    let access = if keys.is_empty() {
        Access::Anyone
    } else {
        Access::AllowList(keys)
    };
    let probe = std::net::SocketAddr::new(address, port);
    if std::net::TcpStream::connect_timeout(&probe, std::time::Duration::from_secs(2)).is_err() {
        eprintln!(
            "warning: nothing accepts connections on {address}:{port} now; clients are \
             disconnected until an SSH server runs there (--port, --address)"
        );
    }
    runtime()?.block_on(serve(
        kp,
        access,
        Target::Tcp(address, port),
        Framing::Raw,
        &net,
        |kp| {
            let key = hex::encode(kp.public_key);
            println!("hyperssh: {key}");
            eprintln!("connect with: hyperpunch ssh {key} -u USER (and the same --bootstrap)");
        },
    ))
}

fn key_pair(identity: Option<&Path>) -> Result<KeyPair, CliError> {
    match identity {
        Some(p) => read_identity(p),
        None => Ok(KeyPair::from_seed(&random_seed()?)),
    }
}

fn proxy(key: &str, identity: Option<&Path>, net: ToolNet) -> Result<(), CliError> {
    let key = parse_key("KEY", key)?;
    let kp = key_pair(identity)?;
    let rt = runtime()?;
    let r = rt.block_on(async {
        let peer = join(&net, None).await?;
        let conn = dial(&peer, key, kp, &net).await.map_err(CliError::new)?;
        // The server's end (sshd closed) ends the proxy, whether or not ssh closed our stdin.
        splice(
            conn,
            tokio::io::stdin(),
            tokio::io::stdout(),
            Framing::Raw,
            true,
        )
        .await
        .map_err(CliError::new)?;
        Ok(())
    });
    // A read of stdin may still block on a runtime thread: do not wait for it.
    rt.shutdown_background();
    r
}

/// Quotes a word for the POSIX shell ssh runs its ProxyCommand with (`$SHELL -c`: the client
/// runs ssh with SHELL=/bin/sh, as fish or csh would read the quoting otherwise), and escapes
/// ssh's `%` tokens. Line breaks are refused: ssh reads its -o options as config lines.
fn proxy_word(s: &str) -> Result<String, CliError> {
    if s.contains(['\n', '\r']) {
        return Err(CliError::new(format!(
            "{s:?}: a line break cannot go into ssh's ProxyCommand"
        )));
    }
    Ok(format!("'{}'", s.replace('\'', r"'\''")).replace('%', "%%"))
}

/// The ssh command line of `hyperpunch ssh KEY ...` (without the program name).
fn ssh_command(
    exe: &Path,
    key: &[u8; 32],
    c: &ClientArgs,
    identity: Option<&Path>,
) -> Result<Vec<String>, CliError> {
    let key_hex = hex::encode(key);
    // Each option and its value as one word: a value starting with `-` is not read as a flag.
    let mut proxy = vec![
        exe.to_string_lossy().into_owned(),
        "ssh".into(),
        "proxy".into(),
        key_hex.clone(),
        format!(
            "--bootstrap={}",
            c.net.bootstrap.as_deref().unwrap_or_default()
        ),
        format!("--host={}", c.net.host),
        format!("--timeout={}", c.net.timeout),
    ];
    if let Some(id) = identity {
        proxy.push(format!("--identity={}", id.to_string_lossy()));
    }
    let proxy = proxy
        .iter()
        .map(|w| proxy_word(w))
        .collect::<Result<Vec<_>, _>>()?;
    let mut args = Vec::new();
    // ssh keeps the first value of an option: the user's -o come first.
    for o in &c.options {
        args.push("-o".to_string());
        args.push(o.clone());
    }
    args.extend(c.ssh_args.iter().cloned());
    if let Some(k) = &c.ssh_key {
        args.push("-i".into());
        args.push(k.to_string_lossy().into_owned());
    }
    args.push("-o".into());
    args.push(format!("ProxyCommand={}", proxy.join(" ")));
    // The DHT already proved the server holds KEY; its sshd's host key is remembered under the
    // key's name on first use and checked from then on.
    args.push("-o".into());
    args.push(format!("HostKeyAlias=hyperpunch-{key_hex}"));
    args.push("-o".into());
    args.push("StrictHostKeyChecking=accept-new".into());
    let host = format!("hyperpunch-{}", &key_hex[..16]);
    // `--`: nothing after the destination is read as an ssh option (a command may start with -).
    args.push("--".into());
    args.push(match &c.user {
        Some(u) => format!("{u}@{host}"),
        None => host,
    });
    if let Some(e) = &c.exec {
        args.push(e.clone());
    }
    args.extend(c.command.iter().cloned());
    Ok(args)
}

fn client(c: ClientArgs) -> Result<(), CliError> {
    let key_text = c
        .key
        .as_deref()
        .or(c.server.as_deref())
        .ok_or_else(|| CliError::new("give the server's KEY (or -s KEY)"))?;
    let key = parse_key("KEY", key_text)?;
    // Read the identity now: a wrong file is reported here, not by the proxy under ssh.
    let identity = match &c.identity {
        Some(p) => {
            read_identity(p)?;
            Some(
                std::path::absolute(p)
                    .map_err(|e| CliError::new(format!("cannot resolve {}: {e}", p.display())))?,
            )
        }
        None => None,
    };
    if c.rdp {
        let kp = key_pair(identity.as_deref())?;
        eprintln!(
            "forwarding local port {} to the server (--rdp): open your RDP client and connect \
             to localhost",
            c.rdp_port
        );
        return runtime()?.block_on(forward(
            key,
            kp,
            Target::Tcp(IpAddr::from([127, 0, 0, 1]), c.rdp_port),
            Framing::Raw,
            &c.net,
        ));
    }
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(format!("cannot find this program's path: {e}")))?;
    let args = ssh_command(&exe, &key, &c, identity.as_deref())?;
    let program = std::env::var_os("HYPERPUNCH_SSH").unwrap_or_else(|| "ssh".into());
    // ssh takes over this process: its exit code (the remote command's, or 255) is ours, and
    // the terminal and signals are its own.
    use std::os::unix::process::CommandExt;
    // ssh runs the ProxyCommand with `$SHELL -c`: the quoting above is POSIX sh's.
    let e = std::process::Command::new(&program)
        .args(&args)
        .env("SHELL", "/bin/sh")
        .exec();
    Err(CliError {
        message: format!(
            "cannot run {}: {e} (install OpenSSH's client, or set HYPERPUNCH_SSH)",
            program.to_string_lossy()
        ),
        code: EXIT_NO_SESSION,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: SshArgs,
    }

    fn parse(args: &[&str]) -> SshArgs {
        T::try_parse_from(std::iter::once("ssh").chain(args.iter().copied()))
            .unwrap()
            .a
    }

    #[test]
    fn proxy_words_survive_the_shell_and_percent_expansion() {
        assert_eq!(proxy_word("/a b/it's").unwrap(), r"'/a b/it'\''s'");
        assert_eq!(proxy_word("100%").unwrap(), "'100%%'");
        assert!(proxy_word("a\nb").is_err());
    }

    #[test]
    fn client_command_line() {
        let key = [7u8; 32];
        let a = parse(&[
            "-s",
            &hex::encode(key),
            "-u",
            "alice",
            "-o",
            "BatchMode=yes",
            "--ssh-key",
            "/k",
            "--bootstrap",
            "127.0.0.1:1",
            "--",
            "echo",
            "hi",
        ]);
        assert!(a.command.is_none());
        let args = ssh_command(Path::new("/bin/hp"), &key, &a.client, None).unwrap();
        assert_eq!(&args[..4], ["-o", "BatchMode=yes", "-i", "/k"]);
        let pc = &args[5];
        assert!(
            pc.starts_with("ProxyCommand='/bin/hp' 'ssh' 'proxy' '0707"),
            "{pc}"
        );
        assert!(pc.contains("'--bootstrap=127.0.0.1:1'"), "{pc}");
        assert!(pc.contains("'--timeout=60'"), "{pc}");
        // A value starting with `-` stays the option's value.
        let id = Path::new("-id.json");
        let args = ssh_command(Path::new("/bin/hp"), &key, &a.client, Some(id)).unwrap();
        assert!(args[5].ends_with("'--identity=-id.json'"), "{}", args[5]);
        let dest = args.iter().position(|a| a.starts_with("alice@")).unwrap();
        assert_eq!(args[dest - 1], "--");
        assert_eq!(&args[dest + 1..], ["echo", "hi"]);
    }

    #[test]
    fn subcommands_and_the_client_do_not_mix() {
        let a = parse(&["proxy", "ab", "--bootstrap", "127.0.0.1:1"]);
        assert!(matches!(a.command, Some(SshCommand::Proxy { .. })));
        assert!(T::try_parse_from(["ssh", "--bootstrap", "127.0.0.1:1"]).is_err());
        let e = parse(&["KEY", "-e", "ls", "--bootstrap", "x:1"]);
        assert_eq!(e.client.exec.as_deref(), Some("ls"));
    }
}
