//! `hyperpunch beam` live against JS hyperbeam 3.1.0 (its own `bin.js`, run unchanged through
//! `tests/interop/tool-run.js`) on a loopback testnet of `hyperpunch dht` nodes, both ways:
//! the side that makes the passphrase announces, the other connects with it; 1 MiB one way and
//! a line the other, both processes exit 0 once the sender's input ended. Then `-r`: hyperpunch
//! announces again with JS's passphrase, and a stranger's key pair is refused.

mod common;
use common::tools::{assert_same, pattern, testnet, Proc};

fn passphrase(p: &mut Proc) -> String {
    let line = p.expect("to connect");
    let key = line
        .split_whitespace()
        .skip_while(|w| *w != "hyperbeam" && *w != "beam")
        .nth(1)
        .unwrap_or_else(|| panic!("no passphrase in {line:?}"))
        .to_string();
    assert_eq!(key.len(), 52, "{line}");
    key
}

#[test]
fn rust_announces_js_connects() {
    let (_dht, boot) = testnet(2);
    let net = ["--bootstrap", &boot, "--host", "127.0.0.1"];
    let mut args = vec!["beam"];
    args.extend_from_slice(&net);
    let mut rust = Proc::hp("rust beam", &args);
    let big = pattern(1 << 20);
    rust.feed(big.clone());
    let key = passphrase(&mut rust);
    // Announced (hyperbeam does not retry a PEER_NOT_FOUND).
    rust.expect("Joined the DHT");
    // The public key alone is not enough: a stranger's key pair is refused by the firewall.
    let pk = hex::encode(hyperpunch::beam::key_pair(&key).unwrap().public_key);
    let mut args = vec!["dht", "connect", &pk];
    args.extend_from_slice(&net);
    let mut stranger = Proc::hp("stranger", &args);
    stranger.close_stdin();
    assert_ne!(stranger.finish().0, Some(0));
    assert!(stranger.expect("error").contains("PEER_CONNECTION_FAILED"));
    let mut js = Proc::js("js beam", "hyperbeam/bin.js", &[&key], &boot, &[]);
    // The receiver's stdin stays open (a terminal, in real use): hyperbeam ends a side once its
    // peer ended, so a receiver whose own input ended first would cut the transfer short (JS
    // to JS does the same).
    js.write(b"hello from js\n");
    let (code, out) = js.finish();
    assert_eq!(code, Some(0), "js: {:?}", js.output());
    assert_same(&out, &big, "what JS got");
    let (code, out) = rust.finish();
    assert_eq!(code, Some(0), "rust: {:?}", rust.output());
    assert_eq!(out, b"hello from js\n");
    rust.expect("Success! Encrypted tunnel established");
}

#[test]
fn js_announces_rust_connects_then_rust_restarts_with_its_passphrase() {
    let (_dht, boot) = testnet(2);
    let net = ["--bootstrap", &boot, "--host", "127.0.0.1"];
    let mut js = Proc::js("js beam", "hyperbeam/bin.js", &[], &boot, &[]);
    let big = pattern(1 << 20);
    js.feed(big.clone());
    let key = passphrase(&mut js);
    js.expect("Joined the DHT");
    let mut args = vec!["beam", &key];
    args.extend_from_slice(&net);
    let mut rust = Proc::hp("rust beam", &args);
    rust.write(b"hello from rust\n");
    let (code, out) = rust.finish();
    assert_eq!(code, Some(0), "rust: {:?}", rust.output());
    assert_same(&out, &big, "what hyperpunch got");
    let (code, out) = js.finish();
    assert_eq!(code, Some(0), "js: {:?}", js.output());
    assert_eq!(out, b"hello from rust\n");

    // hyperpunch announces with JS's passphrase (-r); JS connects to it.
    let mut args = vec!["beam", &key, "-r"];
    args.extend_from_slice(&net);
    let mut rust = Proc::hp("rust beam -r", &args);
    rust.feed(b"again\n".to_vec());
    rust.expect("Run hyperbeam");
    rust.expect("Joined the DHT");
    let mut js = Proc::js("js beam 2", "hyperbeam/bin.js", &[&key], &boot, &[]);
    let (code, out) = js.finish();
    assert_eq!(code, Some(0), "js: {:?}", js.output());
    assert_eq!(out, b"again\n");
    assert_eq!(rust.finish().0, Some(0));
}
