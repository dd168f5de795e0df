//! `hyperpunch ssh` live, through a real OpenSSH server (`/usr/sbin/sshd`, run by the test on a
//! free 127.0.0.1 port with a temporary host key and authorized_keys; `bash
//! scripts/install-sshd.sh` installs it, and without it these tests fail) on a loopback testnet
//! of `hyperpunch dht` nodes: our client through our `ssh server` (a command's output and exit
//! code, 4 MiB each way byte for byte, a client refused by `--allow`, a key nobody announces),
//! JS hyperssh 5.0.4's client (run unchanged through `tests/interop/tool-run.js`) through our
//! server, and our client through JS `hypertele-server`, which is hyperssh's server side.
//!
//! What they assume of the machine: sshd logs in the current user (`id -un`), so that user has a
//! passwd entry, a usable login shell (`/bin/sh -c` runs the commands) and an unlocked account;
//! as root, sshd needs `/run/sshd` (created here if missing). Our client passes `-F /dev/null`,
//! but JS hyperssh's ssh reads the passwd home's `~/.ssh/config` (and its own options), so a
//! config there that changes logins can change that test. Clients run with `--timeout 20`,
//! well under a step's 60 s, so a timeout shows as their 255, not as the test's own deadline.

mod common;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::tools::{assert_same, pattern, testnet, Proc};
use hyperpunch::crypto::KeyPair;

/// A command with output and its own exit code.
const EXEC: &str = "sh -c 'seq 1 100000; exit 7'";

fn seq_output() -> Vec<u8> {
    (1..=100_000)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

/// The local user (sshd logs them in with the generated key).
fn user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn run_ok(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An OpenSSH server of the test's own: 127.0.0.1 only, public-key logins of one generated key.
struct Sshd {
    proc: RefCell<Proc>,
    port: u16,
    /// The client's SSH private key.
    client_key: PathBuf,
}

const NO_SSHD: &str = "/usr/sbin/sshd is missing: the ssh tests need OpenSSH's server; run \
                       `bash scripts/install-sshd.sh` (part of `just setup`)";

impl Sshd {
    fn start(dir: &Path) -> Sshd {
        assert!(Path::new("/usr/sbin/sshd").is_file(), "{NO_SSHD}");
        // sshd as root refuses to start without its privilege separation folder (a package's
        // tmpfiles.d makes it at boot, which a container never has); as another user it does
        // not use it.
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } == 0 && !Path::new("/run/sshd").is_dir() {
            std::fs::create_dir_all("/run/sshd")
                .unwrap_or_else(|e| panic!("cannot create /run/sshd that sshd needs: {e}"));
        }
        let host_key = dir.join("host_key");
        let client_key = dir.join("client_key");
        for k in [&host_key, &client_key] {
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(k),
            );
        }
        let authorized = dir.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).unwrap();
        // A free port can be taken between the probe and sshd's bind: then try another.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1:{port}\nHostKey {}\nAuthorizedKeysFile {}\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                     StrictModes no\nPidFile none\nLogLevel INFO\n",
                    host_key.display(),
                    authorized.display()
                ),
            )
            .unwrap();
            let mut cmd = Command::new("/usr/sbin/sshd");
            cmd.arg("-D").arg("-e").arg("-f").arg(&config);
            let mut p = Proc::start("sshd", cmd);
            let line = p.expect_any(&[
                "Server listening on",
                "Bind to port",
                "Cannot bind",
                "fatal",
            ]);
            if line.contains("Server listening on") {
                return Sshd {
                    proc: RefCell::new(p),
                    port,
                    client_key,
                };
            }
            if !line.contains("Bind to port") && !line.contains("Cannot bind") {
                panic!("sshd did not start: {:?}", p.output());
            }
        }
        panic!("sshd could not bind a free port in 5 tries");
    }

    /// sshd's log so far, and whether it exited (for failure messages).
    fn log(&self) -> String {
        let mut p = self.proc.borrow_mut();
        format!("sshd exit {:?}, log {:?}", p.exited(), p.output())
    }

    /// The ssh options our client passes to log in with the generated key, touching nothing of
    /// the user's (~/.ssh/config, known_hosts, agent).
    fn client_args(&self, dir: &Path) -> Vec<String> {
        vec![
            "--ssh-key".into(),
            self.client_key.to_str().unwrap().into(),
            "--ssh-arg=-F".into(),
            "--ssh-arg=/dev/null".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "IdentityAgent=none".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", dir.join("known_hosts").display()),
        ]
    }
}

fn identity(dir: &Path, kp: &KeyPair) -> String {
    let path = dir.join(format!("id-{}.json", hex::encode(&kp.public_key[..4])));
    std::fs::write(
        &path,
        format!(
            "{{\"publicKey\":\"{}\",\"secretKey\":\"{}\"}}",
            hex::encode(kp.public_key),
            hex::encode(kp.secret_key)
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// Seeds with letters: hypertele's minimist reads an all-digit seed as a number.
fn seed(b: u8) -> String {
    hex::encode([b; 32])
}

fn key_of(p: &mut Proc, banner: &str) -> String {
    let line = p.expect(banner);
    let key = line.trim().rsplit(' ').next().unwrap();
    assert_eq!(key.len(), 64, "{line}");
    key.to_string()
}

/// `hyperpunch ssh ARGS`: waits for the exit; returns the code and stdout (stderr in `p`). Its
/// SHELL is /bin/false: ssh runs the ProxyCommand with `$SHELL -c`, and our client must give it
/// /bin/sh, whose quoting it uses, whatever the user's shell.
fn ours(name: &str, args: &[String], stdin: Option<Vec<u8>>) -> (Proc, Option<i32>, Vec<u8>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hyperpunch"));
    cmd.args(args)
        .env_remove("HYPERPUNCH_BOOTSTRAP")
        .env_remove("HYPERPUNCH_RELAYS")
        .env("SHELL", "/bin/false");
    let mut p = Proc::start(name, cmd);
    match stdin {
        Some(d) => p.feed(d),
        None => p.close_stdin(),
    }
    let (code, out) = p.finish();
    (p, code, out)
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn rust_client_through_rust_server() {
    let (_dht, boot) = testnet(2);
    let tmp = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(tmp.path());
    let member = KeyPair::from_seed(&[0xa1; 32]);
    let port = sshd.port.to_string();
    let seed_hex = seed(0xb1);
    let server_net = ["--bootstrap", &boot, "--host", "127.0.0.1"];
    let net = [
        "--bootstrap",
        &boot,
        "--host",
        "127.0.0.1",
        "--timeout",
        "20",
    ];
    let mut args = vec!["ssh", "server", "--seed", &seed_hex, "-l", &port, "--allow"];
    let allowed = hex::encode(member.public_key);
    args.push(&allowed);
    args.extend_from_slice(&server_net);
    let mut server = Proc::hp("rust ssh server", &args);
    let key = key_of(&mut server, "hyperssh: ");
    assert_eq!(
        key,
        hex::encode(KeyPair::from_seed(&[0xb1; 32]).public_key),
        "the key pair of the seed, as hypertele derives it"
    );
    let id = identity(tmp.path(), &member);
    let base_in = |key: &str, dir: &Path| {
        let mut a = strings(&["ssh", key, "-u", &user(), "-i", &id]);
        a.extend(sshd.client_args(dir));
        a.extend(strings(&net));
        a
    };
    let base = |key: &str| base_in(key, tmp.path());

    // A command's output and its exit code (-e, hyperssh's spelling).
    let mut a = base(&key);
    a.extend(strings(&["-e", EXEC]));
    let (mut p, code, out) = ours("exec", &a, None);
    assert_eq!(
        code,
        Some(7),
        "exit code; output {:?}; {}",
        p.output(),
        sshd.log()
    );
    assert_same(&out, &seq_output(), "seq output");

    // sshd's host key is remembered under the key's name...
    let alias = format!("hyperpunch-{key} ");
    let known = std::fs::read_to_string(tmp.path().join("known_hosts")).unwrap();
    assert!(
        known.lines().any(|l| l.starts_with(&alias)),
        "known_hosts has no {alias}: {known:?}"
    );
    // ...and checked: under that name another host key (here the client's public key) is
    // refused by ssh, 255, with OpenSSH's warning.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let client_pub = std::fs::read_to_string(sshd.client_key.with_extension("pub")).unwrap();
    std::fs::write(other.join("known_hosts"), format!("{alias}{client_pub}")).unwrap();
    let mut a = base_in(&key, &other);
    a.extend(strings(&["-e", "echo should not run"]));
    let (mut p, code, out) = ours("changed host key", &a, None);
    assert_eq!(code, Some(255), "output {:?}; {}", p.output(), sshd.log());
    assert!(out.is_empty());
    p.expect("REMOTE HOST IDENTIFICATION HAS CHANGED");
    p.expect("Host key verification failed");

    // 4 MiB down and up byte for byte (a command after --).
    let data = pattern(4 << 20);
    let down = tmp.path().join("down.bin");
    std::fs::write(&down, &data).unwrap();
    let mut a = base(&key);
    a.extend(strings(&["--", "cat", down.to_str().unwrap()]));
    let (mut p, code, out) = ours("download", &a, None);
    assert_eq!(code, Some(0), "output {:?}; {}", p.output(), sshd.log());
    assert_same(&out, &data, "4 MiB read through ssh");
    let up = tmp.path().join("up.bin");
    let mut a = base(&key);
    a.extend(strings(&[
        "--",
        "sh",
        "-c",
        &format!("'cat > {}'", up.display()),
    ]));
    let (mut p, code, _) = ours("upload", &a, Some(data.clone()));
    assert_eq!(code, Some(0), "output {:?}; {}", p.output(), sshd.log());
    assert_same(
        &std::fs::read(&up).unwrap(),
        &data,
        "4 MiB written through ssh",
    );

    // --rdp (hyperssh's): a local port forwarded to the server, here its sshd, whose banner
    // comes through.
    let mut a = strings(&["ssh", &key, "-i", &id, "--rdp", "--rdp-port", "0"]);
    a.extend(strings(&net));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut rdp = Proc::hp("rdp", &a);
    let line = rdp.expect("Server ready @127.0.0.1:");
    let rdp_port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", rdp_port)).unwrap();
    s.set_read_timeout(Some(common::tools::STEP)).unwrap();
    let mut banner = [0u8; 8];
    std::io::Read::read_exact(&mut s, &mut banner).unwrap_or_else(|e| {
        panic!(
            "no banner through --rdp: {e}; {:?}; {}",
            rdp.output(),
            sshd.log()
        )
    });
    assert_eq!(&banner, b"SSH-2.0-");
    drop((s, rdp));

    // A client whose key is not on --allow: refused by the DHT firewall, 255 as ssh, and the
    // reason printed.
    let mut a = strings(&["ssh", &key, "-u", &user()]);
    a.extend(sshd.client_args(tmp.path()));
    a.extend(strings(&net));
    a.extend(strings(&["-e", "echo should not run"]));
    let (mut p, code, out) = ours("stranger", &a, None);
    assert_eq!(code, Some(255), "output {:?}; {}", p.output(), sshd.log());
    assert!(out.is_empty());
    assert!(
        p.expect("error:")
            .contains("refused this client's public key"),
        "{:?}",
        p.output()
    );
    // The proxy alone says the same and exits 255.
    let mut a = strings(&["ssh", "proxy", &key]);
    a.extend(strings(&net));
    let (mut p, code, _) = ours("stranger proxy", &a, None);
    assert_eq!(code, Some(255), "output {:?}", p.output());
    assert!(p.expect("error:").contains("PEER_CONNECTION_FAILED"));

    // A key nobody announces.
    let nobody = hex::encode(KeyPair::from_seed(&[0xee; 32]).public_key);
    let mut a = base(&nobody);
    a.extend(strings(&["-e", "true"]));
    let (mut p, code, _) = ours("no server", &a, None);
    assert_eq!(code, Some(255), "output {:?}; {}", p.output(), sshd.log());
    assert!(
        p.expect("error:").contains("no server announces"),
        "{:?}",
        p.output()
    );
}

#[test]
fn js_hyperssh_through_rust_server() {
    let (_dht, boot) = testnet(2);
    let tmp = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(tmp.path());
    let member = KeyPair::from_seed(&[0xa2; 32]);
    let port = sshd.port.to_string();
    let seed_hex = seed(0xb2);
    let allowed = hex::encode(member.public_key);
    let mut server = Proc::hp(
        "rust ssh server",
        &[
            "ssh",
            "server",
            "--seed",
            &seed_hex,
            "-l",
            &port,
            "--allow",
            &allowed,
            "--bootstrap",
            &boot,
            "--host",
            "127.0.0.1",
        ],
    );
    let key = key_of(&mut server, "hyperssh: ");

    // JS hyperssh runs `ssh` with its own options (no host key checks, no identity file): the
    // generated key reaches that ssh through an agent of the test's own.
    let sock = tmp.path().join("agent.sock");
    let mut agent_cmd = Command::new("ssh-agent");
    agent_cmd.arg("-D").arg("-a").arg(&sock);
    let mut agent = Proc::start("ssh-agent", agent_cmd);
    agent.expect("SSH_AUTH_SOCK");
    run_ok(
        Command::new("ssh-add")
            .arg("-q")
            .arg(&sshd.client_key)
            .env("SSH_AUTH_SOCK", &sock),
    );
    let sock_s = sock.to_str().unwrap();
    let id = identity(tmp.path(), &member);
    let u = user();
    let mut js = Proc::js(
        "js hyperssh",
        "hyperssh/client.js",
        &["-s", &key, "-u", &u, "-i", &id, "-e", EXEC],
        &boot,
        &[("SSH_AUTH_SOCK", sock_s)],
    );
    js.close_stdin();
    let (code, out) = js.finish();
    assert_eq!(
        code,
        Some(7),
        "exit code; output {:?}; {}",
        js.output(),
        sshd.log()
    );
    assert_same(&out, &seq_output(), "seq output");

    // Without the listed identity JS hyperssh is refused: its ssh fails, 255.
    let mut stranger = Proc::js(
        "js hyperssh (stranger)",
        "hyperssh/client.js",
        &["-s", &key, "-u", &u, "-e", "echo should not run"],
        &boot,
        &[("SSH_AUTH_SOCK", sock_s)],
    );
    stranger.close_stdin();
    let (code, out) = stranger.finish();
    assert_eq!(
        code,
        Some(255),
        "output {:?}; {}",
        stranger.output(),
        sshd.log()
    );
    assert!(out.is_empty());
}

#[test]
fn rust_client_through_js_hypertele_server() {
    let (_dht, boot) = testnet(2);
    let tmp = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(tmp.path());
    let port = sshd.port.to_string();
    let seed_hex = seed(0xb3);
    let mut server = Proc::js(
        "js hypertele-server",
        "hypertele/server.js",
        &["--seed", &seed_hex, "-l", &port],
        &boot,
        &[],
    );
    let key = key_of(&mut server, "hypertele");
    let mut a = strings(&["ssh", &key, "-u", &user()]);
    a.extend(sshd.client_args(tmp.path()));
    a.extend(strings(&[
        "--bootstrap",
        &boot,
        "--host",
        "127.0.0.1",
        "--timeout",
        "20",
    ]));
    a.extend(strings(&["-e", EXEC]));
    let (mut p, code, out) = ours("exec", &a, None);
    assert_eq!(
        code,
        Some(7),
        "exit code; output {:?}; {}",
        p.output(),
        sshd.log()
    );
    assert_same(&out, &seq_output(), "seq output");
}
