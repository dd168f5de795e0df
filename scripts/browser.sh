# Sourced by the browser scripts (www.sh, test-pkg.sh): a static web server and chromedriver on
# 127.0.0.1, each on a port it picks itself (read from its readiness line, so no port races), and
# the logs to show when something fails. Needs $tmp (a scratch folder) and the `pids` array and
# `wait_for` of scripts/localnet.sh.
#
#   serve_dir DIR        serves DIR over HTTP; sets http_url (ending in /)
#   chromedriver_start   starts chromedriver in a process group of its own (Chromium runs in it);
#                        sets webdriver_url
#   browser_stop         kills that process group: chromedriver and every Chromium process
#   show_logs            prints the tail of every log in $tmp (for failure messages)
chromedriver_pgid=""

serve_dir() {
  python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$1" >"$tmp/http.log" 2>&1 &
  pids+=($!)
  local port
  port=$(wait_for "$tmp/http.log" 's/^Serving HTTP on 127\.0\.0\.1 port \([0-9]*\).*/\1/p') || {
    echo "error: the web server did not start:" >&2; cat "$tmp/http.log" >&2; return 1; }
  http_url="http://127.0.0.1:$port/"
}

chromedriver_start() {
  local chromedriver=${CHROMEDRIVER:-/usr/bin/chromedriver}
  [ -x "$chromedriver" ] || { echo "error: chromedriver not found at $chromedriver (bash scripts/install-wasm-tools.sh installs it)" >&2; return 1; }
  setsid "$chromedriver" --port=0 >"$tmp/chromedriver.log" 2>&1 &
  chromedriver_pgid=$!
  local port
  port=$(wait_for "$tmp/chromedriver.log" 's/^ChromeDriver was started successfully on port \([0-9]*\).*/\1/p') || {
    echo "error: chromedriver did not start:" >&2; cat "$tmp/chromedriver.log" >&2; return 1; }
  webdriver_url="http://127.0.0.1:$port"
}

browser_stop() {
  if [ -n "$chromedriver_pgid" ]; then
    kill -TERM -- "-$chromedriver_pgid" 2>/dev/null || true
    # Chromium may take a moment; whatever is left of the group after 5 s is killed.
    for _ in $(seq 1 50); do
      kill -0 -- "-$chromedriver_pgid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$chromedriver_pgid" 2>/dev/null || true
    chromedriver_pgid=""
  fi
}

show_logs() {
  local f
  for f in "$tmp"/*.log "$tmp"/*.out; do
    [ -s "$f" ] || continue
    echo "---- $(basename "$f") (last 40 lines) ----" >&2
    tail -n 40 "$f" >&2
  done
}
