"""The peers of the streaming benchmark: one job of Spark Structured Streaming or Flink SQL over a folder of CSVs.

    peers.py spark|flink --job tumble|session --input DIR [--check]

Runs ONE job over every CSV file in DIR (as written by make_data.py: header line, columns InvoiceNo, StockCode,
Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country) read as a stream, and prints one JSON line:

    {"engine": "spark"|"flink", "job": ..., "records": n, "seconds": s, "version": ...}

`seconds` is the wall time from just before the query is started to its completion: the interpreter, the JVM,
the SparkSession / TableEnvironment and the DDL are made before the clock starts; what is left of the fixed
cost (planning, code generation, Flink's local mini-cluster, the first micro-batch) is removed by stream.sh,
which times N and 10*N records and takes the difference.

Jobs (event time ts = InvoiceDate, watermark ts - 30 s, line_revenue = Quantity * UnitPrice computed here):
  tumble   per Country per 1-minute event-time tumbling window: sum(line_revenue), count(*)
  session  per CustomerID per session window with a 30-minute gap: count(*) (count distinct InvoiceNo is not
           allowed by Spark streaming). Lines without a CustomerID are one key (null in Spark, '' in Flink).
Final windows are appended to a sink that discards them (Spark: `noop`; Flink: `blackhole`).

--check runs the same query into a counting sink instead and adds "output_rows" and "output_count" (the sum of
count(*) over the emitted windows) to the JSON, so a no-op job shows. Spark's append mode emits a window only
once the watermark has passed its end, so windows within the last 30 s (tumble) or 30 min (session) of the
input are never emitted by Spark (availableNow stops there); Flink ends a bounded source with the maximum
watermark and emits them all.

Settings, the same for every run: Spark local[2], spark.sql.shuffle.partitions=2 (not the default 200: one
state store per shuffle partition per micro-batch would dominate), driver memory 4g, UI off,
trigger(availableNow=True) with maxFilesPerTrigger unset (all files in the first micro-batch, then a no-data
batch that moves the watermark and emits the closed windows). Flink: streaming mode, parallelism 2, filesystem
source (bounded: no monitor interval), defaults otherwise (heap state, no checkpoints).
"""
import argparse, glob, json, os, shutil, sys, tempfile, time

COLS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]


def count_records(d):
    meta = os.path.join(d, "_meta.json")
    if os.path.exists(meta):
        with open(meta) as m:
            return json.load(m)["lines"]
    n = 0
    for f in csv_files(d):
        with open(f, "rb") as r:
            n += sum(1 for _ in r) - 1
    return n


def csv_files(d):
    files = sorted(glob.glob(os.path.join(d, "*.csv")))
    if not files:
        sys.exit(f"no *.csv in {d}")
    return files


# ---------------------------------------------------------------- Spark Structured Streaming

def run_spark(job, inp, check):
    from pyspark.sql import SparkSession, functions as F
    from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType, TimestampType
    import pyspark

    spark = (SparkSession.builder.master("local[2]").appName(f"stream-{job}")
             .config("spark.driver.memory", "4g")
             .config("spark.sql.shuffle.partitions", "2")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    types = {"Quantity": IntegerType(), "UnitPrice": DoubleType(), "InvoiceDate": TimestampType()}
    schema = StructType([StructField(c, types.get(c, StringType())) for c in COLS])
    src = (spark.readStream.schema(schema).option("header", True)
           .option("timestampFormat", "yyyy-MM-dd HH:mm:ss").csv(inp)
           .withColumnRenamed("InvoiceDate", "ts")
           .withColumn("line_revenue", F.col("Quantity") * F.col("UnitPrice"))
           .withWatermark("ts", "30 seconds"))
    if job == "tumble":
        out = (src.groupBy(F.window("ts", "1 minute"), "Country")
               .agg(F.sum("line_revenue").alias("revenue"), F.count(F.lit(1)).alias("n")))
    else:
        out = (src.groupBy(F.session_window("ts", "30 minutes"), "CustomerID")
               .agg(F.count(F.lit(1)).alias("n")))

    ckpt = tempfile.mkdtemp(prefix="stream-spark-ckpt-")
    seen = {"rows": 0, "count": 0}
    try:
        w = out.writeStream.outputMode("append").trigger(availableNow=True).option("checkpointLocation", ckpt)
        if check:
            def batch(df, _id):
                r = df.agg(F.count(F.lit(1)).alias("rows"), F.sum("n").alias("count")).collect()[0]
                seen["rows"] += r["rows"]
                seen["count"] += r["count"] or 0
            w = w.foreachBatch(batch)
        else:
            w = w.format("noop")
        t0 = time.perf_counter()
        q = w.start()
        q.awaitTermination()
        seconds = time.perf_counter() - t0
        if q.exception():
            raise RuntimeError(str(q.exception()))
        batches = len(q.recentProgress)
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
    res = {"engine": "spark", "job": job, "version": pyspark.__version__, "batches": batches}
    spark.stop()
    return res, seconds, seen


# ---------------------------------------------------------------- Flink SQL

def run_flink(job, inp, check, source="union"):
    from pyflink.table import EnvironmentSettings, TableEnvironment
    from pyflink.version import __version__ as flink_version

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("parallelism.default", "2")
    conf.set("table.local-time-zone", "UTC")
    # The CSV format cannot skip a header line: csv.ignore-parse-errors turns each file's header into a row of
    # nulls (InvoiceNo = 'InvoiceNo' stays a string), removed by the view below. ts falls back to the epoch for
    # it so the rowtime is never null; the row is filtered out before any window operator sees it. InvoiceDate
    # is parsed by the CSV format as a TIMESTAMP (its SQL form `yyyy-MM-dd HH:mm:ss`), as Spark's reader does
    # with TimestampType (TO_TIMESTAMP(InvoiceDate, format) on a STRING column was ~20% slower end to end).
    #
    # One source table per file, UNION ALL-ed (source="union", the default): the filesystem source hands its
    # files (splits) to the readers in no particular order (LocalityAwareSplitAssigner keeps them in a HashSet),
    # so with the whole folder as one source a reader that has read a later file moves the watermark past the
    # earlier files, whose lines then arrive late and are dropped (most of them: see --check with
    # --flink-source dir). Per-file sources each emit their own watermark, the union's is their minimum, and a
    # finished (bounded) source emits the maximum watermark, so every line is counted, as in Spark and shopstream.
    files = csv_files(inp) if source == "union" else [inp]
    for i, path in enumerate(files):
        t_env.execute_sql(f"""
            CREATE TABLE src{i} (
              InvoiceNo STRING, StockCode STRING, Description STRING, Quantity INT, InvoiceDate TIMESTAMP(3),
              UnitPrice DOUBLE, CustomerID STRING, Country STRING,
              ts AS COALESCE(InvoiceDate, TIMESTAMP '1970-01-01 00:00:00'),
              WATERMARK FOR ts AS ts - INTERVAL '30' SECOND
            ) WITH (
              'connector' = 'filesystem', 'path' = 'file://{os.path.abspath(path)}', 'format' = 'csv',
              'csv.ignore-parse-errors' = 'true'
            )""")
    t_env.execute_sql("CREATE TEMPORARY VIEW lines AS " + "\n UNION ALL ".join(
        f"SELECT InvoiceNo, CustomerID, Country, ts, Quantity * UnitPrice AS line_revenue "
        f"FROM src{i} WHERE InvoiceNo <> 'InvoiceNo'" for i in range(len(files))))
    if job == "tumble":
        query = """
            SELECT window_start, window_end, Country, SUM(line_revenue) AS revenue, COUNT(*) AS n
            FROM TABLE(TUMBLE(TABLE lines, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
            GROUP BY window_start, window_end, Country"""
        sink_cols = "window_start TIMESTAMP(3), window_end TIMESTAMP(3), Country STRING, revenue DOUBLE, n BIGINT"
    else:
        query = """
            SELECT window_start, window_end, CustomerID, COUNT(*) AS n
            FROM TABLE(SESSION(TABLE lines PARTITION BY CustomerID, DESCRIPTOR(ts), INTERVAL '30' MINUTE))
            GROUP BY window_start, window_end, CustomerID"""
        sink_cols = "window_start TIMESTAMP(3), window_end TIMESTAMP(3), CustomerID STRING, n BIGINT"
    seen = {"rows": 0, "count": 0}
    if check:
        t0 = time.perf_counter()
        with t_env.execute_sql(query).collect() as rows:
            for r in rows:
                seen["rows"] += 1
                seen["count"] += r[-1]
        seconds = time.perf_counter() - t0
    else:
        t_env.execute_sql(f"CREATE TABLE sink ({sink_cols}) WITH ('connector' = 'blackhole')")
        t0 = time.perf_counter()
        t_env.execute_sql(f"INSERT INTO sink {query}").wait()
        seconds = time.perf_counter() - t0
    return {"engine": "flink", "job": job, "version": flink_version, "sources": len(files)}, seconds, seen


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("engine", choices=["spark", "flink"])
    ap.add_argument("--job", choices=["tumble", "session"], required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--check", action="store_true", help="count the emitted windows instead of discarding them")
    ap.add_argument("--flink-source", choices=["union", "dir"], default="union",
                    help="flink: one source per file, UNION ALL (default), or the whole folder as one source")
    a = ap.parse_args()
    csv_files(a.input)
    records = count_records(a.input)
    if a.engine == "spark":
        res, seconds, seen = run_spark(a.job, a.input, a.check)
    else:
        res, seconds, seen = run_flink(a.job, a.input, a.check, a.flink_source)
    res.update({"records": records, "seconds": round(seconds, 3)})
    if a.check:
        res.update({"output_rows": seen["rows"], "output_count": seen["count"]})
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
