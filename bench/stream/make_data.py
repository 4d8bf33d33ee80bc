"""Build the input of the streaming benchmark from the real UCI Online Retail lines.

    make_data.py --src BY_DAY_DIR --out DIR (--copies K | --lines N) [--file-lines 100000]

The real lines (all by-day CSVs, 541,909 lines) are put in event-time order (a stable sort on InvoiceDate, so
lines of one invoice keep their order). Copy k (k = 0, 1, ...) shifts InvoiceDate forward by k * SPAN, where
SPAN is the span of the real data (first to last InvoiceDate) rounded up to whole days (374 days), so event
time keeps increasing from one copy to the next; copy k >= 1 suffixes InvoiceNo with `-k` so invoices stay
unique (copy 0 is the data as published). The stream is the copies one after the other.

  --copies K   the whole stream of K copies (K x 541,909 lines)
  --lines N    just the first N lines of that stream (as many copies as needed, the last one cut)

Written to DIR as part-00000.csv, part-00001.csv, ... in event-time order, each with the header line and about
--file-lines data lines (a file ends only between two distinct InvoiceDate values, so one timestamp never spans
two files). DIR/_meta.json records the line count (Spark's and Flink's file sources skip names starting with
`_`). Nothing is derived: line_revenue = Quantity * UnitPrice is computed by each job. The folder is built in
DIR.tmp and renamed; an existing DIR with the same parameters is kept as it is.
"""
import argparse, csv, datetime, json, math, os, shutil, sys

HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
FMT = "%Y-%m-%d %H:%M:%S"


def load(src):
    rows = []
    for f in sorted(f for f in os.listdir(src) if f.endswith(".csv")):
        with open(os.path.join(src, f), newline="", encoding="utf-8") as r:
            reader = csv.reader(r)
            header = next(reader)
            if header != HEADER:
                sys.exit(f"{f}: unexpected header {header}")
            rows.extend(reader)
    rows.sort(key=lambda row: row[4])  # ISO-like timestamps sort as text; stable
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", required=True)
    ap.add_argument("--out", required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--copies", type=int)
    g.add_argument("--lines", type=int)
    ap.add_argument("--file-lines", type=int, default=100_000)
    a = ap.parse_args()

    rows = load(a.src)
    real = len(rows)
    total = a.copies * real if a.copies is not None else a.lines
    if total <= 0:
        sys.exit("nothing to write")
    first = datetime.datetime.strptime(rows[0][4], FMT)
    last = datetime.datetime.strptime(rows[-1][4], FMT)
    span_days = math.ceil((last - first) / datetime.timedelta(days=1))
    meta = {"lines": total, "real_lines": real, "copies": math.ceil(total / real), "span_days": span_days,
            "file_lines": a.file_lines, "first": rows[0][4]}

    meta_path = os.path.join(a.out, "_meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as m:
            old = json.load(m)
        if {k: old.get(k) for k in meta} == meta:
            print(f"{a.out}: {total:,} lines (kept)")
            return
        shutil.rmtree(a.out)
    tmp = a.out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)

    written, part, in_part, w, out = 0, 0, 0, None, None
    prev_ts = None
    for k in range(meta["copies"]):
        shift = datetime.timedelta(days=span_days * k)
        shifted = {}  # InvoiceDate text -> shifted text (about 23k distinct values)
        suffix = f"-{k}" if k else ""
        for row in rows:
            if written == total:
                break
            ts = row[4]
            if k:
                s = shifted.get(ts)
                if s is None:
                    s = shifted[ts] = (datetime.datetime.strptime(ts, FMT) + shift).strftime(FMT)
                row = [row[0] + suffix, row[1], row[2], row[3], s, row[5], row[6], row[7]]
                ts = s
            if w is None or (in_part >= a.file_lines and ts != prev_ts):
                if out:
                    out.close()
                out = open(os.path.join(tmp, f"part-{part:05}.csv"), "w", newline="", encoding="utf-8")
                w = csv.writer(out, lineterminator="\n")
                w.writerow(HEADER)
                part, in_part = part + 1, 0
            w.writerow(row)
            written, in_part, prev_ts = written + 1, in_part + 1, ts
    out.close()
    meta["files"] = part
    meta["last"] = prev_ts
    with open(os.path.join(tmp, "_meta.json"), "w") as m:
        json.dump(meta, m, indent=1)
    shutil.rmtree(a.out, ignore_errors=True)
    os.rename(tmp, a.out)
    print(f"{a.out}: {total:,} lines in {part} files, {meta['first']} .. {prev_ts}")


if __name__ == "__main__":
    main()
