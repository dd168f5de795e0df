#!/usr/bin/env bash
# Fails if any tracked file refers to a sibling `shared` folder: a clone must build and test on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='\.\./'"shared"
if hits=$(git grep -n -I -e "$pattern" -- . ':!scripts/check-standalone.sh' 2>/dev/null); then
  echo "error: tracked files refer to a sibling shared folder (copy what they need into the repo):" >&2
  echo "$hits" >&2
  exit 1
fi
echo "standalone: no tracked file refers to a sibling shared folder"
