#!/usr/bin/env bash
# The npm package as a user gets it (`just test-pkg`, part of `just test`):
#   1. build pkg/ (`scripts/build-pkg.sh --dev`; HYPERPUNCH_PKG_RELEASE=1 for a release build) and
#      `npm pack` it; the tarball must hold the JS layer, its types, the README and the wasm module
#   2. copy the fresh Vite + TypeScript project of tests/pkg-vite (create-vite's vanilla-ts
#      template; package-lock.json pins vite and typescript, so `npm ci` is reproducible and
#      served from npm's cache after the first run) into a temporary folder and install the
#      tarball into it, as `npm install ./hyperpunch-X.tgz` would
#   3. `tsc --noEmit` on the pkg README's examples (each js block of pkg/README.md copied into
#      src/example-N.ts) and on the app (src/main.ts), strict, libraries checked too
#   4. `vite build`; the output must hold the .wasm (byte for byte the packed one) and a script
#      that loads it by URL
#   5. the built app in headless Chromium (chromedriver): it creates a core in IndexedDB, appends,
#      reads, reopens; a Hyperbee: put/get/del, a batch, range scans, a sub, reopened by name; a
#      Corestore with a fixed primary key (a named core's key and the drive key equal JS
#      corestore's and hyperdrive's, tests/interop/store-drive-keys.js) and a Hyperdrive in it:
#      put/get/entry/list/readdir/symlink/del, reopened by name; a
#      Swarm: joins a random topic through `hyperpunch relay --ws` on a local DHT, where a JS
#      hyperswarm peer (tests/interop/swarm-topic-peer.js) joined, and exchanges a message each
#      way with it, then the same through a JS @hyperswarm/dht-relay 0.4.3 relay (custodially);
#      two Swarms of the page, each on its own relay session as two pages, meet on a random
#      topic, exchange messages both ways and replicate a core one way over a second pair's
#      connection, through our relay and through a JS @hyperswarm/dht-relay
#      0.4.3 relay (custodially; src/pages.ts); a JS hyperswarm peer seeding a hyperdrive of
#      20 files and a named core
#      (tests/interop/swarm-drive-peer.js): the page joins the drive's discovery key, replicates
#      its Corestore over the connection, opens the drive by key and reads every file, and the
#      core's block; the rest of the hyperbee / corestore / hyperdrive API (history, diff,
#      checkouts, snapshots, compare-and-swap, watch, getAndWatch; namespaces, sessions, list,
#      store watch/unwatch;
#      drive batches, write streams, diff, checkouts, watch; a bee's header, a watcher's `map`;
#      ranged drive read streams, has, clear, getBlobsLength, entry follow; drive truncate and
#      purge; and, on the JS
#      peer's drive, has / downloadDiff / download / clear and a monitor of one file read): the page's summaries must equal
#      what JS hyperbee, corestore and hyperdrive print for the same operations
#      (tests/interop/pkg-api-ops.js); an Autobase: the page as a writer that a JS autobase
#      bootstrap adds (tests/interop/pkg-autobase-peer.js; both append, the JS peer answering
#      each page value: the page's view must be JS's, value for value in order, all indexed;
#      then reopened from IndexedDB; the JS base replicates with base.replicate and its wakeup
#      session must have had the page's wakeup channel as an active peer), the page as the bootstrap that adds a JS writer
#      (tests/interop/pkg-autobase-writer.js; the same view at both ends), a page-only base
#      reopened, an apply that throws; document.title `ok ...` holds each part's summary
# Bounded (each step has a deadline); cleans up its processes and folder; on failure prints the
# logs. Needs node 20.19+ and npm (vite 8).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"

# vite 8 needs node ^20.19 or >= 22.12.
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1)' || {
  echo "error: node $(node --version) is too old for vite 8 (needs ^20.19 or >= 22.12)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/hyperpunch-pkg.XXXXXX)
source scripts/localnet.sh
source scripts/browser.sh
ok=0
cleanup() {
  browser_stop
  localnet_stop
  if [ "$ok" != 1 ]; then
    echo "error: the npm package check failed; logs follow" >&2
    show_logs
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
step() { echo "==> $*" >&2; }
# run LOG SECONDS CMD...: CMD with its output in $tmp/LOG, killed after SECONDS.
run() {
  local log=$1 secs=$2
  shift 2
  if ! timeout -k 10 "$secs" "$@" >"$tmp/$log" 2>&1; then
    echo "error: '$*' failed (or ran over ${secs} s):" >&2
    cat "$tmp/$log" >&2
    : >"$tmp/$log"
    return 1
  fi
}

if [ "${HYPERPUNCH_PKG_RELEASE:-}" = 1 ]; then
  bash scripts/build-pkg.sh
else
  bash scripts/build-pkg.sh --dev
fi

step "npm pack (pkg/)"
(cd pkg && run npm-pack.log 300 npm pack --pack-destination "$tmp")
tgz=$(cd "$tmp" && ls ./*.tgz 2>/dev/null | sed 's|^\./||')
[ "$(wc -w <<<"$tgz")" = 1 ] || { echo "error: npm pack wrote no tarball (or several):" >&2; cat "$tmp/npm-pack.log" >&2; exit 1; }
tarball="$tmp/$tgz"
[ -f "$tarball" ] || { echo "error: npm pack did not write $tarball" >&2; exit 1; }
listing=$(tar tzf "$tarball" | sort)
for f in package/package.json package/README.md package/index.js package/index.d.ts \
  package/wasm/hyperpunch_web.js package/wasm/hyperpunch_web.d.ts package/wasm/hyperpunch_web_bg.wasm; do
  grep -qx "$f" <<<"$listing" || { echo "error: the tarball lacks $f; it holds:" >&2; echo "$listing" >&2; exit 1; }
done
step "$tgz: $(wc -l <<<"$listing") files, $(du -h "$tarball" | cut -f1)"

step "a fresh Vite + TypeScript project (tests/pkg-vite), npm ci"
app="$tmp/app"
mkdir -p "$app"
cp -r tests/pkg-vite/. "$app/"
rm -rf "$app/node_modules" "$app/dist"
(cd "$app" && run npm-ci.log 600 npm ci --prefer-offline --no-audit --no-fund --loglevel=error)
step "npm install $tgz"
(cd "$app" && run npm-install.log 600 npm install --no-save --prefer-offline --no-audit --no-fund --loglevel=error "$tarball")
[ -f "$app/node_modules/hyperpunch/package.json" ] || { echo "error: hyperpunch is not in node_modules" >&2; exit 1; }

# The README's examples, as a user would paste them: each ```js block into src/example-N.ts.
python3 - pkg/README.md "$app/src" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"```js\n(.*?)```", text, re.S)
if not blocks:
    sys.exit("pkg/README.md has no ```js example")
for i, b in enumerate(blocks):
    open(f"{sys.argv[2]}/example-{i}.ts", "w").write(b)
PY
step "tsc --noEmit (the README example and the app, strict)"
(cd "$app" && run tsc.log 300 npx --no-install tsc --noEmit -p .)

step "vite build"
(cd "$app" && run vite.log 300 npx --no-install vite build)
packed_wasm="$app/node_modules/hyperpunch/wasm/hyperpunch_web_bg.wasm"
built_wasm=""
for f in "$app"/dist/assets/*.wasm; do
  [ -f "$f" ] && cmp -s "$f" "$packed_wasm" && built_wasm=$f
done
[ -n "$built_wasm" ] || { echo "error: vite build wrote no copy of the packed .wasm; dist holds:" >&2; find "$app/dist" >&2; exit 1; }
wasm_name=$(basename "$built_wasm")
grep -lF "$wasm_name" "$app"/dist/assets/*.js >/dev/null || {
  echo "error: no built script names $wasm_name (the wasm is not loaded by URL)" >&2; exit 1; }
step "dist/assets/$wasm_name ($(du -h "$built_wasm" | cut -f1)) is the packed wasm, loaded by URL"

step "a local DHT, hyperpunch relay --ws, a JS hyperswarm peer on a topic"
cargo build --locked -q -p hyperpunch --bin hyperpunch
hp="$root/target/debug/hyperpunch"
bash scripts/install-js-reference.sh
localnet_relay
topic=$(python3 -c 'import os; print(os.urandom(32).hex())')
node tests/interop/swarm-topic-peer.js "$bootstrap" "$topic" >"$tmp/jspeer.out" 2>"$tmp/jspeer.log" &
pids+=($!)
js_key=$(wait_for "$tmp/jspeer.out" 's/^joined \([0-9a-f]*\)$/\1/p') || {
  echo "error: the JS hyperswarm peer did not join:" >&2; cat "$tmp/jspeer.out" "$tmp/jspeer.log" >&2; exit 1; }
# A JS @hyperswarm/dht-relay 0.4.3 relay on a JS hyperdht node: two page swarms meet through it
# (custodially, src/pages.ts).
node tests/interop/relay-stall-jsrelay.js "$bootstrap" >"$tmp/jsrelay.out" 2>"$tmp/jsrelay.log" &
pids+=($!)
jsrelay_url=$(wait_for "$tmp/jsrelay.out" 's/^relay \(ws:\/\/[0-9.:]*\)$/\1/p') || {
  echo "error: the JS relay did not start:" >&2; cat "$tmp/jsrelay.out" "$tmp/jsrelay.log" >&2; exit 1; }
files=20
node tests/interop/swarm-drive-peer.js "$bootstrap" "$files" >"$tmp/jsdrive.out" 2>"$tmp/jsdrive.log" &
pids+=($!)
seeding=$(wait_for "$tmp/jsdrive.out" 's/^seeding \([0-9a-f]* [0-9a-f]*\)$/\1/p') || {
  echo "error: the JS drive seeder did not announce:" >&2; cat "$tmp/jsdrive.out" "$tmp/jsdrive.log" >&2; exit 1; }
read -r drive_key notes_key <<<"$seeding"
# A JS autobase bootstrap that adds the page's writer (its first message on a connection).
abn=5
node tests/interop/pkg-autobase-peer.js "$bootstrap" "$abn" >"$tmp/jsab.out" 2>"$tmp/jsab.log" &
pids+=($!)
ab_key=$(wait_for "$tmp/jsab.out" 's/^autobase \([0-9a-f]*\)$/\1/p') || {
  echo "error: the JS autobase peer did not announce:" >&2; cat "$tmp/jsab.out" "$tmp/jsab.log" >&2; exit 1; }
# A JS autobase writer that the page's own base adds (the page sends it the base key).
abtopic=$(python3 -c 'import os; print(os.urandom(32).hex())')
abcount=3
node tests/interop/pkg-autobase-writer.js "$bootstrap" "$abtopic" "$abn" "$abcount" >"$tmp/jsabw.out" 2>"$tmp/jsabw.log" &
pids+=($!)
ab_writer=$(wait_for "$tmp/jsabw.out" 's/^writer \([0-9a-f]*\)$/\1/p') || {
  echo "error: the JS autobase writer did not join:" >&2; cat "$tmp/jsabw.out" "$tmp/jsabw.log" >&2; exit 1; }
export SCRATCH="$tmp"
# The keys JS corestore and hyperdrive give for the primary key the page's store uses.
store_keys=$(cd tests/interop && timeout 120 node store-drive-keys.js "$(printf '07%.0s' $(seq 32))") || {
  echo "error: tests/interop/store-drive-keys.js failed" >&2; exit 1; }

# What JS hyperbee, corestore and hyperdrive give for the operations of the page's src/api.ts.
api_ops=$(cd tests/interop && timeout 120 node pkg-api-ops.js "$(printf '07%.0s' $(seq 32))" "$files") || {
  echo "error: tests/interop/pkg-api-ops.js failed" >&2; exit 1; }
[ "$(wc -l <<<"$api_ops")" = 8 ] || { echo "error: pkg-api-ops.js printed:" >&2; echo "$api_ops" >&2; exit 1; }

step "the built app in headless Chromium (relay $relay_url, topic $topic)"
serve_dir "$app/dist"
chromedriver_start
page_url="${http_url}?relay=$relay_url&jsrelay=$jsrelay_url&topic=$topic&drive=$drive_key&notes=$notes_key&files=$files&autobase=$ab_key&abn=$abn&abtopic=$abtopic&abwriter=$ab_writer&abcount=$abcount"
bee='bee a=0@1 b=null staged=4 all=a=0,c=2,e=4,f=5 bounded=c=2,e=4 reversed=f=5,e=4 sub=9/null/x=9 version=10 reopened=true peek=c raw=true'
drive='drive hello=hello run=true/{"mode":"x"} link=/docs/hello.txt all=/docs/hello.txt,/docs/run.sh,/latest,/top.txt docs=/docs/hello.txt,/docs/run.sh readdir=docs,latest,top.txt gone=false/null stream=hi version=7 writable=true reopened=true'
replica="replica flushed=true drive=${drive_key:0:8} files=$files ok=true listed=$files writable=false note1=note 1 core length=2 block1=note 1"
# The page was added by the JS bootstrap, appended, indexed; its view is compared with JS's below.
autobase="autobase key=true before=false writable=true view="
autobase_rest="reopened=true solo=abc/3/true/true solo-reopened=true throws=true"
swarm="flushed=true peer=${js_key:0:8} client=true got=echo hello from page+hello from js open=1"
# Two page swarms on a fresh topic: a message each way and an answer, then a core of 20 blocks
# replicated one way; through our relay (non-custodial) and the JS relay (custodial).
pages="keys=true a=echo hello from a+hello from b b=hello from a open=1/1 replicated=true/20 open=1/1"
api_extra='codec=null checkout-write-refused=true live=a>put12:h watcher-close-ends=true cas-throw=cas says no/true closed-checkout=the bee is closed'
bee_extra='empty-header=null'
# Blocks cleared (4 of /m.txt, none again, the 7 still stored), which JS gives as 0. A drive's
# purge (JS hyperdrive 13.3.4's throws under hypercore 11.37.1): its 2 cores gone from the store,
# the drive made again under the same key at version 1, empty, then one file: version 2, 1 blob.
store_extra='named=2 core-session=one checkout-writable=false aborted-stream=false/true closed-checkout=the drive is closed clear-diff=4/0 clear-all=7/false purge=2/true/1/ reborn=2/1'
# Files downloaded by downloadDiff (the last half) and download (one), blocks cleared (JS: 0).
replica_extra="counts=$((files / 2))/1/1/$((files - 1))/false"
steps=$(python3 - "$page_url" "$bee" "$drive" "store $store_keys" "$swarm" "$replica" "$api_ops" "$api_extra" "$store_extra" "$bee_extra" "$replica_extra" "$autobase" "$autobase_rest" "$pages" <<'PY'
import json, sys
url, bee, drive, store, swarm, replica, api_ops, api_extra, store_extra, bee_extra, replica_extra, autobase, autobase_rest, pages = sys.argv[1:]
print(json.dumps([
    {"open": url},
    {"title": "ok ", "timeout": 360},
    {"eval": 'document.title.includes("length=2 block1=world keyhex=64 dkey=32 writable=true reopened=true")', "expect": True},
    {"eval": "document.title.includes(%s)" % json.dumps(bee), "expect": True},
    {"eval": "document.title.includes(%s)" % json.dumps(drive), "expect": True},
    # History, diff, checkouts, CAS, watch; namespaces, sessions, list; drive batches, write
    # streams, diff, checkouts, watch: each line as JS prints it for the same operations.
    *[{"eval": "document.title.includes(%s)" % json.dumps(line), "expect": True} for line in api_ops.splitlines()],
    {"eval": "document.title.includes(%s)" % json.dumps(api_extra), "expect": True},
    {"eval": "document.title.includes(%s)" % json.dumps(store_extra), "expect": True},
    {"eval": "document.title.includes(%s)" % json.dumps(bee_extra), "expect": True},
    {"eval": "document.title.includes(%s)" % json.dumps(replica_extra), "expect": True},
    # The store's named core and the drive have the keys JS gives for the same primary key.
    {"eval": "document.title.includes(%s)" % json.dumps(store), "expect": True},
    {"eval": "document.title.includes(%s)" % json.dumps(swarm), "expect": True},
    # The same through the JS relay (custodially): the summary after `swarm-js me=KEY `.
    {"eval": '(document.title.split("swarm-js me=")[1] || "").slice(65).startsWith(%s)' % json.dumps(swarm), "expect": True},
    # Two pages meeting through our relay and through the JS relay.
    {"eval": "document.title.includes(%s)" % json.dumps("pages-ours " + pages), "expect": True},
    {"eval": "document.title.includes(%s)" % json.dumps("pages-js " + pages), "expect": True},
    # A JS hyperswarm peer's hyperdrive and core, replicated over a swarm connection.
    {"eval": "document.title.includes(%s)" % json.dumps(replica), "expect": True},
    {"eval": "document.title.includes(%s)" % json.dumps(autobase), "expect": True},
    {"eval": "document.title.includes(%s)" % json.dumps(autobase_rest), "expect": True},
    # The page's autobase view is the JS bootstrap's, same values in the same order (JS prints
    # it once it indexed every value; waited for, up to 30 s).
    {"run": 'v=$(printf %s "$PAGE_TITLE" | sed -n "s/.* autobase key=true before=false writable=true view=\\([^ ]*\\) .*/\\1/p"); [ -n "$v" ] || { echo "no autobase view in the title"; exit 1; }; for i in $(seq 300); do grep -qx "done $v" "$SCRATCH/jsab.out" && exit 0; sleep 0.1; done; echo "the JS autobase view differs from the page view $v:"; cat "$SCRATCH/jsab.out"; exit 1'},
    # The JS bootstrap replicates with base.replicate: its wakeup session had the page's wakeup
    # channel as an active peer (the page opened it with the base's capability).
    {"run": 'for i in $(seq 300); do grep -qx "wakeup-peer active" "$SCRATCH/jsab.out" && exit 0; sleep 0.1; done; echo "the JS base never had the page as a wakeup peer:"; cat "$SCRATCH/jsab.out"; exit 1'},
    # The page's own base with the JS writer it added: the same view at both ends.
    {"eval": "document.title.includes(%s)" % json.dumps("autobase-boot indexer=true view="), "expect": True},
    {"run": 'v=$(printf %s "$PAGE_TITLE" | sed -n "s/.* autobase-boot indexer=true view=\\([^ ]*\\) end.*/\\1/p"); [ -n "$v" ] || { echo "no autobase-boot view in the title"; exit 1; }; for i in $(seq 300); do grep -qx "done $v" "$SCRATCH/jsabw.out" && exit 0; sleep 0.1; done; echo "the JS writer view differs from the page view $v:"; cat "$SCRATCH/jsabw.out"; exit 1'},
    # The JS peer saw the page's key and got its message.
    {"run": 'me=$(printf %s "$PAGE_TITLE" | sed -n "s/.*swarm me=\\([0-9a-f]*\\).*/\\1/p"); [ -n "$me" ] && grep -q "^connection $me " "$SCRATCH/jspeer.out" && grep -qx "data hello from page" "$SCRATCH/jspeer.out" || { echo "the JS peer did not meet $me:"; cat "$SCRATCH/jspeer.out"; exit 1; }'},
    {"run": 'me=$(printf %s "$PAGE_TITLE" | sed -n "s/.*swarm-js me=\\([0-9a-f]*\\).*/\\1/p"); [ -n "$me" ] && grep -q "^connection $me " "$SCRATCH/jspeer.out" || { echo "the JS peer did not meet $me through the JS relay:"; cat "$SCRATCH/jspeer.out"; exit 1; }'},
]))
PY
)
timeout -k 10 600 python3 scripts/webdriver.py "$webdriver_url" transport-web/webdriver.json "$steps"
ok=1
step "npm package check passed"
