#!/usr/bin/env bash
# The hyperbee benchmark: hyperpunch against the pinned JS hyperbee 2.27.3, on the same work, in
# one run, on the native file storage of each (JS: hypercore's RocksDB, Rust: FileStorage).
#
#   bash bench/bee.sh            # prints the table, writes bench/latest-bee.md
#   bash bench/bee.sh OUT.md     # (bench/run.sh) writes the table to OUT.md only
#
# 1. In one process: bench/js/bee.js and the release example bench_bee (bench_bee.rs) do the
#    same work: 10k puts one at a time, 100k puts in batches of 1000, 20k gets, full scans,
#    ranges of 100 entries. Each figure as a rate per wall-clock second and per CPU second of
#    the process (all its threads); best of $BEE_BEST runs, JS and Rust interleaved.
# 2. Whole processes, as a user runs them: `hyperpunch bee batch` of 100k KEY<TAB>VALUE lines
#    (one batch) and `hyperpunch bee list` of them, against bench/js/bee-cli.js doing the same
#    with JS (both outputs are compared byte for byte). Wall and CPU seconds from bash's `time`.
#    Then $BEE_PROCS (40) gets of random existing keys and as many range scans (the 100
#    entries from a random key on: `bee list --gte K --limit 100`) from that bee, each its own
#    process, against `bee-cli.js get` and `bee-cli.js list DIR K 100` (the outputs of both
#    compared byte for byte). Then $BEE_PROCS puts into that bee of 100k entries, each its own
#    process, as a user adding keys one command at a time runs them: `hyperpunch bee put`
#    (which fsyncs before it exits) against `node bench/js/bee-cli.js put` (RocksDB, no fsync);
#    the last key is read back from both.
# Nothing is hard-coded: every ratio is computed from the figures of this run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out_md=${1:-}
modules="$root/tests/interop/node_modules"
if [ ! -f "$modules/hyperbee/package.json" ]; then
  echo "error: the JS reference is not installed ($modules/hyperbee is missing): run \`npm ci --prefix tests/interop\` (or \`just setup\`)" >&2
  exit 1
fi
best=${BEE_BEST:-2}
procs=${BEE_PROCS:-40}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "==> building bench_bee and hyperpunch (release)" >&2
cargo build --release --locked -q -p hyperpunch --example bench_bee --bin hyperpunch
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bbin="$target_dir/release/examples/bench_bee"
hp="$target_dir/release/hyperpunch"
js() { (cd "$root/tests/interop" && NODE_PATH="$modules" node "$@"); }

: >"$tmp/js.txt"
: >"$tmp/rust.txt"
for i in $(seq 1 "$best"); do
  echo "==> JS reference: bench/js/bee.js ($i/$best)" >&2
  js "$root/bench/js/bee.js" | tee -a "$tmp/js.txt" >&2
  echo "==> hyperpunch: bench_bee compare ($i/$best)" >&2
  "$bbin" compare | tee -a "$tmp/rust.txt" >&2
done

# Whole processes: 100k lines, one batch, then a full listing.
n=100000
source bench/lib.sh
bench_bee_lines "$n" "$tmp/lines.tsv"
# $procs random keys of those lines (the same every run), for the gets and the range scans.
awk -v n="$n" -v p="$procs" 'BEGIN { srand(13); for (i = 0; i < p; i++) printf "key%08d\n", int(rand() * n) }' >"$tmp/keys.txt"
# timed FILE TAG CMD...: run CMD (its stdin/stdout as redirected), append `BENCH TAG_wall_s W`
# and `BENCH TAG_cpu_s C` to FILE. Timed by bash's `time` to the millisecond (/usr/bin/time's
# wall clock has 10 ms steps: a tenth of a `bee batch`).
timed() {
  local file=$1 tag=$2 TIMEFORMAT='%3R %3U %3S' LC_NUMERIC=C
  shift 2
  { time "$@" 2>&3 3>&-; } 3>&2 2>"$tmp/time"
  awk -v t="$tag" '{ printf "BENCH %s_wall_s %s\nBENCH %s_cpu_s %.3f\n", t, $1, t, $2 + $3 }' "$tmp/time" | tee -a "$file" >&2
}
export NODE_PATH="$modules"
for i in $(seq 1 "$best"); do
  echo "==> whole processes: bee batch / bee list of $n entries ($i/$best)" >&2
  rm -rf "$tmp/r" "$tmp/j"
  "$hp" core create --storage "$tmp/r" >/dev/null
  timed "$tmp/rust.txt" bee_cli_batch "$hp" bee batch --storage "$tmp/r" <"$tmp/lines.tsv"
  timed "$tmp/rust.txt" bee_cli_list "$hp" bee list --storage "$tmp/r" >"$tmp/r.out"
  (cd "$root/tests/interop" && timed "$tmp/js.txt" bee_cli_batch node "$root/bench/js/bee-cli.js" batch "$tmp/j" <"$tmp/lines.tsv")
  (cd "$root/tests/interop" && timed "$tmp/js.txt" bee_cli_list node "$root/bench/js/bee-cli.js" list "$tmp/j" >"$tmp/j.out")
  cmp -s "$tmp/r.out" "$tmp/j.out" || { echo "error: bee list and the JS listing differ" >&2; exit 1; }
  [ "$(wc -l <"$tmp/r.out")" -eq "$n" ] || { echo "error: bee list printed $(wc -l <"$tmp/r.out") lines" >&2; exit 1; }
  echo "==> whole processes: $procs gets and $procs range scans, one process each ($i/$best)" >&2
  timed "$tmp/rust.txt" bee_cli_gets bash -c 'while read -r k; do "$1" bee get --storage "$2" "$k" || exit 1; done <"$3" >"$4"' _ "$hp" "$tmp/r" "$tmp/keys.txt" "$tmp/r.gets"
  (cd "$root/tests/interop" && timed "$tmp/js.txt" bee_cli_gets bash -c 'while read -r k; do node "$1" get "$2" "$k" || exit 1; done <"$3" >"$4"' _ "$root/bench/js/bee-cli.js" "$tmp/j" "$tmp/keys.txt" "$tmp/j.gets")
  cmp -s "$tmp/r.gets" "$tmp/j.gets" || { echo "error: the gets of hyperpunch and JS differ" >&2; exit 1; }
  [ "$(wc -l <"$tmp/r.gets")" -eq "$procs" ] || { echo "error: $procs gets printed $(wc -l <"$tmp/r.gets") lines" >&2; exit 1; }
  timed "$tmp/rust.txt" bee_cli_ranges bash -c 'while read -r k; do "$1" bee list --storage "$2" --gte "$k" --limit 100 || exit 1; done <"$3" >"$4"' _ "$hp" "$tmp/r" "$tmp/keys.txt" "$tmp/r.ranges"
  (cd "$root/tests/interop" && timed "$tmp/js.txt" bee_cli_ranges bash -c 'while read -r k; do node "$1" list "$2" "$k" 100 || exit 1; done <"$3" >"$4"' _ "$root/bench/js/bee-cli.js" "$tmp/j" "$tmp/keys.txt" "$tmp/j.ranges")
  cmp -s "$tmp/r.ranges" "$tmp/j.ranges" || { echo "error: the range scans of hyperpunch and JS differ" >&2; exit 1; }
  [ "$(wc -l <"$tmp/r.ranges")" -gt "$procs" ] || { echo "error: $procs range scans printed $(wc -l <"$tmp/r.ranges") lines" >&2; exit 1; }
  echo "==> whole processes: $procs puts, one process each ($i/$best)" >&2
  timed "$tmp/rust.txt" bee_cli_puts bash -c 'for k in $(seq 1 "$1"); do "$2" bee put --storage "$3" "put-$k" "value $k" || exit 1; done' _ "$procs" "$hp" "$tmp/r"
  (cd "$root/tests/interop" && timed "$tmp/js.txt" bee_cli_puts bash -c 'for k in $(seq 1 "$1"); do node "$2" put "$3" "put-$k" "value $k" || exit 1; done' _ "$procs" "$root/bench/js/bee-cli.js" "$tmp/j")
  [ "$("$hp" bee get --storage "$tmp/r" "put-$procs")" = "value $procs" ] || { echo "error: hyperpunch lost a put" >&2; exit 1; }
  [ "$(cd "$root/tests/interop" && node "$root/bench/js/bee-cli.js" get "$tmp/j" "put-$procs")" = "value $procs" ] || { echo "error: JS lost a put" >&2; exit 1; }
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# "BENCH key value" lines -> the best value of each key (highest rate, lowest time).
best_of() {
  awk '$1 == "BENCH" {
    rate = ($2 ~ /_ops_s$/)
    if (!($2 in v)) { v[$2] = $3; order[++n] = $2 }
    else if (rate ? $3 + 0 > v[$2] + 0 : $3 + 0 < v[$2] + 0) v[$2] = $3
  } END { for (i = 1; i <= n; i++) print order[i], v[order[i]] }'
}
best_of <"$tmp/js.txt" >"$tmp/js.kv"
best_of <"$tmp/rust.txt" >"$tmp/rust.kv"
val() { awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "" }' "$1"; }
fmt() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else if (v < 1) printf "%.3f", v; else printf "%.2f", v }' || printf 'missing'; }
# ratio JS RUST [time]: Rust/JS for rates, JS/Rust for times (higher is better for Rust).
ratio() {
  if [ -n "$1" ] && [ -n "$2" ]; then
    awk -v j="$1" -v r="$2" -v t="${3:-}" 'BEGIN { if (t != "") { if (r > 0) printf "%.1f×", j / r; else printf "n/a" } else if (j > 0) printf "%.1f×", r / j; else printf "n/a" }'
  else printf 'n/a'; fi
}
row() { # key label unit [time]
  local j r
  j=$(val "$tmp/js.kv" "$1"); r=$(val "$tmp/rust.kv" "$1")
  echo "| $2 | $3 | $(fmt "$j") | $(fmt "$r") | $(ratio "$j" "$r" "${4:-}") |"
}
{
  echo "## Hyperbee (hyperbee $(node -p "require('$modules/hyperbee/package.json').version"))"
  echo
  echo "\`bash bench/bee.sh\` (also part of \`./run.sh bench\`), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPU, node $(node --version)."
  echo "JS on hypercore's RocksDB storage, Rust on \`FileStorage\`; keys utf-8, 32-byte values. Best of $best runs each,"
  echo "JS and Rust interleaved. \"per CPU s\" counts the CPU time of the whole process (every thread, the"
  echo "storage's too), which a busy machine disturbs less than wall-clock time. Ratios: Rust/JS of rates, JS/Rust of times."
  echo
  echo "| work | unit | JS | Rust | Rust/JS |"
  echo "|---|---|---:|---:|---:|"
  row bee_put_single_ops_s "put one at a time (10k keys, each a signed append)" puts/s
  row bee_put_single_cpu_ops_s "  the same" "puts per CPU s"
  row bee_put_batch_ops_s "batched put (100k keys, batches of 1000)" puts/s
  row bee_put_batch_cpu_ops_s "  the same" "puts per CPU s"
  row bee_get_ops_s "get (20k random keys of 110k)" gets/s
  row bee_get_cpu_ops_s "  the same" "gets per CPU s"
  row bee_scan_ops_s "full scan (110k entries)" entries/s
  row bee_scan_cpu_ops_s "  the same" "entries per CPU s"
  row bee_range_ops_s "range scans (200 × 100 entries from random keys)" entries/s
  row bee_range_cpu_ops_s "  the same" "entries per CPU s"
  row bee_cli_batch_wall_s "whole process: \`bee batch\` of 100k lines (JS: \`bench/js/bee-cli.js batch\`)" s time
  row bee_cli_batch_cpu_s "  the same" "CPU s" time
  row bee_cli_list_wall_s "whole process: \`bee list\` of the 100k entries (outputs identical)" s time
  row bee_cli_list_cpu_s "  the same" "CPU s" time
  row bee_cli_gets_wall_s "whole processes: $procs \`bee get\`s of random keys of that bee, one process each (JS: \`bee-cli.js get\`; outputs identical)" s time
  row bee_cli_gets_cpu_s "  the same" "CPU s" time
  row bee_cli_ranges_wall_s "whole processes: $procs range scans, \`bee list --gte K --limit 100\` from random keys, one process each (JS: \`bee-cli.js list DIR K 100\`; outputs identical)" s time
  row bee_cli_ranges_cpu_s "  the same" "CPU s" time
  row bee_cli_puts_wall_s "whole processes: $procs \`bee put\`s into that bee, one process each (JS: \`bee-cli.js put\`; Rust fsyncs, JS does not)" s time
  row bee_cli_puts_cpu_s "  the same" "CPU s" time
  echo
  echo "Load average (1/5/15 min) before: $load_before; after: $load_after."
} >"$tmp/table.md"
if [ -n "$out_md" ]; then
  cp "$tmp/table.md" "$out_md"
else
  cat "$tmp/table.md"
  cp "$tmp/table.md" "$root/bench/latest-bee.md"
  echo "(written to bench/latest-bee.md)" >&2
fi
