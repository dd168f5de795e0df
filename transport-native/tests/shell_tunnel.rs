//! hypershell's local port forwarding (`-L`, the `hypershell-tunnel-local` channel and its UDX
//! streams beside the connection) live on a loopback testnet of `hyperpunch dht` nodes: JS
//! `hypershell -L` through `hyperpunch shell server`, `hyperpunch shell connect -L` through JS
//! `hypershell-server`, and hyperpunch on both sides with the server's `--tunnel-host` /
//! `--tunnel-port` restrictions (a target outside them refused) and a client not on the allow
//! list refused before anything is connected. Each forwarded connection carries megabytes to a
//! TCP echo server and back, compared byte for byte. (Also here, beside the JS client: the exit
//! code of a remote command killed by a signal.)
//! Every process gets its own HOME (hypershell keeps files in ~/.hypershell).

mod common;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::shell::{hp, js, Home};
use common::tools::{assert_same, echo_server, pattern, round_trip, testnet, Proc};

/// A key made by `hyperpunch shell keygen`; returns its public key.
fn keygen(home: &Home, file: &str) -> String {
    let mut p = hp("keygen", home, &["shell", "keygen", "-f", file]);
    let (code, out) = p.finish();
    assert_eq!(code, Some(0), "{:?}", p.output());
    String::from_utf8(out).unwrap().trim().to_string()
}

/// The port of a `Tunnel on TCP HOST:PORT` line.
fn tunnel_port(p: &mut Proc) -> u16 {
    let l = p.expect("Tunnel on TCP");
    l.rsplit(':').next().unwrap().trim().parse().unwrap()
}

/// Forwarded connections through the tunnel on `port`: two of 3 MiB at once, then three
/// small ones in turn (a new stream each), every byte echoed back. With `half_close` the
/// test's side shuts its writing down after sending and reads to the end (hyperpunch passes a
/// half-close on); without, it reads as many bytes as it sent: JS hypershell's tunnel ends the
/// whole connection at a half-close (node's sockets are not `allowHalfOpen`, and `pump`
/// destroys every stream once one finished), so a JS side needs the client to wait for its
/// answer, as request-response protocols do.
fn carry(port: u16, half_close: bool, who: &mut [&mut Proc]) {
    let big = pattern(3 << 20);
    let ts: Vec<_> = (0..2)
        .map(|i| {
            let mut d = big.clone();
            d.rotate_left(i * 7919);
            std::thread::spawn(move || {
                let got = round_trip(port, &d, half_close);
                (d, got)
            })
        })
        .collect();
    for t in ts {
        let (want, got) = t.join().unwrap();
        if got != want {
            let out: Vec<_> = who
                .iter_mut()
                .map(|p| (p.name.clone(), p.output()))
                .collect();
            assert_same(&got, &want, &format!("3 MiB through the tunnel; {out:?}"));
        }
    }
    for i in 0..3 {
        let d = pattern(1000 + i * 50_000);
        let got = round_trip(port, &d, half_close);
        if got != d {
            let out: Vec<_> = who
                .iter_mut()
                .map(|p| (p.name.clone(), p.output()))
                .collect();
            assert_same(
                &got,
                &d,
                &format!("connection {i} through the tunnel; {out:?}"),
            );
        }
    }
}

/// A TCP listener on 127.0.0.1 counting the connections it gets (and closing them).
fn counting_target() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            if s.is_ok() {
                n2.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, n)
}

#[test]
fn js_client_through_rust_server() {
    let (_dht, boot) = testnet(2);
    let net = ["--bootstrap", boot.as_str(), "--host", "127.0.0.1"];
    let server_home = Home::new();
    let client_home = Home::new();
    let server_key = server_home.file("server-key");
    keygen(&server_home, &server_key);
    // The JS client reads a key file made by us (the same format as hypershell-keygen's).
    let client_key = client_home.file("peer");
    let client_pk = keygen(&client_home, &client_key);
    let allow = server_home.file("authorized_peers");
    std::fs::write(&allow, format!("{client_pk}\n")).unwrap();
    let mut args = vec!["shell", "server", "-f", &server_key, "--firewall", &allow];
    args.extend_from_slice(&net);
    let mut server = hp("rust server", &server_home, &args);
    let key = server
        .expect("hyperpunch shell connect")
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    let echo = echo_server();
    let spec = format!("127.0.0.1:0:127.0.0.1:{echo}");
    let mut client = js(
        "js client -L",
        "client.js",
        &client_home,
        &[&key, "-f", &client_key, "-L", &spec],
        &boot,
    );
    let port = tunnel_port(&mut client);
    carry(port, false, &mut [&mut client, &mut server]);
    server.expect(&format!("Firewall allowed: {client_pk}"));

    // Not a tunnel: a remote command killed by a signal. The server reports 128 + the signal
    // (137 for SIGKILL, a shell's `$?`; JS's server would send tt-native's 0), and JS's client
    // as ours exits with it.
    let kill = ["--", "sh", "-c", "kill -9 $$"];
    let mut args = vec![key.as_str(), "-f", &client_key];
    args.extend_from_slice(&kill);
    let mut p = js("js killed", "client.js", &client_home, &args, &boot);
    p.close_stdin();
    let (code, _) = p.finish();
    assert_eq!(code, Some(137), "{:?}", p.output());
    let mut args = vec!["shell", "exec", &key, "-f", &client_key];
    args.extend_from_slice(&net);
    args.extend_from_slice(&kill);
    let mut p = hp("rust killed", &client_home, &args);
    p.close_stdin();
    let (code, _) = p.finish();
    assert_eq!(code, Some(137), "{:?}", p.output());
}

#[test]
fn rust_client_through_js_server() {
    let (_dht, boot) = testnet(2);
    let net = ["--bootstrap", boot.as_str(), "--host", "127.0.0.1"];
    let server_home = Home::new();
    let client_home = Home::new();
    let client_key = client_home.file("peer");
    let client_pk = keygen(&client_home, &client_key);
    let allow = server_home.file("authorized_peers");
    std::fs::write(&allow, format!("{client_pk}\n")).unwrap();
    let server_key = server_home.file("server-key");
    let echo = echo_server();
    let echo_s = echo.to_string();
    let (other, hits) = counting_target();
    let mut server = js(
        "js server",
        "server.js",
        &server_home,
        &[
            "-f",
            &server_key,
            "--firewall",
            &allow,
            "--tunnel-host",
            "127.0.0.1",
            "--tunnel-port",
            &echo_s,
        ],
        &boot,
    );
    let key = server
        .expect("hypershell ")
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    let spec = format!("127.0.0.1:0:127.0.0.1:{echo}");
    let mut args = vec!["shell", "connect", &key, "-f", &client_key, "-L", &spec];
    args.extend_from_slice(&net);
    let mut client = hp("rust client -L", &client_home, &args);
    let port = tunnel_port(&mut client);
    carry(port, false, &mut [&mut client, &mut server]);

    // A target outside JS's --tunnel-port: JS closes the tunnel; we say so and exit 255.
    let spec = format!("127.0.0.1:0:127.0.0.1:{other}");
    let mut args = vec!["shell", "connect", &key, "-f", &client_key, "-L", &spec];
    args.extend_from_slice(&net);
    let mut refused = hp("rust client refused", &client_home, &args);
    refused.close_stdin();
    let (code, _) = refused.finish();
    assert_eq!(code, Some(255), "{:?}", refused.output());
    // (Waits for the line: stderr is read by another thread than the exit.)
    refused.expect("refused the tunnel");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing connected");
}

#[test]
fn rust_both_ways_restricted_and_stranger() {
    let (_dht, boot) = testnet(2);
    let net = ["--bootstrap", boot.as_str(), "--host", "127.0.0.1"];
    let server_home = Home::new();
    let client_home = Home::new();
    let stranger_home = Home::new();
    let server_key = server_home.file("server-key");
    keygen(&server_home, &server_key);
    let client_key = client_home.file("peer");
    let client_pk = keygen(&client_home, &client_key);
    let stranger_key = stranger_home.file("peer");
    let stranger_pk = keygen(&stranger_home, &stranger_key);
    let allow = server_home.file("authorized_peers");
    std::fs::write(&allow, format!("{client_pk}\n")).unwrap();
    let echo = echo_server();
    let echo_s = echo.to_string();
    let (other, hits) = counting_target();
    let range = format!("{echo}-{echo}");
    let mut args = vec![
        "shell",
        "server",
        "-f",
        &server_key,
        "--firewall",
        &allow,
        "--tunnel-host",
        "127.0.0.1",
        "--tunnel-port",
        "1",
        &range,
    ];
    args.extend_from_slice(&net);
    let mut server = hp("rust server", &server_home, &args);
    let key = server
        .expect("hyperpunch shell connect")
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();

    // Allowed: two -L of one client, both carry.
    let spec = format!("127.0.0.1:0:127.0.0.1:{echo}");
    let mut args = vec![
        "shell",
        "connect",
        &key,
        "-f",
        &client_key,
        "-L",
        &spec,
        "-L",
        &spec,
    ];
    args.extend_from_slice(&net);
    let mut client = hp("rust client -L", &client_home, &args);
    let port = tunnel_port(&mut client);
    carry(port, true, &mut [&mut client, &mut server]);
    let second: u16 = client
        .expect_nth("Tunnel on TCP", 2)
        .rsplit(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(second, port);
    let d = pattern(1 << 20);
    assert_same(&round_trip(second, &d, true), &d, "the second -L");

    // Refused targets: a port outside --tunnel-port, and a host named otherwise
    // (`localhost` is not `127.0.0.1`).
    for spec in [
        format!("127.0.0.1:0:127.0.0.1:{other}"),
        format!("127.0.0.1:0:localhost:{echo_s}"),
    ] {
        let mut args = vec!["shell", "connect", &key, "-f", &client_key, "-L", &spec];
        args.extend_from_slice(&net);
        let mut refused = hp("rust client refused", &client_home, &args);
        refused.close_stdin();
        let (code, _) = refused.finish();
        assert_eq!(code, Some(255), "{:?}", refused.output());
        refused.expect("refused the tunnel");
    }
    server.expect(&format!("Tunnel refused: 127.0.0.1:{other}"));
    server.expect(&format!("Tunnel refused: localhost:{echo}"));

    // A JS client asking for the refused target: its local connection is closed unanswered.
    let mut js_client = js(
        "js client refused",
        "client.js",
        &client_home,
        &[
            &key,
            "-f",
            &client_key,
            "-L",
            &format!("127.0.0.1:0:127.0.0.1:{other}"),
        ],
        &boot,
    );
    let port = tunnel_port(&mut js_client);
    let got = round_trip(port, b"hello?", false);
    assert!(got.is_empty(), "{} bytes came back", got.len());
    server.expect("Tunnel refused: 127.0.0.1:");

    // A client not on the allow list: refused by the firewall while connecting, before any
    // tunnel opens or anything is connected.
    let spec = format!("127.0.0.1:0:127.0.0.1:{other}");
    let mut args = vec!["shell", "connect", &key, "-f", &stranger_key, "-L", &spec];
    args.extend_from_slice(&net);
    let mut stranger = hp("stranger -L", &stranger_home, &args);
    stranger.close_stdin();
    let (code, _) = stranger.finish();
    assert_eq!(code, Some(255), "{:?}", stranger.output());
    stranger.expect("PEER_CONNECTION_FAILED");
    let lines = stranger.output();
    assert!(
        !lines.iter().any(|l| l.contains("Tunnel on TCP")),
        "{lines:?}"
    );
    server.expect(&format!("Firewall denied: {stranger_pk}"));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing connected");
}
