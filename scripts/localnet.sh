# Sourced by the browser scripts: a local DHT on 127.0.0.1 (a bootstrap node, never public ones),
# `hyperpunch relay --ws` on it, and a native `hyperpunch core serve --swarm` serving a core whose
# block i is the UTF-8 text `hyperpunch block <i>`, announced on its discovery key.
#
#   localnet_start BLOCKS   sets relay_url, relay_pid, bootstrap (HOST:PORT of the bootstrap
#                           node), core_key, core_len, serve_pid; needs $hp (the
#                           hyperpunch binary) and $tmp (a scratch folder); adds pids to `pids`
#   localnet_relay          the bootstrap node and the relay alone (sets bootstrap, relay_url,
#                           relay_pid)
#   localnet_stop           kills what localnet_start started
pids=()
localnet_stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pids=()
}
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
free_tcp_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_for FILE SED-EXPRESSION: prints the first match within 60 s, else fails.
wait_for() {
  local out=""
  for _ in $(seq 1 600); do
    out=$(sed -n "$2" "$1" 2>/dev/null | head -1)
    [ -n "$out" ] && { echo "$out"; return 0; }
    sleep 0.1
  done
  return 1
}
# localnet_relay: the bootstrap node and the relay only (sets bootstrap, relay_url, relay_pid).
localnet_relay() {
  local boot_port
  boot_port=$(free_port)
  bootstrap="127.0.0.1:$boot_port"
  "$hp" dht bootstrap --host 127.0.0.1 --port "$boot_port" 2>"$tmp/boot.log" &
  pids+=($!)
  "$hp" relay --ws 127.0.0.1:0 --host 127.0.0.1 --bootstrap "127.0.0.1:$boot_port" 2>"$tmp/relay.log" &
  relay_pid=$!
  pids+=($relay_pid)
  relay_url=$(wait_for "$tmp/relay.log" 's/^relay \(ws:\/\/[0-9.:]*\)$/\1/p') || {
    echo "error: the relay did not start:" >&2; cat "$tmp/relay.log" "$tmp/boot.log" >&2; return 1; }
}
localnet_start() {
  local blocks=$1
  localnet_relay
  mkdir -p "$tmp/blocks"
  local i
  for i in $(seq 0 $((blocks - 1))); do printf 'hyperpunch block %d' "$i" > "$tmp/blocks/$i"; done
  rm -rf "$tmp/core"
  core_key=$("$hp" core create --storage "$tmp/core" --seed "$(printf '42%.0s' $(seq 32))")
  (cd "$tmp/blocks" && "$hp" core append --storage "$tmp/core" $(seq 0 $((blocks - 1)))) >/dev/null
  core_len=$blocks
  "$hp" core serve --storage "$tmp/core" --swarm --host 127.0.0.1 --bootstrap "$bootstrap" \
    >"$tmp/serve.out" 2>"$tmp/serve.log" &
  serve_pid=$!
  pids+=($serve_pid)
  wait_for "$tmp/serve.out" '/^announced /p' >/dev/null || {
    echo "error: the core server did not announce:" >&2; cat "$tmp/serve.log" >&2; return 1; }
}
