#!/usr/bin/env bash
# hypershell -L tunnels, hyperpunch against the pinned JS hypershell 0.0.15, in one run
# (`bash bench/shell-tunnel.sh [MiB]`, default 64). Prints a markdown section on stdout,
# progress on stderr.
#
# A loopback testnet (a `hyperpunch dht bootstrap` node and two `dht node`s, release), one
# `hyperpunch shell server` and one JS `hypershell-server`, each admitting both clients, and a
# TCP target (python) that takes N bytes and answers one byte (upload), or sends N bytes
# (download). Each client (`hyperpunch shell connect -L`, JS `hypershell -L`) runs as its own
# process with a tunnel to the target through each server; the time is one forwarded TCP
# connection from connect to the last byte (the tunnel's stream setup included, the DHT
# connection not), best of 2, every byte checked by count.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source bench/lib.sh # wait_for
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
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

if [ -n "${HP:-}" ]; then
  hp=$HP
else
  echo "==> building hyperpunch (release)" >&2
  cargo build --release --locked -q -p hyperpunch --bin hyperpunch
  target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  hp="$target_dir/release/hyperpunch"
fi

cat > "$tmp/target.py" <<'EOF'
import socket, sys, threading
n = int(sys.argv[1])
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(16)
print(l.getsockname()[1], flush=True)
chunk = bytes(range(256)) * 256
def serve(s):
    op = s.recv(1)
    if op == b"u":
        left = n
        while left > 0:
            d = s.recv(1 << 20)
            if not d:
                return
            left -= len(d)
        s.sendall(b"k")
    elif op == b"d":
        left = n
        while left > 0:
            c = chunk[: min(left, len(chunk))]
            s.sendall(c)
            left -= len(c)
    # The client closes once done (a JS tunnel ends the whole connection at a half-close).
    while s.recv(65536):
        pass
while True:
    s, _ = l.accept()
    threading.Thread(target=serve, args=(s,), daemon=True).start()
EOF
cat > "$tmp/client.py" <<'EOF'
import socket, sys, time
port, op, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
chunk = bytes(range(256)) * 256
t = time.monotonic()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(op.encode())
if op == "u":
    left = n
    while left > 0:
        c = chunk[: min(left, len(chunk))]
        s.sendall(c)
        left -= len(c)
    if s.recv(1) != b"k":
        sys.exit("no answer")
else:
    got = 0
    while got < n:
        d = s.recv(1 << 20)
        if not d:
            sys.exit("ended after %d bytes" % got)
        got += len(d)
print("%.3f" % (time.monotonic() - t))
s.close()
EOF

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
bytes=$((mib * 1024 * 1024))
python3 "$tmp/target.py" "$bytes" >"$tmp/target.log" 2>&1 &
pids+=($!)
target=$(wait_for "$tmp/target.log" '^[0-9]')

mkdir -p "$tmp/rc" "$tmp/jc" "$tmp/rs" "$tmp/js"
rust_pk=$(HOME="$tmp/rc" "$hp" shell keygen -f "$tmp/rc/peer" 2>/dev/null)
js_pk=$(cd "$interop" && HOME="$tmp/jc" node shell-keygen.js "$tmp/jc/peer" | sed -n '4p')
printf '%s\n%s\n' "$rust_pk" "$js_pk" > "$tmp/allow"
HOME="$tmp/rs" "$hp" shell server -f "$tmp/rs/key" --firewall "$tmp/allow" "${net[@]}" >"$tmp/rs.log" 2>&1 &
pids+=($!)
rust_key=$(wait_for "$tmp/rs.log" 'hyperpunch shell connect' | awk '{print $NF}')
(cd "$interop" && HYPERPUNCH_TEST_BOOTSTRAP="$boot" HOME="$tmp/js" exec node tool-run.js hypershell/bin/server.js -f "$tmp/js/key" --firewall "$tmp/allow") >"$tmp/js.log" 2>&1 &
pids+=($!)
js_key=$(wait_for "$tmp/js.log" '^hypershell ' | awk '{print $NF}')

spec="127.0.0.1:0:127.0.0.1:$target"
best() {
  local a b
  a=$(python3 "$tmp/client.py" "$1" "$2" "$bytes") || exit 1
  b=$(python3 "$tmp/client.py" "$1" "$2" "$bytes") || exit 1
  if (($(echo "$a < $b" | bc))); then echo "$a"; else echo "$b"; fi
}
mb_s() { echo "scale=1; $mib * 1.048576 / $1" | bc; }
rows=()
for client in rust js; do
  for server in rust js; do
    if [ "$server" = rust ]; then key=$rust_key; else key=$js_key; fi
    log="$tmp/tunnel-$client-$server.log"
    if [ "$client" = rust ]; then
      HOME="$tmp/rc" "$hp" shell connect "$key" -f "$tmp/rc/peer" -L "$spec" "${net[@]}" >"$log" 2>&1 &
    else
      (cd "$interop" && HYPERPUNCH_TEST_BOOTSTRAP="$boot" HOME="$tmp/jc" exec node tool-run.js hypershell/bin/client.js "$key" -f "$tmp/jc/peer" -L "$spec") >"$log" 2>&1 &
    fi
    pid=$!
    pids+=($pid)
    lport=$(wait_for "$log" 'Tunnel on TCP' | sed 's/.*://')
    echo "==> $client client, $server server: upload, download" >&2
    up=$(best "$lport" u) || exit 1
    down=$(best "$lport" d) || exit 1
    kill "$pid" 2>/dev/null || true
    rows+=("| $client | $server | $(printf '%.2f' "$up") s ($(mb_s "$up") MB/s) | $(printf '%.2f' "$down") s ($(mb_s "$down") MB/s) |")
  done
done

echo "## hypershell tunnels (hypershell 0.0.15, \`-L\`)"
echo
echo "\`bash bench/shell-tunnel.sh $mib\`: $mib MiB through one forwarded TCP connection, up (to a TCP target"
echo "behind the server) and down, each client a process of its own with a tunnel through each server"
echo "on a loopback testnet; the time is the TCP connection's, the tunnel's stream setup included, best"
echo "of 2. Load average before: $load_before."
echo
echo "| client | server | upload | download |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
