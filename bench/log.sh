#!/usr/bin/env bash
# Log benchmark: append throughput and acknowledgement latency of the embedded log with durable acks
# (100 B and 1 KiB records, concurrent producers), against this disk's raw fdatasync'd sequential write
# bandwidth measured by dd with the same bytes per sync, in the same run; then HTTP NDJSON ingest records/s
# (wrk) and the delay from HTTP acknowledgement to rows visible in the lake.
set -euo pipefail
source "$(dirname "$0")/common.sh"
(cd "$ROOT" && cargo build --quiet --profile bench-fast -p shopstream-log --example log_bench)
mkdir -p "$WORK"
python3 "$BENCH_DIR/log.py" "$CARGO_TARGET_DIR/bench-fast/examples/log_bench" "$WORK/logbench"
# HTTP: NDJSON ingest with wrk (Debian's), and the delay from acknowledgement to rows visible in the lake.
command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y wrk >/dev/null; }
build_shopstream
python3 "$BENCH_DIR/http_ingest.py" "$SHOPSTREAM" "$DATA" "$WORK/http"
