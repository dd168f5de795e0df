#!/usr/bin/env bash
# A/B of the page through our relay (bench/relay.sh's page run), interleaved: two builds of the
# npm package (and optionally two `hyperpunch` binaries for the relay) fetch the same 64 MiB
# core from the same `core serve --swarm`, alternating, each run a fresh Chromium session.
#
#   bash bench/page-ab.sh A_PKG B_PKG [PAIRS]     # PAIRS (default 10) pairs, order alternating
#
# A_PKG, B_PKG: folders holding a built npm package (index.js, package.json, wasm/; copy pkg/
# after `bash scripts/build-pkg.sh`). Environment: AB_RELAY_A / AB_RELAY_B: `hyperpunch`
# binaries for the relay of the A / B runs (default: both the release build of this tree, one
# relay); AB_CUSTODIAL=0: non-custodial sessions; AB_PROFILE=DIR: also a DevTools CPU profile
# of the page's main thread per run (DIR/TAG-N.cpuprofile). Prints one line per run and a
# summary: MB/s (timed in the page, as bench/relay.sh) and Chromium CPU s of the session by
# process type, counted from the page set up (wasm compiled) to done.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
a_pkg=$(realpath "$1")
b_pkg=$(realpath "$2")
pairs=${3:-10}
custodial=${AB_CUSTODIAL:-1}
mib=64
blocks=$((mib * 16))
tmp=$(mktemp -d)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
source bench/lib.sh
hp=$(bench_build_hyperpunch)
relay_a=${AB_RELAY_A:-$hp}
relay_b=${AB_RELAY_B:-$relay_a}
source scripts/localnet.sh
source scripts/browser.sh
ok=0
trap 'browser_stop; localnet_stop; [ "$ok" = 1 ] || { echo "error: bench/page-ab.sh failed; logs follow" >&2; show_logs; }; rm -rf "$tmp"' EXIT
proc_cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.3f", ($12 + $13) / hz }' "/proc/$1/stat"; }

boot_port=$(free_port)
bootstrap="127.0.0.1:$boot_port"
"$hp" dht bootstrap --host 127.0.0.1 --port "$boot_port" 2>"$tmp/boot.log" &
pids+=($!)
start_relay() { # BIN LOG: prints the relay's URL, sets last_pid
  "$1" relay --ws 127.0.0.1:0 --host 127.0.0.1 --bootstrap "$bootstrap" 2>"$tmp/$2" &
  pids+=($!)
}
start_relay "$relay_a" relay-a.log
relay_a_pid=${pids[-1]}
url_a=$(wait_for "$tmp/relay-a.log" 's/^relay \(ws:\/\/[0-9.:]*\)$/\1/p')
if [ "$relay_b" = "$relay_a" ]; then
  relay_b_pid=$relay_a_pid; url_b=$url_a
else
  start_relay "$relay_b" relay-b.log
  relay_b_pid=${pids[-1]}
  url_b=$(wait_for "$tmp/relay-b.log" 's/^relay \(ws:\/\/[0-9.:]*\)$/\1/p')
fi
head -c $((mib * 1024 * 1024)) /dev/urandom >"$tmp/data.bin"
key=$("$hp" core create --storage "$tmp/src")
"$hp" core append --storage "$tmp/src" --block-size 65536 <"$tmp/data.bin" >/dev/null
rm -f "$tmp/data.bin"
"$hp" core serve --storage "$tmp/src" --swarm --host 127.0.0.1 --bootstrap "$bootstrap" \
  >"$tmp/serve.out" 2>"$tmp/serve.log" &
pids+=($!)
wait_for "$tmp/serve.out" '/^announced /p' >/dev/null

for side in a b; do
  mkdir -p "$tmp/site/$side/hyperpunch/wasm"
  cp bench/www/relay.html bench/www/relay.js "$tmp/site/$side/"
  pkg=$a_pkg; [ "$side" = b ] && pkg=$b_pkg
  cp "$pkg/index.js" "$pkg/package.json" "$tmp/site/$side/hyperpunch/"
  cp "$pkg/wasm/hyperpunch_web.js" "$pkg/wasm/hyperpunch_web_bg.wasm" "$tmp/site/$side/hyperpunch/wasm/"
done
serve_dir "$tmp/site"
chromedriver_start
cp bench/session-cpu.sh "$tmp/session-cpu.sh"
: >"$tmp/runs.txt"
n=0
run() { # SIDE
  local side=$1 url rpid r0
  n=$((n + 1))
  if [ "$side" = a ]; then url=$url_a; rpid=$relay_a_pid; else url=$url_b; rpid=$relay_b_pid; fi
  local page="${http_url}$side/relay.html?relay=$url&key=$key&n=$blocks&tag=$side$n&custodial=$custodial&manual=1"
  local steps
  steps=$(python3 -c 'import json, os, sys; prof = os.environ.get("AB_PROFILE"); print(json.dumps(
    [{"open": sys.argv[1]}, {"title": "waiting", "timeout": 120},
     {"run": "bash \"$TMPB/session-cpu.sh\" \"$CHROME_SID\" > \"$TMPB/cpu0\""}]
    + ([{"cdp": "Profiler.enable"}, {"cdp": "Profiler.setSamplingInterval", "params": {"interval": 200}}, {"cdp": "Profiler.start"}] if prof else [])
    + [{"eval": "(window.go(), 1)", "expect": 1}, {"title": "done ", "timeout": 300},
       {"run": "bash \"$TMPB/session-cpu.sh\" \"$CHROME_SID\" > \"$TMPB/cpu1\"; printf \"%s\\n\" \"$PAGE_TITLE\" > \"$TMPB/title\""}]
    + ([{"cdp": "Profiler.stop", "save": f"{prof}/{sys.argv[2]}.cpuprofile"}] if prof else [])))' "$page" "$side-$n")
  r0=$(proc_cpu_s "$rpid")
  TMPB="$tmp" CHROME_SID="$chromedriver_pgid" timeout -k 10 400 \
    python3 scripts/webdriver.py "$webdriver_url" transport-web/webdriver.json "$steps" 2>"$tmp/webdriver.log" || {
      echo "error: run $side $n failed:" >&2; cat "$tmp/webdriver.log" >&2; return 1; }
  local word t secs conn bytes msgs
  read -r word t secs conn bytes msgs <"$tmp/title"
  [ "$bytes" = $((mib * 1024 * 1024)) ] || { echo "error: the page fetched $bytes bytes" >&2; return 1; }
  local line
  line="$side $(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f", b / s / 1e6 }') $(cpu_since "$tmp/cpu0" "$tmp/cpu1" total) $(cpu_since "$tmp/cpu0" "$tmp/cpu1" renderer) $(cpu_since "$tmp/cpu0" "$tmp/cpu1" browser) $(cpu_since "$tmp/cpu0" "$tmp/cpu1" network) $msgs $(awk -v a="$(proc_cpu_s "$rpid")" -v b="$r0" 'BEGIN { printf "%.3f", a - b }')"
  echo "$line" >>"$tmp/runs.txt"
  echo "  $line" >&2
}
echo "side MB/s cpu_s renderer browser network ws_messages relay_cpu_s" >&2
for i in $(seq 1 "$pairs"); do
  if [ $((i % 2)) = 1 ]; then run a; run b; else run b; run a; fi
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average before $load_before, after $load_after; $pairs pairs, custodial=$custodial"
awk '{ k = $1; c[k]++; for (j = 2; j <= 8; j++) s[k, j] += $j; v[k, c[k]] = $2; u[k, c[k]] = $3 }
  END {
    split("MB/s cpu_s renderer browser network ws_messages relay_cpu_s", names, " ")
    for (side = 1; side <= 2; side++) {
      k = side == 1 ? "a" : "b"
      printf "%s mean:", k
      for (j = 2; j <= 8; j++) printf " %s %.3f", names[j - 1], s[k, j] / c[k]
      printf "\n"
    }
    faster = 0; cheaper = 0
    for (i = 1; i <= c["a"] && i <= c["b"]; i++) { if (v["b", i] > v["a", i]) faster++; if (u["b", i] < u["a", i]) cheaper++ }
    printf "b faster in %d of %d pairs, b less CPU in %d of %d\n", faster, c["a"], cheaper, c["a"]
  }' "$tmp/runs.txt"
cp "$tmp/runs.txt" "${AB_RUNS:-/dev/null}" 2>/dev/null || true
ok=1
