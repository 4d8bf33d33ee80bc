#!/usr/bin/env bash
# Dashboard API latency: p50/p95 per panel on the x10 lake (prepared by batch.sh), against `shopstream serve`.
set -euo pipefail
source "$(dirname "$0")/common.sh"
build_shopstream
LAKE_DIR="$WORK/out-x10/shopstream"
if [ ! -d "$LAKE_DIR/lake/orders" ]; then
  "$VENV/bin/python" "$BENCH_DIR/prepare.py" "$DATA" "$WORK/x10" 10
  rm -rf "$LAKE_DIR" && "$SHOPSTREAM" --data-dir "$LAKE_DIR" ingest --no-progress "$WORK/x10"
fi
python3 "$BENCH_DIR/panels.py" "$SHOPSTREAM" "$LAKE_DIR"
