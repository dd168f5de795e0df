# Shared by the bench scripts (sourced from the repository root).

# Build the release `hyperpunch` binary and print its path.
bench_build_hyperpunch() {
  cargo build --release --locked -q -p hyperpunch --bin hyperpunch
  local target_dir
  target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  echo "$target_dir/release/hyperpunch"
}
