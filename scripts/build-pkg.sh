#!/usr/bin/env bash
# Builds the npm package in pkg/: transport-web compiled to wasm32 and bound with wasm-bindgen
# --target web into pkg/wasm/ (ES module + .wasm loaded by URL). `--dev` builds without
# optimizations (faster to compile, for tests); the default is a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/install-wasm-tools.sh
profile=release
flag=--release
if [ "${1:-}" = "--dev" ]; then
  profile=debug
  flag=
fi
echo "==> cargo build -p hyperpunch-web --target wasm32-unknown-unknown ($profile)" >&2
cargo build --locked -q -p hyperpunch-web --lib --target wasm32-unknown-unknown $flag
rm -rf pkg/wasm
wasm-bindgen --target web --out-dir pkg/wasm \
  "target/wasm32-unknown-unknown/$profile/hyperpunch_web.wasm"
rm -f pkg/wasm/.gitignore
echo "==> pkg/ built ($(du -h pkg/wasm/hyperpunch_web_bg.wasm | cut -f1) of wasm)" >&2
