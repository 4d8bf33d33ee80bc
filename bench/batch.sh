#!/usr/bin/env bash
# Batch benchmark: shopstream vs DuckDB vs PySpark on the real Online Retail data at x1 and x10 (x50 with
# SCALES="1 10 50"). Times CSV -> lake/Parquet ingest and the report suite, records peak RSS, prints ratios.
#
# Two cases, both by default, in the same run:
#   orders  `shopstream ingest` of the replicated CSVs and `report all`, against DuckDB and PySpark.
#   wide    the inferred dataset: a wide CSV of the same lines with 11 derived columns of every type (bench/wide.py,
#           built once per scale into $WORK/wide-xN.csv), `shopstream ingest --dataset wide` (sampling, type
#           inference, a new Delta table) against DuckDB's `read_csv` auto-detection -> Parquet (zstd); prints
#           the ratio and the column types each tool inferred, side by side.
# Environment:
#   SCALES="1 10"        scale factors of the orders case (and of the wide case unless WIDE_SCALES is set)
#   WIDE_SCALES="1"      scale factors of the wide case (default: $SCALES)
#   BENCH_ONLY=wide      run only one case: `orders` or `wide`
#   NO_SPARK=1           skip PySpark in the orders case
#   BENCH_NO_BUILD=1     use the bench-fast binary already built instead of running cargo build (common.sh)
# e.g. just the inferred dataset on the real data:  BENCH_ONLY=wide WIDE_SCALES=1 bench/batch.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
SCALES="${SCALES:-1 10}"
WIDE_SCALES="${WIDE_SCALES:-$SCALES}"
BENCH_ONLY="${BENCH_ONLY:-}"
case "$BENCH_ONLY" in
  "") prep="$SCALES $WIDE_SCALES" ;;
  orders) prep="$SCALES" ;;
  wide) prep="$WIDE_SCALES" ;;
  *) echo "BENCH_ONLY must be orders or wide, not '$BENCH_ONLY'" >&2; exit 2 ;;
esac
setup_peers
build_shopstream
mkdir -p "$WORK"
for s in $(printf '%s\n' $prep | sort -nu); do
  "$VENV/bin/python" "$BENCH_DIR/prepare.py" "$DATA" "$WORK/x$s" "$s"
done
if [ "$BENCH_ONLY" != orders ]; then
  for s in $WIDE_SCALES; do
    "$VENV/bin/python" "$BENCH_DIR/wide.py" "$WORK/x$s" "$WORK/wide-x$s.csv"
  done
fi
"$VENV/bin/python" "$BENCH_DIR/batch.py" --shopstream "$SHOPSTREAM" --work "$WORK" --scales $SCALES \
  --wide-scales $WIDE_SCALES --reports "$ROOT/crates/engine/reports" \
  ${BENCH_ONLY:+--only "$BENCH_ONLY"} ${NO_SPARK:+--no-spark}
