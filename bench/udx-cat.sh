#!/usr/bin/env bash
# UDX between two processes on loopback as a new user tries it (issue 12, point 6):
# `hyperpunch udx cat` sending a file to another `hyperpunch udx cat` (whose stdin is already at
# EOF, so it half-closes at once), against udx-native in the same run (bench/js/udx-peer.js send
# and recv, each a node process). Standalone: `bash bench/udx-cat.sh`; prints a markdown section
# on stdout, progress on stderr.
#
# Each round, Rust and JS interleaved: the receiver starts and says it is ready, then the
# sender is spawned; the time runs from the sender's spawn until both processes exited (so it
# includes each side's process start-up: node's is ~50-100 ms, ours a few ms). Rust's copy is
# compared with the file byte for byte. The sender's packets and retransmits come from
# `udx cat --stats`. Each round also copies a small file (the first UDXCAT_SMALL_MIB MiB) both
# ways, where start-up and the closing handshake dominate. Tunables: UDXCAT_MIB (256),
# UDXCAT_SMALL_MIB (4), UDXCAT_ROUNDS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
modules="$root/tests/interop/node_modules"
if [ ! -f "$modules/udx-native/package.json" ]; then
  echo "error: the JS reference is not installed ($modules/udx-native is missing): run \`npm ci --prefix tests/interop\`" >&2
  exit 1
fi
mib=${UDXCAT_MIB:-256}
rounds=${UDXCAT_ROUNDS:-3}
small=${UDXCAT_SMALL_MIB:-4}
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
peer="$root/bench/js/udx-peer.js"

wait_for() { # FILE PATTERN: waits up to 60 s for a line matching PATTERN in FILE
  local i
  for i in $(seq 1 600); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "error: timed out waiting for \"$2\" in $1:" >&2
  cat "$1" >&2
  return 1
}
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

head -c $((mib << 20)) /dev/urandom >"$tmp/data"
head -c $((small << 20)) "$tmp/data" >"$tmp/small"
: >"$tmp/results"
pair() { # MIB FILE: one hyperpunch copy and one udx-native copy of FILE (MIB MiB)
  local size=$1 file=$2 p1 p2 recv t0 t1 line sent retr
  # --- hyperpunch udx cat -> udx cat ---
  p1=$(free_port); p2=$(free_port)
  "$hp" udx cat --bind "127.0.0.1:$p2" --connect "127.0.0.1:$p1" --id 2 --remote-id 1 --stats \
    </dev/null >"$tmp/copy" 2>"$tmp/recv.err" &
  recv=$!
  pids+=("$recv")
  wait_for "$tmp/recv.err" 'bound to'
  t0=$(now)
  timeout 300 "$hp" udx cat --bind "127.0.0.1:$p1" --connect "127.0.0.1:$p2" --id 1 --remote-id 2 --stats \
    <"$file" >/dev/null 2>"$tmp/send.err" || { echo "error: udx cat (sender) failed:" >&2; cat "$tmp/send.err" "$tmp/recv.err" >&2; exit 1; }
  wait "$recv" || { echo "error: udx cat (receiver) failed:" >&2; cat "$tmp/recv.err" >&2; exit 1; }
  t1=$(now)
  cmp -s "$file" "$tmp/copy" || { echo "error: udx cat's copy differs from the file" >&2; exit 1; }
  line=$(grep 'packets sent' "$tmp/send.err" | tail -1)
  sent=$(echo "$line" | awk '{ print $3 }')
  retr=$(echo "$line" | awk '{ print $6 }')
  echo "rust $size $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') $sent $retr" | tee -a "$tmp/results" >&2
  # --- udx-native -> udx-native (bench/js/udx-peer.js) ---
  p1=$(free_port); p2=$(free_port)
  timeout 300 node "$peer" recv js 127.0.0.1 "$p2" 127.0.0.1 "$p1" "$size" >"$tmp/jsrecv.out" 2>&1 &
  recv=$!
  pids+=("$recv")
  wait_for "$tmp/jsrecv.out" '^ready'
  t0=$(now)
  timeout 300 node "$peer" send 127.0.0.1 "$p1" 127.0.0.1 "$p2" "$size" >"$tmp/jssend.out" 2>&1 ||
    { echo "error: udx-peer.js send failed:" >&2; cat "$tmp/jssend.out" "$tmp/jsrecv.out" >&2; exit 1; }
  wait "$recv" || { echo "error: udx-peer.js recv failed:" >&2; cat "$tmp/jsrecv.out" >&2; exit 1; }
  t1=$(now)
  grep -q '^BENCH js_mb_s' "$tmp/jsrecv.out" || { echo "error: udx-native did not receive everything:" >&2; cat "$tmp/jsrecv.out" >&2; exit 1; }
  echo "js $size $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" | tee -a "$tmp/results" >&2
}
for r in $(seq 1 "$rounds"); do
  pair "$mib" "$tmp/data"
  pair "$small" "$tmp/small"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

udx_version=$(node -p "require('$modules/udx-native/package.json').version")
python3 - "$tmp/results" "$mib" "$small" "$rounds" "$load_before" "$load_after" "$udx_version" <<'EOF'
import sys, datetime
path, mib, small, rounds, lb, la, uv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
rust, js, sent, retr = {mib: [], small: []}, {mib: [], small: []}, 0, 0
for line in open(path):
    f = line.split()
    size = int(f[1])
    if f[0] == 'rust':
        rust[size].append(float(f[2]))
        if size == mib:
            sent += int(f[3]); retr += int(f[4])
    else:
        js[size].append(float(f[2]))
def runs(v): return ', '.join(f'{x:.2f}' for x in v)
print()
print('## UDX between two processes on loopback (`udx cat`)')
print()
print(f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, `bash bench/udx-cat.sh`: {mib} MiB of random bytes (and its first {small} MiB), "
      f"`hyperpunch udx cat` file → `udx cat` (stdin at EOF) against udx-native {uv} "
      f"(`bench/js/udx-peer.js` send → recv), each end a process of its own, {rounds} rounds interleaved; "
      "the time runs from the sender's spawn until both processes exited.")
print()
print('| work | unit | udx-native | hyperpunch | hyperpunch/udx-native |')
print('|---|---|---:|---:|---:|')
for size in (mib, small):
    br, bj = min(rust[size]), min(js[size])
    mb = size * 1048576 / 1e6
    print(f'| {size} MiB, sender spawn to both exited, best of the rounds | s | {bj:.2f} | {br:.2f} | {bj / br:.2f}× |')
    print(f'|   the same as MB/s | MB/s | {mb / bj:.0f} | {mb / br:.0f} | |')
    print(f'|   every round | s | {runs(js[size])} | {runs(rust[size])} | |')
print(f"| hyperpunch's sender: packets retransmitted, all {mib} MiB rounds | % | - | {retr * 100 / max(sent, 1):.3f} ({retr} of {sent}) | |")
print()
print(f'Every copy was identical to the file. Load average (1/5/15 min) before: {lb}; after: {la} (2 CPUs shared with other work).')
EOF
