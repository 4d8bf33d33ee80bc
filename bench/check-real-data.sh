#!/usr/bin/env bash
# Correctness on the full real data: loads all of ../shared/data/online-retail/by-day, checks
# loaded + rejected = 541,909, and compares every report with DuckDB's answer to the same SQL on the same CSVs.
set -euo pipefail
source "$(dirname "$0")/common.sh"
setup_peers
BIN="${SHOPSTREAM_BIN:-}"
if [ -z "$BIN" ]; then build_shopstream; BIN="$SHOPSTREAM"; fi
"$VENV/bin/python" "$BENCH_DIR/check_real_data.py" "$BIN" "$DATA" "$ROOT/crates/engine/reports" "$WORK/check"
