#!/usr/bin/env bash
# Runs the wasm browser tests of hyperpunch-web (IndexedDB storage conformance, persistence,
# wasm-bindgen exports) in headless Chromium through wasm-bindgen-test-runner + chromedriver.
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

echo "==> cargo test -p hyperpunch-web --target wasm32-unknown-unknown (headless Chromium)" >&2
cargo test --locked -p hyperpunch-web --target wasm32-unknown-unknown "$@"
echo "==> browser tests passed" >&2
