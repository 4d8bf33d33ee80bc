"""Times queries over a lake of many small files (one commit per real day) before and after compaction.
shopstream's times are whole CLI runs (process start, Delta log, query); DuckDB's are in-process queries over
the same data files, so compare each engine with itself before and after."""
import glob, os, platform, subprocess, sys, time
import duckdb

shopstream, data, data_dir = sys.argv[1], sys.argv[2], sys.argv[3]
days = sorted(glob.glob(os.path.join(data, "*.csv")))
SCAN = ("SELECT country, ROUND(SUM(line_revenue), 2) AS revenue, COUNT(DISTINCT invoice_no) AS orders "
        "FROM orders WHERE NOT is_cancellation GROUP BY country ORDER BY revenue DESC")
REPEAT = int(os.environ.get("REPEAT", "5"))


def run(*args):
    return subprocess.run([shopstream, "--data-dir", data_dir, *args], check=True, capture_output=True, text=True)


def best(f):
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times) * 1000, out


def files():
    # Data files only (the Delta log's checkpoints are Parquet too).
    return sorted(glob.glob(f"{data_dir}/lake/orders/invoice_month=*/*.parquet"))


def measure(label):
    duck = duckdb.connect()
    paths = files()
    duck.execute(f"CREATE VIEW orders AS SELECT * FROM read_parquet({paths!r})")
    report_ms, _ = best(lambda: run("report", "all"))
    scan_ms, ours = best(lambda: run("sql", "--format", "csv", SCAN).stdout)
    duck_ms, theirs = best(lambda: duck.execute(SCAN).fetchall())
    same = len(ours.strip().splitlines()) - 1 == len(theirs)
    print(f"{label:<26} {len(paths):>6} {report_ms:>14.0f} {scan_ms:>12.0f} {duck_ms:>12.0f}"
          f"  {'same rows' if same else 'ROWS DIFFER'}")
    return report_ms, scan_ms, duck_ms


t = time.perf_counter()
for day in days:
    run("ingest", "--no-progress", day)
print(f"loaded {len(days)} days one commit each in {time.perf_counter() - t:.1f} s")
print(f"{'lake':<26} {'files':>6} {'report all ms':>14} {'scan ms':>12} {'duckdb ms':>12}")
before = measure("one commit per day")
t = time.perf_counter()
out = run("compact", "--vacuum-after-s", "0").stdout
print(f"compact + vacuum: {(time.perf_counter() - t) * 1000:.0f} ms")
print("  " + out.strip().replace("\n", "\n  "))
after = measure("compacted")
print("faster after compaction: report all {:.1f}x, scan {:.1f}x, DuckDB scan {:.1f}x".format(
    *(b / a for b, a in zip(before, after))))
print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; DuckDB {duckdb.__version__}")
