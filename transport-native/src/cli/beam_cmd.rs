//! `hyperpunch beam [PASSPHRASE] [-r]`: hyperbeam 3.1.0, a 1-1 end-to-end encrypted pipe
//! between two machines named by a passphrase. The passphrase, its key pair and the firewall are
//! [`hyperpunch::beam`]'s; this file runs the pipe (stdin to the peer, the peer to stdout) and
//! prints hyperbeam's messages on stderr.

use clap::Args;
use hyperpunch::beam;
use hyperpunch::dht::{ConnectOptions, ServerOptions};

use super::peer::{join, random_seed, runtime, ToolNet};
use super::pipe::{splice, Framing};
use super::CliError;

/// `hyperpunch beam --help`.
pub const BEAM_LONG: &str = "\
A 1-1 end-to-end encrypted pipe between two machines, named by a passphrase (as hyperbeam).

Run it without a passphrase: it makes one, prints it on stderr and waits for the other side.
Run it with that passphrase on the other machine: the two connect (holepunched through NATs)
and what one side reads on stdin the other writes on stdout, both ways. When one side's stdin
ends, the other side's stdout ends, and the pipe closes once both ended (a side whose peer
ended stops reading its own stdin, as hyperbeam does). The passphrase is the capability: the
side that announces admits only peers that derive the same key pair from it. Works with JS
hyperbeam on either side.

-r announces with a passphrase you already have (restart the side that made it).

Examples:
  # machine A
  hyperpunch beam --bootstrap 127.0.0.1:49737 < backup.tar
  # prints: [hyperbeam] Run hyperbeam <PASSPHRASE> to connect
  # machine B
  hyperpunch beam <PASSPHRASE> --bootstrap 127.0.0.1:49737 > backup.tar";

/// The arguments of `hyperpunch beam`.
#[derive(Debug, Args)]
pub struct BeamArgs {
    /// The pipe's passphrase (52 base32 characters); without it a new one is made and announced.
    pub passphrase: Option<String>,
    /// Announce with the given passphrase (restart the side that made it).
    #[arg(short = 'r', long = "restart")]
    pub restart: bool,
    #[command(flatten)]
    pub net: ToolNet,
}

/// Runs the pipe.
pub fn run(a: BeamArgs) -> Result<(), CliError> {
    let rt = runtime()?;
    let r = rt.block_on(pipe(a));
    // A read of stdin may still block on a runtime thread (the peer ended first): do not wait.
    rt.shutdown_background();
    r
}

fn say(msg: &str) {
    eprintln!("[hyperbeam] {msg}");
}

async fn pipe(a: BeamArgs) -> Result<(), CliError> {
    let (passphrase, announce) = match a.passphrase {
        Some(p) => (p, a.restart),
        None => (beam::new_passphrase(&random_seed()?), true),
    };
    let kp = beam::key_pair(&passphrase).map_err(|e| {
        CliError::new(format!(
            "{e} (to create a new pipe, give no passphrase and one is made for you)"
        ))
    })?;
    if announce {
        say(&format!("Run hyperbeam {passphrase} to connect"));
        say("To restart this side of the pipe with the same key add -r to the above");
    } else {
        say("Connecting pipe...");
    }
    let peer = join(&a.net, Some(true)).await?;
    // JS prints `dht.host:dht.port`: our address as the DHT's nodes see it.
    let remote_address = || {
        let info = peer.info();
        match info.public_host {
            Some(h) => say(&format!(
                "Joined the DHT - remote address is {h}:{}",
                info.public_port
            )),
            None => say("Joined the DHT (remote address not detected)"),
        }
    };
    let fail = CliError::new;
    let conn = if announce {
        let own = kp.public_key;
        let opts = ServerOptions {
            firewall: Some(Box::new(move |remote, _, _| beam::refuses(&own, remote))),
            ..ServerOptions::default()
        };
        let mut server = tokio::time::timeout(a.net.timeout(), peer.listen(kp, opts))
            .await
            .map_err(|_| fail("announcing timed out"))?
            .map_err(|e| CliError::new(e.to_string()))?;
        remote_address();
        // The first connection is the pipe; the server stops taking others.
        server
            .accept()
            .await
            .ok_or_else(|| fail("the DHT node stopped"))?
    } else {
        let conn = tokio::time::timeout(
            a.net.timeout(),
            peer.connect(kp.public_key, kp.clone(), ConnectOptions::default()),
        )
        .await
        .map_err(|_| fail("connecting timed out"))?
        .map_err(|e| CliError::new(e.to_string()))?;
        remote_address();
        conn
    };
    say("Success! Encrypted tunnel established to remote peer");
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
}
