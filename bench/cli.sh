#!/usr/bin/env bash
# Whole processes, as a user runs them: `hyperpunch core fetch` of a 100 MiB core in 64 KiB blocks
# from `hyperpunch core serve --tcp` on 127.0.0.1, against JS hypercore serving and fetching the
# same blocks (bench/js/replicate-tcp.js, the pinned hypercore, secret-stream over TCP).
#
#   bash bench/cli.sh            # prints the table, writes bench/latest-cli.md
#   bash bench/cli.sh OUT.md     # (bench/run.sh) writes the table to OUT.md only
#
# The data: 100 MiB from /dev/urandom (incompressible, as most files users share), the same bytes
# for both. Rust: `core create` + `core append --block-size 65536` make the core, `core serve`
# serves it; JS: `replicate-tcp.js serve` appends the same blocks (16 at a time) and serves them
# to one client. Neither preparation is timed.
#
# Timed, best of $CLI_BEST rounds (default 3), Rust and JS interleaved, each fetch into a fresh
# folder on disk (under $TMPDIR or /tmp):
# * Rust whole process: from the spawn of `hyperpunch core fetch` to its exit (process start,
#   storage creation, connect, handshake, download with every block verified and stored, the
#   final fsync, exit);
# * JS whole process: from the spawn of `node replicate-tcp.js fetch` to its exit;
# * JS in-process: what replicate-tcp.js measures inside its process, from the connect to the
#   last block stored (no process start, no storage open, no exit).
# CPU seconds of each fetch process (user + system, all threads) come from /usr/bin/time; the
# server's CPU seconds during each fetch from /proc/PID/stat (Rust) or process.cpuUsage (JS).
# Every ratio is computed from the figures of this run; for times it is JS/Rust (higher is
# better for Rust).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out_md=${1:-}
modules="$root/tests/interop/node_modules"
if [ ! -f "$modules/hypercore/package.json" ]; then
  echo "error: the JS reference is not installed ($modules/hypercore is missing): run \`npm ci --prefix tests/interop\` (or \`just setup\`)" >&2
  exit 1
fi
best=${CLI_BEST:-3}
mib=100
blocks=$((mib * 16))
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "==> building hyperpunch (release)" >&2
source bench/lib.sh
hp=$(bench_build_hyperpunch)
export NODE_PATH="$modules"
js() { (cd "$root/tests/interop" && node "$@"); }
now_ns() { date +%s%N; }
# CPU seconds (user + system) the process PID has used so far.
proc_cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.3f", ($12 + $13) / hz }' "/proc/$1/stat"; }

echo "==> $mib MiB of random data, a Rust core of it" >&2
head -c $((mib * 1024 * 1024)) /dev/urandom >"$tmp/data.bin"
key=$("$hp" core create --storage "$tmp/src")
"$hp" core append --storage "$tmp/src" --block-size 65536 <"$tmp/data.bin" >/dev/null
"$hp" core serve --storage "$tmp/src" --tcp 127.0.0.1:0 >"$tmp/serve.out" 2>"$tmp/serve.err" &
serve_pid=$!
pids+=("$serve_pid")
addr=$(wait_for "$tmp/serve.out" '^listening on ' | sed 's/^listening on //')

: >"$tmp/js.txt"
: >"$tmp/rust.txt"
for i in $(seq 1 "$best"); do
  echo "==> hyperpunch core fetch, $mib MiB from hyperpunch core serve ($i/$best)" >&2
  rm -rf "$tmp/dst"
  c0=$(proc_cpu_s "$serve_pid")
  t0=$(now_ns)
  HYPERPUNCH_TIMING=1 /usr/bin/time -f "%U %S" -o "$tmp/time" \
    "$hp" core fetch --storage "$tmp/dst" --key "$key" --tcp "$addr" 2>"$tmp/fetch.err"
  t1=$(now_ns)
  c1=$(proc_cpu_s "$serve_pid")
  grep -q "^fetched $blocks blocks" "$tmp/fetch.err" || { cat "$tmp/fetch.err" >&2; echo "error: the fetch did not get $blocks blocks" >&2; exit 1; }
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')
  {
    echo "BENCH cli_fetch_wall_s $wall"
    awk '{ printf "BENCH cli_fetch_cpu_s %.3f\n", $1 + $2 }' "$tmp/time"
    awk -v a="$c0" -v b="$c1" 'BEGIN { printf "BENCH cli_serve_cpu_s %.3f\n", b - a }'
  } | tee -a "$tmp/rust.txt" >&2
  # The phases of this run (HYPERPUNCH_TIMING), kept for the fastest one.
  sed -n 's/^timing: //p' "$tmp/fetch.err" >"$tmp/phases.$i"
  echo "$wall $i" >>"$tmp/rust.walls"

  echo "==> JS fetch, $mib MiB from JS serve ($i/$best)" >&2
  js "$root/bench/js/replicate-tcp.js" serve cli "$blocks" "$tmp/data.bin" >"$tmp/js-serve.out" &
  pids+=($!)
  set -- $(wait_for "$tmp/js-serve.out" '^listening ')
  t0=$(now_ns)
  (cd "$root/tests/interop" && /usr/bin/time -f "%U %S" -o "$tmp/time" \
    node "$root/bench/js/replicate-tcp.js" fetch cli "$2" "$3" "$blocks") >"$tmp/js-fetch.out"
  t1=$(now_ns)
  wait "${pids[-1]}"
  unset 'pids[-1]'
  {
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "BENCH cli_fetch_wall_s %.4f\n", (b - a) / 1e9 }'
    awk '{ printf "BENCH cli_fetch_cpu_s %.3f\n", $1 + $2 }' "$tmp/time"
    grep '^BENCH cli_in_process_s' "$tmp/js-fetch.out"
    sed -n 's/^BENCH cli_server_cpu_s/BENCH cli_serve_cpu_s/p' "$tmp/js-serve.out"
  } | tee -a "$tmp/js.txt" >&2
done
kill "$serve_pid" 2>/dev/null || true
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# "BENCH key value" lines -> the least value of each key (all are times).
least() {
  awk '$1 == "BENCH" { if (!($2 in v) || $3 + 0 < v[$2] + 0) { if (!($2 in v)) order[++n] = $2; v[$2] = $3 } }
    END { for (i = 1; i <= n; i++) print order[i], v[order[i]] }'
}
least <"$tmp/js.txt" >"$tmp/js.kv"
least <"$tmp/rust.txt" >"$tmp/rust.kv"
val() { awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "" }' "$1"; }
fmt() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else printf "%.2f", v }' || printf 'missing'; }
# JS/Rust of two times (higher is better for Rust).
ratio() {
  if [ -n "$1" ] && [ -n "$2" ]; then awk -v j="$1" -v r="$2" 'BEGIN { if (r > 0) printf "%.2f×", j / r; else printf "n/a" }'; else printf 'n/a'; fi
}
fastest=$(sort -n "$tmp/rust.walls" | head -1 | cut -d' ' -f2)
rw=$(val "$tmp/rust.kv" cli_fetch_wall_s)
jw=$(val "$tmp/js.kv" cli_fetch_wall_s)
ji=$(val "$tmp/js.kv" cli_in_process_s)
mbs() { awk -v s="$1" -v m="$mib" 'BEGIN { if (s > 0) printf "%.0f", m * 1048576 / s / 1e6 }'; }
{
  echo "## Whole processes: \`core fetch\` from \`core serve\` over TCP"
  echo
  echo "\`bash bench/cli.sh\` (also part of \`./run.sh bench\`), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPU, node $(node --version),"
  echo "hypercore $(node -p "require('$modules/hypercore/package.json').version"), the \`hyperpunch\` release binary. $mib MiB of random bytes in $blocks blocks of 64 KiB,"
  echo "served on 127.0.0.1 and fetched into a fresh folder on disk (Rust: \`FileStorage\`, JS: hypercore's RocksDB),"
  echo "secret-stream over TCP on both sides. Best of $best rounds, Rust and JS interleaved; ratios are JS/Rust of the times (higher is better for Rust)."
  echo
  echo "| work | unit | JS | Rust | JS/Rust |"
  echo "|---|---|---:|---:|---:|"
  echo "| fetch as a whole process, spawn to exit (\`hyperpunch core fetch\`; JS: \`node bench/js/replicate-tcp.js fetch\`) | s | $(fmt "$jw") | $(fmt "$rw") | $(ratio "$jw" "$rw") |"
  echo "| Rust whole process against JS timed inside its process (connect to last block stored) | s | $(fmt "$ji") | $(fmt "$rw") | $(ratio "$ji" "$rw") |"
  echo "|   the same as MB/s | MB/s | $(mbs "$ji") | $(mbs "$rw") | |"
  echo "| CPU of the fetching process (user + system, all threads) | s | $(fmt "$(val "$tmp/js.kv" cli_fetch_cpu_s)") | $(fmt "$(val "$tmp/rust.kv" cli_fetch_cpu_s)") | $(ratio "$(val "$tmp/js.kv" cli_fetch_cpu_s)" "$(val "$tmp/rust.kv" cli_fetch_cpu_s)") |"
  echo "| CPU of the serving process during the fetch | s | $(fmt "$(val "$tmp/js.kv" cli_serve_cpu_s)") | $(fmt "$(val "$tmp/rust.kv" cli_serve_cpu_s)") | $(ratio "$(val "$tmp/js.kv" cli_serve_cpu_s)" "$(val "$tmp/rust.kv" cli_serve_cpu_s)") |"
  echo
  echo "Where the fastest Rust run spent its time (\`HYPERPUNCH_TIMING=1\`: each phase, and when it ended since the process started):"
  echo
  echo "| phase | ms | at ms |"
  echo "|---|---:|---:|"
  sed -n 's/^\(.*\) +\([0-9.]*\) ms (at \([0-9.]*\) ms)\(, [0-9.]* MB resident\)\{0,1\}$/| \1 | \2 | \3 |/p' "$tmp/phases.$fastest"
  echo
  echo "Load average (1/5/15 min) before: $load_before; after: $load_after (2 CPUs shared with other work: wall-clock figures are noisy, CPU seconds less so)."
} >"$tmp/table.md"
if [ -n "$out_md" ]; then
  cp "$tmp/table.md" "$out_md"
else
  cat "$tmp/table.md"
  cp "$tmp/table.md" "$root/bench/latest-cli.md"
  echo "(written to bench/latest-cli.md)" >&2
fi
