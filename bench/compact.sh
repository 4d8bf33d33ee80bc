#!/usr/bin/env bash
# Compaction: the real data loaded one day per commit (305 commits, as a live load leaves it: many small
# files), then `shopstream compact`. Times the reports and a scan before and after, DuckDB scanning the same
# Parquet files before and after, and the compaction itself.
set -euo pipefail
source "$(dirname "$0")/common.sh"
build_shopstream
setup_peers
DIR="$WORK/compact"
rm -rf "$DIR" && mkdir -p "$DIR"
"$VENV/bin/python" "$BENCH_DIR/compact.py" "$SHOPSTREAM" "$DATA" "$DIR/shopstream"
rm -rf "$DIR"
