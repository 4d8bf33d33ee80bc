"""Summarise the timed runs of bench/stream.sh: events/s per engine per job, and shopstream's ratios.

    report.py RESULTS.jsonl

Each line of RESULTS.jsonl: {"size": "N"|"10N", "rep": r, "records": lines in that input, "run": <the JSON line
of peers.py or of shopstream_run>}. Per engine, job and size the best (smallest) time of the repeats is taken;
events/s = (records(10N) - records(N)) / (t(10N) - t(N)), which removes the fixed cost of a run (startup,
planning, the first batch) that each engine pays once whatever the input size. A shopstream line with
"placeholder": true or "seconds": null is shown as not measured yet, and its ratios as n/a.
"""
import collections, json, sys


def main():
    runs = collections.defaultdict(list)  # (job, engine, size) -> [seconds]
    records, versions, placeholder, failed = {}, {}, set(), set()
    order_jobs, order_engines = [], []
    busy = []  # (busy %, engine, job, size, rep) of runs started while the CPU was busy with other work
    with open(sys.argv[1]) as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            run, size = row["run"], row["size"]
            job, engine = run["job"], run["engine"]
            if job not in order_jobs:
                order_jobs.append(job)
            if engine not in order_engines:
                order_engines.append(engine)
            records[size] = row["records"]
            if run.get("version"):
                versions[engine] = run["version"]
            if run.get("records") not in (None, row["records"]):
                sys.exit(f"{engine} {job}: reported {run['records']} records for an input of {row['records']}")
            if run.get("failed"):
                failed.add((job, engine))
                continue
            if run.get("placeholder") or run.get("seconds") is None:
                placeholder.add((job, engine))
                continue
            runs[(job, engine, size)].append(float(run["seconds"]))
            if row.get("busy_before", 0) >= 15:
                busy.append((row["busy_before"], engine, job, size, row.get("rep")))

    n, n10 = records["N"], records["10N"]
    print(f"N = {n:,} lines, 10N = {n10:,} lines; best of the repeats; "
          f"events/s = ({n10:,} - {n:,}) / (t10N - tN)")
    hdr = f"{'job':8} {'engine':18} {'t(N) s':>8} {'t(10N) s':>9} {'spread 10N':>11} {'events/s':>12} {'10N/t(10N)':>11}"
    print(hdr)
    print("-" * len(hdr))
    rate = {}
    for job in order_jobs:
        for engine in order_engines:
            name = engine + (f" {versions[engine]}" if engine in versions else "")
            if (job, engine) in placeholder:
                print(f"{job:8} {name:18} {'-':>8} {'-':>9} {'':>11} {'not measured (placeholder)':>24}")
                continue
            a, b = runs.get((job, engine, "N")), runs.get((job, engine, "10N"))
            if not a or not b:
                if (job, engine) in failed:
                    print(f"{job:8} {name:18} {'-':>8} {'-':>9} {'':>11} {'FAILED (see logs)':>24}")
                continue
            if (job, engine) in failed:
                name += " (some runs failed)"
            ta, tb = min(a), min(b)
            spread = f"{min(b):.2f}-{max(b):.2f}" if len(b) > 1 else ""
            ev = (n10 - n) / (tb - ta) if tb > ta else float("nan")
            rate[(job, engine)] = ev
            print(f"{job:8} {name:18} {ta:8.2f} {tb:9.2f} {spread:>11} {ev:12,.0f} {n10 / tb:11,.0f}")
    print()
    for job in order_jobs:
        for peer in ("flink", "spark"):
            if (job, peer) not in rate:
                continue
            if ("shopstream" in order_engines and (job, "shopstream") in rate):
                r = rate[(job, "shopstream")] / rate[(job, peer)]
                print(f"{job:8} shopstream vs {peer:6} {r:6.2f}x (events/s; > 1 = shopstream faster)")
            else:
                print(f"{job:8} shopstream vs {peer:6}    n/a (shopstream not measured)")
    for job in order_jobs:
        if (job, "flink") in rate and (job, "spark") in rate:
            print(f"{job:8} flink vs spark      {rate[(job, 'flink')] / rate[(job, 'spark')]:6.2f}x")
    if busy:
        print(f"\nwarning: {len(busy)} timed run(s) started with the CPU >= 15% busy with other work: " +
              ", ".join(f"{e} {j} {s} rep {r} ({b}%)" for b, e, j, s, r in busy))


if __name__ == "__main__":
    main()
