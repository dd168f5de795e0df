#!/usr/bin/env bash
# Runs the wasm browser tests of hyperpunch-web (IndexedDB storage conformance, persistence,
# wasm-bindgen exports, the dht-relay client against a local `hyperpunch relay`) in headless
# Chromium through wasm-bindgen-test-runner + chromedriver.
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

# The relay tests need a `hyperpunch relay` on loopback with a local bootstrap node (never the
# public ones); its URL reaches the test module at build time (HYPERPUNCH_TEST_RELAY).
echo "==> starting a bootstrap node and hyperpunch relay on 127.0.0.1" >&2
cargo build --locked -q -p hyperpunch --bin hyperpunch
hp="$root/target/debug/hyperpunch"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
boot_port=$(free_port)
"$hp" dht bootstrap --host 127.0.0.1 --port "$boot_port" 2>"$tmp/boot.log" &
pids+=($!)
"$hp" relay --ws 127.0.0.1:0 --host 127.0.0.1 --bootstrap "127.0.0.1:$boot_port" 2>"$tmp/relay.log" &
pids+=($!)
url=""
for _ in $(seq 1 600); do
  url=$(sed -n 's/^relay \(ws:\/\/[0-9.:]*\)$/\1/p' "$tmp/relay.log" | head -1)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "error: the relay did not start:" >&2; cat "$tmp/relay.log" "$tmp/boot.log" >&2; exit 1; }
export HYPERPUNCH_TEST_RELAY="$url"
echo "==> relay at $url" >&2

echo "==> cargo test -p hyperpunch-web --target wasm32-unknown-unknown (headless Chromium)" >&2
cargo test --locked -p hyperpunch-web --target wasm32-unknown-unknown "$@"
echo "==> browser tests passed" >&2
