#!/usr/bin/env bash
# The floor under issue 14's page (bench/relay.sh): what headless Chromium, driven as
# bench/relay.sh drives it (chromedriver, scripts/webdriver.py, transport-web/webdriver.json),
# takes to receive 64 MiB from a native WebSocket server on loopback and do, per message, only
# part of what the page's replication does. No relay, no DHT, no hypercore.
#
#   bash bench/browser-floor.sh            # prints the table, writes bench/latest-floor.md
#   bash bench/browser-floor.sh OUT.md     # writes the table to OUT.md only
#   FLOOR_ROUNDS=5 bash bench/browser-floor.sh   # rounds (default 3), all runs interleaved
#   FLOOR_SIZES="65536 1048576" FLOOR_MODES="hash idb" bash bench/browser-floor.sh   # a subset
#
# The server: `bench_ws_floor` (transport-native/examples, release): tokio-tungstenite with the
# relay's configuration, one `send` per message, 64 MiB as 64 KiB or 256 KiB binary messages.
# The page: bench/www/floor.js with `bench_floor` (transport-web/examples) built for wasm32 in
# release (the npm package's profile) and bound with wasm-bindgen. Modes, each adding to the one
# before: recv (nothing), copy (each message copied into wasm memory), hash (and BLAKE2b: a leaf
# hash per 64 KiB block and the tree's parent hashes, hyperpunch-core's functions), opfs (and
# each message transferred to a worker appending it to an OPFS file, flush() at every MiB), idb
# (and one strict IndexedDB transaction per MiB flushed). Each run is a fresh Chromium session;
# timed in the page (performance.now) from the WebSocket's creation to the last message
# processed (flushed, committed). CPU: every process of the chromedriver session (as
# bench/relay.sh counts), user + system, from /proc, read once the page is set up (wasm compiled,
# worker and database open) and once it is done; by process type too.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
root=$(pwd)
out_md=${1:-}
rounds=${FLOOR_ROUNDS:-3}
mib=64
total=$((mib * 1024 * 1024))
export PATH="$HOME/.cargo/bin:$PATH"
tmp=$(mktemp -d)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "==> building bench_ws_floor (release) and bench_floor (wasm32, release)" >&2
bash scripts/install-wasm-tools.sh >&2
cargo build --release --locked -q -p hyperpunch --example bench_ws_floor
cargo build --release --locked -q -p hyperpunch-web --example bench_floor --target wasm32-unknown-unknown
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
mkdir -p "$tmp/site/floor"
wasm-bindgen --target web --out-dir "$tmp/site/floor" \
  "$target_dir/wasm32-unknown-unknown/release/examples/bench_floor.wasm"
cp bench/www/floor.html bench/www/floor.js "$tmp/site/"

# localnet.sh: pids, localnet_stop, wait_for; browser.sh: serve_dir, chromedriver_start,
# browser_stop, show_logs.
source scripts/localnet.sh
source scripts/browser.sh
ok=0
trap 'browser_stop; localnet_stop; [ "$ok" = 1 ] || { echo "error: bench/browser-floor.sh failed; logs follow" >&2; show_logs; }; rm -rf "$tmp"' EXIT

"$target_dir/release/examples/bench_ws_floor" >"$tmp/server.out" 2>"$tmp/server.log" &
pids+=($!)
server_pid=$!
ws_url=$(wait_for "$tmp/server.out" 's/^floor \(ws:\/\/[0-9.:]*\)$/\1/p') || {
  echo "error: bench_ws_floor did not start" >&2; exit 1; }
serve_dir "$tmp/site"
chromedriver_start
chromium_version=$(/usr/bin/chromium --version 2>/dev/null | head -1 || echo chromium)

cp bench/session-cpu.sh "$tmp/session-cpu.sh"

: >"$tmp/bench.txt"
# run MODE SIZE: one page run in a fresh Chromium session.
run() {
  local mode=$1 size=$2 steps
  local url="${http_url}floor.html?ws=$ws_url&size=$size&total=$total&mode=$mode"
  steps=$(python3 -c 'import json, sys; print(json.dumps([
    {"open": sys.argv[1]},
    {"title": "ready", "timeout": 120},
    {"run": "bash \"$TMPB/session-cpu.sh\" \"$CHROME_SID\" > \"$TMPB/cpu0\""},
    {"eval": "(window.go(), 1)", "expect": 1},
    {"title": "done ", "timeout": 300},
    {"run": "bash \"$TMPB/session-cpu.sh\" \"$CHROME_SID\" > \"$TMPB/cpu1\"; printf \"%s\\n\" \"$PAGE_TITLE\" > \"$TMPB/title\""},
  ]))' "$url")
  TMPB="$tmp" CHROME_SID="$chromedriver_pgid" timeout -k 10 400 \
    python3 scripts/webdriver.py "$webdriver_url" transport-web/webdriver.json "$steps" 2>"$tmp/webdriver.log" || {
      echo "error: the floor run $mode $size failed:" >&2; cat "$tmp/webdriver.log" >&2; return 1; }
  local word m s secs bytes msgs tag
  read -r word m s secs bytes msgs <"$tmp/title"
  [ "$bytes" = "$total" ] || { echo "error: the page received $bytes bytes" >&2; return 1; }
  tag="${mode}_$((size / 1024))k"
  {
    echo "BENCH ${tag}_s $secs"
    echo "BENCH ${tag}_mb_s $(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f", b / s / 1e6 }')"
    echo "BENCH ${tag}_messages $msgs"
    cpu_by_type "$tmp/cpu0" "$tmp/cpu1" | while read -r k v; do echo "BENCH ${tag}_cpu_${k}_s $v"; done
  } >"$tmp/run.txt"
  cat "$tmp/run.txt" >>"$tmp/bench.txt"
  echo "  $tag: $(awk -v n=$((${#tag} + 2)) '{ printf "%s=%s ", substr($2, n), $3 }' "$tmp/run.txt")" >&2
}

modes=${FLOOR_MODES:-recv copy hash opfs idb}
sizes=${FLOOR_SIZES:-65536 262144}
for i in $(seq 1 "$rounds"); do
  echo "==> round $i/$rounds" >&2
  for mode in $modes; do
    for size in $sizes; do run "$mode" "$size"; done
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
browser_stop
localnet_stop

# median of the values of KEY over the rounds ("" when none)
median() {
  grep "^BENCH $1 " "$tmp/bench.txt" | awk '{ print $3 }' | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
range() {
  grep "^BENCH $1 " "$tmp/bench.txt" | awk '{ print $3 }' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%s–%s", lo, hi }'
}
cpu() { local v; v=$(median "$1_cpu_$2_s"); printf '%s' "${v:-0}"; }
{
  echo "## Browser floor: a page receiving 64 MiB over a WebSocket from a native server"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPU ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), load average before $load_before, after $load_after."
  echo "\`bash bench/browser-floor.sh\`: $chromium_version, headless, via chromedriver; \`bench_ws_floor\` (release, the relay's"
  echo "tokio-tungstenite stack) on 127.0.0.1; \`bench/www/floor.js\` with \`bench_floor\` (wasm32, release). $rounds rounds, every"
  echo "mode and size interleaved, a fresh Chromium session each; median (range) of the rounds. MB/s = 10^6 bytes/s. CPU s:"
  echo "every process of the session, user + system, from the page set up to done (page load and wasm compilation left out)."
  echo
  echo "| per message | message | MB/s | s | Chromium CPU s | renderer | browser | network | other |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for mode in $modes; do
    case $mode in
      recv) label="receive only" ;;
      copy) label="+ copy into wasm memory" ;;
      hash) label="+ BLAKE2b (leaves + parents, wasm)" ;;
      opfs) label="+ OPFS append in a worker (flush per MiB)" ;;
      idb) label="+ one strict IndexedDB transaction per MiB" ;;
    esac
    for size in $sizes; do
      tag="${mode}_$((size / 1024))k"
      other=$(awk -v a="$(cpu "$tag" total)" -v r="$(cpu "$tag" renderer)" -v b="$(cpu "$tag" browser)" -v n="$(cpu "$tag" network)" \
        'BEGIN { o = a - r - b - n; printf "%.2f", o < 0 ? 0 : o }')
      echo "| $label | $((size / 1024)) KiB | $(median "${tag}_mb_s") ($(range "${tag}_mb_s")) | $(median "${tag}_s") | $(cpu "$tag" total) ($(range "${tag}_cpu_total_s")) | $(cpu "$tag" renderer) | $(cpu "$tag" browser) | $(cpu "$tag" network) | $other |"
    done
  done
  echo
  echo "Other: the GPU process, other utilities, chromedriver. The medians of the per-type columns are taken separately, so"
  echo "they need not add up to the total's median."
} >"$tmp/floor.md"
if [ -n "$out_md" ]; then
  cp "$tmp/floor.md" "$out_md"
else
  cat "$tmp/floor.md"
  cp "$tmp/floor.md" bench/latest-floor.md
fi
ok=1
