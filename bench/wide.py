"""Write the wide CSV of the inferred-dataset bench: the real order lines with derived columns of many types.

usage: wide.py SRC OUT.csv
SRC is a folder of Online Retail CSVs (the by-day files, or prepare.py's replicas for a scale factor), read in
name order. OUT.csv gets the 8 original columns and 11 derived ones, so that type inference has every kind of
column to find:

  line_total      decimal, 2 places (Quantity * UnitPrice, exact)
  order_day       date YYYY-MM-DD
  order_time      time HH:MM
  is_gift         true/false
  zip             5 digits, leading zeros kept (01234): text
  channel         text
  weight_kg       double with many decimals (repr of a float)
  customer_since  date dd/mm/YYYY (per customer; empty without a customer, as CustomerID)
  discount_pct    integer
  shipped_at      timestamp YYYY-MM-DDTHH:MM:SS
  rating          integer 1..5, empty for 40% of the lines

Deterministic (fixed seed), written to OUT.csv.tmp and renamed; an existing OUT.csv is kept (the cache), and
OUT.csv.rows holds its number of data lines.
"""
import csv, datetime, decimal, os, random, sys

EXTRA = ["line_total", "order_day", "order_time", "is_gift", "zip", "channel", "weight_kg",
         "customer_since", "discount_pct", "shipped_at", "rating"]
CHANNELS = ["web", "store", "phone", "marketplace", "app"]
DISCOUNTS = [0, 0, 0, 0, 5, 10, 15, 20, 25, 50]


def main(src, out):
    if os.path.exists(out) and os.path.exists(out + ".rows"):
        print(f"{out}: kept ({open(out + '.rows').read().strip()} lines)")
        return
    rng = random.Random(20261129)
    cent = decimal.Decimal("0.01")
    since = {}
    epoch = datetime.date(2003, 1, 1)
    files = sorted(f for f in os.listdir(src) if f.endswith(".csv"))
    if not files:
        sys.exit(f"no CSV files in {src}")
    n = 0
    with open(out + ".tmp", "w", newline="") as w:
        writer = csv.writer(w)
        header_done = False
        for f in files:
            with open(os.path.join(src, f), newline="") as r:
                reader = csv.reader(r)
                header = next(reader)
                if not header_done:
                    writer.writerow(header + EXTRA)
                    header_done = True
                for row in reader:
                    inv, _code, _desc, qty, date, price, cust, _country = row
                    total = (decimal.Decimal(qty) * decimal.Decimal(price)).quantize(
                        cent, rounding=decimal.ROUND_HALF_EVEN)
                    if cust:
                        if cust not in since:
                            since[cust] = (epoch + datetime.timedelta(days=rng.randrange(2900))).strftime("%d/%m/%Y")
                        cust_since = since[cust]
                    else:
                        cust_since = ""
                    ts = datetime.datetime.strptime(date, "%Y-%m-%d %H:%M:%S")
                    shipped = (ts + datetime.timedelta(minutes=rng.randrange(60, 72 * 60))).strftime("%Y-%m-%dT%H:%M:%S")
                    writer.writerow(row + [
                        f"{total}",
                        date[:10],
                        date[11:16],
                        "true" if rng.random() < 0.1 else "false",
                        f"{rng.randrange(100000):05d}",
                        rng.choice(CHANNELS),
                        repr(rng.uniform(0.01, 25.0)),
                        cust_since,
                        str(rng.choice(DISCOUNTS)),
                        shipped,
                        str(rng.randint(1, 5)) if rng.random() >= 0.4 else "",
                    ])
                    n += 1
    os.rename(out + ".tmp", out)
    with open(out + ".rows", "w") as w:
        w.write(f"{n}\n")
    print(f"{out}: {n} lines, {len(header) + len(EXTRA)} columns, {os.path.getsize(out) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
