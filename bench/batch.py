"""Times shopstream, DuckDB and PySpark on the same prepared data, in one run, and prints ratios."""
import argparse, glob, os, platform, re, shutil, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from orders_view import DUCKDB, SPARK, load_reports

ap = argparse.ArgumentParser()
ap.add_argument("--shopstream", required=True)
ap.add_argument("--work", required=True)
ap.add_argument("--scales", nargs="+", default=["1", "10"])
ap.add_argument("--reports", required=True)
ap.add_argument("--no-spark", action="store_true")
args = ap.parse_args()
reports = load_reports(args.reports)
TIME = "/usr/bin/time"


def timed(cmd, env=None):
    """Run cmd under GNU time; return (seconds, peak RSS MiB, stdout)."""
    t0 = time.perf_counter()
    p = subprocess.run([TIME, "-f", "RSS_KB=%M", *cmd], capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    rss = int(re.findall(r"RSS_KB=(\d+)", p.stderr)[-1]) / 1024
    return dt, rss, p.stdout


DUCK_INGEST = """
import duckdb, sys
con = duckdb.connect()
con.execute(f"COPY (SELECT * FROM read_csv('{sys.argv[1]}/*.csv')) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)")
"""
DUCK_REPORTS = """
import duckdb, sys, json
sys.path.insert(0, sys.argv[3])
from orders_view import DUCKDB, load_reports
con = duckdb.connect()
con.execute(DUCKDB.format(source=f"read_parquet('{sys.argv[1]}')"))
for name, sql in load_reports(sys.argv[2]).items():
    con.execute(sql).fetchall()
"""
SPARK_INGEST = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").config("spark.driver.memory", "4g").config("spark.sql.session.timeZone", "UTC").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
df = spark.read.option("header", True).option("inferSchema", True).csv(sys.argv[1])
df.write.mode("overwrite").option("compression", "zstd").parquet(sys.argv[2])
"""
SPARK_REPORTS = """
import sys
sys.path.insert(0, sys.argv[3])
from orders_view import SPARK, load_reports
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").config("spark.driver.memory", "4g").config("spark.sql.session.timeZone", "UTC").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
spark.read.parquet(sys.argv[1]).createOrReplaceTempView("raw")
spark.sql(SPARK)
for name, sql in load_reports(sys.argv[2], "spark").items():
    spark.sql(sql).collect()
"""

py = sys.executable
bench = os.path.dirname(os.path.abspath(__file__))
rows = []
for scale in args.scales:
    src = os.path.join(args.work, f"x{scale}")
    size = sum(os.path.getsize(f) for f in glob.glob(f"{src}/*.csv")) / 2**20
    out = os.path.join(args.work, f"out-x{scale}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    res = {}
    # shopstream: CSV -> Delta lake (raw + clean + dead letters), then every report as its own process.
    dd = os.path.join(out, "shopstream")
    res["shopstream ingest"] = timed([args.shopstream, "--data-dir", dd, "ingest", "--no-progress", src])
    # Every report in one session, as DuckDB and Spark run them below.
    res["shopstream reports"] = timed([args.shopstream, "--data-dir", dd, "report", "all",
                                       "--format", "csv", "--out", os.path.join(out, "reports")])
    # DuckDB
    pq = os.path.join(out, "duck.parquet")
    res["duckdb ingest"] = timed([py, "-c", DUCK_INGEST, src, pq])
    res["duckdb reports"] = timed([py, "-c", DUCK_REPORTS, pq, args.reports, bench])
    if not args.no_spark:
        sp = os.path.join(out, "spark.parquet")
        res["pyspark ingest"] = timed([py, "-c", SPARK_INGEST, src, sp])
        res["pyspark reports"] = timed([py, "-c", SPARK_REPORTS, sp, args.reports, bench])
    print(f"\n== x{scale}: {size:.0f} MiB of CSV")
    for k, (t, rss, _) in res.items():
        print(f"  {k:<20} {t:8.2f} s   peak RSS {rss:7.0f} MiB")
    for phase in ["ingest", "reports"]:
        s = res[f"shopstream {phase}"][0]
        line = f"  {phase}: shopstream/duckdb = {s / res[f'duckdb {phase}'][0]:.2f}x"
        if not args.no_spark:
            line += f", pyspark/shopstream = {res[f'pyspark {phase}'][0] / s:.2f}x"
        print(line)
    rows.append((scale, size, res))
print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
