#!/usr/bin/env bash
# The demo page (www/) on the npm package (pkg/).
#   www.sh build [--dev]   build pkg/ (release, or --dev) and assemble the static page in www/dist/
#   www.sh demo            build, then start a local DHT (bootstrap node), `hyperpunch relay --ws`,
#                          a native peer serving a sample core, and a web server for www/dist/ on
#                          127.0.0.1; print the URL to open; run until Ctrl-C
#   www.sh test            the same setup (dev build), driven in headless Chromium through
#                          chromedriver: the page syncs the core (title `synced N`, the blocks
#                          listed), syncs again after a reload, and after the peer is stopped a
#                          reload shows it from IndexedDB; then the page creates a core
#                          (?create=N) and serves it through the relay, and a native
#                          `core fetch --swarm` and a JS hyperswarm + hypercore reader fetch it
#                          from the page (scripts/www-fetch-served.sh); a reload serves the same
#                          core; a live reader gets a block appended on the page; 'stop
#                          serving' closes; when the relay is stopped the page shows
#                          the error. Bounded; exits.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
cmd=${1:-build}

build() {
  bash scripts/build-pkg.sh "$@"
  rm -rf www/dist
  mkdir -p www/dist/hyperpunch/wasm
  cp www/index.html www/app.js www/style.css www/dist/
  cp pkg/index.js pkg/index.d.ts pkg/package.json www/dist/hyperpunch/
  cp pkg/wasm/hyperpunch_web.js pkg/wasm/hyperpunch_web_bg.wasm www/dist/hyperpunch/wasm/
  echo "==> www/dist/ built (static files: host them anywhere)" >&2
}

# A local network and a web server for www/dist/; sets page_base.
setup() {
  cargo build --locked -q -p hyperpunch --bin hyperpunch $1
  hp="$root/target/${2}/hyperpunch"
  tmp=$(mktemp -d)
  source scripts/localnet.sh
  trap 'localnet_stop; rm -rf "$tmp"' EXIT
  localnet_start "${HYPERPUNCH_DEMO_BLOCKS:-1000}"
  local port
  port=$(free_tcp_port)
  python3 -m http.server "$port" --bind 127.0.0.1 --directory www/dist >"$tmp/http.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break
    sleep 0.1
  done
  page_base="http://127.0.0.1:$port/"
  page_url="${page_base}?relay=$relay_url&key=$core_key"
}

case "$cmd" in
  build)
    shift
    build "$@"
    ;;
  demo)
    build
    setup "" debug
    echo "==> a native peer serves core $core_key ($core_len blocks) through the DHT; relay at $relay_url"
    echo "==> open this in a browser (Ctrl-C stops everything):"
    echo "$page_url"
    echo "==> or create and serve a core from the page (then fetch it with \`hyperpunch core fetch --swarm --bootstrap $bootstrap\`):"
    echo "${page_base}?relay=$relay_url&create=100"
    wait
    ;;
  test)
    build --dev
    setup "" debug
    bash scripts/install-wasm-tools.sh >/dev/null 2>&1 || true
    bash scripts/install-js-reference.sh
    # For scripts/www-fetch-served.sh, run from a step below.
    export HP="$hp" BOOTSTRAP="$bootstrap" SCRATCH="$tmp"
    chromedriver=${CHROMEDRIVER:-/usr/bin/chromedriver}
    cd_port=$(free_tcp_port)
    "$chromedriver" --port="$cd_port" >"$tmp/chromedriver.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
      python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$cd_port/status')" 2>/dev/null && break
      sleep 0.1
    done
    last=$((core_len - 1))
    create_url="${page_base}?relay=$relay_url&create=${HYPERPUNCH_CREATE_BLOCKS:-100}"
    steps=$(python3 - "$page_url" "$core_len" "$last" "$serve_pid" "$create_url" "$relay_pid" <<'PY'
import json, sys
url, n, last, serve_pid, create_url, relay_pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
shown = min(n, 200)
print(json.dumps([
    {"open": url},
    {"title": f"synced {n}", "timeout": 120},
    {"eval": "document.querySelectorAll('#blocks li').length", "expect": shown},
    {"eval": "document.querySelector('#blocks li:last-child').textContent", "expect": f"hyperpunch block {last}"},
    {"eval": "document.getElementById('progress').value", "expect": n},
    # A reload opens the core from IndexedDB and syncs again with the peer.
    {"reload": True},
    {"title": f"synced {n}", "timeout": 120},
    # Without the peer, a reload shows the core from IndexedDB.
    {"run": f"kill {serve_pid}"},
    {"reload": True},
    {"title": "error:", "timeout": 120},
    {"eval": "document.getElementById('counts').textContent.startsWith('%d / %d blocks')" % (n, n), "expect": True},
    {"eval": "document.querySelector('#blocks li:last-child').textContent", "expect": f"hyperpunch block {last}"},
    # The page creates a core and serves it: native and JS readers fetch it through the DHT.
    {"open": create_url},
    {"title": "serving ", "timeout": 120},
    {"run": "bash scripts/www-fetch-served.sh"},
    # A reload serves the same core from IndexedDB.
    {"run": 'printf %s "$PAGE_TITLE" > "$SCRATCH/served-title"'},
    {"reload": True},
    {"title": "serving ", "timeout": 120},
    {"run": 'test "$PAGE_TITLE" = "$(cat "$SCRATCH/served-title")"'},
    # A live reader gets a block the page appends.
    {"run": "bash scripts/www-fetch-served.sh live-start"},
    {"eval": "document.getElementById('append').click() === undefined", "expect": True},
    {"run": "bash scripts/www-fetch-served.sh live-check"},
    # Stop serving (close: server, announcement and session), then serve again.
    {"eval": "document.getElementById('stop').click() === undefined", "expect": True},
    {"title": "stopped ", "timeout": 60},
    {"reload": True},
    {"title": "serving ", "timeout": 120},
    # The relay goes away: the page says serving stopped.
    {"run": f"kill {relay_pid}"},
    {"title": "error:", "timeout": 120},
    {"eval": "document.title.includes('serve through')", "expect": True},
]))
PY
)
    echo "==> headless Chromium: $page_url" >&2
    python3 scripts/webdriver.py "http://127.0.0.1:$cd_port" transport-web/webdriver.json "$steps"
    echo "==> demo page test passed" >&2
    ;;
  *)
    echo "usage: www.sh build [--dev] | demo | test" >&2
    exit 2
    ;;
esac
