#!/usr/bin/env bash
# Runs the wasm browser tests of hyperpunch-web (IndexedDB storage conformance, persistence,
# wasm-bindgen exports, the autobase suite on IndexedDB corestores over in-memory duplexes,
# the dht-relay client against a local `hyperpunch relay`, replication through that relay from
# a native `hyperpunch core serve --swarm`) in headless Chromium through
# wasm-bindgen-test-runner + chromedriver. One file: `bash scripts/test-browser.sh --test autobase`.
# HYPERPUNCH_KEEP_LOGS=DIR copies the servers' and JS peers' logs there on exit.
# Installs the tools first (scripts/install-wasm-tools.sh). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/install-wasm-tools.sh

export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
# Chromium binary and flags (headless, no sandbox as root, nothing phoning home).
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$root/transport-web/webdriver.json"
# Generous: the first test page load compiles the whole test module.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-120}"

[ -x "$CHROMEDRIVER" ] || { echo "error: chromedriver not found at $CHROMEDRIVER" >&2; exit 1; }

# The relay tests need a `hyperpunch relay` (two, and a JS relay: tests/relay_serve.rs) on loopback with a local bootstrap node (never the
# public ones) and a native peer serving a core; the relay's URL and the core reach the test
# module at build time (HYPERPUNCH_TEST_RELAY, HYPERPUNCH_TEST_CORE).
echo "==> starting a bootstrap node and hyperpunch relay on 127.0.0.1" >&2
cargo build --locked -q -p hyperpunch --bin hyperpunch
hp="$root/target/debug/hyperpunch"
tmp=$(mktemp -d)
source scripts/localnet.sh
trap '[ -n "${HYPERPUNCH_KEEP_LOGS:-}" ] && cp "$tmp"/*.out "$tmp"/*.log "$HYPERPUNCH_KEEP_LOGS"/ 2>/dev/null; localnet_stop; rm -rf "$tmp"' EXIT
# The page replicates the served core through the relay (tests/relay_replication.rs).
localnet_start "${HYPERPUNCH_TEST_CORE_BLOCKS:-300}"
export HYPERPUNCH_TEST_RELAY="$relay_url"
# A second relay on its own DHT node: a page serving through one relay is fetched through the
# other (tests/relay_serve.rs), as two browsers on two relays.
"$hp" relay --ws 127.0.0.1:0 --host 127.0.0.1 --bootstrap "$bootstrap" 2>"$tmp/relay2.log" &
pids+=($!)
relay2_url=$(wait_for "$tmp/relay2.log" 's/^relay \(ws:\/\/[0-9.:]*\)$/\1/p') || {
  echo "error: the second relay did not start:" >&2; cat "$tmp/relay2.log" >&2; exit 1; }
export HYPERPUNCH_TEST_RELAY2="$relay2_url"
# And a JS @hyperswarm/dht-relay 0.4.3 relay on a JS hyperdht node (the pinned reference).
bash scripts/install-js-reference.sh
node tests/interop/relay-stall-jsrelay.js "$bootstrap" >"$tmp/jsrelay.out" 2>"$tmp/jsrelay.log" &
pids+=($!)
jsrelay_url=$(wait_for "$tmp/jsrelay.out" 's/^relay \(ws:\/\/[0-9.:]*\)$/\1/p') || {
  echo "error: the JS relay did not start:" >&2; cat "$tmp/jsrelay.out" "$tmp/jsrelay.log" >&2; exit 1; }
export HYPERPUNCH_TEST_JSRELAY="$jsrelay_url"
# A JS hyperswarm 4.17.2 peer on a random topic, server and client (tests/swarm_pages.rs meets
# it through the JS relay and ours).
jspeer_topic=$(python3 -c 'import os; print(os.urandom(32).hex())')
TIMEOUT_MS=1800000 node tests/interop/swarm-topic-peer.js "$bootstrap" "$jspeer_topic" >"$tmp/jspeer.out" 2>"$tmp/jspeer.log" &
pids+=($!)
jspeer_key=$(wait_for "$tmp/jspeer.out" 's/^joined \([0-9a-f]*\)$/\1/p') || {
  echo "error: the JS hyperswarm peer did not join:" >&2; cat "$tmp/jspeer.out" "$tmp/jspeer.log" >&2; exit 1; }
export HYPERPUNCH_TEST_JSPEER="$jspeer_topic:$jspeer_key"
# A JS hyperswarm peer seeding a corestore (a hyperdrive and a core "notes" of two blocks) on
# the drive's discovery key: tests/swarm_pages.rs replicates "notes" from it through each relay.
TIMEOUT_MS=1800000 node tests/interop/swarm-drive-peer.js "$bootstrap" 2 >"$tmp/jsdrive.out" 2>"$tmp/jsdrive.log" &
pids+=($!)
seeding=$(wait_for "$tmp/jsdrive.out" 's/^seeding \([0-9a-f]*\) \([0-9a-f]*\)$/\1:\2/p') || {
  echo "error: the JS drive seeder did not announce:" >&2; cat "$tmp/jsdrive.out" "$tmp/jsdrive.log" >&2; exit 1; }
export HYPERPUNCH_TEST_JSDRIVE="$seeding"
export HYPERPUNCH_TEST_CORE="$core_key:$core_len"
echo "==> relay at $relay_url; core $core_key ($core_len blocks) served through the DHT" >&2

echo "==> cargo test -p hyperpunch-web --target wasm32-unknown-unknown (headless Chromium)" >&2
cargo test --locked -p hyperpunch-web --target wasm32-unknown-unknown "$@"
echo "==> browser tests passed" >&2
