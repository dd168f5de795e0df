#!/usr/bin/env bash
# Keeps hyperpunch-core sans-IO:
#   1. builds hyperpunch-core and hyperpunch-web for wasm32-unknown-unknown;
#   2. fails if the core's normal dependency tree (for every target) contains an I/O runtime,
#      socket, file-system, database or OS-randomness crate;
#   3. fails if core/src uses the file system, the network, threads, a clock or a global RNG.
# Prints everything it found before exiting non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if ! rustup target list --installed | grep -qx 'wasm32-unknown-unknown'; then
  echo "error: rustup target wasm32-unknown-unknown is missing; run scripts/install-wasm-tools.sh" >&2
  exit 1
fi

echo "==> cargo build --target wasm32-unknown-unknown -p hyperpunch-core -p hyperpunch-web" >&2
cargo build --locked --target wasm32-unknown-unknown -p hyperpunch-core -p hyperpunch-web

failed=0

# 2. Dependency tree of the core, normal edges only (dev-dependencies may do I/O in tests).
forbidden=(
  # async runtimes and their reactors
  tokio mio async-io async-std smol polling async-executor async-global-executor async-net
  async-fs async-process futures-timer
  # sockets and network stacks
  socket2 nix hyper reqwest ureq quinn udx
  # file systems and databases
  tempfile fjall redb rocksdb librocksdb-sys sled memmap2 fs2 fs4 fs-err walkdir notify dirs
  # OS randomness (the core takes seeds and nonces as arguments)
  getrandom
)
echo "==> cargo tree -p hyperpunch-core -e normal --target all" >&2
deps=$(cargo tree --locked -p hyperpunch-core -e normal --target all --prefix none --format '{p}' |
  awk '{print $1}' | sort -u)
echo "    $(echo "$deps" | wc -l) crates in the core's normal dependency tree" >&2
for name in "${forbidden[@]}"; do
  if grep -qx -- "$name" <<<"$deps"; then
    echo "FORBIDDEN DEPENDENCY in hyperpunch-core: $name, pulled in by:" >&2
    cargo tree --locked -p hyperpunch-core -e normal --target all -i "$name" >&2 || true
    failed=1
  fi
done

# 3. Source patterns, in non-test code only: `#[cfg(test)]` items are skipped (test vectors are
# read from files), as are files declared as `#[cfg(test)] mod name;` and comment lines (docs
# may name what is banned).
non_test_code() {
  # Files that are test-only modules.
  local skip
  skip=$(find core/src -name '*.rs' -print0 | xargs -0 awk '
    FNR == 1 { pending = 0 }
    /^[[:space:]]*#\[cfg\(test\)\][[:space:]]*$/ { pending = 1; next }
    pending && /^[[:space:]]*#\[/ { next }
    pending {
      if (match($0, /^[[:space:]]*(pub(\([a-z]+\))?[[:space:]]+)?mod[[:space:]]+[A-Za-z0-9_]+[[:space:]]*;/)) {
        name = $0; sub(/^[[:space:]]*(pub(\([a-z]+\))?[[:space:]]+)?mod[[:space:]]+/, "", name); sub(/[[:space:]]*;.*/, "", name)
        dir = FILENAME; sub(/\/[^\/]*$/, "", dir)
        base = FILENAME; sub(/^.*\//, "", base); sub(/\.rs$/, "", base)
        if (base != "mod" && base != "lib") dir = dir "/" base
        print dir "/" name ".rs"; print dir "/" name "/mod.rs"
      }
      pending = 0
    }')
  find core/src -name '*.rs' | sort | while read -r f; do
    if grep -qxF -- "$f" <<<"$skip"; then continue; fi
    case "$f" in core/src/*/tests/*) continue ;; esac
    awk -v file="$f" '
      # Skip the item after #[cfg(test)]: one line if it ends in ";", else until its braces close.
      /^[[:space:]]*#\[cfg\(test\)\]/ { skipping = 1; depth = 0; opened = 0; next }
      skipping {
        line = $0
        o = gsub(/\{/, "{", line); c = gsub(/\}/, "}", line)
        depth += o - c; if (o > 0) opened = 1
        if ((!opened && $0 ~ /;[[:space:]]*$/) || (opened && depth <= 0)) skipping = 0
        next
      }
      /^[[:space:]]*\/\// { next }
      { print file ":" FNR ":" $0 }
    ' "$f"
  done
}
patterns=(
  'std::fs\b'
  '\bstd::net\b'
  'std::thread\b'
  'std::process\b'
  'SystemTime::now'
  'Instant::now'
  'thread_rng'
  'rand::rng\(\)'
  '\bOsRng\b'
  '\buse std::\{[^}]*\b(fs|net|thread|process)\b'
)
echo "==> grep core/src (non-test code) for file system, network, threads, clocks, global RNGs" >&2
code=$(non_test_code)
echo "    $(wc -l <<<"$code") lines of non-test code scanned" >&2
for pat in "${patterns[@]}"; do
  hits=$(grep -E -- "$pat" <<<"$code" || true)
  if [ -n "$hits" ]; then
    echo "FORBIDDEN USE in core/src (/$pat/; for address types use core::net):" >&2
    echo "$hits" >&2
    failed=1
  fi
done

if [ "$failed" -ne 0 ]; then
  echo "error: hyperpunch-core must stay sans-IO (see above)" >&2
  exit 1
fi
echo "==> hyperpunch-core is sans-IO and builds for wasm32 (with hyperpunch-web)" >&2
