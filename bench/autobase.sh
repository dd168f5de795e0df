#!/usr/bin/env bash
# The autobase benchmark: hyperpunch's autobase engine against the pinned JS autobase 7.28.1, on
# the same work, in one run, each on its native file storage (JS: corestore's RocksDB, Rust:
# FileStorage), every member with a store of its own, members replicated in one process over
# secret-stream on in-memory duplexes, each connected to the room's creator. The apply function
# is the one of `hyperpunch chat` (JSON add / message values, a view `messages`); the creator is
# the only indexer and acks.
#
#   bash bench/autobase.sh            # prints the table, writes bench/latest-autobase.md
#   bash bench/autobase.sh OUT.md     # (bench/run.sh) writes the table to OUT.md only
#
# 1. Appends linearized per second with 1, 3 and 10 writers: every member appends its share of
#    $AUTOBASE_APPENDS messages (default 1000) one at a time, concurrently; the clock stops when
#    every member's view holds them all as indexed (bench/js/autobase.js `writers W`, the release
#    example bench_autobase `writers W`). Rates per wall-clock second and per CPU second.
# 2. A new reader catching up on $AUTOBASE_CATCHUP indexed entries (default 100000, written by
#    the creator in batches of 1000 beforehand): connect to the creator, clock stops when the
#    reader's view holds them all as indexed. JS twice: with fast-forward (its default: the
#    reader takes the indexer's signed system and view cores) and without (every oplog block
#    downloaded and linearized, the work hyperpunch does; it has no fast-forward yet).
# 3. A new reader of a JS creator's base fast-forwards, both sides over TCP on 127.0.0.1: the JS
#    creator (bench/js/autobase.js `serve`, $AUTOBASE_CATCHUP entries, indexed and signed) serves
#    its corestore; a JS reader (`ffread`, fast-forward on) and the hyperpunch reader
#    (bench_autobase `ffread`: hyperpunch::autobase_ff) each connect as new readers, timed until
#    their view holds the entries as indexed. Only a JS-indexed base can be fast-forwarded (a
#    hyperpunch indexer signs no checkpoints yet), hence the JS creator.
# Best of $AUTOBASE_BEST runs (default 1: the JS side takes minutes), JS and Rust interleaved.
# Nothing is hard-coded: every ratio is computed from the figures of this run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out_md=${1:-}
modules="$root/tests/interop/node_modules"
if [ ! -f "$modules/autobase/package.json" ]; then
  echo "error: the JS reference is not installed ($modules/autobase is missing): run \`npm ci --prefix tests/interop\` (or \`just setup\`)" >&2
  exit 1
fi
best=${AUTOBASE_BEST:-1}
appends=${AUTOBASE_APPENDS:-1000}
catchup=${AUTOBASE_CATCHUP:-100000}
export AUTOBASE_APPENDS=$appends
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "==> building bench_autobase (release)" >&2
cargo build --release --locked -q -p hyperpunch --example bench_autobase
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
abin="$target_dir/release/examples/bench_autobase"
js() { (cd "$root/tests/interop" && NODE_PATH="$modules" node "$@"); }

: >"$tmp/js.txt"
: >"$tmp/rust.txt"
for i in $(seq 1 "$best"); do
  for w in 1 3 10; do
    echo "==> JS autobase: $w writer(s), $appends appends ($i/$best)" >&2
    js "$root/bench/js/autobase.js" writers "$w" | tee -a "$tmp/js.txt" >&2
    echo "==> hyperpunch: $w writer(s), $appends appends ($i/$best)" >&2
    "$abin" writers "$w" | tee -a "$tmp/rust.txt" >&2
  done
  echo "==> JS autobase: a new reader catches up on $catchup entries, with and without fast-forward ($i/$best)" >&2
  js "$root/bench/js/autobase.js" catchup "$catchup" | tee -a "$tmp/js.txt" >&2
  echo "==> hyperpunch: a new reader catches up on $catchup entries ($i/$best)" >&2
  "$abin" catchup "$catchup" | tee -a "$tmp/rust.txt" >&2
done
echo "==> JS creator with $catchup entries for the fast-forward readers" >&2
mkfifo "$tmp/serve.in"
js "$root/bench/js/autobase.js" serve "$catchup" <"$tmp/serve.in" >"$tmp/serve.out" 2>"$tmp/serve.err" &
serve_pid=$!
exec 3>"$tmp/serve.in"
for _ in $(seq 1 1200); do
  grep -q '^SERVE ' "$tmp/serve.out" 2>/dev/null && break
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.5
done
if read -r _ ff_port ff_boot < <(grep '^SERVE ' "$tmp/serve.out"); then
  for i in $(seq 1 "$best"); do
    echo "==> JS reader fast-forwards over TCP ($i/$best)" >&2
    timeout 600 bash -c "cd '$root/tests/interop' && NODE_PATH='$modules' node '$root/bench/js/autobase.js' ffread $ff_port $ff_boot $catchup" | tee -a "$tmp/js.txt" >&2 || echo "JS ffread failed" >&2
    echo "==> hyperpunch reader fast-forwards over TCP ($i/$best)" >&2
    timeout 600 "$abin" ffread "$ff_port" "$ff_boot" "$catchup" | tee -a "$tmp/rust.txt" >&2 || echo "hyperpunch ffread failed" >&2
  done
else
  echo "the JS creator did not start serving:" >&2
  cat "$tmp/serve.err" >&2
fi
exec 3>&-
wait "$serve_pid" || true
echo "==> hyperpunch creator with $catchup entries (its indexer writes and signs the system core and the view) for the fast-forward readers" >&2
mkfifo "$tmp/hpserve.in"
"$abin" serve "$catchup" <"$tmp/hpserve.in" >"$tmp/hpserve.out" 2>"$tmp/hpserve.err" &
hpserve_pid=$!
exec 4>"$tmp/hpserve.in"
for _ in $(seq 1 1200); do
  grep -q '^SERVE ' "$tmp/hpserve.out" 2>/dev/null && break
  kill -0 "$hpserve_pid" 2>/dev/null || break
  sleep 0.5
done
if read -r _ hp_port hp_boot < <(grep '^SERVE ' "$tmp/hpserve.out"); then
  for i in $(seq 1 "$best"); do
    echo "==> JS reader fast-forwards from the hyperpunch creator over TCP ($i/$best)" >&2
    timeout 600 bash -c "cd '$root/tests/interop' && NODE_PATH='$modules' node '$root/bench/js/autobase.js' ffread $hp_port $hp_boot $catchup" | sed 's/autobase_ff_tcp/autobase_ffhp_tcp/' | tee -a "$tmp/js.txt" >&2 || echo "JS ffread failed" >&2
    echo "==> hyperpunch reader fast-forwards from the hyperpunch creator over TCP ($i/$best)" >&2
    timeout 600 "$abin" ffread "$hp_port" "$hp_boot" "$catchup" | sed 's/autobase_ff_tcp/autobase_ffhp_tcp/' | tee -a "$tmp/rust.txt" >&2 || echo "hyperpunch ffread failed" >&2
  done
else
  echo "the hyperpunch creator did not start serving:" >&2
  cat "$tmp/hpserve.err" >&2
fi
exec 4>&-
wait "$hpserve_pid" || true
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# "BENCH key value" lines -> the best value of each key (highest rate, lowest time).
best_of() {
  awk '$1 == "BENCH" {
    rate = ($2 ~ /_appends_s$/)
    if (!($2 in v)) { v[$2] = $3; order[++n] = $2 }
    else if (rate ? $3 + 0 > v[$2] + 0 : $3 + 0 < v[$2] + 0) v[$2] = $3
  } END { for (i = 1; i <= n; i++) print order[i], v[order[i]] }'
}
best_of <"$tmp/js.txt" >"$tmp/js.kv"
best_of <"$tmp/rust.txt" >"$tmp/rust.kv"
val() { awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "" }' "$1"; }
fmt() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else printf "%.2f", v }' || printf 'missing'; }
# ratio JS RUST [time]: Rust/JS for rates, JS/Rust for times (higher is better for Rust).
ratio() {
  if [ -n "$1" ] && [ -n "$2" ]; then
    awk -v j="$1" -v r="$2" -v t="${3:-}" 'BEGIN { if (t != "") { if (r > 0) printf "%.1f×", j / r; else printf "n/a" } else if (j > 0) printf "%.1f×", r / j; else printf "n/a" }'
  else printf 'n/a'; fi
}
row() { # jskey rustkey label unit [time]
  local j r
  j=$(val "$tmp/js.kv" "$1"); r=$(val "$tmp/rust.kv" "$2")
  echo "| $3 | $4 | $(fmt "$j") | $(fmt "$r") | $(ratio "$j" "$r" "${5:-}") |"
}
{
  echo "## Autobase (autobase $(node -p "require('$modules/autobase/package.json').version"))"
  echo
  echo "\`bash bench/autobase.sh\` (also part of \`./run.sh bench\`), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPU, node $(node --version)."
  echo "One process each side: every member a store of its own on the native file storage (JS: corestore's"
  echo "RocksDB, Rust: \`FileStorage\`), members replicated over secret-stream on in-memory duplexes, each"
  echo "connected to the room's creator; the apply function of \`hyperpunch chat\` (JSON values, a view"
  echo "\`messages\`), the creator the only indexer, acking. Best of $best run(s), JS and Rust interleaved."
  echo "\"per CPU s\" counts the CPU time of the whole process (every thread). Ratios: Rust/JS of rates, JS/Rust of times."
  echo "What differs: in the appends and in-process catch-up rows hyperpunch keeps the views and the system in"
  echo "memory (rebuilt from the oplogs when a member opens); JS also writes them to RocksDB as hypercores (the"
  echo "view, the system hyperbee). The hyperpunch creator of the last rows writes and signs them as hypercores"
  echo "too (\`bench_autobase serve\`). Neither side fsyncs each append."
  echo
  echo "| work | unit | JS | Rust | Rust/JS |"
  echo "|---|---|---:|---:|---:|"
  for w in 1 3 10; do
    row "autobase_w${w}_appends_s" "autobase_w${w}_appends_s" "$w writer(s): $appends appends one at a time, until indexed in every member's view" appends/s
    row "autobase_w${w}_cpu_appends_s" "autobase_w${w}_cpu_appends_s" "  the same" "appends per CPU s"
  done
  row autobase_catchup_s autobase_catchup_s "a new reader catches up on $catchup indexed entries (JS without fast-forward: downloads and linearizes every node, as hyperpunch does)" s time
  row autobase_catchup_cpu_s autobase_catchup_cpu_s "  the same" "CPU s" time
  row autobase_catchup_ff_s autobase_catchup_s "the same, JS with fast-forward (its default; this in-process hyperpunch reader linearizes every node; fast-forward on both sides: the TCP rows below)" s time
  row autobase_catchup_ff_cpu_s autobase_catchup_cpu_s "  the same" "CPU s" time
  row autobase_ff_tcp_s autobase_ff_tcp_s "a new reader of a JS creator's base with $catchup indexed entries fast-forwards, both over TCP (hyperpunch reads the signed system core and view length, linearizes only what follows)" s time
  row autobase_ff_tcp_cpu_s autobase_ff_tcp_cpu_s "  the same" "CPU s of the reader" time
  row autobase_ffhp_tcp_s autobase_ffhp_tcp_s "a new reader of a hyperpunch creator's base with $catchup indexed entries fast-forwards, both over TCP (the hyperpunch indexer wrote and signed the system core and the view as JS does: JS's reader takes its fast-forward path)" s time
  row autobase_ffhp_tcp_cpu_s autobase_ffhp_tcp_cpu_s "  the same" "CPU s of the reader" time
  echo
  echo "Load average (1/5/15 min) before: $load_before; after: $load_after."
} >"$tmp/table.md"
if [ -n "$out_md" ]; then
  cp "$tmp/table.md" "$out_md"
else
  cat "$tmp/table.md"
  cp "$tmp/table.md" "$root/bench/latest-autobase.md"
  echo "(written to bench/latest-autobase.md)" >&2
fi
