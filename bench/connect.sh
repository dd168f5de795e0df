#!/usr/bin/env bash
# Connecting by public key, hyperpunch against the pinned JS hyperdht / hyperswarm, in one run
# (called by bench/run.sh, or standalone: `bash bench/connect.sh`). Prints a markdown section on
# stdout, progress on stderr.
#
# One local testnet for both sides: hyperdht's own `createTestnet(20)` (bench/js/connect.js
# testnet) on 127.0.0.1 (never public bootstrap nodes). On it, each side runs its own server
# process (Rust: transport-native/examples/bench_connect.rs serve; JS: bench/js/connect.js serve):
# an echo key and a sink key. Then, for each side against its own server, JS and Rust interleaved:
#   1. whole process: `hyperpunch dht connect KEY` (the CLI) vs `node connect.js once`, spawn to
#      the echoed byte on stdout (DHT bootstrap, connect, one round trip, process start-up);
#   2. in process: one warm node connects N times in a row, connect() to the echoed byte;
#   3. throughput right after a connect: MIB MiB to the sink (64 KiB writes), until the sink's
#      byte count comes back;
#   4. hyperswarm: a server process joined to a topic; a fresh swarm (new DHT node) joins it as
#      client, time from its creation to the connection.
# Medians and p99 (nearest rank); throughput is the best of the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source bench/lib.sh # wait_for (and bench_build_hyperpunch)
modules="$root/tests/interop/node_modules"
if [ ! -f "$modules/hyperdht/package.json" ]; then
  echo "error: the JS reference is not installed ($modules/hyperdht is missing): run \`npm ci --prefix tests/interop\`" >&2
  exit 1
fi
runs=${CONNECT_RUNS:-3}     # interleaved rounds
n_inproc=${CONNECT_N:-100}  # connects per in-process round
n_proc=${CONNECT_PROCS:-10} # whole processes per round
n_swarm=${CONNECT_SWARMS:-5}
mib=${CONNECT_MIB:-256}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "==> building the connect benchmark (release)" >&2
cargo build --release --locked -q -p hyperpunch --bin hyperpunch --example bench_connect
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
hp="$target_dir/release/hyperpunch"
gen="$target_dir/release/examples/bench_connect"
jsc="$root/bench/js/connect.js"
export NODE_PATH="$modules"


echo "==> a 20-node hyperdht testnet on 127.0.0.1 (createTestnet)" >&2
node "$jsc" testnet 20 >"$tmp/testnet.txt" 2>&1 &
pids+=($!)
boot=$(wait_for "$tmp/testnet.txt" '^bootstrap ' | cut -d' ' -f2)

echo "==> servers (JS and Rust; echo + sink keys each)" >&2
node "$jsc" serve "$boot" "$(printf '11%.0s' {1..32})" "$(printf '12%.0s' {1..32})" >"$tmp/js-serve.txt" 2>&1 &
pids+=($!)
"$gen" serve "$boot" "$(printf '21%.0s' {1..32})" "$(printf '22%.0s' {1..32})" >"$tmp/rust-serve.txt" 2>&1 &
pids+=($!)
read -r _ js_echo js_sink <<<"$(wait_for "$tmp/js-serve.txt" '^listening ')"
read -r _ rs_echo rs_sink <<<"$(wait_for "$tmp/rust-serve.txt" '^listening ')"
topic_js=$(printf '31%.0s' {1..32})
topic_rs=$(printf '32%.0s' {1..32})
node "$jsc" swarm-serve "$boot" "$topic_js" >"$tmp/js-swarm.txt" 2>&1 &
pids+=($!)
"$gen" swarm-serve "$boot" "$topic_rs" >"$tmp/rust-swarm.txt" 2>&1 &
pids+=($!)
wait_for "$tmp/js-swarm.txt" '^joined' >/dev/null
wait_for "$tmp/rust-swarm.txt" '^joined' >/dev/null

: >"$tmp/bench.txt"
for i in $(seq 1 "$runs"); do
  echo "==> whole processes, $n_proc each ($i/$runs)" >&2
  "$gen" procs js "$n_proc" node "$jsc" once "$boot" "$js_echo" | tee -a "$tmp/bench.txt" >&2
  "$gen" procs rust "$n_proc" "$hp" dht connect "$rs_echo" --bootstrap "$boot" --host 127.0.0.1 |
    tee -a "$tmp/bench.txt" >&2
  echo "==> in process: $n_inproc connects, then $mib MiB ($i/$runs)" >&2
  node "$jsc" inproc js "$boot" "$js_echo" "$js_sink" "$n_inproc" "$mib" | tee -a "$tmp/bench.txt" >&2
  "$gen" inproc rust "$boot" "$rs_echo" "$rs_sink" "$n_inproc" "$mib" | tee -a "$tmp/bench.txt" >&2
  echo "==> hyperswarm join -> connection, $n_swarm swarms each ($i/$runs)" >&2
  node "$jsc" swarm-join js "$boot" "$topic_js" "$n_swarm" | tee -a "$tmp/bench.txt" >&2
  "$gen" swarm-join rust "$boot" "$topic_rs" "$n_swarm" | tee -a "$tmp/bench.txt" >&2
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# Per key: latencies keep the median of the rounds' values (each already a median or a p99 of
# one round), throughput the best round.
awk '$1 == "BENCH" { print $2, $3 }' "$tmp/bench.txt" | python3 -c '
import sys
vals = {}
for line in sys.stdin:
    k, v = line.split()
    vals.setdefault(k, []).append(float(v))
for k, v in vals.items():
    v.sort()
    print(k, v[-1] if k.endswith("_mb_s") else v[(len(v) - 1) // 2])
' >"$tmp/kv"
val() { awk -v k="$1" '$1 == k { print $2 }' "$tmp/kv"; }
fmt() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else printf "%.1f", v }' || printf 'missing'; }
# time rows: JS/Rust (how many times faster Rust is); rate rows: Rust/JS.
row() { # label unit key-suffix kind(time|rate)
  local j r x
  j=$(val "js_$3"); r=$(val "rust_$3")
  if [ -n "$j" ] && [ -n "$r" ]; then
    if [ "$4" = time ]; then
      x=$(awk -v j="$j" -v r="$r" 'BEGIN { if (r > 0) printf "%.2f×", j / r; else printf "n/a" }')
    else
      x=$(awk -v j="$j" -v r="$r" 'BEGIN { if (j > 0) printf "%.2f×", r / j; else printf "n/a" }')
    fi
  else
    x=n/a
  fi
  echo "| $1 | $2 | $(fmt "$j") | $(fmt "$r") | $x |"
}

echo
echo "## Connecting by public key (hyperdht / hyperswarm)"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), hyperdht $(node -p "require('$modules/hyperdht/package.json').version"), hyperswarm $(node -p "require('$modules/hyperswarm/package.json').version"), node $(node --version), \`bash bench/connect.sh\`."
echo "A 20-node loopback testnet (hyperdht's \`createTestnet\`, all on 127.0.0.1); each side connects to a server of its own"
echo "kind (hyperpunch → hyperpunch, JS → JS) running in another process. $runs rounds, JS and Rust interleaved; a latency"
echo "is the median over the rounds of each round's median or p99 (nearest rank), a throughput the best round."
echo "The last column is how many times better hyperpunch is (JS time / Rust time, Rust rate / JS rate)."
echo
echo "| work | unit | JS | hyperpunch | better × |"
echo "|---|---|---:|---:|---:|"
row "whole process: \`hyperpunch dht connect KEY\` vs \`node connect.js once\`, spawn to the echoed byte ($n_proc runs a round), median" ms proc_median_ms time
row "  the same, p99" ms proc_p99_ms time
row "in process: connect() to the echoed byte, one warm node, $((n_inproc - 1)) connects in a row, median" ms inproc_median_ms time
row "  the same, p99" ms inproc_p99_ms time
row "  the first connect of the node (right after its bootstrap)" ms inproc_first_ms time
row "throughput right after a connect: $mib MiB in 64 KiB writes to the sink, until its count comes back" MB/s stream_mb_s rate
row "  the connect before it" ms stream_open_ms time
r=$(val rust_stream_retransmit_pct)
echo "|   hyperpunch's sender: packets retransmitted (median of the rounds) | % | - | $([ -n "$r" ] && printf '%.3f' "$r" || printf missing) | |"
row "hyperswarm: a new swarm joins a topic (client) to its first connection, incl. its DHT bootstrap ($n_swarm swarms a round), median" ms swarm_median_ms time
row "  the same, p99" ms swarm_p99_ms time
echo
echo "Load average (1/5/15 min) before: $load_before; after: $load_after (2 CPUs shared with other work)."
