#!/usr/bin/env bash
# Streaming benchmark: the same event-time jobs by shopstream, Spark Structured Streaming (PySpark, local[2]) and
# Flink SQL (PyFlink, parallelism 2) over the same CSV files of the real Online Retail lines, in event-time order.
#
# Jobs (bench/stream/peers.py says exactly how each engine runs them):
#   tumble   sum(Quantity*UnitPrice) and count(*) per Country per 1-minute event-time tumbling window
#   session  count(*) per CustomerID per session window with a 30-minute gap
# both with a 30 s watermark delay, final windows appended to a sink that discards them.
#
# Startup is taken out by timing N and 10N lines and taking the difference:
#   events/s = (records(10N) - records(N)) / (t(10N) - t(N)),  best of $REPEAT runs for each time.
# 10N is the real set x $COPIES (default 2: 1,083,818 lines, 11 files); N is its first tenth (108,382 lines).
# Before timing, --check runs each job on a small input (20,000 lines in 4 files) into a counting sink and
# bench/stream/verify.py compares the windows emitted with the same windows computed in batch by DuckDB.
#
# Environment:
#   COPIES=2            10N = real set x COPIES
#   REPEAT=3            runs per engine, job and size (the best time counts)
#   ENGINES="shopstream spark flink"   JOBS="tumble session"
#   NO_CHECK=1          skip the check
#   STREAM_VENV=~/.cache/shopstream/bench-venv   STREAM_WORK=bench/stream/work
# The venv (~1.3 GB, bench/stream/requirements.txt + constraints.txt) is made on first use; needs ~2 GB free.
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The release-like build of shopstream ($SHOPSTREAM, build_shopstream); its WORK and VENV are replaced below.
# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"
HERE="$BENCH_DIR/stream"
ROOT="$(dirname "$BENCH_DIR")"
DATA="${ONLINE_RETAIL:-$ROOT/../shared/data/online-retail/by-day}"
VENV="${STREAM_VENV:-$HOME/.cache/shopstream/bench-venv}"
WORK="${STREAM_WORK:-$HERE/work}"
COPIES="${COPIES:-2}"
REPEAT="${REPEAT:-3}"
ENGINES="${ENGINES:-shopstream spark flink}"
JOBS="${JOBS:-tumble session}"
PY="$VENV/bin/python"
START=$SECONDS

# ------------------------------------------------------------------------------------------------------------
# shopstream: `shopstream view bench` loads the CSV files into an embedded log in a scratch folder (not timed),
# then runs the job as a continuous view reading them from the log: planning, the micro-batches, the
# checkpoints and the Delta commits of its final windows are timed. With SHOPSTREAM_CHECK=1 every window is
# closed at the end (as a bounded source ends a Flink or Spark job) and the output is counted.
shopstream_run() {
  local job="$1" input="$2"
  "$SHOPSTREAM" view bench --job "$job" --input "$input" --partitions 2
}
# ------------------------------------------------------------------------------------------------------------

setup_venv() {
  if [ ! -x "$PY" ]; then
    local avail_kb
    avail_kb=$(df -Pk "$(dirname "$VENV")" 2>/dev/null | awk 'NR==2 {print $4}' || echo 0)
    if [ "${avail_kb:-0}" -lt 2500000 ]; then
      echo "stream.sh: less than 2.5 GB free for the venv in $(dirname "$VENV") ($((avail_kb / 1024)) MiB)" >&2
      exit 1
    fi
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    -r "$HERE/requirements.txt" -c "$HERE/constraints.txt"
}

# run_engine <engine> <job> <input-dir> [--check]: one JSON line on stdout, the engine's logs in $WORK/logs.
run_engine() {
  local engine="$1" job="$2" input="$3"; shift 3
  local log="$WORK/logs/$engine-$job-$(basename "$input")${1:+-check}.log"
  if [ "$engine" = shopstream ]; then
    if [ "${1:-}" = --check ]; then SHOPSTREAM_CHECK=1 shopstream_run "$job" "$input" 2>>"$log"
    else shopstream_run "$job" "$input" 2>>"$log"; fi
  else
    "$PY" "$HERE/peers.py" "$engine" --job "$job" --input "$input" "$@" 2>>"$log" \
      || { echo "stream.sh: $engine $job on $input failed; last lines of $log:" >&2; tail -20 "$log" >&2; exit 1; }
  fi
}

setup_venv
case " $ENGINES " in *" shopstream "*) build_shopstream ;; esac
mkdir -p "$WORK/logs"
: > "$WORK/logs/.keep"
REAL=$(( $(cat "$DATA"/*.csv | wc -l) - $(ls "$DATA"/*.csv | wc -l) ))
BIG=$(( REAL * COPIES ))
SMALL=$(( (BIG + 5) / 10 ))
"$PY" "$HERE/make_data.py" --src "$DATA" --out "$WORK/n10" --copies "$COPIES"
"$PY" "$HERE/make_data.py" --src "$DATA" --out "$WORK/n1" --lines "$SMALL"
lines_of() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["lines"])' "$1/_meta.json"; }

if [ -z "${NO_CHECK:-}" ]; then
  "$PY" "$HERE/make_data.py" --src "$DATA" --out "$WORK/check" --lines 20000 --file-lines 5000
  echo "== check: each job on $WORK/check into a counting sink, against DuckDB"
  : > "$WORK/check.jsonl"
  for job in $JOBS; do
    for engine in $ENGINES; do
      run_engine "$engine" "$job" "$WORK/check" --check >> "$WORK/check.jsonl"
    done
  done
  "$PY" "$HERE/verify.py" --input "$WORK/check" "$WORK/check.jsonl"
fi

echo "== timing: N = $(lines_of "$WORK/n1") and 10N = $(lines_of "$WORK/n10") lines, $REPEAT run(s) each"
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
for rep in $(seq 1 "$REPEAT"); do
  for job in $JOBS; do
    for engine in $ENGINES; do
      for size in N 10N; do
        if [ $size = N ]; then dir="$WORK/n1"; else dir="$WORK/n10"; fi
        out=$(run_engine "$engine" "$job" "$dir")
        printf '{"size": "%s", "rep": %d, "records": %d, "run": %s}\n' \
          "$size" "$rep" "$(lines_of "$dir")" "$out" >> "$RESULTS"
        echo "  rep $rep $job $engine $size: $out"
      done
    done
  done
done
echo
"$PY" "$HERE/report.py" "$RESULTS"
echo
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, load average now: $(cut -d' ' -f1-3 /proc/loadavg);" \
  "$(java -version 2>&1 | head -1); whole script $((SECONDS - START)) s"
