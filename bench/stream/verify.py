"""Check the peers' --check output against the same windows computed in batch by DuckDB.

    verify.py --input DIR CHECK.jsonl

CHECK.jsonl holds `peers.py ... --check` lines (and possibly shopstream's, same fields: engine, job,
output_rows, output_count). For each job DuckDB computes, over the CSVs of DIR:
  all      every window: what an engine that closes all windows at the end of a bounded input emits (Flink)
  spark    only windows whose end is at or before the final watermark max(ts) - 30 s: what Spark's append mode
           emits with trigger(availableNow=True), which never moves the watermark past the data
Sessions: a new session starts when the gap to the customer's previous line is more than 30 minutes (windows
[t, t+30min) that only touch merge: what Spark 3.5 and Flink 2.3 both do) or, as the other reading, at least 30
minutes; both variants are computed. Prints one line per engine and job with the matching expectation, and exits 1 if
an engine matches none (rows and count both) or emitted nothing.
"""
import argparse, json, os, sys

import duckdb

COLS = ("{'InvoiceNo': 'VARCHAR', 'StockCode': 'VARCHAR', 'Description': 'VARCHAR', 'Quantity': 'INTEGER', "
        "'InvoiceDate': 'TIMESTAMP', 'UnitPrice': 'DOUBLE', 'CustomerID': 'VARCHAR', 'Country': 'VARCHAR'}")


def expected(con, d):
    con.execute(f"""CREATE OR REPLACE TEMP VIEW l AS SELECT CustomerID, Country, InvoiceDate AS ts
                    FROM read_csv('{os.path.join(d, '*.csv')}', header = true, columns = {COLS})""")
    wm = "(SELECT max(ts) - INTERVAL 30 SECOND FROM l)"
    out = {"tumble": {}, "session": {}}
    r = con.execute(f"""
        WITH w AS (SELECT time_bucket(INTERVAL 1 MINUTE, ts) + INTERVAL 1 MINUTE AS we, Country, count(*) AS n
                   FROM l GROUP BY ALL)
        SELECT count(*), sum(n), count(*) FILTER (WHERE we <= {wm}), sum(n) FILTER (WHERE we <= {wm}) FROM w
        """).fetchone()
    out["tumble"] = {"all": (r[0], r[1]), "spark": (r[2], r[3] or 0)}
    for name, new_if in (("gap > 30 min", ">"), ("gap >= 30 min", ">=")):
        r = con.execute(f"""
            WITH d AS (SELECT CustomerID, ts, ts - lag(ts) OVER (PARTITION BY CustomerID ORDER BY ts) AS gap FROM l),
                 g AS (SELECT CustomerID, ts, sum(CASE WHEN gap IS NULL OR gap {new_if} INTERVAL 30 MINUTE
                                                       THEN 1 ELSE 0 END)
                                  OVER (PARTITION BY CustomerID ORDER BY ts ROWS UNBOUNDED PRECEDING) AS sid
                       FROM d),
                 s AS (SELECT max(ts) + INTERVAL 30 MINUTE AS se, count(*) AS n FROM g GROUP BY CustomerID, sid)
            SELECT count(*), sum(n), count(*) FILTER (WHERE se <= {wm}), sum(n) FILTER (WHERE se <= {wm}) FROM s
            """).fetchone()
        out["session"][f"all, {name}"] = (r[0], r[1])
        out["session"][f"spark, {name}"] = (r[2], r[3] or 0)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("check_jsonl")
    a = ap.parse_args()
    exp = expected(duckdb.connect(), a.input)
    for job, variants in exp.items():
        print(f"  duckdb {job:8} " + "; ".join(f"{k}: {r:,} windows, {n:,} lines" for k, (r, n) in variants.items()))
    bad = 0
    with open(a.check_jsonl) as f:
        for line in f:
            if not line.strip():
                continue
            run = json.loads(line)
            if run.get("placeholder"):
                print(f"  {run['engine']:10} {run['job']:8} not implemented yet (placeholder)")
                continue
            if run.get("failed"):
                print(f"  {run['engine']:10} {run['job']:8} FAILED (no output)")
                bad += 1
                continue
            got = (run.get("output_rows"), run.get("output_count"))
            match = [k for k, v in exp[run["job"]].items() if tuple(v) == got]
            ok = bool(match) and got[0] > 0
            bad += not ok
            print(f"  {run['engine']:10} {run['job']:8} {got[0]:,} windows, {got[1]:,} lines of "
                  f"{run['records']:,}: " + (f"matches duckdb ({' | '.join(match)})" if ok else "NO MATCH"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
