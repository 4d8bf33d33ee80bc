#!/usr/bin/env bash
# build.sh — writes the dashboard's third-party assets into dist/ (or the folder given as $1) from the npm
# packages pinned in package-lock.json: echarts.min.js (copied from the echarts package) and world.json
# (world-atlas' 110m countries as GeoJSON, by world.cjs). The hand-written pages (html, js, css) live in dist/
# directly and are not touched. Needs node and npm; the registry is reached by `npm ci` only.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/dist}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$here"
npm ci --no-audit --no-fund --loglevel=error
cp node_modules/echarts/dist/echarts.min.js "$out/echarts.min.js"
node world.cjs "$out/world.json"
echo "built $out/echarts.min.js (echarts $(node -p 'require("echarts/package.json").version')) and $out/world.json"
