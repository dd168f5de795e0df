#!/usr/bin/env bash
# Installs the pinned JS reference (../shared/reference) into tests/interop/node_modules. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=../shared/reference
dir=tests/interop
if [ -d "$ref" ] && ! cmp -s "$ref/package-lock.json" "$dir/package-lock.json"; then
  echo "error: $dir/package-lock.json differs from $ref/package-lock.json; copy the pinned reference again" >&2
  exit 1
fi
stamp="$dir/node_modules/.hyperpunch-lock"
if [ -f "$stamp" ] && cmp -s "$stamp" "$dir/package-lock.json"; then
  exit 0
fi
echo "==> npm ci in $dir (the pinned JS reference)" >&2
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
cp "$dir/package-lock.json" "$stamp"
