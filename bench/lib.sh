# Shared by the bench scripts (sourced from the repository root).

# Build the release `hyperpunch` binary and print its path.
bench_build_hyperpunch() {
  cargo build --release --locked -q -p hyperpunch --bin hyperpunch
  local target_dir
  target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  echo "$target_dir/release/hyperpunch"
}

# bench_bee_lines N FILE: the `KEY<TAB>VALUE` lines of the hyperbee benchmarks' `bee batch` (N keys
# `key%08d` in a scattered order, each once), as bench/bee.sh and bench/bee-batch-rounds.sh feed them.
bench_bee_lines() {
  awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "key%08d\tvalue of %d\n", (i * 7919) % n, i }' >"$2"
}

# wait_for FILE PATTERN: print the first line of FILE matching PATTERN, waiting up to 120 s for
# it; on a timeout, say so and print FILE to stderr.
wait_for() {
  local i line
  for i in $(seq 1 1200); do
    if line=$(grep -m1 -- "$2" "$1" 2>/dev/null); then
      printf '%s\n' "$line"
      return 0
    fi
    sleep 0.1
  done
  echo "error: timed out waiting for \"$2\" in $1" >&2
  cat "$1" >&2
  return 1
}

# cpu_since BEFORE AFTER [TYPE]: CPU seconds between two bench/session-cpu.sh readings, of the
# processes alive at the second (of TYPE only, if given): what each used since the first (all of
# it for those started since). A process gone by then is left out: the previous session's
# Chromium, still exiting at the first reading, would otherwise take its whole CPU time off.
cpu_since() {
  awk -v want="${3:-total}" 'NR == FNR { before[$1] = $3; next }
    { d = $3 - ($1 in before ? before[$1] : 0); if (want == "total" || $2 == want) t += d }
    END { printf "%.3f", t }' "$1" "$2"
}

# cpu_by_type BEFORE AFTER: `TYPE SECONDS` lines and `total SECONDS` (see `cpu_since`).
cpu_by_type() {
  awk 'NR == FNR { before[$1] = $3; next }
    { d = $3 - ($1 in before ? before[$1] : 0); t[$2] += d; all += d }
    END { for (k in t) printf "%s %.3f\n", k, t[k]; printf "total %.3f\n", all }' "$1" "$2"
}
