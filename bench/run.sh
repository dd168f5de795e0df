#!/usr/bin/env bash
# `just bench`: hyperpunch and the pinned JS reference on the same work, in one run, on this machine.
#
# 1. JS: bench/js/append.js (a verbatim copy of the reference jsbench/append.js) with the pinned
#    hypercore from tests/interop/node_modules.
# 2. Rust: the release example `bench_hypercore` (transport-native/examples/bench_hypercore.rs) doing
#    the same appends/gets on hyperpunch::FileStorage, plus Rust-only figures (proofs, BLAKE2b,
#    Ed25519) and, each in a process of its own, the peak RSS while appending 1 GiB of 4 KiB blocks
#    to a core, and while writing the same data straight to FileStorage (the storage's share).
# 3. Prints a table (JS, Rust, Rust/JS computed from the figures of this run) to stdout and writes
#    it to bench/latest.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
modules="$root/tests/interop/node_modules"
if [ ! -f "$modules/hypercore/package.json" ]; then
  echo "error: the JS reference is not installed ($modules/hypercore is missing): run \`npm ci --prefix tests/interop\` (or \`just setup\`)" >&2
  exit 1
fi

tmp=$(mktemp -d)
cleanup() { rm -rf "$tmp" /tmp/hp-jsbench; }
trap cleanup EXIT

echo "==> building the Rust benchmark (release)" >&2
cargo build --release --locked -q -p hyperpunch --example bench_hypercore
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/release/examples/bench_hypercore"

echo "==> JS reference: bench/js/append.js" >&2
(cd "$root/tests/interop" && NODE_PATH="$modules" node "$root/bench/js/append.js") | tee "$tmp/js.txt" >&2

echo "==> hyperpunch: bench_hypercore compare" >&2
"$bin" compare | tee "$tmp/rust.txt" >&2
echo "==> hyperpunch: bench_hypercore rust-only" >&2
"$bin" rust-only | tee -a "$tmp/rust.txt" >&2
echo "==> hyperpunch: bench_hypercore rss (1 GiB of 4 KiB blocks, own process)" >&2
"$bin" rss | tee -a "$tmp/rust.txt" >&2
echo "==> hyperpunch: bench_hypercore rss-raw (the same writes straight to FileStorage, own process)" >&2
"$bin" rss-raw | tee -a "$tmp/rust.txt" >&2

# JS lines -> "key value" (same keys as the Rust BENCH lines).
awk '
  /^append size=/ {
    split($2, s, "="); split($3, n, "="); b = $4; sub(/^batch=/, "", b); sub(/:$/, "", b)
    tag = s[2] "_" n[2] "_" b
    for (i = 1; i <= NF; i++) {
      if ($i == "blocks/s,") print "append_" tag "_blocks_s", $(i - 1)
      if ($i == "MB/s") print "append_" tag "_mb_s", $(i - 1)
    }
  }
  /^ *get all:/ { for (i = 1; i <= NF; i++) if ($i == "gets/s") print "get_" tag "_gets_s", $(i - 1) }
' "$tmp/js.txt" >"$tmp/js.kv"
awk '$1 == "BENCH" { print $2, $3 }' "$tmp/rust.txt" >"$tmp/rust.kv"

val() { awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "" }' "$1"; }
fmt() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else printf "%.2f", v }' || printf 'missing'; }
ratio() {
  if [ -n "$1" ] && [ -n "$2" ]; then awk -v j="$1" -v r="$2" 'BEGIN { if (j > 0) printf "%.2f×", r / j; else printf "n/a" }'; else printf 'n/a'; fi
}

{
  echo "# hyperpunch vs JS reference (hypercore $(node -p "require('$modules/hypercore/package.json').version"))"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPU ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), node $(node --version), $(rustc --version | cut -d' ' -f1-2)."
  echo "Both on the native file backend in \`${TMPDIR:-/tmp}\` (JS: hypercore-storage/RocksDB, Rust: \`hyperpunch::FileStorage\`/fjall),"
  echo "same process work as \`bench/js/append.js\`; the ratio is Rust/JS from this run (higher is better for Rust)."
  echo
  echo "| work | unit | JS | Rust | Rust/JS |"
  echo "|---|---|---:|---:|---:|"
  while IFS='|' read -r key label unit; do
    j=$(val "$tmp/js.kv" "$key"); r=$(val "$tmp/rust.kv" "$key")
    echo "| $label | $unit | $(fmt "$j") | $(fmt "$r") | $(ratio "$j" "$r") |"
  done <<'EOF'
append_64_100000_1000_blocks_s|append 100k × 64 B, batches of 1000|blocks/s
get_64_100000_1000_gets_s|get every block (100k × 64 B)|gets/s
append_4096_20000_100_mb_s|append 20k × 4 KiB, batches of 100|MB/s
get_4096_20000_100_gets_s|get every block (20k × 4 KiB)|gets/s
append_64_5000_1_blocks_s|append 5k × 64 B, one at a time|blocks/s
get_64_5000_1_gets_s|get every block (5k × 64 B)|gets/s
EOF
  echo
  echo "Rust only:"
  echo
  echo "| work | unit | Rust |"
  echo "|---|---|---:|"
  while IFS='|' read -r key label unit; do
    echo "| $label | $unit | $(fmt "$(val "$tmp/rust.kv" "$key")") |"
  done <<'EOF'
proof_gen_per_s|proof generation, random block + upgrade, 1M-block core|proofs/s
proof_verify_per_s|proof verification (fresh reader), same proofs|proofs/s
blake2b_64_mb_s|BLAKE2b-256, 64 B inputs|MB/s
blake2b_4096_mb_s|BLAKE2b-256, 4 KiB inputs|MB/s
ed25519_sign_per_s|Ed25519 sign (112-byte signable)|signs/s
ed25519_verify_per_s|Ed25519 verify (112-byte signable)|verifies/s
rss_append_mb_s|append 1 GiB of 4 KiB blocks, batches of 256|MB/s
rss_length|  length after the 1 GiB append|blocks
rss_vmhwm_before_kib|  VmHWM before appending|KiB
rss_vmhwm_quarter_kib|  VmHWM after 256 MiB|KiB
rss_vmhwm_after_kib|  VmHWM after 1 GiB|KiB
rss_raw_vmhwm_quarter_kib|  same writes straight to FileStorage (no hypercore): VmHWM after 256 MiB|KiB
rss_raw_vmhwm_after_kib|  same writes straight to FileStorage (no hypercore): VmHWM after 1 GiB|KiB
EOF
  q=$(val "$tmp/rust.kv" rss_vmhwm_quarter_kib); a=$(val "$tmp/rust.kv" rss_vmhwm_after_kib)
  if [ -n "$q" ] && [ -n "$a" ]; then
    echo
    awk -v q="$q" -v a="$a" 'BEGIN { printf "Peak RSS of the 1 GiB append grew by %.0f MiB between 256 MiB and 1 GiB appended (flat would be about 0).\n", (a - q) / 1024 }'
  fi
} | tee "$tmp/table.md"
cp "$tmp/table.md" "$root/bench/latest.md"
{
  echo "# Benchmarks"
  echo
  echo "hyperpunch against the pinned JS reference on the same machine, in the same run. Produced by"
  echo '`./run.sh bench` (= `just bench` = `bash bench/run.sh`), which rewrites this file; targets are from'
  echo "the foundation issue (append 64 B batched ≥ 10×, 4 KiB batched ≥ 5×, one at a time ≥ 5×, get ≥ 10×)."
  echo
  cat "$tmp/table.md"
} > "$root/BENCHMARKS.md"
echo >&2
echo "(written to bench/latest.md and BENCHMARKS.md)" >&2
