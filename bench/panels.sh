#!/usr/bin/env bash
# Dashboard API latency: p50/p95 per panel on the x10 lake (prepared by batch.sh), against `shopstream serve`,
# DuckDB on each panel's statement over the same Parquet files, and the page's first paint in chromium.
set -euo pipefail
source "$(dirname "$0")/common.sh"
build_shopstream
setup_peers
(cd "$ROOT/crates/server/tests/browser" && [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --loglevel=error)
LAKE_DIR="$WORK/out-x10/shopstream"
if [ ! -d "$LAKE_DIR/lake/orders" ]; then
  "$VENV/bin/python" "$BENCH_DIR/prepare.py" "$DATA" "$WORK/x10" 10
  rm -rf "$LAKE_DIR" && "$SHOPSTREAM" --data-dir "$LAKE_DIR" ingest --no-progress "$WORK/x10"
fi
# A copy to serve, as the run commits one more day into it.
RUN_DIR="$WORK/panels-run"
rm -rf "$RUN_DIR" && cp -r "$LAKE_DIR" "$RUN_DIR"
EXTRA_DAY="$(ls "$DATA"/*.csv | tail -1)" "$VENV/bin/python" "$BENCH_DIR/panels.py" "$SHOPSTREAM" "$RUN_DIR"
rm -rf "$RUN_DIR"
