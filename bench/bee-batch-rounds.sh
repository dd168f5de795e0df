#!/usr/bin/env bash
# `bee batch` of 100k lines as whole processes, hyperpunch and JS interleaved for many rounds
# (the lines bench/bee.sh makes): every round's wall time, the medians, the best of each and
# their ratios. bench/bee.sh reports the best of a few rounds among its other rows; this one
# says how much of a margin the medians keep on a noisy machine.
#
#   bash bench/bee-batch-rounds.sh [ROUNDS]    # default 10
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
rounds=${1:-10}
modules="$root/tests/interop/node_modules"
if [ ! -f "$modules/hyperbee/package.json" ]; then
  echo "error: the JS reference is not installed ($modules/hyperbee is missing): run \`npm ci --prefix tests/interop\` (or \`just setup\`)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source bench/lib.sh
echo "==> building hyperpunch (release)" >&2
hp=$(bench_build_hyperpunch)
bench_bee_lines 100000 "$tmp/lines.tsv"
wall() {
  local TIMEFORMAT='%3R' LC_NUMERIC=C
  { time "$@" >/dev/null 2>&3 3>&-; } 3>&2 2>&1
}
: >"$tmp/rounds"
for i in $(seq 1 "$rounds"); do
  rm -rf "$tmp/r" "$tmp/j"
  "$hp" core create --storage "$tmp/r" >/dev/null
  r=$(wall "$hp" bee batch --storage "$tmp/r" <"$tmp/lines.tsv")
  j=$(cd "$root/tests/interop" && NODE_PATH="$modules" wall node "$root/bench/js/bee-cli.js" batch "$tmp/j" <"$tmp/lines.tsv")
  echo "round $i: hyperpunch $r s, JS $j s" >&2
  echo "$r $j" >>"$tmp/rounds"
done
python3 - "$tmp/rounds" <<'PY'
import statistics as st, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
rs, js = [r for r, _ in rows], [j for _, j in rows]
print(f"bee batch of 100k lines, {len(rows)} rounds interleaved (load {open('/proc/loadavg').read().split()[0]}):")
print(f"  medians: hyperpunch {st.median(rs):.3f} s, JS {st.median(js):.3f} s: {st.median(js) / st.median(rs):.1f}x")
print(f"  best:    hyperpunch {min(rs):.3f} s, JS {min(js):.3f} s: {min(js) / min(rs):.1f}x")
print(f"  median of the rounds' ratios: {st.median(j / r for r, j in rows):.1f}x")
PY
