"""Runs log_bench scenarios and dd with the same bytes per sync; prints figures and ratios."""
import os, platform, re, subprocess, sys

bench, work = sys.argv[1], sys.argv[2]
SECONDS = os.environ.get("SECONDS_PER_RUN", "5")
SCENARIOS = [  # record bytes, producers, records per append
    (100, 4, 1000),
    (100, 8, 1000),
    (1024, 4, 16),
    (1024, 8, 64),
]


def run(rb, prod, per):
    out = subprocess.run([bench, work, str(rb), str(prod), str(per), SECONDS],
                         capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=([\d.]+)", out))


def dd_mib_per_s(block):
    total = 256 * 2**20
    count = max(1, total // block)
    path = work + ".dd"
    p = subprocess.run(["dd", "if=/dev/zero", f"of={path}", f"bs={block}", f"count={count}", "oflag=dsync"],
                       capture_output=True, text=True)
    os.remove(path)
    m = re.search(r"copied, ([\d.]+) s", p.stderr)
    return block * count / float(m.group(1)) / 2**20


print(f"{'record':>7} {'producers':>9} {'rec/append':>10} {'records/s':>12} {'MiB/s':>8} {'p50 ms':>7} "
      f"{'p99 ms':>7} {'B/sync':>8} {'dd MiB/s':>9} {'log/dd':>7}")
for rb, prod, per in SCENARIOS:
    r = run(rb, prod, per)
    block = int(r["bytes_per_sync"])
    dd = dd_mib_per_s(block)
    print(f"{rb:>6}B {prod:>9} {per:>10} {float(r['records_per_s']):>12,.0f} {float(r['mib_per_s']):>8.1f} "
          f"{float(r['p50_ms']):>7.2f} {float(r['p99_ms']):>7.2f} {block:>8} {dd:>9.1f} "
          f"{float(r['mib_per_s']) / dd:>6.0%}")
print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
