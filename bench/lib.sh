# Shared by the bench scripts (sourced from the repository root).

# Build the release `hyperpunch` binary and print its path.
bench_build_hyperpunch() {
  cargo build --release --locked -q -p hyperpunch --bin hyperpunch
  local target_dir
  target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  echo "$target_dir/release/hyperpunch"
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
