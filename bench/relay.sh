#!/usr/bin/env bash
# The browser path (issue 14): a page replicating a core from a native peer through
# `hyperpunch relay --ws`, against a JS hypercore on the JS @hyperswarm/dht-relay client on the
# same path; what the relay costs against a direct connection; how many idle sessions and
# streams one relay holds and at what memory.
#
#   bash bench/relay.sh            # prints the section, writes bench/latest-relay.md
#   bash bench/relay.sh OUT.md     # (bench/run.sh) writes the section to OUT.md only
#
# Everything on 127.0.0.1: a local DHT (`hyperpunch dht bootstrap`), never public nodes.
# The data: 64 MiB from /dev/urandom in 64 KiB blocks (1024 blocks), one core made with
# `hyperpunch core create` + `core append --block-size 65536` and served by one
# `hyperpunch core serve --swarm` process (release build), announced on the core's discovery key.
# Readers, each into fresh storage, best of $RELAY_BEST rounds (default 3), interleaved:
# * page: headless Chromium (chromedriver, scripts/webdriver.py) opens bench/www/relay.html with
#   the npm package (pkg/, wasm release build): `new Hypercore(name, key)` on IndexedDB,
#   `core.replicate(relay, { custodial: true })` (WebSocket, lookup, connect through the relay, custodial: the relay
#   runs Noise + secret-stream, the page verifies every block and stores it in IndexedDB),
#   `download(0..1024)`; timed in the page (performance.now) from replicate() to the last block
#   stored; the WebSocket messages the page received, counted in the page. Also non-custodial
#   through our relay (`custodial: false`, the npm package's default: the page runs Noise +
#   secret-stream, the relay forwards ciphertext bytes). Its CPU: every Chromium process of the session (user + system), read before the page
#   opens and once it is done.
# * JS client: node + the pinned @hyperswarm/dht-relay 0.4.3 client (custodial, its default) over
#   a `ws` WebSocket, a pinned hypercore 11 on its own storage (hypercore-storage, RocksDB), the
#   same lookup / connect / replicate / download (bench/js/relay-fetch.js), timed in the process
#   from the WebSocket's creation to the last block stored.
# * the same two readers through the JS relay (bench/js/relay-server.js: dht-relay 0.4.3's
#   relay() on a hyperdht node, as its bin.js) instead of ours.
# * direct, no relay: `hyperpunch core fetch --swarm` (whole process, spawn to exit) and
#   relay-fetch.js direct (a hyperdht node of its own, UDX straight to the server).
# The relays' CPU seconds during each run come from /proc/PID/stat (ours) and /proc of the node
# process (the JS relay); the server's too.
# Storage alone (bench/www/idb.html, once): the same amount of 64 KiB values put into an
# IndexedDB object store in the same Chromium, one strict transaction each, 16 per strict and per
# relaxed transaction, values just under the 64 KiB blob-wrapping threshold, 1 MiB packed
# values; and 64 KiB appends to an OPFS file (sync access handle, flush every 16): the page's
# storage ceilings.
# Sessions: a fresh relay of each kind; bench/js/relay-sessions.js opens N idle dht-relay client
# sessions (handshake done), then N sessions with streams to the server; the relay's VmRSS with
# them open, and after they closed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out_md=${1:-}
modules="$root/tests/interop/node_modules"
if [ ! -f "$modules/@hyperswarm/dht-relay/package.json" ]; then
  echo "error: the JS reference is not installed ($modules/@hyperswarm/dht-relay is missing): run \`bash scripts/install-js-reference.sh\`" >&2
  exit 1
fi
best=${RELAY_BEST:-3}
mib=64
blocks=$((mib * 16))
tmp=$(mktemp -d)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "==> building hyperpunch (release) and the npm package (wasm, release)" >&2
source bench/lib.sh
hp=$(bench_build_hyperpunch)
bash scripts/build-pkg.sh >&2
export NODE_PATH="$modules"
js() { (cd "$root/tests/interop" && node "$@"); }
# localnet.sh: pids, free_port, wait_for FILE SED-EXPR (60 s); browser.sh: serve_dir,
# chromedriver_start, browser_stop, show_logs.
source scripts/localnet.sh
source scripts/browser.sh
ok=0
trap 'browser_stop; localnet_stop; [ "$ok" = 1 ] || { echo "error: bench/relay.sh failed; logs follow" >&2; show_logs; }; rm -rf "$tmp"' EXIT
now_ns() { date +%s%N; }
# CPU seconds (user + system) the process PID has used so far.
proc_cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.3f", ($12 + $13) / hz }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
sub_s() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
cp bench/session-cpu.sh "$tmp/session-cpu.sh"

echo "==> a local DHT, our relay, the JS relay" >&2
boot_port=$(free_port)
bootstrap="127.0.0.1:$boot_port"
"$hp" dht bootstrap --host 127.0.0.1 --port "$boot_port" 2>"$tmp/boot.log" &
pids+=($!)
start_relays() { # sets relay_url relay_pid jsrelay_url jsrelay_pid; $1: log suffix
  "$hp" relay --ws 127.0.0.1:0 --host 127.0.0.1 --bootstrap "$bootstrap" 2>"$tmp/relay$1.log" &
  relay_pid=$!
  pids+=($relay_pid)
  relay_url=$(wait_for "$tmp/relay$1.log" 's/^relay \(ws:\/\/[0-9.:]*\)$/\1/p') || {
    echo "error: the relay did not start" >&2; return 1; }
  (cd "$root/tests/interop" && exec node "$root/bench/js/relay-server.js" "$bootstrap") >"$tmp/jsrelay$1.out" 2>"$tmp/jsrelay$1.log" &
  jsrelay_pid=$!
  pids+=($jsrelay_pid)
  jsrelay_url=$(wait_for "$tmp/jsrelay$1.out" 's/^relay \(ws:\/\/[0-9.:]*\)$/\1/p') || {
    echo "error: the JS relay did not start" >&2; return 1; }
}
start_relays ""

echo "==> $mib MiB of random data in 64 KiB blocks, served by \`hyperpunch core serve --swarm\`" >&2
head -c $((mib * 1024 * 1024)) /dev/urandom >"$tmp/data.bin"
key=$("$hp" core create --storage "$tmp/src")
"$hp" core append --storage "$tmp/src" --block-size 65536 <"$tmp/data.bin" >/dev/null
rm -f "$tmp/data.bin"
"$hp" core serve --storage "$tmp/src" --swarm --host 127.0.0.1 --bootstrap "$bootstrap" \
  >"$tmp/serve.out" 2>"$tmp/serve.log" &
serve_pid=$!
pids+=($serve_pid)
wait_for "$tmp/serve.out" '/^announced /p' >/dev/null || {
  echo "error: the core server did not announce" >&2; exit 1; }

echo "==> the bench page, chromedriver" >&2
mkdir -p "$tmp/site/hyperpunch/wasm"
cp bench/www/relay.html bench/www/relay.js bench/www/idb.html "$tmp/site/"
cp pkg/index.js pkg/package.json "$tmp/site/hyperpunch/"
cp pkg/wasm/hyperpunch_web.js pkg/wasm/hyperpunch_web_bg.wasm "$tmp/site/hyperpunch/wasm/"
serve_dir "$tmp/site"
chromedriver_start
chromium_version=$(/usr/bin/chromium --version 2>/dev/null | head -1 || echo chromium)

: >"$tmp/bench.txt"
bench() { echo "BENCH $1 $2" | tee -a "$tmp/bench.txt" >&2; }
# page TAG URL RELAY_PID [CUSTODIAL]: one page run in a fresh Chromium session (custodial unless
# CUSTODIAL is 0); records TAG_s, TAG_connect_s, TAG_mb_s, TAG_cpu_s (Chromium, all processes),
# TAG_ws_messages (received by the page) and the relay's CPU (RELAY_PID) as TAG_relay_cpu_s.
page() {
  local tag=$1 relay=$2 rpid=$3 r0 s0
  local url="${http_url}relay.html?relay=$relay&key=$key&n=$blocks&tag=$tag&custodial=${4:-1}"
  local steps
  steps=$(python3 -c 'import json, sys; print(json.dumps([
    {"run": "bash \"$TMPB/session-cpu.sh\" \"$CHROME_SID\" > \"$TMPB/cpu0\""},
    {"open": sys.argv[1]},
    {"title": "done ", "timeout": 300},
    {"run": "bash \"$TMPB/session-cpu.sh\" \"$CHROME_SID\" > \"$TMPB/cpu1\"; printf \"%s\\n\" \"$PAGE_TITLE\" > \"$TMPB/title\""},
  ]))' "$url")
  r0=$(proc_cpu_s "$rpid"); s0=$(proc_cpu_s "$serve_pid")
  TMPB="$tmp" CHROME_SID="$chromedriver_pgid" timeout -k 10 400 \
    python3 scripts/webdriver.py "$webdriver_url" transport-web/webdriver.json "$steps" 2>"$tmp/webdriver.log" || {
      echo "error: the page run $tag failed:" >&2; cat "$tmp/webdriver.log" >&2; return 1; }
  bench "${tag}_relay_cpu_s" "$(sub_s "$(proc_cpu_s "$rpid")" "$r0")"
  bench "${tag}_server_cpu_s" "$(sub_s "$(proc_cpu_s "$serve_pid")" "$s0")"
  local word t secs conn bytes msgs
  read -r word t secs conn bytes msgs <"$tmp/title"
  [ "$bytes" = $((mib * 1024 * 1024)) ] || { echo "error: the page fetched $bytes bytes" >&2; return 1; }
  bench "${tag}_s" "$secs"
  bench "${tag}_connect_s" "$conn"
  bench "${tag}_ws_messages" "$msgs"
  bench "${tag}_mb_s" "$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.3f", b / s / 1e6 }')"
  bench "${tag}_cpu_s" "$(cpu_since "$tmp/cpu0" "$tmp/cpu1")"
}
# jsfetch TAG MODE WHERE RELAY_PID: relay-fetch.js into fresh storage.
jsfetch() {
  local tag=$1 r0 s0
  r0=$(proc_cpu_s "$4"); s0=$(proc_cpu_s "$serve_pid")
  rm -rf "$tmp/dst"
  timeout -k 10 400 bash -c 'cd "$1/tests/interop" && exec node "$1/bench/js/relay-fetch.js" "${@:2}"' _ \
    "$root" "$2" "$3" "$key" "$blocks" "$tmp/dst" "$tag" >"$tmp/jsfetch.out" 2>"$tmp/jsfetch.log" || {
      echo "error: relay-fetch.js $2 failed:" >&2; cat "$tmp/jsfetch.out" "$tmp/jsfetch.log" >&2; return 1; }
  grep '^BENCH' "$tmp/jsfetch.out" | tee -a "$tmp/bench.txt" >&2
  [ "$4" = "$serve_pid" ] || bench "${tag}_relay_cpu_s" "$(sub_s "$(proc_cpu_s "$4")" "$r0")"
  bench "${tag}_server_cpu_s" "$(sub_s "$(proc_cpu_s "$serve_pid")" "$s0")"
  rm -rf "$tmp/dst"
}
# native_fetch: `hyperpunch core fetch --swarm`, spawn to exit.
native_fetch() {
  local t0 t1 c0 s0 secs
  rm -rf "$tmp/dst"
  s0=$(proc_cpu_s "$serve_pid")
  t0=$(now_ns)
  /usr/bin/time -f '%U %S' -o "$tmp/time.txt" timeout -k 10 400 "$hp" core fetch --storage "$tmp/dst" \
    --key "$key" --swarm --host 127.0.0.1 --bootstrap "$bootstrap" >"$tmp/fetch.out" 2>"$tmp/fetch.log" || {
      echo "error: core fetch --swarm failed:" >&2; cat "$tmp/fetch.log" >&2; return 1; }
  t1=$(now_ns)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  bench native_direct_s "$secs"
  bench native_direct_mb_s "$(awk -v s="$secs" -v b=$((mib * 1024 * 1024)) 'BEGIN { printf "%.3f", b / s / 1e6 }')"
  bench native_direct_cpu_s "$(awk '{ printf "%.3f", $1 + $2 }' "$tmp/time.txt")"
  bench native_direct_server_cpu_s "$(sub_s "$(proc_cpu_s "$serve_pid")" "$s0")"
  rm -rf "$tmp/dst"
}

for i in $(seq 1 "$best"); do
  echo "==> round $i/$best: page through our relay" >&2
  page page_hp "$relay_url" "$relay_pid"
  echo "==> round $i/$best: page through our relay, non-custodial" >&2
  page page_hp_nc "$relay_url" "$relay_pid" 0
  echo "==> round $i/$best: JS client through our relay" >&2
  jsfetch js_hp relay "$relay_url" "$relay_pid"
  echo "==> round $i/$best: page through the JS relay" >&2
  page page_jsr "$jsrelay_url" "$jsrelay_pid"
  echo "==> round $i/$best: JS client through the JS relay" >&2
  jsfetch js_jsr relay "$jsrelay_url" "$jsrelay_pid"
  echo "==> round $i/$best: direct: hyperpunch core fetch --swarm, JS hyperdht client" >&2
  native_fetch
  jsfetch js_direct direct "$bootstrap" "$serve_pid"
done
echo "==> storage alone in the same Chromium (bench/www/idb.html)" >&2
steps=$(python3 -c 'import json, sys; print(json.dumps([
  {"open": sys.argv[1]},
  {"title": "done ", "timeout": 300},
  {"run": "printf \"%s\\n\" \"$PAGE_TITLE\" > \"$TMPB/title\""},
]))' "${http_url}idb.html")
TMPB="$tmp" timeout -k 10 400 python3 scripts/webdriver.py "$webdriver_url" transport-web/webdriver.json "$steps" 2>"$tmp/webdriver.log" || {
  echo "error: the IndexedDB page failed:" >&2; cat "$tmp/webdriver.log" >&2; exit 1; }
tr ' ' '\n' <"$tmp/title" | sed -n 's/^\([a-z0-9]*\)=\(.*\)$/\1 \2/p' | while read -r k v; do bench "idb_${k}_mb_s" "$v"; done
relay_hwm=$(hwm_kib "$relay_pid")
jsrelay_hwm=$(hwm_kib "$jsrelay_pid")
browser_stop

# ---- sessions: a fresh relay of each kind ----
kill "$relay_pid" "$jsrelay_pid"
start_relays "-sessions"
# established TCP connections to PORT
conns() { ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l; }
# sessions TAG PID URL PORT N [STREAMS]: N sessions (with STREAMS streams), the relay's VmRSS
# with them open and after they closed.
sessions() {
  local tag=$1 pid=$2 url=$3 port=$4 n=$5 streams=${6:-0} spid
  bench "${tag}_before_rss_kib" "$(rss_kib "$pid")"
  (cd "$root/tests/interop" && exec node "$root/bench/js/relay-sessions.js" "$url" "$n" "$streams" "$key") \
    >"$tmp/sessions.out" 2>"$tmp/sessions.log" &
  spid=$!
  for _ in $(seq 1 3000); do
    grep -q '^ready' "$tmp/sessions.out" && break
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "^ready $n " "$tmp/sessions.out" || {
    echo "error: relay-sessions.js $n $streams did not get ready:" >&2; cat "$tmp/sessions.out" "$tmp/sessions.log" >&2
    kill "$spid" 2>/dev/null || true; return 1; }
  bench "${tag}_rss_kib" "$(rss_kib "$pid")"
  bench "${tag}_opened" "$(sed -n 's/^ready [0-9]* \([0-9]*\)$/\1/p' "$tmp/sessions.out")"
  kill "$spid"
  wait "$spid" 2>/dev/null || true
  # until the relay saw every session close (bounded: 60 s)
  for _ in $(seq 1 600); do [ "$(conns "$port")" = 0 ] && break; sleep 0.1; done
  bench "${tag}_after_rss_kib" "$(rss_kib "$pid")"
}
for kind in hp js; do
  if [ "$kind" = hp ]; then pid=$relay_pid; url=$relay_url; else pid=$jsrelay_pid; url=$jsrelay_url; fi
  port=${url##*:}
  echo "==> sessions on the $kind relay" >&2
  bench "sess_${kind}_idle_rss_kib" "$(rss_kib "$pid")"
  sessions "streams_${kind}_100" "$pid" "$url" "$port" 4 100
  sessions "sess_${kind}_100" "$pid" "$url" "$port" 100
  sessions "sess_${kind}_1000" "$pid" "$url" "$port" 1000
  sessions "sess_${kind}_1000_again" "$pid" "$url" "$port" 1000
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the table ----
awk '$1 == "BENCH" { print $2, $3 }' "$tmp/bench.txt" | awk '{
    rate = ($1 ~ /_mb_s$/)
    if (!($1 in v)) { v[$1] = $2; order[++n] = $1 }
    else if (rate ? $2 + 0 > v[$1] + 0 : $2 + 0 < v[$1] + 0) v[$1] = $2
  } END { for (i = 1; i <= n; i++) print order[i], v[order[i]] }' >"$tmp/kv"
val() { awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print "" }' "$tmp/kv"; }
fmt() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else printf "%.2f", v }' || printf 'missing'; }
ratio() { # A / B
  if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else printf "n/a" }'; else printf 'n/a'; fi
}
mib_of() { [ -n "$1" ] && awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }' || printf 'missing'; }
per_session() { # KIB_WITH KIB_IDLE N -> KiB per session
  [ -n "$1" ] && [ -n "$2" ] && [ "${3:-0}" -gt 0 ] && awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.1f", (a - b) / n }' || printf 'n/a'
}
row() { # TAG LABEL ("—": not measured for this reader)
  local c r
  c=$(val "$1_connect_s"); r=$(val "$1_relay_cpu_s"); w=$(val "$1_ws_messages")
  echo "| $2 | $(fmt "$(val "$1_mb_s")") | $(fmt "$(val "$1_s")") | $([ -n "$c" ] && fmt "$c" || printf '—') | $(fmt "$(val "$1_cpu_s")") | $([ -n "$r" ] && fmt "$r" || printf '—') | $(fmt "$(val "$1_server_cpu_s")") | $([ -n "$w" ] && printf '%s' "$w" || printf '—') |"
}
node_v=$(node --version)
hc_v=$(node -p "require('$modules/hypercore/package.json').version")
{
  echo "## Browser: a page through the relay (issue 14)"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPU ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), load average before $load_before, after $load_after."
  echo "\`bash bench/relay.sh\` (part of \`./run.sh bench\`). $mib MiB of random data in 64 KiB blocks ($blocks blocks), one core served by"
  echo "\`hyperpunch core serve --swarm\` (release) on a local DHT on 127.0.0.1; each reader fetches it into fresh storage."
  echo "Best of $best rounds, all readers interleaved. MB/s = 10^6 bytes/s."
  echo
  echo "What each reader is:"
  echo "- **page**: $chromium_version, headless, via chromedriver; \`bench/www/relay.html\` on the npm package (pkg/, wasm"
  echo "  release build): \`new Hypercore(name, key)\` in IndexedDB (blocks in its OPFS data file), \`replicate(relay)\`, \`download(0..$blocks)\`;"
  echo "  timed in the page from \`replicate()\` (WebSocket open, lookup, connect) to the last block verified and stored. CPU: every"
  echo "  Chromium process of the session (renderer, GPU, network, browser), user + system. WebSocket messages: those the page"
  echo "  received, counted in the page (fewest of the rounds)."
  echo "- **JS client**: node $node_v, the pinned \`@hyperswarm/dht-relay\` 0.4.3 client over a \`ws\` WebSocket, hypercore $hc_v on"
  echo "  its own storage (hypercore-storage / RocksDB in a temporary folder), the same lookup / connect / replicate / download"
  echo "  (\`bench/js/relay-fetch.js\`); timed in the process from the WebSocket's creation to the last block stored."
  echo "- Sessions are custodial (the dht-relay wire's default; the page asks for it with \`custodial: true\`) unless the row says"
  echo "  non-custodial (\`custodial: false\`, the npm package's default: the page runs Noise + secret-stream itself and our relay"
  echo "  forwards the ciphertext bytes of the UDX stream). Custodial: the relay runs the"
  echo "  Noise handshake and secret-stream to the server and carries plaintext protomux frames over the WebSocket; the"
  echo "  reader verifies every block against the signed tree. **our relay** = \`hyperpunch relay --ws\` (release);"
  echo "  **JS relay** = dht-relay 0.4.3's \`relay()\` on a hyperdht node with a \`ws\` server (\`bench/js/relay-server.js\`, as its bin.js)."
  echo "- **direct** (no relay): \`hyperpunch core fetch --swarm\` timed from spawn to exit (whole process), and"
  echo "  \`relay-fetch.js direct\` (its own hyperdht node, UDX straight to the server), timed as the JS client above."
  echo
  echo "| path: server → carrier → reader | MB/s | s | connect s | reader CPU s | relay CPU s | server CPU s | WebSocket messages |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  row page_hp "native → **our relay** → page (wasm, IndexedDB + OPFS)"
  row page_hp_nc "native → **our relay**, non-custodial → page (its own Noise + secret-stream)"
  row js_hp "native → **our relay** → JS client (node, RocksDB)"
  row page_jsr "native → JS relay → page"
  row js_jsr "native → JS relay → JS client (the all-JS relay path)"
  row native_direct "native → direct UDX → \`hyperpunch core fetch --swarm\` (whole process)"
  row js_direct "native → direct UDX → JS hyperdht client"
  echo
  echo "Storage alone in the same Chromium (\`bench/www/idb.html\`, once): 64 MiB of random values put into an IndexedDB object store:"
  echo "1024 values of 64 KiB one transaction each with durability \"strict\": $(fmt "$(val idb_strict1_mb_s)") MB/s; 16 per strict transaction:"
  echo "$(fmt "$(val idb_strict16_mb_s)") MB/s; 16 per \"relaxed\" transaction: $(fmt "$(val idb_relaxed16_mb_s)") MB/s; 65000-byte values (under Chromium's"
  echo "64 KiB blob-wrapping threshold), 16 per strict transaction: $(fmt "$(val idb_under16_mb_s)") MB/s; 1 MiB values (16 blocks packed in one),"
  echo "one strict transaction each: $(fmt "$(val idb_packed1m_mb_s)") MB/s. On the Origin Private File System (a sync access handle in a worker,"
  echo "as IdbStorage's data file): 64 KiB appends, \`flush()\` after every 16: $(fmt "$(val idb_opfs16_mb_s)") MB/s. The page stores each batch of"
  echo "blocks it reads as one append to the data file (flushed) and one strict IndexedDB transaction (pointers, tree nodes, bitfield)."
  echo
  p=$(val page_hp_mb_s)
  echo "| ratio | |"
  echo "|---|---:|"
  echo "| page / JS client, both through our relay (goal ≥ 3×) | $(ratio "$p" "$(val js_hp_mb_s)") |"
  echo "| page through our relay / JS client through the JS relay (all-JS) | $(ratio "$p" "$(val js_jsr_mb_s)") |"
  echo "| our relay / JS relay, same page | $(ratio "$p" "$(val page_jsr_mb_s)") |"
  echo "| our relay / JS relay, same JS client | $(ratio "$(val js_hp_mb_s)" "$(val js_jsr_mb_s)") |"
  echo "| relay overhead, JS client: through our relay / direct | $(ratio "$(val js_hp_mb_s)" "$(val js_direct_mb_s)") |"
  echo "| relay overhead: page through our relay / native direct fetch | $(ratio "$p" "$(val native_direct_mb_s)") |"
  echo
  echo "Relays' peak RSS over all the runs above (VmHWM): ours $(mib_of "$relay_hwm") MiB, JS relay $(mib_of "$jsrelay_hwm") MiB."
  echo
  echo "Sessions one relay holds: a fresh relay of each kind; \`bench/js/relay-sessions.js\` opens N dht-relay 0.4.3 client"
  echo "sessions (WebSockets, handshake done) and leaves them idle, or a few sessions with streams to the server (each stream a"
  echo "DHT connection of the relay: Noise + UDX to \`core serve\`); the relay's VmRSS with them open and once all closed."
  echo "Our relay's limit is \`--max-connections\` (default 1024 sessions), \`--max-streams\` (64 per session)."
  echo
  echo "| relay (RSS, MiB) | idle | 4 sessions, 100 streams asked | streams opened | KiB per stream | all closed | 100 sessions | 1000 sessions | KiB per session | all closed | 1000 again | all closed |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for kind in hp js; do
    label=ours; [ "$kind" = js ] && label="JS relay"
    s1000=sess_${kind}_1000; again=sess_${kind}_1000_again; st=streams_${kind}_100
    echo "| $label | $(mib_of "$(val "sess_${kind}_idle_rss_kib")") | $(mib_of "$(val "${st}_rss_kib")") | $(val "${st}_opened") | $(per_session "$(val "${st}_rss_kib")" "$(val "${st}_before_rss_kib")" "$(val "${st}_opened")") | $(mib_of "$(val "${st}_after_rss_kib")") | $(mib_of "$(val "sess_${kind}_100_rss_kib")") | $(mib_of "$(val "${s1000}_rss_kib")") | $(per_session "$(val "${s1000}_rss_kib")" "$(val "${s1000}_before_rss_kib")" 1000) | $(mib_of "$(val "${s1000}_after_rss_kib")") | $(mib_of "$(val "${again}_rss_kib")") | $(mib_of "$(val "${again}_after_rss_kib")") |"
  done
  echo
  echo "KiB per stream: (RSS with the streams open − RSS of the idle relay just before) / streams opened (their 4 sessions"
  echo "included); KiB per session: the same with the 1000 sessions. A fresh relay of each kind; streams first, then sessions."
} >"$tmp/relay.md"
if [ -n "$out_md" ]; then
  cp "$tmp/relay.md" "$out_md"
else
  cat "$tmp/relay.md"
  cp "$tmp/relay.md" bench/latest-relay.md
fi
ok=1
