#!/usr/bin/env bash
# Reproduces a bug fixed on 2026-12-06 (README, What is missing): a connection made through `hyperpunch relay`
# to a native `core serve --swarm` sometimes gets the server's first message and then nothing.
# Each run starts a fresh local DHT, relay and server (scripts/localnet.sh) and replicates 100
# blocks with the JS dht-relay client, through our relay and through the JS relay; prints one line
# per run. Measured 2026-12-06: through our relay 6 of 21 runs stalled, through the JS relay 0 of 16.
#   scripts/relay-stall-repro.sh [RUNS]
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-js-reference.sh >/dev/null
cargo build --locked -q -p hyperpunch --bin hyperpunch
hp=$(pwd)/target/debug/hyperpunch
for i in $(seq 1 "${1:-5}"); do
  tmp=$(mktemp -d)
  source scripts/localnet.sh
  localnet_start 100
  boot=$(sed -n 's/.*--port \([0-9]*\).*/\1/p' <<<"$(tr '\0' ' ' < /proc/${pids[0]}/cmdline)")
  node tests/interop/relay-stall-jsrelay.js "127.0.0.1:$boot" >"$tmp/jsrelay.log" 2>&1 &
  pids+=($!)
  js_url=$(wait_for "$tmp/jsrelay.log" 's/^relay \(ws:\/\/[0-9.:]*\)$/\1/p')
  ours=$(timeout 30 node tests/interop/relay-stall-client.js "$relay_url" "$core_key" 100 2>&1 | tail -1)
  theirs=$(timeout 30 node tests/interop/relay-stall-client.js "$js_url" "$core_key" 100 2>&1 | tail -1)
  echo "run $i: through hyperpunch relay: $ours | through the JS relay: $theirs"
  localnet_stop
  rm -rf "$tmp"
done
