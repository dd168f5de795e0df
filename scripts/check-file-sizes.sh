#!/usr/bin/env bash
# Fails if a Rust file of core/ or transport-native/ grows past about 1,000 lines (1,050) without
# a reason written at its top: a "(About N lines" or "(Over 1,000 lines" note in its first 80
# lines, saying why it stays one file (DEVELOPERS.md: a big engine is a small hub with siblings).
set -euo pipefail
cd "$(dirname "$0")/.."
limit=1050
bad=0
while IFS= read -r f; do
  n=$(wc -l < "$f")
  [ "$n" -gt "$limit" ] || continue
  # grep -c reads all it is given (grep -q would stop early and fail the pipe under pipefail)
  reasons=$(head -n 80 "$f" | grep -c -E '\((About|Over) [0-9,]+ lines' || true)
  if [ "$reasons" = 0 ]; then
    echo "error: $f has $n lines and no reason at its top (split it by concern, or say why not)" >&2
    bad=1
  fi
done < <(git ls-files 'core/*.rs' 'transport-native/*.rs')
[ "$bad" = 0 ] || exit 1
echo "file sizes: every file of core/ and transport-native/ over $limit lines says why at its top"
