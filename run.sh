#!/usr/bin/env bash
# The one entry point a fresh machine needs: installs `just` if missing, then runs a justfile recipe.
#   ./run.sh demo    the end-to-end demo
#   ./run.sh test    everything CI runs (lint, native tests, wasm + browser tests, live JS interop)
#   ./run.sh bench   hyperpunch vs the JS reference, side by side
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.cargo/bin:$HOME/.local/bin:$PATH"
if ! command -v just >/dev/null 2>&1; then
  echo "==> installing just (pip install rust-just)" >&2
  python3 -m pip install --quiet rust-just >&2 || pip install --quiet rust-just >&2
  hash -r
fi
if [ "$#" -eq 1 ] && [ "$1" = demo ]; then
  # `just demo`, step by step: the demo ends with Ctrl-C, which just would report as an error
  # ("interrupted by SIGINT", exit 130); the page's script exits 0 on it instead.
  just setup
  bash scripts/demo.sh
  exec bash scripts/www.sh demo
fi
exec just "${@:-test}"
