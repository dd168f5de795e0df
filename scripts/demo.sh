#!/usr/bin/env bash
# The end-to-end demo: build a hypercore with the hyperpunch CLI, then have the pinned JS reference build
# the same log from the same seed and blocks and compare key, tree hash, byte length and signature bytes;
# truncate (new fork), compare again; verify; then replicate the log over TCP (secret-stream + protomux +
# hypercore replication) to a second hyperpunch folder and to a JS hypercore reader.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

bold "building hyperpunch (release)"
cargo build --release --locked -q -p hyperpunch --bin hyperpunch
hp="$root/target/release/hyperpunch"

work=$(mktemp -d /tmp/hyperpunch-demo.XXXXXX)
server=
# Runs on every exit; it must never turn a successful run into a failure (the server may be gone).
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
store="$work/core"
seed=$(printf '42%.0s' {1..32})

bold "hyperpunch core create --seed $seed"
key=$("$hp" core create --storage "$store" --seed "$seed")
echo "key: $key"

bold "append: three files, then 1000 lines from stdin"
printf 'hello from hyperpunch\n' > "$work/a.txt"
head -c 65536 /dev/zero | tr '\0' 'x' > "$work/b.bin"
: > "$work/empty"
"$hp" core append --storage "$store" "$work/a.txt" "$work/b.bin" "$work/empty"
seq 1 1000 | sed 's/^/line /' | "$hp" core append --storage "$store"

bold "hyperpunch core info"
"$hp" core info --storage "$store"
"$hp" core info --storage "$store" --json > "$work/rust.json"

bold "hyperpunch core get 0"
"$hp" core get --storage "$store" 0

bold "the JS reference builds the same log from the same seed and blocks"
node - "$work" "$seed" <<'JS' > "$work/job.json"
const fs = require('fs')
const [work, seed] = process.argv.slice(2)
const files = ['a.txt', 'b.bin', 'empty'].map(f => fs.readFileSync(`${work}/${f}`).toString('hex'))
const lines = []
for (let i = 1; i <= 1000; i++) lines.push(Buffer.from(`line ${i}\n`).toString('hex'))
process.stdout.write(JSON.stringify({ mode: 'build', seed, compat: false, encryptionKey: null,
  ops: [{ append: files }, { append: lines }, { truncate: 500 }] }))
JS
(cd tests/interop && node hypercore-ops.js < "$work/job.json") > "$work/js.json"
compare() { # $1 = index of the JS state to compare with the current Rust info
  node - "$work/rust.json" "$work/js.json" "$1" <<'JS'
const [rf, jf, i] = process.argv.slice(2)
const r = JSON.parse(require('fs').readFileSync(rf))
const js = JSON.parse(require('fs').readFileSync(jf))
const s = js.states[Number(i)]
const rows = [['key', r.key, js.key], ['length', r.length, s.length], ['byteLength', r.byteLength, s.byteLength],
  ['fork', r.fork, s.fork], ['treeHash', r.treeHash, s.treeHash], ['signature', r.signature, s.signature]]
let ok = true
for (const [name, a, b] of rows) {
  const same = String(a) === String(b)
  ok = ok && same
  console.log(`${same ? 'same' : 'DIFF'}  ${name.padEnd(10)} rust=${String(a).slice(0, 40)}${String(a).length > 40 ? '…' : ''}`)
}
if (!ok) { console.error('hyperpunch and the JS reference disagree'); process.exit(1) }
console.log('hyperpunch and the JS reference produced byte-identical logs')
JS
}
compare 1

bold "truncate to 500 (new fork), compare again"
"$hp" core truncate --storage "$store" 500
"$hp" core info --storage "$store" --json > "$work/rust.json"
compare 2

bold "verify re-hashes every block and checks the signature"
"$hp" core verify --storage "$store"

bold "replicate over TCP: hyperpunch core serve, hyperpunch core fetch, and a JS hypercore reader"
"$hp" core serve --storage "$store" --tcp 127.0.0.1:0 > "$work/serve.out" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q "listening on" "$work/serve.out" && break; sleep 0.1; done
addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$work/serve.out" | head -1)
echo "serving $key on $addr"
"$hp" core fetch --storage "$work/copy" --key "$key" --tcp "$addr"
"$hp" core verify --storage "$work/copy"
port=${addr##*:}
(cd tests/interop && node replicate-peer.js "{\"mode\":\"client\",\"port\":$port,\"role\":\"reader\",\"streamSeed\":\"$(printf '33%.0s' {1..32})\",\"key\":\"$key\",\"expect\":500,\"deadline\":30000}") > "$work/js-reader.json"
node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n")
  const r = JSON.parse(lines[lines.length - 1])
  console.log("JS reader:", JSON.stringify(r).slice(0, 160))
' "$work/js-reader.json"
kill "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
server=
"$hp" core info --storage "$work/copy" --json > "$work/copy.json"
node -e '
  const [a, b] = process.argv.slice(1).map(f => JSON.parse(require("fs").readFileSync(f)))
  for (const k of ["key", "length", "byteLength", "fork", "treeHash", "signature"]) {
    if (String(a[k]) !== String(b[k])) { console.error("fetched copy differs in " + k); process.exit(1) }
  }
  console.log("the fetched copy equals the original: key, length, byteLength, fork, treeHash, signature")
' "$work/rust.json" "$work/copy.json"

bold "the library: transport-native/examples/quickstart.rs"
cargo run --release --locked -q -p hyperpunch --example quickstart

bold "done"
echo "The same log, byte for byte, from Rust and from the JS reference, and replicated to both."
