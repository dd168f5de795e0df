#!/usr/bin/env bash
# The hyperdrive benchmark: the `hyperpunch drive` CLI against the pinned JS hyperdrive 13.3.4 +
# localdrive + mirror-drive + corestore (bench/js/drive-cli.js), whole processes as a user runs
# them, on the native file storage of each (JS: RocksDB, Rust: FileStorage).
#
#   bash bench/drive.sh            # prints the table, writes bench/latest-drive.md
#   bash bench/drive.sh OUT.md     # (bench/run.sh) writes the table to OUT.md only
#
# Two folders, made once per run from a seeded generator:
#   A: 1,000 small files (1-32 KiB, in 20 folders) and 4 large ones (48 MiB each): ~207 MiB;
#   B: 10,000 small files (0-2 KiB, in 100 folders).
# Work (each best of $DRIVE_BEST, JS and Rust interleaved; wall and CPU seconds of the process
# from /usr/bin/time):
#   1. `drive mirror A` into a new store (JS: `drive-cli.js mirror`, what `drives mirror` does);
#   2. the same mirror again, nothing changed (compares every file, writes nothing);
#   3. `drive mirror B` (10k files) into a new store;
#   4. `drive ls` of B's drive (10k paths; both outputs identical);
#   5. `drive fetch` of A's drive from a `drive serve` on 127.0.0.1 over TCP (JS: `drive-cli.js
#      serve` / `fetch`), the server's CPU seconds too; the copies are checked: the listing, and
#      (first round) every file exported and compared with A.
# Nothing is hard-coded: every ratio is computed from the figures of this run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out_md=${1:-}
modules="$root/tests/interop/node_modules"
if [ ! -f "$modules/hyperdrive/package.json" ]; then
  echo "error: the JS reference is not installed ($modules/hyperdrive is missing): run \`npm ci --prefix tests/interop\` (or \`just setup\`)" >&2
  exit 1
fi
best=${DRIVE_BEST:-2}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "==> building hyperpunch (release)" >&2
source bench/lib.sh
hp=$(bench_build_hyperpunch)
export NODE_PATH="$modules"
jsd=(node "$root/bench/js/drive-cli.js")

echo "==> making the folders" >&2
python3 - "$tmp/A" "$tmp/B" <<'EOF'
import os, random, sys
a, b = sys.argv[1], sys.argv[2]
rng = random.Random(13)
def write(path, n):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(rng.randbytes(n))
for i in range(1000):
    write(f"{a}/dir{i % 20:02d}/file{i:04d}.bin", rng.randint(1024, 32 * 1024))
for i in range(4):
    write(f"{a}/large/big{i}.bin", 48 << 20)
for i in range(10000):
    write(f"{b}/d{i % 100:03d}/f{i:05d}.txt", rng.randint(0, 2048))
EOF
a_bytes=$(du -sb "$tmp/A" | cut -f1)
echo "A: $(find "$tmp/A" -type f | wc -l) files, $a_bytes bytes; B: $(find "$tmp/B" -type f | wc -l) files" >&2

# timed FILE TAG CMD...: run CMD (stdin/stdout as redirected), append `BENCH TAG_wall_s W` and
# `BENCH TAG_cpu_s C` to FILE.
timed() {
  local file=$1 tag=$2
  shift 2
  /usr/bin/time -f "%e %U %S" -o "$tmp/time" "$@"
  awk -v t="$tag" '{ printf "BENCH %s_wall_s %s\nBENCH %s_cpu_s %.3f\n", t, $1, t, $2 + $3 }' "$tmp/time" | tee -a "$file" >&2
}
# cpu_ticks PID: user + system clock ticks of a running process so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
# serve_fetch FILE TAG SERVE_CMD FETCH_CMD: start the server (it prints `listening PORT KEY`
# or `listening on 127.0.0.1:PORT`), run and time the fetch, record the server's CPU seconds
# while it served, stop the server.
kill_server() {
  kill "${pids[-1]}" 2>/dev/null || true
  wait "${pids[-1]}" 2>/dev/null || true
  unset 'pids[-1]'
}
: >"$tmp/js.txt"
: >"$tmp/rust.txt"
for i in $(seq 1 "$best"); do
  echo "==> round $i/$best" >&2
  rm -rf "$tmp/rA" "$tmp/jA" "$tmp/rB" "$tmp/jB" "$tmp/rC" "$tmp/jC" "$tmp/out"
  # 1. mirror A into a new store
  timed "$tmp/rust.txt" drive_mirror "$hp" drive mirror "$tmp/A" --storage "$tmp/rA" >"$tmp/rkey"
  timed "$tmp/js.txt" drive_mirror "${jsd[@]}" mirror "$tmp/A" "$tmp/jA" >"$tmp/jkey"
  # 2. again, unchanged
  timed "$tmp/rust.txt" drive_remirror "$hp" drive mirror "$tmp/A" --storage "$tmp/rA" >/dev/null
  timed "$tmp/js.txt" drive_remirror "${jsd[@]}" mirror "$tmp/A" "$tmp/jA" >/dev/null
  # 3. mirror B (10k files)
  timed "$tmp/rust.txt" drive_mirror10k "$hp" drive mirror "$tmp/B" --storage "$tmp/rB" >/dev/null
  timed "$tmp/js.txt" drive_mirror10k "${jsd[@]}" mirror "$tmp/B" "$tmp/jB" >/dev/null
  # 4. ls of B's drive
  timed "$tmp/rust.txt" drive_ls "$hp" drive ls --storage "$tmp/rB" >"$tmp/r.ls"
  timed "$tmp/js.txt" drive_ls "${jsd[@]}" ls "$tmp/jB" >"$tmp/j.ls"
  cmp -s "$tmp/r.ls" "$tmp/j.ls" || { echo "error: drive ls and the JS listing differ" >&2; exit 1; }
  [ "$(wc -l <"$tmp/r.ls")" -eq 10000 ] || { echo "error: drive ls printed $(wc -l <"$tmp/r.ls") lines" >&2; exit 1; }
  # 5. serve A's drive, fetch it over TCP loopback: Rust -> Rust, JS -> JS
  "$hp" drive serve --storage "$tmp/rA" --tcp 127.0.0.1:0 >"$tmp/rserve.txt" 2>/dev/null &
  pids+=($!)
  line=$(wait_for "$tmp/rserve.txt" '^listening on ')
  addr=${line#listening on }
  key=$(cat "$tmp/rkey")
  before=$(cpu_ticks "${pids[-1]}")
  timed "$tmp/rust.txt" drive_fetch "$hp" drive fetch --storage "$tmp/rC" --key "$key" --tcp "$addr"
  after=$(cpu_ticks "${pids[-1]}")
  awk -v a="$after" -v b="$before" -v t="$tck" 'BEGIN { printf "BENCH drive_fetch_server_cpu_s %.3f\n", (a - b) / t }' | tee -a "$tmp/rust.txt" >&2
  kill_server
  "${jsd[@]}" serve "$tmp/jA" >"$tmp/jserve.txt" &
  pids+=($!)
  set -- $(wait_for "$tmp/jserve.txt" '^listening ')
  before=$(cpu_ticks "${pids[-1]}")
  timed "$tmp/js.txt" drive_fetch "${jsd[@]}" fetch "$tmp/jC" "$3" "$2"
  after=$(cpu_ticks "${pids[-1]}")
  awk -v a="$after" -v b="$before" -v t="$tck" 'BEGIN { printf "BENCH drive_fetch_server_cpu_s %.3f\n", (a - b) / t }' | tee -a "$tmp/js.txt" >&2
  kill_server
  "$hp" drive ls --storage "$tmp/rC" >"$tmp/rC.ls"
  "$hp" drive ls --storage "$tmp/rA" >"$tmp/rA.ls"
  cmp -s "$tmp/rC.ls" "$tmp/rA.ls" || { echo "error: the fetched drive lists other files" >&2; exit 1; }
  [ "$(wc -l <"$tmp/rC.ls")" -eq 1004 ] || { echo "error: the fetched drive has $(wc -l <"$tmp/rC.ls") files" >&2; exit 1; }
  if [ "$i" = 1 ]; then
    "$hp" drive export --storage "$tmp/rC" "$tmp/out" 2>/dev/null
    diff -r "$tmp/A" "$tmp/out" >/dev/null || { echo "error: the fetched drive's files differ from the folder" >&2; exit 1; }
    rm -rf "$tmp/out"
  fi
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# "BENCH key value" lines -> the best (lowest) value of each key.
best_of() {
  awk '$1 == "BENCH" {
    if (!($2 in v)) { v[$2] = $3; order[++n] = $2 }
    else if ($3 + 0 < v[$2] + 0) v[$2] = $3
  } END { for (i = 1; i <= n; i++) print order[i], v[order[i]] }'
}
best_of <"$tmp/js.txt" >"$tmp/js.kv"
best_of <"$tmp/rust.txt" >"$tmp/rust.kv"
val() { awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "" }' "$1"; }
fmt() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else printf "%.2f", v }' || printf 'missing'; }
# JS/Rust of times (higher is better for Rust).
ratio() {
  if [ -n "$1" ] && [ -n "$2" ]; then
    awk -v j="$1" -v r="$2" 'BEGIN { if (r > 0) printf "%.1f×", j / r; else printf "n/a" }'
  else printf 'n/a'; fi
}
row() { # key label unit
  local j r
  j=$(val "$tmp/js.kv" "$1"); r=$(val "$tmp/rust.kv" "$1")
  echo "| $2 | $3 | $(fmt "$j") | $(fmt "$r") | $(ratio "$j" "$r") |"
}
mib=$(awk -v b="$a_bytes" 'BEGIN { printf "%.0f", b / 1048576 }')
{
  echo "## Hyperdrive (hyperdrive $(node -p "require('$modules/hyperdrive/package.json').version"), mirror-drive $(node -p "require('$modules/mirror-drive/package.json').version"), localdrive $(node -p "require('$modules/localdrive/package.json').version"))"
  echo
  echo "\`bash bench/drive.sh\` (also part of \`./run.sh bench\`), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPU, node $(node --version)."
  echo "Whole processes as a user runs them: \`hyperpunch drive ...\` against \`bench/js/drive-cli.js\` (the same"
  echo "work with the JS modules: what \`drives mirror\` / \`drives download\` / \`drives ls -r\` do). JS on corestore's"
  echo "RocksDB storage, Rust on \`FileStorage\`. Folder A: 1,000 files of 1-32 KiB and 4 of 48 MiB ($mib MiB);"
  echo "folder B: 10,000 files of 0-2 KiB. Best of $best runs each, JS and Rust interleaved; wall and CPU seconds"
  echo "(all threads) of the process. Ratio: JS/Rust (higher is better for Rust)."
  echo
  echo "| work | unit | JS | Rust | JS/Rust |"
  echo "|---|---|---:|---:|---:|"
  row drive_mirror_wall_s "\`drive mirror\` folder A into a new drive" s
  row drive_mirror_cpu_s "  the same" "CPU s"
  row drive_remirror_wall_s "\`drive mirror\` folder A again, unchanged (compares, writes nothing)" s
  row drive_remirror_cpu_s "  the same" "CPU s"
  row drive_mirror10k_wall_s "\`drive mirror\` folder B (10k files) into a new drive" s
  row drive_mirror10k_cpu_s "  the same" "CPU s"
  row drive_ls_wall_s "\`drive ls\` of B's drive (10k paths, outputs identical)" s
  row drive_ls_cpu_s "  the same" "CPU s"
  row drive_fetch_wall_s "\`drive fetch\` of A's drive from \`drive serve\` over TCP loopback" s
  row drive_fetch_cpu_s "  the same, the fetching process" "CPU s"
  row drive_fetch_server_cpu_s "  the same, the serving process" "CPU s"
  echo
  echo "Load average (1/5/15 min) before: $load_before; after: $load_after."
} >"$tmp/table.md"
if [ -n "$out_md" ]; then
  cp "$tmp/table.md" "$out_md"
else
  cat "$tmp/table.md"
  cp "$tmp/table.md" "$root/bench/latest-drive.md"
  echo "(written to bench/latest-drive.md)" >&2
fi
