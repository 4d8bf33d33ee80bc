# Shared by the bench scripts: a venv with the peers, and the release-like build of shopstream.
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
WORK="${BENCH_WORK:-$BENCH_DIR/work}"
VENV="${BENCH_VENV:-$BENCH_DIR/.venv}"
export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-$HOME/.cache/shopstream/bench-target}"
SHOPSTREAM="$CARGO_TARGET_DIR/bench-fast/shopstream"
DATA="${ONLINE_RETAIL:-$ROOT/../shared/data/online-retail/by-day}"

setup_peers() {
  if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "duckdb==1.4.*" "polars==1.*" "pyspark==3.5.*" "pyarrow"
}

build_shopstream() {
  # BENCH_NO_BUILD=1: use the binary already in $CARGO_TARGET_DIR (e.g. built from a snapshot of the tree).
  if [ -n "${BENCH_NO_BUILD:-}" ]; then
    [ -x "$SHOPSTREAM" ] || { echo "BENCH_NO_BUILD: no $SHOPSTREAM" >&2; exit 1; }
    return 0
  fi
  # Release speed without LTO (profile bench-fast in Cargo.toml): builds in reasonable time on 2 cores.
  (cd "$ROOT" && cargo build --quiet --profile bench-fast -p shopstream)
}
