#!/usr/bin/env bash
# Installs what the wasm build and the browser tests need. Idempotent: each step is skipped when
# its tool is already there.
#   - the wasm32-unknown-unknown rustup target
#   - wasm-bindgen-cli at EXACTLY the wasm-bindgen version pinned in Cargo.lock
#     (wasm-bindgen-test-runner refuses to run a module built by another version)
#   - Debian chromium + chromium-driver (headless browser for wasm-bindgen-test)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

log() { echo "==> $*" >&2; }
die() {
  echo "error: $*" >&2
  exit 1
}

# 1. The wasm32 target.
if rustup target list --installed | grep -qx 'wasm32-unknown-unknown'; then
  log "rustup target wasm32-unknown-unknown: present"
else
  log "adding rustup target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# 2. wasm-bindgen-cli pinned to Cargo.lock.
[ -f Cargo.lock ] || die "Cargo.lock not found in $(pwd)"
want=$(awk '
  $0 == "[[package]]" { name = ""; next }
  /^name = / { gsub(/"/, "", $3); name = $3; next }
  /^version = / && name == "wasm-bindgen" { gsub(/"/, "", $3); print $3; exit }
' Cargo.lock)
[ -n "$want" ] || die "no wasm-bindgen package in Cargo.lock (is hyperpunch-web in the workspace?)"
have=""
if command -v wasm-bindgen >/dev/null 2>&1; then
  have=$(wasm-bindgen --version | awk '{print $2}')
fi
if [ "$have" = "$want" ] && command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
  log "wasm-bindgen-cli $want: present"
else
  log "installing wasm-bindgen-cli $want (found: ${have:-none}); this compiles for a few minutes"
  # --locked builds the CLI with the dependency versions it was released with. If the registry
  # no longer serves one of them (yanked or missing from a mirror), fall back to a fresh
  # resolution: the CLI version itself stays pinned, which is what the test runner checks.
  if ! cargo install wasm-bindgen-cli --version "$want" --locked --force; then
    echo "warning: 'cargo install --locked' failed; retrying without --locked" >&2
    cargo install wasm-bindgen-cli --version "$want" --force
  fi
  got=$(wasm-bindgen --version | awk '{print $2}')
  [ "$got" = "$want" ] || die "installed wasm-bindgen is $got, Cargo.lock wants $want"
fi

# 3. Chromium and its WebDriver.
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  log "chromium + chromedriver: present"
else
  command -v apt-get >/dev/null 2>&1 || die "/usr/bin/chromium or /usr/bin/chromedriver missing and apt-get is not available; install Chromium and chromedriver"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install chromium chromium-driver"
    sudo="sudo"
  fi
  log "apt-get install chromium chromium-driver"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver
fi
