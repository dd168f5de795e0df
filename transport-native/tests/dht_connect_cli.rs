//! `hyperpunch dht listen | connect | relay` end to end: the built binary as whole processes on
//! 127.0.0.1 (a CLI bootstrap node and CLI DHT nodes), piping data both ways like netcat,
//! directly and through a `dht relay`, and PEER_NOT_FOUND. Every process is killed when its
//! test ends.

mod common;
use common::hp;
use common::tools::{testnet, Proc};
use std::process::Command;

fn net(boot: &str) -> [&str; 4] {
    ["--bootstrap", boot, "--host", "127.0.0.1"]
}

fn pipe_both_ways(boot: &str, listen_extra: &[&str]) {
    let seed = "01".repeat(32);
    let mut args = vec!["dht", "listen", "--seed", &seed];
    args.extend_from_slice(listen_extra);
    args.extend_from_slice(&net(boot));
    let mut server = Proc::hp("listen", &args);
    let line = server.expect("listening ");
    let key = line.trim().strip_prefix("listening ").unwrap().to_string();
    assert_eq!(key.len(), 64);
    let mut args = vec!["dht", "connect", &key];
    args.extend_from_slice(&net(boot));
    let mut client = Proc::hp("connect", &args);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    client.feed(big.clone());
    server.feed(b"hello from the server\n".to_vec());
    let (code_c, out_c) = client.finish();
    let (code_s, out_s) = server.finish();
    assert_eq!((code_c, code_s), (Some(0), Some(0)), "both exit cleanly");
    assert_eq!(out_c, b"hello from the server\n");
    assert_eq!(out_s.len(), big.len());
    assert_eq!(out_s, big);
}

#[test]
fn listen_and_connect_pipe_both_ways() {
    let (_dht, boot) = testnet(3);
    pipe_both_ways(&boot, &[]);
}

#[test]
fn listen_with_relay_through_a_cli_relay() {
    let (_dht, boot) = testnet(3);
    let mut args = vec!["dht", "relay", "--seed", "05"];
    let seed = "05".repeat(32);
    args[3] = &seed;
    args.extend_from_slice(&net(&boot));
    let mut relay = Proc::hp("relay", &args);
    let line = relay.expect("relay ");
    let rkey = line.trim().strip_prefix("relay ").unwrap().to_string();
    // On loopback the CLI nodes find they are not firewalled, so the direct path wins the race
    // with the relay; the relayed path itself is tested in tests/tests/dht_connect_interop.rs.
    pipe_both_ways(&boot, &["--relay-through", &rkey]);
    drop(relay);
}

#[test]
fn connect_to_an_unknown_key_is_peer_not_found() {
    let (_dht, boot) = testnet(2);
    let key = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
    let mut args = vec!["dht", "connect", key, "--timeout", "60"];
    args.extend_from_slice(&net(&boot));
    let out = hp(&args, b"");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PEER_NOT_FOUND"), "{err}");
    let out = hp(&["dht", "connect", "zz", "--bootstrap", &boot], b"");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("64 hex"),
        "clear error on a bad key"
    );
}

/// `--timeout` bounds the whole attempt in the core: a server that stops answering (stopped
/// with SIGSTOP: its announcement stays on the DHT, its handshakes go unanswered) gives
/// CONNECT_TIMEOUT after the given seconds, past the core's default of 60 s too (before,
/// `--timeout 120` was cut short at 60 s by the core's default bound).
#[test]
fn connect_gives_up_after_its_timeout() {
    let (_dht, boot) = testnet(2);
    let seed = "07".repeat(32);
    let mut args = vec!["dht", "listen", "--seed", &seed];
    args.extend_from_slice(&net(&boot));
    let mut server = Proc::hp("listen", &args);
    let line = server.expect("listening ");
    let key = line.trim().strip_prefix("listening ").unwrap().to_string();
    let pid = server.child.id().to_string();
    let stop = |sig: &str| {
        let st = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(st.success(), "kill {sig} {pid}");
    };
    stop("-STOP");
    let mut args = vec!["dht", "connect", &key, "--timeout", "2"];
    args.extend_from_slice(&net(&boot));
    let out = hp(&args, b"");
    stop("-CONT");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("CONNECT_TIMEOUT: no connection within 2000 ms"),
        "the core's timeout, not the CLI's backstop: {err}"
    );
}
