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
ap.add_argument("--only", choices=["orders", "wide"], help="run one case (default: both)")
ap.add_argument("--wide-scales", nargs="*", default=None,
                help="scales of the wide case, WORK/wide-xN.csv from wide.py (default: --scales)")
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

DUCK_WIDE = """
import duckdb, sys
con = duckdb.connect()
con.execute(f"COPY (SELECT * FROM read_csv('{sys.argv[1]}')) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)")
"""

# shopstream's type names and DuckDB's, as kinds, to mark the columns where the two inferred differently.
KINDS = {"bigint": "integer", "integer": "integer", "smallint": "integer", "tinyint": "integer",
         "hugeint": "integer", "ubigint": "integer", "uinteger": "integer", "double": "double", "float": "double",
         "boolean": "boolean", "date": "date", "time": "time", "timestamp": "timestamp",
         "timestamp with time zone": "timestamp", "text": "text", "varchar": "text"}


def kind(ty):
    t = ty.lower()
    return "decimal" if t.startswith("decimal") else KINDS.get(t, t)


def wide_case(shopstream, csv_path, out):
    """The inferred dataset: `ingest --dataset wide` against DuckDB's read_csv auto-detection to Parquet."""
    import duckdb
    expected = int(open(csv_path + ".rows").read())
    size = os.path.getsize(csv_path) / 2**20
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    res = {}
    dd = os.path.join(out, "shopstream")
    res["shopstream ingest"] = timed([shopstream, "--data-dir", dd, "ingest", "--dataset", "wide",
                                      "--no-progress", csv_path])
    pq = os.path.join(out, "duck.parquet")
    res["duckdb ingest"] = timed([py, "-c", DUCK_WIDE, csv_path, pq])
    # Every line loaded, none rejected, and the table holds them all.
    load = res["shopstream ingest"][2]
    m = re.search(r"read (\d+), loaded (\d+), rejected (\d+)", load)
    if not m:
        sys.exit(f"no load summary in shopstream's output:\n{load}")
    read, loaded, rejected = map(int, m.groups())
    count = subprocess.run([shopstream, "--data-dir", dd, "sql", "select count(*) from wide", "--format", "csv"],
                           capture_output=True, text=True, check=True).stdout.split()[-1]
    con = duckdb.connect()
    duck_count = con.execute(f"SELECT count(*) FROM read_parquet('{pq}')").fetchone()[0]
    ok = read == loaded == int(count) == duck_count == expected and rejected == 0
    # The types each inferred, side by side; shopstream's names are snake_case of the file's (`from` in its output).
    ours = {}
    for line in load.splitlines():
        m = re.match(r"\s+(\S+)\s+(.+?)\s+\(from `(.*?)`(.*)\)$", line)
        if m:
            ours[m.group(3)] = (m.group(1), m.group(4).lstrip(", "))
    describe = subprocess.run([shopstream, "--data-dir", dd, "describe", "wide"],
                              capture_output=True, text=True, check=True).stdout
    described = {}
    for line in describe.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and line.startswith("  "):
            described[parts[0]] = parts[1]
    duck = con.execute(f"DESCRIBE SELECT * FROM read_csv('{csv_path}')").fetchall()
    print(f"\n== wide {os.path.basename(csv_path)}: {size:.0f} MiB of CSV, {expected} lines, {len(duck)} columns")
    for k, (t, rss, _) in res.items():
        print(f"  {k:<20} {t:8.2f} s   peak RSS {rss:7.0f} MiB")
    print(f"  ingest: shopstream/duckdb = {res['shopstream ingest'][0] / res['duckdb ingest'][0]:.2f}x")
    print(f"  rows: shopstream read {read}, loaded {loaded}, rejected {rejected}, count(*) {count}; "
          f"duckdb parquet {duck_count}; CSV {expected}: {'OK' if ok else 'MISMATCH'}")
    m = re.search(r"in (\d+) files \((\d+) bytes\)", describe)
    ours_mib = f"{int(m.group(2)) / 2**20:.1f} MiB in {m.group(1)} file(s)" if m else "?"
    print(f"  output: shopstream {ours_mib} (Delta, zstd), duckdb {os.path.getsize(pq) / 2**20:.1f} MiB (zstd)")
    print(f"  {'column':<16} {'shopstream (describe wide)':<46} duckdb (DESCRIBE read_csv)")
    differ = []
    for name, duck_ty, *_ in duck:
        col, how = ours.get(name, ("?", ""))
        ty = described.get(col, "?")
        same = kind(ty) == kind(duck_ty)
        if not same:
            differ.append(name)
        ty_how = f"{ty} ({how})" if how else ty
        print(f"  {name:<16} {col + ' ' + ty_how:<46} {duck_ty:<18} {'' if same else '<- differs'}".rstrip())
    print(f"  types: {len(duck) - len(differ)} of {len(duck)} columns of the same kind"
          + (f"; differ: {', '.join(differ)}" if differ else ""))
    if not ok:
        sys.exit("wide: not every line loaded")
    return res


py = sys.executable
bench = os.path.dirname(os.path.abspath(__file__))
rows = []
for scale in args.scales if args.only != "wide" else []:
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
for scale in (args.wide_scales if args.wide_scales is not None else args.scales) if args.only != "orders" else []:
    wide_case(args.shopstream, os.path.join(args.work, f"wide-x{scale}.csv"), os.path.join(args.work, f"out-wide-x{scale}"))
print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
