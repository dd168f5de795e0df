#!/usr/bin/env bash
# Run by `www.sh test` while the demo page serves a core it created (?create=N; the page's
# title `serving <KEY HEX> <N>` is in PAGE_TITLE): a native `hyperpunch core fetch --swarm`
# finds the page on the DHT (the relay announced it and listens for it) and downloads the core
# through the relay from the page's IndexedDB; every block must be the UTF-8 text
# `hyperpunch block <i>`. Then a JS hyperswarm + hypercore reader (tests/interop/swarm-fetch.js)
# does the same. Needs HP (the hyperpunch binary), BOOTSTRAP (HOST:PORT of the local bootstrap
# node) and SCRATCH (a scratch folder). Bounded: each fetch has 120 s.
set -euo pipefail
cd "$(dirname "$0")/.."
read -r word key n <<<"${PAGE_TITLE:-}"
[ "$word" = serving ] && [ -n "$key" ] && [ -n "$n" ] || {
  echo "error: PAGE_TITLE is not \`serving KEY N\`: ${PAGE_TITLE:-}" >&2; exit 1; }

copy="$SCRATCH/served-native"
rm -rf "$copy"
echo "==> native core fetch --swarm of $key ($n blocks) from the page" >&2
if ! timeout 120 "$HP" core fetch --storage "$copy" --key "$key" --swarm --host 127.0.0.1 \
    --bootstrap "$BOOTSTRAP" >"$SCRATCH/fetch.out" 2>"$SCRATCH/fetch.log"; then
  echo "error: core fetch from the page failed:" >&2; cat "$SCRATCH/fetch.log" >&2; exit 1
fi
length=$("$HP" core info --storage "$copy" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["length"])')
[ "$length" = "$n" ] || { echo "error: fetched $length blocks, expected $n" >&2; exit 1; }
for i in $(seq 0 $((n - 1))); do
  cmp -s <("$HP" core get --storage "$copy" "$i") <(printf 'hyperpunch block %d' "$i") || {
    echo "error: block $i of the fetched copy is not \`hyperpunch block $i\`" >&2; exit 1; }
done
echo "==> native: $n blocks fetched from the page and checked" >&2

echo "==> JS hyperswarm + hypercore fetch of $key from the page" >&2
rm -rf "$SCRATCH/served-js"
if ! timeout 120 node tests/interop/swarm-fetch.js "$BOOTSTRAP" "$key" "$n" "$SCRATCH/served-js" \
    >"$SCRATCH/js-fetch.out" 2>"$SCRATCH/js-fetch.log"; then
  echo "error: the JS fetch from the page failed:" >&2; cat "$SCRATCH/js-fetch.log" >&2; exit 1
fi
grep -qx "fetched $n" "$SCRATCH/js-fetch.out" || {
  echo "error: the JS fetch said:" >&2; cat "$SCRATCH/js-fetch.out" "$SCRATCH/js-fetch.log" >&2; exit 1; }
echo "==> JS: $n blocks fetched from the page and checked" >&2
