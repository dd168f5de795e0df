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

# A local network and a web server for www/dist/; sets page_base and page_url. $1: cargo
# flags for the hyperpunch binary, $2: its profile folder. Everything it starts stops on exit
# (Ctrl-C included); a failed run prints the logs.
ok=0
setup() {
  cargo build --locked -q -p hyperpunch --bin hyperpunch $1
  hp="$root/target/${2}/hyperpunch"
  tmp=$(mktemp -d /tmp/hyperpunch-www.XXXXXX)
  source scripts/localnet.sh
  source scripts/browser.sh
  trap 'browser_stop; localnet_stop; [ "$ok" = 1 ] || { echo "error: www.sh $cmd failed; logs follow" >&2; show_logs; }; rm -rf "$tmp"' EXIT
  # Ctrl-C (and, for the demo, a TERM) is how a demo stops: not a failure.
  # The demo exits 0 then (the README's demo command ends with Ctrl-C); a test stopped by it fails.
  trap 'ok=1; [ "$cmd" = demo ] && exit 0; exit 130' INT
  trap '[ "$cmd" = demo ] && { ok=1; exit 0; }; exit 143' TERM
  localnet_start "${HYPERPUNCH_DEMO_BLOCKS:-1000}"
  serve_dir www/dist
  page_base=$http_url
  page_url="${page_base}?relay=$relay_url&key=$core_key"
}

case "$cmd" in
  build)
    shift
    build "$@"
    ;;
  demo)
    build
    setup --release release
    echo "==> a native peer serves core $core_key ($core_len blocks) through the DHT; relay at $relay_url"
    echo "==> the page: www/dist/ served at $page_base"
    # Check that what the URL names is there before offering it.
    python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=30).read()" "$page_url"
    echo "==> open this in a browser (Ctrl-C stops everything):"
    echo "$page_url"
    echo "==> or create and serve a core from the page (then fetch it with \`hyperpunch core fetch --swarm --bootstrap $bootstrap\`):"
    echo "${page_base}?relay=$relay_url&create=100"
    if [ "${HYPERPUNCH_DEMO_EXIT:-}" = 1 ]; then
      echo "==> HYPERPUNCH_DEMO_EXIT=1: stopping instead of running until Ctrl-C" >&2
      ok=1
      exit 0
    fi
    # Runs until Ctrl-C (or until one of the processes dies, which is a failure).
    wait -n "${pids[@]}" || true
    echo "error: a process of the demo stopped by itself" >&2
    exit 1
    ;;
  test)
    build --dev
    setup "" debug
    bash scripts/install-wasm-tools.sh >/dev/null 2>&1 || true
    bash scripts/install-js-reference.sh
    # For scripts/www-fetch-served.sh, run from a step below.
    export HP="$hp" BOOTSTRAP="$bootstrap" SCRATCH="$tmp"
    chromedriver_start
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
    # Each step has its own bound; this one bounds the whole browser run.
    timeout -k 10 1800 python3 scripts/webdriver.py "$webdriver_url" transport-web/webdriver.json "$steps"
    ok=1
    echo "==> demo page test passed" >&2
    ;;
  *)
    echo "usage: www.sh build [--dev] | demo | test" >&2
    exit 2
    ;;
esac
