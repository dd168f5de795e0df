#!/usr/bin/env bash
# Installs the pinned JS reference (tests/interop/package.json + package-lock.json) into
# tests/interop/node_modules with `npm ci`. Idempotent: a stamp of the lock file skips the install
# when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=tests/interop
stamp="$dir/node_modules/.hyperpunch-lock"
if [ -f "$stamp" ] && cmp -s "$stamp" "$dir/package-lock.json"; then
  exit 0
fi
echo "==> npm ci in $dir (the pinned JS reference)" >&2
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
cp "$dir/package-lock.json" "$stamp"
