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
# A failed run (or check) is shown with the end of its log, the other runs go on, and the script exits 1 at the end.
#
# Environment:
#   COPIES=2            10N = real set x COPIES
#   REPEAT=3            runs per engine, job and size (the best time counts)
#   ENGINES="shopstream spark flink"   JOBS="tumble session"
#   NO_CHECK=1          skip the check
#   NO_LATENCY=1        skip the latency part: bench/stream/latency.py posts the real lines over HTTP to
#                       `shopstream serve` at RATE=50000 lines/s (RECORDS_PER_REQUEST=1000, LATENCY_SECONDS=20)
#                       and times HTTP acknowledgement -> the change on a view's stream (p50, p99, max);
#                       then again with the dashboard's default views running as well (DEFAULT_VIEWS=1)
#   IDLE_WAIT=15        before each timed run wait up to this many seconds for the CPU to be idle (< 15% busy
#                       over 1 s; other work on the machine, e.g. a cargo build, skews the times); the busy %
#                       seen just before each run is kept in the results and flagged by the report
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
IDLE_WAIT="${IDLE_WAIT:-15}"
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
# A run that fails (or prints nothing) is reported on stderr with the end of its log and stands as
# {"seconds": null, "failed": true}: the other engines still run, and the script exits 1 at the end.
run_engine() {
  local engine="$1" job="$2" input="$3"; shift 3
  local log="$WORK/logs/$engine-$job-$(basename "$input")${1:+-check}.log" out rc=0
  if [ "$engine" = shopstream ]; then
    if [ "${1:-}" = --check ]; then out=$(SHOPSTREAM_CHECK=1 shopstream_run "$job" "$input" 2>>"$log") || rc=$?
    else out=$(shopstream_run "$job" "$input" 2>>"$log") || rc=$?; fi
  else
    out=$("$PY" "$HERE/peers.py" "$engine" --job "$job" --input "$input" "$@" 2>>"$log") || rc=$?
  fi
  out=$(printf '%s\n' "$out" | grep '^{' | tail -1 || true)
  if [ "$rc" -ne 0 ] || [ -z "$out" ]; then
    { echo "stream.sh: $engine $job on $input${1:+ $1} FAILED (exit $rc); last lines of $log:"
      tail -5 "$log" | sed 's/^/    /'; } >&2
    out=$(printf '{"engine": "%s", "job": "%s", "records": null, "seconds": null, "failed": true}' "$engine" "$job")
  fi
  printf '%s\n' "$out"
}

# cpu_busy: % of the machine's CPU time busy over the next second (nothing of this script runs meanwhile).
cpu_busy() {
  local a b
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
# wait_idle: up to IDLE_WAIT s for cpu_busy < 15; prints the last busy %.
wait_idle() {
  local waited=0 busy
  busy=$(cpu_busy)
  while [ "$busy" -ge 15 ] && [ "$waited" -lt "$IDLE_WAIT" ]; do busy=$(cpu_busy); waited=$((waited + 1)); done
  echo "$busy"
}

setup_venv
case " $ENGINES " in *" shopstream "*) build_shopstream ;; esac
mkdir -p "$WORK/logs"
rm -f "$WORK/logs"/*.log
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
  "$PY" "$HERE/verify.py" --input "$WORK/check" "$WORK/check.jsonl" || CHECK_FAILED=1
fi

echo "== timing: N = $(lines_of "$WORK/n1") and 10N = $(lines_of "$WORK/n10") lines, $REPEAT run(s) each"
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
for rep in $(seq 1 "$REPEAT"); do
  for job in $JOBS; do
    for engine in $ENGINES; do
      for size in N 10N; do
        if [ $size = N ]; then dir="$WORK/n1"; else dir="$WORK/n10"; fi
        busy=$(wait_idle)
        out=$(run_engine "$engine" "$job" "$dir")
        printf '{"size": "%s", "rep": %d, "records": %d, "busy_before": %d, "run": %s}\n' \
          "$size" "$rep" "$(lines_of "$dir")" "$busy" "$out" >> "$RESULTS"
        echo "  rep $rep $job $engine $size (cpu busy before: $busy%): $out"
      done
    done
  done
done
echo
"$PY" "$HERE/report.py" "$RESULTS"
if [ -z "${NO_LATENCY:-}" ] && case " $ENGINES " in *" shopstream "*) true ;; *) false ;; esac; then
  echo
  echo "== latency: HTTP acknowledgement -> change on the view's stream, ingesting ${RATE:-50000} lines/s"
  busy=$(wait_idle)
  out=$("$PY" "$HERE/latency.py" "$SHOPSTREAM" "$DATA" "$WORK" 2>>"$WORK/logs/latency.log" | grep '^{' | tail -1) \
    || { echo "stream.sh: the latency run FAILED; last lines of $WORK/logs/latency.log:" >&2
         tail -5 "$WORK/logs/latency.log" | sed 's/^/    /' >&2; LATENCY_FAILED=1; }
  echo "  (cpu busy before: $busy%) $out"
  echo "== latency again, with the dashboard's views running too (shopstream view defaults: two hopping windows)"
  busy=$(wait_idle)
  out=$(DEFAULT_VIEWS=1 "$PY" "$HERE/latency.py" "$SHOPSTREAM" "$DATA" "$WORK" 2>>"$WORK/logs/latency.log" | grep '^{' | tail -1) \
    || { echo "stream.sh: the latency run with the default views FAILED; see $WORK/logs/latency.log" >&2; LATENCY_FAILED=1; }
  echo "  (cpu busy before: $busy%) $out"
fi
FAILED_RUNS=$(grep -c '"failed": true' "$RESULTS" || true)
echo
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, load average now: $(cut -d' ' -f1-3 /proc/loadavg);" \
  "$(java -version 2>&1 | head -1); whole script $((SECONDS - START)) s"
if [ -n "${CHECK_FAILED:-}" ] || [ "${FAILED_RUNS:-0}" -gt 0 ] || [ -n "${LATENCY_FAILED:-}" ]; then
  echo "stream.sh: ${CHECK_FAILED:+the check failed (see above); }${LATENCY_FAILED:+the latency run failed; }${FAILED_RUNS:-0} timed run(s) failed (logs in $WORK/logs)" >&2
  exit 1
fi
