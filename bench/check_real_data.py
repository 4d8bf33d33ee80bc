"""shopstream vs DuckDB on the full real Online Retail data: line counts and every report, row by row."""
import csv, io, math, os, shutil, subprocess, sys

sys.path.insert(0, os.path.dirname(__file__))
import duckdb
from orders_view import DUCKDB, load_reports

binary, data, report_dir, work = sys.argv[1:5]
shutil.rmtree(work, ignore_errors=True)
subprocess.run([binary, "--data-dir", work, "ingest", "--no-progress", data], check=True)


def sql(q):
    p = subprocess.run([binary, "--data-dir", work, "sql", "--format", "csv", "--", q], check=True, capture_output=True, text=True)
    return list(csv.reader(io.StringIO(p.stdout)))


read, loaded, rejected = (int(x) for x in sql("SELECT SUM(rows_read), SUM(rows_loaded), SUM(rows_rejected) FROM loads")[1])
lines = sum(sum(1 for _ in open(os.path.join(data, f))) - 1 for f in os.listdir(data) if f.endswith(".csv"))
print(f"CSV lines {lines}, read {read}, loaded {loaded}, rejected {rejected}")
ok = read == lines == loaded + rejected == 541_909

con = duckdb.connect()
con.execute(DUCKDB.format(source=f"read_csv('{data}/*.csv', header=true)"))


def norm(v):
    if v is None or v == "":
        return ""
    s = str(v).replace("T", " ")
    try:
        f = float(s)
        return f"{f:.2f}"
    except ValueError:
        return s


for name, q in load_reports(report_dir).items():
    ours = sql(q)
    theirs = con.execute(q).fetchall()
    a = sorted(tuple(norm(v) for v in r) for r in ours[1:])
    b = sorted(tuple(norm(v) for v in r) for r in theirs)
    same = a == b
    if not same:
        # Rounding of float sums may differ in the last cent between engines: allow 0.011.
        same = len(a) == len(b) and all(
            all(x == y or (is_num(x) and is_num(y) and abs(float(x) - float(y)) <= 0.011) for x, y in zip(r, s))
            for r, s in zip(a, b)
        ) if (is_num := lambda t: t.replace(".", "", 1).replace("-", "", 1).isdigit()) else False
    print(f"{'OK  ' if same else 'DIFF'} {name}: {len(a)} rows (duckdb {len(b)})")
    if not same:
        ok = False
        for r, s in list(zip(a, b))[:5]:
            if r != s:
                print("   shopstream:", r, "\n   duckdb:    ", s)
print("ALL EQUAL" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
