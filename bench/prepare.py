"""Replicate the real Online Retail by-day CSVs N times into DIR/replica-K.csv.

Replica K shifts invoice numbers by K*1,000,000 (keeping the C prefix of cancellations) and dates by K*364
days (52 weeks, so weekdays and the seasonal shape are kept). Replica 0 is the data as published.
"""
import csv, datetime, os, sys

src, out, scale = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(out, exist_ok=True)
files = sorted(f for f in os.listdir(src) if f.endswith(".csv"))
for k in range(scale):
    dest = os.path.join(out, f"replica-{k:03}.csv")
    if os.path.exists(dest):
        continue
    shift = datetime.timedelta(days=364 * k)
    with open(dest + ".tmp", "w", newline="") as w:
        writer = csv.writer(w)
        header_done = False
        for f in files:
            with open(os.path.join(src, f), newline="") as r:
                reader = csv.reader(r)
                header = next(reader)
                if not header_done:
                    writer.writerow(header)
                    header_done = True
                for row in reader:
                    if k:
                        inv = row[0]
                        prefix = inv[0] if inv[:1].isalpha() else ""
                        row[0] = prefix + str(int(inv[len(prefix):]) + 1_000_000 * k)
                        d = datetime.datetime.strptime(row[4], "%Y-%m-%d %H:%M:%S") + shift
                        row[4] = d.strftime("%Y-%m-%d %H:%M:%S")
                    writer.writerow(row)
    os.rename(dest + ".tmp", dest)
print(f"{out}: {scale} replica(s)")
