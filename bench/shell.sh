#!/usr/bin/env bash
# hypershell copies, hyperpunch against the pinned JS hypershell 0.0.15, in one run
# (`bash bench/shell.sh [MiB]`, default 64). Prints a markdown section on stdout, progress on
# stderr.
#
# A loopback testnet (a `hyperpunch dht bootstrap` node and two `dht node`s, release), one
# `hyperpunch shell server` and one JS `hypershell-server`, each admitting both clients. A file
# of random bytes is uploaded to and downloaded from each server by each client
# (`hyperpunch shell copy`, JS `hypershell-copy`), every copy a fresh process: the time is the
# whole command (joining the DHT, connecting by key, the transfer, the rename into place), best
# of 2. The copies are compared with the source.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source bench/lib.sh # wait_for (and bench_build_hyperpunch)
mib=${1:-64}
interop="$root/tests/interop"
if [ ! -f "$interop/node_modules/hypershell/package.json" ]; then
  echo "error: the JS reference is not installed: run \`bash scripts/install-js-reference.sh\`" >&2
  exit 1
fi
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  # JS hypershell-server's graceful-goodbye may wait on its connections after SIGTERM.
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

if [ -n "${HP:-}" ]; then
  hp=$HP # a binary built already (e.g. HP=target/debug/hyperpunch to try the script)
else
  echo "==> building hyperpunch (release)" >&2
  cargo build --release --locked -q -p hyperpunch --bin hyperpunch
  target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  hp="$target_dir/release/hyperpunch"
fi

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

port=$(free_port)
boot="127.0.0.1:$port"
"$hp" dht bootstrap --host 127.0.0.1 --port "$port" 2>"$tmp/boot.log" &
pids+=($!)
wait_for "$tmp/boot.log" 'bootstrap node' >/dev/null
for i in 1 2; do
  "$hp" dht node --bootstrap "$boot" --host 127.0.0.1 2>"$tmp/node$i.log" &
  pids+=($!)
  wait_for "$tmp/node$i.log" 'persistent, id' >/dev/null
done
net=(--bootstrap "$boot" --host 127.0.0.1)
js_tool() { (cd "$interop" && HYPERPUNCH_TEST_BOOTSTRAP="$boot" HOME="$1" node tool-run.js "hypershell/bin/$2" "${@:3}"); }

mkdir -p "$tmp/rc" "$tmp/jc" "$tmp/rs" "$tmp/js"
rust_pk=$(HOME="$tmp/rc" "$hp" shell keygen -f "$tmp/rc/peer" 2>/dev/null)
js_pk=$(cd "$interop" && HOME="$tmp/jc" node shell-keygen.js "$tmp/jc/peer" | sed -n '4p')
printf '%s\n%s\n' "$rust_pk" "$js_pk" > "$tmp/allow"

HOME="$tmp/rs" SHELL=/bin/sh "$hp" shell server -f "$tmp/rs/key" --firewall "$tmp/allow" "${net[@]}" >"$tmp/rs.log" 2>&1 &
pids+=($!)
rust_key=$(wait_for "$tmp/rs.log" 'hyperpunch shell connect' | awk '{print $NF}')
(cd "$interop" && HYPERPUNCH_TEST_BOOTSTRAP="$boot" HOME="$tmp/js" SHELL=/bin/sh exec node tool-run.js hypershell/bin/server.js -f "$tmp/js/key" --firewall "$tmp/allow") >"$tmp/js.log" 2>&1 &
pids+=($!)
js_key=$(wait_for "$tmp/js.log" '^hypershell ' | awk '{print $NF}')

echo "==> $mib MiB of random bytes" >&2
head -c $((mib * 1024 * 1024)) /dev/urandom > "$tmp/src.bin"

# copy CLIENT FROM TO: runs one copy, prints its seconds.
copy() {
  local start end
  rm -f "$3"
  start=$(date +%s.%N)
  if [ "$1" = rust ]; then
    HOME="$tmp/rc" "$hp" shell copy "$2" "$3" -f "$tmp/rc/peer" "${net[@]}" >/dev/null 2>"$tmp/copy.log" ||
      { echo "error: hyperpunch shell copy $2 $3 failed:" >&2; cat "$tmp/copy.log" >&2; return 1; }
  else
    js_tool "$tmp/jc" copy.js -f "$tmp/jc/peer" "$2" "$3" >/dev/null 2>"$tmp/copy.log" ||
      { echo "error: hypershell-copy $2 $3 failed:" >&2; cat "$tmp/copy.log" >&2; return 1; }
  fi
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}
best() {
  local a b
  a=$(copy "$@") || exit 1
  b=$(copy "$@") || exit 1
  if (($(echo "$a < $b" | bc))); then echo "$a"; else echo "$b"; fi
}
mb_s() { echo "scale=1; $mib * 1.048576 / $1" | bc; }

rows=()
for client in rust js; do
  for server in rust js; do
    if [ "$server" = rust ]; then key=$rust_key; dir="$tmp/rs"; else key=$js_key; dir="$tmp/js"; fi
    echo "==> $client client, $server server: upload" >&2
    up=$(best "$client" "$tmp/src.bin" "$key:$dir/up.bin") || exit 1
    cmp -s "$tmp/src.bin" "$dir/up.bin" || { echo "error: the upload differs" >&2; exit 1; }
    echo "==> $client client, $server server: download" >&2
    down=$(best "$client" "$key:$dir/up.bin" "$tmp/down.bin") || exit 1
    cmp -s "$tmp/src.bin" "$tmp/down.bin" || { echo "error: the download differs" >&2; exit 1; }
    rows+=("| $client | $server | $(printf '%.2f' "$up") s ($(mb_s "$up") MB/s) | $(printf '%.2f' "$down") s ($(mb_s "$down") MB/s) |")
  done
done

echo "## hypershell copies (hypershell 0.0.15)"
echo
echo "\`bash bench/shell.sh $mib\`: a $mib MiB file copied up and down by each client to each server on a"
echo "loopback testnet, every copy a fresh process (joining the DHT and connecting included), best of 2."
echo "Load average before: $load_before."
echo
echo "| client | server | upload | download |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
