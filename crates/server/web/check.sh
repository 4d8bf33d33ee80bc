#!/usr/bin/env bash
# check.sh — verifies that the committed dist/echarts.min.js and dist/world.json are what build.sh makes from the
# pinned packages: builds into a temporary folder and compares byte for byte. Exits 1 on a difference (rerun
# ./build.sh and commit dist/), 0 when they match. For CI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$here/build.sh" "$tmp" >/dev/null
status=0
for f in echarts.min.js world.json; do
  if cmp -s "$tmp/$f" "$here/dist/$f"; then
    echo "ok: dist/$f matches the pinned packages"
  else
    echo "DIFFERS: dist/$f is not what build.sh makes from package-lock.json; run crates/server/web/build.sh" >&2
    status=1
  fi
done
exit $status
