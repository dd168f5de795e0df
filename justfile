# hyperpunch tasks. `./run.sh <recipe>` installs `just` first on a fresh machine.
set shell := ["bash", "-euo", "pipefail", "-c"]

export CARGO_TERM_COLOR := "never"

# Show the recipes.
default:
    @just --list

# Install what the tests need: wasm target, wasm-bindgen-cli (version from Cargo.lock), Chromium,
# OpenSSH's sshd (the hyperssh tests run their own), the JS reference.
setup:
    bash scripts/install-wasm-tools.sh
    bash scripts/install-sshd.sh
    bash scripts/install-js-reference.sh

# Format the code.
fmt:
    cargo fmt --all

# rustfmt check.
fmt-check:
    cargo fmt --all -- --check

# clippy with warnings denied, native and wasm32; the fuzz targets compile.
lint:
    cargo clippy --workspace --all-targets --locked -- -D warnings
    cargo clippy --locked --target wasm32-unknown-unknown -p hyperpunch-core -- -D warnings
    cargo clippy --locked --target wasm32-unknown-unknown -p hyperpunch-web --all-targets -- -D warnings
    # The fuzz targets (their own workspace, built by cargo-fuzz on nightly) still compile.
    cargo check --manifest-path fuzz/Cargo.toml --locked --bins
    # The public API's rustdoc builds without a broken link (native crates, and the wasm one).
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked -q -p hyperpunch-core -p hyperpunch
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked -q -p hyperpunch-web --target wasm32-unknown-unknown

# Every native test: unit, property, CLI, crash (kill -9) and live JS interop tests.
test-native:
    cargo test --workspace --locked --no-fail-fast

# Run every user example of the native crate (not the bench_* programs): each runs on loopback
# or in memory only, cleans up its temporary folders and stops by itself.
examples:
    for f in transport-native/examples/*.rs; do \
        e="$(basename "$f" .rs)"; \
        case "$e" in bench_*) continue ;; esac; \
        echo "== example $e"; \
        cargo run --locked -q -p hyperpunch --example "$e"; \
    done

# Build core + transport-web for wasm32 and fail if the core depends on any I/O crate.
wasm:
    bash scripts/check-core-deps.sh

# Storage conformance (IndexedDB for real) in headless Chromium via wasm-bindgen-test.
test-browser:
    bash scripts/test-browser.sh

# The demo page: build pkg/ and www/dist/, start a local DHT, `hyperpunch relay --ws`, a native peer
# serving a sample core and a web server; prints the URL to open; Ctrl-C stops it
# (HYPERPUNCH_DEMO_EXIT=1: exits once the URL is printed).
www:
    bash scripts/www.sh demo

# Build the npm package (pkg/) and the static demo page (www/dist/) only.
www-build:
    bash scripts/www.sh build

# The demo page in headless Chromium against the same local setup (bounded, exits).
test-www:
    bash scripts/www.sh test

# The packed npm tarball installed into a fresh Vite + TypeScript project: tsc on the README
# example, vite build (the wasm loaded by URL), the built app in headless Chromium.
test-pkg:
    bash scripts/test-pkg.sh

# No tracked file may refer to a folder outside the clone.
standalone:
    bash scripts/check-standalone.sh

# No file of core/ or transport-native/ grows past about 1,000 lines without saying why at its top.
file-sizes:
    bash scripts/check-file-sizes.sh

# Everything CI runs.
test: standalone file-sizes setup fmt-check lint wasm test-native examples test-browser test-www test-pkg
    @echo "all checks passed"

# The end-to-end demo: a log written by the hyperpunch CLI, checked against the JS reference and
# replicated; then the demo page (`www`): a local DHT, the relay, a native peer serving a sample
# core, www/dist/ served; prints the URL to open and runs until Ctrl-C (HYPERPUNCH_DEMO_EXIT=1:
# exits once the URL is printed).
demo: setup
    bash scripts/demo.sh
    bash scripts/www.sh demo

# hyperpunch vs the JS reference on the same work, in one run (writes bench/latest.md).
bench: setup
    bash bench/run.sh
