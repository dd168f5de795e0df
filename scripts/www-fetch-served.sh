#!/usr/bin/env bash
# Run by `www.sh test` while the demo page serves a core it created (?create=N; the page's
# title `serving <KEY HEX> <N>` is in PAGE_TITLE): a native `hyperpunch core fetch --swarm`
# finds the page on the DHT (the relay announced it and listens for it) and downloads the core
# through the relay from the page's IndexedDB; every block must be the UTF-8 text
# `hyperpunch block <i>`. Then a JS hyperswarm + hypercore reader (tests/interop/swarm-fetch.js)
# does the same. Needs HP (the hyperpunch binary), BOOTSTRAP (HOST:PORT of the local bootstrap
# node) and SCRATCH (a scratch folder). Bounded: each fetch has 120 s.
#
#   www-fetch-served.sh              the fetches above
#   www-fetch-served.sh live-start   start `core fetch --swarm --live` (bounded: 300 s) and wait
#                                    until it holds the N blocks
#   www-fetch-served.sh live-check   after the page appended one block: wait until the live
#                                    fetch holds N + 1 and block N is `hyperpunch block <N>`
set -euo pipefail
cd "$(dirname "$0")/.."
read -r word key n <<<"${PAGE_TITLE:-}"
[ "$word" = serving ] && [ -n "$key" ] && [ -n "$n" ] || {
  echo "error: PAGE_TITLE is not \`serving KEY N\`: ${PAGE_TITLE:-}" >&2; exit 1; }

# wait_line FILE LINE PID: until FILE has the line LINE (120 s at most; fails if PID exits).
wait_line() {
  for _ in $(seq 1 1200); do
    grep -qx "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { grep -qx "$2" "$1" 2>/dev/null && return 0; return 1; }
    sleep 0.1
  done
  return 1
}

live="$SCRATCH/served-live"
case "${1:-fetch}" in
  live-start)
    rm -rf "$live"
    echo "==> core fetch --swarm --live of $key from the page" >&2
    timeout 300 "$HP" core fetch --storage "$live" --key "$key" --swarm --host 127.0.0.1 \
      --bootstrap "$BOOTSTRAP" --live >"$SCRATCH/live.out" 2>"$SCRATCH/live.log" &
    echo $! >"$SCRATCH/live.pid"
    echo "$n" >"$SCRATCH/live.n"
    wait_line "$SCRATCH/live.out" "length $n" "$!" || {
      echo "error: the live fetch did not reach length $n:" >&2
      cat "$SCRATCH/live.out" "$SCRATCH/live.log" >&2; exit 1; }
    echo "==> live fetch holds $n blocks" >&2
    exit 0
    ;;
  live-check)
    pid=$(cat "$SCRATCH/live.pid")
    m=$(( $(cat "$SCRATCH/live.n") + 1 ))
    ok=0
    wait_line "$SCRATCH/live.out" "length $m" "$pid" && ok=1
    kill "$pid" 2>/dev/null || true
    # Not our child (live-start ran in another invocation): `wait` returns at once, so wait
    # until it is gone and its storage lock released (bounded), or `core get` races it.
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    [ "$ok" = 1 ] || {
      echo "error: the live fetch did not get the appended block (length $m):" >&2
      cat "$SCRATCH/live.out" "$SCRATCH/live.log" >&2; exit 1; }
    cmp -s <("$HP" core get --storage "$live" $((m - 1))) <(printf 'hyperpunch block %d' $((m - 1))) || {
      echo "error: the appended block is not \`hyperpunch block $((m - 1))\`" >&2; exit 1; }
    echo "==> the live fetch got block $((m - 1)), appended on the page" >&2
    exit 0
    ;;
  fetch) ;;
  *) echo "usage: www-fetch-served.sh [live-start | live-check]" >&2; exit 2 ;;
esac

copy="$SCRATCH/served-native"
rm -rf "$copy"
echo "==> native core fetch --swarm of $key ($n blocks) from the page" >&2
t0=$(date +%s%N)
if ! timeout 120 "$HP" core fetch --storage "$copy" --key "$key" --swarm --host 127.0.0.1 \
    --bootstrap "$BOOTSTRAP" >"$SCRATCH/fetch.out" 2>"$SCRATCH/fetch.log"; then
  echo "error: core fetch from the page failed:" >&2; cat "$SCRATCH/fetch.log" >&2; exit 1
fi
t1=$(date +%s%N)
length=$("$HP" core info --storage "$copy" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["length"])')
[ "$length" = "$n" ] || { echo "error: fetched $length blocks, expected $n" >&2; exit 1; }
for i in $(seq 0 $((n - 1))); do
  cmp -s <("$HP" core get --storage "$copy" "$i") <(printf 'hyperpunch block %d' "$i") || {
    echo "error: block $i of the fetched copy is not \`hyperpunch block $i\`" >&2; exit 1; }
done
echo "==> native: $n blocks fetched from the page and checked ($(( (t1 - t0) / 1000000 )) ms, process spawn to exit)" >&2

echo "==> JS hyperswarm + hypercore fetch of $key from the page" >&2
rm -rf "$SCRATCH/served-js"
t0=$(date +%s%N)
if ! timeout 120 node tests/interop/swarm-fetch.js "$BOOTSTRAP" "$key" "$n" "$SCRATCH/served-js" \
    >"$SCRATCH/js-fetch.out" 2>"$SCRATCH/js-fetch.log"; then
  echo "error: the JS fetch from the page failed:" >&2; cat "$SCRATCH/js-fetch.log" >&2; exit 1
fi
t1=$(date +%s%N)
grep -qx "fetched $n" "$SCRATCH/js-fetch.out" || {
  echo "error: the JS fetch said:" >&2; cat "$SCRATCH/js-fetch.out" "$SCRATCH/js-fetch.log" >&2; exit 1; }
echo "==> JS: $n blocks fetched from the page and checked ($(( (t1 - t0) / 1000000 )) ms, process spawn to exit)" >&2
