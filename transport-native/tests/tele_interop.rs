//! `hyperpunch tele` live against JS hypertele 1.1.4 (its own `hypertele-server` and
//! `hypertele` scripts, run unchanged through `tests/interop/tool-run.js`), both ways, on a
//! loopback testnet of `hyperpunch dht` nodes: a TCP echo service exposed by one side and
//! opened as a local port by the other, 1 MiB echoed with a half-close, allow lists (a listed
//! identity admitted, anyone else refused), and private mode with --compress.

mod common;
use common::tools::{assert_same, echo_server, pattern, round_trip, testnet, Proc};
use hyperpunch::crypto::KeyPair;

/// Seeds with letters: hypertele's minimist reads an all-digit seed as a number.
fn seed(b: u8) -> String {
    hex::encode([b; 32])
}

fn identity(dir: &std::path::Path, kp: &KeyPair) -> String {
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

fn ready_port(p: &mut Proc) -> String {
    let line = p.expect("Server ready @");
    line.rsplit(':').next().unwrap().trim().to_string()
}

fn key_of(p: &mut Proc) -> String {
    let line = p.expect("hypertele");
    let key = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches(')');
    assert_eq!(key.len(), 64, "{line}");
    key.to_string()
}

#[test]
fn js_hypertele_clients_through_a_rust_server() {
    let (_dht, boot) = testnet(2);
    let tmp = tempfile::tempdir().unwrap();
    let service = echo_server().to_string();
    let member = KeyPair::from_seed(&[0xa1; 32]);
    let conf = tmp.path().join("server.json");
    std::fs::write(
        &conf,
        format!(
            "{{\"seed\":\"{}\",\"allow\":[\"{}\"]}}",
            seed(0xb1),
            hex::encode(member.public_key)
        ),
    )
    .unwrap();
    let net = ["--bootstrap", &boot, "--host", "127.0.0.1"];
    let mut args = vec![
        "tele",
        "server",
        "-l",
        &service,
        "-c",
        conf.to_str().unwrap(),
    ];
    args.extend_from_slice(&net);
    let mut server = Proc::hp("rust server", &args);
    let key = key_of(&mut server);
    assert_eq!(
        key,
        hex::encode(KeyPair::from_seed(&[0xb1; 32]).public_key),
        "the key pair of the seed, as JS derives it"
    );

    // A listed identity gets through; 1 MiB echoed, ended by a half-close.
    let id = identity(tmp.path(), &member);
    let mut member_client = Proc::js(
        "js client (listed)",
        "hypertele/client.js",
        &["-p", "0", "-s", &key, "-i", &id],
        &boot,
        &[],
    );
    let port: u16 = ready_port(&mut member_client).parse().unwrap();
    let data = pattern(1 << 20);
    assert_same(&round_trip(port, &data, true), &data, "echo");

    // Anyone else is refused by the server's firewall: the local connection closes, no data.
    let mut stranger = Proc::js(
        "js client (stranger)",
        "hypertele/client.js",
        &["-p", "0", "-s", &key],
        &boot,
        &[],
    );
    let port: u16 = ready_port(&mut stranger).parse().unwrap();
    assert!(round_trip(port, b"let me in", false).is_empty());

    // Private mode, compressed: the JS client derives the key pair from the seed.
    let mut args = vec!["tele", "server", "-l", &service, "--private", "--compress"];
    let private_seed = seed(0xc1);
    args.extend_from_slice(&["--seed", &private_seed]);
    args.extend_from_slice(&net);
    let mut private = Proc::hp("rust private server", &args);
    private.expect("hypertele (private): connect with seed");
    let mut pc = Proc::js(
        "js private client",
        "hypertele/client.js",
        &["-p", "0", "--private", "-s", &private_seed, "--compress"],
        &boot,
        &[],
    );
    let port: u16 = ready_port(&mut pc).parse().unwrap();
    // No half-close: JS hypertele's --compress loses the tail of a half-closed connection
    // (its gzip callbacks write after the end), so the request/response waits for the echo.
    let data = pattern(300_000);
    assert_same(&round_trip(port, &data, false), &data, "echo");
}

#[test]
fn rust_tele_clients_through_a_js_server() {
    let (_dht, boot) = testnet(2);
    let tmp = tempfile::tempdir().unwrap();
    let service = echo_server().to_string();
    let member = KeyPair::from_seed(&[0xa2; 32]);
    let conf = tmp.path().join("server.json");
    std::fs::write(
        &conf,
        format!(
            "{{\"seed\":\"{}\",\"allow\":[\"{}\"]}}",
            seed(0xb2),
            hex::encode(member.public_key)
        ),
    )
    .unwrap();
    let mut server = Proc::js(
        "js server",
        "hypertele/server.js",
        &["-l", &service, "-c", conf.to_str().unwrap()],
        &boot,
        &[],
    );
    let key = key_of(&mut server);
    let net = ["--bootstrap", &boot, "--host", "127.0.0.1"];

    let id = identity(tmp.path(), &member);
    let mut args = vec!["tele", "client", "-p", "0", "-s", &key, "-i", &id];
    args.extend_from_slice(&net);
    let mut client = Proc::hp("rust client (listed)", &args);
    let port: u16 = ready_port(&mut client).parse().unwrap();
    // No half-close here: JS hypertele-server destroys the connection as soon as the service's
    // socket closes, dropping what it has not sent yet (JS to JS loses the tail of a half-closed
    // 1 MiB echo too); the echo is read whole before the connection closes.
    let data = pattern(1 << 20);
    assert_same(&round_trip(port, &data, false), &data, "echo");
    // A second connection through the same client.
    assert_eq!(round_trip(port, b"again", false), b"again");

    let mut args = vec!["tele", "client", "-p", "0", "-s", &key];
    args.extend_from_slice(&net);
    let mut stranger = Proc::hp("rust client (stranger)", &args);
    let port: u16 = ready_port(&mut stranger).parse().unwrap();
    assert!(round_trip(port, b"let me in", false).is_empty());
    assert!(
        stranger.expect("error:").contains("PEER_CONNECTION_FAILED"),
        "the refusal is reported"
    );

    let private_seed = seed(0xc2);
    let mut private = Proc::js(
        "js private server",
        "hypertele/server.js",
        &[
            "-l",
            &service,
            "--seed",
            &private_seed,
            "--private",
            "--compress",
        ],
        &boot,
        &[],
    );
    private.expect("hypertele (private)");
    let mut args = vec![
        "tele",
        "client",
        "-p",
        "0",
        "--private",
        "-s",
        &private_seed,
        "--compress",
    ];
    args.extend_from_slice(&net);
    let mut pc = Proc::hp("rust private client", &args);
    let port: u16 = ready_port(&mut pc).parse().unwrap();
    let data = pattern(300_000);
    assert_same(&round_trip(port, &data, false), &data, "echo");
}
