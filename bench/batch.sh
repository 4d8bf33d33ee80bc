#!/usr/bin/env bash
# Batch benchmark: shopstream vs DuckDB vs PySpark on the real Online Retail data at x1 and x10 (x50 with
# SCALES="1 10 50"). Times CSV -> lake/Parquet ingest and the report suite, records peak RSS, prints ratios.
set -euo pipefail
source "$(dirname "$0")/common.sh"
SCALES="${SCALES:-1 10}"
setup_peers
build_shopstream
mkdir -p "$WORK"
for s in $SCALES; do
  "$VENV/bin/python" "$BENCH_DIR/prepare.py" "$DATA" "$WORK/x$s" "$s"
done
"$VENV/bin/python" "$BENCH_DIR/batch.py" --shopstream "$SHOPSTREAM" --work "$WORK" --scales $SCALES \
  --reports "$ROOT/crates/engine/reports"
